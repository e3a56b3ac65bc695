-- spec/conformance_docker_spec.lua: the conformance suite against the docker provider, on the
-- daemon spec/support/docker.lua finds or starts (tagged #docker; pending without dockerd,
-- a failure when CI is set), and again with the exec agent on (exec_agent = true: every exec
-- through the long-lived agent in the container, sandlot._native.docker_agent).
local sandlot = require("sandlot")
local conformance = require("spec.conformance")
local docker = require("spec.support.docker")

describe("docker provider #docker", function()
  local env, why

  lazy_setup(function()
    env, why = docker.start()
    if env then
      sandlot.config.set({ providers = {
        ["conf-docker"] = { "docker", host = env.host, image = env.image, pull = false },
        ["conf-docker-agent"] = { "docker", host = env.host, image = env.image, pull = false,
                                  exec_agent = true },
      } })
    end
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    docker.stop(env)
  end)

  it("has a Docker daemon", function()
    if not env then pending(docker.unavailable(why)) end
  end)

  local function skip() return not env and ("no Docker daemon: " .. tostring(why)) end
  conformance({ provider = "conf-docker", label = "docker", network_create = false,
                skip = skip })
  conformance({ provider = "conf-docker-agent", label = "docker exec_agent",
                network_create = false, skip = skip })

  it("ran the exec_agent suite's execs through agents (none fell back for good)", function()
    if not env then pending(docker.unavailable(why)) end
    local agent = require("sandlot._native.docker_agent")
    assert.is_true(agent._started > 0)
    for _, a in pairs(agent._agents) do assert.is_nil(a.broken) end
  end)
end)
