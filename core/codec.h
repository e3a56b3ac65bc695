/* codec.h: the one codec for Lua values that cross a boundary (a plugin's lua_State, a
 * replica's RPC frames). MessagePack on the wire: msgpack-c packs; a bounded decoder of our
 * own unpacks straight into Lua values (see codec.c for why not msgpack-c's unpacker).
 *
 * What crosses: nil, booleans, integers (stay integers), floats, strings (str when valid
 * UTF-8, else bin; both come back as the same bytes), tables of those (a proper sequence
 * 1..n becomes an array, anything else a map), and sandlot errors (ext type 1). What is
 * refused, with the path of the offending value: functions, userdata, threads, tables with
 * another metatable, cycles, nesting deeper than SL_CODEC_MAX_DEPTH, and output past the
 * byte cap. */
#ifndef SANDLOT_CODEC_H
#define SANDLOT_CODEC_H

#include <stddef.h>

#include <lua.h>
#include <msgpack.h>

#define SL_CODEC_MAX_DEPTH 100
#define SL_CODEC_EXT_ERROR 1                       /* a sandlot.error, as a map of its fields */
#define SL_CODEC_MAX_BYTES ((size_t)256 << 20)     /* default cap on one encoded value */

/* Packs the value at idx into out (appending). 0 on success; -1 with why filled ("value.a[3]:
 * a function cannot be copied"). max_bytes == 0 means SL_CODEC_MAX_BYTES. */
int sl_codec_pack(lua_State *L, int idx, msgpack_sbuffer *out, size_t max_bytes, char *why,
                  size_t n);

/* Decodes one value from p[*pos..len) and pushes it; *pos moves past it. 0 on success; -1 with
 * why filled and nothing pushed. Every length is checked against the bytes left, so a hostile
 * header costs nothing. */
int sl_codec_unpack(lua_State *L, const char *p, size_t len, size_t *pos, char *why, size_t n);

/* Deep-copies the value at idx of `from` onto the top of `to` (pack + unpack). 0 or -1. */
int sl_codec_copy(lua_State *from, int idx, lua_State *to, char *why, size_t n);

#endif
