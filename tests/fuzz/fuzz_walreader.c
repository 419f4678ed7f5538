/*
 * fuzz_walreader.c - the streaming WAL record reader (common/pg/walreader.c).
 *
 * Input: u8 mode, u16 seed for the piece sizes, then the rest.
 *   mode bit 0 clear: the rest is fed as a segment as it is (segment size from the page header,
 *                     or 1 MiB with bit 1).
 *   mode bit 0 set:   the rest describes WAL that the harness writes as PostgreSQL 15 would: a
 *                     long first page header (block size 1 << (10 + bits 1-2) bytes, 1 MiB
 *                     segments), an optional record continued from the previous segment, then
 *                     records (commits, aborts, prepared commits, restore points, switches, others)
 *                     with optional block references, MAXALIGNed, split across pages with
 *                     continuation headers, xl_prev chained and CRC-32C checksummed. Bits 3 and 6
 *                     fill the rest of the segment with zeros; bit 4 flips one byte afterwards.
 * Invariants, always: the reader fed in pieces reports exactly what it reports fed at once; the
 * result is consistent (complete only for a whole segment, counts within the record count, kept
 * restore points within their count, end_lsn set exactly when records were counted, a
 * NUL-terminated reason). For built WAL without a flipped byte, a model of what was written
 * predicts the result: the number of records, commits, aborts and restore points, first and last
 * commit times, the end of the last commit and of the last record, the restore point names, and
 * that a switch record stops the reader.
 */
#include "pg/walpage.h"
#include "pg/walreader.h"
#include "fuzz.h"

#define SEGSIZE          (UINT64_C(1) << 20)
#define PG_EPOCH_UNIX_US (946684800LL * 1000000LL)

static void w16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void w32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void w64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* The segment being written and what the model expects of it. */
typedef struct bld {
    wv_buf out;
    uint32_t blcksz, tli;
    uint64_t start;
    uint64_t rec_total, rec_written; /* the record (or continuation) being written */
    int in_cont;                     /* writing the end of the previous segment's last record */
    int full;                        /* the segment is full: the last record is cut */
    /* the model */
    uint32_t records, commits, aborts, rps;
    int64_t first_commit, last_commit, first_abort, last_abort;
    uint64_t last_commit_lsn, end_lsn, prev_lsn;
    int last_commit_prepared;
    uint32_t last_xid;
    int switched;
    char rp_names[WV_WAL_RP_KEEP][WV_WAL_RP_NAME_MAX];
} bld;

static void page_header(bld *b)
{
    uint8_t h[40] = {0};
    int first = b->out.len == 0;
    /* bytes of the record in progress still to come; none for a record that starts here */
    uint64_t rem = b->rec_written > 0 || b->in_cont ? b->rec_total - b->rec_written : 0;
    w16(h, wv_walpage_magic_of_major(15));
    w16(h + 2, (uint16_t)((first ? 0x0002 : 0) | (rem ? 0x0001 : 0)));
    w32(h + 4, b->tli);
    w64(h + 8, b->start + b->out.len);
    w32(h + 16, (uint32_t)rem);
    if (first) {
        w64(h + 24, UINT64_C(7000000000000000001));
        w32(h + 32, (uint32_t)SEGSIZE);
        w32(h + 36, b->blcksz);
    }
    wv_buf_append(&b->out, h, first ? 40 : 24);
}

/* Write n bytes of the current record, with page headers where pages begin. 0 if the segment
 * filled up first. */
static int emit(bld *b, const uint8_t *p, size_t n)
{
    while (n) {
        if (b->out.len >= SEGSIZE) {
            b->full = 1;
            return 0;
        }
        if (b->out.len % b->blcksz == 0)
            page_header(b);
        size_t room = b->blcksz - b->out.len % b->blcksz, k = n < room ? n : room;
        wv_buf_append(&b->out, p, k);
        p += k;
        n -= k;
        b->rec_written += k;
    }
    return 1;
}

