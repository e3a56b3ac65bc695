-- spec/fakes/daytona.lua: a strict fake of Daytona's two HTTP surfaces (main API under /api,
-- toolbox under /toolbox/{id}), as a handler for sandlot.http.serve, following the "Strict
-- fake" section of ../shared/provider-apis/daytona.md. Each sandbox is backed by a local
-- sandlot sandbox (providers/local.lua), so commands and files are real.
-- Strict: a missing or wrong bearer token is 401 (NestJS body on the API, the proxy's body on
-- the toolbox); JWT auth needs X-Daytona-Organization-ID; a body that is not valid JSON, or a
-- field of the wrong type, is 400; an unknown sandbox is 404 on the API and 401 on the
-- toolbox; a toolbox call on a sandbox that is not started is 400; a state change while
-- another runs is 409; unknown sessions/commands 404, a duplicate session 409, exec in the
-- entrypoint session 400; bulk-upload needs multipart/form-data. Not rejected (as the real
-- service): empty form-urlencoded POSTs, chunked uploads, a missing X-Daytona-SDK-Version
-- (then session output is combined). Defaults: autoStopInterval 15, name = id, creating ->
-- started after `start_delay` seconds. Every 4xx the fake gives on its own is kept in
-- fake.rejected (GET /_fake/rejected shows them); injected faults are not.
-- Faults: fake:inject{match = "POST /api/sandbox", status = 429, retry_after = 1,
-- count = 1, body = {...}} | {status = 503} | {hang = seconds} | {drop = true}.
-- opts.canned_exec = fn(command) -> {exit_code, stdout, stderr} (bench figure 7): no local
-- sandbox behind a sandbox, create answers `started` at once, POST /process/execute answers
-- fn's result; only the lifecycle, /work-dir and /process/execute are served then (other
-- toolbox calls answer 501).
-- Snapshots: POST /sandbox/{id}/snapshot {name} (a started sandbox; the name as the service
-- validates it, unique) keeps a tar of the sandbox's /home, `pending` then `active` after
-- start_delay while the sandbox is `snapshotting`; GET /snapshots (name: case-insensitive
-- substring; page >= 1, limit 1..200, default 10; newest first), GET /snapshots/{id or name},
-- DELETE /snapshots/{id}. A create naming a snapshot that is unknown or not active is 400, as
-- the service answers; one from a snapshot starts with its files.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local id = require("sandlot.id")

local M = {}

local WORKDIR = "/home/daytona"

local Fake = {}
Fake.__index = Fake

local timer = require("sandlot.core.timer")

