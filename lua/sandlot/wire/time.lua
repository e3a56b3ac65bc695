-- sandlot.wire.time: RFC 3339 timestamps (what JSON APIs and protobuf's JSON mapping send) to
-- seconds since the epoch and back, in UTC, without the C library's local time zone.
local M = {}

-- Days from 1970-01-01 to y-m-d (proleptic Gregorian calendar).
local function days(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
end

---Parses "2024-01-02T03:04:05.678Z" or "...+02:00" (fractions dropped); nil when it is not one.
---@param s any
---@return integer|nil seconds since the epoch
function M.parse(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, se, rest =
    s:match("^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local t = days(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600
            + tonumber(mi) * 60 + tonumber(se)
  rest = rest:gsub("^%.%d+", "")
  if rest == "Z" or rest == "z" then return t end
  local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then return nil end
  local off = tonumber(oh) * 3600 + tonumber(om) * 60
  return sign == "+" and t - off or t + off
end

---Formats seconds since the epoch as "2024-01-02T03:04:05Z".
---@param t number
---@return string
function M.format(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

return M
