/*
 * push_file.c - push one file: validate it, check the repositories, stream it once through
 * sha256 -> lz4 -> object framing into every repository that lacks it, commit each durably.
 */
#include "push.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fileio.h"
#include "core/log.h"
#include "pipeline/object.h"
#include "repo/repo.h"
#include "pg/walname.h"
#include "pg/walpage.h"
#include "pg/walreader.h"

#define PUSH_CHUNK (1024 * 1024)

static int read_wal_header(int fd, const char *path, const char *name, const wv_walname *wn,
                           uint64_t file_size, wv_walpage *h, wv_err *err)
{
    uint8_t buf[WV_XLP_LONG_HEADER_SIZE];
    size_t got = 0;
    int rc = wv_pread_full(fd, buf, sizeof(buf), 0, &got, path, err);
    if (rc != 0)
        return rc;
    rc = wv_walpage_check_first(buf, got, path, h, err);
    if (rc != 0)
        return rc;
    if (file_size != h->seg_size)
        return wv_err_set(err, WV_EUSAGE,
                          "\"%s\" is %" PRIu64 " bytes but its header says segments are %" PRIu32
                          " bytes: the file is truncated or not a WAL segment",
                          path, file_size, h->seg_size);
    if (!wv_walname_valid_for_segsize(wn, h->seg_size))
        return wv_err_set(err, WV_EUSAGE,
                          "\"%s\" is not a valid name for %" PRIu32 "-byte WAL segments", name,
                          h->seg_size);
    uint64_t expect = wv_walname_segno(wn, h->seg_size) * h->seg_size;
    if (h->pageaddr != expect)
        return wv_err_set(err, WV_EUSAGE,
                          "\"%s\" holds the WAL of another segment (page address %" PRIX64
                          ", expected %" PRIX64 "): it was renamed or copied wrongly",
                          path, h->pageaddr, expect);
    return 0;
}

static void human_size(uint64_t n, char *out, size_t len)
{
    if (n >= 1024 * 1024)
        snprintf(out, len, "%.1f MiB", (double)n / (1024.0 * 1024.0));
    else if (n >= 1024)
        snprintf(out, len, "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(out, len, "%" PRIu64 " B", n);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Restore points seen in a segment, kept as text lines "LSN<TAB>TIME_US<TAB>NAME" (names are at
 * most 63 bytes and PostgreSQL allows tabs and newlines in them, so they are percent-encoded). */
static void collect_rp(const wv_wal_restore_point *rp, void *arg)
{
    wv_buf *b = arg;
    char lsn[WV_LSN_LEN];
    if (b->len > 256 * 1024)
        return;
    wv_lsn_format(rp->lsn, lsn);
    wv_buf_printf(b, "%s\t%" PRId64 "\t", lsn, rp->time_us);
    for (const char *p = rp->name; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == '%')
            wv_buf_printf(b, "%%%02X", ch);
        else
            wv_buf_append(b, p, 1);
    }
    wv_buf_append_str(b, "\n");
}

static void feed_walreader(void *arg, const uint8_t *buf, size_t len)
{
    wv_walreader_feed(arg, buf, len);
}

/*
 * Stream the file into the object writer. The file is mapped in windows of PUSH_WINDOW bytes
 * (populated in one call, unmapped after): no copy out of the page cache, and a resident size
 * bounded by the window whatever the segment size. Where mapping fails, read() in chunks.
 * Stops early (returning 0) only when every repository's write has failed: each keeps its error.
 */
#define PUSH_WINDOW (2 * 1024 * 1024)

