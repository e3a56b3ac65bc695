/* timer.c: sandlot.core.timer: sleep (a task parks on a one-shot libuv timer) and the
 * monotonic clock. Each sleep owns its uv_timer_t, freed in the close callback. */
#include <stdlib.h>

#include "internal.h"

typedef struct {
  uv_timer_t timer;
  SlHost *host;
  SlTask *waiter;                         /* NULL once cancelled */
} Sleep;

static void sleep_closed(uv_handle_t *handle) {
  Sleep *s = handle->data;
  sl_host_handle_done(s->host);
  free(s);
}

static void on_timer(uv_timer_t *handle) {
  Sleep *s = handle->data;
  SlTask *t = s->waiter;
  s->waiter = NULL;
  uv_close((uv_handle_t *)handle, sleep_closed);
  if (t != NULL) {
    lua_pushboolean(t->co, 1);
    sl_wake(t, 1);
  }
}

static void sleep_cleanup(SlTask *t, void *data) {
  (void)t;
  Sleep *s = data;
  s->waiter = NULL;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, sleep_closed);
}

static int sleep_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* timer.sleep(seconds) -> true | nil, err   (err.code == "cancelled" | "timeout") */
static int timer_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 1, "must be between 0 and 1e9 seconds");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  Sleep *s = malloc(sizeof(*s));
  if (s == NULL) return luaL_error(L, "out of memory");
  s->host = t->host;
  s->waiter = t;
  uv_timer_init(t->host->loop, &s->timer);
  s->timer.data = s;
  sl_host_handle_opened(t->host);
  uv_update_time(t->host->loop);          /* the cached loop time may be stale */
  uv_timer_start(&s->timer, on_timer, (uint64_t)(secs * 1e3 + 0.5), 0);
  sl_wait_set_cleanup(t, sleep_cleanup, s);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), sleep_k);
}

/* timer.now() -> integer nanoseconds on a monotonic clock */
static int timer_now(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sl_now_ns());
  return 1;
}

static const luaL_Reg timer_funcs[] = {
  {"sleep", timer_sleep}, {"now", timer_now}, {NULL, NULL}
};

int luaopen_sandlot_core_timer(lua_State *L) {
  sl_host(L);
  luaL_newlib(L, timer_funcs);
  return 1;
}
