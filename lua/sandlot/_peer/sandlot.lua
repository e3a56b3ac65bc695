-- sandlot._peer.sandlot: what `require "sandlot"` gives code running in a replica. The replica
-- has the scheduler, processes, files and errors, but no providers, HTTP, SSH or ledger (and
-- none of the host's configuration): sandbox operations belong to the host.
local core = require("sandlot.core")
local task = require("sandlot.task")

local M = {
  version = core.version,
  replica = true,
  errors = require("sandlot.errors"),
  proc = require("sandlot.proc"),
  fs = require("sandlot.fs"),
  spawn = task.spawn,
  sleep = task.sleep,
  timeout = task.timeout,
  map = task.map,
  all = task.all,
  current = task.current,
  run = task.run,
}

---Calls a host function listed in the replicate's opts.expose: results, or nil, err
---(permission_denied when it is not exposed).
function M.host(name, ...)
  return require("sandlot._peer.serve").host(name, ...)
end

return M
