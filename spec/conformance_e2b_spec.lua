-- spec/conformance_e2b_spec.lua: the conformance suite against the e2b provider, run as a user
-- runs it (`sandlot check-provider` pointed at a config), on the strict fake of E2B
-- (spec/fakes/e2b.lua) served by this test runner. The API key comes from E2B_API_KEY and
-- envd's address from E2B_SANDBOX_URL, the SDK's variables; neither may appear in the output.
local sandlot = require("sandlot")
local h = require("spec.helper")
local json = require("sandlot.wire.json")

describe("e2b provider (check-provider on the fake)", function()
  local f, tmp, cfg

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.e2b").start{}
    tmp = h.tmpdir()
    cfg = tmp .. "/sandlot.config.lua"
    local out = assert(io.open(cfg, "w"))
    out:write(("return { providers = { ['e2b-fake'] = { 'e2b', api_url = %q } } }\n")
              :format(f.url))
    out:close()
  end)

  lazy_teardown(function()
    if f then f.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  it("passes every case, and the fake refused no request as malformed #slow", function()
    local ns_why = require("spec.support.namespaces").skip()  -- fake sandboxes need their own /
    if ns_why then return pending(ns_why) end
    if not f then return pending("needs sandlot.http.serve (branch h1-serve)") end
    local env = { SANDLOT_CONFIG = cfg, SANDLOT_PROVIDER = false, XDG_STATE_HOME = tmp,
                  E2B_API_KEY = f.token, E2B_SANDBOX_URL = f.sandbox_url,
                  E2B_API_URL = false, E2B_DOMAIN = false }
    local rc, out, err = h.host({ "check-provider", "e2b-fake", "--json", "--label", "e2b" },
                                { env = env, timeout = 900 })
    local doc = json.decode(out)
    assert(doc, "check-provider printed no JSON: " .. out .. err)
    local failed = {}
    for _, t in ipairs(doc.tests) do
      if t.status ~= "passed" then
        failed[#failed + 1] = ("%s %s: %s"):format(t.status, t.name, tostring(t.message))
      end
    end
    assert.equal(0, #failed, table.concat(failed, "\n"))
    assert.equal(0, rc, err)
    assert.is_true(doc.summary.passed >= 40)
    assert.equal(0, doc.summary.pending)              -- spawn and list run too
    assert.is_nil((out .. err):find(f.token, 1, true), "the API key is in the output")
    -- nothing malformed reached the fake; what it denied (missing files, a missing cwd or
    -- program, an existing directory made again) the suite provokes on purpose
    assert.same({}, f.rejected())
    assert.is_true(#f.fake.denied >= 5)
    assert.is_true(f.fake.created >= 5)
  end)
end)
