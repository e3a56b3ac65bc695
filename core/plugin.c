/* plugin.c: sandlot.core.plugin, isolated plugin states. Each plugin is its own lua_State with a
 * capped allocator, a whitelisted standard library and a trusted prelude (below) that holds the
 * plugin's module table. Every entry into plugin code is a "call": a coroutine of the plugin
 * state run under an instruction and a wall-clock budget (count hook). Values cross between the
 * host and a plugin only through the codec (core/codec.h), packed and unpacked in protected
 * mode on each side. A plugin reaches the host by yielding a host call; the host's Lua side runs
 * it (maybe waiting on I/O in its own task) and resumes the call: policy lives in
 * lua/sandlot/plugins.lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "codec.h"
#include "internal.h"

#define PLUGIN_MT "sandlot.plugin"
#define CALL_MT "sandlot.plugin.call"
#include "plugin.h"

typedef struct { Plugin *p; } PluginBox;
typedef struct { Call c; bool live; } CallBox;   /* uservalue 1: the PluginBox */

/* ---------------------------------------------------------------- allocator and hook */

/* Counts every byte; refuses growth past the cap (never a shrink or a free, lua_Alloc's rule).
 * A refusal during a call marks it killed, so a plugin catching the memory error with pcall
 * still has that call failed. */
static void *plugin_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Plugin *p = ud;
  size_t old = ptr != NULL ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    p->used -= old;
    return NULL;
  }
  if (p->capped && nsize > old && p->used - old + nsize > p->cap) {
    if (p->cur != NULL) p->cur->killed = KILL_MEM;
    return NULL;
  }
  void *n = realloc(ptr, nsize);
  if (n == NULL) return NULL;
  p->used = p->used - old + nsize;
  if (p->used > p->peak) p->peak = p->used;
  return n;
}

Plugin *sl_plugin_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

/* Count hook of every call thread (and of the coroutines the plugin creates, which inherit
 * it). Past a budget it raises, then raises again at every instruction of this thread, so a
 * pcall inside the plugin cannot swallow the stop. */
static void plugin_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  Plugin *p = sl_plugin_of(L);
  Call *c = p->cur;
  if (c == NULL) return;
  c->used += HOOK_EVERY;
  if (c->killed == KILL_NONE) {
    if (c->used > p->budget) c->killed = KILL_INSTR;
    else if (sl_now_ns() > c->deadline) c->killed = KILL_WALL;
  }
  if (c->killed == KILL_NONE) return;
  lua_sethook(L, plugin_hook, LUA_MASKCOUNT, 1);
  lua_pushliteral(L, "plugin budget exceeded");
  lua_error(L);
}

/* ---------------------------------------------------------------- crossing */

typedef struct {
  msgpack_sbuffer buf;
  int n;
  char why[300];
} Xfer;

/* [ctx, v1..vn] -> (): packs the values into ctx->buf; raises nothing but memory errors. */
static int xfer_pack(lua_State *L) {
  Xfer *x = lua_touserdata(L, 1);
  for (int i = 2; i <= lua_gettop(L); i++) {
    if (sl_codec_pack(L, i, &x->buf, 0, x->why, sizeof(x->why)) != 0) {
      x->n = -1;
      return 0;
    }
  }
  return 0;
}

/* [ctx] -> v1..vn */
static int xfer_unpack(lua_State *L) {
  Xfer *x = lua_touserdata(L, 1);
  size_t pos = 0;
  luaL_checkstack(L, x->n + 2, "too many values");
  for (int i = 0; i < x->n; i++) {
    if (sl_codec_unpack(L, x->buf.data ? x->buf.data : "", x->buf.size, &pos, x->why,
                        sizeof(x->why)) != 0)
      return luaL_error(L, "%s", x->why);
  }
  return x->n;
}

/* The one crossing: copies n values from the top of `from` (left there) onto `to`, which must
 * be a thread that may run a protected call (the plugin's main thread or the host's running
 * one). Both sides run under lua_pcall so a memory error in a capped state is contained.
 * 0 on success; -1 with why filled and nothing pushed. */
