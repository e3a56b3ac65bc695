-- providers/ssh.lua: sandboxes on an existing machine reached over SSH. Each sandbox is a
-- private directory <base>/<id>/ on the remote host (base: ~/.sandlot/sandboxes) holding env
-- (its create-time environment, 0600) and work/ (where commands run and file paths point); or,
-- asked for explicitly with workdir = "/", the whole host. File paths are confined to the
-- working directory: lexically (no `..` out), then on the server (SFTP realpath), so a
-- symlink inside cannot lead a file operation outside. Commands run as the SSH user, so this
-- is a working area, not an isolation boundary. Connections are shared per host and user.
-- The command lines are built with sandlot.shell.
--
-- <id>/meta.json records what list needs to rebuild the handle (id, name, labels, cwd,
-- workdir), written by create's one remote script and renamed into place last, so a
-- directory without it is a create that did not finish. list reads every sandbox's metadata
-- in one remote script and treats it as world input: a file that fails a check is skipped
-- (with a warning), never turned into a handle. gc rule (`sandlot gc --provider NAME`, or
-- M.gc): a directory without metadata whose last change is more than 10 minutes old (on the
-- remote clock) is a failed create and is removed; with opts.older_than = N, so is every sandbox
-- whose directory is older than N seconds; opts.all removes every one. A sandbox labelled
-- sandlot.keep=1 is never removed, and one whose metadata is invalid only by opts.all or
-- opts.older_than. create's `timeout` is not enforced, so nothing expires by itself.
local ssh = require("sandlot.ssh")
local shell = require("sandlot.shell")
local errors = require("sandlot.errors")
local check = require("sandlot._check")
local fs = require("sandlot.fs")
local json = require("sandlot.wire.json")
local ids = require("sandlot.id")

