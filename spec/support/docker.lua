-- spec/support/docker.lua: a Docker daemon for the #docker specs. Uses the one at DOCKER_HOST
-- (or /var/run/docker.sock) when it answers; otherwise starts a private dockerd on a unix
-- socket with its own data and exec roots in a temporary directory, and stops it afterwards
-- (containers removed, daemon killed and waited for, leftover mounts unmounted). The test
-- image is built without a registry: a busybox-static root imported with POST /images/create.
--
--   local s = require("spec.support.docker").suite({ dk = {}, dka = { exec_agent = true } })
--   it("...", function()
--     if not s.need() then return end                           -- pended, with the reason
--     local sb <close> = s.create("dk")
--     ...s.env.socket, s.api({ path = "/containers/json" })...
--   end)
local busted = require("busted")
local sandlot = require("sandlot")
local http = require("sandlot.http")
local tar = require("sandlot.wire.tar")
local h = require("spec.helper")

local M = {}

M.IMAGE = "sandlot-test/busybox:2"      -- :2 adds flock

local function ping(sock)
  local res = http.request{ unix_socket = sock, path = "/_ping", timeout = 2,
                            connect_timeout = 2, retry = false }
  return res ~= nil and res.status == 200
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function tail(path, n)
  local s = read(path) or ""
  return s:sub(-(n or 2000))
end

