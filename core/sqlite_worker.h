/* sqlite_worker.h: a SQLite connection shared by the loop thread and one writer thread of its
 * own, and the jobs it runs (plain C values, no Lua), for core/sqlite.c. The writer thread runs
 * the statements a task queued, so fsync and a locked file wait there, never on the loop. */
#ifndef SANDLOT_SQLITE_WORKER_H
#define SANDLOT_SQLITE_WORKER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct {
  int type;                     /* SQLITE_INTEGER, _FLOAT, _TEXT, _BLOB or _NULL */
  sqlite3_int64 i;
  double d;
  char *s;                      /* TEXT and BLOB: malloc'd, n bytes (plus a NUL) */
  size_t n;
} SqlValue;

typedef struct {
  int index;                    /* ?NNN / the array part; 0 when named */
  char *name;                   /* :name, @name, $name without the sigil; NULL when indexed */
  SqlValue v;
} SqlParam;

typedef struct {
  char *sql;
  size_t sql_len;
  SqlParam *params;
  int nparams;
  bool must_change;             /* the job fails (unchanged) when the statement changed no row */
  /* results */
  int ncols;
  char **cols;                  /* column names */
  SqlValue *cells;              /* nrows * ncols, row-major */
  size_t nrows, cap;
  sqlite3_int64 changes;
} SqlStep;

typedef struct SqlJob {
  struct SqlJob *next;          /* queue / done list link (under the connection's q_lock) */
  bool write;                   /* in one write transaction, grouped with neighbouring writes */
  int nsteps;
  SqlStep *steps;
  int rc;                       /* SQLITE_OK, or the extended code of the failure */
  int failed_step;              /* 1-based; 0: BEGIN or COMMIT of the group */
  bool unchanged;               /* failed_step was must_change and changed no row */
  bool misuse;                  /* the SQL was not one statement: the caller raises */
  char *errmsg;
  /* loop thread only */
  SlTask *waiter;               /* NULL: detached (its task was cancelled), freed on delivery */
  struct SqlConn *conn;
} SqlJob;

typedef struct SqlConn {
  sqlite3 *db;
  char *path;
  uv_mutex_t db_lock;           /* held by whichever thread uses db */
  uv_mutex_t q_lock;            /* guards queue, done, stop */
  uv_cond_t q_cond;
  SqlJob *queue, **queue_tail, *done, **done_tail;
  bool stop, thread_started;
  uv_thread_t thread;
  uv_async_t async;             /* the writer's "jobs done" to the loop */
  int pending;                  /* loop thread: submitted, not yet delivered or dropped */
  int busy_ms;                  /* how long a locked file is retried (under db_lock) */
  uint64_t busy_start;
  unsigned seed;
  uint64_t jobs, transactions;  /* run so far, and write transactions begun (under db_lock) */
  SlHost *host;
} SqlConn;

/* A connection for db (owned from now on); false on out of memory (db untouched). */
bool sl_sql_conn_init(SqlConn *c, sqlite3 *db);
void sl_sql_set_busy(SqlConn *c, int ms);   /* the caller holds db_lock */
/* Runs the jobs linked by next, in order; runs of write jobs share one transaction (each in a
 * savepoint of its own). The caller holds db_lock. */
void sl_sql_exec(SqlConn *c, SqlJob *list);
/* Queues j for the writer thread (started on first use); false when it cannot start. */
bool sl_sql_submit(SqlConn *c, SqlJob *j);
/* Unlinks j if the writer has not taken it yet (then the caller frees it). */
bool sl_sql_unqueue(SqlConn *c, SqlJob *j);
SqlJob *sl_sql_take_done(SqlConn *c);
/* Lets the writer finish what is queued, then joins it. */
void sl_sql_stop(SqlConn *c);
void sl_sql_conn_destroy(SqlConn *c);       /* after sl_sql_stop: mutexes, path (not c, db) */
void sl_sql_job_free(SqlJob *j);

#endif
