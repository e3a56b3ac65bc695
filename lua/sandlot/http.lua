-- sandlot.http: HTTP requests for scripts and providers. Policy lives here: option names and
-- defaults, URLs and query strings, JSON in and out, retries (backoff, jitter, Retry-After),
-- error wording and redaction, telemetry. Transfers, connection reuse, streaming and
-- backpressure are in core/http.c (libcurl's multi interface on the host's loop).
local core = require("sandlot.core.http")
local sched = require("sandlot.core.sched")
local timer = require("sandlot.core.timer")
local errors = require("sandlot.errors")
local telemetry = require("sandlot.telemetry")
local redact = require("sandlot._redact")
local check = require("sandlot._check")
local json = require("sandlot.wire.json")
local cassette = require("sandlot._cassette")
local sys = require("sandlot.core.sys")

---What sandlot.http.request returns for any status (an HTTP error status is not a failure).
---@class sandlot.http.Response
---@field status integer
---@field headers table<string, string> lower-cased names; repeated ones joined
---@field body string
---@field json? any the decoded body, with want = "json"

local M = {}
local byte = string.byte

M.DEFAULT_TIMEOUT = 60                  -- seconds per attempt
M.DEFAULT_CONNECT_TIMEOUT = 10
M.DEFAULT_MAX_BODY = 64 * 1024 * 1024   -- bytes kept of a captured body
M.RETRY_STATUSES = { [429] = true, [502] = true, [503] = true, [504] = true }
M.IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true,
                 TRACE = true }
M.curl = core.curl
M.http2 = core.http2

local known = {
  method = true, url = true, base_url = true, path = true, headers = true, query = true,
  body = true, json = true, body_file = true, body_size = true, timeout = true,
  connect_timeout = true, unix_socket = true, max_body = true, on_chunk = true, retry = true,
  insecure = true, ca_file = true, ca_path = true, follow = true, max_redirects = true,
  fresh_connect = true, op = true, decode = true, raw_chunked = true, client_cert = true,
  client_key = true,
}
local known_retry = { attempts = true, base = true, cap = true, statuses = true, safe = true,
                      max_after = true }

---JSON null as decoded and as given to `json =`.
M.null = json.null

---Encodes a value as JSON (sandlot.wire.json: an empty table becomes `{}`; raises on what
---JSON cannot hold).
---@param v any
---@return string
M.encode_json = json.encode

-- Redaction ---------------------------------------------------------------------------------

---Returns url without credentials: userinfo removed, secret-named query values redacted.
---@param url string
---@return string
function M.redact_url(url)
  if type(url) ~= "string" then return url end
  url = url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1")
  return (url:gsub("([?&])([^=&#]+)=([^&#]*)", function(sep, k, v)
    if redact.is_secret(k) then return sep .. k .. "=" .. redact.MARK end
    return sep .. k .. "=" .. v
  end))
end

---Returns the path of a URL without query string or fragment ("/" when it has none): what an
---error may name as `via` (never a secret).
---@param url string
---@return string
function M.url_path(url)
  local path = type(url) == "string" and url:match("^%a[%w+.-]*://[^/?#]*(/[^?#]*)") or nil
  return path or "/"
end

local secret_words = { "password", "passwd", "secret", "token", "api_key", "apikey",
                       "private_key", "authorization", "cookie", "credential", "access_key" }

---Returns a short excerpt of a body for error messages: at most n bytes, control bytes
---shown as '.', secret-looking JSON values and bearer tokens redacted.
---@param body string
---@param n? integer
---@return string
function M.excerpt(body, n)
  if type(body) ~= "string" then return "" end
  n = n or 160
  local s = body
  for _, w in ipairs(secret_words) do
    local mark = '%1"' .. redact.MARK .. '"'
    s = s:gsub('("[%w_%-]*' .. w .. '[%w_%-]*"%s*:%s*)"[^"]*"', mark)
    s = s:gsub('("[%w_%-]*' .. w:upper() .. '[%w_%-]*"%s*:%s*)"[^"]*"', mark)
  end
  s = redact.text(s:gsub("[Bb]earer%s+[%w%-%._~%+/]+=*", "Bearer " .. redact.MARK))
  if #s > n then s = s:sub(1, n) .. "..." end
  return (s:gsub("[%c\128-\255]", "."))
