/*
 * test_bytes.c - the byte-order readers and writers (both orders, every width, round trips and
 * the exact byte layout) and hex encoding and decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/bytes.h"
#include "core/error.h"

static void test_little_endian(void **state)
{
    const uint8_t b[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF};
    assert_int_equal(wv_get_le16(b), 0x2301);
    assert_int_equal(wv_get_le32(b), 0x67452301u);
    assert_true(wv_get_le64(b) == UINT64_C(0xEFCDAB8967452301));

    uint8_t o[8];
    memset(o, 0, sizeof(o));
    wv_put_le16(o, 0x2301);
    assert_memory_equal(o, b, 2);
    wv_put_le32(o, 0x67452301u);
    assert_memory_equal(o, b, 4);
    wv_put_le64(o, UINT64_C(0xEFCDAB8967452301));
    assert_memory_equal(o, b, 8);
}

static void test_big_endian(void **state)
{
    const uint8_t b[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF};
    assert_int_equal(wv_get_be32(b), 0x01234567u);
    assert_true(wv_get_be64(b) == UINT64_C(0x0123456789ABCDEF));
    uint8_t o[8];
    wv_put_be32(o, 0x01234567u);
    assert_memory_equal(o, b, 4);
    wv_put_be64(o, UINT64_C(0x0123456789ABCDEF));
    assert_memory_equal(o, b, 8);
}

static void test_round_trips(void **state)
{
    static const uint64_t v[] = {0,          1,           0x7F,        0x80,
                                 0xFF,       0x100,       0xFFFF,      0x10000,
                                 0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu, UINT64_C(0x100000000),
                                 UINT64_MAX};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t o[8];
        wv_put_le64(o, v[i]);
        assert_true(wv_get_le64(o) == v[i]);
        wv_put_be64(o, v[i]);
        assert_true(wv_get_be64(o) == v[i]);
        wv_put_le32(o, (uint32_t)v[i]);
        assert_true(wv_get_le32(o) == (uint32_t)v[i]);
        wv_put_be32(o, (uint32_t)v[i]);
        assert_true(wv_get_be32(o) == (uint32_t)v[i]);
        wv_put_le16(o, (uint16_t)v[i]);
        assert_true(wv_get_le16(o) == (uint16_t)v[i]);
    }
}

static void test_hex(void **state)
{
    const uint8_t in[] = {0x00, 0x0F, 0xA5, 0xFF, 0x10};
    char out[2 * sizeof(in) + 1];
    memset(out, 'x', sizeof(out));
    wv_hex_encode(in, sizeof(in), out);
    assert_string_equal(out, "000fa5ff10");
    wv_hex_encode(in, 0, out);
    assert_string_equal(out, "");

    uint8_t back[sizeof(in)];
    assert_int_equal(wv_hex_decode("000fa5ff10", back, sizeof(back)), 0);
    assert_memory_equal(back, in, sizeof(in));
    /* Either case; what follows the digits is not looked at. */
    assert_int_equal(wv_hex_decode("000FA5FF10 trailing", back, sizeof(back)), 0);
    assert_memory_equal(back, in, sizeof(in));
    /* A non-digit anywhere, and a string too short, are refused. */
    assert_int_equal(wv_hex_decode("000fa5ff1g", back, sizeof(back)), WV_EFORMAT);
    assert_int_equal(wv_hex_decode("0x0fa5ff10", back, sizeof(back)), WV_EFORMAT);
    assert_int_equal(wv_hex_decode("000fa5ff1", back, sizeof(back)), WV_EFORMAT);
    assert_int_equal(wv_hex_decode("", back, 1), WV_EFORMAT);

    for (int c = 0; c < 256; c++) {
        int want = (c >= '0' && c <= '9')   ? c - '0'
                   : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                   : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                            : -1;
        assert_int_equal(wv_hex_value((char)c), want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_little_endian),
        cmocka_unit_test(test_big_endian),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
