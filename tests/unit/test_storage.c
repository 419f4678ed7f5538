/*
 * test_storage.c - storage/storage.c (key validation, dispatch, remove_many's loop over remove,
 * the whole-object helpers) and the posix driver, on a real temporary directory: what commit,
 * abort and NOREPLACE leave behind, ranged reads, stat, list, remove, flush.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/fileio.h"
#include "storage/storage.h"
#include "storage/driver.h"

/* ---- fixture: a posix repository in a fresh temporary directory ---- */

typedef struct fixture {
    char root[64];
    wv_repo_config rc;
    wv_storage *st;
} fixture;

static int setup(void **state)
{
    fixture *f = wv_xcalloc(1, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/wv-test-storage.XXXXXX");
    assert_non_null(mkdtemp(f->root));
    f->rc.index = 1;
    snprintf(f->rc.name, sizeof(f->rc.name), "repo1");
    f->rc.type = WV_REPO_POSIX;
    f->rc.path = f->root;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_storage_open(&f->rc, &f->st, &err), 0);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    wv_storage_free(f->st);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int counted;

static int count_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)sb;
    (void)flag;
    if (ftw->level > 0)
        counted++;
    return 0;
}

/* Every file and directory below dir (the root itself not counted). */
static int count_entries(const char *dir)
{
    counted = 0;
    assert_int_equal(nftw(dir, count_entry, 16, FTW_PHYS), 0);
    return counted;
}

static int exists(const fixture *f, const char *rel)
{
    char path[512];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", f->root, rel);
    return lstat(path, &sb) == 0;
}

static void put_bytes(fixture *f, const char *key, unsigned flags, const void *data, size_t len)
{
    wv_err err;
    wv_err_clear(&err);
    int rc = wv_storage_put_all(f->st, key, flags, data, len, &err);
    if (rc != 0)
        fail_msg("put \"%s\": %s", key, err.msg);
}

static void put_str(fixture *f, const char *key, const char *s)
{
    put_bytes(f, key, 0, s, strlen(s));
}

/* The whole object as a string ("" if absent: use stat to tell). */
static char *get_str(fixture *f, const char *key)
{
    wv_buf b = WV_BUF_INIT;
    wv_err err;
    wv_err_clear(&err);
    if (wv_storage_get_all(f->st, key, 1 << 20, &b, &err) != 0)
        fail_msg("get \"%s\": %s", key, err.msg);
    char *s = wv_xstrdup(wv_buf_cstr(&b));
    wv_buf_free(&b);
    return s;
}

/* ---- keys ---- */

static void test_key_validation_table(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        int valid;
    } cases[] = {
        {"a", 1},
        {"a/b", 1},
        {"wal/0000000100000000/000000010000000000000003", 1},
        {"backup/20261125T010000Z/backup.manifest", 1},
        {"a.b", 1},
        {"..a", 1},
        {"a..", 1},
        {".a/b", 1},
        {"a/.b", 1},
        {"x~y-z_w+q=r,s;t@u!", 1},
        {"", 0},
        {"/a", 0},
        {"a/", 0},
        {"a//b", 0},
        {".", 0},
        {"..", 0},
        {"./a", 0},
        {"a/./b", 0},
        {"a/../b", 0},
        {"../a", 0},
        {"a/..", 0},
        {"a/.", 0},
        {"a b", 0},
        {"a\\b", 0},
        {"a\tb", 0},
        {"a\nb", 0},
        {"caf\xc3\xa9", 0},
        {"a\x7f", 0},
        {"\x01", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (wv_storage_key_valid(cases[i].key) != cases[i].valid)
            fail_msg("key \"%s\": expected %s", cases[i].key, cases[i].valid ? "valid" : "invalid");
    }
    assert_int_equal(wv_storage_key_valid(NULL), 0);
}

/* Every operation that takes a key refuses an invalid one before the driver sees it. */
static void test_invalid_keys_refused(void **state)
{
    fixture *f = *state;
    wv_err err;
    wv_sink *sink = NULL;
    wv_source *src = NULL;
    wv_stat sb;
    const char *bad = "a/../../escape";
    assert_int_equal(wv_storage_put_open(f->st, bad, 0, &sink, &err), WV_EINTERNAL);
    assert_null(sink);
    assert_string_equal(err.msg, "repo1: invalid object key \"a/../../escape\"");
    assert_int_equal(wv_storage_get_open(f->st, bad, 0, -1, &src, &err), WV_EINTERNAL);
    assert_null(src);
    assert_int_equal(wv_storage_stat(f->st, bad, &sb, &err), WV_EINTERNAL);
    assert_int_equal(wv_storage_remove(f->st, bad, &err), WV_EINTERNAL);
    assert_int_equal(count_entries(f->root), 0);
}

