-- spec/cli_shell_spec.lua: `sandlot shell ID` driven through a real terminal (spec/support/pty):
-- the remote shell answers what is typed, its exit status is sandlot's, the local terminal's
-- settings are the same before and after, Ctrl-C reaches the remote command (not sandlot), the
-- remote terminal follows the local size; without a terminal on stdin it runs like ssh -T.
local sandlot = require("sandlot")
local h = require("spec.helper")
local pty = require("spec.support.pty")

describe("sandlot shell", function()
  local env, id, ok_pty, why

  lazy_setup(function()
    env = { SANDLOT_PROVIDER = false, SANDLOT_CONFIG = false, XDG_CONFIG_HOME = h.tmpdir() }
    local code, out, err = h.host({ "create", "--name", "shell-spec" }, { env = env })
    assert(code == 0, err)
    id = out:match("^(sb%-%x+)\n$")
    assert(id, "create printed " .. out)
    ok_pty, why = pty.build()
  end)

  lazy_teardown(function()
    if id then
      local sb = sandlot.get(id, { reconnect = false })
      if sb then sb:destroy() end
    end
    pty.cleanup()
  end)

  -- sh -c SCRIPT BIN ID [extra]: the script runs sandlot shell on the pty helper's terminal
  local function start(script, extra)
    return pty.start({ "sh", "-c", script, h.BIN, id, extra }, { env = env, limit = 60 })
  end

  local function settings(s, text)
    local before = s:expect(text)
    return before:match("([%x:]+:[%x:]+)%s*$")
  end

  it("runs the login shell on a terminal, passes its status back, restores the terminal",
    h.task(function()
      if not ok_pty then return pending("needs cc and forkpty: " .. tostring(why)) end
      local s = start('stty -g; echo BEGIN; "$0" shell "$1"; r=$?; echo END; stty -g; exit $r')
      local saved = settings(s, "BEGIN")
      assert.truthy(saved, s:transcript())
      s:send("echo $((6*7)); exit 3\r")
      s:expect("42")
      s:expect("END")
      assert.equal(3, s:wait(20))
      local after = s:transcript():match("END%s*\n([%x:]+)")
      assert.equal(saved, after)
      s:close()
    end))

  it("sends Ctrl-C to the remote command, not to sandlot", h.task(function()
    if not ok_pty then return pending("needs cc and forkpty: " .. tostring(why)) end
    local s = start([["$0" shell "$1" -- sh -c 'trap "echo got-int; exit 9" INT; echo ready;
                     while :; do sleep 1; done']])
    s:expect("ready")
    sandlot.sleep(0.2)
    s:send("\3")
    s:expect("got-int")
    assert.equal(9, s:wait(20))
    s:close()
  end))

  it("gives the remote terminal this one's size and follows SIGWINCH", h.task(function()
    if not ok_pty then return pending("needs cc and forkpty: " .. tostring(why)) end
    local dir = h.tmpdir()
    local fifo = dir .. "/go"
    assert.equal(0, assert(sandlot.proc.run({ "mkfifo", fifo })).exit_code)
    -- in the background (fd 3: an asynchronous list's own stdin would be /dev/null), while
    -- this shell changes the terminal's size once the remote side has shown the first one
    local s = start([[exec 3<&0; "$0" shell "$1" -- sh -c 'echo "at $(stty size)";
                       while [ "$(stty size)" = "24 100" ]; do sleep 0.05; done;
                       echo "now $(stty size)"' <&3 3<&- &
                     read go <"$2"; stty rows 30 cols 90; wait $!]], fifo)
    s:expect("at 24 100")
    local f = assert(io.open(fifo, "w"))  -- the script is waiting to read it
    f:write("go\n")
    f:close()
    s:expect("now 30 90")
    assert.equal(0, s:wait(20))
    s:close()
    h.rmtree(dir)
  end))

  it("runs without a pty when stdin is not a terminal, and says so with --verbose", function()
    local code, out, err = h.host({ "shell", id, "--verbose" },
                                  { env = env, stdin = "tty; echo $((6*7)); exit 4\n" })
    assert.equal(4, code)
    assert.equal("not a tty\n42\n", out)
    assert.matches("stdin is not a terminal: running without a pty", err)
    code, out, err = h.host({ "shell", id, "--", "sh", "-c", "cat; exit 5" },
                            { env = env, stdin = "piped\n" })
    assert.equal(5, code)
    assert.equal("piped\n", out)
    assert.equal("", err)
  end)

  it("fails with 1 for an unknown id, and lists itself in help", function()
    local code, _, err = h.host({ "shell", "sb-0000000000000000" }, { env = env, stdin = "" })
    assert.equal(1, code)
    assert.matches("^sandlot: shell: ", err)
    local hc, hout = h.host({ "help", "shell" }, { env = env })
    assert.equal(0, hc)
    assert.matches("usage: sandlot shell ID", hout)
  end)
end)
