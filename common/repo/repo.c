/* repo.c - repository layout and rules on top of a storage driver. */
#include "repo/repo.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/bytes.h"
#include "core/fileio.h"
#include "pg/walname.h"
#include "pg/walpage.h"
#include "pipeline/crypt.h"

/* The configuration's keys, and the repository's key record opened with them (keys.h): the
 * one place where a repository becomes plain or encrypted for this process. */
static int open_keys(wv_repo *r, wv_err *err)
{
    const wv_repo_config *c = r->rc;
    int rc = wv_user_keys_load(c->encrypt_key_file, c->encrypt_public_key_file,
                               c->encrypt_private_key_file, &r->uk, err);
    if (rc == 0)
        rc = wv_repo_keys_open(r->st, c->name, r->uk, -1, &r->keys, err);
    if (rc == 0 && r->keys)
        wv_storage_set_crypto(r->st, r->keys->crypto);
    if (rc == 0)
        wv_err_clear(err); /* callers keep err as a per-repository status */
    return rc;
}

int wv_repo_open(const wv_repo_config *rc, wv_repo **out, wv_err *err)
{
    wv_storage *st = NULL;
    int rc_ = wv_storage_open(rc, &st, err);
    if (rc_ != 0)
        return rc_;
    wv_repo *r = wv_xcalloc(1, sizeof(*r));
    r->rc = rc;
    r->st = st;
    if ((rc_ = open_keys(r, err)) != 0) {
        wv_repo_close(r);
        return rc_;
    }
    *out = r;
    return 0;
}

void wv_repo_close(wv_repo *r)
{
    if (!r)
        return;
    if (r->st)
        wv_storage_set_crypto(r->st, NULL);
    wv_repo_keys_free(r->keys);
    wv_user_keys_free(r->uk);
    wv_storage_free(r->st);
    free(r);
}

static int parse_info(wv_repo *r, const char *text, wv_repo_info *info, wv_err *err)
{
    memset(info, 0, sizeof(*info));
    const char *p = text;
    int seen = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[256];
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = eol ? eol + 1 : p + n;
        char *eq = strchr(line, '=');
        if (line[0] == '#' || line[0] == '\0' || !eq)
            continue;
        *eq = '\0';
        const char *key = line, *val = eq + 1;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end)
            return wv_err_set(err, WV_ECORRUPT, "%s: bad value for \"%s\" in %s", r->rc->name, key,
                              WV_REPO_INFO_KEY);
        if (strcmp(key, "format") == 0) {
            info->format = (int)v;
            seen |= 1;
        } else if (strcmp(key, "system_identifier") == 0) {
            info->system_id = v;
            seen |= 2;
        } else if (strcmp(key, "pg_major") == 0) {
            info->pg_major = (uint32_t)v;
            seen |= 4;
        } else if (strcmp(key, "wal_segment_size") == 0) {
            info->wal_segsize = v;
            seen |= 8;
        }
    }
    if (seen != 15)
        return wv_err_set(err, WV_ECORRUPT, "%s: %s in \"%s\" is incomplete", r->rc->name,
                          WV_REPO_INFO_KEY, wv_storage_location(r->st));
    if (info->format > WV_REPO_FORMAT)
        return wv_err_set(err, WV_EFORMAT,
                          "%s: %s in \"%s\": repository format %d was written by a newer walvault "
                          "(this one reads format %d)",
                          r->rc->name, WV_REPO_INFO_KEY, wv_storage_location(r->st), info->format,
                          WV_REPO_FORMAT);
    const char *why = wv_repo_info_invalid(info);
    if (why) {
        wv_err_set(err, WV_ECORRUPT, "%s: %s in \"%s\" is invalid: %s", r->rc->name,
                   WV_REPO_INFO_KEY, wv_storage_location(r->st), why);
        return wv_err_hint(err,
                           "walvault.repo is written once by walvault and never edited: restore "
                           "it from a copy of this repository");
    }
    return 0;
}

