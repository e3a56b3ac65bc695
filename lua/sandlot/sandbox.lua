-- sandlot.sandbox: the sandbox API scripts use (create, exec, files, lifecycle) on top of any
-- provider. Owns argument checking (misuse raises), the error context every failure carries
-- (op, provider, sandbox), telemetry spans around each operation, and the serialized form of a
-- handle (to_map/from_map) that survives restarts without ever holding credentials. Two parts
-- live in modules of their own and are installed here: create's path (sandlot._create) and
-- to_map/from_map (sandlot._map).
local errors = require("sandlot.errors")
local telemetry = require("sandlot.telemetry")
local config = require("sandlot.config")
local provider = require("sandlot.provider")
local redact = require("sandlot._redact")
local check = require("sandlot._check")
local shapes = require("sandlot._shapes")
local lifetime = require("sandlot._lifetime")
local admission = require("sandlot._admission")
local plugins = require("sandlot.plugins")   -- hooks around create, destroy and exec

local M = {}

M.MAP_VERSION = 1

---A sandbox: made by sandlot.create, sandlot.get or sandlot.from_map; its methods are the
---sandbox API (sb:exec, sb:read_file, ...). Fields are read-only.
---@class sandlot.Sandbox
---@field id string the provider's own id
---@field external_id string the provider's own id (as the ledger calls it)
---@field durable_id? string sandlot's durable id (sb-...), with the ledger on
---@field provider string the configured provider name (or the provider's name)
---@field name? string the name given at create
---@field handle table the provider's handle (what to_map serializes, without secrets)
---@field warnings? string[] advisory warnings from create (options the provider ignored)
local Sandbox = { __name = "sandlot.sandbox" }
Sandbox.__index = Sandbox

-- "sandlot.sandbox(local:ID)", then the name and the last state this process saw, when known:
-- "sandlot.sandbox(docker:ID, web, stopped)".
function Sandbox.__tostring(sb)
  local extra = {}
  if type(sb.name) == "string" and sb.name ~= "" then extra[#extra + 1] = sb.name end
  local state = sb._destroyed and "destroyed" or sb._state
  if state and state ~= "active" then extra[#extra + 1] = state end
  local tail = #extra > 0 and (", " .. table.concat(extra, ", ")) or ""
  return ("sandlot.sandbox(%s:%s%s)"):format(sb.provider, sb.id, tail)
end

local function is_sandbox(v)
  return getmetatable(v) == Sandbox
end
M.is = is_sandbox

local function check_sb(sb, fname)
  if not is_sandbox(sb) then
    error(("sandlot.%s: a sandbox expected as first argument, got %s"):format(fname, type(sb)), 3)
  end
  return sb
end

local check_opts = check.opts

-- Warnings ------------------------------------------------------------------------------------

local warned = {}

-- A provider's ctx.warn: shown once per process on stderr, kept on the sandbox as sb.warnings.
local function warner(pname, into)
  return function(msg)
    into[#into + 1] = msg
    local key = pname .. "\0" .. msg
    if not warned[key] and os.getenv("SANDLOT_QUIET") ~= "1" then
      warned[key] = true
      io.stderr:write(("sandlot: %s: warning: %s\n"):format(pname, msg))
    end
  end
end

-- Providers by reference ----------------------------------------------------------------------

-- Resolves a provider reference (configured name, module name, file or table) into
-- {ref, p = completed provider, ctx}. Credentials are resolved here, on every create/from_map.
local function resolve(ref, warnings)
  local p, entry, opts, err
  if type(ref) == "table" then
    p = provider.load(ref)
    entry = { name = p.name, opts = {} }
    ref = p.name
  else
    if provider.is_file(ref) then
      entry = { name = ref, module = ref, opts = {} }
    else
      entry, err = config.entry(ref)
      if not entry then return nil, err end
    end
    p, err = provider.load(entry.module)
    if not p then return nil, err end
  end
  opts, err = config.resolve_opts(entry)
  if not opts then return nil, err end
  local adm = {}
  for k, chk in pairs(admission.KEYS) do     -- sandlot's own entry keys, not the provider's
    if opts[k] ~= nil then
      local good, want = chk(opts[k])
      if not good then
        return nil, errors.new("invalid_input", ("config %s: providers.%s.%s: expected %s")
          :format(entry.path or "(none)", entry.name, k, want), { file = entry.path })
      end
      adm[k], opts[k] = opts[k], nil
    end
  end
  local ok, cerr = provider.check_config(p, opts, entry.path, entry.name)
  if not ok then return nil, cerr end
  local ctx = {
    name = ref,                     -- the reference: configured name, module or file
    provider_name = p.name,
    config = opts,                  -- provider options from the config, secrets resolved
    telemetry = telemetry,
  }
  ctx.warn = warner(ref, warnings)
  ---ctx.progress(op, {done?, total?, elapsed?}, {what, unit?}): progress of a long operation
  ---(telemetry.progress, with the provider named); free when nothing listens.
  ctx.progress = function(op, m, meta)
    if not telemetry.active() then return end
    meta = meta or {}
    meta.provider = ref
    telemetry.progress(op, m, meta)
  end
  return { ref = ref, p = p, ctx = ctx, admission = adm }
end

local function new_sandbox(r, handle, warnings)
  if type(handle) ~= "table" or type(handle.id) ~= "string" or handle.id == "" then
    error(("provider %s: create/reconnect must return a handle table with a string id, got %s")
      :format(r.p.name, type(handle)), 3)
  end
  return setmetatable({
    id = handle.id,
    external_id = handle.id,
    provider = r.ref,
    handle = handle,
    warnings = warnings,
    _p = r.p,
    _ctx = r.ctx,
    _admission = r.admission,
  }, Sandbox)
end

-- Journal (sandlot.ledger) ------------------------------------------------------------------
-- create (sandlot._create) writes a `creating` row before the provider is called and fails if it
-- cannot; later states are best effort (the sandbox exists either way): a failed write is a
-- warning.

local ledger = require("sandlot.ledger")

local function journal(sb, state, fields)
  sb._state = state
  if not sb.durable_id then return end
  local l, err = ledger.open()
  if l then
    local ok
    ok, err = l:set_state(sb.durable_id, state, fields)
    if ok then return end
  end
  if errors.is(err, "not_found") then return end    -- made with another ledger
  sb._ctx.warn(("ledger: could not record %s %s: %s"):format(sb.durable_id, state,
                                                               tostring(err)))
end

-- Operations ----------------------------------------------------------------------------------

-- The provider's credentials as strings (secret-named config values of 6+ bytes): whatever a
-- provider or a service put in an error, they never leave this layer.
local function secrets(ctx)
  local list = ctx._secrets
  if list then return list end
  list = {}
  for k, v in pairs(ctx.config or {}) do
    if redact.is_secret(k) and type(v) == "string" and #v >= 6 then list[#list + 1] = v end
  end
  ctx._secrets = list
  return list
end

local function fail(err, sb, op)
  if not errors.is(err) then
    err = errors.new("internal", tostring(err))
  end
  return nil, errors.without(errors.wrap(err, { op = op, provider = sb.provider,
                                                sandbox = sb.id }), secrets(sb._ctx))
end

-- Re-creation on loss (create's recreate = true) ----------------------------------------------

-- The operations after which a not_found (or status "terminated") may mean the sandbox is gone.
local RECREATE_OPS = { exec = true, read_file = true, write_file = true, write_files = true,
                       ls = true, mkdir = true, rm = true, status = true, spawn = true,
                       reconnect = true, get_url = true, ssh_opts = true }

local recreate = require("sandlot._recreate")

local function call(sb, op, ...)
  if sb._destroyed and op ~= "status" and op ~= "destroy" then
    return fail(errors.new("not_found", "sandbox was destroyed" ..
      (sb._expired and (" (" .. sb._expired .. " reached)") or "")), sb, op)
  end
  lifetime.op(sb, 1)
  local pok, r, err = pcall(sb._p.ops[op], sb._ctx, sb.handle, ...)
  if pok and sb._recreate and RECREATE_OPS[op] and not sb._expired then
    local gpok, is_gone = pcall(recreate.gone, sb, op, r, err)
    if gpok and is_gone then
      local ok, rerr = recreate.run(sb, op, journal)
      if ok then pok, r, err = pcall(sb._p.ops[op], sb._ctx, sb.handle, ...)
      else r, err = nil, errors.wrap(rerr, { recreate = true }) end
    end
  end
  lifetime.op(sb, -1)
  if not pok then error(r, 0) end
  if r == nil then
    if err == nil then err = errors.new("internal", op .. " returned nothing") end
    return fail(err, sb, op)
  end
  return r
end

local function span(sb, op, meta, fn, ...)
  if not telemetry.active() then return fn(sb, op, ...) end
  meta.provider, meta.sandbox = sb.provider, sb.id
  return telemetry.span(op, meta, fn, sb, op, ...)
end

local check_path = check.path

-- The error (invalid_input, with the sandbox's context) when an absolute path climbs above
-- the root. "/" is the sandbox's root on every provider; a relative path's base is the
-- provider's (local: the root; docker: the working directory), so the provider itself refuses
-- a relative path that climbs out (providers/README.md, "Paths").
local function escape_error(sb, op, path, what)
  if path:byte(1) ~= 47 then return nil end                  -- not "/..."
  local ok, err = check.inside(path, what)
  if ok then return nil end
  return select(2, fail(err, sb, op))
end

---Runs a command in the sandbox. A non-zero exit is a result, not an error.
---@param sb sandlot.Sandbox
---@param cmd string|string[] argv list (no shell) or a string run by /bin/sh -c
---@param opts? table env, cwd, stdin (string|writer), timeout (s), max_output (bytes per
---  stream), on_stdout/on_stderr (chunk callbacks)
---@return table|nil result {exit_code, signal, stdout, stderr, timed_out, truncated, duration}
---@return sandlot.Error? err not_found (no such binary or cwd; sandbox gone), unavailable, ...
function M.exec(sb, cmd, opts)
  check_sb(sb, "exec")
  local argv = check.argv(cmd, "exec")
  opts = check_opts(opts, shapes.EXEC_OPTS, "exec")
  check.env(opts.env, "exec")
  if opts.cwd ~= nil then
    check_path(opts.cwd, "exec", 2, "opts.cwd")
    local eerr = escape_error(sb, "exec", opts.cwd, "opts.cwd")
    if eerr then return nil, eerr end
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local meta = {}                         -- redacting the command line is telemetry's cost only
  if telemetry.active() then
    meta.command = redact.command(type(cmd) == "string" and cmd or argv)
  end
  local r, err = span(sb, "exec", meta, call, argv, o)
  if not r then return nil, err end
  r = shapes.exec_result(sb._p.name, r)
  plugins.after_exec(sb, r, type(cmd) == "string" and cmd or argv)            -- plugins
  return r
end

local transfer = require("sandlot._transfer")

---Reads a whole file from the sandbox; with opts.to, into that host file instead (streamed
---where the provider can, so a large file never sits in memory; written to a temporary file
---beside it and renamed when complete, so a failure leaves no partial file).
---@param opts? {to?: string}
---@return string|integer|nil data the data, or with opts.to the bytes written
---@return sandlot.Error? err not_found, invalid_input (a directory, or a path leaving the
---  sandbox), io_error (opts.to cannot be written)
function M.read_file(sb, path, opts)
  check_sb(sb, "read_file")
  check_path(path, "read_file")
  opts = check_opts(opts, { to = "string" }, "read_file")
  local eerr = escape_error(sb, "read_file", path)
  if eerr then return nil, eerr end
  if opts.to == nil then return span(sb, "read_file", { path = path }, call, path) end
  return span(sb, "read_file", { path = path, to = true }, function()
    return transfer.read_to(function(op, ...) return call(sb, op, ...) end, path, opts.to)
  end)
end

local check_mode = check.mode

---Writes a file in the sandbox (binary-safe), creating missing parent directories. With data
---nil and opts.from, the host file `from` is sent instead (in chunks on a provider with
---capabilities.streams; read once into memory on the others).
---@param data string|nil
---@param opts? {mode?: integer|string, from?: string}
---@return true|nil ok, sandlot.Error? err
function M.write_file(sb, path, data, opts)
  check_sb(sb, "write_file")
  check_path(path, "write_file")
  local eerr = escape_error(sb, "write_file", path)
  if eerr then return nil, eerr end
  opts = check_opts(opts, { mode = true, from = "string" }, "write_file")
  if opts.from ~= nil and data ~= nil then
    error("write_file: data or opts.from, not both", 2)
  end
  if opts.from == nil and type(data) ~= "string" then
    error("write_file: data must be a string (or nil with opts.from)", 2)
  end
  local o = { mode = check_mode(opts.mode, "write_file") }
  if opts.from ~= nil then
    local a, aerr = transfer.write_args(sb._p.impl.capabilities, opts.from, o)
    if not a then return fail(aerr, sb, "write_file") end
    if a.size > 1048576 then
      sb._ctx.progress("write_file", { total = a.size },
                       { what = "writing " .. path, unit = "bytes" })
    end
    return span(sb, "write_file", { path = path, size = a.size }, call, path, a.data, a.opts)
  end
  if #data > 1048576 then                 -- shown on a terminal until the span ends
    sb._ctx.progress("write_file", { total = #data },
                     { what = "writing " .. path, unit = "bytes" })
  end
  return span(sb, "write_file", { path = path, size = #data }, call, path, data, o)
end

---Writes several files: {{path, data}, ...} or {{path = , data = , mode = }, ...}.
---@return true|nil ok, sandlot.Error? err the first failure, with `path` and `index`
function M.write_files(sb, files)
  check_sb(sb, "write_files")
  if type(files) ~= "table" then error("write_files: a list of {path, data} expected", 2) end
  local list = {}
  for i, f in ipairs(files) do
    if type(f) ~= "table" then error(("write_files: files[%d] must be a table"):format(i), 2) end
    local path, data = f.path or f[1], f.data or f[2]
    if type(path) ~= "string" or path == "" or type(data) ~= "string" then
      error(("write_files: files[%d] must be {path, data} with strings"):format(i), 2)
    end
    list[i] = { path = path, data = data, mode = check_mode(f.mode, "write_files") }
  end
  for i, f in ipairs(list) do
    local eerr = escape_error(sb, "write_files", f.path)
    if eerr then return nil, errors.wrap(eerr, { path = f.path, index = i }) end
  end
  return span(sb, "write_files", { count = #list, path = list[1] and list[1].path }, call, list)
end

---Lists a directory: entries {name, type = "file"|"directory"|"symlink"|"other", size, mode,
---mtime}, sorted by name.
---@return table[]|nil entries, sandlot.Error? err not_found, invalid_input (not a directory)
function M.ls(sb, path)
  check_sb(sb, "ls")
  check_path(path or ".", "ls")
  local eerr = escape_error(sb, "ls", path or ".")
  if eerr then return nil, eerr end
  local list, err = span(sb, "ls", { path = path or "." }, call, path or ".")
  if not list then return nil, err end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

---Creates a directory.
---@param opts? {parents?: boolean} parents: create missing parents, and succeed if it exists
---@return true|nil ok, sandlot.Error? err already_exists, not_found (missing parent)
function M.mkdir(sb, path, opts)
  check_sb(sb, "mkdir")
  check_path(path, "mkdir")
  local eerr = escape_error(sb, "mkdir", path)
  if eerr then return nil, eerr end
  opts = check_opts(opts, { parents = "boolean" }, "mkdir")
  return span(sb, "mkdir", { path = path }, call, path, { parents = opts.parents == true })
end

---Removes a file, an empty directory, or (recursive) a directory tree.
---@param opts? {recursive?: boolean}
---@return true|nil ok, sandlot.Error? err not_found, invalid_input (not empty; the root)
function M.rm(sb, path, opts)
  check_sb(sb, "rm")
  check_path(path, "rm")
  local eerr = escape_error(sb, "rm", path)
  if eerr then return nil, eerr end
  opts = check_opts(opts, { recursive = "boolean" }, "rm")
  return span(sb, "rm", { path = path }, call, path, { recursive = opts.recursive == true })
end

local function do_destroy(sb, op)
  if sb._destroyed then return true end
  if sb._peers then require("sandlot.replicate")._sandbox_gone(sb) end   -- replicas first
  local ok, err = call(sb, op)
  if not ok then
    if errors.is(err, "not_found") then ok = true else return nil, err end
  end
  sb._destroyed = true
  lifetime.unwatch(sb)
  journal(sb, "destroyed", sb._expired and { note = sb._expired } or nil)
  return ok
end

---Destroys the sandbox. Idempotent: destroying a destroyed (or vanished) sandbox is true.
---@return true|nil ok, sandlot.Error? err
function M.destroy(sb)
  check_sb(sb, "destroy")
  if not sb._destroyed then                                                    -- plugins: veto
    local ok, verr = plugins.before_destroy(sb)
    if not ok then return fail(verr, sb, "destroy") end
  end
  return span(sb, "destroy", {}, do_destroy)
end

local function do_status(sb, op)
  if sb._destroyed then return "terminated" end
  local st, err = call(sb, op)
  if st == nil then return nil, err end
  if not provider.STATUSES[st] then st = "unknown" end
  return st
end

---Returns "running" | "stopped" | "terminated" | "unknown".
---@return string|nil status, sandlot.Error? err
function M.status(sb)
  check_sb(sb, "status")
  return span(sb, "status", {}, do_status)
end

local function do_reconnect(sb, op)
  local h, err = call(sb, op)
  if not h then return nil, err end
  if type(h) == "table" then
    if h.id ~= sb.id then
      error(("provider %s: reconnect returned a handle for another sandbox"):format(sb._p.name))
    end
    sb.handle = h
  end
  return sb
end

---Verifies that the sandbox still exists (after from_map, say) and refreshes its handle.
---@return sandlot.Sandbox|nil sb, sandlot.Error? err not_found when it is gone
function M.reconnect(sb)
  check_sb(sb, "reconnect")
  return span(sb, "reconnect", {}, do_reconnect)
end

---Pauses the sandbox (its files stay; exec fails until start). The ledger records it as
---stopped even when the provider call fails.
function M.stop(sb)
  check_sb(sb, "stop")
  local r, err = span(sb, "stop", {}, call)
  journal(sb, "stopped", err and { error = err } or nil)
  return r, err
end

---Resumes a stopped sandbox.
function M.start(sb)
  check_sb(sb, "start")
  local r, err = span(sb, "start", {}, call)
  if r then journal(sb, "active") end
  return r, err
end

---Waits until the sandbox is running.
---@param opts? {timeout?: number} seconds (default 60)
---@return true|nil ok, sandlot.Error? err timeout, not_found
function M.await_ready(sb, opts)
  check_sb(sb, "await_ready")
  opts = check_opts(opts, { timeout = shapes.seconds }, "await_ready")
  return span(sb, "await_ready", {}, call, { timeout = opts.timeout })
end

---Changes settings of a live sandbox (which ones depends on the provider; local: env, cwd,
---labels, name, purpose).
---@return sandlot.Sandbox|nil sb, sandlot.Error? err not_supported, invalid_input
function M.update(sb, opts)
  check_sb(sb, "update")
  if type(opts) ~= "table" then error("update: opts must be a table", 2) end
  check.env(opts.env, "update")
  local r, err = span(sb, "update", {}, call, opts)
  if not r then return nil, err end
  if type(r) == "table" and r.id == sb.id then sb.handle = r end
  return sb
end

---Returns a URL reaching `port` inside the sandbox.
---@param port integer
---@return string|nil url, sandlot.Error? err not_supported
function M.get_url(sb, port)
  check_sb(sb, "get_url")
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    error("get_url: port must be an integer in 1..65535", 2)
  end
  return span(sb, "get_url", { port = port }, call, port)
end

---Calls one of the provider's own operations (its `extensions` table; sprites' services),
---with the sandbox layer's error context and a telemetry span ("extension.<name>").
---@param sb sandlot.Sandbox
---@param name string
---@return any|nil value, sandlot.Error? err not_supported when the provider has no such one
function M.extension(sb, name, ...)
  check_sb(sb, "extension")
  if type(name) ~= "string" then error("extension: name must be a string", 2) end
  local op = "extension." .. name
  if not sb._p.ops[op] then
    return fail(errors.new("not_supported", ("%s has no extension %q"):format(
      tostring(sb._p.name), name), { retryable = false }), sb, op)
  end
  return span(sb, op, {}, call, ...)
end

---Returns options for reaching the sandbox over SSH (providers that offer it).
function M.ssh_opts(sb)
  check_sb(sb, "ssh_opts")
  return span(sb, "ssh_opts", {}, call)
end

-- Closing ------------------------------------------------------------------------------------

local sched = require("sandlot.core.sched")
local task = require("sandlot.task")

---Seconds a destroy queued by close may take before it is abandoned with a warning;
---$SANDLOT_CLOSE_TIMEOUT overrides it.
M.CLOSE_TIMEOUT = 60

local function close_timeout()
  local v = tonumber(os.getenv("SANDLOT_CLOSE_TIMEOUT") or "")
  if v and v > 0 then return v end
  return M.CLOSE_TIMEOUT
end

local function close_warning(sb, err)
  io.stderr:write(("sandlot: warning: destroying sandlot.sandbox(%s:%s) on close: %s\n")
    :format(sb.provider, sb.id, tostring(err)))
end

-- The destroy of a close that could not wait, as a cleanup task of its own: the script's
-- failure or Ctrl-C does not cancel it, the host waits for it before it exits, and it is
-- bounded by close_timeout().
local function queue_destroy(sb)
  sb._closing = sched.cleanup(function()
    local ok, res, err = pcall(task.timeout, close_timeout(), M.destroy, sb)
    if not ok then err = res end
    if not (ok and res) then close_warning(sb, err) end
  end)
end

local function is_cancel(err)
  return errors.is(err, "cancelled") or errors.is(err, "timeout") and sched.cancelled() ~= nil
end

---`local sb <close> = sandlot.create{...}`: closing a sandbox destroys it, on every way out
---of the scope. Where the destroy cannot wait here (error unwinding, a coroutine.close, a
---metamethod) or the task is being cancelled or timed out, the destroy runs as a cleanup task
---of its own that the host waits for. Failures are warnings.
function M.close(sb)
  check_sb(sb, "close")
  if sb._destroyed or sb._closing then return true end
  if not sched.can_wait() then            -- unwinding an error, cancelled, in a metamethod
    queue_destroy(sb)
    return true
  end
  local ok, err = M.destroy(sb)
  if not ok then
    if is_cancel(err) then queue_destroy(sb) else close_warning(sb, err) end
  end
  return true
end

Sandbox.__close = function(sb) M.close(sb) end

-- Create (sandlot._create) and serialization (sandlot._map) --------------------------------

require("sandlot._create").install(M, { resolve = resolve, new_sandbox = new_sandbox,
                                        journal = journal, secrets = secrets })
require("sandlot._map").install(M, { check_sb = check_sb, resolve = resolve,
                                     new_sandbox = new_sandbox })

-- By durable id (the ledger): sandlot._byid --------------------------------------------------

---Reconnects to a sandbox by its durable id (sandlot._byid.get has the whole contract).
---@param id string
---@param opts? {reconnect?: boolean, take?: boolean}
---@return sandlot.Sandbox|nil sb, sandlot.Error? err not_found, permission_denied, ...
function M.get(id, opts) return require("sandlot._byid").get(id, opts) end

---Lists the ledger's records, newest first (sandlot._byid.list).
function M.list(filter) return require("sandlot._byid").list(filter) end

---The ledger, or not_supported when it is off (the CLI).
function M._ledger(op) return require("sandlot._byid").open_ledger(op) end

-- Capabilities --------------------------------------------------------------------------------

---Tells how each operation is done for a sandbox (or a provider reference): "native",
---"exec" (file operations through the provider's exec, base64 over the shell), "write_file"
---(write_files as repeated write_file), "status" (await_ready and reconnect by polling
---status) or "not_supported".
---@param v sandlot.Sandbox|string|table
---@return table<string, string>|nil caps, sandlot.Error? err
function M.caps(v)
  local p
  if is_sandbox(v) then
    p = v._p
  else
    local ref, err = config.select_known(v)
    if not ref then return nil, err end
    local entry
    if type(ref) == "string" and not provider.is_file(ref) then
      entry, err = config.entry(ref)
      if not entry then return nil, err end
      ref = entry.module
    end
    p, err = provider.load(ref)
    if not p then return nil, err end
  end
  local out = {}
  for k, how in pairs(p.caps) do out[k] = how end
  return out
end

-- Processes and provider contexts ----------------------------------------------------------

local SPAWN_OPTS = { env = "table", cwd = "string", pty = "table" }

---Starts a command in the sandbox and returns a live process: p:write(data), p:close_stdin(),
---p:read([timeout]) -> "stdout"|"stderr", data (nil at the end of both streams),
---p:wait([timeout]) -> {exit_code, signal, timed_out, duration}, p:kill([signal]), p:close().
---Use `local p <close> = ...`: closing (or collecting) the process kills what still runs.
---With opts.pty = {rows, cols} the command runs on a terminal of that size (where the provider
---has capabilities.pty): output is one stream ("stdout"), p:write types at the terminal
---(Ctrl-C is "\3") and p:resize(rows, cols) changes the size.
---@param sb sandlot.Sandbox
---@param cmd string|string[] argv list (no shell) or a string run by /bin/sh -c
---@param opts? {env?: table, cwd?: string, background?: boolean, pty?: {rows: integer,
---  cols: integer}} background: a durable process (sandlot.background: output kept in the
---  ledger and a log in the sandbox; reattachable)
---@return table|nil process, sandlot.Error? err not_supported (the provider has no spawn, or
---  no pty), not_found (no such binary or cwd; sandbox gone), unavailable, ...
function M.spawn(sb, cmd, opts)
  check_sb(sb, "spawn")
  if type(opts) == "table" and opts.background ~= nil then     -- durable: sandlot.background
    return require("sandlot.background").spawn(sb, cmd, opts)
  end
  local argv = check.argv(cmd, "spawn")
  opts = check_opts(opts, SPAWN_OPTS, "spawn")
  check.env(opts.env, "spawn")
  local pty = opts.pty
  if pty ~= nil then
    if pty.ctty ~= nil then error("spawn: unknown opts.pty field ctty (rows, cols)", 2) end
    require("sandlot.proc").pty_size(pty, "spawn")
    local caps = sb._p.impl.capabilities
    if not (type(caps) == "table" and caps.pty) then
      return fail(errors.new("not_supported", ("provider %s cannot give a process a terminal " ..
                             "(no capabilities.pty)"):format(sb._p.name)), sb, "spawn")
    end
    pty = { rows = pty.rows, cols = pty.cols }
  end
  if opts.cwd ~= nil then
    check_path(opts.cwd, "spawn", 2, "opts.cwd")
    local eerr = escape_error(sb, "spawn", opts.cwd, "opts.cwd")
    if eerr then return nil, eerr end
  end
  local meta = {}
  if telemetry.active() then
    meta.command = redact.command(type(cmd) == "string" and cmd or argv)
  end
  local p, err = span(sb, "spawn", meta, call, argv,
                      { env = opts.env, cwd = opts.cwd, pty = pty })
  if not p then return nil, err end
  local proc = require("sandlot._process").wrap(p, {
    provider = sb.provider, sandbox = sb.id, provider_name = sb._p.name, pty = pty ~= nil,
    fail = function(e, op) return fail(e, sb, "spawn." .. op) end,   -- the one context rule
  })
  lifetime.process(sb, proc)               -- a running process keeps the sandbox from idling
  return proc
end
Sandbox.spawn = M.spawn

---Resolves a provider reference (configured name, module, file or table) the way create does
---and returns {ref, p = completed provider, ctx}, for callers of provider-wide operations
---(list, gc) that have no sandbox. Not a public API.
---@param ref string|table
---@param warnings? string[] collects the provider's warnings
---@return table|nil resolved, sandlot.Error? err
function M._context(ref, warnings)
  return resolve(ref, warnings or {})
end

-- Checkpoints (sandlot.checkpoint) ----------------------------------------------------------

---Takes a checkpoint: of the sandbox's working area (kind "portable"), which
---sandlot.create(provider, {from = checkpoint}) restores into a new sandbox of any provider;
---or, where the provider has its own (caps.checkpoint = "native"), a native one of the whole
---sandbox, which sandlot.checkpoint.restore(sb, ck) puts back in place (caps.restore
---"in_place": sprites) or sandlot.create(provider, {from = ck}) makes a new sandbox of the
---same provider from (caps.restore "new_sandbox": docker, e2b, daytona, vercel).
---opts.kind = "portable" takes a portable one anyway.
---@param opts? {name?: string, kind?: "native"|"portable"}
---@return table|nil checkpoint {id, name, provider, sandbox, kind, created_at, size, sha256}
---  (native: native_id instead of size and sha256), sandlot.Error? err
function M.checkpoint(sb, opts)
  check_sb(sb, "checkpoint")
  return span(sb, "checkpoint", {}, function(s)
    return require("sandlot.checkpoint").take(s, opts)
  end)
end

---Lists the checkpoints taken of sb (all of them without sb), newest first.
---@param sb? sandlot.Sandbox
---@return table[]|nil checkpoints, sandlot.Error? err
function M.checkpoints(sb)
  if sb ~= nil then check_sb(sb, "checkpoints") end
  return require("sandlot.checkpoint").list(sb)
end

---Calls the provider's `op` with the sandbox layer's error context, without the public
---option checks (sandlot.background's wrapper: exec with detach). Not a public API.
function M._call(sb, op, ...)
  return call(sb, op, ...)
end

M.Sandbox = Sandbox

-- methods: sb:exec(...) is sandlot.exec(sb, ...)
for _, op in ipairs({ "exec", "read_file", "write_file", "write_files", "ls", "mkdir", "rm",
                      "destroy", "status", "reconnect", "stop", "start", "await_ready",
                      "update", "get_url", "ssh_opts", "close", "to_map", "checkpoint",
                      "extension" }) do
  Sandbox[op] = M[op]
end
Sandbox.caps = M.caps

return M
