-- spec/fakes/e2b_envd.lua: the envd half of the E2B fake (spec/fakes/e2b.lua): the sandbox
-- proxy's routing (E2b-Sandbox-Id / E2b-Sandbox-Port), X-Access-Token, GET /health, /files
-- (multipart and octet-stream uploads), and the Connect RPCs (unary JSON; the process stream
-- as envelopes) over the local provider's sandbox behind each fake one. Strict as envd is:
-- 415 for a wrong content type, invalid_argument for fields not in the proto, a stream body
-- that is not exactly one envelope refused, 502 for an unknown or paused sandbox.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local connect = require("sandlot.wire.connect")
local multipart = require("sandlot.wire.multipart")
local base64 = require("sandlot.wire.base64")
local fs = require("sandlot.fs")
local timer = require("sandlot.core.timer")
local lp = require("providers.local")

local E = {}

local HOME = "/home/user"
local ENVD_PORT = "49983"
local PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

-- proto messages: field -> "string" | "bool" | "int" | "strings" | "map" | "bytes" | schema
local PROCESS_CONFIG = { cmd = "string", args = "strings", envs = "map", cwd = "string" }
local SELECTOR = { pid = "int", tag = "string" }
local SCHEMAS = {
  ["process.Process/Start"] = { process = PROCESS_CONFIG, pty = "any", tag = "string",
                                stdin = "bool" },
  ["process.Process/Connect"] = { process = SELECTOR },
  ["process.Process/List"] = {},
  ["process.Process/SendSignal"] = { process = SELECTOR, signal = "string" },
  ["process.Process/SendInput"] = { process = SELECTOR,
                                    input = { stdin = "bytes", pty = "bytes" } },
  ["process.Process/CloseStdin"] = { process = SELECTOR },
  ["filesystem.Filesystem/ListDir"] = { path = "string", depth = "int" },
  ["filesystem.Filesystem/Stat"] = { path = "string" },
  ["filesystem.Filesystem/MakeDir"] = { path = "string" },
  ["filesystem.Filesystem/Remove"] = { path = "string" },
  ["filesystem.Filesystem/Move"] = { source = "string", destination = "string" },
}
local STREAMING = { ["process.Process/Start"] = true, ["process.Process/Connect"] = true }

local function snake_to_camel(k)
  return (k:gsub("_(%l)", function(c) return c:upper() end))
end

-- Checks v against schema (protojson: unknown fields are invalid_argument). Returns the
-- message with camelCase keys, or nil, why.
local function conform(v, schema, where)
  if type(v) ~= "table" or (next(v) ~= nil and v[1] ~= nil) then
    return nil, where .. ": not an object"
  end
  local out = {}
  for k, x in pairs(v) do
    local name = type(k) == "string" and snake_to_camel(k) or k
    local t = schema[name]
    if t == nil then return nil, ("%s: unknown field %q"):format(where, tostring(k)) end
    if x == json.null then x = nil end
    local ok = true
    if x == nil or t == "any" then
    elseif t == "string" then ok = type(x) == "string"
    elseif t == "bool" then ok = type(x) == "boolean"
    elseif t == "int" then ok = math.type(x) == "integer" or (type(x) == "string" and
                                                             x:match("^%-?%d+$") ~= nil)
      if ok then x = math.tointeger(tonumber(x)) end
    elseif t == "bytes" then ok = type(x) == "string" and base64.decode(x) ~= nil
    elseif t == "strings" then
      ok = type(x) == "table"
      for i, s in pairs(ok and x or {}) do ok = ok and math.type(i) == "integer" and
                                                 type(s) == "string" end
    elseif t == "map" then
      ok = type(x) == "table"
      for kk, s in pairs(ok and x or {}) do ok = ok and type(kk) == "string" and
                                                  type(s) == "string" end
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

local function resolve(path)
  if path == nil or path == "" then return nil end
  return fs.path(HOME, path)
end

-- The local sandbox's view of a path: its entry {name, type, size, mode, mtime} or nil.
local function stat(f, s, abs)
  if abs == "/" then return { name = "", type = "directory", size = 0, mode = 493, mtime = 0 } end
  local parent, name = abs:match("^(.*)/([^/]+)$")
  local entries = lp.ls(f.backend, s.local_handle, parent == "" and "/" or parent)
  for _, e in ipairs(entries or {}) do
    if e.name == name then return e end
  end
