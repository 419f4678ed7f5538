/*
 * test_spool.c - the per-cluster spool directory: <spool_path>/<16 hex system id>, created 0700
 * with its parent, reused when present, refused when a file is in the way or the path is too
 * long.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "repo/spool.h"

static void test_cluster_dir(void **state)
{
    char base[] = "/tmp/wv-spool-XXXXXX";
    assert_non_null(mkdtemp(base));
    char spool[256];
    snprintf(spool, sizeof(spool), "%s/spool", base);
    wv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.spool_path = spool;
    char out[512];
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(
        wv_spool_cluster_dir(&cfg, UINT64_C(0x73A1B2C3D4E5F607), out, sizeof(out), &err), 0);
    char want[512];
    snprintf(want, sizeof(want), "%s/73A1B2C3D4E5F607", spool);
    assert_string_equal(out, want);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(spool, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    /* Again: the same directory. */
    assert_int_equal(
        wv_spool_cluster_dir(&cfg, UINT64_C(0x73A1B2C3D4E5F607), out, sizeof(out), &err), 0);
    /* Another cluster: another directory, zero-padded. */
    assert_int_equal(wv_spool_cluster_dir(&cfg, 42, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/000000000000002A", spool);
    assert_string_equal(out, want);
    rmdir(out);

    /* A file where the directory should be. */
    char file[512];
    snprintf(file, sizeof(file), "%s/000000000000002B", spool);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    wv_err_clear(&err);
    assert_int_not_equal(wv_spool_cluster_dir(&cfg, 43, out, sizeof(out), &err), 0);
    assert_non_null(strstr(err.msg, "not a directory"));
    unlink(file);

    /* Too short an output buffer. */
    wv_err_clear(&err);
    assert_int_not_equal(wv_spool_cluster_dir(&cfg, 1, out, 8, &err), 0);
    assert_non_null(strstr(err.msg, "too long"));

    /* A parent that cannot be created: the error names it, with the hint. */
    cfg.spool_path = file; /* below a file */
    f = fopen(file, "w");
    fclose(f);
    char below[600];
    snprintf(below, sizeof(below), "%s/x", file);
    cfg.spool_path = below;
    wv_err_clear(&err);
    assert_int_not_equal(wv_spool_cluster_dir(&cfg, 1, out, sizeof(out), &err), 0);
    assert_non_null(strstr(err.msg, "could not create spool directory"));
    assert_non_null(strstr(err.hint, "spool_path"));
    unlink(file);

    snprintf(want, sizeof(want), "%s/73A1B2C3D4E5F607", spool);
    rmdir(want);
    rmdir(spool);
    rmdir(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
