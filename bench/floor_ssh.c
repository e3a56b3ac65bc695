/* floor_ssh.c: the floor for SSH exec: plain libssh2 on one open session, no event loop, no
 * Lua. Connects and authenticates with a key file (untimed), then runs CMD N times: open a
 * channel, exec CMD, read stdout and stderr to EOF, close, wait for the exit status.
 *   floor_ssh HOST PORT USER KEYFILE N [CMD [INFLIGHT [LOCK]]]   (CMD: "echo hello")
 * INFLIGHT 1 (the default): blocking libssh2, one exec after the other. INFLIGHT > 1: the
 * session non-blocking and INFLIGHT channels in flight at once, stepped in turn, with poll(2)
 * on the socket when none can move. libssh2 keeps a channel open's state on the session, so
 * one open runs at a time; LOCK "request" (the default) also keeps the next open waiting until
 * the exec request's reply came, because libssh2 1.10 takes a channel request's reply that
 * arrives for another channel as an error; LOCK "open" does not (it shows that error).
 * An open that sshd refuses while others are open (MaxSessions counts a closed channel until
 * sshd reaps it) is retried 1 ms later, as often as it takes.
 * Prints the elapsed seconds of the N execs, the most channels seen open at once and the
 * number of refused opens.
 * Build: cc -O2 -o floor_ssh bench/floor_ssh.c $(pkg-config --cflags --libs libssh2) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(LIBSSH2_SESSION *s, const char *what) {
  char *msg = NULL;
  if (s != NULL) libssh2_session_last_error(s, &msg, NULL, 0);
  fprintf(stderr, "%s: %s\n", what, msg ? msg : "failed");
  return 1;
}

enum { S_IDLE, S_OPEN, S_EXEC, S_READ, S_CLOSE, S_WAIT, S_FREE };

typedef struct {
  LIBSSH2_CHANNEL *ch;
  int st;
  bool eof[2];
  size_t got;
  long index;
  int refusals;                            /* opens sshd refused (MaxSessions) */
  bool refused;                            /* the last open was refused: retry after 1 ms */
} Slot;

/* One step of a slot; returns 1 if it moved, 0 if it waits, -1 on failure. *lock: the slot
 * whose open (and, with lock_requests, exec request) is outstanding, or NULL. */
