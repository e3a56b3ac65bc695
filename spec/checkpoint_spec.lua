-- spec/checkpoint_spec.lua: portable checkpoints (sandlot.checkpoint): the working area of a
-- sandbox, kept by the host, restored byte for byte and mode for mode into a new sandbox of the
-- same provider or of another (local to docker, on the suite's dockerd); an unknown checkpoint
-- and a corrupt one fail clearly and lose nothing.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")
local docker = require("spec.support.docker")

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
end)
