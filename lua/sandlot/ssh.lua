-- sandlot.ssh: the SSH client for scripts and providers. Connect options and their defaults,
-- host key policy (known_hosts strict by default, accept-new, SHA256 pinning), the order in
-- which credentials are tried, reconnection and error wording live here; the transport
-- (libssh2 on the loop, channels, SFTP streaming) is core/ssh*.c; the remote command line
-- is sandlot.shell.
local core = require("sandlot.core.ssh")
local errors = require("sandlot.errors")
local telemetry = require("sandlot.telemetry")
local shell = require("sandlot.shell")
local check = require("sandlot._check")
local exec_kit = require("sandlot.exec")
local task = require("sandlot.task")

local M = {}

M.libssh2 = core.libssh2

M.DEFAULTS = {
  port = 22,
  timeout = 10,              -- connect + handshake, then authentication, each
  keepalive = 15,            -- seconds between keepalives while calls are in flight
  keepalive_max = 3,         -- unanswered intervals before the connection counts as lost
  max_channels = 10,         -- concurrent channels; OpenSSH's MaxSessions defaults to 10
  host_key = "strict",       -- "strict" | "accept-new"
  max_output = exec_kit.DEFAULT_MAX_OUTPUT,   -- bytes kept per stream of an exec
  reconnect = true,
}

-- The terminal an exec with pty = true gets.
M.PTY = { term = "xterm", cols = 80, rows = 24 }

local function positive(v)
  return type(v) == "number" and v > 0 and v ~= math.huge, "a number of seconds > 0"
end

local function at_least(min)
  return function(v)
    return math.type(v) == "integer" and v >= min, "an integer >= " .. min
  end
end

local CONNECT_OPTS = {
  host = "string", port = function(v)
    return math.type(v) == "integer" and v >= 1 and v <= 65535, "an integer in 1..65535"
  end,
  user = "string", password = "string", key = "string", passphrase = "string",
  key_file = function(v)
    if v == false or type(v) == "string" then return true end
    if type(v) ~= "table" then return false, "a path, a list of paths or false" end
    for _, f in ipairs(v) do
      if type(f) ~= "string" then return false, "a path, a list of paths or false" end
    end
    return true
  end,
  agent = function(v)
    return type(v) == "boolean" or type(v) == "string", "true, false or the agent socket's path"
  end,
  known_hosts = "string",
  host_key = function(v) return v == "strict" or v == "accept-new", '"strict" or "accept-new"' end,
  host_key_sha256 = "string", timeout = positive,
  keepalive = function(v) return type(v) == "number" and v >= 0, "a number of seconds >= 0" end,
  keepalive_max = at_least(1), max_channels = at_least(1), reconnect = "boolean",
}

local function home()
  return os.getenv("HOME") or "/root"
end

local exists = require("sandlot._paths").exists

M.quote = shell.quote       -- kept here for scripts; sandlot.shell owns the command line
M.command = shell.command

local function target(o)
  return ("%s@%s:%d"):format(o.user, o.host, o.port)
end

local function fail(code, msg, fields)
  fields = fields or {}
  fields.op = fields.op or "ssh.connect"
  return nil, errors.new(code, msg, fields)
end

local function normalize_fp(fp)
  fp = tostring(fp):gsub("=+$", "")
  if not fp:find("^SHA256:") then fp = "SHA256:" .. fp end
  return fp
end

