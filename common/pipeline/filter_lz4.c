/*
 * filter_lz4.c - lz4 frame compression and decompression (LZ4F_*), interoperable with the lz4
 * command-line tool.
 *
 * Both directions work in one output buffer allocated with the filter and push it downstream when
 * it is full, so pieces are bounded by WV_FILTER_CHUNK and memory does not grow with the content:
 * a small frame that expands to gigabytes of zeros is decoded one buffer at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>

#include "pipeline/filter.h"

/* Input is fed to the compressor in pieces of this size, so that the worst-case output of one
 * LZ4F_compressUpdate call (LZ4F_compressBound of it) is known and fits the output buffer. */
#define LZ4_IN_PIECE (64 * 1024)
#define LZ4_OUT_CAP  WV_FILTER_CHUNK

static void lz4_fatal(const char *what)
{
    fprintf(stderr, "walvault: fatal: could not create an lz4 %s context\n", what);
    abort();
}

static int push_out(wv_filter *f, uint8_t *out, size_t *len, wv_err *err)
{
    int rc = 0;
    if (*len > 0 && f->next)
        rc = wv_filter_write(f->next, out, *len, err);
    *len = 0;
    return rc;
}

/* --- compression ----------------------------------------------------------------------------- */

typedef struct lz4c_filter {
    wv_filter base;
    LZ4F_cctx *cctx;
    LZ4F_preferences_t prefs;
    size_t bound; /* LZ4F_compressBound(LZ4_IN_PIECE) */
    int started;
    uint8_t *out;
    size_t len;
} lz4c_filter;

static int lz4c_begin(lz4c_filter *c, wv_err *err)
{
    size_t r = LZ4F_compressBegin(c->cctx, c->out + c->len, LZ4_OUT_CAP - c->len, &c->prefs);
    if (LZ4F_isError(r))
        return wv_err_set(err, WV_EINTERNAL, "lz4: could not start a frame: %s",
                          LZ4F_getErrorName(r));
    c->len += r;
    c->started = 1;
    return 0;
}

static int lz4c_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    lz4c_filter *c = (lz4c_filter *)f;
    int rc;
    if (!c->started && (rc = lz4c_begin(c, err)) < 0)
        return rc;
    while (len > 0) {
        size_t n = len < LZ4_IN_PIECE ? len : LZ4_IN_PIECE;
        if (LZ4_OUT_CAP - c->len < c->bound && (rc = push_out(f, c->out, &c->len, err)) < 0)
            return rc;
        size_t r =
            LZ4F_compressUpdate(c->cctx, c->out + c->len, LZ4_OUT_CAP - c->len, buf, n, NULL);
        if (LZ4F_isError(r))
            return wv_err_set(err, WV_EINTERNAL, "lz4: compression failed: %s",
                              LZ4F_getErrorName(r));
        c->len += r;
        buf += n;
        len -= n;
    }
    return 0;
}

