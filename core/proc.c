/* proc.c: sandlot.core.proc: child processes on the libuv loop. A Proc is owned by C until
 * its last handle's close callback: the Lua userdata only boxes a pointer, so __gc can drop
 * the box while libuv still reaps the child. Every child leads its own process group, so a
 * kill, a timeout or a cancellation reaches its grandchildren too. Output is captured within
 * a per-stream cap (head and tail kept), optionally spilled whole to a file and optionally
 * queued for proc:read() with backpressure. The spawn options and the posix_spawn call itself
 * are core/proc_spawn.c's. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "outbuf.h"
#include "proc_spawn.h"
#include "pty.h"

#define PROC_MT "sandlot.proc"

typedef struct Proc Proc;

typedef struct {
  uv_pipe_t pipe;
  Proc *p;
  int which;
  bool open, eof;
  SlCapture cap;                           /* head and tail within max_output */
  int spill_fd;
  int spill_errno;
} Stream;

typedef struct {
  uv_write_t req;
  Proc *p;
  SlTask *waiter;
  bool close_after;
  char data[];
} WriteReq;

enum { WAIT_NONE, WAIT_EXIT, WAIT_READ };

struct Proc {
  uv_poll_t exitpoll;                      /* readable pidfd: the child exited */
  uv_pipe_t in;
  uv_timer_t timer;
  Stream out[2];
  SlHost *host;
  SlTask *reader;                          /* a task in wait() or read() */
  int wait_kind;
  WriteReq *writing;                       /* the write a task is waiting for */
  SlQueue q;                               /* stream = true: chunks for read() */
  int handles;                             /* our uv handles not yet closed */
  int pid;
  int pidfd;
  Proc *prev, *next;                       /* host's live list */
  int64_t exit_status;
  int term_signal;
  uint64_t start_ns, end_ns;
  bool in_open, timer_open, poll_open;
  bool exited, done, timed_out, released, stream, kill_group, reading_stopped;
  bool pty;                                /* out[0] reads the pty's master; no stderr */
};

typedef struct { Proc *p; } ProcBox;

/* proc.c's state in a host: the live list (os.exit kills what is left), the data of its
 * teardown hook. */
typedef struct { Proc *head; } ProcList;

static void procs_teardown(SlHost *h, void *data, int phase);

static ProcList *proc_list(SlHost *h) { return sl_host_hook_data(h, procs_teardown); }

/* ---------------------------------------------------------------- lifetime */

static void proc_maybe_free(Proc *p) {
  if (!p->released || p->handles > 0) return;
  if (p->prev != NULL) p->prev->next = p->next;
  else if (proc_list(p->host)->head == p) proc_list(p->host)->head = p->next;
  if (p->next != NULL) p->next->prev = p->prev;
  if (p->pidfd >= 0) close(p->pidfd);
  for (int i = 0; i < 2; i++) {
    sl_capture_free(&p->out[i].cap);
    if (p->out[i].spill_fd >= 0) close(p->out[i].spill_fd);
  }
  sl_queue_clear(&p->q);
  free(p);
}

static void on_closed(uv_handle_t *handle) {
  Proc *p = handle->data;
  p->handles--;
  sl_host_handle_done(p->host);
  proc_maybe_free(p);
}

static void close_handle(Proc *p, uv_handle_t *handle, bool *open) {
  if (!*open) return;
  *open = false;
  handle->data = p;
  uv_close(handle, on_closed);
}

static void kill_group(Proc *p, int sig) {
  if (p->pid > 0 && kill(-p->pid, sig) != 0 && !p->exited) kill(p->pid, sig);
}

/* ---------------------------------------------------------------- output */

static void push_result(lua_State *L, Proc *p) {
  SlExecResult r = {
    .out = {&p->out[0].cap, &p->out[1].cap}, .exit_code = p->exit_status,
    .signal = p->term_signal, .timed_out = p->timed_out,
    .duration = (double)(p->end_ns - p->start_ns) / 1e9, .pid = p->pid,
  };
  sl_exec_result_push(L, &r);
}

