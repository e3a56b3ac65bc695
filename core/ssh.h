/* ssh.h: what the parts of sandlot.core.ssh share, included by core/ssh*.c only. A Session owns
 * one TCP socket watched by a uv_poll and a list of pending operations (Op: handshake, auth,
 * exec channels, SFTP requests). libssh2 reads packets for every channel in whichever call
 * comes first, so whenever the socket is ready every pending operation is stepped again until
 * a whole pass makes no progress (ssh_pump). Sessions and exec handles are owned by C until
 * their last close callback; all libssh2 memory of a session comes from a per-session arena.
 *
 *   ssh.c          the module face: registration, connect, session close/alive/stats/tostring
 *   ssh_session.c  one connection: arena, socket callbacks, op list, pump, keepalive and
 *                  deadlines, teardown, resolve + TCP + handshake
 *   ssh_auth.c     host keys (fingerprint, known_hosts check and learn), authentication
 *   ssh_exec.c     exec channels (ssh_exec.h: the Exec, shared with ssh_exec_handle.c only)
 *   ssh_exec_handle.c  session:exec, session:spawn and the exec handle
 *   ssh_sftp.c     SFTP operations
 *
 * Two rules hold across the parts. Only one op at a time may be inside a channel open or a
 * channel request (s->opener): libssh2 1.10 matches a request's reply by packet type only.
 * An op that left a packet half sent (s->send_owner) is the only one stepped until the packet
 * is out; if it goes away first, the session is wedged and fails. */
#ifndef SANDLOT_SSH_H
#define SANDLOT_SSH_H

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "internal.h"

#define SESSION_MT "sandlot.ssh.session"
#define EXEC_MT "sandlot.ssh.exec"
#define TICK_MS 100
#define READ_CHUNK 65536
#define SFTP_BUF (2u << 20)                /* bigger buffers let libssh2 pipeline more requests */
#define GET_BUF (SFTP_BUF + SFTP_BUF / 2)   /* get to a file: each of two buffers */
#define KILL_GRACE_NS (5ull * 1000000000ull)

typedef struct Session Session;
typedef struct Op Op;

enum { STEP_AGAIN, STEP_PROGRESS, STEP_DONE, STEP_FATAL };

/* A session's life. HANDSHAKE: TCP and the SSH handshake, then host key checks (nobody owns
 * it until the connect op succeeds). READY: authenticated. DEAD: lost or closed, every op
 * failed with s->death. GONE: libssh2 freed and the uv handles closing; the Session is freed
 * once released, unreferenced and all handles are closed. */
enum { SESS_HANDSHAKE, SESS_READY, SESS_DEAD, SESS_GONE };

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
  int state;                               /* SESS_* */
  bool released;                           /* the owner is done with it (or never had it) */
  bool pumping, repump;                    /* inside ssh_pump; step again before leaving */
  bool rx_blocked;                         /* recv said EAGAIN in this pump */
  bool peer_closed;                        /* the socket reported EOF or an error */
  bool wedged;                             /* a half-sent packet's op went away: must fail */
  SlError death;
  char host_name[256];
};

typedef struct { Session *s; } SessionBox;

static inline bool ssh_dead(const Session *s) { return s->state >= SESS_DEAD; }

/* Where ssh.connect goes and how the session behaves; every field comes from Lua's opts. */
typedef struct {
  double timeout, keepalive;               /* seconds; 0 = none */
  int keepalive_max, max_channels, port;
  char host_name[256];
} SshTarget;

/* ssh_session.c: the connection */
void ssh_op_link(Session *s, Op *op, bool front);   /* queued; stepped by the next pump */
void ssh_op_start(Session *s, Op *op, bool front);  /* queued and a pump scheduled */
void ssh_op_unlink(Op *op);
void ssh_kick(Session *s);                          /* pump soon (from the loop) */
void ssh_sess_release(Session *s);                  /* the owner is done with it */
void ssh_sess_free_if_done(Session *s);
bool ssh_rc_fatal(int rc);                          /* the libssh2 error loses the connection */
const char *ssh_msg(Session *s);                    /* libssh2's last error message */
void ssh_wake_error(SlTask *t, const SlError *e);   /* t may be NULL */
void ssh_wake_error_field(SlTask *t, const SlError *e, const char *field, bool v);
double ssh_opt_number(lua_State *L, int idx, const char *field, double dflt);
Session *ssh_sess_check(lua_State *L, int idx);     /* raises on a closed session */
Session *ssh_sess_live(lua_State *L, int idx);      /* NULL with nil, err pushed if lost */
void ssh_op_detach(SlTask *t, void *data);          /* cleanup hook: the waiter left */
int ssh_results_k(lua_State *L, int status, lua_KContext base);
/* Resolves, connects and handshakes; wakes t with true (box->s set) or nil, err. */
bool ssh_resolve_start(SlTask *t, SessionBox *box, const SshTarget *tg, SlError *err);

/* ssh_auth.c */
int ssh_session_host_key(lua_State *L);
int ssh_session_check_known_hosts(lua_State *L);
int ssh_session_learn_host_key(lua_State *L);
int ssh_session_auth(lua_State *L);

/* ssh_exec_handle.c */
int ssh_session_exec(lua_State *L);
int ssh_session_spawn(lua_State *L);
void ssh_exec_open(lua_State *L);                   /* registers the exec handle's metatable */

/* ssh_sftp.c */
int ssh_session_sftp(lua_State *L);

#endif
