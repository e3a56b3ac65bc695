/* fuzz/lua_target.c: one libFuzzer harness for every Lua decoder, built per target with
 * -DFUZZ_MODULE/-DFUZZ_FUNCTION: calls module.function(input) under pcall in a sandlot engine;
 * a raise or `nil, x` that is not a sandlot.error aborts. Lua lines are the coverage (Debian's
 * liblua is not instrumented); a capped Lua heap turns an unbounded buffer into a failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "../core/sandlot.h"

#ifndef FUZZ_MODULE
#error "build with -DFUZZ_MODULE=\"module\" -DFUZZ_FUNCTION=\"function\""
#endif
#ifndef FUZZ_MEM_MB
#define FUZZ_MEM_MB 64                     /* Lua heap an input may use beyond the baseline */
#endif
#define COUNTERS 65536
#define BUDGET_STEP 1000                   /* instructions between count hooks */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libFuzzer's API gives no user data pointer, so the harness state is the one mutable global
 * of this program (the core itself keeps none). The counters live in the section libFuzzer
 * scans for extra coverage. */
typedef struct {
  sandlot *S;
  int fn;                                  /* registry ref of the target function */
  lua_Alloc alloc;                         /* the engine's own allocator */
  void *alloc_ud;
  size_t used, cap;                        /* Lua heap bytes; 0 cap: no limit yet */
  long budget;                             /* instructions left; < 0: unlimited */
  uintptr_t prev;                          /* previous line's location, for edges */
  unsigned runs;
} Harness;

static Harness H;
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t counters[COUNTERS];

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  Harness *h = ud;
  size_t old = ptr != NULL ? osize : 0;
  if (nsize > old && h->cap != 0 && h->used - old + nsize > h->cap) return NULL;
  void *p = h->alloc(h->alloc_ud, ptr, osize, nsize);
  if (p != NULL || nsize == 0) h->used = h->used - old + nsize;
  return p;
}

/* Line events become coverage (location = the function's source string and the line, paired
 * with the previous location as AFL does); count events spend the instruction budget. */
static void hook(lua_State *L, lua_Debug *ar) {
  if (ar->event == LUA_HOOKCOUNT) {
    if (H.budget < 0) return;
    H.budget -= BUDGET_STEP;
    if (H.budget < 0) {
      H.budget = -1;                       /* raise once; what catches it carries on */
      luaL_error(L, "fuzz: instruction budget exhausted");
    }
    return;
  }
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t loc = ((uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline) * 2654435761u;
  counters[(loc ^ (H.prev >> 1)) % COUNTERS]++;
  H.prev = loc;
}

/* fuzz_budget(n): the current input may run n more Lua instructions (0: no limit). For targets
 * that run user-written code, such as a config file, where an endless loop is not a bug. */
static int fuzz_budget(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  H.budget = n > 0 ? (long)n : -1;
  return 0;
}

static int is_sandlot_error(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, "sandlot.error");
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

static void fail(lua_State *L, const char *what, int idx) {
  fprintf(stderr, "fuzz %s.%s: %s: %s\n", FUZZ_MODULE, FUZZ_FUNCTION, what,
          luaL_tolstring(L, idx, NULL));
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  H.S = sandlot_open(NULL);
  if (H.S == NULL) abort();
  lua_State *L = sandlot_lua(H.S);
  lua_getglobal(L, "package");             /* fuzz/ adapters live beside lua/ */
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s", FUZZ_ROOT, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  lua_register(L, "fuzz_budget", fuzz_budget);
  lua_getglobal(L, "require");
  lua_pushstring(L, FUZZ_MODULE);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) fail(L, "require", -1);
  lua_getfield(L, -1, FUZZ_FUNCTION);
  if (!lua_isfunction(L, -1)) fail(L, "not a function", -1);
  H.fn = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  H.alloc = lua_getallocf(L, &H.alloc_ud);
  H.used = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
  H.cap = H.used + ((size_t)FUZZ_MEM_MB << 20);
  lua_setallocf(L, capped_alloc, &H);
  lua_sethook(L, hook, LUA_MASKLINE | LUA_MASKCOUNT, BUDGET_STEP);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = sandlot_lua(H.S);
  H.budget = -1;
  H.prev = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, H.fn);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
    if (!is_sandlot_error(L, -1)) fail(L, "raised", -1);
  } else if (lua_isnil(L, -2) && !lua_isnil(L, -1) && !is_sandlot_error(L, -1)) {
    fail(L, "returned nil and a value that is not a sandlot.error", -1);
  }
  lua_settop(L, 0);
  H.budget = -1;
  if (++H.runs % 64 == 0) lua_gc(L, LUA_GCCOLLECT);   /* keep the heap near its baseline */
  return 0;
}
