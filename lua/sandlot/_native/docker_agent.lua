-- sandlot._native.docker_agent: the docker provider's opt-in exec agent (provider option
-- `exec_agent = true`). Every `docker exec` costs runc a new process in the container's
-- namespaces and cgroup (~60 ms whatever the client does); the agent is one long-lived
-- process in the container, the static sandlot-peer that sandlot.replicate ships and starts
-- over one exec attach stream, and each exec is a stream call on it: the agent forks the
-- command (sandlot.proc.spawn: a session of its own, so a timeout or a cancellation kills
-- the whole process group), streams its output back, and the host builds the result with
-- sandlot.exec's sink (max_output, on_stdout/on_stderr, truncated) as the plain path does.
--
-- What a command gets is what `docker exec` gives it: the agent is started by a docker exec
-- as the container's user with the container's environment (the command's env is the
-- agent's, merged with opts.env; false removes a variable), the sandbox's working directory
-- or opts.cwd, stdin from opts.stdin (else /dev/null). Children a command leaves in its group
-- outlive it, as under docker exec; a timeout kills the group (SIGKILL) and reports exit 137
-- and timed_out. A command killed by a signal reports it (signal = N, exit_code 128 + N), where
-- the plain path knows only Docker's exit code. The agent reaps its own children; what a
-- killed group's members leave goes to the container's init, as under docker exec.
-- Falls back to the plain docker exec path (no error): stdin given as a writer function,
-- stdin over STDIN_MAX bytes, an agent that cannot start (no sandlot-peer built for this host,
-- another architecture, a read-only /tmp: warned once per container; a start that timed out:
-- for RETRY_AFTER seconds). spawn, ttys and sandlot.background's processes always use plain
-- docker exec.
--
-- Liveness: an agent whose attach stream ended (killed, the container restarted or stopped)
-- is noticed by the channel, but only once the daemon closes the stream; so a command is
-- preceded by a ping (PING_IDLE = 0: every one; a frame's round trip, well under a
-- millisecond), and an agent that died before the exec began is restarted transparently
-- (the files are in the container already: one exec), never taken for one that died under
-- the command. A command in flight when the agent dies is an error (unavailable), never run
-- again: it may have run.
--
-- This file is also loaded inside the agent (sandlot.replicate ships sandlot's Lua tree):
-- M.run and M.ping are the agent's side; its top level requires nothing the replica lacks.
local errors = require("sandlot.errors")

local M = {}

M.STDIN_MAX = 4 * 1024 * 1024             -- bytes of opts.stdin sent in the call's frame
M.PING_IDLE = 0                            -- seconds idle after which a command is preceded
                                           -- by a ping (0: always; see Liveness)
M.START_TIMEOUT = 30                       -- seconds for the agent's start (ship, spawn, hello)
M.RETRY_AFTER = 30                         -- seconds of plain docker exec after a failed start
M.DEST = "/tmp/.sandlot-peer"              -- where the agent's files live in the container

local TARGET = "sandlot._native.docker_agent.run"

-- The agent's side -------------------------------------------------------------------------

---In the agent: a liveness probe.
function M.ping() return true end

---In the agent: starts argv and returns a generator of {1, stdout chunk}, {2, stderr chunk},
---then {0, exit_code, signal, timed_out}. o: {env, cwd, stdin, timeout}. Raises a sandlot
---error when the command cannot start (not_found: no such binary or cwd). kill_group is off so
---that children outlive a command that exits (as under docker exec); the core still kills the
---whole group on timeout and when the handle is released (a cancelled call).
function M.run(argv, o)
  local proc = require("sandlot.proc")
  local p, err = proc.spawn(argv, { env = o.env, cwd = o.cwd, stdin = o.stdin,
                                    timeout = o.timeout, stream = true, kill_group = false,
                                    max_output = 0 })
  if not p then
    if o.cwd and errors.is(err, "not_found") then
      local f = io.open(o.cwd, "r")
      if not f then
        error(errors.new("not_found", ("cwd %s does not exist in the sandbox"):format(o.cwd)), 0)
      end
      f:close()
    end
    error(err, 0)
  end
  local done = false
  return function()
    if done then return nil end
    local chunk, which = p:read()
    if chunk ~= nil then return { which == "stderr" and 2 or 1, chunk } end
    if which ~= nil then done = true; p:close(); error(which, 0) end   -- cancelled
    local r, werr = p:wait()
    done = true
    p:close()
    if not r then error(werr, 0) end
    return { 0, r.exit_code, r.signal, r.timed_out == true }
  end
end

-- The host's side --------------------------------------------------------------------------

local agents = {}                          -- container id -> {peer, last, starting, broken}
M._agents = agents                         -- for the specs
M._started = 0                             -- agents started by this process (the specs)

-- A sandbox-like object for sandlot.replicate: its exec, spawn and write_files are the
-- provider's plain ones (never the agent), on this ctx and handle.
local function shim(P, h, ctx, handle)
  return {
    id = handle.id, provider = "docker",
    caps = function() return {} end,
    exec = function(_, argv, o) return h.exec(ctx, handle, argv, o or {}) end,
    spawn = function(_, argv, o) return P.spawn(ctx, handle, argv, o or {}) end,
    write_files = function(_, files)
      local list = {}
      for i, f in ipairs(files) do list[i] = { path = f.path, data = f.data, mode = f.mode } end
      return P.write_files(ctx, handle, list)
    end,
  }
end

-- Starts the agent in a daemon task (its channel's reader and heartbeat must not keep a
-- finished script alive), bounded by START_TIMEOUT: peer | nil, err.
local function start(P, h, ctx, handle, a)
  local task = require("sandlot.task")
  local replicate = require("sandlot.replicate")
  a.sb = a.sb or shim(P, h, ctx, handle)  -- keeps replicate's memo: a restart is one exec
  local t = task.daemon(function()
    return replicate.replicate(a.sb, { script_dir = false, name = "docker-agent",
                                       dest = M.DEST, timeout = M.START_TIMEOUT,
                                       on_log = function() end })
  end)
  local peer, err = t:join()
  if not peer and task.cancelled() then t:cancel() end   -- the caller gave up: so does it
  return peer, err
end

-- Fails with `not_supported`-like errors for good (this sandbox's agent cannot run here); a
-- timeout or an unreachable daemon is tried again on the next exec.
local function for_good(err)
  return errors.is(err, "not_supported") or errors.is(err, "not_found")
      or errors.is(err, "permission_denied") or errors.is(err, "invalid_input")
end

-- Pings an agent: true when it answered; false, err when it did not within 5 s but its channel
-- is up (busy, or the container paused: this exec takes the plain path, the agent and the
-- commands it runs are left alone); false when it is dead (restarted by the caller).
local function answers(a)
  local task = require("sandlot.task")
  local timer = require("sandlot.core.timer")
  local ok, r, err = pcall(task.timeout, 5, a.peer.call, a.peer,
                           "sandlot._native.docker_agent.ping")
  if ok and r == true then
    a.last = timer.now() / 1e9
    return true
  end
  if a.peer:alive() then
    return false, errors.is(err) and err or errors.new("timeout", "the exec agent is slow")
  end
  return false
end

-- The container's live agent, started (or restarted) when there is none: a | nil, err. A
-- start that failed for good (for_good) is remembered: plain docker exec from then on, warned
-- once; one that failed otherwise (a timeout, the daemon busy) is tried again RETRY_AFTER
-- seconds later, plain docker exec meanwhile. Execs arriving during a start wait for it and
-- share its outcome: one start at a time, never one per waiting exec.
local function agent(P, h, ctx, handle)
  local event = require("sandlot.core.event")
  local timer = require("sandlot.core.timer")
  local key = handle.container
  local function now() return timer.now() / 1e9 end
  while true do
    local a = agents[key]
    if a and a.broken then return nil, a.broken end
    if a and a.starting then               -- another exec is starting it: wait for that
      local ev = event.new()
      a.starting[#a.starting + 1] = ev
      local ok, werr = ev:wait()
      if not ok then return nil, werr end
      if not (a.peer and a.peer:alive()) then
        return nil, a.broken or a.failed or errors.new("unavailable", "the exec agent ended")
      end
    elseif a and a.peer and a.peer:alive() then
      if now() - a.last <= M.PING_IDLE then return a end
      local yes, slow = answers(a)
      if yes then return a end
      if slow then return nil, slow end   -- else dead: the next round starts a new one
    elseif a and a.failed and now() < a.retry_at then
      return nil, a.failed
    else
      a = a or {}
      agents[key] = a
      if a.peer then pcall(a.peer._abort, a.peer, "the exec agent is being restarted") end
      a.peer, a.failed, a.starting = nil, nil, {}
      local peer, err = start(P, h, ctx, handle, a)
      if peer then
        a.peer, a.last, a.starts = peer, now(), (a.starts or 0) + 1
        M._started = M._started + 1
      elseif for_good(err) then
        a.broken = err
        ctx.warn(("docker: the exec agent cannot run in container %s (%s); exec uses " ..
                  "docker exec"):format(key:sub(1, 12), err.message))
      elseif not errors.is(err, "cancelled") then
        a.failed, a.retry_at = err, now() + M.RETRY_AFTER
      end
      local waiting = a.starting
      a.starting = nil
      for _, ev in ipairs(waiting) do ev:notify() end
      if not peer then return nil, err end
      return a
    end
  end
end

---Drops the container's agent (destroy, stop): its pending calls fail with unavailable.
function M.drop(handle)
  local key = type(handle) == "table" and handle.container
  local a = key and agents[key]
  if not a then return end
  agents[key] = nil
  if a.peer then pcall(a.peer._abort, a.peer, "the sandbox was stopped or destroyed") end
end

-- Runs one command on agent a: the exec result, or nil, err.
local function run_on(a, argv, o, opts)
  local exec = require("sandlot.exec")
  local task = require("sandlot.task")
  local timer = require("sandlot.core.timer")
  local out <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                on_stderr = opts.on_stderr }
  local final
  local function pump()
    for v in a.peer:stream(TARGET, argv, o) do
      local k = v[1]
      if k == 1 then out:add("stdout", v[2])
      elseif k == 2 then out:add("stderr", v[2])
      else final = v end
    end
    return true
  end
  local ok, res, err
  if opts.timeout then               -- the agent's own timeout fires first; this bounds a stall
    ok, res, err = pcall(task.timeout, opts.timeout + 10, pump)
  else
    ok, res, err = pcall(pump)
  end
  a.last = timer.now() / 1e9
  if not ok then
    if not errors.is(res) then error(res, 0) end            -- a callback raised: not ours
    res, err = nil, res
  end
  if not res then
    if errors.is(err, "timeout") and opts.timeout then     -- the agent stalled past it
      out:timed_out()
      return out:result()
    end
    if not a.peer:alive() then
      return nil, errors.new("unavailable", ("docker: the exec agent ended while the command " ..
        "ran; it is not run again (it may have run): %s"):format(err.message),
        { cause = err, retryable = false })
    end
    return nil, err
  end
  if not final then
    return nil, errors.new("bad_response", "docker: the exec agent sent no exit status")
  end
  if final[4] then out:timed_out()
  else out:exit(final[2], final[3]) end
  return out:result()
end

---The exec through the agent: result | nil, err, or nil, nil, "fallback" when this exec takes
---the plain docker exec path instead (see the top of this file).
---h: {exec = the plain exec(ctx, handle, argv, opts), resolve = fn(handle, path)}.
function M.exec(P, h, ctx, handle, argv, opts)
  local stdin = opts.stdin
  if type(stdin) == "function" or (type(stdin) == "string" and #stdin > M.STDIN_MAX) then
    return nil, nil, "fallback"
  end
  local cwd, cerr = h.resolve(handle, opts.cwd or ".")
  if not cwd then return nil, cerr end
  local a, err = agent(P, h, ctx, handle)
  if not a then
    if errors.is(err, "cancelled") then return nil, err end
    return nil, nil, "fallback"
  end
  return run_on(a, argv, { env = opts.env, cwd = cwd, stdin = stdin, timeout = opts.timeout },
                opts)
end

return M
