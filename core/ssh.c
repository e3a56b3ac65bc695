/* ssh.c: sandlot.core.ssh: SSH sessions on the libuv loop (libssh2 in non-blocking mode). A
 * Session owns one TCP socket watched by a uv_poll and a list of pending operations (handshake,
 * auth, exec channels, SFTP requests). libssh2 reads packets for every channel in whichever
 * call comes first, so whenever the socket is ready every pending operation is stepped again
 * until a whole pass makes no progress. Sessions and exec handles are owned by C until their
 * last close callback; all libssh2 memory of a session comes from a per-session arena. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "internal.h"

#define SESSION_MT "sandlot.ssh.session"
#define EXEC_MT "sandlot.ssh.exec"
#define TICK_MS 100
#define READ_CHUNK 65536
#define SFTP_BUF (2u << 20)                /* bigger buffers let libssh2 pipeline more requests */
#define GET_BUF (SFTP_BUF + SFTP_BUF / 2)   /* get to a file: each of two buffers */
#define QUEUE_HIGH (4u << 20)              /* exec streams: stop reading above this */
#define KILL_GRACE_NS (5ull * 1000000000ull)

typedef struct Session Session;
typedef struct Op Op;

enum { STEP_AGAIN, STEP_PROGRESS, STEP_DONE, STEP_FATAL };

typedef struct {
  int (*step)(Op *op);                     /* STEP_*; STEP_DONE: the op unlinked itself */
  void (*abort)(Op *op, const SlError *e); /* session died: deliver e, drop libssh2 pointers */
  bool (*deadline)(Op *op);                /* deadline passed; true: the session is lost */
} OpVt;

struct Op {
  const OpVt *vt;
  Op *prev, *next;
  Session *s;
  SlTask *waiter;
  uint64_t deadline;                       /* sl_now_ns() clock, 0 = none */
  bool want_write;                         /* waits for writability outside libssh2 */
  bool paused;                             /* reads nothing now (backpressure) */
  bool linked;
};

/* Every libssh2 allocation of a session is a Block in its arena, so whatever libssh2 leaves
 * behind on a dead connection (an SFTP handle whose close could not be sent) is freed with
 * the session. */
typedef struct Block {
  struct Block *prev, *next;
} Block;

typedef struct Sftp {
  LIBSSH2_SFTP *sftp;
  struct Sftp *next;
} Sftp;

struct Session {
  SlHost *host;
  LIBSSH2_SESSION *ssh;
  int fd;
  uv_poll_t poll;
  uv_timer_t tick, kick;
  int handles;                             /* our uv handles not yet closed */
  int poll_events;
  Op *head, *tail;
  Op *opener;                              /* inside channel open / sftp init: session state */
  Op *send_owner;                          /* left a packet half sent: only it may send */
  Sftp *idle_sftp;                         /* at most one pooled SFTP subsystem */
  int channels, max_channels;
  int refs;                                /* exec handles that point here */
  Block arena;
  uint64_t rx_bytes, last_rx, last_tx, last_ka, busy_since;
  uint64_t keepalive_ns;
  int keepalive_max;
  int port;
  int fatal_rc;
  bool released, dead, torn_down, pumping, repump, rx_blocked, peer_closed, wedged;
  bool authenticated, tick_running, closing_handles;
  SlError death;
  char host_name[256];
};

typedef struct { Session *s; } SessionBox;

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

/* ---------------------------------------------------------------- fingerprints */

static const uint32_t sha_k[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], a[8];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(a, h, sizeof(a));
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) +
                  ((a[4] & a[5]) ^ (~a[4] & a[6])) + sha_k[i] + w[i];
    uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) +
                  ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
    memmove(a + 1, a, 7 * sizeof(uint32_t));
    a[4] += t1;
    a[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) h[i] += a[i];
}

static void sha256(const unsigned char *data, size_t len, unsigned char out[32]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char tail[128];
  size_t full = len / 64 * 64, rest = len - full;
  for (size_t i = 0; i < full; i += 64) sha_block(h, data + i);
  memset(tail, 0, sizeof(tail));
  memcpy(tail, data + full, rest);
  tail[rest] = 0x80;
  size_t tl = rest < 56 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
  for (size_t i = 0; i < tl; i += 64) sha_block(h, tail + i);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(h[i] >> 8);
    out[4 * i + 3] = (unsigned char)h[i];
  }
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 without padding when pad is false (OpenSSH's fingerprint style). */
static void b64_encode(luaL_Buffer *b, const unsigned char *p, size_t n, bool pad) {
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    luaL_addchar(b, b64[v >> 18 & 63]);
    luaL_addchar(b, b64[v >> 12 & 63]);
    if (i + 1 < n) luaL_addchar(b, b64[v >> 6 & 63]);
    else if (pad) luaL_addchar(b, '=');
    if (i + 2 < n) luaL_addchar(b, b64[v & 63]);
    else if (pad) luaL_addchar(b, '=');
  }
}

static size_t b64_decode(const char *s, unsigned char *out, size_t cap) {
  size_t n = 0;
  uint32_t v = 0;
  int bits = 0;
  for (; *s != '\0' && *s != '='; s++) {
    const char *c = strchr(b64, *s);
    if (c == NULL) continue;
    v = v << 6 | (uint32_t)(c - b64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n < cap) out[n++] = (unsigned char)(v >> bits);
    }
  }
  return n;
}

static void push_fingerprint(lua_State *L, const unsigned char *key, size_t len) {
  unsigned char d[32];
  sha256(key, len, d);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "SHA256:");
  b64_encode(&b, d, sizeof(d), false);
  luaL_pushresult(&b);
}

/* ---------------------------------------------------------------- errors */

