-- spec/fakes/daytona_toolbox.lua: the toolbox half of the Daytona fake (spec/fakes/daytona.lua):
-- the daemon's process, session and file endpoints (daytona.md "Toolbox endpoints"), on the
-- local sandbox behind each fake sandbox. Relative paths resolve against /home/daytona.
-- Single-file handlers answer errors with an empty body, as the v0.190 daemon does (gin's
-- AbortWithError); session output gains a newline on a last line without one, and is
-- combined unless X-Daytona-SDK-Version >= 0.167.0.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local multipart = require("sandlot.wire.multipart")

local M = {}

local WORKDIR = "/home/daytona"

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query(q)
  local t = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[unescape(k)] = unescape(v)
  end
  return t
end

local function reply(status, value, ctype)
  if value == nil then return { status = status, headers = {}, body = "" } end
  if type(value) == "string" then
    return { status = status, headers = { ["Content-Type"] = ctype or "text/plain" },
             body = value }
  end
  return { status = status, headers = { ["Content-Type"] = "application/json" },
           body = json.encode(value) }
end

-- An empty-bodied error (AbortWithError), still logged as a refusal.
local function abort(fake, req, status, why)
  fake.rejected[#fake.rejected + 1] = { method = req.method, path = req.path, status = status,
                                        message = why }
  return { status = status, headers = {}, body = "" }
end

local function path_of(p)
  if p == nil or p == "" then return WORKDIR end
  if p:sub(1, 1) ~= "/" then p = WORKDIR .. "/" .. p end
  return p
end

local function split(p)
  local parent, name = p:match("^(.*)/([^/]+)/*$")
  if not parent then return "/", "" end
  return parent == "" and "/" or parent, name
end