-- Checks the offered host key against the pin or known_hosts; may learn it (accept-new).
local function verify_host(s, o)
  local hk, err = s:host_key()
  if not hk then return nil, err end
  local where = o.port == 22 and o.host or ("[%s]:%d"):format(o.host, o.port)
  if o.host_key_sha256 then
    local want = normalize_fp(o.host_key_sha256)
    if hk.sha256 ~= want then
      return fail("auth_failed", ("host key verification failed for %s: expected %s (pinned), "
        .. "offered %s %s"):format(where, want, hk.type, hk.sha256),
        { expected = want, offered = hk.sha256, retryable = false })
    end
    return true
  end
  local status, expected = s:check_known_hosts(o.known_hosts)
  if status == nil then return nil, expected end
  if status == "match" then return true end
  if status == "mismatch" then
    return fail("auth_failed", ("host key for %s has changed: expected %s, offered %s %s "
      .. "(known_hosts: %s). If the change is expected, remove the old entry with "
      .. "ssh-keygen -R '%s' -f %s"):format(where, expected or "another key", hk.type,
      hk.sha256, o.known_hosts, where, o.known_hosts),
      { expected = expected, offered = hk.sha256, retryable = false })
  end
  if o.host_key == "accept-new" then
    local ok, lerr = s:learn_host_key(o.known_hosts)
    if not ok then return nil, lerr end
    return true
  end
  return fail("auth_failed", ("unknown host key for %s: %s %s is not in %s; check it, then "
    .. "connect once with host_key = \"accept-new\" or pin it with host_key_sha256"):format(
    where, hk.type, hk.sha256, o.known_hosts),
    { offered = hk.sha256, retryable = false })
end

-- The credentials to try, in order: explicit ones first; the agent and the default key files
-- only when nothing was given (as OpenSSH does).
local function credentials(o)
  local list = {}
  if o.key then
    list[#list + 1] = { method = "key", key = o.key, passphrase = o.passphrase,
                        label = "publickey (key given as a string)", kind = "publickey" }
  end
  local files = o.key_file
  if type(files) == "string" then files = { files } end
  if files == false then files = nil end
  for _, f in ipairs(files or {}) do
    list[#list + 1] = { method = "key_file", path = f, passphrase = o.passphrase,
                        label = "publickey (key file " .. f .. ")", kind = "publickey" }
  end
  local explicit = #list > 0 or o.password ~= nil
  local agent = o.agent
  if agent == nil then agent = not explicit and os.getenv("SSH_AUTH_SOCK") ~= nil end
  if agent then
    list[#list + 1] = { method = "agent", path = type(agent) == "string" and agent or nil,
                        label = "publickey (ssh-agent)", kind = "publickey" }
  end
  if not explicit then
    for _, name in ipairs({ "id_ed25519", "id_ecdsa", "id_rsa" }) do
      local f = home() .. "/.ssh/" .. name
      if exists(f) then
        list[#list + 1] = { method = "key_file", path = f, label = "publickey (key file " ..
                            f .. ")", kind = "publickey" }
      end
    end
  end
  if o.password then
    list[#list + 1] = { method = "password", password = o.password, label = "password",
                        kind = "password" }
  end
  return list
end

-- Whether a key file holds an RSA key (by its .pub companion or a PEM header).
local function is_rsa(path)
  local f = io.open(path .. ".pub", "rb") or io.open(path, "rb")
  if not f then return false end
  local head = f:read(64) or ""
  f:close()
  return head:find("^ssh%-rsa ") ~= nil or head:find("BEGIN RSA PRIVATE KEY", 1, true) ~= nil
end

