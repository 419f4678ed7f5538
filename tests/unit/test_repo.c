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
/* The whole file at path, appended to out. */
static void slurp(const char *path, wv_buf *out)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        wv_buf_append(out, buf, n);
    fclose(fp);
}

static void fetch(fixture *f, const char *key, wv_buf *out)
{
    char path[128];
    wv_err err;
    wv_obj_info info;
    snprintf(path, sizeof(path), "%s.fetched", f->dir);
    assert_int_equal(
        wv_repo_get_file(f->r->st, key, path, WV_GET_NOSYNC, WV_GET_NOLIMIT, &info, &err), 0);
    slurp(path, out);
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

/* walvault.repo as a file in the repository, loaded by a fresh handle. */
static int load_info_text(fixture *f, const char *text, wv_err *err)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", f->dir, WV_REPO_INFO_KEY);
    unlink(path);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    wv_repo *r;
    assert_int_equal(wv_repo_open(&f->rc, &r, err), 0);
    int rc = wv_repo_load_info(r, err);
    wv_repo_close(r);
    return rc;
}

static void test_info_validated(void **state)
{
    static const struct {
        const char *name;
        const char *text;
        int rc;
        const char *msg;
    } cases[] = {
        {"valid", "format=1\nsystem_identifier=7\npg_major=15\nwal_segment_size=16777216\n", 0,
         NULL},
        {"1 MiB segments", "format=1\nsystem_identifier=7\npg_major=10\nwal_segment_size=1048576\n",
         0, NULL},
        {"1 GiB segments",
         "format=1\nsystem_identifier=7\npg_major=18\nwal_segment_size=1073741824\n", 0, NULL},
        {"segment size 12345",
         "format=1\nsystem_identifier=7\npg_major=15\nwal_segment_size=12345\n", WV_ECORRUPT,
         "wal_segment_size"},
        {"segment size 0", "format=1\nsystem_identifier=7\npg_major=15\nwal_segment_size=0\n",
         WV_ECORRUPT, "wal_segment_size"},
        {"segment size 512 KiB",
         "format=1\nsystem_identifier=7\npg_major=15\nwal_segment_size=524288\n", WV_ECORRUPT,
         "wal_segment_size"},
        {"segment size 2 GiB",
         "format=1\nsystem_identifier=7\npg_major=15\nwal_segment_size=2147483648\n", WV_ECORRUPT,
         "wal_segment_size"},
        {"format 0", "format=0\nsystem_identifier=7\npg_major=15\nwal_segment_size=16777216\n",
         WV_ECORRUPT, "format"},
        {"format 2", "format=2\nsystem_identifier=7\npg_major=15\nwal_segment_size=16777216\n",
         WV_EFORMAT, "newer walvault"},
        {"system identifier 0",
         "format=1\nsystem_identifier=0\npg_major=15\nwal_segment_size=16777216\n", WV_ECORRUPT,
         "system_identifier"},
        {"major 9", "format=1\nsystem_identifier=7\npg_major=9\nwal_segment_size=16777216\n",
         WV_ECORRUPT, "pg_major"},
        {"major 99", "format=1\nsystem_identifier=7\npg_major=99\nwal_segment_size=16777216\n",
         WV_ECORRUPT, "pg_major"},
        {"missing field", "format=1\nsystem_identifier=7\npg_major=15\n", WV_ECORRUPT,
         "incomplete"},
        {"not a number", "format=1\nsystem_identifier=x\npg_major=15\nwal_segment_size=16777216\n",
         WV_ECORRUPT, "system_identifier"},
    };
    fixture *f = *state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wv_err err;
        wv_err_clear(&err);
        int rc = load_info_text(f, cases[i].text, &err);
        if (rc != cases[i].rc)
            fail_msg("%s: got %d (%s), want %d", cases[i].name, rc, err.msg, cases[i].rc);
        if (cases[i].msg && !strstr(err.msg, cases[i].msg))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].name, err.msg, cases[i].msg);
        /* The message names the repository and the file. */
        if (rc != 0 && (!strstr(err.msg, "repo1") || !strstr(err.msg, WV_REPO_INFO_KEY)))
            fail_msg("%s: message \"%s\" names neither repository nor file", cases[i].name,
                     err.msg);
    }
}

