-- spec/conformance_kubernetes_spec.lua: the conformance suite against the kubernetes provider,
-- run as a user runs it (`sandlot check-provider` pointed at a config), on the strict fake of
-- the API server (spec/fakes/kubernetes.lua) served by this test runner
-- (spec/support/check_on_fake.lua), through a kubeconfig that holds the fake's bearer token;
-- the token may not appear in the output.
describe("kubernetes provider (check-provider on the fake)", function()
  local s = require("spec.support.check_on_fake").setup("kubernetes", {}, function(f, dir)
    return { kubeconfig = f.kubeconfig(dir .. "/kubeconfig"), image = "busybox" }
  end)

  it("passes every case, and the fake refused no request as malformed #slow", function()
    local r = s.run(function() return { KUBECONFIG = false } end)
    if not r then return end
    assert.equal(0, r.doc.summary.pending)              -- spawn and list run too
    assert.same({}, s.fake.rejected())
    assert.is_true(#s.fake.fake.denied >= 1)
    assert.is_true(s.fake.fake.created >= 5)
  end)
end)
