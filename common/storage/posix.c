/*
 * storage/posix.c - the reference driver: a directory on a local (or mounted) file system.
 *
 * put: temp file ".NAME.wvtmp-PID-N" in the final directory, write, fsync, rename (or, for
 * WV_PUT_NOREPLACE, renameat2(RENAME_NOREPLACE)), fsync the directory. A process killed mid-write
 * leaves only a temp file, which no reader ever returns and list() never shows.
 *
 * Keys are resolved beneath the repository's directory descriptor, one component at a time with
 * O_NOFOLLOW (core/dirfd.h), and every operation then works on names inside the directory it
 * opened (openat, renameat, unlinkat, fstatat): there is no check-then-open window in which a
 * symbolic link swapped into a key's directory could redirect a write outside the repository.
 * Symbolic links: the repository root may be one (it is opened as configured), and so may the
 * top-level "wal" and "backup" directories (an administrator who put the WAL on another disk);
 * any other symbolic link on a key's path, or as the key itself, is refused with WV_EREFUSED and
 * a message naming it. The directory of a put is opened once per object, not per write.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/dirfd.h"
#include "core/fileio.h"
#include "storage/driver.h"

typedef struct posix_storage {
    wv_storage base;
    char *root;
    int rootfd;
    char *name; /* "repository \"ROOT\"", for messages */
} posix_storage;

typedef struct posix_sink {
    wv_sink base;
    posix_storage *st;
    int fd, dirfd;
    unsigned flags;
    char *key;
    char *final_path; /* for messages */
    char *tmp_path;
    char *base_name, *tmp_name; /* inside dirfd */
    uint64_t written, flushed;  /* bytes written; of them, handed to the device (sync_file_range) */
} posix_sink;

typedef struct posix_source {
    wv_source base;
    int fd;
    uint64_t remaining;
    char *path;
    const char *key; /* inside path */
} posix_source;

static char *full_path(posix_storage *st, const char *key)
{
    return wv_xasprintf("%s/%s", st->root, key);
}

/* The top-level directories that may be symbolic links (see above). */
static unsigned resolve_flags(const char *key)
{
    if (strncmp(key, "wal/", 4) == 0 || strncmp(key, "backup/", 7) == 0 ||
        strcmp(key, "wal") == 0 || strcmp(key, "backup") == 0)
        return WV_DIRFD_FOLLOW_FIRST;
    return 0;
}

/* The directory holding key (created when asked) and key's last component inside it. */
static int open_key_dir(posix_storage *st, const char *key, int create, int *dfd, const char **base,
                        wv_err *err)
{
    unsigned flags = resolve_flags(key) | (create ? WV_DIRFD_CREATE | WV_DIRFD_SYNC : 0);
    return wv_dirfd_open_parent(st->rootfd, st->name, key, flags, 0750, dfd, base, err);
}

static int refuse_key_link(posix_storage *st, const char *key, wv_err *err)
{
    wv_err_set(err, WV_EREFUSED,
               "%s: \"%s\" is a symbolic link; refusing to follow it (it could lead outside)",
               st->name, key);
    return wv_err_hint(err, "the repository holds only real files and directories (the root and "
                            "its top-level wal/ and backup/ may be links)");
}

/* Remove the directories above key that are now empty, up to the repository root. A writer that
 * races us finds its directory gone and creates it again (see posix_put_open). */
static void prune_dirs(posix_storage *st, const char *key)
{
    const char *slash = strrchr(key, '/');
    if (!slash)
        return;
    char *dir = wv_xstrndup(key, (size_t)(slash - key));
    wv_dirfd_prune_empty(st->rootfd, dir, resolve_flags(key));
    free(dir);
}

/* --- sink ------------------------------------------------------------------------------------- */

static void sink_free(posix_sink *s)
{
    if (s->fd >= 0)
        close(s->fd);
    if (s->dirfd >= 0)
        close(s->dirfd);
    free(s->key);
    free(s->final_path);
    free(s->tmp_path);
    free(s->base_name);
    free(s->tmp_name);
    free(s);
}

