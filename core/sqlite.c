/* sqlite.c: sandlot.core.sqlite, a thin binding of libsqlite3 for the ledger. Mechanism only:
 * open with flags, run SQL with bound parameters (prepare, bind, step, finalize in one call),
 * busy_timeout, and result codes mapped to sandlot.error codes. The schema, pragmas, retries
 * and wording live in lua/sandlot/ledger/. A connection is a userdata owning one sqlite3*;
 * no statement outlives the call that prepared it. */
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

#define DB_MT "sandlot.sqlite.db"

typedef struct { sqlite3 *db; } DbBox;    /* db == NULL means closed */

static sqlite3 *db_check(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  if (box->db == NULL) luaL_error(L, "attempt to use a closed sandlot.sqlite.db");
  return box->db;
}

/* An extended result code -> a code of the closed set. BUSY means the busy timeout passed. */
static const char *code_for(int rc) {
  switch (rc) {
  case SQLITE_CONSTRAINT_PRIMARYKEY: case SQLITE_CONSTRAINT_UNIQUE: return "already_exists";
  default: break;
  }
  switch (rc & 0xff) {
  case SQLITE_BUSY: case SQLITE_LOCKED: return "unavailable";
  case SQLITE_FULL: case SQLITE_IOERR: case SQLITE_CANTOPEN: case SQLITE_READONLY:
  case SQLITE_PROTOCOL: case SQLITE_CORRUPT: case SQLITE_NOTADB: return "io_error";
  case SQLITE_PERM: case SQLITE_AUTH: return "permission_denied";
  case SQLITE_CONSTRAINT: case SQLITE_TOOBIG: case SQLITE_RANGE: case SQLITE_MISMATCH:
    return "invalid_input";
  case SQLITE_INTERRUPT: return "cancelled";
  default: return "internal";
  }
}

/* Pushes nil and an error {code, message = "sqlite: FILE: what", file, sqlite = name,
 * sqlite_code = extended code}; returns 2. */
static int db_fail(lua_State *L, sqlite3 *db, int rc, const char *file) {
  const char *what = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (file == NULL && db != NULL) file = sqlite3_db_filename(db, "main");
  if (file == NULL) file = "?";
  lua_pushnil(L);
  lua_pushfstring(L, "sqlite: %s: %s", file, what);
  sl_new_error(L, code_for(rc), lua_tostring(L, -1));
  lua_remove(L, -2);                      /* [nil, err] */
  lua_pushstring(L, file);
  lua_setfield(L, -2, "file");
  lua_pushstring(L, sqlite3_errstr(rc));
  lua_setfield(L, -2, "sqlite");
  lua_pushinteger(L, rc);
  lua_setfield(L, -2, "sqlite_code");
  return 2;
}

/* sqlite.open(path [, opts]) -> db | nil, err
 * opts: readonly (false), create (true), busy_timeout (ms, 0) */
static int sqlite_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool readonly = false, create = true;
  lua_Integer busy = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "readonly");
    readonly = lua_toboolean(L, -1);
    lua_getfield(L, 2, "create");
    create = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_getfield(L, 2, "busy_timeout");
    busy = luaL_optinteger(L, -1, 0);
    lua_pop(L, 3);
  }
  luaL_argcheck(L, busy >= 0 && busy <= 3600000, 2, "busy_timeout must be 0..3600000 ms");
  DbBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->db = NULL;                         /* valid (closed) before anything can fail */
  luaL_setmetatable(L, DB_MT);
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  flags |= readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (!readonly && create) flags |= SQLITE_OPEN_CREATE;
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags, NULL);
  if (rc != SQLITE_OK) {
    lua_pop(L, 1);
    int n = db_fail(L, db, rc, path);
    sqlite3_close_v2(db);                 /* open hands back a handle even on failure */
    return n;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, (int)busy);
  box->db = db;
  return 1;
}

/* Binds the value at stack index v to parameter i; a table or a function is misuse and
 * gives SQLITE_MISUSE with the reason in *why (the caller raises once the statement is
 * finalized). */
static int bind_one(lua_State *L, sqlite3_stmt *st, int i, int v, const char **why) {
  switch (lua_type(L, v)) {
  case LUA_TNIL: return sqlite3_bind_null(st, i);
  case LUA_TBOOLEAN: return sqlite3_bind_int(st, i, lua_toboolean(L, v));
  case LUA_TNUMBER:
    if (lua_isinteger(L, v)) return sqlite3_bind_int64(st, i, lua_tointeger(L, v));
    return sqlite3_bind_double(st, i, lua_tonumber(L, v));
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, v, &n);
    return sqlite3_bind_text64(st, i, s, n, SQLITE_TRANSIENT, SQLITE_UTF8);
  }
  default:
    *why = lua_pushfstring(L, "sqlite: parameter %d is a %s (nil, boolean, number or "
                           "string expected)", i, luaL_typename(L, v));
    lua_replace(L, v);                    /* keep the message alive in the value's slot */
    return SQLITE_MISUSE;
  }
}

/* Binds params (stack index p, a table or nil): ?/?NNN from its array part, :name/@name/$name
 * from its string keys; a value the table lacks is NULL. */
static int bind_all(lua_State *L, sqlite3_stmt *st, int p, const char **why) {
  int n = sqlite3_bind_parameter_count(st);
  bool have = lua_istable(L, p);
  for (int i = 1; i <= n && have; i++) {
    const char *name = sqlite3_bind_parameter_name(st, i);
    if (name != NULL && name[0] != '?') lua_getfield(L, p, name + 1);
    else lua_geti(L, p, i);
    int rc = bind_one(L, st, i, lua_gettop(L), why);
    if (rc != SQLITE_OK) return rc;       /* the message stays on the stack */
    lua_pop(L, 1);
  }
  return SQLITE_OK;
}

