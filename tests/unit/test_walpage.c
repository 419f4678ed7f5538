/*
 * test_walpage.c - the XLOG_PAGE_MAGIC of every PostgreSQL major version from 10 to 18 (one test
 * per entry, against the value each release's xlog_internal.h defines), page header decoding, and
 * each refusal of a segment's first page header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/bytes.h"
#include "core/error.h"
#include "pg/walpage.h"

static void check_version(int major, uint16_t magic)
{
    assert_int_equal(wv_walpage_major_of_magic(magic), major);
    assert_int_equal(wv_walpage_magic_of_major(major), magic);
}

static void test_pg10(void **state)
{
    check_version(10, 0xD097);
}
static void test_pg11(void **state)
{
    check_version(11, 0xD098);
}
static void test_pg12(void **state)
{
    check_version(12, 0xD101);
}
static void test_pg13(void **state)
{
    check_version(13, 0xD106);
}
static void test_pg14(void **state)
{
    check_version(14, 0xD10D);
}
static void test_pg15(void **state)
{
    check_version(15, 0xD110);
}
static void test_pg16(void **state)
{
    check_version(16, 0xD113);
}
static void test_pg17(void **state)
{
    check_version(17, 0xD116);
}
static void test_pg18(void **state)
{
    check_version(18, 0xD118);
}

static void test_unknown(void **state)
{
    /* 9.6's magic, a made-up next one, and nothing at all. */
    assert_int_equal(wv_walpage_major_of_magic(0xD093), 0);
    assert_int_equal(wv_walpage_major_of_magic(0xD119), 0);
    assert_int_equal(wv_walpage_major_of_magic(0), 0);
    assert_int_equal(wv_walpage_magic_of_major(9), 0);
    assert_int_equal(wv_walpage_magic_of_major(19), 0);
    /* No two versions share a magic. */
    for (int a = WV_PG_MAJOR_MIN; a <= WV_PG_MAJOR_MAX; a++)
        for (int b = a + 1; b <= WV_PG_MAJOR_MAX; b++)
            assert_int_not_equal(wv_walpage_magic_of_major(a), wv_walpage_magic_of_major(b));
}

/* A first page header as PostgreSQL 15 writes it for segment 3 of 16 MiB segments. */
static void make_first(uint8_t p[WV_XLP_LONG_HEADER_SIZE])
{
    memset(p, 0, WV_XLP_LONG_HEADER_SIZE);
    wv_put_le16(p, 0xD110);
    wv_put_le16(p + 2, WV_XLP_LONG_HEADER | WV_XLP_BKP_REMOVABLE);
    wv_put_le32(p + 4, 2);
    wv_put_le64(p + 8, UINT64_C(3) << 24);
    wv_put_le32(p + 16, 0);
    wv_put_le64(p + 24, UINT64_C(7312345678901234567));
    wv_put_le32(p + 32, 16u << 20);
    wv_put_le32(p + 36, 8192);
}

static void test_decode(void **state)
{
    uint8_t p[WV_XLP_LONG_HEADER_SIZE];
    make_first(p);
    wv_walpage h;
    wv_walpage_decode(p, sizeof(p), &h);
    assert_int_equal(h.magic, 0xD110);
    assert_int_equal(h.info, WV_XLP_LONG_HEADER | WV_XLP_BKP_REMOVABLE);
    assert_int_equal(h.timeline, 2);
    assert_true(h.pageaddr == UINT64_C(3) << 24);
    assert_true(h.sysid == UINT64_C(7312345678901234567));
    assert_int_equal(h.seg_size, 16u << 20);
    assert_int_equal(h.blcksz, 8192);

    /* A short header: the long fields stay 0 even if the bytes after it are not. */
    wv_put_le16(p + 2, WV_XLP_FIRST_IS_CONTRECORD);
    wv_put_le32(p + 16, 123);
    wv_walpage_decode(p, sizeof(p), &h);
    assert_int_equal(h.rem_len, 123);
    assert_true(h.sysid == 0 && h.seg_size == 0 && h.blcksz == 0);
    /* A long flag with too few bytes given: the long fields are not read. */
    wv_put_le16(p + 2, WV_XLP_LONG_HEADER);
    wv_walpage_decode(p, WV_XLP_SHORT_HEADER_SIZE, &h);
    assert_true(h.sysid == 0 && h.seg_size == 0);
}

static void test_check_first_good(void **state)
{
    uint8_t p[WV_XLP_LONG_HEADER_SIZE];
    wv_walpage h;
    wv_err err;
    for (int major = WV_PG_MAJOR_MIN; major <= WV_PG_MAJOR_MAX; major++) {
        make_first(p);
        wv_put_le16(p, wv_walpage_magic_of_major(major));
        wv_err_clear(&err);
        assert_int_equal(wv_walpage_check_first(p, sizeof(p), "seg", &h, &err), 0);
        assert_int_equal(wv_walpage_major_of_magic(h.magic), major);
    }
}

static void test_check_first_refusals(void **state)
{
    static const struct {
        int off, width;
        uint64_t value;
        const char *needle;
    } cases[] = {
        {0, 2, 0xD119, "page magic 0xD119"},
        {0, 2, 0x0000, "page magic 0x0000"},
        {2, 2, 0, "page flags 0x0000"},                         /* short header */
        {2, 2, WV_XLP_LONG_HEADER | 0x10, "page flags 0x0012"}, /* unknown flag */
        {32, 4, 12345, "invalid WAL segment size 12345"},       /* not a power of two */
        {32, 4, 0, "invalid WAL segment size 0"},
        {32, 4, 2u << 30, "invalid WAL segment size 2147483648"}, /* over 1 GiB */
        {36, 4, 512, "block size 512"},
        {36, 4, 3000, "block size 3000"},
        {4, 4, 0, "timeline 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t p[WV_XLP_LONG_HEADER_SIZE];
        make_first(p);
        if (cases[i].width == 2)
            wv_put_le16(p + cases[i].off, (uint16_t)cases[i].value);
        else
            wv_put_le32(p + cases[i].off, (uint32_t)cases[i].value);
        wv_walpage h;
        wv_err err;
        wv_err_clear(&err);
        assert_int_equal(wv_walpage_check_first(p, sizeof(p), "pg_wal/X", &h, &err), WV_EFORMAT);
        if (!strstr(err.msg, cases[i].needle) || !strstr(err.msg, "\"pg_wal/X\""))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].needle);
    }
    uint8_t p[WV_XLP_LONG_HEADER_SIZE];
    make_first(p);
    wv_walpage h;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_walpage_check_first(p, 39, "short", &h, &err), WV_EFORMAT);
    assert_non_null(strstr(err.msg, "too short to be a WAL segment (39 bytes)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg10),
        cmocka_unit_test(test_pg11),
        cmocka_unit_test(test_pg12),
        cmocka_unit_test(test_pg13),
        cmocka_unit_test(test_pg14),
        cmocka_unit_test(test_pg15),
        cmocka_unit_test(test_pg16),
        cmocka_unit_test(test_pg17),
        cmocka_unit_test(test_pg18),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_check_first_good),
        cmocka_unit_test(test_check_first_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