local function now() return timer.now() / 1e9 end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", math.floor(t))
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local t = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if t[k] == nil then t[k] = v
    elseif type(t[k]) == "table" then t[k][#t[k] + 1] = v
    else t[k] = { t[k], v } end
  end
  return t
end

local function reply(status, value, headers)
  headers = headers or {}
  local body = ""
  if value ~= nil then
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
    body = type(value) == "string" and value or json.encode(value)
  end
  return { status = status, headers = headers, body = body }
end

local REASON = { [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
                 [404] = "Not Found", [409] = "Conflict", [408] = "Request Timeout",
                 [429] = "Too Many Requests", [503] = "Service Unavailable" }

-- Refusals: NestJS's body on the main API, the daemon's/proxy's on the toolbox.
function Fake:refuse(req, status, message, code)
  self.rejected[#self.rejected + 1] = { method = req.method, path = req.path, status = status,
                                        message = message }
  if req.toolbox then
    return reply(status, { statusCode = status, message = message,
                           code = code or (REASON[status] or "ERROR"):upper():gsub(" ", "_"),
                           timestamp = iso(os.time()), path = req.path, method = req.method,
                           source = "DAYTONA_DAEMON" })
  end
  return reply(status, { path = req.path .. (req.query ~= "" and "?" .. req.query or ""),
                         timestamp = iso(os.time()), statusCode = status,
                         error = REASON[status] or "Error", message = message })
end

-- Auth --------------------------------------------------------------------------------------

function Fake:authorized(req)
  local h = req.headers
  local bearer = (h.authorization or ""):match("^Bearer (.+)$")
  if bearer == self.token then return true end
  if self.jwt and bearer == self.jwt then
    if h["x-daytona-organization-id"] == self.org then return true end
    return false, 403, "Organization ID is required with a JWT"
  end
  if req.toolbox then
    local preview = h["x-daytona-preview-token"]
    if preview and req.sandbox and preview == req.sandbox.preview_token then return true end
    if not bearer and not preview then
      return false, 401, "missing authentication: provide a preview access token (via " ..
                         "header, query parameter, or cookie) or use an API key or JWT"
    end
    return false, 401, "authentication failed: Bearer token is invalid"
  end
  return false, 401, "Unauthorized"
end

-- JSON bodies: the API reads one only with a JSON content type (or none); the daemon always.
function Fake:body(req)
  local ct = (req.headers["content-type"] or ""):lower()
  if not req.toolbox and ct ~= "" and not ct:find("^application/json")
     and not ct:find("^text/json") then
    return {}
  end
  if req.body == nil or not req.body:find("%S") then return {} end
  local v, err = json.decode(req.body)
  if type(v) ~= "table" then
    local why = err and err.message or "not an object"
    return nil, self:refuse(req, 400, "malformed JSON: " .. why, "INVALID_REQUEST_BODY")
  end
  return v
end

-- Sandboxes ----------------------------------------------------------------------------------

local STABLE = { started = true, stopped = true, error = true, build_failed = true,
                 destroyed = true }

function Fake:advance(s)
  if s.pending and now() >= s.pending.at then
    s.state, s.pending = s.pending.state, nil
  end
  return s
end

function Fake:find(key)
  local s = self.sandboxes[key] or self.by_name[key]
  return s and self:advance(s)
end

function Fake:json_of(s)
  return { id = s.id, name = s.name, organizationId = "org-fake", user = "daytona",
           env = s.env, labels = s.labels, public = s.public, target = s.target,
           cpu = 1, gpu = 0, memory = 1, disk = 3, networkBlockAll = s.network_block,
           toolboxProxyUrl = self.url .. "/toolbox", snapshot = s.snapshot, state = s.state,
           desiredState = s.state == "destroyed" and "destroyed" or "started",
           errorReason = s.error_reason, recoverable = false,
           autoStopInterval = s.auto_stop, autoArchiveInterval = 10080,
           autoDeleteInterval = -1, volumes = json.array(), createdAt = iso(s.created),
           updatedAt = iso(os.time()), backupState = "None", sandboxClass = "container" }
end

local function check_fields(b)
  local bad = {}
  local function want(k, t, extra)
    local v = b[k]
    if v ~= nil and (type(v) ~= t or (extra and not extra(v))) then
      bad[#bad + 1] = ("%s must be %s"):format(k, t == "table" and "an object" or "a " .. t)
    end
  end
  want("name", "string"); want("snapshot", "string"); want("target", "string")
  want("user", "string"); want("public", "boolean"); want("networkBlockAll", "boolean")
  for _, k in ipairs({ "cpu", "gpu", "memory", "disk", "autoStopInterval",
                       "autoArchiveInterval" }) do
    want(k, "number", function(v) return v >= 0 end)
  end
  for _, k in ipairs({ "env", "labels" }) do
    want(k, "table", function(t)
      for kk, vv in pairs(t) do
        if type(kk) ~= "string" or type(vv) ~= "string" then return false end
      end
      return true
    end)
  end
  if #bad > 0 then return table.concat(bad, ", ") end
end

function Fake:create(req)
  local b, r = self:body(req)
  if not b then return r end
  local bad = check_fields(b)
  if bad then return self:refuse(req, 400, bad) end
  if b.name and self.by_name[b.name] then
    return self:refuse(req, 409, ("Sandbox with name %s already exists"):format(b.name))
  end
  local snap = b.snapshot and self:snapshot_of(b.snapshot)
  if b.snapshot and not snap then
    return self:refuse(req, 400, ("Snapshot %s not found. Did you add it through the Daytona " ..
                                  "Dashboard?"):format(b.snapshot))
  end
  if snap and snap.state ~= "active" then
    return self:refuse(req, 400, ("Snapshot %s is %s"):format(b.snapshot, snap.state))
  end
  local local_sb, err
  if not self.canned_exec then
    local_sb, err = sandlot.create(self.backing, { env = b.env })
    if not local_sb then return reply(500, { statusCode = 500, message = tostring(err) }) end
    assert(local_sb:mkdir(WORKDIR, { parents = true }))
    if snap and snap.data then
      local x = local_sb:exec({ "tar", "-xf", "-", "-C", "/" }, { stdin = snap.data })
      if not x or x.exit_code ~= 0 then
        return reply(500, { statusCode = 500, message = "cannot restore the snapshot" })
      end
    end
  end
  local sid = id.hex(16):gsub("^(%x%x%x%x%x%x%x%x)(%x%x%x%x)(%x%x%x%x)", "%1-%2-%3-")
  local s = { id = sid, name = b.name or sid, env = b.env or {}, labels = b.labels or {},
              public = b.public or false, target = b.target or "us", snapshot = b.snapshot,
              network_block = b.networkBlockAll or false,
              auto_stop = b.autoStopInterval or 15, created = os.time(), state = "creating",
              pending = { state = self.fail_with or "started", at = now() + self.start_delay },
              error_reason = self.fail_with and "the fake was told to fail" or nil,
              box = local_sb, sessions = {}, preview_token = id.hex(8), seq = self.seq }
  if self.canned_exec and not self.fail_with then s.state, s.pending = "started", nil end
  self.seq = self.seq + 1
  self.sandboxes[sid], self.by_name[s.name] = s, s
  self.order[#self.order + 1] = s
  return reply(200, self:json_of(s))
end

function Fake:list(req)
  local q = parse_query(req.query)
  local limit = tonumber(q.limit or "100")
  if not limit or limit < 1 or limit > 200 or limit ~= math.floor(limit) then
    return self:refuse(req, 400, "limit must not be greater than 200, limit must not be less " ..
                       "than 1")
  end
  limit = math.min(limit, self.page_size or limit)
  local labels = {}
  if q.labels then
    local l = json.decode(q.labels)
    if type(l) ~= "table" then return self:refuse(req, 400, "labels must be a JSON object") end
    labels = l
  end
  local start = tonumber(q.cursor or "0")
  if not start then return self:refuse(req, 400, "invalid cursor") end
  local items, i, next_cursor = {}, 0, json.null
  for _, s in ipairs(self.order) do
    self:advance(s)
    local match = s.state ~= "destroyed"
    for k, v in pairs(labels) do match = match and s.labels[k] == v end
    if match then
      i = i + 1
      if i > start then
        if #items == limit then next_cursor = tostring(i - 1); break end
        items[#items + 1] = self:json_of(s)
      end
    end
  end
  return reply(200, { items = json.array(items), nextCursor = next_cursor })
end

function Fake:transition(req, s, to, via)
  if not STABLE[s.state] then return self:refuse(req, 409, "Sandbox state change in progress") end
  if s.state == "destroyed" then return self:refuse(req, 404, "Sandbox is destroyed") end
  if s.state ~= to then
    s.state = via
    s.pending = { state = to, at = now() + self.start_delay }
    if to == "started" then s.preview_token = id.hex(8) end
  end
  return reply(200, self:json_of(s))
end

function Fake:destroy(req, s)
  if not STABLE[s.state] then return self:refuse(req, 409, "Sandbox state change in progress") end
  if s.state ~= "destroyed" then
    s.state = "destroyed"
    for _, sess in pairs(s.sessions) do self:end_session(sess) end
    if s.box then s.box:destroy() end
    self.by_name[s.name] = nil
  end
  return reply(200, self:json_of(s))
end

-- Snapshots ----------------------------------------------------------------------------------

local SNAPSHOT_NAME = "^[%w_.%-:]+$"      -- the service's IMAGE_NAME_REGEX, one component

function Fake:snapshot_of(key)
  local sn = self.snapshots[key] or self.snap_by_name[key]
  if sn and sn.pending and now() >= sn.pending then sn.state, sn.pending = "active", nil end
  return sn
end

function Fake:snapshot_json(sn)
  return { id = sn.id, organizationId = "org-fake", general = false, name = sn.name,
           state = sn.state, size = json.null, entrypoint = json.null, cpu = 1, gpu = 0,
           mem = 1, disk = 3, errorReason = json.null, createdAt = iso(sn.created),
           updatedAt = iso(os.time()), lastUsedAt = json.null }
end

function Fake:take_snapshot(req, s)
  local b, r = self:body(req)
  if not b then return r end
  if type(b.name) ~= "string" or b.name == "" then
    return self:refuse(req, 400, "name must be a string, name should not be empty")
  end
  if b.includeMemory ~= nil and type(b.includeMemory) ~= "boolean" then
    return self:refuse(req, 400, "includeMemory must be a boolean value")
  end
  if not b.name:match(SNAPSHOT_NAME) then
    return self:refuse(req, 400, "Invalid snapshot name format. May contain letters, digits, " ..
                       "dots, colons, and dashes")
  end
  if self.snap_by_name[b.name] then
    return self:refuse(req, 409, ('Snapshot with name "%s" already exists for this ' ..
                                  "organization"):format(b.name))
  end
  if not STABLE[s.state] then return self:refuse(req, 409, "Sandbox state change in progress") end
  if s.state ~= "started" then return self:refuse(req, 400, "Sandbox is not started") end
  local data
  if s.box then
    local t = assert(s.box:exec({ "tar", "-cf", "-", "-C", "/", "home" }))
    if t.exit_code ~= 0 then return reply(500, { statusCode = 500, message = t.stderr }) end
    data = t.stdout
  end
  local sid = id.hex(16):gsub("^(%x%x%x%x%x%x%x%x)(%x%x%x%x)(%x%x%x%x)", "%1-%2-%3-")
  self.snap_seq = self.snap_seq + 1
  local sn = { id = sid, name = b.name, state = "pending", pending = now() + self.start_delay,
               created = os.time(), seq = self.snap_seq, data = data }
  self.snapshots[sid], self.snap_by_name[b.name] = sn, sn
  s.state, s.pending = "snapshotting", { state = "started", at = now() + self.start_delay }
  return reply(200, self:json_of(s))
end

function Fake:snapshots_api(req, key)
  local m = req.method
  if key == "" and m == "GET" then
    local q = parse_query(req.query)
    local page, limit = tonumber(q.page or "1"), tonumber(q.limit or "10")
    if not page or page < 1 or page ~= math.floor(page) then
      return self:refuse(req, 400, "page must not be less than 1")
    end
    if not limit or limit < 1 or limit > 200 or limit ~= math.floor(limit) then
      return self:refuse(req, 400, "limit must not be greater than 200, limit must not be less " ..
                         "than 1")
    end
    local list = {}
    for _, sn in pairs(self.snapshots) do
      self:snapshot_of(sn.id)
      if not q.name or sn.name:lower():find(q.name:lower(), 1, true) then
        list[#list + 1] = sn
      end
    end
    table.sort(list, function(a, b) return a.seq > b.seq end)
    local items = {}
    for i = (page - 1) * limit + 1, math.min(#list, page * limit) do
      items[#items + 1] = self:snapshot_json(list[i])
    end
    return reply(200, { items = json.array(items), total = #list, page = page,
                        totalPages = math.ceil(#list / limit) })
  end
  local sn = key ~= "" and self:snapshot_of(key)
  if sn and m == "GET" then return reply(200, self:snapshot_json(sn)) end
  if m == "DELETE" and self.snapshots[key] then     -- by id only
    self.snapshots[key], self.snap_by_name[sn.name] = nil, nil
    return reply(200, nil)
  end
  if m == "GET" or m == "DELETE" then
    return self:refuse(req, 404, ("Snapshot %s not found"):format(key))
  end
  return self:refuse(req, 404, ("Cannot %s %s"):format(m, req.path))
end

function Fake:api(req, rest)
  if rest:find("^/socket%.io") then              -- events: the SDK falls back to polling
    self.unsupported[#self.unsupported + 1] = req.method .. " " .. req.path
    return reply(404, { statusCode = 404, message = "not served by the fake" })
  end
  local ok, status, msg = self:authorized(req)
  if not ok then return self:refuse(req, status, msg) end
  if rest == "/sandbox" then
    if req.method == "POST" then return self:create(req) end
    if req.method == "GET" then return self:list(req) end
  end
  local skey = rest == "/snapshots" and "" or rest:match("^/snapshots/([^/]+)$")
  if skey then return self:snapshots_api(req, unescape(skey)) end
  local key, tail = rest:match("^/sandbox/([^/]+)(.*)$")
  if not key then return self:refuse(req, 404, ("Cannot %s %s"):format(req.method, rest)) end
  local s = self:find(unescape(key))
  if not s or (s.state == "destroyed" and req.method ~= "GET") then
    return self:refuse(req, 404, ("Sandbox with ID or name %s not found"):format(unescape(key)))
  end
  local m = req.method
  if tail == "" and m == "GET" then return reply(200, self:json_of(s)) end
  if tail == "" and m == "DELETE" then return self:destroy(req, s) end
  if tail == "/start" and m == "POST" then return self:transition(req, s, "started", "starting") end
  if tail == "/stop" and m == "POST" then return self:transition(req, s, "stopped", "stopping") end
  if tail == "/snapshot" and m == "POST" then return self:take_snapshot(req, s) end
  local minutes = tail:match("^/autostop/(%d+)$")
  if minutes and m == "POST" then
    s.auto_stop = tonumber(minutes)
    return reply(201, nil)
  end
  if tail == "/labels" and m == "PUT" then
    local b, r = self:body(req)
    if not b then return r end
    if type(b.labels) ~= "table" then return self:refuse(req, 400, "labels must be an object") end
    s.labels = b.labels
    return reply(200, { labels = s.labels })
  end
  local port = tail:match("^/ports/(%d+)/preview%-url$")
  if port and m == "GET" then
    return reply(200, { sandboxId = s.id, url = ("https://%s-%s.proxy.fake.daytona"):format(
                          port, s.id), token = s.preview_token })
  end
  if tail == "/toolbox-proxy-url" and m == "GET" then
    return reply(200, { url = self.url .. "/toolbox" })
  end
  return self:refuse(req, 404, ("Cannot %s %s"):format(m, rest))
end

-- Toolbox -----------------------------------------------------------------------------------

local toolbox = require("spec.fakes.daytona_toolbox")

function Fake:toolbox(req, key, rest)
  req.toolbox = true
  local s = self:find(key)
  req.sandbox = s
  local ok, status, msg = self:authorized(req)
  if not ok then return self:refuse(req, status, msg, "UNAUTHORIZED") end
  if not s or s.state == "destroyed" then       -- the proxy's access check: 401, not 404
    return self:refuse(req, 401, "authentication failed: no access to the sandbox",
                       "UNAUTHORIZED")
  end
  if s.state ~= "started" then
    return self:refuse(req, 400, "no IP address found. Is the Sandbox started?", "BAD_REQUEST")
  end
  return toolbox.route(self, req, s, rest)
end

function Fake:end_session(sess)
  for _, cmd in pairs(sess.commands) do
    if cmd.proc then pcall(cmd.proc.kill, cmd.proc, "KILL") end
  end
end

-- Faults and dispatch -----------------------------------------------------------------------

---Queues a fault for the next matching requests (match: a Lua pattern on "METHOD /path").
function Fake:inject(f)
  f.count = f.count or 1
  self.faults[#self.faults + 1] = f
end

function Fake:fault(req)
  local line = req.method .. " " .. req.path
  for i, f in ipairs(self.faults) do
    if not f.match or line:find(f.match) then
      f.count = f.count - 1
      if f.count <= 0 then table.remove(self.faults, i) end
      self.injected[#self.injected + 1] = line
      return f
    end
  end
end

function Fake:handle(req)
  self.requests = self.requests + 1
  if req.path == "/_fake/rejected" then return reply(200, json.array(self.rejected)) end
  local f = self:fault(req)
  if f then
    if f.hang then sandlot.sleep(f.hang) end
    if f.drop then return { drop = true } end
    if f.status then
      local h = {}
      if f.retry_after then h["Retry-After"] = tostring(f.retry_after) end
      return reply(f.status, f.body or { statusCode = f.status, message = f.message or
                               REASON[f.status] or "injected", error = REASON[f.status] }, h)
    end
  end
  local rest = req.path:match("^/api(/.*)$")
  if rest then return self:api(req, rest) end
  local key, trest = req.path:match("^/toolbox/([^/]+)(/.*)$")
  if key then return self:toolbox(req, unescape(key), trest) end
  return self:refuse(req, 404, "Cannot " .. req.method .. " " .. req.path)
end

---A fake with no server (call fake:handle(req) directly). opts: token, jwt, org,
---start_delay (s, default 0.2), page_size (caps list pages), backing (provider for the
---sandboxes, default "local"), fail_with ("error" | "build_failed": creates end there),
---canned_exec (see the top of this file).
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    token = opts.token or ("dtn_" .. id.hex(16)), jwt = opts.jwt, org = opts.org,
    start_delay = opts.start_delay or 0.2, page_size = opts.page_size,
    backing = opts.backing or "local", fail_with = opts.fail_with, url = opts.url or "",
    canned_exec = opts.canned_exec,
    sandboxes = {}, by_name = {}, order = {}, seq = 0, rejected = {}, unsupported = {},
    injected = {}, faults = {}, requests = 0, snapshots = {}, snap_by_name = {}, snap_seq = 0,
  }, Fake)
end

---Starts the fake on 127.0.0.1 (sandlot.http.serve). Returns {url, api_url, token, fake,
---rejected() -> {"METHOD /path: status message"...}, stop()}; stop destroys the sandboxes
---left.
function M.start(opts)
  local fake = M.new(opts)
  local srv = assert(sandlot.http.serve{ host = "127.0.0.1", port = 0,
                                         max_body = 512 * 1024 * 1024,
                                         handler = function(req) return fake:handle(req) end })
  fake.url = srv.url
  local t = { url = srv.url, api_url = srv.url .. "/api", token = fake.token, fake = fake }
  function t.rejected()                    -- for spec/fakes/check/run.lua
    local out = {}
    for _, r in ipairs(fake.rejected) do
      out[#out + 1] = ("%s %s: %d %s"):format(r.method, r.path, r.status, tostring(r.message))
    end
    return out
  end
  function t.stop()
    srv:close()
    for _, s in ipairs(fake.order) do
      if s.state ~= "destroyed" then
        fake:end_session_all(s)
        if s.box then s.box:destroy() end
        s.state = "destroyed"
      end
    end
  end
  return t
end

function Fake:end_session_all(s)
  for _, sess in pairs(s.sessions) do self:end_session(sess) end
end

M.parse_query = parse_query
M.reply = reply
M.WORKDIR = WORKDIR

return M
