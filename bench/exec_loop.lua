-- bench/exec_loop.lua N LIMIT cmd...: sandlot's side of the exec benchmarks. Runs cmd N times
-- through sandlot.proc.run (sequentially when LIMIT is 1, else sandlot.map with that limit)
-- and prints the elapsed seconds, then the peak RSS in KiB.
local sandlot = require("sandlot")
local timer = require("sandlot.core.timer")
local n, limit = tonumber(arg[1]), tonumber(arg[2])
local cmd = table.move(arg, 3, #arg, 1, {})
local t0 = timer.now()
if limit == 1 then
  for _ = 1, n do
    local r = sandlot.proc.run(cmd)
    if not r or r.stdout == "" then error("exec failed") end
  end
else
  local items = {}
  for i = 1, n do items[i] = i end
  local _, errs = sandlot.map(items, function()
    local r = assert(sandlot.proc.run(cmd))
    return r.exit_code
  end, { limit = limit })
  if errs then error("some execs failed") end
end
local secs = (timer.now() - t0) / 1e9
local hwm
for line in io.lines("/proc/self/status") do hwm = hwm or line:match("^VmHWM:%s+(%d+)") end
print(("%.6f %s"):format(secs, hwm))
