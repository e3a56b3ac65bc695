/* sqlite_worker.c: the writer thread of a sandlot.core.sqlite connection and the executor of
 * its jobs. Mechanism only, no Lua: a job is a list of statements with their parameters as C
 * values; the results come back as C values. Write jobs queued while the writer was busy share
 * one BEGIN IMMEDIATE ... COMMIT (group commit: one fsync for all of them), each in a savepoint
 * so one job's failure leaves the others alone; no job completes before its COMMIT returned. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sqlite_worker.h"

/* ---------------------------------------------------------------- jobs */

static void value_clear(SqlValue *v) {
  free(v->s);
  v->s = NULL;
}

void sl_sql_job_free(SqlJob *j) {
  if (j == NULL) return;
  for (int i = 0; i < j->nsteps; i++) {
    SqlStep *s = &j->steps[i];
    free(s->sql);
    for (int k = 0; k < s->nparams; k++) {
      free(s->params[k].name);
      value_clear(&s->params[k].v);
    }
    free(s->params);
    for (int k = 0; k < s->ncols; k++) free(s->cols[k]);
    free(s->cols);
    for (size_t k = 0; k < s->nrows * (size_t)s->ncols; k++) value_clear(&s->cells[k]);
    free(s->cells);
  }
  free(j->steps);
  free(j->errmsg);
  free(j);
}

static char *dup_text(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) return NULL;
  if (n > 0) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static void job_fail(SqlJob *j, int rc, int step, const char *msg) {
  j->rc = rc;
  j->failed_step = step;
  free(j->errmsg);
  j->errmsg = msg ? dup_text(msg, strlen(msg)) : NULL;
}

/* ---------------------------------------------------------------- busy handler */

/* A locked file is retried here, in the writer thread: jittered backoff from 1 ms up to 32 ms,
 * so that several processes' writers do not wake in step, until busy_ms have passed. */
static int on_busy(void *arg, int count) {
  SqlConn *c = arg;
  uint64_t now = uv_hrtime();
  if (count == 0) c->busy_start = now;
  uint64_t waited_ms = (now - c->busy_start) / 1000000;
  if (waited_ms >= (uint64_t)c->busy_ms) return 0;
  unsigned pause_us = 1000u << (count < 5 ? count : 5);
  pause_us = pause_us / 2 + (unsigned)rand_r(&c->seed) % pause_us;
  uint64_t left_us = ((uint64_t)c->busy_ms - waited_ms) * 1000;
  if (pause_us > left_us) pause_us = (unsigned)left_us;
  struct timespec ts = { pause_us / 1000000, (long)(pause_us % 1000000) * 1000 };
  nanosleep(&ts, NULL);
  return 1;
}

void sl_sql_set_busy(SqlConn *c, int ms) {
  c->busy_ms = ms;
  sqlite3_busy_handler(c->db, on_busy, c);
}

bool sl_sql_conn_init(SqlConn *c, sqlite3 *db) {
  memset(c, 0, sizeof(*c));
  const char *p = sqlite3_db_filename(db, "main");
  c->path = dup_text(p ? p : "", p ? strlen(p) : 0);
  if (c->path == NULL) return false;
  if (uv_mutex_init(&c->db_lock) != 0) goto fail_path;
  if (uv_mutex_init(&c->q_lock) != 0) goto fail_db_lock;
  if (uv_cond_init(&c->q_cond) != 0) goto fail_q_lock;
  c->db = db;
  c->queue_tail = &c->queue;
  c->done_tail = &c->done;
  c->seed = (unsigned)uv_hrtime() ^ (unsigned)(uintptr_t)c;
  sl_sql_set_busy(c, 0);
  return true;
fail_q_lock:
  uv_mutex_destroy(&c->q_lock);
fail_db_lock:
  uv_mutex_destroy(&c->db_lock);
fail_path:
  free(c->path);
  return false;
}

void sl_sql_conn_destroy(SqlConn *c) {
  uv_cond_destroy(&c->q_cond);
  uv_mutex_destroy(&c->q_lock);
  uv_mutex_destroy(&c->db_lock);
  free(c->path);
  c->path = NULL;
}

/* ---------------------------------------------------------------- executing */

static int bind_value(sqlite3_stmt *st, int i, const SqlValue *v) {
  switch (v->type) {
  case SQLITE_INTEGER: return sqlite3_bind_int64(st, i, v->i);
  case SQLITE_FLOAT: return sqlite3_bind_double(st, i, v->d);
  case SQLITE_TEXT: return sqlite3_bind_text64(st, i, v->s, v->n, SQLITE_STATIC, SQLITE_UTF8);
  case SQLITE_BLOB: return sqlite3_bind_blob64(st, i, v->s, v->n, SQLITE_STATIC);
  default: return sqlite3_bind_null(st, i);
  }
}