/* Every message of this driver names the path of its key, so the key is recorded as named: a
 * caller that puts the repository in front does not add it again. (The storage layer names the
 * repository; a sink's or source's error is named by its user.) */
static int named(int rc, const posix_sink *s, wv_err *err)
{
    if (rc != 0)
        wv_err_names(err, NULL, s->key);
    return rc;
}

/* Written data is handed to the device in steps of this size while the object is still being
 * produced (sync_file_range, a hint: the fsync at commit is what makes it durable), so the
 * commit waits only for the last step. */
#define WRITEBACK_STEP (512 * 1024)

static int posix_sink_write(wv_sink *base, const void *buf, size_t len, wv_err *err)
{
    posix_sink *s = (posix_sink *)base;
    int rc = wv_write_all(s->fd, buf, len, s->tmp_path, err);
    if (rc != 0)
        return named(rc, s, err);
    s->written += len;
    if (!(s->flags & WV_PUT_NOSYNC) && s->written - s->flushed >= WRITEBACK_STEP) {
        (void)sync_file_range(s->fd, (off_t)s->flushed, (off_t)(s->written - s->flushed),
                              SYNC_FILE_RANGE_WRITE);
        s->flushed = s->written;
    }
    return 0;
}

static void posix_sink_abort(wv_sink *base)
{
    posix_sink *s = (posix_sink *)base;
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    unlinkat(s->dirfd, s->tmp_name, 0);
    prune_dirs(s->st, s->key);
    sink_free(s);
}

static int posix_sink_commit(wv_sink *base, wv_err *err)
{
    posix_sink *s = (posix_sink *)base;
    int sync = !(s->flags & WV_PUT_NOSYNC);
    int rc = 0;

    if (sync)
        rc = wv_fsync_fd(s->fd, s->tmp_path, err);
    if (rc == 0 && close(s->fd) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not close \"%s\"", s->tmp_path);
    s->fd = -1;
    if (rc == 0) {
        if (s->flags & WV_PUT_NOREPLACE) {
            rc = wv_renameat_noreplace(s->dirfd, s->tmp_name, s->base_name, s->tmp_path,
                                       s->final_path, err);
        } else if (renameat(s->dirfd, s->tmp_name, s->dirfd, s->base_name) != 0) {
            rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", s->tmp_path,
                              s->final_path);
        }
    }
    if (rc != 0) {
        unlinkat(s->dirfd, s->tmp_name, 0);
        named(rc, s, err);
        sink_free(s);
        return rc;
    }
    if (sync && fsync(s->dirfd) != 0 && errno != EINVAL)
        rc = named(wv_err_errno(err, WV_EIO, errno, "could not fsync the directory of \"%s\"",
                                s->final_path),
                   s, err);
    sink_free(s);
    return rc;
}

static const wv_sink_ops posix_sink_ops = {
    .write = posix_sink_write,
    .commit = posix_sink_commit,
    .abort = posix_sink_abort,
};