static int lz4c_finish(wv_filter *f, wv_err *err)
{
    lz4c_filter *c = (lz4c_filter *)f;
    int rc;
    if (!c->started && (rc = lz4c_begin(c, err)) < 0)
        return rc;
    if (LZ4_OUT_CAP - c->len < LZ4F_compressBound(0, &c->prefs) &&
        (rc = push_out(f, c->out, &c->len, err)) < 0)
        return rc;
    size_t r = LZ4F_compressEnd(c->cctx, c->out + c->len, LZ4_OUT_CAP - c->len, NULL);
    if (LZ4F_isError(r))
        return wv_err_set(err, WV_EINTERNAL, "lz4: could not end the frame: %s",
                          LZ4F_getErrorName(r));
    c->len += r;
    if ((rc = push_out(f, c->out, &c->len, err)) < 0)
        return rc;
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void lz4c_free(wv_filter *f)
{
    lz4c_filter *c = (lz4c_filter *)f;
    LZ4F_freeCompressionContext(c->cctx);
    free(c->out);
    free(c);
}

static const wv_filter_ops lz4c_ops = {
    .name = "lz4 compress",
    .write = lz4c_write,
    .finish = lz4c_finish,
    .free = lz4c_free,
};

wv_filter *wv_lz4_compress_new(wv_filter *next, int level)
{
    lz4c_filter *c = wv_xcalloc(1, sizeof(*c));
    c->base.ops = &lz4c_ops;
    c->base.next = next;
    if (LZ4F_isError(LZ4F_createCompressionContext(&c->cctx, LZ4F_VERSION)))
        lz4_fatal("compression");
    memset(&c->prefs, 0, sizeof(c->prefs));
    c->prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    /* Independent 64 KiB blocks: about 3x faster to compress than linked ones here, for about 1%
     * more output, and each block decodes on its own. */
    c->prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    c->prefs.compressionLevel = level < 1 ? 1 : level > 12 ? 12 : level;
    c->bound = LZ4F_compressBound(LZ4_IN_PIECE, &c->prefs);
    if (c->bound + LZ4F_HEADER_SIZE_MAX > LZ4_OUT_CAP)
        lz4_fatal("compression (output buffer too small)");
    c->out = wv_xmalloc(LZ4_OUT_CAP);
    return &c->base;
}

/* --- decompression --------------------------------------------------------------------------- */

typedef struct lz4d_filter {
    wv_filter base;
    LZ4F_dctx *dctx;
    size_t hint; /* last LZ4F_decompress result: 0 once a frame is complete */
    uint8_t *out;
    size_t len;
} lz4d_filter;

static int lz4d_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    lz4d_filter *d = (lz4d_filter *)f;
    size_t pos = 0;
    int rc;
    for (;;) {
        size_t avail = LZ4_OUT_CAP - d->len;
        size_t dst = avail, src = len - pos;
        size_t r = LZ4F_decompress(d->dctx, d->out + d->len, &dst, buf + pos, &src, NULL);
        if (LZ4F_isError(r))
            return wv_err_set(err, WV_ECORRUPT, "lz4: corrupt compressed data: %s",
                              LZ4F_getErrorName(r));
        /* A call that consumed and produced nothing (an empty call after a finished frame)
         * must not replace the hint: a new frame would be expected and finish() would see
         * a truncated frame that is not there. */
        if (src > 0 || dst > 0)
            d->hint = r;
        pos += src;
        d->len += dst;
        if (d->len == LZ4_OUT_CAP && (rc = push_out(f, d->out, &d->len, err)) < 0)
            return rc;
        if (pos == len && (dst < avail || r == 0))
            break; /* all input taken and nothing left inside the decoder */
        if (src == 0 && dst == 0)
            return wv_err_set(err, WV_ECORRUPT, "lz4: decoder made no progress");
    }
    return 0;
}

static int lz4d_finish(wv_filter *f, wv_err *err)
{
    lz4d_filter *d = (lz4d_filter *)f;
    int rc;
    if (d->hint != 0)
        return wv_err_set(err, WV_ECORRUPT, "lz4: truncated frame: the compressed data ends early");
    if ((rc = push_out(f, d->out, &d->len, err)) < 0)
        return rc;
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void lz4d_free(wv_filter *f)
{
    lz4d_filter *d = (lz4d_filter *)f;
    LZ4F_freeDecompressionContext(d->dctx);
    free(d->out);
    free(d);
}

static const wv_filter_ops lz4d_ops = {
    .name = "lz4 decompress",
    .write = lz4d_write,
    .finish = lz4d_finish,
    .free = lz4d_free,
};

wv_filter *wv_lz4_decompress_new(wv_filter *next)
{
    lz4d_filter *d = wv_xcalloc(1, sizeof(*d));
    d->base.ops = &lz4d_ops;
    d->base.next = next;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d->dctx, LZ4F_VERSION)))
        lz4_fatal("decompression");
    d->hint = 1; /* nothing seen yet: an empty input is not a frame */
    d->out = wv_xmalloc(LZ4_OUT_CAP);
    return &d->base;
}