static void align(bld *b)
{
    static const uint8_t zero[8] = {0};
    size_t pad = (8 - b->out.len % 8) % 8;
    if (b->out.len % b->blcksz != 0)
        wv_buf_append(&b->out, zero, pad);
}

enum { R_COMMIT, R_ABORT, R_PREPARED, R_RP, R_SWITCH, R_OTHER };

/* One record from the input: returns 0 when the input or the segment is used up. */
static int record(bld *b, fz_in *in)
{
    if (!in->n || b->full || b->switched)
        return 0;
    uint8_t sel = fz_u8(in);
    int kind = sel % 6;
    int blocks = (sel >> 3) & 1, image = (sel >> 4) & 1, has_info = (sel >> 5) & 1;
    uint32_t xid = fz_u32(in);
    size_t mlen = fz_u16(in) % 1500, dlen = blocks ? 1 + fz_u8(in) : 0;
    size_t ilen = blocks && image ? 1 + fz_u8(in) : 0;
    uint8_t info = 0, rmid = 0;
    size_t need = 0;
    switch (kind) {
    case R_COMMIT:
        rmid = 1, info = has_info ? 0x80 : 0x00, need = 8;
        break;
    case R_ABORT:
        rmid = 1, info = 0x20, need = 8;
        break;
    case R_PREPARED:
        rmid = 1, info = 0x30 | (has_info ? 0x80 : 0), need = 8;
        break;
    case R_RP:
        rmid = 0, info = 0x70, need = 72;
        break;
    case R_SWITCH:
        rmid = 0, info = 0x40, need = 0;
        break;
    default: /* an rmgr this reader does not look into */
        rmid = (uint8_t)(2 + sel % 20), info = fz_u8(in);
        break;
    }
    if (mlen < need)
        mlen = need;
    if (kind == R_SWITCH)
        mlen = 0;

    /* header area: [block 0 header] main data header; then block data, image, main data */
    wv_buf body = WV_BUF_INIT;
    if (blocks) {
        uint8_t bh[1 + 3 + 5 + 12 + 4] = {0};
        size_t k = 0;
        bh[k++] = 0;                                    /* block id 0 */
        bh[k++] = (uint8_t)(0x20 | (image ? 0x10 : 0)); /* HAS_DATA [HAS_IMAGE], not SAME_REL */
        w16(bh + k, (uint16_t)dlen), k += 2;
        if (image) {
            w16(bh + k, (uint16_t)ilen), k += 2; /* bimg_len */
            w16(bh + k, 0), k += 2;              /* hole offset */
            bh[k++] = 0;                         /* bimg_info: no hole, not compressed */
        }
        k += 12 + 4; /* relfilenode, block number */
        wv_buf_append(&body, bh, k);
    }
    if (mlen) { /* PostgreSQL writes no main data header for no main data */
        if (mlen < 256) {
            uint8_t mh[2] = {255, (uint8_t)mlen};
            wv_buf_append(&body, mh, 2);
        } else {
            uint8_t mh[5] = {254};
            w32(mh + 1, (uint32_t)mlen);
            wv_buf_append(&body, mh, 5);
        }
    }
    size_t before_data = body.len;
    for (size_t i = 0; i < ilen + dlen; i++) {
        uint8_t c = (uint8_t)(i * 7);
        wv_buf_append(&body, &c, 1);
    }
    uint8_t *md = wv_buf_reserve(&body, mlen);
    size_t got;
    const uint8_t *src = fz_bytes(in, mlen, &got);
    memset(md, 0, mlen);
    memcpy(md, src, got);
    body.len += mlen;
    (void)before_data;

    /* the record header, the checksum over the body then the header */
    uint8_t h[24] = {0};
    uint64_t lsn = b->start + b->out.len;
    if (b->out.len % b->blcksz == 0)
        lsn += b->out.len == 0 ? 40 : 24;
    w32(h, (uint32_t)(24 + body.len));
    w32(h + 4, xid);
    w64(h + 8, b->prev_lsn);
    h[16] = info;
    h[17] = rmid;
    uint32_t crc = wv_wal_crc32c(0xFFFFFFFFu, body.data, body.len);
    crc = wv_wal_crc32c(crc, h, 20) ^ 0xFFFFFFFFu;
    w32(h + 20, crc);

    b->rec_total = 24 + body.len;
    b->rec_written = 0;
    int ok = emit(b, h, 24) && emit(b, body.data, body.len);
    if (ok) {
        uint64_t end = (b->start + b->out.len + 7) & ~UINT64_C(7);
        int64_t t = mlen >= 8 ? (int64_t)((uint64_t)md[0] | (uint64_t)md[1] << 8 |
                                          (uint64_t)md[2] << 16 | (uint64_t)md[3] << 24 |
                                          (uint64_t)md[4] << 32 | (uint64_t)md[5] << 40 |
                                          (uint64_t)md[6] << 48 | (uint64_t)md[7] << 56)
                              : 0;
        t = t > INT64_MAX - PG_EPOCH_UNIX_US ? INT64_MAX : t + PG_EPOCH_UNIX_US;
        b->records++;
        b->end_lsn = end;
        b->prev_lsn = lsn;
        if (kind == R_COMMIT || kind == R_PREPARED) {
            if (b->commits++ == 0)
                b->first_commit = t;
            b->last_commit = t;
            b->last_commit_lsn = end;
            b->last_commit_prepared = kind == R_PREPARED;
            b->last_xid = xid;
        } else if (kind == R_ABORT) {
            if (b->aborts++ == 0)
                b->first_abort = t;
            b->last_abort = t;
        } else if (kind == R_RP) {
            char *name = b->rp_names[b->rps % WV_WAL_RP_KEEP];
            memcpy(name, md + 8, WV_WAL_RP_NAME_MAX - 1);
            name[WV_WAL_RP_NAME_MAX - 1] = '\0';
            b->rps++;
        } else if (kind == R_SWITCH) {
            b->switched = 1;
        }
        align(b);
    }
    b->rec_total = b->rec_written = 0;
    wv_buf_free(&body);
    return ok;
}

