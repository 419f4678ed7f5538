/* spool.c - the per-cluster spool directory, its push records and the archiver's order. */
#include "repo/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bytes.h"
#include "core/fileio.h"
#include "pg/walname.h"

#define RECORD_MAGIC "walvault-spool 1\n"
#define RECORD_MAX   (3 * WV_ERR_MSG_MAX)

int wv_spool_cluster_path(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                          wv_err *err)
{
    const char *root = cfg->spool_path ? cfg->spool_path : WV_CONFIG_DEFAULT_SPOOL_PATH;
    int n = snprintf(out, outlen, "%s/%016" PRIX64, root, system_id);
    if (n < 0 || (size_t)n >= outlen)
        return wv_err_set(err, WV_ECONFIG, "spool_path \"%s\" is too long", root);
    return 0;
}

int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err)
{
    const char *root = cfg->spool_path ? cfg->spool_path : WV_CONFIG_DEFAULT_SPOOL_PATH;
    int rc = wv_spool_cluster_path(cfg, system_id, out, outlen, err);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    rc = wv_mkdir_p(root, err);
    if (rc != 0) {
        wv_err_hint(err,
                    "create spool_path \"%s\" for the user that runs walvault (mode 0750), "
                    "or point [global] spool_path elsewhere",
                    root);
        return rc;
    }
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return wv_err_errno(err, WV_EIO, errno, "could not create spool directory \"%s\"", out);
    if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode)) {
        wv_err_set(err, WV_EIO, "spool path \"%s\" is not a directory", out);
        wv_err_hint(err, "remove it, or point [global] spool_path elsewhere");
        return WV_EIO;
    }
    return wv_fsync_dir(root, err);
}

int wv_spool_file_of(const char *path, wv_spool_file *out, wv_err *err)
{
    struct stat sb;
    memset(out, 0, sizeof(*out));
    if (lstat(path, &sb) != 0)
        return wv_err_errno(err, errno == ENOENT ? WV_ENOTFOUND : WV_EIO, errno,
                            "could not stat \"%s\"", path);
    out->dev = (uint64_t)sb.st_dev;
    out->ino = (uint64_t)sb.st_ino;
    out->mtime_s = (int64_t)sb.st_mtim.tv_sec;
    out->mtime_ns = (int64_t)sb.st_mtim.tv_nsec;
    out->ctime_s = (int64_t)sb.st_ctim.tv_sec;
    out->ctime_ns = (int64_t)sb.st_ctim.tv_nsec;
    return 0;
}

int wv_spool_file_equal(const wv_spool_file *a, const wv_spool_file *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->mtime_s == b->mtime_s &&
           a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s && a->ctime_ns == b->ctime_ns;
}

/* A message on one line: newlines (none are expected) become spaces. */
static void append_line(wv_buf *out, const char *s)
{
    for (const char *p = s; *p; p++)
        wv_buf_append(out, *p == '\n' || *p == '\r' ? " " : p, 1);
    wv_buf_append(out, "\n", 1);
}

void wv_spool_record_format(const wv_spool_record *r, wv_buf *out)
{
    char hex[65];
    wv_hex_encode(r->sha256, 32, hex);
    wv_buf_append_str(out, RECORD_MAGIC);
    if (r->ok) {
        wv_buf_printf(out, "ok %s %" PRIu64 "\n", hex, r->size);
        if (r->has_file)
            wv_buf_printf(out,
                          "file %" PRIu64 " %" PRIu64 " %" PRId64 ".%09" PRId64 " %" PRId64
                          ".%09" PRId64 "\n",
                          r->file.dev, r->file.ino, r->file.mtime_s, r->file.mtime_ns,
                          r->file.ctime_s, r->file.ctime_ns);
        return;
    }
    wv_buf_printf(out, "error %s %" PRIu64 " %s\n", hex, r->size,
                  wv_err_name(r->err.code ? r->err.code : WV_EINTERNAL));
    append_line(out, r->err.msg);
    append_line(out, r->err.hint);
}

