/* pty.c: terminals. The pseudo-terminal a child of proc.c gets (sl_pty_open, sl_pty_resize:
 * openpty(3), the size through TIOCSWINSZ), and sandlot.core.term for the local terminal:
 * raw mode as a handle that restores itself, the window size, input read on the loop, and a
 * signal watcher (SIGWINCH) a task waits on. Each handle owns its uv handle until the close
 * callback; the userdata only boxes a pointer. */
#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "internal.h"
#include "outbuf.h"
#include "pty.h"

/* ---------------------------------------------------------------- the child's pty */

int sl_pty_open(int rows, int cols, int *master, int *slave, char *name, size_t n) {
  char path[128];
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  if (openpty(master, slave, path, NULL, &ws) != 0) return errno;
  if (strlen(path) >= n) {
    close(*master);
    close(*slave);
    return ENAMETOOLONG;
  }
  strcpy(name, path);
  fcntl(*master, F_SETFD, FD_CLOEXEC);    /* no other child may inherit either end */
  fcntl(*slave, F_SETFD, FD_CLOEXEC);
  return 0;
}

int sl_pty_resize(int master, int rows, int cols) {
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  return ioctl(master, TIOCSWINSZ, &ws) == 0 ? 0 : errno;
}

/* ---------------------------------------------------------------- raw mode */

#define MODE_MT "sandlot.term.mode"

typedef struct {
  int fd;                                  /* -1 once restored */
  struct termios saved;
} Mode;

/* term.raw(fd) -> mode | nil, err: the terminal on fd in raw mode (no echo, no line editing,
 * no signals from keys: Ctrl-C is a byte) until mode:restore(), __close or __gc. */
static int term_raw(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  Mode *m = lua_newuserdatauv(L, sizeof(*m), 0);
  m->fd = -1;
  luaL_setmetatable(L, MODE_MT);
  if (tcgetattr(fd, &m->saved) != 0)
    return sl_fail(L, errno == ENOTTY ? "invalid_input" : sl_code_for_errno(errno),
                   "fd %d: %s", fd, strerror(errno));
  struct termios raw = m->saved;
  cfmakeraw(&raw);
  if (tcsetattr(fd, TCSADRAIN, &raw) != 0)
    return sl_fail(L, sl_code_for_errno(errno), "fd %d: raw mode: %s", fd, strerror(errno));
  m->fd = fd;
  return 1;
}

/* mode:restore() -> true. Also __close and __gc: idempotent, puts back what raw() found. */
static int mode_restore(lua_State *L) {
  Mode *m = luaL_checkudata(L, 1, MODE_MT);
  if (m->fd >= 0) {
    while (tcsetattr(m->fd, TCSADRAIN, &m->saved) != 0 && errno == EINTR) {}
    m->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* term.size(fd) -> rows, cols | nil, err */
static int term_size(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0)
    return sl_fail(L, errno == ENOTTY ? "invalid_input" : sl_code_for_errno(errno),
                   "fd %d: window size: %s", fd, strerror(errno));
  lua_pushinteger(L, ws.ws_row);
  lua_pushinteger(L, ws.ws_col);
  return 2;
}

/* ---------------------------------------------------------------- input on the loop */

#define READER_MT "sandlot.term.reader"

/* A terminal or pipe is reopened through /proc/self/fd (a file description of our own, so
 * the O_NONBLOCK libuv sets never reaches the shell that started us) and read on the loop,
 * only while a task waits; a regular file is read directly (it never blocks). */
typedef struct {
  uv_pipe_t pipe;
  SlHost *host;
  SlTask *waiter;
  int file_fd;                             /* a regular file's fd (ours), or -1 */
  bool open, eof;
} Reader;

typedef struct { Reader *r; } ReaderBox;

static void reader_closed(uv_handle_t *h) {
  Reader *r = h->data;
  sl_host_handle_done(r->host);
  free(r);
}

static void reader_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  Reader *r = h->data;
  buf->base = r->host->readbuf;
  buf->len = sizeof(r->host->readbuf);
}

