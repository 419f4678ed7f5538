/*
 * test_objfmt.c - object header and trailer: exact layout, round trips, and the error class of
 * every kind of damage (each byte flipped, truncation, newer versions, unknown values).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "pipeline/objfmt.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Recompute the check of a header (check at 60) or trailer (check at 124), as an independent
 * writer would: first 4 bytes of SHA-256 of everything before it. */
static void fix_check(uint8_t *p, size_t check_off)
{
    uint8_t md[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(p, check_off, md, &n, EVP_sha256(), NULL), 1);
    memcpy(p + check_off, md, 4);
}

static void sample_header(wv_obj_header *h)
{
    wv_obj_header_init(h, WV_OBJ_KIND_WAL, WV_OBJ_COMPRESS_LZ4);
    h->version = 1; /* the version-1 layout, still read */
    h->key_id = 0x0102030405060708ULL;
    for (int i = 0; i < 12; i++)
        h->nonce[i] = (uint8_t)(0xa0 + i);
}

static void sample_info(wv_obj_info *info)
{
    wv_obj_info_init(info);
    info->version = 1;
    info->plain_size = 16 * 1024 * 1024;
    info->payload_size = 123456789012ULL;
    for (int i = 0; i < 32; i++)
        info->sha256[i] = (uint8_t)(i * 7 + 1);
    info->first_commit_us = 1795000000000000LL;
    info->last_commit_us = 1795000000999999LL;
    info->commit_count = 4242;
    info->restore_point_count = 3;
    info->compression = WV_OBJ_COMPRESS_LZ4;
    info->kind = WV_OBJ_KIND_WAL;
}

static void test_header_layout_and_roundtrip(void **state)
{
    wv_obj_header h, back;
    uint8_t buf[WV_OBJ_HEADER_SIZE];
    wv_err err = {0};
    sample_header(&h);
    assert_int_equal(wv_obj_header_encode(&h, buf, &err), 0);
    /* The layout, byte for byte. */
    assert_memory_equal(buf, "\x89WVOBJ\r\n", 8);
    assert_int_equal(buf[8] | buf[9] << 8, 1);
    assert_int_equal(buf[10] | buf[11] << 8, 64);
    assert_int_equal(buf[12], 1);
    assert_int_equal(buf[13], 0);
    assert_int_equal(buf[14], 1);
    assert_int_equal(buf[15], 1);
    assert_true(le64(buf + 16) == 0x0102030405060708ULL);
    assert_int_equal(buf[24], 0xa0);
    assert_int_equal(buf[35], 0xab);
    for (int i = 36; i < 60; i++)
        assert_int_equal(buf[i], 0);
    uint8_t copy[WV_OBJ_HEADER_SIZE];
    memcpy(copy, buf, sizeof(copy));
    fix_check(copy, 60);
    assert_memory_equal(copy, buf, sizeof(buf));

    assert_int_equal(wv_obj_header_decode(buf, sizeof(buf), &back, &err), 0);
    assert_int_equal(back.version, 1);
    assert_int_equal(back.compression, h.compression);
    assert_int_equal(back.cipher, h.cipher);
    assert_int_equal(back.digest, WV_OBJ_DIGEST_SHA256);
    assert_int_equal(back.kind, h.kind);
    assert_true(back.key_id == h.key_id);
    assert_memory_equal(back.nonce, h.nonce, 12);

    /* Every kind and compression round-trips. */
    for (int kind = 0; kind <= WV_OBJ_KIND_MAX; kind++) {
        for (int comp = 0; comp <= 1; comp++) {
            wv_obj_header_init(&h, (uint8_t)kind, (uint8_t)comp);
            h.version = 1;
            assert_int_equal(wv_obj_header_encode(&h, buf, &err), 0);
            /* A longer buffer (header followed by payload) decodes the same. */
            uint8_t longer[100] = {0};
            memcpy(longer, buf, sizeof(buf));
            assert_int_equal(wv_obj_header_decode(longer, sizeof(longer), &back, &err), 0);
            assert_int_equal(back.kind, kind);
            assert_int_equal(back.compression, comp);
        }
    }
}