static void push_column(lua_State *L, sqlite3_stmt *st, int c) {
  switch (sqlite3_column_type(st, c)) {
  case SQLITE_INTEGER: lua_pushinteger(L, sqlite3_column_int64(st, c)); break;
  case SQLITE_FLOAT: lua_pushnumber(L, sqlite3_column_double(st, c)); break;
  case SQLITE_TEXT:
    lua_pushlstring(L, (const char *)sqlite3_column_text(st, c),
                    (size_t)sqlite3_column_bytes(st, c));
    break;
  case SQLITE_BLOB: {
    const void *b = sqlite3_column_blob(st, c);
    lua_pushlstring(L, b ? b : "", (size_t)sqlite3_column_bytes(st, c));
    break;
  }
  default: lua_pushnil(L); break;
  }
}

/* db:query(sql [, params]) -> rows, changes | nil, err
 * One statement. rows: a list of {column = value} (NULL columns absent); changes: rows the
 * statement inserted, updated or deleted. The statement is finalized before returning. */
static int db_query(lua_State *L) {
  sqlite3 *db = db_check(L);
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(db, sql, (int)len, 0, &st, &tail);
  if (rc != SQLITE_OK) return db_fail(L, db, rc, NULL);
  if (st == NULL) return luaL_error(L, "sqlite: query: no statement in the SQL");
  while (tail != NULL && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
    tail++;
  if (tail != NULL && *tail != '\0') {
    sqlite3_finalize(st);
    return luaL_error(L, "sqlite: query takes one statement (use exec for several)");
  }
  const char *why = NULL;
  rc = bind_all(L, st, 3, &why);
  if (rc != SQLITE_OK) {
    if (why != NULL) {                    /* misuse: raise, without leaking the statement */
      sqlite3_finalize(st);
      return luaL_error(L, "%s", why);
    }
    int n = db_fail(L, db, rc, NULL);
    sqlite3_finalize(st);
    return n;
  }
  lua_settop(L, 3);
  lua_newtable(L);                        /* [db, sql, params, rows] */
  int cols = sqlite3_column_count(st);
  lua_Integer nrow = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    lua_createtable(L, 0, cols);
    for (int c = 0; c < cols; c++) {
      push_column(L, st, c);
      lua_setfield(L, -2, sqlite3_column_name(st, c));
    }
    lua_rawseti(L, 4, ++nrow);
  }
  if (rc != SQLITE_DONE) {
    int n = db_fail(L, db, rc, NULL);
    sqlite3_finalize(st);
    return n;
  }
  sqlite3_finalize(st);
  lua_pushinteger(L, sqlite3_changes64(db));
  return 2;
}

/* db:exec(sql) -> true | nil, err   (several statements, no parameters) */
static int db_exec(lua_State *L) {
  sqlite3 *db = db_check(L);
  const char *sql = luaL_checkstring(L, 2);
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) return db_fail(L, db, rc, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* db:busy_timeout(ms) -> true: how long a locked database is retried inside SQLite */
static int db_busy_timeout(lua_State *L) {
  sqlite3 *db = db_check(L);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0 && ms <= 3600000, 2, "must be 0..3600000 ms");
  sqlite3_busy_timeout(db, (int)ms);
  lua_pushboolean(L, 1);
  return 1;
}

/* db:in_transaction() -> bool */
static int db_in_transaction(lua_State *L) {
  lua_pushboolean(L, !sqlite3_get_autocommit(db_check(L)));
  return 1;
}

/* db:last_insert_rowid() -> integer */
static int db_last_insert_rowid(lua_State *L) {
  lua_pushinteger(L, sqlite3_last_insert_rowid(db_check(L)));
  return 1;
}

/* db:path() -> the file's absolute path */
static int db_path(lua_State *L) {
  const char *p = sqlite3_db_filename(db_check(L), "main");
  lua_pushstring(L, p ? p : "");
  return 1;
}

/* db:close() -> true. Also __close and __gc: idempotent. No statement is ever left open,
 * so sqlite3_close_v2 frees everything now. */
static int db_close(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  if (box->db != NULL) {
    sqlite3_close_v2(box->db);
    box->db = NULL;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int db_tostring(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  const char *p = box->db ? sqlite3_db_filename(box->db, "main") : NULL;
  lua_pushfstring(L, "sandlot.sqlite.db (%s)", box->db ? (p ? p : "") : "closed");
  return 1;
}

static const luaL_Reg db_methods[] = {
  {"query", db_query}, {"exec", db_exec}, {"busy_timeout", db_busy_timeout},
  {"in_transaction", db_in_transaction}, {"last_insert_rowid", db_last_insert_rowid},
  {"path", db_path}, {"close", db_close}, {NULL, NULL}
};
static const luaL_Reg db_meta[] = {
  {"__index", NULL}, {"__gc", db_close}, {"__close", db_close},
  {"__tostring", db_tostring}, {NULL, NULL}
};
static const luaL_Reg sqlite_funcs[] = {
  {"open", sqlite_open}, {NULL, NULL}
};

int luaopen_sandlot_core_sqlite(lua_State *L) {
  luaL_newmetatable(L, DB_MT);
  luaL_setfuncs(L, db_meta, 0);
  luaL_newlib(L, db_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, sqlite_funcs);
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "version");
  return 1;
}
