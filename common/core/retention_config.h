/*
 * retention_config.h - the [retention] section of walvault.conf and its per-repository overrides.
 *
 *     [retention]
 *     daily = 30d                   # the newest backup of each UTC day, for 30 days
 *     weekly = 90d                  # the newest of each ISO week, for 90 days
 *     monthly = 365d                # the newest of each calendar month (UTC), for a year
 *     label.pre-migration = 90d     # backups whose label starts with "pre-migration"
 *     window = 7d                   # every point of the last 7 days stays restorable
 *     after_backup = yes            # backup runs expire when it has finished (default no)
 *
 *     [repo2]
 *     retention.daily = 90d         # replaces that one key for repo2 only
 *
 * A duration is a positive integer immediately followed by one unit: h (hour), d (day, 86400 s),
 * w (week, 7 days) or y (year, exactly 365 days: no leap days, no calendar), at most 100 years.
 * Nothing else is accepted: no blank between number and unit, no upper case, no fraction, no sign,
 * no second unit ("1d12h"). after_backup takes yes or no (on, off).
 * Label prefixes are compared byte for byte (case matters), at most WV_RETENTION_PREFIX_MAX - 1
 * bytes without blanks; at most WV_RETENTION_LABELS_MAX label rules apply to a repository.
 *
 * A [retention] section must hold at least one rule (daily, weekly, monthly, window or a label):
 * an empty one would expire every backup but the newest, which is never what was meant. Likewise a
 * repository whose overrides leave it with no rule at all is refused. Without [retention] and
 * without overrides a repository has no policy and expire removes nothing.
 *
 * config.c calls in here for each key of [retention] and each "retention.KEY" of [repoN], and once
 * at the end of the parse (wv_retention_config_check); messages come back without the
 * "file:line: " that config.c puts in front of them.
 */
#ifndef WALVAULT_CORE_RETENTION_CONFIG_H
#define WALVAULT_CORE_RETENTION_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WV_RETENTION_UNSET      INT64_C(-1) /* a rule that is not configured */
#define WV_RETENTION_LABELS_MAX 16
#define WV_RETENTION_PREFIX_MAX 64
#define WV_RETENTION_AGE_MAX    (INT64_C(100) * 365 * 86400) /* 100y */
#define WV_RETENTION_MAX_REPOS  8                            /* = WV_MAX_REPOS */

typedef struct wv_retention_label {
    char prefix[WV_RETENTION_PREFIX_MAX]; /* non-empty */
    int64_t age;                          /* seconds */
} wv_retention_label;

/* One repository's policy: ages in seconds, or WV_RETENTION_UNSET. Plain data, nothing to free. */
typedef struct wv_retention_policy {
    int64_t daily, weekly, monthly;
    int64_t window;
    wv_retention_label labels[WV_RETENTION_LABELS_MAX];
    int nlabels;
    int after_backup; /* 0 or 1 */
} wv_retention_policy;

/* The keys of a policy, as config lines see them ("label.PREFIX" apart). */
enum wv_retention_key {
    WV_RETENTION_KEY_DAILY,
    WV_RETENTION_KEY_WEEKLY,
    WV_RETENTION_KEY_MONTHLY,
    WV_RETENTION_KEY_WINDOW,
    WV_RETENTION_KEY_AFTER_BACKUP,
    WV_RETENTION_KEY_COUNT
};

/* The keys one place of the file sets: [retention] itself, or the retention.* keys of a [repoN]. */
typedef struct wv_retention_keys {
    int line;                                /* [retention] or the first retention.* key; 0: none */
    int key_line[WV_RETENTION_KEY_COUNT];    /* where each key was set; 0: not set */
    int label_line[WV_RETENTION_LABELS_MAX]; /* where p.labels[i] was set */
    wv_retention_policy p;                   /* the values; only keys set here mean anything */
} wv_retention_keys;

typedef struct wv_retention_config {
    wv_retention_keys global;                       /* [retention] */
    wv_retention_keys repo[WV_RETENTION_MAX_REPOS]; /* by N - 1 of [repoN] */
} wv_retention_config;

/* A policy with every rule unset and after_backup off. */
void wv_retention_policy_init(wv_retention_policy *p);

/* Whether any rule (tier, window, label) is set: without one nothing ever expires. */
int wv_retention_policy_has_rules(const wv_retention_policy *p);

/*
 * Parse a duration ("30d", see above) into seconds. Returns 0, or WV_ECONFIG with *out untouched
 * (the caller names the file, line and key).
 */
int wv_retention_duration_parse(const char *s, int64_t *out);

/* Format seconds as the largest unit that divides them ("90d", "2w", "1y", "36h", "100s"). */
void wv_retention_duration_format(int64_t seconds, char *out, size_t outlen);

/*
 * One key: `key` without the "retention." of a repository section; `section` names the section
 * in messages ("retention", "repo2"), `prefixed` says whether the file spelt the key with
 * "retention." (messages quote the key as written). Returns 0 or WV_ECONFIG with err->msg (no
 * file:line) and perhaps a hint.
 */
int wv_retention_config_key(wv_retention_keys *k, const char *section, int prefixed,
                            const char *key, const char *value, int line, wv_err *err);

/*
 * After the whole file: a [retention] without rules, or a repository left without rules or with
 * too many labels by its overrides. On failure *line is the line to name.
 */
int wv_retention_config_check(const wv_retention_config *rc, int *line, wv_err *err);

/*
 * The policy of repository [repoN] (index N): [retention], then its overrides, each replacing the
 * one key it names (a label override replaces that prefix's age or adds the prefix). Returns 1 when
 * the repository has a policy (some rule is set), 0 when it has none (*out then has no rules).
 */
int wv_retention_config_for_repo(const wv_retention_config *rc, int index,
                                 wv_retention_policy *out);

#endif
