-- sandlot.checkpoint: checkpoints of a sandbox. The portable kind, for every provider: the
-- files under the working directory (the root of relative paths), walked with ls and read_file
-- through the sandbox API and kept by the host as a gzip-compressed tar under
-- $XDG_STATE_HOME/sandlot/checkpoints/<id>.tar.gz; restore writes them back with mkdir and
-- write_files (modes kept), into a new sandbox of the same provider or another. A provider's
-- own layout (its `layout` field: mount points, system links) is left out, and so are symlinks
-- and special files, which the file API cannot recreate.
-- Native checkpoints: a provider with the checkpoint and checkpoints operations
-- (caps.checkpoint = "native") keeps its own snapshot of the whole sandbox; take records it
-- ({kind = "native", native_id}, no archive). It comes back in place (the provider's
-- `restore`: sprites) or as a new sandbox of the same provider (`create_from`, through
-- sandlot.create(p, {from = ck}): docker, e2b, daytona, vercel); caps.restore says which.
-- Another provider cannot use it (not_supported); {kind = "portable"} seeds any provider.
-- Records: a row of the ledger's checkpoints table, or with the ledger off (SANDLOT_LEDGER=off)
-- a JSON file <id>.json beside the archives; both are read, so the records of an older sandlot
-- (files) are kept.
local errors = require("sandlot.errors")
local id = require("sandlot.id")
local sys = require("sandlot.core.sys")
local json = require("sandlot.wire.json")
local fs = require("sandlot.fs")
local tar = require("sandlot.wire.tar")

local M = {}

M.MAX_BYTES = 1024 * 1024 * 1024      -- the largest archive taken (kept whole in memory once)
M.TIMEOUT = 600                       -- seconds for the tar in the sandbox, either way

local ID = "^ck%-%x+$"

---The directory checkpoints are kept in: $XDG_STATE_HOME/sandlot/checkpoints.
---@return string|nil dir, sandlot.Error? err
function M.dir()
  local ledger_path = require("sandlot.ledger").path()
  if not ledger_path then
    return nil, errors.new("invalid_input", "checkpoint: neither XDG_STATE_HOME nor HOME is set")
  end
  return (ledger_path:gsub("/ledger%.db$", "")) .. "/checkpoints"
end

local function mkdirs(path)
  local acc = ""
  for part in path:gmatch("[^/]+") do
    acc = acc .. "/" .. part
    local st = fs.stat(acc)
    if not st then
      local ok, err = fs.mkdir(acc, tonumber("700", 8))
      if not ok and not fs.stat(acc) then return nil, err end
    end
  end
  return true
end

local function write(path, data)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then
    return nil, errors.new("io_error", ("checkpoint: cannot write %s: %s"):format(tmp, err))
  end
  local ok, werr = f:write(data)
  local cok = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, errors.new("io_error",
                           ("checkpoint: cannot write %s: %s"):format(tmp, tostring(werr)))
  end
  assert(fs.chmod(tmp, tonumber("600", 8)))
  local rok, rerr = os.rename(tmp, path)
  if not rok then return nil, errors.new("io_error", "checkpoint: " .. tostring(rerr)) end
  return true
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function public(rec)
  local out = {}
  for k, v in pairs(rec) do out[k] = v end
  return out
end

local function native(sb)
  return sb._p and sb._p.caps and sb._p.caps.checkpoint == "native"
end

-- Records: the ledger when it is on (nil when off), else JSON files.
local function ledger()
  local l = require("sandlot.ledger")
  if not l.enabled() then return nil end
  local led, err = l.open()
  if not led then return false, err end
  return led
end

local function save(dir, rec)
  local l, lerr = ledger()
  if l then return l:ck_put(rec) end
  if l == false then return nil, lerr end
  local ok, merr = mkdirs(dir)
  if not ok then return nil, merr end
  return write(dir .. "/" .. rec.id .. ".json", json.encode(rec))
end

local function drop(dir, ck_id)
  local l, lerr = ledger()
  if l == false then return nil, lerr end
  if l then
    local ok, err = l:ck_del(ck_id)
    if not ok then return nil, err end
  end
  os.remove(dir .. "/" .. ck_id .. ".json")
  return true
