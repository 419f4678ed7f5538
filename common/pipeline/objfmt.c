/*
 * objfmt.c - encode and validate object headers and trailers (layout in objfmt.h).
 *
 * Decoding checks in an order that keeps the error classes honest: length, magic and check first
 * (anything wrong there is damage: WV_ECORRUPT), then the version (an intact newer one is
 * WV_EFORMAT), then every field of this version.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "pipeline/objfmt.h"

#include "core/bytes.h"
#include "pipeline/crypt.h"
#include "pipeline/filter.h"

#define HDR_CHECK_OFF    60
#define HDR_NAMELEN_OFF  36
#define HDR_KEYMODE_OFF  38
#define TRL_CHECK_OFF    124
#define TRL_VERSION_OFF  80
#define TRL_RESERVED_OFF 86

/* The first 4 bytes of SHA-256 of p[0..len), as a little-endian u32. */
static uint32_t check_of(const uint8_t *p, size_t len)
{
    uint8_t md[32];
    wv_sha256(p, len, md);
    return wv_get_le32(md);
}

static int all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Shared by header and trailer: values this version knows. Returns NULL or what is wrong. */
static const char *bad_field(uint8_t compression, uint8_t cipher, uint8_t digest, uint8_t kind,
                             char *buf, size_t cap)
{
    if (compression > WV_OBJ_COMPRESS_LZ4)
        snprintf(buf, cap, "unknown compression %u", compression);
    else if (cipher > WV_OBJ_CIPHER_AES256GCM)
        snprintf(buf, cap, "unknown cipher %u", cipher);
    else if (digest != WV_OBJ_DIGEST_SHA256)
        snprintf(buf, cap, "unknown digest %u", digest);
    else if (kind > WV_OBJ_KIND_MAX)
        snprintf(buf, cap, "unknown object kind %u", kind);
    else
        return NULL;
    return buf;
}

static int newer_version(wv_err *err, const char *part, unsigned version)
{
    wv_err_set(err, WV_EFORMAT,
               "object %s has format version %u, written by a newer walvault (this one reads "
               "versions 1 to %d)",
               part, version, WV_OBJ_VERSION_MAX);
    return wv_err_hint(err, "upgrade walvault to read this repository");
}

static int unknown_value(wv_err *err, const char *part, const char *what)
{
    wv_err_set(err, WV_EFORMAT, "object %s: %s, written by a newer walvault?", part, what);
    return wv_err_hint(err, "upgrade walvault to read this repository");
}

void wv_obj_header_init(wv_obj_header *h, uint8_t kind, uint8_t compression)
{
    memset(h, 0, sizeof(*h));
    h->version = WV_OBJ_VERSION;
    h->compression = compression;
    h->cipher = WV_OBJ_CIPHER_NONE;
    h->digest = WV_OBJ_DIGEST_SHA256;
    h->kind = kind;
}

void wv_obj_header_set_crypt(wv_obj_header *h, uint8_t key_mode, uint64_t key_id,
                             const uint8_t salt[16], const uint8_t *eph_pub)
{
    h->version = WV_OBJ_VERSION_CRYPT;
    h->cipher = WV_OBJ_CIPHER_AES256GCM;
    h->key_mode = key_mode;
    h->key_id = key_id;
    memcpy(h->salt, salt, sizeof(h->salt));
    if (eph_pub)
        memcpy(h->eph_pub, eph_pub, sizeof(h->eph_pub));
    else
        memset(h->eph_pub, 0, sizeof(h->eph_pub));
}

/* Header length for a version and name length. */
static size_t header_length(uint16_t version, size_t name_len)
{
    if (version == 1)
        return WV_OBJ_HEADER_SIZE;
    return WV_OBJ_HEADER_SIZE + name_len + (version >= 3 ? WV_OBJ_CRYPT_EXT : 0) + 4;
}

