/*
 * test_archcheck.c - archive_mode / archive_command judged against a wal-push and a configuration
 * file made for the test (real files, so that symbolic links and $PATH resolve as in production).
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

#include "core/error.h"
#include "pg/archcheck.h"

static char dir[256], wp[300], conf[300], other[300], link_wp[300];

static void touch(const char *path, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n", f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/wv-test-archcheck-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(wp, sizeof(wp), "%s/wal-push", dir);
    snprintf(conf, sizeof(conf), "%s/walvault.conf", dir);
    snprintf(other, sizeof(other), "%s/other.conf", dir);
    snprintf(link_wp, sizeof(link_wp), "%s/bin/wal-push", dir);
    touch(wp, 0755);
    touch(conf, 0644);
    touch(other, 0644);
    char bin[300];
    snprintf(bin, sizeof(bin), "%s/bin", dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    assert_int_equal(symlink(wp, link_wp), 0);
    setenv("PATH", bin, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "/bin/rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int judge(const char *mode, const char *lib, const char *cmd, wv_err *err)
{
    wv_err_clear(err);
    return wv_archcheck_settings(mode, lib, cmd, wp, conf, 0, err);
}

static void test_good(void **state)
{
    (void)state;
    wv_err err;
    char cmd[1024];
    /* prefix, quote style of wal-push, option form, quote style of the file, suffix */
    static const struct {
        const char *pre, *q1, *opt, *q2;
    } forms[] = {
        {"", "", "-c ", ""},
        {"", "", "--config ", ""},
        {"", "", "--config=", ""},
        {"", "'", "-c ", "\""},
        {"WALVAULT_S3_TIMEOUT=3 ", "", "-c ", ""},
        {"test ! -f /maint && /bin/true; ", "", "-c ", ""},
        {"exec ", "", "-c", ""},
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s%s%s%s %s%s%s%s %%p", forms[i].pre, forms[i].q1, wp,
                 forms[i].q1, forms[i].opt, forms[i].q2, conf, forms[i].q2);
        if (judge("on", "", cmd, &err) != 0)
            fail_msg("form %zu \"%s\": %s", i, cmd, err.msg);
    }
    /* through a symbolic link, through $PATH, with WALVAULT_CONFIG, archive_mode = always */
    snprintf(cmd, sizeof(cmd), "%s -c %s %%p", link_wp, conf);
    assert_int_equal(judge("always", NULL, cmd, &err), 0);
    snprintf(cmd, sizeof(cmd), "wal-push -c %s %%p", conf);
    assert_int_equal(judge("on", "", cmd, &err), 0);
    snprintf(cmd, sizeof(cmd), "WALVAULT_CONFIG=%s wal-push %%p", conf);
    assert_int_equal(judge("on", "", cmd, &err), 0);
}

static void test_bad(void **state)
{
    (void)state;
    wv_err err;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s -c %s %%p", wp, conf);
    assert_int_equal(judge("off", "", cmd, &err), WV_EREFUSED);
    assert_string_equal(err.msg, "archive_mode is off on the server: no WAL is archived");
    assert_non_null(strstr(err.hint, "archive_mode = on"));

    assert_int_equal(judge("on", "basic_archive", cmd, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "archive_library is \"basic_archive\""));

    assert_int_equal(judge("on", "", "", &err), WV_EREFUSED);
    assert_string_equal(err.msg, "archive_command is empty on the server: no WAL is archived");

    assert_int_equal(judge("on", "", "false", &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "archive_command \"false\" does not run this installation's "
                                    "wal-push"));
    char want[1024];
    snprintf(want, sizeof(want), "ALTER SYSTEM SET archive_command = '%s -c %s %%p'", wp, conf);
    assert_non_null(strstr(err.hint, want));

    snprintf(cmd, sizeof(cmd), "/usr/bin/wal-push -c %s %%p", conf);
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "does not run this installation's wal-push"));

    snprintf(cmd, sizeof(cmd), "%s -c %s %%p", wp, other);
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
    char msg[4096];
    snprintf(msg, sizeof(msg),
             "archive_command \"%s\" runs wal-push with another configuration file (%s, not %s)",
             cmd, other, conf);
    assert_string_equal(err.msg, msg);

    /* backup's leniency: another file is a warning, anything else still refused */
    wv_err_clear(&err);
    assert_int_equal(wv_archcheck_settings("on", "", cmd, wp, conf, WV_ARCHCHECK_WARN_CONFIG, &err),
                     0);
    assert_int_equal(
        wv_archcheck_settings("on", "", "false", wp, conf, WV_ARCHCHECK_WARN_CONFIG, &err),
        WV_EREFUSED);
    assert_int_equal(
        wv_archcheck_settings("off", "", cmd, wp, conf, WV_ARCHCHECK_WARN_CONFIG, &err),
        WV_EREFUSED);

    snprintf(cmd, sizeof(cmd), "%s -c walvault.conf %%p", wp);
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "another configuration file (walvault.conf"));

    snprintf(cmd, sizeof(cmd), "%s %%p", wp); /* the default file, not ours */
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "/etc/walvault/walvault.conf"));

    snprintf(cmd, sizeof(cmd), "%s -c %s %%f", wp, conf);
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "does not pass %p to wal-push"));

    snprintf(cmd, sizeof(cmd), "%s -c '%s %%p", wp, conf);
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "unterminated quote"));

    /* wal-push only as an argument of another program does not count */
    snprintf(cmd, sizeof(cmd), "echo %s -c %s %%p", wp, conf);
    assert_int_equal(judge("on", "", cmd, &err), WV_EREFUSED);
}

static void test_wal_push_path(void **state)
{
    (void)state;
    char p[4096];
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_archcheck_wal_push_path(p, sizeof(p), &err), 0);
    size_t n = strlen(p);
    assert_true(n > 9 && strcmp(p + n - 9, "/wal-push") == 0);
    assert_int_equal(wv_archcheck_wal_push_path(p, 5, &err), WV_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_wal_push_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
