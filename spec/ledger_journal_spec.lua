-- spec/ledger_journal_spec.lua: journal before create (the `creating` row is written before
-- the provider is called and a ledger failure stops the create there), the later states,
-- sandlot.get from another process and directory, sandlot.list, the opt-out, and the
-- durable id in to_map/from_map. Every case uses a ledger of its own (XDG_STATE_HOME).
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local errors = require("sandlot.errors")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local dir, saved
before_each(function()
  dir = h.tmpdir()
  saved = os.getenv("XDG_STATE_HOME")
  sys.setenv("XDG_STATE_HOME", dir .. "/state")
  ledger.reset()
end)
after_each(function()
  ledger.reset()
  sys.setenv("XDG_STATE_HOME", saved)
  h.rmtree(dir)
end)

local function open() return assert(ledger.open()) end

-- A provider table that records what it was asked and can be told to fail.
local function probe(behaviour)
  behaviour = behaviour or {}
  local seen = { creates = 0 }
  local p = {
    name = "probe",
    create = function(_, opts)
      seen.creates = seen.creates + 1
      seen.labels = opts.labels
      local id = opts.labels and opts.labels[ledger.LABEL]
      if id then seen.row_before = ledger.open():get(id) end
      if behaviour.create_fails then
        return nil, errors.new("permission_denied", "no room", { status = 403 })
      end
      return { id = "probe-1" }
    end,
    exec = function() return { exit_code = 0, stdout = "", stderr = "" } end,
    destroy = function() return true end,
    status = function() return "running" end,
    stop = function()
      if behaviour.stop_fails then return nil, errors.new("unavailable", "api down") end
      return true
    end,
    start = function() return true end,
  }
  return p, seen
end

