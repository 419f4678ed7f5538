/*
 * storage_check.c - a conformance check of one storage driver against the contract in
 * common/storage/driver.h, run against a live repository:
 *     wv-storage-check -c CONF --repo N [--prefix P] [--large-mb M] [--many K] [--remove-many R]
 * Every object it writes lives under PREFIX (default "conformance/<pid>/") and is removed at the
 * end. Prints "ok - NAME" or "not ok - NAME: WHY" per check and a closing "N passed, M failed".
 * R is the number of objects removed with one wv_storage_remove_many call (default 1100 on a store
 * with WV_ST_REMOVE_MANY, so that it takes more than one batch, else 40).
 *
 *     wv-storage-check -c CONF --repo N --remove KEY [--remove KEY]...
 * only removes the keys given, with one wv_storage_remove_many call, and reports the outcome (the
 * error and its hint on stderr): for tests that prepare the store themselves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/cli.h"
#include "core/config.h"
#include "pipeline/filter.h"
#include "core/log.h"
#include "storage/storage.h"

static int passed, failed;

static void check(int ok, const char *name, const wv_err *err)
{
    if (ok) {
        passed++;
        printf("ok - %s\n", name);
    } else {
        failed++;
        printf("not ok - %s%s%s\n", name, err && err->msg[0] ? ": " : "", err ? err->msg : "");
    }
    fflush(stdout);
}

/* Deterministic pseudo-random content, so that a range can be checked without keeping it. */
static void fill(uint8_t *p, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t x = (off + i) * 0x9E3779B97F4A7C15ULL;
        p[i] = (uint8_t)(x >> 56);
    }
}

static int put(wv_storage *st, const char *key, unsigned flags, uint64_t size, wv_err *err)
{
    wv_sink *s = NULL;
    int rc = wv_storage_put_open(st, key, flags, &s, err);
    if (rc)
        return rc;
    uint8_t *buf = wv_xmalloc(1 << 20);
    for (uint64_t off = 0; off < size && rc == 0;) {
        size_t n = size - off < (1 << 20) ? (size_t)(size - off) : (1 << 20);
        fill(buf, n, off);
        rc = wv_sink_write(s, buf, n, err);
        off += n;
    }
    free(buf);
    if (rc) {
        wv_sink_abort(s);
        return rc;
    }
    return wv_sink_commit(s, err);
}

/* Read [off, off+len) (or a suffix) and compare it with the generated content. */
static int get_check(wv_storage *st, const char *key, int64_t off, int64_t len, uint64_t size,
                     wv_err *err)
{
    wv_source *src = NULL;
    int rc = wv_storage_get_open(st, key, off, len, &src, err);
    if (rc)
        return rc;
    uint64_t start = off < 0 ? ((uint64_t)-off > size ? 0 : size + (uint64_t)off) : (uint64_t)off;
    uint64_t want = len < 0 || off < 0 ? size - start : (uint64_t)len;
    uint8_t *buf = wv_xmalloc(1 << 16), *exp = wv_xmalloc(1 << 16);
    uint64_t got_total = 0;
    for (;;) {
        size_t got = 0;
        if ((rc = wv_source_read(src, buf, 1 << 16, &got, err)) != 0 || got == 0)
            break;
        fill(exp, got, start + got_total);
        if (memcmp(buf, exp, got) != 0) {
            rc = wv_err_set(err, WV_ECORRUPT, "content differs at offset %llu",
                            (unsigned long long)(start + got_total));
            break;
        }
        got_total += got;
    }
    if (rc == 0 && got_total != want)
        rc = wv_err_set(err, WV_ECORRUPT, "read %llu bytes, expected %llu",
                        (unsigned long long)got_total, (unsigned long long)want);
    free(buf);
    free(exp);
    wv_source_close(src);
    return rc;
}

typedef struct {
    const char *look_for;
    int found;
    int count;
} list_state;

static int list_cb(void *arg, const char *key, const wv_stat *st)
{
    list_state *ls = arg;
    ls->count++;
    if (ls->look_for && strcmp(key, ls->look_for) == 0)
        ls->found = 1;
    return 0;
}

static int remove_cb(void *arg, const char *key, const wv_stat *st)
{
    wv_err e;
    return wv_storage_remove(arg, key, &e) == 0 ? 0 : 1;
}

