-- bench/oneshot.lua ISOLATION: the one-shot script of figure 1, as a user would write it: one
-- local sandbox created, one command run in it, the sandbox destroyed, exit. Prints its peak
-- RSS (VmHWM, KiB); bench/run.lua times the whole process.
local sandlot = require("sandlot")

local sb <close> = assert(sandlot.create("local", { isolation = arg[1] }))
local r = assert(sb:exec({ "echo", "hello" }))
assert(r.stdout == "hello\n", r.stderr)
assert(sb:destroy())
for line in io.lines("/proc/self/status") do
  local kib = line:match("^VmHWM:%s+(%d+)")
  if kib then print(kib) end
end
