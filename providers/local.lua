-- providers/local.lua: sandboxes on this machine. Each one is a private directory
-- <state>/<id>/ (state: $XDG_STATE_HOME/sandlot/local) holding sandbox.json (its settings,
-- 0600) and root/ (its file system). Commands run under bubblewrap with root/ as their `/` and
-- the host's /usr read-only (isolation "namespaces"), or directly in root/ ("none"). File
-- operations never leave root/: paths are resolved below it by sandlot.fs.
local proc = require("sandlot.proc")
local fs = require("sandlot.fs")
local errors = require("sandlot.errors")
local check = require("sandlot._check")
local ids = require("sandlot.id")
local cjson = require("cjson")

local M = {
  name = "local",
  description = "private directories on this machine, isolated with bubblewrap when available",
  capabilities = { files = true, url = true, remote = false, pty = true, streams = true },
  -- options a config entry may set: providers = {dev = {"local", isolation = "none"}}
  config = { state_dir = "string", isolation = "string", bwrap = "string" },
  -- create options beyond the standard ones
  create_options = { isolation = "string" },
}

local STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
local ISOLATIONS = { auto = true, namespaces = true, none = true }

-- host files a sandbox sees read-only in its /etc (users, name resolution, certificates)
local ETC = { "passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf",
              "gai.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
              "alternatives", "ssl", "ca-certificates", "ca-certificates.conf", "mime.types",
              "protocols", "services", "os-release" }
