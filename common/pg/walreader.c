/*
 * walreader.c - streaming PostgreSQL 15 to 18 WAL record reader (see walreader.h).
 *
 * Layout it relies on (src/include/access/xlog_internal.h, xlogrecord.h, xact.h, rmgrlist.h of
 * PostgreSQL 15, 16, 17 and 18; what differs between them is listed at struct wal_layout):
 *  - A segment is a sequence of pages of xlp_xlog_blcksz bytes (8 kB by default). Every page starts
 *    with a 24-byte header {u16 magic, u16 info, u32 tli, u64 pageaddr, u32 rem_len, pad}; the
 * first page of a segment has a 40-byte long header that adds {u64 sysid, u32 seg_size, u32
 * blcksz}. WV_XLP_FIRST_IS_CONTRECORD says the page starts with rem_len bytes continuing a record.
 *  - Records start MAXALIGNed (8) and may span pages (and segments); their 24-byte header
 *    {u32 tot_len, u32 xid, u64 prev, u8 info, u8 rmid, pad, u32 crc} may itself be split. The CRC
 * is CRC-32C over the bytes after the header, then over the header up to xl_crc.
 *  - After the header come block reference headers, then the block images and data, then the main
 *    data: so the main data is the last main_len bytes of the record.
 *
 * The reader is a byte-stream state machine. Record bytes are checksummed straight from the
 * caller's buffer; only records it looks into (transaction ends, restore points, switches) have
 * their header area (at most HEAD_MAX bytes) and the first MD_KEEP bytes of their main data copied.
 */
#include "pg/walreader.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "core/buf.h"
#include "core/bytes.h"
#include "pg/walpage.h"

/* Record header. */
#define REC_HDR           24
#define REC_MAX_LEN       0x3FFFFFFFu /* PostgreSQL cannot allocate a larger record */
#define RM_XLOG_ID        0
#define RM_XACT_ID        1
#define RM_MAX_BUILTIN_ID 21 /* RM_LOGICALMSG_ID, the last built-in one in PostgreSQL 15..18 */
#define RM_MIN_CUSTOM_ID  128

/* Block references. */
#define XLR_MAX_BLOCK_ID          32
#define XLR_BLOCK_ID_DATA_SHORT   255
#define XLR_BLOCK_ID_DATA_LONG    254
#define XLR_BLOCK_ID_ORIGIN       253
#define XLR_BLOCK_ID_TOPLEVEL_XID 252
#define BKPBLOCK_HAS_IMAGE        0x10
#define BKPBLOCK_HAS_DATA         0x20
#define BKPBLOCK_SAME_REL         0x80
#define BKPIMAGE_HAS_HOLE         0x01
#define BKPIMAGE_COMPRESSED       0x1C /* PGLZ 0x04, LZ4 0x08, ZSTD 0x10 */
#define RELFILENODE_SIZE          12   /* RelFileNode (15), RelFileLocator (16+): 3 x u32 */

/* XLOG and xact record kinds. */
#define XLR_RMGR_INFO_MASK           0xF0
#define XLOG_SWITCH                  0x40
#define XLOG_RESTORE_POINT           0x70
#define XLOG_XACT_OPMASK             0x70
#define XLOG_XACT_HAS_INFO           0x80
#define XLOG_XACT_COMMIT             0x00
#define XLOG_XACT_ABORT              0x20
#define XLOG_XACT_COMMIT_PREPARED    0x30
#define XLOG_XACT_ABORT_PREPARED     0x40
#define XACT_XINFO_HAS_DBINFO        (1u << 0)
#define XACT_XINFO_HAS_SUBXACTS      (1u << 1)
#define XACT_XINFO_HAS_RELFILENODES  (1u << 2)
#define XACT_XINFO_HAS_INVALS        (1u << 3)
#define XACT_XINFO_HAS_TWOPHASE      (1u << 4)
#define XACT_XINFO_HAS_DROPPED_STATS (1u << 8)
#define RESTORE_POINT_SIZE           (8 + 64) /* xl_restore_point {TimestampTz rp_time; char rp_name[64]} */

/*
 * What differs between the versions this reader knows, as far as it reads. The record header
 * (XLogRecord, 24 bytes), the block reference headers (XLogRecordBlockHeader, the image header and
 * its compression flags, RelFileNode renamed RelFileLocator in 16 but still three u32), the data
 * headers, the xact info bits and the order of a commit record's optional parts, the restore point
 * record and the XLOG record kinds are the same in 15, 16, 17 and 18. Only the element of the
 * dropped-statistics array of a commit record changed: xl_xact_stats_item is {int kind; Oid dboid;
 * Oid objoid} (12 bytes) up to 17 and {int kind; Oid dboid; uint32 objid_lo, objid_hi} (16 bytes)
 * from 18 on; it lies before the two-phase xid that COMMIT PREPARED carries.
 */
