/* sys.c: sandlot.core.sys: small facts about this process the Lua library needs and stock
 * Lua lacks (the whole environment, pid, terminal check, canonical paths), and base64 for
 * moving files through a provider's exec (pure Lua managed ~10 MB/s). It also holds the core's
 * one copy of base64 and SHA-256 (sl_b64_*, sl_sha256: SSH host key fingerprints), and the
 * PATH search proc.c spawns by (sl_resolve_exe). */
#include <errno.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
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
 * process's environment, which children inherit. For specs that plant a canary there. Each
 * call bumps sys.env_generation (upvalue 1 is the module table), so a reader that caches a
 * variable per request path (sandlot._cassette) can tell when to read it again. */
static int sys_setenv(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_argcheck(L, name[0] != '\0' && strchr(name, '=') == NULL, 1, "invalid variable name");
  int rc = lua_isnoneornil(L, 2) ? unsetenv(name) : setenv(name, luaL_checkstring(L, 2), 1);
  if (rc != 0) return luaL_error(L, "setenv %s: %s", name, strerror(errno));
  lua_getfield(L, lua_upvalueindex(1), "env_generation");
  lua_Integer g = lua_tointeger(L, -1);
  lua_pushinteger(L, g + 1);
  lua_setfield(L, lua_upvalueindex(1), "env_generation");
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

/* Finds the program as execvp would, but with the child's PATH (from env when given). */
int sl_resolve_exe(const char *file, char **env, char *out, size_t size) {
  if (strchr(file, '/') != NULL) {
    if (strlen(file) >= size) return ENAMETOOLONG;
    strcpy(out, file);
    return 0;
  }
  const char *path = NULL;
  if (env != NULL) {
    for (char **e = env; *e != NULL; e++)
      if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  } else {
    path = getenv("PATH");
  }
  if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
  int found = ENOENT;
  for (const char *dir = path; *dir != '\0';) {
    const char *end = strchr(dir, ':');
    size_t len = end != NULL ? (size_t)(end - dir) : strlen(dir);
    if (snprintf(out, size, "%.*s%s%s", (int)len, len ? dir : ".", "/", file) < (int)size) {
      struct stat st;
      if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
        if (access(out, X_OK) == 0) return 0;
        found = EACCES;
      }
    }
    if (end == NULL) break;
    dir = end + 1;
  }
  return found;
}

/* ---------------------------------------------------------------- codecs: the core's one copy */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sl_b64_encode(char *out, const unsigned char *s, size_t n, bool pad) {
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
    if (i + 1 < n) out[o++] = B64[(v >> 6) & 63];
    else if (pad) out[o++] = '=';
    if (pad) out[o++] = '=';
  }
  return o;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static bool b64_space(unsigned char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
}

bool sl_b64_decode(const char *src, size_t n, unsigned char *out, size_t *outlen) {
  const unsigned char *s = (const unsigned char *)src;
  size_t o = 0;
  uint32_t acc = 0;
  int got = 0, pad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (b64_space(c)) continue;
    if (c == '=') {
      if (got < 2) return false;               /* "=" can only end a group of 4 */
      pad++;
      got++;
      acc <<= 6;
    } else {
      int v = b64_value(c);
      if (pad > 0 || v < 0) return false;      /* data after the padding, or not base64 */
      acc = acc << 6 | (uint32_t)v;
      got++;
    }
    if (got == 4) {
      out[o++] = (unsigned char)(acc >> 16);
      if (pad < 2) out[o++] = (unsigned char)(acc >> 8);
      if (pad < 1) out[o++] = (unsigned char)acc;
      got = 0;
      if (pad > 0) {                           /* padding ends the data */
        for (i++; i < n; i++)
          if (!b64_space(s[i])) return false;
        break;
      }
      acc = 0;
    }
  }
  if (got != 0) return false;
  *outlen = o;
  return true;
}

static const uint32_t sha_k[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], a[8];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(a, h, sizeof(a));
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) +
                  ((a[4] & a[5]) ^ (~a[4] & a[6])) + sha_k[i] + w[i];
    uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) +
                  ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
    memmove(a + 1, a, 7 * sizeof(uint32_t));
    a[4] += t1;
    a[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) h[i] += a[i];
}

void sl_sha256(const unsigned char *data, size_t len, unsigned char out[32]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char tail[128];
  size_t full = len / 64 * 64, rest = len - full;
  for (size_t i = 0; i < full; i += 64) sha_block(h, data + i);
  memset(tail, 0, sizeof(tail));
  memcpy(tail, data + full, rest);
  tail[rest] = 0x80;
  size_t tl = rest < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
  for (size_t i = 0; i < tl; i += 64) sha_block(h, tail + i);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(h[i] >> 8);
    out[4 * i + 3] = (unsigned char)h[i];
  }
}

/* sys.b64encode(s) -> string: RFC 4648 base64 with padding, no line breaks */
static int sys_b64encode(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  if (n > ((size_t)-1 / 4) * 3 - 3) return luaL_error(L, "b64encode: input too large");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, SL_B64_LEN(n));
  luaL_pushresultsize(&b, sl_b64_encode(out, s, n, true));
  return 1;
}

/* sys.b64decode(s) -> string | nil: whitespace is skipped; anything else outside the
 * alphabet, a length that is not a multiple of 4, or data after the padding gives nil. */
static int sys_b64decode(lua_State *L) {
  size_t n, o = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
  bool ok = sl_b64_decode(s, n, out, &o);
  luaL_pushresultsize(&b, ok ? o : 0);
  if (!ok) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  return 1;
}

/* sys.sha256(s) -> 64 lower-case hex digits (content addresses of shipped files) */
static int sys_sha256(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  unsigned char d[32];
  char hex[65];
  sl_sha256(s, n, d);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  lua_pushlstring(L, hex, 64);
  return 1;
}

/* sys.random(n) -> n bytes from the kernel's CSPRNG (getrandom(2), 1 <= n <= 256): ids
 * without opening /dev/urandom, and without stdio's 4 KiB read-ahead per id */
static int sys_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 256, 1, "must be 1 to 256");
  unsigned char buf[256];
  size_t got = 0;
  while (got < (size_t)n) {
    ssize_t r = getrandom(buf + got, (size_t)n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return luaL_error(L, "getrandom: %s", strerror(errno));
    }
    got += (size_t)r;
  }
  lua_pushlstring(L, (const char *)buf, got);
  return 1;
}

static const luaL_Reg sys_funcs[] = {
  {"environ", sys_environ}, {"getpid", sys_getpid}, {"isatty", sys_isatty},
  {"realpath", sys_realpath}, {"now", sys_now}, {"rss", sys_maxrss},
  {"b64encode", sys_b64encode}, {"b64decode", sys_b64decode},
  {"sha256", sys_sha256}, {"random", sys_random},
  {NULL, NULL}
};

int luaopen_sandlot_core_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "env_generation");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, sys_setenv, 1);
  lua_setfield(L, -2, "setenv");
  return 1;
}
