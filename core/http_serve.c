/* http_serve.c: sandlot.core.http.serve: a small HTTP/1.1 server on the host's loop, for strict
 * fakes and local receivers. Requests are read by http_request.c (Debian's libhttp-parser,
 * within limits); every complete request is handed to a Lua dispatcher (lua/sandlot/_http_serve.lua) in
 * a task of its own, which writes the answer through conn:write() and ends with conn:finish().
 *
 * A connection reads only while it waits for a request: while one is handled, reading stops
 * and what came after it waits (pipelining), so a connection holds at most one request head
 * (max_head), one body (max_body) and one read. Answers the core gives itself (400, 413, 431)
 * end the connection gracefully: shutdown, then read and drop what the client still sends for
 * LINGER_MS, so the client sees the answer rather than a reset. With tls = {cert, key} every
 * connection speaks TLS (tls.c): what is read is decrypted before anything above sees it, what
 * is written is encrypted, and a client that never finishes its handshake meets idle_timeout.
 * With tls_client_ca a client certificate is asked for; each request says whether one came
 * and verified (req.tls_client_cn) or not (req.tls_client_error), and Lua decides.
 *
 *   READ --complete--> HANDLE --finish(keep)--> READ      idle_timeout in READ: closed
 *     \--bad request--> LINGER <--finish(no keep)-/        a write waiting idle_timeout: closed
 *
 * Server and Conn are owned by C until their handles' close callbacks; the Lua boxes point in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_request.h"
#include "tls.h"

#define SRV_MT "sandlot.http.server"
#define CONN_MT "sandlot.http.conn"
#define LINGER_MS 2000

enum { C_READ, C_HANDLE, C_LINGER };

typedef struct Server Server;
typedef struct Conn Conn;
typedef struct { Server *s; } SrvBox;
typedef struct { Conn *c; } ConnBox;

struct Server {
  SlHost *host;
  uv_tcp_t tcp;
  SrvBox *box;
  SlTlsCtx *tls;                           /* https: every connection's certificate */
  int live;                                /* the listener and every conn not yet freed */
  bool released;
  int dispatch_ref;                        /* registry: the Lua dispatcher */
  Conn *conns;
  int nconns, max_conns;
  size_t max_head, max_body;
  uint64_t idle_ms;
  uint64_t accepted, requests;
};

typedef struct {
  uv_write_t req;
  Conn *c;
  bool waited;                             /* c->writer waits for it */
  char data[];
} CWrite;

struct Conn {
  Server *s;                               /* NULL once killed */
  Conn *prev, *next;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_timer_t rtimer;                       /* raw mode: a read()'s timeout */
  uv_shutdown_t sreq;
  SlHost *host;
  SlTls *tls;
  int live;                                /* handles, writes and the shutdown in flight */
  bool killed, reading, pend_due;
  bool raw;                                /* upgraded: read() takes the bytes (WebSocket) */
  SlTask *reader;                          /* raw mode: the task waiting in read() */
  int state;
  SlReq req;                               /* the request being read (http_request.c) */
  char *pend;                              /* bytes after a complete request, not parsed yet */
  size_t pend_len;
  SlTask *writer;
  CWrite *wcur;
  ConnBox *box;                            /* the request being handled */
};

/* ---------------------------------------------------------------- lifetime */

static void server_maybe_free(Server *s) {
  if (!s->released || s->live > 0) return;
  sl_tls_ctx_free(s->tls);
  free(s);
}

static void conn_maybe_free(Conn *c) {
  if (!c->killed || c->live > 0) return;
  sl_req_free(&c->req);
  sl_tls_free(c->tls);
  free(c->pend);
  free(c);
}

static void on_conn_closed(uv_handle_t *h) {
  Conn *c = h->data;
  c->live--;
  sl_host_handle_done(c->host);
  conn_maybe_free(c);
}

static void set_reading(Conn *c, bool on);

