-- sandlot.cli._rm: `sandlot rm [--force] [--json] ID...` (and `sandlot destroy`, the name that
-- pairs with create): destroys sandboxes by durable id (the ledger says where each one is),
-- like docker rm: every id is tried, each failure is reported, and the exit status is 1 when
-- any failed. Returns a function(name) -> the command table for that name.
local cli = require("sandlot.cli")

-- Destroys one sandbox; returns true, or nil and the reason.
local function remove(l, id, force)
  local rec, rerr = l:get(id)
  if not rec then
    if rerr.code == "not_found" then return nil, ("no such sandbox: %s"):format(id) end
    return nil, rerr.message
  end
  if rec.state == "destroyed" then return nil, ("sandbox %s was destroyed already"):format(id) end
  if type(rec.handle) ~= "table" then       -- a create that never finished: nothing to destroy
    local ok, err = l:set_state(id, "destroyed", { note = "sandlot rm" })
    if not ok then return nil, err.message end
    return true
  end
  local sb, err = require("sandlot.sandbox").get(id, { reconnect = false, take = force })
  if not sb then
    if err.code == "permission_denied" then
      return nil, (err.message:gsub("pass {take = true} to take it over", "use --force"))
    end
    return nil, err.message
  end
  local ok, derr = sb:destroy()
  if not ok then return nil, tostring(derr) end
  return true
end

return function(name)
  local other = name == "rm" and "destroy" or "rm"
  return {
    summary = ("destroy sandboxes by durable id (from the ledger; also sandlot %s)"):format(other),
    usage = "sandlot " .. name .. " [--force] [--json] ID...",
    args = { min = 1, max = math.huge, name = "ID (a durable sandbox id, from sandlot ps)" },
    options = {
      { "--force", short = "-f", summary = "also a sandbox another live host owns" },
    },
    json = true,
    help = [[
Destroys each sandbox named by its durable id (sb-..., the first column of sandlot ps), from
any directory: the ledger holds its provider and handle, the config and environment its
credentials. A sandbox already gone at the provider counts as removed; an unknown or already
destroyed id is an error. A sandbox that another live host (a running sandlot process on this
machine, or one that wrote to the ledger within a minute) owns is refused unless --force.
Prints each removed id (docker rm's way); --json prints [{id, removed, error?}].
Exits 1 when any id could not be removed.
]],
    run = function(o)
      local l, lerr = require("sandlot.sandbox")._ledger(name)
      if not l then return nil, lerr end
      local failed = false
      local rows = cli.array()
      for _, id in ipairs(o.args) do
        local ok, why = remove(l, id, o.opts.force == true)
        failed = failed or not ok
        rows[#rows + 1] = { id = id, removed = ok == true, error = why }
        if not o.opts.json then
          if ok then cli.out(id, "\n") else cli.fail(cli.get(name), "%s", why) end
        end
      end
      if o.opts.json then cli.json(rows) end
      return failed and cli.FAILED or cli.OK
    end,
  }
end