const char *wv_repo_info_invalid(const wv_repo_info *info)
{
    if (info->format < 1 || info->format > WV_REPO_FORMAT)
        return "format is not a known repository format";
    if (info->system_id == 0)
        return "system_identifier is 0";
    if (info->pg_major < WV_PG_MAJOR_MIN || info->pg_major > WV_PG_MAJOR_MAX)
        return "pg_major is not a PostgreSQL major version walvault knows";
    if (!wv_wal_segsize_valid(info->wal_segsize))
        return "wal_segment_size is not a power of two from 1 MiB to 1 GiB";
    return NULL;
}

/* wv_repo_load_info, keeping walvault.repo's text in b (the caller frees it). */
static int load_info_text(wv_repo *r, wv_buf *b, wv_err *err)
{
    int rc = wv_storage_get_all(r->st, WV_REPO_INFO_KEY, 64 * 1024, b, err);
    if (rc == 0)
        rc = parse_info(r, wv_buf_cstr(b), &r->info, err);
    if (rc == 0)
        r->have_info = 1;
    return rc;
}

int wv_repo_load_info(wv_repo *r, wv_err *err)
{
    wv_buf b = WV_BUF_INIT;
    int rc = load_info_text(r, &b, err);
    wv_buf_free(&b);
    return rc;
}

int wv_repo_probe_noreplace(wv_repo *r, wv_err *err)
{
    if (!(wv_storage_features(r->st) & WV_ST_ROUND_TRIPS))
        return 0;
    wv_buf b = WV_BUF_INIT;
    int rc = load_info_text(r, &b, err);
    if (rc == WV_ENOTFOUND) {
        wv_err_clear(err); /* a first use: probe once this handle has written it */
        __atomic_store_n(&r->probe_on_create, 1, __ATOMIC_RELEASE);
        rc = 0;
    } else if (rc == 0) {
        rc = wv_storage_probe_noreplace(r->st, WV_REPO_INFO_KEY, b.data, b.len, err);
    }
    wv_buf_free(&b);
    return rc;
}

int wv_repo_check_cluster(wv_repo *r, uint64_t system_id, uint32_t pg_major, uint64_t wal_segsize,
                          wv_err *err)
{
    int rc = r->have_info ? 0 : wv_repo_load_info(r, err);
    if (rc == WV_ENOTFOUND) {
        /* First use: record this cluster. Another process may win the race; then re-read. */
        char text[256];
        int n = snprintf(text, sizeof(text),
                         "# walvault repository: do not edit\nformat=%d\nsystem_identifier=%" PRIu64
                         "\npg_major=%" PRIu32 "\nwal_segment_size=%" PRIu64 "\n",
                         WV_REPO_FORMAT, system_id, pg_major, wal_segsize);
        rc = wv_storage_put_all(r->st, WV_REPO_INFO_KEY, WV_PUT_NOREPLACE, text, (size_t)n, err);
        if (rc == 0 && __atomic_exchange_n(&r->probe_on_create, 0, __ATOMIC_ACQ_REL)) {
            wv_err pe; /* only a saving lost if it fails: NOREPLACE puts keep their check */
            (void)wv_storage_probe_noreplace(r->st, WV_REPO_INFO_KEY, text, (size_t)n, &pe);
        }
        if (rc == 0) {
            r->have_info = 1;
            r->info.format = WV_REPO_FORMAT;
            r->info.system_id = system_id;
            r->info.pg_major = pg_major;
            r->info.wal_segsize = wal_segsize;
            return 0;
        }
        if (rc != WV_EEXIST)
            return rc;
        rc = wv_repo_load_info(r, err);
    }
    if (rc != 0)
        return rc;
    /* The major version first: after pg_upgrade the system identifier differs too, and the version
     * is what tells the user what happened. */
    if (pg_major && r->info.pg_major != pg_major) {
        wv_err_set(err, WV_EMISMATCH,
                   "%s: refused: this cluster is PostgreSQL %" PRIu32 ", but repository \"%s\" "
                   "holds PostgreSQL %" PRIu32 " (a repository belongs to one major version)",
                   r->rc->name, pg_major, wv_storage_location(r->st), r->info.pg_major);
        return wv_err_hint(
            err,
            "after pg_upgrade, archive PostgreSQL %" PRIu32 " into a new repository: "
            "point [%s] at a new location or add a [repoN] for it and use that; "
            "this one stays readable for its PostgreSQL %" PRIu32 " backups (nothing was written)",
            pg_major, r->rc->name, r->info.pg_major);
    }
    if (r->info.system_id != system_id) {
        wv_err_set(err, WV_EMISMATCH,
                   "%s: refused: this WAL belongs to database system %" PRIu64
                   ", but repository \"%s\" belongs to database system %" PRIu64,
                   r->rc->name, system_id, wv_storage_location(r->st), r->info.system_id);
        return wv_err_hint(err, "each cluster needs its own repository: a new initdb or a copy "
                                "promoted elsewhere must not archive here; point its "
                                "archive_command at another repository (nothing was written)");
    }
    if (r->info.wal_segsize != wal_segsize) {
        wv_err_set(err, WV_EMISMATCH,
                   "%s: refused: this cluster has %" PRIu64
                   "-byte WAL segments, but repository \"%s\" "
                   "holds %" PRIu64 "-byte segments",
                   r->rc->name, wal_segsize, wv_storage_location(r->st), r->info.wal_segsize);
        return wv_err_hint(err, "after a change of --wal-segsize, use a new repository");
    }
    return 0;
}

