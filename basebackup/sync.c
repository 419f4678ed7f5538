/*
 * sync.c - basebackup sync --from N --to M [--dry-run]: bring repository M up to date from N.
 *
 * After an outage of one repository (or when a repository is added), M lacks WAL and backups that
 * N holds. sync copies what M lacks, never what it has:
 *
 *   walvault.repo   created from N's if M has none; M of another cluster is refused (WV_EMISMATCH)
 *   wal/...         every archived object (segments, partials, histories, backup histories, and
 *                   the plain-text restore point objects "<segment>.rp" and transaction id
 *                   range objects "<segment>.xid")
 *   backup/<id>/    every complete backup of N (one with a manifest): each file the manifest names
 *                   (a bundle of small files is copied whole, once, every file in it verified as it
 *                   streams past, see bundle.h), then, after a flush of M, the manifest itself
 *                   (what makes the backup exist)
 *
 * Framed objects are copied byte for byte (compression stays as it is) and verified while they are
 * copied: the source is read through a tee that writes every byte into M's sink while the object
 * layer decodes it into a discard filter; the sink is committed only if the object verifies against
 * its trailer (and, for backup files, against the manifest's SHA-256). Manifests are verified by
 * the manifest reader (its "end sha256=" line) as they stream into M.
 *
 * An object M already has is compared, not copied: framed objects by the trailer's size and
 * SHA-256 (one suffix read per side), restore point objects byte for byte, manifests by their end
 * line. Identical: skipped. Different: a conflict, reported with the key, never overwritten; the
 * other objects are still copied, and a backup with a conflicting file does not get its manifest.
 *
 * Encryption (docs/encryption.md): each encrypted repository has keys of its own, so objects are
 * copied byte for byte only between repositories of the same crypto context (both plain, in
 * practice); otherwise objcopy decodes each object, verified, and encodes it again under M's keys
 * (repo/objcopy.h), and an object M has already is recognised from the keyed digest of N's plain
 * SHA-256 without any private key. Bundles are then encoded member by member (their layout
 * changes), and the manifest is written anew for M with the new stored sizes and offsets (the
 * content it describes, and its header, unchanged); a manifest M has already is compared by what
 * it describes, not byte for byte. Restore points and .xid sidecars go through wv_repo_get_text /
 * wv_repo_put_text (sealed in an encrypted M); walvault.repo stays a raw copy. A plain N with a
 * key in the configuration is opened without it (reading a plain repository needs none): that is
 * the migration into a new, encrypted M. An encrypted N into a plain M is refused (it would store
 * plain what was encrypted).
 *
 * Commits use WV_PUT_NOREPLACE | WV_PUT_NOSYNC; M is flushed before each manifest and at the end.
 * Copies run on the thread pool (process_max jobs). Memory: the key lists of both repositories
 * (not their contents); each job streams through a bounded buffer.
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
#include "repo/backupset.h"
#include "repo/repo.h"
#include "repo/xidrange.h"
#include "storage/storage.h"
#include "repo/lag.h"
#include "repo/objcopy.h"
#include "repo/spool.h"
#include "pg/walname.h"

#define RP_MAX     (1024 * 1024) /* a restore point object is a few lines */
#define COPY_CHUNK (256 * 1024)

static const char usage[] =
    "usage: basebackup [-c FILE] sync --from N --to M [--dry-run]\n"
    "\n"
    "Copy into [repoM] every archived WAL object and every complete backup of [repoN] that it\n"
    "lacks, verified, without ever replacing an object (a different one is a conflict). Use it\n"
    "after a repository was unreachable for a while, or to seed a new repository.\n"
    "\n"
    "  --from N     the repository to copy from ([repoN])\n"
    "  --to M       the repository to bring up to date ([repoM])\n"
    "  --dry-run    show what would be copied; write nothing\n";

/* ---- a sorted set of keys ------------------------------------------------------------------- */

typedef struct key_entry {
    char *key;
    uint64_t size;
} key_entry;

typedef struct keyset {
    key_entry *e;
    size_t n, cap;
} keyset;

static int keyset_add_cb(void *arg, const char *key, const wv_stat *st)
{
    keyset *ks = arg;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 256;
        ks->e = wv_xrealloc(ks->e, ks->cap * sizeof(*ks->e));
    }
    ks->e[ks->n].key = wv_xstrdup(key);
    ks->e[ks->n].size = st ? st->size : 0;
    ks->n++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const key_entry *)a)->key, ((const key_entry *)b)->key);
}

static void keyset_sort(keyset *ks)
{
    if (ks->n)
        qsort(ks->e, ks->n, sizeof(*ks->e), entry_cmp);
}

static const key_entry *keyset_find(const keyset *ks, const char *key)
{
    key_entry probe = {(char *)key, 0};
    return ks->n ? bsearch(&probe, ks->e, ks->n, sizeof(*ks->e), entry_cmp) : NULL;
}

static int keyset_has(const keyset *ks, const char *key)
{
    return keyset_find(ks, key) != NULL;
}

static void keyset_put(keyset *ks, const char *key, uint64_t size)
{
    wv_stat st = {.size = size};
    keyset_add_cb(ks, key, &st);
}

/* The key of bundle member path in `placed`. */
static void member_key(const char *bundle_key, const char *path, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s\n%s", bundle_key, path);
}

static void keyset_free(keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        free(ks->e[i].key);
    free(ks->e);
    memset(ks, 0, sizeof(*ks));
}

/* ---- context and jobs ------------------------------------------------------------------------ */

typedef struct sync_ctx {
    wv_config *cfg;
    wv_repo *from, *to;
    wv_parallel *par;
    int dry_run;
    keyset have; /* keys under wal/ and backup/ in the target */
    uint64_t copied, copied_bytes, skipped, conflicts;
    uint64_t backup_conflicts; /* conflicts of the backup being synced */
    uint64_t backups_copied;
    const char *backup_id; /* the backup being synced, for messages */
    wv_bundle_set bundles; /* of the backup being synced, gathered from its manifest */
    /* Either repository is encrypted: bundles are encoded again member by member and manifests
     * written anew for the target, from `placed` (where each object landed in the target). */
    int rewrite;
    keyset placed;          /* key (bundle members: "<bundle key>\n<path>") -> stored size */
    keyset placed_offset;   /* bundle members: -> offset in the target's bundle */
    wv_repo_config from_rc; /* --from opened without keys (a plain source) */
    wv_repo_config to_rc;   /* --to opened without keys (a dry run into an unused one) */
} sync_ctx;

typedef enum { OBJ_FRAMED, OBJ_PLAIN, OBJ_BUNDLE } obj_type;

typedef enum { OUT_NONE, OUT_COPIED, OUT_SKIPPED, OUT_CONFLICT } outcome;

typedef struct job {
    sync_ctx *ctx;
    char *key;
    obj_type type;
    uint64_t size; /* stored size in the source, from its listing or the manifest */
    int present;   /* the target has this key */
    int expect;    /* sha256 below is the manifest's digest of the plain content */
    uint8_t sha256[32];
    outcome result;
    uint64_t bytes;
    wv_err conflict;          /* OUT_CONFLICT: the message */
    wv_bundle *bundle;        /* OBJ_BUNDLE: its members (owned by the job) */
    uint64_t stored;          /* rewrite: the object's stored size in the target (0: unknown) */
    uint64_t *moff, *mstored; /* rewrite, OBJ_BUNDLE: where each member landed in the target */
} job;

