/*
 * test_buf.c - the growable byte buffer (append, printf, reserve, consume, reset, the NUL-terminated
 * view, growth across many appends, binary content) and the aborting allocators (copies, zeroed
 * memory, zero-size requests, and one message then abort on out-of-memory, in a child process).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"

static void test_init_and_empty(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT;
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    /* the view of an empty buffer is "" and does not count the NUL */
    assert_string_equal(wv_buf_cstr(&b), "");
    assert_int_equal(b.len, 0);
    assert_true(b.cap >= 1);
    wv_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    wv_buf_free(&b); /* twice is harmless */

    wv_buf c;
    memset(&c, 0x5a, sizeof(c));
    wv_buf_init(&c);
    assert_null(c.data);
    assert_int_equal(c.len, 0);
    assert_int_equal(c.cap, 0);
}

static void test_append(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT;
    wv_buf_append(&b, "abc", 3);
    wv_buf_append(&b, "", 0); /* nothing */
    wv_buf_append(&b, NULL, 0);
    wv_buf_append_str(&b, "def");
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "abcdef", 6);
    assert_string_equal(wv_buf_cstr(&b), "abcdef");
    assert_int_equal(b.len, 6);

    /* binary content with NULs is kept byte for byte */
    const uint8_t bin[] = {0, 1, 0, 255, 0};
    wv_buf_append(&b, bin, sizeof(bin));
    assert_int_equal(b.len, 11);
    assert_memory_equal(b.data + 6, bin, sizeof(bin));
    wv_buf_free(&b);
}

static void test_growth(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT;
    size_t total = 0;
    for (int i = 0; i < 100000; i++) {
        uint8_t v = (uint8_t)(i * 7);
        wv_buf_append(&b, &v, 1);
        total++;
        assert_true(b.cap > b.len); /* room for the view's NUL at any time */
    }
    assert_int_equal(b.len, total);
    for (size_t i = 0; i < total; i++)
        if (b.data[i] != (uint8_t)(i * 7))
            fail_msg("byte %zu is %u", i, b.data[i]);
    /* one large append */
    uint8_t *big = malloc(3 << 20);
    memset(big, 0xab, 3 << 20);
    wv_buf_append(&b, big, 3 << 20);
    assert_int_equal(b.len, total + (3 << 20));
    assert_int_equal(b.data[b.len - 1], 0xab);
    assert_int_equal(b.data[total - 1], (uint8_t)((total - 1) * 7));
    free(big);
    wv_buf_free(&b);
}

static void test_reserve(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT;
    wv_buf_append_str(&b, "xy");
    uint8_t *p = wv_buf_reserve(&b, 1000);
    assert_ptr_equal(p, b.data + b.len);
    assert_true(b.cap - b.len >= 1000 + 1);
    memcpy(p, "zzz", 3);
    b.len += 3;
    assert_string_equal(wv_buf_cstr(&b), "xyzzz");
    /* a reserve that fits does not move the data */
    uint8_t *before = b.data;
    size_t cap = b.cap;
    wv_buf_reserve(&b, 10);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.cap, cap);
    wv_buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT;
    wv_buf_printf(&b, "%s=%d", "a", 1);
    wv_buf_printf(&b, ",%s=%d", "bb", -22);
    assert_string_equal(wv_buf_cstr(&b), "a=1,bb=-22");
    assert_int_equal(b.len, 10);
    wv_buf_printf(&b, "%s", ""); /* nothing appended */
    assert_int_equal(b.len, 10);

    /* longer than any first allocation */
    char big[5000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wv_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, 10 + 2 + 4999);
    assert_int_equal(b.data[10], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(strlen(wv_buf_cstr(&b)), b.len);
    wv_buf_free(&b);
}

static void test_consume_reset(void **state)
{
    (void)state;
    wv_buf b = WV_BUF_INIT;
    wv_buf_append_str(&b, "0123456789");
    wv_buf_consume(&b, 0);
    assert_string_equal(wv_buf_cstr(&b), "0123456789");
    wv_buf_consume(&b, 3);
    assert_int_equal(b.len, 7);
    assert_string_equal(wv_buf_cstr(&b), "3456789");
    wv_buf_consume(&b, 7);
    assert_int_equal(b.len, 0);
    wv_buf_append_str(&b, "ab");
    wv_buf_consume(&b, 100); /* more than there is: empty */
    assert_int_equal(b.len, 0);
    assert_string_equal(wv_buf_cstr(&b), "");

    wv_buf_append_str(&b, "keep capacity");
    size_t cap = b.cap;
    wv_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_non_null(b.data);
    wv_buf_append_str(&b, "new");
    assert_string_equal(wv_buf_cstr(&b), "new");
    wv_buf_free(&b);
}

static void test_strings(void **state)
{
    (void)state;
    char *s = wv_xstrdup("hello");
    assert_string_equal(s, "hello");
    free(s);
    s = wv_xstrdup("");
    assert_string_equal(s, "");
    free(s);
    s = wv_xstrndup("hello", 3);
    assert_string_equal(s, "hel");
    free(s);
    s = wv_xstrndup("hi", 10); /* n beyond the string: the whole string */
    assert_string_equal(s, "hi");
    free(s);
    s = wv_xstrndup("hi", 0);
    assert_string_equal(s, "");
    free(s);
    s = wv_xasprintf("%s-%05d-%c", "x", 42, 'z');
    assert_string_equal(s, "x-00042-z");
    free(s);
    s = wv_xasprintf("%s", "");
    assert_string_equal(s, "");
    free(s);
}

static void test_alloc(void **state)
{
    (void)state;
    /* zero-size requests still return memory that can be freed */
    void *p = wv_xmalloc(0);
    assert_non_null(p);
    free(p);
    p = wv_xcalloc(0, 8);
    assert_non_null(p);
    free(p);
    unsigned char *z = wv_xcalloc(100, 3);
    for (int i = 0; i < 300; i++)
        assert_int_equal(z[i], 0);
    z = wv_xrealloc(z, 10000);
    assert_int_equal(z[299], 0); /* contents kept */
    z[9999] = 1;
    free(z);
    p = wv_xrealloc(NULL, 16);
    assert_non_null(p);
    free(p);
}

/* Out of memory: one line on stderr naming the size, then abort (never a NULL return). */
static void test_oom_aborts(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan reports the impossible allocation itself */
#else
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], 2);
        close(fds[0]);
        volatile size_t huge = SIZE_MAX - 4096;
        void *q = wv_xmalloc(huge);
        _exit(q ? 3 : 4); /* not reached */
    }
    close(fds[1]);
    char out[512];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof(out) && (r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    char want[128];
    snprintf(want, sizeof(want), "walvault: fatal: out of memory allocating %zu bytes\n",
             (size_t)(SIZE_MAX - 4096));
    assert_string_equal(out, want);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_empty), cmocka_unit_test(test_append),
        cmocka_unit_test(test_growth),         cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_printf),         cmocka_unit_test(test_consume_reset),
        cmocka_unit_test(test_strings),        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_oom_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
