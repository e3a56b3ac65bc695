/* floor_http.c: the floor for HTTP requests per second, against the same local server sandlot
 * is measured on, with no event loop and no Lua. Usage: floor_http URL N [P]. With P absent
 * or 1: one libcurl easy handle doing sequential keep-alive GETs in a plain loop. With P > 1:
 * one multi handle keeping P transfers in flight (each easy handle re-added as it finishes,
 * so its connection is reused) until N are done. Prints "req/s R (...)".
 * Each handle asks libcurl for the same work sandlot.http's defaults do (set once, as a plain
 * libcurl program would): the same request on the wire (User-Agent, Accept-Encoding with
 * decoding), a 60 s timeout and 10 s connect timeout, redirects followed (at most 10), a 64 MiB
 * body cap, http/https only, an error buffer, and the response's header lines and body kept
 * in memory, then the status checked. Without that the ratio would charge sandlot.http for
 * libcurl's own work on a bigger request (Accept-Encoding alone is ~10k instructions of
 * libcurl per request), not for the loop and the Lua layer the figure is about.
 * Build: cc -O2 -o floor_http bench/floor_http.c $(pkg-config --cflags --libs libcurl) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define UA "User-Agent: sandlot/0.1.0"     /* as sandlot.http sends it */

typedef struct {                           /* one transfer's response, kept like sandlot's */
  char *head, *body;
  size_t hlen, blen, halloc, balloc;
  size_t *bytes;
  char errbuf[CURL_ERROR_SIZE];
} Resp;

static struct curl_slist *headers;

static int keep(char **buf, size_t *len, size_t *alloc, const char *data, size_t n) {
  if (*len + n > *alloc) {
    size_t want = *alloc ? *alloc * 2 : 512;
    while (want < *len + n) want *= 2;
    char *nb = realloc(*buf, want);
    if (nb == NULL) return 0;
    *buf = nb;
    *alloc = want;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  return 1;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  Resp *r = ud;
  if (n * size >= 5 && memcmp(data, "HTTP/", 5) == 0) r->hlen = 0;    /* a new response */
  return keep(&r->head, &r->hlen, &r->halloc, data, size * n) ? size * n : 0;
}

static size_t sink(char *data, size_t size, size_t n, void *ud) {
  Resp *r = ud;
  *r->bytes += size * n;
  return keep(&r->body, &r->blen, &r->balloc, data, size * n) ? size * n : 0;
}

static CURL *easy(const char *url, Resp *r) {
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)64 << 20);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  return e;
}

/* What a caller does with each response: check the status, start the next one empty. */
static int check(CURL *e, Resp *r) {
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  r->hlen = r->blen = 0;
  if (status != 200) {
    fprintf(stderr, "request: status %ld\n", status);
    return 1;
  }
  return 0;
}

static int sequential(const char *url, long n, size_t *bytes) {
  Resp r = {.bytes = bytes};
  CURL *e = easy(url, &r);
  for (long i = 0; i < n; i++) {
    CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_OK) {
      fprintf(stderr, "request %ld: %s\n", i, curl_easy_strerror(rc));
      return 1;
    }
    if (check(e, &r) != 0) return 1;
  }
  curl_easy_cleanup(e);
  free(r.head);
  free(r.body);
  return 0;
}

static int parallel(const char *url, long n, long p, size_t *bytes) {
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, p);
  CURL **es = calloc((size_t)p, sizeof(*es));
  Resp *rs = calloc((size_t)p, sizeof(*rs));
  long started = 0, done = 0;
  for (long i = 0; i < p && started < n; i++, started++) {
    rs[i].bytes = bytes;
    es[i] = easy(url, &rs[i]);
    curl_easy_setopt(es[i], CURLOPT_PRIVATE, (char *)&rs[i]);
    curl_multi_add_handle(m, es[i]);
  }
  int running = 1;
  while (done < n) {
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      if (msg->data.result != CURLE_OK) {
        fprintf(stderr, "request: %s\n", curl_easy_strerror(msg->data.result));
        return 1;
      }
      CURL *e = msg->easy_handle;
      Resp *r = NULL;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
      curl_multi_remove_handle(m, e);
      if (check(e, r) != 0) return 1;
      done++;
      if (started < n) {                  /* same handle again: its connection is kept */
        started++;
        curl_multi_add_handle(m, e);
      }
    }
    if (done < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  for (long i = 0; i < p; i++) {
    if (es[i] != NULL) curl_easy_cleanup(es[i]);
    free(rs[i].head);
    free(rs[i].body);
  }
  free(es);
  free(rs);
  curl_multi_cleanup(m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: floor_http URL N [P]\n");
    return 2;
  }
  long n = atol(argv[2]);
  long p = argc > 3 ? atol(argv[3]) : 1;
  if (p < 1) p = 1;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  headers = curl_slist_append(NULL, UA);
  size_t bytes = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = p == 1 ? sequential(argv[1], n, &bytes) : parallel(argv[1], n, p, &bytes);
  if (rc != 0) return rc;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("req/s %.0f (%ld requests, %ld in flight, %zu bytes, %.3fs)\n", (double)n / secs, n, p,
         bytes, secs);
  curl_slist_free_all(headers);
  curl_global_cleanup();
  return 0;
}
