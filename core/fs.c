/* fs.c: sandlot.core.fs: file-system calls the Lua library needs and stock Lua lacks. Its core
 * is the confined root: a directory fd below which every path is resolved one component at a
 * time (O_NOFOLLOW, symlinks expanded here), so `..` or a symlink cannot leave it, even when
 * the tree is changed concurrently by the code running in the sandbox. Synchronous syscalls
 * on local disk; files are read and written in chunks by the caller. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define ROOT_MT "sandlot.fs.root"
#define FILE_MT "sandlot.fs.file"
#define MAX_DEPTH 256                     /* directory levels below a root */
#define MAX_LINKS 40                      /* symlink expansions per walk, as the kernel */
#define MAX_TREE 512                      /* nesting that rmtree will descend */

typedef struct { int fd; } RootBox;       /* fd < 0: closed */
typedef struct { int fd; } FileBox;

/* A path resolved below a root: fds[depth - 1] is the directory holding `leaf`, the final
 * component (never a symlink when the walk followed links; "" only for the root itself).
 * fds[0] is the root's own fd and is not owned by the walk. */
typedef struct {
  int fds[MAX_DEPTH];
  size_t ends[MAX_DEPTH];                 /* length of `path` at each level */
  int depth;
  char path[PATH_MAX];                    /* canonical directory below the root: "a/b" */
  char leaf[NAME_MAX + 1];
} Walk;

static const char *code_for(int err) {
  switch (err) {
  case EISDIR: case ENOTEMPTY: case EXDEV: return "invalid_input";
  default: return sl_code_for_errno(err);
  }
}

static bool fail_errno(SlError *e, const char *what) {
  sl_err_set(e, code_for(errno), "%s: %s", what, strerror(errno));
  return false;
}

static void walk_release(Walk *w) {
  while (w->depth > 1) close(w->fds[--w->depth]);
}

static int walk_dir(const Walk *w) {
  return w->fds[w->depth - 1];
}

/* Replaces rest with target + "/" + tail (tail may alias rest). */
static bool splice_link(char *rest, const char *target, const char *tail, SlError *e) {
  char buf[PATH_MAX];
  int n = snprintf(buf, sizeof(buf), "%s/%s", target, tail);
  if (n < 0 || (size_t)n >= sizeof(buf)) {
    sl_err_set(e, "invalid_input", "path too long after expanding a symlink");
    return false;
  }
  memcpy(rest, buf, (size_t)n + 1);
  return true;
}

static bool walk_push(Walk *w, int fd, const char *name, SlError *e) {
  size_t len = strlen(w->path), nlen = strlen(name);
  if (w->depth >= MAX_DEPTH || len + nlen + 2 > sizeof(w->path)) {
    close(fd);
    sl_err_set(e, "invalid_input", "path too deep");
    return false;
  }
  if (len > 0) w->path[len++] = '/';
  memcpy(w->path + len, name, nlen + 1);
  w->ends[w->depth] = len + nlen;
  w->fds[w->depth++] = fd;
  return true;
}

/* Resolves rel below rootfd. A leading '/' means the root. `..` above the root, an absolute
 * symlink target and a symlink climbing out are refused (invalid_input). With follow, a final
 * symlink is expanded too; otherwise the final component is left as it is. A missing final
 * component is not an error (the caller may create it). On failure the walk is released. */
