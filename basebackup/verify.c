/*
 * verify.c - basebackup verify [--backup ID] [--repo N]: check a repository end to end.
 *
 * For every configured repository (or only [repoN]):
 *   backup/<id>/    every complete backup (or only --backup ID): the manifest parses and its end
 *                   line matches; every file it names exists, decodes against its trailer, and its
 *                   plain size and SHA-256 equal the manifest's (a chunked file: each chunk against
 *                   its own record, bound to its own key, then the whole file's size and SHA-256,
 *                   every bad chunk named with its file); the WAL segments from its start
 *                   segment to its stop segment on its timeline are archived
 *   wal/...         every archived object (segments, partials, histories, backup histories) decodes
 *                   against its trailer; restore point objects ("<segment>.rp") are text lines;
 *                   transaction id range objects ("<segment>.xid") parse as one line
 *
 * Every problem is reported, one line each (the repository, the object, what is wrong), then one
 * summary line per repository. Exit 0 when everything verified, else the code of the first problem
 * (a missing object of a complete backup is corruption: WV_ECORRUPT).
 *
 * Objects are decoded on the thread pool (process_max jobs) into a discard filter, streamed through
 * the object layer's bounded buffers. A job never fails the runner: it records its problem, so the
 * other jobs go on. Memory: the key list of wal/ (not the contents).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "repo/bundle.h"
#include "core/cli.h"
#include "commands.h"
#include "core/config.h"
#include "core/error.h"
#include "pipeline/filter.h"
#include "core/log.h"
#include "repo/manifest.h"
#include "pipeline/object.h"
#include "core/parallel.h"
#include "core/units.h"
#include "repo/repo.h"
#include "repo/xidrange.h"
#include "storage/storage.h"
#include "pg/walname.h"

#define RP_MAX (1024 * 1024) /* a restore point object is a few lines */

static const char usage[] =
    "usage: basebackup [-c FILE] verify [--backup ID] [--repo N]\n"
    "\n"
    "Verify every repository (or [repoN]) end to end: each complete backup's manifest, every file\n"
    "object it names (size and SHA-256) and the WAL it needs, and every archived WAL object.\n"
    "Reports every problem, one line each.\n"
    "\n"
    "  --backup ID  check only this backup (the WAL archive is still checked)\n"
    "  --repo N     check only [repoN]\n";

/* ---- a sorted list of keys ------------------------------------------------------------------- */

typedef struct keylist {
    char **k;
    size_t n, cap;
} keylist;

static void keylist_add(keylist *l, const char *key)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->k = wv_xrealloc(l->k, l->cap * sizeof(*l->k));
    }
    l->k[l->n++] = wv_xstrdup(key);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void keylist_sort(keylist *l)
{
    if (l->n)
        qsort(l->k, l->n, sizeof(*l->k), key_cmp);
}

static int keylist_has(const keylist *l, const char *key)
{
    return l->n && bsearch(&key, l->k, l->n, sizeof(*l->k), key_cmp) != NULL;
}

static void keylist_free(keylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->k[i]);
    free(l->k);
    memset(l, 0, sizeof(*l));
}

static int wal_list_cb(void *arg, const char *key, const wv_stat *st)
{
    (void)st;
    keylist_add(arg, key);
    return 0;
}

/* The ids of complete backups (those with a manifest) from a listing of backup/. */
static int backup_ids_cb(void *arg, const char *key, const wv_stat *st)
{
    (void)st;
    if (strncmp(key, "backup/", 7) != 0)
        return 0;
    const char *id = key + 7, *slash = strchr(id, '/');
    if (!slash || strcmp(slash + 1, WV_MANIFEST_NAME) != 0)
        return 0;
    char idz[WV_MANIFEST_ID_MAX];
    snprintf(idz, sizeof(idz), "%.*s", (int)(slash - id), id);
    if (wv_manifest_id_valid(idz))
        keylist_add(arg, idz);
    return 0;
}

/* ---- context, problems and jobs -------------------------------------------------------------- */

