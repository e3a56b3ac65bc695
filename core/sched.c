/* sched.c: tasks. A task is a coroutine owned by the scheduler: spawned into the ready queue,
 * resumed only from sl_sched_run_ready (an idle handle on the loop), parked while one operation
 * is in flight and woken by that operation's completion. A caller outside any task (the main
 * thread of a stock lua5.4) waits by driving the loop itself until its operation completes. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* uservalues of a task userdata */
enum { UV_THREAD = 1, UV_RESULTS = 2, UV_JOINERS = 3, UV_FN = 4, UV_COUNT = 4 };

static const char threads_key = 't';     /* registry: {[thread] = task} for live tasks */
static const char unobserved_key = 'u';  /* registry: {[task] = true} failed, never joined */

static void push_regtable(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    if (mode != NULL) {
      lua_createtable(L, 0, 1);
      lua_pushstring(L, mode);
      lua_setfield(L, -2, "__mode");
      lua_setmetatable(L, -2);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
}

SlTask *sl_task_of(lua_State *L) {
  if (!lua_checkstack(L, 3)) return NULL;
  push_regtable(L, &threads_key, NULL);
  lua_pushthread(L);
  lua_rawget(L, -2);
  SlTask *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return (t != NULL && t->co == L) ? t : NULL;
}

static void on_idle(uv_idle_t *idle) {
  sl_sched_run_ready(idle->data);
}

static void ready_push(SlTask *t) {
  SlHost *h = t->host;
  t->state = SL_TASK_READY;
  t->next = NULL;
  if (h->ready_tail != NULL) h->ready_tail->next = t;
  else h->ready_head = t;
  h->ready_tail = t;
  if (!uv_is_active((uv_handle_t *)&h->idle)) uv_idle_start(&h->idle, on_idle);
}

void sl_wake(SlTask *t, int nres) {
  t->cleanup = NULL;
  t->cleanup_data = NULL;
  if (t->sync) {
    t->woken = true;
    return;
  }
  t->nargs += nres;
  ready_push(t);
}

static void push_cancel_error(lua_State *L, const char *code) {
  lua_pushnil(L);
  sl_new_error(L, code, strcmp(code, "timeout") == 0 ? "the task timed out"
                                                     : "the task was cancelled");
}

SlTask *sl_wait_begin(lua_State *L, SlTask *sync) {
  SlTask *t = sl_task_of(L);
  if (t != NULL) {
    if (!lua_isyieldable(L))
      luaL_error(L, "sandlot I/O cannot wait inside a call made from C (a metamethod, "
                    "table.sort or gsub callback, or __gc); move the call out of it");
    if (t->cancel_code != NULL) {
      push_cancel_error(L, t->cancel_code);
      return NULL;
    }
    t->cleanup = NULL;
    t->cleanup_data = NULL;
    return t;
  }
  SlHost *h = sl_host(L);
  if (h->running > 0 || h->loop_depth > 0)
    luaL_error(L, "sandlot I/O must run in a task; use sandlot.spawn");
  memset(sync, 0, sizeof(*sync));
  sync->host = h;
  sync->co = L;
  sync->sync = true;
  sync->state = SL_TASK_WAITING;
  sync->ref = LUA_NOREF;
  return sync;
}

void sl_wait_set_cleanup(SlTask *t, SlCleanupFn fn, void *data) {
  t->cleanup = fn;
  t->cleanup_data = data;
}

int sl_wait(lua_State *L, SlTask *t, lua_KContext ctx, lua_KFunction k) {
  if (!t->sync) {
    t->waiting = true;
    return lua_yieldk(L, 0, ctx, k);
  }
  sl_host_drive(t->host, &t->woken);
  if (!t->woken) {
    if (t->cleanup != NULL) t->cleanup(t, t->cleanup_data);
    return luaL_error(L, "deadlock: waiting for an operation but nothing is left to run");
  }
  return k(L, LUA_YIELD, ctx);
}

/* Stores the finished task's results (or error and traceback) in its uservalue, wakes its
 * joiners and drops the anchor. [task] is on top of h->L. */
static void task_finish(SlTask *t, int status, int nres) {
  SlHost *h = t->host;
  lua_State *L = h->L, *co = t->co;
  luaL_checkstack(L, nres + 8, "too many results from a task");
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);              /* [task] */
  if (status == LUA_OK) {
    lua_createtable(L, nres, 1);
    lua_xmove(co, L, nres);
    for (int i = nres; i >= 1; i--) lua_rawseti(L, -1 - i, i);
    lua_pushinteger(L, nres);
    lua_setfield(L, -2, "n");
    t->ok = true;
  } else {
    lua_createtable(L, 0, 2);
    lua_xmove(co, L, 1);
    lua_setfield(L, -2, "error");
    luaL_traceback(L, co, NULL, 0);
    lua_setfield(L, -2, "traceback");
    lua_resetthread(co);                                   /* closes pending <close> vars */
    t->ok = false;
  }
  lua_setiuservalue(L, -2, UV_RESULTS);
  t->state = SL_TASK_DONE;
  t->cleanup = NULL;

  push_regtable(L, &threads_key, NULL);                    /* forget the thread */
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);

  bool joined = false;
  if (lua_getiuservalue(L, -1, UV_JOINERS) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      SlTask *j = lua_touserdata(L, -2);
      lua_pop(L, 1);
      if (j != NULL && j->state == SL_TASK_WAITING && j->cleanup_data == t) {
        sl_wake(j, 0);
        joined = true;
      }
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setiuservalue(L, -2, UV_JOINERS);
  lua_pushnil(L);
  lua_setiuservalue(L, -2, UV_FN);
  if (t->sync_joiner != NULL) {
    t->sync_joiner->woken = true;
    joined = true;
  }
  if (!t->ok && !t->observed && !joined) {
    push_regtable(L, &unobserved_key, NULL);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
  h->live_tasks--;
  if (t->cleanup_task) h->live_cleanup_tasks--;
  if (t->daemon) h->live_daemon_tasks--;
}

static void task_resume(SlTask *t) {
  SlHost *h = t->host;
  int nres = 0, nargs = t->nargs;
  t->nargs = 0;
  if (!t->started) {
    t->started = true;
    nargs -= 1;                                            /* the function itself */
    if (t->cancel_code != NULL) {                          /* cancelled before it ran */
      lua_settop(t->co, 0);
      sl_new_error(t->co, t->cancel_code, "the task was cancelled before it started");
      task_finish(t, LUA_ERRRUN, 0);
      return;
    }
  }
  t->state = SL_TASK_RUNNING;
  t->waiting = false;
  int status = lua_resume(t->co, h->L, nargs, &nres);
  if (status == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (t->state == SL_TASK_RUNNING) {
      if (t->waiting) t->state = SL_TASK_WAITING;
      else ready_push(t);                                  /* plain coroutine.yield: a pass */
    }
    return;
  }
  task_finish(t, status, nres);
}

void sl_sched_run_ready(SlHost *h) {
  SlTask *last = h->ready_tail;                            /* this round only: the loop gets
                                                              its turn between rounds */
  h->running++;
  while (h->ready_head != NULL) {
    SlTask *t = h->ready_head;
    h->ready_head = t->next;
    if (h->ready_head == NULL) h->ready_tail = NULL;
    t->next = NULL;
    task_resume(t);
    if (t == last) break;
  }
  h->running--;
  if (h->ready_head == NULL) uv_idle_stop(&h->idle);
}

/* Host teardown hook: at lua_close, runs every parked task's cleanup (stops timers, kills the
 * children of tasks that wait on them); nothing is resumed any more. */
static void sched_teardown(SlHost *h, void *data, int phase) {
  (void)data;
  if (phase != SL_TEARDOWN_CLOSE) return;
  lua_State *L = h->L;
  push_regtable(L, &threads_key, NULL);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    SlTask *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t != NULL && t->cleanup != NULL) {
      SlCleanupFn fn = t->cleanup;
      t->cleanup = NULL;
      fn(t, t->cleanup_data);
    }
  }
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- Lua API */