/* raw mode: the waiting reader gets data (n > 0), nil at the end (data NULL, code NULL), or
 * nil, err */
static void wake_reader(Conn *c, const char *data, size_t n, const char *code, const char *msg) {
  SlTask *t = c->reader;
  if (t == NULL) return;
  c->reader = NULL;
  t->cleanup = NULL;
  uv_timer_stop(&c->rtimer);
  set_reading(c, false);
  luaL_checkstack(t->co, 2, NULL);
  if (data != NULL) {
    lua_pushlstring(t->co, data, n);
    sl_wake(t, 1);
  } else if (code == NULL) {
    sl_wake(t, 0);
  } else {
    lua_pushnil(t->co);
    sl_new_error(t->co, code, msg);
    sl_wake(t, 2);
  }
}

static void wake_writer(Conn *c, const char *code, const char *msg) {
  SlTask *t = c->writer;
  if (t == NULL) return;
  c->writer = NULL;
  if (c->wcur != NULL) c->wcur->waited = false;
  t->cleanup = NULL;
  luaL_checkstack(t->co, 2, NULL);
  lua_pushnil(t->co);
  sl_new_error(t->co, code, msg);
  sl_wake(t, 2);
}

/* Closes the connection now; a waiting writer gets nil, err. Idempotent. */
static void conn_kill(Conn *c, const char *code, const char *why) {
  if (c->killed) return;
  c->killed = true;
  wake_writer(c, code, why);
  wake_reader(c, NULL, 0, code, why);
  if (c->box != NULL) c->box->c = NULL;
  c->box = NULL;
  Server *s = c->s;
  if (s != NULL) {
    if (c->prev != NULL) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    s->nconns--;
    s->live--;
    c->s = NULL;
    server_maybe_free(s);
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
  uv_close((uv_handle_t *)&c->rtimer, on_conn_closed);
}

/* ---------------------------------------------------------------- writing */

static void on_write(uv_write_t *req, int status) {
  CWrite *w = (CWrite *)req;
  Conn *c = w->c;
  c->live--;
  bool waited = w->waited;
  if (c->wcur == w) c->wcur = NULL;
  free(w);
  if (waited && c->writer != NULL) {
    SlTask *t = c->writer;
    c->writer = NULL;
    uv_timer_stop(&c->timer);
    if (status == 0) {
      lua_pushboolean(t->co, 1);
      sl_wake(t, 1);
    } else {
      char msg[128];
      snprintf(msg, sizeof(msg), "write: %s", uv_strerror(status));
      lua_pushnil(t->co);
      sl_new_error(t->co, status == UV_ECANCELED ? "cancelled" : "unavailable", msg);
      sl_wake(t, 2);
    }
  }
  conn_maybe_free(c);
}

/* Queues a copy of data (encrypted with TLS; data NULL: only what TLS has waiting); NULL when
 * it could not be queued, or there was nothing to send. */
static CWrite *conn_send(Conn *c, const char *data, size_t len) {
  if (c->tls != NULL) {
    SlError e;
    if (data != NULL && (!sl_tls_ready(c->tls) || !sl_tls_output(c->tls, data, len, &e)))
      return NULL;
    len = sl_tls_pending(c->tls);
    if (len == 0) return NULL;
  }
  CWrite *w = malloc(sizeof(*w) + len);
  if (w == NULL) return NULL;
  w->c = c;
  w->waited = false;
  if (c->tls != NULL) len = sl_tls_take(c->tls, w->data, len);
  else memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(w);
    return NULL;
  }
  c->live++;
  return w;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  Conn *c = req->data;
  c->live--;
  conn_maybe_free(c);
}

static void on_timer(uv_timer_t *t);

/* Ends the connection gracefully: FIN after what was queued, then drop what the client still
 * sends until it closes or LINGER_MS pass. */
