/* ssh_auth.c: the server's host key (fingerprint, known_hosts check, learning a new key) and
 * authentication (list, password, key file, key in memory, agent) as an op on the session. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ssh.h"

/* "SHA256:<base64 without padding>", OpenSSH's fingerprint style */
static void push_fingerprint(lua_State *L, const unsigned char *key, size_t len) {
  unsigned char d[32];
  char out[8 + SL_B64_LEN(32)] = "SHA256:";
  sl_sha256(key, len, d);
  size_t n = sl_b64_encode(out + 7, d, sizeof(d), false);
  lua_pushlstring(L, out, 7 + n);
}

static const char *key_type_name(int type) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
  case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
  case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
  default: return "unknown";
  }
}

static int known_type_bits(int type) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
  case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
  case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
  default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

/* session:host_key() -> {type=, sha256="SHA256:...", key=base64} */
int ssh_session_host_key(lua_State *L) {
  Session *s = ssh_sess_live(L, 1);
  if (s == NULL) return 2;
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sl_fail(L, "bad_response", "the server sent no host key");
  lua_createtable(L, 0, 3);
  lua_pushstring(L, key_type_name(type));
  lua_setfield(L, -2, "type");
  push_fingerprint(L, (const unsigned char *)key, len);
  lua_setfield(L, -2, "sha256");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, SL_B64_LEN(len));
  luaL_pushresultsize(&b, sl_b64_encode(out, (const unsigned char *)key, len, true));
  lua_setfield(L, -2, "key");
  return 1;
}

/* Loads a known_hosts file line by line: a line libssh2 cannot parse (a key type it lacks,
 * a marker) is skipped rather than ending the whole file, as libssh2_knownhost_readfile does. */
static LIBSSH2_KNOWNHOSTS *load_known_hosts(Session *s, const char *path, bool *missing) {
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ssh);
  *missing = false;
  if (kh == NULL) return NULL;
  FILE *f = fopen(path, "re");
  if (f == NULL) {
    *missing = true;
    return kh;
  }
  char line[16384];
  while (fgets(line, sizeof(line), f) != NULL)
    libssh2_knownhost_readline(kh, line, strlen(line), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
  fclose(f);
  return kh;
}

/* session:check_known_hosts(path) -> "match"|"mismatch"|"notfound", expected sha256 | nil, err
 * "mismatch" also covers a host known only with keys of another type. */
int ssh_session_check_known_hosts(lua_State *L) {
  Session *s = ssh_sess_live(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (s == NULL) return 2;
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sl_fail(L, "bad_response", "the server sent no host key");
  bool missing;
  LIBSSH2_KNOWNHOSTS *kh = load_known_hosts(s, path, &missing);
  if (kh == NULL) return sl_fail(L, "internal", "cannot initialise known_hosts");
  struct libssh2_knownhost *known = NULL;
  int base = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW;
  int rc = libssh2_knownhost_checkp(kh, s->host_name, s->port, key, len,
                                    base | known_type_bits(type), &known);
  if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND)  /* any key of another type for this host? */
    rc = libssh2_knownhost_checkp(kh, s->host_name, s->port, key, len, base, &known);
  int n = 1;
  if (rc == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
    lua_pushliteral(L, "match");
  } else if (rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
    lua_pushliteral(L, "mismatch");
    if (known != NULL && known->key != NULL) {
      size_t cap = strlen(known->key), rl = 0;
      unsigned char *raw = malloc(cap / 4 * 3 + 3);
      if (raw != NULL && sl_b64_decode(known->key, cap, raw, &rl)) {
        push_fingerprint(L, raw, rl);
        n = 2;
      }
      free(raw);
    }
  } else if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND) {
    lua_pushliteral(L, "notfound");
  } else {
    libssh2_knownhost_free(kh);
    return sl_fail(L, "io_error", "cannot check %s: %s", path, ssh_msg(s));
  }
  libssh2_knownhost_free(kh);
  return n;
}

/* session:learn_host_key(path) -> true | nil, err: appends the offered key to path (the file
 * and its directory are created private); other lines are never rewritten. */
int ssh_session_learn_host_key(lua_State *L) {
  Session *s = ssh_sess_live(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (s == NULL) return 2;
  size_t len;
  int type;
  const char *key = libssh2_session_hostkey(s->ssh, &len, &type);
  if (key == NULL) return sl_fail(L, "bad_response", "the server sent no host key");
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ssh);
  if (kh == NULL) return sl_fail(L, "internal", "cannot initialise known_hosts");
  char name[300];
  if (s->port == 22) snprintf(name, sizeof(name), "%s", s->host_name);
  else snprintf(name, sizeof(name), "[%s]:%d", s->host_name, s->port);
  struct libssh2_knownhost *entry = NULL;
  char line[16384];
  size_t out = 0;
  int rc = libssh2_knownhost_addc(kh, name, NULL, key, len, NULL, 0,
                                  LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                  known_type_bits(type), &entry);
  if (rc == 0)
    rc = libssh2_knownhost_writeline(kh, entry, line, sizeof(line), &out,
                                     LIBSSH2_KNOWNHOST_FILE_OPENSSH);
  libssh2_knownhost_free(kh);
  if (rc != 0) return sl_fail(L, "internal", "cannot format a known_hosts line");
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
      return sl_fail(L, sl_code_for_errno(errno), "%s: %s", dir, strerror(errno));
  }
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sl_fail(L, sl_code_for_errno(errno), "%s: %s", path, strerror(errno));
  struct stat st;
  bool need_nl = false;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    char last = '\n';
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
      if (pread(rfd, &last, 1, st.st_size - 1) == 1) need_nl = last != '\n';
      close(rfd);
    }
  }
  ssize_t w = need_nl ? write(fd, "\n", 1) : 1;
  if (w == 1) w = write(fd, line, out);
  int e = errno;
  close(fd);
  if (w != (ssize_t)out) return sl_fail(L, sl_code_for_errno(e), "%s: %s", path, strerror(e));
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- auth */