static const char *from_name(const sync_ctx *c)
{
    return wv_storage_name(c->from->st);
}

static const char *to_name(const sync_ctx *c)
{
    return wv_storage_name(c->to->st);
}

static void set_conflict(job *j, const char *why)
{
    sync_ctx *c = j->ctx;
    wv_err_set(&j->conflict, WV_ECONFLICT, "%s: \"%s\": conflict: %s; not copied from %s",
               to_name(c), j->key, why, from_name(c));
    wv_err_hint(&j->conflict,
                "objects are never replaced: find out which copy is right (wal-fetch or restore "
                "from each repository), move the wrong object away by hand, and run sync again");
    j->result = OUT_CONFLICT;
}

/* "N bytes sha256 X..." of what a side's trailer tells (an encrypted object whose metadata is
 * sealed to this host: its keyed digest). */
static void describe(const wv_obj_info *i, char *out, size_t outlen)
{
    char h[65];
    if (i->sealed) {
        wv_sha256_hex(i->keyed_digest, h);
        snprintf(out, outlen, "keyed digest %.16s...", h);
    } else {
        wv_sha256_hex(i->sha256, h);
        snprintf(out, outlen, "%" PRIu64 " bytes sha256 %.16s...", i->plain_size, h);
    }
}

static void conflict_framed(job *j, const wv_obj_info *a, const wv_obj_info *b)
{
    char da[120], db[120], why[400];
    describe(a, da, sizeof(da));
    describe(b, db, sizeof(db));
    snprintf(why, sizeof(why), "different content (%s in %s, %s here)", da, from_name(j->ctx), db);
    set_conflict(j, why);
}

/* The target holds a framed object under j's key described by b (wv_repo_content_info); the
 * source's is a. Compared by content, whatever the two repositories' keys (objcopy.c); a
 * different one is a conflict. */
static int settle_framed(job *j, const wv_obj_info *a, const wv_obj_info *b, wv_err *err)
{
    sync_ctx *c = j->ctx;
    int same = 0;
    int rc = wv_repo_copy_compare(c->from->st, a, c->to->st, b, &same, err);
    if (rc < 0)
        return wv_err_context(err, to_name(c), j->key);
    if (!same) {
        conflict_framed(j, a, b);
        return 0;
    }
    if (j->expect && !wv_repo_content_is(c->to->st, b, j->sha256)) {
        set_conflict(j, "its content does not match the backup manifest");
        return 0;
    }
    j->result = OUT_SKIPPED;
    return 0;
}

/* The target failed, or its copy could not be read (its trailer): named, with a hint if damaged. */
static int target_unreadable(job *j, int rc, wv_err *err)
{
    wv_err_context(err, to_name(j->ctx), j->key);
    if (rc == WV_ECORRUPT)
        wv_err_hint(err, "the copy in %s is damaged: move it away by hand and run sync again",
                    to_name(j->ctx));
    return rc;
}

static int compare_framed(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_obj_info a, b;
    int rc = wv_repo_content_info(c->from->st, j->key, &a, err);
    if (rc < 0)
        return wv_err_context(err, from_name(c), j->key);
    rc = wv_repo_content_info(c->to->st, j->key, &b, err);
    if (rc < 0)
        return target_unreadable(j, rc, err);
    const key_entry *have = keyset_find(&c->have, j->key);
    j->stored = have ? have->size : 0;
    return settle_framed(j, &a, &b, err);
}

/* Does the encrypted target's text object (described by b) hold the text a? By the keyed digest
 * of a's SHA-256 (objcopy.c): no private key needed, nothing decoded. */
static int text_is(const sync_ctx *c, const wv_obj_info *b, const wv_buf *a, int *same, wv_err *err)
{
    wv_filter *sha = wv_sha256_filter_new(wv_filter_discard_new());
    int rc = wv_filter_write(sha, a->data, a->len, err);
    if (rc == 0)
        rc = wv_filter_finish(sha, err);
    if (rc == 0) {
        uint8_t dg[32];
        wv_sha256_filter_digest(sha, dg);
        *same = wv_repo_content_is(c->to->st, b, dg) && (b->sealed || b->plain_size == a->len);
    }
    wv_filter_chain_free(sha);
    return rc;
}

static int compare_plain(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_buf a = WV_BUF_INIT, b = WV_BUF_INIT;
    int same = 0;
    int rc = wv_repo_get_text(c->from->st, j->key, RP_MAX, &a, err);
    if (rc < 0) {
        wv_err_context(err, from_name(c), j->key);
        goto out;
    }
    if (wv_repo_crypto(c->to->st)) {
        wv_obj_info bi;
        if ((rc = wv_repo_content_info(c->to->st, j->key, &bi, err)) < 0 ||
            (rc = text_is(c, &bi, &a, &same, err)) < 0) {
            wv_err_context(err, to_name(c), j->key);
            goto out;
        }
    } else {
        if ((rc = wv_repo_get_text(c->to->st, j->key, RP_MAX, &b, err)) < 0) {
            wv_err_context(err, to_name(c), j->key);
            goto out;
        }
        same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    }
    if (!same)
        set_conflict(j, "different content");
    else
        j->result = OUT_SKIPPED;
out:
    wv_buf_free(&a);
    wv_buf_free(&b);
    return rc;
}

/* Read a bundle and verify every file in it; the first damaged file is the error. */
static void first_problem(void *arg, const wv_bundle_member *m, const wv_err *e)
{
    wv_err *first = arg;
    if (!first->code) {
        *first = *e;
        wv_err_prefix(first, "\"%s\" at offset %" PRIu64 ": ", m->path, m->offset);
    }
}

static int verify_bundle(wv_source *src, const wv_obj_crypto *crypto, const wv_bundle *b,
                         wv_err *err)
{
    wv_err first;
    wv_err_clear(&first);
    size_t bad = 0;
    int rc = wv_bundle_verify(src, crypto, b, first_problem, &first, &bad, err);
    if (rc == 0 && bad) {
        *err = first;
        rc = first.code;
    }
    return rc;
}

/* The target has the bundle: identical if every file in it verifies against the manifest. */
static int compare_bundle(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_source *src = NULL;
    int rc = wv_storage_get_open(c->to->st, j->key, 0, -1, &src, err);
    if (rc < 0)
        return wv_err_context(err, to_name(c), j->key);
    wv_err e;
    wv_err_clear(&e);
    rc = verify_bundle(src, wv_repo_crypto(c->to->st), j->bundle, &e);
    wv_source_close(src);
    if (rc == WV_ECORRUPT) {
        char why[1200];
        snprintf(why, sizeof(why), "its content does not match the manifest of backup %s (%s)",
                 c->backup_id ? c->backup_id : "?", e.msg);
        set_conflict(j, why);
        return 0;
    }
    if (rc < 0) {
        *err = e;
        return wv_err_context(err, to_name(c), j->key);
    }
    j->result = OUT_SKIPPED;
    return 0;
}

static int compare(job *j, wv_err *err)
{
    switch (j->type) {
    case OBJ_FRAMED:
        return compare_framed(j, err);
    case OBJ_BUNDLE:
        return compare_bundle(j, err);
    default:
        return compare_plain(j, err);
    }
}

