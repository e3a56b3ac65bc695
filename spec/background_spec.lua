-- spec/background_spec.lua: durable background processes (sandlot.background) on local, ssh
-- (the suite's sshd, #ssh) and docker (its private dockerd, #docker): output persisted as it
-- arrives (the host killed with SIGKILL mid-stream, then a second host reattaches and gets
-- every byte in order), the cap's head and tail, follow, wait with a timeout, kill, an unknown
-- id, a truncated in-sandbox log. Each case has a ledger of its own (XDG_STATE_HOME).
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local docker = require("spec.support.docker")
local sshd = require("spec.support.sshd")
local h = require("spec.helper")

local dir, saved
local function fresh_ledger()
  dir = h.tmpdir()
  saved = os.getenv("XDG_STATE_HOME")
  sys.setenv("XDG_STATE_HOME", dir .. "/state")
  ledger.reset()
end
local function drop_ledger()
  ledger.reset()
  sys.setenv("XDG_STATE_HOME", saved)
  h.rmtree(dir)
end

-- A Lua literal for a config table (the child hosts set the same providers).
local function literal(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for _, x in ipairs(v) do parts[#parts + 1] = literal(x) end
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" then parts[#parts + 1] = ("[%q] = %s"):format(k, literal(x)) end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function seq(n)
  local t = {}
  for i = 1, n do t[i] = tostring(i) end
  return table.concat(t, "\n") .. "\n"
end

-- Reads a process's whole output with read{follow}, until the exit chunk.
local function read_all(p, timeout)
  local out, err, exit = {}, {}, nil
  local off = { stdout = 0, stderr = 0 }
  local lost = {}
  while not exit do
    local chunks, nxt = p:read({ offset = off, follow = true, timeout = timeout or 30 })
    assert(chunks, tostring(nxt))
    for _, c in ipairs(chunks) do
      if c.stream == "exit" then exit = c
      elseif c.data then (c.stream == "stdout" and out or err)[#(c.stream == "stdout" and out
                                                                 or err) + 1] = c.data
      else lost[#lost + 1] = c end
    end
    off = nxt
  end
  return table.concat(out), table.concat(err), exit, lost
end

-- 200 blocks of 1,000 lines, 10 ms apart: `seq 1 200000` spread over a few seconds.
local SLOW_SEQ = 'i=0; while [ $i -lt 200 ]; do seq $((i * 1000 + 1)) $((i * 1000 + 1000)); ' ..
                 'i=$((i + 1)); sleep 0.01; done'

local function cases(label, setup)
  describe("background processes on " .. label, function()
    local prov, why, config, stop
    lazy_setup(function() prov, why, config, stop = setup() end)
    lazy_teardown(function()
      sandlot.config.reset()
      if stop then stop() end
    end)
    before_each(fresh_ledger)
    after_each(drop_ledger)

    local function sandbox()
      if not prov then return nil end
      return assert(sandlot.create(prov, {}))
    end

    it("keeps every byte of a deterministic command, with its exit", h.task(function()
      local sb = sandbox()
      if not sb then return pending(why) end
      local p = assert(sb:spawn({ "sh", "-c", "seq 1 200000; echo done >&2; exit 3" },
                                { background = true }))
      assert.matches("^pr%-%x+$", p.id)
      local r = assert(p:wait({ timeout = 60 }))
      assert.equal(3, r.exit_code)
      local out, err, exit = read_all(p)
      assert.equal(seq(200000), out)
      assert.equal("done\n", err)
      assert.equal(3, exit.exit_code)
      sb:destroy()
    end))

    it("persists chunks as they arrive: a host killed with SIGKILL mid-stream loses nothing",
       h.task(function()
      if not prov then return pending(why) end
      local script = dir .. "/first.lua"
      local f = assert(io.open(script, "w"))
      f:write(([[
local sandlot = require("sandlot")
sandlot.config.set(%s)
local sb = assert(sandlot.create(%q, {}))
local p = assert(sb:spawn({ "sh", "-c", %q }, { background = true }))
io.write(p.id, "\n"); io.flush()
while p.persisted.stdout < 100000 do sandlot.sleep(0.01) end
io.write("persisted\n"); io.flush()
sandlot.sleep(60)
]]):format(literal(config or {}), prov, SLOW_SEQ))
      f:close()
      local host = assert(sandlot.proc.spawn({ h.BIN, script }, { stream = true }))
      local text = ""
      sandlot.timeout(60, function()
        while not text:find("persisted\n") do
          local c = host:read()
          if not c then break end
          text = text .. c
        end
      end)
      assert(text:find("persisted\n"), "the first host did not get going: " .. text)
      host:kill("KILL")
      host:wait()
      host:close()
      local id = text:match("%f[^\n%z](pr%-%x+)\n")
      local row = assert(ledger.open().db:proc_get(id))
      assert.equal("running", row.state)
      assert.is_true(row.stdout_bytes >= 100000 and row.stdout_bytes < #seq(200000))
      -- a second host reattaches and follows to the end
      local second = dir .. "/second.lua"
      f = assert(io.open(second, "w"))
      f:write(([[
local sandlot = require("sandlot")
sandlot.config.set(%s)
local p = assert(sandlot.process(%q))
local off = { stdout = 0, stderr = 0 }
local out = assert(io.open(%q, "wb"))
while true do
  local chunks, nxt = assert(p:read({ offset = off, follow = true, timeout = 60 }))
  local done
  for _, c in ipairs(chunks) do
    if c.stream == "exit" then done = c
    elseif c.stream == "stdout" then assert(c.data, "a gap at " .. c.offset); out:write(c.data) end
  end
  off = nxt
  if done then print("exit " .. tostring(done.exit_code)); break end
end
out:close()
]]):format(literal(config or {}), id, dir .. "/out"))
      f:close()
      local rc, stdout, stderr = h.host({ second }, { timeout = 120 })
      assert.equal(0, rc, stderr)
      assert.equal("exit 0\n", stdout)
      local got = assert(io.open(dir .. "/out", "rb")):read("a")
      assert.equal(#seq(200000), #got)
      assert.is_true(got == seq(200000), "the reassembled output differs")
      -- and the ledger holds it all, in order
      local p = assert(sandlot.process(id))
      local out = read_all(p)
      assert.is_true(out == seq(200000))
      local sb = sandlot.get(row.sandbox_id)
      if sb then sb:destroy() end
    end))

    it("keeps the head and the tail under the cap, and says which range was dropped",
       h.task(function()
      local sb = sandbox()
      if not sb then return pending(why) end
      local cap = 64 * 1024
      local p = assert(sb:spawn({ "seq", "1", "100000" }, { background = true, cap = cap }))
      assert(p:wait({ timeout = 60 }))
      local chunks = assert(p:read({ stream = "stdout" }))
      local want = seq(100000)
      assert.equal(0, chunks[1].offset)
      local head = {}
      local i = 1
      while chunks[i].data do head[#head + 1] = chunks[i].data; i = i + 1 end
      assert.equal(want:sub(1, cap // 2), table.concat(head))
      local gap = chunks[i]
      assert.equal("cap", gap.reason)
      assert.equal(cap // 2, gap.offset)
      local tail = {}
      for j = i + 1, #chunks do
        if chunks[j].data then tail[#tail + 1] = chunks[j].data end
      end
      tail = table.concat(tail)
      assert.equal(#want, gap.offset + gap.dropped + #tail)
      assert.equal(want:sub(-#tail), tail)
      assert.is_true(#tail >= cap // 2 and #tail < cap // 2 + 64 * 1024)
      local g = p:gaps()[1]
      assert.same({ "stdout", cap // 2, gap.offset + gap.dropped, "cap" },
                  { g.stream, g.from, g.to, g.reason })
      local rows = assert(ledger.open().db:read(
        "SELECT sum(length(data)) AS n FROM chunks WHERE process_id = ?", { p.id }))
      assert.is_true(rows[1].n <= cap + 64 * 1024)
      sb:destroy()
    end))

    it("follows: read{follow} waits for new output, then the exit", h.task(function()
      local sb = sandbox()
      if not sb then return pending(why) end
      local p = assert(sb:spawn("echo one; sleep 3; echo two", { background = true }))
      local chunks, nxt = assert(p:read({ follow = true, timeout = 20 }))
      assert.equal("one\n", chunks[1].data)
      assert.equal("running", p.state)           -- it returned with the first output
      local seen = {}
      while true do
        chunks, nxt = assert(p:read({ offset = nxt, follow = true, timeout = 20 }))
        for _, c in ipairs(chunks) do seen[#seen + 1] = c.data or c.stream end
        if seen[#seen] == "exit" then break end
      end
      assert.same({ "two\n", "exit" }, seen)
      -- nothing new after the end: read returns at once with the exit again
      chunks = assert(p:read({ offset = nxt, follow = true, timeout = 5 }))
      assert.equal("exit", chunks[1].stream)
      sb:destroy()
    end))

    it("wait honours its timeout; kill ends the process with the signal", h.task(function()
      local sb = sandbox()
      if not sb then return pending(why) end
      local p = assert(sb:spawn({ "sleep", "30" }, { background = true }))
      local r, err = p:wait({ timeout = 0.5 })
      assert.is_nil(r)
      assert.equal("timeout", err.code)
      assert(p:kill("TERM"))
      r = assert(p:wait({ timeout = 20 }))
      assert.equal(143, r.exit_code)
      assert.equal(15, r.signal)
      local ok, kerr = p:kill("KILL")
      assert.is_nil(ok)
      assert.equal("not_found", kerr.code)
      sb:destroy()
    end))

    it("reports a truncated in-sandbox log with the range that is lost", h.task(function()
      local sb = sandbox()
      if not sb then return pending(why) end
      local p = assert(sb:spawn("seq 1 20000; sleep 30; echo end", { background = true }))
      assert(h.eventually(function() return p.persisted.stdout >= #seq(20000) end, 20))
      local id, logs = p.id, p.log_dir
      p:close()                                    -- stop following here
      local tr = assert(sb:exec({ "sh", "-c", ': > "$1" && wc -c < "$1"', "sh", logs .. "/out" }))
      assert.same({ 0, "0" }, { tr.exit_code, (tr.stdout:gsub("%s", "")) })
      local q = assert(sandlot.process(id))
      local r, err = q:wait({ timeout = 20 })
      assert.is_nil(r)
      assert.equal("io_error", err.code)
      assert.matches("truncated", err.message)
      assert.matches(logs .. "/out", err.message, 1, true)
      local out, _, exit, lost = read_all(q)
      assert.equal(seq(20000), out)
      assert.is_true(exit.lost)
      assert.equal("lost", lost[1].reason)
      assert.equal(#seq(20000), lost[1].offset)
      assert.same({ { stream = "stdout", from = #seq(20000), reason = "lost",
                      why = "log truncated" } }, q:gaps())
      sb:destroy()
    end))
  end)
end

cases("local", function()
  -- without namespaces (a chroot, a container) the local provider runs unconfined: say so
  -- in the config rather than through its warning
  if not require("spec.support.namespaces").why() then return "local" end
  local config = { providers = { ["bg-local"] = { "local", isolation = "none" } } }
  sandlot.config.set(config)
  return "bg-local", nil, config
end)

cases("ssh #ssh", function()
  local srv, why = sshd.start()
  if not srv then
    if os.getenv("CI") then error("sshd is required in CI: " .. tostring(why)) end
    return nil, why
  end
  local config = { providers = { ["bg-ssh"] = { "ssh", host = srv.host, port = srv.port,
    user = srv.user, key_file = srv.key, known_hosts = srv.known_hosts, agent = false,
    base_dir = srv.dir .. "/sandboxes" } } }
  sandlot.config.set(config)
  return "bg-ssh", nil, config, function() srv:stop() end
end)

cases("docker #docker", function()
  local env, why = docker.start()
  if not env then return nil, why end
  local config = { providers = { ["bg-dk"] = { "docker", host = env.host, image = env.image,
                                               pull = false } } }
  sandlot.config.set(config)
  return "bg-dk", nil, config, function() docker.stop(env) end
end)

describe("sandlot.process", function()
  before_each(fresh_ledger)
  after_each(drop_ledger)

  it("is not_found for an unknown process id", h.task(function()
    local p, err = sandlot.process("pr-0000000000000000")
    assert.is_nil(p)
    assert.equal("not_found", err.code)
    assert.matches("pr%-0000000000000000", err.message)
  end))

  it("refuses a sandbox made without the ledger", h.task(function()
    sys.setenv("SANDLOT_LEDGER", "off")
    local sb = assert(sandlot.create("local", {}))
    local p, err = sb:spawn({ "true" }, { background = true })
    sys.setenv("SANDLOT_LEDGER", nil)
    sb:destroy()
    assert.is_nil(p)
    assert.equal("not_supported", err.code)
  end))
end)
