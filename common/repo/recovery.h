/*
 * recovery.h - what a point-in-time restore can reach, decided before anything is written.
 *
 * From the backups (their manifests) and the WAL archive (names, history files, and the commit
 * times wal-push recorded in each segment's trailer):
 *  - wv_recovery_windows: per timeline, the intervals of time recovery can reach: from a backup's
 *    end to the last commit replayable from it without a gap in the WAL.
 *  - wv_recovery_plan: for a target (time, LSN, xid, restore point name, immediate, or the end of
 *    the archive), the timeline and the backup to restore, or a refusal that says why and shows the
 *    recoverable windows.
 */
#ifndef WALVAULT_REPO_RECOVERY_H
#define WALVAULT_REPO_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "repo/walarchive.h"
#include "repo/backupset.h"
#include "core/error.h"
#include "storage/storage.h"

typedef struct wv_window {
    uint32_t tli;
    int64_t from_us, to_us;    /* backup end .. last reachable commit (to >= from) */
    uint64_t from_lsn, to_lsn; /* backup stop LSN .. end of reachable WAL */
    char first_backup[WV_MANIFEST_ID_MAX];
    int gap; /* the WAL after to_lsn has a gap */
    char missing[WV_WALNAME_SEGMENT_LEN];
    int64_t resume_us; /* gap: first commit after it (INT64_MIN if unknown) */
} wv_window;

int wv_recovery_windows(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                        wv_window **out, size_t *n, wv_err *err);

/* Render windows as one line ("timeline 1: A .. B; timeline 2: C .. D"), "none" if empty. */
void wv_recovery_windows_text(const wv_window *w, size_t n, char *out, size_t len);

typedef enum wv_target_kind {
    WV_TARGET_LATEST = 0, /* the end of the archive */
    WV_TARGET_TIME,
    WV_TARGET_LSN,
    WV_TARGET_XID,
    WV_TARGET_NAME,
    WV_TARGET_IMMEDIATE,
} wv_target_kind;

typedef struct wv_target {
    wv_target_kind kind;
    int64_t time_us;
    uint64_t lsn;
    uint32_t xid;
    const char *name;
} wv_target;

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
 * Choose timeline and backup for a target. timeline: WV_TLI_AUTO (the newest timeline on which
 * the target is reachable), WV_TLI_LATEST, WV_TLI_CURRENT (the backup's), or a number.
 * backup_id: NULL to choose (the newest backup that ends before the target).
 * WV_EREFUSED with the reason and the recoverable windows when the target cannot be reached.
 */
int wv_recovery_plan(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                     const wv_target *t, uint32_t timeline, const char *backup_id, wv_plan *plan,
                     wv_err *err);

#endif
