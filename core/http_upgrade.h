/* http_upgrade.h: what the two files of sandlot.http.upgrade share: the stream (Up), owned by
 * C until its last handle's close callback (the Lua box only points to it). http_upgrade.c
 * connects, runs TLS and reads the response head; http_stream.c is the stream's Lua face
 * (read, write, shutdown, close) and the write path both use. */
#ifndef SANDLOT_HTTP_UPGRADE_H
#define SANDLOT_HTTP_UPGRADE_H

#include "http.h"
#include "http_head.h"
#include "tls.h"

#define UP_MT "sandlot.http.stream"
#define READ_MAX_DEFAULT 65536
#define BODY_EXCERPT 1024                /* bytes of a refusal's body kept in the error */

enum { UP_CONNECT, UP_TLS, UP_HEAD, UP_REFUSED, UP_OPEN, UP_FAILED };

typedef struct Up Up;
typedef struct { Up *u; } UpBox;

typedef struct {
  uv_write_t req;
  Up *u;
  bool waited;                             /* u->writer waits for it */
  char data[];
} UpWrite;

struct Up {
  SlHost *host;
  UpBox *box;                              /* NULL once the Lua side let go */
  union { uv_tcp_t tcp; uv_pipe_t pipe; uv_stream_t stream; uv_handle_t handle; } conn;
  uv_timer_t rtimer, wtimer;               /* connect and head, then read(); write() */
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  uv_shutdown_t sreq;
  SlTls *tls;                              /* https: TLS over conn (NULL for plain http) */
  int stage;
  int live;                                /* handles and requests whose callbacks are due */
  bool conn_open, resolving, released, reading, rx_paused, eof, shut, write_failed;
  char *req;                               /* the request, written once connected */
  size_t req_len;
  char *head;                              /* the response head (and what came with it) */
  size_t head_len, head_max;
  SlHttpHead parsed;
  SlQueue q;
  size_t q_off;                            /* bytes of q.head already read */
  SlTask *opener, *reader, *writer;
  UpWrite *wcur;                           /* the write u->writer waits for */
  size_t read_max;
  uint64_t connect_ms, head_ms, io_ms;
  uint64_t read_ms;                        /* the waiting read()'s timeout */
  SlError err;                             /* stage FAILED, or the stream broke */
  bool failed;
  int status;                              /* a refusal's status, for the error */
  size_t want;                             /* REFUSED: bytes of its body to wait for */
  char *excerpt;
  size_t excerpt_len;
};

/* http_upgrade.c */
void sl_upgrade_maybe_free(Up *u);        /* frees u once released and nothing is in flight */
void sl_upgrade_fail(Up *u, const char *code, const char *fmt, ...)   /* fails the opening */
    __attribute__((format(printf, 3, 4)));
void sl_upgrade_set_reading(Up *u, bool on);
void sl_upgrade_release(Up *u, const char *why);   /* the Lua side lets go; waiters: cancelled */
void sl_upgrade_on_rtimer(uv_timer_t *timer);  /* connect, TLS, head; then a read() waited */

/* http_stream.c */
void sl_upgrade_push_err(lua_State *L, const Up *u, const SlError *e);  /* nil, err */
void sl_upgrade_notify_reader(Up *u);     /* answers a waiting read() if there is news */
/* Queues len bytes (through TLS when there is TLS; data NULL: only what TLS has waiting);
 * NULL with *rc = 0: nothing to send. */
UpWrite *sl_upgrade_send(Up *u, const char *data, size_t len, int *rc);
void sl_upgrade_flush(Up *u);             /* sends what TLS has waiting (handshake, alerts) */

#endif
