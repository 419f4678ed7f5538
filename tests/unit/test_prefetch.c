/*
 * test_prefetch.c - the prefetch spool's bookkeeping: the depth and the bound for a fetch_ahead,
 * which names a window holds (timeline kept, across a log boundary, at the end of the address
 * space), which spooled names are stale for a wanted one, the record's round trip and refusals,
 * and the fetch_ahead / spool_path config keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "repo/prefetch.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static void test_depth_and_bound(void **state)
{
    assert_int_equal(wv_prefetch_depth(0, 16 * MiB), 0);
    assert_int_equal(wv_prefetch_bound(0, 16 * MiB), 0);
    assert_int_equal(wv_prefetch_depth(64 * MiB, 16 * MiB), 4);
    assert_int_equal(wv_prefetch_bound(64 * MiB, 16 * MiB), 5 * 16 * MiB);
    /* On means at least one segment, even when fetch_ahead is below a segment. */
    assert_int_equal(wv_prefetch_depth(1, 16 * MiB), 1);
    assert_int_equal(wv_prefetch_depth(20 * MiB, 16 * MiB), 1);
    assert_int_equal(wv_prefetch_depth(64 * MiB, GiB), 1);
    /* Capped. */
    assert_int_equal(wv_prefetch_depth(64 * GiB, MiB), WV_PREFETCH_DEPTH_MAX);
    assert_int_equal(wv_prefetch_depth(64 * MiB, 0), 0);
}

static void test_window(void **state)
{
    char out[8][WV_WALNAME_SEGMENT_LEN];
    size_t n = wv_prefetch_window("000000020000000000000005", 16 * MiB, 3, out, 8);
    assert_int_equal(n, 3);
    assert_string_equal(out[0], "000000020000000000000006");
    assert_string_equal(out[1], "000000020000000000000007");
    assert_string_equal(out[2], "000000020000000000000008");
    /* Across the end of a log (256 segments of 16 MiB). */
    n = wv_prefetch_window("0000000100000003000000FE", 16 * MiB, 3, out, 8);
    assert_int_equal(n, 3);
    assert_string_equal(out[0], "0000000100000003000000FF");
    assert_string_equal(out[1], "000000010000000400000000");
    assert_string_equal(out[2], "000000010000000400000001");
    /* 1 GiB segments: 4 per log. */
    n = wv_prefetch_window("000000010000000000000003", GiB, 2, out, 8);
    assert_int_equal(n, 2);
    assert_string_equal(out[0], "000000010000000100000000");
    /* max limits the output. */
    assert_int_equal(wv_prefetch_window("000000010000000000000003", 16 * MiB, 8, out, 2), 2);
    /* The end of the address space. */
    n = wv_prefetch_window("00000001FFFFFFFF000000FE", 16 * MiB, 4, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "00000001FFFFFFFF000000FF");
    /* Not segments, or not valid for the size: nothing. */
    assert_int_equal(wv_prefetch_window("00000002.history", 16 * MiB, 4, out, 8), 0);
    assert_int_equal(wv_prefetch_window("000000010000000000000003.partial", 16 * MiB, 4, out, 8),
                     0);
    assert_int_equal(wv_prefetch_window("000000010000000000000100", 16 * MiB, 4, out, 8), 0);
    assert_int_equal(wv_prefetch_window("000000010000000000000001", 3 * MiB, 4, out, 8), 0);
}

static void test_stale(void **state)
{
    const uint64_t s = 16 * MiB;
    const char *want = "000000010000000000000010";
    /* want itself stays (being served), the window stays. */
    assert_false(wv_prefetch_stale("000000010000000000000010", want, s, 4));
    assert_false(wv_prefetch_stale("000000010000000000000011", want, s, 4));
    assert_false(wv_prefetch_stale("000000010000000000000014", want, s, 4));
    /* Behind, past the window, another timeline: stale. */
    assert_true(wv_prefetch_stale("00000001000000000000000F", want, s, 4));
    assert_true(wv_prefetch_stale("000000010000000000000015", want, s, 4));
    assert_true(wv_prefetch_stale("000000020000000000000011", want, s, 4));
    assert_true(wv_prefetch_stale("000000020000000000000011", "000000030000000000000010", s, 4));
    /* Anything when want is none or no segment; a spooled name that is no segment. */
    assert_true(wv_prefetch_stale("000000010000000000000011", "", s, 4));
    assert_true(wv_prefetch_stale("000000010000000000000011", "00000002.history", s, 4));
    assert_true(wv_prefetch_stale("lock", want, s, 4));
}

