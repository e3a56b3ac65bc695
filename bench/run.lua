-- bench/run.lua: `make bench`. Every figure is a ratio against a floor measured in the same
-- run, over several rounds (median and spread). Prints one table and writes the same figures
-- to bench/results/<date>.json. It reports; it never fails the build. See bench/README.md.
local sandlot = require("sandlot")
local cjson = require("cjson")

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "5")
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench"
local root = here .. "/.."
local bin = os.getenv("SANDLOT_BIN") or (root .. "/build/sandlot")
local work = here .. "/.work"

local function sh(cmd, opts)
  local r = assert(sandlot.proc.run(cmd, opts))
  if r.exit_code ~= 0 then
    error(("%s failed (%d): %s"):format(table.concat(type(cmd) == "table" and cmd or { cmd }, " "),
                                        r.exit_code, r.stderr))
  end
  return r
end

local function median(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function spread(xs)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
  return lo, hi
end

sh({ "mkdir", "-p", work, here .. "/results" })
sh({ "cc", "-O2", "-pthread", "-o", work .. "/floor_spawn", here .. "/floor_spawn.c" })

local results = {}

-- One figure: `ours` and `floor` return a number (seconds, or any "lower is better" cost);
-- the ratio ours/floor is taken per round, then its median and spread reported.
local function figure(name, target, ours, floor, note)
  local ratios, o, f = {}, {}, {}
  for round = 1, ROUNDS do
    local a, b
    if round % 2 == 1 then a = ours(); b = floor() else b = floor(); a = ours() end
    o[#o + 1], f[#f + 1], ratios[#ratios + 1] = a, b, a / b
  end
  local med = median(ratios)
  local lo, hi = spread(ratios)
  local fig = { name = name, ratio = med, min = lo, max = hi, target = target,
                ours = median(o), floor = median(f), note = note,
                met = (target.op == "<=" and med <= target.value)
                      or (target.op == ">=" and med >= target.value) }
  results[#results + 1] = fig
  io.stderr:write(("  %-52s %6.2fx\n"):format(name, med))
  return fig
end

local function timed(argv)
  return function() return sh(argv).duration end
end

local function inner(argv)                 -- the program prints its own elapsed seconds first
  return function() return tonumber(sh(argv).stdout:match("^(%S+)")) end
end

local function repeat_launch(argv, n)
  return function()
    local t = 0
    for _ = 1, n do t = t + sh(argv).duration end
    return t / n
  end
end

io.stderr:write(("sandlot bench: %d rounds\n"):format(ROUNDS))

figure("1. host start: sandlot -e '' vs lua5.4 -e ''", { op = "<=", value = 2.0 },
  repeat_launch({ bin, "-e", "" }, 20), repeat_launch({ "lua5.4", "-e", "" }, 20),
  "whole-process wall time, 20 launches per round")

local N = 300
figure(("2. local exec round trip, proc.run x%d vs posix_spawn loop"):format(N),
  { op = "<=", value = 1.10 },
  inner({ bin, here .. "/exec_loop.lua", tostring(N), "1", "/bin/echo", "hello" }),
  inner({ work .. "/floor_spawn", tostring(N), "1", "/bin/echo", "hello" }),
  "sequential; output captured through a pipe; startup excluded on both sides")

figure("3. 1000 execs, map limit 64 vs 64-thread posix_spawn floor",
  { op = "<=", value = 1.3 },
  inner({ bin, here .. "/exec_loop.lua", "1000", "64", "/bin/echo", "hello" }),
  inner({ work .. "/floor_spawn", "1000", "64", "/bin/echo", "hello" }),
  "wall time for the whole batch")

-- table -----------------------------------------------------------------------------------
print()
print(("%-62s %8s %8s %8s  %-8s %s"):format("figure", "ratio", "min", "max", "target", "status"))
for _, f in ipairs(results) do
  print(("%-62s %7.2fx %7.2fx %7.2fx  %s%-6s %s"):format(f.name, f.ratio, f.min, f.max,
    f.target.op, f.target.value .. "x", f.met and "met" or "not yet"))
end
local date = os.date("!%Y-%m-%d")
local out = here .. "/results/" .. date .. ".json"
local fh = assert(io.open(out, "w"))
fh:write(cjson.encode({ date = os.date("!%Y-%m-%dT%H:%M:%SZ"), rounds = ROUNDS,
                        host = sh({ "uname", "-srm" }).stdout:gsub("%s+$", ""),
                        figures = results }), "\n")
fh:close()
print("\nwritten to " .. out)
