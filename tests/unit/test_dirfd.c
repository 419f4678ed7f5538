/*
 * test_dirfd.c - paths resolved beneath a directory descriptor, in a temporary directory: valid
 * and invalid relative paths, creation, a symbolic link at every depth refused (and followed only
 * as the first component when asked), nothing created outside the root, pruning of empty
 * directories, removal of trees without following links, and the mode policy.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "core/dirfd.h"
#include "core/error.h"

static char tmpdir[256];
static int rootfd = -1;

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/wv-dirfd-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    char *root = wv_xasprintf("%s/root", tmpdir);
    char *out = wv_xasprintf("%s/outside", tmpdir);
    int rc = mkdir(root, 0700) | mkdir(out, 0700);
    rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(root);
    free(out);
    return rc == 0 && rootfd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    close(rootfd);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int exists(const char *rel)
{
    char *p = wv_xasprintf("%s/%s", tmpdir, rel);
    struct stat sb;
    int r = lstat(p, &sb) == 0;
    free(p);
    return r;
}

static int outside_is_empty(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s/outside')\"", tmpdir);
    return system(cmd) == 0;
}

static void link_to_outside(const char *rel)
{
    char *p = wv_xasprintf("%s/root/%s", tmpdir, rel);
    char *t = wv_xasprintf("%s/outside", tmpdir);
    assert_int_equal(symlink(t, p), 0);
    free(p);
    free(t);
}

static void test_relpath_valid(void **state)
{
    (void)state;
    static const char *good[] = {"", "a", "a/b", "pg_tblspc/16384", "...", ".a", "a..b"};
    static const char *bad[] = {"/a",    "a/",     "a//b", ".",    "..",
                                "a/./b", "a/../b", "../x", "a/..", NULL};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(wv_relpath_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(wv_relpath_valid(bad[i]));
}

static void test_open_and_create(void **state)
{
    (void)state;
    wv_err err;
    int fd = -1;
    assert_int_equal(wv_dirfd_open(rootfd, "root", "x/y", 0, 0700, &fd, &err), WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, "root: \"x\" not found"));
    assert_int_equal(fd, -1);
    assert_int_equal(
        wv_dirfd_open(rootfd, "root", "x/y/z", WV_DIRFD_CREATE | WV_DIRFD_SYNC, 0700, &fd, &err),
        0);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    close(fd);
    assert_true(exists("root/x/y/z"));
    /* "" is the root itself. */
    assert_int_equal(wv_dirfd_open(rootfd, "root", "", 0, 0700, &fd, &err), 0);
    close(fd);
    /* The parent of a file path, and the name inside it. */
    const char *base = NULL;
    assert_int_equal(wv_dirfd_open_parent(rootfd, "root", "x/y/file", 0, 0700, &fd, &base, &err),
                     0);
    assert_string_equal(base, "file");
    close(fd);
    assert_int_equal(wv_dirfd_open_parent(rootfd, "root", "top", 0, 0700, &fd, &base, &err), 0);
    assert_string_equal(base, "top");
    close(fd);
    assert_int_equal(wv_dirfd_open_parent(rootfd, "root", "", 0, 0700, &fd, &base, &err),
                     WV_EREFUSED);
    /* A file where a directory is wanted. */
    int f = openat(rootfd, "afile", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(f >= 0);
    close(f);
    assert_int_equal(wv_dirfd_open(rootfd, "root", "afile/sub", WV_DIRFD_CREATE, 0700, &fd, &err),
                     WV_EIO);
    assert_non_null(strstr(err.msg, "\"afile\" exists and is not a directory"));
}

static void test_bad_paths(void **state)
{
    (void)state;
    static const char *bad[] = {"../outside", "/tmp", "a/../../outside", "a//b", "./a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wv_err err;
        int fd = -1;
        assert_int_equal(wv_dirfd_open(rootfd, "root", bad[i], WV_DIRFD_CREATE, 0700, &fd, &err),
                         WV_EREFUSED);
        assert_int_equal(fd, -1);
        assert_non_null(strstr(err.msg, bad[i]));
    }
    assert_true(outside_is_empty());
}

