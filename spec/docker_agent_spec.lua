-- spec/docker_agent_spec.lua: the docker provider's exec agent (exec_agent = true) against a
-- real daemon (spec/support/docker.lua): that execs go through the agent (the command's
-- parent is the agent's pid), give what a plain docker exec gives (user, environment,
-- working directory, stdin, streamed and capped output, exit codes and signals, the timeout's
-- group kill), fall back where they must, survive the agent's death and a container restart
-- without running a command twice, and run many at once.
local sandlot = require("sandlot")
local h = require("spec.helper")
local docker = require("spec.support.docker")
local agent = require("sandlot._native.docker_agent")
local errors = require("sandlot.errors")

describe("docker exec agent #docker", function()
  local suite = docker.suite({ dka = { exec_agent = true }, dkp = {} })
  local need, api = suite.need, suite.api

  local function create(opts) return suite.create("dka", opts) end

  -- the same container through the plain provider (one docker exec per command)
  local function plain(sb)
    return assert(sandlot.from_map({ version = 1, provider = "dkp", id = sb.id,
                                     handle = sb.handle }))
  end

  local function the_agent(sb) return agent._agents[sb.handle.container] end

  -- the parent of the command: the agent's pid when it ran through the agent
  local function parent(sb, opts)
    local r = assert(sb:exec({ "sh", "-c", "echo $PPID" }, opts))
    return tonumber(r.stdout)
  end

  local function running(sb, word)
    local r = assert(plain(sb):exec({ "sh", "-c", 'for f in /proc/[0-9]*/cmdline; do ' ..
      '[ "$f" = /proc/$$/cmdline ] && continue; l=; { read -r l <"$f"; } 2>/dev/null; ' ..
      'case $l in *"$1"*) echo "$l";; esac; done', "sh", word }))
    return r.stdout
  end

  it("runs execs through one agent in the container, started on the first exec", function()
    if not need() then return end
    local sb <close> = create()
    assert.is_nil(the_agent(sb))
    local r = assert(sb:exec({ "echo", "hello" }))
    assert.equal("hello\n", r.stdout)
    assert.equal(0, r.exit_code)
    local a = the_agent(sb)
    assert.is_truthy(a and a.peer:alive())
    for _ = 1, 3 do assert.equal(a.peer.pid, parent(sb)) end
    assert.equal(1, a.starts)
    assert.are_not.equal(a.peer.pid, parent(plain(sb)))    -- the check tells the paths apart
    sb:destroy()
    assert.is_nil(the_agent(sb))
  end)

  it("gives the command the container's environment, opts.env and user, as docker exec",
     function()
    if not need() then return end
    local sb <close> = create({ env = { CENV = "c1", GONE = "x" }, user = "65534" })
    local o = { env = { FOO = "bar baz", GONE = false } }
    local via = assert(sb:exec({ "sh", "-c", "env | sort; id -u; id -g" }, o))
    assert.equal(the_agent(sb).peer.pid, parent(sb))
    local direct = assert(plain(sb):exec({ "sh", "-c", "env | sort; id -u; id -g" }, o))
    assert.equal(direct.stdout, via.stdout)
    local lines = "\n" .. via.stdout
    assert.is_truthy(lines:find("\nCENV=c1\n", 1, true))
    assert.is_truthy(lines:find("\nFOO=bar baz\n", 1, true))
    assert.is_nil(via.stdout:find("GONE=", 1, true))
    assert.equal("65534", via.stdout:match("\n(%d+)\n%d+\n$"))   -- id -u
    sb:destroy()
  end)

  it("runs in the sandbox's working directory or opts.cwd; a missing cwd is not_found",
     function()
    if not need() then return end
    local sb <close> = create()
    assert.equal(sb.handle.workdir .. "\n", assert(sb:exec({ "pwd" })).stdout)
    assert(sb:exec({ "mkdir", "-p", "sub/dir" }))
    assert.equal(sb.handle.workdir .. "/sub/dir\n",
                 assert(sb:exec({ "pwd" }, { cwd = "sub/dir" })).stdout)
    assert.equal("/tmp\n", assert(sb:exec({ "pwd" }, { cwd = "/tmp" })).stdout)
    local r, err = sb:exec({ "pwd" }, { cwd = "/nowhere" })
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    local r2, err2 = sb:exec({ "no-such-binary" })
    if r2 then assert.equal(127, r2.exit_code) else assert.equal("not_found", err2.code) end
    assert.equal(1, the_agent(sb).starts)
    sb:destroy()
  end)

  it("carries stdin, gives /dev/null without it, falls back for a writer function and for " ..
     "stdin over STDIN_MAX", function()
    if not need() then return end
    local sb <close> = create()
    assert.equal("abc\0def", assert(sb:exec({ "cat" }, { stdin = "abc\0def" })).stdout)
    assert.equal("", assert(sb:exec({ "cat" }, { timeout = 20 })).stdout)
    local pid = the_agent(sb).peer.pid
    local chunks = { "x", "y" }
    local r = assert(sb:exec({ "sh", "-c", "cat; echo $PPID" }, {
      stdin = function() return table.remove(chunks, 1) end }))
    local got, ppid = r.stdout:match("^(xy)(%d+)\n$")
    assert.equal("xy", got)
    assert.are_not.equal(pid, tonumber(ppid))            -- the plain docker exec path
    local max = agent.STDIN_MAX
    agent.STDIN_MAX = 4                                   -- stdin over the cap: plain too
    local big = sb:exec({ "sh", "-c", "cat; echo $PPID" }, { stdin = "12345" })
    agent.STDIN_MAX = max
    got, ppid = assert(big).stdout:match("^(12345)(%d+)\n$")
    assert.equal("12345", got)
    assert.are_not.equal(pid, tonumber(ppid))
    assert.equal(pid, parent(sb, { stdin = "1234" }))     -- at the cap: the agent
    sb:destroy()
  end)

  it("streams output to the callbacks, caps it as exec does, reports codes and signals",
     function()
    if not need() then return end
    local sb <close> = create()
    local out, err = {}, {}
    local r = assert(sb:exec({ "sh", "-c", "echo one; echo two >&2; echo three" }, {
      on_stdout = function(d) out[#out + 1] = d end,
      on_stderr = function(d) err[#err + 1] = d end }))
    assert.equal("one\nthree\n", table.concat(out))
    assert.equal("two\n", table.concat(err))
    assert.equal("one\nthree\n", r.stdout)
    local big = { "sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; echo; echo tail" }
    local via = assert(sb:exec(big, { max_output = 1000 }))
    local direct = assert(plain(sb):exec(big, { max_output = 1000 }))
    assert.is_true(via.truncated)
    assert.equal(direct.stdout, via.stdout)
    assert.equal(direct.stdout_bytes, via.stdout_bytes)
    assert.equal(3, assert(sb:exec({ "sh", "-c", "exit 3" })).exit_code)
    local k = assert(sb:exec({ "sh", "-c", "kill -TERM $$" }))
    assert.equal(143, k.exit_code)
    assert.equal(15, k.signal)
    assert.equal(1, the_agent(sb).starts)
    sb:destroy()
  end)

  it("kills the command's whole process group on timeout and on cancellation", function()
    if not need() then return end
    local sb <close> = create()
    -- planted: a child that outlives its exec (as under docker exec) is seen running
    assert(sb:exec({ "sh", "-c", "sleep 320 >/dev/null 2>&1 &" }))
    assert.is_truthy(running(sb, "sleep320") ~= "")
    local r = assert(sb:exec({ "sh", "-c", "sleep 321 & (sleep 322 &); cat; sleep 323" },
                             { timeout = 0.5, stdin = "in" }))
    assert.is_true(r.timed_out)
    assert.equal(137, r.exit_code)
    assert.equal("in", r.stdout)
    assert.is_truthy(h.eventually(function() return running(sb, "sleep32") == "sleep320" ..
                                                    "\n" end, 5), running(sb, "sleep32"))
    local t = sandlot.spawn(function() return sb:exec({ "sh", "-c", "sleep 331 & sleep 332" }) end)
    assert.is_truthy(h.eventually(function() return running(sb, "sleep33") ~= "" end, 5))
    t:cancel()
    assert.is_truthy(h.eventually(function() return running(sb, "sleep33") == "" end, 5),
                     running(sb, "sleep33"))
    assert.equal(1, the_agent(sb).starts)
    sb:destroy()
  end)

  it("restarts a killed agent and one of a restarted container; an exec in flight fails " ..
     "and is not run again", function()
    if not need() then return end
    local sb <close> = create()
    assert(sb:exec({ "true" }))
    local a = the_agent(sb)
    local pid = a.peer.pid
    assert.equal(0, assert(plain(sb):exec({ "kill", "-KILL", tostring(pid) })).exit_code)
    assert.equal("hello\n", assert(sb:exec({ "echo", "hello" })).stdout)
    assert.equal(2, a.starts)
    assert.are_not.equal(pid, a.peer.pid)
    api({ method = "POST", path = "/containers/" .. sb.handle.container .. "/restart",
          query = { t = "0" }, timeout = 60 })
    assert.equal("again\n", assert(sb:exec({ "echo", "again" })).stdout)
    assert.equal(3, a.starts)
    -- in flight: the command counts its runs in a file, the agent is killed under it
    local t = sandlot.spawn(function()
      return sb:exec({ "sh", "-c", "echo run >>/tmp/runs; sleep 30" })
    end)
    assert.is_truthy(h.eventually(function()
      return assert(plain(sb):exec({ "cat", "/tmp/runs" })).stdout == "run\n"
    end, 10))
    assert(plain(sb):exec({ "kill", "-KILL", tostring(a.peer.pid) }))
    local r, err = t:join()
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    assert.is_truthy(err.message:find("not run again", 1, true))
    assert.equal("ok\n", assert(sb:exec({ "echo", "ok" })).stdout)
    assert.equal(4, a.starts)
    assert.equal("run\n", assert(sb:exec({ "cat", "/tmp/runs" })).stdout)
    sb:destroy()
  end)

  it("leaves the agent of a container paused behind its back alone: the exec takes the " ..
     "plain path and fails as docker exec does", function()
    if not need() then return end
    local sb <close> = create()
    assert(sb:exec({ "true" }))
    local a = the_agent(sb)
    local pid = a.peer.pid
    local path = "/containers/" .. sb.handle.container
    api({ method = "POST", path = path .. "/pause", timeout = 30 })
    local r, err = sb:exec({ "echo", "paused" })
    api({ method = "POST", path = path .. "/unpause", timeout = 30 })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)                  -- docker exec's 409
    assert.equal("hello\n", assert(sb:exec({ "echo", "hello" })).stdout)
    assert.equal(pid, a.peer.pid)
    assert.equal(1, a.starts)
    sb:destroy()
  end)

  -- Runs fn with sandlot.replicate answering fail() (counted), then puts it back.
  local function failing_replicate(fail, fn)
    local real = require("sandlot.replicate")
    local calls = 0
    package.loaded["sandlot.replicate"] = { replicate = function()
      calls = calls + 1
      return nil, fail(calls)
    end }
    local ok, err = pcall(fn, function() return calls end)
    package.loaded["sandlot.replicate"] = real
    assert(ok, err)
  end

  it("falls back to docker exec where the agent cannot start: for good, or until a retry",
     function()
    if not need() then return end
    failing_replicate(function()
      return errors.new("not_supported", "the sandbox is riscv64; this host has x86_64 only")
    end, function(calls)
      local sb <close> = create()
      local items = {}
      for i = 1, 8 do items[i] = i end
      local res, errs = sandlot.map(items, function(i)        -- all waiting on one start
        return assert(sb:exec({ "echo", tostring(i) })).stdout
      end)
      assert.is_nil(errs)
      for i = 1, 8 do assert.equal(i .. "\n", res[i]) end
      assert.equal("x\n", assert(sb:exec({ "echo", "x" })).stdout)
      assert.equal(1, calls())                               -- remembered: never tried again
      assert.equal("not_supported", the_agent(sb).broken.code)
      sb:destroy()
    end)
    local retry = agent.RETRY_AFTER
    agent.RETRY_AFTER = 0.3
    failing_replicate(function()
      return errors.new("timeout", "no hello from the replica within 30s")
    end, function(calls)
      local sb <close> = create()
      assert.equal("a\n", assert(sb:exec({ "echo", "a" })).stdout)
      assert.equal("b\n", assert(sb:exec({ "echo", "b" })).stdout)
      assert.equal(1, calls())                               -- not before RETRY_AFTER
      sandlot.sleep(0.4)
      assert.equal("c\n", assert(sb:exec({ "echo", "c" })).stdout)
      assert.equal(2, calls())
      sb:destroy()
    end)
    agent.RETRY_AFTER = retry
    local sb <close> = create()                 -- the real one again: the agent starts
    assert.equal(assert(sb:exec({ "true" })) and the_agent(sb).peer.pid, parent(sb))
    sb:destroy()
  end)

  it("runs many execs at once on one agent", function()
    if not need() then return end
    local sb <close> = create()
    local items = {}
    for i = 1, 60 do items[i] = i end
    local res, errs = sandlot.map(items, function(i)
      local r = assert(sb:exec({ "sh", "-c", "sleep 0.$(($1 % 3)); echo $1 $PPID", "sh",
                                 tostring(i) }))
      return r.stdout
    end, { limit = 30 })
    assert.is_nil(errs)
    local pid = the_agent(sb).peer.pid
    for i = 1, 60 do assert.equal(("%d %d\n"):format(i, pid), res[i]) end
    assert.equal(1, the_agent(sb).starts)
    sb:destroy()
  end)

  it("leaves no file descriptor open and no zombie of its own in the container", function()
    if not need() then return end
    -- planted: the zombie check sees a zombie (a child its parent does not reap)
    local zsb <close> = create()
    local zombies = 'n=0; for f in /proc/[0-9]*/stat; do read -r a b s rest <"$f" ' ..
                    '2>/dev/null; [ "$s" = Z ] && n=$((n+1)); done; echo $n'
    assert(plain(zsb):exec({ "sh", "-c", "(sh -c 'sleep 0 & exec sleep 5' &) >/dev/null 2>&1" }))
    assert.is_truthy(h.eventually(function()
      return tonumber(assert(plain(zsb):exec({ "sh", "-c", zombies })).stdout) > 0
    end, 5))
    zsb:destroy()
    sandlot.sleep(0.2)
    local before = h.settled_fd_count()
    do
      local sb <close> = create()
      for _ = 1, 5 do assert(sb:exec({ "sh", "-c", "sleep 0.01 & wait; echo x >&2" })) end
      assert(sb:exec({ "cat" }, { stdin = "in" }))
      assert.equal("0\n", assert(sb:exec({ "sh", "-c", zombies })).stdout)
      assert.equal(1, the_agent(sb).starts)
      sb:destroy()
    end
    h.assert_no_fd_leak(before)
  end)
end)
