-- sandlot.provider: the provider behaviour. A provider is a plain table of functions taking
-- (ctx, ...); this module checks such tables (names, types, the closed set of capability
-- flags), loads them by name or file, and completes them: each missing optional operation gets
-- a fallback built on the required ones or a stub returning not_supported.
local errors = require("sandlot.errors")
local b64 = require("sandlot.wire.base64")
local check = require("sandlot._check")
local bytecode = require("sandlot.core.bytecode")
local sandlot_sleep = require("sandlot.task").sleep

local M = {}

M.REQUIRED = { "create", "destroy", "status", "exec" }
M.OPTIONAL = { "reconnect", "read_file", "write_file", "write_files", "ls", "mkdir", "rm",
               "stop", "start", "await_ready", "update", "get_url", "ssh_opts", "list", "gc",
               "spawn", "checkpoint", "checkpoints", "restore", "create_from",
               "delete_checkpoint" }
-- Native checkpoints: `checkpoint` and `checkpoints` together, and at least one way back:
-- `restore` (the sandbox itself goes back to the snapshot, in place) and/or `create_from`
-- (ctx, create_opts, native_id) -> handle (a new sandbox seeded from it); `delete_checkpoint`
-- (ctx, native_id) is optional. Without them sandlot.checkpoint takes portable ones
-- (caps.checkpoint = "portable"); caps.restore then says "in_place", "new_sandbox" or "both".
M.CHECKPOINT_OPS = { "checkpoint", "checkpoints" }
M.CHECKPOINT_WAYS = { "restore", "create_from" }
-- data fields a provider table may carry, with their types
M.FIELDS = { name = "string", description = "string", version = "string",
             capabilities = "table", config = "table", create_options = "table",
             -- top-level names of the sandbox's file tree that are the provider's own layout
             -- (mount points, system links), left out of portable checkpoints
             layout = "table",
             -- the provider's own operations, fn(ctx, handle, ...), called as
             -- sb:extension(name, ...) (sprites' services)
             extensions = "table",
             migrate_handle = "function" }   -- (handle, old_version) -> handle, on hot reload
M.STATUSES = { running = true, stopped = true, terminated = true, unknown = true }
-- The closed set of `capabilities` flags (each true or false). What each one promises:
M.CAPABILITIES = {
  files = "native file operations (not moved through exec)",
  url = "get_url reaches a port inside the sandbox",
  remote = "sandboxes live on another machine or service: destroying one is network I/O",
  background = "processes started in the sandbox may outlive the exec that started them",
  pty = "spawn takes opts.pty = {rows, cols} (a terminal) and its process has resize",
  streams = "write_file takes data = nil with opts.from (a host file, sent in chunks); " ..
            "read_file may always honour opts.to (see providers/README.md)",
}

local is_op = {}
for _, n in ipairs(M.REQUIRED) do is_op[n] = "required" end
for _, n in ipairs(M.OPTIONAL) do is_op[n] = "optional" end

local names = {}              -- operations and fields: what a misspelt name may have meant
for n in pairs(is_op) do names[#names + 1] = n end
for n in pairs(M.FIELDS) do names[#names + 1] = n end

local function suggest(name)
  return check.suggest(name, names)        -- deterministic: ties go to the first by name
end

local CAP_NAMES = {}
for n in pairs(M.CAPABILITIES) do CAP_NAMES[#CAP_NAMES + 1] = n end
table.sort(CAP_NAMES)

local TYPES = check.TYPES

---Validates a provider table and returns true, or nil and an invalid_input error whose
---`problems` lists every finding (unknown or misspelled names, missing required functions,
---wrong types) in words a provider author can act on.
---@param tbl any
---@return true|nil ok, sandlot.Error? err
function M.check(tbl)
  local problems = {}
  local function add(fmt, ...) problems[#problems + 1] = fmt:format(...) end
  if type(tbl) ~= "table" then
    add("a provider must be a table of functions, got %s", type(tbl))
  else
    for _, n in ipairs(M.REQUIRED) do
      if tbl[n] == nil then add("missing required function '%s'", n) end
    end
    local keys = {}
    for k in pairs(tbl) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local v = tbl[k]
      if type(k) ~= "string" then
        add("unexpected key %s: keys must be function or field names", tostring(k))
      elseif k:sub(1, 1) == "_" then
        -- private helpers are the author's business
      elseif is_op[k] then
        if type(v) ~= "function" then
          add("'%s' must be a function(ctx, ...), got %s", k, type(v))
        end
      elseif M.FIELDS[k] then
        if type(v) ~= M.FIELDS[k] then
          add("field '%s' must be a %s, got %s", k, M.FIELDS[k], type(v))
        end
      else
        local s = suggest(k)
        if s then
          add("unknown name '%s' (did you mean '%s'?)", k, s)
        else
          add("unknown name '%s': operations are %s, %s; fields are %s (prefix private " ..
              "helpers with '_')", k, table.concat(M.REQUIRED, " "),
              table.concat(M.OPTIONAL, " "), "name description version capabilities config " ..
              "create_options layout extensions migrate_handle")
        end
      end
    end
    if type(tbl.extensions) == "table" then
      for k, v in pairs(tbl.extensions) do
        if type(k) ~= "string" or not k:match("^[%l][%l%d_]*$") or type(v) ~= "function" then
          add("extensions.%s must be a snake_case name mapped to a function(ctx, handle, ...)",
              tostring(k))
        end
      end
    end
    local ck, ways = 0, 0
    for _, n in ipairs(M.CHECKPOINT_OPS) do if tbl[n] ~= nil then ck = ck + 1 end end
    for _, n in ipairs(M.CHECKPOINT_WAYS) do if tbl[n] ~= nil then ways = ways + 1 end end
    if (ck > 0 or ways > 0 or tbl.delete_checkpoint ~= nil)
        and (ck < #M.CHECKPOINT_OPS or ways == 0) then
      add("native checkpoints need checkpoint and checkpoints, and restore (in place) or " ..
          "create_from (a new sandbox) or both")
    end
    if type(tbl.capabilities) == "table" then
      local caps = {}
      for k in pairs(tbl.capabilities) do caps[#caps + 1] = k end
      table.sort(caps, function(a, b) return tostring(a) < tostring(b) end)
      for _, k in ipairs(caps) do
        local v = tbl.capabilities[k]
        if type(k) ~= "string" or not M.CAPABILITIES[k] then
          local s = check.suggest(k, CAP_NAMES)
          add("unknown capability '%s'%s", tostring(k), s and (" (did you mean '%s'?)"):format(s)
              or (": capabilities are " .. table.concat(CAP_NAMES, " ")))
        elseif type(v) ~= "boolean" then
          add("capabilities.%s must be true or false, got %s", k, type(v))
        end
      end
    end
    for _, field in ipairs({ "config", "create_options" }) do
      if type(tbl[field]) == "table" then
        for k, t in pairs(tbl[field]) do
          if type(k) ~= "string" or type(t) ~= "string" or not TYPES[t] then
            add("%s.%s must map an option name to a type name (string, number, integer, " ..
                "boolean, table, function or any)", field, tostring(k))
          end
        end
      end
    end
  end
  if #problems == 0 then return true end
  local who = type(tbl) == "table" and type(tbl.name) == "string" and tbl.name or "provider"
  return nil, errors.new("invalid_input", who .. ": " .. table.concat(problems, "; "),
                         { problems = problems })
end

-- Fallbacks ---------------------------------------------------------------------------------
-- Each is built for one provider table `impl` and has the provider signature (ctx, handle, ...).

local function not_supported(op)
  return function(ctx)
    return nil, errors.new("not_supported",
      ("%s does not support %s"):format(ctx and ctx.provider_name or "this provider", op),
      { retryable = false })
  end
end

-- Paths go to the shell as arguments ("$1"), never inside the script text. A relative path is
-- prefixed with ./ so a name starting with '-' is never read as an option.
local function shpath(path)
  if path:sub(1, 1) == "/" or path:sub(1, 2) == "./" then return path end
  return "./" .. path
end

local BIG = 1 << 30                       -- output cap for file transfers through exec

-- exit statuses of the scripts below, mapped to codes
local script_codes = { [2] = "not_found", [4] = "invalid_input", [5] = "already_exists",
                       [6] = "invalid_input", [7] = "permission_denied" }

local function sh(impl, ctx, handle, script, args, opts)
  local argv = { "/bin/sh", "-c", script, "sandlot" }
  for i = 1, #args do argv[#argv + 1] = args[i] end
  opts = opts or {}
  opts.max_output = opts.max_output or BIG
  local r, err = impl.exec(ctx, handle, argv, opts)
  if not r then return nil, err end
  if r.exit_code ~= 0 then
    local code = script_codes[r.exit_code] or "io_error"
    local msg = (r.stderr or ""):gsub("%s+$", "")
    if msg == "" then msg = ("%s failed (exit %s)"):format(args[1] or "command",
                                                         tostring(r.exit_code)) end
    return nil, errors.new(code, msg)
  end
  if r.truncated then
    return nil, errors.new("io_error", "output too large to move through exec")
  end
  return r
end

local WRITE = [[
p=$1
case "$p" in */*) d=${p%/*}; [ -z "$d" ] || mkdir -p -- "$d" || exit 7 ;; esac
[ -d "$p" ] && { echo "$p: is a directory" >&2; exit 4; }
base64 -d > "$p" || exit 7
[ -z "$2" ] || chmod "$2" "$p" || exit 7
]]

local READ = [[
[ -e "$1" ] || { echo "$1: no such file" >&2; exit 2; }
[ -d "$1" ] && { echo "$1: is a directory" >&2; exit 4; }
base64 < "$1" || exit 7
]]

-- one record per entry: "size rawmode-hex mtime\n" then the name and a NUL
local LS = [[
[ -e "$1" ] || { echo "$1: no such directory" >&2; exit 2; }
[ -d "$1" ] || { echo "$1: not a directory" >&2; exit 4; }
cd -- "$1" || exit 7
for f in .* *; do
  case $f in .|..) continue ;; esac
  [ -e "$f" ] || [ -L "$f" ] || continue
  stat -c '%s %f %Y' -- "$f" || continue
  printf '%s\0' "$f"
done
]]

local MKDIR = [[
if [ -e "$1" ]; then
  [ -n "$2" ] && [ -d "$1" ] && exit 0
  echo "$1: already exists" >&2; exit 5
fi
if [ -n "$2" ]; then mkdir -p -- "$1" || exit 7
else
  [ -d "$(dirname -- "$1")" ] || { echo "$1: parent does not exist" >&2; exit 2; }
  mkdir -- "$1" || exit 7
fi
]]

local RM = [[
[ -e "$1" ] || [ -L "$1" ] || { echo "$1: no such file" >&2; exit 2; }
if [ -d "$1" ] && [ ! -L "$1" ]; then
  if [ -n "$2" ]; then rm -rf -- "$1" || exit 7
  else rmdir -- "$1" 2>/dev/null || { echo "$1: directory not empty" >&2; exit 6; }; fi
else rm -f -- "$1" || exit 7; fi
]]

local function mode_arg(mode)
  if mode == nil then return "" end
  return ("%o"):format(mode)
end

local TYPE_OF = { [0x8000] = "file", [0x4000] = "directory", [0xA000] = "symlink" }

local fallback = {}

function fallback.write_file(impl)
  return function(ctx, handle, path, data, opts)
    local ok, err = sh(impl, ctx, handle, WRITE, { shpath(path), mode_arg(opts and opts.mode) },
                       { stdin = b64.encode(data) })
    if not ok then return nil, err end
    return true
  end
end

function fallback.read_file(impl)
  return function(ctx, handle, path)
    local r, err = sh(impl, ctx, handle, READ, { shpath(path) })
    if not r then return nil, err end
    local data = b64.decode(r.stdout)
    if not data then return nil, errors.new("bad_response", "malformed base64 from " .. path) end
    return data
  end
end

function fallback.ls(impl)
  return function(ctx, handle, path)
    local r, err = sh(impl, ctx, handle, LS, { shpath(path) })
    if not r then return nil, err end
    local list = {}
    for size, mode, mtime, name in r.stdout:gmatch("(%d+) (%x+) (%d+)\n([^%z]*)%z") do
      local m = tonumber(mode, 16)
      list[#list + 1] = { name = name, type = TYPE_OF[m & 0xF000] or "other",
                          size = tonumber(size), mode = m & 4095, mtime = tonumber(mtime) }
    end
    return list
  end
end

function fallback.mkdir(impl)
  return function(ctx, handle, path, opts)
    local ok, err = sh(impl, ctx, handle, MKDIR,
                       { shpath(path), (opts and opts.parents) and "p" or "" })
    if not ok then return nil, err end
    return true
  end
end

function fallback.rm(impl)
  return function(ctx, handle, path, opts)
    local ok, err = sh(impl, ctx, handle, RM,
                       { shpath(path), (opts and opts.recursive) and "r" or "" })
    if not ok then return nil, err end
    return true
  end
end

-- write_files: the provider's write_file (native or over exec), one file after another
local function write_files_seq(write_file)
  return function(ctx, handle, files)
    for i = 1, #files do
      local f = files[i]
      local ok, err = write_file(ctx, handle, f.path, f.data, { mode = f.mode })
      if not ok then return nil, errors.wrap(err, { path = f.path, index = i }) end
    end
    return true
  end
end

-- await_ready: poll status until "running" (the caller bounds it with a timeout)
local function await_by_status(status)
  return function(ctx, handle, opts)
    local deadline = os.time() + ((opts and opts.timeout) or 60)
    local delay = 0.05
    while true do
      local st, err = status(ctx, handle)
      if st == nil then return nil, err end
      if st == "running" then return true end
      if st == "terminated" then
        return nil, errors.new("not_found", "sandbox is terminated")
      end
      if os.time() >= deadline then
        return nil, errors.new("timeout", "sandbox not running after " ..
                               tostring((opts and opts.timeout) or 60) .. "s (status " ..
                               tostring(st) .. ")", { retryable = true })
      end
      local ok, serr = sandlot_sleep(delay)
      if not ok then return nil, serr end
      delay = math.min(delay * 2, 1)
    end
  end
end

-- reconnect: the handle is good when status says the sandbox still exists
local function reconnect_by_status(status)
  return function(ctx, handle)
    local st, err = status(ctx, handle)
    if st == nil then return nil, err end
    if st == "terminated" then return nil, errors.new("not_found", "sandbox is terminated") end
    return handle
  end
end

-- Completion ---------------------------------------------------------------------------------

local cache = setmetatable({}, { __mode = "k" })   -- impl table -> completed provider

---Completes a checked provider table: returns {name, impl, ops = {op = fn}, caps = {op = how}}
---where how is "native", "exec" (over the provider's exec), "write_file" (repeated),
---"status" (polled) or "not_supported". Raises when the table fails check (a broken provider
---is a bug in code, not a condition to handle).
---@param impl table
---@param name? string used in messages when the table has no name
---@return table provider
function M.complete(impl, name)
  local done = cache[impl]
  if done then return done end
  local ok, err = M.check(impl)
  if not ok then error(err, 3) end
  local p = { name = impl.name or name or "provider", impl = impl, ops = {}, caps = {} }
  for _, op in ipairs(M.REQUIRED) do
    p.ops[op], p.caps[op] = impl[op], "native"
  end
  for _, op in ipairs(M.OPTIONAL) do
    if impl[op] then p.ops[op], p.caps[op] = impl[op], "native" end
  end
  for _, op in ipairs({ "write_file", "read_file", "ls", "mkdir", "rm" }) do
    if not p.ops[op] then p.ops[op], p.caps[op] = fallback[op](impl), "exec" end
  end
  if not p.ops.write_files then
    p.ops.write_files, p.caps.write_files = write_files_seq(p.ops.write_file), "write_file"
  end
  if not p.ops.await_ready then
    p.ops.await_ready, p.caps.await_ready = await_by_status(impl.status), "status"
  end
  if not p.ops.reconnect then
    p.ops.reconnect, p.caps.reconnect = reconnect_by_status(impl.status), "status"
  end
  for _, op in ipairs(M.OPTIONAL) do
    if not p.ops[op] then p.ops[op], p.caps[op] = not_supported(op), "not_supported" end
  end
  if p.caps.checkpoint == "not_supported" then
    p.caps.checkpoint, p.caps.restore = "portable", nil
  else
    p.caps.restore = (impl.restore and impl.create_from and "both")
                     or (impl.restore and "in_place") or "new_sandbox"
  end
  p.caps.checkpoints, p.caps.create_from, p.caps.delete_checkpoint = nil, nil, nil
  for k, fn in pairs(impl.extensions or {}) do p.ops["extension." .. k] = fn end
  cache[impl] = p
  return p
end

local paths = require("sandlot._paths")
local exists = paths.exists

local file_cache = {}                     -- provider file path -> its table (loaded once)

---Tells whether a provider reference names a file rather than a module.
function M.is_file(ref)
  return type(ref) == "string" and (ref:find("/", 1, true) ~= nil or ref:match("%.lua$") ~= nil)
end

-- Runs a provider file's main chunk in a coroutine of its own, which is not a task: I/O there
-- (a provider that waits while it loads, which would stall every caller of sandlot.create)
-- fails at once and is told so with the file:line it happened at.
local function run_chunk(chunk, name, path)
  local co = coroutine.create(chunk)
  local ok, res = coroutine.resume(co, name, path)
  if ok and coroutine.status(co) == "dead" then return res end
  local where = path
  for level = 0, 60 do
    local info = debug.getinfo(co, level, "Sl")
    if not info then break end
    if info.source == "@" .. path and info.currentline > 0 then
      where = path .. ":" .. info.currentline
      break
    end
  end
  if ok or tostring(res):find("must run in a task", 1, true) then
    error(("provider %s: providers must not wait while they load (this did I/O or yielded " ..
           "at load time); do it in create, or in a function that create calls"):format(where), 0)
  end
  local msg = tostring(res)
  if msg:sub(1, #path + 1) == path .. ":" then error("provider " .. msg, 0) end
  error(("provider %s: %s"):format(where, msg), 0)
end

---Loads a provider by module name ("local" is providers/local.lua on the search path; a dotted
---name is required as is), by file path, or takes a table. Returns the completed provider.
---A name that matches nothing is nil, err{not_found}; a provider that fails check raises.
---@param spec string|table
---@return table|nil provider, sandlot.Error? err
function M.load(spec)
  if type(spec) == "table" then return M.complete(spec) end
  paths.setup()                           -- providers/ on the search path, whoever calls first
  if type(spec) ~= "string" or spec == "" then
    error("provider: a name, a file path or a provider table expected, got " .. type(spec), 2)
  end
  local impl
  if M.is_file(spec) then
    if not exists(spec) then
      return nil, errors.new("not_found", ("provider file %s does not exist"):format(spec))
    end
    impl = file_cache[spec]
    if not impl then
      local chunk, lerr = loadfile(spec)
      if not chunk then error(("provider %s: %s"):format(spec, lerr), 2) end
      impl = run_chunk(chunk, spec, spec)
      file_cache[spec] = impl
    end
  else
    local mod = spec:find(".", 1, true) and spec or ("providers." .. spec)
    impl = package.loaded[mod]           -- loaded: no search of the path on every create
    if impl == nil and not package.searchpath(mod, package.path) then
      local s = check.suggest(spec, M.known_names())
      return nil, errors.new("not_found", ("no provider named '%s' (not in the config, and " ..
        "no module %s on the search path; see SANDLOT_PATH)%s"):format(spec, mod,
        s and (" (did you mean '" .. s .. "'?)") or ""))
    end
    if impl == nil then
      local path = package.searchpath(mod, package.path)
      local chunk, lerr = bytecode.load(mod, path)      -- precompiled, when the file is unedited
      if not chunk then chunk, lerr = loadfile(path) end
      if not chunk then error(("provider %s: %s"):format(spec, lerr), 2) end
      impl = run_chunk(chunk, mod, path)
      if impl == nil then impl = true end     -- as require records a module that returned nothing
      package.loaded[mod] = impl
    end
  end
  return M.complete(impl, spec)
end

---Returns the provider names in reach, sorted: the configured ones and the modules
---providers/<name>.lua in each search directory. For "did you mean" only.
---@return string[]
function M.known_names()
  local set = {}
  local cfg = require("sandlot.config").get()
  for n in pairs(cfg and cfg.providers or {}) do set[n] = true end
  local fs = require("sandlot.core.fs")
  for _, d in ipairs(paths.dirs()) do
    local root = fs.root(d .. "/providers")
    for _, e in ipairs(root and root:readdir(".") or {}) do
      local n = e.name:match("^([%w_%-]+)%.lua$")
      if n then set[n] = true end
    end
    if root then root:close() end
  end
  local list = {}
  for n in pairs(set) do list[#list + 1] = n end
  table.sort(list)
  return list
end

local type_ok = check.is_type

---Checks a provider's config options (from the config file) against its `config` field, when
---it declares one. Returns nil, err{invalid_input} naming the file and key.
---@param p table completed provider
---@param opts table
---@param where? string config file
---@param pname string configured name
function M.check_config(p, opts, where, pname)
  local schema = p.impl.config
  if not schema then return true end
  for k, v in pairs(opts) do
    local t = schema[k]
    local key = ("providers.%s.%s"):format(pname, tostring(k))
    if not t then
      local known = {}
      for n in pairs(schema) do known[#known + 1] = n end
      table.sort(known)
      local s = check.suggest(k, known)
      return nil, errors.new("invalid_input", ("config %s: %s: unknown option for provider " ..
        "%s%s (expected one of: %s)"):format(where or "(none)", key, p.name,
        s and (" (did you mean '" .. s .. "'?)") or "", table.concat(known, ", ")),
        { file = where, key = key })
    end
    if not type_ok(v, t) then
      return nil, errors.new("invalid_input", ("config %s: %s: expected a %s, got %s")
        :format(where or "(none)", key, t, type(v)), { file = where, key = key })
    end
  end
  return true
end

return M
