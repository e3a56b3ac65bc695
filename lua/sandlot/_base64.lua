-- sandlot._base64: standard base64 (RFC 4648, with padding) for moving files through a
-- provider's exec when it has no file operations of its own. The work is in C
-- (sandlot.core.sys); a Lua loop managed only ~10 MB/s.
local sys = require("sandlot.core.sys")

local M = {}

---Encodes a string (no line breaks).
---@param s string
---@return string
M.encode = sys.b64encode

---Decodes a string, ignoring whitespace. Returns nil on malformed input.
---@param s string
---@return string|nil
M.decode = sys.b64decode

return M