typedef struct wal_layout {
    int major;
    uint32_t stats_item_size;
} wal_layout;

static const wal_layout layouts[] = {{15, 12}, {16, 12}, {17, 12}, {18, 16}};

static const wal_layout *layout_of_major(int major)
{
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
        if (layouts[i].major == major)
            return &layouts[i];
    return NULL;
}

bool wv_walreader_reads_major(int major)
{
    return layout_of_major(major) != NULL;
}

/* PostgreSQL's epoch (2000-01-01) in unix microseconds. */
#define PG_EPOCH_UNIX_US (946684800LL * 1000000LL)

/* Largest header area (33 block headers of at most 27 bytes, plus data/origin/xid ids) fits. */
#define HEAD_MAX 1024
#define MD_KEEP  RESTORE_POINT_SIZE

/* What a record is, as far as this reader cares. */
enum rec_kind { K_OTHER, K_COMMIT, K_COMMIT_PREPARED, K_ABORT, K_RESTORE_POINT, K_SWITCH };

/* Fields of a COMMIT PREPARED record's main data read on the way to the prepared xid. */
enum cp_step { CP_SUBX, CP_RELS, CP_STATS, CP_INVALS, CP_XID, CP_DONE };

/* What the page layer expects next. */
enum mode {
    M_RECORDS, /* reading records */
    M_TAIL,    /* after the end of WAL: only checking later page headers */
    M_STOPPED, /* ignoring everything */
};

struct wv_walreader {
    uint64_t segsize;         /* 0 until known */
    uint16_t magic;           /* of the first page; every later page must carry the same */
    const wal_layout *layout; /* NULL until the first page header is read */
    uint32_t blcksz;          /* 0 until the first page header is read */
    uint64_t pos;             /* bytes of the segment consumed */
    enum mode mode;
    wv_walinfo info; /* results so far (bytes_fed, complete are filled in by result()) */
    wv_walreader_rp_cb rp_cb;
    void *rp_arg;
    uint32_t rp_next; /* ring position in info.restore_points */

    /* Page header being collected at the start of a page. */
    uint8_t phdr[WV_XLP_LONG_HEADER_SIZE];
    uint32_t phdr_len, phdr_need;
    bool in_page;      /* header of the current page consumed */
    uint64_t page_end; /* pos where the current page ends */

    /* Between records. */
    uint64_t skip_cont; /* bytes still to skip of the record continued from the previous segment */
    uint32_t pad;       /* alignment bytes to skip before the next record */
    bool prev_known;
    uint64_t prev_lsn;

    /* The record being read. */
    bool in_rec;
    uint64_t rec_lsn;
    uint32_t rec_tot, rec_got;
    uint8_t hdr[REC_HDR];
    uint32_t crc;
    enum rec_kind kind;
    bool bad; /* malformed header area or main data: ends WAL when the record completes */
    uint8_t head[HEAD_MAX];
    uint32_t head_len, head_need;
    bool md_known;
    uint32_t md_off, md_len; /* main data = record bytes [md_off, md_off + md_len) */
    uint8_t md[MD_KEEP];
    uint32_t md_have;
    /* COMMIT PREPARED: the prepared xid, found by skipping the variable-length arrays. */
    uint32_t xinfo;
    enum cp_step cp_step;
    uint64_t cp_want; /* main-data offset of the next u32 to read */
    uint8_t cp_field[4];
    uint32_t cp_field_have;
    uint32_t twophase_xid;
};

/* --- CRC-32C ---------------------------------------------------------------------------------- */

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c = crc;
    while (len > 0 && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 32) {
        uint64_t a, b, d, e;
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        memcpy(&d, p + 16, 8);
        memcpy(&e, p + 24, 8);
        c = _mm_crc32_u64(c, a);
        c = _mm_crc32_u64(c, b);
        c = _mm_crc32_u64(c, d);
        c = _mm_crc32_u64(c, e);
        p += 32;
        len -= 32;
    }
    while (len >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c = _mm_crc32_u64(c, a);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t wv_wal_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_hw(crc, buf, len);
#endif
    return crc32c_sw(crc, buf, len);
}

/* --- helpers ---------------------------------------------------------------------------------- */

static uint64_t lsn_at(const wv_walreader *r, uint64_t pos)
{
    return r->info.start_lsn + pos;
}

