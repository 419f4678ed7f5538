/*
 * test_walreader.c - the streaming WAL reader against real PostgreSQL 15 and 18 segments (made by
 * data/gen_wal.sh, checked against what that version's pg_waldump reported about them in
 * data/wal/expected.txt and data/wal18/expected.txt; 16 and 17 are checked by the integration
 * suite, since their portable builds have no pg_waldump to make such data with),
 * fed in pieces of 1, 7, 4096 bytes and whole; garbage, truncated, recycled (stale tail), forged
 * and corrupted segments; a synthetic 16 MiB segment for the cost per byte (printed, not asserted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/error.h"
#include "pipeline/filter.h"
#include "pg/walreader.h"

#define MiB         (UINT64_C(1) << 20)
#define PG_EPOCH_US (946684800LL * 1000000LL)

/* --- expected.txt ---------------------------------------------------------------------------- */

typedef struct {
    char seg[64];
    char kind[64];
    uint64_t lsn, end;
    int64_t us;
    uint32_t xid;
} xact_row;

typedef struct {
    char seg[64];
    uint64_t lsn, end;
    char name[64];
} rp_row;

typedef struct {
    char name[64];
    char file[64];
    uint64_t end;
} seg_row;

/* The data set the tests read: "wal" (PostgreSQL 15) or "wal18"; set by each test's setup. */
static const char *set_dir = "wal";
static int set_major = 15;

static int use_15(void **state)
{
    (void)state;
    set_dir = "wal";
    set_major = 15;
    return 0;
}

static int use_18(void **state)
{
    (void)state;
    set_dir = "wal18";
    set_major = 18;
    return 0;
}

static struct {
    const char *dir; /* the data set loaded */
    uint64_t segsize;
    seg_row segs[8];
    int nsegs;
    xact_row xacts[512];
    int nxacts;
    rp_row rps[16];
    int nrps;
} ex;

static uint64_t parse_lsn(const char *s)
{
    unsigned hi, lo;
    assert_int_equal(sscanf(s, "%X/%X", &hi, &lo), 2);
    return ((uint64_t)hi << 32) | lo;
}

static void load_expected(void)
{
    if (ex.dir == set_dir)
        return;
    memset(&ex, 0, sizeof(ex));
    ex.dir = set_dir;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/expected.txt", WV_TEST_DATA, set_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char line[512], a[64], b[64], c[64], d[64], e[64], g[64];
    long long us;
    unsigned xid;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "segsize %63s", a) == 1) {
            ex.segsize = strtoull(a, NULL, 10);
        } else if (sscanf(line, "segment %63s %63s %63s", a, b, c) == 3) {
            assert_true(ex.nsegs < 8);
            seg_row *s = &ex.segs[ex.nsegs++];
            snprintf(s->name, sizeof(s->name), "%s", a);
            snprintf(s->file, sizeof(s->file), "%s", b);
            s->end = parse_lsn(c);
        } else if (sscanf(line, "xact %63s %63s %63s %63s %lld %u", a, b, c, d, &us, &xid) == 6) {
            assert_true(ex.nxacts < 512);
            xact_row *x = &ex.xacts[ex.nxacts++];
            snprintf(x->seg, sizeof(x->seg), "%s", a);
            snprintf(x->kind, sizeof(x->kind), "%s", b);
            x->lsn = parse_lsn(c);
            x->end = parse_lsn(d);
            x->us = us;
            x->xid = xid;
        } else if (sscanf(line, "restore_point %63s %63s %63s %63s", a, c, d, g) == 4) {
            assert_true(ex.nrps < 16);
            rp_row *p = &ex.rps[ex.nrps++];
            snprintf(p->seg, sizeof(p->seg), "%s", a);
            p->lsn = parse_lsn(c);
            p->end = parse_lsn(d);
            snprintf(p->name, sizeof(p->name), "%s", g);
        } else {
            (void)e;
            fail_msg("unexpected line in expected.txt: %s", line);
        }
    }
    fclose(f);
    assert_int_equal(ex.segsize, MiB);
    assert_true(ex.nsegs >= 3);
}

