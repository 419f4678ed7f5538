/*
 * backup.c - basebackup backup: stream a base backup from PostgreSQL into every configured
 * repository.
 *
 *   connect (replication) -> IDENTIFY_SYSTEM, check/record the cluster in each repository
 *   -> remove leftovers of interrupted backups -> lock object backup/<id>/backup.lock
 *   -> BASE_BACKUP: tar stream -> tar reader -> one job per regular file on the thread pool
 *      (sha256 + lz4 + object framing -> a sink per repository, committed with WV_PUT_NOSYNC);
 *      files of at most 1 MiB are gathered into bundles of 4 MiB, one job and one object each
 *      (every file in it a complete object of its own, back to back; see manifest.h); files above
 *      64 MiB are stored as chunks of 64 MiB, one job and one object each, in order, the whole
 *      file's SHA-256 computed on this thread as the data arrives (restore then writes the chunks
 *      of one file in parallel)
 *   -> wait for the jobs, wv_storage_flush -> wait until the WAL start..stop and the backup history
 *      file are archived -> read START/STOP TIME from the history file -> manifest (last, durable)
 *   -> remove the lock.
 * The lock and the leftovers are the backup set's (repo/backupset.h), the bundle writer sits beside
 * its reader (repo/bundle.h); this file runs the steps (wv_bbcmd_backup -> run_backup).
 *
 * Memory: each in-flight file job holds at most CHAN_SLOTS chunks of CHUNK bytes; at most
 * `inflight` jobs exist, so memory is bounded whatever the size of the database.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fileio.h"
#include "pipeline/filter.h"
#include "core/log.h"
#include "core/notify.h"
#include "pg/archcheck.h"
#include "repo/backupset.h"
#include "repo/bundle.h"
#include "repo/manifest.h"
#include "pipeline/object.h"
#include "core/parallel.h"
#include "core/units.h"
#include "pg/replication.h"
#include "repo/repo.h"
#include "storage/storage.h"
#include "pipeline/tar.h"
#include "pg/walname.h"

#define CHUNK      (256 * 1024)
#define CHAN_SLOTS 4

/* ---- per-file job: a bounded channel from the stream reader to a pool thread --------------- */

typedef struct chunk {
    uint8_t *data;
    size_t len;
    size_t cap;
} chunk;

#define BIG_FILE_BYTES (64ull * 1024 * 1024)

/* Files larger than this are stored as chunks of this size, each an object of its own (manifest.h),
 * so that restore writes one file with several jobs. WALVAULT_TEST_CHUNK_SIZE (bytes, at least
 * 64 KiB; 0: never chunk) overrides it for tests, which need not write tables of 64 MiB. */
#define CHUNK_FILE_BYTES (64ull * 1024 * 1024)

/* A file stored as chunks: one file_job per chunk, in order; the manifest entry is written once
 * every chunk is stored. Owned by the producer (while it receives the file) and by each chunk job
 * not yet done; the last to let go frees it (all on the main thread). */
typedef struct big_file {
    char *path;
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    uint32_t nchunks, stored; /* chunks in all, chunks stored */
    wv_manifest_chunk *chunks;
    wv_filter *hash; /* the whole file's SHA-256, on the main thread as the data arrives */
    uint8_t sha256[32];
    int received_all; /* the producer is done: sha256 is set */
    int refs;
    int failed;
} big_file;

typedef struct file_job {
    struct backup_ctx *ctx;
    char *path;    /* manifest path: pgdata/... or tblspc/<oid>/... */
    char *key;     /* backup/<id>/<path> */
    uint64_t size; /* from the tar header */
    uint32_t mode;
    int64_t mtime;
    /* channel */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    chunk slots[CHAN_SLOTS];
    int head, count;
    int eof;      /* producer: no more chunks */
    int aborted;  /* producer: give up */
    int finished; /* consumer: done (success or failure), takes nothing more */
    /* producer side */
    chunk pending;
    uint64_t received;
    /* results (consumer) */
    uint8_t sha256[32];
    uint64_t plain_size;
    uint64_t stored_size;
    /* a chunk of a big file: chunk `index`, at `offset` in it */
    big_file *big;
    uint32_t index;
    uint64_t offset;
} file_job;

typedef struct backup_ctx {
    wv_config *cfg;
    wv_repo *repos[WV_MAX_REPOS]; /* the repositories written: every required one, and each
                                   * required = no one that is up */
    int nrepos;
    char skipped[WV_MAX_REPOS * 24]; /* names of the required = no repositories skipped */
    char id[WV_MANIFEST_ID_MAX];
    wv_parallel *par;
    wv_manifest_writer *mw;
    wv_obj_opts objopts;
    /* stream state */
    wv_tar_reader *tar;
    char *prefix; /* "pgdata" or "tblspc/<oid>" of the current archive */
    file_job *cur;
    big_file *big;         /* the file being received is stored as chunks (cur: its chunk) */
    uint64_t chunk_size;   /* CHUNK_FILE_BYTES, or the test override; 0 = never */
    wv_bundle_out *bundle; /* filling */
    int in_bundle;         /* the current tar member goes into it */
    uint32_t nbundles;
    int in_manifest;
    wv_pgrepl_backup_start start;
    wv_pgrepl_tablespace *tbs;
    size_t ntbs;
    int have_label;
    /* progress */
    int tty;
    uint64_t total_bytes; /* 0: unknown */
    uint64_t done_bytes;
    uint64_t stream_bytes;
    double t0, last_draw;
    int err_recorded;
    /* waiting for the checkpoint: a thread draws the elapsed seconds on a terminal until the
     * server's first result (on_begin) */
    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;
    pthread_t wait_thr;
    int wait_running;
    int wait_over;
} backup_ctx;

static void job_free(file_job *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->count; i++)
        free(j->slots[(j->head + i) % CHAN_SLOTS].data);
    free(j->pending.data);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->path);
    free(j->key);
    free(j);
}

