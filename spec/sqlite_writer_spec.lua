-- spec/sqlite_writer_spec.lua: sandlot.core.sqlite's db:run, which runs statements on the
-- connection's writer thread while the task waits (issue 10: no SQLite call holds the loop).
-- The loop keeps running other tasks during a long statement and during a wait on a file
-- another connection has locked; writes queued together share one transaction, one job's
-- failure leaves the others' rows; a cancelled waiter unwinds; misuse still raises.
local sandlot = require("sandlot")
local sqlite = require("sandlot.core.sqlite")
local ledger = require("sandlot.ledger")
local h = require("spec.helper")

-- A statement that keeps SQLite busy for a while: tens of ms of CPU.
local SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c " ..
             "WHERE x < 300000) SELECT count(*) AS n FROM c"

describe("sandlot.core.sqlite db:run", function()
  local dir, db
  before_each(function()
    dir = h.tmpdir()
    db = assert(sqlite.open(dir .. "/t.db"))
    assert(db:exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; " ..
                   "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
  end)
  after_each(function()
    db:close()
    h.rmtree(dir)
  end)

  -- a task that counts its wake-ups: 1 ms sleeps while the loop runs
  local function ticker()
    local st = { n = 0, running = true }
    st.task = sandlot.spawn(function()
      while st.running do sandlot.sleep(0.001); st.n = st.n + 1 end
    end)
    return st
  end

  it("runs a long statement off the loop: other tasks run meanwhile", h.task(function()
    local tk = ticker()
    sandlot.sleep(0.01)
    -- the control: the same statement through db:query holds the loop, so no tick happens
    local before = tk.n
    assert.equal(300000, assert(db:query(SLOW))[1].n)
    assert.equal(before, tk.n)
    before = tk.n
    local res = assert(db:run({ { SLOW } }))
    assert.equal(300000, res[1].rows[1].n)
    assert.is_true(tk.n > before, "the ticker ran while the writer thread worked")
    tk.running = false
    tk.task:join()
  end))

  it("waits on the writer thread for a file another connection holds locked",
    h.task(function()
    local other = assert(sqlite.open(dir .. "/t.db"))
    assert(db:busy_timeout(20000))
    assert(other:exec("BEGIN IMMEDIATE; INSERT INTO t(id, v) VALUES (1, 'other')"))
    local tk = ticker()
    local releaser = sandlot.spawn(function()
      sandlot.sleep(0.3)
      assert(other:exec("COMMIT"))
    end)
    local before = tk.n
    local res = assert(db:run({ { "INSERT INTO t(id, v) VALUES (2, 'mine')" } },
                              { write = true }))
    assert.equal(1, res[1].changes)
    assert.is_true(tk.n > before, "the ticker ran while the writer waited for the lock")
    releaser:join()
    -- with no busy time left the same wait fails at once, as unavailable
    assert(db:busy_timeout(0))
    assert(other:exec("BEGIN IMMEDIATE"))
    local r, err = db:run({ { "INSERT INTO t(id, v) VALUES (3, 'x')" } }, { write = true })
    assert.is_nil(r)
    assert.equal("unavailable", err.code)
    assert.matches("locked", err.message, 1, true)
    assert(other:exec("ROLLBACK"))
    other:close()
    tk.running = false
    tk.task:join()
  end))

  it("groups writes queued together into fewer transactions; a failing job leaves the others",
    h.task(function()
    assert(db:run({ { "INSERT INTO t(id, v) VALUES (7, 'first')" } }, { write = true }))
    local s0 = db:stats()
    local fns = {}
    for i = 1, 32 do
      fns[i] = function()
        -- job 7 collides with the row above; job 9 changes no row (must_change)
        local sql = i == 9 and "UPDATE t SET v = 'none' WHERE id = -1"
                           or "INSERT INTO t(id, v) VALUES (?, ?)"
        local r, err = db:run({ { sql, { i, "v" .. i }, must_change = i == 9 },
                                { "INSERT INTO t(id, v) VALUES (?, 'second')", { 100 + i } } },
                              { write = true })
        return { r ~= nil, err and err.code, err and err.unchanged }
      end
    end
    -- a slow write first, so the 32 are all queued while the writer thread is busy (on a
    -- fast disk each would otherwise commit before the next is queued)
    local busy = sandlot.spawn(function()
      return db:run({ { SLOW }, { "INSERT INTO t(id, v) VALUES (6000, 'slow')" } },
                    { write = true })
    end)
    sandlot.sleep(0.01)
    local out = sandlot.all(fns, { limit = 32 })
    assert(busy:join())
    for i = 1, 32 do
      if i == 7 then assert.same({ false, "already_exists" }, { out[i][1], out[i][2] })
      elseif i == 9 then assert.same({ false, "not_found", true }, out[i])
      else assert.is_true(out[i][1], "job " .. i) end
    end
    local s1 = db:stats()
    assert.equal(33, s1.jobs - s0.jobs)
    assert.is_true(s1.transactions - s0.transactions < 33, "some writes shared a transaction")
    local rows = assert(db:run({ { "SELECT count(*) AS n FROM t WHERE v = 'second'" } }))
    assert.equal(30, rows[1].rows[1].n)         -- the failed jobs' second rows rolled back
    assert.equal(0, db:query("SELECT count(*) AS n FROM t WHERE id IN (9, 107, 109)")[1].n)
  end))

  it("returns rows with their types and binds named and positional parameters",
    h.task(function()
    local res = assert(db:run({
      { "INSERT INTO t(id, v) VALUES (:id, :v)", { id = 5, v = "five" } },
      { "SELECT id, v, 1.5 AS f, NULL AS z, x'00ff' AS b FROM t WHERE id = ?", { 5 } },
    }, { write = true }))
    assert.equal(1, res[1].changes)
    assert.same({ id = 5, v = "five", f = 1.5, b = "\0\255" }, res[2].rows[1])
  end))

  it("unwinds a cancelled waiter; the connection keeps working", h.task(function()
    local t = sandlot.spawn(function() return db:run({ { SLOW } }) end)
    sandlot.sleep(0.01)
    t:cancel()
    local ok, r, err = pcall(t.join, t)
    assert.is_true(ok)
    assert.is_nil(r)
    assert.equal("cancelled", err.code)
    local res = assert(db:run({ { "SELECT 42 AS n" } }))
    assert.equal(42, res[1].rows[1].n)
  end))

  it("raises on misuse: several statements in a step, a table as a parameter",
    h.task(function()
    assert.has_error(function() db:run({ { "SELECT 1; SELECT 2" } }) end,
                     "sqlite: query takes one statement (use exec for several)")
    assert.has_error(function() db:run({ { "SELECT ?", { {} } } }) end)
    assert.has_error(function() db:run({}) end)
  end))

  it("runs outside any task too, and after close raises", function()
    local res = assert(db:run({ { "SELECT 7 AS n" } }))
    assert.equal(7, res[1].rows[1].n)
    local d2 = assert(sqlite.open(dir .. "/t.db"))
    d2:close()
    assert.has_error(function() d2:run({ { "SELECT 1" } }) end,
                     "attempt to use a closed sandlot.sqlite.db")
  end)
end)

describe("the ledger on the writer thread", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() ledger.reset(); h.rmtree(dir) end)

  it("groups the journal writes of concurrent tasks and keeps every row", h.task(function()
    local l = assert(ledger.open({ path = dir .. "/ledger.db" }))
    local s0 = l.db.conn:stats()
    local fns = {}
    for i = 1, 16 do
      fns[i] = function()
        local id = assert(l:record({ provider = "p", module = "p", name = "n" .. i }))
        assert(l:set_state(id, "active", { external_id = "x" .. i }))
        return id
      end
    end
    local ids = sandlot.all(fns, { limit = 16 })
    local s1 = l.db.conn:stats()
    assert.is_true(s1.transactions - s0.transactions < 32, "writes shared transactions")
    for i = 1, 16 do
      assert.equal("active", assert(l:get(ids[i])).state)
    end
    local _, err = l:set_state("sb-0000000000000000", "active")
    assert.equal("not_found", err.code)
  end))
end)