static bool walk(int rootfd, const char *rel, bool follow, Walk *w, SlError *e) {
  char rest[PATH_MAX];
  int links = 0;
  w->fds[0] = rootfd;
  w->ends[0] = 0;
  w->depth = 1;
  w->path[0] = '\0';
  w->leaf[0] = '\0';
  if (strlen(rel) >= sizeof(rest)) {
    sl_err_set(e, "invalid_input", "path too long");
    return false;
  }
  strcpy(rest, rel);
  char *p = rest;
  for (;;) {
    while (*p == '/') p++;
    if (*p == '\0') break;
    size_t n = strcspn(p, "/");
    char name[NAME_MAX + 1];
    if (n > NAME_MAX) {
      sl_err_set(e, "invalid_input", "%s: file name too long", rel);
      goto fail;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    p += n;
    const char *q = p;
    while (*q == '/') q++;
    bool last = *q == '\0';
    if (strcmp(name, ".") == 0) continue;
    if (strcmp(name, "..") == 0) {
      if (w->depth == 1) {
        sl_err_set(e, "invalid_input", "%s: path escapes the sandbox root", rel);
        goto fail;
      }
      close(w->fds[--w->depth]);
      w->path[w->ends[w->depth - 1]] = '\0';
      continue;
    }
    if (last && !follow) {
      memcpy(w->leaf, name, n + 1);
      break;
    }
    struct stat st;
    if (fstatat(walk_dir(w), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT && last) {
        memcpy(w->leaf, name, n + 1);
        break;
      }
      fail_errno(e, rel);
      goto fail;
    }
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t len = readlinkat(walk_dir(w), name, target, sizeof(target) - 1);
      if (len < 0) {
        fail_errno(e, rel);
        goto fail;
      }
      target[len] = '\0';
      if (++links > MAX_LINKS) {
        sl_err_set(e, "invalid_input", "%s: too many levels of symbolic links", rel);
        goto fail;
      }
      if (target[0] == '/') {
        sl_err_set(e, "invalid_input", "%s: symlink '%s' points outside the sandbox (%s)",
                   rel, name, target);
        goto fail;
      }
      if (!splice_link(rest, target, p, e)) goto fail;
      p = rest;
      continue;
    }
    if (last) {
      memcpy(w->leaf, name, n + 1);
      break;
    }
    if (!S_ISDIR(st.st_mode)) {
      sl_err_set(e, "not_found", "%s: '%s' is not a directory", rel, name);
      goto fail;
    }
    /* O_DIRECTORY|O_NOFOLLOW: a directory swapped for a symlink since fstatat fails here */
    int fd = openat(walk_dir(w), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      fail_errno(e, rel);
      goto fail;
    }
    if (!walk_push(w, fd, name, e)) goto fail;
  }
  if (w->leaf[0] == '\0' && w->depth > 1) {  /* "a/b/." names b: express it as (a, "b") */
    const char *slash = strrchr(w->path, '/');
    strcpy(w->leaf, slash ? slash + 1 : w->path);
    close(w->fds[--w->depth]);
    w->path[w->ends[w->depth - 1]] = '\0';
  }
  return true;
fail:
  walk_release(w);
  return false;
}

static void push_stat(lua_State *L, const struct stat *st) {
  const char *type = S_ISREG(st->st_mode) ? "file" : S_ISDIR(st->st_mode) ? "directory"
                   : S_ISLNK(st->st_mode) ? "symlink" : "other";
  lua_createtable(L, 0, 4);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st->st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)(st->st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st->st_mtim.tv_sec);
  lua_setfield(L, -2, "mtime");
}

static int root_fd(lua_State *L) {
  RootBox *box = luaL_checkudata(L, 1, ROOT_MT);
  if (box->fd < 0) luaL_error(L, "attempt to use a closed sandlot.fs.root");
  return box->fd;
}

/* Opens the target of a finished walk with flags (never following a final symlink). */
static int walk_open(const Walk *w, int flags, mode_t perm) {
  if (w->leaf[0] == '\0') return openat(walk_dir(w), ".", (flags & ~O_CREAT) | O_CLOEXEC);
  return openat(walk_dir(w), w->leaf, flags | O_NOFOLLOW | O_CLOEXEC, perm);
}

static int stat_common(lua_State *L, bool follow) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  Walk w;
  SlError e;
  if (!walk(fd, rel, follow, &w, &e)) return sl_push_error(L, &e);
  struct stat st;
  int rc = w.leaf[0] ? fstatat(walk_dir(&w), w.leaf, &st, AT_SYMLINK_NOFOLLOW)
                     : fstat(walk_dir(&w), &st);
  int saved = errno;
  walk_release(&w);
  if (rc != 0) return sl_fail(L, code_for(saved), "%s: %s", rel, strerror(saved));
  push_stat(L, &st);
  return 1;
}

