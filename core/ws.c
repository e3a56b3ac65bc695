/* ws.c: sandlot.core.ws: the RFC 6455 frame codec (bounded, no I/O). lua/sandlot/ws.lua
 * runs the protocol (handshake, reassembly, ping/pong, close) over an upgraded stream.
 *
 * Decision: RFC 6455 framing over the core's own upgraded stream (sandlot.http.upgrade on the
 * client, sandlot.http.serve's raw mode on the server) rather than libwebsockets: the stream
 * already exists for Docker's hijacked attach, it runs on the same libuv loop and scheduler,
 * and the server side for fakes comes from the same codec. libwebsockets would bring a second
 * event-loop integration, its own TLS and its own server. The codec is C (not Lua) because
 * masking is a per-byte XOR over messages of up to 16 MiB and it gets a libFuzzer target.
 *
 *   ws.decode(buf [, pos [, opts]]) -> frame, next_pos | nil [, bytes the frame needs from pos]
 *     (more bytes wanted) | false, code, why
 *     opts: max (bytes of payload, default 16 MiB), masked (true: frames must be masked (server),
 *     false: must not be (client), nil: either). frame = {fin, opcode, payload} (payload unmasked).
 *     code is the close code to send: 1002 protocol error, 1009 too big.
 *   ws.encode(opcode, payload [, fin [, key4]]) -> bytes   (key4: a 4-byte mask key)
 *   ws.mask(data, key4) -> data XOR key
 *   ws.utf8(s) -> true | false   (strict: no overlongs, surrogates or > U+10FFFF)
 *   ws.accept(key) -> base64(SHA-1(key .. RFC 6455 GUID)), the Sec-WebSocket-Accept value */
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define WS_MAX_DEFAULT (16u * 1024 * 1024)

static void xor_mask(char *out, const char *in, size_t n, const unsigned char k[4]) {
  unsigned char k8[8];
  for (int j = 0; j < 8; j++) k8[j] = k[j & 3];
  uint64_t kw, w;
  memcpy(&kw, k8, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {               /* i % 4 == 0 here: the key lines up */
    memcpy(&w, in + i, 8);
    w ^= kw;
    memcpy(out + i, &w, 8);
  }
  for (; i < n; i++) out[i] = (char)((unsigned char)in[i] ^ k[i & 3]);
}

static int push_bad(lua_State *L, int code, const char *why) {
  lua_pushboolean(L, 0);
  lua_pushinteger(L, code);
  lua_pushstring(L, why);
  return 3;
}

static int ws_decode(lua_State *L) {
  size_t len;
  const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 1, &len);
  lua_Integer pos = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, pos >= 1 && (size_t)pos <= len + 1, 2, "out of range");
  uint64_t max = WS_MAX_DEFAULT;
  int want_mask = -1;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "max");
    if (!lua_isnil(L, -1)) max = (uint64_t)luaL_checkinteger(L, -1);
    lua_getfield(L, 3, "masked");
    if (!lua_isnil(L, -1)) want_mask = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  const unsigned char *p = b + (pos - 1);
  size_t n = len - (size_t)(pos - 1);
  if (n < 2) return 0;
  int fin = p[0] >> 7, rsv = (p[0] >> 4) & 7, op = p[0] & 15;
  int masked = p[1] >> 7;
  uint64_t plen = p[1] & 127;
  size_t hl = 2;
  if (rsv != 0) return push_bad(L, 1002, "a frame has reserved bits set (no extension agreed)");
  if ((op > 2 && op < 8) || op > 10) return push_bad(L, 1002, "a frame has an unknown opcode");
  if (op >= 8 && (!fin || plen > 125))
    return push_bad(L, 1002, "a control frame is fragmented or longer than 125 bytes");
  if (want_mask == 1 && !masked) return push_bad(L, 1002, "a client frame is not masked");
  if (want_mask == 0 && masked) return push_bad(L, 1002, "a server frame is masked");
  if (plen == 126) {
    if (n < 4) return 0;
    plen = ((uint64_t)p[2] << 8) | p[3];
    hl = 4;
    if (plen < 126) return push_bad(L, 1002, "a frame length is not minimally encoded");
  } else if (plen == 127) {
    if (n < 10) return 0;
    plen = 0;
    for (int i = 0; i < 8; i++) plen = (plen << 8) | p[2 + i];
    hl = 10;
    if (plen >> 63) return push_bad(L, 1002, "a frame length has its top bit set");
    if (plen < 65536) return push_bad(L, 1002, "a frame length is not minimally encoded");
  }
  if (plen > max) return push_bad(L, 1009, "a frame is larger than the message limit");
  size_t kl = masked ? 4 : 0;
  if (n - hl < kl || n - hl - kl < plen) {   /* nil, the bytes the whole frame needs */
    lua_pushnil(L);
    lua_pushinteger(L, (lua_Integer)(hl + kl + plen));
    return 2;
  }
  const char *pay = (const char *)p + hl + kl;
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, fin);
  lua_setfield(L, -2, "fin");
  lua_pushinteger(L, op);
  lua_setfield(L, -2, "opcode");
  if (masked) {
    luaL_Buffer B;
    char *out = luaL_buffinitsize(L, &B, (size_t)plen);
    xor_mask(out, pay, (size_t)plen, p + hl);
    luaL_pushresultsize(&B, (size_t)plen);
  } else {
    lua_pushlstring(L, pay, (size_t)plen);
  }
  lua_setfield(L, -2, "payload");
  lua_pushinteger(L, pos + (lua_Integer)(hl + kl + plen));
  return 2;
}

