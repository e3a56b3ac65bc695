/* engine.c: the embedding API of sandlot.h, the top layer of the core: an engine is one
 * lua_State with the core modules preloaded and the Lua library on package.path. It runs
 * chunks as tasks and drives the loop until they are done, reports what failed (the main
 * task's error, tasks nobody joined, tasks left waiting), spawns tasks for C callers, exits
 * (os.exit) and, for the host binary, turns SIGINT and SIGTERM into an orderly stop. */
#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "internal.h"

static const char anchors_key = 'a';  /* registry: {[lightuserdata SlTask] = task} (C's) */

struct sandlot {
  lua_State *L;
  char *last_error;
  bool catch_signals;     /* sandlot_catch_signals: runs stop on SIGINT and SIGTERM */
  uv_async_t *stop;       /* wakes the loop after a stop signal; freed in its close cb */
  SlTask *main;           /* the running chunk's task, during a run */
  int stop_signal;        /* what stopped the last run, 0 if nothing did */
};

/* ---------------------------------------------------------------- sandlot.core */

/* The directory of the running binary; false without /proc. */
bool sl_exe_dir(char *buf, size_t size) {
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  char *slash = strrchr(buf, '/');
  if (slash == NULL) return false;
  *slash = '\0';
  return true;
}

/* The directory of the object this code is linked into: <prefix>/lib for libsandlot.so,
 * <prefix>/lib/lua/5.4 for the sandlot.so Lua module, the binary's own directory when the core
 * is linked statically. An embedder's library is found wherever its tree was unpacked. */
bool sl_self_dir(char *buf, size_t size) {
  Dl_info info;
  if (dladdr((void *)sl_self_dir, &info) == 0 || info.dli_fname == NULL) return false;
  char real[PATH_MAX];
  if (realpath(info.dli_fname, real) == NULL || strlen(real) >= size) return false;
  strcpy(buf, real);
  char *slash = strrchr(buf, '/');
  if (slash == NULL) return false;
  *slash = '\0';
  return true;
}

/* The first of dir + rel[i] that holds sandlot/init.lua, canonical, into buf. */
static const char *probe_lua_dir(const char *dir, const char *const *rel, char *buf, size_t size) {
  for (int i = 0; rel[i] != NULL; i++) {
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof(probe), "%s%s/sandlot/init.lua", dir, rel[i]);
    if (access(probe, R_OK) == 0) {
      snprintf(probe, sizeof(probe), "%s%s", dir, rel[i]);
      if (realpath(probe, buf) != NULL && strlen(buf) < size) return buf;
    }
  }
  return NULL;
}

/* The directory holding lua/sandlot/init.lua: beside the binary (<exe>/../lua in a build tree,
 * <exe>/../share/lua/5.4 once installed), else beside the library holding the core (an
 * embedder linked against an installed or relocated prefix), else the install's LMODDIR.
 * NULL when none exists (stock paths apply). */
