-- spec/bytecode_spec.lua: the library served from bytecode compiled at build time
-- (core/bytecode.c, core/bytecode_gen.lua). A module is served from it only when the file found
-- on package.path holds the very text it was compiled from; then it runs under that file's path
-- with its line numbers. An edited copy, even one of the same size, loads from its source.
local sandlot = require("sandlot")
local bytecode = require("sandlot.core.bytecode")
local h = require("spec.helper")

-- Runs `code` in a fresh sandlot process with TMP's modules ahead of the library's; returns
-- its stdout lines as a table.
local function run_with(tmp, code, env)
  local pre = ("package.path = %q .. '/?.lua;' .. package.path\n"):format(tmp)
  local r = assert(sandlot.proc.run({ h.BIN, "-e", pre .. code }, { env = env, timeout = 60 }))
  assert.equal(0, r.exit_code, r.stderr)
  local out = {}
  for line in r.stdout:gmatch("[^\n]+") do out[#out + 1] = line end
  return out, r
end

local read = h.read

local function copy_id(tmp, edit)
  local src = read(assert(package.searchpath("sandlot.id", package.path)))
  assert(sandlot.proc.run({ "mkdir", "-p", tmp .. "/sandlot" }))
  local f = assert(io.open(tmp .. "/sandlot/id.lua", "wb"))
  f:write(edit and edit(src) or src)
  f:close()
  return src
end

local PROBE = [[
local id = require("sandlot.id")
local s = require("sandlot.core.bytecode").stats()
print(tostring(s.installed), s.hits or -1, s.misses or -1)
print(type(id) == "table" and type(id.hex) == "function" and
      debug.getinfo(id.hex, "S").source or ("no id.hex: " .. type(id)))
print(type(id) == "table" and type(id.hex) == "function" and
      debug.getinfo(id.hex, "S").linedefined or -1)
print(tostring(type(id) == "table" and id.__planted))
]]

local function line_of(src, pattern)
  local n = 0
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(pattern) then return n end
  end
end

describe("bytecode", function()
  it("serves this process's modules, under their own paths and line numbers", function()
    local s = bytecode.stats()
    assert.is_true(s.installed)
    assert.is_true(s.modules > 50, "modules: " .. s.modules)
    assert.is_true(s.hits > 10, "hits: " .. s.hits)
    local fs = require("sandlot.fs")
    local path = package.searchpath("sandlot.fs", package.path)
    assert.equal("@" .. path, debug.getinfo(fs.path, "S").source)
    assert.equal(line_of(read(path), "^function M%.path%("),
                 debug.getinfo(fs.path, "S").linedefined)
    local ok, err = pcall(fs.mkdir_p, nil)            -- a runtime error: the file and line
    assert.is_false(ok)
    local at = ("%s:%d:"):format(path, line_of(read(path), "^function M%.mkdir_p%(") + 1)
    assert.truthy(tostring(err):find(at, 1, true), tostring(err) .. " lacks " .. at)
  end)

  it("serves an unedited copy from bytecode, under the copy's path", function()
    local tmp = h.tmpdir()
    local src = copy_id(tmp)
    local out = run_with(tmp, PROBE)
    assert.same({ "true", "1", "0" }, { out[1]:match("^(%S+)%s+(%S+)%s+(%S+)$") })
    assert.equal("@" .. tmp .. "/sandlot/id.lua", out[2])
    assert.equal(tostring(line_of(src, "^function M%.hex%(")), out[3])
  end)

  it("loads an edited copy from its source: a planted line, and a same-size edit", function()
    local tmp = h.tmpdir()
    copy_id(tmp, function(s)
      return (s:gsub("\nreturn M%s*$", "\nM.__planted = 'yes'\nreturn M\n"))
    end)
    local out = run_with(tmp, PROBE)
    assert.same({ "true", "0", "1" }, { out[1]:match("^(%S+)%s+(%S+)%s+(%S+)$") })
    assert.equal("yes", out[4])                        -- the edited text is what ran

    local tmp2 = h.tmpdir()
    local orig = copy_id(tmp2, function(s)
      local e = s:gsub("\nreturn M(%s*)$", "\nreturn 0%1")
      return e
    end)
    assert.equal(#orig, #read(tmp2 .. "/sandlot/id.lua"))   -- same size, other text
    out = run_with(tmp2, PROBE)
    assert.same({ "true", "0", "1" }, { out[1]:match("^(%S+)%s+(%S+)%s+(%S+)$") })
    assert.equal("no id.hex: number", out[2])          -- the source's 0, not the compiled M
  end)

  it("is off with SANDLOT_NO_BYTECODE (not when it is empty or 0)", function()
    local tmp = h.tmpdir()
    copy_id(tmp)
    local out = run_with(tmp, PROBE, { SANDLOT_NO_BYTECODE = "1" })
    assert.equal("false", out[1]:match("^(%S+)"))
    assert.equal("@" .. tmp .. "/sandlot/id.lua", out[2])
    for _, v in ipairs({ "", "0" }) do
      out = run_with(tmp, PROBE, { SANDLOT_NO_BYTECODE = v })
      assert.same({ "true", "1", "0" }, { out[1]:match("^(%S+)%s+(%S+)%s+(%S+)$") })
    end
  end)
end)
