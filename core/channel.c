/* channel.c: sandlot.core.channel: a duplex byte stream over two descriptors this process
 * inherited, for a replica's protocol (lua/sandlot/_peer/). channel.stdio() moves the
 * protocol off fds 0 and 1 first (execnet's rule): 0 is reopened on /dev/null and 1 on
 * stderr, so print, io.write and child processes can never write into the channel. A Channel
 * is owned by libuv until both pipes' close callbacks ran; the userdata only boxes a pointer. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "outbuf.h"

#define CHANNEL_MT "sandlot.channel"

typedef struct {
  SlHost *host;
  uv_pipe_t in, out;
  uv_shutdown_t shutdown;                 /* close: the queued writes go out first */
  int open;                               /* pipes not yet closed (0..2) */
  SlQueue q;                              /* read and not yet taken */
  SlTask *reader;
  bool eof, reading, released;
  int read_err;                           /* a libuv error that ended the input, or 0 */
  size_t queued_out;                      /* bytes written and not yet taken by the kernel */
  int write_err;                          /* the first failed write, or 0 */
} Channel;

typedef struct {
  uv_write_t req;
  Channel *ch;
  size_t len;
  char data[];
} WriteReq;

typedef struct { Channel *ch; } ChannelBox;

static void maybe_free(Channel *ch) {
  if (ch->open > 0 || !ch->released) return;
  sl_queue_clear(&ch->q);
  free(ch);
}

static void on_closed(uv_handle_t *handle) {
  Channel *ch = handle->data;
  sl_host_handle_done(ch->host);
  ch->open--;
  maybe_free(ch);
}

static void wake_reader(Channel *ch) {
  SlTask *t = ch->reader;
  if (t == NULL) return;
  ch->reader = NULL;
  lua_State *L = t->co;
  luaL_checkstack(L, 3, NULL);
  SlChunk *c = sl_queue_pop(&ch->q);
  if (c != NULL) {
    lua_pushlstring(L, c->data, c->len);
    free(c);
    sl_wake(t, 1);
  } else if (ch->read_err != 0) {
    SlError e;
    sl_err_uv(&e, ch->read_err, "channel read");
    sl_push_error(L, &e);
    sl_wake(t, 2);
  } else {
    lua_pushnil(L);                        /* the end of the input */
    sl_wake(t, 1);
  }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  Channel *ch = handle->data;
  buf->base = ch->host->readbuf;
  buf->len = sizeof(ch->host->readbuf);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  Channel *ch = stream->data;
  if (n > 0) {
    if (!sl_queue_push(&ch->q, 0, buf->base, (size_t)n)) {
      ch->read_err = UV_ENOMEM;
      ch->eof = true;
      uv_read_stop(stream);
    } else if (sl_queue_full(&ch->q)) {
      uv_read_stop(stream);
      ch->reading = false;
    }
    wake_reader(ch);
    return;
  }
  if (n == 0) return;
  if (n != UV_EOF) ch->read_err = (int)n;
  ch->eof = true;
  ch->reading = false;
  uv_read_stop(stream);
  wake_reader(ch);
}

static Channel *channel_check(lua_State *L) {
  ChannelBox *box = luaL_checkudata(L, 1, CHANNEL_MT);
  if (box->ch == NULL) luaL_error(L, "attempt to use a closed sandlot.channel");
  return box->ch;
}

static int fd_fail(lua_State *L, const char *what) {
  int e = errno;
  return sl_fail(L, sl_code_for_errno(e), "channel: %s: %s", what, strerror(e));
}

/* Moves the protocol to private descriptors: returns them in fds[0] (in) and fds[1] (out). */
static int move_stdio(lua_State *L, int fds[2]) {
  fds[0] = fcntl(0, F_DUPFD_CLOEXEC, 3);
  if (fds[0] < 0) return fd_fail(L, "dup stdin");
  fds[1] = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (fds[1] < 0) {
    close(fds[0]);
    return fd_fail(L, "dup stdout");
  }
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    close(null);
  } else {
    close(0);                              /* no /dev/null in this root: stdin reads EBADF */
  }
  dup2(2, 1);                              /* stray output goes to the log stream */
  return 0;
}