static void test_trailer_layout_and_roundtrip(void **state)
{
    wv_obj_info info, back;
    uint8_t buf[WV_OBJ_TRAILER_SIZE];
    wv_err err = {0};
    sample_info(&info);
    assert_int_equal(wv_obj_trailer_encode(&info, buf, &err), 0);
    assert_memory_equal(buf, "\x89WVEND\r\n", 8);
    assert_memory_not_equal(buf, "\x89WVOBJ\r\n", 8);
    assert_true(le64(buf + 8) == info.plain_size);
    assert_true(le64(buf + 16) == info.payload_size);
    assert_memory_equal(buf + 24, info.sha256, 32);
    assert_true((int64_t)le64(buf + 56) == info.first_commit_us);
    assert_true((int64_t)le64(buf + 64) == info.last_commit_us);
    assert_int_equal(le32(buf + 72), 4242);
    assert_int_equal(le32(buf + 76), 3);
    assert_int_equal(buf[80] | buf[81] << 8, 1);
    assert_int_equal(buf[82], WV_OBJ_COMPRESS_LZ4);
    assert_int_equal(buf[83], 0);
    assert_int_equal(buf[84], WV_OBJ_DIGEST_SHA256);
    assert_int_equal(buf[85], WV_OBJ_KIND_WAL);
    for (int i = 86; i < 124; i++)
        assert_int_equal(buf[i], 0);

    memset(&back, 0, sizeof(back)); /* padding compares equal too */
    assert_int_equal(wv_obj_trailer_decode(buf, sizeof(buf), &back, &err), 0);
    assert_memory_equal(&back, &info, sizeof(info));

    /* No commit times: INT64_MIN survives; decoding uses the last 128 bytes of a longer buffer. */
    wv_obj_info_init(&info);
    assert_true(info.first_commit_us == INT64_MIN && info.last_commit_us == INT64_MIN);
    assert_int_equal(wv_obj_trailer_encode(&info, buf, &err), 0);
    uint8_t suffix[300];
    memset(suffix, 0x5a, sizeof(suffix));
    memcpy(suffix + sizeof(suffix) - sizeof(buf), buf, sizeof(buf));
    assert_int_equal(wv_obj_trailer_decode(suffix, sizeof(suffix), &back, &err), 0);
    assert_true(back.first_commit_us == WV_OBJ_TIME_NONE);
    assert_true(back.last_commit_us == WV_OBJ_TIME_NONE);
    assert_int_equal(back.commit_count, 0);
}

/* Flip each bit pattern of each byte: always WV_ECORRUPT (magic or check catches it). */
static void test_header_every_byte_flipped(void **state)
{
    wv_obj_header h, back;
    uint8_t good[WV_OBJ_HEADER_SIZE], bad[WV_OBJ_HEADER_SIZE];
    sample_header(&h);
    assert_int_equal(wv_obj_header_encode(&h, good, NULL), 0);
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    for (int i = 0; i < WV_OBJ_HEADER_SIZE; i++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            wv_err err = {0};
            memcpy(bad, good, sizeof(good));
            bad[i] ^= flips[f];
            assert_int_equal(wv_obj_header_decode(bad, sizeof(bad), &back, &err), WV_ECORRUPT);
            if (i < 8)
                assert_non_null(strstr(err.msg, "magic"));
            else
                assert_non_null(strstr(err.msg, "check mismatch"));
        }
    }
}

static void test_trailer_every_byte_flipped(void **state)
{
    wv_obj_info info, back;
    uint8_t good[WV_OBJ_TRAILER_SIZE], bad[WV_OBJ_TRAILER_SIZE];
    sample_info(&info);
    assert_int_equal(wv_obj_trailer_encode(&info, good, NULL), 0);
    for (int i = 0; i < WV_OBJ_TRAILER_SIZE; i++) {
        wv_err err = {0};
        memcpy(bad, good, sizeof(good));
        bad[i] ^= 0x10;
        assert_int_equal(wv_obj_trailer_decode(bad, sizeof(bad), &back, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, i < 8 ? "magic" : "check mismatch"));
    }
}

