-- sandlot._shapes: what the sandbox API accepts and what a provider must give back: the exec
-- and create option specs (checked with sandlot._check) and the shape of an exec result.
-- Private to sandlot.sandbox; kept apart so the API module stays about its operations.
local check = require("sandlot._check")

local M = {}

function M.count(v)
  return math.type(v) == "integer" and v >= 0, "an integer >= 0"
end
function M.seconds(v)
  return type(v) == "number" and v > 0 and v ~= math.huge, "a number of seconds > 0"
end
local function string_or_writer(v)
  return type(v) == "string" or type(v) == "function", "a string or a writer function"
end

M.EXEC_OPTS = { env = "table", cwd = "string", stdin = string_or_writer, timeout = M.seconds,
                max_output = M.count, on_stdout = "function", on_stderr = "function" }

local RESULT_SHAPE = "exec must return {exit_code = integer, stdout = string, stderr = " ..
  "string, signal = integer|nil, timed_out = boolean|nil, truncated = boolean|nil}"

-- Checks what a provider's exec returned (a provider bug raises, like a bad handle does) and
-- fills the optional flags.
function M.exec_result(pname, r)
  local why
  if type(r) ~= "table" then
    why = "got a " .. type(r)
  elseif math.type(r.exit_code) ~= "integer" then
    local keys = {}
    for k in pairs(r) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    why = ("exit_code is %s (the result has: %s)"):format(math.type(r.exit_code)
      or type(r.exit_code), #keys > 0 and table.concat(keys, ", ") or "nothing")
  elseif type(r.stdout) ~= "string" or type(r.stderr) ~= "string" then
    why = ("stdout is a %s and stderr a %s"):format(type(r.stdout), type(r.stderr))
  elseif r.signal ~= nil and math.type(r.signal) ~= "integer" then
    why = "signal is a " .. type(r.signal)
  elseif r.timed_out ~= nil and type(r.timed_out) ~= "boolean"
      or r.truncated ~= nil and type(r.truncated) ~= "boolean" then
    why = "timed_out and truncated must be booleans"
  end
  if why then
    error(("provider %s: %s; %s (provider bug)"):format(pname, RESULT_SHAPE, why), 3)
  end
  r.timed_out = r.timed_out or false
  r.truncated = r.truncated or false
  return r
end

-- standard create options understood by every provider where it can, with their checks
local function positive(v) return type(v) == "number" and v > 0, "a number > 0" end
local function positive_int(v) return math.type(v) == "integer" and v > 0, "an integer > 0" end
local function port_list(v)
  if type(v) ~= "table" then return false, "a list of integers in 1..65535" end
  for _, port in ipairs(v) do
    if math.type(port) ~= "integer" or port < 1 or port > 65535 then
      return false, "a list of integers in 1..65535"
    end
  end
  return true
end
local function mount_list(v)
  local want = "a list of {source = path, target = path, readonly = bool}"
  if type(v) ~= "table" then return false, want end
  for i, m in ipairs(v) do
    if type(m) ~= "table" or type(m.source) ~= "string" or type(m.target) ~= "string" then
      return false, ("%s (mounts[%d] is not)"):format(want, i)
    end
  end
  return true
end
local function network(v)
  local want = "'none', 'all' or a list of host names"
  if v == "none" or v == "all" then return true end
  if type(v) ~= "table" then return false, want end
  for _, h in ipairs(v) do if type(h) ~= "string" then return false, want end end
  return true
end

local CREATE_OPTS = {
  provider = function(v)
    return type(v) == "string" or type(v) == "table", "a provider name or table"
  end,
  image = "string", cwd = "string", name = "string", purpose = "string",
  cpus = positive, memory_mb = positive_int, disk_mb = positive_int, timeout = M.seconds,
  env = "table", labels = "table", ports = port_list, mounts = mount_list, network = network,
  from = function(v)                      -- a checkpoint to restore (sandlot.checkpoint)
    return type(v) == "string" or (type(v) == "table" and (type(v.id) == "string"
             or (v.kind == "native" and type(v.native_id) == "string"))),
           "a checkpoint or its id"
  end,
  -- sandlot's own (README, "Durable sandboxes"): re-create on loss, and the lifetimes
  recreate = "boolean", ttl = M.seconds, idle_timeout = M.seconds,
}

-- create's option spec for one provider: the standard options plus its create_options (whose
-- values are type names, checked by provider.check)
local create_specs = setmetatable({}, { __mode = "k" })

---Checks create options against the standard ones and the provider's create_options; raises
---at create's caller.
function M.check_create_opts(opts, p)
  local spec = create_specs[p]
  if not spec then
    spec = {}
    for k, v in pairs(p.impl.create_options or {}) do spec[k] = v end
    for k, v in pairs(CREATE_OPTS) do spec[k] = v end
    create_specs[p] = spec
  end
  check.opts(opts, spec, ("create (provider %s)"):format(p.name), 3)
  check.env(opts.env, "create", 3)
end

return M
