-- spec/lib/wire_multipart_spec.lua: sandlot.wire.multipart: bodies as pieces with a boundary
-- absent from the data, parsed back by the fakes' parser, and malformed bodies refused.
local mp = require("sandlot.wire.multipart")

describe("sandlot.wire.multipart", function()
  local parts = {
    { name = "file", filename = "a.bin", data = "line\r\n--not-a-boundary\r\n\0\255" },
    { name = "path", data = "/sandbox/a.bin" }, { name = "empty", data = "" },
  }

  it("round-trips parts, data never copied into a piece", function()
    local pieces, size, ct = mp.encode(parts)
    local body = table.concat(pieces)
    assert.equal(size, #body)
    local found = false
    for _, p in ipairs(pieces) do
      if p == parts[1].data then found = true end
    end
    assert.is_true(found)
    local back = assert(mp.parse(body, ct))
    assert.equal(3, #back)
    assert.same({ "file", "a.bin", "application/octet-stream", parts[1].data },
                { back[1].name, back[1].filename, back[1].content_type, back[1].data })
    assert.equal("/sandbox/a.bin", back[2].data)
    assert.equal("", back[3].data)
  end)

  it("picks a fresh random boundary that is not in the data", function()
    local _, _, ct1 = mp.encode(parts)
    local _, _, ct2 = mp.encode(parts)
    assert.not_equal(ct1, ct2)
    local boundary = ct1:match("boundary=(.+)$")
    assert.is_nil(parts[1].data:find(boundary, 1, true))
  end)

  local pieces, _, ct = mp.encode(parts)
  local body = table.concat(pieces)
  local bad = {
    { "a body cut short", body:sub(1, #body - 30), ct },
    { "no boundary in the content type", body, "multipart/form-data" },
    { "another content type", body, "application/json" },
    { "a body without the boundary", "hello", ct },
    { "a part without headers' end", ct and ("--" .. ct:match("boundary=(.+)$") ..
                                            "\r\nContent-Disposition: form-data") or "", ct },
    { "a part without a name", ("--B\r\nContent-Type: x\r\n\r\ndata\r\n--B--\r\n"),
      "multipart/form-data; boundary=B" },
  }
  for _, c in ipairs(bad) do
    it("gives bad_response for " .. c[1], function()
      local got, err = mp.parse(c[2], c[3])
      assert.is_nil(got)
      assert.equal("bad_response", err.code)
    end)
  end

  it("raises on misuse", function()
    assert.has_error(function() mp.encode({ { name = 'a"b', data = "" } }) end)
    assert.has_error(function() mp.encode({ { name = "a", data = 5 } }) end)
    assert.has_error(function() mp.encode({ { name = "a", filename = "x\ny", data = "" } }) end)
  end)
end)
