/*
 * prefetch.c - the prefetch spool's bookkeeping (see prefetch.h).
 */
#include "repo/prefetch.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/bytes.h"

unsigned wv_prefetch_depth(uint64_t fetch_ahead, uint64_t segsize)
{
    if (fetch_ahead == 0 || segsize == 0)
        return 0;
    uint64_t k = fetch_ahead / segsize;
    if (k < 1)
        k = 1;
    if (k > WV_PREFETCH_DEPTH_MAX)
        k = WV_PREFETCH_DEPTH_MAX;
    return (unsigned)k;
}

uint64_t wv_prefetch_bound(uint64_t fetch_ahead, uint64_t segsize)
{
    unsigned k = wv_prefetch_depth(fetch_ahead, segsize);
    return k ? ((uint64_t)k + 1) * segsize : 0;
}

static int segment_of(const char *name, uint64_t segsize, wv_walname *w, uint64_t *segno)
{
    if (wv_walname_parse(name, w) != WV_WALNAME_SEGMENT ||
        !wv_walname_valid_for_segsize(w, segsize))
        return 0;
    *segno = wv_walname_segno(w, segsize);
    return 1;
}

size_t wv_prefetch_window(const char *name, uint64_t segsize, unsigned depth,
                          char (*out)[WV_WALNAME_SEGMENT_LEN], size_t max)
{
    wv_walname w;
    uint64_t segno;
    if (!wv_wal_segsize_valid(segsize) || !segment_of(name, segsize, &w, &segno))
        return 0;
    /* The last segment of the 64-bit address space. */
    uint64_t last = UINT64_MAX / segsize;
    size_t n = 0;
    for (unsigned i = 1; i <= depth && n < max; i++) {
        if (segno > last - i)
            break;
        wv_walname_format_segment(w.tli, segno + i, segsize, out[n++]);
    }
    return n;
}

int wv_prefetch_stale(const char *spooled, const char *want, uint64_t segsize, unsigned depth)
{
    wv_walname s, w;
    uint64_t sno, wno;
    if (!wv_wal_segsize_valid(segsize) || !segment_of(spooled, segsize, &s, &sno) ||
        !segment_of(want, segsize, &w, &wno))
        return 1;
    return s.tli != w.tli || sno < wno || sno - wno > depth;
}

int wv_prefetch_rec_format(const wv_prefetch_rec *rec, char *out, size_t outlen)
{
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", rec->sha256[i]);
    if (!rec->boot_id[0] || strpbrk(rec->boot_id, " \t\r\n"))
        return -1;
    int n = snprintf(out, outlen,
                     "walvault-prefetch 1 tli=%08" PRIX32 " repo=%d size=%" PRIu64
                     " sha256=%s boot=%s\n",
                     rec->tli, rec->repo_index, rec->plain_size, hex, rec->boot_id);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

int wv_prefetch_rec_parse(const char *text, wv_prefetch_rec *out, wv_err *err)
{
    wv_prefetch_rec r;
    char hex[65], boot[WV_PREFETCH_BOOT_MAX];
    int end = -1;
    memset(&r, 0, sizeof(r));
    if (sscanf(text,
               "walvault-prefetch 1 tli=%8" SCNx32 " repo=%d size=%" SCNu64
               " sha256=%64[0-9a-f] boot=%39[^ \t\r\n]%n",
               &r.tli, &r.repo_index, &r.plain_size, hex, boot, &end) != 5 ||
        end < 0 || strcmp(text + end, "\n") != 0)
        return wv_err_set(err, WV_ECORRUPT, "prefetch record \"%.60s\" is not one walvault writes",
                          text);
    if (strlen(hex) != 64 || r.tli == 0 || r.repo_index < 1)
        return wv_err_set(err, WV_ECORRUPT, "prefetch record \"%.60s\" holds a bad field", text);
    if (wv_hex_decode(hex, r.sha256, 32) != 0)
        return wv_err_set(err, WV_ECORRUPT, "prefetch record \"%.60s\" holds a bad field", text);
    memcpy(r.boot_id, boot, sizeof(boot));
    *out = r;
    return 0;
}

int wv_prefetch_info_format(const wv_repo_info *info, char *out, size_t outlen)
{
    int n = snprintf(out, outlen,
                     "walvault-prefetch-info 1 format=%d system=%016" PRIX64 " major=%" PRIu32
                     " segsize=%" PRIu64 "\n",
                     info->format, info->system_id, info->pg_major, info->wal_segsize);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return n;
}

int wv_prefetch_info_parse(const char *text, wv_repo_info *out, wv_err *err)
{
    wv_repo_info info;
    int end = -1;
    memset(&info, 0, sizeof(info));
    if (sscanf(text,
               "walvault-prefetch-info 1 format=%d system=%16" SCNx64 " major=%" SCNu32
               " segsize=%" SCNu64 "%n",
               &info.format, &info.system_id, &info.pg_major, &info.wal_segsize, &end) != 4 ||
        end < 0 || strcmp(text + end, "\n") != 0)
        return wv_err_set(err, WV_ECORRUPT, "prefetch info \"%.60s\" is not one walvault writes",
                          text);
    const char *bad = wv_repo_info_invalid(&info);
    if (bad)
        return wv_err_set(err, WV_ECORRUPT, "prefetch info \"%.60s\": %s", text, bad);
    *out = info;
    return 0;
}
