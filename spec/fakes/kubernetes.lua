-- spec/fakes/kubernetes.lua: a strict fake of the Kubernetes API server's pod surface, per
-- ../shared/provider-apis/kubernetes.md ("Strict fake"), on one sandlot.http.serve server
-- (http, or https with opts.tls): pods create/get/list (labelSelector, limit/continue)/delete,
-- and pods/exec over WebSocket (v5/v4.channel.k8s.io, the client's first offer it supports, a
-- bare 403 when none is; the empty stdout frame first, channel 3 Status last, v5's [255,0]
-- ends stdin). Each pod's commands and files are real: a sandbox of
-- the local provider (bubblewrap, its own /), the container's workingDir and env applied.
-- Answers are metav1.Status: 401 Unauthorized (no or wrong bearer and no client certificate
-- that verified against opts.tls.client_ca; a verified one is user CN, logged in
-- fake.requests[i].user), 404 NotFound, 409
-- AlreadyExists, 422 Invalid (no containers, bad names, labels), 400 BadRequest (exec into a
-- Succeeded/Failed pod, an unknown container), 403 Forbidden (a WebSocket exec without
-- `create` on pods/exec when emulating >= 1.35; opts.version, opts.rbac). Unknown pod fields
-- are accepted with a Warning header, as the API's default fieldValidation=Warn does, and
-- logged in fake.rejected. Faults: fake:inject{route = "POST /api/v1/...", status = 429,
-- retry_after = 1, body = "not json", times = n}, fake.drop_exec_after = n (an exec's
-- connection ends after n output frames, without a Status), fake.stall_exec_after = n (it goes
-- silent after n frames and stays open until the client leaves; fake.stalled counts). Images
-- named "*pull-backoff*" never start (ImagePullBackOff). An upgrade offering no subprotocol it
-- speaks is a plain 403 before anything runs, as wsstream's failed handshake is.
--   local k = require("spec.fakes.kubernetes").start{}  -> k.url, k.token, k.fake,
--   k.kubeconfig(path [, {token, ca_file, insecure, client_cert, client_key (paths) |
--   client_cert_data, client_key_data (PEM text)}]), k.rejected(), k.stop()
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local lp = require("providers.local")
local id = require("sandlot.id")
local rfc3339 = require("sandlot.wire.time").format
local base = require("spec.fakes._base")

local M = {}

local Fake = {}
Fake.__index = Fake

-- an RFC 1123 label (Lua patterns have no optional groups: two matches)
local function dns_label(s)
  return type(s) == "string" and #s <= 63 and s:match("^[a-z0-9][a-z0-9%-]*$") ~= nil
         and s:match("[a-z0-9]$") ~= nil
end

local function label_part(s)
  return s:match("^%w[%w_%.%-]*$") ~= nil and s:match("%w$") ~= nil
end

local function status_body(code, reason, message, details)
  return { kind = "Status", apiVersion = "v1", metadata = {}, status = "Failure",
           message = message, reason = reason, details = details, code = code }
end

local answer = base.answer

