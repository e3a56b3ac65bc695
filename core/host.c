/* host.c: one SlHost per lua_State (loop, ready queue, handle count), created on first use and
 * torn down by a sentinel's __gc at lua_close; the engine API of sandlot.h; core preloads and
 * the Lua search path. Error policy for chunks run by the engine lives here too. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "internal.h"

static const char host_key = 'h';   /* registry: full userdata boxing the SlHost pointer */
static const char loop_key = 'l';   /* registry: lightuserdata, loop given by sandlot_set_loop */

struct sandlot {
  lua_State *L;
  char *last_error;
};

static void on_handle_closed(uv_handle_t *handle) {
  sl_host_handle_done(handle->data);
}

/* Runs at lua_close after every other finalizer (the sentinel is the oldest object with a
 * __gc): finalizers have killed forgotten children and closed their handles; drain the loop
 * until the last close callback ran, then free what the host owns. */
static int host_gc(lua_State *L) {
  SlHost **box = lua_touserdata(L, 1);
  SlHost *h = *box;
  if (h == NULL) return 0;
  *box = NULL;
  h->closing = true;
  sl_sched_cancel_all(L);                  /* stop timers, kill children of parked tasks */
  if (h->http_close != NULL) h->http_close(h); /* curl's cached connections and timer */
  uv_idle_stop(&h->idle);
  uv_close((uv_handle_t *)&h->idle, on_handle_closed);
  while (h->handles > 0) uv_run(h->loop, UV_RUN_ONCE);
  if (h->own_loop) {
    uv_run(h->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(h->loop) != 0)
      fprintf(stderr, "sandlot: warning: libuv loop closed with handles still open\n");
    free(h->loop);
  }
  free(h);
  return 0;
}

SlHost *sl_host(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key) == LUA_TUSERDATA) {
    SlHost *h = *(SlHost **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (h == NULL) luaL_error(L, "sandlot: the host is closing");
    return h;
  }
  lua_pop(L, 1);
  SlHost **box = lua_newuserdatauv(L, sizeof(*box), 0);
  *box = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, host_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  SlHost *h = calloc(1, sizeof(*h));
  if (h == NULL) luaL_error(L, "sandlot: out of memory");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &loop_key);
  h->loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (h->loop == NULL) {
    h->loop = malloc(sizeof(*h->loop));
    if (h->loop == NULL || uv_loop_init(h->loop) != 0) {
      free(h->loop);
      free(h);
      luaL_error(L, "sandlot: cannot initialise the event loop");
    }
    h->own_loop = true;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  h->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  struct sigaction sa;                     /* a dead reader must be EPIPE, not death */
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  luaL_requiref(L, "sandlot.core.errors", luaopen_sandlot_core_errors, 0);
  lua_pop(L, 1);                           /* errors made in C need the metatable */
  uv_idle_init(h->loop, &h->idle);
  h->idle.data = h;
  h->handles = 1;
  *box = h;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &host_key);
  return h;
}

void sl_host_handle_opened(SlHost *h) { h->handles++; }
void sl_host_handle_done(SlHost *h) { h->handles--; }
void sl_host_handle_closed(uv_handle_t *handle) { sl_host_handle_done(handle->data); }

void sl_host_drive(SlHost *h, bool *done) {
  h->loop_depth++;
  /* One iteration runs one round of ready tasks (the idle handle is active while any are
   * ready, which also makes the poll non-blocking) and polls I/O, so tasks that only ever
   * yield cannot starve the loop. */
  for (;;) {
    if (done != NULL ? *done : h->live_tasks == 0) break;
    if (uv_run(h->loop, UV_RUN_ONCE) == 0 && h->ready_head == NULL) break;
  }
  h->loop_depth--;
}

uint64_t sl_now_ns(void) { return uv_hrtime(); }

void sandlot_set_loop(lua_State *L, struct uv_loop_s *loop) {
  lua_pushlightuserdata(L, loop);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &loop_key);
}

/* ---------------------------------------------------------------- sandlot.core */

/* The directory holding lua/sandlot/init.lua for this binary: <exe>/../lua in a build tree,
 * <exe>/../share/lua/5.4 once installed, else the install's LMODDIR (for embedders).
 * NULL when none exists (stock paths apply). */
bool sl_exe_dir(char *buf, size_t size) {
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  char *slash = strrchr(buf, '/');
  if (slash == NULL) return false;
  *slash = '\0';
  return true;
}

static const char *find_lua_dir(char *buf, size_t size) {
  char exe[PATH_MAX];
  if (!sl_exe_dir(exe, sizeof(exe))) return NULL;
  static const char *const rel[] = {"/../lua", "/../share/lua/5.4", NULL};
  for (int i = 0; rel[i] != NULL; i++) {
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof(probe), "%s%s/sandlot/init.lua", exe, rel[i]);
    if (access(probe, R_OK) == 0) {
      snprintf(probe, sizeof(probe), "%s%s", exe, rel[i]);
      if (realpath(probe, buf) != NULL && strlen(buf) < size) return buf;
    }
  }