static int ws_encode(lua_State *L) {
  lua_Integer op = luaL_checkinteger(L, 1);
  luaL_argcheck(L, op >= 0 && op <= 15, 1, "opcode out of range");
  size_t n, kn = 0;
  const char *pay = luaL_checklstring(L, 2, &n);
  int fin = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  const char *key = luaL_optlstring(L, 4, NULL, &kn);
  luaL_argcheck(L, key == NULL || kn == 4, 4, "a mask key is 4 bytes");
  unsigned char h[14];
  size_t hl = 2;
  h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
  if (n < 126) {
    h[1] = (unsigned char)n;
  } else if (n < 65536) {
    h[1] = 126;
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  if (key != NULL) {
    h[1] |= 0x80;
    memcpy(h + hl, key, 4);
    hl += 4;
  }
  luaL_Buffer B;
  char *out = luaL_buffinitsize(L, &B, hl + n);
  memcpy(out, h, hl);
  if (key != NULL) xor_mask(out + hl, pay, n, (const unsigned char *)key);
  else memcpy(out + hl, pay, n);
  luaL_pushresultsize(&B, hl + n);
  return 1;
}

static int ws_mask(lua_State *L) {
  size_t n, kn;
  const char *d = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &kn);
  luaL_argcheck(L, kn == 4, 2, "a mask key is 4 bytes");
  luaL_Buffer B;
  char *out = luaL_buffinitsize(L, &B, n);
  xor_mask(out, d, n, (const unsigned char *)key);
  luaL_pushresultsize(&B, n);
  return 1;
}

/* strict UTF-8 (RFC 3629) */
static int utf8_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      while (i + 8 <= n) {                   /* ASCII runs, 8 bytes at a time */
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      continue;
    }
    size_t k;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n - i <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += k + 1;
  }
  return 1;
}

static int ws_utf8(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, utf8_ok((const unsigned char *)s, n));
  return 1;
}

/* SHA-1 (FIPS 180-4), for the handshake only */
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *b) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = ((uint32_t)b[4 * i] << 24) | ((uint32_t)b[4 * i + 1] << 16) |
           ((uint32_t)b[4 * i + 2] << 8) | b[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) { f = (bb & c) | (~bb & d); k = 0x5A827999; }
    else if (i < 40) { f = bb ^ c ^ d; k = 0x6ED9EBA1; }
    else if (i < 60) { f = (bb & c) | (bb & d) | (c & d); k = 0x8F1BBCDC; }
    else { f = bb ^ c ^ d; k = 0xCA62C1D6; }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d; d = c; c = rol(bb, 30); bb = a; a = t;
  }
  h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const unsigned char *m, size_t n, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) sha1_block(h, m + i);
  unsigned char tail[128] = {0};
  size_t r = n - i;
  memcpy(tail, m + i, r);
  tail[r] = 0x80;
  size_t tl = r + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)n * 8;
  for (int j = 0; j < 8; j++) tail[tl - 1 - j] = (unsigned char)(bits >> (8 * j));
  sha1_block(h, tail);
  if (tl == 128) sha1_block(h, tail + 64);
  for (int j = 0; j < 5; j++) {
    out[4 * j] = (unsigned char)(h[j] >> 24);
    out[4 * j + 1] = (unsigned char)(h[j] >> 16);
    out[4 * j + 2] = (unsigned char)(h[j] >> 8);
    out[4 * j + 3] = (unsigned char)h[j];
  }
}

static int ws_accept(lua_State *L) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  luaL_argcheck(L, n <= 256, 1, "too long for a key");
  unsigned char buf[256 + sizeof(guid)], d[20];
  memcpy(buf, key, n);
  memcpy(buf + n, guid, sizeof(guid) - 1);
  sha1(buf, n + sizeof(guid) - 1, d);
  char out[32];
  size_t ol = sl_b64_encode(out, d, 20, true);
  lua_pushlstring(L, out, ol);
  return 1;
}

static const luaL_Reg ws_funcs[] = {
  {"accept", ws_accept},
  {"decode", ws_decode}, {"encode", ws_encode}, {"mask", ws_mask}, {"utf8", ws_utf8},
  {NULL, NULL}
};

int luaopen_sandlot_core_ws(lua_State *L) {
  luaL_newlib(L, ws_funcs);
  return 1;
}
