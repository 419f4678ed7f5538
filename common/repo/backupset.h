/*
 * backupset.h - the backups of a repository: every backup/<id>/ that has a manifest, with its
 * header, sorted oldest first (by stop LSN, then stop time). A directory without a manifest is an
 * interrupted or expiring backup and is not a backup.
 *
 * The keep flag. A backup's manifest records keep=0|1 as the backup was taken (--keep). `basebackup
 * keep --backup ID on|off` changes it afterwards without touching the manifest, which stays
 * immutable (rewriting it would open a moment, on a store without atomic rename of a replaced
 * object, where the backup has no manifest and is not a backup at all): it writes one small marker
 * object backup/<id>/keep holding "on\n" or "off\n", replaced atomically by the driver's commit
 * (the one object of a repository that is replaced; it names nothing and holds no data). When the
 * marker exists it decides; without it the manifest's flag does. wv_backupset_load applies it to
 * h.keep, so list, restore, verify and the retention policy all see the same flag; sync copies the
 * marker with the backup. A crash while writing leaves the old marker or the new one, never half
 * of one; a marker without a manifest belongs to a leftover and goes with it.
 */
#ifndef WALVAULT_REPO_BACKUPSET_H
#define WALVAULT_REPO_BACKUPSET_H

#include <stddef.h>

#include "core/error.h"
#include "repo/manifest.h"
#include "storage/storage.h"

typedef struct wv_backup {
    wv_manifest_header h; /* h.keep: the marker's flag if there is one, else the manifest's */
    wv_manifest_totals totals;
    int manifest_keep; /* the manifest's own keep flag */
    int keep_marker;   /* 1: backup/<id>/keep exists and set h.keep */
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

/*
 * Remove every object of backup id: its manifest first (from then on it is no backup, only a
 * leftover, so a crash midway never leaves a half-deleted backup that lists as valid), then its
 * other objects with wv_storage_remove_many (batches of WV_BACKUP_REMOVE_BATCH), its lock last.
 * *nremoved (may be NULL) counts the objects removed.
 */
#define WV_BACKUP_REMOVE_BATCH 1000
int wv_backup_remove(wv_storage *st, const char *id, wv_err *err);
int wv_backup_remove_counted(wv_storage *st, const char *id, size_t *nremoved, wv_err *err);

/*
 * Remove every leftover of st. Each is noted ("REPO: removing the leftovers of ...": on a terminal
 * and in the log file, never on cron's stderr) and recorded for status: WV_BACKUP_CLEANED_KEY holds
 * "ID EPOCH\n" of the newest clean-up (a raw object like the locks, replaced each time; EPOCH is this
 * machine's clock). A record that cannot be written does not fail the clean-up.
 */
#define WV_BACKUP_CLEANED_KEY "state/cleaned-up"
int wv_backup_cleanup_leftovers(wv_storage *st, wv_err *err);

/* The newest clean-up recorded in st: 1 (id and *when set), 0 when there is none (or unreadable). */
int wv_backup_cleaned_read(wv_storage *st, char *id, size_t idlen, int64_t *when);

/* ---- the keep marker (see the top of this file) ---------------------------------------------- */

#define WV_BACKUP_KEEP_NAME "keep"

void wv_backup_keep_key(const char *id, char *out, size_t outlen);

/* Read backup id's marker: 1 with *keep set when it exists, 0 when it does not, or an error (a
 * marker that holds neither "on" nor "off" is WV_ECORRUPT). */
int wv_backup_keep_read(wv_storage *st, const char *id, int *keep, wv_err *err);

/* Write backup id's marker (replacing the old one atomically). */
int wv_backup_keep_write(wv_storage *st, const char *id, int keep, wv_err *err);

/*
 * The repository lock of expire (and of delete and keep, which change what expire decides).
 *
 * WV_REPO_LOCK_KEY ("expire.lock", at the top of the repository) is created with
 * WV_PUT_NOREPLACE, holding "PID HOST EPOCH\n" like a backup lock, and removed at the end. A second
 * expire, delete or keep finds it and is refused (WV_EEXIST, naming the holder) while it is alive
 * by the rules of wv_backup_lock_alive; a dead holder's lock (kill -9) is taken over.
 *
 * Backups are not excluded: a running backup holds backup/<id>/backup.lock, which makes its
 * directory no leftover, and its WAL starts after the start of the newest complete backup, from
 * which all WAL always stays. A backup that completes while expire runs only makes older backups
 * expirable, never fewer backups kept, so expire re-reads the set once under its lock and deletes
 * what that reading says. wal-push writes only newer WAL than any cut.
 */
#define WV_REPO_LOCK_KEY "expire.lock"

/* Take the lock for `what` ("expire", "delete", "keep": named in messages). */
int wv_repo_lock_acquire(wv_storage *st, const char *what, wv_err *err);
void wv_repo_lock_release(wv_storage *st);

#endif