typedef struct verify_ctx {
    wv_repo *repo;
    wv_parallel *par;
    keylist wal;           /* keys under wal/ */
    const char *backup_id; /* the backup whose manifest is being read */
    uint64_t objects, bytes, problems, backups;
    uint64_t unbound;      /* format-1 objects: not bound to their names (information) */
    wv_bundle_set bundles; /* of the backup whose manifest is being read */
    int first_code;        /* of the first problem, over all repositories */
    uint64_t total_problems;
} verify_ctx;

static const char *rname(const verify_ctx *c)
{
    return wv_storage_name(c->repo->st);
}

/* Report one problem (a single line) and remember the first one's code. */
static void problem(verify_ctx *c, const wv_err *e)
{
    wv_log_error("%s", e->msg);
    c->problems++;
    c->total_problems++;
    if (!c->first_code)
        c->first_code = e->code ? e->code : WV_EINTERNAL;
}

/* Prefix a storage or object-layer error with the repository and the key, unless it names them. */
typedef enum { OBJ_FRAMED, OBJ_RP, OBJ_XID, OBJ_BUNDLE, OBJ_CHUNKED } obj_type;

typedef struct job {
    verify_ctx *ctx;
    char *key;
    char *what;             /* the key, or for a file in a bundle "KEY at offset N (PATH)" */
    int64_t offset, length; /* the object's range in key (0, -1: all of it) */
    char *backup;           /* the backup whose manifest names this object, or NULL */
    obj_type type;
    int expect; /* size and sha256 below are the manifest's */
    uint64_t size;
    uint8_t sha256[32];
    uint64_t bytes;
    int unbound;       /* the object carries no binding (format 1) */
    wv_err problem;    /* code 0: verified */
    wv_bundle *bundle; /* OBJ_BUNDLE: its files (owned) */
    wv_err *problems;  /* OBJ_BUNDLE: one per damaged file */
    size_t nproblems;
    uint64_t objects; /* OBJ_BUNDLE: files verified */
    /* OBJ_CHUNKED: a file stored as chunks (key: its manifest path) */
    char *ref;
    wv_manifest_chunk *chunks;
    uint32_t nchunks;
} job;

/* A restore point object: lines "LSN\tTIME_US\tNAME". */
static int rp_valid(const wv_buf *b)
{
    const char *p = b->len ? (const char *)b->data : "";
    size_t left = b->len;
    while (left) {
        const char *eol = memchr(p, '\n', left);
        size_t n = eol ? (size_t)(eol - p) : left;
        char line[512];
        if (n >= sizeof(line) || memchr(p, '\0', n))
            return 0;
        memcpy(line, p, n);
        line[n] = '\0';
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        uint64_t lsn;
        if (!t2)
            return 0;
        *t1 = '\0';
        if (wv_lsn_parse(line, &lsn) != 0)
            return 0;
        p += n + (eol ? 1 : 0);
        left -= n + (eol ? 1 : 0);
    }
    return 1;
}

static void check_rp(job *j)
{
    verify_ctx *c = j->ctx;
    wv_buf b = WV_BUF_INIT;
    int rc = wv_repo_get_text(c->repo->st, j->key, RP_MAX, &b, &j->problem);
    if (rc < 0)
        wv_err_context(&j->problem, rname(c), j->key);
    else if (!rp_valid(&b))
        wv_err_set(&j->problem, WV_ECORRUPT, "%s: \"%s\": corrupt: not a restore point object",
                   rname(c), j->key);
    else
        j->bytes = b.len;
    wv_buf_free(&b);
}

/* A transaction id range object (repo/xidrange.h): one line "XMIN\tXMAX\tCOUNT". */
static void check_xid(job *j)
{
    verify_ctx *c = j->ctx;
    wv_buf b = WV_BUF_INIT;
    wv_xidrange x;
    wv_err why;
    int rc = wv_repo_get_text(c->repo->st, j->key, WV_XIDRANGE_TEXT_MAX, &b, &j->problem);
    if (rc < 0 && rc != WV_ECORRUPT)
        wv_err_context(&j->problem, rname(c), j->key);
    else if (rc < 0 || wv_xidrange_parse((const char *)b.data, b.len, &x, &why) != 0)
        wv_err_set(&j->problem, WV_ECORRUPT,
                   "%s: \"%s\": corrupt: not a transaction id range object (%s)", rname(c), j->key,
                   rc < 0 ? "too large" : why.msg);
    else
        j->bytes = b.len;
    wv_buf_free(&b);
}

