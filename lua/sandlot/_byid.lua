-- sandlot._byid: sandlot.get and sandlot.list, the sandbox API by durable id. Owns reconnecting
-- from a ledger record (provider reference, handle, recorded options for recreate and the
-- lifetimes), the ownership rule between hosts (sandlot._owner) and the ledger's on/off error.
local errors = require("sandlot.errors")
local ledger = require("sandlot.ledger")
local redact = require("sandlot._redact")
local check = require("sandlot._check")
local shapes = require("sandlot._shapes")
local sandbox = require("sandlot.sandbox")

local M = {}
local check_opts = check.opts


-- Create options from a record, for re-creation: what the ledger redacted is left out (and said).
local function recorded_opts(sb, stored)
  local o, lost = {}, {}
  for k, v in pairs(stored or {}) do
    if v == redact.MARK then lost[#lost + 1] = k else o[k] = v end
  end
  if type(o.env) == "table" then
    local env = {}
    for k, v in pairs(o.env) do
      if v == redact.MARK then lost[#lost + 1] = "env." .. k else env[k] = v end
    end
    o.env = env
  end
  if o.recreate and #lost > 0 then
    table.sort(lost)
    sb._ctx.warn(("a re-creation of %s will lack %s (secrets are not kept in the ledger)")
      :format(sb.durable_id, table.concat(lost, ", ")))
  end
  return o
end

local function open_ledger(op)
  if not ledger.enabled() then
    return nil, errors.new("not_supported", op .. ": the ledger is off (SANDLOT_LEDGER=off " ..
                           "or ledger = false in the config)", { op = op })
  end
  local l, err = ledger.open()
  if not l then return nil, errors.wrap(err, { op = op }) end
  return l
end

M.open_ledger = open_ledger

---Reconnects to a sandbox by its durable id (sb.durable_id), from any process and any
---directory: the provider reference and handle come from the ledger, credentials from the
---config and environment as in from_map. Verifies that the sandbox is alive unless
---opts.reconnect is false. This host becomes the record's owner; a sandbox owned by another
---live host (sandlot._owner: its pid alive on this machine, or a journal write within a
---minute from another) is refused with permission_denied unless opts.take is true.
---recreate, ttl and idle_timeout come back from the recorded options.
---@param id string
---@param opts? {reconnect?: boolean, take?: boolean}
---@return sandlot.Sandbox|nil sb, sandlot.Error? err not_found (no such record; destroyed;
---  never created; gone at the provider), permission_denied (another live host owns it),
---  not_supported (ledger off), io_error, unavailable
function M.get(id, opts)
  if type(id) ~= "string" or id == "" then
    error("get: a durable sandbox id (string) expected, got " .. type(id), 2)
  end
  opts = check_opts(opts, { reconnect = "boolean", take = "boolean" }, "get")
  local l, err = open_ledger("get")
  if not l then return nil, err end
  local rec
  rec, err = l:get(id)
  if not rec then return nil, errors.wrap(err, { op = "get", sandbox = id }) end
  local ctx = { op = "get", provider = rec.provider, sandbox = id }
  if rec.state == "destroyed" then
    return nil, errors.new("not_found", ("sandbox %s was destroyed"):format(id), ctx)
  end
  if type(rec.handle) ~= "table" or type(rec.handle.id) ~= "string" then
    return nil, errors.new("not_found", ("sandbox %s has no provider handle (state %s: the " ..
                           "provider never answered its create)"):format(id, rec.state), ctx)
  end
  local owner = require("sandlot._owner")
  local other = owner.other_live(l, rec)
  if other and not opts.take then
    return nil, errors.new("permission_denied", owner.refusal(rec, other), ctx)
  end
  local sb
  sb, err = sandbox.from_map({ version = sandbox.MAP_VERSION, provider = rec.provider,
                               id = rec.handle.id, handle = rec.handle, durable_id = id })
  if not sb then return nil, errors.wrap(err, ctx) end
  if rec.host_id ~= ledger.this_host().id then
    local ok, cerr = l:claim(id, rec.host_id)
    if not ok then sb._ctx.warn("ledger: " .. tostring(cerr)) end
  end
  sb._created_at = rec.created_at
  sb.name = rec.name
  local o = recorded_opts(sb, rec.opts)
  sandbox._settle(sb, o, sandbox._provider_opts(o))
  if opts.reconnect ~= false then
    local ok, rerr = sandbox.reconnect(sb)
    if not ok then return nil, rerr end
  end
  return sb
end

local function check_list_filter(v)
  local ok = v == nil or type(v) == "string" or type(v) == "table"
  return ok, "a string or a table"
end

---Lists the ledger's records, newest first (no provider I/O). filter.state: a state or a list
---(creating, active, stopped, destroyed, error, lost); filter.provider: a provider reference;
---filter.label: "k=v", "k" or {k = v}; filter.limit.
---@param filter? table
---@return sandlot.LedgerRecord[]|nil records, sandlot.Error? err not_supported (ledger off)
function M.list(filter)
  filter = check_opts(filter, { state = check_list_filter, provider = "string",
                                label = check_list_filter, limit = shapes.count }, "list")
  local l, err = open_ledger("list")
  if not l then return nil, err end
  return l:list(filter)
end

return M
