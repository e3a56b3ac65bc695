-- spec/support/embed.lua: builds examples/embed (a C program linking libsandlot.a) against the
-- build dir of the host under test (SANDLOT_BIN) and runs it, for the specs that drive it.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local M = {}

local ROOT = assert(sys.realpath("."))
local BUILD = assert(sys.realpath(h.BIN:match("^(.*)/[^/]*$") or "."))
M.BIN = ROOT .. "/examples/embed/embed"

-- build-san/ holds sanitizer objects: the example must be linked with the same flags
local SANITIZE = os.getenv("SANITIZE")
if (SANITIZE == nil or SANITIZE == "") and BUILD:match("/build%-san$") then
  SANITIZE = "address,undefined"
end

-- make run from a spec under `make test` must not inherit the outer make's jobserver
local NO_MAKE_ENV = { MAKEFLAGS = false, MFLAGS = false, MAKELEVEL = false }

---Builds the example (a no-op when it is up to date); raises with make's output on failure.
function M.build()
  local r = assert(sandlot.proc.run({ "make", "-s", "-C", ROOT .. "/examples/embed",
                                      "B=" .. BUILD, "SANITIZE=" .. (SANITIZE or "") },
                                    { timeout = 120, env = NO_MAKE_ENV }))
  assert(r.exit_code == 0, "building examples/embed failed:\n" .. r.stdout .. r.stderr)
end

---Runs the example with args; returns exit code, stdout, stderr.
function M.run(...)
  local r = assert(sandlot.proc.run({ M.BIN, ... }, { timeout = 60 }))
  return r.exit_code, r.stdout, r.stderr
end

return M
