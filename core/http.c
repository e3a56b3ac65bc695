/* http.c: sandlot.core.http: HTTP transfers on libcurl's multi_socket interface, driven by the
 * host's libuv loop (one uv_poll per curl socket, one uv_timer for curl's timeout). One multi
 * handle per host (SlHost.http) holds the connection cache, so keep-alive and HTTP/2 reuse work
 * across tasks; finished easy handles are reset and pooled for the next request, and a new
 * transfer starts at once rather than on curl's 0 ms timer. A transfer is a
 * sandlot.http.request handle: response bodies are captured (within max_body) or queued for
 * req:read() with backpressure; request bodies come from a string, a file or req:write()
 * chunks (the producer). Curl callbacks never touch Lua: they
 * mark transfers, and the marks are turned into wake-ups once curl has returned. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "internal.h"

#define REQ_MT "sandlot.http.request"
#define QUEUE_HIGH (4u << 20)            /* pause the download above this many queued bytes */
#define QUEUE_LOW (1u << 20)
#define HEADERS_MAX (256u << 10)
#define POOL_MAX 64                      /* idle easy handles kept for reuse */

typedef struct Xfer Xfer;

typedef struct {
  CURLM *cm;
  uv_timer_t timer;
  SlHost *host;
  Xfer *live;                              /* every transfer not yet freed */
  Xfer *mark_head, *mark_tail;             /* transfers with news for their waiters */
  int depth;                               /* > 0 while inside curl (no removals then) */
  int sockets;
  int pooled;                              /* idle easy handles in pool[], all reset */
  CURL *pool[POOL_MAX];
} Multi;

typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  int events;                              /* what curl asked us to watch */
  Multi *m;
  SlHost *host;
} Sock;

typedef struct Chunk {
  struct Chunk *next;
  size_t len;
  char data[];
} Chunk;

enum { BODY_NONE, BODY_STRING, BODY_FILE, BODY_PRODUCER };
enum { WAIT_NONE, WAIT_HEAD, WAIT_READ, WAIT_DONE };