static void stop(wv_walreader *r, wv_wal_stop why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stop(wv_walreader *r, wv_wal_stop why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->info.reason, sizeof(r->info.reason), fmt, ap);
    va_end(ap);
    r->info.stop = why;
    /* After a plain end of WAL, later pages are still checked: see walreader.h. */
    r->mode = (why == WV_WAL_END_OF_WAL && r->blcksz) ? M_TAIL : M_STOPPED;
    r->in_rec = false;
}

#define LSN_FMT     "%X/%X"
#define LSN_ARGS(l) (unsigned)((l) >> 32), (unsigned)(l)

/* --- results ---------------------------------------------------------------------------------- */

/* A TimestampTz (microseconds since 2000) as unix microseconds. A record's time is whatever its
 * bytes say: one too late to move by the epoch difference is the latest time (not an overflow). */
static int64_t pg_time_us(const uint8_t *p)
{
    int64_t t = (int64_t)wv_get_le64(p);
    return t > INT64_MAX - PG_EPOCH_UNIX_US ? INT64_MAX : t + PG_EPOCH_UNIX_US;
}

static void record_verified(wv_walreader *r)
{
    wv_walinfo *in = &r->info;
    uint64_t end = (lsn_at(r, r->pos) + 7) & ~(uint64_t)7;
    in->record_count++;
    in->end_lsn = end;
    r->prev_known = true;
    r->prev_lsn = r->rec_lsn;

    switch (r->kind) {
    case K_COMMIT:
    case K_COMMIT_PREPARED: {
        int64_t t = pg_time_us(r->md);
        if (in->commit_count++ == 0)
            in->first_commit_us = t;
        in->last_commit_us = t;
        in->last_commit_lsn = end;
        in->last_commit_xid = r->kind == K_COMMIT ? wv_get_le32(r->hdr + 4) : r->twophase_xid;
        /* min and max in transaction id order (modulo 2^32, as PostgreSQL compares them) */
        if (in->commit_count == 1 || (int32_t)(in->last_commit_xid - in->commit_xid_min) < 0)
            in->commit_xid_min = in->last_commit_xid;
        if (in->commit_count == 1 || (int32_t)(in->last_commit_xid - in->commit_xid_max) > 0)
            in->commit_xid_max = in->last_commit_xid;
        break;
    }
    case K_ABORT: {
        int64_t t = pg_time_us(r->md);
        if (in->abort_count++ == 0)
            in->first_abort_us = t;
        in->last_abort_us = t;
        break;
    }
    case K_RESTORE_POINT: {
        wv_wal_restore_point rp;
        memset(&rp, 0, sizeof(rp));
        rp.time_us = pg_time_us(r->md);
        memcpy(rp.name, r->md + 8, WV_WAL_RP_NAME_MAX - 1);
        rp.name[WV_WAL_RP_NAME_MAX - 1] = '\0';
        rp.lsn = end;
        in->restore_point_count++;
        in->restore_points[r->rp_next] = rp;
        r->rp_next = (r->rp_next + 1) % WV_WAL_RP_KEEP;
        if (in->rp_kept < WV_WAL_RP_KEEP)
            in->rp_kept++;
        if (r->rp_cb)
            r->rp_cb(&rp, r->rp_arg);
        break;
    }
    case K_SWITCH:
        stop(r, WV_WAL_SWITCH, "switch record at " LSN_FMT, LSN_ARGS(r->rec_lsn));
        r->info.reason[0] = '\0';
        break;
    case K_OTHER:
        break;
    }
}

/* --- record header area and main data --------------------------------------------------------- */

/* Parse the block reference headers (as DecodeXLogRecord does) to find where the main data is. */
static bool parse_head(wv_walreader *r)
{
    const uint8_t *p = r->head;
    uint32_t have = r->head_len, off = 0;
    uint64_t remaining = r->rec_tot - REC_HDR, datatotal = 0;
    uint32_t main_len = 0;

#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (off + (n) > have || remaining < (n))                                                   \
            return false;                                                                          \
    } while (0)
