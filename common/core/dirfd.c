/* dirfd.c - paths resolved beneath a directory descriptor, one component at a time. */
#include "core/dirfd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"

#define COMP_MAX 256

int wv_relpath_valid(const char *rel)
{
    if (!rel)
        return 0;
    if (!*rel)
        return 1;
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || n >= COMP_MAX || (n == 1 && p[0] == '.') ||
            (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!slash)
            return 1;
        p = slash + 1;
    }
}

static int refuse_link(const char *name, const char *rel, size_t upto, wv_err *err)
{
    wv_err_set(err, WV_EREFUSED,
               "%s: \"%.*s\" is a symbolic link; refusing to follow it (it could lead outside)",
               name, (int)upto, rel);
    return wv_err_hint(err, "replace it with a real directory, or remove it");
}

/* One step: open comp beneath at as a directory, creating it if asked. */
static int step(int at, const char *comp, int follow, unsigned flags, mode_t mode, const char *name,
                const char *rel, size_t upto, int *out, wv_err *err)
{
    int oflags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = openat(at, comp, oflags);
        if (fd >= 0) {
            *out = fd;
            return 0;
        }
        int e = errno;
        if (e == ENOENT && (flags & WV_DIRFD_CREATE) && attempt == 0) {
            if (mkdirat(at, comp, mode) != 0 && errno != EEXIST)
                return wv_err_errno(err, WV_EIO, errno, "%s: could not create directory \"%.*s\"",
                                    name, (int)upto, rel);
            if ((flags & WV_DIRFD_SYNC) && fsync(at) != 0 && errno != EINVAL)
                return wv_err_errno(err, WV_EIO, errno,
                                    "%s: could not fsync the directory of "
                                    "\"%.*s\"",
                                    name, (int)upto, rel);
            continue;
        }
        if (e == ENOENT)
            return wv_err_set(err, WV_ENOTFOUND, "%s: \"%.*s\" not found", name, (int)upto, rel);
        struct stat sb;
        if ((e == ELOOP || e == ENOTDIR) && fstatat(at, comp, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISLNK(sb.st_mode))
                return refuse_link(name, rel, upto, err);
            return wv_err_set(err, WV_EIO, "%s: \"%.*s\" exists and is not a directory", name,
                              (int)upto, rel);
        }
        return wv_err_errno(err, WV_EIO, e, "%s: could not open directory \"%.*s\"", name,
                            (int)upto, rel);
    }
    return wv_err_set(err, WV_EIO, "%s: \"%.*s\" vanished while it was created", name, (int)upto,
                      rel);
}

/* Walk the first len bytes of rel. */
static int walk(int rootfd, const char *name, const char *rel, size_t len, unsigned flags,
                mode_t mode, int *out, wv_err *err)
{
    char comp[COMP_MAX];
    if (len == 0) {
        /* A new open file description, not a dup: a directory's read position is not shared. */
        *out = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (*out < 0)
            return wv_err_errno(err, WV_EIO, errno, "%s: could not open it", name);
        return 0;
    }
    int cur = rootfd; /* borrowed until the first step replaces it */
    size_t pos = 0;
    int first = 1;
    while (pos < len) {
        const char *slash = memchr(rel + pos, '/', len - pos);
        size_t n = slash ? (size_t)(slash - (rel + pos)) : len - pos;
        memcpy(comp, rel + pos, n);
        comp[n] = '\0';
        int next = -1;
        int rc = step(cur, comp, first && (flags & WV_DIRFD_FOLLOW_FIRST), flags, mode, name, rel,
                      pos + n, &next, err);
        if (cur != rootfd)
            close(cur);
        if (rc != 0)
            return rc;
        cur = next;
        first = 0;
        pos += n + (slash ? 1 : 0);
    }
    *out = cur;
    return 0;
}

static int bad_path(const char *name, const char *rel, wv_err *err)
{
    return wv_err_set(err, WV_EREFUSED,
                      "%s: \"%s\" is not a relative path without \".\" and \"..\" components", name,
                      rel ? rel : "");
}

int wv_dirfd_open(int rootfd, const char *name, const char *rel, unsigned flags, mode_t mode,
                  int *out, wv_err *err)
{
    *out = -1;
    if (!wv_relpath_valid(rel))
        return bad_path(name, rel, err);
    return walk(rootfd, name, rel, strlen(rel), flags, mode, out, err);
}

int wv_dirfd_open_parent(int rootfd, const char *name, const char *rel, unsigned flags, mode_t mode,
                         int *out, const char **base, wv_err *err)
{
    *out = -1;
    if (!wv_relpath_valid(rel) || !*rel)
        return bad_path(name, rel, err);
    const char *slash = strrchr(rel, '/');
    *base = slash ? slash + 1 : rel;
    return walk(rootfd, name, rel, slash ? (size_t)(slash - rel) : 0, flags, mode, out, err);
}

void wv_dirfd_prune_empty(int rootfd, const char *rel, unsigned flags)
{
    if (!wv_relpath_valid(rel))
        return;
    size_t len = strlen(rel);
    while (len > 0) {
        /* rel[0..len) is a directory: remove it from its parent if empty. */
        const char *slash = NULL;
        for (size_t i = len; i-- > 0;)
            if (rel[i] == '/') {
                slash = rel + i;
                break;
            }
        size_t plen = slash ? (size_t)(slash - rel) : 0;
        if (plen == 0 && (flags & WV_DIRFD_FOLLOW_FIRST))
            return; /* a top-level directory is the administrator's, maybe a link: kept */
        int parent = -1;
        wv_err e;
        if (walk(rootfd, "", rel, plen, flags & WV_DIRFD_FOLLOW_FIRST, 0, &parent, &e) != 0)
            return;
        char comp[COMP_MAX];
        size_t start = slash ? plen + 1 : 0;
        memcpy(comp, rel + start, len - start);
        comp[len - start] = '\0';
        int rc = unlinkat(parent, comp, AT_REMOVEDIR);
        close(parent);
        if (rc != 0)
            return;
        len = plen;
    }
}

int wv_dirfd_remove_tree(int parent, const char *name, const char *display, wv_err *err)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return wv_err_errno(err, WV_EIO, errno, "could not remove \"%s\"", display);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", display);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return wv_err_errno(err, WV_EIO, errno, "could not list \"%s\"", display);
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *sub = wv_xasprintf("%s/%s", display, de->d_name);
        rc = wv_dirfd_remove_tree(dirfd(d), de->d_name, sub, err);
        free(sub);
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = wv_err_errno(err, WV_EIO, errno, "could not remove \"%s\"", display);
    return rc;
}

mode_t wv_pg_dir_mode(uint32_t recorded, int group)
{
    (void)recorded;
    return group ? 0750 : 0700;
}

mode_t wv_pg_file_mode(uint32_t recorded, int group)
{
    return group && (recorded & 0040) ? 0640 : 0600;
}

int wv_pg_group_access(uint32_t pgdata_mode)
{
    return (pgdata_mode & 0040) != 0;
}