describe("journal before create", function()
  it("writes the creating row, with the durable id as a label, before the provider call",
    h.task(function()
    local p, seen = probe()
    local sb = assert(sandlot.create(p, { name = "n1", labels = { team = "a" } }))
    assert.equal(1, seen.creates)
    assert.matches("^sb%-%x+$", sb.durable_id)
    assert.equal(sb.durable_id, seen.labels[ledger.LABEL])
    assert.equal("a", seen.labels.team)
    assert.equal("creating", seen.row_before.state)          -- what the provider saw
    assert.is_string(seen.row_before.host_id)
    local rec = assert(open():get(sb.durable_id))
    assert.same({ "active", "probe-1", "probe", "n1" },
                { rec.state, rec.external_id, rec.provider, rec.name })
    assert.equal("probe-1", sb.id)                           -- sb.id stays the provider's id
  end))

  it("records error with the structured error when the provider fails", h.task(function()
    local p = probe({ create_fails = true })
    local sb, err = sandlot.create(p, {})
    assert.is_nil(sb)
    assert.equal("permission_denied", err.code)   -- not retried (quota_exceeded would be)
    local list = assert(sandlot.list({ state = "error" }))
    assert.equal(1, #list)
    assert.same({ "permission_denied", "no room", 403 },
                { list[1].error.code, list[1].error.message, list[1].error.status })
  end))

  it("fails create with io_error before the provider is called when the ledger is unusable",
    h.task(function()
    assert(require("sandlot.fs").mkdir_p(dir .. "/state/sandlot"))
    local f = assert(io.open(dir .. "/state/sandlot/ledger.db", "wb"))
    f:write(("garbage, not sqlite\n"):rep(100))
    f:close()
    local p, seen = probe()
    local sb, err = sandlot.create(p, {})
    assert.is_nil(sb)
    assert.equal("io_error", err.code)
    assert.equal("create", err.op)
    assert.matches("ledger.db", err.message, 1, true)
    assert.equal(0, seen.creates)
  end))

  it("records stopped even when the provider's stop fails; start makes it active",
    h.task(function()
    local p = probe({ stop_fails = true })
    local sb = assert(sandlot.create(p, {}))
    local ok, err = sb:stop()
    assert.is_nil(ok)
    assert.equal("unavailable", err.code)
    local rec = assert(open():get(sb.durable_id))
    assert.equal("stopped", rec.state)
    assert.equal("unavailable", rec.error.code)
    assert(sb:start())
    assert.equal("active", assert(open():get(sb.durable_id)).state)
    assert(sb:destroy())
    rec = assert(open():get(sb.durable_id))
    assert.equal("destroyed", rec.state)
    local states = {}
    for _, e in ipairs(assert(open():events(sb.durable_id))) do states[#states + 1] = e.data.to end
    assert.same({ "creating", "active", "stopped", "active", "destroyed" }, states)
  end))

  it("puts the durable id on the local provider's labels", h.task(function()
    local sb <close> = assert(sandlot.create({ provider = "local", labels = { k = "v" } }))
    local r = assert(sandlot.provider.load("local"))
    local found
    local want = { labels = { [ledger.LABEL] = sb.durable_id } }
    for _, x in ipairs(assert(r.ops.list(sb._ctx, want))) do
      found = x
    end
    assert.equal(sb.id, found.id)
    assert.equal("v", found.labels.k)
  end))
end)

describe("sandlot.get and sandlot.list", function()
  it("reconnects by durable id from another process in another directory", h.task(function()
    local sb = assert(sandlot.create({ provider = "local", purpose = "reattach" }))
    local script = ([[
      local sandlot = require("sandlot")
      local sb = assert(sandlot.get(%q, { take = true }))   -- its creator still runs
      io.write(sb.id, " ", sb.durable_id, " ", assert(sb:exec({ "echo", "hi" })).stdout)
      assert(sb:destroy())
    ]]):format(sb.durable_id)
    local code, out, errout = h.host({ "-e", script }, { cwd = "/",
      env = { XDG_STATE_HOME = dir .. "/state" } })
    assert.equal(0, code, errout)
    assert.equal(sb.id .. " " .. sb.durable_id .. " hi\n", out)
    local rec = assert(open():get(sb.durable_id))
    assert.equal("destroyed", rec.state)
    local again, err = sandlot.get(sb.durable_id)
    assert.is_nil(again)
    assert.equal("not_found", err.code)
  end))

  it("records a relative provider file as an absolute path, so get works elsewhere",
    h.task(function()
    local f = assert(io.open(dir .. "/prov.lua", "w"))
    f:write([[return { name = "fileprov",
      create = function() return { id = "f1" } end,
      exec = function() return { exit_code = 0, stdout = "ok", stderr = "" } end,
      destroy = function() return true end,
      status = function() return "running" end }]])
    f:close()
    local env = { XDG_STATE_HOME = dir .. "/state" }
    local code, id, errout = h.host({ "-e", [[io.write(assert(require("sandlot").create(
      "./prov.lua", {})).durable_id)]] }, { cwd = dir, env = env })
    assert.equal(0, code, errout)
    local out
    code, out, errout = h.host({ "-e", ([[local sb = assert(require("sandlot").get(%q))
      io.write(sb.provider, " ", sb.id, " ", assert(sb:exec({ "x" })).stdout)]]):format(id) },
      { cwd = "/", env = env })
    assert.equal(0, code, errout)
    local real = require("sandlot.core.sys").realpath(dir .. "/prov.lua")
    assert.equal(real .. " f1 ok", out)
  end))

  it("answers not_found for an unknown id and raises on a non-string", h.task(function()
    local sb, err = sandlot.get("sb-0000000000000000")
    assert.is_nil(sb)
    assert.equal("not_found", err.code)
    assert.has_error(function() sandlot.get(42) end)
  end))

  it("lists by state, provider and label", h.task(function()
    local p = probe()
    local a = assert(sandlot.create(p, { labels = { role = "db" } }))
    local b = assert(sandlot.create({ provider = "local", labels = { role = "web" } }))
    assert(b:destroy())
    local function ids(list)
      local out = {}
      for _, r in ipairs(list) do out[#out + 1] = r.id end
      table.sort(out)
      return out
    end
    local both = { a.durable_id, b.durable_id }
    table.sort(both)
    assert.same(both, ids(assert(sandlot.list())))
    assert.same({ a.durable_id }, ids(assert(sandlot.list({ state = "active" }))))
    assert.same({ b.durable_id }, ids(assert(sandlot.list({ provider = "local" }))))
    assert.same({ b.durable_id }, ids(assert(sandlot.list({ label = "role=web" }))))
    assert.same({ a.durable_id }, ids(assert(sandlot.list({ state = { "active", "stopped" },
                                                            label = { role = "db" } }))))
    assert.has_error(function() sandlot.list({ sate = "active" }) end)
  end))

  it("carries the durable id through to_map and from_map", h.task(function()
    local sb <close> = assert(sandlot.create({ provider = "local" }))
    local m = sandlot.to_map(sb)
    assert.equal(sb.durable_id, m.durable_id)
    assert.equal(sb.id, m.id)
    local back = assert(sandlot.from_map(m))
    assert.equal(sb.durable_id, back.durable_id)
    assert.equal(sb.id, back.id)
  end))
end)

describe("the ledger opt-out", function()
  local function file() return io.open(dir .. "/state/sandlot/ledger.db") end

  it("SANDLOT_LEDGER=off journals nothing and creates no file (the default does)",
    h.task(function()
    local script = [[local sb = assert(require("sandlot").create({ provider = "local" }))
      io.write(tostring(sb.durable_id)); assert(sb:destroy())]]
    local env = { XDG_STATE_HOME = dir .. "/state", SANDLOT_LEDGER = "off" }
    local code, out, errout = h.host({ "-e", script }, { env = env })
    assert.equal(0, code, errout)
    assert.equal("nil", out)
    assert.is_nil(file())
    env.SANDLOT_LEDGER = false
    code, out, errout = h.host({ "-e", script }, { env = env })
    assert.equal(0, code, errout)
    assert.matches("^sb%-", out)
    assert.is_not_nil(file())
  end))

  it("ledger = false in the config turns it off; list then says not_supported",
    h.task(function()
    local cfg = dir .. "/sandlot.config.lua"
    local f = assert(io.open(cfg, "w"))
    f:write("return { ledger = false }\n")
    f:close()
    local script = [[local s = require("sandlot")
      local sb = assert(s.create({ provider = "local" }))
      local l, e = s.list()
      io.write(tostring(sb.durable_id), " ", e.code); assert(sb:destroy())]]
    local code, out, errout = h.host({ "-e", script }, { env = {
      XDG_STATE_HOME = dir .. "/state", SANDLOT_CONFIG = cfg } })
    assert.equal(0, code, errout)
    assert.equal("nil not_supported", out)
    assert.is_nil(file())
  end))
end)
