-- spec/conformance_namespace_spec.lua: the conformance suite against the namespace provider,
-- run as a user runs it (`sandlot check-provider` pointed at a config), on the strict fake of
-- Namespace (spec/fakes/namespace.lua) served by this test runner. The token comes from
-- NSC_TOKEN; it may not appear in the output.
local sandlot = require("sandlot")
local h = require("spec.helper")
local json = require("sandlot.wire.json")

describe("namespace provider (check-provider on the fake)", function()
  local f, tmp, cfg

  lazy_setup(function()
    if not sandlot.http.serve then return end
    f = require("spec.fakes.namespace").start{}
    tmp = h.tmpdir()
    cfg = tmp .. "/sandlot.config.lua"
    local out = assert(io.open(cfg, "w"))
    out:write(("return { providers = { ['namespace-fake'] = { 'namespace', api_url = %q } } }\n")
              :format(f.url))
    out:close()
  end)

  lazy_teardown(function()
    if f then f.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  it("passes every case, and the fake refused no request as malformed #slow", function()
    if not f then return pending("needs sandlot.http.serve") end
    local ns_why = require("spec.support.namespaces").skip()  -- fake instances need their own /
    if ns_why then return pending(ns_why) end
    local env = { SANDLOT_CONFIG = cfg, SANDLOT_PROVIDER = false, XDG_STATE_HOME = tmp,
                  NSC_TOKEN = f.token, NSC_TOKEN_FILE = false }
    local rc, out, err = h.host({ "check-provider", "namespace-fake", "--json", "--label",
                                  "namespace" }, { env = env, timeout = 900 })
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
    -- nothing malformed reached the fake, every call carried Connect-Protocol-Version, and
    -- what it denied (a destroyed instance's calls) the suite provokes on purpose
    assert.same({}, f.rejected())
    assert.same({}, f.fake.quirks)
    assert.is_true(#f.fake.denied >= 1)
    assert.is_true(f.fake.created >= 5)
  end)
end)