/* The temp file of s inside its directory; 0, or errno. */
static int create_temp(posix_sink *s)
{
    s->fd =
        openat(s->dirfd, s->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    return s->fd < 0 ? errno : 0;
}

static int posix_put_open(wv_storage *base, const char *key, unsigned flags, wv_sink **out,
                          wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    posix_sink *s = wv_xcalloc(1, sizeof(*s));
    const char *name = NULL;
    struct stat sb;
    s->base.ops = &posix_sink_ops;
    s->st = st;
    s->fd = -1;
    s->dirfd = -1;
    s->flags = flags;
    s->key = wv_xstrdup(key);
    s->final_path = full_path(st, key);
    s->tmp_path = wv_temp_path_for(s->final_path);

    int rc = open_key_dir(st, key, 1, &s->dirfd, &name, err);
    if (rc != 0) {
        sink_free(s);
        return rc;
    }
    s->base_name = wv_xstrdup(name);
    s->tmp_name = wv_xstrdup(strrchr(s->tmp_path, '/') + 1);
    if (fstatat(s->dirfd, s->base_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode)) {
        rc = refuse_key_link(st, key, err);
        sink_free(s);
        return rc;
    }
    int e = create_temp(s);
    if (e == ENOENT) {
        /* A concurrent remove pruned the directory just now: open (create) it again, once. */
        close(s->dirfd);
        s->dirfd = -1;
        if ((rc = open_key_dir(st, key, 1, &s->dirfd, &name, err)) != 0) {
            sink_free(s);
            return rc;
        }
        e = create_temp(s);
    }
    if (e != 0) {
        rc = wv_err_errno(err, WV_EIO, e, "could not create \"%s\"", s->tmp_path);
        sink_free(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}

/* --- source ----------------------------------------------------------------------------------- */

static int posix_source_read(wv_source *base, void *buf, size_t cap, size_t *got, wv_err *err)
{
    posix_source *s = (posix_source *)base;
    if (cap > s->remaining)
        cap = (size_t)s->remaining;
    *got = 0;
    if (cap == 0)
        return 0;
    for (;;) {
        ssize_t n = read(s->fd, buf, cap);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            wv_err_errno(err, WV_EIO, errno, "could not read \"%s\"", s->path);
            return wv_err_names(err, NULL, s->key);
        }
        *got = (size_t)n;
        s->remaining -= (uint64_t)n;
        return 0;
    }
}

static void posix_source_close(wv_source *base)
{
    posix_source *s = (posix_source *)base;
    close(s->fd);
    free(s->path);
    free(s);
}

static const wv_source_ops posix_source_ops = {
    .read = posix_source_read,
    .close = posix_source_close,
};

/* Open key for reading beneath the root: fd, or a WV_E* code (absent: WV_ENOTFOUND). */
static int open_key(posix_storage *st, const char *key, int *fd, wv_err *err)
{
    int dfd = -1;
    const char *name;
    int rc = open_key_dir(st, key, 0, &dfd, &name, err);
    if (rc == WV_ENOTFOUND)
        return wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found", key);
    if (rc != 0)
        return rc;
    *fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    rc = 0;
    if (*fd < 0) {
        struct stat sb;
        if (e == ENOENT)
            rc = wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found", key);
        else if (e == ELOOP && fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISLNK(sb.st_mode))
            rc = refuse_key_link(st, key, err);
        else
            rc = wv_err_errno(err, WV_EIO, e, "could not open \"%s/%s\"", st->root, key);
    }
    close(dfd);
    return rc;
}

/* The range rules of get_open: offset >= 0 with a length >= -1, or a suffix (offset < 0) of at
 * most INT64_MAX bytes; INT64_MIN (whose negation overflows) and a length below -1 are refused. */
static int check_range(posix_storage *st, const char *key, int64_t offset, int64_t length,
                       wv_err *err)
{
    if (offset == INT64_MIN || length < -1)
        return wv_err_set(err, WV_EUSAGE,
                          "%s: bad range for \"%s\": offset %lld, length %lld (expected an "
                          "offset above %lld and a length >= -1)",
                          st->name, key, (long long)offset, (long long)length,
                          (long long)INT64_MIN);
    return 0;
}

static int posix_get_open(wv_storage *base, const char *key, int64_t offset, int64_t length,
                          wv_source **out, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    struct stat sb;
    int fd = -1;
    int rc = check_range(st, key, offset, length, err);
    if (rc == 0)
        rc = open_key(st, key, &fd, err);
    if (rc != 0)
        return rc;
    char *path = full_path(st, key);
    if (fstat(fd, &sb) != 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not stat \"%s\"", path);
        close(fd);
        free(path);
        return rc;
    }
    uint64_t size = (uint64_t)sb.st_size, start, len;
    if (offset < 0) {
        uint64_t want = (uint64_t)(-offset); /* offset > INT64_MIN: no overflow */
        start = want > size ? 0 : size - want;
        len = size - start;
    } else {
        start = (uint64_t)offset > size ? size : (uint64_t)offset;
        len = size - start;
        if (length >= 0 && (uint64_t)length < len)
            len = (uint64_t)length;
    }
    if (start > 0 && lseek(fd, (off_t)start, SEEK_SET) < 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not seek in \"%s\"", path);
        close(fd);
        free(path);
        return rc;
    }
    posix_fadvise(fd, (off_t)start, (off_t)len, POSIX_FADV_SEQUENTIAL);
    posix_source *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &posix_source_ops;
    s->fd = fd;
    s->remaining = len;
    s->path = path;
    s->key = path + strlen(st->root) + 1;
    *out = &s->base;
    return 0;
}

