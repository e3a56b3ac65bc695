-- spec/lib/exec_spec.lua: sandlot.exec's sink, the one output capture and result builder that
-- providers use (core/outbuf.c underneath, shared with sandlot.proc and the SSH exec).
local exec = require("sandlot.exec")
local proc = require("sandlot.proc")

-- What a cap keeps: everything up to cap bytes, else the first cap//2 and the last cap - cap//2.
local function reference(s, cap)
  if #s <= cap then return s, false end
  local head = cap // 2
  local tail = cap - head
  return s:sub(1, head) .. (tail > 0 and s:sub(-tail) or ""), true
end

local function feed(cap, chunks)
  local sink = exec.sink{ max_output = cap }
  for _, c in ipairs(chunks) do sink:add("stdout", c) end
  sink:exit(0)
  return sink:result()
end

local function bytes(s)
  local t = {}
  for c in s:gmatch(".") do t[#t + 1] = c end
  return t
end

describe("sandlot.exec sink", function()
  describe("head and tail under max_output", function()
    local cases = {
      { "under the cap", 10, { "abc" }, "abc", false },
      { "exactly the cap", 10, { "0123456789" }, "0123456789", false },
      { "one byte over", 10, { "0123456789A" }, "012346789A", true },
      { "over in several chunks", 10, { "0123", "4567", "89AB", "CDEF" }, "01234BCDEF", true },
      { "one chunk far over", 10, { "abcdefghijklmnopqrstuvwxyz" }, "abcdevwxyz", true },
      { "byte by byte, odd cap", 7, bytes("abcdefghijklm"), "abcjklm", true },
      { "cap 1 keeps the last byte", 1, { "abc" }, "c", true },
      { "cap 3", 3, { "ab", "cdef" }, "aef", true },
      { "cap 0 keeps nothing", 0, { "abc" }, "", false },
      { "empty chunks count for nothing", 4, { "", "ab", "", "cd", "" }, "abcd", false },
    }
    for _, c in ipairs(cases) do
      local name, cap, chunks, want, truncated = c[1], c[2], c[3], c[4], c[5]
      it(name, function()
        local r = feed(cap, chunks)
        local all = table.concat(chunks)
        assert.equal(want, r.stdout)
        assert.equal(truncated, r.truncated)
        assert.equal(#all, r.stdout_bytes)
        assert.equal(want, (reference(all, cap)))   -- the table agrees with the rule
      end)
    end

    it("agrees with the rule for many chunkings", function()
      math.randomseed(9)
      for _ = 1, 200 do
        local cap = math.random(0, 64)
        local chunks, all = {}, {}
        for i = 1, math.random(0, 12) do
          local piece = string.rep(string.char(64 + i), math.random(0, 40))
          chunks[#chunks + 1], all[#all + 1] = piece, piece
        end
        local r = feed(cap, chunks)
        local want, truncated = reference(table.concat(all), cap)
        assert.equal(want, r.stdout)
        assert.equal(truncated and cap > 0, r.truncated)
      end
    end)

    it("cuts where a local exec cuts", function()
      local script = "printf 'HEAD'; head -c 5000 /dev/zero | tr '\\0' x; printf 'TAIL'"
      local lr = assert(proc.run({ "sh", "-c", script }, { max_output = 999 }))
      local sink = exec.sink{ max_output = 999 }
      local text = "HEAD" .. string.rep("x", 5000) .. "TAIL"
      for i = 1, #text, 700 do sink:add("stdout", text:sub(i, i + 699)) end
      sink:exit(0)
      local r = sink:result()
      assert.is_true(lr.truncated)
      assert.same({ lr.stdout, lr.stdout_bytes, lr.truncated },
                  { r.stdout, r.stdout_bytes, r.truncated })
    end)

    it("keeps the streams apart, each with its own cap", function()
      local sink = exec.sink{ max_output = 4 }
      sink:add("stdout", "abcdefgh")
      sink:add("stderr", "xy")
      sink:exit(0)
      local r = sink:result()
      assert.same({ "abgh", 8, "xy", 2, true }, { r.stdout, r.stdout_bytes, r.stderr,
                                                   r.stderr_bytes, r.truncated })
    end)
  end)

  it("keeps binary data with NUL bytes intact, across the cut too", function()
    local data = "a\0b\0\255\0" .. string.rep("\0", 100) .. "\1\0z"
    local r = feed(1000, { data })
    assert.equal(data, r.stdout)
    r = feed(8, { data })
    assert.equal("a\0b\0" .. "\0\1\0z", r.stdout)
    assert.equal(#data, r.stdout_bytes)
  end)

  it("stays bounded for huge input", function()
    local sink = exec.sink{ max_output = 1000 }
    local piece = string.rep("y", 64 * 1024)
    sink:add("stdout", "x")
    assert.is_true(sink:memory() > 0)           -- the measure sees what is held
    for _ = 1, 256 do sink:add("stdout", piece) end   -- 16 MiB
    assert.is_true(sink:memory() <= 2 * 1000)
    sink:exit(0)
    local r = sink:result()
    assert.equal(1000, #r.stdout)
    assert.equal(1 + 256 * 64 * 1024, r.stdout_bytes)
    assert.equal("x" .. string.rep("y", 999), r.stdout)
  end)

  it("hands every chunk to the callbacks, beyond the cap too", function()
    local seen = { stdout = {}, stderr = {} }
    local sink = exec.sink{ max_output = 2,
                            on_stdout = function(d) table.insert(seen.stdout, d) end,
                            on_stderr = function(d) table.insert(seen.stderr, d) end }
    sink:add("stdout", "one")
    sink:add("stderr", "two")
    sink:add("stdout", "three\0")
    sink:add("stdout", "")
    sink:exit(0)
    assert.same({ stdout = { "one", "three\0" }, stderr = { "two" } }, seen)
    assert.equal("o\0", sink:result().stdout)
  end)

  it("captures a chunk even when its callback raises", function()
    local sink = exec.sink{ on_stdout = function() error("boom") end }
    assert.has_error(function() sink:add("stdout", "kept") end)
    sink:exit(0)
    assert.equal("kept", sink:result().stdout)
  end)

  it("builds the result table local exec returns", function()
    local sink = exec.sink()
    sink:add("stdout", "out\n")
    sink:add("stderr", "err\n")
    sink:exit(3)
    local r = sink:result()
    local keys = {}
    for k in pairs(r) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "duration", "exit_code", "stderr", "stderr_bytes", "stdout", "stdout_bytes",
                  "timed_out", "truncated" }, keys)
    assert.same({ 3, "out\n", "err\n", false, false },
                { r.exit_code, r.stdout, r.stderr, r.timed_out, r.truncated })
    assert.equal("number", type(r.duration))
    local lr = assert(proc.run({ "sh", "-c", "echo out; echo err >&2; exit 3" }))
    for _, k in ipairs(keys) do assert.equal(type(lr[k]), type(r[k]), k) end
    assert.same({ r.exit_code, r.stdout, r.stderr }, { lr.exit_code, lr.stdout, lr.stderr })
  end)

  describe("one signal rule", function()
    local cases = {
      { "an exit code above 128 is only an exit code", { 130 }, 130, nil, nil },
      { "a signal number", { nil, 2 }, 130, 2, nil },
      { "a signal with a code: 128 + signal", { -1, 9 }, 137, 9, nil },
      { "a signal name", { nil, "INT" }, 130, 2, "INT" },
      { "a SIG-prefixed name", { nil, "SIGTERM" }, 143, 15, "TERM" },
      { "an unknown name keeps the code", { 1, "SIGFOO" }, 1, nil, "FOO" },
      { "an unknown name without a code", { nil, "FOO" }, 255, nil, "FOO" },
      { "exit 0", { 0 }, 0, nil, nil },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local sink = exec.sink()
        sink:exit(c[2][1], c[2][2])
        local r = sink:result()
        assert.same({ c[3], c[4], c[5] }, { r.exit_code, r.signal, r.signal_name })
      end)
    end

    it("a timeout without an exit status reads as killed by SIGKILL", function()
      local sink = exec.sink()
      sink:add("stdout", "partial")
      sink:timed_out()
      local r = sink:result()
      assert.same({ 137, 9, true, "partial" }, { r.exit_code, r.signal, r.timed_out, r.stdout })
    end)

    it("a timeout with the service's status keeps the status", function()
      local sink = exec.sink()
      sink:timed_out()
      sink:exit(nil, "KILL")
      local r = sink:result()
      assert.same({ 137, 9, true }, { r.exit_code, r.signal, r.timed_out })
    end)

    it("names and numbers map both ways", function()
      assert.same({ 15, 9, "TERM", "WINCH" }, { exec.signal_number("TERM"),
        exec.signal_number("SIGKILL"), exec.signal_name(15), exec.signal_name(28) })
      assert.is_nil(exec.signal_number("NOPE"))
      assert.is_nil(exec.signal_name(99))
    end)
  end)

  it("defines the 16 MiB default once, and sandlot.proc uses it", function()
    assert.equal(16 * 1024 * 1024, exec.DEFAULT_MAX_OUTPUT)
    assert.equal(exec.DEFAULT_MAX_OUTPUT, proc.DEFAULT_MAX_OUTPUT)
    local sink = exec.sink()
    sink:add("stdout", string.rep("z", exec.DEFAULT_MAX_OUTPUT))
    sink:add("stdout", "!")
    sink:exit(0)
    local r = sink:result()
    assert.is_true(r.truncated)
    assert.equal(exec.DEFAULT_MAX_OUTPUT, #r.stdout)
  end)

  describe("misuse raises", function()
    local function ended()
      local s = exec.sink()
      s:exit(0)
      return s
    end
    local cases = {
      { "an unknown option", function() exec.sink{ max_ouput = 1 } end, "unknown option" },
      { "a negative max_output", function() exec.sink{ max_output = -1 } end, "max_output" },
      { "a fractional max_output", function() exec.sink{ max_output = 1.5 } end, "max_output" },
      { "a callback that is not a function", function() exec.sink{ on_stdout = 1 } end,
        "on_stdout" },
      { "opts that are not a table", function() exec.sink("x") end, "opts" },
      { "an unknown stream", function() exec.sink():add("stdin", "x") end, "invalid option" },
      { "data that is not a string", function() exec.sink():add("stdout", 42) end,
        "must be a string" },
      { "add after exit", function() ended():add("stdout", "x") end, "after exit" },
      { "exit twice", function() ended():exit(0) end, "twice" },
      { "exit with nothing", function() exec.sink():exit() end, "exit code or signal" },
      { "a signal out of range", function() exec.sink():exit(nil, 65) end, "out of range" },
      { "signal 0", function() exec.sink():exit(nil, 0) end, "out of range" },
      { "a fractional exit code", function() exec.sink():exit(1.5) end, "number" },
      { "result before exit", function() exec.sink():result() end, "before exit" },
      { "use after close", function()
          local s = exec.sink()
          s:close()
          s:add("stdout", "x")
        end, "closed" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local ok, err = pcall(c[2])
        assert.is_false(ok)
        assert.matches(c[3], tostring(err), 1, true)
      end)
    end
  end)

  it("closes idempotently, with <close> too", function()
    local kept
    do
      local s <close> = exec.sink()
      kept = s
      s:add("stdout", "x")
      s:close()
      s:close()
    end
    assert.has_error(function() kept:memory() end)
  end)
end)
