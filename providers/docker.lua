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
-- and its children; its output and result go through sandlot.exec's sink. Given stdin, exec
-- and spawn (a live process) carry it over the exec's hijacked attach stream (sandlot.api's
-- c:upgrade), never through a file.
-- Files move as tar archives (sandlot.wire.tar); ls, mkdir and rm use sandlot's exec
-- fallbacks. The Engine API goes through sandlot.api (errors, version negotiation, polling),
-- the exec stream through sandlot.wire.stdcopy: this file maps Docker's nouns to sandlot's.
-- API reference: ../shared/provider-apis/docker.md (Engine API v1.41).
--
-- With exec_agent = true (off by default), exec goes through a long-lived agent in the
-- container instead of one docker exec per command (sandlot._native.docker_agent).
-- list(ctx, {labels}) returns the sandboxes as handles. gc rule (`sandlot gc --provider
-- docker`, or M.gc): a container labelled sandlot=1 is
-- removed when it is not running and not paused (exited, dead, created), or when its
-- sandlot.expires label (creation + lifetime `timeout`) has passed, or, with opts.older_than = N,
-- when it was created more than N seconds ago; opts.all removes every sandlot container.
-- A container labelled sandlot.keep=1 (create with labels = {["sandlot.keep"] = "1"}) is
-- never removed. Paused sandboxes are stopped ones the user may still start: they are kept.
-- Native checkpoints are committed images; sandlot.create(p, {from = ck}) runs a container of
-- one (checkpoint, checkpoints, create_from, delete_checkpoint, and the files, get_url, list
-- and gc: sandlot._native.docker).
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local stdcopy = require("sandlot.wire.stdcopy")
local check = require("sandlot._check")
local exec = require("sandlot.exec")
local fs = require("sandlot.fs")
local id = require("sandlot.id")
local task = require("sandlot.task")
local agent = require("sandlot._native.docker_agent")

