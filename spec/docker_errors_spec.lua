-- spec/docker_errors_spec.lua: with no Docker daemon, the error names the address it tried,
-- where that address came from, and what is wrong there, instead of curl's "Failed to connect
-- to docker port 80". Needs no daemon: every address here is one where none can answer.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local fs = require("sandlot.fs")
local h = require("spec.helper")

describe("docker provider without a daemon", function()
  local saved = os.getenv("DOCKER_HOST")
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() sys.setenv("DOCKER_HOST", saved) end)

  local function create_err()
    local sb, err = sandlot.create("docker", { timeout = 20 })
    if sb then sb:destroy() end
    assert.is_nil(sb, "a daemon answered where none should")
    return err
  end

  it("says the socket named by $DOCKER_HOST does not exist", function()
    sys.setenv("DOCKER_HOST", "unix://" .. dir .. "/missing.sock")
    local err = create_err()
    assert.equal("unavailable", err.code)
    assert.matches("at unix://" .. dir .. "/missing.sock ($DOCKER_HOST): the socket does not exist",
                   err.message, 1, true)
    assert.is_nil(err.message:find("docker port 80", 1, true))
  end)

  it("says nothing answers on a path that exists", function()
    local f = assert(io.open(dir .. "/not-a-socket", "wb"))
    f:close()
    sys.setenv("DOCKER_HOST", dir .. "/not-a-socket")
    local err = create_err()
    assert.matches("nothing answers on the socket", err.message, 1, true)
  end)

  it("names the provider's host option as the source", function()
    local config = require("sandlot.config")
    config.set({ providers = { d = { "docker", host = "unix://" .. dir .. "/cfg.sock" } } })
    local sb, err = sandlot.create("d", { timeout = 20 })
    config.reset()
    if sb then sb:destroy() end
    assert.is_nil(sb)
    assert.matches("(the provider's host option)", err.message, 1, true)
  end)

  it("treats an empty DOCKER_HOST as unset, as the docker CLI does", function()
    if fs.stat("/var/run/docker.sock") then
      pending("/var/run/docker.sock exists here: the default would reach a daemon")
      return
    end
    sys.setenv("DOCKER_HOST", "")
    local err = create_err()
    assert.matches("at unix:///var/run/docker.sock (the default", err.message, 1, true)
  end)

  it("refuses an address scheme it cannot use, naming it", function()
    sys.setenv("DOCKER_HOST", "ssh://user@host")
    local err = create_err()
    assert.equal("invalid_input", err.code)
    assert.matches("ssh://user@host ($DOCKER_HOST): only unix:// and tcp://", err.message, 1, true)
  end)
end)
