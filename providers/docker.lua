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
-- Files move as tar archives (sandlot.wire.tar); ls, mkdir and rm use sandlot's exec
-- fallbacks. The Engine API goes through sandlot.api (errors, version negotiation, polling),
-- the exec stream through sandlot.wire.stdcopy: this file maps Docker's nouns to sandlot's.
-- API reference: ../shared/provider-apis/docker.md (Engine API v1.41).
--
-- list(ctx, {labels}) returns the sandboxes as handles. gc rule (`sandlot gc --provider
-- docker`, or M.gc): a container labelled sandlot=1 is
-- removed when it is not running and not paused (exited, dead, created), or when its
-- sandlot.expires label (creation + lifetime `timeout`) has passed, or, with --older-than N,
-- when it was created more than N seconds ago; --all removes every sandlot container.
-- A container labelled sandlot.keep=1 (create with labels = {["sandlot.keep"] = "1"}) is
-- never removed. Paused sandboxes are stopped ones the user may still start: they are kept.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local stdcopy = require("sandlot.wire.stdcopy")
local tar = require("sandlot.wire.tar")
local id = require("sandlot._id")
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

local function want_version(ctx)
  return (ctx.config and ctx.config.api_version) or API_VERSION
end

local specs = {}          -- DOCKER_HOST -> api spec (sandlot.api caches the version with it)

-- GET /version once per host and wanted version: the lower of the two is used.
local function negotiate(where)
  return function(c)
    local v, err = c:call("GET", "/version", { timeout = 10, retry = 2 })
    if not v then
      return nil, errors.new(err.code, ("cannot reach the Docker daemon at %s: %s")
                                          :format(where, err.message), { cause = err })
    end
    if type(v) ~= "table" then return fail("bad_response", "GET /version: not a JSON object") end
    local want = want_version(c.ctx)
    local server = v.ApiVersion
    if version_num(server) and version_num(server) < version_num(want) then want = server end
    return "/v" .. want
  end
end

-- The Engine API client for ctx's daemon.
local function client(ctx)
  local where = host_of(ctx)
  local spec = specs[where]
  if not spec then
    local sock = where:match("^unix://(.+)$") or (where:sub(1, 1) == "/" and where)
    if sock then
      spec = { unix_socket = sock, base_url = "http://docker" }
    elseif where:match("^tcp://") then
      spec = { base_url = "http://" .. where:sub(7) }
    else
      return fail("invalid_input", "DOCKER_HOST %s: only unix:// and tcp:// are supported", where)
    end
    spec.name, spec.timeout = "docker", 60
    spec.negotiate, spec.negotiate_key = negotiate(where), want_version
    specs[where] = spec
  end
  return api.client(ctx, spec)
end

-- The handle's container id, checked before it enters a URL path: a handle edited before
-- from_map must not address other Engine endpoints.
local function container(handle)
  local c = type(handle) == "table" and handle.container
  if type(c) ~= "string" or #c < 12 or #c > 64 or not c:match("^[0-9a-f]+$") then
    return fail("invalid_input", "the handle's container is not a Docker container id")
  end
  return "/containers/" .. c
end

-- Paths: relative to the sandbox's working directory, normalized lexically; a `..` above the
-- container's root is refused, not clamped.
local function resolve(handle, path)
  if path:sub(1, 1) ~= "/" then path = (handle.workdir or WORKDIR) .. "/" .. path end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return fail("invalid_input", "path %q leaves the sandbox", path) end
      parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

