/*
 * retention.h - which backups and which WAL a retention policy keeps: a pure function over facts.
 *
 * wv_retention_apply takes the policy (core/retention_config.h), the repository's complete backups,
 * its WAL inventory per timeline, the segment size and `now`, and says for every backup whether it
 * is kept (and by which rules, and until when) or expired, and for every timeline the first segment
 * that must stay. It reads no clock and does no I/O; it allocates only the result, which
 * wv_retention_result_free releases. The expire command deletes what it says may go; `list` shows
 * the rules and the expiry times.
 *
 * The semantics, precisely (all times are the server's, in epoch seconds; days, weeks and months
 * are UTC whatever the time zone of the server or of the machine running this):
 *
 *  - Only complete backups (with a manifest) are considered. An input marked incomplete is neither
 *    kept nor expired (WV_RETENTION_IGNORED), counts for no rule, and protects no WAL: removing
 *    leftovers of interrupted backups is the caller's business. (A backup that is running starts
 *    after the newest complete backup, whose WAL from its start onwards always stays.)
 *  - Order: backup A is newer than B when A's stop time is later; equal stop times are ordered by
 *    stop LSN, then by id (byte order). "The newest complete backup" is the greatest in that order.
 *  - A backup's age is now - stop time: the moment it became restorable. Its day, ISO week and
 *    month are those of its stop time. A backup that ended at exactly 00:00:00 belongs to the day
 *    that begins then (a period includes its first second and excludes its end).
 *  - A rule of age A keeps a backup while its age <= A: the boundary is inclusive, so a backup
 *    exactly 30 days old is still inside "daily = 30d", and it expires one second later.
 *  - daily: for each UTC day, the newest complete backup ending that day, if inside daily's age.
 *    weekly: the same per ISO 8601 week (weeks start on Monday; week 1 is the week holding the
 *    year's first Thursday, so 2026-12-31 and 2027-01-01 are both in 2026-W53). monthly: per
 *    calendar month. Several backups on one day: only the newest of the day counts for daily, and
 *    only the newest of the week for weekly (which may be another day's backup).
 *  - label.PREFIX = A: a backup whose label starts with PREFIX (byte for byte) while its age <= A.
 *  - window = W: the newest backup that ended at or before now - W (the oldest complete backup if
 *    none ended that early) is kept, and with it all WAL from its start onwards, so every point of
 *    the last W stays restorable. A window shorter than the newest backup's age keeps the newest.
 *  - newest: the newest complete backup is always kept. keep: a backup taken with --keep is
 *    always kept.
 *  - No rule at all (no [retention]): every complete backup is kept (rule WV_RETENTION_RULE_NONE)
 *    and no WAL goes.
 *
 * WAL, per timeline (segments are named on a timeline; history files are never expired; a
 * backup history file NAME.backup and a NAME.partial go exactly when their segment NAME's number
 * is below the cut of its timeline: wv_retention_walname_may_go):
 *  - A kept backup B on timeline T needs T's segments from the one holding B's start LSN, and
 *    every timeline X whose history says T wrote B's start LSN (T's descendants that forked after
 *    B's start) from the segment where X begins (its fork point). Recovery from B may follow any of
 *    them, so all of it stays. A fork between B's start and stop, which recovery from B could not
 *    follow, still counts: the start decides, erring on the side of keeping.
 *  - PostgreSQL reads the segment holding a fork point from the child timeline and may fall back
 *    to the parent's copy, so the parent keeps that segment too: the parent's cut is at or below
 *    B's start, which is below the fork.
 *  - A timeline's cut (keep_from) is the lowest segment any kept backup needs on it; everything
 *    below it may go. A timeline no kept backup needs may go entirely (keep_from = UINT64_MAX).
 *    One cut per timeline: WAL between two kept backups stays, so an old `keep` backup holds all
 *    WAL of its timeline from its start on.
 *  - A timeline above 1 without its history file keeps all its WAL (its ancestry is unknown).
 *  - Without any complete backup no WAL goes: the first backup may be running.
 *
 * Invariants, checked after every computation by wv_retention_verify (a failure is WV_EINTERNAL,
 * and nothing should then be deleted): the newest complete backup is kept; every backup with
 * `keep` is kept; no segment a kept backup needs is below its timeline's cut; without a rule
 * nothing expires.
 */
#ifndef WALVAULT_REPO_RETENTION_H
#define WALVAULT_REPO_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/retention_config.h"
#include "pg/walname.h"
#include "repo/backupset.h"
#include "repo/walarchive.h"

/* One backup, as its manifest header describes it. Strings are borrowed for the call. */
typedef struct wv_retention_backup {
    const char *id;
    const char *label;             /* NULL or "" for none */
    int keep;                      /* taken with --keep */
    int complete;                  /* has a manifest; 0: ignored */
    int64_t start_time, stop_time; /* epoch seconds, server clock */
    uint64_t start_lsn, stop_lsn;
    uint32_t timeline;
} wv_retention_backup;

/* One timeline of the WAL archive. Arrays are borrowed for the call. */
typedef struct wv_retention_timeline {
    uint32_t tli;
    int has_history;              /* TLI.history archived (ignored for timeline 1) */
    const wv_history_entry *hist; /* its entries: ancestors oldest first, the parent last */
    size_t nhist;
    const uint64_t *segnos; /* archived segment numbers, sorted ascending */
    size_t nseg;
} wv_retention_timeline;

