/* outbuf.h: the one output capture of the core, shared by proc.c and the SSH exec (ssh.so,
 * which reaches these SL_SHARED functions through the host binary's --export-dynamic): head
 * and tail capture under a cap, a chunk queue with water marks, the exec result table and the
 * signal-name table. The Lua face is sandlot.core.outbuf (used by sandlot.exec's sink). */
#ifndef SANDLOT_OUTBUF_H
#define SANDLOT_OUTBUF_H

#include "internal.h"

#define SL_DEFAULT_MAX_OUTPUT ((size_t)16 << 20) /* bytes kept per stream unless told */
#define SL_QUEUE_HIGH ((size_t)4 << 20)          /* stop reading above this many queued bytes */
#define SL_QUEUE_LOW ((size_t)1 << 20)           /* and start again below this */

/* Keeps the first cap bytes of a stream; once more arrives, the first cap/2 bytes stay and
 * the rest of the buffer becomes a ring holding the latest cap - cap/2 bytes. `wrapped` (the
 * result's `truncated`) means more than cap bytes arrived. cap == 0 keeps nothing and never
 * wraps; total counts every byte either way. Zero-initialise, set cap, free with
 * sl_capture_free. */
typedef struct SlCapture {
  size_t cap, len, alloc, ring_pos;
  char *buf;                               /* first `len` bytes; once wrapped: head | ring */
  bool wrapped;
  uint64_t total;
} SlCapture;

SL_SHARED void sl_capture_add(SlCapture *c, const char *data, size_t n);
SL_SHARED void sl_capture_push(lua_State *L, const SlCapture *c);  /* head .. tail as one string */
SL_SHARED void sl_capture_free(SlCapture *c);

/* A FIFO of owned byte chunks, each tagged with its stream (0 stdout, 1 stderr, or any small
 * integer the owner picks). The owner stops its source when sl_queue_full and restarts it when
 * sl_queue_drained. */
typedef struct SlChunk {
  struct SlChunk *next;
  int which;
  size_t len;
  char data[];
} SlChunk;

typedef struct SlQueue {
  SlChunk *head, *tail;
  size_t bytes;
} SlQueue;

SL_SHARED bool sl_queue_push(SlQueue *q, int which, const char *data, size_t n); /* false: OOM */
SL_SHARED SlChunk *sl_queue_pop(SlQueue *q);       /* NULL when empty; the caller frees it */
SL_SHARED void sl_queue_clear(SlQueue *q);
static inline bool sl_queue_full(const SlQueue *q) { return q->bytes >= SL_QUEUE_HIGH; }
static inline bool sl_queue_drained(const SlQueue *q) { return q->bytes < SL_QUEUE_LOW; }

/* What an exec result is made of. signal > 0: killed by that signal, and exit_code becomes
 * 128 + signal (the shell's rule); otherwise exit_code is as given. signal_name, pid and pgid
 * appear in the table only when set (non-NULL, > 0). */
typedef struct SlExecResult {
  const SlCapture *out[2];                 /* stdout, stderr */
  int64_t exit_code;
  int signal;
  const char *signal_name;
  bool timed_out;
  double duration;                         /* seconds */
  int64_t pid, pgid;
} SlExecResult;

/* Pushes {exit_code, signal?, signal_name?, stdout, stdout_bytes, stderr, stderr_bytes,
 * timed_out, truncated, duration, pid?, pgid?}. */
SL_SHARED void sl_exec_result_push(lua_State *L, const SlExecResult *r);

/* Signal names without "SIG" ("TERM") <-> Linux numbers; a "SIG" prefix is accepted.
 * sl_signal_number returns 0 for an unknown name, sl_signal_name NULL for an unknown number. */
SL_SHARED int sl_signal_number(const char *name);
SL_SHARED const char *sl_signal_name(int sig);

#endif