static void test_record(void **state)
{
    wv_prefetch_rec rec = {.tli = 0x1A, .repo_index = 2, .plain_size = 16 * MiB};
    for (int i = 0; i < 32; i++)
        rec.sha256[i] = (uint8_t)(i * 7 + 1);
    snprintf(rec.boot_id, sizeof(rec.boot_id), "0b9f6c1e-2d3a-4f5b-8c7d-9e0f1a2b3c4d");
    char line[256];
    int n = wv_prefetch_rec_format(&rec, line, sizeof(line));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(line));
    assert_non_null(strstr(line, "walvault-prefetch 1 tli=0000001A repo=2 size=16777216 sha256="));
    wv_prefetch_rec back;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_prefetch_rec_parse(line, &back, &err), 0);
    assert_int_equal(back.tli, rec.tli);
    assert_int_equal(back.repo_index, 2);
    assert_int_equal(back.plain_size, rec.plain_size);
    assert_memory_equal(back.sha256, rec.sha256, 32);
    assert_string_equal(back.boot_id, rec.boot_id);

    /* Too short a buffer, a boot id with blanks: refused. */
    assert_int_equal(wv_prefetch_rec_format(&rec, line, 40), -1);
    wv_prefetch_rec bad = rec;
    snprintf(bad.boot_id, sizeof(bad.boot_id), "a b");
    assert_int_equal(wv_prefetch_rec_format(&bad, line, sizeof(line)), -1);

    wv_prefetch_rec_format(&rec, line, sizeof(line));
    char broken[300];
    /* Truncated (no newline), extra text, another version, a short digest, timeline 0. */
    static const char *const bads[] = {
        "",
        "walvault-prefetch 2 tli=00000001 repo=1 size=1 sha256=00 boot=x\n",
        "walvault-prefetch 1 tli=00000000 repo=1 size=1 sha256="
        "0000000000000000000000000000000000000000000000000000000000000000 boot=x\n",
        "walvault-prefetch 1 tli=00000001 repo=0 size=1 sha256="
        "0000000000000000000000000000000000000000000000000000000000000000 boot=x\n",
        "walvault-prefetch 1 tli=00000001 repo=1 size=1 sha256=0000 boot=x\n",
    };
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        wv_err_clear(&err);
        assert_int_equal(wv_prefetch_rec_parse(bads[i], &back, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "prefetch record"));
    }
    snprintf(broken, sizeof(broken), "%.*s", n - 1, line);
    assert_int_equal(wv_prefetch_rec_parse(broken, &back, &err), WV_ECORRUPT);
    snprintf(broken, sizeof(broken), "%.*s extra\n", n - 1, line);
    assert_int_equal(wv_prefetch_rec_parse(broken, &back, &err), WV_ECORRUPT);
}

static void test_info(void **state)
{
    wv_repo_info info = {.format = WV_REPO_FORMAT,
                         .system_id = UINT64_C(0x73A1B2C3D4E5F607),
                         .pg_major = 15,
                         .wal_segsize = 16 * MiB};
    char line[200];
    int n = wv_prefetch_info_format(&info, line, sizeof(line));
    assert_true(n > 0);
    assert_string_equal(line, "walvault-prefetch-info 1 format=1 system=73A1B2C3D4E5F607 major=15 "
                              "segsize=16777216\n");
    wv_repo_info back;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_prefetch_info_parse(line, &back, &err), 0);
    assert_int_equal(back.format, info.format);
    assert_int_equal(back.system_id, info.system_id);
    assert_int_equal(back.pg_major, info.pg_major);
    assert_int_equal(back.wal_segsize, info.wal_segsize);
    assert_int_equal(wv_prefetch_info_format(&info, line, 20), -1);
    static const char *const bads[] = {
        "",
        "walvault-prefetch-info 1 format=1 system=73A1B2C3D4E5F607 major=15 segsize=16777216",
        "walvault-prefetch-info 1 format=1 system=0 major=15 segsize=16777216\n",
        "walvault-prefetch-info 1 format=1 system=1 major=15 segsize=1000\n",
        "walvault-prefetch-info 1 format=1 system=1 major=3 segsize=16777216\n",
        "walvault-prefetch-info 2 format=1 system=1 major=15 segsize=16777216\n",
    };
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        wv_err_clear(&err);
        assert_int_equal(wv_prefetch_info_parse(bads[i], &back, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "prefetch info"));
    }
}

static void test_config_keys(void **state)
{
    wv_config *cfg = NULL;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(
        wv_config_parse_string("[repo1]\ntype = posix\npath = /r\n", "a.conf", &cfg, &err), 0);
    assert_int_equal(cfg->fetch_ahead, WV_CONFIG_DEFAULT_FETCH_AHEAD);
    assert_string_equal(cfg->spool_path, WV_CONFIG_DEFAULT_SPOOL_PATH);
    wv_config_free(cfg);

    static const struct {
        const char *value;
        uint64_t want;
    } ok[] = {{"0", 0},      {"1048576", MiB}, {"64MiB", 64 * MiB}, {"512KiB", 512 << 10},
              {"1GiB", GiB}, {"100B", 100}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[200];
        snprintf(text, sizeof(text),
                 "[global]\nfetch_ahead = %s\nspool_path = /tmp/sp/\n[repo1]\ntype = posix\n"
                 "path = /r\n",
                 ok[i].value);
        cfg = NULL;
        assert_int_equal(wv_config_parse_string(text, "b.conf", &cfg, &err), 0);
        assert_int_equal(cfg->fetch_ahead, ok[i].want);
        assert_string_equal(cfg->spool_path, "/tmp/sp");
        wv_config_free(cfg);
    }
    static const char *const bad[] = {"",    "64M", "64 MiB", "-1", "65GiB", "99999999999999999999",
                                      "1TiB"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[200];
        snprintf(text, sizeof(text),
                 "[global]\nfetch_ahead = %s\n[repo1]\ntype = posix\npath = /r\n", bad[i]);
        cfg = NULL;
        wv_err_clear(&err);
        assert_int_not_equal(wv_config_parse_string(text, "c.conf", &cfg, &err), 0);
        assert_null(cfg);
        assert_non_null(strstr(err.msg, "fetch_ahead"));
    }
    cfg = NULL;
    assert_int_not_equal(wv_config_parse_string("[global]\nspool_path = rel\n[repo1]\ntype = "
                                                "posix\npath = /r\n",
                                                "d.conf", &cfg, &err),
                         0);
    assert_non_null(strstr(err.msg, "spool_path"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth_and_bound),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
