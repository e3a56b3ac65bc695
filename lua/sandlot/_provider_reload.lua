-- sandlot._provider_reload: hot reload of a provider file while sandboxes made by it stay
-- attached. A sandbox keeps the completed provider table (sb._p); the reload rewrites that
-- same table in place, so later calls on live handles run the new code while calls in flight
-- finish on the old functions. An optional migrate_handle(handle, old_version) in the new
-- provider rewrites the handles of the live sandboxes this process made.
local errors = require("sandlot.errors")
local provider = require("sandlot.provider")

local M = {}

local function source_of(spec)
  if provider.is_file(spec) then return spec, spec end
  local mod = spec:find(".", 1, true) and spec or ("providers." .. spec)
  return package.searchpath(mod, package.path), mod
end

---Reloads a provider (by module name or file) in place. On any failure the old code stays.
---@param spec string
---@param live? table<string, table> sandboxes by id whose handles may be migrated
---@return true|nil ok, sandlot.Error? err not_found, invalid_input (the new file fails)
function M.reload(spec, live)
  local old, err = provider.load(spec)
  if not old then return nil, err end
  local path, mod = source_of(spec)
  if not path then return nil, errors.new("not_found", "no file for provider " .. spec) end
  local chunk, lerr = loadfile(path)
  if not chunk then
    return nil, errors.new("invalid_input", ("provider %s: %s"):format(spec, tostring(lerr)))
  end
  local co = coroutine.create(chunk)          -- as at first load: no I/O while loading
  local ok, impl = coroutine.resume(co, mod, path)
  if not ok or coroutine.status(co) ~= "dead" or type(impl) ~= "table" then
    return nil, errors.new("invalid_input", ("provider %s does not reload: %s"):format(spec,
      ok and "it must return a table and not wait while loading" or tostring(impl)))
  end
  local cok, new = pcall(provider.complete, impl, old.name)
  if not cok then
    return nil, errors.new("invalid_input", ("provider %s does not reload: %s")
      :format(spec, tostring(new)))
  end
  local old_version = old.impl and old.impl.version
  for k in pairs(old.ops) do old.ops[k] = nil end
  for k, v in pairs(new.ops) do old.ops[k] = v end
  old.caps, old.impl, old.name = new.caps, new.impl, new.name
  if type(impl.migrate_handle) == "function" then
    for _, sb in pairs(live or {}) do
      if sb._p == old then
        local h = impl.migrate_handle(sb.handle, old_version)
        if type(h) == "table" and h.id == sb.id then sb.handle = h end
      end
    end
  end
  return true
end

return M
