-- spec/fakes/boxes_server.lua: runs the "boxes" fake (spec/fakes/boxes.lua) as a CGI program
-- under busybox httpd on 127.0.0.1, in a temporary directory; stop() kills it and removes the
-- directory. The CGI wrapper's #! line is this host's sandlot binary.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local h = require("spec.helper")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/fakes"

local function abs(p)
  if p:sub(1, 1) == "/" then return p end
  return (os.getenv("PWD") or ".") .. "/" .. p
end

---Starts the fake; returns {url, token, home, stop()} or nil, why.
function M.start()
  local bin = os.getenv("SANDLOT_BIN")
  if not bin then return nil, "SANDLOT_BIN is not set (make test sets it)" end
  local dir = h.tmpdir()
  local token = "bx_" .. require("sandlot._id").hex(12)
  assert(sandlot.proc.run({ "mkdir", "-p", dir .. "/cgi-bin", dir .. "/boxes" }))
  local f = assert(io.open(dir .. "/token", "wb"))
  f:write(token)
  f:close()
  f = assert(io.open(dir .. "/cgi-bin/boxes", "wb"))
  f:write(("#!%s\nBOXES_HOME = %q\nreturn dofile(%q)\n"):format(bin, dir,
                                                               abs(here .. "/boxes.lua")))
  f:close()
  assert(sandlot.proc.run({ "chmod", "755", dir .. "/cgi-bin/boxes" }))
  for _ = 1, 20 do
    local port = math.random(20000, 60000)
    local p = assert(sandlot.proc.spawn({ "busybox", "httpd", "-f", "-p", "127.0.0.1:" .. port,
                                          "-h", dir }))
    local url = "http://127.0.0.1:" .. port .. "/cgi-bin/boxes"
    local up = h.eventually(function()
      if not p:running() then return true end
      local res = http.request{ url = url .. "/v1/boxes/0", timeout = 5, retry = false }
      return res ~= nil
    end, 10)
    if up and p:running() then
      local srv = { url = url, token = token, home = dir }
      function srv.stop()
        p:kill("KILL")
        p:wait()
        p:close()
        h.rmtree(dir)
      end
      return srv
    end
    p:kill("KILL")
    p:wait()
    p:close()
  end
  h.rmtree(dir)
  return nil, "busybox httpd did not start"
end

return M