static const char *find_lua_dir(char *buf, size_t size) {
  char dir[PATH_MAX];
  static const char *const from_exe[] = {"/../lua", "/../share/lua/5.4", NULL};
  static const char *const from_lib[] = {"/../share/lua/5.4", "/../../../share/lua/5.4",
                                         "/../lua", NULL};
  if (sl_exe_dir(dir, sizeof(dir)) && probe_lua_dir(dir, from_exe, buf, size) != NULL)
    return buf;
  if (sl_self_dir(dir, sizeof(dir)) && probe_lua_dir(dir, from_lib, buf, size) != NULL)
    return buf;
#ifdef SANDLOT_LUADIR                       /* the configured install */
  char probe[PATH_MAX];
  snprintf(probe, sizeof(probe), "%s/sandlot/init.lua", SANDLOT_LUADIR);
  if (access(probe, R_OK) == 0 && strlen(SANDLOT_LUADIR) < size)
    return strcpy(buf, SANDLOT_LUADIR);
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

/* GCC 12's LSan (Debian 12) misreads glibc 2.36's dynamic TLS vector once a second module
 * with TLS is dlopened (http.so, then ssh.so): its tracer thread faults at exit ("Tracer
 * caught signal 11", "DTLS 5 at 0x4a-..."), and the leak check is lost. use_tls=0 skips TLS as
 * a root set: that can only add reports, never hide one. LSAN_OPTIONS still overrides it. */
__attribute__((visibility("default"))) const char *__lsan_default_options(void);
__attribute__((visibility("default"))) const char *__lsan_default_options(void) {
  return "use_tls=0:print_suppressions=0";
}
#endif

int luaopen_sandlot_core(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, SANDLOT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushfstring(L, "libuv %s", uv_version_string());
  lua_setfield(L, -2, "libuv");
  char dir[PATH_MAX];
  if (sl_self_dir(dir, sizeof(dir))) {      /* where sandlot-peer is looked for, beside exe's */
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "libdir");
  }
  /* the running binary's directory, still right when the binary was replaced on disk since it
   * started (an upgrade, a rebuild): /proc/self/exe then reads "... (deleted)" */
  if (sl_exe_dir(dir, sizeof(dir))) {
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "exedir");
  }
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
    {"sandlot.core.term", luaopen_sandlot_core_term},
    {"sandlot.core.fs", luaopen_sandlot_core_fs},
    {"sandlot.core.outbuf", luaopen_sandlot_core_outbuf},
    {"sandlot.core.zlib", luaopen_sandlot_core_zlib},
    {"sandlot.core.sqlite", luaopen_sandlot_core_sqlite},
    {"sandlot.core.codec", luaopen_sandlot_core_codec},
    {"sandlot.core.plugin", luaopen_sandlot_core_plugin},
    {"sandlot.core.fswatch", luaopen_sandlot_core_fswatch},
    {"sandlot.core.event", luaopen_sandlot_core_event},
    {"sandlot.core.channel", luaopen_sandlot_core_channel},
    {"sandlot.core.ws", luaopen_sandlot_core_ws},
    {"sandlot.core.bytecode", luaopen_sandlot_core_bytecode},
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
  sl_install_bytecode_searcher(L);
}

/* ---------------------------------------------------------------- error text */

static void set_error(sandlot *S, const char *msg) {
  free(S->last_error);
  S->last_error = msg != NULL ? strdup(msg) : NULL;
}

/* Appends the value on top to the list of parts at index parts (popping it). The parts become
 * one string only at the end: a luaL_Buffer must never be open while the stack changes under
 * it, and error text can be any length. */
static void add_part(lua_State *L, int parts) {
  lua_rawseti(L, parts, (lua_Integer)lua_rawlen(L, parts) + 1);
}

/* Appends the text of the error at index err (an error table via __tostring) and its
 * traceback (at index tb, when it is a string) to the parts. */
static void add_error_text(lua_State *L, int parts, int err, int tb) {
  luaL_tolstring(L, err, NULL);
  add_part(L, parts);
  if (lua_type(L, tb) == LUA_TSTRING) {
    lua_pushliteral(L, "\n");
    add_part(L, parts);
    lua_pushvalue(L, tb);
    add_part(L, parts);
  }
}

/* Replaces the parts at index parts by their concatenation. */
static void join_parts(lua_State *L, int parts) {
  luaL_Buffer b;                          /* only the parts' strings from here on */
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, parts); i++) {
    lua_rawgeti(L, parts, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_replace(L, parts);
}

/* [task | nil] -> text | nil: the reasons a run failed: the task's error, failed tasks nobody
 * joined, tasks left waiting. Protected (__tostring may raise). */
static int failures_p(lua_State *L) {
  int failures = 0;
  lua_settop(L, 1);
  lua_newtable(L);
  int parts = lua_gettop(L);
  if (!lua_isnil(L, 1) && sl_task_push_error(L, 1) > 0) {  /* err, traceback */
    add_error_text(L, parts, parts + 1, parts + 2);
    lua_pop(L, 2);
    failures++;
  }
  sl_sched_push_unobserved(L);                             /* {task, ...} */
  int n = (int)luaL_len(L, -1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    int top = lua_gettop(L);
    if (sl_task_push_error(L, top) == 0) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushstring(L, failures++ > 0 ? "\nsandlot: a task failed and nobody joined it: "
                                     : "sandlot: a task failed and nobody joined it: ");
    add_part(L, parts);
    add_error_text(L, parts, top + 1, top + 2);
    lua_settop(L, top - 1);
  }
  lua_pop(L, 1);
  SlHost *h = sl_host(L);
  if (h->live_tasks > 0) {
    lua_pushfstring(L, "%ssandlot: %d task(s) still waiting with nothing left to wake them "
                       "(a join on a task that never ends, or a cycle of joins)",
                    failures++ > 0 ? "\n" : "", h->live_tasks);
    add_part(L, parts);
  }
  if (failures == 0) return 0;
  join_parts(L, parts);
  return 1;
}

/* Collects the reasons a run failed (the task at index main, or 0 for none) into last_error.
 * Returns 0 when there is nothing to report. */
static int collect_failures(sandlot *S, int main) {
  lua_State *L = S->L;
  main = main != 0 ? lua_absindex(L, main) : 0;
  lua_pushcfunction(L, failures_p);
  if (main != 0) lua_pushvalue(L, main);
  else lua_pushnil(L);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    set_error(S, lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "error reporting an error");
    lua_pop(L, 1);
    return 1;
  }
  set_error(S, lua_tostring(L, -1));
  int failed = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return failed;
}

