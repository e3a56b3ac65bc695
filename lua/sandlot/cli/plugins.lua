-- sandlot.cli.plugins: `sandlot plugins [list|info|enable|disable|reload|rollback]
-- [NAME [VERSION]]`:
-- the plugins found on the plugin path, with version, status, faults, memory and time used,
-- and the operations on one plugin. The breaker's verdict and a rollback's pin persist under
-- $XDG_STATE_HOME/sandlot/plugins, so they hold for later runs too.
local cli = require("sandlot.cli")

local function kib(n) return ("%dK"):format((n or 0) // 1024) end

local function table_out(list)
  local lines = { { "NAME", "VERSION", "STATUS", "FAULTS", "MEMORY", "CALLS", "TIME" } }
  for _, p in ipairs(list) do
    lines[#lines + 1] = { p.name, tostring(p.version or "-"), p.status, tostring(p.faults),
                          kib(p.memory), tostring(p.calls), ("%.1fms"):format(p.time_ns / 1e6) }
  end
  cli.columns(lines)
end

local VERBS = { list = 0, info = 1, enable = 1, disable = 1, reload = 1, rollback = 1 }

return {
  summary = "list plugins (version, status, faults, memory, time); enable, reload, roll back",
  usage = "sandlot plugins [list | info NAME | enable NAME | disable NAME | reload NAME | " ..
          "rollback NAME [VERSION]] [--json]",
  args = { min = 0, max = 3, name = "VERB NAME" },
  json = true,
  help = [[
Without a verb, lists the plugins found on the plugin path ($SANDLOT_PLUGIN_PATH, the config's
plugins.path, $XDG_CONFIG_HOME/sandlot/plugins) and the shipped ones the config names. Status is
enabled, disabled, failed (the breaker tripped: 5 faults in 60 s) or load_failed.
enable re-enables a plugin the breaker disabled. rollback switches to a past version (default:
the one before) through the same migration path as a reload, and pins it until the next reload.
]],
  run = function(o)
    local plugins = require("sandlot.plugins")
    local verb, name, version = o.args[1] or "list", o.args[2], o.args[3]
    if VERBS[verb] == nil then return nil, ("unknown verb '%s'"):format(verb) end
    if VERBS[verb] == 1 and not name then return nil, verb .. " needs a plugin NAME" end
    if verb ~= "rollback" and version then return nil, "too many arguments" end
    if verb == "list" then
      local list = plugins.list()
      if o.opts.json then
        for _, p in ipairs(list) do p.state = nil end
        cli.json(cli.array(list))
      else
        table_out(list)
      end
      return cli.OK
    end
    if verb == "info" then
      local info, err = plugins.info(name)
      if not info then return nil, err end
      if o.opts.json then cli.json(info) else
        for _, k in ipairs({ "name", "version", "id", "status", "faults", "memory", "calls",
                             "time_ns", "priority", "path" }) do
          cli.out(("%-9s %s\n"):format(k, tostring(info[k])))
        end
      end
      return cli.OK
    end
    local ok, err = plugins[verb](name, version)
    if not ok then return nil, err end
    local info = plugins.info(name)
    if o.opts.json then cli.json({ name = name, version = info.version, status = info.status })
    else cli.out(("%s %s: version %s, %s\n"):format(verb, name, tostring(info.version),
                                                     info.status)) end
    return cli.OK
  end,
}
