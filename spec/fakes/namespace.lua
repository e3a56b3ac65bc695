-- spec/fakes/namespace.lua: a strict fake of Namespace's compute API, per
-- ../shared/provider-apis/namespace.md ("Strict fake"): ComputeService on one sandlot.http.serve
-- server (url) and CommandService on another (command_url, handed out as
-- extendedMetadata.commandServiceEndpoint, so a client that calls the regional host for
-- commands fails). Connect over HTTP/1.1 with JSON: unary calls want `Content-Type:
-- application/json` (415 otherwise), RunCommand one request envelope in
-- application/connect+json; a missing or wrong bearer token is 401 unauthenticated; a body
-- that does not parse or holds fields not in the proto is 400 invalid_argument (protojson's
-- default); an unknown instance or container is 404 not_found. Answers follow proto3 JSON:
-- int64 as strings, bytes base64, enums by name, zero values omitted (exitCode 0 absent).
-- Connect-Protocol-Version may be absent (the vendor's no-SDK example omits it: noted in
-- fake.quirks); any value but 1 is refused. Each instance's container is a sandbox of the local
-- provider (bubblewrap, its own /), so commands run for real. Instances die at their deadline
-- (DESTROYED, still described); SUSPENDED ones refuse commands (failed_precondition).
-- Not in the doc, so the fake's choice: a create without a deadline gets 30 minutes.
-- Faults: fake:inject{route = "CreateInstance" (a method name, or "METHOD /path" prefix or Lua
-- pattern), status, code (a Connect code; false: a body without one), message, retry_after,
-- hang = s, drop = true, body = raw text (content_type), times = n}.
--   local f = require("spec.fakes.namespace").start{}
--   -> f.url, f.command_url, f.token, f.fake, f.rejected(), f.stop()
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local connect = require("sandlot.wire.connect")
local base64 = require("sandlot.wire.base64")
local wtime = require("sandlot.wire.time")
local fs = require("sandlot.fs")
local lp = require("providers.local")
local id = require("sandlot.id")
local timer = require("sandlot.core.timer")

local function now() return timer.now() / 1e9 end

local base = require("spec.fakes._base")

local M = {}

M.COMPUTE = "namespace.cloud.compute.v1beta.ComputeService"
M.COMMAND = "namespace.cloud.compute.v1beta.CommandService"
M.DEFAULT_DEADLINE = 1800                  -- s: the fake's choice (not in the doc)
M.MAX_LIFETIME = 24 * 3600                 -- s: the fake's cap on a deadline

local PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

local Fake = {}
Fake.__index = Fake

-- Schemas (protojson: unknown fields refused; snake_case names accepted) ---------------------

local LABEL = { name = "string", value = "string" }
local SHAPE = { virtualCpu = "int", memoryMegabytes = "int", machineArch = "string",
                os = "string", selectors = { LABEL } }
local CONTAINER = { name = "string", imageRef = "string", args = "strings",
                    environment = "map", envVars = { LABEL }, exportPorts = "any",
                    network = "string", privileged = "bool", workloadType = "string" }
local COMMAND = { command = "strings", envVars = { LABEL }, cwd = "string" }
local RUN = { instanceId = "string", targetContainerName = "string", command = COMMAND }
local SCHEMAS = {
  CreateInstance = { shape = SHAPE, documentedPurpose = "string", deadline = "string",
                     containers = { CONTAINER }, labels = { LABEL }, region = "string",
                     interactive = "bool", volumes = "any", features = "strings",
                     applications = "any" },
  WaitInstanceSync = { instanceId = "string", destroyedOk = "bool", containerId = "string" },
  DescribeInstance = { instanceId = "string" },
  ListInstances = { maxEntries = "int", paginationCursor = "string",
                    includeCompleteRuns = "bool", notOlderThan = "string",
                    labelFilter = { { name = "string", value = "string", op = "string" } } },
  DestroyInstance = { instanceId = "string", reason = "string" },
  ExtendInstance = { instanceId = "string", extendBy = "string", ensureMinimum = "string",
                     newDeadline = "string" },
  SuspendInstance = { instanceId = "string" },
  WakeInstance = { instanceId = "string" },
  RunCommandSync = RUN,
  RunCommand = RUN,
}
local SERVICE_OF = { RunCommandSync = M.COMMAND, RunCommand = M.COMMAND }
for m in pairs(SCHEMAS) do SERVICE_OF[m] = SERVICE_OF[m] or M.COMPUTE end