end

local function perms(e)
  local s = e.type == "directory" and "d" or (e.type == "symlink" and "L" or "-")
  for i = 8, 0, -1 do
    s = s .. (((e.mode or 0) >> i) & 1 == 1 and ("rwx"):sub(3 - i % 3, 3 - i % 3) or "-")
  end
  return s
end

local TYPES = { file = "FILE_TYPE_FILE", directory = "FILE_TYPE_DIRECTORY",
                symlink = "FILE_TYPE_FILE" }

local function entry_info(M, abs, e)
  local o = { name = e.name, type = TYPES[e.type], path = abs, permissions = perms(e),
              owner = "user", group = "user", modifiedTime = M.rfc3339(e.mtime or 0) }
  if (e.size or 0) ~= 0 then o.size = tostring(e.size) end
  if (e.mode or 0) ~= 0 then o.mode = e.mode end
  return o
end

-- Processes ----------------------------------------------------------------------------------
-- A process record: the local process, its events so far (each subscriber, a Start or a
-- Connect stream, reads them from its own position) and the tasks waiting for more.

local function push(r, ev)
  r.events[#r.events + 1] = ev
  local w = r.waiters
  r.waiters = {}
  for _, t in ipairs(w) do t:cancel() end
end

-- The event at i, waiting for it; a keepalive message after `ping` seconds without one.
local KEEPALIVE = { event = { keepalive = {} } }

local function next_event(r, i, ping)
  while not r.events[i] do
    local t = sandlot.spawn(sandlot.sleep, ping)
    r.waiters[#r.waiters + 1] = t
    local _, slept = pcall(t.join, t)
    if not t:done() then t:cancel(); return nil end
    if slept == true and not r.events[i] then return KEEPALIVE end
  end
  return r.events[i]
end

local function pump(s, r)
  while true do
    local stream, data = r.p:read()
    if not stream then break end
    push(r, { event = { data = { [stream] = base64.encode(data) } } })
  end
  local res = r.p:wait()
  if r.deadline_hit then
    push(r, { error = "deadline_exceeded" })
  else
    local e = {}
    if res and res.signal then
      e.exitCode, e.status = -1, "signal: " .. (({ [9] = "killed", [15] = "terminated" })
                                                 [res.signal] or tostring(res.signal))
    else
      local code = res and res.exit_code or 1
      e.exited, e.status = true, "exit status " .. code
      if code ~= 0 then e.exitCode, e.error = code, "exit status " .. code end
    end
    push(r, { event = { ["end"] = e } })
  end
  if r.deadline then r.deadline:cancel() end
  r.exited = os.time()                                 -- connectable for 30 s after exit
  push(r, { done = true })
end

-- A streaming body: envelopes from position i of r's events, then the end of the stream.
local function stream_body(f, r, i, only_end, ping)
  local finished = false
  return function()
    if finished then return nil end
    while true do
      local ev = next_event(r, i, ping)
      if ev == nil then finished = true; return connect.end_stream("canceled", "closed") end
      if ev == KEEPALIVE then
        f.keepalives = f.keepalives + 1
        return connect.encode(ev)
      end
      i = i + 1
      if ev.done then finished = true; return connect.end_stream() end
      if ev.error then
        finished = true
        return connect.end_stream(ev.error, "the process was killed at its deadline")
      end
      if not only_end or ev.event["end"] then return connect.encode(ev) end
    end
  end
end

-- The host's /usr, /bin, /sbin and /lib are the sandbox's too (read-only binds): a program
-- there is looked up on the host, anything else in the sandbox's own tree.
local MIRRORED = { usr = true, bin = true, sbin = true, lib = true, lib64 = true }

local function is_program(f, s, abs)
  local top = abs:match("^/([^/]+)")
  if top and MIRRORED[top] then
    local st = fs.stat(abs)
    return st ~= nil and st.type ~= "directory"
  end
  local e = stat(f, s, abs)
  return e ~= nil and e.type ~= "directory"
end

local function executable(f, s, cmd, cwd)
  if cmd:find("/") then
    local abs = fs.path(cwd, cmd)
    return abs ~= nil and is_program(f, s, abs)
  end
  for dir in PATH:gmatch("[^:]+") do
    if is_program(f, s, dir .. "/" .. cmd) then return true end
  end
  return false
end

-- The canned process of a fake without local sandboxes: its events are all there at once.
local function canned_process(f, s, pc, msg)
  local res = f.canned_exec(pc.cmd, pc.args or {})
  f.next_pid = f.next_pid + 1
  local r = { pid = f.next_pid, events = {}, waiters = {}, tag = msg.tag, exited = os.time(),
              close = function() end }
  r.events[1] = { event = { start = { pid = r.pid } } }
  for _, which in ipairs({ "stdout", "stderr" }) do
    if (res[which] or "") ~= "" then
      r.events[#r.events + 1] = { event = { data = { [which] = base64.encode(res[which]) } } }
    end
  end
  local code = res.exit_code or 0
  local e = { exited = true, status = "exit status " .. code }
  if code ~= 0 then e.exitCode, e.error = code, e.status end
  r.events[#r.events + 1] = { event = { ["end"] = e } }
  r.events[#r.events + 1] = { done = true }
  return r
end

local function start_process(f, s, msg, headers)
  local pc = msg.process
  if not pc or not pc.cmd then return nil, "invalid_argument", "process.cmd is required" end
  if f.canned_exec then return canned_process(f, s, pc, msg) end
  local cwd = pc.cwd and resolve(pc.cwd) or HOME
  local ce = cwd and stat(f, s, cwd)
  if not ce or ce.type ~= "directory" then
    return nil, "invalid_argument", ("cwd '%s' does not exist"):format(tostring(pc.cwd))
  end
  if not executable(f, s, pc.cmd, cwd) then
    return nil, "invalid_argument", ('exec: "%s": executable file not found in $PATH')
                                    :format(pc.cmd)
  end
  local env = { HOME = HOME, USER = "user", LOGNAME = "user" }
  for k, v in pairs(pc.envs or {}) do env[k] = v end
  local argv = { pc.cmd }
  for _, a in ipairs(pc.args or {}) do argv[#argv + 1] = a end
  local p, err = lp.spawn(f.backend, s.local_handle, argv, { env = env, cwd = cwd })
  if not p then return nil, "internal", tostring(err) end
  f.next_pid = f.next_pid + 1
  local r = { pid = f.next_pid, p = p, events = {}, waiters = {}, tag = msg.tag,
              stdin = msg.stdin ~= false,
              config = { cmd = pc.cmd, args = json.array(pc.args or {}), envs = pc.envs or {},
                         cwd = cwd } }
  s.procs[r.pid] = r
  if not r.stdin then p:close_stdin() end
  push(r, { event = { start = { pid = r.pid } } })
  sandlot.spawn(pump, s, r)
  local ms = tonumber(headers["connect-timeout-ms"] or "")
  if ms and ms > 0 then
    r.deadline = sandlot.spawn(function()
      if sandlot.sleep(ms / 1000) and not r.exited then
        r.deadline_hit = true
        p:kill("KILL")
      end
    end)
  end
  function r.close() if not r.exited then p:kill("KILL") end end
  return r
end

local function find_process(s, sel)
  for pid, r in pairs(s.procs) do
    if r.exited and os.time() - r.exited > 30 then s.procs[pid] = nil end
  end
  for _, r in pairs(s.procs) do
    if (sel.pid and r.pid == sel.pid) or (sel.tag and r.tag == sel.tag) then return r end
  end
end

-- Routes -------------------------------------------------------------------------------------

local function connect_error(f, req, status, code, message)
  return f:deny(req, status, { code = code, message = message })
end

local RPC = {}

RPC["filesystem.Filesystem/Stat"] = function(f, s, msg, M)
  local abs = resolve(msg.path)
  local e = abs and stat(f, s, abs)
  if not e then return nil, "not_found", "no such file or directory: " .. tostring(msg.path) end
  return { entry = entry_info(M, abs, e) }
end

RPC["filesystem.Filesystem/ListDir"] = function(f, s, msg, M)
  local abs = resolve(msg.path)
  local e = abs and stat(f, s, abs)
  if not e then return nil, "not_found", "path not found: " .. tostring(msg.path) end
  if e.type ~= "directory" then return nil, "invalid_argument", "path is not a directory" end
  local out = json.array()
  for _, x in ipairs(assert(lp.ls(f.backend, s.local_handle, abs))) do
    out[#out + 1] = entry_info(M, (abs == "/" and "" or abs) .. "/" .. x.name, x)
  end
  return { entries = out }
end

RPC["filesystem.Filesystem/MakeDir"] = function(f, s, msg, M)
  local abs = resolve(msg.path)
  if not abs then return nil, "invalid_argument", "path is required" end
  local e = stat(f, s, abs)
  if e and e.type == "directory" then return nil, "already_exists", "directory already exists" end
  if e then return nil, "invalid_argument", "path already exists but it is not a directory" end
  local ok, err = lp.mkdir(f.backend, s.local_handle, abs, { parents = true })
  if not ok then return nil, "internal", tostring(err) end
  return { entry = entry_info(M, abs, stat(f, s, abs)) }
end

RPC["filesystem.Filesystem/Remove"] = function(f, s, msg)
  local abs = resolve(msg.path)
  if not abs then return nil, "invalid_argument", "path is required" end
  if stat(f, s, abs) then
    local ok, err = lp.rm(f.backend, s.local_handle, abs, { recursive = true })
    if not ok then return nil, "internal", tostring(err) end
  end
  return {}
end

RPC["process.Process/List"] = function(_, s)
  local out = json.array()
  for _, r in pairs(s.procs) do
    if not r.exited then out[#out + 1] = { config = r.config, pid = r.pid, tag = r.tag } end
  end
  return { processes = out }
end

local function selected(s, msg)
  local sel = msg.process or {}
  local r = find_process(s, sel)
  if not r then
    return nil, "not_found", sel.pid and ("process with pid %d not found"):format(sel.pid)
                             or ("process with tag %s not found"):format(tostring(sel.tag))
  end
  return r
end

RPC["process.Process/SendSignal"] = function(_, s, msg)
  local r, code, why = selected(s, msg)
  if not r then return nil, code, why end
  local sig = ({ SIGNAL_SIGTERM = "TERM", SIGNAL_SIGKILL = "KILL" })[msg.signal]
  if not sig then return nil, "unimplemented", "invalid signal: " .. tostring(msg.signal) end
  if not r.exited then r.p:kill(sig) end
  return {}
end

RPC["process.Process/SendInput"] = function(_, s, msg)
  local r, code, why = selected(s, msg)
  if not r then return nil, code, why end
  if not r.stdin or r.exited then
    return nil, "internal", "error writing to stdin: stdin not enabled or closed"
  end
  local data = base64.decode((msg.input or {}).stdin or "") or ""
  local ok, err = r.p:write(data)
  if not ok then return nil, "internal", "error writing to stdin: " .. tostring(err) end
  return {}
end

RPC["process.Process/CloseStdin"] = function(_, s, msg)
  local r, code, why = selected(s, msg)
  if not r then return nil, code, why end
  if not r.stdin then return nil, "internal", "stdin not enabled or closed" end
  r.stdin = false
  r.p:close_stdin()
  return {}
end

local STATUS = { invalid_argument = 400, unauthenticated = 401, permission_denied = 403,
                 not_found = 404, already_exists = 409, resource_exhausted = 429,
                 internal = 500, unknown = 500, unimplemented = 501, unavailable = 503,
                 deadline_exceeded = 504 }

local function rpc(f, s, req, method, M)
  local ct = (req.headers["content-type"] or ""):lower()
  local streaming = STREAMING[method]
  local want = streaming and "application/connect+json" or "application/json"
  if ct:match("^[^;]*") ~= want then
    return f:refuse(req, 415, "unsupported content type " .. ct,
                    { ["Content-Type"] = "text/plain", ["Accept-Post"] = want })
  end
  local raw = req.body
  if streaming then
    local msgs = connect.decode_all(raw)
    if not msgs or #msgs ~= 1 or msgs[1].flags ~= 0 then
      f.rejected[#f.rejected + 1] = { method = req.method, path = req.path, status = 200,
                                      why = "the stream request is not one envelope" }
      return { status = 200, headers = { ["Content-Type"] = "application/connect+json" },
               body = connect.end_stream("invalid_argument",
                                         "the request must be exactly one message") }
    end
    raw = nil   -- luacheck: ignore 311 (frees the body early)
    msgs = msgs[1].value
    local msg, why = conform(msgs, SCHEMAS[method], "request")
    local function stream_error(code, message, domain)
      local log = domain and f.denied or f.rejected
      log[#log + 1] = { method = req.method, path = req.path, status = 200, why = message }
      return { status = 200, headers = { ["Content-Type"] = "application/connect+json" },
               body = connect.end_stream(code, message) }
    end
    if not msg then return stream_error("invalid_argument", why) end
    local ka = req.headers["keepalive-ping-interval"]
    if ka and tonumber(ka) == 0 then            -- Go's time.NewTicker(0) panics
      return stream_error("internal", "panic: non-positive interval for NewTicker")
    end
    local r, i, only_end
    if method == "process.Process/Start" then
      local code, message
      r, code, message = start_process(f, s, msg, req.headers)
      if not r then return stream_error(code, message, true) end
      i = 1
    else
      local code, message
      r, code, message = selected(s, msg)
      if not r then return stream_error(code, message, true) end
      i, only_end = #r.events + 1, false
      if r.exited then i = 1; only_end = true end
    end
    return { status = 200, headers = { ["Content-Type"] = "application/connect+json" },
             body = stream_body(f, r, i, only_end, f.keepalive or tonumber(ka) or 90) }
  end
  local v = json.decode(raw)
  local msg, why = conform(v, SCHEMAS[method], "request")
  if not msg then return f:refuse(req, 400, { code = "invalid_argument", message = why }) end
  local out, code, message = RPC[method](f, s, msg, M)
  if not out then return connect_error(f, req, STATUS[code] or 500, code, message) end
  return M.answer(200, out)
end

-- GET /files: the bytes, Content-Type by extension or sniffed (not always octet-stream).
local function get_file(f, s, req, q)
  local abs = resolve(q.path)
  if not abs then return f:refuse(req, 400, { code = 400, message = "path is required" }) end
  local e = stat(f, s, abs)
  if not e then
    return f:deny(req, 404, { code = 404, message = "path '" .. abs .. "' does not exist" })
  end
  if e.type == "directory" then
    return f:deny(req, 400, { code = 400, message = "path '" .. abs .. "' is a directory" })
  end
  local data = assert(lp.read_file(f.backend, s.local_handle, abs))
  local ct = abs:match("%.json$") and "application/json"
             or (data:find("[%z\1-\8\14-\31\127]") and "application/octet-stream")
             or "text/plain; charset=utf-8"
  return { status = 200, body = data,
           headers = { ["Content-Type"] = ct,
                       ["Content-Disposition"] = "inline; filename=" .. abs:match("[^/]*$") } }
end

local function put(f, s, abs, data)
  local ok, err = lp.write_file(f.backend, s.local_handle, abs, data, {})
  if not ok then return nil, err end
  return { path = abs, name = abs:match("[^/]*$"), type = "file" }
end

local function post_file(f, s, req, q)
  local ct = req.headers["content-type"] or ""
  local written = json.array()
  local function bad(status, msg) return f:refuse(req, status, { code = status, message = msg }) end
  if ct:lower():find("^multipart/form%-data") then
    local parts, perr = multipart.parse(req.body, ct)
    if not parts then return bad(500, "error parsing multipart form: " .. perr.message) end
    local files = {}
    for _, p in ipairs(parts) do if p.name == "file" then files[#files + 1] = p end end
    if q.path and #files > 1 then
      return bad(400, "you cannot upload multiple files to the same path")
    end
    for _, p in ipairs(files) do
      local abs = resolve(q.path or p.filename)
      if not abs then return bad(400, "no path for a part") end
      local e = stat(f, s, abs)
      if e and e.type == "directory" then
        return f:deny(req, 400, { code = 400, message = "path is a directory: " .. abs })
      end
      local w, err = put(f, s, abs, p.data)
      if not w then return bad(500, tostring(err)) end
      written[#written + 1] = w
    end
  elseif ct:lower():find("^application/octet%-stream") then
    local abs = resolve(q.path)
    if not abs then return bad(400, "path is required for an octet-stream upload") end
    local w, err = put(f, s, abs, req.body)
    if not w then return bad(500, tostring(err)) end
    written[1] = w
  else
    return bad(400, "unsupported content type " .. ct)
  end
  return { status = 200, headers = { ["Content-Type"] = "text/plain; charset=utf-8" },
           body = json.encode(written) }
end

---Adds f:envd(req), the proxy and envd handler, to a fake (M: spec.fakes.e2b).
function E.install(f, M)
  f.next_pid = 1000
  function f.envd(self, req)
    local route = req.method .. " " .. req.path
    if not self.canned_exec then
      self.requests[#self.requests + 1] = { route = "envd " .. route, query = req.query,
                                            headers = req.headers }
    end
    local fault = self:fault("envd " .. route)
    if fault then
      if fault.hang then sandlot.sleep(fault.hang) end
      if fault.drop then return { drop = true } end
      if fault.status then
        local h = {}
        if fault.retry_after then h["Retry-After"] = tostring(fault.retry_after) end
        return M.answer(fault.status, { code = fault.code or "unavailable",
                                        message = fault.message or "injected" }, h)
      end
    end
    local sid, port = req.headers["e2b-sandbox-id"], req.headers["e2b-sandbox-port"]
    local text = { ["Content-Type"] = "text/plain; charset=utf-8" }
    if (sid == nil) ~= (port == nil) or sid == nil then
      return self:refuse(req, 400, "missing header", text)
    end
    if not sid:match("^[a-z0-9]+$") then
      return self:refuse(req, 400, "Invalid sandbox ID", text)
    end
    if not port:match("^%d+$") then return self:refuse(req, 400, "Invalid sandbox port", text) end
    local s = self:lookup(sid)
    if not s or s.state ~= "running" then
      return self:deny(req, 502, { sandboxId = sid, message = "The sandbox was not found",
                                   code = 502 })
    end
    if port ~= ENVD_PORT then
      return self:refuse(req, 502, { sandboxId = sid, port = tonumber(port), code = 502,
                                     message = "The sandbox is running but port is not open" })
    end
    if timer.now() / 1e9 < s.ready_at then
      return M.answer(502, { sandboxId = sid, code = 502,
                             message = "The sandbox is running but port is not open" })
    end
    local token = req.headers["x-access-token"]
    local files = req.path == "/files" and (req.method == "GET" or req.method == "POST")
    if req.path == "/health" and req.method == "GET" then return M.answer(204) end
    if token ~= s.token then
      local msg = "unauthorized access, please provide a valid access token or method " ..
                  "signing if supported"
      if files then
        msg = token and "access token present in header but does not match"
              or "missing signature query parameter"
      end
      return self:refuse(req, 401, { code = 401, message = msg })
    end
    local q = M.query(req.query)
    if self.canned_exec and req.path ~= "/process.Process/Start" then
      return M.answer(501, { code = "unimplemented", message = "not served by a canned fake" })
    end
    if files and req.method == "GET" then return get_file(self, s, req, q) end
    if files then return post_file(self, s, req, q) end
    local method = req.path:match("^/([%w_.]+/%w+)$")
    if req.method == "POST" and method and SCHEMAS[method] then
      return rpc(self, s, req, method, M)
    end
    return self:refuse(req, 404, { code = "not_found", message = "no route " .. route })
  end
  local kill = f.kill
  function f.kill(self, sid)
    local s = self.sandboxes[sid]
    if s then
      for _, r in pairs(s.procs) do r.close() end
      s.procs = {}
    end
    return kill(self, sid)
  end
  function f.pause(self, s)
    for _, r in pairs(s.procs) do r.close() end
    s.procs = {}
    s.state = "paused"
  end
end

return E
