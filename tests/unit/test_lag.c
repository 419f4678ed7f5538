/*
 * test_lag.c - lag records of repositories with required = no, in a temporary spool: the record
 * format round-trips and damaged records are refused, add keeps the first failure's time, load
 * sorts oldest WAL first and skips what is not a record, remove is durable and idempotent, and
 * the backoff doubles from its minimum up to its maximum and is stored and cleared; the
 * archive_queue_max computation (no double count, no overflow, strictly past the limit) and the
 * gap object's text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "repo/lag.h"

static void entry(wv_lag_entry *e, const char *name, int64_t t, uint64_t size, const char *why)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->time = t;
    e->size = size;
    wv_lag_set_error(e, why);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    wv_lag_entry e, back;
    wv_err err;
    entry(&e, "000000010000000000000003", 1764680000, 16777216, "repo2: connection refused\n(x)");
    wv_buf b = WV_BUF_INIT;
    wv_lag_format(&e, &b);
    assert_string_equal(wv_buf_cstr(&b), "walvault-lag 1\ntime 1764680000\nsize 16777216\n"
                                         "error repo2: connection refused (x)\n");
    assert_int_equal(wv_lag_parse((const char *)b.data, b.len, e.name, &back, &err), 0);
    assert_string_equal(back.name, e.name);
    assert_int_equal(back.time, 1764680000);
    assert_int_equal(back.size, 16777216);
    assert_string_equal(back.error, "repo2: connection refused (x)");

    /* unknown lines (a newer version) are ignored */
    const char *newer = "walvault-lag 1\ntime 5\nsize 6\nerror e\nretries 3\n";
    assert_int_equal(wv_lag_parse(newer, strlen(newer), "x", &back, &err), 0);
    assert_int_equal(back.size, 6);

    /* damaged: refused, naming the record */
    static const char *const bad[] = {
        "",
        "walvault-lag 2\ntime 5\nsize 6\nerror e\n",
        "walvault-lag 1\ntime 5\nsize 6\n",
        "walvault-lag 1\ntime -5\nsize 6\nerror e\n",
        "walvault-lag 1\ntime 5\nsize x6\nerror e\n",
        "walvault-lag 1\ntime 5\nsize 6\nerror e",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(wv_lag_parse(bad[i], strlen(bad[i]), "seg", &back, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "lag record \"seg\""));
    }
    assert_int_equal(wv_lag_parse(newer, strlen(newer), "../x", &back, &err), WV_ECORRUPT);
    wv_buf_free(&b);
}