static int cross(lua_State *from, int n, lua_State *to, char *why, size_t wn) {
  Xfer x;
  msgpack_sbuffer_init(&x.buf);
  x.n = n;
  x.why[0] = '\0';
  int first = lua_gettop(from) - n + 1;
  int rc = -1;
  if (!lua_checkstack(from, n + 2)) {
    snprintf(why, wn, "out of memory");
    goto done;
  }
  if (lua_getallocf(from, NULL) != plugin_alloc) {
    /* the host's own state: uncapped, so packing in place cannot meet the cap */
    for (int i = 0; i < n && x.n >= 0; i++)
      if (sl_codec_pack(from, first + i, &x.buf, 0, x.why, sizeof(x.why)) != 0) x.n = -1;
  } else {
    lua_pushcfunction(from, xfer_pack);
    lua_pushlightuserdata(from, &x);
    for (int i = 0; i < n; i++) lua_pushvalue(from, first + i);
    if (lua_pcall(from, n + 1, 0, 0) != LUA_OK) {
      snprintf(why, wn, "out of memory while copying");
      lua_pop(from, 1);
      goto done;
    }
  }
  if (x.n < 0) {
    snprintf(why, wn, "%s", x.why);
    goto done;
  }
  if (!lua_checkstack(to, n + 3)) {
    snprintf(why, wn, "out of memory");
    goto done;
  }
  if (lua_getallocf(to, NULL) != plugin_alloc) {
    size_t pos = 0;                       /* the host: only its own OOM could raise here */
    for (int i = 0; i < n; i++) {
      if (sl_codec_unpack(to, x.buf.data ? x.buf.data : "", x.buf.size, &pos, why, wn) != 0) {
        lua_pop(to, i);
        goto done;
      }
    }
  } else {
    int base = lua_gettop(to);
    lua_pushcfunction(to, xfer_unpack);
    lua_pushlightuserdata(to, &x);
    if (lua_pcall(to, 1, LUA_MULTRET, 0) != LUA_OK) {
      snprintf(why, wn, "%s", lua_type(to, -1) == LUA_TSTRING ? lua_tostring(to, -1)
                                                              : "out of memory while copying");
      lua_settop(to, base);
      goto done;
    }
  }
  rc = 0;
done:
  msgpack_sbuffer_destroy(&x.buf);
  return rc;
}

/* ---------------------------------------------------------------- the plugin state */

/* ---------------------------------------------------------------- handles */

static Plugin *plugin_check(lua_State *L, int idx) {
  PluginBox *box = luaL_checkudata(L, idx, PLUGIN_MT);
  if (box->p == NULL || box->p->L == NULL) luaL_error(L, "attempt to use a closed sandlot.plugin");
  return box->p;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def, lua_Integer min) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  if (v < min) luaL_error(L, "plugin.new: %s must be >= %d", k, (int)min);
  return v;
}

/* plugin.new{name =, memory = bytes, instructions =, wall_ms =, host = {names}} -> plugin
 * | nil, err (quota_exceeded when even the empty state does not fit the cap) */
static int plugin_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "name");
  const char *name = luaL_checkstring(L, -1);
  PluginBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->p = NULL;
  luaL_setmetatable(L, PLUGIN_MT);
  Plugin *p = calloc(1, sizeof(*p));
  if (p == NULL) return luaL_error(L, "out of memory");
  box->p = p;
  snprintf(p->name, sizeof(p->name), "%s", name);
  p->cap = (size_t)opt_int(L, 1, "memory", (lua_Integer)32 << 20, 64 << 10);
  p->budget = opt_int(L, 1, "instructions", 1000000, 1000);
  p->wall_ns = (uint64_t)opt_int(L, 1, "wall_ms", 1000, 1) * 1000000u;
  p->idle = LUA_NOREF;
  p->L = lua_newstate(plugin_alloc, p);
  if (p->L == NULL) return luaL_error(L, "out of memory");
  lua_State *P = p->L;
  /* the host names cross as one list, then setup runs protected */
  lua_getfield(L, 1, "host");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  luaL_checktype(L, -1, LUA_TTABLE);
  char why[300];
  lua_pushcfunction(P, sl_plugin_setup);
  if (cross(L, 1, P, why, sizeof(why)) != 0) return luaL_error(L, "plugin.new: %s", why);
  lua_pop(L, 1);
  if (lua_pcall(P, 1, 1, 0) != LUA_OK) {
    lua_pushfstring(L, "plugin.new: %s", lua_tostring(P, -1));
    lua_close(P);
    p->L = NULL;
    return lua_error(L);
  }
  p->prelude = luaL_ref(P, LUA_REGISTRYINDEX);
  lua_gc(P, LUA_GCCOLLECT, 0);
  p->capped = true;
  if (p->used > p->cap)
    return sl_fail(L, "quota_exceeded", "plugin %s: the memory cap (%zu bytes) is below the "
                   "empty state's %zu bytes", p->name, p->cap, p->used);
  return 1;
}

