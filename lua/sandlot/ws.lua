-- sandlot.ws: WebSocket (RFC 6455) connections on the host's loop.
--
-- Decision: RFC 6455 framing over the core's own upgraded stream (sandlot.http.upgrade on the
-- client, sandlot.http.serve's raw mode on the server) rather than libwebsockets. The stream
-- already serves Docker's hijacked attach and runs on the same loop and scheduler, the server
-- side for fakes shares the codec, and no second event-loop integration comes in. wss:// is
-- the same stream over TLS (core/tls.c: OpenSSL on memory BIOs driven by the stream's own
-- reads and writes, with a client certificate when opts.client_cert / client_key are given;
-- http.serve{tls = ...} is its server side for fakes).
-- The frame codec is C (core/ws.c, sandlot.core.ws, fuzz target `ws`): masking is a per-byte
-- XOR over messages of up to 16 MiB. This file runs the protocol: handshake, reassembly,
-- ping/pong, close codes, limits and deadlines.
local core = require("sandlot.core.ws")
local timer = require("sandlot.core.timer")
local sys = require("sandlot.core.sys")
local errors = require("sandlot.errors")
local check = require("sandlot._check")
local id = require("sandlot.id")

local M = {}

M.DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
M.DEFAULT_TIMEOUT = 30                    -- s for the handshake
M.CLOSE_WAIT = 2                          -- s close() waits for the peer's close frame

local OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

local function now() return timer.now() / 1e9 end

local function hex_bytes(h)
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

local Conn = {}
Conn.__index = Conn

local function new_conn(t, client, opts)
  return setmetatable({
    _t = t, _client = client, _buf = "", _pos = 1, _frags = nil, _flen = 0, _fkind = nil,
    _keys = "", _sent_close = false, _ping_at = nil, _need = nil, _parts = nil, _plen = 0,
    max_message = opts.max_message or M.DEFAULT_MAX_MESSAGE,
    ping_timeout = opts.ping_timeout, keepalive = opts.keepalive,
    subprotocol = opts.subprotocol, pongs = 0, last_pong = nil, closed = nil,
  }, Conn)
end

function Conn:_key()
  if #self._keys < 4 then self._keys = hex_bytes(id.hex(256)) end
  local k = self._keys:sub(1, 4)
  self._keys = self._keys:sub(5)
  return k
end

function Conn:_frame(op, payload, fin)
  local bytes = core.encode(op, payload, fin, self._client and self:_key() or nil)
  return self._t.write(bytes)
end

local function close_payload(code, reason)
  if code == nil then return "" end
  return string.pack(">I2", code) .. (reason or "")
end

-- Ends the connection after a protocol failure: the close frame (best effort), then the
-- transport; returns nil, err.
function Conn:_fail(close_code, code, msg)
  if not self.closed then
    self.closed = { code = close_code, reason = msg, local_ = true }
    if not self._sent_close then
      self._sent_close = true
      pcall(self._frame, self, OP_CLOSE, close_payload(close_code, msg:sub(1, 120)))
    end
    self._t.close()
  end
  self._frags, self._buf, self._pos, self._parts, self._need = nil, "", 1, nil, nil
  return nil, errors.new(code, "websocket: " .. msg, { close_code = close_code })
end

function Conn:_closed_err()
  local c = self.closed
  return nil, errors.new("unavailable", ("websocket: the connection is closed (%s%s)"):format(
    tostring(c.code or 1006), c.reason and c.reason ~= "" and ": " .. c.reason or ""),
    { closed = true, close_code = c.code, reason = c.reason })
end

---Sends one message: text (default; must be valid UTF-8) or binary ({binary = true}).
---@return true|nil ok, sandlot.Error? err
function Conn:send(data, opts)
  if type(data) ~= "string" then error("ws:send: data must be a string", 2) end
  opts = check.opts(opts, { binary = "boolean" }, "ws:send", 3)
  if self.closed or self._sent_close then return self:_closed_err_or_local() end
  if not opts.binary and not core.utf8(data) then
    return nil, errors.new("invalid_input", "ws:send: a text message must be valid UTF-8 "
      .. "(send it with {binary = true})")
  end
  local ok, err = self:_frame(opts.binary and OP_BIN or OP_TEXT, data, true)
  if not ok then return nil, err end
  return true
end

function Conn:_closed_err_or_local()
  if self.closed then return self:_closed_err() end
  return nil, errors.new("unavailable", "websocket: close() was called", { closed = true })
end

