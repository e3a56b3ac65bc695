-- spec/fakes_check_spec.lua: the `make check-fakes` runner (spec/fakes/check/run.lua) on its
-- worked example (hello.mjs, no npm package: it runs offline) and on a script the fake rejects.
local sandlot = require("sandlot")
local h = require("spec.helper")

local function have(bin)
  return assert(sandlot.proc.run({ "sh", "-c", "command -v " .. bin })).exit_code == 0
end

describe("make check-fakes (spec/fakes/check/run.lua)", function()
  it("passes hello.mjs against spec/fakes/hello.lua", h.task(function()
    if not (have("node") and have("npm")) then return pending("needs node and npm") end
    -- its summary line goes to a file of this spec's, never to the suite's own (CI sums that
    -- file: a nested run writing there counted these cases twice, the failing one as a failure)
    local dir = h.tmpdir()
    local code, out = h.host({ "spec/fakes/check/run.lua", "spec/fakes/check/hello.mjs" },
                             { env = { SANDLOT_TEST_SUMMARY = dir .. "/summary" } })
    local f = io.open(dir .. "/summary", "r")
    local line = f and f:read("a")
    if f then f:close() end
    h.rmtree(dir)
    assert.equal(0, code, out)
    assert.matches("hello: ok", out)
    assert.matches("1 passed, 0 failed", out)
    assert.equal("1 0 0\n", line)
  end))

  it("fails a script whose requests the fake rejected, naming them", h.task(function()
    if not (have("node") and have("npm")) then return pending("needs node and npm") end
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. "/nope.mjs", "w"))
    f:write("// fake: hello\n// npm:\nconst [url] = process.argv.slice(2);\n",
            "await fetch(url + '/v1/hello');\n")
    f:close()
    local code, out = h.host({ "spec/fakes/check/run.lua", dir .. "/nope.mjs" },
                             { env = { SANDLOT_TEST_SUMMARY = false } })
    h.rmtree(dir)
    assert.equal(1, code)
    assert.matches("GET /v1/hello: 401 missing or wrong token", out)
    assert.matches("0 passed, 1 failed", out)
  end))
end)
