/*
 * test_error.c - the error table (every code's name, description and exit code unique and in
 * range; unknown codes), the error record (set, clear, NULL records), wv_err_errno (strerror
 * appended, ENOSPC and EDQUOT mapped to WV_ENOSPACE with a hint), wv_err_hint and wv_err_prefix
 * (including truncation at WV_ERR_MSG_MAX).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"

static const int all_codes[] = {
#define CODE(name, desc, code) WV_E##name,
    WV_ERR_MAP(CODE)
#undef CODE
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_table_unique_and_in_range(void **state)
{
    (void)state;
    assert_true(NCODES >= 18);
    for (size_t i = 0; i < NCODES; i++) {
        int c = all_codes[i];
        assert_true(c < 0);
        int ex = wv_err_exit_code(c);
        /* 0 is success; 126 and above are the shell's and wal-fetch's own. */
        if (ex < 1 || ex > 125)
            fail_msg("%s: exit code %d out of 1..125", wv_err_name(c), ex);
        assert_int_equal(ex, -c);
        assert_string_not_equal(wv_err_name(c), "UNKNOWN");
        assert_string_not_equal(wv_err_desc(c), "unknown error");
        assert_true(strlen(wv_err_desc(c)) > 0);
        for (size_t j = 0; j < i; j++) {
            int d = all_codes[j];
            if (c == d || ex == wv_err_exit_code(d) ||
                strcmp(wv_err_name(c), wv_err_name(d)) == 0 ||
                strcmp(wv_err_desc(c), wv_err_desc(d)) == 0)
                fail_msg("codes %s and %s share a value, name, description or exit code",
                         wv_err_name(c), wv_err_name(d));
        }
    }
}

static void test_table_known_rows(void **state)
{
    (void)state;
    /* The values programs and scripts depend on (wal-fetch's "not found" is exit 1). */
    assert_int_equal(WV_ENOTFOUND, -1);
    assert_int_equal(wv_err_exit_code(WV_ENOTFOUND), 1);
    assert_string_equal(wv_err_name(WV_ENOTFOUND), "NOTFOUND");
    assert_string_equal(wv_err_desc(WV_ENOTFOUND), "not found");
    assert_int_equal(wv_err_exit_code(WV_EUSAGE), 2);
    assert_string_equal(wv_err_name(WV_ENOSPACE), "NOSPACE");
    assert_string_equal(wv_err_desc(WV_ENOSPACE), "no space left on device");
    assert_string_equal(wv_err_name(WV_EINTERNAL), "INTERNAL");
    assert_string_equal(wv_err_name(WV_EPRIVKEY), "PRIVKEY");
    assert_int_equal(wv_err_exit_code(WV_EPRIVKEY), 19);
}

static void test_table_ok_and_unknown(void **state)
{
    (void)state;
    assert_string_equal(wv_err_name(0), "OK");
    assert_string_equal(wv_err_desc(0), "success");
    assert_int_equal(wv_err_exit_code(0), 0);
    const int unknown[] = {-1000, -20, 1, 5, -126};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(wv_err_name(unknown[i]), "UNKNOWN");
        assert_string_equal(wv_err_desc(unknown[i]), "unknown error");
        /* an unknown failure is still a failure: the internal error's exit code */
        assert_int_equal(wv_err_exit_code(unknown[i]), wv_err_exit_code(WV_EINTERNAL));
    }
}

static void test_set_and_clear(void **state)
{
    (void)state;
    wv_err err;
    memset(&err, 'x', sizeof(err));
    wv_err_clear(&err);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    assert_string_equal(err.hint, "");

    assert_int_equal(wv_err_set(&err, WV_EIO, "could not read \"%s\" at %d", "f", 7), WV_EIO);
    assert_int_equal(err.code, WV_EIO);
    assert_string_equal(err.msg, "could not read \"f\" at 7");
    wv_err_hint(&err, "check the disk");
    /* a new message replaces the old one and its hint */
    assert_int_equal(wv_err_set(&err, WV_ECORRUPT, "bad"), WV_ECORRUPT);
    assert_int_equal(err.code, WV_ECORRUPT);
    assert_string_equal(err.msg, "bad");
    assert_string_equal(err.hint, "");

    wv_err_clear(&err);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    wv_err_clear(NULL);

    /* a NULL record drops the message but the code still comes back */
    assert_int_equal(wv_err_set(NULL, WV_EAUTH, "dropped %s", "x"), WV_EAUTH);
    assert_int_equal(wv_err_errno(NULL, WV_EIO, EACCES, "dropped"), WV_EIO);
    assert_int_equal(wv_err_errno(NULL, WV_EIO, ENOSPC, "dropped"), WV_ENOSPACE);
    assert_int_equal(wv_err_hint(NULL, "h"), 0);
    assert_int_equal(wv_err_prefix(NULL, "p: "), 0);
}

static void test_set_truncates(void **state)
{
    (void)state;
    char big[3 * WV_ERR_MSG_MAX];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wv_err err;
    wv_err_set(&err, WV_EIO, "%s", big);
    assert_int_equal(strlen(err.msg), WV_ERR_MSG_MAX - 1);
    wv_err_hint(&err, "%s", big);
    assert_int_equal(strlen(err.hint), WV_ERR_MSG_MAX - 1);
}

