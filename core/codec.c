/* codec.c: sandlot.core.codec, the one codec for Lua values crossing a boundary (see
 * codec.h). msgpack-c packs. Unpacking is our own, straight into Lua values, because
 * msgpack-c's unpacker builds an object tree sized by the counts a header declares before the
 * bytes arrive (5 hostile bytes, "dd 0f ff ff ff", cost it 1 GB here) and stops at 32 levels.
 * Here every count is checked against the bytes left, so memory stays proportional to input. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "internal.h"

/* ---- shared: the path of the offending value, built as the failure unwinds ---- */

typedef struct {
  char msg[160];
  char path[200];
  size_t path_len;
} Why;

static void why_set(Why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_set(Why *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
  va_end(ap);
}

/* Prepends one path segment (".name" or "[3]"); a path that no longer fits keeps its tail. */
static void why_prepend(Why *w, const char *seg) {
  size_t k = strlen(seg);
  if (k + w->path_len >= sizeof(w->path)) return;
  memmove(w->path + k, w->path, w->path_len + 1);
  memcpy(w->path, seg, k);
  w->path_len += k;
}

static void why_segment(lua_State *L, int key, Why *w) {
  char seg[64];
  if (lua_type(L, key) == LUA_TNUMBER && lua_isinteger(L, key)) {
    snprintf(seg, sizeof(seg), "[%lld]", (long long)lua_tointeger(L, key));
  } else if (lua_type(L, key) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, key, &n);
    bool ident = n > 0 && n < 40 && !(s[0] >= '0' && s[0] <= '9');
    for (size_t i = 0; ident && i < n; i++)
      ident = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
    if (ident) {
      snprintf(seg, sizeof(seg), ".%s", s);
    } else {                              /* ["first 30 bytes"], unprintables as '?' */
      char k[31];
      size_t m = n < 30 ? n : 30;
      for (size_t i = 0; i < m; i++) k[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
      k[m] = '\0';
      snprintf(seg, sizeof(seg), "[\"%s%s\"]", k, n > 30 ? "..." : "");
    }
  } else {
    snprintf(seg, sizeof(seg), "[%s]", luaL_typename(L, key));
  }
  why_prepend(w, seg);
}

static void why_out(const Why *w, char *out, size_t n) {
  if (out != NULL && n > 0) snprintf(out, n, "value%s: %s", w->path, w->msg);
}

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t k;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
    else return false;
    if (n - i <= k) return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += k + 1;
  }
  return true;
}

/* ---- encode ---- */

typedef struct {
  lua_State *L;
  msgpack_packer pk;
  msgpack_sbuffer *out;
  size_t max;
  int seen;          /* absolute index of a table: tables on the current path */
  Why w;
} Enc;

static int enc_value(Enc *e, int idx, int depth);

static int enc_oom(Enc *e) {
  why_set(&e->w, "out of memory while encoding");
  return -1;
}

static int enc_check_size(Enc *e) {
  if (e->out->size <= e->max) return 0;
  why_set(&e->w, "the encoded value is larger than %zu bytes", e->max);
  return -1;
}

static bool is_error_mt(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return false;
  luaL_getmetatable(L, ERROR_MT);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* A proper sequence: keys exactly 1..n, n > 0. */
static bool is_sequence(lua_State *L, int idx, size_t *count) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n++;
    lua_pop(L, 1);
  }
  *count = n;
  if (n == 0 || lua_rawlen(L, idx) != n) return false;
  for (size_t i = 1; i <= n; i++) {
    bool present = lua_rawgeti(L, idx, (lua_Integer)i) != LUA_TNIL;
    lua_pop(L, 1);
    if (!present) return false;
  }
  return true;
}

