/* floor_http.c: the floor for HTTP requests per second, against the same local server sandlot
 * is measured on, with no event loop and no Lua. Usage: floor_http URL N [P]. With P absent
 * or 1: one libcurl easy handle doing sequential keep-alive GETs in a plain loop. With P > 1:
 * one multi handle keeping P transfers in flight (each easy handle re-added as it finishes,
 * so its connection is reused) until N are done. Prints "req/s R (...)".
 * Build: cc -O2 -o floor_http bench/floor_http.c $(pkg-config --cflags --libs libcurl) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <curl/curl.h>

static size_t sink(char *data, size_t size, size_t n, void *ud) {
  (void)data;
  *(size_t *)ud += size * n;
  return size * n;
}

static CURL *easy(const char *url, size_t *bytes) {
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, bytes);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  return e;
}

static int sequential(const char *url, long n, size_t *bytes) {
  CURL *e = easy(url, bytes);
  for (long i = 0; i < n; i++) {
    CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_OK) {
      fprintf(stderr, "request %ld: %s\n", i, curl_easy_strerror(rc));
      return 1;
    }
  }
  curl_easy_cleanup(e);
  return 0;
}

static int parallel(const char *url, long n, long p, size_t *bytes) {
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, p);
  CURL **es = calloc((size_t)p, sizeof(*es));
  long started = 0, done = 0;
  for (long i = 0; i < p && started < n; i++, started++) {
    es[i] = easy(url, bytes);
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
      curl_multi_remove_handle(m, e);
      done++;
      if (started < n) {                  /* same handle again: its connection is kept */
        started++;
        curl_multi_add_handle(m, e);
      }
    }
    if (done < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  for (long i = 0; i < p; i++)
    if (es[i] != NULL) curl_easy_cleanup(es[i]);
  free(es);
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
  size_t bytes = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = p == 1 ? sequential(argv[1], n, &bytes) : parallel(argv[1], n, p, &bytes);
  if (rc != 0) return rc;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("req/s %.0f (%ld requests, %ld in flight, %zu bytes, %.3fs)\n", (double)n / secs, n, p,
         bytes, secs);
  curl_global_cleanup();
  return 0;
}
