/*
 * test_json.c - JSON strings: escapes, NULL, and valid JSON whatever the bytes (invalid UTF-8,
 * overlong forms, surrogates and code points past U+10FFFF become U+FFFD).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/json.h"

static void check(const char *in, const char *want)
{
    wv_buf b = WV_BUF_INIT;
    wv_json_string(&b, in);
    if (strcmp(wv_buf_cstr(&b), want) != 0)
        fail_msg("\"%s\": got %s, want %s", in ? in : "(null)", wv_buf_cstr(&b), want);
    wv_buf_free(&b);
}

static void test_escapes(void **state)
{
    check(NULL, "\"\"");
    check("", "\"\"");
    check("repo1", "\"repo1\"");
    check("a\"b\\c", "\"a\\\"b\\\\c\"");
    check("line\nnext\ttab\rcr", "\"line\\nnext\\ttab\\rcr\"");
    check("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
    check("/slash stays/", "\"/slash stays/\"");
}

static void test_utf8(void **state)
{
    check("caf\xc3\xa9", "\"caf\xc3\xa9\"");                       /* é kept */
    check("\xe2\x82\xac", "\"\xe2\x82\xac\"");                     /* € kept */
    check("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");             /* U+1F600 kept */
    check("\xff", "\"\\ufffd\"");                                  /* never a UTF-8 byte */
    check("\xc0\xaf", "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
    check("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");            /* a surrogate */
    check("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* past U+10FFFF */
    check("ab\xc3", "\"ab\\ufffd\"");                              /* cut short at the end */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
