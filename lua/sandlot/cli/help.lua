-- sandlot.cli.help: `sandlot help [COMMAND] [--json]`: the command list, or one command's
-- usage, from the command table in sandlot.cli.
local cli = require("sandlot.cli")
local check = require("sandlot._check")

-- One command as JSON: what help prints, as data.
local function describe(c)
  local opts = cli.array()
  for _, o in ipairs(c.options) do
    opts[#opts + 1] = { name = o[1], short = o.short, arg = o.arg, summary = o.summary or "" }
  end
  return { name = c.name, summary = c.summary, usage = c.usage, options = opts }
end

return {
  summary = "show the commands, or one command's usage",
  usage = "sandlot help [COMMAND] [--json]",
  args = { min = 0, max = 1, name = "COMMAND" },
  json = true,
  help = [[
`sandlot COMMAND --help` shows the same as `sandlot help COMMAND`. For running scripts and
the REPL, see `sandlot --help`.
]],
  run = function(o)
    local name = o.args[1]
    if name then
      local c = cli.get(name)
      if not c then
        return cli.usage_error(cli.get("help"), "no command named '%s'%s", name,
                               cli.did_you_mean(check.suggest(name, cli.NAMES)))
      end
      if o.opts.json then cli.json(describe(c)) else cli.out(cli.help_text(c)) end
      return cli.OK
    end
    if o.opts.json then
      local list = cli.array()
      for _, n in ipairs(cli.NAMES) do list[#list + 1] = describe(cli.get(n)) end
      cli.json({ commands = list })
      return cli.OK
    end
    cli.out("usage: sandlot COMMAND [args]      (sandlot help COMMAND, or COMMAND --help)\n",
            "       sandlot [options] [script.lua [args]]   run a script (sandlot --help)\n\n",
            "commands:\n")
    for _, n in ipairs(cli.NAMES) do
      cli.out(("  %-16s %s\n"):format(n, cli.get(n).summary))
    end
    return cli.OK
  end,
}
