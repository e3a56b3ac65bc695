-- spec/pty_spec.lua: processes on a terminal: sandlot.proc.spawn{pty = ...} (core/pty.c,
-- core/proc.c), and sb:spawn(cmd, {pty = ...}) with p:resize on local (both isolations), ssh
-- (the suite's sshd) and docker (the suite's daemon). Each provider runs the same cases: a
-- terminal inside at the size asked for and then the new one, Ctrl-C reaching the foreground
-- process, the exit status back; locally also no fd or child left behind.
local sandlot = require("sandlot")
local h = require("spec.helper")
local sshd = require("spec.support.sshd")
local docker = require("spec.support.docker")

-- Collects a process's output; expect(text) waits for it (plain) and fails with the transcript.
local function watch(p, sb_read)
  local w = { out = "" }
  w.t = sandlot.spawn(function()
    while true do
      local a, b
      if sb_read then a, b = p:read() else b, a = p:read() end  -- sb: stream, data; core: data
      if a == nil then break end
      w.out = w.out .. b
    end
    w.eof = true
  end)
  function w.expect(text)
    local ok = h.eventually(function() return w.out:find(text, 1, true) or w.eof end, 20)
    assert(ok and w.out:find(text, 1, true),
           ("expected %q on the terminal; it shows:\n%s"):format(text, w.out))
  end
  function w.finish() h.eventually(function() return w.eof end, 20) end  -- one reader or waiter
  function w.close() w.t:cancel() end
  return w
end

local SIZE = "tty; stty size; echo ready; read x; stty size; echo done; exit 3"
local INT = "trap 'echo got-int; exit 7' INT; echo ready; while :; do sleep 1; done"

local function cases(label, get, opts)
  opts = opts or {}
  local fds
  local function start(cmd)
    local sb, why = get()
    if not sb then return nil, why end
    assert(sb:exec({ "true" }))           -- what a first exec opens for good (the ledger)
    fds = opts.fds and h.settled_fd_count()
    return assert(sb:spawn({ "sh", "-c", cmd }, { pty = { rows = 31, cols = 101 } }))
  end

  it(label .. ": a terminal of the size asked for, resized, and the exit status", h.task(function()
    local p, why = start(SIZE)
    if not p then return pending(why) end
    local w = watch(p, true)
    w.expect("ready")
    assert.matches("^/dev/", w.out)       -- tty names a device: not "not a tty"
    assert.truthy(w.out:find("31 101", 1, true))
    assert(p:resize(42, 123))
    assert(p:write("go\r"))
    w.expect("done")
    assert.truthy(w.out:find("42 123", 1, true))
    w.finish()
    local r = assert(p:wait(20))
    assert.equal(3, r.exit_code)
    w.close()
    p:close()
    if opts.fds then
      h.assert_no_children()
      h.assert_no_fd_leak(fds)
    end
  end))

  it(label .. ": Ctrl-C reaches the foreground process", h.task(function()
    local p, why = start(INT)
    if not p then return pending(why) end
    local w = watch(p, true)
    w.expect("ready")
    sandlot.sleep(0.2)                    -- the loop's sleep is running
    assert(p:write("\3"))
    w.expect("got-int")
    w.finish()
    assert.equal(7, assert(p:wait(20)).exit_code)
    w.close()
    p:close()
    if opts.fds then h.assert_no_children() end
  end))
end

describe("sandlot.proc.spawn with a pty", function()
  it("gives the child a controlling terminal; output is one stream", h.task(function()
    assert(sandlot.proc.run({ "true" }))  -- libuv's first stream opens a reserve fd for good
    local fds = h.settled_fd_count()
    local p = assert(sandlot.proc.spawn({ "sh", "-c", "tty; stty size; echo err >&2; " ..
                                          "read x; stty size; echo got $x; exit 5" },
                                        { pty = { rows = 20, cols = 70 }, stream = true }))
    local w = watch(p)
    w.expect("20 70")
    w.expect("err")                       -- stderr is the terminal too
    assert(p:resize(25, 90))
    assert(p:write("hi\r"))
    w.expect("got hi")
    assert.truthy(w.out:find("25 90", 1, true))
    assert.matches("^/dev/pts/", w.out)
    w.finish()
    local r = assert(p:wait())
    assert.equal(5, r.exit_code)
    w.close()
    p:close()
    h.assert_no_children()
    h.assert_no_fd_leak(fds)
  end))

  it("sends Ctrl-C to the terminal's foreground group", h.task(function()
    local p <close> = assert(sandlot.proc.spawn({ "sh", "-c", INT },
                                                { pty = { rows = 24, cols = 80 },
                                                  stream = true }))
    local w = watch(p)
    w.expect("ready")
    sandlot.sleep(0.2)
    assert(p:write("\3"))
    w.expect("got-int")
    w.finish()
    assert.equal(7, p:wait().exit_code)
    w.close()
  end))

  it("refuses bad sizes, pty with run, and resize without a pty", h.task(function()
    assert.has_error(function()
      sandlot.proc.spawn({ "true" }, { pty = { rows = 0, cols = 80 } })
    end, "proc.spawn: opts.pty.rows must be an integer in 1..65535")
    assert.has_error(function()
      sandlot.proc.spawn({ "true" }, { pty = { rows = 24, colz = 80 } })
    end, "proc.spawn: unknown opts.pty field colz (rows, cols)")
    assert.has_error(function() sandlot.proc.run({ "true" }, { pty = { rows = 1, cols = 1 } }) end)
    local p <close> = assert(sandlot.proc.spawn({ "true" }, { stream = true }))
    local ok, err = p:resize(10, 10)
    assert.is_nil(ok)
    assert.equal("invalid_input", err.code)
    p:wait()
  end))
end)