#define TAKE(n) (off += (n), remaining -= (n))

    while (remaining > datatotal) {
        NEED(1);
        uint8_t id = p[off];
        TAKE(1);
        if (id == XLR_BLOCK_ID_DATA_SHORT) {
            NEED(1);
            main_len = p[off];
            TAKE(1);
            datatotal += main_len;
            break;
        } else if (id == XLR_BLOCK_ID_DATA_LONG) {
            NEED(4);
            main_len = wv_get_le32(p + off);
            TAKE(4);
            datatotal += main_len;
            break;
        } else if (id == XLR_BLOCK_ID_ORIGIN) {
            NEED(2);
            TAKE(2);
        } else if (id == XLR_BLOCK_ID_TOPLEVEL_XID) {
            NEED(4);
            TAKE(4);
        } else if (id <= XLR_MAX_BLOCK_ID) {
            NEED(3);
            uint8_t fork_flags = p[off];
            uint16_t data_len = wv_get_le16(p + off + 1);
            TAKE(3);
            if ((fork_flags & BKPBLOCK_HAS_DATA) ? data_len == 0 : data_len != 0)
                return false;
            datatotal += data_len;
            if (fork_flags & BKPBLOCK_HAS_IMAGE) {
                NEED(5);
                uint16_t bimg_len = wv_get_le16(p + off);
                uint8_t bimg_info = p[off + 4];
                TAKE(5);
                if ((bimg_info & BKPIMAGE_HAS_HOLE) && (bimg_info & BKPIMAGE_COMPRESSED)) {
                    NEED(2);
                    TAKE(2);
                }
                if (bimg_len == 0)
                    return false;
                datatotal += bimg_len;
            }
            if (!(fork_flags & BKPBLOCK_SAME_REL)) {
                NEED(RELFILENODE_SIZE);
                TAKE(RELFILENODE_SIZE);
            }
            NEED(4);
            TAKE(4);
        } else {
            return false;
        }
    }
#undef NEED
#undef TAKE
    if (remaining != datatotal)
        return false;
    r->md_len = main_len;
    r->md_off = r->rec_tot - main_len;
    r->md_known = true;
    return true;
}

/* Decide which u32 of a COMMIT PREPARED's main data to read next, from cursor on. */
static void cp_advance(wv_walreader *r, uint64_t cursor)
{
    static const uint32_t flag[] = {XACT_XINFO_HAS_SUBXACTS, XACT_XINFO_HAS_RELFILENODES,
                                    XACT_XINFO_HAS_DROPPED_STATS, XACT_XINFO_HAS_INVALS,
                                    XACT_XINFO_HAS_TWOPHASE};
    while (r->cp_step < CP_DONE && !(r->xinfo & flag[r->cp_step]))
        r->cp_step++;
    r->cp_want = cursor;
    r->cp_field_have = 0;
    if (r->cp_step != CP_DONE && cursor + 4 > r->md_len)
        r->cp_step = CP_DONE;
}

static void cp_field_done(wv_walreader *r)
{
    const uint32_t elem[] = {4, RELFILENODE_SIZE, r->layout->stats_item_size, 16};
    uint32_t v = wv_get_le32(r->cp_field);
    if (r->cp_step == CP_XID) {
        r->twophase_xid = v;
        r->cp_step = CP_DONE;
        return;
    }
    if ((int32_t)v < 0) {
        r->cp_step = CP_DONE;
        return;
    }
    uint64_t next = r->cp_want + 4 + (uint64_t)v * elem[r->cp_step];
    r->cp_step++;
    cp_advance(r, next);
}

/* Main data bytes [off, off + n) of the current record. */
static void md_consume(wv_walreader *r, uint64_t off, const uint8_t *p, size_t n)
{
    if (off < MD_KEEP) {
        size_t k = MD_KEEP - off < n ? (size_t)(MD_KEEP - off) : n;
        memcpy(r->md + off, p, k);
        r->md_have = (uint32_t)(off + k);
        if (r->kind == K_COMMIT_PREPARED && r->cp_step == CP_SUBX && r->cp_want == 0) {
            /* xact_time, then xinfo (present when XLOG_XACT_HAS_INFO). */
            if (!(r->hdr[16] & XLOG_XACT_HAS_INFO)) {
                r->cp_step = CP_DONE;
            } else if (r->md_have >= 12) {
                r->xinfo = wv_get_le32(r->md + 8);
                cp_advance(r, 12 + ((r->xinfo & XACT_XINFO_HAS_DBINFO) ? 8 : 0));
            }
        }
    }
    while (r->kind == K_COMMIT_PREPARED && r->cp_step != CP_DONE && r->cp_want != 0) {
        uint64_t want = r->cp_want + r->cp_field_have;
        if (want < off || want >= off + n)
            break;
        size_t i = (size_t)(want - off);
        size_t k = 4 - r->cp_field_have;
        if (k > n - i)
            k = n - i;
        memcpy(r->cp_field + r->cp_field_have, p + i, k);
        r->cp_field_have += (uint32_t)k;
        if (r->cp_field_have < 4)
            break;
        cp_field_done(r);
    }
}

