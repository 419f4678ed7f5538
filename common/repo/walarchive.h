/*
 * walarchive.h - what the WAL archive of a repository holds and what recovery can reach with it.
 *
 * wv_archive_scan lists wal/ once: the segments of every timeline (sorted), and the parsed
 * timeline history files. From that, without reading any WAL:
 *  - wv_archive_reach: following the history of a target timeline from a start LSN (a backup's
 *    start), how far recovery gets before the first missing segment.
 * The commit times wal-push records in each segment's trailer are read by the recovery facts
 * (recovery.h), one trailer per segment looked at.
 */
#ifndef WALVAULT_REPO_WALARCHIVE_H
#define WALVAULT_REPO_WALARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "storage/storage.h"
#include "pg/walname.h"

typedef struct wv_archive_tli {
    uint32_t tli;
    uint64_t *segnos; /* sorted, unique: archived segments of this timeline */
    size_t nseg;
    int has_history;        /* TLI.history archived (always false for timeline 1) */
    wv_history_entry *hist; /* its parsed entries (ancestors, oldest first) */
    size_t nhist;
} wv_archive_tli;

typedef struct wv_archive {
    uint64_t segsize;
    wv_archive_tli *tls; /* sorted by tli */
    size_t ntl;
    uint32_t max_history_tli; /* highest timeline with a history file, or 1 */
    char **rp_keys;           /* restore point objects (see WV_REPO_RP_SUFFIX) */
    size_t nrp;
} wv_archive;

int wv_archive_scan(wv_storage *st, uint64_t segsize, wv_archive **out, wv_err *err);
void wv_archive_free(wv_archive *a);

const wv_archive_tli *wv_archive_timeline(const wv_archive *a, uint32_t tli);

/* The newest timeline known (by history files or segments). */
uint32_t wv_archive_latest_tli(const wv_archive *a);

/* The timeline that wrote `lsn` on the way to target_tli, per target_tli's history. */
uint32_t wv_archive_tli_at(const wv_archive *a, uint32_t target_tli, uint64_t lsn);

/* Whether timeline `tli` lies on target_tli's history at `lsn` (or is target_tli). */
int wv_archive_on_path(const wv_archive *a, uint32_t target_tli, uint32_t tli, uint64_t lsn);

typedef struct wv_archive_reach {
    uint64_t last_segno;                  /* last segment recovery can read without a gap */
    uint32_t last_tli;                    /* the timeline it is read from */
    uint64_t end_lsn;                     /* the first LSN after last_segno */
    int gap;                              /* a later segment exists after a missing one */
    char missing[WV_WALNAME_SEGMENT_LEN]; /* the first missing segment (when gap or at end) */
    uint64_t resume_segno;                /* gap: the next segment present after the gap */
    uint32_t resume_tli;
} wv_archive_reach;

/*
 * Walk from start_lsn (on whatever timeline target_tli's history says wrote it) towards the end of
 * target_tli, segment by segment, reading each from the newest timeline that covers it (as
 * PostgreSQL does). WV_ENOTFOUND if even the segment holding start_lsn is missing (res->missing
 * names it).
 */
int wv_archive_reach_from(const wv_archive *a, uint32_t target_tli, uint64_t start_lsn,
                          wv_archive_reach *res, wv_err *err);

/* The segment (and its timeline) recovery reads for segno on the way to target_tli. */
uint32_t wv_archive_tli_for_segno(const wv_archive *a, uint32_t target_tli, uint64_t segno);

/*
 * Find a restore point by name in the archive's restore point objects. Returns 0 with the LSN of
 * its newest occurrence (and its time and timeline), WV_ENOTFOUND if no such name was archived
 * (err then lists a few names that were).
 */
int wv_archive_find_restore_point(wv_storage *st, const wv_archive *a, const char *name,
                                  uint64_t *lsn, int64_t *time_us, uint32_t *tli, wv_err *err);

#endif
