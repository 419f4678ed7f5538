/*
 * lag.h - wal-push and repositories with `required = no`.
 *
 * A failure there does not fail the push: the file is recorded as lacking in that repository
 * (repo/lag.h, in the cluster's spool) and the repository enters backoff. Each later push first
 * catches up a bounded part of the backlog of repositories whose backoff has passed (oldest file
 * first, at most WV_CATCHUP_FILES files or WV_CATCHUP_SECONDS seconds), copying each object
 * repository to repository (verified, repo/objcopy.h) from one that holds it: the file may be
 * long gone from pg_wal. While a repository is in backoff, pushes do not try it at all: they
 * record the file as lacking there at once.
 */
#ifndef WALVAULT_ARCHIVE_LAG_H
#define WALVAULT_ARCHIVE_LAG_H

#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

#define WV_CATCHUP_FILES   64
#define WV_CATCHUP_SECONDS 10

/* Whether any repository of cfg has required = no. */
int wv_push_has_optional(const wv_config *cfg);

/* 1 when rc's backoff has not passed at `now` (*next: when it does), else 0. */
int wv_push_in_backoff(const char *cluster_dir, const wv_repo_config *rc, int64_t now,
                       int64_t *next);

/* Record that rc lacks the file `name` of `size` bytes, because of `why`; start or lengthen the
 * backoff when tried is set (the repository was tried and failed). Logged as a warning. */
int wv_push_record_lag(const char *cluster_dir, const wv_repo_config *rc, const char *name,
                       uint64_t size, const wv_err *why, int tried, wv_err *err);

/* rc holds `name` now: its record (if any) goes, and its backoff ends. */
void wv_push_lag_resolved(const char *cluster_dir, const wv_repo_config *rc, const char *name);

/* Catch up the backlog of every lagging repository whose backoff has passed. Never fails the
 * push: what could not be copied stays recorded (and is logged). */
void wv_push_catch_up(const wv_config *cfg, const char *cluster_dir);

/*
 * archive_queue_max, the last resort: the push of segment `name` (path, size bytes, of cluster
 * sysid) failed with `why`; if the WAL waiting to be archived (archive_status/\*.ready beside
 * path, times the segment size, plus this file unless its .ready is counted) exceeds the limit,
 * the segment is dropped: an error-level line, a notify event "wal-drop", a record
 * <spool>/dropped/<name> and a gap object gaps/<name> in every reachable repository. Returns 1
 * when dropped (the push reports success), 0 when not (below the limit, off, or no gap record
 * could be written anywhere: then the push fails as it would have).
 */
int wv_push_queue_drop(const wv_config *cfg, const char *path, const char *name, uint64_t size,
                       uint64_t segsize, uint64_t sysid, const wv_err *why);

#endif