/* ---- open ---- */

static void test_open_errors(void **state)
{
    fixture *f = *state;
    wv_storage *st = NULL;
    wv_err err;
    wv_repo_config rc = f->rc;

    rc.path = "relative/path";
    assert_int_equal(wv_storage_open(&rc, &st, &err), WV_ECONFIG);
    assert_string_equal(err.msg, "repo1: path must be absolute");

    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing", f->root);
    rc.path = missing;
    wv_err_clear(&err);
    assert_int_equal(wv_storage_open(&rc, &st, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "is not accessible"));
    assert_non_null(strstr(err.msg, missing));
    assert_non_null(strstr(err.hint, "walvault does not create it"));

    char file[128];
    snprintf(file, sizeof(file), "%s/plain-file", f->root);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    rc.path = file;
    assert_int_equal(wv_storage_open(&rc, &st, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "is not a directory"));
    assert_null(st);
}

static void test_identity_and_features(void **state)
{
    fixture *f = *state;
    assert_string_equal(wv_storage_name(f->st), "repo1");
    assert_string_equal(wv_storage_location(f->st), f->root);
    unsigned ft = wv_storage_features(f->st);
    assert_true(ft & WV_ST_ATOMIC_PUT);
    assert_true(ft & WV_ST_DIRS);
    assert_true(ft & WV_ST_DIR_FSYNC);
    assert_false(ft & WV_ST_ROUND_TRIPS);
    /* the bit and the operation go together */
    assert_false(ft & WV_ST_REMOVE_MANY);
    assert_null(f->st->ops->remove_many);
}

/* ---- writes ---- */

static void test_commit_leaves_only_the_object(void **state)
{
    fixture *f = *state;
    put_str(f, "d1/d2/object", "hello");
    char *s = get_str(f, "d1/d2/object");
    assert_string_equal(s, "hello");
    free(s);
    wv_stat sb;
    wv_err err;
    assert_int_equal(wv_storage_stat(f->st, "d1/d2/object", &sb, &err), 0);
    assert_int_equal(sb.size, 5);
    assert_true(sb.mtime > 0);
    /* d1, d1/d2 and the file: no temporary file left */
    assert_int_equal(count_entries(f->root), 3);
}

static void test_abort_leaves_no_trace(void **state)
{
    fixture *f = *state;
    wv_sink *sink = NULL;
    wv_err err;
    wv_stat sb;
    assert_int_equal(wv_storage_put_open(f->st, "x/y/z", 0, &sink, &err), 0);
    assert_int_equal(wv_sink_write(sink, "partial", 7, &err), 0);
    assert_true(count_entries(f->root) > 0); /* the temporary file exists meanwhile */
    wv_sink_abort(sink);
    assert_int_equal(wv_storage_stat(f->st, "x/y/z", &sb, &err), WV_ENOTFOUND);
    /* the directories made for it are gone too */
    assert_int_equal(count_entries(f->root), 0);
    wv_sink_abort(NULL); /* allowed */

    /* an abort next to an existing object leaves that object alone */
    put_str(f, "x/kept", "kept");
    assert_int_equal(wv_storage_put_open(f->st, "x/other", 0, &sink, &err), 0);
    assert_int_equal(wv_sink_write(sink, "junk", 4, &err), 0);
    wv_sink_abort(sink);
    assert_int_equal(count_entries(f->root), 2);
    char *s = get_str(f, "x/kept");
    assert_string_equal(s, "kept");
    free(s);
}

static void test_noreplace(void **state)
{
    fixture *f = *state;
    wv_err err;
    put_bytes(f, "wal/seg", WV_PUT_NOREPLACE, "original", 8);
    wv_err_clear(&err);
    assert_int_equal(wv_storage_put_all(f->st, "wal/seg", WV_PUT_NOREPLACE, "other!", 6, &err),
                     WV_EEXIST);
    assert_non_null(strstr(err.msg, "repo1: "));
    char *s = get_str(f, "wal/seg");
    assert_string_equal(s, "original");
    free(s);
    /* the refused write left no temporary file: wal and wal/seg */
    assert_int_equal(count_entries(f->root), 2);

    /* without the flag a commit replaces */
    put_str(f, "wal/seg", "replaced");
    s = get_str(f, "wal/seg");
    assert_string_equal(s, "replaced");
    free(s);
}

