-- spec/lib/wire_tar_spec.lua: sandlot.wire.tar (ustar/PAX writer and reader, .tar.gz) and
-- sandlot.wire.gzip (zlib): round trips, then malformed archives and gzip streams as
-- bad_response, and a decompression bomb stopped at its cap.
local tar = require("sandlot.wire.tar")
local gzip = require("sandlot.wire.gzip")

local function archive(entries, opts)
  local pieces, size = tar.archive(entries, opts)
  local s = table.concat(pieces)
  assert.equal(size, #s)
  return s
end

describe("sandlot.wire.tar", function()
  local long = ("d/"):rep(80) .. "file.txt"
  local entries = {
    { name = "a.txt", data = "hello", mode = 384 }, { name = "dir", type = "directory" },
    { name = "dir/link", type = "symlink", linkname = "../a.txt" },
    { name = long, data = ("z"):rep(1000) }, { name = "é.txt", data = "" },
    { name = "l2", type = "symlink", linkname = ("t/"):rep(70) },
  }

  local function check(list)
    assert.equal(6, #list)
    assert.same({ "a.txt", "file", "hello", 384 },
                { list[1].name, list[1].type, list[1].data, list[1].mode })
    assert.equal("directory", list[2].type)
    assert.equal("../a.txt", list[3].linkname)
    assert.equal(long, list[4].name)
    assert.equal(1000, #list[4].data)
    assert.equal("é.txt", list[5].name)
    assert.equal(("t/"):rep(70), list[6].linkname)
  end

  it("round-trips entries, long and non-ASCII names included", function()
    check(assert(tar.list(archive(entries))))
  end)

  it("writes and reads .tar.gz", function()
    local gz = archive(entries, { gzip = true })
    assert.equal("\31\139", gz:sub(1, 2))
    check(assert(tar.list(gz, { gzip = true })))
    local big = archive({ { name = "big", data = ("\0"):rep(1000000) } }, { gzip = true })
    assert.is_true(#big < 20000)
    local none, err = tar.list(big, { gzip = true, max_size = 100000 })
    assert.is_nil(none)
    assert.equal("bad_response", err.code)
  end)

  local good = archive({ { name = "f", data = ("q"):rep(700) } })
  local function flip(s, pos, byte) return s:sub(1, pos - 1) .. byte .. s:sub(pos + 1) end
  local bad = {
    { "a bad checksum", flip(good, 1, "g") },
    { "a truncated entry", good:sub(1, 900) },
    { "a partial header", good:sub(1, 1536 + 100) },
    { "garbage", ("x"):rep(1024) },
    { "a size past the end", (function()
        local h = good:sub(1, 512)
        local size = ("%011o\0"):format(8 ^ 10)
        h = h:sub(1, 124) .. size .. h:sub(137, 148) .. ("        ") .. h:sub(157)
        local sum = 0
        for i = 1, 512 do sum = sum + h:byte(i) end
        h = h:sub(1, 148) .. ("%06o\0 "):format(sum) .. h:sub(157)
        return h .. good:sub(513)
      end)() },
    { "a zero-length PAX record", (function()
        local rec = "0 path=x\n"
        local pieces = tar.entry({ name = "f", data = "d" })
        local h = pieces[1]
        h = "PaxHeaders/f" .. h:sub(13, 124) .. ("%011o\0"):format(#rec) .. h:sub(137, 148) ..
            "        x" .. h:sub(158)
        local sum = 0
        for i = 1, 512 do sum = sum + h:byte(i) end
        h = h:sub(1, 148) .. ("%06o\0 "):format(sum) .. h:sub(157)
        return h .. rec .. ("\0"):rep(512 - #rec) .. table.concat(pieces) .. ("\0"):rep(1024)
      end)() },
    { "not a string", 42 },
  }
  for _, c in ipairs(bad) do
    it("gives bad_response for " .. c[1] .. ", never a raise", function()
      local list, err = tar.list(c[2])
      assert.is_nil(list)
      assert.equal("bad_response", err.code)
    end)
  end

  it("raises on misuse", function()
    assert.has_error(function() tar.archive({ { data = "x" } }) end)
  end)
end)

describe("sandlot.wire.gzip", function()
  local text = ("sandlot "):rep(10000)

  it("round-trips, whole and streamed in pieces", function()
    local gz = gzip.compress(text)
    assert.equal(text, assert(gzip.decompress(gz)))
    local z <close> = gzip.decompressor()
    local out = {}
    for i = 1, #gz, 7 do out[#out + 1] = assert(z:write(gz:sub(i, i + 6))) end
    assert(z:finish())
    assert.is_true(z:ended())
    assert.equal(text, table.concat(out))
    assert.equal(text, assert(gzip.decompress(gzip.compress({ "sand", "lot ", text:sub(9) }))))
  end)

  it("reads what gzip(1) writes", function()
    local sandlot = require("sandlot")
    local r = assert(sandlot.proc.run({ "gzip", "-c" }, { stdin = text }))
    assert.equal(text, assert(gzip.decompress(r.stdout)))
  end)

  it("stops a decompression bomb at max_output", function()
    local bomb = gzip.compress(("\0"):rep(64 * 1024 * 1024))
    assert.is_true(#bomb < 100000)
    local z <close> = gzip.decompressor({ max_output = 1024 * 1024 })
    local out, err = z:write(bomb)
    assert.is_nil(out)
    assert.equal("bad_response", err.code)
    assert.is_true(z:total() <= 1024 * 1024 + 1)
    out, err = z:write("more")
    assert.is_nil(out)
    assert.equal("bad_response", err.code)
    assert.equal(64 * 1024 * 1024, #assert(gzip.decompress(bomb, { max_output = 2 ^ 26 })))
  end)

  local gz = gzip.compress(text)
  local bad = {
    { "not gzip", "hello world, not gzip" },
    { "a corrupt body", gz:sub(1, 20) .. ("\255"):rep(30) .. gz:sub(51) },
    { "a truncated stream", gz:sub(1, #gz - 5) },
    { "a stream cut inside the header", gz:sub(1, 4) },
    { "data after the end", gz .. "trailing" },
    { "a bad CRC", gz:sub(1, #gz - 8) .. "\0\0\0\0" .. gz:sub(#gz - 3) },
    { "empty input", "" },
  }
  for _, c in ipairs(bad) do
    it("gives bad_response for " .. c[1], function()
      local out, err = gzip.decompress(c[2])
      assert.is_nil(out)
      assert.equal("bad_response", err.code)
    end)
  end

  it("raises on misuse of a closed stream", function()
    local z = gzip.compressor()
    z:close()
    assert.has_error(function() z:write("x") end)
    assert.is_true(z:close())
  end)
end)
