/*
 * objfmt.h - the on-repository object format: versioned and self-describing.
 *
 * Every stored object is HEADER (64 bytes in version 1, 64 + N + 4 in version 2) + PAYLOAD +
 * TRAILER (128 bytes), all integers little-endian. The payload is the plain content after
 * compression (and, later, encryption).
 *
 * Header:
 *    0  8  magic "\x89WVOBJ\r\n"
 *    8  u16 format version (2; 1 is still read)
 *   10  u16 header length (version 1: 64; version 2: 64 + N + 4)
 *   12  u8  compression (WV_OBJ_COMPRESS_*)
 *   13  u8  cipher (WV_OBJ_CIPHER_*)
 *   14  u8  digest (WV_OBJ_DIGEST_SHA256)
 *   15  u8  kind (WV_OBJ_KIND_*)
 *   16  u64 key id (0 = none)
 *   24  12  nonce
 *   36  u16 version 2: N, the length of the bound name (0..WV_OBJ_NAME_MAX); version 1: zero
 *   38  22  reserved, zero
 *   60  u32 check: the first 4 bytes of SHA-256 of bytes 0..59
 * Version 2 only:
 *   64  N   the bound name: the key the object was stored under (no NUL byte); N = 0: not bound
 * 64+N  u32 name check: the first 4 bytes of SHA-256 of bytes 0..64+N-1
 *
 * The binding makes an object say what it is: a reader that asks for key K checks that the object
 * was stored as K (wv_obj_check_binding), so a segment renamed or copied under another segment's
 * name is corruption, not content. It is no authentication: anyone who can write the repository
 * can write a matching header (that is the encryption's job).
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

#define WV_OBJ_HEADER_SIZE   64 /* the fixed part; all of a version-1 header */
#define WV_OBJ_TRAILER_SIZE  128
#define WV_OBJ_VERSION       2
#define WV_OBJ_NAME_MAX      512
#define WV_OBJ_HEADER_MAX    (WV_OBJ_HEADER_SIZE + WV_OBJ_NAME_MAX + 4)
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
    uint16_t version; /* WV_OBJ_VERSION (1 only to write old objects in tests) */
    uint8_t compression;
    uint8_t cipher;
    uint8_t digest;
    uint8_t kind;
    uint64_t key_id;
    uint8_t nonce[12];
    uint16_t name_len;              /* version 2: length of the bound name, 0 = not bound */
    char name[WV_OBJ_NAME_MAX + 1]; /* the bound name, NUL-terminated */
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
    /* Not in the trailer: the header's length, known to whoever wrote or read the object whole
     * (0 after a trailer decode alone). Stored size = header_size + payload_size + trailer. */
    uint32_t header_size;
} wv_obj_info;

/* A version-2 header, not bound, with no cipher and SHA-256 digest. */
void wv_obj_header_init(wv_obj_header *h, uint8_t kind, uint8_t compression);

/* Bind the header to name (the key it is stored under). WV_EINTERNAL if name is longer than
 * WV_OBJ_NAME_MAX. NULL or "" unbinds. */
int wv_obj_header_bind(wv_obj_header *h, const char *name, wv_err *err);

/* The encoded length of h: 64 for version 1, 64 + name_len + 4 for version 2. */
size_t wv_obj_header_length(const wv_obj_header *h);

/* Encode into out (wv_obj_header_length(h) bytes, at most WV_OBJ_HEADER_MAX); versions 1 and 2.
 * WV_EINTERNAL for a field value this version does not know. */
int wv_obj_header_encode(const wv_obj_header *h, uint8_t *out, wv_err *err);

/* The header length an encoded header declares (bytes 10..11 of at least 64 bytes), unchecked,
 * clamped to WV_OBJ_HEADER_MAX: how many bytes a reader needs before wv_obj_header_decode. */
size_t wv_obj_header_declared_length(const uint8_t *buf);

/* Decode and fully validate the header at the start of buf (len bytes: at least the header's
 * length). WV_ECORRUPT if len is too short, a magic or check is wrong, the length does not fit
 * the version or a reserved byte is set; WV_EFORMAT for an intact header of a newer version or
 * with a value this version does not know. */
int wv_obj_header_decode(const uint8_t *buf, size_t len, wv_obj_header *h, wv_err *err);

/* Check that header h (of the object read as `key`) is bound to `key`. 0 if it is, or if h is not
 * bound (version 1, or version 2 without a name: *unbound, when not NULL, is set to 1);
 * WV_ECORRUPT naming both names otherwise. */
int wv_obj_check_binding(const wv_obj_header *h, const char *key, int *unbound, wv_err *err);

/* Zero sizes and counts, no commit times, version 2, SHA-256, no compression/cipher. */
void wv_obj_info_init(wv_obj_info *info);

/* Encode a trailer (versions 1 and 2: the same layout); WV_EINTERNAL for an unknown field
 * value. */
int wv_obj_trailer_encode(const wv_obj_info *info, uint8_t out[WV_OBJ_TRAILER_SIZE], wv_err *err);

/* Decode and fully validate the LAST WV_OBJ_TRAILER_SIZE bytes of buf (len >= that, e.g. a suffix
 * read). Same error classes as wv_obj_header_decode. */
int wv_obj_trailer_decode(const uint8_t *buf, size_t len, wv_obj_info *info, wv_err *err);

/* "wal segment", "manifest", ...; "unknown" for an unknown kind. */
const char *wv_obj_kind_name(uint8_t kind);

#endif