typedef struct { char buf[300]; } ErrText;

/* [ctx, v] -> (): the text of a raised value: a string, a number, or a table's raw message */
static int err_text(lua_State *L) {
  ErrText *et = lua_touserdata(L, 1);
  int t = lua_type(L, 2);
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "message");
    t = lua_rawget(L, 2);
    lua_replace(L, 2);
  }
  if (t == LUA_TSTRING) snprintf(et->buf, sizeof(et->buf), "%s", lua_tostring(L, 2));
  else if (lua_isinteger(L, 2))
    snprintf(et->buf, sizeof(et->buf), "%lld", (long long)lua_tointeger(L, 2));
  else if (t == LUA_TNUMBER) snprintf(et->buf, sizeof(et->buf), "%g", (double)lua_tonumber(L, 2));
  else if (t != LUA_TTABLE) snprintf(et->buf, sizeof(et->buf), "(a %s)", lua_typename(L, t));
  return 0;
}

/* Pushes the fault error of a call that ended with status rc (error value on c->co). */
static void push_fault(lua_State *L, Plugin *p, Call *c, int rc) {
  p->faults++;
  if (c->killed == KILL_INSTR) {
    sl_new_error(L, "timeout", "");
    /* cppcheck-suppress invalidLengthModifierError ; %I is lua_pushfstring's lua_Integer
       conversion (Lua 5.4), not a printf length modifier */
    lua_pushfstring(L, "plugin %s exceeded %I instructions in %s", p->name,
                    (lua_Integer)p->budget, c->what);
  } else if (c->killed == KILL_WALL) {
    sl_new_error(L, "timeout", "");
    lua_pushfstring(L, "plugin %s exceeded %d ms in %s", p->name,
                    (int)(p->wall_ns / 1000000u), c->what);
  } else if (c->killed == KILL_MEM || rc == LUA_ERRMEM) {
    sl_new_error(L, "quota_exceeded", "");
    lua_pushfstring(L, "plugin %s exceeded its memory cap (%d KiB) in %s", p->name,
                    (int)(p->cap >> 10), c->what);
  } else {
    /* the raised value's text, read in protected mode without calling any metamethod */
    ErrText et = {.buf = "(an error object)"};
    lua_State *P = p->L;
    if (c->co != NULL && lua_checkstack(P, 3) && lua_gettop(c->co) > 0) {
      lua_pushcfunction(P, err_text);
      lua_pushlightuserdata(P, &et);
      lua_xmove(c->co, P, 1);
      if (lua_pcall(P, 2, 0, 0) != LUA_OK) lua_pop(P, 1);
    }
    const char *msg = et.buf;
    sl_new_error(L, "internal", "");
    lua_pushfstring(L, "plugin %s raised in %s: %s", p->name, c->what, msg);
  }
  lua_setfield(L, -2, "message");
  lua_pushstring(L, p->name);
  lua_setfield(L, -2, "plugin");
  lua_pushstring(L, c->what);
  lua_setfield(L, -2, "hook");
}

