/* silent_server.c: a TCP server that accepts connections on 127.0.0.1 (port printed as
 * "port N\n" on stdout), reads what comes and never answers: the peer of the TLS specs'
 * handshake timeouts (compiled by the spec with cc; not part of the build). `silent_server
 * PORT` is the client side: it connects, prints "port PORT", sends nothing, and prints
 * "closed" and exits once the server hangs up. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 64

static int client(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)port);
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) return 1;
  printf("port %d\n", port);
  fflush(stdout);
  char buf[4096];
  while (read(s, buf, sizeof(buf)) > 0) {
  }
  printf("closed\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1) return client(atoi(argv[1]));
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 16) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &len) != 0)
    return 1;
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  struct pollfd p[MAXC + 1];
  int n = 1;
  p[0].fd = ls;
  p[0].events = POLLIN;
  char buf[4096];
  for (;;) {
    if (poll(p, (nfds_t)n, -1) < 0) return 1;
    if ((p[0].revents & POLLIN) && n <= MAXC) {
      int c = accept(ls, NULL, NULL);
      if (c >= 0) {
        p[n].fd = c;
        p[n].events = POLLIN;
        n++;
      }
    }
    for (int i = 1; i < n; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (read(p[i].fd, buf, sizeof(buf)) <= 0) {
        close(p[i].fd);
        p[i--] = p[--n];
      }
    }
  }
}
