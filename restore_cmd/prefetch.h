/*
 * prefetch.h - wal-fetch's prefetch: the foreground side (serve a segment from the spool, say
 * which segment is wanted, start the background fetcher, drop the spool) and the fetcher.
 *
 * The spool is <spool_path>/<system id>/fetch/ (common/repo/prefetch.h gives its files). The
 * foreground never trusts a spooled file beyond what a direct fetch would check: the file was
 * verified whole when it was written (the same wv_repo_get_wal as a direct fetch), its record
 * must name the same timeline and boot, its size must match, and the repository's trailer of the
 * object (one suffix read) must still carry the same size and SHA-256.
 */
#ifndef WALVAULT_RESTORE_PREFETCH_H
#define WALVAULT_RESTORE_PREFETCH_H

#include <limits.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "pg/walname.h"
#include "repo/prefetch.h"
#include "repo/repo.h"

/* The repositories a wal-fetch call has opened, each at most once (reused across the spool
 * check and the direct fetch). */
typedef struct wf_repos {
    const wv_config *cfg;
    wv_repo *r[WV_MAX_REPOS];
    int failed[WV_MAX_REPOS]; /* open or info load failed: err below */
    wv_err err[WV_MAX_REPOS];
} wf_repos;

/* repos->r[i], opened with its info loaded (an absent walvault.repo is no error). */
int wf_repo(wf_repos *repos, int i, wv_repo **out, wv_err *err);
void wf_repos_close(wf_repos *repos);

typedef struct wf_spool {
    char dir[3072]; /* .../fetch (short enough for every spool file name below it) */
    uint64_t segsize;
    unsigned depth;
    wv_repo_info info; /* the repository info the checks use */
} wf_spool;

/* Set up the spool for a call: 0 with sp filled when prefetch is on and the spool is usable;
 * WV_ENOTFOUND when prefetch is off (fetch_ahead = 0, or no repository knows the cluster yet);
 * any other error: the spool is unusable (the caller says so and fetches directly). */
int wf_spool_open(wf_repos *repos, wf_spool *sp, wv_err *err);

/* The segment wanted is name ("" when none: the fetcher cleans up and exits). */
int wf_spool_want(const wf_spool *sp, const char *name, wv_err *err);
/* The segment last wanted into out ("" if none). */
void wf_spool_wanted(const wf_spool *sp, char out[WV_WALNAME_SEGMENT_LEN]);

/* Start the background fetcher unless one runs for this spool. Never waits for it. */
void wf_spool_kick(const wf_spool *sp, const wv_config *cfg);

/* Move segment name from the spool to dest if it is there and valid: 0 done, WV_ENOTFOUND not
 * there (or not valid, and then removed). Waits while the fetcher is fetching it. */
int wf_spool_serve(const wf_spool *sp, wf_repos *repos, const char *name, const char *dest,
                   wv_err *err);

/* Remove every spooled file (want becomes none). */
void wf_spool_drop(const wf_spool *sp);

/* This boot of the machine (/proc/sys/kernel/random/boot_id; "unknown" without it). */
void wf_boot_id(char out[WV_PREFETCH_BOOT_MAX]);

/* The background fetcher's body (in the detached grandchild): never returns. */
void wf_fetcher_main(const wf_spool *sp, const wv_config *cfg) __attribute__((noreturn));

#endif
