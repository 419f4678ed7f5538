/*
 * spool.h - the local spool of a cluster: <spool_path>/<system identifier as 16 hex digits>/.
 *
 * Inside it, each feature owns its own sub-directory: archive/ (the async pusher), lag/ and
 * dropped/ (repositories that lag, segments dropped by archive_queue_max: see repo/lag.h),
 * fetch/ (wal-fetch prefetch). The cluster directory is created with mode 0700 (its parents
 * 0750) on first use.
 */
#ifndef WALVAULT_REPO_SPOOL_H
#define WALVAULT_REPO_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

/* The cluster directory's path only, nothing created (readers such as status). 0 or WV_ECONFIG. */
int wv_spool_cluster_path(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                          wv_err *err);

int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err);

#endif