static void build(bld *b, fz_in *in, uint8_t mode)
{
    memset(b, 0, sizeof(*b));
    wv_buf_init(&b->out);
    b->blcksz = 1024u << ((mode >> 1) & 3);
    b->tli = 1 + fz_u8(in) % 3;
    b->start = (uint64_t)(1 + fz_u8(in)) * SEGSIZE;
    b->first_commit = b->last_commit = b->first_abort = b->last_abort = INT64_MIN;
    b->prev_lsn = b->start - 4096; /* the previous segment's last record */
    size_t cont = fz_u16(in) % 3000;
    if (cont) {
        /* the end of a record begun in the previous segment: its bytes are not checked */
        b->rec_total = cont;
        b->rec_written = 0;
        b->in_cont = 1;
        uint8_t junk[64];
        memset(junk, 0xab, sizeof(junk));
        while (b->rec_written < cont) {
            size_t k = cont - b->rec_written < sizeof(junk) ? cont - b->rec_written : sizeof(junk);
            emit(b, junk, k);
        }
        b->rec_total = b->rec_written = 0;
        b->in_cont = 0;
        align(b);
    }
    while (record(b, in))
        ;
    if (b->out.len == 0) { /* at least the first page header */
        b->rec_total = 0;
        page_header(b);
    }
    if ((mode & 0x48) == 0x48) { /* not too often: a whole segment costs milliseconds */
        size_t left = SEGSIZE - (b->out.len < SEGSIZE ? b->out.len : SEGSIZE);
        memset(wv_buf_reserve(&b->out, left), 0, left);
        b->out.len += left;
    }
}

