/* errors.c: the sandlot.error metatable and the C side of the error convention (STYLE §3):
 * expected failures become `nil, err` where err carries a code from a closed set, a message
 * for people and `retryable`. Lua adds context (op, provider, sandbox) in sandlot.errors. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const char *const codes[] = {
  "not_found", "already_exists", "invalid_input", "not_supported", "timeout", "cancelled",
  "unavailable", "auth_failed", "permission_denied", "rate_limited", "quota_exceeded",
  "bad_response", "io_error", "internal", NULL
};

static bool code_retryable(const char *code) {
  return strcmp(code, "unavailable") == 0 || strcmp(code, "rate_limited") == 0 ||
         strcmp(code, "timeout") == 0;
}

static bool code_known(const char *code) {
  for (int i = 0; codes[i] != NULL; i++)
    if (strcmp(codes[i], code) == 0) return true;
  return false;
}

void sl_err_set(SlError *e, const char *code, const char *fmt, ...) {
  va_list ap;
  e->code = code;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof(e->message), fmt, ap);
  va_end(ap);
}

const char *sl_code_for_errno(int err) {
  switch (err) {
  case ENOENT: case ENOTDIR: case ESRCH: return "not_found";
  case EACCES: case EPERM: case EROFS: return "permission_denied";
  case EEXIST: return "already_exists";
  case EINVAL: case ENAMETOOLONG: case E2BIG: case ELOOP: return "invalid_input";
  case ETIMEDOUT: return "timeout";
  case ECANCELED: return "cancelled";
  case ECONNREFUSED: case ECONNRESET: case EPIPE: case EHOSTUNREACH: case ENETUNREACH:
  case EAGAIN: case EMFILE: case ENFILE: return "unavailable";
  case ENOSPC: case EDQUOT: return "quota_exceeded";
  case ENOSYS: case EOPNOTSUPP: return "not_supported";
  default: return "io_error";
  }
}

void sl_err_uv(SlError *e, int uverr, const char *what) {
  sl_err_set(e, sl_code_for_errno(-uverr), "%s: %s", what, uv_strerror(uverr));
}

void sl_new_error(lua_State *L, const char *code, const char *message) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, code_retryable(code));
  lua_setfield(L, -2, "retryable");
  luaL_setmetatable(L, ERROR_MT);
}

int sl_push_error(lua_State *L, const SlError *e) {
  lua_pushnil(L);
  sl_new_error(L, e->code, e->message);
  return 2;
}

int sl_fail(lua_State *L, const char *code, const char *fmt, ...) {
  SlError e;
  va_list ap;
  e.code = code;
  va_start(ap, fmt);
  vsnprintf(e.message, sizeof(e.message), fmt, ap);
  va_end(ap);
  return sl_push_error(L, &e);
}

/* errors.new(code, message [, fields]) -> err; an unknown code is misuse and raises */
static int errors_new(lua_State *L) {
  const char *code = luaL_checkstring(L, 1);
  const char *message = luaL_optstring(L, 2, code);
  luaL_argcheck(L, code_known(code), 1, "unknown error code (see sandlot.errors.codes)");
  sl_new_error(L, code, message);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {           /* [.., err, k, v] */
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  return 1;
}

/* Pushes t[name] with `pre` before it and `post` after it when it is a string; returns how
 * many values it pushed. */
static int push_part(lua_State *L, const char *name, const char *pre, const char *post) {
  if (lua_getfield(L, 1, name) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  int n = 1;
  if (pre != NULL) {
    lua_pushstring(L, pre);
    lua_insert(L, -2);
    n++;
  }
  if (post != NULL) {
    lua_pushstring(L, post);
    n++;
  }
  return n;
}

/* __tostring: "provider: op: code: message (via inner)" with whichever context is present.
 * The parts are concatenated on the stack (no luaL_Buffer, whose box must stay on top). */
static int errors_tostring(lua_State *L) {
  luaL_checkstack(L, 16, NULL);
  int n = push_part(L, "provider", NULL, ": ");
  n += push_part(L, "op", NULL, ": ");
  int c = push_part(L, "code", NULL, NULL);
  if (c == 0) lua_pushliteral(L, "error");
  n += 1;
  n += push_part(L, "message", ": ", NULL);
  n += push_part(L, "via", " (via ", ")");
  lua_concat(L, n);
  return 1;
}

/* errors.is(v [, code]) -> bool */
static int errors_is(lua_State *L) {
  bool is = luaL_testudata(L, 1, ERROR_MT) != NULL;
  if (!is && lua_istable(L, 1) && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, ERROR_MT);
    is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (is && !lua_isnoneornil(L, 2)) {
    lua_getfield(L, 1, "code");
    is = lua_rawequal(L, -1, 2) || (lua_isstring(L, 2) && lua_compare(L, -1, 2, LUA_OPEQ));
    lua_pop(L, 1);
  }
  lua_pushboolean(L, is);
  return 1;
}

static const luaL_Reg errors_funcs[] = {
  {"new", errors_new}, {"is", errors_is}, {NULL, NULL}
};

int luaopen_sandlot_core_errors(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, errors_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, errors_funcs);
  luaL_getmetatable(L, ERROR_MT);
  lua_setfield(L, -2, "metatable");
  lua_createtable(L, 0, 0);
  for (int i = 0; codes[i] != NULL; i++) {
    lua_pushboolean(L, code_retryable(codes[i]));
    lua_setfield(L, -2, codes[i]);
  }
  lua_setfield(L, -2, "codes");             /* code -> retryable by default */
  return 1;
}