/* --- stat, list, remove, flush ---------------------------------------------------------------- */

static int posix_stat(wv_storage *base, const char *key, wv_stat *out, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    int dfd = -1;
    const char *name;
    struct stat sb;
    int rc = open_key_dir(st, key, 0, &dfd, &name, err);
    if (rc == WV_ENOTFOUND)
        return wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found", key);
    if (rc != 0)
        return rc;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = errno == ENOENT
                 ? wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found", key)
                 : wv_err_errno(err, WV_EIO, errno, "could not stat \"%s/%s\"", st->root, key);
    } else if (S_ISLNK(sb.st_mode)) {
        rc = refuse_key_link(st, key, err);
    } else if (!S_ISREG(sb.st_mode)) {
        rc = wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found (not a file)", key);
    } else {
        out->size = (uint64_t)sb.st_size;
        out->mtime = (int64_t)sb.st_mtime;
    }
    close(dfd);
    return rc;
}

/*
 * A temp file left by a process killed mid-write: its writer (the pid in its name) is gone and it
 * has not changed for STALE_TEMP_SECONDS. The age guards against a writer on another host sharing
 * the directory, where the pid means nothing.
 */
#define STALE_TEMP_SECONDS 600

static void remove_if_stale_temp(int dfd, const char *name)
{
    const char *p = strstr(name, ".wvtmp-");
    struct stat sb;
    if (!p)
        return;
    long pid = strtol(p + 7, NULL, 10);
    if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH &&
        fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
        time(NULL) - sb.st_mtime > STALE_TEMP_SECONDS)
        unlinkat(dfd, name, 0);
}

/* Walk directory dfd (key prefix rel, "" or ending in '/'; consumed), reporting files whose key
 * starts with prefix. Subdirectories are opened beneath it with O_NOFOLLOW; at the root, the
 * top-level wal/ and backup/ are followed when they are links. */
static int walk(posix_storage *st, int dfd, const char *rel, const char *prefix, wv_list_cb cb,
                void *arg, wv_err *err)
{
    DIR *d = fdopendir(dfd);
    int rc = 0;
    if (!d) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not list \"%s/%s\"", st->root, rel);
        close(dfd);
        return rc;
    }
    struct dirent *de;
    size_t plen = strlen(prefix);
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (wv_is_temp_name(de->d_name)) {
            remove_if_stale_temp(dirfd(d), de->d_name);
            continue;
        }
        char *key = wv_xasprintf("%s%s", rel, de->d_name);
        size_t klen = strlen(key);
        /* Skip subtrees and files that cannot match the prefix. */
        size_t cmp = klen < plen ? klen : plen;
        if (strncmp(key, prefix, cmp) != 0) {
            free(key);
            continue;
        }
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno != ENOENT)
                rc = wv_err_errno(err, WV_EIO, errno, "could not stat \"%s/%s\"", st->root, key);
        } else if (S_ISDIR(sb.st_mode) || (S_ISLNK(sb.st_mode) && !rel[0] && resolve_flags(key))) {
            int sub =
                openat(dirfd(d), de->d_name,
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | (S_ISDIR(sb.st_mode) ? O_NOFOLLOW : 0));
            if (sub >= 0) {
                char *subrel = wv_xasprintf("%s/", key);
                rc = walk(st, sub, subrel, prefix, cb, arg, err);
                free(subrel);
            } else if (errno != ENOENT && errno != ENOTDIR) {
                rc = wv_err_errno(err, WV_EIO, errno, "could not list \"%s/%s\"", st->root, key);
            }
        } else if (S_ISREG(sb.st_mode) && klen >= plen) {
            wv_stat ws = {.size = (uint64_t)sb.st_size, .mtime = (int64_t)sb.st_mtime};
            rc = cb(arg, key, &ws);
        }
        free(key);
    }
    if (rc == 0 && errno != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not list \"%s/%s\"", st->root, rel);
    closedir(d);
    return rc;
}

