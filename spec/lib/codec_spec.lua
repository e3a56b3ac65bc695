-- spec/lib/codec_spec.lua: sandlot.core.codec, the one codec for values crossing a boundary
-- (plugin states, replica frames). Byte vectors are from the MessagePack specification.
local codec = require("sandlot.core.codec")
local errors = require("sandlot.errors")

local function roundtrip(v)
  local s = assert(codec.encode(v))
  local back, nextpos = codec.decode(s)
  assert.equal(#s + 1, nextpos)
  return back, s
end

local function refused(v, pattern, max_bytes)
  local s, err = codec.encode(v, max_bytes)
  assert.is_nil(s)
  assert.equal("invalid_input", err.code)
  assert.matches(pattern, err.message)
  return err
end

local function malformed(bytes, pattern)
  local v, err = codec.decode(bytes)
  assert.is_nil(v)
  assert.equal("bad_response", err.code)
  if pattern then assert.matches(pattern, err.message) end
end

describe("codec", function()
  it("keeps integers integers and floats floats", function()
    for _, n in ipairs({ 0, 1, 127, 128, 255, 256, 65535, 65536, -1, -32, -33, -128, -129,
                         -32768, -32769, math.maxinteger, math.mininteger }) do
      local back = roundtrip(n)
      assert.equal("integer", math.type(back))
      assert.equal(n, back)
    end
    for _, f in ipairs({ 0.5, -1.25, 1e300, 2.0 ^ 53, 3.0 }) do
      local back = roundtrip(f)
      assert.equal("float", math.type(back))
      assert.equal(f, back)
    end
    local inf = roundtrip(math.huge)
    assert.equal(math.huge, inf)
    local nan = roundtrip(0 / 0)
    assert.is_true(nan ~= nan)
  end)

  it("keeps strings byte for byte: str when UTF-8, bin otherwise", function()
    local _, s = roundtrip("héllo")
    assert.equal(0xa6, s:byte(1))                     -- fixstr of 6 bytes
    local bin = "\0\255\254\128abc"
    local back, sb = roundtrip(bin)
    assert.equal(bin, back)
    assert.equal(0xc4, sb:byte(1))                    -- bin8
    for _, bad in ipairs({ "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82" }) do
      local b2, s2 = roundtrip(bad)                   -- overlong, surrogate, > U+10FFFF, cut
      assert.equal(bad, b2)
      assert.equal(0xc4, s2:byte(1))
    end
    local big = string.rep("x", 70000)
    assert.equal(big, (roundtrip(big)))
  end)

  it("sends a proper sequence as an array and anything else as a map", function()
    local _, s = roundtrip({ "a", "b", "c" })
    assert.equal(0x93, s:byte(1))
    local back, s2 = roundtrip({ [1] = "a", [3] = "c" })
    assert.equal(0x82, s2:byte(1))
    assert.same({ [1] = "a", [3] = "c" }, back)
    local mixed = roundtrip({ 1, 2, x = { y = true }, [2.5] = "f", [false] = 0 })
    assert.same({ 1, 2, x = { y = true }, [2.5] = "f", [false] = 0 }, mixed)
    assert.same({}, (roundtrip({})))
  end)

  it("copies a table reached twice (no cycle) twice", function()
    local shared = { n = 1 }
    local back = roundtrip({ a = shared, b = shared })
    assert.same({ n = 1 }, back.a)
    assert.same({ n = 1 }, back.b)
  end)

  it("refuses what is not plain data, naming where it is", function()
    local t = { list = { 1, 2 } }
    t.list[3] = t
    refused(t, "^value%.list%[3%]: a cycle")
    refused({ f = print }, "^value%.f: a function cannot be copied")
    refused({ co = coroutine.create(function() end) }, "^value%.co: a thread")
    refused({ io.stdout }, "^value%[1%]: a userdata")
    refused({ x = setmetatable({}, {}) }, "^value%.x: a table with a metatable")
    refused({ [{}] = 1 }, "a table key cannot be copied")
    refused({ ["a b"] = print }, '^value%["a b"%]: a function')
  end)

  it("has a depth limit on both sides", function()
    local function nest(n)
      local v = 1
      for _ = 1, n do v = { v } end
      return v
    end
    assert.truthy(codec.encode(nest(codec.MAX_DEPTH)))
    refused(nest(codec.MAX_DEPTH + 1), "deeper than " .. codec.MAX_DEPTH)
    malformed(string.rep("\x91", codec.MAX_DEPTH + 1) .. "\x01", "depth limit")
    local ok = codec.decode(string.rep("\x91", codec.MAX_DEPTH) .. "\x01")
    assert.truthy(ok)
  end)

  it("caps the encoded size", function()
    refused({ string.rep("x", 2000) }, "larger than 1000 bytes", 1000)
    assert.truthy(codec.encode(string.rep("x", 900), 1000))
    refused(string.rep("x", 2000), "larger than 1000 bytes", 1000)
    refused({ e = errors.new("internal", string.rep("m", 2000)) }, "larger than 1000", 1000)
  end)

  it("carries a sandlot error as ext type 1 and restores it", function()
    local cause = errors.new("unavailable", "down")
    local e = errors.new("timeout", "slow", { op = "exec", cause = cause })
    local back, s = roundtrip({ err = e })
    assert.equal(0xc7, s:byte(6))                    -- ext8 after fixmap, fixstr "err"
    assert.is_true(errors.is(back.err))
    assert.equal("timeout", back.err.code)
    assert.equal("exec", back.err.op)
    assert.is_true(errors.is(back.err.cause))
    assert.equal(tostring(e), tostring(back.err))
  end)

  it("decodes the specification's vectors", function()
    assert.same({ 1, "a", true, false }, (codec.decode("\x94\x01\xa1a\xc3\xc2")))
    assert.is_nil((codec.decode("\xc0")))
    assert.equal(-1, (codec.decode("\xff")))
    assert.equal(-128, (codec.decode("\xd0\x80")))
    assert.equal(-32768, (codec.decode("\xd1\x80\x00")))
    assert.equal(-2147483648, (codec.decode("\xd2\x80\x00\x00\x00")))
    assert.equal(65535, (codec.decode("\xcd\xff\xff")))
    assert.equal(4294967295, (codec.decode("\xce\xff\xff\xff\xff")))
    assert.equal(1.5, (codec.decode("\xca\x3f\xc0\x00\x00")))
    assert.same({ a = 1 }, (codec.decode("\xde\x00\x01\xa1a\x01")))
    assert.equal("ab", (codec.decode("\xd9\x02ab")))
    local v, nextpos = codec.decode("\x01\x02", 2)
    assert.equal(2, v)
    assert.equal(3, nextpos)
  end)

  it("fails cleanly on every cut of a valid encoding", function()
    local s = assert(codec.encode({ "x", { 1.5, -70000, string.rep("b", 300) }, k = { "\255" },
                                    e = errors.new("not_found", "gone") }))
    for n = 0, #s - 1 do malformed(s:sub(1, n), "malformed msgpack") end
  end)

  it("rejects hostile headers without allocating what they declare", function()
    malformed("\xdd\x0f\xff\xff\xff", "array count larger than the input")
    malformed("\xdf\xff\xff\xff\xff", "map count larger than the input")
    malformed("\xdb\xff\xff\xff\xff", "string runs past")
    malformed("\xc6\x7f\xff\xff\xff", "string runs past")
    malformed("\xc9\x7f\xff\xff\xff\x01", "ext body runs past")
    malformed("\xc1", "0xc1")
    malformed("\xd4\x05\x00", "unknown ext type 5")
    malformed("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "larger than a Lua integer")
    malformed("\x81\xc0\x01", "map key")                        -- nil key
    malformed("\x81\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\x01", "map key")  -- NaN key
    malformed("\xd5\x01\x01\x02", "not one map")                -- error ext holding 2 ints
  end)
end)