int wv_repo_wal_key(const char *walname, char *out, size_t outlen, wv_err *err)
{
    wv_walname wn;
    int n;
    switch (wv_walname_parse(walname, &wn)) {
    case WV_WALNAME_SEGMENT:
    case WV_WALNAME_PARTIAL:
    case WV_WALNAME_BACKUP:
        n = snprintf(out, outlen, "wal/%.16s/%s", walname, walname);
        break;
    case WV_WALNAME_HISTORY:
        n = snprintf(out, outlen, "wal/history/%s", walname);
        break;
    default:
        return wv_err_set(err, WV_EUSAGE,
                          "\"%s\" is not a WAL segment, partial segment, timeline history or "
                          "backup history file name",
                          walname);
    }
    if (n < 0 || (size_t)n >= outlen)
        return wv_err_set(err, WV_EINTERNAL, "object key for \"%s\" is too long", walname);
    return 0;
}

/* How much of a suffix read is opened: the trailer only; the sealed metadata too (or fail); the
 * metadata when this host can open it, else the trailer (public-key mode, no private key). */
enum { SUFFIX_TRAILER, SUFFIX_OPEN, SUFFIX_BEST };

static int read_suffix(wv_storage *st, const char *key, int open, wv_obj_info *info, wv_err *err)
{
    wv_source *src = NULL;
    uint8_t buf[WV_OBJ_SUFFIX_MAX];
    size_t have = 0;
    int rc = wv_storage_get_open(st, key, -(int64_t)sizeof(buf), -1, &src, err);
    if (rc != 0)
        return rc;
    while (have < sizeof(buf)) {
        size_t got = 0;
        rc = wv_source_read(src, buf + have, sizeof(buf) - have, &got, err);
        if (rc != 0 || got == 0)
            break;
        have += got;
    }
    wv_source_close(src);
    if (rc != 0)
        return rc;
    rc = wv_object_info_decode(buf, have, info, err);
    if (rc == 0 && open != SUFFIX_TRAILER && info->sealed) {
        const wv_obj_crypto *c = wv_repo_crypto(st);
        wv_obj_info opened;
        wv_err e;
        wv_err_clear(&e);
        rc = wv_object_info_open(buf, have, key, c, &opened, &e);
        if (rc == 0)
            *info = opened;
        else if (open == SUFFIX_BEST && (rc == WV_EKEY || rc == WV_EPRIVKEY) && c &&
                 c->mode == WV_OBJ_KEYMODE_X25519)
            rc = 0; /* the trailer's keyed digest is what this host can know */
        else if (err)
            *err = e;
    }
    if (rc != 0)
        wv_err_context(err, wv_storage_name(st), key);
    return rc;
}

int wv_repo_read_info(wv_storage *st, const char *key, wv_obj_info *info, wv_err *err)
{
    return read_suffix(st, key, SUFFIX_OPEN, info, err);
}

int wv_repo_read_trailer(wv_storage *st, const char *key, wv_obj_info *info, wv_err *err)
{
    return read_suffix(st, key, SUFFIX_TRAILER, info, err);
}

int wv_repo_content_info(wv_storage *st, const char *key, wv_obj_info *info, wv_err *err)
{
    return read_suffix(st, key, SUFFIX_BEST, info, err);
}

