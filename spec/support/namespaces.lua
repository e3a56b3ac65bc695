-- spec/support/namespaces.lua: whether bubblewrap can create namespaces on this machine. It
-- cannot inside a chroot, in many containers, or where Ubuntu's AppArmor restricts
-- unprivileged user namespaces; the specs that need them are then pending with the reason
-- (loudly), as the Docker specs are without a daemon, and a failure when CI is set.
local sandlot = require("sandlot")

local M = {}

local probed, reason

---Returns nil when bubblewrap can create namespaces here, else why not (probed once).
---@return string|nil
function M.why()
  if probed then return reason end
  probed = true
  local r, err = sandlot.proc.run({ "bwrap", "--unshare-all", "--die-with-parent", "--ro-bind",
                                    "/", "/", "--proc", "/proc", "--dev", "/dev", "true" },
                                  { timeout = 20 })
  if not r then
    reason = "bwrap cannot run: " .. tostring(err)
  elseif r.exit_code ~= 0 then
    reason = "bwrap cannot create namespaces here: " .. (r.stderr:match("^[^\n]*") or "")
  end
  return reason
end

---The reason to mark a namespace spec pending (printed once, loudly), or nil when they can
---run. Raises when CI is set: CI machines must run them.
---@return string|nil
local told = false
function M.skip()
  local why = M.why()
  if not why then return nil end
  local msg = "namespace specs skipped: " .. why
  if not told then
    io.stderr:write("\n*** ", msg, " ***\n")
    told = true
  end
  if os.getenv("CI") and os.getenv("CI") ~= "" then
    error(msg .. " (CI is set: bubblewrap must work here)")
  end
  return msg
end

return M
