-- fuzz/targets.lua: entry points for fuzz/lua_target.c where the library's own function is not
-- the right shape to feed bytes to. Each takes the input and returns what the library returned
-- (value, or nil and a sandlot.error); it raises a plain string for a broken promise, which the
-- harness reports as a failure.
local config = require("sandlot.config")
local errors = require("sandlot.errors")

local M = {}

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- What a config file sees: the pure parts of the standard library. No I/O, no load, no
-- metatables, no pcall (it could swallow the instruction budget), no coroutines (the harness's
-- hooks do not follow them). Fresh for every input, so one input cannot change the next.
local function safe_globals()
  return {
    string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, assert = assert,
    rawequal = rawequal, rawlen = rawlen,
  }
end

local budget = rawget(_G, "fuzz_budget") or function() end

---The config loader: parse a config file's text, then resolve every provider's options.
---@param text string
function M.config(text)
  budget(2000000)
  local ok, cfg, err = pcall(config.parse, text, "fuzz.config.lua", safe_globals())
  budget(0)
  if not ok then
    -- the budget ran out outside the chunk's own pcall (validating a huge table): not a bug
    if tostring(cfg):find("fuzz: instruction budget exhausted", 1, true) then return nil end
    error("config.parse raised: " .. tostring(cfg))
  end
  if not cfg then
    if not errors.is(err, "invalid_input") then
      error("config.parse failed without an invalid_input error: " .. tostring(err))
    end
    return nil, err
  end
  if type(cfg.providers) ~= "table" then error("config.parse: no providers table") end
  for name, entry in pairs(cfg.providers) do
    if entry.name ~= name or entry.module == nil or type(entry.opts) ~= "table" then
      error("config.parse: malformed entry for provider " .. tostring(name))
    end
    local opts, oerr = config.resolve_opts(entry)
    if not opts and not errors.is(oerr, "invalid_input") then
      error("config.resolve_opts failed without an invalid_input error: " .. tostring(oerr))
    end
  end
  return cfg
end

-- Incremental readers: the first byte sets the chunk size (1..256), the rest is the stream,
-- fed chunk by chunk and then finished, as a response body arrives.
local function stream(make)
  return function(input)
    local size = (input:byte(1) or 0) + 1
    local reader = make(function() end)
    for pos = 2, #input, size do
      local ok, err = reader:feed(input:sub(pos, pos + size - 1))
      if not ok then return nil, err end
    end
    return reader:finish()
  end
end

M.ndjson = stream(function(on) return require("sandlot.wire.ndjson").decoder(on) end)
M.stdcopy = stream(function(on) return require("sandlot.wire.stdcopy").decoder(on) end)
M.connect = stream(function(on) return require("sandlot.wire.connect").decoder(on) end)

---multipart: the first line is the Content-Type, the rest the body.
function M.multipart(input)
  local ct, body = input:match("^([^\n]*)\n(.*)$")
  return require("sandlot.wire.multipart").parse(body or "", ct or input)
end

