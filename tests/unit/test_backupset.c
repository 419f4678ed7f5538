/*
 * test_backupset.c - the backups of a real posix repository in a temporary directory: the backup
 * set (only directories with a manifest, oldest first, the others as orphans), the backup lock
 * (a second holder refused, a unique id chosen, released), which locks are alive (a live process
 * of this host, a dead one, another host's young and old locks), and leftover detection and
 * clean-up (a live backup's objects kept, the lock removed last); the keep marker (it overrides
 * the manifest's flag in the set, "on"/"off" only, replaced in place) and the repository lock of
 * expire (a second holder refused naming the first, a dead holder's lock taken over, released).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <cmocka.h>

#include "core/buf.h"
#include "repo/backupset.h"
#include "repo/repo.h"

typedef struct fixture {
    char dir[64];
    wv_repo_config rc;
    wv_repo *r;
    wv_storage *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/wv-test-backupset-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->rc.index = 2;
    snprintf(f->rc.name, sizeof(f->rc.name), "repo2");
    f->rc.type = WV_REPO_POSIX;
    f->rc.path = f->dir;
    wv_err err;
    if (wv_repo_open(&f->rc, &f->r, &err) != 0)
        return -1;
    f->st = f->r->st;
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

static void put(fixture *f, const char *key, const char *text)
{
    wv_err err;
    assert_int_equal(wv_storage_put_all(f->st, key, 0, text, strlen(text), &err), 0);
}

static int exists(fixture *f, const char *key)
{
    wv_stat sb;
    wv_err err;
    int rc = wv_storage_stat(f->st, key, &sb, &err);
    assert_true(rc == 0 || rc == WV_ENOTFOUND);
    return rc == 0;
}

/* A complete backup: one file object and its manifest (stop LSN orders the set). */
static void make_backup(fixture *f, const char *id, uint64_t stop_lsn)
{
    char key[256];
    wv_err err;
    snprintf(key, sizeof(key), "backup/%s/pgdata/PG_VERSION", id);
    put(f, key, "object");
    wv_manifest_header h;
    memset(&h, 0, sizeof(h));
    snprintf(h.id, sizeof(h.id), "%s", id);
    h.label = wv_xstrdup("test");
    h.created_by = wv_xstrdup("walvault test");
    h.system_id = 7000000000000000001ull;
    h.pg_version = 150000;
    h.wal_segsize = 16 << 20;
    h.timeline = 1;
    h.start_lsn = stop_lsn - 0x100;
    h.stop_lsn = stop_lsn;
    h.checkpoint_lsn = h.start_lsn;
    snprintf(h.start_segment, 25, "000000010000000000000001");
    snprintf(h.stop_segment, 25, "000000010000000000000001");
    h.start_time = 1795601700;
    h.stop_time = 1795601761;
    h.start_time_text = wv_xstrdup("2026-11-25 10:15:00 UTC");
    h.stop_time_text = wv_xstrdup("2026-11-25 10:16:01 UTC");
    wv_manifest_writer *w;
    assert_int_equal(wv_manifest_writer_new(NULL, &w, &err), 0);
    wv_manifest_entry e = {.type = WV_MANIFEST_DIR, .path = "pgdata", .mode = 0700, .mtime = 1};
    assert_int_equal(wv_manifest_writer_add(w, &e, &err), 0);
    wv_manifest_key(id, key, sizeof(key));
    wv_sink *sink;
    assert_int_equal(wv_storage_put_open(f->st, key, WV_PUT_NOREPLACE, &sink, &err), 0);
    wv_filter *fl = wv_filter_sink_new(sink);
    assert_int_equal(wv_manifest_writer_finish(w, &h, fl, &err), 0);
    wv_filter_chain_free(fl);
    assert_int_equal(wv_sink_commit(sink, &err), 0);
    wv_manifest_writer_free(w);
    wv_manifest_header_free(&h);
}

static long dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return (long)pid;
}

static void write_lock(fixture *f, const char *id, long pid, const char *host)
{
    char key[256], text[400];
    wv_backup_lock_key(id, key, sizeof(key));
    snprintf(text, sizeof(text), "%ld %s %lld\n", pid, host, (long long)time(NULL));
    put(f, key, text);
}

