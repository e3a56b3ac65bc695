-- sandlot.config: named providers and the default. A config file is Lua that returns
-- {default = "name", providers = {name = {"module", key = value, ...}}}. Secrets come from the
-- environment through env "NAME", resolved only when that provider is used. Owns the search
-- order of config files and the provider selection precedence.
local errors = require("sandlot.errors")
local check = require("sandlot._check")

local M = {}

M.FALLBACK = "local"

local EnvRef = { __name = "sandlot.config.env" }
EnvRef.__index = EnvRef
EnvRef.__tostring = function(r) return ("env(%q)"):format(r.name) end

---Returns a reference to an environment variable, read when the provider using it is selected.
---@param name string
---@param default? string used when the variable is unset or empty
---@return table ref
function M.env(name, default)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error("env: variable name expected, got " .. tostring(name), 2)
  end
  if default ~= nil and type(default) ~= "string" then
    error("env: default must be a string", 2)
  end
  return setmetatable({ name = name, default = default }, EnvRef)
end

---Tells whether v is an env reference.
function M.is_env(v)
  return getmetatable(v) == EnvRef
end

local current          -- the validated config in use (nil: not loaded yet)

local function bad(where, key, expected, got)
  local msg = ("config %s: %s: expected %s"):format(where, key, expected)
  if got ~= nil then msg = msg .. ", got " .. got end
  return nil, errors.new("invalid_input", msg, { file = where, key = key })
end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return type(v)
end

