-- sandlot.cli.exec: `sandlot exec ID [--cwd DIR] [--env K=V]... [--timeout S] -- CMD...`: runs
-- a command in a sandbox found by its durable id, with its output streamed as it comes, and
-- exits with the command's status, as `docker exec` does.
local cli = require("sandlot.cli")

local M = {
  summary = "run a command in a sandbox by its durable id, exiting with its status",
  usage = "sandlot exec ID [--cwd DIR] [--env K=V]... [--timeout SECONDS] [--json] -- CMD [ARG...]",
  args = { min = 1, max = 1, name = "ID" },
  rest = true,
  options = {
    { "--cwd", arg = "DIR", summary = "the working directory inside the sandbox" },
    { "--env", arg = "K=V", many = true, summary = "an environment variable (repeatable)" },
    { "--timeout", arg = "SECONDS", number = true, min = 0,
      summary = "kill the command after SECONDS (exit status 124, as timeout(1))" },
  },
  json = true,
  help = [[
ID is a durable id from `sandlot create` or `sandlot ps`. CMD runs as an argument list (no
shell; use `-- sh -c '...'` for one). Its stdout and stderr are passed through as they arrive
and the exit status is the command's: a signal gives 128+N, a timeout 124. With --json, the
output is collected and printed as one document {exit_code, signal?, stdout, stderr,
timed_out, truncated} instead. Exits 1 when the sandbox cannot be found or reached.
]],
}

function M.run(o)
  local c = cli.get("exec")
  local sandlot = require("sandlot")
  if #o.rest == 0 then return cli.usage_error(c, "missing the command (after --)") end
  local env
  for _, kv in ipairs(o.opts.env or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then return cli.usage_error(c, "--env needs NAME=VALUE, got '%s'", kv) end
    env = env or {}
    env[k] = v
  end
  local sb, err = sandlot.get(o.args[1])
  if not sb then return cli.fail(c, "%s", tostring(err)) end
  local opts = { cwd = o.opts.cwd, env = env, timeout = o.opts.timeout }
  if not o.opts.json then
    opts.on_stdout = function(chunk) io.stdout:write(chunk) io.stdout:flush() end
    opts.on_stderr = function(chunk) io.stderr:write(chunk) io.stderr:flush() end
    opts.max_output = 0
  end
  local r, eerr = sb:exec(o.rest, opts)
  if not r then return cli.fail(c, "%s", tostring(eerr)) end
  if o.opts.json then
    cli.json({ exit_code = r.exit_code, signal = r.signal, stdout = r.stdout, stderr = r.stderr,
               timed_out = r.timed_out or false, truncated = r.truncated or false })
  end
  if r.timed_out then return 124 end
  if r.signal then
    local n = math.type(r.signal) == "integer" and r.signal
              or require("sandlot.exec").signal_number(tostring(r.signal))
    return 128 + (n or 0)
  end
  return r.exit_code
end

return M
