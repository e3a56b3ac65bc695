-- spec/plugins_examples_spec.lua: the shipped plugins (plugins/audit.lua, budget.lua,
-- reaper.lua), loaded by name from the config as a user would, and the `sandlot plugins` CLI.
local sandlot = require("sandlot")
local h = require("spec.helper")
local plugins = require("sandlot.plugins")
local config = require("sandlot.config")

local sdir

local function use(conf)
  config.set({ plugins = conf })
  plugins.reset()
  plugins.load_all()
end

describe("shipped plugins", function()
  before_each(function()
    sdir = h.tmpdir()
    plugins.state_dir = sdir
  end)
  after_each(function()
    plugins.reset()
    plugins.state_dir = nil
    config.reset()
    h.rmtree(sdir)
  end)

  it("audit writes one JSON line per operation with secrets redacted", h.task(function()
    use({ audit = {} })
    local secret = "sekr3t-Value-42"
    local sb = assert(sandlot.create("local", { env = { API_TOKEN = secret } }))
    assert(sb:exec({ "sh", "-c", "echo hi", "--token", secret }))
    assert(sb:destroy())
    local f = assert(io.open(sdir .. "/audit/data/audit.jsonl"))
    local text = f:read("a")
    f:close()
    local ops = {}
    for line in text:gmatch("[^\n]+") do
      ops[#ops + 1] = require("sandlot.wire.json").decode(line).op
    end
    assert.same({ "create", "created", "exec", "destroy" }, ops)
    assert.is_nil(text:find(secret, 1, true))
    assert.matches("API_TOKEN", text)                 -- the name stays, the value goes
    assert.equal(4, plugins.info("audit").state.lines)
  end))

  it("budget refuses creates past the count and names the budget", h.task(function()
    use({ budget = { config = { max_creates = 2 } } })
    local _a <close> = assert(sandlot.create("local", {}))
    local _b <close> = assert(sandlot.create("local", {}))
    local c, err = sandlot.create("local", {})
    assert.is_nil(c)
    assert.equal("permission_denied", err.code)
    assert.matches("plugin budget vetoed create: budget max_creates = 2 is spent", err.message)
  end))

  it("budget refuses a create whose estimated cost passes max_cost", h.task(function()
    use({ budget = { config = { max_cost = 3, cost_per_cpu = 1 } } })
    local _a <close> = assert(sandlot.create("local", { cpus = 2 }))
    local c, err = sandlot.create("local", { cpus = 2 })
    assert.is_nil(c)
    assert.matches("budget max_cost = 3 would be exceeded", err.message)
  end))

  it("reaper destroys sandboxes idle past the limit", h.task(function()
    use({ reaper = { grants = { "sandbox" }, config = { idle_s = 0 } } })
    local old = assert(sandlot.create("local", {}))
    local new <close> = assert(sandlot.create("local", {}))  -- touches `new`, reaps `old`
    -- the reaper notes the id once destroy returned (its journal write waits on the ledger's
    -- writer thread after _destroyed is set)
    assert.is_true(h.eventually(function()
      return #(plugins.info("reaper").state.reaped or {}) > 0 end, 5))
    assert.is_true(old._destroyed)
    assert.is_nil(new._destroyed)
    assert.same({ old.id }, plugins.info("reaper").state.reaped)
  end))

  it("reaper without the sandbox grant cannot destroy anything", h.task(function()
    use({ reaper = { config = { idle_s = 0 } } })
    local old <close> = assert(sandlot.create("local", {}))
    local real, buf = io.stderr, {}
    io.stderr = { write = function(_, ...)
      for _, s in ipairs({ ... }) do buf[#buf + 1] = s end
    end }
    local _new <close> = assert(sandlot.create("local", {}))
    sandlot.sleep(0.05)
    io.stderr = real
    assert.is_nil(old._destroyed)
    assert.matches("attempt to index a nil value", table.concat(buf))
  end))
end)

describe("sandlot plugins (CLI)", function()
  local dir, state
  before_each(function()
    dir, state = h.tmpdir(), h.tmpdir()
    local f = assert(io.open(dir .. "/hello.lua", "w"))
    f:write([[return { name = "hello", version = "1.0",
      commands = { greet = { summary = "greets", run = function(args)
        sandlot.out("hello ", args[1] or "you", "\n") return 0 end } } }]])
    f:close()
  end)
  after_each(function()
    h.rmtree(dir)
    h.rmtree(state)
  end)

  local function run(args)
    return h.host(args, { cwd = "/tmp", env = { SANDLOT_PLUGIN_PATH = dir, XDG_STATE_HOME = state,
                                                HOME = state, PATH = os.getenv("PATH") } })
  end

  it("lists plugins, as JSON too, and runs a plugin's command", h.task(function()
    local code, out = run({ "plugins" })
    assert.equal(0, code)
    assert.matches("hello%s+1.0%s+enabled", out)
    local c2, js = run({ "plugins", "--json" })
    assert.equal(0, c2)
    local list = require("sandlot.wire.json").decode(js)
    assert.equal("hello", list[1].name)
    assert.equal("1.0", list[1].version)
    assert.equal("number", type(list[1].memory))
    local c3, o3 = run({ "greet", "bob" })
    assert.equal(0, c3)
    assert.equal("hello bob\n", o3)
  end))

  it("enable, and rollback to a stored version that later runs keep", h.task(function()
    local c0, _, e0 = run({ "plugins", "enable", "nope" })
    assert.equal(1, c0)
    assert.matches("no plugin named 'nope'", e0)
    assert.equal(0, (run({ "plugins", "enable", "hello" })))
    run({ "plugins" })                                      -- stores version 1.0
    local f = assert(io.open(dir .. "/hello.lua", "w"))
    f:write([[return { name = "hello", version = "2.0" }]])
    f:close()
    local _, out = run({ "plugins" })
    assert.matches("hello%s+2.0", out)
    local c, o = run({ "plugins", "rollback", "hello", "1.0" })
    assert.equal(0, c, o)
    local _, after = run({ "plugins" })
    assert.matches("hello%s+1.0", after)
  end))
end)
