-- sandlot.ledger: the durable record of every sandbox this machine's hosts create, so that a
-- sandbox outlives the process that made it (reconnect by durable id, `sandlot ps`). Owns the
-- ledger's location, the on/off switch, the record format (JSON columns, redaction) and the
-- interface callers use; the storage is a backend (sandlot.ledger.sqlite; PostgreSQL later)
-- that only stores and fetches rows.
local errors = require("sandlot.errors")
local redact = require("sandlot._redact")
local json = require("sandlot.wire.json")
local ids = require("sandlot.id")

local M = {}

---The states a record goes through.
M.STATES = { creating = true, active = true, stopped = true, destroyed = true, error = true,
             lost = true }

---The label that carries the durable id onto the provider's sandbox.
M.LABEL = "sandlot.durable_id"

---Returns the ledger file: $XDG_STATE_HOME/sandlot/ledger.db (default ~/.local/state), or nil
---when neither XDG_STATE_HOME nor HOME is set.
---@return string|nil path
function M.path()
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.local/state"
  end
  return base .. "/sandlot/ledger.db"
end

local OFF = { off = true, ["0"] = true, ["false"] = true, no = true }

---Tells whether sandboxes are journaled: off with SANDLOT_LEDGER=off (or 0, false, no) or
---`ledger = false` in the config.
---@return boolean
function M.enabled()
  local v = os.getenv("SANDLOT_LEDGER")
  if v and OFF[v:lower()] then return false end
  local ok, cfg = pcall(function() return require("sandlot.config").get() end)
  if ok and type(cfg) == "table" and cfg.ledger == false then return false end
  return true
end

---Returns a new durable sandbox id: "sb-" and 16 hex digits.
---@return string
function M.new_id()
  return "sb-" .. ids.hex(8)
end

local host

---This process as a ledger host: {id, hostname, pid, started_at}, made once per process.
---@return table host
function M.this_host()
  if host then return host end
  local sys = require("sandlot.core.sys")
  local hostname
  local f = io.open("/proc/sys/kernel/hostname", "rb")
  if f then hostname = (f:read("l") or ""):gsub("%s+$", ""); f:close() end
  host = { id = "h-" .. ids.hex(6), hostname = hostname, pid = sys.getpid(),
           started_at = os.time() }
  return host
end
local this_host = M.this_host

-- Values that can be stored: JSON-safe copies, functions and userdata dropped.
local function storable(v, depth)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    return v
  end
  if t ~= "table" or depth > 8 then return nil end
  local out, n, strs = {}, 0, 0
  for k, x in pairs(v) do
    if type(k) == "string" or math.type(k) == "integer" then
      local s = storable(x, depth + 1)
      if s ~= nil then
        out[k] = s
        n = n + 1
        if type(k) == "string" then strs = strs + 1 end
      end
    end
  end
  if strs > 0 and strs < n then                  -- mixed keys: keep the named ones
    for k in pairs(out) do if type(k) ~= "string" then out[k] = nil end end
  end
  return out
end

local function encode(v)
  if v == nil then return nil end
  local ok, s = pcall(json.encode, storable(v, 0))
  return ok and s or nil
end

local function decode(s)
  if type(s) ~= "string" then return nil end
  local ok, v = pcall(json.decode, s)
  return ok and v or nil
end

---Returns create options as the ledger stores them: secret-named keys redacted, env values
---whose names look secret (API_TOKEN, DB_PASSWORD) redacted, functions dropped.
---@param opts table
---@return table
function M.redact_opts(opts)
  local o = {}
  for k, v in pairs(opts) do if k ~= "provider" then o[k] = v end end
  local env = o.env
  o = redact.scrub(o)
  if type(env) == "table" then
    local e = {}
    for k, v in pairs(env) do
      e[k] = (redact.is_secret_name(k) and v ~= false) and redact.MARK or redact.text(tostring(v))
    end
    o.env = e
  end
  return storable(o, 0) or {}