local function camel(k) return (k:gsub("_(%l)", function(c) return c:upper() end)) end

local function is_object(v) return type(v) == "table" and (next(v) == nil or v[1] == nil) end

-- v checked against schema; returns the message with camelCase keys, or nil, why.
local function conform(v, schema, where)
  if not is_object(v) then return nil, where .. ": not an object" end
  local out = {}
  for k, x in pairs(v) do
    local name = type(k) == "string" and camel(k) or k
    local t = schema[name]
    if t == nil then return nil, ("%s: unknown field %q"):format(where, tostring(k)) end
    if x == json.null then x = nil end
    local ok = true
    if x == nil or t == "any" then                                -- luacheck: ignore 542
    elseif t == "string" then ok = type(x) == "string"
    elseif t == "bool" then ok = type(x) == "boolean"
    elseif t == "int" then                       -- int64: a number or a decimal string
      ok = math.type(x) == "integer" or (type(x) == "string" and x:match("^%-?%d+$") ~= nil)
      if ok then x = math.tointeger(tonumber(x)) end
    elseif t == "strings" then
      ok = type(x) == "table" and (next(x) == nil or x[1] ~= nil)
      for _, s in pairs(ok and x or {}) do ok = ok and type(s) == "string" end
    elseif t == "map" then
      ok = is_object(x)
      for kk, s in pairs(ok and x or {}) do ok = ok and type(kk) == "string" and
                                                  type(s) == "string" end
    elseif type(t) == "table" and t[1] then      -- a repeated message
      ok = type(x) == "table" and (next(x) == nil or x[1] ~= nil)
      if ok then
        local list = {}
        for i, e in ipairs(x) do
          local sub, why = conform(e, t[1], ("%s.%s[%d]"):format(where, name, i - 1))
          if not sub then return nil, why end
          list[i] = sub
        end
        x = list
      end
    elseif type(t) == "table" then
      local sub, why = conform(x, t, where .. "." .. name)
      if not sub then return nil, why end
      x = sub
    end
    if not ok then return nil, ("%s.%s: wrong type"):format(where, name) end
    out[name] = x
  end
  return out
end

-- Answers ------------------------------------------------------------------------------------

local STATUS = { invalid_argument = 400, failed_precondition = 400, out_of_range = 400,
                 unauthenticated = 401, permission_denied = 403, not_found = 404,
                 already_exists = 409, resource_exhausted = 429, canceled = 499,
                 internal = 500, unknown = 500, unimplemented = 501, unavailable = 503,
                 deadline_exceeded = 504 }
M.STATUS = STATUS

local answer = base.answer

---A refusal of a malformed request (fake.rejected): a correct client never meets one.
function Fake:refuse(req, code, message, status)
  self:rejects(req, status or STATUS[code], message)
  return answer(status or STATUS[code], { code = code, message = message })
end

---The service's word on the world (an unknown instance, a suspended one): fake.denied.
function Fake:deny(req, code, message)
  self:denies(req, STATUS[code], { code = code })
  return answer(STATUS[code], { code = code, message = message })
end

base.install(Fake)                 -- fake:inject{route, ...}, fake:fault(route, method name)

local function apply_fault(f)
  if f.hang then sandlot.sleep(f.hang) end
  if f.drop then return { drop = true } end
  if f.body then
    return { status = f.status or 200, body = f.body,
             headers = { ["Content-Type"] = f.content_type or "application/json" } }
  end
  if f.status then
    local h = {}
    if f.retry_after then h["Retry-After"] = tostring(f.retry_after) end
    local body = { code = f.code == nil and "unavailable" or f.code or nil,   -- false: none
                   message = f.message or "injected" }
    return answer(f.status, body, h)
  end
end

-- Instances ----------------------------------------------------------------------------------

local function rfc3339(t) return wtime.format(t) end

-- "600s" / "1.5s" -> seconds, or nil.
local function duration(s)
  local n = type(s) == "string" and s:match("^(%d+%.?%d*)s$")
  return n and tonumber(n) or nil
end

function Fake:metadata(inst)
  local labels = json.array()
  for i, l in ipairs(inst.labels) do labels[i] = { name = l.name, value = l.value } end
  return { instanceId = inst.id, createdAt = rfc3339(inst.created_at),
           destroyedAt = inst.destroyed_at and rfc3339(inst.destroyed_at) or nil,
           deadline = rfc3339(inst.deadline), documentedPurpose = inst.purpose,
           shape = inst.shape, status = inst.status, labels = labels,
           creatorId = "tenant_fake", ingressDomain = inst.id .. ".fake.nscluster.cloud" }
