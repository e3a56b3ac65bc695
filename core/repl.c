/* repl.c: the interactive loop of the sandlot host: libedit line editing and history, each
 * complete chunk run as a task that the main thread joins with the loop driven, and SIGINT
 * (a uv_signal on the host's loop) cancelling that task. How input is compiled and results are
 * printed is policy in sandlot._repl; this file owns the terminal, the signal and the history. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "internal.h"
#include "repl.h"

#define HISTORY_MAX 1000
#define HOOK_COUNT 100000      /* instructions between a busy line's looks at the loop */

static const char repl_key = 'r';   /* registry: lightuserdata Repl * while the REPL runs */

/* One per sl_repl_main. Heap-allocated because the handles inside it belong to libuv until
 * their close callbacks run; the last one frees the whole struct. */
typedef struct {
  uv_signal_t sigint;     /* cancels the running line; unref'd so it never keeps the loop up */
  uv_timer_t tick;        /* wakes a busy line parked so that the loop could run (repl_hook) */
  int open_handles;
  SlHost *host;
  lua_State *L;           /* main thread */
  int mod_ref;            /* registry ref: the sandlot._repl module */
  int task_ref;           /* registry ref: the running line's task, LUA_NOREF at the prompt */
  SlTask *task;           /* that task (anchored by task_ref) */
  char *history;          /* history file, NULL when there is none */
} Repl;

static void repl_closed(uv_handle_t *handle) {
  Repl *r = handle->data;
  sl_host_handle_done(r->host);
  if (--r->open_handles == 0) free(r);
}

/* Message handler: error tables through __tostring, strings with a traceback. */
static int repl_msgh(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING) {
    luaL_tolstring(L, 1, NULL);
    return 1;
  }
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* [args...] -> results: calls _repl[name] protected; on error prints it and returns false
 * with nothing pushed. */
static bool repl_call(Repl *r, const char *name, int nargs, int nres) {
  lua_State *L = r->L;
  lua_pushcfunction(L, repl_msgh);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->mod_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);                                       /* [args..., msgh, fn] */
  lua_rotate(L, -2 - nargs, 2);                            /* [msgh, fn, args...] */
  int base = lua_gettop(L) - nargs - 1;
  if (lua_pcall(L, nargs, nres, base) != LUA_OK) {
    fprintf(stderr, "sandlot: repl: %s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 2);
    return false;
  }
  lua_remove(L, base);
  return true;
}

/* SIGINT while a line runs (dispatched by uv_run inside the join): task:cancel() only marks
 * the task and wakes it with nil, err{code = "cancelled"}; the scheduler resumes it later. */
static void on_sigint(uv_signal_t *sig, int signum) {
  (void)signum;
  Repl *r = sig->data;
  lua_State *L = r->L;
  if (r->task_ref == LUA_NOREF || !lua_checkstack(L, 3)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->task_ref);
  lua_getfield(L, -1, "cancel");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
}

static void on_tick(uv_timer_t *tick) {
  Repl *r = tick->data;
  if (r->task != NULL) sl_wake(r->task, 0);
}

static void tick_cleanup(SlTask *t, void *data) {
  (void)t;
  uv_timer_stop(&((Repl *)data)->tick);
}

/* Count hook of a line's task. The loop (and so the SIGINT watcher) only runs when the task
 * waits, so a line that computes without waiting parks here for one loop iteration whenever
 * the loop has events pending; a Ctrl-C among them cancels it. A cancelled line that keeps
 * computing (say, a loop ignoring the nil, err its waits now return at once) is stopped by
 * raising the cancel error. Threads the line spawns inherit the hook; it leaves them alone. */
static void repl_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &repl_key);
  Repl *r = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (r == NULL || r->task == NULL || r->task->co != L) return;
  SlTask *t = r->task;
  if (t->cancel_code != NULL) {
    sl_new_error(L, t->cancel_code, "interrupted");
    lua_error(L);
  }
  struct pollfd pfd = {.fd = uv_backend_fd(r->host->loop), .events = POLLIN};
  if (!lua_isyieldable(L) || poll(&pfd, 1, 0) <= 0) return;
  sl_wait_set_cleanup(t, tick_cleanup, r);
  uv_timer_start(&r->tick, on_tick, 0, 0);
  t->waiting = true;                    /* what sl_wait does, but a hook may not continue */
  lua_yield(L, 0);
}

/* At the prompt SIGINT must interrupt readline (no SA_RESTART) rather than kill us or reach
 * libuv, whose handler would queue it for the next line. */
static volatile sig_atomic_t prompt_sigint;
static sandlot *prompt_engine;            /* the engine prompt_hook drives */
static Repl *prompt_repl;                 /* its REPL, for the redraw and completion hooks */

