-- spec/examples_spec.lua: every example runs in CI, as a user would run it, on the local
-- provider, and leaves no sandbox behind.
local h = require("spec.helper")
local fs = require("sandlot.fs")

describe("examples", function()
  local tmp, env

  before_each(function()
    tmp = h.tmpdir()
    env = { XDG_STATE_HOME = tmp, SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false }
  end)

  after_each(function()
    -- nothing left in the state directory: every example destroys what it creates
    local state = fs.root(tmp .. "/sandlot/local")
    if state then
      local left = assert(state:readdir("."))
      state:close()
      assert.same({}, left)
    end
    h.rmtree(tmp)
  end)

  it("hello.lua tours exec, files and ls", function()
    local rc, out, err = h.host({ "examples/hello.lua" }, { env = env })
    assert.equal(0, rc, err)
    assert.matches("exec:      argv with 'quotes' and spaces\n", out, 1, true)
    assert.matches("shell:     exit 3, stdout 'hello from Linux\\n'", out, 1, true)
    assert.matches("read_file: Hello from sandlot!\n", out, 1, true)
    assert.matches("hello.txt  file          20 bytes", out, 1, true)
    assert.matches("missing:   nil (code not_found)", out, 1, true)
    assert.matches("status is now terminated", out, 1, true)
  end)

  it("fanout.lua runs 20 sandboxes concurrently", function()
    local rc, out, err = h.host({ "examples/fanout.lua" }, { env = env, timeout = 120 })
    assert.equal(0, rc, err)
    assert.matches("20 of 20 sandboxes succeeded", out, 1, true)
    assert.matches("\n 20  %x+%s+0  400 ", out)
  end)

  it("replicate.lua calls a host-only module in a replica", function()
    local rc, out, err = h.host({ "examples/replicate.lua" }, { env = env })
    assert.equal(0, rc, err)
    assert.matches("replica x86_64: %d+ bytes shipped\n", out)
    assert.matches("summary: mean 3.875, max 9\n", out, 1, true)
    assert.matches("run_many: 10 of 20 commands exited 0, in one call\n", out, 1, true)
    assert.matches("eval: 2 args, Lua 5.4\n", out, 1, true)
    assert.matches("stream: 1 4 9 16 25\n", out, 1, true)
    assert.matches("error: nil, invalid_input: summary needs a non-empty list\n", out, 1, true)
    assert.matches("again: 0 bytes shipped (cache hit: true)\n", out, 1, true)
  end)

  it("restart.lua restores a handle in a second process", function()
    local rc, out, err = h.host({ "examples/restart.lua" }, { env = env })
    assert.equal(0, rc, err)
    assert.matches("[second process] restored sandlot.sandbox(local:", out, 1, true)
    assert.matches("counter = 41 + 1", out, 1, true)
    assert.matches("status now terminated", out, 1, true)
    assert.is_nil(out:find("token", 1, true))
  end)
end)
