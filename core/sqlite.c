/* sqlite.c: sandlot.core.sqlite, a thin binding of libsqlite3 for the ledger. Mechanism only:
 * open with flags, run SQL with bound parameters (prepare, bind, step, finalize in one call),
 * busy_timeout, and result codes mapped to sandlot.error codes. The schema, pragmas, retries
 * and wording live in lua/sandlot/ledger/. A connection is a userdata boxing an SqlConn
 * (core/sqlite_worker.c): db:run hands its statements to the connection's writer thread and
 * the task waits, so no fsync or locked file holds the loop; db:query and db:exec run here. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sqlite_worker.h"

#define DB_MT "sandlot.sqlite.db"

typedef struct { SqlConn *c; } DbBox;     /* c == NULL means closed */

static SqlConn *conn_check(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  if (box->c == NULL) luaL_error(L, "attempt to use a closed sandlot.sqlite.db");
  return box->c;
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

static void on_jobs_done(uv_async_t *a);

static void on_conn_closed(uv_handle_t *handle) {
  SqlConn *c = handle->data;
  sl_host_handle_done(c->host);
  free(c);
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
  SlHost *h = sl_host(L);
  DbBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->c = NULL;                          /* valid (closed) before anything can fail */
  luaL_setmetatable(L, DB_MT);
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;   /* one thread at a time: db_lock */
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
  SqlConn *c = malloc(sizeof(*c));
  if (c == NULL || !sl_sql_conn_init(c, db)) {
    free(c);
    sqlite3_close_v2(db);
    return luaL_error(L, "sandlot: out of memory");
  }
  c->host = h;
  if (uv_async_init(h->loop, &c->async, on_jobs_done) != 0) {
    sl_sql_conn_destroy(c);
    free(c);
    sqlite3_close_v2(db);
    return luaL_error(L, "sqlite: cannot create the writer's wake-up handle");
  }
  c->async.data = c;
  uv_unref((uv_handle_t *)&c->async);     /* referenced only while jobs are in flight */
  sl_host_handle_opened(h);
  sl_sql_set_busy(c, (int)busy);
  box->c = c;
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
 * One statement, run here (it holds the loop: for opening and migrating; db:run otherwise).
 * rows: a list of {column = value} (NULL columns absent); changes: rows the statement inserted,
 * updated or deleted. The statement is finalized before returning. */
static int db_query(lua_State *L) {
  SqlConn *c = conn_check(L);
  sqlite3 *db = c->db;
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  uv_mutex_lock(&c->db_lock);             /* the writer thread may hold db meanwhile */
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  const char *misuse = NULL;
  int n = 0;
  int rc = sqlite3_prepare_v3(db, sql, (int)len, 0, &st, &tail);
  if (rc != SQLITE_OK) {
    n = db_fail(L, db, rc, NULL);
    goto out;
  }
  if (st == NULL) {
    misuse = "sqlite: query: no statement in the SQL";
    goto out;
  }
  while (tail != NULL && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
    tail++;
  if (tail != NULL && *tail != '\0') {
    misuse = "sqlite: query takes one statement (use exec for several)";
    goto out;
  }
  rc = bind_all(L, st, 3, &misuse);
  if (rc != SQLITE_OK) {
    if (misuse == NULL) n = db_fail(L, db, rc, NULL);
    goto out;                             /* misuse: raise, without leaking the statement */
  }
  lua_settop(L, 3);
  lua_newtable(L);                        /* [db, sql, params, rows] */
  int cols = sqlite3_column_count(st);
  lua_Integer nrow = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    lua_createtable(L, 0, cols);
    for (int k = 0; k < cols; k++) {
      push_column(L, st, k);
      lua_setfield(L, -2, sqlite3_column_name(st, k));
    }
    lua_rawseti(L, 4, ++nrow);
  }
  if (rc != SQLITE_DONE) {
    n = db_fail(L, db, rc, NULL);
    goto out;
  }
  lua_pushinteger(L, sqlite3_changes64(db));
  n = 2;
out:
  sqlite3_finalize(st);
  uv_mutex_unlock(&c->db_lock);
  if (misuse != NULL) return luaL_error(L, "%s", misuse);
  return n;
}

/* db:exec(sql) -> true | nil, err   (several statements, no parameters; run here) */
static int db_exec(lua_State *L) {
  SqlConn *c = conn_check(L);
  const char *sql = luaL_checkstring(L, 2);
  uv_mutex_lock(&c->db_lock);
  int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
  int n = rc != SQLITE_OK ? db_fail(L, c->db, rc, NULL) : 0;
  uv_mutex_unlock(&c->db_lock);
  if (n) return n;
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- db:run */

/* The Lua value at v as a job parameter (no Lua call can raise here); false with *why for a
 * type that cannot be bound, or on out of memory. */
static bool take_value(lua_State *L, int v, SqlValue *out, const char **why) {
  memset(out, 0, sizeof(*out));
  switch (lua_type(L, v)) {
  case LUA_TNIL: out->type = SQLITE_NULL; return true;
  case LUA_TBOOLEAN: out->type = SQLITE_INTEGER; out->i = lua_toboolean(L, v); return true;
  case LUA_TNUMBER:
    if (lua_isinteger(L, v)) {
      out->type = SQLITE_INTEGER;
      out->i = lua_tointeger(L, v);
    } else {
      out->type = SQLITE_FLOAT;
      out->d = lua_tonumber(L, v);
    }
    return true;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, v, &n);
    out->type = SQLITE_TEXT;
    out->n = n;
    if ((out->s = malloc(n + 1)) == NULL) { *why = "sandlot: out of memory"; return false; }
    memcpy(out->s, s, n + 1);
    return true;
  }
  default:
    *why = "sqlite: a parameter is not nil, a boolean, a number or a string";
    return false;
  }
}

/* steps[i] = {sql, params, must_change = bool} at stack index idx -> s. */
static bool take_step(lua_State *L, int idx, SqlStep *s, const char **why) {
  if (lua_rawgeti(L, idx, 1) != LUA_TSTRING) {
    *why = "sqlite: run: each step is {sql, params, must_change = bool}";
    lua_pop(L, 1);
    return false;
  }
  size_t len;
  const char *sql = lua_tolstring(L, -1, &len);
  s->sql_len = len;
  s->sql = malloc(len + 1);
  if (s->sql != NULL) memcpy(s->sql, sql, len + 1);
  lua_pop(L, 1);
  if (s->sql == NULL) { *why = "sandlot: out of memory"; return false; }
  lua_pushliteral(L, "must_change");
  s->must_change = lua_rawget(L, idx) != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  int t = lua_rawgeti(L, idx, 2);
  if (t == LUA_TNIL) { lua_pop(L, 1); return true; }
  if (t != LUA_TTABLE) {
    *why = "sqlite: run: a step's params must be a table";
    lua_pop(L, 1);
    return false;
  }
  int p = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, p) != 0) { n++; lua_pop(L, 1); }
  if (n > 0 && (s->params = calloc((size_t)n, sizeof(*s->params))) == NULL) {
    *why = "sandlot: out of memory";
    lua_pop(L, 1);
    return false;
  }
  bool ok = true;
  lua_pushnil(L);
  while (ok && lua_next(L, p) != 0) {     /* [..., params, key, value] */
    SqlParam *q = &s->params[s->nparams];
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t kn;
      const char *k = lua_tolstring(L, -2, &kn);
      if ((q->name = malloc(kn + 1)) == NULL) { *why = "sandlot: out of memory"; ok = false; }
      else memcpy(q->name, k, kn + 1);
    } else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
               lua_tointeger(L, -2) <= 32766) {
      q->index = (int)lua_tointeger(L, -2);
    } else {
      lua_pop(L, 1);                      /* a key no parameter can have: ignored */
      continue;
    }
    if (ok) ok = take_value(L, lua_gettop(L), &q->v, why);
    if (ok || q->name != NULL) s->nparams++;   /* counted: freed with the job */
    lua_pop(L, 1);
  }
  lua_settop(L, p - 1);
  return ok;
}

