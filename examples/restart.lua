-- examples/restart.lua: a sandbox outlives the process that created it. This process creates
-- one, writes a file and saves sandlot.to_map(sb) as JSON; then it starts a second process
-- (this same script with --restore FILE) that rebuilds the handle with from_map, checks it
-- with reconnect, runs a command, and destroys it. The saved map holds no credentials.
local sandlot = require("sandlot")
local cjson = require("cjson")

if arg[1] == "--restore" then
  local f = assert(io.open(arg[2], "r"))
  local map = cjson.decode(f:read("a"))
  f:close()
  local sb = assert(sandlot.from_map(map))
  assert(sb:reconnect())                          -- not_found if it vanished meanwhile
  local r = assert(sb:exec({ "cat", "state/counter" }))
  print(("[second process] restored %s; counter = %s"):format(tostring(sb), r.stdout))
  assert(sb:destroy())
  print("[second process] destroyed it")
  return
end

local sb = assert(sandlot.create())
assert(sb:write_file("state/counter", "41 + 1"))
local saved = os.tmpname()
local f = assert(io.open(saved, "w"))
f:write(cjson.encode(sandlot.to_map(sb)))
f:close()
print(("[first process] created %s, saved its handle to %s:"):format(tostring(sb), saved))
print("  " .. cjson.encode(sandlot.to_map(sb)))

-- the second process: the interpreter that runs us (arg[-1]) and this script
local r = assert(sandlot.proc.run({ arg[-1], arg[0], "--restore", saved }, { timeout = 60 }))
io.write(r.stdout)
io.stderr:write(r.stderr)
os.remove(saved)
print(("[first process] second process exited %d; status now %s")
  :format(r.exit_code, sb:status()))
if r.exit_code ~= 0 or sb:status() ~= "terminated" then os.exit(1) end