static void call_release(Plugin *p, Call *c, bool reusable) {
  if (c->ref == LUA_NOREF || p->L == NULL) return;
  if (reusable && p->idle == LUA_NOREF) p->idle = c->ref;
  else luaL_unref(p->L, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
  c->co = NULL;
}

/* Moves n values from a coroutine to the plugin's main thread (which can run protected calls;
 * a suspended coroutine cannot). 0, or -1 when the stack cannot grow. */
static int off_thread(Plugin *p, lua_State *co, int n) {
  if (!lua_checkstack(p->L, n + 4)) {
    lua_pop(co, n);
    return -1;
  }
  lua_xmove(co, p->L, n);
  return 0;
}

/* [] -> ref: a new thread anchored in the registry (protected: both allocate). */
static int new_thread(lua_State *L) {
  lua_newthread(L);
  lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
  return 1;
}

/* Resumes c with nargs values on c->co and turns the outcome into host results:
 * "ok", results... | "fault", err | "host", callh, name, args... */
static int run_call(lua_State *L, int pidx, Plugin *p, Call *c, int nargs) {
  int nres = 0;
  p->cur = c;
  uint64_t t0 = sl_now_ns();
  int rc = lua_resume(c->co, p->L, nargs, &nres);
  p->time_ns += sl_now_ns() - t0;
  p->cur = NULL;
  char why[300];
  if (rc == LUA_YIELD && c->killed == KILL_NONE) {
    /* a host call: [name, args...] on c->co */
    lua_pushliteral(L, "host");
    CallBox *cb = lua_newuserdatauv(L, sizeof(*cb), 1);
    cb->c = *c;
    cb->live = true;
    luaL_setmetatable(L, CALL_MT);
    lua_pushvalue(L, pidx);
    lua_setiuservalue(L, -2, 1);
    c->ref = LUA_NOREF;                  /* owned by the call handle now */
    if (off_thread(p, cb->c.co, nres) != 0 || cross(p->L, nres, L, why, sizeof(why)) != 0) {
      lua_pop(L, 2);
      cb->live = false;
      luaL_unref(p->L, LUA_REGISTRYINDEX, cb->c.ref);
      lua_pushliteral(L, "fault");
      p->faults++;
      sl_new_error(L, "invalid_input", "");
      lua_pushfstring(L, "plugin %s: a host call's arguments in %s: %s", p->name,
                      cb->c.what, why);
      lua_setfield(L, -2, "message");
      return 2;
    }
    lua_pop(p->L, nres);
    return nres + 2;
  }
  if (rc == LUA_OK && c->killed == KILL_NONE) {
    p->calls++;
    p->instructions += (uint64_t)c->used;
    lua_pushliteral(L, "ok");
    if (off_thread(p, c->co, nres) != 0 || cross(p->L, nres, L, why, sizeof(why)) != 0) {
      lua_pop(L, 1);
      lua_settop(p->L, 0);
      lua_settop(c->co, 0);
      call_release(p, c, true);
      lua_pushliteral(L, "fault");
      p->faults++;
      sl_new_error(L, "invalid_input", "");
      lua_pushfstring(L, "plugin %s: the results of %s: %s", p->name, c->what, why);
      lua_setfield(L, -2, "message");
      return 2;
    }
    lua_settop(p->L, 0);
    lua_settop(c->co, 0);
    call_release(p, c, true);
    return nres + 1;
  }
  p->calls++;
  p->instructions += (uint64_t)c->used;
  lua_pushliteral(L, "fault");
  push_fault(L, p, c, rc);
  call_release(p, c, false);
  if (c->killed == KILL_MEM || rc == LUA_ERRMEM) lua_gc(p->L, LUA_GCCOLLECT, 0);
  return 2;
}

/* Starts a call of prelude function fname with the n values at host indexes first.. (copied).
 * fn_extra: 1 when a function already pushed on the plugin's main thread goes first. */
static int start_call(lua_State *L, Plugin *p, const char *fname, const char *what, int first,
                      int n, int fn_extra) {
  lua_State *P = p->L;
  Call c;
  memset(&c, 0, sizeof(c));
  snprintf(c.what, sizeof(c.what), "%s", what);
  c.started = sl_now_ns();
  c.deadline = c.started + p->wall_ns;
  if (p->idle != LUA_NOREF) {
    c.ref = p->idle;
    p->idle = LUA_NOREF;
    lua_rawgeti(P, LUA_REGISTRYINDEX, c.ref);
    c.co = lua_tothread(P, -1);
    lua_pop(P, 1);
  } else {
    if (!lua_checkstack(P, 8)) goto oom;
    lua_pushcfunction(P, new_thread);
    if (lua_pcall(P, 0, 1, 0) != LUA_OK) {
      lua_pop(P, 1 + fn_extra);
      goto oom;
    }
    c.ref = (int)lua_tointeger(P, -1);
    lua_pop(P, 1);
    lua_rawgeti(P, LUA_REGISTRYINDEX, c.ref);
    c.co = lua_tothread(P, -1);
    lua_pop(P, 1);
  }
  if (!lua_checkstack(P, n + 8) || !lua_checkstack(c.co, n + 8)) {
    lua_pop(P, fn_extra);
    call_release(p, &c, false);
    goto oom;
  }
  lua_sethook(c.co, plugin_hook, LUA_MASKCOUNT, HOOK_EVERY);
  /* [fn?] on P -> the prelude function, then fn, then the args, all moved to co */
  lua_rawgeti(P, LUA_REGISTRYINDEX, p->prelude);
  lua_getfield(P, -1, fname);
  lua_remove(P, -2);
  if (fn_extra) lua_insert(P, -2);
  char why[300];
  lua_settop(L, first + n - 1);
  if (n > 0 && cross(L, n, P, why, sizeof(why)) != 0) {
    lua_pop(P, 1 + fn_extra);
    call_release(p, &c, false);
    lua_pushliteral(L, "fault");
    p->faults++;
    sl_new_error(L, strstr(why, "memory") ? "quota_exceeded" : "invalid_input", "");
    lua_pushfstring(L, "plugin %s: the arguments of %s: %s", p->name, what, why);
    lua_setfield(L, -2, "message");
    return 2;
  }
  lua_xmove(P, c.co, 1 + fn_extra + n);
  return run_call(L, 1, p, &c, fn_extra + n);
oom:
  p->faults++;
  lua_pushliteral(L, "fault");
  sl_new_error(L, "quota_exceeded", "");
  lua_pushfstring(L, "plugin %s exceeded its memory cap (%d KiB) starting %s", p->name,
                  (int)(p->cap >> 10), what);
  lua_setfield(L, -2, "message");
  return 2;
}

/* plugin:load(code, chunkname) -> "ok", description | "fault", err | "host", ...
 * Compiles text only; the chunk runs as a call and must return the plugin's table. */
static int plugin_load(lua_State *L) {
  Plugin *p = plugin_check(L, 1);
  size_t len;
  const char *code = luaL_checklstring(L, 2, &len);
  const char *chunk = luaL_optstring(L, 3, p->name);
  lua_State *P = p->L;
  if (luaL_loadbufferx(P, code, len, chunk, "t") != LUA_OK) {
    lua_pushliteral(L, "fault");
    sl_new_error(L, "invalid_input", "");
    lua_pushfstring(L, "plugin %s does not load: %s", p->name,
                    lua_type(P, -1) == LUA_TSTRING ? lua_tostring(P, -1) : "out of memory");
    lua_setfield(L, -2, "message");
    lua_pop(P, 1);
    p->faults++;
    return 2;
  }
  lua_settop(L, 1);
  return start_call(L, p, "load", "load", 2, 0, 1);
}

/* plugin:call(fname, what, ...) -> "ok", results... | "fault", err | "host", callh, name, args
 * fname: a prelude function (invoke, has, get_state, set_state, migrate). */
static int plugin_call(lua_State *L) {
  Plugin *p = plugin_check(L, 1);
  const char *fname = luaL_checkstring(L, 2);
  const char *what = luaL_checkstring(L, 3);
  int n = lua_gettop(L) - 3;
  return start_call(L, p, fname, what, 4, n, 0);
}

static CallBox *callbox_check(lua_State *L, int idx) {
  CallBox *cb = luaL_checkudata(L, idx, CALL_MT);
  if (!cb->live) luaL_error(L, "attempt to use a finished sandlot.plugin.call");
  return cb;
}

/* plugin:resume(callh, ok, ...) -> as plugin:call. Past the call's deadline the call is a
 * timeout fault without running the plugin again. */
static int plugin_resume(lua_State *L) {
  PluginBox *box = luaL_checkudata(L, 1, PLUGIN_MT);
  CallBox *cb = callbox_check(L, 2);
  if (box->p == NULL || box->p->L == NULL) {   /* replaced by a reload while the call waited */
    cb->live = false;
    lua_pushliteral(L, "fault");
    sl_new_error(L, "cancelled", "");
    lua_pushfstring(L, "plugin %s: its state was closed while %s waited", box->p ? box->p->name
                    : "?", cb->c.what);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, cb->c.what);
    lua_setfield(L, -2, "hook");
    return 2;
  }
  Plugin *p = box->p;
  Call c = cb->c;
  cb->live = false;
  if (sl_now_ns() > c.deadline) c.killed = KILL_WALL;
  if (c.killed != KILL_NONE) {
    lua_pushliteral(L, "fault");
    push_fault(L, p, &c, LUA_YIELD);
    call_release(p, &c, false);
    return 2;
  }
  int n = lua_gettop(L) - 2;
  char why[300];
  if (cross(L, n, p->L, why, sizeof(why)) != 0) {
    lua_pushliteral(L, "fault");
    sl_new_error(L, "quota_exceeded", "");
    lua_pushfstring(L, "plugin %s: a host call's results in %s: %s", p->name, c.what, why);
    lua_setfield(L, -2, "message");
    p->faults++;
    call_release(p, &c, false);
    return 2;
  }
  if (!lua_checkstack(c.co, n + 8)) {
    lua_settop(p->L, 0);
    lua_pushliteral(L, "fault");
    c.killed = KILL_MEM;
    push_fault(L, p, &c, LUA_ERRMEM);
    call_release(p, &c, false);
    return 2;
  }
  lua_xmove(p->L, c.co, n);
  return run_call(L, 1, p, &c, n);
}

