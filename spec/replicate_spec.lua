-- spec/replicate_spec.lua: sandlot.replicate. The static peer binary (how it is linked and
-- that it runs in an empty root), the framing against hostile bytes, the host's defences
-- against a fake replica, and one suite run on three providers: local (bubblewrap), docker
-- (the registry-free busybox image) and ssh (the suite's sshd), tagged #docker and #ssh.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local frames = require("sandlot._peer.frames")
local client = require("sandlot._peer.client")
local docker = require("spec.support.docker")
local sshd = require("spec.support.sshd")
local h = require("spec.helper")

local PEER = (h.BIN:match("^(.*)/[^/]*$") or ".") .. "/sandlot-peer"   -- beside the host
local CONFIG_SECRET = "cAnArYconfigsecret"          -- in a configured provider's password

-- A module that exists only on the host: written to a fresh host directory under a random
-- name, shipped through opts.paths.
local function host_module()
  local dir = h.tmpdir()
  local name = "hostonly_" .. require("sandlot.id").hex(4)
  local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
  f:write([[
local sandlot = require("sandlot")
local M = { state = {} }
function M.add(a, b) return a + b end
function M.info() return sandlot.replica == true, _VERSION end
function M.gen(n)
  local i = 0
  return function() i = i + 1; if i <= n then return { i = i, s = ("x"):rep(i % 7) } end end
end
function M.list() return { "a", "b", "c" } end
function M.fail() error(sandlot.errors.new("quota_exceeded", "planted failure")) end
function M.raise() error("plain boom") end
function M.returns_err() return nil, sandlot.errors.new("not_found", "nothing here") end
function M.slow(s, key)
  M.state[key] = "started"
  local ok, err = sandlot.sleep(s)
  M.state[key] = ok and "finished" or err.code
  return "done"
end
function M.state_of(key) return M.state[key] end
function M.callback(name, ...) return sandlot.host(name, ...) end
function M.env(name) return os.getenv(name) end
function M.say(s) print("said", s); return true end
return M
]])
  f:close()
  return dir, name
end

local function with_timeout(secs, fn, ...)
  local r = table.pack(sandlot.timeout(secs, fn, ...))
  return table.unpack(r, 1, r.n)
end

describe("sandlot-peer, the binary", function()
  it("is linked statically, without dlopen or NSS", h.task(function()
    local r = assert(sandlot.proc.run({ "file", PEER }))
    assert.matches("statically linked", r.stdout, 1, true)
    local dyn = assert(sandlot.proc.run({ "readelf", "-d", PEER }))
    assert.matches("no dynamic section", dyn.stdout .. dyn.stderr, 1, true)
    -- stripped: no symbol table at all, so look for the names in the bytes instead
    local f = assert(io.open(PEER, "rb"))
    local bin = f:read("a")
    f:close()
    for _, name in ipairs({ "getpwnam", "getaddrinfo", "gethostbyname", "libnss_" }) do
      assert.is_nil(bin:find(name, 1, true), name .. " is linked in")
    end
    -- the plant: the host binary does use dlopen, and the search above finds it there
    local host = assert(io.open(h.BIN, "rb"))
    assert.truthy(host:read("a"):find("dlopen", 1, true))
    host:close()
  end))

  it("runs in a root that holds nothing but itself (no libc, no /etc)", h.task(function()
    local skip = require("spec.support.namespaces").skip()
    if skip then return pending(skip) end
    local dir = h.tmpdir()
    assert(sandlot.proc.run({ "cp", PEER, dir .. "/peer" }))
    local r = assert(sandlot.proc.run({ "bwrap", "--unshare-all", "--bind", dir, "/",
                                        "/peer", "--version" }))
    h.rmtree(dir)
    assert.equal(0, r.exit_code, r.stderr)
    assert.matches("^sandlot%-peer " .. sandlot.version:gsub("%.", "%%."), r.stdout)
  end))
end)

describe("replica frames", function()
  it("round-trips messages, integers and binary intact, across split reads", function()
    local msg = { "call", 7, "call", "m.f", { n = 3, math.maxinteger, "\0\255", 1.5 } }
    local frame = assert(frames.encode(msg))
    assert.equal(#frame - 4, string.unpack(">I4", frame))
    local d = frames.decoder({ marker = frames.marker("n1") })
    local s = "banner\n" .. frames.marker("n1") .. frame
    for i = 1, #s do
      d:feed(s:sub(i, i))
      local got = d:next()
      if i < #s then assert.is_nil(got) else assert.same(msg, got) end
    end
    assert.equal("banner\n", d.noise)
    assert.equal(math.type(math.maxinteger), math.type(msg[5][1]))
  end)

  local bad = {
    { "oversized", string.pack(">I4", frames.MAX_FRAME + 1), "over the limit" },
    { "corrupt payload", "\0\0\0\3\xc1\xc1\xc1", "corrupt frame" },
    { "trailing bytes", "\0\0\0\2\xc0\xc0", "corrupt frame" },
    { "not a message", "\0\0\0\1\x2a", "not a message" },
  }
  for _, case in ipairs(bad) do
    it("refuses a " .. case[1] .. " frame with bad_response", function()
      local out, err = frames.decode_all(case[2])
      assert.is_nil(out)
      assert.equal("bad_response", err.code)
      assert.matches(case[3], err.message, 1, true)
    end)
  end

  it("gives up on output with no start marker after 64 KiB", function()
    local d = frames.decoder({ marker = frames.marker("n") })
    d:feed(("junk "):rep(14000))
    local msg, err = d:next()
    assert.is_nil(msg)
    assert.equal("bad_response", err.code)
    assert.matches("no protocol start", err.message, 1, true)
  end)
end)

-- A fake replica: the host binary running a script that writes chosen bytes, seen through the
-- provider process contract (read -> stream, data).
local FAKE = [[
local frames = require("sandlot._peer.frames")
local mode, nonce, version = os.getenv("MODE"), os.getenv("NONCE"), os.getenv("VERSION")
io.write("Welcome to the test host\n")
if mode ~= "nomarker" then io.write(frames.marker(nonce)) end
if mode == "version" then version = "9.9.9" end
if mode == "nomarker" then io.write(("noise "):rep(20000))
else io.write(assert(frames.encode({ "hello", { protocol = 1, version = version } }))) end
io.flush()
if mode == "corrupt" or mode == "oversize" then
  require("sandlot").sleep(0.3)
  io.write(mode == "corrupt" and "\0\0\0\4\xc1\xc1\xc1\xc1" or string.pack(">I4", 1 << 30))
  io.flush()
end
io.read("a")
]]

local function fake(mode)
  local nonce = require("sandlot.id").hex(4)
  local p = assert(sandlot.proc.spawn({ h.BIN, "-e", FAKE }, {
    stream = true, stdin = "pipe", env = { MODE = mode, NONCE = nonce,
                                           VERSION = sandlot.version } }))
  local wrapped = setmetatable({}, { __index = {
    read = function() local c, w = p:read(); if c == nil then return nil, w end; return w, c end,
    write = function(_, d) return p:write(d) end,
    close_stdin = function() return p:close_stdin() end,
    kill = function(_, s) return p:kill(s) end, wait = function() return p:wait() end,
    close = function() return p:close() end,
  } })
  return client.connect(wrapped, { nonce = nonce, version = sandlot.version, timeout = 10,
                                   on_log = function() end })
end

describe("a replica that misbehaves", function()
  after_each(h.assert_no_children)

  it("with another version is refused, both versions named", h.task(function()
    local peer, err = fake("version")
    assert.is_nil(peer)
    assert.equal("not_supported", err.code)
    assert.matches("sandlot 9.9.9", err.message, 1, true)
    assert.matches("sandlot " .. sandlot.version, err.message, 1, true)
  end))

  for _, mode in ipairs({ "corrupt", "oversize" }) do
    it("sending a " .. mode .. " frame fails its calls with bad_response; the host goes on",
       h.task(function()
      local peer = assert(fake(mode))
      local r, err = with_timeout(10, peer.call, peer, "m.f")
      assert.is_nil(r)
      assert.equal("bad_response", err.code)
      assert.is_false(peer:alive())
      peer:close()
      assert.equal(3, select(1, assert(sandlot.proc.run({ "sh", "-c", "exit 3" }))).exit_code)
    end))
  end

  it("with no start marker in its output fails with bad_response", h.task(function()
    local peer, err = fake("nomarker")
    assert.is_nil(peer)
    assert.equal("bad_response", err.code)
    assert.matches("Welcome to the test host", err.message, 1, true)
  end))
end)

-- The suite every provider runs. make_sb() -> sb | nil, reason (pending).
local function suite(label, make_sb, opts)
  opts = opts or {}
  describe("on " .. label, function()
    local moddir, mod, sb

    before_each(function()
      moddir, mod = host_module()
    end)

    after_each(function()
      if sb then sb:destroy() end
      sb = nil
      h.rmtree(moddir)
    end)

    local function start(ropts)
      local why
      sb, why = make_sb()
      if not sb then return nil, why end
      ropts = ropts or {}
      ropts.paths = { moddir }
      ropts.script_dir = false
      ropts.on_log = ropts.on_log or function() end
      return assert(sandlot.replicate(sb, ropts))
    end

    it("calls a module that exists only on the host", h.task(function()
      local lines = {}
      local peer, why = start({ on_log = function(l) lines[#lines + 1] = l end })
      if not peer then return pending(why) end
      assert.equal(5, peer:call(mod .. ".add", 2, 3))
      assert.equal(math.type(1), math.type(peer:call(mod .. ".add", 2, 3)))
      local replica, version = peer:call(mod .. ".info")
      assert.is_true(replica)
      assert.equal(_VERSION, version)
      assert.equal(7, peer:require(mod).add(3, 4))
      assert.same({ 42, "x" }, { peer:eval("return ... * 2, 'x'", 21) })
      local none, err = peer:call(mod .. ".returns_err")
      assert.is_nil(none)
      assert.equal("not_found", err.code)
      none, err = peer:call(mod .. ".fail")
      assert.is_nil(none)
      assert.equal("quota_exceeded", err.code)
      assert.matches(mod .. ".lua", err.traceback, 1, true)
      none, err = peer:call(mod .. ".raise")
      assert.is_nil(none)
      assert.equal("internal", err.code)
      assert.matches("plain boom", err.message, 1, true)
      none, err = peer:call("no_such_module.fn")
      assert.is_nil(none)
      assert.equal("not_found", err.code)
      none, err = peer:call(mod .. ".add", function() end)     -- cannot cross: refused here
      assert.is_nil(none)
      assert.equal("invalid_input", err.code)
      none, err = peer:eval("return function() end")           -- nor back
      assert.is_nil(none)
      assert.equal("invalid_input", err.code)
      assert.is_true(peer:call(mod .. ".say", "hello"))
      assert.same({ "said\thello" }, lines)
      local t = assert(peer:spawn(mod .. ".add", 10, 5))
      assert.equal(15, t:join())
      assert.equal("", peer:eval("return package.path"))      -- only what was shipped
      peer:close()
      assert.has_error(function() peer:call(mod .. ".add", 1, 1) end,
                       "attempt to use a closed sandlot.peer")
    end))

    it("ships nothing new the second time (content-addressed cache)", h.task(function()
      local p1, why = start()
      if not p1 then return pending(why) end
      assert.is_false(p1.shipped.cache_hit)
      local function listing()
        return assert(sb:exec({ "sh", "-c", "ls -1 bin lib | sort" },
                              { cwd = p1.dest })).stdout
      end
      local before = listing()
      assert.truthy(before:find(mod, 1, true) == nil)           -- names are hashes only
      local p2 = assert(sandlot.replicate(sb, { paths = { moddir }, script_dir = false }))
      assert.is_true(p2.shipped.cache_hit)
      assert.equal(0, p2.shipped.bytes)
      assert.equal(before, listing())
      assert.equal(9, p2:call(mod .. ".add", 4, 5))
      -- files removed behind the host's back: the next replicate notices and ships again
      assert.equal(0, assert(sb:exec({ "rm", "-r", "lib" }, { cwd = p1.dest })).exit_code)
      local p3 = assert(sandlot.replicate(sb, { paths = { moddir }, script_dir = false }))
      assert.is_false(p3.shipped.cache_hit)
      assert.is_true(p3.shipped.files > 1)
      assert.equal(1, p3:call(mod .. ".add", 0, 1))
      p1:close()
      p2:close()
      p3:close()
    end))

    it("streams a generator's values, in order, past the window", h.task(function()
      local peer, why = start()
      if not peer then return pending(why) end
      local n = 0
      for v in peer:stream(mod .. ".gen", 300) do
        n = n + 1
        assert.equal(n, v.i)
        assert.equal(("x"):rep(n % 7), v.s)
      end
      assert.equal(300, n)
      local got = {}
      for v in peer:stream(mod .. ".list") do got[#got + 1] = v end
      assert.same({ "a", "b", "c" }, got)
      for v in peer:stream(mod .. ".gen", 1000000) do
        if v.i == 10 then break end                           -- cancels the generator
      end
      assert.equal(3, peer:call(mod .. ".add", 1, 2))
      peer:close()
    end))

    it("cancels the remote call when the host task is cancelled", h.task(function()
      local peer, why = start()
      if not peer then return pending(why) end
      local t = sandlot.spawn(function() return peer:call(mod .. ".slow", 30, "k") end)
      assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k") end, 10))
      t:cancel()
      local r, err = t:join()
      assert.is_nil(r)
      assert.equal("cancelled", err.code)
      assert.truthy(h.eventually(function()
        return peer:call(mod .. ".state_of", "k") == "cancelled"
      end, 10))
      local rt = assert(peer:spawn(mod .. ".slow", 30, "k2"))
      assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k2") end, 10))
      assert.is_true(rt:cancel())
      assert.equal("cancelled", select(2, rt:join()).code)
      peer:close()
    end))

    it("fails pending calls with unavailable when the replica is killed", h.task(function()
      local peer, why = start()
      if not peer then return pending(why) end
      local t = sandlot.spawn(function() return peer:call(mod .. ".slow", 60, "k") end)
      assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k") end, 10))
      peer:spawn(mod .. ".noop")                               -- unknown: answered, ignored
      peer:eval("require('sandlot').proc.run({ 'kill', '-9', tostring(...) })", peer.pid)
      local r, err = with_timeout(10, t.join, t)
      assert.is_nil(r)
      assert.equal("unavailable", err.code)
      assert.truthy(err.message:find("signal 9", 1, true) or
                    err.message:find("status 137", 1, true), err.message)
      assert.equal("unavailable", select(2, peer:call(mod .. ".add", 1, 1)).code)
      peer:close()
    end))

    it("fails pending calls with unavailable when the sandbox is destroyed", h.task(function()
      local peer, why = start()
      if not peer then return pending(why) end
      local t = sandlot.spawn(function() return peer:call(mod .. ".slow", 60, "k") end)
      assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k") end, 10))
      assert(sb:destroy())
      sb = nil
      local r, err = with_timeout(10, t.join, t)
      assert.is_nil(r)
      assert.equal("unavailable", err.code)
      assert.matches("destroyed", err.message, 1, true)
    end))

    if opts.external_destroy then
      it("fails pending calls with unavailable when another handle destroys the sandbox",
         h.task(function()
        local peer, why = start()
        if not peer then return pending(why) end
        local t = sandlot.spawn(function() return peer:call(mod .. ".slow", 60, "k") end)
        assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k") end, 10))
        local other = assert(sandlot.from_map(sb:to_map()))
        assert(other:destroy())                    -- the host's peer hears only the channel
        local r, err = with_timeout(20, t.join, t)
        assert.is_nil(r)
        assert.equal("unavailable", err.code)
        peer:close()
      end))
    end

    it("ends the channel on junk written to the replica's stdout", h.task(function()
      local peer, why = start()
      if not peer then return pending(why) end
      local t = sandlot.spawn(function() return peer:call(mod .. ".slow", 60, "k") end)
      assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k") end, 10))
      -- print and io.write cannot reach the channel: they go to the log and to stderr
      peer:eval("io.write('stray output\\n'); io.stdout:flush()")
      assert.equal(3, peer:call(mod .. ".add", 1, 2))
      -- the channel itself can (code in the replica may do anything there)
      peer:eval("require('sandlot._peer.serve')._raw_write('\\0\\0\\0\\4junk')")
      local r, err = with_timeout(10, t.join, t)
      assert.is_nil(r)
      assert.equal("bad_response", err.code)
      peer:close()
      local again = assert(sandlot.replicate(sb, { paths = { moddir }, script_dir = false }))
      assert.equal(2, again:call(mod .. ".add", 1, 1))       -- the host is unharmed
      again:close()
    end))

    it("gives the replica no host secrets; it calls back only what is exposed",
       h.task(function()
      local canary = "cAnArY" .. require("sandlot.id").hex(8)
      sys.setenv("SANDLOT_SPEC_TOKEN", canary)
      -- a config file among the shipped modules: never shipped, it may hold credentials
      local cf = assert(io.open(moddir .. "/appconfig.lua", "w"))
      cf:write("-- " .. CONFIG_SECRET .. "\nreturn { providers = {} }\n")
      cf:close()
      sys.setenv("SANDLOT_CONFIG", moddir .. "/appconfig.lua")
      local restore <close> = setmetatable({}, { __close = function()   -- even if start raises
        sys.setenv("SANDLOT_SPEC_TOKEN", nil)
        sys.setenv("SANDLOT_CONFIG", nil)
      end })
      local seen = {}
      local peer, why = start({ env = { VISIBLE = "yes" },
                                expose = { report = function(x)
                                  seen[#seen + 1] = x
                                  return "ok"
                                end } })
      getmetatable(restore).__close()
      if not peer then return pending(why) end
      assert.is_nil(peer:eval("return package.searchers[2]('appconfig') and nil"))
      local gone, gerr = peer:eval("return require('appconfig')")
      assert.is_nil(gone)
      assert.matches("not shipped", gerr.message, 1, true)
      assert.equal("yes", peer:call(mod .. ".env", "VISIBLE"))   -- env does pass
      assert.is_nil(peer:call(mod .. ".env", "SANDLOT_SPEC_TOKEN"))
      local environ = peer:eval("local t = {} for k, v in pairs(require('sandlot.core.sys')" ..
                                ".environ()) do t[#t + 1] = k .. '=' .. v end " ..
                                "return table.concat(t, '\\n')")
      assert.is_nil(environ:find(canary, 1, true))
      -- nothing shipped holds it; the plant proves the search finds it where it is
      assert.equal("/tmp/.sandlot-peer", peer.dest)
      assert(sb:write_file("/tmp/planted-canary", canary .. "\n" .. CONFIG_SECRET .. "\n"))
      for _, secret in ipairs({ canary, CONFIG_SECRET }) do
        local found = assert(sb:exec({ "grep", "-rl", secret, "." }, { cwd = "/tmp" }))
        assert.equal("./planted-canary\n", found.stdout)
      end
      assert.equal("ok", peer:call(mod .. ".callback", "report", 41))
      assert.same({ 41 }, seen)
      local r, err = peer:call(mod .. ".callback", "os.execute", "true")
      assert.is_nil(r)
      assert.equal("permission_denied", err.code)
      peer:close()
    end))

    it("detects a stalled replica through heartbeats", h.task(function()
      local peer, why = start({ heartbeat = 0.2, heartbeat_timeout = 1 })
      if not peer then return pending(why) end
      local t = sandlot.spawn(function() return peer:call(mod .. ".slow", 60, "k") end)
      assert.truthy(h.eventually(function() return peer:call(mod .. ".state_of", "k") end, 10))
      peer:spawn(mod .. ".env", "X")
      sandlot.proc.run({ "true" })
      peer:eval("require('sandlot').proc.run({ 'kill', '-STOP', tostring(...) })", peer.pid)
      local r, err = with_timeout(10, t.join, t)
      assert.is_nil(r)
      assert.equal("unavailable", err.code)
      assert.matches("heartbeats", err.message, 1, true)
      peer:close()
    end))
  end)
end

describe("sandlot.replicate", function()
  local denv, dwhy, srv, swhy, kube, ktmp

  lazy_setup(function()
    denv, dwhy = docker.start()
    srv, swhy = sshd.start()
    local providers = {
      ["rep-ns"] = { "local", isolation = "namespaces" },
      ["rep-none"] = { "local", isolation = "none" },
    }
    if sandlot.http.serve then                       -- pods on the strict fake's API server
      kube = require("spec.fakes.kubernetes").start{}
      ktmp = h.tmpdir("rep-kube")
      providers["rep-kube"] = { "kubernetes", image = "busybox",
                                kubeconfig = kube.kubeconfig(ktmp .. "/config") }
    end
    if denv then
      providers["rep-docker"] = { "docker", host = denv.host, image = denv.image, pull = false }
    end
    if srv then
      providers["rep-ssh"] = { "ssh", host = srv.host, port = srv.port, user = srv.user,
                               key_file = srv.key, known_hosts = srv.known_hosts, agent = false,
                               base_dir = srv.dir .. "/sandboxes" }
      -- a configured secret the replica must never see
      providers["rep-ssh-secret"] = { "ssh", host = srv.host, port = srv.port, user = srv.user,
                                      password = CONFIG_SECRET, agent = false,
                                      known_hosts = srv.known_hosts }
    end
    sandlot.config.set({ providers = providers })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    if denv then docker.stop(denv) end
    if srv then srv:stop() end
    if kube then kube.stop() end
    if ktmp then h.rmtree(ktmp) end
  end)

  suite("local (bubblewrap)", function()
    local skip = require("spec.support.namespaces").skip()
    if skip then return nil, skip end
    return assert(sandlot.create("rep-ns", {}))
  end)

  suite("local (no isolation)", function()
    return assert(sandlot.create("rep-none", {}))
  end)

  suite("docker (busybox) #docker", function()
    if not denv then return nil, docker.unavailable(dwhy) end
    return assert(sandlot.create("rep-docker", {}))
  end, { external_destroy = true })

  suite("kubernetes (the strict fake's pods)", function()
    local skip = require("spec.support.namespaces").skip()   -- the fake's pods need their own /
    if skip then return nil, skip end
    if not kube then return nil, "needs sandlot.http.serve" end
    return assert(sandlot.create("rep-kube", {}))
  end)

  suite("ssh #ssh", function()
    if not srv then
      if os.getenv("CI") then error("sshd is required in CI: " .. tostring(swhy)) end
      return nil, swhy
    end
    return assert(sandlot.create("rep-ssh", {}))
  end)

  it("emits a replicate span: arch, bytes shipped, cache hit", h.task(function()
    local telemetry = require("sandlot.telemetry")
    local seen = {}
    telemetry.attach("replicate-spec", { { "sandlot", "replicate", "stop" } },
                     function(_, m, meta) seen[#seen + 1] = { m = m, meta = meta } end)
    local sb <close> = assert(sandlot.create("rep-none", {}))
    local ok, err = pcall(function()
      assert(sandlot.replicate(sb, { script_dir = false })):close()
      assert(sandlot.replicate(sb, { script_dir = false })):close()
    end)
    telemetry.detach("replicate-spec")
    assert(ok, err)
    assert.equal(2, #seen)
    assert.equal("x86_64", seen[1].meta.arch)
    assert.is_true(seen[1].meta.bytes_shipped > 1000000)
    assert.is_false(seen[1].meta.cache_hit)
    assert.equal(0, seen[2].meta.bytes_shipped)
    assert.is_true(seen[2].meta.cache_hit)
    assert.is_true(seen[1].m.duration > 0)
  end))

  it("is not_supported on a provider without spawn, before shipping anything", h.task(function()
    local base = require("providers.local")                -- the local provider minus spawn
    local p = { name = "nospawn", capabilities = base.capabilities }
    for _, op in ipairs({ "create", "exec", "destroy", "status", "read_file", "write_file",
                          "ls", "mkdir", "rm" }) do p[op] = base[op] end
    local sb <close> = assert(sandlot.create(p, {}))
    local peer, err = sandlot.replicate(sb, { script_dir = false })
    assert.is_nil(peer)
    assert.equal("not_supported", err.code)
    assert.matches("spawn", err.message, 1, true)
    assert.equal("not_found", select(2, sb:ls("/tmp/.sandlot-peer")).code)
  end))

  it("refuses bad options before touching the sandbox", h.task(function()
    assert.has_error(function() sandlot.replicate({}, {}) end)
    local sb <close> = assert(sandlot.create("rep-none", {}))
    assert.has_error(function() sandlot.replicate(sb, { hearbeat = 1 }) end,
                     "replicate: unknown option 'hearbeat' (did you mean 'heartbeat'?)")
    assert.has_error(function() sandlot.replicate(sb, { dest = "rel" }) end)
    assert.has_error(function() sandlot.replicate(sb, { heartbeat = 0 }) end,
                     "replicate: opts.heartbeat must be a number of seconds > 0")
  end))
end)
