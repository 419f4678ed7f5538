/*
 * test_xidrange.c - the "<segment key>.xid" object: format and parse round trip, hostile input
 * (repository content is untrusted), modulo 2^32 containment, and storage over a real posix
 * repository (never replaced; missing and corrupt objects told apart).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/error.h"
#include "repo/xidrange.h"
#include "storage/storage.h"

static void test_round_trip(void **state)
{
    (void)state;
    const wv_xidrange cases[] = {
        {0, 0, 1}, {3, 3, 1}, {1000, 1040, 17}, {4294967290u, 5, 12}, {0, 2147483647u, 4294967295u},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[WV_XIDRANGE_TEXT_MAX + 1];
        wv_xidrange got;
        wv_err err;
        wv_xidrange_format(&cases[i], text, sizeof(text));
        assert_true(strlen(text) <= WV_XIDRANGE_TEXT_MAX);
        assert_int_equal(wv_xidrange_parse(text, strlen(text), &got, &err), 0);
        assert_int_equal(got.xmin, cases[i].xmin);
        assert_int_equal(got.xmax, cases[i].xmax);
        assert_int_equal(got.count, cases[i].count);
    }
    char text[WV_XIDRANGE_TEXT_MAX + 1];
    wv_xidrange_format(&(wv_xidrange){1000, 1040, 17}, text, sizeof(text));
    assert_string_equal(text, "1000\t1040\t17\n");
}

static void test_hostile(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "\n",
        "1000\t1040\t17",                                    /* no newline */
        "1000\t1040\t17\n\n",                                /* two lines */
        "1000\t1040\t17\nx",                                 /* trailing bytes */
        "1000 1040 17\n",                                    /* spaces */
        "1000\t1040\n",                                      /* two fields */
        "1000\t1040\t17\t1\n",                               /* four fields */
        "-1\t1040\t17\n",                                    /* a sign */
        "+1\t1040\t17\n",                                    /* a sign */
        "01000\t1040\t17\n",                                 /* a leading zero */
        "4294967296\t5\t1\n",                                /* above 2^32 - 1 */
        "99999999999\t5\t1\n",                               /* 11 digits */
        "1000\t1040\t0\n",                                   /* no commit */
        "1040\t1000\t3\n",                                   /* reversed */
        "0\t2147483648\t3\n",                                /* spans 2^31 */
        "0x10\t20\t1\n",                                     /* hex */
        "1000\t1040\t17\r\n",                                /* CR */
        "10000000000000000000000000000000000000000\t1\t1\n", /* long */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_xidrange got = {7, 7, 7};
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_xidrange_parse(bad[i], strlen(bad[i]), &got, &err);
        if (rc != WV_ECORRUPT)
            fail_msg("accepted: \"%s\"", bad[i]);
        assert_true(strlen(err.msg) > 0);
        assert_null(strchr(err.msg, '\n'));
        assert_int_equal(got.count, 0); /* nothing half-parsed is left */
    }
    /* a NUL inside */
    wv_xidrange got;
    wv_err err;
    assert_int_equal(wv_xidrange_parse("10\0\t20\t1\n", 9, &got, &err), WV_ECORRUPT);
}

static void test_contains(void **state)
{
    (void)state;
    wv_xidrange x = {1000, 1040, 5};
    assert_true(wv_xidrange_contains(&x, 1000));
    assert_true(wv_xidrange_contains(&x, 1020));
    assert_true(wv_xidrange_contains(&x, 1040));
    assert_false(wv_xidrange_contains(&x, 999));
    assert_false(wv_xidrange_contains(&x, 1041));
    assert_false(wv_xidrange_contains(&x, 0));
    /* across a wraparound: 4294967290 .. 5 */
    wv_xidrange w = {4294967290u, 5, 9};
    assert_true(wv_xidrange_contains(&w, 4294967290u));
    assert_true(wv_xidrange_contains(&w, 4294967295u));
    assert_true(wv_xidrange_contains(&w, 0));
    assert_true(wv_xidrange_contains(&w, 5));
    assert_false(wv_xidrange_contains(&w, 6));
    assert_false(wv_xidrange_contains(&w, 4294967289u));
    assert_false(wv_xidrange_contains(&w, 1000));
}

static void test_names(void **state)
{
    (void)state;
    char key[128];
    wv_xidrange_key("wal/0000000100000000/000000010000000000000003", key, sizeof(key));
    assert_string_equal(key, "wal/0000000100000000/000000010000000000000003.xid");
    assert_true(wv_xidrange_is_name("000000010000000000000003.xid"));
    assert_false(wv_xidrange_is_name("000000010000000000000003.rp"));
    assert_false(wv_xidrange_is_name("000000010000000000000003"));
    assert_false(wv_xidrange_is_name(".xid"));
}

static void test_storage(void **state)
{
    (void)state;
    char dir[] = "/tmp/wv-xidrange-XXXXXX";
    assert_non_null(mkdtemp(dir));
    wv_repo_config rc;
    memset(&rc, 0, sizeof(rc));
    rc.index = 1;
    snprintf(rc.name, sizeof(rc.name), "repo1");
    rc.type = WV_REPO_POSIX;
    rc.path = dir;
    wv_storage *st = NULL;
    wv_err err;
    assert_int_equal(wv_storage_open(&rc, &st, &err), 0);
    const char *seg = "wal/0000000100000000/000000010000000000000003";
    wv_xidrange x = {1000, 1040, 17}, got;

    assert_int_equal(wv_xidrange_get(st, seg, &got, &err), WV_ENOTFOUND);
    assert_int_equal(wv_xidrange_put(st, seg, &x, &err), 0);
    /* a re-push is success and replaces nothing */
    wv_xidrange other = {1, 2, 2};
    assert_int_equal(wv_xidrange_put(st, seg, &other, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(wv_xidrange_get(st, seg, &got, &err), 0);
    assert_int_equal(got.xmin, 1000);
    assert_int_equal(got.xmax, 1040);
    assert_int_equal(got.count, 17);

    /* corrupt and oversized objects: WV_ECORRUPT naming the object */
    const char *seg2 = "wal/0000000100000000/000000010000000000000004";
    const char *junk = "1000\t900\t2\n";
    assert_int_equal(wv_storage_put_all(st, "wal/0000000100000000/000000010000000000000004.xid",
                                        WV_PUT_NOREPLACE, junk, strlen(junk), &err),
                     0);
    assert_int_equal(wv_xidrange_get(st, seg2, &got, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "000000010000000000000004.xid"));
    assert_non_null(strstr(err.msg, "reversed"));
    const char *seg3 = "wal/0000000100000000/000000010000000000000005";
    char big[4096];
    memset(big, '1', sizeof(big));
    assert_int_equal(wv_storage_put_all(st, "wal/0000000100000000/000000010000000000000005.xid",
                                        WV_PUT_NOREPLACE, big, sizeof(big), &err),
                     0);
    assert_int_equal(wv_xidrange_get(st, seg3, &got, &err), WV_ECORRUPT);

    wv_storage_free(st);
    char cmd[100];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_contains),   cmocka_unit_test(test_names),
        cmocka_unit_test(test_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
