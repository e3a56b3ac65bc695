/* fs.c: sandlot.core.fs: file-system calls the Lua library needs and stock Lua lacks. */
#include "internal.h"

static const luaL_Reg fs_funcs[] = {
  {NULL, NULL}
};

int luaopen_sandlot_core_fs(lua_State *L) {
  luaL_newlib(L, fs_funcs);
  return 1;
}
