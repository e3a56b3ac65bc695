-- spec/conformance_e2b_spec.lua: the conformance suite against the e2b provider, run as a user
-- runs it (`sandlot check-provider` pointed at a config), on the strict fake of E2B
-- (spec/fakes/e2b.lua) served by this test runner (spec/support/check_on_fake.lua). The API key
-- comes from E2B_API_KEY and envd's address from E2B_SANDBOX_URL, the SDK's variables; the key
-- may not appear in the output.
describe("e2b provider (check-provider on the fake)", function()
  local s = require("spec.support.check_on_fake").setup("e2b")

  it("passes every case, and the fake refused no request as malformed #slow", function()
    local r = s.run(function(f)
      return { E2B_API_KEY = f.token, E2B_SANDBOX_URL = f.sandbox_url, E2B_API_URL = false,
               E2B_DOMAIN = false }
    end)
    if not r then return end
    assert.equal(0, r.doc.summary.pending)              -- spawn and list run too
    -- nothing malformed reached the fake; what it denied (missing files, a missing cwd or
    -- program, an existing directory made again) the suite provokes on purpose
    assert.same({}, s.fake.rejected())
    assert.is_true(#s.fake.fake.denied >= 5)
    assert.is_true(s.fake.fake.created >= 5)
  end)
end)
