-- spec/conformance_ssh_spec.lua: the conformance suite against the ssh provider, on the sshd
-- spec/support/sshd.lua starts (tagged #ssh; pending without sshd, a failure when CI is set).
local sandlot = require("sandlot")
local conformance = require("spec.conformance")
local sshd = require("spec.support.sshd")

describe("ssh provider #ssh", function()
  local srv, why

  lazy_setup(function()
    srv, why = sshd.start()
    if srv then
      sandlot.config.set({ providers = {
        ["conf-ssh"] = { "ssh", host = srv.host, port = srv.port, user = srv.user,
                         key_file = srv.key, known_hosts = srv.known_hosts, agent = false,
                         base_dir = srv.dir .. "/sandboxes" },
        ["conf-ssh-host"] = { "ssh", host = srv.host, port = srv.port, user = srv.user,
                              key_file = srv.key, known_hosts = srv.known_hosts, agent = false,
                              base_dir = srv.dir .. "/sandboxes" },
      } })
    end
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if srv then srv:stop() end
  end)

  it("has an sshd", function()
    if not srv then
      if os.getenv("CI") then error("sshd is required in CI: " .. tostring(why)) end
      pending(why)
    end
  end)

  conformance({ provider = "conf-ssh", label = "ssh" })

  describe("specifics", function()
    it("keeps sandboxes in private directories and removes them on destroy", function()
      if not srv then return pending(why) end
      local sb = assert(sandlot.create("conf-ssh", {}))
      local o = assert(sb:ssh_opts())
      assert.equal(srv.port, o.port)
      assert.matches("/sandboxes/ssh%-%x+/work$", o.workdir)
      assert.truthy(o.command:find("ssh", 1, true))
      assert.equal(o.workdir .. "\n", assert(sb:exec({ "pwd" })).stdout)
      local st = assert(sandlot.proc.run({ "stat", "-c", "%a", o.workdir .. "/.." }))
      assert.equal("700\n", st.stdout)
      local r, err = sb:read_file("../env")
      assert.is_nil(r)
      assert.equal("invalid_input", err.code)
      assert(sb:destroy())
      assert.is_nil(io.open(o.workdir))
    end)

    it("runs on the whole host with workdir = '/'", function()
      if not srv then return pending(why) end
      local sb = assert(sandlot.create("conf-ssh-host", { workdir = "/" }))
      assert.equal("/\n", assert(sb:exec({ "pwd" })).stdout)
      assert.truthy(assert(sb:read_file("/etc/hostname")))
      assert(sb:destroy())
      assert.truthy(io.open("/etc/hostname"))             -- destroy never touches "/"
    end)

    it("passes env verbatim (quotes, newlines, $, backslashes) with cwd, in one exec",
       function()
      if not srv then return pending(why) end
      local tricky = "it's \"q\" $HOME `id` \\n\nline2; exit 7 #"
      local sb = assert(sandlot.create("conf-ssh", { env = { SB_A = tricky, SB_B = "sb" },
                                                     cwd = "sub dir" }))
      local show = { "sh", "-c", 'printf "%s|%s|%s|%s" "$SB_A" "$SB_B" "${EX_C-}" "$(pwd)"' }
      local r = assert(sb:exec(show))
      local root = assert(sb:ssh_opts()).workdir
      assert.equal(tricky .. "|sb||" .. root .. "/sub dir", r.stdout)
      r = assert(sb:exec(show, { env = { SB_B = tricky, EX_C = "$x'y" }, cwd = "/" }))
      assert.equal(tricky .. "|" .. tricky .. "|$x'y|" .. root, r.stdout)
      -- no env at all: nothing leaks from an earlier exec, and builtins still work
      local plain = assert(sandlot.create("conf-ssh", {}))
      r = assert(plain:exec({ "sh", "-c", 'printf "%s" "${SB_A-unset}${EX_C-unset}"' }))
      assert.equal("unsetunset", r.stdout)
      assert.equal("hello\n", assert(plain:exec({ "echo", "hello" })).stdout)
      local _, err = plain:exec({ "true" }, { cwd = "no-such" })
      assert.equal("not_found", err.code)
      assert.matches("no%-such", tostring(err))
      assert(plain:destroy())
      assert(sb:destroy())
    end)

    it("still reports a signal death through the provider", function()
      if not srv then return pending(why) end
      local sb = assert(sandlot.create("conf-ssh", {}))
      local r = assert(sb:exec({ "sh", "-c", "kill -KILL $$" }))
      assert.same({ 9, 137 }, { r.signal, r.exit_code })
      assert(sb:destroy())
    end)

    it("refuses network = 'none'", function()
      if not srv then return pending(why) end
      local sb, err = sandlot.create("conf-ssh", { network = "none" })
      assert.is_nil(sb)
      assert.equal("not_supported", err.code)
    end)
  end)
end)
