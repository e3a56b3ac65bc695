/* http_upgrade.c: sandlot.core.http.upgrade: one HTTP/1.1 request whose answer turns the
 * connection into a raw duplex byte stream (Docker's hijacked attach: `101 UPGRADED` to
 * `Upgrade: tcp`, or its legacy `200` with a raw-stream content type; later WebSockets).
 *
 * libcurl is not used here: CONNECT_ONLY would only connect, leaving the request writer and
 * the head parser to us anyway, and its socket would have to leave curl's multi. So this is a
 * plain uv_tcp (after uv_getaddrinfo) or uv_pipe (unix socket) connection, with TLS over it
 * for https (tls.c, with a client certificate if given; the handshake counts against
 * connect_timeout): the request bytes (built by
 * sandlot.http) are written once, the response head is parsed by http_head.c within max_head
 * bytes, and what follows is queued for s:read() between water marks (outbuf.h).
 *
 *   CONNECT --connected--> [TLS --handshake-->] HEAD --101 / raw-stream 200--> OPEN --close-->
 *      \--fail/timeout--> FAILED <--EOF, bad head, bad certificate--/  |      (freed after the
 *                            ^--REFUSED <--other answer-----------------/       close callbacks)
 *
 * The stream's Lua methods and its write path are http_stream.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_upgrade.h"

/* ---------------------------------------------------------------- lifetime */

void sl_upgrade_maybe_free(Up *u) {
  if (!u->released || u->live > 0) return;
  sl_queue_clear(&u->q);
  sl_tls_free(u->tls);
  free(u->req);
  free(u->head);
  free(u->excerpt);
  free(u);
}

static void on_closed(uv_handle_t *handle) {
  Up *u = handle->data;
  u->live--;
  sl_host_handle_done(u->host);
  sl_upgrade_maybe_free(u);
}

static void up_init_timer(Up *u, uv_timer_t *t) {
  uv_timer_init(u->host->loop, t);
  t->data = u;
  u->live++;
  sl_host_handle_opened(u->host);
}

static void close_conn(Up *u) {
  if (!u->conn_open) return;
  u->conn_open = false;
  u->conn.handle.data = u;
  uv_close(&u->conn.handle, on_closed);
}

/* ---------------------------------------------------------------- wake-ups */


/* Fails the opening: the opener gets nil, err; the connection is closed. */
void sl_upgrade_fail(Up *u, const char *code, const char *fmt, ...) {
  u->stage = UP_FAILED;
  u->failed = true;
  va_list ap;
  va_start(ap, fmt);
  u->err.code = code;
  vsnprintf(u->err.message, sizeof(u->err.message), fmt, ap);
  va_end(ap);
  uv_timer_stop(&u->rtimer);
  if (u->resolving) uv_cancel((uv_req_t *)&u->gai);
  close_conn(u);
  SlTask *t = u->opener;
  if (t == NULL) return;
  u->opener = NULL;
  sl_upgrade_push_err(t->co, u, &u->err);
  sl_wake(t, 2);
}