static bool rc_fatal(int rc) {
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

static const char *ssh_msg(Session *s) {
  char *msg = NULL;
  if (s->ssh == NULL) return "session closed";
  libssh2_session_last_error(s->ssh, &msg, NULL, 0);
  return msg != NULL && *msg != '\0' ? msg : "unknown libssh2 error";
}

static void wake_error(SlTask *t, const SlError *e) {
  if (t == NULL) return;
  luaL_checkstack(t->co, 2, NULL);
  sl_push_error(t->co, e);
  sl_wake(t, 2);
}

static void wake_error_field(SlTask *t, const SlError *e, const char *field, bool v) {
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

static void op_link(Session *s, Op *op, bool front) {
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

static void op_unlink(Op *op) {
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

static void sess_free_if_done(Session *s) {
  if (s->released && s->refs == 0 && s->torn_down && s->handles == 0) free(s);
}

static void on_handle_closed(uv_handle_t *h) {
  Session *s = h->data;
  s->handles--;
  sl_host_handle_done(s->host);
  if (s->handles == 0 && s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  sess_free_if_done(s);
}

/* Frees everything libssh2 holds: the socket is shut down first so that no call can wait on
 * the peer. Ops must have dropped their libssh2 pointers already. */
static void sess_teardown(Session *s, bool graceful) {
  if (s->torn_down) return;
  s->torn_down = true;
  s->dead = true;
  if (s->ssh != NULL) {
    if (graceful && s->authenticated && s->send_owner == NULL)
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
  if (!s->closing_handles) {
    s->closing_handles = true;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->tick, on_handle_closed);
    uv_close((uv_handle_t *)&s->kick, on_handle_closed);
  }
}

/* The connection is lost (or closed): every pending op fails with e, libssh2 is freed. */
static void sess_fail(Session *s, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sess_fail(Session *s, const char *code, const char *fmt, ...) {
  if (s->dead) return;
  s->dead = true;
  va_list ap;
  va_start(ap, fmt);
  s->death.code = code;
  vsnprintf(s->death.message, sizeof(s->death.message), fmt, ap);
  va_end(ap);
  while (s->head != NULL) {
    Op *op = s->head;
    op_unlink(op);
    op->vt->abort(op, &s->death);
  }
  sess_teardown(s, false);
}

static void sess_release(Session *s) {
  if (s->released) return;
  s->released = true;
  if (!s->dead) {
    s->dead = true;
    sl_err_set(&s->death, "cancelled", "the SSH session was closed");
    while (s->head != NULL) {
      Op *op = s->head;
      op_unlink(op);
      op->vt->abort(op, &s->death);
    }
  }
  sess_teardown(s, true);
  sess_free_if_done(s);
}

/* ---------------------------------------------------------------- the pump */

static void on_kick(uv_timer_t *h);

static void kick(Session *s) {
  if (s->dead || s->closing_handles) return;
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
  while (quiet < 2 && !s->dead) {
    uint64_t rx = s->rx_bytes;
    bool progress = false;
    s->repump = false;
    for (Op *op = s->head, *next; op != NULL && !s->dead; op = next) {
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
    sess_fail(s, "timeout", "SSH %s timed out", s->authenticated ? "operation" : "connect");
    return;
  }
  if (s->head != NULL && s->keepalive_ns > 0 && s->authenticated) {
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
  if (s->dead || s->closing_handles) return;
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
  if (s->head != NULL && !s->tick_running) {
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    s->tick_running = true;
  } else if (s->head == NULL && s->tick_running) {
    uv_timer_stop(&s->tick);
    s->tick_running = false;
  }
}

static void op_start(Session *s, Op *op, bool front) {
  op_link(s, op, front);
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
    op_unlink(op);
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
      op_unlink(op);
      wake_error(op->waiter, &e);
      free(c);
      return STEP_DONE;
    }
    c->stage = CN_HANDSHAKE;
    return STEP_PROGRESS;
  }
  int rc = libssh2_session_handshake(s->ssh, s->fd);
  if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
  SlTask *t = op->waiter;
  op_unlink(op);
  if (rc != 0) {
    SlError e;
    sl_err_set(&e, "unavailable", "SSH handshake with %s port %d failed: %s", s->host_name,
               s->port, ssh_msg(s));
    wake_error(t, &e);
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
  wake_error(op->waiter, e);
  free(op);
}

static bool connect_deadline(Op *op) {
  Session *s = op->s;
  SlError e;
  sl_err_set(&e, "timeout", "SSH connect to %s port %d timed out", s->host_name, s->port);
  SlTask *t = op->waiter;
  op->waiter = NULL;
  wake_error(t, &e);
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
  kick(c->op.s);
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
    wake_error(t, &e);
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
    wake_error(t, &e);
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
    wake_error(t, &e);
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
  op_start(s, &c->op, false);
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1)) {
    lua_pushvalue(L, (int)ctx);
    return 1;
  }
  return 2;
}

static double opt_number(lua_State *L, int idx, const char *field, double dflt) {
  lua_getfield(L, idx, field);
  double v = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  return v;
}

/* ssh.connect{host=, port=22, timeout=10, keepalive=15, keepalive_max=3, max_channels=10}
 *   -> session | nil, err   (TCP and the SSH handshake; the host key is not checked yet) */
static int ssh_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_checkstring(L, -1);
  luaL_argcheck(L, strlen(host) < 255, 1, "host name too long");
  lua_pop(L, 1);
  Resolve *r = calloc(1, sizeof(*r));
  if (r == NULL) return luaL_error(L, "out of memory");
  snprintf(r->host_name, sizeof(r->host_name), "%s", host);
  r->port = (int)opt_number(L, 1, "port", 22);
  r->timeout = opt_number(L, 1, "timeout", 10);
  r->keepalive = opt_number(L, 1, "keepalive", 15);
  r->keepalive_max = (int)opt_number(L, 1, "keepalive_max", 3);
  r->max_channels = (int)opt_number(L, 1, "max_channels", 10);
  if (r->port < 1 || r->port > 65535 || r->max_channels < 1 || r->keepalive_max < 1) {
    free(r);
    return luaL_error(L, "ssh.connect: port, max_channels or keepalive_max out of range");
  }
  SessionBox *box = lua_newuserdatauv(L, sizeof(*box), 0);   /* [opts, box] */
  box->s = NULL;
  luaL_setmetatable(L, SESSION_MT);
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    free(r);
    return 2;
  }
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
  int rc = uv_getaddrinfo(t->host->loop, &r->req, on_resolved, host, port, &hints);
  if (rc != 0) {
    free(r);
    return sl_fail(L, "unavailable", "cannot resolve %s: %s", host, uv_strerror(rc));
  }
  sl_wait_set_cleanup(t, resolve_cleanup, r);
  return sl_wait(L, t, 2, connect_k);
}

/* ---------------------------------------------------------------- session handle */

static Session *sess_check(lua_State *L, int idx) {
  SessionBox *box = luaL_checkudata(L, idx, SESSION_MT);
  if (box->s == NULL) luaL_error(L, "attempt to use a closed sandlot.ssh.session");
  return box->s;
}

/* Like sess_check, but a dead session is an expected failure: pushes nil, err, returns NULL. */
static Session *sess_live(lua_State *L, int idx) {
  Session *s = sess_check(L, idx);
  if (s->dead) {
    sl_push_error(L, &s->death);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "retry_safe");     /* nothing of this call reached the server */
    return NULL;
  }
  return s;
}

/* session:close() -> true. Also __close and __gc: idempotent, never yields. */
static int session_close(lua_State *L) {
  SessionBox *box = luaL_checkudata(L, 1, SESSION_MT);
  if (box->s != NULL) {
    Session *s = box->s;
    box->s = NULL;
    sess_release(s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* session:alive() -> bool (false once the connection was lost) */
static int session_alive(lua_State *L) {
  Session *s = sess_check(L, 1);
  lua_pushboolean(L, !s->dead);
  return 1;
}

static int session_tostring(lua_State *L) {
  SessionBox *box = luaL_checkudata(L, 1, SESSION_MT);
  if (box->s == NULL) lua_pushliteral(L, "sandlot.ssh.session (closed)");
  else lua_pushfstring(L, "sandlot.ssh.session %s:%d (%s)", box->s->host_name, box->s->port,
                       box->s->dead ? "lost" : "open");
  return 1;
}

static const char *key_type_name(int type) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
  case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
  case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
  default: return "unknown";
  }
}

static int known_type_bits(int type) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
  case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
  case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
  default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

/* session:host_key() -> {type=, sha256="SHA256:...", key=base64} */
static int session_host_key(lua_State *L) {
  Session *s = sess_live(L, 1);
  if (s == NULL) return 2;
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sl_fail(L, "bad_response", "the server sent no host key");
  lua_createtable(L, 0, 3);
  lua_pushstring(L, key_type_name(type));
  lua_setfield(L, -2, "type");
  push_fingerprint(L, (const unsigned char *)key, len);
  lua_setfield(L, -2, "sha256");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  b64_encode(&b, (const unsigned char *)key, len, true);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "key");
  return 1;
}

/* Loads a known_hosts file line by line: a line libssh2 cannot parse (a key type it lacks,
 * a marker) is skipped rather than ending the whole file, as libssh2_knownhost_readfile does. */
static LIBSSH2_KNOWNHOSTS *load_known_hosts(Session *s, const char *path, bool *missing) {
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ssh);
  *missing = false;
  if (kh == NULL) return NULL;
  FILE *f = fopen(path, "re");
  if (f == NULL) {
    *missing = true;
    return kh;
  }
  char line[16384];
  while (fgets(line, sizeof(line), f) != NULL)
    libssh2_knownhost_readline(kh, line, strlen(line), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
  fclose(f);
  return kh;
}

/* session:check_known_hosts(path) -> "match"|"mismatch"|"notfound", expected sha256 | nil, err
 * "mismatch" also covers a host known only with keys of another type. */
static int session_check_known_hosts(lua_State *L) {
  Session *s = sess_live(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (s == NULL) return 2;
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sl_fail(L, "bad_response", "the server sent no host key");
  bool missing;
  LIBSSH2_KNOWNHOSTS *kh = load_known_hosts(s, path, &missing);
  if (kh == NULL) return sl_fail(L, "internal", "cannot initialise known_hosts");
  struct libssh2_knownhost *known = NULL;
  int base = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW;
  int rc = libssh2_knownhost_checkp(kh, s->host_name, s->port, key, len,
                                    base | known_type_bits(type), &known);
  if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND)  /* any key of another type for this host? */
    rc = libssh2_knownhost_checkp(kh, s->host_name, s->port, key, len, base, &known);
  int n = 1;
  if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
    lua_pushliteral(L, "match");
  } else if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
    lua_pushliteral(L, "mismatch");
    if (known != NULL && known->key != NULL) {
      size_t cap = strlen(known->key);
      unsigned char *raw = malloc(cap + 1);
      if (raw != NULL) {
        size_t rl = b64_decode(known->key, raw, cap);
        push_fingerprint(L, raw, rl);
        free(raw);
        n = 2;
      }
    }
  } else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
    lua_pushliteral(L, "notfound");
  } else {
    libssh2_knownhost_free(kh);
    return sl_fail(L, "io_error", "cannot check %s: %s", path, ssh_msg(s));
  }
  libssh2_knownhost_free(kh);
  return n;
}

/* session:learn_host_key(path) -> true | nil, err: appends the offered key to path (the file
 * and its directory are created private); other lines are never rewritten. */
static int session_learn_host_key(lua_State *L) {
  Session *s = sess_live(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (s == NULL) return 2;
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sl_fail(L, "bad_response", "the server sent no host key");
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ssh);
  if (kh == NULL) return sl_fail(L, "internal", "cannot initialise known_hosts");
  char name[300];
  if (s->port == 22) snprintf(name, sizeof(name), "%s", s->host_name);
  else snprintf(name, sizeof(name), "[%s]:%d", s->host_name, s->port);
  struct libssh2_knownhost *entry = NULL;
  char line[16384];
  size_t out = 0;
  int rc = libssh2_knownhost_addc(kh, name, NULL, key, len, NULL, 0,
                                  LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                  known_type_bits(type), &entry);
  if (rc == 0)
    rc = libssh2_knownhost_writeline(kh, entry, line, sizeof(line), &out,
                                     LIBSSH2_KNOWNHOST_FILE_OPENSSH);
  libssh2_knownhost_free(kh);
  if (rc != 0) return sl_fail(L, "internal", "cannot format a known_hosts line");
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
      return sl_fail(L, sl_code_for_errno(errno), "%s: %s", dir, strerror(errno));
  }
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sl_fail(L, sl_code_for_errno(errno), "%s: %s", path, strerror(errno));
  struct stat st;
  bool need_nl = false;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    char last = '\n';
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
      if (pread(rfd, &last, 1, st.st_size - 1) == 1) need_nl = last != '\n';
      close(rfd);
    }
  }
  ssize_t w = need_nl ? write(fd, "\n", 1) : 1;
  if (w == 1) w = write(fd, line, out);
  int e = errno;
  close(fd);
  if (w != (ssize_t)out) return sl_fail(L, sl_code_for_errno(e), "%s: %s", path, strerror(e));
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- auth */

enum { AU_LIST, AU_PASSWORD, AU_KEYFILE, AU_KEYMEM, AU_AGENT };

typedef struct {
  Op op;
  int kind, stage;
  char *user, *secret, *path, *pubpath, *keydata;
  size_t keylen;
  LIBSSH2_AGENT *agent;
  struct libssh2_agent_publickey *ident;
  int tried;
} AuthOp;

static void wipe_free(char *p, size_t n) {
  if (p == NULL) return;
  explicit_bzero(p, n);
  free(p);
}

static void auth_free(AuthOp *a) {
  if (a->agent != NULL && a->op.s->ssh != NULL) {
    libssh2_agent_disconnect(a->agent);
    libssh2_agent_free(a->agent);
  }
  wipe_free(a->secret, a->secret ? strlen(a->secret) : 0);
  wipe_free(a->keydata, a->keylen);
  free(a->user);
  free(a->path);
  free(a->pubpath);
  free(a);
}

/* Pushes the outcome: true (accepted), or false and why it was rejected. */
static int auth_finish(AuthOp *a, int rc, const char *why) {
  SlTask *t = a->op.waiter;
  Session *s = a->op.s;
  op_unlink(&a->op);
  if (t != NULL) {
    luaL_checkstack(t->co, 3, NULL);
    if (rc == 0) {
      s->authenticated = true;
      lua_pushboolean(t->co, 1);
      sl_wake(t, 1);
    } else {
      lua_pushboolean(t->co, 0);
      lua_pushstring(t->co, why);
      sl_wake(t, 2);
    }
  }
  auth_free(a);
  return STEP_DONE;
}

