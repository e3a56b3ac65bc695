-- spec/lib/wire_json_spec.lua: sandlot.wire.json, the one JSON codec of providers, fakes and
-- sandlot.http: exact integers both ways, null, malformed text as bad_response, and an encoder
-- that names what it refuses.
local json = require("sandlot.wire.json")
local http = require("sandlot.http")

describe("sandlot.wire.json", function()
  it("is what sandlot.http uses", function()
    assert.equal(json.null, http.null)
    assert.equal(json.encode, http.encode_json)
  end)

  it("decodes integral numbers as integers where a float holds them exactly", function()
    local cases = {
      { "3", 3, "integer" }, { "-7", -7, "integer" }, { "1e2", 100, "integer" },
      { "3.5", 3.5, "float" }, { "9007199254740991", 9007199254740991, "integer" },
      { "1e300", 1e300, "float" }, { "9007199254740993", nil, "float" },
    }
    for _, c in ipairs(cases) do
      local v = assert(json.decode(c[1]))
      assert.equal(c[3], math.type(v), c[1])
      if c[2] then assert.equal(c[2], v, c[1]) end
      local nested = assert(json.decode('{"a":[' .. c[1] .. ']}'))
      assert.equal(c[3], math.type(nested.a[1]), c[1])
    end
  end)

  it("encodes integers exactly, floats shortest, keys sorted", function()
    local cases = {
      { 123456789012345, "123456789012345" }, { math.maxinteger, "9223372036854775807" },
      { 3.0, "3" }, { 0.1, "0.1" }, { 1 / 3, "0.3333333333333333" }, { -0.5, "-0.5" },
      { { b = 1, a = { 1, 2 } }, '{"a":[1,2],"b":1}' }, { {}, "{}" }, { json.array(), "[]" },
      { json.null, "null" }, { "é\n\"", '"é\\n\\""' }, { true, "true" },
      { { x = json.null }, '{"x":null}' },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], json.encode(c[1]))
    end
    for _, n in ipairs({ 0.1, 1 / 3, 1e-300, 123.456, 2 ^ 60 + 0.0 }) do
      assert.equal(n, json.decode(json.encode(n)))
    end
  end)

  it("gives bad_response for malformed text, never a raise", function()
    local bad = { "", "{", "[1,2", '{"a":}', "nul", "01", "NaN", "Infinity", "0x10", "'a'",
                  '"\\x"', "[" .. ("["):rep(300) .. ("]"):rep(301), '{"a":1} x', 42, nil }
    for i = 1, 15 do
      local v, err = json.decode(bad[i])
      assert.is_nil(v, tostring(bad[i]))
      assert.equal("bad_response", err.code, tostring(bad[i]))
    end
  end)

  it("decodes null as the sentinel", function()
    local v = assert(json.decode('{"a":null,"b":[null]}'))
    assert.equal(json.null, v.a)
    assert.equal(json.null, v.b[1])
    assert.equal(json.null, json.decode("null"))
  end)

  it("refuses what JSON cannot hold, saying where", function()
    local cyc = {}
    cyc.self = { cyc }
    local cases = {
      { { f = print }, "a function at %.f" }, { cyc, "a cycle .* at %.self%[1%]" },
      { { 1, nil, 3 }, "sparse array" }, { { 1, x = 2 }, "both string and integer keys" },
      { { [true] = 1 }, "table key true" }, { 0 / 0, "number" }, { math.huge, "number" },
      { { a = { b = coroutine.create(print) } }, "a thread at %.a%.b" },
      { { [1.5] = 1 }, "table key 1.5" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(json.encode, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err)
    end
  end)
end)
