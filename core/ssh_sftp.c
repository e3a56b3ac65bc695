/* ssh_sftp.c: SFTP operations on a session: stat, ls, mkdir, rm, rename, get (to a string, or
 * to a file through a threadpool double buffer) and put. One SFTP subsystem is pooled. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ssh.h"

/* ---------------------------------------------------------------- SFTP */

enum { SF_STAT, SF_LSTAT, SF_LS, SF_MKDIR, SF_RMDIR, SF_UNLINK, SF_RENAME, SF_GET, SF_PUT,
       SF_REALPATH };
#define REALPATH_MAX 4096
enum { SS_ACQUIRE, SS_OPEN, SS_RUN, SS_CLOSE, SS_RELEASE };

typedef struct {
  char *name;
  LIBSSH2_SFTP_ATTRIBUTES attrs;
} Entry;

typedef struct {
  Op op;
  int kind, stage;
  Sftp *sf;
  LIBSSH2_SFTP_HANDLE *fh;
  char *path, *path2;
  long mode;
  int local_fd;                            /* get/put with a local file, else -1 */
  char *buf;                               /* get: the data (to a string); put: the chunk */
  size_t buf_len, buf_off, buf_cap, limit;
  bool src_eof, ok, closing_failed;
  /* get to a file: the loop fills buf while a threadpool write drains wbuf (the buffers swap),
   * so a disk that blocks (dirty page throttling) never stalls the connection */
  SlHost *host;
  uv_fs_t wreq;
  char *wbuf;
  size_t wlen, woff;
  int werr;                                /* errno of a failed local write, 0 = none */
  bool writing, orphaned, rx_eof;          /* orphaned: freed by the write's callback */
  uint64_t total;
  LIBSSH2_SFTP_ATTRIBUTES attrs;
  Entry *entries;
  size_t n_entries, cap_entries;
  SlError err;
  bool failed;
  bool midcall;                            /* the last libssh2 call on sf said EAGAIN */
  bool checking;                           /* realpath failed: a stat asks for its status */
  bool shutting;                           /* SS_RELEASE began libssh2_sftp_shutdown */
  char why[128];                           /* realpath: what libssh2 said when it failed */
} SftpOp;

static const char *fx_code(unsigned long fx) {
  switch (fx) {
  case LIBSSH2_FX_NO_SUCH_FILE: case LIBSSH2_FX_NO_SUCH_PATH: return "not_found";
  case LIBSSH2_FX_PERMISSION_DENIED: case LIBSSH2_FX_WRITE_PROTECT: return "permission_denied";
  case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "already_exists";
  case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: case LIBSSH2_FX_QUOTA_EXCEEDED:
    return "quota_exceeded";
  case LIBSSH2_FX_OP_UNSUPPORTED: return "not_supported";
  case LIBSSH2_FX_NOT_A_DIRECTORY: case LIBSSH2_FX_INVALID_FILENAME: case LIBSSH2_FX_LINK_LOOP:
    return "invalid_input";
  case LIBSSH2_FX_NO_CONNECTION: case LIBSSH2_FX_CONNECTION_LOST: return "unavailable";
  default: return "io_error";
  }
}

static const char *fx_text(unsigned long fx) {
  switch (fx) {
  case LIBSSH2_FX_EOF: return "end of file";
  case LIBSSH2_FX_NO_SUCH_FILE: return "no such file";
  case LIBSSH2_FX_PERMISSION_DENIED: return "permission denied";
  case LIBSSH2_FX_FAILURE: return "failure (exists, not empty, or not allowed)";
  case LIBSSH2_FX_NO_SUCH_PATH: return "no such path";
  case LIBSSH2_FX_FILE_ALREADY_EXISTS: return "already exists";
  case LIBSSH2_FX_WRITE_PROTECT: return "write protected";
  case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return "no space left";
  case LIBSSH2_FX_QUOTA_EXCEEDED: return "quota exceeded";
  case LIBSSH2_FX_DIR_NOT_EMPTY: return "directory not empty";
  case LIBSSH2_FX_NOT_A_DIRECTORY: return "not a directory";
  case LIBSSH2_FX_OP_UNSUPPORTED: return "operation not supported";
  default: return "SFTP error";
  }
}

