-- spec/plugins_spec.lua: isolated plugins: budgets (instructions, wall clock, memory), faults
-- and the breaker, vetoes and changed options, the whitelist, reload, rollback, migration and
-- hot reload. Every plugin lives in a fresh temporary directory with its own state directory.
local sandlot = require("sandlot")
local h = require("spec.helper")
local plugins = require("sandlot.plugins")
local config = require("sandlot.config")
local core = require("sandlot.core.plugin")

local dir, sdir

local function write(name, src)
  local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
  f:write(src)
  f:close()
end

local function use(conf)
  conf = conf or {}
  conf.path = dir
  config.set({ plugins = conf })
  plugins.reset()
  plugins.load_all()
end

local function quiet(fn)                  -- plugin warnings go to stderr: keep the report clean
  local real = io.stderr
  local buf = {}
  io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end end }
  local ok, err = pcall(fn)
  io.stderr = real
  if not ok then error(err, 0) end
  return table.concat(buf)
end

describe("sandlot.core.plugin", function()
  local function new(opts)
    opts = opts or {}
    opts.name = opts.name or "t"
    return assert(core.new(opts))
  end

  it("stops a loop that runs forever past its instruction budget", function()
    local st <close> = new({ instructions = 100000 })
    assert.equal("ok", (st:load("return { f = function() while true do end end, " ..
                                 "g = function() return 42 end }")))
    local s, err = st:call("invoke", "f", "f")
    assert.equal("fault", s)
    assert.equal("timeout", err.code)
    assert.matches("exceeded 100000 instructions in f", err.message)
    local s2, v = st:call("invoke", "g", "g")          -- the state goes on
    assert.same({ "ok", 42 }, { s2, v })
  end)

  it("a pcall inside the plugin cannot swallow the stop", function()
    local st <close> = new({ instructions = 100000 })
    st:load("return { f = function() " ..
            "while true do pcall(function() while true do end end) end end }")
    local s, err = st:call("invoke", "f", "f")
    assert.same({ "fault", "timeout" }, { s, err.code })
  end)

  it("stops cheap-instruction work past the wall clock", function()
    local st <close> = new({ wall_ms = 20, instructions = 1e12 })
    st:load("return { f = function() while true do local _ = ('x'):rep(4096) end end }")
    local s, err = st:call("invoke", "f", "f")
    assert.same({ "fault", "timeout" }, { s, err.code })
    assert.matches("exceeded 20 ms", err.message)
  end)

  it("caps memory: a plugin that allocates without limit fails that call only", function()
    local st <close> = new({ memory = 4 * 1024 * 1024, instructions = 1e12, wall_ms = 20000 })
    st:load("return { hog = function() local t = {} " ..
            "for i = 1, 1e9 do t[i] = ('x'):rep(64) .. i end end, caught = function() " ..
            "pcall(function() local t = {} for i = 1, 1e9 do t[i] = {} end end) " ..
            "return 'survived' end, ok = function() return 'fine' end }")
    local s, err = st:call("invoke", "hog", "hog")
    assert.same({ "fault", "quota_exceeded" }, { s, err.code })
    assert.is_true(st:stats().peak <= 4 * 1024 * 1024)
    local s2, e2 = st:call("invoke", "caught", "caught")      -- caught by pcall: still a fault
    assert.same({ "fault", "quota_exceeded" }, { s2, e2.code })
    assert.same({ "ok", "fine" }, { st:call("invoke", "ok", "ok") })
  end)

  it("refuses what cannot cross: functions, and values with metatables", function()
    local st <close> = new()
    st:load("return { f = function() return function() end end, echo = function(x) return x end }")
    local s, err = st:call("invoke", "f", "f")
    assert.same({ "fault", "invalid_input" }, { s, err.code })
    assert.matches("function cannot be copied", err.message)
    local s2, e2 = st:call("invoke", "echo", "echo", setmetatable({}, {}))
    assert.same({ "fault", "invalid_input" }, { s2, e2.code })
    local s3, v = st:call("invoke", "echo", "echo", { a = { 1, 2, "x" }, n = 2 ^ 53 })
    assert.equal("ok", s3)
    assert.same({ a = { 1, 2, "x" }, n = 2 ^ 53 }, v)
  end)

  it("has no io, os.execute, debug, package, dofile, loadfile or binary chunks", function()
    local st <close> = new()
    st:load([[return { probe = function()
      return { io = type(io), execute = type(os.execute), exit = type(os.exit),
               getenv = type(os.getenv), debug = type(debug), package = type(package),
               dofile = type(dofile), loadfile = type(loadfile), require = type(require),
               dump = type(string.dump), time = type(os.time),
               bin = select(2, load("\27Lua")) }
    end, gc = function() return pcall(setmetatable, {}, { __gc = function() end }) end }]])
    local s, v = st:call("invoke", "probe", "probe")
    assert.equal("ok", s)
    assert.same({ io = "nil", execute = "nil", exit = "nil", getenv = "nil", debug = "nil",
                  package = "nil", dofile = "nil", loadfile = "nil", require = "nil",
                  dump = "nil", time = "function" },
                { io = v.io, execute = v.execute, exit = v.exit, getenv = v.getenv,
                  debug = v.debug, package = v.package, dofile = v.dofile,
                  loadfile = v.loadfile, require = v.require, dump = v.dump, time = v.time })
    assert.matches("binary chunk", v.bin)
    local _, ok = st:call("invoke", "gc", "gc")
    assert.is_false(ok)
  end)

  it("reports the memory of a state", function()
    local st <close> = new()
    local m = st:stats().memory
    assert.is_true(m > 1000 and m < 300 * 1024, tostring(m))
  end)
end)