/* callh:remaining() -> seconds left of the call's wall-clock budget (>= 0) */
static int call_remaining(lua_State *L) {
  CallBox *cb = callbox_check(L, 1);
  uint64_t now = sl_now_ns();
  lua_pushnumber(L, now >= cb->c.deadline ? 0 : (double)(cb->c.deadline - now) / 1e9);
  return 1;
}

/* callh:close() -> true: abandons a suspended call (its thread is released). */
static int call_close(lua_State *L) {
  CallBox *cb = luaL_checkudata(L, 1, CALL_MT);
  if (cb->live) {
    cb->live = false;
    lua_getiuservalue(L, 1, 1);
    PluginBox *box = lua_touserdata(L, -1);
    if (box != NULL && box->p != NULL && box->p->L != NULL)
      call_release(box->p, &cb->c, false);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* plugin:stats() -> {memory, peak, cap, calls, faults, instructions, time_ns} */
static int plugin_stats(lua_State *L) {
  Plugin *p = plugin_check(L, 1);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)p->used);
  lua_setfield(L, -2, "memory");
  lua_pushinteger(L, (lua_Integer)p->peak);
  lua_setfield(L, -2, "peak");
  lua_pushinteger(L, (lua_Integer)p->cap);
  lua_setfield(L, -2, "cap");
  lua_pushinteger(L, (lua_Integer)p->calls);
  lua_setfield(L, -2, "calls");
  lua_pushinteger(L, (lua_Integer)p->faults);
  lua_setfield(L, -2, "faults");
  lua_pushinteger(L, (lua_Integer)p->instructions);
  lua_setfield(L, -2, "instructions");
  lua_pushinteger(L, (lua_Integer)p->time_ns);
  lua_setfield(L, -2, "time_ns");
  return 1;
}

