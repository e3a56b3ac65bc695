-- sandlot.api: a client for the HTTP JSON services behind providers. It owns what every such
-- provider would otherwise write again: the endpoint (base URL or unix socket), the auth
-- header built from config and kept out of every error and log, an optional version
-- negotiation, the status -> error code map with the service's own message taken from its
-- error body (secrets scrubbed first), streamed bodies fed to a wire decoder, and polling on
-- the monotonic clock. Errors carry `via = "POST /path"` and `status`, never `op`: the
-- sandbox layer names the operation.
local http = require("sandlot.http")
local errors = require("sandlot.errors")
local redact = require("sandlot._redact")
local timer = require("sandlot.core.timer")
local json = require("sandlot.wire.json")

local M = {}

---Status -> code, layered under a client's spec.errors and a call's opts.errors.
M.STATUS = {
  [400] = "invalid_input", [401] = "auth_failed", [402] = "quota_exceeded",
  [403] = "auth_failed", [404] = "not_found", [405] = "not_supported", [408] = "timeout",
  [409] = "already_exists", [410] = "not_found", [413] = "invalid_input",
  [415] = "invalid_input", [422] = "invalid_input", [429] = "rate_limited",
  [501] = "not_supported", [507] = "quota_exceeded",
}

local QUOTA_WORDS = { "quota", "limit exceeded", "insufficient credit", "out of credits" }

local known_spec = {
  name = true, base_url = true, unix_socket = true, headers = true, auth = true,
  negotiate = true, negotiate_key = true, errors = true, timeout = true, retry = true,
  connect_timeout = true, ca_file = true, insecure = true, client_cert = true, client_key = true,
}
local known_call = {
  json = true, query = true, body = true, body_size = true, headers = true, want = true,
  timeout = true, errors = true, retry = true, max_body = true, decode = true,
  fresh_connect = true, on_frame = true, raw = true, raw_chunked = true,
}

local caches = setmetatable({}, { __mode = "k" })   -- spec -> {negotiate_key -> prefix}

local Client = {}
Client.__index = Client
Client.__name = "sandlot.api.client"

local function check_keys(t, known, what, level)
  for k in pairs(t) do
    if not known[k] then error(what .. ": unknown option '" .. tostring(k) .. "'", level + 1) end
  end
end

-- Replaces each known secret value in s with the redaction mark, then the patterns
-- http.excerpt knows (bearer tokens, secret-named JSON fields).
local function scrub(c, s, n)
  s = tostring(s)
  for i = 1, #c._secrets do
    local v = c._secrets[i]
    local from = 1
    while true do
      local a, b = s:find(v, from, true)
      if not a then break end
      s = s:sub(1, a - 1) .. redact.MARK .. s:sub(b + 1)
      from = a + #redact.MARK
    end
  end
  return http.excerpt(s, n or 300)
end

-- The service's own words from an error body: {message}, {error}, {error: {message}},
-- {detail}, {errors: [{message}]}; else a short excerpt of the body.
local function service_message(res)
  local j = res.json
  if type(j) == "table" then
    local e = j.error
    local m = j.message
    if type(m) ~= "string" and type(e) == "table" then m = e.message end
    if type(m) ~= "string" and type(e) == "string" then m = e end
    if type(m) ~= "string" and type(j.detail) == "string" then m = j.detail end
    if type(m) ~= "string" and type(j.errors) == "table" and type(j.errors[1]) == "table" then
      m = j.errors[1].message
    end
    if type(m) == "string" then return m end
  end
  return res.body or ""
end

local function retry_after(res)
  local v = res.headers and res.headers["retry-after"]
  local secs = tonumber(v or "")
  if secs then return math.max(0, secs) end
  return nil
end

local function code_for(c, res, msg, per_call)
  local s = res.status
  local over = (per_call and per_call[s]) or (c._spec.errors and c._spec.errors[s])
  if type(over) == "function" then over = over(res, msg) end
  if over then return over end
  if s == 429 or s == 403 then
    local low = msg:lower()
    for _, w in ipairs(QUOTA_WORDS) do
      if low:find(w, 1, true) then return "quota_exceeded" end
    end
  end
  if M.STATUS[s] then return M.STATUS[s] end
  if s >= 500 then return "unavailable" end
  if s >= 400 then return "invalid_input" end
  return "bad_response"
