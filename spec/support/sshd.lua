-- spec/support/sshd.lua: a private OpenSSH sshd for the specs, on 127.0.0.1 at a free port,
-- with host and user keys generated into a temporary directory and its own sshd_config. No
-- system file is read or written: as root without /run/sshd (sshd's compiled-in privilege
-- separation directory), sshd runs in a private mount namespace with a tmpfs on /run.
local sandlot = require("sandlot")
local proc = sandlot.proc

local M = {}

local SSHD = "/usr/sbin/sshd"

local function run(argv)
  local r, err = proc.run(argv, { timeout = 30 })
  if not r then return nil, tostring(err) end
  if r.exit_code ~= 0 then
    return nil, table.concat(argv, " ") .. ": " .. (r.stderr ~= "" and r.stderr or r.stdout)
  end
  return r.stdout
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, data, mode)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  if mode then run({ "chmod", mode, path }) end
end

---Generates a key pair into dir/name (type "ed25519", "ecdsa", "rsa"; optional passphrase).
function M.keygen(dir, name, kind, passphrase)
  local path = dir .. "/" .. name
  local argv = { "ssh-keygen", "-q", "-t", kind or "ed25519", "-N", passphrase or "",
                 "-C", "sandlot-spec", "-f", path }
  if kind == "rsa" then table.insert(argv, 5, "-b"); table.insert(argv, 6, "3072") end
  local ok, err = run(argv)
  if not ok then return nil, err end
  return path, read(path .. ".pub")
end

---SHA256 fingerprint of a public key file, as OpenSSH prints it.
function M.fingerprint(pubpath)
  local out = assert(run({ "ssh-keygen", "-l", "-E", "sha256", "-f", pubpath }))
  return out:match("(SHA256:%S+)")
end

---Why sshd cannot run here, or nil.
function M.unavailable()
  local f = io.open(SSHD, "rb")
  if not f then return "needs sshd (" .. SSHD .. ": openssh-server not installed)" end
  f:close()
  return nil
end

local function whoami()
  return (assert(run({ "id", "-un" })):gsub("%s+$", "")), tonumber((assert(run({ "id", "-u" }))))
end

