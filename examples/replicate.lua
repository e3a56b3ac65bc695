-- examples/replicate.lua: this host's Lua, replicated into a sandbox as a connected peer.
-- The module myapp.stats exists only on the host (beside this script); sandlot.replicate
-- ships it with the static sandlot-peer binary, content-addressed, and calls run there.
--   sandlot examples/replicate.lua            (SANDLOT_PROVIDER picks another provider)
local sandlot = require("sandlot")

local sb <close> = assert(sandlot.create({}))
local peer <close> = assert(sandlot.replicate(sb, { name = "example" }))
print(("replica %s: %d bytes shipped"):format(peer.arch, peer.shipped.bytes))

-- a module function, run in the sandbox
local mean, max = assert(peer:call("myapp.stats.summary", { 3, 1, 4, 1, 5, 9, 2, 6 }))
print(("summary: mean %.3f, max %d"):format(mean, max))

-- a proxy for a whole module, and Lua source with arguments
local stats = peer:require("myapp.stats")
print("run_many: " .. assert(stats.run_many(20)) .. " of 20 commands exited 0, in one call")
print("eval: " .. assert(peer:eval("return select('#', ...) .. ' args, ' .. _VERSION", 1, 2)))

-- a generator's values, streamed
local squares = {}
for v in peer:stream("myapp.stats.squares", 5) do squares[#squares + 1] = v end
print("stream: " .. table.concat(squares, " "))

-- a failure comes back as nil, err (raised ones carry the remote traceback)
local none, err = peer:call("myapp.stats.summary", {})
print(("error: %s, %s"):format(tostring(none), tostring(err)))

-- a second replicate into the same sandbox finds everything there already
local again <close> = assert(sandlot.replicate(sb))
print(("again: %d bytes shipped (cache hit: %s)"):format(again.shipped.bytes,
                                                         tostring(again.shipped.cache_hit)))