describe("sandlot.plugins", function()
  before_each(function()
    dir, sdir = h.tmpdir(), h.tmpdir()
    plugins.state_dir = sdir
  end)
  after_each(function()
    plugins.reset()
    plugins.state_dir = nil
    config.reset()
    h.rmtree(dir)
    h.rmtree(sdir)
  end)

  it("a veto fails the create with the plugin's name and reason", h.task(function()
    write("gate", [[return { name = "gate", version = "1",
      before_create = function(o) if o.name == "bad" then return false, "no bad names" end
                                  o.labels = { gated = "yes" } return o end }]])
    use()
    local sb, err = sandlot.create("local", { name = "bad" })
    assert.is_nil(sb)
    assert.equal("permission_denied", err.code)
    assert.equal("gate", err.plugin)
    assert.matches("plugin gate vetoed create: no bad names", err.message)
    local ok <close> = assert(sandlot.create("local", { name = "good" }))
    assert.is_truthy(ok)
  end))

  it("a plugin that raises in every hook never stops the operations; the breaker trips",
    h.task(function()
      write("boom", [[return { name = "boom", version = "1",
        before_create = function() error("bc") end, after_create = function() error("ac") end,
        after_exec = function() error("ae") end, before_destroy = function() error("bd") end }]])
      use()
      local text = quiet(function()
        local sb = assert(sandlot.create("local", {}))
        assert.equal("x\n", assert(sb:exec({ "echo", "x" })).stdout)
        assert(sb:destroy())
      end)
      assert.matches("plugin boom raised in before_create: .*bc", text)
      local info = plugins.info("boom")
      assert.equal(4, info.faults)
      assert.equal("enabled", info.status)
      text = quiet(function()
        local sb = assert(sandlot.create("local", {}))
        sb:destroy()
      end)
      assert.equal("failed", plugins.info("boom").status)
      assert.matches("disabled after 5 faults", text)
      local before = plugins.info("boom").faults
      local sb = assert(sandlot.create("local", {}))   -- hooks skipped now
      sb:destroy()
      assert.equal(before, plugins.info("boom").faults)
      assert(plugins.enable("boom"))
      assert.equal("enabled", plugins.info("boom").status)
    end))

  it("a looping before_create is stopped; the create goes on", h.task(function()
    write("spin", [[return { name = "spin", version = "1",
      before_create = function() while true do end end }]])
    use({ spin = { limits = { instructions = 50000 } } })
    local text = quiet(function()
      local sb = assert(sandlot.create("local", {}))
      sb:destroy()
    end)
    assert.matches("plugin spin exceeded 50000 instructions in before_create", text)
    assert.equal("timeout", plugins.info("spin").last_error.code)
  end))

  it("after_exec sees the result; info copies state", h.task(function()
    write("seen", [[return { name = "seen", version = "1",
      after_exec = function(r, sb) state.code = r.exit_code; state.cmd = sb.command end }]])
    use()
    local sb <close> = assert(sandlot.create("local", {}))
    sb:exec({ "sh", "-c", "exit 3" })
    local info = plugins.info("seen")
    assert.equal(3, info.state.code)
    assert.equal("sh -c exit 3", info.state.cmd)
    info.state.code = 99
    assert.equal(3, plugins.info("seen").state.code)
  end))

  it("reload migrates state; a version that fails to load leaves the old one running",
    h.task(function()
      write("mig", [[state.n = state.n or 0
        return { name = "mig", version = "1", after_exec = function() state.n = state.n + 1 end }]])
      use()
      local sb <close> = assert(sandlot.create("local", {}))
      sb:exec({ "true" })
      sb:exec({ "true" })
      write("mig", [[return { name = "mig", version = "2",
        migrate = function(old, from, to) return { count = old.n * 10, from = from, to = to } end,
        after_exec = function() state.count = state.count + 1 end }]])
      assert(plugins.reload("mig"))
      local info = plugins.info("mig")
      assert.equal("2", info.version)
      assert.same({ count = 20, from = "1", to = "2" }, info.state)
      write("mig", "return { name = 'mig', version = '3', after_exec = function( end }")
      local ok, err
      local text = quiet(function() ok, err = plugins.reload("mig") end)
      assert.is_nil(ok)
      assert.equal("invalid_input", err.code)
      assert.matches("reload failed, version 2 keeps running", text)
      sb:exec({ "true" })
      assert.equal("2", plugins.info("mig").version)
      assert.equal(21, plugins.info("mig").state.count)
    end))

  it("a migrate that raises keeps the old version and its state", h.task(function()
    write("m2", [[state.v = 1 return { name = "m2", version = "1" }]])
    use()
    write("m2", [[return { name = "m2", version = "2", migrate = function() error("nope") end }]])
    local ok
    quiet(function() ok = plugins.reload("m2") end)
    assert.is_nil(ok)
    assert.equal("1", plugins.info("m2").version)
    assert.same({ v = 1 }, plugins.info("m2").state)
  end))

  it("rolls back to the previous version through migrate", h.task(function()
    write("rb", [[state.x = state.x or 1
      return { name = "rb", version = "1.0", migrate = function(s, from, to)
        s.path = (s.path or "") .. from .. ">" .. to return s end }]])
    use()
    write("rb", [[return { name = "rb", version = "2.0", migrate = function(s, from, to)
        s.path = (s.path or "") .. from .. ">" .. to .. ";" return s end }]])
    assert(plugins.reload("rb"))
    assert.equal("2.0", plugins.info("rb").version)
    assert(plugins.rollback("rb"))
    local info = plugins.info("rb")
    assert.equal("1.0", info.version)
    assert.same({ x = 1, path = "1.0>2.0;2.0>1.0" }, info.state)
    assert(plugins.rollback("rb", "2.0"))
    assert.equal("2.0", plugins.info("rb").version)
    local ok, err = plugins.rollback("rb", "9.9")
    assert.is_nil(ok)
    assert.equal("not_found", err.code)
  end))

  it("host calls need a grant: proc only when granted", h.task(function()
    local src = [[return { name = "%s", version = "1", run = function()
      return { proc = type(sandlot.proc), execute = type(os.execute), io = type(io) } end,
      try = function() return sandlot.proc.run({ "echo", "granted" }) end }]]
    write("nogrant", src:format("nogrant"))
    write("granted", src:format("granted"))
    use({ granted = { grants = { "proc" } } })
    local run = function(name, fn)
      local rec = plugins._rec(name)
      return require("sandlot._plugin_host").drive(rec, rec.st, rec.st:call("invoke", fn, fn))
    end
    local _, v = run("nogrant", "run")
    assert.same({ proc = "nil", execute = "nil", io = "nil" }, v)
    local s, err = run("nogrant", "try")
    assert.equal("fault", s)
    assert.matches("attempt to index a nil value", err.message)
    local _, g = run("granted", "run")
    assert.equal("table", g.proc)
    local s2, r = run("granted", "try")
    assert.equal("ok", s2)
    assert.equal("granted\n", r.stdout)
  end))

  it("an observer waiting on I/O never holds up the operation", h.task(function()
    write("slow", [[return { name = "slow", version = "1", after_exec = function()
      sandlot.proc.run({ "sleep", "0.3" }) state.done = true end }]])
    use({ slow = { grants = { "proc" } } })
    local sb <close> = assert(sandlot.create("local", {}))
    assert(sb:exec({ "true" }))
    assert.is_nil(plugins.info("slow").state.done)       -- exec returned first
    assert.is_true(h.eventually(function() return plugins.info("slow").state.done end, 5))
  end))

  it("a waiting hook's budget covers its host calls too", h.task(function()
    write("late", [[return { name = "late", version = "1", before_create = function()
      sandlot.proc.run({ "sleep", "5" }) end }]])
    use({ late = { grants = { "proc" }, limits = { wall_ms = 100 } } })
    local sb
    local text = quiet(function() sb = assert(sandlot.create("local", {})) end)
    sb:destroy()
    assert.matches("plugin late exceeded 100 ms in before_create", text)
  end))

  it("reloading a provider file keeps live sandboxes working, migrating handles",
    h.task(function()
      local prov = dir .. "/prov.lua"
      local src = [[return { name = "prov", version = "%s",
        create = function() return { id = "p1" } end,
        exec = function() return { exit_code = 0, stdout = "%s\n", stderr = "" } end,
        destroy = function() return true end, status = function() return "running" end,
        %s }]]
      local f = assert(io.open(prov, "w"))
      f:write(src:format("1", "v1", ""))
      f:close()
      use()
      local sb = assert(sandlot.create(prov, {}))
      assert.equal("v1\n", assert(sb:exec({ "x" })).stdout)
      f = assert(io.open(prov, "w"))
      f:write(src:format("2", "v2",
        "migrate_handle = function(h, old) h.migrated_from = old return h end"))
      f:close()
      assert(plugins.reload_provider(prov))
      assert.equal("v2\n", assert(sb:exec({ "x" })).stdout)
      assert.equal("1", sb.handle.migrated_from)
      f = assert(io.open(prov, "w"))
      f:write("return { name = 'prov', create = function( end")
      f:close()
      local ok, err = plugins.reload_provider(prov)
      assert.is_nil(ok)
      assert.equal("invalid_input", err.code)
      assert.equal("v2\n", assert(sb:exec({ "x" })).stdout)
    end))

  it("on_event receives telemetry events; a fault event does not loop back", h.task(function()
    write("tele", [[return { name = "tele", version = "1", on_event = function(e, m, meta)
      local k = table.concat(e, ".")
      state[k] = (state[k] or 0) + 1
      if k == "sandlot.exec.stop" then state.dur = m.duration > 0 end
    end }]])
    write("bad", [[return { name = "bad", version = "1", on_event = function() error("x") end }]])
    use()
    quiet(function()
      local sb <close> = assert(sandlot.create("local", {}))
      sb:exec({ "true" })
    end)
    local st = plugins.info("tele").state
    assert.equal(1, st["sandlot.exec.stop"])
    assert.equal(1, st["sandlot.create.start"])
    assert.is_true(st.dur)
    assert.is_true(plugins.info("bad").faults >= 1)
    plugins.reset()
    assert.is_false(sandlot.telemetry.active())       -- detached with the plugins
  end))

  it("a plugin's provider runs in its state", h.task(function()
    write("cloud", [[state.n = 0 return { name = "cloud", version = "1", providers = { box = {
      create = function(ctx, opts) state.n = state.n + 1 return { id = "box" .. state.n } end,
      exec = function(ctx, handle, argv) return { exit_code = 0, stdout = handle.id .. ":" ..
        table.concat(argv, " ") .. "\n", stderr = "" } end,
      destroy = function() return true end, status = function() return "running" end } } }]])
    use()
    local p = assert(plugins.provider("cloud", "box"))
    local sb <close> = assert(sandlot.create(p, {}))
    assert.equal("box1:echo hi\n", assert(sb:exec({ "echo", "hi" })).stdout)
    local none, err = plugins.provider("cloud", "nope")
    assert.is_nil(none)
    assert.equal("not_found", err.code)
  end))

  it("hot reload: a changed file is reloaded after the debounce", h.task(function()
    write("hot", [[return { name = "hot", version = "1" }]])
    use()
    assert.equal(1, plugins.watch())
    write("hot", [[return { name = "hot", version = "2" }]])
    local v = h.eventually(function()
      plugins.poll()
      return plugins.info("hot").version == "2"
    end, 5)
    assert.is_true(v)
  end))
end)
