-- spec/rockspec_spec.lua: `luarocks make` with the repository's rockspec into a temporary tree,
-- then a stock lua5.4 that knows only that tree (`luarocks path`) creates a local sandbox, runs
-- a command in it and finds the providers and the conformance suite the rock installed.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local ROOT = assert(sys.realpath("."))

local function rockspec()
  local r = assert(sandlot.proc.run({ "sh", "-c", "ls sandlot-*.rockspec" }, { cwd = ROOT }))
  return (r.stdout:match("[^\n]+"))
end

describe("the rockspec", function()
  local tree, env

  lazy_setup(function()
    local r = sandlot.proc.run({ "sh", "-c", "command -v luarocks" })
    if not r or r.exit_code ~= 0 then return end
    tree = h.tmpdir() .. "/tree"
    -- a plain build (never the sanitizer one: stock lua5.4 has no sanitizer runtime), and no
    -- jobserver or variables inherited from the make running this suite
    env = { MAKEFLAGS = false, MFLAGS = false, MAKELEVEL = false, SANITIZE = false,
            B = ROOT .. "/build", LUA_PATH = false, LUA_CPATH = false, LUA_PATH_5_4 = false,
            LUA_CPATH_5_4 = false, HOME = h.tmpdir() }
    local rr = assert(sandlot.proc.run({ "luarocks", "--lua-version", "5.4", "make", "--tree", tree,
                                         rockspec() }, { cwd = ROOT, env = env, timeout = 600 }))
    assert(rr.exit_code == 0, "luarocks make failed:\n" .. rr.stdout .. rr.stderr)
  end)

  local function lua(code)
    local paths = assert(sandlot.proc.run({ "luarocks", "--lua-version", "5.4", "--tree", tree,
                                            "path", "--lr-path" }, { env = env }))
    local cpaths = assert(sandlot.proc.run({ "luarocks", "--lua-version", "5.4", "--tree", tree,
                                             "path", "--lr-cpath" }, { env = env }))
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    e.LUA_PATH_5_4 = paths.stdout:gsub("%s+$", "") .. ";;"
    e.LUA_CPATH_5_4 = cpaths.stdout:gsub("%s+$", "") .. ";;"
    e.SANDLOT_PATH, e.XDG_CONFIG_HOME, e.SANDLOT_CONFIG = false, h.tmpdir(), false
    return assert(sandlot.proc.run({ "lua5.4", "-e", code }, { env = e, cwd = h.tmpdir(),
                                                               timeout = 60 }))
  end

  it("installs a module that a stock lua5.4 loads and uses", function()
    if not tree then pending("luarocks is not installed (make deps installs it)") return end
    local r = lua([[
      local s = require("sandlot")
      print(package.searchpath("sandlot", package.path))
      s.spawn(function()
        local sb = assert(s.create("local"))
        io.write(assert(sb:exec("echo hi from the rock")).stdout)
        sb:destroy()
      end)
      assert(s.run())
      print(require("sandlot._paths").root())
      print(package.searchpath("providers.docker", package.path) ~= nil)
    ]])
    assert.equal(0, r.exit_code, r.stderr)
    local lines = {}
    for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(tree .. "/share/lua/5.4/sandlot/init.lua", lines[1])
    assert.equal("hi from the rock", lines[2])
    assert.equal(tree .. "/share/lua/5.4/sandlot/share", lines[3])
    assert.equal("true", lines[4])
    assert.truthy(sys.realpath(tree .. "/lib/lua/5.4/sandlot.so"))
    assert.truthy(sys.realpath(tree .. "/share/lua/5.4/sandlot/share/spec/conformance/init.lua"))
  end)
end)