static void feed(const uint8_t *p, size_t n, uint64_t segsize, uint32_t seed, wv_walinfo *out)
{
    wv_walreader *r = wv_walreader_new(segsize);
    if (!seed) {
        wv_walreader_feed(r, p, n);
    } else {
        fz_cut cut = {seed, 9000};
        for (size_t off = 0; off < n;) {
            size_t k = fz_cut_next(&cut);
            if (off >= 65536) /* past the first pages, in one piece (the zeros of a filled tail) */
                k = n - off;
            if (k > n - off)
                k = n - off;
            wv_walreader_feed(r, p + off, k);
            off += k;
        }
    }
    wv_walreader_result(r, out);
    wv_walreader_free(r);
}

static void check_same(const wv_walinfo *a, const wv_walinfo *b)
{
    FZ_CHECK(a->first_commit_us == b->first_commit_us && a->last_commit_us == b->last_commit_us &&
                 a->first_abort_us == b->first_abort_us && a->last_abort_us == b->last_abort_us &&
                 a->commit_count == b->commit_count && a->abort_count == b->abort_count &&
                 a->restore_point_count == b->restore_point_count &&
                 a->record_count == b->record_count && a->last_commit_xid == b->last_commit_xid &&
                 a->last_commit_lsn == b->last_commit_lsn && a->start_lsn == b->start_lsn &&
                 a->timeline == b->timeline && a->end_lsn == b->end_lsn &&
                 a->cont_len == b->cont_len && a->pending_lsn == b->pending_lsn &&
                 a->bytes_fed == b->bytes_fed && a->complete == b->complete && a->stop == b->stop &&
                 strcmp(a->reason, b->reason) == 0 && a->rp_kept == b->rp_kept,
             "fed at once: %u records, stop %d (%s); in pieces: %u records, stop %d (%s)",
             a->record_count, (int)a->stop, a->reason, b->record_count, (int)b->stop, b->reason);
    for (uint32_t i = 0; i < a->rp_kept; i++)
        FZ_CHECK(
            memcmp(&a->restore_points[i], &b->restore_points[i], sizeof(a->restore_points[i])) == 0,
            "restore point %u differs", i);
}

static void check_consistent(const wv_walinfo *w, uint64_t fed)
{
    FZ_CHECK(memchr(w->reason, '\0', sizeof(w->reason)) != NULL, "%s", "reason not terminated");
    FZ_CHECK(w->bytes_fed == fed, "bytes_fed %llu of %llu", (unsigned long long)w->bytes_fed,
             (unsigned long long)fed);
    FZ_CHECK(!w->complete || (fed >= SEGSIZE && (fed & (fed - 1)) == 0 &&
                              (w->stop == WV_WAL_SEGMENT_END || w->stop == WV_WAL_SWITCH ||
                               w->stop == WV_WAL_END_OF_WAL)),
             "complete after %llu bytes, stop %d", (unsigned long long)fed, (int)w->stop);
    FZ_CHECK((uint64_t)w->commit_count + w->abort_count + w->restore_point_count <= w->record_count,
             "%u commits, %u aborts, %u restore points in %u records", w->commit_count,
             w->abort_count, w->restore_point_count, w->record_count);
    FZ_CHECK(w->rp_kept <= WV_WAL_RP_KEEP && w->rp_kept <= w->restore_point_count, "%u kept",
             w->rp_kept);
    FZ_CHECK((w->end_lsn == 0) == (w->record_count == 0), "end_lsn %llx with %u records",
             (unsigned long long)w->end_lsn, w->record_count);
    FZ_CHECK(w->commit_count || w->first_commit_us == INT64_MIN, "%s",
             "commit time without commits");
    if (w->record_count)
        FZ_CHECK(w->end_lsn > w->start_lsn && w->end_lsn <= w->start_lsn + fed + 7 &&
                     w->end_lsn % 8 == 0,
                 "end_lsn %llx outside the %llu bytes from %llx", (unsigned long long)w->end_lsn,
                 (unsigned long long)fed, (unsigned long long)w->start_lsn);
    for (uint32_t i = 0; i < w->rp_kept; i++)
        FZ_CHECK(memchr(w->restore_points[i].name, '\0', WV_WAL_RP_NAME_MAX) != NULL, "%s",
                 "restore point name not terminated");
}

