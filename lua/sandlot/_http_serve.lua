-- sandlot._http_serve: the policy of sandlot.http.serve: option checks, one task per request
-- (dispatch), the answer's head (status line, Content-Length or chunked, Connection), the 500
-- of a handler that raised, and close() cancelling handlers still running. Accepting, parsing
-- (libhttp-parser), limits and timeouts are in core/http_serve.c.
local core = require("sandlot.core.http")
local sched = require("sandlot.core.sched")
local check = require("sandlot._check")

local M = {}

M.DEFAULT_MAX_BODY = 512 * 1024 * 1024
M.DEFAULT_MAX_HEAD = 64 * 1024
M.DEFAULT_IDLE_TIMEOUT = 30
M.MAX_ERRORS = 20                        -- handler errors kept in srv.errors

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created",
  [202] = "Accepted", [204] = "No Content", [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
  [411] = "Length Required", [412] = "Precondition Failed", [413] = "Content Too Large",
  [415] = "Unsupported Media Type", [422] = "Unprocessable Content",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

-- headers the server writes itself: a handler's own would contradict the framing
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true,
                  connection = true }

local function head_text(status, headers, framing, close)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status") }
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    if not FRAMING[k:lower()] then
      local v = headers[k]
      local list = type(v) == "table" and v or { v }
      for _, one in ipairs(list) do
        local s = tostring(one)
        if s:find("[\r\n]") or k:find("[%c: ]") then
          error("sandlot.http.serve: header " .. k .. " has a newline or a bad name", 0)
        end
        out[#out + 1] = k .. ": " .. s .. "\r\n"
      end
    end
  end
  if framing then out[#out + 1] = framing end
  if close then out[#out + 1] = "Connection: close\r\n" end
  out[#out + 1] = "\r\n"
  return table.concat(out)
end

local function text_answer(status, text)
  return { status = status, headers = { ["Content-Type"] = "text/plain; charset=utf-8" },
           body = text .. "\n" }
end

-- Writes res on conn; returns true when the connection may serve another request.
local function answer(conn, req, res)
  local status = math.tointeger(res.status or 200)
  if not status or status < 100 or status > 599 then
    res = text_answer(500, "handler returned a bad status: " .. tostring(res.status))
    status = 500
  end
  local headers = res.headers or {}
  local close = not req.keep_alive
  for k, v in pairs(headers) do
    if k:lower() == "connection" and tostring(v):lower() == "close" then close = true end
  end
  local body = res.body
  local no_body = req.method == "HEAD" or status == 204 or status == 304 or status < 200
  if type(body) == "function" then
    if req.http_version == "1.0" then            -- no chunked encoding: close instead
      local ok, err = conn:write(head_text(status, headers, nil, true))
      if not ok then return false, err end
      while true do
        local chunk = body()
        if chunk == nil then break end
        if #chunk > 0 and not no_body then
          ok, err = conn:write(chunk)
          if not ok then return false, err end
        end
      end
      return false
    end
    local ok, err = conn:write(head_text(status, headers,
                                         not no_body and "Transfer-Encoding: chunked\r\n", close))
    if not ok then return false, err end
    if no_body then return not close end
    while true do
      local chunk = body()
      if chunk == nil then break end
      chunk = tostring(chunk)
      if #chunk > 0 then
        ok, err = conn:write(("%x\r\n"):format(#chunk) .. chunk .. "\r\n")
        if not ok then return false, err end
      end
    end
    ok, err = conn:write("0\r\n\r\n")
    if not ok then return false, err end
    return not close
  end
  body = body == nil and "" or tostring(body)
  local framing = (status >= 200 and status ~= 204 and status ~= 304)
    and ("Content-Length: %d\r\n"):format(#body) or nil
  local ok, err = conn:write(head_text(status, headers, framing, close))
  if ok and not no_body and #body > 0 then ok, err = conn:write(body) end
  if not ok then return false, err end
  return not close
end

local Server = {}
Server.__index = Server

---Closes the listener and every open connection and cancels handlers still running.
---Idempotent.
---@return true
function Server:close()
  if self._core then
    local c = self._core
    self._core = nil
    c:close()
    for t in pairs(self._tasks) do
      if t ~= sched.current() then t:cancel() end
    end
  end
  return true
end
Server.__close = Server.close      -- no __gc: the core's server handle closes itself when
                                   -- collected, and cancelling tasks has no place in a finalizer

---Returns {connections, accepted, requests, handling} (counts).
function Server:stats()
  if not self._core then return { connections = 0, accepted = 0, requests = 0, handling = 0 } end
  local s = self._core:stats()
  local n = 0
  for _ in pairs(self._tasks) do n = n + 1 end
  s.handling = n
  return s
end

function Server:__tostring() return "sandlot.http.server " .. self.url end

local function note_error(srv, msg)
  local errs = srv.errors
  errs[#errs + 1] = msg
  if #errs > M.MAX_ERRORS then table.remove(errs, 1) end
end

---Starts an HTTP/1.1 server on the host's loop. See sandlot.http.serve.
---@param opts sandlot.http.ServeOpts
---@return table|nil srv, sandlot.Error|nil err
function M.serve(opts)
  opts = check.opts(opts, {
    host = "string", port = "integer", handler = true, max_body = "integer",
    max_head = "integer", idle_timeout = "number", max_conns = "integer", tls = "table",
  }, "sandlot.http.serve", 3)
  local tls = opts.tls and check.opts(opts.tls, { cert = "string", key = "string",
                                                  client_ca = "string" },
                                      "sandlot.http.serve: opts.tls", 3)
  if tls and not (tls.cert and tls.key) then
    error("sandlot.http.serve: opts.tls needs cert and key (PEM file paths)", 3)
  end
  local handler = opts.handler
  if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
    error("sandlot.http.serve: opts.handler must be a function", 3)
  end
  local srv = setmetatable({ errors = {}, _tasks = {} }, Server)
  local tasks = srv._tasks
  local function dispatch(conn, req)
    local me = sched.current()
    tasks[me] = true
    local ok, res = pcall(handler, req)
    if ok and type(res) ~= "table" then
      ok, res = false, "handler returned " .. type(res) .. ", not a table"
    end
    if not ok then
      local msg = tostring(res)
      note_error(srv, msg)
      res = text_answer(500, "handler error: " .. msg:sub(1, 200))
    end
    if res.websocket then                  -- the 101 handshake, then the handler's session
      local wok, werr = pcall(require("sandlot.ws")._serve, conn, req, res, head_text)
      if not wok then note_error(srv, tostring(werr)) end
      conn:finish(false)
    elseif res.drop then
      conn:close()
    else
      local aok, keep = pcall(answer, conn, req, res)
      if not aok then                      -- a body producer raised within the answer
        note_error(srv, tostring(keep))
        conn:close()
      else
        conn:finish(keep)
      end
    end
    tasks[me] = nil
  end
  local c, err = core.serve({
    host = opts.host or "127.0.0.1", port = opts.port or 0,
    max_body = opts.max_body or M.DEFAULT_MAX_BODY, max_head = opts.max_head or M.DEFAULT_MAX_HEAD,
    idle_timeout = opts.idle_timeout or M.DEFAULT_IDLE_TIMEOUT, max_conns = opts.max_conns,
    tls_cert = tls and tls.cert, tls_key = tls and tls.key, tls_client_ca = tls and tls.client_ca,
  }, dispatch)
  if not c then return nil, err end
  srv._core = c
  srv.port = c:port()
  local host = opts.host or "127.0.0.1"
  srv.host = host
  srv.url = ("%s://%s:%d"):format(tls and "https" or "http",
                                  host:find(":", 1, true) and "[" .. host .. "]" or host, srv.port)
  return srv
end

return M