static void check_framed(job *j)
{
    verify_ctx *c = j->ctx;
    wv_source *src = NULL;
    wv_filter *discard = NULL;
    wv_err *e = &j->problem;
    const char *of = j->backup ? " of backup " : "";
    const char *bid = j->backup ? j->backup : "";
    wv_obj_info info;
    int rc = wv_storage_get_open(c->repo->st, j->key, j->offset, j->length, &src, e);
    if (rc == WV_ENOTFOUND) {
        wv_err_set(e, WV_ECORRUPT, "%s: \"%s\"%s%s: missing", rname(c), j->what, of, bid);
        return;
    }
    if (rc < 0) {
        wv_err_context(e, rname(c), j->what);
        return;
    }
    discard = wv_filter_discard_new();
    /* Bound to its key; a WAL file's content checked against its name and the repository's info;
     * decompression never past what the manifest or the WAL file's kind allows. */
    const wv_repo_info *ri = c->repo->have_info ? &c->repo->info : NULL;
    wv_filter *check = wv_repo_walcheck_for_key(discard, j->key, ri);
    wv_objread_opts o = {
        .key = j->key, .unbound = &j->unbound, .crypto = wv_repo_crypto(c->repo->st)};
    if (j->expect) {
        o.flags |= WV_OBJREAD_LIMIT;
        o.max_plain = j->size;
    } else if (check) {
        o.max_plain = wv_repo_wal_max_size(strrchr(j->key, '/') + 1, ri);
    }
    rc = wv_object_read_opts(src, check ? check : discard, &o, &info, e);
    if (check)
        check->ops->free(check);
    if (rc == WV_ENOTFOUND) {
        wv_err_set(e, WV_ECORRUPT, "%s: \"%s\"%s%s: missing", rname(c), j->what, of, bid);
    } else if (rc < 0) {
        wv_err_context(e, rname(c), j->what);
        size_t n = strlen(e->msg);
        if (j->backup)
            snprintf(e->msg + n, sizeof(e->msg) - n, " (a file of backup %s)", j->backup);
    } else if (j->expect && info.plain_size != j->size) {
        wv_err_set(e, WV_ECORRUPT,
                   "%s: \"%s\"%s%s: size mismatch: %" PRIu64 " bytes, the manifest says %" PRIu64,
                   rname(c), j->what, of, bid, info.plain_size, j->size);
    } else if (j->expect && memcmp(info.sha256, j->sha256, 32) != 0) {
        char got[65], want[65];
        wv_sha256_hex(info.sha256, got);
        wv_sha256_hex(j->sha256, want);
        wv_err_set(e, WV_ECORRUPT,
                   "%s: \"%s\"%s%s: checksum mismatch: sha256 %.16s..., the manifest says %.16s...",
                   rname(c), j->what, of, bid, got, want);
    } else {
        j->bytes = info.header_size + info.payload_size + WV_OBJ_TRAILER_SIZE;
    }
    wv_filter_chain_free(discard);
    wv_source_close(src);
}

static void bundle_problem(void *arg, const wv_bundle_member *m, const wv_err *e)
{
    job *j = arg;
    j->problems = wv_xrealloc(j->problems, (j->nproblems + 1) * sizeof(*j->problems));
    wv_err *p = &j->problems[j->nproblems++];
    *p = *e;
    wv_err_context_at(p, rname(j->ctx), j->key, " at offset %" PRIu64 " (%s) of backup %s",
                      m->offset, m->path, j->backup);
}

