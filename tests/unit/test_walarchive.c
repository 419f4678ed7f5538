/*
 * test_walarchive.c - the WAL archive inventory and what recovery reaches with it, over a real posix
 * repository in a temporary directory whose objects are written through the object writer (WAL
 * segments with commit times in their trailers, history files) and the storage API (restore point
 * lists): segments per timeline (sorted, other names ignored), history files, reach from a start
 * LSN (end, gaps, the segment holding the start missing), timeline paths, the last and first
 * commit over a range, restore points by name, and damaged history or trailers.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"
#include "pg/walname.h"
#include "pipeline/object.h"
#include "repo/repo.h"
#include "repo/recovery.h"
#include "repo/walarchive.h"
#include "storage/storage.h"

#define SEG         (UINT64_C(16) << 20)
#define LSN(hi, lo) (((uint64_t)(hi) << 32) | (uint64_t)(lo))
#define NONE        INT64_MIN

typedef struct {
    char dir[256];
    wv_repo_config rc;
    wv_storage *st;
} repo_t;

static int setup(void **state)
{
    repo_t *r = calloc(1, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/wv-walarchive-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    r->rc.index = 1;
    snprintf(r->rc.name, sizeof(r->rc.name), "repo1");
    r->rc.type = WV_REPO_POSIX;
    r->rc.path = r->dir;
    wv_err err;
    if (wv_storage_open(&r->rc, &r->st, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    repo_t *r = *state;
    char cmd[300];
    wv_storage_free(r->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
    int rc = system(cmd);
    free(r);
    return rc == 0 ? 0 : -1;
}

/* An object through the object writer, committed under key. */
static void put_object(repo_t *r, const char *key, uint8_t kind, const void *data, size_t len,
                       int64_t first_us, int64_t last_us, uint32_t ncommits)
{
    wv_err err;
    wv_err_clear(&err);
    wv_sink *sink = NULL;
    if (wv_storage_put_open(r->st, key, WV_PUT_NOREPLACE, &sink, &err) != 0)
        fail_msg("put_open %s: %s", key, err.msg);
    wv_obj_opts opts = {.compress = WV_COMPRESS_LZ4, .level = 1, .kind = kind};
    wv_objwriter *w = wv_objwriter_new(&sink, 1, &opts);
    assert_int_equal(wv_objwriter_write(w, data, len, &err), 0);
    if (ncommits || first_us != NONE)
        wv_objwriter_set_walinfo(w, first_us, last_us, ncommits, 0);
    assert_int_equal(wv_objwriter_finish(w, NULL, &err), 0);
    assert_null(wv_objwriter_sink_error(w, 0));
    wv_objwriter_free(w);
    if (wv_sink_commit(sink, &err) != 0)
        fail_msg("commit %s: %s", key, err.msg);
}

/* An archived WAL segment of timeline tli, with commit times (NONE: no commits). */
static void put_segment(repo_t *r, uint32_t tli, uint64_t segno, int64_t first_us, int64_t last_us)
{
    char name[WV_WALNAME_SEGMENT_LEN], key[128];
    wv_walname_format_segment(tli, segno, SEG, name);
    wv_err err;
    assert_int_equal(wv_repo_wal_key(name, key, sizeof(key), &err), 0);
    char content[64];
    int n = snprintf(content, sizeof(content), "segment %s", name);
    put_object(r, key, WV_OBJ_KIND_WAL, content, (size_t)n, first_us, last_us,
               first_us == NONE ? 0 : 2);
}

static void put_history(repo_t *r, uint32_t tli, const char *text)
{
    char name[WV_WALNAME_HISTORY_LEN], key[128];
    wv_walname_format_history(tli, name);
    wv_err err;
    assert_int_equal(wv_repo_wal_key(name, key, sizeof(key), &err), 0);
    put_object(r, key, WV_OBJ_KIND_HISTORY, text, strlen(text), NONE, NONE, 0);
}

static void put_raw(repo_t *r, const char *key, const char *text)
{
    wv_err err;
    if (wv_storage_put_all(r->st, key, WV_PUT_NOREPLACE, text, strlen(text), &err) != 0)
        fail_msg("put_all %s: %s", key, err.msg);
}

