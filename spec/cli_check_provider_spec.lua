-- spec/cli_check_provider_spec.lua: `sandlot help` and `sandlot check-provider`, run as a user
-- runs them: a good provider passes with exit 0, a broken table is explained, a provider that
-- misbehaves fails the suite with a non-zero exit.
local h = require("spec.helper")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("sandlot check-provider", function()
  local tmp, env

  before_each(function()
    tmp = h.tmpdir()
    env = { XDG_STATE_HOME = tmp .. "/state", SANDLOT_CONFIG = false, SANDLOT_PROVIDER = false }
  end)

  after_each(function()
    h.rmtree(tmp)
  end)

  it("passes the local provider #slow", function()
    local rc, out, err = h.host({ "check-provider", "local" }, { env = env, timeout = 300 })
    assert.equal(0, rc, out .. err)
    assert.matches("provider local\n", out, 1, true)
    assert.matches("  write_files  write_file\n", out, 1, true)
    assert.matches("\n  ok      files round%-trips every byte value\n", out)
    assert.matches("\ntests: %d+ passed, 0 failed, 0 pending\n$", out)
    assert.not_matches("[ RUN      ]", out, 1, true)        -- the short table, not the runner's
  end)

  it("--verbose gives the runner's full output; --json one document with every case", function()
    local rc, out, err = h.host({ "check-provider", "local", "--verbose",
                                  "--filter", "exec runs" },
                                { env = env, timeout = 120 })
    assert.equal(0, rc, out .. err)
    assert.matches("[ RUN      ]", out, 1, true)
    assert.matches("tests: %d+ passed, 0 failed", out)
    rc, out, err = h.host({ "check-provider", "local", "--json", "--filter", "exec runs" },
                          { env = env, timeout = 120 })
    assert.equal(0, rc, out .. err)
    local doc = assert(require("sandlot.wire.json").decode(out))
    assert.equal("local", doc.provider)
    assert.equal("native", doc.capabilities.exec)
    assert.is_true(#doc.tests >= 2)
    for _, t in ipairs(doc.tests) do
      assert.equal("passed", t.status)
      assert.matches("^exec runs", t.name)
      assert.equal("spec/conformance/init.lua", t.file)          -- repo-relative
      assert.is_number(t.line)
    end
    assert.same({ passed = #doc.tests, failed = 0, pending = 0 }, doc.summary)
  end)

  it("explains what is wrong with a broken provider table", function()
    local file = write(tmp .. "/broken.lua", [[
      return { name = "broken", create = function() end, destory = function() end,
               status = function() end, exec = "no" }]])
    local rc, out, err = h.host({ "check-provider", file }, { env = env })
    assert.equal(1, rc, out)
    assert.matches("^sandlot: check%-provider: .*broken%.lua is not a valid provider", err)
    assert.matches("missing required function 'destroy'", err, 1, true)
    assert.matches("unknown name 'destory' (did you mean 'destroy'?)", err, 1, true)
    assert.matches("'exec' must be a function(ctx, ...), got string", err, 1, true)
  end)

  it("fails (non-zero) for a provider that corrupts files", function()
    local file = write(tmp .. "/lossy.lua", [[
      local lp = require("providers.local")
      local M = {}
      for k, v in pairs(lp) do M[k] = v end
      M.name = "lossy"
      function M.read_file(ctx, hd, path)
        local data, err = lp.read_file(ctx, hd, path)
        if data and #data > 1 then data = data:sub(2) end
        return data, err
      end
      return M]])
    local rc, out = h.host({ "check-provider", file, "--big-file-mb", "1" },
                           { env = env, timeout = 300 })
    assert.equal(1, rc)
    assert.matches("\n  FAILED  files round%-trips every byte value\n", out)
    assert.matches("\nFAILED files round%-trips every byte value\n" ..
                   "  spec/conformance/init%.lua:%d+\n", out)
    assert.not_matches(require("sandlot._paths").root(), out, 1, true)   -- no absolute paths
    assert.matches("tests: %d+ passed, [1-9]%d* failed", out)
    local rc2, out2 = h.host({ "check-provider", file, "--json", "--filter", "every byte" },
                             { env = env, timeout = 300 })
    assert.equal(1, rc2)
    local doc = assert(require("sandlot.wire.json").decode(out2))
    assert.equal("failed", doc.tests[1].status)
    assert.is_string(doc.tests[1].message)
    assert.equal(1, doc.summary.failed)
  end)

  it("reports an unknown provider and bad usage", function()
    local rc, _, err = h.host({ "check-provider", "no_such_provider_xyz" }, { env = env })
    assert.equal(1, rc)
    assert.matches("sandlot: check-provider: not_found: no provider named " ..
                   "'no_such_provider_xyz'", err, 1, true)
    rc, _, err = h.host({ "check-provider" }, { env = env })
    assert.equal(2, rc)
    assert.matches("usage: sandlot check-provider", err, 1, true)
    rc = h.host({ "check-provider", "local", "--bogus" }, { env = env })
    assert.equal(2, rc)
  end)
end)

describe("sandlot help", function()
  it("lists the commands and shows one command's usage", function()
    local rc, out = h.host({ "help" })
    assert.equal(0, rc)
    assert.matches("check%-provider%s+run the provider conformance suite", out)
    rc, out = h.host({ "help", "check-provider" })
    assert.equal(0, rc)
    assert.matches("usage: sandlot check-provider FILE_OR_NAME", out, 1, true)
    local err
    rc, out, err = h.host({ "help", "nope" })
    assert.equal(2, rc, out)
    assert.matches("no command named 'nope'", err, 1, true)
  end)

  it("rejects an unknown command with exit 2, pointing at help", function()
    local rc, out, err = h.host({ "frobnicate" })
    assert.equal(2, rc)
    assert.equal("", out)
    assert.matches("unknown command 'frobnicate'", err, 1, true)
    assert.matches("see 'sandlot help'", err, 1, true)
  end)
end)
