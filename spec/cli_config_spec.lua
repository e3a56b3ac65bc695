-- spec/cli_config_spec.lua: `sandlot config [check] [--json]`: the resolved config with
-- secrets masked, and a check of every configured provider as sandlot.create would make it.
local json = require("sandlot.wire.json")
local h = require("spec.helper")

local SECRET = "hunter2-PLANTED-" .. require("sandlot.id").hex(6)

describe("sandlot config", function()
  local tmp, env
  lazy_setup(function()
    tmp = h.tmpdir()
    local f = assert(io.open(tmp .. "/config.lua", "wb"))
    f:write(([[
return { default = "dev", providers = {
  dev = { "local" },
  box = { "docker", host = "unix:///nowhere.sock", image = env("SANDLOT_SPEC_UNSET_IMAGE") },
  far = { "ssh", host = "h.example", password = %q, user = env("SANDLOT_SPEC_USER", "root"),
          key = env("SANDLOT_SPEC_KEY") },
  typo = { "docker", imgae = "x" },
} }
]]):format(SECRET))
    f:close()
    env = { SANDLOT_CONFIG = tmp .. "/config.lua", SANDLOT_PROVIDER = false,
            SANDLOT_SPEC_KEY = SECRET, SANDLOT_SPEC_UNSET_IMAGE = false, SANDLOT_SPEC_USER = false }
  end)

  local function run(args) return h.host(args, { env = env }) end

  it("prints the file, the default and its source, and each provider's options", function()
    local code, out, err = run({ "config" })
    assert.equal(0, code, err)
    assert.matches("config file: " .. tmp .. "/config.lua", out, 1, true)
    assert.matches("default provider: dev (from config default)", out, 1, true)
    assert.matches("provider far (module ssh)", out, 1, true)
    assert.matches('host%s+"h.example"', out)
    assert.matches("user%s+env%(SANDLOT_SPEC_USER%) %[unset, has a default%]", out)
    assert.matches("key%s+env%(SANDLOT_SPEC_KEY%) %[set%]", out)
  end)

  it("never prints a secret, in text or JSON " ..
     "(the secret is in the file and the environment)", function()
    local text = assert(io.open(tmp .. "/config.lua")):read("a")
    assert.truthy(text:find(SECRET, 1, true))             -- planted where it would leak from
    for _, args in ipairs({ { "config" }, { "config", "--json" }, { "config", "check" },
                           { "config", "check", "--json" } }) do
      local _, out, err = run(args)
      assert.is_nil(out:find(SECRET, 1, true), table.concat(args, " "))
      assert.is_nil(err:find(SECRET, 1, true), table.concat(args, " "))
      assert.matches("[REDACTED]", out, 1, true)
    end
  end)

  it("check names each provider's problem and exits 1", function()
    local code, out = run({ "config", "check" })
    assert.equal(1, code)
    assert.matches("provider dev (module local)  ok", out, 1, true)
    assert.matches("provider far (module ssh)  ok", out, 1, true)
    assert.matches("providers.box.image: environment variable SANDLOT_SPEC_UNSET_IMAGE is not set",
                   out, 1, true)
    assert.matches("providers.typo.imgae: unknown option for provider docker " ..
                   "(did you mean 'image'?)", out, 1, true)
    assert.matches("4 provider(s), 2 with problems", out, 1, true)
  end)

  it("check --json has the documented shape", function()
    local code, out = run({ "config", "check", "--json" })
    assert.equal(1, code)
    local doc = assert(json.decode(out))
    assert.equal("dev", doc.default)
    assert.equal("config default", doc.default_from)
    local by = {}
    for _, p in ipairs(doc.providers) do by[p.name] = p end
    assert.equal(0, #by.dev.problems)
    assert.equal(1, #by.typo.problems)
    local opts = {}
    for _, kv in ipairs(by.far.options) do opts[kv.key] = kv.value end
    assert.equal("h.example", opts.host)
    assert.equal("[REDACTED]", opts.password)
    assert.same({ env = "SANDLOT_SPEC_KEY", set = true, default = false }, opts.key)
  end)

  it("passes with a clean config, says so with none, and refuses a stray argument", function()
    local code, out = h.host({ "config", "check" },
                             { env = { SANDLOT_CONFIG = false, XDG_CONFIG_HOME = tmp .. "/none" },
                               cwd = tmp })
    assert.equal(0, code)
    assert.matches("config file: (none", out, 1, true)
    local c2, _, err = run({ "config", "chek" })
    assert.equal(2, c2)
    assert.matches("sandlot: config: unknown argument 'chek'", err, 1, true)
    local c3, help = run({ "config", "--help" })
    assert.equal(0, c3)
    assert.matches("usage: sandlot config [check] [--json]", help, 1, true)
  end)
end)
