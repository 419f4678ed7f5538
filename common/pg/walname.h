/*
 * walname.h - PostgreSQL WAL file names, segment numbers, LSNs and timeline history files.
 *
 * Names are accepted in their exact PostgreSQL spelling only: uppercase hexadecimal, no directory,
 * no other suffix. Anything else (lowercase, "../x", "RECOVERYXLOG", a trailing newline) is
 * WV_WALNAME_INVALID, so a name that parses is always safe to use as a file or object name.
 *
 *   segment  000000010000000A000000FE            timeline, log, seg
 *   partial  000000010000000A000000FE.partial    a segment cut short at a timeline switch
 *   history  00000002.history                    timeline 2's history file
 *   backup   000000010000000A000000FE.00000028.backup   backup history file: start segment, offset
 *
 * Segment numbers depend on the cluster's WAL segment size (a power of two from 1 MiB to 1 GiB,
 * 16 MiB by default): segno = log * (2^32 / segsize) + seg, and seg must be below 2^32 / segsize.
 * An LSN is a 64-bit byte position, written "16/B374D848" (high and low 32 bits in hexadecimal).
 */
#ifndef WALVAULT_PG_WALNAME_H
#define WALVAULT_PG_WALNAME_H

#include "core/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WV_WAL_SEGSIZE_MIN     (UINT64_C(1) << 20)
#define WV_WAL_SEGSIZE_MAX     (UINT64_C(1) << 30)
#define WV_WAL_SEGSIZE_DEFAULT (UINT64_C(16) << 20)

/* Buffer sizes, terminating NUL included. */
#define WV_WALNAME_SEGMENT_LEN 25 /* 24 hex digits */
#define WV_WALNAME_HISTORY_LEN 17 /* "00000002.history" */
#define WV_WALNAME_BACKUP_LEN  41 /* "<24 hex>.<8 hex>.backup" */
#define WV_LSN_LEN             18 /* "FFFFFFFF/FFFFFFFF" */

typedef enum {
    WV_WALNAME_INVALID = 0,
    WV_WALNAME_SEGMENT,
    WV_WALNAME_PARTIAL,
    WV_WALNAME_HISTORY,
    WV_WALNAME_BACKUP,
} wv_walname_kind;

typedef struct {
    wv_walname_kind kind;
    uint32_t tli;           /* timeline, never 0 */
    uint32_t log, seg;      /* segment, partial and backup names; 0 for history */
    uint32_t backup_offset; /* backup names: the start LSN's offset in its segment */
} wv_walname;

/*
 * Parse a bare file name. Returns its kind and fills *out (may be NULL); on WV_WALNAME_INVALID
 * *out is zeroed. Checks the spelling only: see wv_walname_valid_for_segsize for the numbers.
 */
wv_walname_kind wv_walname_parse(const char *name, wv_walname *out);

/* "segment", "partial", "history", "backup" or "invalid". */
const char *wv_walname_kind_name(wv_walname_kind kind);

/* A legal WAL segment size: a power of two from 1 MiB to 1 GiB. */
bool wv_wal_segsize_valid(uint64_t segsize);

/* 2^32 / segsize: the number of segments in one "log" (the middle 8 digits). */
uint64_t wv_wal_segs_per_log(uint64_t segsize);

/*
 * Whether a parsed name can exist in a cluster with this segment size: the segsize is legal,
 * seg < 2^32 / segsize, and for backup names backup_offset < segsize. History names always can.
 */
bool wv_walname_valid_for_segsize(const wv_walname *w, uint64_t segsize);

/* The segment number of a segment, partial or backup name (valid for segsize). */
uint64_t wv_walname_segno(const wv_walname *w, uint64_t segsize);

/* The 24-digit name of segment segno on timeline tli. */
void wv_walname_format_segment(uint32_t tli, uint64_t segno, uint64_t segsize,
                               char out[WV_WALNAME_SEGMENT_LEN]);

/* "0000000A.history". */
void wv_walname_format_history(uint32_t tli, char out[WV_WALNAME_HISTORY_LEN]);

/* The backup history file name of a backup that started at start_lsn on timeline tli. */
void wv_walname_format_backup(uint32_t tli, uint64_t start_lsn, uint64_t segsize,
                              char out[WV_WALNAME_BACKUP_LEN]);

/*
 * Parse "X/X", each side 1 to 8 hexadecimal digits (either case), nothing else: no blanks, no
 * sign, no "0x". Returns 0, or WV_EUSAGE with *out untouched (callers reading a file report their
 * own error naming the file).
 */
int wv_lsn_parse(const char *s, uint64_t *out);

/* PostgreSQL's spelling: "%X/%X", e.g. "16/B374D848", "0/3000028". */
void wv_lsn_format(uint64_t lsn, char out[WV_LSN_LEN]);

/* The segment an LSN falls in, and the first LSN of a segment. */
uint64_t wv_lsn_to_segno(uint64_t lsn, uint64_t segsize);
uint64_t wv_segno_to_lsn(uint64_t segno, uint64_t segsize);

/*
 * A timeline history file ("TLI.history"): one line per ancestor timeline, in order,
 *     parentTLI <TAB> switchpoint LSN <TAB> reason
 * meaning timeline parentTLI ended at switch_lsn. Blank lines and lines starting with '#' are
 * skipped. Timelines must increase strictly and switch points must not decrease.
 */
typedef struct {
    uint32_t tli;        /* an ancestor timeline */
    uint64_t switch_lsn; /* the LSN where it ended and its child began */
} wv_history_entry;

/*
 * Parse a history file's text (need not be NUL-terminated). On success *out is a new array of
 * *n entries (possibly 0, *out then NULL) that the caller frees with free(). On failure returns
 * WV_ECORRUPT with a message naming the line ("line 3: ..."); prefix it with the file's name.
 */
int wv_history_parse(const char *text, size_t len, wv_history_entry **out, size_t *n, wv_err *err);

/*
 * The timeline that wrote lsn in the history of timeline target_tli whose history entries are
 * given (as PostgreSQL's tliOfPointInHistory): the first entry with lsn < switch_lsn, else
 * target_tli itself.
 */
uint32_t wv_history_tli_at(const wv_history_entry *entries, size_t n, uint32_t target_tli,
                           uint64_t lsn);

#endif