---The HTTP/1.x response-head parser (core/http_head.c, behind sandlot.http.upgrade): whatever
---the bytes, it answers "more", a head that lies inside the input, or a reason, and never reads
---past the cap it is given (the first byte picks it: 1..256 times 16 bytes).
function M.http_head(input)
  local max = ((input:byte(1) or 0) + 1) * 16
  local bytes = input:sub(2)
  local head, why = require("sandlot.http").parse_response_head(bytes, max)
  if head == nil then
    if #bytes > max then error("http_head: wants more beyond its cap of " .. max) end
    return nil
  end
  if head == false then
    if type(why) ~= "string" or why == "" then error("http_head: a refusal without a reason") end
    return nil
  end
  if math.type(head.length) ~= "integer" or head.length < 1 or head.length > #bytes
      or head.length > max then
    error(("http_head: head length %s outside 1..%d"):format(tostring(head.length), #bytes))
  end
  if math.type(head.status) ~= "integer" or head.status < 100 or head.status > 999 then
    error("http_head: status " .. tostring(head.status) .. " out of range")
  end
  if #head.headers_raw > head.length then error("http_head: fields longer than the head") end
  return head
end

---The request parser behind sandlot.http.serve (libhttp-parser with core/http_serve.c's
---callbacks and limits): the bytes are parsed whole and again fed in chunks (the first byte
---picks their size, 1..32), and both must give the same requests, or both refuse (400 and 431
---may trade places: a chunk border makes the head limit fire before a bad byte is seen).
local function same_requests(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    local x, y = a[i], b[i]
    for _, k in ipairs({ "method", "path", "query", "body", "keep_alive", "http_version" }) do
      if x[k] ~= y[k] then return false, k end
    end
    for k, v in pairs(x.headers) do if y.headers[k] ~= v then return false, "headers" end end
    for k in pairs(y.headers) do if x.headers[k] == nil then return false, "headers" end end
  end
  return true
end

function M.http_request(input)
  local parse = require("sandlot.core.http").parse_request
  local chunk = (input:byte(1) or 0) % 32 + 1
  local bytes = input:sub(2)
  local whole, w2 = parse(bytes, nil, 1024, 4096)
  local parts, p2 = parse(bytes, chunk, 1024, 4096)
  if (whole == nil) ~= (parts == nil) or (whole ~= nil and w2 ~= p2) then
    error(("http_request: whole gave %s %s, chunks of %d gave %s %s"):format(
      tostring(whole and #whole), tostring(w2), chunk, tostring(parts and #parts), tostring(p2)))
  end
  if whole == nil then
    for _, st in ipairs({ w2, p2 }) do
      if st ~= 400 and st ~= 413 and st ~= 431 then error("http_request: status " .. st) end
    end
    return nil
  end
  local ok, what = same_requests(whole, parts)
  if not ok then error("http_request: chunks changed the requests' " .. tostring(what)) end
  for _, r in ipairs(whole) do
    if #r.body > 4096 then error("http_request: body over max_body") end
  end
  return whole
end

-- Structural equality for decoded values (NaN equals NaN; integer and float differ).
local function same(a, b, depth)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    return a == b or (a ~= a and b ~= b)
  end
  if type(a) ~= "table" then return a == b end
  if depth > 200 or getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do
    if not same(v, rawget(b, k), depth + 1) then return false end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return false end
  end
  return true
end

---The value codec: decode; whatever decodes must encode and decode back to an equal value,
---since replicas and plugins re-send what they received. (Not the same bytes: a map's key
---order follows Lua's table traversal.)
function M.codec(bytes)
  local codec = require("sandlot.core.codec")
  local v, err = codec.decode(bytes)           -- v, next_pos | nil, err (v may be nil itself)
  if v == nil and type(err) ~= "number" then return nil, err end
  local again, eerr = codec.encode(v)
  if not again then error("decoded value does not encode: " .. tostring(eerr)) end
  local v2, derr = codec.decode(again)
  if v2 == nil and type(derr) ~= "number" then
    error("re-encoded value does not decode: " .. tostring(derr))
  end
  if not same(v, v2, 0) then error("decode(encode(v)) differs from v") end
  return true
end

---The replica protocol's frame reader (sandlot._peer.frames), as the host runs it on a
---replica's output: a start marker, then frames. The first byte controls the run: even
---puts the marker before the rest, and it says where the rest is split in two pieces. Every
---message must be an array with a string kind; every failure must be bad_response, and sticky
---(the channel is over).
function M.peer_frames(bytes)
  local frames = require("sandlot._peer.frames")
  local marker = frames.marker("fz")
  local d = frames.decoder({ marker = marker, max = 4096, max_noise = 256 })
  local control, body = bytes:byte(1) or 0, bytes:sub(2)
  if control % 2 == 0 then body = marker .. body end
  local cut = control % (#body + 1)
  local pieces = { body:sub(1, cut), body:sub(cut + 1) }
  for _, piece in ipairs(pieces) do
    d:feed(piece)
    while true do
      local msg, err = d:next()
      if err then
        if not errors.is(err, "bad_response") then error("frames failed without bad_response") end
        local again, err2 = d:next()
        if again ~= nil or err2 ~= err then error("a frame error is not sticky") end
        return nil, err
      end
      if msg == nil then break end
      if type(msg) ~= "table" or type(msg[1]) ~= "string" then
        error("frames returned a message that is not {kind, ...}")
      end
    end
  end
  return true
end

---The WebSocket frame codec: decode every frame of the input (as a server, a client and
---either); every frame decodes within its limit, re-encodes to the same frame, and the rest
---is a valid prefix or a protocol error with a close code.
function M.ws(bytes)
  local ws = require("sandlot.core.ws")
  for _, masked in ipairs({ true, false }) do
    local pos = 1
    while pos <= #bytes do
      local f, nxt, why = ws.decode(bytes, pos, { max = 1024, masked = masked })
      if f == nil then break end
      if f == false then
        if nxt ~= 1002 and nxt ~= 1009 then error("ws: close code " .. tostring(nxt)) end
        if type(why) ~= "string" then error("ws: no reason") end
        break
      end
      if #f.payload > 1024 then error("ws: payload over max") end
      if nxt <= pos then error("ws: no progress") end
      local key = masked and "\1\2\3\4" or nil
      local again = ws.encode(f.opcode, f.payload, f.fin, key)
      local g = ws.decode(again, 1, { masked = masked })
      if not g or g.payload ~= f.payload or g.opcode ~= f.opcode or g.fin ~= f.fin then
        error("ws: encode(decode(frame)) differs")
      end
      pos = nxt
    end
  end
  ws.utf8(bytes)
  return true
end

return M
