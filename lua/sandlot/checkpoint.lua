-- sandlot.checkpoint: checkpoints of a sandbox's working area that restore into a new
-- sandbox, of the same provider or another. The portable kind, for every provider: the files
-- under the working directory (the root of relative paths), walked with ls and read_file
-- through the sandbox API and kept by the host as a gzip-compressed tar under
-- $XDG_STATE_HOME/sandlot/checkpoints/<id>.tar.gz, with a JSON record beside it (sha256, size,
-- provider, sandbox). Restore writes them back with mkdir and write_files (modes kept). A
-- provider's own layout (its `layout` field: mount points, system links) is left out, and so
-- are symlinks and special files, which the file API cannot recreate. Native checkpoints
-- (take{native = true}) are the provider's own snapshots, through its hooks `checkpoint`,
-- `restore` and `checkpoints` (see sandlot.provider): only a JSON record is kept here, and
-- they restore only into a new sandbox of the same provider (sandlot.create{from = ck}).
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
  if not f then return nil, errors.new("io_error", ("checkpoint: cannot write %s: %s"):format(tmp, err)) end
  local ok, werr = f:write(data)
  local cok = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, errors.new("io_error", ("checkpoint: cannot write %s: %s"):format(tmp, tostring(werr)))
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

-- A native checkpoint: the provider's snapshot, and a record {kind = "native", native =
-- {provider = its module name, id = the provider's snapshot id}} without an archive.
local function take_native(sb, opts, dir)
  local impl = sb._p and sb._p.impl or {}
  if not impl.checkpoint then
    return nil, errors.new("not_supported", ("checkpoint: provider %s has no native " ..
      "checkpoints (leave out native = true for a portable one)"):format(tostring(sb.provider)),
      { op = "checkpoint" })
  end
  local snap, err = require("sandlot.sandbox")._call(sb, "checkpoint", { name = opts.name })
  if not snap then return nil, err end
  if type(snap) ~= "table" or type(snap.id) ~= "string" then
    return nil, errors.new("internal", "checkpoint: the provider's checkpoint gave no id")
  end
  local ok, merr = mkdirs(dir)
  if not ok then return nil, merr end
  local rec = { id = "ck-" .. id.hex(8), name = opts.name, provider = sb.provider,
                sandbox = sb.durable_id or sb.id, kind = "native", created_at = os.time(),
                size = math.tointeger(snap.size), native = { provider = sb._p.name, id = snap.id } }
  local wok, werr = write(dir .. "/" .. rec.id .. ".json", json.encode(rec))
  if not wok then return nil, werr end
  return public(rec)
end

---Takes a checkpoint of sb's working area: {id, name, provider, sandbox, kind = "portable",
---created_at, size, sha256}. With opts.native, the provider's own snapshot instead (kind =
---"native", not_supported where the provider has none; Vercel stops the session to take one).
---@param sb sandlot.Sandbox
---@param opts? {name?: string, native?: boolean}
---@return table|nil checkpoint, sandlot.Error? err
function M.take(sb, opts)
  opts = opts or {}
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error("checkpoint: opts.name must be a string", 2)
  end
  if opts.native ~= nil and type(opts.native) ~= "boolean" then
    error("checkpoint: opts.native must be a boolean", 2)
  end
  local dir, derr = M.dir()
  if not dir then return nil, derr end
  if opts.native then return take_native(sb, opts, dir) end
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
  wok, werr = write(dir .. "/" .. rec.id .. ".json", json.encode(rec))
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
  local path = dir .. "/" .. ck_id .. ".json"
  local text = read(path)
  if not text then return nil, errors.new("not_found", ("no checkpoint %s in %s"):format(ck_id, dir)) end
  local ok, rec = pcall(json.decode, text)
  if not ok or type(rec) ~= "table" or rec.id ~= ck_id then
    return nil, errors.new("invalid_input", ("checkpoint record %s is corrupt; it was left as it is")
      :format(path), { file = path })
  end
  return rec
end

---Lists checkpoints, newest first: all of them, or those taken of sb. With opts.native, the
---provider's own list of sb's snapshots instead ({id, size, created_at}; not_supported where
---the provider has none).
---@param sb? sandlot.Sandbox
---@param opts? {native?: boolean}
---@return table[]|nil list, sandlot.Error? err
function M.list(sb, opts)
  if opts and opts.native then
    if not (sb and sb._p and sb._p.impl.checkpoints) then
      return nil, errors.new("not_supported", "checkpoints: no native checkpoints to list here")
    end
    return require("sandlot.sandbox")._call(sb, "checkpoints")
  end
  local dir, derr = M.dir()
  if not dir then return nil, derr end
  local out = {}
  local root = fs.root and fs.stat(dir) and fs.root(dir)
  if not root then return out end
  local entries = root:readdir("") or {}
  root:close()
  for _, e in ipairs(entries) do
    local cid = e.name:match("^(ck%-%x+)%.json$")
    if cid then
      local rec = M.get(cid)
      if rec and (not sb or rec.sandbox == (sb.durable_id or sb.id)) then out[#out + 1] = rec end
    end
  end
  table.sort(out, function(a, b)
    if a.created_at ~= b.created_at then return a.created_at > b.created_at end
    return a.id > b.id
  end)
  return out
end

---Unpacks checkpoint ck (a record or an id) into sb's working area.
---@param sb sandlot.Sandbox
---@param ck table|string
---@return true|nil ok, sandlot.Error? err
function M.restore(sb, ck)
  local rec, err = M.get(type(ck) == "table" and ck.id or ck)
  if not rec then return nil, err end
  if rec.kind == "native" then              -- made at create time (sandlot.create{from =})
    return nil, errors.new("invalid_input", ("checkpoint %s is native: it restores only " ..
      "through sandlot.create{from = ...} on its provider"):format(rec.id))
  end
  local dir = assert(M.dir())
  local path = dir .. "/" .. rec.id .. ".tar.gz"
  local data = read(path)
  if not data then
    return nil, errors.new("not_found", ("checkpoint %s: its archive %s is missing"):format(rec.id, path),
                           { file = path })
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
