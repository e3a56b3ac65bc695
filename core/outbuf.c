/* outbuf.c: the core's one output capture (head and tail under a cap), chunk queue, exec result
 * table and signal-name table (see outbuf.h), and sandlot.core.outbuf: a capture pair with an
 * exit status as a Lua object, for providers whose output arrives through Lua (sandlot.exec's
 * sink). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbuf.h"

#define OUTBUF_MT "sandlot.outbuf"

/* ---------------------------------------------------------------- capture */

static bool capture_grow(SlCapture *c, size_t want) {
  char *nb = realloc(c->buf, want);
  if (nb == NULL) return false;
  c->buf = nb;
  c->alloc = want;
  return true;
}

void sl_capture_add(SlCapture *c, const char *data, size_t n) {
  c->total += n;
  if (c->cap == 0 || n == 0) return;
  if (!c->wrapped && c->len + n <= c->cap) {
    if (c->len + n > c->alloc) {
      size_t want = c->alloc ? c->alloc : 4096;
      while (want < c->len + n) want *= 2;
      if (want > c->cap) want = c->cap;
      if (!capture_grow(c, want)) return;  /* keep what fits; total still counts */
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    return;
  }
  if (!c->wrapped) {                       /* fill up to cap, then the tail becomes a ring */
    if (c->alloc < c->cap && !capture_grow(c, c->cap)) return;
    size_t room = c->cap - c->len;
    memcpy(c->buf + c->len, data, room);
    c->len = c->cap;
    data += room;
    n -= room;
    c->wrapped = true;
    c->ring_pos = 0;
  }
  size_t head = c->cap / 2, ring = c->cap - head;
  if (n >= ring) {                         /* only the last `ring` bytes can survive */
    data += n - ring;
    n = ring;
  }
  while (n > 0) {
    size_t k = ring - c->ring_pos;
    if (k > n) k = n;
    memcpy(c->buf + head + c->ring_pos, data, k);
    c->ring_pos = (c->ring_pos + k) % ring;
    data += k;
    n -= k;
  }
}

void sl_capture_push(lua_State *L, const SlCapture *c) {
  if (!c->wrapped) {
    lua_pushlstring(L, c->buf ? c->buf : "", c->len);
    return;
  }
  size_t head = c->cap / 2, ring = c->cap - head;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, c->buf, head);
  luaL_addlstring(&b, c->buf + head + c->ring_pos, ring - c->ring_pos);
  luaL_addlstring(&b, c->buf + head, c->ring_pos);
  luaL_pushresult(&b);
}

void sl_capture_free(SlCapture *c) {
  free(c->buf);
  c->buf = NULL;
  c->len = c->alloc = c->ring_pos = 0;
}

/* ---------------------------------------------------------------- queue */

bool sl_queue_push(SlQueue *q, int which, const char *data, size_t n) {
  SlChunk *c = malloc(sizeof(*c) + n);
  if (c == NULL) return false;
  c->next = NULL;
  c->which = which;
  c->len = n;
  memcpy(c->data, data, n);
  if (q->tail != NULL) q->tail->next = c;
  else q->head = c;
  q->tail = c;
  q->bytes += n;
  return true;
}

SlChunk *sl_queue_pop(SlQueue *q) {
  SlChunk *c = q->head;
  if (c == NULL) return NULL;
  q->head = c->next;
  if (q->head == NULL) q->tail = NULL;
  q->bytes -= c->len;
  return c;
}

void sl_queue_clear(SlQueue *q) {
  for (SlChunk *c = q->head, *next; c != NULL; c = next) {
    next = c->next;
    free(c);
  }
  q->head = q->tail = NULL;
  q->bytes = 0;
}

/* ---------------------------------------------------------------- result */

