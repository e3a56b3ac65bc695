-- bench/cases.lua CASE ARGS...: sandlot's side of the bench figures, one process per
-- measurement (bench/run.lua runs it). Set-up (creating the sandbox, connecting) is untimed;
-- each case prints the elapsed seconds of its timed part first (or its figure), then extra
-- fields run.lua records. Cases and their arguments are listed in `cases` below.
local sandlot = require("sandlot")
local timer = require("sandlot.core.timer")
local json = require("sandlot.wire.json")   -- integers stay integers (a port is one)
local sys = require("sandlot.core.sys")

local function now() return timer.now() / 1e9 end

local function status_kib(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function check_hello(r, what)
  if not r then error(what .. ": " .. tostring(select(2, r))) end
  if r.exit_code ~= 0 or r.stdout ~= "hello\n" then
    error(("%s: exit %s, stdout %q, stderr %q"):format(what, tostring(r.exit_code),
                                                      tostring(r.stdout), tostring(r.stderr)))
  end
end

local function exec_n(sb, n)
  local t0 = now()
  for _ = 1, n do
    local r, err = sb:exec({ "echo", "hello" })
    if not r then error("exec: " .. tostring(err)) end
    check_hello(r, "exec")
  end
  return now() - t0
end

local cases = {}

-- local_exec ISOLATION N: N sequential sb:exec{"echo","hello"} in one local sandbox.
function cases.local_exec(iso, n)
  local sb <close> = assert(sandlot.create("local", { isolation = iso }))
  return exec_n(sb, tonumber(n))
end

-- handles N INFLIGHT: creates N local sandboxes (isolation "none") and keeps them, then runs
-- `sleep 1` in INFLIGHT of them at once. Prints: seconds, VmHWM KiB, Lua heap and RSS growth
-- per live handle (KiB), measured after full collections.
function cases.handles(n, inflight)
  n, inflight = tonumber(n), tonumber(inflight)
  collectgarbage(); collectgarbage()
  local lua0, rss0 = collectgarbage("count"), status_kib("VmRSS")
  local t0 = now()
  local sbs = {}
  for i = 1, n do sbs[i] = assert(sandlot.create("local", { isolation = "none" })) end
  collectgarbage(); collectgarbage()
  local lua1, rss1 = collectgarbage("count"), status_kib("VmRSS")
  local some = table.move(sbs, 1, inflight, 1, {})
  local _, errs = sandlot.map(some, function(sb)
    return assert(sb:exec({ "sleep", "1" })).exit_code
  end, { limit = inflight })
  if errs then error("in-flight execs failed: " .. tostring(select(2, next(errs)))) end
  local secs = now() - t0
  local hwm = status_kib("VmHWM")
  for _, sb in ipairs(sbs) do assert(sb:destroy()) end
  return secs, hwm, (lua1 - lua0) / n, (rss1 - rss0) / n
end

-- The soft limit on open files, raised to the hard limit when it is lower (1,000 execs in
-- flight hold a few thousand pipe ends). Returns the soft and hard limits now in force.
local function raise_nofile()
  local function limits()
    local r = assert(sandlot.proc.run({ "prlimit", "--noheadings", "--raw", "--nofile",
                                        "--output=SOFT,HARD", "--pid",
                                        tostring(sys.getpid()) }))
    local soft, hard = r.stdout:match("(%S+)%s+(%S+)")
    return tonumber(soft) or math.huge, tonumber(hard) or math.huge
  end
  local soft, hard = limits()
  if soft < hard then
    local hs = hard == math.huge and "unlimited" or tostring(hard)
    assert(sandlot.proc.run({ "prlimit", "--nofile=" .. hs .. ":" .. hs, "--pid",
                              tostring(sys.getpid()) }))
    soft, hard = limits()
  end
  return soft, hard
end

-- scale N INFLIGHT: creates N local sandboxes (isolation "none") and keeps them all live, then
-- runs `sleep 1` in INFLIGHT of them at once (sandlot.map, limit INFLIGHT; spread over the N),
-- then destroys all N. Prints: create seconds, destroy seconds, exec batch seconds, the most
-- execs seen in flight at once, Lua heap growth per live handle (KiB, after full collections),
-- RSS with the N handles live (KiB), peak RSS (VmHWM, KiB), the open-files soft limit.
function cases.scale(n, inflight)
  n, inflight = tonumber(n), tonumber(inflight)
  local nofile = raise_nofile()
  collectgarbage(); collectgarbage()
  local lua0 = collectgarbage("count")
  local sbs = {}
  local t0 = now()
  for i = 1, n do sbs[i] = assert(sandlot.create("local", { isolation = "none" })) end
  local t_create = now() - t0
  collectgarbage(); collectgarbage()
  local lua1, rss1 = collectgarbage("count"), status_kib("VmRSS")
  local some, step = {}, n // inflight
  for i = 1, inflight do some[i] = sbs[(i - 1) * step + 1] end
  local live, most = 0, 0
  t0 = now()
  local _, errs = sandlot.map(some, function(sb)
    live = live + 1
    if live > most then most = live end
    local r, err = sb:exec({ "sleep", "1" })
    live = live - 1
    if not r then error(err) end
    return r.exit_code
  end, { limit = inflight })
  local t_exec = now() - t0
  if errs then error("in-flight execs failed: " .. tostring(select(2, next(errs)))) end
  local hwm = status_kib("VmHWM")
  t0 = now()
  for i = 1, n do assert(sbs[i]:destroy()) end
  local t_destroy = now() - t0
  return t_create, t_destroy, t_exec, most, (lua1 - lua0) / n, rss1, hwm, nofile
end

-- http URL N TASKS: N GETs through sandlot.http, sequential or from TASKS tasks. Prints req/s.
function cases.http(url, n, tasks)
  n, tasks = tonumber(n), tonumber(tasks)
  local function get()
    local res, err = sandlot.http.request({ url = url })
    if not res or res.status ~= 200 then error("GET " .. url .. ": " .. tostring(err)) end
  end
  get()                                      -- the connection: made once, untimed on both sides
  local t0 = now()
  if tasks == 1 then
    for _ = 1, n do get() end
  else
    local fns = {}
    local per = n // tasks
    for i = 1, tasks do fns[i] = function() for _ = 1, per do get() end end end
    local _, errs = sandlot.all(fns, { limit = tasks })
    if errs then error(tostring(select(2, next(errs)))) end
    n = per * tasks
  end
  return n / (now() - t0)
end

local function docker_provider(host, image)
  sandlot.config.set({ providers = { bench = { "docker", host = host, image = image,
                                               pull = false } } })
end

-- docker_exec HOST IMAGE N: one container, N sequential sb:exec{"echo","hello"}.
function cases.docker_exec(host, image, n)
  docker_provider(host, image)
  local sb <close> = assert(sandlot.create("bench", {}))
  return exec_n(sb, tonumber(n))
end

-- docker_agent HOST IMAGE N: one container of the docker provider with exec_agent = true; the
-- first sb:exec{"echo","hello"} (it starts the agent: ships sandlot-peer and the modules,
-- spawns it over one exec attach stream) timed alone, then N sequential sb:exec{"echo",
-- "hello"} through the agent. Prints the N execs' seconds, then the first exec's.
function cases.docker_agent(host, image, n)
  sandlot.config.set({ providers = { bench = { "docker", host = host, image = image,
                                               pull = false, exec_agent = true } } })
  local sb <close> = assert(sandlot.create("bench", {}))
  local t0 = now()
  check_hello(assert(sb:exec({ "echo", "hello" })), "first exec")
  local t_start = now() - t0
  return exec_n(sb, tonumber(n)), t_start
end

-- docker_life HOST IMAGE N: N times create (+ start), exec, destroy (remove).
function cases.docker_life(host, image, n)
  docker_provider(host, image)
  -- API version negotiation happens once per process: do it untimed (a status of nothing)
  local ghost = sandlot.from_map({ version = 1, provider = "bench", id = "none",
                                   handle = { id = "none", container = ("0"):rep(64) } })
  assert(ghost:status())
  local t0 = now()
  for _ = 1, tonumber(n) do
    local sb <close> = assert(sandlot.create("bench", {}))
    check_hello(assert(sb:exec({ "echo", "hello" })), "exec")
    assert(sb:destroy())
  end
  return now() - t0
end

local function ssh_provider(o)
  sandlot.config.set({ providers = { bench = { "ssh", host = o.host, port = o.port,
    user = o.user, key_file = o.key_file, known_hosts = o.known_hosts, agent = false,
    base_dir = o.base_dir } } })
end

-- ssh_exec JSON N: N sequential sb:exec{"echo","hello"} in one ssh-provider sandbox. Prints
-- seconds and how many SSH connections were opened (must be 1: never one per exec).
function cases.ssh_exec(o_json, n)
  local o = json.decode(o_json)
  ssh_provider(o)
  local connects = 0
  local connect = sandlot.ssh.connect
  sandlot.ssh.connect = function(...) connects = connects + 1; return connect(...) end
  local sb <close> = assert(sandlot.create("bench", {}))
  return exec_n(sb, tonumber(n)), connects
end

-- ssh_concurrent JSON SANDBOXES EXECS INFLIGHT: SANDBOXES ssh-provider sandboxes on one host
-- (created untimed), then SANDBOXES x EXECS sb:exec{"echo","hello"} through sandlot.map with
-- INFLIGHT at once, round-robin over the sandboxes. Prints seconds and SSH connections opened.
function cases.ssh_concurrent(o_json, nsb, nexec, inflight)
  nsb, nexec, inflight = tonumber(nsb), tonumber(nexec), tonumber(inflight)
  local o = json.decode(o_json)
  ssh_provider(o)
  local connects = 0
  local connect = sandlot.ssh.connect
  sandlot.ssh.connect = function(...) connects = connects + 1; return connect(...) end
  local sbs = {}
  for i = 1, nsb do sbs[i] = assert(sandlot.create("bench", {})) end
  local items = {}
  for i = 1, nsb * nexec do items[i] = sbs[(i - 1) % nsb + 1] end
  local t0 = now()
  local _, errs = sandlot.map(items, function(sb)
    local r, err = sb:exec({ "echo", "hello" })
    if not r then error(err) end
    check_hello(r, "exec")
    return true
  end, { limit = inflight })
  local secs = now() - t0
  if errs then error("execs failed: " .. tostring(select(2, next(errs)))) end
  for _, sb in ipairs(sbs) do assert(sb:destroy()) end
  return secs, connects
end

local function ssh_client(o_json)
  local o = json.decode(o_json)
  return assert(sandlot.ssh.connect({ host = o.host, port = o.port, user = o.user,
                                      key_file = o.key_file, known_hosts = o.known_hosts,
                                      agent = false }))
end

-- ssh_client_exec JSON N: N sequential client:exec{"echo","hello"} on one sandlot.ssh client.
function cases.ssh_client_exec(o_json, n)
  local c <close> = ssh_client(o_json)
  local t0 = now()
  for _ = 1, tonumber(n) do check_hello(c:exec({ "echo", "hello" }), "exec") end
  return now() - t0
end

-- sftp JSON up|down LOCAL REMOTE: one streamed SFTP transfer on a connected client.
function cases.sftp(o_json, dir, lpath, rpath)
  local c <close> = ssh_client(o_json)
  local t0 = now()
  local n, err
  if dir == "up" then n, err = c:put(lpath, rpath) else n, err = c:get(rpath, lpath) end
  if not n then error("sftp " .. dir .. ": " .. tostring(err)) end
  return now() - t0, n
end

-- plugins N DIR: figure 11. A no-op after_exec plugin in DIR: p50 of N hook dispatches
-- (plugins.after_exec with a small result, each timed alone, microseconds), the bytes of the
-- plugin's state after a full collection, and the median of 20 reloads (milliseconds).
function cases.plugins(n, dir)
  n = tonumber(n)
  local plugins = require("sandlot.plugins")
  local f = assert(io.open(dir .. "/noop.lua", "w"))
  f:write('return { name = "noop", version = "1", after_exec = function(r, sb) end }')
  f:close()
  plugins.state_dir = dir .. "/state"
  require("sandlot.config").set({ plugins = { path = dir } })
  plugins.load_all()
  local sb = { id = "bench", provider = "local" }
  local r = { exit_code = 0, stdout = "hello\n", stderr = "", timed_out = false,
              truncated = false, duration = 1000 }
  local xs = {}
  for i = 1, n do
    local t0 = timer.now()
    plugins.after_exec(sb, r)
    xs[i] = (timer.now() - t0) / 1e3
  end
  table.sort(xs)
  local rec = plugins._rec("noop")
  assert(rec and rec.faults == 0 and rec.st:stats().calls >= n, "the hook did not run")
  collectgarbage()
  local bytes = rec.st:stats().memory
  local rl = {}
  for i = 1, 20 do
    local t0 = timer.now()
    assert(plugins.reload("noop"))
    rl[i] = (timer.now() - t0) / 1e6
  end
  table.sort(rl)
  return xs[(n + 1) // 2], bytes, rl[10]
end

-- Replication (figure 10) ---------------------------------------------------------------------

local function replicate(sb)
  local peer, err = sandlot.replicate(sb, { script_dir = false, on_log = function() end })
  if not peer then error("replicate: " .. tostring(err)) end
  return peer
end

-- Seconds to a replica that a new host process would start: everything is cached in the
-- sandbox, but this process has not shipped there (one probe exec, then the spawn).
local function probed(sb)
  sb._replica_memo = nil
  local t0 = now()
  local peer = replicate(sb)
  local t = now() - t0
  assert(peer.shipped.cache_hit and peer.shipped.probed == nil, "expected a probed cache hit")
  peer:close()
  return t
end

-- replicate_local ISOLATION cold|warm: seconds to a connected replica in a local sandbox
-- (cold: nothing cached in the sandbox; warm: this process started one there before, so it
-- spawns at once). Prints seconds, bytes shipped and, for warm, the probed warm start.
function cases.replicate_local(iso, warmth)
  local sb <close> = assert(sandlot.create("local", { isolation = iso }))
  if warmth == "warm" then replicate(sb):close() end
  local t0 = now()
  local peer <close> = replicate(sb)
  local t = now() - t0
  if warmth == "warm" then return t, peer.shipped.bytes, probed(sb) end
  return t, peer.shipped.bytes
end

-- replicate_docker HOST IMAGE: a warm replicate in a busybox container, and one plain
-- sb:exec round trip in the same container. Prints both in seconds, the bytes shipped and the
-- probed warm start (as a new host process would see it).
function cases.replicate_docker(host, image)
  docker_provider(host, image)
  local sb <close> = assert(sandlot.create("bench", {}))
  replicate(sb):close()
  check_hello(assert(sb:exec({ "echo", "hello" })), "exec")       -- warm the exec path too
  local t0 = now()
  local peer <close> = replicate(sb)
  local t1 = now()
  check_hello(assert(sb:exec({ "echo", "hello" })), "exec")
  local t2 = now()
  return t1 - t0, t2 - t1, peer.shipped.bytes, probed(sb)
end

-- replicate_calls ISOLATION N: N sequential peer:call round trips (string.len in the
-- replica), and N / 10 plain sb:exec{"echo","hello"} in the same sandbox. Prints the calls'
-- p50, their p90, and the mean exec, in seconds.
function cases.replicate_calls(iso, n)
  n = tonumber(n)
  local sb <close> = assert(sandlot.create("local", { isolation = iso }))
  local peer <close> = replicate(sb)
  for _ = 1, 100 do assert(peer:call("string.len", "hello")) end   -- warm
  local xs = {}
  for i = 1, n do
    local t0 = now()
    local v = peer:call("string.len", "hello")
    xs[i] = now() - t0
    if v ~= 5 then error("call returned " .. tostring(v)) end
  end
  table.sort(xs)
  local ne = math.max(1, n // 10)
  return xs[(n + 1) // 2], xs[math.max(1, (n * 9) // 10)], exec_n(sb, ne) / ne
end

-- replicate_pipelined ISOLATION N TASKS: N small calls from TASKS tasks at once; and N / 50
-- plain sb:exec from as many tasks. Prints calls per second and execs per second.
function cases.replicate_pipelined(iso, n, tasks)
  n, tasks = tonumber(n), tonumber(tasks)
  local sb <close> = assert(sandlot.create("local", { isolation = iso }))
  local peer <close> = replicate(sb)
  local function spread(total, fn)
    local per = total // tasks
    local fns = {}
    for i = 1, tasks do fns[i] = function() for _ = 1, per do fn() end end end
    local t0 = now()
    local _, errs = sandlot.all(fns, { limit = tasks })
    if errs then error(tostring(select(2, next(errs)))) end
    return per * tasks / (now() - t0)
  end
  local calls = spread(n, function()
    if peer:call("string.len", "hello") ~= 5 then error("bad call result") end
  end)
  local execs = spread(math.max(tasks, n // 50), function()
    check_hello(assert(sb:exec({ "echo", "hello" })), "exec")
  end)
  return calls, execs
end

-- ledger_stall TASKS CYCLES on|off: TASKS tasks each run CYCLES times: the three journal
-- writes of a create and destroy (record `creating`, set `active`, set `destroyed`; skipped when
-- off), then a 1 ms sleep, while a ticker task sleeps 1 ms at a time and records how late each
-- wake-up is: the loop's stalls. Prints the 99th percentile and the largest lateness (seconds),
-- the wall time and the number of journal writes.
function cases.ledger_stall(tasks, cycles, on)
  tasks, cycles, on = tonumber(tasks), tonumber(cycles), on == "on"
  local l = on and assert(require("sandlot.ledger").open())
  local late, running = {}, true
  local ticker = sandlot.spawn(function()
    while running do
      local t0 = now()
      sandlot.sleep(0.001)
      late[#late + 1] = math.max(0, now() - t0 - 0.001)
    end
  end)
  local fns = {}
  for i = 1, tasks do
    fns[i] = function()
      for _ = 1, cycles do
        if on then
          local id = assert(l:record({ provider = "bench", module = "local", opts = {} }))
          assert(l:set_state(id, "active", { external_id = "x", handle = { id = "x" } }))
          assert(l:set_state(id, "destroyed"))
        end
        sandlot.sleep(0.001)
      end
    end
  end
  local t0 = now()
  sandlot.all(fns, { limit = tasks })
  local wall = now() - t0
  running = false
  ticker:join()
  table.sort(late)
  return late[math.max(1, math.ceil(#late * 0.99))], late[#late], wall,
         on and tasks * cycles * 3 or 0
end

-- ledger_create N: N sequential local create+destroy (isolation "none"); seconds. Run with the
-- ledger on and off (SANDLOT_LEDGER=off) for the journal's cost per create.
function cases.ledger_create(n)
  local t0 = now()
  for _ = 1, tonumber(n) do
    local sb = assert(sandlot.create("local", { isolation = "none" }))
    assert(sb:destroy())
  end
  return now() - t0
end

local name = arg[1]
local fn = cases[name] or error("unknown case " .. tostring(name))
local out = table.pack(fn(table.unpack(arg, 2)))
for i = 1, out.n do out[i] = type(out[i]) == "number" and ("%.6f"):format(out[i])
                             or tostring(out[i]) end
print(table.concat(out, " ", 1, out.n))
