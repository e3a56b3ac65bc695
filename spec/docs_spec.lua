-- spec/docs_spec.lua: docs/api.md is what docs/api.lua writes from the doc comments today
-- (so a changed or added function without `make docs` fails here), and every public function
-- has a doc comment.
local sandlot = require("sandlot")
local h = require("spec.helper")

local read = h.read

describe("the API reference", function()
  it("docs/api.md is up to date (run `make docs`)", function()
    local r = assert(sandlot.proc.run({ h.BIN, "docs/api.lua" }, { timeout = 60 }))
    assert.equal(0, r.exit_code, r.stderr)
    assert.is_true(r.stdout == read("docs/api.md"),
                   "docs/api.md is stale: run `make docs` and commit it")
  end)

  it("types/sandlot_core.lua is up to date and is valid Lua", function()
    local r = assert(sandlot.proc.run({ h.BIN, "docs/types.lua" }, { timeout = 60 }))
    assert.equal(0, r.exit_code, r.stderr)
    assert.is_true(r.stdout == read("types/sandlot_core.lua"),
                   "types/sandlot_core.lua is stale: run `make docs` and commit it")
    assert.truthy(load(r.stdout, "=types", "t", {}))
    assert.matches("\n---sched.spawn(fn, ...) -> task\n" ..
                   "function sandlot_core_sched.spawn(fn, ...) end", r.stdout, 1, true)
  end)

  it("documents every public function", function()
    local text = read("docs/api.md")
    assert.is_nil(text:find("## Not documented yet", 1, true),
                  text:match("## Not documented yet\n\n([^\n]*)"))
    assert.matches("### `sandlot.create(prov_or_opts, opts)`", text, 1, true)
    assert.matches("### `sb:exec(cmd, opts)`\n\nRuns a command in the sandbox.", text, 1, true)
  end)
end)
