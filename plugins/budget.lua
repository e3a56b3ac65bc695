-- budget: refuses creates past a count or an estimated cost per run (one host process), and
-- names the budget it enforces. Config: plugins = { budget = { config = { max_creates = 10,
-- max_cost = 5.0, cost_per_cpu = 0.5 } } }. A create's estimated cost is cost_per_cpu * cpus.
local MAX = config.max_creates
local MAX_COST = config.max_cost
local PER_CPU = config.cost_per_cpu or 1
state.creates = state.creates or 0
state.cost = state.cost or 0

local function cost(opts) return PER_CPU * (opts.cpus or 1) end

return {
  name = "budget", version = "1.0.0", priority = 10,
  before_create = function(opts)
    if MAX and state.creates >= MAX then
      return false, ("budget max_creates = %d is spent (%d creates this run)")
        :format(MAX, state.creates)
    end
    local c = cost(opts)
    if MAX_COST and state.cost + c > MAX_COST then
      return false, ("budget max_cost = %g would be exceeded (spent %g, this create %g)")
        :format(MAX_COST, state.cost, c)
    end
    state.pending = c
  end,
  after_create = function()
    state.creates = state.creates + 1
    state.cost = state.cost + (state.pending or PER_CPU)
    state.pending = nil
  end,
  commands = {
    budget = { summary = "show this run's budget use", run = function()
      sandlot.out(("creates %d/%s, cost %g/%s\n"):format(state.creates, tostring(MAX),
        state.cost, tostring(MAX_COST)))
      return 0
    end },
  },
}
