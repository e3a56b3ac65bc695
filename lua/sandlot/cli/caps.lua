-- sandlot.cli.caps: `sandlot caps NAME [--json]`: how each operation of a provider is done
-- (native, through exec, ..., not_supported), as sandlot.caps tells. Also the loader
-- check-provider uses: a broken provider table is explained, an unknown name is an error.
local cli = require("sandlot.cli")

local M = {
  summary = "show how a provider does each operation (native, exec, not_supported, ...)",
  usage = "sandlot caps FILE_OR_NAME [--json]",
  args = { min = 1, max = 1, name = "FILE_OR_NAME" },
  json = true,
  help = [[
FILE_OR_NAME is a provider file, a provider module name or a provider configured in
sandlot.config.lua. The provider is loaded and checked, never contacted. Exits 1 when it cannot
be loaded or its table is broken (each problem is listed).
]],
}

---Loads the provider `ref` and returns its caps; or prints why it cannot (with --json, also
---{provider, problems} on stdout for a broken table) and returns nil, exit status.
---@param c table the command, for messages
---@param ref string
---@param json? boolean
---@return table|nil caps, integer? status
function M.load(c, ref, json)
  local ok, caps, cerr = pcall(require("sandlot").caps, ref)
  if ok and caps then return caps end
  if ok then return nil, cli.fail(c, "%s", tostring(cerr)) end
  local e = caps
  local problems = type(e) == "table" and e.problems or { tostring(e) }
  cli.fail(c, "%s is not a valid provider:", ref)
  for _, p in ipairs(problems) do cli.err("  - ", p, "\n") end
  if json then cli.json({ provider = ref, problems = cli.array(problems) }) end
  return nil, cli.FAILED
end

---Prints the caps as an aligned table, operations sorted.
function M.print(caps)
  local ops = {}
  for op in pairs(caps) do ops[#ops + 1] = op end
  table.sort(ops)
  for _, op in ipairs(ops) do cli.out(("  %-12s %s\n"):format(op, caps[op])) end
end

function M.run(o)
  local c = cli.get("caps")
  local ref = o.args[1]
  local caps, rc = M.load(c, ref, o.opts.json)
  if not caps then return rc end
  if o.opts.json then
    cli.json({ provider = ref, capabilities = caps })
  else
    cli.out(("provider %s\n"):format(ref))
    M.print(caps)
  end
  return cli.OK
end

return M
