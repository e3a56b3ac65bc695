/* http_fetch.c: request shapes and the pool of transfers that keeps them, and http.fetch, the
 * request path of sandlot.http for a body kept in memory. A finished transfer goes back to the
 * pool with its easy handle still configured; a request of the same shape (method, header
 * lines, timeouts, TLS and socket options, the client certificate and key compared byte for
 * byte) takes it and sets only its URL and body, where a reset handle would need
 * curl_easy_reset and some twenty options again, so a handle set up with one client
 * certificate never serves a request with another or none. The certificate and key go to curl
 * as memory blobs (CURLOPT_SSLCERT_BLOB / SSLKEY_BLOB, PEM), never through a file. Connections
 * are curl's: its cache reuses a TLS connection only for a transfer whose primary SSL config
 * matches (Curl_ssl_config_matches, 7.88, compares the cert blob but not the key blob), so one
 * made with another client certificate is not reused; since one made with this certificate
 * would be, whatever the key, a certificate and key are checked to belong together (tls.c)
 * before a handle is configured with them. http.fetch takes the
 * request as arguments (no options table), waits without a request handle and returns the
 * response built in C (http_response.c). */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "tls.h"

#define KEEP_BUF (64u << 10)               /* response buffers up to this stay with a pooled x */

static bool str_eq(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool blob_eq(const char *a, size_t an, const char *b, size_t bn) {
  return a == b || (a != NULL && b != NULL && an == bn && memcmp(a, b, an) == 0);
}

static long ms_of(double secs) { return secs > 0 ? (long)(secs * 1e3 + 0.5) : 0; }

static int body_kind_of(const char *method, bool body) {
  if (body) return BODY_STRING;
  if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
      strcmp(method, "DELETE") == 0 || strcmp(method, "OPTIONS") == 0)
    return BODY_NONE;
  return BODY_STRING;                      /* POST, PUT, PATCH... send an empty body */
}

static const char *field_str(lua_State *L, int opts, const char *field) {
  lua_getfield(L, opts, field);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1);                           /* the opts table (anchored) keeps it alive */
  return s;
}

static double field_num(lua_State *L, int opts, const char *field) {
  lua_getfield(L, opts, field);
  double v = luaL_optnumber(L, -1, 0);
  lua_pop(L, 1);
  return v;
}

static bool field_bool(lua_State *L, int opts, const char *field, bool dflt) {
  lua_getfield(L, opts, field);
  bool v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Counts the header lines at hidx, raising for one that is not a string. */
static size_t header_count(lua_State *L, int hidx) {
  size_t n = (size_t)lua_rawlen(L, hidx);
  for (size_t i = 1; i <= n; i++) {
    if (lua_rawgeti(L, hidx, (lua_Integer)i) != LUA_TSTRING)
      luaL_error(L, "sandlot.http: header line %d is not a string", (int)i);
    lua_pop(L, 1);
  }
  return n;
}

void sl_http_shape_read(lua_State *L, int opts, SlHttpShape *s, int *hidx) {
  memset(s, 0, sizeof(*s));
  s->method = field_str(L, opts, "method");
  if (s->method == NULL) s->method = "GET";
  s->follow = field_bool(L, opts, "follow", true);
  lua_getfield(L, opts, "max_redirects");
  s->max_redirects = (long)luaL_optinteger(L, -1, 10);
  lua_pop(L, 1);
  s->timeout_ms = ms_of(field_num(L, opts, "timeout"));
  s->connect_ms = ms_of(field_num(L, opts, "connect_timeout"));
  s->unix_socket = field_str(L, opts, "unix_socket");
  s->ca_file = field_str(L, opts, "ca_file");
  s->ca_path = field_str(L, opts, "ca_path");
  s->insecure = field_bool(L, opts, "insecure", false);
  lua_getfield(L, opts, "client_cert");
  s->client_cert = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &s->client_cert_len);
  lua_getfield(L, opts, "client_key");
  s->client_key = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &s->client_key_len);
  lua_pop(L, 2);                           /* the opts table keeps them alive */
  if ((s->client_cert == NULL) != (s->client_key == NULL))
    luaL_error(L, "sandlot.http: give client_cert and client_key together");
  s->fresh = field_bool(L, opts, "fresh_connect", false);
  s->raw_chunked = field_bool(L, opts, "raw_chunked", false);
  s->stream = field_bool(L, opts, "stream", false);
  double max_body = field_num(L, opts, "max_body");
  s->max_body = max_body > 0 ? (curl_off_t)max_body : 0;
  *hidx = 0;
  lua_getfield(L, opts, "headers");        /* {"Name: value", ...}, anchored by opts */
  if (lua_istable(L, -1)) {
    *hidx = lua_gettop(L);                 /* stays on the stack for sl_http_take */
    s->nhdrs = header_count(L, *hidx);
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, opts, "body");
  bool body = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (field_str(L, opts, "body_file") != NULL) s->body_kind = BODY_FILE;
  else if (field_bool(L, opts, "body_producer", false)) s->body_kind = BODY_PRODUCER;
  else s->body_kind = body_kind_of(s->method, body);
}

