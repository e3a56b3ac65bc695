-- providers/daytona.lua: sandboxes on Daytona (https://www.daytona.io), through its two HTTP
-- surfaces: the main API (lifecycle, labels, preview URLs) at `api_url` and the toolbox (the
-- daemon inside each sandbox, behind Daytona's proxy) at the sandbox's toolboxProxyUrl/{id}.
-- Only the mapping from Daytona's nouns to sandlot's lives here: endpoints, auth, errors,
-- retries and polling are sandlot.api's, multipart is sandlot.wire.multipart's.
-- API reference: ../shared/provider-apis/daytona.md (checked against @daytonaio/sdk 0.218).
--
-- exec runs through POST /process/execute with a small sh script: the command's stdout and
-- stderr go to files in the sandbox and come back base64-encoded after the exit code, so they
-- stay apart and byte-exact (the daemon's own output is combined, its session logs are text
-- that gains a newline per line). A timeout is the daemon's (whole seconds, rounded up; it
-- kills the process group). spawn runs the command in a Daytona session (runAsync), stdin
-- arriving as numbered files a feeder loop cats into a fifo, output read by polling the
-- files from an offset; kill and close drop a signal file a watcher loop acts on. Both live in
-- sandlot._native.daytona_exec, installed at the bottom of this file.
-- Files: GET /files/download, POST /files/bulk-upload (multipart pieces: data is
-- never copied), /files, /files/info, /files/folder, DELETE /files.
-- Handles are {id = sandbox id, auto_stop = minutes?}: the toolbox URL is asked for once per
-- process (GET /sandbox/{id}), never read from a handle, so an edited handle cannot send the
-- API key elsewhere. The working directory (GET /work-dir) is asked for only when a relative
-- path needs it: the daemon serves its own cwd as the work dir, and a command given no cwd
-- runs there.
-- Native checkpoints are Daytona snapshots that seed new sandboxes (sandlot._native.daytona).
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local multipart = require("sandlot.wire.multipart")
local check = require("sandlot._check")
local fs = require("sandlot.fs")
local task = require("sandlot.task")

local M = {
  name = "daytona",
  description = "Daytona cloud sandboxes (main API + toolbox over HTTPS)",
  capabilities = { files = true, background = true, url = true, remote = true, streams = true },
  config = { api_url = "string", api_key = "string", target = "string", jwt_token = "string",
             organization_id = "string", snapshot = "string", auto_stop_interval = "number",
             create_timeout = "number", request_timeout = "number" },
  create_options = { snapshot = "string", public = "boolean", auto_stop_interval = "number" },
}

local DEFAULT_API_URL = "https://app.daytona.io/api"
local SDK_VERSION = "0.190.0"        -- >= 0.167: the daemon separates stdout and stderr
local ID = "^[%w][%w_.%-]*$"

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function opt(ctx, key, var)
  local v = (ctx.config or {})[key]
  if v == nil or v == "" then v = os.getenv(var) end
  if v == "" then v = nil end
  return v
end

-- Bearer API key, or a JWT with the organization header (daytona.md, "Auth").
local function credentials(ctx)
  local key = opt(ctx, "api_key", "DAYTONA_API_KEY")
  if key then return "Bearer " .. key end
  local jwt = opt(ctx, "jwt_token", "DAYTONA_JWT_TOKEN")
  local org = opt(ctx, "organization_id", "DAYTONA_ORGANIZATION_ID")
  if jwt and org then return "Bearer " .. jwt, org end
  return nil, errors.new("auth_failed", "daytona: no api_key (DAYTONA_API_KEY), or jwt_token " ..
                         "and organization_id (DAYTONA_JWT_TOKEN, DAYTONA_ORGANIZATION_ID)")
end

-- Daemon error codes (daemon-error-code.d.ts) onto sandlot's; statuses the kit maps otherwise.
local DAEMON = {}
for code, to in ([[BAD_REQUEST=invalid_input INVALID_REQUEST_BODY=invalid_input
  UNAUTHORIZED=auth_failed FORBIDDEN=permission_denied NOT_FOUND=not_found CONFLICT=already_exists
  REQUEST_TIMEOUT=timeout GONE=not_found UNPROCESSABLE_ENTITY=invalid_input
  INTERNAL_SERVER_ERROR=internal FILE_NOT_FOUND=not_found FILE_ACCESS_DENIED=permission_denied
  INVALID_FILE_PATH=invalid_input FILE_READ_FAILED=io_error PROCESS_EXECUTION_TIMEOUT=timeout
  PROCESS_NOT_FOUND=not_found SESSION_ENDED=not_found COMMAND_ALREADY_COMPLETED=invalid_input
  LSP_SERVER_NOT_INITIALIZED=unavailable GIT_AUTH_FAILED=auth_failed GIT_REPO_NOT_FOUND=not_found
  GIT_BRANCH_NOT_FOUND=not_found GIT_BRANCH_EXISTS=already_exists GIT_PUSH_REJECTED=invalid_input
  GIT_DIRTY_WORKTREE=invalid_input GIT_MERGE_CONFLICT=invalid_input
  GIT_TRANSPORT_FAILED=unavailable GIT_REMOTE_REJECTED=invalid_input]])
    :gmatch("(%u[%u_]*)=(%l[%l_]*)") do DAEMON[code] = to end
M._daemon_codes = DAEMON

local function mapped(res, msg)
  local j = type(res.json) == "table" and res.json or {}
  local s = res.status
  if s == 409 and msg:find("state change in progress", 1, true) then return "unavailable" end
  if s == 400 and msg:find("no IP address found", 1, true) then return "unavailable" end
  if type(j.code) == "string" and DAEMON[j.code] then return DAEMON[j.code] end
  if s == 403 and j.source == nil and j.statusCode == nil then return "permission_denied" end
  return nil                                -- the kit's status map
end
local ERRORS = setmetatable({}, { __index = function() return mapped end })

local specs = {}                 -- base URL .. auth -> api spec (one per endpoint and key)

local function spec_for(ctx, base)
  local auth, org = credentials(ctx)
  if not auth then return nil, org end
  local timeout = (ctx.config or {}).request_timeout or 60
  local key = table.concat({ base, auth, org or "", timeout }, "\0")
  local s = specs[key]
  if not s then
    s = { name = "daytona", base_url = base, errors = ERRORS, timeout = timeout,
          auth = function() return "Authorization", auth end,
          headers = { ["X-Daytona-Source"] = "sandlot", ["X-Daytona-SDK-Version"] = SDK_VERSION,
                      ["X-Daytona-Organization-ID"] = org } }
    specs[key] = s
  end
  return s
end

local function main(ctx)
  local base = (opt(ctx, "api_url", "DAYTONA_API_URL") or DEFAULT_API_URL):gsub("/+$", "")
  local s, err = spec_for(ctx, base)
  if not s then return nil, err end
  return api.client(ctx, s)
end

-- POSTs that change something are not retried by sandlot.http; a 429 or 503 answer means the
-- service did nothing, so those are tried again here (Retry-After honoured, at most 3 times).
local function call(c, method, path, opts)
  for attempt = 1, 3 do
    local v, res = c:call(method, path, opts)
    if v ~= nil or attempt == 3 or method ~= "POST"
       or not (res.status == 429 or res.status == 503) then
      return v, res
    end
    local wait = res.retry_after or 0.2 * 2 ^ (attempt - 1)
    if wait > 60 then return v, res end
    local ok, serr = task.sleep(wait)
    if not ok then return nil, serr end
  end
end

local function sandbox_path(handle, tail)
  local sid, err = check.id(type(handle) == "table" and handle.id or nil, ID,
                            "the handle's Daytona sandbox id", 128)
  if not sid then return nil, err end
  local seg, serr = api.segment(sid)
  if not seg then return nil, serr end
  return "/sandbox/" .. seg .. (tail or "")
end

local function on_sandbox(ctx, handle, method, tail, opts)
  local c, cerr = main(ctx)
  if not c then return nil, cerr end
  local path, perr = sandbox_path(handle, tail)
  if not path then return nil, perr end
  return call(c, method, path, opts)
end

local function get_sandbox(ctx, handle)
  local sb, err = on_sandbox(ctx, handle, "GET", "", { want = { 200 } })
  if not sb then return nil, err end
  if type(sb) ~= "table" or type(sb.id) ~= "string" then
    return fail("bad_response", "GET /sandbox/{id}: not a sandbox object")
  end
  return sb
end

-- Toolbox ------------------------------------------------------------------------------------

local toolboxes = {}            -- api url .. id -> {base = toolbox URL, workdir}

local function toolbox_key(ctx, handle)
  return (opt(ctx, "api_url", "DAYTONA_API_URL") or DEFAULT_API_URL) .. "\0" .. handle.id
end

local function toolbox_url(sb)
  local u = sb.toolboxProxyUrl
  if type(u) ~= "string" or not u:match("^https?://[^%s]+$") then return nil end
  return u:gsub("/+$", "") .. "/" .. sb.id
end

-- The toolbox client of a sandbox and its record {base, workdir?} (asked once per process).
local function toolbox(ctx, handle, sb)
  local path, perr = sandbox_path(handle)
  if not path then return nil, perr end
  local key = toolbox_key(ctx, handle)
  local t = toolboxes[key]
  if not t then
    local err
    if not sb then sb, err = get_sandbox(ctx, handle) end
    if not sb then return nil, err end
    if sb.state == "destroyed" or sb.state == "destroying" then
      return fail("not_found", "sandbox %s is destroyed", handle.id)
    end
    local base = toolbox_url(sb)
    if not base then
      local tu, terr = on_sandbox(ctx, handle, "GET", "/toolbox-proxy-url", { want = { 200 } })
      if not tu then return nil, terr end
      base = toolbox_url({ id = sb.id, toolboxProxyUrl = type(tu) == "table" and tu.url })
      if not base then return fail("bad_response", "the sandbox has no usable toolbox URL") end
    end
    t = { base = base }
    toolboxes[key] = t
  end
  local s, serr = spec_for(ctx, t.base)
  if not s then return nil, serr end
  return api.client(ctx, s), t
end

-- A path in the sandbox, normalized and absolute; `..` above / refused. A relative path is
-- taken from the daemon's working directory, GET /work-dir, asked the first time one is
-- resolved (the daemon's own cwd: an exec without a cwd runs there without asking).
local function resolve(c, t, path)
  if path:sub(1, 1) == "/" then return fs.path("/", path) end
  if not t.workdir then
    local wd, werr = call(c, "GET", "/work-dir", { want = { 200 } })
    if not wd then return nil, werr end
    local dir = type(wd) == "table" and wd.dir
    if type(dir) ~= "string" or dir:sub(1, 1) ~= "/" or dir:find("%z") then
      return fail("bad_response", "GET /work-dir: not an absolute directory")
    end
    t.workdir = dir
  end
  return fs.path(t.workdir, path)
end

-- A toolbox call; the proxy's 401 for a sandbox that no longer exists becomes not_found.
local function tcall(ctx, handle, c, method, path, opts)
  local v, res = call(c, method, path, opts)
  if v == nil and res.status == 401 then
    local sb, gerr = get_sandbox(ctx, handle)
    if (sb and sb.state == "destroyed") or (not sb and gerr.code == "not_found") then
      toolboxes[toolbox_key(ctx, handle)] = nil
      return fail("not_found", "sandbox %s does not exist", handle.id)
    end
  end
  return v, res
end

-- Lifecycle ----------------------------------------------------------------------------------

local STATUS = { started = "running", stopped = "stopped", stopping = "stopped",
                 archived = "stopped", archiving = "stopped", paused = "stopped",
                 pausing = "stopped", destroyed = "terminated", destroying = "terminated" }

-- Polls GET /sandbox/{id} until its state is one of `want`; error and build_failed fail.
local function wait_state(ctx, handle, want, timeout, what)
  local c, cerr = main(ctx)
  if not c then return nil, cerr end
  return c:poll(function()
    local sb, err = get_sandbox(ctx, handle)
    if not sb then
      if err.code == "not_found" and want.destroyed then return { state = "destroyed" } end
      return nil, err
    end
    if want[sb.state] then return sb end
    if sb.state == "error" or sb.state == "build_failed" then
      return nil, errors.new("unavailable", ("sandbox %s is in state %s: %s"):format(
        sb.id, sb.state, c:scrub(tostring(sb.errorReason or "no reason given"))),
        { retryable = false })
    end
    return false
  end, { timeout = timeout, interval = 0.1, max_interval = 1,
         what = ("sandbox %s is not %s"):format(handle.id, what) })
end

local function create_timeout(ctx)
  return (ctx.config or {}).create_timeout or 60
end

-- The lifetime: auto-stop minutes from create's options, the lifetime `timeout`, or config.
local function auto_stop(ctx, opts)
  if opts.auto_stop_interval then return math.floor(opts.auto_stop_interval) end
  if opts.timeout then return math.max(1, math.ceil(opts.timeout / 60)) end
  local v = (ctx.config or {}).auto_stop_interval
  return v and math.floor(v) or nil
end

-- Re-applies the lifetime (a restart or reconnect otherwise keeps whatever the sandbox has).
local function apply_lifetime(ctx, handle)
  local m = handle.auto_stop or (ctx.config or {}).auto_stop_interval
  if m == nil then return true end
  if math.type(m) ~= "integer" and not (type(m) == "number" and m == math.floor(m)) then
    return fail("invalid_input", "the handle's auto_stop is not a whole number of minutes")
  end
  local ok, err = on_sandbox(ctx, handle, "POST", ("/autostop/%d"):format(math.floor(m)),
                             { want = { 200, 201 } })
  if ok == nil then return nil, err end
  return true
end

local function labels_of(opts)
  local labels = { sandlot = "1" }
  for k, v in pairs(opts.labels or {}) do labels[tostring(k)] = tostring(v) end
  if opts.purpose then labels["sandlot.purpose"] = opts.purpose end
  return labels
end

---Creates a sandbox and waits until it is started.
function M.create(ctx, opts)
  local c, cerr = main(ctx)
  if not c then return nil, cerr end
  local cfg = ctx.config or {}
  if type(opts.network) == "table" then
    return fail("not_supported", "daytona: a host-name allow-list is not enforced here; " ..
                "use network = \"none\" or \"all\"")
  end
  if opts.mounts then return fail("not_supported", "daytona: mounts are not supported") end
  if opts.image then ctx.warn("image is ignored: Daytona starts from a snapshot (snapshot =)") end
  local env = {}
  for k, v in pairs(opts.env or {}) do
    if v ~= false then env[k] = tostring(v) end
  end
  local body = {
    name = opts.name, snapshot = opts.snapshot or cfg.snapshot,
    target = opt(ctx, "target", "DAYTONA_TARGET"), env = env, labels = labels_of(opts),
    public = opts.public, autoStopInterval = auto_stop(ctx, opts),
    cpu = opts.cpus and math.ceil(opts.cpus) or nil,
    memory = opts.memory_mb and math.ceil(opts.memory_mb / 1024) or nil,
    disk = opts.disk_mb and math.ceil(opts.disk_mb / 1024) or nil,
    networkBlockAll = opts.network == "none" or nil,
  }
  local sb, err = call(c, "POST", "/sandbox", { json = body, want = { 200, 201 } })
  if not sb then return nil, err end
  if type(sb) ~= "table" or not check.id(sb.id, ID, "id", 128) then
    return fail("bad_response", "POST /sandbox: the answer has no usable sandbox id")
  end
  local handle = { id = sb.id, auto_stop = body.autoStopInterval }
  local ready, werr = sb
  if sb.state ~= "started" then
    ready, werr = wait_state(ctx, handle, { started = true }, create_timeout(ctx), "started")
  end
  if ready then
    local tc, terr = toolbox(ctx, handle, ready)
    if tc then return handle end
    werr = terr
  end
  task.cleanup(function() M.destroy(ctx, handle) end)  -- never leave a half-made sandbox
  return nil, werr
end

function M.await_ready(ctx, handle, opts)
  local ok, err = wait_state(ctx, handle, { started = true }, (opts and opts.timeout) or 60,
                             "started")
  if not ok then return nil, err end
  return true
end

function M.status(ctx, handle)
  local sb, err = get_sandbox(ctx, handle)
  if not sb then
    if err.code == "not_found" then return "terminated" end
    return nil, err
  end
  return STATUS[sb.state] or "unknown"
end

---Finds the sandbox again, refreshes what this process knows of it and re-applies its
---lifetime.
function M.reconnect(ctx, handle)
  local sb, err = get_sandbox(ctx, handle)
  if not sb then return nil, err end
  if sb.state == "destroyed" or sb.state == "destroying" then
    return fail("not_found", "sandbox %s is destroyed", handle.id)
  end
  toolboxes[toolbox_key(ctx, handle)] = nil
  local ok, lerr = apply_lifetime(ctx, handle)
  if not ok then return nil, lerr end
  return handle
end

-- POST /sandbox/{id}/<verb>, then waits for one of the states in `wanted`.
local function transition(ctx, handle, verb, query, wanted, what)
  local ok, err = on_sandbox(ctx, handle, "POST", "/" .. verb, { query = query,
                                                               want = { 200, 201 } })
  if ok == nil then return nil, err end
  local sb, werr = wait_state(ctx, handle, wanted, create_timeout(ctx), what)
  if not sb then return nil, werr end
  return true
end

function M.stop(ctx, handle)
  return transition(ctx, handle, "stop", { force = "false" },
                    { stopped = true, destroyed = true }, "stopped")
end

function M.start(ctx, handle)
  local ok, err = transition(ctx, handle, "start", nil, { started = true }, "started")
  if not ok then return nil, err end
  toolboxes[toolbox_key(ctx, handle)] = nil             -- a restart may move the toolbox
  return apply_lifetime(ctx, handle)
end

---Deletes the sandbox. Idempotent; a transition still under way (409) is waited out.
function M.destroy(ctx, handle)
  local c, cerr = main(ctx)
  if not c then return nil, cerr end
  local path, perr = sandbox_path(handle)
  if not path then return nil, perr end
  toolboxes[toolbox_key(ctx, handle)] = nil
  return c:poll(function()
    local ok, err = call(c, "DELETE", path, { want = { 200, 204 } })
    if ok ~= nil or err.status == 404 then return true end
    if err.status == 409 then return false end          -- "state change in progress"
    return nil, err
  end, { timeout = create_timeout(ctx), interval = 0.1, max_interval = 1,
         what = "the sandbox is still changing state" })
end

---The preview URL of a port (https://{port}-{id}.{domain}); a sandbox that is not public
---wants the x-daytona-preview-token header (GET …/preview-url gives it).
function M.get_url(ctx, handle, port)
  local v, err = on_sandbox(ctx, handle, "GET", ("/ports/%d/preview-url"):format(port),
                            { want = { 200 } })
  if not v then return nil, err end
  if type(v) ~= "table" or type(v.url) ~= "string" then
    return fail("bad_response", "preview-url: no url in the answer")
  end
  return v.url
end

-- Lists sandlot's sandboxes (label sandlot=1) with the given labels, page by page.
function M.list(ctx, opts)
  local c, cerr = main(ctx)
  if not c then return nil, cerr end
  local want, exact = {}, { sandlot = "1" }
  for k, v in pairs((opts and opts.labels) or {}) do
    if v == true then want[tostring(k)] = true else exact[tostring(k)] = tostring(v) end
  end
  local out, cursor = {}, nil
  for _ = 1, 1000 do
    local page, err = call(c, "GET", "/sandbox", { want = { 200 }, query = {
      labels = json.encode(exact), limit = 100, cursor = cursor } })
    if not page then return nil, err end
    if type(page) ~= "table" or type(page.items) ~= "table" then
      return fail("bad_response", "GET /sandbox: no items in the answer")
    end
    for _, sb in ipairs(page.items) do
      local labels = type(sb.labels) == "table" and sb.labels or {}
      local keep = check.id(sb.id, ID, "id", 128) ~= nil and sb.state ~= "destroyed"
                   and sb.state ~= "destroying"
      for k, v in pairs(exact) do keep = keep and labels[k] == v end
      for k in pairs(want) do keep = keep and labels[k] ~= nil end
      if keep then
        local l = {}
        for k, v in pairs(labels) do
          if type(k) == "string" and type(v) == "string" and k ~= "sandlot" then l[k] = v end
        end
        out[#out + 1] = { id = sb.id, auto_stop = math.type(sb.autoStopInterval) == "integer"
                          and sb.autoStopInterval or nil, labels = l }
      end
    end
    cursor = page.nextCursor
    if cursor == nil or cursor == json.null or cursor == "" then break end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

-- Uploads (files; stdin of exec and spawn: sandlot._native.daytona_exec) ---------------------

-- bulk-upload: for each file a part files[i].path (the destination) and files[i].file.
local function upload(ctx, handle, c, files)
  local parts = {}
  for i, f in ipairs(files) do
    local base = f.path:match("[^/]*$"):gsub('[%c"\\]', "_")
    parts[#parts + 1] = { name = ("files[%d].path"):format(i - 1), data = f.path }
    parts[#parts + 1] = { name = ("files[%d].file"):format(i - 1), data = f.data,
                          filename = base ~= "" and base or "file" }
  end
  local pieces, size, ctype = multipart.encode(parts)
  local ok, err = tcall(ctx, handle, c, "POST", "/files/bulk-upload", {
    body = pieces, body_size = size, headers = { ["Content-Type"] = ctype },
    timeout = 60 + size / 1e6, want = { 200 } })
  if ok == nil then return nil, err end
  return true
end

-- Files --------------------------------------------------------------------------------------

local function file_info(ctx, handle, c, path)
  local v, err = tcall(ctx, handle, c, "GET", "/files/info", { query = { path = path },
                                                              want = { 200 } })
  if not v then return nil, err end
  if type(v) ~= "table" then return fail("bad_response", "GET /files/info: not an object") end
  return v
end

---Reads a file from GET /files/download. The body is captured by the core and becomes the
---Lua string once (joining streamed pieces in Lua would hold it three times at the peak).
function M.read_file(ctx, handle, path, opts)
  local c, t = toolbox(ctx, handle)
  if not c then return nil, t end
  local abs, aerr = resolve(c, t, path)
  if not abs then return nil, aerr end
  local o = { query = { path = abs }, timeout = 1800, want = { 200 }, decode = false,
              max_body = 8 * 1024 ^ 3 // 1 }
  local data, err, sink
  if opts and opts.to then                  -- streamed to the host file, a chunk at a time
    sink, err = fs.sink(opts.to)
    if not sink then return nil, err end
    o.on_frame = sink
    data, err = c:stream("GET", "/files/download", o)
    sink:finish()
    if data then data = sink.bytes end
  else
    data, err = c:call("GET", "/files/download", o)
  end
  if data == nil and err.status == 401 then
    return select(2, file_info(ctx, handle, c, abs))    -- not_found when the sandbox is gone
  end
  return data, err
end

---Writes files in one bulk upload (parents created by the daemon), then sets modes.
function M.write_files(ctx, handle, files)
  local c, t = toolbox(ctx, handle)
  if not c then return nil, t end
  local list = {}
  for i, f in ipairs(files) do
    local abs, err = resolve(c, t, f.path)
    if not abs then return nil, err end
    list[i] = { path = abs, data = f.data, mode = f.mode }
  end
  local ok, err = upload(ctx, handle, c, list)
  if not ok then return nil, err end
  for _, f in ipairs(list) do
    if f.mode then
      local done, perr = tcall(ctx, handle, c, "POST", "/files/permissions", {
        query = { path = f.path, mode = ("%04o"):format(f.mode) }, want = { 200, 204 } })
      if done == nil then return nil, perr end
    end
  end
  return true
end

function M.write_file(ctx, handle, path, data, opts)
  if data == nil and opts and opts.from then      -- a host file: a multipart source
    local read, size = fs.source(opts.from)
    if not read then return nil, size end
    data = { size = size, read = read }
  end
  return M.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
end

-- Days since the epoch of a civil date (Howard Hinnant's algorithm): RFC 3339 without timegm.
local function epoch(y, m, d, hh, mm, ss)
  y = m <= 2 and y - 1 or y
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return (era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss
end

local function rfc3339(s)
  if type(s) ~= "string" then return 0 end
  local y, mo, d, h, mi, se, rest = s:match("^(%d+)-(%d+)-(%d+)[T ](%d+):(%d+):(%d+)(.*)$")
  if not y then return 0 end
  local t = epoch(tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
                  tonumber(se))
  local sign, oh, om = rest:match("([+-])(%d%d):?(%d%d)$")
  if sign then t = t - (sign == "+" and 1 or -1) * (tonumber(oh) * 3600 + tonumber(om) * 60) end
  return t
end

local function entry(fi)
  local kind = fi.isDir and "directory" or "file"
  local m = type(fi.mode) == "string" and fi.mode:sub(1, 1) or "-"
  if m == "l" or m == "L" then kind = "symlink"
  elseif not fi.isDir and m ~= "-" then kind = "other" end
  return { name = fi.name, type = kind, size = math.tointeger(fi.size) or 0,
           mode = tonumber(tostring(fi.permissions or ""), 8) or 0,
           mtime = rfc3339(fi.modifiedAt) }
end

function M.ls(ctx, handle, path)
  local c, t = toolbox(ctx, handle)
  if not c then return nil, t end
  local abs, aerr = resolve(c, t, path)
  if not abs then return nil, aerr end
  local info, ierr = file_info(ctx, handle, c, abs)
  if not info then return nil, ierr end
  if not info.isDir then return fail("invalid_input", "%s is not a directory", path) end
  local list, err = tcall(ctx, handle, c, "GET", "/files", { query = { path = abs },
                                                            want = { 200 } })
  if not list then return nil, err end
  if type(list) ~= "table" then return fail("bad_response", "GET /files: not a list") end
  local out = {}
  for _, fi in ipairs(list) do
    if type(fi) == "table" and type(fi.name) == "string" then out[#out + 1] = entry(fi) end
  end
  return out
end

function M.mkdir(ctx, handle, path, opts)
  local c, t = toolbox(ctx, handle)
  if not c then return nil, t end
  local abs, aerr = resolve(c, t, path)
  if not abs then return nil, aerr end
  local info, ierr = file_info(ctx, handle, c, abs)
  if info then
    if opts and opts.parents and info.isDir then return true end
    return fail("already_exists", "%s exists", path)
  end
  if ierr.code ~= "not_found" then return nil, ierr end
  if not (opts and opts.parents) and abs ~= "/" then
    local parent, perr = file_info(ctx, handle, c, abs:match("^(.*)/[^/]*$"))
    if not parent then
      if perr.code == "not_found" then return fail("not_found", "no parent directory: %s", path) end
      return nil, perr
    end
    if not parent.isDir then return fail("invalid_input", "the parent of %s is a file", path) end
  end
  local ok, err = tcall(ctx, handle, c, "POST", "/files/folder", {
    query = { path = abs, mode = "0755" }, want = { 200, 201 } })
  if ok == nil then return nil, err end
  return true
end

function M.rm(ctx, handle, path, opts)
  local c, t = toolbox(ctx, handle)
  if not c then return nil, t end
  local abs, aerr = resolve(c, t, path)
  if not abs then return nil, aerr end
  if abs == "/" then return fail("invalid_input", "refusing to remove /") end
  local recursive = opts and opts.recursive or false
  if not recursive then
    local info, ierr = file_info(ctx, handle, c, abs)
    if not info then return nil, ierr end
    if info.isDir then
      local list, lerr = M.ls(ctx, handle, abs)
      if not list then return nil, lerr end
      if #list > 0 then return fail("invalid_input", "%s is not empty", path) end
      recursive = true                      -- the daemon removes a directory only so
    end
  end
  local ok, err = tcall(ctx, handle, c, "DELETE", "/files", {
    query = { path = abs, recursive = recursive and "true" or "false" }, want = { 200, 204 } })
  if ok == nil then return nil, err end
  return true
end

require("sandlot._native.daytona_exec").install(M, { tcall = tcall, toolbox = toolbox,
  resolve = resolve, upload = upload })
require("sandlot._native.daytona").install(M, { main = main, call = call, time = rfc3339,
  sandbox_path = sandbox_path, wait_state = wait_state })

return M