static void test_add_load_remove(void **state)
{
    (void)state;
    char dir[64], cmd[128], path[256];
    snprintf(dir, sizeof(dir), "/tmp/wv-test-lag-XXXXXX");
    assert_non_null(mkdtemp(dir));
    wv_err err;
    wv_lag_entry e;
    wv_lag_list l;

    assert_int_equal(wv_lag_load(dir, "lag", "repo2", &l, &err), 0); /* absent: none */
    assert_int_equal(l.n, 0);

    entry(&e, "000000010000000000000005", 200, 100, "second");
    assert_int_equal(wv_lag_add(dir, "lag", "repo2", &e, &err), 0);
    entry(&e, "000000010000000000000004", 300, 50, "first");
    assert_int_equal(wv_lag_add(dir, "lag", "repo2", &e, &err), 0);
    /* a later failure of the same file keeps the first time, takes the new error */
    entry(&e, "000000010000000000000005", 900, 100, "again");
    assert_int_equal(wv_lag_add(dir, "lag", "repo2", &e, &err), 0);
    /* not records: a temp file, the backoff file */
    snprintf(path, sizeof(path), "%s/lag/repo2/.x.wvtmp-1-1", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(wv_lag_backoff_store(dir, "repo2", 1000, 5, &err), 0);

    assert_int_equal(wv_lag_load(dir, "lag", "repo2", &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.e[0].name, "000000010000000000000004");
    assert_string_equal(l.e[1].name, "000000010000000000000005");
    assert_int_equal(l.e[1].time, 200);
    assert_string_equal(l.e[1].error, "again");
    size_t files;
    uint64_t bytes;
    int64_t oldest;
    wv_lag_summary(&l, &files, &bytes, &oldest);
    assert_int_equal(files, 2);
    assert_int_equal(bytes, 150);
    assert_int_equal(oldest, 200);
    wv_lag_list_free(&l);

    /* dropped records have no repository level */
    entry(&e, "000000010000000000000009", 50, 16, "archive_queue_max");
    assert_int_equal(wv_lag_add(dir, "dropped", NULL, &e, &err), 0);
    snprintf(path, sizeof(path), "%s/dropped/000000010000000000000009", dir);
    assert_int_equal(access(path, F_OK), 0);

    assert_int_equal(wv_lag_remove(dir, "lag", "repo2", "000000010000000000000004", &err), 0);
    assert_int_equal(wv_lag_remove(dir, "lag", "repo2", "000000010000000000000004", &err), 0);
    assert_int_equal(wv_lag_load(dir, "lag", "repo2", &l, &err), 0);
    assert_int_equal(l.n, 1);
    wv_lag_list_free(&l);

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(wv_lag_backoff_next(0), WV_LAG_BACKOFF_MIN);
    assert_int_equal(wv_lag_backoff_next(WV_LAG_BACKOFF_MIN), 2 * WV_LAG_BACKOFF_MIN);
    int64_t d = 0;
    for (int i = 0; i < 20; i++) {
        int64_t n = wv_lag_backoff_next(d);
        assert_true(n >= d);
        assert_true(n <= WV_LAG_BACKOFF_MAX);
        d = n;
    }
    assert_int_equal(d, WV_LAG_BACKOFF_MAX);

    char dir[64], cmd[128];
    snprintf(dir, sizeof(dir), "/tmp/wv-test-lag-XXXXXX");
    assert_non_null(mkdtemp(dir));
    wv_err err;
    int64_t next = -1, delay = -1;
    wv_lag_backoff_load(dir, "repo2", &next, &delay);
    assert_int_equal(next, 0);
    assert_int_equal(delay, 0);
    assert_int_equal(wv_lag_backoff_store(dir, "repo2", 1764680010, 10, &err), 0);
    wv_lag_backoff_load(dir, "repo2", &next, &delay);
    assert_int_equal(next, 1764680010);
    assert_int_equal(delay, 10);
    wv_lag_backoff_clear(dir, "repo2");
    wv_lag_backoff_load(dir, "repo2", &next, &delay);
    assert_int_equal(next, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_queue_and_gap(void **state)
{
    (void)state;
    const uint64_t seg = 16u << 20;
    /* the pushed file's own .ready counted: not added again */
    assert_true(wv_lag_queue_bytes(3, seg, seg, 1) == 3 * seg);
    assert_true(wv_lag_queue_bytes(3, seg, seg, 0) == 4 * seg);
    assert_true(wv_lag_queue_bytes(0, seg, 1234, 0) == 1234);
    /* no overflow */
    assert_true(wv_lag_queue_bytes(UINT64_MAX / 2, seg, seg, 0) == UINT64_MAX);
    assert_true(wv_lag_queue_bytes(1, UINT64_MAX, 5, 0) == UINT64_MAX);
    /* off, at the limit, past it */
    assert_false(wv_lag_queue_exceeded(UINT64_MAX, 0));
    assert_false(wv_lag_queue_exceeded(8 * seg, 8 * seg));
    assert_true(wv_lag_queue_exceeded(8 * seg + 1, 8 * seg));

    wv_buf b = WV_BUF_INIT;
    wv_lag_gap_format(1764680000, "archive_queue_max (8.0 GiB) exceeded\nx", &b);
    assert_string_equal(wv_buf_cstr(&b), "walvault-gap 1\ntime 1764680000\nreason "
                                         "archive_queue_max (8.0 GiB) exceeded x\n");
    wv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_add_load_remove),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_queue_and_gap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