/* Does x's easy handle hold exactly the options of shape w (headers at hidx)? */
static bool shape_match(const Xfer *x, const SlHttpShape *w, lua_State *L, int hidx) {
  const SlHttpShape *a = &x->shape;
  if (!x->shaped || a->body_kind != w->body_kind || a->nhdrs != w->nhdrs ||
      a->timeout_ms != w->timeout_ms || a->connect_ms != w->connect_ms ||
      a->max_body != w->max_body || a->max_redirects != w->max_redirects ||
      a->follow != w->follow || a->insecure != w->insecure || a->fresh != w->fresh ||
      a->raw_chunked != w->raw_chunked || a->stream != w->stream ||
      strcmp(a->method, w->method) != 0 || !str_eq(a->unix_socket, w->unix_socket) ||
      !str_eq(a->ca_file, w->ca_file) || !str_eq(a->ca_path, w->ca_path) ||
      !blob_eq(a->client_cert, a->client_cert_len, w->client_cert, w->client_cert_len) ||
      !blob_eq(a->client_key, a->client_key_len, w->client_key, w->client_key_len))
    return false;
  const struct curl_slist *l = x->hdrs;
  for (size_t i = 1; i <= w->nhdrs; i++, l = l->next) {
    lua_rawgeti(L, hidx, (lua_Integer)i);
    bool same = strcmp(lua_tostring(L, -1), l->data) == 0;
    lua_pop(L, 1);
    if (!same) return false;
  }
  return true;
}

static void shape_forget(SlHttpShape *s) {
  free((void *)s->method);                 /* owned here: see SlHttpShape */
  free((void *)s->unix_socket);
  free((void *)s->ca_file);
  free((void *)s->ca_path);
  free((void *)s->client_cert);
  if (s->client_key != NULL) explicit_bzero((void *)s->client_key, s->client_key_len);
  free((void *)s->client_key);
  memset(s, 0, sizeof(*s));
}

static bool dup_blob(const char **dst, const char *src, size_t n) {
  char *c = NULL;
  *dst = NULL;
  if (src != NULL && (c = malloc(n + 1)) == NULL) return false;
  if (c != NULL) {
    memcpy(c, src, n);
    c[n] = '\0';
  }
  *dst = c;
  return true;
}

static bool dup_opt(const char **dst, const char *src) {
  char *c = NULL;
  *dst = NULL;
  if (src != NULL && (c = strdup(src)) == NULL) return false;
  *dst = c;
  return true;
}

