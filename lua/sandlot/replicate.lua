-- sandlot.replicate: starts this host's Lua inside a sandbox as a connected replica (a
-- "peer") that runs module functions, source and generators there. Ships the static
-- sandlot-peer binary and the Lua modules content-addressed (sandlot._peer.ship), starts it
-- over the provider's spawn (its stdio is the channel) and speaks the protocol of
-- sandlot._peer.client. Trust runs one way: the host can run anything in the replica; the
-- replica can call only the host functions in opts.expose, and is sent no credentials.
local core = require("sandlot.core")
local errors = require("sandlot.errors")
local check = require("sandlot._check")
local telemetry = require("sandlot.telemetry")
local ids = require("sandlot.id")
local task = require("sandlot.task")
local ship = require("sandlot._peer.ship")
local client = require("sandlot._peer.client")

local M = {}

M.DEST = "/tmp/.sandlot-peer"

local ARCH = { x86_64 = "x86_64", amd64 = "x86_64" }

local OPTS = {
  env = "table", dest = "string", timeout = "number", name = "string", modules = "table",
  paths = "table", expose = "table", heartbeat = "number", heartbeat_timeout = "number",
  on_log = "function", script_dir = function(v)
    return v == false or type(v) == "string", "false or a directory"
  end,
}

local function host_arch()
  local f = io.open("/proc/sys/kernel/arch", "r")
  local a = f and f:read("l")
  if f then f:close() end
  if a and a ~= "" then return ARCH[a] or a end
  local p = io.popen("uname -m")
  a = p and p:read("l")
  if p then p:close() end
  return ARCH[a or ""] or a
end

-- the running script's directory (arg[0]), when there is one
local function script_dir()
  local s = rawget(_G, "arg") and arg[0]
  if type(s) ~= "string" or s == "-" or not s:match("%.lua$") then return nil end
  return s:match("^(.*)/[^/]*$") or "."
end