/* ---------------------------------------------------------------- stop signals */

/* The first SIGINT or SIGTERM during a run cancels its tasks, so that `<close>` variables
 * unwind and queued cleanup tasks (destroys) run before the process exits; a second one forces
 * the exit. A signal handler has no argument to find its engine by, so this state is per
 * process, which signal dispositions are anyway: only one engine catches signals at a time. */
static volatile sig_atomic_t stop_count;
static volatile sig_atomic_t stop_signo;
static uv_async_t *volatile stop_async;   /* set while a run catches signals */

static void on_stop_signal(int signo) {
  uv_async_t *async = stop_async;
  if (stop_count++ > 0 || async == NULL) {  /* the second: kill the children and go */
    sandlot *S = async != NULL ? async->data : NULL;
    if (S != NULL && S->main != NULL) sl_host_exit(S->main->host);
    signal(signo, SIG_DFL);
    raise(signo);
    return;
  }
  stop_signo = signo;
  uv_async_send(async);
}

static void on_stop(uv_async_t *async) {
  sandlot *S = async->data;
  if (stop_signo == 0 || S->main == NULL) return;
  fprintf(stderr, "sandlot: %s: stopping: closing what the script holds (again to force)\n",
          stop_signo == SIGINT ? "interrupted" : "terminated");
  fflush(stderr);
  sl_task_cancel(S->main);
  sl_sched_cancel_tasks(S->L);
}

static void on_stop_closed(uv_handle_t *handle) {
  sl_host_handle_done(handle->data);                     /* the host, set by sandlot_close */
  free(handle);
}

static bool signals_begin(sandlot *S, struct sigaction old[2]) {
  if (!S->catch_signals) return false;
  SlHost *h = sl_host(S->L);
  if (S->stop == NULL) {
    S->stop = malloc(sizeof(*S->stop));
    if (S->stop == NULL || uv_async_init(h->loop, S->stop, on_stop) != 0) {
      free(S->stop);
      S->stop = NULL;
      return false;
    }
    S->stop->data = S;
    uv_unref((uv_handle_t *)S->stop);     /* never keeps the loop up by itself */
    sl_host_handle_opened(h);
  }
  stop_count = 0;
  stop_signo = 0;
  stop_async = S->stop;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old[0]);
  sigaction(SIGTERM, &sa, &old[1]);
  return true;
}

static void signals_end(sandlot *S, struct sigaction old[2]) {
  sigaction(SIGINT, &old[0], NULL);
  sigaction(SIGTERM, &old[1], NULL);
  stop_async = NULL;
  if (stop_signo != 0) S->stop_signal = stop_signo;
}

/* ---------------------------------------------------------------- running chunks */

/* os.exit([code [, close]]) in an engine: closing the state from inside a running task (deep in
 * uv_run) is not possible, so this runs the modules' exit hooks (which kill the children still
 * running, and their groups), flushes stdio and exits; the kernel reclaims the rest. */
static int host_exit(lua_State *L) {
  int code = EXIT_SUCCESS;
  if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  sl_host_exit(sl_host(L));
  fflush(NULL);
  exit(code);
}

int sandlot_run(sandlot *S) {
  sl_host_drive(sl_host(S->L), NULL);
  return collect_failures(S, 0);
}

