/*
 * push_file.c - push one file: validate it, check the repositories, stream it once through
 * sha256 -> lz4 -> object framing into every repository that lacks it, commit each durably.
 */
#include "push.h"
#include "lag.h"

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
#include "core/units.h"
#include "pipeline/object.h"
#include "repo/repo.h"
#include "repo/spool.h"
#include "repo/xidrange.h"
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
 * (populated in one call): no copy out of the page cache, and a resident size bounded by two
 * windows whatever the segment size. The writer's hashing lags one window behind (hash_lag), so
 * mapping window N+1 and unmapping N-1 overlap the hash of N. Where mapping fails, read() in
 * chunks. Stops early (returning 0) only when every repository's write has failed: each keeps
 * its error. Returns with the writer's helper thread done (the WAL reader has seen everything).
 */
#define PUSH_WINDOW (2 * 1024 * 1024)

static int stream_file(int fd, const char *path, uint64_t size, wv_objwriter *w, uint64_t *total,
                       uint8_t **chunk, wv_err *err)
{
    uint64_t off = 0;
    void *prev = NULL;
    size_t prev_n = 0;
    int wrc = 0;
    while (off < size && wrc == 0) {
        size_t n = size - off < PUSH_WINDOW ? (size_t)(size - off) : PUSH_WINDOW;
        void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, (off_t)off);
        if (p == MAP_FAILED)
            break;
        madvise(p, n, MADV_SEQUENTIAL);
        wrc = wv_objwriter_write(w, p, n, err); /* done with prev; the helper may be on p */
        if (prev)
            munmap(prev, prev_n);
        prev = p;
        prev_n = n;
        off += n;
        *total = off;
    }
    wv_objwriter_wait(w);
    if (prev)
        munmap(prev, prev_n);
    if (wrc != 0 || off == size)
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
        int r = wv_objwriter_write(w, *chunk, got, err);
        wv_objwriter_wait(w); /* the chunk is read into again */
        if (r != 0)
            return 0;
    }
}

/* Per repository state of one push. */
typedef struct target {
    wv_repo *repo;
    int borrowed; /* repo belongs to the caller (wv_push_file_to): not closed here */
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
    int skipped; /* required = no and in backoff: not tried */
    wv_err err;
    /* for the commit thread */
    const char *key, *name;
    const wv_obj_info *ours;
} target;

/* One push: the input file and every repository's state. */
typedef struct push {
    const wv_config *cfg;
    wv_repo *const *shared; /* repositories opened by the caller, or NULL */
    const char *path, *name;
    wv_walname wn;
    wv_walname_kind kind;
    char key[256];
    int fd;
    struct stat sb;
    wv_walpage wh;
    target tg[WV_MAX_REPOS];
    int ntg;
    /* the pipeline */
    wv_sink *sinks[WV_MAX_REPOS];
    const wv_obj_crypto *crypto[WV_MAX_REPOS]; /* sink j's repository's encryption */
    int nsinks, map[WV_MAX_REPOS];             /* sink j belongs to target map[j] */
    wv_objwriter *w;
    wv_walreader *wr;
    wv_buf rps; /* restore points seen */
    uint8_t *chunk;
    wv_obj_info info;   /* what the trailer says */
    int finished;       /* info is valid: the object writer finished */
    wv_push_result res; /* the content, once known */
    double t0;
    char cdir[4096]; /* the cluster's spool directory, when have_cdir */
    int have_cdir;
} push;

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

static void join_checks(push *p)
{
    for (int i = 0; i < p->ntg; i++)
        join_check(&p->tg[i]);
}

/* ---- parallel commit ------------------------------------------------------------------------ */

/* Unlike the job runner's first-failure-stops-the-rest, every repository's commit must run to
 * its own end here (what succeeded stays), so each open sink gets a plain thread. What a
 * WV_EEXIST means (identical: archived already; different: a conflict) the repository decides. */
