/* ssh_session.c: one SSH connection: the libssh2 arena, socket callbacks, the op list and
 * the pump that steps every pending op, keepalive and deadlines (the 100 ms tick), teardown,
 * and getting connected (resolve, TCP connect, handshake). See ssh.h for the shared rules. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ssh.h"

/* ---------------------------------------------------------------- arena and socket I/O */

static void *arena_alloc(size_t n, void **abstract) {
  Session *s = *abstract;
  Block *b = malloc(sizeof(Block) + n);
  if (b == NULL) return NULL;
  b->prev = &s->arena;
  b->next = s->arena.next;
  if (b->next != NULL) b->next->prev = b;
  s->arena.next = b;
  return b + 1;
}

static void arena_free(void *p, void **abstract) {
  (void)abstract;
  if (p == NULL) return;
  Block *b = (Block *)p - 1;
  b->prev->next = b->next;
  if (b->next != NULL) b->next->prev = b->prev;
  free(b);
}

static void *arena_realloc(void *p, size_t n, void **abstract) {
  if (p == NULL) return arena_alloc(n, abstract);
  Block *b = (Block *)p - 1;
  Block *prev = b->prev, *next = b->next;
  Block *nb = realloc(b, sizeof(Block) + n);
  if (nb == NULL) return NULL;
  prev->next = nb;
  if (next != NULL) next->prev = nb;
  return nb + 1;
}

static void arena_clear(Session *s) {
  for (Block *b = s->arena.next, *next; b != NULL; b = next) {
    next = b->next;
    free(b);
  }
  s->arena.next = NULL;
}

/* Reads skip the syscall once the socket said EAGAIN in this pump: a poll event resets it. */
static ssize_t sock_recv(libssh2_socket_t fd, void *buf, size_t len, int flags, void **abstract) {
  Session *s = *abstract;
  if (s->rx_blocked) return -EAGAIN;
  ssize_t n = recv(fd, buf, len, flags);
  if (n < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
      s->rx_blocked = true;
      return -EAGAIN;
    }
    s->peer_closed = true;
    return -e;
  }
  if (n == 0) {
    s->peer_closed = true;
    return 0;
  }
  s->rx_bytes += (uint64_t)n;
  s->last_rx = sl_now_ns();
  return n;
}

static ssize_t sock_send(libssh2_socket_t fd, const void *buf, size_t len, int flags,
                         void **abstract) {
  Session *s = *abstract;
  ssize_t n = send(fd, buf, len, flags | MSG_NOSIGNAL);
  if (n < 0) {
    int e = errno;
    return (e == EWOULDBLOCK || e == EINTR) ? -EAGAIN : -e;
  }
  s->last_tx = sl_now_ns();
  return n;
}

/* ---------------------------------------------------------------- errors */

bool ssh_rc_fatal(int rc) {
  switch (rc) {
  case LIBSSH2_ERROR_SOCKET_NONE: case LIBSSH2_ERROR_BANNER_RECV: case LIBSSH2_ERROR_BANNER_SEND:
  case LIBSSH2_ERROR_INVALID_MAC: case LIBSSH2_ERROR_KEX_FAILURE: case LIBSSH2_ERROR_SOCKET_SEND:
  case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE: case LIBSSH2_ERROR_TIMEOUT:
  case LIBSSH2_ERROR_DECRYPT: case LIBSSH2_ERROR_SOCKET_DISCONNECT: case LIBSSH2_ERROR_PROTO:
  case LIBSSH2_ERROR_SOCKET_TIMEOUT: case LIBSSH2_ERROR_SOCKET_RECV: case LIBSSH2_ERROR_ENCRYPT:
  case LIBSSH2_ERROR_BAD_SOCKET: case LIBSSH2_ERROR_OUT_OF_BOUNDARY: case LIBSSH2_ERROR_COMPRESS:
  case LIBSSH2_ERROR_ZLIB:
    return true;
  default:
    return false;
  }
}

const char *ssh_msg(Session *s) {
  char *msg = NULL;
  if (s->ssh == NULL) return "session closed";
  libssh2_session_last_error(s->ssh, &msg, NULL, 0);
  return msg != NULL && *msg != '\0' ? msg : "unknown libssh2 error";
}

void ssh_wake_error(SlTask *t, const SlError *e) {
  if (t == NULL) return;
  luaL_checkstack(t->co, 2, NULL);
  sl_push_error(t->co, e);
  sl_wake(t, 2);
}