enum { AU_LIST, AU_PASSWORD, AU_KEYFILE, AU_KEYMEM, AU_AGENT };

typedef struct {
  Op op;
  int kind, stage;
  char *user, *secret, *path, *pubpath, *keydata;
  size_t keylen;
  LIBSSH2_AGENT *agent;
  struct libssh2_agent_publickey *ident;
  int tried;
} AuthOp;

static void wipe_free(char *p, size_t n) {
  if (p == NULL) return;
  explicit_bzero(p, n);
  free(p);
}

static void auth_free(AuthOp *a) {
  if (a->agent != NULL && a->op.s->ssh != NULL) {
    libssh2_agent_disconnect(a->agent);
    libssh2_agent_free(a->agent);
  }
  wipe_free(a->secret, a->secret ? strlen(a->secret) : 0);
  wipe_free(a->keydata, a->keylen);
  free(a->user);
  free(a->path);
  free(a->pubpath);
  free(a);
}

/* Pushes the outcome: true (accepted), or false and why it was rejected. */
static int auth_finish(AuthOp *a, int rc, const char *why) {
  SlTask *t = a->op.waiter;
  Session *s = a->op.s;
  ssh_op_unlink(&a->op);
  if (t != NULL) {
    luaL_checkstack(t->co, 3, NULL);
    if (rc == 0) {
      if (s->state == SESS_HANDSHAKE) s->state = SESS_READY;
      lua_pushboolean(t->co, 1);
      sl_wake(t, 1);
    } else {
      lua_pushboolean(t->co, 0);
      lua_pushstring(t->co, why);
      sl_wake(t, 2);
    }
  }
  auth_free(a);
  return STEP_DONE;
}

static int auth_step(Op *op) {
  AuthOp *a = (AuthOp *)op;
  Session *s = op->s;
  LIBSSH2_SESSION *ssh = s->ssh;
  unsigned ulen = (unsigned)strlen(a->user);
  int rc;
  switch (a->kind) {
  case AU_LIST: {
    char *list = libssh2_userauth_list(ssh, a->user, ulen);
    if (list == NULL) {
      rc = libssh2_session_last_errno(ssh);
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      if (libssh2_userauth_authenticated(ssh)) return auth_finish(a, 0, NULL);
      if (ssh_rc_fatal(rc)) return STEP_FATAL;
      return auth_finish(a, rc, "");
    }
    SlTask *t = op->waiter;
    ssh_op_unlink(op);
    if (t != NULL) {
      lua_pushboolean(t->co, 0);
      lua_pushstring(t->co, list);
      sl_wake(t, 2);
    }
    auth_free(a);
    return STEP_DONE;
  }
  case AU_PASSWORD:
    rc = libssh2_userauth_password_ex(ssh, a->user, ulen, a->secret,
                                      (unsigned)strlen(a->secret), NULL);
    break;
  case AU_KEYFILE:
    rc = libssh2_userauth_publickey_fromfile_ex(ssh, a->user, ulen, a->pubpath, a->path,
                                                a->secret);
    break;
  case AU_KEYMEM:
    rc = libssh2_userauth_publickey_frommemory(ssh, a->user, ulen, NULL, 0, a->keydata,
                                               a->keylen, a->secret);
    break;
  default: {                               /* AU_AGENT: the agent is local and answers fast */
    if (a->agent == NULL) {
      a->agent = libssh2_agent_init(ssh);
      if (a->agent == NULL) return auth_finish(a, -1, "cannot start the agent client");
      if (a->path != NULL) libssh2_agent_set_identity_path(a->agent, a->path);
      if (libssh2_agent_connect(a->agent) != 0)
        return auth_finish(a, -1, "cannot reach ssh-agent (SSH_AUTH_SOCK)");
      if (libssh2_agent_list_identities(a->agent) != 0)
        return auth_finish(a, -1, "ssh-agent did not list its keys");
      a->stage = 1;
    }
    for (;;) {
      if (a->stage == 1) {
        struct libssh2_agent_publickey *prev = a->ident;
        rc = libssh2_agent_get_identity(a->agent, &a->ident, prev);
        if (rc == 1) {
          char why[64];
          snprintf(why, sizeof(why), "ssh-agent: none of %d key(s) accepted", a->tried);
          return auth_finish(a, -1, a->tried == 0 ? "ssh-agent holds no keys" : why);
        }
        if (rc < 0) return auth_finish(a, rc, "ssh-agent failed");
        a->stage = 2;
        a->tried++;
      }
      rc = libssh2_agent_userauth(a->agent, a->user, a->ident);
      if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
      if (rc == 0) return auth_finish(a, 0, NULL);
      if (ssh_rc_fatal(rc)) return STEP_FATAL;
      a->stage = 1;
    }
  }
  }
  if (rc == LIBSSH2_ERROR_EAGAIN) return STEP_AGAIN;
  if (rc == 0) return auth_finish(a, 0, NULL);
  if (ssh_rc_fatal(rc)) return STEP_FATAL;
  const char *why = "rejected by the server";
  if (rc == LIBSSH2_ERROR_FILE) why = "cannot read the key (missing file, bad format or wrong "
                                      "passphrase)";
  else if (rc == LIBSSH2_ERROR_PASSWORD_EXPIRED) why = "password expired";
  else if (rc == LIBSSH2_ERROR_METHOD_NOT_SUPPORTED) why = "key type not supported";
  return auth_finish(a, rc, why);
}