local M = {
  name = "docker",
  description = "Docker Engine containers (API over the unix socket)",
  capabilities = { files = true, background = true, url = true, pty = true },
  config = { host = "string", image = "string", pull = "boolean", workdir = "string",
             api_version = "string", exec_agent = "boolean" },
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

-- An API version ("1.41", from config or the daemon) as a number to compare, or nil. Only
-- versions that match enter the URL path.
local function version_num(v)
  local a, b = (type(v) == "string" and v or ""):match("^(%d%d?)%.(%d%d?%d?)$")
  return a and tonumber(a) * 1000 + tonumber(b) or nil
end

-- The daemon's address and where it came from (for errors). An empty DOCKER_HOST is unset,
-- as the docker CLI has it.
local function host_of(ctx)
  if ctx.config and ctx.config.host then return ctx.config.host, "the provider's host option" end
  local env = os.getenv("DOCKER_HOST")
  if env and env ~= "" then return env, "$DOCKER_HOST" end
  return "unix:///var/run/docker.sock",
         "the default; set DOCKER_HOST or the provider's host option for another"
end

-- Why a daemon could not be reached, in words a user can act on: for a unix socket, whether
-- the file is there at all (curl's own text names a made-up host, "docker port 80").
local function unreachable(where, source, err)
  local sock = where:match("^unix://(.+)$") or (where:sub(1, 1) == "/" and where)
  local why = err.message
  if sock then
    local st = fs.stat(sock)
    if not st then
      why = "the socket does not exist (is dockerd running?)"
    elseif err.message:find("Permission denied", 1, true)
        or err.message:find("EACCES", 1, true) then
      why = "permission denied on the socket (is this user in the docker group?)"
    else
      why = "nothing answers on the socket (is dockerd running?)"
    end
  end
  return errors.new(err.code, ("cannot reach the Docker daemon at %s (%s): %s")
                                :format(where, source, why),
                    { cause = err, via = err.via, retryable = err.retryable })
end

local function want_version(ctx)
  return (ctx.config and ctx.config.api_version) or API_VERSION
end

local specs = {}          -- DOCKER_HOST -> api spec (sandlot.api caches the version with it)

-- GET /version once per host and wanted version: the lower of the two is used.
local function negotiate(where, source)
  return function(c)
    local v, err = c:call("GET", "/version", { timeout = 10, retry = 2 })
    if not v then return nil, unreachable(where, source, err) end
    if type(v) ~= "table" then return fail("bad_response", "GET /version: not a JSON object") end
    local want = want_version(c.ctx)
    if not version_num(want) then
      return fail("invalid_input", "docker: api_version %q is not a version such as %s",
                  want:sub(1, 40), API_VERSION)
    end
    local server = v.ApiVersion
    if version_num(server) and version_num(server) < version_num(want) then want = server end
    return "/v" .. want
  end
end

-- The Engine API client for ctx's daemon.
local function client(ctx)
  local where, source = host_of(ctx)
  local spec = specs[where]
  if not spec then
    local sock = where:match("^unix://(.+)$") or (where:sub(1, 1) == "/" and where)
    if sock then
      spec = { unix_socket = sock, base_url = "http://docker" }
    elseif where:match("^tcp://") then
      spec = { base_url = "http://" .. where:sub(7) }
    else
      return fail("invalid_input", "docker host %s (%s): only unix:// and tcp:// are supported",
                  where, source)
    end
    spec.name, spec.timeout = "docker", 60
    spec.negotiate, spec.negotiate_key = negotiate(where, source), want_version
    specs[where] = spec
  end
  return api.client(ctx, spec)
end

-- Handle values are world input (a handle may come from an edited from_map): the container
-- id is checked before it enters a URL path, the working directory before paths build on it.
local CONTAINER_ID = "^" .. ("[0-9a-f]"):rep(12) .. "[0-9a-f]*$"

local function container(handle)
  local cid, err = check.id(type(handle) == "table" and handle.container or nil, CONTAINER_ID,
                            "the handle's Docker container id", 64)
  if not cid then return nil, err end
  return "/containers/" .. cid
end

-- The client and the container's API path, which every call on a sandbox starts from.
local function open(ctx, handle)
  local c, err = client(ctx)
  if not c then return nil, err end
  local path, perr = container(handle)
  if not path then return nil, perr end
  return c, path
end

-- A call on the container's own endpoint (what: "/json", "/pause", "" ...).
local function on_container(ctx, handle, method, what, opts)
  local c, path = open(ctx, handle)
  if not c then return nil, path end
  return c:call(method, path .. what, opts)
end

-- Paths: relative to the sandbox's working directory, normalized lexically (sandlot.fs.path);
-- a `..` above the container's root is refused, not clamped.
local function resolve(handle, path)
  if handle.workdir == nil or path:sub(1, 1) == "/" then return fs.path(WORKDIR, path) end
  local wd, err = check.id(handle.workdir, "^/[^%z\n]*$", "the handle's workdir", 4096)
  if not wd then return nil, err end
  return fs.path(wd, path)
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
  local layers, what = {}, "pulling " .. image           -- layer id -> {current, total}
  local ok, err = c:stream("POST", "/images/create", {
    query = { fromImage = name, tag = tag }, timeout = 1800, retry = false,
    on_frame = ndjson.decoder(function(j)
      if type(j) ~= "table" then return end
      if j.error then failure = j.error end
      local d = j.progressDetail
      if type(j.id) == "string" and type(d) == "table" and tonumber(d.total) then
        layers[j.id] = { tonumber(d.current) or 0, tonumber(d.total) }
        local done, total = 0, 0
        for _, l in pairs(layers) do done, total = done + l[1], total + l[2] end
        if ctx.progress then
          ctx.progress("create", { done = done, total = total }, { what = what, unit = "bytes" })
        end
      end
    end) })
  if not ok then return nil, err end
  if failure then
    return fail("not_found", "pull %s: %s", image, c:scrub(tostring(failure)))
  end
  return true
end

-- Create ----------------------------------------------------------------------------------------

local function container_body(ctx, opts, image, sid, workdir)
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
  local cmd = opts.command and check.argv(opts.command, "create: opts.command")
              or { "sleep", sleep }
  return {
    Image = image, Entrypoint = { cmd[1] }, Cmd = json.array({ table.unpack(cmd, 2) }),
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
  local image = opts.image or cfg.image or DEFAULT_IMAGE
  local sid = "sandlot-" .. id.hex(6)
  local workdir = cfg.workdir or WORKDIR
  if opts.cwd then
    local w, werr = resolve({ workdir = workdir }, opts.cwd)
    if not w then return nil, werr end
    workdir = w
  end
  local body, berr = container_body(ctx, opts, image, sid, workdir)
  if not body then return nil, berr end
  local may_pull = opts.pull
  if may_pull == nil then may_pull = cfg.pull ~= false end
  local made, err
  for attempt = 1, 2 do
    made, err = c:call("POST", "/containers/create", { query = { name = opts.name or sid },
                                                       json = body, want = { 201 } })
    if made or err.status ~= 404 or attempt == 2 then break end
    if not may_pull then
      return fail("not_found", "image %s is not present and pulling is off (pull = false)",
                  image)
    end
    local ok, perr = pull(ctx, image)
    if not ok then
      return nil, errors.new(perr.code, ("image %s is not present and cannot be pulled: %s")
                                          :format(image, perr.message),
                             { cause = perr, via = perr.via, retryable = perr.retryable })
    end
  end
  if not made then return nil, err end
  local handle = { id = sid, container = made.Id, workdir = workdir, image = image }
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

-- Runs "$@" with stdin from $2 (a file, or "-": the exec's own, which an asynchronous list
-- would otherwise replace with /dev/null) so that a timeout or a cancellation can kill it with
-- its children (KILL). The wrapper's first line names the exec's tag ("#" .. pid file path), so
-- KILL finds the wrapper in /proc/*/cmdline. When the runtime has made the wrapper the leader
-- of its own process group (runc makes every exec a session leader) and this shell's read
-- shows that line as KILL will see it, "$@" runs in that group and KILL kills the group: no
-- pid file and no extra process per exec. Otherwise "$@" runs in a session of its own
-- (setsid) with its pid in $1.
local WRAP = [[
p=$1 i=$2; shift 2
if [ "$i" = - ]; then exec 3<&0; else exec 3<"$i"; fi
g= l=; { read -r g1 g2 g3 g4 g g6 </proc/$$/stat; read -r l </proc/$$/cmdline; } 2>/dev/null
if case "$g $l" in "$$ "*"#$p") true;; *) false;; esac; then "$@" <&3 3<&- & wait $!; r=$?
else
if command -v setsid >/dev/null 2>&1; then setsid "$@" <&3 3<&- & else "$@" <&3 3<&- & fi
c=$!; echo $c >"$p"; wait $c; r=$?; rm -f "$p"
fi
exit $r]]

-- The wrapper of a spawn on a terminal (Tty true): $2 is the size, set from inside as well
-- (API v1.41 has no size at start, and a resize can land after the command looked); "$@"
-- runs in the foreground, so it gets the terminal's Ctrl-C, which this shell only catches
-- (a background job's SIGINT would be ignored, and a caught one is not inherited).
local WRAP_PTY = [[
p=$1 s=$2; shift 2
stty rows "${s%x*}" cols "${s#*x}" 2>/dev/null
trap : INT QUIT; echo $$ >"$p"; "$@"; r=$?; rm -f "$p"; exit $r]]

-- $1: the exec's tag, $2: the signal (default 9). The pid file when there is one, else every
-- process group led by a process whose command line, as read sees it (NULs dropped), ends its
-- first line with the wrapper's tag line. This script's own command line never has that line.
local KILL = [[p=/tmp/.sandlot-exec-$1 s=${2:-9}
if c=$(cat "$p" 2>/dev/null); then
kill -$s "-$c" 2>/dev/null || kill -$s "$c" 2>/dev/null; [ "$s" = 9 ] && rm -f "$p"; exit 0
fi
for f in /proc/[0-9]*/cmdline; do
w=${f#/proc/}; w=${w%/cmdline}; [ "$w" = "$$" ] && continue
l=; { read -r l <"$f"; } 2>/dev/null
case $l in *"#$p") kill -$s "-$w" 2>/dev/null;; esac
done
exit 0]]

local PIDFILE = "/tmp/.sandlot-exec-"      -- .. tag; KILL and the wrapper's first line agree
M._scripts = { wrap = WRAP, kill = KILL }  -- for the specs: the fallback path (no runc)

-- The exec's state: its inspect answer once it has exited, false while it runs, or nil, err.
local function exec_state(c, eid)
  local info, err = c:call("GET", "/exec/" .. eid .. "/json", { timeout = 10, want = { 200 } })
  if not info then return nil, err end
  if type(info) ~= "table" then
    return fail("bad_response", "GET /exec/%s/json: not a JSON object", eid)
  end
  if info.Running or info.ExitCode == json.null then return false end
  if math.type(info.ExitCode) ~= "integer" then
    return fail("bad_response", "GET /exec/%s/json: ExitCode is not an integer", eid)
  end
  return info
end

-- Waits for the exit of an exec whose output has ended (a moment, at most 10 s).
local function exec_inspect(c, eid)
  return c:poll(function() return exec_state(c, eid) end,
                { timeout = 10, interval = 0.001, max_interval = 0.05,
                  what = "the exec still runs after its output ended" })
end

local function exec_create(c, path, cmd, env, cwd, stdin, tty)
  local made, err = c:call("POST", path .. "/exec", {
    json = { AttachStdin = stdin == true, AttachStdout = true, AttachStderr = true,
             Tty = tty == true,
             Cmd = cmd, Env = env, WorkingDir = cwd },
    want = { 201 }, errors = { [409] = "unavailable" } })  -- 409: paused or not running
  if not made then return nil, err end
  return check.id(type(made) == "table" and made.Id or nil, "^[0-9a-f]+$", "Docker's exec id",
                  64)
end

-- Sends signal `sig` (default 9) to the process group of the exec tagged `tag` (KILL).
local function kill_exec(c, path, tag, sig)
  local eid = exec_create(c, path, { "/bin/sh", "-c", KILL, "sandlot", tag, tostring(sig or 9) })
  if not eid then return end
  c:call("POST", "/exec/" .. eid .. "/start", { json = { Detach = true, Tty = false },
                                                timeout = 10 })
end

-- The kill of a close or a cancellation that cannot wait: a cleanup task of its own (the host
-- waits for it before it exits), bounded.
local function queue_kill(c, path, tag)
  task.cleanup(function() task.timeout(30, kill_exec, c, path, tag, 9) end)
end

-- An exec's result, unless it is an OCI runtime failure: text in the stream, exit code 126
-- or 127.
local function checked(r)
  local text = r.stdout .. r.stderr
  if r.exit_code ~= 126 and r.exit_code ~= 127 then return r end
  if not text:find("OCI runtime exec failed", 1, true) then return r end
  local missing = text:find("chdir to cwd", 1, true) or text:find("not found", 1, true)
                  or text:find("no such file or directory", 1, true)
  return fail(missing and "not_found" or "io_error", "%s", (text:gsub("%s+$", ""):sub(1, 300)))
end

-- A "system" frame in an exec's stream (as moby's StdCopy reads it) is the daemon's error.
local function daemon_error(c, data)
  return nil, errors.new("io_error", "error from the daemon in the stream: " .. c:scrub(data))
