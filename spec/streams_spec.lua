-- spec/streams_spec.lua: a large file moved with write_file(nil, {from}) and read_file({to})
-- never sits in the host's memory. Each transfer runs in a process of its own
-- (spec/support/stream_client.lua) whose peak RSS is read after it. The same transfer done
-- with strings is the control: its peak must show the file, or the measurement could not see
-- a file held in memory at all.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local h = require("spec.helper")

local MB = 48

-- Under AddressSanitizer freed memory sits in its quarantine (256 MiB) and would count as
-- held: the client runs without one (a binary without ASan ignores the variable).
local ASAN = (os.getenv("ASAN_OPTIONS") and (os.getenv("ASAN_OPTIONS") .. ":") or "") ..
             "quarantine_size_mb=0"

local function run_client(provider, mode, from, to)
  local r = assert(sandlot.proc.run({ h.BIN, "spec/support/stream_client.lua",
                                      json.encode(provider), mode, from, to },
                                    { timeout = 300, env = { ASAN_OPTIONS = ASAN } }))
  assert(r.exit_code == 0, "stream_client failed: " .. r.stderr)
  local n, peak, base = r.stdout:match("bytes (%d+) hwm_kib (%d+) base_kib (%d+)")
  assert(n, "stream_client printed: " .. r.stdout)
  return tonumber(n), tonumber(peak) - tonumber(base)
end

local function same_file(a, b)
  local r = assert(sandlot.proc.run({ "cmp", a, b }))
  return r.exit_code == 0
end

local function check(provider)
  local dir = h.tmpdir("streams")
  local from, to = dir .. "/from.bin", dir .. "/to.bin"
  assert(sandlot.proc.run({ "sh", "-c", 'head -c "$1" /dev/urandom > "$2"', "sh",
                            tostring(MB * 1048576), from }))
  local n, grew = run_client(provider, "stream", from, to)
  assert.equal(MB * 1048576, n)
  assert.is_true(same_file(from, to), "the file read back differs")
  local cn, cgrew = run_client(provider, "memory", from, to .. ".control")
  assert.equal(n, cn)
  -- the control holds the file (at least once); the streamed run stays well below half of it
  -- (chunks of 1 MiB, curl's and the sanitizers' buffers: 6 to 13 MiB here)
  assert.is_true(cgrew >= MB * 1024, ("control grew only %d KiB"):format(cgrew))
  assert.is_true(grew < MB * 1024 / 2, ("streamed transfer grew the peak by %d KiB for a " ..
                                       "%d MiB file"):format(grew, MB))
  h.rmtree(dir)
end

-- A strict fake in a process of its own (spec/support/fake_child.lua: its memory is not the
-- client's): returns the process and what it prints once it listens.
local function fake(name)
  local p = assert(sandlot.proc.spawn({ h.BIN, "spec/support/fake_child.lua", name },
                                      { stream = true }))
  local line = ""
  while not line:find("\n") do
    local data, which = p:read()
    assert(data, "the " .. name .. " fake ended before it listened")
    if which == "stdout" then line = line .. data end
  end
  return p, json.decode(line)
end

describe("sandlot.fs.sink and fs.source", function()
  it("create a new file only: an existing one or a symlink is refused, nothing written", function()
    local fs = require("sandlot.fs")
    local dir = h.tmpdir("sink")
    local sink = assert(fs.sink(dir .. "/new.bin"))
    assert.is_true(sink("abc"))
    assert.is_true(sink("def"))
    assert.is_true(sink:finish())
    assert.equal(6, sink.bytes)
    assert.equal("abcdef", assert(fs.read(dir .. "/new.bin")))
    assert.equal(tonumber("600", 8), fs.stat(dir .. "/new.bin").mode & 511)
    local s2, err = fs.sink(dir .. "/new.bin")                 -- exists: refused
    assert.is_nil(s2)
    assert.equal("already_exists", err.code)
    assert(fs.write(dir .. "/target", "keep"))
    assert(fs.symlink(dir .. "/target", dir .. "/link"))
    local s3 = fs.sink(dir .. "/link")                         -- a planted symlink: refused
    assert.is_nil(s3)
    assert.equal("keep", assert(fs.read(dir .. "/target")))
    local next_piece, size = assert(fs.source(dir .. "/new.bin", 4))
    assert.equal(6, size)
    assert.equal("abcd", next_piece())
    assert.equal("ef", next_piece())
    assert.is_nil(next_piece())
    local none, serr = fs.source(dir .. "/none")
    assert.is_nil(none)
    assert.equal("not_found", serr.code)
    h.rmtree(dir)
  end)
end)

describe("large files move without being held in memory", function()
  it("local provider #slow", function()
    check({ module = "local", isolation = "none" })
  end)

  for _, name in ipairs({ "e2b", "daytona" }) do
    it(name .. " provider, on its strict fake in another process #slow", function()
      local why = require("spec.support.namespaces").skip()
      if why then return pending(why) end
      local p <close>, f = fake(name)   -- luacheck: ignore 211 (closed: kills the fake)
      check(name == "e2b"
        and { module = "e2b", api_url = f.url, api_key = f.token, sandbox_url = f.sandbox_url }
        or { module = "daytona", api_url = f.url .. "/api", api_key = f.token })
    end)
  end
end)