/* A restore point object: lines "LSN\tTIME_US\tNAME". It has no checksum; check its form. */
static int rp_valid(wv_buf *b)
{
    const char *p = wv_buf_cstr(b);
    if (strlen(p) != b->len)
        return 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        if (n >= sizeof(line))
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
    }
    return 1;
}

/* The outcome of making j's object visible in the target (rc of the commit): written meanwhile
 * (a wal-push running now) is compared, identical being fine; another failure is named. */
static int committed(job *j, int rc, uint64_t bytes, wv_err *err)
{
    if (rc == WV_EEXIST)
        return compare(j, err);
    if (rc < 0)
        return wv_err_context(err, to_name(j->ctx), j->key);
    j->result = OUT_COPIED;
    j->bytes = bytes;
    return 0;
}

/* Copy a framed object (repo/objcopy.h: byte for byte between repositories of the same keys,
 * decoded and encoded again otherwise), committed in the target only if it verified on the way:
 * written meanwhile and identical is skipped, different a conflict (the stored object untouched). */
static int copy_framed(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_copy_opts o = {.put_flags = WV_PUT_NOSYNC,
                      .expect_sha256 = j->expect ? j->sha256 : NULL,
                      .skip_precheck = 1}; /* the listing says the target lacks it */
    wv_copy_result res;
    int rc = wv_repo_copy_object_ext(c->from, c->to, j->key, &o, &res, err);
    if (rc == WV_ECONFLICT && res.conflict_info) {
        wv_err_clear(err);
        conflict_framed(j, &res.src, &res.dst);
        return 0;
    }
    if (rc < 0) {
        if (rc == WV_ECORRUPT && strcmp(err->repo, from_name(c)) == 0)
            wv_err_hint(err,
                        "the copy in %s is damaged: nothing was copied; if another "
                        "repository holds a good copy, sync from that one",
                        from_name(c));
        else if (strcmp(err->repo, to_name(c)) == 0)
            return target_unreadable(j, rc, err);
        return rc;
    }
    if (res.already) {
        j->result = OUT_SKIPPED;
        wv_stat st;
        if (c->rewrite && wv_storage_stat(c->to->st, j->key, &st, err) == 0)
            j->stored = st.size;
        wv_err_clear(err);
        return 0;
    }
    j->result = OUT_COPIED;
    j->bytes = res.bytes;
    j->stored = res.stored;
    return 0;
}

/* A bundle already in the target when the manifests are written anew: its layout there is its
 * own, known only from the target's manifest, which this backup lacks (an interrupted sync). */
static void bundle_left_over(job *j)
{
    sync_ctx *c = j->ctx;
    wv_err_set(&j->conflict, WV_ECONFLICT,
               "%s: \"%s\": already there without its backup's manifest (left by an interrupted "
               "sync?); backup %s not copied from %s",
               to_name(c), j->key, c->backup_id ? c->backup_id : "?", from_name(c));
    wv_err_hint(&j->conflict, "move backup/%s/ out of %s by hand and run sync again",
                c->backup_id ? c->backup_id : "?", to_name(c));
    j->result = OUT_CONFLICT;
}

/* Rewrite mode: a bundle encoded again member by member into the target. */
static int copy_bundle_rewrite(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_bundle *b = j->bundle;
    j->moff = wv_xcalloc(b->n ? b->n : 1, sizeof(*j->moff));
    j->mstored = wv_xcalloc(b->n ? b->n : 1, sizeof(*j->mstored));
    uint64_t bytes = 0;
    int rc =
        wv_repo_copy_bundle(c->from, c->to, b, WV_PUT_NOSYNC, j->moff, j->mstored, &bytes, err);
    if (rc == WV_EEXIST) {
        wv_err_clear(err);
        bundle_left_over(j);
        return 0;
    }
    if (rc < 0) {
        if (c->backup_id && strcmp(err->repo, from_name(c)) == 0 && rc == WV_ECORRUPT)
            wv_err_hint(err,
                        "the copy in %s is damaged: nothing was copied; if another "
                        "repository holds a good copy, sync from that one",
                        from_name(c));
        return rc;
    }
    j->result = OUT_COPIED;
    j->bytes = bytes;
    j->stored = bytes;
    return 0;
}

static int copy_plain(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_buf b = WV_BUF_INIT;
    int rc = wv_repo_get_text(c->from->st, j->key, RP_MAX, &b, err);
    if (rc < 0) {
        wv_err_context(err, from_name(c), j->key);
        goto out;
    }
    wv_xidrange x;
    wv_err why;
    if (wv_xidrange_is_name(j->key) &&
        wv_xidrange_parse((const char *)b.data, b.len, &x, &why) != 0) {
        rc = wv_err_set(err, WV_ECORRUPT, "%s: \"%s\": not a transaction id range object (%s)",
                        from_name(c), j->key, why.msg);
        goto out;
    }
    if (!wv_xidrange_is_name(j->key) && !rp_valid(&b)) {
        rc = wv_err_set(err, WV_ECORRUPT, "%s: \"%s\": not a restore point object", from_name(c),
                        j->key);
        goto out;
    }
    rc = committed(
        j,
        wv_repo_put_text(c->to->st, j->key, WV_PUT_NOREPLACE | WV_PUT_NOSYNC, b.data, b.len, err),
        b.len, err);
out:
    wv_buf_free(&b);
    return rc;
}

/* What is read through the tee is checked as it streams: one framed object against its trailer
 * (and the manifest's digest), or a bundle file by file against the manifest. */
static int check_stream(job *j, wv_source *in, wv_obj_info *info, wv_err *err)
{
    if (j->type == OBJ_BUNDLE)
        return verify_bundle(in, wv_repo_crypto(j->ctx->from->st), j->bundle, err);
    /* The copy keeps the source's binding: it must name the key it has in both repositories. A WAL
     * file's content is checked against its name and the source repository's cluster. */
    wv_filter *discard = wv_filter_discard_new();
    wv_filter *check = wv_repo_walcheck_for_key(
        discard, j->key, j->ctx->from->have_info ? &j->ctx->from->info : NULL);
    wv_objread_opts o = {.key = j->key};
    int rc = wv_object_read_opts(in, check ? check : discard, &o, info, err);
    if (check)
        check->ops->free(check);
    wv_filter_chain_free(discard);
    if (rc == 0 && j->expect && memcmp(info->sha256, j->sha256, 32) != 0)
        rc = wv_err_set(err, WV_ECORRUPT, "content does not match the manifest of backup %s",
                        j->ctx->backup_id ? j->ctx->backup_id : "?");
    return rc;
}

/* Copy a bundle byte for byte (both repositories plain), committed in the target only if it
 * verified on the way. */
