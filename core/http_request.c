/* http_request.c: one HTTP/1.x request read with Debian's libhttp-parser (nodejs's parser,
 * 2.9) within limits: the head (url and fields, max_head: 431), the body (Content-Length or
 * chunked, max_body: 413, grown with what came, never by what was claimed), Expect:
 * 100-continue, keep-alive. The parser pauses at the end of each request, so the caller keeps
 * what follows (pipelining). Also http.parse_request, the same parser without a socket. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "http_request.h"

/* ---------------------------------------------------------------- parser callbacks */

static bool head_raw(SlReq *r, const char *at, size_t n) {
  if (r->head_len + n + 1 > r->max_head) {
    r->err_status = 431;
    return false;
  }
  if (r->head_len + n + 1 > r->head_cap) {
    size_t cap = r->head_cap ? r->head_cap : 1024;
    while (cap < r->head_len + n + 1) cap *= 2;
    if (cap > r->max_head) cap = r->max_head;
    char *p = realloc(r->head, cap);
    if (p == NULL) {
      r->err_status = 503;
      return false;
    }
    r->head = p;
    r->head_cap = cap;
  }
  memcpy(r->head + r->head_len, at, n);
  r->head_len += n;
  return true;
}

/* Appends url, name or value bytes: a NUL in them is refused (it separates the fields). */
static bool head_add(SlReq *r, const char *at, size_t n) {
  if (memchr(at, '\0', n) != NULL) {
    r->err_status = 400;
    return false;
  }
  return head_raw(r, at, n);
}

static bool head_nul(SlReq *r) { return head_raw(r, "", 1); }

static int on_message_begin(http_parser *p) {
  SlReq *r = p->data;
  r->head_len = 0;
  r->body_len = 0;
  r->last = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  return head_add(p->data, at, n) ? 0 : -1;
}

static int on_field(http_parser *p, const char *at, size_t n) {
  SlReq *r = p->data;
  bool ok = true;
  if (r->last == 3) return 0;                               /* trailers are dropped */
  if (r->last == 0) ok = head_nul(r);                       /* ends the url */
  else if (r->last == 2) ok = head_nul(r);                  /* ends a value */
  r->last = 1;
  return ok && head_add(r, at, n) ? 0 : -1;
}

static int on_value(http_parser *p, const char *at, size_t n) {
  SlReq *r = p->data;
  bool ok = true;
  if (r->last == 3) return 0;
  if (r->last == 1) ok = head_nul(r);                       /* ends the name */
  r->last = 2;
  return ok && head_add(r, at, n) ? 0 : -1;
}

/* Length of the NUL-terminated field at off, never past head_len (then -1). */
static ptrdiff_t head_field(SlReq *r, size_t off) {
  if (off >= r->head_len) return -1;
  const char *z = memchr(r->head + off, '\0', r->head_len - off);
  return z != NULL ? z - (r->head + off) : -1;
}

/* Walks the name/value pairs of r->head: *off starts at 0; false at the end. */
static bool head_next(SlReq *r, size_t *off, const char **name, const char **value) {
  ptrdiff_t n;
  if (*off == 0) {
    if ((n = head_field(r, 0)) < 0) return false;
    *off = (size_t)n + 1;
  }
  if ((n = head_field(r, *off)) < 0) return false;
  *name = r->head + *off;
  *off += (size_t)n + 1;
  if ((n = head_field(r, *off)) < 0) return false;
  *value = r->head + *off;
  *off += (size_t)n + 1;
  return true;
}

static int on_headers_complete(http_parser *p) {
  SlReq *r = p->data;
  bool ok = true;
  if (r->last == 0) ok = head_nul(r);
  else if (r->last == 1) ok = head_nul(r) && head_nul(r);   /* a name without a value */
  else ok = head_nul(r);
  r->last = 3;
  if (!ok) return -1;
  if (p->content_length != ULLONG_MAX && p->content_length > r->max_body) {
    r->err_status = 413;
    return -1;
  }
  size_t off = 0;
  const char *name, *value;
  while (r->on_continue != NULL && head_next(r, &off, &name, &value))
    if (strcasecmp(name, "expect") == 0 && strcasecmp(value, "100-continue") == 0 &&
        p->content_length != 0 && !r->on_continue(r->ud))
      return -1;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  SlReq *r = p->data;
  if (n > r->max_body - r->body_len) {
    r->err_status = 413;
    return -1;
  }
  if (r->body_len + n > r->body_cap) {        /* grows with what came, never by the claim */
    size_t cap = r->body_cap ? r->body_cap : 4096;
    while (cap < r->body_len + n) cap *= 2;
    if (cap > r->max_body) cap = r->max_body;
    char *b = realloc(r->body, cap);
    if (b == NULL) {
      r->err_status = 503;
      return -1;
    }
    r->body = b;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, at, n);
  r->body_len += n;
  return 0;
}

static int on_message_complete(http_parser *p) {
  SlReq *r = p->data;
  r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  http_parser_pause(p, 1);                   /* execute returns: the caller keeps the rest */
  return 0;
}

