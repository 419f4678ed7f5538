/*
 * objfmt.h - the on-repository object format: versioned and self-describing.
 *
 * Every stored object is HEADER (64 bytes in version 1, 64 + N + 4 in version 2, 64 + N + 52 in
 * version 3) + PAYLOAD + TRAILER (128 bytes), all integers little-endian. The payload is the plain
 * content after compression (and, in version 3, encryption, followed by the sealed metadata block).
 * Version 3 is written for encrypted objects only; with encryption off version 2 is written as
 * before, and versions 1 and 2 stay readable.
 *
 * Header:
 *    0  8  magic "\x89WVOBJ\r\n"
 *    8  u16 format version (2, or 3 when encrypted; 1 is still read)
 *   10  u16 header length (version 1: 64; version 2: 64 + N + 4; version 3: 64 + N + 52)
 *   12  u8  compression (WV_OBJ_COMPRESS_*)
 *   13  u8  cipher (WV_OBJ_CIPHER_*)
 *   14  u8  digest (WV_OBJ_DIGEST_SHA256)
 *   15  u8  kind (WV_OBJ_KIND_*)
 *   16  u64 key id (0 = none; version 3: the id of the key the object is encrypted for)
 *   24  12  nonce (zero: version 3 derives a key per object, and its chunk nonces, crypt.h)
 *   36  u16 versions 2 and 3: N, the length of the bound name (0..WV_OBJ_NAME_MAX); version 1: zero
 *   38  u8  version 3: key mode (WV_OBJ_KEYMODE_*); else zero
 *   39  21  reserved, zero
 *   60  u32 check: the first 4 bytes of SHA-256 of bytes 0..59
 * Versions 2 and 3:
 *   64  N   the bound name: the key the object was stored under (no NUL byte); N = 0: not bound
 * Version 3 only:
 * 64+N  16  the per-object salt (HKDF, crypt.h)
 * 80+N  32  key mode X25519: the ephemeral public key; symmetric: zero
 * Versions 2 and 3, at the end of the header (64+N in version 2, 112+N in version 3):
 *       u32 name check: the first 4 bytes of SHA-256 of every header byte before it
 *
 * Version 3, encrypted: the whole encoded header is the associated data of the object's key
 * derivation (crypt.h), so any header byte changed, or the object stored under another name, makes
 * it fail to open. The payload is the sealed chunk stream of the (compressed) content followed by
 * the metadata block (WV_OBJ_META_SIZE bytes, counted in the payload size):
 *    0  8  magic "\x89WVMETA\n"
 *    8  u8 key mode, 9 u8 compression, 10 u8 kind, 11 5 reserved zero
 *   16  u64 key id
 *   24  16  salt
 *   40  32  ephemeral public key (zero in symmetric mode)
 *   72  12  nonce, 84 64 sealed, 148 16 tag: AES-256-GCM under the object's metadata key, with
 *           bytes 0..71 as associated data, of: u64 plain size, 32 SHA-256 of the plain content,
 *           i64 first and i64 last commit time, u32 commit count, u32 restore point count
 * Bytes 0..71 repeat what a reader needs, with the name it reads, to rebuild the header and derive
 * the keys, so one suffix read of WV_OBJ_SUFFIX_MAX bytes still tells everything about an object.
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
 * In version 3 the trailer keeps only what may be public: plain size, commit times and counts are
 * zero (they are in the sealed metadata block), and bytes 24..55 hold the keyed digest instead of
 * the SHA-256: HMAC-SHA256(digest key, SHA-256 of the plain content), with a key the writing hosts
 * hold (so an identical re-push is recognised without reading the object back, but the
 * repository alone cannot confirm a guess of the content).
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
#define WV_OBJ_VERSION       2 /* written with encryption off */
#define WV_OBJ_VERSION_CRYPT 3 /* written for encrypted objects */
#define WV_OBJ_VERSION_MAX   3 /* the newest this walvault reads */
#define WV_OBJ_NAME_MAX      512
#define WV_OBJ_CRYPT_EXT     48 /* version 3: salt and ephemeral public key */
#define WV_OBJ_HEADER_MAX    (WV_OBJ_HEADER_SIZE + WV_OBJ_NAME_MAX + WV_OBJ_CRYPT_EXT + 4)
#define WV_OBJ_META_SIZE     164
#define WV_OBJ_META_PUBLIC   72 /* the metadata block's public part (its associated data) */
#define WV_OBJ_META_SEALED   64
/* The suffix read that tells everything about an object of any version. */
#define WV_OBJ_SUFFIX_MAX    (WV_OBJ_META_SIZE + WV_OBJ_TRAILER_SIZE)
#define WV_OBJ_HEADER_MAGIC  "\x89WVOBJ\r\n"
#define WV_OBJ_TRAILER_MAGIC "\x89WVEND\r\n"
#define WV_OBJ_META_MAGIC    "\x89WVMETA\n"
#define WV_OBJ_TIME_NONE     INT64_MIN