end

---Returns a structured error as the ledger stores it: code, message, retryable and the
---scalar context fields, scrubbed.
---@param err any
---@return table
function M.redact_error(err)
  if not errors.is(err) then return { code = "internal", message = redact.text(tostring(err)) } end
  local out = {}
  for k, v in pairs(err) do
    local t = type(v)
    if type(k) == "string" and k ~= "traceback" and (t == "string" or t == "number"
        or t == "boolean") then
      out[k] = v
    end
  end
  if errors.is(err.cause) then out.cause = M.redact_error(err.cause) end
  return redact.scrub(out)
end

-- Records --------------------------------------------------------------------------------------

---@class sandlot.LedgerRecord
---@field id string durable id
---@field provider string provider reference
---@field module string|nil provider module name
---@field external_id string|nil the provider's own id
---@field handle table|nil the handle as to_map stores it
---@field state string creating|active|stopped|destroyed|error|lost
---@field opts table create options without secrets
---@field host_id string|nil
---@field name string|nil
---@field purpose string|nil
---@field labels table
---@field error table|nil
---@field created_at integer
---@field updated_at integer
---@field ended_at integer|nil

local function record_of(row)
  return {
    id = row.id, provider = row.provider, module = row.module, external_id = row.external_id,
    handle = decode(row.handle), state = row.state, opts = decode(row.opts) or {},
    host_id = row.host_id, name = row.name, purpose = row.purpose,
    labels = decode(row.labels) or {}, error = decode(row.error),
    created_at = row.created_at, updated_at = row.updated_at, ended_at = row.ended_at,
  }
end

local Ledger = {}
Ledger.__index = Ledger

local function fail(self, err, what)
  if errors.is(err) and err.file then return nil, err end
  return nil, errors.new(errors.is(err) and err.code or "internal",
    ("ledger %s: %s: %s"):format(self.path, what, errors.is(err) and err.message
                                                  or tostring(err)),
    { file = self.path, cause = errors.is(err) and err or nil })
end

-- Adds this host to the hosts table once per ledger.
local function ensure_host(self)
  if self._host_added then return true end
  local ok, err = self.db:add_host(this_host())
  if not ok then return fail(self, err, "record host") end
  self._host_added = true
  return true
end

---Writes the `creating` row of a sandbox about to be created. rec: id, provider, module,
---opts (redacted here), name, purpose, labels.
---@return string|nil id, sandlot.Error? err io_error (full disk, ...), unavailable (locked)
function Ledger:record(rec)
  local h = this_host()
  local hok, herr = ensure_host(self)
  if not hok then return nil, herr end
  local now = os.time()
  local row = {
    id = rec.id or M.new_id(), provider = rec.provider, module = rec.module,
    state = "creating", opts = encode(M.redact_opts(rec.opts or {})), host_id = h.id,
    name = rec.name, purpose = rec.purpose, labels = encode(rec.labels or {}),
    created_at = now, updated_at = now,
  }
  local ok, err = self.db:insert(row, { kind = "state", data = encode({ to = "creating" }) })
  if not ok then return fail(self, err, "record " .. row.id) end
  return row.id
end

