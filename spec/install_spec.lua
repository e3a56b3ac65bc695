-- spec/install_spec.lua: `make install DESTDIR=<tmp> PREFIX=/usr/local` from the build under
-- test, then the installed tree is used as its users would: the host binary, pkg-config and a
-- C program compiled against it, a stock lua5.4, and finally `make uninstall`.
local sandlot = require("sandlot")
local sys = require("sandlot.core.sys")
local h = require("spec.helper")

local ROOT = assert(sys.realpath("."))
local BUILD = assert(sys.realpath(h.BIN:match("^(.*)/[^/]*$") or "."))
local SANITIZE = os.getenv("SANITIZE")
if (SANITIZE == nil or SANITIZE == "") and BUILD:match("/build%-san$") then
  SANITIZE = "address,undefined"
end
SANITIZE = SANITIZE ~= "" and SANITIZE or nil

-- make run from a spec under `make test` must not inherit the outer make's jobserver
local NO_MAKE_ENV = { MAKEFLAGS = false, MFLAGS = false, MAKELEVEL = false }

local function run(argv, env)
  local r = assert(sandlot.proc.run(argv, { env = env or NO_MAKE_ENV, timeout = 120 }))
  assert(r.exit_code == 0, table.concat(argv, " ") .. " failed:\n" .. r.stdout .. r.stderr)
  return r.stdout
end

local function make(target, destdir, prefix)
  return run({ "make", "-s", "-C", ROOT, target, "DESTDIR=" .. destdir, "PREFIX=" .. prefix,
               "B=" .. BUILD, "SANITIZE=" .. (SANITIZE or "") })
end

