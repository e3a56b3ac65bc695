-- sandlot._peer.client: the host's side of a replica's protocol, over any process object with
-- read, write, close_stdin, kill, wait and close (a provider's spawn, via sb:spawn). Owns the
-- pending calls, the streams' windows, the heartbeat and the calls the replica makes back
-- (only to opts.expose). Everything read from the replica is untrusted input: bounded frames,
-- nothing loaded as code, and any protocol fault ends the channel with every call failing.
local event = require("sandlot.core.event")
local timer = require("sandlot.core.timer")
local sched = require("sandlot.core.sched")
local task = require("sandlot.task")
local errors = require("sandlot.errors")
local frames = require("sandlot._peer.frames")

local M = {}

local WINDOW = 64                          -- must match the replica's (sandlot._peer.serve)
local STDERR_TAIL = 2048

local Peer = { __name = "sandlot.peer" }
Peer.__index = Peer

local function now() return timer.now() / 1e9 end

local function unavailable(msg, fields)
  fields = fields or {}
  fields.retryable = false
  return errors.new("unavailable", msg, fields)
end

local die

-- Frames go out in order through one writer at a time, several frames per write. The first
-- sender writes itself (no task hop on the common path) and drains what queued meanwhile; a
-- task that is cancelled cannot wait, so a writer task takes over for it (a cancel must still
-- go out). Nobody writes concurrently.
local function writer(self)
  while #self._outq > 0 and not self._dead do
    local data = table.concat(self._outq)
    self._outq = {}
    local ok, err = self._proc:write(data)
    if not ok then
      if sched.cancelled() then             -- ours, not the pipe's: the write still completes
        self._writer = task.spawn(writer, self)
        return
      end
      self._writer = nil
      return die(self, unavailable("cannot write to the replica: " .. tostring(err)))
    end
  end
  self._writer = nil
end

local function send(self, msg)
  if self._dead then return nil, self._dead end
  local frame, err = frames.encode(msg, self._max_frame)
  if not frame then return nil, err end
  local q = self._outq
  q[#q + 1] = frame
  if self._writer then return true end
  if sched.cancelled() or not sched.can_wait() then
    self._writer = task.spawn(writer, self)
  else
    self._writer = true
    writer(self)
  end
  return true
end

-- Ends the channel: every pending call and stream fails with err, the process is killed.
function die(self, err)
  if self._dead then return end
  self._dead = err
  for id, c in pairs(self._calls) do
    self._calls[id] = nil
    c.msg = { "error", id, err }
    c.done = true
    c.ev:notify()
  end
  if self._ready_ev then self._ready_ev:notify() end
  pcall(self._proc.kill, self._proc, "KILL")
end

local function stderr_tail(self)
  local s = table.concat(self._stderr)
  return s:sub(-STDERR_TAIL)
end

local function expose_call(self, msg)
  local id, name, args = msg[2], msg[4], msg[5]
  local f = type(name) == "string" and self._expose[name] or nil
  if not f then
    send(self, { "error", id, errors.new("permission_denied",
      ("the host does not expose %q to this replica"):format(tostring(name))) })
    return
  end
  task.spawn(function()
    args = type(args) == "table" and args or { n = 0 }
    local res = table.pack(pcall(f, table.unpack(args, 1, math.type(args.n) == "integer"
                                                   and args.n or #args)))
    if res[1] then
      local ok = send(self, { "result", id, { n = res.n - 1, table.unpack(res, 2, res.n) } })
      if not ok then
        send(self, { "error", id, errors.new("invalid_input", "the results cannot be sent") })
      end
    else
      local e = res[2]
      send(self, { "error", id, errors.is(e) and errors.new(e.code, e.message)
                                 or errors.new("internal", tostring(e)) })
    end
  end)
end

local function on_message(self, msg)
  local kind = msg[1]
  if kind == "result" or kind == "error" then
    local c = self._calls[msg[2]]
    if not c then return end
    self._calls[msg[2]] = nil
    c.msg, c.done = msg, true
    c.ev:notify()
  elseif kind == "chunk" then
    local c = self._calls[msg[2]]
    if not c or not c.chunks then return end
    c.chunks[#c.chunks + 1] = msg[3]
    c.ev:notify()
  elseif kind == "log" then
    self._on_log(tostring(msg[2]))
  elseif kind == "pong" then
    self._last_pong = now()
  elseif kind == "call" and msg[3] == "host" then
    expose_call(self, msg)
  elseif kind == "hello" then
    if self._hello then return die(self, errors.new("bad_response", "a second hello")) end
    self._hello = type(msg[2]) == "table" and msg[2] or {}
    if self._ready_ev then self._ready_ev:notify() end
  end
end

local function reader(self)
  local d = self._decoder
  while true do
    local stream, data = self._proc:read()
    if stream == nil then
      if self._closing then return die(self, unavailable("the replica was closed")) end
      local r = self._proc:wait(2)
      local how = r and (r.signal and ("killed by signal %d"):format(r.signal)
                         or ("exited with status %d"):format(r.exit_code)) or "ended"
      local tail = stderr_tail(self)
      local last = tail:match("([^\n]+)\n*$")
      return die(self, unavailable(("the replica %s (%s)%s"):format(how,
        data and tostring(data) or "its output ended",
        last and (": " .. last:sub(1, 300)) or ""), { stderr = tail }))
    end
    self._last_rx = now()
    if stream == "stderr" then
      local t = self._stderr
      t[#t + 1] = data
      if #t > 32 then table.remove(t, 1) end
    else
      d:feed(data)
      while true do
        local msg, err = d:next()
        if err then
          return die(self, errors.wrap(err, { stderr = stderr_tail(self) }))
        end
        if msg == nil then break end
        on_message(self, msg)
      end
    end
  end
end

local function heartbeat(self)
  local period, limit = self._heartbeat, self._stall
  while not self._dead do
    if not task.sleep(period) then return end
    if self._dead then return end
    local quiet = now() - self._last_rx
    if quiet > limit then
      return die(self, unavailable(("the replica did not answer heartbeats for %.1fs (stalled?)")
                                   :format(quiet)))
    end
    if quiet >= period then send(self, { "ping", 0 }) end
  end
end

---Starts the protocol over proc. Waits for the replica's hello (opts.timeout seconds) and
---checks the protocol and version.
---@return table|nil peer, sandlot.Error? err
function M.connect(proc, opts)
  local self = setmetatable({
    _proc = proc, _calls = {}, _next = 0, _outq = {}, _stderr = {}, _expose = opts.expose or {},
    _name = opts.name, _max_frame = opts.max_frame or frames.MAX_FRAME,
    _heartbeat = opts.heartbeat or 5, _last_rx = now(),
    _decoder = frames.decoder({ marker = frames.marker(opts.nonce),
                                max = opts.max_frame or frames.MAX_FRAME }),
    _on_log = opts.on_log or function(line)
      io.stderr:write(("[%s] %s\n"):format(opts.name or "replica", line))
    end,
  }, Peer)
  self._stall = opts.stall or math.max(3 * self._heartbeat, self._heartbeat + 1)
  self._ready_ev = event.new()
  self._reader = task.spawn(reader, self)
  local guard = task.spawn(function()
    if task.sleep(opts.timeout or 60) and not self._hello then
      die(self, errors.new("timeout", ("no hello from the replica within %gs")
                           :format(opts.timeout or 60), { stderr = stderr_tail(self) }))
    end
  end)
  while not self._hello and not self._dead do
    local ok, err = self._ready_ev:wait()
    if not ok then
      guard:cancel()
      die(self, err)
      self:close()
      return nil, err
    end
  end
  guard:cancel()
  self._ready_ev = nil
  if self._dead then
    local err = self._dead
    self:close()
    return nil, err
  end
  local h = self._hello
  if h.protocol ~= frames.PROTOCOL or h.version ~= opts.version then
    local err = errors.new("not_supported", ("replica speaks protocol %s (sandlot %s); this " ..
      "host speaks protocol %d (sandlot %s)"):format(tostring(h.protocol),
      tostring(h.version), frames.PROTOCOL, tostring(opts.version)), { retryable = false })
    die(self, err)
    self:close()
    return nil, err
  end
  self.pid, self.version, self.name = h.pid, h.version, opts.name
  self._hb = task.spawn(heartbeat, self)
  return self
end

local function start(self, kind, target, ...)
  if self._closed then error("attempt to use a closed sandlot.peer", 3) end
  if self._dead then return nil, self._dead end
  self._next = self._next + 1
  local id = self._next
  local c = { ev = event.new(), id = id, chunks = kind == "stream" and {} or nil, taken = 0 }
  self._calls[id] = c
  local ok, err = send(self, { "call", id, kind, target, { n = select("#", ...), ... } })
  if not ok then
    self._calls[id] = nil
    return nil, err
  end
  return c
end

-- Waits for call c's answer; a cancelled wait cancels the remote call.
local function finish(self, c)
  while not c.done do
    local ok, err = c.ev:wait()
    if not ok then
      if self._calls[c.id] then
        self._calls[c.id] = nil
        send(self, { "cancel", c.id })
      end
      return nil, err
    end
  end
  local msg = c.msg
  if msg[1] == "error" then
    local e = msg[3]
    if not errors.is(e) then
      e = errors.new("bad_response", "the replica sent a malformed error")
    end
    if type(msg[4]) == "string" then e = errors.wrap(e, { traceback = msg[4] }) end
    return nil, e
  end
  local r = type(msg[3]) == "table" and msg[3] or { n = 0 }
  return table.unpack(r, 1, math.type(r.n) == "integer" and r.n or #r)
end

---Calls target ("module.function") in the replica: its results, or nil, err (what the
---function returned or raised, with the remote traceback in err.traceback; unavailable when
---the replica died; cancelled when this task was).
function Peer:call(target, ...)
  if type(target) ~= "string" then error("call: target must be \"module.function\"", 2) end
  local c, err = start(self, "call", target, ...)
  if not c then return nil, err end
  return finish(self, c)
end

---Runs Lua source in the replica with ... as its arguments: its results, or nil, err.
function Peer:eval(code, ...)
  if type(code) ~= "string" then error("eval: code must be a string", 2) end
  local c, err = start(self, "eval", code, ...)
  if not c then return nil, err end
  return finish(self, c)
end

---A table whose functions call module `name`'s functions in the replica.
function Peer:require(name)
  if type(name) ~= "string" then error("require: name must be a string", 2) end
  return setmetatable({}, { __index = function(t, fn)
    local f = function(...) return self:call(name .. "." .. fn, ...) end
    rawset(t, fn, f)
    return f
  end })
end

local RemoteTask = { __name = "sandlot.peer.task" }
RemoteTask.__index = RemoteTask

---Waits for the remote call: its results or nil, err.
function RemoteTask:join()
  if self._res then return table.unpack(self._res, 1, self._res.n) end
  self._res = table.pack(finish(self._peer, self._c))
  return table.unpack(self._res, 1, self._res.n)
end

---Cancels the remote call (its pending operations are released there); join then gives
---nil, err{cancelled}.
function RemoteTask:cancel()
  local p, c = self._peer, self._c
  if c.done or not p._calls[c.id] then return false end
  send(p, { "cancel", c.id })
  return true
end

---"running" or "done".
function RemoteTask:status()
  return self._c.done and "done" or "running"
end

---Starts target in the replica and returns at once with a remote task (join, cancel,
---status), or nil, err.
function Peer:spawn(target, ...)
  if type(target) ~= "string" then error("spawn: target must be \"module.function\"", 2) end
  local c, err = start(self, "call", target, ...)
  if not c then return nil, err end
  return setmetatable({ _peer = self, _c = c }, RemoteTask)
end

---Streams the values a remote generator produces: target returns an iterator (or a list)
---in the replica; `for v in peer:stream("mod.fn", ...) do ... end`. The replica sends at most
---a window of values ahead of the loop. Failures raise from the iterator (with the code of
---the sandlot error); leaving the loop early cancels the remote generator.
function Peer:stream(target, ...)
  if type(target) ~= "string" then error("stream: target must be \"module.function\"", 2) end
  local c, err = start(self, "stream", target, ...)
  if not c then error(err, 2) end
  local pos = 0
  local closer = setmetatable({}, { __close = function()
    if not c.done and self._calls[c.id] then
      self._calls[c.id] = nil
      send(self, { "cancel", c.id })
    end
  end })
  local function iter()
    while true do
      if pos < #c.chunks then
        pos = pos + 1
        local v = c.chunks[pos]
        c.chunks[pos] = false             -- consumed: let it be collected
        c.taken = c.taken + 1
        if c.taken % (WINDOW // 2) == 0 and not c.done then
          send(self, { "grant", c.id, WINDOW // 2 })
        end
        return v
      end
      if c.done then
        local ok, ferr = finish(self, c)
        if ok == nil and ferr ~= nil then error(ferr, 0) end
        return nil
      end
      local ok, werr = c.ev:wait()
      if not ok then
        closer.__close = nil
        if self._calls[c.id] then
          self._calls[c.id] = nil
          send(self, { "cancel", c.id })
        end
        error(werr, 0)
      end
    end
  end
  return iter, nil, nil, closer
end

---Tells whether the channel is up.
function Peer:alive() return not self._dead and not self._closed end

---Closes the replica: ends its input (it exits), waits briefly, then kills it. Pending calls
---fail with unavailable. Idempotent; also __close.
function Peer:close()
  if self._closed then return true end
  self._closed = true
  self._closing = true
  if not self._dead then
    pcall(self._proc.close_stdin, self._proc)    -- end of input: the replica exits
  end
  if self._on_close then pcall(self._on_close, self) end
  local waited = false
  if not self._dead and task.current() then
    local r = select(2, pcall(self._proc.wait, self._proc, 1))
    waited = r ~= nil
  end
  die(self, unavailable("the replica was closed"))
  if self._hb then self._hb:cancel() end
  if self._reader and not waited then self._reader:cancel() end
  pcall(self._proc.close, self._proc)
  return true
end

-- Fails every pending call with unavailable(why) now, then kills and closes without waiting.
function Peer:_abort(why)
  die(self, unavailable(why))
  self._closed = true
  if self._on_close then pcall(self._on_close, self) end
  if self._hb then self._hb:cancel() end
  if self._reader then self._reader:cancel() end
  pcall(self._proc.close, self._proc)
end

Peer.__close = function(self) self:close() end

function Peer:__tostring()
  return ("sandlot.peer(%s%s)"):format(self._name or "replica",
                                       self._dead and ", closed" or "")
end

M.Peer = Peer

return M
