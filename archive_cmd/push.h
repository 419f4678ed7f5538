/*
 * push.h - archive one WAL-directory file (segment, partial, timeline history, backup history)
 * to every configured repository.
 *
 * Success means the file is durable in every repository (or an identical copy already was).
 * A different file already archived under the same name is never overwritten: WV_ECONFLICT.
 */
#ifndef WALVAULT_ARCHIVE_PUSH_H
#define WALVAULT_ARCHIVE_PUSH_H

#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "repo/repo.h"

/* What a successful push stored (or found stored identically): the file's content. */
typedef struct wv_push_result {
    uint8_t sha256[32];
    uint64_t size;
} wv_push_result;

/* The synchronous push: opens every repository, pushes, closes them. */
int wv_push_file(const wv_config *cfg, const char *path, wv_err *err);

/*
 * Push one file to repositories the caller opened already: repos[i] is cfg->repos[i]'s, kept open
 * across files (one ssh session, pooled HTTP handles); a NULL entry is opened for this push alone.
 * Several pushes may share repos at once (drivers are thread-compatible), once each repository's
 * cluster check has been recorded (wv_repo.have_info) by a first push. res (may be NULL) receives
 * the content pushed on success.
 */
int wv_push_file_to(const wv_config *cfg, wv_repo *const *repos, const char *path,
                    wv_push_result *res, wv_err *err);

/* archive_async = on (pusher.c): wait for the background pusher's record of path's file (starting
 * the pusher when none runs), else push it synchronously. Same contract as wv_push_file. */
int wv_push_async(const wv_config *cfg, const char *path, wv_err *err);

#endif
