-- spec/fakes/_base.lua: what the strict fakes share: query strings parsed as the services' Go
-- servers parse them, JSON answers, the two logs (fake.rejected: a request a correct client
-- never sends; fake.denied: the service's word on the world, which a correct client meets
-- too), and injected faults. Each fake keeps its own error bodies.
local json = require("sandlot.wire.json")

local M = {}

---Percent-decoding with + as a space (Go's url.QueryUnescape).
function M.unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
local unescape = M.unescape

---Parses a raw query string (Go's url.ParseQuery). First value wins; with `all`, every key
---maps to the list of its values.
---@param raw? string
---@param all? boolean
function M.query(raw, all)
  local q = {}
  for pair in (raw or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape(k)
    if all then
      q[k] = q[k] or {}
      q[k][#q[k] + 1] = unescape(v)
    elseif q[k] == nil then
      q[k] = unescape(v)
    end
  end
  return q
end

---An answer for sandlot.http.serve: a table body is sent as JSON.
function M.answer(status, body, headers)
  headers = headers or {}
  if type(body) == "table" then
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
    body = json.encode(body)
  end
  return { status = status, headers = headers, body = body or "" }
end

---Adds to a fake's class: fake:rejects(req, status, why) and fake:denies(req, status, extra)
---(the two logs), fake:inject(fault) and fake:fault(route [, name]) -> the first injected
---fault whose route ("METHOD /path": a prefix, a Lua pattern of the whole route, or the exact
---name given) matches, counted down by its `times` (default 1).
function M.install(Fake)
  function Fake:rejects(req, status, why)
    self.rejected[#self.rejected + 1] = { method = req.method, path = req.path, status = status,
                                          why = why }
  end

  function Fake:denies(req, status, extra)
    local entry = { method = req.method, path = req.path, status = status }
    for k, v in pairs(extra or {}) do entry[k] = v end
    self.denied[#self.denied + 1] = entry
  end

  function Fake:inject(f) self.faults[#self.faults + 1] = f end

  function Fake:fault(route, name)
    for i, f in ipairs(self.faults) do
      if (name and f.route == name) or route:find(f.route, 1, true) == 1
         or route:match("^" .. f.route .. "$") then
        f.times = (f.times or 1) - 1
        if f.times <= 0 then table.remove(self.faults, i) end
        return f
      end
    end
  end
end

---The server table's rejected(): one line per refusal, for spec/fakes/check/run.lua.
function M.rejected_lines(fake)
  return function()
    local out = {}
    for _, r in ipairs(fake.rejected) do
      out[#out + 1] = ("%s %s -> %d: %s"):format(r.method, r.path, r.status, tostring(r.why))
    end
    return out
  end
end

return M