/* root:stat(rel) -> {type, size, mode, mtime} | nil, err   (follows symlinks inside) */
static int root_stat(lua_State *L) {
  return stat_common(L, true);
}

/* root:lstat(rel) -> {type, size, mode, mtime} | nil, err */
static int root_lstat(lua_State *L) {
  return stat_common(L, false);
}

/* root:resolve(rel [, follow=true]) -> canonical path below the root ("" for the root) */
static int root_resolve(lua_State *L) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  bool follow = lua_isnone(L, 3) || lua_toboolean(L, 3);
  Walk w;
  SlError e;
  if (!walk(fd, rel, follow, &w, &e)) return sl_push_error(L, &e);
  lua_pushfstring(L, "%s%s%s", w.path, (w.path[0] && w.leaf[0]) ? "/" : "", w.leaf);
  walk_release(&w);
  return 1;
}

/* root:readdir(rel) -> {{name, type, size, mode, mtime}, ...} | nil, err   (unsorted) */
static int root_readdir(lua_State *L) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  Walk w;
  SlError e;
  if (!walk(fd, rel, true, &w, &e)) return sl_push_error(L, &e);
  int dfd = walk_open(&w, O_RDONLY | O_DIRECTORY, 0);
  int saved = errno;
  walk_release(&w);
  if (dfd < 0) {
    if (saved == ENOTDIR) return sl_fail(L, "invalid_input", "%s: not a directory", rel);
    return sl_fail(L, code_for(saved), "%s: %s", rel, strerror(saved));
  }
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    saved = errno;
    close(dfd);
    return sl_fail(L, code_for(saved), "%s: %s", rel, strerror(saved));
  }
  lua_newtable(L);
  int n = 0;
  struct dirent *ent;
  /* cppcheck-suppress readdirCalled ; readdir_r is deprecated (glibc 2.24), and readdir is
     safe on a stream that only this call uses */
  while ((ent = readdir(d)) != NULL) {
    if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(d), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue; /* raced */
    push_stat(L, &st);
    lua_pushstring(L, ent->d_name);
    lua_setfield(L, -2, "name");
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

/* root:mkdir(rel [, mode=0755]) -> true | nil, err */
static int root_mkdir(lua_State *L) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  mode_t mode = (mode_t)luaL_optinteger(L, 3, 0755);
  Walk w;
  SlError e;
  if (!walk(fd, rel, false, &w, &e)) return sl_push_error(L, &e);
  int rc = w.leaf[0] ? mkdirat(walk_dir(&w), w.leaf, mode) : (errno = EEXIST, -1);
  int saved = errno;
  walk_release(&w);
  if (rc != 0) return sl_fail(L, code_for(saved), "%s: %s", rel, strerror(saved));
  lua_pushboolean(L, 1);
  return 1;
}

static int remove_common(lua_State *L, int flags) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  Walk w;
  SlError e;
  if (!walk(fd, rel, false, &w, &e)) return sl_push_error(L, &e);
  int rc = w.leaf[0] ? unlinkat(walk_dir(&w), w.leaf, flags) : (errno = EBUSY, -1);
  int saved = errno;
  walk_release(&w);
  if (rc != 0) {
    if (saved == EBUSY) return sl_fail(L, "invalid_input", "%s: cannot remove the root", rel);
    return sl_fail(L, code_for(saved), "%s: %s", rel, strerror(saved));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* root:unlink(rel) -> true | nil, err   (a file or symlink; a directory is invalid_input) */
static int root_unlink(lua_State *L) {
  return remove_common(L, 0);
}

/* root:rmdir(rel) -> true | nil, err   (an empty directory) */
static int root_rmdir(lua_State *L) {
  return remove_common(L, AT_REMOVEDIR);
}

/* Removes everything inside the directory dfd (consumed). Entries are removed while reading,
 * so passes repeat until one finds nothing left. */
static bool rm_contents(int dfd, int level, SlError *e) {
  if (level > MAX_TREE) {
    close(dfd);
    sl_err_set(e, "invalid_input", "directory tree too deep to remove");
    return false;
  }
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    close(dfd);
    return fail_errno(e, "rmtree");
  }
  bool ok = true, again = true;
  while (ok && again) {
    again = false;
    rewinddir(d);
    struct dirent *ent;
    /* cppcheck-suppress readdirCalled ; readdir, not the deprecated readdir_r: only this
       call uses the stream */
    while (ok && (ent = readdir(d)) != NULL) {
      const char *name = ent->d_name;
      if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
      struct stat st;
      if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == EACCES && fchmodat(dirfd(d), name, 0700, 0) == 0)
          sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) { ok = fail_errno(e, name); break; }
        if (!rm_contents(sub, level + 1, e)) { ok = false; break; }
        if (unlinkat(dirfd(d), name, AT_REMOVEDIR) != 0) { ok = fail_errno(e, name); break; }
      } else if (unlinkat(dirfd(d), name, 0) != 0) {
        ok = fail_errno(e, name);
        break;
      }
      again = true;
    }
  }
  closedir(d);
  return ok;
}