-- top-level directories mirrored from the host: a symlink (merged /usr) or a read-only bind
local TOP = { "bin", "sbin", "lib", "lib32", "lib64", "libx32" }
local SKELETON = { "usr", "etc", "proc", "dev", "tmp" }   -- mount points made at create
M.layout = {}                 -- what a portable checkpoint leaves out: the layout made above
for _, n in ipairs(TOP) do M.layout[#M.layout + 1] = n end
for _, n in ipairs(SKELETON) do M.layout[#M.layout + 1] = n end

-- retryable follows the code (errors.codes), as for every provider
local function err(code, fmt, ...)
  return nil, errors.new(code, fmt:format(...))
end

local function trim(s)
  return (s or ""):gsub("%s+$", "")
end

local function state_dir(ctx)
  if ctx.config.state_dir then return ctx.config.state_dir end
  local x = os.getenv("XDG_STATE_HOME")
  if not x or x == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then home = "/tmp" end
    x = home .. "/.local/state"
  end
  return x .. "/sandlot/local"
end

local function new_id() return ids.hex(6) end

local ID = "^[%w][%w_%-]*$"                -- new_id makes 12 hex digits

-- bubblewrap -------------------------------------------------------------------------------

local probes = {}          -- bwrap path -> {ok, reason}: probed once per process

local function bwrap_usable(ctx)
  local bin = ctx.config.bwrap or "bwrap"
  local p = probes[bin]
  if not p then
    local r, perr = proc.run({ bin, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                               "--proc", "/proc", "--dev", "/dev", "true" },
                             { clear_env = true, env = { PATH = STD_PATH }, timeout = 20 })
    if not r then
      p = { ok = false, reason = perr.code == "not_found" and (bin .. " is not installed")
                                 or tostring(perr) }
    elseif r.exit_code ~= 0 then
      p = { ok = false, reason = bin .. " cannot create namespaces here: " .. trim(r.stderr) }
    else
      p = { ok = true }
    end
    probes[bin] = p
  end
  return p.ok, p.reason
end

local layout                -- host's top-level dirs: {links = {{name, target}}, dirs = {...}}

local function host_layout()
  if layout then return layout end
  layout = { links = {}, dirs = {} }
  for _, name in ipairs(TOP) do
    local st = fs.lstat("/" .. name)
    if st and st.type == "symlink" then
      layout.links[#layout.links + 1] = { name, fs.readlink("/" .. name) }
    elseif st and st.type == "directory" then
      layout.dirs[#layout.dirs + 1] = name
    end
  end
  return layout
end

-- The sandbox's root/ becomes `/`, with mount points created once at create time so that ls
-- shows the same tree before and after the first command.
local function make_skeleton(rootpath, root)
  for _, d in ipairs(SKELETON) do
    local ok, e = root:mkdir(d)
    if not ok then return nil, e end
  end
  fs.chmod(rootpath .. "/tmp", tonumber("1777", 8))
  local l = host_layout()
  for _, link in ipairs(l.links) do fs.symlink(link[2], rootpath .. "/" .. link[1]) end
  for _, d in ipairs(l.dirs) do root:mkdir(d) end
  return true
end

-- No --new-session: bwrap's init and the command stay in the process group sandlot.proc
-- signals, so a timeout or kill reaches the command and SIGKILL the init, and with it the whole
-- namespace; --die-with-parent alone loses a race when bwrap is killed right after the command
-- starts. There is no terminal to protect (the TIOCSTI escape --new-session guards against):
-- sandlot.proc starts bwrap in a session of its own, with pipes for stdin, stdout and stderr.
local function bwrap_argv(ctx, rootpath, meta, cwd)
  local a = { ctx.config.bwrap or "bwrap", "--unshare-all", "--die-with-parent",
              "--cap-drop", "ALL", "--hostname", "sandlot" }
  local function add(...)
    for _, v in ipairs({ ... }) do a[#a + 1] = v end
  end
  if meta.network == "all" then add("--share-net") end
  add("--bind", rootpath, "/", "--ro-bind", "/usr", "/usr")
  for _, d in ipairs(host_layout().dirs) do add("--ro-bind", "/" .. d, "/" .. d) end
  for _, f in ipairs(ETC) do add("--ro-bind-try", "/etc/" .. f, "/etc/" .. f) end
  add("--proc", "/proc", "--dev", "/dev")
  for _, m in ipairs(meta.mounts or {}) do
    add(m.readonly and "--ro-bind" or "--bind", m.source, m.target)
  end
  add("--chdir", cwd, "--")
  return a
end

-- Sandboxes on disk --------------------------------------------------------------------------

local function paths(ctx, handle)
  if type(handle) ~= "table" then
    return err("invalid_input", "local: not a local sandbox handle (a %s)", type(handle))
  end
  local ok, iderr = check.id(handle.id, ID, "local sandbox id", 64)
  if not ok then return nil, iderr end
  local dir = state_dir(ctx) .. "/" .. handle.id
  return dir, dir .. "/root"
end

local function read_meta(dir, id)
  local text = fs.read(dir .. "/sandbox.json")
  if not text then
    return err("not_found", "local sandbox %s does not exist (destroyed, or another state " ..
               "directory?)", id)
  end
  local ok, meta = pcall(cjson.decode, text)
  if not ok or type(meta) ~= "table" or meta.id ~= id then
    return err("bad_response", "local sandbox %s: %s/sandbox.json is corrupt", id, dir)
  end
  return meta
end

local function write_meta(dir, meta)
  return fs.write(dir .. "/sandbox.json", cjson.encode(meta), tonumber("600", 8))
end

local function remove(ctx, id)
  local state <close> = fs.root(state_dir(ctx))
  if not state then return true end
  return state:rmtree(id)
end

-- Opens a live sandbox: its dir, meta and confined root. An expired one (create's `timeout`)
-- is removed here, on first use after its lifetime.
local function open(ctx, handle)
  local dir, rootpath = paths(ctx, handle)
  if not dir then return nil, rootpath end
  local meta, merr = read_meta(dir, handle.id)
  if not meta then return nil, merr end
  if meta.expires_at and os.time() >= meta.expires_at then
    remove(ctx, handle.id)
    return err("not_found", "local sandbox %s expired (timeout)", handle.id)
  end
  local root, rerr = fs.root(rootpath)
  if not root then return nil, rerr end
  return { dir = dir, rootpath = rootpath, meta = meta, root = root }
end

local function with_root(ctx, handle, fn)
  local s, e = open(ctx, handle)
  if not s then return nil, e end
  local root <close> = s.root
  return fn(root, s)
end

-- Provider functions -------------------------------------------------------------------------

local function decide_isolation(ctx, opts)
  local iso = opts.isolation or ctx.config.isolation or "auto"
  if not ISOLATIONS[iso] then
    return err("invalid_input", "local: isolation must be 'auto', 'namespaces' or 'none', got %q",
               tostring(iso))
  end
  if iso == "none" then return "none" end
  local ok, reason = bwrap_usable(ctx)
  if ok then return "namespaces" end
  if iso == "namespaces" then
    return err("not_supported", "local: isolation = 'namespaces' is unavailable: %s", reason)
  end
  if opts.network == "none" then
    return err("not_supported", "local: network = 'none' needs namespace isolation, which is " ..
               "unavailable: %s", reason)
  end
  ctx.warn(("isolation unavailable (%s): commands run unconfined on this host; set " ..
            "isolation = 'none' to accept this"):format(reason))
  return "none"
end

local function check_mounts(mounts)
  local out = {}
  for i, m in ipairs(mounts or {}) do
    if m.source:sub(1, 1) ~= "/" or m.target:sub(1, 1) ~= "/" or m.target:find("/%.%.?/")
        or m.target:find("/%.%.?$") then
      return err("invalid_input", "local: mounts[%d]: source and target must be absolute " ..
                 "paths without . or ..", i)
    end
    if not fs.stat(m.source) then
      return err("not_found", "local: mounts[%d]: %s does not exist", i, m.source)
    end
    out[i] = { source = m.source, target = m.target, readonly = m.readonly == true }
  end
  return out
end

---Creates a sandbox directory. Options: the standard ones (image, cpus and disk_mb are
---advisory and warned about; memory_mb is applied with prlimit; timeout removes the sandbox on
---first use after it) and isolation = "auto" | "namespaces" | "none".
function M.create(ctx, opts)
  local iso, ierr = decide_isolation(ctx, opts)
  if not iso then return nil, ierr end
  local network = opts.network
  if type(network) == "table" then
    return err("not_supported", "local: network allow-lists are not supported; use " ..
               "network = 'none' or 'all'")
  end
  if iso == "none" then
    if network == "none" then
      return err("not_supported", "local: network = 'none' needs isolation = 'namespaces' " ..
                 "(bubblewrap); with isolation = 'none' commands share the host's network")
    end
    if opts.mounts and #opts.mounts > 0 then
      return err("not_supported", "local: mounts need isolation = 'namespaces'")
    end
    network = "all"
  else
    network = network or "none"
  end
  if network == "none" and opts.ports and #opts.ports > 0 then
    return err("invalid_input", "local: ports need network = 'all'")
  end
  local mounts, merr = check_mounts(opts.mounts)
  if not mounts then return nil, merr end
  if opts.image then
    ctx.warn("image is ignored: commands use this host's /usr")
  end
  for _, k in ipairs({ "cpus", "disk_mb" }) do
    if opts[k] then ctx.warn(k .. " is not enforced by the local provider") end
  end

  local state = state_dir(ctx)
  local ok, e = fs.mkdir_p(state, tonumber("700", 8))
  if not ok then return nil, e end
  local id, dir
  for _ = 1, 5 do
    id = new_id()
    dir = state .. "/" .. id
    ok, e = fs.mkdir(dir, tonumber("700", 8))
    if ok or e.code ~= "already_exists" then break end
  end
  if not ok then return nil, e end
  local rootpath = dir .. "/root"
  local meta = {
    id = id, created_at = os.time(), state = "running", isolation = iso, network = network,
    env = opts.env or {}, cwd = opts.cwd or "/", labels = opts.labels or {},
    name = opts.name, purpose = opts.purpose, memory_mb = opts.memory_mb,
    ports = opts.ports or {}, mounts = mounts,
    expires_at = opts.timeout and math.ceil(os.time() + opts.timeout) or nil,
  }
  local function build()
    local mk, mkerr = fs.mkdir(rootpath, tonumber("755", 8))
    if not mk then return nil, mkerr end
    local root <close> = assert(fs.root(rootpath))
    if iso == "namespaces" then
      local sk, skerr = make_skeleton(rootpath, root)
      if not sk then return nil, skerr end
    end
    if opts.cwd then
      local c, cerr = fs.mkdir_below(root, opts.cwd)
      if not c then return nil, cerr end
    end
    return write_meta(dir, meta)
  end
  local built, berr = build()
  if not built then
    remove(ctx, id)
    return nil, berr
  end
  return { id = id }
end

local prlimit_ok        -- nil: not probed yet (whether prlimit(1) runs here)

-- What exec and spawn run: {argv (inside bwrap for namespaces, under prlimit for memory_mb),
-- cwd, env, timeout = the lifetime left, inside}, or nil, err (stopped, bad cwd).
local function command_line(ctx, handle, argv, opts)
  local s, oerr = open(ctx, handle)
  if not s then return nil, oerr end
  local root <close> = s.root
  local meta = s.meta
  if meta.state == "stopped" then
    return nil, errors.new("unavailable", ("local sandbox %s is stopped; start it first")
                                           :format(handle.id), { retryable = false })
  end
  local canon, cerr = root:resolve(opts.cwd or meta.cwd or "/")
  if not canon then return nil, cerr end
  local st = root:stat(canon)
  if not st then return err("not_found", "local: cwd %s does not exist", opts.cwd or meta.cwd) end
  if st.type ~= "directory" then
    return err("invalid_input", "local: cwd %s is not a directory", opts.cwd or meta.cwd)
  end
  local inside = meta.isolation == "namespaces"
  local env = { PATH = STD_PATH, LANG = "C.UTF-8", HOME = inside and "/" or s.rootpath }
  check.apply_env(check.apply_env(env, meta.env), opts.env)   -- false removes a name
  local full, cwd = argv, nil
  if inside then
    full = bwrap_argv(ctx, s.rootpath, meta, "/" .. canon)
    -- a pty: the command takes it as its controlling terminal in a session of its own, so
    -- Ctrl-C reaches it and not bwrap (spawn opens the pty without making it bwrap's)
    if opts.pty then for _, w in ipairs({ "setsid", "-w", "-c" }) do full[#full + 1] = w end end
    for i = 1, #argv do full[#full + 1] = argv[i] end
  else
    cwd = canon == "" and s.rootpath or (s.rootpath .. "/" .. canon)
  end
  if meta.memory_mb then
    if prlimit_ok == nil then
      prlimit_ok = (proc.run({ "prlimit", "--version" }, { timeout = 10 }) or {}).exit_code == 0
    end
    if prlimit_ok then
      local pre = { "prlimit", ("--as=%d"):format(meta.memory_mb * 1048576), "--" }
      for i = 1, #full do pre[#pre + 1] = full[i] end
      full = pre
    else
      ctx.warn("memory_mb is not enforced: prlimit (util-linux) is not installed")
    end
  end
  local lifetime = meta.expires_at and math.max(meta.expires_at - os.time(), 0.001) or nil
  return { argv = full, cwd = cwd, env = env, timeout = lifetime, inside = inside }
end

local function bwrap_failure(r)
  if r.exit_code ~= 1 or not r.stderr:match("^bwrap: ") then return nil end
  local line = trim(r.stderr:match("^[^\n]*"))
  if line:match("^bwrap: execvp ") then
    if line:find("No such file", 1, true) then return errors.new("not_found", line) end
    if line:find("Permission denied", 1, true) then
      return errors.new("permission_denied", line)
    end
  end
  if line:match("^bwrap: Can't chdir") then return errors.new("not_found", line) end
  return errors.new("unavailable", line, { retryable = false })
end

-- exec with detach = true (sandlot.background's wrapper): the command must outlive this host,
-- so bwrap runs without --die-with-parent, in a session of its own, with no pipe to us, and
-- exec returns at once. SANDLOT_DETACHED=1 tells the wrapper not to fork off again (inside
-- bwrap, a forked-off child would die with the namespace when the wrapper exits).
local function detached(line)
  local full = { "/bin/sh", "-c", 'setsid "$@" </dev/null >/dev/null 2>&1 &', "sh" }
  local drop = line.inside                -- bwrap's own flag, before the command's "--"
  for _, a in ipairs(line.argv) do
    if drop and a == "--die-with-parent" then drop = false else full[#full + 1] = a end
  end
  line.env.SANDLOT_DETACHED = "1"
  local r, rerr = proc.run(full, { cwd = line.cwd, clear_env = true, env = line.env,
                                   timeout = 30, kill_group = false })
  if not r then return nil, rerr end
  return r
end

---Runs argv in the sandbox with a clean environment (PATH, HOME, LANG) plus the sandbox's env
---and opts.env.
function M.exec(ctx, handle, argv, opts)
  local line, lerr = command_line(ctx, handle, argv, opts)
  if not line then return nil, lerr end
  if opts.detach then return detached(line) end
  local timeout = opts.timeout
  if line.timeout then timeout = timeout and math.min(timeout, line.timeout) or line.timeout end
  local r, rerr = proc.run(line.argv, {
    cwd = line.cwd, clear_env = true, env = line.env, stdin = opts.stdin, timeout = timeout,
    max_output = opts.max_output, on_stdout = opts.on_stdout, on_stderr = opts.on_stderr,
  })
  if not r then return nil, rerr end
  if line.inside then
    local berr = bwrap_failure(r)
    if berr then return nil, berr end
  end
  return r                                 -- sandlot.proc's result: the one exec shape
end

local CHUNK = 1048576

-- Copies an open file to a host path (opts.to) or from one (opts.from), a chunk at a time.
local function copy_to(f, to)
  local sink, serr = fs.sink(to)
  if not sink then return nil, serr end
  while true do
    local piece, rerr = f:read(CHUNK)
    if piece == nil then
      if rerr then sink:finish(); return nil, rerr end
      break
    end
    local ok, werr = sink(piece)
    if not ok then sink:finish(); return nil, werr end
  end
  local ok, ferr = sink:finish()
  if not ok then return nil, ferr end
  return sink.bytes
end

local function copy_from(f, from)
  local next_piece, size = fs.source(from, CHUNK)
  if not next_piece then return nil, size end
  for piece in next_piece do
    local ok, werr = f:write(piece)
    if not ok then return nil, werr end
  end
  return true
end

function M.read_file(ctx, handle, path, opts)
  return with_root(ctx, handle, function(root)
    local f <close>, ferr = root:open(path, "r")
    if not f then return nil, ferr end
    if opts and opts.to then return copy_to(f, opts.to) end
    return f:read()
  end)
end

function M.write_file(ctx, handle, path, data, opts)
  return with_root(ctx, handle, function(root)
    local parent = path:match("^(.*)/[^/]+/*$")
    if parent and parent ~= "" then
      local ok, perr = fs.mkdir_below(root, parent)
      if not ok then return nil, perr end
    end
    local mode = opts and opts.mode
    local f <close>, ferr = root:open(path, "w", mode or tonumber("644", 8))
    if not f then return nil, ferr end
    local ok, werr
    if data == nil and opts and opts.from then ok, werr = copy_from(f, opts.from)
    else ok, werr = f:write(data) end
    if not ok then return nil, werr end
    if mode then
      ok, werr = f:chmod(mode)
      if not ok then return nil, werr end
    end
    return true
  end)
end

function M.ls(ctx, handle, path)
  return with_root(ctx, handle, function(root)
    return root:readdir(path)
  end)
end

function M.mkdir(ctx, handle, path, opts)
  return with_root(ctx, handle, function(root)
    if opts.parents then return fs.mkdir_below(root, path) end
    return root:mkdir(path)
  end)
end

function M.rm(ctx, handle, path, opts)
  return with_root(ctx, handle, function(root)
    local canon, cerr = root:resolve(path, false)
    if not canon then return nil, cerr end
    if canon == "" then
      return err("invalid_input", "local: refusing to remove the sandbox root")
    end
    local st, serr = root:lstat(canon)
    if not st then return nil, serr end
    if st.type ~= "directory" then return root:unlink(canon) end
    if opts.recursive then return root:rmtree(canon) end
    return root:rmdir(canon)
  end)
end

function M.destroy(ctx, handle)
  local dir, derr = paths(ctx, handle)
  if not dir then return nil, derr end
  if not fs.lstat(dir) then return true end          -- already gone: destroy is idempotent
  local meta = read_meta(dir, handle.id)
  if not meta then
    return err("invalid_input", "local: %s is not a sandlot sandbox; not removing it", dir)
  end
  return remove(ctx, handle.id)
end

function M.status(ctx, handle)
  local dir, derr = paths(ctx, handle)
  if not dir then return nil, derr end
  local meta = read_meta(dir, handle.id)
  if not meta then return "terminated" end
  if meta.expires_at and os.time() >= meta.expires_at then return "terminated" end
  return meta.state == "stopped" and "stopped" or "running"
end

function M.reconnect(ctx, handle)
  return with_root(ctx, handle, function()
    return { id = handle.id }
  end)
end

local function set_state(ctx, handle, state)
  local s, e = open(ctx, handle)
  if not s then return nil, e end
  s.root:close()
  s.meta.state = state
  return write_meta(s.dir, s.meta)
end

---Pauses the sandbox: exec is refused until start (running commands are not touched).
function M.stop(ctx, handle)
  return set_state(ctx, handle, "stopped")
end

function M.start(ctx, handle)
  return set_state(ctx, handle, "running")
end

local UPDATABLE = { env = true, cwd = true, labels = true, name = true, purpose = true }

---Changes env (merged; false removes), cwd, labels, name or purpose.
function M.update(ctx, handle, opts)
  return with_root(ctx, handle, function(root, s)
    for k in pairs(opts) do
      if not UPDATABLE[k] then
        return err("not_supported", "local: update cannot change '%s' (only env, cwd, " ..
                   "labels, name, purpose)", tostring(k))
      end
    end
    local meta = s.meta
    if opts.env ~= nil then
      check.apply_env(meta.env, check.env(opts.env, "update", 4))
    end
    if opts.cwd ~= nil then
      local ok, cerr = fs.mkdir_below(root, opts.cwd)
      if not ok then return nil, cerr end
      meta.cwd = opts.cwd
    end
    for _, k in ipairs({ "labels", "name", "purpose" }) do
      if opts[k] ~= nil then meta[k] = opts[k] end
    end
    local ok, werr = write_meta(s.dir, meta)
    if not ok then return nil, werr end
    return { id = handle.id }
  end)
end

---Servers in a sandbox with network = "all" listen on the host's loopback.
function M.get_url(ctx, handle, port)
  return with_root(ctx, handle, function(_, s)
    if s.meta.network ~= "all" then
      return err("not_supported", "local: sandbox %s has no network (network = 'none'); " ..
                 "create it with network = 'all' to reach its ports", handle.id)
    end
    return ("http://127.0.0.1:%d"):format(port)
  end)
end

-- Processes and listing ----------------------------------------------------------------------
-- spawn prepares the command line as exec does (command_line, shared with exec).

-- a sandlot.proc handle seen through the provider process contract (providers/README.md)
local Process = {}
Process.__index = Process

function Process:write(data) return self.p:write(data) end
function Process:close_stdin() return self.p:close_stdin() end
function Process:kill(sig) return self.p:kill(sig) end
function Process:close() return self.p:close() end
function Process:resize(rows, cols) return self.p:resize(rows, cols) end

function Process:read()
  local chunk, which = self.p:read()
  if chunk == nil then return nil, which end           -- the end (nil), or nil, err
  return which, chunk
end

function Process:wait()
  return self.p:wait()                     -- sandlot.proc's result: the one exec shape
end

---Starts argv in the sandbox as exec would, with stdin, stdout and stderr as pipes (or, with
---opts.pty, a new pseudo-terminal). Output is not captured: it is queued for read (and reading
---stops above a few MiB until it is read).
function M.spawn(ctx, handle, argv, opts)
  local c, cerr = command_line(ctx, handle, argv, opts)
  if not c then return nil, cerr end
  local pty = opts.pty and { rows = opts.pty.rows, cols = opts.pty.cols, ctty = not c.inside }
  if pty then c.env.TERM = c.env.TERM or "xterm" end
  local p, perr = proc.spawn(c.argv, { cwd = c.cwd, clear_env = true, env = c.env,
                                       timeout = c.timeout, stdin = "pipe", stream = true,
                                       max_output = 0, pty = pty })
  if not p then return nil, perr end
  return setmetatable({ p = p }, Process)
end

---Lists the sandboxes of this state directory as handles {id, labels}; opts.labels keeps those
---whose labels include every given pair. Expired sandboxes are left out.
function M.list(ctx, opts)
  local want = opts and opts.labels or {}
  local state <close> = fs.root(state_dir(ctx))
  if not state then return {} end
  local entries, rerr = state:readdir(".")
  if not entries then return nil, rerr end
  local out = {}
  for _, e in ipairs(entries) do
    local meta = e.type == "directory" and #e.name <= 64 and e.name:match(ID)
                 and read_meta(state_dir(ctx) .. "/" .. e.name, e.name)
    local keep = meta and not (meta.expires_at and os.time() >= meta.expires_at)
    for k, v in pairs(want) do
      keep = keep and type(meta.labels) == "table" and meta.labels[k] == v
    end
    if keep then
      out[#out + 1] = { id = e.name, labels = meta.labels or {}, created_at = meta.created_at }
    end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

---Removes the leftover sandboxes of this state directory: those past their lifetime (create's
---timeout), with opts.older_than those created more than that many seconds ago, with opts.all
---every one (labels sandlot.keep = "1" stay). A directory without a readable sandbox.json is
---reported, never removed.
---@param opts? {all?: boolean, older_than?: number, dry_run?: boolean}
---@return table report {{id, state, reason, removed}}
function M.gc(ctx, opts)
  opts = opts or {}
  local state <close> = fs.root(state_dir(ctx))
  if not state then return {} end
  local entries, rerr = state:readdir(".")
  if not entries then return nil, rerr end
  local now, report = os.time(), {}
  for _, e in ipairs(entries) do
    if e.type == "directory" and #e.name <= 64 and e.name:match(ID) then
      local meta = read_meta(state_dir(ctx) .. "/" .. e.name, e.name)
      local reason
      if not meta then reason = nil
      elseif type(meta.labels) == "table" and meta.labels["sandlot.keep"] == "1" then reason = nil
      elseif opts.all then reason = "all"
      elseif meta.expires_at and now >= meta.expires_at then reason = "expired"
      elseif opts.older_than and now - (meta.created_at or now) > opts.older_than then
        reason = "older than " .. opts.older_than .. "s"
      end
      local entry = { id = e.name, state = meta and (meta.state or "running") or "unreadable",
                      reason = reason or "kept", removed = false }
      if reason and not opts.dry_run then entry.removed = remove(ctx, e.name) == true end
      report[#report + 1] = entry
    end
  end
  table.sort(report, function(a, b) return a.id < b.id end)
  return report
end

return M
