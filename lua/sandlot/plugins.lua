-- sandlot.plugins: isolated plugins. Finds plugins (plugins/<name>.lua or plugins/<name>/init.lua)
-- on the plugin path, loads each into its own capped lua_State (sandlot.core.plugin), runs the
-- hooks the sandbox API calls (before_create, after_create, before_destroy, after_exec,
-- on_event) in priority order, contains faults (breaker), and hot-reloads: a new version goes
-- into a fresh state, `state` is migrated, past versions are kept for rollback.
local core = require("sandlot.core.plugin")
local errors = require("sandlot.errors")
local host = require("sandlot._plugin_host")
local telemetry = require("sandlot.telemetry")
local timer = require("sandlot.core.timer")

local M = {}

M.HOOKS = { "before_create", "after_create", "before_destroy", "after_exec", "on_event" }
M.MAX_VERSIONS = 5
M.DEBOUNCE = 0.15

local DEFAULTS = { memory = 32 * 1024 * 1024, instructions = 1000000, wall_ms = 1000 }

local recs = {}              -- name -> record
local by_hook = {}           -- hook -> records having it, in priority order
local loaded = false
local watches = {}           -- dir -> fswatch handle (when watching)
local in_event = false       -- an on_event dispatch is running: nested events are not sent

M.state_dir = nil            -- where versions and status persist (nil: $XDG_STATE_HOME/...)

local function state_base()
  if M.state_dir then return M.state_dir end
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.local/state"
  end
  return base .. "/sandlot/plugins"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, data)
  local fs = require("sandlot.fs")
  fs.mkdir_p((path:match("^(.*)/[^/]*$")))
  local f = io.open(path .. ".tmp", "wb")
  if not f then return false end
  f:write(data)
  f:close()
  return os.rename(path .. ".tmp", path)
end

-- FNV-1a, 32 bits: names versions of a plugin's source (content addressing, not security)
local function hash8(s)
  local h = 2166136261
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff
  end
  return ("%08x"):format(h)
end

-- Persisted status: {name = {status = "failed"|"disabled"|nil, pin = version id|nil}}
local function persisted()
  local base = state_base()
  local s = base and read_file(base .. "/status.json")
  local ok, t = pcall(function() return require("sandlot.wire.json").decode(s) end)
  return (s and ok and type(t) == "table") and t or {}
end

local function persist(name, fields)
  local base = state_base()
  if not base then return end
  local t = persisted()
  local e = t[name] or {}
  for k, v in pairs(fields) do
    if v == false then e[k] = nil else e[k] = v end
  end
  t[name] = next(e) and e or nil
  write_file(base .. "/status.json", require("sandlot.wire.json").encode(t))
end

