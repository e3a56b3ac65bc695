-- spec/conformance_sprites_spec.lua: the conformance suite against the sprites provider, run as
-- a user runs it (`sandlot check-provider` pointed at a config), on the strict fake of Sprites
-- (spec/fakes/sprites.lua) served by this test runner (spec/support/check_on_fake.lua). The
-- token comes from SPRITES_API_TOKEN, the SDK's variable; it may not appear in the output.
describe("sprites provider (check-provider on the fake)", function()
  local s = require("spec.support.check_on_fake").setup("sprites")

  it("passes every case, and the fake refused no request as malformed #slow", function()
    local r = s.run(function(f)
      return { SPRITES_API_TOKEN = f.token, SPRITE_TOKEN = false, SPRITES_API_URL = false }
    end)
    if not r then return end
    assert.equal(0, r.doc.summary.pending)              -- spawn and list run too
    -- nothing malformed reached the fake; what it denied (missing files and directories, a
    -- directory made again) the suite provokes on purpose
    assert.same({}, s.fake.rejected())
    assert.is_true(#s.fake.fake.denied >= 5)
    assert.is_true(s.fake.fake.created >= 5)
  end)
end)
