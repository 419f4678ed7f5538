/*
 * test_fileio.c - the durable file helpers in a temporary directory: write-all (a file, /dev/full
 * and a full tmpfs for "no space", a descriptor not open for writing), full reads and preads
 * (EOF, pieces from a pipe), fsync of files and directories, mkdir -p, temp names and their
 * detection, rename that never replaces (by path and inside a directory descriptor), syncfs and
 * dirname. Every error names the path.
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "core/fileio.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/wv-fileio-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *rel)
{
    return wv_xasprintf("%s/%s", tmpdir, rel);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    wv_buf b = WV_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        wv_buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    wv_buf_cstr(&b);
    return (char *)b.data;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* err.msg must name path and, when there is one, contain strerror(errnum). */
static void assert_names(const wv_err *err, const char *path, int errnum)
{
    char quoted[600];
    snprintf(quoted, sizeof(quoted), "\"%s\"", path);
    if (!strstr(err->msg, quoted))
        fail_msg("message does not name %s: %s", quoted, err->msg);
    if (errnum && !strstr(err->msg, strerror(errnum)))
        fail_msg("message lacks \"%s\": %s", strerror(errnum), err->msg);
}

static void test_write_all(void **state)
{
    (void)state;
    char *p = path_in("w");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t n = 5 * 1024 * 1024 + 17;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_write_all(fd, data, n, p, &err), 0);
    assert_int_equal(wv_write_all(fd, data, 0, p, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(wv_fsync_fd(fd, p, &err), 0);
    close(fd);
    size_t got;
    char *back = slurp(p, &got);
    assert_int_equal(got, n);
    assert_memory_equal(back, data, n);
    free(back);
    free(data);
    free(p);
}

static void test_write_errors(void **state)
{
    (void)state;
    char *p = path_in("ro");
    write_file(p, "x");
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_write_all(fd, "abc", 3, p, &err), WV_EIO);
    assert_int_equal(err.code, WV_EIO);
    assert_names(&err, p, EBADF);
    assert_memory_equal(err.msg, "could not write ", 16);
    close(fd);
    free(p);

    /* /dev/full: every write fails with ENOSPC, which is "no space" with its hint */
    fd = open("/dev/full", O_WRONLY);
    if (fd < 0)
        return;
    wv_err_clear(&err);
    assert_int_equal(wv_write_all(fd, "abc", 3, "/dev/full", &err), WV_ENOSPACE);
    assert_int_equal(err.code, WV_ENOSPACE);
    assert_names(&err, "/dev/full", ENOSPC);
    assert_string_equal(err.hint, "free space on that file system, then retry");
    close(fd);
}

/* A real file system running full in the middle of a write: a 64 KiB tmpfs (root only). */
static void test_write_tmpfs_full(void **state)
{
    (void)state;
    char *mnt = path_in("small");
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        rmdir(mnt);
        free(mnt);
        skip();
    }
    char *p = wv_xasprintf("%s/seg", mnt);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t n = 1024 * 1024;
    uint8_t *data = calloc(1, n);
    wv_err err;
    wv_err_clear(&err);
    int rc = wv_write_all(fd, data, n, p, &err);
    close(fd);
    free(data);
    umount(mnt);
    rmdir(mnt);
    assert_int_equal(rc, WV_ENOSPACE);
    assert_names(&err, p, ENOSPC);
    assert_string_equal(err.hint, "free space on that file system, then retry");
    free(p);
    free(mnt);
}

static void test_read_full(void **state)
{
    (void)state;
    char *p = path_in("r");
    write_file(p, "0123456789");
    int fd = open(p, O_RDONLY);
    char buf[100];
    size_t got = 99;
    wv_err err;
    wv_err_clear(&err);
    /* up to EOF */
    assert_int_equal(wv_read_full(fd, buf, sizeof(buf), &got, p, &err), 0);
    assert_int_equal(got, 10);
    assert_memory_equal(buf, "0123456789", 10);
    /* at EOF: nothing, not an error */
    assert_int_equal(wv_read_full(fd, buf, sizeof(buf), &got, p, &err), 0);
    assert_int_equal(got, 0);
    /* exactly len */
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(wv_read_full(fd, buf, 4, &got, p, &err), 0);
    assert_int_equal(got, 4);
    assert_memory_equal(buf, "0123", 4);

    /* pread: at offsets, the file position untouched */
    assert_int_equal(wv_pread_full(fd, buf, 3, 7, &got, p, &err), 0);
    assert_int_equal(got, 3);
    assert_memory_equal(buf, "789", 3);
    assert_int_equal(wv_pread_full(fd, buf, 50, 5, &got, p, &err), 0);
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "56789", 5);
    assert_int_equal(wv_pread_full(fd, buf, 50, 100, &got, p, &err), 0);
    assert_int_equal(got, 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 4);
    close(fd);
    assert_int_equal(err.code, 0);

    /* errors name the path */
    char *d = path_in("dir");
    assert_int_equal(mkdir(d, 0700), 0);
    fd = open(d, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(wv_read_full(fd, buf, sizeof(buf), &got, d, &err), WV_EIO);
    assert_names(&err, d, EISDIR);
    assert_memory_equal(err.msg, "could not read ", 15);
    wv_err_clear(&err);
    assert_int_equal(wv_pread_full(fd, buf, sizeof(buf), 0, &got, d, &err), WV_EIO);
    assert_names(&err, d, EISDIR);
    close(fd);
    free(d);
    free(p);
}

