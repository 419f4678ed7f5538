/*
 * object.c - write framed objects into several sinks at once, and read them back verified.
 *
 * Writing: the chain is sha256 -> [lz4] -> [seal] -> framer, with one [seal] -> framer lane per
 * distinct encryption among the sinks. The framer is the terminal stage: it sends the header before
 * the first payload byte, counts the payload, and at finish builds the trailer from the plain size
 * counted by the writer and the digest of the sha256 stage (finished just before it). Every piece
 * goes, without a copy, to each sink of the lane still alive (the tee).
 *
 * Reading: one buffer of WV_FILTER_CHUNK + trailer bytes. After the header, the reader fills the
 * buffer, pushes all but the last WV_OBJ_TRAILER_SIZE bytes as payload and keeps those (they may be
 * the trailer) at the front; at the end of the source they are the trailer.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "pipeline/crypt.h"
#include "pipeline/object.h"

/* --- keys ------------------------------------------------------------------------------------ */

static int no_key(wv_err *err, const char *what)
{
    wv_err_set(err, WV_EKEY, "%s", what);
    return WV_EKEY;
}

/* The object's key material from what the header says and what c holds (reading). */
static int read_material(const wv_obj_crypto *c, const wv_obj_header *h, uint8_t material[32],
                         wv_err *err)
{
    if (!c) {
        no_key(err, "the object is encrypted, and the configuration has no encryption key");
        return wv_err_hint(err, "set encrypt_key_file, or encrypt_public_key_file and "
                                "encrypt_private_key_file, in [global]");
    }
    /* The repository opened with these keys (its key record agreed), so an object that does not
     * is another repository's, copied in. */
    static const char foreign[] = "the object belongs to another repository (each has keys of its "
                                  "own): restore it from another repository";
    if (h->key_mode != c->mode) {
        no_key(err, h->key_mode == WV_OBJ_KEYMODE_X25519
                        ? "the object is encrypted for a public key, and the configuration "
                          "has a symmetric key (encrypt_key_file)"
                        : "the object is encrypted with a symmetric key, and the "
                          "configuration has a public key");
        return wv_err_hint(err, "%s", foreign);
    }
    if (h->key_mode == WV_OBJ_KEYMODE_SYMMETRIC) {
        if (h->key_id != c->key_id) {
            wv_err_set(err, WV_EKEY,
                       "the object is encrypted for key id %016llx, not this repository's data key",
                       (unsigned long long)h->key_id);
            return wv_err_hint(err, "%s", foreign);
        }
        memcpy(material, c->data_key, 32);
        return 0;
    }
    if (!c->private_key) {
        wv_err_set(err, WV_EPRIVKEY,
                   "reading the object needs the private key (encrypt_private_key_file)");
        return wv_err_hint(err, "run this on a host that holds the private key, or point "
                                "encrypt_private_key_file at it");
    }
    uint8_t priv[32], pub[32], secret[32];
    int rc = c->private_key(c->private_key_arg, h->key_id, priv, err);
    if (rc == 0)
        rc = wv_crypt_x25519_public(priv, pub, err);
    if (rc == 0)
        rc = wv_crypt_x25519_open(priv, h->eph_pub, secret, err);
    if (rc == 0)
        rc = wv_crypt_x25519_material(secret, h->eph_pub, pub, material, err);
    OPENSSL_cleanse(priv, sizeof(priv));
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

static int derive_keys(const uint8_t material[32], const wv_obj_header *h, const uint8_t *hdr,
                       size_t hlen, uint8_t obj_key[32], uint8_t meta_key[32], wv_err *err)
{
    int rc = wv_crypt_object_key(material, h->salt, hdr, hlen, obj_key, err);
    if (rc == 0)
        rc = wv_crypt_meta_key(material, h->salt, hdr, hlen, meta_key, err);
    return rc;
}

int wv_obj_crypto_keys(const wv_obj_crypto *c, const wv_obj_header *h, const uint8_t *hdr,
                       size_t hlen, uint8_t obj_key[32], uint8_t meta_key[32], wv_err *err)
{
    uint8_t material[32];
    int rc = read_material(c, h, material, err);
    if (rc == 0)
        rc = derive_keys(material, h, hdr, hlen, obj_key, meta_key, err);
    OPENSSL_cleanse(material, sizeof(material));
    return rc;
}

/* --- writer ---------------------------------------------------------------------------------- */

/*
 * The chain is sha256 -> [lz4] -> lanes. A lane is the sinks that share one encryption (all of
 * them, usually; one per repository when sink_crypto gives each its own keys): [seal] -> framer
 * -> tee into the lane's sinks. With one lane the compressed stream goes straight into it; with
 * several a fan stage hands each piece to every lane, so content is hashed and compressed once
 * and sealed once per key.
 */
typedef struct lane lane;

typedef struct framer_filter {
    wv_filter base;
    lane *l;
} framer_filter;

struct lane {
    wv_objwriter *w;
    const wv_obj_crypto *crypto;
    int *sink; /* indexes into w->sinks */
    int nsink;
    wv_obj_header hdr;
    wv_obj_info info; /* what this lane's trailer says */
    wv_filter *head;  /* [seal] -> framer */
    int header_sent;
    int crypt;
    uint8_t hdrbuf[WV_OBJ_HEADER_MAX];
    uint8_t obj_key[32], meta_key[32], digest_key[32];
};

struct wv_objwriter {
    wv_sink **sinks;
    wv_err *errs; /* errs[i].code != 0: sink i was dropped */
    int *lane_of; /* lane index of each sink */
    int nsinks;
    int nok;
    int first_failed; /* index of the first sink dropped, or -1 */
    lane *lanes;
    int nlanes;
    wv_obj_info info; /* shared facts: plain size, wal facts; sha256 at finish */
    wv_filter *head;  /* the sha256 stage */
    int state;        /* 0 open, 1 finished, < 0 failed with that code */
    wv_err fail;
};

static int all_failed(wv_objwriter *w, wv_err *err)
{
    if (w->first_failed < 0)
        return wv_err_set(err, WV_EINTERNAL, "object writer has no sink to write to");
    if (err)
        *err = w->errs[w->first_failed];
    return w->errs[w->first_failed].code;
}

/* Write one piece into every live sink of lane l. Fails only when no sink of the writer is left. */
static int tee_write(lane *l, const uint8_t *buf, size_t len, wv_err *err)
{
    wv_objwriter *w = l->w;
    for (int k = 0; k < l->nsink; k++) {
        int i = l->sink[k];
        if (w->errs[i].code != 0)
            continue;
        int rc = wv_sink_write(w->sinks[i], buf, len, &w->errs[i]);
        if (rc < 0) {
            if (w->errs[i].code == 0)
                wv_err_set(&w->errs[i], rc, "could not write object");
            if (w->first_failed < 0)
                w->first_failed = i;
            w->nok--;
        }
    }
    return w->nok > 0 ? 0 : all_failed(w, err);
}

static int framer_send_header(lane *l, wv_err *err)
{
    int rc = l->crypt ? 0 : wv_obj_header_encode(&l->hdr, l->hdrbuf, err);
    if (rc < 0)
        return rc;
    l->header_sent = 1;
    return tee_write(l, l->hdrbuf, wv_obj_header_length(&l->hdr), err);
}

static int framer_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    lane *l = ((framer_filter *)f)->l;
    int rc;
    if (!l->header_sent && (rc = framer_send_header(l, err)) < 0)
        return rc;
    l->info.payload_size += len;
    return tee_write(l, buf, len, err);
}

