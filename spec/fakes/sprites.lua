-- spec/fakes/sprites.lua: a strict fake of Fly.io Sprites, per ../shared/provider-apis/
-- sprites.md ("Strict fake"), on one sandlot.http.serve server: the lifecycle, /fs, the
-- checkpoints (a copy of the sprite's tree) and, in spec/fakes/sprites_exec.lua, the HTTP exec
-- (one frame per chunk) and the WebSocket exec with its sessions and kill. Each sprite's
-- commands and files are real: a sandbox of the local provider (bubblewrap, its own /), with
-- /home/sprite. It rejects what Sprites rejects (a missing or wrong bearer: 401; a duplicate
-- name: 400; fs calls without path or workingDir: 400; bad JSON types), answers 404 for an
-- unknown sprite and 410 for the kill of an exited session, keeps environment keys verbatim
-- and applies the defaults (wait_for_capacity false, url_settings.auth "sprite", status cold
-- until used). Faults: fake:inject{route = "POST /v1/sprites", status = 429, retry_after = 1,
-- hang = s, drop = true, times = n, error = "..."}. Refusals are logged in fake.rejected.
--   local f = require("spec.fakes.sprites").start{}
--   -> f.url, f.token, f.fake (state), f.rejected(), f.stop()
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local lp = require("providers.local")
local id = require("sandlot.id")
local fs = require("sandlot.fs")
local rfc3339 = require("sandlot.wire.time").format

local base = require("spec.fakes._base")

local M = {}

M.HOME = "/home/sprite"
M.rfc3339 = rfc3339

local Fake = {}
Fake.__index = Fake

local unescape = base.unescape

---Parses a query string: first value per key, and every value per key (repeated `cmd`).
function M.query(raw)
  local first, all = {}, {}
  for pair in (raw or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if first[k] == nil then first[k] = v end
    all[k] = all[k] or {}
    all[k][#all[k] + 1] = v
  end
  return first, all
end

local answer = base.answer
M.answer = answer

---A refusal of a malformed request: logged in fake.rejected.
function Fake:refuse(req, status, body, why)
  self:rejects(req, status,
               why or (type(body) == "table" and (body.message or body.error)) or tostring(body))
  return answer(status, body)
end

---The service's word on the world (a missing sprite or file): logged in fake.denied.
function Fake:deny(req, status, body)
  self:denies(req, status)
  return answer(status, body)
end

-- fake:inject{route = "METHOD /path" (a prefix or a Lua pattern), status, retry_after, error,
-- message, hang = seconds, drop = true, times = 1, body = text (as it is), chunks = {...} (a
-- body of these HTTP chunks)}; fake:fault(route) finds it.
base.install(Fake)

-- Sprites ------------------------------------------------------------------------------------

local function uuid()
  local h = id.hex(16)
  return ("%s-%s-4%s-a%s-%s"):format(h:sub(1, 8), h:sub(9, 12), h:sub(14, 16), h:sub(18, 20),
                                     h:sub(21, 32))
end

function Fake:status_of(s)
  for _, x in pairs(s.sessions) do if not x.exited then return "running" end end
  if not s.used then return "cold" end
  if os.time() - s.used < self.idle then return "running" end
  return "warm"
end

function Fake.touch(_, s) s.used = os.time() end

function Fake:info(s)
  local o = { id = s.uuid, name = s.name, organization = "fake-org", status = self:status_of(s),
              created_at = rfc3339(s.created_at), updated_at = rfc3339(s.created_at),
              url = ("https://%s-fake1234.sprites.app"):format(s.name),
              url_settings = s.url_settings, labels = json.array(s.labels),
              environment = s.environment, config = s.config }
  return o
end

local function is_array_of_strings(v)
  if v == nil then return true end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then return false end
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or type(x) ~= "string" then return false end
  end
  return true
end

local function is_map_of_strings(v)
  if v == nil then return true end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then return false end
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "string" then return false end
  end
  return true
end

function Fake:json_body(req, optional)
  if req.body == "" and optional then return {} end
  local ct = (req.headers["content-type"] or ""):lower()
  if not ct:find("^application/json") then
    return nil, self:refuse(req, 400, { error = "bad_request",
                                        message = "Content-Type must be application/json" })
  end
  local v = json.decode(req.body)
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    return nil, self:refuse(req, 400, { error = "bad_request", message = "invalid JSON body" })
  end
  return v
end

function Fake:create(req)
  local b, refusal = self:json_body(req)
  if not b then return refusal end
  local function bad(msg) return self:refuse(req, 400, { error = "bad_request", message = msg }) end
  if type(b.name) ~= "string" or not b.name:match("^[a-z0-9][a-z0-9%-]*$") or #b.name > 63 then
    return bad("name is required: lowercase letters, digits and hyphens")
  end
  if b.wait_for_capacity ~= nil and type(b.wait_for_capacity) ~= "boolean" then
    return bad("wait_for_capacity must be a boolean")
  end
  if not is_array_of_strings(b.labels) then return bad("labels must be a list of strings") end
  if not is_map_of_strings(b.environment) then return bad("environment must map strings") end
  local us = b.url_settings
  if us ~= nil and (type(us) ~= "table" or (us.auth ~= nil and us.auth ~= "sprite"
                                             and us.auth ~= "public")) then
    return bad("url_settings.auth must be sprite or public")
  end
  if b.config ~= nil then
    if type(b.config) ~= "table" then return bad("config must be an object") end
    for _, k in ipairs({ "ram_mb", "cpus", "storage_gb" }) do
      local v = b.config[k]
      if v ~= nil and (math.type(v) ~= "integer" or v <= 0) then
        return bad("config." .. k .. " must be a positive integer")
      end
    end
  end
  if self.sprites[b.name] then
    return self:deny(req, 400, { error = "bad_request",
                                 message = "sprite with name " .. b.name .. " already exists" })
  end
  local lh, err
  if not self.canned_exec then
    lh, err = lp.create(self.backend, { env = b.environment or {} })
    if not lh then return answer(500, { error = "internal", message = tostring(err) }) end
    assert(lp.mkdir(self.backend, lh, M.HOME, { parents = true }))
  end
  local s = { name = b.name, uuid = uuid(), created_at = os.time(), labels = b.labels or {},
              environment = b.environment or {}, config = b.config,
              url_settings = { auth = (us and us.auth) or "sprite" },
              wait_for_capacity = b.wait_for_capacity == true,
              local_handle = lh, sessions = {}, checkpoints = {}, ck_seq = 0 }
  self.sprites[b.name] = s
  self.created = self.created + 1
  return answer(201, self:info(s))
end

function Fake:list(req)
  local q = M.query(req.query)
  local max = 50
  if q.max_results then
    max = math.tointeger(tonumber(q.max_results))
    if not max or max < 1 or max > 1000 then
      return self:refuse(req, 400, { error = "bad_request", message = "max_results: 1..1000" })
    end
  end
  max = math.min(max, self.page_size or max)
  local names = {}
  for name in pairs(self.sprites) do
    if (not q.prefix or name:sub(1, #q.prefix) == q.prefix)
       and (not q.continuation_token or name > q.continuation_token) then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  local page, counts = json.array(), { running = 0, warm = 0, cold = 0 }
  for _, s in pairs(self.sprites) do
    local st = self:status_of(s)
    counts[st] = counts[st] + 1
  end
  for i = 1, math.min(max, #names) do page[i] = self:info(self.sprites[names[i]]) end
  local more = #names > max
  self.list_pages = self.list_pages + 1
  local org = { name = "fake-org", running = counts.running, warm = counts.warm,
                cold = counts.cold, running_limit = 3, warm_limit = 10 }
  local body = { sprites = page, has_more = more,
                 next_continuation_token = more and names[max] or nil, org = org }
  for k, v in pairs(org) do body[k] = v end                  -- the JS SDK reads them top-level
  return answer(200, body)
end

function Fake:kill(name)
  local s = self.sprites[name]
  if not s then return end
  self.sprites[name] = nil
  for _, x in pairs(s.sessions) do if not x.exited then x.p:kill("KILL") end end
  if s.local_handle then lp.destroy(self.backend, s.local_handle) end
  if s.ck_dir then sandlot.proc.run({ "rm", "-rf", s.ck_dir }) end
end

-- Files --------------------------------------------------------------------------------------

local function perms(e)
  return ("%04o"):format(e.mode or 0)
end

-- The local sandbox's entry for an absolute path, or nil.
function M.stat(f, s, abs)
  if abs == "/" then return { name = "", type = "directory", size = 0, mode = 493, mtime = 0 } end
  local parent, name = abs:match("^(.*)/([^/]+)$")
  for _, e in ipairs(lp.ls(f.backend, s.local_handle, parent == "" and "/" or parent) or {}) do
    if e.name == name then return e end
  end
end

local function entry(abs, e)
  return { name = e.name, path = abs, type = e.type == "directory" and "directory" or "file",
           size = e.size or 0, mode = perms(e), modTime = rfc3339(e.mtime or 0),
           isDir = e.type == "directory" }
end

function Fake:fs(req, s, what)
  local q = M.query(req.query)
  local function fserr(status, msg, code, path, deny)
    local body = { error = msg, code = code, path = path }
    if deny then return self:deny(req, status, body) end
    return self:refuse(req, status, body)
  end
  if not q.path or q.path == "" or not q.workingDir or q.workingDir == "" then
    return fserr(400, "path and workingDir are required")
  end
  if q.workingDir:sub(1, 1) ~= "/" then return fserr(400, "workingDir must be absolute") end
  local abs = fs.path(q.workingDir, q.path)
  if not abs then return fserr(400, "path escapes /", "EINVAL", q.path) end
  self:touch(s)
  local e = M.stat(self, s, abs)
  local m = req.method
  if what == "read" and m == "GET" then
    if not e then return fserr(404, "no such file or directory", "ENOENT", abs, true) end
    if e.type == "directory" then return fserr(400, "is a directory", "EISDIR", abs, true) end
    local data = assert(lp.read_file(self.backend, s.local_handle, abs))
    return { status = 200, headers = { ["Content-Type"] = "application/octet-stream" },
             body = data }
  elseif what == "write" and m == "PUT" then
    local mode
    if q.mode then
      if not q.mode:match("^0?[0-7][0-7][0-7]$") then
        return fserr(400, "mode must be an octal string such as 0644")
      end
      mode = tonumber(q.mode, 8)
    end
    if e and e.type == "directory" then return fserr(400, "is a directory", "EISDIR", abs, true) end
    local parent = abs:match("^(.*)/[^/]+$")
    parent = parent == "" and "/" or parent
    local pe = M.stat(self, s, parent)
    local parents = q.mkdirParents == "true" or q.mkdir == "true"
    if not pe and not parents then
      return fserr(404, "no such file or directory", "ENOENT", parent, true)
    end
    if pe and pe.type ~= "directory" then
      return fserr(400, "not a directory", "ENOTDIR", parent, true)
    end
    local ok, err = lp.write_file(self.backend, s.local_handle, abs, req.body, { mode = mode })
    if not ok then return fserr(500, tostring(err)) end
    return answer(200, { path = abs, size = #req.body, mode = q.mode or "0644" })
  elseif what == "list" and m == "GET" then
    if not e then return fserr(404, "no such file or directory", "ENOENT", abs, true) end
    local entries = json.array()
    if e.type ~= "directory" then
      entries[1] = entry(abs, e)
    else
      for _, x in ipairs(assert(lp.ls(self.backend, s.local_handle, abs))) do
        entries[#entries + 1] = entry((abs == "/" and "" or abs) .. "/" .. x.name, x)
      end
    end
    return answer(200, { path = abs, entries = entries, count = #entries })
  elseif what == "delete" and m == "DELETE" then
    if not e then return fserr(404, "no such file or directory", "ENOENT", abs, true) end
    local recursive = q.recursive == "true"
    if e.type == "directory" and not recursive
       and #assert(lp.ls(self.backend, s.local_handle, abs)) > 0 then
      return fserr(400, "directory not empty", "ENOTEMPTY", abs, true)
    end
    local ok, err = lp.rm(self.backend, s.local_handle, abs, { recursive = true })
    if not ok then return fserr(500, tostring(err)) end
    return answer(200, { deleted = json.array({ abs }), count = 1 })
  end
  return self:refuse(req, 404, { error = "not_found",
                                 message = "no route " .. m .. " /fs/" .. what })
end

-- Checkpoints --------------------------------------------------------------------------------
-- A checkpoint is a copy of the local sandbox's root/ (cp -a); restore puts it back.

local function rootpath(f, s)
  return f.backend.config.state_dir .. "/" .. s.local_handle.id .. "/root"
end

local function ck_json(c)
  return { id = c.id, create_time = rfc3339(c.created_at), comment = c.comment,
           is_auto = false }
end

local function progress_body(lines)
  local i = 0
  return function()
    i = i + 1
    if lines[i] == nil then return nil end
    return ndjson.encode(lines[i])
  end
end

function Fake:checkpoint(req, s, rest)
  local m = req.method
  local sh = function(script, ...)
    return assert(sandlot.proc.run({ "sh", "-c", script, "sh", ... }, { timeout = 120 }))
  end
  if rest == "/checkpoint" and m == "POST" then
    local b, refusal = self:json_body(req, true)
    if not b then return refusal end
    if b.comment ~= nil and type(b.comment) ~= "string" then
      return self:refuse(req, 400, { error = "bad_request", message = "comment must be a string" })
    end
    s.ck_dir = s.ck_dir or (self.dir .. "/ck-" .. s.uuid)
    s.ck_seq = s.ck_seq + 1
    local cid = "v" .. s.ck_seq
    local r = sh('mkdir -p "$2" && cp -a "$1" "$2/$3"', rootpath(self, s), s.ck_dir, cid)
    if r.exit_code ~= 0 then
      return answer(200, progress_body({ { type = "error", error = r.stderr } }),
                    { ["Content-Type"] = "application/x-ndjson" })
    end
    s.checkpoints[#s.checkpoints + 1] = { id = cid, created_at = os.time(), comment = b.comment }
    return { status = 200, headers = { ["Content-Type"] = "application/x-ndjson" },
             body = progress_body({
               { type = "info", data = "Creating checkpoint..." },
               { type = "info", data = "Checkpoint " .. cid .. " created" } }) }
  end
  if rest == "/checkpoints" and m == "GET" then
    local out = json.array()
    for i = #s.checkpoints, 1, -1 do out[#out + 1] = ck_json(s.checkpoints[i]) end
    return answer(200, out)
  end
  local cid, what = rest:match("^/checkpoints/([^/]+)(.*)$")
  local c
  for _, x in ipairs(s.checkpoints) do if x.id == cid then c = x end end
  if cid and not c then
    return self:deny(req, 404, { error = "not_found", message = "checkpoint not found" })
  end
  if c and what == "" and m == "GET" then return answer(200, ck_json(c)) end
  if c and what == "/restore" and m == "POST" then
    for _, x in pairs(s.sessions) do if not x.exited then x.p:kill("KILL") end end
    local root = rootpath(self, s)
    local r = sh('find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a "$2/$3/." "$1/"',
                 root, s.ck_dir, cid)
    local lines = { { type = "info", data = "Restoring checkpoint " .. cid .. "..." } }
    if r.exit_code ~= 0 then lines[#lines + 1] = { type = "error", error = r.stderr }
    else lines[#lines + 1] = { type = "info", data = "Restored " .. cid } end
    return { status = 200, headers = { ["Content-Type"] = "application/x-ndjson" },
             body = progress_body(lines) }
  end
  return self:refuse(req, 404, { error = "not_found",
                                 message = "no route " .. m .. " " .. req.path })
end

-- Routing ------------------------------------------------------------------------------------

local function apply_fault(f)
  if f.hang then sandlot.sleep(f.hang) end
  if f.drop then return { drop = true } end
  if f.chunks then                        -- a body of these chunks, one HTTP chunk each
    local i = 0
    return { status = f.status or 200, headers = { ["Content-Type"] = "application/octet-stream" },
             body = function() i = i + 1; return f.chunks[i] end }
  end
  if f.body then return answer(f.status or 200, f.body, { ["Content-Type"] = f.content_type }) end
  if f.status then
    local h = {}
    if f.retry_after then h["Retry-After"] = tostring(f.retry_after) end
    return answer(f.status, { error = f.error or "injected", message = f.message or "injected" },
                  h)
  end
end

function Fake:handle(req)
  local route = req.method .. " " .. req.path
  if not self.canned_exec then                -- a bench's thousands of calls: no log
    self.requests[#self.requests + 1] = { route = route, query = req.query, body = req.body,
                                          headers = req.headers }
  end
  local f = self:fault(route)
  if f then
    local a = apply_fault(f)
    if a then return a end
  end
  local auth = req.headers.authorization
  if auth == nil or auth ~= "Bearer " .. self.token then
    return self:refuse(req, 401, { error = "unauthorized",
                                   message = auth and "invalid token" or "missing token" })
  end
  local p, m = req.path, req.method
  if p == "/v1/sprites" and m == "POST" then return self:create(req) end
  if p == "/v1/sprites" and m == "GET" then return self:list(req) end
  local name, rest = p:match("^/v1/sprites/([^/]+)(.*)$")
  if not name then
    return self:refuse(req, 404, { error = "not_found", message = "no route " .. route })
  end
  name = unescape(name)
  local s = self.sprites[name]
  if not s then
    return self:deny(req, 404, { error = "not_found", message = "sprite not found: " .. name })
  end
  if rest == "" and m == "GET" then return answer(200, self:info(s)) end
  if rest == "" and m == "DELETE" then
    self:kill(name)
    return answer(204)
  end
  local what = rest:match("^/fs/(%a+)$")
  if what then return self:fs(req, s, what) end
  if rest == "/checkpoint" or rest:match("^/checkpoints") then
    return self:checkpoint(req, s, rest)
  end
  if rest == "/exec" or rest:match("^/exec/") then return self:exec(req, s, rest) end
  local svc = rest:match("^/services(.*)$")
  if svc then return self:services(req, s, svc) end
  return self:refuse(req, 404, { error = "not_found", message = "no route " .. route })
end

---A fake without a server: opts = {token, dir, idle (s a used sprite stays running),
---page_size (list pages at most), canned_exec = fn(command) -> {exit_code, stdout, stderr}
---(bench figure 7: no local sandbox behind a sprite, every exec answers fn's result at once;
---file and checkpoint calls then fail)}.
function M.new(opts)
  opts = opts or {}
  local dir = assert(opts.dir, "spec.fakes.sprites: opts.dir is required")
  local f = setmetatable({
    token = opts.token or ("fake-sprites-" .. id.hex(20)), sprites = {}, faults = {},
    rejected = {}, denied = {}, requests = {}, created = 0, list_pages = 0, dir = dir,
    idle = opts.idle or 30, page_size = opts.page_size, next_session = 100,
    canned_exec = opts.canned_exec,
    backend = { name = "sprites-fake", config = { state_dir = dir .. "/local",
                                                  isolation = "namespaces" },
                warn = function() end },
  }, Fake)
  require("spec.fakes.sprites_exec").install(f, M)
  return f
end

---Starts the fake on a loopback server: {url, token, fake, rejected(), stop()}.
function M.start(opts)
  opts = opts or {}
  local tmp = require("spec.helper").tmpdir("sprites")
  local f = M.new({ token = opts.token, dir = tmp, idle = opts.idle, page_size = opts.page_size,
                    canned_exec = opts.canned_exec })
  local srv = assert(sandlot.http.serve{ host = "127.0.0.1", port = opts.port or 0,
                                         max_body = opts.max_body or 512 * 1024 * 1024,
                                         handler = function(req) return f:handle(req) end })
  return {
    url = srv.url, token = f.token, fake = f,
    rejected = base.rejected_lines(f),     -- for spec/fakes/check/run.lua: one line each
    stop = function()
      for name in pairs(f.sprites) do f:kill(name) end
      srv:close()
      sandlot.proc.run({ "rm", "-rf", tmp })
    end,
  }
end

return M
