-- spec/id_redact_spec.lua: sandlot.id's random source and sandlot._redact's name check, the two
-- kit functions every create calls. The name check keeps its answers: the cache may never
-- change one, for a name seen before or after many others.
local id = require("sandlot.id")
local sys = require("sandlot.core.sys")
local redact = require("sandlot._redact")

describe("sandlot.id", function()
  it("gives 2n hex digits from getrandom, different every time", function()
    local seen = {}
    for _ = 1, 200 do
      local s = id.hex(8)
      assert.matches("^%x+$", s)
      assert.equal(16, #s)
      assert.is_nil(seen[s])
      seen[s] = true
    end
    assert.equal(600, #id.hex(300))            -- past sys.random's 256: /dev/urandom
  end)

  it("sys.random returns n bytes and refuses n outside 1..256", function()
    local a, b = sys.random(32), sys.random(32)
    assert.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.has_error(function() sys.random(0) end)
    assert.has_error(function() sys.random(257) end)
    assert.has_error(function() id.hex(0) end)
  end)
end)

describe("sandlot._redact.is_secret", function()
  it("answers the same from its cache as the first time, past its bound", function()
    local names = { "Authorization", "api_key", "X-Api-Key", "token", "host", "labels",
                    "DAYTONA_API_KEY", "name", "session-key", "Content-Type" }
    local want = { true, true, true, true, false, false, true, false, true, false }
    for round = 1, 3 do
      for i, n in ipairs(names) do
        assert.equal(want[i], redact.is_secret(n), n .. " in round " .. round)
      end
      for j = 1, 1500 do redact.is_secret("field" .. j .. "_" .. round) end   -- fills the cache
    end
    assert.is_true(redact.is_secret("my_password_" .. ("x"):rep(100)))       -- not cached: long
    assert.is_false(redact.is_secret(42))
  end)
end)
