/*
 * fuzz.h - what the libFuzzer targets of tests/fuzz share: a check that aborts with a message (a
 * broken invariant is a finding like a crash), a reader that takes typed values off the fuzzer's
 * input, an in-memory source that never hands out a byte past its end and can return short reads,
 * and the error-message rule every parser keeps (one line, then an optional one-line hint).
 *
 * Each target is one LLVMFuzzerTestOneInput; everything here is static so that each target is
 * one translation unit.
 */
#ifndef WALVAULT_TESTS_FUZZ_FUZZ_H
#define WALVAULT_TESTS_FUZZ_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "storage/driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: report it and abort, which libFuzzer records as a crash with the input. */
#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                       \
    } while (0)

static void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

static void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: invariant broken: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* --- typed values off the input ---------------------------------------------------------------- */

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | fz_u8(in) << 8);
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t lo = fz_u16(in);
    return lo | (uint32_t)fz_u16(in) << 16;
}

static inline uint64_t fz_u64(fz_in *in)
{
    uint64_t lo = fz_u32(in);
    return lo | (uint64_t)fz_u32(in) << 32;
}

/* Up to n bytes (fewer at the end of the input); *got says how many. */
static inline const uint8_t *fz_bytes(fz_in *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;
    if (n > in->n)
        n = in->n;
    in->p += n;
    in->n -= n;
    *got = n;
    return p;
}

/* A NUL-terminated copy of p[0..n) (the caller frees it). */
static inline char *fz_strndup(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Piece sizes for feeding a push parser: a small pseudo-random sequence from a seed, so that the
 * same input is cut the same way every time (1..max bytes each). */
typedef struct fz_cut {
    uint32_t state;
    size_t max;
} fz_cut;

static inline size_t fz_cut_next(fz_cut *c)
{
    c->state = c->state * 1103515245u + 12345u;
    uint32_t r = c->state >> 16;
    /* mostly small pieces, sometimes large ones */
    size_t n = (r & 3) == 0 ? (size_t)(r >> 2) % c->max : (size_t)(r >> 2) % 17;
    return n + 1;
}

/* --- error messages ---------------------------------------------------------------------------- */

/* The house rule: a failure has a code from the table and a one-line message; the hint is one
 * line too (or empty). One line means no control characters at all: no newline, no carriage
 * return, no terminal escape copied from the input. */
static inline void fz_check_err(const wv_err *e, int rc)
{
    FZ_CHECK(rc < 0 && rc >= WV_EINTERNAL, "code %d outside the error table", rc);
    FZ_CHECK(e->code == rc, "returned %d but the record says %d (%s)", rc, e->code, e->msg);
    FZ_CHECK(e->msg[0] != '\0', "error %d without a message", rc);
    for (const char *p = e->msg; *p; p++)
        FZ_CHECK((unsigned char)*p >= ' ' || *p == '\t', "control character in message: %s",
                 e->msg);
    for (const char *p = e->hint; *p; p++)
        FZ_CHECK((unsigned char)*p >= ' ' || *p == '\t', "control character in hint: %s", e->hint);
}

/* --- an in-memory source ----------------------------------------------------------------------- */

typedef struct fz_source {
    wv_source base;
    const uint8_t *data;
    size_t len, pos;
    size_t max_read; /* at most this many bytes per read: short reads */
    int reads_after_end;
} fz_source;

static int fz_source_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    fz_source *m = (fz_source *)s;
    (void)err;
    size_t n = m->len - m->pos;
    if (n > cap)
        n = cap;
    if (n > m->max_read)
        n = m->max_read;
    if (n == 0 && m->pos == m->len)
        m->reads_after_end++;
    FZ_CHECK(m->reads_after_end <= 64, "%d reads after the end of the source", m->reads_after_end);
    if (n) {
        memcpy(buf, m->data + m->pos, n);
        m->pos += n;
    }
    *got = n;
    return 0;
}

static void fz_source_close(wv_source *s)
{
    (void)s;
}

static const wv_source_ops fz_source_ops = {fz_source_read, fz_source_close};

static inline void fz_source_init(fz_source *m, const uint8_t *data, size_t len, size_t max_read)
{
    memset(m, 0, sizeof(*m));
    m->base.ops = &fz_source_ops;
    m->data = data;
    m->len = len;
    m->max_read = max_read ? max_read : SIZE_MAX;
}

#endif
