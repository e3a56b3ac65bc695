/* ssh.c: sandlot.core.ssh: SSH sessions on the libuv loop (libssh2 in non-blocking mode).
 * This file is the module face: registration, ssh.connect, and the session handle's own
 * methods; the parts are listed in ssh.h. */
#include <stdio.h>
#include <string.h>

#include "ssh.h"

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1)) {
    lua_pushvalue(L, (int)ctx);
    return 1;
  }
  return 2;
}

static double need_number(lua_State *L, const char *field) {
  lua_getfield(L, 1, field);
  if (!lua_isnumber(L, -1)) luaL_error(L, "ssh.connect: opts.%s must be a number", field);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ssh.connect{host=, port=, timeout=, keepalive=, keepalive_max=, max_channels=}
 *   -> session | nil, err   (TCP and the SSH handshake; the host key is not checked yet).
 * Every field is required: the defaults live in lua/sandlot/ssh.lua (M.DEFAULTS). */
static int ssh_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_checkstring(L, -1);
  luaL_argcheck(L, strlen(host) < 255, 1, "host name too long");
  SshTarget tg;
  snprintf(tg.host_name, sizeof(tg.host_name), "%s", host);
  lua_pop(L, 1);
  tg.port = (int)need_number(L, "port");
  tg.timeout = need_number(L, "timeout");
  tg.keepalive = need_number(L, "keepalive");
  tg.keepalive_max = (int)need_number(L, "keepalive_max");
  tg.max_channels = (int)need_number(L, "max_channels");
  if (tg.port < 1 || tg.port > 65535 || tg.max_channels < 1 || tg.keepalive_max < 1)
    return luaL_error(L, "ssh.connect: port, max_channels or keepalive_max out of range");
  SessionBox *box = lua_newuserdatauv(L, sizeof(*box), 0);   /* [opts, box] */
  box->s = NULL;
  luaL_setmetatable(L, SESSION_MT);
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) return 2;
  SlError err;
  if (!ssh_resolve_start(t, box, &tg, &err)) return sl_push_error(L, &err);
  return sl_wait(L, t, 2, connect_k);
}

/* session:close() -> true. Also __close and __gc: idempotent, never yields. */
static int session_close(lua_State *L) {
  SessionBox *box = luaL_checkudata(L, 1, SESSION_MT);
  if (box->s != NULL) {
    Session *s = box->s;
    box->s = NULL;
    ssh_sess_release(s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* session:alive() -> bool (false once the connection was lost) */
static int session_alive(lua_State *L) {
  Session *s = ssh_sess_check(L, 1);
  lua_pushboolean(L, !ssh_dead(s));
  return 1;
}

static int session_tostring(lua_State *L) {
  SessionBox *box = luaL_checkudata(L, 1, SESSION_MT);
  if (box->s == NULL) lua_pushliteral(L, "sandlot.ssh.session (closed)");
  else lua_pushfstring(L, "sandlot.ssh.session %s:%d (%s)", box->s->host_name, box->s->port,
                       ssh_dead(box->s) ? "lost" : "open");
  return 1;
}

/* session:stats() -> {channels=, pending=, max_channels=} */
static int session_stats(lua_State *L) {
  Session *s = ssh_sess_check(L, 1);
  int pending = 0;
  for (Op *op = s->head; op != NULL; op = op->next) pending++;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, s->channels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, pending);
  lua_setfield(L, -2, "pending");
  lua_pushinteger(L, s->max_channels);
  lua_setfield(L, -2, "max_channels");
  return 1;
}

static const luaL_Reg session_methods[] = {
  {"host_key", ssh_session_host_key}, {"check_known_hosts", ssh_session_check_known_hosts},
  {"learn_host_key", ssh_session_learn_host_key}, {"auth", ssh_session_auth},
  {"exec", ssh_session_exec}, {"spawn", ssh_session_spawn}, {"sftp", ssh_session_sftp},
  {"alive", session_alive}, {"stats", session_stats}, {"close", session_close},
  {NULL, NULL}
};

static const luaL_Reg session_meta[] = {
  {"__index", NULL}, {"__gc", session_close}, {"__close", session_close},
  {"__tostring", session_tostring}, {NULL, NULL}
};

static const luaL_Reg ssh_funcs[] = {
  {"connect", ssh_connect}, {NULL, NULL}
};

int luaopen_sandlot_core_ssh(lua_State *L) {
  sl_host(L);
  if (luaL_newmetatable(L, SESSION_MT)) {
    luaL_setfuncs(L, session_meta, 0);
    luaL_newlib(L, session_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  ssh_exec_open(L);
  luaL_newlib(L, ssh_funcs);
  lua_pushstring(L, LIBSSH2_VERSION);
  lua_setfield(L, -2, "libssh2");
  return 1;
}