-- ["K=V"...] for Docker's Env; a false value is "K" alone, which the daemon reads as "remove
-- K" (moby's ReplaceOrAppendEnvValues), for the container and for an exec alike.
local function env_list(env)
  local list = {}
  for k, v in pairs(env or {}) do
    list[#list + 1] = v == false and k or k .. "=" .. tostring(v)
  end
  table.sort(list)
  return #list > 0 and list or nil
end

-- Image ---------------------------------------------------------------------------------------

local function split_image(image)
  local name, tag = image:match("^(.*):([%w_.%-]+)$")
  if name and not tag:find("/") then return name, tag end
  return image, "latest"
end

-- POST /images/create streams progress as NDJSON; a failure arrives as {"error": ...} in a
-- 200 stream.
local function pull(ctx, image)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local name, tag = split_image(image)
  local failure
  local ok, err = c:stream("POST", "/images/create", {
    query = { fromImage = name, tag = tag }, timeout = 1800, retry = false,
    on_frame = ndjson.decoder(function(j)
      if type(j) == "table" and j.error then failure = j.error end
    end) })
  if not ok then return nil, err end
  if failure then
    return fail("not_found", "pull %s: %s", image, c:scrub(tostring(failure)))
  end
  return true
end

-- Create ----------------------------------------------------------------------------------------

local function container_body(ctx, opts, sid, workdir)
  local labels = { sandlot = "1", ["sandlot.id"] = sid, ["sandlot.workdir"] = workdir }
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
    host.Binds = json.array()
    for _, m in ipairs(opts.mounts) do
      host.Binds[#host.Binds + 1] = m.source .. ":" .. m.target .. (m.readonly and ":ro" or "")
    end
  end
  local cmd = opts.command or { "sleep", sleep }
  return {
    Image = opts.image, Entrypoint = { cmd[1] }, Cmd = json.array({ table.unpack(cmd, 2) }),
    Env = env_list(opts.env), WorkingDir = workdir, Labels = labels, User = opts.user,
    Tty = false, OpenStdin = false, ExposedPorts = exposed, HostConfig = host,
    StopTimeout = 1,
  }
end

---Creates a container and starts it.
function M.create(ctx, opts)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local cfg = ctx.config or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.image = o.image or cfg.image or DEFAULT_IMAGE
  local sid = "sandlot-" .. id.hex(6)
  local workdir = cfg.workdir or WORKDIR
  if o.cwd then
    local w, werr = resolve({ workdir = workdir }, o.cwd)
    if not w then return nil, werr end
    workdir = w
  end
  local body, berr = container_body(ctx, o, sid, workdir)
  if not body then return nil, berr end
  local may_pull = o.pull
  if may_pull == nil then may_pull = cfg.pull end
  if may_pull == nil then may_pull = true end
  local made, err
  for attempt = 1, 2 do
    made, err = c:call("POST", "/containers/create", { query = { name = o.name or sid },
                                                       json = body, want = { 201 } })
    if made or err.status ~= 404 or attempt == 2 then break end
    if not may_pull then
      return fail("not_found", "image %s is not present and pulling is off (pull = false)",
                  o.image)
    end
    local ok, perr = pull(ctx, o.image)
    if not ok then
      return nil, errors.new(perr.code, ("image %s is not present and cannot be pulled: %s")
                                          :format(o.image, perr.message), { cause = perr })
    end
  end
  if not made then return nil, err end
  local handle = { id = sid, container = made.Id, workdir = workdir, image = o.image }
  local path, perr = container(handle)
  if not path then return nil, perr end
  local ok, serr = c:call("POST", path .. "/start", { want = { 204, 304 } })
  if not ok then
    c:call("DELETE", path, { query = { force = "true", v = "true" } })
    return nil, serr
  end
  return handle
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

-- The exec's output and result, shaped like sandlot.exec.sink (replacing this function with
-- it is the one edit when it lands): each stream keeps its head and tail within max_output,
-- on_stdout/on_stderr see every chunk.
local function sink(opts)
  local cap = opts.max_output or 16 * 1024 * 1024
  local half = cap // 2
  local function capture()
    local c = { head = {}, hlen = 0, tail = {}, tlen = 0, total = 0 }
    function c.add(s)
      c.total = c.total + #s
      if c.total <= cap then
        c.head[#c.head + 1] = s
        c.hlen = c.hlen + #s
        return
      end
      if c.hlen < half then               -- first overflow: keep exactly half as the head
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
    function c.text()
      if c.total <= cap then return table.concat(c.head), false end
      local t = table.concat(c.tail)
      return table.concat(c.head) .. t:sub(-(cap - c.hlen)), true
    end
    return c
  end
  local out, err = capture(), capture()
  local s = {}
  function s.add(_, stream, data)
    if stream == "stderr" then
      err.add(data)
      if opts.on_stderr then opts.on_stderr(data) end
    else
      out.add(data)
      if opts.on_stdout then opts.on_stdout(data) end
    end
  end
  function s.exit(_, code, signal) s.code, s.signal = code, signal end
  function s.result()
    local stdout, t1 = out.text()
    local stderr, t2 = err.text()
    return { exit_code = s.code, signal = s.signal, stdout = stdout, stderr = stderr,
             truncated = t1 or t2 }
  end
  return s
end

local function put_files(ctx, handle, entries)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local path, perr = container(handle)
  if not path then return nil, perr end
  local pieces, size = tar.archive(entries)
  local function refused(_, msg)
    if msg:find("overwrite") or msg:find("not a directory") then return "invalid_input" end
  end
  local ok, err = c:call("PUT", path .. "/archive", {
    query = { path = "/", noOverwriteDirNonDir = "true" },
    headers = { ["Content-Type"] = "application/x-tar" }, body_size = size,
    timeout = 60 + size / 1e6, body = pieces,
    want = { 200 }, errors = { [400] = refused, [500] = refused, [403] = "permission_denied" } })
  if not ok then return nil, err end
  return true
end

local function exec_inspect(c, eid)
  return c:poll(function()
    local info, err = c:call("GET", "/exec/" .. eid .. "/json", { timeout = 10, want = { 200 } })
    if not info then return nil, err end
    if not info.Running and info.ExitCode ~= json.null then return info end
    return false
  end, { timeout = 10, interval = 0.001, max_interval = 0.05,
         what = "the exec still runs after its output ended" })
end

local function exec_create(c, path, cmd, env, cwd)
  local made, err = c:call("POST", path .. "/exec", {
    json = { AttachStdin = false, AttachStdout = true, AttachStderr = true, Tty = false,
             Cmd = cmd, Env = env, WorkingDir = cwd },
    want = { 201 }, errors = { [409] = "unavailable" } })  -- 409: paused or not running
  if not made then return nil, err end
  return made.Id
end

local function kill_exec(c, path, tag)
  local eid = exec_create(c, path, { "/bin/sh", "-c", KILL, "sandlot", tag })
  if not eid then return end
  c:call("POST", "/exec/" .. eid .. "/start", { json = { Detach = true, Tty = false },
                                                timeout = 10 })
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
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local path, perr = container(handle)
  if not path then return nil, perr end
  local cwd
  if opts.cwd then
    local w, werr = resolve(handle, opts.cwd)
    if not w then return nil, werr end
    cwd = w
  end
  local tag = id.hex(6)
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
    local ok, err = c:call("HEAD", path .. "/archive", { query = { path = cwd } })
    if not ok and err.code == "not_found" then
      return nil, errors.new("not_found", ("cwd %s does not exist in the sandbox"):format(cwd),
                             { cause = err })
    end
  end
  local eid, xerr = exec_create(c, path, cmd, env_list(opts.env), cwd)
  if not eid then return nil, xerr end
  local out = sink(opts)
  local finished = false
  local guard <close> = setmetatable({}, { __close = function()
    if not finished then                  -- cancelled: kill what runs, from a task of its own
      task.spawn(kill_exec, c, path, tag)
    end
  end })
  local res, serr = c:stream("POST", "/exec/" .. eid .. "/start", {
    json = { Detach = false, Tty = false }, retry = false, fresh_connect = true,
    timeout = opts.timeout or false, max_body = 1024 * 1024, errors = { [409] = "unavailable" },
    on_frame = stdcopy.decoder(function(stream, data)
      if stream == "system" then                    -- as moby's StdCopy: the daemon's error
        return nil, errors.new("io_error", "error from the daemon in the stream: " ..
                                           c:scrub(data))
      end
      out:add(stream == "stderr" and "stderr" or "stdout", data)   -- stdin frames: stdout
    end) })
  local timed_out, duration = false, res and res.duration
  if not res then
    if serr.code ~= "timeout" or not opts.timeout then return nil, serr end
    timed_out, duration = true, opts.timeout
    kill_exec(c, path, tag)
  end
  local info, ierr = exec_inspect(c, eid)
  finished = true
  if not info then return nil, ierr end
  if timed_out then out:exit(137, 9)      -- we killed it with SIGKILL
  else out:exit(info.ExitCode) end
  local r = out:result()
  r.timed_out, r.duration = timed_out, duration or 0
  local rf, rerr = runtime_failure(r)
  if rerr then return rf, rerr end
  return r
end

-- Files -----------------------------------------------------------------------------------------

---Reads a file through GET /containers/{id}/archive (a tar holding the file).
function M.read_file(ctx, handle, path)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local base, perr = container(handle)
  if not base then return nil, perr end
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  for _ = 1, 8 do                           -- follows symlinks a few levels
    local body, err = c:call("GET", base .. "/archive", { query = { path = abs },
                             max_body = 8 * 1024 ^ 3 // 1, timeout = 3600, want = { 200 },
                             decode = false })
    if not body then return nil, err end
    local entries, terr = tar.list(body)
    if not entries then return nil, terr end
    local e = entries[1]
    if not e then return fail("bad_response", "read %s: the daemon sent no file", path) end
    if e.type == "directory" then return fail("invalid_input", "%s is a directory", path) end
    if e.type ~= "symlink" then return e.data or "" end
    local nxt, lerr = resolve(handle, e.linkname:sub(1, 1) == "/" and e.linkname
                                      or abs:match("^(.*)/[^/]*$") .. "/" .. e.linkname)
    if not nxt then return nil, lerr end
    abs = nxt
  end
  return fail("invalid_input", "%s: too many levels of symbolic links", path)
end

---Writes several files in one archive (parent directories are created by the daemon).
function M.write_files(ctx, handle, files)
  local entries = {}
  for i, f in ipairs(files) do
    local abs, err = resolve(handle, f.path)
    if not abs then return nil, err end
    entries[i] = { name = abs:sub(2), data = f.data, mode = f.mode }
  end
  return put_files(ctx, handle, entries)
end

function M.write_file(ctx, handle, path, data, opts)
  return M.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
end

-- Lifecycle -------------------------------------------------------------------------------------

local function inspect(ctx, handle)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local path, perr = container(handle)
  if not path then return nil, perr end
  return c:call("GET", path .. "/json", { want = { 200 } })
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

local function post(ctx, handle, what, want)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local path, perr = container(handle)
  if not path then return nil, perr end
  return c:call("POST", path .. "/" .. what, { want = want, errors = { [409] = "unavailable" } })
end

---Pauses the container (docker pause: every process frozen, memory kept).
function M.stop(ctx, handle)
  local ok, err = post(ctx, handle, "pause", { 204 })
  if ok then return true end
  if err.status == 409 and M.status(ctx, handle) == "stopped" then return true end
  return nil, err
end

---Unpauses the container, or starts it again when it has exited.
function M.start(ctx, handle)
  local info, err = inspect(ctx, handle)
  if not info then return nil, err end
  local state = info.State.Status
  if state == "running" then return true end
  local ok, perr = post(ctx, handle, state == "paused" and "unpause" or "start", { 204, 304 })
  if not ok then return nil, perr end
  return true
end

---Removes the container and its anonymous volumes. Idempotent.
function M.destroy(ctx, handle)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local path, perr = container(handle)
  if not path then return nil, perr end
  local ok, err = c:call("DELETE", path, { query = { force = "true", v = "true" },
                                           want = { 204 } })
  if ok or err.status == 404 then return true end
  if err.status == 409 and err.message:find("in progress", 1, true) then return true end
  return nil, err
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

-- list and gc -------------------------------------------------------------------------------

-- GET /containers/json for sandlot containers with every label given (k = v, or k = true
-- for "has k").
local function containers(ctx, labels)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local filter = { "sandlot=1" }
  local keys = {}
  for k in pairs(labels or {}) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = labels[k]
    filter[#filter + 1] = v == true and k or k .. "=" .. tostring(v)
  end
  local list, err = c:call("GET", "/containers/json", {
    query = { all = "true", filters = json.encode({ label = filter }) }, want = { 200 } })
  if not list then return nil, err end
  if type(list) ~= "table" then return fail("bad_response", "the container list is not a list") end
  return list
end

---Lists the provider's sandboxes (plain handles, as create returns them), optionally only
---those carrying the given labels.
---@param opts? {labels?: table<string, string|true>}
---@return table[]|nil handles, sandlot.Error? err
function M.list(ctx, opts)
  local list, err = containers(ctx, opts and opts.labels)
  if not list then return nil, err end
  local out = {}
  for _, ct in ipairs(list) do
    local labels = ct.Labels or {}
    if type(labels["sandlot.id"]) == "string" then
      out[#out + 1] = { id = labels["sandlot.id"], container = ct.Id,
                        workdir = labels["sandlot.workdir"] or WORKDIR, image = ct.Image }
    end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

---Lists sandlot containers and removes those the rule (see the top of this file) selects.
---@param opts? {all?: boolean, older_than?: number, dry_run?: boolean}
---@return table|nil report {{id, container, state, reason, removed}}, sandlot.Error? err
function M.gc(ctx, opts)
  opts = opts or {}
  local list, err = containers(ctx, nil)
  if not list then return nil, err end
  local now = os.time()
  local report = {}
  for _, ct in ipairs(list) do
    local labels = ct.Labels or {}
    local reason
    if labels["sandlot.keep"] == "1" then reason = nil
    elseif opts.all then reason = "all"
    elseif ct.State ~= "running" and ct.State ~= "paused" then reason = ct.State
    elseif tonumber(labels["sandlot.expires"] or "") and
           tonumber(labels["sandlot.expires"]) < now then reason = "expired"
    elseif opts.older_than and ct.Created and now - ct.Created > opts.older_than then
      reason = "older than " .. opts.older_than .. "s"
    end
    local entry = { id = labels["sandlot.id"], container = ct.Id, state = ct.State,
                    reason = reason or "kept", removed = false }
    if reason and not opts.dry_run then
      local ok = M.destroy(ctx, { container = ct.Id })
      entry.removed = ok == true
    end
    report[#report + 1] = entry
  end
  return report
end

return M
