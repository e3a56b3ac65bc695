-- spec/ledger_docker_spec.lua: the journal on a real Docker daemon (spec/support/docker.lua):
-- the container carries the durable id as a label, the ledger row holds the provider's id and
-- handle, and sandlot.get reconnects to the container by durable id.
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local docker = require("spec.support.docker")

describe("the ledger on docker #docker", function()
  local suite = docker.suite({ dkl = {} })

  it("labels the container with the durable id and reconnects by it", function()
    if not suite.need() then return end
    local sb = assert(sandlot.create("dkl", { labels = { team = "l" } }))
    local info = suite.api({ path = "/containers/" .. sb.handle.container .. "/json" }).json
    assert.equal(sb.durable_id, info.Config.Labels[ledger.LABEL])
    assert.equal(sb.id, info.Config.Labels["sandlot.id"])      -- docker's own label stays
    assert.equal("l", info.Config.Labels.team)
    local rec = assert(assert(ledger.open()):get(sb.durable_id))
    assert.same({ "active", sb.id, "dkl", "docker", sb.handle.container },
                { rec.state, rec.external_id, rec.provider, rec.module, rec.handle.container })
    local again = assert(sandlot.get(sb.durable_id))
    assert.equal(sb.handle.container, again.handle.container)
    assert.equal("hi\n", assert(again:exec({ "echo", "hi" })).stdout)
    assert(again:destroy())
    assert.equal("destroyed", assert(assert(ledger.open()):get(sb.durable_id)).state)
  end)
end)