/* ---- reads ---- */

#define OBJ_SIZE 1000

static void pattern(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + i / 251);
}

/* Read (offset, length) of the 1000-byte pattern object and compare with [start, start+want). */
static void read_range(fixture *f, int64_t offset, int64_t length, size_t start, size_t want)
{
    uint8_t exp[OBJ_SIZE], got[OBJ_SIZE + 16];
    pattern(exp, sizeof(exp));
    wv_source *src = NULL;
    wv_err err;
    assert_int_equal(wv_storage_get_open(f->st, "obj", offset, length, &src, &err), 0);
    size_t total = 0;
    for (;;) {
        size_t n = 0;
        /* small reads, so that several calls are needed */
        assert_int_equal(wv_source_read(src, got + total, 77, &n, &err), 0);
        if (n == 0)
            break;
        total += n;
        assert_true(total <= OBJ_SIZE);
    }
    wv_source_close(src);
    if (total != want)
        fail_msg("range (%lld, %lld): %zu bytes, expected %zu", (long long)offset,
                 (long long)length, total, want);
    if (want)
        assert_memory_equal(got, exp + start, want);
}

static void test_ranged_get(void **state)
{
    fixture *f = *state;
    uint8_t data[OBJ_SIZE];
    pattern(data, sizeof(data));
    put_bytes(f, "obj", 0, data, sizeof(data));
    static const struct {
        int64_t offset, length;
        size_t start, want;
    } cases[] = {
        {0, -1, 0, 1000},     /* whole */
        {100, 200, 100, 200}, /* offset and length */
        {900, -1, 900, 100},  /* to the end */
        {990, 50, 990, 10},   /* length past the end */
        {0, 0, 0, 0},         /* nothing */
        {1000, -1, 0, 0},     /* at the end */
        {5000, 10, 0, 0},     /* past the end */
        {-128, -1, 872, 128}, /* suffix */
        {-1, -1, 999, 1},     /* the last byte */
        {-1000, -1, 0, 1000}, /* suffix of the whole size */
        {-5000, -1, 0, 1000}, /* suffix longer than the object */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        read_range(f, cases[i].offset, cases[i].length, cases[i].start, cases[i].want);
}

static int list_count(fixture *f, const char *prefix);

/* Ranges no caller may ask for: refused before anything is read (INT64_MIN once overflowed). */
static void test_bad_ranges(void **state)
{
    fixture *f = *state;
    uint8_t data[OBJ_SIZE];
    pattern(data, sizeof(data));
    put_bytes(f, "obj", 0, data, sizeof(data));
    static const int64_t bad[][2] = {
        {INT64_MIN, -1}, {INT64_MIN, 10}, {0, -2}, {5, INT64_MIN}, {-1, -5},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_source *src = NULL;
        wv_err err;
        wv_err_clear(&err);
        assert_int_equal(wv_storage_get_open(f->st, "obj", bad[i][0], bad[i][1], &src, &err),
                         WV_EUSAGE);
        assert_null(src);
        assert_non_null(strstr(err.msg, "bad range for \"obj\""));
    }
    /* The extremes that are valid: the largest suffix, the largest offset and length. */
    read_range(f, INT64_MIN + 1, -1, 0, OBJ_SIZE);
    read_range(f, INT64_MAX, INT64_MAX, 0, 0);
    read_range(f, 2, INT64_MAX, 2, OBJ_SIZE - 2);
}

static void make_outside(char *out, size_t len)
{
    snprintf(out, len, "/tmp/wv-test-outside.XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void link_in_root(const fixture *f, const char *rel, const char *target)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", f->root, rel);
    assert_int_equal(symlink(target, path), 0);
}

/* A symbolic link inside a key's path is refused by every operation, naming it, and nothing is
 * written, read or removed through it. */
static void test_symlink_inside_refused(void **state)
{
    fixture *f = *state;
    char outside[64], secret[128];
    make_outside(outside, sizeof(outside));
    snprintf(secret, sizeof(secret), "%s/secret", outside);
    FILE *fp = fopen(secret, "w");
    assert_non_null(fp);
    fputs("secret", fp);
    fclose(fp);
    put_str(f, "wal/0000000100000000/keep", "x");
    link_in_root(f, "wal/0000000100000000/evil", outside);
    link_in_root(f, "wal/0000000100000000/file", secret);
    link_in_root(f, "other", outside);
    static const char *keys[] = {"wal/0000000100000000/evil/secret", "wal/0000000100000000/file",
                                 "wal/0000000100000000/evil/new", "other/secret", "other/new"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        wv_err err;
        wv_sink *sink = NULL;
        wv_source *src = NULL;
        wv_stat ws;
        wv_err_clear(&err);
        assert_int_equal(wv_storage_put_open(f->st, keys[i], 0, &sink, &err), WV_EREFUSED);
        assert_non_null(strstr(err.msg, "is a symbolic link; refusing to follow it"));
        assert_int_equal(wv_storage_get_open(f->st, keys[i], 0, -1, &src, &err), WV_EREFUSED);
        assert_int_equal(wv_storage_stat(f->st, keys[i], &ws, &err), WV_EREFUSED);
        assert_int_equal(wv_storage_remove(f->st, keys[i], &err), WV_EREFUSED);
    }
    wv_err err;
    wv_sink *sink = NULL;
    assert_int_equal(wv_storage_put_open(f->st, "other/new", 0, &sink, &err), WV_EREFUSED);
    assert_non_null(strstr(err.msg, "\"other\" is a symbolic link"));
    assert_int_equal(wv_storage_put_open(f->st, "wal/0000000100000000/evil/x", 0, &sink, &err),
                     WV_EREFUSED);
    assert_non_null(strstr(err.msg, "\"wal/0000000100000000/evil\" is a symbolic link"));
    /* Listing does not descend into them either. */
    assert_int_equal(list_count(f, "wal/"), 1);
    assert_int_equal(count_entries(outside), 1);
    char *s = get_str(f, "wal/0000000100000000/keep");
    assert_string_equal(s, "x");
    free(s);
    unlink(secret);
    rmdir(outside);
}

/* A symbolic link as the repository root or as the top-level wal/ or backup/ is followed. */
static void test_symlinked_root_and_top_level(void **state)
{
    fixture *f = *state;
    char disk[64], linkroot[128];
    make_outside(disk, sizeof(disk));
    link_in_root(f, "wal", disk);
    put_str(f, "wal/0000000100000000/000000010000000000000001", "segment");
    char *s = get_str(f, "wal/0000000100000000/000000010000000000000001");
    assert_string_equal(s, "segment");
    free(s);
    assert_int_equal(list_count(f, ""), 1);
    assert_int_equal(list_count(f, "wal/"), 1);
    assert_int_equal(count_entries(disk), 2); /* the directory and the object, on the other disk */
    wv_err err;
    assert_int_equal(
        wv_storage_remove(f->st, "wal/0000000100000000/000000010000000000000001", &err), 0);
    assert_int_equal(count_entries(disk), 0); /* pruned up to, not including, wal/ */
    assert_true(exists(f, "wal"));

    /* The root itself as a link. */
    snprintf(linkroot, sizeof(linkroot), "%s-link", f->root);
    assert_int_equal(symlink(f->root, linkroot), 0);
    wv_repo_config rc = f->rc;
    rc.path = linkroot;
    wv_storage *st = NULL;
    assert_int_equal(wv_storage_open(&rc, &st, &err), 0);
    assert_int_equal(wv_storage_put_all(st, "backup/x/file", 0, "b", 1, &err), 0);
    wv_storage_free(st);
    assert_true(exists(f, "backup/x/file"));
    unlink(linkroot);
    char walpath[128];
    snprintf(walpath, sizeof(walpath), "%s/wal", f->root);
    unlink(walpath);
    rmdir(disk);
}

static void test_absent_keys(void **state)
{
    fixture *f = *state;
    wv_source *src = NULL;
    wv_stat sb;
    wv_err err;
    put_str(f, "present/one", "1");
    assert_int_equal(wv_storage_get_open(f->st, "present/two", 0, -1, &src, &err), WV_ENOTFOUND);
    assert_null(src);
    assert_string_equal(err.msg, "repo1: \"present/two\" not found");
    assert_int_equal(wv_storage_get_open(f->st, "absent/dir/x", -10, -1, &src, &err), WV_ENOTFOUND);
    assert_int_equal(wv_storage_stat(f->st, "absent/dir/x", &sb, &err), WV_ENOTFOUND);
    /* a directory is not an object */
    assert_int_equal(wv_storage_stat(f->st, "present", &sb, &err), WV_ENOTFOUND);
    wv_err_clear(&err);
    assert_int_equal(wv_storage_remove(f->st, "absent/dir/x", &err), 0);
    wv_buf b = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->st, "absent", 100, &b, &err), WV_ENOTFOUND);
    wv_buf_free(&b);
    wv_source_close(NULL); /* allowed */
}