static int framer_finish(wv_filter *f, wv_err *err)
{
    lane *l = ((framer_filter *)f)->l;
    wv_objwriter *w = l->w;
    uint8_t trailer[WV_OBJ_TRAILER_SIZE];
    int rc;
    if (!l->header_sent && (rc = framer_send_header(l, err)) < 0)
        return rc;
    wv_sha256_filter_digest(w->head, w->info.sha256);
    /* the shared facts, with this lane's own sizes and format */
    uint64_t payload = l->info.payload_size;
    wv_obj_info mine = w->info;
    mine.version = l->info.version;
    mine.header_size = l->info.header_size;
    mine.cipher = l->info.cipher;
    mine.payload_size = payload;
    if (l->crypt) {
        uint8_t meta[WV_OBJ_META_SIZE];
        if ((rc = wv_crypt_keyed_digest(l->digest_key, mine.sha256, mine.keyed_digest, err)) < 0 ||
            (rc = wv_obj_meta_encode(&l->hdr, &mine, l->meta_key, meta, err)) < 0 ||
            (rc = tee_write(l, meta, sizeof(meta), err)) < 0)
            return rc;
        mine.payload_size += sizeof(meta);
    }
    l->info = mine;
    if ((rc = wv_obj_trailer_encode(&l->info, trailer, err)) < 0)
        return rc;
    return tee_write(l, trailer, sizeof(trailer), err);
}

