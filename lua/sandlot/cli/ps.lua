-- sandlot.cli.ps: `sandlot ps [--all] [--json]`: the sandboxes the ledger records, newest
-- first, in aligned columns like docker ps. Reads the ledger only: no provider is contacted.
local cli = require("sandlot.cli")

local LIVE = { "creating", "active", "stopped", "error" }

local age = cli.age

local function table_out(list, now, procs)
  local lines = { { "DURABLE ID", "PROVIDER", "PROVIDER ID", "STATE", "AGE", "PROCS",
                    "NAME" } }
  for _, r in ipairs(list) do
    local ext = cli.cut(r.external_id or "-", 20)
    lines[#lines + 1] = { r.id, r.provider, ext, r.state, age(now - r.created_at),
                          tostring(procs[r.id] or 0), r.name or r.purpose or "" }
  end
  cli.columns(lines)
end

return {
  summary = "list the sandboxes in the ledger (durable id, provider, state, age)",
  usage = "sandlot ps [--all] [--json]",
  options = {
    { "--all", short = "-a", summary = "destroyed sandboxes too" },
  },
  json = true,
  help = [[
Lists the sandboxes recorded in the ledger ($XDG_STATE_HOME/sandlot/ledger.db), newest first:
those not destroyed, or every one with --all. Columns: the durable id (for sandlot.get), the
provider reference, the provider's own id, the state (creating, active, stopped, error,
destroyed), the age, the running background processes (sandlot logs ID lists them) and the
name or purpose. --json prints one JSON array of records (see
README, "Durable sandboxes"). Reads the ledger only: no provider is contacted.
]],
  run = function(o)
    local list, lerr = require("sandlot.sandbox").list({ state = not o.opts.all and LIVE or nil })
    if not list then return nil, lerr end
    local now = os.time()
    -- running background processes per sandbox (sandlot.background); none when unreadable
    local procs = require("sandlot.ledger").open()
    procs = procs and procs.db:proc_running() or {}
    if not o.opts.json then
      table_out(list, now, procs)
      return cli.OK
    end
    local rows = cli.array()
    for i, r in ipairs(list) do
      rows[i] = { id = r.id, provider = r.provider, module = r.module,
                  external_id = r.external_id, state = r.state, name = r.name,
                  purpose = r.purpose, labels = r.labels, host_id = r.host_id,
                  created_at = r.created_at, updated_at = r.updated_at,
                  ended_at = r.ended_at, age_s = now - r.created_at,
                  processes_running = procs[r.id] or 0,
                  error = r.error and { code = r.error.code, message = r.error.message } }
    end
    cli.json(rows)
    return cli.OK
  end,
}
