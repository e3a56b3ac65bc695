/* embed.c: a C program that embeds sandlot through the public API of sandlot.h. It registers
 * one C function, runs a Lua snippet that calls it and runs a child process, and shows both
 * ways to drive the engine: sandlot_dostring (sandlot drives its loop) and --step (the host
 * program's own poll() loop drives it through sandlot_backend_fd and sandlot_step).
 *
 *   usage: embed [--step] [code]      code defaults to the demo snippet below */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "sandlot.h"

/* The demo: a child process (through the one event loop), the host's C function on its output,
 * and two concurrent tasks. Runs as a task, so every call here may wait. */
static const char demo[] =
  "local sandlot = require('sandlot')\n"
  "local r = assert(sandlot.proc.run({ 'echo', 'hello from a child' }))\n"
  "print(('child: exit_code=%d stdout=%s'):format(r.exit_code, (r.stdout:gsub('\\n$', ''))))\n"
  "print('digest: ' .. host_digest(r.stdout))\n"
  "local a = sandlot.spawn(function() sandlot.sleep(0.01); return 'a' end)\n"
  "local b = sandlot.spawn(function()\n"
  "  return assert(sandlot.proc.run('printf b')).stdout\n"
  "end)\n"
  "print('tasks: ' .. a:join() .. b:join())\n"
  "print('sandlot ' .. sandlot.version)\n";

/* host_digest(s) -> string: FNV-1a (32 bit) of s as 8 hex digits, standing in for whatever the
 * embedding program wants to offer its scripts. */
static int host_digest(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    hash ^= s[i];
    hash *= 16777619u;
  }
  char hex[9];
  snprintf(hex, sizeof(hex), "%08x", (unsigned)hash);
  lua_pushstring(L, hex);
  return 1;
}

#ifdef EMBED_LUA_DIR
/* sandlot_open finds the Lua library next to the executable (<exe>/../lua) or in the stock
 * package.path (an install under /usr/local). This program lives elsewhere in the source
 * tree, so the Makefile tells it where lua/ is and it puts that first on package.path. */
static void add_lua_dir(lua_State *L, const char *dir) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}
#endif

/* Spawns code as a task without running it: sandlot_spawn only queues the task, so nothing
 * waits here. Returns the task, or NULL with the message on stderr. */
static sandlot_task *spawn_chunk(sandlot *S, const char *code) {
  lua_State *L = sandlot_lua(S);
  if (luaL_loadbuffer(L, code, strlen(code), "=(embed)") != LUA_OK) {
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  sandlot_task *t = sandlot_spawn(S, 0);
  if (t == NULL) fprintf(stderr, "embed: %s\n", sandlot_last_error(S));
  return t;
}

/* Prints the task's error (message and traceback) to stderr; returns 1 if it failed. A task
 * still waiting (-1) is left for sandlot_run to report as stalled. */
static int report_task(sandlot *S, sandlot_task *t) {
  int failed = sandlot_task_error(S, t) == 1;
  if (failed) fprintf(stderr, "embed: %s\n", sandlot_last_error(S));
  sandlot_task_release(S, t);
  return failed;
}

/* The embedding program's own loop: it would also poll its own fds here. sandlot needs only
 * its backend fd watched for input and its timeout honoured, then a sandlot_step. */
static int run_stepped(sandlot *S, const char *code) {
  sandlot_task *t = spawn_chunk(S, code);
  if (t == NULL) return 1;
  unsigned long polls = 0;
  struct pollfd pfd = {.fd = sandlot_backend_fd(S), .events = POLLIN};
  while (sandlot_step(S) > 0 && !sandlot_stalled(S)) {
    int timeout = sandlot_backend_timeout(S);
    if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
      perror("embed: poll");
      break;
    }
    polls++;
  }
  int rc = report_task(S, t);
  if (sandlot_run(S) != 0) {          /* nothing left to drive: reports a stall and failed */
    fprintf(stderr, "embed: %s\n", sandlot_last_error(S));   /* tasks nobody joined */
    rc = 1;
  }
  if (rc == 0) printf("step: tasks done after %lu polls\n", polls);
  return rc;
}

int main(int argc, char **argv) {
  int i = 1;
  int step = 0;
  if (i < argc && strcmp(argv[i], "--step") == 0) {
    step = 1;
    i++;
  }
  if (argc - i > 1 || (i < argc && argv[i][0] == '-')) {
    fprintf(stderr, "usage: embed [--step] [code]\n");
    return 2;
  }
  const char *code = i < argc ? argv[i] : demo;

  sandlot *S = sandlot_open(NULL);
  if (S == NULL) {
    fprintf(stderr, "embed: cannot create the engine\n");
    return 1;
  }
#ifdef EMBED_LUA_DIR
  add_lua_dir(sandlot_lua(S), EMBED_LUA_DIR);
#endif
  sandlot_register(S, "host_digest", host_digest);
  int rc;
  if (step) {
    rc = run_stepped(S, code);
  } else {
    rc = sandlot_dostring(S, code, "=(embed)");
    if (rc != 0) fprintf(stderr, "embed: %s\n", sandlot_last_error(S));
  }
  fflush(stdout);
  sandlot_close(S);
  return rc;
}
