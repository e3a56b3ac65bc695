-- spec/fakes/boxes.lua: "boxes", a small fake sandbox service for the HTTP provider of
-- providers/README.md (spec/fakes/boxes_provider.lua). It runs as a CGI program under busybox
-- httpd (spec/fakes/boxes_server.lua starts it), one sandlot host per request, and is built on
-- the same wire modules as the providers. Strict like a real service: a missing or wrong
-- token is 401 (and the answer echoes the header it got, as careless services do), unknown
-- fields are 400, unknown boxes 404, exec on a box still starting 409; while the file
-- <home>/limit holds a number n > 0, a create is 429 with Retry-After: 1 (and n goes down).
-- A box is a directory; its commands run on this host in that directory with a clean
-- environment (no isolation: for tests of the kit, not of sandboxing).
--   POST   /v1/boxes            {image?, env?}             -> 201 {id, state = "starting"}
--   GET    /v1/boxes/{id}                                  -> 200 {id, state, image}
--   DELETE /v1/boxes/{id}                                  -> 204
--   POST   /v1/boxes/{id}/exec  {argv, env?, cwd?, stdin?, timeout?}
--     -> 200 NDJSON: {"stream": "stdout"|"stderr", "data": base64}..., then
--        {"exit_code", "timed_out"} or {"error": {"code", "message"}}
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")
local b64 = require("sandlot.wire.base64")

local home = assert(BOXES_HOME, "BOXES_HOME is set by the CGI wrapper")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local REASONS = { [200] = "OK", [201] = "Created", [204] = "No Content", [400] = "Bad Request",
                  [401] = "Unauthorized", [404] = "Not Found", [409] = "Conflict" }

local function head(status, ctype)
  io.write(("Status: %d %s\r\nContent-Type: %s\r\n\r\n"):format(status, REASONS[status] or "X",
                                                               ctype or "application/json"))
end

local function answer(status, value)
  head(status)
  if value ~= nil then io.write(json.encode(value)) end
end

local function refuse(status, code, message)
  answer(status, { error = { code = code, message = message } })
end

-- the request body as JSON, with only the known fields
local function body(known)
  local text = io.read("a") or ""
  if text == "" then return {} end
  local v = json.decode(text)
  if type(v) ~= "table" then return nil, "the body is not a JSON object" end
  for k in pairs(v) do
    if not known[k] then return nil, "unknown field " .. tostring(k) end
  end
  return v
end

local function meta_path(id) return home .. "/boxes/" .. id .. "/meta.json" end

local function load(id)
  if not id:match("^[0-9a-f]+$") then return nil end
  local m = read(meta_path(id))
  return m and json.decode(m)
end

local function create()
  local limit = tonumber(read(home .. "/limit") or "")   -- the admission spec's rate limit
  if limit and limit > 0 then
    write(home .. "/limit", tostring(limit - 1))
    io.write("Status: 429 Too Many Requests\r\nRetry-After: 1\r\n" ..
             "Content-Type: application/json\r\n\r\n")
    io.write(json.encode({ error = { code = "rate_limited", message = "slow down" } }))
    return
  end
  local req, why = body({ image = true, env = true })
  if not req then return refuse(400, "invalid_argument", why) end
  local id = require("sandlot.id").hex(8)
  sandlot.proc.run({ "mkdir", "-p", home .. "/boxes/" .. id .. "/root" })
  local m = { id = id, state = "starting", image = req.image or "plain", env = req.env or {},
              reads = 0 }
  write(meta_path(id), json.encode(m))
  answer(201, { id = id, state = m.state })
end

local function get(id)
  local m = load(id)
  if not m then return refuse(404, "not_found", "no such box " .. id) end
  m.reads = m.reads + 1
  if m.state == "starting" and m.reads >= 2 then m.state = "running" end   -- ready a bit later
  write(meta_path(id), json.encode(m))
  answer(200, { id = m.id, state = m.state, image = m.image })
end

local function delete(id)
  if not load(id) then return refuse(404, "not_found", "no such box " .. id) end
  sandlot.proc.run({ "rm", "-rf", home .. "/boxes/" .. id })
  head(204)
end

local function exec(id)
  local m = load(id)
  if not m then return refuse(404, "not_found", "no such box " .. id) end
  if m.state ~= "running" then return refuse(409, "failed_precondition", "box is " .. m.state) end
  local req, why = body({ argv = true, env = true, cwd = true, stdin = true, timeout = true })
  if not req then return refuse(400, "invalid_argument", why) end
  if type(req.argv) ~= "table" or #req.argv == 0 then
    return refuse(400, "invalid_argument", "argv must be a non-empty list")
  end
  local root = home .. "/boxes/" .. id .. "/root"
  local cwd = root
  if req.cwd then
    if req.cwd:find("%.%.") then return refuse(400, "invalid_argument", "cwd leaves the box") end
    cwd = root .. "/" .. req.cwd:gsub("^/+", "")
  end
  local env = { PATH = "/usr/bin:/bin", HOME = root }
  for k, v in pairs(m.env) do env[k] = v end
  for k, v in pairs(req.env or {}) do env[k] = v end
  for k, v in pairs(env) do if v == false then env[k] = nil end end
  local stdin
  if req.stdin then
    stdin = b64.decode(req.stdin)
    if not stdin then return refuse(400, "invalid_argument", "stdin is not base64") end
  end
  head(200, "application/x-ndjson")
  io.stdout:setvbuf("no")
  local function emit(stream)
    return function(data)
      io.write(json.encode({ stream = stream, data = b64.encode(data) }), "\n")
    end
  end
  local r, err = sandlot.proc.run(req.argv, { cwd = cwd, env = env, clear_env = true,
                                              stdin = stdin, timeout = req.timeout,
                                              on_stdout = emit("stdout"),
                                              on_stderr = emit("stderr") })
  if not r then
    io.write(json.encode({ error = { code = err.code, message = err.message } }), "\n")
  else
    io.write(json.encode({ exit_code = r.exit_code, timed_out = r.timed_out }), "\n")
  end
end

local method, path = os.getenv("REQUEST_METHOD"), os.getenv("PATH_INFO") or ""
local token = read(home .. "/token")
local auth = os.getenv("HTTP_AUTHORIZATION")
if auth ~= "Bearer " .. token then
  return refuse(401, "unauthenticated", "invalid credentials: " .. tostring(auth))
end
local id, tail = path:match("^/v1/boxes/([^/]+)(.*)$")
if method == "POST" and path == "/v1/boxes" then return create() end
if id and tail == "" and method == "GET" then return get(id) end
if id and tail == "" and method == "DELETE" then return delete(id) end
if id and tail == "/exec" and method == "POST" then return exec(id) end
refuse(404, "not_found", "no route " .. tostring(method) .. " " .. path)