end

function Fake:describe_json(inst)
  return { instanceUrl = "https://cloud.namespace.so/instance/" .. inst.id,
           metadata = self:metadata(inst),
           extendedMetadata = { commandServiceEndpoint = self.command_url },
           containers = json.array({ { id = inst.id .. "-" .. inst.container.name,
                                       name = inst.container.name } }) }
end

function Fake:halt(inst, status)
  inst.status = status
  for _, p in pairs(inst.procs) do p:kill("KILL") end
  if status == "DESTROYED" then
    inst.destroyed_at = os.time()
    if inst.local_handle then lp.destroy(self.backend, inst.local_handle) end
    inst.local_handle = nil
  end
end

-- Instances past their deadline are destroyed; PENDING ones past their start delay run.
function Fake:sweep()
  local t = os.time()
  for _, inst in pairs(self.instances) do
    if inst.status ~= "DESTROYED" and inst.deadline <= t then self:halt(inst, "DESTROYED") end
    if inst.status == "PENDING" and now() >= inst.ready_at then inst.status = "RUNNING" end
  end
end

function Fake:lookup(req, msg)
  if type(msg.instanceId) ~= "string" or msg.instanceId == "" then
    return nil, self:refuse(req, "invalid_argument", "instanceId is required")
  end
  self:sweep()
  local inst = self.instances[msg.instanceId]
  if not inst then
    return nil, self:deny(req, "not_found", "instance " .. msg.instanceId .. " not found")
  end
  return inst
end

local C = {}                                 -- ComputeService methods: fn(self, req, msg)

function C.CreateInstance(self, req, b)
  if type(b.containers) ~= "table" or #b.containers ~= 1 then
    return self:refuse(req, "invalid_argument", "the fake serves exactly one container")
  end
  local ct = b.containers[1]
  if type(ct.name) ~= "string" or ct.name == "" or type(ct.imageRef) ~= "string"
     or ct.imageRef == "" then
    return self:refuse(req, "invalid_argument", "containers[0]: name and imageRef are required")
  end
  local shape = b.shape or {}
  for _, k in ipairs({ "virtualCpu", "memoryMegabytes" }) do
    if shape[k] ~= nil and shape[k] <= 0 then
      return self:refuse(req, "invalid_argument", "shape." .. k .. " must be positive")
    end
  end
  if shape.machineArch and shape.machineArch ~= "amd64" and shape.machineArch ~= "arm64" then
    return self:refuse(req, "invalid_argument", "shape.machineArch: amd64 or arm64")
  end
  local t = os.time()
  local deadline = t + M.DEFAULT_DEADLINE
  if b.deadline then
    deadline = wtime.parse(b.deadline)
    if not deadline then
      return self:refuse(req, "invalid_argument", "deadline is not an RFC 3339 timestamp")
    end
    if deadline <= t or deadline > t + self.max_lifetime then
      return self:refuse(req, "invalid_argument", "deadline must be in the future, within " ..
                         self.max_lifetime .. " s")
    end
  end
  for _, l in ipairs(b.labels or {}) do
    if type(l.name) ~= "string" or l.name == "" then
      return self:refuse(req, "invalid_argument", "a label without a name")
    end
  end
  if self.capacity and self:live() >= self.capacity then
    return self:deny(req, "resource_exhausted", "workspace is out of capacity")
  end
  local env = { PATH = PATH, HOME = "/root" }
  for k, v in pairs(ct.environment or {}) do env[k] = v end
  for _, e in ipairs(ct.envVars or {}) do env[e.name] = e.value end
  local lh, err = lp.create(self.backend, { env = env, network = "all" })
  if not lh then return self:refuse(req, "internal", tostring(err)) end
  local inst = { id = id.hex(10), created_at = t, deadline = deadline,
                 purpose = b.documentedPurpose, labels = b.labels or {},
                 shape = { virtualCpu = shape.virtualCpu or 2,
                           memoryMegabytes = shape.memoryMegabytes or 4096,
                           machineArch = shape.machineArch or "amd64", os = shape.os or "linux" },
                 status = self.start_delay > 0 and "PENDING" or "RUNNING",
                 ready_at = now() + self.start_delay,
                 container = { name = ct.name, image = ct.imageRef }, env = env,
                 local_handle = lh, procs = {} }
  self.instances[inst.id] = inst
  self.created = self.created + 1
  return answer(200, self:describe_json(inst))
