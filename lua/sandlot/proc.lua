-- sandlot.proc: child processes for scripts (run and spawn). Turns user options into the
-- core's plain spawn options: argv or shell string, merged or replaced environment, stdin
-- from a string or a writer function, streaming callbacks, spill files. Policy lives here;
-- pipes, capture caps, timeouts and process groups are in core/proc.c.
local core = require("sandlot.core.proc")
local sched = require("sandlot.core.sched")
local sys = require("sandlot.core.sys")
local telemetry = require("sandlot.telemetry")
local check = require("sandlot._check")
local redact = require("sandlot._redact")

local M = {}

M.DEFAULT_MAX_OUTPUT = require("sandlot.exec").DEFAULT_MAX_OUTPUT   -- one definition

local function seconds(v)
  return type(v) == "number" and v > 0 and v ~= math.huge, "a number of seconds > 0"
end
local function count(v) return math.type(v) == "integer" and v >= 0, "an integer >= 0" end

local known = {
  env = "table", clear_env = "boolean", cwd = "string", stdin = true, timeout = seconds,
  max_output = count, spill = true, on_stdout = "function", on_stderr = "function",
  kill_group = "boolean", stream = "boolean", pty = "table",
}

---Checks a pty option {rows = R, cols = C} (as sb:spawn and sandlot.proc.spawn take it) and
---returns rows, cols. Raises on anything else.
---@param pty table
---@param where string the caller, for the message
---@param level? integer as error() takes it (default 3: the caller's caller)
---@return integer rows, integer cols
function M.pty_size(pty, where, level)
  level = level or 3
  for k in pairs(pty) do
    if k ~= "rows" and k ~= "cols" and k ~= "ctty" then
      error(("%s: unknown opts.pty field %s (rows, cols)"):format(where, tostring(k)), level)
    end
  end
  for _, k in ipairs({ "rows", "cols" }) do
    local v = pty[k]
    if math.type(v) ~= "integer" or v < 1 or v > 65535 then
      error(("%s: opts.pty.%s must be an integer in 1..65535"):format(where, k), level)
    end
  end
  if pty.ctty ~= nil and type(pty.ctty) ~= "boolean" then
    error(("%s: opts.pty.ctty must be a boolean"):format(where), level)
  end
  return pty.rows, pty.cols
end

---Turns a command (argv list or shell string) into an argv list.
---@param cmd string|string[]
---@param level? integer as error() takes it in the caller (default 2: the caller's caller)
---@return string[]
function M.argv(cmd, level)
  local argv = check.argv(cmd, "proc", level)   -- not a tail call: the level counts this frame
  return argv
end

---Builds the child's environment as a list of NAME=value: the host's environment merged with
---opts.env (a false value removes a variable), or opts.env alone when opts.clear_env.
function M.environment(env, clear)
  if env == nil and not clear then return nil end      -- inherit as is
  check.env(env, "proc", 3)
  local merged = check.apply_env(clear and {} or sys.environ(), env)
  local list = {}
  for k, v in pairs(merged) do list[#list + 1] = k .. "=" .. v end
  table.sort(list)
  return list
end

local function core_opts(cmd, opts, spawning)
  local o = {
    argv = check.argv(cmd, "proc", 3),
    env = M.environment(opts.env, opts.clear_env),
    cwd = opts.cwd,
    timeout = opts.timeout,
    max_output = opts.max_output or M.DEFAULT_MAX_OUTPUT,
    kill_group = opts.kill_group,
  }
  if opts.pty ~= nil then
    if not spawning then error("opts.pty is for spawn (a terminal needs a live process)", 3) end
    M.pty_size(opts.pty, "proc.spawn", 4)
    o.pty = { rows = opts.pty.rows, cols = opts.pty.cols, ctty = opts.pty.ctty }
  end
  local stdin = opts.stdin
  if (spawning and stdin == "pipe") or type(stdin) == "function" then o.stdin = "pipe"
  elseif type(stdin) == "string" then o.input = stdin
  elseif stdin ~= nil then error("opts.stdin must be a string or a writer function", 3) end
  local spill = opts.spill
  if spill == true then
    o.spill_stdout, o.spill_stderr = os.tmpname(), os.tmpname()
  elseif type(spill) == "table" then
    o.spill_stdout, o.spill_stderr = spill.stdout, spill.stderr
  elseif spill ~= nil then
    error("opts.spill must be true or {stdout = path, stderr = path}", 3)
  end
  return o
end

local function add_spill(r, o)
  if r then
    r.stdout_file, r.stderr_file = o.spill_stdout, o.spill_stderr
  end
  return r
end

-- Feeds a writer function's chunks to the child's stdin from a task of its own.
local function start_writer(p, writer)
  return sched.spawn(function()
    while true do
      local ok, chunk = pcall(writer)
      if not ok or chunk == nil or chunk == "" then break end
      if not p:write(tostring(chunk)) then break end
    end
    p:close_stdin()
  end)
end

local function run(cmd, opts)
  local o = core_opts(cmd, opts)
  local writer = type(opts.stdin) == "function" and opts.stdin
  if not (opts.on_stdout or opts.on_stderr or writer) then
    local r, err = core.run(o)
    return add_spill(r, o), err
  end
  o.stream = opts.on_stdout ~= nil or opts.on_stderr ~= nil
  local p <close>, err = core.spawn(o)
  if not p then return nil, err end
  assert(err == nil)
  local w = writer and start_writer(p, writer)
  if o.stream then
    local cbs = { stdout = opts.on_stdout, stderr = opts.on_stderr }
    while true do
      local chunk, which = p:read()
      if chunk == nil then
        if which ~= nil then return nil, which end    -- cancelled while reading
        break
      end
      local cb = cbs[which]
      if cb then cb(chunk) end
    end
  end
  local r, werr = p:wait()
  if w then w:cancel() end
  return add_spill(r, o), werr
end

---Runs a command to completion and returns its result. A command that runs and fails is a
---result (exit_code ~= 0), not an error.
---@param cmd string|string[] argv list (no shell) or a shell string (run by /bin/sh -c)
---@param opts? table env, clear_env, cwd, stdin (string|writer fn), timeout (s), max_output
---  (bytes kept per stream, head and tail), spill (true|{stdout=, stderr=}), on_stdout,
---  on_stderr (chunk callbacks), kill_group (default true)
---@return table|nil result {exit_code, signal, stdout, stderr, timed_out, truncated, duration}
---@return sandlot.Error? err not_found, permission_denied, invalid_input, cancelled, timeout
function M.run(cmd, opts)
  opts = check.opts(opts, known, "proc.run")
  if not telemetry.active() then return run(cmd, opts) end
  return telemetry.span("proc.run", { command = redact.command(cmd) }, run, cmd, opts)
end

---Starts a command and returns its handle: p:write(data), p:close_stdin(), p:read() (next
---chunk and its stream name; needs opts.stream), p:wait(), p:kill(sig), p:pid(), p:close().
---Use `local p <close> = ...`: closing (or collecting) a handle kills what still runs.
---With opts.pty = {rows, cols} the command runs on a new pseudo-terminal (its stdin, stdout and
---stderr, and its controlling terminal unless pty.ctty is false): output is one stream
---("stdout"), p:write types at the terminal, p:resize(rows, cols) changes its size.
---@param cmd string|string[]
---@param opts? table as for run, plus stream = true, stdin = "pipe" and pty
function M.spawn(cmd, opts)
  opts = check.opts(opts, known, "proc.spawn")
  if opts.on_stdout or opts.on_stderr then
    error("proc.spawn: use p:read() for streaming (on_stdout/on_stderr are for run)", 2)
  end
  local o = core_opts(cmd, opts, true)
  o.stream = opts.stream
  local p, err = core.spawn(o)
  if p and type(opts.stdin) == "function" then start_writer(p, opts.stdin) end
  return p, err
end

return M
