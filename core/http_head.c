/* http_head.c: the HTTP/1.x response head parser of http_head.h. Strict where a mistake would
 * be costly (status line, header names, control bytes, size) and nothing more: no folding, no
 * HTTP/0.9, no HTTP/2. */
#include <string.h>
#include <strings.h>

#include "http_head.h"

/* RFC 9110 tchar: what a header name may hold */
static bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the end of the line starting at p: returns the index of its LF, or -1 for none yet.
 * *bad: a bare CR or a NUL byte inside the line. */
static long line_end(const char *buf, size_t p, size_t len, bool *bad) {
  for (size_t i = p; i < len; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c == '\n') return (long)i;
    if (c == '\0' || (c == '\r' && i + 1 < len && buf[i + 1] != '\n')) {
      *bad = true;
      return -1;
    }
  }
  return -1;
}

static size_t content_len(const char *buf, size_t start, size_t lf) {
  return lf > start && buf[lf - 1] == '\r' ? lf - 1 - start : lf - start;
}

static int status_line(const char *s, size_t n, SlHttpHead *h, const char **why) {
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ') {
    *why = "not an HTTP/1.x status line";
    return SL_HEAD_BAD;
  }
  int status = 0;
  for (int i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') {
      *why = "the status is not three digits";
      return SL_HEAD_BAD;
    }
    status = status * 10 + (s[i] - '0');
  }
  if (status < 100 || status > 599 || (n > 12 && s[12] != ' ')) {
    *why = "the status is not three digits";
    return SL_HEAD_BAD;
  }
  for (size_t i = 12; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      *why = "a control byte in the reason phrase";
      return SL_HEAD_BAD;
    }
  }
  h->minor = s[7] - '0';
  h->status = status;
  h->reason_off = n > 13 ? 13 : n;
  h->reason_len = n > 13 ? n - 13 : 0;
  return SL_HEAD_DONE;
}

static bool field_line(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i == n || s[i] != ':') return false;   /* also rejects folded lines */
  for (i++; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

int sl_http_head_parse(const char *buf, size_t len, size_t max, SlHttpHead *h,
                       const char **why) {
  memset(h, 0, sizeof(*h));
  *why = NULL;
  size_t limit = len < max ? len : max, p = 0;
  bool bad = false;
  long lf = line_end(buf, 0, limit, &bad);
  if (lf < 0) {
    if (bad) *why = "a bare CR or a NUL byte in the head";
    else if (limit >= 5 && memcmp(buf, "HTTP/", 5) != 0) *why = "not an HTTP/1.x status line";
    else if (len >= max) *why = "the response head is too large";
    return *why != NULL ? SL_HEAD_BAD : SL_HEAD_MORE;
  }
  if (status_line(buf, content_len(buf, 0, (size_t)lf), h, why) != SL_HEAD_DONE)
    return SL_HEAD_BAD;
  p = (size_t)lf + 1;
  h->fields_off = p;
  for (;;) {
    lf = line_end(buf, p, limit, &bad);
    if (lf < 0) {
      if (bad) *why = "a bare CR or a NUL byte in the head";
      else if (len >= max) *why = "the response head is too large";
      return *why != NULL ? SL_HEAD_BAD : SL_HEAD_MORE;
    }
    size_t n = content_len(buf, p, (size_t)lf);
    if (n == 0) {
      h->fields_len = p - h->fields_off;
      h->length = (size_t)lf + 1;
      return SL_HEAD_DONE;
    }
    if (!field_line(buf + p, n)) {
      *why = "a malformed header line";
      return SL_HEAD_BAD;
    }
    p = (size_t)lf + 1;
  }
}

bool sl_http_head_field(const char *buf, const SlHttpHead *h, const char *name,
                        const char **value, size_t *vlen) {
  size_t nlen = strlen(name), p = h->fields_off, end = h->fields_off + h->fields_len;
  while (p < end) {
    const char *lfp = memchr(buf + p, '\n', end - p);
    size_t lf = lfp != NULL ? (size_t)(lfp - buf) : end;
    size_t n = content_len(buf, p, lf);
    if (n > nlen && buf[p + nlen] == ':' && strncasecmp(buf + p, name, nlen) == 0) {
      size_t v = p + nlen + 1, ve = p + n;
      while (v < ve && (buf[v] == ' ' || buf[v] == '\t')) v++;
      while (ve > v && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t')) ve--;
      *value = buf + v;
      *vlen = ve - v;
      return true;
    }
    p = lf + 1;
  }
  return false;
}