-- The host's flock(1) with the shared libraries ldd names, at the same paths (Debian's
-- busybox has no flock applet; the conformance suite uses it to see whether a process lives).
local function flock_entries(entries)
  local r = sandlot.proc.run({ "ldd", "/usr/bin/flock" })
  local bin = read("/usr/bin/flock")
  if not (r and r.exit_code == 0 and bin) then return end
  local dirs = {}
  local function add(path, data, mode)
    local parts = {}
    for seg in path:gmatch("[^/]+") do parts[#parts + 1] = seg end
    for i = 1, #parts - 1 do
      local d = table.concat(parts, "/", 1, i)
      if not dirs[d] then
        dirs[d] = true
        entries[#entries + 1] = { name = d, type = "directory" }
      end
    end
    entries[#entries + 1] = { name = table.concat(parts, "/"), data = data, mode = mode }
  end
  for lib in r.stdout:gmatch("(/%S+) %(0x") do
    local data = read(lib)
    if not data then return end
    add(lib, data, 493)
  end
  add("/usr/bin/flock", bin, 493)
end

-- A root file system: /bin/busybox with every applet linked to it, /tmp, /etc/passwd, and
-- flock.
local function rootfs()
  local bb = read("/bin/busybox")
  if not bb then return nil, "/bin/busybox is missing (Debian package busybox-static)" end
  local r = assert(sandlot.proc.run({ "/bin/busybox", "--list" }))
  local entries = {
    { name = "bin", type = "directory" }, { name = "tmp", type = "directory", mode = 1023 },
    { name = "etc", type = "directory" }, { name = "root", type = "directory", mode = 448 },
    { name = "bin/busybox", data = bb, mode = 493 },
    { name = "etc/passwd", data = "root:x:0:0:root:/root:/bin/sh\n" },
    { name = "etc/group", data = "root:x:0:\n" },
  }
  for applet in r.stdout:gmatch("[^\n]+") do
    if applet ~= "busybox" then
      entries[#entries + 1] = { name = "bin/" .. applet, type = "symlink", linkname = "busybox",
                                mode = 511 }
    end
  end
  flock_entries(entries)
  return tar.archive(entries)
end

local function build_image(sock)
  local name, tag = M.IMAGE:match("^(.*):(.*)$")
  local res = http.request{ unix_socket = sock, path = "/images/" .. M.IMAGE .. "/json",
                            timeout = 10 }
  if res and res.status == 200 then return true end
  local pieces, size = rootfs()
  if not pieces then return nil, size end
  local i = 0
  res = http.request{ unix_socket = sock, method = "POST", path = "/images/create",
                      query = { fromSrc = "-", repo = name, tag = tag }, body_size = size,
                      headers = { ["Content-Type"] = "application/x-tar" }, timeout = 120,
                      body = function() i = i + 1; return pieces[i] end }
  if not res or res.status ~= 200 or (res.body or ""):find('"error"') then
    return nil, "docker import failed: " .. tostring(res and res.body)
  end
  return true
end

local function start_dockerd()
  local dir = (assert(sandlot.proc.run({ "mktemp", "-d", "/tmp/sandlot-spec.dk.XXXXXX" }))
                 .stdout:gsub("%s+$", ""))
  local sock = dir .. "/d.sock"
  local log = dir .. "/dockerd.log"
  local p, err = sandlot.proc.spawn({ "dockerd", "--host", "unix://" .. sock,
    "--data-root", dir .. "/data", "--exec-root", dir .. "/exec", "--pidfile", dir .. "/pid",
    "--iptables=false", "--ip-masq=false", "--bridge=none", "--log-level=warn" },
    { spill = { stdout = log, stderr = log }, max_output = 4096 })
  if not p then
    h.rmtree(dir)
    return nil, "cannot start dockerd: " .. tostring(err)
  end
  local env = { socket = sock, dir = dir, proc = p, own = true, log = log }
  local up = h.eventually(function() return not p:running() or ping(sock) end, 40)
  if not up or not p:running() then
    M.stop(env)
    return nil, "dockerd did not come up: " .. tail(log, 800)
  end
  return env
end

---Finds or starts a daemon and builds the test image. Returns env {socket, image, own, ...}
---or nil and the reason docker specs cannot run.
function M.start()
  local env
  local dh = os.getenv("DOCKER_HOST")
  local sock = dh and dh:match("^unix://(.+)$") or (not dh and "/var/run/docker.sock")
  if sock and ping(sock) then
    env = { socket = sock, own = false }
  else
    local r = sandlot.proc.run({ "sh", "-c", "command -v dockerd" })
    if not r or r.exit_code ~= 0 then return nil, "dockerd is not installed (docker.io)" end
    local why
    env, why = start_dockerd()
    if not env then return nil, why end
  end
  local ok, why = build_image(env.socket)
  if not ok then
    M.stop(env)
    return nil, why
  end
  env.image = M.IMAGE
  env.host = "unix://" .. env.socket
  return env
end

---Removes what the specs left, then stops a daemon we started and cleans its directory.
function M.stop(env)
  if not env then return end
  if env.socket and (not env.proc or env.proc:running()) then
    local res = http.request{ unix_socket = env.socket, path = "/containers/json",
                              query = { all = "true", filters = '{"label":["sandlot=1"]}' },
                              timeout = 10, retry = false }
    for _, c in ipairs(res and res.json or {}) do
      http.request{ unix_socket = env.socket, method = "DELETE", path = "/containers/" .. c.Id,
                    query = { force = "true", v = "true" }, timeout = 30, retry = false }
    end
  end
  if not env.own then return end
  local p = env.proc
  if p:running() then
    p:kill("TERM")
    if not sandlot.timeout(20, function() return p:wait() end) then p:kill("KILL") end
  end
  p:kill("KILL")                           -- the group: containerd started by dockerd
  p:wait()
  p:close()
  M.reap(env.dir)
  local mounts = {}
  for line in (read("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local mp = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if mp and mp:sub(1, #env.dir) == env.dir then mounts[#mounts + 1] = mp end
  end
  table.sort(mounts, function(a, b) return #a > #b end)
  for _, mp in ipairs(mounts) do sandlot.proc.run({ "umount", "-l", mp }) end
  h.rmtree(env.dir)
end

---Kills processes our dockerd left behind (containerd shims), found by their command line
---naming our directory; never anything else.
function M.reap(dir)
  local r = sandlot.proc.run({ "sh", "-c", "grep -l -s -F -- \"$1\" /proc/[0-9]*/cmdline || true",
                               "sh", dir })
  for pid in ((r and r.stdout) or ""):gmatch("/proc/(%d+)/cmdline") do
    sandlot.proc.run({ "kill", "-KILL", pid })
  end
end

---Sets the enclosing describe block up on the daemon: lazy_setup starts it (M.start) and
---configures every provider named in providers, {name = extra options}, as the docker
---provider on it with the test image and pulls off; lazy_teardown resets the config and stops
---the daemon. Returns the suite s: s.env and s.why (as M.start gave them) once set up, and
---  s.need()            true with a daemon; without, marks the test pending (M.unavailable)
---  s.create(ref, opts) sandlot.create(ref, opts or {}), asserted
---  s.api(opts)         an asserted http.request to the daemon's API (unix_socket filled in)
---@param providers table<string, table>
function M.suite(providers)
  local s = {}

  busted.lazy_setup(function()
    s.env, s.why = M.start()
    if not s.env then return end
    local list = {}
    for name, extra in pairs(providers) do
      local p = { "docker", host = s.env.host, image = s.env.image, pull = false }
      for k, v in pairs(extra) do p[k] = v end
      list[name] = p
    end
    sandlot.config.set({ providers = list })
  end)

  busted.lazy_teardown(function()
    sandlot.config.reset()
    M.stop(s.env)
  end)

  function s.need()
    if not s.env then busted.pending(M.unavailable(s.why)) end
    return s.env ~= nil
  end

  function s.create(ref, opts)
    local sb, err = sandlot.create(ref, opts or {})
    assert(sb, tostring(err))
    return sb
  end

  function s.api(opts)
    local o = { unix_socket = s.env.socket }
    for k, v in pairs(opts) do o[k] = v end
    return assert(http.request(o))
  end

  return s
end

---Marks the calling spec pending with the reason, loudly; fails instead when CI is set.
function M.unavailable(reason)
  local msg = "docker specs skipped: " .. tostring(reason)
  io.stderr:write("\n*** ", msg, " ***\n")
  if os.getenv("CI") and os.getenv("CI") ~= "" then
    error(msg .. " (CI is set: docker must work here)")
  end
  return msg
end

return M
