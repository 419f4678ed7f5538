/*
 * archwait.h - "is it archived yet?" across every repository of a configuration: the segment that
 * holds a restore point reaching each repository (mark, migrate-safe), and whether a restore point
 * name is already in an archive. Reads only; polls through the storage API.
 */
#ifndef WALVAULT_REPO_ARCHWAIT_H
#define WALVAULT_REPO_ARCHWAIT_H

#include <stddef.h>

#include "core/config.h"
#include "core/error.h"

/*
 * Wait until the WAL segment `walname` is archived in every repository of cfg and, when rp_name is
 * not NULL, the restore point rp_name is recorded there too; poll every 200 ms for at most
 * timeout_s seconds. WV_ETIMEOUT names the first repository it did not reach (and what was
 * missing); an unreachable repository keeps being polled until the deadline, then its error is
 * returned with the repository named.
 */
int wv_archwait_segment(const wv_config *cfg, const char *walname, const char *rp_name,
                        int timeout_s, wv_err *err);

/*
 * Whether a restore point named `name` is already archived in some repository: 1 with that
 * repository's name in where, 0 when none has it, or a negative error (repository named).
 */
int wv_archwait_restore_point_known(const wv_config *cfg, const char *name, char *where,
                                    size_t wherelen, wv_err *err);

#endif
