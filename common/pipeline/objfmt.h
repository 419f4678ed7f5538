/*
 * objfmt.h - the on-repository object format: versioned and self-describing.
 *
 * Every stored object is HEADER (64 bytes) + PAYLOAD + TRAILER (128 bytes), all integers
 * little-endian. The payload is the plain content after compression (and, later, encryption).
 *
 * Header:
 *    0  8  magic "\x89WVOBJ\r\n"
 *    8  u16 format version (1)
 *   10  u16 header length (64)
 *   12  u8  compression (WV_OBJ_COMPRESS_*)
 *   13  u8  cipher (WV_OBJ_CIPHER_*)
 *   14  u8  digest (WV_OBJ_DIGEST_SHA256)
 *   15  u8  kind (WV_OBJ_KIND_*)
 *   16  u64 key id (0 = none)
 *   24  12  nonce
 *   36  24  reserved, zero
 *   60  u32 check: the first 4 bytes of SHA-256 of bytes 0..59
 *
 * Trailer (at the end, so that one 128-byte suffix read tells the size and digest of an object):
 *    0  8  magic "\x89WVEND\r\n"
 *    8  u64 plain size
 *   16  u64 payload size
 *   24  32  SHA-256 of the plain content
 *   56  i64 first commit time (unix microseconds; WV_OBJ_TIME_NONE = none)
 *   64  i64 last commit time
 *   72  u32 commit count
 *   76  u32 restore point count
 *   80  u16 format version, 82 u8 compression, 83 u8 cipher, 84 u8 digest, 85 u8 kind: copies of
 *       the header's, so that a suffix read alone is self-describing (a reader checks they agree)
 *   86  38  reserved, zero
 *  124  u32 check: the first 4 bytes of SHA-256 of bytes 0..123
 *
 * Frozen across versions: the magics, the version fields and the checks at the end of the first 64
 * header bytes and of the trailer. So a damaged header or trailer is always reported as
 * WV_ECORRUPT, and an intact one of a newer version as WV_EFORMAT ("written by a newer walvault").
 */
#ifndef WALVAULT_PIPELINE_OBJFMT_H
#define WALVAULT_PIPELINE_OBJFMT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WV_OBJ_HEADER_SIZE   64
#define WV_OBJ_TRAILER_SIZE  128
#define WV_OBJ_VERSION       1
#define WV_OBJ_HEADER_MAGIC  "\x89WVOBJ\r\n"
#define WV_OBJ_TRAILER_MAGIC "\x89WVEND\r\n"
#define WV_OBJ_TIME_NONE     INT64_MIN

enum { WV_OBJ_COMPRESS_NONE = 0, WV_OBJ_COMPRESS_LZ4 = 1 };
enum { WV_OBJ_CIPHER_NONE = 0, WV_OBJ_CIPHER_AES256GCM = 1 /* reserved */ };
enum { WV_OBJ_DIGEST_SHA256 = 1 };
enum {
    WV_OBJ_KIND_GENERIC = 0,
    WV_OBJ_KIND_WAL = 1,
    WV_OBJ_KIND_PARTIAL = 2,
    WV_OBJ_KIND_HISTORY = 3,
    WV_OBJ_KIND_BACKUP_HISTORY = 4,
    WV_OBJ_KIND_BACKUP_FILE = 5,
    WV_OBJ_KIND_MANIFEST = 6,
    WV_OBJ_KIND_REPO_INFO = 7,
    WV_OBJ_KIND_MAX = 7,
};

typedef struct wv_obj_header {
    uint16_t version; /* WV_OBJ_VERSION */
    uint8_t compression;
    uint8_t cipher;
    uint8_t digest;
    uint8_t kind;
    uint64_t key_id;
    uint8_t nonce[12];
} wv_obj_header;

/* What the trailer says about an object (with copies of the header's format fields). */
typedef struct wv_obj_info {
    uint64_t plain_size;
    uint64_t payload_size;
    uint8_t sha256[32];
    int64_t first_commit_us; /* WV_OBJ_TIME_NONE if none */
    int64_t last_commit_us;
    uint32_t commit_count;
    uint32_t restore_point_count;
    uint16_t version;
    uint8_t compression;
    uint8_t cipher;
    uint8_t digest;
    uint8_t kind;
} wv_obj_info;

/* A version-1 header with no cipher and SHA-256 digest. */
void wv_obj_header_init(wv_obj_header *h, uint8_t kind, uint8_t compression);

/* Encode (version 1 only); WV_EINTERNAL for a field value this version does not know. */
int wv_obj_header_encode(const wv_obj_header *h, uint8_t out[WV_OBJ_HEADER_SIZE], wv_err *err);

/* Decode and fully validate the first WV_OBJ_HEADER_SIZE bytes of buf. WV_ECORRUPT if len is too
 * short, the magic or the check is wrong or a reserved byte is set; WV_EFORMAT for an intact header
 * of a newer version or with a value this version does not know. */
int wv_obj_header_decode(const uint8_t *buf, size_t len, wv_obj_header *h, wv_err *err);

/* Zero sizes and counts, no commit times, version 1, SHA-256, no compression/cipher. */
void wv_obj_info_init(wv_obj_info *info);

/* Encode a trailer (version 1 only); WV_EINTERNAL for an unknown field value. */
int wv_obj_trailer_encode(const wv_obj_info *info, uint8_t out[WV_OBJ_TRAILER_SIZE], wv_err *err);

/* Decode and fully validate the LAST WV_OBJ_TRAILER_SIZE bytes of buf (len >= that, e.g. a suffix
 * read). Same error classes as wv_obj_header_decode. */
int wv_obj_trailer_decode(const uint8_t *buf, size_t len, wv_obj_info *info, wv_err *err);

/* "wal segment", "manifest", ...; "unknown" for an unknown kind. */
const char *wv_obj_kind_name(uint8_t kind);

#endif
