/* http.h: what the files of sandlot.core.http share: the per-host multi handle, a transfer
 * (Xfer) and the functions that run it. http_multi.c drives libcurl's multi_socket interface
 * on the host's libuv loop and turns curl's news into wake-ups; http.c is the Lua face (options,
 * request handles); http_upgrade.c and http_stream.c are the raw upgraded stream
 * (sandlot.http.upgrade, http_upgrade.h); http_serve.c is the HTTP/1.1 server
 * (sandlot.http.serve) and http_request.c its request parser; tls.c is TLS for the last two. */
#ifndef SANDLOT_HTTP_H
#define SANDLOT_HTTP_H

#include <curl/curl.h>

#include "outbuf.h"

#define REQ_MT "sandlot.http.request"
#define HEADERS_MAX (256u << 10)
#define POOL_MAX 64                      /* idle transfers (with their easy handles) kept */

typedef struct Xfer Xfer;

enum { BODY_NONE, BODY_STRING, BODY_FILE, BODY_PRODUCER };
enum { WAIT_NONE, WAIT_HEAD, WAIT_READ, WAIT_DONE, WAIT_FETCH };

/* A request's shape: everything that configures an easy handle except the URL and the body.
 * A pooled transfer keeps the options of its last shape set on its easy handle, and a request
 * of the same shape only sets its URL (and body) on it: no curl_easy_reset, no re-applying.
 * While a request is read, the strings are borrowed from Lua; in Xfer.shape they are owned.
 * hdrs (the header lines, then "Expect:" for a body) is Xfer.hdrs; nhdrs counts the first. */
typedef struct {
  const char *method, *unix_socket, *ca_file, *ca_path;
  const char *client_cert, *client_key;         /* PEM text (a TLS client certificate): curl
                                                   copies them (CURLOPT_SSLCERT_BLOB); the
                                                   owned key copy is wiped when forgotten */
  size_t client_cert_len, client_key_len;
  long timeout_ms, connect_ms, max_redirects;   /* 0: none */
  curl_off_t max_body;                          /* 0: none */
  bool follow, insecure, fresh, raw_chunked, stream;
  int body_kind;                                /* BODY_*: FILE and PRODUCER are never kept */
  size_t nhdrs;
} SlHttpShape;

typedef struct Multi Multi;

/* One uv_poll per socket curl watches. A connection's socket keeps its Sock (and its poll,
 * unreferenced) while the connection idles in curl's cache, so the next transfer on it
 * restarts nothing: each uv_poll_start is two epoll_ctl calls, a new uv_poll three more and an
 * ioctl. The Sock goes when curl closes the socket (CURLOPT_CLOSESOCKETFUNCTION). */
typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  int events;                              /* what the uv_poll watches now */
  bool watched;                            /* curl wants it (until CURL_POLL_REMOVE) */
  Multi *m;
  SlHost *host;
} Sock;

typedef struct {                           /* Multi.fds[fd] */
  Sock *k;
  bool conn;                               /* a connection socket curl opened through us: its
                                              close is reported (other sockets, such as the
                                              resolver's, drop their Sock on REMOVE) */
} FdSlot;

struct Multi {
  CURLM *cm;
  uv_timer_t timer;
  SlHost *host;
  Xfer *live;                              /* every transfer not yet freed */
  Xfer *mark_head, *mark_tail;             /* transfers with news for their waiters */
  int depth;                               /* > 0 while inside curl (no removals then) */
  int sockets;                             /* watched by curl now */
  FdSlot *fds;                             /* by fd number, nfds of them */
  int nfds;
  int pooled;                              /* idle transfers in pool[], each with its easy
                                              handle configured for x->shape (if shaped) */
  Xfer *pool[POOL_MAX];
};