static int stream_file(int fd, const char *path, uint64_t size, wv_objwriter *w, uint64_t *total,
                       uint8_t **chunk, wv_err *err)
{
    uint64_t off = 0;
    while (off < size) {
        size_t n = size - off < PUSH_WINDOW ? (size_t)(size - off) : PUSH_WINDOW;
        void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, (off_t)off);
        if (p == MAP_FAILED)
            break;
        madvise(p, n, MADV_SEQUENTIAL);
        int wrc = wv_objwriter_write(w, p, n, err);
        munmap(p, n);
        off += n;
        *total = off;
        if (wrc != 0)
            return 0;
    }
    if (off == size)
        return 0;
    /* Fall back to reading from where mapping stopped. */
    if (lseek(fd, (off_t)off, SEEK_SET) < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not seek in \"%s\"", path);
    *chunk = wv_xmalloc(PUSH_CHUNK);
    for (;;) {
        size_t got = 0;
        int rc = wv_read_full(fd, *chunk, PUSH_CHUNK, &got, path, err);
        if (rc != 0)
            return rc;
        if (got == 0)
            return 0;
        *total += got;
        if (wv_objwriter_write(w, *chunk, got, err) != 0)
            return 0;
    }
}

/* Per repository state of one push. */
typedef struct target {
    wv_repo *repo;
    /* An object store (WV_ST_ROUND_TRIPS): its cluster check runs on a thread while the file is
     * compressed, and it is not asked beforehand whether it has the object: the conditional
     * commit answers that (WV_EEXIST), and then the stored trailer is compared. */
    pthread_t check_thread;
    int check_started;
    wv_err check_err; /* written by the check thread only; merged into err when it is joined */
    const wv_walpage *wh;
    int have;           /* an object already exists under the key */
    wv_obj_info stored; /* its trailer, when have */
    wv_sink *sink;      /* open while we write */
    int done;
    wv_err err;
} target;

static int conflict(const target *t, const char *name, const uint8_t ours[32], wv_err *err)
{
    char a[65], b[65];
    wv_sha256_hex(t->stored.sha256, a);
    wv_sha256_hex(ours, b);
    wv_err_set(err, WV_ECONFLICT,
               "%s: %s is already archived with different content (stored sha256 %.16s..., this "
               "file %.16s...); refusing to overwrite it",
               t->repo->rc->name, name, a, b);
    return wv_err_hint(err,
                       "two servers may be archiving into one repository (split brain, or a "
                       "restored copy still running with the old archive_command); check "
                       "archive_command on every server; the archived copy was left untouched");
}

/* Hash the whole file without storing it (only when every repository already has it). */
static int hash_file(int fd, const char *path, uint8_t out[32], wv_err *err)
{
    wv_filter *sha = wv_sha256_filter_new(wv_filter_discard_new());
    if (lseek(fd, 0, SEEK_SET) < 0) {
        wv_filter_chain_free(sha);
        return wv_err_errno(err, WV_EIO, errno, "could not seek in \"%s\"", path);
    }
    int rc = wv_filter_pump_fd(sha, fd, path, err);
    if (rc == 0)
        wv_sha256_filter_digest(sha, out);
    wv_filter_chain_free(sha);
    return rc;
}

static uint8_t kind_of(wv_walname_kind k)
{
    switch (k) {
    case WV_WALNAME_SEGMENT:
        return 1;
    case WV_WALNAME_PARTIAL:
        return 2;
    case WV_WALNAME_HISTORY:
        return 3;
    case WV_WALNAME_BACKUP:
        return 4;
    default:
        return 0;
    }
}

/* ---- the cluster check of an object store, while the file is compressed --------------------- */

static void *check_thread(void *arg)
{
    target *t = arg;
    if (wv_repo_check_cluster(t->repo, t->wh->sysid, wv_walpage_major_of_magic(t->wh->magic),
                              t->wh->seg_size, &t->check_err) == 0)
        wv_err_clear(&t->check_err); /* a first use leaves the "not found" of its read there */
    return NULL;
}

static void start_check(target *t)
{
    wv_err_clear(&t->check_err);
    if (pthread_create(&t->check_thread, NULL, check_thread, t) == 0)
        t->check_started = 1;
    else
        check_thread(t); /* no thread: check now (join_check merges the result) */
}

