-- sandlot._redact: the one place that decides what is a secret. Telemetry metadata, error
-- context and serialized handles all pass through here before anyone sees them.
local M = {}

M.MARK = "[REDACTED]"

-- A key is secret when its lowercased name contains one of these words or is one of `exact`.
local words = { "password", "passwd", "passphrase", "secret", "token", "api_key", "apikey",
                "private_key", "privatekey", "authorization", "cookie", "credential",
                "session_key", "access_key" }
local exact = { key = true, auth = true, pass = true, pwd = true, ["x-api-key"] = true }

---Tells whether a field or header name names a secret.
---@param name any
---@return boolean
function M.is_secret(name)
  if type(name) ~= "string" then return false end
  local n = name:lower():gsub("-", "_")
  if exact[n] or exact[name:lower()] then return true end
  for i = 1, #words do
    if n:find(words[i], 1, true) then return true end
  end
  return false
end

---Returns a copy of t with secret-named fields replaced by "[REDACTED]" (depth-limited,
---cycles cut). Non-table values are returned as they are.
---@param t any
---@param depth? integer
---@return any
function M.redact(t, depth, seen)
  if type(t) ~= "table" then return t end
  depth = depth or 6
  seen = seen or {}
  if depth <= 0 or seen[t] then return "[...]" end
  seen[t] = true
  local out = {}
  for k, v in pairs(t) do
    if M.is_secret(k) and v ~= nil and v ~= false then
      out[k] = M.MARK
    elseif type(v) == "table" and getmetatable(v) == nil then
      out[k] = M.redact(v, depth - 1, seen)
    else
      out[k] = v
    end
  end
  seen[t] = nil
  return out
end

return M
