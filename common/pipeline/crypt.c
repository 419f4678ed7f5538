/*
 * crypt.c - the chunked AES-256-GCM stream (seal and open stages), HKDF, one-shot sealing and
 * X25519 (crypt.h describes the construction).
 *
 * One EVP_CIPHER_CTX per stage, keyed once; each chunk only sets its nonce, so the per-chunk cost
 * is the GCM itself. Buffers are allocated with the stage, so memory is bounded by one chunk.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "pipeline/crypt.h"

static const char object_key_label[] = "walvault object key v1";

uint64_t wv_crypt_sealed_size(uint64_t plain)
{
    uint64_t chunks = plain == 0 ? 1 : (plain + WV_CRYPT_CHUNK - 1) / WV_CRYPT_CHUNK;
    return plain + chunks * WV_CRYPT_TAG_SIZE;
}

int wv_crypt_random(uint8_t *out, size_t len, wv_err *err)
{
    if (len > 0 && RAND_bytes(out, (int)len) != 1)
        return wv_err_set(err, WV_EINTERNAL, "could not get %zu random bytes from OpenSSL", len);
    return 0;
}

int wv_crypt_hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                  const uint8_t *info, size_t infolen, uint8_t *out, size_t outlen, wv_err *err)
{
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    size_t n = outlen;
    int ok = pctx && EVP_PKEY_derive_init(pctx) == 1 &&
             EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) == 1 &&
             EVP_PKEY_CTX_set1_hkdf_key(pctx, ikm, (int)ikmlen) == 1 &&
             (saltlen == 0 || EVP_PKEY_CTX_set1_hkdf_salt(pctx, salt, (int)saltlen) == 1) &&
             (infolen == 0 || EVP_PKEY_CTX_add1_hkdf_info(pctx, info, (int)infolen) == 1) &&
             EVP_PKEY_derive(pctx, out, &n) == 1 && n == outlen;
    EVP_PKEY_CTX_free(pctx);
    if (!ok)
        return wv_err_set(err, WV_EINTERNAL, "could not derive a key (HKDF-SHA256 in OpenSSL)");
    return 0;
}

/* HKDF with info = label (22 bytes) || SHA-256(aad). */
static int header_key(const char *label, const uint8_t material[WV_CRYPT_KEY_SIZE],
                      const uint8_t salt[WV_CRYPT_SALT_SIZE], const uint8_t *aad, size_t aadlen,
                      uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err)
{
    uint8_t info[64 + 32];
    size_t ll = strlen(label);
    unsigned int dlen = 0;
    memcpy(info, label, ll);
    if (EVP_Digest(aad, aadlen, info + ll, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        return wv_err_set(err, WV_EINTERNAL, "could not hash an object header (SHA-256)");
    return wv_crypt_hkdf(material, WV_CRYPT_KEY_SIZE, salt, WV_CRYPT_SALT_SIZE, info, ll + 32, out,
                         WV_CRYPT_KEY_SIZE, err);
}

int wv_crypt_object_key(const uint8_t material[WV_CRYPT_KEY_SIZE],
                        const uint8_t salt[WV_CRYPT_SALT_SIZE], const uint8_t *aad, size_t aadlen,
                        uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err)
{
    return header_key(object_key_label, material, salt, aad, aadlen, out, err);
}

int wv_crypt_meta_key(const uint8_t material[WV_CRYPT_KEY_SIZE],
                      const uint8_t salt[WV_CRYPT_SALT_SIZE], const uint8_t *aad, size_t aadlen,
                      uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err)
{
    return header_key("walvault object meta v1", material, salt, aad, aadlen, out, err);
}

int wv_crypt_keyed_digest(const uint8_t digest_key[WV_CRYPT_KEY_SIZE], const uint8_t sha256[32],
                          uint8_t out[32], wv_err *err)
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), digest_key, WV_CRYPT_KEY_SIZE, sha256, 32, out, &n) || n != 32)
        return wv_err_set(err, WV_EINTERNAL, "could not compute HMAC-SHA256 in OpenSSL");
    return 0;
}

int wv_crypt_x25519_material(const uint8_t secret[WV_CRYPT_X25519_SIZE],
                             const uint8_t eph_pub[WV_CRYPT_X25519_SIZE],
                             const uint8_t recipient_pub[WV_CRYPT_X25519_SIZE],
                             uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err)
{
    static const char label[] = "walvault x25519 v1";
    uint8_t salt[2 * WV_CRYPT_X25519_SIZE];
    memcpy(salt, eph_pub, WV_CRYPT_X25519_SIZE);
    memcpy(salt + WV_CRYPT_X25519_SIZE, recipient_pub, WV_CRYPT_X25519_SIZE);
    return wv_crypt_hkdf(secret, WV_CRYPT_X25519_SIZE, salt, sizeof(salt), (const uint8_t *)label,
                         sizeof(label) - 1, out, WV_CRYPT_KEY_SIZE, err);
}