local M = {
  name = "ssh",
  description = "a private directory on a host reached over SSH (no isolation)",
  capabilities = { files = true, url = false, remote = true, pty = true, streams = true },
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

local ID = "^ssh%-%x+$"

local function new_id()
  return "ssh-" .. ids.hex(6)
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
  local ok, e = check.id(handle.id, ID, "ssh sandbox id", 64)
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
-- path, refusing `..` that would leave it (sandlot.fs.path, with the root as "/").
local function resolve(handle, path)
  local p, e = fs.path("/", tostring(path))
  if not p then return nil, e end
  if handle.root == "/" then return p end
  return p == "/" and handle.root or handle.root .. p
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

-- Runs a helper command (not the user's) and insists on exit 0. stdin, if given, is fed to it
-- (secrets go there, never into the command line).
local function run(c, cmd, what, stdin)
  local r, e = c:exec(cmd, { timeout = 60, stdin = stdin })
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

-- Metadata ----------------------------------------------------------------------------------
-- What create records and list reads back. The same checks run on both sides, so whatever
-- create accepts, list accepts; on the way back the file is world input (the sandbox's own
-- commands, running as the SSH user, can rewrite it).

local META, META_MAX = "meta.json", 16384
local LABEL_KEY = "^[%w][%w_.%-/:]*$"
local TEXT = "^[^%c]+$"                    -- one line of text: no control characters
local MAX_LABELS = 256

-- Returns a checked copy of labels {name = value} (values: strings; at create, numbers and
-- booleans become strings, as docker does), or nil and an invalid_input error.
local function check_labels(labels, at_create)
  if labels == nil then return {} end
  if type(labels) ~= "table" then
    return err("invalid_input", "ssh: labels must be a table of strings")
  end
  local out, n = {}, 0
  for k, v in pairs(labels) do
    n = n + 1
    if n > MAX_LABELS then
      return err("invalid_input", "ssh: at most %d labels", MAX_LABELS)
    end
    local ok, e = check.id(k, LABEL_KEY, "ssh label name", 128)
    if not ok then return nil, e end
    if at_create and (type(v) == "number" or type(v) == "boolean") then v = tostring(v) end
    if v ~= "" then
      ok, e = check.id(v, TEXT, "ssh label " .. k, 1024)
      if not ok then return nil, e end
    end
    out[k] = v
  end
  return out
end

-- The sandbox's name: nil or one line of text.
local function check_name(name)
  if name == nil then return true end
  return check.id(name, TEXT, "ssh sandbox name", 256)
end

-- Builds the handle of sandbox directory <base>/<name> from its metadata text, checking every
-- field; returns the handle, or nil and why it was refused (words of our own: never the
-- file's contents). Host, port and user come from the connection, never from the file.
local function from_meta(c, base, name, text)
  if #text > META_MAX then return nil, "its metadata is larger than " .. META_MAX .. " bytes" end
  local m = json.decode(text)
  if type(m) ~= "table" then return nil, "its metadata is not a JSON object" end
  if m.version ~= 1 then return nil, "its metadata has an unknown version" end
  if m.id ~= name then return nil, "its metadata names another sandbox" end
  if m.workdir ~= nil and m.workdir ~= "/" then return nil, "its metadata has a bad workdir" end
  local labels = check_labels(m.labels)
  if not labels then return nil, "its metadata has invalid labels" end
  if not check_name(m.name) then return nil, "its metadata has an invalid name" end
  if m.cwd ~= nil and (type(m.cwd) ~= "string" or #m.cwd > 4096) then
    return nil, "its metadata has an invalid cwd"
  end
  local dir = base .. "/" .. name
  local handle = { id = name, host = c.host, port = c.port, user = c.user, dir = dir,
                   root = m.workdir == "/" and "/" or (dir .. "/work"), cwd = m.cwd,
                   labels = labels, name = m.name }
  if not valid(handle) or (m.cwd and not resolve(handle, m.cwd)) then
    return nil, "its metadata gives an invalid handle"
  end
  return handle
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
  local labels, lerr = check_labels(opts.labels, true)
  if not labels then return nil, lerr end
  local named, nerr = check_name(opts.name)
  if not named then return nil, nerr end
  if opts.cwd and opts.cwd:find("[%z\n]") then
    return err("invalid_input", "ssh: cwd must not hold a NUL byte or a newline")
  end
  local id = new_id()
  local meta = json.encode({ version = 1, id = id, name = opts.name, purpose = opts.purpose,
                             labels = labels, cwd = opts.cwd, workdir = opts.workdir,
                             created_at = os.time() })
  if #meta > META_MAX then
    return err("invalid_input", "ssh: labels, name and purpose take %d bytes; at most %d",
               #meta, META_MAX)
  end
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local base = ctx.config.base_dir or DEFAULT_BASE
  local env = shell.exports(opts.env, "\n")
  -- One round trip: a private dir, its env file (from stdin: values may be secrets, never on
  -- a command line), work/, the metadata (renamed into place last: its presence marks a
  -- finished create), and the physical path back. A failure removes what it made.
  local script = table.concat({
    "set -e", "umask 077",
    "mkdir -p " .. q(base),
    "mkdir " .. q(base .. "/" .. id),
    "cd " .. q(base .. "/" .. id),
    "d=$(pwd -P)",                         -- physical: file paths are checked against it
    "trap 'cd / && rm -rf -- \"$d\"' EXIT", "trap 'exit 1' HUP INT TERM",
    env ~= "" and "cat > env" or ": > env",
    "mkdir -m 755 work",
    opts.cwd and ("mkdir -p work/" .. q((opts.cwd:gsub("^/+", "")))) or ":",
    "printf '%s' " .. q(meta) .. " > " .. META .. ".tmp",
    "mv -f " .. META .. ".tmp " .. META,
    "trap - EXIT HUP INT TERM",
    "printf '%s\\n' \"$d\"",
  }, "\n")
  local r, rerr = run(c, script .. "\n", "create", env ~= "" and env or nil)
  if not r then return nil, rerr end
  local dir = r.stdout:match("^(/[^\n]*)\n$")
  if not dir or not clean_abs(dir) then
    return err("bad_response", "ssh: create: the remote shell printed no path")
  end
  return { id = id, host = c.host, port = c.port, user = c.user, dir = dir,
           root = opts.workdir == "/" and "/" or (dir .. "/work"), cwd = opts.cwd,
           labels = labels, name = opts.name }
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
function Process:resize(rows, cols) return self.p:resize(rows, cols) end

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
  local p, perr = x.c:spawn(argv, { env = opts.env, cwd = x.cwd, prelude = x.prelude,
                                    pty = opts.pty and { rows = opts.pty.rows,
                                                         cols = opts.pty.cols } })
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

function M.read_file(ctx, handle, path, opts)
  local c, p = place(ctx, handle, path)
  if not c then return nil, p end
  local to = opts and opts.to
  local data, rerr = c:read_file(p, { to = to })       -- with `to`: SFTP to disk, the bytes
  if data then return data end
  return refine(c, p, rerr, "file")
end

function M.write_file(ctx, handle, path, data, opts)
  local c, p = place(ctx, handle, path)
  if not c then return nil, p end
  local mode = opts and opts.mode or tonumber("644", 8)
  local wo = { mode = mode, from = data == nil and opts and opts.from or nil }
  local n, werr = c:write_file(p, data, wo)
  if not n and errors.is(werr, "not_found") then      -- missing parents: create, then retry
    local made, merr = c:mkdir(parent_of(p), { parents = true })
    if not made then return nil, merr end
    n, werr = c:write_file(p, data, wo)
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

-- list and gc --------------------------------------------------------------------------------

local INCOMPLETE_AFTER = 600               -- s: a create is one round trip; this is a dead one

-- One remote script: the base directory's physical path and the remote clock, then for each
-- sandbox directory (a real directory named ssh-<hex>) a line "= <name>" with its metadata as
-- od hex (cut after META_MAX + 1 bytes) and a line ".", or "- <name>" when it has no metadata
-- file, or "! <name>" when the metadata is not a regular file (a FIFO would block a reader).
-- Names are checked here too, so no line of the output comes from the world unframed.
local function scan_script(base)
  return table.concat({
    "set -e",
    "[ -e " .. q(base) .. " ] || exit 0",
    "cd " .. q(base),
    "pwd -P", "date +%s",
    "for d in ssh-*; do",
    "  case $d in ssh-|ssh-*[!0-9a-f]*) continue;; esac",
    "  [ -d \"$d\" ] && [ ! -h \"$d\" ] || continue",
    "  m=\"$d/" .. META .. "\"",
    "  if [ -f \"$m\" ] && [ ! -h \"$m\" ]; then",
    "    echo \"= $d\"; head -c " .. (META_MAX + 1) .. " \"$m\" | od -An -v -tx1; echo .",
    "  elif [ -e \"$m\" ] || [ -h \"$m\" ]; then echo \"! $d\"",
    "  else echo \"- $d\"; fi",
    "done",
  }, "\n") .. "\n"
end

local function unhex(lines)
  local hex = table.concat(lines):gsub("%s", "")
  if #hex % 2 == 1 or hex:find("[^%x]") then return nil end
  return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- Reads every sandbox directory under the configured base. Returns the client, and {base,
-- now (remote clock), entries = {{name, state = "running"|"incomplete"|"corrupt", handle,
-- why}}} sorted by name; or nil, err. A base that does not exist holds no sandboxes.
local function scan(ctx)
  local c, cerr = client(ctx)
  if not c then return nil, cerr end
  local r, rerr = run(c, scan_script(ctx.config.base_dir or DEFAULT_BASE), "list")
  if not r then return nil, rerr end
  if r.truncated then return err("bad_response", "ssh: list: the listing was cut short") end
  local out = { entries = {} }
  if r.stdout == "" then return c, out end
  local lines = {}
  for line in r.stdout:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local base, now = lines[1], math.tointeger(tonumber(lines[2] or ""))
  if not clean_abs(base) or not now then
    return err("bad_response", "ssh: list: the remote shell printed no base directory")
  end
  out.base, out.now = base, now
  local i = 3
  while i <= #lines do
    local kind, name = lines[i]:match("^([=!%-]) (.*)$")
    if not kind or not check.id(name, ID, "ssh sandbox id", 64) then
      return err("bad_response", "ssh: list: unexpected output from the remote shell")
    end
    local e = { name = name, state = "incomplete" }
    i = i + 1
    if kind == "!" then
      e.state, e.why = "corrupt", "its metadata is not a regular file"
    elseif kind == "=" then
      local hex = {}
      while lines[i] and lines[i] ~= "." do hex[#hex + 1] = lines[i]; i = i + 1 end
      if lines[i] ~= "." then
        return err("bad_response", "ssh: list: the remote shell's output ended early")
      end
      i = i + 1
      local text = unhex(hex)
      if not text then return err("bad_response", "ssh: list: od printed something else") end
      e.handle, e.why = from_meta(c, base, name, text)
      e.state = e.handle and "running" or "corrupt"
    end
    out.entries[#out.entries + 1] = e
  end
  table.sort(out.entries, function(a, b) return a.name < b.name end)
  return c, out
end

-- Whether labels include every wanted pair (k = v, or k = true for "has k").
local function matches(labels, want)
  for k, v in pairs(want or {}) do
    if labels[k] == nil or (v ~= true and labels[k] ~= tostring(v)) then return false end
  end
  return true
end

---Lists the sandboxes under the configured base directory as handles (what create returns,
---labels and name included), sorted by id; with opts.labels, only those whose labels include
---every given pair (k = v, or k = true for "has k"). A directory without metadata (a create
---under way or one that failed) is left out; one whose metadata fails a check is left out
---with a warning.
---@param opts? {labels?: table<string, string|true>}
---@return table[]|nil handles, sandlot.Error? err
function M.list(ctx, opts)
  local c, s = scan(ctx)
  if not c then return nil, s end
  local out = {}
  for _, e in ipairs(s.entries) do
    if e.state == "corrupt" then
      ctx.warn(("list skips %s: %s"):format(e.name, e.why))
    elseif e.handle and matches(e.handle.labels, opts and opts.labels) then
      out[#out + 1] = e.handle
    end
  end
  return out
end

---Removes the sandbox directories the rule at the top of this file selects. Returns a report,
---one entry per directory: {id, state ("running", "incomplete" or "corrupt"), reason ("kept"
---for one it keeps), removed, dir, age (seconds since the directory last changed)}.
---@param opts? {all?: boolean, older_than?: number, dry_run?: boolean}
---@return table|nil report, sandlot.Error? err
function M.gc(ctx, opts)
  opts = opts or {}
  local c, s = scan(ctx)
  if not c then return nil, s end
  local report = {}
  if #s.entries == 0 then return report end
  local listing, lerr = c:ls(s.base)        -- lstat times, from the server
  if not listing then return nil, lerr end
  local mtime = {}
  for _, x in ipairs(listing) do mtime[x.name] = x.mtime end
  for _, e in ipairs(s.entries) do
    local age = math.type(mtime[e.name]) == "integer" and s.now - mtime[e.name] or nil
    local reason
    if e.handle and e.handle.labels["sandlot.keep"] == "1" then reason = nil
    elseif opts.all then reason = "all"
    elseif e.state == "incomplete" and age and age > INCOMPLETE_AFTER then reason = "incomplete"
    elseif opts.older_than and age and age > opts.older_than then
      reason = "older than " .. opts.older_than .. "s"
    end
    local dir = s.base .. "/" .. e.name
    local entry = { id = e.name, state = e.state, reason = reason or "kept", removed = false,
                    dir = dir, age = age }
    if reason and not opts.dry_run then
      entry.removed = run(c, "rm -rf -- " .. q(dir), "gc") ~= nil
    end
    report[#report + 1] = entry
  end
  return report
end

return M