/* Pushes the next queued chunk and its stream name. */
static void push_chunk(lua_State *L, Proc *p) {
  SlChunk *c = sl_queue_pop(&p->q);
  lua_pushlstring(L, c->data, c->len);
  lua_pushstring(L, c->which == 0 ? "stdout" : "stderr");
  free(c);
}

static void wake_reader(Proc *p, int kind) {
  SlTask *t = p->reader;
  if (t == NULL || p->wait_kind != kind) return;
  p->reader = NULL;
  p->wait_kind = WAIT_NONE;
  lua_State *L = t->co;
  luaL_checkstack(L, 4, NULL);
  if (kind == WAIT_EXIT) {
    push_result(L, p);
    sl_wake(t, 1);
    return;
  }
  if (p->q.head == NULL) {                 /* WAIT_READ: a chunk, or EOF when done */
    lua_pushnil(L);
    sl_wake(t, 1);
    return;
  }
  push_chunk(L, p);
  sl_wake(t, 2);
}

static void check_done(Proc *p) {
  if (p->done || !p->exited || !p->out[0].eof || !p->out[1].eof) return;
  p->done = true;
  p->end_ns = sl_now_ns();
  if (p->timer_open) uv_timer_stop(&p->timer);
  close_handle(p, (uv_handle_t *)&p->timer, &p->timer_open);
  for (int i = 0; i < 2; i++) {
    if (p->out[i].spill_fd >= 0) {
      close(p->out[i].spill_fd);
      p->out[i].spill_fd = -1;
    }
  }
  wake_reader(p, WAIT_EXIT);
  wake_reader(p, WAIT_READ);
  if (p->released) proc_maybe_free(p);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  Stream *s = handle->data;
  buf->base = s->p->host->readbuf;
  buf->len = sizeof(s->p->host->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf);

/* stream = true: both pipes stop at the queue's high mark, restart below its low mark */
static void set_reading(Proc *p, bool on) {
  if (p->reading_stopped == !on) return;
  p->reading_stopped = !on;
  for (int i = 0; i < 2; i++) {
    if (!p->out[i].open || p->out[i].eof) continue;
    if (on) uv_read_start((uv_stream_t *)&p->out[i].pipe, on_alloc, on_read);
    else uv_read_stop((uv_stream_t *)&p->out[i].pipe);
  }
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  Stream *s = stream->data;
  Proc *p = s->p;
  if (n > 0) {
    sl_capture_add(&s->cap, buf->base, (size_t)n);
    if (s->spill_fd >= 0) {
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(s->spill_fd, buf->base + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          s->spill_errno = errno;
          close(s->spill_fd);
          s->spill_fd = -1;
          break;
        }
        off += w;
      }
    }
    if (p->stream && !p->released && sl_queue_push(&p->q, s->which, buf->base, (size_t)n)) {
      if (sl_queue_full(&p->q)) set_reading(p, false);
      wake_reader(p, WAIT_READ);
    }
    return;
  }
  if (n == 0) return;
  s->eof = true;                           /* UV_EOF, or a read error: either way it is over */
  uv_read_stop(stream);
  close_handle(p, (uv_handle_t *)&s->pipe, &s->open);
  check_done(p);
}

static void on_pidfd(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  Proc *p = poll->data;
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  if (waitid(P_PIDFD, (id_t)p->pidfd, &info, WEXITED | WNOHANG) != 0) {
    if (errno == EINTR) return;
    info.si_code = CLD_EXITED;             /* ECHILD: reaped by someone else's waitpid(-1) */
    info.si_status = -1;
  } else if (info.si_pid == 0) {
    return;                                /* spurious wake-up: not exited yet */
  }
  p->exited = true;
  if (info.si_code == CLD_EXITED) p->exit_status = info.si_status;
  else p->term_signal = info.si_status;
  if (p->kill_group) kill(-p->pid, SIGKILL);  /* stragglers would hold the pipes open */
  uv_poll_stop(poll);
  close_handle(p, (uv_handle_t *)&p->exitpoll, &p->poll_open);
  check_done(p);
}

static void on_timeout(uv_timer_t *timer) {
  Proc *p = timer->data;
  p->timed_out = true;
  kill_group(p, SIGKILL);
}

/* ---------------------------------------------------------------- stdin */