-- One exec makes the directories and tells the architecture and what the cache holds. It
-- runs in "/" with dest relative to it: a provider maps "/" to the sandbox's root for cwd as
-- for files (the local provider without namespaces runs commands on the host's file system).
local PROBE = 'mkdir -p "$1/lib" "$1/bin" && cd "$1" && uname -m && echo -- && ls -1 bin lib'

local function probe(sb, dest)
  local r, rerr = sb:exec({ "sh", "-c", PROBE, "sh", dest:sub(2) }, { cwd = "/", timeout = 30 })
  if not r then return nil, rerr end
  if r.exit_code ~= 0 then
    return nil, errors.new("unavailable", ("probing the sandbox failed (exit %d): %s")
                           :format(r.exit_code, r.stderr:sub(1, 200)), { retryable = false })
  end
  local arch, rest = r.stdout:match("^(%S+)%s*\n%-%-\n?(.*)$")
  local have = {}
  for name in (rest or ""):gmatch("[^\n]+") do have[name] = true end
  return ARCH[arch or ""] or arch, have
end

-- Spawns the replica from what DEST holds and connects: peer | nil, err.
local function launch(sb, opts, dest, bin_name, manifest)
  local nonce = ids.hex(8)
  local proc, serr = sb:spawn({ "./bin/" .. bin_name, manifest, nonce },
                              { cwd = dest, env = opts.env })
  if not proc then return nil, serr end
  return client.connect(proc, {
    nonce = nonce, version = core.version, name = opts.name or sb.id, expose = opts.expose,
    timeout = opts.timeout or 60, heartbeat = opts.heartbeat, stall = opts.heartbeat_timeout,
    on_log = opts.on_log,
  })
end

-- Probes, ships what the sandbox lacks, launches: peer, arch, shipped | nil, err.
local function ship_and_launch(sb, opts, dest, pack, bin_name, meta)
  local arch, have = probe(sb, dest)
  if not arch then return nil, have end
  meta.arch = arch
  local mine = host_arch()
  if arch ~= mine then
    return nil, errors.new("not_supported", ("the sandbox is %s; this host has a sandlot-peer " ..
                           "for %s only"):format(arch, tostring(mine)), { retryable = false })
  end
  local files, bytes = {}, 0
  if not have[bin_name] then
    files[#files + 1] = { path = dest .. "/bin/" .. bin_name, data = pack.binary.data,
                          mode = tonumber("755", 8) }
    bytes = bytes + #pack.binary.data
  end
  for sha, data in pairs(pack.files) do
    if not have[sha] then
      files[#files + 1] = { path = dest .. "/lib/" .. sha, data = data }
      bytes = bytes + #data
    end
  end
  if #files > 0 then
    local ok, werr = sb:write_files(files)
    if not ok then return nil, werr end
  end
  local peer, err = launch(sb, opts, dest, bin_name, pack.manifest)
  if not peer then return nil, err end
  return peer, arch, { bytes = bytes, files = #files, cache_hit = #files == 0 }
end

local function do_replicate(sb, opts, meta)
  local dest = opts.dest or M.DEST
  local caps = sb:caps() or {}
  if caps.spawn == "not_supported" then
    return nil, errors.new("not_supported", ("replicate needs a live process (spawn), which " ..
      "provider %s does not have"):format(tostring(sb.provider)), { retryable = false })
  end
  local binary, berr = ship.binary_path()
  if not binary then return nil, berr end
  local mods, merr = ship.collect({ modules = opts.modules, paths = opts.paths,
                                    script_dir = opts.script_dir })
  if not mods then return nil, merr end
  local pack, perr = ship.build(mods, binary)
  if not pack then return nil, perr end
  local bin_name = "sandlot-peer-" .. pack.binary.sha:sub(1, 32)
  -- this process shipped exactly this into dest before: launch at once (no probe); if that
  -- fails (files removed since), forget it and take the full path
  local memo = sb._replica_memo and sb._replica_memo[dest]
  local peer, arch, shipped, err
  if memo and memo.bin == bin_name and memo.manifest == pack.manifest then
    peer, err = launch(sb, opts, dest, bin_name, pack.manifest)
    if peer then
      arch, shipped = memo.arch, { bytes = 0, files = 0, cache_hit = true, probed = false }
    elseif errors.is(err, "cancelled") or errors.is(err, "timeout") then
      return nil, err
    else
      sb._replica_memo[dest] = nil
    end
  end
  if not peer then
    peer, arch, shipped = ship_and_launch(sb, opts, dest, pack, bin_name, meta)
    if not peer then return nil, arch end
    sb._replica_memo = sb._replica_memo or {}
    sb._replica_memo[dest] = { bin = bin_name, manifest = pack.manifest, arch = arch }
  end
  meta.arch, meta.bytes_shipped, meta.files_shipped = arch, shipped.bytes, shipped.files
  meta.cache_hit = shipped.cache_hit
  peer.arch, peer.dest, peer.sandbox, peer.shipped = arch, dest, sb, shipped
  sb._peers = sb._peers or setmetatable({}, { __mode = "k" })
  sb._peers[peer] = true
  peer._on_close = function(p) if sb._peers then sb._peers[p] = nil end end
  return peer
end

---Starts this host's Lua inside the sandbox as a connected replica and returns it.
---opts: env (the replica's environment; nothing else of the host's is passed), dest (its
---directory in the sandbox, default /tmp/.sandlot-peer), timeout (seconds for the whole
---start, default 60), name, modules (module names, or "name.*", to ship besides sandlot's
---own), paths (directories of modules to ship), script_dir (default: the running script's
---directory; false ships none), expose (name -> function the replica may call back with
---sandlot.host(name, ...)), heartbeat (seconds between pings when idle, default 5),
---heartbeat_timeout (silence that declares it stalled, default 3 heartbeats), on_log
---(receives each line the replica prints; default: stderr).
---Errors: not_supported (another architecture, a protocol mismatch, no spawn), not_found (no
---sandlot-peer built, a listed module missing), unavailable, timeout, ...
---@return table|nil peer, sandlot.Error? err
function M.replicate(sb, opts)
  if type(sb) ~= "table" or type(sb.spawn) ~= "function" then
    error("replicate: sb must be a sandbox", 2)
  end
  opts = check.opts(opts, OPTS, "replicate", 3)
  if opts.env then check.env(opts.env, "replicate") end
  if opts.dest and opts.dest:sub(1, 1) ~= "/" then
    error("replicate: opts.dest must be an absolute path", 2)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.expose = {}
  for k, v in pairs(opts.expose or {}) do
    if type(k) ~= "string" or type(v) ~= "function" then
      error("replicate: opts.expose must map names to functions", 2)
    end
    o.expose[k] = v
  end
  if o.script_dir == nil then o.script_dir = script_dir() end
  if o.script_dir == false then o.script_dir = nil end
  local meta = { provider = sb.provider, sandbox = sb.id }
  -- the whole start (probe, upload, spawn, hello) is bounded by opts.timeout
  return telemetry.span("replicate", meta, task.timeout, o.timeout or 60, do_replicate, sb, o,
                        meta)
end

---Closes a replica (peer:close()).
function M.stop_replica(peer)
  if type(peer) ~= "table" or getmetatable(peer) ~= client.Peer then
    error("stop_replica: not a peer", 2)
  end
  return peer:close()
end

-- sb:destroy() closes the sandbox's replicas first: their pending calls fail with
-- unavailable at once instead of waiting for the channel to notice.
function M._sandbox_gone(sb)
  local peers = sb._peers
  if not peers then return end
  sb._peers = nil
  for p in pairs(peers) do p:_abort("the sandbox was destroyed") end
end

return M
