-- spec/fakes/hello.lua: the smallest strict fake on sandlot.http.serve, the worked example of
-- `make check-fakes` (spec/fakes/check/hello.mjs drives it with Node's fetch). It wants
-- `Authorization: Bearer <token>` and JSON on POST, and keeps every request it rejected.
--   GET  /v1/hello           -> 200 {"hello": "world"}
--   POST /v1/echo  {..}      -> 200 the same object
local http = require("sandlot.http")
local json = require("sandlot.wire.json")

local M = {}

---Starts the fake; returns {url, token, stop(), rejected()} (rejected: the requests it refused).
function M.start()
  local token = "hello-" .. tostring(math.random(1e9))
  local refused = {}
  local function reject(req, status, why)
    refused[#refused + 1] = ("%s %s: %d %s"):format(req.method, req.path, status, why)
    return { status = status, headers = { ["Content-Type"] = "application/json" },
             body = json.encode({ error = why }) }
  end
  local srv = assert(http.serve({ handler = function(req)
    if req.headers.authorization ~= "Bearer " .. token then
      return reject(req, 401, "missing or wrong token")
    end
    if req.method == "GET" and req.path == "/v1/hello" then
      return { status = 200, headers = { ["Content-Type"] = "application/json" },
               body = json.encode({ hello = "world" }) }
    elseif req.method == "POST" and req.path == "/v1/echo" then
      if not (req.headers["content-type"] or ""):find("^application/json") then
        return reject(req, 415, "wants application/json")
      end
      local v = json.decode(req.body)
      if type(v) ~= "table" then return reject(req, 400, "malformed JSON") end
      return { status = 200, headers = { ["Content-Type"] = "application/json" },
               body = json.encode(v) }
    end
    return reject(req, 404, "no route")
  end }))
  return { url = srv.url, token = token, stop = function() srv:close() end,
           rejected = function() return refused end }
end

return M