static int copy_verified(job *j, wv_err *err)
{
    sync_ctx *c = j->ctx;
    wv_source *src = NULL;
    wv_sink *sink = NULL;
    int rc = wv_storage_get_open(c->from->st, j->key, 0, -1, &src, err);
    if (rc < 0) {
        wv_err_context(err, from_name(c), j->key);
        goto out;
    }
    rc = wv_storage_put_open(c->to->st, j->key, WV_PUT_NOREPLACE | WV_PUT_NOSYNC, &sink, err);
    if (rc < 0) {
        wv_err_context(err, to_name(c), j->key);
        goto out;
    }
    wv_tee_source tee;
    wv_tee_source_init(&tee, src, sink);
    wv_obj_info info;
    rc = check_stream(j, &tee.base, &info, err);
    if (rc < 0 && tee.out_failed) {
        *err = tee.out_err;
        rc = wv_err_context(err, to_name(c), j->key);
    } else if (rc < 0) {
        if (c->backup_id && j->type == OBJ_BUNDLE)
            wv_err_context_at(err, from_name(c), j->key, " of backup %s", c->backup_id);
        else
            wv_err_context(err, from_name(c), j->key);
        if (rc == WV_ECORRUPT)
            wv_err_hint(err,
                        "the copy in %s is damaged: nothing was copied; if another "
                        "repository holds a good copy, sync from that one",
                        from_name(c));
    }
    if (rc < 0) {
        wv_sink_abort(sink);
        sink = NULL;
        goto out;
    }
    wv_sink *done = sink;
    sink = NULL;
    rc = committed(j, wv_sink_commit(done, err), tee.bytes, err);
out:
    wv_sink_abort(sink);
    wv_source_close(src);
    return rc;
}

static int job_run(void *arg, wv_err *err)
{
    job *j = arg;
    if (j->present && j->ctx->rewrite && j->type == OBJ_BUNDLE) {
        bundle_left_over(j);
        return 0;
    }
    if (j->present)
        return compare(j, err);
    if (j->ctx->dry_run) {
        j->result = OUT_COPIED;
        j->bytes = j->size;
        return 0;
    }
    switch (j->type) {
    case OBJ_PLAIN:
        return copy_plain(j, err);
    case OBJ_FRAMED:
        return copy_framed(j, err);
    default:
        return j->ctx->rewrite ? copy_bundle_rewrite(j, err) : copy_verified(j, err);
    }
}

/* Rewrite mode: where j's object (or each member of j's bundle) is in the target now. */
static void record_placed(sync_ctx *c, const job *j)
{
    if (!c->rewrite || c->dry_run)
        return;
    if (j->type == OBJ_FRAMED) {
        keyset_put(&c->placed, j->key, j->stored);
        return;
    }
    if (j->type != OBJ_BUNDLE || !j->moff)
        return;
    for (size_t i = 0; i < j->bundle->n; i++) {
        char mk[1600];
        member_key(j->bundle->key, j->bundle->m[i].path, mk, sizeof(mk));
        keyset_put(&c->placed, mk, j->mstored[i]);
        keyset_put(&c->placed_offset, mk, j->moff[i]);
    }
}

static void job_done(void *arg, int rc, const wv_err *err)
{
    job *j = arg;
    sync_ctx *c = j->ctx;
    (void)err; /* failures are collected by the runner */
    if (rc == 0) {
        switch (j->result) {
        case OUT_COPIED:
            record_placed(c, j);
            c->copied++;
            c->copied_bytes += j->bytes;
            if (c->dry_run)
                printf("would copy %s (%" PRIu64 " bytes)\n", j->key, j->bytes);
            else
                wv_log_debug("copied %s (%" PRIu64 " bytes)", j->key, j->bytes);
            break;
        case OUT_SKIPPED:
            record_placed(c, j);
            c->skipped++;
            break;
        case OUT_CONFLICT:
            c->conflicts++;
            c->backup_conflicts++;
            wv_log_err(&j->conflict);
            break;
        case OUT_NONE:
            break;
        }
    }
    free(j->key);
    wv_bundle_free(j->bundle);
    free(j->moff);
    free(j->mstored);
    free(j);
}

static int submit_job(sync_ctx *c, const char *key, obj_type type, uint64_t size,
                      const uint8_t *expect, wv_bundle *bundle, wv_err *err)
{
    job *j = wv_xcalloc(1, sizeof(*j));
    j->ctx = c;
    j->key = wv_xstrdup(key);
    j->type = type;
    j->size = size;
    j->bundle = bundle;
    j->present = keyset_has(&c->have, key);
    if (expect) {
        j->expect = 1;
        memcpy(j->sha256, expect, 32);
    }
    int rc = wv_parallel_submit(c->par, job_run, job_done, j, err);
    if (rc < 0) {
        free(j->key);
        wv_bundle_free(j->bundle);
        free(j);
    }
    return rc;
}

static int submit(sync_ctx *c, const char *key, obj_type type, uint64_t size, const uint8_t *expect,
                  wv_err *err)
{
    return submit_job(c, key, type, size, expect, NULL, err);
}

/* The bundles gathered from a manifest: one job each (or just forget them, when err is NULL). */
static int submit_bundles(sync_ctx *c, wv_err *err)
{
    int rc = 0;
    wv_bundle_set_sort(&c->bundles);
    for (size_t i = 0; i < c->bundles.n && err && rc == 0; i++) {
        wv_bundle *b = wv_bundle_set_take(&c->bundles, i);
        rc = submit_job(c, b->key, OBJ_BUNDLE, b->size, NULL, b, err);
    }
    wv_bundle_set_free(&c->bundles);
    return rc;
}

/* ---- repository info ------------------------------------------------------------------------- */

static int sync_info(sync_ctx *c, wv_err *err)
{
    int rc = wv_repo_load_info(c->from, err);
    if (rc == WV_ENOTFOUND) {
        wv_err_set(err, WV_ENOTFOUND, "%s (\"%s\") is empty: nothing to sync from", from_name(c),
                   wv_storage_location(c->from->st));
        return wv_err_hint(err, "check --from: it names the repository that holds the archive");
    }
    if (rc < 0)
        return rc;
    const wv_repo_info *fi = &c->from->info;
    rc = wv_repo_load_info(c->to, err);
    if (rc == WV_ENOTFOUND) {
        /* An empty target gets the source's info object as it is; if another process (a
         * wal-push) recorded one meanwhile, that one is compared below. */
        wv_buf b = WV_BUF_INIT;
        rc = wv_storage_get_all(c->from->st, WV_REPO_INFO_KEY, 64 * 1024, &b, err);
        if (rc == 0 && c->dry_run)
            printf("would copy %s (%zu bytes)\n", WV_REPO_INFO_KEY, b.len);
        else if (rc == 0)
            rc = wv_storage_put_all(c->to->st, WV_REPO_INFO_KEY, WV_PUT_NOREPLACE, b.data, b.len,
                                    err);
        if (rc == 0) {
            c->copied++;
            c->copied_bytes += b.len;
        }
        wv_buf_free(&b);
        if (rc != WV_EEXIST)
            return rc;
        rc = wv_repo_load_info(c->to, err);
    }
    if (rc < 0)
        return rc;
    const wv_repo_info *ti = &c->to->info;
    if (ti->system_id != fi->system_id || ti->wal_segsize != fi->wal_segsize ||
        ti->pg_major != fi->pg_major) {
        wv_err_set(err, WV_EMISMATCH,
                   "refused: %s (\"%s\") belongs to database system %" PRIu64
                   " (PostgreSQL %" PRIu32 ", %" PRIu64 "-byte segments), but %s (\"%s\") "
                   "belongs to database system %" PRIu64 " (PostgreSQL %" PRIu32 ", %" PRIu64
                   "-byte segments)",
                   to_name(c), wv_storage_location(c->to->st), ti->system_id, ti->pg_major,
                   ti->wal_segsize, from_name(c), wv_storage_location(c->from->st), fi->system_id,
                   fi->pg_major, fi->wal_segsize);
        return wv_err_hint(err, "sync copies between repositories of one cluster; check --from "
                                "and --to (nothing was written)");
    }
    return 0;
}