static wv_archive *scan(repo_t *r)
{
    wv_archive *a = NULL;
    wv_err err;
    wv_err_clear(&err);
    if (wv_archive_scan(r->st, SEG, &a, &err) != 0)
        fail_msg("scan: %s", err.msg);
    assert_non_null(a);
    return a;
}

static void assert_segnos(const wv_archive *a, uint32_t tli, const uint64_t *want, size_t n)
{
    const wv_archive_tli *t = wv_archive_timeline(a, tli);
    assert_non_null(t);
    assert_int_equal(t->tli, tli);
    if (t->nseg != n)
        fail_msg("timeline %u: %zu segments, want %zu", tli, t->nseg, n);
    for (size_t i = 0; i < n; i++)
        if (t->segnos[i] != want[i])
            fail_msg("timeline %u: segment %zu is %" PRIu64 ", want %" PRIu64, tli, i, t->segnos[i],
                     want[i]);
}

static void test_empty(void **state)
{
    repo_t *r = *state;
    wv_archive *a = scan(r);
    assert_int_equal(a->ntl, 0);
    assert_int_equal(a->nrp, 0);
    assert_int_equal(a->segsize, SEG);
    assert_int_equal(a->max_history_tli, 1);
    assert_int_equal(wv_archive_latest_tli(a), 1);
    assert_null(wv_archive_timeline(a, 1));
    assert_int_equal(wv_archive_tli_at(a, 1, LSN(0, 0x3000000)), 1);
    assert_int_equal(wv_archive_tli_for_segno(a, 4, 3), 4);

    wv_archive_reach res;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_archive_reach_from(a, 1, LSN(0, 0x2000028), &res, &err), WV_ENOTFOUND);
    assert_string_equal(res.missing, "000000010000000000000002");
    assert_string_equal(err.msg, "WAL segment 000000010000000000000002 is not in the archive");

    int64_t t = 0;
    uint64_t lsn;
    uint32_t tli;
    assert_int_equal(wv_archive_find_restore_point(r->st, a, "x", &lsn, &t, &tli, &err),
                     WV_ENOTFOUND);
    assert_string_equal(err.msg, "restore point \"x\" is not in the archived WAL");
    assert_true(strlen(err.hint) > 0);
    wv_archive_free(a);
    wv_archive_free(NULL);
}

/* One timeline with a gap; other names in wal/ are not segments. */
static void test_one_timeline_gap(void **state)
{
    repo_t *r = *state;
    /* written out of order: the inventory sorts */
    static const uint64_t segs[] = {6, 2, 1, 5, 3};
    for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++)
        put_segment(r, 1, segs[i], NONE, NONE);
    put_object(r, "wal/0000000100000000/000000010000000000000007.partial", WV_OBJ_KIND_PARTIAL, "p",
               1, NONE, NONE, 0);
    put_object(r, "wal/0000000100000000/000000010000000000000002.00000028.backup",
               WV_OBJ_KIND_BACKUP_HISTORY, "b", 1, NONE, NONE, 0);
    /* a name that is no segment at 16 MiB (segment 0x1FF of log 0) */
    put_object(r, "wal/0000000100000000/0000000100000000000001FF", WV_OBJ_KIND_WAL, "x", 1, NONE,
               NONE, 0);
    put_raw(r, "wal/junk", "junk");
    put_raw(r, "backup/20260101T000000Z/manifest", "not wal");

    wv_archive *a = scan(r);
    assert_int_equal(a->ntl, 1);
    static const uint64_t want[] = {1, 2, 3, 5, 6};
    assert_segnos(a, 1, want, 5);
    assert_false(wv_archive_timeline(a, 1)->has_history);
    assert_int_equal(wv_archive_latest_tli(a), 1);
    assert_int_equal(a->nrp, 0);

    wv_archive_reach res;
    wv_err err;
    wv_err_clear(&err);
    /* from a backup that started in segment 1: up to the gap at 4, which is not the end */
    assert_int_equal(wv_archive_reach_from(a, 1, LSN(0, 0x1000028), &res, &err), 0);
    assert_int_equal(res.last_segno, 3);
    assert_int_equal(res.last_tli, 1);
    assert_int_equal(res.end_lsn, LSN(0, 0x4000000));
    assert_true(res.gap);
    assert_string_equal(res.missing, "000000010000000000000004");
    assert_int_equal(res.resume_segno, 5);
    assert_int_equal(res.resume_tli, 1);

    /* from after the gap: to the end, no gap */
    assert_int_equal(wv_archive_reach_from(a, 1, LSN(0, 0x5000000), &res, &err), 0);
    assert_int_equal(res.last_segno, 6);
    assert_int_equal(res.end_lsn, LSN(0, 0x7000000));
    assert_false(res.gap);
    assert_string_equal(res.missing, "000000010000000000000007");

    /* the last byte of a segment is still in it */
    assert_int_equal(wv_archive_reach_from(a, 1, LSN(0, 0x3FFFFFF), &res, &err), 0);
    assert_int_equal(res.last_segno, 3);

    /* starting in the gap */
    wv_err_clear(&err);
    assert_int_equal(wv_archive_reach_from(a, 1, LSN(0, 0x4000100), &res, &err), WV_ENOTFOUND);
    assert_string_equal(res.missing, "000000010000000000000004");
    assert_non_null(strstr(err.msg, "000000010000000000000004"));
    /* a timeline that has nothing */
    assert_int_equal(wv_archive_reach_from(a, 2, LSN(0, 0x1000000), &res, &err), WV_ENOTFOUND);
    assert_string_equal(res.missing, "000000020000000000000001");
    wv_archive_free(a);
}

