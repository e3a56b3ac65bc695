/* peer_main.c: sandlot-peer, the static replica started inside a sandbox by
 * sandlot.replicate (lua/sandlot/replicate.lua). It holds the scheduler, timers, processes,
 * files, the codec and the protocol channel; no HTTP, SSH, SQLite, dlopen or NSS, so it runs
 * in a root with no libc (linked -static; see the Makefile's peer target). Its Lua comes from
 * the content-addressed files the host shipped: `sandlot-peer MANIFEST NONCE`, run in the
 * replica's directory, loads lib/MANIFEST ("module sha256" lines) and serves the protocol on
 * its stdin and stdout (lua/sandlot/_peer/serve.lua). */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "internal.h"

/* libuv's uv_os_get_passwd calls getpwuid_r, which static glibc can only serve by loading
 * NSS modules (shared objects) at run time; a root without libc has none. The peer never
 * asks for a user's entry: this definition keeps glibc's (and NSS) out of the link. */
int getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t n, struct passwd **out) {
  (void)uid; (void)pw; (void)buf; (void)n;
  *out = NULL;
  return ENOENT;
}

/* The peer's package library, replacing Lua's (loadlib.c), whose C-module loader is the one
 * user of dlopen: this definition keeps loadlib.o, and so dlopen, out of the link. It holds
 * package.loaded and package.preload (the registry's, as luaL_requiref expects); require and
 * the searchers are Lua, installed by the boot chunk below. */
LUAMOD_API int luaopen_package(lua_State *L) {
  lua_createtable(L, 0, 4);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_setfield(L, -2, "loaded");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_setfield(L, -2, "preload");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pushliteral(L, "/\n;\n?\n!\n-\n");
  lua_setfield(L, -2, "config");
  return 1;
}

#define PEER_PROTOCOL 1

static int open_core(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, SANDLOT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushfstring(L, "libuv %s", uv_version_string());
  lua_setfield(L, -2, "libuv");
  lua_pushinteger(L, PEER_PROTOCOL);
  lua_setfield(L, -2, "peer_protocol");
  return 1;
}

static void preload(lua_State *L) {
  static const luaL_Reg mods[] = {
    {"sandlot.core", open_core},
    {"sandlot.core.sched", luaopen_sandlot_core_sched},
    {"sandlot.core.timer", luaopen_sandlot_core_timer},
    {"sandlot.core.proc", luaopen_sandlot_core_proc},
    {"sandlot.core.errors", luaopen_sandlot_core_errors},
    {"sandlot.core.sys", luaopen_sandlot_core_sys},
    {"sandlot.core.fs", luaopen_sandlot_core_fs},
    {"sandlot.core.outbuf", luaopen_sandlot_core_outbuf},
    {"sandlot.core.codec", luaopen_sandlot_core_codec},
    {"sandlot.core.event", luaopen_sandlot_core_event},
    {"sandlot.core.channel", luaopen_sandlot_core_channel},
    {NULL, NULL}
  };
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = mods; m->name != NULL; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* The first Lua the peer runs: (manifest, nonce, dir). Installs the manifest searcher (each
 * file is checked against its name, the SHA-256 of its content) and starts the server. */
static const char boot[] =
  "local manifest, nonce, dir = ...\n"
  "local function preloaded(name)\n"
  "  local f = package.preload[name]\n"
  "  if f then return f, ':preload:' end\n"
  "  return '\\n\\tno field package.preload[\\'' .. name .. '\\']'\n"
  "end\n"
  "package.searchers = { preloaded }\n"
  "function require(name)\n"
  "  local loaded = package.loaded\n"
  "  if loaded[name] ~= nil then return loaded[name] end\n"
  "  local why = {}\n"
  "  for _, searcher in ipairs(package.searchers) do\n"
  "    local loader, extra = searcher(name)\n"
  "    if type(loader) == 'function' then\n"
  "      local r = loader(name, extra)\n"
  "      if r ~= nil then loaded[name] = r end\n"
  "      if loaded[name] == nil then loaded[name] = true end\n"
  "      return loaded[name], extra\n"
  "    end\n"
  "    why[#why + 1] = loader\n"
  "  end\n"
  "  error(('module \\'%s\\' not found:%s'):format(name, table.concat(why)), 2)\n"
  "end\n"
  "local sys = require('sandlot.core.sys')\n"
  "local function slurp(p)\n"
  "  local f = io.open(p, 'rb'); if not f then return nil end\n"
  "  local s = f:read('a'); f:close(); return s\n"
  "end\n"
  "local text = slurp(dir .. '/lib/' .. manifest)\n"
  "if not text or sys.sha256(text) ~= manifest then\n"
  "  error('sandlot-peer: manifest lib/' .. manifest .. ' is missing or damaged', 0)\n"
  "end\n"
  "local mods = {}\n"
  "for name, sha in text:gmatch('(%S+) (%x+)\\n') do mods[name] = sha end\n"
  "local function search(name)\n"
  "  local sha = mods[name]\n"
  "  if not sha then return '\\n\\tnot shipped to this replica' end\n"
  "  local src = slurp(dir .. '/lib/' .. sha)\n"
  "  if not src or sys.sha256(src) ~= sha then\n"
  "    error(('sandlot-peer: %s (lib/%s) is missing or damaged'):format(name, sha), 0)\n"
  "  end\n"
  "  return assert(load(src, '@' .. name:gsub('%.', '/') .. '.lua', 't')), name\n"
  "end\n"
  "package.searchers[2] = search\n"
  "return require('sandlot._peer.serve').main(nonce, mods)\n";

static int report(lua_State *L, int idx) {
  int n = sl_task_push_error(L, idx);
  if (n == 0) return 0;
  const char *msg = luaL_tolstring(L, -n, NULL);
  fprintf(stderr, "sandlot-peer: %s\n", msg);
  if (lua_type(L, -n) == LUA_TSTRING) fprintf(stderr, "%s\n", lua_tostring(L, -2));
  return 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    printf("sandlot-peer %s (%s, protocol %d)\n", SANDLOT_VERSION, LUA_RELEASE, PEER_PROTOCOL);
    return 0;
  }
  if (argc != 3) {
    fprintf(stderr, "usage: sandlot-peer MANIFEST NONCE   (started by sandlot.replicate)\n");
    return 2;
  }
  char dir[PATH_MAX];
  if (getcwd(dir, sizeof(dir)) == NULL) {
    fprintf(stderr, "sandlot-peer: getcwd: %s\n", strerror(errno));
    return 1;
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  preload(L);
  int rc = 1;
  if (luaL_loadbuffer(L, boot, sizeof(boot) - 1, "=sandlot-peer") != LUA_OK) {
    fprintf(stderr, "sandlot-peer: %s\n", lua_tostring(L, -1));
  } else {
    lua_pushstring(L, argv[1]);
    lua_pushstring(L, argv[2]);
    lua_pushstring(L, dir);
    SlTask *t = sl_sched_spawn(L, 3, false), until;     /* [task] */
    memset(&until, 0, sizeof(until));
    t->sync_joiner = &until;
    SlHost *h = sl_host(L);
    sl_host_drive(h, &until.woken);                     /* until the server returns */
    t->sync_joiner = NULL;
    sl_sched_cancel_tasks(L);                           /* the calls still running end too */
    sl_host_drive(h, NULL);
    rc = report(L, -1);
    lua_pop(L, 1);
  }
  lua_close(L);
  return rc;
}