/* A WAL segment's first page (long header) and pages after it, as PostgreSQL 15 writes them. */
static uint8_t *wal_segment(uint64_t segsize, uint32_t tli, uint64_t segno, uint64_t sysid)
{
    uint8_t *p = calloc(1, segsize);
    for (uint64_t off = 0; off < segsize; off += 8192) {
        uint8_t *h = p + off;
        uint16_t magic = 0xD110, info = off == 0 ? 0x0002 : 0;
        uint64_t addr = segno * segsize + off;
        memcpy(h, &magic, 2);
        memcpy(h + 2, &info, 2);
        memcpy(h + 4, &tli, 4);
        memcpy(h + 8, &addr, 8);
        if (off == 0) {
            uint32_t ss = (uint32_t)segsize, bs = 8192;
            memcpy(h + 24, &sysid, 8);
            memcpy(h + 32, &ss, 4);
            memcpy(h + 36, &bs, 4);
        }
    }
    return p;
}

/* Push content through the check for walname; returns the code. */
static int walcheck(const char *walname, const wv_repo_info *ri, const uint8_t *d, size_t len,
                    size_t piece, wv_err *err)
{
    wv_buf out = WV_BUF_INIT;
    wv_filter *sinkf = wv_filter_buf_new(&out);
    wv_filter *c = wv_repo_walcheck_new(sinkf, walname, ri);
    assert_non_null(c);
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0; pos += piece)
        rc = wv_filter_write(c, d + pos, len - pos < piece ? len - pos : piece, err);
    if (rc == 0)
        rc = wv_filter_finish(c, err);
    c->ops->free(c);
    wv_filter_chain_free(sinkf);
    wv_buf_free(&out);
    return rc;
}