/*
 * Timeline 2 forks from 1 at 0/5800000 (in segment 5), timeline 3 from 2 at 0/7400000:
 *   tli 1: 1 2 3 4 5 6        (6 was written by the old primary after the fork)
 *   tli 2:         5 6 7
 *   tli 3:             7 8 _ 10
 */
static void make_three_timelines(repo_t *r)
{
    for (uint64_t s = 1; s <= 6; s++)
        put_segment(r, 1, s, (int64_t)s * 1000, (int64_t)s * 1000 + 500);
    for (uint64_t s = 5; s <= 7; s++)
        put_segment(r, 2, s, (int64_t)(20 + s) * 1000, (int64_t)(20 + s) * 1000 + 500);
    put_segment(r, 3, 7, NONE, NONE);
    put_segment(r, 3, 8, 38000, 38500);
    put_segment(r, 3, 10, 40000, 40500);
    put_history(r, 2, "1\t0/5800000\tbefore 2026-01-01 00:00:00+00\n");
    put_history(r, 3,
                "1\t0/5800000\tbefore 2026-01-01 00:00:00+00\n"
                "\n# a comment\n"
                "2\t0/7400000\tno recovery target specified\n");
}

static void test_timelines(void **state)
{
    repo_t *r = *state;
    make_three_timelines(r);
    wv_archive *a = scan(r);
    assert_int_equal(a->ntl, 3);
    assert_int_equal(a->tls[0].tli, 1); /* sorted by timeline */
    assert_int_equal(a->tls[1].tli, 2);
    assert_int_equal(a->tls[2].tli, 3);
    static const uint64_t w1[] = {1, 2, 3, 4, 5, 6}, w2[] = {5, 6, 7}, w3[] = {7, 8, 10};
    assert_segnos(a, 1, w1, 6);
    assert_segnos(a, 2, w2, 3);
    assert_segnos(a, 3, w3, 3);
    assert_int_equal(wv_archive_latest_tli(a), 3);
    assert_int_equal(a->max_history_tli, 3);

    const wv_archive_tli *t2 = wv_archive_timeline(a, 2), *t3 = wv_archive_timeline(a, 3);
    assert_true(t2->has_history);
    assert_int_equal(t2->nhist, 1);
    assert_int_equal(t2->hist[0].tli, 1);
    assert_int_equal(t2->hist[0].switch_lsn, LSN(0, 0x5800000));
    assert_true(t3->has_history);
    assert_int_equal(t3->nhist, 2);
    assert_int_equal(t3->hist[1].tli, 2);
    assert_int_equal(t3->hist[1].switch_lsn, LSN(0, 0x7400000));
    assert_false(wv_archive_timeline(a, 1)->has_history);
    assert_null(wv_archive_timeline(a, 4));

    /* which timeline wrote an LSN on the way to a target */
    assert_int_equal(wv_archive_tli_at(a, 2, LSN(0, 0x57FFFFF)), 1);
    assert_int_equal(wv_archive_tli_at(a, 2, LSN(0, 0x5800000)), 2);
    assert_int_equal(wv_archive_tli_at(a, 3, LSN(0, 0x3000000)), 1);
    assert_int_equal(wv_archive_tli_at(a, 3, LSN(0, 0x6000000)), 2);
    assert_int_equal(wv_archive_tli_at(a, 3, LSN(0, 0x7400000)), 3);
    assert_int_equal(wv_archive_tli_at(a, 1, LSN(0, 0x9000000)), 1);
    assert_true(wv_archive_on_path(a, 3, 1, LSN(0, 0x1000000)));
    assert_false(wv_archive_on_path(a, 3, 1, LSN(0, 0x6000000)));
    assert_true(wv_archive_on_path(a, 3, 2, LSN(0, 0x6000000)));
    assert_true(wv_archive_on_path(a, 2, 2, LSN(0, 0x9000000)));
    assert_false(wv_archive_on_path(a, 2, 3, LSN(0, 0x9000000)));

    /* the newest timeline that covers a segment, as PostgreSQL reads it */
    static const struct {
        uint32_t target;
        uint64_t segno;
        uint32_t want;
    } segtl[] = {{2, 4, 1}, {2, 5, 2}, {2, 9, 2}, {3, 4, 1}, {3, 5, 2},
                 {3, 6, 2}, {3, 7, 3}, {3, 8, 3}, {1, 7, 1}, {9, 1, 9}};
    for (size_t i = 0; i < sizeof(segtl) / sizeof(segtl[0]); i++)
        if (wv_archive_tli_for_segno(a, segtl[i].target, segtl[i].segno) != segtl[i].want)
            fail_msg("target %u segment %" PRIu64 ": timeline %u, want %u", segtl[i].target,
                     segtl[i].segno, wv_archive_tli_for_segno(a, segtl[i].target, segtl[i].segno),
                     segtl[i].want);

    wv_archive_reach res;
    wv_err err;
    wv_err_clear(&err);
    /* timeline 2 from segment 1: 1-4 of tli 1, 5-7 of tli 2, the end (tli 1's 6 is not on it) */
    assert_int_equal(wv_archive_reach_from(a, 2, LSN(0, 0x1000028), &res, &err), 0);
    assert_int_equal(res.last_segno, 7);
    assert_int_equal(res.last_tli, 2);
    assert_false(res.gap);
    assert_string_equal(res.missing, "000000020000000000000008");
    /* timeline 3: up to 8, then 9 is missing and 10 follows: a gap */
    assert_int_equal(wv_archive_reach_from(a, 3, LSN(0, 0x1000028), &res, &err), 0);
    assert_int_equal(res.last_segno, 8);
    assert_int_equal(res.last_tli, 3);
    assert_int_equal(res.end_lsn, LSN(0, 0x9000000));
    assert_true(res.gap);
    assert_string_equal(res.missing, "000000030000000000000009");
    assert_int_equal(res.resume_segno, 10);
    assert_int_equal(res.resume_tli, 3);
    /* timeline 1 alone still reaches its own 6 */
    assert_int_equal(wv_archive_reach_from(a, 1, LSN(0, 0x1000028), &res, &err), 0);
    assert_int_equal(res.last_segno, 6);
    assert_int_equal(res.last_tli, 1);
    assert_false(res.gap);
    /* a start on timeline 2's part whose segment is missing on timeline 3's path */
    assert_int_equal(wv_archive_reach_from(a, 3, LSN(0, 0x9000000), &res, &err), WV_ENOTFOUND);
    assert_string_equal(res.missing, "000000030000000000000009");
    wv_archive_free(a);
}