static void auth_abort(Op *op, const SlError *e) {
  AuthOp *a = (AuthOp *)op;
  a->agent = NULL;                         /* freed with the session's arena */
  ssh_wake_error(op->waiter, e);
  auth_free(a);
}

static bool auth_deadline(Op *op) {
  SlError e;
  sl_err_set(&e, "timeout", "SSH authentication with %s timed out", op->s->host_name);
  SlTask *t = op->waiter;
  op->waiter = NULL;
  ssh_wake_error(t, &e);
  return true;                             /* libssh2 cannot abandon a half-done auth */
}

static const OpVt auth_vt = {auth_step, auth_abort, auth_deadline};


static char *dup_field(lua_State *L, int idx, const char *field, size_t *len) {
  lua_getfield(L, idx, field);
  size_t n = 0;
  const char *v = lua_tolstring(L, -1, &n);
  char *copy = NULL;
  if (v != NULL) {
    copy = malloc(n + 1);
    if (copy != NULL) {
      memcpy(copy, v, n);
      copy[n] = '\0';
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "ssh auth: %s must be a string", field);
  }
  lua_pop(L, 1);
  if (len != NULL) *len = n;
  return copy;
}

/* session:auth(user, {method="list"|"password"|"key_file"|"key"|"agent", password=,
 *   path= (key file, or the agent's socket), public_path=, key=, passphrase=, timeout= (s)})
 *   -> true | false, why (or, for "list", false, "publickey,password") | nil, err */
int ssh_session_auth(lua_State *L) {
  static const char *const methods[] = {"list", "password", "key_file", "key", "agent", NULL};
  Session *s = ssh_sess_check(L, 1);
  const char *user = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lua_getfield(L, 3, "method");
  int kind = luaL_checkoption(L, -1, NULL, methods);
  lua_pop(L, 1);
  lua_getfield(L, 3, "timeout");            /* required: the default is Lua's (M.DEFAULTS) */
  if (!lua_isnumber(L, -1)) return luaL_error(L, "ssh auth: opts.timeout must be a number");
  double timeout = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (ssh_dead(s)) {
    sl_push_error(L, &s->death);
    return 2;
  }
  if (s->state == SESS_READY) {
    lua_pushboolean(L, 1);
    return 1;
  }
  AuthOp *a = calloc(1, sizeof(*a));
  if (a == NULL) return luaL_error(L, "out of memory");
  a->op.vt = &auth_vt;
  a->kind = kind;
  a->user = strdup(user);
  if (kind == AU_PASSWORD) a->secret = dup_field(L, 3, "password", NULL);
  if (kind == AU_KEYFILE || kind == AU_KEYMEM) a->secret = dup_field(L, 3, "passphrase", NULL);
  if (kind == AU_KEYFILE || kind == AU_AGENT) {
    a->path = dup_field(L, 3, "path", NULL);
    a->pubpath = dup_field(L, 3, "public_path", NULL);
  }
  if (kind == AU_KEYMEM) a->keydata = dup_field(L, 3, "key", &a->keylen);
  if (a->user == NULL || (kind == AU_PASSWORD && a->secret == NULL) ||
      (kind == AU_KEYFILE && a->path == NULL) || (kind == AU_KEYMEM && a->keydata == NULL)) {
    a->op.s = s;
    auth_free(a);
    return luaL_error(L, "ssh auth: the %s method needs its credential", methods[kind]);
  }
  SlTask sync, *t = sl_wait_begin(L, &sync);
  if (t == NULL) {
    a->op.s = s;
    auth_free(a);
    return 2;
  }
  a->op.waiter = t;
  if (timeout > 0) a->op.deadline = sl_now_ns() + (uint64_t)(timeout * 1e9);
  ssh_op_start(s, &a->op, false);
  sl_wait_set_cleanup(t, ssh_op_detach, a);
  return sl_wait(L, t, lua_gettop(L), ssh_results_k);
}
