-- spec/support/stream_client.lua PROVIDER_JSON MODE FROM TO: one process that sends the host
-- file FROM into a new sandbox and reads it back to TO, then prints its peak RSS, so
-- spec/streams_spec.lua can tell a streamed transfer from one held in memory.
-- MODE "stream": write_file(nil, {from}) and read_file({to}); MODE "memory": the same file as a
-- string both ways (the control: it must show the file's size in the peak).
-- Prints "bytes <n> hwm_kib <k> base_kib <b>": base is the peak before the transfer.
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")

local provider, mode, from, to = json.decode(arg[1]), arg[2], arg[3], arg[4]
provider[1], provider.module = provider.module, nil
sandlot.config.set({ providers = { s = provider } })

local function hwm()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmHWM:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local sb = assert(sandlot.create("s", {}))
collectgarbage()
local base = hwm()
local n
if mode == "stream" then
  assert(sb:write_file("big.bin", nil, { from = from }))
  n = assert(sb:read_file("big.bin", { to = to }))
else
  local f = assert(io.open(from, "rb"))
  local data = f:read("a")
  f:close()
  assert(sb:write_file("big.bin", data))
  data = nil   -- luacheck: ignore 311
  local back = assert(sb:read_file("big.bin"))
  local o = assert(io.open(to, "wb"))
  o:write(back)
  o:close()
  n = #back
end
local peak = hwm()
assert(sb:destroy())
print(("bytes %d hwm_kib %d base_kib %d"):format(n, peak, base))