/* The header area is buffered: find the main data, and replay the part of it already buffered. */
static void head_complete(wv_walreader *r)
{
    if (!parse_head(r)) {
        r->bad = true;
        return;
    }
    uint32_t need = r->kind == K_RESTORE_POINT ? RESTORE_POINT_SIZE : r->kind == K_SWITCH ? 0 : 8;
    if (r->md_len < need) {
        r->bad = true;
        return;
    }
    uint64_t head_end = REC_HDR + (uint64_t)r->head_len;
    if (r->md_off < head_end)
        md_consume(r, 0, r->head + (r->md_off - REC_HDR), (size_t)(head_end - r->md_off));
}

static enum rec_kind classify(const uint8_t *hdr)
{
    uint8_t info = hdr[16], rmid = hdr[17];
    if (rmid == RM_XACT_ID) {
        switch (info & XLOG_XACT_OPMASK) {
        case XLOG_XACT_COMMIT:
            return K_COMMIT;
        case XLOG_XACT_COMMIT_PREPARED:
            return K_COMMIT_PREPARED;
        case XLOG_XACT_ABORT:
        case XLOG_XACT_ABORT_PREPARED:
            return K_ABORT;
        }
    } else if (rmid == RM_XLOG_ID) {
        if ((info & XLR_RMGR_INFO_MASK) == XLOG_RESTORE_POINT)
            return K_RESTORE_POINT;
        if ((info & XLR_RMGR_INFO_MASK) == XLOG_SWITCH)
            return K_SWITCH;
    }
    return K_OTHER;
}

/* The 24-byte record header is complete: validate it as ValidXLogRecordHeader does. */
static bool header_complete(wv_walreader *r)
{
    uint32_t tot = wv_get_le32(r->hdr);
    uint64_t prev = wv_get_le64(r->hdr + 8);
    uint8_t rmid = r->hdr[17];
    if (tot == 0) {
        stop(r, WV_WAL_END_OF_WAL, "end of WAL at " LSN_FMT " (zero record length)",
             LSN_ARGS(r->rec_lsn));
        return false;
    }
    if (tot < REC_HDR || tot > REC_MAX_LEN) {
        stop(r, WV_WAL_END_OF_WAL, "end of WAL at " LSN_FMT " (invalid record length %u)",
             LSN_ARGS(r->rec_lsn), tot);
        return false;
    }
    if (rmid > RM_MAX_BUILTIN_ID && rmid < RM_MIN_CUSTOM_ID) {
        stop(r, WV_WAL_END_OF_WAL, "end of WAL at " LSN_FMT " (invalid resource manager %u)",
             LSN_ARGS(r->rec_lsn), rmid);
        return false;
    }
    if (r->prev_known ? prev != r->prev_lsn : prev >= r->rec_lsn) {
        stop(r, WV_WAL_END_OF_WAL, "end of WAL at " LSN_FMT " (xl_prev " LSN_FMT " does not chain)",
             LSN_ARGS(r->rec_lsn), LSN_ARGS(prev));
        return false;
    }
    r->rec_tot = tot;
    r->kind = classify(r->hdr);
    if (r->kind != K_OTHER) {
        r->head_need = tot - REC_HDR < HEAD_MAX ? tot - REC_HDR : HEAD_MAX;
        if (r->head_need == 0)
            r->bad = r->kind != K_SWITCH;
    }
    return true;
}

static void record_complete(wv_walreader *r)
{
    uint32_t crc = wv_wal_crc32c(r->crc, r->hdr, 20) ^ 0xFFFFFFFFu;
    r->in_rec = false;
    if (crc != wv_get_le32(r->hdr + 20)) {
        stop(r, WV_WAL_END_OF_WAL, "end of WAL at " LSN_FMT " (record checksum mismatch)",
             LSN_ARGS(r->rec_lsn));
        return;
    }
    if (r->bad || (r->kind != K_OTHER && r->kind != K_SWITCH && !r->md_known)) {
        stop(r, WV_WAL_GAVE_UP, "malformed record at " LSN_FMT " (rmgr %u, info 0x%02X)",
             LSN_ARGS(r->rec_lsn), r->hdr[17], r->hdr[16]);
        return;
    }
    record_verified(r);
    r->pad = (uint32_t)((8 - (r->pos & 7)) & 7);
}

