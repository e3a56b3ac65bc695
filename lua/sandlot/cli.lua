-- sandlot.cli: subcommands of the host (`sandlot <command> args`). main.c calls main(arg) with
-- arg[0] the command word and arg[1..] its arguments. A command is one entry of M.commands:
-- {summary, usage, run = function(args) -> exit status}. A raised error exits 1.
local M = {}

local function out(...) io.stdout:write(...) end
local function err(...) io.stderr:write(...) end

M.commands = {}

local function command(name, spec)
  spec.name = name
  M.commands[name] = spec
end

local function names()
  local list = {}
  for n in pairs(M.commands) do list[#list + 1] = n end
  table.sort(list)
  return list
end

command("help", {
  summary = "show the commands, or one command's usage",
  usage = "sandlot help [COMMAND]",
  run = function(args)
    local c = args[1] and M.commands[args[1]]
    if args[1] and not c then
      err(("sandlot: no command named '%s'\n"):format(args[1]))
      return 2
    end
    if c then
      out("usage: ", c.usage, "\n\n", c.summary, "\n", c.help or "")
      return 0
    end
    out("usage: sandlot [options] [script.lua [args]]   run a script (see sandlot --help)\n",
        "       sandlot COMMAND [args]\n\ncommands:\n")
    for _, n in ipairs(names()) do
      out(("  %-16s %s\n"):format(n, M.commands[n].summary))
    end
    return 0
  end,
})

local exists = require("sandlot._paths").exists

command("check-provider", {
  summary = "run the provider conformance suite against a provider",
  usage = "sandlot check-provider FILE_OR_NAME [--big-file-mb N] [--label TEXT] " ..
          "[-- BUSTED_OPTIONS]",
  help = [[
FILE_OR_NAME is a provider file (./my_provider.lua), a provider module name (local, for
providers/local.lua on the search path) or a provider configured in sandlot.config.lua.
The provider is checked first (misspelled or missing functions), then the conformance suite
runs against it: exec, files, handles, telemetry. Optional operations it lacks must return
not_supported. Exits 0 when every test passes.
]],
  run = function(args)
    local sandlot = require("sandlot")
    local ref, big, label
    local rest = {}
    local i = 1
    while i <= #args do
      local a = args[i]
      if a == "--" then
        for j = i + 1, #args do rest[#rest + 1] = args[j] end
        break
      elseif a == "--big-file-mb" then
        big = tonumber(args[i + 1])
        if not big or big < 1 then
          err("sandlot: check-provider: --big-file-mb needs a number >= 1\n")
          return 2
        end
        i = i + 1
      elseif a == "--label" then
        label = args[i + 1]
        i = i + 1
      elseif a:sub(1, 1) == "-" then
        err(("sandlot: check-provider: unknown option %s\n"):format(a))
        return 2
      elseif ref == nil then
        ref = a
      else
        err("sandlot: check-provider: one provider at a time\n")
        return 2
      end
      i = i + 1
    end
    if not ref then
      err("usage: ", M.commands["check-provider"].usage, "\n")
      return 2
    end
    -- load and check the provider before running anything against it
    local ok, caps, cerr = pcall(sandlot.caps, ref)
    if not ok then
      local e = caps
      err(("sandlot: check-provider: %s is not a valid provider:\n"):format(ref))
      if type(e) == "table" and e.problems then
        for _, p in ipairs(e.problems) do err("  - ", p, "\n") end
      else
        err("  ", tostring(e), "\n")
      end
      return 1
    end
    if not caps then
      err(("sandlot: check-provider: %s\n"):format(tostring(cerr)))
      return 1
    end
    out(("provider %s\n"):format(ref))
    local ops = {}
    for op in pairs(caps) do ops[#ops + 1] = op end
    table.sort(ops)
    for _, op in ipairs(ops) do out(("  %-12s %s\n"):format(op, caps[op])) end
    out("\n")

    local root = require("sandlot._paths").root()
    local suite = root and root .. "/spec/conformance/check.lua"
    if not suite or not exists(suite) then
      err("sandlot: check-provider: the conformance suite (spec/conformance/) is not " ..
          "installed next to sandlot's Lua library\n")
      return 1
    end
    if not pcall(require, "busted.runner") then
      err("sandlot: check-provider: busted is not installed (apt install lua-busted)\n")
      return 1
    end
    package.path = root .. "/?.lua;" .. root .. "/?/init.lua;" .. package.path
    package.loaded["spec.conformance.target"] = {
      provider = ref, label = label or ref, big_file_mb = big,
    }
    local bargs = { "--config-file=" .. root .. "/spec/conformance/busted.lua",
                    "--output=" .. root .. "/spec/support/summary.lua" }
    for _, a in ipairs(rest) do bargs[#bargs + 1] = a end
    bargs[#bargs + 1] = suite
    _G.arg = { [0] = "sandlot check-provider" }
    for j, a in ipairs(bargs) do _G.arg[j] = a end
    -- exits with the number of failures when there are any; returns when all passed
    require("busted.runner")({ standalone = false })
    return 0
  end,
})

command("gc", {
  summary = "remove leftover sandboxes of a provider (one with gc: docker)",
  usage = "sandlot gc --provider NAME [--all] [--older-than SECONDS] [--dry-run]",
  help = [[
NAME is a provider module (docker), a provider file, or a provider configured in
sandlot.config.lua; it works from any directory. The provider's gc decides what is left over.
docker's rule: remove containers labelled sandlot=1 that are neither running nor paused, or
whose lifetime (create's timeout) has passed; --older-than also removes running ones created
more than SECONDS ago; --all removes every one. Containers labelled sandlot.keep=1 are kept.
--dry-run only lists. Exits 1 when the provider cannot be reached.
]],
  run = function(args)
    local name, opts, bad = nil, {}, false
    local i = 1
    while args[i] do
      local a = args[i]
      if a == "--provider" then name, i = args[i + 1], i + 1
      elseif a == "--all" then opts.all = true
      elseif a == "--dry-run" then opts.dry_run = true
      elseif a == "--older-than" then
        opts.older_than, i = tonumber(args[i + 1] or ""), i + 1
        bad = bad or opts.older_than == nil
      else bad = true end
      i = i + 1
    end
    if not name or bad then
      err("usage: ", M.commands.gc.usage, "\n")
      return 2
    end
    local r, e = require("sandlot.sandbox")._context(name)
    if not r then
      err("sandlot gc: ", tostring(e), "\n")
      return 2
    end
    local gc = r.p.caps.gc == "native" and r.p.ops.gc
    if not gc then
      err(("sandlot gc: provider %s has no gc\n"):format(name))
      return 2
    end
    local report, gerr = gc(r.ctx, opts)
    if not report then
      err("sandlot gc: ", tostring(gerr), "\n")
      return 1
    end
    for _, x in ipairs(report) do
      local verb = x.reason == "kept" and "kept   " or (x.removed and "removed" or
                   (opts.dry_run and "would remove" or "FAILED "))
      local what = type(x.container) == "string" and (" " .. x.container:sub(1, 12)) or ""
      out(("%s %s%s (%s, %s)\n"):format(verb, tostring(x.id), what, tostring(x.state),
                                        tostring(x.reason)))
    end
    return 0
  end,
})

-- sandlot ps (issue 10): the ledger's sandboxes, like docker ps. One self-contained block.
local PS_LIVE = { "creating", "active", "stopped", "error" }

local function ps_age(secs)
  if secs < 0 then secs = 0 end
  if secs < 120 then return ("%ds"):format(secs) end
  if secs < 7200 then return ("%dm"):format(secs // 60) end
  if secs < 172800 then return ("%dh"):format(secs // 3600) end
  return ("%dd"):format(secs // 86400)
end

command("ps", {
  summary = "list the sandboxes in the ledger (durable id, provider, state, age)",
  usage = "sandlot ps [--all] [--json]",
  help = [[
Lists the sandboxes recorded in the ledger ($XDG_STATE_HOME/sandlot/ledger.db), newest first:
those not destroyed, or every one with --all. Columns: the durable id (for sandlot.get), the
provider reference, the provider's own id, the state (creating, active, stopped, error,
destroyed), the age and the name or purpose. --json prints one JSON array of records (see
README, "Durable sandboxes"). Reads the ledger only: no provider is contacted.
Exits 1 when the ledger cannot be read.
]],
  run = function(args)
    local all, as_json = false, false
    for _, a in ipairs(args) do
      if a == "--all" or a == "-a" then all = true
      elseif a == "--json" then as_json = true
      else
        err(("sandlot ps: unknown argument %s\nusage: %s\n"):format(a, M.commands.ps.usage))
        return 2
      end
    end
    local list, lerr = require("sandlot.sandbox").list({ state = not all and PS_LIVE or nil })
    if not list then
      err("sandlot ps: ", tostring(lerr), "\n")
      return 1
    end
    local now = os.time()
    if as_json then
      local json = require("sandlot.wire.json")
      local rows = {}
      for i, r in ipairs(list) do
        rows[i] = { id = r.id, provider = r.provider, module = r.module,
                    external_id = r.external_id, state = r.state, name = r.name,
                    purpose = r.purpose, labels = r.labels, host_id = r.host_id,
                    created_at = r.created_at, updated_at = r.updated_at,
                    ended_at = r.ended_at, age_s = now - r.created_at,
                    error = r.error and { code = r.error.code, message = r.error.message } }
      end
      out(json.encode(json.array(rows)), "\n")
      return 0
    end
    local head = { "DURABLE ID", "PROVIDER", "PROVIDER ID", "STATE", "AGE", "NAME" }
    local lines, width = { head }, {}
    for _, r in ipairs(list) do
      local ext = r.external_id or "-"
      if #ext > 20 then ext = ext:sub(1, 19) .. "~" end
      lines[#lines + 1] = { r.id, r.provider, ext, r.state, ps_age(now - r.created_at),
                            r.name or r.purpose or "" }
    end
    for _, l in ipairs(lines) do
      for c, v in ipairs(l) do width[c] = math.max(width[c] or 0, #v) end
    end
    for _, l in ipairs(lines) do
      local cells = {}
      for c, v in ipairs(l) do
        cells[c] = c < #l and v .. (" "):rep(width[c] - #v) or v
      end
      out((table.concat(cells, "   "):gsub("%s+$", "")), "\n")
    end
    return 0
  end,
})

---Runs the command named by arg[0] with arg[1..]; exits with its status when non-zero.
---@param arg table
function M.main(arg)
  local name = arg and arg[0]
  local c = M.commands[name]
  if not c then
    err(("sandlot: unknown command '%s'\n"):format(tostring(name)))
    M.commands.help.run({})
    os.exit(2)
  end
  local args = {}
  for i = 1, #arg do args[i] = arg[i] end
  local rc = c.run(args) or 0
  if rc ~= 0 then os.exit(rc) end
  return 0
end

return M
