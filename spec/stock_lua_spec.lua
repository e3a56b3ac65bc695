-- spec/stock_lua_spec.lua: `require "sandlot"` from Debian's stock lua5.4, with the core loaded
-- from <build>/sandlot.so. The main thread is no task there: each waiting call drives the loop
-- itself until it completes, while tasks it spawned yield to that same loop.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local LUA = "/usr/bin/lua5.4"
local ROOT = assert(sys.realpath("."))
local BUILD = assert(sys.realpath(h.BIN:match("^(.*)/[^/]*$") or "."))

-- A sanitizer build's sandlot.so needs the sanitizer runtimes loaded before anything else.
local function preload()
  local san = os.getenv("SANITIZE")
  if (san == nil or san == "") and not BUILD:match("/build%-san$") then return nil end
  local libs = {}
  for _, lib in ipairs({ "libasan.so", "libubsan.so" }) do
    local r = assert(sandlot.proc.run({ "cc", "-print-file-name=" .. lib }))
    libs[#libs + 1] = (r.stdout:gsub("%s+$", ""))
  end
  return table.concat(libs, " ")
end

local LD_PRELOAD

-- The sandlot binary's LSan defaults (core/engine.c: use_tls=0, libcrypto suppressed) are not
-- in a stock lua5.4, where GCC 12's LSan faults on glibc's dynamic TLS once threads exist
-- ("Tracer caught signal 11") and loses the leak check. The same defaults here; without TLS as
-- a root, the link-map names ld.so keeps for libraries loaded by dlopen (add_name_to_object)
-- look unreferenced, so that one glibc-internal allocation site is suppressed too.
local LSAN
local function lsan_options()
  local path = h.tmpdir("lsan") .. "/suppressions"
  local f = assert(io.open(path, "w"))
  f:write("leak:libcrypto.so\nleak:add_name_to_object\n")
  f:close()
  return "use_tls=0:print_suppressions=0:suppressions=" .. path
end

-- Runs script on a stock lua5.4 that finds sandlot only through LUA_PATH and LUA_CPATH.
local function stock(script)
  local r = assert(sandlot.proc.run({ LUA, "-" }, {
    stdin = script,
    timeout = 60,
    env = {
      LUA_CPATH = BUILD .. "/?.so;;",
      LUA_PATH = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;",
      LUA_PATH_5_4 = false, LUA_CPATH_5_4 = false, LUA_INIT = false, LUA_INIT_5_4 = false,
      LD_PRELOAD = LD_PRELOAD or false,
      LSAN_OPTIONS = LD_PRELOAD and (os.getenv("LSAN_OPTIONS") or LSAN) or nil,
    },
  }))
  return r.exit_code, r.stdout, r.stderr
end

describe("sandlot on a stock lua5.4", function()
  setup(function()
    LD_PRELOAD = preload()
    if LD_PRELOAD then LSAN = lsan_options() end
  end)
  after_each(h.assert_no_children)

  local function needs_lua()
    local f = io.open(LUA)
    if not f then pending("needs " .. LUA .. " (apt-get install lua5.4)") end
    if f then f:close() end
    return f ~= nil
  end

  it("loads the core from sandlot.so and the library from lua/", function()
    if not needs_lua() then return end
    local code, out, err = stock([[
      local sandlot = require("sandlot")
      local core = require("sandlot.core")
      print(sandlot.version, core.version, package.searchpath("sandlot", package.cpath))
    ]])
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal(("%s\t%s\t%s/sandlot.so\n"):format(sandlot.version, sandlot.version, BUILD),
                 out)
  end)

  it("waits from the main thread: proc.run, sleep, join, timeout, map and run", function()
    if not needs_lua() then return end
    local code, out, err = stock([[
      local sandlot = require("sandlot")
      print("current", sandlot.current())
      local r = assert(sandlot.proc.run({ "echo", "hi" }))
      print("proc.run", r.exit_code, r.stdout == "hi\n")
      print("sleep", sandlot.sleep(0.01))
      local t1 = sandlot.spawn(function(x) sandlot.sleep(0.02); return "t1 " .. x end, "a")
      local t2 = sandlot.spawn(function() sandlot.sleep(0.01); return "t2", 2 end)
      local a = t1:join()
      print("join", a, t2:join())
      print("join again", t1:join())
      local v, e = sandlot.timeout(0.05, function() sandlot.sleep(30); return "late" end)
      print("timeout", v, e.code)
      local m = sandlot.map({ 3, 1, 2 }, function(n) sandlot.sleep(n / 200); return n * 10 end,
                            { limit = 2 })
      print("map", table.concat(m, ","))
      local x, y
      sandlot.spawn(function() sandlot.sleep(0.01); x = "x" end)
      sandlot.spawn(function() y = assert(sandlot.proc.run({ "echo", "y" })).stdout end)
      print("run", sandlot.run(), x, y == "y\n")
    ]])
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal(table.concat({
      "current", "proc.run\t0\ttrue", "sleep\ttrue", "join\tt1 a\tt2\t2", "join again\tt1 a",
      "timeout\tnil\ttimeout", "map\t30,10,20", "run\ttrue\tx\ttrue", "",
    }, "\n"), out)
  end)

  it("runs yielding I/O inside task bodies, concurrently", function()
    if not needs_lua() then return end
    local code, out, err = stock([[
      local sandlot = require("sandlot")
      local tasks = {}
      for i = 1, 8 do
        tasks[i] = sandlot.spawn(function()
          assert(sandlot.current(), "a task body runs in a task")
          sandlot.sleep((8 - i) / 500)                      -- finish out of order
          local r = assert(sandlot.proc.run({ "sh", "-c", "printf %s \"$0\"", i }))
          local p <close> = assert(sandlot.proc.spawn({ "cat" }, { stdin = "pipe" }))
          return r.stdout, p:pid() ~= nil
        end)
      end
      local got = {}
      for i = 1, 8 do
        local s, pid = tasks[i]:join()
        got[i] = s .. (pid and "" or "?")
      end
      print(table.concat(got, " "))
    ]])
    assert.equal("", err)
    assert.equal(0, code)
    assert.equal("1 2 3 4 5 6 7 8\n", out)
  end)

  it("re-raises a task's error at join, with the task's traceback", function()
    if not needs_lua() then return end
    local code, out = stock([[
      local sandlot = require("sandlot")
      local t = sandlot.spawn(function() sandlot.sleep(0.01); error("task boom") end)
      local ok, e = pcall(t.join, t)
      print(ok, e:match("task boom") ~= nil, e:match("stack traceback") ~= nil)
    ]])
    assert.equal(0, code)
    assert.equal("false\ttrue\ttrue\n", out)
  end)

  it("returns nil, err from a failed call and raises on misuse", function()
    if not needs_lua() then return end
    local code, out = stock([[
      local sandlot = require("sandlot")
      local r, e = sandlot.proc.run({ "/nonexistent/binary" })
      print(r, e.code)
      print(pcall(sandlot.proc.run, 42))
    ]])
    assert.equal(0, code)
    assert.matches("^nil\tnot_found\nfalse\t[^\n]*command must be a non%-empty argv", out)
  end)

  it("reports tasks that wait on each other forever instead of hanging", function()
    if not needs_lua() then return end
    local code, out = stock([[
      local sandlot = require("sandlot")
      local a, b
      a = sandlot.spawn(function() sandlot.sleep(0.01); return b:join() end)
      b = sandlot.spawn(function() sandlot.sleep(0.01); return a:join() end)
      local ok, err = sandlot.run()
      print(ok, err.code)
    ]])
    assert.equal(0, code)
    assert.equal("nil\tinternal\n", out)
  end)

  it("refuses sandlot.run from inside a task", function()
    if not needs_lua() then return end
    local code, out = stock([[
      local sandlot = require("sandlot")
      local t = sandlot.spawn(function() return sandlot.run() end)
      local ok, err = pcall(t.join, t)
      print(ok, tostring(err):match("cannot be called from a task") ~= nil)
    ]])
    assert.equal(0, code)
    assert.equal("false\ttrue\n", out)
  end)

  it("reports a failed task nobody joined from sandlot.run", function()
    if not needs_lua() then return end
    local code, out = stock([[
      local sandlot = require("sandlot")
      sandlot.spawn(function() error("nobody joins me") end)
      local ok, err = sandlot.run()
      print(ok, err ~= nil and tostring(err):match("nobody joins me") ~= nil)
    ]])
    assert.equal(0, code)
    assert.equal("nil\ttrue\n", out)
  end)

  it("kills a forgotten child process when the interpreter exits", function()
    if not needs_lua() then return end
    local dir = h.tmpdir()
    local code = stock(([[
      local sandlot = require("sandlot")
      local p = assert(sandlot.proc.spawn({ "sh", "-c", "echo $$ > %s/pid; exec sleep 30" }))
      sandlot.sleep(0.05)
      while not io.open("%s/pid") do sandlot.sleep(0.01) end
    ]]):format(dir, dir))
    local f = assert(io.open(dir .. "/pid"))
    local pid = tonumber(f:read("a"))
    f:close()
    h.rmtree(dir)
    assert.equal(0, code)
    assert.is_false(h.alive(pid))
  end)
end)
