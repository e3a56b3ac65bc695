-- spec/ledger_docker_spec.lua: the journal on a real Docker daemon (spec/support/docker.lua):
-- the container carries the durable id as a label, the ledger row holds the provider's id and
-- handle, and sandlot.get reconnects to the container by durable id.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local ledger = require("sandlot.ledger")
local docker = require("spec.support.docker")

describe("the ledger on docker #docker", function()
  local env, why

  lazy_setup(function()
    env, why = docker.start()
    if env then
      sandlot.config.set({ providers = {
        dkl = { "docker", host = env.host, image = env.image, pull = false },
      } })
    end
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    docker.stop(env)
  end)

  it("labels the container with the durable id and reconnects by it", function()
    if not env then return pending(docker.unavailable(why)) end
    local sb = assert(sandlot.create("dkl", { labels = { team = "l" } }))
    local info = assert(http.request({ unix_socket = env.socket,
      path = "/containers/" .. sb.handle.container .. "/json" })).json
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
