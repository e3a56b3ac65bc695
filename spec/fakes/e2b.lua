-- spec/fakes/e2b.lua: a strict fake of E2B, per ../shared/provider-apis/e2b.md ("Strict fake"):
-- the control-plane REST API on one sandlot.http.serve server (url) and the envd proxy on
-- another (sandbox_url, routed by E2b-Sandbox-Id / E2b-Sandbox-Port as the SDK does), the
-- latter in spec/fakes/e2b_envd.lua. A sandbox's commands and files are real: each one is a
-- sandbox of the local provider (bubblewrap, its own /), with /home/user as the user's home.
-- It rejects what E2B rejects (X-API-Key missing, without the e2b_ prefix or wrong; a body that is
-- not application/json; wrong JSON types; timeout <= 0 or above the plan limit; unknown sandboxes
-- and snapshots; pausing a paused one; a snapshot request without a body, a name that is not a
-- string; limit outside 1..100), applies E2B's defaults (300 s lifetime on create and connect),
-- and injects faults: fake:inject{route = "POST /v2/sandboxes", status = 429, retry_after = 1,
-- hang = s, drop = true, times = n, error_code = "..."}. Every answer it refused is logged in
-- fake.rejected (injected faults are not).
--   local f = require("spec.fakes.e2b").start{}
--   -> f.url, f.sandbox_url, f.token (the API key), f.fake (state), f.rejected(), f.stop()
-- GET {url}/_fake/config (no key) tells sandbox_url to a client given one URL (check-fakes).
-- Snapshots (POST /sandboxes/{id}/snapshots) copy the sandbox's files; a create whose
-- templateID has a tag (":") must name a snapshot of this fake (404 otherwise, as for an
-- unknown template), and starts with its files; DELETE /templates/{id} removes one.
-- opts.canned_exec = fn(cmd, args) -> {exit_code, stdout, stderr} (bench figure 7): no local
-- sandbox behind a sandbox, every process answers fn's result at once, no request log kept;
-- only create, exec and destroy are served then (files and other RPCs answer 501).
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local lp = require("providers.local")
local id = require("sandlot.id")
local timer = require("sandlot.core.timer")

local function now() return timer.now() / 1e9 end

local base = require("spec.fakes._base")

local M = {}

M.DEFAULT_LIFETIME = 300
M.MAX_LIFETIME = 3600                       -- the Hobby plan's limit (1 h)

local Fake = {}
Fake.__index = Fake

-- Query strings ------------------------------------------------------------------------------

local unescape = base.unescape
M.unescape = unescape

M.query = base.query                        -- Go's url.ParseQuery; first value wins

-- Answers ------------------------------------------------------------------------------------

local answer = base.answer
M.answer = answer

---A refusal: logged (unless the fake is told a case expects it) and answered.
function Fake:refuse(req, status, body, headers, why)
  self:rejects(req, status, why or (type(body) == "table" and body.message) or tostring(body))
  return answer(status, body, headers)
end

---An answer that is the service's word on the world (a missing sandbox or file, a paused
---one): logged in fake.denied, not fake.rejected, since a correct client meets these too.
function Fake:deny(req, status, body, headers)
  self:denies(req, status)
  return answer(status, body, headers)
end

function Fake:rest_error(req, status, message, error_code, domain)
  local body = { code = status, message = message, error_code = error_code }
  if domain then return self:deny(req, status, body) end
  return self:refuse(req, status, body)
end

-- fake:inject{route = "METHOD /path" (a prefix or a Lua pattern), status, retry_after,
-- error_code, message, hang = seconds, drop = true, times = 1}; fake:fault(route) finds it.
base.install(Fake)

local function apply_fault(f)
  if f.hang then sandlot.sleep(f.hang) end
  if f.drop then return { drop = true } end
  if f.status then
    local h = {}
    if f.retry_after then h["Retry-After"] = tostring(f.retry_after) end
    return answer(f.status, { code = f.status, message = f.message or "injected",
                              error_code = f.error_code }, h)
  end