enum { WV_OBJ_COMPRESS_NONE = 0, WV_OBJ_COMPRESS_LZ4 = 1 };
enum { WV_OBJ_CIPHER_NONE = 0, WV_OBJ_CIPHER_AES256GCM = 1 /* version 3 */ };
enum { WV_OBJ_KEYMODE_NONE = 0, WV_OBJ_KEYMODE_SYMMETRIC = 1, WV_OBJ_KEYMODE_X25519 = 2 };
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
    uint16_t version; /* WV_OBJ_VERSION, or WV_OBJ_VERSION_CRYPT (1 only to write old objects in
                         tests) */
    uint8_t compression;
    uint8_t cipher;
    uint8_t digest;
    uint8_t kind;
    uint64_t key_id;
    uint8_t nonce[12];
    uint16_t name_len;              /* version 2: length of the bound name, 0 = not bound */
    char name[WV_OBJ_NAME_MAX + 1]; /* the bound name, NUL-terminated */
    uint8_t key_mode;               /* version 3: WV_OBJ_KEYMODE_* */
    uint8_t salt[16];               /* version 3 */
    uint8_t eph_pub[32];            /* version 3, key mode X25519 */
} wv_obj_header;

/* What the trailer says about an object (with copies of the header's format fields). */
typedef struct wv_obj_info {
    uint64_t plain_size;
    uint64_t payload_size;
    uint8_t sha256[32]; /* version 3: known once the metadata block is opened */
    /* Version 3: the keyed digest (objfmt.h, trailer); zero otherwise. */
    uint8_t keyed_digest[32];
    /* Version 3 after a trailer decode alone: plain size, SHA-256, times and counts are not known
     * (zero) until wv_obj_meta_open. */
    int sealed;
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

/* Make h a version-3 (encrypted, AES-256-GCM) header for key_id in key_mode, with this salt and
 * (X25519) ephemeral public key (NULL: zero). */
void wv_obj_header_set_crypt(wv_obj_header *h, uint8_t key_mode, uint64_t key_id,
                             const uint8_t salt[16], const uint8_t *eph_pub);

/* Bind the header to name (the key it is stored under). WV_EINTERNAL if name is longer than
 * WV_OBJ_NAME_MAX. NULL or "" unbinds. */
int wv_obj_header_bind(wv_obj_header *h, const char *name, wv_err *err);

/* The encoded length of h: 64 for version 1, 64 + name_len + 4 for version 2, 64 + name_len + 52
 * for version 3. */
size_t wv_obj_header_length(const wv_obj_header *h);

/* Encode into out (wv_obj_header_length(h) bytes, at most WV_OBJ_HEADER_MAX); versions 1 to 3.
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

/* Encode a trailer (versions 1 and 2: the same layout; version 3 writes the keyed digest and
 * zeroes what is sealed); WV_EINTERNAL for an unknown field value. */
int wv_obj_trailer_encode(const wv_obj_info *info, uint8_t out[WV_OBJ_TRAILER_SIZE], wv_err *err);

/* Decode and fully validate the LAST WV_OBJ_TRAILER_SIZE bytes of buf (len >= that, e.g. a suffix
 * read). Same error classes as wv_obj_header_decode. */
int wv_obj_trailer_decode(const uint8_t *buf, size_t len, wv_obj_info *info, wv_err *err);

/*
 * The version-3 metadata block. wv_obj_meta_encode seals info's plain size, SHA-256, times and
 * counts for header h under meta_key (crypt.h: wv_crypt_meta_key). wv_obj_meta_public decodes the
 * public part of the block that ends `len` bytes of buf just before the trailer (a suffix read of
 * at least WV_OBJ_SUFFIX_MAX bytes, or the end of a whole object) into what a reader of `name`
 * needs: h is rebuilt as the header the object must have had (version 3, bound to name). Then
 * wv_obj_meta_open opens the sealed part into info (clearing info->sealed): WV_ECORRUPT if it does
 * not authenticate (changed, moved, or another key).
 */
int wv_obj_meta_encode(const wv_obj_header *h, const wv_obj_info *info, const uint8_t meta_key[32],
                       uint8_t out[WV_OBJ_META_SIZE], wv_err *err);
int wv_obj_meta_public(const uint8_t *buf, size_t len, const char *name, wv_obj_header *h,
                       wv_err *err);
int wv_obj_meta_open(const uint8_t *buf, size_t len, const uint8_t meta_key[32], wv_obj_info *info,
                     wv_err *err);

/* "wal segment", "manifest", ...; "unknown" for an unknown kind. */
const char *wv_obj_kind_name(uint8_t kind);

#endif
