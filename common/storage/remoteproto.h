/*
 * remoteproto.h - the framed binary protocol between the ssh storage driver and walvault-remote,
 * the helper that runs on the backup server. Both ends share this module.
 *
 * A frame is a 5-byte header, then the payload:
 *     u32 payload length (big-endian, at most WV_RP_MAX_PAYLOAD), u8 type
 * Integers in payloads are big-endian; a string is a u32 length then that many bytes (no NUL, at
 * most WV_RP_MAX_STR). DATA payloads are raw bytes, at most WV_RP_CHUNK.
 *
 * Session: the client sends HELLO (protocol version, walvault version); the helper answers
 * HELLO_OK (its versions) or ERROR (version mismatch, unusable repository) and exits. Then any
 * number of operations, one at a time:
 *     PUT(flags, key)              -> OK | ERROR; then DATA* and COMMIT -> OK | ERROR,
 *                                     or ABORT -> OK. The helper sends nothing while DATA flows.
 *     GET(offset, length, key)     -> STAT_OK(object size, mtime) DATA* END | ERROR (at any point)
 *     STAT(key)                    -> STAT_OK | ERROR
 *     LIST(prefix)                 -> ENTRY* END | ERROR (at any point)
 *     REMOVE(key)                  -> OK | ERROR
 *     FLUSH                        -> OK | ERROR
 * ERROR carries a WV_E* code, a message and a hint; NOTFOUND means absent and nothing else.
 * Anything else (unknown type, oversized length, truncated payload, trailing bytes) is a protocol
 * error (WV_EFORMAT) and ends the session.
 */
#ifndef WALVAULT_STORAGE_REMOTEPROTO_H
#define WALVAULT_STORAGE_REMOTEPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

#define WV_RP_PROTO_VERSION 1
#define WV_RP_HEADER_SIZE   5
#define WV_RP_CHUNK         (256 * 1024)
#define WV_RP_MAX_STR       4096
#define WV_RP_MAX_PAYLOAD   (WV_RP_CHUNK + 2 * WV_RP_MAX_STR + 64)

typedef enum wv_rp_type {
    /* client -> helper */
    WV_RP_HELLO = 0x01,  /* u32 proto, str version */
    WV_RP_PUT = 0x02,    /* u32 flags (WV_PUT_*), str key */
    WV_RP_DATA = 0x03,   /* bytes (also helper -> client during GET) */
    WV_RP_COMMIT = 0x04, /* empty */
    WV_RP_ABORT = 0x05,  /* empty */
    WV_RP_GET = 0x06,    /* i64 offset, i64 length, str key */
    WV_RP_STAT = 0x07,   /* str key */
    WV_RP_LIST = 0x08,   /* str prefix (may be empty) */
    WV_RP_REMOVE = 0x09, /* str key */
    WV_RP_FLUSH = 0x0a,  /* empty */
    /* helper -> client */
    WV_RP_HELLO_OK = 0x81, /* u32 proto, str version */
    WV_RP_OK = 0x82,       /* empty */
    WV_RP_ERROR = 0x83,    /* i32 code (WV_E*), str message, str hint */
    WV_RP_STAT_OK = 0x84,  /* u64 size, i64 mtime */
    WV_RP_ENTRY = 0x85,    /* u64 size, i64 mtime, str key */
    WV_RP_END = 0x86,      /* empty */
} wv_rp_type;

/* One decoded frame. Strings are copied and NUL-terminated; data points into the receive buffer
 * and is valid until the next receive. */
typedef struct wv_rp_msg {
    uint8_t type;
    uint32_t proto;               /* HELLO, HELLO_OK */
    uint32_t flags;               /* PUT */
    int32_t code;                 /* ERROR */
    int64_t offset;               /* GET */
    int64_t length;               /* GET */
    uint64_t size;                /* STAT_OK, ENTRY */
    int64_t mtime;                /* STAT_OK, ENTRY */
    char text[WV_RP_MAX_STR + 1]; /* key, prefix, version or error message */
    char hint[WV_RP_MAX_STR + 1]; /* ERROR */
    const uint8_t *data;          /* DATA */
    size_t data_len;
} wv_rp_msg;

/* "HELLO", "DATA", ... or NULL for an unknown type. */
const char *wv_rp_type_name(uint8_t type);

/* Header: encode into out[WV_RP_HEADER_SIZE]; decode checks the type is known and the length is
 * at most WV_RP_MAX_PAYLOAD (WV_EFORMAT otherwise). */
void wv_rp_header_encode(uint8_t *out, uint8_t type, uint32_t len);
int wv_rp_header_decode(const uint8_t *in, uint8_t *type, uint32_t *len, wv_err *err);

/* Append a whole frame (header and payload) for m to out. Strings longer than WV_RP_MAX_STR are
 * cut; data_len must be at most WV_RP_CHUNK. */
void wv_rp_encode(const wv_rp_msg *m, wv_buf *out);

/* Decode the payload of a frame of the given type into m (every field of m is reset first).
 * WV_EFORMAT for a truncated or overlong payload, a string too long or holding a NUL, a DATA frame
 * over WV_RP_CHUNK, an ERROR code outside the error table. */
int wv_rp_decode(uint8_t type, const uint8_t *payload, size_t len, wv_rp_msg *m, wv_err *err);

/* Transport: fill or send exactly len bytes, or fail with a code and message (the callback decides
 * how a closed connection is reported). */
typedef int (*wv_rp_io_fn)(void *ctx, void *buf, size_t len, wv_err *err);

/* Read one frame with readfull into scratch and decode it into m. */
int wv_rp_recv(wv_rp_io_fn readfull, void *ctx, wv_buf *scratch, wv_rp_msg *m, wv_err *err);
/* Encode m into scratch and send it with writefull. */
int wv_rp_send(wv_rp_io_fn writefull, void *ctx, wv_buf *scratch, const wv_rp_msg *m, wv_err *err);

/* Convenience constructors for the common frames (m is fully reset). */
void wv_rp_msg_init(wv_rp_msg *m, uint8_t type);
void wv_rp_msg_error(wv_rp_msg *m, const wv_err *e);

/* The key rules of wv_storage_key_valid (non-empty, relative, '/' separators, no empty, "." or ".."
 * component, printable ASCII without backslash), which the helper applies to every key it gets.
 * A prefix may also be empty or end with '/'. */
int wv_rp_key_valid(const char *key);
int wv_rp_prefix_valid(const char *prefix);

#endif