/* Intact headers (check recomputed) with a field this version must refuse. */
static void test_header_semantic_table(void **state)
{
    static const struct {
        const char *name;
        int off;
        uint8_t val;
        int rc;
        const char *msg;
    } cases[] = {
        {"version 4", 8, 4, WV_EFORMAT, "newer walvault"},
        {"version 3 with a version-1 length", 8, 3, WV_ECORRUPT, "header length"},
        {"version 0x0100", 9, 1, WV_EFORMAT, "newer walvault"},
        {"version 0", 8, 0, WV_ECORRUPT, "version 0"},
        {"header length 65", 10, 65, WV_ECORRUPT, "header length"},
        {"header length 0", 10, 0, WV_ECORRUPT, "header length"},
        {"compression 2", 12, 2, WV_EFORMAT, "unknown compression"},
        {"cipher 2", 13, 2, WV_EFORMAT, "unknown cipher"},
        {"digest 0", 14, 0, WV_EFORMAT, "unknown digest"},
        {"digest 2", 14, 2, WV_EFORMAT, "unknown digest"},
        {"kind 8", 15, 8, WV_EFORMAT, "unknown object kind"},
        {"reserved 36", 36, 1, WV_ECORRUPT, "reserved"},
        {"reserved 59", 59, 0x80, WV_ECORRUPT, "reserved"},
        {"cipher 1 outside version 3", 13, 1, WV_ECORRUPT, "a cipher in a version-1"},
        {"kind 7 is valid", 15, 7, 0, NULL},
    };
    wv_obj_header h, back;
    uint8_t good[WV_OBJ_HEADER_SIZE], buf[WV_OBJ_HEADER_SIZE];
    sample_header(&h);
    assert_int_equal(wv_obj_header_encode(&h, good, NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_err err = {0};
        memcpy(buf, good, sizeof(buf));
        buf[cases[i].off] = cases[i].val;
        fix_check(buf, 60);
        int rc = wv_obj_header_decode(buf, sizeof(buf), &back, &err);
        if (rc != cases[i].rc)
            fail_msg("%s: got %d (%s), want %d", cases[i].name, rc, err.msg, cases[i].rc);
        if (cases[i].msg && !strstr(err.msg, cases[i].msg))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].name, err.msg, cases[i].msg);
        if (cases[i].rc == WV_EFORMAT)
            assert_true(strlen(err.hint) > 0);
    }
}

static void test_trailer_semantic_table(void **state)
{
    static const struct {
        const char *name;
        int off;
        uint8_t val;
        int rc;
        const char *msg;
    } cases[] = {
        {"version 4", 80, 4, WV_EFORMAT, "newer walvault"},
        {"version 3 without a cipher", 80, 3, WV_ECORRUPT, "without a cipher"},
        {"cipher 1 outside version 3", 83, 1, WV_ECORRUPT, "a cipher in a version-1"},
        {"version 0", 80, 0, WV_ECORRUPT, "version 0"},
        {"compression 9", 82, 9, WV_EFORMAT, "unknown compression"},
        {"cipher 3", 83, 3, WV_EFORMAT, "unknown cipher"},
        {"digest 0", 84, 0, WV_EFORMAT, "unknown digest"},
        {"kind 200", 85, 200, WV_EFORMAT, "unknown object kind"},
        {"reserved 86", 86, 1, WV_ECORRUPT, "reserved"},
        {"reserved 123", 123, 1, WV_ECORRUPT, "reserved"},
    };
    wv_obj_info info, back;
    uint8_t good[WV_OBJ_TRAILER_SIZE], buf[WV_OBJ_TRAILER_SIZE];
    sample_info(&info);
    assert_int_equal(wv_obj_trailer_encode(&info, good, NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_err err = {0};
        memcpy(buf, good, sizeof(buf));
        buf[cases[i].off] = cases[i].val;
        fix_check(buf, 124);
        int rc = wv_obj_trailer_decode(buf, sizeof(buf), &back, &err);
        if (rc != cases[i].rc)
            fail_msg("%s: got %d (%s), want %d", cases[i].name, rc, err.msg, cases[i].rc);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].name, err.msg, cases[i].msg);
    }
}

static void test_truncated(void **state)
{
    wv_obj_header h;
    wv_obj_info info;
    uint8_t hb[WV_OBJ_HEADER_SIZE], tb[WV_OBJ_TRAILER_SIZE];
    sample_header(&h);
    sample_info(&info);
    assert_int_equal(wv_obj_header_encode(&h, hb, NULL), 0);
    assert_int_equal(wv_obj_trailer_encode(&info, tb, NULL), 0);
    static const size_t hlens[] = {0, 1, 8, 12, 63};
    for (size_t i = 0; i < sizeof(hlens) / sizeof(hlens[0]); i++) {
        wv_err err = {0};
        assert_int_equal(wv_obj_header_decode(hb, hlens[i], &h, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "truncated object header"));
    }
    static const size_t tlens[] = {0, 1, 64, 127};
    for (size_t i = 0; i < sizeof(tlens) / sizeof(tlens[0]); i++) {
        wv_err err = {0};
        assert_int_equal(wv_obj_trailer_decode(tb, tlens[i], &info, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "truncated object trailer"));
    }
    /* A trailer missing its last byte, read as a suffix with one byte before it: the magic no
     * longer sits where it should. */
    uint8_t shifted[WV_OBJ_TRAILER_SIZE];
    wv_err err = {0};
    shifted[0] = 0;
    memcpy(shifted + 1, tb, WV_OBJ_TRAILER_SIZE - 1);
    assert_int_equal(wv_obj_trailer_decode(shifted, sizeof(shifted), &info, &err), WV_ECORRUPT);
}