static void chunk_nonce(uint64_t counter, int last, uint8_t nonce[WV_CRYPT_NONCE_SIZE])
{
    memset(nonce, 0, WV_CRYPT_NONCE_SIZE);
    for (int i = 0; i < 8; i++)
        nonce[10 - i] = (uint8_t)(counter >> (8 * i));
    nonce[11] = last ? 1 : 0;
}

static EVP_CIPHER_CTX *gcm_ctx(const uint8_t key[WV_CRYPT_KEY_SIZE], int enc)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL, enc) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* --- seal ------------------------------------------------------------------------------------ */

#define SEAL_BATCH 4

typedef struct seal_filter {
    wv_filter base;
    EVP_CIPHER_CTX *ctx;
    uint64_t counter;
    size_t len;
    int failed_init;
    uint8_t in[WV_CRYPT_CHUNK];
    /* sealed chunks go downstream SEAL_BATCH at a time (as lz4 pushes its pieces: one write of
     * the storage driver per 256 KiB, not per 64 KiB chunk) */
    size_t outlen;
    uint8_t out[SEAL_BATCH * WV_CRYPT_SEALED_CHUNK];
} seal_filter;

static int seal_chunk(seal_filter *s, int last, wv_err *err)
{
    uint8_t nonce[WV_CRYPT_NONCE_SIZE];
    int n = 0, fin = 0;
    if (s->failed_init)
        return wv_err_set(err, WV_EINTERNAL, "could not set up AES-256-GCM in OpenSSL");
    chunk_nonce(s->counter, last, nonce);
    uint8_t *out = s->out + s->outlen;
    if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(s->ctx, out, &n, s->in, (int)s->len) != 1 ||
        EVP_EncryptFinal_ex(s->ctx, out + n, &fin) != 1 || (size_t)(n + fin) != s->len ||
        EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, WV_CRYPT_TAG_SIZE, out + s->len) != 1)
        return wv_err_set(err, WV_EINTERNAL, "AES-256-GCM failed in OpenSSL (chunk %llu)",
                          (unsigned long long)s->counter);
    s->outlen += s->len + WV_CRYPT_TAG_SIZE;
    s->counter++;
    s->len = 0;
    if (!last && s->outlen + WV_CRYPT_SEALED_CHUNK <= sizeof(s->out))
        return 0;
    size_t outlen = s->outlen;
    s->outlen = 0;
    return s->base.next ? wv_filter_write(s->base.next, s->out, outlen, err) : 0;
}

static int seal_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    seal_filter *s = (seal_filter *)f;
    while (len > 0) {
        int rc;
        /* A full chunk is sealed only once more content follows it: the last one is then known. */
        if (s->len == WV_CRYPT_CHUNK && (rc = seal_chunk(s, 0, err)) < 0)
            return rc;
        size_t n = WV_CRYPT_CHUNK - s->len;
        if (n > len)
            n = len;
        memcpy(s->in + s->len, buf, n);
        s->len += n;
        buf += n;
        len -= n;
    }
    return 0;
}

