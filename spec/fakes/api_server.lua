-- spec/fakes/api_server.lua: starts spec/fakes/api_server.c (compiled once per run with cc)
-- on 127.0.0.1; stop() kills it. See the C file for its routes.
local sandlot = require("sandlot")
local h = require("spec.helper")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/fakes"
local built

---Starts a server; returns {url, stop()}.
function M.start()
  if not built then
    local dir = h.tmpdir()
    local bin = dir .. "/api_server"
    local r = assert(sandlot.proc.run({ "cc", "-O2", "-pthread", "-o", bin,
                                        here .. "/api_server.c" }, { timeout = 120 }))
    assert(r.exit_code == 0, "cannot compile the fake API server: " .. r.stderr)
    built = { dir = dir, bin = bin }
  end
  local p = assert(sandlot.proc.spawn({ built.bin }, { stream = true }))
  local line = ""
  sandlot.timeout(10, function()
    while not line:find("\n") do
      local chunk = p:read()
      if not chunk then break end
      line = line .. chunk
    end
  end)
  local port = line:match("port (%d+)")
  if not port then
    p:kill("KILL")
    p:wait()
    p:close()
    error("the fake API server did not start: " .. line)
  end
  local srv = { url = "http://127.0.0.1:" .. port }
  function srv.stop()
    p:kill("KILL")
    p:wait()
    p:close()
  end
  return srv
end

function M.cleanup()
  if built then h.rmtree(built.dir) end
  built = nil
end

return M
