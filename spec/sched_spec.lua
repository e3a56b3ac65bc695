-- spec/sched_spec.lua: tasks, joins, cancellation, timeouts, map/all.
local sandlot = require("sandlot")
local h = require("spec.helper")

describe("tasks", function()
  it("spawn and join return the function's results", function()
    local t = sandlot.spawn(function(a, b) sandlot.sleep(0.01); return a + b, "x", nil end, 2, 3)
    local s, x = t:join()
    assert.equal(5, s)
    assert.equal("x", x)
    assert.is_true(t:done())
    assert.equal(3, select("#", t:join()))          -- join again: same results
  end)

  it("join re-raises the task's error with the task's traceback", function()
    local t = sandlot.spawn(function()
      local function deep() error("kaboom") end
      sandlot.sleep(0)
      deep()
    end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("kaboom", err)
    assert.matches("in task %d+", err)
    assert.matches("deep", err)
  end)

  it("join re-raises error tables intact, adding the traceback", function()
    local t = sandlot.spawn(function() error(sandlot.errors.new("not_found", "gone")) end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.equal("not_found", err.code)
    assert.is_string(err.traceback)
  end)

  it("task.now is monotonic seconds that follow a sleep", function()
    local task = require("sandlot.task")
    local t0 = task.now()
    assert.is_number(t0)
    sandlot.sleep(0.2)
    local dt = task.now() - t0
    assert.is_true(dt >= 0.19 and dt < 5, "elapsed " .. dt)
  end)

  it("tasks interleave on sleeps", function()
    local order = {}
    local a = sandlot.spawn(function() sandlot.sleep(0.05); order[#order + 1] = "a" end)
    local b = sandlot.spawn(function() sandlot.sleep(0.01); order[#order + 1] = "b" end)
    a:join(); b:join()
    assert.same({ "b", "a" }, order)
  end)

  it("a plain coroutine.yield inside a task is a pass to other tasks", function()
    local order = {}
    local a = sandlot.spawn(function()
      order[#order + 1] = 1
      coroutine.yield()
      order[#order + 1] = 3
    end)
    local b = sandlot.spawn(function() order[#order + 1] = 2 end)
    a:join(); b:join()
    assert.same({ 1, 2, 3 }, order)
  end)

  it("cancel wakes a sleeping task with cancelled, and later waits fail fast", function()
    local second
    local t = sandlot.spawn(function()
      local ok, err = sandlot.sleep(30)
      second = select(2, sandlot.sleep(30))
      return ok, err
    end)
    sandlot.sleep(0.01)
    assert.is_true(t:cancel())
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.equal("cancelled", err.code)
    assert.equal("cancelled", second.code)
    assert.is_false(t:cancel())                       -- already done
  end)

  it("a task cancelled before it starts never runs", function()
    local ran = false
    local t = sandlot.spawn(function() ran = true end)
    t:cancel()
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.equal("cancelled", err.code)
    assert.is_false(ran)
  end)

  it("a task cannot join itself", function()
    local t
    t = sandlot.spawn(function() return pcall(function() return t:join() end) end)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("cannot join itself", err)
  end)

  it("yielding I/O from a foreign coroutine inside a task raises a clear error", function()
    local co = coroutine.wrap(function() return pcall(sandlot.sleep, 0) end)
    local ok, err = co()
    assert.is_false(ok)
    assert.matches("must run in a task", err)
  end)

  it("yielding I/O inside a C call boundary raises instead of hanging", function()
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
      sandlot.sleep(0)
      return a < b
    end)
    assert.is_false(ok)
    assert.matches("cannot wait inside a call made from C", err)
  end)
end)

describe("sandlot.timeout", function()
  it("returns the function's results when it finishes in time", function()
    assert.same({ 1, 2 }, { sandlot.timeout(5, function() sandlot.sleep(0.01); return 1, 2 end) })
  end)

  it("returns nil, timeout when it does not, cancelling the work", function()
    local after = false
    local r, err = sandlot.timeout(0.05, function() sandlot.sleep(30); after = true end)
    assert.is_nil(r)
    assert.equal("timeout", err.code)
    sandlot.sleep(0.02)
    assert.is_true(after)            -- the body went on after its sleep returned nil, err ...
  end)

  it("re-raises errors from the function", function()
    assert.has_error(function() sandlot.timeout(1, function() error("inner") end) end)
  end)
end)

describe("sandlot.map and sandlot.all", function()
  it("keeps input order and respects the limit", function()
    local running, peak = 0, 0
    local list = {}
    for i = 1, 50 do list[i] = i end
    local res, errs = sandlot.map(list, function(x)
      running = running + 1
      peak = math.max(peak, running)
      sandlot.sleep((50 - x) % 7 * 0.001)
      running = running - 1
      return x * x
    end, { limit = 8 })
    assert.is_nil(errs)
    for i = 1, 50 do assert.equal(i * i, res[i]) end
    assert.equal(8, peak)
  end)

  it("collects raised errors and nil, err returns per item without losing others", function()
    local res, errs = sandlot.map({ 1, 2, 3, 4 }, function(x)
      if x == 2 then error("two failed") end
      if x == 3 then return nil, sandlot.errors.new("timeout", "three slow") end
      return x
    end)
    assert.same({ [1] = 1, [4] = 4 }, res)
    assert.matches("two failed", errs[2])
    assert.equal("timeout", errs[3].code)
    assert.is_nil(errs[1])
  end)

  it("all runs functions concurrently", function()
    local res = sandlot.all({
      function() sandlot.sleep(0.02); return "a" end,
      function() return "b" end,
    })
    assert.same({ "a", "b" }, res)
  end)

  it("rejects unknown options", function()
    assert.has_error(function() sandlot.map({}, print, { limt = 2 }) end)
  end)

  it("an empty list gives empty results", function()
    local res, errs = sandlot.map({}, error)
    assert.same({}, res)
    assert.is_nil(errs)
  end)
end)

describe("host task accounting", function()
  it("waits for spawned tasks before exiting", function()
    local code, out = h.host({ "-e", [[
      local sandlot = require("sandlot")
      sandlot.spawn(function() sandlot.sleep(0.05); print("late") end)
      print("main done")]] })
    assert.equal(0, code)
    assert.equal("main done\nlate\n", out)
  end)

  it("reports a failed task nobody joined and exits 1", function()
    local code, _, err = h.host({ "-e", [[
      require("sandlot").spawn(function() error("orphan failure") end)]] })
    assert.equal(1, code)
    assert.matches("nobody joined", err)
    assert.matches("orphan failure", err)
  end)

  it("reports tasks that can never finish instead of hanging", function()
    local code, _, err = h.host({ "-e", [[
      local sandlot = require("sandlot")
      local a, b
      a = sandlot.spawn(function() sandlot.sleep(0); return b:join() end)
      b = sandlot.spawn(function() sandlot.sleep(0); return a:join() end)]] }, { timeout = 10 })
    assert.equal(1, code)
    assert.matches("still waiting", err)
  end)
end)

describe("a failing main chunk", function()
  it("cancels the other tasks instead of waiting for them", function()
    local code, _, err, r = h.host({ "-e", [[
      local sandlot = require("sandlot")
      sandlot.spawn(function() sandlot.sleep(30) end)
      sandlot.sleep(0.01)
      error("main failed")]] }, { timeout = 20 })
    assert.is_false(r.timed_out)           -- it did not sit out the 30 s sleep
    assert.equal(1, code)
    assert.matches("main failed", err)
  end)
end)

describe("odd task bodies", function()
  it("join re-raises a non-string, non-table error value as it is", function()
    local t = sandlot.spawn(function() error(42) end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.equal(42, err)
  end)

  it("a task that only ever yields does not starve timers and I/O", function()
    local stop = false
    local spinner = sandlot.spawn(function()
      while not stop do coroutine.yield() end
    end)
    assert(sandlot.sleep(0.02))
    local r = assert(sandlot.proc.run({ "echo", "io still flows" }))
    stop = true
    spinner:join()
    assert.equal("io still flows\n", r.stdout)
  end)
end)

describe("daemon tasks", function()
  it("do not keep a finished script alive: they are cancelled and unwind", function()
    local dir = os.tmpname(); os.remove(dir)
    local path = dir .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write([[
local task = require("sandlot.task")
task.daemon(function()
  local n = 0
  while true do
    local ok, err = task.sleep(0.02)
    if not ok then print("unwound " .. err.code .. " " .. tostring(n > 0)); return end
    n = n + 1
  end
end)
task.sleep(0.1)
print("main done")
]])
    f:close()
    local rc, out = h.host({ path }, { timeout = 20 })
    os.remove(path)
    assert.equal(0, rc)
    assert.equal("main done\nunwound cancelled true\n", out)
  end)
end)
