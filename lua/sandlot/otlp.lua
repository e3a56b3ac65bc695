-- sandlot.otlp: OpenTelemetry export of sandlot's spans as OTLP/HTTP JSON. With
-- SANDLOT_OTLP_ENDPOINT=http://host:4318 (or otlp.start{endpoint = ...}) every telemetry span
-- becomes an OTLP span, posted in batches to <endpoint>/v1/traces with the standard resource
-- attributes. One trace per host process; within a task, spans nest by their order. Provider
-- HTTP calls carry a W3C `traceparent` header naming the span they run in.
--
-- Export never blocks or fails an operation: spans are queued, a batch leaves when the task's
-- outermost span ends (or at BATCH spans) as one short task of its own (bounded by TIMEOUT),
-- and when the collector is down or slow the batch is dropped and counted (otlp.stats()).
local telemetry = require("sandlot.telemetry")
local timer = require("sandlot.core.timer")
local id = require("sandlot.id")

local M = {}

M.ID = "sandlot.otlp"
M.BATCH = 512             -- spans per request, at most
M.MAX_QUEUE = 8192        -- spans waiting; past it new ones are dropped and counted
M.TIMEOUT = 5             -- seconds one export may take

local state                -- nil when off: {endpoint, url, trace_id, queue, stacks, ...}

-- Wall-clock nanoseconds: the monotonic clock, anchored once to the wall clock.
local wall0, mono0
local function now_ns()
  if not wall0 then
    wall0, mono0 = os.time() * 1000000000, timer.now()
  end
  return wall0 + (timer.now() - mono0)
end

local function attr(k, v)
  local t = math.type(v)
  local value
  if t == "integer" then value = { intValue = tostring(v) }
  elseif t == "float" then value = { doubleValue = v }
  elseif type(v) == "boolean" then value = { boolValue = v }
  else value = { stringValue = tostring(v) } end
  return { key = k, value = value }
end

