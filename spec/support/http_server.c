/* http_server.c: the misbehaving HTTP/1.1 test server of spec/http_spec.lua (compiled by the
 * spec with cc; not part of the build). One thread per connection, keep-alive, chunked
 * request bodies. Listens on 127.0.0.1 (port printed as "port N\n" on stdout) and, with
 * `-u PATH`, on a unix socket too. Paths pick the behaviour; see route() below. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long n_connections, n_requests;
#define NKEYS 256
static struct { char key[64]; long hits; } keys[NKEYS];

static long key_hit(const char *key) {
  pthread_mutex_lock(&lock);
  long n = 0;
  for (int i = 0; i < NKEYS; i++) {
    if (keys[i].key[0] == 0) {
      snprintf(keys[i].key, sizeof(keys[i].key), "%s", key);
    }
    if (strcmp(keys[i].key, key) == 0) {
      n = ++keys[i].hits;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return n;
}

typedef struct {
  int fd;
  char buf[65536];
  size_t len, off;
} Conn;

static int fill(Conn *c) {
  if (c->off > 0) {
    memmove(c->buf, c->buf + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
  if (c->len == sizeof(c->buf)) return -1;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
  if (n <= 0) return -1;
  c->len += (size_t)n;
  return 0;
}

/* Reads one line (CRLF stripped) into out. */
static int read_line(Conn *c, char *out, size_t size) {
  for (;;) {
    char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
    if (nl != NULL) {
      size_t n = (size_t)(nl - (c->buf + c->off));
      size_t k = n > 0 && nl[-1] == '\r' ? n - 1 : n;
      if (k >= size) k = size - 1;
      memcpy(out, c->buf + c->off, k);
      out[k] = 0;
      c->off += n + 1;
      return 0;
    }
    if (fill(c) != 0) return -1;
  }
}

/* Reads exactly n body bytes, feeding them to a running checksum. */
static int read_body(Conn *c, uint64_t n, uint64_t *sum, uint64_t *count) {
  while (n > 0) {
    if (c->off == c->len && fill(c) != 0) return -1;
    size_t k = c->len - c->off;
    if (k > n) k = (size_t)n;
    for (size_t i = 0; i < k; i++) *sum = *sum * 31 + (unsigned char)c->buf[c->off + i];
    *count += k;
    c->off += k;
    n -= k;
  }
  return 0;
}

static int send_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int sendf(int fd, const char *fmt, ...) {
  char tmp[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  return send_all(fd, tmp, (size_t)n);
}

/* A HEAD answer has the head only (RFC 9110 9.3.2): body bytes left on a kept-alive
 * connection would be read as the start of the next response. Set per connection thread. */
static _Thread_local bool head_only;

static int respond(int fd, int status, const char *ctype, const char *extra, const char *body,
                   size_t len) {
  if (sendf(fd, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
            ctype, len, extra ? extra : "") != 0)
    return -1;
  return head_only ? 0 : send_all(fd, body, len);
}

static const char *param(const char *query, const char *name, char *out, size_t size) {
  size_t nl = strlen(name);
  for (const char *p = query; p != NULL && *p;) {
    if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
      const char *v = p + nl + 1, *end = strchr(v, '&');
      size_t k = end ? (size_t)(end - v) : strlen(v);
      if (k >= size) k = size - 1;
      memcpy(out, v, k);
      out[k] = 0;
      return out;
    }
    p = strchr(p, '&');
    if (p) p++;
  }
  return NULL;
}

static long iparam(const char *query, const char *name, long dflt) {
  char v[64];
  return param(query, name, v, sizeof(v)) ? atol(v) : dflt;
}

static void msleep(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void json_escape(char *out, size_t size, const char *s) {
  size_t o = 0;
  for (; *s && o + 8 < size; s++) {
    if (*s == '"' || *s == '\\') out[o++] = '\\';
    if ((unsigned char)*s < 0x20) {
      o += (size_t)snprintf(out + o, size - o, "\\u%04x", *s);
      continue;
    }
    out[o++] = *s;
  }
  out[o] = 0;
}

/* After a switch of protocols: sends greet, then echoes what arrives (the bytes already read
 * first) until the client half-closes; then sends "bye\n" and closes. */
static int echo_stream(Conn *c, const char *greet) {
  if (send_all(c->fd, greet, strlen(greet)) != 0) return -1;
  if (c->len > c->off && send_all(c->fd, c->buf + c->off, c->len - c->off) != 0) return -1;
  c->off = c->len = 0;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (send_all(c->fd, buf, (size_t)n) != 0) return -1;
  }
  send_all(c->fd, "bye\n", 4);
  return -1;
}

