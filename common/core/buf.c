/* buf.c - growable byte buffer and aborting allocators. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "walvault: fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *wv_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *wv_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *wv_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *wv_xstrdup(const char *s)
{
    return wv_xstrndup(s, strlen(s));
}

char *wv_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = wv_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *wv_xasprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *p = wv_xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void wv_buf_init(wv_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void wv_buf_free(wv_buf *b)
{
    free(b->data);
    wv_buf_init(b);
}

uint8_t *wv_buf_reserve(wv_buf *b, size_t n)
{
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n + 1)
            cap *= 2;
        b->data = wv_xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void wv_buf_append(wv_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(wv_buf_reserve(b, n), p, n);
    b->len += n;
}

void wv_buf_append_str(wv_buf *b, const char *s)
{
    wv_buf_append(b, s, strlen(s));
}

void wv_buf_printf(wv_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        vsnprintf((char *)wv_buf_reserve(b, (size_t)n), (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void wv_buf_reset(wv_buf *b)
{
    b->len = 0;
}

void wv_buf_consume(wv_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

const char *wv_buf_cstr(wv_buf *b)
{
    wv_buf_reserve(b, 0);
    b->data[b->len] = '\0';
    return (const char *)b->data;
}
