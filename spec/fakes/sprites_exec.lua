-- spec/fakes/sprites_exec.lua: the exec half of the Sprites fake (spec/fakes/sprites.lua):
-- POST /exec (HTTP: stdin as the body, each frame written as a chunk of its own: 1 stdout,
-- 2 stderr, 3 exit with a one-byte code), GET /exec with a WebSocket upgrade (session_info,
-- binary frames both ways: 0 stdin, 4 end of stdin; text {"type":"signal"}; the exit frame,
-- then the socket held until the client closes, for up to 5 s), GET /exec (the sessions) and
-- POST /exec/{id}/kill (NDJSON; 410 once the session has exited), and /services (PUT starts
-- one, a log stream answers; one HTTP service at most: 409). Commands run in the sprite's
-- local sandbox through `sh -c 'exec "$0" "$@"'`, so a missing program exits 127 as a shell's.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local ndjson = require("sandlot.wire.ndjson")
local lp = require("providers.local")
local exec = require("sandlot.exec")
local fs = require("sandlot.fs")

local E = {}

local SIGNALS = { INT = true, TERM = true, HUP = true, KILL = true, QUIT = true, USR1 = true,
                  USR2 = true }

-- The command line of an exec query: {argv, cwd, env} or nil, why.
local function command(M, f, s, q, all)
  local cmd = all.cmd
  if not cmd or #cmd == 0 then return nil, "cmd is required" end
  local prog = q.path or cmd[1]
  local argv = { "/bin/sh", "-c", 'exec "$0" "$@"', prog }
  for i = 2, #cmd do argv[#argv + 1] = cmd[i] end
  if all.env then                             -- env replaces the default environment
    local pre = { "/usr/bin/env", "-i" }
    for _, kv in ipairs(all.env) do
      if not kv:find("=", 2, true) then return nil, "env must be KEY=VALUE" end
      pre[#pre + 1] = kv
    end
    for _, a in ipairs(argv) do pre[#pre + 1] = a end
    argv = pre
  end
  local cwd = M.HOME
  if q.dir then
    cwd = fs.path(M.HOME, q.dir)
    local e = cwd and (f.canned_exec and { type = "directory" } or M.stat(f, s, cwd))
    if not e or e.type ~= "directory" then return nil, "dir does not exist: " .. q.dir, true end
  end
  for _, k in ipairs({ "stdin", "tty" }) do
    if q[k] and q[k] ~= "true" and q[k] ~= "false" then
      return nil, k .. " must be true or false"
    end
  end
  return { argv = argv, cwd = cwd, env = { HOME = M.HOME, USER = "sprite" },
           stdin = q.stdin == "true", command = table.concat(cmd, " ") }
end

local function exit_code(r)
  if not r then return 1 end
  if r.signal then return 128 + r.signal end
  return r.exit_code or 1
end

-- A session: the local process and what is known about it.
local function start(f, s, c)
  local p, err
  if f.canned_exec then
    p = require("spec.fakes.canned").process(f.canned_exec(c.command))
  else
    p, err = lp.spawn(f.backend, s.local_handle, c.argv, { cwd = c.cwd, env = c.env })
  end
  if not p then return nil, err end
  f.next_session = f.next_session + 1
  local x = { id = f.next_session, p = p, command = c.command, created = os.time(),
              exited = false, workdir = c.cwd }
  s.sessions[x.id] = x
  f:touch(s)
  return x
end

local function finish(f, s, x)
  local r = x.p:wait()
  x.exited, x.exit_code = true, exit_code(r)
  f:touch(s)
  return x.exit_code
end

local function http_exec(f, M, req, s, q, all)
  local c, why, deny = command(M, f, s, q, all)
  if not c then
    local body = { error = "bad_request", message = why }
    if deny then return f:deny(req, 400, body) end
    return f:refuse(req, 400, body)
  end
  local x, err = start(f, s, c)
  if not x then return M.answer(500, { error = "internal", message = tostring(err) }) end
  if c.stdin then
    local body = req.body
    sandlot.spawn(function()
      if #body > 0 then x.p:write(body) end
      x.p:close_stdin()
    end)
  else
    x.p:close_stdin()
  end
  local done = false
  return { status = 200, headers = { ["Content-Type"] = "application/octet-stream" },
           body = function()                  -- one frame per chunk
             if done then return nil end
             local stream, data = x.p:read()
             if stream then return (stream == "stdout" and "\1" or "\2") .. data end
             done = true
             return "\3" .. string.char(finish(f, s, x) & 255)
           end }
end

local function ws_exec(f, M, req, s, q, all)
  local c, why, deny = command(M, f, s, q, all)
  if not c then
    local body = { error = "bad_request", message = why }
    if deny then return f:deny(req, 400, body) end
    return f:refuse(req, 400, body)
  end
  local x, err = start(f, s, c)
  if not x then return M.answer(500, { error = "internal", message = tostring(err) }) end
  if not c.stdin then x.p:close_stdin() end
  return { websocket = function(w)
    w:send(json.encode({ type = "session_info", session_id = x.id, command = x.command,
                         created = x.created, cols = 80, rows = 24, is_owner = true,
                         tty = false }))
    local gone = false
    local reader = sandlot.spawn(function()   -- the client's frames
      while true do
        local data, kind = w:receive()
        if not data then break end
        if kind == "binary" then
          local t = data:byte(1)
          if t == 0 and c.stdin then x.p:write(data:sub(2))
          elseif t == 4 then x.p:close_stdin() end
        else
          local v = json.decode(data)
          local sig = type(v) == "table" and v.type == "signal" and type(v.signal) == "string"
                      and v.signal:gsub("^SIG", "")       -- the JS SDK sends "SIGTERM"
          if sig and SIGNALS[sig] then x.p:kill(sig) end
        end
      end
      gone = true
      if not x.exited then                      -- max_run_after_disconnect: 10 s
        sandlot.spawn(function()
          sandlot.sleep(10)
          if not x.exited then x.p:kill("KILL") end
        end)
      end
    end)
    while true do
      local stream, data = x.p:read()
      if not stream then break end
      if not gone then w:send((stream == "stdout" and "\1" or "\2") .. data, { binary = true }) end
    end
    local code = finish(f, s, x)
    if not gone then
      w:send("\3" .. string.char(code & 255), { binary = true })
      for _ = 1, 50 do                          -- held open until the client closes (~5 s)
        if reader:done() then break end
        sandlot.sleep(0.1)
      end
    end
    if not reader:done() then reader:cancel() end
  end }
end

local function kill(f, req, s, sid, q)
  local x = s.sessions[math.tointeger(tonumber(sid)) or -1]
  if not x then return f:deny(req, 404, { error = "not_found", message = "session not found" }) end
  local sig = q.signal or "TERM"
  if not SIGNALS[sig] then
    return f:refuse(req, 400, { error = "bad_request", message = "unknown signal " .. sig })
  end
  if x.exited then return f:deny(req, 410, { error = "gone", message = "session has exited" }) end
  x.p:kill(exec.signal_number(sig))
  return { status = 200, headers = { ["Content-Type"] = "application/x-ndjson" },
           body = ndjson.encode({ type = "signal", signal = sig, pid = x.id },
                                { type = "complete", message = "signal sent" }) }
end

-- Services: supervised processes of the sprite (no restart policy here). ----------------------

local function now_ms() return os.time() * 1000 end

local function service_json(v)
  return { name = v.name, cmd = v.cmd, args = json.array(v.args or {}), env = v.env,
           dir = v.dir, needs = json.array(v.needs or {}), http_port = v.http_port,
           state = { name = v.name, status = v.status, pid = v.pid,
                     started_at = v.started_at, restart_count = 0 } }
end

local function log(v, ev)
  ev.timestamp = now_ms()
  v.logs[#v.logs + 1] = ev
  if #v.logs > 1000 then table.remove(v.logs, 1) end
end

local function run_service(f, M, s, v)
  local argv = { "/bin/sh", "-c", 'exec "$0" "$@"', v.cmd }
  for _, a in ipairs(v.args or {}) do argv[#argv + 1] = a end
  local env = { HOME = M.HOME, USER = "sprite" }
  for k, x in pairs(v.env or {}) do env[k] = x end
  local p, err = lp.spawn(f.backend, s.local_handle, argv,
                          { cwd = v.dir and fs.path(M.HOME, v.dir) or M.HOME, env = env })
  if not p then
    v.status = "failed"
    log(v, { type = "error", data = tostring(err) })
    return
  end
  p:close_stdin()
  f.next_session = f.next_session + 1
  v.p, v.pid, v.status, v.started_at = p, f.next_session, "running", M.rfc3339(os.time())
  log(v, { type = "started" })
  sandlot.spawn(function()
    while true do
      local stream, data = p:read()
      if not stream then break end
      log(v, { type = stream, data = data })
    end
    local code = exit_code(p:wait())
    log(v, { type = "exit", exit_code = code })
    if v.p == p then
      v.p, v.pid = nil, nil
      v.status = (v.stopping or code == 0) and "stopped" or "failed"
    end
  end)
end

local function stop_service(v)
  if v.p then
    v.stopping = true
    v.p:kill("TERM")
    for _ = 1, 100 do
      if not v.p then break end
      sandlot.sleep(0.05)
    end
    if v.p then v.p:kill("KILL") end
  end
  v.stopping = nil
end

local function log_body(events)
  local i = 0
  return { status = 200, headers = { ["Content-Type"] = "application/x-ndjson" },
           body = function()
             i = i + 1
             return events[i] and ndjson.encode(events[i]) or nil
           end }
end

local function services(f, M, req, s, rest)
  local m = req.method
  s.services = s.services or {}
  if rest == "" and m == "GET" then
    local out = json.array()
    local names = {}
    for n in pairs(s.services) do names[#names + 1] = n end
    table.sort(names)
    for _, n in ipairs(names) do out[#out + 1] = service_json(s.services[n]) end
    return M.answer(200, out)
  end
  local name, what = rest:match("^/([%w][%w_.%-]*)(.*)$")
  if not name then
    return f:refuse(req, 404, { error = "not_found", message = "no route " .. m .. " " .. rest })
  end
  local v = s.services[name]
  if what == "" and m == "PUT" then
    local b, refusal = f:json_body(req)
    if not b then return refusal end
    local function bad(msg) return f:refuse(req, 400, { error = "bad_request", message = msg }) end
    if type(b.cmd) ~= "string" or b.cmd == "" then return bad("cmd is required") end
    if b.http_port ~= nil and math.type(b.http_port) ~= "integer" then
      return bad("http_port must be an integer")
    end
    for _, k in ipairs({ "args", "needs" }) do
      if b[k] ~= nil and type(b[k]) ~= "table" then return bad(k .. " must be a list") end
    end
    if b.http_port then
      for n, x in pairs(s.services) do
        if n ~= name and x.http_port then
          return f:deny(req, 409, { error = "conflict",
                                    message = "service " .. n .. " already has an http_port" })
        end
      end
    end
    if v then stop_service(v) end
    v = { name = name, cmd = b.cmd, args = b.args, env = b.env, dir = b.dir, needs = b.needs,
          http_port = b.http_port, status = "starting", logs = {} }
    s.services[name] = v
    f:touch(s)
    run_service(f, M, s, v)
    return log_body({ v.logs[#v.logs] })
  end
  if not v then
    return f:deny(req, 404, { error = "not_found", message = "service not found: " .. name })
  end
  if what == "" and m == "GET" then return M.answer(200, service_json(v)) end
  if what == "" and m == "DELETE" then
    stop_service(v)
    s.services[name] = nil
    return M.answer(204)
  end
  if what == "/start" and m == "POST" then
    if not v.p then run_service(f, M, s, v) end
    return log_body({ { type = "started", timestamp = now_ms() } })
  end
  if what == "/stop" and m == "POST" then
    if not v.p then return f:deny(req, 409, { error = "conflict", message = "not running" }) end
    stop_service(v)
    return log_body({ { type = "stopping", timestamp = now_ms() },
                      { type = "stopped", timestamp = now_ms() } })
  end
  if what == "/logs" and m == "GET" then
    local q = M.query(req.query)
    local n = math.tointeger(tonumber(q.lines or "100")) or 100
    local out = {}
    for i = math.max(1, #v.logs - n + 1), #v.logs do out[#out + 1] = v.logs[i] end
    return log_body(out)
  end
  return f:refuse(req, 404, { error = "not_found", message = "no route " .. m .. " " .. rest })
end

---Adds f:exec(req, s, rest) and f:services(req, s, rest) to a fake (M: spec.fakes.sprites).
function E.install(f, M)
  function f.services(self, req, s, rest) return services(self, M, req, s, rest) end
  local kill_sprite = f.kill
  function f.kill(self, name)
    local s = self.sprites[name]
    for _, v in pairs(s and s.services or {}) do if v.p then v.p:kill("KILL") end end
    return kill_sprite(self, name)
  end
  function f.exec(self, req, s, rest)
    local q, all = M.query(req.query)
    local m = req.method
    if rest == "/exec" and m == "POST" then return http_exec(self, M, req, s, q, all) end
    if rest == "/exec" and m == "GET" then
      if (req.headers.upgrade or ""):lower() == "websocket" then
        return ws_exec(self, M, req, s, q, all)
      end
      local list = json.array()
      for _, x in pairs(s.sessions) do
        list[#list + 1] = { id = x.id, command = x.command, workdir = x.workdir,
                            created = x.created, bytes_per_second = 0,
                            is_active = not x.exited, tty = false }
      end
      return M.answer(200, { sessions = list })
    end
    local sid = rest:match("^/exec/(%d+)/kill$")
    if sid and m == "POST" then return kill(self, req, s, sid, q) end
    return self:refuse(req, 404, { error = "not_found", message = "no route " .. m .. " " .. rest })
  end
end

return E