static int enc_entries(Enc *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t n;
  if (is_sequence(L, idx, &n)) {
    if (msgpack_pack_array(&e->pk, n) != 0) return enc_oom(e);
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, (lua_Integer)i);
      int rc = enc_value(e, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (rc != 0) {
        lua_pushinteger(L, (lua_Integer)i);
        why_segment(L, -1, &e->w);
        lua_pop(L, 1);
        return -1;
      }
    }
    return 0;
  }
  if (msgpack_pack_map(&e->pk, n) != 0) return enc_oom(e);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int key = lua_gettop(L) - 1;
    int kt = lua_type(L, key);
    int rc;
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
      why_set(&e->w, "a %s key cannot be copied (keys are strings, numbers or booleans)",
              luaL_typename(L, key));
      rc = -1;
    } else {
      rc = enc_value(e, key, depth + 1);
      if (rc == 0) rc = enc_value(e, key + 1, depth + 1);
    }
    if (rc != 0) {
      why_segment(L, key, &e->w);
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* A sandlot error: ext type 1 holding the map of its fields. */
static int enc_error(Enc *e, int idx, int depth) {
  msgpack_sbuffer body, *outer = e->out;
  msgpack_sbuffer_init(&body);
  e->out = &body;
  msgpack_packer_init(&e->pk, &body, msgpack_sbuffer_write);
  int rc = enc_entries(e, idx, depth);
  e->out = outer;
  msgpack_packer_init(&e->pk, outer, msgpack_sbuffer_write);
  if (rc == 0 && (msgpack_pack_ext(&e->pk, body.size, SL_CODEC_EXT_ERROR) != 0 ||
                  msgpack_pack_ext_body(&e->pk, body.data, body.size) != 0))
    rc = enc_oom(e);
  msgpack_sbuffer_destroy(&body);
  return rc;
}

static int enc_table(Enc *e, int idx, int depth) {
  lua_State *L = e->L;
  if (depth >= SL_CODEC_MAX_DEPTH) {
    why_set(&e->w, "tables nested deeper than %d levels cannot be copied", SL_CODEC_MAX_DEPTH);
    return -1;
  }
  bool err = false;
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    if (!(err = is_error_mt(L, idx))) {
      why_set(&e->w, "a table with a metatable cannot be copied (only plain data crosses)");
      return -1;
    }
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) != LUA_TNIL) {
    lua_pop(L, 1);
    why_set(&e->w, "a cycle (a table that contains itself) cannot be copied");
    return -1;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, e->seen);
  int rc = err ? enc_error(e, idx, depth) : enc_entries(e, idx, depth);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, e->seen);
  return rc;
}

static int enc_value(Enc *e, int idx, int depth) {
  lua_State *L = e->L;
  if (!lua_checkstack(L, 8)) {
    why_set(&e->w, "out of Lua stack while encoding");
    return -1;
  }
  int rc;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: rc = msgpack_pack_nil(&e->pk); break;
  case LUA_TBOOLEAN:
    rc = lua_toboolean(L, idx) ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) rc = msgpack_pack_int64(&e->pk, (int64_t)lua_tointeger(L, idx));
    else rc = msgpack_pack_double(&e->pk, (double)lua_tonumber(L, idx));
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (utf8_valid((const unsigned char *)s, n))
      rc = msgpack_pack_str(&e->pk, n) || msgpack_pack_str_body(&e->pk, s, n);
    else
      rc = msgpack_pack_bin(&e->pk, n) || msgpack_pack_bin_body(&e->pk, s, n);
    break;
  }
  case LUA_TTABLE:
    if (enc_table(e, idx, depth) != 0) return -1;
    return enc_check_size(e);
  default:
    why_set(&e->w, "a %s cannot be copied (only plain data crosses)", luaL_typename(L, idx));
    return -1;
  }
  if (rc != 0) return enc_oom(e);
  return enc_check_size(e);
}

int sl_codec_pack(lua_State *L, int idx, msgpack_sbuffer *out, size_t max_bytes, char *why,
                  size_t n) {
  idx = lua_absindex(L, idx);
  Enc e;
  memset(&e, 0, sizeof(e));
  e.L = L;
  e.out = out;
  e.max = max_bytes ? max_bytes : SL_CODEC_MAX_BYTES;
  if (!lua_checkstack(L, 8)) {
    if (why && n) snprintf(why, n, "value: out of Lua stack while encoding");
    return -1;
  }
  msgpack_packer_init(&e.pk, out, msgpack_sbuffer_write);
  lua_newtable(L);
  e.seen = lua_gettop(L);
  int rc = enc_value(&e, idx, 0);
  lua_pop(L, 1);
  if (rc != 0) why_out(&e.w, why, n);
  return rc;
}

/* ---- decode ---- */

typedef struct {
  lua_State *L;
  const unsigned char *p;
  size_t len, pos;
  Why w;
} Dec;

static int dec_value(Dec *d, int depth);

static int dec_fail(Dec *d, const char *what) {
  why_set(&d->w, "malformed msgpack at byte %zu: %s", d->pos, what);
  return -1;
}

static bool have(const Dec *d, size_t k) { return d->len - d->pos >= k; }

static uint64_t be(const unsigned char *p, size_t k) {
  uint64_t v = 0;
  for (size_t i = 0; i < k; i++) v = (v << 8) | p[i];
  return v;
}

/* Reads a k-byte big-endian unsigned length or value. */
static int dec_uint(Dec *d, size_t k, uint64_t *v) {
  if (!have(d, k)) return dec_fail(d, "truncated");
  *v = be(d->p + d->pos, k);
  d->pos += k;
  return 0;
}