static int code_by_name(const char *name, size_t len)
{
    for (int c = -1; c >= WV_EINTERNAL; c--) {
        const char *n = wv_err_name(c);
        if (n && strlen(n) == len && memcmp(n, name, len) == 0)
            return c;
    }
    return 0;
}

/* The next line of [*p, end) into line (NUL-terminated, without its newline); -1 if none. */
static int next_line(const char **p, const char *end, char *line, size_t cap)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl || (size_t)(nl - *p) >= cap)
        return -1;
    memcpy(line, *p, (size_t)(nl - *p));
    line[nl - *p] = '\0';
    *p = nl + 1;
    return 0;
}

/* "file DEV INO S.NNNNNNNNN S.NNNNNNNNN" */
static int parse_u64(const char **p, char stop, uint64_t *out)
{
    const char *q = *p;
    uint64_t v = 0;
    if (*q < '0' || *q > '9')
        return 0;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*q - '0');
    }
    if (*q != stop)
        return 0;
    *p = stop ? q + 1 : q;
    *out = v;
    return 1;
}

static int parse_time(const char **p, char stop, int64_t *s, int64_t *ns)
{
    uint64_t a, b;
    const char *dot = *p;
    if (!parse_u64(p, '.', &a) || a > INT64_MAX)
        return 0;
    dot = *p;
    if (!parse_u64(p, stop, &b) || (*p - dot) != 9 + (stop ? 1 : 0) || b > 999999999)
        return 0;
    *s = (int64_t)a;
    *ns = (int64_t)b;
    return 1;
}

static int parse_file(const char *line, wv_spool_file *f)
{
    if (strncmp(line, "file ", 5) != 0)
        return 0;
    const char *p = line + 5;
    return parse_u64(&p, ' ', &f->dev) && parse_u64(&p, ' ', &f->ino) &&
           parse_time(&p, ' ', &f->mtime_s, &f->mtime_ns) &&
           parse_time(&p, '\0', &f->ctime_s, &f->ctime_ns) && *p == '\0';
}

int wv_spool_record_parse(const char *data, size_t len, const char *what, wv_spool_record *r,
                          wv_err *err)
{
    const char *p = data, *end = data + len;
    char line[WV_ERR_MSG_MAX + 128];
    memset(r, 0, sizeof(*r));
    size_t mlen = strlen(RECORD_MAGIC);
    if (len < mlen || memcmp(data, RECORD_MAGIC, mlen) != 0)
        goto bad;
    p += mlen;
    if (next_line(&p, end, line, sizeof(line)) != 0)
        goto bad;
    char *sp = strchr(line, ' ');
    if (!sp)
        goto bad;
    size_t wlen = (size_t)(sp - line);
    if (wlen == 2 && memcmp(line, "ok", 2) == 0)
        r->ok = 1;
    else if (!(wlen == 5 && memcmp(line, "error", 5) == 0))
        goto bad;
    char *hex = sp + 1;
    if (strlen(hex) < 66 || hex[64] != ' ' || wv_hex_decode(hex, r->sha256, 32) != 0)
        goto bad;
    char *num = hex + 65, *q = num;
    if (*q < '0' || *q > '9')
        goto bad;
    uint64_t size = 0;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (size > (UINT64_MAX - 9) / 10)
            goto bad;
        size = size * 10 + (uint64_t)(*q - '0');
    }
    r->size = size;
    if (r->ok) {
        if (*q != '\0')
            goto bad;
        if (p == end)
            return 0;
        if (next_line(&p, end, line, sizeof(line)) != 0 || p != end || !parse_file(line, &r->file))
            goto bad;
        r->has_file = 1;
        return 0;
    }
    if (*q != ' ' || !(r->err.code = code_by_name(q + 1, strlen(q + 1))))
        goto bad;
    if (next_line(&p, end, line, sizeof(line)) != 0 || !line[0] || strlen(line) >= WV_ERR_MSG_MAX)
        goto bad;
    memcpy(r->err.msg, line, strlen(line) + 1);
    if (next_line(&p, end, line, sizeof(line)) != 0 || strlen(line) >= WV_ERR_MSG_MAX || p != end)
        goto bad;
    memcpy(r->err.hint, line, strlen(line) + 1);
    return 0;
