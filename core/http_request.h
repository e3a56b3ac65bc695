/* http_request.h: one HTTP/1.x request read with libhttp-parser within limits (http_request.c),
 * shared by the server (http_serve.c) and the parser's fuzz entry (http.parse_request). */
#ifndef SANDLOT_HTTP_REQUEST_H
#define SANDLOT_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <http_parser.h>
#include <lua.h>

typedef struct SlReq {
  http_parser p;
  size_t max_head, max_body;
  char *head;                              /* url '\0' (name '\0' value '\0')* */
  size_t head_len, head_cap;
  int last;                                /* 0: url, 1: a name, 2: a value, 3: body */
  char *body;
  size_t body_len, body_cap;
  int err_status;                          /* the answer a refused request gets */
  bool keep_alive;                         /* of the request just completed */
  /* Expect: 100-continue on a request with a body: false fails the request (may be NULL) */
  bool (*on_continue)(void *ud);
  void *ud;
} SlReq;

enum { SL_REQ_MORE, SL_REQ_DONE, SL_REQ_BAD };

void sl_req_init(SlReq *r, size_t max_head, size_t max_body);
void sl_req_free(SlReq *r);                /* the buffers; r can be initialised again */
/* Parses up to n bytes. SL_REQ_MORE: all taken, the request is not complete. SL_REQ_DONE:
 * *used bytes taken and a request is complete (sl_req_push it; sl_req_next before feeding
 * again). SL_REQ_BAD: refused; *status is the answer (400, 413, 431 or 503). */
int sl_req_feed(SlReq *r, const char *data, size_t n, size_t *used, int *status);
void sl_req_next(SlReq *r);                /* after DONE: drops the body, parses on */
void sl_req_drop_body(SlReq *r);           /* frees the body (it went to Lua) */
/* Pushes req = {method, path, query, headers, body, keep_alive, http_version}. */
void sl_req_push(lua_State *L, SlReq *r);

#endif
