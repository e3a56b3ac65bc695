-- sandlot._plugin_host: the host side of one plugin call. Drives a call of sandlot.core.plugin
-- to its end: runs the host calls the plugin yields (only those its grants name), each bounded
-- by what is left of the call's wall-clock budget, and resumes it. Owns the host API table that
-- plugins see as `sandlot.*`, and the fault accounting (telemetry, stderr once, breaker).
local errors = require("sandlot.errors")
local telemetry = require("sandlot.telemetry")
local redact = require("sandlot._redact")
local task = require("sandlot.task")

local M = {}

M.BREAKER_FAULTS = 5          -- faults within BREAKER_WINDOW seconds that disable a plugin
M.BREAKER_WINDOW = 60

local pack, unpack = table.pack, table.unpack

local function data_path(rec, name)
  if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") or name:find("..", 1, true) then
    return nil, errors.new("invalid_input", "a data file name of letters, digits, '-', '_', '.'")
  end
  local fs = require("sandlot.fs")
  local ok, err = fs.mkdir_p(rec.data_dir)
  if not ok then return nil, err end
  return rec.data_dir .. "/" .. name
end

local function plain_response(res)
  return { status = res.status, headers = res.headers, body = res.body }
end

-- Host functions by the name the plugin calls them (sandlot.<name>), with the grant each needs
-- (nil: every plugin has it) and whether it may wait on I/O.
M.API = {
  log = { fn = function(rec, ...)
    local parts = pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    io.stderr:write("sandlot: plugin ", rec.name, ": ", table.concat(parts, " ", 1, parts.n), "\n")
    return true
  end },
  event = { fn = function(rec, name, measurements, metadata)
    telemetry.execute({ "plugin", rec.name, tostring(name) }, measurements or {}, metadata or {})
    return true
  end },
  out = { fn = function(_, ...)
    local parts = pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    io.stdout:write(table.concat(parts, "", 1, parts.n))
    return true
  end },
  json = { fn = function(_, v) return require("sandlot.wire.json").encode(v) end },
  redact = { fn = function(_, v)
    if type(v) == "string" then return redact.text(v) end
    return redact.scrub(v)
  end },
  ["data.append"] = { fn = function(rec, name, text)
    local path, err = data_path(rec, name)
    if not path then return nil, err end
    local f, ferr = io.open(path, "a")
    if not f then return nil, errors.new("io_error", tostring(ferr)) end
    f:write(tostring(text))
    f:close()
    return true
  end },
  ["data.read"] = { fn = function(rec, name)
    local path, err = data_path(rec, name)
    if not path then return nil, err end
    local f = io.open(path, "rb")
    if not f then return nil, errors.new("not_found", name .. " does not exist") end
    local s = f:read("a")
    f:close()
    return s
  end },
  ["http.request"] = { grant = "http", io = true, fn = function(_, opts)
    local res, err = require("sandlot.http").request(opts)
    if not res then return nil, err end
    return plain_response(res)
  end },
  ["proc.run"] = { grant = "proc", io = true, fn = function(_, cmd, opts)
    return require("sandlot.proc").run(cmd, opts)
  end },
  ["sandboxes.list"] = { grant = "sandbox", io = true, fn = function(_, filter)
    return require("sandlot.sandbox").list(filter)
  end },
  ["sandboxes.destroy"] = { grant = "sandbox", io = true, fn = function(_, id)
    local sb, err = M.live[id]
    if not sb then
      sb, err = require("sandlot.sandbox").get(id)
      if not sb then return nil, err end
    end
    return require("sandlot.sandbox").destroy(sb)
  end },
  ["sandboxes.exec"] = { grant = "sandbox", io = true, fn = function(_, id, cmd, opts)
    local sb, err = M.live[id]
    if not sb then
      sb, err = require("sandlot.sandbox").get(id)
      if not sb then return nil, err end
    end
    return require("sandlot.sandbox").exec(sb, cmd, opts)
  end },
}

-- Sandboxes created in this process by id, for the sandbox grant (weak: never keeps one alive).
M.live = setmetatable({}, { __mode = "v" })

---Returns the host API names a plugin with these grants sees.
---@param grants table<string, boolean>
---@return string[]
function M.names(grants)
  local list = {}
  for name, api in pairs(M.API) do
    if api.grant == nil or grants[api.grant] then list[#list + 1] = name end
  end
  table.sort(list)
  return list
end

-- Runs one host call for rec; returns the values to resume with: true, results... | false, err
local function host_call(rec, callh, name, ...)
  local api = M.API[name]
  if not api or (api.grant and not rec.grants[api.grant]) then
    return false, errors.new("permission_denied", ("plugin %s: sandlot.%s is not granted")
      :format(rec.name, name))
  end
  if api.io and task.current() then
    local left = callh:remaining()
    local res = pack(pcall(task.timeout, left, api.fn, rec, ...))
    if not res[1] then return false, tostring(res[2]) end
    return true, unpack(res, 2, res.n)
  end
  local res = pack(pcall(api.fn, rec, ...))
  if not res[1] then return false, tostring(res[2]) end
  return true, unpack(res, 2, res.n)
end

---Drives a call from its first outcome to its last: "ok", results... | "fault", err.
function M.drive(rec, st, status, ...)
  if status ~= "host" then return status, ... end
  local callh = ...
  return M.drive(rec, st, st:resume(callh, host_call(rec, ...)))
end

---Tells whether the first outcome of a call is a host call that may wait on I/O.
function M.waits(status, _, name)
  return status == "host" and M.API[name] ~= nil and M.API[name].io == true
end

local function now() return os.time() end

---Records a fault of rec: telemetry, stderr once per (hook, code), and the breaker.
---@param rec table
---@param err table sandlot.error from sandlot.core.plugin
function M.fault(rec, err)
  rec.faults = rec.faults + 1
  rec.last_error = { code = err.code, message = err.message, hook = err.hook }
  local t = now()
  local recent = {}
  for _, x in ipairs(rec.fault_times) do
    if t - x < M.BREAKER_WINDOW then recent[#recent + 1] = x end
  end
  recent[#recent + 1] = t
  rec.fault_times = recent
  local key = tostring(err.hook) .. ":" .. tostring(err.code)
  if not rec.reported[key] then
    rec.reported[key] = true
    io.stderr:write("sandlot: warning: ", tostring(err.message), "\n")
  end
  if telemetry.active() then
    telemetry.execute({ "sandlot", "plugin", "fault" }, { count = 1 },
      { plugin = rec.name, hook = err.hook, error = err.code, reason = err.message,
        version = rec.version })
  end
  if #recent >= M.BREAKER_FAULTS and rec.status == "enabled" then
    rec.status = "failed"
    io.stderr:write(("sandlot: warning: plugin %s disabled after %d faults in %ds; " ..
      "'sandlot plugins enable %s' re-enables it (or 'sandlot plugins rollback %s')\n")
      :format(rec.name, #recent, M.BREAKER_WINDOW, rec.name, rec.name))
    if rec.on_trip then rec.on_trip(rec) end
  end
end

return M
