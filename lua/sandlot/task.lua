-- sandlot.task: concurrency on top of the C scheduler (sandlot.core.sched): spawn, sleep,
-- timeout, all and map. Everything here runs inside tasks and yields to the one event loop.
local sched = require("sandlot.core.sched")
local timer = require("sandlot.core.timer")
local errors = require("sandlot.errors")
local check = require("sandlot._check")

---A task (sandlot.spawn): t:join() waits for its results (or its error), t:cancel() stops it
---at its next wait.
---@class sandlot.Task

local M = {}

local register = require("sandlot._doc").register
M.spawn = register(sched.spawn, "Starts fn(...) as a task on the loop and returns it at once: " ..
  "t:join() waits for its results\n(or its error), t:cancel() stops it at its next wait.\n" ..
  "@param fn function\n@return sandlot.Task task", "(fn, ...)")
M.current = register(sched.current, "Returns the running task, or nil outside a task.\n" ..
  "@return sandlot.Task|nil", "()")
M.cancelled = sched.cancelled
M.run = register(sched.run, "Drives the loop until every task is done (for a stock lua5.4, " ..
  "where the main chunk is no task).\n@return true|nil ok, sandlot.Error? err", "()")
---Spawns fn(...) as a cleanup task: not cancelled when the script fails or is interrupted,
---and waited for by the host before it exits (fn bounds its own work). For teardown that a
---close cannot wait for (a kill, a destroy).
M.cleanup = sched.cleanup
---Spawns fn(...) as a daemon task: the host does not wait for it. Once only daemon tasks are
---left (the script is done), they are cancelled and the host waits for them to unwind. For
---followers that should not keep a finished script alive (background processes).
M.daemon = sched.daemon

---Seconds on the loop's monotonic clock (not the time of day): for deadlines and idle bounds.
---@return number seconds
function M.now()
  return timer.now() / 1e9
end

---Sleeps for `seconds` (other tasks run meanwhile).
---@param seconds number
---@return true|nil ok, sandlot.Error? err  `cancelled` or `timeout` when the task was
function M.sleep(seconds)
  return timer.sleep(seconds)
end

local function traced(err)
  if type(err) == "string" then return debug.traceback(err, 2) end
  if type(err) == "table" and rawget(err, "traceback") == nil and errors.is(err) then
    return errors.wrap(err, { traceback = debug.traceback("", 2) })   -- a copy: err stays
  end
  return err
end

---Runs fn(...) in its own task and waits at most `seconds` for it. On time-out the task is
---cancelled (its pending operation is released: processes killed, transfers aborted) and
---timeout returns nil, err{code = "timeout"}. Otherwise returns fn's results or re-raises.
---@param seconds number
---@param fn function
function M.timeout(seconds, fn, ...)
  if type(seconds) ~= "number" or not (seconds >= 0) then
    error("timeout: seconds must be a number >= 0", 2)
  end
  local t = sched.spawn(fn, ...)
  local guard = sched.spawn(function()
    if timer.sleep(seconds) then t:cancel("timeout") end
  end)
  local res = table.pack(pcall(t.join, t))
  guard:cancel()
  local _, _, code = t:status()
  if code == "timeout" then
    return nil, errors.new("timeout", ("timed out after %gs"):format(seconds),
                           { retryable = true })
  end
  if not res[1] then error(res[2], 0) end
  if res[2] == nil and errors.is(res[3], "cancelled") and sched.cancelled() then
    t:cancel()                             -- we were cancelled while waiting: so is fn
  end
  return table.unpack(res, 2, res.n)
end

---Calls fn(item, i) for every item of list, at most opts.limit (default 64) at a time, each
---in its own task. Returns results in input order (the first value fn returned) and, when
---anything failed, a table errs[i] = err holding every raised error and every nil, err
---return: nothing is lost.
---@param list any[]
---@param fn fun(item: any, i: integer): any
---@param opts? {limit?: integer}
---@return any[] results, table<integer, any>|nil errs
function M.map(list, fn, opts)
  check.type(list, "table", "map: list", false, 2)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error("map: fn must be callable", 2)
  end
  opts = check.opts(opts, { limit = function(v)
    return math.type(v) == "integer" and v >= 1, "an integer >= 1"
  end }, "map")
  local n = #list
  local limit = opts.limit or 64
  local results, errs, nerr, next_i = {}, {}, 0, 0
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      local i = next_i
      local ok, r, e = xpcall(fn, traced, list[i], i)
      if not ok then
        errs[i], nerr = r, nerr + 1
      elseif r == nil and e ~= nil then
        errs[i], nerr = e, nerr + 1
      else
        results[i] = r
      end
      if sched.cancelled() then return end
    end
  end
  local workers = {}
  for w = 1, math.min(limit, n) do workers[w] = sched.spawn(worker) end
  for w = 1, #workers do
    local ok, err = workers[w]:join()
    if ok == nil and err ~= nil then       -- this task was cancelled: take the workers along
      for x = 1, #workers do workers[x]:cancel() end
      return nil, err
    end
  end
  return results, nerr > 0 and errs or nil
end

---Runs every function of fns concurrently (at most opts.limit at a time); same returns as map.
---@param fns function[]
---@param opts? {limit?: integer}
function M.all(fns, opts)
  return M.map(fns, function(f) return f() end, opts)
end

return M
