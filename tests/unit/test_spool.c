/*
 * test_spool.c - the spool of archive_async: record format (round trips, every malformed
 * spelling refused), durable write and read back, the per-cluster directory (mode 0700, 16 hex
 * digits) and the archiver's order of .ready files (history first, then by name).
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

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"
#include "repo/spool.h"

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/wv-test-spool-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
}

static void test_record_round_trip(void **state)
{
    (void)state;
    wv_spool_record r, back;
    memset(&r, 0, sizeof(r));
    r.ok = 1;
    for (int i = 0; i < 32; i++)
        r.sha256[i] = (uint8_t)(i * 7 + 1);
    r.size = 16777216;
    wv_buf b;
    wv_buf_init(&b);
    wv_spool_record_format(&r, &b);
    assert_string_equal((const char *)b.data,
                        "walvault-spool 1\nok "
                        "01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da"
                        " 16777216\n");
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_spool_record_parse((const char *)b.data, b.len, "x", &back, &err), 0);
    assert_int_equal(back.ok, 1);
    assert_int_equal(back.size, 16777216);
    assert_memory_equal(back.sha256, r.sha256, 32);
    wv_buf_free(&b);

    /* with the identity of the file read */
    r.has_file = 1;
    r.file = (wv_spool_file){.dev = 2049,
                             .ino = 123456,
                             .mtime_s = 1764680000,
                             .mtime_ns = 5,
                             .ctime_s = 1764680001,
                             .ctime_ns = 999999999};
    wv_buf_init(&b);
    wv_spool_record_format(&r, &b);
    const char *text = (const char *)b.data;
    assert_non_null(strstr(text, "\nfile 2049 123456 1764680000.000000005 1764680001.999999999\n"));
    assert_int_equal(wv_spool_record_parse(text, b.len, "x", &back, &err), 0);
    assert_int_equal(back.has_file, 1);
    assert_true(wv_spool_file_equal(&back.file, &r.file));
    wv_buf_free(&b);

    /* a failure keeps its code, message and hint; newlines in them are flattened */
    memset(&r, 0, sizeof(r));
    r.size = 7;
    wv_err_set(&r.err, WV_EUNREACHABLE, "x");
    strcpy(r.err.msg, "repo2: could not connect\nto host");
    wv_err_hint(&r.err, "check the network");
    wv_buf_init(&b);
    wv_spool_record_format(&r, &b);
    assert_int_equal(wv_spool_record_parse((const char *)b.data, b.len, "x", &back, &err), 0);
    assert_int_equal(back.ok, 0);
    assert_int_equal(back.err.code, WV_EUNREACHABLE);
    assert_string_equal(back.err.msg, "repo2: could not connect to host");
    assert_string_equal(back.err.hint, "check the network");
    assert_int_equal(back.size, 7);
    wv_buf_free(&b);

    /* no hint: an empty line */
    wv_err_set(&r.err, WV_EIO, "disk full");
    wv_buf_init(&b);
    wv_spool_record_format(&r, &b);
    assert_int_equal(wv_spool_record_parse((const char *)b.data, b.len, "x", &back, &err), 0);
    assert_string_equal(back.err.hint, "");
    wv_buf_free(&b);
}

static void test_record_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "walvault-spool 2\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1\n",
        "walvault-spool 1\n",
        "walvault-spool 1\nok 00 1\n",
        "walvault-spool 1\nok "
        "000000000000000000000000000000000000000000000000000000000000000G 1\n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 \n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1x\n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1\nmore\n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 "
        "99999999999999999999999\n",
        "walvault-spool 1\nfine "
        "0000000000000000000000000000000000000000000000000000000000000000 1\n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1\nfile 1 2 3.4 5.6\n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1\nfile 1 2 "
        "3.000000004\n",
        "walvault-spool 1\nok "
        "0000000000000000000000000000000000000000000000000000000000000000 1\nstat 1 2 "
        "3.000000004 5.000000006\n",
        "walvault-spool 1\nerror "
        "0000000000000000000000000000000000000000000000000000000000000000 1\n",
        "walvault-spool 1\nerror "
        "0000000000000000000000000000000000000000000000000000000000000000 1 "
        "BOGUS\nmsg\n\n",
        "walvault-spool 1\nerror "
        "0000000000000000000000000000000000000000000000000000000000000000 1 "
        "IO\nmsg\n",
        "walvault-spool 1\nerror "
        "0000000000000000000000000000000000000000000000000000000000000000 1 "
        "IO\n\n\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_spool_record r;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_spool_record_parse(bad[i], strlen(bad[i]), "done/X", &r, &err);
        if (rc != WV_ECORRUPT)
            fail_msg("record %zu accepted: %s", i, bad[i]);
        assert_string_equal(err.msg, "spool record \"done/X\" is not a walvault spool record");
        assert_int_equal(r.ok, 0);
    }
}