bad:
    memset(r, 0, sizeof(*r));
    return wv_err_set(err, WV_ECORRUPT, "spool record \"%s\" is not a walvault spool record", what);
}

int wv_spool_record_write(const char *dir, const char *name, const wv_spool_record *r, wv_err *err)
{
    char final[4096];
    if (snprintf(final, sizeof(final), "%s/%s", dir, name) >= (int)sizeof(final))
        return wv_err_set(err, WV_EIO, "spool record path \"%s/%s\" is too long", dir, name);
    wv_buf b;
    wv_buf_init(&b);
    wv_spool_record_format(r, &b);
    char *tmp = wv_temp_path_for(final);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not create spool record \"%s\"", tmp);
    else {
        rc = wv_write_all(fd, b.data, b.len, tmp, err);
        if (rc == 0)
            rc = wv_fsync_fd(fd, tmp, err);
        if (close(fd) != 0 && rc == 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not close spool record \"%s\"", tmp);
        if (rc == 0 && rename(tmp, final) != 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not rename spool record to \"%s\"", final);
        if (rc != 0)
            unlink(tmp);
        else
            rc = wv_fsync_dir(dir, err);
    }
    free(tmp);
    wv_buf_free(&b);
    return rc;
}

int wv_spool_record_read(const char *dir, const char *name, wv_spool_record *r, wv_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return wv_err_set(err, WV_EIO, "spool record path \"%s/%s\" is too long", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return wv_err_set(err, WV_ENOTFOUND, "no spool record \"%s\"", path);
        return wv_err_errno(err, WV_EIO, errno, "could not open spool record \"%s\"", path);
    }
    char buf[RECORD_MAX];
    size_t got = 0;
    int rc = wv_read_full(fd, buf, sizeof(buf), &got, path, err);
    close(fd);
    if (rc != 0)
        return rc;
    if (got == sizeof(buf))
        return wv_err_set(err, WV_ECORRUPT, "spool record \"%s\" is too large", path);
    return wv_spool_record_parse(buf, got, path, r, err);
}

int wv_spool_ready_cmp(const char *a, const char *b)
{
    wv_walname wa, wb;
    int ha = wv_walname_parse(a, &wa) == WV_WALNAME_HISTORY;
    int hb = wv_walname_parse(b, &wb) == WV_WALNAME_HISTORY;
    if (ha != hb)
        return ha ? -1 : 1;
    return strcmp(a, b);
}

static int cmp_names(const void *a, const void *b)
{
    return wv_spool_ready_cmp(*(char *const *)a, *(char *const *)b);
}

int wv_spool_list_ready(const char *status_dir, char ***out, size_t *n, wv_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(status_dir);
    if (!d)
        return wv_err_errno(err, errno == ENOENT ? WV_ENOTFOUND : WV_EIO, errno,
                            "could not open directory \"%s\"", status_dir);
    size_t cap = 16, cnt = 0;
    char **names = wv_xmalloc(cap * sizeof(*names));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 6 || strcmp(de->d_name + len - 6, ".ready") != 0)
            continue;
        char *name = wv_xstrdup(de->d_name);
        name[len - 6] = '\0';
        wv_walname wn;
        if (wv_walname_parse(name, &wn) == WV_WALNAME_INVALID) {
            free(name);
            continue;
        }
        if (cnt + 1 >= cap)
            names = wv_xrealloc(names, (cap *= 2) * sizeof(*names));
        names[cnt++] = name;
    }
    closedir(d);
    qsort(names, cnt, sizeof(*names), cmp_names);
    names[cnt] = NULL;
    *out = names;
    *n = cnt;
    return 0;
}

void wv_spool_names_free(char **names)
{
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}
