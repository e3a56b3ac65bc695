/* lazy.c: the host binary loads sandlot.core.http and sandlot.core.ssh the first time a script
 * requires them. libcurl and libssh2 bring some thirty shared libraries (TLS, Kerberos, LDAP,
 * IDN, ...) whose loading and relocation cost about 5 ms per process: most of the start of a
 * `sandlot -e ''` that needs neither. The modules are http.so and ssh.so in lib/sandlot beside
 * the binary (the build tree), in ../lib/sandlot (a relocated install) or in SANDLOT_MODDIR
 * (the configured install). They call back into the core through the SL_SHARED symbols the
 * binary exports. libsandlot and sandlot.so link both modules in (net.c). */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifndef SANDLOT_MODDIR
#define SANDLOT_MODDIR "/usr/local/lib/sandlot"
#endif

/* Loads <dir>/<file> from the first directory that has it and calls its luaopen_<sym>. Raises
 * a message naming every place it looked when none has it or it cannot be loaded. */
static int open_module(lua_State *L, const char *file, const char *sym) {
  char dir[PATH_MAX], path[PATH_MAX + 64];
  const char *where[3] = {NULL, NULL, SANDLOT_MODDIR};
  char rel1[PATH_MAX + 16], rel2[PATH_MAX + 16];
  if (sl_exe_dir(dir, sizeof(dir))) {
    snprintf(rel1, sizeof(rel1), "%s/lib/sandlot", dir);
    snprintf(rel2, sizeof(rel2), "%s/../lib/sandlot", dir);
    where[0] = rel1;
    where[1] = rel2;
  }
  luaL_Buffer tried;
  luaL_buffinit(L, &tried);
  for (int i = 0; i < 3; i++) {
    if (where[i] == NULL) continue;
    snprintf(path, sizeof(path), "%s/%s", where[i], file);
    if (access(path, R_OK) != 0) {
      lua_pushfstring(L, "\n\tno file '%s'", path);
      luaL_addvalue(&tried);
      continue;
    }
    /* never closed: the module's handles and callbacks live as long as the process. Lazy
     * binding: the functions of libcurl's ~30 libraries a script never calls are never looked
     * up (a fifth of the load's cost); the module itself is checked by its ABI string below */
    void *so = dlopen(path, RTLD_LAZY | RTLD_LOCAL | RTLD_NODELETE);
    if (so == NULL) return luaL_error(L, "sandlot: cannot load %s: %s", path, dlerror());
    const char *(*abi)(void) = (const char *(*)(void))dlsym(so, "sl_module_abi");
    lua_CFunction open = (lua_CFunction)dlsym(so, sym);
    char mine[128];
    sl_abi_string(mine, sizeof(mine));
    if (abi == NULL || open == NULL || strcmp(abi(), mine) != 0)
      return luaL_error(L, "sandlot: %s was built for %s, not for this binary (%s); "
                        "rebuild or reinstall sandlot", path, abi ? abi() : "?", mine);
    return open(L);
  }
  luaL_pushresult(&tried);
  return luaL_error(L, "sandlot: module %s not found:%s", file, lua_tostring(L, -1));
}

int sl_open_http(lua_State *L) { return open_module(L, "http.so", "luaopen_sandlot_core_http"); }
int sl_open_ssh(lua_State *L) { return open_module(L, "ssh.so", "luaopen_sandlot_core_ssh"); }
