/*
 * filter.h - the streaming pipeline: a push chain of filters, built sink-first (as PostgreSQL's
 * astreamer). Data written into the head flows through every stage; each stage pushes its output to
 * `next` in bounded pieces, so memory never grows with the size of the content.
 *
 *   store:  plain -> sha256 (observer) -> lz4 compress -> [encrypt] -> object writer -> storage sink
 *   fetch:  storage source -> object reader -> [decrypt] -> lz4 decompress -> sha256 -> file
 *
 * Invariants:
 *  - write() consumes all `len` bytes or fails; it may push zero or more pieces downstream.
 *  - finish() flushes what the stage holds (lz4 frame end, GCM tag, object trailer) and then finishes
 *    `next`. After finish() the stage accepts no more data; results (digest, sizes) are then readable.
 *  - free() frees that one stage; wv_filter_chain_free() frees a stage and everything after it.
 *  - A terminal stage has next == NULL.
 *  - Errors are reported through wv_err; after an error the chain is only good for freeing.
 */
#ifndef WALVAULT_PIPELINE_FILTER_H
#define WALVAULT_PIPELINE_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/bytes.h" /* wv_hex_*, for digests */
#include "core/error.h"
#include "storage/storage.h"

/* Pieces pushed downstream are at most this large (except by the terminal stages' callers). */
#define WV_FILTER_CHUNK (256 * 1024)

typedef struct wv_filter wv_filter;

typedef struct wv_filter_ops {
    const char *name;
    int (*write)(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err);
    int (*finish)(wv_filter *f, wv_err *err);
    void (*free)(wv_filter *f);
} wv_filter_ops;

/* Every filter's own struct embeds this as its first member. */
struct wv_filter {
    const wv_filter_ops *ops;
    wv_filter *next;
};

static inline int wv_filter_write(wv_filter *f, const void *buf, size_t len, wv_err *err)
{
    return len ? f->ops->write(f, (const uint8_t *)buf, len, err) : 0;
}

static inline int wv_filter_finish(wv_filter *f, wv_err *err)
{
    return f->ops->finish(f, err);
}

/* What an observer stage does after looking at buf: push it to f->next (if any) in pieces of at
 * most WV_FILTER_CHUNK bytes. */
int wv_filter_pass(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err);

/* Free f and every stage after it. NULL is allowed. */
void wv_filter_chain_free(wv_filter *f);

/* --- Terminal stages ------------------------------------------------------------------------- */

/* Writes everything to an open file descriptor (not closed, not fsynced: the caller decides). */
wv_filter *wv_filter_fd_new(int fd);
/* Appends everything to a wv_buf owned by the caller (tests, small objects). */
wv_filter *wv_filter_buf_new(wv_buf *out);
/* Drops everything (hashing a file without storing it). */
wv_filter *wv_filter_discard_new(void);
/* A terminal filter that writes into a sink. It neither commits nor aborts: the owner of the sink
 * decides after wv_filter_finish(). */
wv_filter *wv_filter_sink_new(wv_sink *sink);

/* --- Observers: pass data through unchanged ---------------------------------------------------- */

/* SHA-256 (OpenSSL EVP). The digest is available after finish(). */
wv_filter *wv_sha256_filter_new(wv_filter *next);
void wv_sha256_filter_digest(const wv_filter *f, uint8_t out[32]);
/* The SHA-256 of buf[0..len), in one call (the filter's implementation). */
void wv_sha256(const void *buf, size_t len, uint8_t out[32]);

/*
 * The same, hashing each written buffer on a helper thread while `next` processes it on the
 * caller's thread (the two costs overlap). `also`, if not NULL, sees every buffer, in order and
 * one at a time: on the helper thread after the hash, or on the caller's after `next` when the
 * helper is still hashing. write() returns when both threads are done with the buffer.
 */
wv_filter *wv_sha256_filter_new_threaded(wv_filter *next,
                                         void (*also)(void *arg, const uint8_t *buf, size_t len),
                                         void *also_arg);

/*
 * The same, but write() returns once `next` is done with the buffer, with the helper thread
 * perhaps still hashing it: the caller keeps the buffer unchanged until its next write(),
 * wv_sha256_filter_wait() or finish() on the filter returns (free also waits). What the caller
 * does in between (mapping the next window of a file) overlaps the hash as well.
 */
wv_filter *wv_sha256_filter_new_lagged(wv_filter *next,
                                       void (*also)(void *arg, const uint8_t *buf, size_t len),
                                       void *also_arg);
/* Wait until the helper thread of a threaded or lagged filter is done with every buffer written
 * (then `also` has seen them all); nothing for the other kinds. */
void wv_sha256_filter_wait(wv_filter *f);

/* Counts bytes. */
wv_filter *wv_count_filter_new(wv_filter *next);
uint64_t wv_count_filter_bytes(const wv_filter *f);

/* --- Transforms ------------------------------------------------------------------------------ */

/* lz4 frame format (interoperable with the lz4 command-line tool); level 1..12 (1 = fast). */
wv_filter *wv_lz4_compress_new(wv_filter *next, int level);
/* Decompresses an lz4 frame; fails with WV_ECORRUPT on malformed input or a truncated frame. */
wv_filter *wv_lz4_decompress_new(wv_filter *next);

/* Convenience: push a whole file descriptor's content (from its current offset) into f, then
 * finish f. Reads in WV_FILTER_CHUNK pieces. */
int wv_filter_pump_fd(wv_filter *f, int fd, const char *what, wv_err *err);

#endif
