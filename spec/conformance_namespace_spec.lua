-- spec/conformance_namespace_spec.lua: the conformance suite against the namespace provider,
-- run as a user runs it (`sandlot check-provider` pointed at a config), on the strict fake of
-- Namespace (spec/fakes/namespace.lua) served by this test runner
-- (spec/support/check_on_fake.lua). The token comes from NSC_TOKEN; it may not appear in the
-- output.
describe("namespace provider (check-provider on the fake)", function()
  local s = require("spec.support.check_on_fake").setup("namespace")

  it("passes every case, and the fake refused no request as malformed #slow", function()
    local r = s.run(function(f) return { NSC_TOKEN = f.token, NSC_TOKEN_FILE = false } end,
                    { pending_ok = true })
    if not r then return end
    for _, t in ipairs(r.doc.tests) do                  -- spawn needs stdin the API lacks
      if t.status == "pending" then assert.matches("spawn", t.name) end
    end
    -- nothing malformed reached the fake, every call carried Connect-Protocol-Version, and
    -- what it denied (a destroyed instance's calls) the suite provokes on purpose
    assert.same({}, s.fake.rejected())
    assert.same({}, s.fake.fake.quirks)
    assert.is_true(#s.fake.fake.denied >= 1)
    assert.is_true(s.fake.fake.created >= 5)
  end)
end)