/* A bundle is read once, every file in it checked against the manifest. */
static void check_bundle(job *j)
{
    verify_ctx *c = j->ctx;
    wv_source *src = NULL;
    wv_err *e = &j->problem;
    int rc = wv_storage_get_open(c->repo->st, j->key, 0, -1, &src, e);
    if (rc == WV_ENOTFOUND) {
        wv_err_set(e, WV_ECORRUPT,
                   "%s: \"%s\" of backup %s: missing (it holds %zu files, e.g. "
                   "\"%s\")",
                   rname(c), j->key, j->backup, j->bundle->n, j->bundle->m[0].path);
        return;
    }
    if (rc < 0) {
        wv_err_context(e, rname(c), j->key);
        return;
    }
    size_t bad = 0;
    rc = wv_bundle_verify(src, wv_repo_crypto(c->repo->st), j->bundle, bundle_problem, j, &bad, e);
    wv_source_close(src);
    if (rc < 0) {
        wv_err_context(e, rname(c), j->key);
        size_t n = strlen(e->msg);
        snprintf(e->msg + n, sizeof(e->msg) - n, " (a bundle of backup %s)", j->backup);
        return;
    }
    j->objects = j->bundle->n - bad;
    for (size_t i = 0; i < j->bundle->n; i++)
        j->bytes += j->bundle->m[i].stored_size;
}

/* Feeds the whole file's digest across its chunks (finishing one chunk finishes nothing). */
typedef struct tee_filter {
    wv_filter base;
    wv_filter *hash;
} tee_filter;

static int tee_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    return wv_filter_write(((tee_filter *)f)->hash, buf, len, err);
}

static int tee_finish(wv_filter *f, wv_err *err)
{
    (void)f;
    (void)err;
    return 0;
}

static void tee_free(wv_filter *f)
{
    (void)f; /* on its user's stack */
}

static const wv_filter_ops tee_ops = {
    .name = "tee", .write = tee_write, .finish = tee_finish, .free = tee_free};

static wv_err *chunk_problem(job *j)
{
    j->problems = wv_xrealloc(j->problems, (j->nproblems + 1) * sizeof(*j->problems));
    wv_err *p = &j->problems[j->nproblems++];
    wv_err_clear(p);
    return p;
}

/* A chunked file: every chunk decodes against its trailer, bound to its own key, with the
 * manifest's length and SHA-256; then the whole file's size and SHA-256. Every damaged or missing
 * chunk is reported, naming the file and the chunk. */
static void check_chunked(job *j)
{
    verify_ctx *c = j->ctx;
    wv_manifest_entry e = {.type = WV_MANIFEST_FILE, .path = j->key, .ref = j->ref};
    wv_filter *whole = wv_sha256_filter_new(wv_filter_discard_new());
    uint64_t stored = 0, plain = 0;
    for (uint32_t k = 0; k < j->nchunks; k++) {
        const wv_manifest_chunk *ch = &j->chunks[k];
        char key[1200];
        wv_manifest_chunk_key(j->backup, &e, k, key, sizeof(key));
        wv_source *src = NULL;
        wv_err *p = chunk_problem(j);
        int rc = wv_storage_get_open(c->repo->st, key, 0, -1, &src, p);
        wv_obj_info info;
        if (rc == 0) {
            tee_filter tee = {.base = {.ops = &tee_ops}, .hash = whole};
            wv_objread_opts o = {.flags = WV_OBJREAD_LIMIT,
                                 .key = key,
                                 .max_plain = ch->length,
                                 .unbound = &j->unbound,
                                 .crypto = wv_repo_crypto(c->repo->st)};
            rc = wv_object_read_opts(src, &tee.base, &o, &info, p);
            wv_source_close(src);
        }
        if (rc == WV_ENOTFOUND) {
            wv_err_set(p, WV_ECORRUPT,
                       "%s: \"%s\" (chunk %" PRIu32 " of \"%s\") of backup %s: missing", rname(c),
                       key, k, j->key, j->backup);
        } else if (rc < 0) {
            wv_err_context(p, rname(c), key);
            size_t n = strlen(p->msg);
            snprintf(p->msg + n, sizeof(p->msg) - n, " (chunk %" PRIu32 " of \"%s\" of backup %s)",
                     k, j->key, j->backup);
        } else if (info.plain_size != ch->length || memcmp(info.sha256, ch->sha256, 32) != 0) {
            wv_err_set(p, WV_ECORRUPT,
                       "%s: \"%s\" (chunk %" PRIu32 " of \"%s\") of backup %s: size or checksum "
                       "mismatch with the manifest",
                       rname(c), key, k, j->key, j->backup);
        } else {
            j->nproblems--; /* verified */
            j->objects++;
            stored += info.header_size + info.payload_size + WV_OBJ_TRAILER_SIZE;
            plain += info.plain_size;
        }
    }
    if (j->nproblems == 0) {
        uint8_t got[32];
        wv_err *p = chunk_problem(j);
        if (wv_filter_finish(whole, p) == 0) {
            wv_sha256_filter_digest(whole, got);
            if (plain != j->size || memcmp(got, j->sha256, 32) != 0)
                wv_err_set(p, WV_ECORRUPT,
                           "%s: \"%s\" of backup %s: its chunks verify, but the whole file's size "
                           "or SHA-256 does not match the manifest",
                           rname(c), j->key, j->backup);
            else
                j->nproblems--;
        }
    }
    j->bytes = stored;
    wv_filter_chain_free(whole);
}

