-- spec/lifetime_spec.lua: a sandbox held with `local sb <close>` is destroyed on every way out
-- of its scope, on every provider: a task ended by sandlot.timeout or task:cancel, an error
-- (in a task and in the main chunk), and a script stopped by SIGTERM or SIGINT. Each case runs
-- a child host (SANDLOT_BIN) and looks, after it exited, for what the sandbox left: the local
-- provider's directory, or the Docker container. Before each case looks for an absence it sees
-- the sandbox present, so a look that could never find anything fails.
local sandlot = require("sandlot")
local http = require("sandlot.http")
local h = require("spec.helper")
local docker = require("spec.support.docker")

-- The child: makes provider "p" from its arguments, creates a sandbox before the way out
-- under test (so that creating it never races a deadline), prints its id and container, then
-- leaves its scope by `how`.
local CHILD = [[
local sandlot = require("sandlot")
local kind, where, image, how = ...
-- docker's ids come from math.random, whose seed two children started in the same second may
-- share where addresses do not vary (a sanitizer build)
math.randomseed(os.time(), require("sandlot.core.sys").getpid())
if kind == "docker" then
  sandlot.config.set({ providers = { p = { "docker", host = where, image = image,
                                           pull = false } } })
elseif kind == "hang" then                -- a provider whose destroy never finishes
  sandlot.config.set({ providers = { p = { where } } })
else
  -- isolation as the machine allows (none in a chroot): the sandbox's lifetime is what counts
  sandlot.config.set({ providers = { p = { "local", state_dir = where,
                                           isolation = os.getenv("SPEC_ISOLATION") } } })
end
local pre = assert(sandlot.create("p"))
local function announce(sb)
  io.write("id=", sb.id, " container=", tostring(sb.handle.container), "\n")
  io.stdout:flush()
end
local function hold()
  local sb <close> = pre
  announce(sb)
  sandlot.sleep(60)                       -- ended from outside, or by the signal
  return "slept"
end
if how == "timeout" then
  local r, err = sandlot.timeout(0.05, hold)
  assert(r == nil and err.code == "timeout", "the timeout did not end the task")
  print("timed out")
elseif how == "timeout_then_fail" then    -- the script fails while the queued destroy runs
  sandlot.timeout(0.05, hold)
  error("boom right after")
elseif how == "cancel" then
  local t = sandlot.spawn(hold)
  while t:status() ~= "waiting" do sandlot.sleep(0.01) end
  t:cancel()
  print("cancelled", pcall(t.join, t))
elseif how == "task_error" then
  local t = sandlot.spawn(function()
    local sb <close> = pre
    announce(sb)
    sandlot.sleep(0.01)
    error("boom in the task")
  end)
  print("joined", pcall(t.join, t))
elseif how == "main_error" then
  local sb <close> = pre
  announce(sb)
  error("boom in the main chunk")
elseif how == "signal" then
  hold()
elseif how == "leak" then
  announce(pre)
end
]]

