/* objcopy.c - copy one stored object between repositories, verified (see objcopy.h). */
#include "repo/objcopy.h"

#include <inttypes.h>
#include <string.h>

#include <openssl/crypto.h>

#include "pipeline/crypt.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"

static int tee_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    wv_tee_source *t = (wv_tee_source *)s;
    int rc = wv_source_read(t->in, buf, cap, got, err);
    if (rc < 0 || *got == 0)
        return rc;
    if ((rc = wv_sink_write(t->out, buf, *got, &t->out_err)) < 0) {
        t->out_failed = 1;
        *err = t->out_err;
        return rc;
    }
    t->bytes += *got;
    return 0;
}

static void tee_close(wv_source *s)
{
    (void)s; /* the owner closes the wrapped source and the sink */
}

static const wv_source_ops tee_ops = {.read = tee_read, .close = tee_close};

void wv_tee_source_init(wv_tee_source *t, wv_source *in, wv_sink *out)
{
    memset(t, 0, sizeof(*t));
    t->base.ops = &tee_ops;
    t->in = in;
    t->out = out;
    wv_err_clear(&t->out_err);
}

int wv_obj_crypto_same(const wv_obj_crypto *a, const wv_obj_crypto *b)
{
    if (!a || !b)
        return a == b;
    return a->mode == b->mode && a->key_id == b->key_id &&
           CRYPTO_memcmp(a->digest_key, b->digest_key, sizeof(a->digest_key)) == 0;
}

/* ---- recognising a re-copy --------------------------------------------------------------------
 *
 * A plain object's trailer tells its plain SHA-256 and size. An encrypted one's trailer tells only
 * the keyed digest HMAC-SHA256(digest key, SHA-256 of the plain content), under the digest key of
 * its repository (objfmt.h); its sealed metadata block tells the SHA-256 to whoever can derive the
 * metadata key: any holder of the symmetric key, but in public-key mode only a holder of the
 * private key. Every host that opens an encrypted repository holds its digest key, so:
 *
 *   both SHA-256 known          compare them (and the plain sizes);
 *   one side's SHA-256 S known  compute HMAC(the other side's digest key, S) and compare it with
 *                               the other side's keyed digest: no private key is needed, and the
 *                               comparison runs in constant time;
 *   neither known               only keyed digests under the same digest key compare (the same
 *                               repository keys); else nothing can be decided (WV_EPRIVKEY).
 *
 * So `basebackup sync` from a plain repository into a public-key one, run again on a host with only
 * the public key, recognises every object it copied before from one suffix read per side, without
 * decoding anything: the source's plain SHA-256 under the target's digest key is the target's keyed
 * digest. The same holds from a symmetric repository (its metadata block opens with its key). */

/* The keyed digest of plain content sha256 under st's digest key (0), or -1 if st is plain. */
static int keyed_under(const wv_storage *st, const uint8_t sha256[32], uint8_t out[32])
{
    const wv_obj_crypto *c = wv_repo_crypto(st);
    wv_err e;
    if (!c || wv_crypt_keyed_digest(c->digest_key, sha256, out, &e) != 0)
        return -1;
    return 0;
}

int wv_repo_content_is(const wv_storage *st, const wv_obj_info *info, const uint8_t sha256[32])
{
    if (!info->sealed)
        return memcmp(info->sha256, sha256, 32) == 0;
    uint8_t k[32];
    int same = keyed_under(st, sha256, k) == 0 && CRYPTO_memcmp(k, info->keyed_digest, 32) == 0;
    OPENSSL_cleanse(k, sizeof(k));
    return same;
}