end

-- A native checkpoint: the provider's own, recorded beside the portable ones.
local function take_native(sb, opts, dir)
  local c, err = require("sandlot.sandbox")._call(sb, "checkpoint", { comment = opts.name })
  if not c then return nil, err end
  if type(c) ~= "table" or type(c.id) ~= "string" then
    return nil, errors.new("bad_response", "checkpoint: the provider gave no checkpoint id",
                           { op = "checkpoint" })
  end
  local rec = {
    id = "ck-" .. id.hex(8), name = opts.name, provider = sb.provider, module = sb._p.name,
    sandbox = sb.durable_id or sb.id, sandbox_id = sb.id, kind = "native", native_id = c.id,
    restore = sb._p.caps.restore, created_at = math.tointeger(c.created_at) or os.time(),
  }
  local wok, werr = save(dir, rec)
  if not wok then return nil, werr end
  return public(rec)
end

---Takes a checkpoint of sb: native where the provider has its own (caps.checkpoint =
---"native": {id, name, provider, module, sandbox, sandbox_id, kind = "native", native_id,
---restore = caps.restore, created_at}), else of its working area ({id, name, provider,
---sandbox, kind = "portable", created_at, size, sha256}). The record goes to the ledger (a
---JSON file with SANDLOT_LEDGER=off).
---@param sb sandlot.Sandbox
---@param opts? {name?: string, kind?: "native"|"portable"}
---@return table|nil checkpoint, sandlot.Error? err
function M.take(sb, opts)
  opts = opts or {}
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error("checkpoint: opts.name must be a string", 2)
  end
  if opts.kind ~= nil and opts.kind ~= "native" and opts.kind ~= "portable" then
    error('checkpoint: opts.kind must be "native" or "portable"', 2)
  end
  local dir, derr = M.dir()
  if not dir then return nil, derr end
  if opts.kind ~= "portable" and native(sb) then return take_native(sb, opts, dir) end
  if opts.kind == "native" then
    return nil, errors.new("not_supported", ("checkpoint: %s has no native checkpoints")
      :format(tostring(sb.provider)), { op = "checkpoint" })
  end
  local entries, skipped, total, nfiles = {}, {}, 0, 0
  local layout = {}
  for _, n in ipairs((sb._p and sb._p.impl and sb._p.impl.layout) or {}) do layout[n] = true end
  local function walk(rel, depth)
    if depth > 64 then return nil, errors.new("invalid_input", "checkpoint: directories nested " ..
                                              "deeper than 64 levels at " .. rel) end
    local list, lerr = sb:ls(rel == "" and "." or rel)
    if not list then return nil, errors.wrap(lerr, { op = "checkpoint" }) end
    table.sort(list, function(a, b) return a.name < b.name end)
    for _, e in ipairs(list) do
      local path = rel == "" and e.name or (rel .. "/" .. e.name)
      if rel == "" and layout[e.name] then                 -- the provider's own
      elseif e.type == "directory" then
        entries[#entries + 1] = { name = path, type = "directory", mode = e.mode }
        local ok, werr = walk(path, depth + 1)
        if not ok then return nil, werr end
      elseif e.type == "file" then
        local data, rerr = sb:read_file(path)
        if not data then return nil, errors.wrap(rerr, { op = "checkpoint" }) end
        total = total + #data
        if total > M.MAX_BYTES then
          return nil, errors.new("invalid_input", ("checkpoint: the working area holds more " ..
            "than %d bytes (checkpoint.MAX_BYTES)"):format(M.MAX_BYTES), { op = "checkpoint" })
        end
        entries[#entries + 1] = { name = path, type = "file", data = data, mode = e.mode }
        nfiles = nfiles + 1
      else
        skipped[#skipped + 1] = path                       -- symlinks, sockets, devices
      end
    end
    return true
  end
  local ok0, werr0 = walk("", 0)
  if not ok0 then return nil, werr0 end
  local pieces = tar.archive(entries, { gzip = true })
  local archive = table.concat(pieces)
  local r = { stdout = archive }
  local ok, merr = mkdirs(dir)
  if not ok then return nil, merr end
  local rec = {
    id = "ck-" .. id.hex(8), name = opts.name, provider = sb.provider,
    sandbox = sb.durable_id or sb.id, kind = "portable", created_at = os.time(),
    size = #r.stdout, sha256 = sys.sha256(r.stdout), files = nfiles, bytes = total,
    skipped = #skipped > 0 and skipped or nil,
  }
  local wok, werr = write(dir .. "/" .. rec.id .. ".tar.gz", r.stdout)
  if not wok then return nil, werr end
  wok, werr = save(dir, rec)
  if not wok then
    os.remove(dir .. "/" .. rec.id .. ".tar.gz")
    return nil, werr
  end
  return public(rec)
end

---Returns a checkpoint's record by id, or nil, err (not_found; invalid_input for a record
---that is not one, naming the file).
---@param ck_id string
---@return table|nil checkpoint, sandlot.Error? err
function M.get(ck_id)
  if type(ck_id) ~= "string" or not ck_id:match(ID) then
    return nil, errors.new("invalid_input", ("checkpoint: %q is not a checkpoint id (ck-...)")
      :format(tostring(ck_id):sub(1, 40)))
  end
  local dir, derr = M.dir()
  if not dir then return nil, derr end
  local l, lerr = ledger()
  if l == false then return nil, lerr end
  if l then
    local rec, err = l:ck_get(ck_id)
    if rec then return rec end
    if rec == nil then return nil, err end
  end
  local path = dir .. "/" .. ck_id .. ".json"          -- with the ledger off, or from before it
  local text = read(path)
  if not text then
    return nil, errors.new("not_found", ("no checkpoint %s in %s"):format(ck_id, dir))
  end
  local ok, rec = pcall(json.decode, text)
  if not ok or type(rec) ~= "table" or rec.id ~= ck_id then
    return nil, errors.new("invalid_input",
      ("checkpoint record %s is corrupt; it was left as it is"):format(path), { file = path })
  end
  return rec
end

---Lists checkpoints, newest first: all of them, or those taken of sb (a sandbox, or its
---durable id: the sandbox need not exist any more). A corrupt record (a ledger row or file that
---is not one) is left out of the list and named in the third value, an array of invalid_input
---errors, each naming the ledger or the file; it is left as it is.
---@param sb? sandlot.Sandbox|string
---@return table[]|nil list, sandlot.Error? err, sandlot.Error[]? corrupt
function M.list(sb)
  local dir, derr = M.dir()
  if not dir then return nil, derr end
  local key = sb
  if type(sb) == "table" then key = sb.durable_id or sb.id end
  if key ~= nil and type(key) ~= "string" then
    error("checkpoints: a sandbox or its durable id expected, got " .. type(key), 2)
  end
  local out, seen, bad = {}, {}, {}
  local l, lerr = ledger()
  if l == false then return nil, lerr end
  if l then
    local list, err = l:ck_list(key)
    if not list then return nil, err end
    for _, rec in ipairs(list) do out[#out + 1], seen[rec.id] = rec, true end
    for _, row in ipairs(l.db:ck_list(key) or {}) do          -- the rows ck_list left out
      if not seen[row.id] then
        local _, cerr = l:ck_get(row.id)
        if cerr then bad[#bad + 1] = cerr end
        seen[row.id] = true
      end
    end
  end
  local root = fs.root and fs.stat(dir) and fs.root(dir)
  local entries = root and root:readdir("") or {}
  if root then root:close() end
  table.sort(entries, function(a, b) return a.name < b.name end)
  for _, e in ipairs(entries) do
    local cid = e.name:match("^(ck%-%x+)%.json$")
    if cid and not seen[cid] then
      local path = dir .. "/" .. e.name
      local text = read(path)
      local ok, rec = pcall(json.decode, text or "")
      if ok and type(rec) == "table" and rec.id == cid then
        if not key or rec.sandbox == key then out[#out + 1] = rec end
      else                                        -- its sandbox is unknown: named either way
        bad[#bad + 1] = errors.new("invalid_input", ("checkpoint record %s is corrupt; it was " ..
          "left as it is"):format(path), { file = path, checkpoint = cid })
      end
    end
  end
  table.sort(out, function(a, b)
    if a.created_at ~= b.created_at then return a.created_at > b.created_at end
    return a.id > b.id
  end)
  return out, nil, #bad > 0 and bad or nil
end

---Lists the provider's own checkpoints of sb (caps.checkpoint = "native"), newest first:
---{native_id, created_at, comment, kind = "native", provider, module, sandbox_id}, each usable
---as a checkpoint: M.restore(sb, it) in place, or sandlot.create(provider, {from = it}).
---@param sb sandlot.Sandbox
---@return table[]|nil list, sandlot.Error? err
function M.native(sb)
  if not native(sb) then
    return nil, errors.new("not_supported", ("checkpoint: %s has no native checkpoints")
      :format(tostring(sb.provider)), { op = "checkpoints" })
  end
  local list, err = require("sandlot.sandbox")._call(sb, "checkpoints")
  if not list then return nil, err end
  local out = {}
  for i, c in ipairs(list) do
    out[i] = { native_id = c.id, created_at = c.created_at, comment = c.comment,
               kind = "native", provider = sb.provider, module = sb._p.name,
               sandbox_id = sb.id, restore = sb._p.caps.restore }
  end
  return out
end

-- A native checkpoint as given: one of M.native's entries (no id), or a record (by id).
local function native_entry(ck)
  if type(ck) == "table" and ck.kind == "native" and ck.id == nil then
    if type(ck.native_id) ~= "string" or type(ck.provider) ~= "string" then
      error("checkpoint: a native checkpoint needs native_id and provider", 3)
    end
    return ck
  end
end

local function name_of(rec)
  return rec.id or ("native " .. tostring(rec.native_id))
end

-- Another provider cannot use a native checkpoint; the fix is a portable one.
local function foreign(rec, to, op)
  return nil, errors.new("not_supported", ("checkpoint %s is %s's own snapshot: it seeds only " ..
    "%s sandboxes, not %s ones (take sb:checkpoint{kind = \"portable\"} to seed any " ..
    "provider)"):format(name_of(rec), tostring(rec.module or rec.provider),
    tostring(rec.module or rec.provider), tostring(to)), { op = op })
end

local function restore_native(sb, rec)
  if (rec.module or rec.provider) ~= sb._p.name and rec.provider ~= sb.provider then
    return foreign(rec, sb._p.name, "restore")
  end
  if not sb._p.impl.restore then
    return nil, errors.new("not_supported", ("checkpoint %s: %s restores a snapshot into a " ..
      "new sandbox, not in place: sandlot.create(%q, {from = ck})"):format(name_of(rec),
      sb._p.name, tostring(sb.provider)), { op = "restore" })
  end
  if rec.sandbox_id ~= sb.id then
    return nil, errors.new("not_supported", ("checkpoint %s is %s's own snapshot of sandbox "
      .. "%s: it restores in place only into that sandbox (%s; take {kind = \"portable\"} to " ..
      "seed others)"):format(name_of(rec), tostring(rec.provider), tostring(rec.sandbox_id),
      sb._p.impl.create_from and "or sandlot.create(provider, {from = ck}) makes a new one"
      or "this provider makes no new sandbox from one"), { op = "restore" })
  end
  local ok, err = require("sandlot.sandbox")._call(sb, "restore", rec.native_id)
  if not ok then return nil, errors.wrap(err, { op = "restore" }) end
  return true
end

---For sandlot.create(p, {from = ck}): the checkpoint's record and whether the provider makes
---the sandbox from it (native: create_from) -> rec, native | nil, err (not_found,
---invalid_input, not_supported for a native checkpoint of another provider or of a provider
---that restores only in place). Nothing is created.
---@param ck table|string
---@param p table the completed provider (sandlot.provider.complete)
function M._plan(ck, p)
  local rec = native_entry(ck)
  if not rec then
    local err
    rec, err = M.get(type(ck) == "table" and ck.id or ck)
    if not rec then return nil, err end
  end
  if rec.kind ~= "native" then return rec, false end
  if (rec.module or rec.provider) ~= p.name then return foreign(rec, p.name, "create") end
  if not p.impl.create_from then
    return nil, errors.new("not_supported", ("checkpoint %s: %s restores its snapshots in " ..
      "place, into the sandbox they were taken of (sandlot.checkpoint.restore(sb, ck) on %s); " ..
      "take sb:checkpoint{kind = \"portable\"} to seed new sandboxes"):format(name_of(rec),
      p.name, tostring(rec.sandbox_id)), { op = "create" })
  end
  return rec, true
end

---Deletes a checkpoint (a record, an id, or an entry of M.native): a portable one's archive and
---record; a native one through the provider (its delete_checkpoint; not_supported without),
---then its record. A snapshot the provider no longer has is deleted all the same.
---@param ck table|string
---@return true|nil ok, sandlot.Error? err
function M.delete(ck)
  local rec = native_entry(ck)
  if not rec then
    local err
    rec, err = M.get(type(ck) == "table" and ck.id or ck)
    if not rec then return nil, err end
  end
  local dir = assert(M.dir())
  if rec.kind == "native" then
    local r, rerr = require("sandlot.sandbox")._context(rec.provider)
    if not r then return nil, errors.wrap(rerr, { op = "delete_checkpoint" }) end
    if not r.p.impl.delete_checkpoint then
      return nil, errors.new("not_supported", ("checkpoint %s: %s cannot delete its snapshots " ..
        "through sandlot; the record is kept"):format(name_of(rec), r.p.name),
        { op = "delete_checkpoint" })
    end
    local ok, err = r.p.ops.delete_checkpoint(r.ctx, rec.native_id)
    if not ok and not errors.is(err, "not_found") then
      return nil, errors.wrap(err, { op = "delete_checkpoint", provider = rec.provider })
    end
  else
    os.remove(dir .. "/" .. rec.id .. ".tar.gz")
  end
  if rec.id then return drop(dir, rec.id) end
  return true
end

---Restores checkpoint ck (a record or an id): a portable one is unpacked into sb's working
---area; a native one puts sb (the sandbox it was taken of) back to it, in place, where the
---provider can (caps.restore "in_place" or "both"; else not_supported: create{from = ck}).
---@param sb sandlot.Sandbox
---@param ck table|string
---@return true|nil ok, sandlot.Error? err
function M.restore(sb, ck)
  local entry = native_entry(ck)                         -- from M.native
  if entry then return restore_native(sb, entry) end
  local rec, err = M.get(type(ck) == "table" and ck.id or ck)
  if not rec then return nil, err end
  if rec.kind == "native" then return restore_native(sb, rec) end
  local dir = assert(M.dir())
  local path = dir .. "/" .. rec.id .. ".tar.gz"
  local data = read(path)
  if not data then
    return nil, errors.new("not_found",
      ("checkpoint %s: its archive %s is missing"):format(rec.id, path), { file = path })
  end
  if #data ~= rec.size or sys.sha256(data) ~= rec.sha256 then
    return nil, errors.new("invalid_input", ("checkpoint %s: the archive %s is corrupt (its " ..
      "size or sha256 differs from the record); it was left as it is"):format(rec.id, path),
      { file = path })
  end
  local entries, terr = tar.list(data, { gzip = true, max_size = 4 * M.MAX_BYTES })
  if not entries then
    return nil, errors.new("invalid_input", ("checkpoint %s: the archive %s cannot be read: %s")
      :format(rec.id, path, terr.message), { file = path })
  end
  local files = {}
  for _, e in ipairs(entries) do
    local name = e.name:gsub("/+$", "")
    if e.type == "directory" then
      local ok, merr = sb:mkdir(name, { parents = true })
      if not ok and not errors.is(merr, "already_exists") then
        return nil, errors.wrap(merr, { op = "restore" })
      end
    elseif e.type == "file" then
      files[#files + 1] = { path = name, data = e.data, mode = e.mode }
    end
  end
  if #files > 0 then
    local ok, werr = sb:write_files(files)
    if not ok then return nil, errors.wrap(werr, { op = "restore" }) end
  end
  return true
end

return M