static int posix_list(wv_storage *base, const char *prefix, wv_list_cb cb, void *arg, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    /* Start at the deepest directory the prefix names. */
    const char *slash = strrchr(prefix, '/');
    char *rel = slash ? wv_xstrndup(prefix, (size_t)(slash - prefix) + 1) : wv_xstrdup("");
    char *dir = slash ? wv_xstrndup(prefix, (size_t)(slash - prefix)) : wv_xstrdup("");
    int dfd = -1;
    int rc = wv_dirfd_open(st->rootfd, st->name, dir, resolve_flags(prefix), 0, &dfd, err);
    if (rc == WV_ENOTFOUND || (rc == WV_EIO && err && strstr(err->msg, "is not a directory")))
        rc = 0; /* a missing prefix is an empty listing */
    else if (rc == 0)
        rc = walk(st, dfd, rel, prefix, cb, arg, err);
    free(dir);
    free(rel);
    return rc;
}

static int posix_remove(wv_storage *base, const char *key, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    int dfd = -1;
    const char *name;
    struct stat sb;
    int rc = open_key_dir(st, key, 0, &dfd, &name, err);
    if (rc == WV_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
        rc = refuse_key_link(st, key, err);
    else if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT)
        rc = wv_err_errno(err, WV_EIO, errno, "could not remove \"%s/%s\"", st->root, key);
    close(dfd);
    if (rc == 0)
        prune_dirs(st, key);
    return rc;
}

static int posix_flush(wv_storage *base, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    if (syncfs(st->rootfd) != 0)
        return wv_err_errno(err, WV_EIO, errno, "could not sync the file system of \"%s\"",
                            st->root);
    return 0;
}

static void posix_free(wv_storage *base)
{
    posix_storage *st = (posix_storage *)base;
    if (st->rootfd >= 0)
        close(st->rootfd);
    free(st->root);
    free(st->name);
    free(st->base.location);
    free(st);
}

static const wv_storage_ops posix_ops = {
    .name = "posix",
    .features = WV_ST_ATOMIC_PUT | WV_ST_DIRS | WV_ST_DIR_FSYNC,
    .put_open = posix_put_open,
    .get_open = posix_get_open,
    .stat = posix_stat,
    .list = posix_list,
    .remove = posix_remove,
    .flush = posix_flush,
    .free = posix_free,
};

int wv_storage_posix_new(const wv_repo_config *rc, wv_storage **out, wv_err *err)
{
    struct stat sb;
    if (!rc->path || rc->path[0] != '/')
        return wv_err_set(err, WV_ECONFIG, "%s: path must be absolute", rc->name);
    if (stat(rc->path, &sb) != 0) {
        int e = errno;
        wv_err_errno(err, e == ENOENT ? WV_ECONFIG : WV_EIO, e,
                     "%s: repository directory \"%s\" is not accessible", rc->name, rc->path);
        if (e == ENOENT)
            wv_err_hint(err,
                        "create it (owned by the user PostgreSQL runs as) or fix \"path\" in "
                        "[%s]; walvault does not create it, so that an unmounted disk is "
                        "never mistaken for an empty repository",
                        rc->name);
        return err ? err->code : WV_EIO;
    }
    if (!S_ISDIR(sb.st_mode))
        return wv_err_set(err, WV_ECONFIG, "%s: \"%s\" is not a directory", rc->name, rc->path);
    /* The root is opened as configured: it may be a symbolic link (see the top of this file). */
    int rootfd = open(rc->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return wv_err_errno(err, WV_EIO, errno, "%s: could not open repository directory \"%s\"",
                            rc->name, rc->path);
    posix_storage *st = wv_xcalloc(1, sizeof(*st));
    st->base.ops = &posix_ops;
    st->rootfd = rootfd;
    st->root = wv_xstrdup(rc->path);
    size_t n = strlen(st->root);
    while (n > 1 && st->root[n - 1] == '/')
        st->root[--n] = '\0';
    st->base.location = wv_xstrdup(st->root);
    st->name = wv_xasprintf("repository \"%s\"", st->root);
    *out = &st->base;
    return 0;
}