/* Version 3 needs a cipher and a key mode, and the others neither. */
static const char *bad_crypt(uint16_t version, uint8_t cipher, uint8_t key_mode)
{
    if (version >= 3 && cipher != WV_OBJ_CIPHER_AES256GCM)
        return "a version-3 object without a cipher";
    if (version >= 3 && key_mode != WV_OBJ_KEYMODE_SYMMETRIC && key_mode != WV_OBJ_KEYMODE_X25519)
        return "an unknown key mode";
    if (version < 3 && (cipher != WV_OBJ_CIPHER_NONE || key_mode != 0))
        return "a cipher in a version-1 or version-2 object";
    return NULL;
}

int wv_obj_header_bind(wv_obj_header *h, const char *name, wv_err *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n > WV_OBJ_NAME_MAX)
        return wv_err_set(err, WV_EINTERNAL,
                          "cannot bind an object to \"%.64s...\": %zu bytes, more than %d", name, n,
                          WV_OBJ_NAME_MAX);
    memset(h->name, 0, sizeof(h->name));
    if (n)
        memcpy(h->name, name, n);
    h->name_len = (uint16_t)n;
    return 0;
}

size_t wv_obj_header_length(const wv_obj_header *h)
{
    return header_length(h->version, h->name_len);
}

size_t wv_obj_header_declared_length(const uint8_t *buf)
{
    size_t n = wv_get_le16(buf + 10);
    return n > WV_OBJ_HEADER_MAX ? WV_OBJ_HEADER_MAX : n;
}

int wv_obj_header_encode(const wv_obj_header *h, uint8_t *out, wv_err *err)
{
    char why[64];
    const char *bad;
    if (h->version != 1 && h->version != WV_OBJ_VERSION && h->version != WV_OBJ_VERSION_CRYPT)
        return wv_err_set(err, WV_EINTERNAL, "cannot write object format version %u", h->version);
    if (bad_field(h->compression, h->cipher, h->digest, h->kind, why, sizeof(why)))
        return wv_err_set(err, WV_EINTERNAL, "cannot write object header: %s", why);
    if ((bad = bad_crypt(h->version, h->cipher, h->key_mode)))
        return wv_err_set(err, WV_EINTERNAL, "cannot write object header: %s", bad);
    if (h->version == 1 && h->name_len)
        return wv_err_set(err, WV_EINTERNAL, "a version-1 object header cannot be bound");
    if (h->name_len > WV_OBJ_NAME_MAX || memchr(h->name, 0, h->name_len))
        return wv_err_set(err, WV_EINTERNAL, "cannot write object header: bad bound name");
    size_t len = wv_obj_header_length(h);
    memset(out, 0, len);
    memcpy(out, WV_OBJ_HEADER_MAGIC, 8);
    wv_put_le16(out + 8, h->version);
    wv_put_le16(out + 10, (uint16_t)len);
    out[12] = h->compression;
    out[13] = h->cipher;
    out[14] = h->digest;
    out[15] = h->kind;
    wv_put_le64(out + 16, h->key_id);
    memcpy(out + 24, h->nonce, 12);
    if (h->version >= 2)
        wv_put_le16(out + HDR_NAMELEN_OFF, h->name_len);
    if (h->version >= 3)
        out[HDR_KEYMODE_OFF] = h->key_mode;
    wv_put_le32(out + HDR_CHECK_OFF, check_of(out, HDR_CHECK_OFF));
    if (h->version >= 2) {
        size_t at = WV_OBJ_HEADER_SIZE;
        memcpy(out + at, h->name, h->name_len);
        at += h->name_len;
        if (h->version >= 3) {
            memcpy(out + at, h->salt, 16);
            memcpy(out + at + 16, h->eph_pub, 32);
            at += WV_OBJ_CRYPT_EXT;
        }
        wv_put_le32(out + at, check_of(out, at));
    }
    return 0;
}

