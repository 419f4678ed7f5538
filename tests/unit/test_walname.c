/*
 * test_walname.c - WAL file names (valid and invalid spellings), segment arithmetic at 1 MiB,
 * 16 MiB and 1 GiB segments, LSN parse/format round trips and timeline history files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "pg/walname.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static const struct {
    const char *name;
    wv_walname_kind kind;
    uint32_t tli, log, seg, backup_offset;
} valid_names[] = {
    {"000000010000000000000001", WV_WALNAME_SEGMENT, 1, 0, 1, 0},
    {"00000001000000A3000000FF", WV_WALNAME_SEGMENT, 1, 0xA3, 0xFF, 0},
    {"0000000A0000001B00000C2D", WV_WALNAME_SEGMENT, 10, 0x1B, 0xC2D, 0},
    {"FFFFFFFFFFFFFFFFFFFFFFFF", WV_WALNAME_SEGMENT, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0},
    {"000000010000000000000000", WV_WALNAME_SEGMENT, 1, 0, 0, 0},
    {"000000020000000100000002.partial", WV_WALNAME_PARTIAL, 2, 1, 2, 0},
    {"00000002.history", WV_WALNAME_HISTORY, 2, 0, 0, 0},
    {"0000000A.history", WV_WALNAME_HISTORY, 10, 0, 0, 0},
    {"FFFFFFFF.history", WV_WALNAME_HISTORY, 0xFFFFFFFF, 0, 0, 0},
    {"000000010000000000000002.00000028.backup", WV_WALNAME_BACKUP, 1, 0, 2, 0x28},
    {"000000030000000A000000FE.00FFFFFF.backup", WV_WALNAME_BACKUP, 3, 0xA, 0xFE, 0xFFFFFF},
};

static const char *const invalid_names[] = {
    "",
    "0",
    "00000001000000000000001",   /* 23 digits */
    "0000000100000000000000011", /* 25 digits */
    "0000000100000000000000a1",  /* lowercase */
    "0000000g0000000000000001",
    "0000000G0000000000000001",
    "000000000000000000000001", /* timeline 0 */
    "000000000000000000000001.partial",
    "00000000.history",
    "000000000000000000000001.00000028.backup",
    "RECOVERYXLOG",
    "RECOVERYHISTORY",
    "../000000010000000000000001",
    "pg_wal/000000010000000000000001",
    "/000000010000000000000001",
    "..",
    ".",
    " 000000010000000000000001",
    "000000010000000000000001 ",
    "000000010000000000000001\n",
    "+00000010000000000000001",
    "-00000010000000000000001",
    "000000010000000000000001.",
    "000000010000000000000001.partial.partial",
    "000000010000000000000001.PARTIAL",
    "000000010000000000000001.partia",
    "000000010000000000000001.gz",
    "000000010000000000000001.lz4",
    "000000010000000000000001.history",
    "00000001.partial",
    "00000001.History",
    "00000001.history\n",
    "0000001.history",
    "000000001.history",
    "0000000a.history",
    ".history",
    "000000010000000000000001.0000028.backup",
    "000000010000000000000001.000000280.backup",
    "000000010000000000000001.0000002g.backup",
    "000000010000000000000001.0000002G.backup",
    "000000010000000000000001.00000028",
    "000000010000000000000001.00000028.",
    "000000010000000000000001.00000028.backup.x",
    "000000010000000000000001.00000028.partial",
    "000000010000000000000001..backup",
    "00000001000000000000000100000028.backup",
    "000000010000000000000001.backup",
};

static void test_parse_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_names) / sizeof(valid_names[0]); i++) {
        wv_walname w;
        memset(&w, 0xAA, sizeof(w));
        wv_walname_kind k = wv_walname_parse(valid_names[i].name, &w);
        if (k != valid_names[i].kind)
            fail_msg("%s: kind %d, want %d", valid_names[i].name, k, valid_names[i].kind);
        assert_int_equal(w.kind, valid_names[i].kind);
        assert_int_equal(w.tli, valid_names[i].tli);
        assert_int_equal(w.log, valid_names[i].log);
        assert_int_equal(w.seg, valid_names[i].seg);
        assert_int_equal(w.backup_offset, valid_names[i].backup_offset);
        assert_int_equal(wv_walname_parse(valid_names[i].name, NULL), k);
    }
}

