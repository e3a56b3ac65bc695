-- spec/cli_checkpoint_spec.lua: `sandlot checkpoint take|ls|rm|restore` and `sandlot create
-- --from`, run by the built host from another directory on durable sandboxes of the local
-- provider (made by host processes that have ended): take -> ls -> restore in place ->
-- create --from -> rm, with --json parsed; an unknown id and a malformed one (exit 1, the
-- library's message, nothing created); a corrupt ledger row and a corrupt record file (named,
-- left as they are, the others still listed); usage errors (exit 2); and, on the strict
-- Sprites fake, a native checkpoint restored in place through the CLI, and refused where the
-- provider cannot (not_supported, the library's message).
local json = require("sandlot.wire.json")
local sandlot = require("sandlot")
local ledger = require("sandlot.ledger")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function lit(s) return (s:gsub("%p", "%%%0")) end   -- s as a pattern that matches s

describe("sandlot checkpoint", function()
  local dir, env, saved
  before_each(function()
    dir = h.tmpdir()
    env = { XDG_STATE_HOME = dir .. "/state", SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false,
            XDG_CONFIG_HOME = dir .. "/config" }
    saved = os.getenv("XDG_STATE_HOME")
    sys.setenv("XDG_STATE_HOME", dir .. "/state")
    ledger.reset()
  end)
  after_each(function()
    ledger.reset()
    sys.setenv("XDG_STATE_HOME", saved)
    h.rmtree(dir)
  end)

  local function run(...)
    return h.host({ ... }, { env = env, cwd = "/" })
  end
  local function ck(...) return run("checkpoint", ...) end

  -- a local sandbox made by a host that has ended, holding d/a.txt = text; its durable id
  local function make(text)
    local _, code, out, err
    code, out, err = run("create", "--provider", "local")
    assert.equal(0, code, err)
    local id = out:match("^(sb%-%x+)\n$")
    assert(id, out)
    code, _, err = run("exec", id, "--", "sh", "-c", ("mkdir -p d && printf %%s '%s' > d/a.txt")
                                                     :format(text))
    assert.equal(0, code, err)
    return id
  end
  local function cat(id)
    local code, out, err = run("exec", id, "--", "cat", "d/a.txt")
    assert.equal(0, code, err)
    return out
  end
  local function sandboxes()
    return #assert(sandlot.list({}))
  end

  it("takes, lists, restores in place, seeds a new sandbox and deletes (--json too)", function()
    local id = make("before")
    local _, code, out, err
    code, out, err = ck("take", id, "--name", "first")
    assert.equal(0, code, err)
    local first = out:match("^(ck%-%x+)\n$")
    assert(first, out)
    code, out, err = ck("take", id, "--json")
    assert.equal(0, code, err)
    local second = json.decode(out)
    assert.equal("portable", second.kind)
    assert.equal(id, second.sandbox)
    assert.equal("local", second.provider)
    assert.equal(1, second.files)
    local archive = dir .. "/state/sandlot/checkpoints/" .. first .. ".tar.gz"
    assert.truthy(read(archive))

    -- the table: a header and one row per checkpoint, newest first
    code, out, err = ck("ls")
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(3, #lines, out)
    assert.matches("^CHECKPOINT ID%s+NAME%s+KIND%s+PROVIDER%s+SANDBOX%s+CREATED%s+SIZE$",
                   lines[1])
    local row = lines[2]:find(first, 1, true) and lines[2] or lines[3]
    assert.matches("^" .. lit(first) .. "%s+first%s+portable%s+local%s+" .. lit(id) ..
                   "%s+%d+s ago%s+%d+B$", row)

    -- --json: the records, of this sandbox only with an id
    local other = make("other")
    assert.equal(0, (ck("take", other)))
    code, out = ck("ls", "--json")
    assert.equal(0, code)
    assert.equal(3, #json.decode(out))
    code, out, err = ck("ls", id, "--json")
    assert.equal(0, code, err)
    local list = json.decode(out)
    assert.equal(2, #list)
    local byid = {}
    for _, r in ipairs(list) do byid[r.id] = r end
    assert.equal("first", byid[first].name)
    assert.equal(#read(archive), byid[first].size)
    assert.equal(id, byid[second.id].sandbox)

    -- restore in place: the file comes back as it was
    assert.equal(0, (run("exec", id, "--", "sh", "-c", "printf after > d/a.txt; : > d/new.txt")))
    assert.equal("after", cat(id))
    code, out, err = ck("restore", first, id)
    assert.equal(0, code, err)
    assert.equal(id .. "\n", out)
    assert.equal("before", cat(id))
    assert.equal(0, (run("exec", id, "--", "test", "-f", "d/new.txt")))   -- made since: kept
    code, out, err = ck("restore", first, other, "--json")
    assert.equal(0, code, err)
    assert.same({ checkpoint = first, sandbox = other, kind = "portable", restored = true },
                json.decode(out))
    assert.equal("before", cat(other))

    -- create --from: a new sandbox seeded from it
    code, out, err = run("create", "--provider", "local", "--from", first, "--json")
    assert.equal(0, code, err)
    local seeded = json.decode(out)
    assert.equal("local", seeded.provider)
    assert.equal("before", cat(seeded.id))

    -- rm: the archive and the record go; each id printed
    code, out, err = ck("rm", first, second.id)
    assert.equal(0, code, err)
    assert.equal(first .. "\n" .. second.id .. "\n", out)
    assert.is_nil(read(archive))
    code, out = ck("ls", id, "--json")
    assert.equal(0, code)
    assert.same({}, json.decode(out))
    code, out = ck("ls", id)
    assert.equal(0, code)
    assert.matches("^CHECKPOINT ID[^\n]*\n$", out)                  -- the header only
    code, out, err = ck("rm", first)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("sandlot: checkpoint: no checkpoint " .. first, err, 1, true)
    assert.equal(0, (run("rm", id, other, seeded.id)))
  end)

  it("fails with the library's message for an unknown or malformed id; creates nothing", function()
    local id = make("x")
    local unknown = "ck-0000000000000000"
    local _, code, out, err
    code, out, err = ck("restore", unknown, id)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^sandlot: checkpoint: no checkpoint ck%-0000000000000000 in " ..
                   lit(dir .. "/state/sandlot/checkpoints") .. "\n$", err)
    local before = sandboxes()
    code, out, err = run("create", "--provider", "local", "--from", unknown)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("not_found: no checkpoint ck-0000000000000000", err, 1, true)
    assert.equal(before, sandboxes())
    code, _, err = ck("restore", "../../etc/passwd", id)
    assert.equal(1, code)
    assert.matches('"../../etc/passwd" is not a checkpoint id (ck-...)', err, 1, true)
    code, out = ck("rm", "--json", unknown)
    assert.equal(1, code)
    local rows = json.decode(out)
    assert.equal(1, #rows)
    assert.equal(unknown, rows[1].id)
    assert.is_false(rows[1].removed)
    assert.matches("no checkpoint " .. unknown, rows[1].error, 1, true)
    -- an unknown sandbox: for take, restore and ls
    local ckid = select(2, ck("take", id)):match("ck%-%x+")
    code, _, err = ck("take", "sb-0000000000000000")
    assert.equal(1, code)
    assert.matches("no sandbox sb-0000000000000000 in the ledger", err, 1, true)
    code, _, err = ck("restore", ckid, "sb-0000000000000000")
    assert.equal(1, code)
    assert.matches("no sandbox sb-0000000000000000 in the ledger", err, 1, true)
    code, _, err = ck("ls", "sb-0000000000000000")
    assert.equal(1, code)
    assert.matches("sandlot: checkpoint: no such sandbox: sb-0000000000000000", err, 1, true)
    -- what the provider cannot do: local has no snapshots of its own
    code, out, err = ck("take", id, "--native")
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("not_supported: checkpoint: local has no native checkpoints", err, 1, true)
    assert.equal(0, (run("rm", id)))
  end)

  it("names a corrupt record, leaves it as it is and still lists the others", function()
    local id = make("x")
    local good = select(2, ck("take", id)):match("ck%-%x+")
    local bad = select(2, ck("take", id)):match("ck%-%x+")
    assert(good and bad)
    local l = assert(ledger.open())
    assert(l.db:write({ { "UPDATE checkpoints SET record = '{\"id\": 1' WHERE id = ?",
                          { bad } } }))
    local file = dir .. "/state/sandlot/checkpoints/ck-00000000000000aa.json"
    local f = assert(io.open(file, "wb"))
    f:write("{not json")
    f:close()
    local _, code, out, err
    code, out, err = ck("ls", "--json")
    assert.equal(1, code)
    local list = json.decode(out)
    assert.equal(1, #list)
    assert.equal(good, list[1].id)
    assert.matches("the record of checkpoint " .. bad .. " is corrupt", err, 1, true)
    assert.matches(l.path, err, 1, true)
    assert.matches("checkpoint record " .. file .. " is corrupt", err, 1, true)
    code, out, err = ck("ls")                  -- the table likewise
    assert.equal(1, code)
    assert.matches(good, out, 1, true)
    assert.not_matches(bad, out, 1, true)
    assert.matches(bad, err, 1, true)
    -- restore and create --from it: refused, naming the ledger; nothing created
    code, _, err = ck("restore", bad, id)
    assert.equal(1, code)
    assert.matches("corrupt", err, 1, true)
    assert.matches(l.path, err, 1, true)
    local before = sandboxes()
    code, _, err = run("create", "--provider", "local", "--from", bad)
    assert.equal(1, code)
    assert.matches("invalid_input: ledger " .. l.path, err, 1, true)
    assert.equal(before, sandboxes())
    -- left as they were
    assert.equal('{"id": 1', assert(l.db:ck_get(bad)).record)
    assert.equal("{not json", read(file))
    assert.equal(0, (ck("rm", good)))
    assert.equal(0, (run("rm", id)))
  end)

  it("gives usage errors (exit 2) for a bad verb, a misplaced option, missing arguments",
     function()
    local _, code, out, err
    code, out, err = ck("tkae", "sb-0000000000000000")
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("unknown verb 'tkae' (did you mean 'take'?)", err, 1, true)
    assert.matches("usage: sandlot checkpoint", err, 1, true)
    code, _, err = ck("ls", "--name", "x")
    assert.equal(2, code)
    assert.matches("--name is an option of take, not of ls", err, 1, true)
    code, _, err = ck("restore", "ck-0000000000000000")
    assert.equal(2, code)
    assert.matches("restore: missing ID", err, 1, true)
    code, _, err = ck("rm")
    assert.equal(2, code)
    assert.matches("rm: missing CK", err, 1, true)
    code, _, err = ck("take", "sb-0000000000000000", "--portable", "--native")
    assert.equal(2, code)
    assert.matches("contradict", err, 1, true)
    code, _, err = ck()
    assert.equal(2, code)
    assert.matches("missing a verb", err, 1, true)
    code, out = run("help", "checkpoint")
    assert.equal(0, code)
    assert.matches("restore CK ID", out, 1, true)
  end)
end)

-- the fake's sprites are local sandboxes with their own / (bubblewrap)
local ns_why = require("spec.support.namespaces").skip()

describe("sandlot checkpoint on native snapshots (sprites fake)", function()
  local dir, env, saved, f
  lazy_setup(function()
    if ns_why or not sandlot.http.serve then return end
    dir = h.tmpdir()
    saved = os.getenv("XDG_STATE_HOME")
    sys.setenv("XDG_STATE_HOME", dir .. "/state")
    ledger.reset()
    f = require("spec.fakes.sprites").start{}
    local cf = assert(io.open(dir .. "/config.lua", "w"))
    cf:write(("return { providers = { sp = { \"sprites\", api_url = %q, token = %q } } }\n")
             :format(f.url, f.token))
    cf:close()
    env = { XDG_STATE_HOME = dir .. "/state", SANDLOT_CONFIG = dir .. "/config.lua",
            SANDLOT_PROVIDER = false }
  end)
  lazy_teardown(function()
    if f then f.stop() end
    if dir then
      ledger.reset()
      sys.setenv("XDG_STATE_HOME", saved)
      h.rmtree(dir)
    end
  end)

  local function run(...)
    return h.host({ ... }, { env = env, cwd = "/" })
  end

  it("restores in place, and refuses what the provider cannot do", h.task(function()
    if ns_why then return pending(ns_why) end
    if not f then return pending("needs sandlot.http.serve") end
    local _, code, out, err
    code, out, err = run("create", "--provider", "sp")
    assert.equal(0, code, err)
    local id = out:match("^(sb%-%x+)\n$")
    assert(id, out)
    assert.equal(0, (run("exec", id, "--", "sh", "-c", "printf before > state.txt")))
    code, out, err = run("checkpoint", "take", id, "--name", "first", "--json")
    assert.equal(0, code, err)
    local rec = json.decode(out)
    assert.equal("native", rec.kind)
    assert.is_string(rec.native_id)
    assert.equal(1, #f.fake.sprites[rec.sandbox_id].checkpoints)   -- the service has it
    code, out = run("checkpoint", "ls", id)
    assert.equal(0, code)
    assert.matches(lit(rec.id) .. "%s+first%s+native%s+sp%s+" .. lit(id) .. "%s+%d+s ago%s+%-\n",
                   out)

    assert.equal(0, (run("exec", id, "--", "sh", "-c", "printf after > state.txt")))
    assert.equal("after", select(2, run("exec", id, "--", "cat", "state.txt")))
    code, out, err = run("checkpoint", "restore", rec.id, id)
    assert.equal(0, code, err)
    assert.equal(id .. "\n", out)
    code, out = run("exec", id, "--", "cat", "state.txt")
    assert.equal(0, code)
    assert.equal("before", out)

    -- sprites restores in place only: no new sandbox from it, of sprites or another provider
    code, out, err = run("create", "--provider", "sp", "--from", rec.id)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("not_supported: checkpoint " .. rec.id .. ": sprites restores its " ..
                   "snapshots in place", err, 1, true)
    code, _, err = run("create", "--provider", "local", "--from", rec.id)
    assert.equal(1, code)
    assert.matches("not_supported: checkpoint " .. rec.id .. " is sprites's own snapshot",
                   err, 1, true)
    -- nor delete it through sandlot: the record is kept
    code, out, err = run("checkpoint", "rm", rec.id)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("cannot delete its snapshots through sandlot; the record is kept", err, 1,
                   true)
    code, out = run("checkpoint", "ls", "--json")
    assert.equal(0, code)
    assert.equal(rec.id, json.decode(out)[1].id)

    -- --portable seeds any provider
    code, out, err = run("checkpoint", "take", id, "--portable")
    assert.equal(0, code, err)
    local pk = out:match("^(ck%-%x+)\n$")
    code, out, err = run("create", "--provider", "local", "--from", pk)
    assert.equal(0, code, err)
    local lid = out:match("^(sb%-%x+)\n$")
    code, out = run("exec", lid, "--", "cat", "state.txt")
    assert.equal(0, code)
    assert.equal("before", out)
    assert.equal(0, (run("checkpoint", "rm", pk)))
    assert.equal(0, (run("rm", id, lid)))
  end))
end)