static void check_model(const bld *b, const wv_walinfo *w)
{
    FZ_CHECK(w->stop != WV_WAL_GAVE_UP, "the reader gave up on well-formed WAL: %s", w->reason);
    FZ_CHECK(w->record_count == b->records, "%u records counted, %u written (stop %d: %s)",
             w->record_count, b->records, (int)w->stop, w->reason);
    FZ_CHECK(w->commit_count == b->commits && w->abort_count == b->aborts &&
                 w->restore_point_count == b->rps,
             "counts %u/%u/%u, written %u/%u/%u", w->commit_count, w->abort_count,
             w->restore_point_count, b->commits, b->aborts, b->rps);
    FZ_CHECK(w->first_commit_us == b->first_commit && w->last_commit_us == b->last_commit &&
                 w->first_abort_us == b->first_abort && w->last_abort_us == b->last_abort,
             "%s", "transaction times differ from those written");
    FZ_CHECK(w->end_lsn == (b->records ? b->end_lsn : 0), "end %llx, written %llx",
             (unsigned long long)w->end_lsn, (unsigned long long)b->end_lsn);
    if (b->commits) {
        FZ_CHECK(w->last_commit_lsn == b->last_commit_lsn, "last commit ends at %llx, not %llx",
                 (unsigned long long)w->last_commit_lsn, (unsigned long long)b->last_commit_lsn);
        if (!b->last_commit_prepared)
            FZ_CHECK(w->last_commit_xid == b->last_xid, "xid %u, written %u", w->last_commit_xid,
                     b->last_xid);
    }
    FZ_CHECK(w->start_lsn == b->start && w->timeline == b->tli, "%s", "start or timeline");
    if (b->switched)
        FZ_CHECK(w->stop == WV_WAL_SWITCH, "stop %d after a switch record", (int)w->stop);
    uint32_t kept = b->rps < WV_WAL_RP_KEEP ? b->rps : WV_WAL_RP_KEEP;
    FZ_CHECK(w->rp_kept == kept, "%u restore points kept, want %u", w->rp_kept, kept);
    for (uint32_t i = 0; i < kept; i++) {
        const char *want = b->rp_names[(b->rps - kept + i) % WV_WAL_RP_KEEP];
        FZ_CHECK(strcmp(w->restore_points[i].name, want) == 0, "restore point %u \"%s\" not \"%s\"",
                 i, w->restore_points[i].name, want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t mode = fz_u8(&in);
    uint32_t seed = fz_u16(&in) | 1;
    wv_walinfo a, b;
    if (!(mode & 1)) {
        uint64_t segsize = (mode & 2) ? SEGSIZE : 0;
        feed(in.p, in.n, segsize, 0, &a);
        feed(in.p, in.n, segsize, seed, &b);
        check_same(&a, &b);
        check_consistent(&a, in.n);
        return 0;
    }
    bld w;
    build(&w, &in, mode);
    int flipped = 0;
    if ((mode & 16) && w.out.len) {
        uint32_t at = fz_u32(&in) % (uint32_t)w.out.len;
        w.out.data[at] ^= (uint8_t)(fz_u8(&in) | 1);
        flipped = 1;
    }
    feed(w.out.data, w.out.len, SEGSIZE, 0, &a);
    feed(w.out.data, w.out.len, SEGSIZE, seed, &b);
    check_same(&a, &b);
    check_consistent(&a, w.out.len);
    if (!flipped)
        check_model(&w, &a);
    wv_buf_free(&w.out);
    return 0;
}
