-- spec/conformance/process.lua: the conformance cases for the provider-wide and streaming
-- operations: spawn (a live duplex process, see providers/README.md "spawn") and list. A
-- provider without them must answer not_supported; the cases then show as pending, with the
-- reason, so a provider that gains the operation later is checked by the same suite.
local sandlot = require("sandlot")
local sandbox = require("sandlot.sandbox")

local pending = require("spec.conformance.pending")

local READ_S = 30                             -- bound on every read and wait below

-- Reads until the end of both streams; returns stdout, stderr.
local function drain(assert, p)
  local out, err = {}, {}
  while true do
    local stream, data = p:read(READ_S)
    if stream == nil then
      assert.is_nil(data, "read failed: " .. tostring(data))
      break
    end
    local into = stream == "stdout" and out or err
    into[#into + 1] = data
  end
  return table.concat(out), table.concat(err)
end

-- Reads stdout until it holds `want`.
local function read_until(assert, p, want)
  local got = ""
  while not got:find(want, 1, true) do
    local stream, data = p:read(READ_S)
    assert.is_not_nil(stream, ("wanted %q, got %q then %s"):format(want, got, tostring(data)))
    if stream == "stdout" then got = got .. data end
  end
  return got
end

---Declares the spawn and list cases inside the suite's describe.
---@param s {target: table, label: string, create: fun(extra?: table): table,
---  sb: fun(): table, all_bytes: fun(times: integer): string}
return function(s)
  local busted = require("busted")
  local describe, it = busted.describe, s.it or busted.it
  local assert = require("luassert")

  local function supported(op)
    local caps = sandlot.caps(s.sb())
    if caps[op] ~= "not_supported" then return true end
    if op == "spawn" then
      local p, err = s.sb():spawn({ "true" })
      assert.is_nil(p)
      assert.equal("not_supported", err.code)
    end
    return false
  end

  describe("spawn", function()
    local function needs_spawn()
      if not supported("spawn") then
        pending(("spawn is not_supported by %s: these cases run once it has spawn")
          :format(s.label))
      end
    end

    it("echoes stdin through cat while it is being written", function()
      needs_spawn()
      local data = s.all_bytes(1024)                -- 256 KiB, binary
      local p <close> = assert(s.sb():spawn({ "cat" }))
      local writer = sandlot.spawn(function()
        assert(p:write("hello\n"))
        assert(p:write(data))
        assert(p:close_stdin())
      end)
      local out, err = drain(assert, p)
      writer:join()
      assert.equal(#data + 6, #out)
      assert.is_true(out == "hello\n" .. data, "stdout differs from what was written")
      assert.equal("", err)
      local r = assert(p:wait(READ_S))
      assert.equal(0, r.exit_code)
      assert.is_false(r.timed_out)
    end)

    it("keeps stderr apart and reports the exit code", function()
      needs_spawn()
      local p <close> = assert(s.sb():spawn({ "sh", "-c", "echo out; echo err >&2; exit 3" }))
      local out, err = drain(assert, p)
      assert.same({ "out\n", "err\n" }, { out, err })
      local r = assert(p:wait(READ_S))
      assert.equal(3, r.exit_code)
      assert.is_nil(r.signal)
    end)

    it("passes env and cwd as exec does", function()
      needs_spawn()
      assert(s.sb():mkdir("conf-spawn-cwd", { parents = true }))
      local p <close> = assert(s.sb():spawn({ "sh", "-c", 'printf "%s|" "$CONF_SP"; pwd' },
                                            { env = { CONF_SP = "x y" },
                                              cwd = "conf-spawn-cwd" }))
      local out = drain(assert, p)
      assert.matches("^x y|.*/conf%-spawn%-cwd\n$", out)
      assert.equal(0, assert(p:wait(READ_S)).exit_code)
    end)

    it("kills a running process; wait reports the signal", function()
      needs_spawn()
      local p <close> = assert(s.sb():spawn({ "sh", "-c", "echo up; exec sleep 1000" }))
      read_until(assert, p, "up\n")
      assert.is_true(p:kill())
      local r = assert(p:wait(READ_S))
      assert.is_true(r.signal == 15 or r.exit_code == 143,
                     ("exit_code %s, signal %s"):format(tostring(r.exit_code),
                                                        tostring(r.signal)))
      assert.is_nil(p:read(READ_S))                 -- both streams have ended
    end)

    it("bounds read with its timeout; the process stays usable", function()
      needs_spawn()
      local p <close> = assert(s.sb():spawn({ "cat" }))
      local stream, err = p:read(0.2)
      assert.is_nil(stream)
      assert.equal("timeout", err.code)
      assert(p:write("after\n"))
      assert.same({ "stdout", "after\n" }, { p:read(READ_S) })
      local r, werr = p:wait(0.2)
      assert.is_nil(r)
      assert.equal("timeout", werr.code)
      assert(p:close_stdin())
      assert.is_nil(p:read(READ_S))
      assert.equal(0, assert(p:wait(READ_S)).exit_code)
    end)

    it("close without wait leaves no process behind", function()
      needs_spawn()
      local sb = s.sb()
      if assert(sb:exec({ "sh", "-c", "command -v flock" })).exit_code ~= 0 then
        pending("needs flock in the sandbox to see whether a process is alive")
      end
      -- the process holds a lock for as long as it lives; flock -n fails while it does
      local p = assert(sb:spawn({ "sh", "-c",
                                  "exec 9>conf-spawn.lock; flock 9; echo locked; " ..
                                  "exec sleep 1000" }))
      read_until(assert, p, "locked\n")
      local held = assert(sb:exec({ "flock", "-n", "conf-spawn.lock", "true" }))
      assert.is_true(held.exit_code ~= 0, "the check does not see a live process")
      p:close()
      p:close()                                     -- idempotent
      local free
      for _ = 1, 300 do                             -- the kill is asynchronous: up to 30 s
        free = assert(sb:exec({ "flock", "-n", "conf-spawn.lock", "true" })).exit_code == 0
        if free then break end
        sandlot.sleep(0.1)
      end
      assert.is_true(free, "the process still holds its lock after close")
      assert.has_error(function() p:read() end)
    end)
  end)

  describe("list", function()
    it("finds a created sandbox by its labels", function()
      if not supported("list") then
        local r = assert(sandbox._context(s.target.provider))
        local l, err = r.p.ops.list(r.ctx, { labels = {} })
        assert.is_nil(l)
        assert.equal("not_supported", err.code)
        pending(("list is not_supported by %s"):format(s.label))
      end
      local tag = ("conf-%d-%d"):format(os.time(), math.random(1, 1 << 30))
      local made = s.create({ labels = { sandlot_conformance = tag } })
      local r = assert(sandbox._context(s.target.provider))
      local function ids(labels)
        local list = assert(r.p.ops.list(r.ctx, { labels = labels }))
        local set = {}
        for _, h in ipairs(list) do
          assert.is_string(h.id)
          set[h.id] = h
        end
        return set
      end
      local found = ids({ sandlot_conformance = tag })[made.id]
      assert.is_table(found, "list does not return the sandbox it was given labels for")
      if found.labels ~= nil then
        assert.equal(tag, found.labels.sandlot_conformance)
      end
      assert.is_nil(ids({ sandlot_conformance = tag .. "-other" })[made.id])
      assert.is_table(ids({})[made.id])
      assert.is_true(made:destroy())
      assert.is_nil(ids({ sandlot_conformance = tag })[made.id])
    end)
  end)
end
