/* json.c - JSON strings: escaped, and always valid UTF-8 (see json.h). */
#include "core/json.h"

#include <stdint.h>

/* The length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one (overlong forms,
 * surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

void wv_json_string(wv_buf *out, const char *s)
{
    wv_buf_append(out, "\"", 1);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            wv_buf_append(out, e, 2);
            p++;
        } else if (c == '\n') {
            wv_buf_append_str(out, "\\n");
            p++;
        } else if (c == '\t') {
            wv_buf_append_str(out, "\\t");
            p++;
        } else if (c == '\r') {
            wv_buf_append_str(out, "\\r");
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            wv_buf_printf(out, "\\u%04x", c);
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                wv_buf_append_str(out, "\\ufffd");
                p++;
            } else {
                wv_buf_append(out, p, n);
                p += n;
            }
        }
    }
    wv_buf_append(out, "\"", 1);
}
