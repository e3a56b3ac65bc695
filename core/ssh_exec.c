/* ssh_exec.c: exec channels on a session (their Lua face, session:exec and session:spawn's
 * handle, is core/ssh_exec_handle.c). Each exec is an Op stepped by the session's pump
 * through these stages:
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

#include "ssh_exec.h"

/* ---------------------------------------------------------------- exec */

/* The marker's value is the remote process group (sandlot.shell): result.pgid. */
void ssh_exec_push_result(lua_State *L, Exec *e) {
  uint64_t end = e->end_ns ? e->end_ns : sl_now_ns();
  SlExecResult r = {
    .out = {&e->out[0], &e->out[1]}, .exit_code = e->exit_status, .signal = e->exit_signal,
    .signal_name = e->signame[0] != '\0' ? e->signame : NULL, .timed_out = e->timed_out,
    .duration = e->start_ns ? (double)(end - e->start_ns) / 1e9 : 0.0,
    .pgid = e->marker_done ? e->pgid : 0,
  };
  sl_exec_result_push(L, &r);
}

void ssh_exec_free(Exec *e) {
  sl_capture_free(&e->out[0]);
  sl_capture_free(&e->out[1]);
  sl_queue_clear(&e->q);
  free(e->command);
  free(e->kill_line);
  free(e->kill_asked);
  free(e->in);
  free(e);
}

void ssh_exec_maybe_free(Exec *e) {
  if (!e->boxed && !e->op.linked && e->op.waiter == NULL && e->reader == NULL &&
      e->writer == NULL)
    ssh_exec_free(e);
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
      ssh_exec_push_result(t->co, e);
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
  k->op.vt = &ssh_exec_vt;
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
void ssh_exec_start_asked(Exec *e) {
  if (e->kill_asked == NULL || e->pgid <= 1) return;
  run_line(e, e->kill_asked);
  free(e->kill_asked);
  e->kill_asked = NULL;
}

/* Nobody wants the command any more (a closed handle, a cancelled waiter): kill its process
 * group and close the channel. A command that may be running but whose marker has not come
 * yet keeps its channel until the marker names the group (exec_io), within a grace period. */
void ssh_exec_abandon(Exec *e) {
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
      ssh_exec_maybe_free(e);
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
    ssh_exec_maybe_free(e);
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
  ssh_exec_start_asked(e);
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
    ssh_exec_abandon(e);
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
    ssh_exec_maybe_free(e);
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
  ssh_exec_maybe_free(x);
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

const OpVt ssh_exec_vt = {exec_step, exec_abort, exec_deadline};
