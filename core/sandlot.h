/* sandlot.h: the public embedding API of libsandlot.
 * An engine owns one lua_State and shares one libuv loop with the core modules; scripts run
 * as tasks (coroutines) that yield to that loop whenever they wait for I/O. */
#ifndef SANDLOT_H
#define SANDLOT_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SANDLOT_API __attribute__((visibility("default")))
#else
#define SANDLOT_API
#endif

#define SANDLOT_VERSION "0.1.0"

struct uv_loop_s;
typedef struct sandlot sandlot;

/* Creates an engine: a fresh lua_State with the standard libraries, the sandlot core modules
 * preloaded and package.path set to the sandlot Lua library. loop may be NULL (the engine
 * creates and owns a private loop) or the embedder's own libuv loop. NULL on out of memory. */
SANDLOT_API sandlot *sandlot_open(struct uv_loop_s *loop);
/* Lets queued cleanup tasks (destroys) finish, closes the Lua state (killing forgotten
 * children), drains the loop and frees the engine. */
SANDLOT_API void sandlot_close(sandlot *S);

SANDLOT_API lua_State *sandlot_lua(sandlot *S);
/* Makes fn callable from Lua as the global `name` (and as sandlot.c[name] is not implied). */
SANDLOT_API void sandlot_register(sandlot *S, const char *name, lua_CFunction fn);

/* Runs a file / string as a new task and drives the loop until that task and every task it
 * spawned are done. Returns 0 on success; otherwise 1 and sandlot_last_error() describes it
 * (message and traceback). path == NULL reads stdin. nargs values taken from the Lua stack
 * become the chunk's arguments (`...`). */
SANDLOT_API int sandlot_dofile(sandlot *S, const char *path, int nargs);
SANDLOT_API int sandlot_dostring(sandlot *S, const char *code, const char *chunkname);
SANDLOT_API const char *sandlot_last_error(sandlot *S);

/* Loop integration. sandlot_run drives the loop until no task is alive (0), or until nothing
 * can make progress while tasks still wait (1, with the reason in sandlot_last_error()).
 * sandlot_step runs ready tasks and one non-blocking loop iteration; it returns the number of
 * live tasks. sandlot_backend_fd is the fd to poll for readability before calling step, and
 * sandlot_backend_timeout the milliseconds until the next timer (-1: none). */
SANDLOT_API int sandlot_run(sandlot *S);
SANDLOT_API int sandlot_step(sandlot *S);
SANDLOT_API int sandlot_backend_fd(sandlot *S);
SANDLOT_API int sandlot_backend_timeout(sandlot *S);
SANDLOT_API int sandlot_live_tasks(sandlot *S);
/* 1 when tasks are alive but nothing can wake them (no ready task, no active handle or request
 * on the loop): an embedder's own loop stops stepping then, and sandlot_run reports why. */
SANDLOT_API int sandlot_stalled(sandlot *S);

/* Tasks from C. sandlot_spawn takes a function and nargs arguments from the top of the Lua
 * stack ([fn, args...]) and queues fn(args...) as a task; it runs once the loop is driven
 * (sandlot_run, sandlot_step, or a later dofile/dostring). The task stays valid until
 * sandlot_task_release. NULL when fn is not callable, with the reason in sandlot_last_error().
 * sandlot_task_error: -1 while the task runs, 0 when it finished, 1 when it failed: then
 * sandlot_last_error() holds its message and traceback, and the failure counts as seen (it is
 * not reported again as a task nobody joined). */
typedef struct sandlot_task sandlot_task;
SANDLOT_API sandlot_task *sandlot_spawn(sandlot *S, int nargs);
SANDLOT_API int sandlot_task_error(sandlot *S, sandlot_task *t);
SANDLOT_API void sandlot_task_release(sandlot *S, sandlot_task *t);

/* For a program that owns the process (the sandlot host): during sandlot_dofile and
 * sandlot_dostring, a first SIGINT or SIGTERM cancels the running tasks so that `<close>`
 * variables unwind and the destroys they queue finish before the call returns; a second one
 * kills the children and ends the process by that signal. sandlot_stop_signal tells which
 * signal stopped a run (0: none), so that the program can end by it too. */
SANDLOT_API void sandlot_catch_signals(sandlot *S);
SANDLOT_API int sandlot_stop_signal(sandlot *S);

/* For a lua_State not created by sandlot_open (a stock interpreter loading sandlot.so, or an
 * embedder with its own state): makes the core modules use `loop`. Call before the first
 * require "sandlot.core.*"; without it the first core module creates a private loop. */
SANDLOT_API void sandlot_set_loop(lua_State *L, struct uv_loop_s *loop);

/* Core module entry points, for package.preload or a stock interpreter's cpath. */
SANDLOT_API int luaopen_sandlot_core(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_sched(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_timer(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_proc(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_errors(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_sys(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_term(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_fs(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_outbuf(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_zlib(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_sqlite(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_codec(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_plugin(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_fswatch(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_event(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_channel(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_ws(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_bytecode(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_http(lua_State *L);
SANDLOT_API int luaopen_sandlot_core_ssh(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
