/* floor_ssh.c: the floor for SSH exec: plain blocking libssh2 on one open session, no event
 * loop, no Lua. Connects and authenticates with a key file (untimed), then N times: open a
 * channel, exec CMD, read stdout and stderr to EOF, close, wait for the exit status.
 *   floor_ssh HOST PORT USER KEYFILE N [CMD]   (CMD defaults to "echo hello")
 * Prints the elapsed seconds of the N execs.
 * Build: cc -O2 -o floor_ssh bench/floor_ssh.c $(pkg-config --cflags --libs libssh2) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: floor_ssh HOST PORT USER KEYFILE N [CMD]\n");
    return 2;
  }
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
  double t0 = now();
  for (long i = 0; i < n; i++) {
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
  printf("%.6f\n", t1 - t0);
  libssh2_session_disconnect(s, "bye");
  libssh2_session_free(s);
  close(fd);
  libssh2_exit();
  return 0;
}