static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  Up *u = handle->data;
  buf->base = u->host->readbuf;
  buf->len = sizeof(u->host->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

void sl_upgrade_set_reading(Up *u, bool on) {
  if (!u->conn_open || u->eof || u->reading == on) return;
  u->reading = on;
  if (on) uv_read_start(&u->conn.stream, on_alloc, on_read);
  else uv_read_stop(&u->conn.stream);
}


/* ---------------------------------------------------------------- the response head */

static bool is_raw_stream(const char *v, size_t n) {
  static const char *const types[] = {"application/vnd.docker.raw-stream",
                                      "application/vnd.docker.multiplexed-stream"};
  for (int i = 0; i < 2; i++) {
    size_t k = strlen(types[i]);
    if (n >= k && strncasecmp(v, types[i], k) == 0 && (n == k || v[k] == ';' || v[k] == ' '))
      return true;
  }
  return false;
}

/* Fails the opening for an answer that does not switch protocols, with its status and the
 * start of its body (Docker explains itself there), once that much has come or the server
 * closed or the head timeout fires. */
static void refusal_done(Up *u) {
  SlHttpHead *h = &u->parsed;
  size_t after = u->head_len - h->length;
  if (after > u->want) after = u->want;
  u->status = h->status;
  u->excerpt = malloc(after + 1);
  u->excerpt_len = u->excerpt != NULL ? after : 0;
  if (u->excerpt != NULL) memcpy(u->excerpt, u->head + h->length, after);
  sl_upgrade_fail(u, "bad_response", "the server answered %d instead of switching protocols",
            h->status);
}

static void refused(Up *u) {
  SlHttpHead *h = &u->parsed;
  const char *v;
  size_t vlen;
  u->want = BODY_EXCERPT;
  if (sl_http_head_field(u->head, h, "content-length", &v, &vlen)) {
    size_t n = 0;
    for (size_t i = 0; i < vlen && v[i] >= '0' && v[i] <= '9' && n < BODY_EXCERPT; i++)
      n = n * 10 + (size_t)(v[i] - '0');
    if (n < u->want) u->want = n;
  }
  if (u->want > u->head_max - h->length) u->want = u->head_max - h->length;
  u->stage = UP_REFUSED;
  if (u->head_len - h->length >= u->want) refusal_done(u);
}

/* Takes n more bytes in stage HEAD; moves to OPEN (queueing what follows the head) or fails. */
static void head_bytes(Up *u, const char *data, size_t n) {
  for (;;) {
    size_t room = u->head_max - u->head_len, take = n < room ? n : room;
    memcpy(u->head + u->head_len, data, take);
    u->head_len += take;
    data += take;
    n -= take;
    const char *why;
    SlHttpHead *h = &u->parsed;
    int rc = sl_http_head_parse(u->head, u->head_len, u->head_max, h, &why);
    if (rc == SL_HEAD_MORE) return;        /* the buffer has room, so n == 0 */
    if (rc == SL_HEAD_BAD) {
      sl_upgrade_fail(u, "bad_response", "malformed response head: %s", why);
      return;
    }
    if (h->status >= 100 && h->status < 200 && h->status != 101) {   /* interim: skip it */
      memmove(u->head, u->head + h->length, u->head_len - h->length);
      u->head_len -= h->length;
      continue;
    }
    const char *ct = NULL;
    size_t ctlen = 0;
    bool legacy = h->status == 200 &&
                  sl_http_head_field(u->head, h, "content-type", &ct, &ctlen) &&
                  is_raw_stream(ct, ctlen);
    size_t after = u->head_len - h->length;
    if (h->status != 101 && !legacy) {
      refused(u);
      return;
    }
    if ((after > 0 && !sl_queue_push(&u->q, 0, u->head + h->length, after)) ||
        (n > 0 && !sl_queue_push(&u->q, 0, data, n))) {
      sl_upgrade_fail(u, "internal", "out of memory");
      return;
    }
    u->head_len = h->length;               /* the head stays for s:head() */
    char *shrunk = realloc(u->head, u->head_len);
    if (shrunk != NULL) u->head = shrunk;
    u->stage = UP_OPEN;
    uv_timer_stop(&u->rtimer);
    if (sl_queue_full(&u->q)) {
      u->rx_paused = true;
      sl_upgrade_set_reading(u, false);
    }
    SlTask *t = u->opener;
    u->opener = NULL;
    if (t != NULL) {
      lua_pushboolean(t->co, 1);
      sl_wake(t, 1);
    }
    return;
  }
}

/* The connection ended (n: UV_EOF or an error). */
static void up_end(Up *u, ssize_t n) {
  sl_upgrade_set_reading(u, false);
  u->eof = true;
  if (u->stage == UP_REFUSED) {
    refusal_done(u);
    return;
  }
  if (u->stage == UP_TLS) {
    sl_upgrade_fail(u, "unavailable", "the server closed the connection within the TLS handshake%s%s",
              n == UV_EOF ? "" : ": ", n == UV_EOF ? "" : uv_strerror((int)n));
    return;
  }
  if (u->stage == UP_HEAD) {
    if (n == UV_EOF)
      sl_upgrade_fail(u, "bad_response", "the server closed the connection within the response "
                "head (%zu bytes)", u->head_len);
    else
      sl_upgrade_fail(u, "unavailable", "reading the response head: %s", uv_strerror((int)n));
    return;
  }
  if (n != UV_EOF && !u->failed) {
    u->failed = true;
    sl_err_set(&u->err, "unavailable", "the stream broke: %s", uv_strerror((int)n));
  }
  sl_upgrade_notify_reader(u);
}

/* n bytes of the answer (plaintext) */
static void up_bytes(Up *u, const char *data, size_t n) {
  if (u->stage == UP_HEAD) {
    head_bytes(u, data, n);
    return;
  }
  if (u->stage == UP_REFUSED) {
    size_t room = u->head_max - u->head_len, take = n < room ? n : room;
    memcpy(u->head + u->head_len, data, take);
    u->head_len += take;
    if (u->head_len - u->parsed.length >= u->want) refusal_done(u);
    return;
  }
  if (u->stage != UP_OPEN) return;
  if (!sl_queue_push(&u->q, 0, data, n)) {
    u->failed = true;
    sl_err_set(&u->err, "internal", "out of memory");
  } else if (sl_queue_full(&u->q)) {
    u->rx_paused = true;
    sl_upgrade_set_reading(u, false);
  }
  sl_upgrade_notify_reader(u);
}


/* Writes the request (once connected, and after the TLS handshake); the head's clock starts. */
static bool send_request(Up *u) {
  int rc;
  u->stage = UP_HEAD;
  if (sl_upgrade_send(u, u->req, u->req_len, &rc) == NULL) {
    sl_upgrade_fail(u, "unavailable", "sending the request: %s", uv_strerror(rc));
    return false;
  }
  if (u->head_ms > 0) uv_timer_start(&u->rtimer, sl_upgrade_on_rtimer, u->head_ms, 0);
  else uv_timer_stop(&u->rtimer);
  return true;
}

/* Ciphertext from the network: what TLS must answer goes out, the request once the handshake
 * is done, then the plaintext goes where plain bytes would. */
static void tls_read(Up *u, const char *data, size_t n) {
  const char *plain;
  size_t len;
  SlError e;
  int rc = sl_tls_input(u->tls, data, n, &plain, &len, &e);
  if (rc == SL_TLS_FAIL) {
    if (u->stage == UP_REFUSED) {
      refusal_done(u);
    } else if (u->stage < UP_OPEN) {
      sl_upgrade_fail(u, e.code, "%s", e.message);
    } else if (!u->failed) {
      u->failed = true;
      u->err = e;
      sl_upgrade_set_reading(u, false);
      sl_upgrade_notify_reader(u);
    }
    return;
  }
  sl_upgrade_flush(u);
  if (u->stage == UP_TLS && sl_tls_ready(u->tls) && !send_request(u)) return;
  if (len > 0) up_bytes(u, plain, len);
  if (rc == SL_TLS_EOF && !u->eof) up_end(u, UV_EOF);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  Up *u = stream->data;
  if (n == 0) return;
  if (n < 0) up_end(u, n);
  else if (u->tls != NULL) tls_read(u, buf->base, (size_t)n);
  else up_bytes(u, buf->base, (size_t)n);
}

/* ---------------------------------------------------------------- connecting */

void sl_upgrade_on_rtimer(uv_timer_t *timer) {
  Up *u = timer->data;
  char s[32];
  if (u->stage == UP_REFUSED) {
    refusal_done(u);
    return;
  }
  if (u->stage <= UP_HEAD) {
    if (u->stage == UP_CONNECT)
      sl_upgrade_fail(u, "timeout", "no connection within %.3gs", (double)u->connect_ms / 1e3);
    else if (u->stage == UP_TLS)
      sl_upgrade_fail(u, "timeout", "no TLS handshake within %.3gs (connect_timeout)",
                (double)u->connect_ms / 1e3);
    else
      sl_upgrade_fail(u, "timeout", "no response head within %.3gs", (double)u->head_ms / 1e3);
    return;
  }
  SlTask *t = u->reader;                   /* OPEN: read() waited io_timeout for nothing */
  if (t == NULL) return;
  u->reader = NULL;
  snprintf(s, sizeof(s), "%.3gs", (double)u->read_ms / 1e3);
  SlError e;
  sl_err_set(&e, "timeout", "no data within %s", s);
  sl_upgrade_push_err(t->co, u, &e);
  sl_wake(t, 2);
}

static void on_connect(uv_connect_t *req, int status) {
  Up *u = req->data;
  u->live--;
  if (u->stage != UP_CONNECT || u->released) {
    sl_upgrade_maybe_free(u);
    return;
  }
  if (status < 0) {
    sl_upgrade_fail(u, "unavailable", "connect: %s", uv_strerror(status));
    return;
  }
  if (u->tls != NULL) {                    /* connect_timeout's clock runs on */
    u->stage = UP_TLS;
    sl_upgrade_flush(u);                           /* the ClientHello */
  } else if (!send_request(u)) {
    return;
  }
  sl_upgrade_set_reading(u, true);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  Up *u = req->data;
  u->resolving = false;
  u->live--;
  sl_host_handle_done(u->host);
  if (u->released || u->stage != UP_CONNECT) {
    uv_freeaddrinfo(res);
    sl_upgrade_maybe_free(u);
    return;
  }
  if (status < 0) {
    sl_upgrade_fail(u, "unavailable", "resolve: %s", uv_strerror(status));
    uv_freeaddrinfo(res);
    return;
  }
  struct addrinfo *pick = res;             /* one address: IPv4 first, as most daemons bind */
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  uv_tcp_init(u->host->loop, &u->conn.tcp);
  u->conn.handle.data = u;
  u->conn_open = true;
  u->live++;
  sl_host_handle_opened(u->host);
  u->creq.data = u;
  int rc = uv_tcp_connect(&u->creq, &u->conn.tcp, pick->ai_addr, on_connect);
  uv_freeaddrinfo(res);
  if (rc != 0) sl_upgrade_fail(u, "unavailable", "connect: %s", uv_strerror(rc));
  else u->live++;
}

/* ---------------------------------------------------------------- Lua API */


static uint64_t opt_ms(lua_State *L, int opts, const char *field, double dflt) {
  lua_getfield(L, opts, field);
  double s = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  if (s < 0) luaL_error(L, "sandlot.http.upgrade: opts.%s must be >= 0", field);
  return (uint64_t)(s * 1e3 + 0.5);
}

/* Lets the Lua side go: closes everything; waiting tasks are woken with `cancelled`. */
void sl_upgrade_release(Up *u, const char *why) {
  if (u->released) return;
  u->released = true;
  u->stage = UP_FAILED;
  if (u->box != NULL) u->box->u = NULL;
  u->box = NULL;
  SlTask *waiters[3] = {u->opener, u->reader, u->writer};
  u->opener = u->reader = u->writer = NULL;
  for (int i = 0; i < 3; i++) {
    SlTask *t = waiters[i];
    if (t == NULL) continue;
    t->cleanup = NULL;
    luaL_checkstack(t->co, 2, NULL);
    lua_pushnil(t->co);
    sl_new_error(t->co, "cancelled", why);
    sl_wake(t, 2);
  }
  if (u->resolving) uv_cancel((uv_req_t *)&u->gai);
  close_conn(u);
  uv_timer_stop(&u->rtimer);
  uv_timer_stop(&u->wtimer);
  uv_close((uv_handle_t *)&u->rtimer, on_closed);
  uv_close((uv_handle_t *)&u->wtimer, on_closed);
}

static void opener_cleanup(SlTask *t, void *data) {
  (void)t;
  Up *u = data;
  u->opener = NULL;
  sl_upgrade_release(u, "the upgrade was cancelled");
}

static int upgrade_k(lua_State *L, int status, lua_KContext box) {
  (void)status;
  if (lua_type(L, -1) == LUA_TBOOLEAN) {    /* true: opened */
    lua_pushvalue(L, (int)box);
    return 1;
  }
  return 2;                                /* nil, err */
}

/* http.upgrade{request = bytes, unix_socket = path | host = h, port = n, connect_timeout = s,
 * timeout = s (to the end of the head), io_timeout = s (each read or write; 0: none),
 * max_head = bytes, tls = bool (https: TLS to host, verified against ca_file / ca_path or the
 * system store unless insecure; client_cert + client_key: PEM text, a client certificate)}
 * -> stream | nil, err   (err.status, err.body: a refusal) */
int sl_http_upgrade(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "request");
  size_t req_len;
  const char *req = luaL_checklstring(L, -1, &req_len);
  lua_getfield(L, 1, "unix_socket");
  const char *sock = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "port");
  lua_Integer port = luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "max_head");
  lua_Integer max_head = luaL_optinteger(L, -1, 64 << 10);
  lua_pop(L, 5);                           /* opts keeps the strings alive */
  luaL_argcheck(L, (sock != NULL) != (host != NULL), 1, "give unix_socket or host");
  luaL_argcheck(L, sock != NULL || (port > 0 && port < 65536), 1, "port out of range");
  luaL_argcheck(L, max_head >= 64 && max_head <= (16 << 20), 1, "max_head out of range");
  luaL_argcheck(L, req_len > 0 && req_len < (64u << 20), 1, "request out of range");
  uint64_t connect_ms = opt_ms(L, 1, "connect_timeout", 10);
  uint64_t head_ms = opt_ms(L, 1, "timeout", 60), io_ms = opt_ms(L, 1, "io_timeout", 0);
  SlTls *tls = NULL;
  lua_getfield(L, 1, "tls");
  if (lua_toboolean(L, -1)) {              /* [opts, tls, ca_file, ca_path, insecure, ...] */
    luaL_argcheck(L, host != NULL, 1, "tls needs host");
    lua_getfield(L, 1, "ca_file");
    lua_getfield(L, 1, "ca_path");
    lua_getfield(L, 1, "insecure");
    lua_getfield(L, 1, "client_cert");
    lua_getfield(L, 1, "client_key");
    SlTlsClientOpts o = {.ca_file = luaL_optstring(L, -5, NULL),
                         .ca_path = luaL_optstring(L, -4, NULL),
                         .insecure = lua_toboolean(L, -3)};
    o.cert = luaL_optlstring(L, -2, NULL, &o.cert_len);
    o.key = luaL_optlstring(L, -1, NULL, &o.key_len);
    luaL_argcheck(L, (o.cert == NULL) == (o.key == NULL), 1,
                  "give client_cert and client_key together");
    SlError e;
    tls = sl_tls_client(sl_host(L), host, &o, &e);
    if (tls == NULL) return sl_push_error(L, &e);
  }
  lua_settop(L, 1);
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    sl_tls_free(tls);
    return 2;
  }
  SlHost *hst = sl_host(L);
  UpBox *box = lua_newuserdatauv(L, sizeof(*box), 0);       /* [opts, box] */
  box->u = NULL;
  luaL_setmetatable(L, UP_MT);
  Up *u = calloc(1, sizeof(*u));
  char *copy = malloc(req_len), *head = malloc((size_t)max_head);
  if (u == NULL || copy == NULL || head == NULL) {
    sl_tls_free(tls);
    free(u);
    free(copy);
    free(head);
    return sl_fail(L, "internal", "out of memory");
  }
  memcpy(copy, req, req_len);
  u->host = hst;
  u->tls = tls;
  u->box = box;
  box->u = u;
  u->req = copy;
  u->req_len = req_len;
  u->head = head;
  u->head_max = (size_t)max_head;
  u->connect_ms = connect_ms;
  u->head_ms = head_ms;
  u->io_ms = io_ms;
  u->read_max = READ_MAX_DEFAULT;
  up_init_timer(u, &u->rtimer);
  up_init_timer(u, &u->wtimer);
  u->opener = t;
  if (connect_ms > 0) uv_timer_start(&u->rtimer, sl_upgrade_on_rtimer, connect_ms, 0);
  if (sock != NULL) {
    uv_pipe_init(hst->loop, &u->conn.pipe, 0);
    u->conn.handle.data = u;
    u->conn_open = true;
    u->live++;
    sl_host_handle_opened(hst);
    u->creq.data = u;
    uv_pipe_connect(&u->creq, &u->conn.pipe, sock, on_connect);   /* errors come in the cb */
    u->live++;
  } else {
    char service[16];
    snprintf(service, sizeof(service), "%d", (int)port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    u->gai.data = u;
    int rc = uv_getaddrinfo(hst->loop, &u->gai, on_resolved, host, service, &hints);
    if (rc != 0) {
      u->opener = NULL;
      SlError e;
      sl_err_set(&e, "unavailable", "resolve %s: %s", host, uv_strerror(rc));
      sl_upgrade_release(u, "failed");
      return sl_push_error(L, &e);
    }
    u->resolving = true;
    u->live++;
    sl_host_handle_opened(hst);            /* the host waits for the resolver at teardown */
  }
  sl_wait_set_cleanup(t, opener_cleanup, u);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), upgrade_k);
}