static void test_encode_refuses_unknown_values(void **state)
{
    wv_obj_header h;
    wv_obj_info info;
    uint8_t hb[WV_OBJ_HEADER_SIZE], tb[WV_OBJ_TRAILER_SIZE];
    wv_err err = {0};
    wv_obj_header_init(&h, 8, 0);
    assert_int_equal(wv_obj_header_encode(&h, hb, &err), WV_EINTERNAL);
    wv_obj_header_init(&h, 0, 2);
    assert_int_equal(wv_obj_header_encode(&h, hb, &err), WV_EINTERNAL);
    wv_obj_header_init(&h, 0, 0);
    h.version = 3;
    assert_int_equal(wv_obj_header_encode(&h, hb, &err), WV_EINTERNAL);
    /* A version-1 header cannot carry a name. */
    wv_obj_header_init(&h, 0, 0);
    assert_int_equal(wv_obj_header_bind(&h, "wal/x", &err), 0);
    h.version = 1;
    assert_int_equal(wv_obj_header_encode(&h, hb, &err), WV_EINTERNAL);
    wv_obj_info_init(&info);
    info.digest = 0;
    assert_int_equal(wv_obj_trailer_encode(&info, tb, &err), WV_EINTERNAL);
    wv_obj_info_init(&info);
    info.kind = 99;
    assert_int_equal(wv_obj_trailer_encode(&info, tb, &err), WV_EINTERNAL);
}

