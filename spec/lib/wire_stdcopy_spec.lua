-- spec/lib/wire_stdcopy_spec.lua: sandlot.wire.stdcopy, Docker's multiplexed stream, read
-- incrementally: frames split anywhere, bad headers, absurd lengths, frames cut short.
local stdcopy = require("sandlot.wire.stdcopy")

local function collect(opts)
  local got = {}
  local d = stdcopy.decoder(function(stream, data) got[#got + 1] = { stream, data } end, opts)
  return d, got
end

describe("sandlot.wire.stdcopy", function()
  local stream = stdcopy.encode("stdout", "hello ") .. stdcopy.encode("stderr", "oops") ..
                 stdcopy.encode("stdout", "") .. stdcopy.encode(1, ("x"):rep(70000))
  local want = { { "stdout", "hello " }, { "stderr", "oops" }, { "stdout", "" },
                 { "stdout", ("x"):rep(70000) } }

  it("decodes frames however the stream is cut", function()
    for _, size in ipairs({ 1, 3, 7, 8, 9, 1000, #stream }) do
      local d, got = collect()
      for i = 1, #stream, size do assert(d(stream:sub(i, i + size - 1))) end
      assert(d:finish())
      assert.same(want, got)
    end
  end)

  local bad = {
    { "an unknown stream byte", "\7\0\0\0\0\0\0\1x" },
    { "non-zero padding", "\1\0\1\0\0\0\0\1x" },
    { "an absurd length", "\1\0\0\0\255\255\255\255" },
    { "a length over max_frame", "\1\0\0\0\0\0\4\1", { max_frame = 1024 } },
    { "text where a header should be", "HTTP/1.1 200 OK\r\n" },
  }
  for _, c in ipairs(bad) do
    it("gives bad_response for " .. c[1] .. ", and keeps failing", function()
      local d, got = collect(c[3])
      local ok, err = d(stdcopy.encode("stdout", "ok") .. c[2])
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
      assert.same({ { "stdout", "ok" } }, got)
      ok, err = d(stdcopy.encode("stdout", "more"))
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
      assert.equal(1, #got)
    end)
  end

  it("gives bad_response at the end for a frame or a header cut short", function()
    for _, cut in ipairs({ 3, 8, 12 }) do
      local d = collect()
      assert(d(stdcopy.encode("stdout", "0123456789"):sub(1, cut)))
      local ok, err = d:finish()
      assert.is_nil(ok)
      assert.equal("bad_response", err.code)
    end
  end)

  it("does not buffer more than a frame: an absurd length fails at its header", function()
    local d = collect()
    local ok, err = d("\1\0\0\0\127\255\255\255" .. ("y"):rep(100))
    assert.is_nil(ok)
    assert.matches("over the limit", err.message)
  end)

  it("passes on_frame's error back", function()
    local d = stdcopy.decoder(function() return nil, require("sandlot.errors").new("io_error",
                                                                                    "full") end)
    local ok, err = d(stdcopy.encode("stdout", "a"))
    assert.is_nil(ok)
    assert.equal("io_error", err.code)
  end)

  it("raises on misuse", function()
    assert.has_error(function() stdcopy.encode("stdnope", "x") end)
  end)
end)