end

-- What exec and spawn share: the client, the container's path, a tag, the wrapped command
-- (stdin from /dev/null, or "-": the attach stream's) and the checked cwd.
local function prepare(ctx, handle, argv, opts, stdin_path, wrap)
  local c, path = open(ctx, handle)
  if not c then return nil, path end
  local cwd
  if opts.cwd then
    local w, werr = resolve(handle, opts.cwd)
    if not w then return nil, werr end
    cwd = w
    -- the runtime's own error would be "OCI ... chdir"
    local ok, err = c:call("HEAD", path .. "/archive", { query = { path = cwd } })
    if not ok and err.code == "not_found" then
      return nil, errors.new("not_found", ("cwd %s does not exist in the sandbox"):format(cwd),
                             { cause = err })
    end
  end
  local tag = id.hex(6)
  local pidfile = PIDFILE .. tag
  local cmd = { "/bin/sh", "-c", "#" .. pidfile .. "\n" .. (wrap or WRAP), "sandlot", pidfile,
                stdin_path or "/dev/null" }
  for i = 1, #argv do cmd[#cmd + 1] = argv[i] end
  return { c = c, path = path, tag = tag, cmd = cmd, cwd = cwd }
end

-- An exec with stdin: the attach stream carries stdin in (written by a task of its own, then
-- half-closed: the command reads end of file) and the frames out to on_frame, within `timeout`
-- seconds (nil, err{timeout} when they run out).
local function attached(c, eid, stdin, on_frame, timeout)
  local s, err = c:upgrade("POST", "/exec/" .. eid .. "/start", {
    json = { Detach = false, Tty = false }, errors = { [409] = "unavailable" } })
  if not s then return nil, err end
  local _stream <close> = s
  local writer = task.spawn(function()        -- fails once the command has gone: ignored
    local chunk = type(stdin) == "string" and stdin or stdin()
    while chunk ~= nil do                    -- a string, or a producer's chunks up to nil
      if not s:write(chunk) then return end
      chunk = type(stdin) ~= "string" and stdin() or nil
    end
    s:shutdown()
  end)
  local dec = stdcopy.decoder(on_frame)
  local function pump()
    while true do
      local data, rerr = s:read(65536)
      if data == nil then
        if rerr then return nil, rerr end
        return dec:finish()                -- a frame cut short is bad_response
      end
      local ok, ferr = dec(data)
      if not ok then return nil, ferr end
    end
  end
  local ok, perr
  if timeout then ok, perr = task.timeout(timeout, pump) else ok, perr = pump() end
  writer:cancel()                          -- the command may end without reading it all
  pcall(writer.join, writer)
  return ok, perr
end

-- The plain path: one docker exec per command.
local function docker_exec(ctx, handle, argv, opts)
  local x, xerr = prepare(ctx, handle, argv, opts, opts.stdin ~= nil and "-" or nil)
  if not x then return nil, xerr end
  local c, path, tag = x.c, x.path, x.tag
  local eid, eerr = exec_create(c, path, x.cmd, env_list(opts.env), x.cwd, opts.stdin ~= nil)
  if not eid then return nil, eerr end
  local out <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                on_stderr = opts.on_stderr }
  local finished = false
  local _guard <close> = setmetatable({}, { __close = function()
    if not finished then queue_kill(c, path, tag) end    -- cancelled: kill it from a task
  end })
  local function on_frame(stream, data)
    if stream == "system" then return daemon_error(c, data) end
    out:add(stream == "stderr" and "stderr" or "stdout", data)     -- stdin frames: stdout
  end
  local ok, serr
  if opts.stdin ~= nil then
    ok, serr = attached(c, eid, opts.stdin, on_frame, opts.timeout)
  else
    ok, serr = c:stream("POST", "/exec/" .. eid .. "/start", {
      json = { Detach = false, Tty = false }, retry = false, fresh_connect = true,
      timeout = opts.timeout or false, max_body = 1024 * 1024,
      errors = { [409] = "unavailable" }, on_frame = stdcopy.decoder(on_frame) })
  end
  if not ok then
    if serr.code ~= "timeout" or not opts.timeout then return nil, serr end
    out:timed_out()                       -- the result: killed by SIGKILL (137), timed_out
    kill_exec(c, path, tag)
  end
  local info, ierr = exec_inspect(c, eid)
  finished = true
  if not info then return nil, ierr end
  if ok then out:exit(info.ExitCode) end
  return checked(out:result())
