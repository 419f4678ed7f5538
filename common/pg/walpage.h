/*
 * walpage.h - PostgreSQL WAL page headers, and which major version wrote them.
 *
 * Every page of a WAL segment (XLOG_BLCKSZ bytes, 8 kB by default) starts with a short header;
 * the first page of a segment has the long form (src/include/access/xlog_internal.h):
 *
 *   short (24 bytes): u16 magic, u16 info, u32 timeline, u64 page address, u32 rem_len, 4 pad
 *   long  (40 bytes): the short header, then u64 system identifier, u32 segment size, u32 block size
 *
 * All little-endian on the platforms PostgreSQL supports here. The magic (XLOG_PAGE_MAGIC) changes
 * with every major release whose WAL format changed, and is the one version mark WAL carries: this
 * module owns the table from magic to major version, for every release from 10 to 18.
 */
#ifndef WALVAULT_PG_WALPAGE_H
#define WALVAULT_PG_WALPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bytes.h"
#include "core/error.h"

#define WV_XLP_SHORT_HEADER_SIZE 24
#define WV_XLP_LONG_HEADER_SIZE  40

/* xlp_info bits. */
#define WV_XLP_FIRST_IS_CONTRECORD           0x0001
#define WV_XLP_LONG_HEADER                   0x0002
#define WV_XLP_BKP_REMOVABLE                 0x0004
#define WV_XLP_FIRST_IS_OVERWRITE_CONTRECORD 0x0008
#define WV_XLP_ALL_FLAGS                     0x000F

/* The oldest and newest major versions the table knows. */
#define WV_PG_MAJOR_MIN 10
#define WV_PG_MAJOR_MAX 18

typedef struct wv_walpage {
    uint16_t magic;
    uint16_t info; /* WV_XLP_* bits */
    uint32_t timeline;
    uint64_t pageaddr; /* LSN of the page's first byte */
    uint32_t rem_len;  /* bytes of a record continued from the previous page */
    /* Long header only (info & WV_XLP_LONG_HEADER), else 0. */
    uint64_t sysid;
    uint32_t seg_size;
    uint32_t blcksz;
} wv_walpage;

/* The major version (10..18) whose WAL pages carry `magic`, or 0 for a magic no release used. */
int wv_walpage_major_of_magic(uint16_t magic);
/* The XLOG_PAGE_MAGIC of a major version, or 0 for a version outside the table. */
uint16_t wv_walpage_magic_of_major(int major);

/* Decode the header at p, which holds at least WV_XLP_SHORT_HEADER_SIZE bytes, and the long
 * fields too when its info says so and len allows (else they are 0). No check is made. */
static inline void wv_walpage_decode(const uint8_t *p, size_t len, wv_walpage *out)
{
    out->magic = wv_get_le16(p);
    out->info = wv_get_le16(p + 2);
    out->timeline = wv_get_le32(p + 4);
    out->pageaddr = wv_get_le64(p + 8);
    out->rem_len = wv_get_le32(p + 16);
    bool lng = (out->info & WV_XLP_LONG_HEADER) && len >= WV_XLP_LONG_HEADER_SIZE;
    out->sysid = lng ? wv_get_le64(p + 24) : 0;
    out->seg_size = lng ? wv_get_le32(p + 32) : 0;
    out->blcksz = lng ? wv_get_le32(p + 36) : 0;
}

/*
 * Check that the first WV_XLP_LONG_HEADER_SIZE bytes of `file` (named `what` in messages) are the
 * first page header of a segment of a known PostgreSQL version: a known magic, the long-header flag
 * and no unknown flag, a valid segment size, a block size of 1..64 kB and a non-zero timeline.
 * Fills *out. WV_EFORMAT with a message naming `what`, the magic and the field otherwise.
 */
int wv_walpage_check_first(const uint8_t *file, size_t len, const char *what, wv_walpage *out,
                           wv_err *err);

#endif