static int job_run(void *arg, wv_err *err)
{
    job *j = arg;
    (void)err; /* a problem is the job's result, not a failure of the runner */
    if (j->type == OBJ_RP)
        check_rp(j);
    else if (j->type == OBJ_XID)
        check_xid(j);
    else if (j->type == OBJ_BUNDLE)
        check_bundle(j);
    else if (j->type == OBJ_CHUNKED)
        check_chunked(j);
    else
        check_framed(j);
    return 0;
}

static void job_done(void *arg, int rc, const wv_err *err)
{
    job *j = arg;
    verify_ctx *c = j->ctx;
    if (rc == 0 && j->unbound)
        c->unbound++;
    if (rc < 0)
        problem(c, err);
    else if (j->problem.code)
        problem(c, &j->problem);
    else if (j->type == OBJ_BUNDLE || j->type == OBJ_CHUNKED) {
        for (size_t i = 0; i < j->nproblems; i++)
            problem(c, &j->problems[i]);
        c->objects += j->objects;
        c->bytes += j->bytes;
    } else {
        c->objects++;
        c->bytes += j->bytes;
    }
    free(j->key);
    free(j->what);
    free(j->backup);
    wv_bundle_free(j->bundle);
    free(j->problems);
    free(j->ref);
    free(j->chunks);
    free(j);
}

static int submit(verify_ctx *c, const char *key, obj_type type, const wv_manifest_entry *e,
                  wv_err *err)
{
    job *j = wv_xcalloc(1, sizeof(*j));
    j->ctx = c;
    j->key = wv_xstrdup(key);
    j->length = -1;
    j->type = type;
    wv_err_clear(&j->problem);
    j->what = wv_xstrdup(key);
    if (e) {
        j->backup = wv_xstrdup(c->backup_id);
        j->expect = 1;
        j->size = e->size;
        memcpy(j->sha256, e->sha256, 32);
    }
    int rc = wv_parallel_submit(c->par, job_run, job_done, j, err);
    if (rc < 0) {
        free(j->key);
        free(j->what);
        free(j->backup);
        free(j);
    }
    return rc;
}

/* ---- WAL ------------------------------------------------------------------------------------- */