/* A pipe delivers a file in pieces: wv_read_full keeps reading until it has len bytes or EOF. */
static void test_read_pieces(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (int i = 0; i < 5; i++) {
            char piece[1000];
            memset(piece, 'a' + i, sizeof(piece));
            if (write(fds[1], piece, sizeof(piece)) != (ssize_t)sizeof(piece))
                _exit(1);
            usleep(20000);
        }
        _exit(0);
    }
    close(fds[1]);
    char buf[6000];
    size_t got = 0;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_read_full(fds[0], buf, 4500, &got, "pipe", &err), 0);
    assert_int_equal(got, 4500);
    assert_int_equal(buf[0], 'a');
    assert_int_equal(buf[3999], 'd');
    assert_int_equal(buf[4499], 'e');
    assert_int_equal(wv_read_full(fds[0], buf, sizeof(buf), &got, "pipe", &err), 0);
    assert_int_equal(got, 500);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_fsync(void **state)
{
    (void)state;
    wv_err err;
    wv_err_clear(&err);
    char *p = path_in("f");
    write_file(p, "x");
    assert_int_equal(wv_fsync_dir(tmpdir, &err), 0);
    assert_int_equal(wv_fsync_parent(p, &err), 0);
    assert_int_equal(err.code, 0);

    /* a descriptor that is not open */
    assert_int_equal(wv_fsync_fd(-1, p, &err), WV_EIO);
    assert_names(&err, p, EBADF);
    assert_memory_equal(err.msg, "could not fsync ", 16);

    /* a directory that is not there, or not a directory */
    char *missing = path_in("nodir");
    wv_err_clear(&err);
    assert_int_equal(wv_fsync_dir(missing, &err), WV_EIO);
    assert_names(&err, missing, ENOENT);
    assert_memory_equal(err.msg, "could not open directory ", 25);
    wv_err_clear(&err);
    assert_int_equal(wv_fsync_dir(p, &err), WV_EIO);
    assert_names(&err, p, ENOTDIR);
    /* the parent of a file in a missing directory */
    char *deep = path_in("nodir/file");
    wv_err_clear(&err);
    assert_int_equal(wv_fsync_parent(deep, &err), WV_EIO);
    assert_names(&err, missing, ENOENT);
    free(deep);
    free(missing);
    free(p);
}

