/*
 * log.h - one line per event on stderr, which PostgreSQL captures for archive_command and
 * restore_command. Each line starts with the program name ("wal-push: ") and is complete on its own.
 * Messages never contain secrets: callers log object names, never keys or credentials.
 *
 * Timestamps: a line may start with the UTC time in ISO 8601, "2026-12-02T12:00:00Z basebackup:
 * error: ...". Lines appended to the log file ([global] log_file) always carry it. On stderr it is
 * switched on by the program: wal-push and wal-fetch never (PostgreSQL prefixes its own), basebackup
 * when wv_log_stderr_wants_timestamps() says so (stderr is neither a terminal nor the systemd
 * journal, which stamps lines itself: cron mail, a redirection to a file).
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

/* Timestamps on stderr (off by default). */
void wv_log_set_stderr_timestamps(int on);
/* 1 when stderr is not a terminal and not the systemd journal ($JOURNAL_STREAM names fd 2). */
int wv_log_stderr_wants_timestamps(void);

/* Whether stderr is a terminal: taken by wv_log_init (isatty(2)); settable for tests. */
void wv_log_set_terminal(int on);
int wv_log_terminal(void);

/*
 * Also append every line printed from now on to PATH (created 0640, O_APPEND, one write(2) per
 * line, so that concurrent processes do not interleave). A file that cannot be opened is a warning
 * on stderr and logging goes on without it. Opening another file closes the previous one; NULL
 * closes it.
 */
void wv_log_open_file(const char *path);

/* Parse "error", "warn", "info", "debug". Returns 0 or -1. */
int wv_log_level_parse(const char *s, wv_log_level *out);

void wv_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wv_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wv_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wv_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * An info line for whoever watches: on stderr only when it is a terminal (or at level debug), so
 * that a job under cron stays silent; always in the log file (at level info or above).
 */
void wv_log_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Print a recorded error: "PROG: error: MSG" and, when there is one, "PROG: error: hint: HINT".
 * The first line alone is complete; the hint tells the operator what to do next.
 */
void wv_log_err(const wv_err *err);

#endif
