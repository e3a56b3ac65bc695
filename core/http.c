/* http.c: sandlot.core.http, the Lua face: request options read into a shape (http_fetch.c
 * takes a pooled easy handle configured for it), the sandlot.http.request handle (headers,
 * read, wait, write, finish, close), stats, the header parsers. Response bodies are captured (within max_body) or queued for req:read() with
 * backpressure; request bodies come from a string, a file or req:write() chunks (the producer).
 * The transfers run in http_multi.c; the upgraded raw stream is in http_upgrade.c. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "http_head.h"

/* ---------------------------------------------------------------- Lua API */

static Xfer *req_check(lua_State *L, int idx) {
  ReqBox *box = luaL_checkudata(L, idx, REQ_MT);
  if (box->x == NULL) luaL_error(L, "attempt to use a closed sandlot.http.request");
  return box->x;
}

static const char *opt_str(lua_State *L, int opts, const char *field) {
  lua_getfield(L, opts, field);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1);                           /* the opts table (anchored) keeps it alive */
  return s;
}

/* The upload of a body_file or producer request: what its shape leaves per request. Returns
 * the file name for the world's failures (a body file that cannot be opened), else NULL. */
static const char *upload_setup(lua_State *L, int opts, Xfer *x, int *err_errno) {
  curl_off_t size = -1;
  if (x->body_kind == BODY_FILE) {
    const char *file = opt_str(L, opts, "body_file");
    x->fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (x->fd < 0 || fstat(x->fd, &st) != 0) {
      *err_errno = errno;
      return file;
    }
    if (!S_ISREG(st.st_mode)) {
      *err_errno = EISDIR;
      return file;
    }
    size = (curl_off_t)st.st_size;
  } else {
    lua_getfield(L, opts, "body_size");
    double body_size = luaL_optnumber(L, -1, 0);
    lua_pop(L, 1);
    if (body_size > 0) size = (curl_off_t)body_size;
  }
  curl_easy_setopt(x->easy, CURLOPT_INFILESIZE_LARGE, size);
  return NULL;
}

/* http.request(opts) -> req | nil, err   Starts the transfer at once; see sandlot.http for
 * opts. The handle anchors opts (and so the body string) until it is closed. */
