-- sandlot._process: the process object sb:spawn returns, around the one a provider's spawn
-- returns (contract: providers/README.md, "spawn"). Owns what every provider shares: argument
-- checks, read and wait time limits (by cancelling the provider's blocking call), error
-- context, the result shape, and one idempotent close for close, __close and __gc.
local errors = require("sandlot.errors")
local task = require("sandlot.task")

local M = {}

---A live process (sb:spawn): p:write, p:read, p:wait, p:kill, p:resize (pty), p:close.
---@class sandlot.Process
local Process = { __name = "sandlot.process" }
Process.__index = Process

local STREAMS = { stdout = true, stderr = true }

local function live(self, op)
  if self._closed then error(("%s: attempt to use a closed process"):format(op), 3) end
  return self._inner
end

-- nil, err with the sandbox layer's context (op "spawn.<method>", provider, sandbox) and its
-- secrets scrubbed, by the sandbox layer's own rule
local function fail(self, err, op)
  return self._ctx.fail(err, op)
end

local function bug(self, what)
  error(("provider %s: process:%s"):format(self._ctx.provider_name, what), 3)
end

local function check_timeout(timeout, op)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout <= 0 or timeout ~= timeout) then
    error(("%s: timeout must be a number of seconds > 0"):format(op), 3)
  end
end

-- Calls inner[method](inner) in a task of its own and waits at most `seconds`. Returns what
-- the call returned, or "timeout" as a third value when the time ran out. A value the call
-- produced just as the time ran out is still returned, so nothing read is dropped.
local function within(seconds, inner, method)
  local t = task.spawn(function() return inner[method](inner) end)
  local guard = task.spawn(function()
    if task.sleep(seconds) then t:cancel("timeout") end
  end)
  local ok, a, b = pcall(t.join, t)
  guard:cancel()
  if not ok then error(a, 0) end
  if a ~= nil then return a, b end
  if task.cancelled() then                 -- we were cancelled while waiting: so is the call
    t:cancel()
    return nil, b
  end
  local _, _, code = t:status()
  if code == "timeout" and errors.is(b) then return nil, nil, "timeout" end
  return a, b
end

---Writes data to the process's stdin; waits until the provider has taken it.
---@param data string
---@return true|nil ok, sandlot.Error? err invalid_input (stdin closed), io_error, ...
function Process:write(data)
  local inner = live(self, "write")
  if type(data) ~= "string" then error("write: data must be a string", 2) end
  local ok, err = inner:write(data)
  if not ok then return fail(self, err, "write") end
  return true
end

---Closes the process's stdin (it reads end of file). Idempotent.
---@return true|nil ok, sandlot.Error? err
function Process:close_stdin()
  local ok, err = live(self, "close_stdin"):close_stdin()
  if not ok then return fail(self, err, "close_stdin") end
  return true
end

---Returns the next chunk of output and the stream it came from: "stdout" or "stderr", data.
---Returns nil (and no error) once both streams have ended.
---@param timeout? number seconds to wait for a chunk (default: until one comes)
---@return string|nil stream, string|sandlot.Error|nil data_or_err timeout, cancelled, ...
function Process:read(timeout)
  local inner = live(self, "read")
  check_timeout(timeout, "read")
  local stream, data, timed
  if timeout then stream, data, timed = within(timeout, inner, "read")
  else stream, data = inner:read() end
  if timed then
    return fail(self, errors.new("timeout", ("no output for %gs"):format(timeout),
                                 { retryable = true }), "read")
  end
  if stream == nil then
    if data == nil then return nil end
    return fail(self, data, "read")
  end
  if not STREAMS[stream] or type(data) ~= "string" then
    bug(self, "read must return \"stdout\"|\"stderr\", data; nil at the end; or nil, err " ..
        ("(got %s, %s)"):format(type(stream), type(data)))
  end
  return stream, data
end