static int verify_wal(verify_ctx *c, wv_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < c->wal.n && rc == 0; i++) {
        const char *key = c->wal.k[i];
        const char *slash = strrchr(key, '/');
        const char *name = slash ? slash + 1 : key;
        size_t n = strlen(name), sl = strlen(WV_REPO_RP_SUFFIX);
        char wkey[128];
        wv_err e;
        if (n > sl && strcmp(name + n - sl, WV_REPO_RP_SUFFIX) == 0) {
            char seg[64];
            snprintf(seg, sizeof(seg), "%.*s", (int)(n - sl), name);
            if (wv_walname_parse(seg, NULL) == WV_WALNAME_SEGMENT) {
                rc = submit(c, key, OBJ_RP, NULL, err);
                continue;
            }
        } else if (wv_xidrange_is_name(name)) {
            char seg[64];
            snprintf(seg, sizeof(seg), "%.*s", (int)(n - strlen(WV_REPO_XID_SUFFIX)), name);
            if (wv_walname_parse(seg, NULL) == WV_WALNAME_SEGMENT) {
                rc = submit(c, key, OBJ_XID, NULL, err);
                continue;
            }
        } else if (wv_repo_wal_key(name, wkey, sizeof(wkey), &e) == 0 && strcmp(wkey, key) == 0) {
            rc = submit(c, key, OBJ_FRAMED, NULL, err);
            continue;
        }
        wv_log_warn("%s: skipping \"%s\": not an object walvault archives", rname(c), key);
    }
    if (rc == 0)
        rc = wv_parallel_wait(c->par, err);
    return rc;
}

/* ---- backups --------------------------------------------------------------------------------- */

static int manifest_entry_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    verify_ctx *c = arg;
    if (e->type != WV_MANIFEST_FILE)
        return 0;
    if (e->bundle) {
        /* a bundle is checked whole, once the manifest has named every file in it */
        wv_bundle_set_add(&c->bundles, c->backup_id, e);
        return 0;
    }
    if (e->nchunks) {
        job *j = wv_xcalloc(1, sizeof(*j));
        j->ctx = c;
        j->key = wv_xstrdup(e->path);
        j->what = wv_xstrdup(e->path);
        j->length = -1;
        j->type = OBJ_CHUNKED;
        j->backup = wv_xstrdup(c->backup_id);
        j->expect = 1;
        j->size = e->size;
        memcpy(j->sha256, e->sha256, 32);
        j->ref = e->ref ? wv_xstrdup(e->ref) : NULL;
        j->chunks = wv_xmalloc(e->nchunks * sizeof(*j->chunks));
        memcpy(j->chunks, e->chunks, e->nchunks * sizeof(*j->chunks));
        j->nchunks = e->nchunks;
        wv_err_clear(&j->problem);
        int rc = wv_parallel_submit(c->par, job_run, job_done, j, err);
        if (rc < 0)
            job_done(j, 0, NULL);
        return rc;
    }
    char key[300];
    int64_t off, len;
    wv_manifest_file_object(c->backup_id, e, key, sizeof(key), &off, &len);
    return submit(c, key, OBJ_FRAMED, e, err);
}

/* The WAL a backup needs: start segment .. stop segment on its timeline, all archived. */
static void check_backup_wal(verify_ctx *c, const wv_manifest_header *h)
{
    wv_walname a, b;
    wv_err e;
    uint64_t segsize = h->wal_segsize;
    if (wv_walname_parse(h->start_segment, &a) != WV_WALNAME_SEGMENT ||
        wv_walname_parse(h->stop_segment, &b) != WV_WALNAME_SEGMENT ||
        !wv_wal_segsize_valid(segsize)) {
        wv_err_set(&e, WV_ECORRUPT, "%s: backup %s: its manifest names no valid WAL range",
                   rname(c), h->id);
        problem(c, &e);
        return;
    }
    uint64_t first = wv_walname_segno(&a, segsize), last = wv_walname_segno(&b, segsize);
    for (uint64_t s = first; s <= last; s++) {
        char name[WV_WALNAME_SEGMENT_LEN], key[128];
        wv_walname_format_segment(h->timeline, s, segsize, name);
        if (wv_repo_wal_key(name, key, sizeof(key), &e) < 0) {
            problem(c, &e);
            return;
        }
        if (!keylist_has(&c->wal, key)) {
            wv_err_set(&e, WV_ECORRUPT,
                       "%s: \"%s\": missing: WAL segment %s needed by backup %s is not archived",
                       rname(c), key, name, h->id);
            problem(c, &e);
        }
    }
}