/* After a loop step at the prompt: when a task printed (sandlot._repl saw it and cleared the
 * prompt's line first), draw the prompt and what was typed again below the output. */
static void prompt_redraw(void) {
  Repl *r = prompt_repl;
  if (r == NULL || !repl_call(r, "take_redraw", 0, 1)) return;
  bool redraw = lua_toboolean(r->L, -1);
  lua_pop(r->L, 1);
  if (redraw) rl_forced_update_display();
}

static void on_prompt_sigint(int signum) {
  (void)signum;
  prompt_sigint = 1;
}

/* libedit calls this before it reads each key at the prompt (rl_event_hook): it drives the
 * loop until a key is there, so tasks started by earlier lines go on while the prompt waits.
 * SIGINT is blocked except inside ppoll, so a Ctrl-C during a step is not lost; after one,
 * clearing rl_event_hook makes libedit end readline() at once (prompt_sigint says why). */
static int prompt_hook(void) {
  sandlot *S = prompt_engine;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &old);
  while (!prompt_sigint) {
    struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                            {.fd = sandlot_backend_fd(S), .events = POLLIN}};
    int ms = sandlot_backend_timeout(S);
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    int n = ppoll(fds, 2, ms >= 0 ? &ts : NULL, &old);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[0].revents != 0) break;        /* a key (or end of input): libedit reads */
    sandlot_step(S);
    prompt_redraw();
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (prompt_sigint) rl_event_hook = NULL;
  return 0;
}

/* Tab completion. libedit's callbacks take no user data, so the REPL they ask is a static, as
 * prompt_engine is; the candidates come from sandlot._repl.complete (policy) as a Lua array
 * kept in the registry while rl_completion_matches walks it. */
static int complete_ref = LUA_NOREF;
static lua_Integer complete_i;

static char *complete_next(const char *text, int state) {
  (void)text;
  lua_State *L = prompt_repl->L;
  if (state == 0) complete_i = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, complete_ref);
  char *out = NULL;
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, ++complete_i);
    const char *s = lua_tostring(L, -1);
    if (s != NULL) out = strdup(s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;       /* never fall back to file names */
  Repl *r = prompt_repl;
  if (r == NULL) return NULL;
  lua_pushstring(r->L, text);
  if (!repl_call(r, "complete", 1, 1)) return NULL;
  luaL_unref(r->L, LUA_REGISTRYINDEX, complete_ref);
  complete_ref = luaL_ref(r->L, LUA_REGISTRYINDEX);
  rl_completion_append_character = '\0';
  char **m = rl_completion_matches(text, complete_next);
  luaL_unref(r->L, LUA_REGISTRYINDEX, complete_ref);
  complete_ref = LUA_NOREF;
  return m;
}

/* readline() with SIGINT clearing the line: NULL and *interrupted for Ctrl-C, NULL alone
 * for end of input. The caller frees the line. */
static char *repl_readline(sandlot *S, const char *prompt, bool *interrupted) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_prompt_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  sandlot_step(S);              /* a Ctrl-C that came as the last line ended is dropped here */
  fflush(stdout);
  fflush(stderr);
  prompt_sigint = 0;
  prompt_engine = S;
  rl_event_hook = prompt_hook;
  if (prompt_repl != NULL) {
    lua_pushboolean(prompt_repl->L, 1);
    repl_call(prompt_repl, "at_prompt", 1, 0);
  }
  errno = 0;
  char *line = readline(prompt);
  if (prompt_repl != NULL) {
    lua_pushboolean(prompt_repl->L, 0);
    repl_call(prompt_repl, "at_prompt", 1, 0);
  }
  *interrupted = prompt_sigint || (line == NULL && errno == EINTR);
  rl_event_hook = NULL;
  sigaction(SIGINT, &old, NULL);
  if (*interrupted && line != NULL) {       /* what was typed before Ctrl-C is dropped */
    free(line);
    line = NULL;
  }
  return line;
}

/* mkdir -p of the directory holding path (mode 0700: history can hold secrets). */
static void make_parent_dirs(const char *path) {
  char *dir = strdup(path);
  if (dir == NULL) return;
  char *slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
      if (*p == '/' || *p == '\0') {
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) break;
        *p = c;
        if (c == '\0') break;
      }
    }
  }
  free(dir);
}

static void history_setup(Repl *r) {
  using_history();
  stifle_history(HISTORY_MAX);
  if (!repl_call(r, "history_path", 0, 1)) return;
  const char *path = lua_tostring(r->L, -1);
  if (path != NULL && (r->history = strdup(path)) != NULL) {
    make_parent_dirs(r->history);
    read_history(r->history);
  }
  lua_pop(r->L, 1);
}