/* The job for steps (a list at idx); NULL with *why on misuse or out of memory. */
static SqlJob *job_from_lua(lua_State *L, int idx, bool write, const char **why) {
  SqlJob *j = calloc(1, sizeof(*j));
  if (j == NULL) { *why = "sandlot: out of memory"; return NULL; }
  j->write = write;
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (n < 1 || n > 10000) {
    *why = "sqlite: run takes a list of 1 to 10000 steps";
    free(j);
    return NULL;
  }
  if ((j->steps = calloc((size_t)n, sizeof(*j->steps))) == NULL) {
    *why = "sandlot: out of memory";
    free(j);
    return NULL;
  }
  for (lua_Integer i = 1; i <= n; i++) {
    bool ok = lua_rawgeti(L, idx, i) == LUA_TTABLE;
    if (!ok) *why = "sqlite: run: each step is {sql, params, must_change = bool}";
    j->nsteps++;
    if (ok) ok = take_step(L, lua_gettop(L), &j->steps[i - 1], why);
    lua_pop(L, 1);
    if (!ok) {
      sl_sql_job_free(j);
      return NULL;
    }
  }
  return j;
}

static void push_value(lua_State *L, const SqlValue *v) {
  switch (v->type) {
  case SQLITE_INTEGER: lua_pushinteger(L, v->i); break;
  case SQLITE_FLOAT: lua_pushnumber(L, v->d); break;
  case SQLITE_TEXT: case SQLITE_BLOB: lua_pushlstring(L, v->s, v->n); break;
  default: lua_pushnil(L); break;
  }
}

