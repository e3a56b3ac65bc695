-- spec/ttl_spec.lua: create's ttl and idle_timeout as the host enforces them while it runs: a
-- sandbox past its ttl, or idle (no operation in flight, no running process) for idle_timeout,
-- is destroyed with a warning and recorded destroyed; activity postpones the idle end; a
-- destroy before the deadline ends the watch; and the watch never keeps a host from exiting.
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local dir, saved
before_each(function()
  dir = h.tmpdir()
  saved = os.getenv("XDG_STATE_HOME")
  sys.setenv("XDG_STATE_HOME", dir .. "/state")
  sys.setenv("SANDLOT_QUIET", "1")
  ledger.reset()
end)
after_each(function()
  ledger.reset()
  sys.setenv("XDG_STATE_HOME", saved)
  sys.setenv("SANDLOT_QUIET", nil)
  h.rmtree(dir)
end)

local function gone(sb)
  return sandlot.fs.stat(dir .. "/state/sandlot/local/" .. sb.id) == nil
end

local function warned(sb, what)
  for _, w in ipairs(sb.warnings) do if w:find(what, 1, true) then return true end end
  return false
end

describe("ttl and idle_timeout (the host's watch)", function()
  it("destroys a sandbox when its ttl passes, with a warning and a ledger record",
    h.task(function()
      local sb = assert(sandlot.create("local", { ttl = 0.4 }))
      assert.is_false(gone(sb))
      assert.is_true(h.eventually(function() return gone(sb) end, 5))
      assert.is_true(warned(sb, "its ttl of 0.4s has passed"))
      local rec = assert(assert(ledger.open()):get(sb.durable_id))
      assert.equal("destroyed", rec.state)
      local r, err = sb:exec({ "true" })
      assert.is_nil(r)
      assert.equal("not_found", err.code)
      assert.matches("ttl reached", err.message, 1, true)
    end))

  it("ends an idle sandbox, but not while a command or a process runs", h.task(function()
    local sb = assert(sandlot.create("local", { idle_timeout = 0.5 }))
    assert(sb:exec({ "sleep", "1" }))                         -- longer than idle_timeout
    assert.is_false(gone(sb))
    local p = assert(sb:spawn({ "sleep", "1" }))
    sandlot.sleep(0.8)
    assert.is_false(gone(sb))                                 -- the process keeps it busy
    assert(p:wait())
    p:close()
    assert.is_true(h.eventually(function() return gone(sb) end, 5))
    assert.is_true(warned(sb, "idle for 0.5s"))
  end))

  it("stops watching a sandbox destroyed before its deadline", h.task(function()
    local sb = assert(sandlot.create("local", { ttl = 0.3 }))
    assert(sb:destroy())
    sandlot.sleep(0.6)
    assert.is_false(warned(sb, "ttl"))
  end))

  it("does not keep a host from exiting", function()
    local code, out, err, r = h.host({ "-e", [[
      local sandlot = require("sandlot")
      local sb = assert(sandlot.create("local", { ttl = 3600, idle_timeout = 3600 }))
      io.write(sb.id)
    ]] }, { env = { XDG_STATE_HOME = dir .. "/state" }, timeout = 10 })
    assert.equal(0, code, err)
    assert.is_false(r.timed_out)
    assert.truthy(out:match("^%x+$"))
  end)

  it("passes ttl to the provider as its lifetime (local: create's timeout)", h.task(function()
    local sb = assert(sandlot.create("local", { ttl = 3600 }))
    local text = assert(sandlot.fs.read(dir .. "/state/sandlot/local/" .. sb.id ..
                                        "/sandbox.json"))
    local meta = require("cjson").decode(text)
    assert.is_true(meta.expires_at >= os.time() + 3590)
    assert(sb:destroy())
  end))
end)
