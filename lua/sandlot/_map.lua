-- sandlot._map: the serialized form of a sandbox (sandlot.sandbox installs to_map and
-- from_map as its own): a plain, JSON-safe, versioned table {version, provider, id,
-- durable_id, handle} that survives restarts and never holds credentials (secret-named handle
-- fields are redacted; credentials come back from the config in from_map). Kept apart to keep
-- sandlot.sandbox (lua/sandlot/sandbox.lua) within its size.
local errors = require("sandlot.errors")
local redact = require("sandlot._redact")
local check = require("sandlot._check")

local M = {}

local check_opts = check.opts

-- sandlot.sandbox and its private helpers (install): check_sb(sb, fname), resolve(ref,
-- warnings), new_sandbox(r, handle, warnings)
local S, check_sb, resolve, new_sandbox

local function json_safe(v, path, depth)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("to_map: handle." .. path .. " is not a finite number", 4)
    end
    return v
  end
  if t == "table" and getmetatable(v) == nil and depth < 16 then
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        error("to_map: handle." .. path .. " has a key that is not a string", 4)
      end
      out[k] = json_safe(x, path .. "." .. tostring(k), depth + 1)
    end
    return out
  end
  error(("to_map: handle%s is a %s, which is not JSON-safe (provider bug)")
    :format(path == "" and "" or "." .. path, t), 4)
end

---Returns a plain, JSON-safe, versioned table describing the sandbox: {version, provider
---(the reference: configured name, module or file), id, handle}. It never contains
---credentials: secret-named fields are redacted and credentials come back from the config and
---environment in from_map.
---@param sb sandlot.Sandbox
---@return table
function M.to_map(sb)
  check_sb(sb, "to_map")
  if type(sb.provider) ~= "string" then error("to_map: this sandbox's provider has no name", 2) end
  return {
    version = S.MAP_VERSION,
    provider = sb.provider,
    id = sb.id,
    durable_id = sb.durable_id,             -- optional: the ledger's id, when journaled
    handle = json_safe(redact.redact(sb.handle, 16), "", 0),
  }
end

---Rebuilds a sandbox from to_map's table. No I/O on the sandbox itself: call sb:reconnect()
---to verify it is alive. opts.provider overrides the provider (a table, for one that is not
---loadable by name).
---@param t table
---@param opts? {provider?: string|table}
---@return sandlot.Sandbox|nil sb, sandlot.Error? err invalid_input (not a sandbox map),
---  not_found (provider unknown here), invalid_input (credentials missing)
function M.from_map(t, opts)
  opts = check_opts(opts, { provider = true }, "from_map")
  if type(t) ~= "table" then
    return nil, errors.new("invalid_input", "from_map: a table from to_map expected")
  end
  if t.version ~= S.MAP_VERSION then
    return nil, errors.new("invalid_input", ("from_map: unsupported map version %s (expected %d)")
      :format(tostring(t.version), S.MAP_VERSION))
  end
  if type(t.provider) ~= "string" or type(t.handle) ~= "table" or type(t.handle.id) ~= "string"
      or t.id ~= t.handle.id then
    return nil, errors.new("invalid_input", "from_map: provider, id and handle.id expected")
  end
  local warnings = {}
  local r, err = resolve(opts.provider or t.provider, warnings)
  if not r then return nil, errors.wrap(err, { op = "from_map", provider = t.provider }) end
  if opts.provider then r.ref = t.provider; r.ctx.name = t.provider end
  local handle = json_safe(t.handle, "", 0)   -- a copy the caller cannot change under us
  local sb = new_sandbox(r, handle, warnings)
  if type(t.durable_id) == "string" and t.durable_id ~= "" then sb.durable_id = t.durable_id end
  return sb
end

---Adds to_map and from_map to the sandbox module s (which holds MAP_VERSION), given its
---private helpers h = {check_sb, resolve, new_sandbox}.
function M.install(s, h)
  S, check_sb, resolve, new_sandbox = s, h.check_sb, h.resolve, h.new_sandbox
  s.to_map, s.from_map = M.to_map, M.from_map
end

return M
