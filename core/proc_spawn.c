/* proc_spawn.c: how sandlot.core.proc starts a child, apart from the process it then keeps
 * (core/proc.c): the spawn options read from the Lua opts table (misuse raises), and the
 * posix_spawn call with its file actions and attributes: a new session and process group,
 * stdio on the given pipes or pty, no other inherited fd, every signal at its default. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>

extern char **environ;

#include "outbuf.h"
#include "proc_spawn.h"

static char **string_list(lua_State *L, int opts, const char *field, bool required) {
  int type = lua_getfield(L, opts, field);
  if (type == LUA_TNIL && !required) {
    lua_pop(L, 1);
    return NULL;
  }
  if (type != LUA_TTABLE) luaL_error(L, "proc: opts.%s must be a list of strings", field);
  lua_Integer n = luaL_len(L, -1);
  if (required && n < 1) luaL_error(L, "proc: opts.%s must not be empty", field);
  /* the list lives in a userdata anchored in the opts' scratch table */
  char **list = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
      luaL_error(L, "proc: opts.%s[%d] must be a string", field, (int)i);
    list[i - 1] = (char *)lua_tostring(L, -1);
    if (strlen(list[i - 1]) != lua_rawlen(L, -1))
      luaL_error(L, "proc: opts.%s[%d] contains a NUL byte", field, (int)i);
    lua_pop(L, 1);                         /* the string stays alive in the list table */
  }
  list[n] = NULL;
  lua_setfield(L, opts, field[0] == 'a' ? "_argv" : "_env");
  lua_pop(L, 1);
  return list;
}

static const char *opt_string(lua_State *L, int opts, const char *field, size_t *len) {
  int type = lua_getfield(L, opts, field);
  const char *s = NULL;
  if (type == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (type != LUA_TNIL) luaL_error(L, "proc: opts.%s must be a string", field);
  lua_pop(L, 1);                           /* opts keeps the string alive */
  return s;
}

void sl_spawn_opts_read(lua_State *L, int opts, SlSpawnOpts *o) {
  memset(o, 0, sizeof(*o));
  o->argv = string_list(L, opts, "argv", true);
  o->env = string_list(L, opts, "env", false);
  o->file = opt_string(L, opts, "file", NULL);
  o->cwd = opt_string(L, opts, "cwd", NULL);
  o->input = opt_string(L, opts, "input", &o->input_len);
  o->spill[0] = opt_string(L, opts, "spill_stdout", NULL);
  o->spill[1] = opt_string(L, opts, "spill_stderr", NULL);
  lua_getfield(L, opts, "max_output");
  lua_Integer cap = luaL_optinteger(L, -1, (lua_Integer)SL_DEFAULT_MAX_OUTPUT);
  if (cap < 0) luaL_error(L, "proc: opts.max_output must be >= 0");
  o->cap = (size_t)cap;
  lua_getfield(L, opts, "timeout");
  o->timeout = luaL_optnumber(L, -1, 0);
  lua_getfield(L, opts, "stdin");
  o->stdin_pipe = lua_toboolean(L, -1) && strcmp(luaL_optstring(L, -1, "null"), "pipe") == 0;
  lua_getfield(L, opts, "stream");
  o->stream = lua_toboolean(L, -1);
  lua_getfield(L, opts, "kill_group");
  o->kill_group = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 5);
  if (lua_getfield(L, opts, "pty") == LUA_TTABLE) {  /* {rows, cols, ctty = true} */
    o->pty = o->stdin_pipe = true;
    lua_getfield(L, -1, "rows");
    lua_getfield(L, -2, "cols");
    lua_getfield(L, -3, "ctty");
    o->rows = (int)luaL_checkinteger(L, -3);
    o->cols = (int)luaL_checkinteger(L, -2);
    o->ctty = lua_isnil(L, -1) || lua_toboolean(L, -1);
    if (o->rows < 1 || o->rows > 65535 || o->cols < 1 || o->cols > 65535)
      luaL_error(L, "proc: opts.pty.rows and cols must be integers in 1..65535");
    lua_pop(L, 3);
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "proc: opts.pty must be a table {rows =, cols =}");
  }
  lua_pop(L, 1);
}

/* posix_spawn (vfork-fast) with the child as leader of a new session and process group,
 * stdio on the pipes (or /dev/null), no other inherited fd, default signal dispositions.
 * fds[i] is stdin, stdout, stderr as {read end, write end}: the child gets fds[0][0] (when
 * want_in), fds[1][1] and fds[2][1]. */
int sl_spawn_child(const char *path, const SlSpawnOpts *o, int fds[3][2], bool want_in,
                   const char *tty, uint64_t *start_ns, int *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, defaults;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (tty != NULL) {                       /* opened after setsid: our controlling terminal */
    posix_spawn_file_actions_addopen(&fa, 0, tty, O_RDWR | (o->ctty ? 0 : O_NOCTTY), 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
  } else {
    if (want_in) posix_spawn_file_actions_adddup2(&fa, fds[0][0], 0);
    else posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1][1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[2][1], 2);
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  if (o->cwd != NULL) posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
  sigemptyset(&none);
  sigfillset(&defaults);                   /* ignored signals would survive exec: reset all */
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                  POSIX_SPAWN_SETSIGDEF);
  pid_t child;
  *start_ns = sl_now_ns();
  int rc = posix_spawn(&child, path, &fa, &attr, o->argv, o->env != NULL ? o->env : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc == 0) *pid = child;
  return rc;
}
