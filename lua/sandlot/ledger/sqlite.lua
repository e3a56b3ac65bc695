-- sandlot.ledger.sqlite: the ledger's SQLite backend, and the one owner of its schema and
-- migrations (PRAGMA user_version; PRAGMA application_id marks the file as ours). WAL mode,
-- synchronous=FULL (a journal row is on disk before the provider is called). After opening,
-- every statement runs on the connection's writer thread (db:run in sandlot.core.sqlite) while
-- the calling task waits, so neither an fsync nor a file locked by another process holds the
-- loop: the writer retries a locked file until the busy deadline, then the call fails
-- `unavailable`. Each write is one job of a few statements; the jobs queued while the writer
-- was busy share one BEGIN IMMEDIATE transaction (one fsync), each in its own savepoint, and
-- none returns before its COMMIT did. Opening (inspect, pragmas, migrations) runs on the loop
-- thread once per process, with a task sleeping between tries while the file is locked.
local sqlite = require("sandlot.core.sqlite")
local sched = require("sandlot.core.sched")
local timer = require("sandlot.core.timer")
local sys = require("sandlot.core.sys")
local errors = require("sandlot.errors")

local M = {}

M.APPLICATION_ID = 0x534C4447         -- "SLDG"

-- Migration n takes a file from version n-1 to n, inside one transaction. Never edit a
-- released step: add one.
M.MIGRATIONS = {
  [[
CREATE TABLE sandboxes(
  id TEXT PRIMARY KEY,            -- the durable sandlot id
  provider TEXT NOT NULL,         -- the provider reference (configured name, module or file)
  module TEXT,                    -- the provider module's own name
  external_id TEXT,               -- the provider's id (handle.id) once it answered
  handle TEXT,                    -- JSON: the handle as to_map stores it (redacted)
  state TEXT NOT NULL,            -- creating|active|stopped|destroyed|error
  opts TEXT,                      -- JSON: create options without secrets
  host_id TEXT,
  name TEXT, purpose TEXT,
  labels TEXT,                    -- JSON object
  error TEXT,                     -- JSON: the structured error (redacted)
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, ended_at INTEGER
) STRICT;
CREATE INDEX sandboxes_state ON sandboxes(state, created_at);
CREATE INDEX sandboxes_provider ON sandboxes(provider, external_id);
CREATE TABLE events(
  seq INTEGER PRIMARY KEY,
  sandbox_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  data TEXT                       -- JSON
) STRICT;
CREATE INDEX events_sandbox ON events(sandbox_id, seq);
]],
  [[
CREATE TABLE hosts(
  id TEXT PRIMARY KEY, hostname TEXT, pid INTEGER, started_at INTEGER NOT NULL
) STRICT;
]],
  [[
CREATE TABLE processes(
  id TEXT PRIMARY KEY,            -- the durable process id (pr-...)
  sandbox_id TEXT NOT NULL,       -- the durable sandbox id
  argv TEXT,                      -- JSON: the command (redacted)
  cwd TEXT,
  log_dir TEXT,                   -- where the wrapper in the sandbox writes out, err, exit
  state TEXT NOT NULL,            -- running|exited|lost
  host_id TEXT,                   -- the host following it
  cap_bytes INTEGER NOT NULL,     -- per stream: the first cap/2 and the last cap/2 are kept
  stdout_bytes INTEGER NOT NULL DEFAULT 0, stderr_bytes INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER, signal INTEGER,
  gaps TEXT,                      -- JSON: [{stream, from, to, reason = "cap"|"lost"}]
  error TEXT,                     -- JSON: why output was lost (redacted)
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, ended_at INTEGER
) STRICT;
CREATE INDEX processes_sandbox ON processes(sandbox_id, created_at);
CREATE TABLE chunks(
  process_id TEXT NOT NULL,
  stream TEXT NOT NULL,           -- stdout|stderr
  offset INTEGER NOT NULL,        -- of the chunk's first byte in its stream
  data BLOB NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY(process_id, stream, offset)
) STRICT, WITHOUT ROWID;
]],
  [[
CREATE TABLE checkpoints(
  id TEXT PRIMARY KEY,            -- sandlot's checkpoint id (ck-...)
  kind TEXT NOT NULL,             -- portable|native
  provider TEXT,                  -- the provider reference it was taken with
  sandbox TEXT,                   -- the durable (else the provider's) id of its sandbox
  native_id TEXT,                 -- the provider's own snapshot id (native)
  created_at INTEGER NOT NULL,
  record TEXT NOT NULL            -- JSON: the whole record, as sandlot.checkpoint returns it
) STRICT;
CREATE INDEX checkpoints_sandbox ON checkpoints(sandbox, created_at);
]],
}
M.VERSION = #M.MIGRATIONS

---Seconds a locked ledger is retried before a call fails `unavailable`
---($SANDLOT_LEDGER_BUSY_TIMEOUT overrides it).
M.BUSY_TIMEOUT = 30

local function busy_deadline()
  local v = tonumber(os.getenv("SANDLOT_LEDGER_BUSY_TIMEOUT") or "")
  return (v and v > 0) and v or M.BUSY_TIMEOUT
end

local function is_busy(err)
  return errors.is(err, "unavailable") and err.sqlite_code ~= nil
end

local Db = {}
Db.__index = Db

local function locked(self, limit, err)
  return errors.new("unavailable", ("ledger %s is locked by another process (waited %gs)")
    :format(self.path, limit), { file = self.path, cause = err })
end

-- Opening only: runs fn(conn) on the loop thread and retries it while the database is locked:
-- inside a task by sleeping (SQLite's busy handler, which would sleep in the loop thread, is
-- off), elsewhere through SQLite's busy handler with the whole deadline.
local function retrying(self, fn)
  local conn = self.conn
  local limit = busy_deadline()
  if not sched.can_wait() then
    conn:busy_timeout(math.floor(limit * 1000))
    local r, err = fn(conn)
    conn:busy_timeout(0)
    if r == nil and is_busy(err) then err = locked(self, limit, err) end
    return r, err
  end
  local start, pause = sys.now(), 0.001
  while true do
    local r, err = fn(conn)
    if r ~= nil or not is_busy(err) then return r, err end
    if (sys.now() - start) / 1e9 > limit then return nil, locked(self, limit, err) end
    local ok, serr = timer.sleep(pause * (0.5 + math.random()))
    if not ok then return nil, serr end
    pause = math.min(pause * 2, 0.032)
  end
end

-- One write transaction: BEGIN IMMEDIATE (the write lock up front, so a busy database shows
-- at BEGIN, where retrying is safe), fn(conn), COMMIT; ROLLBACK on any failure.
local function write_tx(conn, fn)
  local ok, err = conn:exec("BEGIN IMMEDIATE")
  if not ok then return nil, err end
  local pok, r, ferr = pcall(fn, conn)
  if pok and r ~= nil then
    ok, err = conn:exec("COMMIT")
    if ok then return r end
  else
    err = pok and ferr or errors.new("internal", tostring(r))
  end
  conn:exec("ROLLBACK")
  if not pok then error(r, 0) end
  return nil, err
end

local WRITE = { write = true }

-- Runs steps {sql, params, must_change = bool} as one job of the writer thread; a file still
-- locked at the busy deadline gives `unavailable` naming the file.
local function run(self, steps, write)
  if not self.conn then     -- closed (ledger.reset) under a task still following a process
    return nil, errors.new("io_error", ("ledger %s is closed"):format(self.path),
                           { file = self.path })
  end
  local res, err = self.conn:run(steps, write and WRITE or nil)
  if res == nil and is_busy(err) then return nil, locked(self, self.busy, err) end
  return res, err
end

---Runs steps {sql, params, must_change = bool} in one write transaction (shared with the other
---writes of the moment, each in its own savepoint) -> results ({rows, changes} per step) |
---nil, err (err.unchanged: a must_change step changed no row, and nothing was written).
function Db:write(steps)
  return run(self, steps, true)
end

---Runs one read statement -> rows | nil, err.
function Db:read(sql, params)
  local res, err = run(self, { { sql, params } }, false)
  if not res then return nil, err end
  return res[1].rows
end

function Db:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

-- Errors that name the ledger file ------------------------------------------------------------

local function unusable(path, err)
  local code = err and err.sqlite_code
  local why = err and err.message or "unknown"
  if code == 26 or code == 11 or (code and code & 0xff == 11) then   -- NOTADB, CORRUPT
    why = "it is not a SQLite database, or it is corrupt"
  end
  return errors.new(err and err.code or "io_error",
    ("ledger %s cannot be used: %s; it was left as it is (move it away, or set " ..
     "SANDLOT_LEDGER=off)"):format(path, why), { file = path, cause = err })
end

local function one(conn, sql)
  local rows, err = conn:query(sql)
  if not rows then return nil, err end
  local row = rows[1]
  local _, v = next(row or {})
  return v
end

-- Reads application_id, user_version and whether the file has any table, without writing.
local function inspect(conn)
  local app, err = one(conn, "PRAGMA application_id")
  if app == nil then return nil, err end
  local ver, verr = one(conn, "PRAGMA user_version")
  if ver == nil then return nil, verr end
  local n, nerr = one(conn, "SELECT count(*) FROM sqlite_master")
  if n == nil then return nil, nerr end
  return { app = app, version = ver, empty = n == 0 }
end

-- Refuses a file that is not ours or is newer than this code, before anything is written.
local function check_file(path, info)
  if info.app ~= M.APPLICATION_ID and not (info.app == 0 and info.empty and info.version == 0) then
    return nil, errors.new("invalid_input",
      ("ledger %s is not a sandlot ledger (another application's SQLite database: " ..
       "application_id %d); it was left as it is (move it away, or set SANDLOT_LEDGER=off)")
        :format(path, info.app), { file = path })
  end
  if info.version > M.VERSION then
    return nil, errors.new("not_supported",
      ("ledger %s has schema version %d, newer than this sandlot's %d; it was left as it is " ..
       "(upgrade sandlot, or set XDG_STATE_HOME to use another ledger)")
        :format(path, info.version, M.VERSION), { file = path, version = info.version })
  end
  return true
end

-- Brings the file to version `to` (default M.VERSION) in one transaction. Re-reads the version
-- inside it: another process may have migrated the file meanwhile.
local function migrate(conn, path, to)
  return write_tx(conn, function(c)
    local info = assert(inspect(c))
    assert(check_file(path, info))
    for v = info.version + 1, to do
      local ok, err = c:exec(M.MIGRATIONS[v])
      if not ok then return nil, err end
    end
    local ok, err = c:exec(("PRAGMA application_id = %d; PRAGMA user_version = %d")
      :format(M.APPLICATION_ID, math.max(info.version, to)))
    if not ok then return nil, err end
    return true
  end)
end

---Opens (creating, upgrading) the ledger file at path.
---@param path string
---@param opts? {version?: integer} migrate only up to this version (tests of upgrades)
---@return table|nil db, sandlot.Error? err io_error (cannot open, full, corrupt: names the
---  file), invalid_input (a foreign SQLite file), not_supported (a newer schema), unavailable
function M.open(path, opts)
  local to = opts and opts.version or M.VERSION
  local conn, err = sqlite.open(path)
  if not conn then return nil, unusable(path, err) end
  local self = setmetatable({ conn = conn, path = path }, Db)
  local info
  info, err = retrying(self, inspect)
  if not info then self:close(); return nil, unusable(path, err) end
  local ok, cerr = check_file(path, info)
  if not ok then self:close(); return nil, cerr end
  ok, err = retrying(self, function(c)
    return c:exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; " ..
                  "PRAGMA foreign_keys = ON")
  end)
  if ok and info.version < to then
    ok, err = retrying(self, function(c)
      local pok, r, e = pcall(migrate, c, path, to)
      if not pok then return nil, r end
      return r, e
    end)
  end
  if not ok then
    self:close()
    return nil, errors.is(err) and err.file and err or unusable(path, err)
  end
  self.busy = busy_deadline()
  conn:busy_timeout(math.floor(self.busy * 1000))    -- the writer thread's from now on
  return self