/* The commit times wal-push recorded in each segment's trailer, as the recovery planner's gather
 * step reads them from a real repository (the search along timeline paths is the pure planner's,
 * tested in test_recovery.c). */
static void expect_commits(wv_recovery_facts *f, uint32_t tli, uint64_t segno, uint32_t count,
                           int64_t first_us, int64_t last_us)
{
    wv_segment_commits c;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(f->ops->segment_commits(f->arg, tli, segno, &c, &err), 0);
    assert_int_equal(c.count, count);
    assert_true(c.first_us == first_us);
    assert_true(c.last_us == last_us);
}

static void test_commit_times(void **state)
{
    repo_t *r = *state;
    make_three_timelines(r);
    /* a segment without commits between two with */
    put_segment(r, 4, 20, 90000, 90500);
    put_segment(r, 4, 21, NONE, NONE);
    put_segment(r, 4, 22, 91000, 91500);
    wv_archive *a = scan(r);
    wv_backupset none = {0};
    wv_recovery_facts f;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_recovery_facts_gather(r->st, a, &none, NULL, &f, &err), 0);

    expect_commits(&f, 1, 1, 2, 1000, 1500);
    expect_commits(&f, 1, 6, 2, 6000, 6500);
    expect_commits(&f, 2, 5, 2, 25000, 25500);
    expect_commits(&f, 3, 7, 0, NONE, NONE);
    expect_commits(&f, 3, 10, 2, 40000, 40500);
    expect_commits(&f, 4, 21, 0, NONE, NONE);
    expect_commits(&f, 4, 22, 2, 91000, 91500);
    /* asked twice: read once */
    expect_commits(&f, 4, 22, 2, 91000, 91500);
    uint64_t trailers = 0, controls = 0;
    wv_recovery_facts_reads(&f, &trailers, &controls);
    assert_int_equal(trailers, 7);
    assert_int_equal(controls, 0);

    /* a segment that is not archived is WV_ENOTFOUND (timeline 3 has no segment 9) */
    wv_segment_commits c;
    assert_int_equal(f.ops->segment_commits(f.arg, 3, 9, &c, &err), WV_ENOTFOUND);
    wv_recovery_facts_free(&f);

    /* a damaged trailer is an error naming the object, never "no commit" */
    put_raw(r, "wal/0000000100000000/000000010000000000000009", "this is not an object at all");
    wv_archive_free(a);
    a = scan(r);
    wv_err_clear(&err);
    assert_int_equal(wv_recovery_facts_gather(r->st, a, &none, NULL, &f, &err), 0);
    int rc = f.ops->segment_commits(f.arg, 1, 9, &c, &err);
    assert_true(rc < 0);
    assert_int_not_equal(rc, WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, "000000010000000000000009"));
    wv_recovery_facts_free(&f);
    wv_archive_free(a);
}