static int verify_backup(verify_ctx *c, const char *id, wv_err *err)
{
    char key[256];
    wv_manifest_header h = {0};
    wv_err e;
    wv_manifest_key(id, key, sizeof(key));
    c->backup_id = id;
    int rc = wv_manifest_load(c->repo->st, id, &h, manifest_entry_cb, c, NULL, &e);
    wv_bundle_set_sort(&c->bundles);
    for (size_t i = 0; rc == 0 && i < c->bundles.n; i++) {
        wv_bundle *b = wv_bundle_set_take(&c->bundles, i);
        job *j = wv_xcalloc(1, sizeof(*j));
        j->ctx = c;
        j->key = wv_xstrdup(b->key);
        j->what = wv_xstrdup(b->key);
        j->length = -1;
        j->type = OBJ_BUNDLE;
        j->bundle = b;
        j->backup = wv_xstrdup(id);
        wv_err_clear(&j->problem);
        if (wv_parallel_submit(c->par, job_run, job_done, j, err) < 0) {
            job_done(j, 0, NULL);
            break;
        }
    }
    wv_bundle_set_free(&c->bundles);
    /* Wait for this backup's objects before judging the manifest (the pool never fails). */
    if (wv_parallel_wait(c->par, err) < 0) {
        wv_manifest_header_free(&h);
        return err->code;
    }
    if (rc < 0) {
        wv_err_context(&e, rname(c), key);
        if (rc == WV_ENOTFOUND)
            wv_err_set(&e, WV_ECORRUPT, "%s: \"%s\": missing", rname(c), key);
        problem(c, &e);
    } else {
        c->objects++;
        if (strcmp(h.id, id) != 0 ||
            (c->repo->have_info && h.system_id != c->repo->info.system_id)) {
            wv_err_set(
                &e, WV_ECORRUPT,
                "%s: \"%s\": corrupt: the manifest is of backup %s, database system %" PRIu64,
                rname(c), key, h.id, h.system_id);
            problem(c, &e);
        }
        check_backup_wal(c, &h);
    }
    c->backups++;
    wv_manifest_header_free(&h);
    return 0;
}

/* ---- one repository -------------------------------------------------------------------------- */

/* *found: whether --backup ID (if any) exists in this repository. */
static int verify_repo(verify_ctx *c, const wv_repo_config *rc_, const char *only, int *found,
                       int workers, wv_err *err)
{
    keylist ids = {0};
    double t0 = wv_mono_s();
    int rc = wv_repo_open(rc_, &c->repo, err);
    c->objects = c->bytes = c->problems = c->backups = c->unbound = 0;
    if (rc == 0) {
        rc = wv_repo_load_info(c->repo, err);
        if (rc == WV_ENOTFOUND) {
            wv_log_info("%s (\"%s\") is empty: nothing to verify", rname(c),
                        wv_storage_location(c->repo->st));
            rc = 0;
        } else if (rc < 0) {
            problem(c, err);
            wv_err_clear(err);
            rc = 0;
        }
    }
    if (rc == 0)
        rc = wv_parallel_new(workers, workers * 2, &c->par, err);
    if (rc == 0)
        rc = wv_storage_list(c->repo->st, "wal/", wal_list_cb, &c->wal, err);
    if (rc == 0)
        rc = wv_storage_list(c->repo->st, "backup/", backup_ids_cb, &ids, err);
    if (rc < 0)
        goto out;
    keylist_sort(&c->wal);
    keylist_sort(&ids);
    if (only) {
        if (keylist_has(&ids, only))
            *found = 1;
        else
            wv_log_warn("%s: no backup %s here", rname(c), only);
    }
    for (size_t i = 0; i < ids.n && rc == 0; i++)
        if (!only || strcmp(ids.k[i], only) == 0)
            rc = verify_backup(c, ids.k[i], err);
    if (rc == 0)
        rc = verify_wal(c, err);
    if (rc == 0 && c->unbound)
        wv_log_info("%s: %" PRIu64 " object%s of format 1: not bound to %s name (information, not "
                    "a problem: written by an older walvault)",
                    rname(c), c->unbound, c->unbound == 1 ? "" : "s",
                    c->unbound == 1 ? "its" : "their");
    if (rc == 0) {
        printf("verify %s: checked %" PRIu64 " objects (%" PRIu64 " bytes, %" PRIu64
               " backup%s), %" PRIu64 " problem%s, %.1f s\n",
               rname(c), c->objects, c->bytes, c->backups, c->backups == 1 ? "" : "s", c->problems,
               c->problems == 1 ? "" : "s", wv_mono_s() - t0);
        fflush(stdout);
    }
out:
    if (c->par) {
        wv_err ignore;
        if (rc < 0)
            wv_parallel_cancel(c->par, err);
        wv_parallel_wait(c->par, &ignore);
        wv_parallel_free(c->par);
        c->par = NULL;
    }
    keylist_free(&ids);
    keylist_free(&c->wal);
    wv_repo_close(c->repo);
    c->repo = NULL;
    return rc;
}

