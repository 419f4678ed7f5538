/*
 * filter_sha256.c - a pass-through observer computing the SHA-256 of everything that flows through
 * it (OpenSSL EVP, one update per piece). With next == NULL it is a terminal that only hashes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "filter.h"

typedef struct sha256_filter {
    wv_filter base;
    EVP_MD_CTX *ctx;
    int done;
    uint8_t digest[32];
} sha256_filter;

static int sha256_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    sha256_filter *s = (sha256_filter *)f;
    while (len > 0) {
        size_t n = len < WV_FILTER_CHUNK ? len : WV_FILTER_CHUNK;
        if (EVP_DigestUpdate(s->ctx, buf, n) != 1)
            return wv_err_set(err, WV_EINTERNAL, "sha256: could not update digest");
        if (f->next) {
            int rc = wv_filter_write(f->next, buf, n, err);
            if (rc < 0)
                return rc;
        }
        buf += n;
        len -= n;
    }
    return 0;
}

static int sha256_finish(wv_filter *f, wv_err *err)
{
    sha256_filter *s = (sha256_filter *)f;
    unsigned int n = 0;
    if (!s->done) {
        if (EVP_DigestFinal_ex(s->ctx, s->digest, &n) != 1 || n != sizeof(s->digest))
            return wv_err_set(err, WV_EINTERNAL, "sha256: could not finish digest");
        s->done = 1;
    }
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void sha256_free(wv_filter *f)
{
    sha256_filter *s = (sha256_filter *)f;
    EVP_MD_CTX_free(s->ctx);
    free(s);
}

static const wv_filter_ops sha256_ops = {
    .name = "sha256",
    .write = sha256_write,
    .finish = sha256_finish,
    .free = sha256_free,
};

wv_filter *wv_sha256_filter_new(wv_filter *next)
{
    sha256_filter *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &sha256_ops;
    s->base.next = next;
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
        /* Only an allocation failure gets here; walvault does not continue after those. */
        fprintf(stderr, "walvault: fatal: could not set up a sha256 context\n");
        abort();
    }
    return &s->base;
}

void wv_sha256_filter_digest(const wv_filter *f, uint8_t out[32])
{
    memcpy(out, ((const sha256_filter *)f)->digest, 32);
}