void sl_exec_result_push(lua_State *L, const SlExecResult *r) {
  luaL_checkstack(L, 4, NULL);
  lua_createtable(L, 0, 12);
  if (r->signal > 0) {
    lua_pushinteger(L, 128 + r->signal);
    lua_setfield(L, -2, "exit_code");
    lua_pushinteger(L, r->signal);
    lua_setfield(L, -2, "signal");
  } else {
    lua_pushinteger(L, (lua_Integer)r->exit_code);
    lua_setfield(L, -2, "exit_code");
  }
  if (r->signal_name != NULL) {
    lua_pushstring(L, r->signal_name);
    lua_setfield(L, -2, "signal_name");
  }
  static const char *const names[2][2] = {{"stdout", "stdout_bytes"},
                                          {"stderr", "stderr_bytes"}};
  for (int i = 0; i < 2; i++) {
    sl_capture_push(L, r->out[i]);
    lua_setfield(L, -2, names[i][0]);
    lua_pushinteger(L, (lua_Integer)r->out[i]->total);
    lua_setfield(L, -2, names[i][1]);
  }
  lua_pushboolean(L, r->timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushboolean(L, r->out[0]->wrapped || r->out[1]->wrapped);
  lua_setfield(L, -2, "truncated");
  lua_pushnumber(L, r->duration);
  lua_setfield(L, -2, "duration");
  if (r->pid > 0) {
    lua_pushinteger(L, (lua_Integer)r->pid);
    lua_setfield(L, -2, "pid");
  }
  if (r->pgid > 0) {
    lua_pushinteger(L, (lua_Integer)r->pgid);
    lua_setfield(L, -2, "pgid");
  }
}

/* ---------------------------------------------------------------- signals */

/* Linux numbering, which is also what a remote Linux (SSH, a container) reports. */
static const struct { const char *name; int num; } signals[] = {
  {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL}, {"TRAP", SIGTRAP},
  {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
  {"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
  {"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
  {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG},
  {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
  {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}, {"SYS", SIGSYS}, {NULL, 0}
};

int sl_signal_number(const char *name) {
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (int i = 0; signals[i].name != NULL; i++)
    if (strcmp(signals[i].name, name) == 0) return signals[i].num;
  return 0;
}

const char *sl_signal_name(int sig) {
  for (int i = 0; signals[i].name != NULL; i++)
    if (signals[i].num == sig) return signals[i].name;
  return NULL;
}

/* ---------------------------------------------------------------- Lua API */

/* A stdout/stderr capture pair and how the command ended. Plain memory: __gc frees it. */
typedef struct {
  SlCapture out[2];
  uint64_t start_ns, end_ns;
  int64_t exit_code;
  int signal;
  char signal_name[32];
  bool exited, timed_out;
} Outbuf;

static Outbuf *ob_check(lua_State *L) {
  Outbuf *ob = luaL_checkudata(L, 1, OUTBUF_MT);
  if (ob->start_ns == 0) luaL_error(L, "attempt to use a closed sandlot.outbuf");
  return ob;
}

static const char *const stream_names[] = {"stdout", "stderr", NULL};

/* outbuf.new([max_output]) -> ob   max_output: bytes kept per stream (default 16 MiB) */
static int ob_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, (lua_Integer)SL_DEFAULT_MAX_OUTPUT);
  luaL_argcheck(L, cap >= 0, 1, "max_output must be >= 0");
  Outbuf *ob = lua_newuserdatauv(L, sizeof(*ob), 0);
  memset(ob, 0, sizeof(*ob));
  ob->out[0].cap = ob->out[1].cap = (size_t)cap;
  ob->start_ns = sl_now_ns();
  luaL_setmetatable(L, OUTBUF_MT);
  return 1;
}

/* ob:add("stdout"|"stderr", data) -> nothing */
static int ob_add(lua_State *L) {
  Outbuf *ob = ob_check(L);
  int which = luaL_checkoption(L, 2, NULL, stream_names);
  size_t n;
  const char *data = luaL_checklstring(L, 3, &n);
  if (ob->exited) return luaL_error(L, "sandlot.outbuf: add() after exit()");
  sl_capture_add(&ob->out[which], data, n);
  return 0;
}

/* ob:exit(code [, signal]) -> nothing. code: integer, or nil when a signal says it all;
 * signal: a number 1..64 or a name ("TERM", "SIGTERM"). An unknown name is kept as
 * signal_name without a number, and exit_code is code (255 when code is nil). */
static int ob_exit(lua_State *L) {
  Outbuf *ob = ob_check(L);
  if (ob->exited) return luaL_error(L, "sandlot.outbuf: exit() called twice");
  bool has_code = !lua_isnoneornil(L, 2);
  lua_Integer code = has_code ? luaL_checkinteger(L, 2) : 255;
  int sig = 0;
  const char *name = NULL;
  if (lua_type(L, 3) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 1 && n <= 64, 3, "signal out of range 1..64");
    sig = (int)n;
  } else if (!lua_isnoneornil(L, 3)) {
    name = luaL_checkstring(L, 3);
    luaL_argcheck(L, name[0] != '\0', 3, "empty signal name");
    sig = sl_signal_number(name);
    if (strncmp(name, "SIG", 3) == 0 && name[3] != '\0') name += 3;
  }
  luaL_argcheck(L, has_code || name != NULL || sig > 0, 2, "exit code or signal required");
  ob->exit_code = code;
  ob->signal = sig;
  if (name != NULL) snprintf(ob->signal_name, sizeof(ob->signal_name), "%s", name);
  ob->exited = true;
  ob->end_ns = sl_now_ns();
  return 0;
}

/* ob:timed_out() -> nothing: the command was killed for running too long */
static int ob_timed_out(lua_State *L) {
  ob_check(L)->timed_out = true;
  return 0;
}

/* ob:result() -> result (the table sandlot.proc returns). Before exit() only after
 * timed_out(): then the command counts as killed with SIGKILL, as a local timeout is. */
static int ob_result(lua_State *L) {
  Outbuf *ob = ob_check(L);
  if (!ob->exited && !ob->timed_out)
    return luaL_error(L, "sandlot.outbuf: result() before exit() or timed_out()");
  SlExecResult r = {.out = {&ob->out[0], &ob->out[1]}, .timed_out = ob->timed_out};
  if (ob->exited) {
    r.exit_code = ob->exit_code;
    r.signal = ob->signal;
    r.signal_name = ob->signal_name[0] != '\0' ? ob->signal_name : NULL;
  } else {
    r.signal = SIGKILL;
  }
  uint64_t end = ob->exited ? ob->end_ns : sl_now_ns();
  r.duration = (double)(end - ob->start_ns) / 1e9;
  sl_exec_result_push(L, &r);
  return 1;
}

/* ob:memory() -> bytes held by the two captures (for tests: stays within 2 * max_output) */
static int ob_memory(lua_State *L) {
  Outbuf *ob = ob_check(L);
  lua_pushinteger(L, (lua_Integer)(ob->out[0].alloc + ob->out[1].alloc));
  return 1;
}

/* ob:close() -> true. Also __close and __gc: frees the captures; idempotent. */
static int ob_close(lua_State *L) {
  Outbuf *ob = luaL_checkudata(L, 1, OUTBUF_MT);
  sl_capture_free(&ob->out[0]);
  sl_capture_free(&ob->out[1]);
  ob->start_ns = 0;
  lua_pushboolean(L, 1);
  return 1;
}

/* outbuf.signal_number(name) -> integer | nil;  outbuf.signal_name(n) -> string | nil */
static int ob_signal_number(lua_State *L) {
  int n = sl_signal_number(luaL_checkstring(L, 1));
  if (n == 0) return 0;
  lua_pushinteger(L, n);
  return 1;
}

static int ob_signal_name(lua_State *L) {
  const char *name = sl_signal_name((int)luaL_checkinteger(L, 1));
  if (name == NULL) return 0;
  lua_pushstring(L, name);
  return 1;
}

static const luaL_Reg ob_methods[] = {
  {"add", ob_add}, {"exit", ob_exit}, {"timed_out", ob_timed_out}, {"result", ob_result},
  {"memory", ob_memory}, {"close", ob_close}, {NULL, NULL}
};

static const luaL_Reg ob_meta[] = {
  {"__index", NULL}, {"__gc", ob_close}, {"__close", ob_close}, {NULL, NULL}
};

static const luaL_Reg ob_funcs[] = {
  {"new", ob_new}, {"signal_number", ob_signal_number}, {"signal_name", ob_signal_name},
  {NULL, NULL}
};

int luaopen_sandlot_core_outbuf(lua_State *L) {
  if (luaL_newmetatable(L, OUTBUF_MT)) {
    luaL_setfuncs(L, ob_meta, 0);
    luaL_newlib(L, ob_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, ob_funcs);
  lua_pushinteger(L, (lua_Integer)SL_DEFAULT_MAX_OUTPUT);
  lua_setfield(L, -2, "DEFAULT_MAX_OUTPUT");
  return 1;
}
