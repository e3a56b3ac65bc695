-- sandlot.cli.config: `sandlot config [check] [--json]`: the config in use, resolved, with
-- secrets masked; `check` also loads every configured provider and checks its options (types,
-- unknown keys, unset environment variables). No provider is contacted.
local cli = require("sandlot.cli")
local config = require("sandlot.config")
local redact = require("sandlot._redact")

local M = {
  summary = "show the config in use (secrets masked); 'check' validates every provider",
  usage = "sandlot config [check] [--json]",
  args = { min = 0, max = 1, name = "check" },
  json = true,
  help = [[
Prints the config file that applies ($SANDLOT_CONFIG, ./sandlot.config.lua, then
$XDG_CONFIG_HOME/sandlot/config.lua), the default provider and where that choice came from,
and each configured provider with its options. A value read with env("NAME") shows as
env(NAME) and whether it is set; a value under a secret-looking key (token, api_key,
password, ...) is shown as [REDACTED], never in clear.

`sandlot config check` also loads each provider and checks its options as sandlot.create
would: unknown keys (with a did-you-mean), wrong types and unset environment variables. It
exits 1 when any provider has a problem.
]],
}

-- One option value for display, as text and as its --json form: env refs as env(NAME) (set
-- or not; {env = NAME, set = bool, default = bool}), secrets masked.
local function show(key, v)
  if config.is_env(v) then
    local s = os.getenv(v.name)
    local set = s ~= nil and s ~= ""
    local text = set and "set" or (v.default ~= nil and "unset, has a default" or "unset")
    return ("env(%s) [%s]"):format(v.name, text),
           { env = v.name, set = set, default = v.default ~= nil }
  end
  if redact.is_secret(key) then return redact.MARK, redact.MARK end
  if type(v) == "table" then
    local t = redact.redact(v)
    return require("sandlot.wire.json").encode(t), t
  end
  if type(v) == "string" then return ("%q"):format(v), v end
  return tostring(v), v
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

-- The problems of one configured provider, as create would find them; {} when none.
local function problems(e)
  local provider = require("sandlot.provider")
  local ok, p, perr = pcall(provider.load, e.module)
  if not ok then return { tostring(p) } end
  if not p then return { tostring(perr) } end
  local opts, oerr = config.resolve_opts(e)
  if not opts then return { oerr.message } end
  local cok, cerr = provider.check_config(p, opts, e.path, e.name)
  if not cok then return { cerr.message } end
  return {}
end

function M.run(o)
  local c = cli.get("config")
  local checking = o.args[1]
  if checking ~= nil and checking ~= "check" then
    return cli.usage_error(c, "unknown argument '%s' (the only one is 'check')", checking)
  end
  local cfg, err = config.get()
  if not cfg then return cli.fail(c, "%s", tostring(err)) end
  local default, source = config.select()
  if type(source) ~= "string" then source = "?" end
  local doc = { file = cfg.path, default = default, default_from = source, providers = {} }
  local bad = 0
  for _, name in ipairs(sorted_keys(cfg.providers)) do
    local e = cfg.providers[name]
    local entry = { name = name, module = e.module, options = {} }
    for _, k in ipairs(sorted_keys(e.opts or {})) do
      local text, value = show(k, e.opts[k])
      entry.options[#entry.options + 1] = { key = k, value = value, text = text }
    end
    if checking then
      entry.problems = cli.array(problems(e))
      if #entry.problems > 0 then bad = bad + 1 end
    end
    entry.options = cli.array(entry.options)
    doc.providers[#doc.providers + 1] = entry
  end
  doc.providers = cli.array(doc.providers)
  if o.opts.json then
    for _, p in ipairs(doc.providers) do
      for _, kv in ipairs(p.options) do kv.text = nil end
    end
    cli.json(doc)
  else
    cli.out(("config file: %s\n"):format(cfg.path or "(none: every provider by module name, " ..
                                         "no options)"))
    cli.out(("default provider: %s (from %s)\n"):format(tostring(default), source))
    if #doc.providers == 0 then cli.out("providers: none configured\n") end
    for _, p in ipairs(doc.providers) do
      local status = ""
      if checking then status = #p.problems == 0 and "  ok" or "  PROBLEM" end
      cli.out(("provider %s (module %s)%s\n"):format(p.name, p.module, status))
      for _, kv in ipairs(p.options) do cli.out(("  %-16s %s\n"):format(kv.key, kv.text)) end
      for _, pr in ipairs(p.problems or {}) do cli.out("  - ", pr, "\n") end
    end
    if checking then
      cli.out(("%d provider(s), %d with problems\n"):format(#doc.providers, bad))
    end
  end
  return bad > 0 and cli.FAILED or cli.OK
end

return M