---Waits for the process to exit and returns an exec-shaped result without output (output
---comes only through read): {exit_code, signal, timed_out, duration}. Output not read stays
---queued; a process whose output nobody reads may block once the provider's queue is full.
---@param timeout? number seconds (default: until it exits); the process keeps running after
---  a timeout
---@return table|nil result, sandlot.Error? err timeout, cancelled, ...
function Process:wait(timeout)
  local inner = live(self, "wait")
  check_timeout(timeout, "wait")
  if self._result then return self._result end
  local r, err, timed
  if timeout then r, err, timed = within(timeout, inner, "wait")
  else r, err = inner:wait() end
  if timed then
    return fail(self, errors.new("timeout", ("still running after %gs"):format(timeout),
                                 { retryable = true }), "wait")
  end
  if r == nil then return fail(self, err or errors.new("internal", "wait returned nothing"),
                               "wait") end
  if type(r) ~= "table" or math.type(r.exit_code) ~= "integer" then
    bug(self, "wait must return {exit_code = integer, signal = integer|nil, timed_out = " ..
        "boolean}")
  end
  self._result = {
    exit_code = r.exit_code,
    signal = math.type(r.signal) == "integer" and r.signal or nil,
    timed_out = r.timed_out == true,
    duration = type(r.duration) == "number" and r.duration or nil,
  }
  return self._result
end

---Changes the size of the process's terminal (spawned with opts.pty).
---@param rows integer
---@param cols integer
---@return true|nil ok, sandlot.Error? err invalid_input (no pty), not_found (it has ended), ...
function Process:resize(rows, cols)
  local inner = live(self, "resize")
  require("sandlot.proc").pty_size({ rows = rows, cols = cols }, "resize")
  if not self._pty then
    return fail(self, errors.new("invalid_input", "the process has no terminal (spawn with " ..
                                 "opts.pty)"), "resize")
  end
  if inner.resize == nil then bug(self, "resize is missing (capabilities.pty promises it)") end
  local ok, err = inner:resize(rows, cols)
  if not ok then return fail(self, err, "resize") end
  return true
end

local SIGNALS = { TERM = true, KILL = true, INT = true, HUP = true, QUIT = true, USR1 = true,
                  USR2 = true, STOP = true, CONT = true, ALRM = true, PIPE = true }

---Sends a signal to the process (and what it started, where the provider can).
---@param signal? integer|string a number or a name: "TERM" (default), "KILL", "INT", "HUP",
---  "QUIT", "USR1", "USR2", "STOP", "CONT", "ALRM", "PIPE" (with or without "SIG")
---@return true|nil ok, sandlot.Error? err not_found (it has already exited), ...
function Process:kill(signal)
  local inner = live(self, "kill")
  if signal == nil then signal = "TERM" end
  if type(signal) == "string" then
    signal = signal:gsub("^SIG", "")
    if not SIGNALS[signal] then error("kill: unknown signal name " .. signal, 2) end
  elseif math.type(signal) ~= "integer" or signal < 1 or signal > 64 then
    error("kill: signal must be a name such as \"TERM\" or an integer in 1..64", 2)
  end
  local ok, err = inner:kill(signal)
  if not ok then return fail(self, err, "kill") end
  return true
end

---Closes the process: kills it if it still runs and frees what it holds. Idempotent; also
---__close and __gc. Never raises.
---@return true
function Process:close()
  if self._closed then return true end
  self._closed = true
  local ok, err = pcall(self._inner.close, self._inner)
  if not ok then
    io.stderr:write(("sandlot: warning: closing a process of %s: %s\n")
      :format(tostring(self._ctx.sandbox), tostring(err)))
  end
  return true
end

Process.__close = function(self) self:close() end
Process.__gc = Process.__close

function Process:__tostring()
  return ("sandlot.process(%s:%s%s)"):format(self._ctx.provider, self._ctx.sandbox,
                                            self._closed and ", closed" or "")
end

local METHODS = { "write", "close_stdin", "read", "wait", "kill", "close" }

---Wraps a provider's process object. Raises when it lacks one of the contract's methods.
---@param inner table|userdata what the provider's spawn returned
---@param ctx {provider: string, sandbox: string, provider_name: string, pty: boolean?,
---  fail: fun(err: any, op: string): nil, sandlot.Error}
---@return table process
function M.wrap(inner, ctx)
  for _, m in ipairs(METHODS) do
    local ok, f = pcall(function() return inner[m] end)
    if not ok or f == nil then
      error(("provider %s: spawn must return a process with write, close_stdin, read, wait, " ..
             "kill and close (missing %s)"):format(ctx.provider_name, m), 3)
    end
  end
  return setmetatable({ _inner = inner, _ctx = ctx, _pty = ctx.pty }, Process)
end

M.Process = Process

return M
