-- spec/conformance/rules.lua: conformance cases that must be shown to fail on a provider that
-- breaks them. Each takes a sandbox (or a create function) and raises a luassert failure on a
-- violation; spec/conformance/init.lua runs them on every provider, and
-- spec/conformance_rules_spec.lua runs them on deliberately broken providers too.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local assert = require("luassert")

local M = {}

M.CANARY_NAME = "SANDLOT_CONF_CANARY"

local function canary_value()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(8)
  f:close()
  return "sandlot-conf-canary-" .. b:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
end

---Plants a canary variable in this host process's environment, proves a host child sees it,
---then checks that a command in the sandbox sees neither the name nor the value.
function M.no_host_env(sb)
  local name, value = M.CANARY_NAME, canary_value()
  sys.setenv(name, value)
  local ok, err = pcall(function()
    -- the plant is real: this process and its children (inheriting) have it
    assert.equal(value, os.getenv(name), "the canary is not in the host environment")
    local host = assert(sandlot.proc.run({ "sh", "-c", 'printf "%s" "$' .. name .. '"' }))
    assert.equal(value, host.stdout, "a host child does not see the canary")
    local r = assert(sb:exec({ "sh", "-c", 'printf "%s|" "${' .. name .. '-unset}"; env' }))
    assert.equal(0, r.exit_code, r.stderr)
    assert.equal("unset|", r.stdout:sub(1, 6), "the sandbox sees the host's " .. name)
    assert.is_nil(r.stdout:find(value, 1, true), "the host's canary value leaks into the sandbox")
  end)
  sys.setenv(name, nil)
  if not ok then error(err, 0) end
end

---`env = {X = false}` removes X: from the sandbox's create env, and when X is set nowhere (it
---must not become the string "false").
function M.env_false(create)
  local s = create({ env = { CONF_GONE = "from create", CONF_KEEP = "kept" } })
  local script = 'printf "%s|%s|%s" "${CONF_GONE-unset}" "${CONF_NEVER-unset}" "$CONF_KEEP"'
  local r = assert(s:exec({ "sh", "-c", script }))
  assert.equal("from create|unset|kept", r.stdout, "the create env is not there to remove")
  r = assert(s:exec({ "sh", "-c", script }, { env = { CONF_GONE = false, CONF_NEVER = false } }))
  assert.equal("unset|unset|kept", r.stdout, "env = {X = false} must remove X")
  s:destroy()
end

---exec returns {exit_code = integer, stdout = string, stderr = string, timed_out = boolean,
---truncated = boolean, signal = integer|nil}.
function M.result_shape(sb)
  local r = assert(sb:exec({ "sh", "-c", "printf o; printf e >&2; exit 3" }))
  assert.equal("integer", math.type(r.exit_code), "exit_code must be an integer")
  assert.equal(3, r.exit_code)
  assert.equal("o", r.stdout)
  assert.equal("e", r.stderr)
  assert.is_boolean(r.timed_out)
  assert.is_boolean(r.truncated)
  assert.is_true(r.signal == nil or math.type(r.signal) == "integer", "signal: integer or nil")
end

return M
