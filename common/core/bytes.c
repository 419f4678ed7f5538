/* bytes.c - hex encoding and decoding (the byte-order helpers are inline in bytes.h). */
#include "core/bytes.h"

#include "core/error.h"

void wv_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int wv_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int wv_hex_decode(const char *in, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int hi = wv_hex_value(in[2 * i]);
        int lo = hi < 0 ? -1 : wv_hex_value(in[2 * i + 1]);
        if (lo < 0)
            return WV_EFORMAT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
