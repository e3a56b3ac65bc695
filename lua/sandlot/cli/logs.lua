-- sandlot.cli.logs: `sandlot logs ID|PROC [-f] [--from OFFSET] [--json]`: a background
-- process's output (sandlot.background), its stdout on stdout and its stderr on stderr, or, for
-- a sandbox's durable id, the list of its background processes.
local cli = require("sandlot.cli")

local age = cli.age

local columns = cli.columns

local function command_line(argv)
  if type(argv) ~= "table" then return "" end
  return cli.cut(table.concat(argv, " "), 40)
end

local function record(r, now)
  return { id = r.id, sandbox_id = r.sandbox_id, argv = cli.array(r.argv), state = r.state,
           exit_code = r.exit_code, signal = r.signal, stdout_bytes = r.stdout_bytes,
           stderr_bytes = r.stderr_bytes, cap_bytes = r.cap_bytes, log_dir = r.log_dir,
           gaps = cli.array(r.gaps), created_at = r.created_at, ended_at = r.ended_at,
           age_s = now - r.created_at }
end

local function list_sandbox(o, id)
  local bg = require("sandlot.background")
  local rows, err = bg.list(id)
  if not rows then return nil, err end
  local now = os.time()
  if o.opts.json then
    local out = cli.array()
    for i, r in ipairs(rows) do out[i] = record(r, now) end
    cli.json(out)
    return cli.OK
  end
  local lines = { { "PROCESS ID", "STATE", "EXIT", "STDOUT", "STDERR", "AGE", "COMMAND" } }
  for _, r in ipairs(rows) do
    lines[#lines + 1] = { r.id, r.state, r.exit_code and tostring(r.exit_code) or "-",
                          tostring(r.stdout_bytes), tostring(r.stderr_bytes),
                          age(now - r.created_at), command_line(r.argv) }
  end
  columns(lines)
  return cli.OK
end

local function gap_text(c)
  local to = c.dropped and (" to " .. (c.offset + c.dropped)) or " to the end"
  if c.reason == "cap" then
    return ("[%s bytes %d%s dropped by the cap]"):format(c.stream, c.offset, to)
  end
  return ("[%s bytes %d%s lost%s]"):format(c.stream, c.offset, to,
                                          c.why and (": " .. c.why) or "")
end

local function show_process(o, id)
  local p, err = require("sandlot").process(id)
  if not p then return nil, err end
  if o.opts.json then
    local row = assert(require("sandlot.background").list(p.sandbox_id))
    for _, r in ipairs(row) do
      if r.id == id then cli.json(record(r, os.time())) return cli.OK end
    end
  end
  if not o.opts.follow then p:sync(10) end      -- taken over: what the log has first
  local from = math.tointeger(o.opts.from or 0)
  local off = { stdout = from, stderr = from }
  local rc = cli.OK
  while true do
    local chunks, nxt = p:read({ offset = off, follow = o.opts.follow == true, timeout = 60 })
    if not chunks then
      if require("sandlot.errors").is(nxt, "timeout") then goto again end
      if require("sandlot.errors").is(nxt, "cancelled") then return cli.OK end   -- Ctrl-C
      return nil, nxt
    end
    for _, c in ipairs(chunks) do
      if c.stream == "exit" then
        if c.lost then
          local e = p.error
          cli.fail(cli.get("logs"), "process %s was lost%s", id,
                   type(e) == "table" and e.message and (": " .. e.message) or "")
          rc = cli.FAILED
        end
        io.stdout:flush()
        return rc
      elseif c.data then
        (c.stream == "stdout" and io.stdout or io.stderr):write(c.data)
      else
        io.stdout:flush()
        io.stderr:write("sandlot: logs: ", gap_text(c), "\n")
        if c.reason == "lost" then rc = cli.FAILED end
      end
    end
    io.stdout:flush()
    off = nxt
    if not o.opts.follow then return rc end
    ::again::
  end
end

return {
  summary = "print a background process's output, or list a sandbox's processes",
  usage = "sandlot logs ID|PROC [-f] [--from OFFSET] [--json]",
  args = { min = 1, max = 1, name = "ID|PROC" },
  options = {
    { "--follow", short = "-f", summary = "keep printing until the process ends (or Ctrl-C)" },
    { "--from", arg = "OFFSET", number = true, min = 0,
      summary = "start at this byte of each stream (default 0)" },
  },
  json = true,
  help = [[
PROC is a background process id (pr-..., from sb:spawn(cmd, {background = true}) or the
listing): prints its output from the ledger, stdout on stdout and stderr on stderr, each
from byte OFFSET (--from) of its stream. With -f it keeps following until the process ends;
when no live host follows the process, this command takes over (fetching what was written
meanwhile from the log in the sandbox). Bytes not kept are reported on stderr: "[stdout
bytes A to B dropped by the cap]", or "... lost: why" (then the exit status is 1).
ID is a sandbox's durable id (sb-...): lists its background processes (process id, state,
exit code, bytes of stdout and stderr, age, command). --json prints one JSON document: the
process's record, or an array of them (see README, "Background processes").
Exits 1 for an unknown id, a lost process or an unreadable ledger; 2 for a usage error.
]],
  run = function(o)
    local id = o.args[1]
    if o.opts.from and math.tointeger(o.opts.from) == nil then
      return cli.usage_error(cli.get("logs"), "--from needs an integer, got %s", o.opts.from)
    end
    if id:match("^sb%-") then
      local rec, err = require("sandlot.sandbox").list({})
      if not rec then return nil, err end
      local found = false
      for _, r in ipairs(rec) do if r.id == id then found = true end end
      if not found then
        return cli.fail(cli.get("logs"), "no sandbox or process %s in the ledger %s", id,
                        require("sandlot.ledger").path() or "?")
      end
      return list_sandbox(o, id)
    end
    local rc, err = show_process(o, id)
    if rc == nil and require("sandlot.errors").is(err, "not_found") and not id:match("^pr%-") then
      return cli.fail(cli.get("logs"), "no sandbox or process %s in the ledger %s", id,
                      require("sandlot.ledger").path() or "?")
    end
    return rc, err
  end,
}
