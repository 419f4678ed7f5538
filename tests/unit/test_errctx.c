/*
 * test_errctx.c - the repository and object of an error (core/error.h): wv_err_context puts in
 * front exactly what is not recorded yet and records it, so a message is never prefixed twice;
 * wv_err_names records what a message's author wrote into it; wv_err_set and wv_err_clear reset
 * both; the detail of wv_err_context_at; the storage layer naming the repository of a driver's
 * error and a driver (posix) naming the key of a source's error, end to end.
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

#include "core/error.h"
#include "storage/storage.h"

static void test_context_once(void **state)
{
    (void)state;
    wv_err e;
    wv_err_set(&e, WV_ECORRUPT, "checksum mismatch");
    assert_string_equal(e.repo, "");
    assert_string_equal(e.object, "");
    assert_int_equal(wv_err_context(&e, "repo1", "wal/x/y"), WV_ECORRUPT);
    assert_string_equal(e.msg, "repo1: \"wal/x/y\": checksum mismatch");
    assert_string_equal(e.repo, "repo1");
    assert_string_equal(e.object, "wal/x/y");
    /* a second context (the caller's caller) adds nothing */
    wv_err_context(&e, "repo1", "wal/x/y");
    wv_err_context(&e, "repo2", "other");
    assert_string_equal(e.msg, "repo1: \"wal/x/y\": checksum mismatch");
    assert_string_equal(e.repo, "repo1");
    assert_string_equal(e.object, "wal/x/y");
    assert_int_equal(e.code, WV_ECORRUPT);
}

static void test_parts(void **state)
{
    (void)state;
    wv_err e;
    /* the object first, then the repository in front of it */
    wv_err_set(&e, WV_EIO, "short read");
    wv_err_context(&e, NULL, "backup/1/bundle/2");
    assert_string_equal(e.msg, "\"backup/1/bundle/2\": short read");
    assert_string_equal(e.repo, "");
    wv_err_context(&e, "repo3", "backup/1/bundle/2");
    assert_string_equal(e.msg, "repo3: \"backup/1/bundle/2\": short read");
    assert_string_equal(e.repo, "repo3");

    /* only the repository */
    wv_err_set(&e, WV_EIO, "flush failed");
    wv_err_context(&e, "repo1", NULL);
    assert_string_equal(e.msg, "repo1: flush failed");
    assert_string_equal(e.object, "");
    /* once the repository is in front, the message is complete */
    wv_err_context(&e, "repo1", "k");
    assert_string_equal(e.msg, "repo1: flush failed");
    assert_string_equal(e.object, "");

    /* nothing given: nothing changes */
    wv_err_set(&e, WV_EIO, "x");
    wv_err_context(&e, NULL, NULL);
    assert_string_equal(e.msg, "x");
}

static void test_names(void **state)
{
    (void)state;
    wv_err e;
    /* a driver that wrote the key's path into its message records the key */
    wv_err_errno(&e, WV_EIO, 5, "could not read \"/srv/r/wal/a/b\"");
    wv_err_names(&e, NULL, "wal/a/b");
    assert_string_equal(e.object, "wal/a/b");
    assert_true(strstr(e.msg, "could not read \"/srv/r/wal/a/b\": ") == e.msg);
    wv_err_context(&e, "repo1", "wal/a/b");
    assert_true(strncmp(e.msg, "repo1: could not read \"/srv/r/wal/a/b\": ", 40) == 0);
    assert_string_equal(e.repo, "repo1");

    /* a message that names its repository in its text */
    wv_err_set(&e, WV_EMISMATCH, "repo2: refused: another cluster");
    wv_err_names(&e, "repo2", NULL);
    wv_err_context(&e, "repo2", "walvault.repo");
    assert_string_equal(e.msg, "repo2: refused: another cluster");
    /* names keeps what is recorded */
    wv_err_names(&e, "repo9", "o");
    assert_string_equal(e.repo, "repo2");
    assert_string_equal(e.object, "o");
}

/* A message written with the repository's name in front (the s3 driver) counts as naming it. */
static void test_repo_in_text(void **state)
{
    (void)state;
    wv_err e;
    wv_err_set(&e, WV_EAUTH, "repo3: access denied to PUT \"wal/a\"");
    wv_err_context(&e, "repo3", "wal/a");
    assert_string_equal(e.msg, "repo3: access denied to PUT \"wal/a\"");
    assert_string_equal(e.repo, "repo3");
    assert_string_equal(e.object, "");
    /* but not a repository whose name merely starts the same */
    wv_err_set(&e, WV_EIO, "repo10: down");
    wv_err_context(&e, "repo1", NULL);
    assert_string_equal(e.msg, "repo1: repo10: down");
}