static void my_host(char *out, size_t len)
{
    memset(out, 0, len);
    gethostname(out, len - 1);
    for (char *p = out; *p; p++)
        if (*p == ' ')
            *p = '_';
}

static void test_set(void **state)
{
    fixture *f = *state;
    wv_err err;
    wv_backupset set;
    make_backup(f, "20261125T120000Z", 0x3000000);
    make_backup(f, "20261125T100000Z", 0x1000000);
    make_backup(f, "20261125T110000Z", 0x2000000);
    put(f, "backup/20261125T130000Z/pgdata/base/1/1", "interrupted");
    assert_int_equal(wv_backupset_load(f->st, &set, &err), 0);
    assert_int_equal(set.n, 3);
    assert_string_equal(set.b[0].h.id, "20261125T100000Z");
    assert_string_equal(set.b[1].h.id, "20261125T110000Z");
    assert_string_equal(set.b[2].h.id, "20261125T120000Z");
    assert_int_equal(set.norphans, 1);
    assert_string_equal(set.orphans[0], "20261125T130000Z");
    assert_non_null(wv_backupset_find(&set, "20261125T110000Z"));
    assert_null(wv_backupset_find(&set, "20261125T130000Z"));
    /* Every manifest must be of the repository's cluster. */
    assert_int_equal(
        wv_backupset_check_cluster(&set, "repo1", 7000000000000000001ull, 16 << 20, &err), 0);
    set.b[1].h.system_id = 7000000000000000002ull;
    assert_int_equal(
        wv_backupset_check_cluster(&set, "repo1", 7000000000000000001ull, 16 << 20, &err),
        WV_ECORRUPT);
    assert_string_equal(err.msg, "repo1: backup 20261125T110000Z: its manifest is of database "
                                 "system 7000000000000000002, the repository's is "
                                 "7000000000000000001");
    assert_non_null(strstr(err.hint, "backup/20261125T110000Z"));
    set.b[1].h.system_id = 7000000000000000001ull;
    assert_int_equal(
        wv_backupset_check_cluster(&set, "repo1", 7000000000000000001ull, 64 << 20, &err),
        WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "16777216-byte WAL segments, the repository's are 67108864"));
    wv_backupset_free(&set);
}

static void test_lock(void **state)
{
    fixture *f = *state;
    wv_err err;
    const char *id = "20261125T140000Z";
    char key[256];
    wv_backup_lock_key(id, key, sizeof(key));
    assert_string_equal(key, "backup/20261125T140000Z/backup.lock");
    assert_int_equal(wv_backup_lock_acquire(f->st, id, &err), 0);
    assert_true(wv_backup_lock_alive(f->st, id)); /* this process holds it */
    /* a second holder is refused */
    assert_int_equal(wv_backup_lock_acquire(f->st, id, &err), WV_EEXIST);
    /* an id with a manifest is refused too */
    make_backup(f, "20261125T100000Z", 0x1000000);
    assert_int_equal(wv_backup_lock_acquire(f->st, "20261125T100000Z", &err), WV_EEXIST);
    assert_non_null(strstr(err.msg, "backup 20261125T100000Z exists already"));
    assert_false(exists(f, "backup/20261125T100000Z/backup.lock"));

    /* take: a fresh id, unique even when two are taken in the same second */
    wv_storage *sts[1] = {f->st};
    char id1[WV_MANIFEST_ID_MAX], id2[WV_MANIFEST_ID_MAX];
    assert_int_equal(wv_backup_lock_take(sts, 1, id1, sizeof(id1), &err), 0);
    assert_int_equal(wv_backup_lock_take(sts, 1, id2, sizeof(id2), &err), 0);
    assert_string_not_equal(id1, id2);
    assert_int_equal(strlen(id1), 16);
    wv_backup_lock_key(id1, key, sizeof(key));
    assert_true(exists(f, key));
    wv_backup_lock_release(sts, 1, id1);
    assert_false(exists(f, key));
    wv_backup_lock_key(id2, key, sizeof(key));
    assert_true(exists(f, key));
}