---Returns the directories searched for plugins, first match wins: $SANDLOT_PLUGIN_PATH
---(colon-separated), the config's plugins.path, then $XDG_CONFIG_HOME/sandlot/plugins.
---@return string[]
function M.dirs()
  local dirs = {}
  for d in (os.getenv("SANDLOT_PLUGIN_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  local cfg = require("sandlot.config").get()
  local pc = cfg and cfg.plugins or {}
  local p = pc.path
  if type(p) == "string" then p = { p } end
  for _, d in ipairs(p or {}) do dirs[#dirs + 1] = d end
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    local home = os.getenv("HOME")
    xdg = home and (home .. "/.config")
  end
  if xdg then dirs[#dirs + 1] = xdg .. "/sandlot/plugins" end
  return dirs
end

local function plugin_config()
  local cfg = require("sandlot.config").get()
  return cfg and cfg.plugins or {}
end

-- The shipped plugins (<sandlot tree>/plugins) load only when the config names them.
local function shipped_dir()
  local root = require("sandlot._paths").root()
  return root and (root .. "/plugins")
end

local function find_in(dir, name)
  if read_file(dir .. "/" .. name .. ".lua") then return dir .. "/" .. name .. ".lua", dir end
  if read_file(dir .. "/" .. name .. "/init.lua") then
    return dir .. "/" .. name .. "/init.lua", dir .. "/" .. name
  end
  return nil
end

local function scan(dir)
  local fs = require("sandlot.core.fs")
  local root = fs.root(dir)
  local names = {}
  for _, e in ipairs(root and root:readdir(".") or {}) do
    local n = e.name:match("^([%w_%-]+)%.lua$")
    if n then names[#names + 1] = n
    elseif e.type == "directory" and e.name:match("^[%w_%-]+$")
        and read_file(dir .. "/" .. e.name .. "/init.lua") then
      names[#names + 1] = e.name
    end
  end
  if root then root:close() end
  table.sort(names)
  return names
end

local function sort_hooks()
  by_hook = {}
  local list = {}
  for _, rec in pairs(recs) do list[#list + 1] = rec end
  table.sort(list, function(a, b)
    if a.priority ~= b.priority then return a.priority < b.priority end
    return a.name < b.name
  end)
  for _, h in ipairs(M.HOOKS) do
    local l = {}
    for _, rec in ipairs(list) do
      if rec.desc and rec.desc[h] == "function" then l[#l + 1] = rec end
    end
    by_hook[h] = l
  end
  if #by_hook.on_event > 0 then
    if not telemetry._plugins_attached then
      telemetry._plugins_attached = true
      telemetry.attach("sandlot.plugins", { { "*", "*", "*" } }, function(e, m, meta)
        M.on_event(e, m, meta)
      end)
    end
  elseif telemetry._plugins_attached then
    telemetry._plugins_attached = nil
    telemetry.detach("sandlot.plugins")
  end
end

-- Builds a fresh state for rec and loads src into it; returns st, desc | nil, err.
local function build(rec, src)
  local st, err = core.new({ name = rec.name, memory = rec.limits.memory,
                             instructions = rec.limits.instructions,
                             wall_ms = rec.limits.wall_ms, host = host.names(rec.grants) })
  if not st then return nil, err end
  local cs, cerr = host.drive(rec, st, st:call("set_config", "config", rec.conf.config or {}))
  if cs ~= "ok" then
    st:close()
    return nil, cerr
  end
  local status, desc = host.drive(rec, st, st:load(src, "@" .. rec.path))
  if status ~= "ok" then
    st:close()
    return nil, desc
  end
  if type(desc.name) ~= "string" or desc.name ~= rec.name then
    st:close()
    return nil, errors.new("invalid_input", ("plugin %s: its table's name is %s, not '%s'")
      :format(rec.path, tostring(desc.name), rec.name))
  end
  if desc.version == nil then desc.version = "0" end
  return st, desc
end

local function call_state(rec, st, fname, what, ...)
  return host.drive(rec, st, st:call(fname, what, ...))
end

-- Waits (bounded) for rec's calls in flight on its current state to finish.
local function drain(rec, seconds)
  if rec.inflight == 0 or not require("sandlot.task").current() then return end
  local deadline = timer.now() + seconds * 1e9
  while rec.inflight > 0 and timer.now() < deadline do require("sandlot.task").sleep(0.005) end
end

-- Swaps rec onto a new version: builds it, migrates a copy of the old state, then switches.
-- On any failure the old version keeps running. Returns true | nil, err.
local function install(rec, src, opts)
  opts = opts or {}
  local t0 = timer.now()
  local st, desc = build(rec, src)
  if not st then
    rec.reload_error = desc
    if rec.st then
      io.stderr:write(("sandlot: warning: plugin %s: reload failed, version %s keeps " ..
        "running: %s\n"):format(rec.name, rec.version, tostring(desc.message or desc)))
    end
    return nil, desc
  end
  local id = tostring(desc.version) .. "+" .. hash8(src)
  if rec.st then
    drain(rec, 5)
    local s, old = call_state(rec, rec.st, "get_state", "migrate")
    if s ~= "ok" then
      st:close()
      return nil, old
    end
    local ms, merr = call_state(rec, st, "migrate", "migrate", old, rec.version, desc.version)
    if ms ~= "ok" then
      st:close()
      rec.reload_error = merr
      host.fault(rec, merr)
      return nil, merr
    end
    rec.st:close()
  end
  rec.st, rec.desc, rec.version, rec.id, rec.src = st, desc, desc.version, id, src
  rec.priority = tonumber(rec.conf.priority) or tonumber(desc.priority) or 50
  rec.reload_error = nil
  rec.reload_ns = timer.now() - t0
  local seen = false
  for _, v in ipairs(rec.versions) do if v.id == id then seen = true end end
  if not seen then
    rec.versions[#rec.versions + 1] = { id = id, version = desc.version, src = src,
                                        time = os.time() }
    while #rec.versions > M.MAX_VERSIONS do table.remove(rec.versions, 1) end
    local base = state_base()
    if base and not opts.no_store then
      write_file(base .. "/" .. rec.name .. "/" .. id .. ".lua", src)
    end
  end
  sort_hooks()
  return true
end

local function new_record(name, path, dir)
  local pc = plugin_config()
  local conf = type(pc[name]) == "table" and pc[name] or {}
  local lim = conf.limits or {}
  local grants = {}
  for _, g in ipairs(conf.grants or {}) do grants[g] = true end
  local base = state_base()
  return {
    name = name, path = path, dir = dir, conf = conf, grants = grants,
    limits = {
      memory = lim.memory_mb and math.floor(lim.memory_mb * 1024 * 1024) or DEFAULTS.memory,
      instructions = lim.instructions or DEFAULTS.instructions,
      wall_ms = lim.wall_ms or DEFAULTS.wall_ms,
    },
    data_dir = (base or "/tmp") .. "/" .. name .. "/data",
    status = conf.enabled == false and "disabled" or "enabled",
    faults = 0, fault_times = {}, reported = {}, versions = {}, inflight = 0, priority = 50,
    on_trip = function(r) persist(r.name, { status = "failed" }) end,
  }
end

local function stored_versions(rec)
  local base = state_base()
  if not base then return end
  local fs = require("sandlot.core.fs")
  local root = fs.root(base .. "/" .. rec.name)
  for _, e in ipairs(root and root:readdir(".") or {}) do
    local id = e.name:match("^(.+)%.lua$")
    local known = false
    for _, v in ipairs(rec.versions) do if v.id == id then known = true end end
    if id and not known then
      local src = read_file(base .. "/" .. rec.name .. "/" .. e.name)
      rec.versions[#rec.versions + 1] = { id = id, version = id:match("^(.*)%+") or id,
                                          src = src, time = e.mtime or 0, stored = true }
    end
  end
  if root then root:close() end
  table.sort(rec.versions, function(a, b) return (a.time or 0) < (b.time or 0) end)
end

-- Loads one plugin by name from path (first load). A failure is recorded, never raised.
local function load_one(name, path, dir)
  local rec = new_record(name, path, dir)
  recs[name] = rec
  local p = persisted()[name] or {}
  if p.status == "failed" or p.status == "disabled" then rec.status = p.status end
  local src = read_file(path)
  if p.pin then
    stored_versions(rec)
    for _, v in ipairs(rec.versions) do if v.id == p.pin and v.src then src = v.src end end
  end
  local ok, err = install(rec, src or "")
  if not ok then
    rec.status = "load_failed"
    rec.load_error = err
    io.stderr:write("sandlot: warning: plugin ", name, " does not load: ",
                    tostring(err and err.message or err), "\n")
  end
  return rec
end

---Finds and loads the plugins (once; M.reset() forgets them). Called by the first hook.
function M.load_all()
  if loaded then return end
  loaded = true
  local seen = {}
  for _, dir in ipairs(M.dirs()) do
    for _, name in ipairs(scan(dir)) do
      if not seen[name] then
        seen[name] = true
        local path, pdir = find_in(dir, name)
        load_one(name, path, pdir)
      end
    end
  end
  local shipped = shipped_dir()
  for name, conf in pairs(plugin_config()) do
    if name ~= "path" and type(conf) == "table" and not seen[name] and shipped then
      local path, pdir = find_in(shipped, name)
      if path then
        seen[name] = true
        load_one(name, path, pdir)
      end
    end
  end
  sort_hooks()
end

---Forgets every plugin (closing their states) and stops watching; the next hook loads anew.
function M.reset()
  for _, rec in pairs(recs) do if rec.st then rec.st:close() end end
  for _, w in pairs(watches) do w:close() end
  watches = {}
  recs, loaded = {}, false
  sort_hooks()
end

local function get(name)
  M.load_all()
  local rec = recs[name]
  if not rec then
    return nil, errors.new("not_found", ("no plugin named '%s' (searched %s)")
      :format(tostring(name), table.concat(M.dirs(), ":")))
  end
  return rec
end

local function summary(rec, with_state)
  local stats = rec.st and rec.st:stats() or {}
  local info = {
    name = rec.name, version = rec.version, id = rec.id, status = rec.status,
    faults = rec.faults, memory = stats.memory or 0, peak = stats.peak, cap = rec.limits.memory,
    calls = stats.calls or 0, time_ns = stats.time_ns or 0, instructions = stats.instructions,
    priority = rec.priority, path = rec.path, reload_ns = rec.reload_ns,
    last_error = rec.last_error,
    reload_error = rec.reload_error and { code = rec.reload_error.code,
                                          message = rec.reload_error.message },
  }
  info.versions = {}
  for i, v in ipairs(rec.versions) do info.versions[i] = { id = v.id, version = v.version } end
  if with_state and rec.st then
    local s, v = call_state(rec, rec.st, "get_state", "info")
    if s == "ok" then info.state = v end
  end
  return info
end

---Lists the plugins: {name, version, status, faults, memory, calls, time_ns, ...} by name.
---@return table[]
function M.list()
  M.load_all()
  local out = {}
  for _, rec in pairs(recs) do out[#out + 1] = summary(rec, true) end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

---Returns one plugin's {name, version, status, faults, memory, state (a copy), versions...}.
---@param name string
---@return table|nil info, sandlot.Error? err not_found
function M.info(name)
  local rec, err = get(name)
  if not rec then return nil, err end
  return summary(rec, true)
end

---Reloads a plugin from its file into a fresh state (the old keeps running when that fails),
---migrating `state` through the new version's migrate(old_state, old_version, new_version).
---@param name string
---@return true|nil ok, sandlot.Error? err
function M.reload(name)
  local rec, err = get(name)
  if not rec then return nil, err end
  local src = read_file(rec.path)
  if not src then return nil, errors.new("not_found", rec.path .. " is gone") end
  local ok, ierr = install(rec, src)
  if not ok then return nil, ierr end
  if rec.status == "load_failed" then rec.status = "enabled" end
  persist(name, { pin = false })
  return true
end

---Switches a plugin back to a past version (default: the one before the current), through the
---same path as a reload (fresh state, migrate(state, current, older)). The choice is pinned
---until the next reload.
---@param name string
---@param version? string a version ("1.0") or version id ("1.0+ab12cd34")
---@return true|nil ok, sandlot.Error? err not_found (no such version)
function M.rollback(name, version)
  local rec, err = get(name)
  if not rec then return nil, err end
  stored_versions(rec)
  local target
  for i = #rec.versions, 1, -1 do
    local v = rec.versions[i]
    if version == nil then
      if v.id ~= rec.id and v.src then target = v break end
    elseif (v.id == version or v.version == version) and v.src then
      target = v
      break
    end
  end
  if not target then
    return nil, errors.new("not_found", ("plugin %s has no %s to roll back to"):format(name,
      version and ("version " .. version) or "earlier version"))
  end
  local ok, ierr = install(rec, target.src, { no_store = true })
  if not ok then return nil, ierr end
  persist(name, { pin = target.id })
  return true
end

---Re-enables a plugin the breaker (or the config) disabled; clears its fault window.
---@param name string
---@return true|nil ok, sandlot.Error? err
function M.enable(name)
  local rec, err = get(name)
  if not rec then return nil, err end
  rec.status = rec.st and "enabled" or "load_failed"
  rec.fault_times, rec.reported = {}, {}
  persist(name, { status = false })
  return true
end

---Disables a plugin: its hooks are skipped until enable.
function M.disable(name)
  local rec, err = get(name)
  if not rec then return nil, err end
  rec.status = "disabled"
  persist(name, { status = "disabled" })
  return true
end

-- Hot reload -------------------------------------------------------------------------------

---Watches the plugin directories (uv_fs_event, debounced): a changed plugin is reloaded at the
---next hook call or M.poll(). Returns the number of directories watched.
function M.watch()
  M.load_all()
  local fsw = require("sandlot.core.fswatch")
  local n = 0
  for _, rec in pairs(recs) do
    if not watches[rec.dir] then
      local w = fsw.new(rec.dir)
      if w then watches[rec.dir] = w end
    end
    if watches[rec.dir] then n = n + 1 end
  end
  return n
end

---Reloads the plugins whose directory changed (past the debounce) and whose source differs.
function M.poll()
  for dir, w in pairs(watches) do
    if w:pending(M.DEBOUNCE) then
      for _, rec in pairs(recs) do
        if rec.dir == dir then
          local src = read_file(rec.path)
          if src and hash8(src) ~= (rec.id or ""):match("%+(%x+)$") then M.reload(rec.name) end
        end
      end
    end
  end
end

-- Hooks ------------------------------------------------------------------------------------

local function ready(hook)
  if not loaded then M.load_all() end
  if next(watches) then M.poll() end
  return by_hook[hook]
end

-- The end of a hook call: the fast path ("ok" at once) allocates nothing more.
local function finish(rec, st, async, status, ...)
  if status == "ok" or status == "fault" then
    rec.inflight = rec.inflight - 1
    if status == "fault" then host.fault(rec, (...)) end
    return status, ...
  end
  if async and host.waits(status, ...) then
    -- an observer waiting on I/O goes on in a task of its own: the operation never waits
    local first = table.pack(status, ...)
    require("sandlot.task").spawn(function()
      local r = table.pack(host.drive(rec, st, table.unpack(first, 1, first.n)))
      rec.inflight = rec.inflight - 1
      if r[1] == "fault" then host.fault(rec, r[2]) end
    end)
    return "ok"
  end
  return finish(rec, st, false, host.drive(rec, st, status, ...))
end

-- One hook call on rec; returns "ok", results... | "fault", err (already recorded).
local function call_hook(rec, hook, async, ...)
  local st = rec.st
  rec.inflight = rec.inflight + 1
  return finish(rec, st, async, st:call("invoke", hook, hook, ...))
end

local function sb_summary(sb)
  return { id = sb.id, provider = type(sb.provider) == "string" and sb.provider or nil,
           durable_id = sb.durable_id }
end

local VETO = "permission_denied"

local function veto(rec, hook, reason)
  local why = type(reason) == "table" and (reason.message or reason.code) or reason
  local code = type(reason) == "table" and errors.codes[reason.code] ~= nil
               and reason.code or VETO
  return nil, errors.new(code, ("plugin %s vetoed %s: %s"):format(rec.name,
    hook == "before_create" and "create" or "destroy", tostring(why or "no reason given")),
    { plugin = rec.name })
end

---before_create: each plugin in order may return changed opts, or false/nil, reason to veto.
---@param opts table the create options (a copy the caller owns)
---@param check? fun(opts: table) raises when opts are not valid create options
---@return table|nil opts, sandlot.Error? err (a veto names the plugin and its reason)
function M.before_create(opts, check)
  local list = ready("before_create")
  for i = 1, #list do
    local rec = list[i]
    if rec.status == "enabled" then
      local s, a, b = call_hook(rec, "before_create", false, opts)
      if s == "ok" then
        if a == false or (a == nil and b ~= nil) then return veto(rec, "before_create", b) end
        if type(a) == "table" then
          if not check or pcall(check, a) then opts = a
          else host.fault(rec, errors.new("invalid_input", ("plugin %s: before_create returned " ..
            "options create refuses"):format(rec.name), { hook = "before_create" })) end
        end
      end
    end
  end
  return opts
end

---before_destroy: a plugin may veto with false, reason.
function M.before_destroy(sb)
  local list = ready("before_destroy")
  for i = 1, #list do
    local rec = list[i]
    if rec.status == "enabled" then
      local s, a, b = call_hook(rec, "before_destroy", false, sb_summary(sb))
      if s == "ok" and (a == false or (a == nil and b ~= nil)) then
        return veto(rec, "before_destroy", b)
      end
    end
  end
  return true
end

function M.after_create(sb)
  host.live[sb.id] = sb
  local list = ready("after_create")
  for i = 1, #list do
    if list[i].status == "enabled" then call_hook(list[i], "after_create", true, sb_summary(sb)) end
  end
end

local CAP = 64 * 1024       -- the most of each stream a plugin is given

function M.after_exec(sb, r, cmd)
  local list = ready("after_exec")
  if #list == 0 then return end
  local res = { exit_code = r.exit_code, signal = r.signal, timed_out = r.timed_out,
                truncated = r.truncated, duration = r.duration,
                stdout = type(r.stdout) == "string" and r.stdout:sub(1, CAP) or nil,
                stderr = type(r.stderr) == "string" and r.stderr:sub(1, CAP) or nil,
                stdout_bytes = type(r.stdout) == "string" and #r.stdout or nil,
                stderr_bytes = type(r.stderr) == "string" and #r.stderr or nil }
  local info = sb_summary(sb)
  info.command = cmd and require("sandlot._redact").command(cmd) or nil
  for i = 1, #list do
    if list[i].status == "enabled" then call_hook(list[i], "after_exec", true, res, info) end
  end
end

local function plain(v, depth)
  if type(v) ~= "table" then
    if type(v) == "function" or type(v) == "userdata" or type(v) == "thread" then
      return tostring(v)
    end
    return v
  end
  if depth > 6 or getmetatable(v) ~= nil and not errors.is(v) then return tostring(v) end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" or math.type(k) == "integer" then out[k] = plain(x, depth + 1) end
  end
  return out
end

function M.on_event(event, measurements, metadata)
  if in_event then return end
  local list = by_hook.on_event or {}
  if #list == 0 then return end
  in_event = true
  local ok, err = pcall(function()
    local e, m, meta = plain(event, 0), plain(measurements, 0), plain(metadata, 0)
    for i = 1, #list do
      if list[i].status == "enabled" then call_hook(list[i], "on_event", true, e, m, meta) end
    end
  end)
  in_event = false
  if not ok then io.stderr:write("sandlot: warning: plugins: on_event: ", tostring(err), "\n") end
end

-- Commands and providers from plugins ----------------------------------------------------------

---Returns the CLI commands plugins add: {name = {plugin =, summary =, usage =}}.
function M.commands()
  M.load_all()
  local out = {}
  for _, rec in pairs(recs) do
    if rec.status == "enabled" and type(rec.desc and rec.desc.commands) == "table" then
      for cname, c in pairs(rec.desc.commands) do
        if type(c) == "table" and c.run == "function" then
          out[cname] = { plugin = rec.name, summary = c.summary, usage = c.usage }
        end
      end
    end
  end
  return out
end

---Runs a plugin's command with its arguments; returns its results (an exit status) | nil, err.
function M.run_command(name, args)
  local c = M.commands()[name]
  if not c then return nil, errors.new("not_found", "no plugin command " .. tostring(name)) end
  local rec = recs[c.plugin]
  local s, a, b = call_hook(rec, "commands." .. name .. ".run", false, args)
  if s ~= "ok" then return nil, a end
  if a == nil and b ~= nil then return nil, b end
  return a == nil and 0 or a
end

local OPS = { "create", "exec", "destroy", "status", "read_file", "write_files", "stop", "start" }

---Returns a provider table whose operations run in the plugin's state (plugin.providers[name]).
---The context crossing into the plugin is {name, config}; handles are plain tables.
---@param plugin string
---@param pname string
---@return table|nil provider, sandlot.Error? err
function M.provider(plugin, pname)
  local rec, err = get(plugin)
  if not rec then return nil, err end
  local d = rec.desc and rec.desc.providers and rec.desc.providers[pname]
  if type(d) ~= "table" then
    return nil, errors.new("not_found", ("plugin %s has no provider %s"):format(plugin, pname))
  end
  local p = { name = plugin .. "/" .. pname, capabilities = d.capabilities }
  for _, op in ipairs(OPS) do
    if d[op] == "function" then
      p[op] = function(ctx, ...)
        local s, a, b = call_hook(rec, "providers." .. pname .. "." .. op, false,
                                  { name = ctx and ctx.name, config = {} }, ...)
        if s ~= "ok" then return nil, errors.wrap(a, { plugin = plugin }) end
        return a, b
      end
    end
  end
  return p
end

---Reloads a provider file in place: live sandboxes keep working and run the new code from
---their next call; the new provider's migrate_handle(handle, old_version) may rewrite their
---handles. On failure the old code stays.
---@param spec string a provider module name ("mycloud") or file
---@return true|nil ok, sandlot.Error? err
function M.reload_provider(spec)
  return require("sandlot._provider_reload").reload(spec, host.live)
end

-- for specs and the bench: the record of a loaded plugin
function M._rec(name) return recs[name] end

---Tells whether any plugin is loaded (for callers that skip work otherwise).
function M.any()
  M.load_all()
  return next(recs) ~= nil
end

return M