describe("a sandbox held with <close>", function()
  local dir, script

  setup(function()
    dir = h.tmpdir()
    script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write(CHILD)
    f:close()
  end)

  teardown(function()
    if dir then h.rmtree(dir) end
  end)

  -- Runs the child; with `signal`, sends it once the sandbox exists. Returns the result and
  -- the sandbox's id and container.
  -- With `again`, sends the signal a second time once stderr shows that text.
  local function child(args, signal, env, again)
    local argv = { h.BIN, script }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    env = env or {}
    env.SANDLOT_QUIET = false
    env.SPEC_ISOLATION = require("spec.support.namespaces").why() and "none" or false
    local p <close> = assert(sandlot.proc.spawn(argv, { stream = true, kill_group = false,
                                                       env = env }))
    local out, err, id, container, signalled = "", "", nil, nil, false
    local reader = sandlot.spawn(function()
      while true do
        local chunk, stream = p:read()
        if chunk == nil then break end
        if stream == "stderr" then err = err .. chunk else out = out .. chunk end
        if not id then id, container = out:match("id=(%S+) container=(%S+)\n") end
        if signal and id and not signalled then
          signalled = true
          assert(p:kill(signal))
        end
        if again and err:find(again, 1, true) then
          again = nil
          assert(p:kill(signal))
        end
      end
    end)
    local r = assert(sandlot.timeout(120, function()
      reader:join()
      return p:wait()
    end))
    return { code = r.exit_code, signal = r.signal, out = out, err = err }, id, container
  end

  local function cases(kind, setup_provider)
    local where, image, exists, remove

    lazy_setup(function()
      where, image, exists, remove = setup_provider()
    end)

    local function check(how, signal)
      if not where then pending(image) return end
      local r, id, container = child({ kind, where, image or "", how }, signal)
      assert(id, "the child never created its sandbox:\n" .. r.out .. r.err)
      assert.is_false(exists(id, container),
                      ("the sandbox %s is still there after: %s\n%s"):format(id, how, r.err))
      assert.is_nil(r.err:find("warning", 1, true), r.err)
      return r
    end

    it("sees a sandbox that exists (the check can fail)", function()
      if not where then pending(image) return end
      local r, id, container = child({ kind, where, image or "", "leak" })
      assert.equal(0, r.code, r.err)      -- "leak" holds its sandbox without <close>
      assert(id, r.out .. r.err)
      assert.is_true(exists(id, container))
      remove(id, container)
      assert.is_false(exists(id, container))
    end)

    it("is destroyed when sandlot.timeout ends the task holding it", function()
      assert.matches("timed out", check("timeout").out)
    end)

    it("is destroyed when the script fails while the destroy a timeout queued runs", function()
      local r = check("timeout_then_fail")
      assert.equal(1, r.code)
      assert.matches("boom right after", r.err)
    end)

    it("is destroyed when task:cancel ends the task holding it", function()
      -- the task goes on after its sleep failed with `cancelled`, and returns
      assert.matches("cancelled\ttrue\tslept", check("cancel").out)
    end)

    it("is destroyed when the task holding it fails", function()
      assert.matches("joined\tfalse\t.*boom in the task", check("task_error").out)
    end)

    it("is destroyed when the main chunk fails", function()
      local r = check("main_error")
      assert.equal(1, r.code)
      assert.matches("boom in the main chunk", r.err)
    end)

    it("is destroyed when the script gets SIGTERM, which then ends it", function()
      local r = check("signal", "TERM")
      assert.equal(15, r.signal)
      assert.matches("terminated: stopping", r.err)
    end)

    it("is destroyed when the script gets SIGINT (Ctrl-C), which then ends it", function()
      local r = check("signal", "INT")
      assert.equal(2, r.signal)
      assert.matches("interrupted: stopping", r.err)
    end)
  end

  describe("with a provider table flagged capabilities.remote", function()
    local function provider(log)
      return {
        name = "remote_fake", capabilities = { remote = true },
        create = function() return { id = "rf" .. #log } end,
        destroy = function(_, handle)
          assert(sandlot.sleep(0.01))        -- it must wait: a remote call
          log[#log + 1] = handle.id
          return true
        end,
        status = function() return "running" end,
        exec = function() return { exit_code = 0, stdout = "", stderr = "" } end,
      }
    end

    it("is destroyed when an error unwinds the task holding it", function()
      local log = {}
      local t = sandlot.spawn(function()
        local _sb <close> = assert(sandlot.create(provider(log)))
        error("boom")
      end)
      assert.is_false(pcall(t.join, t))
      assert.is_truthy(h.eventually(function() return log[1] end))
      assert.equal("rf0", log[1])
    end)

    it("is destroyed when pcall unwinds its scope", function()
      local log = {}
      assert.is_false(pcall(function()
        local _sb <close> = assert(sandlot.create(provider(log)))
        error("boom")
      end))
      assert.is_truthy(h.eventually(function() return log[1] end))
    end)
  end)

  describe("with a destroy that never finishes", function()
    local prov

    setup(function()
      prov = dir .. "/hang.lua"
      local f = assert(io.open(prov, "w"))
      f:write([[
        local sandlot = require("sandlot")
        return { name = "hang", capabilities = {},
          create = function() return { id = "hang1" } end,
          destroy = function() sandlot.sleep(60); return true end,
          status = function() return "running" end,
          exec = function() return { exit_code = 0, stdout = "", stderr = "" } end }
      ]])
      f:close()
    end)

    it("gives up after SANDLOT_CLOSE_TIMEOUT with a warning", function()
      local r = child({ "hang", prov, "", "main_error" }, nil, { SANDLOT_CLOSE_TIMEOUT = "0.2" })
      assert.equal(1, r.code)
      assert.matches("warning: destroying sandlot.sandbox%(p:hang1[^)]*%) on close: timeout", r.err)
    end)

    it("is abandoned on a second SIGTERM, which ends the script at once", function()
      local r = child({ "hang", prov, "", "signal" }, "TERM", {}, "stopping")
      assert.equal(15, r.signal)
      assert.matches("terminated: stopping", r.err)
    end)
  end)

  describe("on the local provider", function()
    cases("local", function()
      local state = dir .. "/state"
      return state, nil, function(id)
        return require("sandlot.fs").lstat(state .. "/" .. id) ~= nil
      end, function(id)
        h.rmtree(state .. "/" .. id)
      end
    end)
  end)

  describe("on docker #docker", function()
    local env
    cases("docker", function()
      local why
      env, why = docker.start()
      if not env then return nil, docker.unavailable(why) end
      return env.host, env.image, function(_, container)
        local res = assert(http.request({ unix_socket = env.socket,
                                          path = "/containers/" .. container .. "/json" }))
        assert(res.status == 200 or res.status == 404, "docker answered " .. res.status)
        return res.status == 200
      end, function(_, container)
        local res = assert(http.request({ unix_socket = env.socket, method = "DELETE",
                                          path = "/containers/" .. container,
                                          query = { force = "true" } }))
        assert(res.status == 204, "docker answered " .. res.status)
      end
    end)
    lazy_teardown(function() docker.stop(env) end)
  end)
end)