/* remove_many: keys under several prefixes with absent ones among them, in one call. */
static void check_remove_many(wv_storage *st, const char *prefix, int count, wv_err *err)
{
    size_t cap = (size_t)count + (size_t)count / 10 + 1, n = 0, absent = 0;
    char **keys = wv_xcalloc(cap, sizeof(char *));
    int ok = 1, r;
    for (int i = 0; i < count; i++) {
        if (i % 3 == 0)
            keys[n] = wv_xasprintf("%srm/a/key-%05d", prefix, i);
        else if (i % 3 == 1)
            keys[n] = wv_xasprintf("%srm/b/c/key-%05d", prefix, i);
        else
            keys[n] = wv_xasprintf("%srm-other/key-%05d", prefix, i);
        if (ok)
            ok = put(st, keys[n], WV_PUT_NOSYNC, 1, err) == 0;
        n++;
        if (i % 10 == 5) {
            keys[n++] = wv_xasprintf("%srm/absent/key-%05d", prefix, i);
            absent++;
        }
    }
    if (ok)
        ok = wv_storage_flush(st, err) == 0;
    check(ok, "put objects to remove together", err);

    char name[160];
    snprintf(name, sizeof(name), "remove_many of %zu keys (%zu absent) under three prefixes", n,
             absent);
    r = wv_storage_remove_many(st, (const char *const *)keys, n, err);
    check(r == 0, name, err);
    char p2[512];
    list_state ls = {0}, ls2 = {0};
    snprintf(p2, sizeof(p2), "%srm", prefix);
    r = wv_storage_list(st, p2, list_cb, &ls, err);
    check(r == 0 && ls.count == 0, "nothing listed after remove_many", err);
    wv_stat sb;
    check(wv_storage_stat(st, keys[0], &sb, err) == WV_ENOTFOUND &&
              wv_storage_stat(st, keys[n - 1], &sb, err) == WV_ENOTFOUND,
          "stat after remove_many: not found", err);
    check(wv_storage_remove_many(st, (const char *const *)keys, n, err) == 0,
          "remove_many of keys that are all absent succeeds", err);
    check(wv_storage_remove_many(st, NULL, 0, err) == 0, "remove_many of no keys succeeds", err);

    /* an invalid key anywhere in the list: nothing is removed */
    char keep[512];
    wv_err e2;
    wv_err_clear(&e2);
    snprintf(keep, sizeof(keep), "%srm/keep", prefix);
    r = put(st, keep, 0, 3, err);
    const char *bad[] = {keep, "rm/../escape"};
    int rr = wv_storage_remove_many(st, bad, 2, &e2);
    check(r == 0 && rr == WV_EINTERNAL && wv_storage_stat(st, keep, &sb, err) == 0,
          "remove_many with an invalid key fails and removes nothing", rr == 0 ? &e2 : err);
    const char *one[] = {keep};
    check(wv_storage_remove_many(st, one, 1, err) == 0 &&
              wv_storage_list(st, p2, list_cb, &ls2, err) == 0 && ls2.count == 0,
          "remove_many of one key", err);
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* --remove KEY...: one remove_many call, nothing else. */
static int remove_only(wv_storage *st, const char *const *keys, size_t n)
{
    wv_err err;
    wv_err_clear(&err);
    int r = wv_storage_remove_many(st, keys, n, &err);
    if (r == 0) {
        printf("ok - remove_many of %zu keys\n", n);
        return 0;
    }
    printf("not ok - remove_many of %zu keys: %s\n", n, err.msg);
    fprintf(stderr, "wv-storage-check: %s\n", err.msg);
    if (err.hint[0])
        fprintf(stderr, "hint: %s\n", err.hint);
    return 1;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *prefix_arg = NULL;
    int repo = 1, large_mb = 20, many = 50, remove_n = -1;
    size_t nremove = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            conf = argv[++i];
        else if (!strcmp(argv[i], "--repo") && i + 1 < argc)
            repo = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
            prefix_arg = argv[++i];
        else if (!strcmp(argv[i], "--large-mb") && i + 1 < argc)
            large_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--many") && i + 1 < argc)
            many = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--remove-many") && i + 1 < argc)
            remove_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--remove") && i + 1 < argc)
            nremove++, i++;
        else {
            fprintf(stderr, "usage: wv-storage-check -c CONF [--repo N] [--prefix P] "
                            "[--large-mb M] [--many K] [--remove-many R] | --remove KEY...\n");
            return 2;
        }
    }
    wv_log_init("wv-storage-check", WV_LOG_INFO);
    wv_config *cfg = NULL;
    wv_storage *st = NULL;
    wv_err err;
    wv_err_clear(&err);
    if (wv_config_load(wv_config_path(conf), &cfg, &err) != 0)
        return wv_cli_fail(&err);
    const wv_repo_config *rc = wv_config_repo(cfg, repo);
    if (!rc) {
        fprintf(stderr, "wv-storage-check: no [repo%d] in the configuration\n", repo);
        wv_config_free(cfg);
        return 2;
    }
    if (wv_storage_open(rc, &st, &err) != 0) {
        wv_config_free(cfg);
        return wv_cli_fail(&err);
    }

    if (nremove > 0) {
        const char **remove_keys = wv_xcalloc(nremove, sizeof(char *));
        for (int i = 1, j = 0; i + 1 < argc; i += 2) /* every option has one value */
            if (!strcmp(argv[i], "--remove"))
                remove_keys[j++] = argv[i + 1];
        int rr = remove_only(st, remove_keys, nremove);
        free(remove_keys);
        wv_storage_free(st);
        wv_config_free(cfg);
        return rr;
    }

    char prefix[256], key[512], key2[512];
    snprintf(prefix, sizeof(prefix), "%s", prefix_arg ? prefix_arg : "");
    if (!prefix_arg)
        snprintf(prefix, sizeof(prefix), "conformance/%ld/", (long)getpid());
    wv_stat sb;
    int r;

    /* Small object: put, stat, read whole and in ranges. */
    snprintf(key, sizeof(key), "%ssmall/object-1", prefix);
    r = put(st, key, WV_PUT_NOREPLACE, 1000, &err);
    check(r == 0, "put small object", &err);
    r = wv_storage_stat(st, key, &sb, &err);
    check(r == 0 && sb.size == 1000, "stat reports its size", &err);
    check(get_check(st, key, 0, -1, 1000, &err) == 0, "read whole object", &err);
    check(get_check(st, key, 100, 200, 1000, &err) == 0, "read range 100+200", &err);
    check(get_check(st, key, 900, -1, 1000, &err) == 0, "read from offset to the end", &err);
    check(get_check(st, key, -128, -1, 1000, &err) == 0, "read last 128 bytes (suffix)", &err);
    check(get_check(st, key, -5000, -1, 1000, &err) == 0, "suffix longer than the object", &err);

    /* NOREPLACE on an existing key: WV_EEXIST and the old content intact. */
    r = put(st, key, WV_PUT_NOREPLACE, 10, &err);
    check(r == WV_EEXIST, "no-replace commit on an existing key fails with EEXIST", &err);
    r = wv_storage_stat(st, key, &sb, &err);
    check(r == 0 && sb.size == 1000, "existing object untouched by the refused commit", &err);

    /* After the no-replace probe (which may let a store skip its existence check), the same:
     * an existing key refused with its content intact, a new key stored. */
    {
        uint8_t b[1000];
        fill(b, sizeof(b), 0);
        r = wv_storage_probe_noreplace(st, key, b, sizeof(b), &err);
        check(r == 0, "no-replace probe with the object's own bytes", &err);
        r = put(st, key, WV_PUT_NOREPLACE, 10, &err);
        check(r == WV_EEXIST, "after the probe: no-replace commit on an existing key fails", &err);
        check(get_check(st, key, 0, -1, 1000, &err) == 0,
              "after the probe: the existing object reads back unchanged", &err);
        snprintf(key2, sizeof(key2), "%ssmall/after-probe", prefix);
        r = put(st, key2, WV_PUT_NOREPLACE, 10, &err);
        check(r == 0 && wv_storage_stat(st, key2, &sb, &err) == 0 && sb.size == 10,
              "after the probe: no-replace commit of a new key", &err);
    }

    /* Replace without the flag is allowed (used for nothing immutable). */
    snprintf(key2, sizeof(key2), "%ssmall/object-2", prefix);
    r = put(st, key2, 0, 10, &err);
    if (r == 0)
        r = put(st, key2, 0, 20, &err);
    check(r == 0 && wv_storage_stat(st, key2, &sb, &err) == 0 && sb.size == 20,
          "plain commit replaces", &err);

    /* Abort leaves no trace. */
    {
        wv_sink *s = NULL;
        char k[512];
        snprintf(k, sizeof(k), "%saborted/object", prefix);
        r = wv_storage_put_open(st, k, 0, &s, &err);
        if (r == 0) {
            uint8_t b[4096];
            fill(b, sizeof(b), 0);
            r = wv_sink_write(s, b, sizeof(b), &err);
            wv_sink_abort(s);
        }
        list_state ls = {.look_for = NULL};
        char p2[512];
        snprintf(p2, sizeof(p2), "%saborted/", prefix);
        int lr = wv_storage_list(st, p2, list_cb, &ls, &err);
        check(r == 0 && wv_storage_stat(st, k, &sb, &err) == WV_ENOTFOUND && lr == 0 &&
                  ls.count == 0,
              "abort leaves no object and nothing listed", &err);
    }

    /* Absent keys are WV_ENOTFOUND, and only that. */
    {
        char k[512];
        wv_source *src = NULL;
        snprintf(k, sizeof(k), "%sno/such/object", prefix);
        check(wv_storage_stat(st, k, &sb, &err) == WV_ENOTFOUND, "stat of absent key: not found",
              &err);
        r = wv_storage_get_open(st, k, 0, -1, &src, &err);
        check(r == WV_ENOTFOUND, "read of absent key: not found", &err);
        wv_source_close(src);
        check(wv_storage_remove(st, k, &err) == 0, "remove of absent key succeeds", &err);
    }

    /* A large object streams through bounded buffers. */
    if (large_mb > 0) {
        char k[512];
        uint64_t size = (uint64_t)large_mb * 1024 * 1024 + 12345;
        snprintf(k, sizeof(k), "%slarge/object", prefix);
        r = put(st, k, WV_PUT_NOREPLACE | WV_PUT_NOSYNC, size, &err);
        check(r == 0, "put large object", &err);
        check(wv_storage_flush(st, &err) == 0, "flush", &err);
        check(wv_storage_stat(st, k, &sb, &err) == 0 && sb.size == size, "large object size", &err);
        check(get_check(st, k, 0, -1, size, &err) == 0, "read large object", &err);
        check(get_check(st, k, (int64_t)size - 3000000, 2000000, size, &err) == 0,
              "read a range of the large object", &err);
    }

    /* Listing: many keys, prefix filtering, recursion. */
    {
        int ok = 1;
        for (int i = 0; i < many && ok; i++) {
            char k[512];
            snprintf(k, sizeof(k), "%smany/d%d/key-%04d", prefix, i % 3, i);
            ok = put(st, k, WV_PUT_NOSYNC, 1, &err) == 0;
        }
        check(ok, "put many small objects", &err);
        list_state ls = {0};
        char p2[512];
        snprintf(p2, sizeof(p2), "%smany/", prefix);
        r = wv_storage_list(st, p2, list_cb, &ls, &err);
        check(r == 0 && ls.count == many, "list finds every key under a prefix", &err);
        list_state ls2 = {0};
        snprintf(p2, sizeof(p2), "%smany/d1/key-00", prefix);
        r = wv_storage_list(st, p2, list_cb, &ls2, &err);
        int expect = 0;
        for (int i = 0; i < many && i < 100; i++)
            expect += i % 3 == 1;
        check(r == 0 && ls2.count == expect, "list filters by a partial name prefix", &err);
        list_state ls3 = {0};
        snprintf(p2, sizeof(p2), "%snothing-here/", prefix);
        check(wv_storage_list(st, p2, list_cb, &ls3, &err) == 0 && ls3.count == 0,
              "list of an absent prefix is empty", &err);
    }

    if (remove_n < 0)
        remove_n = (wv_storage_features(st) & WV_ST_REMOVE_MANY) ? 1100 : 40;
    if (remove_n > 0)
        check_remove_many(st, prefix, remove_n, &err);

    /* Remove everything we wrote. */
    wv_storage_list(st, prefix, remove_cb, st, &err);
    list_state left = {0};
    r = wv_storage_list(st, prefix, list_cb, &left, &err);
    check(r == 0 && left.count == 0, "remove every object", &err);

    printf("%d passed, %d failed\n", passed, failed);
    wv_storage_free(st);
    wv_config_free(cfg);
    return failed ? 1 : 0;
}
