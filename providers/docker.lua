-- providers/docker.lua: sandboxes as Docker containers, driven through the Docker Engine API
-- (v1.41, negotiated down with GET /version) over its unix socket: $DOCKER_HOST or
-- /var/run/docker.sock (config `host` wins). No I/O at load time.
--
-- A sandbox is one container labelled sandlot=1 and sandlot.id=<id>, kept up by a long sleep
-- (or `sleep <timeout>` when a lifetime is given, so it exits by itself), working directory
-- /sandbox unless `cwd` says otherwise; relative paths of file operations and exec resolve
-- there. Network is off unless `network = "all"`. stop/start pause and unpause the container
-- (processes frozen, memory kept); start also starts an exited container again.
-- exec runs the command under a small /bin/sh wrapper that keeps it in a process group of its
-- own (the exec's, or a setsid session), so a timeout or a cancellation can kill the command
-- and its children; stdin is uploaded to a file first (the API's stdin needs a hijacked
-- bidirectional socket).
-- Files move as tar archives (lua/sandlot/_tar.lua); ls, mkdir and rm use sandlot's exec
-- fallbacks. API reference: ../shared/provider-apis/docker.md (Engine API v1.41).
--
-- gc rule (`sandlot gc --provider docker`, or M._gc): a container labelled sandlot=1 is
-- removed when it is not running and not paused (exited, dead, created), or when its
-- sandlot.expires label (creation + lifetime `timeout`) has passed, or, with --older-than N,
-- when it was created more than N seconds ago; --all removes every sandlot container.
-- A container labelled sandlot.keep=1 (create with labels = {["sandlot.keep"] = "1"}) is
-- never removed. Paused sandboxes are stopped ones the user may still start: they are kept.
local http = require("sandlot.http")
local errors = require("sandlot.errors")
local tar = require("sandlot.wire.tar")
local task = require("sandlot.task")

local M = {
  name = "docker",
  description = "Docker Engine containers (API over the unix socket)",
  capabilities = { files = true, background = true, url = true },
  config = { host = "string", image = "string", pull = "boolean", workdir = "string",
             api_version = "string" },
  create_options = { pull = "boolean", command = "table", user = "string",
                     privileged = "boolean" },
}

local API_VERSION = "1.41"
local DEFAULT_IMAGE = "alpine:3"
local WORKDIR = "/sandbox"
local FOREVER = "2147483647"                  -- seconds: the init command's sleep

local conns = {}                          -- DOCKER_HOST -> {base, prefix}: version negotiated

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function version_num(v)
  local a, b = tostring(v or ""):match("^(%d+)%.(%d+)")
  return a and tonumber(a) * 1000 + tonumber(b) or nil
end

local function host_of(ctx)
  return (ctx.config and ctx.config.host) or os.getenv("DOCKER_HOST")
         or "unix:///var/run/docker.sock"
end

-- Finds the daemon and agrees on an API version (once per host and process).
local function conn(ctx)
  local where = host_of(ctx)
  local c = conns[where]
  if c then return c end
  local base
  local sock = where:match("^unix://(.+)$") or (where:sub(1, 1) == "/" and where)
  if sock then
    base = { unix_socket = sock, base_url = "http://docker" }
  elseif where:match("^tcp://") then
    base = { base_url = "http://" .. where:sub(7) }
  else
    return fail("invalid_input", "DOCKER_HOST %s: only unix:// and tcp:// are supported", where)
  end
  local res, err = http.request(base, { path = "/version", timeout = 10, retry = 2,
                                        op = "docker.version" })
  if not res then
    return nil, errors.wrap(err, { message = ("cannot reach the Docker daemon at %s: %s")
                                               :format(where, err.message) })
  end
  if res.status ~= 200 or type(res.json) ~= "table" then
    return nil, http.status_error(res, { op = "version" })
  end
  local want = (ctx.config and ctx.config.api_version) or API_VERSION
  local server = res.json.ApiVersion
  local v = want
  if version_num(server) and version_num(server) < version_num(want) then v = server end
  c = { base = base, prefix = "/v" .. v, version = v, where = where }
  conns[where] = c
  return c
end

-- One API call: returns res (any status) or nil, err for transport failures.
local function api(ctx, opts)
  local c, err = conn(ctx)
  if not c then return nil, err end
  local o = { timeout = 60 }
  for k, v in pairs(opts) do o[k] = v end
  o.path = c.prefix .. opts.path
  local res, rerr = http.request(c.base, o)
  if not res and rerr.code == "unavailable" then
    conns[c.where] = nil                  -- the daemon may come back as another version
  end
  return res, rerr
end

local function docker_error(res, what, codes)
  local code = codes and codes[res.status]
  local err = http.status_error(res)
  if code then err.code = code end
  err.message = what .. ": " .. err.message
  return nil, err
end

local function gone(handle)
  return fail("not_found", "container %s is gone", tostring(handle.container):sub(1, 12))
end

-- Paths: relative to the sandbox's working directory, normalized lexically.
local function resolve(handle, path)
  if path:sub(1, 1) ~= "/" then path = (handle.workdir or WORKDIR) .. "/" .. path end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

local function random_id()
  local t = {}
  for i = 1, 12 do t[i] = ("%x"):format(math.random(0, 15)) end
  return "sandlot-" .. table.concat(t)
end

-- Image ---------------------------------------------------------------------------------------

local function split_image(image)
  local name, tag = image:match("^(.*):([%w_.%-]+)$")
  if name and not tag:find("/") then return name, tag end
  return image, "latest"
end

local function pull(ctx, image)
  local name, tag = split_image(image)
  local failure
  local buf = ""
  local res, err = api(ctx, { method = "POST", path = "/images/create",
                              query = { fromImage = name, tag = tag }, timeout = 1800,
                              retry = false,
                              on_chunk = function(chunk)
                                buf = buf .. chunk
                                for line in buf:gmatch("[^\n]+\n") do
                                  local j = http.decode_json(line)
                                  if type(j) == "table" and j.error then failure = j.error end
                                end
                                buf = buf:match("[^\n]*$")
                              end })
  if not res then return nil, err end
  if res.status ~= 200 then return docker_error(res, "pull " .. image, { [404] = "not_found" }) end
  if failure then return fail("not_found", "pull %s: %s", image, tostring(failure)) end
  return true
end

-- Create ----------------------------------------------------------------------------------------

local function container_body(ctx, opts, id, workdir)
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. tostring(v) end
  table.sort(env)
  local labels = { sandlot = "1", ["sandlot.id"] = id }
  for k, v in pairs(opts.labels or {}) do labels[tostring(k)] = tostring(v) end
  if opts.purpose then labels["sandlot.purpose"] = opts.purpose end
  local sleep = FOREVER
  if opts.timeout then
    sleep = tostring(math.ceil(opts.timeout))
    labels["sandlot.expires"] = tostring(os.time() + math.ceil(opts.timeout))
  end
  local host = { NetworkMode = "none", Init = false }
  if opts.network == "all" then host.NetworkMode = "default"
  elseif type(opts.network) == "table" then
    return fail("not_supported", "docker cannot enforce a network allow-list; " ..
                "use network = \"none\" or \"all\"")
  end
  if opts.memory_mb then host.Memory = opts.memory_mb * 1024 * 1024 end
  if opts.cpus then host.NanoCpus = math.floor(opts.cpus * 1e9) end
  if opts.privileged then host.Privileged = true end
  if opts.disk_mb then ctx.warn("disk_mb is not enforced by the docker provider") end
  local exposed, bindings
  for _, port in ipairs(opts.ports or {}) do
    if host.NetworkMode == "none" then
      return fail("invalid_input", "ports need network = \"all\" (the network is off)")
    end
    exposed, bindings = exposed or {}, bindings or {}
    exposed[port .. "/tcp"] = {}
    bindings[port .. "/tcp"] = { { HostIp = "127.0.0.1", HostPort = "" } }
  end
  host.PortBindings = bindings
  if opts.mounts then
    host.Binds = {}
    for _, m in ipairs(opts.mounts) do
      host.Binds[#host.Binds + 1] = m.source .. ":" .. m.target .. (m.readonly and ":ro" or "")
    end
  end
  local cmd = opts.command or { "sleep", sleep }
  return {
    Image = opts.image, Entrypoint = { cmd[1] }, Cmd = { table.unpack(cmd, 2) },
    Env = #env > 0 and env or nil, WorkingDir = workdir, Labels = labels, User = opts.user,
    Tty = false, OpenStdin = false, ExposedPorts = exposed, HostConfig = host,
    StopTimeout = 1,
  }
end

---Creates a container and starts it.
function M.create(ctx, opts)
  local cfg = ctx.config or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.image = o.image or cfg.image or DEFAULT_IMAGE
  local id = random_id()
  local workdir = o.cwd and resolve({ workdir = cfg.workdir or WORKDIR }, o.cwd)
                  or cfg.workdir or WORKDIR
  local body, berr = container_body(ctx, o, id, workdir)
  if not body then return nil, berr end
  local may_pull = o.pull
  if may_pull == nil then may_pull = cfg.pull end
  if may_pull == nil then may_pull = true end
  local res, err
  for attempt = 1, 2 do
    res, err = api(ctx, { method = "POST", path = "/containers/create",
                          query = { name = o.name or id }, json = body })
    if not res then return nil, err end
    if res.status ~= 404 or attempt == 2 then break end
    if not may_pull then
      return fail("not_found", "image %s is not present and pulling is off (pull = false)",
                  o.image)
    end
    local ok, perr = pull(ctx, o.image)
    if not ok then
      return nil, errors.wrap(perr, { message = ("image %s is not present and cannot be " ..
                                                 "pulled: %s"):format(o.image, perr.message) })
    end
  end
  if res.status ~= 201 then
    return docker_error(res, "create", { [409] = "already_exists", [400] = "invalid_input" })
  end
  local cid = res.json.Id
  local sres, serr = api(ctx, { method = "POST", path = "/containers/" .. cid .. "/start" })
  if not sres or (sres.status ~= 204 and sres.status ~= 304) then
    api(ctx, { method = "DELETE", path = "/containers/" .. cid, query = { force = 1, v = 1 } })
    if not sres then return nil, serr end
    return docker_error(sres, "start")
  end
  return { id = id, container = cid, workdir = workdir, image = o.image }
end

-- Exec ------------------------------------------------------------------------------------------

-- Runs "$@" with stdin from $2 so that a timeout or a cancellation can kill it with its
-- children (KILL). The wrapper's first line names the exec's tag ("#" .. pid file path), so
-- KILL finds the wrapper in /proc/*/cmdline. When the runtime has made the wrapper the leader
-- of its own process group (runc makes every exec a session leader) and this shell's read
-- shows that line as KILL will see it, "$@" runs in that group and KILL kills the group: no
-- pid file and no extra process per exec. Otherwise "$@" runs in a session of its own
-- (setsid) with its pid in $1.
local WRAP = [[
p=$1 i=$2; shift 2
g= l=; { read -r g1 g2 g3 g4 g g6 </proc/$$/stat; read -r l </proc/$$/cmdline; } 2>/dev/null
if case "$g $l" in "$$ "*"#$p") true;; *) false;; esac; then "$@" <"$i" & wait $!; r=$?
else
if command -v setsid >/dev/null 2>&1; then setsid "$@" <"$i" & else "$@" <"$i" & fi
c=$!; echo $c >"$p"; wait $c; r=$?; rm -f "$p"
fi
[ "$i" = /dev/null ] || rm -f "$i"
exit $r]]

-- $1: the exec's tag. The pid file when there is one, else every process group led by a
-- process whose command line, as read sees it (NULs dropped), ends its first line with the
-- wrapper's tag line; then the stdin file, which a killed wrapper leaves behind. This script's
-- own command line never has the tag line.
local KILL = [[p=/tmp/.sandlot-exec-$1
if c=$(cat "$p" 2>/dev/null); then
kill -9 "-$c" 2>/dev/null || kill -9 "$c" 2>/dev/null; rm -f "$p"; exit 0
fi
for f in /proc/[0-9]*/cmdline; do
w=${f#/proc/}; w=${w%/cmdline}; [ "$w" = "$$" ] && continue
l=; { read -r l <"$f"; } 2>/dev/null
case $l in *"#$p") kill -9 "-$w" 2>/dev/null;; esac
done
rm -f "/tmp/.sandlot-stdin-$1"; exit 0]]

