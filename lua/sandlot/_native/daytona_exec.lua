-- sandlot._native.daytona_exec: Daytona's exec and spawn (providers/daytona.lua installs them),
-- kept apart to keep the provider file within its size. Both run through the toolbox's
-- POST /process/execute with small sh scripts, because the daemon's one-shot exec combines
-- stdout and stderr and its session logs are text that gains a newline per line.
-- exec: the command's stdout and stderr go to files in the sandbox and come back
-- base64-encoded after the exit status, in one round trip, so they stay apart and byte-exact
-- (head and tail only past twice max_output). A timeout is the daemon's (whole seconds,
-- rounded up; it kills the process group); a cancelled exec kills it from a cleanup.
-- spawn: a Daytona session runs a wrapper (runAsync) that starts the command in a session of
-- its own (setsid, when the image has it) with stdin from a fifo, stdout and stderr to files.
-- A feeder loop cats stdin chunks in.N into the fifo once ok.N exists (eof.N ends it); a
-- watcher sends the signal written to k; the exit status lands in rc. read polls the files
-- from its offsets (POST /process/execute, base64), so output is byte-exact and nothing is
-- lost when a read is cancelled. Contract: providers/README.md, "spawn".
-- Reference: ../shared/provider-apis/daytona.md.
local api = require("sandlot.api")
local errors = require("sandlot.errors")
local b64 = require("sandlot.wire.base64")
local exec = require("sandlot.exec")
local id = require("sandlot.id")
local shell = require("sandlot.shell")
local task = require("sandlot.task")

local M = {}

local TMP = "/tmp/.sandlot-"              -- .. kind .. hex: an exec's or a process's files
local POLL_MAX = 1024 * 1024             -- bytes per stream and poll