static int dec_bytes(Dec *d, uint64_t n) {
  if (n > d->len - d->pos) return dec_fail(d, "a string runs past the end of the input");
  lua_pushlstring(d->L, (const char *)d->p + d->pos, (size_t)n);
  d->pos += (size_t)n;
  return 0;
}

static int dec_array(Dec *d, uint64_t n, int depth) {
  if (depth >= SL_CODEC_MAX_DEPTH) return dec_fail(d, "nested deeper than the depth limit");
  if (n > d->len - d->pos) return dec_fail(d, "an array count larger than the input");
  lua_createtable(d->L, (int)n, 0);
  for (uint64_t i = 1; i <= n; i++) {
    if (dec_value(d, depth + 1) != 0) {
      lua_pop(d->L, 1);
      return -1;
    }
    lua_rawseti(d->L, -2, (lua_Integer)i);
  }
  return 0;
}

static int dec_map(Dec *d, uint64_t n, int depth) {
  if (depth >= SL_CODEC_MAX_DEPTH) return dec_fail(d, "nested deeper than the depth limit");
  if (n > (d->len - d->pos) / 2) return dec_fail(d, "a map count larger than the input");
  lua_State *L = d->L;
  lua_createtable(L, 0, (int)n);
  for (uint64_t i = 0; i < n; i++) {
    size_t at = d->pos;
    if (dec_value(d, depth + 1) != 0) {
      lua_pop(L, 1);
      return -1;
    }
    int kt = lua_type(L, -1);
    bool ok = kt == LUA_TSTRING || kt == LUA_TBOOLEAN ||
              (kt == LUA_TNUMBER && lua_tonumber(L, -1) == lua_tonumber(L, -1));
    if (!ok) {
      lua_pop(L, 2);
      d->pos = at;
      return dec_fail(d, "a map key that is not a string, number or boolean (or is NaN)");
    }
    if (dec_value(d, depth + 1) != 0) {
      lua_pop(L, 2);
      return -1;
    }
    lua_rawset(L, -3);
  }
  return 0;
}

static void push_error_mt(lua_State *L) {
  luaL_getmetatable(L, ERROR_MT);
  if (lua_isnil(L, -1)) {                 /* a fresh state (a plugin): open the errors module */
    lua_pop(L, 1);
    luaL_requiref(L, "sandlot.core.errors", luaopen_sandlot_core_errors, 0);
    lua_pop(L, 1);
    luaL_getmetatable(L, ERROR_MT);
  }
}

static int dec_ext(Dec *d, int8_t type, uint64_t n, int depth) {
  if (n > d->len - d->pos) return dec_fail(d, "an ext body runs past the end of the input");
  if (type != SL_CODEC_EXT_ERROR) {
    char what[48];
    snprintf(what, sizeof(what), "unknown ext type %d", (int)type);
    return dec_fail(d, what);
  }
  size_t end = d->pos + (size_t)n, outer = d->len;
  d->len = end;                           /* the error's map must fill the body exactly */
  int rc = dec_value(d, depth);
  d->len = outer;
  if (rc != 0) return -1;
  if (d->pos != end || lua_type(d->L, -1) != LUA_TTABLE) {
    lua_pop(d->L, 1);
    return dec_fail(d, "an error ext whose body is not one map");
  }
  push_error_mt(d->L);
  lua_setmetatable(d->L, -2);
  return 0;
}

