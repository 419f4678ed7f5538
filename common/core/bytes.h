/*
 * bytes.h - fixed-width integers in byte arrays (both byte orders), and hex.
 *
 * Every on-disk or on-wire number walvault reads or writes goes through these: PostgreSQL's WAL and
 * walvault's object format are little-endian, the remote protocol is big-endian (network order).
 * The readers take exactly the bytes they need and never look past them.
 */
#ifndef WALVAULT_CORE_BYTES_H
#define WALVAULT_CORE_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline uint16_t wv_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t wv_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t wv_get_le64(const uint8_t *p)
{
    return (uint64_t)wv_get_le32(p) | (uint64_t)wv_get_le32(p + 4) << 32;
}

static inline void wv_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void wv_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void wv_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t wv_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t wv_get_be64(const uint8_t *p)
{
    return (uint64_t)wv_get_be32(p) << 32 | (uint64_t)wv_get_be32(p + 4);
}

static inline void wv_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void wv_put_be64(uint8_t *p, uint64_t v)
{
    wv_put_be32(p, (uint32_t)(v >> 32));
    wv_put_be32(p + 4, (uint32_t)v);
}

/* Lowercase hex of in[0..len); out must hold 2*len+1 bytes (NUL-terminated). */
void wv_hex_encode(const uint8_t *in, size_t len, char *out);
/* The 2*len hex digits (either case) at in into out[0..len) (what follows them is not looked at):
 * 0, or WV_EFORMAT at the first character that is not a hex digit. */
int wv_hex_decode(const char *in, uint8_t *out, size_t len);
/* The value of one hex digit (either case), or -1. */
int wv_hex_value(char c);

#endif