int wv_repo_copy_compare(const wv_storage *sa, const wv_obj_info *a, const wv_storage *sb,
                         const wv_obj_info *b, int *same, wv_err *err)
{
    *same = 0;
    if (!a->sealed && !b->sealed) {
        *same = memcmp(a->sha256, b->sha256, 32) == 0 && a->plain_size == b->plain_size;
        return 0;
    }
    if (!a->sealed) {
        *same = wv_repo_content_is(sb, b, a->sha256);
        return 0;
    }
    if (!b->sealed) {
        *same = wv_repo_content_is(sa, a, b->sha256);
        return 0;
    }
    const wv_obj_crypto *ca = wv_repo_crypto(sa), *cb = wv_repo_crypto(sb);
    if (ca && cb && CRYPTO_memcmp(ca->digest_key, cb->digest_key, 32) == 0) {
        *same = CRYPTO_memcmp(a->keyed_digest, b->keyed_digest, 32) == 0;
        return 0;
    }
    wv_err_set(err, WV_EPRIVKEY,
               "%s and %s: whether the copies hold the same content needs the private key "
               "(encrypt_private_key_file)",
               wv_storage_name(sa), wv_storage_name(sb));
    return wv_err_hint(err, "run this on a host that holds the private key");
}

/* ---- copying ---------------------------------------------------------------------------------- */

/* A filter stage that feeds the plain content it is written into an object writer; finishing it
 * does not finish the writer (the WAL facts of the source's trailer go in first). */
typedef struct writer_filter {
    wv_filter base;
    wv_objwriter *w;
} writer_filter;

static int wf_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    return wv_objwriter_write(((writer_filter *)f)->w, buf, len, err);
}

static int wf_finish(wv_filter *f, wv_err *err)
{
    (void)f;
    (void)err;
    return 0;
}

static void wf_free(wv_filter *f)
{
    (void)f; /* on the stack */
}

static const wv_filter_ops wf_ops = {
    .name = "objcopy-writer", .write = wf_write, .finish = wf_finish, .free = wf_free};

/* The most plain bytes the object key may hold: a WAL file's limit, or the caller's. */
static uint64_t plain_limit(const wv_repo *from, const char *key, const wv_copy_opts *o)
{
    uint64_t lim = o->max_plain;
    const char *base = strrchr(key, '/');
    char wkey[256];
    wv_err e;
    if (base && wv_repo_wal_key(base + 1, wkey, sizeof(wkey), &e) == 0 && strcmp(wkey, key) == 0) {
        uint64_t w = wv_repo_wal_max_size(base + 1, from->have_info ? &from->info : NULL);
        if (!lim || w < lim)
            lim = w;
    }
    return lim;
}

/* Read the source object through src into dest (the walcheck, then dest), verified. */
static int decode_source(wv_repo *from, const char *key, const wv_copy_opts *o, wv_source *src,
                         wv_filter *dest, wv_obj_info *info, wv_err *err)
{
    wv_filter *check = wv_repo_walcheck_for_key(dest, key, from->have_info ? &from->info : NULL);
    uint64_t lim = plain_limit(from, key, o);
    wv_objread_opts ro = {.key = key,
                          .max_plain = lim,
                          .flags = lim ? WV_OBJREAD_LIMIT : 0,
                          .crypto = wv_repo_crypto(from->st)};
    int rc = wv_object_read_opts(src, check ? check : dest, &ro, info, err);
    if (check)
        check->ops->free(check);
    if (rc == 0 && o->expect_sha256 && memcmp(info->sha256, o->expect_sha256, 32) != 0)
        rc = wv_err_set(err, WV_ECORRUPT, "content does not match the backup manifest");
    return rc;
}

