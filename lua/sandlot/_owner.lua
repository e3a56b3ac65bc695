-- sandlot._owner: which host owns a ledger record, and whether that host is alive. A record's
-- host_id is the host process that created it (or last claimed it). A host counts as live when
-- it is this process, or it runs on this machine (same hostname) and its pid is alive, not a
-- zombie, and started no later than the host row says (a reused pid started later), or it runs
-- elsewhere and wrote to the ledger within HEARTBEAT seconds (any journal write is its beat).
local M = {}

---Seconds after its last journal write that a host on another machine still counts as live.
M.HEARTBEAT = 60

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local btime
-- The start time (epoch seconds) and state letter of a pid on this machine, or nil.
local function proc_start(pid)
  local stat = read(("/proc/%d/stat"):format(pid))
  if not stat then return nil end
  local rest = stat:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local fields = {}
  for f in rest:gmatch("%S+") do fields[#fields + 1] = f end
  -- fields[1] is field 3 (state); field 22 (starttime, clock ticks since boot) is fields[20]
  btime = btime or tonumber((read("/proc/stat") or ""):match("btime%s+(%d+)") or "")
  local ticks = tonumber(fields[20] or "")
  if not (btime and ticks) then return nil end
  return btime + ticks / 100, fields[1]
end

---Tells whether a host row (from ledger:host) is a live host; the second result says why.
---@param h table|nil {id, hostname, pid, started_at, seen_at}
---@param now? integer
---@return boolean live, string why
function M.alive(h, now)
  if not h then return false, "unknown host" end
  local me = require("sandlot.ledger").this_host()
  if h.id == me.id then return true, "this process" end
  now = now or os.time()
  if h.hostname == me.hostname then
    local started, state = proc_start(h.pid)
    if not started then return false, ("pid %d is gone"):format(h.pid) end
    if state == "Z" then return false, ("pid %d exited"):format(h.pid) end
    if started > h.started_at + 2 then return false, ("pid %d was reused"):format(h.pid) end
    return true, ("pid %d is alive on %s"):format(h.pid, tostring(h.hostname))
  end
  if h.seen_at and now - h.seen_at <= M.HEARTBEAT then
    return true, ("it wrote to the ledger %ds ago"):format(now - h.seen_at)
  end
  return false, "no journal write for " .. tostring(h.seen_at and (now - h.seen_at) or "?") .. "s"
end

---Returns the owner of rec when it is another live host: {host row, why}; nil otherwise.
---@param l table an open ledger
---@param rec table a ledger record
function M.other_live(l, rec)
  if not rec.host_id then return nil end
  if rec.host_id == require("sandlot.ledger").this_host().id then return nil end
  local h = l:host(rec.host_id)
  local live, why = M.alive(h)
  if live then return { host = h, why = why } end
  return nil
end

---The message for a refused drive of rec owned by o (from other_live).
function M.refusal(rec, o, how)
  return ("sandbox %s is owned by another live host %s (%s); %s"):format(rec.id,
    o.host.id, o.why, how or "pass {take = true} to take it over")
end

return M
