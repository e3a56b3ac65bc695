-- LuaRocks: `luarocks --lua-version 5.4 make` builds sandlot.so (the whole core as one Lua C
-- module) against the system libraries and installs it with the Lua library, the providers,
-- plugins and the conformance suite (under sandlot/share/, where sandlot._paths finds them).
-- The Debian packages of the README's dependency table must be installed first (`make deps`).
rockspec_format = "3.0"
package = "sandlot"
version = "0.1.0-1"
source = { url = "git+https://github.com/sandlot/sandlot", tag = "v0.1.0" }
description = {
  summary = "A provider-agnostic sandbox host: Lua coroutines over one libuv loop",
  detailed = [[
sandlot creates sandboxes on this machine (bubblewrap), over SSH, in Docker and on cloud
services, runs commands, moves files and tears down, hundreds at once, from straight-line Lua.
A provider is one Lua file.]],
  license = "MIT",
  homepage = "https://github.com/sandlot/sandlot",
}
dependencies = { "lua >= 5.4, < 5.5" }
-- libcurl is left out: Debian keeps curl/curl.h under a multiarch directory, and pkg-config
-- (which the Makefile uses for every library) finds it there.
external_dependencies = {
  LIBUV = { header = "uv.h" },
  LIBSSH2 = { header = "libssh2.h" },
  SQLITE = { header = "sqlite3.h" },
  MSGPACK = { header = "msgpack.h" },
  ZLIB = { header = "zlib.h" },
}
build = {
  type = "make",
  build_target = "rock",
  build_variables = { CFLAGS = "$(CFLAGS)", LUA_INCDIR = "$(LUA_INCDIR)" },
  install_target = "rock-install",
  install_variables = { INST_LIBDIR = "$(LIBDIR)", INST_LUADIR = "$(LUADIR)" },
}
