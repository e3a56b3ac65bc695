/* zlib.c: sandlot.core.zlib, streaming gzip (RFC 1952) compression and decompression over
 * zlib. Mechanism only: sizes, defaults and wording live in lua/sandlot/wire/gzip.lua. A
 * stream is a userdata owning one z_stream; an inflater stops with an error once its output
 * passes the cap it was made with, so a decompression bomb costs at most that much memory. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"

#define ZS_MT "sandlot.zlib.stream"
#define OUT_STEP 16384

typedef struct {
  z_stream z;
  bool inflate;     /* else deflate */
  bool open;        /* z holds zlib state: End it once */
  bool ended;       /* Z_STREAM_END seen (inflate), or finish() done (deflate) */
  bool failed;      /* an error was returned: the stream is unusable */
  size_t max_out;   /* inflate: the most output the whole stream may produce */
  size_t total_out;
} ZStream;

static ZStream *zs_check(lua_State *L) {
  ZStream *s = luaL_checkudata(L, 1, ZS_MT);
  if (!s->open) luaL_error(L, "attempt to use a closed sandlot.zlib.stream");
  return s;
}

static void zs_end(ZStream *s) {
  if (!s->open) return;
  if (s->inflate) inflateEnd(&s->z);
  else deflateEnd(&s->z);
  s->open = false;
}

static ZStream *zs_new(lua_State *L, bool inflate) {
  ZStream *s = lua_newuserdatauv(L, sizeof(*s), 0);
  memset(s, 0, sizeof(*s));
  s->inflate = inflate;
  luaL_setmetatable(L, ZS_MT);
  return s;
}

