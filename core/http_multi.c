/* http_multi.c: libcurl's multi_socket interface on the host's libuv loop (one uv_poll per curl
 * socket, one uv_timer for curl's timeout), one multi handle per host (SlHost.http) holding the
 * connection cache, the pool of idle transfers (http_fetch.c), transfer teardown, and the curl
 * callbacks.
 * Curl callbacks never touch Lua: they mark transfers, and sl_http_after turns the marks into
 * wake-ups once curl has returned. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

/* ---------------------------------------------------------------- the multi handle */

static void sock_closed(uv_handle_t *handle) {
  Sock *k = handle->data;
  sl_host_handle_done(k->host);
  free(k);
}

static FdSlot *fd_slot(Multi *m, curl_socket_t fd, bool grow) {
  if (fd < 0) return NULL;
  if (fd >= m->nfds) {
    if (!grow) return NULL;
    int n = m->nfds > 0 ? m->nfds : 64;
    while (n <= fd) n *= 2;
    FdSlot *nf = realloc(m->fds, (size_t)n * sizeof(*nf));
    if (nf == NULL) return NULL;
    memset(nf + m->nfds, 0, (size_t)(n - m->nfds) * sizeof(*nf));
    m->fds = nf;
    m->nfds = n;
  }
  return &m->fds[fd];
}