static void test_alive(void **state)
{
    fixture *f = *state;
    char host[256], key[256], path[512];
    my_host(host, sizeof(host));
    write_lock(f, "20261125T010000Z", (long)getpid(), host);
    assert_true(wv_backup_lock_alive(f->st, "20261125T010000Z"));
    write_lock(f, "20261125T020000Z", dead_pid(), host);
    assert_false(wv_backup_lock_alive(f->st, "20261125T020000Z"));
    /* another host: trusted while young */
    write_lock(f, "20261125T030000Z", 1, "some-other-host.invalid");
    assert_true(wv_backup_lock_alive(f->st, "20261125T030000Z"));
    write_lock(f, "20261125T040000Z", 1, "some-other-host.invalid");
    wv_backup_lock_key("20261125T040000Z", key, sizeof(key));
    snprintf(path, sizeof(path), "%s/%s", f->dir, key);
    time_t old = time(NULL) - WV_BACKUP_STALE_LOCK_SECONDS - 60;
    struct utimbuf ut = {old, old};
    assert_int_equal(utime(path, &ut), 0);
    assert_false(wv_backup_lock_alive(f->st, "20261125T040000Z"));
    /* no lock, or one that is not a lock */
    assert_false(wv_backup_lock_alive(f->st, "20261125T050000Z"));
    wv_backup_lock_key("20261125T060000Z", key, sizeof(key));
    put(f, key, "garbage");
    assert_false(wv_backup_lock_alive(f->st, "20261125T060000Z"));
}

