-- spec/lib/wire_ndjson_spec.lua: sandlot.wire.ndjson, read incrementally: lines split anywhere,
-- blank lines, lines over the limit, malformed lines, a partial line at the end.
local ndjson = require("sandlot.wire.ndjson")
local json = require("sandlot.wire.json")

describe("sandlot.wire.ndjson", function()
  local text = ndjson.encode({ a = 1 }, { 1, 2 }, "s", json.null) .. "\n\r\n" ..
               '{"status":"Pulling"}\r\n'

  it("decodes values however the stream is cut, skipping blank lines", function()
    for _, size in ipairs({ 1, 2, 5, #text }) do
      local got = {}
      local r = ndjson.decoder(function(v) got[#got + 1] = v end)
      local fed = {}
      for i = 1, #text, size do
        for _, v in ipairs(assert(r:feed(text:sub(i, i + size - 1)))) do fed[#fed + 1] = v end
      end
      assert(r:finish())
      local want = { { a = 1 }, { 1, 2 }, "s", json.null, { status = "Pulling" } }
      assert.same(want, got)
      assert.same(want, fed)
    end
  end)

  it("is callable as an api stream's on_frame", function()
    local n = 0
    local r = ndjson.decoder(function() n = n + 1 end)
    assert.is_true(r('{"x":1}\n{"x":2}\n'))
    assert.equal(2, n)
  end)

  local bad = {
    { "a malformed line", '{"a":1}\n{"a":\n' },
    { "a line over max_line", ("x"):rep(100) .. "\n", { max_line = 64 } },
    { "a long line without its newline yet", ("x"):rep(100), { max_line = 64 } },
    { "a value that is not JSON", "<html>\n" },
  }
  for _, c in ipairs(bad) do
    it("gives bad_response for " .. c[1] .. ", and keeps failing", function()
      local r = ndjson.decoder(c[3])
      local out, err = r:feed(c[2])
      assert.is_nil(out)
      assert.equal("bad_response", err.code)
      out, err = r:feed('{"ok":1}\n')
      assert.is_nil(out)
      assert.equal("bad_response", err.code)
      assert.is_nil((r:finish()))
    end)
  end

  it("gives bad_response for a partial line at the end", function()
    local r = ndjson.decoder()
    assert.same({ { a = 1 } }, assert(r:feed('{"a":1}\n{"b":')))
    local ok, err = r:finish()
    assert.is_nil(ok)
    assert.equal("bad_response", err.code)
    r = ndjson.decoder()
    assert(r:feed('{"a":1}\n  '))
    assert(r:finish())                   -- trailing whitespace is no line
  end)

  it("never holds more than max_line of one line", function()
    local r = ndjson.decoder({ max_line = 1000 })
    for _ = 1, 9 do assert(r:feed(("x"):rep(100))) end
    local ok, err = r:feed(("x"):rep(101))
    assert.is_nil(ok)
    assert.matches("over the limit", err.message)
  end)
end)
