/*
 * object.h - the object layer: stores plain content as a framed object (objfmt.h) into one or more
 * storage sinks, and reads it back verified. It knows formats and filters, not storage drivers: it
 * only calls wv_sink_write and wv_source_read, and never commits, aborts or closes them.
 *
 *   write: plain -> sha256 -> [lz4] -> framer (header, payload, trailer) -> tee into every sink
 *   read:  source -> reader (header, payload, trailer held back) -> [lz4] -> sha256 -> count ->
 * dest
 *
 * Invariants:
 *  - Several sinks progress independently: a sink whose write fails is dropped from the tee with
 *    its own error; writing fails only once every sink has failed. The caller commits exactly the
 *    sinks for which wv_objwriter_sink_error() is NULL after a successful finish, and aborts the
 * rest.
 *  - wv_object_read streams into dest before verification is complete: the caller makes dest's
 *    result visible (rename, commit) only if it returns 0.
 */
#ifndef WALVAULT_PIPELINE_OBJECT_H
#define WALVAULT_PIPELINE_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "pipeline/filter.h"
#include "pipeline/objfmt.h"
#include "storage/storage.h"

/*
 * Encryption of objects (crypt.h, objfmt.h version 3), held by whoever opened the repository and
 * borrowed by every writer and reader; NULL: objects are plain (version 2) and an encrypted one is
 * refused (WV_EKEY). The secrets in it are the holder's to keep in guarded memory and cleanse.
 *  - mode: WV_OBJ_KEYMODE_SYMMETRIC (data_key writes and reads) or WV_OBJ_KEYMODE_X25519
 *    (public_key writes; reading calls private_key with the header's key id).
 *  - key_id: written into the header of new objects; in symmetric mode also the only one read.
 *  - digest_key: the key of the keyed digest in the trailer (objfmt.h), held by writing hosts.
 *  - private_key: fills the raw X25519 private key for key_id; WV_EKEY if not held. NULL: this
 *    host holds no private key (reading fails with WV_EPRIVKEY, "needs the private key").
 */
typedef struct wv_obj_crypto {
    uint8_t mode;
    uint64_t key_id;
    uint8_t data_key[32];
    uint8_t public_key[32];
    uint8_t digest_key[32];
    int (*private_key)(void *arg, uint64_t key_id, uint8_t priv[32], wv_err *err);
    void *private_key_arg;
} wv_obj_crypto;

/* The object key and metadata key of the object whose encoded (version-3) header is hdr[0..hlen)
 * (decoded as h). WV_EKEY when c cannot open it: no crypto, no private key, another key id. */
int wv_obj_crypto_keys(const wv_obj_crypto *c, const wv_obj_header *h, const uint8_t *hdr,
                       size_t hlen, uint8_t obj_key[32], uint8_t meta_key[32], wv_err *err);

typedef struct {
    wv_compress compress; /* WV_COMPRESS_NONE or WV_COMPRESS_LZ4 */
    int level;            /* lz4 level 1..12; 0 means 1 */
    uint8_t kind;         /* WV_OBJ_KIND_* */
    /* Hash on a helper thread, overlapping compression (one object at a time, as wal-push). */
    int hash_thread;
    /* With hash_thread: write() returns before the helper is done with the buffer, which the
     * caller keeps unchanged until its next write, wv_objwriter_wait or finish. */
    int hash_lag;
    /* With hash_thread: sees every piece of plain content, in order, one at a time (on the helper
     * thread or the caller's, whichever is free first). */
    void (*observe)(void *arg, const uint8_t *buf, size_t len);
    void *observe_arg;
    /* The key the object is stored under: recorded in the header (the binding, objfmt.h). NULL:
     * not bound (only for objects that are not stored under a key of their own). */
    const char *name;
    /* Encrypt (format 3); NULL: plain (format 2). */
    const wv_obj_crypto *crypto;
    /* One per sink (NULL entries: plain), overriding crypto: one write into several repositories,
     * each under its own keys (hashed and compressed once, sealed once per distinct context). */
    const wv_obj_crypto *const *sink_crypto;
} wv_obj_opts;

typedef struct wv_objwriter wv_objwriter;

/* sinks[0..nsinks) are borrowed, not owned. opts NULL means lz4 level 1, kind generic. */
wv_objwriter *wv_objwriter_new(wv_sink *const *sinks, int nsinks, const wv_obj_opts *opts);

/* Push plain content. Fails only when every sink has failed (err then holds the first sink's
 * error) or on an internal error: a writer of one sink fails as soon as that sink does, so its
 * caller need not ask wv_objwriter_sink_error. */
int wv_objwriter_write(wv_objwriter *w, const void *buf, size_t len, wv_err *err);

/* With hash_lag: wait until the helper thread is done with every buffer written (before the
 * caller releases the last one, or reads what `observe` gathered). */
