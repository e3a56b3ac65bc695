/* net.c: sandlot.core.http and sandlot.core.ssh linked in, for libsandlot and the sandlot.so
 * Lua module. The host binary loads them lazily instead (lazy.c). */
#include "internal.h"

int sl_open_http(lua_State *L) { return luaopen_sandlot_core_http(L); }
int sl_open_ssh(lua_State *L) { return luaopen_sandlot_core_ssh(L); }