static void sftp_op_free(SftpOp *o) {
  if (o->writing) {                        /* the threadpool still holds wbuf and the fd */
    o->orphaned = true;
    return;
  }
  free(o->wbuf);
  if (o->local_fd >= 0) close(o->local_fd);
  for (size_t i = 0; i < o->n_entries; i++) free(o->entries[i].name);
  free(o->entries);
  free(o->buf);
  free(o->path);
  free(o->path2);
  free(o);
}

/* An SFTP call failed with rc: a protocol status becomes the op's error, a transport error
 * ends the session. Returns the step result. */
static int sftp_error(SftpOp *o, int rc, const char *what) {
  Session *s = o->op.s;
  if (ssh_rc_fatal(rc)) return STEP_FATAL;
  if (!o->failed) {
    o->failed = true;
    if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && o->sf != NULL) {
      unsigned long fx = libssh2_sftp_last_error(o->sf->sftp);
      sl_err_set(&o->err, fx_code(fx), "%s %s: %s", what, o->path, fx_text(fx));
    } else {
      sl_err_set(&o->err, "io_error", "%s %s: %s", what, o->path, ssh_msg(s));
    }
  }
  o->stage = o->fh != NULL ? SS_CLOSE : SS_RELEASE;
  return STEP_PROGRESS;
}

/* Notes how a libssh2 SFTP call in SS_RUN returned. One that said EAGAIN keeps its half-done
 * request in the LIBSSH2_SFTP (one state per kind of call: symlink_state and
 * symlink_request_id in libssh2 1.10's sftp_symlink, stat_state, readdir_state, ...), and the
 * next call of that kind resumes it whatever its arguments, so a channel left mid-call is
 * never pooled (SS_RELEASE): its next user would take this request's answer for its own. */
static ssize_t sftp_rc(SftpOp *o, ssize_t rc) {
  o->midcall = rc == LIBSSH2_ERROR_EAGAIN;
  return rc;
}

/* realpath failed with a status, or "succeeded" with an empty name. Debian's libssh2
 * 1.10.0-3+deb12u1 backports the CVE-2025-15661 rewrite of sftp_symlink (upstream 2dae3024,
 * #1717), which takes an SSH_FXP_STATUS's code from its request id field: the status left for
 * libssh2_sftp_last_error is the request's number on the channel (6 and 7 read as "no
 * connection" and "connection lost"; 0 passes as FX_OK, a success with no name). Upstream
 * fixed it in 4ed26f57 (#1731, "Fix sftp_symlink when getting SSH_FXP_STATUS response"),
 * which the package lacks. So the status comes from a stat of the same path, which the server
 * resolves the same way and whose status libssh2 reads right (sftp_stat: data + 5); a path
 * that stats fine yet did not resolve is an io_error with libssh2's words. */
static int realpath_check(SftpOp *o) {
  int rc = (int)sftp_rc(o, libssh2_sftp_stat_ex(o->sf->sftp, o->path,
                                                (unsigned)strlen(o->path), LIBSSH2_SFTP_STAT,
                                                &o->attrs));
  if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
  if (rc != 0) return sftp_error(o, rc, "realpath");
  o->failed = true;
  sl_err_set(&o->err, "io_error", "realpath %s: the server did not resolve it (%s)", o->path,
             o->why);
  o->stage = SS_RELEASE;
  return STEP_PROGRESS;
}

/* [t] -> [t]: sets type ("file", "directory", "symlink" or "other"), size, mode and mtime */
static void set_attrs(lua_State *L, const LIBSSH2_SFTP_ATTRIBUTES *a) {
  const char *type = "other";
  if (LIBSSH2_SFTP_S_ISREG(a->permissions)) type = "file";
  else if (LIBSSH2_SFTP_S_ISDIR(a->permissions)) type = "directory";
  else if (LIBSSH2_SFTP_S_ISLNK(a->permissions)) type = "symlink";
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)a->filesize);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)(a->permissions & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)a->mtime);
  lua_setfield(L, -2, "mtime");
}

