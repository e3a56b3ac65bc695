-- sandlot._lifetime: the host's side of `ttl` and `idle_timeout`. One watcher task per host
-- process wakes at the next deadline (at most TICK seconds apart) and destroys a sandbox whose
-- ttl has passed, or that has been idle (no operation in flight, no running process) for
-- idle_timeout. It writes each watched sandbox's last activity to the ledger (updated_at, at
-- most every TOUCH seconds) so that `sandlot gc` can enforce idle_timeout once no host runs.
-- The watcher ends when nothing else is left to run, so it never keeps a host alive.
local sched = require("sandlot.core.sched")
local timer = require("sandlot.core.timer")

local M = {}

M.TICK = 0.25          -- seconds between looks (bounds how long a host waits for it at exit)
M.TOUCH = 5            -- seconds between ledger writes of a sandbox's last activity

local watched = setmetatable({}, { __mode = "k" })   -- sb -> true
local watcher

local function now() return timer.now() / 1e9 end

local function busy(sb)
  if (sb._inflight or 0) > 0 then return true end
  for p in pairs(sb._procs or {}) do
    if not p._closed and not p._result then return true end
  end
  return false
end

-- The monotonic time at which sb expires, and why.
local function deadline(sb)
  local at, why = sb._ttl_at, "ttl"
  if sb._idle then
    local idle_at = (sb._last_active or now()) + sb._idle
    if not at or idle_at < at then at, why = idle_at, "idle_timeout" end
  end
  return at, why
end

local function expire(sb, why)
  watched[sb] = nil
  local what = why == "ttl" and ("its ttl of %gs has passed"):format(sb._ttl)
                or ("it was idle for %gs (idle_timeout)"):format(sb._idle)
  sb._ctx.warn(("destroying %s: %s"):format(sb.durable_id or sb.id, what))
  require("sandlot.telemetry").execute({ "sandlot", "expire" }, { count = 1 },
    { provider = sb.provider, sandbox = sb.id, durable_id = sb.durable_id, reason = why })
  sb._expired = why
  local ok, err = require("sandlot.sandbox").destroy(sb)
  if not ok then sb._ctx.warn(("destroying %s (%s): %s"):format(sb.id, why, tostring(err))) end
end

local function touch(sb, t)
  if not sb.durable_id or not sb._idle then return end
  if sb._touched and sb._touched >= (sb._last_active or 0) then return end
  if sb._touched_at and t - sb._touched_at < M.TOUCH then return end
  sb._touched, sb._touched_at = sb._last_active or t, t
  local l = require("sandlot.ledger").open()
  if l then l:touch(sb.durable_id) end
end

local function run()
  while next(watched) ~= nil and sched.live() > 1 do
    local t, soonest = now(), math.huge
    for sb in pairs(watched) do
      if sb._destroyed then
        watched[sb] = nil
      elseif busy(sb) then
        sb._last_active = t
      else
        local at, why = deadline(sb)
        if at and at <= t then expire(sb, why)
        elseif at then soonest = math.min(soonest, at) end
        if watched[sb] then touch(sb, t) end
      end
    end
    local ok = timer.sleep(math.max(0.01, math.min(M.TICK, soonest - now())))
    if not ok then break end                              -- cancelled: the script failed
  end
  watcher = nil
end

---Starts watching sb (its _ttl and _idle set by create or get). Needs a task: outside one
---(a stock lua5.4's main thread) only `sandlot gc` enforces the lifetimes.
function M.watch(sb)
  if not (sb._ttl_at or sb._idle) or not sched.can_wait() or not sched.current() then return end
  sb._last_active = sb._last_active or now()
  watched[sb] = true
  if not watcher then watcher = sched.spawn(run) end
end

---Stops watching sb (destroy).
function M.unwatch(sb)
  watched[sb] = nil
end

---Marks an operation on sb as started (+1) or finished (-1).
function M.op(sb, delta)
  sb._inflight = (sb._inflight or 0) + delta
  sb._last_active = now()
end

---Counts a process of sb as activity while it runs.
function M.process(sb, p)
  sb._procs = sb._procs or setmetatable({}, { __mode = "k" })
  sb._procs[p] = true
end

---Sets sb's lifetimes from create options (ttl, idle_timeout; seconds), counted from
---created_at (epoch seconds; default now).
function M.set(sb, opts, created_at)
  if opts.ttl then
    sb._ttl = opts.ttl
    sb._ttl_at = now() + opts.ttl - (os.time() - (created_at or os.time()))
  end
  if opts.idle_timeout then sb._idle = opts.idle_timeout end
end

M.monotonic = now

return M
