/*
 * filter_sha256.c - a pass-through observer computing the SHA-256 of everything that flows through
 * it (OpenSSL EVP, one update per piece). With next == NULL it is a terminal that only hashes.
 *
 * The threaded variant hashes each written buffer on a helper thread while the caller's thread
 * pushes the same buffer downstream (compression), so the two costs overlap on two cores. write()
 * returns only when both are done with the buffer, so the caller may reuse it at once, and no byte
 * is copied. An optional `also` observer runs on the helper thread after the hash (wal-push's WAL
 * record reader).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "pipeline/filter.h"

typedef struct sha256_filter {
    wv_filter base;
    EVP_MD_CTX *ctx;
    int done;
    uint8_t digest[32];
    /* threaded variant */
    int threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const uint8_t *job; /* buffer to hash, NULL when idle */
    size_t job_len;
    int job_done;
    int job_failed;
    int stop;
    void (*also)(void *arg, const uint8_t *buf, size_t len);
    void *also_arg;
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

static void *hash_thread(void *arg)
{
    sha256_filter *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->job && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        const uint8_t *buf = s->job;
        size_t len = s->job_len;
        pthread_mutex_unlock(&s->mu);
        int failed = EVP_DigestUpdate(s->ctx, buf, len) != 1;
        if (s->also)
            s->also(s->also_arg, buf, len);
        pthread_mutex_lock(&s->mu);
        s->job = NULL;
        s->job_failed |= failed;
        s->job_done = 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int sha256_threaded_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    sha256_filter *s = (sha256_filter *)f;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    s->job = buf;
    s->job_len = len;
    s->job_done = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* Meanwhile, the same bytes go downstream on this thread, in bounded pieces. */
    rc = wv_filter_pass(f, buf, len, err);
    pthread_mutex_lock(&s->mu);
    while (!s->job_done)
        pthread_cond_wait(&s->cv, &s->mu);
    int failed = s->job_failed;
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && failed)
        rc = wv_err_set(err, WV_EINTERNAL, "sha256: could not update digest");
    return rc;
}

static void stop_thread(sha256_filter *s)
{
    if (!s->threaded)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    s->threaded = 0;
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
    stop_thread(s);
    EVP_MD_CTX_free(s->ctx);
    free(s);
}

static const wv_filter_ops sha256_ops = {
    .name = "sha256",
    .write = sha256_write,
    .finish = sha256_finish,
    .free = sha256_free,
};

static const wv_filter_ops sha256_threaded_ops = {
    .name = "sha256 (threaded)",
    .write = sha256_threaded_write,
    .finish = sha256_finish,
    .free = sha256_free,
};

wv_filter *wv_sha256_filter_new_threaded(wv_filter *next,
                                         void (*also)(void *arg, const uint8_t *buf, size_t len),
                                         void *also_arg)
{
    sha256_filter *s = (sha256_filter *)wv_sha256_filter_new(next);
    s->also = also;
    s->also_arg = also_arg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, hash_thread, s) != 0) {
        /* No thread to be had: hash on the caller's thread, with the same result. */
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        if (also) {
            fprintf(stderr, "walvault: fatal: could not start a hashing thread\n");
            abort();
        }
        return &s->base;
    }
    s->threaded = 1;
    s->base.ops = &sha256_threaded_ops;
    return &s->base;
}

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