static int seal_finish(wv_filter *f, wv_err *err)
{
    int rc = seal_chunk((seal_filter *)f, 1, err);
    if (rc < 0)
        return rc;
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void seal_free(wv_filter *f)
{
    seal_filter *s = (seal_filter *)f;
    EVP_CIPHER_CTX_free(s->ctx);
    OPENSSL_cleanse(s->in, sizeof(s->in));
    free(s);
}

static const wv_filter_ops seal_ops = {
    .name = "encrypt",
    .write = seal_write,
    .finish = seal_finish,
    .free = seal_free,
};

wv_filter *wv_crypt_seal_new(wv_filter *next, const uint8_t key[WV_CRYPT_KEY_SIZE])
{
    seal_filter *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &seal_ops;
    s->base.next = next;
    s->ctx = gcm_ctx(key, 1);
    s->failed_init = s->ctx == NULL;
    return &s->base;
}

/* --- open ------------------------------------------------------------------------------------ */

typedef struct open_filter {
    wv_filter base;
    EVP_CIPHER_CTX *ctx;
    uint64_t counter;
    size_t len;
    int failed_init;
    int done;
    char *what;
    uint8_t in[WV_CRYPT_SEALED_CHUNK];
    uint8_t out[WV_CRYPT_CHUNK];
} open_filter;

static int open_fail(open_filter *o, wv_err *err, const char *why)
{
    wv_err_set(err, WV_ECORRUPT, "%s%s%sdoes not authenticate at chunk %llu (%s)",
               o->what ? "\"" : "", o->what ? o->what : "", o->what ? "\" " : "",
               (unsigned long long)o->counter, why);
    /* the message names the object itself: the caller's context must not put it in front again */
    wv_err_names(err, NULL, o->what);
    return wv_err_hint(err, "the object was changed, truncated, extended or moved, or is read with "
                            "another key: restore it from another repository");
}

static int open_chunk(open_filter *o, int last, wv_err *err)
{
    uint8_t nonce[WV_CRYPT_NONCE_SIZE];
    int n = 0, fin = 0;
    if (o->failed_init)
        return wv_err_set(err, WV_EINTERNAL, "could not set up AES-256-GCM in OpenSSL");
    if (o->len < WV_CRYPT_TAG_SIZE)
        return open_fail(o, err, "the stream ends inside a chunk");
    if (last && o->len == WV_CRYPT_TAG_SIZE && o->counter > 0)
        return open_fail(o, err, "an empty chunk after others");
    size_t clen = o->len - WV_CRYPT_TAG_SIZE;
    chunk_nonce(o->counter, last, nonce);
    if (EVP_DecryptInit_ex(o->ctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(o->ctx, o->out, &n, o->in, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(o->ctx, EVP_CTRL_GCM_SET_TAG, WV_CRYPT_TAG_SIZE, o->in + clen) != 1)
        return wv_err_set(err, WV_EINTERNAL, "AES-256-GCM failed in OpenSSL (chunk %llu)",
                          (unsigned long long)o->counter);
    if (EVP_DecryptFinal_ex(o->ctx, o->out + n, &fin) != 1 || (size_t)(n + fin) != clen) {
        OPENSSL_cleanse(o->out, clen);
        return open_fail(o, err, last ? "the tag of the last chunk is wrong" : "the tag is wrong");
    }
    o->counter++;
    o->len = 0;
    return o->base.next ? wv_filter_write(o->base.next, o->out, clen, err) : 0;
}

static int open_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    open_filter *o = (open_filter *)f;
    while (len > 0) {
        int rc;
        if (o->len == WV_CRYPT_SEALED_CHUNK && (rc = open_chunk(o, 0, err)) < 0)
            return rc;
        size_t n = WV_CRYPT_SEALED_CHUNK - o->len;
        if (n > len)
            n = len;
        memcpy(o->in + o->len, buf, n);
        o->len += n;
        buf += n;
        len -= n;
    }
    return 0;
}

static int open_finish(wv_filter *f, wv_err *err)
{
    open_filter *o = (open_filter *)f;
    int rc = open_chunk(o, 1, err);
    if (rc < 0)
        return rc;
    o->done = 1;
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void open_free(wv_filter *f)
{
    open_filter *o = (open_filter *)f;
    EVP_CIPHER_CTX_free(o->ctx);
    OPENSSL_cleanse(o->out, sizeof(o->out));
    free(o->what);
    free(o);
}

static const wv_filter_ops open_ops = {
    .name = "decrypt",
    .write = open_write,
    .finish = open_finish,
    .free = open_free,
};

wv_filter *wv_crypt_open_new(wv_filter *next, const uint8_t key[WV_CRYPT_KEY_SIZE],
                             const char *what)
{
    open_filter *o = wv_xcalloc(1, sizeof(*o));
    o->base.ops = &open_ops;
    o->base.next = next;
    o->ctx = gcm_ctx(key, 0);
    o->failed_init = o->ctx == NULL;
    o->what = what ? wv_xstrdup(what) : NULL;
    return &o->base;
}

uint64_t wv_crypt_open_chunks(const wv_filter *f)
{
    return ((const open_filter *)f)->counter;
}

/* --- one short message ----------------------------------------------------------------------- */

int wv_crypt_seal_once(const uint8_t key[WV_CRYPT_KEY_SIZE], const uint8_t *nonce,
                       const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                       uint8_t *out, wv_err *err)
{
    int rc;
    if (nonce)
        memcpy(out, nonce, WV_CRYPT_NONCE_SIZE);
    else if ((rc = wv_crypt_random(out, WV_CRYPT_NONCE_SIZE, err)) < 0)
        return rc;
    EVP_CIPHER_CTX *ctx = gcm_ctx(key, 1);
    int n = 0, fin = 0;
    int ok = ctx && EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, out) == 1 &&
             (aadlen == 0 || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1) &&
             EVP_EncryptUpdate(ctx, out + WV_CRYPT_NONCE_SIZE, &n, in, (int)inlen) == 1 &&
             EVP_EncryptFinal_ex(ctx, out + WV_CRYPT_NONCE_SIZE + n, &fin) == 1 &&
             (size_t)(n + fin) == inlen &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, WV_CRYPT_TAG_SIZE,
                                 out + WV_CRYPT_NONCE_SIZE + inlen) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return wv_err_set(err, WV_EINTERNAL, "AES-256-GCM failed in OpenSSL");
    return 0;
}

int wv_crypt_open_once(const uint8_t key[WV_CRYPT_KEY_SIZE], const uint8_t *aad, size_t aadlen,
                       const uint8_t *in, size_t inlen, uint8_t *out, wv_err *err)
{
    if (inlen < WV_CRYPT_ONCE_OVERHEAD)
        return wv_err_set(err, WV_EKEY, "a sealed message of %zu bytes is too short", inlen);
    size_t clen = inlen - WV_CRYPT_ONCE_OVERHEAD;
    const uint8_t *ct = in + WV_CRYPT_NONCE_SIZE;
    EVP_CIPHER_CTX *ctx = gcm_ctx(key, 0);
    int n = 0, fin = 0;
    if (!ctx || EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, in) != 1 ||
        (aadlen > 0 && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1) ||
        EVP_DecryptUpdate(ctx, out, &n, ct, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, WV_CRYPT_TAG_SIZE, (void *)(ct + clen)) !=
            1) {
        EVP_CIPHER_CTX_free(ctx);
        return wv_err_set(err, WV_EINTERNAL, "AES-256-GCM failed in OpenSSL");
    }
    int ok = EVP_DecryptFinal_ex(ctx, out + n, &fin) == 1 && (size_t)(n + fin) == clen;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        OPENSSL_cleanse(out, clen);
        return wv_err_set(err, WV_EKEY, "a sealed message does not authenticate");
    }
    return 0;
}

