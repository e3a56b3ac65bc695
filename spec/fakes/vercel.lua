-- spec/fakes/vercel.lua: a strict fake of the Vercel Sandbox API, per
-- ../shared/provider-apis/vercel.md ("Strict fake"), on one sandlot.http.serve server. Each
-- sandbox's commands and files are real: a sandbox of the local provider (bubblewrap, its own
-- /) with /vercel/sandbox as the session cwd; its filesystem outlives its sessions, and a
-- snapshot is a .tar.gz of /vercel that a sandbox created from it starts with.
-- It rejects what Vercel rejects: a missing or wrong `Authorization: Bearer` (401 / 403), no
-- `teamId` query, create without projectId, runtime and image together, failoverRegions holding
-- region, wrong JSON types, a JSON body without application/json, fs/write without
-- application/gzip or with a relative x-cwd or an entry escaping it; it answers 410 for a
-- stopped session (sandbox_stopped) and for a missing snapshot (snapshot_not_found), 404 for a
-- missing file. Streams are `application/x-ndjson`: {command, exitCode: null} first, the log
-- lines, {command, exitCode: N} last. Output that is not UTF-8 is sent as a JSON string would
-- carry it: invalid bytes become U+FFFD. A GET or empty POST without the SDK's
-- `Content-Type: application/json` is accepted but noted in fake.quirks.
-- Faults: fake:inject{route = "POST /v2/sandboxes/sessions/" (a prefix or a Lua pattern),
-- status, code, message, retry_after, hang = s, drop = true, body = raw text (with
-- content_type and status, default 200), times = n}.
--   local f = require("spec.fakes.vercel").start{}
--   -> f.url, f.token, f.team, f.project, f.fake, f.rejected(), f.stop()
-- GET {url}/_fake/config (no auth) tells team and project to check-fakes' SDK script.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local tar = require("sandlot.wire.tar")
local fs = require("sandlot.fs")
local lp = require("providers.local")
local id = require("sandlot.id")

local base = require("spec.fakes._base")

local M = {}

M.DEFAULT_TIMEOUT = 300000                  -- ms: a session's default
M.MAX_TIMEOUT = 5 * 3600 * 1000             -- ms: the plan's limit here (Pro: 24 h)
M.CWD = "/vercel/sandbox"


local Fake = {}
Fake.__index = Fake

local function now_ms() return os.time() * 1000 end

local unescape = base.unescape
local function query(raw) return base.query(raw, true) end   -- {key = {values...}}

local answer = base.answer
M.answer = answer

local function err_body(code, message) return { error = { code = code, message = message } } end

---A refusal of a malformed request: logged in fake.rejected.
function Fake:refuse(req, status, code, message)
  self:rejects(req, status, message)
  return answer(status, err_body(code, message))
end

---The service's word on the world (a stopped session, a missing file): fake.denied.
function Fake:deny(req, status, code, message)
  self:denies(req, status, { code = code })
  return answer(status, err_body(code, message))
end

base.install(Fake)                          -- fake:inject{route, ...}, fake:fault(route)