/* root:rmtree(rel) -> true | nil, err   (a file, or a directory and all it holds) */
static int root_rmtree(lua_State *L) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  Walk w;
  SlError e;
  if (!walk(fd, rel, false, &w, &e)) return sl_push_error(L, &e);
  if (w.leaf[0] == '\0') {
    walk_release(&w);
    return sl_fail(L, "invalid_input", "%s: cannot remove the root", rel);
  }
  int parent = walk_dir(&w);
  struct stat st;
  bool ok = true;
  if (fstatat(parent, w.leaf, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    ok = fail_errno(&e, rel);
  } else if (S_ISDIR(st.st_mode)) {
    int sub = openat(parent, w.leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) ok = fail_errno(&e, rel);
    else if ((ok = rm_contents(sub, 0, &e)) && unlinkat(parent, w.leaf, AT_REMOVEDIR) != 0)
      ok = fail_errno(&e, rel);
  } else if (unlinkat(parent, w.leaf, 0) != 0) {
    ok = fail_errno(&e, rel);
  }
  walk_release(&w);
  if (!ok) return sl_push_error(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

/* root:rename(from, to) -> true | nil, err   (replaces `to` when it is a file) */
static int root_rename(lua_State *L) {
  int fd = root_fd(L);
  const char *from = luaL_checkstring(L, 2), *to = luaL_checkstring(L, 3);
  Walk a, b;
  SlError e;
  if (!walk(fd, from, false, &a, &e)) return sl_push_error(L, &e);
  if (!walk(fd, to, false, &b, &e)) {
    walk_release(&a);
    return sl_push_error(L, &e);
  }
  int rc = (a.leaf[0] && b.leaf[0]) ? renameat(walk_dir(&a), a.leaf, walk_dir(&b), b.leaf)
                                    : (errno = EBUSY, -1);
  int saved = errno;
  walk_release(&b);
  walk_release(&a);
  if (rc != 0) return sl_fail(L, saved == EBUSY ? "invalid_input" : code_for(saved),
                              "rename %s -> %s: %s", from, to, strerror(saved));
  lua_pushboolean(L, 1);
  return 1;
}

/* root:readlink(rel) -> target | nil, err */
static int root_readlink(lua_State *L) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  Walk w;
  SlError e;
  if (!walk(fd, rel, false, &w, &e)) return sl_push_error(L, &e);
  char buf[PATH_MAX];
  ssize_t n = w.leaf[0] ? readlinkat(walk_dir(&w), w.leaf, buf, sizeof(buf))
                        : (errno = EINVAL, -1);
  int saved = errno;
  walk_release(&w);
  if (n < 0) return sl_fail(L, code_for(saved), "%s: %s", rel, strerror(saved));
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static int push_file(lua_State *L, int fd) {
  FileBox *f = lua_newuserdatauv(L, sizeof(*f), 0);
  f->fd = fd;
  luaL_setmetatable(L, FILE_MT);
  return 1;
}

/* Flags for an open mode: "r" read, "w" create or truncate, "x" create, failing if present. */
static int open_flags(lua_State *L, int arg) {
  static const char *const modes[] = {"r", "w", "x", NULL};
  static const int flags[] = {O_RDONLY, O_WRONLY | O_CREAT | O_TRUNC,
                              O_WRONLY | O_CREAT | O_EXCL};
  return flags[luaL_checkoption(L, arg, "r", modes)];
}

static int open_result(lua_State *L, int fd, const char *what) {
  if (fd < 0) return sl_fail(L, code_for(errno), "%s: %s", what, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    return sl_fail(L, "invalid_input", "%s: is a directory", what);
  }
  return push_file(L, fd);
}

/* root:open(rel [, "r"|"w"|"x" [, perm=0644]]) -> file | nil, err */
static int root_open(lua_State *L) {
  int fd = root_fd(L);
  const char *rel = luaL_checkstring(L, 2);
  int flags = open_flags(L, 3);
  mode_t perm = (mode_t)luaL_optinteger(L, 4, 0644);
  Walk w;
  SlError e;
  if (!walk(fd, rel, true, &w, &e)) return sl_push_error(L, &e);
  int ffd = w.leaf[0] ? walk_open(&w, flags, perm) : (errno = EISDIR, -1);
  int saved = errno;
  walk_release(&w);
  errno = saved;
  return open_result(L, ffd, rel);
}

/* root:close() -> true. Also __close and __gc. */
static int root_close(lua_State *L) {
  RootBox *box = luaL_checkudata(L, 1, ROOT_MT);
  if (box->fd >= 0) {
    close(box->fd);
    box->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.root(path) -> root | nil, err   (path must be a directory) */
static int fs_root(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  RootBox *box = lua_newuserdatauv(L, sizeof(*box), 0);
  box->fd = -1;
  luaL_setmetatable(L, ROOT_MT);
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR) return sl_fail(L, "invalid_input", "%s: not a directory", path);
    return sl_fail(L, code_for(errno), "%s: %s", path, strerror(errno));
  }
  box->fd = fd;
  return 1;
}

static FileBox *file_check(lua_State *L) {
  FileBox *f = luaL_checkudata(L, 1, FILE_MT);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed sandlot.fs.file");
  return f;
}

static int read_fail(lua_State *L) {
  return sl_fail(L, code_for(errno), "read: %s", strerror(errno));
}

/* file:read([n]) -> string | nil (end of file) | nil, err   (no n: the rest of the file, in
 * one buffer sized from fstat so a large file is not copied while it grows) */
static int file_read(lua_State *L) {
  FileBox *f = file_check(L);
  lua_Integer want = luaL_optinteger(L, 2, -1);
  luaL_argcheck(L, want == -1 || want > 0, 2, "must be > 0");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (want < 0) {
    struct stat st;
    off_t pos = lseek(f->fd, 0, SEEK_CUR);
    size_t hint = (fstat(f->fd, &st) == 0 && pos >= 0 && st.st_size > pos)
                ? (size_t)(st.st_size - pos) : 0;
    if (hint > 0) {
      char *p = luaL_prepbuffsize(&b, hint);
      size_t len = 0;
      while (len < hint) {
        ssize_t n = read(f->fd, p + len, hint - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return read_fail(L);
        if (n == 0) break;
        len += (size_t)n;
      }
      luaL_addsize(&b, len);
    }
    for (;;) {                            /* the file grew, or has no size (a pipe, /proc) */
      char tmp[16384];
      ssize_t n = read(f->fd, tmp, sizeof(tmp));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return read_fail(L);
      if (n == 0) break;
      luaL_addlstring(&b, tmp, (size_t)n);
    }
    luaL_pushresult(&b);
    return 1;
  }
  char *p = luaL_prepbuffsize(&b, (size_t)want);
  size_t len = 0;
  while (len < (size_t)want) {
    ssize_t n = read(f->fd, p + len, (size_t)want - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return read_fail(L);
    if (n == 0) break;
    len += (size_t)n;
  }
  luaL_addsize(&b, len);
  luaL_pushresult(&b);
  if (len == 0) lua_pushnil(L);
  return 1;
}

/* file:write(data) -> true | nil, err */
static int file_write(lua_State *L) {
  FileBox *f = file_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  while (len > 0) {
    ssize_t n = write(f->fd, data, len > (1u << 20) ? (1u << 20) : len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sl_fail(L, code_for(errno), "write: %s", strerror(errno));
    data += n;
    len -= (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* file:chmod(mode) -> true | nil, err */
static int file_chmod(lua_State *L) {
  FileBox *f = file_check(L);
  mode_t mode = (mode_t)luaL_checkinteger(L, 2);
  if (fchmod(f->fd, mode & 07777) != 0)
    return sl_fail(L, code_for(errno), "chmod: %s", strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* file:stat() -> {type, size, mode, mtime} | nil, err */
static int file_stat(lua_State *L) {
  FileBox *f = file_check(L);
  struct stat st;
  if (fstat(f->fd, &st) != 0) return sl_fail(L, code_for(errno), "stat: %s", strerror(errno));
  push_stat(L, &st);
  return 1;
}

/* file:close() -> true. Also __close and __gc. */
static int file_close(lua_State *L) {
  FileBox *f = luaL_checkudata(L, 1, FILE_MT);
  if (f->fd >= 0) {
    close(f->fd);
    f->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int plain_stat(lua_State *L, bool follow) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
    return sl_fail(L, code_for(errno), "%s: %s", path, strerror(errno));
  push_stat(L, &st);
  return 1;
}

/* fs.stat(path) -> {type, size, mode, mtime} | nil, err */
static int fs_stat(lua_State *L) {
  return plain_stat(L, true);
}

/* fs.lstat(path) -> {type, size, mode, mtime} | nil, err */
static int fs_lstat(lua_State *L) {
  return plain_stat(L, false);
}

/* fs.mkdir(path [, mode=0755]) -> true | nil, err */
static int fs_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
  if (mkdir(path, mode) != 0) return sl_fail(L, code_for(errno), "%s: %s", path, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.chmod(path, mode) -> true | nil, err */
static int fs_chmod(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = (mode_t)luaL_checkinteger(L, 2);
  if (chmod(path, mode & 07777) != 0)
    return sl_fail(L, code_for(errno), "%s: %s", path, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.symlink(target, path) -> true | nil, err */
static int fs_symlink(lua_State *L) {
  const char *target = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  if (symlink(target, path) != 0)
    return sl_fail(L, code_for(errno), "%s: %s", path, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* fs.readlink(path) -> target | nil, err */
static int fs_readlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof(buf));
  if (n < 0) return sl_fail(L, code_for(errno), "%s: %s", path, strerror(errno));
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static const luaL_Reg root_methods[] = {
  {"stat", root_stat}, {"lstat", root_lstat}, {"resolve", root_resolve},
  {"readdir", root_readdir}, {"mkdir", root_mkdir}, {"unlink", root_unlink},
  {"rmdir", root_rmdir}, {"rmtree", root_rmtree}, {"rename", root_rename},
  {"readlink", root_readlink}, {"open", root_open}, {"close", root_close}, {NULL, NULL}
};

static const luaL_Reg file_methods[] = {
  {"read", file_read}, {"write", file_write}, {"chmod", file_chmod}, {"stat", file_stat},
  {"close", file_close}, {NULL, NULL}
};

static const luaL_Reg fs_funcs[] = {
  {"root", fs_root}, {"stat", fs_stat}, {"lstat", fs_lstat}, {"mkdir", fs_mkdir},
  {"chmod", fs_chmod}, {"symlink", fs_symlink}, {"readlink", fs_readlink}, {NULL, NULL}
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction close) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int luaopen_sandlot_core_fs(lua_State *L) {
  new_class(L, ROOT_MT, root_methods, root_close);
  new_class(L, FILE_MT, file_methods, file_close);
  luaL_newlib(L, fs_funcs);
  return 1;
}