static void sftp_deliver(SftpOp *o) {
  SlTask *t = o->op.waiter;
  o->op.waiter = NULL;
  if (t == NULL) return;
  lua_State *L = t->co;
  luaL_checkstack(L, 8, NULL);
  if (o->failed) {
    ssh_wake_error(t, &o->err);
    return;
  }
  switch (o->kind) {
  case SF_STAT: case SF_LSTAT:
    lua_createtable(L, 0, 4);
    set_attrs(L, &o->attrs);
    sl_wake(t, 1);
    return;
  case SF_LS:
    lua_createtable(L, (int)o->n_entries, 0);
    for (size_t i = 0; i < o->n_entries; i++) {
      lua_createtable(L, 0, 5);
      lua_pushstring(L, o->entries[i].name);
      lua_setfield(L, -2, "name");
      set_attrs(L, &o->entries[i].attrs);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    sl_wake(t, 1);
    return;
  case SF_GET:
    if (o->local_fd < 0) lua_pushlstring(L, o->buf ? o->buf : "", o->buf_len);
    else lua_pushinteger(L, (lua_Integer)o->total);
    sl_wake(t, 1);
    return;
  case SF_PUT:
    lua_pushinteger(L, (lua_Integer)o->total);
    sl_wake(t, 1);
    return;
  case SF_REALPATH:
    lua_pushlstring(L, o->buf, o->buf_len);
    sl_wake(t, 1);
    return;
  default:
    lua_pushboolean(L, 1);
    sl_wake(t, 1);
    return;
  }
}

static void on_local_written(uv_fs_t *req);

static void local_write_start(SftpOp *o) {
  uv_buf_t b = uv_buf_init(o->wbuf + o->woff, (unsigned)(o->wlen - o->woff));
  o->wreq.data = o;
  int rc = uv_fs_write(o->host->loop, &o->wreq, o->local_fd, &b, 1, -1, on_local_written);
  if (rc < 0) {
    o->werr = -rc;
    return;
  }
  o->writing = true;
  sl_host_handle_opened(o->host);          /* the host drains it before closing the loop */
}

static void on_local_written(uv_fs_t *req) {
  SftpOp *o = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  o->writing = false;
  sl_host_handle_done(o->host);
  if (o->orphaned) {
    sftp_op_free(o);
    return;
  }
  if (r < 0 && r != UV_EINTR) o->werr = (int)-r;
  else if (r == 0) o->werr = EIO;
  else if (r > 0) o->woff += (size_t)r;
  if (o->werr == 0 && o->woff < o->wlen) local_write_start(o);   /* a short write */
  if (!o->writing) ssh_kick(o->op.s);
}

/* Hands what buf holds to the threadpool when no write is in flight. */
static void local_flush(SftpOp *o) {
  if (o->writing || o->buf_len == 0 || o->werr != 0) return;
  char *t = o->wbuf;
  o->wbuf = o->buf;
  o->wlen = o->buf_len;
  o->woff = 0;
  o->buf = t;
  o->buf_len = 0;
  local_write_start(o);
}

/* get to a file: reads while buf has room for a full SFTP_BUF read (libssh2 sizes its
 * read-ahead by the buffer it is given), flushing whenever the disk is free. */
static int get_to_file(SftpOp *o) {
  bool progress = false;
  o->op.paused = false;
  for (;;) {
    if (o->werr != 0) {
      o->failed = true;
      sl_err_set(&o->err, sl_code_for_errno(o->werr), "write local file: %s",
                 strerror(o->werr));
      o->stage = SS_CLOSE;
      return STEP_PROGRESS;
    }
    if (o->rx_eof) {
      local_flush(o);
      if (o->werr != 0) continue;
      if (o->writing) {
        o->op.paused = true;               /* nothing more to read: wait for the disk */
        return progress ? STEP_PROGRESS : STEP_AGAIN;
      }
      o->stage = SS_CLOSE;
      return STEP_PROGRESS;
    }
    if (o->buf_cap - o->buf_len < SFTP_BUF) {
      local_flush(o);
      if (o->writing && o->buf_cap - o->buf_len < SFTP_BUF) {
        o->op.paused = true;               /* the write's callback kicks the pump */
        return progress ? STEP_PROGRESS : STEP_AGAIN;
      }
      continue;
    }
    ssize_t n = sftp_rc(o, libssh2_sftp_read(o->fh, o->buf + o->buf_len,
                                             o->buf_cap - o->buf_len));
    if (n == LIBSSH2_ERROR_EAGAIN) {
      local_flush(o);
      return (progress || o->werr != 0) ? STEP_PROGRESS : STEP_AGAIN;
    }
    if (n < 0) return sftp_error(o, (int)n, "read");
    progress = true;
    if (n == 0) {
      o->rx_eof = true;
      continue;
    }
    o->total += (uint64_t)n;
    o->buf_len += (size_t)n;
  }
}

static int sftp_run(SftpOp *o) {
  LIBSSH2_SFTP *sftp = o->sf->sftp;
  int rc;
  unsigned plen = (unsigned)strlen(o->path);
  switch (o->kind) {
  case SF_STAT: case SF_LSTAT:
    rc = (int)sftp_rc(o, libssh2_sftp_stat_ex(sftp, o->path, plen,
                                               o->kind == SF_STAT ? LIBSSH2_SFTP_STAT
                                                                  : LIBSSH2_SFTP_LSTAT,
                                               &o->attrs));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "stat");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_MKDIR:
    rc = (int)sftp_rc(o, libssh2_sftp_mkdir_ex(sftp, o->path, plen, o->mode));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "mkdir");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_RMDIR:
    rc = (int)sftp_rc(o, libssh2_sftp_rmdir_ex(sftp, o->path, plen));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "rmdir");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_UNLINK:
    rc = (int)sftp_rc(o, libssh2_sftp_unlink_ex(sftp, o->path, plen));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "rm");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_RENAME:
    rc = (int)sftp_rc(o, libssh2_sftp_rename_ex(sftp, o->path, plen, o->path2,
                                                 (unsigned)strlen(o->path2),
                                                 LIBSSH2_SFTP_RENAME_OVERWRITE |
                                                 LIBSSH2_SFTP_RENAME_ATOMIC |
                                                 LIBSSH2_SFTP_RENAME_NATIVE));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc != 0) return sftp_error(o, rc, "rename");
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_REALPATH:                        /* the server resolves every symlink */
    if (o->checking) return realpath_check(o);
    rc = (int)sftp_rc(o, libssh2_sftp_symlink_ex(sftp, o->path, plen, o->buf,
                                                  REALPATH_MAX - 1, LIBSSH2_SFTP_REALPATH));
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    if (rc == 0 || rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {   /* the status: realpath_check */
      snprintf(o->why, sizeof(o->why), "%s", rc == 0 ? "an empty name" : ssh_msg(o->op.s));
      o->checking = true;
      return STEP_PROGRESS;
    }
    if (rc < 0) return sftp_error(o, rc, "realpath");
    o->buf_len = (size_t)rc;
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  case SF_LS: {
    char name[1024];
    bool progress = false;
    for (;;) {
      LIBSSH2_SFTP_ATTRIBUTES attrs;
      rc = (int)sftp_rc(o, libssh2_sftp_readdir_ex(o->fh, name, sizeof(name), NULL, 0,
                                                    &attrs));
      if (rc == LIBSSH2_ERROR_EAGAIN) return progress ? STEP_PROGRESS : STEP_AGAIN;
      if (rc < 0) return sftp_error(o, rc, "ls");
      if (rc == 0) break;
      progress = true;
      if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
      if (o->n_entries == o->cap_entries) {
        size_t nc = o->cap_entries ? o->cap_entries * 2 : 32;
        Entry *ne = realloc(o->entries, nc * sizeof(*ne));
        if (ne == NULL) break;
        o->entries = ne;
        o->cap_entries = nc;
      }
      o->entries[o->n_entries].name = strndup(name, (size_t)rc);
      o->entries[o->n_entries].attrs = attrs;
      o->n_entries++;
    }
    o->stage = SS_CLOSE;
    return STEP_PROGRESS;
  }
  case SF_GET: {
    if (o->local_fd >= 0) return get_to_file(o);
    bool progress = false;
    for (;;) {
      if (o->buf_cap - o->buf_len < READ_CHUNK) {
        size_t nc = o->buf_cap ? o->buf_cap * 2 : 1u << 20;
        char *nb = realloc(o->buf, nc);
        if (nb == NULL) {
          o->failed = true;
          sl_err_set(&o->err, "internal", "out of memory reading %s", o->path);
          o->stage = SS_CLOSE;
          return STEP_PROGRESS;
        }
        o->buf = nb;
        o->buf_cap = nc;
      }
      ssize_t n = sftp_rc(o, libssh2_sftp_read(o->fh, o->buf + o->buf_len,
                                               o->buf_cap - o->buf_len));
      if (n == LIBSSH2_ERROR_EAGAIN) return progress ? STEP_PROGRESS : STEP_AGAIN;
      if (n < 0) return sftp_error(o, (int)n, "read");
      if (n == 0) break;
      progress = true;
      o->total += (uint64_t)n;
      o->buf_len += (size_t)n;
      if (o->limit > 0 && o->buf_len > o->limit) {
        o->failed = true;
        sl_err_set(&o->err, "invalid_input", "%s is larger than max_size (%zu bytes); "
                   "read it to a local file instead", o->path, o->limit);
        o->stage = SS_CLOSE;
        return STEP_PROGRESS;
      }
    }
    o->stage = SS_CLOSE;
    return STEP_PROGRESS;
  }
  default: {                               /* SF_PUT */
    bool progress = false;
    for (;;) {
      if (o->buf_off == o->buf_len && o->local_fd >= 0 && !o->src_eof) {
        ssize_t r;
        do r = read(o->local_fd, o->buf, o->buf_cap);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
          o->failed = true;
          sl_err_set(&o->err, sl_code_for_errno(errno), "read local file: %s",
                     strerror(errno));
          o->stage = SS_CLOSE;
          return STEP_PROGRESS;
        }
        o->buf_off = 0;
        o->buf_len = (size_t)r;
        if (r == 0) o->src_eof = true;
      }
      if (o->buf_off == o->buf_len) break;
      ssize_t n = sftp_rc(o, libssh2_sftp_write(o->fh, o->buf + o->buf_off,
                                                o->buf_len - o->buf_off));
      if (n == LIBSSH2_ERROR_EAGAIN) return progress ? STEP_PROGRESS : STEP_AGAIN;
      if (n < 0) return sftp_error(o, (int)n, "write");
      progress = true;
      o->buf_off += (size_t)n;
      o->total += (uint64_t)n;
    }
    o->stage = SS_CLOSE;
    return STEP_PROGRESS;
  }
  }
}

