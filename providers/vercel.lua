-- providers/vercel.lua: Vercel Sandbox (named sandboxes, each run of one a session) over its
-- REST API. Only the mapping from Vercel's nouns to sandlot's lives here: endpoints, auth,
-- errors, retries and polling are sandlot.api's, NDJSON, tar and gzip are sandlot.wire's.
-- Reference: ../shared/provider-apis/vercel.md (checked against @vercel/sandbox 3.5).
-- SDK quirks kept: `Content-Type: application/json` and `?teamId=` on every request (GETs and
-- empty POSTs too), file writes as a gzip'd tar extracted at `x-cwd: /`, and any 410 (or a 422
-- sandbox_stopping / sandbox_snapshotting) resumes the sandbox (GET ?resume=true) and retries
-- the call once, as the SDK's withResume does.
-- A handle is {id = sandbox name, lifetime = seconds, workdir}; the current session id is
-- asked for once per process (GET /v2/sandboxes/{name}) and kept in memory. Every new session
-- gets the lifetime back: its deadline is extended when it is short of startedAt + lifetime.
-- exec runs argv under a small sh wrapper: the command's stdout and stderr go to files that
-- come back base64-encoded on the NDJSON log stream once it exits (log lines carry text, so
-- raw bytes would not survive), stdin travels as a file written beforehand (the API has no
-- stdin), and timeout(1) bounds it. ls, mkdir and rm run as commands (there is no listing
-- endpoint); spawn is not_supported (no stdin channel; the interactive PTY is a WebSocket).
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local tar = require("sandlot.wire.tar")
local base64 = require("sandlot.wire.base64")
local check = require("sandlot._check")
local exec = require("sandlot.exec")
local shell = require("sandlot.shell")
local fs = require("sandlot.fs")
local id = require("sandlot.id")
local task = require("sandlot.task")

local M = {
  name = "vercel",
  description = "Vercel Sandbox (named sandboxes and sessions over the REST API)",
  capabilities = { files = true, background = true, url = true, remote = true },
  config = { token = "string", team_id = "string", project_id = "string", api_url = "string",
             image = "string", runtime = "string", region = "string",
             request_timeout = "number" },
  create_options = { runtime = "string", region = "string", persistent = "boolean",
                     vcpus = "integer", snapshot = "string" },
}

local DEFAULT_API_URL = "https://vercel.com/api"
local WORKDIR = "/vercel/sandbox"              -- the session cwd Vercel gives
local DEFAULT_LIFETIME = 300                   -- Vercel's default session timeout (5 min)
local NAME = "^[%w][%w_.%-]*$"
local SESSION = "^[%w][%w_%-]*$"
local TAG = "sandlot"                          -- tag sandlot=1 marks our sandboxes
local TAG_LIFETIME = "sandlot.lifetime"
local SLACK = 60                               -- s the sandbox's own kill waits past ours

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

-- Config and credentials ---------------------------------------------------------------------

local function setting(ctx, key, env)
  local v = ctx.config and ctx.config[key]
  if v == nil or v == "" then v = env and os.getenv(env) end
  if v == "" then return nil end
  return v
end

