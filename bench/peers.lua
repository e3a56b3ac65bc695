-- bench/peers.lua PROVIDER FAKE MODE [N [C]]: sandlot's side of figure 7, the create -> exec
-- `echo hello` -> destroy cycle through providers/PROVIDER.lua (e2b, daytona, vercel, sprites)
-- against the fake bench/peer_fake.lua serves (FAKE: its JSON line). bench/sdk/*.mjs are the
-- SDKs' side, with the same modes and output. Set-up is untimed; CPU is this process's own
-- (user + system, every thread, as getrusage counts), over the timed part only.
--   seq N      N cycles one after another       prints: seconds cpu_seconds
--   conc N C   N cycles, C in flight            prints: seconds cpu_seconds
--   handles N  N sandboxes created and kept     prints: peak_rss_kib rss_kib (then destroyed)
--   oneshot    one cycle, as a one-shot script would (bench/run.lua times the process)
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local timer = require("sandlot.core.timer")

local provider, fake, mode = arg[1], json.decode(arg[2] or "null"), arg[3]
if not (provider and type(fake) == "table" and mode) then
  error("usage: peers.lua e2b|daytona|vercel|sprites FAKE_JSON seq|conc|handles|oneshot [N [C]]",
        0)
end
local CONFIGS = {
  e2b = { "e2b", api_url = fake.url, api_key = fake.token, sandbox_url = fake.sandbox_url },
  daytona = { "daytona", api_url = fake.url .. "/api", api_key = fake.token },
  vercel = { "vercel", api_url = fake.url, token = fake.token, team_id = fake.team,
             project_id = fake.project },
  sprites = { "sprites", api_url = fake.url, token = fake.token },
}
local config = CONFIGS[provider] or error("unknown provider " .. provider, 0)
sandlot.config.set({ providers = { bench = config } })

local function cycle()
  local sb = assert(sandlot.create("bench", {}))
  local r = assert(sb:exec({ "echo", "hello" }))
  if r.exit_code ~= 0 or r.stdout ~= "hello\n" then
    error(("exec: exit %s, stdout %q, stderr %q"):format(tostring(r.exit_code), r.stdout,
                                                         r.stderr))
  end
  assert(sb:destroy())
end

if mode == "oneshot" then
  cycle()
  return
end

local function now() return timer.now() / 1e9 end

-- user + system seconds of this process, every thread: os.clock is C's clock(), glibc's
-- CLOCK_PROCESS_CPUTIME_ID, to the microsecond as Node's process.cpuUsage() (getrusage). The
-- clock ticks of /proc/self/stat (10 ms) quantized 50 cycles' CPU to 0.2 ms steps.
local cpu = os.clock

local function status_kib(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local n = tonumber(arg[4] or "")
if mode == "seq" or mode == "conc" then
  local c = mode == "conc" and assert(tonumber(arg[5] or ""), "conc N C") or 1
  local list = {}
  for i = 1, n do list[i] = i end
  local t0, c0 = now(), cpu()
  if c == 1 then
    for _ = 1, n do cycle() end
  else
    local _, errs = sandlot.map(list, cycle, { limit = c })
    if errs then error("a cycle failed: " .. tostring(select(2, next(errs))), 0) end
  end
  print(now() - t0, cpu() - c0)
elseif mode == "handles" then
  local sbs = {}
  for i = 1, n do sbs[i] = assert(sandlot.create("bench", {})) end
  collectgarbage()
  collectgarbage()
  -- the kernel updates VmHWM lazily (per-thread RSS counters): it can trail VmRSS a little
  local rss = status_kib("VmRSS")
  print(math.max(status_kib("VmHWM"), rss), rss)
  for _, sb in ipairs(sbs) do assert(sb:destroy()) end
else
  error("unknown mode " .. tostring(mode), 0)
end