/* Binds s's parameters: ?/?NNN by index, :name/@name/$name by name; absent ones stay NULL. */
static int bind_step(sqlite3_stmt *st, const SqlStep *s) {
  int n = sqlite3_bind_parameter_count(st);
  for (int k = 0; k < s->nparams; k++) {
    const SqlParam *p = &s->params[k];
    int i = p->index;
    if (p->name != NULL) {
      i = 0;
      for (int q = 1; q <= n && i == 0; q++) {
        const char *name = sqlite3_bind_parameter_name(st, q);
        if (name != NULL && name[0] != '?' && strcmp(name + 1, p->name) == 0) i = q;
      }
    } else {
      const char *name = sqlite3_bind_parameter_name(st, i);
      if (name != NULL && name[0] != '?') i = 0;  /* a named parameter is bound by name only */
    }
    if (i < 1 || i > n) continue;
    int rc = bind_value(st, i, &p->v);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

static bool take_column(SqlValue *v, sqlite3_stmt *st, int c) {
  memset(v, 0, sizeof(*v));
  v->type = sqlite3_column_type(st, c);
  switch (v->type) {
  case SQLITE_INTEGER: v->i = sqlite3_column_int64(st, c); break;
  case SQLITE_FLOAT: v->d = sqlite3_column_double(st, c); break;
  case SQLITE_TEXT: case SQLITE_BLOB: {
    const void *p = v->type == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, c)
                                           : sqlite3_column_blob(st, c);
    v->n = (size_t)sqlite3_column_bytes(st, c);
    v->s = dup_text(p ? p : "", p ? v->n : 0);
    if (v->s == NULL) return false;
    break;
  }
  default: v->type = SQLITE_NULL; break;
  }
  return true;
}

static bool keep_row(SqlStep *s, sqlite3_stmt *st) {
  if (s->nrows == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    SqlValue *cells = realloc(s->cells, cap * (size_t)s->ncols * sizeof(*cells));
    if (cells == NULL) return false;
    s->cells = cells;
    s->cap = cap;
  }
  SqlValue *row = s->cells + s->nrows * (size_t)s->ncols;
  for (int k = 0; k < s->ncols; k++) {
    if (!take_column(&row[k], st, k)) {
      for (int q = 0; q < k; q++) value_clear(&row[q]);
      return false;
    }
  }
  s->nrows++;
  return true;
}

/* One statement of j (1-based index i): prepare, bind, step through its rows, finalize. */
static bool run_step(SqlConn *c, SqlJob *j, int i) {
  SqlStep *s = &j->steps[i - 1];
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(c->db, s->sql, (int)s->sql_len, 0, &st, &tail);
  if (rc != SQLITE_OK) {
    job_fail(j, sqlite3_extended_errcode(c->db), i, sqlite3_errmsg(c->db));
    return false;
  }
  while (tail != NULL && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
    tail++;
  if (st == NULL || (tail != NULL && *tail != '\0')) {
    sqlite3_finalize(st);
    j->misuse = true;
    job_fail(j, SQLITE_MISUSE, i, st == NULL ? "sqlite: query: no statement in the SQL"
                                  : "sqlite: query takes one statement (use exec for several)");
    return false;
  }
  rc = bind_step(st, s);
  if (rc == SQLITE_OK) {
    s->ncols = sqlite3_column_count(st);
    if (s->ncols > 0 && (s->cols = calloc((size_t)s->ncols, sizeof(*s->cols))) == NULL)
      rc = SQLITE_NOMEM;
    for (int k = 0; k < s->ncols && rc == SQLITE_OK; k++) {
      const char *name = sqlite3_column_name(st, k);
      if ((s->cols[k] = dup_text(name ? name : "", name ? strlen(name) : 0)) == NULL)
        rc = SQLITE_NOMEM;
    }
  }
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && !keep_row(s, st)) rc = SQLITE_NOMEM;
  }
  if (rc != SQLITE_DONE) {
    if (rc == SQLITE_NOMEM) job_fail(j, SQLITE_NOMEM, i, sqlite3_errstr(SQLITE_NOMEM));
    else job_fail(j, sqlite3_extended_errcode(c->db), i, sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    return false;
  }
  sqlite3_finalize(st);
  s->changes = sqlite3_changes64(c->db);
  if (s->must_change && s->changes == 0) {
    j->unchanged = true;
    job_fail(j, SQLITE_OK, i, "changed no row");
    return false;
  }
  return true;
}

static bool run_steps(SqlConn *c, SqlJob *j) {
  for (int i = 1; i <= j->nsteps; i++)
    if (!run_step(c, j, i)) return false;
  return true;
}

static int exec_sql(SqlConn *c, const char *sql) {
  int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? rc : sqlite3_extended_errcode(c->db);
}

static bool job_failed(const SqlJob *j) { return j->rc != SQLITE_OK || j->unchanged; }

/* Fails the jobs [from, to) that had succeeded so far: the transaction they wrote in is gone. */
static void fail_group(SqlJob *from, SqlJob *to, int rc, const char *msg) {
  for (SqlJob *k = from; k != to; k = k->next)
    if (!job_failed(k)) job_fail(k, rc, 0, msg);
}

/* A run of write jobs starting at first, in one transaction; returns the first job after the
 * part of the run it handled (a job that lost the whole transaction ends the run early: the rest
 * start a new one). */
static SqlJob *run_group(SqlConn *c, SqlJob *first) {
  int rc = exec_sql(c, "BEGIN IMMEDIATE");
  c->transactions++;
  SqlJob *j = first;
  if (rc != SQLITE_OK) {                  /* busy past the deadline, I/O: none of them ran */
    const char *msg = sqlite3_errmsg(c->db);
    for (; j != NULL && j->write; j = j->next) job_fail(j, rc, 0, msg);
    return j;
  }
  for (; j != NULL && j->write; j = j->next) {
    if (exec_sql(c, "SAVEPOINT job") != SQLITE_OK) {
      job_fail(j, sqlite3_extended_errcode(c->db), 0, sqlite3_errmsg(c->db));
    } else if (run_steps(c, j)) {
      exec_sql(c, "RELEASE job");
      continue;
    }
    if (sqlite3_get_autocommit(c->db)) {  /* SQLite rolled the whole transaction back */
      fail_group(first, j, j->rc ? j->rc : SQLITE_ABORT, j->errmsg);
      return j->next;
    }
    exec_sql(c, "ROLLBACK TO job");
    exec_sql(c, "RELEASE job");
  }
  rc = exec_sql(c, "COMMIT");
  if (rc != SQLITE_OK) {                  /* full disk, I/O error: nothing of the run is kept */
    fail_group(first, j, rc, sqlite3_errmsg(c->db));
    if (!sqlite3_get_autocommit(c->db)) exec_sql(c, "ROLLBACK");
  }
  return j;
}

void sl_sql_exec(SqlConn *c, SqlJob *list) {
  SqlJob *j = list;
  for (SqlJob *k = list; k != NULL; k = k->next) c->jobs++;
  while (j != NULL) {
    if (j->write) {
      j = run_group(c, j);
    } else {
      run_steps(c, j);
      j = j->next;
    }
  }
}

/* ---------------------------------------------------------------- the writer thread */

static void writer_main(void *arg) {
  SqlConn *c = arg;
  uv_mutex_lock(&c->q_lock);
  for (;;) {
    while (c->queue == NULL && !c->stop) uv_cond_wait(&c->q_cond, &c->q_lock);
    if (c->queue == NULL) break;          /* stopping, and nothing is left */
    SqlJob *list = c->queue;
    c->queue = NULL;
    c->queue_tail = &c->queue;
    uv_mutex_unlock(&c->q_lock);
    uv_mutex_lock(&c->db_lock);
    sl_sql_exec(c, list);
    uv_mutex_unlock(&c->db_lock);
    uv_mutex_lock(&c->q_lock);
    *c->done_tail = list;
    while (*c->done_tail != NULL) c->done_tail = &(*c->done_tail)->next;
    uv_async_send(&c->async);
  }
  uv_mutex_unlock(&c->q_lock);
}

bool sl_sql_submit(SqlConn *c, SqlJob *j) {
  if (!c->thread_started) {
    if (uv_thread_create(&c->thread, writer_main, c) != 0) return false;
    c->thread_started = true;
  }
  j->next = NULL;
  uv_mutex_lock(&c->q_lock);
  *c->queue_tail = j;
  c->queue_tail = &j->next;
  uv_cond_signal(&c->q_cond);
  uv_mutex_unlock(&c->q_lock);
  return true;
}

bool sl_sql_unqueue(SqlConn *c, SqlJob *j) {
  bool found = false;
  uv_mutex_lock(&c->q_lock);
  for (SqlJob **p = &c->queue; *p != NULL; p = &(*p)->next) {
    if (*p == j) {
      *p = j->next;
      if (c->queue_tail == &j->next) c->queue_tail = p;
      found = true;
      break;
    }
  }
  uv_mutex_unlock(&c->q_lock);
  return found;
}

SqlJob *sl_sql_take_done(SqlConn *c) {
  uv_mutex_lock(&c->q_lock);
  SqlJob *list = c->done;
  c->done = NULL;
  c->done_tail = &c->done;
  uv_mutex_unlock(&c->q_lock);
  return list;
}

void sl_sql_stop(SqlConn *c) {
  if (!c->thread_started) return;
  uv_mutex_lock(&c->q_lock);
  c->stop = true;
  uv_cond_signal(&c->q_cond);
  uv_mutex_unlock(&c->q_lock);
  uv_thread_join(&c->thread);
  c->thread_started = false;
}
