/* ssh_exec.h: what the exec channel op (core/ssh_exec.c) and its Lua face
 * (core/ssh_exec_handle.c: session:exec, session:spawn and the exec handle) share: the Exec,
 * its op and the few calls the handle makes into it. Included by those two files only. */
#ifndef SANDLOT_SSH_EXEC_H
#define SANDLOT_SSH_EXEC_H

#include "outbuf.h"
#include "ssh.h"

#define TERM_MAX 32

enum { EX_OPEN, EX_PTY, EX_EXEC, EX_IO, EX_CLOSE, EX_WAIT_CLOSED, EX_FREE };

typedef struct Exec {
  Op op;
  LIBSSH2_CHANNEL *ch;
  int stage;
  char *command;
  char *kill_line;                         /* run with the marker's digits appended, or NULL */
  char *kill_asked;                        /* kill()'s line, waiting for the marker */
  bool pty, resize_wanted;                 /* resize: a window-change to send (cols, rows) */
  int cols, rows;
  char term[TERM_MAX];
  char *in;                                /* stdin bytes not yet written */
  size_t in_len, in_off;
  bool in_close, eof_sent;
  SlCapture out[2];
  bool marker;                             /* strip "\036<digits>\036" from marker_stream */
  int marker_stream;
  char mbuf[24];
  size_t mlen;
  bool marker_done;
  long pgid;                               /* the marker's value (0: none yet) */
  bool stream, boxed, finished, delivered, timed_out, kill_sent, forced, out_eof[2];
  bool kill_wanted;                        /* abandoned before the marker came: kill then */
  bool internal;                           /* a kill helper: no waiter, no result */
  uint64_t start_ns, end_ns, grace;
  int exit_status, exit_signal;
  char signame[16];
  SlQueue q;                               /* spawn handles: output not yet read */
  SlTask *reader, *writer;                 /* spawn handles: read() and write() waiters */
  SlError err;
  bool failed, retry_safe;
  uint64_t retry_at;                       /* a refused open is retried after this */
  int refusals;
} Exec;


extern const OpVt ssh_exec_vt;             /* an Exec's op: stepped by the session's pump */

void ssh_exec_push_result(lua_State *L, Exec *e);   /* the exec result table */
void ssh_exec_free(Exec *e);
void ssh_exec_maybe_free(Exec *e);         /* frees it once nothing holds it */
void ssh_exec_start_asked(Exec *e);        /* runs kill()'s line once the group is known */
void ssh_exec_abandon(Exec *e);            /* nobody wants it: kill the group, close */

#endif
