/* bytecode.c: a package searcher that serves the Lua library from bytecode compiled at build
 * time (core/bytecode_gen.lua), sparing each process the parse of every module it loads
 * (about 10 ms of a one-shot script's 30). It finds the module's file on package.path as
 * the Lua searcher would, reads it and compares its size and FNV-1a 64 hash with the source
 * the bytecode was compiled from: only the same text is served from bytecode, under the
 * file's own path as chunk name. Anything else (an edited tree, a module not in the table,
 * bytecode of another Lua build) falls through to the Lua searcher, which loads the source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytecode.h"
#include "internal.h"

#define SRC_AT 32                 /* the main function's source string: 31-byte header + 1 */
#define MAX_SOURCE (4u << 20)     /* a module above this is left to the Lua searcher */

static const char STATS_KEY = 0;  /* registry: {hits = n, misses = m} of this state */

static void count(lua_State *L, int stats, const char *which) {
  lua_getfield(L, stats, which);
  lua_Integer n = lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  lua_pushinteger(L, n);
  lua_setfield(L, stats, which);
}

static const SlBytecode *find(const char *name) {
  size_t lo = 0, hi = sl_bytecode_count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, sl_bytecode[mid].name);
    if (c == 0) return &sl_bytecode[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

/* FNV-1a's step over 64-bit little-endian words, then the tail bytes (bytecode_gen.lua's
 * text_hash): it tells an edited file from the compiled one, at a word per multiply. */
static uint64_t text_hash(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325u;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);         /* host order: on a big-endian host no file matches, and */
    h = (h ^ w) * 1099511628211u; /* every module loads from its source as before */
  }
  for (; i < n; i++) h = (h ^ p[i]) * 1099511628211u;
  return h;
}

/* Reads the whole file if it is exactly `want` bytes; NULL otherwise (or on any error). */
static unsigned char *read_exact(const char *path, size_t want) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  unsigned char *buf = malloc(want + 1);
  size_t got = buf != NULL ? fread(buf, 1, want + 1, f) : 0;
  fclose(f);
  if (buf == NULL || got != want) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Lua 5.4's dumpSize: 7-bit groups, most significant first, the last one marked 0x80. */
static size_t put_size(unsigned char *out, size_t x) {
  unsigned char tmp[16];
  size_t n = 0;
  do {
    tmp[n++] = (unsigned char)(x & 0x7f);
    x >>= 7;
  } while (x != 0);
  tmp[0] |= 0x80;
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

/* Pushes the chunk of entry `e` (NULL: none) compiled from the file at `path` and returns 1,
 * when the file holds the very text it was compiled from; else pushes nothing and returns 0.
 * `stats` is the index of the stats table, 0 for none. */
static int load_embedded(lua_State *L, const SlBytecode *e, const char *path, int stats) {
  if (e == NULL || e->code_size < SRC_AT + 2 || e->src_size > MAX_SOURCE) return 0;
  unsigned char *src = read_exact(path, e->src_size);
  int same = src != NULL && text_hash(src, e->src_size) == e->src_hash;
  free(src);
  size_t plen = strlen(path);
  unsigned char *code = same && memcmp(e->code + SRC_AT, "\x82@", 2) == 0
                        ? malloc(e->code_size + 16 + plen) : NULL;
  int rc = LUA_ERRERR;
  if (code != NULL) {                           /* the chunk name "@" becomes "@" path */
    memcpy(code, e->code, SRC_AT);
    size_t at = SRC_AT + put_size(code + SRC_AT, plen + 2);   /* + "@" + dumpSize's 1 */
    code[at++] = '@';
    memcpy(code + at, path, plen);
    at += plen;
    memcpy(code + at, e->code + SRC_AT + 2, e->code_size - SRC_AT - 2);
    at += e->code_size - SRC_AT - 2;
    lua_pushfstring(L, "@%s", path);
    rc = luaL_loadbufferx(L, (const char *)code, at, lua_tostring(L, -1), "b");
    lua_remove(L, -2);
    free(code);
    if (rc != LUA_OK) lua_pop(L, 1);            /* another Lua build's format: the source */
  }
  if (stats != 0) count(L, stats, rc == LUA_OK ? "hits" : "misses");
  return rc == LUA_OK;
}

/* searcher(name) -> loader, path | nil. Upvalues: the package table, the stats table. */
static int searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const SlBytecode *e = find(name);
  if (e == NULL) return 0;
  lua_getfield(L, lua_upvalueindex(1), "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, lua_upvalueindex(1), "path");
  if (!lua_isfunction(L, -3) || !lua_isstring(L, -1)) return 0;
  lua_call(L, 2, 1);
  const char *path = lua_tostring(L, -1);
  if (path == NULL) return 0;                   /* not found: the Lua searcher says where not */
  if (!load_embedded(L, e, path, lua_upvalueindex(2))) return 0;
  lua_pushvalue(L, -2);                         /* the path, as the Lua searcher passes it */
  return 2;
}

/* sandlot.core.bytecode.load(name, path) -> chunk | nil: module `name`'s precompiled chunk
 * when the file at `path` is the text it was compiled from (providers are loaded by path). */
static int load(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATS_KEY);
  int at = lua_istable(L, -1) ? lua_gettop(L) : 0;
  if (at == 0 || !load_embedded(L, find(name), path, at)) lua_pushnil(L);
  return 1;
}

/* sandlot.core.bytecode.stats() -> {modules, installed, hits?, misses?} of this state. */
static int stats(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)sl_bytecode_count);
  lua_setfield(L, -2, "modules");
  int installed = lua_rawgetp(L, LUA_REGISTRYINDEX, &STATS_KEY) == LUA_TTABLE;
  if (installed) {
    lua_getfield(L, -1, "hits");
    lua_setfield(L, -3, "hits");
    lua_getfield(L, -1, "misses");
    lua_setfield(L, -3, "misses");
  }
  lua_pop(L, 1);
  lua_pushboolean(L, installed);
  lua_setfield(L, -2, "installed");
  return 1;
}

int luaopen_sandlot_core_bytecode(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, stats);
  lua_setfield(L, -2, "stats");
  lua_pushcfunction(L, load);
  lua_setfield(L, -2, "load");
  return 1;
}

void sl_install_bytecode_searcher(lua_State *L) {
  const char *off = getenv("SANDLOT_NO_BYTECODE");        /* the sources only, for debugging */
  if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0) return;
  lua_getglobal(L, "package");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "searchers");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    return;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = n; i >= 2; i--) {         /* insert at 2: after package.preload */
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushvalue(L, -2);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "hits");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "misses");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &STATS_KEY);
  lua_pushcclosure(L, searcher, 2);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}