static void join_check(target *t)
{
    if (t->check_started) {
        pthread_join(t->check_thread, NULL);
        t->check_started = 0;
    }
    if (t->check_err.code) {
        /* the more fundamental error: another cluster's repository, or unreachable */
        t->err = t->check_err;
        wv_err_clear(&t->check_err);
    }
}

/* ---- parallel commit ------------------------------------------------------------------------ */

/* Unlike the job runner's first-failure-stops-the-rest, every repository's commit must run to
 * its own end here (what succeeded stays), so each open sink gets a plain thread. */
static void *commit_thread(void *arg)
{
    target *t = arg;
    wv_sink *s = t->sink;
    wv_err e;
    wv_err_clear(&e);
    t->sink = NULL;
    if (wv_sink_commit(s, &e) == 0)
        t->done = 1;
    else
        t->err = e;
    return NULL;
}

static void commit_all(target *tg, int ntg)
{
    pthread_t th[WV_MAX_REPOS];
    int started[WV_MAX_REPOS] = {0}, open = 0;
    for (int i = 0; i < ntg; i++)
        open += tg[i].sink != NULL;
    for (int i = 0; i < ntg; i++) {
        if (!tg[i].sink)
            continue;
        if (open > 1 && pthread_create(&th[i], NULL, commit_thread, &tg[i]) == 0)
            started[i] = 1;
        else
            commit_thread(&tg[i]);
    }
    for (int i = 0; i < ntg; i++)
        if (started[i])
            pthread_join(th[i], NULL);
}

