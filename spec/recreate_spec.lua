-- spec/recreate_spec.lua: create's recreate = true on local and docker. The sandbox is removed
-- behind sandlot's back (its directory, its container); the next operation re-creates it from
-- the recorded options, says so in a warning, a telemetry event and a ledger event, and keeps
-- the durable id while the provider's id changes. Without recreate the loss is not_found.
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")
local docker = require("spec.support.docker")

local dir, saved
local function fresh_ledger()
  dir = h.tmpdir()
  saved = os.getenv("XDG_STATE_HOME")
  sys.setenv("XDG_STATE_HOME", dir .. "/state")
  sys.setenv("SANDLOT_QUIET", "1")
  ledger.reset()
end
local function drop_ledger()
  ledger.reset()
  sys.setenv("XDG_STATE_HOME", saved)
  sys.setenv("SANDLOT_QUIET", nil)
  h.rmtree(dir)
end

local function recorded(sb)
  local events = assert(assert(ledger.open()):events(sb.durable_id))
  local kinds = {}
  for _, e in ipairs(events) do kinds[#kinds + 1] = e.kind end
  return table.concat(kinds, ","), assert(ledger.open():get(sb.durable_id))
end

-- Runs the loss case on provider ref: lose(sb) removes the sandbox behind sandlot's back.
local function loss_case(ref, lose)
  local seen = {}
  sandlot.telemetry.attach("recreate-spec", { { "sandlot", "recreate" } },
                           function(_, _, meta) seen[#seen + 1] = meta end)
  local sb = assert(sandlot.create(ref, { recreate = true, env = { K = "v1" },
                                          labels = { team = "r" } }))
  local durable, first = sb.durable_id, sb.id
  assert(sb:write_file("/f", "x"))
  lose(sb)
  local r = assert(sb:exec({ "sh", "-c", "echo $K" }))
  sandlot.telemetry.detach("recreate-spec")
  assert.equal("v1\n", r.stdout)                             -- the recorded env came back
  assert.equal(durable, sb.durable_id)
  assert.are_not.equal(first, sb.id)
  assert.equal(sb.id, sb.external_id)
  assert.equal(1, sb.recreated)
  assert.is_nil(sb:read_file("/f"))                          -- a new sandbox: files are lost
  local found
  for _, w in ipairs(sb.warnings) do
    found = found or w:find("re-created it as " .. sb.id, 1, true)
  end
  assert.truthy(found, table.concat(sb.warnings, "\n"))
  assert.equal(1, #seen)
  assert.same({ first, sb.id, durable, "exec" },
              { seen[1].previous, seen[1].sandbox, seen[1].durable_id, seen[1].op })
  local kinds, rec = recorded(sb)
  assert.equal("state,state,recreated", kinds)
  assert.same({ "active", sb.id }, { rec.state, rec.external_id })
  assert(sb:destroy())
  return first
end

describe("recreate = true (local)", function()
  before_each(fresh_ledger)
  after_each(drop_ledger)

  local function state() return dir .. "/state/sandlot/local/" end

  it("re-creates a sandbox whose directory vanished, keeping the durable id", h.task(function()
    loss_case("local", function(sb)
      assert(sandlot.proc.run({ "rm", "-rf", state() .. sb.id }))
    end)
  end))

  it("also on status, and reconnects by durable id with recreate restored", h.task(function()
    local sb = assert(sandlot.create("local", { recreate = true }))
    local again = assert(sandlot.get(sb.durable_id))
    assert(sandlot.proc.run({ "rm", "-rf", state() .. sb.id }))
    assert.equal("running", assert(again:status()))
    assert.are_not.equal(sb.id, again.id)
    assert.equal(1, again.recreated)
    assert(again:destroy())
  end))

  it("without recreate, the loss is not_found and nothing is made", h.task(function()
    local sb = assert(sandlot.create("local"))
    assert(sandlot.proc.run({ "rm", "-rf", state() .. sb.id }))
    local r, err = sb:exec({ "true" })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.is_nil(sb.recreated)
    assert.equal("terminated", sb:status())
  end))

  it("a missing binary is not a loss: no re-creation", h.task(function()
    local sb = assert(sandlot.create("local", { recreate = true }))
    local first = sb.id
    local r, err = sb:exec({ "/no/such/binary" })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.equal(first, sb.id)
    assert(sb:destroy())
  end))
end)

describe("recreate = true (docker) #docker", function()
  local suite = docker.suite({ dk = {} })
  before_each(fresh_ledger)
  after_each(drop_ledger)

  it("re-creates a sandbox whose container was removed", function()
    if not suite.need() then return end
    h.task(function()
      loss_case("dk", function(sb)
        local res = suite.api({ method = "DELETE",
                                path = "/containers/" .. sb.handle.container,
                                query = { force = "true" } })
        assert.equal(204, res.status)
      end)
    end)()
  end)
end)