#ifdef SANDLOT_LUADIR                       /* an embedder elsewhere: the configured install */
  char probe[PATH_MAX];
  snprintf(probe, sizeof(probe), "%s/sandlot/init.lua", SANDLOT_LUADIR);
  if (access(probe, R_OK) == 0 && strlen(SANDLOT_LUADIR) < size) return strcpy(buf, SANDLOT_LUADIR);
#endif
  return NULL;
}

#ifdef __SANITIZE_ADDRESS__
/* libssh2 1.10 (Debian 12) leaks two OpenSSL BIGNUMs (56 bytes) per ECDSA signature, in
 * memory OpenSSL allocates itself, outside the session arena; later libssh2 fixed it. LSan's
 * fast unwinder stops inside libcrypto (no frame pointers), so only its name can match. The
 * core never calls OpenSSL itself: every other leak keeps its own frames and is reported.
 * Defined here rather than in ssh.c: the host binary loads ssh.c as a module (lazy.c), too
 * late for LSan to find the hook there. */
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void) {
  return "leak:libcrypto.so\n";
}
#endif

int luaopen_sandlot_core(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, SANDLOT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushfstring(L, "libuv %s", uv_version_string());
  lua_setfield(L, -2, "libuv");
  return 1;
}

void sl_register_core(lua_State *L) {
  static const luaL_Reg mods[] = {
    {"sandlot.core", luaopen_sandlot_core},
    {"sandlot.core.sched", luaopen_sandlot_core_sched},
    {"sandlot.core.timer", luaopen_sandlot_core_timer},
    {"sandlot.core.proc", luaopen_sandlot_core_proc},
    {"sandlot.core.errors", luaopen_sandlot_core_errors},
    {"sandlot.core.sys", luaopen_sandlot_core_sys},
    {"sandlot.core.fs", luaopen_sandlot_core_fs},
    {"sandlot.core.zlib", luaopen_sandlot_core_zlib},
    {"sandlot.core.http", sl_open_http},
    {"sandlot.core.ssh", sl_open_ssh},
    {NULL, NULL}
  };
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = mods; m->name != NULL; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- engine API */

/* os.exit([code [, close]]) in an engine: closing the state from inside a running task (deep in
 * uv_run) is not possible, so this kills the children still running (and their groups),
 * flushes stdio and exits; the kernel reclaims the rest. */
static int host_exit(lua_State *L) {
  int code = EXIT_SUCCESS;
  if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  sl_proc_kill_all(sl_host(L));
  fflush(NULL);
  exit(code);
}

sandlot *sandlot_open(struct uv_loop_s *loop) {
  sandlot *S = calloc(1, sizeof(*S));
  if (S == NULL) return NULL;
  S->L = luaL_newstate();
  if (S->L == NULL) {
    free(S);
    return NULL;
  }
  lua_State *L = S->L;
  luaL_openlibs(L);
  if (loop != NULL) sandlot_set_loop(L, loop);
  sl_register_core(L);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, host_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  char dir[PATH_MAX];
  if (find_lua_dir(dir, sizeof(dir)) != NULL) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
  }
  sl_host(L);
  return S;
}

void sandlot_close(sandlot *S) {
  if (S == NULL) return;
  lua_close(S->L);
  free(S->last_error);
  free(S);
}

lua_State *sandlot_lua(sandlot *S) { return S->L; }

void sandlot_register(sandlot *S, const char *name, lua_CFunction fn) {
  lua_register(S->L, name, fn);
}

const char *sandlot_last_error(sandlot *S) { return S->last_error; }

static void set_error(sandlot *S, const char *msg) {
  free(S->last_error);
  S->last_error = msg != NULL ? strdup(msg) : NULL;
}

/* Appends the text of the error at the top of L (an error table via __tostring) and its
 * traceback (at top - 1 ... passed separately) to buffer b. */
static void add_error_text(lua_State *L, luaL_Buffer *b, int err, int tb) {
  luaL_tolstring(L, err, NULL);
  luaL_addvalue(b);
  if (lua_type(L, tb) == LUA_TSTRING) {
    luaL_addchar(b, '\n');
    lua_pushvalue(L, tb);
    luaL_addvalue(b);
  }
}

/* Collects the reasons a run failed: the main task's error (index main, may be 0), failed
 * tasks nobody joined, tasks left waiting. Returns 0 when there is nothing to report. */