static void reader_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  Reader *r = s->data;
  if (n == 0) return;
  uv_read_stop(s);                         /* one chunk per read(): nothing to queue */
  SlTask *t = r->waiter;
  r->waiter = NULL;
  if (n < 0) r->eof = true;
  if (t == NULL) return;
  if (n > 0) lua_pushlstring(t->co, buf->base, (size_t)n);
  else lua_pushnil(t->co);
  sl_wake(t, 1);
}

static void reader_cleanup(SlTask *t, void *data) {
  (void)t;
  Reader *r = data;
  r->waiter = NULL;
  if (r->open) uv_read_stop((uv_stream_t *)&r->pipe);
}

static int term_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* term.reader(fd) -> reader | nil, err */
static int term_reader(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  SlHost *h = sl_host(L);
  ReaderBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->r = NULL;
  luaL_setmetatable(L, READER_MT);
  Reader *r = calloc(1, sizeof(*r));
  if (r == NULL) return luaL_error(L, "out of memory");
  r->host = h;
  r->file_fd = -1;
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  uv_handle_type type = uv_guess_handle(fd);
  int own = type == UV_FILE ? -1 : open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  if (own < 0) own = fcntl(fd, F_DUPFD_CLOEXEC, 3);  /* a socket: share the description */
  if (own < 0) {
    int e = errno;
    free(r);
    return sl_fail(L, sl_code_for_errno(e), "fd %d: %s", fd, strerror(e));
  }
  if (type == UV_FILE) {
    r->file_fd = own;
  } else {
    int rc = uv_pipe_init(h->loop, &r->pipe, 0);
    if (rc == 0) rc = uv_pipe_open(&r->pipe, own);
    if (rc != 0) {
      close(own);
      free(r);
      return sl_fail(L, "io_error", "fd %d: %s", fd, uv_strerror(rc));
    }
    r->pipe.data = r;
    r->open = true;
    sl_host_handle_opened(h);
  }
  box->r = r;
  return 1;
}

static Reader *reader_check(lua_State *L) {
  ReaderBox *box = luaL_checkudata(L, 1, READER_MT);
  if (box->r == NULL) luaL_error(L, "attempt to use a closed sandlot.term.reader");
  return box->r;
}

/* reader:read() -> data | nil (end of input) | nil, err (cancelled) */
static int reader_read(lua_State *L) {
  Reader *r = reader_check(L);
  lua_settop(L, 1);
  if (r->waiter != NULL) return luaL_error(L, "sandlot.term.reader: another task is reading");
  if (r->eof) return 0;
  if (r->file_fd >= 0) {
    ssize_t n;
    while ((n = read(r->file_fd, r->host->readbuf, sizeof(r->host->readbuf))) < 0 &&
           errno == EINTR) {}
    if (n <= 0) {
      r->eof = true;
      return 0;
    }
    lua_pushlstring(L, r->host->readbuf, (size_t)n);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  int rc = uv_read_start((uv_stream_t *)&r->pipe, reader_alloc, reader_on_read);
  if (rc != 0) {
    SlError err;
    sl_err_uv(&err, rc, "read");
    return sl_push_error(L, &err);
  }
  r->waiter = t;
  sl_wait_set_cleanup(t, reader_cleanup, r);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), term_k);
}

