-- bench/fig7.lua: figure 7, sandlot's cloud providers against the official SDKs under Node.
-- For each provider (e2b, daytona, vercel, sprites) one fake (bench/peer_fake.lua: the strict
-- fake, canned exec) runs in a process of its own; sandlot's side (bench/peers.lua through
-- the provider) and the SDK's (bench/sdk/PROVIDER.mjs) run the same create -> exec `echo
-- hello` -> destroy cycle against it, one process per measurement, sides alternating by
-- round. The SDKs are installed with npm into the bench's temporary directory
-- (spec/support/npm.lua, as `make check-fakes` does); without node or npm, or when the
-- install fails, the figure is skipped with the reason (BENCH_SDK_DIR=DIR uses an npm prefix
-- holding every SDK instead of installing them). Called by bench/run.lua's section 7 with its
-- kit (measure, ratio, ...).
local sandlot = require("sandlot")
local task = require("sandlot.task")
local npm = require("spec.support.npm")

local M = {}

M.PROVIDERS = { "e2b", "daytona", "vercel", "sprites" }
M.SEQ, M.CONC_N, M.CONC, M.HANDLES, M.ONESHOTS = 50, 256, 64, 200, 2

local SDK = { e2b = "e2b SDK", daytona = "@daytonaio/sdk", vercel = "@vercel/sandbox",
              sprites = "@fly/sprites" }

local function rows(p)
  local sdk = SDK[p]
  return {
    seq = ("7. %s: create+exec+destroy cycles/s, sequential, vs %s"):format(p, sdk),
    conc = ("7. %s: cycles/s, %d in flight, vs %s"):format(p, M.CONC, sdk),
    cpu = ("7. %s: client CPU per cycle vs %s"):format(p, sdk),
    rss = ("7. %s: client peak RSS with %d live sandboxes vs %s"):format(p, M.HANDLES, sdk),
    rss_ours = ("7. %s: client peak RSS with %d live sandboxes, sandlot"):format(p, M.HANDLES),
    rss_sdk = ("7. %s: client peak RSS with %d live sandboxes, %s"):format(p, M.HANDLES, sdk),
    oneshot = ("7. %s: one-shot script (start, 1 cycle, exit) wall time vs %s"):format(p, sdk),
  }
end
local ORDER = { "seq", "conc", "cpu", "rss", "rss_ours", "rss_sdk", "oneshot" }

M.names = {}
for _, p in ipairs(M.PROVIDERS) do
  local r = rows(p)
  for _, k in ipairs(ORDER) do M.names[#M.names + 1] = r[k] end
end

-- The fake of provider p in its own process: its handle and its JSON line.
local function start_fake(k, p)
  local f = assert(sandlot.proc.spawn({ k.bin, k.here .. "/peer_fake.lua", p },
                                      { cwd = k.root, env = k.child_env, stream = true }))
  local buf = ""
  local ok, err = task.timeout(30, function()
    while not buf:find("\n") do
      local data, which = f:read()
      if not data then error("the fake exited before it listened", 0) end
      if which == "stdout" then buf = buf .. data end
    end
    return true
  end)
  if not ok then
    f:kill("KILL")
    f:close()
    error("bench/peer_fake.lua " .. p .. ": " .. tostring(err), 0)
  end
  return f, buf:match("^[^\n]*")
end

-- The SDK scripts and the modes they share, beside the node_modules in dir.
local function copy_scripts(k, dir)
  for _, p in ipairs(M.PROVIDERS) do
    k.sh({ "cp", k.here .. "/sdk/" .. p .. ".mjs", dir .. "/" .. p .. ".mjs" })
  end
  k.sh({ "cp", k.here .. "/sdk/_modes.mjs", dir .. "/_modes.mjs" })
end

-- Installs every bench/sdk/*.mjs's `// npm:` packages into one directory, with the scripts
-- copied beside its node_modules. Returns dir, or nil and why.
local function install(k)
  local why = npm.missing()
  if why then return nil, why end
  local dir = os.getenv("BENCH_SDK_DIR")
  if dir and dir ~= "" then                   -- the SDKs installed already (by hand)
    copy_scripts(k, dir)
    return dir
  end
  dir = k.tmp .. "/sdk"
  local pkgs = {}
  for _, p in ipairs(M.PROVIDERS) do
    for _, pkg in ipairs(npm.header(k.here .. "/sdk/" .. p .. ".mjs").npm) do
      pkgs[#pkgs + 1] = pkg
    end
  end
  io.stderr:write("  7. npm install " .. table.concat(pkgs, " ") .. "\n")
  local ok, err = npm.install(pkgs, dir, 600)
  if not ok then return nil, err end
  copy_scripts(k, dir)
  return dir
end

local function provider(k, dir, p)
  local r = rows(p)
  local fake, line = start_fake(k, p)
  local ok, err = pcall(function()
    local env = { SANDLOT_LEDGER = "off" }
    for key, v in pairs(k.child_env) do env[key] = v end
    local function ours(...) return { k.bin, k.here .. "/peers.lua", p, line, ... } end
    local function sdk(...) return { "node", dir .. "/" .. p .. ".mjs", line, ... } end
    local cpu = { ours = {}, sdk = {} }
    local function rate(side, argv, n)        -- cycles/s; keeps CPU seconds per cycle
      return function()
        local f = k.fields(argv, { env = env, cwd = k.root })
        if cpu[side] and n == M.SEQ then table.insert(cpu[side], f[2] / n) end
        return n / f[1]
      end
    end
    local s = k.measure(k.rounds(3), {
      { "ours", rate("ours", ours("seq", tostring(M.SEQ)), M.SEQ) },
      { "sdk", rate("sdk", sdk("seq", tostring(M.SEQ)), M.SEQ) },
      { "ours64", rate(nil, ours("conc", tostring(M.CONC_N), tostring(M.CONC)), M.CONC_N) },
      { "sdk64", rate(nil, sdk("conc", tostring(M.CONC_N), tostring(M.CONC)), M.CONC_N) },
    })
    k.ratio(r.seq, k.ge(5), s.ours, s.sdk, k.per_s,
            ("%d cycles one after another; ratio of cycles/s"):format(M.SEQ))
    k.ratio(r.conc, k.ge(5), s.ours64, s.sdk64, k.per_s,
            ("%d cycles, %d in flight (sandlot.map / %d async workers)")
              :format(M.CONC_N, M.CONC, M.CONC))
    k.ratio(r.cpu, k.le(1 / 7), cpu.ours, cpu.sdk,
            function(v) return ("%.2f ms"):format(v * 1e3) end,
            "user + system seconds of the client process over the sequential run / cycles")
    local rss = { ours = {}, sdk = {} }
    local function peak(side, argv)
      return function()
        local f = k.fields(argv, { env = env, cwd = k.root })
        table.insert(rss[side], f[1] / 1024)
        return f[1] / 1024
      end
    end
    s = k.measure(k.rounds(3), {
      { "ours", peak("ours", ours("handles", tostring(M.HANDLES))) },
      { "sdk", peak("sdk", sdk("handles", tostring(M.HANDLES))) },
    })
    k.ratio(r.rss, k.le(1 / 6), s.ours, s.sdk, function(v) return ("%.1f MiB"):format(v) end,
            "peak RSS (VmHWM / ru_maxrss) of the client holding the live sandbox objects")
    k.absolute(r.rss_ours, "MiB", nil, rss.ours, "report only: the sandlot side of the above")
    k.absolute(r.rss_sdk, "MiB", nil, rss.sdk, "report only: the SDK side of the above")
    s = k.measure(k.rounds(3), {
      { "ours", k.wall(ours("oneshot"), M.ONESHOTS, { env = env, cwd = k.root }) },
      { "sdk", k.wall(sdk("oneshot"), M.ONESHOTS, { env = env, cwd = k.root }) },
    })
    k.ratio(r.oneshot, k.le(1 / 20), s.ours, s.sdk, k.ms,
            ("whole-process wall time: start, one cycle, exit; mean of %d launches")
              :format(M.ONESHOTS))
  end)
  fake:kill("KILL")
  fake:wait()
  fake:close()
  assert(ok, err)
end

---Runs figure 7 with bench/run.lua's kit: {sh, fields, wall, measure, ratio, absolute,
---skipped, rounds, le, ge, ms, per_s, bin, here, root, tmp, child_env}.
function M.run(kit)
  local added, k = {}, setmetatable({}, { __index = kit })
  for _, f in ipairs({ "ratio", "absolute" }) do
    k[f] = function(name, ...) added[name] = true; return kit[f](name, ...) end
  end
  local dir, why = install(k)
  if not dir then
    for _, n in ipairs(M.names) do k.skipped(n, why) end
    return
  end
  for _, p in ipairs(M.PROVIDERS) do
    local ok, err = pcall(provider, k, dir, p)
    if not ok then
      for _, n in ipairs(M.names) do
        if n:find("^7%. " .. p .. ":") and not added[n] then
          k.skipped(n, "failed: " .. tostring(err):gsub("%s+", " "):sub(1, 200))
        end
      end
    end
  end
end

return M
