-- spec/helper.lua: shared fixtures. Loaded by busted before the specs (see .busted) and
-- required by specs as `local h = require("spec.helper")`.
local sandlot = require("sandlot")

local h = {}

h.BIN = os.getenv("SANDLOT_BIN") or "build/sandlot"

---Wraps fn so that the spec body runs as a task of its own (joined: errors propagate).
function h.task(fn)
  return function(...)
    return sandlot.spawn(fn, ...):join()
  end
end

---Number of open file descriptors of this process.
function h.fd_count()
  local p = io.popen("ls /proc/" .. require("sandlot.core.sys").getpid() .. "/fd")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1                              -- the listing's own pipe
end

---The fd count once what earlier specs dropped is gone: their handles collected and the
---loop's close callbacks run (a cached connection closing mid-spec would lower the count).
function h.settled_fd_count()
  for _ = 1, 2 do collectgarbage("collect") end
  sandlot.sleep(0.05)
  return h.fd_count()
end

---Asserts that no file descriptor opened since `before` (a settled count) is still open. One
---fewer is fine: a descriptor of an earlier spec (a cached connection, a collected handle) may
---close meanwhile, and the count cannot tell whose it was. Closes may lag: waits up to 5 s.
function h.assert_no_fd_leak(before)
  local now = h.settled_fd_count()
  if now > before then
    h.eventually(function() now = h.settled_fd_count(); return now <= before end, 5)
  end
  assert(now <= before, ("%d file descriptors open, %d before: a leak"):format(now, before))
end

local built_c = {}                         -- C source -> {dir, bin}: one compile per run

---Compiles a test program (cc -O2 -pthread) once per busted run; returns its path.
function h.build_c(src, name)
  local b = built_c[src]
  if not b then
    local dir = h.tmpdir()
    b = { dir = dir, bin = dir .. "/" .. name }
    local r = assert(sandlot.proc.run({ "cc", "-O2", "-pthread", "-o", b.bin, src },
                                      { timeout = 120 }))
    assert(r.exit_code == 0, ("cannot compile %s: %s"):format(src, r.stderr))
    built_c[src] = b
  end
  return b.bin, b.dir
end

---Removes what build_c compiled for src.
function h.forget_c(src)
  if built_c[src] then h.rmtree(built_c[src].dir) end
  built_c[src] = nil
end

---Starts a test server that prints "port N" on its first line; returns the process and the
---port (it is killed, and the call raises, when no such line comes within 10 s).
function h.start_server(argv, what)
  local p = assert(sandlot.proc.spawn(argv, { stream = true }))
  local line = ""
  sandlot.timeout(10, function()
    while not line:find("\n") do
      local chunk = p:read()
      if not chunk then break end
      line = line .. chunk
    end
  end)
  local port = line:match("port (%d+)")
  if not port then
    p:kill("KILL")
    p:wait()
    p:close()
    error(("%s did not start: %s"):format(what, line))
  end
  return p, port
end

---Pids of this process's live (or zombie) children.
function h.children()
  local pid = require("sandlot.core.sys").getpid()
  local kids = {}
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  if f then
    for k in f:read("a"):gmatch("%d+") do kids[#kids + 1] = tonumber(k) end
    f:close()
  end
  return kids
end

---State of a process ("R", "S", "Z", ...) or nil when it no longer exists.
function h.proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s:match("%) (%a)")
end

---Whether a process exists (a zombie counts as gone).
function h.alive(pid)
  local st = h.proc_state(pid)
  return st ~= nil and st ~= "Z"
end

---Runs the host binary (or opts.bin) with args and stdin; returns exit code, stdout, stderr.
function h.host(args, opts)
  opts = opts or {}
  local argv = { opts.bin or h.BIN }
  for i = 1, #args do argv[#argv + 1] = args[i] end
  local r = assert(sandlot.proc.run(argv, { stdin = opts.stdin, env = opts.env,
                                            cwd = opts.cwd, timeout = opts.timeout or 60 }))
  return r.exit_code, r.stdout, r.stderr, r
end

---Waits (polling) until pred() is true or `secs` pass; returns pred's last value.
function h.eventually(pred, secs)
  local deadline = os.time() + (secs or 10)
  local v = pred()
  while not v and os.time() <= deadline do
    sandlot.sleep(0.02)
    v = pred()
  end
  return v
end

---A fresh temporary directory, removed by h.rmtree; tag (optional) goes into its name.
---@param tag? string
function h.tmpdir(tag)
  local template = "/tmp/sandlot-spec." .. (tag and tag .. "." or "") .. "XXXXXX"
  local r = assert(sandlot.proc.run({ "mktemp", "-d", template }))
  return (r.stdout:gsub("%s+$", ""))
end

---Runs fn() with sandlot.fs.sink's host files failing as they close (their data written, then
---io_error: a full disk's last flush), and returns what fn returns.
function h.with_failing_sink(fn)
  local fs = require("sandlot.fs")
  local real = fs.sink
  fs.sink = function(path)
    local s, err = real(path)
    if not s then return nil, err end
    local finish = s.finish
    s.finish = function(self)
      finish(self)
      return nil, require("sandlot.errors").new("io_error", "cannot write " .. path .. ": EIO")
    end
    return s
  end
  local r = table.pack(pcall(fn))
  fs.sink = real
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

---Asserts what a provider's streamed read_file{to} does when the host file's last write fails
---(h.with_failing_sink): io_error, and neither the destination nor a part file is left; a
---control read beside it shows the same read succeeds otherwise. sb: a live sandbox.
function h.assert_read_to_fails_cleanly(sb)
  local assert = require("luassert")
  assert(sb:write_file("big.bin", ("x"):rep(100000)))
  local dir = h.tmpdir()
  assert.equal(100000, assert(sb:read_file("big.bin", { to = dir .. "/control.bin" })))
  local r, err = h.with_failing_sink(function()
    return sb:read_file("big.bin", { to = dir .. "/out.bin" })
  end)
  assert.is_nil(r)
  assert.equal("io_error", err.code)
  assert.equal("control.bin\n", assert(sandlot.proc.run({ "ls", "-A", dir })).stdout)
end

---A file's whole contents (raises when it cannot be read).
function h.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function h.rmtree(path)
  assert(path:match("^/tmp/sandlot%-spec"), "refusing to remove " .. path)
  sandlot.proc.run({ "rm", "-rf", path })
end

---Asserts that no child process is left (zombie or alive) after a spec.
function h.assert_no_children()
  local left = h.eventually(function() return #h.children() == 0 end, 5)
  assert(left, "child processes left behind: " .. table.concat(h.children(), " "))
end

return h
