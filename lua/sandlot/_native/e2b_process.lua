-- sandlot._native.e2b_process: E2B's exec and spawn over envd's process stream
-- (providers/e2b.lua installs them), kept apart to keep the provider file within its size.
-- A command starts with the server-streaming Connect RPC process.Process/Start (JSON
-- envelopes, sandlot.wire.connect): argv as cmd and args (no shell; env = {X = false} runs
-- under `env -u X`), then start, data (base64 stdout/stderr/pty) and end events. exec feeds
-- stdin from a task (SendInput in 256 KiB chunks, CloseStdin) and maps the end event to an
-- exit code or the signal its status names; envd's deadline is the exec's timeout.
-- spawn: the process stream read by a task of its own into a bounded queue (sandlot.queue:
-- when nobody reads, reading stops); stdin through SendInput/CloseStdin, kill through
-- SendSignal (TERM and KILL: all envd sends).
-- Reference: ../shared/provider-apis/e2b.md.
local errors = require("sandlot.errors")
local json = require("sandlot.wire.json")
local connect = require("sandlot.wire.connect")
local base64 = require("sandlot.wire.base64")
local exec = require("sandlot.exec")
local shell = require("sandlot.shell")
local task = require("sandlot.task")
local queue = require("sandlot.queue")

local M = {}

local CHUNK = 256 * 1024                       -- stdin bytes per SendInput
local QUEUE_MAX = 4 * 1024 * 1024              -- spawn output queued before reading stops
local STREAM_SLACK = 3                         -- s past an exec's timeout (envd's deadline)

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

-- Go's names for the signals a process dies of ("signal: killed").
local SIGNALS = { killed = "KILL", terminated = "TERM", interrupt = "INT", hangup = "HUP",
                  quit = "QUIT", aborted = "ABRT", ["broken pipe"] = "PIPE",
                  ["segmentation fault"] = "SEGV", ["alarm clock"] = "ALRM",
                  ["user defined signal 1"] = "USR1", ["user defined signal 2"] = "USR2" }

-- An end event into the sink: an exit code, or the signal its status names.
local function finish(sink, e)
  local sig = type(e.status) == "string" and e.status:match("^signal: (.+)$")
  if sig and not e.exited then
    sink:exit(nil, SIGNALS[sig] or exec.signal_name(tonumber(sig) or 0) or "KILL")
  else
    sink:exit(math.tointeger(e.exitCode) or 0)
  end
end

-- A start failure (end-of-stream invalid_argument): a missing cwd or program is not_found.
local function start_error(err)
  local m = err.message or ""
  if err.code == "invalid_input" and (m:find("does not exist", 1, true)
     or m:find("not found", 1, true) or m:find("no such file", 1, true)) then
    return errors.new("not_found", m, { via = err.via })
  end
  return err
end

-- A server-streaming RPC (Start, Connect): one enveloped request, each event of the answer to
-- on_event(ev); `timeout` is envd's deadline (for Start: the process's lifetime).
local function stream(c, method, msg, timeout, on_event)
  local headers = { ["Content-Type"] = "application/connect+json",
                    ["Connect-Protocol-Version"] = "1", ["Keepalive-Ping-Interval"] = "50" }
  if timeout then headers["Connect-Timeout-Ms"] = tostring(math.ceil(timeout * 1e3)) end
  return c:stream("POST", "/process.Process/" .. method, {
    body = connect.encode(msg), headers = headers, retry = false, decode = false,
    timeout = timeout and timeout + STREAM_SLACK or false,
    on_frame = connect.decoder(function(m)
      local ev = type(m) == "table" and m.event
      if type(ev) ~= "table" then return fail("bad_response", "envd: a message without event") end
      return on_event(ev)
    end) })
end

local function start(c, proc, stdin, timeout, on_event)
  return stream(c, "Start", { process = proc, stdin = stdin }, timeout, on_event)
end

