-- providers/namespace.lua: Namespace (namespace.so) compute instances over the Connect protocol
-- (JSON over HTTP/1.1): the lifecycle on the regional ComputeService, commands on the
-- instance's own CommandService (extendedMetadata.commandServiceEndpoint, the same bearer
-- token). No I/O at load time; the wire work is sandlot.api and sandlot.wire.connect.
-- Reference: ../shared/provider-apis/namespace.md (typescript-sdk 0.3.0 and the vendor's
-- no-SDK examples; no npm SDK is reachable). There is no file API and no stdin: files move
-- through commands, as base64 arguments appended to the file (under the kernel's argument
-- limits), and exec's stdin is such a file, written first. spawn is not_supported (no stdin
-- channel); get_url too (ports must be declared at create; not mapped yet). The deadline
-- moves with sb:extension("extend", seconds) (ExtendInstance).
-- A handle is {id = instanceId, lifetime = seconds from creation, workdir}; the command
-- endpoint is asked for once per process (DescribeInstance) and kept in memory, never read
-- from the handle, so an edited handle cannot send the token elsewhere.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local connect = require("sandlot.wire.connect")
local base64 = require("sandlot.wire.base64")
local wtime = require("sandlot.wire.time")
local check = require("sandlot._check")
local exec = require("sandlot.exec")
local shell = require("sandlot.shell")
local fs = require("sandlot.fs")
local id = require("sandlot.id")
local task = require("sandlot.task")

local M = {
  name = "namespace",
  description = "Namespace compute instances (Connect JSON; commands through CommandService)",
  capabilities = { files = false, background = true, url = false, remote = true },
  config = { token = "string", region = "string", api_url = "string", image = "string",
             request_timeout = "number", create_timeout = "number" },
  create_options = { machine_arch = "string" },
}

local COMPUTE = "/namespace.cloud.compute.v1beta.ComputeService/"
local COMMAND = "/namespace.cloud.compute.v1beta.CommandService/"
local CONTAINER = "sandlot"                    -- the one container sandlot asks for
local WORKDIR = "/workspace"
local DEFAULT_IMAGE = "debian:bookworm-slim"
local DEFAULT_LIFETIME = 3600                  -- s; the instance dies at its deadline
local INSTANCE_ID = "^[%w][%w_%-]*$"
local LABEL = "sandlot"                        -- label sandlot=1 marks our instances
local LABEL_LIFETIME = "sandlot.lifetime"
local SLACK = 30                               -- s an exec's request waits past its timeout
local PIECE = 73728                            -- raw bytes per argument (98304 in base64)
local PIECES = 10                              -- arguments per upload command (< ARG_MAX)

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

-- Config and credentials ---------------------------------------------------------------------

local function setting(ctx, key, env)
  local v = ctx.config and ctx.config[key]
  if (v == nil or v == "") and env then v = os.getenv(env) end
  if v == "" then return nil end
  return v
end

-- The bearer token: config `token`, NSC_TOKEN, or NSC_TOKEN_FILE's bearer_token (namespace.md,
-- "Transport and auth"). The file's text never enters an error.
local function token_of(ctx)
  local t = setting(ctx, "token", "NSC_TOKEN")
  if not t then
    local path = os.getenv("NSC_TOKEN_FILE")
    if path and path ~= "" then
      local f = io.open(path, "r")
      if not f then
        return fail("auth_failed", "NSC_TOKEN_FILE names a file that cannot be read")
      end
      local text = f:read("a")
      f:close()
      local ok, v = pcall(json.decode, text)
      t = ok and type(v) == "table" and type(v.bearer_token) == "string" and v.bearer_token or nil
      if not t then
        return fail("auth_failed", "NSC_TOKEN_FILE holds no JSON object with bearer_token")
      end
    end
  end
  if not t then
    return fail("auth_failed", "no token in the provider's config, and neither NSC_TOKEN nor " ..
                "NSC_TOKEN_FILE is set")
  end
  return check.token(t, "the Namespace token")
end

local function request_timeout(ctx)
  return tonumber(ctx.config and ctx.config.request_timeout) or 60
end

-- Connect errors {code, message} by their code; a body without one by its HTTP status.
local function by_connect_code(over)
  return function(res)
    local j = res.json
    if type(j) == "table" and type(j.code) == "string" then
      if over and over[j.code] then return over[j.code] end
      if connect.CODES[j.code] then return connect.CODES[j.code] end
    end
  end