static int dec_value(Dec *d, int depth) {
  lua_State *L = d->L;
  if (!lua_checkstack(L, 8)) return dec_fail(d, "out of Lua stack");
  if (!have(d, 1)) return dec_fail(d, "truncated");
  unsigned c = d->p[d->pos++];
  uint64_t v;
  if (c <= 0x7f) { lua_pushinteger(L, (lua_Integer)c); return 0; }
  if (c >= 0xe0) { lua_pushinteger(L, (lua_Integer)(int8_t)c); return 0; }
  if (c >= 0x80 && c <= 0x8f) return dec_map(d, c & 0x0f, depth);
  if (c >= 0x90 && c <= 0x9f) return dec_array(d, c & 0x0f, depth);
  if (c >= 0xa0 && c <= 0xbf) return dec_bytes(d, c & 0x1f);
  switch (c) {
  case 0xc0: lua_pushnil(L); return 0;
  case 0xc2: lua_pushboolean(L, 0); return 0;
  case 0xc3: lua_pushboolean(L, 1); return 0;
  case 0xc4: case 0xd9: return dec_uint(d, 1, &v) ? -1 : dec_bytes(d, v);
  case 0xc5: case 0xda: return dec_uint(d, 2, &v) ? -1 : dec_bytes(d, v);
  case 0xc6: case 0xdb: return dec_uint(d, 4, &v) ? -1 : dec_bytes(d, v);
  case 0xc7: case 0xc8: case 0xc9: {
    size_t k = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
    if (dec_uint(d, k, &v) != 0) return -1;
    if (!have(d, 1)) return dec_fail(d, "truncated");
    int8_t type = (int8_t)d->p[d->pos++];
    return dec_ext(d, type, v, depth);
  }
  case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
    if (!have(d, 1)) return dec_fail(d, "truncated");
    int8_t type = (int8_t)d->p[d->pos++];
    return dec_ext(d, type, (uint64_t)1 << (c - 0xd4), depth);
  }
  case 0xca: {
    if (dec_uint(d, 4, &v) != 0) return -1;
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, sizeof(f));
    lua_pushnumber(L, (lua_Number)f);
    return 0;
  }
  case 0xcb: {
    if (dec_uint(d, 8, &v) != 0) return -1;
    double f;
    memcpy(&f, &v, sizeof(f));
    lua_pushnumber(L, (lua_Number)f);
    return 0;
  }
  case 0xcc: case 0xcd: case 0xce: case 0xcf:
    if (dec_uint(d, (size_t)1 << (c - 0xcc), &v) != 0) return -1;
    if (v > (uint64_t)INT64_MAX) {
      d->pos -= 8;
      return dec_fail(d, "an unsigned integer larger than a Lua integer");
    }
    lua_pushinteger(L, (lua_Integer)v);
    return 0;
  case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
    size_t k = (size_t)1 << (c - 0xd0);
    if (dec_uint(d, k, &v) != 0) return -1;
    int64_t s = k == 8 ? (int64_t)v : (int64_t)(v ^ ((uint64_t)1 << (8 * k - 1))) -
                                      (int64_t)((uint64_t)1 << (8 * k - 1));
    lua_pushinteger(L, (lua_Integer)s);
    return 0;
  }
  case 0xdc: return dec_uint(d, 2, &v) ? -1 : dec_array(d, v, depth);
  case 0xdd: return dec_uint(d, 4, &v) ? -1 : dec_array(d, v, depth);
  case 0xde: return dec_uint(d, 2, &v) ? -1 : dec_map(d, v, depth);
  case 0xdf: return dec_uint(d, 4, &v) ? -1 : dec_map(d, v, depth);
  default:
    d->pos--;
    return dec_fail(d, "the never-used type byte 0xc1");
  }
}

int sl_codec_unpack(lua_State *L, const char *p, size_t len, size_t *pos, char *why, size_t n) {
  Dec d;
  memset(&d, 0, sizeof(d));
  d.L = L;
  d.p = (const unsigned char *)p;
  d.len = len;
  d.pos = *pos;
  int top = lua_gettop(L);
  if (d.pos > len || dec_value(&d, 0) != 0) {
    if (d.pos > len) why_set(&d.w, "a start position past the end of the input");
    lua_settop(L, top);
    if (why && n) snprintf(why, n, "%s", d.w.msg);
    return -1;
  }
  *pos = d.pos;
  return 0;
}

int sl_codec_copy(lua_State *from, int idx, lua_State *to, char *why, size_t n) {
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  int rc = sl_codec_pack(from, idx, &buf, 0, why, n);
  size_t pos = 0;
  if (rc == 0) rc = sl_codec_unpack(to, buf.data ? buf.data : "", buf.size, &pos, why, n);
  msgpack_sbuffer_destroy(&buf);
  return rc;
}

/* ---- Lua ---- */

/* codec.encode(v [, max_bytes]) -> string | nil, err (invalid_input) */
static int codec_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, max >= 0, 2, "max_bytes must be >= 0");
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  char why[400];
  if (sl_codec_pack(L, 1, &buf, (size_t)max, why, sizeof(why)) != 0) {
    msgpack_sbuffer_destroy(&buf);
    return sl_fail(L, "invalid_input", "%s", why);
  }
  lua_pushlstring(L, buf.data ? buf.data : "", buf.size);
  msgpack_sbuffer_destroy(&buf);
  return 1;
}

/* codec.decode(s [, pos]) -> v, next_pos | nil, err (bad_response). pos is 1-based. */
static int codec_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer start = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, start >= 1, 2, "position must be >= 1");
  size_t pos = (size_t)(start - 1);
  char why[400];
  if (sl_codec_unpack(L, s, len, &pos, why, sizeof(why)) != 0)
    return sl_fail(L, "bad_response", "%s", why);
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return 2;
}

static const luaL_Reg codec_funcs[] = {
  {"encode", codec_encode}, {"decode", codec_decode}, {NULL, NULL}
};

int luaopen_sandlot_core_codec(lua_State *L) {
  luaL_newlib(L, codec_funcs);
  lua_pushinteger(L, SL_CODEC_MAX_DEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  return 1;
}
