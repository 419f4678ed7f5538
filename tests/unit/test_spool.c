/*
 * test_spool.c - the per-cluster spool directory: <spool_path>/<16 hex digits>, created 0700
 * with its parents, found again, and a spool_path that cannot be a directory refused with a hint.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "repo/spool.h"

static void test_cluster_dir(void **state)
{
    (void)state;
    char root[64], spool[128], out[256], want[256], cmd[128];
    snprintf(root, sizeof(root), "/tmp/wv-test-spool-XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(spool, sizeof(spool), "%s/a/b", root);
    wv_config cfg = {.spool_path = spool};
    wv_err err;
    assert_int_equal(
        wv_spool_cluster_dir(&cfg, UINT64_C(0x7123456789ABCDEF), out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/7123456789ABCDEF", spool);
    assert_string_equal(out, want);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    /* again: found */
    assert_int_equal(
        wv_spool_cluster_dir(&cfg, UINT64_C(0x7123456789ABCDEF), out, sizeof(out), &err), 0);
    /* a small identifier keeps its 16 digits */
    assert_int_equal(wv_spool_cluster_dir(&cfg, 42, out, sizeof(out), &err), 0);
    assert_non_null(strstr(out, "/000000000000002A"));

    /* a file where the spool should be */
    snprintf(spool, sizeof(spool), "%s/file", root);
    FILE *f = fopen(spool, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_not_equal(wv_spool_cluster_dir(&cfg, 42, out, sizeof(out), &err), 0);
    assert_non_null(strstr(err.hint, "spool_path"));

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