static int auth_step(Op *op) {
  AuthOp *a = (AuthOp *)op;
  Session *s = op->s;
  LIBSSH2_SESSION *ssh = s->ssh;
  unsigned ulen = (unsigned)strlen(a->user);
  int rc;
  switch (a->kind) {
  case AU_LIST: {
    char *list = libssh2_userauth_list(ssh, a->user, ulen);
    if (list == NULL) {
      rc = libssh2_session_last_errno(ssh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      if (libssh2_userauth_authenticated(ssh)) return auth_finish(a, 0, NULL);
      if (rc_fatal(rc)) return STEP_FATAL;
      return auth_finish(a, rc, "");
    }
    SlTask *t = op->waiter;
    op_unlink(op);
    if (t != NULL) {
      lua_pushboolean(t->co, 0);
      lua_pushstring(t->co, list);
      sl_wake(t, 2);
    }
    auth_free(a);
    return STEP_DONE;
  }
  case AU_PASSWORD:
    rc = libssh2_userauth_password_ex(ssh, a->user, ulen, a->secret,
                                      (unsigned)strlen(a->secret), NULL);
    break;
  case AU_KEYFILE:
    rc = libssh2_userauth_publickey_fromfile_ex(ssh, a->user, ulen, a->pubpath, a->path,
                                                a->secret);
    break;
  case AU_KEYMEM:
    rc = libssh2_userauth_publickey_frommemory(ssh, a->user, ulen, NULL, 0, a->keydata,
                                               a->keylen, a->secret);
    break;
  default: {                               /* AU_AGENT: the agent is local and answers fast */
    if (a->agent == NULL) {
      a->agent = libssh2_agent_init(ssh);
      if (a->agent == NULL) return auth_finish(a, -1, "cannot start the agent client");
      if (a->path != NULL) libssh2_agent_set_identity_path(a->agent, a->path);
      if (libssh2_agent_connect(a->agent) != 0)
        return auth_finish(a, -1, "cannot reach ssh-agent (SSH_AUTH_SOCK)");
      if (libssh2_agent_list_identities(a->agent) != 0)
        return auth_finish(a, -1, "ssh-agent did not list its keys");
      a->stage = 1;
    }
    for (;;) {
      if (a->stage == 1) {
        struct libssh2_agent_publickey *prev = a->ident;
        rc = libssh2_agent_get_identity(a->agent, &a->ident, prev);
        if (rc == 1) {
          char why[64];
          snprintf(why, sizeof(why), "ssh-agent: none of %d key(s) accepted", a->tried);
          return auth_finish(a, -1, a->tried == 0 ? "ssh-agent holds no keys" : why);
        }
        if (rc < 0) return auth_finish(a, rc, "ssh-agent failed");
        a->stage = 2;
        a->tried++;
      }
      rc = libssh2_agent_userauth(a->agent, a->user, a->ident);
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      if (rc == 0) return auth_finish(a, 0, NULL);
      if (rc_fatal(rc)) return STEP_FATAL;
      a->stage = 1;
    }
  }
  }
  if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
  if (rc == 0) return auth_finish(a, 0, NULL);
  if (rc_fatal(rc)) return STEP_FATAL;
  const char *why = "rejected by the server";
  if (rc == LIBSSH2_ERROR_FILE) why = "cannot read the key (missing file, bad format or wrong "
                                      "passphrase)";
  else if (rc == LIBSSH2_ERROR_PASSWORD_EXPIRED) why = "password expired";
  else if (rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) why = "key type not supported";
  return auth_finish(a, rc, why);
}

static void auth_abort(Op *op, const SlError *e) {
  AuthOp *a = (AuthOp *)op;
  a->agent = NULL;                         /* freed with the session's arena */
  wake_error(op->waiter, e);
  auth_free(a);
}

static bool auth_deadline(Op *op) {
  SlError e;
  sl_err_set(&e, "timeout", "SSH authentication with %s timed out", op->s->host_name);
  SlTask *t = op->waiter;
  op->waiter = NULL;
  wake_error(t, &e);
  return true;                             /* libssh2 cannot abandon a half-done auth */
}

static const OpVt auth_vt = {auth_step, auth_abort, auth_deadline};

static void op_detach(SlTask *t, void *data) {
  (void)t;
  Op *op = data;
  op->waiter = NULL;
  if (op->s != NULL) kick(op->s);
}

static int results_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

static char *dup_field(lua_State *L, int idx, const char *field, size_t *len) {
  lua_getfield(L, idx, field);
  size_t n = 0;
  const char *v = lua_tolstring(L, -1, &n);
  char *copy = NULL;
  if (v != NULL) {
    copy = malloc(n + 1);
    if (copy != NULL) {
      memcpy(copy, v, n);
      copy[n] = '\0';
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "ssh auth: %s must be a string", field);
  }
  lua_pop(L, 1);
  if (len != NULL) *len = n;
  return copy;
}

/* session:auth(user, {method="list"|"password"|"key_file"|"key"|"agent", password=,
 *   path= (key file, or the agent's socket), public_path=, key=, passphrase=, timeout=})
 *   -> true | false, why (or, for "list", false, "publickey,password") | nil, err */
static int session_auth(lua_State *L) {
  static const char *const methods[] = {"list", "password", "key_file", "key", "agent", NULL};
  Session *s = sess_check(L, 1);
  const char *user = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_getfield(L, 3, "method");
  int kind = luaL_checkoption(L, -1, NULL, methods);
  lua_pop(L, 1);
  double timeout = opt_number(L, 3, "timeout", 30);
  if (s->dead) {
    sl_push_error(L, &s->death);
    return 2;
  }
  if (s->authenticated) {
    lua_pushboolean(L, 1);
    return 1;
  }
  AuthOp *a = calloc(1, sizeof(*a));
  if (a == NULL) return luaL_error(L, "out of memory");
  a->op.vt = &auth_vt;
  a->kind = kind;
  a->user = strdup(user);
  if (kind == AU_PASSWORD) a->secret = dup_field(L, 3, "password", NULL);
  if (kind == AU_KEYFILE || kind == AU_KEYMEM) a->secret = dup_field(L, 3, "passphrase", NULL);
  if (kind == AU_KEYFILE || kind == AU_AGENT) {
    a->path = dup_field(L, 3, "path", NULL);
    a->pubpath = dup_field(L, 3, "public_path", NULL);
  }
  if (kind == AU_KEYMEM) a->keydata = dup_field(L, 3, "key", &a->keylen);
  if (a->user == NULL || (kind == AU_PASSWORD && a->secret == NULL) ||
      (kind == AU_KEYFILE && a->path == NULL) || (kind == AU_KEYMEM && a->keydata == NULL)) {
    a->op.s = s;
    auth_free(a);
    return luaL_error(L, "ssh auth: the %s method needs its credential", methods[kind]);
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    a->op.s = s;
    auth_free(a);
    return 2;
  }
  a->op.waiter = t;
  if (timeout > 0) a->op.deadline = sl_now_ns() + (uint64_t)(timeout * 1e9);
  op_start(s, &a->op, false);
  sl_wait_set_cleanup(t, op_detach, a);
  return sl_wait(L, t, lua_gettop(L), results_k);
}

/* ---------------------------------------------------------------- exec */

typedef struct Chunk {
  struct Chunk *next;
  int which;
  size_t len;
  char data[];
} Chunk;

typedef struct {
  size_t cap, len, alloc, ring_pos;
  char *buf;
  bool wrapped;
  uint64_t total;
} Capture;

enum { EX_OPEN, EX_SETENV, EX_PTY, EX_EXEC, EX_IO, EX_CLOSE, EX_WAIT_CLOSED, EX_FREE };

typedef struct Exec {
  Op op;
  LIBSSH2_CHANNEL *ch;
  int stage;
  char *command;
  char **env;                              /* name, value, name, value, ..., NULL */
  int env_i;
  char *exports;                           /* `export K='v'; ` for variables the server refused */
  size_t exports_len;
  bool pty;
  int cols, rows;
  char term[32];
  char *in;                                /* stdin bytes not yet written */
  size_t in_len, in_off;
  bool in_close, eof_sent;
  Capture out[2];
  bool marker;                             /* strip "\036<pgid>\036" from the marker stream */
  int marker_stream;
  char mbuf[24];
  size_t mlen;
  bool marker_done;
  long pgid;
  bool stream, boxed, finished, delivered, timed_out, kill_sent, forced, out_eof[2];
  bool internal;                           /* a kill helper: no waiter, no result */
  uint64_t start_ns, end_ns, grace;
  int exit_status, exit_signal;
  char signame[16];
  Chunk *q_head, *q_tail;
  size_t q_bytes;
  SlTask *reader, *writer;                 /* spawn handles: read() and write() waiters */
  SlError err;
  bool failed, retry_safe;
  uint64_t retry_at;                       /* a refused open is retried after this */
  int refusals;
} Exec;

typedef struct { Exec *e; } ExecBox;

static void capture(Capture *c, const char *data, size_t n) {
  c->total += n;
  if (c->cap == 0) return;
  if (!c->wrapped && c->len + n <= c->cap) {
    if (c->len + n > c->alloc) {
      size_t want = c->alloc ? c->alloc : 4096;
      while (want < c->len + n) want *= 2;
      if (want > c->cap) want = c->cap;
      char *nb = realloc(c->buf, want);
      if (nb == NULL) return;
      c->buf = nb;
      c->alloc = want;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    return;
  }
  if (!c->wrapped) {
    if (c->alloc < c->cap) {
      char *nb = realloc(c->buf, c->cap);
      if (nb == NULL) return;
      c->buf = nb;
      c->alloc = c->cap;
    }
    size_t room = c->cap - c->len;
    memcpy(c->buf + c->len, data, room);
    c->len = c->cap;
    data += room;
    n -= room;
    c->wrapped = true;
  }
  size_t head = c->cap / 2, ring = c->cap - head;
  if (ring == 0) return;
  if (n >= ring) {
    data += n - ring;
    n = ring;
  }
  while (n > 0) {
    size_t k = ring - c->ring_pos;
    if (k > n) k = n;
    memcpy(c->buf + head + c->ring_pos, data, k);
    c->ring_pos = (c->ring_pos + k) % ring;
    data += k;
    n -= k;
  }
}

static void push_captured(lua_State *L, Capture *c) {
  if (!c->wrapped) {
    lua_pushlstring(L, c->buf ? c->buf : "", c->len);
    return;
  }
  size_t head = c->cap / 2, ring = c->cap - head;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, c->buf, head);
  luaL_addlstring(&b, c->buf + head + c->ring_pos, ring - c->ring_pos);
  luaL_addlstring(&b, c->buf + head, c->ring_pos);
  luaL_pushresult(&b);
}

static const struct { const char *name; int num; } signames[] = {
  {"HUP", 1}, {"INT", 2}, {"QUIT", 3}, {"ILL", 4}, {"ABRT", 6}, {"FPE", 8}, {"KILL", 9},
  {"USR1", 10}, {"SEGV", 11}, {"USR2", 12}, {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15},
  {NULL, 0}
};

static void push_result(lua_State *L, Exec *e) {
  lua_createtable(L, 0, 12);
  if (e->exit_signal > 0) {
    lua_pushinteger(L, 128 + e->exit_signal);
    lua_setfield(L, -2, "exit_code");
    lua_pushinteger(L, e->exit_signal);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, e->exit_status);
    lua_setfield(L, -2, "exit_code");
  }
  if (e->signame[0] != '\0') {
    lua_pushstring(L, e->signame);
    lua_setfield(L, -2, "signal_name");
  }
  static const char *const names[2][2] = {{"stdout", "stdout_bytes"},
                                          {"stderr", "stderr_bytes"}};
  for (int i = 0; i < 2; i++) {
    push_captured(L, &e->out[i]);
    lua_setfield(L, -2, names[i][0]);
    lua_pushinteger(L, (lua_Integer)e->out[i].total);
    lua_setfield(L, -2, names[i][1]);
  }
  lua_pushboolean(L, e->timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushboolean(L, e->out[0].wrapped || e->out[1].wrapped);
  lua_setfield(L, -2, "truncated");
  uint64_t end = e->end_ns ? e->end_ns : sl_now_ns();
  lua_pushnumber(L, e->start_ns ? (double)(end - e->start_ns) / 1e9 : 0.0);
  lua_setfield(L, -2, "duration");
  if (e->pgid > 0) {
    lua_pushinteger(L, e->pgid);
    lua_setfield(L, -2, "pgid");
  }
}

static void exec_free(Exec *e) {
  for (int i = 0; i < 2; i++) free(e->out[i].buf);
  for (Chunk *c = e->q_head, *next; c != NULL; c = next) {
    next = c->next;
    free(c);
  }
  if (e->env != NULL)
    for (char **p = e->env; *p != NULL; p++) free(*p);
  free(e->env);
  free(e->command);
  free(e->exports);
  free(e->in);
  free(e);
}

static void exec_maybe_free(Exec *e) {
  if (!e->boxed && !e->op.linked && e->op.waiter == NULL && e->reader == NULL &&
      e->writer == NULL)
    exec_free(e);
}

static void wake_reader(Exec *e) {
  SlTask *t = e->reader;
  if (t == NULL) return;
  Chunk *c = e->q_head;
  if (c == NULL && !e->finished) return;
  e->reader = NULL;
  luaL_checkstack(t->co, 3, NULL);
  if (c == NULL) {
    if (e->failed) {
      sl_push_error(t->co, &e->err);
      sl_wake(t, 2);
      return;
    }
    lua_pushnil(t->co);
    sl_wake(t, 1);
    return;
  }
  e->q_head = c->next;
  if (e->q_head == NULL) e->q_tail = NULL;
  e->q_bytes -= c->len;
  lua_pushlstring(t->co, c->data, c->len);
  lua_pushstring(t->co, c->which == 0 ? "stdout" : "stderr");
  free(c);
  sl_wake(t, 2);
}

/* The result is known (or the exec failed): wake whoever waits for it. */
static void exec_deliver(Exec *e) {
  if (e->delivered) return;
  e->delivered = true;
  e->finished = true;
  if (e->end_ns == 0) e->end_ns = sl_now_ns();
  SlTask *t = e->op.waiter;
  e->op.waiter = NULL;
  if (t != NULL) {
    luaL_checkstack(t->co, 4, NULL);
    if (e->failed) {
      wake_error_field(t, &e->err, "retry_safe", e->retry_safe);
    } else {
      push_result(t->co, e);
      sl_wake(t, 1);
    }
  }
  if (e->writer != NULL) {
    SlTask *w = e->writer;
    e->writer = NULL;
    SlError err;
    sl_err_set(&err, "io_error", "the remote command has finished");
    wake_error(w, &err);
  }
  wake_reader(e);
}

static void exec_fail(Exec *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void exec_fail(Exec *e, const char *code, const char *fmt, ...) {
  if (e->delivered) return;
  e->failed = true;
  va_list ap;
  va_start(ap, fmt);
  e->err.code = code;
  vsnprintf(e->err.message, sizeof(e->err.message), fmt, ap);
  va_end(ap);
  exec_deliver(e);
}

static void data_in(Exec *e, int which, const char *p, size_t n) {
  if (e->marker && !e->marker_done && which == e->marker_stream) {
    while (n > 0 && !e->marker_done) {     /* "\036<digits>\036" leads the stream */
      char c = *p;
      bool ok = (e->mlen == 0 && c == '\036') ||
                (e->mlen > 0 && ((c >= '0' && c <= '9') || c == '\036')) ;
      if (!ok || e->mlen + 1 >= sizeof(e->mbuf)) {
        e->marker_done = true;             /* not a marker after all: it is output */
        size_t keep = e->mlen;
        e->mlen = 0;
        if (keep > 0) data_in(e, which, e->mbuf, keep);
        break;
      }
      e->mbuf[e->mlen++] = c;
      p++;
      n--;
      if (c == '\036' && e->mlen > 1) {
        e->mbuf[e->mlen - 1] = '\0';
        e->pgid = strtol(e->mbuf + 1, NULL, 10);
        e->marker_done = true;
        e->mlen = 0;
      }
    }
    if (n == 0) return;
  }
  capture(&e->out[which], p, n);
  if (e->stream) {
    Chunk *c = malloc(sizeof(*c) + n);
    if (c == NULL) return;
    c->next = NULL;
    c->which = which;
    c->len = n;
    memcpy(c->data, p, n);
    if (e->q_tail != NULL) e->q_tail->next = c;
    else e->q_head = c;
    e->q_tail = c;
    e->q_bytes += n;
    wake_reader(e);
  }
}

static const OpVt exec_vt;

/* Starts `kill -KILL -- -pgid` on a channel of its own (ahead of queued ops for a slot). */
static void start_kill(Exec *e) {
  Session *s = e->op.s;
  if (e->kill_sent || e->pgid <= 1 || s->dead) return;
  e->kill_sent = true;
  Exec *k = calloc(1, sizeof(*k));
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "kill -KILL -- -%ld 2>/dev/null || kill -KILL %ld 2>/dev/null; :",
           e->pgid, e->pgid);
  if (k == NULL || (k->command = strdup(cmd)) == NULL) {
    free(k);
    return;
  }
  k->op.vt = &exec_vt;
  k->internal = true;
  k->in_close = true;
  k->op.deadline = sl_now_ns() + 10ull * 1000000000ull;
  op_link(s, &k->op, true);
}

static int exec_step(Op *op);

static int exec_open(Exec *e) {
  Session *s = e->op.s;
  if (s->opener != NULL && s->opener != &e->op) return STEP_AGAIN;
  if (s->opener == NULL) {
    bool cancelled = !e->internal && !e->boxed && e->op.waiter == NULL;
    if (cancelled || e->delivered) {       /* cancelled or timed out before it ran */
      op_unlink(&e->op);
      exec_maybe_free(e);
      return STEP_DONE;
    }
    if (e->retry_at != 0 && sl_now_ns() < e->retry_at) return STEP_AGAIN;
    if (s->channels >= s->max_channels) {
      if (s->idle_sftp != NULL) {          /* a pooled SFTP channel yields its slot */
        Sftp *f = s->idle_sftp;
        if (libssh2_sftp_shutdown(f->sftp) == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
        s->idle_sftp = NULL;
        free(f);
        s->channels--;
      }
      if (s->channels >= s->max_channels) return STEP_AGAIN;
    }
    s->opener = &e->op;
  }
  e->ch = libssh2_channel_open_session(s->ssh);
  if (e->ch == NULL) {
    int rc = libssh2_session_last_errno(s->ssh);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    s->opener = NULL;
    if (rc_fatal(rc)) return STEP_FATAL;
    /* sshd counts a session against MaxSessions until its channel is garbage collected, a
     * moment after the close: while others are open, a refusal is worth a few retries */
    if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && s->channels > 0 && e->refusals < 40) {
      e->refusals++;
      e->retry_at = sl_now_ns() + (uint64_t)(e->refusals < 10 ? e->refusals : 10) * 20000000ull;
      return STEP_PROGRESS;
    }
    e->retry_safe = true;
    char msg[300];
    snprintf(msg, sizeof(msg), "%s (the server may limit sessions per connection: "
             "lower max_channels)", ssh_msg(s));
    exec_fail(e, "unavailable", "cannot open an SSH channel: %s", msg);
    op_unlink(&e->op);
    exec_maybe_free(e);
    return STEP_DONE;
  }
  /* opener stays ours through setenv, pty and exec: libssh2 1.10 waits for a channel
   * request's reply by packet type and returns -1 when it reads the reply to another
   * channel's request, so only one channel at a time may have a request outstanding */
  s->channels++;
  e->stage = EX_SETENV;
  return STEP_PROGRESS;
}

static void add_export(Exec *e, const char *name, const char *value) {
  size_t need = strlen(name) + strlen(value) * 4 + 16;
  char *nb = realloc(e->exports, e->exports_len + need + 1);
  if (nb == NULL) return;
  e->exports = nb;
  char *p = nb + e->exports_len;
  p += sprintf(p, "export %s='", name);
  for (const char *v = value; *v != '\0'; v++) {
    if (*v == '\'') {
      memcpy(p, "'\\''", 4);
      p += 4;
    } else {
      *p++ = *v;
    }
  }
  memcpy(p, "'; ", 4);
  p += 3;
  e->exports_len = (size_t)(p - nb);
}

static int exec_io(Exec *e) {
  Session *s = e->op.s;
  bool progress = false;
  while (e->in_off < e->in_len) {
    size_t n = e->in_len - e->in_off;
    ssize_t w = libssh2_channel_write(e->ch, e->in + e->in_off, n > 32768 ? 32768 : n);
    if (w == LIBSSH2_ERROR_EAGAIN) break;
    if (w < 0) {
      if (rc_fatal((int)w)) return STEP_FATAL;
      e->in_off = e->in_len;               /* the command stopped reading: drop the rest */
      e->in_close = true;
      break;
    }
    e->in_off += (size_t)w;
    progress = true;
  }
  if (e->in_off >= e->in_len && e->in != NULL) {
    free(e->in);
    e->in = NULL;
    e->in_len = e->in_off = 0;
    if (e->writer != NULL) {
      SlTask *w = e->writer;
      e->writer = NULL;
      lua_pushboolean(w->co, 1);
      sl_wake(w, 1);
    }
  }
  if (e->in == NULL && e->in_close && !e->eof_sent) {
    int rc = libssh2_channel_send_eof(e->ch);
    if (rc == 0 || (rc != LIBSSH2_ERROR_EAGAIN && !rc_fatal(rc))) e->eof_sent = true;
    else if (rc_fatal(rc)) return STEP_FATAL;
  }
  e->op.paused = e->stream && e->q_bytes > QUEUE_HIGH;
  if (!e->op.paused) {
    char *buf = s->host->readbuf;
    for (int which = 0; which < 2; which++) {
      while (!e->out_eof[which]) {
        ssize_t n = libssh2_channel_read_ex(e->ch, which == 0 ? 0 : SSH_EXTENDED_DATA_STDERR,
                                            buf, sizeof(s->host->readbuf));
        if (n == LIBSSH2_ERROR_EAGAIN) break;
        if (n < 0) {
          if (rc_fatal((int)n) || s->peer_closed) return STEP_FATAL;
          e->out_eof[which] = true;
          break;
        }
        if (n == 0) {
          if (!libssh2_channel_eof(e->ch)) {
            if (s->peer_closed) return STEP_FATAL;
            break;
          }
          e->out_eof[which] = true;
          break;
        }
        progress = true;
        data_in(e, which, buf, (size_t)n);
      }
    }
  }
  if (e->timed_out && e->pgid > 0 && !e->kill_sent) start_kill(e);
  if (e->out_eof[0] && e->out_eof[1]) {
    e->stage = EX_CLOSE;
    return STEP_PROGRESS;
  }
  if (e->forced) {                         /* timed out and the grace is over, or cancelled */
    e->stage = EX_CLOSE;
    return STEP_PROGRESS;
  }
  return progress ? STEP_PROGRESS : STEP_AGAIN;
}

static void collect_exit(Exec *e) {
  e->exit_status = libssh2_channel_get_exit_status(e->ch);
  char *sig = NULL;
  size_t siglen = 0;
  if (libssh2_channel_get_exit_signal(e->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
      sig != NULL) {
    snprintf(e->signame, sizeof(e->signame), "%.*s", (int)siglen, sig);
    for (int i = 0; signames[i].name != NULL; i++)
      if (strcmp(signames[i].name, e->signame) == 0) e->exit_signal = signames[i].num;
    if (e->exit_signal == 0) e->exit_signal = 255;
    libssh2_free(e->op.s->ssh, sig);
  }
  if (e->timed_out && e->exit_signal == 0 && e->forced) {
    e->exit_signal = 9;                    /* killed by us, no status came back in time */
    snprintf(e->signame, sizeof(e->signame), "KILL");
  }
}

static int exec_step(Op *op) {
  Exec *e = (Exec *)op;
  Session *s = op->s;
  int rc;
  bool gone = !e->internal && !e->boxed && op->waiter == NULL && !e->delivered;
  if (gone && e->stage > EX_OPEN && e->stage < EX_CLOSE) {  /* the waiter was cancelled */
    e->delivered = true;
    if (e->stage == EX_IO && e->pgid > 0) start_kill(e);
    e->forced = true;
    e->stage = e->stage == EX_IO ? EX_IO : EX_CLOSE;
  }
  /* the channel's requests are done (or abandoned): let the next channel open (exec_open) */
  if (e->stage >= EX_IO && s->opener == op) s->opener = NULL;
  switch (e->stage) {
  case EX_OPEN:
    return exec_open(e);
  case EX_SETENV:
    while (e->env != NULL && e->env[e->env_i] != NULL) {
      const char *name = e->env[e->env_i], *value = e->env[e->env_i + 1];
      rc = libssh2_channel_setenv_ex(e->ch, name, (unsigned)strlen(name), value,
                                     (unsigned)strlen(value));
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      if (rc_fatal(rc)) return STEP_FATAL;
      if (rc != 0) add_export(e, name, value);   /* AcceptEnv refused it */
      e->env_i += 2;
    }
    e->stage = e->pty ? EX_PTY : EX_EXEC;
    return STEP_PROGRESS;
  case EX_PTY:
    rc = libssh2_channel_request_pty_ex(e->ch, e->term, (unsigned)strlen(e->term), NULL, 0,
                                        e->cols, e->rows, 0, 0);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc_fatal(rc)) return STEP_FATAL;
    if (rc != 0) {
      exec_fail(e, "not_supported", "the server refused a pty: %s", ssh_msg(s));
      e->stage = EX_CLOSE;
      e->forced = true;
      return STEP_PROGRESS;
    }
    e->stage = EX_EXEC;
    return STEP_PROGRESS;
  case EX_EXEC: {
    if (e->exports != NULL) {
      size_t cl = strlen(e->command);
      char *full = malloc(e->exports_len + cl + 1);
      if (full == NULL) return STEP_AGAIN;
      memcpy(full, e->exports, e->exports_len);
      memcpy(full + e->exports_len, e->command, cl + 1);
      free(e->command);
      e->command = full;
      free(e->exports);
      e->exports = NULL;
    }
    rc = libssh2_channel_process_startup(e->ch, "exec", 4, e->command,
                                         (unsigned)strlen(e->command));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc_fatal(rc)) return STEP_FATAL;
    if (rc != 0) {
      exec_fail(e, "unavailable", "the server refused to run the command: %s", ssh_msg(s));
      e->stage = EX_CLOSE;
      e->forced = true;
      return STEP_PROGRESS;
    }
    e->start_ns = sl_now_ns();
    e->stage = EX_IO;
    return STEP_PROGRESS;
  }
  case EX_IO:
    return exec_io(e);
  case EX_CLOSE:
    rc = libssh2_channel_close(e->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc_fatal(rc)) return STEP_FATAL;
    e->stage = EX_WAIT_CLOSED;
    return STEP_PROGRESS;
  case EX_WAIT_CLOSED:
    if (!e->forced || libssh2_channel_eof(e->ch)) {
      rc = libssh2_channel_wait_closed(e->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        if (!e->forced) return STEP_AGAIN;
        /* forced: the server may hold the channel until the process dies; don't wait */
      } else if (rc_fatal(rc)) {
        return STEP_FATAL;
      }
    }
    e->end_ns = sl_now_ns();
    collect_exit(e);
    if (!e->internal) exec_deliver(e);
    e->stage = EX_FREE;
    return STEP_PROGRESS;
  default:                                 /* EX_FREE */
    rc = libssh2_channel_free(e->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) {
      if (e->grace != 0 && sl_now_ns() > e->grace) {
        e->ch = NULL;                      /* abandoned: freed with the session */
      } else {
        if (e->grace == 0) e->grace = sl_now_ns() + KILL_GRACE_NS;
        return STEP_AGAIN;
      }
    }
    e->ch = NULL;
    s->channels--;
    op_unlink(op);
    exec_maybe_free(e);
    return STEP_DONE;
  }
}