int wv_obj_header_decode(const uint8_t *buf, size_t len, wv_obj_header *h, wv_err *err)
{
    char why[64];
    if (len < WV_OBJ_HEADER_SIZE)
        return wv_err_set(err, WV_ECORRUPT, "truncated object header: %zu of %d bytes", len,
                          WV_OBJ_HEADER_SIZE);
    if (memcmp(buf, WV_OBJ_HEADER_MAGIC, 8) != 0)
        return wv_err_set(err, WV_ECORRUPT,
                          "bad object header magic: not a walvault object, or a corrupt one");
    if (wv_get_le32(buf + HDR_CHECK_OFF) != check_of(buf, HDR_CHECK_OFF))
        return wv_err_set(err, WV_ECORRUPT, "object header check mismatch: the header is corrupt");
    uint16_t version = wv_get_le16(buf + 8);
    const char *bad;
    if (version > WV_OBJ_VERSION_MAX)
        return newer_version(err, "header", version);
    if (version == 0)
        return wv_err_set(err, WV_ECORRUPT, "bad object format version 0");
    uint16_t name_len = version >= 2 ? wv_get_le16(buf + HDR_NAMELEN_OFF) : 0;
    if (name_len > WV_OBJ_NAME_MAX)
        return wv_err_set(err, WV_ECORRUPT, "bad object bound name length %u (at most %d)",
                          name_len, WV_OBJ_NAME_MAX);
    size_t expect = header_length(version, name_len);
    if (wv_get_le16(buf + 10) != expect)
        return wv_err_set(err, WV_ECORRUPT,
                          "bad object header length %u (expected %zu for format version %u)",
                          wv_get_le16(buf + 10), expect, version);
    if (bad_field(buf[12], buf[13], buf[14], buf[15], why, sizeof(why)))
        return unknown_value(err, "header", why);
    uint8_t key_mode = version >= 3 ? buf[HDR_KEYMODE_OFF] : 0;
    if (version >= 3 && key_mode > WV_OBJ_KEYMODE_X25519)
        return unknown_value(err, "header", "an unknown key mode");
    if ((bad = bad_crypt(version, buf[13], key_mode)))
        return wv_err_set(err, WV_ECORRUPT, "bad object header: %s", bad);
    size_t reserved = version >= 3   ? HDR_KEYMODE_OFF + 1
                      : version >= 2 ? HDR_NAMELEN_OFF + 2
                                     : HDR_NAMELEN_OFF;
    if (!all_zero(buf + reserved, HDR_CHECK_OFF - reserved))
        return wv_err_set(err, WV_ECORRUPT, "object header has reserved bytes set");
    if (len < expect)
        return wv_err_set(err, WV_ECORRUPT, "truncated object header: %zu of %zu bytes", len,
                          expect);
    if (version >= 2) {
        size_t at = expect - 4;
        if (wv_get_le32(buf + at) != check_of(buf, at))
            return wv_err_set(err, WV_ECORRUPT,
                              "object header name check mismatch: the bound name is corrupt");
        if (memchr(buf + WV_OBJ_HEADER_SIZE, 0, name_len))
            return wv_err_set(err, WV_ECORRUPT, "object bound name holds a NUL byte");
    }
    memset(h, 0, sizeof(*h));
    h->version = version;
    h->compression = buf[12];
    h->cipher = buf[13];
    h->digest = buf[14];
    h->kind = buf[15];
    h->key_id = wv_get_le64(buf + 16);
    memcpy(h->nonce, buf + 24, 12);
    h->name_len = name_len;
    memcpy(h->name, buf + WV_OBJ_HEADER_SIZE, name_len);
    if (version >= 3) {
        h->key_mode = key_mode;
        memcpy(h->salt, buf + WV_OBJ_HEADER_SIZE + name_len, 16);
        memcpy(h->eph_pub, buf + WV_OBJ_HEADER_SIZE + name_len + 16, 32);
    }
    return 0;
}

