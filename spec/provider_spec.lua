-- spec/provider_spec.lua: sandlot.provider: checking provider tables (messages an author can act
-- on), loading by name or file, and completing a minimal provider with fallbacks and stubs.
local sandlot = require("sandlot")
local provider = sandlot.provider
local h = require("spec.helper")

local function minimal(extra)
  local p = {
    name = "mini",
    create = function() return { id = "x" } end,
    destroy = function() return true end,
    status = function() return "running" end,
    exec = function() return { exit_code = 0, stdout = "", stderr = "" } end,
  }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

describe("sandlot.provider.check", function()
  it("accepts a minimal provider, fields and private helpers", function()
    assert.is_true(provider.check(minimal({ description = "d", capabilities = {},
                                            _helper = function() end, get_url = function() end,
                                            config = { host = "string" } })))
  end)

  local cases = {
    { "not a table", 42, "must be a table" },
    { "a missing required function", minimal({ status = false }), "'status' must be a function" },
    { "an absent required function",
      (function() local p = minimal(); p.exec = nil; return p end)(),
      "missing required function 'exec'" },
    { "a misspelled operation", minimal({ raed_file = function() end }),
      "unknown name 'raed_file' %(did you mean 'read_file'%?%)" },
    { "a wrong case", minimal({ Exec = function() end }), "did you mean 'exec'" },
    { "an unknown name", minimal({ frobnicate = function() end }),
      "unknown name 'frobnicate': operations are" },
    { "an operation that is not a function", minimal({ ls = "yes" }),
      "'ls' must be a function%(ctx, ...%), got string" },
    { "a field of the wrong type", minimal({ name = 3 }), "field 'name' must be a string" },
    { "a bad config schema", minimal({ config = { host = "str" } }),
      "config%.host must map an option name to a type name" },
    { "a non-string key", minimal({ [1] = function() end }), "unexpected key 1" },
    { "a swapped pair of letters", minimal({ stauts = function() end }),
      "did you mean 'status'" },
    { "a tie, broken by name", minimal({ lm = function() end }), "did you mean 'ls'" },
    { "native checkpoints only in part", minimal({ checkpoint = function() end }),
      "native checkpoints need checkpoint and checkpoints, and restore" },
    { "native checkpoints with no way back", minimal({ checkpoint = function() end,
                                                       checkpoints = function() end }),
      "restore %(in place%) or create_from %(a new sandbox%) or both" },
    { "create_from alone", minimal({ create_from = function() end }),
      "native checkpoints need checkpoint and checkpoints" },
    { "a misspelled capability", minimal({ capabilities = { remot = true } }),
      "unknown capability 'remot' %(did you mean 'remote'%?%)" },
    { "an unknown capability", minimal({ capabilities = { teleport = true } }),
      "unknown capability 'teleport': capabilities are background files pty remote streams url" },
    { "a capability that is not a boolean", minimal({ capabilities = { files = "yes" } }),
      "capabilities%.files must be true or false, got string" },
    { "a capability keyed by a number", minimal({ capabilities = { true } }),
      "unknown capability '1'" },
  }
  for _, c in ipairs(cases) do
    it("reports " .. c[1], function()
      local ok, err = provider.check(c[2])
      assert.is_nil(ok)
      assert.equal("invalid_input", err.code)
      assert.matches(c[3], err.message)
      assert.is_true(#err.problems >= 1)
    end)
  end

  it("accepts every capability of the closed set, and the ones the bundled providers use",
    function()
      local caps = {}
      for k in pairs(provider.CAPABILITIES) do caps[k] = true end
      assert.is_true(provider.check(minimal({ capabilities = caps })))
      for _, name in ipairs({ "local", "ssh", "docker" }) do
        assert.is_true(provider.check(require("providers." .. name)))
      end
    end)

  it("lists every problem at once", function()
    local p = minimal({ exce = function() end, destory = function() end })
    p.exec, p.destroy = nil, nil
    local _, err = provider.check(p)
    assert.equal(4, #err.problems)
  end)
end)

describe("sandlot.provider.load", function()
  it("loads providers/<name>.lua by name", function()
    local p = assert(provider.load("local"))
    assert.equal("local", p.name)
    assert.equal(require("providers.local"), p.impl)
  end)

  it("reports an unknown name as not_found", function()
    local p, err = provider.load("no_such_provider_xyz")
    assert.is_nil(p)
    assert.equal("not_found", err.code)
    assert.matches("providers%.no_such_provider_xyz", err.message)
  end)

  it("loads a file, and raises for a broken one", function()
    local tmp = h.tmpdir()
    local f = assert(io.open(tmp .. "/p.lua", "w"))
    f:write("return { create = function() end, destroy = function() end, " ..
            "status = function() end, exce = function() end }")
    f:close()
    local ok, err = pcall(provider.load, tmp .. "/p.lua")
    assert.is_false(ok)
    assert.matches("did you mean 'exec'", tostring(err))
    local p, nerr = provider.load(tmp .. "/missing.lua")
    assert.is_nil(p)
    assert.equal("not_found", nerr.code)
    h.rmtree(tmp)
  end)

  it("raises when create is given a broken provider table", function()
    assert.has_error(function() sandlot.create(minimal({ exce = 1 }), {}) end)
  end)
end)

describe("native checkpoints in caps", function()
  local fn = function() end
  for _, case in ipairs({
    { "restore alone", { restore = fn }, "in_place" },
    { "create_from alone", { create_from = fn }, "new_sandbox" },
    { "both", { restore = fn, create_from = fn, delete_checkpoint = fn }, "both" },
  }) do
    it("tells how a native checkpoint comes back: " .. case[1], function()
      local extra = { checkpoint = fn, checkpoints = fn }
      for k, v in pairs(case[2]) do extra[k] = v end
      local caps = assert(sandlot.caps(minimal(extra)))
      assert.equal("native", caps.checkpoint)
      assert.equal(case[3], caps.restore)
      assert.is_nil(caps.create_from)                  -- folded into restore
      assert.is_nil(caps.delete_checkpoint)
    end)
  end

  it("has no restore entry for portable checkpoints", function()
    local caps = assert(sandlot.caps(minimal()))
    assert.equal("portable", caps.checkpoint)
    assert.is_nil(caps.restore)
  end)
end)

describe("a provider with only the required functions", function()
  it("gets fallbacks and not_supported stubs, as caps reports", function()
    local caps = assert(sandlot.caps(minimal()))
    assert.same({
      create = "native", destroy = "native", status = "native", exec = "native",
      read_file = "exec", write_file = "exec", ls = "exec", mkdir = "exec", rm = "exec",
      write_files = "write_file", await_ready = "status", reconnect = "status",
      stop = "not_supported", start = "not_supported", update = "not_supported",
      get_url = "not_supported", ssh_opts = "not_supported",
      list = "not_supported", gc = "not_supported", spawn = "not_supported",
      checkpoint = "portable",
    }, caps)
  end)

  it("returns not_supported from the stubs, with context", function()
    local sb = assert(sandlot.create(minimal(), {}))
    for _, op in ipairs({ "stop", "start", "ssh_opts" }) do
      local r, err = sandlot[op](sb)
      assert.is_nil(r)
      assert.equal("not_supported", err.code)
      assert.equal(op, err.op)
      assert.equal("mini", err.provider)
      assert.equal("x", err.sandbox)
      assert.is_false(err.retryable)
    end
    local r, err = sb:get_url(80)
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
  end)

  it("moves files through exec with base64 and maps script failures to codes", function()
    local calls = {}
    local sb = assert(sandlot.create(minimal({
      exec = function(_, _, argv, opts)
        calls[#calls + 1] = { argv = argv, opts = opts }
        return { exit_code = 2, stdout = "", stderr = "x: no such file\n" }
      end,
    }), {}))
    local r, err = sb:read_file("x")
    assert.is_nil(r)
    assert.equal("not_found", err.code)
    assert.equal("/bin/sh", calls[1].argv[1])
    assert.equal("./x", calls[1].argv[#calls[1].argv])   -- paths are arguments, not script
    sb:write_file("-n", "\0\255")
    assert.equal("./-n", calls[2].argv[5])
    assert.equal("AP8=", calls[2].opts.stdin)
  end)

  it("polls status in await_ready, bounded by its timeout", function()
    local n = 0
    local sb = assert(sandlot.create(minimal({
      status = function() n = n + 1; return n < 3 and "stopped" or "running" end,
    }), {}))
    assert.is_true(sb:await_ready({ timeout = 10 }))
    assert.equal(3, n)
    local stuck = assert(sandlot.create(minimal({ status = function() return "stopped" end }), {}))
    local r, err = stuck:await_ready({ timeout = 1 })
    assert.is_nil(r)
    assert.equal("timeout", err.code)
  end)
end)

describe("providers/README.md", function()
  it("walks through a provider that passes check-provider #slow", function()
    local f = assert(io.open("providers/README.md"))
    local text = f:read("a")
    f:close()
    local code = text:match("```lua\n(%-%- dirs%.lua.-)```")
    assert.is_string(code, "no dirs.lua block in providers/README.md")
    local tmp = h.tmpdir()
    local file = tmp .. "/dirs.lua"
    f = assert(io.open(file, "w"))
    f:write(code)
    f:close()
    local rc, out, err = h.host({ "check-provider", file, "--big-file-mb", "5" },
                                { env = { TMPDIR = tmp, SANDLOT_CONFIG = false }, timeout = 300 })
    assert.equal(0, rc, out .. err)
    assert.matches("tests: %d+ passed, 0 failed, %d+ pending", out)
    -- only the cases of operations it lacks (spawn, list) are pending
    local pending = 0
    for name in out:gmatch("\n  pending ([^\n]*)") do   -- check-provider's case table
      pending = pending + 1
      assert.truthy(name:match("^spawn ") or name:match("^list "), name)
    end
    assert.is_true(pending > 0, out)
    -- every sandbox it made is gone
    local left = assert(sandlot.proc.run({ "sh", "-c",
                                           "ls -d " .. tmp .. "/dirs-* 2>/dev/null | wc -l" }))
    assert.equal("0", (left.stdout:gsub("%s", "")))
    h.rmtree(tmp)
  end)
end)

describe("the process object sb:spawn returns", function()
  -- a provider whose processes are scripted: each read returns the next scripted value
  local function scripted(proc_opts)
    local log, seen = {}, {}
    local impl = minimal({
      spawn = function(_, _, argv, opts)
        seen.argv, seen.opts = argv, opts
        local script = proc_opts.reads or {}
        local p = {
          write = function(_, data) log[#log + 1] = "write " .. data; return true end,
          close_stdin = function() log[#log + 1] = "close_stdin"; return true end,
          read = proc_opts.read or function()
            local v = table.remove(script, 1)
            if v == nil then return nil end
            return table.unpack(v)
          end,
          wait = proc_opts.wait or function() return { exit_code = 0 } end,
          kill = function(_, sig) log[#log + 1] = "kill " .. tostring(sig); return true end,
          close = function() log[#log + 1] = "close"; return true end,
        }
        for _, m in ipairs(proc_opts.without or {}) do p[m] = nil end
        return p
      end,
    })
    return assert(sandlot.create(impl, {})), log, seen
  end

  it("passes argv and options through, and reads stream, data until the end", function()
    local sb, log, seen = scripted({ reads = { { "stdout", "a" }, { "stderr", "b" } } })
    local p <close> = assert(sb:spawn("echo hi", { env = { X = "1" }, cwd = "/w" }))
    assert.same({ "/bin/sh", "-c", "echo hi" }, seen.argv)
    assert.same({ env = { X = "1" }, cwd = "/w" }, seen.opts)
    assert.same({ "stdout", "a" }, { p:read() })
    assert.same({ "stderr", "b" }, { p:read() })
    assert.same({}, { p:read() })
    assert.is_true(p:write("x"))
    assert.is_true(p:close_stdin())
    assert.is_true(p:kill())
    assert.same({ exit_code = 0, timed_out = false }, p:wait())
    assert.same({ "write x", "close_stdin", "kill TERM" }, log)
  end)

  it("raises on misuse: bad options, data, timeouts, signals, a closed process", function()
    local sb = scripted({})
    assert.has_error(function() sb:spawn({ "true" }, { stdin = "x" }) end)
    assert.has_error(function() sb:spawn({}) end)
    local p = assert(sb:spawn({ "true" }))
    assert.has_error(function() p:write(42) end)
    assert.has_error(function() p:read(0) end)
    assert.has_error(function() p:wait("soon") end)
    assert.has_error(function() p:kill("NOPE") end)
    assert.has_error(function() p:kill(0) end)
    p:close()
    assert.has_error(function() p:read() end, "read: attempt to use a closed process")
  end)

  it("closes once, from close, __close or collection", function()
    local sb, log = scripted({})
    do
      local p <close> = assert(sb:spawn({ "true" }))
      p:close()
    end
    assert.same({ "close" }, log)
    local _ = assert(sb:spawn({ "true" }))
    _ = nil
    collectgarbage()
    collectgarbage()
    assert.same({ "close", "close" }, log)
  end)

  it("bounds read and wait with their timeouts, and the process stays usable", function()
    local reads = 0
    local sb = scripted({
      read = function()
        reads = reads + 1
        if reads == 1 then            -- blocks until cancelled, as a provider's read must
          local ok, err = sandlot.sleep(60)
          if not ok then return nil, err end
        end
        return "stdout", "late"
      end,
      wait = function()
        local ok, err = sandlot.sleep(60)
        if not ok then return nil, err end
        return { exit_code = 0 }
      end,
    })
    local p <close> = assert(sb:spawn({ "true" }))
    local s, err = p:read(0.05)
    assert.is_nil(s)
    assert.equal("timeout", err.code)
    assert.equal("spawn.read", err.op)
    assert.equal("mini", err.provider)
    assert.equal("x", err.sandbox)
    assert.same({ "stdout", "late" }, { p:read(5) })
    local r, werr = p:wait(0.05)
    assert.is_nil(r)
    assert.equal("timeout", werr.code)
    assert.equal("spawn.wait", werr.op)
  end)

  it("adds context to a provider's errors", function()
    local sb = scripted({ read = function()
      return nil, sandlot.errors.new("io_error", "pipe broke")
    end })
    local p <close> = assert(sb:spawn({ "true" }))
    local s, err = p:read()
    assert.is_nil(s)
    assert.equal("io_error", err.code)
    assert.equal("spawn.read", err.op)
    assert.equal("x", err.sandbox)
  end)

  it("says what a provider's process must return when it gets it wrong", function()
    local sb = scripted({ reads = { { "data", "stdout" } },
                          wait = function() return { code = 0 } end })
    local p <close> = assert(sb:spawn({ "true" }))
    assert.has_error(function() p:read() end,
                     'provider mini: process:read must return "stdout"|"stderr", data; nil ' ..
                     "at the end; or nil, err (got string, string)")
    assert.has_error(function() p:wait() end, "provider mini: process:wait must return " ..
                     "{exit_code = integer, signal = integer|nil, timed_out = boolean}")
    local bad = scripted({ without = { "close_stdin" } })
    assert.has_error(function() bad:spawn({ "true" }) end, "provider mini: spawn must return " ..
                     "a process with write, close_stdin, read, wait, kill and close " ..
                     "(missing close_stdin)")
  end)

  it("is not_supported, with context, for a provider without spawn", function()
    local sb = assert(sandlot.create(minimal(), {}))
    local p, err = sb:spawn({ "cat" })
    assert.is_nil(p)
    assert.equal("not_supported", err.code)
    assert.equal("spawn", err.op)
  end)
end)

describe("sandlot.provider.load of a provider that waits while it loads", function()
  local function write(dir, name, text)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
  end
  local BODY = "return { create = function() return { id = 'x' } end, destroy = function() end, " ..
               "status = function() end, exec = function() end }\n"

  it("is told so with its file:line, for I/O and for a bare yield", function()
    local dir = h.tmpdir()
    for _, case in ipairs({ { "io.lua", "local x = 1\nrequire('sandlot').sleep(0.01)\n", 2 },
                            { "proc.lua", "\n\nrequire('sandlot').proc.run({'true'})\n", 3 },
                            { "yield.lua", "coroutine.yield()\n", 1 } }) do
      local path = write(dir, case[1], case[2] .. BODY)
      local ok, err = pcall(provider.load, path)
      assert.is_false(ok)
      assert.matches(("provider %s:%d: providers must not wait while they load")
                       :format(path, case[3]), tostring(err), 1, true)
    end
  end)

  it("loads a provider that does its I/O in create, and keeps other load errors' text", function()
    local dir = h.tmpdir()
    local good = write(dir, "good.lua", "local sandlot = require('sandlot')\n" .. BODY)
    assert.is_table((provider.load(good)))
    local bad = write(dir, "bad.lua", "local t = nil\nreturn t.x\n")
    local ok, err = pcall(provider.load, bad)
    assert.is_false(ok)
    assert.matches("provider " .. bad .. ":2: attempt to index a nil value", tostring(err), 1, true)
  end)

  it("applies to providers found by module name too", function()
    local dir = h.tmpdir()
    assert(sandlot.proc.run({ "mkdir", "-p", dir .. "/providers" }))
    write(dir .. "/providers", "waits_at_load.lua", "require('sandlot').sleep(0)\n" .. BODY)
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local ok, err = pcall(provider.load, "waits_at_load")
    package.path = saved
    assert.is_false(ok)
    assert.matches("waits_at_load.lua:1: providers must not wait while they load",
                   tostring(err), 1, true)
    assert.is_nil(package.loaded["providers.waits_at_load"])
  end)
end)

describe("providers/modal.lua (not built)", function()
  it("makes sandlot.create('modal') a not_supported naming the reason", h.task(function()
    local sb, err = sandlot.create("modal", {})
    assert.is_nil(sb)
    assert.equal("not_supported", err.code)
    assert.matches("gRPC", err.message, 1, true)
    assert(provider.check(dofile("providers/modal.lua")))
  end))
end)
