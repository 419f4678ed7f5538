/*
 * filter_sha256.c - a pass-through observer computing the SHA-256 of everything that flows through
 * it, one update per piece. With next == NULL it is a terminal that only hashes.
 *
 * OpenSSL's SHA256_* functions, not EVP: the same code (SHA extensions where the CPU has them),
 * without the provider fetch that EVP's first digest costs, about 1 ms per process (a twentieth
 * of a whole wal-push). They are deprecated in OpenSSL 3 but kept; a checksum needs no provider.
 *
 * The threaded variant hashes each written buffer on a helper thread while the caller's thread
 * pushes the same buffer downstream (compression), so the two costs overlap on two cores. write()
 * returns only when both are done with the buffer, so the caller may reuse it at once, and no byte
 * is copied. An optional `also` observer (wal-push's WAL record reader) sees each buffer once, on
 * whichever thread is free first: the helper after the hash, or the caller after downstream.
 *
 * The lagged variant returns from write() once downstream is done with the buffer, leaving the
 * helper on it: the caller's work before its next write (mapping the next window of the file)
 * then overlaps the hash too. The next write(), wv_sha256_filter_wait() or finish() first waits
 * for the helper, so one buffer at most is in its hands.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SHA256_Init and friends: deprecated in OpenSSL 3, see above */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "pipeline/filter.h"

typedef struct sha256_filter {
    wv_filter base;
    SHA256_CTX ctx;
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
    int pending;      /* a job was handed over and not waited for yet */
    int also_claimed; /* the job's `also` is taken, by the helper or the caller */
    int lagged;       /* write() does not wait for the helper */
    int stop;
    void (*also)(void *arg, const uint8_t *buf, size_t len);
    void *also_arg;
} sha256_filter;

static int sha256_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    sha256_filter *s = (sha256_filter *)f;
    while (len > 0) {
        size_t n = len < WV_FILTER_CHUNK ? len : WV_FILTER_CHUNK;
        if (SHA256_Update(&s->ctx, buf, n) != 1)
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

/* The buffer's `also` is for the calling thread, unless the other thread took it. */
static int claim_also(sha256_filter *s)
{
    if (!s->also)
        return 0;
    pthread_mutex_lock(&s->mu);
    int mine = !s->also_claimed;
    s->also_claimed = 1;
    pthread_mutex_unlock(&s->mu);
    return mine;
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
        int failed = SHA256_Update(&s->ctx, buf, len) != 1;
        if (claim_also(s))
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

static const wv_filter_ops sha256_threaded_ops;

/* Wait until the helper is done with the buffer handed to it, if any; nonzero when any update
 * failed. */
static int job_wait(sha256_filter *s)
{
    if (!s->threaded)
        return 0;
    pthread_mutex_lock(&s->mu);
    while (s->pending && !s->job_done)
        pthread_cond_wait(&s->cv, &s->mu);
    s->pending = 0;
    int failed = s->job_failed;
    pthread_mutex_unlock(&s->mu);
    return failed;
}

static int update_failed(wv_err *err)
{
    return wv_err_set(err, WV_EINTERNAL, "sha256: could not update digest");
}

static int sha256_threaded_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    sha256_filter *s = (sha256_filter *)f;
    int rc = 0;
    if (job_wait(s))
        return update_failed(err);
    pthread_mutex_lock(&s->mu);
    s->job = buf;
    s->job_len = len;
    s->job_done = 0;
    s->pending = 1;
    s->also_claimed = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* Meanwhile, the same bytes go downstream on this thread, in bounded pieces; then `also`
     * here when the helper is still hashing (when compression cost less than the hash). The
     * next job is handed over only after this one's `also` ran, so they run one at a time and
     * in order, on either thread. */
    rc = wv_filter_pass(f, buf, len, err);
    if (rc == 0 && claim_also(s))
        s->also(s->also_arg, buf, len);
    /* after a failure the caller may free the buffer at once: never leave the helper on it */
    if ((!s->lagged || rc < 0) && job_wait(s) && rc == 0)
        rc = update_failed(err);
    return rc;
}

void wv_sha256_filter_wait(wv_filter *f)
{
    if (f->ops == &sha256_threaded_ops)
        job_wait((sha256_filter *)f);
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
    if (job_wait(s))
        return update_failed(err);
    if (!s->done) {
        if (SHA256_Final(s->digest, &s->ctx) != 1)
            return wv_err_set(err, WV_EINTERNAL, "sha256: could not finish digest");
        s->done = 1;
    }
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void sha256_free(wv_filter *f)
{
    sha256_filter *s = (sha256_filter *)f;
    job_wait(s);
    stop_thread(s);
    OPENSSL_cleanse(&s->ctx, sizeof(s->ctx));
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

wv_filter *wv_sha256_filter_new_lagged(wv_filter *next,
                                       void (*also)(void *arg, const uint8_t *buf, size_t len),
                                       void *also_arg)
{
    wv_filter *f = wv_sha256_filter_new_threaded(next, also, also_arg);
    ((sha256_filter *)f)->lagged = ((sha256_filter *)f)->threaded;
    return f;
}

wv_filter *wv_sha256_filter_new(wv_filter *next)
{
    sha256_filter *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &sha256_ops;
    s->base.next = next;
    if (SHA256_Init(&s->ctx) != 1) {
        /* it only sets constants: never happens */
        fprintf(stderr, "walvault: fatal: could not set up a sha256 context\n");
        abort();
    }
    return &s->base;
}

void wv_sha256(const void *buf, size_t len, uint8_t out[32])
{
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, buf, len) != 1 || SHA256_Final(out, &c) != 1) {
        fprintf(stderr, "walvault: fatal: sha256 is not available\n");
        abort();
    }
}

void wv_sha256_filter_digest(const wv_filter *f, uint8_t out[32])
{
    memcpy(out, ((const sha256_filter *)f)->digest, 32);
}