local PIDFILE = "/tmp/.sandlot-exec-"      -- .. tag; KILL and the wrapper's first line agree
M._scripts = { wrap = WRAP, kill = KILL }  -- for the specs: the fallback path (no runc)

-- Output kept within a cap: the head and the tail, like sandlot.proc.
local function capture(cap)
  local c = { head = {}, hlen = 0, tail = {}, tlen = 0, total = 0 }
  local half = cap // 2
  function c.add(s)
    c.total = c.total + #s
    if c.total <= cap then
      c.head[#c.head + 1] = s
      c.hlen = c.hlen + #s
      return
    end
    if c.hlen < half then                 -- first overflow: keep exactly half as the head
      local all = table.concat(c.head) .. s
      c.head, c.hlen = { all:sub(1, half) }, half
      s = all:sub(half + 1)
    end
    c.tail[#c.tail + 1] = s
    c.tlen = c.tlen + #s
    if c.tlen > 4 * (cap - half) + 65536 then
      local t = table.concat(c.tail)
      c.tail = { t:sub(-(cap - half)) }
      c.tlen = #c.tail[1]
    end
  end
  function c.result()
    if c.total <= cap then return table.concat(c.head), false end
    local t = table.concat(c.tail)
    return table.concat(c.head) .. t:sub(-(cap - c.hlen)), true
  end
  return c
end

local function demux(on_frame)
  local buf = ""
  return function(chunk)
    buf = buf .. chunk
    local pos, n = 1, #buf
    while n - pos + 1 >= 8 do
      local stream = buf:byte(pos)
      local size = string.unpack(">I4", buf, pos + 4)
      if n - pos + 1 - 8 < size then break end
      on_frame(stream, buf:sub(pos + 8, pos + 7 + size))
      pos = pos + 8 + size
    end
    buf = pos > n and "" or buf:sub(pos)
  end
end

local function put_files(ctx, handle, entries)
  local pieces, size = tar.archive(entries)
  local i = 0
  local res, err = api(ctx, { method = "PUT", path = "/containers/" .. handle.container ..
                              "/archive", query = { path = "/", noOverwriteDirNonDir = "true" },
                              headers = { ["Content-Type"] = "application/x-tar" },
                              body_size = size, timeout = 60 + size / 1e6,
                              body = function() i = i + 1; return pieces[i] end })
  if not res then return nil, err end
  if res.status == 200 then return true end
  local msg = (res.json and res.json.message) or ""
  if res.status == 404 and msg:find("No such container") then return gone(handle) end
  if msg:find("overwrite") or msg:find("not a directory") then
    return docker_error(res, "write", { [400] = "invalid_input", [500] = "invalid_input" })
  end
  return docker_error(res, "write", { [403] = "permission_denied" })
end

local function exec_inspect(ctx, eid)
  local delay = 0.001
  for _ = 1, 200 do
    local res, err = api(ctx, { path = "/exec/" .. eid .. "/json", timeout = 10 })
    if not res then return nil, err end
    if res.status ~= 200 then return docker_error(res, "exec inspect") end
    if not res.json.Running and res.json.ExitCode ~= http.null then return res.json end
    task.sleep(delay)
    delay = math.min(delay * 2, 0.05)
  end
  return fail("timeout", "exec still running after its output ended")
end

local function exec_create(ctx, handle, cmd, env, cwd)
  local res, err = api(ctx, { method = "POST",
                              path = "/containers/" .. handle.container .. "/exec",
                              json = { AttachStdin = false, AttachStdout = true,
                                       AttachStderr = true, Tty = false, Cmd = cmd,
                                       Env = env, WorkingDir = cwd } })
  if not res then return nil, err end
  if res.status == 404 then return gone(handle) end
  if res.status == 409 then
    return docker_error(res, "exec", { [409] = "unavailable" })
  end
  if res.status ~= 201 then return docker_error(res, "exec create") end
  return res.json.Id
end

local function kill_exec(ctx, handle, tag)
  local eid = exec_create(ctx, handle, { "/bin/sh", "-c", KILL, "sandlot", tag })
  if not eid then return end
  api(ctx, { method = "POST", path = "/exec/" .. eid .. "/start",
             json = { Detach = true, Tty = false }, timeout = 10 })
end

-- OCI runtime failures arrive as text in the stream with exit code 126/127.
local function runtime_failure(r)
  local text = r.stdout .. r.stderr
  if r.exit_code ~= 126 and r.exit_code ~= 127 then return nil end
  if not text:find("OCI runtime exec failed", 1, true) then return nil end
  if text:find("chdir to cwd", 1, true) or text:find("no such file or directory", 1, true)
     or text:find("not found", 1, true) then
    return fail("not_found", "%s", (text:gsub("%s+$", ""):sub(1, 300)))
  end
  return fail("io_error", "%s", (text:gsub("%s+$", ""):sub(1, 300)))
end

---Runs argv in the container.
function M.exec(ctx, handle, argv, opts)
  local env
  for k, v in pairs(opts.env or {}) do
    env = env or {}
    env[#env + 1] = k .. "=" .. tostring(v)
  end
  local cwd = opts.cwd and resolve(handle, opts.cwd) or nil
  local tag = random_id():sub(9)
  local pidfile = PIDFILE .. tag
  local stdin_path = "/dev/null"
  local stdin = opts.stdin
  if type(stdin) == "function" then
    local parts = {}
    for chunk in stdin do parts[#parts + 1] = chunk end
    stdin = table.concat(parts)
  end
  if stdin ~= nil then
    stdin_path = "/tmp/.sandlot-stdin-" .. tag
    local ok, err = put_files(ctx, handle, { { name = stdin_path:sub(2), data = stdin,
                                               mode = 384 } })
    if not ok then return nil, err end
  end
  local cmd = { "/bin/sh", "-c", "#" .. pidfile .. "\n" .. WRAP, "sandlot", pidfile,
                stdin_path }
  for i = 1, #argv do cmd[#cmd + 1] = argv[i] end
  if cwd then                               -- the runtime's own error would be "OCI ... chdir"
    local res = api(ctx, { method = "HEAD", path = "/containers/" .. handle.container ..
                           "/archive", query = { path = cwd } })
    if res and res.status == 404 then
      return fail("not_found", "cwd %s does not exist in the sandbox", cwd)
    end
  end
  local eid, cerr = exec_create(ctx, handle, cmd, env, cwd)
  if not eid then return nil, cerr end
  local cap = opts.max_output or 16 * 1024 * 1024
  local out, err_ = capture(cap), capture(cap)
  local on_out, on_err = opts.on_stdout, opts.on_stderr
  local finished = false
  local guard <close> = setmetatable({}, { __close = function()
    if not finished then                  -- cancelled: kill what runs, from a task of its own
      task.spawn(kill_exec, ctx, handle, tag)
    end
  end })
  local res, serr = api(ctx, { method = "POST", path = "/exec/" .. eid .. "/start",
    json = { Detach = false, Tty = false }, retry = false, fresh_connect = true,
    timeout = opts.timeout or false, max_body = 1024 * 1024,
    on_chunk = demux(function(stream, data)
      if stream == 2 then
        err_.add(data)
        if on_err then on_err(data) end
      else
        out.add(data)
        if on_out then on_out(data) end
      end
    end) })
  local timed_out, duration = false, res and res.duration
  if not res then
    if serr.code ~= "timeout" or not opts.timeout then return nil, serr end
    timed_out, duration = true, opts.timeout
    kill_exec(ctx, handle, tag)
  elseif res.status == 404 then
    return gone(handle)
  elseif res.status ~= 200 and res.status ~= 101 then
    return docker_error(res, "exec start", { [409] = "unavailable" })
  end
  local info, ierr = exec_inspect(ctx, eid)
  finished = true
  if not info then return nil, ierr end
  local stdout, t1 = out.result()
  local stderr, t2 = err_.result()
  local r = {
    exit_code = info.ExitCode, stdout = stdout, stderr = stderr, timed_out = timed_out,
    truncated = t1 or t2, duration = duration or 0,
  }
  if timed_out then r.exit_code = 137 end     -- killed with SIGKILL, as sandlot.proc says
  if r.exit_code > 128 and r.exit_code < 160 then r.signal = r.exit_code - 128 end
  local rf, rerr = runtime_failure(r)
  if rerr then return rf, rerr end
  return r
end

-- Files -----------------------------------------------------------------------------------------

---Reads a file through GET /containers/{id}/archive (a tar holding the file).
function M.read_file(ctx, handle, path)
  local abs = resolve(handle, path)
  for _ = 1, 8 do                           -- follows symlinks a few levels
    local res, err = api(ctx, { path = "/containers/" .. handle.container .. "/archive",
                                query = { path = abs }, max_body = 8 * 1024 ^ 3 // 1,
                                timeout = 3600 })
    if not res then return nil, err end
    if res.status == 404 then
      local msg = (res.json and res.json.message) or ""
      if msg:find("No such container") then return gone(handle) end
      return fail("not_found", "%s: no such file", path)
    end
    if res.status ~= 200 then return docker_error(res, "read " .. path) end
    local ok, it = pcall(tar.entries, res.body)
    local e = ok and it() or nil
    if not e then return fail("bad_response", "read %s: the daemon sent no file", path) end
    if e.type == "directory" then return fail("invalid_input", "%s is a directory", path) end
    if e.type ~= "symlink" then return e.data or "" end
    abs = e.linkname:sub(1, 1) == "/" and e.linkname
          or resolve(handle, abs:match("^(.*)/[^/]*$") .. "/" .. e.linkname)
  end
  return fail("invalid_input", "%s: too many levels of symbolic links", path)
end

---Writes several files in one archive (parent directories are created by the daemon).
function M.write_files(ctx, handle, files)
  local entries = {}
  for i, f in ipairs(files) do
    entries[i] = { name = resolve(handle, f.path):sub(2), data = f.data, mode = f.mode }
  end
  return put_files(ctx, handle, entries)
end

function M.write_file(ctx, handle, path, data, opts)
  return M.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
end

-- Lifecycle -------------------------------------------------------------------------------------

local function inspect(ctx, handle)
  local res, err = api(ctx, { path = "/containers/" .. handle.container .. "/json" })
  if not res then return nil, err end
  if res.status == 404 then return gone(handle) end
  if res.status ~= 200 then return docker_error(res, "inspect") end
  return res.json
end

local STATUS = { running = "running", paused = "stopped", exited = "stopped",
                 created = "stopped", restarting = "unknown", removing = "terminated",
                 dead = "terminated" }

function M.status(ctx, handle)
  local info, err = inspect(ctx, handle)
  if not info then
    if err.code == "not_found" then return "terminated" end
    return nil, err
  end
  return STATUS[info.State and info.State.Status] or "unknown"
end

function M.reconnect(ctx, handle)
  local info, err = inspect(ctx, handle)
  if not info then return nil, err end
  if (info.Config.Labels or {})["sandlot.id"] ~= handle.id then
    return fail("not_found", "container %s is not sandbox %s", handle.container, handle.id)
  end
  return handle
end

local function post(ctx, handle, what, ok_statuses)
  local res, err = api(ctx, { method = "POST",
                              path = "/containers/" .. handle.container .. "/" .. what })
  if not res then return nil, err end
  if res.status == 404 then return gone(handle) end
  if ok_statuses[res.status] then return true end
  return nil, res
end

---Pauses the container (docker pause: every process frozen, memory kept).
function M.stop(ctx, handle)
  local ok, res = post(ctx, handle, "pause", { [204] = true })
  if ok or res == nil or not res.status then return ok, res end
  local st = M.status(ctx, handle)
  if st == "stopped" then return true end
  return docker_error(res, "pause", { [409] = "unavailable" })
end

---Unpauses the container, or starts it again when it has exited.
function M.start(ctx, handle)
  local info, err = inspect(ctx, handle)
  if not info then return nil, err end
  local state = info.State.Status
  if state == "running" then return true end
  local ok, res = post(ctx, handle, state == "paused" and "unpause" or "start",
                       { [204] = true, [304] = true })
  if ok or res == nil or not res.status then return ok, res end
  return docker_error(res, "start", { [409] = "unavailable" })
end

---Removes the container and its anonymous volumes. Idempotent.
function M.destroy(ctx, handle)
  local res, err = api(ctx, { method = "DELETE", path = "/containers/" .. handle.container,
                              query = { force = "true", v = "true" } })
  if not res then return nil, err end
  if res.status == 204 or res.status == 404 then return true end
  if res.status == 409 and ((res.json or {}).message or ""):find("in progress") then
    return true
  end
  return docker_error(res, "remove")
end

---http://127.0.0.1:<published port> for a port given to create's `ports`.
function M.get_url(ctx, handle, port)
  local info, err = inspect(ctx, handle)
  if not info then return nil, err end
  local ports = (info.NetworkSettings or {}).Ports
  local b = type(ports) == "table" and ports[port .. "/tcp"]
  if type(b) ~= "table" or type(b[1]) ~= "table" then
    return fail("invalid_input", "port %d is not published (create with ports = {%d} and " ..
                "network = \"all\")", port, port)
  end
  local ip = b[1].HostIp
  if ip == nil or ip == "" or ip == "0.0.0.0" then ip = "127.0.0.1" end
  if ip:find(":") then ip = "[" .. ip .. "]" end
  return ("http://%s:%s"):format(ip, b[1].HostPort)
end

-- gc ----------------------------------------------------------------------------------------

---Lists sandlot containers and removes those the rule (see the top of this file) selects.
---@param opts? {all?: boolean, older_than?: number, dry_run?: boolean}
---@return table|nil report {{id, container, state, reason, removed}}, sandlot.Error? err
function M._gc(ctx, opts)
  opts = opts or {}
  local filters = http.encode_json({ label = { "sandlot=1" } })
  local res, err = api(ctx, { path = "/containers/json",
                              query = { all = "true", filters = filters } })
  if not res then return nil, err end
  if res.status ~= 200 then return docker_error(res, "list") end
  local now = os.time()
  local report = {}
  for _, c in ipairs(res.json or {}) do
    local labels = c.Labels or {}
    local reason
    if labels["sandlot.keep"] == "1" then reason = nil
    elseif opts.all then reason = "all"
    elseif c.State ~= "running" and c.State ~= "paused" then reason = c.State
    elseif tonumber(labels["sandlot.expires"] or "") and
           tonumber(labels["sandlot.expires"]) < now then reason = "expired"
    elseif opts.older_than and c.Created and now - c.Created > opts.older_than then
      reason = "older than " .. opts.older_than .. "s"
    end
    local entry = { id = labels["sandlot.id"], container = c.Id, state = c.State,
                    reason = reason or "kept", removed = false }
    if reason and not opts.dry_run then
      local ok = M.destroy(ctx, { container = c.Id })
      entry.removed = ok == true
    end
    report[#report + 1] = entry
  end
  return report
end

return M
