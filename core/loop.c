/* loop.c: the host, one SlHost per lua_State: the libuv loop (its own, or the embedder's from
 * sandlot_set_loop), the ready queue's idle handle, the counts of live tasks and open handles,
 * and the teardown hooks through which each module releases what it owns. Created on first use
 * and torn down by a sentinel's __gc at lua_close. Calls no module: modules call it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static const char host_key = 'h';   /* registry: full userdata boxing the SlHost pointer */
static const char loop_key = 'l';   /* registry: lightuserdata, loop given by sandlot_set_loop */

struct SlHook {
  SlTeardownFn fn;
  void *data;
  struct SlHook *next;
};

static void on_handle_closed(uv_handle_t *handle) {
  sl_host_handle_done(handle->data);
}

static void run_hooks(SlHost *h, int phase) {
  for (struct SlHook *k = h->hooks; k != NULL; k = k->next) k->fn(h, k->data, phase);
}

/* Runs at lua_close after every other finalizer (the sentinel is the oldest object with a
 * __gc): finalizers have killed forgotten children and closed their handles. The modules' hooks
 * release the rest (parked tasks' operations, curl's cached connections); the loop is drained
 * until the last close callback ran; then the modules and the host free what they own. */
static int host_gc(lua_State *L) {
  SlHost **box = lua_touserdata(L, 1);
  SlHost *h = *box;
  if (h == NULL) return 0;
  *box = NULL;
  h->closing = true;
  run_hooks(h, SL_TEARDOWN_CLOSE);
  uv_idle_stop(&h->idle);
  uv_close((uv_handle_t *)&h->idle, on_handle_closed);
  while (h->handles > 0) uv_run(h->loop, UV_RUN_ONCE);
  run_hooks(h, SL_TEARDOWN_FREE);
  if (h->own_loop) {
    uv_run(h->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(h->loop) != 0)
      fprintf(stderr, "sandlot: warning: libuv loop closed with handles still open\n");
    free(h->loop);
  }
  for (struct SlHook *k = h->hooks, *next; k != NULL; k = next) {
    next = k->next;
    free(k);
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

bool sl_host_on_close(SlHost *h, SlTeardownFn fn, void *data) {
  struct SlHook *k = malloc(sizeof(*k)), **end = &h->hooks;
  if (k == NULL) return false;
  k->fn = fn;
  k->data = data;
  k->next = NULL;
  while (*end != NULL) end = &(*end)->next;
  *end = k;
  return true;
}

void *sl_host_hook_data(SlHost *h, SlTeardownFn fn) {
  for (struct SlHook *k = h->hooks; k != NULL; k = k->next)
    if (k->fn == fn) return k->data;
  return NULL;
}

void sl_host_exit(SlHost *h) { run_hooks(h, SL_TEARDOWN_EXIT); }

void sl_host_drive(SlHost *h, bool *done) {
  h->loop_depth++;
  /* One iteration runs one round of ready tasks (the idle handle is active while any are
   * ready, which also makes the poll non-blocking) and polls I/O, so tasks that only ever
   * yield cannot starve the loop. */
  bool daemons_stopped = false;
  for (;;) {
    if (done != NULL ? *done : h->live_tasks == 0) break;
    if (done == NULL && !daemons_stopped && h->live_tasks == h->live_daemon_tasks &&
        h->running == 0) {
      daemons_stopped = true;             /* only daemons are left: they unwind, then stop */
      sl_sched_cancel_daemons(h->L);
      continue;
    }
    if (uv_run(h->loop, UV_RUN_ONCE) == 0 && h->ready_head == NULL) break;
  }
  h->loop_depth--;
}

uint64_t sl_now_ns(void) { return uv_hrtime(); }

void sandlot_set_loop(lua_State *L, struct uv_loop_s *loop) {
  lua_pushlightuserdata(L, loop);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &loop_key);
}