static SlTask *task_check(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, TASK_MT);
}

SlTask *sl_sched_spawn(lua_State *L, int nargs, bool cleanup) {
  int fn = lua_gettop(L) - nargs;
  luaL_checkany(L, fn);
  if (!lua_isfunction(L, fn) && luaL_getmetafield(L, fn, "__call") == LUA_TNIL)
    luaL_typeerror(L, fn, "function");
  SlHost *h = sl_host(L);
  if (luaL_getmetatable(L, TASK_MT) == LUA_TNIL) {         /* spawned from C before any */
    luaL_requiref(L, "sandlot.core.sched", luaopen_sandlot_core_sched, 0);  /* require */
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  int n = nargs + 1;                                       /* the function and its arguments */
  SlTask *t = lua_newuserdatauv(L, sizeof(*t), UV_COUNT);
  memset(t, 0, sizeof(*t));
  t->host = h;
  t->id = ++h->next_task_id;
  t->state = SL_TASK_NEW;
  t->ref = LUA_NOREF;
  SlTask *parent = sl_task_of(L);          /* a cleanup task's helpers are cleanup too */
  t->cleanup_task = cleanup || (parent != NULL && parent->cleanup_task);
  t->daemon = parent != NULL && parent->daemon;             /* so are a daemon's helpers */
  luaL_setmetatable(L, TASK_MT);
  lua_State *co = lua_newthread(L);
  t->co = co;
  lua_setiuservalue(L, -2, UV_THREAD);
  lua_pushvalue(L, fn);
  lua_setiuservalue(L, -2, UV_FN);
  luaL_checkstack(co, n + 1, "too many arguments to spawn");
  for (int i = 0; i < n; i++) lua_pushvalue(L, fn + i);
  lua_xmove(L, co, n);
  t->nargs = n;
  push_regtable(L, &threads_key, NULL);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  h->live_tasks++;
  if (t->cleanup_task) h->live_cleanup_tasks++;
  if (t->daemon) h->live_daemon_tasks++;
  ready_push(t);
  lua_replace(L, fn);                                      /* [task, args...] */
  lua_settop(L, fn);                                       /* [task] */
  return t;
}

/* sched.spawn(fn, ...) -> task */
static int sched_spawn(lua_State *L) {
  sl_sched_spawn(L, lua_gettop(L) - 1, false);
  return 1;
}

/* sched.cleanup(fn, ...) -> task: a cleanup task (a destroy queued by a __close that could not
 * wait). It is not cancelled when the script fails or is interrupted, and the host waits for
 * it before it exits; fn bounds its own work. Tasks it spawns are cleanup tasks too. */
static int sched_cleanup(lua_State *L) {
  sl_sched_spawn(L, lua_gettop(L) - 1, true);
  return 1;
}

/* sched.daemon(fn, ...) -> task: a daemon task (a follower of a background process). The host
 * does not wait for it: once only daemon tasks are left, they are cancelled and the host waits
 * for them to unwind (a last flush). Tasks it spawns are daemon tasks too. */
static int sched_daemon(lua_State *L) {
  SlTask *t = sl_sched_spawn(L, lua_gettop(L) - 1, false);
  if (!t->daemon) {
    t->daemon = true;
    t->host->live_daemon_tasks++;
  }
  return 1;
}

static void join_detach(SlTask *joiner, void *target) {
  (void)joiner;
  (void)target;                           /* finish checks cleanup_data; nothing to release */
}

/* Raises or returns the stored results of the done task at index 1. */
static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  SlTask *t = lua_touserdata(L, 1);
  if (lua_gettop(L) > 1) return lua_gettop(L) - 1;       /* the joiner itself was cancelled */
  if (t->state != SL_TASK_DONE) return luaL_error(L, "join woke before the task finished");
  t->observed = true;
  lua_getiuservalue(L, 1, UV_RESULTS);
  if (t->ok) {
    lua_getfield(L, 2, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
    return n;
  }
  lua_getfield(L, 2, "error");
  lua_getfield(L, 2, "traceback");
  if (lua_type(L, -2) == LUA_TSTRING) {
    lua_pushfstring(L, "%s\n(in task %d) %s", lua_tostring(L, -2), (int)t->id,
                    lua_tostring(L, -1));
    return lua_error(L);
  }
  if (lua_type(L, -2) == LUA_TTABLE) {
    if (lua_getfield(L, -2, "traceback") == LUA_TNIL) {
      lua_pop(L, 1);
      lua_setfield(L, -2, "traceback");
    } else {
      lua_pop(L, 2);
    }
  } else {
    lua_pop(L, 1);                                         /* error(nil), error(42): as is */
  }
  return lua_error(L);
}

static void unobserved_forget(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  push_regtable(L, &unobserved_key, NULL);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* task:join() -> ... (the task function's results; re-raises its error with its traceback) */
static int task_join(lua_State *L) {
  SlTask *t = task_check(L, 1);
  lua_settop(L, 1);
  unobserved_forget(L, 1);
  t->observed = true;
  if (t->state == SL_TASK_DONE) return join_k(L, LUA_OK, 0);
  if (sl_task_of(L) == t) return luaL_error(L, "a task cannot join itself");
  SlTask sync, *w = sl_wait_begin(L, &sync);
  if (w == NULL) return 2;
  if (w->sync) {
    t->sync_joiner = w;
    sl_wait_set_cleanup(w, join_detach, t);
    int n = sl_wait(L, w, 0, join_k);
    t->sync_joiner = NULL;
    return n;
  }
  if (lua_getiuservalue(L, 1, UV_JOINERS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_JOINERS);
  }
  lua_pushlightuserdata(L, w);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  sl_wait_set_cleanup(w, join_detach, t);
  return sl_wait(L, w, 0, join_k);
}

/* task:cancel([code]) -> bool   code: "cancelled" (default) | "timeout". Runs the pending
 * operation's cleanup (kill, abort, close) and wakes the task with nil, err; every later wait
 * of that task fails at once with the same code. false when the task was already done. */
static bool cancel_task(SlTask *t, const char *code) {
  if (t->state == SL_TASK_DONE) return false;
  if (t->cancel_code == NULL) t->cancel_code = code;
  t->observed = true;
  if (t->state == SL_TASK_WAITING) {
    SlCleanupFn fn = t->cleanup;
    void *data = t->cleanup_data;
    t->cleanup = NULL;
    t->cleanup_data = NULL;
    if (fn != NULL) fn(t, data);
    luaL_checkstack(t->co, 2, NULL);
    push_cancel_error(t->co, t->cancel_code);
    sl_wake(t, 2);
  }
  return true;
}

static int task_cancel(lua_State *L) {
  static const char *const kinds[] = {"cancelled", "timeout", NULL};
  SlTask *t = task_check(L, 1);
  const char *code = kinds[luaL_checkoption(L, 2, "cancelled", kinds)];
  lua_pushboolean(L, cancel_task(t, code));
  return 1;
}

void sl_sched_cancel_tasks(lua_State *L) {
  push_regtable(L, &threads_key, NULL);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    SlTask *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t != NULL && !t->cleanup_task) cancel_task(t, "cancelled");
  }
  lua_pop(L, 1);
}

void sl_sched_cancel_daemons(lua_State *L) {
  push_regtable(L, &threads_key, NULL);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    SlTask *t = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (t != NULL && t->daemon) cancel_task(t, "cancelled");
  }
  lua_pop(L, 1);
}

