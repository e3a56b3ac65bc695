-- spec/conformance_docker_spec.lua: the conformance suite against the docker provider, on the
-- daemon spec/support/docker.lua finds or starts (tagged #docker; pending without dockerd,
-- a failure when CI is set).
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

  conformance({ provider = "conf-docker", label = "docker", network_create = false,
                skip = function() return not env and ("no Docker daemon: " .. tostring(why)) end })
end)
