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
    assert.matches("tests: %d+ passed, 0 failed, 0 pending", out)
  end)

  it("explains what is wrong with a broken provider table", function()
    local file = write(tmp .. "/broken.lua", [[
      return { name = "broken", create = function() end, destory = function() end,
               status = function() end, exec = "no" }]])
    local rc, out, err = h.host({ "check-provider", file }, { env = env })
    assert.equal(1, rc, out)
    assert.matches("is not a valid provider", err, 1, true)
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
    assert.not_equal(0, rc)
    assert.matches("round%-trips every byte value", out)
    assert.matches("tests: %d+ passed, [1-9]%d* failed", out)
  end)

  it("reports an unknown provider and bad usage", function()
    local rc, _, err = h.host({ "check-provider", "no_such_provider_xyz" }, { env = env })
    assert.equal(1, rc)
    assert.matches("not_found: no provider named 'no_such_provider_xyz'", err, 1, true)
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
    rc, _, err = h.host({ "help", "nope" })
    assert.equal(2, rc)
    assert.matches("no command named 'nope'", err, 1, true)
  end)

  it("rejects an unknown command with exit 2", function()
    local rc, out, err = h.host({ "frobnicate" })
    assert.equal(2, rc)
    assert.matches("unknown command 'frobnicate'", err, 1, true)
    assert.matches("commands:", out, 1, true)
  end)
end)
