-- sandlot.cli.shell: `sandlot shell ID [--provider P] [-- CMD...]`: an interactive terminal in a
-- sandbox, as `docker exec -it` gives one. The local terminal is in raw mode while it runs
-- (restored on every way out, by <close>), input goes byte for byte to a pty in the sandbox
-- (Ctrl-C included), output comes back as it arrives, SIGWINCH resizes the remote terminal,
-- and the exit status is the remote command's. Without a terminal on stdin, like `ssh -T`.
local cli = require("sandlot.cli")

local M = {
  summary = "an interactive terminal in a sandbox (like docker exec -it), exiting with its status",
  usage = "sandlot shell ID [--provider NAME] [--cwd DIR] [--env K=V]... [--verbose] " ..
          "[-- CMD [ARG...]]",
  args = { min = 1, max = 1, name = "ID" },
  rest = true,
  options = {
    { "--provider", arg = "NAME", summary = "ID is that provider's own sandbox id (not a " ..
                                            "durable id from the ledger)" },
    { "--cwd", arg = "DIR", summary = "the working directory inside the sandbox" },
    { "--env", arg = "K=V", many = true, summary = "an environment variable (repeatable)" },
    { "--verbose", short = "-v", summary = "say when there is no terminal to give" },
  },
  help = [[
ID is a durable id from `sandlot create` or `sandlot ps`, or with --provider the provider's own
id of a sandbox (a container id for docker). CMD defaults to the login shell of the sandbox's
user (from its passwd entry; /bin/sh when there is none). While it runs, this terminal is in
raw mode: every key goes to the sandbox, Ctrl-C and Ctrl-D included, and the remote terminal
follows this one's size. When stdin is not a terminal, CMD runs without one, with stdin, stdout
and stderr passed through (--verbose says so). The exit status is CMD's: a signal gives 128+N.
Exits 1 when the sandbox cannot be found or reached, or when its provider has no terminals.
]],
}

-- The login shell of the sandbox's user, or /bin/sh (getent and cut may be missing).
local LOGIN = [[s=$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f7)
case $s in ''|*/nologin|*/false) s=/bin/sh;; esac
[ -x "$s" ] || s=/bin/sh
exec "$s"]]

local function find(o)
  local sandlot = require("sandlot")
  if not o.opts.provider then return sandlot.get(o.args[1]) end
  local sandbox = require("sandlot.sandbox")
  local sb, err = sandbox.from_map({ version = sandbox.MAP_VERSION, provider = o.opts.provider,
                                     id = o.args[1], handle = { id = o.args[1] } })
  if not sb then return nil, err end
  local ok, rerr = sb:reconnect()
  if not ok then return nil, rerr end
  return sb
end

local function status(r)
  if r.signal then return 128 + r.signal end
  return r.exit_code
end

-- Copies what reader(fd) reads into the process until the end (then closes its stdin).
local function pump_input(p, fd, close_at_end)
  local term = require("sandlot.core.term")
  local task = require("sandlot.task")
  local reader = assert(term.reader(fd))
  return task.spawn(function()
    local _ <close> = reader
    while true do
      local data = reader:read()
      if not data then break end
      if not p:write(data) then return end
    end
    if close_at_end then p:close_stdin() end
  end)
end

local function on_terminal(p)
  local term = require("sandlot.core.term")
  local task = require("sandlot.task")
  local mode <close>, merr = term.raw(0)
  if not mode then return nil, merr end
  local input = pump_input(p, 0, false)
  local winch <close> = assert(term.signal("WINCH"))
  local resizer = task.spawn(function()
    while winch:wait() do
      local rows, cols = term.size(0)
      if rows and rows > 0 and cols > 0 then p:resize(rows, cols) end
    end
  end)
  local _ <close> = setmetatable({}, { __close = function()
    input:cancel()
    resizer:cancel()
  end })
  while true do
    local stream, data = p:read()
    if stream == nil then
      if data ~= nil then return nil, data end
      break
    end
    io.stdout:write(data)
    io.stdout:flush()
  end
  return p:wait()
end

local function piped(p)
  local input = pump_input(p, 0, true)
  local _ <close> = setmetatable({}, { __close = function() input:cancel() end })
  while true do
    local stream, data = p:read()
    if stream == nil then
      if data ~= nil then return nil, data end
      break
    end
    local f = stream == "stderr" and io.stderr or io.stdout
    f:write(data)
    f:flush()
  end
  return p:wait()
end

function M.run(o)
  local c = cli.get("shell")
  local env
  for _, kv in ipairs(o.opts.env or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then return cli.usage_error(c, "--env needs NAME=VALUE, got '%s'", kv) end
    env = env or {}
    env[k] = v
  end
  local sb, err = find(o)
  if not sb then return cli.fail(c, "%s", tostring(err)) end
  local cmd = #o.rest > 0 and o.rest or { "/bin/sh", "-c", LOGIN }
  local tty = require("sandlot.core.sys").isatty(0)
  local opts = { cwd = o.opts.cwd, env = env }
  if tty then
    local term = require("sandlot.core.term")
    local rows, cols = term.size(0)
    if not rows or rows < 1 or cols < 1 then rows, cols = 24, 80 end
    opts.pty = { rows = rows, cols = cols }
  elseif o.opts.verbose then
    cli.err("sandlot: shell: stdin is not a terminal: running without a pty\n")
  end
  local p <close>, serr = sb:spawn(cmd, opts)
  if not p then return cli.fail(c, "%s", tostring(serr)) end
  local r, werr
  if tty then r, werr = on_terminal(p) else r, werr = piped(p) end
  if not r then return cli.fail(c, "%s", tostring(werr)) end
  return status(r)
end

return M