static void test_record_write_read(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    wv_spool_record r, back;
    memset(&r, 0, sizeof(r));
    r.ok = 1;
    r.size = 42;
    r.sha256[0] = 0xab;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_spool_record_read(dir, "000000010000000000000001", &back, &err),
                     WV_ENOTFOUND);
    assert_int_equal(wv_spool_record_write(dir, "000000010000000000000001", &r, &err), 0);
    assert_int_equal(wv_spool_record_read(dir, "000000010000000000000001", &back, &err), 0);
    assert_int_equal(back.ok, 1);
    assert_int_equal(back.size, 42);
    assert_int_equal(back.sha256[0], 0xab);
    /* a newer record replaces the older one */
    r.size = 43;
    assert_int_equal(wv_spool_record_write(dir, "000000010000000000000001", &r, &err), 0);
    assert_int_equal(wv_spool_record_read(dir, "000000010000000000000001", &back, &err), 0);
    assert_int_equal(back.size, 43);
    /* no temp file stays behind */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    /* garbage is WV_ECORRUPT */
    touch(dir, "000000010000000000000002");
    assert_int_equal(wv_spool_record_read(dir, "000000010000000000000002", &back, &err),
                     WV_ECORRUPT);
    rm_rf(dir);
    free(dir);
}

static void test_file_identity(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    touch(dir, "a");
    char p[512];
    snprintf(p, sizeof(p), "%s/a", dir);
    wv_spool_file f1, f2;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_spool_file_of(p, &f1, &err), 0);
    assert_int_equal(wv_spool_file_of(p, &f2, &err), 0);
    assert_true(wv_spool_file_equal(&f1, &f2));
    /* written: the change time moves */
    usleep(20000);
    FILE *fp = fopen(p, "a");
    assert_non_null(fp);
    fputs("x", fp);
    fclose(fp);
    assert_int_equal(wv_spool_file_of(p, &f2, &err), 0);
    assert_false(wv_spool_file_equal(&f1, &f2));
    /* replaced by another file of the same name: another inode */
    snprintf(p, sizeof(p), "%s/b", dir);
    touch(dir, "b");
    char a[512];
    snprintf(a, sizeof(a), "%s/a", dir);
    assert_int_equal(wv_spool_file_of(a, &f1, &err), 0);
    assert_int_equal(rename(p, a), 0);
    assert_int_equal(wv_spool_file_of(a, &f2, &err), 0);
    assert_false(wv_spool_file_equal(&f1, &f2));
    assert_int_equal(wv_spool_file_of(p, &f2, &err), WV_ENOTFOUND);
    rm_rf(dir);
    free(dir);
}

static void test_cluster_dir(void **state)
{
    (void)state;
    char *base = make_tmpdir();
    char spool[512], out[600];
    snprintf(spool, sizeof(spool), "%s/a/b", base);
    wv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.spool_path = spool;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(
        wv_spool_cluster_dir(&cfg, UINT64_C(0x7312ab00cd000001), out, sizeof(out), &err), 0);
    char want[600];
    snprintf(want, sizeof(want), "%s/7312AB00CD000001", spool);
    assert_string_equal(out, want);
    struct stat sb;
    assert_int_equal(stat(out, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* again: the same, no error */
    assert_int_equal(
        wv_spool_cluster_dir(&cfg, UINT64_C(0x7312ab00cd000001), out, sizeof(out), &err), 0);
    /* another cluster, another directory */
    assert_int_equal(wv_spool_cluster_dir(&cfg, 1, out, sizeof(out), &err), 0);
    snprintf(want, sizeof(want), "%s/0000000000000001", spool);
    assert_string_equal(out, want);
    /* too small a buffer */
    char tiny[8];
    assert_int_equal(wv_spool_cluster_dir(&cfg, 1, tiny, sizeof(tiny), &err), WV_ECONFIG);
    rm_rf(base);
    free(base);
}

static void test_ready_order(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    static const char *const files[] = {
        "000000020000000000000003.ready",
        "000000010000000000000002.ready",
        "00000002.history.ready",
        "000000010000000000000001.00000028.backup.ready",
        "000000010000000000000001.ready",
        "000000010000000000000004.done",
        "000000020000000000000002.partial.ready",
        "xlogtemp.123.ready",
        "00000003.history.ready",
        "000000010000000000000005",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        touch(dir, files[i]);
    char **names = NULL;
    size_t n = 0;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_spool_list_ready(dir, &names, &n, &err), 0);
    static const char *const want[] = {
        "00000002.history",         "00000003.history",
        "000000010000000000000001", "000000010000000000000001.00000028.backup",
        "000000010000000000000002", "000000020000000000000002.partial",
        "000000020000000000000003",
    };
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(names[i], want[i]);
    assert_null(names[n]);
    wv_spool_names_free(names);

    assert_true(wv_spool_ready_cmp("00000009.history", "000000010000000000000001") < 0);
    assert_true(wv_spool_ready_cmp("000000010000000000000001", "00000009.history") > 0);
    assert_true(wv_spool_ready_cmp("000000010000000000000001", "000000010000000000000002") < 0);
    assert_int_equal(wv_spool_ready_cmp("00000002.history", "00000002.history"), 0);

    rm_rf(dir);
    assert_int_equal(wv_spool_list_ready(dir, &names, &n, &err), WV_ENOTFOUND);
    free(dir);
}

static void test_cluster_dir_found_and_refused(void **state)
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

    /* a file where the cluster's directory should be */
    snprintf(want, sizeof(want), "%s/000000000000002B", spool);
    FILE *g = fopen(want, "w");
    assert_non_null(g);
    fclose(g);
    assert_int_not_equal(wv_spool_cluster_dir(&cfg, 43, out, sizeof(out), &err), 0);
    assert_non_null(strstr(err.msg, "not a directory"));

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
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_malformed),
        cmocka_unit_test(test_record_write_read),
        cmocka_unit_test(test_file_identity),
        cmocka_unit_test(test_cluster_dir),
        cmocka_unit_test(test_ready_order),
        cmocka_unit_test(test_cluster_dir_found_and_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