static void conn_end(Conn *c) {
  if (c->killed || c->state == C_LINGER) return;
  c->state = C_LINGER;
  if (c->tls != NULL) {
    sl_tls_close_notify(c->tls);
    conn_send(c, NULL, 0);
  }
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_kill(c, "unavailable", "the connection is closed");
    return;
  }
  c->live++;
  uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
  set_reading(c, true);
}

/* An answer of the core's own (the request never reached Lua), then the end. */
static void conn_refuse(Conn *c, int status) {
  const char *text = status == 413 ? "413 Content Too Large"
                     : status == 431 ? "431 Request Header Fields Too Large"
                     : status == 503 ? "503 Service Unavailable" : "400 Bad Request";
  char buf[256];
  int n = snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                   text, strlen(text) + 1, text);
  if (conn_send(c, buf, (size_t)n) == NULL) {
    conn_kill(c, "unavailable", "the connection is closed");
    return;
  }
  conn_end(c);
}

/* Expect: 100-continue (from the parser, on a request whose body is wanted) */
static bool send_continue(void *ud) {
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  return conn_send(ud, cont, sizeof(cont) - 1) != NULL;
}

/* ---------------------------------------------------------------- dispatching */

/* [dispatcher, conn lightuserdata] -> spawns dispatcher(conn box, req) as a task. */
static int spawn_p(lua_State *L) {
  Conn *c = lua_touserdata(L, 2);
  lua_settop(L, 1);
  ConnBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->c = NULL;
  luaL_setmetatable(L, CONN_MT);
  sl_req_push(L, &c->req);
  const char *why;
  char cn[256];
  int verdict = c->tls != NULL ? sl_tls_client_cn(c->tls, cn, sizeof(cn), &why) : 0;
  if (verdict != 0) {
    lua_pushstring(L, verdict > 0 ? cn : why);
    lua_setfield(L, -2, verdict > 0 ? "tls_client_cn" : "tls_client_error");
  }
  sl_sched_spawn(L, 2, false);
  box->c = c;                                /* only now: a raise above frees nothing twice */
  c->box = box;
  return 0;
}

static void dispatch(Conn *c) {
  Server *s = c->s;
  lua_State *L = s->host->L;
  c->state = C_HANDLE;
  set_reading(c, false);
  uv_timer_stop(&c->timer);
  s->requests++;
  if (!lua_checkstack(L, 4)) {
    conn_kill(c, "internal", "out of memory");
    return;
  }
  lua_pushcfunction(L, spawn_p);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->dispatch_ref);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    conn_kill(c, "internal", "the request could not be dispatched");
  }
  if (!c->killed) {                          /* the body went to Lua: keep no copy */
    sl_req_drop_body(&c->req);
  }
}

/* Parses n bytes in state READ: dispatches a complete request (keeping what follows it),
 * refuses a bad one, or waits for more. */
static void feed(Conn *c, const char *data, size_t n) {
  size_t used;
  int status, rc = sl_req_feed(&c->req, data, n, &used, &status);
  if (rc == SL_REQ_DONE) {
    if (used < n) {
      char *rest = malloc(n - used);
      if (rest == NULL) {
        conn_kill(c, "internal", "out of memory");
        return;
      }
      memcpy(rest, data + used, n - used);
      c->pend = rest;
      c->pend_len = n - used;
    }
    dispatch(c);
    return;
  }
  if (rc == SL_REQ_BAD) conn_refuse(c, status);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  Conn *c = handle->data;
  buf->base = c->host->readbuf;
  buf->len = sizeof(c->host->readbuf);
}

static void conn_eof(Conn *c, bool clean) {
  if (c->raw && clean) wake_reader(c, NULL, 0, NULL, NULL);
  conn_kill(c, "unavailable", "the client closed the connection");
}