struct Xfer {
  Multi *m;                                /* NULL once the host is closing */
  CURL *easy;
  struct curl_slist *hdrs;
  Xfer *prev, *next;                       /* m->live */
  Xfer *mark_next;
  bool marked;
  SlTask *reader;                          /* a task in headers(), read() or wait() */
  int wait_kind;
  SlTask *writer;                          /* a task in write() */
  /* response */
  char *hbuf;                              /* raw header lines of the latest response */
  size_t hlen, halloc;
  long cur_status;
  bool cur_location, follow, head_done;
  char *body;
  size_t blen, balloc, max_body;
  uint64_t body_total;
  bool over_cap, stream;
  SlQueue q;                               /* stream = true: body chunks for read() */
  bool recv_paused, send_paused;
  /* request body */
  int body_kind;
  int fd;
  const char *pend;                        /* the producer's chunk being sent: a Lua string
                                              anchored in the handle's uservalue 2 */
  size_t pend_len, pend_off;
  bool pend_eof;
  /* kept across requests while pooled */
  SlHttpShape shape;                       /* what x->easy is configured for, if shaped */
  bool shaped;                             /* false: curl_easy_reset before the next use */
  /* state */
  bool boxless;                            /* http.fetch: no request handle; freed by C */
  bool completed;                          /* curl reported it done (CURLMSG_DONE) */
  bool added, done, aborted;
  CURLcode result;
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct { Xfer *x; } ReqBox;

/* http_multi.c */
Multi *sl_http_multi(lua_State *L);       /* the host's multi handle, created on first use */
Multi *sl_http_multi_of(SlHost *h);      /* the host's multi handle, or NULL */
void sl_http_after(Multi *m);             /* after curl returned: detach finished, wake waiters */
void sl_http_unmark(Xfer *x);
void sl_http_detach(Xfer *x, CURLcode rc); /* out of the multi (never inside a curl callback) */
void sl_http_free(Xfer *x);               /* unlinks x; back to the pool (or freed) */
void sl_http_release(Xfer *x);            /* frees x and everything it holds, easy included */
int sl_http_push_error(lua_State *L, Xfer *x);   /* nil, err; returns 2 */
bool sl_http_failed(Xfer *x);
void sl_http_push_head(lua_State *L, Xfer *x);
void sl_http_push_result(lua_State *L, Xfer *x);
void sl_http_pop_chunk(lua_State *L, Xfer *x);
void sl_http_unpause(Xfer *x);
void sl_http_resume_recv(Xfer *x);        /* unpauses the download once the queue drained */
size_t sl_http_header_cb(char *data, size_t size, size_t n, void *ud);
size_t sl_http_write_cb(char *data, size_t size, size_t n, void *ud);
size_t sl_http_read_cb(char *out, size_t size, size_t n, void *ud);
curl_socket_t sl_http_open_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *addr);
int sl_http_close_cb(void *ud, curl_socket_t fd);

/* http_fetch.c: shapes, taking a pooled transfer, http.fetch */
/* Reads a shape from the request table at opts; raises on misuse. Strings are borrowed from
 * the table. The header list, if any, is left pushed on the stack at *hidx (else 0). */
void sl_http_shape_read(lua_State *L, int opts, SlHttpShape *s, int *hidx);
/* A transfer configured for shape s (headers at hidx), linked into m->live, response state
 * clear: a pooled one of the same shape as it is, else one reset and configured (a client
 * certificate and key checked to belong together first). NULL: err says why. */
Xfer *sl_http_take(Multi *m, lua_State *L, const SlHttpShape *s, int hidx, SlError *err);
/* Sets the URL and, for BODY_STRING, the body (not copied: the caller anchors it). */
void sl_http_set_target(Xfer *x, const char *url, const char *body, size_t body_len);
bool sl_http_recycle(Xfer *x);            /* into m->pool, options kept; false: no room */
int sl_http_fetch(lua_State *L);          /* http.fetch(method, url, headers, body, ...) */

/* http_response.c: responses (status and body at once, the rest built when first read) */
int sl_http_push_response(lua_State *L, Xfer *x);   /* {status, headers, body, ...}, json? */
bool sl_http_push_headers(lua_State *L, const char *p, size_t len);   /* true: a JSON type */

/* http_upgrade.c */
int sl_http_upgrade(lua_State *L);        /* http.upgrade(opts) -> stream | nil, err */
void sl_http_upgrade_open(lua_State *L);  /* registers the sandlot.http.stream metatable */

/* http_serve.c */
int sl_http_serve(lua_State *L);          /* http.serve(opts, dispatch) -> server | nil, err */
void sl_http_serve_open(lua_State *L);

/* http_request.c */
int sl_http_parse_request(lua_State *L);  /* http.parse_request(bytes, ...) -> {req, ...} */    /* registers the server and conn metatables */

#endif