bool sl_task_cancel(SlTask *t) { return cancel_task(t, "cancelled"); }

static const char *task_state_name(const SlTask *t) {
  static const char *const names[] = {"new", "ready", "running", "waiting", "done"};
  return names[t->state];
}

/* task:status() -> "new"|"ready"|"running"|"waiting"|"done", ok (when done), cancel code */
static int task_status(lua_State *L) {
  SlTask *t = task_check(L, 1);
  lua_pushstring(L, task_state_name(t));
  if (t->state == SL_TASK_DONE) lua_pushboolean(L, t->ok);
  else lua_pushnil(L);
  if (t->cancel_code != NULL) lua_pushstring(L, t->cancel_code);
  else lua_pushnil(L);
  return 3;
}

/* task:done() -> bool */
static int task_done(lua_State *L) {
  lua_pushboolean(L, task_check(L, 1)->state == SL_TASK_DONE);
  return 1;
}

/* task:id() -> integer */
static int task_id(lua_State *L) {
  lua_pushinteger(L, task_check(L, 1)->id);
  return 1;
}

static int task_tostring(lua_State *L) {
  SlTask *t = task_check(L, 1);
  lua_pushfstring(L, "sandlot.task %d (%s)", (int)t->id, task_state_name(t));
  return 1;
}