void ssh_wake_error_field(SlTask *t, const SlError *e, const char *field, bool v) {
  if (t == NULL) return;
  luaL_checkstack(t->co, 4, NULL);
  sl_push_error(t->co, e);
  lua_pushboolean(t->co, v);
  lua_setfield(t->co, -2, field);
  sl_wake(t, 2);
}

/* ---------------------------------------------------------------- session lifetime */

static void pump(Session *s);
static void sess_update(Session *s);

void ssh_op_link(Session *s, Op *op, bool front) {
  op->s = s;
  op->linked = true;
  if (front) {
    op->prev = NULL;
    op->next = s->head;
    if (s->head != NULL) s->head->prev = op;
    else s->tail = op;
    s->head = op;
  } else {
    op->next = NULL;
    op->prev = s->tail;
    if (s->tail != NULL) s->tail->next = op;
    else s->head = op;
    s->tail = op;
  }
  if (s->busy_since == 0) {
    s->busy_since = sl_now_ns();
    s->last_rx = s->busy_since;
  }
}

void ssh_op_unlink(Op *op) {
  Session *s = op->s;
  if (!op->linked) return;
  op->linked = false;
  if (op->prev != NULL) op->prev->next = op->next;
  else s->head = op->next;
  if (op->next != NULL) op->next->prev = op->prev;
  else s->tail = op->prev;
  op->prev = op->next = NULL;
  if (s->opener == op) s->opener = NULL;
  if (s->send_owner == op) {
    s->send_owner = NULL;
    if (s->ssh != NULL && (libssh2_session_block_directions(s->ssh) &
                           LIBSSH2_SESSION_BLOCK_OUTBOUND))
      s->wedged = true;                    /* nobody can finish that packet now */
  }
  if (s->head == NULL) s->busy_since = 0;
}

void ssh_sess_free_if_done(Session *s) {
  if (s->released && s->refs == 0 && s->state == SESS_GONE && s->handles == 0) free(s);
}