static void test_mkdir_p(void **state)
{
    (void)state;
    mode_t old = umask(022);
    wv_err err;
    wv_err_clear(&err);
    char *d = path_in("a/b/c");
    assert_int_equal(wv_mkdir_p(d, &err), 0);
    struct stat st;
    assert_int_equal(stat(d, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0750);
    char *ab = path_in("a/b");
    assert_int_equal(stat(ab, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    /* again: nothing to do */
    assert_int_equal(wv_mkdir_p(d, &err), 0);
    /* with a trailing component that exists as a directory already */
    assert_int_equal(wv_mkdir_p(tmpdir, &err), 0);
    assert_int_equal(err.code, 0);

    /* a file in the way */
    char *f = path_in("a/file");
    write_file(f, "x");
    assert_int_equal(wv_mkdir_p(f, &err), WV_EIO);
    assert_names(&err, f, 0);
    assert_non_null(strstr(err.msg, "exists and is not a directory"));
    char *under = path_in("a/file/sub/deeper");
    wv_err_clear(&err);
    assert_int_equal(wv_mkdir_p(under, &err), WV_EIO);
    assert_non_null(strstr(err.msg, "\"")); /* names what failed on the way */
    assert_true(strstr(err.msg, f) != NULL);
    assert_int_equal(stat(under, &st), -1);

    /* a relative path, from the current directory */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpdir), 0);
    wv_err_clear(&err);
    int rc = wv_mkdir_p("rel/x", &err);
    int rc2 = stat("rel/x", &st);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(rc2, 0);
    umask(old);
    free(under);
    free(f);
    free(ab);
    free(d);
}

static void test_temp_names(void **state)
{
    (void)state;
    char *final = path_in("000000010000000000000001");
    char *t1 = wv_temp_path_for(final);
    char *t2 = wv_temp_path_for(final);
    char prefix[600];
    snprintf(prefix, sizeof(prefix), "%s/.000000010000000000000001.wvtmp-%ld-", tmpdir,
             (long)getpid());
    assert_memory_equal(t1, prefix, strlen(prefix));
    assert_memory_equal(t2, prefix, strlen(prefix));
    assert_string_not_equal(t1, t2); /* unique within the process */
    /* in the same directory as the final name, and recognised as ours */
    char *d1 = wv_dirname_dup(t1);
    assert_string_equal(d1, tmpdir);
    assert_true(wv_is_temp_name(strrchr(t1, '/') + 1));
    assert_false(wv_is_temp_name(strrchr(final, '/') + 1));
    free(d1);

    char *bare = wv_temp_path_for("name");
    char want[100];
    snprintf(want, sizeof(want), ".name.wvtmp-%ld-", (long)getpid());
    assert_memory_equal(bare, want, strlen(want));
    assert_true(wv_is_temp_name(bare));
    free(bare);
    free(t1);
    free(t2);
    free(final);

    static const struct {
        const char *name;
        int is_temp;
    } names[] = {
        {".x.wvtmp-12-0", 1},
        {".000000010000000000000001.wvtmp-999-3", 1},
        {"x.wvtmp-12-0", 0}, /* not hidden */
        {".hidden", 0},
        {".x.wvtmp", 0},
        {"000000010000000000000001", 0},
        {"", 0},
        {".", 0},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (wv_is_temp_name(names[i].name) != names[i].is_temp)
            fail_msg("wv_is_temp_name(\"%s\") != %d", names[i].name, names[i].is_temp);
}

/* The same inside a directory descriptor: names relative to it, messages with the display names. */
static void test_renameat_noreplace(void **state)
{
    (void)state;
    wv_err err;
    wv_err_clear(&err);
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    char *a = path_in("at-old"), *b = path_in("at-new");
    write_file(a, "one");
    assert_int_equal(wv_renameat_noreplace(dfd, "at-old", "at-new", "A", "B", &err), 0);
    assert_int_equal(access(a, F_OK), -1);
    write_file(a, "two");
    assert_int_equal(wv_renameat_noreplace(dfd, "at-old", "at-new", "A", "B", &err), WV_EEXIST);
    assert_string_equal(err.msg, "\"B\" already exists");
    size_t n;
    char *s = slurp(b, &n);
    assert_string_equal(s, "one");
    free(s);
    unlink(a);
    assert_int_equal(wv_renameat_noreplace(dfd, "at-old", "at-x", "A", "X", &err), WV_EIO);
    assert_non_null(strstr(err.msg, "could not rename \"A\" to \"X\""));
    unlink(b);
    close(dfd);
    free(a);
    free(b);
}

static void test_rename_noreplace(void **state)
{
    (void)state;
    wv_err err;
    wv_err_clear(&err);
    char *a = path_in("old"), *b = path_in("new"), *c = path_in("other");
    write_file(a, "first");
    assert_int_equal(wv_rename_noreplace(a, b, &err), 0);
    assert_int_equal(access(a, F_OK), -1);
    size_t n;
    char *s = slurp(b, &n);
    assert_string_equal(s, "first");
    free(s);

    /* the target exists: refused, both files untouched */
    write_file(c, "second");
    assert_int_equal(wv_rename_noreplace(c, b, &err), WV_EEXIST);
    assert_int_equal(err.code, WV_EEXIST);
    char want[600];
    snprintf(want, sizeof(want), "\"%s\" already exists", b);
    assert_string_equal(err.msg, want);
    s = slurp(b, &n);
    assert_string_equal(s, "first");
    free(s);
    s = slurp(c, &n);
    assert_string_equal(s, "second");
    free(s);

    /* the source is missing: both names in the message */
    wv_err_clear(&err);
    assert_int_equal(wv_rename_noreplace(a, c, &err), WV_EIO);
    assert_names(&err, a, ENOENT);
    assert_names(&err, c, 0);
    free(a);
    free(b);
    free(c);
}

static void test_syncfs(void **state)
{
    (void)state;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_syncfs(tmpdir, &err), 0);
    char *m = path_in("missing");
    assert_int_equal(wv_syncfs(m, &err), WV_EIO);
    assert_names(&err, m, ENOENT);
    free(m);
}

static void test_dirname(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"dir/name", "dir"}, {"/a/b/c", "/a/b"}, {"name", "."},  {"/name", "/"},
        {"a/b/", "a/b"},     {"", "."},          {"a//b", "a/"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *d = wv_dirname_dup(cases[i].in);
        if (strcmp(d, cases[i].out) != 0)
            fail_msg("dirname of \"%s\": \"%s\", want \"%s\"", cases[i].in, d, cases[i].out);
        free(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_all),        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_write_tmpfs_full), cmocka_unit_test(test_read_full),
        cmocka_unit_test(test_read_pieces),      cmocka_unit_test(test_fsync),
        cmocka_unit_test(test_mkdir_p),          cmocka_unit_test(test_temp_names),
        cmocka_unit_test(test_rename_noreplace), cmocka_unit_test(test_renameat_noreplace),
        cmocka_unit_test(test_syncfs),           cmocka_unit_test(test_dirname),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
