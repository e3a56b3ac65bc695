-- spec/cli_create_exec_spec.lua: `sandlot create` makes a sandbox that outlives the command,
-- and `sandlot exec ID -- CMD` runs in it from another process, streaming output and passing
-- the command's exit status back (as docker exec does).
local json = require("sandlot.wire.json")
local sandlot = require("sandlot")
local h = require("spec.helper")

describe("sandlot create and exec", function()
  local env, id
  lazy_setup(function()
    env = { SANDLOT_PROVIDER = false, SANDLOT_CONFIG = false, XDG_CONFIG_HOME = h.tmpdir() }
    local code, out, err = h.host({ "create", "--name", "cli-spec", "--label", "team=qa" },
                                  { env = env })
    assert(code == 0, err)
    id = out:match("^(sb%-%x+)\n$")
    assert(id, "create printed " .. out)
  end)
  lazy_teardown(function()
    if id then
      local sb = sandlot.get(id, { reconnect = false })
      if sb then sb:destroy() end
    end
  end)

  local function exec(args)
    local argv = { "exec" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return h.host(argv, { env = env })
  end

  it("records the sandbox, which another process finds by its id", function()
    local sb = assert(sandlot.get(id))
    assert.equal("cli-spec", sb.name)
    local rec = assert(sandlot.list({ label = { team = "qa" } }))
    local found = false
    for _, r in ipairs(rec) do found = found or r.id == id end
    assert.is_true(found)
  end)

  it("streams stdout and stderr apart and exits with the command's status", function()
    local code, out, err = exec({ id, "--", "sh", "-c", "echo out; echo err >&2; exit 3" })
    assert.equal(3, code)
    assert.equal("out\n", out)
    assert.equal("err\n", err)
  end)

  it("passes --env and --cwd, and runs argv without a shell", function()
    assert(assert(sandlot.get(id)):mkdir("d"))
    local code, out = exec({ id, "--env", "A=one", "--env", "B=two words", "--cwd", "/d", "--",
                             "sh", "-c", 'echo "$A|$B|$(pwd)"; echo "$0"', "literal;$x" })
    assert.equal(0, code)
    -- /d inside namespaces; <sandbox root>/d where bubblewrap cannot isolate (a chroot)
    assert.matches("^one|two words|[^\n]*/d\nliteral;%$x\n$", out)
  end)

  it("gives 124 for a timeout and 128+N for a signal", function()
    local t0 = sandlot.clock and sandlot.clock() or os.time()
    assert.equal(124, (exec({ id, "--timeout", "0.3", "--", "sleep", "30" })))
    assert.truthy((sandlot.clock and sandlot.clock() or os.time()) - t0 < 20)
    assert.equal(128 + 9, (exec({ id, "--", "sh", "-c", "kill -KILL $$" })))
  end)

  it("prints one JSON document with --json", function()
    local code, out = exec({ id, "--json", "--", "sh", "-c", "printf 'a\\0b'; exit 2" })
    assert.equal(2, code)
    local doc = assert(json.decode(out))
    assert.equal(2, doc.exit_code)
    assert.equal("a\0b", doc.stdout)
    assert.is_false(doc.timed_out)
  end)

  it("fails clearly for an unknown id (1) and a missing command (2)", function()
    local code, _, err = exec({ "sb-0000000000000000", "--", "true" })
    assert.equal(1, code)
    assert.matches("sandlot: exec: .*no sandbox sb%-0000000000000000 in the ledger", err)
    local c2, _, err2 = exec({ id })
    assert.equal(2, c2)
    assert.matches("missing the command", err2, 1, true)
    local c3, _, err3 = exec({ id, "--env", "1BAD", "--", "true" })
    assert.equal(2, c3)
    assert.matches("--env needs NAME=VALUE", err3, 1, true)
  end)

  it("create --json names the ids; a bad --label is a usage error", function()
    local code, out = h.host({ "create", "--json" }, { env = env })
    assert.equal(0, code)
    local doc = assert(json.decode(out))
    assert.matches("^sb%-", doc.id)
    assert.equal("local", doc.provider)
    assert.is_string(doc.external_id)
    assert(sandlot.get(doc.id)):destroy()
    local c2, _, err = h.host({ "create", "--label", "nokey" }, { env = env })
    assert.equal(2, c2)
    assert.matches("--label needs K=V", err, 1, true)
  end)
end)
