/*
 * recovery.h - what a point-in-time restore can reach, decided before anything is written.
 *
 * Two steps, so that the decision can be tested with a table of facts and no repository:
 *  - wv_recovery_facts_gather (I/O): the facts a decision may need. The archive inventory (segment
 *    names, parsed history files) and the backups (their manifest headers) are loaded by the
 *    caller; the gather step resolves a restore point name and provides two lazy, memoized look-ups
 *    behind a callback table: the commit times wal-push recorded in one segment's trailer, and the
 *    next transaction id in a backup's pg_control. They stay lazy because reading every trailer or
 *    every backup's manifest up front costs one read per archived segment or backup, where a
 *    decision usually needs a handful.
 *  - the pure decisions over those facts:
 *      wv_recovery_windows: per timeline, the intervals of time recovery can reach: from a backup's
 *        end to the last commit replayable from it without a gap in the WAL.
 *      wv_recovery_decide: for a target (time, LSN, xid, restore point name, immediate, or the end
 *        of the archive), the timeline and the backup to restore, or a refusal that says why and
 *        shows the recoverable windows.
 *    They do no I/O of their own: everything they learn comes from the facts (the callbacks may
 *    fail, so they still return an error code).
 *
 * Timeline choice without --timeline: the timeline that holds the target. When the archive holds
 * timelines that part (a fork) and the target is past the point where they part on more than one of
 * them (both continue past the fork), the decision refuses to guess and names each timeline with
 * its newest commit. Commit times are known per segment, so "past the fork" is decided per segment:
 * a time target is unambiguous when no commit at or before it lies in or after the segment where
 * the timelines part; an LSN target when it is before the LSN where they part; the end of the
 * archive when only one of the timelines has commits in or after that segment that the other does
 * not share. A transaction id target likewise, and when both have such commits, by the ranges of
 * committed transaction ids wal-push records per segment (repo/xidrange.h): the timeline whose
 * segments past the fork hold the id in their range, while the other's ranges (all of them
 * recorded) do not. When both hold it (after a fork both timelines assign the same ids, to
 * different transactions), neither does, or a range is missing, the decision refuses as above.
 */
#ifndef WALVAULT_REPO_RECOVERY_H
#define WALVAULT_REPO_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "repo/walarchive.h"
#include "repo/backupset.h"
#include "core/error.h"
#include "pg/walname.h"
#include "storage/storage.h"

/* ---- facts ----------------------------------------------------------------------------------- */

/* The commits recorded in one archived segment's trailer, in WAL order; with segment_xids also
 * the range of their transaction ids that wal-push recorded beside it (repo/xidrange.h). */
typedef struct wv_segment_commits {
    uint32_t count;
    int64_t first_us, last_us; /* INT64_MIN when count is 0 */
    int xid_known;             /* 1: xid_min .. xid_max (modulo 2^32) hold every committed id */
    uint32_t xid_min, xid_max;
} wv_segment_commits;

typedef struct wv_recovery_facts_ops {
    /* The commits of the archived segment segno of timeline tli (the segment object itself, not a
     * path to a target timeline). WV_ENOTFOUND if the segment is not archived. */
    int (*segment_commits)(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                           wv_err *err);
    /* The next transaction id (32 bits) of the checkpoint in backup b's pg_control, 0 when
     * unknown: every transaction id at or above it was assigned after the backup's checkpoint. */
    int (*backup_next_xid)(void *arg, const wv_backup *b, uint32_t *xid, wv_err *err);
    /* As segment_commits, and the segment's range of committed transaction ids: xid_known 0 when
     * none is recorded (a segment archived before ranges were, or a malformed range object,
     * which is ignored with a warning). Asked only for the segments past the point where two
     * timelines part, for a transaction id target. NULL: no range is known. */
    int (*segment_xids)(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                        wv_err *err);
} wv_recovery_facts_ops;