static void exec_abort(Op *op, const SlError *e) {
  Exec *x = (Exec *)op;
  x->ch = NULL;
  if (!x->delivered) {
    x->failed = true;
    x->err = *e;
    x->retry_safe = x->stage == EX_OPEN;
    exec_deliver(x);
  }
  exec_maybe_free(x);
}

/* The command's time is up: kill its process group, then give it a grace period to report
 * back before the channel is closed without an exit status. */
static bool exec_deadline(Op *op) {
  Exec *e = (Exec *)op;
  if (e->internal) {
    e->forced = true;
    if (e->stage < EX_IO) e->stage = e->stage == EX_OPEN ? EX_OPEN : EX_CLOSE;
    return false;
  }
  if (e->stage == EX_OPEN) {
    if (op->s->opener == op) {             /* mid-open: must finish, then give up */
      op->deadline = sl_now_ns() + 100000000ull;
      return false;
    }
    exec_fail(e, "timeout", "timed out waiting for an SSH channel (%s in use)",
              "all of max_channels");
    return false;
  }
  if (!e->timed_out) {
    e->timed_out = true;
    if (e->pgid > 0) start_kill(e);
    op->deadline = sl_now_ns() + KILL_GRACE_NS;
    if (e->stage < EX_IO) {
      e->forced = true;
      e->stage = EX_CLOSE;
    }
  } else {
    e->forced = true;
  }
  kick(op->s);
  return false;
}

