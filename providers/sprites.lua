-- providers/sprites.lua: Fly.io Sprites (https://sprites.dev): persistent Linux VMs addressed
-- by name, over the Sprites API (`api_url`, Bearer token). Only the mapping from Sprites' nouns
-- to sandlot's lives here; the wire work is sandlot.api, sandlot.ws and sandlot.wire.*.
-- API reference: ../shared/provider-apis/sprites.md (checked against npm @fly/sprites 0.1.0).
--
-- exec is the HTTP form (POST /v1/sprites/{name}/exec): the answer's chunks are its frames
-- (type byte 1 stdout, 2 stderr, 3 exit), so the body is read with its chunked framing kept
-- (sandlot.http raw_chunked, wire.chunked). spawn is the WebSocket form (ws:// or wss://, as
-- api_url's scheme implies): stdin is binary frames `0`+bytes, end of input `4`; kill is
-- POST .../exec/{session}/kill. Files are /fs/{read,write,list,delete} (mkdir: a .keep file
-- written with mkdirParents, then deleted, as the SDKs do). Checkpoints are native
-- (sb:checkpoint() -> POST /checkpoint; restore in place). There is no stop or start: a
-- sprite suspends itself when idle and any request wakes it, so cold, warm and running are
-- all "running". `env` given to Sprites replaces the whole default environment, so exec env
-- goes through /usr/bin/env instead (`env -u X` for X = false).
-- A handle is {id = sprite name, workdir}: nothing secret.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local chunked = require("sandlot.wire.chunked")
local wtime = require("sandlot.wire.time")
local check = require("sandlot._check")
local exec = require("sandlot.exec")
local shell = require("sandlot.shell")
local fs = require("sandlot.fs")
local id = require("sandlot.id")
local task = require("sandlot.task")
local queue = require("sandlot.queue")
local ws = require("sandlot.ws")

local M = {
  name = "sprites",
  description = "Fly.io Sprites: persistent Linux VMs (HTTP exec, WebSocket spawn, " ..
                "native checkpoints)",
  capabilities = { files = true, url = true, remote = true, background = false },
  config = { token = "string", api_url = "string", request_timeout = "number",
             create_timeout = "number" },
  create_options = { url_auth = "string", region = "string" },
}

local DEFAULT_API_URL = "https://api.sprites.dev"
local WORKDIR = "/home/sprite"
local NAME = "^[a-z0-9][a-z0-9%-]*$"          -- sprite names: unique per organisation
local MARK = "sandlot"                         -- the label that marks sandlot's sprites
local CHUNK = 256 * 1024                       -- stdin bytes per WebSocket frame
local QUEUE_MAX = 4 * 1024 * 1024              -- spawn output queued before reading stops

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

-- Config -------------------------------------------------------------------------------------

local function setting(ctx, key, ...)
  local v = ctx.config and ctx.config[key]
  for i = 1, select("#", ...) do
    if v ~= nil and v ~= "" then break end
    v = os.getenv((select(i, ...)))
  end
  if v == "" then return nil end
  return v
end

local function api_url(ctx)
  local u = setting(ctx, "api_url", "SPRITES_API_URL") or DEFAULT_API_URL
  return (u:gsub("/+$", ""))
end

local function request_timeout(ctx)
  return tonumber(ctx.config and ctx.config.request_timeout) or 60
end

local function token(ctx)
  local t = setting(ctx, "token", "SPRITES_API_TOKEN", "SPRITE_TOKEN")
  if t == nil then
    return nil, errors.new("auth_failed", "sprites: no token in the provider's config and " ..
                                          "neither SPRITES_API_TOKEN nor SPRITE_TOKEN is set")
  end
  return check.token(t, "the Sprites API token")
end

-- Error bodies: {error: code, message} (API) or {error, code: errno, path} (filesystem).
local ERRNO = { ENOENT = "not_found", ENOTDIR = "invalid_input", EISDIR = "invalid_input",
                EEXIST = "already_exists", EACCES = "permission_denied",
                EPERM = "permission_denied", ENOTEMPTY = "invalid_input",
                ENOSPC = "quota_exceeded" }
local API_CODES = { concurrent_sprite_limit_exceeded = "quota_exceeded",
                    sprite_creation_rate_limited = "rate_limited" }

local function by_body(res, msg)
  local j = type(res.json) == "table" and res.json or {}
  if type(j.code) == "string" and ERRNO[j.code] then return ERRNO[j.code] end
  if type(j.error) == "string" and API_CODES[j.error] then return API_CODES[j.error] end
  if res.status == 400 and msg:lower():find("already exists", 1, true) then
    return "already_exists"                    -- a duplicate name is a 400 (sprites.md)
  end
  if res.status == 410 then return "not_found" end
end
local ERRORS = {}
for _, s in ipairs({ 400, 403, 404, 409, 410, 422, 429, 500 }) do ERRORS[s] = by_body end

-- 429 and 503 mean the request was not carried out, so a POST may be tried again (the SDK
-- itself does no retries).
local RETRY = { attempts = 4, safe = true, statuses = { [429] = true, [503] = true },
                max_after = 30 }

local function client(ctx)
  return api.client(ctx, {
    name = "sprites", base_url = api_url(ctx), timeout = request_timeout(ctx), errors = ERRORS,
    retry = RETRY,
    auth = function()
      local t, err = token(ctx)
      if not t then return nil, err end
      return "Authorization", "Bearer " .. t
    end,
  })
end

local function sprite_name(handle)
  return check.id(type(handle) == "table" and handle.id or nil, NAME,
                  "the handle's sprite name", 63)
end

-- "/v1/sprites/{name}" .. what, for a handle.
local function path_of(handle, what)
  local name, err = sprite_name(handle)
  if not name then return nil, err end
  return "/v1/sprites/" .. api.segment(name) .. (what or "")
end

local function resolve(handle, path) return fs.in_workdir(handle, WORKDIR, path) end

-- Sprites -------------------------------------------------------------------------------------

local function info(ctx, handle)
  local p, perr = path_of(handle)
  if not p then return nil, perr end
  local v, err = client(ctx):call("GET", p, { want = { 200 } })
  if not v then return nil, err end
  if type(v) ~= "table" then return fail("bad_response", "GET /v1/sprites: not a JSON object") end
  return v
end

local OWN = { ["sandlot.purpose"] = true, ["sandlot.name"] = true, ["sandlot.workdir"] = true }

-- sandlot's labels as Sprites' list of strings: "sandlot", then "key=value" each.
local function labels_of(opts, workdir)
  local out = { MARK }
  local keys = {}
  for k in pairs(opts.labels or {}) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if k:find("=", 1, true) or OWN[k] then
      return fail("invalid_input", "label %q: a key may not hold '=' or be sandlot's own", k)
    end
    out[#out + 1] = k .. "=" .. tostring(opts.labels[k])
  end
  if opts.purpose then out[#out + 1] = "sandlot.purpose=" .. opts.purpose end
  if opts.name then out[#out + 1] = "sandlot.name=" .. opts.name end
  if workdir ~= WORKDIR then out[#out + 1] = "sandlot.workdir=" .. workdir end
  return out
end

local function parse_labels(list)
  local marked, labels, workdir = false, {}, WORKDIR
  for _, l in ipairs(type(list) == "table" and list or {}) do
    if l == MARK then marked = true
    elseif type(l) == "string" then
      local k, v = l:match("^([^=]+)=(.*)$")
      if k == "sandlot.workdir" then workdir = v
      elseif k and not OWN[k] then labels[k] = v end
    end
  end
  return marked, labels, workdir
end

local mkdir_keep

---Creates a sprite (POST /v1/sprites, waiting for capacity) named sandlot-<random>.
function M.create(ctx, opts)
  if opts.network ~= nil and opts.network ~= "all" then
    return fail("not_supported", "the sprites provider does not map network policies yet; " ..
                "use network = \"all\"")
  end
  if opts.mounts then return fail("not_supported", "sprites cannot mount host paths") end
  if opts.image then ctx.warn("sprites run Sprites' own image; image is ignored") end
  if opts.ports then ctx.warn("a sprite's URL reaches port 8080 only; ports is ignored") end
  if opts.timeout then
    ctx.warn("sprites have no lifetime of their own (they suspend when idle); timeout is " ..
             "ignored")
  end
  if opts.url_auth ~= nil and opts.url_auth ~= "sprite" and opts.url_auth ~= "public" then
    return fail("invalid_input", "url_auth must be \"sprite\" or \"public\"")
  end
  local handle = { id = "sandlot-" .. id.hex(6), workdir = WORKDIR }
  if opts.cwd then
    local w, werr = resolve(handle, opts.cwd)
    if not w then return nil, werr end
    handle.workdir = w
  end
  local labels, lerr = labels_of(opts, handle.workdir)
  if not labels then return nil, lerr end
  local cfg = {}
  if opts.cpus then cfg.cpus = math.ceil(opts.cpus) end
  if opts.memory_mb then cfg.ram_mb = math.ceil(opts.memory_mb) end
  if opts.disk_mb then cfg.storage_gb = math.ceil(opts.disk_mb / 1024) end
  if opts.region then cfg.region = opts.region end
  local env = {}
  for k, v in pairs(opts.env or {}) do if v ~= false then env[k] = tostring(v) end end
  local c = client(ctx)
  local made, err = c:call("POST", "/v1/sprites", {
    json = { name = handle.id, wait_for_capacity = true, labels = labels,
             config = next(cfg) and cfg or nil, environment = next(env) and env or nil,
             url_settings = opts.url_auth and { auth = opts.url_auth } or nil },
    want = { 201, 200 }, timeout = tonumber((ctx.config or {}).create_timeout) or 120 })
  if not made then return nil, err end
  if type(made) == "table" and made.name ~= nil and made.name ~= handle.id then
    return fail("bad_response", "POST /v1/sprites answered another sprite's name")
  end
  if handle.workdir ~= WORKDIR then
    local ok, merr = mkdir_keep(ctx, handle, handle.workdir)
    if not ok then
      task.cleanup(function() M.destroy(ctx, handle) end)   -- never leave a half-made sprite
      return nil, merr
    end
  end
  return handle
end

---cold, warm and running are all "running": any request wakes a sprite.
function M.status(ctx, handle)
  local v, err = info(ctx, handle)
  if not v and err.code == "not_found" then return "terminated" end
  if not v then return nil, err end
  if v.status == "cold" or v.status == "warm" or v.status == "running" then return "running" end
  return "unknown"
end

function M.reconnect(ctx, handle)
  local v, err = info(ctx, handle)
  if not v then return nil, err end
  return handle
end

---Deletes the sprite (and its checkpoints). Idempotent.
function M.destroy(ctx, handle)
  local p, perr = path_of(handle)
  if not p then return nil, perr end
  local ok, err = client(ctx):call("DELETE", p, { want = { 200, 204 }, decode = false })
  if ok or err.code == "not_found" then return true end
  return nil, err
end

---The sprite's URL (SpriteInfo.url): it reaches port 8080 (or the one HTTP service's port),
---behind the sprite's url_settings.auth (default "sprite": an org token as bearer).
function M.get_url(ctx, handle, port)
  if port ~= 8080 then
    return fail("not_supported", "a sprite's URL reaches port 8080 only (or one service's " ..
                "http_port), not %s", tostring(port))
  end
  local v, err = info(ctx, handle)
  if not v then return nil, err end
  if type(v.url) ~= "string" or not v.url:match("^https?://") then
    return fail("bad_response", "the sprite has no url")
  end
  return v.url
end

---Lists sandlot's sprites (labelled "sandlot") whose labels include every given pair.
function M.list(ctx, opts)
  local want = {}
  for k, v in pairs(opts and opts.labels or {}) do want[tostring(k)] = tostring(v) end
  local c = client(ctx)
  local out, token_ = {}, nil
  for _ = 1, 1000 do
    local page, err = c:call("GET", "/v1/sprites", {
      query = { prefix = "sandlot-", max_results = 100, continuation_token = token_ },
      want = { 200 } })
    if not page then return nil, err end
    if type(page) ~= "table" or type(page.sprites) ~= "table" then
      return fail("bad_response", "GET /v1/sprites: no sprites list")
    end
    for _, s in ipairs(page.sprites) do
      local marked, labels, workdir = parse_labels(type(s) == "table" and s.labels)
      local match = marked and sprite_name({ id = s.name }) ~= nil
      for k, v in pairs(want) do if labels[k] ~= v then match = false end end
      if match then
        out[#out + 1] = { id = s.name, workdir = workdir, labels = labels,
                          created_at = wtime.parse(s.created_at) }
      end
    end
    token_ = page.has_more and page.next_continuation_token or nil
    if type(token_) ~= "string" or token_ == "" then break end
  end
  table.sort(out, function(x, y) return x.id < y.id end)
  return out
end

-- Commands -----------------------------------------------------------------------------------

-- The exec query: cmd repeated (argv, behind /usr/bin/env when env is given: Sprites' env
-- replaces the whole environment), path (the program) and dir.
local function command(argv, opts, cwd)
  local cmd = shell.env_argv(opts.env, argv, { set = true, program = "/usr/bin/env" })
  return { cmd = cmd, path = cmd[1], dir = cwd }
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

-- A query string with repeated keys in the given order: {{k, v}, ...}.
local function query_string(q)
  local parts = {}
  for _, kv in ipairs(q) do parts[#parts + 1] = escape(kv[1]) .. "=" .. escape(kv[2]) end
  return table.concat(parts, "&")
end

local function exec_query(q, extra)
  local list = {}
  for _, a in ipairs(q.cmd) do list[#list + 1] = { "cmd", a } end
  list[#list + 1] = { "path", q.path }
  if q.dir then list[#list + 1] = { "dir", q.dir } end
  for _, kv in ipairs(extra or {}) do list[#list + 1] = kv end
  return query_string(list)
end

-- The working directory of a command: resolved, and checked to exist when the caller chose it
-- (Sprites' exec does not say "no such directory" apart from the command's own failure).
local function workdir(ctx, handle, cwd)
  local abs, err = resolve(handle, cwd or ".")
  if not abs then return nil, err end
  if cwd ~= nil then
    local entries, lerr = M._list(ctx, handle, abs)
    if not entries then
      if lerr.code == "not_found" then return fail("not_found", "no directory %s", cwd) end
      return nil, lerr
    end
    if entries.file then return fail("not_found", "%s is not a directory", cwd) end
  end
  return abs
end

-- One HTTP exec frame into the sink (sprites.md, "HTTP exec"): type byte, payload.
local function exec_frames(out, state)
  return chunked.decoder(function(frame)
    local t = frame:byte(1)
    if state.exit ~= nil then return fail("bad_response", "sprites exec: a frame after exit") end
    if t == 1 then out:add("stdout", frame:sub(2))
    elseif t == 2 then out:add("stderr", frame:sub(2))
    elseif t == 3 and #frame == 2 then state.exit = frame:byte(2)
    else
      return fail("bad_response", "sprites exec: frame type %s of %d bytes (was the answer " ..
                  "re-chunked on the way?)", tostring(t), #frame)
    end
    return true
  end)
end

---Runs argv over the HTTP exec (stdin as the request body).
function M.exec(ctx, handle, argv, opts)
  local p, perr = path_of(handle, "/exec")
  if not p then return nil, perr end
  local cwd, cerr = workdir(ctx, handle, opts.cwd)
  if not cwd then return nil, cerr end
  local q = command(argv, opts, cwd)
  local out <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                on_stderr = opts.on_stderr }
  local state = {}
  local dec = exec_frames(out, state)
  local stdin = opts.stdin
  local res, err = client(ctx):stream("POST", p, {
    query = exec_query(q, stdin ~= nil and { { "stdin", "true" } } or nil),
    headers = { ["Content-Type"] = "application/octet-stream" },
    body = stdin ~= nil and stdin or "", raw_chunked = true, retry = false,
    timeout = opts.timeout or false, on_frame = dec })
  if not res then
    if err.code == "timeout" and opts.timeout then
      out:timed_out()           -- the service ends the command once the connection is gone
      return out:result()
    end
    return nil, err
  end
  if state.exit == nil then return fail("bad_response", "sprites exec: no exit frame") end
  out:exit(state.exit)
  return out:result()
end

-- Processes ----------------------------------------------------------------------------------
-- spawn: the WebSocket exec, read by a task of its own into a bounded queue (when nobody
-- reads, reading stops and the service holds the output); kill through the session's HTTP
-- kill (the session id comes in session_info), else a signal message on the socket.

local Process = {}
Process.__index = Process

function Process:read()
  local f, err = self.q:get()
  if f then return f[1], f[2] end
  return nil, err
end

function Process:write(data)
  if self.stdin_closed then return fail("invalid_input", "the process's stdin is closed") end
  if self.exit ~= nil or self.q.closed then
    return fail("invalid_input", "the process has exited")
  end
  for i = 1, #data, CHUNK do
    local ok, err = self.conn:send("\0" .. data:sub(i, i + CHUNK - 1), { binary = true })
    if not ok then return nil, err end
  end
  return true
end

function Process:close_stdin()
  if self.stdin_closed then return true end
  self.stdin_closed = true
  if self.exit ~= nil or self.q.closed then return true end
  local ok, err = self.conn:send("\4", { binary = true })
  if not ok and not err.closed then return nil, err end
  return true
end

function Process:wait()
  if self.result then return self.result end
  local ok, err = self.q:wait_for(function() return self.exit ~= nil end)
  if not ok and err then return nil, err end
  if self.exit == nil then
    return nil, self.q.err or errors.new("io_error", "sprites exec: the socket closed before " ..
                                         "the command's exit")
  end
  local n = self.killed
  if n and self.exit == 128 + n then self.sink:exit(nil, n) else self.sink:exit(self.exit) end
  self.result = self.sink:result()
  return self.result
end

local function http_kill(c, p, session, name)
  return c:call("POST", p .. "/" .. math.tointeger(session) .. "/kill", {
    query = { signal = name, timeout = "0s" }, want = { 200 }, decode = false })
end

function Process:kill(sig)
  if self.exit ~= nil or self.q.closed then return fail("not_found", "the process has exited") end
  local n = math.type(sig) == "integer" and sig or exec.signal_number(tostring(sig or "TERM"))
  local name = n and exec.signal_name(n)
  local KNOWN = { INT = 1, TERM = 1, HUP = 1, KILL = 1, QUIT = 1, USR1 = 1, USR2 = 1 }
  if not name or not KNOWN[name] then
    return fail("not_supported", "Sprites sends INT, TERM, HUP, KILL, QUIT, USR1 and USR2, " ..
                "not %s", tostring(sig))
  end
  self.killed = n
  if self.session then
    local ok, err = http_kill(self.c, self.path, self.session, name)
    if not ok and err.code == "not_found" then
      return fail("not_found", "the process has exited")
    end
    if not ok then return nil, err end
    return true
  end
  return self.conn:send(json.encode({ type = "signal", signal = name }))
end

-- Never yields: the kill of what still runs and the socket's close are a cleanup task.
function Process:close()
  if self.closed then return true end
  self.closed = true
  local running = self.exit == nil and not self.q.closed
  local c, p, session, conn = self.c, self.path, self.session, self.conn
  if not self.reader:done() then self.reader:cancel() end
  task.cleanup(function()
    if running and session then task.timeout(30, http_kill, c, p, session, "KILL") end
    task.timeout(5, conn.close, conn, 1000)
  end)
  self.q:close(errors.new("invalid_input", "the process is closed"))
  self.sink:close()
  return true
end

-- The reader: binary frames (1 stdout, 2 stderr, 3 exit) and text messages (session_info,
-- exit; "control:" ones ignored), until the exit, which closes the socket at once (the
-- service would keep it open ~5 s).
local function pump(p)
  local err
  while true do
    local data, kind = p.conn:receive()
    if not data then
      if not (type(kind) == "table" and kind.closed) then err = kind end
      break
    end
    if kind == "binary" then
      local t = data:byte(1)
      if t == 1 or t == 2 then
        if #data > 1 then
          local ok, qerr = p.q:put({ t == 1 and "stdout" or "stderr", data:sub(2) }, #data - 1)
          if not ok then err = qerr; break end
        end
      elseif t == 3 then
        p.exit = data:byte(2) or 0
        break
      end
    elseif data:sub(1, 8) ~= "control:" then
      local v = json.decode(data)
      if type(v) == "table" and v.type == "session_info" then
        p.session = math.tointeger(v.session_id)
        p.q:wake()
      elseif type(v) == "table" and v.type == "exit" then
        p.exit = math.tointeger(v.exit_code) or 0
        break
      end
    end
  end
  p.q:close(err)
  p.conn:close(1000)
end

local function ws_base(ctx)
  local base = api_url(ctx)
  local scheme, rest = base:match("^(%a+)://(.+)$")
  if not scheme then return fail("invalid_input", "sprites: api_url is not a URL") end
  return (scheme:lower() == "https" and "wss" or "ws") .. "://" .. rest
end

---Starts argv over the WebSocket exec, stdin open (see Processes above).
function M.spawn(ctx, handle, argv, opts)
  local p, perr = path_of(handle, "/exec")
  if not p then return nil, perr end
  local t, terr = token(ctx)
  if not t then return nil, terr end
  local base, berr = ws_base(ctx)
  if not base then return nil, berr end
  local cwd, cerr = workdir(ctx, handle, opts.cwd)
  if not cwd then return nil, cerr end
  local q = command(argv, opts, cwd)
  local url = base .. p .. "?" .. exec_query(q, { { "stdin", "true" } })
  local conn, err = ws.connect(url, { headers = { Authorization = "Bearer " .. t },
                                      timeout = request_timeout(ctx) })
  if not conn then
    if err.code == "bad_response" then                -- refused: is the sprite there?
      local _, ierr = info(ctx, handle)
      if ierr then return nil, ierr end
    end
    return nil, err
  end
  local proc = setmetatable({ c = client(ctx), path = p, conn = conn,
                              q = queue.new{ max_bytes = QUEUE_MAX },
                              sink = exec.sink{ max_output = 0 } }, Process)
  proc.reader = task.spawn(pump, proc)
  return proc
end

-- Files --------------------------------------------------------------------------------------
-- Every call names an absolute path and workingDir "/" (both are required).

local function fs_call(ctx, handle, method, what, query, opts)
  local p, perr = path_of(handle, "/fs/" .. what)
  if not p then return nil, perr end
  query.workingDir = "/"
  local o = { query = query, want = { 200 } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return client(ctx):call(method, p, o)
end

local function mode_of(s)
  if math.type(s) == "integer" then return s end
  if type(s) ~= "string" then return 0 end
  if s:match("^0?[0-7]+$") then return tonumber(s, 8) end
  local bits = s:match("([r%-][w%-][xsS%-][r%-][w%-][xsS%-][r%-][w%-][xtT%-])$")
  if not bits then return 0 end
  local m = 0
  for i = 1, 9 do
    if bits:sub(i, i) ~= "-" and bits:sub(i, i) ~= "S" and bits:sub(i, i) ~= "T" then
      m = m | (1 << (9 - i))
    end
  end
  return m
end

-- GET /fs/list of an absolute path: the entries, with `file` set when the path is a file
-- (the service then lists that one entry).
function M._list(ctx, handle, abs)
  local v, err = fs_call(ctx, handle, "GET", "list", { path = abs })
  if not v then return nil, err end
  if type(v) ~= "table" then return fail("bad_response", "fs/list: not a JSON object") end
  local entries = type(v.entries) == "table" and v.entries or {}
  local out = {}
  for i, e in ipairs(entries) do
    if type(e) ~= "table" or type(e.name) ~= "string" then
      return fail("bad_response", "fs/list: an entry without a name")
    end
    local dir = e.isDir == true or e.type == "directory"
    out[i] = { name = e.name, type = dir and "directory" or (e.type == "symlink" and "symlink"
                                                            or "file"),
               size = math.tointeger(e.size) or 0, mode = mode_of(e.mode) & 4095,
               mtime = wtime.parse(e.modTime) or 0, path = e.path }
  end
  if #out == 1 and out[1].type ~= "directory" and (out[1].path == abs
     or (v.path == abs and abs:match("[^/]+$") == out[1].name and out[1].path == nil)) then
    out.file = true
  end
  return out
end

function M.read_file(ctx, handle, path)
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  local res, err = fs_call(ctx, handle, "GET", "read", { path = abs },
                           { raw = true, decode = false, max_body = 8 * 1024 ^ 3 // 1,
                             timeout = 3600 })
  if not res then return nil, err end
  return res.body or ""
end

function M.write_file(ctx, handle, path, data, opts)
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  local q = { path = abs, mkdirParents = "true" }
  if opts and opts.mode then q.mode = ("%04o"):format(opts.mode) end
  local ok, err = fs_call(ctx, handle, "PUT", "write", q, {
    body = { data }, headers = { ["Content-Type"] = "application/octet-stream" },
    timeout = 60 + #data / 1e6 })
  if not ok then return nil, err end
  return true
end

function M.ls(ctx, handle, path)
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  local out, err = M._list(ctx, handle, abs)
  if not out then return nil, err end
  if out.file then return fail("invalid_input", "%s is not a directory", path) end
  for _, e in ipairs(out) do e.path = nil end
  return out
end

-- What an absolute path is: "directory", "file", or nil, err (not_found when it is not there).
local function kind_of(ctx, handle, abs)
  if abs == "/" then return "directory" end
  local out, err = M._list(ctx, handle, abs)
  if not out then return nil, err end
  return out.file and "file" or "directory"
end

-- No mkdir endpoint: write <dir>/.keep with mkdirParents, then delete it (as the SDKs do).
function mkdir_keep(ctx, handle, abs)
  local keep = (abs == "/" and "" or abs) .. "/.keep"
  local ok, err = fs_call(ctx, handle, "PUT", "write", { path = keep, mkdirParents = "true" }, {
    body = "", headers = { ["Content-Type"] = "application/octet-stream" } })
  if not ok then return nil, err end
  ok, err = fs_call(ctx, handle, "DELETE", "delete", { path = keep })
  if not ok then return nil, err end
  return true
end

function M.mkdir(ctx, handle, path, opts)
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  local parents = opts and opts.parents
  local k, kerr = kind_of(ctx, handle, abs)
  if k == "directory" then
    if parents then return true end
    return fail("already_exists", "%s exists", path)
  elseif k == "file" then
    return fail("already_exists", "%s exists and is not a directory", path)
  elseif kerr.code ~= "not_found" then
    return nil, kerr
  end
  if not parents then
    local up = abs:match("^(.*)/[^/]+$")
    local pk, perr = kind_of(ctx, handle, up == "" and "/" or up)
    if not pk then return nil, perr end
    if pk ~= "directory" then return fail("invalid_input", "%s: not a directory", up) end
  end
  return mkdir_keep(ctx, handle, abs)
end

function M.rm(ctx, handle, path, opts)
  local abs, aerr = resolve(handle, path)
  if not abs then return nil, aerr end
  local recursive = opts and opts.recursive
  if not recursive then                  -- refuse a full directory ourselves
    local out, err = M._list(ctx, handle, abs)
    if not out then return nil, err end
    if not out.file and #out > 0 then
      return fail("invalid_input", "%s is a directory that is not empty (use recursive)", path)
    end
  end
  local ok, err = fs_call(ctx, handle, "DELETE", "delete",
                          { path = abs, recursive = recursive and "true" or nil })
  if not ok then return nil, err end
  return true
end

-- Checkpoints --------------------------------------------------------------------------------
-- Native: POST /checkpoint and POST /checkpoints/{id}/restore answer an NDJSON progress stream
-- ({type: info|stdout|stderr|error, data, error}); the new checkpoint's id is found in GET
-- /checkpoints by the tag its comment carries.

local function progress(ctx, handle, what, body)
  local p, perr = path_of(handle, what)
  if not p then return nil, perr end
  local failed
  local res, err = client(ctx):stream("POST", p, {
    json = body or {}, want = { 200 }, retry = false, timeout = 3600,
    on_frame = ndjson.decoder(function(m)
      if type(m) == "table" and m.type == "error" then
        failed = tostring(m.error or m.data or "failed")
      end
    end) })
  if not res then return nil, err end
  if failed then return fail("io_error", "sprites %s: %s", what, client(ctx):scrub(failed)) end
  return true
end

local function checkpoint_of(c)
  return { id = c.id, created_at = wtime.parse(c.create_time), comment = c.comment,
           auto = c.is_auto == true or nil }
end

---Lists the sprite's checkpoints (GET /checkpoints), newest first.
function M.checkpoints(ctx, handle)
  local p, perr = path_of(handle, "/checkpoints")
  if not p then return nil, perr end
  local list, err = client(ctx):call("GET", p, { want = { 200 } })
  if not list then return nil, err end
  if type(list) ~= "table" then return fail("bad_response", "GET /checkpoints: not a list") end
  local out = {}
  for _, c in ipairs(list) do
    if type(c) == "table" and type(c.id) == "string" then out[#out + 1] = checkpoint_of(c) end
  end
  table.sort(out, function(a, b)
    if (a.created_at or 0) ~= (b.created_at or 0) then
      return (a.created_at or 0) > (b.created_at or 0)
    end
    return a.id > b.id
  end)
  return out
end

---Takes a checkpoint (POST /checkpoint): {id, created_at, comment}.
function M.checkpoint(ctx, handle, opts)
  local tag = "sandlot:" .. id.hex(6)
  local comment = opts and opts.comment and (tag .. " " .. opts.comment) or tag
  local ok, err = progress(ctx, handle, "/checkpoint", { comment = comment })
  if not ok then return nil, err end
  local list, lerr = M.checkpoints(ctx, handle)
  if not list then return nil, lerr end
  for _, c in ipairs(list) do
    if c.comment == comment then return c end
  end
  return fail("bad_response", "the new checkpoint is not in GET /checkpoints")
end

---Restores the sprite to one of its checkpoints, in place.
function M.restore(ctx, handle, ck_id)
  local cid, ierr = check.id(ck_id, "^[%w][%w_.%-]*$", "a Sprites checkpoint id", 128)
  if not cid then return nil, ierr end
  return progress(ctx, handle, "/checkpoints/" .. api.segment(cid) .. "/restore")
end

-- Services (sb:extension("service_put", ...)): sandlot._native.sprites_services
require("sandlot._native.sprites_services").install(M, { client = client, path_of = path_of,
  request_timeout = request_timeout })

return M