/* What the reader should report for segment seg, counting records that end at or before upto. */
static void expect_for(const char *seg, uint64_t upto, wv_walinfo *w)
{
    memset(w, 0, sizeof(*w));
    w->first_commit_us = w->last_commit_us = INT64_MIN;
    w->first_abort_us = w->last_abort_us = INT64_MIN;
    for (int i = 0; i < ex.nxacts; i++) {
        const xact_row *x = &ex.xacts[i];
        if (strcmp(x->seg, seg) != 0 || x->end > upto)
            continue;
        if (strncmp(x->kind, "COMMIT", 6) == 0) {
            if (w->commit_count++ == 0)
                w->first_commit_us = x->us;
            w->last_commit_us = x->us;
            w->last_commit_xid = x->xid;
            w->last_commit_lsn = x->end;
            if (w->commit_count == 1 || x->xid < w->commit_xid_min)
                w->commit_xid_min = x->xid;
            if (w->commit_count == 1 || x->xid > w->commit_xid_max)
                w->commit_xid_max = x->xid;
        } else {
            if (w->abort_count++ == 0)
                w->first_abort_us = x->us;
            w->last_abort_us = x->us;
        }
    }
    for (int i = 0; i < ex.nrps; i++) {
        if (strcmp(ex.rps[i].seg, seg) == 0 && ex.rps[i].end <= upto)
            w->restore_point_count++;
    }
}

static void check_counts(const wv_walinfo *got, const wv_walinfo *want)
{
    assert_int_equal(got->commit_count, want->commit_count);
    assert_int_equal(got->abort_count, want->abort_count);
    assert_int_equal(got->restore_point_count, want->restore_point_count);
    assert_true(got->first_commit_us == want->first_commit_us);
    assert_true(got->last_commit_us == want->last_commit_us);
    assert_true(got->first_abort_us == want->first_abort_us);
    assert_true(got->last_abort_us == want->last_abort_us);
    assert_int_equal(got->last_commit_xid, want->last_commit_xid);
    assert_int_equal(got->last_commit_lsn, want->last_commit_lsn);
    assert_int_equal(got->commit_xid_min, want->commit_xid_min);
    assert_int_equal(got->commit_xid_max, want->commit_xid_max);
}

/* --- segments -------------------------------------------------------------------------------- */

static void load_lz4(const char *file, wv_buf *out)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s", WV_TEST_DATA, set_dir, file);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    wv_filter *chain = wv_lz4_decompress_new(wv_filter_buf_new(out));
    wv_err err;
    wv_err_clear(&err);
    uint8_t tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(wv_filter_write(chain, tmp, n, &err), 0);
    fclose(f);
    assert_int_equal(wv_filter_finish(chain, &err), 0);
    wv_filter_chain_free(chain);
}

static const seg_row *seg_by_suffix(const char *suffix)
{
    for (int i = 0; i < ex.nsegs; i++) {
        size_t l = strlen(ex.segs[i].file), s = strlen(suffix);
        if (l >= s && strcmp(ex.segs[i].file + l - s, suffix) == 0)
            return &ex.segs[i];
    }
    return NULL;
}

static void read_chunked(const uint8_t *p, size_t len, size_t chunk, uint64_t segsize,
                         wv_walinfo *out)
{
    wv_walreader *r = wv_walreader_new(segsize);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        assert_int_equal(wv_walreader_feed(r, p + off, n), 0);
        off += n;
    }
    wv_walreader_result(r, out);
    wv_walreader_free(r);
}

static uint64_t seg_start(const char *name)
{
    unsigned tli, log, seg;
    assert_int_equal(sscanf(name, "%8X%8X%8X", &tli, &log, &seg), 3);
    return ((uint64_t)log << 32) + (uint64_t)seg * ex.segsize;
}

