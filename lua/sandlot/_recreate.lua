-- sandlot._recreate: re-creation on loss (create's recreate = true). After an operation's
-- not_found, gone() asks the provider's status whether the sandbox itself is gone (not merely
-- a file or a binary); run() creates a new one from the recorded options (and the native
-- checkpoint it was made from, if any: the provider's create_from), keeps the durable
-- id, and says so in a warning, a telemetry event {"sandlot", "recreate"} and a ledger event.
local errors = require("sandlot.errors")
local telemetry = require("sandlot.telemetry")

local M = {}

-- Whether sb is gone at its provider (not merely missing a file or a binary): asks status.
function M.gone(sb, op, r, err)
  if op == "status" then return r == "terminated" end
  if r ~= nil or not errors.is(err, "not_found") then return false end
  local st, serr = sb._p.ops.status(sb._ctx, sb.handle)
  return st == "terminated" or (st == nil and errors.is(serr, "not_found"))
end

-- Re-creates sb from its recorded provider options; journal(sb, state, fields) records it.
function M.run(sb, op, journal)
  local old = sb.id
  local handle, err
  if sb._seed then       -- made from a native checkpoint: made from it again
    handle, err = sb._p.ops.create_from(sb._ctx, sb._create_opts, sb._seed)
  else
    handle, err = sb._p.ops.create(sb._ctx, sb._create_opts)
  end
  if not handle then return nil, err end
  if type(handle) ~= "table" or type(handle.id) ~= "string" or handle.id == "" then
    error(("provider %s: create must return a handle table with a string id"):format(sb._p.name))
  end
  sb.handle, sb.id, sb.external_id = handle, handle.id, handle.id
  sb.recreated = (sb.recreated or 0) + 1
  sb._ctx.warn(("sandbox %s was gone at the provider (found by %s); re-created it as %s from " ..
                "its recorded options%s (files and processes of %s are lost)")
                :format(sb.durable_id or old, op, handle.id,
                        sb._seed and (" and checkpoint " .. sb._seed) or "", old))
  telemetry.execute({ "sandlot", "recreate" }, { count = 1 },
    { provider = sb.provider, sandbox = handle.id, previous = old, durable_id = sb.durable_id,
      op = op })
  journal(sb, "active", { external_id = handle.id, handle = handle, event = "recreated",
                          note = old .. " -> " .. handle.id })
  return true
end

return M
