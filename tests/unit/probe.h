/*
 * probe.h - a terminal filter for unit tests that keeps what it gets and records piece sizes.
 * Included by the test files that check what a pipeline pushes downstream.
 */
#ifndef WALVAULT_TESTS_UNIT_PROBE_H
#define WALVAULT_TESTS_UNIT_PROBE_H

#include <stdlib.h>

#include "pipeline/filter.h"

/* --- a terminal that keeps what it gets and records piece sizes --------------------------------
 */

typedef struct probe {
    wv_filter base;
    wv_buf out;
    int keep;
    uint64_t total;
    size_t max_piece;
    int finished;
} probe;

static inline int probe_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    probe *p = (probe *)f;
    if (p->keep)
        wv_buf_append(&p->out, buf, len);
    p->total += len;
    if (len > p->max_piece)
        p->max_piece = len;
    return 0;
}

static inline int probe_finish(wv_filter *f, wv_err *err)
{
    ((probe *)f)->finished++;
    return 0;
}

static inline void probe_free(wv_filter *f)
{
    wv_buf_free(&((probe *)f)->out);
    free(f);
}

static const wv_filter_ops probe_ops = {"probe", probe_write, probe_finish, probe_free};

static inline probe *probe_new(int keep)
{
    probe *p = calloc(1, sizeof(*p));
    p->base.ops = &probe_ops;
    p->keep = keep;
    wv_buf_init(&p->out);
    return p;
}

#endif
