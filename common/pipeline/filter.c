/*
 * filter.c - the generic parts of the push chain: freeing, the terminal stages (fd, buffer,
 * discard, storage sink), the byte-count observer, pumping a file descriptor.
 *
 * Observers split what they receive into pieces of at most WV_FILTER_CHUNK bytes before passing
 * them on, so that every stage below the head sees bounded pieces whatever the caller writes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/filter.h"

void wv_filter_chain_free(wv_filter *f)
{
    while (f) {
        wv_filter *next = f->next;
        f->ops->free(f);
        f = next;
    }
}

static int finish_next(wv_filter *f, wv_err *err)
{
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

/* --- fd terminal ----------------------------------------------------------------------------- */

typedef struct fd_filter {
    wv_filter base;
    int fd;
} fd_filter;

static int fd_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    fd_filter *s = (fd_filter *)f;
    while (len > 0) {
        ssize_t n = write(s->fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return wv_err_errno(err, WV_EIO, errno, "could not write to file descriptor %d", s->fd);
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fd_finish(wv_filter *f, wv_err *err)
{
    return finish_next(f, err);
}

static void plain_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops fd_ops = {
    .name = "fd",
    .write = fd_write,
    .finish = fd_finish,
    .free = plain_free,
};

wv_filter *wv_filter_fd_new(int fd)
{
    fd_filter *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &fd_ops;
    s->fd = fd;
    return &s->base;
}

/* --- buffer terminal ------------------------------------------------------------------------- */

typedef struct buf_filter {
    wv_filter base;
    wv_buf *out;
} buf_filter;

static int buf_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    wv_buf_append(((buf_filter *)f)->out, buf, len);
    return 0;
}

static const wv_filter_ops buf_ops = {
    .name = "buffer",
    .write = buf_write,
    .finish = fd_finish,
    .free = plain_free,
};

wv_filter *wv_filter_buf_new(wv_buf *out)
{
    buf_filter *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &buf_ops;
    s->out = out;
    return &s->base;
}

/* --- discard terminal ------------------------------------------------------------------------ */

static int discard_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    return 0;
}

static const wv_filter_ops discard_ops = {
    .name = "discard",
    .write = discard_write,
    .finish = fd_finish,
    .free = plain_free,
};

wv_filter *wv_filter_discard_new(void)
{
    wv_filter *f = wv_xcalloc(1, sizeof(*f));
    f->ops = &discard_ops;
    return f;
}

/* --- count observer -------------------------------------------------------------------------- */

typedef struct count_filter {
    wv_filter base;
    uint64_t bytes;
} count_filter;

int wv_filter_pass(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    if (!f->next)
        return 0;
    while (len > 0) {
        size_t n = len < WV_FILTER_CHUNK ? len : WV_FILTER_CHUNK;
        int rc = wv_filter_write(f->next, buf, n, err);
        if (rc < 0)
            return rc;
        buf += n;
        len -= n;
    }
    return 0;
}

static int count_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    ((count_filter *)f)->bytes += len;
    return wv_filter_pass(f, buf, len, err);
}

static const wv_filter_ops count_ops = {
    .name = "count",
    .write = count_write,
    .finish = fd_finish,
    .free = plain_free,
};

wv_filter *wv_count_filter_new(wv_filter *next)
{
    count_filter *c = wv_xcalloc(1, sizeof(*c));
    c->base.ops = &count_ops;
    c->base.next = next;
    return &c->base;
}

uint64_t wv_count_filter_bytes(const wv_filter *f)
{
    return ((const count_filter *)f)->bytes;
}

/* --- helpers --------------------------------------------------------------------------------- */

int wv_filter_pump_fd(wv_filter *f, int fd, const char *what, wv_err *err)
{
    uint8_t *buf = wv_xmalloc(WV_FILTER_CHUNK);
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, WV_FILTER_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = wv_err_errno(err, WV_EIO, errno, "could not read \"%s\"", what);
            goto out;
        }
        if (n == 0)
            break;
        rc = wv_filter_write(f, buf, (size_t)n, err);
        if (rc < 0)
            goto out;
    }
    rc = wv_filter_finish(f, err);
out:
    free(buf);
    return rc;
}

/* --- A terminal filter writing into a sink ---------------------------------------------------- */

typedef struct {
    wv_filter base;
    wv_sink *sink;
} sink_filter;

static int sink_filter_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    return wv_sink_write(((sink_filter *)f)->sink, buf, len, err);
}

static int sink_filter_finish(wv_filter *f, wv_err *err)
{
    return 0;
}

static void sink_filter_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops sink_filter_ops = {
    .name = "sink",
    .write = sink_filter_write,
    .finish = sink_filter_finish,
    .free = sink_filter_free,
};

wv_filter *wv_filter_sink_new(wv_sink *sink)
{
    sink_filter *f = wv_xcalloc(1, sizeof(*f));
    f->base.ops = &sink_filter_ops;
    f->sink = sink;
    return &f->base;
}