int wv_push_file(const wv_config *cfg, const char *path, wv_err *err)
{
    double t0 = now_ms();
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    wv_walname wn;
    wv_walname_kind kind = wv_walname_parse(name, &wn);
    target tg[WV_MAX_REPOS];
    int ntg = 0, rc = 0, fd = -1;
    char key[256];
    struct stat sb;
    wv_walpage wh = {0};
    wv_objwriter *w = NULL;
    wv_obj_info info;
    uint8_t *chunk = NULL;
    wv_walreader *wr = NULL;
    wv_buf rps = WV_BUF_INIT;

    memset(tg, 0, sizeof(tg));
    if (kind == WV_WALNAME_INVALID)
        return wv_err_set(err, WV_EUSAGE,
                          "\"%s\" is not a WAL segment, partial segment, timeline history or "
                          "backup history file",
                          path);
    if ((rc = wv_repo_wal_key(name, key, sizeof(key), err)) != 0)
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = wv_err_errno(err, errno == ENOENT ? WV_EUSAGE : WV_EIO, errno, "could not open \"%s\"",
                          path);
        return rc;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = wv_err_set(err, WV_EUSAGE, "\"%s\" is not a regular file", path);
        goto out;
    }
    if (kind == WV_WALNAME_SEGMENT || kind == WV_WALNAME_PARTIAL) {
        rc = read_wal_header(fd, path, name, &wn, (uint64_t)sb.st_size, &wh, err);
        if (rc != 0)
            goto out;
    }

    /* Each repository on its own: one that is down or full does not stop the others; what
     * succeeded stays, and PostgreSQL retries the whole push until every repository has it. */
    for (int i = 0; i < cfg->nrepos; i++, ntg++) {
        target *t = &tg[i];
        wv_err_clear(&t->err);
        t->wh = &wh;
        if (wv_repo_open(&cfg->repos[i], &t->repo, &t->err) != 0)
            continue;
        if (wv_storage_features(t->repo->st) & WV_ST_ROUND_TRIPS) {
            if (wh.sysid)
                start_check(t);
            continue;
        }
        if (wh.sysid &&
            wv_repo_check_cluster(t->repo, wh.sysid, wv_walpage_major_of_magic(wh.magic),
                                  wh.seg_size, &t->err) != 0)
            continue;
        int r = wv_repo_read_info(t->repo->st, key, &t->stored, &t->err);
        if (r == 0)
            t->have = 1;
        else if (r == WV_ENOTFOUND)
            wv_err_clear(&t->err);
    }

    int missing = 0, usable = 0;
    for (int i = 0; i < ntg; i++) {
        usable += !tg[i].err.code;
        missing += !tg[i].err.code && !tg[i].have;
    }
    if (usable == 0) {
        for (int i = 0; i < ntg; i++)
            join_check(&tg[i]);
        goto report;
    }
    if (missing == 0) {
        /* PostgreSQL re-archives after a crash: identical content is success. */
        uint8_t sha[32];
        if ((rc = hash_file(fd, path, sha, err)) != 0)
            goto out;
        for (int i = 0; i < ntg; i++)
            if (!tg[i].err.code && (memcmp(sha, tg[i].stored.sha256, 32) != 0 ||
                                    tg[i].stored.plain_size != (uint64_t)sb.st_size)) {
                rc = conflict(&tg[i], name, sha, err);
                goto out;
            }
        wv_log_info("%s is already archived with identical content in %d repositor%s", name, usable,
                    usable == 1 ? "y" : "ies");
        goto report;
    }

    /* One pass over the file into every repository that lacks it. */
    wv_sink *sinks[WV_MAX_REPOS];
    int nsinks = 0, map[WV_MAX_REPOS];
    for (int i = 0; i < ntg; i++) {
        if (tg[i].have || tg[i].err.code)
            continue;
        if (wv_storage_put_open(tg[i].repo->st, key, WV_PUT_NOREPLACE, &tg[i].sink, &tg[i].err))
            continue;
        map[nsinks] = i;
        sinks[nsinks++] = tg[i].sink;
    }
    if (nsinks == 0) {
        for (int i = 0; i < ntg; i++)
            join_check(&tg[i]);
        goto report;
    }
    /* Segments of a server whose WAL we can read: record commit times and restore points. The
     * reader and the SHA-256 run on a helper thread while this one compresses and writes. */
    if ((kind == WV_WALNAME_SEGMENT || kind == WV_WALNAME_PARTIAL) &&
        wv_walreader_reads_major(wv_walpage_major_of_magic(wh.magic))) {
        wr = wv_walreader_new(wh.seg_size);
        wv_walreader_set_rp_callback(wr, collect_rp, &rps);
    }
    wv_obj_opts opts = {.compress = cfg->compress,
                        .level = cfg->compress_level,
                        .kind = kind_of(kind),
                        .hash_thread = 1,
                        .observe = wr ? feed_walreader : NULL,
                        .observe_arg = wr};
    w = wv_objwriter_new(sinks, nsinks, &opts);
    if (lseek(fd, 0, SEEK_SET) < 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not seek in \"%s\"", path);
        goto out;
    }
    uint64_t total = 0;
    rc = stream_file(fd, path, (uint64_t)sb.st_size, w, &total, &chunk, err);
    if (rc != 0)
        goto out;
    if (total != (uint64_t)sb.st_size && wv_objwriter_sinks_ok(w)) {
        rc = wv_err_set(err, WV_EIO, "\"%s\" changed size while it was being archived", path);
        goto out;
    }
    if (wr) {
        wv_walinfo wi;
        wv_walreader_result(wr, &wi);
        if (!wi.complete)
            wv_log_warn("%s: commit times not recorded: %s", name, wi.reason);
        else
            wv_objwriter_set_walinfo(w, wi.first_commit_us, wi.last_commit_us, wi.commit_count,
                                     wi.restore_point_count);
    }
    if (wv_objwriter_sinks_ok(w))
        wv_objwriter_finish(w, &info, err);
    /* an object store's cluster check: nothing becomes visible before it passed */
    for (int i = 0; i < ntg; i++)
        join_check(&tg[i]);
    for (int j = 0; j < nsinks; j++) {
        const wv_err *se = wv_objwriter_sink_error(w, j);
        target *t = &tg[map[j]];
        if (se && !t->err.code)
            t->err = *se;
        if (t->err.code) {
            wv_sink_abort(t->sink);
            t->sink = NULL;
        }
    }

    /* Restore point names go into a small object beside the segment, before the segment itself:
     * once the segment is archived a re-push stops early and would never write it. */
    if (rps.len) {
        char rpkey[300];
        snprintf(rpkey, sizeof(rpkey), "%s%s", key, WV_REPO_RP_SUFFIX);
        for (int j = 0; j < nsinks; j++) {
            target *t = &tg[map[j]];
            if (t->err.code)
                continue;
            int r = wv_storage_put_all(t->repo->st, rpkey, WV_PUT_NOREPLACE, rps.data, rps.len,
                                       &t->err);
            if (r == WV_EEXIST)
                wv_err_clear(&t->err);
            else if (r != 0) {
                wv_sink_abort(t->sink);
                t->sink = NULL;
            }
        }
    }

    /* Commit every repository at once (fsync or upload acknowledgement in parallel). */
    commit_all(tg, ntg);
    for (int i = 0; i < ntg; i++)
        if (tg[i].err.code == WV_EEXIST) {
            /* Archived already (a re-push, or a concurrent push of the same name that won):
             * compare with what is stored. */
            wv_err e;
            wv_err_clear(&e);
            if (wv_repo_read_info(tg[i].repo->st, key, &tg[i].stored, &e) == 0) {
                tg[i].have = 1;
                wv_err_clear(&tg[i].err);
            } else {
                tg[i].err = e;
            }
        }
    for (int i = 0; i < ntg; i++)
        if (!tg[i].err.code && tg[i].have && !tg[i].done &&
            (memcmp(tg[i].stored.sha256, info.sha256, 32) != 0 ||
             tg[i].stored.plain_size != info.plain_size)) {
            rc = conflict(&tg[i], name, info.sha256, err);
            goto out;
        }
    for (int i = 0; i < ntg; i++)
        if (!tg[i].err.code && tg[i].have && !tg[i].done)
            wv_log_info("%s is already archived with identical content in %s", name,
                        tg[i].repo->rc->name);

    char a[32], b[32];
    uint64_t stored = info.payload_size + WV_OBJ_HEADER_SIZE + WV_OBJ_TRAILER_SIZE;
    human_size(info.plain_size, a, sizeof(a));
    human_size(stored, b, sizeof(b));
    for (int i = 0; i < ntg; i++)
        if (tg[i].done)
            wv_log_info("archived %s to %s (%s -> %s, %.1f%%, %.0f ms)", name, tg[i].repo->rc->name,
                        a, b,
                        info.plain_size ? 100.0 * (double)stored / (double)info.plain_size : 100.0,
                        now_ms() - t0);
report:
    /* Every repository that failed is named; the first failure is the result. */
    {
        int failed = 0, ok = 0;
        for (int i = 0; i < ntg; i++)
            if (tg[i].err.code)
                failed++;
            else
                ok++;
        if (failed) {
            for (int i = 0; i < ntg && failed > 1; i++)
                if (tg[i].err.code)
                    wv_log_err(&tg[i].err);
            for (int i = 0; i < ntg; i++)
                if (tg[i].err.code) {
                    *err = tg[i].err;
                    rc = err->code;
                    break;
                }
            if (ok)
                wv_err_hint(err,
                            "%s is stored in %d of %d repositories; PostgreSQL retries the "
                            "push, which completes once the failing repository is back",
                            name, ok, ntg);
        }
    }
out:
    free(chunk);
    wv_walreader_free(wr);
    wv_buf_free(&rps);
    if (w)
        wv_objwriter_free(w);
    for (int i = 0; i < ntg; i++) {
        join_check(&tg[i]);
        wv_sink_abort(tg[i].sink);
        wv_repo_close(tg[i].repo);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}