/* plugin:close() -> true. Also __gc and __close; idempotent. */
static int plugin_close(lua_State *L) {
  PluginBox *box = luaL_checkudata(L, 1, PLUGIN_MT);
  Plugin *p = box->p;
  if (p != NULL && p->L != NULL) {
    p->capped = false;
    lua_close(p->L);
    p->L = NULL;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int plugin_gc(lua_State *L) {
  plugin_close(L);
  PluginBox *box = lua_touserdata(L, 1);
  free(box->p);
  box->p = NULL;
  return 0;
}

static int plugin_tostring(lua_State *L) {
  PluginBox *box = luaL_checkudata(L, 1, PLUGIN_MT);
  lua_pushfstring(L, "sandlot.plugin (%s%s)", box->p ? box->p->name : "?",
                  box->p && box->p->L ? "" : ", closed");
  return 1;
}

static const luaL_Reg plugin_methods[] = {
  {"load", plugin_load}, {"call", plugin_call}, {"resume", plugin_resume},
  {"stats", plugin_stats}, {"close", plugin_close}, {NULL, NULL}
};
static const luaL_Reg plugin_meta[] = {
  {"__index", NULL}, {"__gc", plugin_gc}, {"__close", plugin_close},
  {"__tostring", plugin_tostring}, {NULL, NULL}
};
static const luaL_Reg call_methods[] = {
  {"remaining", call_remaining}, {"close", call_close}, {NULL, NULL}
};
static const luaL_Reg call_meta[] = {
  {"__index", NULL}, {"__gc", call_close}, {"__close", call_close}, {NULL, NULL}
};
static const luaL_Reg plugin_funcs[] = {{"new", plugin_new}, {NULL, NULL}};

int luaopen_sandlot_core_plugin(lua_State *L) {
  luaL_newmetatable(L, PLUGIN_MT);
  luaL_setfuncs(L, plugin_meta, 0);
  luaL_newlib(L, plugin_methods);
  lua_setfield(L, -2, "__index");
  luaL_newmetatable(L, CALL_MT);
  luaL_setfuncs(L, call_meta, 0);
  luaL_newlib(L, call_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 2);
  luaL_newlib(L, plugin_funcs);
  return 1;
}
