/* lag.c - lag, backoff and dropped-segment records in the spool (see lag.h). */
#include "repo/lag.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"

#define LAG_MAGIC      "walvault-lag 1\n"
#define LAG_RECORD_MAX 4096

void wv_lag_format(const wv_lag_entry *e, wv_buf *out)
{
    wv_buf_append_str(out, LAG_MAGIC);
    wv_buf_printf(out, "time %" PRId64 "\nsize %" PRIu64 "\nerror ", e->time, e->size);
    for (const char *p = e->error; *p; p++)
        wv_buf_append(out, (unsigned char)*p < 0x20 ? " " : p, 1);
    wv_buf_append_str(out, "\n");
}

void wv_lag_set_error(wv_lag_entry *e, const char *msg)
{
    size_t n = strlen(msg);
    if (n >= sizeof(e->error))
        n = sizeof(e->error) - 1;
    memcpy(e->error, msg, n);
    e->error[n] = 0;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < WV_LAG_NAME_MAX && name[0] != '.' && !strchr(name, '/');
}

int wv_lag_parse(const char *text, size_t len, const char *name, wv_lag_entry *e, wv_err *err)
{
    memset(e, 0, sizeof(*e));
    size_t ml = strlen(LAG_MAGIC);
    if (!valid_name(name))
        return wv_err_set(err, WV_ECORRUPT, "lag record \"%s\": not a WAL file name", name);
    if (len < ml || memcmp(text, LAG_MAGIC, ml) != 0)
        return wv_err_set(err, WV_ECORRUPT, "lag record \"%s\": not a walvault lag record", name);
    snprintf(e->name, sizeof(e->name), "%s", name);
    int have = 0;
    const char *p = text + ml, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return wv_err_set(err, WV_ECORRUPT, "lag record \"%s\": truncated", name);
        char line[WV_LAG_ERROR_MAX + 16];
        size_t n = (size_t)(eol - p);
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        memcpy(line, p, n);
        line[n] = 0;
        char *endp;
        if (strncmp(line, "time ", 5) == 0) {
            errno = 0;
            long long v = strtoll(line + 5, &endp, 10);
            if (errno || *endp || endp == line + 5 || v < 0)
                return wv_err_set(err, WV_ECORRUPT, "lag record \"%s\": bad time", name);
            e->time = v;
            have |= 1;
        } else if (strncmp(line, "size ", 5) == 0) {
            errno = 0;
            unsigned long long v = strtoull(line + 5, &endp, 10);
            if (errno || *endp || endp == line + 5 || line[5] == '-')
                return wv_err_set(err, WV_ECORRUPT, "lag record \"%s\": bad size", name);
            e->size = v;
            have |= 2;
        } else if (strncmp(line, "error ", 6) == 0) {
            wv_lag_set_error(e, line + 6);
            have |= 4;
        } /* other lines: from a newer version, ignored */
        p = eol + 1;
    }
    if (have != 7)
        return wv_err_set(err, WV_ECORRUPT, "lag record \"%s\": a line is missing", name);
    return 0;
}

static int dir_of(const char *cluster_dir, const char *kind, const char *repo, char *out,
                  size_t len)
{
    int n = repo ? snprintf(out, len, "%s/%s/%s", cluster_dir, kind, repo)
                 : snprintf(out, len, "%s/%s", cluster_dir, kind);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Write text to path durably: temp file beside it, fsync, rename, fsync of the directory. */
static int write_durably(const char *dir, const char *path, const void *data, size_t len,
                         wv_err *err)
{
    int rc = wv_mkdir_p(dir, err);
    if (rc != 0)
        return rc;
    char *tmp = wv_temp_path_for(path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", tmp);
        free(tmp);
        return rc;
    }
    rc = wv_write_all(fd, data, len, tmp, err);
    if (rc == 0)
        rc = wv_fsync_fd(fd, tmp, err);
    if (close(fd) != 0 && rc == 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not close \"%s\"", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", tmp, path);
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc == 0 ? wv_fsync_dir(dir, err) : rc;
}

static int read_small(const char *path, char *buf, size_t cap, size_t *got)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap);
    close(fd);
    if (n < 0)
        return -1;
    *got = (size_t)n;
    return 0;
}

int wv_lag_add(const char *cluster_dir, const char *kind, const char *repo, const wv_lag_entry *e,
               wv_err *err)
{
    char dir[4096], path[4400];
    if (!valid_name(e->name) || dir_of(cluster_dir, kind, repo, dir, sizeof(dir)) != 0)
        return wv_err_set(err, WV_EINTERNAL, "bad lag record name \"%s\"", e->name);
    snprintf(path, sizeof(path), "%s/%s", dir, e->name);
    wv_lag_entry rec = *e;
    char old[LAG_RECORD_MAX];
    size_t got = 0;
    wv_lag_entry prev;
    wv_err ignore;
    if (read_small(path, old, sizeof(old), &got) == 0 &&
        wv_lag_parse(old, got, e->name, &prev, &ignore) == 0 && prev.time > 0)
        rec.time = prev.time;
    wv_buf b = WV_BUF_INIT;
    wv_lag_format(&rec, &b);
    int rc = write_durably(dir, path, b.data, b.len, err);
    wv_buf_free(&b);
    return rc;
}