static void on_write(uv_write_t *req, int status) {
  WriteReq *w = (WriteReq *)req;
  Proc *p = w->p;
  if (w->close_after) close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  SlTask *t = w->waiter;
  if (p->writing == w) p->writing = NULL;
  free(w);
  if (t == NULL) {
    proc_maybe_free(p);
    return;
  }
  if (status == 0) {
    lua_pushboolean(t->co, 1);
    sl_wake(t, 1);
  } else {
    SlError e;
    sl_err_set(&e, status == UV_ECANCELED ? "cancelled" : "io_error",
               "write to stdin: %s", uv_strerror(status));
    luaL_checkstack(t->co, 2, NULL);
    sl_push_error(t->co, &e);
    sl_wake(t, 2);
  }
}

static int start_write(Proc *p, const char *data, size_t len, bool close_after,
                       WriteReq **out) {
  WriteReq *w = malloc(sizeof(*w) + len);
  if (w == NULL) return UV_ENOMEM;
  w->p = p;
  w->waiter = NULL;
  w->close_after = close_after;
  memcpy(w->data, data, len);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&p->in, &buf, 1, on_write);
  if (rc != 0) {
    free(w);
    return rc;
  }
  if (out != NULL) *out = w;
  return 0;
}

/* ---------------------------------------------------------------- start */

/* Starts the child. On failure fills err and returns NULL (nothing left open). */
static Proc *proc_start(lua_State *L, SlSpawnOpts *o, SlError *err) {
  SlHost *h = sl_host(L);
  if (o->cwd != NULL) {
    struct stat st;
    if (stat(o->cwd, &st) != 0) {
      sl_err_set(err, sl_code_for_errno(errno), "cwd %s: %s", o->cwd, strerror(errno));
      return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
      sl_err_set(err, "invalid_input", "cwd %s: not a directory", o->cwd);
      return NULL;
    }
  }
  int spill_fd[2] = {-1, -1};
  for (int i = 0; i < 2; i++) {
    if (o->spill[i] == NULL) continue;
    spill_fd[i] = open(o->spill[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (spill_fd[i] < 0) {
      sl_err_set(err, sl_code_for_errno(errno), "spill file %s: %s", o->spill[i],
                 strerror(errno));
      if (i == 1 && spill_fd[0] >= 0) close(spill_fd[0]);
      return NULL;
    }
  }
  Proc *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    sl_err_set(err, "internal", "out of memory");
    return NULL;
  }
  p->host = h;
  p->pidfd = -1;
  p->stream = o->stream;
  p->kill_group = o->kill_group;
  p->pty = o->pty;
  bool want_in = o->stdin_pipe || o->input != NULL;
  char path[PATH_MAX];
  const char *file = o->file != NULL ? o->file : o->argv[0];
  int rc = sl_resolve_exe(file, o->env, path, sizeof(path));
  int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};  /* [stdin, stdout, stderr][read, write] */
  char tty[64];
  int pty_rc = 0;
  if (o->pty && rc == 0) {                 /* ours: the master twice (write, read); no stderr */
    pty_rc = sl_pty_open(o->rows, o->cols, &fds[1][0], &fds[1][1], tty, sizeof(tty));
    if (pty_rc == 0 && (fds[0][1] = fcntl(fds[1][0], F_DUPFD_CLOEXEC, 3)) < 0) pty_rc = errno;
    rc = pty_rc;
  }
  for (int i = want_in ? 0 : 1; !o->pty && rc == 0 && i < 3; i++)
    if (pipe2(fds[i], O_CLOEXEC) != 0) rc = errno;
  if (rc == 0)
    rc = sl_spawn_child(path, o, fds, want_in, o->pty ? tty : NULL, &p->start_ns, &p->pid);
  int child_ends[3] = {fds[0][0], fds[1][1], fds[2][1]};
  for (int i = 0; i < 3; i++)
    if (child_ends[i] >= 0) close(child_ends[i]);
  if (rc == 0 && (p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0)) < 0) {
    rc = errno;
    kill(-p->pid, SIGKILL);                /* unwatchable: don't leave it behind */
    waitpid(p->pid, NULL, 0);
  }
  int mine[3] = {fds[0][1], fds[1][0], fds[2][0]};
  if (rc != 0) {
    for (int i = 0; i < 3; i++)
      if (mine[i] >= 0) close(mine[i]);
    for (int i = 0; i < 2; i++)
      if (spill_fd[i] >= 0) close(spill_fd[i]);
    if (pty_rc != 0)
      sl_err_set(err, sl_code_for_errno(rc), "cannot open a pty: %s", strerror(rc));
    else if (rc == ENOENT)
      sl_err_set(err, "not_found", "%s: no such file or directory (not on PATH?)", file);
    else if (rc == EACCES)
      sl_err_set(err, "permission_denied", "%s: permission denied (not executable?)", file);
    else
      sl_err_set(err, sl_code_for_errno(rc), "%s: %s", file, strerror(rc));
    free(p);
    return NULL;
  }
  if (want_in) {
    uv_pipe_init(h->loop, &p->in, 0);
    uv_pipe_open(&p->in, mine[0]);
    p->in.data = p;
    p->in_open = true;
    p->handles++;
  } 
  for (int i = 0; i < 2; i++) {
    Stream *s = &p->out[i];
    s->p = p;
    s->which = i;
    s->cap.cap = o->cap;
    s->spill_fd = spill_fd[i];
    if ((s->eof = mine[i + 1] < 0)) continue;   /* a pty's stderr is its stdout */
    uv_pipe_init(h->loop, &s->pipe, 0);
    uv_pipe_open(&s->pipe, mine[i + 1]);
    s->pipe.data = s;
    s->open = true;
    p->handles++;
  }
  uv_poll_init(h->loop, &p->exitpoll, p->pidfd);
  p->exitpoll.data = p;
  p->poll_open = true;
  p->handles++;
  h->handles += p->handles;
  uv_poll_start(&p->exitpoll, UV_READABLE, on_pidfd);
  p->next = proc_list(h)->head;            /* live list: os.exit kills what is left */
  if (p->next != NULL) ((Proc *)p->next)->prev = p;
  proc_list(h)->head = p;
  for (int i = 0; i < 2; i++)
    if (p->out[i].open) uv_read_start((uv_stream_t *)&p->out[i].pipe, on_alloc, on_read);
  if (o->timeout > 0) {
    uv_timer_init(h->loop, &p->timer);
    p->timer.data = p;
    p->timer_open = true;
    p->handles++;
    h->handles++;
    uv_update_time(h->loop);               /* the cached loop time may be stale */
    uv_timer_start(&p->timer, on_timeout, (uint64_t)(o->timeout * 1e3 + 0.5), 0);
  }
  if (o->input != NULL) {
    if (o->input_len == 0 || start_write(p, o->input, o->input_len, true, NULL) != 0)
      close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  }
  return p;
}