local function fail(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function section(text, from, to)
  local a = text:find(from, 1, true)
  local b = a and text:find(to, a + #from, true)
  if not b then return nil end
  return text:sub(a + #from, b - 1)
end

local function unb64(s)
  if not s or not s:find("%S") then return "" end
  return b64.decode(s)
end

-- The command with its output to files, then its exit status and both files base64-encoded
-- (head and tail only past twice the cap).
local function exec_script(dir, cwd, env, argv, stdin, cap)
  local q = shell.quote
  local out = { "d=" .. q(dir), 'mkdir -p "$d" && echo $$ >"$d/pid" || exit 1',
    cwd and "cd -- " .. q(cwd) .. ' 2>/dev/null || { echo sandlot:nocwd; rm -rf "$d"; exit 0; }'
      or ":",                          -- no cwd: the daemon's own, its working directory
    shell.exports(env, "\n"),
    "( exec " .. shell.command(argv) .. " ) <" .. (stdin and '"$d/i"' or "/dev/null") ..
      ' >"$d/o" 2>"$d/e"',
    'echo "sandlot:rc $?"' }
  for _, f in ipairs({ "o", "e" }) do
    out[#out + 1] = ('s=$(($(wc -c <"$d/%s"))); echo "sandlot:%s $s"; if [ "$s" -le %d ]; ' ..
                     'then base64 <"$d/%s"; else head -c %d "$d/%s" | base64; ' ..
                     'echo sandlot:gap; tail -c %d "$d/%s" | base64; fi')
                    :format(f, f, 2 * cap, f, cap, f, cap, f)
  end
  out[#out + 1] = 'rm -rf "$d"; echo sandlot:end'
  return table.concat(out, "\n")
end

local function stream_of(text, name, next_marker)
  local body = text:match("sandlot:" .. name .. " %d+\n(.-)" .. next_marker)
  if body == nil then return nil end
  local head, tail = body:match("^(.-)sandlot:gap\n(.*)$")
  local a, aerr = unb64(head or body)
  if not a then return nil, aerr end
  if not head then return { a } end
  local b, berr = unb64(tail)
  if not b then return nil, berr end
  return { a, b }
end

local function collect_stdin(stdin)
  if type(stdin) == "string" then return stdin end
  local parts = {}
  while true do
    local chunk = stdin()
    if chunk == nil then break end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts)
end


local function spawn_script(dir, cwd, env, argv)
  local q = shell.quote
  return table.concat({
    "d=" .. q(dir),
    'mkdir -p "$d" && : >"$d/o" && : >"$d/e" && mkfifo "$d/i" || exit 126',
    "cd -- " .. q(cwd) .. ' 2>/dev/null || { echo "sandlot: no such directory: "' .. q(cwd) ..
      ' >"$d/e"; echo 127 >"$d/rc"; exit 127; }',
    shell.exports(env, "\n"),
    '( n=1; while :; do if [ -f "$d/ok.$n" ]; then cat "$d/in.$n"; rm -f "$d/in.$n" ' ..
      '"$d/ok.$n"; n=$((n+1)); elif [ -f "$d/eof.$n" ]; then exit 0; else sleep 0.05; fi; ' ..
      'done ) >"$d/i" &',
    "f=$!; s=; command -v setsid >/dev/null 2>&1 && s=setsid",
    "( exec $s " .. shell.command(argv) .. ' ) <"$d/i" >"$d/o" 2>"$d/e" &',
    'p=$!; ( while [ ! -f "$d/rc" ]; do if [ -s "$d/k" ]; then g=$(cat "$d/k"); rm -f "$d/k"; ' ..
      'kill -"$g" -"$p" 2>/dev/null || kill -"$g" "$p" 2>/dev/null; fi; sleep 0.05; done ) &',
    'wait "$p"; r=$?; kill "$f" 2>/dev/null; echo "$r" >"$d/r.t"; mv "$d/r.t" "$d/rc"',
  }, "\n")
end

---Adds exec and spawn to the provider table P, given the file's own helpers h: {tcall =
---fn(ctx, handle, c, method, path, opts), toolbox = fn(ctx, handle) -> client, {base, workdir?},
---resolve = fn(c, t, path) -> absolute path, upload = fn(ctx, handle, c, {{path, data}})}.
function M.install(P, h)
  local tcall, toolbox, resolve, upload = h.tcall, h.toolbox, h.resolve, h.upload

  -- POST /process/execute: the daemon pipes `script` into a shell of its own process group.
  local function execute(ctx, handle, c, script, timeout)
    local body = { command = script }
    if timeout then body.timeout = math.max(1, math.ceil(timeout)) end
    local v, err = tcall(ctx, handle, c, "POST", "/process/execute", {
      json = body, want = { 200 }, timeout = timeout and (math.ceil(timeout) + 30) or false })
    if not v then return nil, err end
    if type(v) ~= "table" or type(v.result) ~= "string" then
      return fail("bad_response", "POST /process/execute: no result in the answer")
    end
    return v.result, v.exitCode or v.code
  end

  function P.exec(ctx, handle, argv, opts)
    local c, t = toolbox(ctx, handle)
    if not c then return nil, t end
    local cwd, cerr
    if opts.cwd then
      cwd, cerr = resolve(c, t, opts.cwd)
      if not cwd then return nil, cerr end
    end
    local out <close> = exec.sink{ max_output = opts.max_output, on_stdout = opts.on_stdout,
                                  on_stderr = opts.on_stderr }
    local cap = opts.max_output or exec.DEFAULT_MAX_OUTPUT
    local dir = TMP .. "x-" .. id.hex(8)
    if opts.stdin ~= nil then
      local ok, uerr = upload(ctx, handle, c, { { path = dir .. "/i",
                                                  data = collect_stdin(opts.stdin) } })
      if not ok then return nil, uerr end
    end
    local finished = false
    local _guard <close> = setmetatable({}, { __close = function()    -- cancelled: kill it
      if finished then return end
      task.cleanup(function()
        execute(ctx, handle, c, ('d=%s; kill -9 -"$(cat "$d/pid")" 2>/dev/null; rm -rf "$d"')
                                :format(shell.quote(dir)))
      end)
    end })
    local text, err = execute(ctx, handle, c,
                              exec_script(dir, cwd, opts.env, argv, opts.stdin ~= nil, cap),
                              opts.timeout)
    finished = true
    if not text then
      if err.code ~= "timeout" or not opts.timeout or err.status ~= 408 then return nil, err end
      task.cleanup(function() execute(ctx, handle, c, "rm -rf " .. shell.quote(dir)) end)
      out:timed_out()
      return out:result()
    end
    if text:find("sandlot:nocwd", 1, true) then
      return fail("not_found", "no such directory in the sandbox: %s", cwd)
    end
    local rc = tonumber(text:match("sandlot:rc (%d+)\n") or "")
    local o, oerr = stream_of(text, "o", "sandlot:e ")
    local e, eerr = stream_of(text, "e", "sandlot:end")
    if not rc or not o or not e then
      local why = oerr or eerr
      return fail("bad_response", "exec: the sandbox's answer is not what sandlot sent for " ..
                  "(needs sh, base64, wc, head and tail): %s", why and why.message or
                  c:scrub(text:sub(1, 200)))
    end
    for _, piece in ipairs(o) do out:add("stdout", piece) end
    for _, piece in ipairs(e) do out:add("stderr", piece) end
    out:exit(rc)
    return out:result()
  end

  local Process = {}
  Process.__index = Process

  -- One poll: the exit status (or nil) and what each stream gained since the last one.
  local function poll_once(p)
    local script = ('d=%s; r=$(cat "$d/rc" 2>/dev/null); echo "sandlot:rc ${r:--}"; ' ..
      'echo sandlot:o; tail -c +%d "$d/o" 2>/dev/null | head -c %d | base64; ' ..
      'echo sandlot:e; tail -c +%d "$d/e" 2>/dev/null | head -c %d | base64; echo sandlot:end')
      :format(shell.quote(p.dir), p.off.stdout + 1, POLL_MAX, p.off.stderr + 1, POLL_MAX)
    local text, err = execute(p.ctx, p.handle, p.c, script)
    if not text then return nil, err end
    local rc = text:match("sandlot:rc (%-?%d*)")
    local o = unb64(section(text, "sandlot:o\n", "sandlot:e\n"))
    local e = unb64(section(text, "sandlot:e\n", "sandlot:end"))
    if rc == nil or o == nil or e == nil then
      return fail("bad_response", "spawn: the sandbox's answer is not what sandlot sent for")
    end
    return tonumber(rc) or false, o, e
  end

  function Process:read()
    local wait = 0.02
    while true do
      local f = self.q[1]
      if f then
        table.remove(self.q, 1)
        return f[1], f[2]
      end
      if self.eof then return nil end
      local rc, o, e = poll_once(self)
      if rc == nil then return nil, o end
      if #o > 0 then
        self.off.stdout = self.off.stdout + #o
        self.q[#self.q + 1] = { "stdout", o }
      end
      if #e > 0 then
        self.off.stderr = self.off.stderr + #e
        self.q[#self.q + 1] = { "stderr", e }
      end
      if rc and #o == 0 and #e == 0 then
        self.eof, self.rc = true, rc
      elseif #o == 0 and #e == 0 then
        local ok, serr = task.sleep(wait)
        if not ok then return nil, serr end
        wait = math.min(wait * 2, 0.5)
      end
    end
  end

  function Process:write(data)
    if self.stdin_closed then return fail("invalid_input", "the process's stdin is closed") end
    if data == "" then return true end
    self.n = self.n + 1
    return upload(self.ctx, self.handle, self.c, {
      { path = ("%s/in.%d"):format(self.dir, self.n), data = data },
      { path = ("%s/ok.%d"):format(self.dir, self.n), data = "" } })
  end

  function Process:close_stdin()
    if self.stdin_closed then return true end
    self.stdin_closed = true
    return upload(self.ctx, self.handle, self.c,
                  { { path = ("%s/eof.%d"):format(self.dir, self.n + 1), data = "" } })
  end

  local function exit_status(p)
    local text, err = execute(p.ctx, p.handle, p.c, ("cat %s/rc 2>/dev/null; echo sandlot:end")
                                                    :format(shell.quote(p.dir)))
    if not text then return nil, err end
    return tonumber(text:match("^(%d+)\n")) or false
  end

  function Process:wait()
    if self.result then return self.result end
    local rc, err = self.rc
    if rc == nil then
      rc, err = api.poll(function() return exit_status(self) end,
                         { timeout = 1e9, interval = 0.05, max_interval = 0.5 })
      if not rc then return nil, err end
    end
    self.done = true
    local sig = self.sent
    if not (sig and rc == 128 + sig) then sig = nil end
    local sink <close> = exec.sink{ max_output = 0 }
    sink:exit(rc, sig)
    self.result = sink:result()
    return self.result
  end

  local function signal(p, n)
    return upload(p.ctx, p.handle, p.c, { { path = p.dir .. "/k", data = tostring(n) } })
  end

  function Process:kill(sig)
    local rc, err = self.done, nil
    if not rc then rc, err = exit_status(self) end     -- (`a or f()` would drop f's err)
    if rc == nil then return nil, err end
    if rc then return fail("not_found", "the process has exited") end
    local n = math.type(sig) == "integer" and sig or exec.signal_number(tostring(sig or "TERM"))
    if not n then return fail("invalid_input", "unknown signal %s", tostring(sig)) end
    self.sent = n
    return signal(self, n)
  end

  -- Never yields: the kill, the session's deletion and the files' removal run as a cleanup.
  function Process:close()
    if self.closed then return true end
    self.closed = true
    local p = self
    task.cleanup(function()
      if not p.done then signal(p, 9) end
      tcall(p.ctx, p.handle, p.c, "DELETE", "/process/session/" .. p.sid, { want = { 200, 204 } })
      if p.done then execute(p.ctx, p.handle, p.c, "rm -rf " .. shell.quote(p.dir)) end
    end)
    return true
  end


  function P.spawn(ctx, handle, argv, opts)
    local c, t = toolbox(ctx, handle)
    if not c then return nil, t end
    local cwd, cerr = resolve(c, t, opts.cwd or ".")
    if not cwd then return nil, cerr end
    local sid = "sandlot-" .. id.hex(8)
    local ok, err = tcall(ctx, handle, c, "POST", "/process/session", {
      json = { sessionId = sid }, want = { 200, 201 } })
    if ok == nil then return nil, err end
    local p = setmetatable({ ctx = ctx, handle = handle, c = c, sid = sid, n = 0, q = {},
                             dir = TMP .. "p-" .. id.hex(8),
                             off = { stdout = 0, stderr = 0 } }, Process)
    local started, serr = tcall(ctx, handle, c, "POST", "/process/session/" .. sid .. "/exec", {
      json = { command = "sh -c " .. shell.quote(spawn_script(p.dir, cwd, opts.env, argv)),
               runAsync = true }, want = { 200, 202 } })
    if started == nil then
      tcall(ctx, handle, c, "DELETE", "/process/session/" .. sid, { want = { 200, 204 } })
      return nil, serr
    end
    return p
  end
end

return M