/* The upgrade endpoints of the raw-stream specs: /upgrade (101 then echo), /upgrade_legacy
 * (Docker's old 200 raw-stream), /upgrade_truncated, /upgrade_huge (a head that never ends),
 * /upgrade_midclose (some bytes, then the server closes), /upgrade_silent (never answers),
 * /upgrade_flood?bytes=N (N bytes at once, for the water marks), /upgrade_interim (100 first). */
static int upgrade_route(Conn *c, const char *path, const char *query, const char *hdrs,
                         uint64_t body_len) {
  int fd = c->fd;
  char greet[512], proto[64] = "";
  const char *up = strcasestr(hdrs, "\nupgrade:");
  if (up == NULL && strncasecmp(hdrs, "upgrade:", 8) == 0) up = hdrs - 1;
  if (up != NULL) sscanf(up + 9, " %63[^\n]", proto);
  snprintf(greet, sizeof(greet), "hello upgrade=%s body=%llu\n", proto,
           (unsigned long long)body_len);
  const char *ok = "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream"
                   "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
  if (strcmp(path, "/upgrade") == 0) {
    if (send_all(fd, ok, strlen(ok)) != 0) return -1;
    return echo_stream(c, greet);
  }
  if (strcmp(path, "/upgrade_interim") == 0) {
    if (sendf(fd, "HTTP/1.1 100 Continue\r\n\r\n%s", ok) != 0) return -1;
    return echo_stream(c, greet);
  }
  if (strcmp(path, "/upgrade_legacy") == 0) {
    if (sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
              "\r\n") != 0)
      return -1;
    return echo_stream(c, greet);
  }
  if (strcmp(path, "/upgrade_truncated") == 0) {
    send_all(fd, "HTTP/1.1 101 UPGR", 17);
    return -1;
  }
  if (strcmp(path, "/upgrade_huge") == 0) {
    if (sendf(fd, "HTTP/1.1 101 UPGRADED\r\n") != 0) return -1;
    char line[1024];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Pad: ", 7);
    memcpy(line + sizeof(line) - 2, "\r\n", 2);
    for (int i = 0; i < 4096; i++)         /* 4 MiB of header lines, never a blank one */
      if (send_all(fd, line, sizeof(line)) != 0) return -1;
    return -1;
  }
  if (strcmp(path, "/upgrade_midclose") == 0) {
    if (sendf(fd, "%spart", ok) != 0) return -1;
    return -1;
  }
  if (strcmp(path, "/upgrade_silent") == 0) {
    msleep(iparam(query, "ms", 30000));
    return -1;
  }
  if (strcmp(path, "/upgrade_flood") == 0) {
    long long total = iparam(query, "bytes", 1 << 20);
    if (send_all(fd, ok, strlen(ok)) != 0) return -1;
    static char pat[65536 + 26];             /* byte i of the stream is 'a' + i % 26 */
    for (size_t i = 0; i < sizeof(pat); i++) pat[i] = (char)('a' + i % 26);
    for (long long off = 0; off < total;) {
      size_t k = 65536;
      if ((long long)k > total - off) k = (size_t)(total - off);
      if (send_all(fd, pat + off % 26, k) != 0) return -1;
      off += (long long)k;
    }
    return -1;
  }
  return 1;                                  /* not an upgrade path */
}

