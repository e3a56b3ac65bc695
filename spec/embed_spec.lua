-- spec/embed_spec.lua: examples/embed, a C program linking libsandlot.a, built against the
-- build dir of the host under test (SANDLOT_BIN) and run in both of its modes: sandlot drives
-- the loop (sandlot_dostring), and the program's own poll() loop drives it (--step).
local sandlot = require("sandlot")
local h = require("spec.helper")

local ex = require("spec.support.embed")

local build, embed = ex.build, ex.run

-- FNV-1a, 32 bit: what the example's C function host_digest computes
local function fnv1a(s)
  local hash = 2166136261
  for i = 1, #s do
    hash = ((hash ~ s:byte(i)) * 16777619) & 0xffffffff
  end
  return ("%08x"):format(hash)
end

local DEMO = table.concat({
  "child: exit_code=0 stdout=hello from a child",
  "digest: " .. fnv1a("hello from a child\n"),
  "tasks: ab",
  "sandlot " .. sandlot.version,
}, "\n") .. "\n"

describe("examples/embed", function()
  setup(build)
  after_each(h.assert_no_children)

  describe("driven by sandlot_dostring", function()
    it("runs the demo: a process, the registered C function and two tasks", function()
      local code, out, err = embed()
      assert.equal("", err)
      assert.equal(0, code)
      assert.equal(DEMO, out)
    end)

    it("gives a snippet the registered function as a global", function()
      local code, out = embed("print(host_digest('abc'), host_digest(''))")
      assert.equal(0, code)
      assert.equal(fnv1a("abc") .. "\t" .. fnv1a("") .. "\n", out)
    end)

    it("raises a clear argument error from the C function", function()
      local code, out, err = embed("host_digest({})")
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("bad argument #1 to 'host_digest' %(string expected, got table%)", err)
    end)

    it("exits non-zero with the message and a traceback on a Lua error", function()
      local code, out, err = embed("print('before'); error('boom from the snippet')")
      assert.equal(1, code)
      assert.equal("before\n", out)
      assert.matches("^embed: %(embed%):1: boom from the snippet\n", err)
      assert.matches("stack traceback:", err, 1, true)
    end)

    it("reports a sandlot.error through its __tostring", function()
      local code, _, err =
        embed("error(require('sandlot.errors').new('not_found', 'no such box'))")
      assert.equal(1, code)
      assert.matches("not_found", err, 1, true)
      assert.matches("no such box", err, 1, true)
    end)

    it("reports a syntax error without running anything", function()
      local code, out, err = embed("print('ran') x = = 1")
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^embed: %(embed%):1: unexpected symbol near '='", err)
    end)

    it("reports a failed task nobody joined", function()
      local code, _, err = embed("require('sandlot').spawn(function() error('lost task') end)")
      assert.equal(1, code)
      assert.matches("a task failed and nobody joined it: .*lost task", err)
    end)
  end)

  describe("driven by its own poll() loop (--step)", function()
    it("runs the demo through sandlot_backend_fd and sandlot_step", function()
      local code, out, err = embed("--step")
      assert.equal("", err)
      assert.equal(0, code)
      local demo, polls = out:match("^(.*)step: tasks done after (%d+) polls\n$")
      assert.equal(DEMO, demo)
      assert.is_true(tonumber(polls) > 0)
    end)

    it("waits for timers and processes from several tasks", function()
      local code, out = embed("--step", [[
        local sandlot = require("sandlot")
        local r = sandlot.map({ 3, 1, 2 }, function(n)
          sandlot.sleep(n / 100)
          return assert(sandlot.proc.run({ "sh", "-c", "echo $0", n })).stdout
        end)
        print(table.concat(r, ""))
      ]])
      assert.equal(0, code)
      assert.matches("^3\n1\n2\n\nstep: tasks done", out)
    end)

    it("exits non-zero with the task's error and traceback", function()
      local code, out, err = embed("--step", "require('sandlot').sleep(0.01); error('late boom')")
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^embed: %(embed%):1: late boom\n", err)
      assert.matches("stack traceback:", err, 1, true)
    end)

    it("stops stepping when tasks wait on each other forever (sandlot_stalled)", function()
      local code, out, err = embed("--step", [[
        local sandlot = require("sandlot")
        local a, b
        a = sandlot.spawn(function() sandlot.sleep(0.01); return b:join() end)
        b = sandlot.spawn(function() sandlot.sleep(0.01); return a:join() end)
        a:join()
      ]])
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("3 task%(s%) still waiting with nothing left to wake them", err)
    end)
  end)

  it("rejects unknown options with a usage line", function()
    local code, out, err = embed("--bogus")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("^usage: embed", err)
  end)
end)