/* ---- WAL ------------------------------------------------------------------------------------- */

static int sync_wal(sync_ctx *c, wv_err *err)
{
    keyset src = {0};
    int rc = wv_storage_list(c->from->st, "wal/", keyset_add_cb, &src, err);
    if (rc < 0)
        goto out;
    keyset_sort(&src);
    for (size_t i = 0; i < src.n && rc == 0; i++) {
        const char *key = src.e[i].key;
        const char *name = strrchr(key, '/') + 1;
        size_t n = strlen(name), sl = strlen(WV_REPO_RP_SUFFIX);
        char wkey[128];
        wv_err e;
        if (n > sl && strcmp(name + n - sl, WV_REPO_RP_SUFFIX) == 0) {
            char seg[64];
            snprintf(seg, sizeof(seg), "%.*s", (int)(n - sl), name);
            wv_walname wn;
            if (wv_walname_parse(seg, &wn) == WV_WALNAME_SEGMENT) {
                rc = submit(c, key, OBJ_PLAIN, src.e[i].size, NULL, err);
                continue;
            }
        } else if (wv_xidrange_is_name(name)) {
            char seg[64];
            snprintf(seg, sizeof(seg), "%.*s", (int)(n - strlen(WV_REPO_XID_SUFFIX)), name);
            wv_walname wn;
            if (wv_walname_parse(seg, &wn) == WV_WALNAME_SEGMENT) {
                rc = submit(c, key, OBJ_PLAIN, src.e[i].size, NULL, err);
                continue;
            }
        } else if (wv_repo_wal_key(name, wkey, sizeof(wkey), &e) == 0 && strcmp(wkey, key) == 0) {
            rc = submit(c, key, OBJ_FRAMED, src.e[i].size, NULL, err);
            continue;
        }
        wv_log_warn("%s: skipping \"%s\": not an object walvault archives", from_name(c), key);
    }
    if (rc == 0)
        rc = wv_parallel_wait(c->par, err);
out:
    keyset_free(&src);
    return rc;
}

/* The lag records of the target in this host's spool (repo/lag.h) for files it holds now go: sync
 * caught it up. Nothing is created; a spool that cannot be read is only a warning. */
static void clear_lag_records(sync_ctx *c)
{
    char cdir[4096];
    wv_err err;
    wv_lag_list l;
    wv_err_clear(&err);
    /* the target's cluster is the source's (sync_info checked it, or copied the source's) */
    if (c->dry_run || !c->from->have_info ||
        wv_spool_cluster_path(c->cfg, c->from->info.system_id, cdir, sizeof(cdir), &err) != 0)
        return;
    const char *repo = c->to->rc->name;
    if (wv_lag_load(cdir, "lag", repo, &l, &err) != 0) {
        wv_log_err(&err);
        return;
    }
    size_t cleared = 0;
    for (size_t i = 0; i < l.n; i++) {
        char key[256];
        wv_stat st;
        if (wv_repo_wal_key(l.e[i].name, key, sizeof(key), &err) != 0 ||
            wv_storage_stat(c->to->st, key, &st, &err) != 0 ||
            wv_lag_remove(cdir, "lag", repo, l.e[i].name, &err) != 0) {
            wv_err_clear(&err);
            continue;
        }
        cleared++;
    }
    if (cleared == l.n)
        wv_lag_backoff_clear(cdir, repo);
    if (cleared)
        wv_log_info("%s: %zu lag record%s cleared (the files are there now)", repo, cleared,
                    cleared == 1 ? "" : "s");
    wv_lag_list_free(&l);
}

/* ---- backups --------------------------------------------------------------------------------- */

/* The ids of complete backups (those with a manifest) from a listing of backup/. */
static int backup_ids_cb(void *arg, const char *key, const wv_stat *st)
{
    if (strncmp(key, "backup/", 7) != 0)
        return 0;
    const char *id = key + 7;
    const char *slash = strchr(id, '/');
    if (!slash || strcmp(slash + 1, WV_MANIFEST_NAME) != 0)
        return 0;
    char idz[WV_MANIFEST_ID_MAX];
    snprintf(idz, sizeof(idz), "%.*s", (int)(slash - id), id);
    if (!wv_manifest_id_valid(idz))
        return 0;
    return keyset_add_cb(arg, idz, st);
}

/* The "end sha256=..." line of a stored manifest, by a suffix read. */
static int manifest_end(wv_storage *st, const char *key, char out[65], wv_err *err)
{
    wv_source *src = NULL;
    char buf[256];
    size_t have = 0;
    int rc = wv_storage_get_open(st, key, -200, -1, &src, err);
    if (rc < 0)
        return rc;
    while (have < sizeof(buf) - 1) {
        size_t got = 0;
        rc = wv_source_read(src, buf + have, sizeof(buf) - 1 - have, &got, err);
        if (rc < 0 || got == 0)
            break;
        have += got;
    }
    wv_source_close(src);
    if (rc < 0)
        return rc;
    buf[have] = '\0';
    const char *p = strstr(buf, "\nend sha256=");
    if (!p || strlen(p + 12) < 64)
        return wv_err_set(err, WV_ECORRUPT, "%s: \"%s\": no end line: the manifest is damaged",
                          wv_storage_name(st), key);
    snprintf(out, 65, "%.64s", p + 12);
    return 0;
}

static int manifest_entry_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    sync_ctx *c = arg;
    if (e->type != WV_MANIFEST_FILE)
        return 0;
    char key[1200];
    int64_t off, len;
    /* a chunked file: each chunk is an object of its own, checked against its own digest */
    for (uint32_t k = 0; k < e->nchunks; k++) {
        wv_manifest_chunk_key(c->backup_id, e, k, key, sizeof(key));
        int rc = submit(c, key, OBJ_FRAMED, e->chunks[k].stored_size, e->chunks[k].sha256, err);
        if (rc < 0 || k + 1 == e->nchunks)
            return rc;
    }
    wv_manifest_file_object(c->backup_id, e, key, sizeof(key), &off, &len);
    if (!e->bundle)
        return submit(c, key, OBJ_FRAMED, e->stored_size, e->sha256, err);
    /* a bundle is copied whole, once its manifest has named every file in it */
    wv_bundle_set_add(&c->bundles, c->backup_id, e);
    return 0;
}

