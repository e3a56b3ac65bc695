-- spec/conformance_kubernetes_spec.lua: the conformance suite against the kubernetes provider,
-- run as a user runs it (`sandlot check-provider` pointed at a config), on the strict fake of
-- the API server (spec/fakes/kubernetes.lua) served by this test runner, through a kubeconfig
-- that holds the fake's bearer token; the token may not appear in the output.
local sandlot = require("sandlot")
local h = require("spec.helper")
local json = require("sandlot.wire.json")

describe("kubernetes provider (check-provider on the fake)", function()
  local k, tmp, cfg

  lazy_setup(function()
    if not sandlot.http.serve then return end
    k = require("spec.fakes.kubernetes").start{}
    tmp = h.tmpdir()
    local kc = k.kubeconfig(tmp .. "/kubeconfig")
    cfg = tmp .. "/sandlot.config.lua"
    local out = assert(io.open(cfg, "w"))
    out:write(("return { providers = { ['kube-fake'] = { 'kubernetes', kubeconfig = %q, " ..
               "image = 'busybox' } } }\n"):format(kc))
    out:close()
  end)

  lazy_teardown(function()
    if k then k.stop() end
    if tmp then h.rmtree(tmp) end
  end)

  it("passes every case, and the fake refused no request as malformed #slow", function()
    local ns_why = require("spec.support.namespaces").skip()  -- fake pods need their own /
    if ns_why then return pending(ns_why) end
    if not k then return pending("needs sandlot.http.serve") end
    local env = { SANDLOT_CONFIG = cfg, SANDLOT_PROVIDER = false, XDG_STATE_HOME = tmp,
                  KUBECONFIG = false }
    local rc, out, err = h.host({ "check-provider", "kube-fake", "--json", "--label",
                                  "kubernetes" }, { env = env, timeout = 900 })
    local doc = json.decode(out)
    assert(doc, "check-provider printed no JSON: " .. out .. err)
    local failed, pend = {}, {}
    for _, t in ipairs(doc.tests) do
      if t.status == "pending" then
        pend[#pend + 1] = ("%s: %s"):format(t.name, tostring(t.message))
      elseif t.status ~= "passed" then
        failed[#failed + 1] = ("%s %s: %s"):format(t.status, t.name, tostring(t.message))
      end
    end
    assert.equal(0, #failed, table.concat(failed, "\n"))
    assert.equal(0, rc, err)
    assert.is_true(doc.summary.passed >= 30)
    io.stderr:write(("kubernetes conformance: %d passed, %d pending\n  %s\n")
      :format(doc.summary.passed, doc.summary.pending, table.concat(pend, "\n  ")))
    assert.is_nil((out .. err):find(k.token, 1, true), "the token is in the output")
    assert.same({}, k.rejected())
    assert.is_true(#k.fake.denied >= 1)
    assert.is_true(k.fake.created >= 5)
  end)
end)
