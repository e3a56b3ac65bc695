/* http_head.h: a small, bounded parser for an HTTP/1.x response head (status line and header
 * lines up to the blank line), for the raw upgraded stream (http_upgrade.c). No Lua, no libuv
 * and no allocation, so a libFuzzer target can build core/http_head.c alone and call
 * sl_http_head_parse on arbitrary bytes. */
#ifndef SANDLOT_HTTP_HEAD_H
#define SANDLOT_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

enum { SL_HEAD_BAD = -1, SL_HEAD_MORE = 0, SL_HEAD_DONE = 1 };

typedef struct SlHttpHead {
  int minor;                   /* HTTP/1.<minor> */
  int status;                  /* 100..599 */
  size_t length;               /* bytes of the head, blank line included: the body starts here */
  size_t reason_off, reason_len;
  size_t fields_off, fields_len; /* the header lines as sent, up to the blank line */
} SlHttpHead;

/* Parses buf[0..len). Returns SL_HEAD_DONE (head filled in), SL_HEAD_MORE (a valid prefix: read
 * more) or SL_HEAD_BAD (*why says what is wrong; also when no head ends within max bytes).
 * Lines end in CRLF or LF. Never reads past buf + len. */
int sl_http_head_parse(const char *buf, size_t len, size_t max, SlHttpHead *head,
                       const char **why);

/* Finds header `name` (case-insensitive) in a parsed head; *value, *vlen: trimmed value. */
bool sl_http_head_field(const char *buf, const SlHttpHead *head, const char *name,
                        const char **value, size_t *vlen);

#endif
