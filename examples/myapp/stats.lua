-- examples/myapp/stats.lua: a module of the replicate example. It lives only on the host:
-- sandlot.replicate ships it (the script's directory) and the replica requires it there.
local sandlot = require("sandlot")

local M = {}

---Mean and maximum of a list of numbers.
function M.summary(xs)
  if type(xs) ~= "table" or #xs == 0 then
    return nil, sandlot.errors.new("invalid_input", "summary needs a non-empty list")
  end
  local sum, max = 0, -math.huge
  for _, x in ipairs(xs) do
    sum = sum + x
    if x > max then max = x end
  end
  return sum / #xs, max
end

---Runs `n` short commands where the replica is (in the sandbox): one round trip for all.
function M.run_many(n)
  local ok = 0
  for i = 1, n do
    local r = assert(sandlot.proc.run({ "sh", "-c", "exit $(( " .. i .. " % 2 ))" }))
    if r.exit_code == 0 then ok = ok + 1 end
  end
  return ok
end

---A generator: the squares of 1..n, one value at a time (peer:stream).
function M.squares(n)
  local i = 0
  return function()
    i = i + 1
    if i <= n then return i * i end
  end
end

return M