/* zlib.deflater([level]) -> stream: gzip output; level 0-9, default 6 */
static int zlib_deflater(lua_State *L) {
  lua_Integer level = luaL_optinteger(L, 1, Z_DEFAULT_COMPRESSION);
  luaL_argcheck(L, level == Z_DEFAULT_COMPRESSION || (level >= 0 && level <= 9), 1,
                "level must be 0-9");
  ZStream *s = zs_new(L, false);
  if (deflateInit2(&s->z, (int)level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return sl_fail(L, "internal", "gzip: deflateInit2 failed");
  s->open = true;
  return 1;
}

/* zlib.inflater(max_output) -> stream: gzip input only; output capped at max_output bytes */
static int zlib_inflater(lua_State *L) {
  lua_Integer max = luaL_checkinteger(L, 1);
  luaL_argcheck(L, max >= 0, 1, "max_output must be >= 0");
  ZStream *s = zs_new(L, true);
  if (inflateInit2(&s->z, 15 + 16) != Z_OK)
    return sl_fail(L, "internal", "gzip: inflateInit2 failed");
  s->open = true;
  s->max_out = (size_t)max;
  return 1;
}

static int zs_error(lua_State *L, ZStream *s, const char *code, const char *msg) {
  s->failed = true;
  return sl_fail(L, code, "gzip: %s", msg);
}

/* Runs zlib over [data] with flush, pushing the output as one string (or nil, err).
 * Stack: [stream, data]; the buffer sits above and nothing else is pushed while it lives. */
static int zs_run(lua_State *L, ZStream *s, const char *data, size_t n, int flush) {
  if (s->failed) return sl_fail(L, "bad_response", "gzip: the stream failed earlier");
  s->z.next_in = (Bytef *)(uintptr_t)data;
  s->z.avail_in = (uInt)n;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *fail_code = NULL, *fail_msg = NULL;
  for (;;) {
    if (s->inflate && s->ended) {
      if (s->z.avail_in > 0) {
        fail_code = "bad_response";
        fail_msg = "data after the end of the gzip stream";
      }
      break;
    }
    size_t room = OUT_STEP;
    if (s->inflate && s->max_out - s->total_out < room) room = s->max_out - s->total_out + 1;
    char *out = luaL_prepbuffsize(&b, room);
    s->z.next_out = (Bytef *)out;
    s->z.avail_out = (uInt)room;
    int rc = s->inflate ? inflate(&s->z, flush) : deflate(&s->z, flush);
    size_t got = room - s->z.avail_out;
    luaL_addsize(&b, got);
    s->total_out += got;
    if (s->inflate && s->total_out > s->max_out) {
      fail_code = "bad_response";
      fail_msg = "the data inflates past the output limit";
      break;
    }
    if (rc == Z_STREAM_END) {
      s->ended = true;
      if (!s->inflate) break;
      continue;
    }
    if (rc == Z_BUF_ERROR) {             /* no progress: input used up, or output full */
      if (s->z.avail_out != 0) break;
      continue;
    }
    if (rc != Z_OK) {
      fail_code = rc == Z_MEM_ERROR ? "internal" : "bad_response";
      fail_msg = s->z.msg != NULL ? s->z.msg : "corrupt data";
      break;
    }
    if (s->z.avail_in == 0 && s->z.avail_out != 0 && flush != Z_FINISH) break;
  }
  s->z.next_in = NULL;
  s->z.avail_in = 0;
  luaL_pushresult(&b);
  if (fail_code != NULL) {
    lua_pop(L, 1);
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", fail_msg);   /* z.msg belongs to the stream */
    return zs_error(L, s, fail_code, msg);
  }
  return 1;
}

/* stream:write(data) -> output | nil, err   (output may be "") */
static int zs_write(lua_State *L) {
  ZStream *s = zs_check(L);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, n <= UINT32_MAX, 2, "chunk too large");
  if (!s->inflate && s->ended) return luaL_error(L, "gzip: write after finish");
  lua_settop(L, 2);
  return zs_run(L, s, data, n, Z_NO_FLUSH);
}

/* stream:finish() -> output | nil, err: deflate writes the trailer; inflate checks that the
 * gzip stream ended (bad_response when it was cut short) */
static int zs_finish(lua_State *L) {
  ZStream *s = zs_check(L);
  lua_settop(L, 1);
  if (s->inflate) {
    if (s->failed) return sl_fail(L, "bad_response", "gzip: the stream failed earlier");
    if (!s->ended) return zs_error(L, s, "bad_response", "the gzip stream is cut short");
    lua_pushliteral(L, "");
    return 1;
  }
  if (s->ended) return luaL_error(L, "gzip: finish called twice");
  return zs_run(L, s, "", 0, Z_FINISH);
}

/* stream:ended() -> boolean: inflate saw the end of the gzip stream */
static int zs_ended(lua_State *L) {
  ZStream *s = zs_check(L);
  lua_pushboolean(L, s->ended);
  return 1;
}

/* stream:total() -> integer: bytes of output so far */
static int zs_total(lua_State *L) {
  ZStream *s = zs_check(L);
  lua_pushinteger(L, (lua_Integer)s->total_out);
  return 1;
}

/* stream:close() -> true. Also __close and __gc: idempotent. */
static int zs_close(lua_State *L) {
  ZStream *s = luaL_checkudata(L, 1, ZS_MT);
  zs_end(s);
  lua_pushboolean(L, 1);
  return 1;
}

static int zs_tostring(lua_State *L) {
  ZStream *s = luaL_checkudata(L, 1, ZS_MT);
  lua_pushfstring(L, "sandlot.zlib.stream (%s%s)", s->inflate ? "inflate" : "deflate",
                  s->open ? "" : ", closed");
  return 1;
}

static const luaL_Reg zs_methods[] = {
  {"write", zs_write}, {"finish", zs_finish}, {"ended", zs_ended}, {"total", zs_total},
  {"close", zs_close}, {NULL, NULL}
};
static const luaL_Reg zs_meta[] = {
  {"__index", NULL}, {"__gc", zs_close}, {"__close", zs_close},
  {"__tostring", zs_tostring}, {NULL, NULL}
};
static const luaL_Reg zlib_funcs[] = {
  {"deflater", zlib_deflater}, {"inflater", zlib_inflater}, {NULL, NULL}
};

int luaopen_sandlot_core_zlib(lua_State *L) {
  luaL_newmetatable(L, ZS_MT);
  luaL_setfuncs(L, zs_meta, 0);
  luaL_newlib(L, zs_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, zlib_funcs);
  lua_pushstring(L, zlibVersion());
  lua_setfield(L, -2, "version");
  return 1;
}