static int copy_bytes(wv_repo *from, wv_repo *to, const char *key, const wv_copy_opts *o,
                      wv_copy_result *res, wv_err *err)
{
    const char *fname = wv_storage_name(from->st), *tname = wv_storage_name(to->st);
    wv_source *src = NULL;
    wv_sink *sink = NULL;
    int rc = wv_storage_get_open(from->st, key, 0, -1, &src, err);
    if (rc < 0)
        return wv_err_context(err, fname, key);
    rc = wv_storage_put_open(to->st, key, o->put_flags | WV_PUT_NOREPLACE, &sink, err);
    if (rc < 0) {
        wv_source_close(src);
        return wv_err_context(err, tname, key);
    }
    wv_tee_source tee;
    wv_tee_source_init(&tee, src, sink);
    wv_filter *discard = wv_filter_discard_new();
    rc = decode_source(from, key, o, &tee.base, discard, &res->src, err);
    wv_filter_chain_free(discard);
    wv_source_close(src);
    if (rc < 0) {
        wv_sink_abort(sink);
        if (tee.out_failed) {
            *err = tee.out_err;
            return wv_err_context(err, tname, key);
        }
        return wv_err_context(err, fname, key);
    }
    res->dst = res->src;
    rc = wv_repo_commit_object(to, sink, key, key, &res->src, &res->already, &res->dst, err);
    if (rc == WV_ECONFLICT)
        res->conflict_info = 1;
    if (rc < 0)
        return rc == WV_ECONFLICT ? rc : wv_err_context(err, tname, key);
    res->bytes = res->already ? 0 : tee.bytes;
    res->stored = tee.bytes;
    return 0;
}

static int copy_reencode(wv_repo *from, wv_repo *to, const char *key, const wv_copy_opts *o,
                         wv_copy_result *res, wv_err *err)
{
    const char *fname = wv_storage_name(from->st), *tname = wv_storage_name(to->st);
    wv_obj_info tr;
    /* kind and compression first, from the source's trailer (its copies of the header's) */
    int rc = wv_repo_read_trailer(from->st, key, &tr, err);
    if (rc < 0)
        return wv_err_context(err, fname, key);
    wv_source *src = NULL;
    wv_sink *sink = NULL;
    if ((rc = wv_storage_get_open(from->st, key, 0, -1, &src, err)) < 0)
        return wv_err_context(err, fname, key);
    rc = wv_storage_put_open(to->st, key, o->put_flags | WV_PUT_NOREPLACE, &sink, err);
    if (rc < 0) {
        wv_source_close(src);
        return wv_err_context(err, tname, key);
    }
    wv_obj_opts wo = {.compress = tr.compression == WV_OBJ_COMPRESS_LZ4 ? WV_COMPRESS_LZ4
                                                                        : WV_COMPRESS_NONE,
                      .level = 1,
                      .kind = tr.kind,
                      .name = key,
                      .crypto = wv_repo_crypto(to->st)};
    wv_objwriter *w = wv_objwriter_new(&sink, 1, &wo);
    writer_filter wf = {.base = {.ops = &wf_ops, .next = NULL}, .w = w};
    rc = decode_source(from, key, o, src, &wf.base, &res->src, err);
    wv_source_close(src);
    if (rc < 0) {
        /* a failure of the writer is the target's; of the reader, the source's */
        int target = wv_objwriter_sinks_ok(w) == 0;
        wv_objwriter_free(w);
        wv_sink_abort(sink);
        return wv_err_context(err, target ? tname : fname, key);
    }
    wv_objwriter_set_walinfo(w, res->src.first_commit_us, res->src.last_commit_us,
                             res->src.commit_count, res->src.restore_point_count);
    wv_obj_info ours;
    rc = wv_objwriter_finish(w, &ours, err);
    wv_objwriter_free(w);
    if (rc < 0) {
        wv_sink_abort(sink);
        return wv_err_context(err, tname, key);
    }
    uint64_t stored = (uint64_t)ours.header_size + ours.payload_size + WV_OBJ_TRAILER_SIZE;
    res->dst = ours;
    rc = wv_repo_commit_object(to, sink, key, key, &ours, &res->already, &res->dst, err);
    if (rc == WV_ECONFLICT)
        res->conflict_info = 1;
    if (rc < 0)
        return rc == WV_ECONFLICT ? rc : wv_err_context(err, tname, key);
    res->bytes = res->already ? 0 : stored;
    res->stored = res->already ? 0 : stored;
    return 0;
}

