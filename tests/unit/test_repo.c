/*
 * test_repo.c - the repository's rule "an archived name is never overwritten with different
 * content" (wv_repo_put_object, wv_repo_commit_object, wv_repo_same_object) against a real posix
 * repository in a temporary directory: a first store, an identical re-store, different content
 * refused with WV_ECONFLICT and the stored object untouched, two concurrent writers of one name,
 * another cluster refused, and nothing visible after a failed store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "repo/repo.h"

#define KEY "wal/0000000100000000/000000010000000000000003"
#define SEG "000000010000000000000003"

typedef struct fixture {
    char dir[64];
    wv_repo_config rc;
    wv_repo *r;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/wv-test-repo-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->rc.index = 1;
    snprintf(f->rc.name, sizeof(f->rc.name), "repo1");
    f->rc.type = WV_REPO_POSIX;
    f->rc.path = f->dir;
    wv_err err;
    if (wv_repo_open(&f->rc, &f->r, &err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    wv_repo_close(f->r);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static uint8_t *content(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed * 17) % 251);
    return p;
}

/* The plain content stored under key, fetched and verified into a file. */
static void fetch(fixture *f, const char *key, wv_buf *out)
{
    char path[128];
    wv_err err;
    wv_obj_info info;
    snprintf(path, sizeof(path), "%s.fetched", f->dir);
    assert_int_equal(
        wv_repo_get_file(f->r->st, key, path, WV_GET_NOSYNC, WV_GET_NOLIMIT, &info, &err), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        wv_buf_append(out, buf, n);
    fclose(fp);
    unlink(path);
}

typedef struct listing {
    int n;
    char keys[16][320];
} listing;

static int list_cb(void *arg, const char *key, const wv_stat *st)
{
    listing *l = arg;
    (void)st;
    if (l->n < 16)
        snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
    l->n++;
    return 0;
}

static listing list_all(fixture *f)
{
    listing l;
    wv_err err;
    memset(&l, 0, sizeof(l));
    assert_int_equal(wv_storage_list(f->r->st, "", list_cb, &l, &err), 0);
    return l;
}

static void test_store_restore_conflict(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already = -1;
    wv_obj_info info, stored;
    size_t n = 100000;
    uint8_t *a = content(n, 1), *b = content(n, 2);

    /* first store: visible, not "already" */
    assert_int_equal(wv_repo_put_object(f->r, KEY, SEG, 0, NULL, a, n, &already, &info, &err), 0);
    assert_int_equal(already, 0);
    assert_int_equal(wv_repo_read_info(f->r->st, KEY, &stored, &err), 0);
    assert_memory_equal(stored.sha256, info.sha256, 32);
    assert_int_equal(stored.plain_size, n);

    /* identical re-store: success, "already archived" */
    assert_int_equal(wv_repo_put_object(f->r, KEY, SEG, 0, NULL, a, n, &already, NULL, &err), 0);
    assert_int_equal(already, 1);

    /* different content: refused, with the split-brain message and hint */
    int rc = wv_repo_put_object(f->r, KEY, SEG, 0, NULL, b, n, &already, NULL, &err);
    assert_int_equal(rc, WV_ECONFLICT);
    assert_int_equal(err.code, WV_ECONFLICT);
    assert_non_null(strstr(err.msg, "repo1: " SEG " is already archived with different content"));
    assert_non_null(strstr(err.msg, "refusing to overwrite it"));
    assert_non_null(strstr(err.hint, "split brain"));
    assert_non_null(strstr(err.hint, "the archived copy was left untouched"));

    /* a shorter prefix of the same bytes is different content too */
    rc = wv_repo_put_object(f->r, KEY, SEG, 0, NULL, a, n - 1, &already, NULL, &err);
    assert_int_equal(rc, WV_ECONFLICT);

    /* the stored object is untouched: its content is still a */
    wv_buf got = WV_BUF_INIT;
    fetch(f, KEY, &got);
    assert_int_equal(got.len, n);
    assert_memory_equal(got.data, a, n);
    wv_buf_free(&got);
    listing l = list_all(f);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], KEY);
    free(a);
    free(b);
}

/* Two writers of one name at once (a sync while wal-push runs): the first commit wins; the second
 * is "already archived" if identical and a conflict if not, and never replaces the first. */