static void test_parse_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_names) / sizeof(invalid_names[0]); i++) {
        wv_walname w;
        memset(&w, 0xAA, sizeof(w));
        wv_walname_kind k = wv_walname_parse(invalid_names[i], &w);
        if (k != WV_WALNAME_INVALID)
            fail_msg("\"%s\" parsed as %s", invalid_names[i], wv_walname_kind_name(k));
        assert_int_equal(w.kind, WV_WALNAME_INVALID);
        assert_int_equal(w.tli, 0);
        assert_int_equal(w.log, 0);
        assert_int_equal(w.seg, 0);
        assert_int_equal(w.backup_offset, 0);
    }
    assert_int_equal(wv_walname_parse(NULL, NULL), WV_WALNAME_INVALID);
    assert_string_equal(wv_walname_kind_name(WV_WALNAME_SEGMENT), "segment");
    assert_string_equal(wv_walname_kind_name(WV_WALNAME_PARTIAL), "partial");
    assert_string_equal(wv_walname_kind_name(WV_WALNAME_HISTORY), "history");
    assert_string_equal(wv_walname_kind_name(WV_WALNAME_BACKUP), "backup");
    assert_string_equal(wv_walname_kind_name(WV_WALNAME_INVALID), "invalid");
}

static void test_segsize_valid(void **state)
{
    (void)state;
    static const struct {
        uint64_t size;
        bool valid;
    } cases[] = {
        {MiB, true},
        {2 * MiB, true},
        {16 * MiB, true},
        {64 * MiB, true},
        {512 * MiB, true},
        {GiB, true},
        {0, false},
        {1, false},
        {MiB / 2, false},
        {MiB - 1, false},
        {MiB + 1, false},
        {3 * MiB, false},
        {24 * MiB, false},
        {2 * GiB, false},
        {GiB + MiB, false},
        {UINT64_MAX, false},
        {UINT64_C(1) << 32, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (wv_wal_segsize_valid(cases[i].size) != cases[i].valid)
            fail_msg("segsize %llu", (unsigned long long)cases[i].size);
    assert_int_equal(wv_wal_segs_per_log(MiB), 4096);
    assert_int_equal(wv_wal_segs_per_log(16 * MiB), 256);
    assert_int_equal(wv_wal_segs_per_log(GiB), 4);
}

/* name <-> segno <-> LSN at the three interesting segment sizes */
static const struct {
    uint64_t segsize;
    const char *name;
    uint64_t segno;
    uint64_t first_lsn;
} seg_cases[] = {
    {16 * MiB, "000000010000000000000000", 0, 0},
    {16 * MiB, "000000010000000000000001", 1, 0x1000000},
    {16 * MiB, "0000000100000000000000FF", 255, 0xFF000000},
    {16 * MiB, "000000010000000100000000", 256, UINT64_C(0x100000000)},
    {16 * MiB, "000000010000000A000000FE", 0xAFE, UINT64_C(0xAFE000000)},
    {16 * MiB, "00000001FFFFFFFF000000FF", UINT64_C(0xFFFFFFFFFF), UINT64_C(0xFFFFFFFFFF000000)},
    {MiB, "000000010000000000000FFF", 4095, 0xFFF00000},
    {MiB, "000000010000000100000000", 4096, UINT64_C(0x100000000)},
    {MiB, "000000010000000A00000FE0", 0xAFE0, UINT64_C(0xAFE000000)},
    {MiB, "00000001FFFFFFFF00000FFF", UINT64_C(0xFFFFFFFFFFF), UINT64_C(0xFFFFFFFFFFF00000)},
    {GiB, "000000010000000000000003", 3, 0xC0000000},
    {GiB, "000000010000000100000000", 4, UINT64_C(0x100000000)},
    {GiB, "000000010000000A00000003", 43, UINT64_C(0xAC0000000)},
    {GiB, "00000001FFFFFFFF00000003", UINT64_C(0x3FFFFFFFF), UINT64_C(0xFFFFFFFFC0000000)},
};

static void test_segment_math(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(seg_cases) / sizeof(seg_cases[0]); i++) {
        uint64_t ss = seg_cases[i].segsize;
        wv_walname w;
        char out[WV_WALNAME_SEGMENT_LEN];
        assert_int_equal(wv_walname_parse(seg_cases[i].name, &w), WV_WALNAME_SEGMENT);
        assert_true(wv_walname_valid_for_segsize(&w, ss));
        assert_int_equal(wv_walname_segno(&w, ss), seg_cases[i].segno);
        wv_walname_format_segment(1, seg_cases[i].segno, ss, out);
        assert_string_equal(out, seg_cases[i].name);
        assert_int_equal(wv_segno_to_lsn(seg_cases[i].segno, ss), seg_cases[i].first_lsn);
        assert_int_equal(wv_lsn_to_segno(seg_cases[i].first_lsn, ss), seg_cases[i].segno);
        assert_int_equal(wv_lsn_to_segno(seg_cases[i].first_lsn + ss - 1, ss), seg_cases[i].segno);
        if (seg_cases[i].first_lsn + ss != 0)
            assert_int_equal(wv_lsn_to_segno(seg_cases[i].first_lsn + ss, ss),
                             seg_cases[i].segno + 1);
    }

    /* every segsize: consecutive segment numbers across a log boundary round-trip */
    for (uint64_t ss = MiB; ss <= GiB; ss *= 2) {
        uint64_t per = wv_wal_segs_per_log(ss);
        for (uint64_t segno = 3 * per - 3; segno < 3 * per + 3; segno++) {
            char out[WV_WALNAME_SEGMENT_LEN];
            wv_walname w;
            wv_walname_format_segment(7, segno, ss, out);
            assert_int_equal(wv_walname_parse(out, &w), WV_WALNAME_SEGMENT);
            assert_int_equal(w.tli, 7);
            assert_int_equal(w.log, segno / per);
            assert_true(wv_walname_valid_for_segsize(&w, ss));
            assert_int_equal(wv_walname_segno(&w, ss), segno);
        }
    }
}

static void test_valid_for_segsize(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint64_t segsize;
        bool valid;
    } cases[] = {
        {"0000000100000000000000FF", 16 * MiB, true},
        {"000000010000000000000100", 16 * MiB, false},
        {"000000010000000000000100", MiB, true},
        {"000000010000000000000FFF", MiB, true},
        {"000000010000000000001000", MiB, false},
        {"000000010000000000000003", GiB, true},
        {"000000010000000000000004", GiB, false},
        {"000000010000000000000004", 512 * MiB, true},
        {"000000010000000000000008", 512 * MiB, false},
        {"0000000100000000000000FF.partial", 16 * MiB, true},
        {"000000010000000000000100.partial", 16 * MiB, false},
        {"000000010000000000000001", 3 * MiB, false}, /* not a legal segment size */
        {"000000010000000000000001", 0, false},
        {"00000002.history", 16 * MiB, true},
        {"00000002.history", 0, false},
        {"000000010000000000000002.00000028.backup", 16 * MiB, true},
        {"000000010000000000000002.00FFFFFF.backup", 16 * MiB, true},
        {"000000010000000000000002.01000000.backup", 16 * MiB, false},
        {"000000010000000000000002.01000000.backup", GiB, true},
        {"000000010000000000000002.000FFFFF.backup", MiB, true},
        {"000000010000000000000002.00100000.backup", MiB, false},
        {"000000010000000000000004.00000000.backup", GiB, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_walname w;
        assert_int_not_equal(wv_walname_parse(cases[i].name, &w), WV_WALNAME_INVALID);
        if (wv_walname_valid_for_segsize(&w, cases[i].segsize) != cases[i].valid)
            fail_msg("%s at segsize %llu: want %d", cases[i].name,
                     (unsigned long long)cases[i].segsize, cases[i].valid);
    }
    wv_walname inv;
    wv_walname_parse("RECOVERYXLOG", &inv);
    assert_false(wv_walname_valid_for_segsize(&inv, 16 * MiB));
    assert_false(wv_walname_valid_for_segsize(NULL, 16 * MiB));
}

static void test_format_other(void **state)
{
    (void)state;
    char h[WV_WALNAME_HISTORY_LEN], b[WV_WALNAME_BACKUP_LEN];
    wv_walname_format_history(2, h);
    assert_string_equal(h, "00000002.history");
    wv_walname_format_history(0xABCDEF12, h);
    assert_string_equal(h, "ABCDEF12.history");

    wv_walname_format_backup(1, UINT64_C(0xAFE000028), 16 * MiB, b);
    assert_string_equal(b, "000000010000000A000000FE.00000028.backup");
    wv_walname_format_backup(3, UINT64_C(0xAFE000028), GiB, b);
    assert_string_equal(b, "000000030000000A00000003.3E000028.backup");
    wv_walname_format_backup(0xFFFFFFFF, UINT64_MAX, MiB, b);
    assert_string_equal(b, "FFFFFFFFFFFFFFFF00000FFF.000FFFFF.backup");
    wv_walname w;
    assert_int_equal(wv_walname_parse(b, &w), WV_WALNAME_BACKUP);
    assert_true(wv_walname_valid_for_segsize(&w, MiB));
    assert_int_equal(wv_segno_to_lsn(wv_walname_segno(&w, MiB), MiB) + w.backup_offset, UINT64_MAX);
}

static void test_lsn(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t lsn;
        const char *canonical;
    } good[] = {
        {"0/0", 0, "0/0"},
        {"16/B374D848", UINT64_C(0x16B374D848), "16/B374D848"},
        {"0/3000028", 0x3000028, "0/3000028"},
        {"00000000/03000028", 0x3000028, "0/3000028"},
        {"FFFFFFFF/FFFFFFFF", UINT64_MAX, "FFFFFFFF/FFFFFFFF"},
        {"a/b", UINT64_C(0xA0000000B), "A/B"},
        {"1/0", UINT64_C(0x100000000), "1/0"},
        {"0/FFFFFFFF", 0xFFFFFFFF, "0/FFFFFFFF"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 42;
        char out[WV_LSN_LEN];
        if (wv_lsn_parse(good[i].text, &v) != 0)
            fail_msg("\"%s\" refused", good[i].text);
        assert_int_equal(v, good[i].lsn);
        wv_lsn_format(v, out);
        assert_string_equal(out, good[i].canonical);
    }
    static const char *const bad[] = {
        "",      "/",           "0/",          "/0",    "0",      "0//0",
        "0/0/0", "123456789/0", "0/123456789", " 0/0",  "0/0 ",   "0x1/0",
        "-1/0",  "+1/0",        "G/0",         "0/0\n", "1,2",    "1 / 2",
        "0/-1",  "16-B374D848", "16:B374D848", "ffff",  "0/0x10",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        if (wv_lsn_parse(bad[i], &v) != WV_EUSAGE)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(v, 42);
    }
    uint64_t v = 42;
    assert_int_equal(wv_lsn_parse(NULL, &v), WV_EUSAGE);

    /* round trips over a spread of values */
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
    for (int i = 0; i < 1000; i++) {
        char out[WV_LSN_LEN];
        uint64_t back;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t lsn = i % 3 == 0 ? x >> (i % 64) : x;
        wv_lsn_format(lsn, out);
        assert_int_equal(wv_lsn_parse(out, &back), 0);
        assert_int_equal(back, lsn);
    }
}

static void test_history_good(void **state)
{
    (void)state;
    static const char text[] = "1\t0/3000000\tno recovery target specified\n"
                               "\n"
                               "# a comment\n"
                               "  # an indented comment\n"
                               "2\t0/5000000\tbefore 2026-11-25 10:00:00+00\n"
                               "5\t1/A0\tat restore point \"x\"\r\n"
                               "6 1/A0\n"
                               "7\t2/0";
    wv_history_entry *e = NULL;
    size_t n = 99;
    wv_err err;
    assert_int_equal(wv_history_parse(text, strlen(text), &e, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_int_equal(e[0].tli, 1);
    assert_int_equal(e[0].switch_lsn, 0x3000000);
    assert_int_equal(e[1].tli, 2);
    assert_int_equal(e[1].switch_lsn, 0x5000000);
    assert_int_equal(e[2].tli, 5);
    assert_int_equal(e[2].switch_lsn, UINT64_C(0x1000000A0));
    assert_int_equal(e[3].tli, 6);
    assert_int_equal(e[3].switch_lsn, UINT64_C(0x1000000A0));
    assert_int_equal(e[4].tli, 7);
    assert_int_equal(e[4].switch_lsn, UINT64_C(0x200000000));

    /* which timeline wrote an LSN on the way to timeline 8 */
    static const struct {
        uint64_t lsn;
        uint32_t tli;
    } at[] = {
        {0, 1},
        {0x2FFFFFF, 1},
        {0x3000000, 2},
        {0x4FFFFFF, 2},
        {0x5000000, 5},
        {UINT64_C(0x10000009F), 5},
        {UINT64_C(0x1000000A0), 7}, /* timeline 6 is empty: it ended where it began */
        {UINT64_C(0x1FFFFFFFF), 7},
        {UINT64_C(0x200000000), 8},
        {UINT64_MAX, 8},
    };
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
        assert_int_equal(wv_history_tli_at(e, n, 8, at[i].lsn), at[i].tli);
    free(e);

    /* only the part given is read, and an empty file has no entries */
    assert_int_equal(wv_history_parse(text, 12, &e, &n, &err), 0);
    assert_int_equal(n, 1);
    free(e);
    assert_int_equal(wv_history_parse("", 0, &e, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(e);
    assert_int_equal(wv_history_parse("\n# x\n\n", 6, &e, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(e);
    assert_int_equal(wv_history_tli_at(NULL, 0, 3, 12345), 3);
}

static void test_history_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"0\t0/1\tx\n",
         "line 1: bad timeline history entry \"0\t0/1\tx\": expected \"TLI<tab>LSN<tab>reason\""},
        {"x\t0/1\n",
         "line 1: bad timeline history entry \"x\t0/1\": expected \"TLI<tab>LSN<tab>reason\""},
        {"1\n", "line 1: bad timeline history entry \"1\": expected \"TLI<tab>LSN<tab>reason\""},
        {"1\t\n",
         "line 1: bad timeline history entry \"1\t\": expected \"TLI<tab>LSN<tab>reason\""},
        {"1\t0/xyz\tr\n", "line 1: bad timeline history entry \"1\t0/xyz\tr\": expected "
                          "\"TLI<tab>LSN<tab>reason\""},
        {"1\t0-1\n",
         "line 1: bad timeline history entry \"1\t0-1\": expected \"TLI<tab>LSN<tab>reason\""},
        {"-1\t0/1\n",
         "line 1: bad timeline history entry \"-1\t0/1\": expected \"TLI<tab>LSN<tab>reason\""},
        {"4294967296\t0/1\n", "line 1: bad timeline history entry \"4294967296\t0/1\": expected "
                              "\"TLI<tab>LSN<tab>reason\""},
        {"1x\t0/1\n",
         "line 1: bad timeline history entry \"1x\t0/1\": expected \"TLI<tab>LSN<tab>reason\""},
        {"# c\n1\t0/1\tok\n\n2\tbad\n",
         "line 4: bad timeline history entry \"2\tbad\": expected \"TLI<tab>LSN<tab>reason\""},
        {"1\t0/1\n1\t0/2\n", "line 2: timeline 1 does not follow timeline 1: timeline IDs must "
                             "increase"},
        {"3\t0/1\n2\t0/2\n", "line 2: timeline 2 does not follow timeline 3: timeline IDs must "
                             "increase"},
        {"1\t0/2\n2\t0/1\n", "line 2: switch point 0/1 is before the previous one, 0/2"},
        {"1\t0/1\x01\n", "line 1: bad timeline history entry \"1\t0/1?\": expected "
                         "\"TLI<tab>LSN<tab>reason\""},
        {"1\t0/100000000000000000000000000000000000000000000000000\n",
         "line 1: bad timeline history entry \"1\t0/100000000000000000000000000000000000...\": "
         "expected \"TLI<tab>LSN<tab>reason\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_history_entry *e = (wv_history_entry *)(uintptr_t)0x1;
        size_t n = 99;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_history_parse(cases[i].text, strlen(cases[i].text), &e, &n, &err);
        if (rc != WV_ECORRUPT || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: rc %d\n got:  %s\n want: %s", i, rc, err.msg, cases[i].msg);
        assert_ptr_equal(e, (wv_history_entry *)(uintptr_t)0x1);
        assert_int_equal(n, 99);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_segsize_valid),
        cmocka_unit_test(test_segment_math),
        cmocka_unit_test(test_valid_for_segsize),
        cmocka_unit_test(test_format_other),
        cmocka_unit_test(test_lsn),
        cmocka_unit_test(test_history_good),
        cmocka_unit_test(test_history_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