static int conflict(wv_repo *from, wv_repo *to, const char *key, wv_copy_result *res, wv_err *err)
{
    res->conflict_info = 1;
    wv_err_set(err, WV_ECONFLICT,
               "%s: %s is already there with different content than in %s; refusing to "
               "overwrite it",
               wv_storage_name(to->st), key, wv_storage_name(from->st));
    return wv_err_hint(err, "objects are never replaced: find out which copy is right, move the "
                            "wrong one away by hand, and copy again");
}

int wv_repo_copy_object_ext(wv_repo *from, wv_repo *to, const char *key, const wv_copy_opts *o,
                            wv_copy_result *res, wv_err *err)
{
    static const wv_copy_opts none = {0};
    if (!o)
        o = &none;
    memset(res, 0, sizeof(*res));
    if (wv_obj_crypto_same(wv_repo_crypto(from->st), wv_repo_crypto(to->st)))
        return copy_bytes(from, to, key, o, res, err);
    res->reencoded = 1;
    if (!o->skip_precheck) {
        /* An object the target holds already is compared without decoding anything (see above):
         * a re-run of a copy reads two suffixes per object. */
        wv_obj_info b;
        int rc = wv_repo_content_info(to->st, key, &b, err);
        if (rc == 0) {
            wv_obj_info a;
            int same = 0;
            if ((rc = wv_repo_content_info(from->st, key, &a, err)) < 0)
                return wv_err_context(err, wv_storage_name(from->st), key);
            res->src = a;
            res->dst = b;
            rc = wv_repo_copy_compare(from->st, &a, to->st, &b, &same, err);
            if (rc == 0 && same && o->expect_sha256 &&
                !wv_repo_content_is(to->st, &b, o->expect_sha256))
                same = 0;
            if (rc == 0 && !same)
                return conflict(from, to, key, res, err);
            if (rc == 0) {
                res->already = 1;
                return 0;
            }
            /* undecidable here: decode the source, the commit decides */
            wv_err_clear(err);
        } else if (rc != WV_ENOTFOUND) {
            return wv_err_context(err, wv_storage_name(to->st), key);
        } else
            wv_err_clear(err);
    }
    return copy_reencode(from, to, key, o, res, err);
}

int wv_repo_copy_object(wv_repo *from, wv_repo *to, const char *key, unsigned put_flags,
                        uint64_t *bytes, int *already, wv_err *err)
{
    wv_copy_opts o = {.put_flags = put_flags};
    wv_copy_result res;
    int rc = wv_repo_copy_object_ext(from, to, key, &o, &res, err);
    *already = res.already;
    *bytes = res.bytes;
    return rc;
}

/* ---- bundles ---------------------------------------------------------------------------------- */

/* A source that returns the bytes held first, then the rest of `in`. */
typedef struct replay_source {
    wv_source base;
    wv_source *in;
    const uint8_t *held;
    size_t nheld, pos;
} replay_source;

static int replay_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    replay_source *r = (replay_source *)s;
    if (r->pos < r->nheld) {
        size_t n = r->nheld - r->pos < cap ? r->nheld - r->pos : cap;
        memcpy(buf, r->held + r->pos, n);
        r->pos += n;
        *got = n;
        return 0;
    }
    return wv_source_read(r->in, buf, cap, got, err);
}

static void replay_close(wv_source *s)
{
    (void)s;
}

static const wv_source_ops replay_ops = {.read = replay_read, .close = replay_close};

typedef struct bundle_copy {
    wv_repo *from, *to;
    const wv_bundle *b;
    wv_sink *sink;
    uint64_t pos;
    uint64_t *new_offset, *new_stored;
    int target_failed;
} bundle_copy;

