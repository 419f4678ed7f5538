/*
 * error.h - walvault's one error table and the per-call error record.
 *
 * Fallible functions return int: 0 for success, a negative WV_E* code for failure, and fill the
 * caller's wv_err with a complete, one-line, lowercase message (what failed, on which object) and an
 * optional hint (what to do next). There is no global error state: every call gets its own wv_err.
 *
 * Context: the repository and the object an error is about travel as fields of the record, not only
 * as text. wv_err_context puts "REPO: " and "\"OBJECT\": " in front of the message for whichever
 * of the two is not recorded yet, and records them; so a message is never prefixed twice, and no
 * caller searches a message for a name. Whoever writes a name into a message's text himself (a
 * driver naming the path of a key) says so with wv_err_names. wv_err_set and wv_err_clear reset
 * both fields.
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
    XX(INTERNAL, "internal error", 18)                                                             \
    XX(PRIVKEY, "needs the private key", 19)

typedef enum wv_errcode {
    WV_OK = 0,
#define WV__ERR_ENUM(name, desc, code) WV_E##name = -(code),
    WV_ERR_MAP(WV__ERR_ENUM)
#undef WV__ERR_ENUM
} wv_errcode;

#define WV_ERR_MSG_MAX    1024
#define WV_ERR_REPO_MAX   16 /* as wv_repo_config.name */
#define WV_ERR_OBJECT_MAX 320

typedef struct wv_err {
    int code;                       /* 0 or a WV_E* value */
    char msg[WV_ERR_MSG_MAX];       /* one line, no trailing period */
    char hint[WV_ERR_MSG_MAX];      /* what to do next; may be empty */
    char repo[WV_ERR_REPO_MAX];     /* the repository the message names, or "" */
    char object[WV_ERR_OBJECT_MAX]; /* the object (key) the message names, or "" */
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

/* Prefix the recorded message with free text ("could not store ...: "). Returns err->code. The
 * repository and the object are put in front with wv_err_context instead. */
int wv_err_prefix(wv_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Name what the error is about, once: puts "REPO: \"OBJECT\": " in front of the message, with
 * only the parts not recorded yet, and records them (either may be NULL). The repository is the
 * outermost context: once it is recorded the message is complete and nothing more is put in front
 * (an object given then is not recorded either). Returns err->code; a NULL or clear err is left.
 *
 * wv_err_context_at is the same with a detail on the object ("\"KEY\" at offset 4096 (PATH)"):
 * as long as the repository is not recorded, the object and its detail are put in front even if
 * the message names the object already, since the detail says where in it.
 */
int wv_err_context(wv_err *err, const char *repo, const char *object);
int wv_err_context_at(wv_err *err, const char *repo, const char *object, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The message names these already (its author wrote them into the text): record them, put
 * nothing in front. Either may be NULL; a recorded one is kept. Returns err->code. */
int wv_err_names(wv_err *err, const char *repo, const char *object);

#endif
