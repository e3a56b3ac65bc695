-- sandlot.exec: the exec result kit for providers. A sink takes a command's output as it
-- arrives (calling the caller's on_stdout/on_stderr), keeps head and tail of each stream under
-- max_output in C (core/outbuf.c, the capture sandlot.proc and the SSH exec use), and builds
-- the one result table every exec returns. Providers never build a result by hand.
local core = require("sandlot.core.outbuf")

---What exec returns (sb:exec, sandlot.proc.run): the exit status is the command's (124 for
---a timeout, 128 + N for signal N).
---@class sandlot.ExecResult
---@field exit_code integer
---@field signal? integer the signal that ended it
---@field stdout string
---@field stderr string
---@field timed_out boolean
---@field truncated boolean output was over max_output: the head and the tail are kept

local M = {}

---Bytes kept per stream when an exec gives no max_output (16 MiB): the one definition.
M.DEFAULT_MAX_OUTPUT = core.DEFAULT_MAX_OUTPUT

local known = { max_output = true, on_stdout = true, on_stderr = true }

---@class sandlot.ExecSink
---@field private _ob userdata
---@field private _on table<string, function>
local Sink = {}
Sink.__index = Sink

---Creates a sink for one command's output.
---@param opts? {max_output?: integer, on_stdout?: fun(data: string),
---  on_stderr?: fun(data: string)}
---@return sandlot.ExecSink
function M.sink(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("exec.sink: opts must be a table", 2) end
  for k in pairs(opts) do
    if not known[k] then error("exec.sink: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local cap = opts.max_output
  if cap ~= nil and (math.type(cap) ~= "integer" or cap < 0) then
    error("exec.sink: max_output must be an integer >= 0", 2)
  end
  for _, name in ipairs({ "on_stdout", "on_stderr" }) do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error("exec.sink: " .. name .. " must be a function", 2)
    end
  end
  return setmetatable({ _ob = core.new(cap or M.DEFAULT_MAX_OUTPUT),
                        _on = { stdout = opts.on_stdout, stderr = opts.on_stderr } }, Sink)
end

---Takes a piece of output: captures it under the cap, then hands all of it to the stream's
---callback. Raises for a stream other than "stdout"/"stderr", non-string data, or after exit.
---@param stream "stdout"|"stderr"
---@param data string
function Sink:add(stream, data)
  if type(data) ~= "string" then
    error("exec sink: add: data must be a string, got " .. type(data), 2)
  end
  self._ob:add(stream, data)
  local fn = self._on[stream]
  if fn and #data > 0 then fn(data) end
end

---Records how the command ended. code is the exit status (nil when only a signal is known);
---signal, when the service reports one, is its number or its name ("KILL", "SIGKILL"). A
---signal makes exit_code 128 + signal; an exit code above 128 alone is just an exit code.
---@param code integer|nil
---@param signal? integer|string
function Sink:exit(code, signal)
  self._ob:exit(code, signal)
end

---Records that the command was killed for running too long. A result taken without exit()
---afterwards reports it killed by SIGKILL (exit_code 137), as a local timeout does.
function Sink:timed_out()
  self._ob:timed_out()
end

---Returns the exec result: {exit_code, signal?, signal_name?, stdout, stdout_bytes, stderr,
---stderr_bytes, timed_out, truncated, duration}. Raises before exit() or timed_out().
---@return table
function Sink:result()
  return self._ob:result()
end

---Returns the bytes the sink holds for both streams (at most 2 * max_output).
---@return integer
function Sink:memory()
  return self._ob:memory()
end

---Frees the captured output at once (also done by the garbage collector).
function Sink:close()
  self._ob:close()
end
Sink.__close = Sink.close

---Returns a signal's number for its name ("TERM" or "SIGTERM"), or nil.
---@param name string
---@return integer|nil
M.signal_number = core.signal_number

---Returns a signal's name without "SIG" for its number, or nil.
---@param n integer
---@return string|nil
M.signal_name = core.signal_name

return M