---A refusal of a malformed request (the provider's fault): logged in fake.rejected.
function Fake:refuse(req, code, reason, message, details)
  self:rejects(req, code, message)
  return answer(code, status_body(code, reason, message, details))
end

---The server's word on the world (a missing pod, a duplicate): logged in fake.denied.
function Fake:deny(req, code, reason, message, details)
  self:denies(req, code)
  return answer(code, status_body(code, reason, message, details))
end

---A 401 Unauthorized: a refusal when the request carries no credential or a malformed
---Authorization header (the client's fault), the server's word (fake.denied) for a well-formed
---bearer token it does not know (a stale or wrong token is the world's state, not a bad request).
function Fake:unauthenticated(req)
  local auth = req.headers.authorization
  if auth and auth:match("^Bearer [%w%-%._~%+/]+=*$") then
    return self:deny(req, 401, "Unauthorized", "Unauthorized")
  end
  return self:refuse(req, 401, "Unauthorized", "Unauthorized")
end

base.install(Fake)                 -- rejects, denies, inject, fault

-- Pods ---------------------------------------------------------------------------------------

function Fake:pod_json(p)
  local cs = { name = p.container.name, image = p.container.image, ready = false,
               restartCount = 0, state = {} }
  local phase = p.phase
  if phase == "Pending" then
    if p.container.image:find("pull-backoff", 1, true) then
      cs.state.waiting = { reason = "ImagePullBackOff",
                           message = 'Back-off pulling image "' .. p.container.image .. '"' }
    elseif os.time() - p.created >= self.start_delay then
      p.phase, phase = "Running", "Running"
    else
      cs.state.waiting = { reason = "ContainerCreating" }
    end
  end
  if phase == "Running" then
    cs.state.running = { startedAt = rfc3339(p.created) }
    cs.ready = true
  elseif phase == "Succeeded" or phase == "Failed" then
    cs.state.terminated = { exitCode = phase == "Succeeded" and 0 or 1,
                            reason = phase == "Succeeded" and "Completed" or "Error" }
  end
  local o = p.obj
  o.status = { phase = phase, containerStatuses = { cs },
               conditions = { { type = "Ready", status = phase == "Running" and "True"
                                                          or "False" } } }
  return o
end

local KNOWN_SPEC = { containers = true, restartPolicy = true, terminationGracePeriodSeconds = true,
                     automountServiceAccountToken = true, activeDeadlineSeconds = true,
                     nodeSelector = true, serviceAccountName = true, securityContext = true,
                     volumes = true, tolerations = true }
local KNOWN_CONTAINER = { name = true, image = true, command = true, args = true,
                          workingDir = true, env = true, resources = true, ports = true,
                          securityContext = true, volumeMounts = true, imagePullPolicy = true }
local KNOWN_META = { name = true, generateName = true, namespace = true, labels = true,
                     annotations = true }

local function valid_label(k, v)
  local name = k:match("^[a-z0-9][a-z0-9%.%-]*/(.+)$") or k
  if #name > 63 or not label_part(name) then return false end
  return type(v) == "string" and #v <= 63 and (v == "" or label_part(v))
end

function Fake:create(req, ns)
  if not (req.headers["content-type"] or ""):find("^application/json") then
    return self:refuse(req, 415, "UnsupportedMediaType", "the body must be application/json")
  end
  local b = json.decode(req.body)
  if type(b) ~= "table" then
    return self:refuse(req, 400, "BadRequest", "the body is not a JSON object")
  end
  if b.kind ~= "Pod" or b.apiVersion ~= "v1" then
    return self:refuse(req, 400, "BadRequest", "kind Pod, apiVersion v1 expected")
  end
  local md, spec = b.metadata, b.spec
  local causes = {}
  local function invalid(field, msg) causes[#causes + 1] = { field = field, message = msg } end
  local warnings = {}
  if type(md) ~= "table" then md = {}; b.metadata = md end
  for k in pairs(md) do if not KNOWN_META[k] then warnings[#warnings + 1] = "metadata." .. k end end
  if md.namespace ~= nil and md.namespace ~= ns then
    return self:refuse(req, 400, "BadRequest", "the namespace of the provided object does not " ..
                       "match the namespace sent on the request")
  end
  local name = md.name
  if name == nil and type(md.generateName) == "string" then
    name = md.generateName .. id.hex(3):sub(1, 5)
  end
  if not dns_label(name) then
    invalid("metadata.name", "Invalid value: a lowercase RFC 1123 label must consist of lower " ..
            "case alphanumeric characters or '-'")
  end
  for k, v in pairs(type(md.labels) == "table" and md.labels or {}) do
    if type(k) ~= "string" or not valid_label(k, v) then
      invalid("metadata.labels", "Invalid value: " .. tostring(k))
    end
  end
  if type(md.annotations) == "table" then
    for _, v in pairs(md.annotations) do
      if type(v) ~= "string" then invalid("metadata.annotations", "must be strings") end
    end
  end
  if type(spec) ~= "table" then spec = {}; b.spec = spec end
  for k in pairs(spec) do if not KNOWN_SPEC[k] then warnings[#warnings + 1] = "spec." .. k end end
  local cs = spec.containers
  if type(cs) ~= "table" or #cs == 0 then
    invalid("spec.containers", "Required value")
    cs = {}
  end
  for i, c in ipairs(cs) do
    local at = ("spec.containers[%d]"):format(i - 1)
    if type(c) ~= "table" then invalid(at, "must be an object")
    else
      for key in pairs(c) do
        if not KNOWN_CONTAINER[key] then warnings[#warnings + 1] = at .. "." .. key end
      end
      if not dns_label(c.name) then
        invalid(at .. ".name", "Required value")
      end
      if type(c.image) ~= "string" or c.image == "" then
        invalid(at .. ".image", "Required value")
      end
      for j, e in ipairs(type(c.env) == "table" and c.env or {}) do
        if type(e) ~= "table" or type(e.name) ~= "string" or e.name == ""
           or (e.value ~= nil and type(e.value) ~= "string") then
          invalid(("%s.env[%d]"):format(at, j - 1), "name required, value a string")
        end
      end
      if c.workingDir ~= nil and (type(c.workingDir) ~= "string"
                                  or c.workingDir:sub(1, 1) ~= "/") then
        invalid(at .. ".workingDir", "must be an absolute path")
      end
    end
  end
  local rp = spec.restartPolicy
  if rp ~= nil and rp ~= "Always" and rp ~= "OnFailure" and rp ~= "Never" then
    invalid("spec.restartPolicy", "Unsupported value")
  end
  if #causes > 0 then
    return self:refuse(req, 422, "Invalid", ('Pod "%s" is invalid: %s: %s'):format(
      tostring(name), causes[1].field, causes[1].message),
      { name = name, kind = "Pod", causes = causes })
  end
  local key = ns .. "/" .. name
  if self.pods[key] then
    return self:deny(req, 409, "AlreadyExists", ('pods "%s" already exists'):format(name),
                     { name = name, kind = "pods" })
  end
  local c = cs[1]
  local env = {}
  for _, e in ipairs(c.env or {}) do env[e.name] = e.value or "" end
  local lh, err = lp.create(self.backend, { env = env })
  if not lh then return answer(500, status_body(500, "InternalError", tostring(err))) end
  local wd = c.workingDir or "/"
  assert(lp.mkdir(self.backend, lh, wd, { parents = true }))
  md.name, md.namespace, md.generateName = name, ns, nil
  md.uid = id.hex(16)
  md.creationTimestamp = rfc3339(os.time())
  md.resourceVersion = tostring(self:rv())
  local p = { obj = b, container = c, phase = "Pending", created = os.time(), lh = lh, env = env,
              workdir = wd, execs = {} }
  self.pods[key] = p
  self.created = self.created + 1
  local h = {}
  if #warnings > 0 then
    h.Warning = '299 - "unknown field \\"' .. warnings[1] .. '\\""'
    self.rejected[#self.rejected + 1] = { method = req.method, path = req.path, status = 201,
                                          why = "unknown fields: " .. table.concat(warnings, " ") }
  end
  return answer(201, self:pod_json(p), h)
end

function Fake:rv()
  self.resource_version = self.resource_version + 1
  return self.resource_version
end

-- labelSelector: "k=v,k==v,k!=v,k,!k" terms.
local function selects(sel, labels)
  for term in (sel or ""):gmatch("[^,]+") do
    local k, op, v = term:match("^%s*([^=!%s]+)%s*([!=]?=+)%s*(.-)%s*$")
    if k then
      local has = labels[k]
      if op == "!=" then if has == v then return false end
      elseif has ~= v then return false end
    else
      local neg, key = term:match("^%s*(!?)([^%s]+)%s*$")
      if not key then return nil end
      if (neg == "!") == (labels[key] ~= nil) then return false end
    end
  end
  return true
end

function Fake:list(req, ns)
  local q = base.query(req.query)
  local names = {}
  for key, p in pairs(self.pods) do
    if key:sub(1, #ns + 1) == ns .. "/" then
      local ok = selects(q.labelSelector, p.obj.metadata.labels or {})
      if ok == nil then
        return self:refuse(req, 400, "BadRequest", "unable to parse requirement: " ..
                           tostring(q.labelSelector))
      end
      if ok then names[#names + 1] = key end
    end
  end
  table.sort(names)
  local from = 1
  if q["continue"] and q["continue"] ~= "" then
    from = math.tointeger(tonumber(q["continue"])) or 0
    if from < 1 then return self:refuse(req, 410, "Expired", "the continue token is invalid") end
  end
  local limit = q.limit and math.tointeger(tonumber(q.limit)) or #names
  if not limit or limit < 0 then
    return self:refuse(req, 400, "BadRequest", "limit must be a non-negative integer")
  end
  if limit == 0 then limit = #names end
  limit = math.min(limit, self.page_size or limit)
  local items = json.array()
  for i = from, math.min(#names, from + limit - 1) do
    items[#items + 1] = self:pod_json(self.pods[names[i]])
  end
  local nxt = from + limit <= #names and tostring(from + limit) or nil
  self.list_pages = self.list_pages + 1
  return answer(200, { kind = "PodList", apiVersion = "v1", items = items,
                       metadata = { resourceVersion = tostring(self.resource_version),
                                    ["continue"] = nxt } })
end

function Fake:kill(key)
  local p = self.pods[key]
  if not p then return end
  self.pods[key] = nil
  for x in pairs(p.execs) do pcall(x.kill, x, "KILL") end
  lp.destroy(self.backend, p.lh)
end

---Ends a pod's container as the kubelet would: phase Succeeded or Failed (exec then 400).
function Fake:complete(name, phase, ns)
  local p = assert(self.pods[(ns or "default") .. "/" .. name], "no pod " .. name)
  p.phase = phase or "Succeeded"
end

-- Exec ---------------------------------------------------------------------------------------

local function minor(v)
  local maj, min = tostring(v):match("^v?(%d+)%.(%d+)")
  return (tonumber(maj) or 1) * 1000 + (tonumber(min) or 0)
end

function Fake:allowed(verb, resource)
  local r = self.rbac[resource]
  return r ~= nil and r[verb] == true
end

function Fake:exec(req, ns, p, name)
  local q, all = base.query(req.query), base.query(req.query, true)
  local upgrade = (req.headers.upgrade or ""):lower():find("websocket", 1, true)
  if not upgrade then
    return self:refuse(req, 400, "BadRequest", "Upgrade request required")
  end
  if not self:allowed("get", "pods/exec") then
    return self:deny(req, 403, "Forbidden", ('pods "%s" is forbidden: User cannot get ' ..
                     'resource "pods/exec" in the namespace "%s"'):format(name, ns),
                     { name = name, kind = "pods" })
  end
  if minor(self.version) >= minor("1.35") and not self:allowed("create", "pods/exec") then
    return self:deny(req, 403, "Forbidden", ('pods "%s" is forbidden: User cannot create ' ..
                     'resource "pods/exec" in the namespace "%s"'):format(name, ns),
                     { name = name, kind = "pods" })
  end
  if p.phase == "Succeeded" or p.phase == "Failed" then
    return self:deny(req, 400, "BadRequest", "cannot exec into a container in a completed " ..
                     "pod; current phase is " .. p.phase)
  end
  if p.phase ~= "Running" then
    return self:deny(req, 400, "BadRequest", ('container "%s" in pod "%s" is waiting to ' ..
                     'start: ContainerCreating'):format(p.container.name, name))
  end
  if (q.container or p.container.name) ~= p.container.name then
    return self:refuse(req, 400, "BadRequest", ("container %s is not valid for pod %s")
                       :format(q.container, name))
  end
  local cmd = all.command
  if not cmd or #cmd == 0 then
    return self:refuse(req, 400, "BadRequest", "you must specify at least 1 command")
  end
  for _, k in ipairs({ "stdin", "stdout", "stderr", "tty" }) do
    if q[k] and q[k] ~= "true" and q[k] ~= "false" and q[k] ~= "1" and q[k] ~= "0" then
      return self:refuse(req, 400, "BadRequest", k .. " must be a boolean")
    end
  end
  if q.tty == "true" then return self:refuse(req, 400, "BadRequest", "tty is not emulated") end
  local stdin = q.stdin == "true" or q.stdin == "1"
  local argv = { "/bin/sh", "-c", 'exec "$0" "$@"' }
  for _, a in ipairs(cmd) do argv[#argv + 1] = a end
  -- wsstream's handshake: the first of the client's offers the server supports (client order,
  -- as @kubernetes/client-node's v5, v4, v3, v2, channel.k8s.io list relies on); none in common
  -- is x/net/websocket's bare 403 Forbidden. No offer at all selects the unnamed legacy protocol
  -- (no exit code in its status), which is not emulated.
  local offered = req.headers["sec-websocket-protocol"]
  if not offered or not offered:find("%S") then
    return self:refuse(req, 403, "Forbidden", "no Sec-WebSocket-Protocol: the legacy unnamed " ..
                       "channel protocol is not emulated")
  end
  local chosen
  for o in offered:gmatch("[^,%s]+") do
    for _, sp in ipairs(self.subprotocols) do if o == sp then chosen = sp break end end
    if chosen then break end
  end
  if not chosen then
    self:denies(req, 403)
    return { status = 403, headers = {}, body = "" }
  end
  local fake = self
  return { subprotocols = { chosen }, max_message = 64 * 1024 * 1024,
           websocket = function(w) fake:serve_exec(w, p, argv, stdin) end }
end

function Fake:serve_exec(w, p, argv, stdin)
  local v5 = w.subprotocol == "v5.channel.k8s.io"
  local x, err = lp.spawn(self.backend, p.lh, argv, { cwd = p.workdir, env = p.env })
  if not x then
    w:send("\3" .. json.encode({ metadata = {}, status = "Failure", reason = "InternalError",
                                 message = tostring(err) }), { binary = true })
    return
  end
  p.execs[x] = true
  self.execs = self.execs + 1
  if not stdin then x:close_stdin() end
  w:send("\1", { binary = true })                   -- the stream is up
  local reader = sandlot.spawn(function()           -- the client's frames
    while true do
      local data, kind = w:receive()
      if not data then break end
      if kind == "binary" and #data >= 1 then
        local ch = data:byte(1)
        if ch == 0 and stdin then
          if #data > 1 and not x:write(data:sub(2)) then break end
        elseif ch == 255 and v5 and data:byte(2) == 0 then
          x:close_stdin()
        end
      end
    end
    -- the client went away: the kubelet's stdin stream ends, the command reads EOF (it is not
    -- killed: a command that ignores stdin runs on)
    if stdin then pcall(x.close_stdin, x) end
  end)
  local frames, dropped = 0, false
  while true do
    local stream, data = x:read()
    if not stream then break end
    if self.drop_exec_after and frames >= self.drop_exec_after then
      dropped = true
      break
    end
    if self.stall_exec_after and frames >= self.stall_exec_after then
      self.stalled = (self.stalled or 0) + 1         -- silent, open, until the client leaves
      while not reader:done() do sandlot.sleep(0.05) end
      dropped = true
      break
    end
    local ok = w:send((stream == "stdout" and "\1" or "\2") .. data, { binary = true })
    if not ok then dropped = true; break end          -- the client went away
    frames = frames + 1
  end
  if dropped then
    x:kill("KILL")
    x:wait()
    p.execs[x] = nil
    x:close()
    if not reader:done() then reader:cancel() end
    return
  end
  local r = x:wait()
  p.execs[x] = nil
  x:close()
  local code = r and (r.signal and 128 + r.signal or r.exit_code) or 1
  local st
  if code == 0 then st = { metadata = {}, status = "Success" }
  else
    st = { metadata = {}, status = "Failure", reason = "NonZeroExitCode",
           message = "command terminated with non-zero exit code: error executing command " ..
                     "[...], exit code " .. code,
           details = { causes = { { reason = "ExitCode", message = tostring(code) } } } }
  end
  w:send("\3" .. json.encode(st), { binary = true })
  if not reader:done() then reader:cancel() end
end

-- Routing ------------------------------------------------------------------------------------

function Fake:handle(req)
  local route = req.method .. " " .. req.path
  self.requests[#self.requests + 1] = { route = route, query = req.query }
  local f = self:fault(route)
  if f then
    if f.hang then sandlot.sleep(f.hang) end
    if f.body then
      return answer(f.status or 200, f.body, { ["Content-Type"] = "application/json" })
    end
    if f.status then
      local h = {}
      if f.retry_after then h["Retry-After"] = tostring(f.retry_after) end
      return answer(f.status, status_body(f.status, f.reason or "TooManyRequests",
                                          f.message or "injected"), h)
    end
  end
  -- x509 first, then the bearer token, as the API server's union authenticator: a client
  -- certificate that verified against opts.tls.client_ca is user CN
  local user = req.tls_client_cn
  if not user and req.headers.authorization == "Bearer " .. self.token then user = "token" end
  if not user then
    return self:unauthenticated(req)
  end
  self.requests[#self.requests].user = user
  local ns, rest = req.path:match("^/api/v1/namespaces/([^/]+)/pods(.*)$")
  if not ns then
    return self:refuse(req, 404, "NotFound", "the server could not find the requested resource")
  end
  if not self.namespaces[ns] then
    return self:deny(req, 404, "NotFound", ('namespaces "%s" not found'):format(ns),
                     { name = ns, kind = "namespaces" })
  end
  local m = req.method
  if rest == "" and m == "POST" then return self:create(req, ns) end
  if rest == "" and m == "GET" then return self:list(req, ns) end
  local name, sub = rest:match("^/([^/]+)(.*)$")
  local key = ns .. "/" .. (name or "")
  local p = self.pods[key]
  if not p then
    return self:deny(req, 404, "NotFound", ('pods "%s" not found'):format(tostring(name)),
                     { name = name, kind = "pods" })
  end
  if sub == "" and m == "GET" then return answer(200, self:pod_json(p)) end
  if sub == "" and m == "DELETE" then
    local q = base.query(req.query)
    if q.gracePeriodSeconds ~= nil and not q.gracePeriodSeconds:match("^%d+$") then
      return self:refuse(req, 400, "BadRequest", "gracePeriodSeconds must be an integer")
    end
    local o = self:pod_json(p)
    o.metadata.deletionTimestamp = rfc3339(os.time())
    o.metadata.deletionGracePeriodSeconds = tonumber(q.gracePeriodSeconds) or 30
    self:kill(key)
    self.deleted = self.deleted + 1
    return answer(200, o)
  end
  if sub == "/exec" and m == "GET" then return self:exec(req, ns, p, name) end
  return self:refuse(req, 405, "MethodNotAllowed", "no route " .. route)
end

---A fake without a server: opts = {token, dir, version ("1.35"), rbac ({["pods/exec"] =
---{get = true, create = true}}), subprotocols ({"v5.channel.k8s.io", "v4.channel.k8s.io"}),
---namespaces ({"default"}), start_delay (s a pod stays ContainerCreating), page_size}.
function M.new(opts)
  opts = opts or {}
  local dir = assert(opts.dir, "spec.fakes.kubernetes: opts.dir is required")
  local nss = {}
  for _, n in ipairs(opts.namespaces or { "default" }) do nss[n] = true end
  return setmetatable({
    token = opts.token or ("fake-kube-" .. id.hex(20)), pods = {}, faults = {}, rejected = {},
    denied = {}, requests = {}, created = 0, deleted = 0, execs = 0, list_pages = 0,
    resource_version = 1000, namespaces = nss, version = opts.version or "1.35",
    rbac = opts.rbac or { ["pods/exec"] = { get = true, create = true } },
    subprotocols = opts.subprotocols or { "v5.channel.k8s.io", "v4.channel.k8s.io" },
    start_delay = opts.start_delay or 0, page_size = opts.page_size, dir = dir,
    backend = { name = "kubernetes-fake", config = { state_dir = dir .. "/local",
                                                     isolation = "namespaces" },
                warn = function() end },
  }, Fake)
end

local function b64(s)
  return require("sandlot.wire.base64").encode(s)
end

---Starts the fake on a loopback server (opts.tls = {cert, key}: https; with client_ca, client
---certificates it signs authenticate).
function M.start(opts)
  opts = opts or {}
  local tmp = require("spec.helper").tmpdir("kube")
  opts.dir = tmp
  local f = M.new(opts)
  local srv = assert(sandlot.http.serve{ host = "127.0.0.1", port = 0, tls = opts.tls,
                                         max_body = 64 * 1024 * 1024,
                                         handler = function(req) return f:handle(req) end })
  local k = { url = srv.url:gsub("/+$", ""), token = f.token, fake = f }
  ---Writes a kubeconfig for this fake: o = {token (default the fake's; false: none),
  ---ca_file | ca_data (PEM text), insecure, namespace, context names, client_cert + client_key
  ---(paths) | client_cert_data + client_key_data (PEM text), extra_user = {...}}.
  function k.kubeconfig(path, o)
    o = o or {}
    local cluster = { "    server: " .. k.url }
    if o.ca_file then cluster[#cluster + 1] = "    certificate-authority: " .. o.ca_file end
    if o.ca_data then
      cluster[#cluster + 1] = "    certificate-authority-data: " .. b64(o.ca_data)
    end
    if o.insecure then cluster[#cluster + 1] = "    insecure-skip-tls-verify: true" end
    local user = {}
    local tok = o.token == nil and f.token or o.token
    if tok then user[#user + 1] = "    token: " .. tok end
    for _, kk in ipairs({ "client_cert", "client_key" }) do
      local field = kk == "client_cert" and "client-certificate" or "client-key"
      if o[kk] then user[#user + 1] = ("    %s: %s"):format(field, o[kk]) end
      if o[kk .. "_data"] then
        user[#user + 1] = ("    %s-data: %s"):format(field, b64(o[kk .. "_data"]))
      end
    end
    for kk, v in pairs(o.extra_user or {}) do user[#user + 1] = ("    %s: %s"):format(kk, v) end
    if #user == 0 then user[1] = "    {}" end
    local text = table.concat({
      "apiVersion: v1", "kind: Config", "current-context: " .. (o.current or "fake"),
      "clusters:", "- name: fake-cluster", "  cluster:", table.concat(cluster, "\n"),
      "- name: other-cluster", "  cluster:", "    server: https://127.0.0.1:1",
      "contexts:", "- name: fake", "  context:", "    cluster: fake-cluster",
      "    user: fake-user", o.namespace and ("    namespace: " .. o.namespace) or "",
      "- name: other", "  context:", "    cluster: other-cluster", "    user: fake-user",
      "users:", "- name: fake-user", "  user:", table.concat(user, "\n"), "" }, "\n")
    local out = assert(io.open(path, "w"))
    out:write(text)
    out:close()
    return path
  end
  k.rejected = base.rejected_lines(f)
  function k.stop()
    for key in pairs(f.pods) do f:kill(key) end
    srv:close()
    sandlot.proc.run({ "rm", "-rf", tmp })
  end
  return k
end

return M
