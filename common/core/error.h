/*
 * error.h - walvault's one error table and the per-call error record.
 *
 * Fallible functions return int: 0 for success, a negative WV_E* code for failure, and fill the
 * caller's wv_err with a complete, one-line, lowercase message (what failed, on which object) and an
 * optional hint (what to do next). There is no global error state: every call gets its own wv_err.
 *
 * The table WV_ERR_MAP is the single place that maps a failure class to its name and to the exit code
 * a program returns for it. WV_ENOTFOUND is distinct from every other failure, everywhere: a driver
 * that cannot tell "absent" from "unreachable" must report the latter.
 */
#ifndef WALVAULT_CORE_ERROR_H
#define WALVAULT_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* XX(NAME, description, exit code) */
#define WV_ERR_MAP(XX)                                                                             \
    XX(NOTFOUND, "not found", 1)                                                                   \
    XX(USAGE, "invalid command line", 2)                                                           \
    XX(CONFIG, "configuration error", 3)                                                           \
    XX(IO, "i/o error", 4)                                                                         \
    XX(CORRUPT, "corrupt object", 5)                                                               \
    XX(CONFLICT, "different content already archived", 6)                                          \
    XX(MISMATCH, "repository belongs to another cluster", 7)                                       \
    XX(NOSPACE, "no space left on device", 8)                                                      \
    XX(UNREACHABLE, "repository unreachable", 9)                                                   \
    XX(AUTH, "authentication failed", 10)                                                          \
    XX(FORMAT, "unsupported format", 11)                                                           \
    XX(PG, "postgresql error", 12)                                                                 \
    XX(REFUSED, "operation refused", 13)                                                           \
    XX(EXIST, "already exists", 14)                                                                \
    XX(KEY, "wrong or missing encryption key", 15)                                                 \
    XX(TIMEOUT, "timed out", 16)                                                                   \
    XX(INTERRUPTED, "interrupted", 17)                                                             \
    XX(INTERNAL, "internal error", 18)

typedef enum wv_errcode {
    WV_OK = 0,
#define WV__ERR_ENUM(name, desc, code) WV_E##name = -(code),
    WV_ERR_MAP(WV__ERR_ENUM)
#undef WV__ERR_ENUM
} wv_errcode;

#define WV_ERR_MSG_MAX 1024

typedef struct wv_err {
    int code;                  /* 0 or a WV_E* value */
    char msg[WV_ERR_MSG_MAX];  /* one line, no trailing period */
    char hint[WV_ERR_MSG_MAX]; /* what to do next; may be empty */
} wv_err;

/* Name ("NOTFOUND"), description and exit code (1..125) of a WV_E* value. */
const char *wv_err_name(int code);
const char *wv_err_desc(int code);
int wv_err_exit_code(int code);

/* Reset an error record to success. */
void wv_err_clear(wv_err *err);

/*
 * Record a failure and return its code, so that `return wv_err_set(err, WV_EIO, "...", ...)` works.
 * A NULL err is allowed (the message is dropped). Overwrites an earlier message; see wv_err_prefix.
 */
int wv_err_set(wv_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int wv_err_setv(wv_err *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Like wv_err_set, appending ": strerror(errnum)" and mapping ENOSPC/EDQUOT to WV_ENOSPACE. */
int wv_err_errno(wv_err *err, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Set or replace the hint of an already recorded error. Returns err->code. */
int wv_err_hint(wv_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the recorded message with context ("repo1: "). Returns err->code. */
int wv_err_prefix(wv_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