/* sched.current() -> task | nil */
static int sched_current(lua_State *L) {
  SlTask *t = sl_task_of(L);
  if (t == NULL) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  return 1;
}

/* sched.cancelled() -> code | nil: whether the calling task has been cancelled */
static int sched_cancelled(lua_State *L) {
  SlTask *t = sl_task_of(L);
  if (t == NULL || t->cancel_code == NULL) return 0;
  lua_pushstring(L, t->cancel_code);
  return 1;
}

/* sched.can_wait() -> bool: whether a blocking call made here could wait (a task's own thread
 * where it can yield, not cancelled; or a thread outside any task while no loop runs), so that
 * a __close can tell a graceful teardown from one it must queue before it starts any I/O. */
static int sched_can_wait(lua_State *L) {
  SlTask *t = sl_task_of(L);
  SlHost *h = sl_host(L);
  if (t != NULL) lua_pushboolean(L, lua_isyieldable(L) && t->cancel_code == NULL);
  else lua_pushboolean(L, h->running == 0 && h->loop_depth == 0);
  return 1;
}

/* sched.live() -> number of tasks not yet done */
static int sched_live(lua_State *L) {
  lua_pushinteger(L, sl_host(L)->live_tasks);
  return 1;
}

void sl_sched_push_unobserved(lua_State *L) {
  lua_newtable(L);
  push_regtable(L, &unobserved_key, NULL);
  lua_pushnil(L);
  int i = 0;
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++i);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &unobserved_key);
}

