/*
 * walreader.h - a streaming reader of PostgreSQL 15, 16, 17 and 18 WAL segments that collects the facts a
 * point-in-time restore needs: the first and last commit time in a segment, commit/abort/restore
 * point counts, the last commit's xid and end LSN, the range of committed transaction ids, and
 * the end of the last valid record.
 *
 * It is fed the segment's bytes in order, in pieces of any size (as they pass through the archive
 * pipeline), reads every byte once and keeps a bounded state (a few kilobytes) whatever the record
 * sizes: it checksums every record (CRC-32C, as PostgreSQL does) but buffers only the record
 * headers and the first bytes of the main data of the records it looks into (transaction ends,
 * restore points, WAL switches).
 *
 * Invariants:
 *  - Feeding never fails and never reads outside the pieces it is given. On anything it does not
 *    understand it stops collecting and says so in the result (complete = 0, reason).
 *  - Records are counted only when their checksum verifies and xl_prev chains to the previous one.
 *    The first record that does not (zeros, a stale page of a recycled segment, old records with a
 *    broken chain) is the end of WAL; if a later page of the segment still carries this segment's
 *    address, WAL went on past an unreadable record and the result is marked incomplete.
 *  - A record belongs to the segment in which it ends: the record continued from the previous
 *    segment is skipped (its head is not here to verify), and one that runs past the end of this
 *    segment is not counted (see pending_lsn). So a commit whose record crosses a segment boundary
 * is counted by neither segment.
 *  - Commit "first" and "last" are in WAL order (the order recovery replays them), not min/max.
 */
#ifndef WALVAULT_PG_WALREADER_H
#define WALVAULT_PG_WALREADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/filter.h"

/* The major versions whose WAL records this reader understands. The version is taken from the
 * segment's first page magic (pg/walpage.h); every later page must carry the same magic. WAL of
 * another version gives up with a reason naming its version (or its magic when no release used it).
 */
#define WV_WALREADER_MAJOR_MIN 15
#define WV_WALREADER_MAJOR_MAX 18

/* Restore point names are at most 63 bytes (PostgreSQL's MAXFNAMELEN - 1). */
#define WV_WAL_RP_NAME_MAX 64
/* How many of a segment's last restore points the result keeps. */
#define WV_WAL_RP_KEEP 8

typedef struct wv_wal_restore_point {
    char name[WV_WAL_RP_NAME_MAX]; /* NUL-terminated */
    int64_t time_us;               /* unix microseconds */
    uint64_t lsn;                  /* end of the restore point record (recovery stops there) */
} wv_wal_restore_point;

/* Why the reader stopped (or that it has not). */
typedef enum wv_wal_stop {
    WV_WAL_RUNNING = 0, /* still reading: less than a whole segment fed so far */
    WV_WAL_SEGMENT_END, /* read to the end of the segment */
    WV_WAL_SWITCH,      /* an XLOG_SWITCH record: the rest of the segment is unused */
    WV_WAL_END_OF_WAL,  /* valid WAL ended inside the segment (zeros or stale data after it) */
    WV_WAL_GAVE_UP,     /* not WAL this reader understands, or damaged WAL */
} wv_wal_stop;

typedef struct wv_walinfo {
    int64_t first_commit_us; /* unix microseconds; INT64_MIN if none */
    int64_t last_commit_us;
    int64_t first_abort_us; /* aborts end transactions too (recovery_target_time looks at both) */
    int64_t last_abort_us;
    uint32_t commit_count; /* COMMIT and COMMIT_PREPARED */
    uint32_t abort_count;  /* ABORT and ABORT_PREPARED */
    uint32_t restore_point_count;
    uint32_t record_count;    /* verified records that end in this segment */
    uint32_t last_commit_xid; /* the prepared transaction's xid for COMMIT PREPARED; 0 if none */
    /* The smallest and largest transaction id committed (COMMIT: the record's top-level xid;
     * COMMIT PREPARED: the prepared transaction's), both 0 if none. Ordered as PostgreSQL orders
     * transaction ids, modulo 2^32 (a - b as a signed 32-bit number): meaningful while the
     * segment's commits span less than 2^31 ids, which PostgreSQL's wraparound limit ensures.
     * Raw values: across a wraparound commit_xid_min may be numerically above commit_xid_max. */
    uint32_t commit_xid_min, commit_xid_max;
    uint64_t
        last_commit_lsn;  /* end of the last commit record (MAXALIGNed, as PostgreSQL reports) */
    uint64_t start_lsn;   /* LSN of the segment's first byte, from its first page; 0 if unknown */
    uint32_t timeline;    /* from the first page header; 0 if unknown */
    uint32_t pg_major;    /* from the first page's magic; 0 if unknown */
    uint64_t end_lsn;     /* end of the last valid record (MAXALIGNed); 0 if none */
    uint64_t cont_len;    /* bytes at the start continuing the previous segment's last record */
    uint64_t pending_lsn; /* start of a record that runs past the segment's end; 0 if none */
    uint64_t bytes_fed;
    int complete; /* 1: the whole segment was fed and understood; 0: do not trust the above
                     as covering the whole segment (see stop and reason) */
    wv_wal_stop stop;
    char reason[128]; /* why it stopped or gave up, for a log line; "" when it read to the end */
    uint32_t rp_kept; /* restore_points[0..rp_kept), oldest first: the segment's last ones */
    wv_wal_restore_point restore_points[WV_WAL_RP_KEEP];
} wv_walinfo;

typedef struct wv_walreader wv_walreader;

/* Called for every verified restore point, in WAL order, while feeding. */
typedef void (*wv_walreader_rp_cb)(const wv_wal_restore_point *rp, void *arg);

/* segsize: the WAL segment size in bytes (a power of two, 1 MiB .. 1 GiB), or 0 to take it from the
 * segment's first page header. */
wv_walreader *wv_walreader_new(uint64_t segsize);

/* Whether WAL of this major version (see pg/walpage.h) is read, i.e. 15..18. */
bool wv_walreader_reads_major(int major);
void wv_walreader_free(wv_walreader *r);

void wv_walreader_set_rp_callback(wv_walreader *r, wv_walreader_rp_cb cb, void *arg);

/* Feed the next len bytes of the segment. Always returns 0: problems are reported by the result. */
int wv_walreader_feed(wv_walreader *r, const uint8_t *buf, size_t len);

/* What was collected so far; final once the whole segment has been fed. */
void wv_walreader_result(const wv_walreader *r, wv_walinfo *out);

/* A pass-through observer stage: feeds everything written through it to r (borrowed, not owned: it
 * must outlive the stage) and passes it on to next unchanged. */
wv_filter *wv_walreader_filter_new(wv_filter *next, wv_walreader *r);

/* CRC-32C (Castagnoli) as PostgreSQL's WAL uses it: crc = wv_wal_crc32c(0xFFFFFFFF, ...) over the
 * pieces, then crc ^ 0xFFFFFFFF. Exposed for tests that forge records. */
uint32_t wv_wal_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
