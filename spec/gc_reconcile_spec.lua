-- spec/gc_reconcile_spec.lua: `sandlot gc` on the local provider, run by the built host: a dry
-- run changes nothing; --yes destroys orphans (a row that says destroyed, a sandbox replaced
-- by its re-creation), marks ghosts lost, destroys sandboxes past their ttl or idle past
-- idle_timeout, and keeps what is live; --older-than spares younger ones. Also: a second host
-- is refused a sandbox that a live host owns, and takes over one whose host is gone.
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local json = require("sandlot.wire.json")
local h = require("spec.helper")

local dir, saved, env

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

before_each(function()
  dir = h.tmpdir()
  saved = os.getenv("XDG_STATE_HOME")
  sys.setenv("XDG_STATE_HOME", dir .. "/state")
  ledger.reset()
  write(dir .. "/config.lua", ('return { providers = { p = { "local", state_dir = %q, ' ..
                               'isolation = "none" } } }\n'):format(dir .. "/boxes"))
  sandlot.config.use(dir .. "/config.lua")
  env = { XDG_STATE_HOME = dir .. "/state", SANDLOT_CONFIG = dir .. "/config.lua",
          SANDLOT_QUIET = "1" }
end)

after_each(function()
  sandlot.config.reset()
  ledger.reset()
  sys.setenv("XDG_STATE_HOME", saved)
  h.rmtree(dir)
end)

local function exists(sb) return sandlot.fs.stat(dir .. "/boxes/" .. sb.id) ~= nil end

local function gc(args)
  local argv = { "gc", "--provider", "p", "--json" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local code, out, err = h.host(argv, { env = env })
  assert.equal(0, code, out .. err)
  local doc = json.decode(out)
  local by = {}
  for _, x in ipairs(doc.items) do by[x.external_id or x.id] = x end
  return by, doc
end

-- A sandbox whose ledger row says destroyed while it still exists (a destroy that failed
-- after the journal, or a row edited by hand).
local function stale_destroyed()
  local sb = assert(sandlot.create("p"))
  assert(assert(ledger.open()):set_state(sb.durable_id, "destroyed"))
  return sb
end

describe("sandlot gc (local, with the ledger)", function()
  it("lists orphans, ghosts and expired ones in a dry run and changes nothing", h.task(function()
    local keep = assert(sandlot.create("p"))
    local orphan = stale_destroyed()
    local ghost = assert(sandlot.create("p"))
    assert(sandlot.proc.run({ "rm", "-rf", dir .. "/boxes/" .. ghost.id }))
    local by = gc()
    assert.same({ "orphan", "would_destroy", "the ledger says destroyed" },
                { by[orphan.id].kind, by[orphan.id].action, by[orphan.id].reason })
    assert.same({ "ghost", "would_mark_lost" }, { by[ghost.id].kind, by[ghost.id].action })
    assert.is_nil(by[keep.id])
    assert.is_true(exists(orphan))
    assert.equal("active", assert(ledger.open():get(ghost.durable_id)).state)
    by = gc({ "--yes" })
    assert.equal("destroyed", by[orphan.id].action)
    assert.equal("marked_lost", by[ghost.id].action)
    assert.is_false(exists(orphan))
    assert.equal("lost", assert(ledger.open():get(ghost.durable_id)).state)
    assert.is_true(exists(keep))
    local again = gc({ "--yes" })
    assert.is_nil(next(again))                                 -- nothing left to do
    assert(keep:destroy())
  end))

  it("destroys the sandbox a re-creation replaced", h.task(function()
    local sb = assert(sandlot.create("p", { recreate = true }))
    local old = sb.id
    sys.setenv("SANDLOT_QUIET", "1")
    assert(sandlot.proc.run({ "mv", dir .. "/boxes/" .. old, dir .. "/aside" }))
    assert(sb:exec({ "true" }))                               -- re-created
    sys.setenv("SANDLOT_QUIET", nil)
    assert(sandlot.proc.run({ "mv", dir .. "/aside", dir .. "/boxes/" .. old }))
    local by = gc({ "--yes" })
    assert.equal("orphan", by[old].kind)
    assert.matches("re-created", by[old].reason, 1, true)
    assert.is_nil(by[sb.id])
    assert.is_true(exists(sb))
    assert(sb:destroy())
  end))

  it("enforces ttl and, once no host runs, idle_timeout from the ledger", h.task(function()
    local code, out, err = h.host({ "-e", [[
      local sandlot = require("sandlot")
      local a = assert(sandlot.create("p", { ttl = 1 }))
      local b = assert(sandlot.create("p", { idle_timeout = 1 }))
      local c = assert(sandlot.create("p", { ttl = 3600, idle_timeout = 3600 }))
      io.write(a.id, " ", b.id, " ", c.id)
    ]] }, { env = env })
    assert.equal(0, code, err)
    local a, b, c = out:match("^(%S+) (%S+) (%S+)$")
    sandlot.sleep(2.1)
    local by = gc({ "--yes" })
    assert.same({ "expired", "destroyed" }, { by[a] and by[a].kind, by[a] and by[a].action })
    assert.matches("ttl", by[a].reason, 1, true)
    assert.same({ "expired", "destroyed" }, { by[b] and by[b].kind, by[b] and by[b].action })
    assert.matches("idle", by[b].reason, 1, true)
    assert.is_nil(by[c])
    assert.is_nil(sandlot.fs.stat(dir .. "/boxes/" .. a))
    assert.is_nil(sandlot.fs.stat(dir .. "/boxes/" .. b))
    assert.is_table(sandlot.fs.stat(dir .. "/boxes/" .. c))
  end))

  it("--older-than spares younger sandboxes", h.task(function()
    local orphan = stale_destroyed()
    local by = gc({ "--yes", "--older-than", "1h" })
    assert.is_nil(by[orphan.id])
    assert.is_true(exists(orphan))
  end))
end)

describe("ownership between hosts", function()
  it("refuses a sandbox a live host owns, and takes over one whose host is gone",
    h.task(function()
      local mine = assert(sandlot.create("p"))
      local code, out, err = h.host({ "-e", ([[
        local sandlot = require("sandlot")
        local sb, err = sandlot.get(%q)
        io.write(tostring(sb), " ", err.code, " ", err.message)
      ]]):format(mine.durable_id) }, { env = env })
      assert.equal(0, code, err)
      assert.matches("nil permission_denied sandbox " .. mine.durable_id ..
                     " is owned by another live host " .. ledger.this_host().id .. " (pid " ..
                     sys.getpid() .. " is alive on", out, 1, true)
      -- a host that created a sandbox and ended: the next one takes it over
      code, out, err = h.host({ "-e", [[
        io.write(assert(require("sandlot").create("p")).durable_id)
      ]] }, { env = env })
      assert.equal(0, code, err)
      local theirs = assert(sandlot.get(out))
      assert.equal(ledger.this_host().id, assert(ledger.open():get(out)).host_id)
      assert(theirs:destroy())
      assert(mine:destroy())
    end))
end)
