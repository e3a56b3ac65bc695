-- spec/lib/event_channel_spec.lua: sandlot.core.event (a wake-up one task waits on) and
-- sandlot.core.channel (a replica's protocol over its moved stdio), the two core pieces under
-- sandlot.replicate. The channel runs in a child host so its fds 0 and 1 are its own.
local sandlot = require("sandlot")
local event = require("sandlot.core.event")
local h = require("spec.helper")

describe("sandlot.core.event", function()
  it("remembers a notify nobody waited for, once", h.task(function()
    local ev = event.new()
    assert.is_false(ev:notify())
    assert.is_true(ev:wait())
    local woke = false
    local t = sandlot.spawn(function() assert(ev:wait()); woke = true end)
    sandlot.sleep(0.01)
    assert.is_false(woke)                  -- the earlier notify was used up
    assert.is_true(ev:waiting())
    assert.is_true(ev:notify())
    t:join()
    assert.is_true(woke)
  end))

  it("lets a cancelled waiter go with cancelled, and refuses a second waiter",
     h.task(function()
    local ev = event.new()
    local t = sandlot.spawn(function() return ev:wait() end)
    sandlot.sleep(0.01)
    assert.has_error(function() ev:wait() end, "sandlot.event: another task is already waiting")
    t:cancel()
    local ok, err = t:join()
    assert.is_nil(ok)
    assert.equal("cancelled", err.code)
    assert.is_false(ev:waiting())
    assert.is_false(ev:notify())           -- nobody waits any more: remembered
  end))
end)

-- the child: echoes what arrives on the channel, writes to its (moved) stdout, ends at EOF
local ECHO = [[
local ch = assert(require("sandlot.core.channel").stdio())
io.write("stray stdout\n"); io.stdout:flush()
print("printed")
os.execute("echo from a child process")
local n = 0
while true do
  local data = ch:read()
  if data == nil then break end
  n = n + #data
  assert(ch:write(data))
end
assert(ch:write("total " .. n .. "\n"))
ch:close()
]]

describe("sandlot.core.channel", function()
  after_each(h.assert_no_children)

  it("carries bytes both ways; stdout, print and children write to stderr", h.task(function()
    local p <close> = assert(sandlot.proc.spawn({ h.BIN, "-e", ECHO },
                                                { stream = true, stdin = "pipe" }))
    local block = ("0123456789abcdef"):rep(4096)              -- 64 KiB
    local out, err = {}, {}
    local reader = sandlot.spawn(function()
      while true do
        local chunk, which = p:read()
        if not chunk then return end
        if which == "stdout" then out[#out + 1] = chunk else err[#err + 1] = chunk end
      end
    end)
    for _ = 1, 32 do assert(p:write(block)) end              -- 2 MiB, through the read cap
    assert(p:close_stdin())
    reader:join()
    local r = p:wait()
    assert.equal(0, r.exit_code, table.concat(err))
    local got = table.concat(out)
    assert.equal(#block * 32 + #("total " .. #block * 32 .. "\n"), #got)
    assert.equal(block:rep(32), got:sub(1, #block * 32))
    assert.equal("total " .. #block * 32 .. "\n", got:sub(#block * 32 + 1))
    local e = table.concat(err)
    assert.matches("stray stdout\n", e, 1, true)
    assert.matches("printed\n", e, 1, true)
    assert.matches("from a child process\n", e, 1, true)
  end))
end)
