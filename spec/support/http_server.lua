-- spec/support/http_server.lua: starts spec/support/http_server.c (compiled once per run with
-- cc into a temporary directory) on 127.0.0.1 and a unix socket; stop() kills it.
local h = require("spec.helper")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
local src = here .. "/http_server.c"

---Starts a server; returns {url, socket, stop()}.
function M.start()
  local bin, dir = h.build_c(src, "http_server")
  local sock = ("%s/http-%d.sock"):format(dir, math.random(1, 1e9))
  local p, port = h.start_server({ bin, "-u", sock }, "the test server")
  local srv = { url = "http://127.0.0.1:" .. port, socket = sock, proc = p }
  function srv.stop()
    p:kill("KILL")
    p:wait()
    p:close()
    os.remove(sock)
  end
  return srv
end

function M.cleanup() h.forget_c(src) end

return M
