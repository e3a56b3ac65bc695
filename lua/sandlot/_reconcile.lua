-- sandlot._reconcile: what `sandlot gc` does. Compares each provider's sandboxes (its `list`)
-- with the ledger and, unless it is a dry run, acts on the differences:
--   orphan   at the provider, but no ledger row, a row that says destroyed/error/lost, a row
--            now naming another sandbox (re-created), or a `creating` row whose host is dead
--            (or, on another machine, older than the grace period): destroyed;
--   ghost    active or stopped in the ledger but gone at the provider, or a `creating` row as
--            above with no sandbox: marked lost;
--   expired  recorded and present, but past its ttl, or idle past idle_timeout with no live
--            host watching it (the ledger's updated_at is its last activity): destroyed;
--   leftover what the provider's own gc removes (local: past create's timeout; docker: not
--            running or paused, or expired), run first.
local errors = require("sandlot.errors")
local ledger = require("sandlot.ledger")
local owner = require("sandlot._owner")

local M = {}

---Seconds a `creating` row of a host that is not known dead counts as in progress
---($SANDLOT_GC_GRACE overrides it).
M.GRACE = 600

local GONE = { destroyed = true, error = true, lost = true }

-- The provider references to look at: the one asked for, else every configured provider, every
-- provider a live record names, and "local".
local function references(only, rows)
  if only then return { only } end
  local seen, out = {}, {}
  local function add(ref)
    if type(ref) == "string" and not seen[ref] then seen[ref] = true; out[#out + 1] = ref end
  end
  local ok, cfg = pcall(require("sandlot.config").get)
  local names = {}
  for name in pairs(ok and type(cfg) == "table" and cfg.providers or {}) do
    names[#names + 1] = name
  end
  table.sort(names)
  for _, n in ipairs(names) do add(n) end
  for _, rec in ipairs(rows) do if not GONE[rec.state] then add(rec.provider) end end
  add("local")
  return out
end

local function grace()
  local v = tonumber(os.getenv("SANDLOT_GC_GRACE") or "")
  return (v and v >= 0) and v or M.GRACE
end

-- Whether a `creating` row is stale: its host is dead on this machine, or it is older than the
-- grace period and its host is not live.
local function stale_creating(l, rec, now, hosts)
  local h = rec.host_id and hosts[rec.host_id]
  if h == nil and rec.host_id then h = l:host(rec.host_id) or false; hosts[rec.host_id] = h end
  local live, why = owner.alive(h or nil, now)
  if live then return false, why end
  local me = ledger.this_host()
  if h and h.hostname == me.hostname then return true, "its host is dead: " .. why end
  if now - rec.created_at >= grace() then return true, "older than the grace period" end
  return false, "within the grace period"
end

local function host_live(l, rec, now, hosts)
  if not rec.host_id then return false end
  local h = hosts[rec.host_id]
  if h == nil then h = l:host(rec.host_id) or false; hosts[rec.host_id] = h end
  return (owner.alive(h or nil, now))
end

-- Looks at one provider's list; appends items to out.
local function compare(run, ref, _r, list)
  local l, now, out, hosts = run.l, run.now, run.items, run.hosts
  local listed, durable_seen = {}, {}
  for _, hd in ipairs(list) do
    listed[hd.id] = true
    local dur = type(hd.labels) == "table" and hd.labels[ledger.LABEL] or nil
    if dur then durable_seen[dur] = true end
    local rec = dur and run.byid[dur]
    local born = hd.created_at or (rec and rec.created_at) or now
    local item = { provider = ref, id = dur, external_id = hd.id, handle = hd,
                   age_s = now - born }
    if run.older_than and now - born < run.older_than then
      item = nil
    elseif type(hd.labels) == "table" and hd.labels["sandlot.keep"] == "1" then
      item = nil                                    -- kept by its label, as provider gc does
    elseif not dur then
      item.kind, item.reason = "orphan", "not journaled (no durable id label)"
    elseif not rec then
      item.kind, item.reason = "orphan", "no ledger row"
    elseif GONE[rec.state] then
      item.kind, item.reason = "orphan", "the ledger says " .. rec.state
    elseif rec.state == "creating" then
      local stale, why = stale_creating(l, rec, now, hosts)
      if stale then item.kind, item.reason = "orphan", "its create never finished (" .. why .. ")"
      else item = nil end
    elseif rec.external_id and rec.external_id ~= hd.id then
      item.kind, item.reason = "orphan", "re-created: the ledger's sandbox is " .. rec.external_id
    else
      local ttl, idle = tonumber(rec.opts.ttl), tonumber(rec.opts.idle_timeout)
      if ttl and now - rec.created_at >= ttl then
        item.kind, item.reason = "expired", ("ttl %gs passed"):format(ttl)
      elseif idle and now - rec.updated_at >= idle and not host_live(l, rec, now, hosts) then
        item.kind, item.reason = "expired", ("idle for %ds (idle_timeout %gs)")
          :format(now - rec.updated_at, idle)
      else
        item = nil
      end
    end
    if item then item.rec = rec; out[#out + 1] = item end
  end
  for _, rec in ipairs(run.rows) do
    if rec.provider == ref and not (run.older_than and now - rec.created_at < run.older_than) then
      local item
      local ttl = tonumber(rec.opts.ttl)
      if (rec.state == "active" or rec.state == "stopped") and
          not (rec.external_id and listed[rec.external_id]) then
        if ttl and now - rec.created_at >= ttl then   -- the provider ended it (its timeout)
          item = { kind = "expired", reason = ("ttl %gs passed (ended at the provider)")
                                                :format(ttl) }
        else
          item = { kind = "ghost", reason = "gone at the provider" }
        end
      elseif rec.state == "creating" and not durable_seen[rec.id] then
        local stale, why = stale_creating(l, rec, now, hosts)
        if stale then
          item = { kind = "ghost", reason = "its create never finished (" .. why .. ")" }
        end
      end
      if item then
        item.provider, item.id, item.external_id, item.rec = ref, rec.id, rec.external_id, rec
        item.age_s = now - rec.created_at
        out[#out + 1] = item
      end
    end
  end
end

-- Carries out one item (not in a dry run).
local function act(run, r, item)
  if item.kind == "ghost" then
    local ok, err = run.l:set_state(item.id, "lost", { event = "gc", note = item.reason })
    item.action, item.error = ok and "marked_lost" or "failed", not ok and tostring(err) or nil
    return
  end
  local ok, err = true, nil
  if item.handle then ok, err = r.p.ops.destroy(r.ctx, item.handle) end
  if not ok and errors.is(err, "not_found") then ok = true end
  if ok and item.rec and item.rec.state ~= "destroyed" then
    local jok, jerr = run.l:set_state(item.id, "destroyed", { event = "gc", note = item.reason })
    if not jok then err, ok = jerr, false end
  end
  item.action, item.error = ok and "destroyed" or "failed", not ok and tostring(err) or nil
end

---Runs the reconciliation. opts: provider (a reference; default every one, see references),
---older_than (seconds: only sandboxes and records older), yes (act; otherwise a dry run).
---@return table|nil report {dry_run, providers = {{provider, sandboxes?, error?, skipped?}},
---  items = {{kind, provider, id, external_id, reason, age_s, action, error?}}}
---@return sandlot.Error? err the ledger cannot be opened
function M.run(opts)
  local l, err = ledger.open()
  if not l then return nil, err end
  local rows
  rows, err = l:list({})
  if not rows then return nil, err end
  local run = { l = l, rows = rows, byid = {}, now = os.time(), hosts = {}, items = {},
                older_than = opts.older_than }
  for _, rec in ipairs(rows) do run.byid[rec.id] = rec end
  local report = { dry_run = not opts.yes, providers = {}, items = run.items }
  local sandbox = require("sandlot.sandbox")
  for _, ref in ipairs(references(opts.provider, rows)) do
    local pr = { provider = ref }
    report.providers[#report.providers + 1] = pr
    local r, rerr = sandbox._context(ref)
    if not r then
      pr.error = tostring(rerr)
    else
      local first = #run.items
      if r.p.caps.gc == "native" then
        -- the rule alone: its older_than and all would remove live, recorded sandboxes
        local gc, gerr = r.p.ops.gc(r.ctx, { dry_run = not opts.yes })
        if not gc then pr.error = tostring(gerr) end
        for _, x in ipairs(gc or {}) do
          if x.reason ~= "kept" then
            run.items[#run.items + 1] = { kind = "leftover", provider = ref,
              external_id = x.id, reason = x.reason .. (x.state and (" (" .. x.state .. ")") or ""),
              action = x.removed and "destroyed" or (opts.yes and "failed" or "would_destroy") }
          end
        end
      end
      if pr.error then
        -- the provider is unreachable: nothing to compare with
      elseif r.p.caps.list ~= "native" then
        pr.skipped = "it has no list operation"
      else
        local list, lerr = r.p.ops.list(r.ctx, {})
        if not list then pr.error = tostring(lerr)
        else
          pr.sandboxes = #list
          compare(run, ref, r, list)
          for i = first + 1, #run.items do
            local item = run.items[i]
            if item.kind ~= "leftover" then
              if opts.yes then act(run, r, item)
              else item.action = item.kind == "ghost" and "would_mark_lost" or "would_destroy" end
            end
          end
        end
      end
    end
  end
  for _, item in ipairs(run.items) do item.handle, item.rec = nil, nil end
  return report
end

return M