/* Stream the manifest from the source into the target through the verifying reader. */
static int copy_manifest(sync_ctx *c, const char *id, const char *key, wv_err *err)
{
    wv_source *src = NULL;
    wv_sink *sink = NULL;
    wv_manifest_header h = {0};
    wv_manifest_reader *rd = wv_manifest_reader_new(key, &h, NULL, NULL);
    uint8_t *buf = wv_xmalloc(COPY_CHUNK);
    uint64_t bytes = 0;
    int rc = wv_storage_get_open(c->from->st, key, 0, -1, &src, err);
    if (rc < 0) {
        wv_err_context(err, from_name(c), key);
        goto out;
    }
    if (!c->dry_run && (rc = wv_storage_put_open(c->to->st, key, WV_PUT_NOREPLACE | WV_PUT_NOSYNC,
                                                 &sink, err)) < 0) {
        wv_err_context(err, to_name(c), key);
        goto out;
    }
    for (;;) {
        size_t got = 0;
        if ((rc = wv_source_read(src, buf, COPY_CHUNK, &got, err)) < 0) {
            wv_err_context(err, from_name(c), key);
            goto out;
        }
        if (got == 0)
            break;
        if ((rc = wv_manifest_reader_feed(rd, buf, got, err)) < 0) {
            wv_err_context(err, from_name(c), key);
            goto out;
        }
        if (sink && (rc = wv_sink_write(sink, buf, got, err)) < 0) {
            wv_err_context(err, to_name(c), key);
            goto out;
        }
        bytes += got;
    }
    if ((rc = wv_manifest_reader_finish(rd, NULL, err)) < 0) {
        wv_err_context(err, from_name(c), key);
        goto out;
    }
    if (strcmp(h.id, id) != 0 || h.system_id != c->from->info.system_id) {
        rc = wv_err_set(err, WV_ECORRUPT,
                        "%s: \"%s\": the manifest is of backup %s, database system %" PRIu64,
                        from_name(c), key, h.id, h.system_id);
        goto out;
    }
    if (sink) {
        rc = wv_sink_commit(sink, err);
        sink = NULL;
        if (rc < 0) {
            wv_err_context(err, to_name(c), key);
            goto out;
        }
    }
    c->copied++;
    c->copied_bytes += bytes;
    if (c->dry_run)
        printf("would copy %s (%" PRIu64 " bytes)\n", key, bytes);
out:
    wv_sink_abort(sink);
    wv_source_close(src);
    wv_manifest_reader_free(rd);
    wv_manifest_header_free(&h);
    free(buf);
    return rc;
}

/* ---- manifests written anew (rewrite mode) ---------------------------------------------------- */

/* What a manifest describes, whatever repository holds it: every entry's type, path, size, mode,
 * mtime, digest, target and chunk digests, hashed in order; not where the objects are (stored
 * sizes, bundle offsets), which differ between repositories of different keys. */
typedef struct describe_state {
    wv_filter *sha; /* a SHA-256 stage over a discard */
} describe_state;

static int describe_entry_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    describe_state *d = arg;
    char line[2600];
    char hex[65];
    wv_sha256_hex(e->sha256, hex);
    int n = snprintf(line, sizeof(line),
                     "%d\t%s\t%s\t%" PRIu32 "\t%" PRIu64 "\t%o\t%" PRId64 "\t%s\t%s\t%" PRIu32 "\n",
                     (int)e->type, e->path ? e->path : "", e->target ? e->target : "", e->oid,
                     e->size, (unsigned)e->mode, e->mtime, e->type == WV_MANIFEST_FILE ? hex : "",
                     e->ref ? e->ref : "", e->nchunks);
    int rc = wv_filter_write(d->sha, line, n > 0 ? (size_t)n : 0, err);
    for (uint32_t k = 0; k < e->nchunks && rc == 0; k++) {
        wv_sha256_hex(e->chunks[k].sha256, hex);
        n = snprintf(line, sizeof(line), "chunk\t%" PRIu64 "\t%" PRIu64 "\t%s\n",
                     e->chunks[k].offset, e->chunks[k].length, hex);
        rc = wv_filter_write(d->sha, line, (size_t)n, err);
    }
    return rc;
}

static int manifest_content(wv_storage *st, const char *id, char out[65], wv_err *err)
{
    wv_manifest_header h = {0};
    describe_state d = {.sha = wv_sha256_filter_new(wv_filter_discard_new())};
    int rc = wv_manifest_load(st, id, &h, describe_entry_cb, &d, NULL, err);
    if (rc == 0) {
        char head[512];
        int n = snprintf(head, sizeof(head),
                         "%s\t%" PRIu64 "\t%" PRIu32 "\t%" PRIu64 "\t%" PRIu32 "\t%" PRIu64
                         "\t%" PRIu64 "\t%" PRId64 "\t%" PRId64 "\n",
                         h.id, h.system_id, h.pg_version, h.wal_segsize, h.timeline, h.start_lsn,
                         h.stop_lsn, h.start_time, h.stop_time);
        rc = wv_filter_write(d.sha, head, (size_t)n, err);
    }
    if (rc == 0)
        rc = wv_filter_finish(d.sha, err);
    if (rc == 0) {
        uint8_t dg[32];
        wv_sha256_filter_digest(d.sha, dg);
        wv_sha256_hex(dg, out);
    } else
        wv_err_context(err, wv_storage_name(st), id);
    wv_filter_chain_free(d.sha);
    wv_manifest_header_free(&h);
    return rc;
}

/* The entries of N's manifest, placed where sync put their objects in M. */
typedef struct rewrite_state {
    sync_ctx *c;
    wv_manifest_writer *w;
} rewrite_state;

static int placed_size(sync_ctx *c, const char *key, uint64_t *out, wv_err *err)
{
    const key_entry *p = keyset_find(&c->placed, key);
    if (!p || !p->size)
        return wv_err_set(err, WV_EINTERNAL,
                          "%s: \"%s\": not copied, so its backup's manifest "
                          "cannot be written",
                          to_name(c), key);
    *out = p->size;
    return 0;
}

static int rewrite_entry_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    rewrite_state *r = arg;
    sync_ctx *c = r->c;
    if (e->type != WV_MANIFEST_FILE)
        return wv_manifest_writer_add(r->w, e, err);
    wv_manifest_entry n = *e;
    wv_manifest_chunk *chunks = NULL;
    char key[1200];
    int rc = 0;
    if (e->nchunks) {
        chunks = wv_xcalloc(e->nchunks, sizeof(*chunks));
        n.stored_size = 0;
        for (uint32_t k = 0; k < e->nchunks && rc == 0; k++) {
            chunks[k] = e->chunks[k];
            wv_manifest_chunk_key(c->backup_id, e, k, key, sizeof(key));
            rc = placed_size(c, key, &chunks[k].stored_size, err);
            n.stored_size += chunks[k].stored_size;
        }
        n.chunks = chunks;
    } else if (e->bundle) {
        char bkey[300], mk[1600];
        wv_manifest_bundle_key(e->ref ? e->ref : c->backup_id, e->bundle, bkey, sizeof(bkey));
        member_key(bkey, e->path, mk, sizeof(mk));
        const key_entry *off = keyset_find(&c->placed_offset, mk);
        rc = placed_size(c, mk, &n.stored_size, err);
        if (rc == 0 && !off)
            rc = wv_err_set(err, WV_EINTERNAL, "%s: \"%s\" in \"%s\": not copied", to_name(c),
                            e->path, bkey);
        if (rc == 0)
            n.offset = off->size;
    } else {
        int64_t o, l;
        wv_manifest_file_object(c->backup_id, e, key, sizeof(key), &o, &l);
        rc = placed_size(c, key, &n.stored_size, err);
    }
    if (rc == 0)
        rc = wv_manifest_writer_add(r->w, &n, err);
    free(chunks);
    return rc;
}

typedef struct manifest_fill {
    wv_manifest_writer *w;
    const wv_manifest_header *h;
} manifest_fill;

static int fill_manifest(void *arg, wv_filter *dest, wv_err *err)
{
    manifest_fill *f = arg;
    return wv_manifest_writer_finish(f->w, f->h, dest, err);
}