typedef struct wv_retention_input {
    const wv_retention_backup *backups;
    size_t nbackups;
    const wv_retention_timeline *timelines; /* sorted by tli, each tli once */
    size_t ntimelines;
    uint64_t segsize; /* a legal WAL segment size */
    int64_t now;      /* epoch seconds */
} wv_retention_input;

typedef enum wv_retention_rule_kind {
    WV_RETENTION_RULE_NONE = 1, /* no retention policy */
    WV_RETENTION_RULE_NEWEST,
    WV_RETENTION_RULE_KEEP,
    WV_RETENTION_RULE_WINDOW,
    WV_RETENTION_RULE_LABEL,
    WV_RETENTION_RULE_DAILY,
    WV_RETENTION_RULE_WEEKLY,
    WV_RETENTION_RULE_MONTHLY,
} wv_retention_rule_kind;

#define WV_RETENTION_RULE_TEXT_MAX 80
#define WV_RETENTION_RULES_MAX     (7 + WV_RETENTION_LABELS_MAX)
#define WV_RETENTION_FOREVER       INT64_MAX

typedef struct wv_retention_rule {
    wv_retention_rule_kind kind;
    /* "none", "newest", "keep", "window", "label pre-migration", "daily 2026-11-30",
     * "weekly 2026-W48", "monthly 2026-11" */
    char text[WV_RETENTION_RULE_TEXT_MAX];
    /* The first second this rule no longer keeps the backup if no other backup is taken;
     * WV_RETENTION_FOREVER for none, newest and keep. */
    int64_t expires_at;
} wv_retention_rule;

typedef enum wv_retention_verdict {
    WV_RETENTION_KEPT = 1,
    WV_RETENTION_EXPIRED,
    WV_RETENTION_IGNORED, /* incomplete: not this function's business */
} wv_retention_verdict;

typedef struct wv_retention_backup_result {
    wv_retention_verdict verdict;
    wv_retention_rule rules[WV_RETENTION_RULES_MAX]; /* every rule that keeps it, in kind order */
    int nrules;
    /* Kept: the first second no rule keeps it any more, if no other backup is taken
     * (WV_RETENTION_FOREVER: never). Expired or ignored: 0. */
    int64_t expires_at;
} wv_retention_backup_result;

#define WV_RETENTION_REASON_MAX 160

typedef struct wv_retention_wal_result {
    uint32_t tli;
    /* The first segment that must stay: every segment (and .partial, .backup) of this timeline
     * numbered below it may go. 0: nothing goes; UINT64_MAX: no kept backup needs the timeline. */
    uint64_t keep_from;
    size_t nexpire; /* archived segments below keep_from */
    /* "backup 20261101T010000Z starts in 000000010000000000000012", "timeline 1 forks at ...",
     * "no kept backup needs timeline 3", "no history file: ancestry unknown", "no retention
     * policy" */
    char reason[WV_RETENTION_REASON_MAX];
} wv_retention_wal_result;

typedef struct wv_retention_result {
    int has_policy;                      /* the policy has a rule */
    wv_retention_backup_result *backups; /* one per input backup, same order */
    size_t nbackups;
    wv_retention_wal_result *timelines; /* one per input timeline, same order */
    size_t ntimelines;
    size_t *order; /* indices of the complete input backups, oldest first (newest last) */
    size_t norder;
    size_t nkept, nexpired, nignored;
} wv_retention_result;

/*
 * Apply the policy. Returns 0 with *out filled, WV_EUSAGE for inconsistent input (bad segment
 * size, timelines unsorted or repeated, a backup that stops before it starts, empty or repeated
 * ids), WV_EINTERNAL if an invariant does not hold. On failure *out holds nothing to free.
 */
int wv_retention_apply(const wv_retention_policy *policy, const wv_retention_input *in,
                       wv_retention_result *out, wv_err *err);

void wv_retention_result_free(wv_retention_result *r);

/*
 * Check the invariants of a result against its input, restated directly (wv_retention_apply runs
 * it before returning; expire runs it again before deleting anything): the newest complete backup
 * and every `keep` backup kept, incomplete ones ignored, no segment a kept backup reads below its
 * timeline's cut, nothing expired without a rule, no WAL expired without a complete backup or on a
 * timeline of unknown ancestry. 0, or WV_EINTERNAL naming the first violation.
 */
int wv_retention_verify(const wv_retention_policy *policy, const wv_retention_input *in,
                        const wv_retention_result *r, wv_err *err);

/* Whether segment segno of timeline tli may go by this result (timelines not in it: no). */
int wv_retention_segment_may_go(const wv_retention_result *r, uint32_t tli, uint64_t segno);

/*
 * Whether the archived WAL file `name` may go: a segment, a .partial or a .backup file when its
 * segment is below its timeline's cut; a history file, a name of another kind or size, or a
 * timeline not in the result: never.
 */
int wv_retention_walname_may_go(const wv_retention_result *r, const char *name, uint64_t segsize);

/* The rule texts of a backup result joined with ", " ("daily 2026-11-30, weekly 2026-W48"). */
void wv_retention_rules_text(const wv_retention_backup_result *b, char *out, size_t outlen);

/* ---- adapters from what the repository modules load ------------------------------------------ */

/* One wv_retention_backup per backup of the set (all complete), borrowing its strings. The array
 * is the caller's to free(). */
wv_retention_backup *wv_retention_backups_from_set(const wv_backupset *set);

/* One wv_retention_timeline per timeline of the archive, borrowing its arrays. The array is the
 * caller's to free(). */
wv_retention_timeline *wv_retention_timelines_from_archive(const wv_archive *a);

#endif
