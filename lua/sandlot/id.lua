-- sandlot.id: random identifiers (sandbox ids, exec tags, multipart boundaries) from the
-- kernel (getrandom(2), or /dev/urandom without the core), never math.random (whose seed
-- another script may have set). A kit module: providers, wire modules and the fakes all take
-- their ids from here.
local M = {}

local function bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(n)
  f:close()
  assert(b and #b == n, "short read from /dev/urandom")
  return b
end

-- getrandom(2) through the core when it is there (the peer and sandlot.so have it too)
local ok, sys = pcall(require, "sandlot.core.sys")
local random = ok and type(sys) == "table" and sys.random or nil

local function hexbyte(c) return ("%02x"):format(c:byte()) end

---Returns n random bytes as 2n lowercase hex digits.
---@param n integer bytes, > 0
---@return string
function M.hex(n)
  if math.type(n) ~= "integer" or n < 1 then error("id.hex: n must be an integer > 0", 2) end
  local b = (random and n <= 256) and random(n) or bytes(n)
  return (b:gsub(".", hexbyte))
end

return M