static void test_get_all_bounded(void **state)
{
    fixture *f = *state;
    uint8_t data[OBJ_SIZE];
    pattern(data, sizeof(data));
    put_bytes(f, "obj", 0, data, sizeof(data));
    wv_buf b = WV_BUF_INIT;
    wv_err err;
    assert_int_equal(wv_storage_get_all(f->st, "obj", OBJ_SIZE - 1, &b, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "is larger than 999 bytes"));
    wv_buf_reset(&b);
    assert_int_equal(wv_storage_get_all(f->st, "obj", OBJ_SIZE, &b, &err), 0);
    assert_int_equal(b.len, OBJ_SIZE);
    assert_memory_equal(b.data, data, OBJ_SIZE);
    wv_buf_free(&b);
}

/* ---- list and remove ---- */

typedef struct listed {
    int count;
    int stop_after; /* 0 = never */
    char keys[16][64];
    uint64_t sizes[16];
} listed;

static int on_list(void *arg, const char *key, const wv_stat *st)
{
    listed *l = arg;
    if (l->count < 16) {
        snprintf(l->keys[l->count], sizeof(l->keys[0]), "%s", key);
        l->sizes[l->count] = st->size;
    }
    l->count++;
    return l->stop_after && l->count >= l->stop_after ? 7 : 0;
}