end

-- Sandboxes ----------------------------------------------------------------------------------

local rfc3339 = require("sandlot.wire.time").format
M.rfc3339 = rfc3339

-- Kills sandboxes past their end (or pauses them, with autoPause).
function Fake:sweep()
  local t = os.time()
  for sid, s in pairs(self.sandboxes) do
    if s.state == "running" and s.end_at <= t then
      if s.auto_pause then self:pause(s) else self:kill(sid) end
    end
  end
end

function Fake:lookup(sid)
  self:sweep()
  return self.sandboxes[sid]
end

function Fake:kill(sid)
  local s = self.sandboxes[sid]
  if not s then return end
  self.sandboxes[sid] = nil
  for _, p in pairs(s.procs) do p:close() end
  if s.local_handle then lp.destroy(self.backend, s.local_handle) end
end

function Fake:pause(s)
  s.state = "paused"
  for _, p in pairs(s.procs) do p:close() end
  s.procs = {}
end

local function is_map_of_strings(v)
  if v == nil then return true end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then return false end
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "string" then return false end
  end
  return true
end

-- The body of a JSON request: refused unless the content type is JSON and it parses.
function Fake:json_body(req, optional)
  local ct = req.headers["content-type"] or ""
  if req.body == "" and optional then return {} end
  if not ct:lower():find("^application/json") then
    return nil, self:rest_error(req, 400, "validation error: error in openapi3filter." ..
                                "RequestError: request body has an error: header Content-Type " ..
                                "has unexpected value: " .. ct)
  end
  local v = json.decode(req.body)
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    return nil, self:rest_error(req, 400, "validation error: error in openapi3filter." ..
                                "RequestError: request body has an error: failed to decode")
  end
  return v
end