static void test_real_segments(void **state)
{
    (void)state;
    load_expected();
    const size_t chunks[] = {1, 7, 4096, SIZE_MAX};
    int saw_switch = 0, saw_cont = 0, saw_eow = 0, saw_prepared = 0;
    for (int s = 0; s < ex.nsegs; s++) {
        const seg_row *seg = &ex.segs[s];
        wv_buf data = WV_BUF_INIT;
        load_lz4(seg->file, &data);
        assert_int_equal(data.len, ex.segsize);
        wv_walinfo want;
        expect_for(seg->name, UINT64_MAX, &want);
        for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
            for (int auto_size = 0; auto_size <= 1; auto_size++) {
                wv_walinfo got;
                read_chunked(data.data, data.len, chunks[c], auto_size ? 0 : ex.segsize, &got);
                if (!got.complete)
                    fail_msg("%s at %zu-byte pieces: incomplete: %s", seg->file, chunks[c],
                             got.reason);
                check_counts(&got, &want);
                assert_int_equal(got.start_lsn, seg_start(seg->name));
                assert_int_equal(got.timeline, 1);
                assert_int_equal(got.pg_major, set_major);
                assert_int_equal(got.end_lsn, seg->end);
                assert_int_equal(got.bytes_fed, ex.segsize);
                assert_true(got.record_count > 0);
                if (got.stop == WV_WAL_SWITCH)
                    saw_switch = 1;
                if (got.stop == WV_WAL_END_OF_WAL)
                    saw_eow = 1;
                if (got.cont_len > 0)
                    saw_cont = 1;
                if (got.stop == WV_WAL_SEGMENT_END)
                    assert_true(got.pending_lsn > got.start_lsn);
                if (strstr(seg->file, ".partial"))
                    assert_int_equal(got.stop, WV_WAL_END_OF_WAL);
                /* Restore points: the names and ends pg_waldump saw. */
                uint32_t k = 0;
                for (int i = 0; i < ex.nrps; i++) {
                    if (strcmp(ex.rps[i].seg, seg->name) != 0)
                        continue;
                    assert_true(k < got.rp_kept);
                    assert_string_equal(got.restore_points[k].name, ex.rps[i].name);
                    assert_int_equal(got.restore_points[k].lsn, ex.rps[i].end);
                    /* Its time lies between the commits around it. */
                    for (int j = 0; j < ex.nxacts; j++) {
                        if (ex.xacts[j].lsn < ex.rps[i].lsn)
                            assert_true(ex.xacts[j].us <= got.restore_points[k].time_us);
                        else
                            assert_true(ex.xacts[j].us >= got.restore_points[k].time_us);
                    }
                    k++;
                }
                assert_int_equal(k, got.rp_kept);
            }
        }
        for (int i = 0; i < ex.nxacts; i++)
            if (strcmp(ex.xacts[i].seg, seg->name) == 0 &&
                strcmp(ex.xacts[i].kind, "COMMIT_PREPARED") == 0 &&
                ex.xacts[i].lsn == want.last_commit_lsn)
                saw_prepared = 1;
        wv_buf_free(&data);
    }
    /* The data covers what it is meant to. */
    assert_true(saw_switch);
    assert_true(saw_cont);
    assert_true(saw_eow);
    (void)saw_prepared;
    assert_true(ex.nrps >= 1);
}

/* The COMMIT PREPARED that dropped a table (rels, dropped stats, invals before the xid). */
static void test_commit_prepared_xid(void **state)
{
    (void)state;
    load_expected();
    int checked = 0;
    for (int i = 0; i < ex.nxacts; i++) {
        const xact_row *x = &ex.xacts[i];
        if (strcmp(x->kind, "COMMIT_PREPARED") != 0)
            continue;
        const seg_row *seg = NULL;
        for (int s = 0; s < ex.nsegs; s++)
            if (strcmp(ex.segs[s].name, x->seg) == 0)
                seg = &ex.segs[s];
        assert_non_null(seg);
        wv_buf data = WV_BUF_INIT;
        load_lz4(seg->file, &data);
        /* Cut the segment right after this record: it is then the last commit. */
        uint64_t cut = x->end - seg_start(seg->name);
        wv_walinfo got, want;
        read_chunked(data.data, (size_t)cut, 7, ex.segsize, &got);
        expect_for(seg->name, x->end, &want);
        check_counts(&got, &want);
        assert_int_equal(got.last_commit_xid, x->xid);
        assert_int_equal(got.last_commit_lsn, x->end);
        assert_false(got.complete);
        wv_buf_free(&data);
        checked++;
    }
    assert_true(checked >= 2);
}

/* The version matters: the same bytes read as another version's WAL (the page magic of every page
 * rewritten) find another xid in a COMMIT PREPARED that dropped a table, because the dropped
 * statistics items before it are 12 bytes up to 17 and 16 bytes from 18 on. */
static void test_layout_by_version(void **state)
{
    (void)state;
    load_expected();
    int checked = 0;
    for (int i = 0; i < ex.nxacts; i++) {
        const xact_row *x = &ex.xacts[i];
        if (strcmp(x->kind, "COMMIT_PREPARED") != 0)
            continue;
        const seg_row *seg = NULL;
        for (int s = 0; s < ex.nsegs; s++)
            if (strcmp(ex.segs[s].name, x->seg) == 0)
                seg = &ex.segs[s];
        assert_non_null(seg);
        wv_buf data = WV_BUF_INIT;
        load_lz4(seg->file, &data);
        uint64_t cut = x->end - seg_start(seg->name);
        wv_walinfo same, other;
        read_chunked(data.data, (size_t)cut, 4096, ex.segsize, &same);
        assert_int_equal(same.last_commit_xid, x->xid);
        /* 15 <-> 16 (same layout) and 15/16 <-> 18 (stats items differ). */
        uint16_t magic_same = set_major == 18 ? 0xD118 : 0xD113;
        uint16_t magic_other = set_major == 18 ? 0xD116 : 0xD118;
        for (int pass = 0; pass < 2; pass++) {
            uint16_t m = pass ? magic_other : magic_same;
            for (size_t page = 0; page < data.len; page += 8192)
                memcpy(data.data + page, &m, 2);
            read_chunked(data.data, (size_t)cut, 4096, ex.segsize, &other);
            assert_int_equal(other.pg_major,
                             pass ? (set_major == 18 ? 17 : 18) : (set_major == 18 ? 18 : 16));
            assert_int_equal(other.commit_count, same.commit_count);
            if (pass == 0)
                assert_int_equal(other.last_commit_xid, x->xid);
            else {
                /* Only the one that dropped a table (and so carries statistics items) differs. */
                if (other.last_commit_xid != x->xid)
                    checked++;
            }
        }
        wv_buf_free(&data);
    }
    assert_int_equal(checked, 1);
}

