-- sandlot._peer.serve: the replica's side of the protocol, run by sandlot-peer (core/
-- peer_main.c) inside the sandbox. Every request runs in a task of its own, so answers come in
-- any order; a stream's chunks are sent within a window the host grants. The host is the only
-- client: it may run anything here; this side may call back only what the host exposed.
local core = require("sandlot.core")
local channel = require("sandlot.core.channel")
local event = require("sandlot.core.event")
local sys = require("sandlot.core.sys")
local task = require("sandlot.task")
local errors = require("sandlot.errors")
local frames = require("sandlot._peer.frames")

local M = {}

local WINDOW = 64                        -- stream chunks in flight before the host grants more

local ch                                 -- the protocol channel (stdio moved off fds 0 and 1)
local running = {}                       -- id -> task of a request from the host
local streams = {}                       -- id -> {credits, ev}
local host_calls = {}                    -- id -> {ev, msg} of a call this side made
local next_host_call = 0

local function send(msg)
  local frame, err = frames.encode(msg)
  if not frame then return nil, err end
  return ch:write(frame)
end

-- a failure as it crosses: a sandlot error keeps its code and fields; anything else raised
-- becomes `internal` with its text. The traceback travels beside it.
local function as_error(e)
  if errors.is(e) then
    local ok = pcall(require("sandlot.core.codec").encode, e)
    if ok then return e end
    return errors.new(e.code, e.message)
  end
  return errors.new("internal", tostring(e))
end

local function traced(e)
  return { err = e, traceback = debug.traceback("", 2) }
end

local function resolve(target)
  local mod, fn = target:match("^(.+)%.([%a_][%w_]*)$")
  if not mod then
    return nil, errors.new("invalid_input", ("%q is not \"module.function\""):format(target))
  end
  local ok, m = pcall(require, mod)
  if not ok then
    if errors.is(m) then return nil, m end
    return nil, errors.new("not_found", tostring(m))
  end
  local f = type(m) == "table" and m[fn] or nil
  if type(f) ~= "function" and not (type(f) == "table" and (getmetatable(f) or {}).__call) then
    return nil, errors.new("not_found", ("%s has no function %s"):format(mod, fn))
  end
  return f
end

local function results(...)
  return { n = select("#", ...), ... }
end

-- Runs one request: kind "call" (target "mod.fn"), "eval" (target is source) or "stream"
-- (the function returns an iterator, or a list; each value is a chunk).
local function run(id, kind, target, args)
  local f, ferr
  if kind == "eval" then
    f, ferr = load(target, "=eval", "t")
    if not f then ferr = errors.new("invalid_input", ferr) end
  else
    f, ferr = resolve(target)
  end
  if not f then
    send({ "error", id, ferr })
    return
  end
  args = type(args) == "table" and args or { n = 0 }
  local res = table.pack(xpcall(f, traced, table.unpack(args, 1, args.n or #args)))
  if res[1] and kind == "stream" then
    local gen = res[2]
    if type(gen) == "table" then
      local list, i = gen, 0
      gen = function() i = i + 1; return list[i] end
    end
    if type(gen) ~= "function" then
      res = { false, { err = errors.new("invalid_input", ("%s returned a %s, not an iterator")
                                        :format(target, type(gen))) } }
    else
      local s = { credits = WINDOW, ev = event.new() }
      streams[id] = s
      res = { true }
      while true do
        local ok, v = xpcall(gen, traced)
        if not ok then res = { false, v }; break end
        if v == nil then break end
        while s.credits <= 0 do
          local w, werr = s.ev:wait()
          if not w then res = { false, { err = werr } }; break end
        end
        if not res[1] then break end
        s.credits = s.credits - 1
        local sent, serr = send({ "chunk", id, v })
        if not sent then res = { false, { err = serr } }; break end
      end
      streams[id] = nil
      res.n = #res
    end
  end
  if task.cancelled() then
    send({ "error", id, errors.new("cancelled", "the call was cancelled") })
  elseif res[1] then
    local ok, err = send({ "result", id, results(table.unpack(res, 2, res.n)) })
    if not ok then
      send({ "error", id, errors.new("invalid_input", "the results cannot be sent: " ..
                                     tostring(err.message or err)) })
    end
  else
    local t = res[2]
    send({ "error", id, as_error(t.err), t.traceback })
  end
end

local function answer(msg)                -- a result or error for a call this side made
  local c = host_calls[msg[2]]
  if not c then return end
  host_calls[msg[2]] = nil
  c.msg = msg
  c.ev:notify()
end

local handlers = {
  call = function(msg)
    local id = msg[2]
    running[id] = task.spawn(function()
      run(id, msg[3], msg[4], msg[5])
      running[id] = nil
    end)
  end,
  cancel = function(msg)
    local t = running[msg[2]]
    if t then t:cancel() end
  end,
  grant = function(msg)
    local s = streams[msg[2]]
    if s and math.type(msg[3]) == "integer" then
      s.credits = s.credits + msg[3]
      s.ev:notify()
    end
  end,
  ping = function(msg) send({ "pong", msg[2] }) end,
  result = answer,
  error = answer,
}

---Calls a function the host exposed (opts.expose of sandlot.replicate) and returns its
---results, or nil, err (permission_denied when the host did not expose it).
function M.host(name, ...)
  if type(name) ~= "string" then error("host: name must be a string", 2) end
  next_host_call = next_host_call + 1
  local id = next_host_call
  local c = { ev = event.new() }
  host_calls[id] = c
  local ok, err = send({ "call", id, "host", name, results(...) })
  if not ok then
    host_calls[id] = nil
    return nil, err
  end
  local w, werr = c.ev:wait()
  if not w then
    host_calls[id] = nil
    return nil, werr
  end
  local msg = c.msg
  if msg[1] == "error" then return nil, msg[3] end
  local r = msg[3] or { n = 0 }
  return table.unpack(r, 1, r.n or #r)
end

-- print in the replica goes to the host as a log message; stdout stays the protocol's
local function install_print()
  _G.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    send({ "log", table.concat(parts, "\t") })
  end
end

---Writes raw bytes into the channel, past the framing: for the specs of the host's defences
---(code in a replica can always do this; the host must survive it).
function M._raw_write(bytes) return ch:write(bytes) end

---The server: says hello, then handles messages until the host closes the channel.
function M.main(nonce, manifest)
  local err
  ch, err = channel.stdio()
  if not ch then error(err, 0) end
  package.loaded.sandlot = require("sandlot._peer.sandlot")
  rawset(_G, "sandlot", package.loaded.sandlot)   -- a global, as in the host's scripts
  install_print()
  ch:write(frames.marker(nonce))
  send({ "hello", { protocol = frames.PROTOCOL, version = core.version, lua = _VERSION,
                    pid = sys.getpid(), modules = (function()
                      local n = 0
                      for _ in pairs(manifest) do n = n + 1 end
                      return n
                    end)() } })
  local d = frames.decoder()
  while true do
    local data, rerr = ch:read()
    if data == nil then
      if rerr then io.stderr:write("sandlot-peer: ", tostring(rerr), "\n") end
      break
    end
    d:feed(data)
    local stop = false
    while true do
      local msg, derr = d:next()
      if derr then
        io.stderr:write("sandlot-peer: ", tostring(derr), "\n")
        stop = true
        break
      end
      if msg == nil then break end
      if msg[1] == "shutdown" then stop = true; break end
      local h = handlers[msg[1]]
      if h then h(msg) end
    end
    if stop then break end
  end
  for _, t in pairs(running) do t:cancel() end
  ch:close()
end

return M