function Fake:lifetime(req, v, default)
  if v == nil then return default end
  if math.type(v) ~= "integer" then
    return nil, self:rest_error(req, 400, "validation error: timeout must be an integer")
  end
  if v <= 0 then return nil, self:rest_error(req, 400, "Timeout must be greater than 0") end
  if v > self.max_lifetime then
    return nil, self:rest_error(req, 400, ("Timeout cannot be greater than %d hours")
                                            :format(self.max_lifetime // 3600))
  end
  return v
end

local function sandbox_json(s, detail)
  local o = { templateID = s.template, sandboxID = s.id, clientID = "fakeclient",
              envdVersion = "0.5.7", envdAccessToken = s.token, trafficAccessToken = json.null,
              domain = json.null }
  if detail then
    o.startedAt, o.endAt = rfc3339(s.started_at), rfc3339(s.end_at)
    o.cpuCount, o.memoryMB, o.diskSizeMB = 2, 512, 1024
    o.state, o.metadata = s.state, s.metadata
  end
  return o
end

function Fake:create(req)
  local b, refusal = self:json_body(req)
  if not b then return refusal end
  if type(b.templateID) ~= "string" or b.templateID == "" then
    return self:rest_error(req, 400, "validation error: property \"templateID\" is missing")
  end
  if not is_map_of_strings(b.metadata) or not is_map_of_strings(b.envVars) then
    return self:rest_error(req, 400, "validation error: metadata and envVars are string maps")
  end
  for _, k in ipairs({ "autoPause", "allow_internet_access" }) do
    if b[k] ~= nil and type(b[k]) ~= "boolean" then
      return self:rest_error(req, 400, "validation error: " .. k .. " must be a boolean")
    end
  end
  local life, lerr = self:lifetime(req, b.timeout, M.DEFAULT_LIFETIME)
  if not life then return lerr end
  local snap = self.snapshots[b.templateID]
  if b.templateID:find(":", 1, true) and not snap then
    return self:rest_error(req, 404, ("template '%s' not found"):format(b.templateID), nil, true)
  end
  local env = {}
  for k, v in pairs(b.envVars or {}) do env[k] = v end
  local lh, err
  if not self.canned_exec then
    lh, err = lp.create(self.backend, { env = env, network =
                                        b.allow_internet_access == false and "none" or "all" })
    if not lh then return self:rest_error(req, 500, tostring(err), "sandbox_create_failed") end
    assert(lp.mkdir(self.backend, lh, "/home/user", { parents = true }))
    if snap then
      local r = sandlot.proc.run({ "cp", "-a", snap.dir .. "/.", self:root_of(lh) })
      if not r or r.exit_code ~= 0 then
        return self:rest_error(req, 500, "cannot restore the snapshot", "sandbox_create_failed")
      end
    end
  end
  local sid = id.hex(10)
  local t0 = os.time()
  local s = { id = sid, template = b.templateID, metadata = b.metadata or {}, state = "running",
              started_at = t0, end_at = t0 + life, internet = b.allow_internet_access ~= false,
              lifetime = life, auto_pause = b.autoPause,
              token = "ea_" .. id.hex(16), local_handle = lh, procs = {}, ready_at =
              now() + self.envd_delay }
  self.sandboxes[sid] = s
  self.created = self.created + 1
  return answer(201, sandbox_json(s))
end

-- GET /v2/sandboxes: metadata decoded three times (once by the query parser), limit 1..100.
function Fake:list(req)
  local q = M.query(req.query)
  local limit = 100
  if q.limit then
    limit = math.tointeger(tonumber(q.limit))
    if not limit or limit < 1 or limit > 100 then
      return self:rest_error(req, 400, "validation error: limit must be 1..100")
    end
  end
  local want = {}
  if q.metadata then
    local whole = unescape(q.metadata)
    if whole == "" then return self:rest_error(req, 400, "error parsing metadata: empty") end
    for pair in whole:gmatch("[^&]+") do
      local k, v, extra = pair:match("^([^=]*)=([^=]*)(.*)$")
      if not k or extra ~= "" then
        return self:rest_error(req, 400, "error parsing metadata: bad pair " .. pair)
      end
      want[unescape(k)] = unescape(v)
    end
  end
  local states = {}
  for st in (q.state or "running,paused"):gmatch("[^,]+") do
    if st ~= "running" and st ~= "paused" then
      return self:rest_error(req, 400, "validation error: state " .. st)
    end
    states[st] = true
  end
  self:sweep()
  local ids = {}
  for sid, s in pairs(self.sandboxes) do
    local ok = states[s.state]
    for k, v in pairs(want) do ok = ok and s.metadata[k] == v end
    if ok and (not q.nextToken or sid > q.nextToken) then ids[#ids + 1] = sid end
  end
  table.sort(ids)
  limit = math.min(limit, self.page_size or limit)
  local page, headers = json.array(), {}
  for i = 1, math.min(limit, #ids) do
    page[i] = sandbox_json(self.sandboxes[ids[i]], true)
    page[i].envdAccessToken = nil
  end
  if #ids > limit then headers["X-Next-Token"] = ids[limit] end
  self.list_pages = self.list_pages + 1
  return answer(200, page, headers)
end

function Fake:on_sandbox(req, sid, what)
  local s = self:lookup(sid)
  if not s then
    return self:rest_error(req, 404, ("Sandbox %q doesn't exist or you don't have access to it")
                                     :format(sid), nil, true)
  end
  local m = req.method
  if what == "" and m == "GET" then return answer(200, sandbox_json(s, true)) end
  if what == "" and m == "DELETE" then
    self:kill(sid)
    return answer(204)
  end
  if what == "/pause" and m == "POST" then
    if req.body ~= "" then
      local _, refusal = self:json_body(req, true)
      if refusal then return refusal end
    end
    if s.state == "paused" then
      return self:rest_error(req, 409, "Sandbox is already paused", nil, true)
    end
    self:pause(s)
    return answer(204)
  end
  if what == "/snapshots" and m == "POST" then
    local b, refusal = self:json_body(req)
    if not b then return refusal end
    if b.name ~= nil and type(b.name) ~= "string" then
      return self:rest_error(req, 400, "validation error: name must be a string")
    end
    return self:snapshot(req, s)
  end
  if what == "/timeout" and m == "POST" then
    local b, refusal = self:json_body(req)
    if not b then return refusal end
    if b.timeout == nil then return self:rest_error(req, 400, "validation error: timeout") end
    local life, lerr = self:lifetime(req, b.timeout)
    if not life then return lerr end
    s.end_at = os.time() + life
    return answer(204)
  end
  if what == "/connect" and m == "POST" and req.v2 then
    local b, refusal = self:json_body(req, true)
    if not b then return refusal end
    local life, lerr = self:lifetime(req, b.timeout, M.DEFAULT_LIFETIME)
    if not life then return lerr end
    local status = s.state == "paused" and 201 or 200
    s.state, s.end_at = "running", os.time() + life
    s.ready_at = now() + self.envd_delay
    return answer(status, sandbox_json(s))
  end
  return self:rest_error(req, 404, "no route " .. m .. " " .. req.path)
end

function Fake:root_of(lh)
  return self.backend.config.state_dir .. "/" .. lh.id .. "/root"
end

-- A snapshot: a copy of the sandbox's files, a template of its own ("<id>:default").
function Fake:snapshot(req, s)
  local sn = { id = id.hex(10) .. ":default", sandbox = s.id }
  sn.dir = self.snap_dir .. "/" .. sn.id:gsub(":", "_")
  if s.local_handle then
    local r = sandlot.proc.run({ "mkdir", "-p", self.snap_dir })
    r = r and r.exit_code == 0 and sandlot.proc.run({ "cp", "-a", self:root_of(s.local_handle),
                                                      sn.dir })
    if not r or r.exit_code ~= 0 then
      return self:rest_error(req, 500, "snapshot failed", "internal_server_error")
    end
  end
  self.snap_seq = self.snap_seq + 1
  sn.seq = self.snap_seq
  self.snapshots[sn.id] = sn
  return answer(201, { snapshotID = sn.id, names = { sn.id } })
end

-- GET /snapshots: sandboxID and name filters, limit 1..100, nextToken pages (oldest first).
function Fake:list_snapshots(req)
  local q = M.query(req.query)
  local limit = 100
  if q.limit then
    limit = math.tointeger(tonumber(q.limit))
    if not limit or limit < 1 or limit > 100 then
      return self:rest_error(req, 400, "validation error: limit must be 1..100")
    end
  end
  local list = {}
  for _, sn in pairs(self.snapshots) do
    if (not q.sandboxID or q.sandboxID == sn.sandbox) and (not q.name or q.name == sn.id)
       and (not q.nextToken or sn.seq > tonumber(q.nextToken)) then list[#list + 1] = sn end
  end
  table.sort(list, function(a, b) return a.seq < b.seq end)
  local page, headers = json.array(), {}
  limit = math.min(limit, self.page_size or limit)
  for i = 1, math.min(limit, #list) do
    page[i] = { snapshotID = list[i].id, names = { list[i].id } }
  end
  if #list > limit then headers["X-Next-Token"] = tostring(list[limit].seq) end
  return answer(200, page, headers)
end

---The control-plane handler.
function Fake:api(req)
  local route = req.method .. " " .. req.path
  if not self.canned_exec then
    self.requests[#self.requests + 1] = { route = route, query = req.query, body = req.body,
                                          headers = req.headers }
  end
  if route == "GET /_fake/config" then    -- for one-URL clients (check-fakes): not E2B's
    return answer(200, { sandbox_url = self.sandbox_url })
  end
  local f = self:fault(route)
  if f then
    local a = apply_fault(f)
    if a then return a end
  end
  local key = req.headers["x-api-key"]
  if key == nil then
    return self:rest_error(req, 401, "authorization header is missing")
  end
  if key:sub(1, 4) ~= "e2b_" or key ~= self.token then
    return self:rest_error(req, 401, "Invalid API key, please visit https://e2b.dev/docs")
  end
  local p, m = req.path, req.method
  if p == "/v2/sandboxes" and m == "POST" then return self:create(req) end
  if p == "/v2/sandboxes" and m == "GET" then return self:list(req) end
  if p == "/snapshots" and m == "GET" then return self:list_snapshots(req) end
  local tid = p:match("^/templates/([^/]+)$")
  if tid and m == "DELETE" then
    tid = unescape(tid)
    local sn = self.snapshots[tid]
    if not sn then return self:rest_error(req, 404, "template not found", nil, true) end
    self.snapshots[tid] = nil
    sandlot.proc.run({ "rm", "-rf", sn.dir })
    return answer(204)
  end
  local sid, rest = p:match("^/v2/sandboxes/([^/]+)(/connect)$")
  if sid then req.v2 = true end
  if not sid then sid, rest = p:match("^/sandboxes/([^/]+)(.*)$") end
  if sid then
    sid = sid:match("^([a-z0-9]+)") or sid       -- {sandboxID}-{clientID}: the suffix goes
    return self:on_sandbox(req, sid, rest)
  end
  return self:rest_error(req, 404, "no route " .. m .. " " .. p)
end

---A fake without servers (for handlers called directly): opts = {token, backend_dir,
---max_lifetime, envd_delay (s before envd answers), page_size (list pages at most),
---keepalive (s between keepalive messages of a quiet process stream, instead of the
---request's Keepalive-Ping-Interval), canned_exec (see the top of this file)}.
function M.new(opts)
  opts = opts or {}
  local dir = assert(opts.backend_dir, "spec.fakes.e2b: opts.backend_dir is required")
  local f = setmetatable({
    token = opts.token or ("e2b_" .. id.hex(20)), sandboxes = {}, faults = {}, rejected = {},
    denied = {}, requests = {}, created = 0, list_pages = 0, page_size = opts.page_size,
    snapshots = {}, snap_seq = 0, snap_dir = dir .. "-snapshots",
    max_lifetime = opts.max_lifetime or M.MAX_LIFETIME, envd_delay = opts.envd_delay or 0,
    keepalive = opts.keepalive, keepalives = 0, canned_exec = opts.canned_exec,
    backend = { name = "e2b-fake", config = { state_dir = dir, isolation = "namespaces" },
                warn = function() end },
  }, Fake)
  require("spec.fakes.e2b_envd").install(f, M)
  return f
end

---Starts the fake on two loopback servers. Returns {url, sandbox_url, token, fake, stop()}.
function M.start(opts)
  opts = opts or {}
  local tmp
  if not opts.backend_dir then
    tmp = require("spec.helper").tmpdir("e2b")
  end
  local f = M.new({ token = opts.token, backend_dir = opts.backend_dir or tmp,
                    max_lifetime = opts.max_lifetime, envd_delay = opts.envd_delay,
                    page_size = opts.page_size, canned_exec = opts.canned_exec })
  local max = opts.max_body or 512 * 1024 * 1024
  local api_srv = assert(sandlot.http.serve{ host = "127.0.0.1", port = opts.port or 0,
                                             max_body = max,
                                             handler = function(req) return f:api(req) end })
  local envd_srv = assert(sandlot.http.serve{ host = "127.0.0.1", port = opts.envd_port or 0,
                                              max_body = max,
                                              handler = function(req) return f:envd(req) end })
  f.sandbox_url = envd_srv.url
  return {
    url = api_srv.url, sandbox_url = envd_srv.url, token = f.token, fake = f,
    rejected = base.rejected_lines(f),     -- for spec/fakes/check/run.lua: one line each
    stop = function()
      for sid in pairs(f.sandboxes) do f:kill(sid) end
      sandlot.proc.run({ "rm", "-rf", f.snap_dir })
      api_srv:close()
      envd_srv:close()
      if tmp then sandlot.proc.run({ "rm", "-rf", tmp }) end
    end,
  }
end

return M
