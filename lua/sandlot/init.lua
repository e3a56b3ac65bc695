-- sandlot: the public module. `require "sandlot"` from the host or from a stock lua5.4 (with
-- sandlot.so on package.cpath). Concurrency, processes, errors and telemetry live in their
-- own modules; this file gathers them and sets up the search path for providers and plugins.
local core = require("sandlot.core")
require("sandlot._paths").setup()

local task = require("sandlot.task")

local M = {
  version = core.version,
  errors = require("sandlot.errors"),
  telemetry = require("sandlot.telemetry"),
  proc = require("sandlot.proc"),
}

-- sandlot.http and sandlot.ssh load on first use: the host binary then loads libcurl or
-- libssh2 (and their TLS stacks), which a script on the local provider never needs
local lazy = { http = "sandlot.http", ssh = "sandlot.ssh" }
setmetatable(M, {
  __index = function(t, k)
    local name = lazy[k]
    if name == nil then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})

M.spawn = task.spawn
M.sleep = task.sleep
M.timeout = task.timeout
M.map = task.map
M.all = task.all
M.current = task.current
M.run = task.run

-- the sandbox API: sandlot.exec(sb, ...) and sb:exec(...) are the same function
local sandbox = require("sandlot.sandbox")
M.config = require("sandlot.config")
M.provider = require("sandlot.provider")
M.fs = require("sandlot.fs")
M.ledger = require("sandlot.ledger")
for _, name in ipairs({ "create", "exec", "read_file", "write_file", "write_files", "ls",
                        "mkdir", "rm", "destroy", "status", "reconnect", "stop", "start",
                        "await_ready", "update", "get_url", "ssh_opts", "caps", "to_map",
                        "from_map", "get", "list" }) do
  M[name] = sandbox[name]
end
---Reattaches to a background process by its durable id (sandlot.background).
function M.process(id, opts)
  return require("sandlot.background").process(id, opts)
end

return M