static void test_kind_names(void **state)
{
    static const struct {
        uint8_t kind;
        const char *name;
    } cases[] = {
        {WV_OBJ_KIND_GENERIC, "generic"},
        {WV_OBJ_KIND_WAL, "wal segment"},
        {WV_OBJ_KIND_PARTIAL, "partial wal segment"},
        {WV_OBJ_KIND_HISTORY, "timeline history"},
        {WV_OBJ_KIND_BACKUP_HISTORY, "backup history"},
        {WV_OBJ_KIND_BACKUP_FILE, "backup file"},
        {WV_OBJ_KIND_MANIFEST, "manifest"},
        {WV_OBJ_KIND_REPO_INFO, "repository info"},
        {8, "unknown"},
        {255, "unknown"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(wv_obj_kind_name(cases[i].kind), cases[i].name);
}

#define SEG1 "wal/0000000100000000/000000010000000000000001"
#define SEG2 "wal/0000000100000000/000000010000000000000002"

/* Version 2: the bound name after the fixed part, with its own check. */
static void test_v2_layout_and_binding(void **state)
{
    wv_obj_header h, back;
    uint8_t buf[WV_OBJ_HEADER_MAX];
    wv_err err = {0};
    int unbound = -1;
    const size_t n = strlen(SEG2);
    wv_obj_header_init(&h, WV_OBJ_KIND_WAL, WV_OBJ_COMPRESS_LZ4);
    assert_int_equal(h.version, 2);
    assert_int_equal(wv_obj_header_length(&h), 68); /* unbound: the name check alone */
    assert_int_equal(wv_obj_header_bind(&h, SEG2, &err), 0);
    assert_int_equal(wv_obj_header_length(&h), 64 + n + 4);
    assert_int_equal(wv_obj_header_encode(&h, buf, &err), 0);
    assert_memory_equal(buf, "\x89WVOBJ\r\n", 8);
    assert_int_equal(buf[8] | buf[9] << 8, 2);
    assert_int_equal(buf[10] | buf[11] << 8, 64 + n + 4);
    assert_int_equal(buf[36] | buf[37] << 8, n);
    for (int i = 38; i < 60; i++)
        assert_int_equal(buf[i], 0);
    assert_memory_equal(buf + 64, SEG2, n);
    uint8_t copy[WV_OBJ_HEADER_MAX];
    memcpy(copy, buf, sizeof(copy));
    fix_check(copy, 60);
    fix_check(copy, 64 + n);
    assert_memory_equal(copy, buf, 64 + n + 4);
    assert_int_equal(wv_obj_header_declared_length(buf), 64 + n + 4);

    assert_int_equal(wv_obj_header_decode(buf, 64 + n + 4, &back, &err), 0);
    assert_int_equal(back.version, 2);
    assert_int_equal(back.name_len, n);
    assert_string_equal(back.name, SEG2);
    assert_int_equal(back.kind, WV_OBJ_KIND_WAL);
    assert_int_equal(wv_obj_header_length(&back), 64 + n + 4);

    /* The binding: the right key passes, another is corruption naming both. */
    assert_int_equal(wv_obj_check_binding(&back, SEG2, &unbound, &err), 0);
    assert_int_equal(unbound, 0);
    wv_err_clear(&err);
    assert_int_equal(wv_obj_check_binding(&back, SEG1, &unbound, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "\"" SEG1 "\" holds the object stored as \"" SEG2 "\""));
    assert_non_null(strstr(err.msg, "renamed or copied wrongly"));
    wv_err_clear(&err);
    /* A prefix or an extension of the name is another name. */
    assert_int_equal(wv_obj_check_binding(&back, SEG2 ".partial", NULL, &err), WV_ECORRUPT);
    assert_int_equal(
        wv_obj_check_binding(&back, "wal/0000000100000000/00000001000000000000000", NULL, &err),
        WV_ECORRUPT);

    /* Unbound (version 2 without a name, and version 1): read, and said so. */
    wv_obj_header_init(&h, WV_OBJ_KIND_WAL, 0);
    assert_int_equal(wv_obj_header_encode(&h, buf, &err), 0);
    assert_int_equal(wv_obj_header_decode(buf, 68, &back, &err), 0);
    assert_int_equal(wv_obj_check_binding(&back, SEG1, &unbound, &err), 0);
    assert_int_equal(unbound, 1);
    h.version = 1;
    assert_int_equal(wv_obj_header_encode(&h, buf, &err), 0);
    assert_int_equal(wv_obj_header_decode(buf, 64, &back, &err), 0);
    assert_int_equal(back.version, 1);
    unbound = 0;
    assert_int_equal(wv_obj_check_binding(&back, SEG1, &unbound, &err), 0);
    assert_int_equal(unbound, 1);

    /* The longest name binds; one byte more is refused when writing. */
    char name[WV_OBJ_NAME_MAX + 2];
    memset(name, 'k', sizeof(name) - 1);
    name[WV_OBJ_NAME_MAX] = '\0';
    wv_obj_header_init(&h, 0, 0);
    assert_int_equal(wv_obj_header_bind(&h, name, &err), 0);
    assert_int_equal(wv_obj_header_encode(&h, buf, &err), 0);
    assert_int_equal(wv_obj_header_decode(buf, WV_OBJ_HEADER_MAX, &back, &err), 0);
    assert_string_equal(back.name, name);
    name[WV_OBJ_NAME_MAX] = 'k';
    name[WV_OBJ_NAME_MAX + 1] = '\0';
    assert_int_equal(wv_obj_header_bind(&h, name, &err), WV_EINTERNAL);
}

/* Every byte of a bound header flipped: corruption, never a header that decodes. */
static void test_v2_every_byte_flipped(void **state)
{
    wv_obj_header h, back;
    uint8_t good[WV_OBJ_HEADER_MAX], bad[WV_OBJ_HEADER_MAX];
    wv_obj_header_init(&h, WV_OBJ_KIND_WAL, WV_OBJ_COMPRESS_LZ4);
    assert_int_equal(wv_obj_header_bind(&h, SEG1, NULL), 0);
    assert_int_equal(wv_obj_header_encode(&h, good, NULL), 0);
    size_t len = wv_obj_header_length(&h);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            wv_err err = {0};
            memcpy(bad, good, len);
            bad[i] ^= (uint8_t)(1u << bit);
            int rc = wv_obj_header_decode(bad, len, &back, &err);
            if (rc != WV_ECORRUPT)
                fail_msg("byte %zu bit %d: got %d (%s)", i, bit, rc, err.msg);
        }
    }
}