---Moves a record to `state`. fields: external_id, handle (table), error (any error: stored
---redacted), event (the event's kind, default "state"), note (a string kept on the event).
---@return true|nil ok, sandlot.Error? err not_found (no such record), io_error, unavailable
function Ledger:set_state(id, state, fields)
  if not M.STATES[state] then error("ledger: unknown state " .. tostring(state), 2) end
  fields = fields or {}
  local now = os.time()
  local cols = { state = state, updated_at = now }
  if fields.external_id ~= nil then cols.external_id = fields.external_id end
  if fields.handle ~= nil then cols.handle = encode(redact.redact(fields.handle, 16)) end
  local data = { to = state, note = fields.note }
  if fields.error ~= nil then
    local e = M.redact_error(fields.error)
    cols.error = encode(e)
    data.error = e.code
  elseif state == "active" then
    cols.error = false
  end
  if state == "destroyed" then cols.ended_at = now end
  local ok, err = self.db:update(id, cols, { kind = fields.event or "state",
                                              data = encode(data) })
  if not ok then return fail(self, err, "set " .. id .. " " .. state) end
  return true
end

---Makes this host the owner of a record (sandlot.get after the owner's end, or a take).
---@return true|nil ok, sandlot.Error? err
function Ledger:claim(id, from)
  local hok, herr = ensure_host(self)
  if not hok then return nil, herr end
  local ok, err = self.db:update(id, { host_id = this_host().id, updated_at = os.time() },
    { kind = "claim", data = encode({ from = from, to = this_host().id }) })
  if not ok then return fail(self, err, "claim " .. id) end
  return true
end

---Records activity on a record (updated_at = now, no event): what `sandlot gc` reads for
---idle_timeout once no host watches the sandbox.
function Ledger:touch(id, at)
  local ok, err = self.db:update(id, { updated_at = at or os.time() })
  if not ok then return fail(self, err, "touch " .. id) end
  return true
end

---Returns a host row {id, hostname, pid, started_at, seen_at (its latest journal write)}, or
---nil when the ledger does not know it.
function Ledger:host(id)
  local row, err = self.db:host(id)
  if row == nil and err then return fail(self, err, "host " .. tostring(id)) end
  return row or nil
end

---Returns one record by durable id.
---@return sandlot.LedgerRecord|nil rec, sandlot.Error? err not_found
function Ledger:get(id)
  local row, err = self.db:get(id)
  if not row then
    if errors.is(err, "not_found") then return nil, err end
    return fail(self, err, "get " .. tostring(id))
  end
  return record_of(row)
end

local function label_filter(label)
  if label == nil then return nil end
  if type(label) == "string" then
    local k, v = label:match("^([^=]+)=(.*)$")
    if k then return { [k] = v } end
    return { [label] = true }
  end
  return label
end

local function has_labels(rec, want)
  for k, v in pairs(want) do
    local got = rec.labels[k]
    if got == nil or (v ~= true and tostring(got) ~= tostring(v)) then return false end
  end
  return true
end

---Lists records, newest first. filter: state (string or list), provider (reference), label
---("k=v", "k" or {k = v}), limit.
---@return sandlot.LedgerRecord[]|nil list, sandlot.Error? err
function Ledger:list(filter)
  filter = filter or {}
  local rows, err = self.db:list({ state = filter.state, provider = filter.provider,
                                   limit = filter.label == nil and filter.limit or nil })
  if not rows then return fail(self, err, "list") end
  local want = label_filter(filter.label)
  local out = {}
  for _, row in ipairs(rows) do
    local rec = record_of(row)
    if not want or has_labels(rec, want) then out[#out + 1] = rec end
    if filter.limit and #out >= filter.limit then break end
  end
  return out
end

---Returns a record's events in order: {seq, at, kind, data = table}.
function Ledger:events(id)
  local rows, err = self.db:events(id)
  if not rows then return fail(self, err, "events " .. tostring(id)) end
  for _, r in ipairs(rows) do r.data = decode(r.data) end
  return rows
end

---Returns this process as a ledger host {id, hostname, pid, started_at}, recorded once.
---@return table|nil host, sandlot.Error? err
function Ledger:own_host()
  local h = this_host()
  if not self._host_added then
    local ok, err = self.db:add_host(h)
    if not ok then return fail(self, err, "record host") end
    self._host_added = true
  end
  return h
end

---Tells whether the host `id` is a live process of this machine (its pid runs and is not a
---zombie); false for an unknown host, nil for one on another machine.
function Ledger:host_alive(id)
  if id == this_host().id then return true end
  local row = self.db:host_get(id)
  if not row then return false end
  if row.hostname ~= this_host().hostname then return nil end
  local f = io.open(("/proc/%d/stat"):format(math.tointeger(row.pid) or -1))
  if not f then return false end
  local st = f:read("a"):match("%) (%a)")
  f:close()
  return st ~= nil and st ~= "Z"
end

-- Checkpoint records (sandlot.checkpoint owns their shape; the ledger stores them whole).

---Stores a checkpoint record (a table with id, kind, created_at; provider, sandbox, native_id).
---@return true|nil ok, sandlot.Error? err already_exists, io_error, unavailable
function Ledger:ck_put(rec)
  local text = encode(rec)
  if not text then error("ledger: a checkpoint record must be JSON-safe", 2) end
  local ok, err = self.db:ck_insert({ id = rec.id, kind = rec.kind, provider = rec.provider,
    sandbox = rec.sandbox, native_id = rec.native_id, created_at = rec.created_at,
    record = text })
  if not ok then return fail(self, err, "record checkpoint " .. rec.id) end
  return true
end

local function ck_record(self, row)
  local rec = decode(row.record)
  if type(rec) ~= "table" or rec.id ~= row.id then
    return nil, errors.new("invalid_input", ("ledger %s: the record of checkpoint %s is " ..
      "corrupt (not the JSON of that checkpoint); it was left as it is"):format(self.path, row.id),
      { file = self.path, checkpoint = row.id })
  end
  return rec
end

---Returns a checkpoint record, false when the ledger has none by that id, or nil, err
---(invalid_input for a corrupt one, naming the ledger).
function Ledger:ck_get(id)
  local row, err = self.db:ck_get(id)
  if row == nil then return fail(self, err, "checkpoint " .. tostring(id)) end
  if not row then return false end
  return ck_record(self, row)
end

---Lists checkpoint records, newest first (of one sandbox's durable id, or all); a corrupt
---record is left out (ck_get names it).
function Ledger:ck_list(sandbox)
  local rows, err = self.db:ck_list(sandbox)
  if not rows then return fail(self, err, "list checkpoints") end
  local out = {}
  for _, row in ipairs(rows) do
    local rec = ck_record(self, row)
    if rec then out[#out + 1] = rec end
  end
  return out
end

---Deletes a checkpoint record (true also when there was none).
function Ledger:ck_del(id)
  local ok, err = self.db:ck_delete(id)
  if not ok then return fail(self, err, "delete checkpoint " .. tostring(id)) end
  return true
end

function Ledger:close()
  self.db:close()
end

-- Opening ----------------------------------------------------------------------------------------

local open_ledgers = {}

---Opens the ledger at opts.path (default M.path()), creating its directory and file and
---upgrading an older file. Ledgers stay open for the life of the process, one per path.
---@param opts? {path?: string}
---@return table|nil ledger, sandlot.Error? err io_error (cannot create, full, corrupt),
---  invalid_input (not a sandlot ledger), not_supported (newer schema), unavailable
function M.open(opts)
  local path = opts and opts.path or M.path()
  if not path then
    return nil, errors.new("invalid_input", "ledger: neither XDG_STATE_HOME nor HOME is set; " ..
                           "set one, or set SANDLOT_LEDGER=off")
  end
  local l = open_ledgers[path]
  if l then return l end
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local ok, err = require("sandlot.fs").mkdir_p(dir, tonumber("700", 8))
    if not ok then
      return nil, errors.new(err.code == "not_found" and "io_error" or err.code,
        ("ledger %s: cannot create its directory: %s"):format(path, err.message),
        { file = path, cause = err })
    end
  end
  local db, err = require("sandlot.ledger.sqlite").open(path)
  if not db then return nil, err end
  l = setmetatable({ db = db, path = path }, Ledger)
  open_ledgers[path] = l
  return l
end

---Closes every open ledger (tests that switch XDG_STATE_HOME).
function M.reset()
  for p, l in pairs(open_ledgers) do l:close(); open_ledgers[p] = nil end
end

return M
