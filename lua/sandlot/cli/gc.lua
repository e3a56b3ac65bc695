-- sandlot.cli.gc: `sandlot gc [--provider P] [--older-than D] [--yes] [--json]`: reconciles the
-- providers' sandboxes with the ledger (sandlot._reconcile) and prints what it found and did.
-- A dry run unless --yes.
local cli = require("sandlot.cli")

-- "90", "90s", "15m", "2h", "3d" -> seconds, or nil
local UNITS = { s = 1, m = 60, h = 3600, d = 86400 }
local function duration(s)
  local n, u = tostring(s):match("^(%d+%.?%d*)([smhd]?)$")
  if not n then return nil end
  return tonumber(n) * UNITS[u ~= "" and u or "s"]
end

local SHOWN = { destroyed = "destroyed", would_destroy = "would destroy",
                marked_lost = "marked lost", would_mark_lost = "would mark lost",
                failed = "FAILED" }

local function table_out(items)
  local lines = { { "KIND", "PROVIDER", "DURABLE ID", "PROVIDER ID", "ACTION", "REASON" } }
  for _, x in ipairs(items) do
    local ext = cli.cut(x.external_id or "-", 20)
    lines[#lines + 1] = { x.kind, x.provider, x.id or "-", ext, SHOWN[x.action] or x.action,
                          x.reason .. (x.error and (": " .. x.error) or "") }
  end
  cli.columns(lines)
end

return {
  summary = "reconcile the providers' sandboxes with the ledger (a dry run unless --yes)",
  usage = "sandlot gc [--provider NAME] [--older-than D] [--yes] [--json]",
  options = {
    { "--provider", arg = "NAME",
      summary = "only this provider (module, file or configured name)" },
    { "--older-than", arg = "D",
      summary = "only sandboxes and records older than D (90, 15m, 2h, 3d)" },
    { "--yes", short = "-y", summary = "act: destroy orphans and expired ones, mark ghosts lost" },
    { "--dry-run", summary = "only list what would be done (the default)" },
  },
  json = true,
  help = [[
Lists each provider's sandboxes (its list operation) and compares them with the ledger
($XDG_STATE_HOME/sandlot/ledger.db). Providers: NAME, or else every configured provider, every
provider a live record names, and local. It finds
  orphan    at the provider, but the ledger has no row, says destroyed/error/lost, names another
            sandbox (re-created), or has a `creating` row whose host is dead (on another
            machine: older than $SANDLOT_GC_GRACE seconds, default 600): destroyed;
  ghost     active or stopped in the ledger but gone at the provider, or a `creating` row as
            above with no sandbox: marked lost;
  expired   past its ttl, or idle past its idle_timeout with no live host: destroyed;
  leftover  what the provider's own gc rule removes (local: past create's timeout; docker: not
            running or paused, or expired).
Without --yes nothing is changed. --json prints {dry_run, providers, items} (README, Commands).
Exits 1 when a provider cannot be reached or an action failed.
]],
  run = function(o)
    local older
    if o.opts.older_than then
      older = duration(o.opts.older_than)
      if not older then
        return cli.usage_error(cli.get("gc"), "--older-than needs a duration such as 90, 15m, " ..
                               "2h or 3d, got '%s'", o.opts.older_than)
      end
    end
    if o.opts.yes and o.opts.dry_run then
      return cli.usage_error(cli.get("gc"), "--yes and --dry-run contradict each other")
    end
    local report, err = require("sandlot._reconcile").run({ provider = o.opts.provider,
                                                            older_than = older,
                                                            yes = o.opts.yes == true })
    if not report then return nil, err end
    local failed = false
    for _, pr in ipairs(report.providers) do
      if pr.error then
        failed = true
        if not o.opts.json then cli.fail(cli.get("gc"), "%s: %s", pr.provider, pr.error) end
      elseif pr.skipped and o.opts.provider then
        cli.err(("sandlot: gc: %s: skipped: %s\n"):format(pr.provider, pr.skipped))
      end
    end
    for _, x in ipairs(report.items) do failed = failed or x.action == "failed" end
    if o.opts.json then
      cli.json({ dry_run = report.dry_run, providers = cli.array(report.providers),
                 items = cli.array(report.items) })
    else
      table_out(report.items)
      if report.dry_run and #report.items > 0 then
        cli.out("(a dry run: nothing was changed; run with --yes to act)\n")
      end
    end
    return failed and cli.FAILED or cli.OK
  end,
}