/* Intact fixed parts (both checks recomputed) with a bad binding field. */
static void test_v2_binding_fields(void **state)
{
    static const struct {
        const char *name;
        int off;      /* byte to set, -1: none */
        uint16_t val; /* little-endian u16 at off */
        size_t len;   /* bytes given to decode; 0: the header's length */
        const char *msg;
    } cases[] = {
        {"name length above the maximum", 36, WV_OBJ_NAME_MAX + 1, 0, "bound name length"},
        {"name length 0xffff", 36, 0xffff, 0, "bound name length"},
        {"name length one more than the header holds", 36, 46, 0, "header length"},
        {"name length one less", 36, 44, 0, "header length"},
        {"header length 64", 10, 64, 0, "header length"},
        {"header length one more", 10, 64 + 45 + 5, 0, "header length"},
        {"reserved 38", 38, 1, 0, "reserved"},
        {"reserved 58", 58, 0x100, 0, "reserved"},
        {"truncated before the name check", -1, 0, 64 + 45, "truncated object header"},
        {"only the fixed part", -1, 0, 64, "truncated object header"},
    };
    wv_obj_header h, back;
    uint8_t good[WV_OBJ_HEADER_MAX], buf[WV_OBJ_HEADER_MAX];
    wv_obj_header_init(&h, WV_OBJ_KIND_WAL, 0);
    assert_int_equal(wv_obj_header_bind(&h, SEG1, NULL), 0);
    assert_int_equal(h.name_len, 45);
    assert_int_equal(wv_obj_header_encode(&h, good, NULL), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_err err = {0};
        memcpy(buf, good, sizeof(buf));
        if (cases[i].off >= 0) {
            buf[cases[i].off] = (uint8_t)cases[i].val;
            buf[cases[i].off + 1] = (uint8_t)(cases[i].val >> 8);
            fix_check(buf, 60);
            fix_check(buf, 64 + 45);
        }
        size_t len = cases[i].len ? cases[i].len : 64 + 45 + 4;
        int rc = wv_obj_header_decode(buf, len, &back, &err);
        if (rc != WV_ECORRUPT)
            fail_msg("%s: got %d (%s)", cases[i].name, rc, err.msg);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].name, err.msg, cases[i].msg);
    }
    /* A NUL byte in the name, both checks right. */
    wv_err err = {0};
    memcpy(buf, good, sizeof(buf));
    buf[64 + 10] = 0;
    fix_check(buf, 64 + 45);
    assert_int_equal(wv_obj_header_decode(buf, 64 + 45 + 4, &back, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "NUL"));
    /* Another name of the same length, name check recomputed: decodes, and the binding says
     * which object it is. */
    memcpy(buf, good, sizeof(buf));
    buf[64 + 44] = '2';
    fix_check(buf, 64 + 45);
    assert_int_equal(wv_obj_header_decode(buf, 64 + 45 + 4, &back, &err), 0);
    assert_string_equal(back.name, SEG2);
    assert_int_equal(wv_obj_check_binding(&back, SEG1, NULL, &err), WV_ECORRUPT);
    /* The declared length is clamped for the reader's buffer. */
    buf[10] = 0xff;
    buf[11] = 0xff;
    assert_int_equal(wv_obj_header_declared_length(buf), WV_OBJ_HEADER_MAX);
}

/* A version-2 trailer: the same layout with version 2; it must agree with nothing else here. */
static void test_v2_trailer(void **state)
{
    wv_obj_info info, back;
    uint8_t buf[WV_OBJ_TRAILER_SIZE];
    wv_err err = {0};
    wv_obj_info_init(&info);
    assert_int_equal(info.version, 2);
    info.plain_size = 42;
    assert_int_equal(wv_obj_trailer_encode(&info, buf, &err), 0);
    assert_int_equal(buf[80] | buf[81] << 8, 2);
    assert_int_equal(wv_obj_trailer_decode(buf, sizeof(buf), &back, &err), 0);
    assert_int_equal(back.version, 2);
    assert_true(back.plain_size == 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_layout_and_roundtrip),
        cmocka_unit_test(test_trailer_layout_and_roundtrip),
        cmocka_unit_test(test_header_every_byte_flipped),
        cmocka_unit_test(test_trailer_every_byte_flipped),
        cmocka_unit_test(test_header_semantic_table),
        cmocka_unit_test(test_trailer_semantic_table),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_encode_refuses_unknown_values),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_v2_layout_and_binding),
        cmocka_unit_test(test_v2_every_byte_flipped),
        cmocka_unit_test(test_v2_binding_fields),
        cmocka_unit_test(test_v2_trailer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
