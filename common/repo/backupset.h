/*
 * backupset.h - the backups of a repository: every backup/<id>/ that has a manifest, with its
 * header, sorted oldest first (by stop LSN, then stop time). A directory without a manifest is an
 * interrupted or expiring backup and is not a backup.
 */
#ifndef WALVAULT_REPO_BACKUPSET_H
#define WALVAULT_REPO_BACKUPSET_H

#include <stddef.h>

#include "core/error.h"
#include "repo/manifest.h"
#include "storage/storage.h"

typedef struct wv_backup {
    wv_manifest_header h;
    wv_manifest_totals totals;
} wv_backup;

typedef struct wv_backupset {
    wv_backup *b;
    size_t n;
    char **orphans; /* backup ids without a manifest */
    size_t norphans;
} wv_backupset;

/* Load every backup's manifest header and totals (one manifest read per backup). */
int wv_backupset_load(wv_storage *st, wv_backupset *out, wv_err *err);
void wv_backupset_free(wv_backupset *set);

/* Every backup must be of the repository's cluster: WV_ECORRUPT ("REPO: backup ID: its manifest
 * is of database system X, the repository's is Y") for the first manifest whose system identifier
 * or WAL segment size is not the repository's (walvault.repo). */
int wv_backupset_check_cluster(const wv_backupset *set, const char *repo, uint64_t system_id,
                               uint64_t wal_segsize, wv_err *err);

/* The backup with this id, or NULL. */
const wv_backup *wv_backupset_find(const wv_backupset *set, const char *id);

/*
 * The lock of a running backup and the leftovers of interrupted ones.
 *
 * A backup writes backup/<id>/backup.lock ("PID HOST EPOCH\n") before any other object of it and
 * removes it after its manifest. A backup directory without a manifest is a leftover unless its
 * lock is alive: held by a running process of this host, or written by another host less than
 * WV_BACKUP_STALE_LOCK_SECONDS ago (its processes cannot be asked).
 */
#define WV_BACKUP_LOCK_NAME          "backup.lock"
#define WV_BACKUP_STALE_LOCK_SECONDS (24 * 3600)

/* The key of backup id's lock. */
void wv_backup_lock_key(const char *id, char *out, size_t outlen);

/* Take the lock of backup id in one repository: WV_EEXIST if that backup already has a lock or a
 * manifest (err then says which), another error if the lock could not be written. */
int wv_backup_lock_acquire(wv_storage *st, const char *id, wv_err *err);

/* Choose a unique id (the time, "YYYYMMDDTHHMMSSZ", the next second if taken) and take its lock in
 * every repository st[0..n); on failure no lock of this run is left. */
int wv_backup_lock_take(wv_storage *const *st, int n, char *id, size_t idlen, wv_err *err);

/* Remove the lock of backup id from every repository (best effort). */
void wv_backup_lock_release(wv_storage *const *st, int n, const char *id);

/* Is the lock of backup id alive (see above)? A missing or unreadable lock is not. */
int wv_backup_lock_alive(wv_storage *st, const char *id);

/* The ids of the leftovers in st (sorted as listed); the caller frees each and the array. */
int wv_backup_leftovers(wv_storage *st, char ***ids, size_t *n, wv_err *err);

/* Remove every object of backup id, the lock last. */
int wv_backup_remove(wv_storage *st, const char *id, wv_err *err);

/* Remove every leftover of st, logging each ("REPO: removing the leftovers of ..."). */
int wv_backup_cleanup_leftovers(wv_storage *st, wv_err *err);

#endif