struct Xfer {
  Multi *m;                                /* NULL once the host is closing */
  CURL *easy;
  struct curl_slist *hdrs;
  Xfer *prev, *next;                       /* m->live */
  Xfer *mark_next;
  bool marked;
  SlTask *reader;                          /* a task in headers(), read() or wait() */
  int wait_kind;
  SlTask *writer;                          /* a task in write() */
  /* response */
  char *hbuf;                              /* raw header lines of the latest response */
  size_t hlen, halloc;
  long cur_status;
  bool cur_location, follow, head_done;
  char *body;
  size_t blen, balloc, max_body;
  uint64_t body_total;
  bool over_cap, stream;
  Chunk *q_head, *q_tail;
  size_t q_bytes;
  bool recv_paused, send_paused;
  /* request body */
  int body_kind;
  int fd;
  const char *pend;                        /* the producer's chunk being sent: a Lua string
                                              anchored in the handle's uservalue 2 */
  size_t pend_len, pend_off;
  bool pend_eof;
  /* state */
  bool added, done, aborted;
  CURLcode result;
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct { Xfer *x; } ReqBox;

/* ---------------------------------------------------------------- the multi handle */

static void multi_after(Multi *m);

static void sock_closed(uv_handle_t *handle) {
  Sock *k = handle->data;
  sl_host_handle_done(k->host);
  free(k);
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  Sock *k = poll->data;
  Multi *m = k->m;
  int flags = 0;
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
  multi_after(m);
}

/* CURLMOPT_SOCKETFUNCTION: mirror what curl wants to watch on a uv_poll of our own. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  Multi *m = userp;
  Sock *k = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (k != NULL) {
      uv_poll_stop(&k->poll);
      curl_multi_assign(m->cm, fd, NULL);
      uv_close((uv_handle_t *)&k->poll, sock_closed);
      m->sockets--;
    }
    return 0;
  }
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
    curl_multi_assign(m->cm, fd, k);
    m->sockets++;
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  k->events = events;
  uv_poll_start(&k->poll, events, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *timer) {
  Multi *m = timer->data;
  int running;
  m->depth++;
  curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  m->depth--;
  multi_after(m);
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
static Multi *multi_of(SlHost *h) {
  Multi **slot = sl_host_hook_data(h, http_teardown);
  return slot != NULL ? *slot : NULL;
}

static Multi *multi_get(lua_State *L) {
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

static void xfer_unmark(Xfer *x) {
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
static void xfer_detach(Xfer *x, CURLcode rc) {
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

static void queue_free(Xfer *x) {
  for (Chunk *c = x->q_head, *next; c != NULL; c = next) {
    next = c->next;
    free(c);
  }
  x->q_head = x->q_tail = NULL;
  x->q_bytes = 0;
}

static void xfer_free(Xfer *x) {
  xfer_detach(x, CURLE_ABORTED_BY_CALLBACK);
  xfer_unmark(x);
  Multi *m = x->m;
  if (m != NULL) {
    if (x->prev != NULL) x->prev->next = x->next;
    else m->live = x->next;
    if (x->next != NULL) x->next->prev = x->prev;
  }
  if (x->easy != NULL) {
    /* Back to the pool with every option reset (URL, headers, body, auth, timeouts, the
     * pointers into x), so the next request starts from curl's defaults. The connection
     * stays in the multi's cache either way. */
    if (m != NULL && m->pooled < POOL_MAX && !x->recv_paused && !x->send_paused) {
      curl_easy_reset(x->easy);
      m->pool[m->pooled++] = x->easy;
    } else {
      curl_easy_cleanup(x->easy);
    }
  }
  curl_slist_free_all(x->hdrs);
  queue_free(x);
  free(x->hbuf);
  free(x->body);
  free(x);
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
static int push_xfer_error(lua_State *L, Xfer *x) {
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

static bool failed(Xfer *x) { return x->done && (x->result != CURLE_OK || x->over_cap); }

static void push_head(lua_State *L, Xfer *x) {
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

static void push_result(lua_State *L, Xfer *x) {
  push_head(L, x);
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
static void pop_chunk(lua_State *L, Xfer *x) {
  Chunk *c = x->q_head;
  x->q_head = c->next;
  if (x->q_head == NULL) x->q_tail = NULL;
  x->q_bytes -= c->len;
  lua_pushlstring(L, c->data, c->len);
  free(c);
}

static void unpause(Xfer *x) {
  if (!x->added || x->m == NULL) return;
  x->m->depth++;
  curl_easy_pause(x->easy, (x->recv_paused ? CURLPAUSE_RECV : 0) |
                           (x->send_paused ? CURLPAUSE_SEND : 0));
  x->m->depth--;
}

static void maybe_resume_recv(Xfer *x) {
  if (x->recv_paused && x->q_bytes < QUEUE_LOW) {
    x->recv_paused = false;
    unpause(x);
  }
}

/* Wakes whoever waits on x if what they wait for has happened. Runs outside curl. */
static void xfer_notify(Xfer *x) {
  SlTask *t = x->reader;
  if (t != NULL) {
    lua_State *L = t->co;
    luaL_checkstack(L, 4, NULL);
    int n = -1;
    switch (x->wait_kind) {
    case WAIT_HEAD:
      if (failed(x)) n = push_xfer_error(L, x);
      else if (x->head_done || x->done) {
        push_head(L, x);
        n = 1;
      }
      break;
    case WAIT_READ:
      if (x->q_head != NULL) {
        pop_chunk(L, x);
        n = 1;
      } else if (failed(x)) {
        n = push_xfer_error(L, x);
      } else if (x->done) {
        lua_pushnil(L);
        n = 1;
      }
      break;
    case WAIT_DONE:
      if (failed(x)) n = push_xfer_error(L, x);
      else if (x->done) {
        push_result(L, x);
        n = 1;
      }
      break;
    }
    if (n >= 0) {
      x->reader = NULL;
      x->wait_kind = WAIT_NONE;
      sl_wake(t, n);
    }
  }
  t = x->writer;
  if (t != NULL && (x->pend == NULL || x->done)) {
    x->writer = NULL;
    luaL_checkstack(t->co, 3, NULL);
    if (x->done && x->pend != NULL) {
      if (failed(x)) {
        sl_wake(t, push_xfer_error(t->co, x));
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
static void multi_after(Multi *m) {
  if (m->depth > 0) return;
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->cm, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    Xfer *x = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    CURLcode rc = msg->data.result;
    if (x != NULL) xfer_detach(x, rc);
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
static size_t header_cb(char *data, size_t size, size_t n, void *ud) {
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

static size_t write_cb(char *data, size_t size, size_t n, void *ud) {
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
  if (x->q_bytes >= QUEUE_HIGH) {          /* curl keeps the data and offers it again */
    x->recv_paused = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  Chunk *c = malloc(sizeof(*c) + len);
  if (c == NULL) return 0;
  c->next = NULL;
  c->len = len;
  memcpy(c->data, data, len);
  if (x->q_tail != NULL) x->q_tail->next = c;
  else x->q_head = c;
  x->q_tail = c;
  x->q_bytes += len;
  x->body_total += len;
  if (!x->head_done) x->head_done = true;
  xfer_mark(x);
  return len;
}

static size_t read_cb(char *out, size_t size, size_t n, void *ud) {
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

static double opt_num(lua_State *L, int opts, const char *field) {
  lua_getfield(L, opts, field);
  double v = luaL_optnumber(L, -1, 0);
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, int opts, const char *field, bool dflt) {
  lua_getfield(L, opts, field);
  bool v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Configures the easy handle from opts (validated by sandlot.http). Returns an error message
 * for the world's failures (a body file that cannot be opened), NULL when all is set. */
static const char *xfer_setup(lua_State *L, int opts, Xfer *x, int *err_errno) {
  CURL *e = x->easy;
  const char *method = opt_str(L, opts, "method");
  const char *url = opt_str(L, opts, "url");
  luaL_argcheck(L, url != NULL, 1, "opts.url is required");
  if (method == NULL) method = "GET";
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");          /* whatever curl can decode */
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  x->follow = opt_bool(L, opts, "follow", true);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, x->follow ? 1L : 0L);
  lua_getfield(L, opts, "max_redirects");
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)luaL_optinteger(L, -1, 10));
  lua_pop(L, 1);
  double timeout = opt_num(L, opts, "timeout"), connect = opt_num(L, opts, "connect_timeout");
  if (timeout > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout * 1e3 + 0.5));
  if (connect > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect * 1e3 + 0.5));
  const char *sock = opt_str(L, opts, "unix_socket");
  if (sock != NULL) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, sock);
  const char *ca_file = opt_str(L, opts, "ca_file"), *ca_path = opt_str(L, opts, "ca_path");
  if (ca_file != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
  if (ca_path != NULL) curl_easy_setopt(e, CURLOPT_CAPATH, ca_path);
  if (opt_bool(L, opts, "insecure", false)) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (opt_bool(L, opts, "fresh_connect", false)) {
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  }
  x->stream = opt_bool(L, opts, "stream", false);
  lua_Number max_body = opt_num(L, opts, "max_body");
  if (max_body > 0) {
    x->max_body = (size_t)max_body;
    if (!x->stream) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_body);
  }

  if (lua_getfield(L, opts, "headers") == LUA_TTABLE) {      /* {"Name: value", ...} */
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      const char *line = luaL_checkstring(L, -1);
      struct curl_slist *nl = curl_slist_append(x->hdrs, line);
      if (nl == NULL) luaL_error(L, "sandlot.http: out of memory");
      x->hdrs = nl;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);

  size_t body_len = 0;
  lua_getfield(L, opts, "body");
  const char *body = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &body_len);
  lua_pop(L, 1);
  const char *file = opt_str(L, opts, "body_file");
  bool producer = opt_bool(L, opts, "body_producer", false);
  double body_size = opt_num(L, opts, "body_size");
  bool is_get = strcmp(method, "GET") == 0, is_head = strcmp(method, "HEAD") == 0;
  if (file != NULL || producer) {
    curl_off_t size = -1;
    if (file != NULL) {
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
      x->body_kind = BODY_FILE;
    } else {
      x->body_kind = BODY_PRODUCER;
      if (body_size > 0) size = (curl_off_t)body_size;
    }
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(e, CURLOPT_READDATA, x);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");          /* no 100-continue round trip */
  } else if (body != NULL || (!is_get && !is_head && strcmp(method, "DELETE") != 0 &&
                              strcmp(method, "OPTIONS") != 0)) {
    x->body_kind = BODY_STRING;            /* the string is anchored by opts */
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body != NULL ? body : "");
    if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
  } else if (is_head) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (!is_get) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  if (x->hdrs != NULL) curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  return NULL;
}

/* http.request(opts) -> req | nil, err   Starts the transfer at once; see sandlot.http for
 * opts. The handle anchors opts (and so the body string) until it is closed. */
static int http_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  Multi *m = multi_get(L);
  ReqBox *box = lua_newuserdatauv(L, sizeof(*box), 2);   /* opts, the chunk being sent */
  box->x = NULL;
  luaL_setmetatable(L, REQ_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  Xfer *x = calloc(1, sizeof(*x));
  if (x == NULL) return luaL_error(L, "sandlot.http: out of memory");
  x->fd = -1;
  x->m = m;
  x->next = m->live;
  if (m->live != NULL) m->live->prev = x;
  m->live = x;
  box->x = x;                              /* from here on __gc frees x whatever happens */
  x->easy = m->pooled > 0 ? m->pool[--m->pooled] : curl_easy_init();
  if (x->easy == NULL) return luaL_error(L, "sandlot.http: out of memory");
  int eno = 0;
  const char *bad = xfer_setup(L, 1, x, &eno);
  if (bad != NULL) {
    x->done = true;
    return sl_fail(L, sl_code_for_errno(eno), "body_file %s: %s", bad, strerror(eno));
  }
  CURLMcode mc = curl_multi_add_handle(m->cm, x->easy);
  if (mc != CURLM_OK) {
    x->done = true;
    return sl_fail(L, "internal", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  }
  x->added = true;
  /* Start it now rather than on curl's 0 ms timer a loop turn later: the request is on the
   * wire before the caller parks, which saves a poll per request. A transfer that ends at
   * once (or others that end meanwhile) is reported the usual way by multi_after. */
  int running;
  m->depth++;
  curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  m->depth--;
  multi_after(m);
  return 1;
}

static void reader_cleanup(SlTask *t, void *data) {
  (void)t;
  Xfer *x = data;
  x->reader = NULL;
  x->wait_kind = WAIT_NONE;
  xfer_detach(x, CURLE_ABORTED_BY_CALLBACK);   /* a cancelled waiter aborts the transfer */
  xfer_unmark(x);
}

static void writer_cleanup(SlTask *t, void *data) {
  (void)t;
  Xfer *x = data;
  x->writer = NULL;
  x->pend = NULL;
  xfer_detach(x, CURLE_ABORTED_BY_CALLBACK);   /* the body can never be completed now */
  xfer_unmark(x);
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
  if (failed(x)) return push_xfer_error(L, x);
  if (x->head_done || x->done) {
    push_head(L, x);
    return 1;
  }
  return wait_reader(L, x, WAIT_HEAD);
}

/* req:read() -> chunk | nil at the end | nil, err   (needs request{stream = true}) */
static int req_read(lua_State *L) {
  Xfer *x = req_check(L, 1);
  lua_settop(L, 1);
  if (!x->stream) return luaL_error(L, "sandlot.http: read() needs request{stream = true}");
  if (x->q_head != NULL) {
    pop_chunk(L, x);
    maybe_resume_recv(x);
    return 1;
  }
  maybe_resume_recv(x);
  if (x->q_head != NULL) {                 /* unpausing may deliver data at once */
    pop_chunk(L, x);
    return 1;
  }
  if (failed(x)) return push_xfer_error(L, x);
  if (x->done) return 0;
  return wait_reader(L, x, WAIT_READ);
}

/* req:wait() -> result {status, headers_raw, body, ...} | nil, err */
static int req_wait(lua_State *L) {
  Xfer *x = req_check(L, 1);
  lua_settop(L, 1);
  if (x->stream && x->q_head != NULL)
    return luaL_error(L, "sandlot.http: read the streamed body to its end before wait()");
  if (failed(x)) return push_xfer_error(L, x);
  if (x->done) {
    push_result(L, x);
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
  if (failed(x)) return push_xfer_error(L, x);
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
    unpause(x);
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
      unpause(x);
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
  lua_pushinteger(L, (lua_Integer)x->q_bytes);
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
    xfer_free(x);
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
  Multi *m = multi_of(h);
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

static bool is_space(char c) {          /* Lua's %s within a line: no CR or LF there */
  return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

/* http.parse_headers(raw) -> {lowercased name = value}: every line "name: value" (name without
 * spaces or colons, value trimmed); repeated names are joined with ", " (Set-Cookie with "\n").
 * Other lines (the status line, folded continuations) are skipped. */
static int http_parse_headers(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  size_t len;
  const char *p = lua_tolstring(L, 1, &len), *end = p + len;
  lua_createtable(L, 0, 8);
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
    for (size_t i = 0; i < klen; i++) lower[i] = (char)tolower((unsigned char)line[i]);
    if (lower == small) lua_pushlstring(L, small, klen);
    else luaL_pushresultsize(&key, klen);  /* table, name */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) {   /* table, name, nil */
      lua_pop(L, 1);
      lua_pushlstring(L, v, (size_t)(ve - v));
    } else {                               /* table, name, previous */
      bool cookie = klen == 10 && memcmp(small, "set-cookie", 10) == 0;   /* short: in small */
      lua_pushstring(L, cookie ? "\n" : ", ");
      lua_pushlstring(L, v, (size_t)(ve - v));
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
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
  for (Xfer *x = m->live; x != NULL; x = x->next) {
    xfer_detach(x, CURLE_ABORTED_BY_CALLBACK);
    if (x->reader != NULL) x->reader->cleanup = NULL;
    if (x->writer != NULL) x->writer->cleanup = NULL;
    x->reader = x->writer = NULL;
    x->marked = false;
    x->m = NULL;
  }
  m->live = NULL;
  m->mark_head = m->mark_tail = NULL;
  while (m->pooled > 0) curl_easy_cleanup(m->pool[--m->pooled]);
  m->depth++;
  curl_multi_cleanup(m->cm);
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, multi_closed);
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
  {"request", http_request}, {"stats", http_stats}, {"escape", http_escape},
  {"parse_headers", http_parse_headers}, {NULL, NULL}
};

int luaopen_sandlot_core_http(lua_State *L) {
  sl_host(L);
  if (luaL_newmetatable(L, REQ_MT)) {
    luaL_setfuncs(L, req_meta, 0);
    luaL_newlib(L, req_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, http_funcs);
  curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  lua_pushfstring(L, "libcurl %s", v->version);
  lua_setfield(L, -2, "curl");
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "http2");
  return 1;
}
