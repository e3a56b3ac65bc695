-- sandlot.shell: the command lines sandlot sends to a remote POSIX shell (today: the SSH
-- client's exec and the ssh provider). Quoting, argv -> line, `export` lines, the process
-- group marker, the prelude a provider runs first, and the line that kills what timed out all
-- live here; core/ssh_exec.c only strips the marker from a stream and runs the kill line.
local check = require("sandlot._check")

local M = {}

---Quotes one word for a POSIX shell (a word that needs none is returned as it is).
---@param s string|number
---@return string
function M.quote(s)
  s = tostring(s)
  if s ~= "" and not s:find("[^%w%-_./=:@+,%%]") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

---Turns an argv list into a shell command line (a string is returned unchanged).
---@param cmd string|string[]
---@return string
function M.command(cmd)
  if type(cmd) == "string" then return cmd end
  check.argv(cmd, "shell.command")
  local words = {}
  for i = 1, #cmd do words[i] = M.quote(cmd[i]) end
  return table.concat(words, " ")
end

---`export NAME='value'; ` for each variable, sorted by name; a variable given as false is
---removed (`unset NAME; `). Raises on a name that is not a shell identifier.
---@param env table<string, string|number|false>|nil
---@param sep? string what ends each line ("; " by default)
---@return string
function M.exports(env, sep)
  sep = sep or "; "
  check.env(env, "shell.exports")
  local names = {}
  for k in pairs(env or {}) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for i, k in ipairs(names) do
    local v = env[k]
    out[i] = (v == false and ("unset " .. k) or ("export " .. k .. "=" .. M.quote(v))) .. sep
  end
  return table.concat(out)
end

---argv behind env(1) for what `env` changes: `ENV -u NAME ... --` for each variable given as
---false and, with opts.set, `NAME=value` for the others, each sorted by name. argv itself
---(the same table) when there is nothing to change.
---@param env table<string, string|number|false>|nil (checked by check.env)
---@param argv string[]
---@param opts? {set?: boolean, program?: string} program: env's path (default "env")
---@return string[]
function M.env_argv(env, argv, opts)
  check.env(env, "shell.env_argv")
  local set = opts and opts.set
  local unset, sets = {}, {}
  for k, v in pairs(env or {}) do
    if v == false then unset[#unset + 1] = k elseif set then sets[#sets + 1] = k end
  end
  if #unset == 0 and #sets == 0 then return argv end
  table.sort(unset)
  table.sort(sets)
  local out = { opts and opts.program or "env" }
  for _, k in ipairs(unset) do out[#out + 1] = "-u"; out[#out + 1] = k end
  out[#out + 1] = "--"
  for _, k in ipairs(sets) do out[#out + 1] = k .. "=" .. tostring(env[k]) end
  for i = 1, #argv do out[#out + 1] = argv[i] end
  return out
end

---`if [ ! -<test> path ]; then echo message >&2; exit 255; fi; `: a prelude step that stops
---before the command with exit 255 and message on stderr (a provider maps that back).
---@param test string a test(1) operator letter: "e", "f", "d"
---@param path string
---@param message string one line, without the newline
---@return string
function M.guard(test, path, message)
  assert(test:find("^%a$"), "guard: test must be one letter")
  return ("if [ ! -%s %s ]; then echo %s >&2; exit 255; fi; "):format(test, M.quote(path),
                                                                       M.quote(message))
end

---`. path; `: a prelude step that reads a file of exports into the shell.
---@param path string
---@return string
function M.source(path)
  return ". " .. M.quote(path) .. "; "
end

-- The marker, first on the line: the login shell prints "\036<its pid>\036" (the session
-- leader sshd made, also the process group to kill) before anything else. printf is a builtin
-- of every Bourne shell; core/ssh_exec.c strips it from the stream (opts.marker).
local MARKER = "printf '\\036%d\\036' $$ >&2; "

---The whole remote line for a command. The login shell prints its pid (the marker), runs the
---prelude, the exports, the cd; then a shell string runs under `exec /bin/sh -c`, and an argv
---list is exec'ed by the login shell itself, which saves the extra shell of a `sh -c` (about
---a third of a warm exec): single-quoted words mean the same to every Bourne shell, and
---`exec` runs the program even where the shell has a builtin of that name (echo, printf,
---pwd, kill, test), as the local and Docker providers do.
---@param cmd string|string[]
---@param opts? table prelude (shell text run first), env (see exports), cwd
---@return string
function M.line(cmd, opts)
  opts = opts or {}
  local prelude = (opts.prelude or "") .. M.exports(opts.env)
  if type(cmd) == "string" then
    local inner = cmd
    if opts.cwd then inner = "cd " .. M.quote(opts.cwd) .. " && " .. inner end
    return MARKER .. "exec /bin/sh -c " .. M.quote(prelude .. inner)
  end
  check.argv(cmd, "shell.line")
  local words = M.command(cmd)
  local first = M.quote(cmd[1])
  if first:sub(1, 1) ~= "'" then         -- never a reserved word, an assignment or =cmd (zsh)
    words = "'" .. first .. "'" .. words:sub(#first + 1)
  end
  local line = MARKER .. prelude
  if opts.cwd then line = line .. "cd " .. M.quote(opts.cwd) .. " || exit; " end
  return line .. "exec " .. words
end

---The stream the marker arrives on: stderr, or stdout when a pty merges the two.
---@param pty boolean|nil
---@return "stdout"|"stderr"
function M.marker_stream(pty)
  return pty and "stdout" or "stderr"
end

---What runs, with the marker's number appended, to send `signal` to a command's process
---group (or to the process alone where it leads no group). Raises on a signal that is neither
---a name ("TERM", "SIGTERM") nor an integer 1..64.
---@param signal string|integer
---@return string
function M.signal_line(signal)
  if type(signal) == "string" then
    signal = signal:gsub("^SIG", "")
    if not signal:find("^%u[%u%d]*$") then error("shell.signal_line: bad signal name", 2) end
  elseif math.type(signal) ~= "integer" or signal < 1 or signal > 64 then
    error("shell.signal_line: signal must be a name or an integer in 1..64", 2)
  end
  return ("k() { kill -%s -- \"-$1\" 2>/dev/null || kill -%s \"$1\" 2>/dev/null; :; }; k ")
    :format(signal, signal)
end

-- The kill line for what timed out, was cancelled or closed (core/ssh_exec.c runs it).
M.KILL_LINE = M.signal_line("KILL")

---The kill line for a known process group (what the core runs: KILL_LINE .. pgid).
---@param pgid integer
---@return string
function M.kill_line(pgid)
  return M.KILL_LINE .. math.tointeger(pgid)
end

return M
