/* sys.c: sandlot.core.sys: small facts about this process the Lua library needs and stock
 * Lua lacks (the whole environment, pid, terminal check, canonical paths), and base64 for
 * moving files through a provider's exec (pure Lua managed ~10 MB/s). */
#include <errno.h>
#include <stdint.h>
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

/* sys.setenv(name, value | nil) -> true: sets (or, for nil, removes) a variable of this
 * process's environment, which children inherit. For specs that plant a canary there. */
static int sys_setenv(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_argcheck(L, name[0] != '\0' && strchr(name, '=') == NULL, 1, "invalid variable name");
  int rc = lua_isnoneornil(L, 2) ? unsetenv(name) : setenv(name, luaL_checkstring(L, 2), 1);
  if (rc != 0) return luaL_error(L, "setenv %s: %s", name, strerror(errno));
  lua_pushboolean(L, 1);
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

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* sys.b64encode(s) -> string: RFC 4648 base64 with padding, no line breaks */
static int sys_b64encode(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  if (n > ((size_t)-1 / 4) * 3 - 3) return luaL_error(L, "b64encode: input too large");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4);
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    out[o++] = B64[v >> 18];
    out[o++] = B64[(v >> 12) & 63];
    out[o++] = B64[(v >> 6) & 63];
    out[o++] = B64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
    out[o++] = B64[v >> 18];
    out[o++] = B64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  luaL_pushresultsize(&b, o);
  return 1;
}

/* sys.b64decode(s) -> string | nil: whitespace is skipped; anything else outside the
 * alphabet, a length that is not a multiple of 4, or data after the padding gives nil. */
static int sys_b64decode(lua_State *L) {
  static signed char dec[256];
  if (dec['B'] == 0) {
    memset(dec, -1, sizeof(dec));
    for (int k = 0; k < 64; k++) dec[(unsigned char)B64[k]] = (signed char)k;
  }
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
  size_t o = 0;
  uint32_t acc = 0;
  int got = 0, pad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v') continue;
    if (c == '=') {
      if (got < 2) goto bad;                    /* "=" can only end a group of 4 */
      pad++;
      got++;
      acc <<= 6;
    } else {
      if (pad > 0 || dec[c] < 0) goto bad;        /* data after the padding, or not base64 */
      acc = acc << 6 | (uint32_t)dec[c];
      got++;
    }
    if (got == 4) {
      out[o++] = (char)(acc >> 16);
      if (pad < 2) out[o++] = (char)(acc >> 8);
      if (pad < 1) out[o++] = (char)acc;
      got = 0;
      if (pad > 0) {                              /* padding ends the data */
        for (i++; i < n; i++)
          if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t') goto bad;
        break;
      }
      acc = 0;
    }
  }
  if (got != 0) goto bad;
  luaL_pushresultsize(&b, o);
  return 1;
bad:
  luaL_pushresultsize(&b, 0);
  lua_pop(L, 1);
  lua_pushnil(L);
  return 1;
}

static const luaL_Reg sys_funcs[] = {
  {"environ", sys_environ}, {"getpid", sys_getpid}, {"isatty", sys_isatty},
  {"realpath", sys_realpath}, {"now", sys_now}, {"rss", sys_maxrss},
  {"b64encode", sys_b64encode}, {"b64decode", sys_b64decode},
  {"setenv", sys_setenv},
  {NULL, NULL}
};

int luaopen_sandlot_core_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  return 1;
}
