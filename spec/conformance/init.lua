-- spec/conformance: the behaviour every provider must show, as one busted suite parameterised
-- by provider. `require("spec.conformance")(target)` declares the tests for
-- target = {
--   provider = "local" | "name" | "path/to/provider.lua" | provider table,
--   label = "shown in test names" (default: the provider),
--   create = {extra create options} (default {}),
--   network_create = {create options giving a sandbox a network, for get_url} or false,
--   big_file_mb = 50,
-- }
-- Optional operations a provider lacks must return not_supported: the suite checks that
-- instead of skipping. Used by spec/conformance_*_spec.lua and `sandlot check-provider`.
local sandlot = require("sandlot")
local redact = require("sandlot._redact")
local rules = require("spec.conformance.rules")

local ok_cjson, cjson = pcall(require, "cjson")

return function(target)
  -- busted gives spec files these as globals of their own environment, not of this module's
  local busted = require("busted")
  local describe = busted.describe
  -- target.skip(): a reason (no daemon, no namespaces) makes every case pending with it; it is
  -- asked when the cases are about to run, after the spec's own setup
  local skip_reason
  local function it(name, fn)
    return busted.it(name, function(...)
      if skip_reason then require("spec.conformance.pending")(skip_reason) end
      return fn(...)
    end)
  end
  local lazy_setup, lazy_teardown = busted.lazy_setup, busted.lazy_teardown
  local assert = require("luassert")
  local label = target.label or tostring(target.provider)
  local big_mb = target.big_file_mb or 50

  local created = {}          -- destroyed at the end even when a test fails half-way

  local function create(extra)
    local opts = {}
    for k, v in pairs(target.create or {}) do opts[k] = v end
    for k, v in pairs(extra or {}) do opts[k] = v end
    local sb, err = sandlot.create(target.provider, opts)
    assert(sb, "create failed: " .. tostring(err))
    created[#created + 1] = sb
    return sb
  end

  local function all_bytes(times)
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    return table.concat(t):rep(times)
  end

  describe("conformance: " .. label, function()
    local sb

    lazy_setup(function()
      skip_reason = target.skip and target.skip() or nil
      if skip_reason then return end
      sb = create()
    end)

    lazy_teardown(function()
      for _, s in ipairs(created) do s:destroy() end
    end)

    describe("lifecycle", function()
      it("creates a running sandbox with a string id", function()
        assert.is_string(sb.id)
        assert.equal("running", sb:status())
        assert.is_true(sb:await_ready({ timeout = 30 }))
      end)

      it("rejects unknown create and exec options (misuse raises)", function()
        assert.has_error(function() sandlot.create(target.provider, { imaeg = "x" }) end)
        assert.has_error(function() sb:exec({ "true" }, { timout = 1 }) end)
        assert.has_error(function() sb:exec({}) end)
      end)

      it("destroys idempotently; status is terminated afterwards; ops fail not_found",
        function()
          local s = create()
          assert.is_true(s:destroy())
          assert.is_true(s:destroy())
          assert.equal("terminated", s:status())
          local r, err = s:exec({ "true" })
          assert.is_nil(r)
          assert.equal("not_found", err.code)
        end)

      it("reports terminated for a restored handle whose sandbox is gone", function()
        local s = create()
        local m = sandlot.to_map(s)
        assert.is_true(s:destroy())
        local back = assert(sandlot.from_map(m))
        assert.equal("terminated", back:status())
        local r, err = back:reconnect()
        assert.is_nil(r)
        assert.equal("not_found", err.code)
        assert.is_true(back:destroy())
      end)

      it("stop/start pause and resume, or say not_supported", function()
        local caps = sandlot.caps(sb)
        if caps.stop == "not_supported" then
          local r, err = sb:stop()
          assert.is_nil(r)
          assert.equal("not_supported", err.code)
          assert.equal("not_supported", select(2, sb:start()).code)
          return
        end
        local s = create()
        assert.truthy(s:stop())
        assert.equal("stopped", s:status())
        assert.truthy(s:start())
        assert.is_true(s:await_ready({ timeout = 60 }))
        assert.equal("running", s:status())
        assert.equal(0, assert(s:exec({ "true" })).exit_code)
        s:destroy()
      end)

      it("update and ssh_opts work or say not_supported", function()
        local caps = sandlot.caps(sb)
        for _, op in ipairs({ "update", "ssh_opts" }) do
          if caps[op] == "not_supported" then
            local r, err = sandlot[op](sb, {})
            assert.is_nil(r)
            assert.equal("not_supported", err.code)
          end
        end
        if caps.update == "native" then
          local s = create()
          assert(s:update({ env = { CONF_UPDATED = "yes" } }))
          assert.equal("yes\n", assert(s:exec("echo $CONF_UPDATED")).stdout)
          s:destroy()
        end
      end)

      it("get_url returns a URL, or not_supported", function()
        local caps = sandlot.caps(sb)
        if caps.get_url == "not_supported" or target.network_create == false then
          local r, err = sb:get_url(8080)
          if caps.get_url == "not_supported" then
            assert.is_nil(r)
            assert.equal("not_supported", err.code)
          end
          return
        end
        local s = create(target.network_create or { network = "all" })
        local url = assert(s:get_url(8080))
        assert.matches("^https?://[^/]+", url)
        s:destroy()
      end)
    end)

    describe("exec", function()
      it("returns exit codes with stdout and stderr kept apart", function()
        local r = assert(sb:exec({ "sh", "-c", "echo out; echo err >&2; exit 3" }))
        assert.same({ 3, "out\n", "err\n", false },
                    { r.exit_code, r.stdout, r.stderr, r.timed_out })
        assert.is_number(r.duration)
        assert.equal(0, assert(sb:exec({ "true" })).exit_code)
      end)

      it("runs a string through the shell", function()
        local r = assert(sb:exec("x=4; echo $((x * 10)) | tr 0 o"))
        assert.equal("4o\n", r.stdout)
      end)

      it("passes argv with spaces, quotes, globs, variables and unicode untouched", function()
        local args = { "a b", "it's", '"q"', "$HOME", "*", "ünï👍", "", "-n", "a\nb" }
        local argv = { "printf", "[%s]" }
        for _, a in ipairs(args) do argv[#argv + 1] = a end
        local r = assert(sb:exec(argv))
        local want = {}
        for _, a in ipairs(args) do want[#want + 1] = "[" .. a .. "]" end
        assert.equal(table.concat(want), r.stdout)
      end)

      it("sets env from create and from exec; exec wins", function()
        local s = create({ env = { CONF_A = "from create", CONF_B = "b" } })
        local r = assert(s:exec({ "sh", "-c", 'printf "%s|%s|%s" "$CONF_A" "$CONF_B" "$CONF_C"' },
                                { env = { CONF_B = "from exec", CONF_C = "c d" } }))
        assert.equal("from create|from exec|c d", r.stdout)
        s:destroy()
      end)

      it("env = {X = false} removes X", function()
        rules.env_false(create)
      end)

      it("does not leak the host environment (a canary planted in it)", function()
        rules.no_host_env(sb)
      end)

      it("returns a result of the documented shape", function()
        rules.result_shape(sb)
      end)

      it("runs in cwd (relative to the sandbox)", function()
        assert(sb:write_file("conf-cwd/sub dir/marker.txt", "here"))
        local r = assert(sb:exec({ "cat", "marker.txt" }, { cwd = "conf-cwd/sub dir" }))
        assert.equal("here", r.stdout)
      end)

      it("fails not_found for a missing cwd", function()
        local r, err = sb:exec({ "true" }, { cwd = "conf-no-such-dir" })
        assert.is_nil(r)
        assert.equal("not_found", err.code)
      end)

      it("reports a missing binary as not_found (or exit 127 from a shell)", function()
        local r, err = sb:exec({ "conf-no-such-binary-xyz" })
        if r then
          assert.equal(127, r.exit_code)
        else
          assert.equal("not_found", err.code)
        end
      end)

      it("feeds stdin, binary-safe", function()
        local data = all_bytes(64)
        local r = assert(sb:exec({ "cat" }, { stdin = data }))
        assert.equal(data, r.stdout)
      end)

      it("streams output chunks to on_stdout / on_stderr", function()
        local out, err = {}, {}
        local r = assert(sb:exec({ "sh", "-c", "for i in 1 2 3; do echo o$i; echo e$i >&2; done" },
          { on_stdout = function(c) out[#out + 1] = c end,
            on_stderr = function(c) err[#err + 1] = c end }))
        assert.equal("o1\no2\no3\n", table.concat(out))
        assert.equal("e1\ne2\ne3\n", table.concat(err))
        assert.equal(0, r.exit_code)
      end)

      it("times out: timed_out = true, and the command and its children are gone", function()
        local r = assert(sb:exec({ "sh", "-c", "sleep 30 & sleep 30; echo never" },
                                 { timeout = 0.5 }))
        assert.is_true(r.timed_out)
        assert.not_equal(0, r.exit_code)
        assert.equal("", r.stdout)
      end)

      it("caps output per stream and says truncated", function()
        local script = "head -c 300000 /dev/zero | tr '\\0' x; echo e >&2"
        local r = assert(sb:exec({ "sh", "-c", script }, { max_output = 1000 }))
        assert.is_true(r.truncated)
        assert.is_true(#r.stdout <= 1000)
        assert.is_true(#r.stdout > 0)
        assert.equal("e\n", r.stderr)
      end)
    end)

    describe("files", function()
      it("round-trips every byte value", function()
        local data = all_bytes(4)
        assert.is_true(sb:write_file("conf-files/bytes.bin", data))
        assert.equal(data, assert(sb:read_file("conf-files/bytes.bin")))
        local r = assert(sb:exec({ "sh", "-c", "wc -c < conf-files/bytes.bin" }))
        assert.equal(1024, tonumber(r.stdout))
      end)

      it("moves host files both ways (read_file opts.to, write_file opts.from)", function()
        local data = all_bytes(4096) .. "tail"               -- 1 MiB and a little: two chunks
        local from = os.tmpname()
        local to = from .. ".back"
        local f = assert(io.open(from, "wb"))
        f:write(data)
        f:close()
        assert.is_true(sb:write_file("conf-files/host.bin", nil, { from = from }))
        assert.equal(#data, assert(sb:read_file("conf-files/host.bin", { to = to })))
        f = assert(io.open(to, "rb"))
        local back = f:read("a")
        f:close()
        assert.is_true(back == data, "the file read back differs")
        -- a failed read leaves the destination as it was and no partial file beside it
        local rn, rerr = sb:read_file("conf-files/missing.bin", { to = to })
        assert.is_nil(rn)
        assert.equal("not_found", rerr.code)
        f = assert(io.open(to, "rb"))
        assert.equal(#data, #f:read("a"))
        f:close()
        local dir, base = to:match("^(.*)/([^/]+)$")
        local p = assert(io.popen("ls -a " .. dir))
        for name in p:lines() do
          assert.is_nil(name:find(base .. ".sandlot-", 1, true) and name, "partial file left")
        end
        p:close()
        local wn, werr = sb:write_file("conf-files/x.bin", nil, { from = from .. ".none" })
        assert.is_nil(wn)
        assert.equal("not_found", werr.code)
        os.remove(from)
        os.remove(to)
      end)

      it("writes and reads an empty file", function()
        assert.is_true(sb:write_file("conf-files/empty", ""))
        assert.equal("", assert(sb:read_file("conf-files/empty")))
      end)

      it("overwrites a file", function()
        assert(sb:write_file("conf-files/over", "long content here"))
        assert(sb:write_file("conf-files/over", "short"))
        assert.equal("short", assert(sb:read_file("conf-files/over")))
      end)

      it(("handles a %d MB file #slow"):format(big_mb), function()
        local data = ("0123456789abcdef"):rep(big_mb * 65536)
        assert.is_true(sb:write_file("conf-files/big.dat", data))
        local back = assert(sb:read_file("conf-files/big.dat"))
        assert.equal(#data, #back)
        assert.is_true(data == back)
        back = nil   -- luacheck: ignore 311 (frees 50 MB before the next step)
        local r = assert(sb:exec({ "sh", "-c", "wc -c < conf-files/big.dat" }))
        assert.equal(#data, tonumber(r.stdout))
        assert(sb:rm("conf-files/big.dat"))
      end)

      it("handles unicode file names", function()
        local name = "conf-uni/dír ünï/👍 file.txt"
        assert.is_true(sb:write_file(name, "ok"))
        assert.equal("ok", assert(sb:read_file(name)))
        local names = {}
        for _, e in ipairs(assert(sb:ls("conf-uni/dír ünï"))) do names[#names + 1] = e.name end
        assert.same({ "👍 file.txt" }, names)
        local r = assert(sb:exec({ "cat", "👍 file.txt" }, { cwd = "conf-uni/dír ünï" }))
        assert.equal("ok", r.stdout)
      end)

      it("sets the mode", function()
        assert(sb:write_file("conf-files/run.sh", "#!/bin/sh\necho ran\n", { mode = "755" }))
        local r = assert(sb:exec({ "./conf-files/run.sh" }))
        assert.equal("ran\n", r.stdout)
        local entries = assert(sb:ls("conf-files"))
        local mode
        for _, e in ipairs(entries) do if e.name == "run.sh" then mode = e.mode end end
        assert.equal(tonumber("755", 8), mode)
      end)

      it("lists a directory: name, type, size, mode, mtime, sorted", function()
        assert(sb:mkdir("conf-ls/sub", { parents = true }))
        assert(sb:write_file("conf-ls/b.txt", "12345"))
        assert(sb:write_file("conf-ls/a.txt", ""))
        local entries = assert(sb:ls("conf-ls"))
        assert.same({ "a.txt", "b.txt", "sub" },
                    { entries[1].name, entries[2].name, entries[3].name })
        assert.equal(3, #entries)
        assert.equal("file", entries[2].type)
        assert.equal(5, entries[2].size)
        assert.equal("directory", entries[3].type)
        for _, e in ipairs(entries) do
          assert.is_number(e.mode)
          assert.is_number(e.mtime)
          assert.is_true(e.mtime > 1500000000)
        end
      end)

      it("mkdir: parents, already_exists, missing parent", function()
        assert.is_true(sb:mkdir("conf-mk"))
        local r, err = sb:mkdir("conf-mk")
        assert.is_nil(r)
        assert.equal("already_exists", err.code)
        r, err = sb:mkdir("conf-mk/missing/child")
        assert.is_nil(r)
        assert.equal("not_found", err.code)
        assert.is_true(sb:mkdir("conf-mk/missing/child", { parents = true }))
        assert.is_true(sb:mkdir("conf-mk/missing/child", { parents = true }))
        assert.equal("directory", assert(sb:ls("conf-mk/missing"))[1].type)
      end)

      it("rm: files, empty and full directories, missing paths", function()
        assert(sb:write_file("conf-rm/full/f.txt", "x"))
        assert(sb:mkdir("conf-rm/empty"))
        assert(sb:write_file("conf-rm/file", "x"))
        assert.is_true(sb:rm("conf-rm/file"))
        assert.is_true(sb:rm("conf-rm/empty"))
        local r, err = sb:rm("conf-rm/full")
        assert.is_nil(r)
        assert.equal("invalid_input", err.code)
        assert.is_true(sb:rm("conf-rm/full", { recursive = true }))
        assert.same({}, assert(sb:ls("conf-rm")))
        r, err = sb:rm("conf-rm/nothing")
        assert.is_nil(r)
        assert.equal("not_found", err.code)
      end)

      it("reports missing files and directories as not_found", function()
        local r, err = sb:read_file("conf-missing/nope.txt")
        assert.is_nil(r)
        assert.equal("not_found", err.code)
        r, err = sb:ls("conf-missing-dir")
        assert.is_nil(r)
        assert.equal("not_found", err.code)
      end)

      -- "/" is the sandbox's root on every provider; a relative path's base is the provider's
      -- (local: the root, docker: the working directory), so climbs from it are in each
      -- provider's own specs.
      it("refuses a path whose '..' climbs above the sandbox root (invalid_input)", function()
        for _, path in ipairs({ "/../conf-escape", "/conf-ok/../../conf-escape", "/.." }) do
          local ops = {
            read_file = function() return sb:read_file(path) end,
            write_file = function() return sb:write_file(path, "x") end,
            ls = function() return sb:ls(path) end,
            mkdir = function() return sb:mkdir(path, { parents = true }) end,
            rm = function() return sb:rm(path, { recursive = true }) end,
            write_files = function() return sb:write_files({ { path, "x" } }) end,
            exec_cwd = function() return sb:exec({ "true" }, { cwd = path }) end,
          }
          for name, op in pairs(ops) do
            local r, err = op()
            assert.is_nil(r, name .. " " .. path)
            assert.equal("invalid_input", err and err.code, name .. " " .. path)
          end
        end
      end)

      it("refuses to read a directory or list a file (invalid_input)", function()
        assert(sb:write_file("conf-kind/file.txt", "x"))
        local r, err = sb:read_file("conf-kind")
        assert.is_nil(r)
        assert.equal("invalid_input", err.code)
        r, err = sb:ls("conf-kind/file.txt")
        assert.is_nil(r)
        assert.equal("invalid_input", err.code)
      end)

      it("writes a batch with write_files", function()
        assert.is_true(sb:write_files({
          { "conf-batch/one.txt", "1" },
          { path = "conf-batch/deep/two.txt", data = "22" },
          { "conf-batch/three.bin", all_bytes(1) },
        }))
        assert.equal("1", assert(sb:read_file("conf-batch/one.txt")))
        assert.equal("22", assert(sb:read_file("conf-batch/deep/two.txt")))
        assert.equal(all_bytes(1), assert(sb:read_file("conf-batch/three.bin")))
      end)

      it("files written by commands are readable, and the other way round", function()
        assert(sb:exec({ "sh", "-c", "mkdir -p conf-x && printf 'from exec' > conf-x/a" }))
        assert.equal("from exec", assert(sb:read_file("conf-x/a")))
        assert(sb:write_file("conf-x/b", "from api"))
        assert.equal("from api", assert(sb:exec({ "cat", "conf-x/b" })).stdout)
      end)
    end)

    describe("handles", function()
      it("round-trip through to_map/JSON/from_map and reconnect", function()
        assert(sb:write_file("conf-map/state.txt", "kept"))
        local m = sandlot.to_map(sb)
        assert.equal(1, m.version)
        assert.equal(sb.id, m.id)
        local t = m
        if ok_cjson then t = cjson.decode(cjson.encode(m)) end
        local back = assert(sandlot.from_map(t))
        assert.equal(sb.id, back.id)
        assert.equal(back, assert(back:reconnect()))
        assert.equal("kept", assert(back:read_file("conf-map/state.txt")))
        assert.equal("hi\n", assert(back:exec({ "echo", "hi" })).stdout)
      end)

      it("to_map holds no secrets from the provider's config", function()
        local m = sandlot.to_map(sb)
        local text = ok_cjson and cjson.encode(m) or tostring(m)
        for k, v in pairs(sb._ctx.config or {}) do
          if redact.is_secret(k) and type(v) == "string" and #v > 3 then
            assert.is_nil(text:find(v, 1, true), "secret config value '" .. k .. "' in to_map")
          end
        end
        local function walk(t)
          for k, v in pairs(t) do
            assert.is_false(redact.is_secret(k), "secret-named key in to_map: " .. tostring(k))
            if type(v) == "table" then walk(v) end
          end
        end
        walk(m)
      end)

      it("from_map rejects what is not a sandbox map", function()
        local r, err = sandlot.from_map({ version = 99, provider = "x" })
        assert.is_nil(r)
        assert.equal("invalid_input", err.code)
      end)
    end)

    require("spec.conformance.process")({ target = target, label = label, create = create, it = it,
                                          sb = function() return sb end,
                                          all_bytes = all_bytes })

    describe("telemetry", function()
      it("emits start and stop spans for each operation, with metadata", function()
        local events = {}
        sandlot.telemetry.attach("conformance", { { "sandlot", "*", "*" } },
          function(ev, _, meta) events[#events + 1] = { ev[2], ev[3], meta } end)
        local ok, perr = pcall(function()
          local s = create()
          assert(s:exec({ "true" }))
          assert(s:write_file("t.txt", "x"))
          assert(s:read_file("t.txt"))
          assert(s:ls("."))
          assert(s:mkdir("tdir"))
          assert(s:rm("tdir"))
          assert(s:status())
          local r = s:read_file("no-such-file")
          assert.is_nil(r)
          assert(s:destroy())
        end)
        sandlot.telemetry.detach("conformance")
        assert(ok, perr)
        local seen = {}
        for _, e in ipairs(events) do
          seen[e[1] .. "." .. e[2]] = e[3]
        end
        for _, op in ipairs({ "create", "exec", "write_file", "read_file", "ls", "mkdir", "rm",
                              "status", "destroy" }) do
          assert.is_table(seen[op .. ".start"], "no start event for " .. op)
          assert.is_table(seen[op .. ".stop"], "no stop event for " .. op)
          assert.is_not_nil(seen[op .. ".stop"].provider, op .. ": no provider metadata")
        end
        assert.is_string(seen["exec.stop"].sandbox)
        assert.equal("true", seen["exec.stop"].command)
        assert.equal("t.txt", seen["write_file.stop"].path)
        assert.equal("not_found", seen["read_file.exception"].error)
      end)
    end)
  end)
end
