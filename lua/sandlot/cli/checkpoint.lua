-- sandlot.cli.checkpoint: `sandlot checkpoint take|ls|rm|restore ...`: checkpoints of durable
-- sandboxes (sandlot.checkpoint) from the command line. take and restore reach the sandbox by
-- its durable id (sandlot.get, as exec does); ls and rm read the records only (rm of a native
-- checkpoint deletes the provider's snapshot through the provider). A new sandbox from a
-- checkpoint is `sandlot create --from CK`.
local cli = require("sandlot.cli")

local function me() return cli.get("checkpoint") end

local age = cli.age

local function size(n)
  if type(n) ~= "number" then return "-" end
  if n < 1024 then return ("%dB"):format(n) end
  if n < 1024 * 1024 then return ("%.1fK"):format(n / 1024) end
  if n < 1024 * 1024 * 1024 then return ("%.1fM"):format(n / (1024 * 1024)) end
  return ("%.1fG"):format(n / (1024 * 1024 * 1024))
end

local columns = cli.columns

-- A record as --json prints it: the library's record, skipped as an array.
local function record(r)
  local out = {}
  for k, v in pairs(r) do out[k] = v end
  if out.skipped then out.skipped = cli.array(out.skipped) end
  return out
end

-- The checkpoint's record first (an unknown or corrupt id fails before any provider is asked).
local function known(ck_id)
  local rec, err = require("sandlot.checkpoint").get(ck_id)
  if not rec then return nil, err.message end
  return rec
end

local function take(o)
  if o.opts.portable and o.opts.native then
    return cli.usage_error(me(), "--portable and --native contradict each other")
  end
  local sb, err = require("sandlot").get(o.args[2])
  if not sb then return cli.fail(me(), "%s", tostring(err)) end
  local kind = o.opts.portable and "portable" or o.opts.native and "native" or nil
  local ck, cerr = require("sandlot.checkpoint").take(sb, { name = o.opts.name, kind = kind })
  if not ck then return cli.fail(me(), "%s", tostring(cerr)) end
  if o.opts.json then cli.json(record(ck)) else cli.out(ck.id, "\n") end
  return cli.OK
end

local function ls(o)
  local key = o.args[2]
  local list, err, bad = require("sandlot.checkpoint").list(key)
  if not list then return cli.fail(me(), "%s", tostring(err)) end
  if key and #list == 0 then                  -- a typo'd id is an error, not an empty list
    local ledger = require("sandlot.ledger")
    local l = ledger.enabled() and ledger.open()
    local found, gerr
    if l then found, gerr = l:get(key) end
    if l and not found and gerr and gerr.code == "not_found" then
      return cli.fail(me(), "no such sandbox: %s", key)
    end
  end
  for _, e in ipairs(bad or {}) do cli.fail(me(), "%s", e.message) end
  if o.opts.json then
    local rows = cli.array()
    for i, r in ipairs(list) do rows[i] = record(r) end
    cli.json(rows)
  else
    local now = os.time()
    local lines = { { "CHECKPOINT ID", "NAME", "KIND", "PROVIDER", "SANDBOX", "CREATED",
                      "SIZE" } }
    for _, r in ipairs(list) do
      lines[#lines + 1] = { r.id, r.name or "-", tostring(r.kind), tostring(r.provider),
                            tostring(r.sandbox or "-"),
                            age(now - (math.tointeger(r.created_at) or now)) .. " ago",
                            size(r.size) }
    end
    columns(lines)
  end
  return bad and cli.FAILED or cli.OK
end

local function rm(o)
  local failed = false
  local rows = cli.array()
  for i = 2, #o.args do
    local ck_id = o.args[i]
    local ok, why = known(ck_id)
    if ok then
      local derr
      ok, derr = require("sandlot.checkpoint").delete(ck_id)
      why = not ok and derr.message or nil
    end
    failed = failed or not ok
    rows[#rows + 1] = { id = ck_id, removed = ok and true or false, error = why }
    if not o.opts.json then
      if ok then cli.out(ck_id, "\n") else cli.fail(me(), "%s", why) end
    end
  end
  if o.opts.json then cli.json(rows) end
  return failed and cli.FAILED or cli.OK
end

local function restore(o)
  local ck_id, sb_id = o.args[2], o.args[3]
  local rec, why = known(ck_id)
  if not rec then return cli.fail(me(), "%s", why) end
  local sb, err = require("sandlot").get(sb_id)
  if not sb then return cli.fail(me(), "%s", tostring(err)) end
  local ok, rerr = require("sandlot.checkpoint").restore(sb, rec)
  if not ok then return cli.fail(me(), "%s", tostring(rerr)) end
  if o.opts.json then
    cli.json({ checkpoint = rec.id, sandbox = sb.durable_id, kind = rec.kind, restored = true })
  else
    cli.out(sb.durable_id, "\n")
  end
  return cli.OK
end

-- verb -> {run, min, max (arguments after the verb), what they are, the options it takes}
local VERBS = {
  take = { run = take, min = 1, max = 1, what = "ID", opts = { name = true, portable = true,
                                                             native = true } },
  ls = { run = ls, min = 0, max = 1, what = "ID" },
  rm = { run = rm, min = 1, max = math.huge, what = "CK" },
  restore = { run = restore, min = 2, max = 2, what = "CK ID" },
}
local ORDER = { "take", "ls", "rm", "restore" }

return {
  summary = "take, list, restore and delete checkpoints of sandboxes by durable id",
  usage = "sandlot checkpoint [take ID [--name NAME] [--portable | --native] | ls [ID] | " ..
          "rm CK... | restore CK ID] [--json]",
  args = { min = 1, max = math.huge, name = "a verb: take, ls, rm or restore" },
  options = {
    { "--name", arg = "NAME", summary = "take: a name for people (shown by ls)" },
    { "--portable", summary = "take: of the working area, even where the provider has " ..
                              "snapshots of its own (seeds any provider)" },
    { "--native", summary = "take: the provider's own snapshot, or fail (not_supported)" },
  },
  json = true,
  help = [[
ID is a sandbox's durable id (sb-..., from sandlot create or sandlot ps); CK a checkpoint id
(ck-..., printed by take and listed by ls). See README, "Checkpoints".

take ID: takes a checkpoint of the sandbox and prints its id: the provider's own snapshot
where it has one (caps.checkpoint "native": docker, e2b, daytona, vercel, sprites), else a
portable one (a tar.gz of the working area, kept under $XDG_STATE_HOME/sandlot/checkpoints).
--portable takes a portable one anyway; --native fails where the provider has no snapshots.

ls [ID]: lists the checkpoints, newest first (those of sandbox ID, which need not exist any
more): id, name, kind, provider, sandbox, age, archive size. A corrupt record is named on
stderr and left out (exit 1); the others are listed.

rm CK...: deletes checkpoints: a portable one's archive and record; a native one's snapshot
through its provider, then its record. Each id is tried; each removed one is printed.

restore CK ID: puts checkpoint CK back into sandbox ID and prints ID: a portable one's files
are written into its working area (any provider; files made since are kept); a native one
puts the sandbox it was taken of back as it was, where the provider can (sprites).

A new sandbox from a checkpoint is `sandlot create --provider P --from CK` (a native one seeds
only its own provider; another is not_supported, naming the fix: take --portable).
--json prints one JSON document: take, the record; ls, an array of records; rm,
[{id, removed, error?}]; restore, {checkpoint, sandbox, kind, restored}.
Exits 1 for an unknown or corrupt checkpoint, an unknown sandbox, what the provider cannot do
(not_supported, with the library's message) or any rm id not removed; 2 for a usage error.
]],
  run = function(o)
    local verb = o.args[1]
    local v = VERBS[verb]
    if not v then
      return cli.usage_error(me(), "unknown verb '%s'%s (take, ls, rm or restore)", verb,
                             cli.did_you_mean(require("sandlot._check").suggest(verb, ORDER)))
    end
    for _, k in ipairs({ "name", "portable", "native" }) do
      if o.opts[k] ~= nil and not (v.opts and v.opts[k]) then
        return cli.usage_error(me(), "--%s is an option of take, not of %s", k, verb)
      end
    end
    local n = #o.args - 1
    if n < v.min then
      local names = {}
      for w in v.what:gmatch("%S+") do names[#names + 1] = w end
      return cli.usage_error(me(), "%s: missing %s", verb,
                             table.concat(names, " ", math.min(n + 1, #names)))
    end
    if n > v.max then
      return cli.usage_error(me(), "%s: too many arguments (%s)", verb, v.what)
    end
    return v.run(o)
  end,
}