/* Handles one request; returns 0 to keep the connection, -1 to close it. */
static int route(Conn *c, const char *method, const char *path, const char *query,
                 const char *hdrs, uint64_t body_len, uint64_t body_sum, bool close_after) {
  int fd = c->fd;
  char body[16384], v[256];
  const char *conn_hdr = close_after ? "Connection: close\r\n" : "";
  if (strncmp(path, "/upgrade", 8) == 0) {
    int rc = upgrade_route(c, path, query, hdrs, body_len);
    if (rc != 1) return rc;
  }
  if (strcmp(path, "/hello") == 0) {
    int n = snprintf(body, sizeof(body), "hello %ld", iparam(query, "i", 0));
    return respond(fd, 200, "text/plain", conn_hdr, body, (size_t)n);
  }
  if (strcmp(path, "/json") == 0) {
    const char *j = "{\"ok\":true,\"n\":[1,2,3],\"s\":\"x\"}";
    return respond(fd, 200, "application/json", conn_hdr, j, strlen(j));
  }
  if (strcmp(path, "/echo") == 0) {
    char eh[8192];
    json_escape(eh, sizeof(eh), hdrs);
    int n = snprintf(body, sizeof(body),
                     "{\"method\":\"%s\",\"path\":\"%s\",\"query\":\"%s\",\"headers\":\"%s\","
                     "\"bytes\":%llu,\"sum\":\"%lld\"}",
                     method, path, query, eh, (unsigned long long)body_len,
                     (long long)body_sum);
    return respond(fd, 200, "application/json", conn_hdr, body, (size_t)n);
  }
  if (strcmp(path, "/stats") == 0) {
    pthread_mutex_lock(&lock);
    int n = snprintf(body, sizeof(body), "{\"connections\":%ld,\"requests\":%ld}",
                     n_connections, n_requests);
    pthread_mutex_unlock(&lock);
    return respond(fd, 200, "application/json", conn_hdr, body, (size_t)n);
  }
  if (strcmp(path, "/status") == 0) {
    long code = iparam(query, "code", 500);
    int n = snprintf(body, sizeof(body), "{\"message\":\"status %ld\"}", code);
    return respond(fd, (int)code, "application/json", conn_hdr, body, (size_t)n);
  }
  if (strcmp(path, "/slow_headers") == 0) {
    msleep(iparam(query, "ms", 2000));
    return respond(fd, 200, "text/plain", conn_hdr, "late", 4);
  }
  if (strcmp(path, "/slow_body") == 0) {
    long chunks = iparam(query, "chunks", 10), ms = iparam(query, "ms", 200);
    if (sendf(fd, "HTTP/1.1 200 X\r\nContent-Length: %ld\r\n\r\n", chunks * 5) != 0) return -1;
    for (long i = 0; i < chunks; i++) {
      msleep(ms);
      if (send_all(fd, "slow\n", 5) != 0) return -1;
    }
    return 0;
  }
  if (strcmp(path, "/reset") == 0) {
    if (sendf(fd, "HTTP/1.1 200 X\r\nContent-Length: 100000\r\n\r\n") != 0) return -1;
    memset(body, 'r', 1000);
    send_all(fd, body, 1000);
    msleep(50);
    struct linger lg = {1, 0};             /* close with RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    return -1;
  }
  if (strcmp(path, "/flaky") == 0) {         /* `fail` failures per key, then success */
    long hit = key_hit(param(query, "key", v, sizeof(v)) ? v : "flaky");
    if (hit <= iparam(query, "fail", 2)) {
      long code = iparam(query, "code", 503);
      int n = snprintf(body, sizeof(body), "{\"message\":\"try again\",\"hit\":%ld}", hit);
      return respond(fd, (int)code, "application/json", conn_hdr, body, (size_t)n);
    }
    int n = snprintf(body, sizeof(body), "{\"ok\":true,\"hit\":%ld}", hit);
    return respond(fd, 200, "application/json", conn_hdr, body, (size_t)n);
  }
  if (strcmp(path, "/drop") == 0) {          /* `fail` closed connections per key, then 200 */
    long hit = key_hit(param(query, "key", v, sizeof(v)) ? v : "drop");
    if (hit <= iparam(query, "fail", 1)) return -1;
    return respond(fd, 200, "text/plain", conn_hdr, "ok", 2);
  }
  if (strcmp(path, "/ratelimit") == 0) {
    long hit = key_hit(param(query, "key", v, sizeof(v)) ? v : "rl");
    if (hit <= iparam(query, "fail", 1)) {
      char extra[128];
      snprintf(extra, sizeof(extra), "Retry-After: %ld\r\n%s", iparam(query, "after", 1),
               conn_hdr);
      return respond(fd, 429, "application/json", extra, "{\"message\":\"slow down\"}", 23);
    }
    return respond(fd, 200, "text/plain", conn_hdr, "ok", 2);
  }
  if (strcmp(path, "/badjson") == 0) {
    const char *j = "{\"token\": \"abc\", not json at all <html>";
    return respond(fd, iparam(query, "code", 200), "application/json", conn_hdr, j, strlen(j));
  }
  if (strcmp(path, "/chunked") == 0) {
    long n = iparam(query, "n", 5);
    if (sendf(fd, "HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n%s\r\n", conn_hdr) != 0)
      return -1;
    for (long i = 0; i < n; i++)
      if (sendf(fd, "%x\r\npart %ld\n\r\n", (unsigned)(snprintf(v, sizeof(v), "part %ld\n", i)),
                i) != 0)
        return -1;
    return sendf(fd, "0\r\n\r\n");
  }
  if (strcmp(path, "/huge") == 0) {          /* `bytes` of a known pattern */
    long long total = atoll(param(query, "bytes", v, sizeof(v)) ? v : "1048576");
    bool chunked = iparam(query, "chunked", 0) != 0;
    if (chunked) sendf(fd, "HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n");
    else sendf(fd, "HTTP/1.1 200 X\r\nContent-Length: %lld\r\n\r\n", total);
    static char pat[65536 + 26];             /* byte i of the body is 'a' + i % 26 */
    for (size_t i = 0; i < sizeof(pat); i++) pat[i] = (char)('a' + i % 26);
    for (long long off = 0; off < total;) {
      size_t k = 65536;
      if ((long long)k > total - off) k = (size_t)(total - off);
      if (chunked && sendf(fd, "%zx\r\n", k) != 0) return -1;
      if (send_all(fd, pat + off % 26, k) != 0) return -1;
      if (chunked && send_all(fd, "\r\n", 2) != 0) return -1;
      off += (long long)k;
    }
    if (chunked) sendf(fd, "0\r\n\r\n");
    return 0;
  }
  if (strcmp(path, "/redirect_loop") == 0)
    return respond(fd, 302, "text/plain", "Location: /redirect_loop\r\n", "", 0);
  if (strcmp(path, "/redirect") == 0) {
    char extra[300];
    snprintf(extra, sizeof(extra), "Location: %s\r\n",
             param(query, "to", v, sizeof(v)) ? v : "/hello");
    return respond(fd, 302, "text/plain", extra, "", 0);
  }
  if (strcmp(path, "/close") == 0) {
    respond(fd, 200, "text/plain", "Connection: close\r\n", "bye", 3);
    return -1;
  }
  return respond(fd, 404, "application/json", conn_hdr, "{\"message\":\"no such path\"}", 26);
}

