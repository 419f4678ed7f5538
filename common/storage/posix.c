/*
 * storage/posix.c - the reference driver: a directory on a local (or mounted) file system.
 *
 * put: temp file ".NAME.wvtmp-PID-N" in the final directory, write, fsync, rename (or, for
 * WV_PUT_NOREPLACE, renameat2(RENAME_NOREPLACE)), fsync the directory. A process killed mid-write
 * leaves only a temp file, which no reader ever returns and list() never shows.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fileio.h"
#include "storage/driver.h"

typedef struct posix_storage {
    wv_storage base;
    char *root;
} posix_storage;

typedef struct posix_sink {
    wv_sink base;
    posix_storage *st;
    int fd;
    unsigned flags;
    char *final_path;
    char *tmp_path;
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

/* Remove the directories above path that are now empty, up to the repository root. A writer that
 * races us finds its directory gone and creates it again (see posix_put_open). */
static void prune_dirs(posix_storage *st, const char *path)
{
    char *p = wv_xstrdup(path);
    size_t rootlen = strlen(st->root);
    for (char *slash = strrchr(p, '/'); slash && slash > p + rootlen; slash = strrchr(p, '/')) {
        *slash = '\0';
        if (rmdir(p) != 0)
            break;
    }
    free(p);
}

/* --- sink ------------------------------------------------------------------------------------- */

static void sink_free(posix_sink *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->final_path);
    free(s->tmp_path);
    free(s);
}

/* Every message of this driver names the path of its key, so the key is recorded as named: a
 * caller that puts the repository in front does not add it again. (The storage layer names the
 * repository; a sink's or source's error is named by its user.) */
static int named(int rc, const posix_sink *s, wv_err *err)
{
    if (rc != 0)
        wv_err_names(err, NULL, s->final_path + strlen(s->st->root) + 1);
    return rc;
}

static int posix_sink_write(wv_sink *base, const void *buf, size_t len, wv_err *err)
{
    posix_sink *s = (posix_sink *)base;
    return named(wv_write_all(s->fd, buf, len, s->tmp_path, err), s, err);
}

static void posix_sink_abort(wv_sink *base)
{
    posix_sink *s = (posix_sink *)base;
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    unlink(s->tmp_path);
    prune_dirs(s->st, s->tmp_path);
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
            rc = wv_rename_noreplace(s->tmp_path, s->final_path, err);
        } else if (rename(s->tmp_path, s->final_path) != 0) {
            rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", s->tmp_path,
                              s->final_path);
        }
    }
    if (rc != 0) {
        unlink(s->tmp_path);
        named(rc, s, err);
        sink_free(s);
        return rc;
    }
    if (sync)
        rc = named(wv_fsync_parent(s->final_path, err), s, err);
    sink_free(s);
    return rc;
}

static const wv_sink_ops posix_sink_ops = {
    .write = posix_sink_write,
    .commit = posix_sink_commit,
    .abort = posix_sink_abort,
};

