/* sys.c: sandlot.core.sys: small facts about this process the Lua library needs and stock
 * Lua lacks (the whole environment, pid, terminal check, canonical paths). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

/* sys.environ() -> {NAME = value, ...} */
static int sys_environ(lua_State *L) {
  lua_newtable(L);
  for (char **e = environ; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* sys.getpid() -> integer */
static int sys_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* sys.isatty(fd) -> bool */
static int sys_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* sys.realpath(path) -> path | nil, err */
static int sys_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (realpath(path, buf) == NULL)
    return sl_fail(L, sl_code_for_errno(errno), "%s: %s", path, strerror(errno));
  lua_pushstring(L, buf);
  return 1;
}

/* sys.now() -> integer nanoseconds, monotonic */
static int sys_now(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sl_now_ns());
  return 1;
}

/* sys.rss() -> integer bytes: this process's peak resident set size */
static int sys_maxrss(lua_State *L) {
  size_t rss = 0;
  if (uv_resident_set_memory(&rss) != 0) return 0;
  lua_pushinteger(L, (lua_Integer)rss);
  return 1;
}

static const luaL_Reg sys_funcs[] = {
  {"environ", sys_environ}, {"getpid", sys_getpid}, {"isatty", sys_isatty},
  {"realpath", sys_realpath}, {"now", sys_now}, {"rss", sys_maxrss}, {NULL, NULL}
};

int luaopen_sandlot_core_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  return 1;
}