static void test_errno_mapping(void **state)
{
    (void)state;
    wv_err err;
    wv_err_clear(&err);
    int rc = wv_err_errno(&err, WV_EIO, EACCES, "could not open \"%s\"", "/x/y");
    assert_int_equal(rc, WV_EIO);
    assert_int_equal(err.code, WV_EIO);
    char want[256];
    snprintf(want, sizeof(want), "could not open \"/x/y\": %s", strerror(EACCES));
    assert_string_equal(err.msg, want);
    assert_string_equal(err.hint, "");

    /* ENOSPC and EDQUOT are "no space", whatever class the caller passed, with a hint */
    const int nospace[] = {ENOSPC, EDQUOT};
    const int classes[] = {WV_EIO, WV_ECONFIG, WV_EINTERNAL};
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < 3; k++) {
            wv_err_clear(&err);
            rc = wv_err_errno(&err, classes[k], nospace[i], "could not write \"%s\"", "f");
            assert_int_equal(rc, WV_ENOSPACE);
            assert_int_equal(err.code, WV_ENOSPACE);
            snprintf(want, sizeof(want), "could not write \"f\": %s", strerror(nospace[i]));
            assert_string_equal(err.msg, want);
            assert_string_equal(err.hint, "free space on that file system, then retry");
        }
    }
    /* other errno values keep the caller's class */
    rc = wv_err_errno(&err, WV_EUNREACHABLE, ECONNREFUSED, "could not connect");
    assert_int_equal(rc, WV_EUNREACHABLE);
    assert_string_equal(err.hint, "");
    assert_non_null(strstr(err.msg, strerror(ECONNREFUSED)));
}

static void test_errno_long_message(void **state)
{
    (void)state;
    char big[2 * WV_ERR_MSG_MAX];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wv_err err;
    int rc = wv_err_errno(&err, WV_EIO, EIO, "%s", big);
    assert_int_equal(rc, WV_EIO);
    assert_int_equal(strlen(err.msg), WV_ERR_MSG_MAX - 1);
}

static void test_hint(void **state)
{
    (void)state;
    wv_err err;
    wv_err_set(&err, WV_ECONFIG, "bad key");
    assert_int_equal(wv_err_hint(&err, "set %s = %d", "k", 3), WV_ECONFIG);
    assert_string_equal(err.hint, "set k = 3");
    assert_string_equal(err.msg, "bad key");
    /* replaces an earlier hint */
    wv_err_errno(&err, WV_EIO, ENOSPC, "full");
    assert_int_equal(wv_err_hint(&err, "other"), WV_ENOSPACE);
    assert_string_equal(err.hint, "other");
}

static void test_prefix(void **state)
{
    (void)state;
    wv_err err;
    wv_err_set(&err, WV_ENOTFOUND, "object \"k\" not found");
    wv_err_hint(&err, "h");
    assert_int_equal(wv_err_prefix(&err, "%s: ", "repo1"), WV_ENOTFOUND);
    assert_string_equal(err.msg, "repo1: object \"k\" not found");
    assert_int_equal(wv_err_prefix(&err, "wal-push: "), WV_ENOTFOUND);
    assert_string_equal(err.msg, "wal-push: repo1: object \"k\" not found");
    assert_string_equal(err.hint, "h"); /* untouched */
    assert_int_equal(err.code, WV_ENOTFOUND);

    /* an empty message becomes the prefix alone */
    wv_err_set(&err, WV_EIO, "%s", "");
    wv_err_prefix(&err, "p");
    assert_string_equal(err.msg, "p");
}

static void test_prefix_truncates(void **state)
{
    (void)state;
    wv_err err;
    char big[WV_ERR_MSG_MAX];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* a full message: the prefix comes first, the end of the message is cut */
    wv_err_set(&err, WV_EIO, "%s", big);
    wv_err_prefix(&err, "repo2: ");
    assert_int_equal(strlen(err.msg), WV_ERR_MSG_MAX - 1);
    assert_memory_equal(err.msg, "repo2: mmm", 10);
    assert_int_equal(err.msg[WV_ERR_MSG_MAX - 2], 'm');

    /* a long prefix (399 bytes) is kept whole, and the message follows it */
    char longp[400];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    wv_err_set(&err, WV_EIO, "tail");
    wv_err_prefix(&err, "%s", longp);
    assert_int_equal(strlen(err.msg), 399 + 4);
    assert_string_equal(err.msg + 399, "tail");
    assert_int_equal(err.msg[398], 'p');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_unique_and_in_range),
        cmocka_unit_test(test_table_known_rows),
        cmocka_unit_test(test_table_ok_and_unknown),
        cmocka_unit_test(test_set_and_clear),
        cmocka_unit_test(test_set_truncates),
        cmocka_unit_test(test_errno_mapping),
        cmocka_unit_test(test_errno_long_message),
        cmocka_unit_test(test_hint),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_prefix_truncates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
