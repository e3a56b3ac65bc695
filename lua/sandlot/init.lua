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

-- SANDLOT_OTLP_ENDPOINT: spans exported as OTLP/HTTP JSON (sandlot.otlp)
local otlp_endpoint = os.getenv("SANDLOT_OTLP_ENDPOINT")
if otlp_endpoint and otlp_endpoint ~= "" then
  local ok, err = require("sandlot.otlp").start()
  if not ok then
    io.stderr:write("sandlot: warning: SANDLOT_OTLP_ENDPOINT: ", tostring(err), "\n")
  end
end

-- sandlot.http and sandlot.ssh load on first use: the host binary then loads libcurl or
-- libssh2 (and their TLS stacks), which a script on the local provider never needs
local lazy = { http = "sandlot.http", ssh = "sandlot.ssh", ws = "sandlot.ws" }
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
local replicate = require("sandlot.replicate")
M.replicate = replicate.replicate          -- a connected replica of this host in a sandbox
M.stop_replica = replicate.stop_replica
-- written out (not a loop) so that lua-language-server sees each one
M.create = sandbox.create
M.exec = sandbox.exec
M.read_file = sandbox.read_file
M.write_file = sandbox.write_file
M.write_files = sandbox.write_files
M.ls = sandbox.ls
M.mkdir = sandbox.mkdir
M.rm = sandbox.rm
M.destroy = sandbox.destroy
M.status = sandbox.status
M.reconnect = sandbox.reconnect
M.stop = sandbox.stop
M.start = sandbox.start
M.await_ready = sandbox.await_ready
M.update = sandbox.update
M.get_url = sandbox.get_url
M.ssh_opts = sandbox.ssh_opts
M.extension = sandbox.extension
M.caps = sandbox.caps
M.to_map = sandbox.to_map
M.from_map = sandbox.from_map
M.get = sandbox.get
M.list = sandbox.list
M.checkpoints = sandbox.checkpoints
M.checkpoint = require("sandlot.checkpoint")
---Reattaches to a background process by its durable id (sandlot.background).
function M.process(id, opts)
  return require("sandlot.background").process(id, opts)
end

return M