static void *serve(void *arg) {
  Conn *c = arg;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  pthread_mutex_lock(&lock);
  n_connections++;
  pthread_mutex_unlock(&lock);
  char line[8192], hdrs[8192];
  for (;;) {
    if (read_line(c, line, sizeof(line)) != 0) break;
    if (line[0] == 0) continue;
    char method[16], target[4096];
    if (sscanf(line, "%15s %4095s", method, target) != 2) break;
    long long clen = -1;
    bool chunked = false, close_after = false;
    size_t hl = 0;
    hdrs[0] = 0;
    for (;;) {
      if (read_line(c, line, sizeof(line)) != 0) goto out;
      if (line[0] == 0) break;
      int k = snprintf(hdrs + hl, sizeof(hdrs) - hl, "%s\n", line);
      if (k > 0 && hl + (size_t)k < sizeof(hdrs)) hl += (size_t)k;
      if (strncasecmp(line, "content-length:", 15) == 0) clen = atoll(line + 15);
      if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strcasestr(line, "chunked"))
        chunked = true;
      if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line, "close"))
        close_after = true;
    }
    uint64_t sum = 0, count = 0;
    if (chunked) {
      for (;;) {
        if (read_line(c, line, sizeof(line)) != 0) goto out;
        uint64_t n = strtoull(line, NULL, 16);
        if (n == 0) {
          while (read_line(c, line, sizeof(line)) == 0 && line[0] != 0) {}
          break;
        }
        if (read_body(c, n, &sum, &count) != 0 || read_line(c, line, sizeof(line)) != 0)
          goto out;
      }
    } else if (clen > 0 && read_body(c, (uint64_t)clen, &sum, &count) != 0) {
      break;
    }
    pthread_mutex_lock(&lock);
    n_requests++;
    pthread_mutex_unlock(&lock);
    char *q = strchr(target, '?');
    const char *query = "";
    if (q != NULL) {
      *q = 0;
      query = q + 1;
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (route(c, method, target, query, hdrs, count, sum, close_after) != 0 || close_after)
      break;
  }
out:
  close(c->fd);
  free(c);
  return NULL;
}

static void *accept_loop(void *arg) {
  int lfd = (int)(intptr_t)arg;
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      msleep(10);
      continue;
    }
    Conn *c = calloc(1, sizeof(*c));
    c->fd = fd;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 << 10);
    if (pthread_create(&th, &attr, serve, c) != 0) {
      close(fd);
      free(c);
    }
    pthread_attr_destroy(&attr);
  }
  return NULL;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  const char *unix_path = NULL;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "-u") == 0 && i + 1 < argc) unix_path = argv[++i];
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0) {
    perror("listen");
    return 1;
  }
  socklen_t sl = sizeof(sa);
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  if (unix_path != NULL) {
    int ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof(su.sun_path), "%s", unix_path);
    unlink(unix_path);
    if (bind(ufd, (struct sockaddr *)&su, sizeof(su)) != 0 || listen(ufd, 1024) != 0) {
      perror("unix listen");
      return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, accept_loop, (void *)(intptr_t)ufd);
  }
  printf("port %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  accept_loop((void *)(intptr_t)lfd);
  return 0;
}