/* channel.stdio() -> ch | nil, err */
static int channel_stdio(lua_State *L) {
  SlHost *h = sl_host(L);
  ChannelBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->ch = NULL;
  luaL_setmetatable(L, CHANNEL_MT);
  int fds[2] = {-1, -1};
  if (move_stdio(L, fds) != 0) return 2;
  Channel *ch = calloc(1, sizeof(*ch));
  if (ch == NULL) return luaL_error(L, "out of memory");
  ch->host = h;
  uv_pipe_init(h->loop, &ch->in, 0);
  uv_pipe_init(h->loop, &ch->out, 0);
  ch->in.data = ch->out.data = ch;
  ch->open = 2;
  sl_host_handle_opened(h);
  sl_host_handle_opened(h);
  int rc = uv_pipe_open(&ch->in, fds[0]);
  if (rc == 0) rc = uv_pipe_open(&ch->out, fds[1]);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&ch->in, on_alloc, on_read);
  if (rc != 0) {
    ch->released = true;
    uv_close((uv_handle_t *)&ch->in, on_closed);
    uv_close((uv_handle_t *)&ch->out, on_closed);
    SlError e;
    sl_err_uv(&e, rc, "channel: open stdio");
    return sl_push_error(L, &e);
  }
  ch->reading = true;
  box->ch = ch;
  return 1;
}

static void read_cleanup(SlTask *t, void *data) {
  (void)t;
  ((Channel *)data)->reader = NULL;
}

static int read_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* ch:read() -> chunk | nil (the end) | nil, err */
static int channel_read(lua_State *L) {
  Channel *ch = channel_check(L);
  lua_settop(L, 1);
  if (ch->reader != NULL) return luaL_error(L, "sandlot.channel: another task is reading");
  if (!ch->reading && !ch->eof && sl_queue_drained(&ch->q)) {
    if (uv_read_start((uv_stream_t *)&ch->in, on_alloc, on_read) == 0) ch->reading = true;
  }
  SlChunk *c = sl_queue_pop(&ch->q);
  if (c != NULL) {
    lua_pushlstring(L, c->data, c->len);
    free(c);
    return 1;
  }
  if (ch->eof) {
    if (ch->read_err == 0) return 0;
    SlError e;
    sl_err_uv(&e, ch->read_err, "channel read");
    return sl_push_error(L, &e);
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  ch->reader = t;
  sl_wait_set_cleanup(t, read_cleanup, ch);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), read_k);
}

static void on_write(uv_write_t *req, int status) {
  WriteReq *w = (WriteReq *)req;
  Channel *ch = w->ch;
  ch->queued_out -= w->len;
  if (status != 0 && ch->write_err == 0) ch->write_err = status;
  free(w);
}

/* ch:write(data) -> true | nil, err   (queued: returns before the kernel took it) */
static int channel_write(lua_State *L) {
  Channel *ch = channel_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (ch->write_err != 0) {
    SlError e;
    sl_err_uv(&e, ch->write_err, "channel write");
    return sl_push_error(L, &e);
  }
  if (len > 0) {
    WriteReq *w = malloc(sizeof(*w) + len);
    if (w == NULL) return luaL_error(L, "out of memory");
    w->ch = ch;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&ch->out, &buf, 1, on_write);
    if (rc != 0) {
      free(w);
      SlError e;
      sl_err_uv(&e, rc, "channel write");
      return sl_push_error(L, &e);
    }
    ch->queued_out += len;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:pending() -> bytes written but not yet taken by the kernel */
static int channel_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)channel_check(L)->queued_out);
  return 1;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;                            /* written, or the reader has gone: over either way */
  Channel *ch = req->data;
  uv_close((uv_handle_t *)&ch->out, on_closed);
}

/* ch:close() -> true. Also __gc and __close; idempotent. What was written still goes out
 * (a shutdown waits for the queued writes; uv_close alone would cancel them). */
static int channel_close(lua_State *L) {
  ChannelBox *box = luaL_checkudata(L, 1, CHANNEL_MT);
  Channel *ch = box->ch;
  if (ch != NULL) {
    box->ch = NULL;
    ch->released = true;
    if (ch->reader != NULL) {              /* a reader parked on a closed channel: the end */
      ch->eof = true;
      wake_reader(ch);
    }
    uv_close((uv_handle_t *)&ch->in, on_closed);
    ch->shutdown.data = ch;
    if (uv_shutdown(&ch->shutdown, (uv_stream_t *)&ch->out, on_shutdown) != 0)
      uv_close((uv_handle_t *)&ch->out, on_closed);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg channel_methods[] = {
  {"read", channel_read}, {"write", channel_write}, {"pending", channel_pending},
  {"close", channel_close}, {NULL, NULL}
};

static const luaL_Reg channel_meta[] = {
  {"__gc", channel_close}, {"__close", channel_close}, {NULL, NULL}
};

static const luaL_Reg channel_funcs[] = {{"stdio", channel_stdio}, {NULL, NULL}};

int luaopen_sandlot_core_channel(lua_State *L) {
  sl_host(L);
  if (luaL_newmetatable(L, CHANNEL_MT)) {
    luaL_setfuncs(L, channel_meta, 0);
    luaL_newlib(L, channel_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, channel_funcs);
  return 1;
}