/* Closes k's poll (stopped by uv_close) and forgets it; the socket itself stays open. */
static void sock_drop(Multi *m, Sock *k) {
  FdSlot *slot = fd_slot(m, k->fd, false);
  if (slot != NULL && slot->k == k) slot->k = NULL;
  if (uv_is_closing((uv_handle_t *)&k->poll)) return;
  if (k->watched) m->sockets--;
  k->watched = false;
  uv_close((uv_handle_t *)&k->poll, sock_closed);
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  Sock *k = poll->data;
  Multi *m = k->m;
  int flags = 0;
  if (!k->watched) {
    /* an idle connection spoke (the server closed it, most likely): stop listening, and let
     * curl find out when it next picks the connection (it checks before reuse) */
    uv_poll_stop(poll);
    k->events = 0;
    return;
  }
  if (status < 0) {
    /* libuv stopped the handle (POLLERR, e.g. a reset): restart it and let curl's own
     * recv/send find the real error ("Connection reset by peer") */
    uv_poll_start(poll, k->events, on_poll);
    flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running;
  m->depth++;
  curl_multi_socket_action(m->cm, k->fd, flags, &running);
  m->depth--;
  sl_http_after(m);
}

/* CURLMOPT_SOCKETFUNCTION: mirror what curl wants to watch on a uv_poll of our own. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  Multi *m = userp;
  Sock *k = socketp;
  FdSlot *slot = fd_slot(m, fd, what != CURL_POLL_REMOVE);
  if (k != NULL && uv_is_closing((uv_handle_t *)&k->poll)) {   /* dropped: its fd was closed */
    curl_multi_assign(m->cm, fd, NULL);
    k = NULL;
  }
  if (k == NULL && slot != NULL) k = slot->k;
  if (what == CURL_POLL_REMOVE) {
    if (k == NULL) return 0;
    curl_multi_assign(m->cm, fd, NULL);
    if (slot == NULL || !slot->conn) {     /* no close will be reported for it: go now */
      sock_drop(m, k);
      return 0;
    }
    k->watched = false;                    /* kept for the connection's next transfer */
    m->sockets--;
    if (k->events & UV_WRITABLE) {         /* an idle socket is always writable */
      uv_poll_stop(&k->poll);
      k->events = 0;
    }
    uv_unref((uv_handle_t *)&k->poll);     /* an idle connection keeps no loop alive */
    return 0;
  }
  if (slot == NULL) return -1;
  if (k == NULL) {
    k = calloc(1, sizeof(*k));
    if (k == NULL) return -1;
    if (uv_poll_init_socket(m->host->loop, &k->poll, fd) != 0) {
      free(k);
      return -1;
    }
    k->fd = fd;
    k->m = m;
    k->host = m->host;
    k->poll.data = k;
    sl_host_handle_opened(m->host);
    slot->k = k;
  }
  if (!k->watched) {
    k->watched = true;
    uv_ref((uv_handle_t *)&k->poll);
    curl_multi_assign(m->cm, fd, k);
    m->sockets++;
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  if (events != k->events || !uv_is_active((uv_handle_t *)&k->poll)) {
    k->events = events;
    uv_poll_start(&k->poll, events, on_poll);
  }
  return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION (every easy handle): a connection's socket, marked so that its
 * Sock may outlive curl's interest (its close comes through sl_http_close_cb). */
curl_socket_t sl_http_open_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *addr) {
  Multi *m = ud;
  (void)purpose;
  curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
  if (fd == CURL_SOCKET_BAD) return fd;
  FdSlot *slot = fd_slot(m, fd, true);
  if (slot == NULL) {
    close(fd);
    return CURL_SOCKET_BAD;
  }
  if (slot->k != NULL) sock_drop(m, slot->k);   /* a stale one of a reused number */
  slot->conn = true;
  return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the Sock goes before the socket does. */
int sl_http_close_cb(void *ud, curl_socket_t fd) {
  Multi *m = ud;
  FdSlot *slot = fd_slot(m, fd, false);
  if (slot != NULL) {
    if (slot->k != NULL) sock_drop(m, slot->k);
    slot->conn = false;
  }
  return close(fd);
}

static void on_timeout(uv_timer_t *timer) {
  Multi *m = timer->data;
  int running;
  m->depth++;
  curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  m->depth--;
  sl_http_after(m);
}

/* CURLMOPT_TIMERFUNCTION: curl must not be called from here; the uv timer calls it later. */
static int timer_cb(CURLM *cm, long ms, void *userp) {
  (void)cm;
  Multi *m = userp;
  if (ms < 0) uv_timer_stop(&m->timer);
  else uv_timer_start(&m->timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

static void multi_closed(uv_handle_t *handle) {
  Multi *m = handle->data;
  sl_host_handle_done(m->host);
  free(m);
  curl_global_cleanup();
}

static void http_teardown(SlHost *h, void *data, int phase);

/* The host's curl multi handle (made on first use), the data of the module's teardown hook */
Multi *sl_http_multi_of(SlHost *h) {
  Multi **slot = sl_host_hook_data(h, http_teardown);
  return slot != NULL ? *slot : NULL;
}

Multi *sl_http_multi(lua_State *L) {
  SlHost *h = sl_host(L);
  Multi **slot = sl_host_hook_data(h, http_teardown);
  if (slot != NULL && *slot != NULL) return *slot;
  if (h->closing) luaL_error(L, "sandlot: the host is closing");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    luaL_error(L, "sandlot.http: libcurl failed to initialise");
  Multi *m = calloc(1, sizeof(*m));
  if (m == NULL || (m->cm = curl_multi_init()) == NULL) {
    free(m);
    curl_global_cleanup();
    luaL_error(L, "sandlot.http: out of memory");
  }
  m->host = h;
  if (slot == NULL && ((slot = calloc(1, sizeof(*slot))) == NULL
                       || !sl_host_on_close(h, http_teardown, slot))) {
    free(slot);
    curl_multi_cleanup(m->cm);
    free(m);
    curl_global_cleanup();
    luaL_error(L, "sandlot.http: out of memory");
  }
  uv_timer_init(h->loop, &m->timer);
  m->timer.data = m;
  sl_host_handle_opened(h);
  curl_multi_setopt(m->cm, CURLMOPT_SOCKETFUNCTION, sock_cb);
  curl_multi_setopt(m->cm, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->cm, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(m->cm, CURLMOPT_TIMERDATA, m);
  curl_multi_setopt(m->cm, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(m->cm, CURLMOPT_MAXCONNECTS, 64L);
  *slot = m;
  return m;
}

/* ---------------------------------------------------------------- transfers */

static void xfer_mark(Xfer *x) {
  Multi *m = x->m;
  if (x->marked || m == NULL) return;
  x->marked = true;
  x->mark_next = NULL;
  if (m->mark_tail != NULL) m->mark_tail->mark_next = x;
  else m->mark_head = x;
  m->mark_tail = x;
}

void sl_http_unmark(Xfer *x) {
  Multi *m = x->m;
  if (!x->marked || m == NULL) return;
  Xfer **pp = &m->mark_head, *prev = NULL;
  while (*pp != NULL && *pp != x) {
    prev = *pp;
    pp = &(*pp)->mark_next;
  }
  if (*pp == x) {
    *pp = x->mark_next;
    if (m->mark_tail == x) m->mark_tail = prev;
  }
  x->marked = false;
}

/* Takes the transfer out of the multi (never from inside a curl callback). */
void sl_http_detach(Xfer *x, CURLcode rc) {
  if (x->added && x->m != NULL) curl_multi_remove_handle(x->m->cm, x->easy);
  x->added = false;
  if (!x->done) {
    x->done = true;
    x->result = rc;
  }
  if (x->fd >= 0) {
    close(x->fd);
    x->fd = -1;
  }
  xfer_mark(x);
}

void sl_http_free(Xfer *x) {
  sl_http_detach(x, CURLE_ABORTED_BY_CALLBACK);
  sl_http_unmark(x);
  Multi *m = x->m;
  if (m != NULL) {
    if (x->prev != NULL) x->prev->next = x->next;
    else m->live = x->next;
    if (x->next != NULL) x->next->prev = x->prev;
    x->prev = x->next = NULL;
  }
  /* The connection stays in the multi's cache either way; the easy handle keeps the options
   * of its shape for the next request of that shape (http_fetch.c). */
  if (!sl_http_recycle(x)) sl_http_release(x);
}

static const char *code_for(Xfer *x, bool *retryable) {
  *retryable = false;
  if (x->over_cap) return "bad_response";
  switch (x->result) {
  case CURLE_OPERATION_TIMEDOUT:
    *retryable = true;
    return "timeout";
  case CURLE_COULDNT_RESOLVE_PROXY: case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE: case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR: case CURLE_AGAIN:
    *retryable = true;
    return "unavailable";
  case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    return "unavailable";
  case CURLE_TOO_MANY_REDIRECTS: case CURLE_FILESIZE_EXCEEDED:
  case CURLE_WEIRD_SERVER_REPLY: case CURLE_BAD_CONTENT_ENCODING:
    return "bad_response";
  case CURLE_ABORTED_BY_CALLBACK:
    return "cancelled";
  case CURLE_URL_MALFORMAT: case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_BAD_FUNCTION_ARGUMENT:
    return "invalid_input";
  case CURLE_READ_ERROR:
    return "io_error";
  case CURLE_OUT_OF_MEMORY:
    return "internal";
  default:
    return "io_error";
  }
}

/* Pushes nil, err for a failed transfer: code, message, reason (curl's words), retryable. */
int sl_http_push_error(lua_State *L, Xfer *x) {
  bool retryable;
  const char *code = code_for(x, &retryable);
  char msg[CURL_ERROR_SIZE + 128];
  if (x->over_cap)
    snprintf(msg, sizeof(msg), "response body exceeds max_body (%zu bytes)", x->max_body);
  else if (x->result == CURLE_ABORTED_BY_CALLBACK)
    snprintf(msg, sizeof(msg), "the transfer was aborted");
  else
    snprintf(msg, sizeof(msg), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result));
  if (x->result == CURLE_FILESIZE_EXCEEDED)
    snprintf(msg, sizeof(msg), "response body exceeds max_body (%zu bytes)", x->max_body);
  luaL_checkstack(L, 4, NULL);
  lua_pushnil(L);
  sl_new_error(L, code, msg);
  lua_pushstring(L, curl_easy_strerror(x->result));
  lua_setfield(L, -2, "reason");
  lua_pushinteger(L, (lua_Integer)x->result);
  lua_setfield(L, -2, "curl_code");
  lua_pushboolean(L, retryable);
  lua_setfield(L, -2, "retryable");
  return 2;
}

bool sl_http_failed(Xfer *x) { return x->done && (x->result != CURLE_OK || x->over_cap); }

void sl_http_push_head(lua_State *L, Xfer *x) {
  long status = 0, version = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, x->hbuf != NULL ? x->hbuf : "", x->hlen);
  lua_setfield(L, -2, "headers_raw");
  lua_pushstring(L, version == CURL_HTTP_VERSION_2_0 ? "2" : version == CURL_HTTP_VERSION_3 ? "3"
                    : version == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
  lua_setfield(L, -2, "http_version");
}

void sl_http_push_result(lua_State *L, Xfer *x) {
  sl_http_push_head(L, x);
  if (!x->stream) {
    lua_pushlstring(L, x->body != NULL ? x->body : "", x->blen);
    lua_setfield(L, -2, "body");
  }
  lua_pushinteger(L, (lua_Integer)x->body_total);
  lua_setfield(L, -2, "body_bytes");
  char *url = NULL;
  long redirects = 0, connects = 0;
  double total = 0;
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_COUNT, &redirects);
  curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &total);
  lua_pushstring(L, url != NULL ? url : "");
  lua_setfield(L, -2, "effective_url");
  lua_pushinteger(L, redirects);
  lua_setfield(L, -2, "redirects");
  lua_pushinteger(L, connects);
  lua_setfield(L, -2, "connects");
  lua_pushnumber(L, total);
  lua_setfield(L, -2, "duration");
}

/* Pops the next queued chunk onto L; unpauses the download once the queue has drained. */
void sl_http_pop_chunk(lua_State *L, Xfer *x) {
  SlChunk *c = sl_queue_pop(&x->q);
  lua_pushlstring(L, c->data, c->len);
  free(c);
}

void sl_http_unpause(Xfer *x) {
  if (!x->added || x->m == NULL) return;
  x->m->depth++;
  curl_easy_pause(x->easy, (x->recv_paused ? CURLPAUSE_RECV : 0) |
                           (x->send_paused ? CURLPAUSE_SEND : 0));
  x->m->depth--;
}

void sl_http_resume_recv(Xfer *x) {
  if (x->recv_paused && sl_queue_drained(&x->q)) {
    x->recv_paused = false;
    sl_http_unpause(x);
  }
}

/* Wakes whoever waits on x if what they wait for has happened. Runs outside curl. */
static void xfer_notify(Xfer *x) {
  SlTask *t = x->reader;
  if (t != NULL) {
    lua_State *L = t->co;
    luaL_checkstack(L, 12, NULL);
    int n = -1;
    switch (x->wait_kind) {
    case WAIT_HEAD:
      if (sl_http_failed(x)) n = sl_http_push_error(L, x);
      else if (x->head_done || x->done) {
        sl_http_push_head(L, x);
        n = 1;
      }
      break;
    case WAIT_READ:
      if (x->q.head != NULL) {
        sl_http_pop_chunk(L, x);
        n = 1;
      } else if (sl_http_failed(x)) {
        n = sl_http_push_error(L, x);
      } else if (x->done) {
        lua_pushnil(L);
        n = 1;
      }
      break;
    case WAIT_DONE:
      if (sl_http_failed(x)) n = sl_http_push_error(L, x);
      else if (x->done) {
        sl_http_push_result(L, x);
        n = 1;
      }
      break;
    case WAIT_FETCH:
      if (sl_http_failed(x)) n = sl_http_push_error(L, x);
      else if (x->done) n = sl_http_push_response(L, x);
      break;
    }
    if (n >= 0) {
      x->reader = NULL;
      x->wait_kind = WAIT_NONE;
      sl_wake(t, n);
      if (x->boxless) {                    /* http.fetch: nothing else refers to x */
        sl_http_free(x);
        return;
      }
    }
  }
  t = x->writer;
  if (t != NULL && (x->pend == NULL || x->done)) {
    x->writer = NULL;
    luaL_checkstack(t->co, 3, NULL);
    if (x->done && x->pend != NULL) {
      if (sl_http_failed(x)) {
        sl_wake(t, sl_http_push_error(t->co, x));
        return;
      }
      lua_pushboolean(t->co, 0);          /* the server answered before taking all the body */
    } else {
      lua_pushboolean(t->co, 1);
    }
    sl_wake(t, 1);
  }
}

/* After curl returned: detach finished transfers, then deliver every pending wake-up. */
void sl_http_after(Multi *m) {
  if (m->depth > 0) return;
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->cm, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    Xfer *x = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    CURLcode rc = msg->data.result;
    if (x != NULL) {
      x->completed = true;
      sl_http_detach(x, rc);
    }
  }
  Xfer *x;
  while ((x = m->mark_head) != NULL) {
    m->mark_head = x->mark_next;
    if (m->mark_head == NULL) m->mark_tail = NULL;
    x->marked = false;
    xfer_notify(x);
  }
}

/* ---------------------------------------------------------------- curl callbacks */

static bool buf_append(char **buf, size_t *len, size_t *alloc, const char *data, size_t n) {
  if (*len + n > *alloc) {
    size_t want = *alloc ? *alloc : 512;    /* small first: most headers and bodies fit */
    while (want < *len + n) want *= 2;
    char *nb = realloc(*buf, want);
    if (nb == NULL) return false;
    *buf = nb;
    *alloc = want;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  return true;
}

/* Keeps the header lines of the latest response only (redirects and 1xx start over). */
size_t sl_http_header_cb(char *data, size_t size, size_t n, void *ud) {
  Xfer *x = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    x->hlen = 0;
    x->cur_location = false;
    const char *sp = memchr(data, ' ', len);
    x->cur_status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
  } else if (len <= 2 && (data[0] == '\r' || data[0] == '\n')) {
    bool redirect = x->follow && x->cur_location && x->cur_status >= 300 && x->cur_status < 400;
    if (x->cur_status >= 200 && !redirect && !x->head_done) {
      x->head_done = true;
      xfer_mark(x);
    }
    return len;
  } else if (len >= 9 && strncasecmp(data, "location:", 9) == 0) {
    x->cur_location = true;
  }
  if (x->hlen + len > HEADERS_MAX) return 0;
  if (!buf_append(&x->hbuf, &x->hlen, &x->halloc, data, len)) return 0;
  return len;
}

size_t sl_http_write_cb(char *data, size_t size, size_t n, void *ud) {
  Xfer *x = ud;
  size_t len = size * n;
  if (!x->stream) {
    if (x->max_body > 0 && x->blen + len > x->max_body) {
      x->over_cap = true;
      return 0;                            /* CURLE_WRITE_ERROR: reported as over max_body */
    }
    if (!buf_append(&x->body, &x->blen, &x->balloc, data, len)) return 0;
    x->body_total += len;
    return len;
  }
  if (sl_queue_full(&x->q)) {              /* curl keeps the data and offers it again */
    x->recv_paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  if (!sl_queue_push(&x->q, 0, data, len)) return 0;
  x->body_total += len;
  if (!x->head_done) x->head_done = true;
  xfer_mark(x);
  return len;
}

size_t sl_http_read_cb(char *out, size_t size, size_t n, void *ud) {
  Xfer *x = ud;
  size_t room = size * n;
  if (x->body_kind == BODY_FILE) {
    for (;;) {
      ssize_t r = read(x->fd, out, room);
      if (r >= 0) return (size_t)r;
      if (errno != EINTR) return CURL_READFUNC_ABORT;
    }
  }
  if (x->pend != NULL) {                   /* BODY_PRODUCER */
    size_t k = x->pend_len - x->pend_off;
    if (k > room) k = room;
    memcpy(out, x->pend + x->pend_off, k);
    x->pend_off += k;
    if (x->pend_off == x->pend_len) {
      x->pend = NULL;
      xfer_mark(x);                        /* the writer may send the next chunk */
    }
    return k;
  }
  if (x->pend_eof) return 0;
  x->send_paused = true;
  return CURL_READFUNC_PAUSE;
}

/* Host teardown hook (loop.c): at close every request handle has been collected; abort
 * whatever is left, let curl close its cached connections (their polls close), then close the
 * timer. The slot holding the multi handle goes once the loop is drained. */
static void http_teardown(SlHost *h, void *data, int phase) {
  Multi **slot = data;
  (void)h;
  if (phase == SL_TEARDOWN_FREE) free(slot);
  if (phase != SL_TEARDOWN_CLOSE || *slot == NULL) return;
  Multi *m = *slot;
  *slot = NULL;
  for (Xfer *x = m->live, *next; x != NULL; x = next) {
    next = x->next;
    sl_http_detach(x, CURLE_ABORTED_BY_CALLBACK);
    if (x->reader != NULL) x->reader->cleanup = NULL;
    if (x->writer != NULL) x->writer->cleanup = NULL;
    x->reader = x->writer = NULL;
    x->marked = false;
    x->m = NULL;
    if (x->boxless) sl_http_release(x);    /* no handle's __gc will come for it */
  }
  m->live = NULL;
  m->mark_head = m->mark_tail = NULL;
  while (m->pooled > 0) sl_http_release(m->pool[--m->pooled]);
  m->depth++;
  curl_multi_cleanup(m->cm);               /* closes the cached connections (sl_http_close_cb) */
  for (int fd = 0; fd < m->nfds; fd++)
    if (m->fds[fd].k != NULL) sock_drop(m, m->fds[fd].k);
  free(m->fds);
  m->fds = NULL;
  m->nfds = 0;
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, multi_closed);
}

