-- sandlot.wire.base64: standard base64 (RFC 4648, with padding) for file transfers over exec
-- and for JSON `bytes` fields (Connect). The work is in C (sandlot.core.sys).
local sys = require("sandlot.core.sys")
local errors = require("sandlot.errors")

local M = {}

---Encodes a string (no line breaks).
---@param s string
---@return string
M.encode = sys.b64encode

---Decodes a string, ignoring whitespace.
---@param s string
---@return string|nil data
---@return sandlot.Error? err bad_response: not base64
function M.decode(s)
  if type(s) ~= "string" then
    return nil, errors.new("bad_response", "base64: expected text, got " .. type(s))
  end
  local d = sys.b64decode(s)
  if d == nil then return nil, errors.new("bad_response", "base64: malformed data") end
  return d
end

return M
