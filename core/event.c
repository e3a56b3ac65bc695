/* event.c: sandlot.core.event: a wake-up one task waits on, for the futures and queues of the
 * Lua library (a replica's pending calls, a stream's window). ev:wait() parks the calling task
 * until ev:notify(); a notify with nobody waiting is remembered, so the next wait returns at
 * once. Cancelling the waiting task detaches it (the wait returns nil, err as every wait does). */
#include <stdbool.h>

#include "internal.h"

#define EVENT_MT "sandlot.event"

typedef struct {
  SlTask *waiter;                         /* the parked task, NULL when nobody waits */
  bool pending;                           /* notified while nobody waited */
} Event;

/* event.new() -> ev */
static int event_new(lua_State *L) {
  Event *e = lua_newuserdatauv(L, sizeof(*e), 0);
  e->waiter = NULL;
  e->pending = false;
  luaL_setmetatable(L, EVENT_MT);
  return 1;
}

static void event_cleanup(SlTask *t, void *data) {
  (void)t;
  Event *e = data;                         /* alive: the waiter's stack holds it */
  e->waiter = NULL;
}

static int wait_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return lua_gettop(L) - (int)base;
}

/* ev:wait() -> true | nil, err   (err.code "cancelled" | "timeout": the task was) */
static int event_wait(lua_State *L) {
  Event *e = luaL_checkudata(L, 1, EVENT_MT);
  lua_settop(L, 1);
  if (e->pending) {
    e->pending = false;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (e->waiter != NULL) return luaL_error(L, "sandlot.event: another task is already waiting");
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  e->waiter = t;
  sl_wait_set_cleanup(t, event_cleanup, e);
  return sl_wait(L, t, (lua_KContext)lua_gettop(L), wait_k);
}

/* ev:notify() -> true when it woke a waiting task, false when it was remembered */
static int event_notify(lua_State *L) {
  Event *e = luaL_checkudata(L, 1, EVENT_MT);
  SlTask *t = e->waiter;
  if (t == NULL) {
    e->pending = true;
    lua_pushboolean(L, 0);
    return 1;
  }
  e->waiter = NULL;
  luaL_checkstack(t->co, 2, NULL);
  lua_pushboolean(t->co, 1);
  sl_wake(t, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* ev:waiting() -> bool */
static int event_waiting(lua_State *L) {
  Event *e = luaL_checkudata(L, 1, EVENT_MT);
  lua_pushboolean(L, e->waiter != NULL);
  return 1;
}

static const luaL_Reg event_methods[] = {
  {"wait", event_wait}, {"notify", event_notify}, {"waiting", event_waiting}, {NULL, NULL}
};

static const luaL_Reg event_funcs[] = {{"new", event_new}, {NULL, NULL}};

int luaopen_sandlot_core_event(lua_State *L) {
  sl_host(L);
  if (luaL_newmetatable(L, EVENT_MT)) {
    luaL_newlib(L, event_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, event_funcs);
  return 1;
}