static int collect_failures(sandlot *S, int main) {
  lua_State *L = S->L;
  int failures = 0;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (main != 0) {
    lua_getfield(L, main, "error");
    lua_pushvalue(L, main);
    lua_call(L, 1, 2);                                   /* err, traceback | nothing */
    if (!lua_isnil(L, -2)) {
      int top = lua_gettop(L);
      add_error_text(L, &b, top - 1, top);
      failures++;
    }
    lua_pop(L, 2);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "sandlot.core.sched");
  lua_getfield(L, -1, "unobserved");
  lua_call(L, 0, 1);                                     /* {task, ...} */
  int n = (int)luaL_len(L, -1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "error");
    lua_insert(L, -2);
    lua_call(L, 1, 2);
    int top = lua_gettop(L);
    if (failures++ > 0) luaL_addchar(&b, '\n');
    lua_pushfstring(L, "sandlot: a task failed and nobody joined it: ");
    luaL_addvalue(&b);
    add_error_text(L, &b, top - 1, top);
    lua_pop(L, 2);
  }
  lua_pop(L, 3);
  SlHost *h = sl_host(L);
  if (h->live_tasks > 0) {
    if (failures++ > 0) luaL_addchar(&b, '\n');
    lua_pushfstring(L, "sandlot: %d task(s) still waiting with nothing left to wake them "
                       "(a join on a task that never ends, or a cycle of joins)",
                    h->live_tasks);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  set_error(S, failures > 0 ? lua_tostring(L, -1) : NULL);
  lua_pop(L, 1);
  return failures > 0;
}

int sandlot_run(sandlot *S) {
  sl_host_drive(sl_host(S->L), NULL);
  return collect_failures(S, 0);
}

/* [S, fn, args...] -> rc: spawns fn as the main task and runs until every task is done.
 * Runs under lua_pcall so that nothing in here can escape as an unprotected error. */
static int run_main_p(lua_State *L) {
  sandlot *S = lua_touserdata(L, 1);
  int nargs = lua_gettop(L) - 2;
  luaL_requiref(L, "sandlot.core.sched", luaopen_sandlot_core_sched, 0);
  lua_getfield(L, -1, "spawn");
  lua_remove(L, -2);
  lua_insert(L, 2);                                      /* [S, spawn, fn, args...] */
  lua_call(L, nargs + 1, 1);                             /* [S, task] */
  SlTask *main = lua_touserdata(L, 2), until;
  memset(&until, 0, sizeof(until));
  main->sync_joiner = &until;
  sl_host_drive(sl_host(L), &until.woken);
  main->sync_joiner = NULL;
  if (main->state == SL_TASK_DONE && !main->ok)
    sl_sched_cancel_tasks(L);                            /* the script failed: stop the rest */
  sl_host_drive(sl_host(L), NULL);
  lua_pushinteger(L, collect_failures(S, 2));
  return 1;
}

static int run_main(sandlot *S, int nargs) {
  lua_State *L = S->L;
  lua_pushcfunction(L, run_main_p);
  lua_pushlightuserdata(L, S);
  lua_rotate(L, -2 - nargs - 1, 2);                      /* [run_main_p, S, fn, args...] */
  if (lua_pcall(L, nargs + 2, 1, 0) != LUA_OK) {
    set_error(S, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
    return 1;
  }
  int rc = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return rc;
}

int sandlot_dofile(sandlot *S, const char *path, int nargs) {
  lua_State *L = S->L;
  if (luaL_loadfile(L, path) != LUA_OK) {
    set_error(S, lua_tostring(L, -1));
    lua_pop(L, 1 + nargs);
    return 1;
  }
  lua_insert(L, -1 - nargs);
  return run_main(S, nargs);
}

int sandlot_dostring(sandlot *S, const char *code, const char *chunkname) {
  lua_State *L = S->L;
  if (luaL_loadbuffer(L, code, strlen(code), chunkname ? chunkname : "=(string)") != LUA_OK) {
    set_error(S, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
  }
  return run_main(S, 0);
}

int sandlot_step(sandlot *S) {
  SlHost *h = sl_host(S->L);
  h->loop_depth++;
  if (h->ready_head != NULL) sl_sched_run_ready(h);
  uv_run(h->loop, UV_RUN_NOWAIT);
  h->loop_depth--;
  return h->live_tasks;
}

int sandlot_backend_fd(sandlot *S) { return uv_backend_fd(sl_host(S->L)->loop); }

int sandlot_backend_timeout(sandlot *S) {
  SlHost *h = sl_host(S->L);
  return h->ready_head != NULL ? 0 : uv_backend_timeout(h->loop);
}

int sandlot_live_tasks(sandlot *S) { return sl_host(S->L)->live_tasks; }

int sandlot_stalled(sandlot *S) {
  SlHost *h = sl_host(S->L);
  return h->live_tasks > 0 && h->ready_head == NULL && !uv_loop_alive(h->loop);
}