static void test_wal_content_checked(void **state)
{
    (void)state;
    const uint64_t ss = 1 << 20; /* 1 MiB segments keep the test small */
    const wv_repo_info ri = {.format = 1, .system_id = 7001, .pg_major = 15, .wal_segsize = ss};
    const char *seg3 = "000000020000000000000003"; /* tli 2, segno 3 */
    uint8_t *good = wal_segment(ss, 2, 3, 7001);
    wv_err err;
    static const size_t pieces[] = {1, 7, 40, 65536, 1 << 20};
    for (size_t i = 0; i < 5; i++) {
        wv_err_clear(&err);
        if (pieces[i] == 1)
            continue; /* byte-at-a-time over a megabyte adds nothing */
        assert_int_equal(walcheck(seg3, &ri, good, ss, pieces[i], &err), 0);
    }
    /* Without repository info: the first page header is checked against itself. */
    assert_int_equal(walcheck(seg3, NULL, good, ss, 65536, &err), 0);
    /* First page of the old timeline (a new timeline's first segment): accepted. */
    uint8_t *older = wal_segment(ss, 1, 3, 7001);
    assert_int_equal(walcheck(seg3, &ri, older, ss, 65536, &err), 0);
    free(older);

    static const struct {
        const char *name;
        const char *walname;
        uint32_t tli;
        uint64_t segno, sysid;
        size_t len;
        uint16_t magic; /* 0: PostgreSQL 15's */
        const char *msg;
    } cases[] = {
        {"another segment's content", "000000020000000000000004", 2, 3, 7001, 0, 0,
         "its first page is at 0/300000, the segment starts at 0/400000"},
        {"another cluster", "000000020000000000000003", 2, 3, 7002, 0, 0,
         "database system 7002, the repository's cluster is 7001"},
        {"a later timeline's content", "000000010000000000000003", 2, 3, 7001, 0, 0,
         "timeline 2, the name's is 1"},
        {"short segment", "000000020000000000000003", 2, 3, 7001, 1 << 19, 0,
         "524288 bytes, a segment has 1048576"},
        {"PostgreSQL 16 WAL", "000000020000000000000003", 2, 3, 7001, 0, 0xD113,
         "PostgreSQL 16 WAL"},
        {"not WAL", "000000020000000000000003", 2, 3, 7001, 0, 0x1234, "page magic 0x1234"},
        {"too short for a header", "000000020000000000000003", 2, 3, 7001, 39, 0, "too short"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *d = wal_segment(ss, cases[i].tli, cases[i].segno, cases[i].sysid);
        if (cases[i].magic)
            memcpy(d, &cases[i].magic, 2);
        wv_err_clear(&err);
        int rc = walcheck(cases[i].walname, &ri, d, cases[i].len ? cases[i].len : ss, 4096, &err);
        if (rc != WV_ECORRUPT)
            fail_msg("%s: got %d (%s)", cases[i].name, rc, err.msg);
        if (!strstr(err.msg, cases[i].msg) || !strstr(err.msg, cases[i].walname))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].name, err.msg, cases[i].msg);
        free(d);
    }
    /* Another segment size in the header than the repository's. */
    uint8_t *big = wal_segment(2 * ss, 2, 1, 7001);
    wv_err_clear(&err);
    assert_int_equal(walcheck(seg3, &ri, big, ss, 65536, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "2097152-byte segments, the repository's are 1048576"));
    free(big);

    /* A partial segment: any size up to the segment size, the same header checks. */
    assert_int_equal(walcheck("000000020000000000000003.partial", &ri, good, ss / 3, 4096, &err),
                     0);
    assert_int_equal(walcheck("000000020000000000000005.partial", &ri, good, ss / 3, 4096, &err),
                     WV_ECORRUPT);
    /* A backup history file's content under a segment's name, and the other way round. */
    static const char bh[] = "START WAL LOCATION: 0/3000028 (file 000000020000000000000003)\n"
                             "STOP WAL LOCATION: 0/3000100 (file 000000020000000000000003)\n";
    assert_int_equal(walcheck("000000020000000000000003.00000028.backup", &ri, (const uint8_t *)bh,
                              sizeof(bh) - 1, 4096, &err),
                     0);
    wv_err_clear(&err);
    assert_int_equal(walcheck(seg3, &ri, (const uint8_t *)bh, sizeof(bh) - 1, 4096, &err),
                     WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "not WAL of a PostgreSQL version"));
    assert_int_equal(
        walcheck("000000020000000000000003.00000028.backup", &ri, good, 65536, 4096, &err),
        WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "START WAL LOCATION"));
    /* History files: parsed, ancestors only, at most 1 MiB. */
    static const char hist[] = "1\t0/3000000\tno recovery target specified\n";
    assert_int_equal(
        walcheck("00000002.history", &ri, (const uint8_t *)hist, sizeof(hist) - 1, 7, &err), 0);
    wv_err_clear(&err);
    assert_int_equal(
        walcheck("00000001.history", &ri, (const uint8_t *)hist, sizeof(hist) - 1, 7, &err),
        WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "not an ancestor of timeline 1"));
    assert_int_equal(walcheck("00000002.history", &ri, good, 65536, 4096, &err), WV_ECORRUPT);
    uint8_t *huge = calloc(1, WV_REPO_WAL_TEXT_MAX + 1);
    memset(huge, '#', WV_REPO_WAL_TEXT_MAX + 1);
    wv_err_clear(&err);
    assert_int_equal(walcheck("00000002.history", &ri, huge, WV_REPO_WAL_TEXT_MAX + 1, 65536, &err),
                     WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "more than 1048576 bytes"));
    free(huge);
    assert_int_equal(wv_repo_wal_max_size(seg3, &ri), ss);
    assert_int_equal(wv_repo_wal_max_size(seg3, NULL), 1 << 30);
    assert_int_equal(wv_repo_wal_max_size("00000002.history", &ri), WV_REPO_WAL_TEXT_MAX);
    assert_null(wv_repo_walcheck_for_key(NULL, "backup/x/manifest", &ri));
    assert_null(wv_repo_walcheck_for_key(NULL, "wal/0000000100000000/x.rp", &ri));
    free(good);
}

/* A segment stored under its own key is fetched; copied under another segment's key, the fetch
 * refuses it naming both keys and leaves no file behind. */