/* Pushes a finished job's results onto L: results (a list of {rows = {{column = value}},
 * changes = n}, one per step), or nil, err, or false, message for misuse; returns how many. */
static int push_job(lua_State *L, const SqlConn *c, const SqlJob *j) {
  luaL_checkstack(L, 8, NULL);
  if (j->misuse) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, j->errmsg ? j->errmsg : "sqlite: misuse");
    return 2;
  }
  if (j->rc != SQLITE_OK || j->unchanged) {
    const char *what = j->errmsg ? j->errmsg : sqlite3_errstr(j->rc);
    lua_pushnil(L);
    if (j->unchanged)
      lua_pushfstring(L, "sqlite: %s: step %d %s", c->path, j->failed_step, what);
    else
      lua_pushfstring(L, "sqlite: %s: %s", c->path, what);
    sl_new_error(L, j->unchanged ? "not_found" : code_for(j->rc), lua_tostring(L, -1));
    lua_remove(L, -2);                    /* [nil, err] */
    lua_pushstring(L, c->path);
    lua_setfield(L, -2, "file");
    if (j->unchanged) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "unchanged");
    } else {
      lua_pushstring(L, sqlite3_errstr(j->rc));
      lua_setfield(L, -2, "sqlite");
      lua_pushinteger(L, j->rc);
      lua_setfield(L, -2, "sqlite_code");
    }
    lua_pushinteger(L, j->failed_step);
    lua_setfield(L, -2, "step");
    return 2;
  }
  lua_createtable(L, j->nsteps, 0);
  for (int i = 0; i < j->nsteps; i++) {
    const SqlStep *s = &j->steps[i];
    lua_createtable(L, 0, 2);
    lua_createtable(L, (int)s->nrows, 0);
    for (size_t r = 0; r < s->nrows; r++) {
      lua_createtable(L, 0, s->ncols);
      const SqlValue *row = s->cells + r * (size_t)s->ncols;
      for (int k = 0; k < s->ncols; k++) {
        if (row[k].type == SQLITE_NULL) continue;
        push_value(L, &row[k]);
        lua_setfield(L, -2, s->cols[k]);
      }
      lua_rawseti(L, -2, (lua_Integer)r + 1);
    }
    lua_setfield(L, -2, "rows");
    lua_pushinteger(L, s->changes);
    lua_setfield(L, -2, "changes");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* Delivers the jobs the writer finished: each waiting task gets its results (wake false: at
 * close from __gc, nobody can be waiting any more); then the job is freed. */
static void deliver(SqlConn *c, bool wake) {
  SqlJob *list = sl_sql_take_done(c);
  while (list != NULL) {
    SqlJob *j = list;
    list = j->next;
    c->pending--;
    if (j->waiter != NULL && wake) {
      SlTask *t = j->waiter;
      sl_wake(t, push_job(t->co, c, j));
    }
    sl_sql_job_free(j);
  }
  if (c->pending == 0 && !uv_is_closing((uv_handle_t *)&c->async))
    uv_unref((uv_handle_t *)&c->async);
}

static void on_jobs_done(uv_async_t *a) { deliver(a->data, true); }

/* A task waiting on a job was cancelled: a job the writer has not taken is dropped; one it
 * runs is detached (it still commits; nobody hears of it). */
static void run_cleanup(SlTask *t, void *data) {
  (void)t;
  SqlJob *j = data;
  SqlConn *c = j->conn;
  j->waiter = NULL;
  if (sl_sql_unqueue(c, j)) {
    c->pending--;
    sl_sql_job_free(j);
    if (c->pending == 0) uv_unref((uv_handle_t *)&c->async);
  }
}

static int run_results(lua_State *L, int n) {
  if (n == 2 && lua_isboolean(L, -2) && !lua_toboolean(L, -2))
    return luaL_error(L, "%s", lua_tostring(L, -1));
  return n;
}

static int run_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  return run_results(L, lua_gettop(L) - (int)base);
}

