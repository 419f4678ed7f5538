/*
 * lag.h - what a `required = no` repository lacks, and WAL dropped by archive_queue_max: durable
 * records in the cluster's spool (repo/spool.h).
 *
 *   <cluster>/lag/<repo name>/<file name>   the file could not be stored in that repository
 *   <cluster>/lag/<repo name>/.backoff      when catching up may be tried next
 *   <cluster>/dropped/<file name>           the segment was dropped without archiving
 *
 * A record is a small text file, written to a temp file, fsynced and renamed into place:
 *
 *     walvault-lag 1
 *     time 1764680000          (seconds since the epoch: when the failure was first recorded)
 *     size 16777216            (bytes of the file)
 *     error <one line>         (why: the repository's error message)
 *
 * A backoff file holds "next <seconds since the epoch>\ndelay <seconds>\n": after a failed catch-up
 * the next attempt waits `delay` (WV_LAG_BACKOFF_MIN doubling up to WV_LAG_BACKOFF_MAX), so a
 * repository that is down costs one quick failed attempt per period, not one per segment.
 */
#ifndef WALVAULT_REPO_LAG_H
#define WALVAULT_REPO_LAG_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

#define WV_LAG_NAME_MAX    64
#define WV_LAG_ERROR_MAX   512
#define WV_LAG_BACKOFF_MIN 5
#define WV_LAG_BACKOFF_MAX 300

typedef struct wv_lag_entry {
    char name[WV_LAG_NAME_MAX]; /* the WAL file name */
    int64_t time;
    uint64_t size;
    char error[WV_LAG_ERROR_MAX];
} wv_lag_entry;

typedef struct wv_lag_list {
    wv_lag_entry *e; /* sorted by name: oldest WAL first */
    size_t n;
} wv_lag_list;

/* Set e->error from msg (cut to fit). */
void wv_lag_set_error(wv_lag_entry *e, const char *msg);

/* The text of a record (pure). */
void wv_lag_format(const wv_lag_entry *e, wv_buf *out);

/* Parse a record's text; name is the file name it was stored under. 0, or WV_ECORRUPT. */
int wv_lag_parse(const char *text, size_t len, const char *name, wv_lag_entry *e, wv_err *err);

/* Record (replace) name in <cluster>/<kind>/<repo>/ ("lag", repo) or <cluster>/dropped/ (kind
 * "dropped", repo NULL), durably. A record already there keeps its first time. */
int wv_lag_add(const char *cluster_dir, const char *kind, const char *repo, const wv_lag_entry *e,
               wv_err *err);

/* Remove a record (absent is fine), durably. */
int wv_lag_remove(const char *cluster_dir, const char *kind, const char *repo, const char *name,
                  wv_err *err);

/* Every record of a directory (absent: none). Unreadable records are skipped with a warning. */
int wv_lag_load(const char *cluster_dir, const char *kind, const char *repo, wv_lag_list *out,
                wv_err *err);
void wv_lag_list_free(wv_lag_list *l);

/* Totals of a list: files, bytes and the time of the oldest record (0 when empty). */
void wv_lag_summary(const wv_lag_list *l, size_t *files, uint64_t *bytes, int64_t *oldest);

/* archive_queue_max: the bytes of WAL waiting to be archived, `ready` segments of segsize bytes
 * (archive_status/\*.ready) plus the file being pushed (cur bytes) when it has no .ready of its
 * own counted, and whether that exceeds max (0: off). Pure. */
uint64_t wv_lag_queue_bytes(uint64_t ready, uint64_t segsize, uint64_t cur, int cur_counted);
int wv_lag_queue_exceeded(uint64_t queued, uint64_t max);

/* The text of a gap object (<repo>/gaps/<name>): "walvault-gap 1\ntime T\nreason R\n". */
void wv_lag_gap_format(int64_t time, const char *reason, wv_buf *out);

/* The delay after a failed attempt, given the previous delay (0: none before). Pure. */
int64_t wv_lag_backoff_next(int64_t prev_delay);

/* The backoff state of a repository; absent or unreadable: *next = *delay = 0. */
void wv_lag_backoff_load(const char *cluster_dir, const char *repo, int64_t *next, int64_t *delay);
int wv_lag_backoff_store(const char *cluster_dir, const char *repo, int64_t next, int64_t delay,
                         wv_err *err);
void wv_lag_backoff_clear(const char *cluster_dir, const char *repo);

#endif