/* Configures x's (fresh or reset) easy handle for shape s and keeps a copy of s. false: OOM. */
static bool shape_apply(Xfer *x, const SlHttpShape *s, lua_State *L, int hidx) {
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, sl_http_open_cb);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x->m);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, sl_http_close_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, x->m);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sl_http_header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sl_http_write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");          /* whatever curl can decode */
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, s->follow ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, s->max_redirects);
  if (s->timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->timeout_ms);
  if (s->connect_ms > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms);
  if (s->unix_socket != NULL) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, s->unix_socket);
  if (s->ca_file != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
  if (s->ca_path != NULL) curl_easy_setopt(e, CURLOPT_CAPATH, s->ca_path);
  if (s->client_cert != NULL) {             /* curl copies both (CURL_BLOB_COPY) */
    struct curl_blob cert = {(void *)s->client_cert, s->client_cert_len, CURL_BLOB_COPY};
    struct curl_blob key = {(void *)s->client_key, s->client_key_len, CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (s->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (s->fresh) {
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  }
  if (s->raw_chunked) {
    /* the body as it came, chunked framing included, over HTTP/1.1: for services whose
     * message boundaries are the chunks (Sprites' HTTP exec); curl still finds the end */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
  }
  if (s->max_body > 0 && !s->stream) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, s->max_body);
  for (size_t i = 1; i <= s->nhdrs; i++) {
    lua_rawgeti(L, hidx, (lua_Integer)i);
    struct curl_slist *nl = curl_slist_append(x->hdrs, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (nl == NULL) return false;
    x->hdrs = nl;
  }
  const char *m = s->method;
  switch (s->body_kind) {
  case BODY_FILE: case BODY_PRODUCER:
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, sl_http_read_cb);
    curl_easy_setopt(e, CURLOPT_READDATA, x);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    break;
  case BODY_STRING:
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");             /* the body comes per request */
    if (strcmp(m, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    break;
  default:
    if (strcmp(m, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(m, "GET") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  }
  if (s->body_kind != BODY_NONE) {                           /* no 100-continue round trip */
    struct curl_slist *nl = curl_slist_append(x->hdrs, "Expect:");
    if (nl == NULL) return false;
    x->hdrs = nl;
  }
  if (x->hdrs != NULL) curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  SlHttpShape *k = &x->shape;
  *k = *s;
  k->method = k->unix_socket = k->ca_file = k->ca_path = k->client_cert = k->client_key = NULL;
  if (!dup_opt(&k->method, s->method) || !dup_opt(&k->unix_socket, s->unix_socket) ||
      !dup_opt(&k->ca_file, s->ca_file) || !dup_opt(&k->ca_path, s->ca_path) ||
      !dup_blob(&k->client_cert, s->client_cert, s->client_cert_len) ||
      !dup_blob(&k->client_key, s->client_key, s->client_key_len))
    return false;
  x->shaped = s->body_kind == BODY_NONE || s->body_kind == BODY_STRING;
  return true;
}

/* Clears everything of x but what a pooled transfer keeps (easy, header list, shape, buffers). */
static void xfer_clear(Xfer *x, Multi *m) {
  Xfer keep = *x;
  memset(x, 0, sizeof(*x));
  x->easy = keep.easy;
  x->hdrs = keep.hdrs;
  x->shape = keep.shape;
  x->shaped = keep.shaped;
  x->hbuf = keep.hbuf;
  x->halloc = keep.halloc;
  x->body = keep.body;
  x->balloc = keep.balloc;
  x->m = m;
  x->fd = -1;
}

void sl_http_release(Xfer *x) {
  if (x->easy != NULL) curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->hdrs);
  shape_forget(&x->shape);
  sl_queue_clear(&x->q);
  free(x->hbuf);
  free(x->body);
  free(x);
}

Xfer *sl_http_take(Multi *m, lua_State *L, const SlHttpShape *s, int hidx, SlError *err) {
  Xfer *x = NULL;
  if (s->body_kind == BODY_NONE || s->body_kind == BODY_STRING) {
    for (int i = m->pooled - 1; i >= 0; i--) {
      if (shape_match(m->pool[i], s, L, hidx)) {
        x = m->pool[i];
        m->pool[i] = m->pool[--m->pooled];
        break;
      }
    }
  }
  bool apply = x == NULL;
  /* a pooled match held these very bytes, checked when it was configured */
  if (apply && s->client_cert != NULL &&
      !sl_tls_check_pair(s->client_cert, s->client_cert_len, s->client_key, s->client_key_len,
                         err))
    return NULL;
  if (x == NULL && m->pooled > 0) {        /* another shape: start over from curl's defaults */
    x = m->pool[--m->pooled];
    curl_easy_reset(x->easy);
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    shape_forget(&x->shape);
    x->shaped = false;
  } else if (x == NULL) {
    if ((x = calloc(1, sizeof(*x))) == NULL || (x->easy = curl_easy_init()) == NULL) {
      free(x);
      sl_err_set(err, "internal", "sandlot.http: out of memory");
      return NULL;
    }
  }
  xfer_clear(x, m);
  x->next = m->live;
  if (m->live != NULL) m->live->prev = x;
  m->live = x;
  if (apply && !shape_apply(x, s, L, hidx)) {
    sl_http_free(x);                       /* unshaped now: reset when taken again */
    sl_err_set(err, "internal", "sandlot.http: out of memory");
    return NULL;
  }
  x->follow = s->follow;
  x->stream = s->stream;
  x->max_body = (size_t)s->max_body;
  x->body_kind = s->body_kind;
  return x;
}

/* Credentials in the URL are curl's per-transfer state; a handle that saw them is reset. */
static bool has_userinfo(const char *url) {
  const char *p = strstr(url, "://");
  if (p == NULL) return false;
  for (p += 3; *p != '\0' && *p != '/' && *p != '?' && *p != '#'; p++)
    if (*p == '@') return true;
  return false;
}

void sl_http_set_target(Xfer *x, const char *url, const char *body, size_t body_len) {
  curl_easy_setopt(x->easy, CURLOPT_URL, url);
  if (x->body_kind == BODY_STRING) {
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, body != NULL ? body : "");
  }
  if (has_userinfo(url)) x->shaped = false;
}

/* Back to the pool: the shape stays set on the easy handle when the transfer ran to its end;
 * one aborted half-way, or an upload, is reset when taken again. */
bool sl_http_recycle(Xfer *x) {
  Multi *m = x->m;
  if (m == NULL || m->pooled >= POOL_MAX || x->easy == NULL || x->recv_paused ||
      x->send_paused)
    return false;
  if (!x->completed) x->shaped = false;
  if (x->shaped && x->body_kind == BODY_STRING)             /* no pointer into a Lua string */
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, "");
  sl_queue_clear(&x->q);
  if (x->halloc > KEEP_BUF) {
    free(x->hbuf);
    x->hbuf = NULL;
    x->halloc = 0;
  }
  if (x->balloc > KEEP_BUF) {
    free(x->body);
    x->body = NULL;
    x->balloc = 0;
  }
  x->hlen = x->blen = 0;
  m->pool[m->pooled++] = x;
  return true;
}

/* ---------------------------------------------------------------- http.fetch */

static void fetch_cleanup(SlTask *t, void *data) {
  (void)t;
  Xfer *x = data;
  x->reader = NULL;
  x->wait_kind = WAIT_NONE;
  sl_http_detach(x, CURLE_ABORTED_BY_CALLBACK);   /* a cancelled waiter aborts the transfer */
  sl_http_free(x);
}

static int fetch_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* http.fetch(method, url, headers, body, ...) -> response, maybe_json | nil, err
 * One request with its body in memory, waited for. The arguments after body: timeout,
 * connect_timeout, max_body, unix_socket, follow, max_redirects, ca_file, ca_path, insecure,
 * fresh_connect, raw_chunked, client_cert, client_key (PEM text, both or neither). Arguments, not a table: sandlot.http's common path builds no
 * options table (see the file's head). headers is a list of lines; timeouts in seconds (nil
 * or false: none); follow defaults to true. response is {status, headers, body, http_version,
 * body_bytes, effective_url, redirects, connects, duration}; maybe_json tells whether its
 * content type mentions JSON. The body string is anchored on the caller's stack while the
 * task waits. */
int sl_http_fetch(lua_State *L) {
  SlHttpShape s;
  memset(&s, 0, sizeof(s));
  s.method = luaL_checkstring(L, 1);
  const char *url = luaL_checkstring(L, 2);
  int hidx = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    hidx = 3;
    s.nhdrs = header_count(L, 3);
  }
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 4, NULL, &blen);
  s.timeout_ms = ms_of(lua_isnumber(L, 5) ? lua_tonumber(L, 5) : 0);
  s.connect_ms = ms_of(lua_isnumber(L, 6) ? lua_tonumber(L, 6) : 0);
  double max_body = lua_isnumber(L, 7) ? lua_tonumber(L, 7) : 0;
  s.max_body = max_body > 0 ? (curl_off_t)max_body : 0;
  s.unix_socket = luaL_optstring(L, 8, NULL);
  s.follow = lua_isnoneornil(L, 9) || lua_toboolean(L, 9);
  s.max_redirects = (long)luaL_optinteger(L, 10, 10);
  s.ca_file = luaL_optstring(L, 11, NULL);
  s.ca_path = luaL_optstring(L, 12, NULL);
  s.insecure = lua_toboolean(L, 13);
  s.fresh = lua_toboolean(L, 14);
  s.raw_chunked = lua_toboolean(L, 15);
  s.client_cert = luaL_optlstring(L, 16, NULL, &s.client_cert_len);
  s.client_key = luaL_optlstring(L, 17, NULL, &s.client_key_len);
  luaL_argcheck(L, (s.client_cert == NULL) == (s.client_key == NULL), 17,
                "give client_cert and client_key together");
  s.body_kind = body_kind_of(s.method, body != NULL);
  Multi *m = sl_http_multi(L);
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;                 /* the task is cancelled: nil, err */
  SlError e;
  Xfer *x = sl_http_take(m, L, &s, hidx, &e);
  if (x == NULL) return sl_push_error(L, &e);
  x->boxless = true;
  sl_http_set_target(x, url, body, blen);
  CURLMcode mc = curl_multi_add_handle(m->cm, x->easy);
  if (mc != CURLM_OK) {
    x->done = true;
    sl_http_free(x);
    return sl_fail(L, "internal", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  }
  x->added = true;
  int running;                             /* on the wire before the caller parks */
  m->depth++;
  curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  m->depth--;
  sl_http_after(m);
  if (x->done) {                           /* failed at once: no wait */
    int n = sl_http_failed(x) ? sl_http_push_error(L, x) : sl_http_push_response(L, x);
    sl_http_free(x);
    return n;
  }
  x->reader = t;
  x->wait_kind = WAIT_FETCH;
  sl_wait_set_cleanup(t, fetch_cleanup, x);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), fetch_k);
}
