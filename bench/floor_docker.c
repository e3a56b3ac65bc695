/* floor_docker.c: the floor for the Docker figures: the raw Engine API (v1.41) over its unix
 * socket with one libcurl easy handle in a plain loop, no event loop, no Lua.
 *   floor_docker SOCKET IMAGE exec N   one container (set up untimed), then N times: exec
 *                                      create + start (output read) + inspect until finished
 *   floor_docker SOCKET IMAGE life N   N times: create, start, one such exec, remove
 * Prints the elapsed seconds of the timed part. The container is made like the docker
 * provider makes its sandboxes (same body), so both sides ask the daemon for the same work.
 * Build: cc -O2 -o floor_docker bench/floor_docker.c $(pkg-config --cflags --libs libcurl) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define API "http://docker/v1.41"

typedef struct {
  char *data;
  size_t len, cap;
} Buf;

static CURL *e;
static Buf body;

static size_t sink(char *data, size_t size, size_t n, void *ud) {
  Buf *b = ud;
  size_t k = size * n;
  if (b->len + k + 1 > b->cap) {
    b->cap = (b->len + k + 1) * 2;
    b->data = realloc(b->data, b->cap);
    if (b->data == NULL) abort();
  }
  memcpy(b->data + b->len, data, k);
  b->len += k;
  b->data[b->len] = 0;
  return k;
}

/* One request; returns the HTTP status (0 on a transport failure); the body is in `body`. */
static long call(const char *method, const char *path, const char *json) {
  char url[512];
  snprintf(url, sizeof(url), "%s%s", API, path);
  struct curl_slist *hs = NULL;
  if (json != NULL) hs = curl_slist_append(hs, "Content-Type: application/json");
  body.len = 0;
  if (body.data != NULL) body.data[0] = 0;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);           /* resets POSTFIELDS from before */
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (json != NULL) curl_easy_setopt(e, CURLOPT_POSTFIELDS, json);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hs);
  CURLcode rc = curl_easy_perform(e);
  curl_slist_free_all(hs);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
  if (rc != CURLE_OK) {
    fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(rc));
    return 0;
  }
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

static int id_of(char *out, size_t size) {
  const char *p = body.data ? strstr(body.data, "\"Id\":\"") : NULL;
  if (p == NULL) return -1;
  p += 6;
  size_t n = strcspn(p, "\"");
  if (n == 0 || n >= size) return -1;
  memcpy(out, p, n);
  out[n] = 0;
  return 0;
}

static int fail(const char *what, long status) {
  fprintf(stderr, "%s: HTTP %ld: %s\n", what, status, body.data ? body.data : "");
  return -1;
}

/* exec create + start (stdout and stderr multiplexed, read to the end) + inspect. */
static int exec_once(const char *cid) {
  char path[256], eid[128];
  snprintf(path, sizeof(path), "/containers/%s/exec", cid);
  long st = call("POST", path, "{\"AttachStdin\":false,\"AttachStdout\":true,"
                 "\"AttachStderr\":true,\"Tty\":false,\"Cmd\":[\"echo\",\"hello\"]}");
  if (st != 201 || id_of(eid, sizeof(eid)) != 0) return fail("exec create", st);
  snprintf(path, sizeof(path), "/exec/%s/start", eid);
  st = call("POST", path, "{\"Detach\":false,\"Tty\":false}");
  if (st != 200 && st != 101) return fail("exec start", st);
  if (body.len < 8 + 6 || memcmp(body.data + 8, "hello\n", 6) != 0)
    return fail("exec output", st);
  snprintf(path, sizeof(path), "/exec/%s/json", eid);
  for (;;) {                                 /* the stream can end just before the exit code */
    st = call("GET", path, NULL);
    if (st != 200) return fail("exec inspect", st);
    if (strstr(body.data, "\"Running\":false") != NULL) break;
  }
  if (strstr(body.data, "\"ExitCode\":0") == NULL) return fail("exec exit code", st);
  return 0;
}

/* The docker provider's container body (providers/docker.lua: container_body). */
static const char *CREATE =
  "{\"Image\":\"%s\",\"Entrypoint\":[\"sleep\"],\"Cmd\":[\"2147483647\"],"
  "\"WorkingDir\":\"/sandbox\",\"Labels\":{\"sandlot\":\"1\",\"sandlot.id\":\"bench-floor\"},"
  "\"Tty\":false,\"OpenStdin\":false,"
  "\"HostConfig\":{\"NetworkMode\":\"none\",\"Init\":false},\"StopTimeout\":1}";

static int container_up(const char *image, char *cid, size_t size) {
  char json[1024];
  snprintf(json, sizeof(json), CREATE, image);
  long st = call("POST", "/containers/create", json);
  if (st != 201 || id_of(cid, size) != 0) return fail("create", st);
  char path[256];
  snprintf(path, sizeof(path), "/containers/%s/start", cid);
  st = call("POST", path, "");
  if (st != 204 && st != 304) return fail("start", st);
  return 0;
}

static int container_rm(const char *cid) {
  char path[256];
  snprintf(path, sizeof(path), "/containers/%s?force=true&v=true", cid);
  long st = call("DELETE", path, NULL);
  if (st != 204) return fail("remove", st);
  return 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: floor_docker SOCKET IMAGE exec|life N\n");
    return 2;
  }
  const char *image = argv[2], *mode = argv[3];
  long n = atol(argv[4]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, argv[1]);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  char cid[128];
  double t0, t1;
  if (strcmp(mode, "exec") == 0) {
    if (container_up(image, cid, sizeof(cid)) != 0) return 1;
    t0 = now();
    for (long i = 0; i < n; i++)
      if (exec_once(cid) != 0) { container_rm(cid); return 1; }
    t1 = now();
    if (container_rm(cid) != 0) return 1;
  } else {
    t0 = now();
    for (long i = 0; i < n; i++) {
      if (container_up(image, cid, sizeof(cid)) != 0) return 1;
      if (exec_once(cid) != 0) { container_rm(cid); return 1; }
      if (container_rm(cid) != 0) return 1;
    }
    t1 = now();
  }
  printf("%.6f\n", t1 - t0);
  curl_easy_cleanup(e);
  free(body.data);
  curl_global_cleanup();
  return 0;
}
