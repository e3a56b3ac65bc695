-- spec/cli_gc_spec.lua: `sandlot gc` run by the built host from a directory outside the
-- checkout: providers are found by module name and by configured name, the provider's gc
-- operation (the contract's, not a private function) gets the configured options, and what it
-- would remove (or removed, with --yes) is printed. The reconciliation with the ledger itself
-- is spec/gc_reconcile_spec.lua and spec/gc_fault_spec.lua.
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

  it("runs the configured provider's own gc with its options: a dry run unless --yes",
    function()
      local code, out, err = gc({ "--provider", "mine" })
      assert.equal(0, code, err)
      assert.matches("leftover%s+mine%s+%-%s+old1%s+would destroy%s+exited %(exited%)", out)
      assert.not_matches("k1", out)                              -- kept ones are not listed
      assert.matches("a dry run", out, 1, true)
      assert.matches("sandlot: gc: mine: skipped: it has no list operation", err, 1, true)
      code, out = gc({ "--provider", "mine", "--yes" })
      assert.equal(0, code)
      assert.matches("leftover%s+mine%s+%-%s+old1%s+destroyed", out)
    end)

  it("--json prints {dry_run, providers, items}", function()
    local json = require("sandlot.wire.json")
    local code, out, err = gc({ "--provider", "mine", "--json", "-y" })
    assert.equal(0, code, err)
    assert.same({ dry_run = false,
      providers = { { provider = "mine", skipped = "it has no list operation" } },
      items = { { kind = "leftover", provider = "mine", external_id = "old1",
                  reason = "exited (exited)", action = "destroyed" } } }, json.decode(out))
    code, out = gc({ "--provider", "mine", "--json" })
    assert.equal(0, code)
    local doc = json.decode(out)
    assert.is_true(doc.dry_run)
    assert.equal("would_destroy", doc.items[1].action)
  end)

  it("exits 1 when a removal failed", function()
    local code, out = gc({ "--provider", "failing", "--yes" })
    assert.equal(1, code)
    assert.matches("leftover%s+failing%s+%-%s+old2%s+FAILED", out)
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
        assert.matches("^sandlot: gc: " .. name .. ": ", err)
        assert.matches("cannot reach the Docker daemon at " .. host, err, 1, true)
      end
    end)

  it("says so for an unknown provider and for bad arguments", function()
    local code, _, err = gc({ "--provider", "no_such_provider_xyz" })
    assert.equal(1, code)
    assert.matches("no provider named 'no_such_provider_xyz'", err, 1, true)
    code, _, err = gc({ "--older-than", "soon" })
    assert.equal(2, code)
    assert.matches("usage: sandlot gc", err, 1, true)
    code, _, err = gc({ "--yes", "--dry-run" })
    assert.equal(2, code)
    assert.matches("contradict", err, 1, true)
  end)
end)
