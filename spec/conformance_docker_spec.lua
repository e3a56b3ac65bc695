-- spec/conformance_docker_spec.lua: the conformance suite against the docker provider, on the
-- daemon spec/support/docker.lua finds or starts (tagged #docker; pending without dockerd,
-- a failure when CI is set), and again with the exec agent on (exec_agent = true: every exec
-- through the long-lived agent in the container, sandlot._native.docker_agent).
local conformance = require("spec.conformance")
local docker = require("spec.support.docker")

describe("docker provider #docker", function()
  local suite = docker.suite({ ["conf-docker"] = {},
                               ["conf-docker-agent"] = { exec_agent = true } })

  it("has a Docker daemon", function() suite.need() end)

  local function skip()
    return not suite.env and ("no Docker daemon: " .. tostring(suite.why))
  end
  conformance({ provider = "conf-docker", label = "docker", network_create = false,
                skip = skip })
  conformance({ provider = "conf-docker-agent", label = "docker exec_agent",
                network_create = false, skip = skip })

  it("ran the exec_agent suite's execs through agents (none fell back for good)", function()
    if not suite.need() then return end
    local agent = require("sandlot._native.docker_agent")
    assert.is_true(agent._started > 0)
    for _, a in pairs(agent._agents) do assert.is_nil(a.broken) end
  end)
end)