/* Drops the Lua side's claim: kills a child still running (and its group), closes stdin and
 * lets the pipes drain to EOF; the Proc frees itself after its last close callback. */
static void proc_release(Proc *p) {
  if (p->released) return;
  p->released = true;
  if (!p->exited) kill_group(p, SIGKILL);
  close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  if (p->reading_stopped) set_reading(p, true);
  sl_queue_clear(&p->q);
  proc_maybe_free(p);
}

/* Host teardown hook: at exit, SIGKILL every live child's process group; once the host's
 * last handle closed, free the list. */
static void procs_teardown(SlHost *h, void *data, int phase) {
  (void)h;
  ProcList *list = data;
  if (phase == SL_TEARDOWN_EXIT) {
    for (Proc *p = list->head; p != NULL; p = p->next)
      if (p->pid > 0 && (!p->exited || p->kill_group)) kill(-p->pid, SIGKILL);
  } else if (phase == SL_TEARDOWN_FREE) {
    free(list);
  }
}

/* ---------------------------------------------------------------- Lua API */

static Proc *proc_check(lua_State *L, int idx) {
  ProcBox *box = luaL_checkudata(L, idx, PROC_MT);
  if (box->p == NULL) luaL_error(L, "attempt to use a closed sandlot.proc");
  return box->p;
}

static void reader_cleanup(SlTask *t, void *data) {
  (void)t;
  Proc *p = data;
  p->reader = NULL;
  p->wait_kind = WAIT_NONE;
}

