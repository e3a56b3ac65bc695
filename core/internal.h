/* internal.h: what the core's files share and nothing else sees: the host (one per lua_State:
 * loop, ready queue, task and handle counts, teardown hooks), tasks and the wait protocol that
 * every blocking-looking call follows, and structured errors. Only sandlot.h is installed.
 * Layers, each calling only those below it: engine.c (the sandlot_* API) > sched.c and the
 * modules (proc, timer, http, ssh, ...) > loop.c (the host) > errors.c. */
#ifndef SANDLOT_INTERNAL_H
#define SANDLOT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "sandlot.h"

/* What the HTTP and SSH modules call in the rest of the core. The host binary loads those two
 * modules with dlopen (core/lazy.c) and exports these symbols to them; every other core
 * function stays hidden. */
#define SL_SHARED __attribute__((visibility("default")))

#define TASK_MT "sandlot.task"
#define ERROR_MT "sandlot.error"

typedef struct SlTask SlTask;
typedef struct SlHost SlHost;

/* A failure described in C before it becomes a sandlot.error table. code is one of the closed
 * set in STYLE.md §3 (a static string). */
typedef struct SlError {
  const char *code;
  char message[400];
} SlError;

/* Cleanup hook of a pending operation: detaches the operation from its waiter (so the
 * completion will not wake it) and releases what it holds (kill, abort, close). */
typedef void (*SlCleanupFn)(SlTask *t, void *data);

enum { SL_TASK_NEW, SL_TASK_READY, SL_TASK_RUNNING, SL_TASK_WAITING, SL_TASK_DONE };

struct SlTask {
  SlHost *host;
  lua_State *co;          /* the task's thread, or the caller's state for a sync waiter */
  SlTask *next;           /* ready queue link */
  SlCleanupFn cleanup;    /* set while waiting on an operation */
  void *cleanup_data;
  const char *cancel_code; /* "cancelled" | "timeout" once cancelled: every wait fails fast */
  int ref;                /* registry ref anchoring the task userdata until it is done */
  int state;
  int nargs;              /* values pushed on co for the next resume */
  unsigned id;
  bool sync;              /* stack-allocated waiter for a caller outside any task */
  bool woken;             /* sync waiter: completion arrived */
  bool waiting;           /* set by sl_wait before yielding: tells a raw coroutine.yield apart */
  bool ok;                /* done: finished without error */
  bool observed;          /* done with error: someone joined or cancelled it */
  bool started;           /* resumed at least once */
  bool cleanup_task;      /* spawned by sched.cleanup: not cancelled when the script fails */
  bool daemon;            /* spawned by sched.daemon: the host does not wait for it */
  SlTask *sync_joiner;    /* a caller outside any task blocked in join() on this task */
};

struct SlHost {
  uv_loop_t *loop;
  bool own_loop;
  lua_State *L;           /* main thread */
  uv_idle_t idle;         /* active while the ready queue is not empty */
  SlTask *ready_head, *ready_tail;
  int live_tasks;         /* spawned and not done */
  int live_cleanup_tasks; /* of which cleanup tasks (sched.cleanup) */
  int live_daemon_tasks;  /* of which daemon tasks (sched.daemon) */
  int handles;            /* open libuv handles owned by the core (drained on close) */
  int loop_depth;         /* > 0 while a sandlot driver is inside uv_run */
  int running;            /* > 0 while the scheduler is resuming tasks */
  unsigned next_task_id;
  bool closing;
  struct SlHook *hooks;    /* teardown hooks, in the order they were registered */
  char readbuf[65536];     /* every pipe read lands here first (reads never overlap) */
};

/* Phases of a host's end, in the order a lua_close runs them. EXIT alone runs at os.exit,
 * which leaves the process without closing the state. */
enum {
  SL_TEARDOWN_EXIT,       /* the process exits now: kill what must not outlive it */
  SL_TEARDOWN_CLOSE,      /* lua_close: release handles; the loop is drained after this */
  SL_TEARDOWN_FREE        /* the last close callback ran: free what the module owns */
};
typedef void (*SlTeardownFn)(SlHost *h, void *data, int phase);

/* loop.c */
SL_SHARED SlHost *sl_host(lua_State *L);          /* creates the host on first use */
SL_SHARED void sl_host_handle_opened(SlHost *h);
void sl_host_handle_closed(uv_handle_t *handle); /* close cb for handles whose data is freed
                                                    by the caller: decrements the count only */
SL_SHARED void sl_host_handle_done(SlHost *h);
/* Registers fn(h, data, phase) for every teardown phase (false: out of memory); a module keeps
 * its own state in data and finds it again with sl_host_hook_data (NULL: fn not registered). */