/* Consumer: next chunk, or 0 with c->data NULL at EOF; WV_EINTERRUPTED if the producer gave up. */
static int chan_pop(file_job *j, chunk *c)
{
    pthread_mutex_lock(&j->mu);
    while (j->count == 0 && !j->eof && !j->aborted)
        pthread_cond_wait(&j->cv, &j->mu);
    int rc = 0;
    c->data = NULL;
    c->len = 0;
    if (j->aborted) {
        rc = WV_EINTERRUPTED;
    } else if (j->count > 0) {
        *c = j->slots[j->head];
        j->head = (j->head + 1) % CHAN_SLOTS;
        j->count--;
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static void chan_finish_consumer(file_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->finished = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Producer: hand over a chunk (ownership passes) or mark EOF (c == NULL). Waits while the channel
 * is full; gives up when the consumer finished early or the runner stopped. */
static int chan_push(backup_ctx *ctx, file_job *j, chunk *c, wv_err *err)
{
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->finished || wv_parallel_stopped(ctx->par)) {
            pthread_mutex_unlock(&j->mu);
            if (c) {
                free(c->data);
                c->data = NULL;
            }
            return wv_err_set(err, WV_EINTERRUPTED, "storing \"%s\" stopped", j->path);
        }
        if (!c || j->count < CHAN_SLOTS)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    if (c) {
        j->slots[(j->head + j->count) % CHAN_SLOTS] = *c;
        j->count++;
        c->data = NULL;
        c->len = 0;
    } else {
        j->eof = 1;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static void chan_abort(file_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->aborted = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Pool thread: store one file into every repository. */
static int job_run(void *arg, wv_err *err)
{
    file_job *j = arg;
    backup_ctx *ctx = j->ctx;
    wv_sink *sinks[WV_MAX_REPOS] = {0};
    wv_objwriter *w = NULL;
    int rc = 0, n = ctx->nrepos;
    for (int i = 0; i < n; i++)
        if ((rc = wv_storage_put_open(ctx->repos[i]->st, j->key, WV_PUT_NOSYNC, &sinks[i], err)) <
            0)
            goto out;
    /* A large file (a 1 GiB relation segment) hashes on a helper thread while this one
     * compresses: otherwise it alone keeps one core busy long after the small files are done. */
    wv_obj_opts opts = ctx->objopts;
    const wv_obj_crypto *crypto[WV_MAX_REPOS] = {0};
    for (int i = 0; i < n; i++)
        crypto[i] = wv_repo_crypto(ctx->repos[i]->st);
    opts.hash_thread = j->size >= BIG_FILE_BYTES;
    opts.name = j->key;
    opts.sink_crypto = crypto; /* each repository under its own keys */
    w = wv_objwriter_new(sinks, n, &opts);
    for (;;) {
        chunk c;
        if ((rc = chan_pop(j, &c)) < 0) {
            wv_err_set(err, rc, "storing \"%s\" was interrupted", j->path);
            goto out;
        }
        if (!c.data)
            break;
        rc = wv_parallel_stopped(ctx->par) ? WV_EINTERRUPTED : 0;
        if (rc == 0)
            rc = wv_objwriter_write(w, c.data, c.len, err);
        else
            wv_err_set(err, rc, "storing \"%s\" stopped after another failure", j->path);
        free(c.data);
        if (rc < 0)
            goto out;
    }
    wv_obj_info info;
    if ((rc = wv_objwriter_finish(w, &info, err)) < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        const wv_err *se = wv_objwriter_sink_error(w, i);
        if (se) {
            *err = *se;
            rc = se->code ? se->code : WV_EIO;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        wv_sink *s = sinks[i];
        sinks[i] = NULL;
        if ((rc = wv_sink_commit(s, err)) < 0)
            goto out;
    }
    memcpy(j->sha256, info.sha256, 32);
    j->plain_size = info.plain_size;
    /* The object is header + payload + trailer: no need to ask the store (a round trip per file
     * on S3). */
    j->stored_size = info.payload_size + info.header_size + WV_OBJ_TRAILER_SIZE;
out:
    for (int i = 0; i < n; i++)
        wv_sink_abort(sinks[i]);
    wv_objwriter_free(w);
    chan_finish_consumer(j);
    if (rc < 0 && rc != WV_EINTERRUPTED)
        wv_err_prefix(err, "could not store \"%s\": ", j->path);
    return rc;
}

static void big_release(big_file *b)
{
    if (!b || --b->refs > 0)
        return;
    wv_filter_chain_free(b->hash);
    free(b->chunks);
    free(b->path);
    free(b);
}

/* Main thread: once every chunk is stored and the whole file received, its manifest entry. */
static void big_record(backup_ctx *ctx, big_file *b)
{
    if (b->failed || !b->received_all || b->stored != b->nchunks)
        return;
    wv_manifest_entry e = {.type = WV_MANIFEST_FILE,
                           .path = b->path,
                           .size = b->size,
                           .mode = b->mode,
                           .mtime = b->mtime,
                           .nchunks = b->nchunks,
                           .chunks = b->chunks};
    for (uint32_t k = 0; k < b->nchunks; k++)
        e.stored_size += b->chunks[k].stored_size;
    memcpy(e.sha256, b->sha256, 32);
    wv_err me;
    if (wv_manifest_writer_add(ctx->mw, &e, &me) < 0)
        wv_parallel_cancel(ctx->par, &me);
}

/* Main thread: a stored chunk of a big file. */
static void chunk_done(file_job *j, int rc)
{
    big_file *b = j->big;
    if (rc == 0 && j->plain_size == j->received && j->received == j->size) {
        wv_manifest_chunk *c = &b->chunks[j->index];
        c->offset = j->offset;
        c->length = j->plain_size;
        c->stored_size = j->stored_size;
        memcpy(c->sha256, j->sha256, 32);
        b->stored++;
        big_record(j->ctx, b);
    } else {
        if (rc == 0) {
            wv_err e;
            wv_err_set(&e, WV_EINTERNAL,
                       "\"%s\": chunk %" PRIu32 ": stored %" PRIu64 " bytes, received %" PRIu64,
                       b->path, j->index, j->plain_size, j->received);
            wv_parallel_cancel(j->ctx->par, &e);
        }
        b->failed = 1;
    }
    big_release(b);
}

/* Main thread: record the finished file in the manifest. */
static void job_done(void *arg, int rc, const wv_err *jerr)
{
    file_job *j = arg;
    backup_ctx *ctx = j->ctx;
    if (j->big) {
        chunk_done(j, rc);
    } else if (rc == 0) {
        if (j->plain_size != j->received) {
            wv_err e;
            wv_err_set(&e, WV_EINTERNAL, "\"%s\": stored %" PRIu64 " bytes, received %" PRIu64,
                       j->path, j->plain_size, j->received);
            wv_parallel_cancel(ctx->par, &e);
        } else {
            wv_manifest_entry e = {.type = WV_MANIFEST_FILE,
                                   .path = j->path,
                                   .size = j->plain_size,
                                   .mode = j->mode,
                                   .mtime = j->mtime,
                                   .stored_size = j->stored_size};
            memcpy(e.sha256, j->sha256, 32);
            wv_err me;
            if (wv_manifest_writer_add(ctx->mw, &e, &me) < 0)
                wv_parallel_cancel(ctx->par, &me);
        }
    }
    (void)jerr;
    if (ctx->cur == j)
        ctx->cur = NULL;
    job_free(j);
}

/* Pool thread: store every member of a bundle, back to back, into one object per repository. */
static int stopped(void *arg)
{
    return wv_parallel_stopped(arg);
}

static int bundle_run(void *arg, wv_err *err)
{
    wv_bundle_out *b = arg;
    backup_ctx *ctx = b->data_arg;
    wv_storage *st[WV_MAX_REPOS];
    for (int i = 0; i < ctx->nrepos; i++)
        st[i] = ctx->repos[i]->st;
    return wv_bundle_out_store(b, st, ctx->nrepos, &ctx->objopts, stopped, ctx->par, err);
}

/* Main thread: record the members in the manifest. */
static void bundle_done(void *arg, int rc, const wv_err *jerr)
{
    wv_bundle_out *b = arg;
    backup_ctx *ctx = b->data_arg;
    (void)jerr;
    for (size_t k = 0; rc == 0 && k < b->n; k++) {
        wv_manifest_entry e;
        wv_bundle_out_entry(b, k, &e);
        wv_err me;
        if (wv_manifest_writer_add(ctx->mw, &e, &me) < 0) {
            wv_parallel_cancel(ctx->par, &me);
            break;
        }
    }
    wv_bundle_out_free(b);
}

/* Hand the filling bundle (if any) to the pool. */
static int bundle_submit(backup_ctx *ctx, wv_err *err)
{
    wv_bundle_out *b = ctx->bundle;
    if (!b)
        return 0;
    ctx->bundle = NULL;
    int rc = wv_parallel_submit(ctx->par, bundle_run, bundle_done, b, err);
    if (rc < 0)
        wv_bundle_out_free(b);
    return rc;
}

static int bundle_add(backup_ctx *ctx, const char *path, uint64_t size, uint32_t mode,
                      int64_t mtime, wv_err *err)
{
    if (!wv_manifest_path_valid(path))
        return wv_err_set(err, WV_EPG, "the server sent a file with an unusable name \"%s\"", path);
    if (ctx->bundle && !wv_bundle_out_fits(ctx->bundle, size)) {
        int rc = bundle_submit(ctx, err);
        if (rc < 0)
            return rc;
    }
    if (!ctx->bundle) {
        ctx->bundle = wv_bundle_out_new(ctx->id, ++ctx->nbundles);
        ctx->bundle->data_arg = ctx;
    }
    wv_bundle_out_add(ctx->bundle, path, size, mode, mtime);
    ctx->in_bundle = 1;
    return 0;
}

static int start_job(backup_ctx *ctx, const char *path, uint64_t size, uint32_t mode, int64_t mtime,
                     big_file *big, uint32_t index, uint64_t offset, wv_err *err)
{
    file_job *j = wv_xcalloc(1, sizeof(*j));
    j->ctx = ctx;
    j->path = wv_xstrdup(path);
    if (big) {
        wv_manifest_entry e = {.type = WV_MANIFEST_FILE, .path = path};
        char key[1200];
        wv_manifest_chunk_key(ctx->id, &e, index, key, sizeof(key));
        j->key = wv_xstrdup(key);
        j->big = big;
        j->index = index;
        j->offset = offset;
    } else {
        j->key = wv_xasprintf("backup/%s/%s", ctx->id, path);
    }
    j->size = size;
    j->mode = mode;
    j->mtime = mtime;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (!wv_manifest_path_valid(path) || !wv_storage_key_valid(j->key)) {
        job_free(j);
        return wv_err_set(err, WV_EPG, "the server sent a file with an unusable name \"%s\"", path);
    }
    if (big)
        big->refs++; /* before submitting: done may run inside the submit */
    int rc = wv_parallel_submit(ctx->par, job_run, job_done, j, err);
    if (rc < 0) {
        if (big)
            big->refs--;
        job_free(j);
        return rc;
    }
    ctx->cur = j;
    return 0;
}

/* The next chunk of the big file being received: chunk k starts at k * chunk_size. */
static int next_chunk(backup_ctx *ctx, uint32_t k, wv_err *err)
{
    big_file *b = ctx->big;
    uint64_t off = (uint64_t)k * ctx->chunk_size;
    uint64_t len = b->size - off < ctx->chunk_size ? b->size - off : ctx->chunk_size;
    return start_job(ctx, b->path, len, b->mode, b->mtime, b, k, off, err);
}

static int start_file(backup_ctx *ctx, const char *path, uint64_t size, uint32_t mode,
                      int64_t mtime, wv_err *err)
{
    if (size <= WV_BUNDLE_FILE_MAX)
        return bundle_add(ctx, path, size, mode, mtime, err);
    if (ctx->chunk_size == 0 || size == UINT64_MAX || size <= ctx->chunk_size)
        return start_job(ctx, path, size, mode, mtime, NULL, 0, 0, err);
    if (!wv_manifest_path_valid(path))
        return wv_err_set(err, WV_EPG, "the server sent a file with an unusable name \"%s\"", path);
    big_file *b = wv_xcalloc(1, sizeof(*b));
    b->path = wv_xstrdup(path);
    b->size = size;
    b->mode = mode;
    b->mtime = mtime;
    b->nchunks = (uint32_t)((size + ctx->chunk_size - 1) / ctx->chunk_size);
    b->chunks = wv_xcalloc(b->nchunks, sizeof(*b->chunks));
    b->hash = wv_sha256_filter_new(wv_filter_discard_new());
    b->refs = 1; /* the producer's */
    ctx->big = b;
    return next_chunk(ctx, 0, err);
}

/* Producer: let go of the big file being received (done, or given up). */
static void big_drop(backup_ctx *ctx)
{
    big_file *b = ctx->big;
    ctx->big = NULL;
    big_release(b);
}

/* Producer: the current chunk of the big file is complete; start the next one. */
static int chunk_end(backup_ctx *ctx, wv_err *err)
{
    file_job *j = ctx->cur;
    uint32_t next = j->index + 1;
    int rc = chan_push(ctx, j, NULL, err);
    ctx->cur = NULL; /* the job owns itself now; job_done frees it */
    if (rc == 0 && next < ctx->big->nchunks)
        rc = next_chunk(ctx, next, err);
    return rc;
}

static int file_data(backup_ctx *ctx, const uint8_t *buf, size_t len, wv_err *err)
{
    if (ctx->in_bundle)
        return wv_bundle_out_append(ctx->bundle, buf, len, err);
    int rc;
    if (ctx->big && (rc = wv_filter_write(ctx->big->hash, buf, len, err)) < 0)
        return rc;
    if (!ctx->cur)
        return ctx->big ? wv_err_set(err, WV_EPG, "\"%s\": more data than its size", ctx->big->path)
                        : wv_err_set(err, WV_EINTERNAL, "file data without a file");
    while (len > 0) {
        file_job *j = ctx->cur;
        if (!j)
            return wv_err_set(err, WV_EPG, "\"%s\": more data than its size", ctx->big->path);
        if (!j->pending.data) {
            uint64_t left = j->size - j->received;
            size_t cap = left < CHUNK ? (size_t)left : CHUNK;
            if (cap == 0)
                return wv_err_set(err, WV_EPG, "\"%s\": more data than its size", j->path);
            j->pending.data = wv_xmalloc(cap);
            j->pending.len = 0;
            j->pending.cap = cap;
        }
        size_t room = j->pending.cap - j->pending.len;
        size_t n = len < room ? len : room;
        memcpy(j->pending.data + j->pending.len, buf, n);
        j->pending.len += n;
        j->received += n;
        buf += n;
        len -= n;
        if (j->pending.len == j->pending.cap && (rc = chan_push(ctx, j, &j->pending, err)) < 0)
            return rc;
        if (ctx->big && j->received == j->size && (rc = chunk_end(ctx, err)) < 0)
            return rc;
    }
    return 0;
}

/* Producer: the whole big file was received (every chunk job has its data). */
static int big_end(backup_ctx *ctx, wv_err *err)
{
    big_file *b = ctx->big;
    if (ctx->cur) {
        uint64_t got = ctx->cur->offset + ctx->cur->received;
        return wv_err_set(err, WV_EPG, "\"%s\": received %" PRIu64 " of %" PRIu64 " bytes", b->path,
                          got, b->size);
    }
    int rc = wv_filter_finish(b->hash, err);
    if (rc < 0)
        return rc;
    wv_sha256_filter_digest(b->hash, b->sha256);
    b->received_all = 1;
    big_record(ctx, b);
    big_drop(ctx);
    return 0;
}

static int end_file(backup_ctx *ctx, wv_err *err)
{
    if (ctx->in_bundle) {
        ctx->in_bundle = 0;
        return wv_bundle_out_end(ctx->bundle, err);
    }
    if (ctx->big)
        return big_end(ctx, err);
    file_job *j = ctx->cur;
    int rc = 0;
    if (!j)
        return 0;
    if (j->pending.data && j->pending.len && (rc = chan_push(ctx, j, &j->pending, err)) < 0)
        return rc;
    if (j->size == UINT64_MAX) /* streamed without a known size */
        j->size = j->received;
    if (j->received != j->size)
        return wv_err_set(err, WV_EPG, "\"%s\": received %" PRIu64 " of %" PRIu64 " bytes", j->path,
                          j->received, j->size);
    rc = chan_push(ctx, j, NULL, err);
    ctx->cur = NULL; /* the job owns itself now; job_done frees it */
    return rc;
}

/* ---- tar callbacks -------------------------------------------------------------------------- */

static int tar_begin(void *arg, const wv_tar_entry *e, wv_err *err)
{
    backup_ctx *ctx = arg;
    char *path = wv_xasprintf("%s/%s", ctx->prefix, e->path);
    int rc = 0;
    wv_manifest_entry me = {.path = path, .mode = e->mode, .mtime = e->mtime};
    switch (e->type) {
    case WV_TAR_FILE:
        rc = start_file(ctx, path, e->size, e->mode, e->mtime, err);
        break;
    case WV_TAR_DIR:
        me.type = WV_MANIFEST_DIR;
        rc = wv_manifest_writer_add(ctx->mw, &me, err);
        break;
    case WV_TAR_SYMLINK:
        me.type = WV_MANIFEST_SYMLINK;
        me.target = e->linkname;
        rc = wv_manifest_writer_add(ctx->mw, &me, err);
        break;
    default:
        wv_log_warn("skipping \"%s\": unsupported tar member type '%c'", path, e->typeflag);
        break;
    }
    free(path);
    return rc;
}

static int tar_data(void *arg, const uint8_t *buf, size_t len, wv_err *err)
{
    backup_ctx *ctx = arg;
    return ctx->cur || ctx->in_bundle || ctx->big ? file_data(ctx, buf, len, err) : 0;
}

static int tar_end(void *arg, wv_err *err)
{
    return end_file(arg, err);
}

static const wv_tar_callbacks tar_cbs = {tar_begin, tar_data, tar_end};

/* ---- progress ------------------------------------------------------------------------------- */

static void draw_progress(backup_ctx *ctx, int final)
{
    if (!ctx->tty)
        return;
    double t = wv_mono_s();
    if (!final && t - ctx->last_draw < 0.5)
        return;
    ctx->last_draw = t;
    double el = t - ctx->t0;
    double mb = (double)ctx->stream_bytes / 1048576.0;
    double rate = el > 0 ? mb / el : 0;
    if (ctx->total_bytes) {
        double pct = 100.0 * (double)ctx->done_bytes / (double)ctx->total_bytes;
        if (pct > 100)
            pct = 100;
        double eta = rate > 0 && pct < 100
                         ? ((double)(ctx->total_bytes - (ctx->done_bytes < ctx->total_bytes
                                                             ? ctx->done_bytes
                                                             : ctx->total_bytes)) /
                            1048576.0) /
                               rate
                         : 0;
        fprintf(stderr, "\r%5.1f%%  %8.1f MiB  %7.1f MiB/s  ETA %02d:%02d  ", pct, mb, rate,
                (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "\r%8.1f MiB  %7.1f MiB/s  ", mb, rate);
    }
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---- waiting for the checkpoint -------------------------------------------------------------- */

/* A time setting as SHOW prints it ("5min", "300s", "1h", "500ms", "1d"; a bare number is seconds)
 * in seconds. Returns 0 or -1. */
static int setting_seconds(const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double n = strtod(v, &end);
    if (errno || end == v || n < 0)
        return -1;
    static const struct {
        const char *unit;
        double s;
    } units[] = {{"", 1}, {"ms", 0.001}, {"s", 1}, {"min", 60}, {"h", 3600}, {"d", 86400}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0) {
            *out = n * units[i].s;
            return 0;
        }
    return -1;
}

/* The line said before BASE_BACKUP: with a spread checkpoint the server takes up to
 * checkpoint_timeout * checkpoint_completion_target before the first byte comes. */
static void checkpoint_announce(wv_pgconn *conn, int fast)
{
    if (fast) {
        wv_log_note("waiting for checkpoint (fast)");
        return;
    }
    char t[64], c[64];
    double ts = 0, ct = 0;
    char *end = NULL;
    wv_err e;
    wv_err_clear(&e);
    if (wv_pgrepl_show(conn, "checkpoint_timeout", t, sizeof(t), &e) == 0 &&
        wv_pgrepl_show(conn, "checkpoint_completion_target", c, sizeof(c), &e) == 0 &&
        setting_seconds(t, &ts) == 0 && (ct = strtod(c, &end)) >= 0 && end != c && !*end)
        wv_log_note("waiting for checkpoint (spread: up to about %.0f s; --checkpoint fast to "
                    "start now)",
                    ts * ct);
    else
        wv_log_note("waiting for checkpoint (spread; --checkpoint fast to start now)");
}

static void *wait_draw(void *arg)
{
    backup_ctx *ctx = arg;
    int drawn = 0;
    pthread_mutex_lock(&ctx->wait_mu);
    while (!ctx->wait_over) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&ctx->wait_cv, &ctx->wait_mu, &ts);
        if (ctx->wait_over)
            break;
        fprintf(stderr, "\rwaiting for checkpoint: %.0f s  ", wv_mono_s() - ctx->t0);
        fflush(stderr);
        drawn = 1;
    }
    pthread_mutex_unlock(&ctx->wait_mu);
    if (drawn) {
        fputc('\n', stderr);
        fflush(stderr);
    }
    return NULL;
}

/* On a terminal: the elapsed seconds, in place, once a second, until wait_end. */
static void wait_begin(backup_ctx *ctx)
{
    ctx->wait_over = 0;
    if (!ctx->tty)
        return;
    pthread_mutex_init(&ctx->wait_mu, NULL);
    pthread_cond_init(&ctx->wait_cv, NULL);
    ctx->wait_running = pthread_create(&ctx->wait_thr, NULL, wait_draw, ctx) == 0;
    if (!ctx->wait_running) {
        pthread_mutex_destroy(&ctx->wait_mu);
        pthread_cond_destroy(&ctx->wait_cv);
    }
}

static void wait_end(backup_ctx *ctx)
{
    if (!ctx->wait_running)
        return;
    pthread_mutex_lock(&ctx->wait_mu);
    ctx->wait_over = 1;
    pthread_cond_signal(&ctx->wait_cv);
    pthread_mutex_unlock(&ctx->wait_mu);
    pthread_join(ctx->wait_thr, NULL);
    pthread_mutex_destroy(&ctx->wait_mu);
    pthread_cond_destroy(&ctx->wait_cv);
    ctx->wait_running = 0;
}

/* ---- replication callbacks ------------------------------------------------------------------ */

static int finish_archive(backup_ctx *ctx, wv_err *err)
{
    int rc = 0;
    if (ctx->tar) {
        rc = wv_tar_reader_finish(ctx->tar, err);
        wv_tar_reader_free(ctx->tar);
        ctx->tar = NULL;
    }
    if (ctx->in_manifest) {
        rc = rc < 0 ? rc : end_file(ctx, err);
        ctx->in_manifest = 0;
    }
    return rc;
}

static int on_begin(void *arg, const wv_pgrepl_backup_start *s, wv_err *err)
{
    backup_ctx *ctx = arg;
    wait_end(ctx);
    ctx->t0 = wv_mono_s(); /* the transfer's rate counts from the first result */
    ctx->start.start_lsn = s->start_lsn;
    ctx->start.start_tli = s->start_tli;
    ctx->ntbs = s->ntablespaces;
    ctx->tbs = wv_xcalloc(s->ntablespaces + 1, sizeof(*ctx->tbs));
    for (size_t i = 0; i < s->ntablespaces; i++) {
        ctx->tbs[i].oid = s->tablespaces[i].oid;
        ctx->tbs[i].location =
            s->tablespaces[i].location ? wv_xstrdup(s->tablespaces[i].location) : NULL;
        if (s->tablespaces[i].size_kb > 0)
            ctx->total_bytes += (uint64_t)s->tablespaces[i].size_kb * 1024;
        if (s->tablespaces[i].oid && s->tablespaces[i].location) {
            wv_manifest_entry e = {.type = WV_MANIFEST_TABLESPACE,
                                   .oid = s->tablespaces[i].oid,
                                   .target = s->tablespaces[i].location};
            int rc = wv_manifest_writer_add(ctx->mw, &e, err);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int on_archive(void *arg, const char *name, const char *location, wv_err *err)
{
    backup_ctx *ctx = arg;
    int rc = finish_archive(ctx, err);
    if (rc < 0)
        return rc;
    free(ctx->prefix);
    ctx->prefix = NULL;
    if (!location) {
        ctx->prefix = wv_xstrdup("pgdata");
    } else {
        for (size_t i = 0; i < ctx->ntbs; i++)
            if (ctx->tbs[i].location && strcmp(ctx->tbs[i].location, location) == 0)
                ctx->prefix = wv_xasprintf("tblspc/%" PRIu32, ctx->tbs[i].oid);
        if (!ctx->prefix)
            return wv_err_set(err, WV_EPG, "archive \"%s\" names an unknown tablespace \"%s\"",
                              name, location);
    }
    ctx->tar = wv_tar_reader_new(name, &tar_cbs, ctx);
    return 0;
}

static int on_manifest(void *arg, wv_err *err)
{
    backup_ctx *ctx = arg;
    int rc = finish_archive(ctx, err);
    if (rc < 0)
        return rc;
    /* size unknown in advance: a streaming job whose size is checked against what arrives */
    rc = start_file(ctx, "pgdata/backup_manifest", UINT64_MAX, 0600, (int64_t)time(NULL), err);
    if (rc < 0)
        return rc;
    ctx->in_manifest = 1;
    return 0;
}

static int on_data(void *arg, const uint8_t *buf, size_t len, wv_err *err)
{
    backup_ctx *ctx = arg;
    ctx->stream_bytes += len;
    if (!ctx->total_bytes)
        ctx->done_bytes = ctx->stream_bytes;
    draw_progress(ctx, 0);
    if (ctx->in_manifest)
        return file_data(ctx, buf, len, err);
    if (!ctx->tar)
        return wv_err_set(err, WV_EPG, "the server sent data before naming an archive");
    return wv_tar_reader_feed(ctx->tar, buf, len, err);
}

static int on_progress(void *arg, uint64_t done, wv_err *err)
{
    backup_ctx *ctx = arg;
    ctx->done_bytes = done;
    draw_progress(ctx, 0);
    return 0;
}

static const wv_pgrepl_backup_cb repl_cbs = {on_begin, on_archive, on_manifest, on_data,
                                             on_progress};

/* ---- the lock ----------------------------------------------------------------------------- */

static wv_storage **storages(backup_ctx *ctx, wv_storage **st)
{
    for (int i = 0; i < ctx->nrepos; i++)
        st[i] = ctx->repos[i]->st;
    return st;
}

/* ---- WAL and server times ------------------------------------------------------------------- */

static int wait_for_key(backup_ctx *ctx, const char *walname, double deadline, int timeout,
                        wv_err *err)
{
    char key[256];
    int rc = wv_repo_wal_key(walname, key, sizeof(key), err);
    if (rc < 0)
        return rc;
    for (int i = 0; i < ctx->nrepos; i++) {
        for (;;) {
            wv_stat sb;
            rc = wv_storage_stat(ctx->repos[i]->st, key, &sb, err);
            if (rc == 0)
                break;
            if (rc != WV_ENOTFOUND)
                return rc;
            if (wv_mono_s() >= deadline) {
                wv_err_set(err, WV_ETIMEOUT,
                           "WAL file %s was not archived in %s within %d "
                           "seconds",
                           walname, ctx->repos[i]->rc->name, timeout);
                return wv_err_hint(err, "check archive_command (it must run wal-push) and "
                                        "pg_stat_archiver on the server; the backup is not valid "
                                        "without this WAL");
            }
            usleep(200 * 1000);
        }
    }
    return 0;
}

/* "2026-11-25 10:15:00 UTC" in the server's zone -> epoch. */
static int parse_server_time(const char *text, const char *tzname, int64_t *out)
{
    struct tm tm = {0};
    char zone[64] = "";
    int n = 0;
    if (sscanf(text, "%d-%d-%d %d:%d:%d %63s%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, zone, &n) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    if (strcmp(zone, "UTC") == 0 || strcmp(zone, "GMT") == 0 || strcmp(zone, "Z") == 0) {
        *out = (int64_t)timegm(&tm);
        return 0;
    }
    if (zone[0] == '+' || zone[0] == '-') {
        int sign = zone[0] == '-' ? -1 : 1;
        const char *d = zone + 1;
        size_t len = strlen(d);
        int hh = 0, mm = 0;
        if (len == 2 && sscanf(d, "%2d", &hh) == 1) {
        } else if (len == 4 && sscanf(d, "%2d%2d", &hh, &mm) == 2) {
        } else if (len == 5 && sscanf(d, "%2d:%2d", &hh, &mm) == 2) {
        } else {
            return -1;
        }
        *out = (int64_t)timegm(&tm) - sign * (hh * 3600 + mm * 60);
        return 0;
    }
    /* An abbreviation: interpret in the server's log_timezone. */
    char *old = getenv("TZ") ? wv_xstrdup(getenv("TZ")) : NULL;
    setenv("TZ", tzname, 1);
    tzset();
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (old) {
        setenv("TZ", old, 1);
        free(old);
    } else {
        unsetenv("TZ");
    }
    tzset();
    if (t == (time_t)-1)
        return -1;
    *out = (int64_t)t;
    return 0;
}

static const char *find_field(const char *text, const char *name, char *out, size_t outlen)
{
    const char *p = text;
    size_t nl = strlen(name);
    while (p && *p) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':' && p[nl + 1] == ' ') {
            const char *v = p + nl + 2;
            const char *e = strchr(v, '\n');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= outlen)
                len = outlen - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

typedef struct server_facts {
    wv_pg_system sys;
    uint64_t segsize;
    char tzname[128];
    int version;
    char datadir[1024]; /* SHOW data_directory, or "" if not allowed */
} server_facts;

/*
 * The backup history file's text. From the repository, unless that is encrypted for a public key
 * this host cannot read with (the database host holds only the public key): then from the
 * server's own pg_wal, where PostgreSQL wrote it and the archiver has just read it (backup runs
 * beside the server there). Its content is checked against the backup all the same.
 */
/* A public-key host takes the backup history file from the server's pg_wal: 0 if this host can
 * read that directory (checked before the backup starts, and again when the file is read). */
static int server_pg_wal(const char *datadir, wv_err *err)
{
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/pg_wal", datadir);
    if (datadir[0] && access(dir, R_OK | X_OK) == 0)
        return 0;
    if (datadir[0])
        wv_err_errno(err, WV_EPRIVKEY, errno,
                     "the repository is encrypted for a public key, and the server's \"%s\", "
                     "where backup takes the backup history file from, is not readable here",
                     dir);
    else
        wv_err_set(err, WV_EPRIVKEY,
                   "the repository is encrypted for a public key, and the server's data "
                   "directory, where backup takes the backup history file from, is not known "
                   "here (SHOW data_directory needs superuser or pg_read_all_settings)");
    return wv_err_hint(err, "run backup on the database host as the user that owns the data "
                            "directory (or on a host with encrypt_private_key_file)");
}

static int history_text(backup_ctx *ctx, const char *histname, const char *datadir, wv_buf *b,
                        wv_err *err)
{
    const wv_obj_crypto *c = wv_repo_crypto(ctx->repos[0]->st);
    if (wv_repo_readable(ctx->repos[0]->st)) {
        char key[256];
        wv_source *src = NULL;
        int rc = wv_repo_wal_key(histname, key, sizeof(key), err);
        if (rc < 0 || (rc = wv_storage_get_open(ctx->repos[0]->st, key, 0, -1, &src, err)) < 0)
            return rc;
        wv_filter *f = wv_filter_buf_new(b);
        rc = wv_object_read_opts(
            src, f, &(wv_objread_opts){.key = key, .max_plain = WV_REPO_WAL_TEXT_MAX, .crypto = c},
            NULL, err);
        wv_filter_chain_free(f);
        wv_source_close(src);
        return rc;
    }
    char path[1200];
    int rc = server_pg_wal(datadir, err);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/pg_wal/%s", datadir, histname);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        wv_err_errno(err, WV_EPRIVKEY, errno, "backup history file %s: could not open \"%s\"",
                     histname, path);
        return wv_err_hint(err, "the repository is encrypted for a public key, so backup reads "
                                "this file from the server's pg_wal: run it on the database "
                                "host as the user that owns the data directory");
    }
    uint8_t tmp[WV_REPO_WAL_TEXT_MAX];
    size_t got = 0;
    rc = wv_read_full(fd, tmp, sizeof(tmp), &got, path, err);
    close(fd);
    if (rc == 0 && got == sizeof(tmp))
        rc = wv_err_set(err, WV_ECORRUPT, "backup history file \"%s\" is too large", path);
    if (rc == 0)
        wv_buf_append(b, tmp, got);
    return rc;
}

/* Read the archived backup history file: START/STOP TIME, CHECKPOINT LOCATION. */
static int read_history(backup_ctx *ctx, const char *histname, const server_facts *sf,
                        wv_manifest_header *h, wv_err *err)
{
    const char *tzname = sf->tzname;
    wv_buf b = WV_BUF_INIT;
    int rc = history_text(ctx, histname, sf->datadir, &b, err);
    if (rc < 0)
        goto out;
    const char *text = wv_buf_cstr(&b);
    char v[256];
    if (!find_field(text, "START TIME", v, sizeof(v)) ||
        parse_server_time(v, tzname, &h->start_time) < 0) {
        rc = wv_err_set(err, WV_ECORRUPT, "backup history file %s: no usable START TIME", histname);
        goto out;
    }
    h->start_time_text = wv_xstrdup(v);
    if (!find_field(text, "STOP TIME", v, sizeof(v)) ||
        parse_server_time(v, tzname, &h->stop_time) < 0) {
        rc = wv_err_set(err, WV_ECORRUPT, "backup history file %s: no usable STOP TIME", histname);
        goto out;
    }
    h->stop_time_text = wv_xstrdup(v);
    if (find_field(text, "CHECKPOINT LOCATION", v, sizeof(v)))
        wv_lsn_parse(v, &h->checkpoint_lsn);
out:
    wv_buf_free(&b);
    return rc;
}

/* ---- the command ---------------------------------------------------------------------------- */

static const char usage_text[] =
    "usage: basebackup [-c FILE] backup [-d CONNSTR] [--label TEXT] [--keep] "
    "[--checkpoint fast|spread]\n"
    "  -d, --dbname CONNSTR   libpq connection string (else PG* environment, service file)\n"
    "  --label TEXT           backup label (default: walvault backup <id>)\n"
    "  --keep                 never expire this backup\n"
    "  --checkpoint MODE      fast or spread (default spread)\n";

typedef struct backup_args {
    const char *config_path, *connstr, *label;
    int keep, fast;
} backup_args;

/* Step 0: the command line. Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, backup_args *a)
{
    static const struct option longopts[] = {
        {"dbname", required_argument, NULL, 'd'},
        {"label", required_argument, NULL, 'l'},
        {"keep", no_argument, NULL, 'k'},
        {"checkpoint", required_argument, NULL, 'C'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    wv_err err;
    wv_err_clear(&err);
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "d:c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            a->connstr = optarg;
            break;
        case 'l':
            a->label = optarg;
            break;
        case 'k':
            a->keep = 1;
            break;
        case 'c':
            a->config_path = optarg;
            break;
        case 'C':
            if (strcmp(optarg, "fast") == 0)
                a->fast = 1;
            else if (strcmp(optarg, "spread") == 0)
                a->fast = 0;
            else {
                wv_err_set(&err, WV_EUSAGE, "invalid --checkpoint \"%s\": use fast or spread",
                           optarg);
                wv_log_err(&err);
                return wv_err_exit_code(err.code);
            }
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            wv_err_set(&err, WV_EUSAGE, "backup: unknown or incomplete option \"%s\"",
                       argv[optind - 1]);
            wv_err_hint(&err, "run \"basebackup backup --help\" for usage");
            wv_log_err(&err);
            return wv_err_exit_code(err.code);
        }
    }
    if (optind < argc) {
        wv_err_set(&err, WV_EUSAGE, "backup: unexpected argument \"%s\"", argv[optind]);
        wv_log_err(&err);
        return wv_err_exit_code(err.code);
    }
    return -1;
}

/* What the server said of itself. */

/* A repository with required = no that is down is left out of this backup, said loudly; the
 * backup is then listed by the repositories that have it. */
static void skip_repo(backup_ctx *ctx, const wv_repo_config *rc, wv_err *err)
{
    wv_log_warn("%s (required = no) skipped: this backup is not stored there: %s", rc->name,
                err->msg);
    wv_err_clear(err);
    size_t used = strlen(ctx->skipped);
    snprintf(ctx->skipped + used, sizeof(ctx->skipped) - used, "%s%s", used ? ", " : "", rc->name);
}

/* Step 1: configuration and repositories. */
static int open_repos(backup_ctx *ctx, const char *config_path, wv_err *err)
{
    int rc = wv_config_load(wv_config_path(config_path), &ctx->cfg, err);
    if (rc < 0)
        return rc;
    wv_log_set_level(ctx->cfg->log_level);
    if (ctx->cfg->log_file)
        wv_log_open_file(ctx->cfg->log_file);
    ctx->objopts.compress = ctx->cfg->compress;
    ctx->objopts.level = ctx->cfg->compress_level;
    ctx->objopts.kind = WV_OBJ_KIND_BACKUP_FILE;
    for (int i = 0; i < ctx->cfg->nrepos; i++) {
        const wv_repo_config *rc_i = &ctx->cfg->repos[i];
        if ((rc = wv_repo_open(rc_i, &ctx->repos[ctx->nrepos], err)) < 0) {
            if (!rc_i->optional)
                return rc;
            skip_repo(ctx, rc_i, err);
            continue;
        }
        ctx->nrepos++;
    }
    return 0;
}

/* Step 2: connect, identify the cluster; every repository must be this cluster's (or new); the
 * leftovers of interrupted backups go; the lock of this backup is taken everywhere. */
static int connect_and_lock(backup_ctx *ctx, const backup_args *a, wv_pgconn **conn,
                            server_facts *sf, wv_err *err)
{
    wv_storage *st[WV_MAX_REPOS];
    int rc = wv_pgrepl_connect(a->connstr, conn, err);
    if (rc < 0)
        return rc;
    if ((rc = wv_pgrepl_identify_system(*conn, &sf->sys, err)) < 0 ||
        (rc = wv_pgrepl_wal_segsize(*conn, &sf->segsize, err)) < 0 ||
        (rc = wv_pgrepl_show(*conn, "log_timezone", sf->tzname, sizeof(sf->tzname), err)) < 0)
        return rc;
    sf->version = wv_pgrepl_server_version(*conn);
    wv_err e = {0};
    if (wv_pgrepl_show(*conn, "data_directory", sf->datadir, sizeof(sf->datadir), &e) < 0)
        sf->datadir[0] = '\0'; /* needs pg_read_all_settings; only public-key mode uses it */
    for (int i = 0; i < ctx->nrepos; i++) {
        if ((rc = wv_repo_check_cluster(ctx->repos[i], sf->sys.system_id,
                                        (uint32_t)(sf->version / 10000), sf->segsize, err)) == 0 &&
            (rc = wv_backup_cleanup_leftovers(ctx->repos[i]->st, err)) == 0)
            continue;
        /* another cluster's repository is never "down": that stays an error everywhere */
        if (!ctx->repos[i]->rc->optional || rc == WV_EMISMATCH || ctx->nrepos == 1)
            return rc;
        skip_repo(ctx, ctx->repos[i]->rc, err);
        wv_repo_close(ctx->repos[i]);
        memmove(&ctx->repos[i], &ctx->repos[i + 1],
                (size_t)(ctx->nrepos - i - 1) * sizeof(ctx->repos[0]));
        ctx->repos[--ctx->nrepos] = NULL;
        i--;
    }
    if ((rc = wv_archcheck_server(*conn, ctx->cfg->file, WV_ARCHCHECK_WARN_CONFIG, err)) < 0)
        return rc;
    /* a public-key host must be able to take the backup history file from pg_wal: known now,
     * not after the whole database was copied */
    if (!wv_repo_readable(ctx->repos[0]->st) && (rc = server_pg_wal(sf->datadir, err)) < 0)
        return rc;
    return wv_backup_lock_take(storages(ctx, st), ctx->nrepos, ctx->id, sizeof(ctx->id), err);
}

/* Step 3: BASE_BACKUP streamed through the tar reader into the jobs; every job done and every
 * repository flushed. */
static int stream_backup(backup_ctx *ctx, wv_pgconn *conn, const wv_pgrepl_backup_opts *bo,
                         wv_pgrepl_backup_end *end, wv_err *err)
{
    int rc = wv_manifest_writer_new(NULL, &ctx->mw, err);
    if (rc < 0)
        return rc;
    ctx->chunk_size = CHUNK_FILE_BYTES;
    const char *cs = getenv("WALVAULT_TEST_CHUNK_SIZE");
    if (cs && *cs) {
        char *cend;
        unsigned long long v = strtoull(cs, &cend, 10);
        if (*cend || (v != 0 && v < 64 * 1024))
            return wv_err_set(err, WV_EUSAGE,
                              "WALVAULT_TEST_CHUNK_SIZE \"%s\" is not 0 or a number of bytes of "
                              "at least 65536",
                              cs);
        ctx->chunk_size = v;
    }
    int workers = ctx->cfg->process_max > 0 ? ctx->cfg->process_max : 2;
    if ((rc = wv_parallel_new(workers, workers * 2 + 2, &ctx->par, err)) < 0)
        return rc;
    ctx->tty = isatty(2);
    ctx->t0 = wv_mono_s();
    wv_log_debug("backup %s: starting (checkpoint %s)", ctx->id,
                 bo->fast_checkpoint ? "fast" : "spread");
    checkpoint_announce(conn, bo->fast_checkpoint);
    wait_begin(ctx);
    rc = wv_pgrepl_base_backup(conn, bo, &repl_cbs, ctx, end, err);
    wait_end(ctx);
    if (rc == 0)
        rc = finish_archive(ctx, err);
    if (rc == 0)
        rc = bundle_submit(ctx, err);
    if (rc < 0) {
        if (ctx->cur) {
            chan_abort(ctx->cur);
            ctx->cur = NULL;
        }
        big_drop(ctx);
        if (ctx->tar) {
            wv_tar_reader_free(ctx->tar);
            ctx->tar = NULL;
        }
        wv_parallel_cancel(ctx->par, err);
        wv_err jerr;
        wv_parallel_wait(ctx->par, &jerr);
        return rc;
    }
    if ((rc = wv_parallel_wait(ctx->par, err)) < 0)
        return rc;
    draw_progress(ctx, 1);
    return 0;
}

static int flush_repos(backup_ctx *ctx, wv_err *err)
{
    for (int i = 0; i < ctx->nrepos; i++) {
        int rc = wv_storage_flush(ctx->repos[i]->st, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Step 4: the WAL from start to stop and the backup history file must be in every repository;
 * histname receives the history file's name. */
static int wait_for_wal(backup_ctx *ctx, const server_facts *sf, const wv_pgrepl_backup_end *end,
                        char histname[WV_WALNAME_BACKUP_LEN], wv_err *err)
{
    uint64_t segsize = sf->segsize;
    uint64_t first = wv_lsn_to_segno(ctx->start.start_lsn, segsize);
    uint64_t last = wv_lsn_to_segno(end->end_lsn, segsize);
    int timeout = ctx->cfg->archive_timeout > 0 ? ctx->cfg->archive_timeout : 60;
    double deadline = wv_mono_s() + timeout;
    for (uint64_t seg = first; seg <= last; seg++) {
        char name[WV_WALNAME_SEGMENT_LEN];
        uint32_t tli = seg == last ? end->end_tli : ctx->start.start_tli;
        wv_walname_format_segment(tli, seg, segsize, name);
        int rc = wait_for_key(ctx, name, deadline, timeout, err);
        if (rc < 0)
            return rc;
    }
    wv_walname_format_backup(end->end_tli, ctx->start.start_lsn, segsize, histname);
    return wait_for_key(ctx, histname, deadline, timeout, err);
}

/* Step 5: the manifest header, times from the server's backup history file. */
static int fill_header(backup_ctx *ctx, const backup_args *a, const server_facts *sf,
                       const wv_pgrepl_backup_end *end, const char *label, const char *histname,
                       wv_manifest_header *h, wv_err *err)
{
    uint64_t segsize = sf->segsize;
    snprintf(h->id, sizeof(h->id), "%s", ctx->id);
    h->version = WV_MANIFEST_VERSION;
    h->label = wv_xstrdup(label);
    h->keep = a->keep;
    h->created_by = wv_xstrdup("walvault " WALVAULT_VERSION);
    h->system_id = sf->sys.system_id;
    h->pg_version = (uint32_t)sf->version;
    h->wal_segsize = segsize;
    h->timeline = end->end_tli;
    h->start_lsn = ctx->start.start_lsn;
    h->stop_lsn = end->end_lsn;
    h->checkpoint_lsn = ctx->start.start_lsn;
    wv_walname_format_segment(ctx->start.start_tli, wv_lsn_to_segno(ctx->start.start_lsn, segsize),
                              segsize, h->start_segment);
    wv_walname_format_segment(end->end_tli, wv_lsn_to_segno(end->end_lsn, segsize), segsize,
                              h->stop_segment);
    return read_history(ctx, histname, sf, h, err);
}

/* Step 6: the manifest, last and durable: its commit is what makes the backup exist. */
typedef struct manifest_fill {
    backup_ctx *ctx;
    const wv_manifest_header *h;
} manifest_fill;

static int fill_manifest(void *arg, wv_filter *dest, wv_err *err)
{
    manifest_fill *m = arg;
    return wv_manifest_writer_finish(m->ctx->mw, m->h, dest, err);
}

static int write_manifests(backup_ctx *ctx, const wv_manifest_header *h, wv_err *err)
{
    manifest_fill m = {ctx, h};
    for (int i = 0; i < ctx->nrepos; i++) {
        char key[256];
        wv_manifest_key(ctx->id, key, sizeof(key));
        int rc =
            wv_repo_put_stream(ctx->repos[i]->st, key, WV_PUT_NOREPLACE, fill_manifest, &m, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Step 7: the summary line. */
static void report_backup(const backup_ctx *ctx, const wv_manifest_header *h, double t_start)
{
    const wv_manifest_totals *t = wv_manifest_writer_totals(ctx->mw);
    char a[32], b[32];
    wv_human_bytes(t->size, a, sizeof(a));
    wv_human_bytes(t->stored_size, b, sizeof(b));
    printf("backup %s complete: %" PRIu64 " files, %s, stored %s, %.0f s, WAL %s..%s\n", ctx->id,
           t->files, a, b, wv_mono_s() - t_start, h->start_segment, h->stop_segment);
    if (ctx->skipped[0])
        printf("backup %s skipped %s (required = no, unreachable): it is not stored there\n",
               ctx->id, ctx->skipped);
    fflush(stdout);
}

static void backup_ctx_free(backup_ctx *ctx)
{
    wv_parallel_free(ctx->par);
    wv_tar_reader_free(ctx->tar);
    wv_bundle_out_free(ctx->bundle);
    wv_manifest_writer_free(ctx->mw);
    free(ctx->prefix);
    for (size_t i = 0; i < ctx->ntbs; i++)
        free(ctx->tbs[i].location);
    free(ctx->tbs);
    for (int i = 0; i < ctx->nrepos; i++)
        wv_repo_close(ctx->repos[i]);
    wv_config_free(ctx->cfg);
}

/* Steps 1..7; on failure after the lock, this backup's objects are removed (best effort: the
 * next run removes what remains). */
static int run_backup(backup_ctx *ctx, const backup_args *a, wv_manifest_header *h, wv_err *err)
{
    double t_start = wv_mono_s();
    wv_pgconn *conn = NULL;
    server_facts sf;
    wv_pgrepl_backup_end end = {0};
    char deflabel[128], histname[WV_WALNAME_BACKUP_LEN];
    wv_storage *st[WV_MAX_REPOS];
    memset(&sf, 0, sizeof(sf));
    int rc = open_repos(ctx, a->config_path, err);
    if (rc == 0)
        rc = connect_and_lock(ctx, a, &conn, &sf, err);
    if (rc < 0) {
        wv_pgrepl_close(conn);
        return rc;
    }
    snprintf(deflabel, sizeof(deflabel), "walvault backup %s", ctx->id);
    wv_pgrepl_backup_opts bo = {.label = a->label ? a->label : deflabel,
                                .fast_checkpoint = a->fast,
                                .progress = 1,
                                .manifest = 1,
                                .wait = 0};
    rc = stream_backup(ctx, conn, &bo, &end, err);
    wv_pgrepl_close(conn);
    if (rc == 0)
        rc = flush_repos(ctx, err);
    if (rc == 0)
        rc = wait_for_wal(ctx, &sf, &end, histname, err);
    if (rc == 0)
        rc = fill_header(ctx, a, &sf, &end, bo.label, histname, h, err);
    if (rc == 0)
        rc = write_manifests(ctx, h, err);
    if (rc < 0) {
        for (int i = 0; i < ctx->nrepos; i++) {
            wv_err ignore;
            wv_backup_remove(ctx->repos[i]->st, ctx->id, &ignore);
        }
        return rc;
    }
    wv_backup_lock_release(storages(ctx, st), ctx->nrepos, ctx->id);
    report_backup(ctx, h, t_start);
    return 0;
}

int wv_bbcmd_backup(int argc, char **argv, const char *config_path)
{
    backup_args a = {.config_path = config_path};
    int code = parse_args(argc, argv, &a);
    if (code >= 0)
        return code;
    backup_ctx ctx = {0};
    wv_manifest_header h = {0};
    wv_err err;
    wv_err_clear(&err);
    int rc = run_backup(&ctx, &a, &h, &err);
    if (ctx.tty && rc < 0)
        fputc('\n', stderr);
    /* [retention] after_backup = yes: expire now; its failure is this run's exit status, but the
     * backup, complete, stays */
    if (rc == 0 && (rc = wv_bb_expire_after_backup(ctx.cfg, &err)) < 0)
        wv_err_prefix(&err, "backup %s is complete, but expire after it failed: ", h.id);
    wv_notify(ctx.cfg, &(wv_notify_event){.event = "backup",
                                          .ok = rc == 0,
                                          .message = rc ? err.msg : "backup complete",
                                          .backup = ctx.id[0] ? ctx.id : NULL});
    backup_ctx_free(&ctx);
    wv_manifest_header_free(&h);
    if (rc < 0) {
        wv_log_err(&err);
        return wv_err_exit_code(rc);
    }
    return 0;
}