end

function Fake:live()
  local n = 0
  for _, inst in pairs(self.instances) do if inst.status ~= "DESTROYED" then n = n + 1 end end
  return n
end

function C.DescribeInstance(self, req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return refusal end
  return answer(200, self:describe_json(inst))
end

function C.WaitInstanceSync(self, req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return refusal end
  while inst.status == "PENDING" do
    sandlot.sleep(0.02)
    self:sweep()
  end
  if inst.status == "DESTROYED" and not b.destroyedOk then
    return self:deny(req, "failed_precondition", "instance was destroyed")
  end
  return answer(200, { metadata = self:metadata(inst) })
end

function C.DestroyInstance(self, req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return refusal end
  if inst.status == "DESTROYED" then
    return self:deny(req, "not_found", "instance " .. inst.id .. " was destroyed")
  end
  self:halt(inst, "DESTROYED")
  return answer(200, {})
end

function C.ExtendInstance(self, req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return refusal end
  if inst.status == "DESTROYED" then
    return self:deny(req, "failed_precondition", "instance was destroyed")
  end
  local given = (b.extendBy and 1 or 0) + (b.ensureMinimum and 1 or 0) + (b.newDeadline and 1 or 0)
  if given ~= 1 then
    return self:refuse(req, "invalid_argument", "one of extendBy, ensureMinimum, newDeadline")
  end
  local t, deadline = os.time(), inst.deadline
  if b.newDeadline then
    deadline = wtime.parse(b.newDeadline)
    if not deadline then return self:refuse(req, "invalid_argument", "newDeadline: RFC 3339") end
  else
    local d = duration(b.extendBy or b.ensureMinimum)
    if not d then return self:refuse(req, "invalid_argument", "a duration is like \"600s\"") end
    if b.extendBy then deadline = deadline + math.ceil(d)
    else deadline = math.max(deadline, t + math.ceil(d)) end
  end
  if deadline <= t or deadline > inst.created_at + self.max_lifetime then
    return self:refuse(req, "invalid_argument", "the deadline would be out of range")
  end
  inst.deadline = deadline
  self.extends = self.extends + 1
  return answer(200, { deadline = rfc3339(deadline) })
end

function C.SuspendInstance(self, req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return refusal end
  if inst.status ~= "RUNNING" then
    return self:deny(req, "failed_precondition", "instance is " .. inst.status)
  end
  self:halt(inst, "SUSPENDED")
  return answer(200, {})
end

function C.WakeInstance(self, req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return refusal end
  if inst.status == "SUSPENDED" then inst.status = "RUNNING" end
  if inst.status ~= "RUNNING" then
    return self:deny(req, "failed_precondition", "instance is " .. inst.status)
  end
  return answer(200, {})
end

function C.ListInstances(self, req, b)
  local max = b.maxEntries or 100
  if max < 1 then return self:refuse(req, "invalid_argument", "maxEntries must be positive") end
  for _, f in ipairs(b.labelFilter or {}) do
    local op = f.op or "EQUAL"
    if op ~= "EQUAL" and op ~= "NOT_EQUAL" and op ~= "EXIST" then
      return self:refuse(req, "invalid_argument", "labelFilter.op: " .. tostring(op))
    end
  end
  local after = ""
  if b.paginationCursor then
    after = base64.decode(b.paginationCursor)
    if not after then return self:refuse(req, "invalid_argument", "paginationCursor: base64") end
  end
  self:sweep()
  local ids = {}
  for iid, inst in pairs(self.instances) do
    local ok = iid > after and (inst.status ~= "DESTROYED" or b.includeCompleteRuns)
    for _, f in ipairs(b.labelFilter or {}) do
      local v
      for _, l in ipairs(inst.labels) do if l.name == f.name then v = l.value end end
      local op = f.op or "EQUAL"
      if op == "EQUAL" then ok = ok and v == (f.value or "")
      elseif op == "NOT_EQUAL" then ok = ok and v ~= (f.value or "")
      else ok = ok and v ~= nil end
    end
    if ok then ids[#ids + 1] = iid end
  end
  table.sort(ids)
  max = math.min(max, self.page_size or max)
  local out = json.array()
  for i = 1, math.min(max, #ids) do out[i] = self:metadata(self.instances[ids[i]]) end
  self.list_pages = self.list_pages + 1
  return answer(200, { instances = out,
                       paginationCursor = #ids > max and base64.encode(ids[max]) or nil })
end

-- Commands -----------------------------------------------------------------------------------

-- The instance and container of a RunCommand request, and the command's argv, env, cwd.
function Fake:command_of(req, b)
  local inst, refusal = self:lookup(req, b)
  if not inst then return nil, refusal end
  if b.targetContainerName ~= inst.container.name then
    return nil, self:deny(req, "not_found", "container " .. tostring(b.targetContainerName) ..
                                            " not found")
  end
  if inst.status ~= "RUNNING" then
    return nil, self:deny(req, "failed_precondition", "instance is " .. inst.status)
  end
  local cmd = b.command or {}
  if type(cmd.command) ~= "table" or #cmd.command == 0 then
    return nil, self:refuse(req, "invalid_argument", "command.command is required")
  end
  local env = {}
  for k, v in pairs(inst.env) do env[k] = v end
  for _, e in ipairs(cmd.envVars or {}) do env[e.name] = e.value end
  local cwd
  if cmd.cwd then
    cwd = fs.path("/", cmd.cwd)
    if not cwd then return nil, self:refuse(req, "invalid_argument", "command.cwd") end
  end
  return inst, cmd.command, env, cwd
end

local function exit_code(res)
  if not res then return 1 end
  if res.signal then return 128 + res.signal end
  return res.exit_code or 1
end

function Fake:run_sync(req, b)
  local inst, argv, env, cwd = self:command_of(req, b)
  if not inst then return argv end
  local p, err = lp.spawn(self.backend, inst.local_handle, argv, { env = env, cwd = cwd })
  if not p then return self:deny(req, "invalid_argument", tostring(err)) end
  p:close_stdin()
  local key = {}
  inst.procs[key] = p
  local out = { stdout = {}, stderr = {} }
  while true do
    local stream, data = p:read()
    if not stream then break end
    local t = out[stream]
    t[#t + 1] = data
  end
  local res = p:wait()
  p:close()
  inst.procs[key] = nil
  self.commands = self.commands + 1
  local o, e, code = table.concat(out.stdout), table.concat(out.stderr), exit_code(res)
  return answer(200, { stdout = o ~= "" and base64.encode(o) or nil,
                       stderr = e ~= "" and base64.encode(e) or nil,
                       exitCode = code ~= 0 and code or nil })
end

local function stream_answer(body)
  return { status = 200, headers = { ["Content-Type"] = "application/connect+json" },
           body = body }
end

function Fake:run_stream(req, b)
  local inst, argv, env, cwd = self:command_of(req, b)
  if not inst then return argv end
  local p, err = lp.spawn(self.backend, inst.local_handle, argv, { env = env, cwd = cwd })
  if not p then
    return stream_answer(connect.end_stream("invalid_argument", tostring(err)))
  end
  p:close_stdin()
  local key = {}
  inst.procs[key] = p
  self.commands = self.commands + 1
  local finished = false
  return stream_answer(function()
    if finished then return nil end
    local stream, data = p:read()
    if stream then
      return connect.encode({ stream = stream:upper(), data = base64.encode(data) })
    end
    local res = p:wait()
    p:close()
    inst.procs[key] = nil
    finished = true
    local code = exit_code(res)
    return connect.encode({ exitStatus = { exitCode = code ~= 0 and code or nil } })
           .. connect.end_stream()
  end)
end

-- The handler --------------------------------------------------------------------------------

-- Checks what every call carries; returns the method name and decoded message, or nil and
-- the refusal.
function Fake:frame(req, service)
  local m = req.path:match("^/" .. service:gsub("%.", "%%.") .. "/(%a+)$")
  if req.method ~= "POST" or not m or SERVICE_OF[m] ~= service then
    return nil, self:refuse(req, "unimplemented", "no route " .. req.method .. " " .. req.path,
                            404)
  end
  local auth = req.headers["authorization"]
  if auth == nil or auth ~= "Bearer " .. self.token then
    return nil, self:refuse(req, "unauthenticated", auth and "invalid bearer token"
                                                   or "missing Authorization header")
  end
  local v = req.headers["connect-protocol-version"]
  if v == nil then
    self.quirks[#self.quirks + 1] = m .. ": no Connect-Protocol-Version"
  elseif v ~= "1" then
    return nil, self:refuse(req, "invalid_argument", "connect-protocol-version must be \"1\"")
  end
  local ct = (req.headers["content-type"] or ""):lower():match("^[^;]*")
  local streaming = m == "RunCommand"
  local want = streaming and "application/connect+json" or "application/json"
  if ct ~= want then
    self.rejected[#self.rejected + 1] = { method = req.method, path = req.path, status = 415,
                                          why = "content type " .. ct }
    return nil, { status = 415, headers = { ["Content-Type"] = "text/plain",
                                            ["Accept-Post"] = want },
                  body = "unsupported content type " .. ct }
  end
  local raw = req.body
  if streaming then
    local msgs = connect.decode_all(raw)
    if not msgs or #msgs ~= 1 or msgs[1].flags ~= 0 then
      self.rejected[#self.rejected + 1] = { method = req.method, path = req.path, status = 200,
                                            why = "the stream request is not one envelope" }
      return nil, stream_answer(connect.end_stream("invalid_argument",
                                                   "the request must be exactly one message"))
    end
    local msg, why = conform(msgs[1].value, SCHEMAS[m], "request")
    if not msg then
      self.rejected[#self.rejected + 1] = { method = req.method, path = req.path, status = 200,
                                            why = why }
      return nil, stream_answer(connect.end_stream("invalid_argument", why))
    end
    return m, msg
  end
  local decoded = raw ~= "" and json.decode(raw) or {}
  if decoded == nil then
    return nil, self:refuse(req, "invalid_argument", "the body is not JSON")
  end
  local msg, why = conform(decoded, SCHEMAS[m], "request")
  if not msg then return nil, self:refuse(req, "invalid_argument", why) end
  return m, msg
end

function Fake:serve(req, service)
  local route = req.method .. " " .. req.path
  self.requests[#self.requests + 1] = { route = route, body = req.body, headers = req.headers,
                                        service = service }
  local f = self:fault(route, req.path:match("/(%a+)$"))
  if f then
    local a = apply_fault(f)
    if a then return a end
  end
  local m, msg = self:frame(req, service)
  if not m then return msg end
  if m == "RunCommandSync" then return self:run_sync(req, msg) end
  if m == "RunCommand" then return self:run_stream(req, msg) end
  return C[m](self, req, msg)
end

---A fake without servers: opts = {token, backend_dir, start_delay (s an instance stays
---PENDING), max_lifetime, page_size, capacity (live instances before resource_exhausted)}.
function M.new(opts)
  opts = opts or {}
  local dir = assert(opts.backend_dir, "spec.fakes.namespace: opts.backend_dir is required")
  return setmetatable({
    token = opts.token or ("nsct_" .. id.hex(20)), instances = {}, faults = {}, rejected = {},
    denied = {}, quirks = {}, requests = {}, created = 0, commands = 0, extends = 0,
    list_pages = 0, page_size = opts.page_size, start_delay = opts.start_delay or 0,
    max_lifetime = opts.max_lifetime or M.MAX_LIFETIME, capacity = opts.capacity,
    backend = { name = "namespace-fake", config = { state_dir = dir, isolation = "namespaces" },
                warn = function() end },
  }, Fake)
end

---Starts the fake on two loopback servers. Returns {url, command_url, token, fake,
---rejected(), stop()}.
function M.start(opts)
  opts = opts or {}
  local tmp
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if not o.backend_dir then
    tmp = require("spec.helper").tmpdir("namespace")
    o.backend_dir = tmp
  end
  local f = M.new(o)
  local max = opts.max_body or 64 * 1024 * 1024
  local compute = assert(sandlot.http.serve{ host = "127.0.0.1", port = 0, max_body = max,
    handler = function(req) return f:serve(req, M.COMPUTE) end })
  local command = assert(sandlot.http.serve{ host = "127.0.0.1", port = 0, max_body = max,
    handler = function(req) return f:serve(req, M.COMMAND) end })
  f.command_url = command.url
  return {
    url = compute.url, command_url = command.url, token = f.token, fake = f,
    rejected = base.rejected_lines(f),     -- for spec/fakes/check/run.lua: one line each
    stop = function()
      for _, inst in pairs(f.instances) do
        if inst.status ~= "DESTROYED" then f:halt(inst, "DESTROYED") end
      end
      compute:close()
      command:close()
      if tmp then sandlot.proc.run({ "rm", "-rf", tmp }) end
    end,
  }
end

return M