/* Write backup id's manifest into M anew (N's header and entries, M's stored sizes and offsets). */
static int rewrite_manifest(sync_ctx *c, const char *id, const char *key, wv_err *err)
{
    if (c->dry_run) {
        c->copied++;
        printf("would write %s anew\n", key);
        return 0;
    }
    keyset_sort(&c->placed);
    keyset_sort(&c->placed_offset);
    wv_manifest_writer *w = NULL;
    wv_manifest_header h = {0};
    int rc = wv_manifest_writer_new(NULL, &w, err);
    if (rc < 0)
        return rc;
    rewrite_state r = {.c = c, .w = w};
    rc = wv_manifest_load(c->from->st, id, &h, rewrite_entry_cb, &r, NULL, err);
    if (rc < 0)
        wv_err_context(err, from_name(c), key);
    else if (h.system_id != c->from->info.system_id)
        rc = wv_err_set(err, WV_ECORRUPT, "%s: \"%s\": the manifest is of database system %" PRIu64,
                        from_name(c), key, h.system_id);
    if (rc == 0) {
        manifest_fill f = {.w = w, .h = &h};
        rc = wv_repo_put_stream(c->to->st, key, WV_PUT_NOREPLACE | WV_PUT_NOSYNC, fill_manifest, &f,
                                err);
        if (rc < 0)
            wv_err_context(err, to_name(c), key);
    }
    if (rc == 0)
        c->copied++;
    wv_manifest_writer_free(w);
    wv_manifest_header_free(&h);
    return rc;
}

/* The keep marker (repo/backupset.h) goes with its backup: the source's marker, when it has one,
 * replaces the target's if they differ. */
static int sync_keep_marker(sync_ctx *c, const char *id, wv_err *err)
{
    int from_keep = 0, to_keep = 0;
    int rc = wv_backup_keep_read(c->from->st, id, &from_keep, err);
    if (rc <= 0)
        return rc;
    if ((rc = wv_backup_keep_read(c->to->st, id, &to_keep, err)) < 0)
        return rc;
    if (rc == 1 && to_keep == from_keep)
        return 0;
    if (c->dry_run) {
        printf("would set keep %s on backup %s\n", from_keep ? "on" : "off", id);
        return 0;
    }
    return wv_backup_keep_write(c->to->st, id, from_keep, err);
}

static int sync_backup(sync_ctx *c, const char *id, wv_err *err)
{
    char key[256];
    wv_manifest_key(id, key, sizeof(key));
    if (keyset_has(&c->have, key)) {
        char a[65], b[65];
        int rc;
        if (c->rewrite) {
            /* written anew for M: the same backup if it describes the same content */
            rc = manifest_content(c->from->st, id, a, err);
            if (rc == 0)
                rc = manifest_content(c->to->st, id, b, err);
            if (rc == WV_EPRIVKEY) {
                /* a public-key host cannot open M's manifest: the backup is there (its manifest
                 * is what makes it exist); what it describes is compared where the private key
                 * is held (basebackup verify there checks every file against it) */
                wv_err_clear(err);
                wv_log_info("%s: backup %s is there (its manifest is sealed to this host: not "
                            "compared with %s's)",
                            to_name(c), id, from_name(c));
                c->skipped++;
                return sync_keep_marker(c, id, err);
            }
        } else {
            rc = manifest_end(c->from->st, key, a, err);
            if (rc == 0)
                rc = manifest_end(c->to->st, key, b, err);
        }
        if (rc < 0)
            return rc;
        if (strcmp(a, b) == 0) {
            c->skipped++;
            return sync_keep_marker(c, id, err);
        }
        c->conflicts++;
        wv_err e;
        wv_err_set(&e, WV_ECONFLICT,
                   "%s: backup %s: conflict: its manifest differs from the one in %s; not copied",
                   to_name(c), id, from_name(c));
        wv_err_hint(&e, "a backup id names one backup: check both with \"basebackup list\" and "
                        "move the wrong one away by hand");
        wv_log_err(&e);
        return 0;
    }
    c->backup_id = id;
    c->backup_conflicts = 0;
    wv_manifest_header h = {0};
    int rc = wv_manifest_load(c->from->st, id, &h, manifest_entry_cb, c, NULL, err);
    wv_manifest_header_free(&h);
    if (rc == 0)
        rc = submit_bundles(c, err);
    else
        submit_bundles(c, NULL);
    if (rc < 0) {
        if (wv_parallel_stopped(c->par))
            return wv_parallel_wait(c->par, err); /* a copy failed: its error is the first */
        /* Reading the manifest failed: let the running copies stop, then report it. */
        wv_err_context(err, from_name(c), key);
        wv_parallel_cancel(c->par, err);
        wv_err ignore;
        wv_parallel_wait(c->par, &ignore);
        return rc;
    }
    if ((rc = wv_parallel_wait(c->par, err)) < 0)
        return rc;
    if (c->backup_conflicts) {
        wv_err e;
        wv_err_set(&e, WV_ECONFLICT, "%s: backup %s not copied: %" PRIu64 " conflicting object%s",
                   to_name(c), id, c->backup_conflicts, c->backup_conflicts == 1 ? "" : "s");
        wv_log_err(&e);
        return 0;
    }
    /* Every file (and the WAL, copied before) durable before the manifest makes it a backup. */
    if (!c->dry_run && (rc = wv_storage_flush(c->to->st, err)) < 0)
        return rc;
    if ((rc = c->rewrite ? rewrite_manifest(c, id, key, err) : copy_manifest(c, id, key, err)) < 0)
        return rc;
    if ((rc = sync_keep_marker(c, id, err)) < 0)
        return rc;
    c->backups_copied++;
    if (!c->dry_run)
        wv_log_note("%s: backup %s copied from %s", to_name(c), id, from_name(c));
    return 0;
}

static int sync_backups(sync_ctx *c, wv_err *err)
{
    keyset ids = {0};
    int rc = wv_storage_list(c->from->st, "backup/", backup_ids_cb, &ids, err);
    if (rc == 0) {
        keyset_sort(&ids);
        for (size_t i = 0; i < ids.n && rc == 0; i++)
            rc = sync_backup(c, ids.e[i].key, err);
    }
    c->backup_id = NULL;
    keyset_free(&ids);
    return rc;
}

/* ---- the command ----------------------------------------------------------------------------- */

/* Is [repoN] (rc) a plain repository already used, which an open with the configuration's key
 * refuses? Then *out is it, opened without the key (a copy of rc in *plain_rc, which must outlive
 * it); else 0 and *out NULL. */
static int open_plain_used(const wv_repo_config *rc, wv_repo_config *plain_rc, wv_repo **out)
{
    wv_err e;
    wv_stat st;
    *out = NULL;
    if (!rc->encrypt_key_file && !rc->encrypt_public_key_file && !rc->encrypt_private_key_file)
        return 0;
    *plain_rc = *rc;
    plain_rc->encrypt_key_file = NULL;
    plain_rc->encrypt_public_key_file = NULL;
    plain_rc->encrypt_private_key_file = NULL;
    wv_err_clear(&e);
    if (wv_repo_open(plain_rc, out, &e) != 0)
        return 0; /* encrypted (a key record), or unreachable: the keyed open's error stands */
    if (!wv_repo_crypto((*out)->st) && wv_storage_stat((*out)->st, WV_REPO_INFO_KEY, &st, &e) == 0)
        return 1;
    wv_repo_close(*out);
    *out = NULL;
    return 0;
}

/* A dry run into an unused repository (no key record, no walvault.repo): opened without keys,
 * which writes nothing. */
