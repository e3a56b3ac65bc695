-- spec/ledger_cli_spec.lua: `sandlot ps [--all] [--json]` reads the ledger from a host of its
-- own (SANDLOT_BIN), in another directory than the one the sandboxes were created from.
local json = require("sandlot.wire.json")
local h = require("spec.helper")

describe("sandlot ps", function()
  local dir, env
  before_each(function()
    dir = h.tmpdir()
    env = { XDG_STATE_HOME = dir .. "/state" }
  end)
  after_each(function() h.rmtree(dir) end)

  local function ps(...)
    return h.host({ "ps", ... }, { env = env, cwd = "/" })
  end

  -- two local sandboxes: "keep" stays (destroyed at the end of the spec), "gone" is destroyed
  local function make()
    local code, out, errout = h.host({ "-e", [[
      local s = require("sandlot")
      local a = assert(s.create({ provider = "local", name = "keep" }))
      local b = assert(s.create({ provider = "local", purpose = "gone" }))
      assert(b:destroy())
      io.write(a.durable_id, " ", a.id, " ", b.durable_id)]] }, { env = env, cwd = dir })
    assert.equal(0, code, errout)
    return out:match("^(%S+) (%S+) (%S+)$")
  end

  local function cleanup(id)
    local code, _, errout = h.host({ "-e", ("assert(assert(require('sandlot').get(%q)):destroy())")
      :format(id) }, { env = env })
    assert.equal(0, code, errout)
  end

  it("prints only the header for an empty ledger", function()
    local code, out = ps()
    assert.equal(0, code)
    assert.matches("^DURABLE ID%s+PROVIDER%s+PROVIDER ID%s+STATE%s+AGE%s+PROCS%s+NAME\n$", out)
  end)

  it("lists live sandboxes in aligned columns; --all adds destroyed ones", function()
    local keep, ext, gone = make()
    local code, out, errout = ps()
    assert.equal(0, code, errout)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(2, #lines)
    local want = "^" .. keep:gsub("%-", "%%-") .. "%s+local%s+" .. ext ..
                 "%s+active%s+%d+s%s+0%s+keep$"
    assert.matches(want, lines[2])
    -- aligned: every column starts where its header does
    assert.equal(lines[1]:find("PROVIDER ID", 1, true), lines[2]:find(ext, 1, true))
    assert.equal(lines[1]:find("STATE", 1, true), lines[2]:find("active", 1, true))
    code, out = ps("--all")
    assert.equal(0, code)
    assert.truthy(out:find(gone, 1, true))
    assert.truthy(out:find("destroyed", 1, true))
    assert.truthy(out:find("gone", 1, true))
    cleanup(keep)
  end)

  it("prints --json records with the documented fields", function()
    local keep, ext, gone = make()
    local code, out, errout = ps("--json", "--all")
    assert.equal(0, code, errout)
    local list = json.decode(out)
    assert.equal(2, #list)
    local byid = {}
    for _, r in ipairs(list) do byid[r.id] = r end
    local r = byid[keep]
    assert.same({ "local", "local", ext, "active", "keep" },
                { r.provider, r.module, r.external_id, r.state, r.name })
    assert.equal("integer", math.type(r.created_at))
    assert.equal("integer", math.type(r.age_s))
    assert.is_string(r.host_id)
    assert.equal(keep, r.labels["sandlot.durable_id"])
    assert.equal("destroyed", byid[gone].state)
    assert.equal("integer", math.type(byid[gone].ended_at))
    code, out = ps("--json")
    assert.equal(0, code)
    assert.equal(1, #json.decode(out))
    cleanup(keep)
  end)

  it("exits 2 on a bad argument and 1 naming the file when the ledger is unusable", function()
    local code, _, errout = ps("--bogus")
    assert.equal(2, code)
    assert.matches("usage", errout)
    assert(require("sandlot.fs").mkdir_p(dir .. "/state/sandlot"))
    local f = assert(io.open(dir .. "/state/sandlot/ledger.db", "wb"))
    f:write(("not a ledger\n"):rep(100))
    f:close()
    code, _, errout = ps()
    assert.equal(1, code)
    assert.matches(dir .. "/state/sandlot/ledger.db", errout, 1, true)
  end)
end)
