-- examples/fanout.lua: runs a command in 20 sandboxes at once and prints a summary table.
-- Each sandbox lives in its own task; sandlot.map keeps results in input order and collects
-- every error instead of stopping at the first.
local sandlot = require("sandlot")

local N = tonumber(arg and arg[1]) or 20
local now = require("sandlot.core.sys").now      -- monotonic nanoseconds

local items = {}
for i = 1, N do items[i] = i end

local t0 = now()
local rows, errs = sandlot.map(items, function(i)
  local started = now()
  local sb <close> = assert(sandlot.create({ labels = { job = "fanout", n = tostring(i) } }))
  local r = assert(sb:exec({ "sh", "-c", 'echo "$(( $1 * $1 ))"', "square", tostring(i) },
                           { timeout = 30 }))
  return { i = i, id = sb.id, exit_code = r.exit_code, out = r.stdout:gsub("%s+$", ""),
           ms = (now() - started) / 1e6 }
end, { limit = N })
local total = (now() - t0) / 1e6

print(("%3s  %-14s %4s  %-8s %8s"):format("#", "sandbox", "exit", "stdout", "ms"))
local ok = 0
for i = 1, N do
  local row = rows[i]
  if row then
    ok = ok + 1
    print(("%3d  %-14s %4d  %-8s %8.1f"):format(row.i, row.id, row.exit_code, row.out, row.ms))
  else
    print(("%3d  %-14s %4s  %s"):format(i, "-", "-", tostring(errs[i])))
  end
end
print(("%d of %d sandboxes succeeded in %.0f ms (wall clock)"):format(ok, N, total))
if ok ~= N then os.exit(1) end
