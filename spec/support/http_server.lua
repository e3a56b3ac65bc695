-- spec/support/http_server.lua: starts spec/support/http_server.c (compiled once per run with
-- cc into a temporary directory) on 127.0.0.1 and a unix socket; stop() kills it.
local sandlot = require("sandlot")
local h = require("spec.helper")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
local built                               -- {dir, bin}: one compile per busted run

local function build()
  if built then return built end
  local dir = h.tmpdir()
  local bin = dir .. "/http_server"
  local r = assert(sandlot.proc.run({ "cc", "-O2", "-pthread", "-o", bin,
                                      here .. "/http_server.c" }, { timeout = 120 }))
  assert(r.exit_code == 0, "cannot compile the test server: " .. r.stderr)
  built = { dir = dir, bin = bin }
  return built
end

---Starts a server; returns {url, socket, stop()}.
function M.start()
  local b = build()
  local sock = ("%s/http-%d.sock"):format(b.dir, math.random(1, 1e9))
  local p = assert(sandlot.proc.spawn({ b.bin, "-u", sock }, { stream = true }))
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
    p:close()
    error("the test server did not start: " .. line)
  end
  local srv = { url = "http://127.0.0.1:" .. port, socket = sock, proc = p }
  function srv.stop()
    p:kill("KILL")
    p:wait()
    p:close()
    os.remove(sock)
  end
  return srv
end

function M.cleanup()
  if built then h.rmtree(built.dir) end
  built = nil
end

return M