static const OpVt exec_vt = {exec_step, exec_abort, exec_deadline};

static char **env_list(lua_State *L, int opts) {
  if (lua_getfield(L, opts, "env") != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    n++;
  }
  char **list = calloc((size_t)(2 * n + 1), sizeof(char *));
  if (list == NULL) luaL_error(L, "out of memory");
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0 && i < 2 * n) {
    const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING && v != NULL) {
      list[i++] = strdup(k);
      list[i++] = strdup(v);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return list;
}

/* Builds an Exec from (command, opts) at index 2 and 3. */
static Exec *exec_new(lua_State *L, Session *s, bool stream) {
  size_t clen;
  const char *cmd = luaL_checklstring(L, 2, &clen);
  luaL_argcheck(L, strlen(cmd) == clen, 2, "command contains a NUL byte");
  if (!lua_istable(L, 3)) {
    lua_settop(L, 2);
    lua_newtable(L);
  }
  Exec *e = calloc(1, sizeof(*e));
  if (e == NULL) luaL_error(L, "out of memory");
  e->op.vt = &exec_vt;
  e->op.s = s;
  e->command = strdup(cmd);
  e->stream = stream;
  lua_Integer cap = (lua_Integer)opt_number(L, 3, "max_output", 16 << 20);
  e->out[0].cap = e->out[1].cap = cap > 0 ? (size_t)cap : 0;
  double timeout = opt_number(L, 3, "timeout", 0);
  if (timeout > 0) e->op.deadline = sl_now_ns() + (uint64_t)(timeout * 1e9);
  size_t inlen = 0;
  lua_getfield(L, 3, "stdin");
  const char *in = lua_tolstring(L, -1, &inlen);
  if (in != NULL && inlen > 0) {
    e->in = malloc(inlen);
    if (e->in != NULL) {
      memcpy(e->in, in, inlen);
      e->in_len = inlen;
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, 3, "stdin_open");        /* spawn: keep stdin open for write() */
  e->in_close = !lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 3, "pty");
  e->pty = lua_toboolean(L, -1);
  lua_pop(L, 1);
  e->cols = (int)opt_number(L, 3, "cols", 80);
  e->rows = (int)opt_number(L, 3, "rows", 24);
  snprintf(e->term, sizeof(e->term), "%s", "xterm");
  lua_getfield(L, 3, "pgid_marker");
  e->marker = lua_toboolean(L, -1);
  e->marker_stream = e->pty ? 0 : 1;
  lua_pop(L, 1);
  e->env = env_list(L, 3);
  if (e->command == NULL) {
    exec_free(e);
    luaL_error(L, "out of memory");
  }
  return e;
}