/* proc.run() owns its Proc: cancelling the waiting task kills the whole group. */
static void run_cleanup(SlTask *t, void *data) {
  Proc *p = data;
  reader_cleanup(t, p);
  if (!p->exited) kill_group(p, SIGKILL);
  close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
}

static int results_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* proc.run(opts) -> result | nil, err: spawn, capture, wait; no handle to manage */
static int proc_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  SlSpawnOpts o;
  sl_spawn_opts_read(L, 1, &o);
  luaL_argcheck(L, !o.stdin_pipe && !o.stream, 1, "run takes no stdin pipe or stream");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  SlError err;
  Proc *p = proc_start(L, &o, &err);
  if (p == NULL) return sl_push_error(L, &err);
  p->released = true;                      /* no box: frees itself once closed */
  p->reader = t;
  p->wait_kind = WAIT_EXIT;
  sl_wait_set_cleanup(t, run_cleanup, p);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* proc.spawn(opts) -> proc | nil, err */
static int proc_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  SlSpawnOpts o;
  sl_spawn_opts_read(L, 1, &o);
  ProcBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->p = NULL;
  luaL_setmetatable(L, PROC_MT);
  SlError err;
  if ((box->p = proc_start(L, &o, &err)) == NULL) return sl_push_error(L, &err);
  return 1;
}