int wv_obj_check_binding(const wv_obj_header *h, const char *key, int *unbound, wv_err *err)
{
    if (unbound)
        *unbound = h->name_len == 0;
    if (h->name_len == 0 || !key)
        return 0;
    if (strlen(key) == h->name_len && memcmp(key, h->name, h->name_len) == 0)
        return 0;
    wv_err_set(err, WV_ECORRUPT,
               "\"%s\" holds the object stored as \"%s\": it was renamed or copied wrongly", key,
               h->name);
    return wv_err_names(err, NULL, key);
}

void wv_obj_info_init(wv_obj_info *info)
{
    memset(info, 0, sizeof(*info));
    info->first_commit_us = WV_OBJ_TIME_NONE;
    info->last_commit_us = WV_OBJ_TIME_NONE;
    info->version = WV_OBJ_VERSION;
    info->digest = WV_OBJ_DIGEST_SHA256;
}

int wv_obj_trailer_encode(const wv_obj_info *info, uint8_t out[WV_OBJ_TRAILER_SIZE], wv_err *err)
{
    char why[64];
    if (info->version != 1 && info->version != WV_OBJ_VERSION &&
        info->version != WV_OBJ_VERSION_CRYPT)
        return wv_err_set(err, WV_EINTERNAL, "cannot write object format version %u",
                          info->version);
    if (bad_field(info->compression, info->cipher, info->digest, info->kind, why, sizeof(why)))
        return wv_err_set(err, WV_EINTERNAL, "cannot write object trailer: %s", why);
    if ((info->version >= 3) != (info->cipher != WV_OBJ_CIPHER_NONE))
        return wv_err_set(err, WV_EINTERNAL,
                          "cannot write object trailer: cipher and version "
                          "disagree");
    memset(out, 0, WV_OBJ_TRAILER_SIZE);
    memcpy(out, WV_OBJ_TRAILER_MAGIC, 8);
    wv_put_le64(out + 16, info->payload_size);
    if (info->version >= 3) {
        /* what is secret is in the sealed metadata block */
        memcpy(out + 24, info->keyed_digest, 32);
    } else {
        wv_put_le64(out + 8, info->plain_size);
        memcpy(out + 24, info->sha256, 32);
        wv_put_le64(out + 56, (uint64_t)info->first_commit_us);
        wv_put_le64(out + 64, (uint64_t)info->last_commit_us);
        wv_put_le32(out + 72, info->commit_count);
        wv_put_le32(out + 76, info->restore_point_count);
    }
    wv_put_le16(out + TRL_VERSION_OFF, info->version);
    out[82] = info->compression;
    out[83] = info->cipher;
    out[84] = info->digest;
    out[85] = info->kind;
    wv_put_le32(out + TRL_CHECK_OFF, check_of(out, TRL_CHECK_OFF));
    return 0;
}