static int http_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  Multi *m = sl_http_multi(L);
  SlHttpShape s;
  int hidx;
  sl_http_shape_read(L, 1, &s, &hidx);     /* raises for misuse before anything is taken */
  const char *url = opt_str(L, 1, "url");
  luaL_argcheck(L, url != NULL, 1, "opts.url is required");
  size_t body_len = 0;
  lua_getfield(L, 1, "body");
  const char *body = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &body_len);
  lua_pop(L, 1);
  ReqBox *box = lua_newuserdatauv(L, sizeof(*box), 2);   /* opts, the chunk being sent */
  box->x = NULL;
  luaL_setmetatable(L, REQ_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  SlError e;
  Xfer *x = sl_http_take(m, L, &s, hidx, &e);
  if (x == NULL) return sl_push_error(L, &e);   /* a client key not of its certificate, OOM */
  box->x = x;                              /* from here on __gc frees x whatever happens */
  sl_http_set_target(x, url, body, body_len);
  if (x->body_kind == BODY_FILE || x->body_kind == BODY_PRODUCER) {
    int eno = 0;
    const char *bad = upload_setup(L, 1, x, &eno);
    if (bad != NULL) {
      x->done = true;
      return sl_fail(L, sl_code_for_errno(eno), "body_file %s: %s", bad, strerror(eno));
    }
  }
  CURLMcode mc = curl_multi_add_handle(m->cm, x->easy);
  if (mc != CURLM_OK) {
    x->done = true;
    return sl_fail(L, "internal", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  }
  x->added = true;
  /* Start it now rather than on curl's 0 ms timer a loop turn later: the request is on the
   * wire before the caller parks, which saves a poll per request. A transfer that ends at
   * once (or others that end meanwhile) is reported the usual way by sl_http_after. */
  int running;
  m->depth++;
  curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  m->depth--;
  sl_http_after(m);
  return 1;
}

static void reader_cleanup(SlTask *t, void *data) {
  (void)t;
  Xfer *x = data;
  x->reader = NULL;
  x->wait_kind = WAIT_NONE;
  sl_http_detach(x, CURLE_ABORTED_BY_CALLBACK);   /* a cancelled waiter aborts the transfer */
  sl_http_unmark(x);
}

static void writer_cleanup(SlTask *t, void *data) {
  (void)t;
  Xfer *x = data;
  x->writer = NULL;
  x->pend = NULL;
  sl_http_detach(x, CURLE_ABORTED_BY_CALLBACK);   /* the body can never be completed now */
  sl_http_unmark(x);
}

static int results_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* Parks the caller as x's reader until xfer_notify has an answer of the given kind. */
static int wait_reader(lua_State *L, Xfer *x, int kind) {
  if (x->reader != NULL) return luaL_error(L, "sandlot.http: another task is already waiting");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  x->reader = t;
  x->wait_kind = kind;
  sl_wait_set_cleanup(t, reader_cleanup, x);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* req:headers() -> head {status, headers_raw, http_version} | nil, err */
static int req_headers(lua_State *L) {
  Xfer *x = req_check(L, 1);
  lua_settop(L, 1);
  if (sl_http_failed(x)) return sl_http_push_error(L, x);
  if (x->head_done || x->done) {
    sl_http_push_head(L, x);
    return 1;
  }
  return wait_reader(L, x, WAIT_HEAD);
}

/* req:read() -> chunk | nil at the end | nil, err   (needs request{stream = true}) */
static int req_read(lua_State *L) {
  Xfer *x = req_check(L, 1);
  lua_settop(L, 1);
  if (!x->stream) return luaL_error(L, "sandlot.http: read() needs request{stream = true}");
  if (x->q.head != NULL) {
    sl_http_pop_chunk(L, x);
    sl_http_resume_recv(x);
    return 1;
  }
  sl_http_resume_recv(x);
  if (x->q.head != NULL) {                 /* unpausing may deliver data at once */
    sl_http_pop_chunk(L, x);
    return 1;
  }
  if (sl_http_failed(x)) return sl_http_push_error(L, x);
  if (x->done) return 0;
  return wait_reader(L, x, WAIT_READ);
}

/* req:wait() -> result {status, headers_raw, body, ...} | nil, err */
static int req_wait(lua_State *L) {
  Xfer *x = req_check(L, 1);
  lua_settop(L, 1);
  if (x->stream && x->q.head != NULL)
    return luaL_error(L, "sandlot.http: read the streamed body to its end before wait()");
  if (sl_http_failed(x)) return sl_http_push_error(L, x);
  if (x->done) {
    sl_http_push_result(L, x);
    return 1;
  }
  return wait_reader(L, x, WAIT_DONE);
}

/* req:write(chunk) -> true (taken) | false (the server answered first) | nil, err. Waits
 * until curl has sent the chunk: one chunk in flight is the producer's backpressure. */
static int req_write(lua_State *L) {
  Xfer *x = req_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  if (x->body_kind != BODY_PRODUCER)
    return luaL_error(L, "sandlot.http: write() needs request{body_producer = true}");
  if (x->pend_eof) return luaL_error(L, "sandlot.http: write() after finish()");
  if (x->writer != NULL) return luaL_error(L, "sandlot.http: another task is already writing");
  if (sl_http_failed(x)) return sl_http_push_error(L, x);
  if (x->done) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, 2);              /* no copy: anchored while curl reads from it */
  x->pend = data;
  x->pend_len = len;
  x->pend_off = 0;
  x->writer = t;
  sl_wait_set_cleanup(t, writer_cleanup, x);
  if (x->send_paused) {
    x->send_paused = false;
    sl_http_unpause(x);
  }
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* req:finish() -> true: the producer's body is complete */
static int req_finish(lua_State *L) {
  Xfer *x = req_check(L, 1);
  if (x->body_kind == BODY_PRODUCER && !x->pend_eof) {
    x->pend_eof = true;
    if (x->send_paused) {
      x->send_paused = false;
      sl_http_unpause(x);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* req:info() -> {done, queued, paused_recv, paused_send}: for tests and diagnostics */
static int req_info(lua_State *L) {
  Xfer *x = req_check(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, x->done);
  lua_setfield(L, -2, "done");
  lua_pushinteger(L, (lua_Integer)x->q.bytes);
  lua_setfield(L, -2, "queued");
  lua_pushboolean(L, x->recv_paused);
  lua_setfield(L, -2, "paused_recv");
  lua_pushboolean(L, x->send_paused);
  lua_setfield(L, -2, "paused_send");
  return 1;
}

/* Wakes a task parked on a handle being closed with a `cancelled` error. */
static void wake_closed(SlTask *t) {
  if (t == NULL) return;
  t->cleanup = NULL;
  t->cleanup_data = NULL;
  luaL_checkstack(t->co, 2, NULL);
  lua_pushnil(t->co);
  sl_new_error(t->co, "cancelled", "the request handle was closed");
  sl_wake(t, 2);
}

/* req:close() -> true. Also __close and __gc: aborts a transfer in flight; never yields. */
static int req_close(lua_State *L) {
  ReqBox *box = luaL_checkudata(L, 1, REQ_MT);
  Xfer *x = box->x;
  if (x != NULL) {
    box->x = NULL;
    SlTask *r = x->reader, *w = x->writer;
    x->reader = x->writer = NULL;
    sl_http_free(x);
    wake_closed(r);
    wake_closed(w);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int req_tostring(lua_State *L) {
  ReqBox *box = luaL_checkudata(L, 1, REQ_MT);
  if (box->x == NULL) lua_pushliteral(L, "sandlot.http.request (closed)");
  else lua_pushfstring(L, "sandlot.http.request (%s)", box->x->done ? "done" : "in flight");
  return 1;
}

/* http.stats() -> {requests = live transfers, sockets = watched sockets, pooled = idle easy
 * handles kept for reuse} */
static int http_stats(lua_State *L) {
  SlHost *h = sl_host(L);
  Multi *m = sl_http_multi_of(h);
  int n = 0;
  for (Xfer *x = m != NULL ? m->live : NULL; x != NULL; x = x->next) n++;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, m != NULL ? m->sockets : 0);
  lua_setfield(L, -2, "sockets");
  lua_pushinteger(L, m != NULL ? m->pooled : 0);
  lua_setfield(L, -2, "pooled");
  return 1;
}

/* http.parse_headers(raw) -> {lowercased name = value}: every line "name: value" (name without
 * spaces or colons, value trimmed); repeated names are joined with ", " (Set-Cookie with "\n").
 * Other lines (the status line, folded continuations) are skipped (sl_http_push_headers). */
static int http_parse_headers(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  size_t len;
  const char *p = lua_tolstring(L, 1, &len);
  sl_http_push_headers(L, p, len);
  return 1;
}

/* http.parse_response_head(bytes [, max]) -> head {status, http_version, reason, headers_raw,
 * length} | nil (a valid prefix: more is needed) | false, why. For specs and fuzzing. */
static int http_parse_response_head(lua_State *L) {
  size_t len;
  const char *buf = luaL_checklstring(L, 1, &len);
  lua_Integer max = luaL_optinteger(L, 2, 64 << 10);
  luaL_argcheck(L, max > 0, 2, "must be > 0");
  SlHttpHead h;
  const char *why;
  int rc = sl_http_head_parse(buf, len, (size_t)max, &h, &why);
  if (rc == SL_HEAD_MORE) return 0;
  if (rc == SL_HEAD_BAD) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
  }
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, h.status);
  lua_setfield(L, -2, "status");
  lua_pushstring(L, h.minor == 0 ? "1.0" : "1.1");
  lua_setfield(L, -2, "http_version");
  lua_pushlstring(L, buf + h.reason_off, h.reason_len);
  lua_setfield(L, -2, "reason");
  lua_pushlstring(L, buf + h.fields_off, h.fields_len);
  lua_setfield(L, -2, "headers_raw");
  lua_pushinteger(L, (lua_Integer)h.length);
  lua_setfield(L, -2, "length");
  return 1;
}

/* http.unknown(opts, known) -> bool: true when opts is not a table or has a key that known
 * lacks. sandlot.http's per-request option check in one call instead of a next() per key; the
 * error and its wording stay in Lua (sandlot._check). */
static int http_unknown(lua_State *L) {
  if (!lua_istable(L, 1)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {            /* [opts, known, key, value] */
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    bool known = lua_rawget(L, 2) != LUA_TNIL;
    lua_pop(L, 1);
    if (!known) {
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

static bool name_ok(const char *s, size_t n) {   /* RFC 9110 token: ^[%w!#$%%&'*+.^_`|~-]+$ */
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\0' || (!isalnum(c) && strchr("!#$%&'*+.^_`|~-", c) == NULL)) return false;
  }
  return true;
}

/* Inserts the string on top into the sorted list at idx (n entries), keeping it sorted as
 * table.sort would (lua_compare); pops it. Lists are a few lines: insertion is cheapest. */
static void insert_sorted(lua_State *L, int idx, int n) {
  int i = n;
  for (; i >= 1; i--) {
    lua_rawgeti(L, idx, i);
    bool after = lua_compare(L, -1, -2, LUA_OPLT);
    if (after) {
      lua_pop(L, 1);
      break;
    }
    lua_rawseti(L, idx, i + 1);            /* shifts entry i up */
  }
  lua_rawseti(L, idx, i + 1);
}

/* http.header_lines(headers, has_json, user_agent) -> {"Name: value", ...} | nil, why
 * sandlot.http's header list: names checked as tokens, values given with tostring and
 * refused with CR, LF or NUL (false drops a header), Content-Type for JSON and the
 * User-Agent added unless given (any case), sorted. why is sandlot.http's own wording. */
static int http_header_lines(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  bool has_json = lua_toboolean(L, 2);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  lua_newtable(L);                         /* [headers, has_json, ua, lines] */
  int n = 0;
  bool ct = false, ua = false;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {            /* [..., lines, name, value] */
    size_t klen = 0, vlen;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
    if (k == NULL || !name_ok(k, klen)) {
      lua_pushnil(L);
      lua_pushliteral(L, "http: invalid header name ");
      luaL_tolstring(L, -4, NULL);         /* the name as tostring gives it, NULs and all */
      lua_concat(L, 2);
      return 2;
    }
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    const char *v = luaL_tolstring(L, -1, &vlen);                 /* [..., name, value, v] */
    if (memchr(v, '\r', vlen) || memchr(v, '\n', vlen) || memchr(v, '\0', vlen)) {
      lua_pushnil(L);
      lua_pushfstring(L, "http: header %s contains CR, LF or NUL", k);
      return 2;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, k, klen);
    luaL_addlstring(&b, ": ", 2);
    luaL_addlstring(&b, v, vlen);
    luaL_pushresult(&b);                   /* [..., name, value, v, line] */
    lua_replace(L, -3);                    /* [..., name, line, v] */
    lua_pop(L, 1);
    insert_sorted(L, 4, n++);              /* [..., name] */
    if (klen == 12 && strncasecmp(k, "content-type", 12) == 0) ct = true;
    if (klen == 10 && strncasecmp(k, "user-agent", 10) == 0) ua = true;
  }
  if (has_json && !ct) {
    lua_pushliteral(L, "Content-Type: application/json");
    insert_sorted(L, 4, n++);
  }
  if (!ua) {
    lua_pushvalue(L, 3);
    insert_sorted(L, 4, n++);
  }
  return 1;
}

static int field_count(lua_State *L, int idx) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

/* Copies the fields of the table at src into the table at dst (raw sets). */
static void copy_fields(lua_State *L, int dst, int src) {
  lua_pushnil(L);
  while (lua_next(L, src) != 0) {          /* [..., key, value] */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, dst);
  }
}

/* http.merge(defaults, opts) -> table: a new table with the fields of defaults, then those of
 * opts; when both have a headers table the result's is a new one, the names of opts' winning.
 * sandlot.http.request(defaults, opts) in one call, the table sized for what it holds. */
static int http_merge(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_createtable(L, 0, field_count(L, 1) + field_count(L, 2));   /* [defaults, opts, merged] */
  copy_fields(L, 3, 1);
  copy_fields(L, 3, 2);
  if (lua_getfield(L, 2, "headers") != LUA_TNIL &&                /* [..., opts.headers] */
      lua_getfield(L, 1, "headers") == LUA_TTABLE) {              /* [..., defaults.headers] */
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_createtable(L, 0, field_count(L, 5) + field_count(L, 4));
    copy_fields(L, 6, 5);
    copy_fields(L, 6, 4);
    lua_setfield(L, 3, "headers");
  }
  lua_settop(L, 3);
  return 1;
}

/* http.escape(s) -> percent-encoded s */
static int http_escape(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char *out = curl_easy_escape(NULL, s, (int)len);
  if (out == NULL) return luaL_error(L, "sandlot.http: out of memory");
  lua_pushstring(L, out);
  curl_free(out);
  return 1;
}

static const luaL_Reg req_methods[] = {
  {"headers", req_headers}, {"read", req_read}, {"wait", req_wait}, {"write", req_write},
  {"finish", req_finish}, {"info", req_info}, {"close", req_close}, {NULL, NULL}
};

static const luaL_Reg req_meta[] = {
  {"__index", NULL}, {"__gc", req_close}, {"__close", req_close},
  {"__tostring", req_tostring}, {NULL, NULL}
};

static const luaL_Reg http_funcs[] = {
  {"request", http_request}, {"fetch", sl_http_fetch}, {"stats", http_stats},
  {"escape", http_escape}, {"unknown", http_unknown}, {"merge", http_merge},
  {"header_lines", http_header_lines},
  {"parse_headers", http_parse_headers}, {"upgrade", sl_http_upgrade},
  {"parse_response_head", http_parse_response_head}, {"serve", sl_http_serve},
  {"parse_request", sl_http_parse_request}, {NULL, NULL}
};

int luaopen_sandlot_core_http(lua_State *L) {
  sl_host(L);
  if (luaL_newmetatable(L, REQ_MT)) {
    luaL_setfuncs(L, req_meta, 0);
    luaL_newlib(L, req_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  sl_http_upgrade_open(L);
  sl_http_serve_open(L);
  luaL_newlib(L, http_funcs);
  curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  lua_pushfstring(L, "libcurl %s", v->version);
  lua_setfield(L, -2, "curl");
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "http2");
  return 1;
}
