-- spec/lib/wire_connect_spec.lua: sandlot.wire.connect, the Connect protocol's envelopes
-- both ways: messages split anywhere, the end-of-stream message and its error, and malformed
-- streams (bad flags, absurd lengths, bad JSON, a missing end, data after it).
local connect = require("sandlot.wire.connect")

local function reader(opts)
  local got = {}
  return connect.decoder(function(v) got[#got + 1] = v end, opts), got
end

describe("sandlot.wire.connect", function()
  it("encodes envelopes as [flags][length u32 BE][json]", function()
    assert.equal("\0\0\0\0\7" .. '{"a":1}', connect.encode({ a = 1 }))
    assert.equal("\2\0\0\0\2{}", connect.end_stream())
    local e = connect.end_stream("not_found", "no")
    assert.equal(2, e:byte(1))
  end)

  it("decodes messages however the stream is cut, and ends cleanly", function()
    local s = connect.encode({ event = { start = { pid = 7 } } }) ..
              connect.encode({ event = { data = { stdout = "aGk=" } } }) .. connect.end_stream()
    for _, size in ipairs({ 1, 4, 5, 6, #s }) do
      local r, got = reader()
      for i = 1, #s, size do assert(r(s:sub(i, i + size - 1))) end
      assert(r:finish())
      assert.is_true(r.ended)
      assert.equal(7, got[1].event.start.pid)
      assert.equal("aGk=", got[2].event.data.stdout)
    end
  end)

  local codes = {
    { "not_found", "not_found" }, { "invalid_argument", "invalid_input" },
    { "deadline_exceeded", "timeout" }, { "unauthenticated", "auth_failed" },
    { "permission_denied", "permission_denied" }, { "resource_exhausted", "quota_exceeded" },
    { "unavailable", "unavailable" }, { "unimplemented", "not_supported" },
    { "canceled", "cancelled" }, { "something_new", "bad_response" },
  }
  for _, c in ipairs(codes) do
    it("maps an end-of-stream error " .. c[1] .. " to " .. c[2], function()
      local r = reader()
      local ok, err = r(connect.encode({ x = 1 }) .. connect.end_stream(c[1], "said so"))
      assert.is_nil(ok)
      assert.equal(c[2], err.code)
      assert.equal("said so", err.message)
      assert.equal(c[1], err.connect_code)
    end)
  end

  local bad = {
    { "unknown flags", "\4\0\0\0\2{}" },
    { "a compressed envelope", "\1\0\0\0\2{}" },
    { "an absurd length", "\0\255\255\255\255" },
    { "a length over max_message", "\0\0\1\0\0", { max_message = 100 } },
    { "malformed JSON", "\0\0\0\0\3{a:" },
    { "an end-of-stream that is not an object", "\2\0\0\0\1" .. "7" },
    { "data after the end", "\2\0\0\0\2{}\0\0\0\0\2{}" },
  }
  for _, c in ipairs(bad) do
    it("gives bad_response for " .. c[1], function()
      local r = reader(c[3])
      local ok, err = r(c[2])
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
      ok, err = r(connect.encode({}))
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
    end)
  end

  it("gives bad_response when the body ends without the end-of-stream message", function()
    for _, s in ipairs({ "", connect.encode({ a = 1 }), connect.encode({ a = 1 }):sub(1, 7),
                         "\0\0\0" }) do
      local r = reader()
      assert(r(s))
      local ok, err = r:finish()
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
    end
  end)

  it("splits a request body for fakes", function()
    local msgs = assert(connect.decode_all(connect.encode({ process = { cmd = "ls" } })))
    assert.equal("ls", msgs[1].value.process.cmd)
    assert.equal(0, msgs[1].flags)
    local none, err = connect.decode_all(connect.encode({}):sub(1, 6))
    assert.is_nil(none)
    assert.equal("bad_response", err.code)
  end)

  it("maps a unary Connect error object", function()
    local err = connect.error({ code = "already_exists", message = "taken" }, { status = 409 })
    assert.equal("already_exists", err.code)
    assert.equal(409, err.status)
  end)
end)