-- OTEL_RESOURCE_ATTRIBUTES="k=v,k2=v2" and the standard ones.
local function resource()
  local attrs, seen = {}, {}
  local function add(k, v)
    if not seen[k] then
      seen[k] = true
      attrs[#attrs + 1] = attr(k, v)
    end
  end
  add("service.name", os.getenv("OTEL_SERVICE_NAME") ~= "" and os.getenv("OTEL_SERVICE_NAME")
                      or "sandlot")
  for kv in (os.getenv("OTEL_RESOURCE_ATTRIBUTES") or ""):gmatch("[^,]+") do
    local k, v = kv:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k and k ~= "" then add(k, v) end
  end
  local sandlot_version = require("sandlot.core").version
  add("service.version", sandlot_version)
  add("telemetry.sdk.name", "sandlot")
  add("telemetry.sdk.language", "lua")
  add("telemetry.sdk.version", sandlot_version)
  local sys = require("sandlot.core.sys")
  add("process.pid", sys.getpid())
  local h = io.open("/proc/sys/kernel/hostname", "r")
  if h then
    add("host.name", (h:read("l") or "?"))
    h:close()
  end
  return { attributes = attrs }
end

local function key_of()
  return coroutine.running()
end

local function is_own(meta)
  return type(meta.url) == "string" and meta.url:sub(1, #state.url) == state.url
end

local flush

local function on_event(event, _m, meta)
  local s = state
  if not s then return end
  local key = key_of()
  local stack = s.stacks[key]
  if event[3] == "start" then
    if not stack then
      stack = {}
      s.stacks[key] = stack
    end
    local parent = stack[#stack]
    stack[#stack + 1] = { name = event[2], span_id = id.hex(8),
                          parent = parent and parent.span_id or nil, start = now_ns() }
    return
  end
  if not stack or #stack == 0 then return end          -- started before export began
  local sp = table.remove(stack)
  if #stack == 0 then s.stacks[key] = nil end
  if is_own(meta) then return end                       -- the exporter's own requests
  local attrs = {}
  for k, v in pairs(meta) do
    local t = type(v)
    if (t == "string" or t == "number" or t == "boolean") and k ~= "kind" and k ~= "reason" then
      attrs[#attrs + 1] = attr("sandlot." .. tostring(k), v)
    end
  end
  table.sort(attrs, function(a, b) return a.key < b.key end)
  local failed = event[3] == "exception"
  local span = {
    traceId = s.trace_id, spanId = sp.span_id, parentSpanId = sp.parent,
    name = "sandlot." .. sp.name,
    kind = sp.name:match("^http") and 3 or 1,           -- CLIENT for HTTP, else INTERNAL
    startTimeUnixNano = string.format("%d", sp.start),
    endTimeUnixNano = string.format("%d", now_ns()),
    attributes = attrs,
    status = failed and { code = 2, message = tostring(meta.reason or meta.error or "error") }
             or { code = 1 },
  }
  if #s.queue >= M.MAX_QUEUE then
    s.dropped = s.dropped + 1
  else
    s.queue[#s.queue + 1] = span
  end
  if #stack == 0 or #s.queue >= M.BATCH then flush() end
end

local function encode(spans)
  return {
    resourceSpans = { {
      resource = state.resource,
      scopeSpans = { { scope = { name = "sandlot", version = require("sandlot.core").version },
                       spans = spans } },
    } },
  }
end

-- Sends what is queued, in batches, as one task of its own; a second flush while one runs
-- waits for the next span end.
flush = function()
  local s = state
  if not s or s.sending or #s.queue == 0 then return end
  s.sending = true
  require("sandlot.task").spawn(function()
    local http = require("sandlot.http")
    while state == s and #s.queue > 0 do
      local n = math.min(M.BATCH, #s.queue)
      local batch, rest = table.move(s.queue, 1, n, 1, {}), table.move(s.queue, n + 1, #s.queue, 1, {})
      s.queue = rest
      local res = http.request({ method = "POST", url = s.url, json = encode(batch),
                                 timeout = M.TIMEOUT, connect_timeout = M.TIMEOUT,
                                 retry = false })
      if res and res.status >= 200 and res.status < 300 then
        s.exported = s.exported + #batch
      else
        s.dropped = s.dropped + #batch
        s.last_error = res and ("HTTP " .. res.status) or "collector unreachable"
      end
    end
    s.sending = false
  end)
end

---The W3C traceparent of the running task's current span ("00-<trace>-<span>-01"), or nil.
---@return string|nil
function M.traceparent()
  local s = state
  if not s then return nil end
  local stack = s.stacks[key_of()]
  local top = stack and stack[#stack]
  if not top then return nil end
  return ("00-%s-%s-01"):format(s.trace_id, top.span_id)
end

---Starts exporting to opts.endpoint (default $SANDLOT_OTLP_ENDPOINT): an OTLP/HTTP base URL
---such as http://localhost:4318. Returns true, or nil, err for a bad endpoint.
---@param opts? {endpoint?: string}
---@return true|nil ok, sandlot.Error? err
function M.start(opts)
  local endpoint = (opts and opts.endpoint) or os.getenv("SANDLOT_OTLP_ENDPOINT")
  if type(endpoint) ~= "string" or not endpoint:match("^https?://[^/]") then
    return nil, require("sandlot.errors").new("invalid_input",
      ("otlp: the endpoint must be an http:// or https:// URL, got %q")
        :format(tostring(endpoint):sub(1, 80)))
  end
  if state then M.stop() end
  local base = endpoint:gsub("/+$", "")
  state = { endpoint = base, url = base .. "/v1/traces", trace_id = id.hex(16), queue = {},
            stacks = setmetatable({}, { __mode = "k" }), exported = 0, dropped = 0,
            resource = resource() }
  telemetry.traceparent = M.traceparent
  telemetry.attach(M.ID, { { "sandlot", "*", "start" }, { "sandlot", "*", "stop" },
                           { "sandlot", "*", "exception" } }, on_event)
  return true
end

---Stops exporting (what is queued is dropped, and counted).
function M.stop()
  if not state then return end
  telemetry.detach(M.ID)
  telemetry.traceparent = function() return nil end
  state.dropped = state.dropped + #state.queue
  state = nil
end

---Sends what is queued now and waits (at most TIMEOUT seconds per batch) until it has left.
function M.flush()
  local s = state
  if not s then return end
  flush()
  local deadline = timer.now() + (M.TIMEOUT + 1) * 1e9
  while (s.sending or #s.queue > 0) and timer.now() < deadline do
    require("sandlot.task").sleep(0.01)
  end
end

---{endpoint, trace_id, exported, dropped, queued, last_error}, or nil when off.
---@return table|nil
function M.stats()
  local s = state
  if not s then return nil end
  return { endpoint = s.endpoint, trace_id = s.trace_id, exported = s.exported,
           dropped = s.dropped, queued = #s.queue, last_error = s.last_error }
end

return M