int wv_lag_remove(const char *cluster_dir, const char *kind, const char *repo, const char *name,
                  wv_err *err)
{
    char dir[4096], path[4400];
    if (!valid_name(name) || dir_of(cluster_dir, kind, repo, dir, sizeof(dir)) != 0)
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return 0;
        return wv_err_errno(err, WV_EIO, errno, "could not remove \"%s\"", path);
    }
    return wv_fsync_dir(dir, err);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const wv_lag_entry *)a)->name, ((const wv_lag_entry *)b)->name);
}

int wv_lag_load(const char *cluster_dir, const char *kind, const char *repo, wv_lag_list *out,
                wv_err *err)
{
    char dir[4096], path[4400];
    memset(out, 0, sizeof(*out));
    if (dir_of(cluster_dir, kind, repo, dir, sizeof(dir)) != 0)
        return 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return wv_err_errno(err, WV_EIO, errno, "could not read the spool directory \"%s\"", dir);
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!valid_name(de->d_name) || wv_is_temp_name(de->d_name))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        char text[LAG_RECORD_MAX];
        size_t got = 0;
        wv_lag_entry e;
        wv_err pe;
        wv_err_clear(&pe);
        if (read_small(path, text, sizeof(text), &got) != 0) {
            wv_log_warn("could not read the lag record \"%s\": %s", path, strerror(errno));
            continue;
        }
        if (wv_lag_parse(text, got, de->d_name, &e, &pe) != 0) {
            wv_log_warn("%s (\"%s\"): skipped", pe.msg, path);
            continue;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->e = wv_xrealloc(out->e, cap * sizeof(*out->e));
        }
        out->e[out->n++] = e;
    }
    closedir(d);
    if (out->n)
        qsort(out->e, out->n, sizeof(*out->e), entry_cmp);
    return 0;
}

void wv_lag_list_free(wv_lag_list *l)
{
    free(l->e);
    memset(l, 0, sizeof(*l));
}

void wv_lag_summary(const wv_lag_list *l, size_t *files, uint64_t *bytes, int64_t *oldest)
{
    *files = l->n;
    *bytes = 0;
    *oldest = 0;
    for (size_t i = 0; i < l->n; i++) {
        *bytes += l->e[i].size;
        if (*oldest == 0 || (l->e[i].time && l->e[i].time < *oldest))
            *oldest = l->e[i].time;
    }
}

int64_t wv_lag_backoff_next(int64_t prev_delay)
{
    if (prev_delay < WV_LAG_BACKOFF_MIN)
        return WV_LAG_BACKOFF_MIN;
    if (prev_delay >= WV_LAG_BACKOFF_MAX / 2)
        return WV_LAG_BACKOFF_MAX;
    return prev_delay * 2;
}

void wv_lag_backoff_load(const char *cluster_dir, const char *repo, int64_t *next, int64_t *delay)
{
    char path[4400], text[256];
    size_t got = 0;
    long long n = 0, d = 0;
    *next = *delay = 0;
    snprintf(path, sizeof(path), "%s/lag/%s/.backoff", cluster_dir, repo);
    if (read_small(path, text, sizeof(text) - 1, &got) != 0)
        return;
    text[got] = 0;
    if (sscanf(text, "next %lld\ndelay %lld", &n, &d) == 2 && n >= 0 && d >= 0) {
        *next = n;
        *delay = d;
    }
}

int wv_lag_backoff_store(const char *cluster_dir, const char *repo, int64_t next, int64_t delay,
                         wv_err *err)
{
    char dir[4096], path[4400], text[128];
    snprintf(dir, sizeof(dir), "%s/lag/%s", cluster_dir, repo);
    snprintf(path, sizeof(path), "%s/.backoff", dir);
    int n = snprintf(text, sizeof(text), "next %" PRId64 "\ndelay %" PRId64 "\n", next, delay);
    return write_durably(dir, path, text, (size_t)n, err);
}

void wv_lag_backoff_clear(const char *cluster_dir, const char *repo)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/lag/%s/.backoff", cluster_dir, repo);
    unlink(path);
}

uint64_t wv_lag_queue_bytes(uint64_t ready, uint64_t segsize, uint64_t cur, int cur_counted)
{
    uint64_t q = ready > UINT64_MAX / (segsize ? segsize : 1) ? UINT64_MAX : ready * segsize;
    if (!cur_counted)
        q = q > UINT64_MAX - cur ? UINT64_MAX : q + cur;
    return q;
}

int wv_lag_queue_exceeded(uint64_t queued, uint64_t max)
{
    return max > 0 && queued > max;
}

void wv_lag_gap_format(int64_t time, const char *reason, wv_buf *out)
{
    wv_buf_printf(out, "walvault-gap 1\ntime %" PRId64 "\nreason ", time);
    for (const char *p = reason; *p; p++)
        wv_buf_append(out, (unsigned char)*p < 0x20 ? " " : p, 1);
    wv_buf_append_str(out, "\n");
}
