-- providers/e2b.lua: E2B cloud sandboxes: the lifecycle over E2B's REST API (X-API-Key),
-- files over envd's /files, commands and directories over envd's Connect RPCs (JSON; the
-- process stream of process.Process/Start). No I/O at load time; the wire work is sandlot.api
-- and sandlot.wire.*. Reference: ../shared/provider-apis/e2b.md (the `e2b` JS SDK 2.51).
-- Config falls back to the SDK's variables (E2B_API_URL, E2B_DOMAIN, E2B_API_KEY,
-- E2B_SANDBOX_URL: envd calls go there with E2b-Sandbox-Id/-Port, as the SDK does).
-- A handle is {id, lifetime, workdir, domain?}: the envd access token comes from GET
-- /sandboxes/{id} once per process and stays in memory. stop = pause; start = connect with
-- the configured lifetime (connect alone resets it to 300 s); reconnect sets an expiry cut
-- short by another client's connect back to startedAt + lifetime.
-- Relative paths resolve against /home/user; env = {X = false} runs under `env -u X`.
-- Native checkpoints are E2B snapshots (templates): create{from = ck} makes a new sandbox.
-- exec and spawn (envd's process stream) live in sandlot._native.e2b_process, installed at
-- the bottom of this file.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local connect = require("sandlot.wire.connect")
local multipart = require("sandlot.wire.multipart")
local wtime = require("sandlot.wire.time")
local check = require("sandlot._check")
local fs = require("sandlot.fs")

local M = {
  name = "e2b",
  description = "E2B cloud sandboxes (REST API and envd over Connect)",
  capabilities = { files = true, background = true, url = true, remote = true, streams = true },
  config = { api_url = "string", domain = "string", api_key = "string",
             sandbox_url = "string", template = "string", request_timeout = "number" },
  create_options = { template = "string", auto_pause = "boolean" },
}

local ENVD_PORT = "49983"
local WORKDIR = "/home/user"
local DEFAULT_LIFETIME = 300                   -- E2B's own default (v2 create and connect)
local META = "sandlot"                         -- metadata sandlot=1 marks our sandboxes
local META_LIFETIME = "sandlot.lifetime"
local SANDBOX_ID = "^[a-z0-9][a-z0-9%-]*$"     -- [a-z0-9]+, or {id}-{clientID}

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

-- Config -------------------------------------------------------------------------------------

local function setting(ctx, key, env)
  local v = ctx.config and ctx.config[key]
  if v == nil or v == "" then v = os.getenv(env) end
  if v == "" then return nil end
  return v
end

-- Seconds per API call (the SDK's requestTimeoutMs is 60 s).
local function request_timeout(ctx)
  return tonumber(ctx.config and ctx.config.request_timeout) or 60
end

local function domain_of(ctx)
  return setting(ctx, "domain", "E2B_DOMAIN") or "e2b.app"
end

-- error_code values of E2B's error bodies (e2b.md, "Part 1"), then quota words in a 429.
local ERROR_CODES = {
  sandbox_capacity_unavailable = "unavailable", sandbox_placement_timeout = "timeout",
  sandbox_no_compatible_node = "unavailable", sandbox_create_failed = "unavailable",
  internal_server_error = "internal",
}

local function by_error_code(res, msg)
  local ec = type(res.json) == "table" and res.json.error_code
  if type(ec) == "string" and ERROR_CODES[ec] then return ERROR_CODES[ec] end
  if res.status == 429 and (msg:lower():find("concurrent", 1, true)
                            or msg:lower():find("maximum number", 1, true)) then
    return "quota_exceeded"
  end
end

local REST_ERRORS = {}
for _, s in ipairs({ 400, 409, 429, 500, 502, 503, 504 }) do REST_ERRORS[s] = by_error_code end

-- Control-plane 429/503 are retried (the SDK retries 429 with Retry-After); they mean the
-- request was not carried out, so a POST may be tried again.
local RETRY = { attempts = 4, safe = true, statuses = { [429] = true, [503] = true },
                max_after = 30 }

local function control(ctx)
  local key = setting(ctx, "api_key", "E2B_API_KEY")
  local url = setting(ctx, "api_url", "E2B_API_URL") or ("https://api." .. domain_of(ctx))
  return api.client(ctx, {
    name = "e2b", base_url = url, timeout = request_timeout(ctx), errors = REST_ERRORS,
    retry = RETRY,
    auth = function()
      if key == nil then
        return nil, errors.new("auth_failed", "no api_key in the provider's config and " ..
                                              "E2B_API_KEY is not set")
      end
      local k, kerr = check.token(key, "the E2B API key")
      if not k then return nil, kerr end
      return "X-API-Key", k
    end,
  })
end

local function sandbox_id(handle)
  return check.id(type(handle) == "table" and handle.id or nil, SANDBOX_ID,
                  "the handle's E2B sandbox id", 128)
end

-- Sandboxes ----------------------------------------------------------------------------------

local known = {}             -- sandbox id -> {token, domain}: this process's memory only

-- Keeps what a Sandbox or SandboxDetail answer says about reaching envd.
local function remember(sid, d)
  known[sid] = { token = type(d.envdAccessToken) == "string" and d.envdAccessToken or nil,
                 domain = type(d.domain) == "string" and d.domain or nil }
end

-- A control-plane call on the sandbox: prefix .. "/sandboxes/{id}" .. what. Returns the
-- answer and the sandbox id, or nil, err.
local function on_sandbox(ctx, handle, method, prefix, what, opts)
  local sid, ierr = sandbox_id(handle)
  if not sid then return nil, ierr end
  local v, err = control(ctx):call(method, prefix .. "/sandboxes/" .. api.segment(sid) .. what,
                                   opts)
  if v == nil then return nil, err, sid end
  return v, sid
end

-- GET /sandboxes/{id}: the SandboxDetail; remembers its envd token (forgets it when gone).
local function detail(ctx, handle)
  local d, sid, esid = on_sandbox(ctx, handle, "GET", "", "", { want = { 200 } })
  if not d then
    if esid and sid.code == "not_found" then known[esid] = nil end
    return nil, sid
  end
  if type(d) ~= "table" then return fail("bad_response", "GET /sandboxes: not a JSON object") end
  remember(sid, d)
  return d
end

-- envd answers: Connect errors {code, message} by their Connect code; the proxy's 502 is a
-- sandbox that is gone (killed, expired or paused).
local function by_connect_code(res)
  local j = res.json
  if type(j) == "table" and type(j.code) == "string" and connect.CODES[j.code] then
    return connect.CODES[j.code]
  end
  if res.status == 502 then return "not_found" end
end
local ENVD_ERRORS = {}
for _, s in ipairs({ 400, 401, 403, 404, 408, 409, 412, 429, 500, 501, 502, 503, 504 }) do
  ENVD_ERRORS[s] = by_connect_code
end

-- The envd client of a sandbox (its token fetched once per process).
local function envd(ctx, handle)
  local sid, ierr = sandbox_id(handle)
  if not sid then return nil, ierr end
  local info = known[sid]
  if not info then
    local d, err = detail(ctx, handle)
    if not d then return nil, err end
    if d.state == "paused" then
      return fail("unavailable", "E2B sandbox %s is paused; start it first", sid)
    end
    info = known[sid]
  end
  local token = info.token
  if token and not check.token(token, "envd access token") then
    return fail("bad_response", "E2B gave an envd access token that is not a token")
  end
  local base = setting(ctx, "sandbox_url", "E2B_SANDBOX_URL")
               or ("https://%s-%s.%s"):format(ENVD_PORT, sid, info.domain or
                                              handle.domain or domain_of(ctx))
  return api.client(ctx, {
    name = "e2b", base_url = base, timeout = request_timeout(ctx), errors = ENVD_ERRORS,
    retry = { attempts = 3, safe = true, statuses = { [429] = true, [503] = true } },
    headers = { ["E2b-Sandbox-Id"] = sid, ["E2b-Sandbox-Port"] = ENVD_PORT },
    auth = token and function() return "X-Access-Token", token end or nil,
  })
end

local function rpc(c, method, body)
  return c:call("POST", "/" .. method, {
    json = body, want = { 200 }, headers = { ["Connect-Protocol-Version"] = "1" } })
end

-- Paths: relative to the workdir, normalized lexically; a `..` above / is refused.
local function resolve(handle, path) return fs.in_workdir(handle, WORKDIR, path) end

local function metadata(opts, lifetime)
  local m = { [META] = "1", [META_LIFETIME] = tostring(lifetime) }
  for k, v in pairs(opts.labels or {}) do
    k, v = tostring(k), tostring(v)
    if k == META or k == META_LIFETIME then
      return nil, errors.new("invalid_input", ("label %q is sandlot's own"):format(k))
    end
    m[k] = v
  end
  if opts.purpose then m["sandlot.purpose"] = opts.purpose end
  if opts.name then m["sandlot.name"] = opts.name end
  return m
end

local function env_vars(env)
  local out = {}
  for k, v in pairs(env or {}) do
    if v ~= false then out[k] = tostring(v) end
  end
  return next(out) and out or nil
end

-- Waits until envd answers GET /health (204); the proxy's 502 is "not yet".
local function await_envd(ctx, handle, timeout)
  local c, err = envd(ctx, handle)
  if not c then return nil, err end
  return c:poll(function()
    local ok, herr = c:call("GET", "/health", { want = { 204, 200 }, timeout = 10, retry = 1 })
    if ok then return true end
    if herr.code == "auth_failed" then return nil, herr end
    return false                           -- 502 (port not open yet), 503, a timeout: not yet
  end, { timeout = timeout or 60, interval = 0.05, max_interval = 1,
         what = "envd did not answer GET /health" })
end

---Creates a sandbox (POST /v2/sandboxes) and waits until envd answers.
function M.create(ctx, opts)
  if type(opts.network) == "table" then
    return fail("not_supported", "the e2b provider does not map host allow-lists yet; use " ..
                "network = \"none\" or \"all\"")
  end
  if opts.mounts then return fail("not_supported", "E2B sandboxes cannot mount host paths") end
  for _, o in ipairs({ "cpus", "memory_mb", "disk_mb", "ports" }) do
    if opts[o] ~= nil then ctx.warn(o .. " is set by the E2B template; ignored") end
  end
  local lifetime = opts.timeout and math.ceil(opts.timeout) or DEFAULT_LIFETIME
  local meta, merr = metadata(opts, lifetime)
  if not meta then return nil, merr end
  local c = control(ctx)
  local body = { templateID = opts.template or opts.image or (ctx.config or {}).template
                              or "base",
                 metadata = meta, envVars = env_vars(opts.env), autoPause = opts.auto_pause }
  if opts.network == "none" then body.allow_internet_access = false end
  if opts.timeout then body.timeout = lifetime end
  local made, err = c:call("POST", "/v2/sandboxes", { json = body, want = { 201 } })
  if not made then return nil, err end
  if type(made) ~= "table" then return fail("bad_response", "POST /v2/sandboxes: not an object") end
  local sid, ierr = check.id(made.sandboxID, SANDBOX_ID, "E2B's sandboxID", 128)
  if not sid then return nil, ierr end
  remember(sid, made)
  local handle = { id = sid, lifetime = lifetime, workdir = WORKDIR, domain = known[sid].domain }
  if opts.cwd then
    local w, werr = resolve(handle, opts.cwd)
    if not w then return nil, werr end
    handle.workdir = w
  end
  local ok, rerr = await_envd(ctx, handle, 60)
  if ok and handle.workdir ~= WORKDIR then
    local c2 = envd(ctx, handle)
    ok, rerr = rpc(c2, "filesystem.Filesystem/MakeDir", { path = handle.workdir })
    if not ok and rerr.code == "already_exists" then ok = true end
  end
  if not ok then
    c:call("DELETE", "/sandboxes/" .. api.segment(sid), { want = { 204 } })
    return nil, rerr
  end
  return handle
end

local STATES = { running = "running", paused = "stopped", pausing = "stopped" }

function M.status(ctx, handle)
  local d, err = detail(ctx, handle)
  if not d and err.code == "not_found" then return "terminated" end
  if not d then return nil, err end
  return STATES[d.state] or "unknown"
end

---Reads the sandbox again and refreshes its envd token. When its expiry is earlier than
---the configured lifetime allows (another client's connect reset it to 300 s), sets it back
---to startedAt + lifetime (POST /sandboxes/{id}/timeout); it never lengthens it.
function M.reconnect(ctx, handle)
  local d, err = detail(ctx, handle)
  if not d then return nil, err end
  local started, ends = wtime.parse(d.startedAt), wtime.parse(d.endAt)
  local life = math.type(handle.lifetime) == "integer" and handle.lifetime or nil
  if d.state == "running" and started and ends and life and ends < started + life - 1 then
    local left = started + life - os.time()
    if left > 0 then
      local ok, terr = on_sandbox(ctx, handle, "POST", "", "/timeout",
                                  { json = { timeout = left }, want = { 204 } })
      if not ok then return nil, terr end
    end
  end
  return handle
end

function M.await_ready(ctx, handle, opts)
  local d, err = detail(ctx, handle)
  if not d then return nil, err end
  if d.state == "paused" then return fail("unavailable", "the E2B sandbox is paused") end
  return await_envd(ctx, handle, opts and opts.timeout)
end

---Pauses the sandbox (memory kept); pausing a paused one (409) is done already.
function M.stop(ctx, handle)
  local ok, err, sid = on_sandbox(ctx, handle, "POST", "", "/pause", { json = {}, want = { 204 } })
  if not ok and err.status ~= 409 then return nil, err end
  known[ok and err or sid] = nil
  return true
end

---Resumes it (POST /v2/sandboxes/{id}/connect) with its configured lifetime: connect
---without one would reset it to 300 s.
function M.start(ctx, handle)
  local lifetime = math.type(handle.lifetime) == "integer" and handle.lifetime > 0
                   and handle.lifetime or DEFAULT_LIFETIME
  local made, sid = on_sandbox(ctx, handle, "POST", "/v2", "/connect", {
    json = { timeout = lifetime }, want = { 200, 201 }, errors = { [409] = "unavailable" } })
  if not made then return nil, sid end
  if type(made) == "table" then remember(sid, made) else known[sid] = nil end
  return await_envd(ctx, handle, 60)
end

---Kills the sandbox. Idempotent.
function M.destroy(ctx, handle)
  local ok, err, sid = on_sandbox(ctx, handle, "DELETE", "", "", { want = { 204 } })
  known[ok and err or sid or ""] = nil
  if ok or err.code == "not_found" then return true end
  return nil, err
end

---The port URL: https://<port>-<id>.<domain>.
function M.get_url(ctx, handle, port)
  local sid, ierr = sandbox_id(handle)
  if not sid then return nil, ierr end
  if not known[sid] then
    local d, err = detail(ctx, handle)
    if not d then return nil, err end
  end
  return ("https://%d-%s.%s"):format(port, sid, known[sid].domain or handle.domain
                                                or domain_of(ctx))
end

-- list: GET /v2/sandboxes by metadata, page by page (X-Next-Token). The metadata filter is
-- decoded three times by E2B (e2b.md): each key and value escaped, the whole escaped, and the
-- query escapes it once more.
local function esc(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

function M.list(ctx, opts)
  local c = control(ctx)
  local want, pairs_ = { [META] = "1" }, {}
  for k, v in pairs(opts and opts.labels or {}) do
    want[tostring(k)] = v == true and true or tostring(v)
  end
  for k, v in pairs(want) do
    if v ~= true then pairs_[#pairs_ + 1] = esc(k) .. "=" .. esc(v) end
  end
  table.sort(pairs_)
  local out, token = {}, nil
  for _ = 1, 1000 do                        -- 100 per page: 100 000 sandboxes at most
    local page, res = c:call("GET", "/v2/sandboxes", {
      query = { metadata = esc(table.concat(pairs_, "&")), state = "running,paused",
                limit = 100, nextToken = token }, want = { 200 } })
    if not page then return nil, res end
    if type(page) ~= "table" then return fail("bad_response", "the sandbox list is not a list") end
    for _, s in ipairs(page) do
      local m = type(s) == "table" and type(s.metadata) == "table" and s.metadata or {}
      local match = check.id(s.sandboxID, SANDBOX_ID, "sandboxID", 128) ~= nil
      for k, v in pairs(want) do
        if m[k] == nil or (v ~= true and m[k] ~= v) then match = false end
      end
      if match then
        local labels = {}
        for k, v in pairs(m) do
          if k ~= META and k ~= META_LIFETIME and k ~= "sandlot.purpose" and k ~= "sandlot.name"
             and type(v) == "string" then labels[k] = v end
        end
        out[#out + 1] = { id = s.sandboxID, lifetime = math.tointeger(tonumber(m[META_LIFETIME]))
                          or DEFAULT_LIFETIME, workdir = WORKDIR, labels = labels }
      end
    end
    token = res.headers["x-next-token"]
    if token == nil or token == "" then break end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

-- Snapshots: native checkpoints that seed new sandboxes (E2B has no in-place restore; a
-- snapshot is a template: create with templateID = its id). Unnamed, so that each is a template
-- of its own (a name would put a new build on an existing template); no creation time is told.
local SNAPSHOT_ID = "^[%w][%w_.:%-]*$"         -- "<template id>:<tag>"

local function snapshot_id(v)
  return check.id(v, SNAPSHOT_ID, "an E2B snapshot id", 256)
end

---Takes a snapshot (POST /sandboxes/{id}/snapshots; the sandbox is paused meanwhile).
function M.checkpoint(ctx, handle, opts)
  local v, sid = on_sandbox(ctx, handle, "POST", "", "/snapshots", { json = {}, want = { 201 },
                                                                      timeout = 600 })
  if v == nil then return nil, sid end
  local sn, err = snapshot_id(type(v) == "table" and v.snapshotID or nil)
  if not sn then return nil, err end
  return { id = sn, comment = opts and opts.comment, created_at = os.time() }
end

---The sandbox's snapshots (GET /snapshots?sandboxID=, X-Next-Token pages), as E2B lists them.
function M.checkpoints(ctx, handle)
  local sid, ierr = sandbox_id(handle)
  if not sid then return nil, ierr end
  local c, out, token = control(ctx), {}, nil
  for _ = 1, 100 do
    local page, res = c:call("GET", "/snapshots", { query = { sandboxID = sid, limit = 100,
                                                              nextToken = token }, want = { 200 } })
    if not page then return nil, res end
    if type(page) ~= "table" then return fail("bad_response", "the snapshot list is not a list") end
    for _, sn in ipairs(page) do
      if type(sn) == "table" and snapshot_id(sn.snapshotID) then
        out[#out + 1] = { id = sn.snapshotID }
      end
    end
    token = res.headers["x-next-token"]
    if token == nil or token == "" then break end
  end
  return out
end

---Creates a sandbox from a snapshot (its id as the templateID).
function M.create_from(ctx, opts, native_id)
  local sn, err = snapshot_id(native_id)
  if not sn then return nil, err end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.template, o.image = sn, nil
  return M.create(ctx, o)
end

---Deletes a snapshot (DELETE /templates/{id}, as the SDK's deleteSnapshot).
function M.delete_checkpoint(ctx, native_id)
  local sn, err = snapshot_id(native_id)
  if not sn then return nil, err end
  local ok, derr = control(ctx):call("DELETE", "/templates/" .. api.segment(sn),
                                     { want = { 204 } })
  if ok == nil then return nil, derr end
  return true
end

-- Files --------------------------------------------------------------------------------------

-- The envd client and the absolute path every file operation starts from.
local function open(ctx, handle, path)
  local c, cerr = envd(ctx, handle)
  if not c then return nil, cerr end
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  return c, abs
end

---Reads a file (GET /files): the body comes in as it is, without a copy of its own.
function M.read_file(ctx, handle, path, opts)
  local c, abs = open(ctx, handle, path)
  if not c then return nil, abs end
  local sink
  if opts and opts.to then                  -- streamed to the host file, a chunk at a time
    local serr
    sink, serr = fs.sink(opts.to)
    if not sink then return nil, serr end
  end
  local o = { query = { path = abs }, want = { 200 }, decode = false, timeout = 3600,
              max_body = 8 * 1024 ^ 3 // 1, on_frame = sink, raw = not sink or nil }
  local res, err
  if sink then res, err = c:stream("GET", "/files", o)
  else res, err = c:call("GET", "/files", o) end
  if sink then sink:finish() end
  if not res then
    if err.status == 400 then
      return fail("invalid_input", "%s is a directory or not a file", path)
    end
    return nil, err
  end
  if sink then return sink.bytes end
  return res.body or ""
end

local function c_text(s) return (s:gsub("%s+$", ""):sub(1, 300)) end

-- Sets the modes files were given (envd writes 0644): one chmod per mode.
local function chmod(ctx, handle, files)
  local by = {}
  for _, f in ipairs(files) do
    if f.mode then
      local m = ("%o"):format(f.mode)
      by[m] = by[m] or {}
      by[m][#by[m] + 1] = f.abs
    end
  end
  for m, list in pairs(by) do
    local argv = { "chmod", m, "--" }
    for _, a in ipairs(list) do argv[#argv + 1] = a end
    local r, err = M.exec(ctx, handle, argv, { timeout = 60 })
    if not r then return nil, err end
    if r.exit_code ~= 0 then return fail("io_error", "chmod: %s", c_text(r.stderr)) end
  end
  return true
end

local function refused(_, msg)
  if msg:find("directory", 1, true) or msg:find("not a dir", 1, true) then
    return "invalid_input"
  end
end

---Writes several files in one multipart request (POST /files, each part named `file` with
---its destination as the filename); a path a multipart header cannot hold goes alone as
---application/octet-stream.
function M.write_files(ctx, handle, files)
  local c, cerr = envd(ctx, handle)
  if not c then return nil, cerr end
  local parts, alone, all = {}, {}, {}
  for i, f in ipairs(files) do
    local abs, err = resolve(handle, f.path)
    if not abs then return nil, err end
    all[i] = { abs = abs, mode = f.mode }
    if abs:find('[%c"\\]') then
      alone[#alone + 1] = { abs = abs, data = f.data }
    else
      parts[#parts + 1] = { name = "file", filename = abs, data = f.data }
    end
  end
  local errs = { [400] = refused, [500] = refused, [507] = "quota_exceeded" }
  if #parts > 0 then
    local pieces, size, ctype = multipart.encode(parts)
    local ok, err = c:call("POST", "/files", {
      query = #parts == 1 and { path = parts[1].filename } or nil,
      headers = { ["Content-Type"] = ctype }, body = pieces, body_size = size,
      timeout = 60 + size / 1e6, want = { 200 }, decode = false, errors = errs })
    if not ok then return nil, err end
  end
  for _, f in ipairs(alone) do
    local ok, err = c:call("POST", "/files", {
      query = { path = f.abs }, headers = { ["Content-Type"] = "application/octet-stream" },
      body = { f.data }, timeout = 60 + #f.data / 1e6, want = { 200 }, decode = false,
      errors = errs })
    if not ok then return nil, err end
  end
  return chmod(ctx, handle, all)
end

-- A host file (opts.from) in one application/octet-stream POST, read a chunk at a time.
local function write_from(ctx, handle, path, from, mode)
  local c, abs = open(ctx, handle, path)
  if not c then return nil, abs end
  local body, size = fs.source(from)
  if not body then return nil, size end
  local ok, err = c:call("POST", "/files", {
    query = { path = abs }, headers = { ["Content-Type"] = "application/octet-stream" },
    body = body, body_size = size, timeout = 60 + size / 1e6, want = { 200 }, decode = false,
    errors = { [400] = refused, [500] = refused, [507] = "quota_exceeded" } })
  if not ok then return nil, err end
  return chmod(ctx, handle, { { abs = abs, mode = mode } })
end

function M.write_file(ctx, handle, path, data, opts)
  if data == nil and opts and opts.from then
    return write_from(ctx, handle, path, opts.from, opts.mode)
  end
  return M.write_files(ctx, handle, { { path = path, data = data, mode = opts and opts.mode } })
end

local TYPES = { FILE_TYPE_FILE = "file", FILE_TYPE_DIRECTORY = "directory",
                FILE_TYPE_SYMLINK = "symlink" }

local function entry_of(e)
  local kind = e.symlinkTarget and "symlink" or TYPES[e.type] or "other"
  return { name = e.name, type = kind, size = math.tointeger(tonumber(e.size or 0)) or 0,
           mode = math.tointeger(e.mode) or 0, mtime = wtime.parse(e.modifiedTime) or 0 }
end

local function stat(c, abs)
  local v, err = rpc(c, "filesystem.Filesystem/Stat", { path = abs })
  if not v then return nil, err end
  if type(v) ~= "table" or type(v.entry) ~= "table" then
    return fail("bad_response", "envd: Stat gave no entry")
  end
  return v.entry
end

local function list_dir(c, abs)
  local v, err = rpc(c, "filesystem.Filesystem/ListDir", { path = abs, depth = 1 })
  if not v then return nil, err end
  if type(v) ~= "table" then return fail("bad_response", "envd: ListDir gave no object") end
  return type(v.entries) == "table" and v.entries or {}
end

function M.ls(ctx, handle, path)
  local c, abs = open(ctx, handle, path)
  if not c then return nil, abs end
  local entries, err = list_dir(c, abs)
  if not entries then return nil, err end
  local out = {}
  for i, e in ipairs(entries) do
    if type(e) ~= "table" or type(e.name) ~= "string" then
      return fail("bad_response", "envd: a ListDir entry without a name")
    end
    out[i] = entry_of(e)
  end
  return out
end

function M.mkdir(ctx, handle, path, opts)
  local c, abs = open(ctx, handle, path)
  if not c then return nil, abs end
  local parents = opts and opts.parents
  if not parents then                      -- MakeDir makes parents: check for one first
    local up = abs:match("^(.*)/[^/]+$")
    local e, err = stat(c, up == "" and "/" or up)
    if not e then return nil, err end
    if TYPES[e.type] ~= "directory" then return fail("invalid_input", "%s: not a directory", up) end
  end
  local ok, err = rpc(c, "filesystem.Filesystem/MakeDir", { path = abs })
  if ok then return true end
  if err.code == "already_exists" and parents then return true end
  return nil, err
end

function M.rm(ctx, handle, path, opts)
  local c, abs = open(ctx, handle, path)
  if not c then return nil, abs end
  local e, err = stat(c, abs)              -- Remove is rm -rf: missing and full are ours
  if not e then return nil, err end
  if TYPES[e.type] == "directory" and not e.symlinkTarget and not (opts and opts.recursive) then
    local entries, lerr = list_dir(c, abs)
    if not entries then return nil, lerr end
    if #entries > 0 then
      return fail("invalid_input", "%s is a directory that is not empty (use recursive)", path)
    end
  end
  local ok, rerr = rpc(c, "filesystem.Filesystem/Remove", { path = abs })
  if not ok then return nil, rerr end
  return true
end

require("sandlot._native.e2b_process").install(M, { envd = envd, rpc = rpc, resolve = resolve })

return M