static void *commit_thread(void *arg)
{
    target *t = arg;
    wv_sink *s = t->sink;
    wv_err e;
    int already = 0;
    wv_err_clear(&e);
    t->sink = NULL;
    if (wv_repo_commit_object(t->repo, s, t->key, t->name, t->ours, &already, &t->stored, &e) != 0)
        t->err = e;
    else if (already)
        t->have = 1;
    else
        t->done = 1;
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

/* ---- the steps of one push ------------------------------------------------------------------ */

/* Step 1: the file is a WAL-directory file we can read, and (a segment) is what its name says. */
static int open_input(push *p, wv_err *err)
{
    const char *slash = strrchr(p->path, '/');
    p->name = slash ? slash + 1 : p->path;
    p->kind = wv_walname_parse(p->name, &p->wn);
    if (p->kind == WV_WALNAME_INVALID)
        return wv_err_set(err, WV_EUSAGE,
                          "\"%s\" is not a WAL segment, partial segment, timeline history or "
                          "backup history file",
                          p->path);
    int rc = wv_repo_wal_key(p->name, p->key, sizeof(p->key), err);
    if (rc != 0)
        return rc;
    p->fd = open(p->path, O_RDONLY | O_CLOEXEC);
    if (p->fd < 0)
        return wv_err_errno(err, errno == ENOENT ? WV_EUSAGE : WV_EIO, errno,
                            "could not open \"%s\"", p->path);
    if (fstat(p->fd, &p->sb) != 0 || !S_ISREG(p->sb.st_mode))
        return wv_err_set(err, WV_EUSAGE, "\"%s\" is not a regular file", p->path);
    if (p->kind == WV_WALNAME_SEGMENT || p->kind == WV_WALNAME_PARTIAL)
        return read_wal_header(p->fd, p->path, p->name, &p->wn, (uint64_t)p->sb.st_size, &p->wh,
                               err);
    return 0;
}

/* Step 2: every repository on its own: one that is down or full does not stop the others; what
 * succeeded stays, and PostgreSQL retries the whole push until every repository has it. A disk
 * (or ssh) repository is checked and asked for the object now; an object store's check starts
 * on a thread. */
static void open_targets(push *p)
{
    const wv_walpage *wh = &p->wh;
    for (int i = 0; i < p->cfg->nrepos; i++, p->ntg++) {
        target *t = &p->tg[i];
        wv_err_clear(&t->err);
        t->wh = wh;
        t->key = p->key;
        t->name = p->name;
        t->ours = &p->info;
        int64_t next, now = (int64_t)time(NULL);
        if (p->have_cdir && p->cfg->repos[i].optional &&
            wv_push_in_backoff(p->cdir, &p->cfg->repos[i], now, &next)) {
            wv_err_set(&t->err, WV_EUNREACHABLE,
                       "%s: not tried: it failed at the last attempt; next attempt in %" PRId64
                       " s",
                       p->cfg->repos[i].name, next - now);
            t->skipped = 1;
            continue;
        }
        if (p->shared && p->shared[i]) {
            t->repo = p->shared[i];
            t->borrowed = 1;
        } else if (wv_repo_open(&p->cfg->repos[i], &t->repo, &t->err) != 0)
            continue;
        if (wv_storage_features(t->repo->st) & WV_ST_ROUND_TRIPS) {
            if (wh->sysid)
                start_check(t);
            continue;
        }
        if (wh->sysid &&
            wv_repo_check_cluster(t->repo, wh->sysid, wv_walpage_major_of_magic(wh->magic),
                                  wh->seg_size, &t->err) != 0)
            continue;
        /* the public trailer is enough to decide a re-push (an encrypted object's keyed
         * digest): no private key needed */
        int r = wv_repo_read_trailer(t->repo->st, p->key, &t->stored, &t->err);
        if (r == 0)
            t->have = 1;
        else if (r == WV_ENOTFOUND)
            wv_err_clear(&t->err);
    }
}

/* Every usable repository has the object already (PostgreSQL re-archives after a crash):
 * identical content is success, different a conflict. */
static int compare_all_present(push *p, int usable, wv_err *err)
{
    uint8_t sha[32];
    int rc = hash_file(p->fd, p->path, sha, err);
    if (rc != 0)
        return rc;
    memcpy(p->res.sha256, sha, sizeof(sha));
    p->res.size = (uint64_t)p->sb.st_size;
    for (int i = 0; i < p->ntg; i++)
        if (!p->tg[i].err.code &&
            (rc = wv_repo_same_object(p->tg[i].repo, p->name, &p->tg[i].stored, sha,
                                      (uint64_t)p->sb.st_size, err)) != 0)
            return rc;
    wv_log_info("%s is already archived with identical content in %d repositor%s", p->name, usable,
                usable == 1 ? "y" : "ies");
    return 0;
}

/* Step 3: a sink in every repository that lacks the object, and the object writer over them.
 * Returns the number of sinks. */
static int build_pipeline(push *p)
{
    for (int i = 0; i < p->ntg; i++) {
        target *t = &p->tg[i];
        if (t->have || t->err.code)
            continue;
        if (wv_storage_put_open(t->repo->st, p->key, WV_PUT_NOREPLACE, &t->sink, &t->err))
            continue;
        p->map[p->nsinks] = i;
        p->crypto[p->nsinks] = wv_repo_crypto(t->repo->st);
        p->sinks[p->nsinks++] = t->sink;
    }
    if (p->nsinks == 0)
        return 0;
    /* Segments of a server whose WAL we can read: record commit times and restore points. The
     * reader and the SHA-256 run on a helper thread while this one compresses and writes. */
    if ((p->kind == WV_WALNAME_SEGMENT || p->kind == WV_WALNAME_PARTIAL) &&
        wv_walreader_reads_major(wv_walpage_major_of_magic(p->wh.magic))) {
        p->wr = wv_walreader_new(p->wh.seg_size);
        wv_walreader_set_rp_callback(p->wr, collect_rp, &p->rps);
    }
    wv_obj_opts opts = {.compress = p->cfg->compress,
                        .level = p->cfg->compress_level,
                        .kind = kind_of(p->kind),
                        .hash_thread = 1,
                        .hash_lag = 1,
                        .observe = p->wr ? feed_walreader : NULL,
                        .observe_arg = p->wr,
                        .name = p->key,
                        .sink_crypto = p->crypto};
    p->w = wv_objwriter_new(p->sinks, p->nsinks, &opts);
    return p->nsinks;
}

/* Step 4: one pass over the file into every sink, then the trailer. An object store's cluster
 * check is joined here: nothing becomes visible before it passed; a failed sink is aborted. */
static int push_stream(push *p, wv_err *err)
{
    uint64_t total = 0, size = (uint64_t)p->sb.st_size;
    if (lseek(p->fd, 0, SEEK_SET) < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not seek in \"%s\"", p->path);
    int rc = stream_file(p->fd, p->path, size, p->w, &total, &p->chunk, err);
    if (rc != 0)
        return rc;
    if (total != size && wv_objwriter_sinks_ok(p->w))
        return wv_err_set(err, WV_EIO, "\"%s\" changed size while it was being archived", p->path);
    if (p->wr) {
        wv_walinfo wi;
        wv_walreader_result(p->wr, &wi);
        if (!wi.complete)
            wv_log_warn("%s: commit times not recorded: %s", p->name, wi.reason);
        else
            wv_objwriter_set_walinfo(p->w, wi.first_commit_us, wi.last_commit_us, wi.commit_count,
                                     wi.restore_point_count);
    }
    if (wv_objwriter_sinks_ok(p->w) && wv_objwriter_finish(p->w, &p->info, err) == 0)
        p->finished = 1;
    join_checks(p);
    for (int j = 0; j < p->nsinks; j++) {
        const wv_err *se = wv_objwriter_sink_error(p->w, j);
        target *t = &p->tg[p->map[j]];
        if (se && !t->err.code)
            t->err = *se;
        if (t->err.code) {
            wv_sink_abort(t->sink);
            t->sink = NULL;
        }
    }
    return 0;
}

/* Step 5: restore point names go into a small object beside the segment, before the segment
 * itself: once the segment is archived a re-push stops early and would never write it. */
static void store_restore_points(push *p)
{
    if (!p->rps.len)
        return;
    char rpkey[300];
    snprintf(rpkey, sizeof(rpkey), "%s%s", p->key, WV_REPO_RP_SUFFIX);
    for (int j = 0; j < p->nsinks; j++) {
        target *t = &p->tg[p->map[j]];
        if (t->err.code)
            continue;
        int r = wv_repo_put_text(t->repo->st, rpkey, WV_PUT_NOREPLACE, p->rps.data, p->rps.len,
                                 &t->err);
        if (r == WV_EEXIST)
            wv_err_clear(&t->err);
        else if (r != 0) {
            wv_sink_abort(t->sink);
            t->sink = NULL;
        }
    }
}

/* Step 5b: the range of transaction ids committed in the segment goes into a small object beside
 * it (repo/xidrange.h), also before the segment, and only when the segment holds a commit and
 * was read whole: the recovery planner tells timelines apart by it. */
static void store_xid_range(push *p)
{
    wv_walinfo wi;
    if (!p->wr)
        return;
    wv_walreader_result(p->wr, &wi);
    if (!wi.complete || wi.commit_count == 0)
        return;
    wv_xidrange x = {
        .xmin = wi.commit_xid_min, .xmax = wi.commit_xid_max, .count = wi.commit_count};
    for (int j = 0; j < p->nsinks; j++) {
        target *t = &p->tg[p->map[j]];
        if (t->err.code)
            continue;
        if (wv_xidrange_put(t->repo->st, p->key, &x, &t->err) != 0) {
            wv_sink_abort(t->sink);
            t->sink = NULL;
        }
    }
}

/* Step 6: commit every repository at once (fsync or upload acknowledgement in parallel); a
 * repository that had the object before is compared with it. A conflict anywhere is the result,
 * with its own hint. */
static int commit_everywhere(push *p, wv_err *err)
{
    commit_all(p->tg, p->ntg);
    /* What a repository that had the object is compared with: the trailer just written, or,
     * when every write failed (no trailer), the file's own digest. */
    uint8_t sha[32];
    const uint8_t *ours = p->info.sha256;
    uint64_t ours_size = p->info.plain_size;
    for (int i = 0; i < p->ntg && !p->finished; i++) {
        target *t = &p->tg[i];
        if (!t->err.code && t->have && !t->done) {
            int rc = hash_file(p->fd, p->path, sha, err);
            if (rc != 0)
                return rc;
            ours = sha;
            ours_size = (uint64_t)p->sb.st_size;
            break;
        }
    }
    for (int i = 0; i < p->ntg; i++) {
        target *t = &p->tg[i];
        if (!t->err.code && t->have && !t->done)
            wv_repo_same_object(t->repo, p->name, &t->stored, ours, ours_size, &t->err);
        if (t->err.code == WV_ECONFLICT) {
            *err = t->err;
            return err->code;
        }
    }
    for (int i = 0; i < p->ntg; i++)
        if (!p->tg[i].err.code && p->tg[i].have && !p->tg[i].done)
            wv_log_info("%s is already archived with identical content in %s", p->name,
                        p->tg[i].repo->rc->name);
    return 0;
}

static void report_archived(const push *p)
{
    char a[32], b[32];
    uint64_t stored = p->info.payload_size + p->info.header_size + WV_OBJ_TRAILER_SIZE;
    wv_human_bytes(p->info.plain_size, a, sizeof(a));
    wv_human_bytes(stored, b, sizeof(b));
    for (int i = 0; i < p->ntg; i++)
        if (p->tg[i].done)
            wv_log_info("archived %s to %s (%s -> %s, %.1f%%, %.0f ms)", p->name,
                        p->tg[i].repo->rc->name, a, b,
                        p->info.plain_size ? 100.0 * (double)stored / (double)p->info.plain_size
                                           : 100.0,
                        (wv_mono_s() - p->t0) * 1000.0);
}

/* Step 7: every repository that failed is named; the first failure is the result. */
static int report_failures(const push *p, wv_err *err)
{
    int failed = 0, ok = 0, rc = 0;
    for (int i = 0; i < p->ntg; i++)
        if (p->tg[i].err.code)
            failed++;
        else
            ok++;
    if (!failed)
        return 0;
    for (int i = 0; i < p->ntg && failed > 1; i++)
        if (p->tg[i].err.code)
            wv_log_err(&p->tg[i].err);
    for (int i = 0; i < p->ntg; i++)
        if (p->tg[i].err.code) {
            *err = p->tg[i].err;
            rc = err->code;
            break;
        }
    if (ok)
        wv_err_hint(err,
                    "%s is stored in %d of %d repositories; PostgreSQL retries the "
                    "push, which completes once the failing repository is back",
                    p->name, ok, p->ntg);
    return rc;
}

/* The cluster's spool directory, for a file without a WAL header (a history file): the cluster
 * a repository that took the file belongs to. */
static int need_cdir(push *p, wv_err *err)
{
    if (p->have_cdir)
        return 0;
    uint64_t sysid = p->wh.sysid;
    for (int i = 0; i < p->ntg && !sysid; i++) {
        target *t = &p->tg[i];
        wv_err e;
        wv_err_clear(&e);
        if (!t->err.code && t->repo && (t->repo->have_info || wv_repo_load_info(t->repo, &e) == 0))
            sysid = t->repo->info.system_id;
    }
    if (!sysid)
        return wv_err_set(err, WV_EINTERNAL, "%s: the cluster of the file is unknown", p->name);
    int rc = wv_spool_cluster_dir(p->cfg, sysid, p->cdir, sizeof(p->cdir), err);
    if (rc == 0)
        p->have_cdir = 1;
    return rc;
}

/* Step 8: the push succeeds once every required repository holds the file; what a repository
 * with required = no failed to store is recorded to be caught up (a conflict never gets here:
 * it is an error wherever it is). A record that cannot be written fails the push. */
static int settle(push *p, wv_err *err)
{
    int req_failed = 0, ok = 0;
    for (int i = 0; i < p->ntg; i++) {
        target *t = &p->tg[i];
        wv_err_context(&t->err, p->cfg->repos[i].name,
                       NULL); /* each failure names its repository */
        if (!t->err.code)
            ok++;
        else if (!p->cfg->repos[i].optional || t->err.code == WV_ECONFLICT)
            req_failed++;
    }
    if (req_failed || !ok)
        return report_failures(p, err);
    for (int i = 0; i < p->ntg; i++) {
        const target *t = &p->tg[i];
        const wv_repo_config *rc = &p->cfg->repos[i];
        if (!rc->optional)
            continue;
        if (!t->err.code) {
            if (p->have_cdir)
                wv_push_lag_resolved(p->cdir, rc, p->name);
            continue;
        }
        int r = need_cdir(p, err);
        if (r == 0)
            r = wv_push_record_lag(p->cdir, rc, p->name, (uint64_t)p->sb.st_size, &t->err,
                                   !t->skipped, err);
        if (r != 0) {
            wv_log_err(&t->err);
            wv_err_hint(err,
                        "%s (required = no) failed and its lag could not be recorded in the "
                        "spool, so the push fails: PostgreSQL retries it",
                        rc->name);
            return r;
        }
    }
    return 0;
}

static void push_free(push *p)
{
    free(p->chunk);
    wv_walreader_free(p->wr);
    wv_buf_free(&p->rps);
    if (p->w)
        wv_objwriter_free(p->w);
    for (int i = 0; i < p->ntg; i++) {
        join_check(&p->tg[i]);
        wv_sink_abort(p->tg[i].sink);
        if (!p->tg[i].borrowed)
            wv_repo_close(p->tg[i].repo);
    }
    if (p->fd >= 0)
        close(p->fd);
}

/* The steps of one push, in order; each repository keeps its own error until the report. */
static int push_run(push *p, wv_err *err)
{
    int rc = open_input(p, err);
    if (rc != 0)
        return rc;
    if (p->wh.sysid && wv_push_has_optional(p->cfg)) {
        wv_err e;
        wv_err_clear(&e);
        if (wv_spool_cluster_dir(p->cfg, p->wh.sysid, p->cdir, sizeof(p->cdir), &e) == 0) {
            p->have_cdir = 1;
            wv_push_catch_up(p->cfg, p->cdir);
        } else
            wv_log_err(&e);
    }
    open_targets(p);
    int missing = 0, usable = 0;
    for (int i = 0; i < p->ntg; i++) {
        usable += !p->tg[i].err.code;
        missing += !p->tg[i].err.code && !p->tg[i].have;
    }
    if (usable == 0) {
        join_checks(p);
        return settle(p, err);
    }
    if (missing == 0) {
        if ((rc = compare_all_present(p, usable, err)) != 0)
            return rc;
        return settle(p, err);
    }
    if (build_pipeline(p) == 0) {
        join_checks(p);
        return settle(p, err);
    }
    if ((rc = push_stream(p, err)) != 0)
        return rc;
    store_restore_points(p);
    store_xid_range(p);
    if ((rc = commit_everywhere(p, err)) != 0)
        return rc;
    memcpy(p->res.sha256, p->info.sha256, sizeof(p->res.sha256));
    p->res.size = p->info.plain_size;
    report_archived(p);
    return settle(p, err);
}

int wv_push_file_to(const wv_config *cfg, wv_repo *const *repos, const char *path,
                    wv_push_result *res, wv_err *err)
{
    push *p = wv_xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    p->shared = repos;
    p->path = path;
    p->fd = -1;
    p->t0 = wv_mono_s();
    wv_buf_init(&p->rps);
    int rc = push_run(p, err);
    /* the last resort (archive_queue_max): a segment that cannot be archived while too much WAL
     * waits is dropped, loudly; a conflict is never dropped */
    if (rc != 0 && rc != WV_ECONFLICT && p->kind == WV_WALNAME_SEGMENT && p->wh.sysid &&
        cfg->archive_queue_max &&
        wv_push_queue_drop(cfg, path, p->name, (uint64_t)p->sb.st_size, p->wh.seg_size, p->wh.sysid,
                           err) == 1) {
        wv_err_clear(err);
        rc = 0;
    }
    if (rc == 0 && res)
        *res = p->res;
    push_free(p);
    free(p);
    return rc;
}

int wv_push_file(const wv_config *cfg, const char *path, wv_err *err)
{
    return wv_push_file_to(cfg, NULL, path, NULL, err);
}