static void test_restore_points(void **state)
{
    repo_t *r = *state;
    make_three_timelines(r);
    put_raw(r, "wal/0000000100000000/000000010000000000000003.rp",
            "0/3000100\t1000\tnightly\n0/3000200\t2000\tother%20name\ngarbage line\n"
            "not-an-lsn\t5\tnightly\n");
    put_raw(r, "wal/0000000200000000/000000020000000000000006.rp",
            "0/6000100\t3000\tnightly\n0/6000200\t4000\tpct%25sign\n");
    wv_archive *a = scan(r);
    assert_int_equal(a->nrp, 2);
    /* .rp objects are not segments */
    static const uint64_t w1[] = {1, 2, 3, 4, 5, 6};
    assert_segnos(a, 1, w1, 6);

    uint64_t lsn = 0;
    int64_t t = 0;
    uint32_t tli = 0;
    wv_err err;
    wv_err_clear(&err);
    /* the newest occurrence of a name */
    assert_int_equal(wv_archive_find_restore_point(r->st, a, "nightly", &lsn, &t, &tli, &err), 0);
    assert_int_equal(lsn, LSN(0, 0x6000100));
    assert_int_equal(t, 3000);
    assert_int_equal(tli, 2);
    /* names are percent-decoded */
    assert_int_equal(wv_archive_find_restore_point(r->st, a, "other name", &lsn, &t, &tli, &err),
                     0);
    assert_int_equal(lsn, LSN(0, 0x3000200));
    assert_int_equal(t, 2000);
    assert_int_equal(tli, 1);
    assert_int_equal(wv_archive_find_restore_point(r->st, a, "pct%sign", &lsn, &t, &tli, &err), 0);
    assert_int_equal(lsn, LSN(0, 0x6000200));
    assert_int_equal(err.code, 0);

    /* an unknown name: WV_ENOTFOUND listing the names that were archived, each once */
    wv_err_clear(&err);
    lsn = 42;
    assert_int_equal(wv_archive_find_restore_point(r->st, a, "other", &lsn, &t, &tli, &err),
                     WV_ENOTFOUND);
    assert_int_equal(lsn, 42);
    const char *head = "restore point \"other\" is not in the archived WAL (archived restore "
                       "points: ";
    assert_memory_equal(err.msg, head, strlen(head));
    assert_non_null(strstr(err.msg, "\"nightly\""));
    assert_non_null(strstr(err.msg, "\"other name\""));
    assert_non_null(strstr(err.msg, "\"pct%sign\""));
    assert_null(strstr(strstr(err.msg, "\"nightly\"") + 1, "\"nightly\""));
    assert_int_equal(err.msg[strlen(err.msg) - 1], ')');
    assert_memory_equal(err.hint, "restore points are recorded as wal-push archives", 48);
    wv_archive_free(a);
}

