/* ssh_exec.c: exec channels on a session, and the exec handle of session:spawn. Each exec is
 * an Op stepped by the session's pump through these stages:
 *
 *   EX_OPEN ------> [EX_PTY] --> EX_EXEC --> EX_IO --------> EX_CLOSE --> EX_WAIT_CLOSED
 *     |  waits for a channel slot  (runs the     |  stdin out,            |
 *     |  and for s->opener (one     command)     |  stdout/stderr in      v
 *     |  channel request in flight               |  (marker stripped,    EX_FREE
 *     |  per session)                            |   capture, queue)
 *     `-- refused: retried, then fails           `-- timeout: the kill line, then a grace
 *         (retry_safe)
 *
 * The command line itself (quoting, exports, the marker printf, the kill line) is Lua's:
 * lua/sandlot/shell.lua, and so is every default (sandlot.ssh). Here a leading
 * "\036<digits>\036" on the stream opts.marker names is stripped and kept (result.pgid), and
 * opts.kill_line (or kill()'s line) runs with those digits appended. Output goes to the core's
 * one capture and chunk queue, and the result is the one exec result table (core/outbuf.h).
 *
 * s->opener is held from the open through the exec request (EX_OPEN .. EX_EXEC) and dropped
 * at EX_IO. A timeout, a cancelled waiter or a closed handle starts the kill line on a channel
 * of its own (queued at the front), then forces the channel closed after a grace period. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbuf.h"
#include "ssh.h"

/* ---------------------------------------------------------------- exec */

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

typedef struct { Exec *e; } ExecBox;

/* The marker's value is the remote process group (sandlot.shell): result.pgid. */
static void push_result(lua_State *L, Exec *e) {
  uint64_t end = e->end_ns ? e->end_ns : sl_now_ns();
  SlExecResult r = {
    .out = {&e->out[0], &e->out[1]}, .exit_code = e->exit_status, .signal = e->exit_signal,
    .signal_name = e->signame[0] != '\0' ? e->signame : NULL, .timed_out = e->timed_out,
    .duration = e->start_ns ? (double)(end - e->start_ns) / 1e9 : 0.0,
    .pgid = e->marker_done ? e->pgid : 0,
  };
  sl_exec_result_push(L, &r);
}

static void exec_free(Exec *e) {
  sl_capture_free(&e->out[0]);
  sl_capture_free(&e->out[1]);
  sl_queue_clear(&e->q);
  free(e->command);
  free(e->kill_line);
  free(e->kill_asked);
  free(e->in);
  free(e);
}

static void exec_maybe_free(Exec *e) {
  if (!e->boxed && !e->op.linked && e->op.waiter == NULL && e->reader == NULL &&
      e->writer == NULL)
    exec_free(e);
}

static void wake_reader(Exec *e) {
  SlTask *t = e->reader;
  if (t == NULL) return;
  if (e->q.head == NULL && !e->finished) return;
  e->reader = NULL;
  SlChunk *c = sl_queue_pop(&e->q);
  luaL_checkstack(t->co, 3, NULL);
  if (c == NULL) {
    if (e->failed) {
      sl_push_error(t->co, &e->err);
      sl_wake(t, 2);
      return;
    }
    lua_pushnil(t->co);
    sl_wake(t, 1);
    return;
  }
  lua_pushlstring(t->co, c->data, c->len);
  lua_pushstring(t->co, c->which == 0 ? "stdout" : "stderr");
  free(c);
  sl_wake(t, 2);
}

/* The result is known (or the exec failed): wake whoever waits for it. */
static void exec_deliver(Exec *e) {
  if (e->delivered) return;
  e->delivered = true;
  e->finished = true;
  if (e->end_ns == 0) e->end_ns = sl_now_ns();
  SlTask *t = e->op.waiter;
  e->op.waiter = NULL;
  if (t != NULL) {
    luaL_checkstack(t->co, 4, NULL);
    if (e->failed) {
      ssh_wake_error_field(t, &e->err, "retry_safe", e->retry_safe);
    } else {
      push_result(t->co, e);
      sl_wake(t, 1);
    }
  }
  if (e->writer != NULL) {
    SlTask *w = e->writer;
    e->writer = NULL;
    SlError err;
    sl_err_set(&err, "io_error", "the remote command has finished");
    ssh_wake_error(w, &err);
  }
  wake_reader(e);
}

