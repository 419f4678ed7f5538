/*
 * memio.h - in-memory sink and source for unit tests: real implementations of the storage driver
 * interface's wv_sink and wv_source (a sink that can run out of space, a source that can return
 * short reads and fail at an offset). Included by the tests of the object layer and of bundles.
 */
#ifndef WALVAULT_TESTS_UNIT_MEMIO_H
#define WALVAULT_TESTS_UNIT_MEMIO_H

#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "storage/driver.h"

/* --- in-memory sink and source (real implementations of the driver interface) ----------------- */

typedef struct mem_sink {
    wv_sink base;
    wv_buf data;
    size_t fail_at; /* a write that would pass this many bytes fails; 0 = never */
    int writes;
} mem_sink;

static inline int mem_sink_write(wv_sink *s, const void *buf, size_t len, wv_err *err)
{
    mem_sink *m = (mem_sink *)s;
    if (m->fail_at && m->data.len + len > m->fail_at)
        return wv_err_set(err, WV_ENOSPACE, "memory sink: no space left after %zu bytes",
                          m->data.len);
    wv_buf_append(&m->data, buf, len);
    m->writes++;
    return 0;
}

static inline int mem_sink_commit(wv_sink *s, wv_err *err)
{
    (void)s;
    (void)err;
    return 0;
}

static inline void mem_sink_abort(wv_sink *s)
{
    (void)s;
}

static const wv_sink_ops mem_sink_ops = {mem_sink_write, mem_sink_commit, mem_sink_abort};

static inline void mem_sink_init(mem_sink *m, size_t fail_at)
{
    memset(m, 0, sizeof(*m));
    m->base.ops = &mem_sink_ops;
    wv_buf_init(&m->data);
    m->fail_at = fail_at;
}

typedef struct mem_source {
    wv_source base;
    const uint8_t *data;
    size_t len, pos;
    size_t max_read; /* at most this much per read (exercises short reads) */
    size_t fail_at;  /* reading past this offset fails; 0 = never */
} mem_source;

static inline int mem_source_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    mem_source *m = (mem_source *)s;
    size_t n = m->len - m->pos;
    if (n > cap)
        n = cap;
    if (n > m->max_read)
        n = m->max_read;
    if (m->fail_at && m->pos + n > m->fail_at)
        return wv_err_set(err, WV_EUNREACHABLE, "memory source: connection lost");
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    *got = n;
    return 0;
}

static inline void mem_source_close(wv_source *s)
{
    (void)s;
}

static const wv_source_ops mem_source_ops = {mem_source_read, mem_source_close};

static inline void mem_source_init(mem_source *m, const uint8_t *data, size_t len, size_t max_read)
{
    memset(m, 0, sizeof(*m));
    m->base.ops = &mem_source_ops;
    m->data = data;
    m->len = len;
    m->max_read = max_read ? max_read : SIZE_MAX;
}

#endif