end

-- Requests ----------------------------------------------------------------------------------

local function encode_query(q)
  if type(q) == "string" then return q end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    local vals = type(v) == "table" and v or { v }
    for _, x in ipairs(vals) do
      if x ~= false and x ~= nil then
        if x == true then x = "1" end
        parts[#parts + 1] = core.escape(k) .. "=" .. core.escape(tostring(x))
      end
    end
  end
  return table.concat(parts, "&")
end

local USER_AGENT = "User-Agent: sandlot/" .. require("sandlot.core").version
-- the lists of requests without headers of their own, shared (the core only reads them)
local plain_list = { USER_AGENT }
local json_list = { "Content-Type: application/json", USER_AGENT }   -- sorted, as below

-- The header lines of a request (core.header_lines: names checked as tokens, values with
-- tostring and without CR, LF or NUL, false dropping one, Content-Type for JSON and our
-- User-Agent unless given, sorted); a bad one raises at `level`.
local function header_list(headers, has_json, level)
  if not headers then return has_json and json_list or plain_list end
  local list, why = core.header_lines(headers, has_json, USER_AGENT)
  if not list then error(why, level) end
  return list
end

---Parses raw header lines into {lowercased name = value}; repeated headers are joined with
---", " (Set-Cookie with "\n").
---@param raw string
---@return table
M.parse_headers = require("sandlot._doc").register(core.parse_headers,   -- in C
  "Parses a raw header block into a table of lower-cased names (repeated names joined with\n" ..
  "\", \"; Set-Cookie with newlines).\n@param raw string\n@return table headers", "(raw)")

local function is_json_type(ct)
  return ct ~= nil and ct:find("json", 1, true) ~= nil      -- cheap test first
         and (ct:find("^application/json") or ct:find("^application/[%w.%-]+%+json")
              or ct:find("^text/json")) ~= nil
end

local plain_methods = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true,
                        HEAD = true, OPTIONS = true }
local positive = { "timeout", "connect_timeout", "max_body" }
local passed = { "body_file", "body_size", "unix_socket", "follow", "max_redirects", "ca_file",
                 "ca_path", "fresh_connect", "raw_chunked", "client_cert",
                 "client_key" }                                -- given to the core as they are

-- The options table core.request reads (streams, uploads, cassettes); fields left out read as
-- nil (false for the flags).
local function build(method, url, headers, body, producer, opts)
  local o = {
    method = method, url = url, headers = headers, body = body,
    timeout = opts.timeout == nil and M.DEFAULT_TIMEOUT or opts.timeout or nil,
    connect_timeout = opts.connect_timeout or M.DEFAULT_CONNECT_TIMEOUT,
    max_body = opts.max_body == nil and M.DEFAULT_MAX_BODY or opts.max_body or nil,
    stream = opts.on_chunk ~= nil,
  }
  if producer ~= nil then o.body_producer = true end
  if opts.insecure == true then o.insecure = true end
  for i = 1, #passed do
    local k = passed[i]
    local v = opts[k]
    if v ~= nil then o[k] = v end
  end
  return o
end

-- Feeds the producer's chunks to the request from a task of its own; its failure is kept.
local function start_producer(req, producer, state)
  return sched.spawn(function()
    while true do
      local ok, chunk = pcall(producer)
      if not ok then
        state.err = chunk
        req:close()
        return
      end
      if chunk == nil then break end
      if type(chunk) ~= "string" then
        state.err = "http.request: the body producer must return strings or nil"
        req:close()
        return
      end
      if chunk ~= "" and not req:write(chunk) then return end
    end
    req:finish()
  end)
end

---Decodes JSON text (sandlot.wire.json: integral numbers come back as integers).
---@param s string
---@return any|nil value, string? err
function M.decode_json(s)
  local v, err = json.decode(s)
  if v == nil then return nil, (err.message:gsub("^malformed JSON: ", "")) end
  return v
end

