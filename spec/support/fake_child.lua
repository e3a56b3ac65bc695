-- spec/support/fake_child.lua NAME: the strict fake spec/fakes/NAME.lua in a process of its own
-- (so its memory and CPU are not the client's); prints {"url", "sandbox_url", "token"} as one
-- JSON line once it listens, then serves until killed. Run from the repository root.
package.path = "./?.lua;" .. package.path
local sandlot = require("sandlot")
local json = require("sandlot.wire.json")

local f = require("spec.fakes." .. assert(arg[1], "usage: fake_child.lua NAME")).start{}
io.stdout:write(json.encode({ url = f.url, sandbox_url = f.sandbox_url or json.null,
                              token = f.token }), "\n")
io.stdout:flush()
while true do sandlot.sleep(3600) end
