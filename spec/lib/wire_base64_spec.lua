-- spec/lib/wire_base64_spec.lua: sandlot.wire.base64 (C, sandlot.core.sys), which moves files
-- through a provider's exec and carries Connect `bytes` fields.
local b64 = require("sandlot.wire.base64")

describe("sandlot.wire.base64", function()
  it("encodes the RFC 4648 test vectors", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, coded in pairs(vectors) do
      assert.equal(coded, b64.encode(plain))
      assert.equal(plain, b64.decode(coded))
    end
  end)

  it("round-trips every byte value at every length modulo 3", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    for cut = 0, 2 do
      local s = all:sub(1, #all - cut)
      assert.equal(s, b64.decode(b64.encode(s)))
    end
    assert.equal("AAEC", b64.encode("\0\1\2"))
    assert.equal("//79", b64.encode("\255\254\253"))
  end)

  it("skips whitespace, as `base64` wraps its output", function()
    assert.equal("foobar", b64.decode("Zm9v\nYmFy\n"))
    assert.equal("f", b64.decode(" Zg==\r\n"))
  end)

  it("gives bad_response for malformed input instead of guessing", function()
    for _, bad in ipairs({ "Zm9", "Zm=v", "Zg==Zg==", "Z@==", "Z===", "====", "Zm9v!", 42 }) do
      local d, err = b64.decode(bad)
      assert.is_nil(d, tostring(bad))
      assert.equal("bad_response", err.code)
    end
  end)

  it("round-trips 12 MB", function()
    local big = string.rep("\0\1\2\255xyz", 12 * 1024 * 1024 // 7)
    local coded = b64.encode(big)
    assert.equal(math.ceil(#big / 3) * 4, #coded)
    assert.equal(big, b64.decode(coded))
  end)
end)
