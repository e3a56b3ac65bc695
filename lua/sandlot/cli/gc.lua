-- sandlot.cli.gc: `sandlot gc --provider NAME`: runs the provider's gc operation (the
-- contract's, with the configured options) and prints its report, as text or JSON.
local cli = require("sandlot.cli")

-- What happened to one entry: kept, removed, would_remove (--dry-run) or failed.
local function action(x, dry_run)
  if x.reason == "kept" then return "kept" end
  if x.removed then return "removed" end
  return dry_run and "would_remove" or "failed"
end

local SHOWN = { kept = "kept   ", removed = "removed", would_remove = "would remove",
                failed = "FAILED " }

-- A report entry for JSON: its scalar fields (a provider's own ones included) and the action.
local function entry(x, dry_run)
  local e = {}
  for k, v in pairs(x) do
    local t = type(v)
    if type(k) == "string" and (t == "string" or t == "number" or t == "boolean") then e[k] = v end
  end
  e.action = action(x, dry_run)
  return e
end

return {
  summary = "remove leftover sandboxes of a provider (one with gc: docker, ssh)",
  usage = "sandlot gc --provider NAME [--all] [--older-than SECONDS] [--dry-run] [--json]",
  options = {
    { "--provider", arg = "NAME", summary = "a provider module, file or configured name" },
    { "--all", summary = "remove every sandbox of the provider (sandlot.keep=1 stays)" },
    { "--older-than", arg = "SECONDS", number = true, min = 0,
      summary = "also remove running ones created more than SECONDS ago" },
    { "--dry-run", summary = "only list what would be removed" },
  },
  json = true,
  help = [[
NAME is a provider module (docker), a provider file, or a provider configured in
sandlot.config.lua; it works from any directory. The provider's gc decides what is left over.
docker's rule: remove containers labelled sandlot=1 that are neither running nor paused, or
whose lifetime (create's timeout) has passed; --older-than also removes running ones created
more than SECONDS ago; --all removes every one. Containers labelled sandlot.keep=1 are kept.
Exits 1 when the provider is unknown, has no gc or cannot be reached, or when a removal failed.
]],
  run = function(o)
    local name = o.opts.provider
    if not name then return cli.usage_error(cli.get("gc"), "--provider NAME is required") end
    local r, e = require("sandlot.sandbox")._context(name)
    if not r then return nil, e end
    local gc = r.p.caps.gc == "native" and r.p.ops.gc
    if not gc then return nil, ("provider %s has no gc"):format(name) end
    local opts = { all = o.opts.all, older_than = o.opts.older_than, dry_run = o.opts.dry_run }
    local report, gerr = gc(r.ctx, opts)
    if not report then return nil, gerr end
    local failed = false
    local items = cli.array()
    for _, x in ipairs(report) do
      local e = entry(x, opts.dry_run)
      failed = failed or e.action == "failed"
      items[#items + 1] = e
    end
    if o.opts.json then
      cli.json({ provider = name, dry_run = opts.dry_run == true, items = items })
    else
      for _, x in ipairs(items) do
        local what = type(x.container) == "string" and (" " .. x.container:sub(1, 12)) or ""
        cli.out(("%s %s%s (%s, %s)\n"):format(SHOWN[x.action], tostring(x.id), what,
                                              tostring(x.state), tostring(x.reason)))
      end
    end
    return failed and cli.FAILED or cli.OK
  end,
}
