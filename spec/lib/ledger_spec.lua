-- spec/lib/ledger_spec.lua: the SQLite binding (sandlot.core.sqlite), the ledger's schema and
-- migrations (sandlot.ledger.sqlite: older files upgrade; newer, foreign and corrupt files are
-- refused, named and left untouched) and the record interface (sandlot.ledger).
local sqlite = require("sandlot.core.sqlite")
local backend = require("sandlot.ledger.sqlite")
local ledger = require("sandlot.ledger")
local h = require("spec.helper")

local slurp = h.read

local function spit(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local dir
before_each(function() dir = h.tmpdir() end)
after_each(function() ledger.reset(); h.rmtree(dir) end)

describe("sandlot.core.sqlite", function()
  it("runs statements with positional and named parameters and keeps value types", function()
    local db <close> = assert(sqlite.open(dir .. "/t.db"))
    assert(db:exec("CREATE TABLE t(a, b, c)"))
    local _, n = assert(db:query("INSERT INTO t VALUES (?, ?, ?)", { 1, 2.5, "x\0y" }))
    assert.equal(1, n)
    assert(db:query("INSERT INTO t VALUES (:a, :b, :c)", { a = math.maxinteger, c = true }))
    local rows = assert(db:query("SELECT a, b, c FROM t ORDER BY rowid"))
    assert.equal(2, #rows)
    assert.equal("integer", math.type(rows[1].a))
    assert.equal(2.5, rows[1].b)
    assert.equal("x\0y", rows[1].c)
    assert.equal(math.maxinteger, rows[2].a)
    assert.is_nil(rows[2].b)                                 -- NULL: absent
    assert.equal(1, rows[2].c)
  end)

  it("raises on misuse: several statements, a table parameter, a closed db", function()
    local db = assert(sqlite.open(dir .. "/t.db"))
    assert.has_error(function() db:query("SELECT 1; SELECT 2") end)
    assert.has_error(function() db:query("SELECT ?", { {} }) end)
    db:close()
    assert.has_error(function() db:query("SELECT 1") end)
  end)

  local cases = {
    { "a syntax error", "SELEC 1", "internal" },
    { "a missing table", "SELECT * FROM nope", "internal" },
    { "a duplicate key", "INSERT INTO u VALUES (1)", "already_exists" },
    { "a type mismatch in a STRICT table", "INSERT INTO u VALUES ('x')", "invalid_input" },
  }
  for _, c in ipairs(cases) do
    it("maps " .. c[1] .. " to " .. c[3] .. ", naming the file", function()
      local db <close> = assert(sqlite.open(dir .. "/t.db"))
      assert(db:exec("CREATE TABLE u(a INTEGER PRIMARY KEY) STRICT; INSERT INTO u VALUES (1)"))
      local r, err = db:query(c[2])
      assert.is_nil(r)
      assert.equal(c[3], err.code)
      assert.matches(dir .. "/t.db", err.message, 1, true)
      assert.equal(dir .. "/t.db", err.file)
    end)
  end

  it("maps a locked database (busy timeout passed) to unavailable", function()
    local a <close> = assert(sqlite.open(dir .. "/t.db"))
    local b <close> = assert(sqlite.open(dir .. "/t.db", { busy_timeout = 0 }))
    assert(a:exec("PRAGMA journal_mode = WAL; CREATE TABLE t(x)"))
    assert(a:exec("BEGIN IMMEDIATE"))
    local ok, err = b:exec("BEGIN IMMEDIATE")
    assert.is_nil(ok)
    assert.equal("unavailable", err.code)
    assert.is_true(err.retryable)
    assert(a:exec("COMMIT"))
    assert(b:exec("BEGIN IMMEDIATE; COMMIT"))
  end)

  it("maps a file that is not a database to io_error", function()
    spit(dir .. "/x.db", ("not a database\n"):rep(100))
    local db <close> = assert(sqlite.open(dir .. "/x.db"))
    local r, err = db:query("PRAGMA user_version")
    assert.is_nil(r)
    assert.equal("io_error", err.code)
    assert.matches("x.db", err.message, 1, true)
  end)
end)

describe("sandlot.ledger.sqlite schema", function()
  it("creates a fresh file at the current version, in WAL mode", function()
    local db = assert(backend.open(dir .. "/l.db"))
    assert.equal(backend.VERSION, db:version())
    assert.equal("wal", db:read("PRAGMA journal_mode")[1].journal_mode)
    assert.equal(backend.APPLICATION_ID, db:read("PRAGMA application_id")[1].application_id)
    db:close()
  end)

  it("upgrades an older file and keeps its rows", function()
    assert.is_true(backend.VERSION >= 2)
    local old = assert(backend.open(dir .. "/l.db", { version = 1 }))
    assert.equal(1, old:version())
    assert(old:insert({ id = "sb-old", provider = "local", state = "active", created_at = 1,
                        updated_at = 1 }))
    assert.is_nil(old:read("SELECT name FROM sqlite_master WHERE name = 'hosts'")[1])
    old:close()
    local db = assert(backend.open(dir .. "/l.db"))
    assert.equal(backend.VERSION, db:version())
    assert.equal("active", assert(db:get("sb-old")).state)
    assert.is_table(db:read("SELECT name FROM sqlite_master WHERE name = 'hosts'")[1])
    db:close()
  end)

  it("refuses a newer file with not_supported naming the file, and leaves it as it is", function()
    local path = dir .. "/l.db"
    local db = assert(backend.open(path))
    assert(db.conn:exec("PRAGMA user_version = 99"))
    db:close()
    local before = slurp(path)
    local r, err = backend.open(path)
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert.matches(path, err.message, 1, true)
    assert.matches("99", err.message, 1, true)
    assert.equal(before, slurp(path))
  end)

  it("refuses a non-SQLite file with io_error naming the file, and never overwrites it", function()
    local path = dir .. "/l.db"
    local planted = ("this is somebody's notes, not a database\n"):rep(200)
    spit(path, planted)
    local r, err = backend.open(path)
    assert.is_nil(r)
    assert.equal("io_error", err.code)
    assert.matches(path, err.message, 1, true)
    assert.matches("not a SQLite database", err.message, 1, true)
    assert.equal(planted, slurp(path))
    assert.is_nil(io.open(path .. "-wal"))
  end)

  it("refuses another application's SQLite database with invalid_input, untouched", function()
    local path = dir .. "/l.db"
    local other = assert(sqlite.open(path))
    assert(other:exec("CREATE TABLE theirs(x); INSERT INTO theirs VALUES (42)"))
    other:close()
    local before = slurp(path)
    local r, err = backend.open(path)
    assert.is_nil(r)
    assert.equal("invalid_input", err.code)
    assert.matches(path, err.message, 1, true)
    assert.equal(before, slurp(path))
  end)

  it("refuses a corrupt ledger (damaged pages) naming the file", function()
    local path = dir .. "/l.db"
    local db = assert(backend.open(path))
    db:close()
    local data = slurp(path)
    -- keep the 100-byte header, scramble everything after it
    spit(path, data:sub(1, 100) .. ("\255"):rep(#data - 100))
    local r, err = backend.open(path)
    assert.is_nil(r)
    assert.equal("io_error", err.code)
    assert.matches(path, err.message, 1, true)
  end)
end)

describe("sandlot.ledger records", function()
  it("records, moves through states with events, gets and lists with filters", function()
    local l = assert(ledger.open({ path = dir .. "/l.db" }))
    local a = assert(l:record({ provider = "local", module = "local", opts = { cwd = "/w" },
                                name = "a", labels = { team = "x" } }))
    local b = assert(l:record({ provider = "mine", module = "local", labels = { team = "y" } }))
    assert.matches("^sb%-%x+$", a)
    local rec = assert(l:get(a))
    assert.same({ "creating", "local", "a", "/w", "x" },
                { rec.state, rec.provider, rec.name, rec.opts.cwd, rec.labels.team })
    assert.is_string(rec.host_id)
    assert(l:set_state(a, "active", { external_id = "e1", handle = { id = "e1", token = "s3" } }))
    rec = assert(l:get(a))
    assert.equal("e1", rec.external_id)
    assert.equal("[REDACTED]", rec.handle.token)
    assert(l:set_state(b, "error", { error = require("sandlot.errors").new("timeout", "slow") }))
    assert.equal("timeout", assert(l:get(b)).error.code)
    assert(l:set_state(a, "destroyed"))
    assert.is_number(assert(l:get(a)).ended_at)
    local kinds = {}
    for _, e in ipairs(assert(l:events(a))) do kinds[#kinds + 1] = e.data.to end
    assert.same({ "creating", "active", "destroyed" }, kinds)
    local function ids(list)
      local out = {}
      for i, r in ipairs(list) do out[i] = r.id end
      return out
    end
    assert.same({ b, a }, ids(assert(l:list())))
    assert.same({ a }, ids(assert(l:list({ state = "destroyed" }))))
    assert.same({ b }, ids(assert(l:list({ provider = "mine" }))))
    assert.same({ a }, ids(assert(l:list({ label = "team=x" }))))
    assert.same({ b }, ids(assert(l:list({ label = { team = "y" } }))))
    assert.same({ b, a }, ids(assert(l:list({ label = "team" }))))
    local none, err = l:get("sb-nope")
    assert.is_nil(none)
    assert.equal("not_found", err.code)
    assert.has_error(function() l:set_state(a, "flying") end)
  end)

  it("stores no secret from the options, the handle or an error (canary planted first)", function()
    local canary = "canary-" .. require("sandlot.id").hex(8)
    -- the probe: the same value under plain names is in the file, so the grep can see it
    local seen = assert(ledger.open({ path = dir .. "/seen.db" }))
    assert(seen:record({ provider = "local", opts = { env = { GREETING = canary } } }))
    assert.matches(canary, slurp(dir .. "/seen.db") .. slurp(dir .. "/seen.db-wal"), 1, true)

    local l = assert(ledger.open({ path = dir .. "/l.db" }))
    local id = assert(l:record({ provider = "local", opts = {
      env = { API_TOKEN = canary, DB_PASSWORD = canary, PLAIN = "ok" }, password = canary,
      image = "x", nested = { secret = canary } } }))
    assert(l:set_state(id, "error", { handle = { id = "e", api_key = canary },
      error = require("sandlot.errors").new("auth_failed", "bad token", { token = canary }) }))
    local rec = assert(l:get(id))
    assert.equal("ok", rec.opts.env.PLAIN)
    assert.equal("[REDACTED]", rec.opts.env.API_TOKEN)
    local bytes = slurp(dir .. "/l.db") .. (io.open(dir .. "/l.db-wal") and
                                              slurp(dir .. "/l.db-wal") or "")
    assert.is_nil(bytes:find(canary, 1, true))
  end)
end)
