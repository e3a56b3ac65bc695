-- spec/fakes/daytona_server.lua: the Daytona fake (spec/fakes/daytona.lua) as a process of its
-- own, for clients outside the test runner (the official SDK in `make check-fakes`):
--   build/sandlot spec/fakes/daytona_server.lua [start_delay]
-- prints "port N token T" once it listens, then serves until killed. GET /_fake/rejected lists
-- the requests it refused.
package.path = "./?.lua;" .. package.path
local sandlot = require("sandlot")
local srv = require("spec.fakes.daytona").start({ start_delay = tonumber((...) or "") or 0.3 })
io.stdout:write(("port %s token %s\n"):format(srv.url:match(":(%d+)$"), srv.token))
io.stdout:flush()
while true do sandlot.sleep(3600) end
