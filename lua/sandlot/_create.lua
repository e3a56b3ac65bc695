-- sandlot._create: sandlot.create (sandlot.sandbox installs it as its own). The path of a
-- create: the provider reference resolved, the options checked and passed through the plugins'
-- before_create, the `creating` row in the ledger before the provider is called, the provider's
-- create behind admission (sandlot._admission: retries of quota_exceeded/rate_limited), the
-- `active` row, a portable checkpoint restored when opts.from asks for one, then settle
-- (recreate and lifetimes, which sandlot._byid's get shares). SANDLOT_FAULT=create:<step>
-- kills the host between those steps (the reconciliation specs). Kept apart to keep
-- sandlot.sandbox (lua/sandlot/sandbox.lua) within its size.
local errors = require("sandlot.errors")
local telemetry = require("sandlot.telemetry")
local config = require("sandlot.config")
local provider = require("sandlot.provider")
local shapes = require("sandlot._shapes")
local lifetime = require("sandlot._lifetime")
local admission = require("sandlot._admission")
local ledger = require("sandlot.ledger")
local plugins = require("sandlot.plugins")   -- hooks around create

local M = {}

-- sandlot.sandbox's own helpers (install): resolve(ref, warnings), new_sandbox(r, handle,
-- warnings), journal(sb, state, fields), secrets(ctx)
local resolve, new_sandbox, journal, secrets

-- The `creating` row for a create about to run with options o (to which it adds the label
-- carrying the durable id). Returns the ledger and the id, nothing when the ledger is off,
-- or nil, err: then the provider must not be called.
local function journal_create(r, o)
  if not ledger.enabled() then return end
  local l, err = ledger.open()
  if not l then return nil, err end
  local id = ledger.new_id()
  local labels = {}
  for k, v in pairs(o.labels or {}) do labels[k] = v end
  labels[ledger.LABEL] = id
  o.labels = labels
  local ref = r.ref                       -- a provider file: absolute, for get from anywhere
  if provider.is_file(ref) and ref:sub(1, 1) ~= "/" then
    ref = require("sandlot.core.sys").realpath(ref) or ref
  end
  local ok, rerr = l:record({ id = id, provider = ref, module = r.p.name, opts = o,
                              name = o.name, purpose = o.purpose, labels = labels })
  if not ok then return nil, rerr end
  return l, id
end

---The steps of create at which SANDLOT_FAULT=create:<step> kills the host with SIGKILL (fault
---injection for the reconciliation specs): before the journal row, after it, after the
---provider answered (the row still `creating`), after the row became `active`.
M.FAULT_STEPS = { "before_journal", "after_journal", "after_provider", "after_active" }

local function fault(step)
  local f = os.getenv("SANDLOT_FAULT")
  if f ~= "create:" .. step then return end
  io.stdout:flush()
  io.stderr:flush()
  os.execute(("kill -KILL %d"):format(require("sandlot.core.sys").getpid()))
end

-- Create options that are sandlot's, not the provider's (seed: the native checkpoint a sandbox
-- was made from, kept with the recorded options so that a re-creation starts from it too).
local OWN_OPTS = { recreate = true, ttl = true, idle_timeout = true, seed = true }

-- What the provider's create gets: o without sandlot's own options; ttl becomes the provider's
-- lifetime (`timeout`) when it is shorter, so that docker and local end the sandbox by
-- themselves even when no host is left to do it.
local function provider_opts(o)
  local po = {}
  for k, v in pairs(o) do if not OWN_OPTS[k] then po[k] = v end end
  if o.ttl and (not po.timeout or o.ttl < po.timeout) then po.timeout = o.ttl end
  return po
end

-- After a create (or a get): recreate and lifetimes from the options.
local function settle(sb, o, po)
  sb._recreate = o.recreate == true
  sb._seed = type(o.seed) == "string" and o.seed or nil
  sb._create_opts = po
  lifetime.set(sb, o, sb._created_at)
  lifetime.watch(sb)
end

