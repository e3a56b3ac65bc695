/* fswatch.c: sandlot.core.fswatch, change notices for a directory (uv_fs_event, inotify on
 * Linux) without any callback into Lua: the libuv callback only records that something changed
 * and when, and Lua asks later (w:pending(debounce)), so a save storm is one notice and no task
 * has to stay alive waiting. The handle never keeps the loop up by itself (uv_unref). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FSWATCH_MT "sandlot.fswatch"

typedef struct {
  uv_fs_event_t ev;
  SlHost *host;
  uint64_t last_ns;                     /* time of the latest event */
  unsigned events;                      /* since the last pending() that said true */
} FsWatch;

typedef struct { FsWatch *w; } FsWatchBox;   /* w == NULL: closed */

static void on_event(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)events;
  FsWatch *w = h->data;
  if (status < 0) return;
  /* editor droppings: vim's 4913 probe, swap and backup files */
  if (name != NULL) {
    size_t n = strlen(name);
    if (strcmp(name, "4913") == 0 || (n > 4 && strcmp(name + n - 4, ".swp") == 0) ||
        (n > 4 && strcmp(name + n - 4, ".swx") == 0) || (n > 0 && name[n - 1] == '~'))
      return;
  }
  w->events++;
  w->last_ns = sl_now_ns();
}

static void on_closed(uv_handle_t *h) {
  FsWatch *w = h->data;
  SlHost *host = w->host;
  free(w);
  sl_host_handle_done(host);
}

/* fswatch.new(dir) -> watch | nil, err (not_found, io_error, ...) */
static int fswatch_new(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  FsWatchBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->w = NULL;
  luaL_setmetatable(L, FSWATCH_MT);
  SlHost *host = sl_host(L);
  FsWatch *w = calloc(1, sizeof(*w));
  if (w == NULL) return luaL_error(L, "out of memory");
  w->host = host;
  int rc = uv_fs_event_init(host->loop, &w->ev);
  if (rc != 0) {
    free(w);
    SlError e;
    sl_err_uv(&e, rc, "fswatch");
    return sl_push_error(L, &e);
  }
  w->ev.data = w;
  sl_host_handle_opened(host);
  rc = uv_fs_event_start(&w->ev, on_event, dir, 0);
  if (rc != 0) {
    uv_close((uv_handle_t *)&w->ev, on_closed);
    SlError e;
    sl_err_uv(&e, rc, dir);
    return sl_push_error(L, &e);
  }
  uv_unref((uv_handle_t *)&w->ev);
  box->w = w;
  return 1;
}

/* watch:pending([debounce_s]) -> true when something changed and has been quiet for
 * debounce_s seconds (default 0.15); the notice is consumed. */
static int fswatch_pending(lua_State *L) {
  FsWatchBox *box = luaL_checkudata(L, 1, FSWATCH_MT);
  lua_Number d = luaL_optnumber(L, 2, 0.15);
  FsWatch *w = box->w;
  bool yes = w != NULL && w->events > 0 &&
             sl_now_ns() - w->last_ns >= (uint64_t)(d * 1e9);
  if (yes) w->events = 0;
  lua_pushboolean(L, yes);
  return 1;
}

/* watch:close() -> true. Also __gc and __close; idempotent. */
static int fswatch_close(lua_State *L) {
  FsWatchBox *box = luaL_checkudata(L, 1, FSWATCH_MT);
  if (box->w != NULL) {
    uv_fs_event_stop(&box->w->ev);
    uv_close((uv_handle_t *)&box->w->ev, on_closed);
    box->w = NULL;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg fswatch_methods[] = {
  {"pending", fswatch_pending}, {"close", fswatch_close}, {NULL, NULL}
};
static const luaL_Reg fswatch_meta[] = {
  {"__index", NULL}, {"__gc", fswatch_close}, {"__close", fswatch_close}, {NULL, NULL}
};
static const luaL_Reg fswatch_funcs[] = {{"new", fswatch_new}, {NULL, NULL}};

int luaopen_sandlot_core_fswatch(lua_State *L) {
  luaL_newmetatable(L, FSWATCH_MT);
  luaL_setfuncs(L, fswatch_meta, 0);
  luaL_newlib(L, fswatch_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, fswatch_funcs);
  return 1;
}
