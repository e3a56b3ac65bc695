-- spec/conformance_daytona_spec.lua: the conformance suite against the daytona provider, run as a
-- user runs it: `sandlot check-provider` pointed at a config whose api_url is the strict fake
-- (spec/fakes/daytona.lua, served by this process; the key comes from the environment).
local http = require("sandlot.http")
local h = require("spec.helper")
local fakes = require("spec.fakes.daytona")

describe("daytona provider (strict fake) #daytona", function()
  local srv, tmp, cfg

  lazy_setup(function()
    if not http.serve then return end
    srv = fakes.start({ start_delay = 0.2 })
    tmp = h.tmpdir()
    cfg = tmp .. "/sandlot.config.lua"
    local f = assert(io.open(cfg, "w"))
    f:write(([[
return { providers = {
  ["conf-daytona"] = { "daytona", api_url = %q, api_key = env "SANDLOT_SPEC_DAYTONA_KEY",
                       create_timeout = 30 },
} }
]]):format(srv.api_url))
    f:close()
  end)

  lazy_teardown(function()
    if srv then srv.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  it("passes the conformance suite through sandlot check-provider", function()
    local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
    if ns_why then return pending(ns_why) end
    if not srv then return pending("needs sandlot.http.serve (branch h1-serve)") end
    local rc, out, err = h.host({ "check-provider", "conf-daytona", "--big-file-mb", "50" }, {
      env = { SANDLOT_CONFIG = cfg, SANDLOT_SPEC_DAYTONA_KEY = srv.token,
              XDG_STATE_HOME = tmp .. "/state", SANDLOT_PROVIDER = false },
      timeout = 600 })
    assert.equal(0, rc, out .. err)
    assert.matches("provider conf-daytona\n", out, 1, true)
    assert.matches("  read_file    native\n", out, 1, true)
    assert.matches("\ntests: %d+ passed, 0 failed, 0 pending\n$", out)
    assert.is_true(#srv.fake.order >= 5, "the suite did not reach the fake")
    assert.is_nil((out .. err):find(srv.token, 1, true), "the key was printed")
  end)
end)