/* db:run(steps [, opts]) -> results | nil, err
 * steps: a list of {sql, params, must_change = bool}, one statement each; opts.write: run them
 * in one write transaction (BEGIN IMMEDIATE), which the writer thread shares with the other
 * writes queued meanwhile (one commit for all; each keeps its own savepoint). results: per
 * step {rows = {{column = value}}, changes = n}. A must_change step that changed no row fails
 * the job with err.code "not_found", err.unchanged and err.step. In a task that can wait the
 * statements run on the writer thread while the task waits; elsewhere they run here. */
static int db_run(lua_State *L) {
  SqlConn *c = conn_check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  bool write = false;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "write");
    write = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  const char *why = NULL;
  SqlJob *j = job_from_lua(L, 2, write, &why);
  if (j == NULL) return luaL_error(L, "%s", why);
  j->conn = c;
  SlTask *t = sl_task_of(L);
  bool wait = t != NULL ? lua_isyieldable(L) && t->cancel_code == NULL
                        : c->host->running == 0 && c->host->loop_depth == 0;
  SlTask sync;
  if (wait && (t = sl_wait_begin(L, &sync)) != NULL && sl_sql_submit(c, j)) {
    j->waiter = t;
    if (c->pending++ == 0) uv_ref((uv_handle_t *)&c->async);
    sl_wait_set_cleanup(t, run_cleanup, j);
    return sl_wait(L, t, (lua_KContext)lua_gettop(L), run_k);
  }
  lua_settop(L, 2);                       /* a cancelled task, or no writer thread: run here */
  uv_mutex_lock(&c->db_lock);
  sl_sql_exec(c, j);
  uv_mutex_unlock(&c->db_lock);
  int n = push_job(L, c, j);
  sl_sql_job_free(j);
  return run_results(L, n);
}

/* ---------------------------------------------------------------- the rest */

/* db:busy_timeout(ms) -> true: how long a locked database is retried (on the writer thread for
 * db:run in a task, else here) */