end
local function error_map(over)
  local fn = by_connect_code(over)
  local t = {}
  for s = 400, 599 do t[s] = fn end
  return t
end
local COMPUTE_ERRORS = error_map()
-- A command on an instance that is not running (suspended, on its way down) is the world's
-- state, not the caller's input.
local COMMAND_ERRORS = error_map({ failed_precondition = "unavailable" })

-- 429 and 503 mean the call was not carried out, so a POST may be tried again.
local RETRY = { attempts = 4, safe = true, statuses = { [429] = true, [503] = true },
                max_after = 30 }

local function client(ctx, base, errs)
  local tok, terr = token_of(ctx)
  return api.client(ctx, {
    name = "namespace", base_url = base, timeout = request_timeout(ctx), errors = errs,
    retry = RETRY,
    auth = function()
      if not tok then return nil, terr end
      return "Authorization", "Bearer " .. tok
    end,
  })
end

local function compute(ctx)
  local url = setting(ctx, "api_url")
              or ("https://%s.compute.namespaceapis.com"):format(setting(ctx, "region") or "us")
  return client(ctx, url, COMPUTE_ERRORS)
end

-- A unary Connect call: POST /<service>/<Method>, JSON both ways.
local function rpc(c, service, method, body, opts)
  local o = { json = body, want = { 200 }, headers = { ["Connect-Protocol-Version"] = "1" } }
  for k, v in pairs(opts or {}) do o[k] = v end
  local v, res = c:call("POST", service .. method, o)
  if v == nil then return nil, res end
  if type(v) ~= "table" then
    return fail("bad_response", "namespace: %s answered no JSON object", method)
  end
  return v, res
end

local function instance_id(handle)
  return check.id(type(handle) == "table" and handle.id or nil, INSTANCE_ID,
                  "the handle's Namespace instance id", 128)
end

-- Instances ----------------------------------------------------------------------------------

local known = {}        -- instance id -> command service URL: this process's memory only

local function endpoint_of(d)
  local e = type(d.extendedMetadata) == "table" and d.extendedMetadata.commandServiceEndpoint
  if type(e) ~= "string" or e == "" then return nil end
  if not e:find("://", 1, true) then e = "https://" .. e end
  if not e:match("^https?://[%w%-%._~:%[%]]+/?[%w%-%._~/]*$") then return nil end
  return (e:gsub("/+$", ""))
end

-- DescribeInstance: {metadata, extendedMetadata, ...}; remembers the command endpoint.
local function describe(ctx, handle)
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  local d, err = rpc(compute(ctx), COMPUTE, "DescribeInstance", { instanceId = iid })
  if not d then
    if err.code == "not_found" then known[iid] = nil end
    return nil, err
  end
  if type(d.metadata) ~= "table" then
    return fail("bad_response", "namespace: DescribeInstance gave no metadata")
  end
  known[iid] = endpoint_of(d) or known[iid]
  return d, iid
end

local STATUS = { RUNNING = "running", PENDING = "unknown", CREATING = "unknown",
                 SUSPENDING = "stopped", SUSPENDED = "stopped", DESTROYING = "terminated",
                 DESTROYED = "terminated", ERROR = "terminated" }

local function status_of(d)
  return type(d.metadata) == "table" and d.metadata.status or nil
end

-- The CommandService client of an instance.
local function commands(ctx, handle)
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  if not known[iid] then
    local d, err = describe(ctx, handle)
    if not d then return nil, err end
    if STATUS[status_of(d)] == "terminated" then
      return fail("not_found", "the Namespace instance is %s", tostring(status_of(d)))
    end
    if not known[iid] then
      return fail("bad_response", "namespace: the instance has no commandServiceEndpoint")
    end
  end
  return client(ctx, known[iid], COMMAND_ERRORS), iid
end

