-- sandlot.errors: the error convention (STYLE.md §3). Success returns the value, an expected
-- failure returns nil, err (a sandlot.error with a code from a closed set), misuse raises.
local core = require("sandlot.core.errors")
local redact = require("sandlot._redact")

local M = {
  codes = core.codes,       -- code -> retryable by default
  metatable = core.metatable,
}

local function copy_fields(err, fields, overwrite)
  if fields == nil then return err end
  for k, v in pairs(redact.redact(fields)) do
    if overwrite or rawget(err, k) == nil then rawset(err, k, v) end
  end
  return err
end

---Creates an error. An unknown code raises: the set is closed so callers can branch on it.
---@param code string
---@param message? string
---@param fields? table context such as op, provider, sandbox, status, retryable, cause
---@return sandlot.Error
function M.new(code, message, fields)
  local err = core.new(code, message or code)
  return copy_fields(err, fields, true)
end

---Tells whether v is a sandlot.error (with the given code, if any).
---@param v any
---@param code? string
---@return boolean
function M.is(v, code)
  return core.is(v, code)
end

---Adds context to an error without overwriting what it already says. A value that is not a
---sandlot.error (a string raised by a library, say) becomes an `internal` error whose
---`cause` is that value.
---@param err any
---@param fields table
---@return sandlot.Error
function M.wrap(err, fields)
  if not core.is(err) then
    return M.new("internal", tostring(err), copy_fields({ cause = tostring(err) }, fields))
  end
  return copy_fields(err, fields, false)
end

---Raises a new error at the caller's level.
function M.raise(code, message, fields)
  error(M.new(code, message, fields), 2)
end

---Returns the argument unchanged when it is truthy; otherwise raises its error (like assert,
---but keeps the error table intact instead of turning it into a string).
function M.check(v, err, ...)
  if v then return v, err, ... end
  error(err, 2)
end

return M