/* session:exec(command, opts) -> result | nil, err. command is one shell string run by the
 * login shell. opts: env, stdin (string), pty, cols, rows, timeout, max_output, pgid_marker
 * (the command prints "\036<pgid>\036" first on stderr, or stdout with a pty). */
static int session_exec(lua_State *L) {
  Session *s = sess_live(L, 1);
  if (s == NULL) return 2;
  Exec *e = exec_new(L, s, false);
  lua_settop(L, 3);
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    exec_free(e);
    return 2;
  }
  e->op.waiter = t;
  op_start(s, &e->op, false);
  sl_wait_set_cleanup(t, op_detach, e);
  return sl_wait(L, t, lua_gettop(L), results_k);
}

/* session:spawn(command, opts) -> exec handle (read, write, close_stdin, wait, close) */
static int session_spawn(lua_State *L) {
  Session *s = sess_live(L, 1);
  if (s == NULL) return 2;
  Exec *e = exec_new(L, s, true);
  ExecBox *box = lua_newuserdatauv(L, sizeof(*box), 1);
  box->e = e;
  luaL_setmetatable(L, EXEC_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);             /* the handle keeps its session alive */
  e->boxed = true;
  s->refs++;
  op_start(s, &e->op, false);
  return 1;
}

static Exec *exec_check(lua_State *L, int idx) {
  ExecBox *box = luaL_checkudata(L, idx, EXEC_MT);
  if (box->e == NULL) luaL_error(L, "attempt to use a closed sandlot.ssh.exec");
  return box->e;
}

static void exec_reader_cleanup(SlTask *t, void *data) {
  Exec *e = data;
  if (e->reader == t) e->reader = NULL;
  if (e->writer == t) e->writer = NULL;
  if (e->op.waiter == t) e->op.waiter = NULL;
}

/* exec:read() -> chunk, "stdout"|"stderr" | nil (both streams ended) | nil, err */
static int exech_read(lua_State *L) {
  Exec *e = exec_check(L, 1);
  lua_settop(L, 1);
  if (e->reader != NULL) return luaL_error(L, "sandlot.ssh.exec: another task is reading");
  if (e->q_head != NULL || e->finished) {
    Chunk *c = e->q_head;
    if (c == NULL) {
      if (e->failed) return sl_push_error(L, &e->err);
      return 0;
    }
    e->q_head = c->next;
    if (e->q_head == NULL) e->q_tail = NULL;
    e->q_bytes -= c->len;
    lua_pushlstring(L, c->data, c->len);
    lua_pushstring(L, c->which == 0 ? "stdout" : "stderr");
    free(c);
    if (e->op.paused && e->q_bytes <= QUEUE_HIGH / 2 && e->op.linked) kick(e->op.s);
    return 2;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->reader = t;
  if (e->op.linked) kick(e->op.s);
  sl_wait_set_cleanup(t, exec_reader_cleanup, e);
  return sl_wait(L, t, lua_gettop(L), results_k);
}

/* exec:write(data) -> true | nil, err (waits until the channel took all of it) */
static int exech_write(lua_State *L) {
  Exec *e = exec_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  if (e->writer != NULL || e->in != NULL)
    return luaL_error(L, "sandlot.ssh.exec: another task is writing");
  if (e->in_close || e->finished)
    return sl_fail(L, "invalid_input", "stdin is closed (spawn with stdin_open = true)");
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->in = malloc(len);
  if (e->in == NULL) return luaL_error(L, "out of memory");
  memcpy(e->in, data, len);
  e->in_len = len;
  e->in_off = 0;
  e->writer = t;
  kick(e->op.s);
  sl_wait_set_cleanup(t, exec_reader_cleanup, e);
  return sl_wait(L, t, lua_gettop(L), results_k);
}

/* exec:close_stdin() -> true */
static int exech_close_stdin(lua_State *L) {
  Exec *e = exec_check(L, 1);
  e->in_close = true;
  if (e->op.linked) kick(e->op.s);
  lua_pushboolean(L, 1);
  return 1;
}

/* exec:wait() -> result | nil, err */
static int exech_wait(lua_State *L) {
  Exec *e = exec_check(L, 1);
  lua_settop(L, 1);
  if (e->finished) {
    if (e->failed) return sl_push_error(L, &e->err);
    push_result(L, e);
    return 1;
  }
  if (e->op.waiter != NULL) return luaL_error(L, "sandlot.ssh.exec: another task is waiting");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->op.waiter = t;
  sl_wait_set_cleanup(t, exec_reader_cleanup, e);
  return sl_wait(L, t, lua_gettop(L), results_k);
}

/* exec:kill() -> true | nil, err: kills the remote process group */
static int exech_kill(lua_State *L) {
  Exec *e = exec_check(L, 1);
  if (e->finished) return sl_fail(L, "not_found", "the remote command has already finished");
  if (e->pgid <= 0) return sl_fail(L, "not_supported", "the remote process group is unknown");
  e->kill_sent = false;
  start_kill(e);
  kick(e->op.s);
  lua_pushboolean(L, 1);
  return 1;
}

/* exec:close() -> true. Also __close and __gc: kills what still runs, never yields. */
static int exech_close(lua_State *L) {
  ExecBox *box = luaL_checkudata(L, 1, EXEC_MT);
  Exec *e = box->e;
  if (e != NULL) {
    box->e = NULL;
    Session *s = e->op.s;
    SlError err;
    sl_err_set(&err, "cancelled", "the exec handle was closed");
    SlTask *ts[3] = {e->op.waiter, e->reader, e->writer};
    e->op.waiter = e->reader = e->writer = NULL;
    for (int i = 0; i < 3; i++) wake_error(ts[i], &err);
    e->boxed = false;
    e->delivered = true;
    if (e->op.linked) {
      if (e->stage == EX_IO && e->pgid > 0) start_kill(e);
      e->forced = true;
      kick(s);
    }
    exec_maybe_free(e);
    s->refs--;
    sess_free_if_done(s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- SFTP */

enum { SF_STAT, SF_LSTAT, SF_LS, SF_MKDIR, SF_RMDIR, SF_UNLINK, SF_RENAME, SF_GET, SF_PUT };
enum { SS_ACQUIRE, SS_OPEN, SS_RUN, SS_CLOSE, SS_RELEASE };

typedef struct {
  char *name;
  LIBSSH2_SFTP_ATTRIBUTES attrs;
} Entry;

typedef struct {
  Op op;
  int kind, stage;
  Sftp *sf;
  LIBSSH2_SFTP_HANDLE *fh;
  char *path, *path2;
  long mode;
  int local_fd;                            /* get/put with a local file, else -1 */
  char *buf;                               /* get: the data (to a string); put: the chunk */
  size_t buf_len, buf_off, buf_cap, limit;
  bool src_eof, ok, closing_failed;
  /* get to a file: the loop fills buf while a threadpool write drains wbuf (the buffers swap),
   * so a disk that blocks (dirty page throttling) never stalls the connection */
  SlHost *host;
  uv_fs_t wreq;
  char *wbuf;
  size_t wlen, woff;
  int werr;                                /* errno of a failed local write, 0 = none */
  bool writing, orphaned, rx_eof;          /* orphaned: freed by the write's callback */
  uint64_t total;
  LIBSSH2_SFTP_ATTRIBUTES attrs;
  Entry *entries;
  size_t n_entries, cap_entries;
  SlError err;
  bool failed;
} SftpOp;

static const char *fx_code(unsigned long fx) {
  switch (fx) {
  case LIBSSH2_FX_NO_SUCH_FILE: case LIBSSH2_FX_NO_SUCH_PATH: return "not_found";
  case LIBSSH2_FX_PERMISSION_DENIED: case LIBSSH2_FX_WRITE_PROTECT: return "permission_denied";
  case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "already_exists";
  case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: case LIBSSH2_FX_QUOTA_EXCEEDED:
    return "quota_exceeded";
  case LIBSSH2_FX_OP_UNSUPPORTED: return "not_supported";
  case LIBSSH2_FX_NOT_A_DIRECTORY: case LIBSSH2_FX_INVALID_FILENAME: case LIBSSH2_FX_LINK_LOOP:
    return "invalid_input";
  case LIBSSH2_FX_NO_CONNECTION: case LIBSSH2_FX_CONNECTION_LOST: return "unavailable";
  default: return "io_error";
  }
}

static const char *fx_text(unsigned long fx) {
  switch (fx) {
  case LIBSSH2_FX_EOF: return "end of file";
  case LIBSSH2_FX_NO_SUCH_FILE: return "no such file";
  case LIBSSH2_FX_PERMISSION_DENIED: return "permission denied";
  case LIBSSH2_FX_FAILURE: return "failure (exists, not empty, or not allowed)";
  case LIBSSH2_FX_NO_SUCH_PATH: return "no such path";
  case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "already exists";
  case LIBSSH2_FX_WRITE_PROTECT: return "write protected";
  case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return "no space left";
  case LIBSSH2_FX_QUOTA_EXCEEDED: return "quota exceeded";
  case LIBSSH2_FX_DIR_NOT_EMPTY: return "directory not empty";
  case LIBSSH2_FX_NOT_A_DIRECTORY: return "not a directory";
  case LIBSSH2_FX_OP_UNSUPPORTED: return "operation not supported";
  default: return "SFTP error";
  }
}

static void sftp_op_free(SftpOp *o) {
  if (o->writing) {                        /* the threadpool still holds wbuf and the fd */
    o->orphaned = true;
    return;
  }
  free(o->wbuf);
  if (o->local_fd >= 0) close(o->local_fd);
  for (size_t i = 0; i < o->n_entries; i++) free(o->entries[i].name);
  free(o->entries);
  free(o->buf);
  free(o->path);
  free(o->path2);
  free(o);
}

/* An SFTP call failed with rc: a protocol status becomes the op's error, a transport error
 * ends the session. Returns the step result. */
static int sftp_error(SftpOp *o, int rc, const char *what) {
  Session *s = o->op.s;
  if (rc_fatal(rc)) return STEP_FATAL;
  if (!o->failed) {
    o->failed = true;
    if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && o->sf != NULL) {
      unsigned long fx = libssh2_sftp_last_error(o->sf->sftp);
      sl_err_set(&o->err, fx_code(fx), "%s %s: %s", what, o->path, fx_text(fx));
    } else {
      sl_err_set(&o->err, "io_error", "%s %s: %s", what, o->path, ssh_msg(s));
    }
  }
  o->stage = o->fh != NULL ? SS_CLOSE : SS_RELEASE;
  return STEP_PROGRESS;
}

static void sftp_deliver(SftpOp *o) {
  SlTask *t = o->op.waiter;
  o->op.waiter = NULL;
  if (t == NULL) return;
  lua_State *L = t->co;
  luaL_checkstack(L, 8, NULL);
  if (o->failed) {
    wake_error(t, &o->err);
    return;
  }
  switch (o->kind) {
  case SF_STAT: case SF_LSTAT: {
    LIBSSH2_SFTP_ATTRIBUTES *a = &o->attrs;
    lua_createtable(L, 0, 6);
    const char *type = "other";
    if (LIBSSH2_SFTP_S_ISREG(a->permissions)) type = "file";
    else if (LIBSSH2_SFTP_S_ISDIR(a->permissions)) type = "directory";
    else if (LIBSSH2_SFTP_S_ISLNK(a->permissions)) type = "symlink";
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)a->filesize);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)(a->permissions & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)a->mtime);
    lua_setfield(L, -2, "mtime");
    sl_wake(t, 1);
    return;
  }
  case SF_LS:
    lua_createtable(L, (int)o->n_entries, 0);
    for (size_t i = 0; i < o->n_entries; i++) {
      LIBSSH2_SFTP_ATTRIBUTES *a = &o->entries[i].attrs;
      lua_createtable(L, 0, 5);
      lua_pushstring(L, o->entries[i].name);
      lua_setfield(L, -2, "name");
      const char *type = "other";
      if (LIBSSH2_SFTP_S_ISREG(a->permissions)) type = "file";
      else if (LIBSSH2_SFTP_S_ISDIR(a->permissions)) type = "directory";
      else if (LIBSSH2_SFTP_S_ISLNK(a->permissions)) type = "symlink";
      lua_pushstring(L, type);
      lua_setfield(L, -2, "type");
      lua_pushinteger(L, (lua_Integer)a->filesize);
      lua_setfield(L, -2, "size");
      lua_pushinteger(L, (lua_Integer)(a->permissions & 07777));
      lua_setfield(L, -2, "mode");
      lua_pushinteger(L, (lua_Integer)a->mtime);
      lua_setfield(L, -2, "mtime");
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    sl_wake(t, 1);
    return;
  case SF_GET:
    if (o->local_fd < 0) lua_pushlstring(L, o->buf ? o->buf : "", o->buf_len);
    else lua_pushinteger(L, (lua_Integer)o->total);
    sl_wake(t, 1);
    return;
  case SF_PUT:
    lua_pushinteger(L, (lua_Integer)o->total);
    sl_wake(t, 1);
    return;
  default:
    lua_pushboolean(L, 1);
    sl_wake(t, 1);
    return;
  }
}

