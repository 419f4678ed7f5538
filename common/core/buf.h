/*
 * buf.h - a growable byte buffer, and allocation helpers that abort with one message on
 * out-of-memory (walvault never continues after a failed allocation).
 */
#ifndef WALVAULT_CORE_BUF_H
#define WALVAULT_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

void *wv_xmalloc(size_t n);
void *wv_xcalloc(size_t n, size_t size);
void *wv_xrealloc(void *p, size_t n);
char *wv_xstrdup(const char *s);
char *wv_xstrndup(const char *s, size_t n);
/* asprintf that aborts on out-of-memory. */
char *wv_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef struct wv_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} wv_buf;

#define WV_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void wv_buf_init(wv_buf *b);
void wv_buf_free(wv_buf *b);
/* Make room for at least n more bytes; returns a pointer to data + len. */
uint8_t *wv_buf_reserve(wv_buf *b, size_t n);
void wv_buf_append(wv_buf *b, const void *p, size_t n);
void wv_buf_append_str(wv_buf *b, const char *s);
void wv_buf_printf(wv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void wv_buf_reset(wv_buf *b);
/* Remove the first n bytes. */
void wv_buf_consume(wv_buf *b, size_t n);
/* NUL-terminated view of the contents (the NUL is not counted in len). */
const char *wv_buf_cstr(wv_buf *b);

#endif
