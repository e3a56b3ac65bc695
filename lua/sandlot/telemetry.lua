-- sandlot.telemetry: spans around every public operation. Events are
-- {"sandlot", <op>, "start"|"stop"|"exception"}; handlers get (event, measurements, metadata)
-- with metadata redacted; a handler that raises is detached with a warning. SANDLOT_TELEMETRY
-- names a JSON-lines file that receives one record per stop and exception.
local timer = require("sandlot.core.timer")
local redact = require("sandlot._redact")

local M = {}

local handlers = {}       -- id -> {events = {{...}, ...}, fn = fn}
local order = {}          -- ids in attach order
local active = false      -- any handler attached: the fast path skips all work otherwise

local function matches(pattern, event)
  if #pattern ~= #event then return false end
  for i = 1, #pattern do
    if pattern[i] ~= "*" and pattern[i] ~= event[i] then return false end
  end
  return true
end

---Attaches handler(event, measurements, metadata) to a list of events. A segment "*" matches
---any value. Raises when the id is already attached.
---@param id string
---@param events string[][]
---@param handler fun(event: string[], measurements: table, metadata: table)
function M.attach(id, events, handler)
  assert(type(id) == "string", "telemetry.attach: id must be a string")
  assert(type(events) == "table", "telemetry.attach: events must be a list of event lists")
  assert(type(handler) == "function", "telemetry.attach: handler must be a function")
  if type(events[1]) == "string" then events = { events } end
  if handlers[id] then error("telemetry.attach: " .. id .. " is already attached", 2) end
  handlers[id] = { events = events, fn = handler }
  order[#order + 1] = id
  active = true
  M._active = true
  return true
end

---Detaches a handler; false when it was not attached.
---@param id string
---@return boolean
function M.detach(id)
  if not handlers[id] then return false end
  handlers[id] = nil
  for i = #order, 1, -1 do
    if order[i] == id then table.remove(order, i) end
  end
  active = #order > 0
  M._active = active
  return true
end

---Emits one event to the handlers attached to it.
function M.execute(event, measurements, metadata)
  if not active then return end
  metadata = redact.scrub(metadata or {})      -- names and values: no secret gets through
  for i = 1, #order do
    local id = order[i]
    local h = handlers[id]
    if h then
      for j = 1, #h.events do
        if matches(h.events[j], event) then
          local ok, err = pcall(h.fn, event, measurements, metadata)
          if not ok then
            M.detach(id)
            io.stderr:write(("sandlot: warning: telemetry handler %q raised and was detached: %s\n")
              :format(id, tostring(err)))
          end
          break
        end
      end
    end
  end
end

local function finish(op, meta, t0, ok, ...)
  local dur = timer.now() - t0
  if not ok then
    local err = ...
    local m = meta
    m.kind, m.reason = "error", tostring(err)
    if type(err) == "table" and err.code then m.error = err.code end
    M.execute({ "sandlot", op, "exception" }, { duration = dur }, m)
    error(err, 0)
  end
  local first, second = ...
  if first == nil and type(second) == "table" and second.code then
    meta.error, meta.reason, meta.kind = second.code, tostring(second), "returned"
    M.execute({ "sandlot", op, "exception" }, { duration = dur }, meta)
  else
    M.execute({ "sandlot", op, "stop" }, { duration = dur }, meta)
  end
  return ...
end

---Runs fn(...) inside a span named op: emits start, then stop (or exception when fn raises
---or returns nil, err) with the duration in nanoseconds. Returns fn's results.
---@param op string
---@param meta table
---@param fn function
function M.span(op, meta, fn, ...)
  if not active then return fn(...) end
  local t0 = timer.now()
  M.execute({ "sandlot", op, "start" }, { system_time = os.time() }, meta)
  return finish(op, meta, t0, pcall(fn, ...))
end

---Reports progress of a long operation op (an image pull, a wait for a cloud sandbox, a big
---transfer): event {"sandlot", op, "progress"} with measurements {done?, total?, elapsed?}
---and metadata {what, provider?, unit? = "bytes"}. Free when nothing is attached. On a
---terminal the host shows these on one line of stderr (sandlot._progress).
---@param op string
---@param measurements table
---@param metadata table
function M.progress(op, measurements, metadata)
  if not active then return end
  M.execute({ "sandlot", op, "progress" }, measurements, metadata)
end

---The W3C traceparent header value of the running span, for outgoing HTTP calls; nil unless
---an exporter (sandlot.otlp) provides one.
---@return string|nil
function M.traceparent() return nil end
M._no_traceparent = M.traceparent   -- sandlot.http skips the call while this one is in place

---Tells whether any handler is attached (callers may skip building metadata otherwise).
function M.active() return active end
M._active = false                   -- the same as a field, for sandlot.http's per-request path

-- JSON-lines sink ---------------------------------------------------------------------------

local function json_safe(v, depth)
  local t = type(v)
  if t == "string" or t == "boolean" or (t == "number" and v == v and v ~= math.huge
      and v ~= -math.huge) then
    return v
  elseif t == "table" and depth < 5 then
    local out = {}
    for k, x in pairs(v) do
      out[tostring(k)] = json_safe(x, depth + 1)
    end
    return out
  end
  return tostring(v)
end

---Attaches a handler that appends one JSON object per stop and exception to path.
---@param path string
---@return boolean|nil ok, string? err
function M.jsonl(path)
  local cjson = require("cjson")
  local f, err = io.open(path, "a")
  if not f then return nil, err end
  f:setvbuf("line")
  local events = { { "sandlot", "*", "stop" }, { "sandlot", "*", "exception" } }
  M.attach("sandlot.jsonl:" .. path, events,
    function(event, measurements, metadata)
      f:write(cjson.encode({
        event = table.concat(event, "."),
        duration_ns = measurements.duration,
        time = os.time(),
        metadata = json_safe(metadata, 0),
      }), "\n")
    end)
  return true
end

local sink = os.getenv("SANDLOT_TELEMETRY")
if sink and sink ~= "" then
  local ok, err = M.jsonl(sink)
  if not ok then io.stderr:write("sandlot: warning: SANDLOT_TELEMETRY: ", tostring(err), "\n") end
end

return M