/* sched.unobserved() -> {task, ...}: failed tasks nobody joined; clears the list */
static int sched_unobserved(lua_State *L) {
  sl_sched_push_unobserved(L);
  return 1;
}

int sl_task_push_error(lua_State *L, int idx) {
  SlTask *t = task_check(L, idx);
  if (t->state != SL_TASK_DONE || t->ok) return 0;
  idx = lua_absindex(L, idx);
  t->observed = true;
  unobserved_forget(L, idx);
  lua_getiuservalue(L, idx, UV_RESULTS);
  lua_getfield(L, -1, "error");
  lua_getfield(L, -2, "traceback");
  lua_remove(L, -3);
  return 2;
}

/* task:error() -> err, traceback | nil: the error of a done task, without raising */
static int task_error(lua_State *L) {
  return sl_task_push_error(L, 1);
}

/* sched.run() -> true | nil, err: drives the loop until every task is done (stock lua).
 * err is the error of a task that failed with nobody joining it, or says tasks are stuck. */
static int sched_run(lua_State *L) {
  SlHost *h = sl_host(L);
  if (h->running > 0 || h->loop_depth > 0)
    return luaL_error(L, "sandlot.run cannot be called from a task");
  sl_host_drive(h, NULL);
  if (h->live_tasks > 0)
    return sl_fail(L, "internal", "%d task(s) still waiting and nothing left to wake them",
                   h->live_tasks);
  sched_unobserved(L);                                     /* [list] */
  int n = (int)luaL_len(L, -1);
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_rawgeti(L, -1, 1);
  lua_getiuservalue(L, -1, UV_RESULTS);
  lua_getfield(L, -1, "error");                            /* [list, task, results, err] */
  bool is_err = false;
  if (lua_istable(L, -1) && lua_getmetatable(L, -1)) {
    luaL_getmetatable(L, ERROR_MT);
    is_err = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (is_err) {
    lua_pushnil(L);
    lua_insert(L, -2);                                     /* nil, the task's own error */
  } else {
    const char *msg = luaL_tolstring(L, -1, NULL);
    lua_pushnil(L);
    sl_new_error(L, "internal", msg);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "failed_tasks");
  return 2;
}

static const luaL_Reg task_methods[] = {
  {"join", task_join}, {"cancel", task_cancel}, {"status", task_status},
  {"done", task_done}, {"id", task_id}, {"error", task_error}, {NULL, NULL}
};

static const luaL_Reg sched_funcs[] = {
  {"spawn", sched_spawn}, {"cleanup", sched_cleanup}, {"daemon", sched_daemon},
  {"can_wait", sched_can_wait},
  {"current", sched_current}, {"cancelled", sched_cancelled},
  {"live", sched_live}, {"unobserved", sched_unobserved}, {"run", sched_run}, {NULL, NULL}
};

int luaopen_sandlot_core_sched(lua_State *L) {
  SlHost *h = sl_host(L);
  if (sl_host_hook_data(h, sched_teardown) == NULL && !sl_host_on_close(h, sched_teardown, h))
    return luaL_error(L, "sandlot: out of memory");
  if (luaL_newmetatable(L, TASK_MT)) {
    luaL_newlib(L, task_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, task_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, sched_funcs);
  return 1;
}