local function labels_of(opts, lifetime)
  local out = { { name = LABEL, value = "1" },
                { name = LABEL_LIFETIME, value = tostring(lifetime) } }
  local keys = {}
  for k in pairs(opts.labels or {}) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if k == LABEL or k == LABEL_LIFETIME then
      return fail("invalid_input", "label %q is sandlot's own", k)
    end
    out[#out + 1] = { name = k, value = tostring(opts.labels[k]) }
  end
  if opts.name then out[#out + 1] = { name = "sandlot.name", value = opts.name } end
  if opts.purpose then out[#out + 1] = { name = "sandlot.purpose", value = opts.purpose } end
  return json.array(out)
end

local function env_of(env)
  local out = {}
  for k, v in pairs(env or {}) do if v ~= false then out[k] = tostring(v) end end
  return next(out) and out or nil
end

-- Waits until the instance is RUNNING: WaitInstanceSync, then DescribeInstance to be sure
-- (and to learn the command endpoint), polled while it is on its way up.
local function await_running(ctx, handle, timeout)
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  local c = compute(ctx)
  local ok, err = rpc(c, COMPUTE, "WaitInstanceSync", { instanceId = iid },
                      { timeout = timeout, retry = false })
  if not ok and err.code ~= "timeout" then return nil, err end
  return c:poll(function()
    local d, derr = describe(ctx, handle)
    if not d then return nil, derr end
    local st = status_of(d)
    if st == "RUNNING" then return true end
    if st == "PENDING" or st == "CREATING" or st == nil then return false end
    return nil, errors.new(STATUS[st] == "stopped" and "unavailable" or "not_found",
                           "the Namespace instance is " .. tostring(st))
  end, { timeout = timeout, interval = 0.1, max_interval = 2,
         what = "the Namespace instance is not running" })
end

local run_sync                                 -- below: one RunCommandSync

---Creates an instance (CreateInstance) with one container, waits until it runs, makes the
---working directory.
function M.create(ctx, opts)
  if opts.mounts then
    return fail("not_supported", "Namespace instances cannot mount host paths")
  end
  if opts.network ~= nil and opts.network ~= "all" then
    return fail("not_supported", "the namespace provider does not restrict the network yet")
  end
  if opts.ports then
    return fail("not_supported", "the namespace provider does not export ports yet")
  end
  local lifetime = opts.timeout and math.ceil(opts.timeout) or DEFAULT_LIFETIME
  local labels, lerr = labels_of(opts, lifetime)
  if not labels then return nil, lerr end
  local cfg = ctx.config or {}
  local body = {
    shape = { virtualCpu = opts.cpus and math.ceil(opts.cpus) or 2,
              memoryMegabytes = opts.memory_mb and math.ceil(opts.memory_mb) or 4096,
              machineArch = opts.machine_arch or "amd64", os = "linux" },
    documentedPurpose = opts.purpose or "sandlot",
    deadline = wtime.format(os.time() + lifetime),
    containers = json.array({ { name = CONTAINER, imageRef = opts.image or cfg.image
                                                             or DEFAULT_IMAGE,
                                args = json.array({ "sleep", "infinity" }),
                                environment = env_of(opts.env) } }),
    labels = labels,
  }
  local c = compute(ctx)
  local made, err = rpc(c, COMPUTE, "CreateInstance", body)
  if not made then return nil, err end
  local iid, ierr = check.id(type(made.metadata) == "table" and made.metadata.instanceId or nil,
                             INSTANCE_ID, "Namespace's instanceId", 128)
  if not iid then return nil, ierr end
  known[iid] = endpoint_of(made)
  local handle = { id = iid, lifetime = lifetime, workdir = WORKDIR }
  if opts.cwd then
    local w, werr = fs.path(WORKDIR, opts.cwd)
    if not w then
      task.cleanup(function() M.destroy(ctx, handle) end)
      return nil, werr
    end
    handle.workdir = w
  end
  local ok, aerr = await_running(ctx, handle, tonumber(cfg.create_timeout) or 300)
  if ok then
    local r
    r, aerr = run_sync(ctx, handle, { "mkdir", "-p", "--", handle.workdir }, {}, 60)
    if r and r.exit_code ~= 0 then
      aerr = errors.new("io_error", "mkdir " .. handle.workdir .. ": " .. r.stderr:sub(1, 200))
    end
    ok = r and r.exit_code == 0
  end
  if not ok then
    task.cleanup(function() M.destroy(ctx, handle) end)   -- never leave a half-made instance
    return nil, aerr
  end
  return handle
end

function M.status(ctx, handle)
  local d, err = describe(ctx, handle)
  if not d then
    if err.code == "not_found" then return "terminated" end
    return nil, err
  end
  return STATUS[status_of(d)] or "unknown"
end

local function lifetime_of(handle)
  local l = type(handle) == "table" and handle.lifetime
  return math.type(l) == "integer" and l > 0 and l or nil
end

-- ExtendInstance to an absolute deadline (seconds since the epoch).
local function extend_to(ctx, iid, deadline)
  return rpc(compute(ctx), COMPUTE, "ExtendInstance",
             { instanceId = iid, newDeadline = wtime.format(deadline) })
end

---Finds the instance again; when its deadline is short of createdAt + the handle's lifetime
---(someone cut it), sets it back (ExtendInstance). It never shortens it.
function M.reconnect(ctx, handle)
  local d, iid = describe(ctx, handle)
  if not d then return nil, iid end
  local st = status_of(d)
  if STATUS[st] == "terminated" then return fail("not_found", "the instance is %s", st) end
  local life = lifetime_of(handle)
  local created, deadline = wtime.parse(d.metadata.createdAt), wtime.parse(d.metadata.deadline)
  if st == "RUNNING" and life and created and deadline and deadline < created + life - 1
     and created + life > os.time() then
    local ok, err = extend_to(ctx, iid, created + life)
    if not ok then return nil, err end
  end
  return handle
end

function M.await_ready(ctx, handle, opts)
  return await_running(ctx, handle, opts and opts.timeout or 60)
end

---sb:extension("extend", seconds): moves the deadline to `seconds` from now
---(ExtendInstance newDeadline) and tells it: {deadline = epoch seconds}. reconnect never cuts
---it back (it only lengthens a deadline short of the handle's lifetime).
local function extend(ctx, handle, seconds)
  if type(seconds) ~= "number" or seconds <= 0 then
    return fail("invalid_input", "extend: seconds must be a positive number")
  end
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  local deadline = os.time() + math.ceil(seconds)
  local v, err = extend_to(ctx, iid, deadline)
  if not v then return nil, err end
  return { deadline = wtime.parse(v.deadline) or deadline }
end
M.extensions = { extend = extend }

---Suspends the instance (SuspendInstance); a suspended one is stopped already.
function M.stop(ctx, handle)
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  local ok, err = rpc(compute(ctx), COMPUTE, "SuspendInstance", { instanceId = iid })
  if ok then return true end
  if err.code ~= "invalid_input" then return nil, err end      -- failed_precondition
  local st, serr = M.status(ctx, handle)         -- not running: suspended already, or gone
  if st == "stopped" then return true end
  if st == "terminated" then return fail("not_found", "the Namespace instance is gone") end
  return nil, serr or err
end

---Wakes it (WakeInstance) and waits until it runs.
function M.start(ctx, handle)
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  local ok, err = rpc(compute(ctx), COMPUTE, "WakeInstance", { instanceId = iid })
  if not ok then return nil, err end
  return await_running(ctx, handle, 120)
end

---Destroys the instance (DestroyInstance). Idempotent.
function M.destroy(ctx, handle)
  local iid, ierr = instance_id(handle)
  if not iid then return nil, ierr end
  known[iid] = nil
  local ok, err = rpc(compute(ctx), COMPUTE, "DestroyInstance",
                      { instanceId = iid, reason = "sandlot destroy" })
  if ok or err.code == "not_found" then return true end
  return nil, err
end

---Lists sandlot's instances (label sandlot=1 and the asked labels, filtered by the service
---and checked here), page by page.
function M.list(ctx, opts)
  local want = { [LABEL] = "1" }
  for k, v in pairs(opts and opts.labels or {}) do
    want[tostring(k)] = v == true and true or tostring(v)
  end
  local filter, names = {}, {}
  for k in pairs(want) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    filter[#filter + 1] = want[k] == true and { name = k, op = "EXIST" }
                          or { name = k, value = want[k], op = "EQUAL" }
  end
  local c = compute(ctx)
  local out, cursor = {}, nil
  for _ = 1, 1000 do
    local page, err = rpc(c, COMPUTE, "ListInstances", { labelFilter = json.array(filter),
                                                         maxEntries = "100",
                                                         paginationCursor = cursor })
    if not page then return nil, err end
    local list = page.instances
    if list ~= nil and type(list) ~= "table" then
      return fail("bad_response", "namespace: ListInstances: instances is not a list")
    end
    for _, m in ipairs(list or {}) do
      local labels = {}
      for _, l in ipairs(type(m) == "table" and type(m.labels) == "table" and m.labels or {}) do
        if type(l) == "table" and type(l.name) == "string" then
          labels[l.name] = type(l.value) == "string" and l.value or ""
        end
      end
      local keep = type(m) == "table" and check.id(m.instanceId, INSTANCE_ID, "instanceId", 128)
                   ~= nil and STATUS[m.status] ~= "terminated"
      for k, v in pairs(want) do
        if labels[k] == nil or (v ~= true and labels[k] ~= v) then keep = false end
      end
      if keep then
        local life = math.tointeger(tonumber(labels[LABEL_LIFETIME])) or DEFAULT_LIFETIME
        for _, k in ipairs({ LABEL, LABEL_LIFETIME, "sandlot.name", "sandlot.purpose" }) do
          labels[k] = nil
        end
        out[#out + 1] = { id = m.instanceId, lifetime = life, workdir = WORKDIR,
                          labels = labels }
      end
    end
    cursor = type(page.paginationCursor) == "string" and page.paginationCursor ~= ""
             and page.paginationCursor or nil
    if not cursor then break end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

-- Commands -----------------------------------------------------------------------------------

local function env_vars(env)
  local out = {}
  local keys = {}
  for k, v in pairs(env or {}) do if v ~= false then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = { name = k, value = tostring(env[k]) } end
  return #out > 0 and json.array(out) or nil
end

local function request(iid, argv, env, cwd)
  return { instanceId = iid, targetContainerName = CONTAINER,
           command = { command = json.array(argv), envVars = env_vars(env), cwd = cwd } }
end

local function unb64(s, what)
  if s == nil or s == json.null or s == "" then return "" end
  local data = type(s) == "string" and base64.decode(s)
  if not data then return fail("bad_response", "namespace: %s is not base64", what) end
  return data
end

-- One RunCommandSync of argv (no wrapper): {exit_code, stdout, stderr} | nil, err.
function run_sync(ctx, handle, argv, env, timeout, cwd)
  local c, iid = commands(ctx, handle)
  if not c then return nil, iid end
  local v, err = rpc(c, COMMAND, "RunCommandSync", request(iid, argv, env, cwd), {
    timeout = timeout or false, max_body = 4 * 1024 ^ 3 // 1, retry = RETRY })
  if not v then return nil, err end
  local out, e1 = unb64(v.stdout, "stdout")
  if not out then return nil, e1 end
  local errs, e2 = unb64(v.stderr, "stderr")
  if not errs then return nil, e2 end
  local code = v.exitCode
  if code ~= nil and math.type(code) ~= "integer" then
    return fail("bad_response", "namespace: exitCode is not an integer")
  end
  return { exit_code = code or 0, stdout = out, stderr = errs }
end

-- $1 cwd, $2 stdin file or "", $3 timeout (s) or "", $4 output file prefix ("" for output
-- straight through, the streamed form), $5 bytes kept per stream; then argv. A missing cwd is
-- the line "sandlot:nocwd" on stdout and exit 125.
local WRAPPER = [[
d=$1 i=$2 t=$3 o=$4 n=$5; shift 5
cd -- "$d" 2>/dev/null || { [ -z "$i" ] || rm -f -- "$i"; echo 'sandlot:nocwd'; exit 125; }
if [ -n "$i" ]; then exec 0<"$i"; rm -f -- "$i"; else exec 0</dev/null; fi
if [ -z "$o" ]; then
  if [ -n "$t" ]; then timeout -k 1 "$t" "$@"; else "$@"; fi
  exit $?
fi
if [ -n "$t" ]; then timeout -k 1 "$t" "$@" >"$o.out" 2>"$o.err"; else "$@" >"$o.out" 2>"$o.err"; fi
rc=$?
head -c "$n" -- "$o.out"
head -c "$n" -- "$o.err" >&2
rm -f -- "$o.out" "$o.err"
exit $rc
]]

local function wrapped(handle, argv, opts, stdin_file, prefix)
  local cwd, cerr = fs.in_workdir(handle, WORKDIR, opts.cwd or ".")
  if not cwd then return nil, cerr end
  local max = (opts.max_output or exec.DEFAULT_MAX_OUTPUT) + 1
  local args = { "/bin/sh", "-c", WRAPPER, "sandlot", cwd, stdin_file or "",
                 opts.timeout and ("%.3f"):format(opts.timeout) or "", prefix, tostring(max) }
  for _, a in ipairs(shell.env_argv(opts.env, argv)) do args[#args + 1] = a end
  return args
end

-- Files: each one written by commands that append base64 arguments to it (the first one
-- truncates it, the last one sets its mode). $1 path, $2 mode or "", $3 "f" first and/or "l"
-- last; then the pieces. Exit 4: a directory is in the way; 7: cannot write.
local UPLOAD = [[
p=$1 m=$2 s=$3; shift 3
case "$s" in *f*)
  case "$p" in */*) d=${p%/*}; [ -z "$d" ] || mkdir -p -- "$d" || exit 7 ;; esac
  [ -d "$p" ] && { echo "$p: is a directory" >&2; exit 4; }
  : > "$p" || exit 7 ;;
esac
printf '%s' "$@" | base64 -d >> "$p" || exit 7
case "$s" in *l*) [ -z "$m" ] || chmod "$m" -- "$p" || exit 7 ;; esac
]]

local UPLOAD_CODES = { [4] = "invalid_input", [7] = "io_error" }

local function upload(ctx, handle, abs, data, mode)
  local n = #data
  local pos, first = 1, true
  repeat
    local argv = { "/bin/sh", "-c", UPLOAD, "sandlot", abs, mode and ("%o"):format(mode) or "" }
    local flags = first and "f" or ""
    local pieces = {}
    for _ = 1, PIECES do
      if pos > n then break end
      pieces[#pieces + 1] = base64.encode(data:sub(pos, pos + PIECE - 1))
      pos = pos + PIECE
    end
    if pos > n then flags = flags .. "l" end
    argv[#argv + 1] = flags
    for _, p in ipairs(pieces) do argv[#argv + 1] = p end
    local r, err = run_sync(ctx, handle, argv, nil, 60 + #pieces)
    if not r then return nil, err end
    if r.exit_code ~= 0 then
      return nil, errors.new(UPLOAD_CODES[r.exit_code] or "io_error",
                             ("%s: %s"):format(abs, r.stderr:gsub("%s+$", ""):sub(1, 300)))
    end
    first = false
  until pos > n
  return true
end

---Writes files through commands (namespace.md: no file API), each in pieces of base64
---arguments; parent directories are made.
function M.write_files(ctx, handle, files)
  for i, f in ipairs(files) do
    local abs, err = fs.in_workdir(handle, WORKDIR, f.path)
    if not abs then return nil, err end
    if abs == "/" then return fail("invalid_input", "cannot write a file at /") end
    local ok, uerr = upload(ctx, handle, abs, f.data, f.mode)
    if not ok then return nil, errors.wrap(uerr, { path = f.path, index = i }) end
  end
  return true
end

function M.write_file(ctx, handle, path, data, opts)
  return M.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
end

local READ = [[
[ -e "$1" ] || { echo "$1: no such file" >&2; exit 2; }
[ -d "$1" ] && { echo "$1: is a directory" >&2; exit 4; }
exec cat -- "$1"
]]
local READ_CODES = { [2] = "not_found", [4] = "invalid_input" }

---Reads a file through `cat` (RunCommandSync gives stdout as bytes).
function M.read_file(ctx, handle, path)
  local abs, aerr = fs.in_workdir(handle, WORKDIR, path)
  if not abs then return nil, aerr end
  local r, err = run_sync(ctx, handle, { "/bin/sh", "-c", READ, "sandlot", abs }, nil, 3600)
  if not r then return nil, err end
  if r.exit_code ~= 0 then
    return nil, errors.new(READ_CODES[r.exit_code] or "io_error",
                           r.stderr:gsub("%s+$", ""):sub(1, 300))
  end
  return r.stdout
end

-- Kills what an exec started (a cancelled one): every process whose environment carries its
-- tag (children inherit it), found through /proc (procps may not be in the image).
local KILL = [[
for d in /proc/[0-9]*; do
  [ "${d#/proc/}" = "$$" ] && continue
  grep -qaF -- "$1" "$d/environ" 2>/dev/null && kill -KILL "${d#/proc/}" 2>/dev/null
done
exit 0
]]

-- errors after which the command may still run
local LOST = { cancelled = true, timeout = true, unavailable = true }

local function queue_kill(ctx, handle, tag)
  task.cleanup(function()
    task.timeout(30, run_sync, ctx, handle, { "/bin/sh", "-c", KILL, "sandlot",
                                              "SANDLOT_EXEC_TAG=" .. tag }, nil, 20)
  end)
end

-- The stream of RunCommand: messages {stream, data} and one {exitStatus: {exitCode}}.
local function run_stream(ctx, handle, argv, env, timeout, sink)
  local c, iid = commands(ctx, handle)
  if not c then return nil, iid end
  local exit
  local res, err = c:stream("POST", COMMAND .. "RunCommand", {
    body = connect.encode(request(iid, argv, env)), decode = false, retry = false,
    headers = { ["Content-Type"] = "application/connect+json",
                ["Connect-Protocol-Version"] = "1" },
    timeout = timeout or false,
    on_frame = connect.decoder(function(m)
      if type(m) ~= "table" then
        return fail("bad_response", "namespace: a message is not an object")
      end
      if type(m.exitStatus) == "table" then
        local code = m.exitStatus.exitCode
        if code ~= nil and math.type(code) ~= "integer" then
          return fail("bad_response", "namespace: exitCode is not an integer")
        end
        exit = code or 0
      elseif m.stream == "STDOUT" or m.stream == "STDERR" then
        local data, derr = unb64(m.data, "data")
        if not data then return nil, derr end
        if #data > 0 then sink:add(m.stream == "STDOUT" and "stdout" or "stderr", data) end
      end
      return true
    end) })
  if not res then return nil, err end
  if exit == nil then
    return fail("bad_response", "namespace: the command stream ended without an exit status")
  end
  return exit
end

---Runs argv under the wrapper above: RunCommandSync (stdout and stderr kept in files and cut
---at max_output there), or the RunCommand stream when on_stdout / on_stderr want the output
---as it comes. stdin is a file written first; timeout(1) bounds the command.
function M.exec(ctx, handle, argv, opts)
  local tag = "/tmp/.sandlot-" .. id.hex(8)
  local stdin_file
  if opts.stdin ~= nil then
    local data = opts.stdin
    if type(data) ~= "string" then
      local t = {}
      for chunk in data do t[#t + 1] = chunk end
      data = table.concat(t)
    end
    stdin_file = tag .. ".in"
    local ok, werr = upload(ctx, handle, stdin_file, data, 384)
    if not ok then return nil, werr end
  end
  local streamed = opts.on_stdout ~= nil or opts.on_stderr ~= nil
  if streamed and opts.cwd then        -- streamed output has no room for the wrapper's marker
    local cwd, cerr = fs.in_workdir(handle, WORKDIR, opts.cwd)
    if not cwd then return nil, cerr end
    local r, err = run_sync(ctx, handle, { "test", "-d", cwd }, nil, 60)
    if not r then return nil, err end
    if r.exit_code ~= 0 then
      return fail("not_found", "cwd %s: no such directory", tostring(opts.cwd))
    end
  end
  local args, aerr = wrapped(handle, argv, opts, stdin_file, streamed and "" or tag)
  if not args then return nil, aerr end
  local env = { SANDLOT_EXEC_TAG = tag }
  for k, v in pairs(opts.env or {}) do if v ~= false then env[k] = v end end
  local sink <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                  on_stderr = opts.on_stderr }
  local done = false
  local _guard <close> = setmetatable({}, { __close = function()
    if not done then queue_kill(ctx, handle, tag) end     -- cancelled: kill it from a task
  end })
  local limit = opts.timeout and opts.timeout + SLACK or false
  local t0 = os.time()
  local code, out, errs
  if streamed then
    local c, serr = run_stream(ctx, handle, args, env, limit, sink)
    done = c ~= nil or not LOST[serr.code]
    if c == nil then return nil, serr end
    code = c
  else
    local r, err = run_sync(ctx, handle, args, env, limit)
    done = r ~= nil or not LOST[err.code]
    if not r then return nil, err end
    code, out, errs = r.exit_code, r.stdout, r.stderr
    if code == 125 and out == "sandlot:nocwd\n" then
      return fail("not_found", "cwd %s: no such directory", tostring(opts.cwd))
    end
  end
  if out then
    sink:add("stdout", out)
    sink:add("stderr", errs)
  end
  if opts.timeout and (code == 124 or code == 137) and os.time() - t0 >= opts.timeout - 1 then
    sink:timed_out()
  else
    sink:exit(code)
  end
  return sink:result()
end

return M
