-- providers/ssh.lua: sandboxes on an existing machine reached over SSH. Each sandbox is a
-- private directory <base>/<id>/ on the remote host (base: ~/.sandlot/sandboxes) holding env
-- (its create-time environment, 0600) and work/ (where commands run and file paths point); or,
-- asked for explicitly with workdir = "/", the whole host. File paths are confined to the
-- working directory: lexically (no `..` out), then on the server (SFTP realpath), so a
-- symlink inside cannot lead a file operation outside. Commands run as the SSH user, so this
-- is a working area, not an isolation boundary. Connections are shared per host and user.
-- The command lines are built with sandlot.shell.
local ssh = require("sandlot.ssh")
local shell = require("sandlot.shell")
local errors = require("sandlot.errors")
local check = require("sandlot._check")

local M = {
  name = "ssh",
  description = "a private directory on a host reached over SSH (no isolation)",
  capabilities = { files = true, url = false, remote = true },
  config = {
    host = "string", port = "number", user = "string", key_file = "string", key = "string",
    passphrase = "string", password = "string", agent = "boolean", known_hosts = "string",
    host_key = "string", host_key_sha256 = "string", base_dir = "string", timeout = "number",
    keepalive = "number", max_channels = "number",
  },
  create_options = { workdir = "string" },
}

local DEFAULT_BASE = ".sandlot/sandboxes"
local q = shell.quote

local clients = {}         -- "user@host:port|credentials" -> client, shared by sandboxes

local function err(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))       -- retryable: the code's own default
end

local function conn_opts(ctx, handle)
  local c = ctx.config
  local host = (handle and handle.host) or c.host
  if type(host) ~= "string" or host == "" then
    error("ssh provider: config needs host = \"...\" (providers = {name = {\"ssh\", host = ...}})",
          0)
  end
  return {
    host = host, port = math.tointeger((handle and handle.port) or c.port) or ssh.DEFAULTS.port,
    user = (handle and handle.user) or c.user, key_file = c.key_file, key = c.key,
    passphrase = c.passphrase, password = c.password, agent = c.agent,
    known_hosts = c.known_hosts, host_key = c.host_key, host_key_sha256 = c.host_key_sha256,
    timeout = c.timeout, keepalive = c.keepalive, max_channels = c.max_channels,
  }
end

-- The shared client for this config and host; connects on first use. The cache key holds the
-- credentials only in this process's memory.
local function client(ctx, handle)
  local o = conn_opts(ctx, handle)
  local key = table.concat({ tostring(o.user), o.host, tostring(o.port), tostring(o.key_file),
                             tostring(o.key), tostring(o.password), tostring(o.agent),
                             tostring(o.known_hosts), tostring(o.host_key),
                             tostring(o.host_key_sha256) }, "\0")
  local c = clients[key]
  if c then return c end
  local nc, cerr = ssh.connect(o)
  if not nc then return nil, cerr end
  if clients[key] then                     -- another task connected meanwhile
    nc:close()
    return clients[key]
  end
  clients[key] = nc
  return nc
end