/* reader:close() -> true. Also __close and __gc: idempotent. */
static int reader_close(lua_State *L) {
  ReaderBox *box = luaL_checkudata(L, 1, READER_MT);
  Reader *r = box->r;
  if (r != NULL) {
    box->r = NULL;
    if (r->waiter != NULL) {
      SlTask *t = r->waiter;
      r->waiter = NULL;
      t->cleanup = NULL;
      luaL_checkstack(t->co, 2, NULL);
      lua_pushnil(t->co);
      sl_new_error(t->co, "cancelled", "the reader was closed");
      sl_wake(t, 2);
    }
    if (r->file_fd >= 0) close(r->file_fd);
    if (r->open) uv_close((uv_handle_t *)&r->pipe, reader_closed);
    else free(r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- signal watcher */

#define WATCH_MT "sandlot.term.signal"

/* A signal counts while nobody waits: the next wait() returns at once. The watcher is
 * unref'd: it never keeps the loop alive by itself. */
typedef struct {
  uv_signal_t sig;
  SlHost *host;
  SlTask *waiter;
  int pending;
} Watch;

typedef struct { Watch *w; } WatchBox;

static void watch_closed(uv_handle_t *h) {
  Watch *w = h->data;
  sl_host_handle_done(w->host);
  free(w);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  Watch *w = sig->data;
  SlTask *t = w->waiter;
  if (t == NULL) {
    w->pending++;
    return;
  }
  w->waiter = NULL;
  lua_pushboolean(t->co, 1);
  sl_wake(t, 1);
}

static void watch_cleanup(SlTask *t, void *data) {
  (void)t;
  ((Watch *)data)->waiter = NULL;
}

/* term.signal(name) -> watcher: name as "WINCH" or "SIGWINCH" */
static int term_signal(lua_State *L) {
  int signum = sl_signal_number(luaL_checkstring(L, 1));
  luaL_argcheck(L, signum > 0 && signum != SIGKILL && signum != SIGSTOP, 1,
                "not a signal that can be watched");
  SlHost *h = sl_host(L);
  WatchBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->w = NULL;
  luaL_setmetatable(L, WATCH_MT);
  Watch *w = calloc(1, sizeof(*w));
  if (w == NULL) return luaL_error(L, "out of memory");
  w->host = h;
  uv_signal_init(h->loop, &w->sig);
  w->sig.data = w;
  sl_host_handle_opened(h);
  int rc = uv_signal_start(&w->sig, on_signal, signum);
  uv_unref((uv_handle_t *)&w->sig);
  box->w = w;
  if (rc != 0) return sl_fail(L, "io_error", "signal %s: %s", lua_tostring(L, 1),
                              uv_strerror(rc));
  return 1;
}

static Watch *watch_check(lua_State *L) {
  WatchBox *box = luaL_checkudata(L, 1, WATCH_MT);
  if (box->w == NULL) luaL_error(L, "attempt to use a closed sandlot.term.signal");
  return box->w;
}

/* watcher:wait() -> true (the signal came) | nil, err (cancelled) */
static int watch_wait(lua_State *L) {
  Watch *w = watch_check(L);
  lua_settop(L, 1);
  if (w->waiter != NULL) return luaL_error(L, "sandlot.term.signal: another task is waiting");
  if (w->pending > 0) {
    w->pending = 0;                        /* several while nobody looked count as one */
    lua_pushboolean(L, 1);
    return 1;
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  w->waiter = t;
  sl_wait_set_cleanup(t, watch_cleanup, w);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), term_k);
}

/* watcher:close() -> true. Also __close and __gc: idempotent. */
static int watch_close(lua_State *L) {
  WatchBox *box = luaL_checkudata(L, 1, WATCH_MT);
  Watch *w = box->w;
  if (w != NULL) {
    box->w = NULL;
    if (w->waiter != NULL) {
      SlTask *t = w->waiter;
      w->waiter = NULL;
      t->cleanup = NULL;
      luaL_checkstack(t->co, 2, NULL);
      lua_pushnil(t->co);
      sl_new_error(t->co, "cancelled", "the signal watcher was closed");
      sl_wake(t, 2);
    }
    uv_signal_stop(&w->sig);
    uv_close((uv_handle_t *)&w->sig, watch_closed);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- module */

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction close) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
}

static const luaL_Reg mode_methods[] = {{"restore", mode_restore}, {NULL, NULL}};
static const luaL_Reg reader_methods[] = {
  {"read", reader_read}, {"close", reader_close}, {NULL, NULL}
};
static const luaL_Reg watch_methods[] = {
  {"wait", watch_wait}, {"close", watch_close}, {NULL, NULL}
};
static const luaL_Reg term_funcs[] = {
  {"raw", term_raw}, {"size", term_size}, {"reader", term_reader}, {"signal", term_signal},
  {NULL, NULL}
};

int luaopen_sandlot_core_term(lua_State *L) {
  sl_host(L);
  new_class(L, MODE_MT, mode_methods, mode_restore);
  new_class(L, READER_MT, reader_methods, reader_close);
  new_class(L, WATCH_MT, watch_methods, watch_close);
  luaL_newlib(L, term_funcs);
  return 1;
}