/* Plain content written into an object writer (encrypted puts). */
typedef struct objw_filter {
    wv_filter base;
    wv_objwriter *w;
} objw_filter;

static int objw_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    return wv_objwriter_write(((objw_filter *)f)->w, buf, len, err);
}

static int objw_finish(wv_filter *f, wv_err *err)
{
    return wv_objwriter_finish(((objw_filter *)f)->w, NULL, err);
}

static void objw_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops objw_ops = {
    .name = "object writer",
    .write = objw_write,
    .finish = objw_finish,
    .free = objw_free,
};

int wv_repo_put_stream(wv_storage *st, const char *key, unsigned flags, wv_repo_fill_fn fill,
                       void *arg, wv_err *err)
{
    const wv_obj_crypto *c = wv_repo_crypto(st);
    wv_sink *sink = NULL;
    int rc = wv_storage_put_open(st, key, flags, &sink, err);
    if (rc != 0)
        return rc;
    wv_objwriter *w = NULL;
    wv_filter *f;
    if (c) {
        wv_obj_opts o = {.compress = WV_COMPRESS_LZ4,
                         .level = 1,
                         .kind = WV_OBJ_KIND_GENERIC,
                         .name = key,
                         .crypto = c};
        w = wv_objwriter_new(&sink, 1, &o);
        objw_filter *of = wv_xcalloc(1, sizeof(*of));
        of->base.ops = &objw_ops;
        of->w = w;
        f = &of->base;
    } else {
        f = wv_filter_sink_new(sink);
    }
    rc = fill(arg, f, err);
    wv_filter_chain_free(f);
    wv_objwriter_free(w);
    if (rc != 0) {
        wv_sink_abort(sink);
        return rc;
    }
    return wv_sink_commit(sink, err);
}

int wv_repo_get_stream(wv_storage *st, const char *key, wv_filter *dest, wv_err *err)
{
    wv_source *src = NULL;
    int rc = wv_storage_get_open(st, key, 0, -1, &src, err);
    if (rc != 0)
        return rc;
    const wv_obj_crypto *c = wv_repo_crypto(st);
    if (c) {
        rc = wv_object_read_opts(src, dest, &(wv_objread_opts){.key = key, .crypto = c}, NULL, err);
        if (rc != 0)
            wv_err_context(err, wv_storage_name(st), key);
    } else {
        uint8_t tmp[64 * 1024];
        for (;;) {
            size_t got = 0;
            if ((rc = wv_source_read(src, tmp, sizeof(tmp), &got, err)) < 0)
                break;
            if (got == 0) {
                rc = wv_filter_finish(dest, err);
                break;
            }
            if ((rc = wv_filter_write(dest, tmp, got, err)) < 0)
                break;
        }
    }
    wv_source_close(src);
    return rc;
}

typedef struct bytes_fill {
    const void *data;
    size_t len;
} bytes_fill;

static int fill_bytes(void *arg, wv_filter *dest, wv_err *err)
{
    bytes_fill *b = arg;
    int rc = wv_filter_write(dest, b->data, b->len, err);
    return rc ? rc : wv_filter_finish(dest, err);
}

int wv_repo_put_text(wv_storage *st, const char *key, unsigned flags, const void *data, size_t len,
                     wv_err *err)
{
    if (!wv_repo_crypto(st))
        return wv_storage_put_all(st, key, flags, data, len, err);
    bytes_fill b = {data, len};
    return wv_repo_put_stream(st, key, flags, fill_bytes, &b, err);
}

int wv_repo_get_text(wv_storage *st, const char *key, size_t max, wv_buf *out, wv_err *err)
{
    const wv_obj_crypto *c = wv_repo_crypto(st);
    if (!c)
        return wv_storage_get_all(st, key, max, out, err);
    wv_source *src = NULL;
    int rc = wv_storage_get_open(st, key, 0, -1, &src, err);
    if (rc != 0)
        return rc;
    wv_filter *f = wv_filter_buf_new(out);
    rc = wv_object_read_opts(
        src, f,
        &(wv_objread_opts){.flags = WV_OBJREAD_LIMIT, .key = key, .max_plain = max, .crypto = c},
        NULL, err);
    wv_filter_chain_free(f);
    wv_source_close(src);
    if (rc != 0)
        wv_err_context(err, wv_storage_name(st), key);
    return rc;
}

