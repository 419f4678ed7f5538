/*
 * log.h - one line per event on stderr, which PostgreSQL captures for archive_command and
 * restore_command. Each line starts with the program name ("wal-push: ") and is complete on its own.
 * Messages never contain secrets: callers log object names, never keys or credentials.
 */
#ifndef WALVAULT_CORE_LOG_H
#define WALVAULT_CORE_LOG_H

#include "core/error.h"

typedef enum wv_log_level {
    WV_LOG_ERROR = 0,
    WV_LOG_WARN = 1,
    WV_LOG_INFO = 2,
    WV_LOG_DEBUG = 3,
} wv_log_level;

/* Set once in main(): the prefix of every line and the most verbose level printed. */
void wv_log_init(const char *progname, wv_log_level level);
void wv_log_set_level(wv_log_level level);
wv_log_level wv_log_get_level(void);
const char *wv_log_progname(void);

/* Parse "error", "warn", "info", "debug". Returns 0 or -1. */
int wv_log_level_parse(const char *s, wv_log_level *out);

void wv_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wv_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wv_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wv_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Print a recorded error: "PROG: error: MSG" and, when there is one, "PROG: error: hint: HINT".
 * The first line alone is complete; the hint tells the operator what to do next.
 */
void wv_log_err(const wv_err *err);

#endif
