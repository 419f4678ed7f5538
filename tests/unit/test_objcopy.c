/*
 * test_objcopy.c - copying a stored object between two real posix repositories, verified: the
 * copy is byte for byte the stored object; a second copy finds it identical (already); different
 * content in the target is a conflict left untouched; a damaged source copies nothing; an absent
 * source is WV_ENOTFOUND naming the source repository.
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

#include "core/buf.h"
#include "repo/objcopy.h"

#define KEY "backup/20261202T000000Z/base.1"

typedef struct fixture {
    char dir[2][64];
    wv_repo_config rc[2];
    wv_repo *r[2];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    for (int i = 0; i < 2; i++) {
        snprintf(f->dir[i], sizeof(f->dir[i]), "/tmp/wv-test-objcopy-XXXXXX");
        if (!mkdtemp(f->dir[i]))
            return -1;
        f->rc[i].index = i + 1;
        snprintf(f->rc[i].name, sizeof(f->rc[i].name), "repo%d", i + 1);
        f->rc[i].type = WV_REPO_POSIX;
        f->rc[i].path = f->dir[i];
        wv_err err;
        if (wv_repo_open(&f->rc[i], &f->r[i], &err) != 0)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    for (int i = 0; i < 2; i++) {
        wv_repo_close(f->r[i]);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir[i]);
        if (system(cmd) != 0)
            return -1;
    }
    free(f);
    return 0;
}

static uint8_t *content(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed * 7) ^ (i >> 9));
    return p;
}

static void test_copy(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already = -1;
    uint64_t bytes = 0;
    size_t n = 300 * 1024;
    uint8_t *a = content(n, 1);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);

    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 0);
    wv_buf x = WV_BUF_INIT, y = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->r[0]->st, KEY, 1 << 24, &x, &err), 0);
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 24, &y, &err), 0);
    assert_int_equal(x.len, y.len);
    assert_int_equal(bytes, x.len);
    assert_memory_equal(x.data, y.data, x.len);

    /* again: identical, already there */
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 1);
    wv_buf_free(&x);
    wv_buf_free(&y);
    free(a);
}

static void test_conflict_untouched(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already;
    uint64_t bytes;
    size_t n = 4096;
    uint8_t *a = content(n, 1), *b = content(n, 2);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    assert_int_equal(wv_repo_put_object(f->r[1], KEY, KEY, 0, NULL, b, n, &already, NULL, &err), 0);
    wv_buf before = WV_BUF_INIT, after = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 20, &before, &err), 0);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err),
                     WV_ECONFLICT);
    assert_non_null(strstr(err.msg, "repo2"));
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 20, &after, &err), 0);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    wv_buf_free(&before);
    wv_buf_free(&after);
    free(a);
    free(b);
}

static void test_damaged_or_absent_source(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already;
    uint64_t bytes;
    size_t n = 64 * 1024;
    uint8_t *a = content(n, 3);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    /* flip a byte in the middle of the stored object */
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir[0], KEY);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 1000, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseek(fp, 1000, SEEK_SET), 0);
    fputc(c ^ 0x55, fp);
    fclose(fp);
    assert_int_not_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_non_null(strstr(err.msg, "repo1"));
    wv_stat st;
    assert_int_equal(wv_storage_stat(f->r[1]->st, KEY, &st, &err), WV_ENOTFOUND);

    assert_int_equal(
        wv_repo_copy_object(f->r[0], f->r[1], KEY ".absent", 0, &bytes, &already, &err),
        WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, "repo1"));
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_or_absent_source, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