/* Consume record bytes within the current page; returns how many were used (the record may end). */
static size_t rec_bytes(wv_walreader *r, const uint8_t *p, size_t n)
{
    size_t used = 0;
    if (!r->in_rec) {
        r->in_rec = true;
        r->rec_lsn = lsn_at(r, r->pos);
        r->rec_got = 0;
        r->rec_tot = 0;
        r->crc = 0xFFFFFFFFu;
        r->kind = K_OTHER;
        r->bad = false;
        r->head_len = r->head_need = 0;
        r->md_known = false;
        r->md_have = 0;
        r->xinfo = 0;
        r->cp_step = CP_SUBX;
        r->cp_want = 0;
        r->cp_field_have = 0;
        r->twophase_xid = 0;
    }
    if (r->rec_got < REC_HDR) {
        size_t k = REC_HDR - r->rec_got < n ? REC_HDR - r->rec_got : n;
        memcpy(r->hdr + r->rec_got, p, k);
        r->rec_got += (uint32_t)k;
        r->pos += k;
        used += k;
        if (r->rec_got < REC_HDR)
            return used;
        if (!header_complete(r))
            return used;
    }
    size_t k = r->rec_tot - r->rec_got < n - used ? r->rec_tot - r->rec_got : n - used;
    const uint8_t *q = p + used;
    r->crc = wv_wal_crc32c(r->crc, q, k);
    if (r->kind != K_OTHER) {
        uint64_t off = r->rec_got; /* record offset of q[0] */
        if (r->head_len < r->head_need) {
            size_t h = r->head_need - r->head_len < k ? r->head_need - r->head_len : k;
            memcpy(r->head + r->head_len, q, h);
            r->head_len += (uint32_t)h;
            if (r->head_len == r->head_need)
                head_complete(r);
        }
        uint64_t head_end = REC_HDR + (uint64_t)r->head_len;
        if (r->md_known && !r->bad && off + k > head_end) {
            /* Bytes past the buffered header area: main data from md_off on. */
            uint64_t from = off > head_end ? off : head_end;
            if (from < r->md_off)
                from = r->md_off;
            if (from < off + k)
                md_consume(r, from - r->md_off, q + (from - off), (size_t)(off + k - from));
        }
    }
    r->rec_got += (uint32_t)k;
    r->pos += k;
    used += k;
    if (r->rec_got == r->rec_tot)
        record_complete(r);
    return used;
}

/* --- pages ------------------------------------------------------------------------------------ */

