-- sandlot.errors: the error convention (STYLE.md §3). Success returns the value, an expected
-- failure returns nil, err (a sandlot.error with a code from a closed set), misuse raises.
-- Owns the one context rule: the outer layer's op, provider and sandbox win, the inner op is
-- kept as `via`, and an error is never changed after it is made.
local core = require("sandlot.core.errors")
local redact = require("sandlot._redact")

---A structured error: what an expected failure returns as `nil, err`. It prints as
---"provider: op: code: message" and never holds a secret.
---@class sandlot.Error
---@field code string one of the closed set (errors.codes): not_found, timeout, ...
---@field message string
---@field retryable boolean
---@field op? string the operation that failed (the outermost layer's)
---@field via? string the inner operation, when an outer layer added its own op
---@field provider? string
---@field sandbox? string
---@field status? integer an HTTP status, where one was answered
---@field retry_after? number seconds the service asked to wait
---@field cause? sandlot.Error the error this one rewords

local M = {
  codes = core.codes,       -- code -> retryable by default
  metatable = core.metatable,
}

-- Context the outer layer owns: its value replaces the inner one (the inner op becomes `via`).
local OUTER = { op = true, provider = true, sandbox = true, via = true }
-- What an error is: set once, by new. Rewording or recoding is a new error with a cause.
local FIXED = { code = true, message = true, retryable = true }

---Creates an error. An unknown code raises: the set is closed so callers can branch on it.
---`retryable` is the code's default (errors.codes[code]) unless fields gives it. To reword or
---recode an error, make a new one that keeps it: errors.new(code, msg, {cause = err}).
---@param code string
---@param message? string
---@param fields? table context such as op, provider, sandbox, via, status, retryable, cause
---@return sandlot.Error
function M.new(code, message, fields)
  local err = core.new(code, message or code)
  if fields ~= nil then
    if fields.code ~= nil or fields.message ~= nil then
      error("errors.new: code and message are arguments, not fields", 2)
    end
    for k, v in pairs(redact.redact(fields)) do rawset(err, k, v) end
  end
  return err
end

---Tells whether v is a sandlot.error (with the given code, if any).
---@param v any
---@param code? string
---@return boolean
function M.is(v, code)
  return core.is(v, code)
end

local function chain(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local p = select(i, ...)
    if type(p) == "string" and p ~= "" then parts[#parts + 1] = p end
  end
  return #parts > 0 and table.concat(parts, ": ") or nil
end

---Returns a new error: err with context added; err itself is left as it was. The rule:
--- - op, provider and sandbox in `fields` win over err's. When err had another op, that op is
---   kept in `via`, which reads outer to inner: via = fields.via, err.op, err.via (joined
---   with ": "), and __tostring shows it as "(via ...)".
--- - every other field of `fields` is added only where err has none (the inner layer knows
---   better what a status or a host was).
--- - code, message and retryable cannot be changed (that raises): make a new error with
---   errors.new(code, message, {cause = err}) instead.
---A value that is not a sandlot.error (a string raised by a library, say) becomes an
---`internal` error whose `cause` is that value's text.
---@param err any
---@param fields? table
---@return sandlot.Error
function M.wrap(err, fields)
  fields = fields and redact.redact(fields) or {}
  for k in pairs(FIXED) do
    if fields[k] ~= nil then
      error(("errors.wrap cannot change %s; use errors.new(code, message, {cause = err})")
        :format(k), 2)
    end
  end
  if not core.is(err) then
    local out = M.new("internal", tostring(err), { cause = tostring(err) })
    for k, v in pairs(fields) do rawset(out, k, v) end
    return out
  end
  local out = core.new(err.code, err.message)
  for k, v in pairs(err) do rawset(out, k, v) end
  local inner_op = rawget(err, "op")
  if fields.op ~= nil and inner_op ~= nil and inner_op ~= fields.op then
    rawset(out, "via", chain(fields.via, inner_op, rawget(err, "via")))
  elseif fields.via ~= nil then
    rawset(out, "via", chain(fields.via, rawget(err, "via")))
  end
  for k, v in pairs(fields) do
    if k == "via" then
      -- done above
    elseif OUTER[k] then
      rawset(out, k, v)
    elseif rawget(out, k) == nil then
      rawset(out, k, v)
    end
  end
  return out
end

---Returns err when none of its text holds one of `values` (known secrets); otherwise a new
---error whose strings have them replaced by "[REDACTED]" (a cause that held one is kept as
---its redacted text). Used where the secrets are known: the sandbox layer and its config.
---@param err sandlot.Error
---@param values string[]
---@return sandlot.Error
function M.without(err, values)
  if #values == 0 or not core.is(err) then return err end
  local fields, dirty = {}, false
  for k, v in pairs(err) do
    if type(v) == "string" then
      local s, changed = redact.values(v, values)
      v, dirty = s, dirty or changed
    elseif core.is(v) then
      local s, changed = redact.values(tostring(v), values)
      if changed then v, dirty = s, true end
    end
    fields[k] = v
  end
  if not dirty then return err end
  local out = core.new(fields.code, fields.message)
  for k, v in pairs(fields) do rawset(out, k, v) end
  return out
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
