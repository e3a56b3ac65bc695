/* main.c: the sandlot host: `sandlot [options] [script [args]]`, shaped like the stock lua
 * interpreter, plus subcommands written in Lua (sandlot.cli) and the REPL (repl.c). A thin
 * user of the public engine API in sandlot.h. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "sandlot.h"
#include "repl.h"

static const char usage[] =
  "usage: sandlot [options] [script [args...]]\n"
  "       sandlot <command> [args...]     (sandlot help: the commands)\n"
  "Options:\n"
  "  -e code        run code (may be repeated)\n"
  "  -i             enter the REPL after running the script or -e code\n"
  "  -q, --quiet    no progress line on a terminal (also SANDLOT_QUIET=1)\n"
  "  -              run the script on stdin\n"
  "  --             stop handling options\n"
  "  -v, --version  print the version\n"
  "  -h, --help     print this help\n"
  "With no arguments on a terminal, sandlot opens a REPL.\n"
  "Environment: SANDLOT_PATH (extra module dirs), SANDLOT_CONFIG, SANDLOT_PROVIDER,\n"
  "             SANDLOT_TELEMETRY (JSON-lines file), SANDLOT_QUIET, XDG_CONFIG_HOME,\n"
  "             XDG_STATE_HOME\n"
  "Exit status: 0 success, 1 failure (a script error), 2 usage error.\n";

#define PREFIX "sandlot: "                 /* the one prefix of every message the host prints */

/* Prints the engine's last error with the prefix once: the engine's own reports ("sandlot: a
 * task failed ...") and errors raised as "sandlot: ..." carry it already. */
static int report(sandlot *S, int rc) {
  if (rc != 0) {
    const char *msg = sandlot_last_error(S);
    if (msg == NULL) msg = "unknown error";
    if (strncmp(msg, PREFIX, strlen(PREFIX)) == 0) msg += strlen(PREFIX);
    fprintf(stderr, PREFIX "%s\n", msg);
    fflush(stderr);
  }
  return rc;
}

/* A usage error about option opt (unknown, or missing its argument), with "did you mean" from
 * sandlot._check.suggest for an unknown option close to a known one; then the usage. */
static int usage_error(sandlot *S, const char *opt, bool unknown) {
  lua_State *L = sandlot_lua(S);
  int top = lua_gettop(L);
  const char *hint = NULL;
  static const char suggest[] = "return require('sandlot._check').suggest(..., "
                                "{'-e', '-i', '-q', '--quiet', '-v', '--version', '-h', '--help'})";
  if (unknown && luaL_loadstring(L, suggest) == LUA_OK) {
    lua_pushstring(L, opt);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) hint = lua_tostring(L, -1);
  }
  if (unknown) fprintf(stderr, PREFIX "unrecognized option '%s'", opt);
  else fprintf(stderr, PREFIX "'%s' needs an argument", opt);
  if (hint != NULL) fprintf(stderr, " (did you mean '%s'?)", hint);
  fprintf(stderr, "\n%s", usage);
  lua_settop(L, top);
  return 2;                                /* the usage-error exit status */
}

/* arg = {[-n..-1] = interpreter and options, [0] = script, [1..] = script args} */
static void set_arg(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static bool is_command(const char *word) {
  struct stat st;
  if (!(word[0] >= 'a' && word[0] <= 'z') || strchr(word, '.') != NULL) return false;
  for (const char *c = word; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || *c == '-' || *c == '_')) return false;
  return stat(word, &st) != 0;             /* a file of that name wins */
}

static int run_script(sandlot *S, char **argv, int argc, int script) {
  lua_State *L = sandlot_lua(S);
  set_arg(L, argv, argc, script);
  const char *path = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
  int nargs = argc - script - 1;
  for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
  return report(S, sandlot_dofile(S, path, nargs));
}

static int run_command(sandlot *S, char **argv, int argc, int cmd) {
  lua_State *L = sandlot_lua(S);
  set_arg(L, argv, argc, cmd);
  lua_getglobal(L, "arg");
  lua_setglobal(L, "_SANDLOT_CLI_ARGS");
  return report(S, sandlot_dostring(S,
    "return require('sandlot.cli').main(_SANDLOT_CLI_ARGS)", "=sandlot"));
}

int main(int argc, char **argv) {
  sandlot *S = sandlot_open(NULL);
  if (S == NULL) {
    fprintf(stderr, PREFIX "cannot create the engine (out of memory)\n");
    return 1;
  }
  sandlot_catch_signals(S);                /* Ctrl-C, SIGTERM: close what scripts hold, then go */
  /* `sandlot` is a global in scripts, -e and the REPL, as `vim` is in Neovim, so a line pasted
   * from the REPL runs in a script. Loaded on first use: a script that never names it does not
   * pay for the library. */
  if (luaL_dostring(sandlot_lua(S),
        "setmetatable(_G, {__index = function(t, k)\n"
        "  if k == 'sandlot' then local m = require('sandlot'); rawset(t, k, m); return m end\n"
        "end})") != LUA_OK) {
    fprintf(stderr, PREFIX "%s\n", lua_tostring(sandlot_lua(S), -1));
    sandlot_close(S);
    return 1;
  }
  /* the one-line progress display of long operations, on a terminal only (-q or
   * SANDLOT_QUIET=1 turn it off; sandlot._progress) */
  bool quiet = false;
  for (int k = 1; k < argc && argv[k][0] == '-' && strcmp(argv[k], "--") != 0; k++) {
    if (strcmp(argv[k], "-q") == 0 || strcmp(argv[k], "--quiet") == 0) quiet = true;
    if (strcmp(argv[k], "-e") == 0) k++;                   /* its code is no option */
  }
  if (!quiet && isatty(2))
    (void)luaL_dostring(sandlot_lua(S),
                        "local p = require('sandlot._progress') if p.wanted() then p.attach() end");
  int rc = 0, i = 1;
  bool interactive = false, ran = false;
  for (; i < argc && rc == 0; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      sandlot_close(S);
      return 0;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      printf("sandlot %s (%s)\n", SANDLOT_VERSION, LUA_RELEASE);
      sandlot_close(S);
      return 0;
    } else if (strcmp(a, "-i") == 0) {
      interactive = true;
    } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      /* seen before the loop: no progress display */
    } else if (strcmp(a, "-e") == 0) {
      if (++i >= argc) {
        rc = usage_error(S, a, false);
        break;
      }
      set_arg(sandlot_lua(S), argv, argc, 0);
      rc = report(S, sandlot_dostring(S, argv[i], "=(command line)"));
      ran = true;
    } else if (a[0] == '-' && a[1] != '\0') {
      rc = usage_error(S, a, true);
    } else {
      break;
    }
  }
  if (rc == 0 && i < argc) {
    if (!ran && is_command(argv[i])) rc = run_command(S, argv, argc, i);
    else rc = run_script(S, argv, argc, i);
    ran = true;
  }
  if (rc == 0 && (interactive || (!ran && isatty(0)))) {
    rc = sl_repl_main(S);
  } else if (rc == 0 && !ran) {
    char dash[] = "-";
    rc = run_script(S, (char *[]){argv[0], dash}, 2, 1);
  }
  int stopped_by = sandlot_stop_signal(S);
  sandlot_close(S);
  if (stopped_by != 0) {                   /* end the way the signal would have ended us */
    fflush(NULL);
    signal(stopped_by, SIG_DFL);
    raise(stopped_by);
  }
  return rc;
}