int wv_obj_trailer_decode(const uint8_t *buf, size_t len, wv_obj_info *info, wv_err *err)
{
    char why[64];
    if (len < WV_OBJ_TRAILER_SIZE)
        return wv_err_set(err, WV_ECORRUPT, "truncated object trailer: %zu of %d bytes", len,
                          WV_OBJ_TRAILER_SIZE);
    const uint8_t *t = buf + (len - WV_OBJ_TRAILER_SIZE);
    if (memcmp(t, WV_OBJ_TRAILER_MAGIC, 8) != 0)
        return wv_err_set(err, WV_ECORRUPT,
                          "bad object trailer magic: the object is truncated or corrupt");
    if (wv_get_le32(t + TRL_CHECK_OFF) != check_of(t, TRL_CHECK_OFF))
        return wv_err_set(err, WV_ECORRUPT,
                          "object trailer check mismatch: the trailer is corrupt");
    uint16_t version = wv_get_le16(t + TRL_VERSION_OFF);
    if (version > WV_OBJ_VERSION_MAX)
        return newer_version(err, "trailer", version);
    if (version == 0)
        return wv_err_set(err, WV_ECORRUPT, "bad object trailer format version 0");
    if (bad_field(t[82], t[83], t[84], t[85], why, sizeof(why)))
        return unknown_value(err, "trailer", why);
    if (!all_zero(t + TRL_RESERVED_OFF, TRL_CHECK_OFF - TRL_RESERVED_OFF))
        return wv_err_set(err, WV_ECORRUPT, "object trailer has reserved bytes set");
    const char *bad = bad_crypt(version, t[83], version >= 3 ? WV_OBJ_KEYMODE_SYMMETRIC : 0);
    if (bad)
        return wv_err_set(err, WV_ECORRUPT, "bad object trailer: %s", bad);
    if (version >= 3) {
        if (!all_zero(t + 8, 8) || !all_zero(t + 56, 24))
            return wv_err_set(err, WV_ECORRUPT, "encrypted object trailer has sealed fields set");
        if (wv_get_le64(t + 16) < WV_OBJ_META_SIZE + WV_CRYPT_TAG_SIZE)
            return wv_err_set(err, WV_ECORRUPT,
                              "encrypted object payload of %" PRIu64 " bytes is too short",
                              wv_get_le64(t + 16));
        memset(info, 0, sizeof(*info));
        info->payload_size = wv_get_le64(t + 16);
        memcpy(info->keyed_digest, t + 24, 32);
        info->first_commit_us = WV_OBJ_TIME_NONE;
        info->last_commit_us = WV_OBJ_TIME_NONE;
        info->sealed = 1;
        info->version = version;
        info->compression = t[82];
        info->cipher = t[83];
        info->digest = t[84];
        info->kind = t[85];
        return 0;
    }
    memset(info->keyed_digest, 0, sizeof(info->keyed_digest));
    info->sealed = 0;
    info->plain_size = wv_get_le64(t + 8);
    info->payload_size = wv_get_le64(t + 16);
    memcpy(info->sha256, t + 24, 32);
    info->first_commit_us = (int64_t)wv_get_le64(t + 56);
    info->last_commit_us = (int64_t)wv_get_le64(t + 64);
    info->commit_count = wv_get_le32(t + 72);
    info->restore_point_count = wv_get_le32(t + 76);
    info->version = version;
    info->compression = t[82];
    info->cipher = t[83];
    info->digest = t[84];
    info->kind = t[85];
    info->header_size = 0;
    return 0;
}

/* --- version 3: the metadata block ---------------------------------------------------------- */

static void meta_public(const wv_obj_header *h, uint8_t out[WV_OBJ_META_PUBLIC])
{
    memset(out, 0, WV_OBJ_META_PUBLIC);
    memcpy(out, WV_OBJ_META_MAGIC, 8);
    out[8] = h->key_mode;
    out[9] = h->compression;
    out[10] = h->kind;
    wv_put_le64(out + 16, h->key_id);
    memcpy(out + 24, h->salt, 16);
    memcpy(out + 40, h->eph_pub, 32);
}

int wv_obj_meta_encode(const wv_obj_header *h, const wv_obj_info *info, const uint8_t meta_key[32],
                       uint8_t out[WV_OBJ_META_SIZE], wv_err *err)
{
    uint8_t plain[WV_OBJ_META_SEALED];
    if (h->version < 3)
        return wv_err_set(err, WV_EINTERNAL, "a metadata block needs a version-3 header");
    meta_public(h, out);
    wv_put_le64(plain, info->plain_size);
    memcpy(plain + 8, info->sha256, 32);
    wv_put_le64(plain + 40, (uint64_t)info->first_commit_us);
    wv_put_le64(plain + 48, (uint64_t)info->last_commit_us);
    wv_put_le32(plain + 56, info->commit_count);
    wv_put_le32(plain + 60, info->restore_point_count);
    int rc = wv_crypt_seal_once(meta_key, NULL, out, WV_OBJ_META_PUBLIC, plain, sizeof(plain),
                                out + WV_OBJ_META_PUBLIC, err);
    OPENSSL_cleanse(plain, sizeof(plain));
    return rc;
}

