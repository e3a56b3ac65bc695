-- bench/run.lua: `make bench`. Every figure is a ratio against a floor (or a peer) measured in
-- the same run, in alternating order, over several rounds (median and spread); the few that
-- the issue sets as absolute budgets (peak RSS, memory per handle) are medians over rounds too.
-- Prints one table and writes the same figures to bench/results/<date>.json. It reports; it
-- never fails the build: a figure whose daemon cannot start is printed as skipped with the
-- reason, and a section that breaks is printed as failed. See bench/README.md.
local sandlot = require("sandlot")
local cjson = require("cjson")

-- The figures, by number (bench/README.md): BENCH_FIGURES=4,6 runs only those.
local FIGURES = { "host start", "local exec", "concurrency and memory", "HTTP", "Docker", "SSH",
                  "cloud-SDK peers", "scale", "SSH concurrency", "replication", "ledger",
                  "plugins" }

local function usage(fmt, ...)
  io.stderr:write(("bench: " .. fmt .. "\n"):format(...),
                  "usage: make bench [BENCH_FIGURES=N,N...] [BENCH_ROUNDS=N]\n  figures:")
  for i, f in ipairs(FIGURES) do
    io.stderr:write((" %d %s%s"):format(i, f, i < #FIGURES and "," or "\n"))
  end
  os.exit(2)                                  -- a usage error, not a bench failure: no traceback
end

-- BENCH_FIGURES (or its older name BENCH_ONLY): a comma list of figure numbers -> set, or nil
local function selected_figures()
  local name = os.getenv("BENCH_FIGURES") and "BENCH_FIGURES" or "BENCH_ONLY"
  local v = os.getenv(name)
  if not v or v == "" then return nil end
  local set, list = {}, {}
  for item in (v .. ","):gmatch("([^,]*),") do
    local n = tonumber(item:match("^%s*(%d+)%s*$"))
    if not n then usage("%s=%s: %q is not a figure number", name, v, item) end
    if not FIGURES[n] then usage("%s=%s: there is no figure %d", name, v, n) end
    if not set[n] then list[#list + 1] = n end
    set[n] = true
  end
  table.sort(list)
  return set, list
end

local ROUNDS_ENV = tonumber(os.getenv("BENCH_ROUNDS") or "")
if os.getenv("BENCH_ROUNDS") and os.getenv("BENCH_ROUNDS") ~= ""
    and not (ROUNDS_ENV and ROUNDS_ENV >= 1 and math.type(ROUNDS_ENV) == "integer") then
  usage("BENCH_ROUNDS=%s: must be a whole number >= 1", os.getenv("BENCH_ROUNDS"))
end
local WANTED, WANTED_LIST = selected_figures()
local function absolute_path(p)
  return require("sandlot.core.sys").realpath(p) or p
end
-- absolute: some floors run with the sandbox's directory as their cwd
local here = absolute_path(debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench")
local root = here .. "/.."
local bin = absolute_path(os.getenv("SANDLOT_BIN") or (root .. "/build/sandlot"))
local work = here .. "/.work"
local cases = here .. "/cases.lua"

-- rounds for a figure: its default (heavy figures use fewer), or BENCH_ROUNDS for all
local function rounds(default) return ROUNDS_ENV or default end

local function sh(cmd, opts)
  local r = assert(sandlot.proc.run(cmd, opts))
  if r.exit_code ~= 0 then
    -- the case's name, not its JSON arguments: the table shows the first line of this
    local what = type(cmd) == "table" and table.concat(cmd, " ", 1, math.min(#cmd, 3)) or cmd
    error(("%s failed (%d): %s"):format(what:gsub("[^ ]*/", ""), r.exit_code,
                                        (r.stderr:gsub("%s+", " "))), 0)
  end
  return r
end

local function cat(...)                     -- concatenates argv lists
  local out = {}
  for _, l in ipairs({ ... }) do table.move(l, 1, #l, #out + 1, out) end
  return out
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
local tmp = sh({ "mktemp", "-d", "/tmp/sandlot-bench.XXXXXX" }).stdout:gsub("%s+$", "")
local state = tmp .. "/state"               -- XDG_STATE_HOME of every sandlot we start
local child_env = { XDG_STATE_HOME = state, SANDLOT_QUIET = "1" }

local CURL = sh({ "pkg-config", "--cflags", "--libs", "libcurl" }).stdout
local SSH2 = sh({ "pkg-config", "--cflags", "--libs", "libssh2" }).stdout
local function build(name, libs)
  local argv = { "cc", "-O2", "-pthread", "-o", work .. "/" .. name, here .. "/" .. name .. ".c" }
  for w in (libs or ""):gmatch("%S+") do argv[#argv + 1] = w end
  sh(argv)
  return work .. "/" .. name
end
local floor_spawn = build("floor_spawn")

-- Figures --------------------------------------------------------------------------------------

local results = {}

local function add(fig)
  fig.figure = tonumber(fig.name:match("^(%d+)%."))
  results[#results + 1] = fig
  local v = fig.skipped and ("skipped: " .. fig.skipped)
            or fig.unit == "x" and ("%.2fx"):format(fig.value)
            or ("%.1f %s"):format(fig.value, fig.unit)
  io.stderr:write(("  %-66s %s\n"):format(fig.name, v))
  return fig
end

local function met(target, v)
  if not target then return nil end
  return (target.op == "<=" and v <= target.value) or (target.op == ">=" and v >= target.value)
      or (target.op == "<" and v < target.value) or false
end

-- Runs each side once per round, forward in odd rounds and backward in even ones, so warm
-- caches favour no side. sides: {{key, fn}, ...}; fn returns a number. Returns key -> samples.
local function measure(n, sides)
  local s = {}
  for _, side in ipairs(sides) do s[side[1]] = {} end
  for round = 1, n do
    for i = 1, #sides do
      local side = sides[round % 2 == 1 and i or #sides + 1 - i]
      table.insert(s[side[1]], side[2]())
    end
  end
  return s
end

-- A ratio figure from paired samples: ratio ours/floor per round, then median and spread.
-- show(v) formats a side's median for the context columns (e.g. ms per exec).
local function ratio(name, target, ours, floor, show, note)
  local rs = {}
  for i = 1, #ours do rs[i] = ours[i] / floor[i] end
  local lo, hi = spread(rs)
  local m = median(rs)
  return add({ name = name, unit = "x", value = m, min = lo, max = hi, target = target,
               met = met(target, m), rounds = #rs, ours = median(ours), floor = median(floor),
               ours_shown = show and show(median(ours)),
               floor_shown = show and show(median(floor)),
               note = note })
end

-- An absolute figure (a budget the issue states as such): median and spread of the samples.
local function absolute(name, unit, target, xs, note)
  local lo, hi = spread(xs)
  local m = median(xs)
  return add({ name = name, unit = unit, value = m, min = lo, max = hi, target = target,
               met = met(target, m), rounds = #xs, note = note })
end

local function skipped(name, reason, target)
  return add({ name = name, skipped = reason, target = target })
end

local function le(v) return { op = "<=", value = v } end
local function ge(v) return { op = ">=", value = v } end

-- Runs figure n's section unless BENCH_FIGURES leaves it out; if it breaks, its figures still
-- missing are reported as failed. names: the figures' table names, in order.
local function section(n, names, fn)
  if WANTED and not WANTED[n] then return end
  local before = #results
  local ok, err = pcall(fn)
  if ok then return end
  local have = {}
  for i = before + 1, #results do have[results[i].name] = true end
  for _, name in ipairs(names) do
    if not have[name] then
      skipped(name, "failed: " .. tostring(err):gsub("%s+", " "):sub(1, 200))
    end
  end
end

-- What programs print --------------------------------------------------------------------------

local function run(argv, opts)
  local o = { env = child_env }
  for k, v in pairs(opts or {}) do o[k] = v end
  return sh(argv, o)
end

local function fields(argv, opts)          -- the numbers a program prints on its first line
  local out = {}
  for w in run(argv, opts).stdout:match("^[^\n]*"):gmatch("%S+") do
    out[#out + 1] = tonumber(w) or w
  end
  return out
end

local function inner(argv, opts)           -- a program that prints its own elapsed seconds
  return function() return fields(argv, opts)[1] end
end

local function wall(argv, n, opts)         -- whole-process wall time, mean of n launches
  return function()
    local t = 0
    for _ = 1, n do t = t + run(argv, opts).duration end
    return t / n
  end
end

local function ms_per(n) return function(s) return ("%.2f ms"):format(s * 1e3 / n) end end
local function ms(s) return ("%.1f ms"):format(s * 1e3) end
local function per_s(v) return ("%.0f/s"):format(v) end

local function sandlot_case(...)
  return cat({ bin, cases }, { ... })
end

io.stderr:write(("sandlot bench: %s rounds, figures %s\n"):format(
  ROUNDS_ENV or "default (5; 3 for heavy)",
  WANTED_LIST and table.concat(WANTED_LIST, ",") or "all"))

-- 1. Host start --------------------------------------------------------------------------------

local F1 = { "1. host start: sandlot -e '' vs lua5.4 -e ''",
             "1. one-shot create+exec+destroy (local, none) vs lua5.4 -e ''",
             "1. one-shot create+exec+destroy (local, namespaces) vs lua5.4 -e ''",
             "1. one-shot peak RSS (local, namespaces), absolute" }
section(1, F1, function()
  local s = measure(rounds(5), {
    { "ours", wall({ bin, "-e", "" }, 20) },
    { "floor", wall({ "lua5.4", "-e", "" }, 20) },
  })
  ratio(F1[1], le(2.0), s.ours, s.floor, ms, "whole-process wall time, 20 launches per round")
  local rss = {}
  local function oneshot(iso)
    return function()
      local t = 0
      for _ = 1, 5 do
        local r = run({ bin, here .. "/oneshot.lua", iso })
        t = t + r.duration
        if iso == "namespaces" then rss[#rss + 1] = tonumber(r.stdout:match("%d+")) / 1024 end
      end
      return t / 5
    end
  end
  s = measure(rounds(5), {
    { "none", oneshot("none") }, { "ns", oneshot("namespaces") },
    { "floor", wall({ "lua5.4", "-e", "" }, 5) },
  })
  ratio(F1[2], nil, s.none, s.floor, ms,
        "report only: bench/oneshot.lua, whole-process wall time, 5 launches per round")
  ratio(F1[3], nil, s.ns, s.floor, ms,
        "report only: as above with bubblewrap (includes its one-time probe)")
  absolute(F1[4], "MiB", nil, rss, "report only: VmHWM of bench/oneshot.lua")
end)

-- 2. Local exec round trip ---------------------------------------------------------------------

-- The argv, env and cwd the local provider hands to sandlot.proc for sb:exec{"echo","hello"}:
-- the floor runs exactly that (same bwrap arguments, same environment).
local function provider_spawn(iso)
  sandlot.config.set({ providers = { ["bench-local"] = { "local", isolation = iso,
                                     state_dir = state .. "/sandlot/local" } } })
  local sb = assert(sandlot.create("bench-local", {}))
  local proc = require("sandlot.proc")
  local real, seen = proc.run, nil
  proc.run = function(argv, opts)
    seen = seen or { argv = table.move(argv, 1, #argv, 1, {}), env = opts.env, cwd = opts.cwd }
    return real(argv, opts)
  end
  local ok, r = pcall(sb.exec, sb, { "echo", "hello" })
  proc.run = real
  assert(ok, r)
  assert(r and r.stdout == "hello\n", "sb:exec failed in the bench set-up")
  return seen, sb
end

local N2, N2NS = 300, 100
local F2 = { ("2. proc.run echo x%d vs posix_spawn loop"):format(N2),
             ("2. local sb:exec echo x%d, isolation none vs posix_spawn"):format(N2),
             ("2. local sb:exec echo x%d, namespaces vs bwrap loop"):format(N2NS) }
section(2, F2, function()
  local s = measure(rounds(5), {
    { "ours", inner({ bin, here .. "/exec_loop.lua", tostring(N2), "1", "/bin/echo", "hello" }) },
    { "floor", inner({ floor_spawn, tostring(N2), "1", "/bin/echo", "hello" }) },
  })
  ratio(F2[1], le(1.10), s.ours, s.floor, ms_per(N2),
        "sequential; output captured through a pipe; startup excluded on both sides")

  local spawn, sb = provider_spawn("none")
  s = measure(rounds(5), {
    { "ours", inner(sandlot_case("local_exec", "none", tostring(N2))) },
    { "floor", inner(cat({ floor_spawn, tostring(N2), "1" }, spawn.argv),
                     { env = spawn.env, clear_env = true, cwd = spawn.cwd }) },
  })
  sb:destroy()
  ratio(F2[2], le(1.10), s.ours, s.floor, ms_per(N2),
        "floor: posix_spawnp of echo with the provider's environment and cwd")

  local nspawn, nsb = provider_spawn("namespaces")
  if nspawn.argv[1] ~= "bwrap" then
    skipped(F2[3], "bubblewrap is not usable here")
  else
    s = measure(rounds(5), {
      { "ours", inner(sandlot_case("local_exec", "namespaces", tostring(N2NS))) },
      { "floor", inner(cat({ floor_spawn, tostring(N2NS), "1" }, nspawn.argv),
                       { env = nspawn.env, clear_env = true }) },
    })
    ratio(F2[3], le(1.10), s.ours, s.floor, ms_per(N2NS),
          "floor: the very bwrap argv the provider builds, spawned in a loop")
  end
  nsb:destroy()
end)

-- 3. Concurrency and memory --------------------------------------------------------------------

local F3 = { "3. 1000 execs, map limit 64 vs 64-thread posix_spawn floor",
             "3. peak RSS: 1000 live sandbox handles + 64 in-flight execs",
             "3. Lua heap per live local sandbox handle" }
section(3, F3, function()
  local s = measure(rounds(5), {
    { "ours", inner({ bin, here .. "/exec_loop.lua", "1000", "64", "/bin/echo", "hello" }) },
    { "floor", inner({ floor_spawn, "1000", "64", "/bin/echo", "hello" }) },
  })
  ratio(F3[1], le(1.3), s.ours, s.floor, ms, "wall time for the whole batch")
  local hwm, per, rss = {}, {}, {}
  for _ = 1, rounds(5) do
    local f = fields(sandlot_case("handles", "1000", "64"))
    hwm[#hwm + 1], per[#per + 1], rss[#rss + 1] = f[2] / 1024, f[3], f[4]
  end
  absolute(F3[2], "MiB", { op = "<", value = 64 }, hwm,
           "VmHWM of the host: 1000 local sandboxes (isolation none) kept, `sleep 1` in 64")
  local fig = absolute(F3[3], "KiB", le(4), per,
                       "collectgarbage('count') growth / 1000 after full collections")
  fig.rss_kib_per_handle = median(rss)
end)

-- 4. HTTP --------------------------------------------------------------------------------------

local NH = 4000
local F4 = { "4. HTTP req/s, sandlot.http 1 task vs libcurl keep-alive loop",
             "4. HTTP req/s, 64 tasks vs libcurl multi, 64 in flight" }
section(4, F4, function()
  local floor_http = build("floor_http", CURL)
  local hs = require("spec.support.http_server")
  local srv = hs.start()
  local url = srv.url .. "/hello"
  local ok, err = pcall(function()
    local function floor(p)
      return function() return fields({ floor_http, url, tostring(NH), tostring(p) })[2] end
    end
    local s = measure(rounds(5), {
      { "ours1", inner(sandlot_case("http", url, tostring(NH), "1")) },
      { "floor1", floor(1) },
      { "ours64", inner(sandlot_case("http", url, tostring(NH), "64")) },
      { "floor64", floor(64) },
    })
    ratio(F4[1], ge(0.9), s.ours1, s.floor1, per_s,
          ("%d GETs of /hello on spec/support/http_server.c; ratio of req/s"):format(NH))
    ratio(F4[2], ge(0.9), s.ours64, s.floor64, per_s,
          ("%d GETs from 64 tasks (sandlot.all) vs 64 transfers in one multi"):format(NH))
  end)
  srv.stop()
  hs.cleanup()
  assert(ok, err)
end)

-- 5. Docker ------------------------------------------------------------------------------------

local ND, NL = 20, 4
local F5 = { ("5. docker sb:exec echo x%d vs raw Engine API (libcurl)"):format(ND),
             ("5. docker sb:exec echo x%d vs `docker exec` CLI"):format(ND),
             ("5. docker lifecycle x%d (create, start, exec, rm) vs raw API"):format(NL),
             ("5. docker sb:exec echo x%d, exec_agent = true vs `docker exec` CLI"):format(ND),
             "5. docker exec agent's one-time start (the first sb:exec), absolute" }
section(5, F5, function()
  local docker = require("spec.support.docker")
  local env, why = docker.start()
  if not env then
    for _, n in ipairs(F5) do skipped(n, tostring(why)) end
    return
  end
  local ok, err = pcall(function()
    local floor_docker = build("floor_docker", CURL)
    local has_cli = sandlot.proc.run({ "sh", "-c", "command -v docker" }).exit_code == 0
    local sides = {
      { "ours", inner(sandlot_case("docker_exec", env.host, env.image, tostring(ND))) },
      { "floor", inner({ floor_docker, env.socket, env.image, "exec", tostring(ND) }) },
    }
    local cid
    if has_cli then
      cid = run({ "docker", "-H", env.host, "run", "-d", "--network", "none", "--label",
                  "sandlot=1", env.image, "sleep", "2147483647" }).stdout:gsub("%s+$", "")
      sides[3] = { "cli", wall({ "docker", "-H", env.host, "exec", cid, "echo", "hello" }, ND) }
    end
    local agent_start = {}
    sides[#sides + 1] = { "agent", function()
      local f = fields(sandlot_case("docker_agent", env.host, env.image, tostring(ND)))
      agent_start[#agent_start + 1] = f[2] * 1e3
      return f[1]
    end }
    local s = measure(rounds(5), sides)
    ratio(F5[1], le(1.05), s.ours, s.floor, ms_per(ND),
          "exec create + start + inspect per exec; the provider adds its setsid wrapper")
    if has_cli then
      for i, t in ipairs(s.cli) do s.cli[i] = t * ND end      -- mean launch -> N launches
      ratio(F5[2], le(0.6), s.ours, s.cli, ms_per(ND),
            "peer: the docker CLI launched per exec; expected about 0.6x")
      ratio(F5[4], le(0.6), s.agent, s.cli, ms_per(ND),
            "the exec agent (a long-lived sandlot-peer in the container) after its start; " ..
            "same CLI samples as the row above")
    else
      skipped(F5[2], "the docker CLI is not installed")
      skipped(F5[4], "the docker CLI is not installed", le(0.6))
    end
    absolute(F5[5], "ms", nil, agent_start,
             "report only: the first sb:exec with exec_agent = true in a new container " ..
             "(ships sandlot-peer and the modules, spawns it, then runs the command)")
    s = measure(rounds(3), {
      { "ours", inner(sandlot_case("docker_life", env.host, env.image, tostring(NL))) },
      { "floor", inner({ floor_docker, env.socket, env.image, "life", tostring(NL) }) },
    })
    ratio(F5[3], le(1.05), s.ours, s.floor, ms_per(NL),
          "sandlot.create + sb:exec + sb:destroy vs the same four API calls and exec")
  end)
  docker.stop(env)
  assert(ok, err)
end)

-- 6. SSH ---------------------------------------------------------------------------------------

local NS = 50
local F6 = { ("6. ssh sb:exec echo x%d (provider) vs libssh2 on open session"):format(NS),
             ("6. ssh client:exec x%d vs libssh2, same remote line"):format(NS),
             ("6. ssh sb:exec echo x%d vs OpenSSH ControlMaster"):format(NS),
             ("6. ssh connections opened by one sandbox for %d execs"):format(NS),
             "6. SFTP upload 200 MB, throughput vs scp",
             "6. SFTP download 200 MB, throughput vs scp",
             "6. SFTP upload 200 MB vs scp over the ControlMaster",
             "6. SFTP download 200 MB vs scp over the ControlMaster" }
section(6, F6, function()
  local sshd = require("spec.support.sshd")
  local srv, why = sshd.start()
  if not srv then
    for _, n in ipairs(F6) do skipped(n, tostring(why)) end
    return
  end
  local master
  local ok, err = pcall(function()
    local floor_ssh = build("floor_ssh", SSH2)
    local o = cjson.encode({ host = srv.host, port = srv.port, user = srv.user,
                             key_file = srv.key, known_hosts = srv.known_hosts,
                             base_dir = srv.dir .. "/sandboxes" })
    local ctl = srv.dir .. "/ctl"
    local ssh_o = { "-o", "ControlPath=" .. ctl, "-o", "UserKnownHostsFile=" .. srv.known_hosts,
                    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-i", srv.key }
    master = assert(sandlot.proc.spawn(cat({ "ssh", "-M", "-N", "-p", tostring(srv.port) },
                                           ssh_o, { srv.user .. "@" .. srv.host })))
    local up = false
    for _ = 1, 100 do
      local r = sandlot.proc.run(cat({ "ssh", "-O", "check" }, ssh_o, { srv.host }))
      if r and r.exit_code == 0 then up = true; break end
      sandlot.sleep(0.05)
    end
    assert(up, "the OpenSSH ControlMaster did not come up")
    local conns = {}
    local function ours_provider()
      local f = fields(sandlot_case("ssh_exec", o, tostring(NS)))
      conns[#conns + 1] = f[2]
      return f[1]
    end
    local s = measure(rounds(5), {
      { "ours", ours_provider },
      { "client", inner(sandlot_case("ssh_client_exec", o, tostring(NS))) },
      -- the floor runs the echo program as sb:exec{"echo","hello"} promises (argv runs the
      -- program, never a shell builtin of the same name): `exec echo hello`
      { "floor", inner({ floor_ssh, srv.host, tostring(srv.port), srv.user, srv.key,
                         tostring(NS), "exec echo hello" }) },
      -- the line sandlot.ssh sends for {"echo","hello"} (sandlot.shell.line, taken from the
      -- module at run time, not copied): the floor running it too isolates
      -- what the client's transport adds
      { "floor_line", inner({ floor_ssh, srv.host, tostring(srv.port), srv.user, srv.key,
                              tostring(NS),
                              require("sandlot.shell").line({ "echo", "hello" }) }) },
      { "cm", wall(cat({ "ssh", "-o", "ControlMaster=no", "-p", tostring(srv.port) }, ssh_o,
                       { srv.user .. "@" .. srv.host, "echo", "hello" }), NS) },
    })
    ratio(F6[1], le(1.1), s.ours, s.floor, ms_per(NS),
          "the provider's exec line (env file, cd, exec) vs `exec echo hello` on one session")
    ratio(F6[2], le(1.1), s.client, s.floor_line, ms_per(NS),
          "transport only: both send the client's line (pid marker, then the argv)")
    for i, t in ipairs(s.cm) do s.cm[i] = t * NS end
    ratio(F6[3], le(0.5), s.ours, s.cm, ms_per(NS),
          "peer: ssh launched per exec over a ControlMaster socket; expected about 0.5x")
    absolute(F6[4], "conn", le(1), conns, "ssh.connect calls made by the provider")

    local big = srv.dir .. "/big"
    sh({ "sh", "-c", 'head -c 200M /dev/urandom > "$1"', "sh", big })
    local remote = srv.dir .. "/remote"
    local back = srv.dir .. "/back"
    local scp = cat({ "scp", "-q", "-o", "ControlMaster=no", "-P", tostring(srv.port) }, ssh_o)
    local plain = {}                              -- a connection of its own (handshake included)
    for i, w in ipairs(scp) do plain[i] = w:gsub("^ControlPath=.*", "ControlPath=none") end
    local target = srv.user .. "@" .. srv.host .. ":"
    local MB = 200
    local function mbps(argv) return function() return MB / inner(argv)() end end
    local function scp_mbps(argv) return function() return MB / run(argv).duration end end
    s = measure(rounds(3), {
      { "up", mbps(sandlot_case("sftp", o, "up", big, remote)) },
      { "scp_up", scp_mbps(cat(scp, { big, target .. remote .. ".scp" })) },
      { "down", mbps(sandlot_case("sftp", o, "down", back, remote)) },
      { "scp_down", scp_mbps(cat(scp, { target .. remote .. ".scp", back .. ".scp" })) },
      { "plain_up", scp_mbps(cat(plain, { big, target .. remote .. ".plain" })) },
      { "plain_down", scp_mbps(cat(plain, { target .. remote .. ".plain",
                                            back .. ".plain" })) },
    })
    local function mb(v) return ("%.0f MB/s"):format(v) end
    ratio(F6[5], ge(0.8), s.up, s.plain_up, mb,
          "client:put streaming a local file; plain scp (SFTP mode, its own connection)")
    ratio(F6[6], ge(0.8), s.down, s.plain_down, mb,
          "client:get into a local file; plain scp; ratio of MB/s")
    ratio(F6[7], ge(0.8), s.up, s.scp_up, mb,
          "scp through the ControlMaster: encryption in the master, scp and ssh separate")
    ratio(F6[8], ge(0.8), s.down, s.scp_down, mb, "as above, download")
    sh({ "cmp", big, back })                      -- the download is the upload, intact
  end)
  if master then
    master:kill("TERM")
    master:wait()
    master:close()
  end
  srv:stop()
  assert(ok, err)
end)

-- 7. Peers -------------------------------------------------------------------------------------

-- bench/fig7.lua: e2b and daytona, sandlot's provider vs the official SDK under Node, against
-- one canned fake in a process of its own (bench/peer_fake.lua)
local fig7 = dofile(here .. "/fig7.lua")
local F7 = fig7.names
section(7, F7, function()
  fig7.run({ sh = sh, fields = fields, wall = wall, measure = measure, ratio = ratio,
             absolute = absolute, skipped = skipped, rounds = rounds, le = le, ge = ge, ms = ms,
             per_s = per_s, bin = bin, here = here, root = root, tmp = tmp,
             child_env = child_env })
end)

-- 8. Scale ------------------------------------------------------------------------------------

-- Each round runs `cases.lua scale N 1000` for N = 1k, 5k and 10k (order alternating by round):
-- N live local handles, 1,000 execs in flight among them, then N destroys. The growth table
-- (medians per N) is printed after the figures and kept in the JSON as the first row's `growth`.
local SCALE_N, SCALE_FLIGHT = { 1000, 5000, 10000 }, 1000
local F8 = { "8. time per handle (create + destroy), 10k handles vs 1k",
             "8. 1,000-exec batch in flight, among 10k handles vs among 1k",
             "8. peak RSS: 10k live local handles + 1,000 execs in flight",
             "8. Lua heap per live local handle, 10k handles",
             "8. execs in flight at once (sandlot.map limit 1000)" }
local tables = {}                             -- extra tables printed after the figures
section(8, F8, function()
  local per = {}                              -- N -> list of case outputs, one per round
  local sides = {}
  for _, n in ipairs(SCALE_N) do
    per[n] = {}
    sides[#sides + 1] = { n, function()
      local f = fields(sandlot_case("scale", tostring(n), tostring(SCALE_FLIGHT)))
      per[n][#per[n] + 1] = f
      return (f[1] + f[2]) / n                -- seconds per handle: create + destroy
    end }
  end
  local s = measure(rounds(3), sides)
  local lo, hi = SCALE_N[1], SCALE_N[#SCALE_N]
  local function col(n, i, scale)             -- field i of N's outputs over the rounds
    local xs = {}
    for r, f in ipairs(per[n]) do xs[r] = f[i] * (scale or 1) end
    return xs
  end
  local function us(v) return ("%.0f us/handle"):format(v * 1e6) end
  local nofile = median(col(hi, 8))
  local fig = ratio(F8[1], le(1.5), s[hi], s[lo], us,
                    "create + destroy seconds / N, at N = 10k over N = 1k; 1.0 is linear")
  ratio(F8[2], le(1.5), col(hi, 3), col(lo, 3), ms,
        "wall time of 1,000 `sleep 1` execs at once (the 1 s sleep included); flat: no O(N)")
  absolute(F8[3], "MiB", { op = "<", value = 64 }, col(hi, 7, 1 / 1024),
           ("VmHWM of the host; open-files soft limit %s"):format(nofile))
  absolute(F8[4], "KiB", le(1), col(hi, 5),
           "collectgarbage('count') growth / N after full collections, the handles' table too")
  absolute(F8[5], "execs", ge(SCALE_FLIGHT), col(hi, 4),
           "most execs started and not yet returned, counted in the script")
  local growth = {}
  local lines = { "8. growth (medians over rounds)",
                  ("%8s %14s %14s %16s %12s %12s %14s"):format("handles", "create us/h",
                    "destroy us/h", "1k-exec batch", "RSS live", "peak RSS", "heap/handle") }
  for _, n in ipairs(SCALE_N) do
    local g = { handles = n, create_s = median(col(n, 1)), destroy_s = median(col(n, 2)),
                exec_batch_s = median(col(n, 3)), heap_kib_per_handle = median(col(n, 5)),
                rss_kib = median(col(n, 6)), hwm_kib = median(col(n, 7)) }
    growth[#growth + 1] = g
    lines[#lines + 1] = ("%8d %14.0f %14.0f %14.0f ms %8.1f MiB %8.1f MiB %10.2f KiB"):format(
      n, g.create_s * 1e6 / n, g.destroy_s * 1e6 / n, g.exec_batch_s * 1e3, g.rss_kib / 1024,
      g.hwm_kib / 1024, g.heap_kib_per_handle)
  end
  fig.growth = growth
  tables[#tables + 1] = lines
  for _, l in ipairs(lines) do io.stderr:write("  ", l, "\n") end
end)

-- 9. SSH concurrency ---------------------------------------------------------------------------

-- 10 ssh-provider sandboxes on one host (one sshd), 10 execs each, 10 in flight through
-- sandlot.map, against floor_ssh.c keeping 10 channels in flight on one non-blocking session.
local SB9, EX9, FL9 = 10, 10, 10
local N9 = SB9 * EX9
local F9 = { ("9. ssh %dx%d execs, %d in flight (provider) vs libssh2, %d channels"):format(
               SB9, EX9, FL9, FL9),
             ("9. ssh %d execs sequential (provider) vs blocking libssh2"):format(N9),
             ("9. ssh speed-up from %d in flight (provider): sequential / concurrent"):format(FL9),
             ("9. ssh connections opened by %d sandboxes on one host"):format(SB9) }
section(9, F9, function()
  local sshd = require("spec.support.sshd")
  local srv, why = sshd.start()
  if not srv then
    for _, n in ipairs(F9) do skipped(n, tostring(why)) end
    return
  end
  local ok, err = pcall(function()
    local floor_ssh = build("floor_ssh", SSH2)
    local o = cjson.encode({ host = srv.host, port = srv.port, user = srv.user,
                             key_file = srv.key, known_hosts = srv.known_hosts,
                             base_dir = srv.dir .. "/sandboxes" })
    local conns = {}
    local function ours(limit)
      return function()
        local f = fields(sandlot_case("ssh_concurrent", o, tostring(SB9), tostring(EX9),
                                      tostring(limit)))
        if limit > 1 then conns[#conns + 1] = f[2] end
        return N9 / f[1]                      -- execs per second
      end
    end
    local function floor(inflight)
      return function()
        return N9 / fields({ floor_ssh, srv.host, tostring(srv.port), srv.user, srv.key,
                             tostring(N9), "exec echo hello", tostring(inflight) })[1]
      end
    end
    local s = measure(rounds(5), {
      { "ours", ours(FL9) }, { "floor", floor(FL9) },
      { "ours_seq", ours(1) }, { "floor_seq", floor(1) },
    })
    ratio(F9[1], ge(0.8), s.ours, s.floor, per_s,
          "ratio of execs/s; the provider's exec line vs `exec echo hello`; the floor opens one" ..
          " channel at a time and waits for each exec request's reply before the next open")
    ratio(F9[2], nil, s.ours_seq, s.floor_seq, per_s,
          "report only: the same 100 execs through sandlot.map with limit 1")
    ratio(F9[3], nil, s.ours, s.ours_seq, per_s,
          "report only: execs/s at 10 in flight over execs/s at 1; the floor's is in the JSON")
    results[#results].floor_speedup = median(s.floor) / median(s.floor_seq)
    absolute(F9[4], "conn", le(1), conns, "ssh.connect calls made by the provider")
  end)
  srv:stop()
  assert(ok, err)
end)

-- 10. Replication ------------------------------------------------------------------------------

-- sandlot.replicate: time to a connected replica (local cold and warm, docker warm against a
-- plain sb:exec round trip), one call's round trip against one sb:exec of the same work, and
-- 10,000 small calls pipelined from 64 tasks against execs from as many tasks.
local NC10, NP10, TP10 = 2000, 10000, 64
local F10 = { "10. replicate to a connected replica, local (bubblewrap), cold",
              "10. replicate to a connected replica, local (bubblewrap), warm",
              "10. replicate, local, warm from a new host process (probe + spawn)",
              "10. replicate, docker busybox, warm vs one plain sb:exec round trip",
              "10. replicate, docker busybox, warm from a new host process vs sb:exec",
              "10. peer:call round trip p50, local (bubblewrap)",
              "10. peer:call round trip p50 vs sb:exec of the same work, local",
              ("10. %d calls pipelined from %d tasks vs sb:exec from %d tasks, local")
                :format(NP10, TP10, TP10) }
section(10, F10, function()
  local probed = {}
  local function first(argv, keep)
    return function()
      local f = fields(argv)
      if keep then probed[#probed + 1] = f[3] end
      return f[1]
    end
  end
  local s = measure(rounds(5), {
    { "cold", first(sandlot_case("replicate_local", "namespaces", "cold")) },
    { "warm", first(sandlot_case("replicate_local", "namespaces", "warm"), true) },
  })
  local function msx(xs) local o = {} for i, v in ipairs(xs) do o[i] = v * 1e3 end return o end
  absolute(F10[1], "ms", le(150), msx(s.cold), "the binary and every module shipped")
  absolute(F10[2], "ms", le(50), msx(s.warm), "this process shipped there before: one spawn")
  absolute(F10[3], "ms", le(50), msx(probed), "everything cached in the sandbox: a probe " ..
           "exec (what is there), then the spawn")
  local docker = require("spec.support.docker")
  local env, why = docker.start()
  if not env then
    skipped(F10[4], tostring(why))
    skipped(F10[5], tostring(why))
  else
    local ok, err = pcall(function()
      local rep, ex, rep2 = {}, {}, {}
      for _ = 1, rounds(3) do
        local f = fields(sandlot_case("replicate_docker", env.host, env.image))
        rep[#rep + 1], ex[#ex + 1], rep2[#rep2 + 1] = f[1], f[2], f[4]
      end
      ratio(F10[4], le(1.5), rep, ex, ms, "a warm replicate is one spawn (an exec with its " ..
            "stdio attached) and the replica's start")
      ratio(F10[5], nil, rep2, ex, ms, "report only: a probe exec, then the spawn")
    end)
    docker.stop(env)
    assert(ok, err)
  end
  local p50, execs = {}, {}
  for _ = 1, rounds(5) do
    local f = fields(sandlot_case("replicate_calls", "namespaces", tostring(NC10)))
    p50[#p50 + 1], execs[#execs + 1] = f[1], f[3]
  end
  local function us(xs) local o = {} for i, v in ipairs(xs) do o[i] = v * 1e6 end return o end
  absolute(F10[6], "us", le(100), us(p50), ("median of %d sequential calls"):format(NC10))
  ratio(F10[7], le(0.1), p50, execs, function(v) return ("%.0f us"):format(v * 1e6) end,
        "string.len in the replica vs sb:exec{\"echo\",\"hello\"}")
  local calls, ex = {}, {}
  for _ = 1, rounds(3) do
    local f = fields(sandlot_case("replicate_pipelined", "namespaces", tostring(NP10),
                                  tostring(TP10)))
    calls[#calls + 1], ex[#ex + 1] = f[1], f[2]
  end
  ratio(F10[8], ge(10), calls, ex, per_s, "ratio of calls/s to execs/s")
end)

-- 11. Ledger ------------------------------------------------------------------------------------

-- The journal's cost: 64 tasks each making the three journal writes of a create and destroy
-- between 1 ms sleeps, while a ticker measures the loop's stalls, against the same tasks
-- without the writes; and sequential local creates with the ledger on and off
-- (SANDLOT_LEDGER=off) for the cost per create. Each journal write is a job of the ledger
-- connection's writer thread (WAL, synchronous=FULL: an fsync per commit; the writes queued
-- meanwhile share one commit) while the task waits, so what the loop still sees is the tasks'
-- own Lua work; the file system under XDG_STATE_HOME sets the per-create cost.
local T10, C10, N10 = 64, 10, 100
local F11 = { ("11. loop stall p99 added by journal writes, %d tasks writing (on - off)")
                :format(T10),
              "11. journal overhead per create (ledger on - off), sequential",
              "11. local create+destroy, ledger on vs off, sequential" }
section(11, F11, function()
  local off_env = { SANDLOT_LEDGER = "off" }
  for k, v in pairs(child_env) do off_env[k] = v end
  local fs_type = sh({ "stat", "-f", "-c", "%T", tmp }).stdout:gsub("%s+$", "")
  local worst = { on = {}, off = {} }
  local function stall(env, key)
    return function()
      local f = fields(sandlot_case("ledger_stall", tostring(T10), tostring(C10), key),
                       { env = env })
      table.insert(worst[key], f[2])
      return f[1]
    end
  end
  local s = measure(rounds(3), { { "on", stall(child_env, "on") },
                                 { "off", stall(off_env, "off") } })
  local added = {}
  for i = 1, #s.on do added[i] = (s.on[i] - s.off[i]) * 1e3 end
  absolute(F11[1], "ms", le(10), added,
    ("p99 lateness of a 1 ms ticker: %.2f ms on, %.2f ms off; " ..
    "largest %.1f ms on, %.1f ms off; %d journal writes per run; ledger on %s")
    :format(median(s.on) * 1e3, median(s.off) * 1e3, median(worst.on) * 1e3,
            median(worst.off) * 1e3, T10 * C10 * 3, fs_type))
  local c = measure(rounds(3), {
    { "on", inner(sandlot_case("ledger_create", tostring(N10)), { env = child_env }) },
    { "off", inner(sandlot_case("ledger_create", tostring(N10)), { env = off_env }) },
  })
  local per = {}
  for i = 1, #c.on do per[i] = (c.on[i] - c.off[i]) / N10 * 1e6 end
  absolute(F11[2], "us", nil, per, ("three journal writes per create+destroy (creating, " ..
    "active, destroyed); %d creates per round; ledger on %s"):format(N10, fs_type))
  ratio(F11[3], nil, c.on, c.off, ms_per(N10), "ms per create+destroy")
end)

-- 12. Plugins ----------------------------------------------------------------------------------

local F12 = { "12. plugin hook overhead: no-op after_exec, p50 of one dispatch",
              "12. bytes per plugin state (no-op plugin, after a full collection)",
              "12. plugin reload (fresh state + migrate + swap), median of 20" }
section(12, F12, function()
  local p50, bytes, reload = {}, {}, {}
  for i = 1, rounds(5) do
    local d = tmp .. "/plugins" .. i
    sh({ "mkdir", "-p", d })
    local f = fields(sandlot_case("plugins", "20000", d))
    p50[#p50 + 1], bytes[#bytes + 1], reload[#reload + 1] = f[1], f[2] / 1024, f[3]
  end
  absolute(F12[1], "us", le(5), p50, "plugins.after_exec with one no-op plugin, each timed alone")
  absolute(F12[2], "KiB", le(300), bytes, "the plugin allocator's count of live bytes")
  absolute(F12[3], "ms", le(20), reload, "plugins.reload of an unchanged no-op plugin")
end)

-- Table ----------------------------------------------------------------------------------------

sh({ "rm", "-rf", tmp })

local function show(f, v)
  if f.unit == "x" then return ("%.2fx"):format(v) end
  return ("%.1f %s"):format(v, f.unit)
end


print()
print(("%-68s %9s %9s %9s  %-9s %-8s %s"):format("figure", "value", "min", "max", "target",
                                                 "status", "sandlot / floor (medians)"))
for _, f in ipairs(results) do
  local target = f.target and (f.target.op .. f.target.value .. (f.unit == "x" and "x" or ""))
                 or "-"
  if f.skipped then
    print(("%-68s %9s %9s %9s  %-9s %s"):format(f.name, "-", "-", "-", target,
                                               "skipped: " .. f.skipped))
  else
    local status = f.target == nil and "report" or (f.met and "met" or "not yet")
    local ctx = f.ours_shown and (f.ours_shown .. " / " .. f.floor_shown) or ""
    print(("%-68s %9s %9s %9s  %-9s %-8s %s"):format(f.name, show(f, f.value), show(f, f.min),
                                                    show(f, f.max), target, status, ctx))
  end
end
-- A full run writes bench/results/<date>.json; a BENCH_FIGURES run writes
-- <date>-figures-4-6.json beside it, so it never replaces the full run's figures.
-- Every row has `target` ({op, value} or null: report only) and `met` (true, false or null).
for _, lines in ipairs(tables) do
  print()
  for _, l in ipairs(lines) do print(l) end
end
local date = os.date("!%Y-%m-%d")
local out = here .. "/results/" .. date
            .. (WANTED_LIST and ("-figures-" .. table.concat(WANTED_LIST, "-")) or "") .. ".json"
for _, f in ipairs(results) do
  if f.target == nil then f.target = cjson.null end
  if f.met == nil then f.met = cjson.null end
end
local fh = assert(io.open(out, "w"))
fh:write(cjson.encode({ date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
                        rounds = ROUNDS_ENV or "default",
                        selected = WANTED_LIST or "all",
                        host = sh({ "uname", "-srm" }).stdout:gsub("%s+$", ""),
                        cpus = tonumber(sh({ "nproc" }).stdout),
                        figures = results }), "\n")
fh:close()
print("\nwritten to " .. out)
