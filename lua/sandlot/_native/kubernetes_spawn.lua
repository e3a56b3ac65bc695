-- sandlot._native.kubernetes_spawn: spawn for providers/kubernetes.lua (installed at the bottom
-- of that file), kept apart to keep the provider file within its size. Contract:
-- providers/README.md, "spawn".
-- The process is one exec WebSocket with stdin open (v5.channel.k8s.io only: v4 cannot end
-- stdin). The provider's wrapper starts a watcher that sends the command each signal name
-- written to a fifo in the pod (the channel protocol has no signal of its own), then execs the
-- command, which keeps the exec's stdin, default signals and exit status. A task reads the
-- socket into a bounded queue: when nobody reads, reading stops and the API server holds the
-- output. kill is a second, short exec that writes the signal's name to the fifo (opened
-- read-write, so it never blocks); close kills what still runs the same way, from a cleanup
-- task. The wrapper's reaper removes the fifo once the command has gone; so does this side,
-- after the exit (a pod whose execs do not share a PID namespace ends the reaper with it).
local errors = require("sandlot.errors")
local exec = require("sandlot.exec")
local id = require("sandlot.id")
local task = require("sandlot.task")
local queue = require("sandlot.queue")

local M = {}

local QUEUE_MAX = 4 * 1024 * 1024               -- output queued before reading stops
local CHUNK = 256 * 1024                        -- stdin bytes per WebSocket frame
local KILL_TIMEOUT = 30                         -- s for the exec that delivers a signal
-- the signals the watcher's `kill -s NAME` is given (names POSIX kill knows)
local NAMES = { HUP = 1, INT = 1, QUIT = 1, KILL = 1, TERM = 1, USR1 = 1, USR2 = 1, ALRM = 1,
                CONT = 1, STOP = 1, ABRT = 1, PIPE = 1 }
-- writes $2 and a newline to the fifo $1 when it exists (opened read-write: never blocks)
local SIGNAL = '[ -p "$1" ] || exit 3; exec 4<>"$1"; printf "%s\\n" "$2" >&4'

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local Process = {}
Process.__index = Process

function Process:read()
  local f, err = self.q:get()
  if f then return f[1], f[2] end
  return nil, err
end

function Process:write(data)
  if self.stdin_closed then return fail("invalid_input", "the process's stdin is closed") end
  if self.exit ~= nil or self.q.closed then
    return fail("invalid_input", "the process has exited")
  end
  for i = 1, #data, CHUNK do
    local ok, err = self.conn:send("\0" .. data:sub(i, i + CHUNK - 1), { binary = true })
    if not ok then return nil, err end
  end
  return true
end

function Process:close_stdin()
  if self.stdin_closed then return true end
  self.stdin_closed = true
  if self.exit ~= nil or self.q.closed then return true end
  local ok, err = self.conn:send("\255\0", { binary = true })     -- v5: the end of stdin
  if not ok and not err.closed then return nil, err end
  return true
end

function Process:wait()
  if self.result then return self.result end
  local ok, err = self.q:wait_for(function() return self.exit ~= nil end)
  if not ok and err then return nil, err end
  if self.exit == nil then
    return nil, self.q.err or errors.new("io_error", "kubernetes spawn: the connection closed " ..
                                         "before the command's exit status")
  end
  local n = self.killed
  if n and self.exit == 128 + n then self.sink:exit(nil, n) else self.sink:exit(self.exit) end
  self.result = self.sink:result()
  return self.result
end

-- Delivers signal `name` through the fifo: true, or nil, err (not_found once it is gone).
local function signal(h, p, name)
  local r, err = h.run(p.ctx, p.handle, { "/bin/sh", "-c", SIGNAL, "sh", p.fifo, name },
                       { timeout = KILL_TIMEOUT, max_output = 4096 })
  if not r then return nil, err end
  if r.exit_code == 3 then return fail("not_found", "the process has exited") end
  if r.exit_code ~= 0 then
    return fail("io_error", "kubernetes spawn: the signal was not delivered (exit %s: %s)",
                tostring(r.exit_code), (r.stderr or ""):sub(1, 200))
  end
  return true
end

function Process:kill(sig)
  if self.exit ~= nil or self.q.closed then return fail("not_found", "the process has exited") end
  local n = math.type(sig) == "integer" and sig or exec.signal_number(tostring(sig or "TERM"))
  local name = n and exec.signal_name(n)
  if not name or not NAMES[name] then
    return fail("invalid_input", "kubernetes spawn: cannot send signal %s", tostring(sig))
  end
  self.killed = n
  return signal(self.h, self, name)
end

-- Never yields: the kill of what still runs and the socket's close are a cleanup task.
function Process:close()
  if self.closed then return true end
  self.closed = true
  local running = self.exit == nil and not self.q.closed
  local conn, h = self.conn, self.h
  if not self.reader:done() then self.reader:cancel() end
  task.cleanup(function()
    if running then signal(h, self, "KILL") end
    task.timeout(5, conn.close, conn, 1000)
  end)
  self.q:close(errors.new("invalid_input", "the process is closed"))
  self.sink:close()
  return true
end

-- The reader: binary frames (1 stdout, 2 stderr, 3 the Status) until the Status.
local function pump(p)
  local err
  while true do
    local data, kind = p.conn:receive()
    if not data then
      if not (type(kind) == "table" and kind.closed) then err = kind end
      break
    end
    if kind == "binary" and #data >= 1 then
      local ch = data:byte(1)
      if (ch == 1 or ch == 2) and #data > 1 then
        local ok, qerr = p.q:put({ ch == 1 and "stdout" or "stderr", data:sub(2) }, #data - 1)
        if not ok then err = qerr; break end
      elseif ch == 3 then
        local code, cerr = p.h.exit_code(data:sub(2), p.cl)
        if code then p.exit = code else err = cerr end
        local h, ctx, handle, fifo = p.h, p.ctx, p.handle, p.fifo
        task.cleanup(function()
          h.run(ctx, handle, { "rm", "-f", "--", fifo }, { timeout = KILL_TIMEOUT,
                                                             max_output = 4096 })
        end)
        break
      end
    end
  end
  p.q:close(err)
  p.conn:close(1000)
end

---Installs spawn into the provider P. h: {open_exec, exit_code, run} from the provider.
function M.install(P, h)
  ---Starts argv in the pod with stdin, stdout and stderr open (see the header).
  function P.spawn(ctx, handle, argv, opts)
    local tag = id.hex(8)
    local conn, cl = h.open_exec(ctx, handle, argv, opts, tag)
    if not conn then return nil, cl end
    local p = setmetatable({ h = h, ctx = ctx, handle = handle, cl = cl, conn = conn,
                             fifo = "/tmp/.sandlot-spawn-" .. tag,
                             q = queue.new{ max_bytes = QUEUE_MAX },
                             sink = exec.sink{ max_output = 0 } }, Process)
    p.reader = task.spawn(pump, p)
    return p
  end
end

return M