local function valid_value(v, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or M.is_env(v) then return true end
  if t == "table" and depth < 8 then
    for k, x in pairs(v) do
      if (type(k) ~= "string" and type(k) ~= "number") or not valid_value(x, depth + 1) then
        return false
      end
    end
    return true
  end
  return false
end

---Validates a config table; returns its normalized form
---{path, default, providers = {name = {name, module, opts}}}.
---@param t any
---@param where string the file (or "sandlot.config.set") named in messages
---@return table|nil cfg, sandlot.Error? err
function M.validate(t, where)
  if type(t) ~= "table" then return bad(where, "(file)", "a table to be returned", type(t)) end
  local cfg = { path = where, providers = {} }
  for k, v in pairs(t) do
    if k == "default" then
      if type(v) ~= "string" or v == "" then
        return bad(where, "default", "a provider name (string)", describe(v))
      end
      cfg.default = v
    elseif k == "ledger" then             -- false: no journal (sandlot.ledger)
      if type(v) ~= "boolean" then return bad(where, "ledger", "a boolean", describe(v)) end
      cfg.ledger = v
    elseif k == "plugins" then            -- {path =, NAME = {priority, limits, grants, ...}}
      if type(v) ~= "table" then return bad(where, "plugins", "a table", describe(v)) end
      cfg.plugins = v
    elseif k == "providers" then
      if type(v) ~= "table" then
        return bad(where, "providers", "a table {name = {\"module\", opts...}}", describe(v))
      end
    else
      local s = check.suggest(k, { "default", "providers", "ledger", "plugins" })
      return bad(where, tostring(k), "only the keys 'default', 'providers', 'ledger' and 'plugins'",
                 "an unknown key" .. (s and (" (did you mean '" .. s .. "'?)") or ""))
    end
  end
  for name, spec in pairs(t.providers or {}) do
    local key = "providers." .. tostring(name)
    if type(name) ~= "string" or not name:match("^[%a_][%w_%-]*$") then
      return bad(where, key, "a provider name of letters, digits, '_' or '-'")
    end
    local entry = { name = name, opts = {}, path = where }
    if type(spec) == "string" then
      entry.module = spec
    elseif type(spec) == "table" then
      local mod = spec[1]
      if type(mod) ~= "string" and type(mod) ~= "table" then
        return bad(where, key .. "[1]", "the provider module name (e.g. \"local\") or table",
                   describe(mod))
      end
      entry.module = mod
      for k, v in pairs(spec) do
        if k ~= 1 then
          if type(k) ~= "string" then
            return bad(where, key, "one module name then key = value options",
                       "an extra positional value")
          end
          if not valid_value(v, 0) then
            return bad(where, key .. "." .. k, "a string, number, boolean, table or env()",
                       describe(v))
          end
          entry.opts[k] = v
        end
      end
    else
      return bad(where, key, "\"module\" or {\"module\", key = value, ...}", describe(spec))
    end
    cfg.providers[name] = entry
  end
  return cfg
end

local exists = require("sandlot._paths").exists

---Returns the config file that applies (first found: $SANDLOT_CONFIG, ./sandlot.config.lua,
---$XDG_CONFIG_HOME/sandlot/config.lua), or nil when there is none.
---@return string|nil path, boolean explicit true when it came from SANDLOT_CONFIG
function M.find()
  local explicit = os.getenv("SANDLOT_CONFIG")
  if explicit and explicit ~= "" then return explicit, true end
  if exists("sandlot.config.lua") then return "sandlot.config.lua", false end
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    local home = os.getenv("HOME")
    xdg = home and home ~= "" and (home .. "/.config")
  end
  local file = xdg and (xdg .. "/sandlot/config.lua")
  if file and exists(file) then return file, false end
  return nil, false
end

---Runs a config file's text and validates what it returns. The text runs with `env` in scope
---and, behind it, the globals of `base` (default _G). Never raises for bad text.
---@param text string
---@param where string the file named in messages
---@param base? table
---@return table|nil cfg, sandlot.Error? err invalid_input
function M.parse(text, where, base)
  local envt = setmetatable({ env = M.env }, { __index = base or _G })
  local chunk, lerr = load(text, "@" .. where, "t", envt)
  if not chunk then
    return nil, errors.new("invalid_input", ("config %s: %s"):format(where, lerr),
                           { file = where })
  end
  local ok, t = pcall(chunk)
  if not ok then
    return nil, errors.new("invalid_input", ("config %s: %s"):format(where, tostring(t)),
                           { file = where })
  end
  return M.validate(t, where)
end

---Loads and validates a config file (see parse).
---@param path string
---@return table|nil cfg, sandlot.Error? err
function M.load(path)
  assert(type(path) == "string", "config.load: path must be a string")
  local f = io.open(path, "rb")
  local text = f and f:read("a")
  if f then f:close() end
  if not text then
    return nil, errors.new("not_found", ("config %s: no such file"):format(path), { file = path })
  end
  return M.parse(text, path)
end

---Returns the config in use, loading the config file on first use. No file means an empty
---config (every provider is then used by module name with no options).
---@return table|nil cfg, sandlot.Error? err
function M.get()
  if current then return current end
  local path = M.find()
  if not path then
    current = { providers = {} }
    return current
  end
  local cfg, err = M.load(path)
  if not cfg then return nil, err end
  current = cfg
  return current
end

---Uses the given config table instead of the config file (validated; raises when invalid,
---since a table written in code is the code's mistake).
---@param t table {default = "name", providers = {...}}
---@return table cfg
function M.set(t)
  local cfg, err = M.validate(t, "sandlot.config.set")
  if not cfg then error(err, 2) end
  current = cfg
  return cfg
end

---Loads a config file and uses it from now on (instead of the one found by M.find).
---@param path string
---@return true|nil ok, sandlot.Error? err
function M.use(path)
  local cfg, err = M.load(path)
  if not cfg then return nil, err end
  current = cfg
  return true
end

---Forgets the loaded config: the next use reads the file again.
function M.reset()
  current = nil
end

---Picks the provider name by precedence: explicit argument > $SANDLOT_PROVIDER > config
---`default` > "local".
---@param explicit? string
---@return string|nil name, string|sandlot.Error source_or_err
function M.select(explicit)
  if explicit ~= nil then return explicit, "argument" end
  local envp = os.getenv("SANDLOT_PROVIDER")
  if envp and envp ~= "" then return envp, "SANDLOT_PROVIDER" end
  local cfg, err = M.get()
  if not cfg then return nil, err end
  if cfg.default then return cfg.default, "config default" end
  return M.FALLBACK, "built-in default"
end

---Picks the provider name as select does; a name from $SANDLOT_PROVIDER or the config's
---default must then name something (see known), so a typo there is told as such.
---@param explicit? string
---@return string|nil name, string|sandlot.Error source_or_err
function M.select_known(explicit)
  local name, source = M.select(explicit)
  if name == nil or (source ~= "SANDLOT_PROVIDER" and source ~= "config default") then
    return name, source
  end
  return M.known(name, source)
end

---Returns name, source when name (from $SANDLOT_PROVIDER or the config's default) is a
---configured provider, a provider file or a provider module on the search path; otherwise
---nil and a not_found error saying where the name came from and listing the configured names.
---@param name string
---@param source string "SANDLOT_PROVIDER" or "config default"
---@return string|nil name, string|sandlot.Error source_or_err
function M.known(name, source)
  local cfg = M.get()
  if not cfg or cfg.providers[name] or name:find("/", 1, true) or name:find("%.lua$") then
    return name, source
  end
  require("sandlot._paths").setup()
  local mod = name:find(".", 1, true) and name or ("providers." .. name)
  if package.searchpath(mod, package.path) then return name, source end
  local names = {}
  for n in pairs(cfg.providers) do names[#names + 1] = n end
  table.sort(names)
  local s = check.suggest(name, require("sandlot.provider").known_names())
  local from = source == "SANDLOT_PROVIDER" and "$SANDLOT_PROVIDER"
               or ("default in " .. tostring(cfg.path))
  return nil, errors.new("not_found", ("no provider named '%s' (from %s): not in the config " ..
    "and no module %s on the search path%s; configured: %s"):format(name, from, mod,
    s and (" (did you mean '" .. s .. "'?)") or "", #names > 0 and table.concat(names, ", ")
    or "none"), { key = source == "SANDLOT_PROVIDER" and source or "default", file = cfg.path })
end

---Looks up a provider name: the configured entry {name, module, opts, path}, or a bare entry
---naming the module itself when the config has no such provider.
---@param name string
---@return table|nil entry, sandlot.Error? err
function M.entry(name)
  local cfg, err = M.get()
  if not cfg then return nil, err end
  local e = cfg.providers[name]
  if e then return e end
  return { name = name, module = name, opts = {}, path = nil }
end

---Resolves the env() references in a provider's options. A missing variable fails here, only
---when that provider is used, naming the variable and the key.
---@param entry table from M.entry
---@return table|nil opts, sandlot.Error? err
function M.resolve_opts(entry)
  local function walk(v, key)
    if M.is_env(v) then
      local s = os.getenv(v.name)
      if s == nil or s == "" then s = v.default end
      if s == nil then
        return nil, errors.new("invalid_input",
          ("config %s: providers.%s.%s: environment variable %s is not set")
            :format(entry.path or "(none)", entry.name, key, v.name),
          { file = entry.path, key = "providers." .. entry.name .. "." .. key, variable = v.name })
      end
      return s
    elseif type(v) == "table" then
      local out = {}
      for k, x in pairs(v) do
        local r, err = walk(x, key .. "." .. tostring(k))
        if err then return nil, err end
        out[k] = r
      end
      return out
    end
    return v
  end
  local out = {}
  for k, v in pairs(entry.opts or {}) do
    local r, err = walk(v, k)
    if err then return nil, err end
    out[k] = r
  end
  return out
end

return M
