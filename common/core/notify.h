/*
 * notify.h - [global] notify_command: a program run after a job (backup, expire, check, drill,
 * migrate-safe, and status when critical) with the event as one JSON object on its stdin:
 *
 *     {"event":"backup","status":"ok","message":"backup 20261125T021500Z complete: ...",
 *      "time":"2026-11-25T02:17:03Z","repo":"repo1","backup":"20261125T021500Z",
 *      "host":"db1","program":"basebackup"}
 *
 * "event", "status" ("ok" | "error"), "message", "time" (ISO 8601, UTC) and "host" are always
 * there; "repo" and "backup" when known. Strings are JSON-escaped (quotes, backslashes, control
 * characters as \uXXXX; bytes that are not UTF-8 as \uFFFD), so any message gives valid JSON.
 *
 * How it runs: no shell. notify_command is split at blanks (spaces and tabs) into the program (an
 * absolute path) and its arguments; there is no quoting (write a small script for anything more,
 * see contrib/notify/). The program gets the JSON on stdin (then end of file), its stdout goes to
 * /dev/null, its stderr is ours. Its environment is not ours: only PATH (a fixed system one), HOME,
 * LANG, LC_ALL, TZ and WALVAULT_EVENT (the event name) are set, so no key, password or token that
 * walvault or its caller holds in the environment reaches the hook (a hook that needs a secret
 * reads it from its own file). It runs in its own process group; after timeout seconds (30 by
 * default) that group is killed. A hook that fails, hangs, or does not read its stdin is logged as
 * "notify_command failed: ..." (with the event) and never changes the exit code of the job.
 */
#ifndef WALVAULT_CORE_NOTIFY_H
#define WALVAULT_CORE_NOTIFY_H

#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"
#include "core/json.h" /* wv_json_string */

#define WV_NOTIFY_TIMEOUT 30 /* seconds */

typedef struct wv_notify_event {
    const char *event;   /* "backup", "expire", "check", "drill", "migrate-safe", "status" */
    int ok;              /* 1: "status":"ok", 0: "status":"error" */
    const char *message; /* one line; NULL: "" */
    const char *repo;    /* "repo1", or NULL when not one repository */
    const char *backup;  /* a backup id, or NULL */
    int64_t time;        /* seconds since the epoch; 0: now */
} wv_notify_event;

/* Append the event's JSON object (one line, no newline) to out. */
void wv_notify_json(const wv_notify_event *ev, wv_buf *out);

/*
 * Run command (see above) with input on stdin, waiting at most timeout_s seconds. 0 when it exited
 * 0; otherwise WV_EREFUSED ("exit 3", "killed by signal 9", "timed out after 30 s, killed"),
 * WV_EUSAGE (an empty command or a relative program) or WV_EIO (fork, pipe) with err filled.
 */
int wv_notify_run(const char *command, const char *event, const char *input, int timeout_s,
                  wv_err *err);

/*
 * The hook of cfg (nothing when cfg is NULL or has no notify_command): the JSON of ev through
 * wv_notify_run with WV_NOTIFY_TIMEOUT; a failure is logged as a warning naming the event and
 * is otherwise ignored. Returns 0 when the hook ran and succeeded or there is none, -1 otherwise
 * (for tests and callers that want to say so; the job's exit code must not depend on it).
 */
int wv_notify(const wv_config *cfg, const wv_notify_event *ev);

#endif
