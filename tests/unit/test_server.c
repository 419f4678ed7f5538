/*
 * test_server.c - the helpers of a throw-away PostgreSQL server: a free port that can be bound, the
 * programs' directory found or named in the error, the user rule, a program run with its exit
 * status, output file and the signal that ended it, and a directory tree handed over and removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/buf.h"
#include "pg/server.h"

static void test_free_port(void **state)
{
    (void)state;
    wv_err err;
    int port = 0;
    assert_int_equal(wv_pgserver_free_port(&port, &err), 0);
    assert_true(port > 0 && port < 65536);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
}

static char *make_tmpdir(void)
{
    char *d = wv_xstrdup("/tmp/wv-test-server-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void test_bindir(void **state)
{
    (void)state;
    wv_err err;
    char *out = NULL;
    char *d = make_tmpdir();
    assert_int_equal(wv_pgserver_bindir(d, 15, &out, &err), WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, d));
    assert_non_null(strstr(err.hint, "pg_bindir"));
    char *p = wv_xasprintf("%s/postgres", d);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    chmod(p, 0755);
    assert_int_equal(wv_pgserver_bindir(d, 15, &out, &err), 0);
    assert_string_equal(out, d);
    free(out);
    assert_int_equal(wv_pgserver_bindir(NULL, 4242, &out, &err), WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/usr/lib/postgresql/4242/bin/postgres"));
    assert_int_equal(wv_pgserver_remove_tree(d, &err), 0);
    assert_int_not_equal(access(d, F_OK), 0);
    free(p);
    free(d);
}

static void test_owner(void **state)
{
    (void)state;
    wv_err err;
    wv_runas as;
    int rc = wv_pgserver_owner("/", &as, &err);
    if (geteuid() != 0) {
        assert_int_equal(rc, 0);
        assert_int_equal(as.uid, geteuid());
    } else if (rc == 0) {
        assert_string_equal(as.name, "postgres"); /* "/" is root's: the postgres user */
        assert_int_not_equal(as.uid, 0);
    } else {
        assert_int_equal(rc, WV_ECONFIG);
    }
}

static void test_run(void **state)
{
    (void)state;
    wv_err err;
    int status = -1;
    char *sh_exit[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    char *d = make_tmpdir();
    char *log = wv_xasprintf("%s/sub/log", d);
    char *sub = wv_xasprintf("%s/sub", d);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(wv_pgserver_run(NULL, sh_exit, log, &status, &err), 0);
    assert_int_equal(status, 3);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    assert_int_equal(n, 8);
    assert_string_equal(buf, "out\nerr\n");
    char *sh_kill[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    assert_int_equal(wv_pgserver_run(NULL, sh_kill, NULL, &status, &err), 0);
    assert_int_equal(status, 128 + 15);
    char *missing[] = {"/nonexistent/program", NULL};
    assert_int_equal(wv_pgserver_run(NULL, missing, NULL, &status, &err), WV_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/program"));
    assert_int_equal(wv_pgserver_chown_tree(d, geteuid(), getegid(), &err), 0);
    char *link = wv_xasprintf("%s/sub/link", d);
    assert_int_equal(symlink("/etc", link), 0);
    assert_int_equal(wv_pgserver_remove_tree(d, &err), 0);
    assert_int_not_equal(access(d, F_OK), 0);
    assert_int_equal(access("/etc/passwd", F_OK), 0); /* a link is removed, never followed */
    assert_int_equal(wv_pgserver_remove_tree(d, &err), 0);
    free(link);
    free(sub);
    free(log);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_port),
        cmocka_unit_test(test_bindir),
        cmocka_unit_test(test_owner),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