static void test_symlinks(void **state)
{
    (void)state;
    wv_err err;
    int fd = -1;
    /* At the top and below it: refused with the link named, nothing created outside. */
    link_to_outside("evil");
    assert_int_equal(wv_dirfd_open(rootfd, "root", "evil/sub", WV_DIRFD_CREATE, 0700, &fd, &err),
                     WV_EREFUSED);
    assert_string_equal(err.msg, "root: \"evil\" is a symbolic link; refusing to follow it (it "
                                 "could lead outside)");
    assert_non_null(strstr(err.hint, "real directory"));
    assert_int_equal(mkdirat(rootfd, "d1", 0700), 0);
    link_to_outside("d1/evil");
    assert_int_equal(wv_dirfd_open(rootfd, "root", "d1/evil/a/b", WV_DIRFD_CREATE, 0700, &fd, &err),
                     WV_EREFUSED);
    assert_non_null(strstr(err.msg, "\"d1/evil\" is a symbolic link"));
    const char *base;
    assert_int_equal(wv_dirfd_open_parent(rootfd, "root", "d1/evil/file", WV_DIRFD_CREATE, 0700,
                                          &fd, &base, &err),
                     WV_EREFUSED);
    /* The last component of a parent walk is not followed either, but a link as the file name
     * itself is the caller's to open with O_NOFOLLOW. */
    assert_int_equal(wv_dirfd_open_parent(rootfd, "root", "d1/evil", 0, 0700, &fd, &base, &err), 0);
    assert_string_equal(base, "evil");
    assert_int_equal(openat(fd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), -1);
    assert_int_equal(errno, ELOOP);
    close(fd);
    assert_true(outside_is_empty());
    /* FOLLOW_FIRST: a top-level link is followed, one below it is not. */
    assert_int_equal(wv_dirfd_open(rootfd, "root", "evil/sub",
                                   WV_DIRFD_CREATE | WV_DIRFD_FOLLOW_FIRST, 0700, &fd, &err),
                     0);
    close(fd);
    assert_true(exists("outside/sub"));
    assert_int_equal(wv_dirfd_open(rootfd, "root", "d1/evil/x",
                                   WV_DIRFD_CREATE | WV_DIRFD_FOLLOW_FIRST, 0700, &fd, &err),
                     WV_EREFUSED);
    char *p = wv_xasprintf("%s/outside/sub", tmpdir);
    assert_int_equal(rmdir(p), 0);
    free(p);
    assert_true(outside_is_empty());
}

static void test_prune_and_remove(void **state)
{
    (void)state;
    wv_err err;
    int fd;
    assert_int_equal(wv_dirfd_open(rootfd, "root", "p/q/r", WV_DIRFD_CREATE, 0700, &fd, &err), 0);
    close(fd);
    assert_int_equal(wv_dirfd_open(rootfd, "root", "p/keep", WV_DIRFD_CREATE, 0700, &fd, &err), 0);
    close(fd);
    wv_dirfd_prune_empty(rootfd, "p/q/r", 0);
    assert_false(exists("root/p/q"));
    assert_true(exists("root/p/keep")); /* p is not empty: kept */
    /* FOLLOW_FIRST keeps the top-level directory. */
    wv_dirfd_prune_empty(rootfd, "p/keep", WV_DIRFD_FOLLOW_FIRST);
    assert_false(exists("root/p/keep"));
    assert_true(exists("root/p"));
    /* A tree with a link to outside: the link goes, what it points at stays. */
    assert_int_equal(wv_dirfd_open(rootfd, "root", "t/u", WV_DIRFD_CREATE, 0700, &fd, &err), 0);
    int f = openat(fd, "file", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(f >= 0);
    close(f);
    close(fd);
    char *outfile = wv_xasprintf("%s/outside/precious", tmpdir);
    f = open(outfile, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(f >= 0);
    close(f);
    link_to_outside("t/u/link");
    assert_int_equal(wv_dirfd_remove_tree(rootfd, "t", "root/t", &err), 0);
    assert_false(exists("root/t"));
    assert_true(exists("outside/precious"));
    assert_int_equal(wv_dirfd_remove_tree(rootfd, "t", "root/t", &err), 0); /* gone: fine */
    unlink(outfile);
    free(outfile);
}

static void test_mode_policy(void **state)
{
    (void)state;
    static const uint32_t modes[] = {0,    0600,  0640,  0644,  0700,  0750, 0755,
                                     0777, 06777, 07777, 04755, 01777, 0004};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        for (int g = 0; g <= 1; g++) {
            mode_t d = wv_pg_dir_mode(modes[i], g), f = wv_pg_file_mode(modes[i], g);
            assert_true(d == 0700 || d == 0750);
            assert_true(f == 0600 || f == 0640);
            assert_int_equal(d & 07027, 0);
            assert_int_equal(f & 07137, 0);
            if (!g) {
                assert_int_equal(d, 0700);
                assert_int_equal(f, 0600);
            }
        }
    }
    assert_int_equal(wv_pg_dir_mode(0700, 1), 0750);
    assert_int_equal(wv_pg_file_mode(0640, 1), 0640);
    assert_int_equal(wv_pg_file_mode(0600, 1), 0600);
    assert_int_equal(wv_pg_file_mode(06777, 1), 0640);
    assert_true(wv_pg_group_access(0750));
    assert_false(wv_pg_group_access(0700));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relpath_valid),    cmocka_unit_test(test_open_and_create),
        cmocka_unit_test(test_bad_paths),        cmocka_unit_test(test_symlinks),
        cmocka_unit_test(test_prune_and_remove), cmocka_unit_test(test_mode_policy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