-- The claims of an OIDC token (a JWT): owner_id is the team, project_id the project. Not
-- verified, as the SDK does not verify them either (api-client.ts, decodeUnverifiedToken).
local function claims(token)
  local body = token:match("^[%w_%-]+%.([%w_%-]+)%.[%w_%-]*$")
  if not body then return {} end
  body = body:gsub("%-", "+"):gsub("_", "/")
  body = body .. ("="):rep((4 - #body % 4) % 4)
  local text = base64.decode(body)
  local ok, v = pcall(json.decode, text or "")
  if not ok or type(v) ~= "table" then return {} end
  return { team = type(v.owner_id) == "string" and v.owner_id or nil,
           project = type(v.project_id) == "string" and v.project_id or nil }
end

-- {token, team, project} | nil, err. An OIDC token's claims name the team and project, as in
-- the SDK, unless team_id / project_id say otherwise.
local function credentials(ctx)
  local token = setting(ctx, "token", "VERCEL_TOKEN")
                or setting({}, "token", "VERCEL_OIDC_TOKEN")
  if not token then
    return fail("auth_failed", "no token in the provider's config, and neither VERCEL_TOKEN " ..
                "nor VERCEL_OIDC_TOKEN is set")
  end
  local t, terr = check.token(token, "the Vercel token")
  if not t then return nil, terr end
  local c = claims(t)
  local team = setting(ctx, "team_id", "VERCEL_TEAM_ID") or c.team
  local project = setting(ctx, "project_id", "VERCEL_PROJECT_ID") or c.project
  if not team or not project then
    return fail("auth_failed", "vercel needs a team and a project: set team_id and project_id " ..
                "(VERCEL_TEAM_ID, VERCEL_PROJECT_ID) or use an OIDC token that names them")
  end
  return { token = t, team = team, project = project }
end

local function request_timeout(ctx)
  return tonumber(ctx.config and ctx.config.request_timeout) or 60
end

-- 422 sandbox_stopping / sandbox_snapshotting: the session is on its way down (resumable);
-- 410 is a stopped session (resumable), or snapshot_not_found; 400 bad_request is input.
local function body_code(res)
  local e = type(res.json) == "table" and res.json.error
  return type(e) == "table" and e.code or nil
end
local SETTLING = { sandbox_stopping = true, sandbox_snapshotting = true }
local ERRORS = {
  [410] = function(res) return body_code(res) == "snapshot_not_found" and "not_found"
                                or "unavailable" end,
  [422] = function(res) return SETTLING[body_code(res)] and "unavailable" or "invalid_input" end,
}

-- The SDK's policy (with-retry.ts): 2 retries on 5xx and 429, Retry-After up to 20 s.
local RETRY = { attempts = 3, safe = true, base = 0.4, max_after = 20,
                statuses = { [429] = true, [500] = true, [502] = true, [503] = true,
                             [504] = true } }

-- The API client of ctx and its credentials, or nil, err.
local function client(ctx)
  local cr, err = credentials(ctx)
  if not cr then return nil, err end
  local c = api.client(ctx, {
    name = "vercel", base_url = setting(ctx, "api_url") or DEFAULT_API_URL,
    timeout = request_timeout(ctx), errors = ERRORS, retry = RETRY,
    auth = function() return "Authorization", "Bearer " .. cr.token end,
  })
  return c, cr
end

-- One call with the SDK's headers and teamId; a JSON content type unless opts says otherwise.
local function call(c, cr, method, path, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.query = { teamId = cr.team }
  for k, v in pairs(opts.query or {}) do o.query[k] = v end
  o.headers = { ["Content-Type"] = "application/json" }
  for k, v in pairs(opts.headers or {}) do o.headers[k] = v end
  if o.want == nil then o.want = { 200 } end
  return c:call(method, path, o)
end

local function name_of(handle)
  return check.id(type(handle) == "table" and handle.id or nil, NAME,
                  "the handle's Vercel sandbox name", 256)
end

-- Sandboxes and sessions ---------------------------------------------------------------------

local known = {}     -- sandbox name -> {session = id, routes = {port -> url}, ends = ms}

local function routes_of(list)
  local out = {}
  for _, r in ipairs(type(list) == "table" and list or {}) do
    if type(r) == "table" and math.type(r.port) == "integer" and type(r.subdomain) == "string"
       and r.subdomain:match("^[%w%-%.]+$") then
      out[r.port] = "https://" .. r.subdomain .. ".vercel.run"
    end
  end
  return out
end

-- Keeps what a {sandbox, session, routes} answer says; returns the session id or nil, err.
local function remember(name, v)
  if type(v) ~= "table" or type(v.session) ~= "table" then
    return fail("bad_response", "vercel: the answer has no session")
  end
  local sid, err = check.id(v.session.id, SESSION, "Vercel's session id", 256)
  if not sid then return nil, err end
  local k = known[name] or {}
  k.session, k.status = sid, v.session.status
  if v.routes then k.routes = routes_of(v.routes) end
  known[name] = k
  return sid
end

-- GET /v2/sandboxes/{name}[?resume=true] -> the answer | nil, err.
local function get_sandbox(ctx, handle, resume)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local v, err = call(c, cr, "GET", "/v2/sandboxes/" .. api.segment(name), {
    query = { projectId = cr.project, resume = resume and "true" or nil } })
  if not v then
    if err.code == "not_found" then known[name] = nil end
    return nil, err
  end
  if type(v) ~= "table" or type(v.sandbox) ~= "table" then
    return fail("bad_response", "vercel: GET /v2/sandboxes/{name} has no sandbox")
  end
  local sid, serr = remember(name, v)
  if not sid then return nil, serr end
  return v, sid
end

local function lifetime_of(handle)
  local l = type(handle) == "table" and handle.lifetime
  return math.type(l) == "integer" and l > 0 and l or nil
end

-- Extends the session when its deadline is short of startedAt + the handle's lifetime (a
-- session started by someone else's resume gets the sandbox's default).
local function reapply(ctx, handle, session)
  local life = lifetime_of(handle)
  if not life or type(session) ~= "table" or session.status ~= "running" then return true end
  local start = tonumber(session.startedAt or session.createdAt)
  local timeout = tonumber(session.timeout)
  if not start or not timeout then return true end
  local short = (start + life * 1000) - (start + timeout)
  if short <= 1000 then return true end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local ok, err = call(c, cr, "POST", "/v2/sandboxes/sessions/" .. api.segment(session.id) ..
                       "/extend-timeout", { json = { duration = math.floor(short) } })
  if not ok then return nil, err end
  return true
end

-- Starts a new session of a stopped sandbox (GET ?resume=true) and gives it the lifetime.
local function resume(ctx, handle)
  local v, sid = get_sandbox(ctx, handle, true)
  if not v then return nil, sid end
  local ok, err = reapply(ctx, handle, v.session)
  if not ok then return nil, err end
  return sid
end

local function session_of(ctx, handle)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  if known[name] and known[name].session then return known[name].session end
  local v, sid = get_sandbox(ctx, handle, false)
  if not v then return nil, sid end
  return sid
end

-- A 410 (stopped session) or a 422 stopping/snapshotting: resume once and try again.
local function resumable(err)
  return err and (err.status == 410 and err.code ~= "not_found"
                  or (err.status == 422 and err.code == "unavailable"))
end

-- Runs fn(c, cr, session id) -> value | nil, err; a resumable failure resumes the sandbox (after
-- a 422, once the old session has settled) and runs fn once more (sandbox.ts, withResume).
local function on_session(ctx, handle, fn)
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local sid, err = session_of(ctx, handle)
  if not sid then return nil, err end
  local v, ferr = fn(c, cr, sid)
  if v ~= nil or not resumable(ferr) then return v, ferr end
  if ferr.status == 422 then
    c:poll(function()
      local s = call(c, cr, "GET", "/v2/sandboxes/sessions/" .. api.segment(sid))
      local st = type(s) == "table" and type(s.session) == "table" and s.session.status
      return st ~= "stopping" and st ~= "snapshotting"
    end, { timeout = 60, interval = 0.5, max_interval = 0.5, what = "the session is stopping" })
  end
  local nsid, rerr = resume(ctx, handle)
  if not nsid then return nil, rerr end
  return fn(c, cr, nsid)
end

local function session_path(sid, tail)
  return "/v2/sandboxes/sessions/" .. api.segment(sid) .. tail
end

local function tags_of(opts, lifetime)
  local tags = { [TAG] = "1", [TAG_LIFETIME] = tostring(lifetime) }
  for k, v in pairs(opts.labels or {}) do
    k, v = tostring(k), tostring(v)
    if k == TAG or k == TAG_LIFETIME then
      return fail("invalid_input", "label %q is sandlot's own", k)
    end
    tags[k] = v
  end
  if opts.purpose then tags["sandlot.purpose"] = opts.purpose end
  if opts.name then tags["sandlot.name"] = opts.name end
  return tags
end

local function env_of(env)
  local out = {}
  for k, v in pairs(env or {}) do if v ~= false then out[k] = tostring(v) end end
  return next(out) and out or nil
end

local function network_of(n)
  if n == "none" then return { mode = "deny-all" } end
  if n == "all" then return { mode = "allow-all" } end
  if type(n) == "table" then
    local hosts = {}
    for i, h in ipairs(n) do hosts[i] = tostring(h) end
    return { allow = json.array(hosts) }
  end
end

---Creates a sandbox (POST /v3/sandboxes; /v2 with a runtime, as the SDK does) and keeps the
---session it comes with.
function M.create(ctx, opts)
  if opts.mounts then return fail("not_supported", "Vercel sandboxes cannot mount host paths") end
  for _, o in ipairs({ "memory_mb", "disk_mb" }) do
    if opts[o] ~= nil then ctx.warn(o .. " is set by Vercel (2048 MB per vCPU); ignored") end
  end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local cfg = ctx.config or {}
  local lifetime = opts.timeout and math.ceil(opts.timeout) or DEFAULT_LIFETIME
  local tags, terr = tags_of(opts, lifetime)
  if not tags then return nil, terr end
  local runtime = opts.runtime or (not opts.image and cfg.runtime) or nil
  local body = {
    projectId = cr.project, tags = tags, env = env_of(opts.env),
    image = not runtime and (opts.image or cfg.image) or nil, runtime = runtime,
    region = opts.region or cfg.region, persistent = opts.persistent,
    timeout = opts.timeout and lifetime * 1000 or nil,
    networkPolicy = network_of(opts.network),
    ports = opts.ports and json.array(opts.ports) or nil,
    resources = (opts.vcpus or opts.cpus) and { vcpus = opts.vcpus or math.ceil(opts.cpus) }
                or nil,
    source = opts.snapshot and { type = "snapshot", snapshotId = opts.snapshot } or nil,
  }
  local made, err = call(c, cr, "POST", runtime and "/v2/sandboxes" or "/v3/sandboxes",
                         { json = body, want = { 200, 201 } })
  if not made then return nil, err end
  if type(made) ~= "table" or type(made.sandbox) ~= "table" then
    return fail("bad_response", "vercel: POST /v3/sandboxes: the answer has no sandbox")
  end
  local name, nerr = check.id(made.sandbox.name, NAME, "Vercel's sandbox name", 256)
  if not name then return nil, nerr end
  local sid, serr = remember(name, made)
  local handle = { id = name, lifetime = lifetime, workdir = WORKDIR }
  if sid and opts.cwd then
    local w, werr = fs.path(WORKDIR, opts.cwd)
    if w then
      handle.workdir = w
      local r, xerr = M.exec(ctx, { id = name, lifetime = lifetime, workdir = "/" },
                             { "mkdir", "-p", "--", w }, { timeout = 60 })
      if r and r.exit_code ~= 0 then xerr = errors.new("io_error", "mkdir " .. w .. " failed") end
      if not r or r.exit_code ~= 0 then werr = xerr end
    end
    serr = werr
  end
  if not sid or serr then
    task.cleanup(function() M.destroy(ctx, handle) end)   -- never leave a half-made sandbox
    return nil, serr
  end
  if made.session.status == "pending" then
    local ok, aerr = M.await_ready(ctx, handle, { timeout = 60 })
    if not ok then
      task.cleanup(function() M.destroy(ctx, handle) end)
      return nil, aerr
    end
  end
  return handle
end

-- Session statuses: pending is on its way up; the rest of the way down is "stopped".
local STATUS = { running = "running", pending = "unknown", stopping = "stopped",
                 stopped = "stopped", snapshotting = "stopped", failed = "stopped",
                 aborted = "stopped" }

function M.status(ctx, handle)
  local v, err = get_sandbox(ctx, handle, false)
  if not v then
    if err.code == "not_found" then return "terminated" end
    return nil, err
  end
  return STATUS[v.session.status] or "unknown"
end

---Finds the sandbox again and gives its running session the handle's lifetime back.
function M.reconnect(ctx, handle)
  local v, err = get_sandbox(ctx, handle, false)
  if not v then return nil, err end
  local ok, rerr = reapply(ctx, handle, v.session)
  if not ok then return nil, rerr end
  return handle
end

function M.await_ready(ctx, handle, opts)
  local c, cr = client(ctx)
  if not c then return nil, cr end
  return c:poll(function()
    local v, err = get_sandbox(ctx, handle, false)
    if not v then return nil, err end
    local st = v.session.status
    if st == "running" then return true end
    if st == "pending" then return false end
    return nil, errors.new("unavailable", "the Vercel sandbox is " .. tostring(st) ..
                           "; start it first")
  end, { timeout = opts and opts.timeout or 60, interval = 0.1, max_interval = 1,
         what = "the Vercel session is not running" })
end

---Stops the current session (POST …/stop), asked for afresh: another process may have
---resumed the sandbox since. A stopped one is stopped already.
function M.stop(ctx, handle)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local v, sid = get_sandbox(ctx, handle, false)
  if not v then return nil, sid end
  local ok, serr = call(c, cr, "POST", session_path(sid, "/stop"))
  if not ok and serr.status ~= 410 then return nil, serr end
  if known[name] then known[name].status = "stopped" end
  return true
end

---Resumes the sandbox: a new session (GET ?resume=true) with the handle's lifetime.
function M.start(ctx, handle)
  local sid, err = resume(ctx, handle)
  if not sid then return nil, err end
  return M.await_ready(ctx, handle, { timeout = 60 })
end

---Deletes the sandbox (DELETE /v2/sandboxes/{name}). Idempotent.
function M.destroy(ctx, handle)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  known[name] = nil
  local ok, err = call(c, cr, "DELETE", "/v2/sandboxes/" .. api.segment(name),
                       { query = { projectId = cr.project } })
  if ok or err.code == "not_found" then return true end
  return nil, err
end

---The public URL of a port (https://{subdomain}.vercel.run, from the sandbox's routes). A port
---not exposed yet is added to the sandbox's ports (PATCH, the full list) first.
function M.get_url(ctx, handle, port)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  local v, err = get_sandbox(ctx, handle, false)
  if not v then return nil, err end
  if known[name].routes and known[name].routes[port] then return known[name].routes[port] end
  local ports = {}
  for p in pairs(known[name].routes or {}) do ports[#ports + 1] = p end
  ports[#ports + 1] = port
  table.sort(ports)
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local u, uerr = call(c, cr, "PATCH", "/v2/sandboxes/" .. api.segment(name), {
    query = { projectId = cr.project }, json = { ports = json.array(ports) } })
  if not u then return nil, uerr end
  local routes = routes_of(type(u) == "table" and u.routes)
  known[name].routes = routes
  if not routes[port] then
    return fail("bad_response", "vercel: port %d has no route after it was exposed", port)
  end
  return routes[port]
end

---Lists sandlot's sandboxes (tag sandlot=1; the API filters by one tag, the rest is checked
---here), page by page.
function M.list(ctx, opts)
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local want = { [TAG] = "1" }
  for k, v in pairs(opts and opts.labels or {}) do
    want[tostring(k)] = v == true and true or tostring(v)
  end
  local out, cursor = {}, nil
  for _ = 1, 1000 do
    local page, err = call(c, cr, "GET", "/v2/sandboxes", { query = {
      project = cr.project, tags = { TAG .. ":1" }, limit = 100, cursor = cursor } })
    if not page then return nil, err end
    if type(page) ~= "table" or type(page.sandboxes) ~= "table" then
      return fail("bad_response", "vercel: GET /v2/sandboxes has no sandboxes")
    end
    for _, s in ipairs(page.sandboxes) do
      local tags = type(s) == "table" and type(s.tags) == "table" and s.tags or {}
      local keep = type(s) == "table" and check.id(s.name, NAME, "name", 256) ~= nil
      for k, v in pairs(want) do
        if tags[k] == nil or (v ~= true and tags[k] ~= v) then keep = false end
      end
      if keep then
        local labels = {}
        for k, v in pairs(tags) do
          if k ~= TAG and k ~= TAG_LIFETIME and k ~= "sandlot.purpose" and k ~= "sandlot.name"
             and type(v) == "string" then labels[k] = v end
        end
        out[#out + 1] = { id = s.name, workdir = WORKDIR, labels = labels,
                          lifetime = math.tointeger(tonumber(tags[TAG_LIFETIME]))
                                     or DEFAULT_LIFETIME }
      end
    end
    local p = page.pagination
    cursor = type(p) == "table" and type(p.next) == "string" and p.next ~= "" and p.next or nil
    if not cursor then break end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

-- Files --------------------------------------------------------------------------------------

local function resolve(handle, path) return fs.in_workdir(handle, WORKDIR, path) end

---Reads a file (POST …/fs/read): the raw bytes.
function M.read_file(ctx, handle, path)
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  local res, err = on_session(ctx, handle, function(c, cr, sid)
    return call(c, cr, "POST", session_path(sid, "/fs/read"), {
      json = { path = abs }, raw = true, decode = false, max_body = 8 * 1024 ^ 3 // 1,
      timeout = 3600, errors = { [400] = "invalid_input" } })
  end)
  if not res then return nil, err end
  local ct = res.headers and res.headers["content-type"] or ""
  if not ct:find("application/octet-stream", 1, true) then   -- api-client.ts readFile
    return fail("bad_response", "vercel: fs/read answered %s, not application/octet-stream",
                ct == "" and "(no content type)" or ct:sub(1, 60))
  end
  return res.body or ""
end

---Writes files in one request: a gzip'd tar whose entries are the paths relative to /
---(x-cwd: /, as the SDK sends), modes kept; Vercel creates the parent directories.
function M.write_files(ctx, handle, files)
  local entries = {}
  for i, f in ipairs(files) do
    local abs, err = resolve(handle, f.path)
    if not abs then return nil, err end
    if abs == "/" then return fail("invalid_input", "cannot write a file at /") end
    entries[i] = { name = abs:sub(2), data = f.data, mode = f.mode or 420 }
  end
  local pieces, size = tar.archive(entries, { gzip = true })
  local ok, err = on_session(ctx, handle, function(c, cr, sid)
    return call(c, cr, "POST", session_path(sid, "/fs/write"), {
      headers = { ["Content-Type"] = "application/gzip", ["x-cwd"] = "/" },
      body = pieces, body_size = size, timeout = 60 + size / 1e6 })
  end)
  if not ok then return nil, err end
  return true
end

function M.write_file(ctx, handle, path, data, opts)
  return M.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
end

-- Commands -----------------------------------------------------------------------------------

-- $1 cwd, $2 stdin file or "", $3 timeout (s) or "", $4 output file prefix, $5 bytes kept
-- per stream; then argv. Output comes back as base64 (stdout on stdout, stderr on stderr); a
-- line "!cwd" on stdout (not base64) says the cwd is missing.
local WRAPPER = [[
d=$1 i=$2 t=$3 o=$4.out e=$4.err n=$5; shift 5
cd -- "$d" 2>/dev/null || { [ -z "$i" ] || rm -f -- "$i"; echo '!cwd'; exit 1; }
if [ -n "$i" ]; then exec 0<"$i"; rm -f -- "$i"; else exec 0</dev/null; fi
if [ -n "$t" ]; then timeout -k 1 "$t" "$@" >"$o" 2>"$e"; else "$@" >"$o" 2>"$e"; fi
rc=$?
head -c "$n" -- "$o" | base64
head -c "$n" -- "$e" | base64 >&2
rm -f -- "$o" "$e"
exit $rc
]]

local function queue_kill(c, cr, sid, cid)
  task.cleanup(function()
    task.timeout(30, call, c, cr, "POST", session_path(sid, "/cmd/" .. api.segment(cid) ..
                                                        "/kill"), { json = { signal = 9 } })
  end)
end

-- The wrapped argv: env = {X = false} as env -u X.
local function wrapped(handle, argv, opts, stdin_file, tag)
  local cwd, cerr = resolve(handle, opts.cwd or ".")
  if not cwd then return nil, cerr end
  local max = (opts.max_output or exec.DEFAULT_MAX_OUTPUT) + 1
  local args = { "-c", WRAPPER, "sandlot", cwd, stdin_file or "",
                 opts.timeout and ("%.3f"):format(opts.timeout) or "", "/tmp/.sandlot-" .. tag,
                 tostring(max) }
  for _, a in ipairs(shell.env_argv(opts.env, argv)) do args[#args + 1] = a end
  return args
end

local function unb64(parts, what)
  local text = table.concat(parts):gsub("%s", "")
  if text == "" then return "" end
  local data = base64.decode(text)
  if not data then return fail("bad_response", "vercel: the command's %s is not base64", what) end
  return data
end

---Runs argv in the sandbox (POST …/cmd, wait + logs: an NDJSON stream), under the wrapper
---above: byte-exact output, stdin as a file, timeout(1) for opts.timeout.
function M.exec(ctx, handle, argv, opts)
  local tag = id.hex(8)
  local stdin_file
  if opts.stdin ~= nil then
    local data = opts.stdin
    if type(data) ~= "string" then
      local t = {}
      for chunk in data do t[#t + 1] = chunk end
      data = table.concat(t)
    end
    stdin_file = "/tmp/.sandlot-" .. tag .. ".in"
    local ok, werr = M.write_files(ctx, handle, { { path = stdin_file, data = data,
                                                    mode = 384 } })
    if not ok then return nil, werr end
  end
  local args, aerr = wrapped(handle, argv, opts, stdin_file, tag)
  if not args then return nil, aerr end
  local body = { command = "sh", args = json.array(args), env = env_of(opts.env) or {},
                 sudo = false, wait = true, logs = true,
                 timeout = opts.timeout and math.ceil((opts.timeout + SLACK) * 1000) or nil }
  local out, err_parts, first, last, cid, sid_used, failure = {}, {}, nil, nil, nil, nil, nil
  local _guard <close> = setmetatable({}, { __close = function()
    if cid and not last then
      local c, cr = client(ctx)
      if c then queue_kill(c, cr, sid_used, cid) end
    end
  end })
  local t0 = os.time()
  local ok, err = on_session(ctx, handle, function(c, cr, sid)
    sid_used, out, err_parts, first, last = sid, {}, {}, nil, nil
    local decoder = ndjson.decoder(function(v)
      if type(v) ~= "table" then
        return fail("bad_response", "vercel: a stream line is not an object")
      end
      if type(v.command) == "table" then
        if not first then
          first = v.command
          cid = type(first.id) == "string" and first.id or nil
        elseif math.type(v.command.exitCode) == "integer" then
          last = v.command
        end
      elseif v.stream == "stdout" and type(v.data) == "string" then out[#out + 1] = v.data
      elseif v.stream == "stderr" and type(v.data) == "string" then
        err_parts[#err_parts + 1] = v.data
      elseif v.stream == "error" then
        local d = type(v.data) == "table" and v.data or {}
        failure = errors.new("unavailable", ("vercel: the command stream failed: %s: %s")
          :format(tostring(d.code), c:scrub(tostring(d.message))))
        return nil, failure
      end
    end)
    local res, serr = c:stream("POST", session_path(sid, "/cmd"), {
      json = body, headers = { ["Content-Type"] = "application/json" },
      query = { teamId = cr.team }, want = { 200 }, retry = false,
      timeout = opts.timeout and opts.timeout + SLACK + 30 or false, on_frame = decoder })
    if not res then return nil, serr end
    if res.headers["content-type"] ~= "application/x-ndjson" then   -- api-client.ts runCommand
      return fail("bad_response", "vercel: the command answer is not application/x-ndjson")
    end
    return true
  end)
  if not ok then return nil, err end
  if not first then return fail("bad_response", "vercel: stream_ended_early (no command line)") end
  if not last then
    return fail("bad_response", "vercel: stream_ended_early (the command did not finish)")
  end
  local joined = table.concat(out)
  if joined:find("^!cwd") then
    return fail("not_found", "cwd %s: no such directory", tostring(opts.cwd))
  end
  local stdout, e1 = unb64(out, "stdout")
  if not stdout then return nil, e1 end
  local stderr, e2 = unb64(err_parts, "stderr")
  if not stderr then return nil, e2 end
  local sink <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                  on_stderr = opts.on_stderr }
  sink:add("stdout", stdout)
  sink:add("stderr", stderr)
  local code = last.exitCode
  if opts.timeout and (code == 124 or code == 137) and os.time() - t0 >= opts.timeout - 1 then
    sink:timed_out()
  else
    sink:exit(code)
  end
  return sink:result()
end

-- Snapshots: native checkpoints that seed new sandboxes (Vercel has no in-place restore: a
-- sandbox is made from a snapshot with source {type = "snapshot"}).

---Takes a snapshot of the sandbox (POST …/snapshot): {id, size, created_at, comment}. Vercel
---stops the session as part of it; the next call resumes the sandbox. Vercel keeps no comment.
function M.checkpoint(ctx, handle, opts)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  local v, err = on_session(ctx, handle, function(c, cr, sid)
    local body = opts and opts.expiration and { expiration = opts.expiration * 1000 } or nil
    return call(c, cr, "POST", session_path(sid, "/snapshot"), { json = body })
  end)
  if not v then return nil, err end
  local s = type(v) == "table" and v.snapshot
  if type(s) ~= "table" then
    return fail("bad_response", "vercel: the snapshot answer has no snapshot")
  end
  local sn, serr = check.id(s.id, NAME, "Vercel's snapshot id", 256)
  if not sn then return nil, serr end
  if known[name] then known[name].status = "stopped" end
  return { id = sn, size = math.tointeger(s.sizeBytes), comment = opts and opts.comment,
           created_at = math.tointeger(tonumber(s.createdAt) and s.createdAt // 1000) }
end

---Creates a sandbox from a snapshot (source {type = "snapshot"}; 410 snapshot_not_found is
---not_found).
function M.create_from(ctx, opts, snapshot_id)
  local sn, serr = check.id(snapshot_id, NAME, "a Vercel snapshot id", 256)
  if not sn then return nil, serr end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.snapshot = sn
  return M.create(ctx, o)
end

---Deletes a snapshot (DELETE /v2/sandboxes/snapshots/{id}; its status becomes "deleted").
function M.delete_checkpoint(ctx, snapshot_id)
  local sn, serr = check.id(snapshot_id, NAME, "a Vercel snapshot id", 256)
  if not sn then return nil, serr end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local v, err = call(c, cr, "DELETE", "/v2/sandboxes/snapshots/" .. sn,
                      { query = { project = cr.project } })
  if not v then return nil, err end
  return true
end

---The sandbox's snapshots (GET /v2/sandboxes/snapshots?name=), newest first.
function M.checkpoints(ctx, handle)
  local name, nerr = name_of(handle)
  if not name then return nil, nerr end
  local c, cr = client(ctx)
  if not c then return nil, cr end
  local out, cursor = {}, nil
  for _ = 1, 100 do
    local page, err = call(c, cr, "GET", "/v2/sandboxes/snapshots", { query = {
      project = cr.project, name = name, limit = 100, cursor = cursor, sortOrder = "desc" } })
    if not page then return nil, err end
    if type(page) ~= "table" or type(page.snapshots) ~= "table" then
      return fail("bad_response", "vercel: GET /v2/sandboxes/snapshots has no snapshots")
    end
    for _, s in ipairs(page.snapshots) do
      if type(s) == "table" and type(s.id) == "string" and s.status == "created" then
        out[#out + 1] = { id = s.id, size = math.tointeger(s.sizeBytes),
                          created_at = math.tointeger(tonumber(s.createdAt) and
                                                      s.createdAt // 1000) }
      end
    end
    local p = page.pagination
    cursor = type(p) == "table" and type(p.next) == "string" and p.next ~= "" and p.next or nil
    if not cursor then break end
  end
  return out
end

return M