/* n bytes from the client (plaintext) */
static void conn_bytes(Conn *c, const char *data, size_t n) {
  if (c->raw && c->state == C_HANDLE) {
    wake_reader(c, data, n, NULL, NULL);
    return;
  }
  if (c->state != C_READ) return;
  uv_timer_start(&c->timer, on_timer, c->s->idle_ms, 0);
  feed(c, data, n);
}

/* ciphertext: the handshake's answers go out, the plaintext up; a failed handshake ends the
 * connection after its alert */
static void tls_read(Conn *c, const char *data, size_t n) {
  const char *plain;
  size_t len;
  SlError e;
  int rc = sl_tls_input(c->tls, data, n, &plain, &len, &e);
  conn_send(c, NULL, 0);
  if (rc == SL_TLS_FAIL) {
    wake_reader(c, NULL, 0, e.code, e.message);
    conn_end(c);
    return;
  }
  if (len > 0) conn_bytes(c, plain, len);
  if (rc == SL_TLS_EOF && !c->killed) conn_eof(c, true);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  Conn *c = stream->data;
  if (n == 0 || c->killed) return;
  if (n < 0) conn_eof(c, n == UV_EOF);
  else if (c->state == C_LINGER) return;     /* dropped: the answer is on its way */
  else if (c->tls != NULL) tls_read(c, buf->base, (size_t)n);
  else conn_bytes(c, buf->base, (size_t)n);
}

