-- sandlot._id: random identifiers (sandbox ids, exec tags, multipart boundaries) from
-- /dev/urandom, never math.random (whose seed another script may have set).
local M = {}

---Returns n random bytes as 2n lowercase hex digits.
---@param n integer
---@return string
function M.hex(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(n)
  f:close()
  assert(b and #b == n, "short read from /dev/urandom")
  return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

return M
