-- spec/gc_fault_spec.lua: fault injection at each step of create (SANDLOT_FAULT=create:<step>
-- kills the host with SIGKILL there), on local and on docker. After the kill, `sandlot gc
-- --yes` leaves 0 sandboxes unaccounted: every directory (local) or container labelled
-- sandlot=1 (docker) has an active ledger row naming it, and no row is left `creating`. The
-- count is shown to see an orphan first: one is planted (a sandbox made with the ledger off)
-- before each gc.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")
local docker = require("spec.support.docker")

local STEPS = require("sandlot.sandbox").FAULT_STEPS

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The provider's sandboxes, by provider id: local directories, or docker containers.
local function at_provider(kind, where)
  local ids = {}
  if kind == "local" then
    local r = assert(sandlot.proc.run({ "sh", "-c", "ls -1 \"$1\" 2>/dev/null || true", "sh",
                                        where }))
    for name in r.stdout:gmatch("[^\n]+") do ids[#ids + 1] = name end
  else
    local res = assert(http.request({ unix_socket = where, path = "/containers/json",
      query = { all = "true", filters = '{"label":["sandlot=1"]}' } }))
    for _, c in ipairs(res.json) do ids[#ids + 1] = c.Labels["sandlot.id"] end
  end
  return ids
end

-- Sandboxes at the provider that no active ledger row names, and rows left `creating`.
local function unaccounted(kind, where)
  local l = assert(ledger.open())
  local active = {}
  for _, rec in ipairs(assert(l:list({ state = { "active", "stopped" } }))) do
    if rec.external_id then active[rec.external_id] = true end
  end
  local n = 0
  for _, id in ipairs(at_provider(kind, where)) do if not active[id] then n = n + 1 end end
  return n, #assert(l:list({ state = "creating" }))
end

local function fault_cases(kind, setup)
  local ctx, why, dir, saved

  lazy_setup(function() ctx, why = setup() end)

  before_each(function()
    dir = h.tmpdir()
    saved = os.getenv("XDG_STATE_HOME")
    sys.setenv("XDG_STATE_HOME", dir .. "/state")
    ledger.reset()
    local entry = kind == "local"
      and ('{ "local", state_dir = %q, isolation = "none" }'):format(dir .. "/boxes")
      or ctx and ('{ "docker", host = %q, image = %q, pull = false }'):format(ctx.host, ctx.image)
    if entry then
      write(dir .. "/config.lua", "return { providers = { p = " .. entry .. " } }\n")
      sandlot.config.use(dir .. "/config.lua")
    end
  end)

  after_each(function()
    sandlot.config.reset()
    ledger.reset()
    sys.setenv("XDG_STATE_HOME", saved)
    h.rmtree(dir)
  end)

  local function where() return kind == "local" and dir .. "/boxes" or ctx.socket end

  for _, step in ipairs(STEPS) do
    it(("kill at %s, gc --yes: 0 unaccounted (%s)"):format(step, kind), function()
      if kind == "docker" and not ctx then return pending(docker.unavailable(why)) end
      h.task(function()
        local env = { XDG_STATE_HOME = dir .. "/state", SANDLOT_CONFIG = dir .. "/config.lua",
                      SANDLOT_FAULT = "create:" .. step, SANDLOT_QUIET = "1" }
        local code, out, err, r = h.host({ "-e", [[
          local sandlot = require("sandlot")
          math.randomseed(os.time(), require("sandlot.core.sys").getpid())
          assert(sandlot.create("p", { purpose = "fault" }))
          print("survived")
        ]] }, { env = env, timeout = 120 })
        assert.equal(9, r.signal, ("exit %s: %s %s"):format(tostring(code), out, err))
        assert.equal("", out)
        -- plant an orphan the count must see: a sandbox nothing records
        sys.setenv("SANDLOT_LEDGER", "off")
        local planted = assert(sandlot.create("p"))
        sys.setenv("SANDLOT_LEDGER", nil)
        local before = unaccounted(kind, where())
        assert.is_true(before >= 1, "the count does not see the planted orphan")
        local gcode, gout, gerr = h.host({ "gc", "--yes" }, { env = { XDG_STATE_HOME =
          dir .. "/state", SANDLOT_CONFIG = dir .. "/config.lua" }, timeout = 120 })
        assert.equal(0, gcode, gout .. gerr)
        assert.matches(planted.id, gout, 1, true)
        local left, creating = unaccounted(kind, where())
        assert.same({ 0, 0 }, { left, creating }, gout)
        if step == "after_active" then                       -- that one is kept, and reachable
          local l = assert(ledger.open())
          local rec = assert(l:list({ state = "active" }))[1]
          assert.is_table(rec, gout)
          local sb = assert(sandlot.get(rec.id))
          assert(sb:destroy())
        end
      end)()
    end)
  end
end

describe("fault injection in create, then sandlot gc (local)", function()
  fault_cases("local", function() return {} end)
end)

describe("fault injection in create, then sandlot gc (docker) #docker", function()
  local env
  fault_cases("docker", function()
    local why
    env, why = docker.start()
    return env, why
  end)
  lazy_teardown(function() docker.stop(env) end)
end)
