-- spec/lib/kit_modules_spec.lua: providers (and the HTTP walkthrough's) use only the kit
-- modules providers/README.md lists (issue 9: no private module such as sandlot._tar or
-- sandlot._id behind a provider's back).

local h = require("spec.helper")
local read = h.read

-- The modules named in the first column of the README's kit table ("`sandlot.x`, `sandlot.y`").
local function kit()
  local set = {}
  for line in read("providers/README.md"):gmatch("[^\n]+") do
    local first = line:match("^| (`sandlot[^|]*) |")
    if first then
      for m in first:gmatch("`(sandlot[%w_.*]*)`") do set[m] = true end
    end
  end
  return set
end

-- The sandlot modules a source requires that the kit does not list.
local function outside(src, set)
  local bad = {}
  for m in src:gmatch("require%s*%(?%s*[\"'](sandlot[%w_.]*)[\"']") do
    local wire = m:match("^sandlot%.wire%.") and set["sandlot.wire.*"]
    if not set[m] and not wire then bad[#bad + 1] = m end
  end
  table.sort(bad)
  return bad
end

describe("the provider kit", function()
  it("lists its modules in providers/README.md", function()
    local set = kit()
    for _, m in ipairs({ "sandlot.errors", "sandlot.exec", "sandlot._check", "sandlot.id",
                         "sandlot.api", "sandlot.wire.*" }) do
      assert.is_true(set[m], m .. " is missing from the kit table")
    end
  end)

  it("is all a provider in providers/ requires", function()
    local set = kit()
    -- the check sees a private module: plant one
    assert.same({ "sandlot._tar", "sandlot.core.http" },
                outside('local t = require("sandlot._tar")\n' ..
                        'local h = require "sandlot.core.http"\n' ..
                        'local j = require("sandlot.wire.json")', set))
    local p <close> = io.popen("ls providers/*.lua spec/fakes/boxes_provider.lua")
    local n = 0
    for path in p:lines() do
      n = n + 1
      assert.same({}, outside(read(path), set), path .. " requires modules outside the kit")
    end
    assert.is_true(n >= 4)
  end)
end)