/* [S, fn, args...] -> rc: spawns fn as the main task and runs until every task is done.
 * Runs under lua_pcall so that nothing in here can escape as an unprotected error. */
static int run_main_p(lua_State *L) {
  sandlot *S = lua_touserdata(L, 1);
  SlTask *main = sl_sched_spawn(L, lua_gettop(L) - 2, false), until;   /* [S, task] */
  memset(&until, 0, sizeof(until));
  main->sync_joiner = &until;
  S->main = main;
  struct sigaction old[2];
  bool catching = signals_begin(S, old);
  SlHost *h = sl_host(L);
  sl_host_drive(h, &until.woken);
  main->sync_joiner = NULL;
  if (main->state == SL_TASK_DONE && !main->ok)
    sl_sched_cancel_tasks(L);            /* the script failed: stop the rest (not cleanups) */
  sl_host_drive(h, NULL);
  if (catching) signals_end(S, old);
  S->main = NULL;
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

void sandlot_catch_signals(sandlot *S) { S->catch_signals = true; }

int sandlot_stop_signal(sandlot *S) { return S->stop_signal; }

/* ---------------------------------------------------------------- tasks from C */

static int spawn_p(lua_State *L) {                       /* [fn, args...] -> task */
  sl_sched_spawn(L, lua_gettop(L) - 1, false);
  return 1;
}

static void push_anchors(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
  }
}

sandlot_task *sandlot_spawn(sandlot *S, int nargs) {
  lua_State *L = S->L;
  lua_pushcfunction(L, spawn_p);
  lua_insert(L, -2 - nargs);                             /* [spawn_p, fn, args...] */
  if (lua_pcall(L, nargs + 1, 1, 0) != LUA_OK) {
    set_error(S, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
    return NULL;
  }
  SlTask *t = lua_touserdata(L, -1);
  push_anchors(L);
  lua_pushlightuserdata(L, t);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
  return (sandlot_task *)t;
}

/* [task] -> text | nil: the failed task's error and traceback */
static int task_error_p(lua_State *L) {
  lua_settop(L, 1);
  lua_newtable(L);
  if (sl_task_push_error(L, 1) == 0) return 0;
  add_error_text(L, 2, 3, 4);
  lua_settop(L, 2);
  join_parts(L, 2);
  return 1;
}

int sandlot_task_error(sandlot *S, sandlot_task *task) {
  lua_State *L = S->L;
  SlTask *t = (SlTask *)task;
  if (t->state != SL_TASK_DONE) return -1;
  if (t->ok) return 0;
  lua_pushcfunction(L, task_error_p);
  push_anchors(L);
  lua_rawgetp(L, -1, t);
  lua_remove(L, -2);                                     /* [task_error_p, task] */
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING)
    set_error(S, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no error text)");
  else
    set_error(S, lua_tostring(L, -1));
  lua_pop(L, 1);
  return 1;
}

void sandlot_task_release(sandlot *S, sandlot_task *task) {
  lua_State *L = S->L;
  push_anchors(L);
  lua_pushlightuserdata(L, task);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- the engine */

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

/* Cleanup tasks (destroys queued by a __close that could not wait) still running get to finish
 * before the state closes; each bounds its own work. */
static void drain_cleanups(SlHost *h) {
  if (h->loop_depth > 0 || h->running > 0) return;
  h->loop_depth++;
  while (h->live_cleanup_tasks > 0)
    if (uv_run(h->loop, UV_RUN_ONCE) == 0 && h->ready_head == NULL) break;
  h->loop_depth--;
}

void sandlot_close(sandlot *S) {
  if (S == NULL) return;
  SlHost *h = sl_host(S->L);
  drain_cleanups(h);
  if (S->stop != NULL) {
    S->stop->data = h;
    uv_close((uv_handle_t *)S->stop, on_stop_closed);    /* drained by lua_close */
    S->stop = NULL;
  }
  lua_close(S->L);
  free(S->last_error);
  free(S);
}

lua_State *sandlot_lua(sandlot *S) { return S->L; }

void sandlot_register(sandlot *S, const char *name, lua_CFunction fn) {
  lua_register(S->L, name, fn);
}

const char *sandlot_last_error(sandlot *S) { return S->last_error; }

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
