/* ssh.c: sandlot.core.ssh (being built: see issue 5). */
#include "internal.h"

static const luaL_Reg ssh_funcs[] = {
  {NULL, NULL}
};

int luaopen_sandlot_core_ssh(lua_State *L) {
  luaL_newlib(L, ssh_funcs);
  return 1;
}