local function config(s)
  return table.concat({
    "Port " .. s.port,
    "ListenAddress 127.0.0.1",
    "HostKey " .. s.host_key,
    "AuthorizedKeysFile " .. s.dir .. "/authorized_keys",
    "PidFile " .. s.dir .. "/sshd.pid",
    "UsePAM no",
    "StrictModes no",
    "PermitRootLogin yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "AcceptEnv LANG LC_* SANDLOT_ACCEPTED",
    "MaxSessions " .. (s.max_sessions or 10),
    "MaxStartups 100:30:200",
    "LogLevel " .. (s.log_level or "INFO"),          -- INFO prints "Server listening"
    "Subsystem sftp internal-sftp",
    -- bash started by sshd sources ~/.bashrc only when SHLVL was unset; a heavy .bashrc (this
    -- machine's runs `pyenv init`: 0.7 s) would otherwise dominate every command's time
    "SetEnv SHLVL=1",
    "",
  }, "\n")
end

local function argv_for(s)
  local cmd = { SSHD, "-D", "-e", "-f", s.dir .. "/sshd_config" }
  if s.uid == 0 and not io.open("/run/sshd") then
    -- a private mount namespace: the tmpfs on /run is invisible to the rest of the system
    local inner = "mount -t tmpfs -o mode=755 sandlot-run /run && mkdir -m 755 /run/sshd && " ..
                  "exec " .. table.concat(cmd, " ")
    return { "unshare", "--mount", "--propagation", "private", "sh", "-c", inner }
  end
  return cmd
end

local Server = {}
Server.__index = Server

---Starts sshd. opts: max_sessions, log_level, keys = {"ed25519", ...} user key types.
---@return table|nil server, string? reason
function M.start(opts)
  opts = opts or {}
  local why = M.unavailable()
  if why then return nil, why end
  local dir = assert(run({ "mktemp", "-d", "/tmp/sandlot-spec.sshd.XXXXXX" })):gsub("%s+$", "")
  local s = setmetatable({ dir = dir, host = "127.0.0.1", max_sessions = opts.max_sessions,
                           log_level = opts.log_level }, Server)
  s.user, s.uid = whoami()
  local err
  s.host_key, err = M.keygen(dir, "host_ed25519", "ed25519")
  if not s.host_key then s:cleanup(); return nil, err end
  s.host_pub = read(s.host_key .. ".pub")
  s.host_fp = M.fingerprint(s.host_key .. ".pub")
  s.key, s.key_pub = M.keygen(dir, "id_ed25519", "ed25519")
  if not s.key then s:cleanup(); return nil, s.key_pub end
  write(dir .. "/authorized_keys", s.key_pub, "600")
  for _ = 1, 8 do
    local ok, log = s:_launch(math.random(20000, 59999))
    if ok then return s end
    if not log:find("Address already in use", 1, true) then
      s:cleanup()
      return nil, "sshd did not start: " .. log
    end
  end
  s:cleanup()
  return nil, "sshd: no free port found"
end

-- Starts sshd on port; true, or nil and what it logged.
function Server:_launch(port)
  self.port = port
  write(self.dir .. "/sshd_config", config(self))
  local p, perr = proc.spawn(argv_for(self), { stream = true })
  if not p then return nil, tostring(perr) end
  local log, ready = "", false
  local res = sandlot.timeout(10, function()
    while true do
      local chunk = p:read()
      if not chunk then return end
      log = log .. chunk
      if log:find("Server listening on", 1, true) then ready = true; return end
    end
  end)
  if not ready then
    p:kill("KILL")
    p:wait()
    p:close()
    return nil, log ~= "" and log or tostring(res)
  end
  self.proc = p
  self.log_task = sandlot.spawn(function()                -- keep the pipe drained
    while p:read() do end
  end)
  self.known_hosts = self.known_hosts or (self.dir .. "/known_hosts")
  if not self.kept_known_hosts then
    write(self.known_hosts, ("[127.0.0.1]:%d %s"):format(port, self.host_pub))
    self.kept_known_hosts = true
  end
  return true
end

---Kills the server and starts it again on the same port; with opts.new_host_key, under a
---freshly generated host key (the spec's known_hosts keeps the old one).
function Server:restart(opts)
  self:kill()
  if opts and opts.new_host_key then
    run({ "rm", "-f", self.host_key, self.host_key .. ".pub" })
    self.host_key = assert(M.keygen(self.dir, "host_ed25519", "ed25519"))
    self.host_pub = read(self.host_key .. ".pub")
    self.host_fp = M.fingerprint(self.host_key .. ".pub")
  end
  local log
  for _ = 1, 20 do
    local ok
    ok, log = self:_launch(self.port)
    if ok then return true end
    sandlot.sleep(0.1)
  end
  error("sshd did not restart: " .. tostring(log))
end

---Connection options for sandlot.ssh.connect that trust this server.
function Server:opts(extra)
  local o = { host = self.host, port = self.port, user = self.user, key_file = self.key,
              known_hosts = self.known_hosts, agent = false, timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function descendants(pid, out)
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  if not f then return out end
  local kids = f:read("a")
  f:close()
  for kid in kids:gmatch("%d+") do
    out[#out + 1] = tonumber(kid)
    descendants(tonumber(kid), out)
  end
  return out
end

---SIGKILLs the listener and every connection it serves (their sessions are their children).
function Server:kill()
  if not self.proc then return end
  local pids = descendants(self.proc:pid(), { self.proc:pid() })
  for _, pid in ipairs(pids) do run({ "kill", "-KILL", tostring(pid) }) end
  if self.log_task then                    -- it reads until every sshd closed the pipe
    sandlot.timeout(5, function() self.log_task:join() end)
    self.log_task = nil
  end
  self.proc:wait()
  self.proc:close()
  self.proc = nil
end

---Stops or freezes (SIGSTOP) every sshd process of this server; "CONT" resumes them.
function Server:signal(sig)
  local pids = descendants(self.proc:pid(), { self.proc:pid() })
  for _, pid in ipairs(pids) do run({ "kill", "-" .. sig, tostring(pid) }) end
end

function Server:cleanup()
  if self.dir and self.dir:match("^/tmp/sandlot%-spec") then run({ "rm", "-rf", self.dir }) end
  self.dir = nil
end

function Server:stop()
  self:kill()
  self:cleanup()
end

return M
