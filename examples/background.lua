-- examples/background.lua: a background job outlives the host that started it. Run it twice:
--   sandlot examples/background.lua    # 1st run: starts a job, then kills itself (SIGKILL)
--   sandlot examples/background.lua    # 2nd run: reattaches and reads every byte of it
-- The first run creates a sandbox labelled example=background and starts a job printing
-- 100,000 numbered lines over a few seconds; once part of the output is in the ledger, it
-- kills itself with SIGKILL. The second run finds the sandbox in the ledger, reattaches to the
-- job with sandlot.process(id) (what was written while no host followed comes from the job's
-- log in the sandbox), checks that every line came, in order, and destroys the sandbox.
local sandlot = require("sandlot")
local background = require("sandlot.background")

local LINES = 100000
local JOB = ('i=0; while [ $i -lt 100 ]; do seq $((i * 1000 + 1)) $((i * 1000 + 1000)); ' ..
             'i=$((i + 1)); sleep 0.02; done; echo "job done" >&2')

local found = assert(sandlot.list({ label = "example=background", state = "active" }))

if #found == 0 then
  -- first run
  local sb = assert(sandlot.create({ labels = { example = "background" } }))
  local p = assert(sb:spawn(JOB, { background = true }))
  print(("[first run] sandbox %s, background process %s"):format(sb.durable_id, p.id))
  while p.persisted.stdout < 100000 do sandlot.sleep(0.01) end
  print(("[first run] %d bytes of output are in the ledger; now SIGKILL"):format(
    p.persisted.stdout))
  io.stdout:flush()
  sandlot.proc.run({ "kill", "-KILL", tostring(require("sandlot.core.sys").getpid()) })
  sandlot.sleep(60)                              -- not reached
  return
end

-- second run
local sbid = found[1].id
local id = assert(background.list(sbid))[1].id
local p = assert(sandlot.process(id))
print(("[second run] reattached to %s: %d bytes were persisted before the kill"):format(
  id, p.persisted.stdout))
local out, off = {}, { stdout = 0, stderr = 0 }
local exit, stderr = nil, {}
while not exit do
  local chunks, nxt = assert(p:read({ offset = off, follow = true, timeout = 60 }))
  for _, c in ipairs(chunks) do
    if c.stream == "exit" then exit = c
    elseif not c.data then error(("%s bytes %d.. were not kept (%s)"):format(c.stream,
                                                                              c.offset, c.reason))
    elseif c.stream == "stdout" then out[#out + 1] = c.data
    else stderr[#stderr + 1] = c.data end
  end
  off = nxt
end
out = table.concat(out)
local want = {}
for i = 1, LINES do want[i] = tostring(i) end
want = table.concat(want, "\n") .. "\n"
assert(out == want, ("the output differs from seq 1 %d (%d bytes, %d expected)"):format(
  LINES, #out, #want))
print(("[second run] exit %d; %d bytes, every line from 1 to %d in order; stderr '%s'"):format(
  exit.exit_code, #out, LINES, (table.concat(stderr):gsub("\n", "\\n"))))
local sb = assert(sandlot.get(sbid))
assert(sb:destroy())
print("[second run] destroyed " .. sbid)
