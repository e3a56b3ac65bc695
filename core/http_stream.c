/* http_stream.c: the Lua face of an upgraded stream (sandlot.http.stream: read, write,
 * shutdown, head, info, close) and the write path http_upgrade.c shares: bytes go out through
 * TLS when the stream has it; reads are served from the queue between water marks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_upgrade.h"

static Up *up_check(lua_State *L, int idx) {
  UpBox *box = luaL_checkudata(L, idx, UP_MT);
  if (box->u == NULL) luaL_error(L, "attempt to use a closed sandlot.http.stream");
  return box->u;
}

void sl_upgrade_push_err(lua_State *L, const Up *u, const SlError *e) {
  luaL_checkstack(L, 4, NULL);
  lua_pushnil(L);
  sl_new_error(L, e->code, e->message);
  const char *why = u->tls != NULL ? sl_tls_reason(u->tls) : NULL;
  if (why != NULL) {                       /* what OpenSSL said, for callers to branch on */
    lua_pushstring(L, why);
    lua_setfield(L, -2, "tls_reason");
  }
  if (u->status > 0) {
    lua_pushinteger(L, u->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, u->excerpt != NULL ? u->excerpt : "", u->excerpt_len);
    lua_setfield(L, -2, "body");
  }
}

/* Pushes up to max bytes from the queue as one string. q.bytes counts what the queued chunks
 * hold in memory (the water marks), q_off what of the first one was already read. */
static void push_queued(lua_State *L, Up *u, size_t max) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t got = 0;
  while (u->q.head != NULL && got < max) {
    SlChunk *c = u->q.head;
    size_t k = c->len - u->q_off;
    if (k > max - got) k = max - got;
    luaL_addlstring(&b, c->data + u->q_off, k);
    got += k;
    u->q_off += k;
    if (u->q_off == c->len) {
      free(sl_queue_pop(&u->q));
      u->q_off = 0;
    }
  }
  luaL_pushresult(&b);
}

/* Answers a waiting reader if there is news: data, the end, or a failure (after the data). */
void sl_upgrade_notify_reader(Up *u) {
  SlTask *t = u->reader;
  if (t == NULL) return;
  lua_State *L = t->co;
  luaL_checkstack(L, 4, NULL);
  int n;
  if (u->q.head != NULL) {
    push_queued(L, u, u->read_max);
    n = 1;
  } else if (u->failed) {
    sl_upgrade_push_err(L, u, &u->err);
    n = 2;
  } else if (u->eof) {
    lua_pushnil(L);
    n = 1;
  } else {
    return;
  }
  u->reader = NULL;
  uv_timer_stop(&u->rtimer);
  if (u->rx_paused && sl_queue_drained(&u->q)) {
    u->rx_paused = false;
    sl_upgrade_set_reading(u, true);
  }
  sl_wake(t, n);
}

/* Queues len bytes on the connection, through TLS when there is TLS (data NULL: only what TLS
 * has waiting, such as handshake records). NULL with *rc = 0: nothing to send. */
static void on_write(uv_write_t *req, int status);

UpWrite *sl_upgrade_send(Up *u, const char *data, size_t len, int *rc) {
  *rc = 0;
  if (u->tls != NULL) {
    SlError e;
    if (data != NULL && !sl_tls_output(u->tls, data, len, &e)) {
      *rc = UV_EPROTO;
      return NULL;
    }
    len = sl_tls_pending(u->tls);
  }
  if (len == 0) return NULL;
  UpWrite *w = malloc(sizeof(*w) + len);
  if (w == NULL) {
    *rc = UV_ENOMEM;
    return NULL;
  }
  w->u = u;
  w->waited = false;
  if (u->tls != NULL) len = sl_tls_take(u->tls, w->data, len);
  else memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  *rc = uv_write(&w->req, &u->conn.stream, &b, 1, on_write);
  if (*rc != 0) {
    free(w);
    return NULL;
  }
  u->live++;
  return w;
}

void sl_upgrade_flush(Up *u) {
  int rc;
  if (u->conn_open && sl_upgrade_send(u, NULL, 0, &rc) == NULL && rc != 0) u->write_failed = true;
}

static void reader_cleanup(SlTask *t, void *data) {
  (void)t;
  Up *u = data;
  u->reader = NULL;
  uv_timer_stop(&u->rtimer);
}

static int results_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* s:read([max [, timeout]]) -> data | nil at the end | nil, err   (max: bytes at most,
 * default 64 KiB; timeout: seconds this read may wait, default io_timeout) */
static int up_read(lua_State *L) {
  Up *u = up_check(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, READ_MAX_DEFAULT);
  luaL_argcheck(L, max > 0, 2, "must be > 0");
  lua_Number tmo = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, tmo >= 0, 3, "must be >= 0");
  lua_settop(L, 1);
  if (u->reader != NULL) return luaL_error(L, "sandlot.http.stream: another task is reading");
  if (u->q.head != NULL) {
    push_queued(L, u, (size_t)max);
    if (u->rx_paused && sl_queue_drained(&u->q)) {
      u->rx_paused = false;
      sl_upgrade_set_reading(u, true);
    }
    return 1;
  }
  if (u->failed) {
    sl_upgrade_push_err(L, u, &u->err);
    return 2;
  }
  if (u->eof) return 0;
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  u->reader = t;
  u->read_max = (size_t)max;
  u->read_ms = tmo > 0 ? (uint64_t)(tmo * 1000 + 0.5) : u->io_ms;
  if (u->read_ms == 0 && tmo > 0) u->read_ms = 1;
  if (u->read_ms > 0) uv_timer_start(&u->rtimer, sl_upgrade_on_rtimer, u->read_ms, 0);
  sl_wait_set_cleanup(t, reader_cleanup, u);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

