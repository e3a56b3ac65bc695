-- sandlot.cli.create: `sandlot create [--provider P] [--name N] [--image I] [--label K=V]...
-- [--from CK] [--json]`: creates a sandbox that outlives the command and prints its durable id, for
-- `sandlot exec ID`, `sandlot ps` and sandlot.get(ID) from any process.
local cli = require("sandlot.cli")

local M = {
  summary = "create a sandbox and print its durable id (it stays until removed)",
  usage = "sandlot create [--provider NAME] [--name NAME] [--image IMAGE] " ..
          "[--label K=V]... [--from CK] [--json]",
  options = {
    { "--provider", arg = "NAME",
      summary = "a provider module, file or configured name " ..
                "(default: $SANDLOT_PROVIDER, the config's default, local)" },
    { "--name", arg = "NAME", summary = "a name for people (shown by ps)" },
    { "--image", arg = "IMAGE", summary = "the image, where the provider has images" },
    { "--purpose", arg = "TEXT", summary = "why it exists (shown by ps)" },
    { "--timeout", arg = "SECONDS", number = true, min = 1,
      summary = "its lifetime, where the provider enforces one" },
    { "--label", arg = "K=V", many = true, summary = "a label (repeatable)" },
    { "--from", arg = "CK", summary = "start from checkpoint CK (sandlot checkpoint ls)" },
  },
  json = true,
  help = [[
The sandbox is recorded in the ledger and is not destroyed when this command exits: use
`sandlot exec ID -- CMD`, `sandlot ps`, or sandlot.get(ID) in a script, and remove it when done.
With --from CK it starts from a checkpoint (`sandlot checkpoint take`): a portable one's files
are written into it, on any provider; a native one seeds only its own provider (another, or a
provider that restores in place only, is not_supported before anything is created).
Exits 1 when the provider cannot create it, or the checkpoint is unknown, corrupt or
not usable there.
]],
}

function M.run(o)
  local c = cli.get("create")
  local sandlot = require("sandlot")
  local labels
  for _, kv in ipairs(o.opts.label or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return cli.usage_error(c, "--label needs K=V, got '%s'", kv) end
    labels = labels or {}
    labels[k] = v
  end
  local opts = { name = o.opts.name, image = o.opts.image, purpose = o.opts.purpose,
                 timeout = o.opts.timeout, labels = labels, from = o.opts.from }
  local sb, err = sandlot.create(o.opts.provider, opts)
  if not sb then return cli.fail(c, "%s", tostring(err)) end
  for _, w in ipairs(sb.warnings or {}) do
    cli.err("sandlot: create: warning: ", tostring(w), "\n")
  end
  if not sb.durable_id then
    local id = sb.id
    sb:destroy()
    return cli.fail(c, "the ledger is off (SANDLOT_LEDGER=off), so sandbox %s could not be " ..
                       "found again; it was destroyed", id)
  end
  if o.opts.json then
    cli.json({ id = sb.durable_id, provider = sb.provider, external_id = sb.id, name = sb.name })
  else
    cli.out(sb.durable_id, "\n")
  end
  return cli.OK
end

return M
