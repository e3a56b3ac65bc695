/* http_response.c: the response of a finished transfer as sandlot.http returns it, and the
 * parser of raw header lines. A response is built lazily: status and body are fields at once
 * (what nearly every caller reads), the rest (headers, http_version, body_bytes, effective_url,
 * redirects, connects, duration) is copied out of the transfer into one userdata, kept in the
 * response under a light userdata key (no string can name it), and becomes plain fields the
 * first time a field that is not there is read or the response is iterated with pairs (the
 * key and the metatable then go, so later reads are plain table reads). A request that only
 * checks the status parses no header and makes no header strings; whether the content type
 * mentions JSON, which sandlot.http needs for every response, is found by a scan of the raw
 * lines. */
#include <string.h>

#include "http.h"

static const char info_key = 0;            /* response[&info_key] = RespInfo until whole */
static const char mt_key = 0;              /* registry: the responses' metatable */

typedef struct {                           /* what a response's lazy fields are made from */
  long version, redirects, connects;
  double total;
  uint64_t body_total;
  size_t url_len, head_len;
  char data[];                             /* the effective URL, then the header lines */
} RespInfo;

static bool is_space(char c) {          /* Lua's %s within a line: no CR or LF there */
  return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

/* Pushes {lowercased name = value} for every line "name: value" (name without spaces or
 * colons, value trimmed); repeated names are joined with ", " (Set-Cookie with "\n"). Other
 * lines (the status line, folded continuations) are skipped. */
bool sl_http_push_headers(lua_State *L, const char *p, size_t len) {
  const char *end = p + len;
  bool json = false;
  int lines = 0;                           /* the table is sized for them: no rehash */
  for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) lines++;
  lua_createtable(L, 0, lines > 1 ? lines - 1 : 0);
  luaL_Buffer key;
  while (p < end) {
    while (p < end && (*p == '\r' || *p == '\n')) p++;
    const char *line = p;
    while (p < end && *p != '\r' && *p != '\n') p++;
    const char *eol = p, *colon = line;
    while (colon < eol && *colon != ':' && !is_space(*colon)) colon++;
    if (colon == line || colon == eol || *colon != ':') continue;
    const char *v = colon + 1, *ve = eol;
    while (v < ve && is_space(*v)) v++;
    while (ve > v && is_space(ve[-1])) ve--;
    size_t klen = (size_t)(colon - line);
    char small[64], *lower = klen <= sizeof(small) ? small : luaL_buffinitsize(L, &key, klen);
    for (size_t i = 0; i < klen; i++) {
      char c = line[i];
      lower[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    bool cookie = klen == 10 && memcmp(lower, "set-cookie", 10) == 0;  /* before lower goes */
    if (klen == 12 && memcmp(lower, "content-type", 12) == 0)
      json = memmem(v, (size_t)(ve - v), "json", 4) != NULL;
    if (lower == small) lua_pushlstring(L, small, klen);
    else luaL_pushresultsize(&key, klen);  /* table, name */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) {   /* table, name, nil */
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(ve - v));
    } else {                               /* table, name, previous */
      lua_pushstring(L, cookie ? "\n" : ", ");
      lua_pushlstring(L, v, (size_t)(ve - v));
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  return json;
}

/* Whether the last Content-Type line of the raw header lines mentions JSON (what
 * sl_http_push_headers finds, without building the table). */
static bool head_json(const char *p, size_t len) {
  const char *end = p + len;
  bool json = false;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    if (eol - p > 13 && strncasecmp(p, "content-type:", 13) == 0) {
      const char *ve = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
      json = memmem(p + 13, (size_t)(ve - p - 13), "json", 4) != NULL;
    }
    p = eol + 1;
  }
  return json;
}

static void set_missing(lua_State *L, int res, const char *field) {   /* [value] popped */
  lua_pushstring(L, field);
  if (lua_rawget(L, res) == LUA_TNIL) {    /* raw: no __index, which is what calls here */
    lua_pop(L, 1);
    lua_pushstring(L, field);
    lua_insert(L, -2);
    lua_rawset(L, res);
  } else {
    lua_pop(L, 2);                         /* the caller set it already: theirs stays */
  }
}

/* Turns the lazy fields of the response at res into plain ones (a response already whole, or
 * a table that is not a response, is left as it is). */
static void materialise(lua_State *L, int res) {
  res = lua_absindex(L, res);
  const RespInfo *ri = lua_rawgetp(L, res, &info_key) == LUA_TUSERDATA ? lua_touserdata(L, -1)
                                                                       : NULL;
  if (ri == NULL) {
    lua_pop(L, 1);
    return;
  }
  sl_http_push_headers(L, ri->data + ri->url_len, ri->head_len);
  set_missing(L, res, "headers");
  long v = ri->version;
  lua_pushstring(L, v == CURL_HTTP_VERSION_2_0 ? "2" : v == CURL_HTTP_VERSION_3 ? "3"
                    : v == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
  set_missing(L, res, "http_version");
  lua_pushinteger(L, (lua_Integer)ri->body_total);
  set_missing(L, res, "body_bytes");
  lua_pushlstring(L, ri->data, ri->url_len);
  set_missing(L, res, "effective_url");
  lua_pushinteger(L, ri->redirects);
  set_missing(L, res, "redirects");
  lua_pushinteger(L, ri->connects);
  set_missing(L, res, "connects");
  lua_pushnumber(L, ri->total);
  set_missing(L, res, "duration");
  lua_pop(L, 1);                           /* the info */
  lua_pushnil(L);
  lua_rawsetp(L, res, &info_key);
  if (lua_getmetatable(L, res)) {          /* ours goes; a caller's own stays */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_key);
    bool ours = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (ours) {
      lua_pushnil(L);
      lua_setmetatable(L, res);
    }
  }
}

static int resp_index(lua_State *L) {      /* __index(res, key): the lazy fields, then rawget */
  materialise(L, 1);
  lua_settop(L, 2);
  lua_rawget(L, 1);
  return 1;
}

static int resp_next(lua_State *L) {       /* next, for __pairs */
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

static int resp_pairs(lua_State *L) {      /* __pairs(res): whole first */
  materialise(L, 1);
  lua_pushcfunction(L, resp_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Pushes the responses' metatable, made on first use. */
static void push_mt(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, resp_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, resp_pairs);
  lua_setfield(L, -2, "__pairs");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mt_key);
}

/* The response as sandlot.http returns it, sized for the fields http.lua adds (attempts, json),
 * then whether its content type mentions JSON (http.lua decides). Pushes 2 values. */
int sl_http_push_response(lua_State *L, Xfer *x) {
  long status = 0;
  char *url = NULL;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  size_t url_len = url != NULL ? strlen(url) : 0;
  const char *head = x->hbuf != NULL ? x->hbuf : "";
  lua_createtable(L, 0, 5);                /* status, body, the info; attempts, json */
  int res = lua_gettop(L);
  lua_pushinteger(L, status);
  lua_setfield(L, res, "status");
  lua_pushlstring(L, x->body != NULL ? x->body : "", x->blen);
  lua_setfield(L, res, "body");
  RespInfo *ri = lua_newuserdatauv(L, sizeof(RespInfo) + url_len + x->hlen, 0);
  ri->version = ri->redirects = ri->connects = 0;
  ri->total = 0;
  curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ri->version);
  curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_COUNT, &ri->redirects);
  curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &ri->connects);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &ri->total);
  ri->body_total = x->body_total;
  ri->url_len = url_len;
  ri->head_len = x->hlen;
  if (url_len > 0) memcpy(ri->data, url, url_len);
  if (x->hlen > 0) memcpy(ri->data + url_len, head, x->hlen);
  lua_rawsetp(L, res, &info_key);
  push_mt(L);
  lua_setmetatable(L, res);
  lua_pushboolean(L, head_json(head, x->hlen));
  return 2;
}
