-- reaper: destroys sandboxes idle past a limit. It records the last activity (create, exec) of
-- each sandbox this host made and, on every later operation, destroys those idle for idle_s
-- seconds or more; `sandlot reap` does the same for the ledger's active sandboxes (by their
-- last update). Needs the sandbox grant: plugins = { reaper = { grants = { "sandbox" },
-- config = { idle_s = 600 } } }
local IDLE = config.idle_s or 600
state.seen = state.seen or {}
state.reaped = state.reaped or {}

local function reap(except)
  local now = os.time()
  for id, t in pairs(state.seen) do
    if id ~= except and now - t >= IDLE then
      state.seen[id] = nil
      local ok, err = sandlot.sandboxes.destroy(id)
      if ok then state.reaped[#state.reaped + 1] = id
      else sandlot.log("could not destroy " .. id .. ": " .. tostring(err)) end
    end
  end
end

local function touch(sb)
  state.seen[sb.id] = os.time()
  reap(sb.id)
end

return {
  name = "reaper", version = "1.0.0", priority = 80,
  after_create = touch,
  after_exec = function(_, sb) touch(sb) end,
  before_destroy = function(sb) state.seen[sb.id] = nil end,
  commands = {
    reap = { summary = "destroy the ledger's sandboxes idle past idle_s", run = function()
      local rows = sandlot.sandboxes.list({ state = { "active" } }) or {}
      local now, n = os.time(), 0
      for _, r in ipairs(rows) do
        if now - (r.updated_at or now) >= IDLE and sandlot.sandboxes.destroy(r.id) then
          n = n + 1
        end
      end
      sandlot.out(("reaped %d\n"):format(n))
      return 0
    end },
  },
}