/* Whether backup `id` has a manifest in any selected repository (before verifying anything). */
static int backup_exists(const wv_config *cfg, int repo_n, const char *id, int *found, wv_err *err)
{
    char key[256];
    wv_manifest_key(id, key, sizeof(key));
    for (int i = 0; i < cfg->nrepos && !*found; i++) {
        if (repo_n && cfg->repos[i].index != repo_n)
            continue;
        wv_repo *r = NULL;
        wv_stat st;
        int rc = wv_repo_open(&cfg->repos[i], &r, err);
        if (rc == 0) {
            rc = wv_storage_stat(r->st, key, &st, err);
            if (rc == 0)
                *found = 1;
        }
        wv_repo_close(r);
        if (rc < 0 && rc != WV_ENOTFOUND)
            return rc;
    }
    return 0;
}

/* ---- the command ----------------------------------------------------------------------------- */

int wv_bbcmd_verify(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"backup", required_argument, NULL, 'b'},
        {"repo", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int repo_n = 0, c, rc = 0, found = 0;
    const char *only = NULL;
    wv_err err;
    wv_cli cli = {.config_path = config_path};
    wv_config *cfg = NULL;
    verify_ctx ctx = {0};

    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (!wv_manifest_id_valid(optarg)) {
                wv_err_set(&err, WV_EUSAGE, "--backup: \"%s\" is not a backup id", optarg);
                wv_err_hint(&err, "run \"basebackup list\" to see the backups");
                return wv_cli_fail(&err);
            }
            only = optarg;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &repo_n, &err) < 0)
                return wv_cli_fail(&err);
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("verify", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (wv_cli_no_more_args("verify", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    if ((rc = wv_cli_load_config(&cli, &cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if (repo_n && (rc = wv_cli_repo_exists(cfg, "--repo", repo_n, &err)) < 0)
        goto out;
    if (only && (rc = backup_exists(cfg, repo_n, only, &found, &err)) < 0)
        goto out;
    if (only && !found) {
        char where[32];
        snprintf(where, sizeof(where), repo_n ? "repo%d" : "any repository", repo_n);
        rc = wv_err_set(&err, WV_ENOTFOUND, "--backup %s: no such backup in %s", only, where);
        wv_err_hint(&err, "run \"basebackup list\" to see the backups");
        goto out;
    }
    int workers = cfg->process_max > 0 ? cfg->process_max : 2;
    for (int i = 0; i < cfg->nrepos && rc == 0; i++)
        if (!repo_n || cfg->repos[i].index == repo_n)
            rc = verify_repo(&ctx, &cfg->repos[i], only, &found, workers, &err);
    if (rc < 0)
        goto out;
    if (ctx.total_problems) {
        rc = wv_err_set(&err, ctx.first_code, "verify found %" PRIu64 " problem%s (see above)",
                        ctx.total_problems, ctx.total_problems == 1 ? "" : "s");
        wv_err_hint(&err, "restore from another repository or run basebackup sync --from N "
                          "--to M (N: a repository that verifies) after moving the damaged "
                          "objects away");
    }
out:
    wv_config_free(cfg);
    return rc < 0 ? wv_cli_fail(&err) : 0;
}
