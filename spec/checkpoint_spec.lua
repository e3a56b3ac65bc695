-- spec/checkpoint_spec.lua: portable checkpoints (sandlot.checkpoint): the working area of a
-- sandbox, kept by the host, restored byte for byte and mode for mode into a new sandbox of the
-- same provider or of another (local to docker, on the suite's dockerd); an unknown checkpoint
-- and a corrupt one fail clearly and lose nothing. Their records: in the ledger (read by
-- another host process), in JSON files with SANDLOT_LEDGER=off, and the files of an older
-- sandlot still read with the ledger on. Docker's native checkpoints (committed images) seed
-- new docker sandboxes, and no others.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")
local docker = require("spec.support.docker")
local json = require("sandlot.wire.json")

local function all_bytes()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t):rep(300)
end

describe("checkpoints", function()
  local tmp, saved_state, env, why

  lazy_setup(function()
    tmp = h.tmpdir()
    saved_state = os.getenv("XDG_STATE_HOME")
    sys.setenv("XDG_STATE_HOME", tmp .. "/state")
    require("sandlot.ledger").reset()
    env, why = docker.start()
    local providers = { l = { "local", state_dir = tmp .. "/local", isolation = "none" } }
    if env then
      providers.d = { "docker", host = env.host, image = env.image, pull = false }
    end
    sandlot.config.set({ providers = providers })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    docker.stop(env)
    sys.setenv("XDG_STATE_HOME", saved_state)
    require("sandlot.ledger").reset()
    h.rmtree(tmp)
  end)

  local function fill(sb)
    assert(sb:write_file("data/bytes.bin", all_bytes()))
    assert(sb:write_file("data/run.sh", "#!/bin/sh\necho run\n", { mode = "0750" }))
    assert(sb:write_file("top.txt", "top"))
    assert(sb:mkdir("empty/dir", { parents = true }))
  end

  local function same(sb)
    assert.is_true(assert(sb:read_file("data/bytes.bin")) == all_bytes())
    assert.equal("top", assert(sb:read_file("top.txt")))
    assert.equal("run\n", assert(sb:exec({ "sh", "data/run.sh" })).stdout)
    local mode = assert(sb:exec({ "stat", "-c", "%a", "data/run.sh" })).stdout
    assert.equal("750\n", mode)
    local list = assert(sb:ls("empty"))
    assert.equal("dir", list[1] and list[1].name)
  end

  it("restores into a new sandbox of the same provider, byte for byte and mode for mode", function()
    local a <close> = assert(sandlot.create("l"))
    fill(a)
    local ck = assert(a:checkpoint({ name = "filled" }))
    assert.equal("portable", ck.kind)
    assert.equal("filled", ck.name)
    assert.equal(3, ck.files)
    local b <close> = assert(sandlot.create("l", { from = ck.id }))
    same(b)
    local list = assert(sandlot.checkpoints(a))
    assert.equal(ck.id, list[1].id)
    assert.same({}, assert(sandlot.checkpoints(b)))      -- b has none of its own
  end)

  it("restores a local checkpoint into a docker sandbox", function()
    if not env then pending(docker.unavailable(why)) return end
    local a <close> = assert(sandlot.create("l"))
    fill(a)
    local ck = assert(a:checkpoint())
    local d <close> = assert(sandlot.create("d", { from = ck }))
    same(d)
  end)

  it("fails clearly for an unknown checkpoint, before creating anything", function()
    local before = #assert(sandlot.list({ provider = "l" }))
    local sb, err = sandlot.create("l", { from = "ck-0123456789abcdef" })
    assert.is_nil(sb)
    assert.equal("not_found", err.code)
    assert.matches("no checkpoint ck%-0123456789abcdef", err.message)
    assert.equal(before, #assert(sandlot.list({ provider = "l" })))
    local _, err2 = sandlot.create("l", { from = "../../etc/passwd" })
    assert.equal("invalid_input", err2.code)
  end)

  it("refuses a corrupt archive, naming the file and leaving it as it is", function()
    local a <close> = assert(sandlot.create("l"))
    fill(a)
    local ck = assert(a:checkpoint())
    local path = require("sandlot.checkpoint").dir() .. "/" .. ck.id .. ".tar.gz"
    local f = assert(io.open(path, "r+b"))
    local orig = f:read("a")
    f:seek("set", 20)
    f:write(string.char((orig:byte(21) + 1) % 256))
    f:close()
    local sb, err = sandlot.create("l", { from = ck })
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
    assert.matches(path, err.message, 1, true)
    assert.matches("corrupt", err.message, 1, true)
    local now = assert(io.open(path, "rb")):read("a")
    assert.equal(#orig, #now)                          -- still there, not overwritten
    assert.is_false(now == orig)                       -- the planted corruption is what it saw
  end)
  local function ledger_row(ck_id)
    local l = assert(require("sandlot.ledger").open())
    local row, err = l.db:ck_get(ck_id)
    assert(row ~= nil, tostring(err))
    return row
  end

  it("records a checkpoint in the ledger, where another host process finds it", function()
    local a <close> = assert(sandlot.create("l"))
    fill(a)
    local ck = assert(a:checkpoint({ name = "kept" }))
    local dir = require("sandlot.checkpoint").dir()
    assert.is_nil(io.open(dir .. "/" .. ck.id .. ".json"))      -- no file: the ledger has it
    local row = ledger_row(ck.id)
    assert.equal("portable", row.kind)
    assert.equal(a.durable_id, row.sandbox)
    local code, out, errout = h.host({ "-e", ([[
      local c = require("sandlot").checkpoint
      local rec = assert(c.get(%q))
      local mine = 0
      for _, r in ipairs(assert(c.list())) do if r.id == rec.id then mine = mine + 1 end end
      io.write(rec.name, " ", rec.sha256, " ", mine)]]):format(ck.id) },
      { env = { XDG_STATE_HOME = tmp .. "/state" }, cwd = "/" })
    assert.equal(0, code, errout)
    assert.equal("kept " .. ck.sha256 .. " 1", out)
    local b <close> = assert(sandlot.create("l", { from = ck.id }))
    same(b)
  end)

  it("keeps records in JSON files with SANDLOT_LEDGER=off, and reads them with it on", function()
    local a <close> = assert(sandlot.create("l"))
    fill(a)
    sys.setenv("SANDLOT_LEDGER", "off")
    local ok, ck = pcall(function() return assert(a:checkpoint({ name = "old" })) end)
    local got = ok and require("sandlot.checkpoint").get(ck.id)
    sys.setenv("SANDLOT_LEDGER", nil)
    assert(ok, ck)
    assert.equal("old", got.name)
    local path = require("sandlot.checkpoint").dir() .. "/" .. ck.id .. ".json"
    local rec = json.decode(assert(io.open(path, "rb")):read("a"))
    assert.equal(ck.sha256, rec.sha256)
    assert.is_false(ledger_row(ck.id))                          -- the ledger never saw it
    -- with the ledger on again (as after an upgrade from file records) it is still there
    assert.equal("old", assert(require("sandlot.checkpoint").get(ck.id)).name)
    local listed = false
    for _, r in ipairs(assert(sandlot.checkpoints(a))) do listed = listed or r.id == ck.id end
    assert.is_true(listed)
    local b <close> = assert(sandlot.create("l", { from = ck }))
    same(b)
    assert(require("sandlot.checkpoint").delete(ck))
    assert.is_nil(io.open(path, "rb"))
    local _, err = require("sandlot.checkpoint").get(ck.id)
    assert.equal("not_found", err.code)
  end)

  it("seeds through create_from, and re-creates a lost sandbox from the same snapshot",
     function()
    -- a provider file (the ledger records its path, so sandlot.get finds it again)
    local path = tmp .. "/seedy.lua"
    local f = assert(io.open(path, "wb"))
    f:write([[
local errors = require("sandlot.errors")
local st = { made = {}, gone = {}, n = 0 }
local function make(o, seed)
  st.n = st.n + 1
  st.made[#st.made + 1] = { id = "s" .. st.n, opts = o, seed = seed }
  return { id = "s" .. st.n }
end
return {
  name = "seedy", _state = st,
  create = function(_, o) return make(o) end,
  create_from = function(_, o, snap)
    if snap == "nope" then return nil, errors.new("not_found", "no snapshot nope") end
    return make(o, snap)
  end,
  destroy = function(_, hd) st.gone[hd.id] = true; return true end,
  status = function(_, hd) return st.gone[hd.id] and "terminated" or "running" end,
  exec = function(_, hd)
    if st.gone[hd.id] then return nil, errors.new("not_found", "gone") end
    return { exit_code = 0, stdout = hd.id, stderr = "" }
  end,
  checkpoint = function() return { id = "snap-1" } end,
  checkpoints = function() return { { id = "snap-1" } } end,
}
]])
    f:close()
    local st = assert(sandlot.provider.load(path)).impl._state
    assert.equal("new_sandbox", sandlot.caps(path).restore)
    local a <close> = assert(sandlot.create(path, {}))
    local ck = assert(a:checkpoint({ name = "one" }))
    assert.equal("snap-1", ck.native_id)
    local b <close> = assert(sandlot.create(path, { from = ck, recreate = true,
                                                    labels = { team = "x" } }))
    assert.equal("snap-1", st.made[#st.made].seed)
    assert.equal("x", st.made[#st.made].opts.labels.team)      -- the create options, as create
    assert.is_nil(st.made[#st.made].opts.seed)                 -- sandlot's own, not passed on
    st.gone[b.id] = true                                       -- lost behind sandlot's back
    local r = assert(b:exec({ "true" }))
    assert.equal("snap-1", st.made[#st.made].seed)             -- re-made from the snapshot
    assert.equal(st.made[#st.made].id, r.stdout)
    -- the seed is in the ledger: a sandbox found again by its durable id re-makes it likewise
    local again = assert(sandlot.get(b.durable_id))
    st.gone[again.id] = true
    r = assert(again:exec({ "true" }))
    assert.equal("snap-1", st.made[#st.made].seed)
    assert.equal(st.made[#st.made].id, r.stdout)
    local before = #st.made
    local none, err = sandlot.create(path, { from = { kind = "native", native_id = "nope",
                                                      provider = path, module = "seedy" } })
    assert.is_nil(none)
    assert.equal("not_found", err.code)
    assert.equal(before, #st.made)
  end)

  it("upgrades a version 3 ledger to 4 (the checkpoints table), keeping its rows", function()
    local sqlite = require("sandlot.ledger.sqlite")
    assert.equal(4, sqlite.VERSION)
    local path = tmp .. "/old-ledger.db"
    local old = assert(sqlite.open(path, { version = 3 }))
    assert.equal(3, old:version())
    assert(old:insert({ id = "sb-00000000000000aa", provider = "local", state = "active",
                        created_at = 1, updated_at = 1 }))
    local _, err = old:ck_get("ck-00000000000000aa")          -- no such table yet
    assert.is_not_nil(err)
    old:close()
    local db = assert(sqlite.open(path))
    assert.equal(4, db:version())
    assert.equal("active", assert(db:get("sb-00000000000000aa")).state)
    assert.is_false(db:ck_get("ck-00000000000000aa"))           -- the table is there, empty
    db:close()
  end)

  it("refuses a corrupt record, naming where it is and leaving it as it is", function()
    local a <close> = assert(sandlot.create("l"))
    fill(a)
    local ck = assert(a:checkpoint())
    local l = assert(require("sandlot.ledger").open())
    assert(l.db:write({ { "UPDATE checkpoints SET record = '{\"id\": 1' WHERE id = ?",
                          { ck.id } } }))
    local sb, err = sandlot.create("l", { from = ck.id })
    assert.is_nil(sb)
    assert.equal("invalid_input", err.code)
    assert.matches("corrupt", err.message, 1, true)
    assert.matches(ck.id, err.message, 1, true)
    assert.matches(l.path, err.message, 1, true)
    assert.equal('{"id": 1', ledger_row(ck.id).record)        -- left as it was
    -- a corrupt file record likewise, naming the file
    local path = require("sandlot.checkpoint").dir() .. "/ck-00000000000000aa.json"
    local f = assert(io.open(path, "wb"))
    f:write("{not json")
    f:close()
    local _, ferr = require("sandlot.checkpoint").get("ck-00000000000000aa")
    assert.equal("invalid_input", ferr.code)
    assert.matches(path, ferr.message, 1, true)
    os.remove(path)
  end)
end)

describe("docker native checkpoints #docker", function()
  local tmp, saved_state, env, why
  local ckpt = require("sandlot.checkpoint")

  lazy_setup(function()
    tmp = h.tmpdir()
    saved_state = os.getenv("XDG_STATE_HOME")
    sys.setenv("XDG_STATE_HOME", tmp .. "/state")
    require("sandlot.ledger").reset()
    env, why = docker.start()
    local providers = { l = { "local", state_dir = tmp .. "/local", isolation = "none" } }
    if env then
      providers.d = { "docker", host = env.host, image = env.image, pull = false }
    end
    sandlot.config.set({ providers = providers })
  end)

  lazy_teardown(function()
    sandlot.config.reset()
    docker.stop(env)
    sys.setenv("XDG_STATE_HOME", saved_state)
    require("sandlot.ledger").reset()
    h.rmtree(tmp)
  end)

  local function image_exists(iid)
    local res = assert(require("sandlot.http").request({ unix_socket = env.socket,
                                                         path = "/images/" .. iid .. "/json" }))
    return res.status == 200
  end

  local function containers()
    local res = assert(require("sandlot.http").request({ unix_socket = env.socket,
      path = "/containers/json?all=true&filters=%7B%22label%22%3A%5B%22sandlot%3D1%22%5D%7D" }))
    assert.equal(200, res.status)
    return res.json
  end

  it("takes, lists and seeds new docker sandboxes; no other provider's", function()
    if not env then pending(docker.unavailable(why)) return end
    assert.equal("native", sandlot.caps("d").checkpoint)
    assert.equal("new_sandbox", sandlot.caps("d").restore)
    local a <close> = assert(sandlot.create("d", { cwd = "/work" }))
    assert(a:write_file("state/kept.txt", "kept"))
    assert(a:exec({ "sh", "-c", "echo outside > /etc/planted" }))   -- the whole sandbox
    local ck = assert(a:checkpoint({ name = "n1" }))
    assert.equal("native", ck.kind)
    assert.equal("docker", ck.module)
    assert.equal("new_sandbox", ck.restore)
    assert.matches("^sha256:%x+$", ck.native_id)
    assert.is_true(image_exists(ck.native_id))
    local list = assert(ckpt.native(a))
    assert.equal(ck.native_id, list[1].native_id)
    assert.equal("n1", list[1].comment)
    assert.equal(ck.id, assert(sandlot.checkpoints(a))[1].id)
    -- a new sandbox from the record, and one from the provider's list
    local b <close> = assert(sandlot.create("d", { from = ck }))
    assert.is_false(b.handle.container == a.handle.container)
    assert.equal("kept", assert(b:read_file("state/kept.txt")))     -- same working directory
    assert.equal("outside\n", assert(b:read_file("/etc/planted")))
    assert.equal("/work\n", assert(b:exec({ "pwd" })).stdout)
    local c <close> = assert(sandlot.create("d", { from = list[1] }))
    assert.equal("kept", assert(c:read_file("state/kept.txt")))
    assert(a:write_file("state/kept.txt", "changed"))               -- copies, not links
    assert.equal("kept", assert(c:read_file("state/kept.txt")))
    -- not in place, and not into another provider: the error names the fix
    local r, err = ckpt.restore(a, ck)
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert.matches("new sandbox", err.message, 1, true)
    local before = #assert(sandlot.list({ provider = "l" }))
    r, err = sandlot.create("l", { from = ck })
    assert.is_nil(r)
    assert.equal("not_supported", err.code)
    assert.matches('kind = "portable"', err.message, 1, true)
    assert.equal(before, #assert(sandlot.list({ provider = "l" })))
    -- deleting: refused while sandboxes made from it live, then image and record go
    local ok, derr = ckpt.delete(ck)
    assert.is_nil(ok)
    assert.equal("unavailable", derr.code)
    assert.is_true(image_exists(ck.native_id))
    b:destroy()
    c:destroy()
    assert(ckpt.delete(ck))
    assert.is_false(image_exists(ck.native_id))
    local _, gerr = ckpt.get(ck.id)
    assert.equal("not_found", gerr.code)
  end)

  it("is not_found for a snapshot the daemon does not have, and creates nothing", function()
    if not env then pending(docker.unavailable(why)) return end
    local a <close> = assert(sandlot.create("d"))
    local ck = assert(a:checkpoint())
    a:destroy()
    assert(ckpt.delete(ck.native_id and { kind = "native", native_id = ck.native_id,
                                          provider = "d", module = "docker" }))
    local before = #containers()
    local sb, err = sandlot.create("d", { from = ck })            -- the record is still there
    assert.is_nil(sb)
    assert.equal("not_found", err.code)
    assert.matches(ck.native_id, err.message, 1, true)
    assert.equal(before, #containers())
    local _, ierr = sandlot.create("d", { from = { kind = "native", native_id = "../../x",
                                                   provider = "d", module = "docker" } })
    assert.equal("invalid_input", ierr.code)
  end)
end)