static int has_key(const listed *l, const char *key)
{
    for (int i = 0; i < l->count && i < 16; i++)
        if (strcmp(l->keys[i], key) == 0)
            return 1;
    return 0;
}

static int list_count(fixture *f, const char *prefix)
{
    listed l = {0};
    wv_err err;
    assert_int_equal(wv_storage_list(f->st, prefix, on_list, &l, &err), 0);
    return l.count;
}

static void test_list(void **state)
{
    fixture *f = *state;
    put_str(f, "a/1", "x");
    put_str(f, "a/2", "xy");
    put_str(f, "a/b/3", "xyz");
    put_str(f, "ab/4", "");
    put_str(f, "c/5", "12345");

    listed l = {0};
    wv_err err;
    assert_int_equal(wv_storage_list(f->st, "a/", on_list, &l, &err), 0);
    assert_int_equal(l.count, 3); /* recursive, in no particular order */
    assert_true(has_key(&l, "a/1") && has_key(&l, "a/2") && has_key(&l, "a/b/3"));
    for (int i = 0; i < l.count; i++)
        if (strcmp(l.keys[i], "a/b/3") == 0)
            assert_int_equal(l.sizes[i], 3);

    assert_int_equal(list_count(f, "a"), 4);   /* a partial name matches ab/ too */
    assert_int_equal(list_count(f, "a/b"), 1); /* and a/b/3 */
    assert_int_equal(list_count(f, ""), 5);
    assert_int_equal(wv_storage_list(f->st, NULL, on_list, &(listed){0}, &err), 0);
    assert_int_equal(list_count(f, "zz/"), 0); /* an absent prefix is an empty listing */
    assert_int_equal(list_count(f, "c/5"), 1);

    /* the callback's non-zero value stops the listing and is returned */
    listed stop = {.stop_after = 2};
    assert_int_equal(wv_storage_list(f->st, "", on_list, &stop, &err), 7);
    assert_int_equal(stop.count, 2);

    /* a temporary file (a writer's, or one killed mid-write) is never listed */
    char final[256];
    snprintf(final, sizeof(final), "%s/a/hidden", f->root);
    char *tmp = wv_temp_path_for(final);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(list_count(f, "a/"), 3);
    assert_int_equal(wv_storage_stat(f->st, "a/hidden", &(wv_stat){0}, &err), WV_ENOTFOUND);
    unlink(tmp);
    free(tmp);
}