static void on_write(uv_write_t *req, int status) {
  UpWrite *w = (UpWrite *)req;
  Up *u = w->u;
  u->live--;
  bool waited = w->waited;
  if (u->wcur == w) u->wcur = NULL;
  free(w);
  if (status < 0) u->write_failed = true;
  if (status < 0 && (u->stage == UP_TLS || u->stage == UP_HEAD))
    sl_upgrade_fail(u, "unavailable", "sending the request: %s", uv_strerror(status));
  SlTask *t = waited ? u->writer : NULL;
  if (t != NULL) {
    u->writer = NULL;
    uv_timer_stop(&u->wtimer);
    if (status == 0) {
      lua_pushboolean(t->co, 1);
      sl_wake(t, 1);
    } else {
      SlError e;
      sl_err_set(&e, status == UV_ECANCELED ? "cancelled" : "unavailable", "write: %s",
                 uv_strerror(status));
      sl_upgrade_push_err(t->co, u, &e);
      sl_wake(t, 2);
    }
  }
  sl_upgrade_maybe_free(u);
}

static void on_wtimer(uv_timer_t *timer) {
  Up *u = timer->data;
  SlTask *t = u->writer;
  if (t == NULL) return;
  u->writer = NULL;
  if (u->wcur != NULL) u->wcur->waited = false;   /* it completes on its own */
  char s[32];
  snprintf(s, sizeof(s), "%.3gs", (double)u->io_ms / 1e3);
  SlError e;
  sl_err_set(&e, "timeout", "the peer took no data within %s", s);
  sl_upgrade_push_err(t->co, u, &e);
  sl_wake(t, 2);
}

static void writer_cleanup(SlTask *t, void *data) {
  (void)t;
  Up *u = data;
  u->writer = NULL;                        /* the write finishes (or fails) on its own */
  if (u->wcur != NULL) u->wcur->waited = false;
  uv_timer_stop(&u->wtimer);
}

/* s:write(data) -> true | nil, err   (waits until the kernel took the data) */
static int up_write(lua_State *L) {
  Up *u = up_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  if (u->shut) return luaL_error(L, "sandlot.http.stream: write() after shutdown()");
  if (u->writer != NULL) return luaL_error(L, "sandlot.http.stream: another task is writing");
  if (!u->conn_open || u->write_failed)
    return sl_fail(L, "unavailable", "the stream is closed for writing");
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  int rc;
  UpWrite *w = sl_upgrade_send(u, data, len, &rc);
  if (w == NULL) return sl_fail(L, "unavailable", "write: %s", uv_strerror(rc));
  w->waited = true;
  u->writer = t;
  u->wcur = w;
  if (u->io_ms > 0) uv_timer_start(&u->wtimer, on_wtimer, u->io_ms, 0);
  sl_wait_set_cleanup(t, writer_cleanup, u);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  Up *u = req->data;
  u->live--;
  sl_upgrade_maybe_free(u);
}

/* s:shutdown() -> true | nil, err: no more writes; the peer reads EOF after what was sent */
static int up_shutdown(lua_State *L) {
  Up *u = up_check(L, 1);
  if (!u->shut) {
    if (!u->conn_open) return sl_fail(L, "unavailable", "the stream is closed");
    if (u->tls != NULL) {
      sl_tls_close_notify(u->tls);
      sl_upgrade_flush(u);
    }
    u->sreq.data = u;
    int rc = uv_shutdown(&u->sreq, &u->conn.stream, on_shutdown);
    if (rc != 0) return sl_fail(L, "unavailable", "shutdown: %s", uv_strerror(rc));
    u->shut = true;
    u->live++;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* s:head() -> {status, http_version, headers_raw} of the answer that opened the stream */
static int up_head(lua_State *L) {
  Up *u = up_check(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, u->parsed.status);
  lua_setfield(L, -2, "status");
  lua_pushstring(L, u->parsed.minor == 0 ? "1.0" : "1.1");
  lua_setfield(L, -2, "http_version");
  lua_pushlstring(L, u->head + u->parsed.fields_off, u->parsed.fields_len);
  lua_setfield(L, -2, "headers_raw");
  return 1;
}

/* s:info() -> {queued = bytes, paused = bool (reading stopped at the high mark), eof = bool} */
static int up_info(lua_State *L) {
  Up *u = up_check(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)u->q.bytes);
  lua_setfield(L, -2, "queued");
  lua_pushboolean(L, u->rx_paused);
  lua_setfield(L, -2, "paused");
  lua_pushboolean(L, u->eof);
  lua_setfield(L, -2, "eof");
  return 1;
}

/* s:close() -> true. Also __close and __gc: idempotent, never yields. */
static int up_close(lua_State *L) {
  UpBox *box = luaL_checkudata(L, 1, UP_MT);
  if (box->u != NULL) sl_upgrade_release(box->u, "the stream was closed");
  lua_pushboolean(L, 1);
  return 1;
}

static int up_tostring(lua_State *L) {
  UpBox *box = luaL_checkudata(L, 1, UP_MT);
  lua_pushstring(L, box->u == NULL ? "sandlot.http.stream (closed)" : "sandlot.http.stream");
  return 1;
}

static const luaL_Reg up_methods[] = {
  {"read", up_read}, {"write", up_write}, {"shutdown", up_shutdown}, {"head", up_head},
  {"info", up_info}, {"close", up_close}, {NULL, NULL}
};

static const luaL_Reg up_meta[] = {
  {"__index", NULL}, {"__gc", up_close}, {"__close", up_close},
  {"__tostring", up_tostring}, {NULL, NULL}
};

void sl_http_upgrade_open(lua_State *L) {
  if (luaL_newmetatable(L, UP_MT)) {
    luaL_setfuncs(L, up_meta, 0);
    luaL_newlib(L, up_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
