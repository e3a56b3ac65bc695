-- sandlot.id: random identifiers (sandbox ids, exec tags, multipart boundaries) from
-- /dev/urandom, never math.random (whose seed another script may have set). A kit module:
-- providers, wire modules and the fakes all take their ids from here.
local M = {}

---Returns n random bytes as 2n lowercase hex digits.
---@param n integer bytes, > 0
---@return string
function M.hex(n)
  if math.type(n) ~= "integer" or n < 1 then error("id.hex: n must be an integer > 0", 2) end
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(n)
  f:close()
  assert(b and #b == n, "short read from /dev/urandom")
  return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

return M