static int db_busy_timeout(lua_State *L) {
  SqlConn *c = conn_check(L);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_argcheck(L, ms >= 0 && ms <= 3600000, 2, "must be 0..3600000 ms");
  uv_mutex_lock(&c->db_lock);
  sl_sql_set_busy(c, (int)ms);
  uv_mutex_unlock(&c->db_lock);
  lua_pushboolean(L, 1);
  return 1;
}

/* db:in_transaction() -> bool   (a transaction of db:query / db:exec) */
static int db_in_transaction(lua_State *L) {
  SqlConn *c = conn_check(L);
  uv_mutex_lock(&c->db_lock);
  bool in = !sqlite3_get_autocommit(c->db);
  uv_mutex_unlock(&c->db_lock);
  lua_pushboolean(L, in);
  return 1;
}

/* db:last_insert_rowid() -> integer */
static int db_last_insert_rowid(lua_State *L) {
  SqlConn *c = conn_check(L);
  uv_mutex_lock(&c->db_lock);
  sqlite3_int64 id = sqlite3_last_insert_rowid(c->db);
  uv_mutex_unlock(&c->db_lock);
  lua_pushinteger(L, id);
  return 1;
}

/* db:stats() -> {jobs = n, transactions = n}: db:run jobs run so far, and the write
 * transactions they took (fewer than the write jobs when writes were grouped) */
static int db_stats(lua_State *L) {
  SqlConn *c = conn_check(L);
  uv_mutex_lock(&c->db_lock);
  uint64_t jobs = c->jobs, tx = c->transactions;
  uv_mutex_unlock(&c->db_lock);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)jobs);
  lua_setfield(L, -2, "jobs");
  lua_pushinteger(L, (lua_Integer)tx);
  lua_setfield(L, -2, "transactions");
  return 1;
}

/* db:path() -> the file's absolute path */
static int db_path(lua_State *L) {
  lua_pushstring(L, conn_check(L)->path);
  return 1;
}

/* Lets the writer finish what is queued and joins it, delivers its last results (not from
 * __gc), closes the database and then the wake-up handle, whose close callback frees c. */
static void conn_release(SqlConn *c, bool wake) {
  sl_sql_stop(c);
  deliver(c, wake);
  sqlite3_close_v2(c->db);                /* no statement outlives a call: frees everything */
  c->db = NULL;
  sl_sql_conn_destroy(c);
  uv_close((uv_handle_t *)&c->async, on_conn_closed);
}

/* db:close() -> true. Also __close and __gc: idempotent. Waits for the writer thread to finish
 * the statements queued before. */
static int db_close(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  if (box->c != NULL) {
    SqlConn *c = box->c;
    box->c = NULL;
    conn_release(c, true);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int db_gc(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  if (box->c != NULL) {
    SqlConn *c = box->c;
    box->c = NULL;
    conn_release(c, false);
  }
  return 0;
}

static int db_tostring(lua_State *L) {
  DbBox *box = luaL_checkudata(L, 1, DB_MT);
  lua_pushfstring(L, "sandlot.sqlite.db (%s)", box->c ? box->c->path : "closed");
  return 1;
}

static const luaL_Reg db_methods[] = {
  {"query", db_query}, {"exec", db_exec}, {"run", db_run}, {"busy_timeout", db_busy_timeout},
  {"in_transaction", db_in_transaction}, {"last_insert_rowid", db_last_insert_rowid},
  {"path", db_path}, {"stats", db_stats}, {"close", db_close}, {NULL, NULL}
};
static const luaL_Reg db_meta[] = {
  {"__index", NULL}, {"__gc", db_gc}, {"__close", db_close},
  {"__tostring", db_tostring}, {NULL, NULL}
};
static const luaL_Reg sqlite_funcs[] = {
  {"open", sqlite_open}, {NULL, NULL}
};

int luaopen_sandlot_core_sqlite(lua_State *L) {
  sl_host(L);
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