static void test_filter_adapter(void **state)
{
    (void)state;
    load_expected();
    const seg_row *seg = &ex.segs[0];
    wv_buf data = WV_BUF_INIT, copy = WV_BUF_INIT;
    load_lz4(seg->file, &data);
    wv_walreader *r = wv_walreader_new(ex.segsize);
    wv_filter *f = wv_walreader_filter_new(wv_filter_buf_new(&copy), r);
    wv_err err;
    wv_err_clear(&err);
    for (size_t off = 0; off < data.len; off += 100000) {
        size_t n = data.len - off < 100000 ? data.len - off : 100000;
        assert_int_equal(wv_filter_write(f, data.data + off, n, &err), 0);
    }
    assert_int_equal(wv_filter_finish(f, &err), 0);
    wv_filter_chain_free(f);
    assert_int_equal(copy.len, data.len);
    assert_memory_equal(copy.data, data.data, data.len);
    wv_walinfo got, want;
    wv_walreader_result(r, &got);
    wv_walreader_free(r);
    expect_for(seg->name, UINT64_MAX, &want);
    assert_true(got.complete);
    check_counts(&got, &want);
    wv_buf_free(&data);
    wv_buf_free(&copy);
}

/* Truncated input: what was read is right, and the result says it is not the whole segment. */
static void test_truncated(void **state)
{
    (void)state;
    load_expected();
    const seg_row *seg = &ex.segs[0];
    wv_buf data = WV_BUF_INIT;
    load_lz4(seg->file, &data);
    const size_t cuts[] = {0,    1,    24,     39,     40,     41,      8192,
                           8200, 8216, 100000, 200000, 500000, MiB - 8, MiB - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        for (int chunk = 1; chunk <= 4096; chunk *= 4096) {
            wv_walinfo got, want;
            read_chunked(data.data, cuts[i], (size_t)chunk, ex.segsize, &got);
            assert_false(got.complete);
            assert_int_equal(got.bytes_fed, cuts[i]);
            uint64_t upto = seg_start(seg->name) + (cuts[i] & ~(size_t)7);
            expect_for(seg->name, upto, &want);
            check_counts(&got, &want);
            assert_true(got.reason[0] != '\0');
        }
    }
    /* One byte too many is not a segment either. */
    wv_buf_append(&data, "x", 1);
    wv_walinfo got;
    read_chunked(data.data, data.len, 4096, ex.segsize, &got);
    assert_false(got.complete);
    wv_buf_free(&data);
}

/* A recycled segment: valid records, then an older segment's bytes at the same offsets. */
static void test_recycled(void **state)
{
    (void)state;
    load_expected();
    const seg_row *part = seg_by_suffix(".partial.lz4");
    assert_non_null(part);
    wv_buf data = WV_BUF_INIT, old = WV_BUF_INIT;
    load_lz4(part->file, &data);
    load_lz4(ex.segs[0].file, &old);
    size_t end = (size_t)(part->end - seg_start(part->name));
    /* Overwrite everything after the last valid record, including the rest of its page. */
    memcpy(data.data + end, old.data + end, data.len - end);
    wv_walinfo want;
    expect_for(part->name, UINT64_MAX, &want);
    const size_t chunks[] = {1, 7, 4096, SIZE_MAX};
    for (size_t c = 0; c < 4; c++) {
        wv_walinfo got;
        read_chunked(data.data, data.len, chunks[c], ex.segsize, &got);
        if (!got.complete)
            fail_msg("recycled segment at %zu-byte pieces: %s", chunks[c], got.reason);
        assert_int_equal(got.stop, WV_WAL_END_OF_WAL);
        assert_int_equal(got.end_lsn, part->end);
        check_counts(&got, &want);
    }
    wv_buf_free(&data);
    wv_buf_free(&old);
}