static int copy_member(void *arg, const wv_bundle_member *m, wv_source *obj, wv_err *err)
{
    bundle_copy *bc = arg;
    size_t i = (size_t)(m - bc->b->m);
    /* the member's compression and kind, from the fixed part of its header */
    uint8_t hdr[WV_OBJ_HEADER_SIZE];
    size_t have = 0;
    int rc = 0;
    while (have < sizeof(hdr)) {
        size_t got = 0;
        if ((rc = wv_source_read(obj, hdr + have, sizeof(hdr) - have, &got, err)) < 0)
            return rc;
        if (got == 0)
            return wv_err_set(err, WV_ECORRUPT, "\"%s\": truncated object header", m->path);
        have += got;
    }
    replay_source rs = {.base = {.ops = &replay_ops}, .in = obj, .held = hdr, .nheld = have};
    uint8_t comp = hdr[12], kind = hdr[15];
    wv_obj_opts wo = {.compress = comp == WV_OBJ_COMPRESS_LZ4 ? WV_COMPRESS_LZ4 : WV_COMPRESS_NONE,
                      .level = 1,
                      .kind = kind <= WV_OBJ_KIND_MAX ? kind : WV_OBJ_KIND_BACKUP_FILE,
                      .name = bc->b->key,
                      .crypto = wv_repo_crypto(bc->to->st)};
    wv_objwriter *w = wv_objwriter_new(&bc->sink, 1, &wo);
    writer_filter wf = {.base = {.ops = &wf_ops, .next = NULL}, .w = w};
    wv_obj_info info;
    wv_objread_opts ro = {.flags = WV_OBJREAD_LIMIT,
                          .key = bc->b->key,
                          .max_plain = m->size,
                          .crypto = wv_repo_crypto(bc->from->st)};
    rc = wv_object_read_opts(&rs.base, &wf.base, &ro, &info, err);
    if (rc < 0 && wv_objwriter_sinks_ok(w) == 0)
        bc->target_failed = 1;
    if (rc == 0 && (info.plain_size != m->size || memcmp(info.sha256, m->sha256, 32) != 0))
        rc = wv_err_set(err, WV_ECORRUPT, "its content does not match the backup manifest");
    if (rc < 0) {
        wv_objwriter_free(w);
        return wv_err_prefix(err, "\"%s\" at offset %" PRIu64 ": ", m->path, m->offset);
    }
    wv_objwriter_set_walinfo(w, info.first_commit_us, info.last_commit_us, info.commit_count,
                             info.restore_point_count);
    wv_obj_info ours;
    rc = wv_objwriter_finish(w, &ours, err);
    wv_objwriter_free(w);
    if (rc < 0) {
        bc->target_failed = 1;
        return rc;
    }
    uint64_t stored = (uint64_t)ours.header_size + ours.payload_size + WV_OBJ_TRAILER_SIZE;
    bc->new_offset[i] = bc->pos;
    bc->new_stored[i] = stored;
    bc->pos += stored;
    return 0;
}

int wv_repo_copy_bundle(wv_repo *from, wv_repo *to, const wv_bundle *b, unsigned put_flags,
                        uint64_t *new_offset, uint64_t *new_stored, uint64_t *bytes, wv_err *err)
{
    const char *fname = wv_storage_name(from->st), *tname = wv_storage_name(to->st);
    wv_source *src = NULL;
    bundle_copy bc = {
        .from = from, .to = to, .b = b, .new_offset = new_offset, .new_stored = new_stored};
    *bytes = 0;
    int rc = wv_storage_get_open(from->st, b->key, 0, -1, &src, err);
    if (rc < 0)
        return wv_err_context(err, fname, b->key);
    if ((rc = wv_storage_put_open(to->st, b->key, put_flags | WV_PUT_NOREPLACE, &bc.sink, err)) <
        0) {
        wv_source_close(src);
        return wv_err_context(err, tname, b->key);
    }
    rc = wv_bundle_each(src, b, copy_member, &bc, err);
    wv_source_close(src);
    if (rc < 0) {
        wv_sink_abort(bc.sink);
        return wv_err_context(err, bc.target_failed ? tname : fname, b->key);
    }
    if ((rc = wv_sink_commit(bc.sink, err)) < 0)
        return rc == WV_EEXIST ? rc : wv_err_context(err, tname, b->key);
    *bytes = bc.pos;
    return 0;
}