local function perm_string(kind, mode)
  local s = { kind == "directory" and "d" or kind == "symlink" and "L" or "-" }
  local letters = "rwxrwxrwx"
  for i = 8, 0, -1 do
    s[#s + 1] = (mode >> i) & 1 == 1 and letters:sub(9 - i, 9 - i) or "-"
  end
  return table.concat(s)
end

local function info_of(name, e)
  return { name = name, size = e.size or 0, mode = perm_string(e.type, e.mode or 0),
           permissions = ("%04o"):format(e.mode or 0), owner = "1000", group = "1000",
           isDir = e.type == "directory",
           modTime = os.date("!%Y-%m-%d %H:%M:%S.000000000 +0000 UTC", e.mtime or 0),
           modifiedAt = os.date("!%Y-%m-%dT%H:%M:%SZ", e.mtime or 0) }
end

-- {type, size, mode, mtime} of a path in the local sandbox, or nil, err.
local function stat(box, p)
  if p == "/" then return { type = "directory", size = 4096, mode = 493, mtime = os.time() } end
  local parent, name = split(p)
  local list, err = box:ls(parent)
  if not list then return nil, err end
  for _, e in ipairs(list) do if e.name == name then return e end end
  return nil, { code = "not_found" }
end

local ERR_STATUS = { not_found = 404, permission_denied = 403, already_exists = 409 }

local function fs_fail(fake, req, err)
  return abort(fake, req, ERR_STATUS[err and err.code] or 400, tostring(err and err.message))
end

-- Files -------------------------------------------------------------------------------------

local function files(fake, req, s, rest)
  local q = query(req.query)
  local p = path_of(q.path)
  local box, m = s.box, req.method
  if rest == "/files" and m == "GET" then
    local e, err = stat(box, p)
    if not e then return fs_fail(fake, req, err) end
    if e.type ~= "directory" then return abort(fake, req, 400, "not a directory") end
    local list, lerr = box:ls(p)
    if not list then return fs_fail(fake, req, lerr) end
    local out = {}
    for _, x in ipairs(list) do out[#out + 1] = info_of(x.name, x) end
    return reply(200, json.array(out))
  elseif rest == "/files/info" and m == "GET" then
    local e, err = stat(box, p)
    if not e then return fs_fail(fake, req, err) end
    local _, name = split(p)
    return reply(200, info_of(name, e))
  elseif rest == "/files/download" and m == "GET" then
    local e, err = stat(box, p)
    if not e then return fs_fail(fake, req, err) end
    if e.type == "directory" then return abort(fake, req, 400, "is a directory") end
    local data, rerr = box:read_file(p)
    if not data then return fs_fail(fake, req, rerr) end
    local pos = 1
    return { status = 200, headers = { ["Content-Type"] = "application/octet-stream" },
             body = function()
               if pos > #data then return nil end
               local chunk = data:sub(pos, pos + 262143)
               pos = pos + 262144
               return chunk
             end }
  elseif rest == "/files" and m == "DELETE" then
    local e, err = stat(box, p)
    if not e then return fs_fail(fake, req, err) end
    if e.type == "directory" and q.recursive ~= "true" then
      return abort(fake, req, 400, "a directory needs recursive=true")
    end
    local ok, rerr = box:rm(p, { recursive = q.recursive == "true" })
    if not ok then return fs_fail(fake, req, rerr) end
    return reply(204)
  elseif rest == "/files/folder" and m == "POST" then
    if not q.mode or not q.mode:match("^[0-7]+$") then
      return abort(fake, req, 400, "mode is required")
    end
    local ok, err = box:mkdir(p, { parents = true })
    if not ok then return fs_fail(fake, req, err) end
    return reply(201)
  elseif rest == "/files/permissions" and m == "POST" then
    local e, err = stat(box, p)
    if not e then return fs_fail(fake, req, err) end
    if q.mode and q.mode ~= "" then
      if not q.mode:match("^[0-7]+$") then return abort(fake, req, 400, "bad mode") end
      local r = box:exec({ "chmod", q.mode, p })
      if not r or r.exit_code ~= 0 then return abort(fake, req, 400, "chmod failed") end
    end
    return reply(200)
  elseif (rest == "/files/bulk-upload" or rest == "/files/upload") and m == "POST" then
    local ct = req.headers["content-type"] or ""
    if not ct:lower():find("^multipart/form%-data") then
      return fake:refuse(req, 400, "request Content-Type isn't multipart/form-data",
                         "BAD_REQUEST")
    end
    local parts, perr = multipart.parse(req.body or "", ct)
    if not parts then return fake:refuse(req, 400, perr.message, "INVALID_REQUEST_BODY") end
    local dests, datas = {}, {}
    for _, part in ipairs(parts) do
      local i, what = part.name:match("^files%[(%d+)%]%.(%a+)$")
      if rest == "/files/upload" and part.name == "file" then i, what = "0", "file" end
      if not i then return fake:refuse(req, 400, "unexpected part " .. part.name) end
      if what == "path" then dests[tonumber(i)] = part.data
      elseif what == "file" then datas[tonumber(i)] = part.data end
    end
    if rest == "/files/upload" then dests[0] = p end
    local done = {}
    for i = 0, #parts do
      if datas[i] ~= nil then
        if not dests[i] then return fake:refuse(req, 400, ("files[%d].path missing"):format(i)) end
        local dest = path_of(dests[i])
        local ok, err = box:write_file(dest, datas[i])
        if not ok then
          return reply(400, { errors = { tostring(err.message) }, files = done })
        end
        done[#done + 1] = { path = dest, bytes = #datas[i] }
      end
    end
    return reply(200, { files = json.array(done) })
  elseif rest == "/files/bulk-download" and m == "POST" then
    local b, r = fake:body(req)
    if not b then return r end
    if type(b.paths) ~= "table" or #b.paths == 0 then
      return fake:refuse(req, 400, "paths is required", "INVALID_REQUEST_BODY")
    end
    local parts = {}
    for _, src in ipairs(b.paths) do
      local e = type(src) == "string" and stat(box, path_of(src))
      local data = e and e.type ~= "directory" and box:read_file(path_of(src))
      if data then
        parts[#parts + 1] = { name = "file", filename = src, data = data }
      else
        parts[#parts + 1] = { name = "error", filename = tostring(src),
                              content_type = "application/json",
                              data = json.encode({ statusCode = 404, code = "FILE_NOT_FOUND",
                                                   message = "file not found: " ..
                                                             tostring(src) }) }
      end
    end
    local pieces, _, ctype = multipart.encode(parts)
    local i = 0
    return { status = 200, headers = { ["Content-Type"] = ctype },
             body = function() i = i + 1; return pieces[i] end }
  elseif rest == "/work-dir" and m == "GET" then
    return reply(200, { dir = WORKDIR })
  elseif rest == "/user-home-dir" and m == "GET" then
    return reply(200, { dir = WORKDIR })
  end
end

-- Processes ---------------------------------------------------------------------------------

local ENV_NAME = "^[%a_][%w_]*$"

local function execute(fake, req, s)
  local b, r = fake:body(req)
  if not b then return r end
  if type(b.command) ~= "string" or not b.command:find("%S") then
    return fake:refuse(req, 400, "command is required", "BAD_REQUEST")
  end
  for k, v in pairs(b.envs or {}) do
    if type(k) ~= "string" or not k:match(ENV_NAME) or type(v) ~= "string" then
      return fake:refuse(req, 400, "invalid environment variable " .. tostring(k), "BAD_REQUEST")
    end
  end
  local timeout = b.timeout
  if timeout ~= nil and (math.type(timeout) ~= "integer" or timeout < 0) then
    return fake:refuse(req, 400, "timeout must be an integer", "INVALID_REQUEST_BODY")
  end
  if fake.canned_exec then
    local res = fake.canned_exec(b.command)
    return reply(200, { exitCode = res.exit_code or 0,
                        result = (res.stdout or "") .. (res.stderr or "") })
  end
  local res, err = s.box:exec({ "/bin/sh" }, { stdin = b.command, env = b.envs,
                                               cwd = b.cwd and path_of(b.cwd) or WORKDIR,
                                               timeout = (timeout or 0) > 0 and timeout or nil })
  if not res then return reply(200, { exitCode = -1, result = tostring(err.message) }) end
  if res.timed_out then
    return fake:refuse(req, 408, "command execution timeout", "REQUEST_TIMEOUT")
  end
  return reply(200, { exitCode = res.exit_code, result = res.stdout .. res.stderr })
end

local function split_output(req)
  local v = req.headers["x-daytona-sdk-version"] or ""
  if v:find("dev", 1, true) then return true end
  local a, b = v:match("^(%d+)%.(%d+)")
  return a ~= nil and (tonumber(a) > 0 or tonumber(b) >= 167)
end

-- Line by line, each line re-emitted with "\n" (the daemon's log reader).
local function lines(s)
  if s ~= "" and s:sub(-1) ~= "\n" then return s .. "\n" end
  return s
end

local function command_json(cmd)
  return { id = cmd.id, command = cmd.command, exitCode = cmd.exit_code }
end

local function run_async(s, cmd)
  local p, err = s.box:spawn({ "/bin/sh", "-c", cmd.command }, { cwd = WORKDIR })
  if not p then
    cmd.stderr, cmd.exit_code = tostring(err.message) .. "\n", 127
    return
  end
  cmd.proc = p
  cmd.task = sandlot.spawn(function()
    pcall(function()                       -- the session may be deleted under it
      while true do
        local stream, data = p:read()
        if stream == nil then break end
        cmd[stream] = cmd[stream] .. data
      end
      local r = p:wait()
      cmd.exit_code = r and r.exit_code or -1
    end)
    cmd.exit_code = cmd.exit_code or 137
    p:close()
    cmd.proc = nil
  end)
end

local function sessions(fake, req, s, rest)
  local m = req.method
  if rest == "/process/session" then
    if m == "GET" then
      local out = {}
      for _, sess in pairs(s.sessions) do
        local cmds = {}
        for _, c in ipairs(sess.list) do cmds[#cmds + 1] = command_json(c) end
        out[#out + 1] = { sessionId = sess.id, commands = json.array(cmds) }
      end
      return reply(200, json.array(out))
    elseif m == "POST" then
      local b, r = fake:body(req)
      if not b then return r end
      if type(b.sessionId) ~= "string" or b.sessionId == "" then
        return fake:refuse(req, 400, "sessionId is required", "INVALID_REQUEST_BODY")
      end
      if s.sessions[b.sessionId] or b.sessionId == "entrypoint" then
        return fake:refuse(req, 409, "session already exists", "CONFLICT")
      end
      s.sessions[b.sessionId] = { id = b.sessionId, commands = {}, list = {} }
      return reply(201)
    end
    return
  end
  local sid, tail = rest:match("^/process/session/([^/]+)(.*)$")
  if not sid then return end
  sid = unescape(sid)
  if sid == "entrypoint" and tail == "/exec" then
    return fake:refuse(req, 400, "cannot execute commands in the entrypoint session",
                       "BAD_REQUEST")
  end
  local sess = s.sessions[sid]
  if not sess then return fake:refuse(req, 404, "session not found", "NOT_FOUND") end
  if tail == "" and m == "GET" then
    local cmds = {}
    for _, c in ipairs(sess.list) do cmds[#cmds + 1] = command_json(c) end
    return reply(200, { sessionId = sid, commands = json.array(cmds) })
  elseif tail == "" and m == "DELETE" then
    fake:end_session(sess)
    s.sessions[sid] = nil
    return reply(204)
  elseif tail == "/exec" and m == "POST" then
    local b, r = fake:body(req)
    if not b then return r end
    if type(b.command) ~= "string" or not b.command:find("%S") then
      return fake:refuse(req, 400, "command is required", "BAD_REQUEST")
    end
    local cmd = { id = require("sandlot.id").hex(8), command = b.command, stdout = "",
                  stderr = "" }
    sess.commands[cmd.id], sess.list[#sess.list + 1] = cmd, cmd
    if b.runAsync or b.async then
      run_async(s, cmd)
      return reply(202, { cmdId = cmd.id })
    end
    local res = s.box:exec({ "/bin/sh", "-c", b.command }, { cwd = WORKDIR })
    cmd.stdout, cmd.stderr = lines(res and res.stdout or ""), lines(res and res.stderr or "")
    cmd.exit_code = res and res.exit_code or -1
    if split_output(req) then
      return reply(200, { cmdId = cmd.id, output = cmd.stdout .. cmd.stderr,
                          stdout = cmd.stdout, stderr = cmd.stderr, exitCode = cmd.exit_code })
    end
    return reply(200, { cmdId = cmd.id, output = cmd.stdout .. cmd.stderr,
                        exitCode = cmd.exit_code })
  end
  local cid, ctail = tail:match("^/command/([^/]+)(.*)$")
  local cmd = cid and sess.commands[unescape(cid)]
  if not cmd then return fake:refuse(req, 404, "command not found", "NOT_FOUND") end
  if ctail == "" and m == "GET" then return reply(200, command_json(cmd)) end
  if ctail == "/logs" and m == "GET" then
    local o, e = lines(cmd.stdout), lines(cmd.stderr)
    if split_output(req) then
      return reply(200, { output = o .. e, stdout = o, stderr = e })
    end
    return reply(200, o .. e, "text/plain")
  end
  if ctail == "/input" and m == "POST" then
    local b, r = fake:body(req)
    if not b then return r end
    if type(b.data) ~= "string" then
      return fake:refuse(req, 400, "data is required", "INVALID_REQUEST_BODY")
    end
    if not cmd.proc then
      return fake:refuse(req, 410, "command has already completed", "COMMAND_ALREADY_COMPLETED")
    end
    cmd.proc:write(b.data)
    return reply(204)
  end
end

---Routes one toolbox request for sandbox s (rest: the path after /toolbox/{id}).
function M.route(fake, req, s, rest)
  local r
  if fake.canned_exec and rest ~= "/process/execute" and rest ~= "/work-dir"
     and rest ~= "/user-home-dir" then
    return reply(501, { statusCode = 501, message = "not served by a canned fake" })
  end
  if rest == "/process/execute" and req.method == "POST" then r = execute(fake, req, s)
  elseif rest:find("^/process/session") then r = sessions(fake, req, s, rest)
  else r = files(fake, req, s, rest) end
  if r then return r end
  return fake:refuse(req, 404, "Cannot " .. req.method .. " " .. rest, "NOT_FOUND")
end

return M