/* Rewrite the record at lsn in place: set xl_prev, recompute its CRC (record within one page). */
static void forge_prev(uint8_t *seg, uint64_t start, uint64_t lsn, uint64_t new_prev)
{
    uint8_t *rec = seg + (lsn - start);
    uint32_t tot;
    memcpy(&tot, rec, 4);
    assert_true((lsn % 8192) + tot <= 8192);
    memcpy(rec + 8, &new_prev, 8);
    uint32_t crc = wv_wal_crc32c(0xFFFFFFFFu, rec + 24, tot - 24);
    crc = wv_wal_crc32c(crc, rec, 20) ^ 0xFFFFFFFFu;
    memcpy(rec + 20, &crc, 4);
}

/* A valid-checksum record whose xl_prev does not chain ends the WAL there; WAL going on after it
 * (pages of this segment) makes the result incomplete. Same for a flipped byte. */
static void test_broken_chain_and_crc(void **state)
{
    (void)state;
    load_expected();
    const seg_row *seg = &ex.segs[0];
    uint64_t start = seg_start(seg->name);
    /* A small commit in the middle of the segment, inside one page. */
    const xact_row *x = NULL;
    int n = 0;
    for (int i = 0; i < ex.nxacts; i++) {
        const xact_row *c = &ex.xacts[i];
        if (strcmp(c->seg, seg->name) == 0 && strcmp(c->kind, "COMMIT") == 0 &&
            (c->lsn % 8192) + 64 < 8192 && ++n == 10)
            x = c;
    }
    assert_non_null(x);
    wv_buf data = WV_BUF_INIT;
    load_lz4(seg->file, &data);

    /* Sanity: the forger itself is right (same prev, same CRC: nothing changes). */
    uint64_t prev;
    memcpy(&prev, data.data + (x->lsn - start) + 8, 8);
    uint8_t before[24];
    memcpy(before, data.data + (x->lsn - start), 24);
    forge_prev(data.data, start, x->lsn, prev);
    assert_memory_equal(before, data.data + (x->lsn - start), 24);

    forge_prev(data.data, start, x->lsn, prev + 8);
    wv_walinfo want;
    expect_for(seg->name, x->lsn, &want);
    for (size_t chunk = 1; chunk <= 4096; chunk *= 4096) {
        wv_walinfo got;
        read_chunked(data.data, data.len, chunk, ex.segsize, &got);
        assert_false(got.complete);
        assert_int_equal(got.stop, WV_WAL_GAVE_UP);
        assert_non_null(strstr(got.reason, "does not chain"));
        check_counts(&got, &want);
        assert_true(got.end_lsn <= x->lsn);
    }
    forge_prev(data.data, start, x->lsn, prev);

    /* A flipped bit in the commit's timestamp: checksum mismatch. */
    data.data[(x->lsn - start) + 26] ^= 0x10;
    wv_walinfo got;
    read_chunked(data.data, data.len, 4096, ex.segsize, &got);
    assert_false(got.complete);
    assert_non_null(strstr(got.reason, "checksum"));
    check_counts(&got, &want);
    wv_buf_free(&data);
}

