/* proc_spawn.h: what proc.c takes from core/proc_spawn.c: the spawn options read from Lua
 * and the posix_spawn of the child. */
#ifndef SANDLOT_PROC_SPAWN_H
#define SANDLOT_PROC_SPAWN_H

#include "internal.h"

typedef struct {
  char **argv, **env;
  const char *file, *cwd, *input, *spill[2];
  size_t input_len, cap;
  double timeout;
  int rows, cols;                          /* pty: its size */
  bool stdin_pipe, stream, kill_group, pty, ctty;
} SlSpawnOpts;

/* Reads the opts table at index opts into o; raises on misuse. The strings stay owned by the
 * table (argv and env lists anchored in it as _argv and _env). */
void sl_spawn_opts_read(lua_State *L, int opts, SlSpawnOpts *o);

/* Spawns path with o's argv, env and cwd as the leader of a new session and process group,
 * stdio on fds (see proc_spawn.c) or on tty. Sets *start_ns just before the spawn and *pid on
 * success; returns 0 or an errno. */
int sl_spawn_child(const char *path, const SlSpawnOpts *o, int fds[3][2], bool want_in,
                   const char *tty, uint64_t *start_ns, int *pid);

#endif
