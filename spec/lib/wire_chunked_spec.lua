-- spec/lib/wire_chunked_spec.lua: sandlot.wire.chunked, HTTP/1.1 chunked framing read
-- incrementally: chunks whole however the bytes are cut, extensions and trailers, and the
-- malformed cases (a bad size line, a missing CRLF, a chunk over the limit, a body cut short,
-- bytes after the last chunk) as bad_response.
local chunked = require("sandlot.wire.chunked")

describe("sandlot.wire.chunked", function()
  local payloads = { "\1hello", ("\2x"):rep(5000), "\3\0" }
  local body = chunked.encode(table.unpack(payloads))

  it("hands on each chunk whole, however the body is cut", function()
    for _, size in ipairs({ 1, 2, 3, 7, 100, #body }) do
      local got = {}
      local r = chunked.decoder(function(p) got[#got + 1] = p end)
      for i = 1, #body, size do assert(r(body:sub(i, i + size - 1))) end
      assert(r:finish())
      assert.same(payloads, got)
    end
  end)

  it("reads chunk extensions and trailers", function()
    local got = {}
    local r = chunked.decoder(function(p) got[#got + 1] = p end)
    assert(r("5;name=v\r\nabcde\r\n0\r\nX-Trailer: 1\r\n\r\n"))
    assert(r:finish())
    assert.same({ "abcde" }, got)
  end)

  it("stops when on_chunk fails, with its error", function()
    local r = chunked.decoder(function() return nil, { code = "io_error" } end)
    local ok, err = r(body)
    assert.is_nil(ok)
    assert.equal("io_error", err.code)
  end)

  local bad = {
    { "a bad size line", "zz\r\nab\r\n0\r\n\r\n" },
    { "a chunk not followed by CRLF", "2\r\nabXX0\r\n\r\n" },
    { "a chunk over the limit", "100001\r\n" },
    { "a body cut short", "5\r\nabc" },
    { "no last chunk", "1\r\na\r\n" },
    { "bytes after the last chunk", "0\r\n\r\nextra" },
    { "an endless size line", ("1"):rep(2000) },
  }
  for _, c in ipairs(bad) do
    it("refuses " .. c[1] .. " as bad_response", function()
      local r = chunked.decoder(function() end, { max_chunk = 65536 })
      local ok, err = r(c[2])
      if ok then ok, err = r:finish() end
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
    end)
  end
end)