static void set_reading(Conn *c, bool on) {
  if (c->killed || c->reading == on) return;
  c->reading = on;
  if (on) uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  else uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_timer(uv_timer_t *t) {
  Conn *c = t->data;
  if (c->state == C_READ && c->pend_due) {   /* a pipelined request, after finish() */
    c->pend_due = false;
    char *p = c->pend;
    size_t n = c->pend_len;
    c->pend = NULL;
    c->pend_len = 0;
    uv_timer_start(&c->timer, on_timer, c->s->idle_ms, 0);
    feed(c, p, n);
    free(p);
    if (!c->killed && c->state == C_READ) set_reading(c, true);
    return;
  }
  if (c->state == C_HANDLE) {
    wake_writer(c, "timeout", "the client took no data within the idle timeout");
    conn_kill(c, "timeout", "idle");
    return;
  }
  conn_kill(c, "timeout", "idle");
}

static void on_connection(uv_stream_t *listener, int status) {
  Server *s = listener->data;
  if (status < 0 || s->released) return;
  Conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  c->host = s->host;
  uv_tcp_init(s->host->loop, &c->tcp);
  uv_timer_init(s->host->loop, &c->timer);
  uv_timer_init(s->host->loop, &c->rtimer);
  c->tcp.data = c->timer.data = c->rtimer.data = c;
  c->live = 3;
  sl_host_handle_opened(s->host);
  sl_host_handle_opened(s->host);
  sl_host_handle_opened(s->host);
  c->s = s;
  c->next = s->conns;
  if (s->conns != NULL) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->live++;
  s->accepted++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_kill(c, "unavailable", "accept failed");
    return;
  }
  if (s->nconns > s->max_conns) {            /* bounded: the newest is turned away */
    c->state = C_READ;
    conn_refuse(c, 503);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  SlError e;
  if (s->tls != NULL && (c->tls = sl_tls_server(s->tls, &e)) == NULL) {
    conn_kill(c, e.code, e.message);
    return;
  }
  sl_req_init(&c->req, s->max_head, s->max_body);
  c->req.on_continue = send_continue;
  c->req.ud = c;
  c->state = C_READ;
  uv_timer_start(&c->timer, on_timer, s->idle_ms, 0);
  set_reading(c, true);
}

/* ---------------------------------------------------------------- Lua API: conn */

static int results_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

static void writer_cleanup(SlTask *t, void *data) {
  (void)t;
  Conn *c = data;
  c->writer = NULL;                          /* the write finishes (or fails) on its own */
  if (c->wcur != NULL) c->wcur->waited = false;
  uv_timer_stop(&c->timer);
}

/* conn:write(data) -> true | nil, err   (waits until the kernel took the data) */
static int conn_write(lua_State *L) {
  ConnBox *box = luaL_checkudata(L, 1, CONN_MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  Conn *c = box->c;
  if (c == NULL || c->killed || c->state != C_HANDLE)
    return sl_fail(L, "unavailable", "the connection is closed");
  if (c->writer != NULL) return luaL_error(L, "sandlot.http.conn: another task is writing");
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int n = c->tls != NULL ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)len) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (n < 0 && n != UV_EAGAIN) return sl_fail(L, "unavailable", "write: %s", uv_strerror(n));
  size_t done = n > 0 ? (size_t)n : 0;
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  CWrite *w = conn_send(c, data + done, len - done);
  if (w == NULL) return sl_fail(L, "unavailable", "write failed");
  w->waited = true;
  c->writer = t;
  c->wcur = w;
  uv_timer_start(&c->timer, on_timer, c->s->idle_ms, 0);
  sl_wait_set_cleanup(t, writer_cleanup, c);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* conn:finish(keep) -> true: the answer is complete; keep: read the next request (when the
 * request allowed it), else end the connection gracefully. */
static int conn_finish(lua_State *L) {
  ConnBox *box = luaL_checkudata(L, 1, CONN_MT);
  bool keep = lua_toboolean(L, 2);
  Conn *c = box->c;
  lua_pushboolean(L, 1);
  if (c == NULL || c->killed || c->state != C_HANDLE) return 1;
  box->c = NULL;
  c->box = NULL;
  if (!keep || !c->req.keep_alive || c->s == NULL || c->s->released) {
    conn_end(c);
    return 1;
  }
  c->state = C_READ;
  sl_req_next(&c->req);
  if (c->pend_len > 0) {                     /* parsed from the loop, not from this task */
    c->pend_due = true;
    uv_timer_start(&c->timer, on_timer, 0, 0);
  } else {
    uv_timer_start(&c->timer, on_timer, c->s->idle_ms, 0);
    set_reading(c, true);
  }
  return 1;
}

static void on_rtimer(uv_timer_t *t) {
  Conn *c = t->data;
  wake_reader(c, NULL, 0, "timeout", "the client sent nothing within the read timeout");
}

static void reader_cleanup(SlTask *t, void *data) {
  (void)t;
  Conn *c = data;
  c->reader = NULL;
  uv_timer_stop(&c->rtimer);
  set_reading(c, false);
}

/* conn:upgrade() -> true: after a 101 answer, the connection is a raw byte stream: read()
 * takes what the client sends, write() sends; finish() or close() ends it. */
static int conn_upgrade(lua_State *L) {
  ConnBox *box = luaL_checkudata(L, 1, CONN_MT);
  Conn *c = box->c;
  if (c == NULL || c->killed || c->state != C_HANDLE)
    return sl_fail(L, "unavailable", "the connection is closed");
  c->raw = true;
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:read([timeout_s]) -> data | nil at the end | nil, err   (raw mode only; one read's
 * worth of bytes at most, reading only while a task waits here: bounded) */
static int conn_read(lua_State *L) {
  ConnBox *box = luaL_checkudata(L, 1, CONN_MT);
  lua_Number tmo = luaL_optnumber(L, 2, 0);
  lua_settop(L, 1);
  Conn *c = box->c;
  if (c == NULL || c->killed || c->state != C_HANDLE)
    return sl_fail(L, "unavailable", "the connection is closed");
  if (!c->raw) return luaL_error(L, "sandlot.http.conn: read() before upgrade()");
  if (c->reader != NULL) return luaL_error(L, "sandlot.http.conn: another task is reading");
  if (c->pend_len > 0) {                     /* what came with the request head */
    lua_pushlstring(L, c->pend, c->pend_len);
    free(c->pend);
    c->pend = NULL;
    c->pend_len = 0;
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  c->reader = t;
  if (tmo > 0) uv_timer_start(&c->rtimer, on_rtimer, (uint64_t)(tmo * 1000), 0);
  set_reading(c, true);
  sl_wait_set_cleanup(t, reader_cleanup, c);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* conn:close() -> true: closes the connection without answering. Also __gc. */
static int conn_close(lua_State *L) {
  ConnBox *box = luaL_checkudata(L, 1, CONN_MT);
  if (box->c != NULL) conn_kill(box->c, "cancelled", "the connection was closed");
  box->c = NULL;
  lua_pushboolean(L, 1);
  return 1;
}

static int box_gc(lua_State *L) { return conn_close(L); }

/* ---------------------------------------------------------------- Lua API: server */

static Server *srv_check(lua_State *L) {
  SrvBox *box = luaL_checkudata(L, 1, SRV_MT);
  if (box->s == NULL) luaL_error(L, "attempt to use a closed sandlot.http.server");
  return box->s;
}

static void on_listener_closed(uv_handle_t *h) {
  Server *s = h->data;
  s->live--;
  sl_host_handle_done(s->host);
  server_maybe_free(s);
}

static void srv_release(lua_State *L, SrvBox *box) {
  Server *s = box->s;
  if (s != NULL) {
    box->s = NULL;
    s->box = NULL;
    s->released = true;
    luaL_unref(L, LUA_REGISTRYINDEX, s->dispatch_ref);
    s->dispatch_ref = LUA_NOREF;
    s->live++;                               /* held while the conns go */
    while (s->conns != NULL) conn_kill(s->conns, "cancelled", "the server was closed");
    uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
    s->live--;
    server_maybe_free(s);
  }
}

/* srv:close() -> true: closes the listener and every connection. Also __gc; idempotent. */
static int srv_close(lua_State *L) {
  srv_release(L, luaL_checkudata(L, 1, SRV_MT));
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:port() -> the port it listens on */
static int srv_port(lua_State *L) {
  Server *s = srv_check(L);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
  int port = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                      : ((struct sockaddr_in *)&ss)->sin_port;
  lua_pushinteger(L, ntohs((uint16_t)port));
  return 1;
}

/* srv:stats() -> {connections = open now, accepted = total, requests = total} */
static int srv_stats(lua_State *L) {
  Server *s = srv_check(L);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, s->nconns);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, (lua_Integer)s->accepted);
  lua_setfield(L, -2, "accepted");
  lua_pushinteger(L, (lua_Integer)s->requests);
  lua_setfield(L, -2, "requests");
  return 1;
}

static lua_Integer opt_int(lua_State *L, const char *field, lua_Integer dflt, lua_Integer lo,
                           lua_Integer hi) {
  lua_getfield(L, 1, field);
  lua_Integer v = luaL_optinteger(L, -1, dflt);
  lua_pop(L, 1);
  if (v < lo || v > hi) luaL_error(L, "sandlot.http.serve: opts.%s out of range", field);
  return v;
}

/* http.serve({host = ip, port = n, max_head = bytes, max_body = bytes, idle_timeout = s,
 * max_conns = n, tls_cert = path, tls_key = path, tls_client_ca = path | PEM text}, dispatch)
 * -> server | nil, err. dispatch(conn, req) runs in a task per request, req = {method, path,
 * query, headers, body, keep_alive, http_version, tls_client_cn (a client certificate that
 * verified against tls_client_ca: its subject's CN), tls_client_error (one that did not: why)}. */
int sl_http_serve(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_pop(L, 1);                             /* opts keeps it alive */
  lua_Integer port = opt_int(L, "port", 0, 0, 65535);
  lua_Integer max_head = opt_int(L, "max_head", 64 << 10, 256, 1 << 20);
  lua_Integer max_body = opt_int(L, "max_body", (lua_Integer)512 << 20, 0,
                                 (lua_Integer)4 << 30);
  lua_Integer max_conns = opt_int(L, "max_conns", 256, 1, 65536);
  lua_getfield(L, 1, "idle_timeout");
  double idle = luaL_optnumber(L, -1, 30);
  lua_pop(L, 1);
  luaL_argcheck(L, idle > 0, 1, "idle_timeout must be > 0");
  lua_getfield(L, 1, "tls_cert");
  lua_getfield(L, 1, "tls_key");
  lua_getfield(L, 1, "tls_client_ca");
  const char *cert = luaL_optstring(L, -3, NULL), *key = luaL_optstring(L, -2, NULL);
  const char *client_ca = luaL_optstring(L, -1, NULL);
  lua_pop(L, 3);
  luaL_argcheck(L, (cert == NULL) == (key == NULL), 1, "give tls_cert and tls_key together");
  luaL_argcheck(L, client_ca == NULL || cert != NULL, 1, "tls_client_ca needs tls_cert");
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  struct sockaddr_storage addr;
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr) != 0)
    return sl_fail(L, "invalid_input", "sandlot.http.serve: host %s is not an IP address", host);
  SlHost *h = sl_host(L);
  SrvBox *box = lua_newuserdatauv(L, sizeof(*box), 0);      /* [opts, fn, box] */
  box->s = NULL;
  luaL_setmetatable(L, SRV_MT);
  SlError e;
  SlTlsCtx *tls = cert != NULL ? sl_tls_server_ctx(cert, key, client_ca, &e) : NULL;
  if (cert != NULL && tls == NULL) return sl_push_error(L, &e);
  Server *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    sl_tls_ctx_free(tls);
    return sl_fail(L, "internal", "out of memory");
  }
  s->host = h;
  s->tls = tls;
  s->max_head = (size_t)max_head;
  s->max_body = (size_t)max_body;
  s->max_conns = (int)max_conns;
  s->idle_ms = (uint64_t)(idle * 1e3 + 0.5);
  uv_tcp_init(h->loop, &s->tcp);
  s->tcp.data = s;
  s->live = 1;
  sl_host_handle_opened(h);
  lua_pushvalue(L, 2);
  s->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  box->s = s;
  s->box = box;
  int rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->tcp, 128, on_connection);
  if (rc != 0) {
    srv_release(L, box);
    return sl_fail(L, rc == UV_EADDRINUSE ? "already_exists" : sl_code_for_errno(-rc),
                   "sandlot.http.serve: listen on %s:%d: %s", host, (int)port, uv_strerror(rc));
  }
  return 1;
}

static int srv_tostring(lua_State *L) {
  SrvBox *box = luaL_checkudata(L, 1, SRV_MT);
  lua_pushstring(L, box->s == NULL ? "sandlot.http.server (closed)" : "sandlot.http.server");
  return 1;
}

static const luaL_Reg srv_methods[] = {
  {"close", srv_close}, {"port", srv_port}, {"stats", srv_stats}, {NULL, NULL}
};
static const luaL_Reg srv_meta[] = {
  {"__index", NULL}, {"__gc", srv_close}, {"__close", srv_close},
  {"__tostring", srv_tostring}, {NULL, NULL}
};
static const luaL_Reg conn_methods[] = {
  {"write", conn_write}, {"finish", conn_finish}, {"close", conn_close},
  {"upgrade", conn_upgrade}, {"read", conn_read}, {NULL, NULL}
};
static const luaL_Reg conn_meta[] = {
  {"__index", NULL}, {"__gc", box_gc}, {NULL, NULL}
};

void sl_http_serve_open(lua_State *L) {
  if (luaL_newmetatable(L, SRV_MT)) {
    luaL_setfuncs(L, srv_meta, 0);
    luaL_newlib(L, srv_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, CONN_MT)) {
    luaL_setfuncs(L, conn_meta, 0);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
