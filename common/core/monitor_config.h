/*
 * monitor_config.h - the [monitor] section of walvault.conf: the thresholds of `basebackup status`
 * and the deadline of `basebackup check`.
 *
 *     [monitor]
 *     backup_max_age = 26h     # critical when the newest complete backup is older (default 26h)
 *     backup_warn_age = 25h    # warning when it is older (default 25h)
 *     wal_max_age = 1h         # critical when nothing was archived for longer while the server
 *                              # writes (default 1h)
 *     wal_warn_age = 15m       # warning (default 15m)
 *     check_timeout = 60s      # how long check waits for the switched WAL in every repository
 *                              # (default: [global] archive_timeout, itself 60 s by default)
 *
 * A duration here is a positive integer immediately followed by one unit: s, m (60 s), h or d, at
 * most 365d. A warning age must be below its critical age (else the warning would never show).
 *
 * config.c calls wv_monitor_config_key for each key of [monitor] and wv_monitor_config_check once
 * at the end; messages come back without the "file:line: " config.c puts in front of them.
 */
#ifndef WALVAULT_CORE_MONITOR_CONFIG_H
#define WALVAULT_CORE_MONITOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WV_MONITOR_AGE_MAX (INT64_C(365) * 86400)

enum wv_monitor_key {
    WV_MONITOR_KEY_BACKUP_MAX_AGE,
    WV_MONITOR_KEY_BACKUP_WARN_AGE,
    WV_MONITOR_KEY_WAL_MAX_AGE,
    WV_MONITOR_KEY_WAL_WARN_AGE,
    WV_MONITOR_KEY_CHECK_TIMEOUT,
    WV_MONITOR_KEY_COUNT
};

typedef struct wv_monitor_config {
    int line;                           /* line of [monitor]; 0: absent (defaults apply) */
    int key_line[WV_MONITOR_KEY_COUNT]; /* where each key was set; 0: default */
    int64_t backup_max_age;             /* seconds */
    int64_t backup_warn_age;            /* seconds */
    int64_t wal_max_age;                /* seconds */
    int64_t wal_warn_age;               /* seconds */
    int64_t check_timeout;              /* seconds; 0: use archive_timeout */
} wv_monitor_config;

/* The defaults above (check_timeout 0). */
void wv_monitor_config_init(wv_monitor_config *m);

/* "90s", "15m", "26h", "2d" -> seconds. 0, or WV_ECONFIG with *out untouched. */
int wv_monitor_duration_parse(const char *s, int64_t *out);

/* Seconds as the largest unit that divides them ("26h", "15m", "90s"). */
void wv_monitor_duration_format(int64_t seconds, char *out, size_t outlen);

/* One key of [monitor]. Returns 0, or WV_ECONFIG with err->msg (no file:line) and perhaps a hint. */
int wv_monitor_config_key(wv_monitor_config *m, const char *key, const char *value, int line,
                          wv_err *err);

/* After the whole file: each warning age below its critical age. On failure *line names the line. */
int wv_monitor_config_check(const wv_monitor_config *m, int *line, wv_err *err);

#endif