typedef struct wv_recovery_facts {
    const wv_archive *archive;   /* segments and history per timeline, restore point objects */
    const wv_backupset *backups; /* oldest first */
    const wv_recovery_facts_ops *ops;
    void *arg; /* for ops */
    /* A restore point target (gathered for WV_TARGET_NAME only): found, or rp_err says why not
     * (it lists the names that were archived). */
    int rp_found;
    uint64_t rp_lsn;
    int64_t rp_time_us;
    uint32_t rp_tli; /* the timeline of the segment that holds it */
    wv_err rp_err;
    /* Segments archive_queue_max dropped (the repository's gaps/ objects, see repo/repo.h): a
     * gap there is said to be one that no retry fills. Borrowed, ndropped entries. */
    const char (*dropped)[WV_WALNAME_SEGMENT_LEN];
    size_t ndropped;
    void *priv; /* the gather step's memo */
} wv_recovery_facts;

typedef struct wv_target wv_target;

/*
 * Facts about archive a and backups bs of storage st for target t (NULL: windows only). a and bs
 * are borrowed and must outlive the facts. Errors are those of reading the repository; a restore
 * point that is not archived is not an error here (see rp_err).
 */
int wv_recovery_facts_gather(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                             const wv_target *t, wv_recovery_facts *f, wv_err *err);
void wv_recovery_facts_free(wv_recovery_facts *f);

/* How many segment trailers and backup control files the gather step's look-ups have read. */
void wv_recovery_facts_reads(const wv_recovery_facts *f, uint64_t *trailers, uint64_t *controls);

/* ---- windows --------------------------------------------------------------------------------- */

typedef struct wv_window {
    uint32_t tli;
    int64_t from_us, to_us;    /* backup end .. last reachable commit (to >= from) */
    uint64_t from_lsn, to_lsn; /* backup stop LSN .. end of reachable WAL */
    char first_backup[WV_MANIFEST_ID_MAX];
    int gap; /* the WAL after to_lsn has a gap */
    char missing[WV_WALNAME_SEGMENT_LEN];
    int64_t resume_us; /* gap: first commit after it (INT64_MIN if unknown) */
} wv_window;

int wv_recovery_windows(const wv_recovery_facts *f, wv_window **out, size_t *n, wv_err *err);

/* Render windows as one line ("timeline 1: A .. B; timeline 2: C .. D"), "none" if empty. */
void wv_recovery_windows_text(const wv_window *w, size_t n, char *out, size_t len);

/* ---- the decision ---------------------------------------------------------------------------- */

typedef enum wv_target_kind {
    WV_TARGET_LATEST = 0, /* the end of the archive */
    WV_TARGET_TIME,
    WV_TARGET_LSN,
    WV_TARGET_XID,
    WV_TARGET_NAME,
    WV_TARGET_IMMEDIATE,
} wv_target_kind;

struct wv_target {
    wv_target_kind kind;
    int64_t time_us;
    uint64_t lsn;
    uint32_t xid;
    const char *name;
};

#define WV_TLI_AUTO    0
#define WV_TLI_LATEST  UINT32_MAX
#define WV_TLI_CURRENT (UINT32_MAX - 1)

typedef struct wv_plan {
    const wv_backup *backup;
    uint32_t tli;         /* recovery_target_timeline to write */
    char tli_reason[256]; /* why this timeline */
    wv_archive_reach reach;
    int64_t last_commit_us; /* last reachable commit on the chosen path (INT64_MIN if none) */
} wv_plan;

/*
 * Choose timeline and backup for a target. timeline: WV_TLI_AUTO (the timeline that holds the
 * target, see above; the backup's own for --immediate), WV_TLI_LATEST, WV_TLI_CURRENT (the
 * backup's), or a number. backup_id: NULL to choose (the newest backup that ends before the
 * target). WV_EREFUSED with the reason and the recoverable windows when the target cannot be
 * reached, or is ambiguous between timelines.
 */
int wv_recovery_decide(const wv_recovery_facts *f, const wv_target *t, uint32_t timeline,
                       const char *backup_id, wv_plan *plan, wv_err *err);

#endif