static void on_handle_closed(uv_handle_t *h) {
  Session *s = h->data;
  s->handles--;
  sl_host_handle_done(s->host);
  if (s->handles == 0 && s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  ssh_sess_free_if_done(s);
}

/* Frees everything libssh2 holds: the socket is shut down first so that no call can wait on
 * the peer. Ops must have dropped their libssh2 pointers already. */
static void sess_teardown(Session *s, bool graceful) {
  if (s->state == SESS_GONE) return;
  s->state = SESS_GONE;
  if (s->ssh != NULL) {
    if (graceful && s->send_owner == NULL)
      libssh2_session_disconnect(s->ssh, "closed by sandlot");  /* one try, never waits */
    if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
    for (Sftp *f = s->idle_sftp, *next; f != NULL; f = next) {
      next = f->next;
      for (int i = 0; i < 8 && libssh2_sftp_shutdown(f->sftp) == LIBSSH2_ERROR_EAGAIN; i++) {}
      free(f);
    }
    s->idle_sftp = NULL;
    for (int i = 0; i < 16 && libssh2_session_free(s->ssh) == LIBSSH2_ERROR_EAGAIN; i++) {}
    s->ssh = NULL;
  }
  arena_clear(s);
  uv_close((uv_handle_t *)&s->poll, on_handle_closed);
  uv_close((uv_handle_t *)&s->tick, on_handle_closed);
  uv_close((uv_handle_t *)&s->kick, on_handle_closed);
}

/* The connection is lost (or closed): every pending op fails with e, libssh2 is freed. */
static void sess_fail(Session *s, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sess_fail(Session *s, const char *code, const char *fmt, ...) {
  if (ssh_dead(s)) return;
  s->state = SESS_DEAD;
  va_list ap;
  va_start(ap, fmt);
  s->death.code = code;
  vsnprintf(s->death.message, sizeof(s->death.message), fmt, ap);
  va_end(ap);
  while (s->head != NULL) {
    Op *op = s->head;
    ssh_op_unlink(op);
    op->vt->abort(op, &s->death);
  }
  sess_teardown(s, false);
}

void ssh_sess_release(Session *s) {
  if (s->released) return;
  s->released = true;
  bool graceful = s->state == SESS_READY;  /* a disconnect message only once authenticated */
  if (!ssh_dead(s)) {
    s->state = SESS_DEAD;
    sl_err_set(&s->death, "cancelled", "the SSH session was closed");
    while (s->head != NULL) {
      Op *op = s->head;
      ssh_op_unlink(op);
      op->vt->abort(op, &s->death);
    }
  }
  sess_teardown(s, graceful);
  ssh_sess_free_if_done(s);
}

/* ---------------------------------------------------------------- the pump */

static void on_kick(uv_timer_t *h);

void ssh_kick(Session *s) {
  if (ssh_dead(s)) return;
  uv_timer_start(&s->kick, on_kick, 0, 0);
}

static bool socket_writable(Session *s) {
  struct pollfd p = {.fd = s->fd, .events = POLLOUT};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

/* Steps every pending op until two passes in a row neither progress nor receive a byte: a
 * packet read by one op's call may belong to another op stepped earlier in the same pass. */
static void pump(Session *s) {
  if (s->pumping) {
    s->repump = true;
    return;
  }
  s->pumping = true;
  s->rx_blocked = false;
  int quiet = 0;
  while (quiet < 2 && !ssh_dead(s)) {
    uint64_t rx = s->rx_bytes;
    bool progress = false;
    s->repump = false;
    for (Op *op = s->head, *next; op != NULL && !ssh_dead(s); op = next) {
      next = op->next;
      if (s->send_owner != NULL && s->send_owner != op) continue;
      s->fatal_rc = 0;
      int r = op->vt->step(op);
      if (r == STEP_FATAL) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", ssh_msg(s));
        s->pumping = false;
        sess_fail(s, "unavailable", "SSH connection lost: %s", msg);
        return;
      }
      if (r != STEP_DONE && s->ssh != NULL) {
        if (libssh2_session_block_directions(s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND)
          s->send_owner = op;
        else if (s->send_owner == op)
          s->send_owner = NULL;
      }
      if (r != STEP_AGAIN) progress = true;
    }
    if (s->wedged) {
      s->pumping = false;
      sess_fail(s, "internal", "SSH session wedged: %s", "a half-sent packet was abandoned");
      return;
    }
    if (progress || rx != s->rx_bytes || s->repump) quiet = 0;
    else quiet++;
    if (s->peer_closed && quiet > 0) {
      s->pumping = false;
      sess_fail(s, "unavailable", "SSH connection lost: %s", "the server closed the connection");
      return;
    }
  }
  s->pumping = false;
  if (s->released && s->head == NULL) {   /* nobody owns it (a connect that failed) */
    sess_teardown(s, false);
    return;
  }
  sess_update(s);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  Session *s = h->data;
  if (status < 0) s->peer_closed = true;
  pump(s);
}

static void on_kick(uv_timer_t *h) {
  pump(h->data);
}

static void on_tick(uv_timer_t *h) {
  Session *s = h->data;
  uint64_t now = sl_now_ns();
  bool lost = false;
  for (Op *op = s->head; op != NULL; op = op->next) {
    if (op->deadline != 0 && now >= op->deadline) {
      op->deadline = 0;
      if (op->vt->deadline(op)) lost = true;
    }
  }
  if (lost) {
    sess_fail(s, "timeout", "SSH %s timed out", s->state == SESS_READY ? "operation" : "connect");
    return;
  }
  if (s->head != NULL && s->keepalive_ns > 0 && s->state == SESS_READY) {
    uint64_t quiet = now - (s->last_rx > s->busy_since ? s->last_rx : s->busy_since);
    if (quiet > s->keepalive_ns * (uint64_t)s->keepalive_max) {
      char secs[32];
      snprintf(secs, sizeof(secs), "%.0fs", (double)quiet / 1e9);
      sess_fail(s, "unavailable", "SSH connection lost: no response from the server for %s",
                secs);
      return;
    }
    if (now - s->last_rx >= s->keepalive_ns && now - s->last_ka >= s->keepalive_ns &&
        s->send_owner == NULL && socket_writable(s)) {
      int next;
      s->last_ka = now;
      libssh2_keepalive_send(s->ssh, &next);
      if (libssh2_session_block_directions(s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND) {
        sess_fail(s, "unavailable", "SSH connection lost: %s", "the connection is stalled");
        return;
      }
    }
  }
  pump(s);
}

/* Watches the socket for what the pending ops need; nothing at all when idle, so an idle
 * session keeps neither the loop alive nor a busy poll. */
static void sess_update(Session *s) {
  if (ssh_dead(s)) return;
  int ev = 0;
  bool reading = false, writing = false;
  for (Op *op = s->head; op != NULL; op = op->next) {
    if (!op->paused) reading = true;
    if (op->want_write) writing = true;
  }
  if (s->ssh != NULL &&
      (libssh2_session_block_directions(s->ssh) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
    writing = true;
  if (s->send_owner != NULL) reading = false;
  if (reading) ev |= UV_READABLE;
  if (writing) ev |= UV_WRITABLE;
  if (s->head == NULL) ev = 0;
  if (ev != s->poll_events) {
    if (ev == 0) uv_poll_stop(&s->poll);
    else uv_poll_start(&s->poll, ev, on_poll);
    s->poll_events = ev;
  }
  bool ticking = uv_is_active((uv_handle_t *)&s->tick);
  if (s->head != NULL && !ticking) uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
  else if (s->head == NULL && ticking) uv_timer_stop(&s->tick);
}

void ssh_op_start(Session *s, Op *op, bool front) {
  ssh_op_link(s, op, front);
  uv_timer_start(&s->kick, on_kick, 0, 0);
}

/* ---------------------------------------------------------------- connect */

typedef struct {
  Op op;
  SessionBox *box;                         /* filled on success; NULL once the waiter left */
  int stage;
} ConnectOp;

enum { CN_TCP, CN_HANDSHAKE };

static int connect_step(Op *op) {
  ConnectOp *c = (ConnectOp *)op;
  Session *s = op->s;
  if (op->waiter == NULL) {                /* cancelled: the session is not wanted */
    ssh_op_unlink(op);
    free(c);
    return STEP_DONE;                      /* the unowned session is torn down after the pump */
  }
  if (c->stage == CN_TCP) {
    if (!socket_writable(s)) {
      op->want_write = true;
      return STEP_AGAIN;
    }
    op->want_write = false;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      SlError e;
      sl_err_set(&e, err == ETIMEDOUT ? "timeout" : "unavailable", "connect to %s port %d: %s",
                 s->host_name, s->port, strerror(err));
      ssh_op_unlink(op);
      ssh_wake_error(op->waiter, &e);
      free(c);
      return STEP_DONE;
    }
    c->stage = CN_HANDSHAKE;
    return STEP_PROGRESS;
  }
  int rc = libssh2_session_handshake(s->ssh, s->fd);
  if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
  SlTask *t = op->waiter;
  ssh_op_unlink(op);
  if (rc != 0) {
    SlError e;
    sl_err_set(&e, "unavailable", "SSH handshake with %s port %d failed: %s", s->host_name,
               s->port, ssh_msg(s));
    ssh_wake_error(t, &e);
  } else {
    c->box->s = s;
    s->released = false;
    lua_pushboolean(t->co, 1);
    sl_wake(t, 1);
  }
  free(c);
  return STEP_DONE;
}

static void connect_abort(Op *op, const SlError *e) {
  ssh_wake_error(op->waiter, e);
  free(op);
}

static bool connect_deadline(Op *op) {
  Session *s = op->s;
  SlError e;
  sl_err_set(&e, "timeout", "SSH connect to %s port %d timed out", s->host_name, s->port);
  SlTask *t = op->waiter;
  op->waiter = NULL;
  ssh_wake_error(t, &e);
  return true;
}

static const OpVt connect_vt = {connect_step, connect_abort, connect_deadline};

typedef struct {
  uv_getaddrinfo_t req;
  SlHost *host;
  SlTask *waiter;
  SessionBox *box;
  double timeout, keepalive;
  int keepalive_max, max_channels, port;
  char host_name[256];
} Resolve;

static void resolve_cleanup(SlTask *t, void *data) {
  (void)t;
  Resolve *r = data;
  r->waiter = NULL;
  r->box = NULL;
  uv_cancel((uv_req_t *)&r->req);
}

static void connect_cleanup(SlTask *t, void *data) {
  (void)t;
  ConnectOp *c = data;
  c->op.waiter = NULL;
  c->box = NULL;
  ssh_kick(c->op.s);
}

static Session *sess_new(SlHost *h, const Resolve *r, int fd) {
  Session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->host = h;
  s->fd = fd;
  s->released = true;                      /* nobody owns it until connect succeeds */
  s->port = r->port;
  s->max_channels = r->max_channels;
  s->keepalive_ns = (uint64_t)(r->keepalive * 1e9);
  s->keepalive_max = r->keepalive_max;
  snprintf(s->host_name, sizeof(s->host_name), "%s", r->host_name);
  s->ssh = libssh2_session_init_ex(arena_alloc, arena_free, arena_realloc, s);
  if (s->ssh == NULL) {
    arena_clear(s);
    free(s);
    return NULL;
  }
  libssh2_session_set_blocking(s->ssh, 0);
  libssh2_session_callback_set(s->ssh, LIBSSH2_CALLBACK_RECV, (void *)sock_recv);
  libssh2_session_callback_set(s->ssh, LIBSSH2_CALLBACK_SEND, (void *)sock_send);
  if (s->keepalive_ns > 0) {
    int secs = (int)(r->keepalive + 0.5);
    libssh2_keepalive_config(s->ssh, 1, (unsigned)(secs > 0 ? secs : 1));
  }
  uv_poll_init(h->loop, &s->poll, fd);
  uv_timer_init(h->loop, &s->tick);
  uv_timer_init(h->loop, &s->kick);
  s->poll.data = s->tick.data = s->kick.data = s;
  s->handles = 3;
  h->handles += 3;
  return s;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  Resolve *r = req->data;
  SlTask *t = r->waiter;
  SlError e;
  if (t == NULL) {
    if (res != NULL) uv_freeaddrinfo(res);
    free(r);
    return;
  }
  if (status != 0) {
    sl_err_set(&e, status == UV_EAI_NONAME ? "not_found" : "unavailable",
               "cannot resolve %s: %s", r->host_name, uv_strerror(status));
    ssh_wake_error(t, &e);
    free(r);
    return;
  }
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  res->ai_protocol);
  int rc = fd < 0 ? errno : 0;
  if (rc == 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)
    rc = errno;
  uv_freeaddrinfo(res);
  if (rc != 0) {
    if (fd >= 0) close(fd);
    sl_err_set(&e, "unavailable", "connect to %s port %d: %s", r->host_name, r->port,
               strerror(rc));
    ssh_wake_error(t, &e);
    free(r);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Session *s = sess_new(r->host, r, fd);
  ConnectOp *c = calloc(1, sizeof(*c));
  if (s == NULL || c == NULL) {
    if (s != NULL) sess_teardown(s, false);
    else close(fd);
    free(c);
    sl_err_set(&e, "internal", "out of memory");
    ssh_wake_error(t, &e);
    free(r);
    return;
  }
  c->op.vt = &connect_vt;
  c->op.waiter = t;
  c->box = r->box;
  c->stage = CN_TCP;
  if (r->timeout > 0) c->op.deadline = sl_now_ns() + (uint64_t)(r->timeout * 1e9);
  sl_wait_set_cleanup(t, connect_cleanup, c);
  free(r);
  ssh_op_start(s, &c->op, false);
}

double ssh_opt_number(lua_State *L, int idx, const char *field, double dflt) {
  lua_getfield(L, idx, field);
  double v = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  return v;
}


/* ---------------------------------------------------------------- session handle */

Session *ssh_sess_check(lua_State *L, int idx) {
  SessionBox *box = luaL_checkudata(L, idx, SESSION_MT);
  if (box->s == NULL) luaL_error(L, "attempt to use a closed sandlot.ssh.session");
  return box->s;
}

/* Like sess_check, but a dead session is an expected failure: pushes nil, err, returns NULL. */
Session *ssh_sess_live(lua_State *L, int idx) {
  Session *s = ssh_sess_check(L, idx);
  if (ssh_dead(s)) {
    sl_push_error(L, &s->death);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "retry_safe");     /* nothing of this call reached the server */
    return NULL;
  }
  return s;
}


void ssh_op_detach(SlTask *t, void *data) {
  (void)t;
  Op *op = data;
  op->waiter = NULL;
  if (op->s != NULL) ssh_kick(op->s);
}

int ssh_results_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

bool ssh_resolve_start(SlTask *t, SessionBox *box, const SshTarget *tg, SlError *err) {
  Resolve *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    sl_err_set(err, "internal", "out of memory");
    return false;
  }
  snprintf(r->host_name, sizeof(r->host_name), "%s", tg->host_name);
  r->port = tg->port;
  r->timeout = tg->timeout;
  r->keepalive = tg->keepalive;
  r->keepalive_max = tg->keepalive_max;
  r->max_channels = tg->max_channels;
  r->host = t->host;
  r->waiter = t;
  r->box = box;
  r->req.data = r;
  char port[16];
  snprintf(port, sizeof(port), "%d", r->port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(t->host->loop, &r->req, on_resolved, r->host_name, port, &hints);
  if (rc != 0) {
    sl_err_set(err, "unavailable", "cannot resolve %s: %s", tg->host_name, uv_strerror(rc));
    free(r);
    return false;
  }
  sl_wait_set_cleanup(t, resolve_cleanup, r);
  return true;
}