-- Text as a JSON string carries it: invalid UTF-8 becomes U+FFFD. `carry` holds an incomplete
-- sequence from the end of the previous chunk.
local function as_text(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local ok, n = pcall(utf8.codepoint, s, i)
    if ok then
      local ch = utf8.char(n)
      out[#out + 1] = ch
      i = i + #ch
    else
      out[#out + 1] = "\u{FFFD}"
      i = i + 1
    end
  end
  return table.concat(out)
end

local function split_incomplete(s)
  for back = 1, math.min(3, #s) do
    local b = s:byte(#s - back + 1)
    if b >= 0xC0 then
      local need = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
      if need > back then return s:sub(1, #s - back), s:sub(#s - back + 1) end
      break
    elseif b < 0x80 then break end
  end
  return s, ""
end

-- Payloads -----------------------------------------------------------------------------------

local function session_json(s)
  return { id = s.id, memory = 2048, vcpus = s.vcpus, region = s.region, timeout = s.timeout,
           status = s.status, requestedAt = s.created_at, startedAt = s.started_at,
           stoppedAt = s.stopped_at, createdAt = s.created_at, updatedAt = s.updated_at,
           cwd = M.CWD, sourceSnapshotId = s.source_snapshot }
end

local function routes_json(sb)
  local out = json.array()
  for _, p in ipairs(sb.ports) do
    local sub = ("%s-%d"):format(sb.name:lower():gsub("[^%w%-]", "-"), p)
    out[#out + 1] = { url = "https://" .. sub .. ".vercel.run", subdomain = sub, port = p }
  end
  return out
end

function Fake:sandbox_json(sb)
  local s = self.sessions[sb.session]
  return { name = sb.name, persistent = sb.persistent, region = sb.region, vcpus = sb.vcpus,
           memory = 2048 * sb.vcpus, image = sb.image, runtime = sb.runtime,
           timeout = sb.timeout, createdAt = sb.created_at, updatedAt = sb.updated_at,
           currentSessionId = sb.session, currentSnapshotId = sb.snapshot,
           status = s and s.status or "stopped", cwd = M.CWD, tags = sb.tags }
end

function Fake:full(sb, resumed)
  return { sandbox = self:sandbox_json(sb), session = session_json(self.sessions[sb.session]),
           routes = routes_json(sb), resumed = resumed }
end

local function snapshot_json(sn)
  return { id = sn.id, sourceSessionId = sn.session, region = sn.region, status = sn.status,
           sizeBytes = #sn.data, createdAt = sn.created_at, updatedAt = sn.created_at }
end

local function command_json(r, finished)
  local o = { id = r.id, name = r.name, args = r.args, cwd = r.cwd, sessionId = r.session,
              startedAt = r.started_at, exitCode = json.null }
  if r.exit_code ~= nil then
    o.exitCode, o.durationMs = r.exit_code, r.duration
  elseif finished then
    o.exitCode = json.null
  end
  return o
end

-- Validation ---------------------------------------------------------------------------------

local function is_map_of_strings(v)
  if v == nil then return true end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then return false end
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "string" then return false end
  end
  return true
end

local function is_list_of(v, t)
  if v == nil then return true end
  if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then return false end
  for _, x in ipairs(v) do
    if t == "integer" and math.type(x) ~= "integer" then return false end
    if t == "string" and type(x) ~= "string" then return false end
  end
  return true
end

-- The JSON body: refused unless application/json and an object; an empty body is {}.
function Fake:body(req)
  if req.body == "" then return {} end
  local ct = (req.headers["content-type"] or ""):lower()
  if not ct:find("^application/json") then
    return nil, self:refuse(req, 400, "bad_request", "expected application/json, got " .. ct)
  end
  local v = json.decode(req.body)
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    return nil, self:refuse(req, 400, "bad_request", "the body is not a JSON object")
  end
  return v
end

function Fake:check_timeout(req, v)
  if v == nil then return true end
  if math.type(v) ~= "integer" or v <= 0 then
    return nil, self:refuse(req, 400, "bad_request", "timeout must be a positive integer (ms)")
  end
  if v > self.max_timeout then
    return nil, self:refuse(req, 400, "bad_request", ("timeout exceeds the plan's maximum " ..
                                                      "of %d ms"):format(self.max_timeout))
  end
  return true
end

-- Sandboxes and sessions ---------------------------------------------------------------------

-- Stops sessions past their deadline.
function Fake:sweep()
  local t = now_ms()
  for _, s in pairs(self.sessions) do
    if s.status == "running" and (s.started_at + s.timeout) <= t then self:halt(s, "stopped") end
  end
end

function Fake:halt(s, status)
  s.status, s.stopped_at, s.updated_at = status, now_ms(), now_ms()
  for _, r in pairs(s.commands) do r.kill() end
end

function Fake:start_session(sb)
  local t = now_ms()
  local s = { id = "se_" .. id.hex(12), sandbox = sb.name, status = "running", vcpus = sb.vcpus,
              region = sb.region, timeout = sb.timeout, created_at = t, started_at = t,
              updated_at = t, commands = {}, source_snapshot = sb.snapshot }
  self.sessions[s.id] = s
  sb.session = s.id
  self.session_count = self.session_count + 1
  return s
end

function Fake:create(req)
  local b, refusal = self:body(req)
  if not b then return refusal end
  if type(b.projectId) ~= "string" or b.projectId == "" then
    return self:refuse(req, 400, "bad_request", "projectId is required")
  end
  if b.projectId ~= self.project then
    return self:refuse(req, 404, "not_found", "Project not found")
  end
  if b.runtime ~= nil and b.image ~= nil then
    return self:refuse(req, 400, "bad_request", "runtime and image cannot be used together")
  end
  if b.failoverRegions ~= nil then
    if not is_list_of(b.failoverRegions, "string") then
      return self:refuse(req, 400, "bad_request", "failoverRegions must be a list of regions")
    end
    for _, r in ipairs(b.failoverRegions) do
      if r == (b.region or "iad1") then
        return self:refuse(req, 400, "bad_request", "failoverRegions must not include region")
      end
    end
  end
  if not is_map_of_strings(b.env) or not is_map_of_strings(b.tags) then
    return self:refuse(req, 400, "bad_request", "env and tags are maps of strings")
  end
  if not is_list_of(b.ports, "integer") then
    return self:refuse(req, 400, "bad_request", "ports must be a list of integers")
  end
  for _, k in ipairs({ "persistent" }) do
    if b[k] ~= nil and type(b[k]) ~= "boolean" then
      return self:refuse(req, 400, "bad_request", k .. " must be a boolean")
    end
  end
  for _, k in ipairs({ "name", "runtime", "image", "region" }) do
    if b[k] ~= nil and type(b[k]) ~= "string" then
      return self:refuse(req, 400, "bad_request", k .. " must be a string")
    end
  end
  local ok, terr = self:check_timeout(req, b.timeout)
  if not ok then return terr end
  if b.name and self.sandboxes[b.name] then
    return self:refuse(req, 409, "conflict", "a sandbox named " .. b.name .. " exists")
  end
  local restore
  if b.source ~= nil then
    if type(b.source) ~= "table" or type(b.source.type) ~= "string" then
      return self:refuse(req, 400, "bad_request", "source must be an object with a type")
    end
    if b.source.type == "snapshot" then
      local sn = self.snapshots[b.source.snapshotId or ""]
      if not sn or sn.status ~= "created" then
        return self:deny(req, 410, "snapshot_not_found",
                         "Snapshot not found: " .. tostring(b.source.snapshotId))
      end
      restore = sn
    else
      return self:refuse(req, 400, "bad_request", "the fake only restores snapshots")
    end
  end
  local network = b.networkPolicy
  local env = {}
  for k, x in pairs(b.env or {}) do env[k] = x end
  local lh, err
  if not self.canned_exec then
    lh, err = lp.create(self.backend, { env = env, network = type(network) == "table" and
                                         network.mode == "deny-all" and "none" or "all" })
    if not lh then return self:refuse(req, 500, "internal_server_error", tostring(err)) end
    assert(lp.mkdir(self.backend, lh, M.CWD, { parents = true }))
  end
  if restore then
    local r = assert(lp.exec(self.backend, lh, { "tar", "-xzf", "-", "-C", "/" },
                             { stdin = restore.data }))
    assert(r.exit_code == 0, r.stderr)
  end
  local t = now_ms()
  local sb = { name = b.name or ("sbx-" .. id.hex(10)), persistent = b.persistent ~= false,
               region = b.region or "iad1", vcpus = (b.resources or {}).vcpus or 2,
               image = b.image, runtime = b.runtime, ports = b.ports or {},
               timeout = b.timeout or M.DEFAULT_TIMEOUT, tags = b.tags, created_at = t,
               updated_at = t, env = env, local_handle = lh,
               snapshot = restore and restore.id or nil, network = network }
  self.sandboxes[sb.name] = sb
  self:start_session(sb)
  self.created = self.created + 1
  return answer(200, self:full(sb, false))
end

function Fake:kill_sandbox(name)
  local sb = self.sandboxes[name]
  if not sb then return end
  local s = self.sessions[sb.session]
  if s and s.status == "running" then self:halt(s, "stopped") end
  self.sandboxes[name] = nil
  if sb.local_handle then lp.destroy(self.backend, sb.local_handle) end
end

function Fake:list(req, q)
  if not q.project then return self:refuse(req, 400, "bad_request", "project is required") end
  if q.project[1] ~= self.project then return self:refuse(req, 404, "not_found", "no project") end
  local limit = tonumber(q.limit and q.limit[1] or "50")
  if not limit or limit < 1 or limit > 100 then
    return self:refuse(req, 400, "bad_request", "limit must be 1..100")
  end
  local want = {}
  for _, tag in ipairs(q.tags or {}) do
    local k, v = tag:match("^([^:]+):(.*)$")
    if not k then return self:refuse(req, 400, "bad_request", "tags are key:value") end
    want[k] = v
  end
  local names = {}
  for name, sb in pairs(self.sandboxes) do
    local ok = true
    for k, v in pairs(want) do ok = ok and (sb.tags or {})[k] == v end
    if ok and (not q.cursor or name > q.cursor[1]) then names[#names + 1] = name end
  end
  table.sort(names)
  limit = math.min(limit, self.page_size or limit)
  local page = json.array()
  for i = 1, math.min(limit, #names) do page[i] = self:sandbox_json(self.sandboxes[names[i]]) end
  self.list_pages = self.list_pages + 1
  return answer(200, { sandboxes = page, pagination = {
    count = #page, next = #names > limit and names[limit] or json.null } })
end

function Fake:on_sandbox(req, q, name, rest)
  local sb = self.sandboxes[name]
  if not q.projectId or q.projectId[1] ~= self.project then
    return self:refuse(req, 400, "bad_request", "projectId is required")
  end
  if not sb then return self:deny(req, 404, "not_found", "Sandbox not found: " .. name) end
  if rest == "" and req.method == "GET" and q.resume and q.resume[1] == "true" then
    local s = self.sessions[sb.session]
    if s.status ~= "running" then
      self:start_session(sb)
      self.resumes = self.resumes + 1
      return answer(200, self:full(sb, true))
    end
  end
  if rest == "" and req.method == "GET" then return answer(200, self:full(sb, false)) end
  if rest == "" and req.method == "DELETE" then
    local out = { sandbox = self:sandbox_json(sb) }
    self:kill_sandbox(name)
    return answer(200, out)
  end
  if rest == "" and req.method == "PATCH" then
    local b, refusal = self:body(req)
    if not b then return refusal end
    if not is_list_of(b.ports, "integer") or not is_map_of_strings(b.tags) then
      return self:refuse(req, 400, "bad_request", "ports are integers, tags strings")
    end
    local ok, terr = self:check_timeout(req, b.timeout)
    if not ok then return terr end
    if b.ports then sb.ports = b.ports end
    if b.tags then sb.tags = b.tags end
    if b.timeout then sb.timeout = b.timeout end
    if b.currentSnapshotId then sb.snapshot = b.currentSnapshotId end
    sb.updated_at = now_ms()
    return answer(200, { sandbox = self:sandbox_json(sb),
                         routes = b.ports and routes_json(sb) or nil })
  end
  return self:refuse(req, 404, "not_found", "no route " .. req.method .. " " .. req.path)
end

-- Commands -----------------------------------------------------------------------------------
-- A command record: its events so far (log lines, then the end) and whether it ended; streams
-- read them from a position of their own, polling for more.

local function push(r, ev) r.events[#r.events + 1] = ev end

local function pump(r)
  local carry = { stdout = "", stderr = "" }
  while true do
    local stream, data = r.p:read()
    if not stream then break end
    local text, rest = split_incomplete(carry[stream] .. data)
    carry[stream] = rest
    if text ~= "" then push(r, { stream = stream, data = as_text(text) }) end
  end
  for s, rest in pairs(carry) do
    if rest ~= "" then push(r, { stream = s, data = as_text(rest) }) end
  end
  local res = r.p:wait()
  if r.stopped then
    push(r, { stream = "error", data = { code = "sandbox_stopped",
                                         message = "the sandbox was stopped" } })
  end
  r.exit_code = res and (res.signal and 128 + res.signal or res.exit_code) or 1
  r.duration = now_ms() - r.started_at
  if r.deadline then r.deadline:cancel() end
  r.ended = true
end

local function stream_body(r, with_logs, with_command)
  local i, sent_first, done = 1, not with_command, false
  return function()
    if done then return nil end
    if not sent_first then
      sent_first = true
      return ndjson.encode({ command = command_json(r) })
    end
    while true do
      local ev = r.events[i]
      if ev then
        i = i + 1
        if ev.stream == "error" then
          done = true
          return ndjson.encode(ev)
        end
        if with_logs then return ndjson.encode(ev) end
      elseif r.ended then
        done = true
        if with_command then return ndjson.encode({ command = command_json(r) }) end
        return nil
      else
        sandlot.sleep(0.01)
      end
    end
  end
end

local RUN = { command = "string", args = "strings", cwd = "string", env = "map", sudo = "boolean",
              wait = "boolean", logs = "boolean", timeout = "integer" }

function Fake:run(req, s)
  local b, refusal = self:body(req)
  if not b then return refusal end
  for k, t in pairs(RUN) do
    local v = b[k]
    local ok = v == nil or (t == "string" and type(v) == "string")
               or (t == "boolean" and type(v) == "boolean")
               or (t == "integer" and math.type(v) == "integer" and v > 0)
               or (t == "strings" and is_list_of(v, "string"))
               or (t == "map" and is_map_of_strings(v))
    if not ok then return self:refuse(req, 400, "bad_request", k .. " has the wrong type") end
  end
  if type(b.command) ~= "string" or b.command == "" then
    return self:refuse(req, 400, "bad_request", "command is required")
  end
  local sb = self.sandboxes[s.sandbox]
  local cwd = b.cwd and fs.path(M.CWD, b.cwd) or M.CWD
  local env = { HOME = "/home/vercel-sandbox", USER = "vercel-sandbox",
                PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }
  for k, v in pairs(sb.env or {}) do env[k] = v end
  for k, v in pairs(b.env or {}) do env[k] = v end
  local argv = { b.command }
  for _, a in ipairs(b.args or {}) do argv[#argv + 1] = a end
  local p, err
  if self.canned_exec then
    p = require("spec.fakes.canned").process(self.canned_exec(b.command, b.args or {}))
  else
    p, err = lp.spawn(self.backend, sb.local_handle, argv, { env = env, cwd = cwd })
  end
  if not p then return self:deny(req, 400, "bad_request", tostring(err)) end
  p:close_stdin()
  local r = { id = "cmd_" .. id.hex(12), name = b.command, args = json.array(b.args or {}),
              cwd = cwd, session = s.id, started_at = now_ms(), events = {}, p = p }
  function r.kill()
    if not r.ended then
      r.stopped = true
      p:kill("KILL")
    end
  end
  s.commands[r.id] = r
  self.commands = self.commands + 1
  if b.timeout then
    r.deadline = sandlot.spawn(function()
      if sandlot.sleep(b.timeout / 1000) and not r.ended then p:kill("KILL") end
    end)
  end
  if self.canned_exec then
    pump(r)                   -- a canned process never waits: its events are there at once
  else
    sandlot.spawn(pump, r)
  end
  if b.wait then
    return { status = 200, headers = { ["Content-Type"] = "application/x-ndjson" },
             body = stream_body(r, b.logs == true, true) }
  end
  return answer(200, { command = command_json(r) })
end

function Fake:on_command(req, q, s, cid, rest)
  local r = s.commands[cid]
  if not r then return self:deny(req, 404, "not_found", "Command not found: " .. cid) end
  if rest == "" and req.method == "GET" then
    if q.wait and q.wait[1] == "true" then
      while not r.ended do sandlot.sleep(0.02) end
    end
    return answer(200, { command = command_json(r) })
  end
  if rest == "/logs" and req.method == "GET" then
    return { status = 200, headers = { ["Content-Type"] = "application/x-ndjson" },
             body = stream_body(r, true, false) }
  end
  if rest == "/kill" and req.method == "POST" then
    local b, refusal = self:body(req)
    if not b then return refusal end
    if math.type(b.signal) ~= "integer" then
      return self:refuse(req, 400, "bad_request", "signal must be a number")
    end
    if not r.ended then r.p:kill(b.signal) end
    return answer(200, { command = command_json(r) })
  end
  return self:refuse(req, 404, "not_found", "no route " .. req.method .. " " .. req.path)
end

-- Files --------------------------------------------------------------------------------------

local function stat(f, sb, abs)
  if abs == "/" then return { type = "directory" } end
  local parent, name = abs:match("^(.*)/([^/]+)$")
  for _, e in ipairs(lp.ls(f.backend, sb.local_handle, parent == "" and "/" or parent) or {}) do
    if e.name == name then return e end
  end
end

function Fake:fs(req, s, op)
  local sb = self.sandboxes[s.sandbox]
  if op == "write" then
    local ct = (req.headers["content-type"] or ""):lower()
    if ct ~= "application/gzip" then
      return self:refuse(req, 400, "bad_request", "fs/write wants application/gzip, got " .. ct)
    end
    local dir = req.headers["x-cwd"]
    if type(dir) ~= "string" or dir:sub(1, 1) ~= "/" then
      return self:refuse(req, 400, "bad_request", "x-cwd must be an absolute path")
    end
    local entries, terr = tar.list(req.body, { gzip = true, max_size = 1 << 31 })
    if not entries then return self:refuse(req, 400, "bad_request", terr.message) end
    for _, e in ipairs(entries) do
      local abs = fs.path(dir, e.name)
      local inside = abs and (dir == "/" or abs == dir or abs:sub(1, #dir + 1) == dir .. "/")
      if not inside or e.name:sub(1, 1) == "/" or e.name:find("%.%.") then
        return self:refuse(req, 400, "bad_request", "entry escapes x-cwd: " .. e.name)
      end
    end
    for _, e in ipairs(entries) do
      local abs = fs.path(dir, e.name)
      if e.type == "directory" then
        assert(lp.mkdir(self.backend, sb.local_handle, abs, { parents = true }))
      elseif e.type == "file" then
        local st = stat(self, sb, abs)
        if st and st.type == "directory" then
          return self:deny(req, 400, "bad_request", abs .. " is a directory")
        end
        local up = abs:match("^(.*)/[^/]+$")
        if up and up ~= "" then lp.mkdir(self.backend, sb.local_handle, up, { parents = true }) end
        local ok, werr = lp.write_file(self.backend, sb.local_handle, abs, e.data,
                                       { mode = e.mode })
        if not ok then return self:deny(req, 400, "bad_request", tostring(werr)) end
      end
    end
    self.writes = self.writes + 1
    return answer(200, {})
  end
  local b, refusal = self:body(req)
  if not b then return refusal end
  if type(b.path) ~= "string" or b.path == "" or (b.cwd ~= nil and type(b.cwd) ~= "string") then
    return self:refuse(req, 400, "bad_request", "path is required")
  end
  local abs = fs.path(b.cwd or M.CWD, b.path)
  if not abs then return self:refuse(req, 400, "bad_request", "bad path") end
  local st = stat(self, sb, abs)
  if op == "read" then
    if not st then return self:deny(req, 404, "file_not_found", "File not found: " .. abs) end
    if st.type == "directory" then
      return self:deny(req, 400, "bad_request", abs .. " is a directory")
    end
    local data = assert(lp.read_file(self.backend, sb.local_handle, abs))
    return { status = 200, headers = { ["Content-Type"] = "application/octet-stream" },
             body = data }
  end
  if op == "mkdir" then
    if st then return self:deny(req, 400, "bad_request", abs .. " exists") end
    local up = abs:match("^(.*)/[^/]+$")
    local ust = stat(self, sb, up == "" and "/" or up)
    if not ust then return self:deny(req, 404, "not_found", "parent does not exist") end
    assert(lp.mkdir(self.backend, sb.local_handle, abs, {}))
    return answer(200, {})
  end
  return self:refuse(req, 404, "not_found", "no route " .. req.path)
end

-- Sessions -----------------------------------------------------------------------------------

function Fake:snapshot(s)
  local sb = self.sandboxes[s.sandbox]
  for _, r in pairs(s.commands) do r.kill() end
  local r = assert(lp.exec(self.backend, sb.local_handle,
                           { "tar", "-czf", "-", "-C", "/", "vercel" }, { max_output = 1 << 31 }))
  assert(r.exit_code == 0, r.stderr)
  local sn = { id = "snap_" .. id.hex(12), session = s.id, sandbox = sb.name, region = sb.region,
               status = "created", data = r.stdout, created_at = now_ms() }
  self.snapshots[sn.id] = sn
  sb.snapshot = sn.id
  self:halt(s, "stopped")               -- "this sandbox will be stopped as part of the snapshot"
  s.snapshotted_at = now_ms()
  return sn
end

function Fake:on_session(req, q, sid, rest)
  self:sweep()
  local s = self.sessions[sid]
  if not s or not self.sandboxes[s.sandbox] then
    return self:deny(req, 404, "not_found", "Session not found: " .. sid)
  end
  local m = req.method
  if rest == "" and m == "GET" then
    return answer(200, { session = session_json(s),
                         routes = routes_json(self.sandboxes[s.sandbox]) })
  end
  if rest == "/stop" and m == "POST" then
    if s.status == "running" then self:halt(s, "stopped") end
    return answer(200, { session = session_json(s),
                         sandbox = self:sandbox_json(self.sandboxes[s.sandbox]) })
  end
  if s.status ~= "running" then
    return self:deny(req, 410, "sandbox_stopped", "Sandbox is stopped")
  end
  if rest == "/cmd" and m == "POST" then return self:run(req, s) end
  local cid, crest = rest:match("^/cmd/([^/]+)(.*)$")
  if cid then return self:on_command(req, q, s, cid, crest) end
  local op = rest:match("^/fs/(%a+)$")
  if op and m == "POST" then return self:fs(req, s, op) end
  if rest == "/extend-timeout" and m == "POST" then
    local b, refusal = self:body(req)
    if not b then return refusal end
    if math.type(b.duration) ~= "integer" or b.duration <= 0 then
      return self:refuse(req, 400, "bad_request", "duration must be a positive integer (ms)")
    end
    if s.timeout + b.duration > self.max_timeout then
      return self:refuse(req, 400, "bad_request", "the timeout would exceed the plan's maximum")
    end
    s.timeout, s.updated_at = s.timeout + b.duration, now_ms()
    self.extends = self.extends + 1
    return answer(200, { session = session_json(s) })
  end
  if rest == "/snapshot" and m == "POST" then
    local b, refusal = self:body(req)
    if not b then return refusal end
    if b.expiration ~= nil and math.type(b.expiration) ~= "integer" then
      return self:refuse(req, 400, "bad_request", "expiration must be an integer (ms)")
    end
    local sn = self:snapshot(s)
    return answer(200, { snapshot = snapshot_json(sn), session = session_json(s) })
  end
  return self:refuse(req, 404, "not_found", "no route " .. m .. " " .. req.path)
end

function Fake:on_snapshots(req, q, snap)
  if snap == "" then
    if not q.project or q.project[1] ~= self.project then
      return self:refuse(req, 400, "bad_request", "project is required")
    end
    local list = {}
    for _, sn in pairs(self.snapshots) do
      if not q.name or q.name[1] == sn.sandbox then list[#list + 1] = sn end
    end
    local asc = q.sortOrder and q.sortOrder[1] == "asc"
    table.sort(list, function(a, b)
      if a.created_at ~= b.created_at then
        if asc then return a.created_at < b.created_at end
        return a.created_at > b.created_at
      end
      return a.id < b.id
    end)
    local out = json.array()
    for i, sn in ipairs(list) do out[i] = snapshot_json(sn) end
    return answer(200, { snapshots = out, pagination = { count = #out, next = json.null } })
  end
  local sn = self.snapshots[snap]
  if not sn then return self:deny(req, 404, "not_found", "Snapshot not found: " .. snap) end
  if req.method == "DELETE" then sn.status = "deleted" end
  return answer(200, { snapshot = snapshot_json(sn) })
end

-- The handler --------------------------------------------------------------------------------

function Fake:api(req)
  local route = req.method .. " " .. req.path
  if not self.canned_exec then                -- a bench's thousands of calls: no log
    self.requests[#self.requests + 1] = { route = route, query = req.query, body = req.body,
                                          headers = req.headers }
  end
  if route == "GET /_fake/config" then
    return answer(200, { team = self.team, project = self.project })
  end
  local f = self:fault(route)
  if f then
    if f.hang then sandlot.sleep(f.hang) end
    if f.drop then return { drop = true } end
    if f.body then                         -- a raw answer: a service that misbehaves
      return { status = f.status or 200, body = f.body,
               headers = { ["Content-Type"] = f.content_type or "application/json" } }
    end
    if f.status then
      local h = {}
      if f.retry_after then h["Retry-After"] = tostring(f.retry_after) end
      return answer(f.status, err_body(f.code or "injected", f.message or "injected"), h)
    end
  end
  local auth = req.headers["authorization"]
  if auth == nil or not auth:match("^Bearer %S+$") then
    return self:refuse(req, 401, "unauthorized", "missing or malformed Authorization header")
  end
  if auth ~= "Bearer " .. self.token then
    return self:refuse(req, 403, "forbidden", "Not authorized: invalid token")
  end
  local q = query(req.query)
  if not q.teamId then return self:refuse(req, 400, "bad_request", "teamId is required") end
  if q.teamId[1] ~= self.team then return self:refuse(req, 403, "forbidden", "no such team") end
  if req.body == "" and not (req.headers["content-type"] or ""):find("^application/json") then
    self.quirks[#self.quirks + 1] = route .. ": no Content-Type: application/json"
  end
  local p, m = req.path, req.method
  if (p == "/v3/sandboxes" or p == "/v2/sandboxes") and m == "POST" then
    return self:create(req)
  end
  if p == "/v2/sandboxes" and m == "GET" then return self:list(req, q) end
  local sid, rest = p:match("^/v2/sandboxes/sessions/([^/]+)(.*)$")
  if sid then return self:on_session(req, q, sid, rest) end
  local snap = p:match("^/v2/sandboxes/snapshots/?(.*)$")
  if snap then return self:on_snapshots(req, q, snap) end
  local name
  name, rest = p:match("^/v2/sandboxes/([^/]+)(.*)$")
  if name then
    self:sweep()
    return self:on_sandbox(req, q, unescape(name), rest)
  end
  return self:refuse(req, 404, "not_found", "no route " .. route)
end

---A fake without a server: opts = {token, team, project, backend_dir, max_timeout, page_size,
---canned_exec = fn(command, args) -> {exit_code, stdout, stderr} (bench figure 7: no local
---sandbox behind a sandbox, every command answers fn's result at once; files then fail)}.
function M.new(opts)
  opts = opts or {}
  local dir = assert(opts.backend_dir, "spec.fakes.vercel: opts.backend_dir is required")
  return setmetatable({
    token = opts.token or ("vcp_" .. id.hex(20)), team = opts.team or ("team_" .. id.hex(8)),
    project = opts.project or ("prj_" .. id.hex(8)), sandboxes = {}, sessions = {},
    snapshots = {}, faults = {}, rejected = {}, denied = {}, quirks = {}, requests = {},
    created = 0, session_count = 0, resumes = 0, list_pages = 0, commands = 0, writes = 0,
    extends = 0, page_size = opts.page_size, max_timeout = opts.max_timeout or M.MAX_TIMEOUT,
    canned_exec = opts.canned_exec,
    backend = { name = "vercel-fake", config = { state_dir = dir, isolation = "namespaces" },
                warn = function() end },
  }, Fake)
end

---Starts the fake on a loopback server. Returns {url, token, team, project, fake, rejected(),
---stop()}.
function M.start(opts)
  opts = opts or {}
  local tmp
  if not opts.backend_dir then
    tmp = require("spec.helper").tmpdir("vercel")
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.backend_dir = opts.backend_dir or tmp
  local f = M.new(o)
  local srv = assert(sandlot.http.serve{ host = "127.0.0.1", port = opts.port or 0,
                                         max_body = opts.max_body or 512 * 1024 * 1024,
                                         handler = function(req) return f:api(req) end })
  return {
    url = srv.url, token = f.token, team = f.team, project = f.project, fake = f,
    rejected = base.rejected_lines(f),     -- for spec/fakes/check/run.lua: one line each
    stop = function()
      for name in pairs(f.sandboxes) do f:kill_sandbox(name) end
      srv:close()
      if tmp then sandlot.proc.run({ "rm", "-rf", tmp }) end
    end,
  }
end

return M