local function data_of(d)
  for _, s in ipairs({ "stdout", "stderr", "pty" }) do
    if type(d[s]) == "string" then
      local bytes, err = base64.decode(d[s])
      if not bytes then return nil, err end
      return s == "stderr" and "stderr" or "stdout", bytes
    end
  end
  return "stdout", ""
end

---Adds exec and spawn to the provider table P, given the file's own helpers h: {envd =
---fn(ctx, handle) -> envd client, rpc = fn(c, method, body) (a unary Connect RPC), resolve =
---fn(handle, path) -> absolute path}.
function M.install(P, h)
  local envd, rpc, resolve = h.envd, h.rpc, h.resolve

  -- The Start request's process: argv as cmd and args (no shell), env false as `env -u`.
  local function process_of(handle, argv, opts)
    local cwd, cerr = resolve(handle, opts.cwd or ".")
    if not cwd then return nil, cerr end
    local envs = {}
    for k, v in pairs(opts.env or {}) do
      if v ~= false then envs[k] = tostring(v) end
    end
    local full = shell.env_argv(opts.env, argv, { program = "/usr/bin/env" })   -- unsets only
    return { cmd = full[1], args = json.array({ table.unpack(full, 2) }),
             envs = next(envs) and envs or nil, cwd = cwd }
  end


  local function signal(c, pid, name)
    return rpc(c, "process.Process/SendSignal", { process = { pid = pid },
                                                  signal = "SIGNAL_SIG" .. name })
  end

  local function queue_kill(c, pid)
    task.cleanup(function() task.timeout(30, signal, c, pid, "KILL") end)
  end

  local function send_input(c, pid, s)
    for i = 1, #s, CHUNK do
      local ok, err = rpc(c, "process.Process/SendInput", {
        process = { pid = pid }, input = { stdin = base64.encode(s:sub(i, i + CHUNK - 1)) } })
      if not ok then return nil, err end
    end
    return true
  end

  -- Writes stdin (a string or a producer of chunks) with SendInput, then CloseStdin.
  local function feed(c, pid, stdin)
    if type(stdin) == "string" then
      if not send_input(c, pid, stdin) then return end
    else
      for chunk in stdin do
        if not send_input(c, pid, chunk) then return end
      end
    end
    rpc(c, "process.Process/CloseStdin", { process = { pid = pid } })
  end


  ---Runs argv through envd's process stream.
  function P.exec(ctx, handle, argv, opts)
    local c, cerr = envd(ctx, handle)
    if not c then return nil, cerr end
    local proc, perr = process_of(handle, argv, opts)
    if not proc then return nil, perr end
    local out <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                  on_stderr = opts.on_stderr }
    local pid, ended, writer
    local _guard <close> = setmetatable({}, { __close = function()
      if writer and not writer:done() then writer:cancel() end
      if pid and not ended then queue_kill(c, pid) end       -- cancelled: kill it from a task
    end })
    local ok, err = start(c, proc, opts.stdin ~= nil, opts.timeout, function(ev)
      if type(ev.start) == "table" then
        pid = math.tointeger(ev.start.pid)
        if opts.stdin ~= nil and pid then writer = task.spawn(feed, c, pid, opts.stdin) end
      elseif type(ev.data) == "table" then
        local which, bytes = data_of(ev.data)
        if not which then return nil, bytes end
        if #bytes > 0 then out:add(which, bytes) end
      elseif type(ev["end"]) == "table" then
        ended = ev["end"]
      end
    end)
    if not ok then
      if err.code ~= "timeout" or not opts.timeout then return nil, start_error(err) end
      out:timed_out()                       -- the result: killed by SIGKILL (137), timed_out
      if pid and not ended then signal(c, pid, "KILL") end
      ended = ended or true
      return out:result()
    end
    if not ended then
      return fail("bad_response", "envd: the process stream ended without an end")
    end
    finish(out, ended)
    return out:result()
  end

  local Process = {}
  Process.__index = Process

  function Process:read()
    local f, err = self.q:get()
    if f then return f[1], f[2] end
    return nil, err
  end

  -- The pid from the start event (spawn waits for it, so it is there unless the stream failed).
  local function pid_of(p)
    if p.pid then return p.pid end
    return nil, p.q.err or errors.new("io_error", "the process did not start")
  end

  function Process:write(data)
    if self.stdin_closed then return fail("invalid_input", "the process's stdin is closed") end
    local pid, err = pid_of(self)
    if not pid then return nil, err end
    return send_input(self.c, pid, data)
  end

  function Process:close_stdin()
    if self.stdin_closed then return true end
    local pid, err = pid_of(self)
    if not pid then return nil, err end
    self.stdin_closed = true
    if self.ended then return true end
    local ok, cerr = rpc(self.c, "process.Process/CloseStdin", { process = { pid = pid } })
    if not ok and cerr.code ~= "not_found" then return nil, cerr end
    return true
  end

  function Process:wait()
    if self.result then return self.result end
    while not self.ended and not self.q.closed do
      local ok, err
      if self.q:full() then       -- output nobody reads: the end from a second stream (Connect)
        ok, err = stream(self.c, "Connect", { process = { pid = self.pid } }, nil, function(ev)
          if type(ev["end"]) == "table" then self.ended = ev["end"] end
        end)
      else
        ok, err = self.q:wait_for(function() return self.ended or self.q:full() end)
        if not ok and self.q.closed and not err then ok = true end
      end
      if not ok then return nil, err end
    end
    if not self.ended then
      return nil, self.q.err or errors.new("bad_response", "envd: the stream ended without an end")
    end
    finish(self.sink, self.ended)
    self.result = self.sink:result()
    return self.result
  end

  function Process:kill(sig)
    if self.ended or self.q.closed then return fail("not_found", "the process has exited") end
    local n = math.type(sig) == "integer" and sig or exec.signal_number(tostring(sig or "TERM"))
    local name = n and exec.signal_name(n)
    if name ~= "TERM" and name ~= "KILL" then
      return fail("not_supported", "envd sends only TERM and KILL, not %s", tostring(sig))
    end
    local ok, err = signal(self.c, self.pid, name)
    if not ok and err.code == "not_found" then
      return fail("not_found", "the process has exited")
    end
    if not ok then return nil, err end
    return true
  end

  -- Never yields: the kill of what still runs is a cleanup task of its own.
  function Process:close()
    if self.closed then return true end
    self.closed = true
    if self.pid and not self.ended then queue_kill(self.c, self.pid) end
    if not self.reader:done() then self.reader:cancel() end
    self.q:close(errors.new("invalid_input", "the process is closed"))
    self.sink:close()
    return true
  end

  ---Starts argv with stdin, stdout and stderr open (see the top of this file).
  function P.spawn(ctx, handle, argv, opts)
    local c, cerr = envd(ctx, handle)
    if not c then return nil, cerr end
    local proc, perr = process_of(handle, argv, opts)
    if not proc then return nil, perr end
    local p = setmetatable({ c = c, q = queue.new{ max_bytes = QUEUE_MAX },
                             sink = exec.sink{ max_output = 0 } }, Process)
    p.reader = task.spawn(function()
      local ok, err = start(c, proc, true, nil, function(ev)
        if type(ev.start) == "table" then
          p.pid = math.tointeger(ev.start.pid)
          p.q:wake()
        elseif type(ev.data) == "table" then
          local s, bytes = data_of(ev.data)
          if not s then return nil, bytes end
          if #bytes > 0 then p.q:put({ s, bytes }, #bytes) end     -- waits while it is full
        elseif type(ev["end"]) == "table" then
          p.ended = ev["end"]
          p.q:wake()
        end
      end)
      p.q:close(not ok and start_error(err) or nil)
    end)
    local ok, err = p.q:wait_for(function() return p.pid ~= nil end)   -- a start failure
    if not ok then                                                     -- is spawn's own error
      p:close()
      return nil, err or errors.new("bad_response", "envd: the stream gave no pid")
    end
    return p
  end
end

return M
