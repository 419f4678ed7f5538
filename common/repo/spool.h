/*
 * spool.h - the local spool of one cluster: <spool_path>/<system identifier, 16 hex digits>/.
 *
 * Outside pg_wal and outside any repository: what the programs keep between calls for one
 * cluster (archive/ for the async pusher, lag/ and dropped/ for lagging repositories, fetch/ for
 * wal-fetch's prefetch). Directories are created 0700.
 */
#ifndef WALVAULT_REPO_SPOOL_H
#define WALVAULT_REPO_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

/* The cluster's spool directory into out, created (with spool_path) 0700 if absent. */
int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err);

#endif