local function authenticate(s, o)
  local none, offered = s:auth(o.user, { method = "list", timeout = o.timeout })
  if none == nil then return nil, offered end
  if none == true then return true end
  local accepts = {}
  for m in tostring(offered):gmatch("[^,]+") do accepts[m] = true end
  local tried = {}
  for _, c in ipairs(credentials(o)) do
    if accepts[c.kind] then
      local ok, why = s:auth(o.user, { method = c.method, path = c.path, key = c.key,
                                       passphrase = c.passphrase, password = c.password,
                                       timeout = o.timeout })
      if ok then return true end
      if ok == nil then return nil, why end
      if c.path and is_rsa(c.path) and M.libssh2 < "1.11" then
        why = tostring(why) .. " (libssh2 " .. M.libssh2 .. " signs RSA keys with ssh-rsa/SHA-1,"
              .. " which OpenSSH 8.8 and later refuse by default: use an ed25519 or ECDSA key)"
      end
      tried[#tried + 1] = c.label .. ": " .. tostring(why)
    else
      tried[#tried + 1] = c.label .. ": not accepted by the server"
    end
  end
  local msg = ("authentication as %s failed; tried %s; the server accepts: %s"):format(
    target(o), #tried > 0 and table.concat(tried, "; ") or "no credentials (give key_file, "
    .. "key, password or agent = true)", offered)
  return fail("auth_failed", msg, { retryable = false, methods = offered })
end

local function resolve_opts(opts)
  if opts == nil then error("ssh.connect: opts must be a table", 3) end
  check.opts(opts, CONNECT_OPTS, "ssh.connect", 3)
  if opts.host == nil or opts.host == "" then error("ssh.connect: opts.host is required", 3) end
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.user = o.user or os.getenv("USER") or os.getenv("LOGNAME") or "root"
  o.known_hosts = o.known_hosts or (home() .. "/.ssh/known_hosts")
  return o
end

local function open_session(o)
  local s, err = core.connect({ host = o.host, port = o.port, timeout = o.timeout,
                                keepalive = o.keepalive, keepalive_max = o.keepalive_max,
                                max_channels = o.max_channels })
  if not s then return nil, errors.wrap(err, { op = "ssh.connect", host = o.host }) end
  local ok, verr = verify_host(s, o)
  if ok then ok, verr = authenticate(s, o) end
  if not ok then
    s:close()
    return nil, errors.wrap(verr, { op = "ssh.connect", host = o.host })
  end
  return s
end

---An SSH connection (sandlot.ssh.connect): exec, spawn, SFTP files, one connection per
---host, verified host key.
---@class sandlot.ssh.Client
local Client = {}
Client.__index = Client
Client.__name = "sandlot.ssh.client"

---Connects to an SSH server, verifies its host key and authenticates.
---@param opts table host (required), port (22), user ($USER), key_file (path or list), key
---  (private key text; never written to disk), passphrase, password, agent (true, or the
---  agent socket's path; default: SSH_AUTH_SOCK when no credential is given), known_hosts
---  (~/.ssh/known_hosts), host_key ("strict" | "accept-new"), host_key_sha256 (pin),
---  timeout (10 s), keepalive (15 s), keepalive_max (3), max_channels (10), reconnect (true)
---@return table|nil client, sandlot.Error? err unavailable, timeout, auth_failed, not_found
function M.connect(opts)
  local o = resolve_opts(opts)
  local s, err = open_session(o)
  if not s then return nil, err end
  return setmetatable({ _o = o, _s = s, host = o.host, port = o.port, user = o.user }, Client)
end

-- The live session, reconnecting when the last one was lost (one attempt per call).
function Client:_session()
  if self._closed then error("attempt to use a closed sandlot.ssh client", 3) end
  local s = self._s
  if s and s:alive() then return s end
  if s then s:close() end
  self._s = nil
  if not self._o.reconnect then
    return nil, errors.new("unavailable", "the SSH connection to " .. target(self._o) ..
                           " was lost", { op = "ssh", host = self.host })
  end
  local ns, err = open_session(self._o)
  if not ns then return nil, err end
  self._s = ns
  return ns
end

-- Runs fn(session) and retries once on a fresh connection when the call failed before
-- anything reached the server (err.retry_safe), unless no_retry (fn consumed input).
function Client:_call(op, fn, no_retry)
  local s, err = self:_session()
  if not s then return nil, err end
  local r, e = fn(s)
  if r == nil and errors.is(e, "unavailable") and e.retry_safe and self._o.reconnect
      and not no_retry then
    s, err = self:_session()
    if not s then return nil, err end
    r, e = fn(s)
  end
  if r == nil and e ~= nil then e = errors.wrap(e, { op = op, host = self.host }) end
  return r, e
end

local function bytes(v)
  return math.type(v) == "integer" and v >= 0, "an integer >= 0 (bytes)"
end

-- env and timeout are checked by _check.env and _check.timeout (check_command).
local function string_or_writer(v)
  return type(v) == "string" or type(v) == "function", "a string or a writer function"
end

-- pty: true (M.PTY's terminal) or {rows, cols, term}
local function pty_opt(v)
  if type(v) == "boolean" then return true end
  if type(v) ~= "table" then return false, "a boolean or {rows =, cols =, term =}" end
  for k, x in pairs(v) do
    if k == "rows" or k == "cols" then
      if math.type(x) ~= "integer" or x < 1 or x > 65535 then
        return false, "a table whose rows and cols are integers in 1..65535"
      end
    elseif k ~= "term" or type(x) ~= "string" or x == "" or #x > 31 then
      return false, "{rows =, cols =, term =} (term a name of at most 31 bytes)"
    end
  end
  return true
end

local EXEC_OPTS = {
  env = true, cwd = "string", stdin = string_or_writer, timeout = true, max_output = bytes,
  pty = pty_opt, on_stdout = "function", on_stderr = "function", prelude = "string",
}
local SPAWN_OPTS = { env = true, cwd = "string", pty = pty_opt, prelude = "string" }

-- Checks a command and its options for the caller of Client:exec or Client:spawn.
local function check_command(cmd, opts, spec, where)
  opts = check.opts(opts, spec, where, 3)
  check.argv(cmd, where, 3)
  check.env(opts.env, where, 3)
  check.timeout(opts.timeout, where, 3)
  return opts
end

-- The core's options for a command line from shell.line: the marker, the kill line and the
-- terminal; the core has no defaults of its own.
local function core_opts(opts, extra)
  local pty = opts.pty and true or nil
  local o = { pty = pty, marker = shell.marker_stream(pty), kill_line = shell.KILL_LINE }
  if pty then
    local t = type(opts.pty) == "table" and opts.pty or {}
    o.term, o.cols, o.rows = t.term or M.PTY.term, t.cols or M.PTY.cols, t.rows or M.PTY.rows
  end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

-- Feeds a writer function's chunks to the command's stdin from a task of its own (as
-- sandlot.proc does): until it returns nil or "", raises, or the command stops reading.
local function start_writer(h, writer)
  return task.spawn(function()
    while true do
      local ok, chunk = pcall(writer)
      if not ok or chunk == nil or chunk == "" then break end
      local wrote, done = pcall(h.write, h, tostring(chunk))   -- h may be closed meanwhile
      if not (wrote and done) then return end
    end
    pcall(h.close_stdin, h)
  end)
end

local function exec(self, cmd, opts)
  local writer = type(opts.stdin) == "function" and opts.stdin or nil
  local copts = core_opts(opts, { stdin = not writer and opts.stdin or nil,
                                  stdin_open = writer ~= nil, timeout = opts.timeout,
                                  max_output = opts.max_output or M.DEFAULTS.max_output })
  local line = shell.line(cmd, { prelude = opts.prelude, env = opts.env, cwd = opts.cwd })
  if not (opts.on_stdout or opts.on_stderr or writer) then
    return self:_call("ssh.exec", function(s) return s:exec(line, copts) end)
  end
  return self:_call("ssh.exec", function(s)
    local h <close>, err = s:spawn(line, copts)
    if not h then return nil, err end
    local _w <close> = writer and setmetatable({ t = start_writer(h, writer) },
                                              { __close = function(x) x.t:cancel() end })
    local cbs = { stdout = opts.on_stdout, stderr = opts.on_stderr }
    while true do
      local chunk, which = h:read()
      if chunk == nil then
        if which ~= nil then return nil, which end
        break
      end
      local cb = cbs[which]
      if cb then cb(chunk) end
    end
    return h:wait()
  end, writer ~= nil)                      -- a writer's chunks are gone once taken
end

---Runs a command on the server. A command that runs and fails is a result, not an error.
---@param cmd string|string[] argv list (quoted for the remote shell) or a shell string
---@param opts? table env (a false value unsets the variable), cwd, stdin (string), timeout (s:
---  kills the remote process group), max_output (bytes kept per stream, head and tail;
---  sandlot.exec.DEFAULT_MAX_OUTPUT), pty (true: M.PTY's terminal, or {rows, cols, term}:
---  stderr then comes on stdout), on_stdout, on_stderr,
---  prelude (POSIX shell commands run first, e.g. from sandlot.shell.guard and .source)
---@return table|nil result {exit_code, signal, signal_name, stdout, stderr, timed_out,
---  truncated, duration, pgid (the remote process group)}
---@return sandlot.Error? err unavailable (connection lost), timeout (no channel), cancelled
function Client:exec(cmd, opts)
  opts = check_command(cmd, opts, EXEC_OPTS, "ssh exec")
  if not telemetry.active() then return exec(self, cmd, opts) end
  return telemetry.span("ssh.exec", { host = self.host, command = cmd }, exec, self, cmd, opts)
end

-- A command started by Client:spawn: the core's exec handle, with signals by name.
---@class sandlot.ssh.Process
local Process = { __name = "sandlot.ssh.process" }
Process.__index = Process

local function live(self)
  if self._h == nil then error("attempt to use a closed sandlot.ssh.process", 3) end
  return self._h
end

local function failed(self, ok, err)
  if ok == nil and err ~= nil then return nil, errors.wrap(err, { op = "ssh.spawn",
                                                                   host = self._host }) end
  return ok, err
end

---Writes data to the command's stdin; waits until the channel has taken all of it.
---@param data string
---@return true|nil ok, sandlot.Error? err invalid_input (stdin closed), io_error (it ended)
function Process:write(data)
  if type(data) ~= "string" then error("ssh process: write: data must be a string", 2) end
  return failed(self, live(self):write(data))
end

---Closes the command's stdin (it reads end of file). Idempotent.
---@return true
function Process:close_stdin()
  return live(self):close_stdin()
end

---The next chunk of output and its stream. nil once both streams have ended.
---@return string|nil data, string|sandlot.Error|nil stream "stdout" | "stderr", or the error
function Process:read()
  local data, which = live(self):read()
  if data == nil then return failed(self, nil, which) end
  return data, which
end

---Waits for the command to end: the exec result without output ({exit_code, signal,
---signal_name, timed_out, duration, pgid}; output comes only through read).
---@return table|nil result, sandlot.Error? err
function Process:wait()
  return failed(self, live(self):wait())
end

---Changes the size of the command's terminal (spawned with opts.pty).
---@param rows integer
---@param cols integer
---@return true|nil ok, sandlot.Error? err invalid_input (no pty), not_found (it has ended)
function Process:resize(rows, cols)
  return failed(self, live(self):resize(rows, cols))
end

---Sends a signal to the command's process group (what it started included).
---@param signal? string|integer a name ("TERM", the default; "SIGKILL") or a number
---@return true|nil ok, sandlot.Error? err not_found (it has ended), not_supported
function Process:kill(signal)
  local h = live(self)
  local ok, line = pcall(shell.signal_line, signal or "TERM")
  if not ok then error("ssh process: kill: " .. tostring(line):gsub("^.-: ", "", 1), 2) end
  return failed(self, h:kill(line))
end

---Closes the process: kills what still runs, frees the channel. Idempotent; also __close.
---@return true
function Process:close()
  if self._h ~= nil then
    self._h:close()
    self._h = nil
  end
  return true
end

Process.__close = Process.close

function Process:__tostring()
  return self._h and tostring(self._h):gsub("^sandlot%.ssh%.exec", "sandlot.ssh.process")
         or "sandlot.ssh.process (closed)"
end

---Starts a command on the server and returns it live: p:write(data), p:close_stdin(),
---p:read() -> data, "stdout"|"stderr" (nil at the end of both streams), p:wait() -> result,
---p:kill([signal]), p:close(). Output is queued for read (reading from the server stops
---while a few MiB wait unread). Use `local p <close> = ...`; a collected process is killed.
---@param cmd string|string[] as for exec
---@param opts? table env, cwd, pty, prelude (as for exec)
---@return sandlot.ssh.Process|nil process, sandlot.Error? err unavailable (connection lost)
function Client:spawn(cmd, opts)
  opts = check_command(cmd, opts, SPAWN_OPTS, "ssh spawn")
  local line = shell.line(cmd, { prelude = opts.prelude, env = opts.env, cwd = opts.cwd })
  local s, err = self:_session()
  local h
  if s then h, err = s:spawn(line, core_opts(opts, { max_output = 0, stdin_open = true })) end
  if not h then return nil, errors.wrap(err, { op = "ssh.spawn", host = self.host }) end
  return setmetatable({ _h = h, _host = self.host }, Process)
end

local function sftp(self, kind, path, opts)
  return self:_call("ssh." .. kind, function(s) return s:sftp(kind, path, opts) end)
end

---Reads a remote file: its contents, or with opts.to, streams it into that local file and
---returns the byte count. opts.max_size bounds what is read into memory.
---@return string|integer|nil data, sandlot.Error? err not_found, permission_denied, ...
function Client:read_file(path, opts)
  opts = opts or {}
  return sftp(self, "get", path, { file = opts.to, max_size = opts.max_size })
end

---Writes data (a string), or with opts.from a local file streamed in chunks, to a remote
---path (created or truncated, opts.mode default 0644). Returns the bytes written.
function Client:write_file(path, data, opts)
  opts = opts or {}
  if data == nil and not opts.from then error("write_file: data or opts.from is required", 2) end
  return sftp(self, "put", path, { data = data, file = opts.from, mode = opts.mode })
end

---Streams a local file to the server (an SFTP upload that never holds the file in memory).
function Client:put(local_path, remote_path, opts)
  return self:write_file(remote_path, nil, { from = local_path, mode = (opts or {}).mode })
end

---Streams a remote file into a local file.
function Client:get(remote_path, local_path)
  return self:read_file(remote_path, { to = local_path })
end

---Entries of a remote directory: {name, type, size, mode, mtime} (without . and ..).
function Client:ls(path)
  local list, err = sftp(self, "ls", path, {})
  if list then table.sort(list, function(a, b) return a.name < b.name end) end
  return list, err
end

---{type = "file"|"directory"|"link"|"other", size, mode, mtime} (follows symlinks unless
---opts.lstat).
function Client:stat(path, opts)
  return sftp(self, (opts and opts.lstat) and "lstat" or "stat", path, {})
end

---Creates a directory; with opts.parents, also its missing parents (no error if it exists).
function Client:mkdir(path, opts)
  opts = opts or {}
  local mode = opts.mode or 493
  if not opts.parents then return sftp(self, "mkdir", path, { mode = mode }) end
  local prefix = path:sub(1, 1) == "/" and "/" or ""
  local sofar = prefix
  for part in path:gmatch("[^/]+") do
    sofar = (sofar == "" or sofar == "/") and (sofar .. part) or (sofar .. "/" .. part)
    local st = self:stat(sofar)
    if not st then
      local ok, err = sftp(self, "mkdir", sofar, { mode = mode })
      if not ok then
        local again = self:stat(sofar)     -- created meanwhile by someone else?
        if not (again and again.type == "directory") then return nil, err end
      end
    elseif st.type ~= "directory" then
      return nil, errors.new("invalid_input", sofar .. " exists and is not a directory",
                             { op = "ssh.mkdir", host = self.host })
    end
  end
  return true
end

---Removes a file or an empty directory; with opts.recursive, a whole tree (symlinks are
---removed, never followed).
function Client:rm(path, opts)
  opts = opts or {}
  local st, err = self:stat(path, { lstat = true })
  if not st then return nil, err end
  if st.type ~= "directory" then return sftp(self, "rm", path, {}) end
  if opts.recursive then
    local entries, lerr = self:ls(path)
    if not entries then return nil, lerr end
    for _, e in ipairs(entries) do
      local ok, rerr = self:rm(path .. "/" .. e.name, { recursive = true })
      if not ok then return nil, rerr end
    end
  end
  return sftp(self, "rmdir", path, {})
end

---The canonical path, every symlink resolved by the server (a missing last component is kept
---as it is).
---@param path string
---@return string|nil path, sandlot.Error? err
function Client:realpath(path)
  return sftp(self, "realpath", path, {})
end

---Renames (atomically replacing the target where the server supports it).
function Client:rename(from, to)
  return sftp(self, "rename", from, { to = to })
end

---Whether the connection is up (a lost one is re-established by the next call).
function Client:alive()
  return self._s ~= nil and self._s:alive()
end

---{channels, pending, max_channels} of the current connection.
function Client:stats()
  return self._s and self._s:stats() or { channels = 0, pending = 0 }
end

---Closes the connection. Idempotent; also __close and __gc.
function Client:close()
  self._closed = true
  if self._s then self._s:close() end
  self._s = nil
  return true
end

Client.__close = Client.close
Client.__gc = Client.close

function Client:__tostring()
  return ("sandlot.ssh.client %s (%s)"):format(target(self._o), self:alive() and "open" or
                                                 "not connected")
end

M.Client = Client

return M