static const http_parser_settings settings = {
  .on_message_begin = on_message_begin, .on_url = on_url, .on_header_field = on_field,
  .on_header_value = on_value, .on_headers_complete = on_headers_complete,
  .on_body = on_body, .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------- feeding */

void sl_req_init(SlReq *r, size_t max_head, size_t max_body) {
  memset(r, 0, sizeof(*r));
  r->max_head = max_head;
  r->max_body = max_body;
  http_parser_init(&r->p, HTTP_REQUEST);
  r->p.data = r;
}

void sl_req_free(SlReq *r) {
  free(r->head);
  free(r->body);
  r->head = r->body = NULL;
  r->head_len = r->head_cap = r->body_len = r->body_cap = 0;
}

void sl_req_drop_body(SlReq *r) {
  free(r->body);
  r->body = NULL;
  r->body_len = r->body_cap = 0;
}

int sl_req_feed(SlReq *r, const char *data, size_t n, size_t *used, int *status) {
  *used = http_parser_execute(&r->p, &settings, data, n);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
  if (e == HPE_PAUSED) return SL_REQ_DONE;
  if (e == HPE_OK) return SL_REQ_MORE;
  *status = r->err_status != 0 ? r->err_status : e == HPE_HEADER_OVERFLOW ? 431 : 400;
  return SL_REQ_BAD;
}

void sl_req_next(SlReq *r) {
  r->body_len = 0;
  http_parser_pause(&r->p, 0);
}

/* ---------------------------------------------------------------- the request as Lua sees it */

/* Pushes the lower-cased name; repeated headers are joined with ", " as RFC 9110 allows. */
static void push_headers(lua_State *L, SlReq *r) {
  lua_newtable(L);
  size_t off = 0;
  const char *name, *value;
  while (head_next(r, &off, &name, &value)) {
    luaL_Buffer b;
    size_t n = strlen(name);
    char *low = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++)
      low[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    luaL_pushresultsize(&b, n);              /* [t, name] */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {  /* [t, name, old] */
      lua_pushliteral(L, ", ");
      lua_pushstring(L, value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, value);
    }
    lua_rawset(L, -3);
  }
}

static void push_target(lua_State *L, const char *url) {
  const char *path = url, *q = strchr(url, '?');
  size_t plen = q != NULL ? (size_t)(q - url) : strlen(url);
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (url[0] != '/' && url[0] != '*' &&                /* absolute form: take its path */
      http_parser_parse_url(url, strlen(url), 0, &u) == 0) {
    if (u.field_set & (1 << UF_PATH)) {
      path = url + u.field_data[UF_PATH].off;
      plen = u.field_data[UF_PATH].len;
    } else {
      path = "/";
      plen = 1;
    }
    q = (u.field_set & (1 << UF_QUERY)) ? url + u.field_data[UF_QUERY].off - 1 : NULL;
  }
  lua_pushlstring(L, path, plen);
  lua_setfield(L, -2, "path");
  if (q != NULL) {
    const char *end = strchr(q + 1, '#');
    lua_pushlstring(L, q + 1, end != NULL ? (size_t)(end - q - 1) : strlen(q + 1));
  } else {
    lua_pushliteral(L, "");
  }
  lua_setfield(L, -2, "query");
}

/* Pushes req = {method, path, query, headers, body, keep_alive, http_version}. */
void sl_req_push(lua_State *L, SlReq *r) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, http_method_str((enum http_method)r->p.method));
  lua_setfield(L, -2, "method");
  push_target(L, r->head);
  push_headers(L, r);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r->body != NULL ? r->body : "", r->body_len);
  lua_setfield(L, -2, "body");
  lua_pushboolean(L, r->keep_alive);
  lua_setfield(L, -2, "keep_alive");
  lua_pushfstring(L, "%d.%d", (int)r->p.http_major, (int)r->p.http_minor);
  lua_setfield(L, -2, "http_version");
}

/* ---------------------------------------------------------------- parsing alone */

/* http.parse_request(bytes [, chunk [, max_head [, max_body]]]) -> {req, ...}, used | nil,
 * status: the server's parser without a socket (fuzzing, tests), fed chunk bytes at a time.
 * used: the bytes that made whole requests; status: the answer a server would give. */
int sl_http_parse_request(lua_State *L) {
  size_t n;
  const char *data = luaL_checklstring(L, 1, &n);
  lua_Integer chunk = luaL_optinteger(L, 2, (lua_Integer)n + 1);
  luaL_argcheck(L, chunk > 0, 2, "must be > 0");
  lua_Integer max_head = luaL_optinteger(L, 3, 64 << 10), max_body = luaL_optinteger(L, 4, 1 << 20);
  luaL_argcheck(L, max_head >= 16, 3, "must be >= 16");
  luaL_argcheck(L, max_body >= 0, 4, "must be >= 0");
  lua_settop(L, 1);
  SlReq r;
  sl_req_init(&r, (size_t)max_head, (size_t)max_body);
  lua_newtable(L);
  lua_Integer k = 0;
  size_t off = 0, done = 0;
  int status = 0;
  while (off < n && status == 0) {
    size_t len = n - off < (size_t)chunk ? n - off : (size_t)chunk, used;
    int rc = sl_req_feed(&r, data + off, len, &used, &status);
    off += used;
    if (rc == SL_REQ_DONE) {
      sl_req_push(L, &r);                    /* a raise here leaks r's buffers: only on OOM */
      lua_rawseti(L, -2, ++k);
      done = off;
      sl_req_next(&r);
      if (!r.keep_alive) break;              /* a server stops reading here */
    }
  }
  sl_req_free(&r);
  if (status != 0) {
    lua_pushnil(L);
    lua_pushinteger(L, status);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)done);
  return 2;
}
