/*
 * prefetch.h - the bookkeeping of wal-fetch's prefetch spool (<cluster spool>/fetch/), as pure
 * functions: which segments to fetch ahead of the one PostgreSQL asks for, which spooled files
 * are outside the window, the bound, and the record kept beside each spooled file.
 *
 * The spool holds, for a segment NAME fetched ahead:
 *   NAME        the verified content (renamed into place once complete)
 *   NAME.rec    its record (wv_prefetch_rec, one line), written before NAME appears
 *   NAME.err    instead of the two: the background fetch failed (the message); the foreground
 *               then fetches NAME directly and gets the real error
 *   NAME.busy   a fetch of NAME is in flight
 *   NAME.ok     the fetcher checked NAME against the repository's trailer after it was asked for
 *   info        the repository info of the cluster (wv_prefetch_info_*), so that a call served
 *               from the spool need not open a repository
 *   want        the last segment asked for (the window is the depth segments after it)
 *   lock        flock'ed by the one background fetcher of the cluster
 */
#ifndef WALVAULT_REPO_PREFETCH_H
#define WALVAULT_REPO_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "pg/walname.h"
#include "repo/repo.h"

#define WV_PREFETCH_DIR       "fetch"
#define WV_PREFETCH_DEPTH_MAX 256
#define WV_PREFETCH_BOOT_MAX  40

/* Segments fetched ahead for fetch_ahead bytes of segsize segments: 0 when fetch_ahead is 0,
 * else fetch_ahead / segsize, at least 1 and at most WV_PREFETCH_DEPTH_MAX. */
unsigned wv_prefetch_depth(uint64_t fetch_ahead, uint64_t segsize);

/* The most bytes the spool holds complete or in flight: the depth segments of the window, plus
 * the segment asked for, which stays until the foreground has moved it into place. */
uint64_t wv_prefetch_bound(uint64_t fetch_ahead, uint64_t segsize);

/* The window of segment name: the names of the depth segments after it on its timeline, into
 * out (at most max); returns how many (fewer at the end of the address space; 0 when name is no
 * segment name or is invalid for segsize). */
size_t wv_prefetch_window(const char *name, uint64_t segsize, unsigned depth,
                          char (*out)[WV_WALNAME_SEGMENT_LEN], size_t max);

/* Whether a spooled segment must go for the window of want (a segment name): another timeline,
 * before want (want itself stays: it is being served), or past the window. A name that is no
 * segment name is stale too, and so is everything when want is none. */
int wv_prefetch_stale(const char *spooled, const char *want, uint64_t segsize, unsigned depth);

/* What a spooled file is: fetched for timeline tli from [repoN] (index), the object's trailer
 * (plain size and SHA-256, which the foreground compares with the repository's trailer before
 * serving), and the boot it was written in (a file renamed before a crash of the machine may
 * not have reached the disk: it is not served after a reboot). */
typedef struct wv_prefetch_rec {
    uint32_t tli;
    int repo_index;
    uint64_t plain_size;
    uint8_t sha256[32];
    char boot_id[WV_PREFETCH_BOOT_MAX];
} wv_prefetch_rec;

/* "walvault-prefetch 1 tli=%08X repo=%d size=%llu sha256=<64 hex> boot=<id>\n"; returns the
 * length, or -1 if outlen is too small or the boot id holds blanks. */
int wv_prefetch_rec_format(const wv_prefetch_rec *rec, char *out, size_t outlen);
/* WV_ECORRUPT "prefetch record ...: ..." for anything but that line. */
int wv_prefetch_rec_parse(const char *text, wv_prefetch_rec *out, wv_err *err);

/* "walvault-prefetch-info 1 format=%d system=%016X major=%u segsize=%llu\n"; returns the length or
 * -1. Parse: WV_ECORRUPT unless that line with a valid info (wv_repo_info_invalid). */
int wv_prefetch_info_format(const wv_repo_info *info, char *out, size_t outlen);
int wv_prefetch_info_parse(const char *text, wv_repo_info *out, wv_err *err);

#endif