static int posix_put_open(wv_storage *base, const char *key, unsigned flags, wv_sink **out,
                          wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    posix_sink *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &posix_sink_ops;
    s->st = st;
    s->fd = -1;
    s->flags = flags;
    s->final_path = full_path(st, key);
    s->tmp_path = wv_temp_path_for(s->final_path);

    char *dir = wv_dirname_dup(s->final_path);
    int rc = wv_mkdir_p(dir, err);
    free(dir);
    if (rc != 0) {
        sink_free(s);
        return rc;
    }
    s->fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (s->fd < 0 && errno == ENOENT) {
        /* A concurrent remove pruned the directory just now: create it again, once. */
        dir = wv_dirname_dup(s->final_path);
        rc = wv_mkdir_p(dir, err);
        free(dir);
        if (rc != 0) {
            sink_free(s);
            return rc;
        }
        s->fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    }
    if (s->fd < 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", s->tmp_path);
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

static int posix_get_open(wv_storage *base, const char *key, int64_t offset, int64_t length,
                          wv_source **out, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    char *path = full_path(st, key);
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = errno == ENOENT ? wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found", key)
                                 : wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", path);
        free(path);
        return rc;
    }
    if (fstat(fd, &sb) != 0) {
        int rc = wv_err_errno(err, WV_EIO, errno, "could not stat \"%s\"", path);
        close(fd);
        free(path);
        return rc;
    }
    uint64_t size = (uint64_t)sb.st_size, start, len;
    if (offset < 0) {
        uint64_t want = (uint64_t)(-offset);
        start = want > size ? 0 : size - want;
        len = size - start;
    } else {
        start = (uint64_t)offset > size ? size : (uint64_t)offset;
        len = size - start;
        if (length >= 0 && (uint64_t)length < len)
            len = (uint64_t)length;
    }
    if (start > 0 && lseek(fd, (off_t)start, SEEK_SET) < 0) {
        int rc = wv_err_errno(err, WV_EIO, errno, "could not seek in \"%s\"", path);
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
    char *path = full_path(st, key);
    struct stat sb;
    int rc = 0;
    if (stat(path, &sb) != 0) {
        rc = errno == ENOENT ? wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found", key)
                             : wv_err_errno(err, WV_EIO, errno, "could not stat \"%s\"", path);
    } else if (!S_ISREG(sb.st_mode)) {
        rc = wv_err_set(err, WV_ENOTFOUND, "\"%s\" not found (not a file)", key);
    } else {
        out->size = (uint64_t)sb.st_size;
        out->mtime = (int64_t)sb.st_mtime;
    }
    free(path);
    return rc;
}

/*
 * A temp file left by a process killed mid-write: its writer (the pid in its name) is gone and it
 * has not changed for STALE_TEMP_SECONDS. The age guards against a writer on another host sharing
 * the directory, where the pid means nothing.
 */
#define STALE_TEMP_SECONDS 600

static void remove_if_stale_temp(const char *dir, const char *name)
{
    const char *p = strstr(name, ".wvtmp-");
    struct stat sb;
    if (!p)
        return;
    long pid = strtol(p + 7, NULL, 10);
    char *path = wv_xasprintf("%s/%s", dir, name);
    if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH && lstat(path, &sb) == 0 &&
        S_ISREG(sb.st_mode) && time(NULL) - sb.st_mtime > STALE_TEMP_SECONDS)
        unlink(path);
    free(path);
}

/* Walk dir (key prefix rel, "" or ending in '/'), reporting files whose key starts with prefix. */
static int walk(posix_storage *st, const char *rel, const char *prefix, wv_list_cb cb, void *arg,
                wv_err *err)
{
    char *dirpath = rel[0] ? wv_xasprintf("%s/%s", st->root, rel) : wv_xstrdup(st->root);
    DIR *d = opendir(dirpath);
    int rc = 0;
    if (!d) {
        if (errno != ENOENT && errno != ENOTDIR)
            rc = wv_err_errno(err, WV_EIO, errno, "could not list \"%s\"", dirpath);
        free(dirpath);
        return rc;
    }
    struct dirent *de;
    size_t plen = strlen(prefix);
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (wv_is_temp_name(de->d_name)) {
            remove_if_stale_temp(dirpath, de->d_name);
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
        char *path = wv_xasprintf("%s/%s", dirpath, de->d_name);
        if (lstat(path, &sb) != 0) {
            if (errno != ENOENT)
                rc = wv_err_errno(err, WV_EIO, errno, "could not stat \"%s\"", path);
        } else if (S_ISDIR(sb.st_mode)) {
            char *sub = wv_xasprintf("%s/", key);
            rc = walk(st, sub, prefix, cb, arg, err);
            free(sub);
        } else if (S_ISREG(sb.st_mode) && klen >= plen) {
            wv_stat ws = {.size = (uint64_t)sb.st_size, .mtime = (int64_t)sb.st_mtime};
            rc = cb(arg, key, &ws);
        }
        free(path);
        free(key);
    }
    if (rc == 0 && errno != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not list \"%s\"", dirpath);
    closedir(d);
    free(dirpath);
    return rc;
}

static int posix_list(wv_storage *base, const char *prefix, wv_list_cb cb, void *arg, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    /* Start at the deepest directory the prefix names. */
    const char *slash = strrchr(prefix, '/');
    char *rel = slash ? wv_xstrndup(prefix, (size_t)(slash - prefix) + 1) : wv_xstrdup("");
    int rc = walk(st, rel, prefix, cb, arg, err);
    free(rel);
    return rc;
}

static int posix_remove(wv_storage *base, const char *key, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    char *path = full_path(st, key);
    int rc = 0;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = wv_err_errno(err, WV_EIO, errno, "could not remove \"%s\"", path);
    if (rc == 0)
        prune_dirs(st, path);
    free(path);
    return rc;
}

static int posix_flush(wv_storage *base, wv_err *err)
{
    posix_storage *st = (posix_storage *)base;
    int fd = open(st->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", st->root);
    int rc = 0;
    if (syncfs(fd) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not sync the file system of \"%s\"", st->root);
    close(fd);
    return rc;
}

static void posix_free(wv_storage *base)
{
    posix_storage *st = (posix_storage *)base;
    free(st->root);
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
    posix_storage *st = wv_xcalloc(1, sizeof(*st));
    st->base.ops = &posix_ops;
    st->root = wv_xstrdup(rc->path);
    size_t n = strlen(st->root);
    while (n > 1 && st->root[n - 1] == '/')
        st->root[--n] = '\0';
    st->base.location = wv_xstrdup(st->root);
    *out = &st->base;
    return 0;
}