end

-- A non-wanted response as a sandlot.error: code by status, the service's message scrubbed.
local function status_error(c, res, via, per_call)
  local raw = service_message(res)
  local code = code_for(c, res, raw, per_call)
  if errors.codes[code] == nil then
    error("api: the error map gives an unknown code '" .. tostring(code) .. "'", 0)
  end
  local text = scrub(c, raw)
  local fields = { status = res.status, via = via }
  if res.status == 429 or res.status == 503 then
    fields.retryable = true
    fields.retry_after = retry_after(res)
  end
  return errors.new(code, ("HTTP %d%s"):format(res.status, text ~= "" and ": " .. text or ""),
                    fields)
end

-- A transport failure (from sandlot.http) as a new error without its `op`: the same code,
-- message and retry rule, with via.
local function transport_error(c, err, via)
  if not errors.is(err) then return errors.wrap(err, { via = via }) end
  return errors.new(err.code, scrub(c, err.message, 2000),
                    { via = via, retryable = err.retryable, reason = err.reason,
                      status = err.status })
end

local function auth_header(ctx, auth)
  if auth == nil then return nil end
  local cfg = ctx.config or {}
  local name, value
  if type(auth) == "function" then
    local a, b = auth(cfg, ctx)
    if a == nil then return nil, b end
    name, value = a, b
  else
    local v = cfg[auth.config]
    if v == nil or v == "" then
      return nil, errors.new("auth_failed", ("no %s in the provider's config"):format(auth.config))
    end
    name, value = auth.header or "Authorization", (auth.prefix or "") .. tostring(v)
  end
  return name, value
end