static int open_unused_plain(const wv_repo_config *rc, wv_repo_config *plain_rc, wv_repo **out)
{
    wv_err e;
    wv_stat st;
    *out = NULL;
    *plain_rc = *rc;
    plain_rc->encrypt_key_file = NULL;
    plain_rc->encrypt_public_key_file = NULL;
    plain_rc->encrypt_private_key_file = NULL;
    wv_err_clear(&e);
    if (wv_repo_open(plain_rc, out, &e) != 0)
        return 0;
    if (!wv_repo_crypto((*out)->st) &&
        wv_storage_stat((*out)->st, WV_REPO_INFO_KEY, &st, &e) == WV_ENOTFOUND)
        return 1;
    wv_repo_close(*out);
    *out = NULL;
    return 0;
}

/*
 * Open N and M with the configuration's keys. A plain N is opened without them (its objects need
 * none to be read, and a plain repository opened with a key is refused): the migration into an
 * encrypted M. An encrypted N into a plain M is refused: the copy would store in plain what N
 * keeps encrypted.
 */
static int open_repos(sync_ctx *c, const wv_repo_config *rfrom, const wv_repo_config *rto,
                      wv_err *err)
{
    int rc = wv_repo_open(rfrom, &c->from, err);
    if ((rc == WV_EKEY || rc == WV_EREFUSED) && open_plain_used(rfrom, &c->from_rc, &c->from)) {
        wv_log_info("%s is not encrypted: read without the configuration's key", rfrom->name);
        wv_err_clear(err);
        rc = 0;
    }
    if (rc < 0)
        return rc;
    if (c->dry_run && open_unused_plain(rto, &c->to_rc, &c->to)) {
        /* a dry run writes nothing: not even the key record a first keyed open would create */
        c->rewrite = wv_repo_crypto(c->from->st) || rto->encrypt_key_file ||
                     rto->encrypt_public_key_file || rto->encrypt_private_key_file;
        return 0;
    }
    rc = wv_repo_open(rto, &c->to, err);
    wv_repo_config plain_to;
    wv_repo *probe = NULL;
    if ((rc == WV_EKEY || rc == WV_EREFUSED) && wv_repo_crypto(c->from->st) &&
        open_plain_used(rto, &plain_to, &probe)) {
        wv_repo_close(probe);
        wv_err_set(err, WV_EREFUSED,
                   "refused: %s is encrypted and %s is not: sync would store in plain what %s "
                   "keeps encrypted",
                   rfrom->name, rto->name, rfrom->name);
        return wv_err_hint(err, "sync into a new, empty repository (it is created encrypted with "
                                "the configuration's key); nothing was written");
    }
    if (rc < 0)
        return rc;
    c->rewrite = wv_repo_crypto(c->from->st) || wv_repo_crypto(c->to->st);
    return 0;
}

int wv_bbcmd_sync(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"from", required_argument, NULL, 'f'}, {"to", required_argument, NULL, 't'},
        {"dry-run", no_argument, NULL, 'n'},    {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    int from = 0, to = 0, c, rc = 0;
    wv_err err;
    wv_cli cli = {.config_path = config_path};
    sync_ctx ctx = {0};
    double t0 = wv_mono_s();

    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (wv_cli_repo_number("--from", optarg, &from, &err) < 0)
                return wv_cli_fail(&err);
            break;
        case 't':
            if (wv_cli_repo_number("--to", optarg, &to, &err) < 0)
                return wv_cli_fail(&err);
            break;
        case 'n':
            ctx.dry_run = 1;
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("sync", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (wv_cli_no_more_args("sync", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    if (!from || !to) {
        wv_err_set(&err, WV_EUSAGE, "sync needs --from N and --to M");
        wv_err_hint(&err, "run \"basebackup sync --help\" for usage");
        return wv_cli_fail(&err);
    }
    if (from == to) {
        wv_err_set(&err, WV_EUSAGE, "--from and --to name the same repository (repo%d)", from);
        return wv_cli_fail(&err);
    }
    if ((rc = wv_cli_load_config(&cli, &ctx.cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if ((rc = wv_cli_repo_exists(ctx.cfg, "--from", from, &err)) < 0 ||
        (rc = wv_cli_repo_exists(ctx.cfg, "--to", to, &err)) < 0)
        goto out;
    const wv_repo_config *rfrom = wv_config_repo(ctx.cfg, from);
    const wv_repo_config *rto = wv_config_repo(ctx.cfg, to);
    if ((rc = open_repos(&ctx, rfrom, rto, &err)) < 0)
        goto out;
    if ((rc = sync_info(&ctx, &err)) < 0)
        goto out;
    if ((rc = wv_storage_list(ctx.to->st, "wal/", keyset_add_cb, &ctx.have, &err)) < 0 ||
        (rc = wv_storage_list(ctx.to->st, "backup/", keyset_add_cb, &ctx.have, &err)) < 0)
        goto out;
    keyset_sort(&ctx.have);
    int workers = ctx.cfg->process_max > 0 ? ctx.cfg->process_max : 2;
    if ((rc = wv_parallel_new(workers, workers * 2, &ctx.par, &err)) < 0)
        goto out;
    if ((rc = sync_wal(&ctx, &err)) < 0)
        goto out;
    if ((rc = sync_backups(&ctx, &err)) < 0)
        goto out;
    if (!ctx.dry_run && (rc = wv_storage_flush(ctx.to->st, &err)) < 0)
        goto out;
    clear_lag_records(&ctx); /* after the flush: what it clears is durable */
    {
        char sz[32];
        wv_human_bytes(ctx.copied_bytes, sz, sizeof(sz));
        printf("sync %s -> %s%s: %s %" PRIu64 " object%s (%s, %" PRIu64
               " backup%s), skipped %" PRIu64 " already there, %" PRIu64 " conflict%s, %.1f s\n",
               from_name(&ctx), to_name(&ctx), ctx.dry_run ? " (dry run)" : "",
               ctx.dry_run ? "would copy" : "copied", ctx.copied, ctx.copied == 1 ? "" : "s", sz,
               ctx.backups_copied, ctx.backups_copied == 1 ? "" : "s", ctx.skipped, ctx.conflicts,
               ctx.conflicts == 1 ? "" : "s", wv_mono_s() - t0);
        fflush(stdout);
    }
    if (ctx.conflicts) {
        rc = wv_err_set(&err, WV_ECONFLICT,
                        "%s: %" PRIu64 " object%s differ%s from %s and %s not copied (see above)",
                        to_name(&ctx), ctx.conflicts, ctx.conflicts == 1 ? "" : "s",
                        ctx.conflicts == 1 ? "s" : "", from_name(&ctx),
                        ctx.conflicts == 1 ? "was" : "were");
        wv_err_hint(&err, "objects are never replaced: resolve each conflict by hand, then run "
                          "sync again");
    }
out:
    if (ctx.par) {
        wv_err ignore;
        if (rc < 0)
            wv_parallel_cancel(ctx.par, &err);
        wv_parallel_wait(ctx.par, &ignore);
        wv_parallel_free(ctx.par);
    }
    keyset_free(&ctx.have);
    keyset_free(&ctx.placed);
    keyset_free(&ctx.placed_offset);
    wv_repo_close(ctx.from);
    wv_repo_close(ctx.to);
    wv_config_free(ctx.cfg);
    return rc < 0 ? wv_cli_fail(&err) : 0;
}