/* proc:wait() -> result | nil, err (err only when the waiting task is cancelled) */
static int proc_wait(lua_State *L) {
  Proc *p = proc_check(L, 1);
  lua_settop(L, 1);
  if (p->done) {
    push_result(L, p);
    return 1;
  }
  if (p->reader != NULL) return luaL_error(L, "sandlot.proc: another task is already waiting");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  p->reader = t;
  p->wait_kind = WAIT_EXIT;
  sl_wait_set_cleanup(t, reader_cleanup, p);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* proc:read() -> chunk, "stdout"|"stderr" | nil at the end of both streams */
static int proc_read(lua_State *L) {
  Proc *p = proc_check(L, 1);
  lua_settop(L, 1);
  if (!p->stream) return luaL_error(L, "sandlot.proc: read() needs spawn{stream = true}");
  if (p->reader != NULL) return luaL_error(L, "sandlot.proc: another task is already reading");
  if (sl_queue_drained(&p->q) && p->reading_stopped) set_reading(p, true);
  if (p->q.head != NULL || p->done) {
    if (p->q.head == NULL) return 0;
    push_chunk(L, p);
    return 2;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  p->reader = t;
  p->wait_kind = WAIT_READ;
  sl_wait_set_cleanup(t, reader_cleanup, p);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

static void write_cleanup(SlTask *t, void *data) {
  (void)t;
  WriteReq *w = data;
  w->waiter = NULL;                        /* the write finishes (or fails) on its own */
  if (w->p->writing == w) w->p->writing = NULL;
}

/* proc:write(data) -> true | nil, err   (waits until the pipe took the data) */
static int proc_write(lua_State *L) {
  Proc *p = proc_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  if (!p->in_open)
    return sl_fail(L, "invalid_input", "stdin is closed (spawn with stdin = \"pipe\")");
  if (p->writing != NULL) return luaL_error(L, "sandlot.proc: another task is already writing");
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  WriteReq *w;
  int rc = start_write(p, data, len, false, &w);
  if (rc != 0) {
    SlError err;
    sl_err_uv(&err, rc, "write to stdin");
    return sl_push_error(L, &err);
  }
  w->waiter = t;
  p->writing = w;
  sl_wait_set_cleanup(t, write_cleanup, w);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), results_k);
}

/* proc:close_stdin() -> true */
static int proc_close_stdin(lua_State *L) {
  Proc *p = proc_check(L, 1);
  close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
  lua_pushboolean(L, 1);
  return 1;
}

/* proc:kill([sig]) -> true | nil, err   sig: number or name ("TERM", "SIGKILL"); whole group */
static int proc_kill(lua_State *L) {
  Proc *p = proc_check(L, 1);
  int sig = SIGTERM;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    sig = (int)luaL_checkinteger(L, 2);
  } else if (!lua_isnoneornil(L, 2)) {
    sig = sl_signal_number(luaL_checkstring(L, 2));
    luaL_argcheck(L, sig > 0, 2, "unknown signal name");
  }
  luaL_argcheck(L, sig > 0 && sig < 65, 2, "signal out of range");
  if (p->exited) return sl_fail(L, "not_found", "process %d has already exited", p->pid);
  if (kill(-p->pid, sig) != 0 && kill(p->pid, sig) != 0)
    return sl_fail(L, sl_code_for_errno(errno), "kill %d: %s", p->pid, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* proc:resize(rows, cols) -> true | nil, err   (spawn{pty = ...}: the terminal's new size) */
static int proc_resize(lua_State *L) {
  Proc *p = proc_check(L, 1);
  lua_Integer rows = luaL_checkinteger(L, 2), cols = luaL_checkinteger(L, 3);
  luaL_argcheck(L, rows >= 1 && rows <= 65535, 2, "must be in 1..65535");
  luaL_argcheck(L, cols >= 1 && cols <= 65535, 3, "must be in 1..65535");
  if (!p->pty) return sl_fail(L, "invalid_input", "the process has no pty (spawn{pty = ...})");
  uv_os_fd_t fd;
  if (!p->out[0].open || uv_fileno((uv_handle_t *)&p->out[0].pipe, &fd) != 0)
    return sl_fail(L, "not_found", "the process's terminal is closed");
  int rc = sl_pty_resize(fd, (int)rows, (int)cols);
  if (rc != 0) return sl_fail(L, sl_code_for_errno(rc), "resize: %s", strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

/* proc:pid() -> integer */
static int proc_pid(lua_State *L) {
  lua_pushinteger(L, proc_check(L, 1)->pid);
  return 1;
}

/* proc:running() -> bool (the leader has not exited) */
static int proc_running(lua_State *L) {
  lua_pushboolean(L, !proc_check(L, 1)->exited);
  return 1;
}

/* proc:close() -> true. Also __close and __gc: idempotent, never yields. */
static int proc_close(lua_State *L) {
  ProcBox *box = luaL_checkudata(L, 1, PROC_MT);
  if (box->p != NULL) {
    Proc *p = box->p;
    box->p = NULL;
    if (p->reader != NULL) {               /* a task parked on us: wake it with an error */
      SlTask *t = p->reader;
      p->reader = NULL;
      t->cleanup = NULL;
      luaL_checkstack(t->co, 2, NULL);
      lua_pushnil(t->co);
      sl_new_error(t->co, "cancelled", "the process handle was closed");
      sl_wake(t, 2);
    }
    proc_release(p);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_tostring(lua_State *L) {
  ProcBox *box = luaL_checkudata(L, 1, PROC_MT);
  if (box->p == NULL) lua_pushliteral(L, "sandlot.proc (closed)");
  else lua_pushfstring(L, "sandlot.proc %d (%s)", box->p->pid,
                       box->p->exited ? "exited" : "running");
  return 1;
}

static const luaL_Reg proc_methods[] = {
  {"wait", proc_wait}, {"read", proc_read}, {"write", proc_write},
  {"close_stdin", proc_close_stdin}, {"kill", proc_kill}, {"pid", proc_pid},
  {"running", proc_running}, {"resize", proc_resize}, {"close", proc_close}, {NULL, NULL}
};

static const luaL_Reg proc_meta[] = {
  {"__index", NULL}, {"__gc", proc_close}, {"__close", proc_close},
  {"__tostring", proc_tostring}, {NULL, NULL}
};

static const luaL_Reg proc_funcs[] = {
  {"run", proc_run}, {"spawn", proc_spawn}, {NULL, NULL}
};

int luaopen_sandlot_core_proc(lua_State *L) {
  SlHost *h = sl_host(L);
  if (proc_list(h) == NULL) {
    ProcList *list = calloc(1, sizeof(*list));
    if (list == NULL || !sl_host_on_close(h, procs_teardown, list)) {
      free(list);
      return luaL_error(L, "sandlot: out of memory");
    }
  }
  if (luaL_newmetatable(L, PROC_MT)) {
    luaL_setfuncs(L, proc_meta, 0);
    luaL_newlib(L, proc_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, proc_funcs);
  return 1;
}