static void test_reset(void **state)
{
    (void)state;
    wv_err e;
    wv_err_set(&e, WV_EIO, "a");
    wv_err_context(&e, "repo1", "k");
    wv_err_set(&e, WV_EIO, "b");
    assert_string_equal(e.repo, "");
    assert_string_equal(e.object, "");
    wv_err_context(&e, "repo1", "k");
    assert_string_equal(e.msg, "repo1: \"k\": b");
    wv_err_clear(&e);
    assert_int_equal(e.code, 0);
    assert_string_equal(e.repo, "");
    assert_string_equal(e.object, "");
    /* a clear record or NULL is left alone */
    assert_int_equal(wv_err_context(&e, "repo1", "k"), 0);
    assert_string_equal(e.msg, "");
    assert_string_equal(e.repo, "");
    assert_int_equal(wv_err_context(NULL, "repo1", "k"), 0);
    assert_int_equal(wv_err_names(NULL, "repo1", "k"), 0);
    /* wv_err_errno resets too */
    wv_err_set(&e, WV_EIO, "a");
    wv_err_context(&e, "repo1", "k");
    wv_err_errno(&e, WV_EIO, 28, "could not write \"f\"");
    assert_int_equal(e.code, WV_ENOSPACE);
    assert_string_equal(e.repo, "");
}

static void test_detail(void **state)
{
    (void)state;
    wv_err e;
    wv_err_set(&e, WV_ECORRUPT, "checksum mismatch");
    wv_err_context_at(&e, "repo1", "backup/1/bundle/2", " at offset %d (%s)", 4096, "pgdata/x");
    assert_string_equal(
        e.msg, "repo1: \"backup/1/bundle/2\" at offset 4096 (pgdata/x): checksum mismatch");
    assert_string_equal(e.object, "backup/1/bundle/2");
    /* the detail is given even if the object is named already, but never twice */
    wv_err_set(&e, WV_EIO, "could not read \"/r/backup/1/bundle/2\"");
    wv_err_names(&e, NULL, "backup/1/bundle/2");
    wv_err_context_at(&e, "repo1", "backup/1/bundle/2", " of backup %s", "1");
    assert_string_equal(e.msg, "repo1: \"backup/1/bundle/2\" of backup 1: could not read "
                               "\"/r/backup/1/bundle/2\"");
    wv_err_context_at(&e, "repo1", "backup/1/bundle/2", " of backup %s", "1");
    assert_true(strstr(e.msg + 1, "repo1:") == NULL);
}

static void test_long(void **state)
{
    (void)state;
    wv_err e;
    char obj[WV_ERR_OBJECT_MAX * 2];
    memset(obj, 'k', sizeof(obj) - 1);
    obj[sizeof(obj) - 1] = '\0';
    char msg[WV_ERR_MSG_MAX];
    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    wv_err_set(&e, WV_EIO, "%s", msg);
    wv_err_context(&e, "repo1", obj);
    assert_int_equal(strlen(e.msg), WV_ERR_MSG_MAX - 1);
    assert_true(strncmp(e.msg, "repo1: \"kkk", 11) == 0);
    assert_int_equal(strlen(e.object), WV_ERR_OBJECT_MAX - 1);
}

/* End to end through a real posix repository. */
static void test_storage(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/wv-test-errctx-XXXXXX");
    assert_non_null(mkdtemp(dir));
    wv_repo_config rc = {.index = 1, .type = WV_REPO_POSIX, .path = dir};
    snprintf(rc.name, sizeof(rc.name), "repo1");
    wv_storage *st;
    wv_err e;
    assert_int_equal(wv_storage_open(&rc, &st, &e), 0);

    /* a driver error of an operation: the storage layer names the repository, once */
    wv_source *src = NULL;
    assert_int_equal(wv_storage_get_open(st, "wal/none", 0, -1, &src, &e), WV_ENOTFOUND);
    assert_string_equal(e.msg, "repo1: \"wal/none\" not found");
    assert_string_equal(e.repo, "repo1");
    wv_err_context(&e, "repo1", "wal/none");
    assert_string_equal(e.msg, "repo1: \"wal/none\" not found");

    /* an invalid key */
    assert_int_equal(wv_storage_stat(st, "../x", NULL, &e), WV_EINTERNAL);
    assert_string_equal(e.msg, "repo1: invalid object key \"../x\"");
    assert_string_equal(e.repo, "repo1");
    assert_string_equal(e.object, "../x");

    /* a source's error (a directory read as a file): the driver names the key, its user the
     * repository, and the key is not put in front a second time */
    char path[128];
    snprintf(path, sizeof(path), "%s/d", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    int rcode = wv_storage_get_open(st, "d", 0, -1, &src, &e);
    if (rcode == 0) {
        uint8_t buf[16];
        size_t got;
        rcode = wv_source_read(src, buf, sizeof(buf), &got, &e);
        wv_source_close(src);
        if (rcode != 0) {
            assert_string_equal(e.object, "d");
            assert_string_equal(e.repo, "");
            wv_err_context(&e, "repo1", "d");
            assert_true(strncmp(e.msg, "repo1: could not read \"", 23) == 0);
        }
    }
    assert_true(rcode != 0);
    wv_storage_free(st);
    rmdir(path);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_once), cmocka_unit_test(test_parts),
        cmocka_unit_test(test_names),        cmocka_unit_test(test_repo_in_text),
        cmocka_unit_test(test_reset),        cmocka_unit_test(test_detail),
        cmocka_unit_test(test_long),         cmocka_unit_test(test_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