static void test_binding_on_fetch(void **state)
{
    fixture *f = *state;
    const uint64_t ss = 16 << 20;
    wv_err err;
    assert_int_equal(wv_repo_check_cluster(f->r, 7001, 15, ss, &err), 0);
    uint8_t *seg = wal_segment(ss, 1, 3, 7001);
    int already;
    wv_obj_opts opts = {.compress = WV_COMPRESS_LZ4, .level = 1, .kind = WV_OBJ_KIND_WAL};
    assert_int_equal(wv_repo_put_object(f->r, KEY, SEG, 0, &opts, seg, ss, &already, NULL, &err),
                     0);
    char dest[128], from[160], to[160], cmd[400];
    snprintf(dest, sizeof(dest), "%s.dest", f->dir);
    assert_int_equal(wv_repo_get_wal(f->r->st, &f->r->info, SEG, dest, WV_GET_NOSYNC, NULL, &err),
                     0);
    struct stat sb;
    assert_int_equal(stat(dest, &sb), 0);
    assert_int_equal(sb.st_size, ss);
    unlink(dest);
    /* The same object as segment 4. */
    snprintf(from, sizeof(from), "%s/%s", f->dir, KEY);
    snprintf(to, sizeof(to), "%s/wal/0000000100000000/000000010000000000000004", f->dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
    wv_err_clear(&err);
    assert_int_equal(wv_repo_get_wal(f->r->st, &f->r->info, "000000010000000000000004", dest,
                                     WV_GET_NOSYNC, NULL, &err),
                     WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "repo1: \"wal/0000000100000000/000000010000000000000004\" "
                                    "holds the object stored as \"" KEY "\""));
    assert_int_equal(stat(dest, &sb), -1);
    snprintf(cmd, sizeof(cmd), "ls '%s'.* 2>/dev/null | grep -q .", dest);
    assert_int_not_equal(system(cmd), 0); /* no temp file left */
    /* The reader asked for a limit: an object bigger than the segment size stops there. */
    wv_err_clear(&err);
    assert_int_equal(wv_repo_get_file(f->r->st, KEY, dest, WV_GET_NOSYNC, ss / 2, NULL, &err),
                     WV_ECORRUPT);
    assert_int_equal(stat(dest, &sb), -1);
    free(seg);
}

static int contains(const wv_buf *b, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, needle, n) == 0)
            return 1;
    return 0;
}

typedef struct text_fill {
    const char *text;
    int fail;
} text_fill;

static int fill_text(void *arg, wv_filter *dest, wv_err *err)
{
    text_fill *t = arg;
    int rc = wv_filter_write(dest, t->text, strlen(t->text), err);
    if (rc == 0 && t->fail)
        return wv_err_set(err, WV_EIO, "fill failed on purpose");
    return rc ? rc : wv_filter_finish(dest, err);
}

/* An encrypted repository (a symmetric key file): opened with the configuration's key, every
 * object, text and stream sealed (the marker is in no stored byte) and read back through the
 * handle's keys; a re-store decided by the keyed digest; a plain configuration, and a key on a
 * plain repository already used, refused at open with their own messages. */
