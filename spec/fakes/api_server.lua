-- spec/fakes/api_server.lua: starts spec/fakes/api_server.c (compiled once per run with cc)
-- on 127.0.0.1; stop() kills it. See the C file for its routes.
local h = require("spec.helper")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/fakes"
local src = here .. "/api_server.c"

---Starts a server; returns {url, stop()}.
function M.start()
  local p, port = h.start_server({ (h.build_c(src, "api_server")) }, "the fake API server")
  local srv = { url = "http://127.0.0.1:" .. port }
  function srv.stop()
    p:kill("KILL")
    p:wait()
    p:close()
  end
  return srv
end

function M.cleanup() h.forget_c(src) end

return M
