/* ssh_exec_handle.c: the Lua face of SSH exec (the channel op itself is core/ssh_exec.c):
 * (command, opts) read into an Exec (every default is Lua's, sandlot.ssh), session:exec,
 * which waits for the result, and session:spawn's exec handle (read, write, close_stdin,
 * resize, wait, kill, close), which keeps its session alive and kills what still runs when
 * closed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ssh_exec.h"

typedef struct { Exec *e; } ExecBox;

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
  e->op.vt = &ssh_exec_vt;
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
    ssh_exec_free(e);
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
    ssh_exec_free(e);
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
    ssh_exec_push_result(L, e);
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
  ssh_exec_start_asked(e);                          /* or exec_io, once the marker is in */
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
      ssh_exec_abandon(e);
      ssh_kick(s);
    }
    ssh_exec_maybe_free(e);
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