static void history_add(Repl *r, const char *chunk) {
  if (chunk[strspn(chunk, " \t\n")] == '\0') return;
  add_history(chunk);
  if (r->history != NULL && write_history(r->history) != 0 && errno != 0) {
    fprintf(stderr, "sandlot: cannot write the history file %s: %s\n", r->history,
            strerror(errno));
    free(r->history);                                      /* say it once */
    r->history = NULL;
  }
}

/* Runs one complete chunk: [source] -> "incomplete" | nothing. */
static bool repl_run(Repl *r, const char *source) {
  lua_State *L = r->L;
  lua_pushstring(L, source);
  if (!repl_call(r, "start", 1, 1)) return true;
  if (lua_type(L, -1) == LUA_TSTRING) {                    /* "incomplete" */
    lua_pop(L, 1);
    return false;
  }
  SlTask *t = luaL_testudata(L, -1, TASK_MT);
  if (t == NULL) {                                         /* syntax error, printed */
    lua_pop(L, 1);
    return true;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->mod_ref);
  if (lua_getfield(L, -1, "catch_busy") != LUA_TBOOLEAN || lua_toboolean(L, -1))
    lua_sethook(t->co, repl_hook, LUA_MASKCOUNT, HOOK_COUNT);
  lua_pop(L, 2);
  lua_pushvalue(L, -1);
  r->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->task = t;
  repl_call(r, "finish", 1, 0);                            /* joins: drives the loop */
  r->task = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, r->task_ref);
  r->task_ref = LUA_NOREF;
  return true;
}

static void repl_loop(Repl *r, sandlot *S) {
  size_t len = 0, cap = 0;
  char *buf = NULL;                                        /* lines of an unfinished chunk */
  for (;;) {
    bool interrupted;
    char *line = repl_readline(S, len > 0 ? ">> " : "> ", &interrupted);
    if (line == NULL) {
      if (interrupted) {
        repl_call(r, "interrupted", 0, 0);
        len = 0;
        continue;
      }
      fputc('\n', stdout);
      break;
    }
    size_t n = strlen(line);
    if (len + n + 2 > cap) {
      size_t ncap = (len + n + 2) * 2;
      char *nbuf = realloc(buf, ncap);
      if (nbuf == NULL) {
        fprintf(stderr, "sandlot: out of memory\n");
        free(line);
        break;
      }
      buf = nbuf;
      cap = ncap;
    }
    if (len > 0) buf[len++] = '\n';
    memcpy(buf + len, line, n + 1);
    len += n;
    free(line);
    if (len == 0) continue;
    if (repl_run(r, buf)) {
      history_add(r, buf);
      len = 0;
    }
  }
  free(buf);
}

int sl_repl_main(sandlot *S) {
  lua_State *L = sandlot_lua(S);
  Repl *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    fprintf(stderr, "sandlot: out of memory\n");
    return 1;
  }
  r->L = L;
  r->task_ref = LUA_NOREF;
  lua_pushcfunction(L, repl_msgh);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sandlot._repl");
  if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
    fprintf(stderr, "sandlot: %s\n", lua_tostring(L, -1));
    lua_pop(L, 2);
    free(r);
    return 1;
  }
  r->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);                                           /* msgh */
  r->host = sl_host(L);
  uv_signal_init(r->host->loop, &r->sigint);
  r->sigint.data = r;
  uv_timer_init(r->host->loop, &r->tick);
  r->tick.data = r;
  r->open_handles = 2;
  sl_host_handle_opened(r->host);
  sl_host_handle_opened(r->host);
  uv_signal_start(&r->sigint, on_sigint, SIGINT);
  uv_unref((uv_handle_t *)&r->sigint);
  uv_timer_start(&r->tick, on_tick, 0, 0);     /* one loop turn, so that libuv's signal pipe */
  sandlot_step(S);                             /* is in the backend fd that repl_hook polls */
  lua_pushlightuserdata(L, r);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &repl_key);

  rl_readline_name = "sandlot";                            /* section of ~/.editrc */
  prompt_repl = r;
  rl_attempted_completion_function = complete;
  history_setup(r);
  if (repl_call(r, "setup", 0, 0) && repl_call(r, "banner", 0, 1)) {
    fputs(lua_tostring(L, -1), stdout);
    lua_pop(L, 1);
  }
  repl_loop(r, S);

  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &repl_key);
  rl_attempted_completion_function = NULL;
  prompt_repl = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, r->mod_ref);
  free(r->history);
  r->history = NULL;
  uv_signal_stop(&r->sigint);
  uv_close((uv_handle_t *)&r->tick, repl_closed);
  uv_close((uv_handle_t *)&r->sigint, repl_closed);        /* frees r; drained at close */
  fflush(stdout);
  return 0;
}
