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

/* The backup with this id, or NULL. */
const wv_backup *wv_backupset_find(const wv_backupset *set, const char *id);

#endif