static void exec_fail(Exec *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void exec_fail(Exec *e, const char *code, const char *fmt, ...) {
  if (e->delivered) return;
  e->failed = true;
  va_list ap;
  va_start(ap, fmt);
  e->err.code = code;
  vsnprintf(e->err.message, sizeof(e->err.message), fmt, ap);
  va_end(ap);
  exec_deliver(e);
}

static void data_in(Exec *e, int which, const char *p, size_t n) {
  if (e->marker && !e->marker_done && which == e->marker_stream) {
    while (n > 0 && !e->marker_done) {     /* "\036<digits>\036" leads the stream */
      char c = *p;
      bool ok = (e->mlen == 0 && c == '\036') ||
                (e->mlen > 0 && ((c >= '0' && c <= '9') || c == '\036')) ;
      if (!ok || e->mlen + 1 >= sizeof(e->mbuf)) {
        e->marker_done = true;             /* not a marker after all: it is output */
        size_t keep = e->mlen;
        e->mlen = 0;
        if (keep > 0) data_in(e, which, e->mbuf, keep);
        break;
      }
      e->mbuf[e->mlen++] = c;
      p++;
      n--;
      if (c == '\036' && e->mlen > 1) {
        e->mbuf[e->mlen - 1] = '\0';
        e->pgid = strtol(e->mbuf + 1, NULL, 10);
        e->marker_done = true;
        e->mlen = 0;
      }
    }
    if (n == 0) return;
  }
  sl_capture_add(&e->out[which], p, n);
  if (e->stream && !sl_queue_push(&e->q, which, p, n)) {
    exec_fail(e, "internal", "out of memory queueing the command's output");
    e->forced = true;                      /* exec_io closes the channel */
    return;
  }
  if (e->stream) wake_reader(e);
}

static const OpVt exec_vt;

/* Runs `line` with the marker's value appended on a channel of its own (ahead of queued ops
 * for a slot): a kill line from Lua (sandlot.shell). */
static void run_line(Exec *e, const char *line) {
  Session *s = e->op.s;
  if (e->pgid <= 1 || ssh_dead(s)) return;
  Exec *k = calloc(1, sizeof(*k));
  size_t n = strlen(line) + 24;
  if (k == NULL || (k->command = malloc(n)) == NULL) {
    free(k);
    return;
  }
  snprintf(k->command, n, "%s%ld", line, e->pgid);
  k->op.vt = &exec_vt;
  k->internal = true;
  k->in_close = true;
  k->op.deadline = sl_now_ns() + 10ull * 1000000000ull;
  ssh_op_link(s, &k->op, true);
}

/* The last word: opts.kill_line, once (timeout, a cancelled waiter, close). */
static void start_kill(Exec *e) {
  if (e->kill_sent || e->pgid <= 1 || e->kill_line == NULL) return;
  e->kill_sent = true;
  run_line(e, e->kill_line);
}

/* kill()'s line, once the marker has named the process group. */
static void start_asked(Exec *e) {
  if (e->kill_asked == NULL || e->pgid <= 1) return;
  run_line(e, e->kill_asked);
  free(e->kill_asked);
  e->kill_asked = NULL;
}

/* Nobody wants the command any more (a closed handle, a cancelled waiter): kill its process
 * group and close the channel. A command that may be running but whose marker has not come
 * yet keeps its channel until the marker names the group (exec_io), within a grace period. */
static void abandon(Exec *e) {
  bool started = e->stage == EX_PTY || e->stage == EX_EXEC || e->stage == EX_IO ||
                 (e->stage == EX_OPEN && e->op.s->opener == &e->op);
  if (started && e->marker && !e->marker_done && e->kill_line != NULL) {
    e->kill_wanted = true;
    uint64_t by = sl_now_ns() + KILL_GRACE_NS;
    if (e->op.deadline == 0 || e->op.deadline > by) e->op.deadline = by;
    return;
  }
  if (e->stage == EX_IO && e->pgid > 0) start_kill(e);
  e->forced = true;
}

static int exec_step(Op *op);

static int exec_open(Exec *e) {
  Session *s = e->op.s;
  if (s->opener != NULL && s->opener != &e->op) return STEP_AGAIN;
  if (s->opener == NULL) {
    bool cancelled = !e->internal && !e->boxed && e->op.waiter == NULL;
    if (cancelled || e->delivered) {       /* cancelled or timed out before it ran */
      ssh_op_unlink(&e->op);
      exec_maybe_free(e);
      return STEP_DONE;
    }
    if (e->retry_at != 0 && sl_now_ns() < e->retry_at) return STEP_AGAIN;
    if (s->channels >= s->max_channels) {
      if (s->idle_sftp != NULL) {          /* a pooled SFTP channel yields its slot */
        Sftp *f = s->idle_sftp;
        if (libssh2_sftp_shutdown(f->sftp) == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
        s->idle_sftp = NULL;
        free(f);
        s->channels--;
      }
      if (s->channels >= s->max_channels) return STEP_AGAIN;
    }
    s->opener = &e->op;
  }
  e->ch = libssh2_channel_open_session(s->ssh);
  if (e->ch == NULL) {
    int rc = libssh2_session_last_errno(s->ssh);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    s->opener = NULL;
    if (ssh_rc_fatal(rc)) return STEP_FATAL;
    /* sshd counts a session against MaxSessions until its channel is garbage collected, a
     * moment after the close: while others are open, a refusal is worth a few retries */
    if (rc == LIBSSH2_ERROR_CHANNEL_FAILURE && s->channels > 0 && e->refusals < 40) {
      e->refusals++;
      e->retry_at = sl_now_ns() + (uint64_t)(e->refusals < 10 ? e->refusals : 10) * 20000000ull;
      return STEP_PROGRESS;
    }
    e->retry_safe = true;
    char msg[300];
    snprintf(msg, sizeof(msg), "%s (the server may limit sessions per connection: "
             "lower max_channels)", ssh_msg(s));
    exec_fail(e, "unavailable", "cannot open an SSH channel: %s", msg);
    ssh_op_unlink(&e->op);
    exec_maybe_free(e);
    return STEP_DONE;
  }
  /* opener stays ours through pty and exec: libssh2 1.10 waits for a channel
   * request's reply by packet type and returns -1 when it reads the reply to another
   * channel's request, so only one channel at a time may have a request outstanding */
  s->channels++;
  e->stage = e->pty ? EX_PTY : EX_EXEC;
  return STEP_PROGRESS;
}

static int exec_io(Exec *e) {
  Session *s = e->op.s;
  bool progress = false;
  if (e->resize_wanted) {                  /* "window-change" wants no reply (RFC 4254 6.7) */
    int rc = libssh2_channel_request_pty_size_ex(e->ch, e->cols, e->rows, 0, 0);
    if (ssh_rc_fatal(rc)) return STEP_FATAL;
    if (rc != LIBSSH2_ERROR_EAGAIN) e->resize_wanted = false;
  }
  while (e->in_off < e->in_len) {
    size_t n = e->in_len - e->in_off;
    ssize_t w = libssh2_channel_write(e->ch, e->in + e->in_off, n > 32768 ? 32768 : n);
    if (w == LIBSSH2_ERROR_EAGAIN) break;
    if (w < 0) {
      if (ssh_rc_fatal((int)w)) return STEP_FATAL;
      e->in_off = e->in_len;               /* the command stopped reading: drop the rest */
      e->in_close = true;
      break;
    }
    e->in_off += (size_t)w;
    progress = true;
  }
  if (e->in_off >= e->in_len && e->in != NULL) {
    free(e->in);
    e->in = NULL;
    e->in_len = e->in_off = 0;
    if (e->writer != NULL) {
      SlTask *w = e->writer;
      e->writer = NULL;
      lua_pushboolean(w->co, 1);
      sl_wake(w, 1);
    }
  }
  if (e->in == NULL && e->in_close && !e->eof_sent) {
    int rc = libssh2_channel_send_eof(e->ch);
    if (rc == 0 || (rc != LIBSSH2_ERROR_EAGAIN && !ssh_rc_fatal(rc))) e->eof_sent = true;
    else if (ssh_rc_fatal(rc)) return STEP_FATAL;
  }
  e->op.paused = e->stream && sl_queue_full(&e->q);
  if (!e->op.paused) {
    char *buf = s->host->readbuf;
    for (int which = 0; which < 2; which++) {
      while (!e->out_eof[which]) {
        ssize_t n = libssh2_channel_read_ex(e->ch, which == 0 ? 0 : SSH_EXTENDED_DATA_STDERR,
                                            buf, sizeof(s->host->readbuf));
        if (n == LIBSSH2_ERROR_EAGAIN) break;
        if (n < 0) {
          if (ssh_rc_fatal((int)n) || s->peer_closed) return STEP_FATAL;
          e->out_eof[which] = true;
          break;
        }
        if (n == 0) {
          if (!libssh2_channel_eof(e->ch)) {
            if (s->peer_closed) return STEP_FATAL;
            break;
          }
          e->out_eof[which] = true;
          break;
        }
        progress = true;
        data_in(e, which, buf, (size_t)n);
      }
    }
  }
  start_asked(e);
  if (e->timed_out && e->pgid > 0 && !e->kill_sent) start_kill(e);
  if (e->kill_wanted && e->marker_done) {  /* abandoned: the group is known (or never will be) */
    start_kill(e);
    e->forced = true;
  }
  if (e->out_eof[0] && e->out_eof[1]) {
    e->stage = EX_CLOSE;
    return STEP_PROGRESS;
  }
  if (e->forced) {                         /* timed out and the grace is over, or cancelled */
    e->stage = EX_CLOSE;
    return STEP_PROGRESS;
  }
  return progress ? STEP_PROGRESS : STEP_AGAIN;
}

static void collect_exit(Exec *e) {
  e->exit_status = libssh2_channel_get_exit_status(e->ch);
  char *sig = NULL;
  size_t siglen = 0;
  if (libssh2_channel_get_exit_signal(e->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 &&
      sig != NULL) {
    snprintf(e->signame, sizeof(e->signame), "%.*s", (int)siglen, sig);
    e->exit_signal = sl_signal_number(e->signame);
    if (e->exit_signal == 0) e->exit_status = 255;   /* a name we do not know: no number */
    libssh2_free(e->op.s->ssh, sig);
  }
  if (e->timed_out && e->exit_signal == 0 && e->forced) {
    e->exit_signal = 9;                    /* killed by us, no status came back in time */
    snprintf(e->signame, sizeof(e->signame), "KILL");
  }
}

static int exec_step(Op *op) {
  Exec *e = (Exec *)op;
  Session *s = op->s;
  int rc;
  bool gone = !e->internal && !e->boxed && op->waiter == NULL && !e->delivered;
  if (gone && e->stage > EX_OPEN && e->stage < EX_CLOSE) {  /* the waiter was cancelled */
    e->delivered = true;
    abandon(e);
    if (e->forced && e->stage < EX_IO) e->stage = EX_CLOSE;
  }
  /* the channel's requests are done (or abandoned): let the next channel open (exec_open) */
  if (e->stage >= EX_IO && s->opener == op) s->opener = NULL;
  switch (e->stage) {
  case EX_OPEN:
    return exec_open(e);
  case EX_PTY:
    rc = libssh2_channel_request_pty_ex(e->ch, e->term, (unsigned)strlen(e->term), NULL, 0,
                                        e->cols, e->rows, 0, 0);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (ssh_rc_fatal(rc)) return STEP_FATAL;
    if (rc != 0) {
      exec_fail(e, "not_supported", "the server refused a pty: %s", ssh_msg(s));
      e->stage = EX_CLOSE;
      e->forced = true;
      return STEP_PROGRESS;
    }
    e->stage = EX_EXEC;
    return STEP_PROGRESS;
  case EX_EXEC: {
    rc = libssh2_channel_process_startup(e->ch, "exec", 4, e->command,
                                         (unsigned)strlen(e->command));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (ssh_rc_fatal(rc)) return STEP_FATAL;
    if (rc != 0) {
      exec_fail(e, "unavailable", "the server refused to run the command: %s", ssh_msg(s));
      e->stage = EX_CLOSE;
      e->forced = true;
      return STEP_PROGRESS;
    }
    e->start_ns = sl_now_ns();
    e->stage = EX_IO;
    return STEP_PROGRESS;
  }
  case EX_IO:
    return exec_io(e);
  case EX_CLOSE:
    rc = libssh2_channel_close(e->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (ssh_rc_fatal(rc)) return STEP_FATAL;
    e->stage = EX_WAIT_CLOSED;
    return STEP_PROGRESS;
  case EX_WAIT_CLOSED:
    if (!e->forced || libssh2_channel_eof(e->ch)) {
      rc = libssh2_channel_wait_closed(e->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        if (!e->forced) return STEP_AGAIN;
        /* forced: the server may hold the channel until the process dies; don't wait */
      } else if (ssh_rc_fatal(rc)) {
        return STEP_FATAL;
      }
    }
    e->end_ns = sl_now_ns();
    collect_exit(e);
    if (!e->internal) exec_deliver(e);
    e->stage = EX_FREE;
    return STEP_PROGRESS;
  default:                                 /* EX_FREE */
    rc = libssh2_channel_free(e->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) {
      if (e->grace != 0 && sl_now_ns() > e->grace) {
        e->ch = NULL;                      /* abandoned: freed with the session */
      } else {
        if (e->grace == 0) e->grace = sl_now_ns() + KILL_GRACE_NS;
        return STEP_AGAIN;
      }
    }
    e->ch = NULL;
    s->channels--;
    ssh_op_unlink(op);
    exec_maybe_free(e);
    return STEP_DONE;
  }
}

static void exec_abort(Op *op, const SlError *e) {
  Exec *x = (Exec *)op;
  x->ch = NULL;
  if (!x->delivered) {
    x->failed = true;
    x->err = *e;
    x->retry_safe = x->stage == EX_OPEN;
    exec_deliver(x);
  }
  exec_maybe_free(x);
}

/* The command's time is up: kill its process group, then give it a grace period to report
 * back before the channel is closed without an exit status. */
static bool exec_deadline(Op *op) {
  Exec *e = (Exec *)op;
  if (e->internal) {
    e->forced = true;
    if (e->stage < EX_IO) e->stage = e->stage == EX_OPEN ? EX_OPEN : EX_CLOSE;
    return false;
  }
  if (e->stage == EX_OPEN) {
    if (op->s->opener == op) {             /* mid-open: must finish, then give up */
      op->deadline = sl_now_ns() + 100000000ull;
      return false;
    }
    exec_fail(e, "timeout", "timed out waiting for an SSH channel (%s in use)",
              "all of max_channels");
    return false;
  }
  if (!e->timed_out) {
    e->timed_out = true;
    if (e->pgid > 0) start_kill(e);
    op->deadline = sl_now_ns() + KILL_GRACE_NS;
    if (e->stage < EX_IO) {
      e->forced = true;
      e->stage = EX_CLOSE;
    }
  } else {
    e->forced = true;
  }
  ssh_kick(op->s);
  return false;
}

static const OpVt exec_vt = {exec_step, exec_abort, exec_deadline};

/* opts[name] at index 3 as an integer in lo..hi; raises otherwise (Lua passes these). */
static lua_Integer opt_int(lua_State *L, const char *name, lua_Integer lo, lua_Integer hi) {
  lua_getfield(L, 3, name);
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (!ok || v < lo || v > hi)
    luaL_error(L, "sandlot.ssh exec: opts.%s must be an integer in %I..%I", name, lo, hi);
  return v;
}

/* Builds an Exec from (command, opts) at index 2 and 3. Every default is Lua's (sandlot.ssh):
 * max_output is required, and so are cols, rows and term with pty. What can raise comes first,
 * before anything is allocated. */
static Exec *exec_new(lua_State *L, Session *s, bool stream) {
  size_t clen;
  const char *cmd = luaL_checklstring(L, 2, &clen);
  luaL_argcheck(L, strlen(cmd) == clen, 2, "command contains a NUL byte");
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer cap = opt_int(L, "max_output", 0, LUA_MAXINTEGER);
  double timeout = ssh_opt_number(L, 3, "timeout", 0);
  lua_getfield(L, 3, "pty");
  bool pty = lua_toboolean(L, -1);
  lua_Integer cols = pty ? opt_int(L, "cols", 1, 65535) : 0;
  lua_Integer rows = pty ? opt_int(L, "rows", 1, 65535) : 0;
  lua_getfield(L, 3, "term");              /* [.., pty, term] */
  const char *term = lua_tostring(L, -1);
  if (pty && (term == NULL || term[0] == '\0' || strlen(term) >= TERM_MAX))
    luaL_error(L, "sandlot.ssh exec: opts.term must be a terminal name (with pty)");
  static const char *const streams[] = {"stdout", "stderr", NULL};
  lua_getfield(L, 3, "marker");            /* [.., pty, term, marker] */
  int marker = lua_isnil(L, -1) ? -1 : luaL_checkoption(L, -1, NULL, streams);
  lua_getfield(L, 3, "kill_line");
  const char *kill = lua_tostring(L, -1);
  lua_getfield(L, 3, "stdin");
  size_t inlen = 0;
  const char *in = lua_tolstring(L, -1, &inlen);
  lua_getfield(L, 3, "stdin_open");        /* spawn: keep stdin open for write() */
  bool stdin_open = lua_toboolean(L, -1);
  Exec *e = calloc(1, sizeof(*e));
  if (e == NULL) luaL_error(L, "out of memory");
  e->op.vt = &exec_vt;
  e->op.s = s;
  e->stream = stream;
  e->out[0].cap = e->out[1].cap = (size_t)cap;
  if (timeout > 0) e->op.deadline = sl_now_ns() + (uint64_t)(timeout * 1e9);
  e->pty = pty;
  e->cols = (int)cols;
  e->rows = (int)rows;
  if (pty) snprintf(e->term, sizeof(e->term), "%s", term);
  e->marker = marker >= 0;
  e->marker_stream = marker >= 0 ? marker : 0;
  e->in_close = !stdin_open;
  bool oom = (e->command = strdup(cmd)) == NULL;
  if (kill != NULL && (e->kill_line = strdup(kill)) == NULL) oom = true;
  if (in != NULL && inlen > 0) {
    if ((e->in = malloc(inlen)) == NULL) oom = true;
    else memcpy(e->in, in, inlen);
    e->in_len = e->in != NULL ? inlen : 0;
  }
  lua_pop(L, 6);
  if (oom) {
    exec_free(e);
    luaL_error(L, "out of memory");
  }
  return e;
}

/* session:exec(command, opts) -> result | nil, err. command is one shell string run by the
 * login shell. opts: max_output (bytes kept per stream, required), stdin (string), pty (then
 * cols, rows and term are required), timeout, marker ("stdout" | "stderr": a leading
 * "\036<digits>\036" there is stripped and reported as result.pgid), kill_line (run with the
 * marker's digits appended on timeout, cancel or close). */
int ssh_session_exec(lua_State *L) {
  Session *s = ssh_sess_live(L, 1);
  if (s == NULL) return 2;
  Exec *e = exec_new(L, s, false);
  lua_settop(L, 3);
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    exec_free(e);
    return 2;
  }
  e->op.waiter = t;
  ssh_op_start(s, &e->op, false);
  sl_wait_set_cleanup(t, ssh_op_detach, e);
  return sl_wait(L, t, lua_gettop(L), ssh_results_k);
}

/* session:spawn(command, opts) -> exec handle (read, write, close_stdin, wait, kill, close).
 * opts as for exec, and stdin_open (keep stdin open for write()); output is queued for read()
 * (and captured under max_output for wait()'s result). */
int ssh_session_spawn(lua_State *L) {
  Session *s = ssh_sess_live(L, 1);
  if (s == NULL) return 2;
  lua_settop(L, 3);
  ExecBox *box = lua_newuserdatauv(L, sizeof(*box), 1);
  box->e = NULL;                           /* valid (closed) before anything can raise */
  luaL_setmetatable(L, EXEC_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);             /* the handle keeps its session alive */
  Exec *e = exec_new(L, s, true);
  box->e = e;
  e->boxed = true;
  s->refs++;
  ssh_op_start(s, &e->op, false);
  return 1;
}

static Exec *exec_check(lua_State *L, int idx) {
  ExecBox *box = luaL_checkudata(L, idx, EXEC_MT);
  if (box->e == NULL) luaL_error(L, "attempt to use a closed sandlot.ssh.exec");
  return box->e;
}

static void exec_reader_cleanup(SlTask *t, void *data) {
  Exec *e = data;
  if (e->reader == t) e->reader = NULL;
  if (e->writer == t) e->writer = NULL;
  if (e->op.waiter == t) e->op.waiter = NULL;
}

/* exec:read() -> chunk, "stdout"|"stderr" | nil (both streams ended) | nil, err */
static int exech_read(lua_State *L) {
  Exec *e = exec_check(L, 1);
  lua_settop(L, 1);
  if (e->reader != NULL) return luaL_error(L, "sandlot.ssh.exec: another task is reading");
  if (e->q.head != NULL || e->finished) {
    SlChunk *c = sl_queue_pop(&e->q);
    if (c == NULL) {
      if (e->failed) return sl_push_error(L, &e->err);
      return 0;
    }
    lua_pushlstring(L, c->data, c->len);
    lua_pushstring(L, c->which == 0 ? "stdout" : "stderr");
    free(c);
    if (e->op.paused && sl_queue_drained(&e->q) && e->op.linked) ssh_kick(e->op.s);
    return 2;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->reader = t;
  if (e->op.linked) ssh_kick(e->op.s);
  sl_wait_set_cleanup(t, exec_reader_cleanup, e);
  return sl_wait(L, t, lua_gettop(L), ssh_results_k);
}

/* exec:write(data) -> true | nil, err (waits until the channel took all of it) */
static int exech_write(lua_State *L) {
  Exec *e = exec_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  if (e->writer != NULL || e->in != NULL)
    return luaL_error(L, "sandlot.ssh.exec: another task is writing");
  if (e->in_close || e->finished)
    return sl_fail(L, "invalid_input", "stdin is closed");
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->in = malloc(len);
  if (e->in == NULL) return luaL_error(L, "out of memory");
  memcpy(e->in, data, len);
  e->in_len = len;
  e->in_off = 0;
  e->writer = t;
  ssh_kick(e->op.s);
  sl_wait_set_cleanup(t, exec_reader_cleanup, e);
  return sl_wait(L, t, lua_gettop(L), ssh_results_k);
}

/* exec:close_stdin() -> true */
static int exech_close_stdin(lua_State *L) {
  Exec *e = exec_check(L, 1);
  e->in_close = true;
  if (e->op.linked) ssh_kick(e->op.s);
  lua_pushboolean(L, 1);
  return 1;
}

/* exec:resize(rows, cols) -> true | nil, err: the pty's new size, sent as soon as it can be */
static int exech_resize(lua_State *L) {
  Exec *e = exec_check(L, 1);
  lua_Integer rows = luaL_checkinteger(L, 2), cols = luaL_checkinteger(L, 3);
  luaL_argcheck(L, rows >= 1 && rows <= 65535, 2, "must be in 1..65535");
  luaL_argcheck(L, cols >= 1 && cols <= 65535, 3, "must be in 1..65535");
  if (!e->pty) return sl_fail(L, "invalid_input", "the command has no pty");
  if (e->finished) return sl_fail(L, "not_found", "the remote command has already finished");
  e->rows = (int)rows;                     /* before the pty request: it takes these */
  e->cols = (int)cols;
  e->resize_wanted = e->stage >= EX_PTY;   /* a redundant window-change is harmless */
  if (e->op.linked) ssh_kick(e->op.s);
  lua_pushboolean(L, 1);
  return 1;
}

/* exec:wait() -> result | nil, err */
static int exech_wait(lua_State *L) {
  Exec *e = exec_check(L, 1);
  lua_settop(L, 1);
  if (e->finished) {
    if (e->failed) return sl_push_error(L, &e->err);
    push_result(L, e);
    return 1;
  }
  if (e->op.waiter != NULL) return luaL_error(L, "sandlot.ssh.exec: another task is waiting");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->op.waiter = t;
  sl_wait_set_cleanup(t, exec_reader_cleanup, e);
  return sl_wait(L, t, lua_gettop(L), ssh_results_k);
}

/* exec:kill([line]) -> true | nil, err: runs line (default: opts.kill_line) with the remote
 * process group appended, at once or as soon as the marker has named the group. */
static int exech_kill(lua_State *L) {
  Exec *e = exec_check(L, 1);
  const char *line = luaL_optstring(L, 2, e->kill_line);
  if (e->finished) return sl_fail(L, "not_found", "the remote command has already finished");
  if (line == NULL || (e->marker_done && e->pgid <= 1) || !e->marker)
    return sl_fail(L, "not_supported", "the remote process group is unknown");
  char *copy = strdup(line);
  if (copy == NULL) return luaL_error(L, "out of memory");
  free(e->kill_asked);                     /* the latest request wins */
  e->kill_asked = copy;
  start_asked(e);                          /* or exec_io, once the marker is in */
  if (e->op.linked) ssh_kick(e->op.s);
  lua_pushboolean(L, 1);
  return 1;
}

/* exec:close() -> true. Also __close and __gc: kills what still runs, never yields. */
static int exech_close(lua_State *L) {
  ExecBox *box = luaL_checkudata(L, 1, EXEC_MT);
  Exec *e = box->e;
  if (e != NULL) {
    box->e = NULL;
    Session *s = e->op.s;
    SlError err;
    sl_err_set(&err, "cancelled", "the exec handle was closed");
    SlTask *ts[3] = {e->op.waiter, e->reader, e->writer};
    e->op.waiter = e->reader = e->writer = NULL;
    for (int i = 0; i < 3; i++) ssh_wake_error(ts[i], &err);
    e->boxed = false;
    e->delivered = true;
    if (e->op.linked) {
      abandon(e);
      ssh_kick(s);
    }
    exec_maybe_free(e);
    s->refs--;
    ssh_sess_free_if_done(s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int exech_tostring(lua_State *L) {
  ExecBox *box = luaL_checkudata(L, 1, EXEC_MT);
  if (box->e == NULL) lua_pushliteral(L, "sandlot.ssh.exec (closed)");
  else lua_pushfstring(L, "sandlot.ssh.exec (%s)", box->e->finished ? "finished" : "running");
  return 1;
}

static const luaL_Reg exec_methods[] = {
  {"read", exech_read}, {"write", exech_write}, {"close_stdin", exech_close_stdin},
  {"wait", exech_wait}, {"kill", exech_kill}, {"resize", exech_resize},
  {"close", exech_close}, {NULL, NULL}
};

static const luaL_Reg exec_meta[] = {
  {"__index", NULL}, {"__gc", exech_close}, {"__close", exech_close},
  {"__tostring", exech_tostring}, {NULL, NULL}
};

void ssh_exec_open(lua_State *L) {
  if (luaL_newmetatable(L, EXEC_MT)) {
    luaL_setfuncs(L, exec_meta, 0);
    luaL_newlib(L, exec_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
