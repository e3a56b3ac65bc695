-- spec/cli_gc_spec.lua: `sandlot gc` run by the built host from a directory outside the
-- checkout: providers are found by module name and by configured name, the provider's gc
-- operation (the contract's, not a private function) gets the configured options, and its
-- report is printed.
local h = require("spec.helper")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("sandlot gc", function()
  local tmp, env

  lazy_setup(function()
    tmp = h.tmpdir()
    assert(require("sandlot").proc.run({ "mkdir", "-p", tmp .. "/lib/providers",
                                         tmp .. "/work" }))
    -- a provider with gc, found through SANDLOT_PATH; it reports what its config says
    write(tmp .. "/lib/providers/tidy.lua", [[
local function nope() return nil, require("sandlot.errors").new("not_supported", "no") end
return {
  name = "tidy", config = { keep = "string" },
  create = nope, destroy = nope, status = nope, exec = nope,
  gc = function(ctx, opts)
    return {
      { id = ctx.config.keep, state = "running", reason = "kept", removed = false },
      { id = "old1", state = "exited", reason = "exited", removed = not opts.dry_run },
    }
  end,
}
]])
    write(tmp .. "/lib/providers/failing.lua", [[
local function nope() return nil, require("sandlot.errors").new("not_supported", "no") end
return { name = "failing", create = nope, destroy = nope, status = nope, exec = nope,
  gc = function()
    return { { id = "old2", state = "exited", reason = "exited", removed = false } }
  end }
]])
    write(tmp .. "/lib/providers/nogc.lua", [[
local function nope() return nil, require("sandlot.errors").new("not_supported", "no") end
return { name = "nogc", create = nope, destroy = nope, status = nope, exec = nope }
]])
    write(tmp .. "/work/sandlot.config.lua", [[
return { providers = {
  mine = { "tidy", keep = "k1" },
  far = { "docker", host = "unix://]] .. tmp .. [[/no-such-docker.sock" },
} }
]])
    env = { SANDLOT_PATH = tmp .. "/lib", SANDLOT_CONFIG = false, DOCKER_HOST = false,
            XDG_CONFIG_HOME = tmp .. "/xdg" }
  end)

  lazy_teardown(function()
    h.rmtree(tmp)
  end)

  local function gc(args)
    local argv = { "gc" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return h.host(argv, { cwd = tmp .. "/work", env = env })
  end

  it("calls the configured provider's gc with its options and prints the report", function()
    local code, out, err = gc({ "--provider", "mine" })
    assert.equal(0, code, err)
    assert.equal("kept    k1 (running, kept)\nremoved old1 (exited, exited)\n", out)
    code, out = gc({ "--provider", "mine", "--dry-run" })
    assert.equal(0, code)
    assert.matches("would remove old1", out, 1, true)
  end)

  it("--json prints the report with each entry's action", function()
    local json = require("sandlot.wire.json")
    local code, out, err = gc({ "--provider", "mine", "--json" })
    assert.equal(0, code, err)
    assert.same({ provider = "mine", dry_run = false, items = {
      { id = "k1", state = "running", reason = "kept", removed = false, action = "kept" },
      { id = "old1", state = "exited", reason = "exited", removed = true, action = "removed" },
    } }, json.decode(out))
    code, out = gc({ "--provider", "mine", "--json", "--dry-run" })
    assert.equal(0, code)
    local doc = json.decode(out)
    assert.is_true(doc.dry_run)
    assert.equal("would_remove", doc.items[2].action)
  end)

  it("exits 1 when a removal failed", function()
    local code, out = gc({ "--provider", "failing" })
    assert.equal(1, code)
    assert.matches("FAILED  old2 (exited, exited)", out, 1, true)
  end)

  it("finds a bundled provider by module name and by configured name, from any directory",
    function()
      -- docker is found (from outside the checkout) and answers that its daemon is unreachable;
      -- the configured name reaches it with the configured host
      for name, host in pairs({ docker = "unix:///var/run/docker.sock",
                                far = "unix://" .. tmp .. "/no-such-docker.sock" }) do
        local code, out, err = gc({ "--provider", name })
        assert.equal(1, code, out .. err)
        assert.not_matches("no provider named", err)
        assert.matches("^sandlot: gc: ", err)
        assert.matches("cannot reach the Docker daemon at " .. host, err, 1, true)
      end
    end)

  it("says so for a provider without gc, and for an unknown one", function()
    local code, _, err = gc({ "--provider", "nogc" })
    assert.equal(1, code)
    assert.matches("provider nogc has no gc", err, 1, true)
    code, _, err = gc({ "--provider", "no_such_provider_xyz" })
    assert.equal(1, code)
    assert.matches("no provider named 'no_such_provider_xyz'", err, 1, true)
    code, _, err = gc({})
    assert.equal(2, code)
    assert.matches("usage: sandlot gc", err, 1, true)
  end)
end)