static void test_encrypted_repo(void **state)
{
    fixture *f = *state;
    wv_err err = {0};
    char keyfile[128], path[256];
    snprintf(keyfile, sizeof(keyfile), "%s.key", f->dir);
    FILE *fp = fopen(keyfile, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 32; i++)
        fputc(i * 7 + 1, fp);
    fclose(fp);
    chmod(keyfile, 0600);
    char dir[80];
    snprintf(dir, sizeof(dir), "%s/enc", f->dir);
    mkdir(dir, 0700);
    wv_repo_config rc = f->rc;
    rc.path = dir;
    rc.encrypt_key_file = keyfile;
    wv_repo *r = NULL;
    assert_int_equal(wv_repo_open(&rc, &r, &err), 0);
    assert_non_null(r->keys);
    assert_non_null(wv_repo_crypto(r->st));
    assert_int_equal(err.code, 0);

    static const char marker[] = "MARKER-6e1f0c-in-the-content";
    wv_buf data = WV_BUF_INIT;
    for (int i = 0; i < 200; i++)
        wv_buf_append_str(&data, marker);
    int already = -1;
    wv_obj_info info;
    assert_int_equal(
        wv_repo_put_object(r, KEY, SEG, 0, NULL, data.data, data.len, &already, &info, &err), 0);
    assert_int_equal(already, 0);
    assert_int_equal(info.version, 3);
    assert_int_equal(
        wv_repo_put_object(r, KEY, SEG, 0, NULL, data.data, data.len, &already, NULL, &err), 0);
    assert_int_equal(already, 1); /* identical: by the keyed digest */
    assert_int_equal(
        wv_repo_put_object(r, KEY, SEG, 0, NULL, data.data, data.len - 1, &already, NULL, &err),
        WV_ECONFLICT);
    assert_non_null(strstr(err.msg, "keyed digest"));
    wv_obj_info full, pub;
    assert_int_equal(wv_repo_read_info(r->st, KEY, &full, &err), 0);
    assert_int_equal(full.plain_size, data.len);
    assert_memory_equal(full.sha256, info.sha256, 32);
    assert_int_equal(wv_repo_read_trailer(r->st, KEY, &pub, &err), 0);
    assert_true(pub.sealed);
    assert_memory_equal(pub.keyed_digest, info.keyed_digest, 32);

    assert_int_equal(
        wv_repo_put_text(r->st, KEY ".rp", WV_PUT_NOREPLACE, marker, sizeof(marker) - 1, &err), 0);
    text_fill tf = {marker, 0};
    assert_int_equal(
        wv_repo_put_stream(r->st, "backup/x/manifest", WV_PUT_NOREPLACE, fill_text, &tf, &err), 0);
    tf.fail = 1;
    assert_int_equal(
        wv_repo_put_stream(r->st, "backup/y/manifest", WV_PUT_NOREPLACE, fill_text, &tf, &err),
        WV_EIO);
    snprintf(path, sizeof(path), "%s/backup/y/manifest", dir);
    assert_int_not_equal(access(path, F_OK), 0); /* nothing visible after a failed fill */

    const char *stored[] = {KEY, KEY ".rp", "backup/x/manifest"};
    for (int i = 0; i < 3; i++) {
        wv_buf raw = WV_BUF_INIT;
        snprintf(path, sizeof(path), "%s/%s", dir, stored[i]);
        slurp(path, &raw);
        assert_true(raw.len > 0);
        assert_false(contains(&raw, "MARKER-6e1f0c"));
        wv_buf_free(&raw);
    }
    wv_buf got = WV_BUF_INIT;
    assert_int_equal(wv_repo_get_text(r->st, KEY ".rp", 4096, &got, &err), 0);
    assert_int_equal(got.len, sizeof(marker) - 1);
    assert_memory_equal(got.data, marker, got.len);
    wv_buf_free(&got);
    assert_int_equal(wv_repo_get_text(r->st, KEY ".rp", 5, &got, &err), WV_ECORRUPT); /* max */
    wv_buf_free(&got);
    wv_filter *bf = wv_filter_buf_new(&got);
    assert_int_equal(wv_repo_get_stream(r->st, "backup/x/manifest", bf, &err), 0);
    wv_filter_chain_free(bf);
    assert_int_equal(got.len, sizeof(marker) - 1);
    wv_buf_free(&got);
    /* a text copied under another name does not open */
    wv_buf raw = WV_BUF_INIT;
    snprintf(path, sizeof(path), "%s/%s.rp", dir, KEY);
    slurp(path, &raw);
    assert_int_equal(wv_storage_put_all(r->st, "wal/0000000100000000/000000010000000000000004.rp",
                                        0, raw.data, raw.len, &err),
                     0);
    wv_buf_free(&raw);
    assert_int_not_equal(wv_repo_get_text(r->st, "wal/0000000100000000/000000010000000000000004.rp",
                                          4096, &got, &err),
                         0);
    wv_buf_free(&got);
    assert_int_equal(wv_repo_check_cluster(r, 7000000000000000001ULL, 15, 16 << 20, &err), 0);
    wv_repo_close(r);

    /* the same repository without a key, and a key on the (used) plain fixture repository */
    wv_repo_config plain = rc;
    plain.encrypt_key_file = NULL;
    r = NULL;
    assert_int_equal(wv_repo_open(&plain, &r, &err), WV_EKEY);
    assert_null(r);
    assert_non_null(strstr(err.msg, "the repository is encrypted, and the configuration has no "
                                    "encryption key"));
    assert_int_equal(wv_repo_check_cluster(f->r, 7000000000000000001ULL, 15, 16 << 20, &err), 0);
    wv_repo_config used = f->rc;
    used.encrypt_key_file = keyfile;
    assert_int_equal(wv_repo_open(&used, &r, &err), WV_EKEY);
    assert_non_null(strstr(err.msg, "the repository is not encrypted"));
    /* a key file others can read */
    chmod(keyfile, 0644);
    assert_int_equal(wv_repo_open(&rc, &r, &err), WV_ECONFIG);
    assert_non_null(strstr(err.hint, "chmod"));
    unlink(keyfile);
    wv_buf_free(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_restore_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_store_invisible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_validated, setup, teardown),
        cmocka_unit_test(test_wal_content_checked),
        cmocka_unit_test_setup_teardown(test_binding_on_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encrypted_repo, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
