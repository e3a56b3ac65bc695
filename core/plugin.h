/* plugin.h: what core/plugin.c (calls, budgets, crossing) and core/plugin_state.c (the
 * whitelisted library, host calls and the prelude of a fresh plugin state) share. */
#ifndef SANDLOT_PLUGIN_H
#define SANDLOT_PLUGIN_H

#include "internal.h"

#define HOOK_EVERY 1000                 /* instructions between two budget checks */

enum { KILL_NONE, KILL_INSTR, KILL_WALL, KILL_MEM };

typedef struct Call {
  lua_State *co;                        /* the call's coroutine in the plugin state */
  int ref;                              /* its registry ref there; LUA_NOREF when done */
  uint64_t deadline;                    /* sl_now_ns() deadline */
  uint64_t started;
  lua_Integer used;                     /* instructions so far */
  int killed;                           /* KILL_*: every later check raises again */
  char what[64];                        /* hook name, for messages */
} Call;

typedef struct Plugin {
  lua_State *L;                         /* NULL once closed */
  size_t used, peak, cap;
  bool capped;                          /* the cap applies (off while the state is set up) */
  Call *cur;                            /* the call being resumed, NULL when none */
  int prelude;                          /* registry ref (plugin state) of the prelude table */
  int idle;                             /* registry ref of a finished thread to reuse */
  lua_Integer budget;                   /* instructions per call */
  uint64_t wall_ns;                     /* wall clock per call */
  uint64_t calls, faults, instructions, time_ns;
  char name[64];
} Plugin;

/* The Plugin that owns state L (its allocator's userdata). */
Plugin *sl_plugin_of(lua_State *L);
/* lua_CFunction, [hostnames] -> prelude: sets up a fresh plugin state (plugin_state.c). */
int sl_plugin_setup(lua_State *L);

#endif
