/*
 * test_units.c - sizes in binary units, labelled the same way everywhere, and the monotonic clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/units.h"

static void test_human_bytes(void **state)
{
    static const struct {
        uint64_t n;
        const char *want;
    } cases[] = {
        {0, "0 B"},
        {1, "1 B"},
        {1023, "1023 B"},
        {1024, "1.0 KiB"},
        {1536, "1.5 KiB"},
        {UINT64_C(1048575), "1024.0 KiB"},
        {UINT64_C(1048576), "1.0 MiB"},
        {UINT64_C(23278387), "22.2 MiB"},
        {UINT64_C(1) << 30, "1.0 GiB"},
        {UINT64_C(1) << 40, "1.0 TiB"},
        {UINT64_C(1) << 50, "1.0 PiB"},
        {UINT64_C(1) << 60, "1024.0 PiB"},
        {UINT64_MAX, "16384.0 PiB"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[32];
        assert_ptr_equal(wv_human_bytes(cases[i].n, out, sizeof(out)), out);
        assert_string_equal(out, cases[i].want);
    }
    /* A short buffer is cut, never overrun. */
    char small[4] = {'x', 'x', 'x', 'x'};
    wv_human_bytes(UINT64_C(1) << 30, small, 3);
    assert_string_equal(small, "1.");
    assert_int_equal(small[3], 'x');
}

static void test_mono(void **state)
{
    double a = wv_mono_s();
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double b = wv_mono_s();
    assert_true(a > 0);
    assert_true(b - a >= 0.019);
    assert_true(b - a < 5.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_human_bytes),
        cmocka_unit_test(test_mono),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