static int sftp_step(Op *op) {
  SftpOp *o = (SftpOp *)op;
  Session *s = op->s;
  int rc;
  if (o->stage != SS_RUN) op->paused = false;   /* only get_to_file pauses, inside SS_RUN */
  switch (o->stage) {
  case SS_ACQUIRE:
    if (op->waiter == NULL && s->opener != op) {  /* cancelled before it started */
      ssh_op_unlink(op);
      sftp_op_free(o);
      return STEP_DONE;
    }
    if (s->idle_sftp != NULL && s->opener != op) {
      o->sf = s->idle_sftp;
      s->idle_sftp = o->sf->next;
      o->sf->next = NULL;
    } else {
      if (s->opener != NULL && s->opener != op) return STEP_AGAIN;
      if (s->opener == NULL && s->channels >= s->max_channels) return STEP_AGAIN;
      s->opener = op;
      LIBSSH2_SFTP *sftp = libssh2_sftp_init(s->ssh);
      if (sftp == NULL) {
        rc = libssh2_session_last_errno(s->ssh);
        if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
        s->opener = NULL;
        if (ssh_rc_fatal(rc)) return STEP_FATAL;
        o->failed = true;
        sl_err_set(&o->err, "not_supported", "the server has no SFTP subsystem: %s",
                   ssh_msg(s));
        o->stage = SS_RELEASE;
        return STEP_PROGRESS;
      }
      s->opener = NULL;
      s->channels++;
      o->sf = calloc(1, sizeof(*o->sf));
      if (o->sf == NULL) {
        libssh2_sftp_shutdown(sftp);
        s->channels--;
        o->failed = true;
        sl_err_set(&o->err, "internal", "%s", "out of memory");
        o->stage = SS_RELEASE;
        return STEP_PROGRESS;
      }
      o->sf->sftp = sftp;
    }
    o->stage = (o->kind == SF_LS || o->kind == SF_GET || o->kind == SF_PUT) ? SS_OPEN : SS_RUN;
    return STEP_PROGRESS;
  case SS_OPEN: {
    unsigned long flags = o->kind == SF_PUT
        ? LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC : LIBSSH2_FXF_READ;
    o->fh = libssh2_sftp_open_ex(o->sf->sftp, o->path, (unsigned)strlen(o->path), flags,
                                 o->mode, o->kind == SF_LS ? LIBSSH2_SFTP_OPENDIR
                                                           : LIBSSH2_SFTP_OPENFILE);
    if (o->fh == NULL) {
      rc = libssh2_session_last_errno(s->ssh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      return sftp_error(o, rc, o->kind == SF_LS ? "ls" : "open");
    }
    o->stage = SS_RUN;
    return STEP_PROGRESS;
  }
  case SS_RUN:
    /* cancelled: stop, unless this op's request is half sent (only it may finish sending, and
     * the channel close of SS_RELEASE could not go out before); o->midcall: see sftp_rc */
    if (op->waiter == NULL && !o->failed && s->send_owner != op) {
      o->failed = true;
      sl_err_set(&o->err, "cancelled", "%s", "cancelled");
      o->stage = o->fh != NULL ? SS_CLOSE : SS_RELEASE;
      return STEP_PROGRESS;
    }
    return sftp_run(o);
  case SS_CLOSE:
    rc = libssh2_sftp_close_handle(o->fh);
    if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
    o->fh = NULL;
    if (rc != 0) {
      if (ssh_rc_fatal(rc)) return STEP_FATAL;
      if (!o->failed && o->kind == SF_PUT) return sftp_error(o, rc, "close");
    }
    o->stage = SS_RELEASE;
    return STEP_PROGRESS;
  default:                                 /* SS_RELEASE */
    if (o->sf != NULL) {
      if (s->idle_sftp == NULL && !o->midcall && !o->shutting) {  /* unless left mid-call */
        s->idle_sftp = o->sf;
        o->sf = NULL;
      } else {
        /* once begun, the shutdown must finish: the pool filling and emptying meanwhile
         * would otherwise hand on a channel that libssh2 already closed */
        o->shutting = true;
        rc = libssh2_sftp_shutdown(o->sf->sftp);
        if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
        free(o->sf);
        o->sf = NULL;
        s->channels--;
      }
    }
    ssh_op_unlink(op);
    sftp_deliver(o);
    sftp_op_free(o);
    return STEP_DONE;
  }
}

static void sftp_abort(Op *op, const SlError *e) {
  SftpOp *o = (SftpOp *)op;
  free(o->sf);                             /* libssh2's part goes with the session arena */
  o->sf = NULL;
  o->fh = NULL;
  ssh_wake_error(op->waiter, e);
  op->waiter = NULL;
  sftp_op_free(o);
}

static bool sftp_deadline(Op *op) {
  (void)op;
  return false;
}

static const OpVt sftp_vt = {sftp_step, sftp_abort, sftp_deadline};

/* session:sftp(kind, path [, opts]) -> value | nil, err
 *   "stat"/"lstat" -> {type, size, mode, mtime}; "ls" -> {entries}; "mkdir" (opts.mode),
 *   "rmdir", "rm", "rename" (opts.to) -> true; "get" (opts.file: local path, else the data as
 *   a string within opts.max_size) -> data | bytes; "put" (opts.data or opts.file, opts.mode)
 *   -> bytes; "realpath" -> the canonical path (symlinks resolved by the server). File
 *   transfers stream through a 2 MB buffer. */
int ssh_session_sftp(lua_State *L) {
  static const char *const kinds[] = {"stat", "lstat", "ls", "mkdir", "rmdir", "rm", "rename",
                                      "get", "put", "realpath", NULL};
  Session *s = ssh_sess_check(L, 1);
  int kind = luaL_checkoption(L, 2, NULL, kinds);
  const char *path = luaL_checkstring(L, 3);
  if (!lua_istable(L, 4)) {
    lua_settop(L, 3);
    lua_newtable(L);
  }
  lua_settop(L, 4);
  if (ssh_dead(s)) {
    sl_push_error(L, &s->death);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "retry_safe");
    return 2;
  }
  SftpOp *o = calloc(1, sizeof(*o));
  if (o == NULL) return luaL_error(L, "out of memory");
  o->op.vt = &sftp_vt;
  o->op.s = s;
  o->kind = kind;
  o->local_fd = -1;
  o->path = strdup(path);
  o->mode = (long)ssh_opt_number(L, 4, "mode", kind == SF_MKDIR ? 0755 : 0644);
  o->limit = (size_t)ssh_opt_number(L, 4, "max_size", 0);
  if (kind == SF_RENAME) {
    lua_getfield(L, 4, "to");
    const char *to = lua_tostring(L, -1);
    if (to == NULL) {
      sftp_op_free(o);
      return luaL_error(L, "ssh sftp rename: opts.to must be a string");
    }
    o->path2 = strdup(to);
    lua_pop(L, 1);
  }
  lua_getfield(L, 4, "file");
  const char *file = lua_tostring(L, -1);
  if (file != NULL && (kind == SF_GET || kind == SF_PUT)) {
    o->local_fd = kind == SF_GET ? open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                                 : open(file, O_RDONLY | O_CLOEXEC);
    if (o->local_fd < 0) {
      int e = errno;
      sftp_op_free(o);
      return sl_fail(L, sl_code_for_errno(e), "%s: %s", file, strerror(e));
    }
  }
  lua_pop(L, 1);
  if (kind == SF_PUT) {
    if (o->local_fd >= 0) {
      o->buf = malloc(SFTP_BUF);
      o->buf_cap = SFTP_BUF;
    } else {
      size_t n;
      lua_getfield(L, 4, "data");
      const char *data = lua_tolstring(L, -1, &n);
      if (data == NULL) {
        sftp_op_free(o);
        return luaL_error(L, "ssh sftp put: opts.data or opts.file is required");
      }
      o->buf = malloc(n ? n : 1);
      if (o->buf != NULL) memcpy(o->buf, data, n);
      o->buf_len = o->buf_cap = n;
      lua_pop(L, 1);
    }
  } else if (kind == SF_REALPATH) {
    o->buf = malloc(REALPATH_MAX);
    o->buf_cap = REALPATH_MAX;
  } else if (kind == SF_GET && o->local_fd >= 0) {
    o->host = s->host;
    o->buf = malloc(GET_BUF);
    o->wbuf = malloc(GET_BUF);
    o->buf_cap = GET_BUF;
  }
  if (o->path == NULL || ((kind == SF_PUT || kind == SF_REALPATH) && o->buf == NULL) ||
      (kind == SF_GET && o->local_fd >= 0 && (o->buf == NULL || o->wbuf == NULL))) {
    sftp_op_free(o);
    return luaL_error(L, "out of memory");
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    sftp_op_free(o);
    return 2;
  }
  o->op.waiter = t;
  ssh_op_start(s, &o->op, false);
  sl_wait_set_cleanup(t, ssh_op_detach, o);
  return sl_wait(L, t, lua_gettop(L), ssh_results_k);
}