static void test_leftovers(void **state)
{
    fixture *f = *state;
    wv_err err;
    char host[256];
    my_host(host, sizeof(host));
    make_backup(f, "20261125T100000Z", 0x1000000);          /* complete: kept */
    put(f, "backup/20261125T110000Z/pgdata/base/1/1", "x"); /* no lock at all: leftover */
    put(f, "backup/20261125T110000Z/bundle/1", "x");
    put(f, "backup/20261125T120000Z/pgdata/base/1/2", "x"); /* dead holder: leftover */
    write_lock(f, "20261125T120000Z", dead_pid(), host);
    put(f, "backup/20261125T130000Z/pgdata/base/1/3", "x"); /* running: kept */
    write_lock(f, "20261125T130000Z", (long)getpid(), host);

    char **ids;
    size_t n;
    assert_int_equal(wv_backup_leftovers(f->st, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    int saw110 = 0, saw120 = 0;
    for (size_t i = 0; i < n; i++) {
        saw110 |= strcmp(ids[i], "20261125T110000Z") == 0;
        saw120 |= strcmp(ids[i], "20261125T120000Z") == 0;
        free(ids[i]);
    }
    free(ids);
    assert_true(saw110 && saw120);

    char cid[WV_MANIFEST_ID_MAX];
    int64_t cwhen = 0;
    assert_int_equal(wv_backup_cleaned_read(f->st, cid, sizeof(cid), &cwhen), 0); /* none yet */
    int64_t before = (int64_t)time(NULL);
    assert_int_equal(wv_backup_cleanup_leftovers(f->st, &err), 0);
    /* the newest clean-up is recorded for status: the last id removed, with the time */
    assert_int_equal(wv_backup_cleaned_read(f->st, cid, sizeof(cid), &cwhen), 1);
    assert_string_equal(cid, "20261125T120000Z");
    assert_true(cwhen >= before && cwhen <= (int64_t)time(NULL));
    assert_false(exists(f, "backup/20261125T110000Z/pgdata/base/1/1"));
    assert_false(exists(f, "backup/20261125T110000Z/bundle/1"));
    assert_false(exists(f, "backup/20261125T120000Z/pgdata/base/1/2"));
    assert_false(exists(f, "backup/20261125T120000Z/backup.lock"));
    assert_true(exists(f, "backup/20261125T100000Z/pgdata/PG_VERSION"));
    assert_true(exists(f, "backup/20261125T130000Z/pgdata/base/1/3"));
    assert_true(exists(f, "backup/20261125T130000Z/backup.lock"));
    assert_int_equal(wv_backup_leftovers(f->st, &ids, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(ids);
    put(f, WV_BACKUP_CLEANED_KEY, "garbage");
    assert_int_equal(wv_backup_cleaned_read(f->st, cid, sizeof(cid), &cwhen), 0);

    /* removing a backup removes all of it, the lock last */
    assert_int_equal(wv_backup_remove(f->st, "20261125T130000Z", &err), 0);
    assert_false(exists(f, "backup/20261125T130000Z/pgdata/base/1/3"));
    assert_false(exists(f, "backup/20261125T130000Z/backup.lock"));
    wv_backupset set;
    assert_int_equal(wv_backupset_load(f->st, &set, &err), 0);
    assert_int_equal(set.n, 1);
    assert_int_equal(set.norphans, 0);
    wv_backupset_free(&set);
}

static void test_keep_marker(void **state)
{
    fixture *f = *state;
    wv_err err;
    int keep = -1;
    make_backup(f, "20261125T100000Z", 0x1000000);
    assert_int_equal(wv_backup_keep_read(f->st, "20261125T100000Z", &keep, &err), 0);
    wv_backupset set;
    assert_int_equal(wv_backupset_load(f->st, &set, &err), 0);
    assert_int_equal(set.b[0].h.keep, 0);
    assert_int_equal(set.b[0].keep_marker, 0);
    wv_backupset_free(&set);

    assert_int_equal(wv_backup_keep_write(f->st, "20261125T100000Z", 1, &err), 0);
    assert_int_equal(wv_backup_keep_read(f->st, "20261125T100000Z", &keep, &err), 1);
    assert_int_equal(keep, 1);
    assert_int_equal(wv_backupset_load(f->st, &set, &err), 0);
    assert_int_equal(set.b[0].h.keep, 1);
    assert_int_equal(set.b[0].manifest_keep, 0);
    assert_int_equal(set.b[0].keep_marker, 1);
    wv_backupset_free(&set);

    /* replaced in place */
    assert_int_equal(wv_backup_keep_write(f->st, "20261125T100000Z", 0, &err), 0);
    assert_int_equal(wv_backupset_load(f->st, &set, &err), 0);
    assert_int_equal(set.b[0].h.keep, 0);
    wv_backupset_free(&set);

    /* anything else is refused, naming the marker */
    put(f, "backup/20261125T100000Z/keep", "yes\n");
    assert_int_equal(wv_backup_keep_read(f->st, "20261125T100000Z", &keep, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "backup/20261125T100000Z/keep"));
    assert_int_equal(wv_backupset_load(f->st, &set, &err), WV_ECORRUPT);

    /* removal: the manifest goes first, the marker with the rest */
    assert_int_equal(wv_backup_keep_write(f->st, "20261125T100000Z", 1, &err), 0);
    size_t n = 0;
    assert_int_equal(wv_backup_remove_counted(f->st, "20261125T100000Z", &n, &err), 0);
    assert_int_equal(n, 3); /* manifest, PG_VERSION, keep */
    assert_false(exists(f, "backup/20261125T100000Z/keep"));
    assert_false(exists(f, "backup/20261125T100000Z/backup.manifest"));
}

static void test_repo_lock(void **state)
{
    fixture *f = *state;
    wv_err err;
    char host[256], text[512];
    my_host(host, sizeof(host));
    assert_int_equal(wv_repo_lock_acquire(f->st, "expire", &err), 0);
    assert_true(exists(f, WV_REPO_LOCK_KEY));
    /* this process holds it: alive, so a second taker is refused, naming the holder */
    assert_int_equal(wv_repo_lock_acquire(f->st, "delete", &err), WV_EEXIST);
    snprintf(text, sizeof(text),
             "repo2: delete refused: another expire, delete or keep holds the "
             "repository lock \"expire.lock\" (pid %ld on %s)",
             (long)getpid(), host);
    assert_string_equal(err.msg, text);
    assert_non_null(strstr(err.hint, "wait for it to finish"));
    wv_repo_lock_release(f->st);
    assert_false(exists(f, WV_REPO_LOCK_KEY));

    /* a dead holder's lock is taken over */
    snprintf(text, sizeof(text), "%ld %s %lld\n", dead_pid(), host, (long long)time(NULL));
    put(f, WV_REPO_LOCK_KEY, text);
    assert_int_equal(wv_repo_lock_acquire(f->st, "expire", &err), 0);
    wv_buf b = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->st, WV_REPO_LOCK_KEY, 4096, &b, &err), 0);
    long pid = 0;
    assert_int_equal(sscanf(wv_buf_cstr(&b), "%ld", &pid), 1);
    assert_int_equal(pid, (long)getpid());
    wv_buf_free(&b);
    wv_repo_lock_release(f->st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repo_lock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
