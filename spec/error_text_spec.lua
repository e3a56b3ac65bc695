-- spec/error_text_spec.lua: error messages longer than LUAL_BUFFERSIZE (1 KiB here) come out
-- whole on every path that reports an error: the host's main chunk (-e, a file, a missing
-- module), failed tasks nobody joined, the REPL, and the embedding API (examples/embed). The
-- messages are not repetitive, so a byte lost, doubled or overwritten anywhere fails the
-- comparison; CI also runs this file under ASan and UBSan (`make test SANITIZE=...`), which
-- see a read of freed memory even where the garbage happens to print right.
local h = require("spec.helper")
local pty = require("spec.support.pty")
local ex = require("spec.support.embed")

-- Lua source of an expression giving the first n bytes of "0000001;0000002;...": every
-- 8-byte piece differs from the others
local function gen(n)
  return ("(function() local t = {} for i = 1, %d do t[i] = ('%%07d;'):format(i) end "
          .. "return table.concat(t):sub(1, %d) end)()"):format(n // 8 + 1, n)
end

local function text(n)
  local t = {}
  for i = 1, n // 8 + 1 do t[i] = ("%07d;"):format(i) end
  return table.concat(t):sub(1, n)
end

local SIZES = { 3000, 100000 }

-- the message shows up whole, and exactly once
local function assert_whole(msg, out)
  local at, stop = out:find(msg, 1, true)
  assert(at, ("the %d-byte message is not intact in %d bytes of output, which begin: %q")
    :format(#msg, #out, out:sub(1, 200)))
  assert.is_nil(out:find(msg, stop + 1, true), "the message came out twice")
end

describe("long error messages", function()
  after_each(h.assert_no_children)

  describe("from the host's main chunk", function()
    for _, n in ipairs(SIZES) do
      it(("come out whole from -e (%d bytes)"):format(n), function()
        local code, out, err = h.host({ "-e", "error(" .. gen(n) .. ", 0)" })
        assert.equal(1, code)
        assert.equal("", out)
        assert.equal("sandlot: " .. text(n) .. "\n", err:match("^[^\n]*\n"))
        assert_whole(text(n), err)
      end)

      it(("come out whole from a script file (%d bytes)"):format(n), function()
        local dir = h.tmpdir()
        local f = assert(io.open(dir .. "/long.lua", "w"))
        f:write("local x = 1\nerror(" .. gen(n) .. ")\n")
        f:close()
        local code, _, err = h.host({ dir .. "/long.lua" })
        h.rmtree(dir)
        assert.equal(1, code)
        assert.matches("^sandlot: [^\n]*/long%.lua:2: 0000001;", err)
        assert_whole(text(n), err)
        assert.matches("stack traceback:", err, 1, true)
      end)

      it(("come out whole from a sandlot.error's __tostring (%d bytes)"):format(n), function()
        local code, _, err = h.host({ "-e", ("error(require('sandlot.errors').new('io_error', "
          .. "%s, { op = %s, provider = 'p' }))"):format(gen(n), gen(n // 2)) })
        assert.equal(1, code)
        assert_whole("sandlot: p: " .. text(n // 2) .. ": io_error: " .. text(n) .. "\n", err)
      end)
    end

    it("come out whole from __tostring whatever length the context fills the buffer to",
       function()
      local errors = require("sandlot.errors")
      for n = 1000, 1100 do                   -- the buffer grows as the message is added
        local e = errors.new("io_error", "the message", { provider = ("p"):rep(n) })
        assert.equal(("p"):rep(n) .. ": io_error: the message", tostring(e))
      end
    end)

    it("gives the whole message of a require of a missing sandlot module", function()
      local code, want = h.host({ "-e",
        "local _, e = pcall(require, 'sandlot.no_such_module'); io.write(e)" })
      assert.equal(0, code)
      assert.is_true(#want > 1024, "the message is too short to test the buffer")
      local code2, _, err = h.host({ "-e", "require('sandlot.no_such_module')" })
      assert.equal(1, code2)
      assert.matches("^sandlot: %(command line%):1: module 'sandlot.no_such_module' not found",
                     err)
      assert_whole(want, err)
    end)
  end)

  describe("from tasks nobody joined", function()
    for _, n in ipairs(SIZES) do
      it(("come out whole, one after another (%d bytes)"):format(n), function()
        local code, _, err = h.host({ "-e", ([[
          local sandlot = require("sandlot")
          sandlot.spawn(function() error(%s, 0) end)
          sandlot.spawn(function()
            error(require("sandlot.errors").new("unavailable", %s))
          end)
          sandlot.sleep(0.01)
          error(%s, 0)
        ]]):format(gen(n), gen(n + 1), gen(n + 2)) })
        assert.equal(1, code)
        assert.matches("^sandlot: 0000001;", err)
        assert_whole(text(n + 2) .. "\n", err)
        assert_whole("\nsandlot: a task failed and nobody joined it: " .. text(n) .. "\n", err)
        assert_whole("\nsandlot: a task failed and nobody joined it: unavailable: "
                     .. text(n + 1) .. "\n", err)
      end)
    end

    it("come out whole after a report of tasks left waiting", function()
      local code, _, err = h.host({ "-e", ([[
        local sandlot = require("sandlot")
        local a, b
        a = sandlot.spawn(function() sandlot.sleep(0.01); return b:join() end)
        b = sandlot.spawn(function() sandlot.sleep(0.01); return a:join() end)
        sandlot.spawn(function() error(%s, 0) end)
      ]]):format(gen(5000)) })
      assert.equal(1, code)
      assert_whole("sandlot: a task failed and nobody joined it: " .. text(5000), err)
      assert.matches("^sandlot: a task failed", err)
      assert.not_matches("sandlot: sandlot:", err, 1, true)      -- the prefix once
      assert.matches("\nsandlot: 2 task%(s%) still waiting with nothing left to wake them", err)
    end)
  end)

  describe("in the REPL", function()
    local s, dir

    before_each(function()
      local ok, err = pty.build()
      if not ok then pending("needs cc and forkpty: " .. tostring(err)) end
      dir = h.tmpdir()
    end)

    after_each(function()
      if s then s:close() end
      s = nil
      if dir then h.rmtree(dir) end
      dir = nil
    end)

    teardown(pty.cleanup)

    for _, n in ipairs(SIZES) do
      it(("come out whole from a line and from a background task (%d bytes)"):format(n),
         function()
        s = pty.start({ h.BIN }, { env = { XDG_STATE_HOME = dir .. "/state", HOME = dir,
                                           TERM = "xterm" } })
        s:expect("Ctrl-D exits")
        s:expect("> ")
        -- typed lines stay shorter than the terminal is wide, so that nothing wraps
        s:send("function G(n)\r")
        s:expect("\n>> ")
        s:send("local t = {} for i = 1, n // 8 + 1 do t[i] = ('%07d;'):format(i) end\r")
        s:expect("\n>> ")
        s:send("return table.concat(t):sub(1, n) end\r")
        s:expect("\n> ")
        assert_whole("stdin:1: " .. text(n) .. "\n", s:eval(("error(G(%d))"):format(n), 30))
        local out = s:eval(("sandlot.spawn(function() error(G(%d), 0) end); sandlot.sleep(0.01)")
          :format(n + 1), 30)
        assert_whole(" failed: " .. text(n + 1) .. "\n", out)
        assert.equal("3\n", s:eval("1 + 2"))
        s:send("\x04")
        assert.equal(0, s:wait(20))
      end)
    end
  end)

  describe("through the embedding API (examples/embed)", function()
    setup(ex.build)

    for _, n in ipairs(SIZES) do
      it(("come out whole from sandlot_dostring (%d bytes)"):format(n), function()
        local code, out, err = ex.run("error(" .. gen(n) .. ", 0)")
        assert.equal(1, code)
        assert.equal("", out)
        assert.equal("embed: " .. text(n) .. "\n", err:match("^[^\n]*\n"))
        assert_whole(text(n), err)
      end)

      it(("come out whole from a task nobody joined (%d bytes)"):format(n), function()
        local code, _, err =
          ex.run(("require('sandlot').spawn(function() error(%s, 0) end)"):format(gen(n)))
        assert.equal(1, code)
        assert_whole("embed: sandlot: a task failed and nobody joined it: " .. text(n) .. "\n",
                     err)
      end)

      it(("come out whole when the program drives the loop (%d bytes)"):format(n), function()
        local code, _, err = ex.run("--step", ([[
          local sandlot = require("sandlot")
          sandlot.spawn(function() sandlot.sleep(0.01); error(%s, 0) end)
          sandlot.sleep(0.01)
          error(%s, 0)
        ]]):format(gen(n), gen(n + 1)))
        assert.equal(1, code)
        assert.equal("embed: " .. text(n + 1) .. "\n", err:match("^[^\n]*\n"))
        assert_whole("embed: sandlot: a task failed and nobody joined it: " .. text(n) .. "\n",
                     err)
      end)
    end
  end)
end)
