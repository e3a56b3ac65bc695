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

    it("refuses network = 'none'", function()
      if not srv then return pending(why) end
      local sb, err = sandlot.create("conf-ssh", { network = "none" })
      assert.is_nil(sb)
      assert.equal("not_supported", err.code)
    end)
  end)
end)
