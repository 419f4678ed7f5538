/*
 * test_replication.c - the head of PostgreSQL's backup_manifest: version 1 (15, 16) and version 2
 * with its system identifier (17, 18), as the servers write them (the integration suite checks the
 * real ones), and every malformed or mismatching head refused with a message naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "pg/replication.h"

static int parse(const char *text, wv_pg_manifest_head *h, wv_err *err)
{
    wv_err_clear(err);
    return wv_pg_manifest_head_parse(text, strlen(text), h, err);
}

static void test_versions(void **state)
{
    (void)state;
    wv_pg_manifest_head h;
    wv_err err;
    /* As PostgreSQL 15 and 16 write it. */
    assert_int_equal(parse("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
                           "{ \"Path\": \"backup_label\", \"Size\": 227 },",
                           &h, &err),
                     0);
    assert_int_equal(h.version, 1);
    assert_true(h.system_id == 0);
    /* As PostgreSQL 17 and 18 write it. */
    assert_int_equal(parse("{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n"
                           "\"System-Identifier\": 7443219066227480000,\n\"Files\": [\n",
                           &h, &err),
                     0);
    assert_int_equal(h.version, 2);
    assert_true(h.system_id == UINT64_C(7443219066227480000));
    /* Cut right after "Files": (the head is all that is kept). */
    assert_int_equal(
        parse("{\"PostgreSQL-Backup-Manifest-Version\":2,\"System-Identifier\":18446744"
              "073709551615,\"Files\":",
              &h, &err),
        0);
    assert_true(h.system_id == UINT64_MAX);

    /* Checked against the server. */
    wv_err_clear(&err);
    assert_int_equal(wv_pg_manifest_head_check(&h, 180001, UINT64_MAX, &err), 0);
    assert_int_equal(wv_pg_manifest_head_check(&h, 180001, 42, &err), WV_EPG);
    assert_non_null(strstr(err.msg, "belongs to database system 18446744073709551615, but the "
                                    "server is database system 42"));
    wv_err_clear(&err);
    assert_int_equal(wv_pg_manifest_head_check(&h, 160004, 42, &err), WV_EPG);
    assert_non_null(strstr(err.msg, "PostgreSQL 16 sent a version 2 backup manifest, expected "
                                    "version 1"));
    h.version = 1;
    h.system_id = 0;
    wv_err_clear(&err);
    assert_int_equal(wv_pg_manifest_head_check(&h, 150010, 42, &err), 0);
    assert_int_equal(wv_pg_manifest_head_check(&h, 170006, 42, &err), WV_EPG);
    assert_non_null(strstr(err.msg, "PostgreSQL 17 sent a version 1 backup manifest"));
}

static void test_refused(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"", "does not start with '{'"},
        {"[1]", "does not start with '{'"},
        {"{ \"Files\": [", "does not start with \"PostgreSQL-Backup-Manifest-Version\""},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 3, \"Files\": [", "has version 3, not 1 or 2"},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 0, \"Files\": [", "has version 0"},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": \"2\", \"Files\": [", "no integer for"},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 2, \"Files\": [",
         "version 2 backup manifest has no \"System-Identifier\""},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"System-Identifier\": 5, \"Files\": [",
         "version 1 backup manifest has a \"System-Identifier\""},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 2, \"System-Identifier\": "
         "99999999999999999999,",
         "no integer for \"System-Identifier\""},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 2, \"System-Identifier\": 5 \"Files\"",
         "lacks a ','"},
        {"{ \"PostgreSQL-Backup-Manifest-Version\" 2", "lacks a ':'"},
        {"{ \"PostgreSQL-Backup-Manif", "ends inside a key"},
        {"{ \"PostgreSQL-Backup-Manifest-Version\": 1, ", "has no \"Files\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_pg_manifest_head h;
        wv_err err;
        int rc = parse(bad[i].text, &h, &err);
        if (rc != WV_EPG || !strstr(err.msg, bad[i].msg))
            fail_msg("%s: got %d \"%s\", expected \"%s\"", bad[i].text, rc, err.msg, bad[i].msg);
    }
}

/* libpq's messages as one line: breaks and tabs become single blanks, the trailing newline goes. */
static void test_one_line(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"FATAL:  password authentication failed\n", "FATAL:  password authentication failed"},
        {"ERROR:  syntax error\nLINE 1: selec 1\n        ^\n",
         "ERROR:  syntax error LINE 1: selec 1         ^"},
        {"a\tb\r\nc", "a b c"},
        {"", ""},
        {"\n\n", ""},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_pg_one_line(cases[i].in, out, sizeof(out));
        assert_string_equal(out, cases[i].want);
    }
    wv_pg_one_line(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    char small[6];
    wv_pg_one_line("abcdefghij", small, sizeof(small));
    assert_string_equal(small, "abcde");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