/* Not WAL, or not this version's: never counted, never complete, never a crash. */
static void test_garbage(void **state)
{
    (void)state;
    load_expected();
    wv_buf real = WV_BUF_INIT;
    load_lz4(ex.segs[0].file, &real);
    uint8_t *buf = wv_xmalloc(MiB);
    uint64_t x = 88172645463325252ULL;
    for (int kind = 0; kind < 7; kind++) {
        switch (kind) {
        case 0: /* zeros */
            memset(buf, 0, MiB);
            break;
        case 1: /* random */
            for (size_t i = 0; i < MiB; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[i] = (uint8_t)x;
            }
            break;
        case 2: /* text */
            for (size_t i = 0; i < MiB; i++)
                buf[i] = "walvault is not WAL\n"[i % 20];
            break;
        case 3: /* WAL of a version whose records are not read (14: 0xD10D) */
            memcpy(buf, real.data, MiB);
            buf[0] = 0x0D;
            break;
        case 4: /* the right magic but a nonsense first header */
            memcpy(buf, real.data, MiB);
            buf[36] = 0x33; /* block size */
            break;
        case 5: /* a segment size different from the one asked for */
            memcpy(buf, real.data, MiB);
            buf[34] = 0x20; /* 2 MiB */
            break;
        case 6: /* valid first page, random after it (records and pages of garbage) */
            memcpy(buf, real.data, 8192);
            for (size_t i = 8192; i < MiB; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[i] = (uint8_t)x;
            }
            break;
        }
        const size_t chunks[] = {1, 7, 4096, SIZE_MAX};
        for (size_t c = 0; c < 4; c++) {
            wv_walinfo got;
            read_chunked(buf, MiB, chunks[c], ex.segsize, &got);
            if (kind == 6) {
                /* The first page's records are real; what follows is no valid page. */
                assert_true(got.stop == WV_WAL_END_OF_WAL || got.stop == WV_WAL_GAVE_UP);
                continue;
            }
            assert_false(got.complete);
            assert_int_equal(got.stop, WV_WAL_GAVE_UP);
            if (kind == 3)
                assert_non_null(strstr(got.reason, "PostgreSQL 14 WAL (page magic 0xD10D)"));
            if (kind == 0 || kind == 1 || kind == 2)
                assert_non_null(strstr(got.reason, "not WAL of a known PostgreSQL version"));
            assert_int_equal(got.commit_count, 0);
            assert_int_equal(got.record_count, 0);
            assert_true(got.last_commit_us == INT64_MIN);
        }
    }
    /* Random pages with a valid page header each: records of garbage, all rejected. */
    memcpy(buf, real.data, MiB);
    for (size_t page = 8192; page < MiB; page += 8192)
        for (size_t i = page + 24; i < page + 8192; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
    wv_walinfo got;
    read_chunked(buf, MiB, 7, ex.segsize, &got);
    assert_false(got.complete);
    /* A bad segment size asked for. */
    wv_walreader *r = wv_walreader_new(12345);
    wv_walreader_feed(r, real.data, real.len);
    wv_walreader_result(r, &got);
    wv_walreader_free(r);
    assert_false(got.complete);
    assert_int_equal(got.stop, WV_WAL_GAVE_UP);
    free(buf);
    wv_buf_free(&real);
}

/* --- a synthetic 16 MiB segment -------------------------------------------------------------- */

typedef struct {
    uint8_t *seg;
    uint64_t segsize, start, pos, prev;
    uint32_t ncommits, nfancy;
    int64_t last_us;
    int overwrite_next; /* the next page header says the record in progress was abandoned */
    int abandoned;
    uint32_t xid; /* the records' xid; 0: 1000 */
} synth;

/* One record: header, one block reference with data of blen bytes (like a heap insert), main data.
 */
/* fancy: every kind of block reference header before a DATA_LONG main data (as DecodeXLogRecord
 * reads them). abandon: if the record crosses a page, write only its first page and mark the next
 * page XLP_FIRST_IS_OVERWRITE_CONTRECORD, as PostgreSQL does after a crash; returns 2 then. */
static int synth_record(synth *s, uint8_t rmid, uint8_t info, const uint8_t *md, uint32_t mdlen,
                        uint32_t blen, int fancy, int abandon)
{
    uint8_t rec[400];
    uint32_t off = 24;
    if (fancy) {
        static const uint8_t hdrs[] = {
            252, 1,    2,  3,  4,                  /* top-level xid */
            253, 9,    0,                          /* origin */
            0,   0x30, 10, 0,                      /* block 0: image and 10 bytes of data */
            100, 0,    50, 0,  0x01 | 0x08, 20, 0, /* image: 100 bytes, hole, lz4, hole 20 */
            1,   2,    3,  4,  5,           6,  7, 8,
            9,   10,   11, 12, 0,           0,  0, 1, /* relfilenode, block number */
            1,   0xA0, 5,  0,  0,           0,  0, 2, /* block 1: same rel, 5 bytes of data */
            254};
        memcpy(rec + off, hdrs, sizeof(hdrs));
        off += sizeof(hdrs);
        memcpy(rec + off, &mdlen, 4);
        off += 4;
        memset(rec + off, 0xEE, 115); /* image, block 0 data, block 1 data */
        off += 115;
        memcpy(rec + off, md, mdlen);
        off += mdlen;
        blen = 0;
        goto header;
    }
    if (blen) {
        rec[off++] = 0;    /* block 0 */
        rec[off++] = 0x20; /* HAS_DATA, main fork */
        uint16_t bl = (uint16_t)blen;
        memcpy(rec + off, &bl, 2);
        off += 2;
        memset(rec + off, 7, 12 + 4); /* relfilenode, block number */
        off += 16;
    }
    rec[off++] = 255;
    rec[off++] = (uint8_t)mdlen;
    for (uint32_t i = 0; i < blen; i++)
        rec[off++] = (uint8_t)(i * 31);
    memcpy(rec + off, md, mdlen);
    off += mdlen;
header:;
    uint32_t tot = off, xid = s->xid ? s->xid : 1000;
    uint64_t lsn = s->start + s->pos;
    if (s->pos % 8192 == 0)
        lsn += 24;
    if (s->pos + 8192 * 2 > s->segsize)
        return 0; /* leave the end of the segment zero (end of WAL) */
    memcpy(rec, &tot, 4);
    memcpy(rec + 4, &xid, 4);
    memcpy(rec + 8, &s->prev, 8);
    rec[16] = info;
    rec[17] = rmid;
    rec[18] = rec[19] = 0;
    uint32_t crc = wv_wal_crc32c(0xFFFFFFFFu, rec + 24, tot - 24);
    crc = wv_wal_crc32c(crc, rec, 20) ^ 0xFFFFFFFFu;
    memcpy(rec + 20, &crc, 4);
    /* Page by page, so that continuation headers carry the right remaining length. */
    uint32_t done = 0;
    while (done < tot) {
        if (s->pos % 8192 == 0) {
            uint8_t *h = s->seg + s->pos;
            uint16_t magic = 0xD110 /* PostgreSQL 15 */, pinfo = done                ? 1
                                                                 : s->overwrite_next ? 8
                                                                                     : 0;
            s->overwrite_next = 0;
            uint32_t tli = 1, rem = done ? tot - done : 0;
            uint64_t addr = s->start + s->pos;
            memset(h, 0, 24);
            memcpy(h, &magic, 2);
            memcpy(h + 2, &pinfo, 2);
            memcpy(h + 4, &tli, 4);
            memcpy(h + 8, &addr, 8);
            memcpy(h + 16, &rem, 4);
            s->pos += 24;
        }
        uint32_t room = 8192 - (uint32_t)(s->pos % 8192), k = tot - done < room ? tot - done : room;
        if (abandon && done == 0 && k < tot) {
            memcpy(s->seg + s->pos, rec, k);
            s->pos += k;
            s->overwrite_next = 1;
            return 2;
        }
        memcpy(s->seg + s->pos, rec + done, k);
        s->pos += k;
        done += k;
    }
    s->pos = (s->pos + 7) & ~(uint64_t)7;
    s->prev = lsn;
    return 1;
}

static void make_synthetic(synth *s, uint64_t segsize)
{
    memset(s, 0, sizeof(*s));
    s->segsize = segsize;
    s->start = 5 * segsize;
    s->seg = wv_xcalloc(1, segsize);
    s->prev = s->start - 64;
    /* Long first page header. */
    uint16_t magic = 0xD110 /* PostgreSQL 15 */, info = 2;
    uint32_t tli = 1, ss = (uint32_t)segsize, bs = 8192;
    memcpy(s->seg, &magic, 2);
    memcpy(s->seg + 2, &info, 2);
    memcpy(s->seg + 4, &tli, 4);
    memcpy(s->seg + 8, &s->start, 8);
    memcpy(s->seg + 32, &ss, 4);
    memcpy(s->seg + 36, &bs, 4);
    s->pos = 40;
    int64_t t = (int64_t)1795000000 * 1000000 - PG_EPOCH_US;
    for (uint32_t i = 0;; i++) {
        int ok;
        if (i % 10 == 9) {
            uint8_t md[8];
            t += 1000;
            memcpy(md, &t, 8);
            int fancy = i % 70 == 9, abandon = fancy && i > 30000 && !s->abandoned;
            ok = synth_record(s, 1, 0x00, md, 8, 0, fancy, abandon);
            if (ok == 2)
                s->abandoned = 1;
            if (ok == 1) {
                s->ncommits++;
                s->nfancy += fancy;
                s->last_us = t + PG_EPOCH_US;
            }
        } else {
            uint8_t md[3] = {1, 2, 3};
            ok = synth_record(s, 10, 0x00, md, 3, 60 + (i * 37) % 180, 0, 0);
        }
        if (!ok)
            break;
    }
}

/* The committed xid range is kept in PostgreSQL's modulo-2^32 order: across a wraparound the
 * minimum (4294967290) is numerically above the maximum (5). */
static void test_commit_xid_range_wraps(void **state)
{
    (void)state;
    synth s;
    memset(&s, 0, sizeof(s));
    s.segsize = MiB;
    s.start = 5 * MiB;
    s.seg = wv_xcalloc(1, MiB);
    s.prev = s.start - 64;
    uint16_t magic = 0xD110 /* PostgreSQL 15 */, info = 2;
    uint32_t tli = 1, ss = (uint32_t)MiB, bs = 8192;
    memcpy(s.seg, &magic, 2);
    memcpy(s.seg + 2, &info, 2);
    memcpy(s.seg + 4, &tli, 4);
    memcpy(s.seg + 8, &s.start, 8);
    memcpy(s.seg + 32, &ss, 4);
    memcpy(s.seg + 36, &bs, 4);
    s.pos = 40;
    const uint32_t xids[] = {4294967295u, 4294967290u, 3, 5, 4};
    const uint8_t kinds[] = {0x00, 0x00, 0x00, 0x00, 0x20}; /* the last one aborts */
    for (int i = 0; i < 5; i++) {
        int64_t t = 1000 + i;
        uint8_t md[8];
        memcpy(md, &t, 8);
        s.xid = xids[i];
        assert_int_equal(synth_record(&s, 1, kinds[i], md, 8, 0, 0, 0), 1);
    }
    wv_walinfo got;
    read_chunked(s.seg, MiB, 7, MiB, &got);
    assert_int_equal(got.commit_count, 4);
    assert_int_equal(got.commit_xid_min, 4294967290u);
    assert_int_equal(got.commit_xid_max, 5);
    assert_int_equal(got.last_commit_xid, 5);
    free(s.seg);
}

/* A commit whose time is too late to convert to unix time (found by fuzzing: the conversion
 * overflowed a signed 64-bit integer, undefined behaviour). It counts, at the latest time. */
static void test_commit_time_overflow(void **state)
{
    (void)state;
    synth s;
    memset(&s, 0, sizeof(s));
    s.segsize = MiB;
    s.start = 5 * MiB;
    s.seg = wv_xcalloc(1, MiB);
    s.prev = s.start - 64;
    uint16_t magic = 0xD110 /* PostgreSQL 15 */, info = 2;
    uint32_t tli = 1, ss = (uint32_t)MiB, bs = 8192;
    memcpy(s.seg, &magic, 2);
    memcpy(s.seg + 2, &info, 2);
    memcpy(s.seg + 4, &tli, 4);
    memcpy(s.seg + 8, &s.start, 8);
    memcpy(s.seg + 32, &ss, 4);
    memcpy(s.seg + 36, &bs, 4);
    s.pos = 40;
    const int64_t times[] = {INT64_MAX - 5, INT64_MAX - PG_EPOCH_US, 1000};
    for (int i = 0; i < 3; i++) {
        uint8_t md[8];
        memcpy(md, &times[i], 8);
        assert_int_equal(synth_record(&s, 1, i == 1 ? 0x20 : 0x00, md, 8, 0, 0, 0), 1);
    }
    wv_walinfo got;
    read_chunked(s.seg, MiB, 7, MiB, &got);
    assert_int_equal(got.commit_count, 2);
    assert_int_equal(got.abort_count, 1);
    assert_true(got.first_commit_us == INT64_MAX);
    assert_true(got.first_abort_us == INT64_MAX);
    assert_true(got.last_commit_us == 1000 + PG_EPOCH_US);
    free(s.seg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Correctness of the synthetic segment at several piece sizes, then the cost per byte (printed). */
static void test_synthetic_16mib(void **state)
{
    (void)state;
    synth s;
    make_synthetic(&s, 16 * MiB);
    const size_t chunks[] = {7, 4096, 65536, SIZE_MAX};
    for (size_t c = 0; c < 4; c++) {
        wv_walinfo got;
        read_chunked(s.seg, s.segsize, chunks[c], s.segsize, &got);
        if (!got.complete)
            fail_msg("synthetic: %s", got.reason);
        assert_int_equal(got.stop, WV_WAL_END_OF_WAL);
        assert_int_equal(got.commit_count, s.ncommits);
        assert_true(got.last_commit_us == s.last_us);
        assert_true(got.commit_count > 1000);
        assert_true(s.nfancy > 100);
        assert_true(s.abandoned);
    }
    /* Cost per byte, against SHA-256 over the same bytes (information only: no assertion). */
    const int rounds = 4;
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        wv_walinfo got;
        read_chunked(s.seg, s.segsize, 256 * 1024, s.segsize, &got);
        assert_true(got.complete);
    }
    double t1 = now_s();
    uint8_t md[32];
    unsigned mdlen;
    for (int i = 0; i < rounds; i++)
        assert_int_equal(EVP_Digest(s.seg, s.segsize, md, &mdlen, EVP_sha256(), NULL), 1);
    double t2 = now_s();
    double bytes = (double)s.segsize * rounds;
    printf("walreader: %.3f ns/byte on a 16 MiB segment (sha256: %.3f ns/byte)\n",
           (t1 - t0) * 1e9 / bytes, (t2 - t1) * 1e9 / bytes);
    free(s.seg);
}

int main(void)
{
#define BOTH(t) cmocka_unit_test_setup(t, use_15), cmocka_unit_test_setup(t, use_18)
    const struct CMUnitTest tests[] = {
        BOTH(test_real_segments),
        BOTH(test_commit_prepared_xid),
        BOTH(test_layout_by_version),
        BOTH(test_filter_adapter),
        BOTH(test_truncated),
        BOTH(test_recycled),
        BOTH(test_broken_chain_and_crc),
        BOTH(test_garbage),
        cmocka_unit_test(test_synthetic_16mib),
        cmocka_unit_test(test_commit_time_overflow),
        cmocka_unit_test(test_commit_xid_range_wraps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
