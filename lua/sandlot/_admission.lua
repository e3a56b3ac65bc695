-- sandlot._admission: how a create reaches its provider. At most max_concurrent_creates provider
-- creates run at once per configured provider in this host (the rest queue), and a create
-- answered rate_limited or quota_exceeded waits and tries again, after err.retry_after
-- seconds when the service said (Retry-After) or an exponential backoff with jitter, until
-- create_deadline seconds have passed since it was asked. Both are provider entry options in
-- the config; the time spent waiting is returned for the create span.
local timer = require("sandlot.core.timer")
local sched = require("sandlot.core.sched")
local errors = require("sandlot.errors")

local M = {}

M.DEADLINE = 300       -- create_deadline's default (seconds)
M.BACKOFF = 0.5        -- the first retry's pause without Retry-After (doubles, up to MAX)
M.MAX_BACKOFF = 30

---The config entry keys this module owns (taken out before the provider's own check).
M.KEYS = {
  max_concurrent_creates = function(v)
    return math.type(v) == "integer" and v > 0, "an integer > 0"
  end,
  create_deadline = function(v)
    return type(v) == "number" and v > 0 and v ~= math.huge, "a number of seconds > 0"
  end,
}

local busy = {}        -- provider reference -> provider creates running now

local function now() return timer.now() / 1e9 end

-- Waits for a free slot (polling, with a growing pause up to 50 ms); true, or nil, err.
local function acquire(ref, max, limit)
  local pause = 0.002
  while (busy[ref] or 0) >= max do
    if now() > limit then
      return nil, errors.new("timeout", ("still queued for a create slot after the " ..
        "create_deadline (max_concurrent_creates = %d)"):format(max), { retryable = true })
    end
    if not sched.can_wait() then break end
    local ok, err = timer.sleep(pause * (0.5 + math.random()))
    if not ok then return nil, err end
    pause = math.min(pause * 2, 0.05)
  end
  busy[ref] = (busy[ref] or 0) + 1
  return true
end

local function release(ref)
  busy[ref] = (busy[ref] or 1) - 1
end

---The number of provider creates running now for ref (tests).
function M.running(ref) return busy[ref] or 0 end

local RETRY = { rate_limited = true, quota_exceeded = true }

---Runs create(ctx, opts) under the admission rules of adm ({max_concurrent_creates,
---create_deadline} from the config entry) for provider reference ref.
---@return table|nil handle, sandlot.Error? err, number queued seconds spent waiting
---@return integer attempts
function M.create(ref, adm, create, ctx, opts)
  adm = adm or {}
  local t0 = now()
  local limit = t0 + (adm.create_deadline or M.DEADLINE)
  local queued, attempt, backoff = 0, 0, M.BACKOFF
  while true do
    attempt = attempt + 1
    local max = adm.max_concurrent_creates
    if max then
      local w0 = now()
      local ok, err = acquire(ref, max, limit)
      queued = queued + (now() - w0)
      if not ok then return nil, err, queued, attempt end
    end
    local pok, handle, err = pcall(create, ctx, opts)
    if max then release(ref) end
    if not pok then error(handle, 0) end
    if handle or not (errors.is(err) and RETRY[err.code]) then
      return handle, err, queued, attempt
    end
    local pause = tonumber(err.retry_after)
    if not pause then
      pause = backoff * (0.75 + 0.5 * math.random())
      backoff = math.min(backoff * 2, M.MAX_BACKOFF)
    end
    if now() + pause > limit or not sched.can_wait() then
      return nil, errors.wrap(err, { attempts = attempt }), queued, attempt
    end
    local w0 = now()
    local ok, serr = timer.sleep(pause)
    queued = queued + (now() - w0)
    if not ok then return nil, serr, queued, attempt end
  end
end

return M
