-- spec/conformance_vercel_spec.lua: the conformance suite against the vercel provider, run as a
-- user runs it (`sandlot check-provider` pointed at a config), on the strict fake of Vercel
-- (spec/fakes/vercel.lua) served by this test runner. The token, team and project come from
-- VERCEL_TOKEN, VERCEL_TEAM_ID and VERCEL_PROJECT_ID, the SDK's variables; the token may not
-- appear in the output.
local sandlot = require("sandlot")
local h = require("spec.helper")
local json = require("sandlot.wire.json")

describe("vercel provider (check-provider on the fake)", function()
  local f, tmp, cfg

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.vercel").start{}
    tmp = h.tmpdir()
    cfg = tmp .. "/sandlot.config.lua"
    local out = assert(io.open(cfg, "w"))
    out:write(("return { providers = { ['vercel-fake'] = { 'vercel', api_url = %q } } }\n")
              :format(f.url))
    out:close()
  end)

  lazy_teardown(function()
    if f then f.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  it("passes every case, and the fake refused no request as malformed #slow", function()
    if not f then return pending("needs sandlot.http.serve") end
    local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
    if ns_why then return pending(ns_why) end
    local env = { SANDLOT_CONFIG = cfg, SANDLOT_PROVIDER = false, XDG_STATE_HOME = tmp,
                  VERCEL_TOKEN = f.token, VERCEL_TEAM_ID = f.team, VERCEL_PROJECT_ID = f.project,
                  VERCEL_OIDC_TOKEN = false }
    local rc, out, err = h.host({ "check-provider", "vercel-fake", "--json", "--label", "vercel" },
                                { env = env, timeout = 900 })
    local doc = json.decode(out)
    assert(doc, "check-provider printed no JSON: " .. out .. err)
    local failed = {}
    for _, t in ipairs(doc.tests) do
      if t.status == "failed" or t.status == "error" then
        failed[#failed + 1] = ("%s %s: %s"):format(t.status, t.name, tostring(t.message))
      end
    end
    assert.equal(0, #failed, table.concat(failed, "\n"))
    assert.equal(0, rc, err)
    assert.is_true(doc.summary.passed >= 40)
    assert.is_nil((out .. err):find(f.token, 1, true), "the token is in the output")
    -- nothing malformed reached the fake, and every request carried the SDK's content type;
    -- what it denied (missing files, a read of a directory) the suite provokes on purpose
    assert.same({}, f.rejected())
    assert.same({}, f.fake.quirks)
    assert.is_true(#f.fake.denied >= 2)
    assert.is_true(f.fake.created >= 5)
  end)
end)
