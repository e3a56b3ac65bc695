-- sandlot._cassette: record and replay of HTTP exchanges made through sandlot.http (and so
-- sandlot.api and every HTTP provider), for testing orchestration scripts offline.
-- SANDLOT_RECORD=file appends one JSON object per exchange, flushed as it happens, with
-- secrets scrubbed (lua/sandlot/_redact.lua); SANDLOT_REPLAY=file serves them back in order
-- without the network and fails with invalid_input naming the expected and the actual request
-- on the first one that does not match (method, path, query, and the scrubbed body).
local redact = require("sandlot._redact")
local json = require("sandlot.wire.json")
local b64 = require("sandlot.wire.base64")
local errors = require("sandlot.errors")
local sys = require("sandlot.core.sys")

local M = {}

M.MAX_REQUEST_BODY = 1024 * 1024   -- a streamed request body bigger than this is not kept

local tapes = {}                   -- path -> tape (one per file and process)

-- Values of secret headers and their credentials, scrubbed from everything else recorded.
local function secret_values(headers)
  local vals = {}
  for k, v in pairs(headers or {}) do
    if type(k) == "string" and redact.is_secret_name(k) and type(v) == "string" and #v >= 4 then
      vals[#vals + 1] = v
      local cred = v:match("^%a+%s+(%S+)$")
      if cred and #cred >= 4 then vals[#vals + 1] = cred end
    end
  end
  return vals
end

local function scrub_text(s, vals)
  return (redact.values(redact.text(s), vals))
end

-- A body as recorded: JSON is decoded, scrubbed and encoded again (keys sorted); other text
-- goes through redact.text; bytes that are not UTF-8 are kept as base64.
local function scrub_body(body, vals)
  if body == nil or body == "" then return { body = body } end
  if not utf8.len(body) then return { body_b64 = b64.encode(body) } end
  local first = body:match("^%s*(.)")
  if first == "{" or first == "[" then
    local ok, v = pcall(json.decode, body)
    if ok and type(v) == "table" then            -- re-encoded only when a key was secret
      local eok, text = pcall(json.encode, redact.scrub(v, 20))
      local same = eok and pcall(json.encode, v) and json.encode(v) == text
      if eok and not same then return { body = scrub_text(text, vals) } end
    end
  end
  return { body = scrub_text(body, vals) }
end

local function scrub_headers(headers, vals)
  local out = {}
  for k, v in pairs(headers or {}) do
    if redact.is_secret_name(k) then out[k] = redact.MARK
    elseif type(v) == "string" then out[k] = scrub_text(v, vals)
    else out[k] = v end
  end
  return out
end

local function split_url(url)
  local path, query = url:match("^%a[%w+.-]*://[^/?#]*([^?#]*)%??([^#]*)")
  if not path then path, query = url:match("^([^?#]*)%??([^#]*)") end
  return (path == "" and "/" or path), query or ""
end

-- {method, path, query, body} that replay compares, from a request about to be made.
local function request_key(o, redact_url, vals)
  local url = scrub_text(redact_url(o.url), vals)
  local path, query = split_url(url)
  local key = { method = o.method, url = url, path = path, query = query }
  if o.body_producer or o.body_file then key.body_stream = true
  else
    local b = scrub_body(o.body, vals)
    key.body, key.body_b64 = b.body, b.body_b64
  end
  return key
end

local function describe(e)
  local s = e.method .. " " .. e.path .. (e.query ~= "" and ("?" .. e.query) or "")
  if e.body and #e.body > 0 then s = s .. " body " .. e.body:sub(1, 80) end
  if e.body_b64 then s = s .. " (binary body)" end
  return s
end

local Tape = {}
Tape.__index = Tape

-- The two variables as last read, and sys.env_generation then: every HTTP request asks, and
-- the environment changes in this process only through sys.setenv, which bumps the number
-- (a C embedder that calls setenv(3) itself calls sys.setenv, or M.reset(), after it).
local env_gen, env_rec, env_rep
-- The sys.env_generation at which neither is set: sandlot.http's per-request path compares it
-- and calls current() only when it differs.
M._none_at = nil

---Returns the tape SANDLOT_RECORD or SANDLOT_REPLAY names, or nil when neither is set.
---Raises when both are.
function M.current()
  if env_gen ~= sys.env_generation then
    env_rec, env_rep = os.getenv("SANDLOT_RECORD"), os.getenv("SANDLOT_REPLAY")
    env_gen = sys.env_generation
  end
  local rec, rep = env_rec, env_rep
  if rec == "" then rec = nil end
  if rep == "" then rep = nil end
  if rec == nil and rep == nil then
    M._none_at = env_gen
    return nil
  end
  if rec and rep then error("sandlot: set SANDLOT_RECORD or SANDLOT_REPLAY, not both", 0) end
  local key = (rec and "record:" or "replay:") .. (rec or rep)
  local t = tapes[key]
  if t then return t end
  t = setmetatable({ path = rec or rep, replay = rep ~= nil, seq = 0 }, Tape)
  tapes[key] = t
  return t
end

---Forgets opened tapes (specs switch files within one process).
function M.reset()
  env_gen, M._none_at = nil, nil
  for k, t in pairs(tapes) do
    if t.file then t.file:close() end
    tapes[k] = nil
  end
end

function Tape:load()
  if self.entries then return true end
  local f, err = io.open(self.path, "rb")
  if not f then
    return nil, errors.new("not_found", "replay: cannot open the cassette " .. tostring(err),
                           { retryable = false })
  end
  local list, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:find("%S") then
      local v, jerr = json.decode(line)
      if type(v) ~= "table" then
        f:close()
        return nil, errors.new("bad_response", ("replay: %s line %d is not a JSON object: %s")
          :format(self.path, n, tostring(jerr and jerr.message or v)), { retryable = false })
      end
      list[#list + 1] = v
    end
  end
  f:close()
  self.entries = list
  return true
end

-- Appends one exchange and flushes it.
function Tape:append(entry)
  if not self.file then
    local f, err = io.open(self.path, "ab")
    if not f then error("sandlot: SANDLOT_RECORD: cannot open " .. tostring(err), 0) end
    self.file = f
  end
  self.seq = self.seq + 1
  entry.seq = self.seq
  self.file:write(json.encode(entry), "\n")
  self.file:flush()
end

---Makes the request through send(o, producer, opts) and records the exchange.
function Tape:record(o, headers, producer, opts, send, redact_url)
  local vals = secret_values(headers)
  local key = request_key(o, redact_url, vals)
  local entry = { method = key.method, url = key.url, path = key.path, query = key.query,
                  request = { headers = scrub_headers(headers, vals), body = key.body,
                              body_b64 = key.body_b64, body_stream = key.body_stream } }
  local kept, size = {}, 0
  if producer then
    local inner = producer
    producer = function()
      local chunk = inner()
      if type(chunk) == "string" and size + #chunk <= M.MAX_REQUEST_BODY then
        kept[#kept + 1] = chunk
      end
      if type(chunk) == "string" then size = size + #chunk end
      return chunk
    end
  end
  local chunks
  if opts.on_chunk then                    -- a streamed answer is recorded whole
    chunks = {}
    local inner = opts.on_chunk
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.on_chunk = function(c)
      chunks[#chunks + 1] = c
      return inner(c)
    end
    opts = copy
  end
  local res, err = send(o, producer, opts)
  if producer and size <= M.MAX_REQUEST_BODY then
    local b = scrub_body(table.concat(kept), vals)
    entry.request.body, entry.request.body_b64 = b.body, b.body_b64
  end
  if res then
    local body = res.body
    if chunks and (body == nil or body == "") then
      body = table.concat(chunks)
      entry.streamed = true
    end
    local b = scrub_body(body, vals)
    entry.status = res.status
    entry.headers = scrub_headers(res.headers, vals)
    entry.body, entry.body_b64 = b.body, b.body_b64
    entry.http_version = res.http_version
  else
    entry.error = { code = err.code, message = scrub_text(tostring(err.message), vals),
                    retryable = err.retryable }
  end
  self:append(entry)
  return res, err
end

---Serves the next exchange for the request (no network). decode(res, opts) finishes the
---response as a live one would be (JSON).
function Tape:play(o, headers, opts, decode, redact_url)
  local ok, lerr = self:load()
  if not ok then return nil, lerr end
  local vals = secret_values(headers)
  local key = request_key(o, redact_url, vals)
  self.seq = self.seq + 1
  local e = self.entries[self.seq]
  local function mismatch(why)
    local expected = e and describe(e.request and {
      method = e.method, path = e.path, query = e.query or "",
      body = e.request.body, body_b64 = e.request.body_b64 } or e) or "(the end of the cassette)"
    return nil, errors.new("invalid_input",
      ("replay: request %d does not match the cassette (%s): expected %s, got %s")
        :format(self.seq, why, expected, describe(key)),
      { retryable = false, expected = expected, actual = describe(key), index = self.seq,
        cassette = self.path })
  end
  if e == nil then return mismatch("no more exchanges") end
  if e.method ~= key.method then return mismatch("method") end
  if e.path ~= key.path then return mismatch("path") end
  if (e.query or "") ~= key.query then return mismatch("query") end
  local rq = e.request or {}
  if not (rq.body_stream or key.body_stream) and
      ((rq.body or "") ~= (key.body or "") or rq.body_b64 ~= key.body_b64) then
    return mismatch("body")
  end
  if e.error then
    return nil, errors.new(e.error.code or "unavailable", e.error.message or "replayed error",
                           { retryable = e.error.retryable, replayed = true })
  end
  local body = e.body_b64 and b64.decode(e.body_b64) or e.body or ""
  local res = { status = e.status, headers = e.headers or {}, body = body, attempts = 1,
                http_version = e.http_version, replayed = true }
  if opts.on_chunk and res.status >= 200 and res.status < 300 then
    if body ~= "" then opts.on_chunk(body) end
    res.body = ""
  end
  return decode(res, opts)
end

return M