/* A timeline known only by its history file (promoted, nothing archived on it yet). */
static void test_history_only(void **state)
{
    repo_t *r = *state;
    put_segment(r, 1, 1, NONE, NONE);
    put_segment(r, 1, 2, NONE, NONE);
    put_history(r, 2, "1\t0/2800000\tno recovery target specified\n");
    wv_archive *a = scan(r);
    assert_int_equal(a->ntl, 2);
    const wv_archive_tli *t2 = wv_archive_timeline(a, 2);
    assert_non_null(t2);
    assert_true(t2->has_history);
    assert_int_equal(t2->nseg, 0);
    assert_int_equal(wv_archive_latest_tli(a), 2);
    assert_int_equal(a->max_history_tli, 2);
    /* timeline 2 reads segment 1 from timeline 1, then needs its own segment 2 */
    wv_archive_reach res;
    wv_err err;
    assert_int_equal(wv_archive_reach_from(a, 2, LSN(0, 0x1000028), &res, &err), 0);
    assert_int_equal(res.last_segno, 1);
    assert_int_equal(res.last_tli, 1);
    assert_false(res.gap);
    assert_string_equal(res.missing, "000000020000000000000002");
    wv_archive_free(a);
}

static void test_bad_history(void **state)
{
    repo_t *r = *state;
    put_segment(r, 1, 1, NONE, NONE);
    put_history(r, 2, "1\tnot-an-lsn\treason\n");
    wv_archive *a = (wv_archive *)(uintptr_t)0x1;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_archive_scan(r->st, SEG, &a, &err), WV_ECORRUPT);
    assert_ptr_equal(a, (wv_archive *)(uintptr_t)0x1);
    assert_non_null(strstr(err.msg, "00000002.history"));
    assert_non_null(strstr(err.msg, "line 1"));
    assert_memory_equal(err.msg, "repo1: ", 7);
}

static void test_history_not_an_object(void **state)
{
    repo_t *r = *state;
    put_raw(r, "wal/history/00000003.history", "1\t0/5800000\tplain text, not an object\n");
    wv_archive *a = (wv_archive *)(uintptr_t)0x1;
    wv_err err;
    wv_err_clear(&err);
    assert_int_equal(wv_archive_scan(r->st, SEG, &a, &err), WV_ECORRUPT);
    assert_ptr_equal(a, (wv_archive *)(uintptr_t)0x1);
    assert_non_null(strstr(err.msg, "\"wal/history/00000003.history\""));
    assert_memory_equal(err.msg, "repo1: ", 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_timeline_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timelines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_not_an_object, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