static void framer_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops framer_ops = {
    .name = "object framer",
    .write = framer_write,
    .finish = framer_finish,
    .free = framer_free,
};

/* Several lanes: every piece to each lane's head. */
typedef struct fan_filter {
    wv_filter base;
    wv_objwriter *w;
} fan_filter;

static int fan_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    wv_objwriter *w = ((fan_filter *)f)->w;
    for (int i = 0; i < w->nlanes; i++) {
        int rc = wv_filter_write(w->lanes[i].head, buf, len, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int fan_finish(wv_filter *f, wv_err *err)
{
    wv_objwriter *w = ((fan_filter *)f)->w;
    for (int i = 0; i < w->nlanes; i++) {
        int rc = wv_filter_finish(w->lanes[i].head, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void fan_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops fan_ops = {
    .name = "object lanes",
    .write = fan_write,
    .finish = fan_finish,
    .free = fan_free,
};

/* Make the lane's header a version-3 one (fresh salt; in X25519 mode a fresh ephemeral key),
 * encode it, and derive the object's keys from it. */
static int lane_crypt_setup(lane *l, const wv_obj_crypto *c, wv_err *err)
{
    uint8_t salt[WV_CRYPT_SALT_SIZE], material[32], eph[32], secret[32];
    int rc = wv_crypt_random(salt, sizeof(salt), err);
    if (rc < 0)
        return rc;
    if (c->mode == WV_OBJ_KEYMODE_SYMMETRIC) {
        memcpy(material, c->data_key, 32);
        wv_obj_header_set_crypt(&l->hdr, c->mode, c->key_id, salt, NULL);
    } else if (c->mode == WV_OBJ_KEYMODE_X25519) {
        rc = wv_crypt_x25519_seal(c->public_key, eph, secret, err);
        if (rc == 0)
            rc = wv_crypt_x25519_material(secret, eph, c->public_key, material, err);
        OPENSSL_cleanse(secret, sizeof(secret));
        if (rc < 0)
            return rc;
        wv_obj_header_set_crypt(&l->hdr, c->mode, c->key_id, salt, eph);
    } else {
        return wv_err_set(err, WV_EINTERNAL, "unknown encryption key mode %u", c->mode);
    }
    if ((rc = wv_obj_header_encode(&l->hdr, l->hdrbuf, err)) == 0)
        rc = derive_keys(material, &l->hdr, l->hdrbuf, wv_obj_header_length(&l->hdr), l->obj_key,
                         l->meta_key, err);
    OPENSSL_cleanse(material, sizeof(material));
    memcpy(l->digest_key, c->digest_key, 32);
    l->crypt = 1;
    return rc;
}

/* The lane's header, keys and stages; state (w->state/fail) records a failure. */
static void lane_setup(wv_objwriter *w, lane *l, const wv_obj_opts *opts, uint8_t compression)
{
    l->w = w;
    wv_obj_header_init(&l->hdr, opts->kind, compression);
    if (opts->name && w->state == 0 && wv_obj_header_bind(&l->hdr, opts->name, &w->fail) < 0)
        w->state = w->fail.code; /* a name too long: every write and the finish fail with it */
    if (l->crypto && w->state == 0 && lane_crypt_setup(l, l->crypto, &w->fail) < 0)
        w->state = w->fail.code;
    wv_obj_info_init(&l->info);
    l->info.version = l->hdr.version;
    l->info.header_size = (uint32_t)wv_obj_header_length(&l->hdr);
    l->info.cipher = l->hdr.cipher;
    framer_filter *fr = wv_xcalloc(1, sizeof(*fr));
    fr->base.ops = &framer_ops;
    fr->l = l;
    l->head = &fr->base;
    if (l->crypt)
        l->head = wv_crypt_seal_new(l->head, l->obj_key);
}

wv_objwriter *wv_objwriter_new(wv_sink *const *sinks, int nsinks, const wv_obj_opts *opts)
{
    wv_obj_opts def = {.compress = WV_COMPRESS_LZ4, .level = 1, .kind = WV_OBJ_KIND_GENERIC};
    if (!opts)
        opts = &def;
    wv_objwriter *w = wv_xcalloc(1, sizeof(*w));
    if (nsinks < 0)
        nsinks = 0;
    w->sinks = wv_xcalloc((size_t)nsinks + 1, sizeof(*w->sinks));
    w->errs = wv_xcalloc((size_t)nsinks + 1, sizeof(*w->errs));
    w->lane_of = wv_xcalloc((size_t)nsinks + 1, sizeof(*w->lane_of));
    w->lanes = wv_xcalloc((size_t)nsinks + 1, sizeof(*w->lanes));
    for (int i = 0; i < nsinks; i++)
        w->sinks[i] = sinks[i];
    w->nsinks = w->nok = nsinks;
    w->first_failed = -1;

    /* one lane per distinct encryption (pointer identity: one per opened repository) */
    for (int i = 0; i < (nsinks > 0 ? nsinks : 1); i++) {
        const wv_obj_crypto *c =
            opts->sink_crypto && i < nsinks ? opts->sink_crypto[i] : opts->crypto;
        int k = 0;
        while (k < w->nlanes && w->lanes[k].crypto != c)
            k++;
        if (k == w->nlanes) {
            w->lanes[k].crypto = c;
            w->lanes[k].sink = wv_xcalloc((size_t)nsinks + 1, sizeof(int));
            w->nlanes++;
        }
        if (i < nsinks) {
            w->lanes[k].sink[w->lanes[k].nsink++] = i;
            w->lane_of[i] = k;
        }
    }

    uint8_t compression =
        opts->compress == WV_COMPRESS_LZ4 ? WV_OBJ_COMPRESS_LZ4 : WV_OBJ_COMPRESS_NONE;
    for (int k = 0; k < w->nlanes; k++)
        lane_setup(w, &w->lanes[k], opts, compression);
    wv_obj_info_init(&w->info); /* format and sizes are each lane's (framer_finish) */
    w->info.compression = compression;
    w->info.digest = w->lanes[0].hdr.digest;
    w->info.kind = opts->kind;

    wv_filter *next;
    if (w->nlanes == 1) {
        next = w->lanes[0].head;
    } else {
        fan_filter *fan = wv_xcalloc(1, sizeof(*fan));
        fan->base.ops = &fan_ops;
        fan->w = w;
        next = &fan->base;
    }
    if (compression == WV_OBJ_COMPRESS_LZ4)
        next = wv_lz4_compress_new(next, opts->level > 0 ? opts->level : 1);
    if (!opts->hash_thread)
        w->head = wv_sha256_filter_new(next);
    else if (opts->hash_lag)
        w->head = wv_sha256_filter_new_lagged(next, opts->observe, opts->observe_arg);
    else
        w->head = wv_sha256_filter_new_threaded(next, opts->observe, opts->observe_arg);
    return w;
}

static int writer_failed(wv_objwriter *w, int rc, wv_err *err)
{
    w->state = rc;
    if (err)
        w->fail = *err;
    else
        wv_err_set(&w->fail, rc, "object write failed");
    return rc;
}

static int writer_unusable(wv_objwriter *w, wv_err *err)
{
    if (w->state < 0) {
        if (err)
            *err = w->fail;
        return w->state;
    }
    return wv_err_set(err, WV_EINTERNAL, "object writer used after finish");
}

int wv_objwriter_write(wv_objwriter *w, const void *buf, size_t len, wv_err *err)
{
    if (w->state != 0)
        return writer_unusable(w, err);
    w->info.plain_size += len;
    int rc = wv_filter_write(w->head, buf, len, err);
    return rc < 0 ? writer_failed(w, rc, err) : 0;
}

void wv_objwriter_wait(wv_objwriter *w)
{
    wv_sha256_filter_wait(w->head);
}

void wv_objwriter_set_walinfo(wv_objwriter *w, int64_t first_commit_us, int64_t last_commit_us,
                              uint32_t commit_count, uint32_t restore_point_count)
{
    w->info.first_commit_us = first_commit_us;
    w->info.last_commit_us = last_commit_us;
    w->info.commit_count = commit_count;
    w->info.restore_point_count = restore_point_count;
}

int wv_objwriter_finish(wv_objwriter *w, wv_obj_info *info, wv_err *err)
{
    if (w->state != 0)
        return writer_unusable(w, err);
    int rc = wv_filter_finish(w->head, err);
    if (rc < 0)
        return writer_failed(w, rc, err);
    w->state = 1;
    if (info)
        *info = w->lanes[0].info;
    return 0;
}

int wv_objwriter_sink_info(const wv_objwriter *w, int i, wv_obj_info *info)
{
    if (w->state != 1 || i < 0 || i >= w->nsinks)
        return WV_EINTERNAL;
    *info = w->lanes[w->lane_of[i]].info;
    return 0;
}

const wv_err *wv_objwriter_sink_error(const wv_objwriter *w, int i)
{
    if (i < 0 || i >= w->nsinks || w->errs[i].code == 0)
        return NULL;
    return &w->errs[i];
}

int wv_objwriter_sinks_ok(const wv_objwriter *w)
{
    return w->nok;
}

void wv_objwriter_free(wv_objwriter *w)
{
    if (!w)
        return;
    /* sha256 -> [lz4] -> [fan], then each lane's [seal] -> framer; never the sinks */
    if (w->nlanes > 1) {
        wv_filter_chain_free(w->head); /* ends with the fan */
        for (int k = 0; k < w->nlanes; k++)
            wv_filter_chain_free(w->lanes[k].head);
    } else {
        wv_filter_chain_free(w->head);
    }
    for (int k = 0; k < w->nlanes; k++) {
        lane *l = &w->lanes[k];
        OPENSSL_cleanse(l->obj_key, sizeof(l->obj_key));
        OPENSSL_cleanse(l->meta_key, sizeof(l->meta_key));
        OPENSSL_cleanse(l->digest_key, sizeof(l->digest_key));
        free(l->sink);
    }
    free(w->lanes);
    free(w->lane_of);
    free(w->sinks);
    free(w->errs);
    free(w);
}

/* --- reader ---------------------------------------------------------------------------------- */

#define READ_CAP (WV_FILTER_CHUNK + WV_OBJ_SUFFIX_MAX)

static int corrupt_hint(wv_err *err, int rc)
{
    if (rc == WV_ECORRUPT && err && err->hint[0] == '\0')
        wv_err_hint(err, "fetch it from another repository, or archive it again if the original "
                         "still exists");
    return rc;
}

/* Fill buf up to cap bytes or the end of the source. */
static int fill(wv_source *src, uint8_t *buf, size_t cap, size_t *have, int *eof, wv_err *err)
{
    while (*have < cap && !*eof) {
        size_t got = 0;
        int rc = wv_source_read(src, buf + *have, cap - *have, &got, err);
        if (rc < 0)
            return rc;
        if (got == 0)
            *eof = 1;
        *have += got;
    }
    return 0;
}

/* The last stage before dest: counts the plain bytes and refuses any past the limit, so that
 * nothing beyond it is written (however much the decompressor could produce). At the end it
 * checks the plain size and the digest against the trailer before dest finishes: a damaged object
 * is reported as damaged, not as whatever dest's own checks (a WAL segment's length, say) make of
 * the damage, and dest never finishes on content that does not verify. */
typedef struct limit_filter {
    wv_filter base;
    uint64_t count, max;
    int limited;
    const wv_obj_info *expect; /* the trailer, set once decoded */
    const wv_filter *sha;      /* the digest of what came through, final when finish reaches us */
} limit_filter;

static int limit_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    limit_filter *l = (limit_filter *)f;
    if (l->limited && (len > l->max || l->count > l->max - len))
        return wv_err_set(err, WV_ECORRUPT,
                          "the content exceeds %" PRIu64
                          " bytes, the most this object may hold: decompression stopped (the "
                          "stored content is corrupt, or larger than its name allows)",
                          l->max);
    l->count += len;
    return wv_filter_write(f->next, buf, len, err);
}

static int limit_finish(wv_filter *f, wv_err *err)
{
    limit_filter *l = (limit_filter *)f;
    if (!l->expect || !l->sha)
        return wv_err_set(err, WV_EINTERNAL, "object content finished before its trailer");
    if (l->count != l->expect->plain_size)
        return wv_err_set(err, WV_ECORRUPT,
                          "size mismatch: trailer says %" PRIu64
                          " plain bytes, content has %" PRIu64 ": stored content is corrupt",
                          l->expect->plain_size, l->count);
    uint8_t digest[32];
    wv_sha256_filter_digest(l->sha, digest);
    if (memcmp(digest, l->expect->sha256, sizeof(digest)) != 0)
        return wv_err_set(err, WV_ECORRUPT, "checksum mismatch: stored content is corrupt");
    return wv_filter_finish(f->next, err);
}

static void limit_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops limit_ops = {
    .name = "size limit",
    .write = limit_write,
    .finish = limit_finish,
    .free = limit_free,
};

int wv_object_read(wv_source *src, wv_filter *dest, wv_obj_info *info, wv_err *err)
{
    return wv_object_read_opts(src, dest, NULL, info, err);
}

int wv_object_read_ext(wv_source *src, wv_filter *dest, unsigned flags, wv_obj_info *info,
                       wv_err *err)
{
    wv_objread_opts o = {.flags = flags};
    return wv_object_read_opts(src, dest, &o, info, err);
}

int wv_object_read_opts(wv_source *src, wv_filter *dest, const wv_objread_opts *o,
                        wv_obj_info *info, wv_err *err)
{
    static const wv_objread_opts none = {0};
    uint8_t *buf = wv_xmalloc(READ_CAP);
    wv_filter *sha = NULL, *lz4 = NULL, *dec = NULL, *first;
    uint8_t obj_key[32], meta_key[32];
    size_t tail = WV_OBJ_TRAILER_SIZE;
    limit_filter *count = NULL;
    unsigned flags;
    size_t have = 0;
    uint64_t payload = 0;
    int eof = 0, rc;
    wv_obj_header hdr;
    wv_obj_info ti;

    if (!o)
        o = &none;
    flags = o->flags;
    if (o->unbound)
        *o->unbound = 0;
    if ((rc = fill(src, buf, WV_OBJ_HEADER_SIZE, &have, &eof, err)) < 0)
        goto out;
    if (have == WV_OBJ_HEADER_SIZE && wv_obj_header_declared_length(buf) > have &&
        (rc = fill(src, buf, wv_obj_header_declared_length(buf), &have, &eof, err)) < 0)
        goto out;
    if (have < WV_OBJ_HEADER_SIZE) {
        rc = wv_err_set(err, WV_ECORRUPT,
                        "object truncated: %zu bytes, shorter than its %d-byte header", have,
                        WV_OBJ_HEADER_SIZE);
        goto out;
    }
    if ((rc = wv_obj_header_decode(buf, have, &hdr, err)) < 0)
        goto out;
    if ((rc = wv_obj_check_binding(&hdr, o->key, o->unbound, err)) < 0)
        goto out;
    if (hdr.cipher != WV_OBJ_CIPHER_NONE) {
        if ((rc = wv_obj_crypto_keys(o->crypto, &hdr, buf, wv_obj_header_length(&hdr), obj_key,
                                     meta_key, err)) < 0)
            goto out;
        tail = WV_OBJ_SUFFIX_MAX;
    }
    count = wv_xcalloc(1, sizeof(*count));
    count->base.ops = &limit_ops;
    count->base.next = dest;
    count->max = o->max_plain;
    count->limited = o->max_plain > 0 || (flags & WV_OBJREAD_LIMIT);
    sha = (flags & WV_OBJREAD_HASH_THREAD) ? wv_sha256_filter_new_threaded(&count->base, NULL, NULL)
                                           : wv_sha256_filter_new(&count->base);
    first = sha;
    if (hdr.compression == WV_OBJ_COMPRESS_LZ4)
        first = lz4 = wv_lz4_decompress_new(sha);
    if (hdr.cipher != WV_OBJ_CIPHER_NONE)
        first = dec = wv_crypt_open_new(first, obj_key, o->key);
    have = 0;

    for (;;) {
        if ((rc = fill(src, buf, READ_CAP, &have, &eof, err)) < 0)
            goto out;
        if (have > tail) {
            size_t n = have - tail;
            if ((rc = wv_filter_write(first, buf, n, err)) < 0)
                goto out;
            payload += n;
            memmove(buf, buf + n, tail);
            have = tail;
        }
        if (eof)
            break;
    }
    if (have < tail) {
        rc = wv_err_set(err, WV_ECORRUPT,
                        "object truncated: %" PRIu64 " bytes, too short for header and trailer",
                        (uint64_t)WV_OBJ_HEADER_SIZE + have);
        goto out;
    }
    if ((rc = wv_obj_trailer_decode(buf, have, &ti, err)) < 0)
        goto out;
    if (ti.version != hdr.version || ti.compression != hdr.compression || ti.cipher != hdr.cipher ||
        ti.digest != hdr.digest || ti.kind != hdr.kind) {
        rc = wv_err_set(err, WV_ECORRUPT, "object header and trailer disagree");
        goto out;
    }
    if (dec) {
        /* the metadata block: counted in the payload size, opened with the object's meta key */
        wv_obj_header mh;
        if ((rc = wv_obj_meta_public(buf, have, o->key ? o->key : hdr.name, &mh, err)) < 0)
            goto out;
        if (mh.key_mode != hdr.key_mode || mh.key_id != hdr.key_id ||
            mh.compression != hdr.compression || mh.kind != hdr.kind ||
            memcmp(mh.salt, hdr.salt, sizeof(mh.salt)) != 0 ||
            memcmp(mh.eph_pub, hdr.eph_pub, sizeof(mh.eph_pub)) != 0) {
            rc = wv_err_set(err, WV_ECORRUPT, "object header and metadata block disagree");
            goto out;
        }
        if ((rc = wv_obj_meta_open(buf, have, meta_key, &ti, err)) < 0)
            goto out;
        payload += WV_OBJ_META_SIZE;
    }
    if (ti.payload_size != payload) {
        rc = wv_err_set(err, WV_ECORRUPT,
                        "object payload size mismatch: trailer says %" PRIu64
                        " bytes, found %" PRIu64 ": the object is truncated or corrupt",
                        ti.payload_size, payload);
        goto out;
    }
    count->expect = &ti;
    count->sha = sha;
    if ((rc = wv_filter_finish(first, err)) < 0) /* checks size and digest before dest finishes */
        goto out;
    ti.header_size = (uint32_t)wv_obj_header_length(&hdr);
    if (info)
        *info = ti;
    rc = 0;
out:
    /* Free our stages one by one: dest belongs to the caller. */
    if (dec)
        dec->ops->free(dec);
    if (lz4)
        lz4->ops->free(lz4);
    if (sha)
        sha->ops->free(sha);
    free(count);
    free(buf);
    OPENSSL_cleanse(obj_key, sizeof(obj_key));
    OPENSSL_cleanse(meta_key, sizeof(meta_key));
    return corrupt_hint(err, rc);
}

int wv_object_info_decode(const uint8_t *trailer, size_t len, wv_obj_info *info, wv_err *err)
{
    return corrupt_hint(err, wv_obj_trailer_decode(trailer, len, info, err));
}

int wv_object_info_open(const uint8_t *suffix, size_t len, const char *key, const wv_obj_crypto *c,
                        wv_obj_info *info, wv_err *err)
{
    uint8_t hdr[WV_OBJ_HEADER_MAX], obj_key[32], meta_key[32];
    wv_obj_header h;
    int rc = wv_obj_trailer_decode(suffix, len, info, err);
    if (rc < 0 || !info->sealed)
        return corrupt_hint(err, rc);
    if ((rc = wv_obj_meta_public(suffix, len, key, &h, err)) < 0)
        return corrupt_hint(err, rc);
    if (h.compression != info->compression || h.kind != info->kind)
        return corrupt_hint(
            err, wv_err_set(err, WV_ECORRUPT, "object trailer and metadata block disagree"));
    if ((rc = wv_obj_header_encode(&h, hdr, err)) == 0 &&
        (rc = wv_obj_crypto_keys(c, &h, hdr, wv_obj_header_length(&h), obj_key, meta_key, err)) ==
            0)
        rc = wv_obj_meta_open(suffix, len, meta_key, info, err);
    if (rc == 0)
        info->header_size = (uint32_t)wv_obj_header_length(&h);
    OPENSSL_cleanse(obj_key, sizeof(obj_key));
    OPENSSL_cleanse(meta_key, sizeof(meta_key));
    return corrupt_hint(err, rc);
}

int wv_obj_info_same_content(const wv_obj_info *stored, const wv_obj_info *ours)
{
    int se = stored->cipher != WV_OBJ_CIPHER_NONE, oe = ours->cipher != WV_OBJ_CIPHER_NONE;
    if (se != oe)
        return 0;
    if (se)
        return CRYPTO_memcmp(stored->keyed_digest, ours->keyed_digest, 32) == 0;
    return memcmp(stored->sha256, ours->sha256, 32) == 0 && stored->plain_size == ours->plain_size;
}
