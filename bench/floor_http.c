/* floor_http.c: the floor for HTTP requests per second: one libcurl easy handle doing
 * sequential keep-alive GETs in a plain loop (no event loop, no Lua), against the same local
 * server sandlot is measured on. Usage: floor_http URL N; prints "req/s R".
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

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: floor_http URL N\n");
    return 2;
  }
  long n = atol(argv[2]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *e = curl_easy_init();
  size_t bytes = 0;
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &bytes);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_OK) {
      fprintf(stderr, "request %ld: %s\n", i, curl_easy_strerror(rc));
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("req/s %.0f (%ld requests, %zu bytes, %.3fs)\n", (double)n / secs, n, bytes, secs);
  curl_easy_cleanup(e);
  curl_global_cleanup();
  return 0;
}