-- JSON in a response whose headers are parsed (a live one, or one replayed from a cassette)
local function decode_body(res, opts)
  local want = opts.decode
  if want == nil then want = is_json_type(res.headers["content-type"]) and "json" end
  if want == "json" and res.body ~= nil and res.body:find("%S") then
    local v, jerr = M.decode_json(res.body)
    if v == nil and jerr ~= nil then
      return nil, errors.new("bad_response",
        ("malformed JSON in the %d response: %s; body starts: %s")
          :format(res.status, tostring(jerr):gsub(" at character.*", ""), M.excerpt(res.body)),
        { status = res.status, retryable = false })
    end
    res.json = v
  end
  return res
end

local function decode_response(res, opts)
  res.headers = M.parse_headers(res.headers_raw)
  res.headers_raw = nil
  return decode_body(res, opts)
end

-- One attempt. Returns res | nil, err, and whether any chunk reached on_chunk.
local function attempt(o, producer, opts)
  local req <close>, err = core.request(o)
  if not req then return nil, err end
  if not producer and not o.stream then    -- the common case: no helper task, no state
    local res, werr = req:wait()
    if not res then return nil, werr end
    return decode_response(res, opts)
  end
  local state = {}
  local writer = producer and start_producer(req, producer, state)
  local function finish(...)
    if writer and not writer:done() then writer:cancel() end
    if state.err ~= nil then error(state.err, 0) end
    return ...
  end
  if not o.stream then
    local res, werr = req:wait()
    if not res then return finish(nil, werr) end
    return finish(decode_response(res, opts))
  end
  local head, herr = req:headers()
  if not head then return finish(nil, herr) end
  local ok2xx = head.status >= 200 and head.status < 300
  local parts, size, delivered = {}, 0, false
  while true do
    local chunk, rerr = req:read()
    if chunk == nil then
      if rerr ~= nil then return finish(nil, rerr, delivered) end
      break
    end
    if ok2xx then
      delivered = true
      opts.on_chunk(chunk)
    elseif size < (o.max_body or math.huge) then
      parts[#parts + 1] = chunk
      size = size + #chunk
    end
  end
  local res, werr = req:wait()
  if not res then return finish(nil, werr, delivered) end
  if not ok2xx then res.body = table.concat(parts) end
  return finish(decode_response(res, opts))
end

local function retry_after(res)
  local v = res and res.headers and res.headers["retry-after"]
  if v == nil then return nil end
  local secs = tonumber(v)
  if secs then return math.max(0, secs) end
  local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                   Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
  local d, mon, y, hh, mm, ss = v:match("%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT")
  if not d or not months[mon] then return nil end
  local t = os.time({ year = tonumber(y), month = months[mon], day = tonumber(d),
                      hour = tonumber(hh), min = tonumber(mm), sec = tonumber(ss), isdst = false })
  local now = os.time(os.date("!*t"))      -- both read as local time: the offset cancels
  return math.max(0, t - now)
end

-- The policies of requests without opts.retry, shared (read only; statuses follows
-- M.RETRY_STATUSES).
local default_policy = {
  [true] = { attempts = 3, base = 0.2, cap = 5, max_after = 60 },
  [false] = { attempts = 1, base = 0.2, cap = 5, max_after = 60 },
}

local function retry_policy(opts, method, producer)
  local r = opts.retry
  if r == nil then
    local p = default_policy[(M.IDEMPOTENT[method] or false) and not producer]
    p.statuses = M.RETRY_STATUSES
    return p
  end
  if r == false then return { attempts = 1 } end
  if type(r) == "number" then r = { attempts = r } end
  r = r or {}
  if type(r) ~= "table" then
    error("http.request: opts.retry must be a table, number or false", 3)
  end
  check.opts(r, known_retry, "http.request: retry", 3)
  local eligible = (M.IDEMPOTENT[method] or r.safe == true) and not producer
  return {
    attempts = eligible and (r.attempts or 3) or 1,
    base = r.base or 0.2, cap = r.cap or 5, max_after = r.max_after or 60,
    statuses = r.statuses or M.RETRY_STATUSES,
  }
end

-- The header lines and W3C trace context tp, when spans are exported
local function with_traceparent(headers, tp)
  if not tp then return headers end
  local list = table.move(headers, 1, #headers, 1, {})
  list[#list + 1] = "traceparent: " .. tp
  return list
end

-- After attempt n: true and what to return, or false once the wait before the next attempt
-- is over.
local function settle(res, err, delivered, n, policy, method, url, opts, meta)
  if meta then meta.attempts = n end
  local delay, why
  if res then
    if meta then meta.status = res.status end
    res.attempts = n
    if n >= policy.attempts or not policy.statuses[res.status] then return true, res end
    why = res.status
    local after = retry_after(res)
    if after and after > policy.max_after then return true, res end
    delay = after
  else
    err = errors.wrap(err, { op = opts.op, via = method .. " " .. M.url_path(url),
                             method = method, url = M.redact_url(url) })
    if n >= policy.attempts or not err.retryable or delivered or err.code == "cancelled" then
      return true, nil, err
    end
    why = err.code
  end
  if delay == nil then
    local full = math.min(policy.cap, policy.base * 2 ^ (n - 1))
    delay = full / 2 + math.random() * full / 2        -- equal jitter
  end
  telemetry.execute({ "sandlot", "http", "retry" }, { attempt = n, delay = delay },
                    { method = method, url = M.redact_url(url), reason = why })
  local ok, serr = timer.sleep(delay)
  if not ok then return true, nil, serr end
  return false
end

local function send(o, producer, opts, meta)
  local policy = retry_policy(opts, o.method, producer)
  o.headers = with_traceparent(o.headers, telemetry.traceparent())
  if meta then meta.method, meta.url = o.method, M.redact_url(o.url) end
  local n = 0
  while true do
    n = n + 1
    local res, err, delivered = attempt(o, producer, opts)
    local done, r, e = settle(res, err, delivered, n, policy, o.method, o.url, opts, meta)
    if done then return r, e end
  end
end

-- The common request, its body in memory: core.fetch takes it as arguments and answers with
-- the response built in C, headers parsed, and whether its content type may be JSON (no
-- options table, no request handle, no parsing here). Without opts.retry the policy is the
-- default one, read in place.
local function send_fast(method, url, headers, body, opts, meta)
  local policy, statuses
  if opts.retry == nil then
    policy = default_policy[M.IDEMPOTENT[method] or false]
    statuses = M.RETRY_STATUSES
    policy.statuses = statuses
  else
    policy = retry_policy(opts, method, nil)
    statuses = policy.statuses
  end
  local tpf = telemetry.traceparent
  if tpf ~= telemetry._no_traceparent then headers = with_traceparent(headers, tpf()) end
  if meta then meta.method, meta.url = method, M.redact_url(url) end
  local timeout, max_body = opts.timeout, opts.max_body
  if timeout == nil then timeout = M.DEFAULT_TIMEOUT end
  if max_body == nil then max_body = M.DEFAULT_MAX_BODY end
  local connect = opts.connect_timeout or M.DEFAULT_CONNECT_TIMEOUT
  local attempts = policy.attempts
  local n = 0
  while true do
    n = n + 1
    local res, err = core.fetch(method, url, headers, body, timeout, connect, max_body,
                                opts.unix_socket, opts.follow, opts.max_redirects, opts.ca_file,
                                opts.ca_path, opts.insecure == true, opts.fresh_connect,
                                opts.raw_chunked, opts.client_cert, opts.client_key)
    if res and (err or opts.decode ~= nil) then res, err = decode_body(res, opts) end
    if res and (n >= attempts or not statuses[res.status]) then
      res.attempts = n                                 -- the common end: no retry
      if meta then meta.attempts, meta.status = n, res.status end
      return res
    end
    local done, r, e = settle(res, err, false, n, policy, method, url, opts, meta)
    if done then return r, e end
  end
end

-- One request: what every request needs, checked (method, url with its query, the header
-- lines, the body or its producer), then the fast path (send_fast) unless it streams, uploads
-- or goes to a cassette. Errors blame the caller of http.request (level 2 here). With
-- SANDLOT_RECORD / SANDLOT_REPLAY (lua/sandlot/_cassette.lua) the whole exchange, after its
-- retries, is one entry of the cassette.
local function request(opts, meta)
  local url = opts.url
  if url == nil then
    if opts.path == nil then error("http.request: opts.url or opts.path is required", 2) end
    local base = opts.base_url or (opts.unix_socket and "http://localhost")
    if base == nil then error("http.request: opts.path needs opts.base_url or unix_socket", 2) end
    local path = opts.path
    if byte(base, -1) == 47 then base = base:gsub("/+$", "") end          -- "/"
    url = byte(path, 1) == 47 and base .. path or base .. "/" .. path
  end
  if type(url) ~= "string" then error("http.request: opts.url must be a string", 2) end
  if opts.query ~= nil then
    local q = encode_query(opts.query)
    if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  end
  local body, has_json = opts.body, opts.json ~= nil
  local method = opts.method or ((body or has_json or opts.body_file) and "POST" or "GET")
  if not plain_methods[method] then
    method = method:upper()
    if not method:match("^[A-Z]+$") then error("http.request: invalid method " .. method, 2) end
  end
  if has_json then
    if body ~= nil then error("http.request: give body or json, not both", 2) end
    body = M.encode_json(opts.json)
  end
  local producer
  if body ~= nil and type(body) ~= "string" then
    if type(body) ~= "function" then
      error("http.request: opts.body must be a string or a producer function", 2)
    end
    producer, body = body, nil
  end
  if opts.timeout ~= nil or opts.connect_timeout ~= nil or opts.max_body ~= nil then
    for i = 1, 3 do
      local f = positive[i]
      local v = opts[f]
      if v ~= nil and v ~= false and (type(v) ~= "number" or v <= 0) then
        error("http.request: opts." .. f .. " must be a number > 0", 2)
      end
    end
  end
  if opts.on_chunk ~= nil and type(opts.on_chunk) ~= "function" then
    error("http.request: opts.on_chunk must be a function", 2)
  end
  local headers = opts.headers
  if headers == nil then headers = has_json and json_list or plain_list
  else headers = header_list(headers, has_json, 3) end
  local tape
  if cassette._none_at ~= sys.env_generation then tape = cassette.current() end
  if tape == nil and producer == nil and opts.on_chunk == nil and opts.body_file == nil then
    return send_fast(method, url, headers, body, opts, meta)
  end
  local o = build(method, url, headers, body, producer, opts)
  if tape == nil then return send(o, producer, opts, meta) end
  if tape.replay then return tape:play(o, opts.headers, opts, decode_body, M.redact_url) end
  return tape:record(o, opts.headers, producer, opts, function(o2, p2, opts2)
    return send(o2, p2, opts2, meta)
  end, M.redact_url)
end

---Makes an HTTP request and returns the response. A non-2xx status is a response, not an
---error; transport failures are errors.
---@param defaults? table options shared by many requests (e.g. {unix_socket=, base_url=})
---@param opts table method, url | path (+ base_url or unix_socket), headers {name = value},
---  query (table or string), body (string or producer function returning chunks, nil at the
---  end; "" is skipped) | json (value to encode) | body_file (path), body_size (producer
---  length, else chunked), timeout (s per attempt, default 60; false: none), connect_timeout
---  (default 10), unix_socket, max_body (default 64 MiB; false: none), on_chunk (fn(chunk)
---  for a 2xx body, which is then not kept), retry ({attempts=3, base=0.2, cap=5, statuses=, safe=,
---  max_after=60} | number | false), follow (redirects, default true), max_redirects (10),
---  insecure (no TLS verification: explicit opt-in only), ca_file, ca_path, fresh_connect,
---  raw_chunked (HTTP/1.1, the body with its chunked framing as sent: see wire.chunked),
---  client_cert + client_key (https: a TLS client certificate and its unencrypted private key,
---  PEM text in memory: handed to libcurl as blobs, never written to a file; both or neither),
---  decode ("json" to decode whatever the content type), op (names the operation in
---  errors; an operation around it, such as the sandbox's exec, wins and keeps it as `via`)
---@return table|nil response {status, headers, body, json, http_version, attempts, ...}; from
---  the network its fields past status and body (headers, http_version, body_bytes,
---  effective_url, redirects, connects, duration) are made when one of them is first read or
---  the response is iterated with pairs (core/http_response.c)
---@return sandlot.Error? err timeout, unavailable (reason = curl's words), bad_response
---  (malformed JSON, over max_body, redirect loop), invalid_input, cancelled
function M.request(defaults, opts)
  if opts == nil then opts = defaults
  elseif type(defaults) == "table" then
    if type(opts) ~= "table" then error("http.request: opts must be a table", 2) end
    opts = core.merge(defaults, opts)  -- defaults' fields, then opts' (headers merged too)
  end
  if core.unknown(opts, known) then   -- what check.opts checks, in one call; it raises
    if type(opts) ~= "table" then error("http.request: opts must be a table", 2) end
    check.opts(opts, known, "http.request")
  end
  if not telemetry._active then return request(opts, nil) end   -- no span: no metadata
  local meta = {}
  return telemetry.span("http.request", meta, request, opts, meta)
end

for _, m in ipairs({ "get", "head", "post", "put", "patch", "delete" }) do
  ---Shorthand for http.request with url and this method: http.get(url [, opts]),
  ---http.post(url, opts), ... (opts as for http.request).
  M[m] = function(url, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.url, o.method = url, m:upper()
    return M.request(o)
  end
end

-- Upgraded streams ---------------------------------------------------------------------------

M.DEFAULT_MAX_HEAD = 64 * 1024          -- bytes of a response head, at most

local known_upgrade = {
  url = true, base_url = true, path = true, unix_socket = true, query = true, method = true,
  headers = true, body = true, json = true, upgrade = true, connect_timeout = true,
  timeout = true, io_timeout = true, max_head = true, op = true, ca_file = true,
  ca_path = true, insecure = true, client_cert = true, client_key = true,
}

---Sends one HTTP/1.1 request asking to switch protocols (`Connection: Upgrade`,
---`Upgrade: tcp` unless told otherwise) and, when the server answers 101 (or Docker's legacy
---200 with a raw-stream content type), returns the connection as a raw duplex stream.
---http://, https:// (TLS with SNI, the certificate verified against the system store and the
---host name, or against ca_file / ca_path) or a unix socket.
---@param opts table url | path (+ base_url or unix_socket), query, method (default POST),
---  headers {name = value}, body (string) | json (value), upgrade (protocol, default "tcp"),
---  connect_timeout (s, default 10), timeout (s to the end of the response head, default 60),
---  io_timeout (s each read() or write() may wait; default none), max_head (bytes, default
---  64 KiB), op (names the operation in errors), ca_file / ca_path (https: trust these CAs
---  instead of the system store), insecure (https: true skips certificate verification: an
---  explicit opt-in only, never for real endpoints; a value that is not a boolean raises),
---  client_cert + client_key (https: a TLS client certificate, PEM text in memory, as for
---  http.request)
---@return sandlot.http.stream|nil stream s:read([max]) -> data | nil (EOF) | nil, err;
---  s:write(data) -> true | nil, err; s:shutdown(); s:head() -> {status, headers_raw,
---  http_version}; s:info() -> {queued, paused, eof}; s:close()
---@return sandlot.Error? err unavailable (connect, reset), timeout (connect, TLS handshake,
---  head), auth_failed (https: the certificate was refused; err.tls_reason says why),
---  bad_response (an answer that does not switch protocols: err.status, err.body; a malformed
---  or oversized head; a TLS handshake that failed otherwise), invalid_input (an unreadable
---  ca_file; a client certificate or key that is not PEM, or a key not of that certificate),
---  cancelled
function M.upgrade(opts)
  if type(opts) ~= "table" then error("http.upgrade: opts must be a table", 2) end
  for k in pairs(opts) do
    if not known_upgrade[k] then
      error("http.upgrade: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  for _, f in ipairs({ "connect_timeout", "timeout", "io_timeout", "max_head" }) do
    local v = opts[f]
    if v ~= nil and (type(v) ~= "number" or v <= 0) then
      error("http.upgrade: opts." .. f .. " must be a number > 0", 2)
    end
  end
  local tape = cassette.current()
  if tape and tape.replay then     -- a duplex stream is not recorded (SANDLOT_RECORD skips it)
    return nil, errors.new("not_supported", "http.upgrade: an upgraded stream cannot be "
      .. "replayed from a cassette (SANDLOT_REPLAY); only request/response exchanges are "
      .. "recorded", { retryable = false })
  end
  local url = opts.url
  local host, port, target
  if url == nil then
    if type(opts.path) ~= "string" then
      error("http.upgrade: opts.url or opts.path is required", 2)
    end
    local base = opts.base_url or (opts.unix_socket and "http://localhost")
    if base == nil then error("http.upgrade: opts.path needs opts.base_url or unix_socket", 2) end
    local path = opts.path
    if byte(base, -1) == 47 then base = base:gsub("/+$", "") end          -- "/"
    url = byte(path, 1) == 47 and base .. path or base .. "/" .. path
  end
  if type(url) ~= "string" then error("http.upgrade: opts.url must be a string", 2) end
  if opts.insecure ~= nil and type(opts.insecure) ~= "boolean" then
    error("http.upgrade: opts.insecure must be a boolean", 2)
  end
  for _, f in ipairs({ "ca_file", "ca_path", "client_cert", "client_key" }) do
    if opts[f] ~= nil and type(opts[f]) ~= "string" then
      error("http.upgrade: opts." .. f .. " must be a string", 2)
    end
  end
  if (opts.client_cert == nil) ~= (opts.client_key == nil) then
    error("http.upgrade: give opts.client_cert and opts.client_key together", 2)
  end
  local scheme, authority
  scheme, authority, target = url:match("^([hH][tT][tT][pP][sS]?)://([^/?#]*)([^#]*)")
  if not authority then error("http.upgrade: opts.url must be an http:// or https:// URL", 2) end
  local tls = scheme:lower() == "https"
  if tls and opts.unix_socket then error("http.upgrade: https over a unix socket", 2) end
  host, port = authority:match("^%[?([^%]@]-)%]?:(%d+)$")
  if not host then host, port = authority:match("^%[?([^%]@]-)%]?$"), tls and 443 or 80 end
  if not host or host == "" then error("http.upgrade: no host in " .. M.redact_url(url), 2) end
  if target == "" then target = "/" end
  if opts.query ~= nil then
    local q = encode_query(opts.query)
    if q ~= "" then target = target .. (target:find("?", 1, true) and "&" or "?") .. q end
  end
  if target:find("[%s%z%c]") then
    error("http.upgrade: the path holds a space or control byte", 2)
  end
  local method = opts.method or "POST"
  if type(method) ~= "string" or not method:match("^[A-Z]+$") then
    error("http.upgrade: invalid method " .. tostring(method), 2)
  end
  local body = opts.body
  if opts.json ~= nil then
    if body ~= nil then error("http.upgrade: give body or json, not both", 2) end
    body = M.encode_json(opts.json)
  end
  if body ~= nil and type(body) ~= "string" then
    error("http.upgrade: opts.body must be a string", 2)
  end
  local proto = opts.upgrade or "tcp"
  if type(proto) ~= "string" or not proto:match("^[%w!#$%%&'*+.^_`|~/-]+$") then
    error("http.upgrade: invalid upgrade protocol " .. tostring(proto), 2)
  end
  local lines = header_list(opts.headers, opts.json ~= nil, 4)   -- raises for CR/LF in values
  local given = {}
  for k in pairs(opts.headers or {}) do given[k:lower()] = true end
  local head = { ("%s %s HTTP/1.1"):format(method, target),
                 "Host: " .. (opts.unix_socket and "localhost" or authority) }
  if not given.connection then head[#head + 1] = "Connection: Upgrade" end
  if not given.upgrade then head[#head + 1] = "Upgrade: " .. proto end
  if body ~= nil or method == "POST" or method == "PUT" then
    head[#head + 1] = "Content-Length: " .. #(body or "")
  end
  for i = 1, #lines do head[#head + 1] = lines[i] end
  local o = {
    request = table.concat(head, "\r\n") .. "\r\n\r\n" .. (body or ""),
    connect_timeout = opts.connect_timeout or M.DEFAULT_CONNECT_TIMEOUT,
    timeout = opts.timeout or M.DEFAULT_TIMEOUT,
    io_timeout = opts.io_timeout,
    max_head = opts.max_head and math.floor(opts.max_head) or M.DEFAULT_MAX_HEAD,
    tls = tls or nil, ca_file = opts.ca_file, ca_path = opts.ca_path,
    insecure = tls and opts.insecure == true or nil,
    client_cert = tls and opts.client_cert or nil, client_key = tls and opts.client_key or nil,
  }
  if opts.unix_socket then
    if type(opts.unix_socket) ~= "string" or #opts.unix_socket >= 108 then
      error("http.upgrade: opts.unix_socket must be a path shorter than 108 bytes", 2)
    end
    o.unix_socket = opts.unix_socket
  else
    o.host, o.port = host, tonumber(port)
    if o.port < 1 or o.port > 65535 then error("http.upgrade: port out of range", 2) end
  end
  local s, err = core.upgrade(o)
  if not s then
    if err.body then err.body = M.excerpt(err.body, 1024) end   -- a server may echo secrets
    return nil, errors.wrap(err, { op = opts.op or "http", method = method,
                                   url = M.redact_url(url) })
  end
  return s
end

---Parses an HTTP/1.x response head (for tests and tools): returns {status, reason,
---http_version, headers_raw, length}, nil when bytes are a valid prefix, or false, why.
M.parse_response_head = require("sandlot._doc").register(core.parse_response_head,
  "Parses an HTTP/1.x response head (status line and headers).\n" ..
  "@param head string\n@return table|nil {status, reason, headers}, sandlot.Error? err", "(head)")

local status_codes = {
  [400] = "invalid_input", [401] = "auth_failed", [403] = "permission_denied",
  [404] = "not_found", [405] = "not_supported", [408] = "timeout", [409] = "already_exists",
  [410] = "not_found", [413] = "invalid_input", [422] = "invalid_input",
  [429] = "rate_limited", [500] = "unavailable", [501] = "not_supported",
  [502] = "unavailable", [503] = "unavailable", [504] = "timeout", [507] = "quota_exceeded",
}

---Turns a non-2xx response into a sandlot.error: the code follows the status, the message
---comes from the body's `message` or `error` field (or a short redacted excerpt).
---@param res table a response from http.request
---@param fields? table context (op, provider, sandbox, ...)
---@return sandlot.Error
function M.status_error(res, fields)
  local code = status_codes[res.status] or (res.status >= 500 and "unavailable")
               or "bad_response"
  local text
  local j = res.json
  if type(j) == "table" then
    text = j.message or (type(j.error) == "string" and j.error)
           or (type(j.error) == "table" and j.error.message) or nil
  end
  text = text and M.excerpt(tostring(text), 300) or M.excerpt(res.body or "")
  local err = errors.new(code, ("HTTP %d%s"):format(res.status, text ~= "" and ": " .. text or ""),
                         { status = res.status,
                           retryable = (res.status == 429 or res.status == 503) or nil })
  return errors.wrap(err, fields or {})
end

---Transport statistics of this host: live request handles and watched sockets.
function M.stats() return core.stats() end

-- Server -------------------------------------------------------------------------------------

---@class sandlot.http.ServeOpts
---@field host? string
---@field port? integer
---@field handler fun(req: table): table
---@field max_body? integer
---@field max_head? integer
---@field idle_timeout? number
---@field max_conns? integer
---@field tls? {cert: string, key: string, client_ca?: string}

---Starts an HTTP/1.1 server on the host's loop (for fakes and local receivers): handler(req)
---runs in a task of its own per request, req = {method, path, query, headers (lower-cased),
---body, keep_alive, http_version}, and returns {status, headers, body} (body: a string, or a
---function returning successive chunks, nil at the end: chunked), or {drop = true} to close
---without answering. A handler that raises gives a 500. Returns srv with url, port, close().
---opts.tls = {cert = path, key = path} (PEM files) serves https (and wss) instead; with
---client_ca (a PEM file, or PEM text) every client is asked for a certificate, verified against
---those CAs, and the handshake goes on either way: req.tls_client_cn is the subject CN of one
---that verified, req.tls_client_error why one given did not (the handler decides, as the
---Kubernetes API server answers 401). The other
---opts: host, port (0: any free one), handler, max_body, max_head, idle_timeout, max_conns.
---@param opts sandlot.http.ServeOpts
---@return table|nil srv, sandlot.Error|nil err
function M.serve(opts) return require("sandlot._http_serve").serve(opts) end

M.version = require("sandlot.core").version

return M
