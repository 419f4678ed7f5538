/* fileio.c - durable file helpers. */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"

int wv_write_all(int fd, const void *buf, size_t len, const char *path, wv_err *err)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return wv_err_errno(err, WV_EIO, errno, "could not write \"%s\"", path);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int wv_read_full(int fd, void *buf, size_t len, size_t *got, const char *path, wv_err *err)
{
    size_t total = 0;
    while (total < len) {
        ssize_t n = read(fd, (char *)buf + total, len - total);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return wv_err_errno(err, WV_EIO, errno, "could not read \"%s\"", path);
        }
        if (n == 0)
            break;
        total += (size_t)n;
    }
    *got = total;
    return 0;
}

int wv_pread_full(int fd, void *buf, size_t len, off_t off, size_t *got, const char *path,
                  wv_err *err)
{
    size_t total = 0;
    while (total < len) {
        ssize_t n = pread(fd, (char *)buf + total, len - total, off + (off_t)total);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return wv_err_errno(err, WV_EIO, errno, "could not read \"%s\"", path);
        }
        if (n == 0)
            break;
        total += (size_t)n;
    }
    *got = total;
    return 0;
}

int wv_fsync_fd(int fd, const char *path, wv_err *err)
{
    if (fsync(fd) != 0)
        return wv_err_errno(err, WV_EIO, errno, "could not fsync \"%s\"", path);
    return 0;
}

int wv_fsync_dir(const char *dir, wv_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open directory \"%s\"", dir);
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = wv_err_errno(err, WV_EIO, errno, "could not fsync directory \"%s\"", dir);
    close(fd);
    return rc;
}

char *wv_dirname_dup(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return wv_xstrdup(".");
    if (slash == path)
        return wv_xstrdup("/");
    return wv_xstrndup(path, (size_t)(slash - path));
}

int wv_fsync_parent(const char *path, wv_err *err)
{
    char *dir = wv_dirname_dup(path);
    int rc = wv_fsync_dir(dir, err);
    free(dir);
    return rc;
}

int wv_mkdir_p(const char *dir, wv_err *err)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return wv_err_set(err, WV_EIO, "\"%s\" exists and is not a directory", dir);
    }
    if (errno != ENOENT)
        return wv_err_errno(err, WV_EIO, errno, "could not stat \"%s\"", dir);
    char *parent = wv_dirname_dup(dir);
    int rc = 0;
    if (strcmp(parent, dir) != 0 && strcmp(parent, ".") != 0 && strcmp(parent, "/") != 0)
        rc = wv_mkdir_p(parent, err);
    if (rc == 0) {
        if (mkdir(dir, 0750) != 0 && errno != EEXIST)
            rc = wv_err_errno(err, WV_EIO, errno, "could not create directory \"%s\"", dir);
        else
            rc = wv_fsync_dir(parent, err);
    }
    free(parent);
    return rc;
}

char *wv_temp_path_for(const char *final_path)
{
    static atomic_uint counter;
    unsigned n = atomic_fetch_add(&counter, 1);
    const char *slash = strrchr(final_path, '/');
    if (!slash)
        return wv_xasprintf(".%s.wvtmp-%ld-%u", final_path, (long)getpid(), n);
    return wv_xasprintf("%.*s/.%s.wvtmp-%ld-%u", (int)(slash - final_path), final_path, slash + 1,
                        (long)getpid(), n);
}

int wv_is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, ".wvtmp-") != NULL;
}

int wv_rename_noreplace(const char *old_path, const char *new_path, wv_err *err)
{
    return wv_renameat_noreplace(AT_FDCWD, old_path, new_path, old_path, new_path, err);
}

int wv_renameat_noreplace(int dirfd, const char *old_name, const char *new_name,
                          const char *old_display, const char *new_display, wv_err *err)
{
    if (renameat2(dirfd, old_name, dirfd, new_name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return wv_err_set(err, WV_EEXIST, "\"%s\" already exists", new_display);
    if (errno != EINVAL && errno != ENOSYS)
        return wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", old_display,
                            new_display);
    /* The file system cannot rename without replacing: a hard link fails atomically instead. */
    if (linkat(dirfd, old_name, dirfd, new_name, 0) != 0) {
        if (errno == EEXIST)
            return wv_err_set(err, WV_EEXIST, "\"%s\" already exists", new_display);
        return wv_err_errno(err, WV_EIO, errno, "could not link \"%s\" to \"%s\"", old_display,
                            new_display);
    }
    unlinkat(dirfd, old_name, 0);
    return 0;
}

int wv_syncfs(const char *path, wv_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", path);
    int rc = 0;
    if (syncfs(fd) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not sync the file system of \"%s\"", path);
    close(fd);
    return rc;
}