local read = h.read

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function files_under(dir)
  local out = run({ "find", dir, "!", "-type", "d" })
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line:sub(#dir + 2) end
  table.sort(list)
  return list
end

describe("make install", function()
  local tmp, dest, usr

  setup(function()
    tmp = h.tmpdir()
    dest = tmp .. "/root"
    usr = dest .. "/usr/local"
    make("install", dest, "/usr/local")
  end)

  teardown(function()
    if tmp then h.rmtree(tmp) end
  end)

  after_each(h.assert_no_children)

  it("installs the binary, libraries, header, C module, Lua library and sandlot.pc", function()
    for _, f in ipairs({ "bin/sandlot", "include/sandlot.h", "lib/libsandlot.a",
                         "lib/libsandlot.so", "lib/libsandlot.so.0",
                         "lib/libsandlot.so." .. sandlot.version, "lib/lua/5.4/sandlot.so",
                         "lib/sandlot/http.so", "lib/sandlot/ssh.so",
                         "lib/sandlot/sandlot-peer", "lib/pkgconfig/sandlot.pc",
                         "share/lua/5.4/sandlot/init.lua",
                         "share/lua/5.4/sandlot/proc.lua", "share/sandlot/providers",
                         "share/man/man1/sandlot.1", "share/bash-completion/completions/sandlot",
                         "share/doc/sandlot/README.md", "share/doc/sandlot/LICENSE" }) do
      assert(exists(usr .. "/" .. f), "not installed: " .. f)
    end
    assert.equal(read(ROOT .. "/core/sandlot.h"), read(usr .. "/include/sandlot.h"))
    -- the shared library is found by its soname, and exports only the public API
    local dyn = run({ "readelf", "-dW", usr .. "/lib/libsandlot.so" })
    assert.matches("SONAME%)%s+Library soname: %[libsandlot%.so%.0%]", dyn)
    local syms = run({ "nm", "-D", "--defined-only", usr .. "/lib/libsandlot.so" })
    for name in syms:gmatch(" T ([%w_]+)") do
      -- a sanitizer build also exports its runtime hook (__lsan_default_suppressions)
      local hook = SANITIZE and name:match("^__[al]san_")
      assert(name:match("^sandlot_") or name:match("^luaopen_") or hook, "exported: " .. name)
    end
    assert.matches(" T sandlot_open\n", syms)
    assert.matches(" T sandlot_stalled\n", syms)
    for _, f in ipairs(files_under(dest)) do
      assert(not f:match("/%.") and not f:match("^%."), "hidden file installed: " .. f)
    end
  end)

  it("installs a man page that lists every command, and a completion that finds them", function()
    local page = read(usr .. "/share/man/man1/sandlot.1")
    assert.matches("^%.TH SANDLOT 1", page)
    for _, n in ipairs(require("sandlot.cli").NAMES) do
      assert.matches(".SS sandlot " .. n:gsub("%-", "\\%%-"), page, 1, false)
    end
    local man = sandlot.proc.run({ "sh", "-c", "command -v man" })
    if man and man.exit_code == 0 then
      local env = { MANWIDTH = "80", MANPAGER = "cat", PAGER = "cat" }
      local r = assert(sandlot.proc.run({ "man", "-l", usr .. "/share/man/man1/sandlot.1" },
                                        { env = env }))
      assert.equal(0, r.exit_code, r.stderr)
      assert.equal("", r.stderr)
      assert.matches("EXIT STATUS", r.stdout, 1, true)
    end
    local r = assert(sandlot.proc.run({ "bash", "-c",
      'source "$1"; COMP_WORDS=(sandlot c); COMP_CWORD=1; _sandlot; echo "${COMPREPLY[@]}"; ' ..
      'COMP_WORDS=(sandlot gc --ol); COMP_CWORD=2; _sandlot; echo "${COMPREPLY[@]}"',
      "bash", usr .. "/share/bash-completion/completions/sandlot" },
      { env = { PATH = usr .. "/bin:" .. os.getenv("PATH") } }))
    local c = {}
    for _, n in ipairs(require("sandlot.cli").NAMES) do
      if n:sub(1, 1) == "c" then c[#c + 1] = n end
    end
    assert.equal(table.concat(c, " ") .. "\n--older-than\n", r.stdout)
  end)

  it("runs the installed binary with the Lua library of the install tree", function()
    local r = assert(sandlot.proc.run({ usr .. "/bin/sandlot", "-e",
      'print(require("sandlot").version) print(package.searchpath("sandlot", package.path))'
      .. ' assert(require("sandlot").http.request and require("sandlot").ssh.connect)'
      .. ' assert(require("sandlot._peer.ship").binary_path():find("/bin/../lib/sandlot/", 1,'
      .. ' true))' }))
    assert.equal("", r.stderr)
    assert.equal(0, r.exit_code)
    assert.equal(sandlot.version .. "\n" .. usr .. "/share/lua/5.4/sandlot/init.lua\n",
                 r.stdout)
    local code, out = h.host({ "--version" })
    assert.equal(0, code)
    local r2 = assert(sandlot.proc.run({ usr .. "/bin/sandlot", "--version" }))
    assert.equal(out, r2.stdout)
  end)

  it("finds sandlot-peer after its own binary was replaced on disk (an upgrade)", function()
    -- the script replaces the binary running it (a new inode: /proc/self/exe then reads
    -- ".../sandlot (deleted)") and asks for the peer as replication would
    local bin = usr .. "/bin/sandlot"
    local r = assert(sandlot.proc.run({ bin, "-e", ([[
      local p = %q
      assert(os.execute("cp " .. p .. " " .. p .. ".new && mv " .. p .. ".new " .. p))
      print(require("sandlot.core.sys").realpath("/proc/self/exe") or "gone")
      print(assert(require("sandlot._peer.ship").binary_path()))]]):format(bin) }))
    assert.equal("", r.stderr)
    assert.equal(0, r.exit_code)
    local gone, peer = r.stdout:match("^([^\n]*)\n([^\n]*)\n$")
    assert.equal("gone", gone)                         -- the plant: the old path is no more
    assert.equal(usr .. "/bin/../lib/sandlot/sandlot-peer", peer)
  end)

  it("writes a sandlot.pc that pkg-config reads, with paths under ${prefix}", function()
    local pc = read(usr .. "/lib/pkgconfig/sandlot.pc")
    assert.matches("\nprefix=/usr/local\n", pc, 1, true)
    assert.matches("\nlibdir=${prefix}/lib\n", pc, 1, true)
    assert.matches("\nincludedir=${prefix}/include\n", pc, 1, true)
    assert.matches("\nVersion: " .. sandlot.version .. "\n", pc, 1, true)
    local env = { PKG_CONFIG_PATH = usr .. "/lib/pkgconfig", PKG_CONFIG_LIBDIR = false }
    assert.equal(sandlot.version .. "\n", run({ "pkg-config", "--modversion", "sandlot" }, env))
    local flags = run({ "pkg-config", "--cflags", "--libs", "sandlot" }, env)
    local lua = run({ "pkg-config", "--cflags", "--libs", "lua5.4" }, env)
    assert.matches("-I/usr/local/include ", flags, 1, true)
    assert.matches("-L/usr/local/lib -lsandlot ", flags, 1, true)
    for flag in lua:gmatch("%S+") do assert.matches(flag, flags, 1, true) end
    assert.is_nil(flags:find("-luv", 1, true))                 -- private: static links only
    assert.matches("-luv", run({ "pkg-config", "--static", "--libs", "sandlot" }, env), 1, true)
  end)

  it("builds and runs examples/embed against the installed library", function()
    -- relocate the .pc into DESTDIR the way a bundle would: only prefix= changes
    local pcdir = tmp .. "/pc"
    run({ "mkdir", "-p", pcdir })
    local pc = read(usr .. "/lib/pkgconfig/sandlot.pc"):gsub("\nprefix=[^\n]*", "\nprefix=" .. usr)
    local f = assert(io.open(pcdir .. "/sandlot.pc", "w"))
    f:write(pc)
    f:close()
    local env = { PKG_CONFIG_PATH = pcdir, PKG_CONFIG_LIBDIR = false }
    local argv = { "cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", tmp .. "/embed",
                   ROOT .. "/examples/embed/embed.c" }
    if SANITIZE then argv[#argv + 1] = "-fsanitize=" .. SANITIZE end
    for flag in run({ "pkg-config", "--cflags", "--libs", "sandlot" }, env):gmatch("%S+") do
      argv[#argv + 1] = flag
    end
    argv[#argv + 1] = "-Wl,-rpath," .. usr .. "/lib"
    run(argv)
    assert.matches("libsandlot%.so%.0 => " .. usr:gsub("%p", "%%%0") .. "/lib/libsandlot%.so%.0",
                   run({ "ldd", tmp .. "/embed" }))
    -- no LUA_PATH: libsandlot finds the Lua tree beside itself, though this tree was built
    -- for /usr/local and unpacked somewhere else
    local bare = { LUA_PATH = false, LUA_PATH_5_4 = false, LUA_CPATH = false }
    local r = assert(sandlot.proc.run({ tmp .. "/embed" }, { env = bare }))
    assert.equal("", r.stderr)
    assert.equal(0, r.exit_code)
    assert.matches("^child: exit_code=0 stdout=hello from a child\n", r.stdout)
    assert.matches("\nsandlot " .. sandlot.version:gsub("%p", "%%%0") .. "\n$", r.stdout)
    r = assert(sandlot.proc.run({ tmp .. "/embed",
      'print(package.searchpath("sandlot", package.path)) ' ..
      'print(assert(require("sandlot._peer.ship").binary_path()))' }, { env = bare }))
    assert.equal("", r.stderr)
    assert.equal(usr .. "/share/lua/5.4/sandlot/init.lua\n" ..
                 usr .. "/lib/sandlot/sandlot-peer\n", r.stdout)
  end)

  it("compiles and runs the README's embedding snippet as written", function()
    local readme = read(ROOT .. "/README.md")
    local section = readme:match("\n## Embedding\n(.-)\n## ")
    local code = section and section:match("```c\n(.-)```")
    local cmd = section and section:match("```sh\n(cc [^\n]*\\\n[^\n]*)\n")
    assert(code and cmd, "README: no c snippet and cc command under ## Embedding")
    local pcdir = tmp .. "/pc-snippet"
    run({ "mkdir", "-p", pcdir, tmp .. "/snippet" })
    local pc = read(usr .. "/lib/pkgconfig/sandlot.pc"):gsub("\nprefix=[^\n]*", "\nprefix=" .. usr)
    local f = assert(io.open(pcdir .. "/sandlot.pc", "w"))
    f:write(pc)
    f:close()
    f = assert(io.open(tmp .. "/snippet/app.c", "w"))
    f:write(code)
    f:close()
    -- the command as the README writes it, through sh (its $(pkg-config ...) and line break)
    local san = SANITIZE and (" -fsanitize=" .. SANITIZE) or ""
    local env = { PKG_CONFIG_PATH = pcdir, PKG_CONFIG_LIBDIR = false, LUA_PATH = false,
                  LUA_PATH_5_4 = false, CFLAGS = false }
    run({ "sh", "-c", "cd " .. tmp .. "/snippet && " .. cmd:gsub("^cc ", "cc" .. san .. " ") }, env)
    local r = assert(sandlot.proc.run({ tmp .. "/snippet/app" }, { env = env }))
    assert.equal("", r.stderr)
    assert.equal(0, r.exit_code)
    local uname = assert(sandlot.proc.run({ "uname", "-s" })).stdout
    assert.equal(#uname .. " bytes\n", r.stdout)
  end)

  it("keeps LeakSanitizer's check working after HTTP and SSH load (sanitizer builds)", function()
    if not SANITIZE then return pending("the leak check runs in the sanitizer build") end
    -- a planted 77-byte leak in a Lua C module: the installed binary must report it after
    -- loading http.so and ssh.so (both with TLS), which GCC 12's LSan cannot survive without
    -- engine.c's use_tls=0 ("Tracer caught signal 11", and no leak check at all)
    local f = assert(io.open(tmp .. "/leak.c", "w"))
    f:write('#include <stdlib.h>\n#include <lua.h>\n',
            'void *volatile kept;\n',
            'int luaopen_leak(lua_State *L);\n',
            'int luaopen_leak(lua_State *L) {\n  kept = malloc(77); kept = NULL;\n',
            '  lua_pushboolean(L, 1);\n  return 1;\n}\n')
    f:close()
    local argv = { "cc", "-std=c11", "-shared", "-fPIC", "-o", tmp .. "/leak.so", tmp .. "/leak.c" }
    for flag in run({ "pkg-config", "--cflags", "lua5.4" }):gmatch("%S+") do
      argv[#argv + 1] = flag
    end
    run(argv)
    local r = assert(sandlot.proc.run({ usr .. "/bin/sandlot", "-e",
      'local s = require("sandlot") assert(s.http.request and s.ssh.connect) require("leak")' },
      { env = { LUA_CPATH = tmp .. "/?.so;;", LUA_CPATH_5_4 = false } }))
    assert.is_nil(r.stderr:find("Tracer caught signal", 1, true), r.stderr)
    assert.matches("Direct leak of 77 byte", r.stderr, 1, true)
    assert.not_equal(0, r.exit_code)
  end)

  it("lets a stock lua5.4 load sandlot from the install tree", function()
    if not exists("/usr/bin/lua5.4") then return pending("needs /usr/bin/lua5.4") end
    if SANITIZE then return pending("a sanitizer build runs on stock lua in stock_lua_spec") end
    local share = usr .. "/share/lua/5.4"
    local r = assert(sandlot.proc.run({ "/usr/bin/lua5.4", "-e", [[
      local sandlot = require("sandlot")
      print(sandlot.version, assert(sandlot.proc.run({ "echo", "hi" })).stdout)
    ]] }, { env = {
      LUA_CPATH = usr .. "/lib/lua/5.4/?.so;;", LUA_CPATH_5_4 = false,
      LUA_PATH = share .. "/?.lua;" .. share .. "/?/init.lua;;", LUA_PATH_5_4 = false,
    } }))
    assert.equal("", r.stderr)
    assert.equal(sandlot.version .. "\thi\n\n", r.stdout)
  end)

  it("takes a PREFIX given only to make install, and uninstall removes every file", function()
    local dest2 = tmp .. "/root2"
    make("install", dest2, "/opt/sandlot")
    local pc = read(dest2 .. "/opt/sandlot/lib/pkgconfig/sandlot.pc")
    assert.matches("\nprefix=/opt/sandlot\n", pc, 1, true)
    local r = assert(sandlot.proc.run({ dest2 .. "/opt/sandlot/bin/sandlot", "-e",
                                        'print(package.searchpath("sandlot", package.path))' }))
    assert.equal(dest2 .. "/opt/sandlot/share/lua/5.4/sandlot/init.lua\n", r.stdout)
    make("uninstall", dest2, "/opt/sandlot")
    assert.same({}, files_under(dest2))
    make("uninstall", dest, "/usr/local")
    assert.same({}, files_under(dest))
  end)
end)