static void test_concurrent_writers(void **state)
{
    fixture *f = *state;
    wv_err err;
    wv_sink *s1, *s2, *s3;
    wv_obj_info i1, i2, i3, stored;
    int already = -1;
    size_t n = 5000;
    uint8_t *a = content(n, 3), *b = content(n, 4);
    const uint8_t *data[3] = {a, a, b};
    wv_sink **sinks[3] = {&s1, &s2, &s3};
    wv_obj_info *infos[3] = {&i1, &i2, &i3};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(wv_storage_put_open(f->r->st, KEY, WV_PUT_NOREPLACE, sinks[k], &err), 0);
        wv_objwriter *w = wv_objwriter_new(sinks[k], 1, NULL);
        assert_int_equal(wv_objwriter_write(w, data[k], n, &err), 0);
        assert_int_equal(wv_objwriter_finish(w, infos[k], &err), 0);
        wv_objwriter_free(w);
    }
    assert_int_equal(wv_repo_commit_object(f->r, s1, KEY, SEG, &i1, &already, NULL, &err), 0);
    assert_int_equal(already, 0);
    assert_int_equal(wv_repo_commit_object(f->r, s2, KEY, SEG, &i2, &already, &stored, &err), 0);
    assert_int_equal(already, 1);
    assert_memory_equal(stored.sha256, i1.sha256, 32);
    assert_int_equal(wv_repo_commit_object(f->r, s3, KEY, SEG, &i3, &already, &stored, &err),
                     WV_ECONFLICT);
    assert_int_equal(already, 0);
    assert_memory_equal(stored.sha256, i1.sha256, 32); /* what is stored: the first one */
    wv_buf got = WV_BUF_INIT;
    fetch(f, KEY, &got);
    assert_int_equal(got.len, n);
    assert_memory_equal(got.data, a, n);
    wv_buf_free(&got);
    assert_int_equal(list_all(f).n, 1); /* no temporary file of the losers left */
    free(a);
    free(b);
}

static void test_same_object(void **state)
{
    fixture *f = *state;
    wv_err err;
    wv_obj_info stored;
    memset(&stored, 0, sizeof(stored));
    for (int i = 0; i < 32; i++)
        stored.sha256[i] = (uint8_t)i;
    stored.plain_size = 42;
    uint8_t sha[32];
    memcpy(sha, stored.sha256, 32);
    wv_err_clear(&err);
    assert_int_equal(wv_repo_same_object(f->r, "x", &stored, sha, 42, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(wv_repo_same_object(f->r, "x", &stored, sha, 43, &err), WV_ECONFLICT);
    sha[31] ^= 1;
    assert_int_equal(wv_repo_same_object(f->r, "x", &stored, sha, 42, &err), WV_ECONFLICT);
    /* both digests are shown, shortened */
    assert_non_null(
        strstr(err.msg, "stored sha256 0001020304050607..., this file 0001020304050607..."));
}

/* The repository belongs to the first cluster that uses it. */
static void test_other_cluster(void **state)
{
    fixture *f = *state;
    wv_err err;
    uint64_t seg = 16 << 20;
    assert_int_equal(wv_repo_check_cluster(f->r, 7000000000000000001ull, 15, seg, &err), 0);
    assert_int_equal(wv_repo_check_cluster(f->r, 7000000000000000001ull, 15, seg, &err), 0);
    /* a second handle reads what the first recorded */
    wv_repo *r2;
    assert_int_equal(wv_repo_open(&f->rc, &r2, &err), 0);
    int rc = wv_repo_check_cluster(r2, 7000000000000000002ull, 15, seg, &err);
    assert_int_equal(rc, WV_EMISMATCH);
    assert_non_null(strstr(err.msg, "7000000000000000001"));
    assert_non_null(strstr(err.msg, "7000000000000000002"));
    assert_non_null(strstr(err.hint, "nothing was written"));
    assert_int_equal(wv_repo_check_cluster(r2, 7000000000000000001ull, 15, seg * 4, &err),
                     WV_EMISMATCH);
    wv_repo_close(r2);
    /* only the info object exists */
    listing l = list_all(f);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.keys[0], WV_REPO_INFO_KEY);
}

/* A store that fails leaves nothing under its key and no temporary file. */
static void test_failed_store_invisible(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already = -1;
    uint8_t *a = content(1000, 5);
    /* a file where the key needs a directory: the store cannot start */
    char path[128];
    snprintf(path, sizeof(path), "%s/wal", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    int rc = wv_repo_put_object(f->r, KEY, SEG, 0, NULL, a, 1000, &already, NULL, &err);
    assert_true(rc < 0);
    assert_int_not_equal(rc, WV_ECONFLICT);
    assert_non_null(strstr(err.msg, "repo1: ")); /* the storage layer names the repository */
    assert_string_equal(err.repo, "repo1");
    listing l = list_all(f);
    assert_int_equal(l.n, 1); /* only the file "wal" we made */
    assert_string_equal(l.keys[0], "wal");
    unlink(path);
    wv_stat sb;
    assert_int_equal(wv_storage_stat(f->r->st, KEY, &sb, &err), WV_ENOTFOUND);

    /* a store that is written and then abandoned (aborted) leaves nothing either */
    wv_sink *s;
    assert_int_equal(wv_storage_put_open(f->r->st, KEY, WV_PUT_NOREPLACE, &s, &err), 0);
    assert_int_equal(wv_sink_write(s, a, 1000, &err), 0);
    wv_sink_abort(s);
    assert_int_equal(wv_storage_stat(f->r->st, KEY, &sb, &err), WV_ENOTFOUND);
    assert_int_equal(list_all(f).n, 0);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_restore_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_store_invisible, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
