-- spec/repl_spec.lua: the host's REPL (core/repl.c + sandlot._repl). The pretty printer and
-- the compiler are tested directly; the REPL itself is driven through a real pseudo-terminal
-- (spec/support/pty.c): values, tables, multi-line input, awaited async calls, Ctrl-C,
-- Ctrl-D and the history file.
local sandlot = require("sandlot")
local h = require("spec.helper")
local pty = require("spec.support.pty")
local repl = require("sandlot._repl")

describe("sandlot._repl.pretty", function()
  local cases = {
    { 1, "1" }, { 1.5, "1.5" }, { "a\"b\n", [["a\"b\n"]] }, { true, "true" }, { nil, "nil" },
    { {}, "{}" },
    { { 1, 2, 3 }, "{ 1, 2, 3 }" },
    { { b = 1, a = 2, [3] = "x", ["not id"] = 4, ["end"] = 5 },
      [[{ [3] = "x", a = 2, b = 1, ["end"] = 5, ["not id"] = 4 }]] },
    { { 1, nested = { deeper = { x = true } } }, "{ 1, nested = { deeper = { x = true } } }" },
  }
  for i, c in ipairs(cases) do
    it("shows case " .. i .. " as " .. c[2], function()
      assert.equal(c[2], repl.pretty(c[1]))
    end)
  end

  it("marks cycles instead of recursing", function()
    local t = { name = "t" }
    t.self = t
    assert.matches('^{ name = "t", self = <cycle: table: 0x%x+> }$', repl.pretty(t))
  end)

  it("stops at the depth limit", function()
    local t = { a = { b = { c = { d = { e = {} } } } } }
    assert.equal("{ a = { b = { c = { d = {...} } } } }", repl.pretty(t))
    assert.equal("{ a = {...} }", repl.pretty(t, { depth = 1 }))
  end)

  it("limits the entries shown per table", function()
    local t = {}
    for i = 1, 10 do t[i] = i end
    assert.equal("{ 1, 2, 3, ... (7 more) }\n(print(x) or io.write(x) shows it all; " ..
                 "sandlot._repl.opts sets the limits)", repl.pretty(t, { items = 3 }))
  end)

  it("cuts a long string, says how long it was and how to see it all", function()
    local long = ("0123456789"):rep(300)              -- 3000 bytes
    local text = repl.pretty({ stdout = long })
    assert.matches('\n  stdout = "' .. ("0123456789"):rep(100) ..
                   '"%.%.%. %(3000 bytes in all%)\n}\n', text)
    assert.matches("print(x) or io.write(x) shows it all", text, 1, true)
    assert.equal('"' .. long .. '"', repl.pretty(long, { string = 5000 }))
    -- never in the middle of a UTF-8 character
    local cut = repl.pretty(("é"):rep(600), { string = 7 })
    assert.matches('^"ééé"%.%.%. %(1200 bytes in all%)', cut)
  end)

  it("caps one result's output in all", function()
    local t = {}
    for i = 1, 100 do t[i] = ("x"):rep(900) end
    local text = repl.pretty(t)
    assert.truthy(#text < 16384 + 200, #text)
    assert.matches("\n%.%.%. %(cut at %d+ of %d+ bytes%)\n", text)
    assert.equal(nil, repl.pretty({ a = 1 }):find("shows it all", 1, true))
  end)

  it("shows sandlot.error tables (and other __tostring values) through tostring", function()
    local err = sandlot.errors.new("not_found", "no such sandbox", { op = "exec" })
    assert.equal("exec: not_found: no such sandbox", repl.pretty(err))
    assert.equal("{ err = exec: not_found: no such sandbox }", repl.pretty({ err = err }))
  end)

  it("breaks wide tables over lines, indented", function()
    local t = { alpha = string.rep("a", 40), beta = string.rep("b", 40) }
    assert.equal('{\n  alpha = "' .. t.alpha .. '",\n  beta = "' .. t.beta .. '"\n}',
                 repl.pretty(t))
  end)
end)

describe("sandlot._repl.compile", function()
  it("compiles expressions as returns and statements as they are", function()
    assert.equal(3, repl.compile("1 + 2")())
    assert.is_nil(repl.compile("local x = 1")())
  end)

  it("says incomplete for a chunk that more lines could finish", function()
    for _, src in ipairs({ "function f()", "if x then", "{ 1,", "x = [[", "f(" }) do
      local fn, err = repl.compile(src)
      assert.is_nil(fn)
      assert.equal("incomplete", err, src)
    end
  end)

  it("reports a syntax error with its location", function()
    local fn, err = repl.compile("x = = 1")
    assert.is_nil(fn)
    assert.matches("^stdin:1:", err)
  end)
end)

describe("sandlot._repl.complete and help", function()
  local saved_sb
  before_each(function()
    repl.setup()
    saved_sb = rawget(_G, "spec_sb")
  end)
  after_each(function() _G.spec_sb = saved_sb end)

  it("completes globals, keywords, fields and methods without calling anything", function()
    assert.same({ "sandlot.create" }, repl.complete("sandlot.cre"))
    assert.same({ "string.find", "string.format" }, repl.complete("string.f"))
    assert.truthy(#repl.complete("pri") >= 1)
    assert.same({ "while" }, repl.complete("whil"))
    assert.same({}, repl.complete("no_such_global.x"))
    assert.same({}, repl.complete("f().x"))
    local called = false
    _G.spec_sb = setmetatable({ own = 1 }, { __index = function() called = true end })
    assert.same({ "spec_sb.own" }, repl.complete("spec_sb."))
    assert.is_false(called)
    local Class = { run = function() end, name = "not a method" }
    _G.spec_sb = setmetatable({ field = 1 }, { __index = Class })
    assert.same({ "spec_sb:run" }, repl.complete("spec_sb:"))
    assert.same({ "spec_sb.field", "spec_sb.name", "spec_sb.run" }, repl.complete("spec_sb."))
  end)

  local function captured(fn)
    local saved, buf = io.stdout, {}
    io.stdout = {
      write = function(self, ...)
        for i = 1, select("#", ...) do buf[#buf + 1] = select(i, ...) end
        return self
      end,
    }
    local ok, err = pcall(fn)
    io.stdout = saved
    assert(ok, err)
    return table.concat(buf)
  end

  it("help shows a function's doc comment, an object's methods, and a name's doc", function()
    local out = captured(function() repl.help(sandlot.create) end)
    assert.matches("^Creates a sandbox%.\n", out)
    assert.matches("@return sandlot.Sandbox|nil sb", out, 1, true)
    assert.equal(out, captured(function() repl.help("sandlot.create") end))
    local sb = assert(sandlot.create("local", { isolation = "none" }))
    local methods = captured(function() repl.help(sb) end)
    sb:destroy()
    assert.matches("\n  exec +Runs a command in the sandbox", methods)
    assert.matches("no doc comment", captured(function() repl.help(print) end), 1, true)
    assert.matches("nothing named sandlot.nope", captured(function() repl.help("sandlot.nope") end),
                   1, true)
  end)
end)

describe("the sandlot REPL on a terminal", function()
  local dir, s

  teardown(pty.cleanup)

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

  local function start(args)
    local argv = { h.BIN }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    s = pty.start(argv, { env = { XDG_STATE_HOME = dir .. "/state", HOME = dir,
                                  TERM = "xterm" } })
    s:expect("Ctrl-D exits")
    s:expect("> ")
    return s
  end

  it("prints the value of an expression without return", function()
    start()
    assert.equal("2\n", s:eval("1 + 1"))
    assert.equal('"hello"\n', s:eval("'hel' .. 'lo'"))
    assert.equal("1\tnil\t3\n", s:eval("1, nil, 3"))
    assert.equal("", s:eval("x = 42"))                 -- a statement prints nothing
    assert.equal("42\n", s:eval("x"))
  end)

  it("pretty-prints tables with sorted keys", function()
    start()
    assert.equal('{ 1, 2, a = { b = true }, z = "last" }\n',
                 s:eval("{ 1, 2, z = 'last', a = { b = true } }"))
    assert.matches("{ me = <cycle: table: 0x%x+> }",
                   s:eval("(function() local t = {} t.me = t return t end)()"))
  end)

  it("reads a multi-line chunk with a continuation prompt", function()
    start()
    s:send("function double(x)\r")
    s:expect("\n>> ")
    s:send("  return x * 2\r")
    s:expect("\n>> ")
    s:send("end\r")
    s:expect("\n> ")
    assert.equal("42\n", s:eval("double(21)"))
  end)

  it("awaits asynchronous calls", function()
    start()
    assert.equal("true\n", s:eval("sandlot.sleep(0.1)"))
    assert.equal('"hi\\n"\n', s:eval('sandlot.proc.run{"echo", "hi"}.stdout'))
    local t = s:eval("sandlot.proc.run({'sh', '-c', 'exit 3'}).exit_code")
    assert.equal("3\n", t)
  end)

  it("prints errors and keeps going", function()
    start()
    assert.matches("stdin:1: boom", s:eval("error('boom')"))
    assert.matches("stdin:1: .*near", s:eval("x = = 1"))
    assert.matches("not_found: no such thing",
                   s:eval("error(sandlot.errors.new('not_found', 'no such thing'))"))
    assert.equal("5\n", s:eval("2 + 3"))
  end)

  it("cancels the running call on Ctrl-C and returns to the prompt", function()
    start()
    s:send('io.write("zz\\n"); return sandlot.sleep(30)\r')
    s:expect("zz\r\n")                                   -- the line is running
    s:send("\x03")
    local out = s:expect("\n> ", 10)
    assert.matches("cancelled", out)
    assert.equal("4\n", s:eval("2 + 2"))
    -- a loop that ignores the cancelled result of its waits is stopped too
    s:send('io.write("yy\\n"); for i = 1, 1e9 do sandlot.sleep(1) end\r')
    s:expect("yy\r\n")
    s:send("\x03")
    assert.matches("cancelled", s:expect("\n> ", 10))
    assert.equal("6\n", s:eval("3 + 3"))
    -- and so is one that computes without ever waiting
    s:send('io.write("ww\\n"); while true do end\r')
    s:expect("ww\r\n")
    s:send("\x03")
    assert.matches("cancelled", s:expect("\n> ", 10))
    assert.equal("8\n", s:eval("4 + 4"))
  end)

  it("kills the processes of a cancelled call", function()
    start()
    local pidfile = dir .. "/pid"
    s:send(('io.write("vv\\n"); ' ..
            'return sandlot.proc.run{"sh", "-c", "echo $$ > %s; exec sleep 30"}\r'):format(pidfile))
    s:expect("vv\r\n")
    local pid
    assert(h.eventually(function()
      local f = io.open(pidfile)
      if f then pid = tonumber(f:read("a")); f:close() end
      return pid
    end), "the command never started")
    assert.is_true(h.alive(pid))
    s:send("\x03")
    assert.matches("cancelled", s:expect("\n> ", 10))
    assert.is_true(h.eventually(function() return not h.alive(pid) end, 5))
  end)

  it("clears the line being typed on Ctrl-C at the prompt", function()
    start()
    s:send("1 +\r")
    s:expect("\n>> ")
    s:send("\x03")
    s:expect("\n> ")
    assert.equal("3\n", s:eval("3"))                      -- not 1 + 3: the chunk was dropped
    s:send("12")                                           -- typed, not entered
    s:expect("12")
    s:send("\x03")
    s:expect("\n> ")
    assert.equal("3\n", s:eval("3"))                      -- not 123
  end)

  it("keeps tasks started at the prompt running while it waits for input", function()
    start()
    local path = dir .. "/ticks"
    -- (short lines: the terminal wraps at 80 columns)
    s:eval(("p = %q"):format(path))
    s:eval("function w(i) local f = io.open(p, 'w') f:write(i) f:close() end")
    s:eval("function run() return sandlot.proc.run({'echo', 'done'}).stdout end")
    s:eval("function tick() for i = 1, 5 do sandlot.sleep(0.05) w(i) end end")
    s:eval("t = sandlot.spawn(function() tick() return run() end)")
    -- nothing is typed: the prompt alone must drive the timers and the process
    assert(h.eventually(function()
      local f = io.open(path)
      local n = f and tonumber(f:read("a"))
      if f then f:close() end
      return n == 5
    end, 10), "the task did not run while the REPL sat at the prompt")
    h.eventually(function() return false end, 0.3)
    assert.equal('"done\\n"\n', s:eval("t:join()"))
    assert.equal("4\n", s:eval("2 + 2"))
  end)

  it("exits 0 on Ctrl-D and keeps the history in XDG_STATE_HOME", function()
    start()
    s:eval("1 + 1")
    s:eval("history_marker = 7")
    s:send("\x04")
    assert.equal(0, s:wait(10))
    local f = assert(io.open(dir .. "/state/sandlot/history"))
    local text = f:read("a")
    f:close()
    assert.matches("1+1", text:gsub("\\040", ""), 1, true)
    assert.matches("history_marker", text, 1, true)
    -- and the next session reads it back: Up recalls the last line
    s:close()
    start()
    s:send("\x1b[A\r")
    assert.equal("7\n", s:expect("\n> ") and s:eval("history_marker"))
  end)

  it("redraws the prompt and the typed text below what a task prints", function()
    start()
    s:send("t = sandlot.spawn(function() sandlot.sleep(0.3) print('from the task') end)\r")
    s:expect("\n> ")
    s:send("1 + ")
    s:expect("\r\27[Kfrom the task\r\n> 1 + ")   -- the line cleared, the output, the prompt again
    s:send("1\r")
    s:expect("\n2\r\n> ")
  end)

  it("completes on Tab", function()
    start()
    s:send("sandlot.crea\t")              -- libedit redraws the line, so the screen shows "te"
    s:expect("te")                         -- after "crea"; the value proves what was completed
    s:send("\r")
    s:expect("function: ")                 -- sandlot.crea alone would print nothing
    s:expect("> ")
  end)

  it("enters the REPL after -e with -i, keeping its globals", function()
    start({ "-i", "-e", "x = 5" })
    assert.equal("5\n", s:eval("x"))
    s:send("\x04")
    assert.equal(0, s:wait(10))
  end)
end)

describe("the sandlot host without a terminal", function()
  it("runs stdin as a script", function()
    local code, out = h.host({}, { stdin = "print(1 + 1)" })
    assert.equal(0, code)
    assert.equal("2\n", out)
  end)

  it("reads REPL lines from a pipe with -i", function()
    local code, out = h.host({ "-i" }, { stdin = "1 + 1\nfunction f()\nreturn 'ok'\nend\nf()\n" })
    assert.equal(0, code)
    assert.matches('2\n"ok"\n', out, 1, true)
  end)
end)