SL_SHARED bool sl_host_on_close(SlHost *h, SlTeardownFn fn, void *data);
SL_SHARED void *sl_host_hook_data(SlHost *h, SlTeardownFn fn);
void sl_host_exit(SlHost *h);           /* runs the EXIT phase (os.exit, a forced stop) */
/* Runs ready tasks and the loop until *done (or, done == NULL, until no task is alive; when
 * only daemon tasks are left they are cancelled once) or until nothing can make progress. */
void sl_host_drive(SlHost *h, bool *done);

/* engine.c */
void sl_register_core(lua_State *L);    /* package.preload for every sandlot.core.* module */
void sl_install_bytecode_searcher(lua_State *L);   /* bytecode.c: the library, precompiled */
bool sl_exe_dir(char *buf, size_t size); /* directory of the running binary; false without /proc */
bool sl_self_dir(char *buf, size_t size); /* directory of the object holding the core (dladdr) */

/* net.c (libraries: linked in) or lazy.c (host binary: dlopen on first require) */
int sl_open_http(lua_State *L);         /* luaopen of sandlot.core.http */
int sl_open_ssh(lua_State *L);          /* luaopen of sandlot.core.ssh */
/* What a lazily loaded module must share with the binary that loads it: the version and the
 * layout of the structures both sides touch. Modules export it as sl_module_abi (module.c). */
#define sl_abi_string(buf, size) \
  snprintf((buf), (size), "%s/host=%zu/task=%zu", SANDLOT_VERSION, sizeof(SlHost), sizeof(SlTask))

/* sched.c */
SlTask *sl_task_of(lua_State *L);       /* the task whose thread is L, or NULL */
/* Prepares the caller to wait: returns L's task, or `sync` set up as a waiter when L is a
 * thread that may drive the loop itself. Raises when L can neither yield nor drive. If the
 * task was cancelled, pushes nil, err and returns NULL: the caller returns 2. */
SL_SHARED SlTask *sl_wait_begin(lua_State *L, SlTask *sync);
SL_SHARED void sl_wait_set_cleanup(SlTask *t, SlCleanupFn fn, void *data);
/* Yields (task) or drives the loop (sync) until sl_wake; then returns k's results. */
SL_SHARED int sl_wait(lua_State *L, SlTask *t, lua_KContext ctx, lua_KFunction k);
/* Completion: the nres values on top of t->co become the results of the wait. */
SL_SHARED void sl_wake(SlTask *t, int nres);
void sl_sched_run_ready(SlHost *h);
/* [fn, args...] on top of L -> [task]: queues fn(args...) as a task (a cleanup task when
 * cleanup: sl_sched_cancel_tasks leaves it alone). Raises when fn is not callable. */
SL_SHARED SlTask *sl_sched_spawn(lua_State *L, int nargs, bool cleanup);
void sl_sched_cancel_tasks(lua_State *L); /* cancels every live task but cleanup tasks */
void sl_sched_cancel_daemons(lua_State *L); /* cancels every live daemon task */
bool sl_task_cancel(SlTask *t);         /* task:cancel(); false when it was done */
/* The task userdata at idx: pushes its error and traceback and returns 2 when it is done and
 * failed (and marks it joined), else pushes nothing and returns 0. */
int sl_task_push_error(lua_State *L, int idx);
void sl_sched_push_unobserved(lua_State *L); /* {task, ...} failed and never joined; clears */
int sl_sched_open(lua_State *L);

/* errors.c */
SL_SHARED void sl_err_set(SlError *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sl_err_uv(SlError *e, int uverr, const char *what);
SL_SHARED int sl_push_error(lua_State *L, const SlError *e);  /* nil, err; returns 2 */
SL_SHARED int sl_fail(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
SL_SHARED void sl_new_error(lua_State *L, const char *code, const char *message); /* pushes err */
SL_SHARED const char *sl_code_for_errno(int err);  /* errno (positive) -> code */

/* sys.c: the core's one base64 (RFC 4648) and SHA-256 */
#define SL_B64_LEN(n) (((n) + 2) / 3 * 4)  /* encoded size with padding, the most without */
SL_SHARED size_t sl_b64_encode(char *out, const unsigned char *s, size_t n, bool pad);
/* out holds n / 4 * 3 + 3 bytes; whitespace is skipped; false on anything else not base64 */
SL_SHARED bool sl_b64_decode(const char *s, size_t n, unsigned char *out, size_t *outlen);
SL_SHARED void sl_sha256(const unsigned char *data, size_t len, unsigned char out[32]);

/* sys.c: finds file as execvp would, on env's PATH (NULL: ours); 0 or an errno */
int sl_resolve_exe(const char *file, char **env, char *out, size_t size);

/* misc */
SL_SHARED uint64_t sl_now_ns(void);

#endif