static int step(LIBSSH2_SESSION *s, Slot *sl, Slot **lock, bool lock_requests, const char *cmd,
                char *buf, size_t bufsz) {
  int rc;
  ssize_t k;
  switch (sl->st) {
  case S_OPEN:
    if (*lock != NULL && *lock != sl) return 0;
    *lock = sl;
    sl->ch = libssh2_channel_open_session(s);
    if (sl->ch == NULL) {
      rc = libssh2_session_last_errno(s);
      if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
      /* sshd counts a closed channel against MaxSessions until it reaps it: try again soon */
      if (rc != LIBSSH2_ERROR_CHANNEL_FAILURE || ++sl->refusals > 1000) return -die(s, "channel");
      *lock = NULL;
      sl->refused = true;
      return 0;
    }
    if (!lock_requests) *lock = NULL;
    sl->st = S_EXEC;
    return 1;
  case S_EXEC:
    rc = libssh2_channel_exec(sl->ch, cmd);
    if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
    if (rc != 0) return -die(s, "exec");
    if (*lock == sl) *lock = NULL;
    sl->st = S_READ;
    return 1;
  case S_READ: {
    int moved = 0;
    for (int which = 0; which < 2; which++) {
      while (!sl->eof[which]) {
        k = libssh2_channel_read_ex(sl->ch, which, buf, bufsz);
        if (k == LIBSSH2_ERROR_EAGAIN) break;
        if (k < 0) return -die(s, "read");
        if (k == 0) {
          if (libssh2_channel_eof(sl->ch)) sl->eof[which] = true;
          break;
        }
        if (which == 0) sl->got += (size_t)k;
        moved = 1;
      }
    }
    if (sl->eof[0] && sl->eof[1]) {
      sl->st = S_CLOSE;
      moved = 1;
    }
    return moved;
  }
  case S_CLOSE:
    rc = libssh2_channel_close(sl->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
    if (rc != 0) return -die(s, "close");
    sl->st = S_WAIT;
    return 1;
  case S_WAIT:
    rc = libssh2_channel_wait_closed(sl->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
    if (rc != 0) return -die(s, "wait closed");
    rc = libssh2_channel_get_exit_status(sl->ch);
    if (sl->got == 0 || rc != 0) {
      fprintf(stderr, "exec %ld: exit %d, %zu bytes\n", sl->index, rc, sl->got);
      return -1;
    }
    sl->st = S_FREE;
    return 1;
  case S_FREE:
    rc = libssh2_channel_free(sl->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return 0;
    sl->ch = NULL;
    sl->st = S_IDLE;
    return 1;
  }
  return 0;
}

/* n execs with `inflight` channels at once on a non-blocking session; returns 0 or 1. */
static int concurrent(LIBSSH2_SESSION *s, int fd, long n, int inflight, bool lock_requests,
                      const char *cmd, int *most, long *refusals) {
  Slot *slots = calloc((size_t)inflight, sizeof(Slot));
  Slot *lock = NULL;
  char buf[16384];
  long started = 0, done = 0;
  libssh2_session_set_blocking(s, 0);
  while (done < n) {
    int moved = 0, open = 0, wait_ms = 100;
    for (int i = 0; i < inflight; i++) {
      Slot *sl = &slots[i];
      if (sl->refused) {
        sl->refused = false;
        (*refusals)++;
        wait_ms = 1;
      }
      if (sl->st == S_IDLE && started < n) {
        *sl = (Slot){ .st = S_OPEN, .index = started++ };
        moved = 1;
      }
      if (sl->st == S_IDLE) continue;
      int r = step(s, sl, &lock, lock_requests, cmd, buf, sizeof(buf));
      if (r < 0) return 1;
      if (sl->refused) wait_ms = 1;
      if (r > 0) moved = 1;
      if (sl->st == S_IDLE) done++;
      if (sl->st >= S_EXEC && sl->st <= S_FREE) open++;
    }
    if (open > *most) *most = open;
    if (!moved) {
      int dirs = libssh2_session_block_directions(s);
      struct pollfd p = { .fd = fd, .events = (short)(((dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
                                                       ? POLLIN : 0) |
                                                      ((dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
                                                       ? POLLOUT : 0)) };
      if (p.events == 0) p.events = POLLIN;
      poll(&p, 1, wait_ms);
    }
  }
  free(slots);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: floor_ssh HOST PORT USER KEYFILE N [CMD [INFLIGHT [LOCK]]]\n");
    return 2;
  }
  int inflight = argc > 7 ? atoi(argv[7]) : 1;
  bool lock_requests = !(argc > 8 && strcmp(argv[8], "open") == 0);
  const char *user = argv[3], *key = argv[4];
  long n = atol(argv[5]);
  const char *cmd = argc > 6 ? argv[6] : "echo hello";
  char pub[4096];
  snprintf(pub, sizeof(pub), "%s.pub", key);

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &sa.sin_addr);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) return die(NULL, "connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  libssh2_init(0);
  LIBSSH2_SESSION *s = libssh2_session_init();
  libssh2_session_set_blocking(s, 1);
  if (libssh2_session_handshake(s, fd) != 0) return die(s, "handshake");
  if (libssh2_userauth_publickey_fromfile(s, user, pub, key, "") != 0) return die(s, "auth");

  char buf[16384];
  int most = 1;
  long refusals = 0;
  double t0 = now();
  if (inflight > 1 &&
      concurrent(s, fd, n, inflight, lock_requests, cmd, &most, &refusals) != 0)
    return 1;
  for (long i = 0; inflight <= 1 && i < n; i++) {
    LIBSSH2_CHANNEL *ch = libssh2_channel_open_session(s);
    if (ch == NULL) return die(s, "channel");
    if (libssh2_channel_exec(ch, cmd) != 0) return die(s, "exec");
    size_t got = 0;
    ssize_t k;
    while ((k = libssh2_channel_read(ch, buf, sizeof(buf))) > 0) got += (size_t)k;
    if (k < 0) return die(s, "read");
    while ((k = libssh2_channel_read_stderr(ch, buf, sizeof(buf))) > 0) {}
    libssh2_channel_close(ch);
    libssh2_channel_wait_closed(ch);
    int status = libssh2_channel_get_exit_status(ch);
    libssh2_channel_free(ch);
    if (got == 0 || status != 0) {
      fprintf(stderr, "exec %ld: exit %d, %zu bytes\n", i, status, got);
      return 1;
    }
  }
  double t1 = now();
  printf("%.6f %d %ld\n", t1 - t0, most, refusals);
  libssh2_session_set_blocking(s, 1);
  libssh2_session_disconnect(s, "bye");
  libssh2_session_free(s);
  close(fd);
  libssh2_exit();
  return 0;
}