local function new_id()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(6)
  f:close()
  return "ssh-" .. (b:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

-- A normalized absolute path: no empty, "." or ".." component, no NUL or newline.
local function clean_abs(p)
  if type(p) ~= "string" or p:sub(1, 1) ~= "/" or p:find("[%z\n]") then return false end
  if p == "/" then return true end
  if p:sub(-1) == "/" then return false end
  for part in p:sub(2):gmatch("[^/]*") do
    if part == "" or part == "." or part == ".." then return false end
  end
  return true
end

local HOST = "^[%w%.:%[%]_][%w%.:%[%]_%-]*$"     -- a name or an address; never an option
local USER = "^[%w_.][%w_.%-]*%$?$"

-- Every handle field that reaches a connection, a path or a command line is checked first
-- (a stored handle is world input: nil, invalid_input).
local function valid(handle)
  if type(handle) ~= "table" then
    return err("invalid_input", "ssh: not an ssh sandbox handle: %s", tostring(handle))
  end
  local ok, e = check.id(handle.id, "^ssh%-%x+$", "ssh sandbox id", 64)
  if not ok then return nil, e end
  if not clean_abs(handle.dir) or handle.dir:sub(-#handle.id - 1) ~= "/" .. handle.id then
    return err("invalid_input", "ssh: handle.dir of %s is not its sandbox directory", handle.id)
  end
  if handle.root ~= "/" and handle.root ~= handle.dir .. "/work" then
    return err("invalid_input", "ssh: handle.root of %s is neither / nor its work directory",
               handle.id)
  end
  if handle.host ~= nil then
    ok, e = check.id(handle.host, HOST, "ssh host", 255)
    if not ok then return nil, e end
  end
  local port = handle.port
  if port ~= nil and (math.type(port) == nil or math.tointeger(port) == nil or port < 1
                      or port > 65535) then
    return err("invalid_input", "ssh: handle.port of %s is not a port number", handle.id)
  end
  if handle.user ~= nil then
    ok, e = check.id(handle.user, USER, "ssh user", 64)
    if not ok then return nil, e end
  end
  if handle.cwd ~= nil and (type(handle.cwd) ~= "string" or handle.cwd:find("[%z\n]")) then
    return err("invalid_input", "ssh: handle.cwd of %s is not a path", handle.id)
  end
  return true
end

-- Maps a sandbox path (absolute paths map inside the working directory) to a remote absolute
-- path, refusing `..` that would leave it.
local function resolve(handle, path)
  local parts = {}
  for part in tostring(path):gmatch("[^/]+") do
    if part == ".." then
      if #parts == 0 then
        return err("invalid_input", "ssh: path %q leaves the sandbox", path)
      end
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  local root = handle.root == "/" and "" or handle.root
  if #parts == 0 then return handle.root end
  return root .. "/" .. table.concat(parts, "/")
end

local function join(dir, name)
  return dir == "/" and ("/" .. name) or (dir .. "/" .. name)
end

-- The server's canonical path for p: the longest prefix it can resolve, then the missing
-- rest (which holds no symlink, since it does not exist).
local function real(c, p)
  local rp, e = c:realpath(p)
  if rp then return rp end
  if errors.is(e, "unavailable") or errors.is(e, "timeout") or errors.is(e, "cancelled") then
    return nil, e                          -- the connection, not the path
  end
  local dir, name = p:match("^(.*)/([^/]+)$")
  if not dir then return nil, e end
  local rdir, derr = real(c, dir == "" and "/" or dir)
  if not rdir then return nil, derr end
  return join(rdir, name)
end

local verified = {}        -- host|root -> true once the root resolved to itself

local function inside(p, root)
  return p == root or p:sub(1, #root + 1) == root .. "/"
end

-- Checks the handle, maps path below the sandbox root, connects, and resolves symlinks on the
-- server: a path that leads outside the root is refused, and so is a root that is no longer
-- the directory create made (replaced by a symlink). With keep_last, the last component is
-- not followed (rm removes a link, never its target). Returns the client and the resolved
-- remote path.
local function place(ctx, handle, path, keep_last)
  local ok, cerr = valid(handle)
  if not ok then return nil, cerr end
  local p, perr = resolve(handle, path)
  if not p then return nil, perr end
  local c, e = client(ctx, handle)
  if not c then return nil, e end
  if handle.root == "/" then return c, p end        -- the whole host: nothing to leave
  local key = c.host .. "|" .. handle.root
  if not verified[key] then
    local root, rerr = real(c, handle.root)
    if not root then return nil, rerr end
    if root ~= handle.root then
      return err("invalid_input", "ssh: the sandbox root %s now resolves to %s; refusing",
                 handle.root, root)
    end
    verified[key] = true
  end
  local rp, rerr
  if keep_last and p ~= handle.root then
    local dir, name = p:match("^(.*)/([^/]+)$")
    rp, rerr = real(c, dir)
    if rp then rp = join(rp, name) end
  else
    rp, rerr = real(c, p)
  end
  if not rp then return nil, rerr end
  if not inside(rp, handle.root) then
    return err("invalid_input", "ssh: path %q leads out of the sandbox (through a symlink)",
               path)
  end
  return c, rp
end

local function parent_of(p)
  return p:match("^(.*)/[^/]*$") or "/"
end

-- Runs a helper command (not the user's) and insists on exit 0.
local function run(c, cmd, what)
  local r, e = c:exec(cmd, { timeout = 60 })
  if not r then return nil, e end
  if r.exit_code ~= 0 then
    local msg = r.stderr:gsub("%s+$", "")
    local code = "io_error"
    if msg:find("No such file", 1, true) then code = "not_found"
    elseif msg:find("ermission denied", 1, true) then code = "permission_denied" end
    return err(code, "ssh: %s: %s", what, msg ~= "" and msg or ("exit " .. r.exit_code))
  end
  return r
end

function M.create(ctx, opts)
  if opts.network == "none" or type(opts.network) == "table" then
    return err("not_supported", "ssh: commands use the remote host's network; network = %s "
               .. "cannot be enforced",
               type(opts.network) == "table" and "{allow-list}" or "'none'")
  end
  if opts.mounts and #opts.mounts > 0 then
    return err("not_supported", "ssh: mounts are not supported")
  end
  for _, k in ipairs({ "image", "cpus", "memory_mb", "disk_mb", "ports", "timeout" }) do
    if opts[k] then ctx.warn(k .. " is ignored by the ssh provider") end
  end
  if opts.workdir ~= nil and opts.workdir ~= "/" then
    return err("invalid_input", "ssh: workdir may only be \"/\" (the whole host); sandboxes "
               .. "otherwise get a private directory")
  end
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local base = ctx.config.base_dir or DEFAULT_BASE
  local id = new_id()
  local env = shell.exports(opts.env, "\n")
  -- one round trip: a private dir, its env file and work/, and the absolute path back
  local script = table.concat({
    "set -e", "umask 077",
    "mkdir -p " .. q(base),
    "mkdir " .. q(base .. "/" .. id),
    "cd " .. q(base .. "/" .. id),
    ": > env",
    "mkdir -m 755 work",
    opts.cwd and ("mkdir -p work/" .. q((opts.cwd:gsub("^/+", "")))) or ":",
    "pwd -P",                              -- physical: file paths are checked against it
  }, "\n")
  local r, rerr = run(c, script .. "\n", "create")
  if not r then return nil, rerr end
  local dir = r.stdout:match("^(/[^\n]*)")
  if not dir then return err("bad_response", "ssh: create: the remote shell printed no path") end
  if env ~= "" then                        -- values may be secrets: SFTP, never a command line
    local wrote, werr = c:write_file(dir .. "/env", env,
                                     { mode = tonumber("600", 8) })
    if not wrote then return nil, werr end
  end
  local handle = { id = id, host = c.host, port = c.port, user = c.user, dir = dir,
                   root = opts.workdir == "/" and "/" or (dir .. "/work"), cwd = opts.cwd }
  return handle
end

-- What the provider's exec line prints (to stderr, exit 255) before the command runs when the
-- sandbox or the working directory is missing.
local GONE, NO_CWD = "sandlot: sandbox is gone\n", "sandlot: no such working directory\n"

-- The client, the working directory and the prelude for a command in the sandbox: one line,
-- run by the login shell before the command (no extra round trip, no extra process): the
-- sandbox's env file, then the command's env (it wins: the client adds it after the prelude),
-- then the working directory.
local function command_setup(ctx, handle, opts)
  local ok, cerr = valid(handle)
  if not ok then return nil, cerr end
  local c, e = client(ctx, handle)
  if not c then return nil, e end
  local cwd = handle.root
  local want_cwd = opts.cwd or handle.cwd
  if want_cwd then
    local p, perr = resolve(handle, want_cwd)
    if not p then return nil, perr end
    cwd = p
  end
  local env_file = handle.dir .. "/env"
  local prelude = shell.guard("f", env_file, GONE:sub(1, -2)) .. shell.source(env_file)
  if want_cwd then prelude = prelude .. shell.guard("e", cwd, NO_CWD:sub(1, -2)) end
  return { c = c, cwd = cwd, want_cwd = want_cwd, prelude = prelude }
end

function M.exec(ctx, handle, argv, opts)
  local x, xerr = command_setup(ctx, handle, opts)
  if not x then return nil, xerr end
  local r, rerr = x.c:exec(argv, { stdin = opts.stdin, timeout = opts.timeout,
                                   max_output = opts.max_output, on_stdout = opts.on_stdout,
                                   on_stderr = opts.on_stderr, env = opts.env, cwd = x.cwd,
                                   prelude = x.prelude })
  if not r then return nil, rerr end
  if r.exit_code == 255 and r.stderr == GONE then
    return err("not_found", "ssh: sandbox %s no longer exists on %s", handle.id, handle.host)
  end
  if r.exit_code == 255 and r.stderr == NO_CWD then
    return err("not_found", "ssh: cwd %s does not exist in the sandbox", x.want_cwd)
  end
  return r
end

-- A sandlot.ssh process seen through the provider process contract (providers/README.md,
-- "spawn"): read gives the stream first, wait the result without output.
local Process = {}
Process.__index = Process

function Process:write(data) return self.p:write(data) end
function Process:close_stdin() return self.p:close_stdin() end
function Process:kill(signal) return self.p:kill(signal) end
function Process:close() return self.p:close() end

function Process:read()
  local data, which = self.p:read()
  if data == nil then return nil, which end           -- the end (nil), or nil, err
  return which, data
end

function Process:wait()
  local r, werr = self.p:wait()
  if not r then return nil, werr end
  return { exit_code = r.exit_code, signal = r.signal, timed_out = r.timed_out,
           duration = r.duration }
end

---Starts argv in the sandbox as exec would (the env file, env, cwd), over one SSH channel
---whose stdin stays open. Output is not captured: it is queued for read, and reading from the
---server stops while a few MiB wait unread. kill signals the remote process group. A sandbox
---or cwd that is gone shows as exit 255 with the reason on stderr.
function M.spawn(ctx, handle, argv, opts)
  local x, xerr = command_setup(ctx, handle, opts)
  if not x then return nil, xerr end
  local p, perr = x.c:spawn(argv, { env = opts.env, cwd = x.cwd, prelude = x.prelude })
  if not p then return nil, perr end
  return setmetatable({ p = p }, Process)
end

-- After an SFTP failure that the server reported vaguely, looks at the path to pick the code.
local function refine(c, p, e, want)
  if not errors.is(e, "io_error") and not errors.is(e, "not_found") then return nil, e end
  local st = c:stat(p)
  if st and want and st.type ~= want then
    return err("invalid_input", "ssh: %s is a %s", p, st.type)
  end
  return nil, e
end

function M.read_file(ctx, handle, path)
  local c, p = place(ctx, handle, path)
  if not c then return nil, p end
  local data, rerr = c:read_file(p)
  if data then return data end
  return refine(c, p, rerr, "file")
end

function M.write_file(ctx, handle, path, data, opts)
  local c, p = place(ctx, handle, path)
  if not c then return nil, p end
  local mode = opts and opts.mode or tonumber("644", 8)
  local n, werr = c:write_file(p, data, { mode = mode })
  if not n and errors.is(werr, "not_found") then      -- missing parents: create, then retry
    local made, merr = c:mkdir(parent_of(p), { parents = true })
    if not made then return nil, merr end
    n, werr = c:write_file(p, data, { mode = mode })
  end
  if not n then return nil, werr end
  return true
end

local TYPES = { file = "file", directory = "directory", symlink = "symlink", link = "symlink" }

function M.ls(ctx, handle, path)
  local c, p = place(ctx, handle, path)
  if not c then return nil, p end
  local list, lerr = c:ls(p)
  if not list then return refine(c, p, lerr, "directory") end
  for _, entry in ipairs(list) do entry.type = TYPES[entry.type] or "other" end
  return list
end

function M.mkdir(ctx, handle, path, opts)
  local c, p = place(ctx, handle, path)
  if not c then return nil, p end
  if opts.parents then return c:mkdir(p, { parents = true }) end
  local made, merr = c:mkdir(p)
  if made then return true end
  if c:stat(p) then return err("already_exists", "ssh: %s already exists", path) end
  return nil, merr
end

function M.rm(ctx, handle, path, opts)
  local ok, cerr = valid(handle)
  if not ok then return nil, cerr end
  local lp, perr = resolve(handle, path)
  if not lp then return nil, perr end
  if lp == handle.root then
    return err("invalid_input", "ssh: refusing to remove the sandbox root")
  end
  local c, p = place(ctx, handle, path, true)
  if not c then return nil, p end
  local st, serr = c:stat(p, { lstat = true })
  if not st then return nil, serr end
  if st.type == "directory" and opts.recursive then   -- one round trip, not one per entry
    local r, rerr = run(c, "rm -rf -- " .. q(p), "rm")
    if not r then return nil, rerr end
    return true
  end
  local done, rerr = c:rm(p)
  if done then return true end
  if st.type == "directory" then
    return err("invalid_input", "ssh: directory %s is not empty (use recursive = true)", path)
  end
  return nil, rerr
end

function M.destroy(ctx, handle)
  local ok, cerr = valid(handle)
  if not ok then return nil, cerr end
  local c, e = client(ctx, handle)
  if not c then return nil, e end
  local r, rerr = run(c, "rm -rf -- " .. q(handle.dir), "destroy")
  if not r then return nil, rerr end
  return true
end

function M.status(ctx, handle)
  local ok, cerr = valid(handle)
  if not ok then return nil, cerr end
  local c, e = client(ctx, handle)
  if not c then return nil, e end
  local st, serr = c:stat(handle.dir .. "/env")
  if st then return "running" end
  if errors.is(serr, "not_found") then return "terminated" end
  return nil, serr
end

function M.reconnect(ctx, handle)
  local st, serr = M.status(ctx, handle)
  if not st then return nil, serr end
  if st == "terminated" then
    return err("not_found", "ssh: sandbox %s no longer exists on %s", handle.id, handle.host)
  end
  return handle
end

function M.ssh_opts(ctx, handle)
  local ok, cerr = valid(handle)
  if not ok then return nil, cerr end
  local o = conn_opts(ctx, handle)
  local argv = { "ssh", "-t" }
  if o.port ~= 22 then argv[#argv + 1] = "-p"; argv[#argv + 1] = tostring(o.port) end
  if o.key_file then argv[#argv + 1] = "-i"; argv[#argv + 1] = o.key_file end
  if o.known_hosts then
    argv[#argv + 1] = "-o"
    argv[#argv + 1] = "UserKnownHostsFile=" .. o.known_hosts
  end
  argv[#argv + 1] = (o.user and (o.user .. "@") or "") .. o.host
  argv[#argv + 1] = "cd " .. q(handle.root) .. " && exec \"$SHELL\" -l"
  local words = {}
  for i, a in ipairs(argv) do words[i] = q(a) end
  return { host = o.host, port = o.port, user = o.user, workdir = handle.root,
           key_file = o.key_file, argv = argv, command = table.concat(words, " ") }
end

return M