/* --- X25519 ---------------------------------------------------------------------------------- */

static int x25519_derive(EVP_PKEY *mine, const uint8_t peer_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t secret[WV_CRYPT_X25519_SIZE], wv_err *err)
{
    static const uint8_t zero[WV_CRYPT_X25519_SIZE];
    EVP_PKEY *peer =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_pub, WV_CRYPT_X25519_SIZE);
    EVP_PKEY_CTX *pctx = peer ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
    size_t n = WV_CRYPT_X25519_SIZE;
    int ok = pctx && EVP_PKEY_derive_init(pctx) == 1 && EVP_PKEY_derive_set_peer(pctx, peer) == 1 &&
             EVP_PKEY_derive(pctx, secret, &n) == 1 && n == WV_CRYPT_X25519_SIZE;
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_free(peer);
    if (!ok)
        return wv_err_set(err, WV_EKEY, "X25519 key agreement failed (a malformed public key)");
    if (CRYPTO_memcmp(secret, zero, WV_CRYPT_X25519_SIZE) == 0)
        return wv_err_set(err, WV_EKEY, "X25519 key agreement gave a degenerate secret");
    return 0;
}

int wv_crypt_x25519_seal(const uint8_t recipient_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t eph_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t secret[WV_CRYPT_X25519_SIZE], wv_err *err)
{
    EVP_PKEY *eph = NULL;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    size_t n = WV_CRYPT_X25519_SIZE;
    int ok = kctx && EVP_PKEY_keygen_init(kctx) == 1 && EVP_PKEY_keygen(kctx, &eph) == 1 &&
             EVP_PKEY_get_raw_public_key(eph, eph_pub, &n) == 1 && n == WV_CRYPT_X25519_SIZE;
    EVP_PKEY_CTX_free(kctx);
    int rc = ok ? x25519_derive(eph, recipient_pub, secret, err)
                : wv_err_set(err, WV_EINTERNAL, "could not make an X25519 key pair in OpenSSL");
    EVP_PKEY_free(eph);
    return rc;
}

int wv_crypt_x25519_open(const uint8_t priv[WV_CRYPT_X25519_SIZE],
                         const uint8_t eph_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t secret[WV_CRYPT_X25519_SIZE], wv_err *err)
{
    EVP_PKEY *mine =
        EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, WV_CRYPT_X25519_SIZE);
    if (!mine)
        return wv_err_set(err, WV_EKEY, "not an X25519 private key");
    int rc = x25519_derive(mine, eph_pub, secret, err);
    EVP_PKEY_free(mine);
    return rc;
}

int wv_crypt_x25519_public(const uint8_t priv[WV_CRYPT_X25519_SIZE],
                           uint8_t pub[WV_CRYPT_X25519_SIZE], wv_err *err)
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, WV_CRYPT_X25519_SIZE);
    size_t n = WV_CRYPT_X25519_SIZE;
    int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == WV_CRYPT_X25519_SIZE;
    EVP_PKEY_free(k);
    if (!ok)
        return wv_err_set(err, WV_EKEY, "not an X25519 private key");
    return 0;
}
