/* walpage.c - WAL page headers and the XLOG_PAGE_MAGIC of each PostgreSQL major version. */
#include "pg/walpage.h"

#include <inttypes.h>

#include "pg/walname.h"

/* XLOG_PAGE_MAGIC as each release's src/include/access/xlog_internal.h defines it. Every major
 * release from 10 to 18 changed the WAL format, so no two share a magic. */
static const struct {
    int major;
    uint16_t magic;
} magic_tab[] = {
    {10, 0xD097}, {11, 0xD098}, {12, 0xD101}, {13, 0xD106}, {14, 0xD10D},
    {15, 0xD110}, {16, 0xD113}, {17, 0xD116}, {18, 0xD118},
};

int wv_walpage_major_of_magic(uint16_t magic)
{
    for (size_t i = 0; i < sizeof(magic_tab) / sizeof(magic_tab[0]); i++)
        if (magic_tab[i].magic == magic)
            return magic_tab[i].major;
    return 0;
}

uint16_t wv_walpage_magic_of_major(int major)
{
    for (size_t i = 0; i < sizeof(magic_tab) / sizeof(magic_tab[0]); i++)
        if (magic_tab[i].major == major)
            return magic_tab[i].magic;
    return 0;
}

static bool pow2_between(uint32_t v, uint32_t lo, uint32_t hi)
{
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

int wv_walpage_check_first(const uint8_t *file, size_t len, const char *what, wv_walpage *out,
                           wv_err *err)
{
    if (len < WV_XLP_LONG_HEADER_SIZE)
        return wv_err_set(err, WV_EFORMAT, "\"%s\" is too short to be a WAL segment (%zu bytes)",
                          what, len);
    wv_walpage_decode(file, len, out);
    if (wv_walpage_major_of_magic(out->magic) == 0)
        return wv_err_set(err, WV_EFORMAT,
                          "\"%s\" is not WAL of a PostgreSQL version walvault knows (%d to %d): "
                          "page magic 0x%04X",
                          what, WV_PG_MAJOR_MIN, WV_PG_MAJOR_MAX, out->magic);
    if (!(out->info & WV_XLP_LONG_HEADER) || (out->info & ~WV_XLP_ALL_FLAGS))
        return wv_err_set(err, WV_EFORMAT,
                          "\"%s\" does not start with a WAL segment's first page header (page "
                          "flags 0x%04X)",
                          what, out->info);
    if (!wv_wal_segsize_valid(out->seg_size))
        return wv_err_set(err, WV_EFORMAT, "\"%s\" has an invalid WAL segment size %" PRIu32, what,
                          out->seg_size);
    if (!pow2_between(out->blcksz, 1024, 65536) || out->timeline == 0)
        return wv_err_set(err, WV_EFORMAT,
                          "\"%s\" has an invalid first page header (block size %" PRIu32
                          ", timeline %" PRIu32 ")",
                          what, out->blcksz, out->timeline);
    return 0;
}
