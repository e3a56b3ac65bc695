-- spec/local_provider_spec.lua: what only the local provider promises: bubblewrap isolation
-- (mount, PID and network namespaces, read-only /usr), paths confined to the sandbox root in
-- both isolation modes, honest refusals when isolation is unavailable, and its own options.
local sandlot = require("sandlot")
local h = require("spec.helper")
local ns = require("spec.support.namespaces")

-- a case that needs bubblewrap's namespaces: pending, with the reason, where none can be made
-- (a chroot, a container, Ubuntu's AppArmor restriction)
local function ns_it(name, fn)
  it(name, function(...)
    local why = ns.skip()
    if why then pending(why) return end
    return fn(...)
  end)
end

local function fresh_config(tmp, extra)
  local p = { "local", state_dir = tmp .. "/state" }
  for k, v in pairs(extra or {}) do p[k] = v end
  sandlot.config.set({ default = "t", providers = { t = p } })
end

describe("local provider", function()
  local tmp

  before_each(function()
    tmp = h.tmpdir()
    fresh_config(tmp)
  end)

  after_each(function()
    sandlot.config.reset()
    h.rmtree(tmp)
  end)

  describe("with isolation = namespaces", function()
    local sb
    before_each(function()
      if ns.why() then return end
      sb = assert(sandlot.create({ isolation = "namespaces" }))
    end)
    after_each(function()
      if sb then sb:destroy() end
      sb = nil
    end)

    ns_it("runs commands with the sandbox directory as /", function()
      assert(sb:write_file("/abs/x.txt", "at the sandbox root"))
      assert.equal("at the sandbox root", assert(sb:exec({ "cat", "/abs/x.txt" })).stdout)
      assert.equal("/\n", assert(sb:exec({ "pwd" })).stdout)
      assert.equal("/", assert(sb:exec("printf %s \"$HOME\"")).stdout)
      -- the host's tree is not there: not this repository, not /root
      assert.equal(1, assert(sb:exec({ "test", "-e", "/work" })).exit_code)
      assert.equal(1, assert(sb:exec({ "test", "-e", "/root/.bashrc" })).exit_code)
    end)

    ns_it("mounts the host's /usr read-only", function()
      local r = assert(sb:exec({ "touch", "/usr/sandlot-should-not-exist" }))
      assert.not_equal(0, r.exit_code)
      assert.matches("Read%-only", r.stderr)
      assert.is_nil(io.open("/usr/sandlot-should-not-exist"))
    end)

    ns_it("has its own PID namespace", function()
      local r = assert(sb:exec({ "sh", "-c", "ls /proc | grep -c '^[0-9]'" }))
      assert.is_true(tonumber(r.stdout) < 10, "host processes visible: " .. r.stdout)
    end)

    ns_it("has no network by default (loopback only)", function()
      local r = assert(sb:exec({ "cat", "/proc/net/dev" }))
      local ifaces = {}
      for name in r.stdout:gmatch("\n%s*([%w%-_.]+):") do ifaces[#ifaces + 1] = name end
      assert.same({ "lo" }, ifaces)
      local url, err = sb:get_url(8080)
      assert.is_nil(url)
      assert.equal("not_supported", err.code)
    end)

    ns_it("kills background processes when the command ends or times out", function()
      assert(sb:exec({ "sh", "-c", "sleep 4242 & echo started" }))
      local r = assert(sb:exec({ "sh", "-c", "sleep 4343 & sleep 4344" }, { timeout = 0.3 }))
      assert.is_true(r.timed_out)
      local left = h.eventually(function()
        local p = assert(sandlot.proc.run({ "sh", "-c", "pgrep -f 'sleep 434[234]' || true" }))
        return p.stdout == ""
      end, 5)
      assert.is_true(left, "sandboxed processes survived")
    end)

    ns_it("drops capabilities", function()
      local r = assert(sb:exec({ "sh", "-c", "grep CapEff /proc/self/status" }))
      assert.matches("CapEff:%s+0+\n", r.stdout)
    end)
  end)

  describe("paths", function()
    for _, iso in ipairs({ "namespaces", "none" }) do
      describe("(isolation = " .. iso .. ")", function()
        local sb
        local it = iso == "namespaces" and ns_it or it   -- luacheck: ignore 431
        before_each(function()
          if iso == "namespaces" and ns.why() then return end
          sb = assert(sandlot.create({ isolation = iso }))
          assert(sb:write_file("data/real.txt", "real"))
        end)
        after_each(function()
          if sb then sb:destroy() end
          sb = nil
        end)

        it("refuses .. that leaves the root", function()
          local escapes = { "..", "../x", "data/../../x", "/../x", "data/../../../etc/passwd" }
          for _, p in ipairs(escapes) do
            local r, err = sb:read_file(p)
            assert.is_nil(r, p)
            assert.equal("invalid_input", err.code, p)
            r, err = sb:write_file(p .. "/w", "x")
            assert.is_nil(r, p)
            assert.equal("invalid_input", err.code, p)
          end
          assert.is_nil(io.open(tmp .. "/state/" .. sb.id .. "/w"))
          assert.is_nil(io.open(tmp .. "/state/" .. sb.id .. "/x/w"))
        end)

        it("refuses symlinks that escape, follows those that stay inside", function()
          assert(sb:exec({ "ln", "-s", "/etc", "etc-link" }))
          assert(sb:exec({ "ln", "-s", "../../../../../../..", "data/up" }))
          assert(sb:exec({ "ln", "-s", "data/real.txt", "alias" }))
          for _, p in ipairs({ "etc-link/passwd", "data/up/etc/passwd", "data/up" }) do
            local r, err = sb:read_file(p)
            assert.is_nil(r, p)
            assert.equal("invalid_input", err.code, p)
          end
          local r, err = sb:write_file("data/up/tmp/sandlot-escape", "x")
          assert.is_nil(r)
          assert.equal("invalid_input", err.code)
          assert.is_nil(io.open("/tmp/sandlot-escape"))
          r, err = sb:ls("etc-link")
          assert.is_nil(r)
          assert.equal("invalid_input", err.code)
          assert.equal("real", assert(sb:read_file("alias")))
          -- the link itself can be listed and removed; its target is untouched
          local types = {}
          for _, e in ipairs(assert(sb:ls("/"))) do types[e.name] = e.type end
          assert.equal("symlink", types["etc-link"])
          assert.is_true(sb:rm("etc-link"))
          assert.is_not_nil(io.open("/etc/passwd"))
        end)

        it("refuses to remove the root", function()
          for _, p in ipairs({ "/", ".", "data/.." }) do
            local r, err = sb:rm(p, { recursive = true })
            assert.is_nil(r, p)
            assert.equal("invalid_input", err.code, p)
          end
          assert.equal("real", assert(sb:read_file("data/real.txt")))
        end)

        it("maps absolute paths inside the root", function()
          assert(sb:write_file("/data/abs.txt", "abs"))
          assert.equal("abs", assert(sb:read_file("data/abs.txt")))
          assert.equal("abs", assert(sb:exec({ "cat", "data/abs.txt" })).stdout)
        end)
      end)
    end
  end)

  describe("when bubblewrap is unusable", function()
    before_each(function()
      fresh_config(tmp, { bwrap = "/nonexistent/bwrap" })
    end)

    it("refuses isolation = namespaces with not_supported", function()
      local sb, err = sandlot.create({ isolation = "namespaces" })
      assert.is_nil(sb)
      assert.equal("not_supported", err.code)
      assert.matches("not installed", err.message)
    end)

    it("never ignores network = none", function()
      local sb, err = sandlot.create({ network = "none" })
      assert.is_nil(sb)
      assert.equal("not_supported", err.code)
    end)

    it("falls back to no isolation by default, with a warning", function()
      local sb = assert(sandlot.create())
      assert.equal(1, #sb.warnings)
      assert.matches("isolation unavailable", sb.warnings[1])
      -- unconfined: the command sees the host's tree (this repository, by its absolute path)
      local here = assert(require("sandlot.core.sys").realpath("spec"))
      assert.equal(0, assert(sb:exec({ "test", "-d", here })).exit_code)
      assert.matches("^http://127%.0%.0%.1:8080$", assert(sb:get_url(8080)))
      sb:destroy()
    end)
  end)

  describe("options", function()
    it("refuses network = none without namespaces, and allow-lists", function()
      local sb, err = sandlot.create({ isolation = "none", network = "none" })
      assert.is_nil(sb)
      assert.equal("not_supported", err.code)
      sb, err = sandlot.create({ network = { "example.com" } })
      assert.is_nil(sb)
      assert.equal("not_supported", err.code)
      sb, err = sandlot.create({ isolation = "sideways" })
      assert.is_nil(sb)
      assert.equal("invalid_input", err.code)
      if not ns.why() then    -- unconfined (no namespaces), the host's ports are the sandbox's
        sb, err = sandlot.create({ ports = { 8080 } })
        assert.is_nil(sb)
        assert.equal("invalid_input", err.code)
      end
    end)

    it("warns about advisory options it cannot enforce", function()
      local sb = assert(sandlot.create({ image = "debian:12", cpus = 2, disk_mb = 100 }))
      local advisory = 0
      for _, w in ipairs(sb.warnings) do
        if w:match("^image ") or w:match("^cpus ") or w:match("^disk_mb ") then
          advisory = advisory + 1
        end
      end
      assert.equal(3, advisory, table.concat(sb.warnings, "\n"))
      sb:destroy()
    end)

    ns_it("serves ports on the host's loopback with network = all", function()
      local sb = assert(sandlot.create({ isolation = "namespaces", network = "all" }))
      local port = 20000 + (require("sandlot.core.sys").getpid() % 20000)
      local url = assert(sb:get_url(port))
      assert.equal("http://127.0.0.1:" .. port, url)
      local server = sandlot.spawn(function()
        return sb:exec({ "perl", "-MIO::Socket::INET", "-e", [[
          my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
                                        Listen => 5, ReuseAddr => 1) or die "listen: $!";
          my $c = $s->accept; my $l = <$c>;
          print $c "HTTP/1.0 200 OK\r\nContent-Length: 18\r\n\r\nhello from inside\n";
          close $c;]], tostring(port) }, { timeout = 20 })
      end)
      local body = h.eventually(function()
        local r = sandlot.proc.run({ "curl", "-sf", "--max-time", "2", url })
        return r and r.exit_code == 0 and r.stdout
      end, 15)
      assert.equal("hello from inside\n", body)
      local r = assert(server:join())
      assert.equal(0, r.exit_code)
      sb:destroy()
    end)

    it("applies memory_mb as an address-space limit", function()
      local sb = assert(sandlot.create({ memory_mb = 64 }))
      local r = assert(sb:exec({ "perl", "-e", '$x = "a" x 200_000_000; print "allocated"' }))
      assert.not_equal(0, r.exit_code)
      assert.not_equal("allocated", r.stdout)
      r = assert(sb:exec({ "perl", "-e", '$x = "a" x 1_000_000; print "allocated"' }))
      assert.equal("allocated", r.stdout)
      sb:destroy()
    end)

    ns_it("mounts host directories, read-only when asked", function()
      local src = h.tmpdir()
      local f = assert(io.open(src .. "/in.txt", "w"))
      f:write("from the host")
      f:close()
      local sb = assert(sandlot.create({ isolation = "namespaces", mounts = {
        { source = src, target = "/data", readonly = true } } }))
      assert.equal("from the host", assert(sb:exec({ "cat", "/data/in.txt" })).stdout)
      assert.not_equal(0, assert(sb:exec({ "touch", "/data/new" })).exit_code)
      sb:destroy()
      h.rmtree(src)
      local bad, err = sandlot.create({ isolation = "namespaces", mounts = {
        { source = "/nonexistent-src", target = "/data" } } })
      assert.is_nil(bad)
      assert.equal("not_found", err.code)
    end)

    it("removes a sandbox whose lifetime (timeout) is over #slow", function()
      local sb = assert(sandlot.create({ timeout = 1 }))
      assert.equal("running", sb:status())
      assert(h.eventually(function() return sb:status() == "terminated" end, 5))
      local r, err = sb:exec({ "true" })
      assert.is_nil(r)
      assert.equal("not_found", err.code)
    end)

    it("stops and starts: exec is refused while stopped", function()
      local sb = assert(sandlot.create())
      assert(sb:stop())
      local r, err = sb:exec({ "true" })
      assert.is_nil(r)
      assert.equal("unavailable", err.code)
      assert(sb:start())
      assert.equal(0, assert(sb:exec({ "true" })).exit_code)
      sb:destroy()
    end)

    it("updates env and cwd; refuses what it cannot change", function()
      local sb = assert(sandlot.create({ env = { A = "1", B = "2" } }))
      assert(sb:update({ env = { B = false, C = "3" }, cwd = "work/dir" }))
      local r = assert(sb:exec('printf "%s|%s|%s|" "$A" "${B-unset}" "$C"; pwd'))
      assert.matches("^1|unset|3|.*work/dir\n$", r.stdout)
      local ok, err = sb:update({ memory_mb = 10 })
      assert.is_nil(ok)
      assert.equal("not_supported", err.code)
      sb:destroy()
    end)
  end)

  describe("handles", function()
    it("refuses ids that are not its own and directories that are not sandboxes", function()
      local sb = assert(sandlot.create())
      local m = sandlot.to_map(sb)
      m.id, m.handle.id = "../escape", "../escape"
      local bad = assert(sandlot.from_map(m))
      local r, err = bad:exec({ "true" })
      assert.is_nil(r)
      assert.equal("invalid_input", err.code)
      assert(require("sandlot.fs").mkdir_p(tmp .. "/state/notasandbox"))
      m.id, m.handle.id = "notasandbox", "notasandbox"
      local other = assert(sandlot.from_map(m))
      r, err = other:destroy()
      assert.is_nil(r)
      assert.equal("invalid_input", err.code)
      assert.is_not_nil(require("sandlot.fs").stat(tmp .. "/state/notasandbox"))
      sb:destroy()
    end)

    it("keeps state in a private directory, settings out of reach of the sandbox", function()
      local sb = assert(sandlot.create({ env = { API_TOKEN = "s3cr3t" } }))
      local st = assert(require("sandlot.fs").stat(tmp .. "/state/" .. sb.id))
      assert.equal(tonumber("700", 8), st.mode)
      local meta = assert(require("sandlot.fs").stat(tmp .. "/state/" .. sb.id .. "/sandbox.json"))
      assert.equal(tonumber("600", 8), meta.mode)
      local r, err = sb:read_file("../sandbox.json")
      assert.is_nil(r)
      assert.equal("invalid_input", err.code)
      local json = require("cjson").encode(sandlot.to_map(sb))
      assert.is_nil(json:find("s3cr3t", 1, true))
      sb:destroy()
    end)
  end)
end)