static void test_remove_prunes_directories(void **state)
{
    fixture *f = *state;
    wv_err err;
    wv_stat sb;
    put_str(f, "a/b/c/deep", "1");
    put_str(f, "a/shallow", "2");
    assert_int_equal(wv_storage_remove(f->st, "a/b/c/deep", &err), 0);
    assert_int_equal(wv_storage_stat(f->st, "a/b/c/deep", &sb, &err), WV_ENOTFOUND);
    assert_false(exists(f, "a/b"));
    assert_true(exists(f, "a/shallow"));
    assert_int_equal(wv_storage_remove(f->st, "a/shallow", &err), 0);
    assert_int_equal(count_entries(f->root), 0);
}

/* Without WV_ST_REMOVE_MANY, wv_storage_remove_many is remove once per key. */
static void test_remove_many_fallback(void **state)
{
    fixture *f = *state;
    wv_err err;
    const char *keys[] = {"p/1", "p/q/2", "other/3", "absent/4", "p/1"};
    put_str(f, "p/1", "1");
    put_str(f, "p/q/2", "2");
    put_str(f, "other/3", "3");
    put_str(f, "kept/5", "5");
    assert_int_equal(wv_storage_remove_many(f->st, keys, 5, &err), 0);
    assert_int_equal(list_count(f, ""), 1);
    assert_true(exists(f, "kept/5"));
    assert_false(exists(f, "p"));
    /* all absent now: still success */
    assert_int_equal(wv_storage_remove_many(f->st, keys, 5, &err), 0);
    assert_int_equal(wv_storage_remove_many(f->st, NULL, 0, &err), 0);
}

static void test_remove_many_validates_every_key_first(void **state)
{
    fixture *f = *state;
    wv_err err;
    put_str(f, "k/1", "1");
    put_str(f, "k/2", "2");
    const char *keys[] = {"k/1", "k/2", "k/../../outside"};
    wv_err_clear(&err);
    assert_int_equal(wv_storage_remove_many(f->st, keys, 3, &err), WV_EINTERNAL);
    assert_string_equal(err.msg, "repo1: invalid object key \"k/../../outside\"");
    assert_int_equal(list_count(f, "k/"), 2); /* nothing removed */
    const char *with_null[] = {"k/1", NULL};
    assert_int_equal(wv_storage_remove_many(f->st, with_null, 2, &err), WV_EINTERNAL);
    assert_int_equal(wv_storage_remove_many(f->st, NULL, 1, &err), WV_EINTERNAL);
    assert_int_equal(list_count(f, "k/"), 2);
}

/* The loop stops at the first key that cannot be removed, whose error names it. */
static void test_remove_many_fallback_stops_at_failure(void **state)
{
    fixture *f = *state;
    wv_err err;
    put_str(f, "r/1", "1");
    put_str(f, "r/dir/inside", "x"); /* "r/dir" is a directory: unlink fails */
    put_str(f, "r/3", "3");
    const char *keys[] = {"r/1", "r/dir", "r/3"};
    wv_err_clear(&err);
    int rc = wv_storage_remove_many(f->st, keys, 3, &err);
    assert_int_equal(rc, WV_EIO);
    assert_non_null(strstr(err.msg, "repo1: could not remove"));
    assert_non_null(strstr(err.msg, "r/dir"));
    assert_false(exists(f, "r/1"));
    assert_true(exists(f, "r/dir/inside"));
    assert_true(exists(f, "r/3"));
}

static void test_flush(void **state)
{
    fixture *f = *state;
    wv_err err;
    wv_stat sb;
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "nosync/%d", i);
        put_bytes(f, key, WV_PUT_NOSYNC, "data", 4);
    }
    assert_int_equal(wv_storage_flush(f->st, &err), 0);
    assert_int_equal(wv_storage_stat(f->st, "nosync/4", &sb, &err), 0);
    assert_int_equal(sb.size, 4);
    assert_int_equal(list_count(f, "nosync/"), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_validation_table),
        cmocka_unit_test_setup_teardown(test_invalid_keys_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_and_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_leaves_only_the_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noreplace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranged_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_inside_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_root_and_top_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_all_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_prunes_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_many_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_many_validates_every_key_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remove_many_fallback_stops_at_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