---Creates a client for one provider context.
---@param ctx table the provider ctx (config, warn, ...)
---@param spec table {name?, base_url | unix_socket (+ base_url for the Host), headers?,
---  auth? = {header = "Authorization", prefix = "Bearer ", config = "token"} | fn(config, ctx)
---  -> name, value | nil, err, negotiate? = fn(client) -> path prefix | nil, err (its own
---  calls on client go unprefixed; run once, cached per spec and negotiate_key(ctx), forgotten
---  when the service becomes unreachable), errors? = {[status] = code | fn(res, msg) -> code},
---  timeout?, connect_timeout?, retry?, ca_file? (https: trust this CA file), insecure?,
---  client_cert? + client_key? (https: a TLS client certificate, PEM text; the key is one of
---  the client's secrets, scrubbed from messages like the auth header)}
---@return table client
function M.client(ctx, spec)
  if type(ctx) ~= "table" then error("api.client: ctx must be a table", 2) end
  if type(spec) ~= "table" then error("api.client: spec must be a table", 2) end
  check_keys(spec, known_spec, "api.client", 2)
  if spec.base_url == nil and spec.unix_socket == nil then
    error("api.client: spec.base_url or spec.unix_socket is required", 2)
  end
  local c = setmetatable({ ctx = ctx, _spec = spec, _secrets = {}, _prefix = nil }, Client)
  local headers = {}
  for k, v in pairs(spec.headers or {}) do headers[k] = v end
  local name, value = auth_header(ctx, spec.auth)
  if name == nil and value ~= nil then
    c._auth_err = value
  elseif name ~= nil then
    headers[name] = value
    c._secrets[#c._secrets + 1] = value
    local bare = value:match("^%a+%s+(.+)$")       -- "Bearer x": x alone is secret too
    if bare and #bare >= 4 then c._secrets[#c._secrets + 1] = bare end
  end
  for k, v in pairs(ctx.config or {}) do
    if redact.is_secret(k) and type(v) == "string" and #v >= 4 then
      c._secrets[#c._secrets + 1] = v
    end
  end
  if type(spec.client_key) == "string" then        -- the key, and each line of its body
    c._secrets[#c._secrets + 1] = spec.client_key
    for line in spec.client_key:gmatch("[^\r\n]+") do
      if #line >= 16 and not line:find("^%-%-%-%-%-") then c._secrets[#c._secrets + 1] = line end
    end
  end
  table.sort(c._secrets, function(a, b) return #a > #b end)   -- longest first
  c._base = { base_url = spec.base_url or "http://localhost", unix_socket = spec.unix_socket,
              headers = headers }
  return c
end

---Tells the text with every secret this client knows replaced (for messages a provider
---builds from what a service said).
---@param s string
---@return string
function Client:scrub(s)
  return scrub(self, s, 2000)
end

local function want_set(want)
  if want == nil then return nil end
  local set = {}
  for _, s in ipairs(want) do set[s] = true end
  return set
end

local function negotiated(c)
  if c._prefix then return c._prefix end
  if c._negotiating then return "" end    -- the hook's own calls go without a prefix
  local neg = c._spec.negotiate
  if not neg then
    c._prefix = ""
    return ""
  end
  local cache = caches[c._spec]
  if cache == nil then
    cache = {}
    caches[c._spec] = cache
  end
  local key = c._spec.negotiate_key and c._spec.negotiate_key(c.ctx) or ""
  if cache[key] then
    c._prefix = cache[key]
    return c._prefix
  end
  c._negotiating = true
  local ok, p, err = pcall(neg, c)
  c._negotiating = false
  if not ok then error(p, 0) end
  if p == nil then return nil, err end
  cache[key] = p
  c._prefix = p
  return p
end

local function forget(c)
  local cache = caches[c._spec]
  if cache then
    local key = c._spec.negotiate_key and c._spec.negotiate_key(c.ctx) or ""
    cache[key] = nil
  end
  c._prefix = nil
end

local function check_path(path, level)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("[%c ]") then
    error("api: path must be a string starting with '/' (use api.segment for values)", level)
  end
end

-- A list of pieces as a body: strings, and sources {size, read} (read() gives the next chunk,
-- nil at the end) streamed in their turn; its size known. A source that gives other than its
-- size fails the request rather than sending a body of the wrong length.
local function pieces_body(list)
  local size = 0
  for i = 1, #list do
    local p = list[i]
    if type(p) == "string" then size = size + #p
    elseif type(p) == "table" and math.type(p.size) == "integer" and type(p.read) == "function"
    then size = size + p.size
    else error("api: opts.body pieces must be strings or sources {size, read}", 4) end
  end
  local i, src, got = 0, nil, 0
  return function()
    while true do
      if src then
        local chunk = src.read()
        if chunk ~= nil then
          got = got + #chunk
          if got > src.size then error("api: a body source gave more than its size", 0) end
          return chunk
        end
        if got ~= src.size then error("api: a body source gave less than its size", 0) end
        src = nil
      end
      i = i + 1
      local p = list[i]
      if type(p) ~= "table" then return p end
      src, got = p, 0
    end
  end, size
end

-- One request with the client's endpoint, headers and prefix. Returns res | nil, err.
local function send(c, method, path, opts, prefix, on_chunk)
  local body, size = opts.body, opts.body_size
  if type(body) == "table" then body, size = pieces_body(body) end
  local o = { method = method, path = (prefix or "") .. path, query = opts.query,
              body = body, json = opts.json, body_size = size,
              timeout = opts.timeout, retry = opts.retry, max_body = opts.max_body,
              decode = false, fresh_connect = opts.fresh_connect, on_chunk = on_chunk,
              raw_chunked = opts.raw_chunked,
              headers = opts.headers }
  if o.timeout == nil then o.timeout = c._spec.timeout end
  if o.retry == nil then o.retry = c._spec.retry end
  o.connect_timeout = c._spec.connect_timeout
  o.ca_file, o.insecure = c._spec.ca_file, c._spec.insecure   -- https: a cluster's own CA
  o.client_cert, o.client_key = c._spec.client_cert, c._spec.client_key
  return http.request(c._base, o)
end

local ABORT = {}                           -- a stream's decoder failed: unwind http.request

-- What call, stream and upgrade do first: check the method, path and options (raising at
-- `level` of begin's caller), then name the call and agree on the version prefix.
-- Returns via, prefix, or nil, err.
local function begin(c, method, path, opts, known, where, level)
  if type(method) ~= "string" or not method:match("^[A-Z]+$") then
    error("api: method must be an upper-case HTTP method", level + 1)
  end
  check_path(path, level + 2)
  check_keys(opts, known, where, level + 1)
  local via = method .. " " .. path
  if c._auth_err then return nil, errors.wrap(c._auth_err, { via = via }) end
  local prefix, nerr = negotiated(c)
  if prefix == nil then return nil, transport_error(c, nerr, via) end
  return via, prefix
end

local function request(c, method, path, opts, on_frame)
  opts = opts or {}
  local via, prefix = begin(c, method, path, opts, known_call, "api", 3)
  if via == nil then return nil, prefix end
  local on_chunk, failure
  if on_frame then
    on_chunk = function(chunk)
      local ok, ferr = on_frame(chunk)
      if ok == nil and ferr ~= nil then
        failure = ferr
        error(ABORT, 0)
      end
    end
  end
  local ok, res, err = pcall(send, c, method, path, opts, prefix, on_chunk)
  if not ok then
    if res == ABORT then
      return nil, errors.new(failure.code or "bad_response", scrub(c, failure.message or
                             tostring(failure), 2000), { via = via, status = 200,
                             retryable = failure.retryable })
    end
    error(res, 0)
  end
  if not res then
    if err.code == "unavailable" then forget(c) end
    return nil, transport_error(c, err, via)
  end
  local ct = res.headers and res.headers["content-type"] or ""
  local ok2xx = res.status >= 200 and res.status < 300
  local is_json = ct:find("json", 1, true) ~= nil
  if (ok2xx and (opts.decode == "json" or (opts.decode == nil and is_json)))
     or (not ok2xx and is_json) then                 -- an error body is read for its message
    local body = res.body
    if body ~= nil and body:find("%S") then
      local v, jerr = json.decode(body)
      if v == nil and ok2xx then
        return nil, errors.new("bad_response", ("HTTP %d: %s; body starts: %s"):format(
                               res.status, jerr.message, scrub(c, body, 120)),
                               { status = res.status, via = via })
      end
      res.json = v
    end
  end
  local want = want_set(opts.want)
  local good = want and want[res.status] or (not want and res.status >= 200 and res.status < 300)
  if not good then
    if res.status >= 200 and res.status < 300 then
      return nil, errors.new("bad_response", ("unexpected HTTP %d"):format(res.status),
                             { status = res.status, via = via })
    end
    return nil, status_error(c, res, via, opts.errors)
  end
  return res, via
end

---Makes one call. Returns the decoded JSON body (or the body text, "" when empty) and the
---response; with opts.raw, the response alone.
---@param method string "GET", "POST", ...
---@param path string starting with "/"; values in it go through api.segment
---@param opts? table {json, query, body (a string, a producer function, or a list of
---  strings such as wire.tar or wire.multipart pieces), body_size, headers, want = {200, 201},
---  timeout,
---  errors = {[409] = code}, retry, max_body, decode, fresh_connect, raw, raw_chunked (the
---  body keeps its chunked framing: decode it with sandlot.wire.chunked)}
---@return any|nil value
---@return table|sandlot.Error res_or_err
function Client:call(method, path, opts)
  if opts and opts.on_frame then error("api: on_frame belongs to c:stream", 2) end
  local res, via = request(self, method, path, opts, nil)
  if not res then return nil, via end
  if opts and opts.raw then return res end
  if res.json ~= nil then return res.json, res end
  return res.body or "", res
end

---Streams a 2xx body to on_frame, a function(chunk) or a wire decoder (callable, with a
---finish method called at the end); a decoder's nil, err stops the transfer and is returned.
---A non-2xx answer is mapped like call's. Returns the response (its body not kept).
---@param method string
---@param path string
---@param opts table as for call, plus on_frame
---@return table|nil res
---@return sandlot.Error? err
function Client:stream(method, path, opts)
  if type(opts) ~= "table" or opts.on_frame == nil then
    error("api: c:stream needs opts.on_frame", 2)
  end
  local f = opts.on_frame
  local o = {}
  for k, v in pairs(opts) do if k ~= "on_frame" then o[k] = v end end
  local res, via = request(self, method, path, o, f)
  if not res then return nil, via end
  if type(f) == "table" and f.finish then
    local ok, ferr = f:finish()
    if not ok then
      return nil, errors.new(ferr.code or "bad_response", scrub(self, ferr.message, 2000),
                             { via = via, status = res.status })
    end
  end
  return res
end

local known_upgrade = { json = true, query = true, body = true, headers = true, timeout = true,
                        io_timeout = true, errors = true }

---Opens a hijacked duplex stream (sandlot.http.upgrade: Docker's attach, 101 UPGRADED) with
---the client's endpoint, headers and negotiated prefix. An answer that does not switch
---protocols is mapped like call's (status -> code, the service's message, scrubbed).
---@param method string
---@param path string
---@param opts? table {json, query, body, headers, timeout (to the response head),
---  io_timeout (each read or write), errors = {[409] = code}}
---@return sandlot.http.stream|nil stream
---@return sandlot.Error? err
function Client:upgrade(method, path, opts)
  opts = opts or {}
  local via, prefix = begin(self, method, path, opts, known_upgrade, "api: c:upgrade", 2)
  if via == nil then return nil, prefix end
  local headers = {}
  for k, v in pairs(self._base.headers) do headers[k] = v end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local s, err = http.upgrade{ base_url = self._base.base_url,
                               unix_socket = self._base.unix_socket, path = prefix .. path,
                               method = method, query = opts.query, json = opts.json,
                               body = opts.body, headers = headers,
                               timeout = opts.timeout or self._spec.timeout,
                               connect_timeout = self._spec.connect_timeout,
                               io_timeout = opts.io_timeout }
  if s then return s end
  if err.status then                       -- refused: its status and the start of its body
    local res = { status = err.status, body = err.body or "" }
    if res.body:find("^%s*{") then res.json = json.decode(res.body) end
    return nil, status_error(self, res, via, opts.errors)
  end
  if err.code == "unavailable" then forget(self) end
  return nil, transport_error(self, err, via)
end

---Calls fn() until it returns a value, waiting between tries on the monotonic clock
---(interval doubling up to max_interval). fn returns value (done), nil/false (not yet), or
---nil, err (stop). Cancelling the task ends the wait with `cancelled`.
---@param fn fun(): any, sandlot.Error?
---@param opts {timeout: number, interval?: number, max_interval?: number, what?: string}
---@return any|nil value
---@return sandlot.Error? err timeout, cancelled, or fn's
function Client:poll(fn, opts)
  local ctx = self.ctx
  if ctx and ctx.progress and opts and opts.progress ~= false then
    -- each wait after the first answer is reported: "waiting: <what>  7s" on a terminal
    local t0, inner = timer.now(), fn
    fn = function()
      local v, err = inner()
      if not v and err == nil then
        ctx.progress(opts.op or "wait", { elapsed = (timer.now() - t0) / 1e9 },
                     { what = "waiting: " .. tostring(opts.what or "not ready yet") })
      end
      return v, err
    end
  end
  return M.poll(fn, opts)
end

---As Client:poll, without a client.
function M.poll(fn, opts)
  if type(fn) ~= "function" then error("api.poll: fn must be a function", 2) end
  if type(opts) ~= "table" or type(opts.timeout) ~= "number" or opts.timeout < 0 then
    error("api.poll: opts.timeout (seconds >= 0) is required", 2)
  end
  local interval = opts.interval or 0.05
  local cap = opts.max_interval or math.max(interval, 1)
  local deadline = timer.now() + math.floor(opts.timeout * 1e9)
  while true do
    local v, err = fn()
    if v then return v end
    if err ~= nil then return nil, err end
    local left = (deadline - timer.now()) / 1e9
    if left <= 0 then
      return nil, errors.new("timeout", ("%s after %gs"):format(opts.what or "not ready",
                                                                  opts.timeout))
    end
    local ok, serr = timer.sleep(math.min(interval, left))
    if not ok then return nil, serr end
    interval = math.min(interval * 2, cap)
  end
end

---Checks a value before it enters a URL path and escapes it (RFC 3986 unreserved kept).
---Refuses "", ".", "..", "/", control characters and non-strings with invalid_input.
---@param s any
---@return string|nil segment
---@return sandlot.Error? err invalid_input
function M.segment(s)
  if type(s) == "number" and math.type(s) == "integer" then s = tostring(s) end
  if type(s) ~= "string" or s == "" or s == "." or s == ".." or s:find("[/%c\\]")
     or #s > 1024 then
    local shown = type(s) == "string" and http.excerpt(s, 40) or type(s)
    return nil, errors.new("invalid_input", ("not a valid identifier for a URL path: %q")
                                           :format(shown))
  end
  return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

return M