static void on_local_written(uv_fs_t *req);

static void local_write_start(SftpOp *o) {
  uv_buf_t b = uv_buf_init(o->wbuf + o->woff, (unsigned)(o->wlen - o->woff));
  o->wreq.data = o;
  int rc = uv_fs_write(o->host->loop, &o->wreq, o->local_fd, &b, 1, -1, on_local_written);
  if (rc < 0) {
    o->werr = -rc;
    return;
  }
  o->writing = true;
  sl_host_handle_opened(o->host);          /* the host drains it before closing the loop */
}

static void on_local_written(uv_fs_t *req) {
  SftpOp *o = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  o->writing = false;
  sl_host_handle_done(o->host);
  if (o->orphaned) {
    sftp_op_free(o);
    return;
  }
  if (r < 0 && r != UV_EINTR) o->werr = (int)-r;
  else if (r == 0) o->werr = EIO;
  else if (r > 0) o->woff += (size_t)r;
  if (o->werr == 0 && o->woff < o->wlen) local_write_start(o);   /* a short write */
  if (!o->writing) kick(o->op.s);
}

/* Hands what buf holds to the threadpool when no write is in flight. */
static void local_flush(SftpOp *o) {
  if (o->writing || o->buf_len == 0 || o->werr != 0) return;
  char *t = o->wbuf;
  o->wbuf = o->buf;
  o->wlen = o->buf_len;
  o->woff = 0;
  o->buf = t;
  o->buf_len = 0;
  local_write_start(o);
}

/* get to a file: reads while buf has room for a full SFTP_BUF read (libssh2 sizes its
 * read-ahead by the buffer it is given), flushing whenever the disk is free. */
static int get_to_file(SftpOp *o) {
  bool progress = false;
  o->op.paused = false;
  for (;;) {
    if (o->werr != 0) {
      o->failed = true;
      sl_err_set(&o->err, sl_code_for_errno(o->werr), "write local file: %s",
                 strerror(o->werr));
      o->stage = SS_CLOSE;
      return STEP_PROGRESS;
    }
    if (o->rx_eof) {
      local_flush(o);
      if (o->werr != 0) continue;
      if (o->writing) {
        o->op.paused = true;               /* nothing more to read: wait for the disk */
        return progress ? STEP_PROGRESS : STEP_AGAIN;
      }
      o->stage = SS_CLOSE;
      return STEP_PROGRESS;
    }
    if (o->buf_cap - o->buf_len < SFTP_BUF) {
      local_flush(o);
      if (o->writing && o->buf_cap - o->buf_len < SFTP_BUF) {
        o->op.paused = true;               /* the write's callback kicks the pump */
        return progress ? STEP_PROGRESS : STEP_AGAIN;
      }
      continue;
    }
    ssize_t n = libssh2_sftp_read(o->fh, o->buf + o->buf_len, o->buf_cap - o->buf_len);
    if (n == LIBSSH2_ERROR_EAGAIN) {
      local_flush(o);
      return (progress || o->werr != 0) ? STEP_PROGRESS : STEP_AGAIN;
    }
    if (n < 0) return sftp_error(o, (int)n, "read");
    progress = true;
    if (n == 0) {
      o->rx_eof = true;
      continue;
    }
    o->total += (uint64_t)n;
    o->buf_len += (size_t)n;
  }
}

static int sftp_run(SftpOp *o) {
  LIBSSH2_SFTP *sftp = o->sf->sftp;
  int rc;
  unsigned plen = (unsigned)strlen(o->path);
  switch (o->kind) {
  case SF_STAT: case SF_LSTAT:
    rc = libssh2_sftp_stat_ex(sftp, o->path, plen,
                              o->kind == SF_STAT ? LIBSSH2_SFTP_STAT : LIBSSH2_SFTP_LSTAT,
                              &o->attrs);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "stat");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_MKDIR:
    rc = libssh2_sftp_mkdir_ex(sftp, o->path, plen, o->mode);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "mkdir");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_RMDIR:
    rc = libssh2_sftp_rmdir_ex(sftp, o->path, plen);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "rmdir");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_UNLINK:
    rc = libssh2_sftp_unlink_ex(sftp, o->path, plen);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "rm");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_RENAME:
    rc = libssh2_sftp_rename_ex(sftp, o->path, plen, o->path2, (unsigned)strlen(o->path2),
                                LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
                                LIBSSH2_SFTP_RENAME_NATIVE);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "rename");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_LS: {
    char name[1024];
    bool progress = false;
    for (;;) {
      LIBSSH2_SFTP_ATTRIBUTES attrs;
      rc = libssh2_sftp_readdir_ex(o->fh, name, sizeof(name), NULL, 0, &attrs);
      if (rc == LIBSSH2_ERROR_EAGAIN) return progress ? STEP_PROGRESS : STEP_AGAIN;
      if (rc < 0) return sftp_error(o, rc, "ls");
      if (rc == 0) break;
      progress = true;
      if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
      if (o->n_entries == o->cap_entries) {
        size_t nc = o->cap_entries ? o->cap_entries * 2 : 32;
        Entry *ne = realloc(o->entries, nc * sizeof(*ne));
        if (ne == NULL) break;
        o->entries = ne;
        o->cap_entries = nc;
      }
      o->entries[o->n_entries].name = strndup(name, (size_t)rc);
      o->entries[o->n_entries].attrs = attrs;
      o->n_entries++;
    }
    o->stage = SS_CLOSE;
    return STEP_PROGRESS;
  }
  case SF_GET: {
    if (o->local_fd >= 0) return get_to_file(o);
    bool progress = false;
    for (;;) {
      if (o->buf_cap - o->buf_len < READ_CHUNK) {
        size_t nc = o->buf_cap ? o->buf_cap * 2 : 1u << 20;
        char *nb = realloc(o->buf, nc);
        if (nb == NULL) {
          o->failed = true;
          sl_err_set(&o->err, "internal", "out of memory reading %s", o->path);
          o->stage = SS_CLOSE;
          return STEP_PROGRESS;
        }
        o->buf = nb;
        o->buf_cap = nc;
      }
      ssize_t n = libssh2_sftp_read(o->fh, o->buf + o->buf_len, o->buf_cap - o->buf_len);
      if (n == LIBSSH2_ERROR_EAGAIN) return progress ? STEP_PROGRESS : STEP_AGAIN;
      if (n < 0) return sftp_error(o, (int)n, "read");
      if (n == 0) break;
      progress = true;
      o->total += (uint64_t)n;
      o->buf_len += (size_t)n;
      if (o->limit > 0 && o->buf_len > o->limit) {
        o->failed = true;
        sl_err_set(&o->err, "invalid_input", "%s is larger than max_size (%zu bytes); "
                   "read it to a local file instead", o->path, o->limit);
        o->stage = SS_CLOSE;
        return STEP_PROGRESS;
      }
    }
    o->stage = SS_CLOSE;
    return STEP_PROGRESS;
  }
  default: {                               /* SF_PUT */
    bool progress = false;
    for (;;) {
      if (o->buf_off == o->buf_len && o->local_fd >= 0 && !o->src_eof) {
        ssize_t r;
        do r = read(o->local_fd, o->buf, o->buf_cap);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
          o->failed = true;
          sl_err_set(&o->err, sl_code_for_errno(errno), "read local file: %s",
                     strerror(errno));
          o->stage = SS_CLOSE;
          return STEP_PROGRESS;
        }
        o->buf_off = 0;
        o->buf_len = (size_t)r;
        if (r == 0) o->src_eof = true;
      }
      if (o->buf_off == o->buf_len) break;
      ssize_t n = libssh2_sftp_write(o->fh, o->buf + o->buf_off, o->buf_len - o->buf_off);
      if (n == LIBSSH2_ERROR_EAGAIN) return progress ? STEP_PROGRESS : STEP_AGAIN;
      if (n < 0) return sftp_error(o, (int)n, "write");
      progress = true;
      o->buf_off += (size_t)n;
      o->total += (uint64_t)n;
    }
    o->stage = SS_CLOSE;
    return STEP_PROGRESS;
  }
  }
}