end

local agent_h = { exec = docker_exec, resolve = resolve }

---Runs argv in the container: through the exec agent with exec_agent = true (see
---sandlot._native.docker_agent), else, or where the agent cannot, with a docker exec.
function M.exec(ctx, handle, argv, opts)
  if ctx.config and ctx.config.exec_agent then
    local r, err, fallback = agent.exec(M, agent_h, ctx, handle, argv, opts)
    if not fallback then return r, err end
  end
  return docker_exec(ctx, handle, argv, opts)
end

-- Processes -------------------------------------------------------------------------------------
-- spawn: the exec's stdin, stdout and stderr over the Engine API's attach stream (POST
-- /exec/{id}/start hijacked, Tty false), its frames demuxed by wire.stdcopy; the exit code
-- from GET /exec/{id}/json. The command runs under the exec wrapper, so kill and close reach
-- its process group as an exec's timeout does. Contract: providers/README.md, "spawn".

local QUEUE_MAX = 4 * 1024 * 1024        -- bytes wait takes into the queue before it stops

local Process = {}
Process.__index = Process

-- Reads one chunk of the stream into the queue. Returns true, or nil, err (cancelled: the
-- chunk stays in the stream's own queue, so nothing is lost).
local function pull_frames(p)
  local data, err = p.s:read(65536)
  if data then
    local ok, derr = p.dec(data)
    if not ok then p.err = derr end
    return true
  end
  if err then
    if err.code ~= "cancelled" and err.code ~= "timeout" then p.err = err end
    return nil, err
  end
  local ok, ferr = p.dec:finish()          -- a frame cut short is bad_response
  if not ok then p.err = ferr end
  p.eof = true
  return true
end

function Process:read()
  while true do
    local f = self.q[self.qi]
    if f then
      self.q[self.qi], self.qi = nil, self.qi + 1
      self.qbytes = self.qbytes - #f[2]
      return f[1], f[2]
    end
    if self.err then return nil, self.err end
    if self.eof then return nil end
    local ok, err = pull_frames(self)
    if not ok then return nil, err end
  end
end

function Process:write(data)
  if self.stdin_closed then return fail("invalid_input", "the process's stdin is closed") end
  return self.s:write(data)
end

function Process:close_stdin()
  if self.stdin_closed then return true end
  self.stdin_closed = true
  return self.s:shutdown()
end

function Process:wait()
  if self.result then return self.result end
  while not self.eof and not self.err and self.qbytes < QUEUE_MAX do
    local ok, err = pull_frames(self)
    if not ok then return nil, err end
  end
  local info, ierr
  if self.eof then
    info, ierr = exec_inspect(self.c, self.eid)
  else                                     -- output nobody reads: wait for the exit alone
    info, ierr = self.c:poll(function() return exec_state(self.c, self.eid) end,
                             { timeout = 1e9, interval = 0.05, max_interval = 1 })
  end
  if not info then return nil, ierr end
  self.done = true
  local sig = self.sent
  if not (sig and info.ExitCode == 128 + sig) then sig = nil end
  self.sink:exit(info.ExitCode, sig)       -- Docker tells the code; a signal we sent, we know
  self.result = self.sink:result()
  return self.result
end

function Process:kill(sig)
  local exited, err = self.done, nil
  if not exited then exited, err = exec_state(self.c, self.eid) end  -- keeps exec_state's err
  if exited == nil then return nil, err end
  if exited then return fail("not_found", "the process has exited") end
  local n = math.type(sig) == "integer" and sig or exec.signal_number(tostring(sig or "TERM"))
  if not n then return fail("invalid_input", "unknown signal %s", tostring(sig)) end
  self.sent = n
  kill_exec(self.c, self.path, self.tag, n)
  return true
end

-- POST /exec/{id}/resize (the daemon waits for the exec to have started).
function Process:resize(rows, cols)
  if not self.tty then return fail("invalid_input", "the process has no terminal") end
  local ok, err = self.c:call("POST", "/exec/" .. self.eid .. "/resize", {
    query = { h = tostring(rows), w = tostring(cols) }, want = { 200, 201 }, decode = false })
  if ok == nil then return nil, err end
  return true
end

-- Never yields: the kill of what still runs is a cleanup task of its own.
function Process:close()
  if self.closed then return true end
  self.closed = true
  if not self.done then queue_kill(self.c, self.path, self.tag) end
  self.s:close()
  self.sink:close()
  return true
end

---Starts argv in the container with stdin, stdout and stderr open (see Processes above).
---With opts.pty the exec has a terminal (Tty true): the attach stream is then raw output, not
---stdcopy frames, and resize is POST /exec/{id}/resize.
function M.spawn(ctx, handle, argv, opts)
  local tty = opts.pty
  local x, xerr = prepare(ctx, handle, argv, opts,
                          tty and ("%dx%d"):format(tty.rows, tty.cols) or "-", tty and WRAP_PTY)
  if not x then return nil, xerr end
  local env = opts.env
  if tty then                              -- a terminal type, unless the caller names one
    env = { TERM = "xterm" }
    for k, v in pairs(opts.env or {}) do env[k] = v end
  end
  local eid, eerr = exec_create(x.c, x.path, x.cmd, env_list(env), x.cwd, true, tty ~= nil)
  if not eid then return nil, eerr end
  local s, serr = x.c:upgrade("POST", "/exec/" .. eid .. "/start", {
    json = { Detach = false, Tty = tty ~= nil }, errors = { [409] = "unavailable" } })
  if not s then return nil, serr end
  local p = setmetatable({ c = x.c, path = x.path, tag = x.tag, eid = eid, s = s,
                           q = {}, qi = 1, qn = 0, qbytes = 0, tty = tty ~= nil,
                           sink = exec.sink{ max_output = 0 } }, Process)
  if tty then                              -- raw bytes: all of it is the terminal's output
    p.dec = setmetatable({ finish = function() return true end }, { __call = function(_, data)
      p.qn = p.qn + 1
      p.q[p.qn] = { "stdout", data }
      p.qbytes = p.qbytes + #data
      return true
    end })
    p:resize(tty.rows, tty.cols)           -- for images without stty (the wrapper's first)
    return p
  end
  p.dec = stdcopy.decoder(function(stream, data)
    if stream == "system" then return daemon_error(x.c, data) end
    if #data > 0 then
      p.qn = p.qn + 1
      p.q[p.qn] = { stream == "stderr" and "stderr" or "stdout", data }
      p.qbytes = p.qbytes + #data
    end
  end)
  return p
end

-- Lifecycle -------------------------------------------------------------------------------------

local function inspect(ctx, handle)
  return on_container(ctx, handle, "GET", "/json", { want = { 200 } })
end

local STATUS = { running = "running", paused = "stopped", exited = "stopped",
                 created = "stopped", restarting = "unknown", removing = "terminated",
                 dead = "terminated" }

function M.status(ctx, handle)
  local info, err = inspect(ctx, handle)
  if not info and err.code == "not_found" then return "terminated" end
  if not info then return nil, err end
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

---Pauses the container (docker pause: every process frozen, memory kept).
function M.stop(ctx, handle)
  agent.drop(handle)                       -- a frozen agent would only stall its calls
  local ok, err = on_container(ctx, handle, "POST", "/pause",
                               { want = { 204 }, errors = { [409] = "unavailable" } })
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
  local ok, perr = on_container(ctx, handle, "POST", state == "paused" and "/unpause" or "/start",
                                { want = { 204, 304 }, errors = { [409] = "unavailable" } })
  if not ok then return nil, perr end
  return true
end

---Removes the container and its anonymous volumes. Idempotent.
function M.destroy(ctx, handle)
  agent.drop(handle)
  local ok, err = on_container(ctx, handle, "DELETE", "", {
    query = { force = "true", v = "true" }, want = { 204 } })
  if ok or err.status == 404 then return true end
  if err.status == 409 and err.message:find("in progress", 1, true) then return true end
  return nil, err
end


require("sandlot._native.docker").install(M, { client = client, container = container,
                                              inspect = inspect, workdir = WORKDIR,
                                              open = open, resolve = resolve })

return M
