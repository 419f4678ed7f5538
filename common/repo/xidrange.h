/*
 * xidrange.h - the committed transaction ids of one archived segment, in a small object beside it:
 * "<segment key>.xid", one line "XMIN\tXMAX\tCOUNT\n" (decimal): the smallest and largest
 * transaction id committed in the segment (COMMIT and COMMIT PREPARED) and how many commits.
 *
 * wal-push writes it (plain text, never replaced, as the restore point object "<segment key>.rp")
 * before the segment itself, and only for a segment that holds a commit; the recovery planner
 * reads it to tell which of two timelines that part holds a transaction id target.
 *
 * Transaction ids are 32 bits and compared modulo 2^32, as PostgreSQL does: XMIN and XMAX are raw
 * values, XMIN "precedes or equals" XMAX, and across a wraparound XMIN may be numerically above
 * XMAX. A range is only an interval: an id inside it may belong to a transaction that aborted or
 * committed in another segment. The comparison is meaningful while the range spans less than 2^31
 * ids, which PostgreSQL's wraparound limit ensures for the commits of one segment.
 *
 * The object is repository content, so untrusted: wv_xidrange_parse accepts exactly one line of
 * three decimal numbers in range with COUNT >= 1 and XMAX - XMIN < 2^31 (modulo 2^32), nothing
 * else.
 */
#ifndef WALVAULT_REPO_XIDRANGE_H
#define WALVAULT_REPO_XIDRANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "storage/storage.h"

#define WV_REPO_XID_SUFFIX ".xid"
/* The longest valid object: two 10-digit ids, a 10-digit count, two tabs and a newline. */
#define WV_XIDRANGE_TEXT_MAX 40

typedef struct wv_xidrange {
    uint32_t xmin, xmax; /* raw values, modulo 2^32 order */
    uint32_t count;      /* commits in the segment, >= 1 */
} wv_xidrange;

/* The object's text (NUL-terminated) into out (at least WV_XIDRANGE_TEXT_MAX bytes). */
void wv_xidrange_format(const wv_xidrange *x, char *out, size_t outlen);

/* Parse an object's bytes. WV_ECORRUPT with the reason when they are not one valid line. */
int wv_xidrange_parse(const char *data, size_t len, wv_xidrange *out, wv_err *err);

/* Whether xid lies in [xmin, xmax] in modulo 2^32 order. */
bool wv_xidrange_contains(const wv_xidrange *x, uint32_t xid);

/* Whether a WAL object name (the key's last part) is a segment's xid range object. */
bool wv_xidrange_is_name(const char *name);

/* The object key for a segment key. */
void wv_xidrange_key(const char *segment_key, char *out, size_t outlen);

/* Store the range beside segment_key (never replacing: an existing object is success, as for
 * restore point objects: its content follows from the segment's, which is compared). */
int wv_xidrange_put(wv_storage *st, const char *segment_key, const wv_xidrange *x, wv_err *err);

/* Read the range beside segment_key: 0, WV_ENOTFOUND when there is none, WV_ECORRUPT when it does
 * not parse (err says why, naming the key), or a storage error. */
int wv_xidrange_get(wv_storage *st, const char *segment_key, wv_xidrange *out, wv_err *err);

#endif
