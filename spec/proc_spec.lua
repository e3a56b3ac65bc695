-- spec/proc_spec.lua: sandlot.proc against real processes on this machine.
local sandlot = require("sandlot")
local h = require("spec.helper")
local proc = sandlot.proc

describe("proc.run", function()
  after_each(h.assert_no_children)

  it("returns exit code, stdout and stderr separately", function()
    local r = assert(proc.run({ "sh", "-c", "echo out; echo err >&2; exit 3" }))
    assert.same({ 3, "out\n", "err\n", false, false },
                { r.exit_code, r.stdout, r.stderr, r.timed_out, r.truncated })
    assert.is_nil(r.signal)
    assert.is_true(r.duration > 0)
  end)

  it("runs a shell string through /bin/sh -c and an argv list without a shell", function()
    local r = assert(proc.run("echo $((6 * 7))"))
    assert.equal("42\n", r.stdout)
    local r2 = assert(proc.run({ "echo", "$((6 * 7))", "a b", "'q'" }))
    assert.equal("$((6 * 7)) a b 'q'\n", r2.stdout)
  end)

  it("reports a missing binary as not_found", function()
    local r, err = proc.run({ "/nonexistent/bin/tool" })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.is_false(err.retryable)
    assert.matches("/nonexistent/bin/tool", err.message, 1, true)
  end)

  it("reports a non-executable file as permission_denied", function()
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. "/script", "w"))
    f:write("#!/bin/sh\necho ran\n")
    f:close()
    local r, err = proc.run({ dir .. "/script" })
    h.rmtree(dir)
    assert.is_nil(r)
    assert.equal("permission_denied", err.code)
  end)

  it("reports a missing cwd clearly", function()
    local r, err = proc.run({ "true" }, { cwd = "/nonexistent/dir" })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.matches("cwd", err.message)
    local _, err2 = proc.run({ "true" }, { cwd = "/etc/hostname" })
    assert.equal("invalid_input", err2.code)
  end)

  it("raises on misuse: unknown option, bad command, bad timeout", function()
    assert.has_error(function() proc.run({ "true" }, { tiemout = 1 }) end)
    assert.has_error(function() proc.run({}) end)
    assert.has_error(function() proc.run({ "echo", {} }) end)
    assert.has_error(function() proc.run({ "true" }, { timeout = -1 }) end)
  end)

  it("merges env into the host environment, or replaces it with clear_env", function()
    local r = assert(proc.run({ "sh", "-c", "echo $SANDLOT_X:${HOME:+home}" },
                              { env = { SANDLOT_X = "x y" } }))
    assert.equal("x y:home\n", r.stdout)
    local r2 = assert(proc.run({ "/usr/bin/env" }, { env = { ONLY = "1" }, clear_env = true }))
    assert.equal("ONLY=1\n", r2.stdout)
    local r3 = assert(proc.run({ "sh", "-c", "echo ${HOME:-unset}" }, { env = { HOME = false } }))
    assert.equal("unset\n", r3.stdout)
  end)

  it("runs in cwd", function()
    local r = assert(proc.run({ "pwd" }, { cwd = "/usr/share" }))
    assert.equal("/usr/share\n", r.stdout)
  end)

  it("round-trips binary stdin (every byte value) unchanged", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local data = table.concat(bytes):rep(4096)              -- 1 MiB
    local r = assert(proc.run({ "cat" }, { stdin = data }))
    assert.equal(#data, #r.stdout)
    assert.is_true(r.stdout == data)
  end)

  it("takes stdin from a writer function", function()
    local chunks = { "one\n", "two\n", "three\n" }
    local function stdin() return table.remove(chunks, 1) end
    local r = assert(proc.run({ "wc", "-l" }, { stdin = stdin }))
    assert.equal("3", r.stdout:match("%d+"))
  end)

  it("reports a signal death with signal and 128+n", function()
    local r = assert(proc.run({ "sh", "-c", "kill -TERM $$" }))
    assert.equal(15, r.signal)
    assert.equal(143, r.exit_code)
  end)

  it("times out, kills the whole group including grandchildren, and says timed_out", function()
    local dir = h.tmpdir()
    local r = assert(proc.run({ "sh", "-c", "sleep 30 & echo $! > " .. dir .. "/gc; sleep 30" },
                              { timeout = 0.3 }))
    assert.is_true(r.timed_out)
    assert.equal(9, r.signal)
    local f = assert(io.open(dir .. "/gc"))
    local gc = tonumber(f:read("a"))
    f:close()
    assert.is_true(h.eventually(function() return not h.alive(gc) end, 5))
    h.rmtree(dir)
  end)

  it("kills background stragglers when the leader exits, so output ends", function()
    local r = assert(proc.run({ "sh", "-c", "sleep 30 & echo started" }, { timeout = 20 }))
    assert.equal("started\n", r.stdout)
    assert.is_false(r.timed_out)
  end)

  it("keeps head and tail within max_output and says truncated", function()
    local script = "printf 'HEAD'; head -c 100000 /dev/zero; printf 'TAIL'"
    local r = assert(proc.run({ "sh", "-c", script }, { max_output = 1000 }))
    assert.is_true(r.truncated)
    assert.equal(1000, #r.stdout)
    assert.equal(100008, r.stdout_bytes)
    assert.equal("HEAD", r.stdout:sub(1, 4))
    assert.equal("TAIL", r.stdout:sub(-4))
  end)

  it("spills the whole stream to a file while keeping memory at the cap", function()
    local r = assert(proc.run({ "sh", "-c", "seq 1 200000" }, { max_output = 100, spill = true }))
    assert.is_true(r.truncated)
    local f = assert(io.open(r.stdout_file, "rb"))
    local all = f:read("a")
    f:close()
    os.remove(r.stdout_file)
    os.remove(r.stderr_file)
    assert.equal(r.stdout_bytes, #all)
    assert.equal("200000\n", all:sub(-7))
  end)

  it("streams chunks to callbacks while the command runs", function()
    local seen, order = {}, {}
    local script = "echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c"
    local r = assert(proc.run({ "sh", "-c", script }, {
      on_stdout = function(c) seen[#seen + 1] = c; order[#order + 1] = "out" end,
      on_stderr = function(c) order[#order + 1] = "err" end,
    }))
    assert.equal("a\nc\n", table.concat(seen))
    assert.same({ "out", "err", "out" }, order)
    assert.equal("a\nc\n", r.stdout)                 -- captured as well
  end)

  it("stays within a small RSS bound for 100 MB of output under a 1 MB cap #slow", function()
    local code, out = h.host({ "-e", [[
      local r = assert(require("sandlot").proc.run({"sh", "-c", "head -c 104857600 /dev/zero"},
                                                   {max_output = 1048576}))
      assert(r.stdout_bytes == 104857600 and #r.stdout == 1048576 and r.truncated)
      for line in io.lines("/proc/self/status") do
        local kb = line:match("^VmHWM:%s+(%d+)")
        if kb then print(kb) end
      end]] })
    assert.equal(0, code)
    local kb = tonumber(out:match("%d+"))
    assert.is_true(kb < 40 * 1024, "peak RSS " .. kb .. " KiB")
  end)

  it("the descriptor check sees a planted leak", function()
    local before = h.settled_fd_count()
    local f = assert(io.open("/dev/null"))
    assert.is_false(pcall(h.assert_no_fd_leak, before))
    f:close()
    h.assert_no_fd_leak(before)
  end)

  it("leaks no file descriptors and leaves no zombies over 500 runs", function()
    local before = h.settled_fd_count()
    for _ = 1, 500 do
      local r = assert(proc.run({ "true" }))
      assert.equal(0, r.exit_code)
    end
    h.assert_no_fd_leak(before)
    assert.same({}, h.children())
  end)
end)

describe("proc concurrency", function()
  after_each(h.assert_no_children)

  it("runs 500 processes through map with limit 64, all with correct results", function()
    local items = {}
    for i = 1, 500 do items[i] = i end
    local res, errs = sandlot.map(items, function(i)
      return assert(proc.run({ "sh", "-c", "echo $1", "sh", tostring(i) })).stdout
    end, { limit = 64 })
    assert.is_nil(errs)
    for i = 1, 500 do assert.equal(i .. "\n", res[i]) end
  end)

  it("cancelling a task kills the process it waits on", function()
    local dir = h.tmpdir()
    local t = sandlot.spawn(function()
      return proc.run({ "sh", "-c", "echo $$ > " .. dir .. "/pid; exec sleep 30" })
    end)
    local pidfile = dir .. "/pid"
    assert.is_true(h.eventually(function()
      local f = io.open(pidfile)
      local ok = f and f:read("n")
      if f then f:close() end
      return ok
    end, 5) ~= nil)
    local f = io.open(pidfile)
    local pid = f:read("n")
    f:close()
    assert.is_true(t:cancel())
    local r, err = t:join()
    assert.is_nil(r)
    assert.equal("cancelled", err.code)
    assert.is_true(h.eventually(function() return not h.alive(pid) end, 5))
    h.rmtree(dir)
  end)

  it("sandlot.timeout releases the process underneath", function()
    local r, err = sandlot.timeout(0.2, function() return proc.run({ "sleep", "30" }) end)
    assert.is_nil(r)
    assert.equal("timeout", err.code)
    assert.is_true(err.retryable)
  end)
end)

describe("proc.spawn handles", function()
  after_each(h.assert_no_children)

  it("writes, closes stdin, reads chunks and waits", function()
    local p <close> = assert(proc.spawn({ "cat" }, { stdin = "pipe", stream = true }))
    assert.is_true(p:write("hello "))
    assert.is_true(p:write("world"))
    p:close_stdin()
    local got = {}
    while true do
      local chunk, which = p:read()
      if not chunk then break end
      assert.equal("stdout", which)
      got[#got + 1] = chunk
    end
    assert.equal("hello world", table.concat(got))
    local r = p:wait()
    assert.equal(0, r.exit_code)
    assert.equal("hello world", r.stdout)
  end)

  it("a reader slower than the process gets every byte: reading stops at the queue's high " ..
     "mark and starts again once it drains", function()
    local size = 12 * 1024 * 1024                    -- three times the 4 MiB high mark
    local p <close> = assert(proc.spawn({ "head", "-c", tostring(size), "/dev/zero" },
                                        { stream = true, max_output = 0 }))
    sandlot.sleep(0.5)                               -- the queue fills; the pipe stops
    local got, err = sandlot.timeout(20, function()
      local n = 0
      while true do
        local chunk = p:read()
        if not chunk then return n end
        n = n + #chunk
      end
    end)
    assert.is_nil(err, "the read stalled once the queue had filled")
    assert.equal(size, got)
    assert.equal(0, p:wait().exit_code)
  end)

  it("kills with a named signal and reports it", function()
    local p <close> = assert(proc.spawn({ "sleep", "30" }))
    assert.is_true(p:running())
    assert.is_true(p:kill("INT"))
    local r = p:wait()
    assert.equal(2, r.signal)
    local ok, err = p:kill()
    assert.is_nil(ok)
    assert.equal("not_found", err.code)
    assert.has_error(function() p:kill("NOPE") end)
  end)

  it("closing a handle kills what still runs; use after close raises", function()
    local p = assert(proc.spawn({ "sleep", "30" }))
    local pid = p:pid()
    p:close()
    p:close()                                        -- idempotent
    assert.is_true(h.eventually(function() return not h.alive(pid) end, 5))
    assert.has_error(function() p:wait() end, "attempt to use a closed sandlot.proc")
  end)

  it("a forgotten handle is killed and reaped by the garbage collector", function()
    local pid
    do
      local p = assert(proc.spawn({ "sleep", "30" }))
      pid = p:pid()
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(h.eventually(function() return not h.alive(pid) end, 5))
  end)

  it("writing to a process that exited is an error, not a crash", function()
    local p <close> = assert(proc.spawn({ "true" }, { stdin = "pipe" }))
    p:wait()
    local ok, err
    for _ = 1, 20 do                                  -- the pipe may take a write or two
      ok, err = p:write(("x"):rep(65536))
      if not ok then break end
    end
    assert.is_nil(ok)
    assert.truthy(err.code)
  end)
end)

describe("proc.run stdin", function()
  it("treats a string as data, even the word pipe", function()
    local r = assert(proc.run({ "cat" }, { stdin = "pipe" }))
    assert.equal("pipe", r.stdout)
  end)
end)