int wv_repo_get_file(wv_storage *st, const char *key, const char *dest_path, unsigned flags,
                     uint64_t max_plain, wv_obj_info *info, wv_err *err)
{
    return wv_repo_get_file_range(st, key, 0, -1, dest_path, flags, max_plain, info, err);
}

int wv_repo_write_file(const char *dest_path, unsigned flags, wv_repo_fill_fn fill, void *arg,
                       wv_err *err)
{
    int nosync = (flags & WV_GET_NOSYNC) != 0;
    char *tmp = wv_temp_path_for(dest_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int rc = wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", tmp);
        free(tmp);
        return rc;
    }
    wv_filter *dest = wv_filter_fd_new(fd);
    int rc = fill(arg, dest, err);
    wv_filter_chain_free(dest);
    if (rc == 0 && !nosync)
        rc = wv_fsync_fd(fd, tmp, err);
    if (close(fd) != 0 && rc == 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not close \"%s\"", tmp);
    if (rc == 0 && rename(tmp, dest_path) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", tmp, dest_path);
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return nosync ? 0 : wv_fsync_parent(dest_path, err);
}

typedef struct get_fill {
    wv_source *src;
    unsigned flags;
    wv_obj_info *info;
    wv_storage *st;
    const char *key;
    int64_t offset, length;
    uint64_t max_plain;
    const char *walname;    /* a WAL-directory file: its content is checked on the way */
    const wv_repo_info *ri; /* for walname: the repository's info, or NULL */
} get_fill;

static int fill_from_object(void *arg, wv_filter *dest, wv_err *err)
{
    get_fill *g = arg;
    wv_objread_opts o = {.flags = (g->flags & WV_GET_HASH_THREAD) ? WV_OBJREAD_HASH_THREAD : 0,
                         .key = g->key,
                         .max_plain = g->max_plain == WV_GET_NOLIMIT ? 0 : g->max_plain,
                         .crypto = wv_repo_crypto(g->st)};
    if (g->max_plain != WV_GET_NOLIMIT)
        o.flags |= WV_OBJREAD_LIMIT;
    wv_filter *check = g->walname ? wv_repo_walcheck_new(dest, g->walname, g->ri) : NULL;
    int rc = wv_object_read_opts(g->src, check ? check : dest, &o, g->info, err);
    if (check)
        check->ops->free(check);
    if (rc != 0 && g->length >= 0)
        wv_err_context_at(err, wv_storage_name(g->st), g->key, " at offset %" PRId64, g->offset);
    else if (rc != 0)
        wv_err_context(err, wv_storage_name(g->st), g->key);
    return rc;
}

int wv_repo_get_file_range(wv_storage *st, const char *key, int64_t offset, int64_t length,
                           const char *dest_path, unsigned flags, uint64_t max_plain,
                           wv_obj_info *info, wv_err *err)
{
    wv_source *src = NULL;
    int rc = wv_storage_get_open(st, key, offset, length, &src, err);
    if (rc != 0)
        return rc;
    get_fill g = {src, flags, info, st, key, offset, length, max_plain, NULL, NULL};
    rc = wv_repo_write_file(dest_path, flags, fill_from_object, &g, err);
    wv_source_close(src);
    return rc;
}

int wv_repo_get_wal(wv_storage *st, const wv_repo_info *ri, const char *walname,
                    const char *dest_path, unsigned flags, wv_obj_info *info, wv_err *err)
{
    char key[256];
    wv_source *src = NULL;
    int rc = wv_repo_wal_key(walname, key, sizeof(key), err);
    if (rc != 0)
        return rc;
    if ((rc = wv_storage_get_open(st, key, 0, -1, &src, err)) != 0)
        return rc;
    get_fill g = {src, flags, info, st, key, 0, -1, wv_repo_wal_max_size(walname, ri), walname, ri};
    rc = wv_repo_write_file(dest_path, flags, fill_from_object, &g, err);
    wv_source_close(src);
    return rc;
}

/* ---- what an archived WAL-directory file must hold ------------------------------------------ */

uint64_t wv_repo_wal_max_size(const char *walname, const wv_repo_info *ri)
{
    wv_walname wn;
    switch (wv_walname_parse(walname, &wn)) {
    case WV_WALNAME_SEGMENT:
    case WV_WALNAME_PARTIAL:
        return ri ? ri->wal_segsize : WV_WAL_SEGSIZE_MAX;
    default:
        return WV_REPO_WAL_TEXT_MAX;
    }
}

typedef struct walcheck {
    wv_filter base;
    wv_walname wn;
    char name[64];
    const wv_repo_info *ri;
    uint64_t total;
    uint8_t head[WV_XLP_LONG_HEADER_SIZE];
    int head_checked;
    wv_buf text; /* history and backup history files: the whole content (at most the cap) */
    /* A verdict on the content is held back until the end: the object reader finishes this stage
     * only once the whole object has verified, so a damaged object is reported as damaged (a
     * flipped byte in the first page header is not a misnamed file) and the rest of a refused
     * file never reaches dest. */
    int bad_rc;
    wv_err bad;
} walcheck;

static int walcheck_bad(walcheck *c, wv_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int walcheck_bad(walcheck *c, wv_err *err, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    wv_err_set(err, WV_ECORRUPT, "the object is not WAL file %s: %s", c->name, why);
    return wv_err_hint(err, "it was stored under a wrong name or damaged; fetch it from another "
                            "repository, or archive it again if the original still exists");
}

/* The first page header of a segment or partial segment, once its 40 bytes are in. */
static int walcheck_head(walcheck *c, wv_err *err)
{
    wv_walpage pg;
    wv_err e;
    wv_err_clear(&e);
    if (wv_walpage_check_first(c->head, sizeof(c->head), c->name, &pg, &e) != 0)
        return walcheck_bad(c, err, "%s", e.msg);
    const wv_repo_info *ri = c->ri;
    uint64_t segsize = ri ? ri->wal_segsize : pg.seg_size;
    int major = wv_walpage_major_of_magic(pg.magic);
    if (ri && (uint32_t)major != ri->pg_major)
        return walcheck_bad(c, err,
                            "its pages are PostgreSQL %d WAL (magic 0x%04X), the repository's "
                            "cluster is PostgreSQL %" PRIu32,
                            major, pg.magic, ri->pg_major);
    if (ri && pg.sysid != ri->system_id)
        return walcheck_bad(c, err,
                            "it is WAL of database system %" PRIu64
                            ", the repository's cluster is %" PRIu64,
                            pg.sysid, ri->system_id);
    if (pg.seg_size != segsize)
        return walcheck_bad(
            c, err, "its header says %" PRIu32 "-byte segments, the repository's are %" PRIu64,
            pg.seg_size, segsize);
    if (!wv_walname_valid_for_segsize(&c->wn, segsize))
        return walcheck_bad(c, err, "the name is no segment of %" PRIu64 "-byte segments", segsize);
    uint64_t start = wv_segno_to_lsn(wv_walname_segno(&c->wn, segsize), segsize);
    if (pg.pageaddr != start) {
        char a[WV_LSN_LEN], b[WV_LSN_LEN];
        wv_lsn_format(pg.pageaddr, a);
        wv_lsn_format(start, b);
        return walcheck_bad(c, err, "its first page is at %s, the segment starts at %s", a, b);
    }
    /* At a timeline switch the new timeline's first segment begins with a copy of the old one's
     * pages, which keep the old timeline: the first page's timeline may be lower, never higher. */
    if (pg.timeline > c->wn.tli)
        return walcheck_bad(c, err,
                            "its first page is of timeline %" PRIu32 ", the name's is %" PRIu32,
                            pg.timeline, c->wn.tli);
    c->head_checked = 1;
    return 0;
}

static int walcheck_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    walcheck *c = (walcheck *)f;
    int rc;
    if (c->wn.kind == WV_WALNAME_SEGMENT || c->wn.kind == WV_WALNAME_PARTIAL) {
        if (!c->head_checked && c->total < sizeof(c->head)) {
            size_t n = sizeof(c->head) - (size_t)c->total;
            if (n > len)
                n = len;
            memcpy(c->head + c->total, buf, n);
            if (c->total + n == sizeof(c->head) && (rc = walcheck_head(c, &c->bad)) < 0)
                c->bad_rc = rc;
        }
    } else if (!c->bad_rc) {
        if (c->text.len + len > WV_REPO_WAL_TEXT_MAX)
            c->bad_rc = walcheck_bad(c, &c->bad, "more than %d bytes", WV_REPO_WAL_TEXT_MAX);
        else
            wv_buf_append(&c->text, buf, len);
    }
    c->total += len;
    return c->bad_rc ? 0 : wv_filter_write(f->next, buf, len, err);
}

static int walcheck_finish(wv_filter *f, wv_err *err)
{
    walcheck *c = (walcheck *)f;
    const char *start = "START WAL LOCATION: ";
    if (c->bad_rc) {
        if (err)
            *err = c->bad;
        return c->bad_rc;
    }
    switch (c->wn.kind) {
    case WV_WALNAME_SEGMENT:
    case WV_WALNAME_PARTIAL: {
        uint64_t segsize = c->ri ? c->ri->wal_segsize : 0;
        if (!c->head_checked)
            return walcheck_bad(c, err, "%" PRIu64 " bytes, too short for a WAL page header",
                                c->total);
        if (!segsize)
            segsize = wv_get_le32(c->head + 32);
        if (c->wn.kind == WV_WALNAME_SEGMENT && c->total != segsize)
            return walcheck_bad(c, err, "%" PRIu64 " bytes, a segment has %" PRIu64, c->total,
                                segsize);
        break;
    }
    case WV_WALNAME_HISTORY: {
        wv_history_entry *h = NULL;
        size_t n = 0;
        wv_err e;
        wv_err_clear(&e);
        if (wv_history_parse((const char *)c->text.data, c->text.len, &h, &n, &e) != 0)
            return walcheck_bad(c, err, "not a timeline history file: %s", e.msg);
        for (size_t i = 0; i < n; i++)
            if (h[i].tli >= c->wn.tli) {
                uint32_t tli = h[i].tli;
                free(h);
                return walcheck_bad(c, err,
                                    "its entry %zu names timeline %" PRIu32
                                    ", not an ancestor of timeline %" PRIu32,
                                    i + 1, tli, c->wn.tli);
            }
        free(h);
        break;
    }
    default:
        if (c->text.len < strlen(start) || memcmp(c->text.data, start, strlen(start)) != 0)
            return walcheck_bad(c, err, "a backup history file starts with \"%s\"", start);
        break;
    }
    return wv_filter_finish(f->next, err);
}

static void walcheck_free(wv_filter *f)
{
    walcheck *c = (walcheck *)f;
    wv_buf_free(&c->text);
    free(c);
}

static const wv_filter_ops walcheck_ops = {
    .name = "wal content check",
    .write = walcheck_write,
    .finish = walcheck_finish,
    .free = walcheck_free,
};

wv_filter *wv_repo_walcheck_new(wv_filter *next, const char *walname, const wv_repo_info *ri)
{
    walcheck *c = wv_xcalloc(1, sizeof(*c));
    c->base.ops = &walcheck_ops;
    c->base.next = next;
    if (wv_walname_parse(walname, &c->wn) == WV_WALNAME_INVALID) {
        free(c);
        return NULL;
    }
    snprintf(c->name, sizeof(c->name), "%s", walname);
    c->ri = ri;
    wv_buf_init(&c->text);
    return &c->base;
}

int wv_repo_same_object(const wv_repo *r, const char *name, const wv_obj_info *stored,
                        const uint8_t sha256[32], uint64_t plain_size, wv_err *err)
{
    char a[65], b[65];
    const wv_obj_crypto *c = wv_repo_crypto(r->st);
    if (stored->cipher != WV_OBJ_CIPHER_NONE || c) {
        /* Encrypted: the keyed digest of our SHA-256 under the repository's digest key (a plain
         * object in an encrypted repository, or the reverse, is never the same content). */
        wv_obj_info ours;
        wv_obj_info_init(&ours);
        ours.cipher = c ? WV_OBJ_CIPHER_AES256GCM : WV_OBJ_CIPHER_NONE;
        memcpy(ours.sha256, sha256, 32);
        ours.plain_size = plain_size;
        int rc = c ? wv_crypt_keyed_digest(c->digest_key, sha256, ours.keyed_digest, err) : 0;
        if (rc < 0)
            return rc;
        if (wv_obj_info_same_content(stored, &ours))
            return 0;
        wv_hex_encode(stored->cipher != WV_OBJ_CIPHER_NONE ? stored->keyed_digest : stored->sha256,
                      32, a);
        wv_hex_encode(c ? ours.keyed_digest : sha256, 32, b);
        wv_err_set(err, WV_ECONFLICT,
                   "%s: %s is already archived with different content (stored %s %.16s..., "
                   "this file's %.16s...); refusing to overwrite it",
                   r->rc->name, name,
                   stored->cipher != WV_OBJ_CIPHER_NONE ? "keyed digest" : "plain sha256", a, b);
        return wv_err_hint(err,
                           "two servers may be archiving into one repository (split brain, or a "
                           "restored copy still running with the old archive_command); check "
                           "archive_command on every server; the archived copy was left "
                           "untouched");
    }
    if (memcmp(stored->sha256, sha256, 32) == 0 && stored->plain_size == plain_size)
        return 0;
    wv_sha256_hex(stored->sha256, a);
    wv_sha256_hex(sha256, b);
    wv_err_set(err, WV_ECONFLICT,
               "%s: %s is already archived with different content (stored sha256 %.16s..., this "
               "file %.16s...); refusing to overwrite it",
               r->rc->name, name, a, b);
    return wv_err_hint(err,
                       "two servers may be archiving into one repository (split brain, or a "
                       "restored copy still running with the old archive_command); check "
                       "archive_command on every server; the archived copy was left untouched");
}

int wv_repo_commit_object(wv_repo *r, wv_sink *sink, const char *key, const char *name,
                          const wv_obj_info *ours, int *already, wv_obj_info *stored, wv_err *err)
{
    wv_obj_info mine;
    *already = 0;
    int rc = wv_sink_commit(sink, err);
    if (rc != WV_EEXIST)
        return rc;
    /* Archived already: a re-push, or a concurrent writer of the same name that won. */
    if (!stored)
        stored = &mine;
    wv_err_clear(err);
    if ((rc = wv_repo_read_trailer(r->st, key, stored, err)) != 0)
        return rc;
    if ((rc = wv_repo_same_object(r, name, stored, ours->sha256, ours->plain_size, err)) != 0)
        return rc;
    *already = 1;
    return 0;
}

int wv_repo_put_object(wv_repo *r, const char *key, const char *name, unsigned extra_flags,
                       const wv_obj_opts *opts, const void *data, size_t len, int *already,
                       wv_obj_info *info, wv_err *err)
{
    wv_sink *sink = NULL;
    wv_obj_info ours;
    *already = 0;
    int rc = wv_storage_put_open(r->st, key, WV_PUT_NOREPLACE | extra_flags, &sink, err);
    if (rc != 0)
        return rc;
    wv_obj_opts o =
        opts ? *opts
             : (wv_obj_opts){.compress = WV_COMPRESS_LZ4, .level = 1, .kind = WV_OBJ_KIND_GENERIC};
    o.name = key;
    o.crypto = wv_repo_crypto(r->st);
    wv_objwriter *w = wv_objwriter_new(&sink, 1, &o);
    rc = len ? wv_objwriter_write(w, data, len, err) : 0;
    if (rc == 0)
        rc = wv_objwriter_finish(w, &ours, err);
    wv_objwriter_free(w);
    if (rc != 0) {
        wv_sink_abort(sink);
        return rc;
    }
    if (info)
        *info = ours;
    return wv_repo_commit_object(r, sink, key, name, &ours, already, NULL, err);
}

void wv_sha256_hex(const uint8_t sha[32], char out[65])
{
    wv_hex_encode(sha, 32, out);
}

wv_filter *wv_repo_walcheck_for_key(wv_filter *next, const char *key, const wv_repo_info *ri)
{
    const char *base = strrchr(key, '/');
    if (strncmp(key, "wal/", 4) != 0 || !base)
        return NULL;
    return wv_repo_walcheck_new(next, base + 1, ri);
}