static bool valid_size(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* The current page's header is in r->phdr: validate it and set up what its data holds. */
static void page_header(wv_walreader *r)
{
    const uint8_t *h = r->phdr;
    uint16_t magic = wv_get_le16(h), flags = wv_get_le16(h + 2);
    uint32_t tli = wv_get_le32(h + 4), rem_len = wv_get_le32(h + 16);
    uint64_t pageaddr = wv_get_le64(h + 8);

    if (r->mode == M_TAIL) {
        /* After the end of WAL, a page of this very segment means WAL went on: damage. */
        if (magic == r->magic && pageaddr == lsn_at(r, r->pos) && !(flags & ~WV_XLP_ALL_FLAGS) &&
            tli == r->info.timeline) {
            char was[sizeof(r->info.reason)];
            snprintf(was, sizeof(was), "%s", r->info.reason);
            stop(r, WV_WAL_GAVE_UP, "unreadable WAL before valid page " LSN_FMT ": %.70s",
                 LSN_ARGS(pageaddr), was);
        }
        return;
    }

    if (r->pos == 0) {
        int major = wv_walpage_major_of_magic(magic);
        r->layout = layout_of_major(major);
        if (!r->layout) {
            if (major)
                stop(r, WV_WAL_GAVE_UP,
                     "PostgreSQL %d WAL (page magic 0x%04X) is not read: commit times are read "
                     "from PostgreSQL %d to %d WAL",
                     major, magic, WV_WALREADER_MAJOR_MIN, WV_WALREADER_MAJOR_MAX);
            else
                stop(r, WV_WAL_GAVE_UP, "not WAL of a known PostgreSQL version (page magic 0x%04X)",
                     magic);
            return;
        }
        r->magic = magic;
        r->info.pg_major = (uint32_t)major;
        uint32_t seg_size = wv_get_le32(h + 32), blcksz = wv_get_le32(h + 36);
        if (!(flags & WV_XLP_LONG_HEADER) || (flags & ~WV_XLP_ALL_FLAGS)) {
            stop(r, WV_WAL_GAVE_UP, "first page header flags 0x%04X are invalid", flags);
            return;
        }
        if (!valid_size(seg_size, 1u << 20, 1u << 30) || (r->segsize && seg_size != r->segsize)) {
            stop(r, WV_WAL_GAVE_UP, "segment size %u in the page header is not the expected %llu",
                 seg_size, (unsigned long long)r->segsize);
            return;
        }
        if (!valid_size(blcksz, 1024, 65536) || pageaddr % seg_size != 0 || tli == 0) {
            stop(r, WV_WAL_GAVE_UP,
                 "first page header is invalid (block size %u, address " LSN_FMT ", timeline %u)",
                 blcksz, LSN_ARGS(pageaddr), tli);
            return;
        }
        r->segsize = seg_size;
        r->blcksz = blcksz;
        r->info.start_lsn = pageaddr;
        r->info.timeline = tli;
        r->page_end = blcksz;
        if (flags & WV_XLP_FIRST_IS_OVERWRITE_CONTRECORD)
            return; /* the record the previous segment left unfinished was abandoned */
        if (flags & WV_XLP_FIRST_IS_CONTRECORD) {
            if (rem_len == 0 || rem_len > REC_MAX_LEN) {
                stop(r, WV_WAL_GAVE_UP, "invalid continuation length %u on the first page",
                     rem_len);
                return;
            }
            r->skip_cont = rem_len;
            r->info.cont_len = rem_len;
        }
        return;
    }

    r->page_end = r->pos + r->blcksz;
    if (magic != r->magic || (flags & ~WV_XLP_ALL_FLAGS) || (flags & WV_XLP_LONG_HEADER) ||
        pageaddr != lsn_at(r, r->pos) || tli < r->info.timeline) {
        if (magic == 0 && pageaddr == 0)
            stop(r, WV_WAL_END_OF_WAL, "end of WAL at " LSN_FMT " (zeroed page)",
                 LSN_ARGS(lsn_at(r, r->pos)));
        else
            stop(r, WV_WAL_END_OF_WAL,
                 "end of WAL at " LSN_FMT " (page from " LSN_FMT ", magic 0x%04X)",
                 LSN_ARGS(lsn_at(r, r->pos)), LSN_ARGS(pageaddr), magic);
        return;
    }
    r->info.timeline = tli;
    if (flags & WV_XLP_FIRST_IS_OVERWRITE_CONTRECORD) {
        /* PostgreSQL abandoned the record in progress and wrote on from here. */
        r->in_rec = false;
        r->skip_cont = 0;
        return;
    }
    uint64_t expect = r->skip_cont ? r->skip_cont
                      : r->in_rec  ? (uint64_t)r->rec_tot - r->rec_got
                                   : 0;
    bool cont = (flags & WV_XLP_FIRST_IS_CONTRECORD) != 0;
    if (r->in_rec && r->rec_got < 4) {
        /* Cannot happen: a record's length always lands on its first page (8-byte alignment). */
        stop(r, WV_WAL_GAVE_UP, "record header split before its length at " LSN_FMT,
             LSN_ARGS(r->rec_lsn));
        return;
    }
    if (r->in_rec && r->rec_got < REC_HDR)
        expect = wv_get_le32(r->hdr) - r->rec_got;
    if (cont != (expect != 0) || (cont && rem_len != expect)) {
        stop(r, WV_WAL_END_OF_WAL,
             "end of WAL at " LSN_FMT " (continuation flag %d, length %u, "
             "expected %llu)",
             LSN_ARGS(lsn_at(r, r->pos)), cont, rem_len, (unsigned long long)expect);
    }
}

int wv_walreader_feed(wv_walreader *r, const uint8_t *buf, size_t len)
{
    r->info.bytes_fed += len;
    while (len > 0) {
        if (r->mode == M_STOPPED)
            return 0;
        if (r->segsize && r->pos >= r->segsize) {
            stop(r, WV_WAL_GAVE_UP, "more than a segment of input (%llu bytes)",
                 (unsigned long long)r->segsize);
            return 0;
        }
        if (!r->in_page) {
            /* Collect the page header. */
            if (r->phdr_len == 0)
                r->phdr_need = r->pos == 0 ? WV_XLP_LONG_HEADER_SIZE : WV_XLP_SHORT_HEADER_SIZE;
            size_t k = r->phdr_need - r->phdr_len < len ? r->phdr_need - r->phdr_len : len;
            memcpy(r->phdr + r->phdr_len, buf, k);
            r->phdr_len += (uint32_t)k;
            buf += k;
            len -= k;
            if (r->phdr_len < r->phdr_need)
                return 0;
            page_header(r);
            r->pos += r->phdr_need;
            r->phdr_len = 0;
            r->in_page = true;
            if (r->mode == M_TAIL)
                r->page_end = r->pos - r->phdr_need + r->blcksz;
            continue;
        }
        size_t avail = r->page_end - r->pos < len ? (size_t)(r->page_end - r->pos) : len;
        size_t used;
        if (r->mode == M_TAIL) {
            used = avail;
            r->pos += used;
        } else if (r->skip_cont) {
            used = r->skip_cont < avail ? (size_t)r->skip_cont : avail;
            r->skip_cont -= used;
            r->pos += used;
            if (r->skip_cont == 0)
                r->pad = (uint32_t)((8 - (r->pos & 7)) & 7);
        } else if (r->pad) {
            used = r->pad < avail ? r->pad : avail;
            r->pad -= (uint32_t)used;
            r->pos += used;
        } else {
            used = rec_bytes(r, buf, avail);
            if (r->mode == M_TAIL) {
                /* Ended inside this page: skip what is left of it. */
                uint64_t rest = r->page_end - r->pos;
                size_t more = rest < avail - used ? (size_t)rest : avail - used;
                r->pos += more;
                used += more;
            }
        }
        buf += used;
        len -= used;
        if (r->pos == r->page_end) {
            r->in_page = false;
            if (r->pos == r->segsize && r->mode == M_RECORDS) {
                if (r->in_rec)
                    r->info.pending_lsn = r->rec_lsn;
                r->in_rec = false;
                r->info.stop = WV_WAL_SEGMENT_END;
                r->mode = M_STOPPED;
            }
        }
    }
    return 0;
}

/* --- lifecycle -------------------------------------------------------------------------------- */

wv_walreader *wv_walreader_new(uint64_t segsize)
{
    wv_walreader *r = wv_xcalloc(1, sizeof(*r));
    r->segsize = segsize;
    r->mode = M_RECORDS;
    r->info.first_commit_us = r->info.last_commit_us = INT64_MIN;
    r->info.first_abort_us = r->info.last_abort_us = INT64_MIN;
    if (segsize && !valid_size(segsize, 1u << 20, 1u << 30))
        stop(r, WV_WAL_GAVE_UP, "invalid WAL segment size %llu", (unsigned long long)segsize);
    return r;
}

void wv_walreader_free(wv_walreader *r)
{
    free(r);
}

void wv_walreader_set_rp_callback(wv_walreader *r, wv_walreader_rp_cb cb, void *arg)
{
    r->rp_cb = cb;
    r->rp_arg = arg;
}

void wv_walreader_result(const wv_walreader *r, wv_walinfo *out)
{
    *out = r->info;
    /* Restore points oldest first. */
    if (r->info.rp_kept == WV_WAL_RP_KEEP) {
        for (uint32_t i = 0; i < WV_WAL_RP_KEEP; i++)
            out->restore_points[i] = r->info.restore_points[(r->rp_next + i) % WV_WAL_RP_KEEP];
    }
    bool whole = r->segsize && r->info.bytes_fed == r->segsize;
    if (out->stop == WV_WAL_RUNNING || (!whole && out->stop != WV_WAL_GAVE_UP)) {
        if (out->stop == WV_WAL_RUNNING)
            out->pending_lsn = r->in_rec ? r->rec_lsn : 0;
        snprintf(out->reason, sizeof(out->reason), "segment is %llu bytes, expected %llu",
                 (unsigned long long)r->info.bytes_fed, (unsigned long long)r->segsize);
    }
    out->complete = whole && out->stop != WV_WAL_GAVE_UP && out->stop != WV_WAL_RUNNING;
}

/* --- pipeline stage --------------------------------------------------------------------------- */

typedef struct walreader_filter {
    wv_filter base;
    wv_walreader *r;
} walreader_filter;

static int wr_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    walreader_filter *w = (walreader_filter *)f;
    wv_walreader_feed(w->r, buf, len);
    return wv_filter_pass(f, buf, len, err);
}

static int wr_finish(wv_filter *f, wv_err *err)
{
    return f->next ? wv_filter_finish(f->next, err) : 0;
}

static void wr_free(wv_filter *f)
{
    free(f);
}

static const wv_filter_ops walreader_filter_ops = {
    .name = "walreader",
    .write = wr_write,
    .finish = wr_finish,
    .free = wr_free,
};

wv_filter *wv_walreader_filter_new(wv_filter *next, wv_walreader *r)
{
    walreader_filter *w = wv_xcalloc(1, sizeof(*w));
    w->base.ops = &walreader_filter_ops;
    w->base.next = next;
    w->r = r;
    return &w->base;
}
