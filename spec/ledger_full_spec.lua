-- spec/ledger_full_spec.lua: a full disk under the ledger fails create with io_error before
-- the provider is called. The disk is a real one: a 256 KiB tmpfs that bubblewrap mounts over
-- the state directory of a child host (SANDLOT_BIN), filled up after the ledger was opened.
local h = require("spec.helper")

local SCRIPT = [[
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local calls = 0
local p = {
  name = "probe",
  create = function() calls = calls + 1; return { id = "p1" } end,
  exec = function() return { exit_code = 0, stdout = "", stderr = "" } end,
  destroy = function() return true end,
  status = function() return "running" end,
}
local fill = arg[1] == "fill"
assert(ledger.open())                                  -- the file exists, then the disk fills
if fill then
  local f = assert(io.open(os.getenv("XDG_STATE_HOME") .. "/filler", "wb"))
  local chunk = ("x"):rep(4096)
  while f:write(chunk) and f:flush() do end
  f:close()
end
local sb, err = sandlot.create(p, {})
io.write(sb and "created" or err.code, " ", calls, " ", err and err.message or "")
]]

describe("the ledger on a full disk", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmtree(dir) end)

  local function bwrap_host(args, state)
    local argv = { "--dev-bind", "/", "/", "--size", "262144", "--tmpfs", state, h.BIN }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return h.host(argv, { bin = "bwrap", env = { XDG_STATE_HOME = state } })
  end

  it("fails create with io_error and never calls the provider", function()
    local script = dir .. "/full.lua"
    local f = assert(io.open(script, "w"))
    f:write(SCRIPT)
    f:close()
    local state = dir .. "/state"
    assert(require("sandlot.fs").mkdir_p(state))
    local probe = bwrap_host({ "-e", "" }, state)
    if probe ~= 0 then return pending("needs bubblewrap with --size (tmpfs mounts)") end
    -- the control: with room on the disk the same script creates
    local code, out, errout = bwrap_host({ script, "room" }, state)
    assert.equal(0, code, errout)
    assert.equal("created 1 ", out)
    code, out, errout = bwrap_host({ script, "fill" }, state)
    assert.equal(0, code, errout)
    local what, calls, message = out:match("^(%S+) (%d+) (.*)$")
    assert.equal("io_error", what, out)
    assert.equal("0", calls)
    assert.matches("ledger.db", message, 1, true)
  end)
end)