end

---Returns the file's schema version (tests).
function Db:version()
  local rows, err = self:read("PRAGMA user_version")
  if not rows then return nil, err end
  return rows[1].user_version
end

-- The backend interface (sandlot.ledger calls only these; a PostgreSQL backend provides the
-- same): insert(row), update(id, fields, event), get(id), list(filter), events(id),
-- add_host(host), host(id). Rows are flat tables of columns; JSON columns are already strings.

local COLUMNS = { "id", "provider", "module", "external_id", "handle", "state", "opts",
                  "host_id", "name", "purpose", "labels", "error", "created_at", "updated_at",
                  "ended_at" }
local SETTABLE = { external_id = true, handle = true, state = true, error = true,
                   updated_at = true, ended_at = true, name = true, purpose = true,
                   labels = true, host_id = true }

local function add_event(id, at, event)
  return { "INSERT INTO events(sandbox_id, at, kind, data) VALUES (?, ?, ?, ?)",
           { id, at, event.kind, event.data } }
end

---Inserts a new sandbox row and its first event.
function Db:insert(row, event)
  local names, marks, values = {}, {}, {}
  for _, k in ipairs(COLUMNS) do
    if row[k] ~= nil then
      names[#names + 1], marks[#marks + 1], values[#values + 1] = k, "?", row[k]
    end
  end
  local sql = ("INSERT INTO sandboxes(%s) VALUES (%s)")
    :format(table.concat(names, ", "), table.concat(marks, ", "))
  local steps = { { sql, values } }
  if event then steps[2] = add_event(row.id, row.created_at, event) end
  local ok, err = self:write(steps)
  if not ok then return nil, err end
  return true
end

---Sets columns of a row (fields: column = value; false stores NULL) and adds an event.
---@return true|nil ok, sandlot.Error? err not_found when there is no such row
function Db:update(id, fields, event)
  local keys = {}
  for k in pairs(fields) do
    if not SETTABLE[k] then error("ledger: column " .. tostring(k) .. " cannot be set", 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)                        -- a stable statement text
  local sets, values = {}, {}
  for i, k in ipairs(keys) do
    sets[i] = k .. " = ?"
    if fields[k] ~= false then values[i] = fields[k] end
  end
  values[#keys + 1] = id
  local sql = ("UPDATE sandboxes SET %s WHERE id = ?"):format(table.concat(sets, ", "))
  local steps = { { sql, values, must_change = true } }
  if event then steps[2] = add_event(id, fields.updated_at or os.time(), event) end
  local ok, err = self:write(steps)
  if ok then return true end
  if err.unchanged then
    return nil, errors.new("not_found", ("ledger %s: no sandbox %s"):format(self.path, id))
  end
  return nil, err
end

---Returns one row, or nil, not_found.
function Db:get(id)
  local rows, err = self:read("SELECT * FROM sandboxes WHERE id = ?", { id })
  if not rows then return nil, err end
  if not rows[1] then
    return nil, errors.new("not_found", ("no sandbox %s in the ledger %s"):format(id, self.path))
  end
  return rows[1]
end

---Returns rows, newest first. filter: state (string or list), provider, limit.
function Db:list(filter)
  local where, values = {}, {}
  local states = filter.state
  if type(states) == "string" then states = { states } end
  if states then
    local marks = {}
    for i, st in ipairs(states) do marks[i] = "?"; values[#values + 1] = st end
    where[#where + 1] = "state IN (" .. table.concat(marks, ", ") .. ")"
  end
  if filter.provider then
    where[#where + 1] = "provider = ?"
    values[#values + 1] = filter.provider
  end
  local sql = "SELECT * FROM sandboxes" ..
    (#where > 0 and (" WHERE " .. table.concat(where, " AND ")) or "") ..
    " ORDER BY created_at DESC, rowid DESC" ..
    (filter.limit and (" LIMIT " .. math.tointeger(filter.limit)) or "")
  return self:read(sql, values)
end

---Returns a sandbox's events in order: {seq, at, kind, data}.
function Db:events(id)
  return self:read("SELECT seq, at, kind, data FROM events WHERE sandbox_id = ? ORDER BY seq",
                   { id })
end

---Records this host process (once).
function Db:add_host(host)
  local ok, err = self:write({ { "INSERT OR IGNORE INTO hosts(id, hostname, pid, started_at) " ..
    "VALUES (?, ?, ?, ?)", { host.id, host.hostname, host.pid, host.started_at } } })
  if not ok then return nil, err end
  return true
end

---Returns a host row with seen_at (the latest updated_at of its sandboxes), false when
---unknown, or nil, err.
function Db:host(id)
  local rows, err = self:read("SELECT id, hostname, pid, started_at, (SELECT max(updated_at) " ..
    "FROM sandboxes WHERE host_id = hosts.id) AS seen_at FROM hosts WHERE id = ?", { id })
  if not rows then return nil, err end
  return rows[1] or false
end

-- Background processes (sandlot.background): a row per process and its output chunks.

local PROC_COLUMNS = { "id", "sandbox_id", "argv", "cwd", "log_dir", "state", "host_id",
                       "cap_bytes", "stdout_bytes", "stderr_bytes", "exit_code", "signal",
                       "gaps", "error", "created_at", "updated_at", "ended_at" }

---Inserts a process row.
function Db:proc_insert(row)
  local names, marks, values = {}, {}, {}
  for _, k in ipairs(PROC_COLUMNS) do
    if row[k] ~= nil then
      names[#names + 1], marks[#marks + 1], values[#values + 1] = k, "?", row[k]
    end
  end
  local sql = ("INSERT INTO processes(%s) VALUES (%s)")
    :format(table.concat(names, ", "), table.concat(marks, ", "))
  local ok, err = self:write({ { sql, values } })
  if not ok then return nil, err end
  return true
end

---One batch in one transaction: inserts chunks {stream, offset, data, at}, deletes ranges
---{stream, from, to} (chunks starting in [from, to)), sets columns of the row (false: NULL).
---With fields.host_id and `expect_host` given, the row is taken over only from that host
---(nil: from nobody), else `already_exists`.
function Db:proc_append(id, chunks, deletes, fields, expect_host)
  local keys = {}
  for k in pairs(fields or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local sets, values = {}, {}
  for i, k in ipairs(keys) do
    sets[i] = k .. " = ?"
    if fields[k] ~= false then values[i] = fields[k] end
  end
  values[#keys + 1] = id
  local where = "id = ?"
  if expect_host ~= nil then
    where = where .. (expect_host == false and " AND host_id IS NULL" or " AND host_id = ?")
    if expect_host then values[#keys + 2] = expect_host end
  end
  local steps = {}
  for _, d in ipairs(deletes or {}) do
    steps[#steps + 1] = { "DELETE FROM chunks WHERE process_id = ? AND stream = ? AND " ..
                          "offset >= ? AND offset < ?", { id, d.stream, d.from, d.to } }
  end
  for _, ch in ipairs(chunks or {}) do
    steps[#steps + 1] = { "INSERT INTO chunks(process_id, stream, offset, data, at) " ..
                          "VALUES (?, ?, ?, CAST(? AS BLOB), ?)",
                          { id, ch.stream, ch.offset, ch.data, ch.at } }
  end
  if #keys > 0 then
    steps[#steps + 1] = { ("UPDATE processes SET %s WHERE %s")
                            :format(table.concat(sets, ", "), where), values, must_change = true }
  end
  if #steps == 0 then return true end
  local ok, err = self:write(steps)
  if ok then return true end
  if err.unchanged then
    return nil, errors.new(expect_host ~= nil and "already_exists" or "not_found",
      ("ledger %s: process %s %s"):format(self.path, id, expect_host ~= nil
        and "is followed by another host" or "does not exist"))
  end
  return nil, err
end

---Returns one process row, or nil, not_found.
function Db:proc_get(id)
  local rows, err = self:read("SELECT * FROM processes WHERE id = ?", { id })
  if not rows then return nil, err end
  if not rows[1] then
    return nil, errors.new("not_found", ("no process %s in the ledger %s"):format(id, self.path))
  end
  return rows[1]
end

---Returns a sandbox's process rows, newest first (sandbox_id nil: every process).
function Db:proc_list(sandbox_id)
  if sandbox_id == nil then
    return self:read("SELECT * FROM processes ORDER BY created_at DESC, rowid DESC")
  end
  return self:read("SELECT * FROM processes WHERE sandbox_id = ? ORDER BY created_at DESC, " ..
                   "rowid DESC", { sandbox_id })
end

---Returns up to `limit` chunks {offset, data} of a stream that end after `from`, in order.
function Db:proc_chunks(id, stream, from, limit)
  return self:read("SELECT offset, data FROM chunks WHERE process_id = ? AND stream = ? AND " ..
                   "offset + length(data) > ? ORDER BY offset LIMIT ?",
                   { id, stream, from, limit })
end

---Returns {[sandbox_id] = count} of running processes.
function Db:proc_running()
  local rows, err = self:read("SELECT sandbox_id, count(*) AS n FROM processes WHERE state = " ..
                              "'running' GROUP BY sandbox_id")
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do out[r.sandbox_id] = r.n end
  return out
end

---Returns {offset, size} of a stream's chunks starting at or after `from` (the cap's tail).
function Db:proc_extents(id, stream, from)
  return self:read("SELECT offset, length(data) AS size FROM chunks WHERE process_id = ? AND " ..
                   "stream = ? AND offset >= ? ORDER BY offset", { id, stream, from })
end

---Returns a host row {id, hostname, pid, started_at}, or nil when there is none.
function Db:host_get(id)
  local rows, err = self:read("SELECT * FROM hosts WHERE id = ?", { id })
  if not rows then return nil, err end
  return rows[1] or false
end

-- Checkpoints (sandlot.checkpoint): one row per record; the archives stay files.

---Inserts a checkpoint row {id, kind, provider, sandbox, native_id, created_at, record}.
function Db:ck_insert(row)
  local ok, err = self:write({ { "INSERT INTO checkpoints(id, kind, provider, sandbox, " ..
    "native_id, created_at, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
    { row.id, row.kind, row.provider, row.sandbox, row.native_id, row.created_at, row.record } } })
  if not ok then return nil, err end
  return true
end

---Returns one checkpoint row, or false when there is none.
function Db:ck_get(id)
  local rows, err = self:read("SELECT * FROM checkpoints WHERE id = ?", { id })
  if not rows then return nil, err end
  return rows[1] or false
end

---Returns checkpoint rows, newest first (sandbox nil: all of them).
function Db:ck_list(sandbox)
  if sandbox == nil then
    return self:read("SELECT * FROM checkpoints ORDER BY created_at DESC, id DESC")
  end
  return self:read("SELECT * FROM checkpoints WHERE sandbox = ? ORDER BY created_at DESC, " ..
                   "id DESC", { sandbox })
end

---Deletes a checkpoint row -> true (also when there was none).
function Db:ck_delete(id)
  local ok, err = self:write({ { "DELETE FROM checkpoints WHERE id = ?", { id } } })
  if not ok then return nil, err end
  return true
end

M.Db = Db

return M
