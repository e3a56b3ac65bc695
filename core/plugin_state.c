/* plugin_state.c: a fresh plugin state for sandlot.core.plugin: the whitelisted standard
 * library (text-only load, no __gc, no io/debug/package, os clock functions only), the
 * `sandlot` table of host calls the plugin's grants name, and the trusted prelude that owns
 * the plugin's module table. */
#include <string.h>

#include <lualib.h>

#include "plugin.h"

/* Trusted code run inside every plugin state before the plugin's own. It captures the
 * builtins it needs before plugin code can replace them, owns the module table, and is the
 * only way in: the host calls its functions by name. */
static const char prelude_src[] =
  "local G, type, rawget, rawset, select, pairs, error, next = "
  "  _G, type, rawget, rawset, select, pairs, error, next\n"
  "local MOD\n"
  "local P = {}\n"
  "local function describe(v, depth)\n"
  "  if type(v) == 'function' then return 'function' end\n"
  "  if type(v) ~= 'table' then return v end\n"
  "  if depth > 8 then return 'table' end\n"
  "  local out = {}\n"
  "  for k, x in next, v do\n"
  "    local tk = type(k)\n"
  "    if tk == 'string' or tk == 'number' then out[k] = describe(x, depth + 1) end\n"
  "  end\n"
  "  return out\n"
  "end\n"
  "function P.load(chunk)\n"
  "  if rawget(G, 'state') == nil then rawset(G, 'state', {}) end\n"
  "  local m = chunk()\n"
  "  if type(m) ~= 'table' then error('the plugin returned a ' .. type(m) ..\n"
  "                                   ', not a table', 0) end\n"
  "  MOD = m\n"
  "  return describe(m, 0)\n"
  "end\n"
  "function P.invoke(path, ...)\n"
  "  local f = rawget(MOD, path)\n"
  "  if type(f) == 'function' then return f(...) end\n"
  "  f = MOD\n"
  "  for part in path:gmatch('[^.]+') do\n"
  "    if type(f) ~= 'table' then f = nil break end\n"
  "    f = rawget(f, part)\n"
  "  end\n"
  "  if type(f) ~= 'function' then error('no function ' .. path, 0) end\n"
  "  return f(...)\n"
  "end\n"
  "function P.has(path)\n"
  "  local f = MOD\n"
  "  for part in path:gmatch('[^.]+') do\n"
  "    if type(f) ~= 'table' then return false end\n"
  "    f = rawget(f, part)\n"
  "  end\n"
  "  return type(f) == 'function'\n"
  "end\n"
  "function P.get_state() return rawget(G, 'state') end\n"
  "function P.set_config(c) rawset(G, 'config', c) return true end\n"
  "function P.set_state(s) rawset(G, 'state', s) return true end\n"
  "function P.migrate(old, from, to)\n"
  "  local f = type(MOD) == 'table' and rawget(MOD, 'migrate')\n"
  "  if type(f) ~= 'function' then rawset(G, 'state', old) return true end\n"
  "  rawset(G, 'state', old)\n"
  "  local s, why = f(old, from, to)\n"
  "  if s == nil and why ~= nil then error('migrate refused: ' .. tostring(why), 0) end\n"
  "  if s ~= nil then rawset(G, 'state', s) end\n"
  "  return true\n"
  "end\n"
  "return P\n";

/* load(chunk [, name [, mode [, env]]]): text chunks only. */
static int safe_load(lua_State *L) {
  int env = !lua_isnone(L, 4) ? 4 : 0;
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=(load)");
  int rc = luaL_loadbufferx(L, s, len, name, "t");
  if (rc != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, env);
    if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
  }
  return 1;
}