void wv_objwriter_wait(wv_objwriter *w);

/* WAL facts for the trailer; call before finish. Unset: no times, zero counts. */
void wv_objwriter_set_walinfo(wv_objwriter *w, int64_t first_commit_us, int64_t last_commit_us,
                              uint32_t commit_count, uint32_t restore_point_count);

/* Flush everything and write the trailer into every live sink; does NOT commit. info (may be NULL)
 * receives what the trailer says. Fails as wv_objwriter_write does. */
int wv_objwriter_finish(wv_objwriter *w, wv_obj_info *info, wv_err *err);

/* After a successful finish: the trailer written to sink i (its lane's format, keyed digest and
 * payload size; finish's info is sink 0's). WV_EINTERNAL before finish or for a bad i. */
int wv_objwriter_sink_info(const wv_objwriter *w, int i, wv_obj_info *info);

/* The error that dropped sink i, or NULL if sink i is still good. */
const wv_err *wv_objwriter_sink_error(const wv_objwriter *w, int i);

/* Number of sinks still good. */
int wv_objwriter_sinks_ok(const wv_objwriter *w);

/* Frees the writer; never touches the sinks. NULL allowed. */
void wv_objwriter_free(wv_objwriter *w);

/* Read one object from src, stream its plain content into dest and finish dest, then verify plain
 * size and SHA-256 against the trailer. WV_ECORRUPT for any damage (bad magic or check, truncation,
 * payload size or digest mismatch, bad compressed data), WV_EFORMAT for a newer format or an
 * encrypted object, the source's or dest's own error otherwise. info (may be NULL) is filled on
 * success. dest is not freed; src is not closed. */
int wv_object_read(wv_source *src, wv_filter *dest, wv_obj_info *info, wv_err *err);

/* The same with flags: WV_OBJREAD_HASH_THREAD verifies the SHA-256 on a helper thread while the
 * caller's thread decompresses and writes. */
#define WV_OBJREAD_HASH_THREAD 1
/* wv_objread_opts.max_plain is a limit even when 0 (an empty file). */
#define WV_OBJREAD_LIMIT 2
int wv_object_read_ext(wv_source *src, wv_filter *dest, unsigned flags, wv_obj_info *info,
                       wv_err *err);

/*
 * What a reader expects of an object; zeroed means nothing (as wv_object_read).
 *  - key: the key it was read as. The header's binding must name it (WV_ECORRUPT naming both
 *    names otherwise); an unbound object (format 1) is read, and *unbound says so.
 *  - max_plain: the most plain bytes the caller can want (0 = no limit, unless WV_OBJREAD_LIMIT). Decompression stops as
 *    soon as the content would exceed it (WV_ECORRUPT): nothing past it reaches dest, whatever the
 *    trailer claims, so a small object cannot fill a disk.
 */
typedef struct wv_objread_opts {
    unsigned flags; /* WV_OBJREAD_* */
    const char *key;
    uint64_t max_plain;
    int *unbound; /* may be NULL: set to 1 if the object carries no binding, else 0 */
    /* Opens encrypted objects; NULL: an encrypted object is refused (WV_EKEY). */
    const wv_obj_crypto *crypto;
} wv_objread_opts;
int wv_object_read_opts(wv_source *src, wv_filter *dest, const wv_objread_opts *o,
                        wv_obj_info *info, wv_err *err);

/* Decode a suffix read (len >= WV_OBJ_TRAILER_SIZE; the last 128 bytes are used): size, digest
 * and format fields of a stored object without reading it. */
int wv_object_info_decode(const uint8_t *trailer, size_t len, wv_obj_info *info, wv_err *err);

/* The same for any format: a suffix read of WV_OBJ_SUFFIX_MAX bytes (or the whole object, if
 * shorter) of the object stored as `key`. A version-3 object's metadata block is opened with c
 * (WV_EKEY as wv_obj_crypto_keys; WV_ECORRUPT if it does not authenticate, e.g. under another
 * name); a plain one needs no c. */
int wv_object_info_open(const uint8_t *suffix, size_t len, const char *key, const wv_obj_crypto *c,
                        wv_obj_info *info, wv_err *err);

/*
 * Does the stored object whose trailer is `stored` (a suffix read, not opened) hold the content
 * the writer's `ours` describes? Formats 1 and 2: the same SHA-256 and plain size. Format 3: the
 * same keyed digest (ours written with the same digest key), which needs no private key and no
 * read of the object: a re-push decision a public-key host can make. A plain and an encrypted
 * object never hold the same content by this rule. 1 if the same, 0 if not.
 */
int wv_obj_info_same_content(const wv_obj_info *stored, const wv_obj_info *ours);

/* wv_obj_kind_name(kind) is declared in objfmt.h. */

#endif
