/* http.c: sandlot.core.http (being built: see issue 4). */
#include "internal.h"

static const luaL_Reg http_funcs[] = {
  {NULL, NULL}
};

int luaopen_sandlot_core_http(lua_State *L) {
  luaL_newlib(L, http_funcs);
  return 1;
}