/* setmetatable(t, mt): refuses __gc, whose finalizers would run outside any call's budget. */
static int safe_setmetatable(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
    return luaL_error(L, "setmetatable: __gc is not allowed in a plugin");
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* collectgarbage([opt]): "collect", "count" and "step" only. */
static int safe_collectgarbage(lua_State *L) {
  static const char *const opts[] = {"collect", "count", "step", NULL};
  int o = luaL_checkoption(L, 1, "collect", opts);
  if (o == 1) {
    int k = lua_gc(L, LUA_GCCOUNT, 0), b = lua_gc(L, LUA_GCCOUNTB, 0);
    lua_pushnumber(L, (lua_Number)k + ((lua_Number)b / 1024));
    return 1;
  }
  lua_gc(L, o == 0 ? LUA_GCCOLLECT : LUA_GCSTEP, 0);
  lua_pushinteger(L, 0);
  return 1;
}

static int host_call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  /* [..., ok, results...] as the host resumed us */
  int base = (int)ctx;
  if (!lua_toboolean(L, base + 1)) {
    lua_pushvalue(L, base + 2);
    return lua_error(L);
  }
  return lua_gettop(L) - base - 1;
}

/* sandlot.<name>(...) inside a plugin: yields (name, ...) to the host, which runs the host
 * function and resumes with (true, results...) or (false, err). Only the call's own thread
 * may do it: a plugin's coroutine would receive the yield itself. */
static int host_call(lua_State *L) {
  Plugin *p = sl_plugin_of(L);
  if (p->cur == NULL || p->cur->co != L)
    return luaL_error(L, "sandlot.%s: host calls must run in the hook itself, not in a "
                      "coroutine of the plugin", lua_tostring(L, lua_upvalueindex(1)));
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return lua_yieldk(L, n + 1, 0, host_call_k);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction f) {
  luaL_requiref(L, name, f, 1);
  lua_pop(L, 1);
}

/* [hostnames] -> state set up: whitelisted libraries, the sandlot table of host calls, the
 * prelude. Runs unprotected on a fresh state below its cap: a memory error here is a bug. */
int sl_plugin_setup(lua_State *L) {
  open_lib(L, LUA_GNAME, luaopen_base);
  open_lib(L, LUA_STRLIBNAME, luaopen_string);
  open_lib(L, LUA_TABLIBNAME, luaopen_table);
  open_lib(L, LUA_MATHLIBNAME, luaopen_math);
  open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
  open_lib(L, LUA_COLIBNAME, luaopen_coroutine);
  luaL_requiref(L, "sandlot.core.errors", luaopen_sandlot_core_errors, 0);
  lua_pop(L, 1);
  luaopen_os(L);                        /* only the clock functions are kept */
  lua_createtable(L, 0, 4);
  static const char *const keep_os[] = {"time", "clock", "date", "difftime", NULL};
  for (int i = 0; keep_os[i] != NULL; i++) {
    lua_getfield(L, -2, keep_os[i]);
    lua_setfield(L, -2, keep_os[i]);
  }
  lua_setglobal(L, "os");
  lua_pop(L, 1);
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  static const char *const drop[] = {"dofile", "loadfile", "require", "print", NULL};
  for (int i = 0; drop[i] != NULL; i++) {
    lua_pushnil(L);
    lua_setglobal(L, drop[i]);
  }
  lua_pushcfunction(L, safe_load);
  lua_setglobal(L, "load");
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, safe_setmetatable, 1);
  lua_setglobal(L, "setmetatable");
  lua_pushcfunction(L, safe_collectgarbage);
  lua_setglobal(L, "collectgarbage");
  /* sandlot = {log = <host call "log">, http = {request = <host call "http.request">}, ...} */
  lua_newtable(L);
  int n = (int)lua_rawlen(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    const char *full = lua_tostring(L, -1);
    lua_pushvalue(L, -2);                /* [.., sandlot, fullname, table] */
    const char *seg = full, *dot;
    while ((dot = strchr(seg, '.')) != NULL) {
      lua_pushlstring(L, seg, (size_t)(dot - seg));
      if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushlstring(L, seg, (size_t)(dot - seg));
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
      }
      lua_remove(L, -2);
      seg = dot + 1;
    }
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, host_call, 1);
    lua_setfield(L, -2, seg);
    lua_pop(L, 2);
  }
  lua_setglobal(L, "sandlot");
  if (luaL_loadbufferx(L, prelude_src, sizeof(prelude_src) - 1, "=plugin prelude", "t") != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, 1);
  return 1;
}