/* The metadata block of the object whose trailer ends buf[0..len). */
static const uint8_t *meta_at(const uint8_t *buf, size_t len, wv_err *err)
{
    if (len < WV_OBJ_SUFFIX_MAX) {
        wv_err_set(err, WV_ECORRUPT, "truncated encrypted object: %zu bytes, less than %d", len,
                   WV_OBJ_SUFFIX_MAX);
        return NULL;
    }
    const uint8_t *m = buf + len - WV_OBJ_SUFFIX_MAX;
    if (memcmp(m, WV_OBJ_META_MAGIC, 8) != 0) {
        wv_err_set(err, WV_ECORRUPT, "bad object metadata block magic: the object is corrupt");
        return NULL;
    }
    return m;
}

int wv_obj_meta_public(const uint8_t *buf, size_t len, const char *name, wv_obj_header *h,
                       wv_err *err)
{
    const uint8_t *m = meta_at(buf, len, err);
    char why[64];
    if (!m)
        return WV_ECORRUPT;
    if (m[8] != WV_OBJ_KEYMODE_SYMMETRIC && m[8] != WV_OBJ_KEYMODE_X25519)
        return unknown_value(err, "metadata block", "an unknown key mode");
    if (bad_field(m[9], WV_OBJ_CIPHER_AES256GCM, WV_OBJ_DIGEST_SHA256, m[10], why, sizeof(why)))
        return unknown_value(err, "metadata block", why);
    if (!all_zero(m + 11, 5))
        return wv_err_set(err, WV_ECORRUPT, "object metadata block has reserved bytes set");
    wv_obj_header_init(h, m[10], m[9]);
    int rc = wv_obj_header_bind(h, name, err);
    if (rc < 0)
        return rc;
    wv_obj_header_set_crypt(h, m[8], wv_get_le64(m + 16), m + 24, m + 40);
    return 0;
}

int wv_obj_meta_open(const uint8_t *buf, size_t len, const uint8_t meta_key[32], wv_obj_info *info,
                     wv_err *err)
{
    uint8_t plain[WV_OBJ_META_SEALED];
    const uint8_t *m = meta_at(buf, len, err);
    if (!m)
        return WV_ECORRUPT;
    if (wv_crypt_open_once(meta_key, m, WV_OBJ_META_PUBLIC, m + WV_OBJ_META_PUBLIC,
                           WV_OBJ_META_SIZE - WV_OBJ_META_PUBLIC, plain, err) < 0) {
        wv_err_set(err, WV_ECORRUPT,
                   "the object's metadata block does not authenticate: it was changed or moved, "
                   "or is read with another key");
        return WV_ECORRUPT;
    }
    info->plain_size = wv_get_le64(plain);
    memcpy(info->sha256, plain + 8, 32);
    info->first_commit_us = (int64_t)wv_get_le64(plain + 40);
    info->last_commit_us = (int64_t)wv_get_le64(plain + 48);
    info->commit_count = wv_get_le32(plain + 56);
    info->restore_point_count = wv_get_le32(plain + 60);
    info->sealed = 0;
    OPENSSL_cleanse(plain, sizeof(plain));
    return 0;
}

const char *wv_obj_kind_name(uint8_t kind)
{
    static const char *const names[] = {
        [WV_OBJ_KIND_GENERIC] = "generic",
        [WV_OBJ_KIND_WAL] = "wal segment",
        [WV_OBJ_KIND_PARTIAL] = "partial wal segment",
        [WV_OBJ_KIND_HISTORY] = "timeline history",
        [WV_OBJ_KIND_BACKUP_HISTORY] = "backup history",
        [WV_OBJ_KIND_BACKUP_FILE] = "backup file",
        [WV_OBJ_KIND_MANIFEST] = "manifest",
        [WV_OBJ_KIND_REPO_INFO] = "repository info",
    };
    return kind <= WV_OBJ_KIND_MAX ? names[kind] : "unknown";
}
