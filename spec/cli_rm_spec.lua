-- spec/cli_rm_spec.lua: `sandlot rm ID...` run by the built host from another directory:
-- destroys by durable id through the ledger, reports unknown and destroyed ids (exit 1, the
-- others still removed), refuses a sandbox a live host owns unless --force, settles a record
-- whose create never finished, prints --json, and exits 2 without ids.
local json = require("sandlot.wire.json")
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

describe("sandlot rm", function()
  local dir, env, saved
  before_each(function()
    dir = h.tmpdir()
    env = { XDG_STATE_HOME = dir .. "/state" }
    saved = os.getenv("XDG_STATE_HOME")
    sys.setenv("XDG_STATE_HOME", dir .. "/state")
    ledger.reset()
  end)
  after_each(function()
    ledger.reset()
    sys.setenv("XDG_STATE_HOME", saved)
    h.rmtree(dir)
  end)

  local function rm(...)
    return h.host({ "rm", ... }, { env = env, cwd = "/" })
  end

  -- n local sandboxes made by a host that has ended: "durable_id local_id" pairs
  local function make(n)
    local code, out, err = h.host({ "-e", ([[
      local s = require("sandlot")
      for _ = 1, %d do
        local sb = assert(s.create("local"))
        io.write(sb.durable_id, " ", sb.id, "\n")
      end]]):format(n) }, { env = env, cwd = dir })
    assert.equal(0, code, err)
    local list = {}
    for d, id in out:gmatch("(%S+) (%S+)\n") do list[#list + 1] = { d, id } end
    return list
  end

  local function exists(id)
    return sandlot.fs.stat(dir .. "/state/sandlot/local/" .. id) ~= nil
  end

  it("destroys sandboxes by durable id and prints each one", function()
    local made = make(2)
    assert.is_true(exists(made[1][2]))
    local code, out, err = rm(made[1][1], made[2][1])
    assert.equal(0, code, err)
    assert.equal(made[1][1] .. "\n" .. made[2][1] .. "\n", out)
    assert.is_false(exists(made[1][2]))
    assert.is_false(exists(made[2][2]))
    assert.equal("destroyed", assert(assert(ledger.open()):get(made[1][1])).state)
  end)

  it("is also sandlot destroy, the name that pairs with create", function()
    local made = make(1)
    local code, out, err = h.host({ "destroy", made[1][1] }, { env = env, cwd = "/" })
    assert.equal(0, code, err)
    assert.equal(made[1][1] .. "\n", out)
    assert.is_false(exists(made[1][2]))
    code, out, err = h.host({ "destroy", "sb-0000000000000000" }, { env = env, cwd = "/" })
    assert.equal("", out)
    assert.equal(1, code)
    assert.matches("sandlot: destroy: no such sandbox: sb-0000000000000000", err, 1, true)
  end)

  it("reports unknown and destroyed ids, removes the rest, exits 1; --json", function()
    local made = make(2)
    assert.equal(0, (rm(made[2][1])))
    local code, out, err = rm("sb-0000000000000000", made[1][1], made[2][1])
    assert.equal(1, code)
    assert.equal(made[1][1] .. "\n", out)
    assert.matches("sandlot: rm: no such sandbox: sb-0000000000000000", err, 1, true)
    assert.matches("sandlot: rm: sandbox " .. made[2][1] .. " was destroyed already", err, 1, true)
    assert.is_false(exists(made[1][2]))
    code, out = rm("--json", "sb-0000000000000000")
    assert.equal(1, code)
    assert.same({ { id = "sb-0000000000000000", removed = false,
                    error = "no such sandbox: sb-0000000000000000" } }, json.decode(out))
  end)

  it("refuses a sandbox a live host owns unless --force", h.task(function()
    local sb = assert(sandlot.create("local"))
    local code, _, err = rm(sb.durable_id)
    assert.equal(1, code)
    assert.matches("is owned by another live host " .. ledger.this_host().id, err, 1, true)
    assert.matches("use --force", err, 1, true)
    assert.is_true(exists(sb.id))
    code, _, err = rm("--force", sb.durable_id)
    assert.equal(0, code, err)
    assert.is_false(exists(sb.id))
  end))

  it("settles a record whose create never finished", function()
    local _, _, err, r = h.host({ "-e", [[
      require("sandlot").create("local")]] },
      { env = { XDG_STATE_HOME = dir .. "/state", SANDLOT_FAULT = "create:after_journal" } })
    assert.equal(9, r.signal, err)
    local rec = assert(assert(ledger.open()):list({ state = "creating" }))[1]
    assert.is_table(rec)
    assert.equal(0, (rm(rec.id)))
    assert.equal("destroyed", assert(ledger.open():get(rec.id)).state)
  end)

  it("exits 2 without an id", function()
    local code, _, err = rm()
    assert.equal(2, code)
    assert.matches("usage: sandlot rm", err, 1, true)
  end)
end)
