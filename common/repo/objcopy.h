/*
 * objcopy.h - copy one stored object from one repository into another, verified on the way.
 *
 * Two ways, chosen by the repositories' crypto contexts (wv_repo_crypto):
 *  - the same context (both plain, or both encrypted under the same mode, key id and digest key):
 *    the source is read through a tee that writes every byte into the target's sink while the
 *    object layer decodes it (into a discard filter, or whatever check the caller puts there); the
 *    sink is committed only if the object verifies against its trailer. The bytes stay as stored
 *    (compression untouched).
 *  - different contexts (either side encrypted, each repository with its own data key or digest
 *    key): the source is decoded (verified, bound to its key, its WAL content checked) and its
 *    plain content encoded again by the object writer under the target's crypto, with the same
 *    name binding, kind and compression and the WAL facts of the source's trailer. The target's
 *    sink is committed only once the source verified, under the immutability rule
 *    (wv_repo_commit_object).
 *
 * Re-copies are recognised before anything is decoded (wv_repo_copy_compare): see objcopy.c.
 * Used by `basebackup sync` and by the catching up of lagging repositories.
 */
#ifndef WALVAULT_REPO_OBJCOPY_H
#define WALVAULT_REPO_OBJCOPY_H

#include <stdint.h>

#include "core/error.h"
#include "pipeline/object.h"
#include "repo/bundle.h"
#include "repo/repo.h"
#include "storage/driver.h"

/* A wv_source that reads from `in` and writes every byte it returns into `out`. A failure of the
 * sink fails the read with the sink's error (out_failed set, out_err kept). Closing it closes
 * neither. */
typedef struct wv_tee_source {
    wv_source base;
    wv_source *in;
    wv_sink *out;
    int out_failed;
    wv_err out_err;
    uint64_t bytes;
} wv_tee_source;

void wv_tee_source_init(wv_tee_source *t, wv_source *in, wv_sink *out);

/* 1 if objects of a repository with crypto a can be copied byte for byte into one with crypto b:
 * both plain, or both encrypted in the same mode for the same key id with the same digest key. */
int wv_obj_crypto_same(const wv_obj_crypto *a, const wv_obj_crypto *b);

/* wv_repo_content_info (repo/repo.h) tells what a side holds. */

/*
 * Do the object a (its wv_repo_content_info in the repository on sa) and b (in sb) hold the same
 * plain content? *same is 1 or 0; WV_EPRIVKEY (nothing decided) only when neither side's plain
 * SHA-256 is known and their digest keys differ. See objcopy.c for the rule.
 */
int wv_repo_copy_compare(const wv_storage *sa, const wv_obj_info *a, const wv_storage *sb,
                         const wv_obj_info *b, int *same, wv_err *err);

/* Whether the object described by info (in the repository on st) holds plain content whose
 * SHA-256 is sha256: by the digest itself, or by the keyed digest under st's digest key. */
int wv_repo_content_is(const wv_storage *st, const wv_obj_info *info, const uint8_t sha256[32]);

typedef struct wv_copy_opts {
    unsigned put_flags;           /* besides WV_PUT_NOREPLACE, e.g. WV_PUT_NOSYNC */
    const uint8_t *expect_sha256; /* NULL, or the digest of the plain content (a manifest's) */
    uint64_t max_plain;           /* 0: none beyond a WAL file's own (wv_repo_wal_max_size) */
    int skip_precheck;            /* the caller knows `to` lacks the key: no suffix read first */
} wv_copy_opts;

typedef struct wv_copy_result {
    int already;       /* `to` held an identical object (nothing written) */
    int reencoded;     /* the contexts differ: decoded and encoded again */
    uint64_t bytes;    /* the stored size written into `to` (0 when already) */
    uint64_t stored;   /* the object's stored size in `to` afterwards (either way), 0 unknown */
    wv_obj_info src;   /* the source's trailer (opened when known) */
    wv_obj_info dst;   /* the object written, or the one `to` holds */
    int conflict_info; /* on WV_ECONFLICT: src and dst above describe both sides */
} wv_copy_result;

/*
 * Copy the framed object `key` from `from` into `to` (a WAL object: checked against its name and
 * the source's cluster), committed under the repository rules (wv_repo_commit_object, with
 * put_flags | WV_PUT_NOREPLACE). An identical object already in `to` is success with
 * res->already; a different one is WV_ECONFLICT (left untouched). Errors name the repository and
 * the key: `from`'s for a damaged or unreadable source, `to`'s for a failure of the target.
 */
int wv_repo_copy_object_ext(wv_repo *from, wv_repo *to, const char *key, const wv_copy_opts *o,
                            wv_copy_result *res, wv_err *err);

/* The same, as the catching up uses it. *bytes: the stored size copied. */
int wv_repo_copy_object(wv_repo *from, wv_repo *to, const char *key, unsigned put_flags,
                        uint64_t *bytes, int *already, wv_err *err);

/*
 * Copy bundle b (backup files stored back to back in one object, bundle.h; members sorted by
 * offset as the manifest places them in `from`) into `to`, encoded again under to's crypto: each
 * member decoded (bound to the bundle's key, checked against the manifest's size and SHA-256) and
 * encoded again with its own compression and kind, one after the other into one object committed
 * with put_flags | WV_PUT_NOREPLACE (WV_EEXIST, untouched, if `to` has one). new_offset[i] and
 * new_stored[i] receive where member i landed (for the manifest written into `to`); *bytes the
 * bundle's stored size. Errors name the repository and the key (and the member).
 */
int wv_repo_copy_bundle(wv_repo *from, wv_repo *to, const wv_bundle *b, unsigned put_flags,
                        uint64_t *new_offset, uint64_t *new_stored, uint64_t *bytes, wv_err *err);

#endif