---Sends a ping (payload up to 125 bytes); the pong is tracked by receive() (pongs, last_pong),
---and with ping_timeout a missing pong ends the connection with a timeout error.
function Conn:ping(data)
  data = data or ""
  if type(data) ~= "string" or #data > 125 then
    error("ws:ping: data must be a string of at most 125 bytes", 2)
  end
  if self.closed or self._sent_close then return self:_closed_err_or_local() end
  local ok, err = self:_frame(OP_PING, data, true)
  if not ok then return nil, err end
  self._ping_at = self._ping_at or now()
  return true
end

-- the next frame from the buffer, or nil when more bytes are needed, or false, code, why
function Conn:_next_frame()
  if self._need and #self._buf - self._pos + 1 < self._need then return nil end
  if self._pos > 65536 then
    self._buf, self._pos = self._buf:sub(self._pos), 1
  end
  local f, nxt, why = core.decode(self._buf, self._pos,
                                  { max = self.max_message, masked = not self._client })
  if f then self._pos = nxt end
  self._need = f == nil and nxt or nil
  return f, nxt, why
end

-- appends what a read got; a large frame's reads are gathered in a list and joined once it is
-- complete (self._need: the bytes it needs), so a 16 MiB frame is not copied per read
function Conn:_feed(got)
  local parts = self._parts
  if self._need and #self._buf - self._pos + 1 + self._plen + #got < self._need then
    if not parts then
      parts = { self._buf:sub(self._pos) }
      self._parts, self._plen, self._buf, self._pos = parts, #parts[1], "", 1
    end
    parts[#parts + 1] = got
    self._plen = self._plen + #got
    return
  end
  if parts then
    parts[#parts + 1] = got
    self._buf, self._pos, self._parts, self._plen = table.concat(parts), 1, nil, 0
  else
    self._buf = self._buf:sub(self._pos) .. got
    self._pos = 1
  end
end

-- handles one frame: returns data, kind for a complete message, or nil, err, or nothing
function Conn:_handle(f)
  local op = f.opcode
  if op == OP_PING then
    if not self._sent_close then self:_frame(OP_PONG, f.payload, true) end
    return
  elseif op == OP_PONG then
    self.pongs = self.pongs + 1
    self.last_pong = f.payload
    self._ping_at = nil
    return
  elseif op == OP_CLOSE then
    local p, code, reason = f.payload, 1005, ""
    if #p == 1 then return self:_fail(1002, "bad_response", "a close frame of one byte") end
    if #p >= 2 then
      code = string.unpack(">I2", p)
      reason = p:sub(3)
      if code < 1000 or (code >= 1004 and code <= 1006) or (code >= 1015 and code < 3000)
         or code >= 5000 then
        return self:_fail(1002, "bad_response", "a close frame with the invalid code " .. code)
      end
      if not core.utf8(reason) then
        return self:_fail(1007, "bad_response", "a close reason that is not UTF-8")
      end
    end
    local mid = self._frags ~= nil
    if not self._sent_close then
      self._sent_close = true
      pcall(self._frame, self, OP_CLOSE, close_payload(code ~= 1005 and code or nil))
    end
    self.closed = { code = code, reason = reason }
    self._frags = nil
    self._t.close()
    if mid then
      return nil, errors.new("unavailable", ("websocket: the peer closed (%d) in the middle of "
        .. "a fragmented message"):format(code), { closed = true, close_code = code,
                                                    reason = reason })
    end
    return self:_closed_err()
  end
  if op == OP_CONT then
    if not self._frags then
      return self:_fail(1002, "bad_response", "a continuation frame without a message")
    end
  else
    if self._frags then
      return self:_fail(1002, "bad_response", "a new message inside a fragmented one")
    end
    self._frags, self._flen, self._fkind = {}, 0, op == OP_TEXT and "text" or "binary"
  end
  self._flen = self._flen + #f.payload
  if self._flen > self.max_message then
    return self:_fail(1009, "bad_response", ("a message larger than max_message (%d bytes)")
      :format(self.max_message))
  end
  local fr = self._frags
  fr[#fr + 1] = f.payload
  if not f.fin then return end
  local data, kind = table.concat(fr), self._fkind
  self._frags = nil
  if kind == "text" and not core.utf8(data) then
    return self:_fail(1007, "bad_response", "a text message that is not valid UTF-8")
  end
  return data, kind
end

---Receives the next message: data, "text"|"binary"; or nil, err: err.closed (with close_code
---and reason) once the connection is closed, timeout when opts.timeout passed (the connection
---stays open), or a protocol failure (the connection closed with its close code). Answers
---pings, counts pongs, sends keepalive pings and enforces ping_timeout while it waits.
function Conn:receive(opts)
  opts = check.opts(opts, { timeout = "number" }, "ws:receive", 3)
  local deadline = opts.timeout and now() + opts.timeout
  local last_rx = now()
  while true do
    if self.closed then return self:_closed_err() end
    local f, code, why = self:_next_frame()
    if f == false then return self:_fail(code, "bad_response", why) end
    if f then
      last_rx = now()
      local data, kind = self:_handle(f)
      if data ~= nil or kind ~= nil then return data, kind end
    else
      local t, wait = now(), math.huge
      if deadline then wait = math.min(wait, deadline - t) end
      if self._ping_at and self.ping_timeout then
        wait = math.min(wait, self._ping_at + self.ping_timeout - t)
      end
      if self.keepalive and not self._ping_at then
        wait = math.min(wait, last_rx + self.keepalive - t)
      end
      local got, err
      if wait <= 0 then
        got, err = nil, errors.new("timeout", "no data")
      else
        got, err = self._t.read(wait < math.huge and math.max(wait, 0.001) or nil)
      end
      if got then
        self:_feed(got)
      elseif err == nil then
        self.closed = self.closed or { code = 1006, reason = "closed without a close frame" }
        self._t.close()
        return self:_closed_err()
      elseif not errors.is(err, "timeout") then
        self.closed = { code = 1006, reason = tostring(err.message or err) }
        self._t.close()
        return nil, err
      else
        t = now()
        if self._ping_at and self.ping_timeout and t >= self._ping_at + self.ping_timeout then
          return self:_fail(1001, "timeout", ("no pong within ping_timeout (%gs)")
            :format(self.ping_timeout))
        elseif self.keepalive and not self._ping_at and t >= last_rx + self.keepalive then
          local ok, perr = self:ping("")
          if not ok then return nil, perr end
        elseif deadline and t >= deadline then
          return nil, errors.new("timeout", ("websocket: no message within %gs")
            :format(opts.timeout))
        end
      end
    end
  end
end

---Closes the connection: sends a close frame (code default 1000, reason), waits up to
---CLOSE_WAIT seconds for the peer's close frame, then closes the stream. Idempotent.
function Conn:close(code, reason)
  if code ~= nil and (math.type(code) ~= "integer" or code < 1000 or code > 4999) then
    error("ws:close: code must be an integer in 1000..4999", 2)
  end
  if reason ~= nil and (type(reason) ~= "string" or #reason > 123) then
    error("ws:close: reason must be a string of at most 123 bytes", 2)
  end
  if self.closed then return true end
  if not self._sent_close then
    self._sent_close = true
    pcall(self._frame, self, OP_CLOSE, close_payload(code or 1000, reason))
  end
  local deadline = now() + M.CLOSE_WAIT
  while not self.closed and now() < deadline do       -- drain to the peer's close frame
    local f = self:_next_frame()
    if f == false then break end
    if f then
      if f.opcode == OP_CLOSE then break end
    else
      local got = self._t.read(math.max(deadline - now(), 0.001))
      if not got then break end
      self:_feed(got)
    end
  end
  self.closed = self.closed or { code = code or 1000, reason = reason or "", local_ = true }
  self._t.close()
  return true
end
Conn.__close = function(self) self:close() end

---Writes bytes as they are, outside the framing: for fakes that must misbehave (a masked
---server frame, a bad length) and for their specs. Never needed by a well-behaved peer.
function Conn:write_raw(bytes)
  if type(bytes) ~= "string" then error("ws:write_raw: bytes must be a string", 2) end
  return self._t.write(bytes)
end

function Conn:__tostring()
  return "sandlot.ws.conn" .. (self.closed and " (closed)" or "")
end

local function header(raw, name)
  for line in raw:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k and k:lower() == name then return v end
  end
end

---@class sandlot.ws.ConnectOpts
---@field headers? table
---@field subprotocols? string[]
---@field timeout? number
---@field max_message? integer
---@field ping_timeout? number
---@field keepalive? number
---@field ca_file? string
---@field ca_path? string
---@field insecure? boolean
---@field client_cert? string
---@field client_key? string

---Opens a WebSocket connection: ws://, or wss:// (TLS with SNI; the server's certificate is
---verified against the system store and the host name, or against opts.ca_file / ca_path;
---opts.insecure = true skips the verification: an explicit opt-in for tests only;
---opts.client_cert + client_key: a TLS client certificate and its key, PEM text kept in memory).
---The other opts: headers, subprotocols, timeout, max_message, ping_timeout, keepalive.
---@param url string ws[s]://host[:port]/path[?query]
---@param opts? sandlot.ws.ConnectOpts
---@return table|nil conn, sandlot.Error? err
function M.connect(url, opts)
  if type(url) ~= "string" then error("sandlot.ws.connect: url must be a string", 2) end
  opts = check.opts(opts, {
    headers = "table", subprotocols = "table", timeout = "number", max_message = "integer",
    ping_timeout = "number", keepalive = "number", ca_file = "string", ca_path = "string",
    insecure = "boolean", client_cert = "string", client_key = "string",
  }, "sandlot.ws.connect", 3)
  local scheme, rest = url:match("^(%a+)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "ws" and scheme ~= "wss" then
    error("sandlot.ws.connect: url must be ws:// or wss://", 2)
  end
  local key = sys.b64encode(hex_bytes(id.hex(16)))
  local headers = { ["Sec-WebSocket-Key"] = key, ["Sec-WebSocket-Version"] = "13" }
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.subprotocols and #opts.subprotocols > 0 then
    headers["Sec-WebSocket-Protocol"] = table.concat(opts.subprotocols, ", ")
  end
  local http = require("sandlot.http")
  local timeout = opts.timeout or M.DEFAULT_TIMEOUT
  local s, err = http.upgrade({ url = (scheme == "wss" and "https://" or "http://") .. rest,
                                method = "GET", upgrade = "websocket", headers = headers,
                                timeout = timeout, connect_timeout = timeout,
                                op = "ws.connect", ca_file = opts.ca_file,
                                ca_path = opts.ca_path, insecure = opts.insecure,
                                client_cert = opts.client_cert,
                                client_key = opts.client_key })
  if not s then return nil, err end
  local head = s:head()
  local function refuse(msg)
    s:close()
    return nil, errors.new("bad_response", "sandlot.ws.connect: " .. msg,
                           { url = http.redact_url(url) })
  end
  if head.status ~= 101 then return refuse("the server answered " .. head.status .. ", not 101") end
  local raw = head.headers_raw or ""
  if (header(raw, "upgrade") or ""):lower() ~= "websocket" then
    return refuse("the answer does not upgrade to websocket")
  end
  if header(raw, "sec-websocket-accept") ~= core.accept(key) then
    return refuse("Sec-WebSocket-Accept does not match the key")
  end
  local proto = header(raw, "sec-websocket-protocol")
  if proto then
    local offered = false
    for _, p in ipairs(opts.subprotocols or {}) do if p == proto then offered = true end end
    if not offered then return refuse("the server chose the subprotocol " .. proto
                                      .. ", which was not offered") end
  end
  local t = {
    read = function(tmo) return s:read(65536, tmo) end,
    write = function(d) return s:write(d) end,
    close = function() s:close() end,
  }
  return new_conn(t, true, { max_message = opts.max_message, ping_timeout = opts.ping_timeout,
                             keepalive = opts.keepalive, subprotocol = proto })
end

-- Server side (sandlot.http.serve): a handler's answer {websocket = fn(ws), subprotocols =
-- {...}, max_message, ping_timeout, keepalive, headers}. Returns true when it answered.
function M._serve(conn, req, res, head_text)
  local h = req.headers or {}
  local key = h["sec-websocket-key"]
  local function bad(text)
    local body = text .. "\n"
    conn:write(head_text(400, { ["Content-Type"] = "text/plain" },
                         ("Content-Length: %d\r\n"):format(#body), true) .. body)
    return false
  end
  if req.method ~= "GET" or not (h.upgrade or ""):lower():find("websocket", 1, true)
     or not key or #key ~= 24 then
    return bad("400: not a WebSocket handshake (GET, Upgrade: websocket, Sec-WebSocket-Key)")
  end
  if h["sec-websocket-version"] ~= "13" then return bad("400: Sec-WebSocket-Version must be 13") end
  local out = {}
  for k, v in pairs(res.headers or {}) do out[k] = v end
  out.Upgrade, out.Connection = "websocket", nil
  out["Sec-WebSocket-Accept"] = core.accept(key)
  local chosen
  if res.subprotocols then
    local offered = {}
    for p in (h["sec-websocket-protocol"] or ""):gmatch("[^,%s]+") do offered[p] = true end
    for _, p in ipairs(res.subprotocols) do
      if offered[p] then chosen = p break end
    end
    if chosen then out["Sec-WebSocket-Protocol"] = chosen end
  end
  local ok, err = conn:write(head_text(101, out, "Connection: Upgrade\r\n", false))
  if not ok then return false, err end
  conn:upgrade()
  local t = {
    read = function(tmo) return conn:read(tmo) end,
    write = function(d) return conn:write(d) end,
    close = function() end,                  -- the dispatcher ends the connection
  }
  local ws = new_conn(t, false, { max_message = res.max_message, ping_timeout = res.ping_timeout,
                                  keepalive = res.keepalive, subprotocol = chosen })
  ws.request = req
  local hok, herr = pcall(res.websocket, ws)
  if not ws.closed then
    if hok then ws:close(1000) else ws:_fail(1011, "internal", "handler error") end
  end
  if not hok then error(herr, 0) end
  return true
end

return M