static int sftp_step(Op *op) {
  SftpOp *o = (SftpOp *)op;
  Session *s = op->s;
  int rc;
  if (o->stage != SS_RUN) op->paused = false;   /* only get_to_file pauses, inside SS_RUN */
  switch (o->stage) {
  case SS_ACQUIRE:
    if (op->waiter == NULL && s->opener != op) {  /* cancelled before it started */
      op_unlink(op);
      sftp_op_free(o);
      return STEP_DONE;
    }
    if (s->idle_sftp != NULL && s->opener != op) {
      o->sf = s->idle_sftp;
      s->idle_sftp = o->sf->next;
      o->sf->next = NULL;
    } else {
      if (s->opener != NULL && s->opener != op) return STEP_AGAIN;
      if (s->opener == NULL && s->channels >= s->max_channels) return STEP_AGAIN;
      s->opener = op;
      LIBSSH2_SFTP *sftp = libssh2_sftp_init(s->ssh);
      if (sftp == NULL) {
        rc = libssh2_session_last_errno(s->ssh);
        if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
        s->opener = NULL;
        if (rc_fatal(rc)) return STEP_FATAL;
        o->failed = true;
        sl_err_set(&o->err, "not_supported", "the server has no SFTP subsystem: %s",
                   ssh_msg(s));
        o->stage = SS_RELEASE;
        return STEP_PROGRESS;
      }
      s->opener = NULL;
      s->channels++;
      o->sf = calloc(1, sizeof(*o->sf));
      if (o->sf == NULL) {
        libssh2_sftp_shutdown(sftp);
        s->channels--;
        o->failed = true;
        sl_err_set(&o->err, "internal", "%s", "out of memory");
        o->stage = SS_RELEASE;
        return STEP_PROGRESS;
      }
      o->sf->sftp = sftp;
    }
    o->stage = (o->kind == SF_LS || o->kind == SF_GET || o->kind == SF_PUT) ? SS_OPEN : SS_RUN;
    return STEP_PROGRESS;
  case SS_OPEN: {
    unsigned long flags = o->kind == SF_PUT
        ? LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC : LIBSSH2_FXF_READ;
    o->fh = libssh2_sftp_open_ex(o->sf->sftp, o->path, (unsigned)strlen(o->path), flags,
                                 o->mode, o->kind == SF_LS ? LIBSSH2_SFTP_OPENDIR
                                                           : LIBSSH2_SFTP_OPENFILE);
    if (o->fh == NULL) {
      rc = libssh2_session_last_errno(s->ssh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      return sftp_error(o, rc, o->kind == SF_LS ? "ls" : "open");
    }
    o->stage = SS_RUN;
    return STEP_PROGRESS;
  }
  case SS_RUN:
    if (op->waiter == NULL && !o->failed) {   /* cancelled: stop at a call boundary */
      o->failed = true;
      sl_err_set(&o->err, "cancelled", "%s", "cancelled");
      o->stage = o->fh != NULL ? SS_CLOSE : SS_RELEASE;
      return STEP_PROGRESS;
    }
    return sftp_run(o);
  case SS_CLOSE:
    rc = libssh2_sftp_close_handle(o->fh);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    o->fh = NULL;
    if (rc != 0) {
      if (rc_fatal(rc)) return STEP_FATAL;
      if (!o->failed && o->kind == SF_PUT) return sftp_error(o, rc, "close");
    }
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  default:                                 /* SS_RELEASE */
    if (o->sf != NULL) {
      if (s->idle_sftp == NULL) {
        s->idle_sftp = o->sf;
        o->sf = NULL;
      } else {
        rc = libssh2_sftp_shutdown(o->sf->sftp);
        if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
        free(o->sf);
        o->sf = NULL;
        s->channels--;
      }
    }
    op_unlink(op);
    sftp_deliver(o);
    sftp_op_free(o);
    return STEP_DONE;
  }
}

static void sftp_abort(Op *op, const SlError *e) {
  SftpOp *o = (SftpOp *)op;
  free(o->sf);                             /* libssh2's part goes with the session arena */
  o->sf = NULL;
  o->fh = NULL;
  wake_error(op->waiter, e);
  op->waiter = NULL;
  sftp_op_free(o);
}

static bool sftp_deadline(Op *op) {
  (void)op;
  return false;
}

static const OpVt sftp_vt = {sftp_step, sftp_abort, sftp_deadline};

/* session:sftp(kind, path [, opts]) -> value | nil, err
 *   "stat"/"lstat" -> {type, size, mode, mtime}; "ls" -> {entries}; "mkdir" (opts.mode),
 *   "rmdir", "rm", "rename" (opts.to) -> true; "get" (opts.file: local path, else the data as
 *   a string within opts.max_size) -> data | bytes; "put" (opts.data or opts.file, opts.mode)
 *   -> bytes. File transfers stream through a 2 MB buffer. */
static int session_sftp(lua_State *L) {
  static const char *const kinds[] = {"stat", "lstat", "ls", "mkdir", "rmdir", "rm", "rename",
                                      "get", "put", NULL};
  Session *s = sess_check(L, 1);
  int kind = luaL_checkoption(L, 2, NULL, kinds);
  const char *path = luaL_checkstring(L, 3);
  if (!lua_istable(L, 4)) {
    lua_settop(L, 3);
    lua_newtable(L);
  }
  lua_settop(L, 4);
  if (s->dead) {
    sl_push_error(L, &s->death);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "retry_safe");
    return 2;
  }
  SftpOp *o = calloc(1, sizeof(*o));
  if (o == NULL) return luaL_error(L, "out of memory");
  o->op.vt = &sftp_vt;
  o->op.s = s;
  o->kind = kind;
  o->local_fd = -1;
  o->path = strdup(path);
  o->mode = (long)opt_number(L, 4, "mode", kind == SF_MKDIR ? 0755 : 0644);
  o->limit = (size_t)opt_number(L, 4, "max_size", 0);
  if (kind == SF_RENAME) {
    lua_getfield(L, 4, "to");
    const char *to = lua_tostring(L, -1);
    if (to == NULL) {
      sftp_op_free(o);
      return luaL_error(L, "ssh sftp rename: opts.to must be a string");
    }
    o->path2 = strdup(to);
    lua_pop(L, 1);
  }
  lua_getfield(L, 4, "file");
  const char *file = lua_tostring(L, -1);
  if (file != NULL && (kind == SF_GET || kind == SF_PUT)) {
    o->local_fd = kind == SF_GET ? open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                                 : open(file, O_RDONLY | O_CLOEXEC);
    if (o->local_fd < 0) {
      int e = errno;
      sftp_op_free(o);
      return sl_fail(L, sl_code_for_errno(e), "%s: %s", file, strerror(e));
    }
  }
  lua_pop(L, 1);
  if (kind == SF_PUT) {
    if (o->local_fd >= 0) {
      o->buf = malloc(SFTP_BUF);
      o->buf_cap = SFTP_BUF;
    } else {
      size_t n;
      lua_getfield(L, 4, "data");
      const char *data = lua_tolstring(L, -1, &n);
      if (data == NULL) {
        sftp_op_free(o);
        return luaL_error(L, "ssh sftp put: opts.data or opts.file is required");
      }
      o->buf = malloc(n ? n : 1);
      if (o->buf != NULL) memcpy(o->buf, data, n);
      o->buf_len = o->buf_cap = n;
      lua_pop(L, 1);
    }
  } else if (kind == SF_GET && o->local_fd >= 0) {
    o->host = s->host;
    o->buf = malloc(GET_BUF);
    o->wbuf = malloc(GET_BUF);
    o->buf_cap = GET_BUF;
  }
  if (o->path == NULL || (kind == SF_PUT && o->buf == NULL) ||
      (kind == SF_GET && o->local_fd >= 0 && (o->buf == NULL || o->wbuf == NULL))) {
    sftp_op_free(o);
    return luaL_error(L, "out of memory");
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    sftp_op_free(o);
    return 2;
  }
  o->op.waiter = t;
  op_start(s, &o->op, false);
  sl_wait_set_cleanup(t, op_detach, o);
  return sl_wait(L, t, lua_gettop(L), results_k);
}

/* session:stats() -> {channels=, pending=, max_channels=} */
static int session_stats(lua_State *L) {
  Session *s = sess_check(L, 1);
  int pending = 0;
  for (Op *op = s->head; op != NULL; op = op->next) pending++;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, s->channels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, pending);
  lua_setfield(L, -2, "pending");
  lua_pushinteger(L, s->max_channels);
  lua_setfield(L, -2, "max_channels");
  return 1;
}

static int exech_tostring(lua_State *L) {
  ExecBox *box = luaL_checkudata(L, 1, EXEC_MT);
  if (box->e == NULL) lua_pushliteral(L, "sandlot.ssh.exec (closed)");
  else lua_pushfstring(L, "sandlot.ssh.exec (%s)", box->e->finished ? "finished" : "running");
  return 1;
}

static const luaL_Reg session_methods[] = {
  {"host_key", session_host_key}, {"check_known_hosts", session_check_known_hosts},
  {"learn_host_key", session_learn_host_key}, {"auth", session_auth},
  {"exec", session_exec}, {"spawn", session_spawn}, {"sftp", session_sftp},
  {"alive", session_alive}, {"stats", session_stats}, {"close", session_close},
  {NULL, NULL}
};

static const luaL_Reg session_meta[] = {
  {"__index", NULL}, {"__gc", session_close}, {"__close", session_close},
  {"__tostring", session_tostring}, {NULL, NULL}
};

static const luaL_Reg exec_methods[] = {
  {"read", exech_read}, {"write", exech_write}, {"close_stdin", exech_close_stdin},
  {"wait", exech_wait}, {"kill", exech_kill}, {"close", exech_close}, {NULL, NULL}
};

static const luaL_Reg exec_meta[] = {
  {"__index", NULL}, {"__gc", exech_close}, {"__close", exech_close},
  {"__tostring", exech_tostring}, {NULL, NULL}
};

static const luaL_Reg ssh_funcs[] = {
  {"connect", ssh_connect}, {NULL, NULL}
};

int luaopen_sandlot_core_ssh(lua_State *L) {
  sl_host(L);
  if (luaL_newmetatable(L, SESSION_MT)) {
    luaL_setfuncs(L, session_meta, 0);
    luaL_newlib(L, session_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, EXEC_MT)) {
    luaL_setfuncs(L, exec_meta, 0);
    luaL_newlib(L, exec_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, ssh_funcs);
  lua_pushstring(L, LIBSSH2_VERSION);
  lua_setfield(L, -2, "libssh2");
  return 1;
}