describe("sb:spawn with a pty", function()
  local tmp

  lazy_setup(function()
    tmp = h.tmpdir()
    sandlot.config.set({ providers = {
      ["pty-ns"] = { "local", state_dir = tmp .. "/ns", isolation = "namespaces" },
      ["pty-none"] = { "local", state_dir = tmp .. "/none", isolation = "none" },
      ["pty-exec"] = { "spec/conformance/exec_only.lua", state_dir = tmp .. "/exec",
                       isolation = "none" },
    } })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    h.rmtree(tmp)
  end)

  local sbs = {}
  local function local_sb(name)
    return function()
      if sbs[name] then return sbs[name] end
      local sb, err = sandlot.create(name, {})
      if not sb then
        if name == "pty-ns" and err.code == "not_supported" then return nil, tostring(err) end
        error(err)
      end
      sbs[name] = sb
      return sb
    end
  end

  cases("local (namespaces)", local_sb("pty-ns"), { fds = true })
  cases("local (no isolation)", local_sb("pty-none"), { fds = true })

  it("is not_supported where the provider has no capabilities.pty, and checked", h.task(function()
    local sb <close> = assert(sandlot.create("pty-exec", {}))
    local p, err = sb:spawn({ "sh" }, { pty = { rows = 24, cols = 80 } })
    assert.is_nil(p)
    assert.equal("not_supported", err.code)
    assert.matches("provider exec%-only cannot give a process a terminal", err.message)
    local nb = local_sb("pty-none")()
    assert.has_error(function() nb:spawn({ "sh" }, { pty = { rows = 24 } }) end,
                     "spawn: opts.pty.cols must be an integer in 1..65535")
    local q <close> = assert(nb:spawn({ "true" }))
    local ok, rerr = q:resize(10, 10)
    assert.is_nil(ok)
    assert.equal("invalid_input", rerr.code)
  end))

  it("cleans up", h.task(function()
    for _, sb in pairs(sbs) do sb:destroy() end
  end))
end)

describe("sb:spawn with a pty on ssh #ssh", function()
  local srv, why, sb

  lazy_setup(function()
    srv, why = sshd.start()
    if srv then
      sandlot.config.set({ providers = {
        ["pty-ssh"] = { "ssh", host = srv.host, port = srv.port, user = srv.user,
                        key_file = srv.key, known_hosts = srv.known_hosts, agent = false,
                        base_dir = srv.dir .. "/sandboxes" },
      } })
    end
  end)

  lazy_teardown(function()
    if sb then sandlot.spawn(function() sb:destroy() end):join() end
    sandlot.config.reset()
    if srv then srv:stop() end
  end)

  cases("ssh", function()
    if not srv then
      if os.getenv("CI") then error("sshd is required in CI: " .. tostring(why)) end
      return nil, why
    end
    sb = sb or assert(sandlot.create("pty-ssh", {}))
    return sb
  end)
end)

describe("sb:spawn with a pty on docker #docker", function()
  local env, why, sb

  lazy_setup(function()
    env, why = docker.start()
    if env then
      sandlot.config.set({ providers = {
        ["pty-docker"] = { "docker", host = env.host, image = env.image, pull = false },
      } })
    end
  end)

  lazy_teardown(function()
    if sb then sandlot.spawn(function() sb:destroy() end):join() end
    sandlot.config.reset()
    docker.stop(env)
  end)

  cases("docker", function()
    if not env then return nil, docker.unavailable(why) end
    sb = sb or assert(sandlot.create("pty-docker", {}))
    return sb
  end)
end)
