/*
 * storage/s3/sign.h - the pure parts of the S3 driver: AWS Signature Version 4, URI encoding, the minimal
 * XML reading S3 responses need, and the multipart part-size schedule. No I/O, no globals: every
 * function here is deterministic so that the unit tests can hold it to AWS's published vectors.
 *
 * Invariants:
 *   - Secrets pass through wv_s3_sign only as arguments; nothing here logs or stores them.
 *   - Canonical URIs are encoded exactly once (S3 rules: no path normalisation, '/' kept).
 *   - The part-size schedule never needs more than WV_S3_MAX_PARTS parts for an object of up to
 *     WV_S3_MAX_OBJECT bytes, and no part exceeds WV_S3_MAX_PART_SIZE.
 */
#ifndef WALVAULT_STORAGE_S3_SIGN_H
#define WALVAULT_STORAGE_S3_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/bytes.h"
#include "core/error.h"

#define WV_S3_MAX_PARTS      10000
#define WV_S3_MAX_OBJECT     ((uint64_t)5 << 40) /* 5 TiB: S3's object size limit */
#define WV_S3_MAX_PART_SIZE  ((uint64_t)5 << 30) /* 5 GiB: S3's part size limit */
#define WV_S3_MIN_PART_SIZE  ((uint64_t)5 << 20) /* 5 MiB: every part but the last */
#define WV_S3_BASE_PART_SIZE ((uint64_t)8 << 20) /* the first part size of the schedule */
#define WV_S3_PARTS_PER_STEP 1000                /* the part size doubles every this many */

/* A header or query parameter, unencoded. */
typedef struct wv_s3_pair {
    const char *name;
    const char *value;
} wv_s3_pair;

typedef struct wv_s3_sign_input {
    const char *method;      /* "GET", "PUT", ... */
    const char *path;        /* unencoded absolute path ("/bucket/key"); encoded per S3 rules */
    const wv_s3_pair *query; /* unencoded; NULL value = "" */
    size_t nquery;
    const wv_s3_pair *headers; /* every header to sign, including host and x-amz-date */
    size_t nheaders;
    const char *payload_sha256; /* lowercase hex, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;       /* "20150830T123600Z" */
    const char *region;
    const char *service; /* "s3" */
    const char *access_key_id;
    const char *secret_access_key;
} wv_s3_sign_input;

/*
 * Percent-encode src into out (appending) per AWS's UriEncode: unreserved characters
 * (A-Z a-z 0-9 - . _ ~) as they are, every other byte as %XX (uppercase); '/' kept when keep_slash.
 */
void wv_s3_uri_encode(wv_buf *out, const char *src, int keep_slash);

/* The canonical query string: parameters encoded, sorted by name then value, joined with '&'. The
 * same string serves as the query of the request URL. */
void wv_s3_canonical_query(wv_buf *out, const wv_s3_pair *q, size_t n);

/*
 * Sign a request. Appends the value of the Authorization header to `authz`; when creq/sts are not
 * NULL, also the canonical request and the string to sign (for tests). Returns 0, or WV_EINTERNAL
 * if OpenSSL fails.
 */
int wv_s3_sign(const wv_s3_sign_input *in, wv_buf *authz, wv_buf *creq, wv_buf *sts, wv_err *err);

/* "20150830T123600Z" for t (UTC). out must hold 17 bytes. */
void wv_s3_amz_date(int64_t t, char out[17]);

/* Lowercase hex of SHA-256 (65 bytes with NUL) and base64 of MD5 (25 bytes with NUL). */
void wv_s3_sha256_hex(const void *data, size_t len, char out[65]);
void wv_s3_base64(const uint8_t *bin, size_t n, char *out);
void wv_s3_md5(const void *data, size_t len, uint8_t out[16]);

/* Part size of 1-based part number n: WV_S3_BASE_PART_SIZE doubled every WV_S3_PARTS_PER_STEP
 * parts. 0 for n outside 1..WV_S3_MAX_PARTS. */
uint64_t wv_s3_part_size(unsigned n);

/* Sum of the sizes of parts 1..n (the largest object n parts can hold). */
uint64_t wv_s3_parts_capacity(unsigned n);

/* ---- XML ---- */

/*
 * The text of the first <tag>...</tag> at or after `from` within [xml, xml+len), entity-decoded
 * into out (replacing its contents). Returns a pointer just past the closing tag, or NULL if absent
 * or malformed (an unknown entity is malformed).
 */
const char *wv_s3_xml_get(const char *xml, size_t len, const char *from, const char *tag,
                          wv_buf *out);

/*
 * The raw content of the first <tag>...</tag> at or after `from` within [xml, xml+len), not decoded
 * (nested elements stay as they are, for wv_s3_xml_get): *inner and *inner_len. Returns a pointer
 * just past the closing tag, or NULL if absent or malformed.
 */
const char *wv_s3_xml_element(const char *xml, size_t len, const char *from, const char *tag,
                              const char **inner, size_t *inner_len);

/* Decode &amp; &lt; &gt; &quot; &apos; &#N; &#xH; from [s, s+n) into out. -1 on a bad entity
 * or a NUL byte. */
int wv_s3_xml_unescape(wv_buf *out, const char *s, size_t n);

/* Append s escaped for XML text (&, <, >, ", '). */
void wv_s3_xml_escape(wv_buf *out, const char *s);

typedef struct wv_s3_list_entry {
    const char *key; /* full key as the store holds it, decoded */
    uint64_t size;
    int64_t mtime; /* seconds since the epoch, from LastModified */
} wv_s3_list_entry;

/* Called once per <Contents>; a non-zero return stops parsing and is returned. */
typedef int (*wv_s3_list_fn)(void *arg, const wv_s3_list_entry *e);

/*
 * Parse one ListObjectsV2 response. *truncated is set from IsTruncated; next_token (replaced) from
 * NextContinuationToken. Returns 0, the callback's non-zero value, or WV_EFORMAT (with err) when
 * the document is not a well-formed ListBucketResult (missing Key/Size, bad number or date, a
 * truncated listing without a continuation token).
 */
int wv_s3_parse_list(const char *xml, size_t len, wv_s3_list_fn fn, void *arg, int *truncated,
                     wv_buf *next_token, wv_err *err);

/* "2009-10-12T17:50:30.000Z" (ISO 8601, UTC, optional fraction) -> seconds. -1 if malformed. */
int wv_s3_parse_iso8601(const char *s, int64_t *out);

/* "Wed, 12 Oct 2009 17:50:00 GMT" (RFC 7231) -> seconds. -1 if malformed. */
int wv_s3_parse_http_date(const char *s, int64_t *out);

#endif
