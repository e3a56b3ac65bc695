/* api_server.c: a scriptable HTTP/1.1 JSON service for spec/lib/api_spec.lua (compiled by
 * spec/fakes/api_server.lua with cc; not part of the build). One thread per connection,
 * Content-Length bodies only. Prints "port N\n" once listening on 127.0.0.1. Routes:
 *   .../echo         200 {"method","path","query","authorization","body"}
 *   /count?key=K     200 {"n": hits of K so far}
 *   anything else    status=N (200), body=TEXT (URL-encoded; "{auth}" becomes the
 *                    Authorization header, JSON-escaped), ctype=T, retry_after=S */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct { char key[64]; long hits; } keys[64];

static long hit(const char *key) {
  long n = 0;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < 64; i++) {
    if (keys[i].key[0] == 0) snprintf(keys[i].key, sizeof(keys[i].key), "%s", key);
    if (strcmp(keys[i].key, key) == 0) { n = ++keys[i].hits; break; }
  }
  pthread_mutex_unlock(&lock);
  return n;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The URL-decoded value of query parameter name, or NULL. */
static char *param(const char *q, const char *name, char *out, size_t size) {
  size_t nl = strlen(name);
  for (const char *p = q; p && *p;) {
    if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
      size_t o = 0;
      for (p += nl + 1; *p && *p != '&' && o + 1 < size; p++) {
        if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
          out[o++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
          p += 2;
        } else {
          out[o++] = *p == '+' ? ' ' : *p;
        }
      }
      out[o] = 0;
      return out;
    }
    p = strchr(p, '&');
    if (p) p++;
  }
  return NULL;
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

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int respond(int fd, int status, const char *ctype, const char *extra, const char *body) {
  char head[1024];
  int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n%s\r\n", status, ctype, strlen(body), extra);
  if (send_all(fd, head, (size_t)n) != 0) return -1;
  return send_all(fd, body, strlen(body));
}

static void *serve(void *arg) {
  int fd = (int)(long)arg, one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  static __thread char buf[BUF], body[BUF], out[BUF], tmp[BUF], esc[BUF];
  size_t len = 0;
  for (;;) {
    char *end;
    while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
      if (len == sizeof(buf) - 1) goto done;
      ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
      if (r <= 0) goto done;
      len += (size_t)r;
    }
    *end = 0;
    size_t hlen = (size_t)(end - buf) + 4;
    char method[16] = "", target[8192] = "";
    sscanf(buf, "%15s %8191s", method, target);
    char auth[4096] = "";
    long clen = 0;
    for (char *l = strstr(buf, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
      if (strncasecmp(l + 2, "authorization:", 14) == 0) {
        char *v = l + 16, *e = strstr(v, "\r\n");
        while (*v == ' ') v++;
        snprintf(auth, sizeof(auth), "%.*s", e ? (int)(e - v) : (int)strlen(v), v);
      }
      if (strncasecmp(l + 2, "content-length:", 15) == 0) clen = atol(l + 17);
    }
    if (clen < 0 || (size_t)clen >= sizeof(body)) goto done;
    while (len < hlen + (size_t)clen) {
      ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
      if (r <= 0) goto done;
      len += (size_t)r;
    }
    memcpy(body, buf + hlen, (size_t)clen);
    body[clen] = 0;
    memmove(buf, buf + hlen + clen, len - hlen - (size_t)clen);
    len -= hlen + (size_t)clen;
    char *q = strchr(target, '?');
    if (q) *q++ = 0;
    else q = "";
    int rc;
    size_t tl = strlen(target);
    if (tl >= 5 && strcmp(target + tl - 5, "/echo") == 0) {
      char ea[4096 + 64], eq[8192 + 64];
      json_escape(ea, sizeof(ea), auth);
      json_escape(eq, sizeof(eq), q);
      json_escape(esc, sizeof(esc), body);
      snprintf(out, sizeof(out), "{\"method\":\"%s\",\"path\":\"%s\",\"query\":\"%s\","
               "\"authorization\":\"%s\",\"body\":\"%s\"}", method, target, eq, ea, esc);
      rc = respond(fd, 200, "application/json", "", out);
    } else if (strcmp(target, "/count") == 0) {
      char key[64];
      long n = hit(param(q, "key", key, sizeof(key)) ? key : "k");
      snprintf(out, sizeof(out), "{\"n\":%ld}", n);
      rc = respond(fd, 200, "application/json", "", out);
    } else {
      char v[64], ctype[128], extra[128] = "";
      int status = param(q, "status", v, sizeof(v)) ? atoi(v) : 200;
      if (!param(q, "ctype", ctype, sizeof(ctype)))
        snprintf(ctype, sizeof(ctype), "application/json");
      if (param(q, "retry_after", v, sizeof(v)))
        snprintf(extra, sizeof(extra), "Retry-After: %s\r\n", v);
      if (!param(q, "body", tmp, sizeof(tmp))) tmp[0] = 0;
      json_escape(esc, sizeof(esc), auth);
      size_t o = 0;
      for (char *p = tmp; *p && o + 1 < sizeof(out);) {
        if (strncmp(p, "{auth}", 6) == 0) {
          o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", esc);
          p += 6;
        } else {
          out[o++] = *p++;
        }
      }
      out[o] = 0;
      rc = respond(fd, status, ctype, extra, out);
    }
    if (rc != 0) break;
  }
done:
  close(fd);
  return NULL;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 64) != 0) return 1;
  getsockname(s, (struct sockaddr *)&a, &al);
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    pthread_t t;
    pthread_create(&t, NULL, serve, (void *)(long)c);
    pthread_detach(t);
  }
}