---Creates a sandbox.
---sandlot.create(opts), sandlot.create(provider, opts), or opts.provider. provider is a
---configured name, a provider module name ("local"), a provider file, or a provider table;
---omitted: $SANDLOT_PROVIDER, then the config's default, then "local".
---@param prov_or_opts? string|table
---@param opts? table image, env, cwd, cpus, memory_mb, disk_mb, timeout, ports, mounts,
---  network ("none"|"all"|{hosts}), labels, name, purpose, and the provider's own options
---@return sandlot.Sandbox|nil sb, sandlot.Error? err
function M.create(prov_or_opts, opts)
  local explicit
  if type(prov_or_opts) == "string" or (type(prov_or_opts) == "table" and opts ~= nil) then
    explicit = prov_or_opts
  elseif type(prov_or_opts) == "table" then
    -- one table: options, unless it is a provider table itself
    if type(prov_or_opts.create) == "function" then explicit = prov_or_opts
    else opts = prov_or_opts end
  elseif prov_or_opts ~= nil then
    error("create: a provider name or table, then an opts table expected", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("create: opts must be a table", 2) end
  if opts.provider ~= nil then
    if explicit ~= nil then error("create: provider given twice", 2) end
    explicit = opts.provider
  end
  local ref, serr = config.select_known(explicit)
  if not ref then return nil, serr end
  local warnings = {}
  local r, err = resolve(ref, warnings)
  if not r then
    return nil, errors.wrap(err, { op = "create",
                                   provider = type(ref) == "string" and ref or nil })
  end
  shapes.check_create_opts(opts, r.p)
  local o = {}
  for k, v in pairs(opts) do if k ~= "provider" and k ~= "from" then o[k] = v end end
  local from, seeded = opts.from, false   -- a checkpoint: known before anything is created
  if from ~= nil then
    local ckerr
    from, ckerr = require("sandlot.checkpoint")._plan(from, r.p)
    if not from then return nil, errors.wrap(ckerr, { op = "create", provider = r.ref }) end
    seeded = ckerr                        -- true: the provider makes it from its snapshot
  end
  local make = r.p.ops.create
  if seeded then
    make = function(ctx, po) return r.p.ops.create_from(ctx, po, from.native_id) end
  end
  local verr                                                 -- plugins: veto or changed opts
  o, verr = plugins.before_create(o, function(x) shapes.check_create_opts(x, r.p) end)
  if not o then return nil, errors.wrap(verr, { op = "create", provider = r.ref }) end
  if seeded then o.seed = from.native_id end
  local meta = { provider = r.ref, image = o.image, name = o.name }
  local function run()
    fault("before_journal")
    local l, durable = journal_create(r, o)
    if l == nil and durable ~= nil then
      return nil, errors.without(errors.wrap(durable, { op = "create", provider = r.ref }),
                                 secrets(r.ctx))
    end
    fault("after_journal")
    local po = provider_opts(o)
    local handle, cerr, queued, attempts = admission.create(r.ref, r.admission, make, r.ctx, po)
    meta.queued_s, meta.attempts = queued, attempts
    if not handle then
      cerr = errors.without(errors.wrap(errors.is(cerr) and cerr
                                          or errors.new("internal", tostring(cerr)),
                                        { op = "create", provider = r.ref }),
                            secrets(r.ctx))
      if l then
        local ok, jerr = l:set_state(durable, "error", { error = cerr })
        if not ok then r.ctx.warn("ledger: " .. tostring(jerr)) end
      end
      return nil, cerr
    end
    fault("after_provider")
    local sb = new_sandbox(r, handle, warnings)
    sb.durable_id = durable
    sb.name = o.name
    journal(sb, "active", { external_id = handle.id, handle = sb.handle })
    fault("after_active")
    if from ~= nil and not seeded then
      local ok, rerr = require("sandlot.checkpoint").restore(sb, from)
      if not ok then
        sb:destroy()
        return nil, errors.wrap(rerr, { op = "create", provider = r.ref })
      end
    end
    settle(sb, o, po)
    plugins.after_create(sb)                                                   -- plugins
    return sb
  end
  if not telemetry.active() then return run() end
  return telemetry.span("create", meta, run)
end

---Adds create, FAULT_STEPS, _settle and _provider_opts (for sandlot._byid) to the sandbox
---module S, given its private helpers h = {resolve, new_sandbox, journal, secrets}.
function M.install(S, h)
  resolve, new_sandbox, journal, secrets = h.resolve, h.new_sandbox, h.journal, h.secrets
  S.create, S.FAULT_STEPS = M.create, M.FAULT_STEPS
  S._settle, S._provider_opts = settle, provider_opts
end

return M
