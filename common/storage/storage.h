/*
 * storage.h - named, immutable objects in a repository, whatever the medium (posix directory, S3
 * bucket, backup server over SSH). See storage/driver.h for the exact contract of each operation.
 *
 * Invariant: commit is the only way a key becomes visible, and a committed object is complete and
 * (unless WV_PUT_NOSYNC) durable. Every error path of a writer ends in abort, which leaves no trace.
 */
#ifndef WALVAULT_STORAGE_STORAGE_H
#define WALVAULT_STORAGE_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/buf.h"

enum {
    WV_ST_ATOMIC_PUT = 1 << 0,    /* commit is atomic (all drivers) */
    WV_ST_DIRS = 1 << 1,          /* keys are paths in a real directory tree */
    WV_ST_DIR_FSYNC = 1 << 2,     /* directory entries need fsync to be durable */
    WV_ST_SERVER_SHA256 = 1 << 3, /* the store verifies a SHA-256 we send */
    WV_ST_ROUND_TRIPS = 1 << 4,   /* every operation is a request to a remote store on a connection
                                   * of its own: worth overlapping with work, not worth doing just
                                   * in case (s3) */
    WV_ST_REMOVE_MANY = 1 << 5,   /* the driver deletes many keys per round trip (s3); without it
                                   * wv_storage_remove_many removes them one by one */
};

enum {
    WV_PUT_NOREPLACE = 1 << 0, /* commit fails with WV_EEXIST if the key exists */
    WV_PUT_NOSYNC = 1 << 1,    /* durability deferred to wv_storage_flush() */
};

typedef struct wv_storage wv_storage;
typedef struct wv_sink wv_sink;
typedef struct wv_source wv_source;

typedef struct wv_stat {
    uint64_t size;
    int64_t mtime; /* seconds since the epoch */
} wv_stat;

/* Return 0 to go on; any other value stops the listing and is returned by wv_storage_list. */
typedef int (*wv_list_cb)(void *arg, const char *key, const wv_stat *st);

/* Open the driver for [repoN]. Does no I/O beyond what is needed to validate the location. */
int wv_storage_open(const wv_repo_config *rc, wv_storage **out, wv_err *err);
void wv_storage_free(wv_storage *st);

const char *wv_storage_name(const wv_storage *st);     /* "repo1" */
const char *wv_storage_location(const wv_storage *st); /* "/var/lib/walvault" */
unsigned wv_storage_features(const wv_storage *st);

/* The repository's object encryption carried by the handle (see driver.h; repo/repo.h's
 * wv_repo_crypto is the typed way to read it). Storage never uses it. */
struct wv_obj_crypto;
void wv_storage_set_crypto(wv_storage *st, const struct wv_obj_crypto *c);
const struct wv_obj_crypto *wv_storage_crypto(const wv_storage *st);

/* Each validates the key, calls the driver, and prefixes errors with the repository name. */
int wv_storage_put_open(wv_storage *st, const char *key, unsigned flags, wv_sink **out,
                        wv_err *err);
int wv_storage_get_open(wv_storage *st, const char *key, int64_t offset, int64_t length,
                        wv_source **out, wv_err *err);
int wv_storage_stat(wv_storage *st, const char *key, wv_stat *out, wv_err *err);
int wv_storage_list(wv_storage *st, const char *prefix, wv_list_cb cb, void *arg, wv_err *err);
int wv_storage_remove(wv_storage *st, const char *key, wv_err *err);
/* Remove n keys (absent ones count as removed): every key is validated first, and nothing is
 * removed if one is invalid. With WV_ST_REMOVE_MANY in a few requests, else one remove per key.
 * On failure some keys may be removed and others not; the error names those that failed. */
int wv_storage_remove_many(wv_storage *st, const char *const *keys, size_t n, wv_err *err);
int wv_storage_flush(wv_storage *st, wv_err *err);

/*
 * key holds exactly data[0..len) and never changes (walvault.repo): store it again the way a
 * WV_PUT_NOREPLACE put makes an object visible, to learn whether the store refuses to replace an
 * object. Where it does (an object store answering 412 to If-None-Match: *), later NOREPLACE puts
 * through this handle skip their separate existence check, one request each (the conditional
 * request is the check). A store that ignores the condition has the same bytes written again,
 * and keeps the check. Nothing for drivers whose NOREPLACE is atomic anyway (posix, ssh). For
 * long-lived handles (the background pusher): each probe is one request.
 */
int wv_storage_probe_noreplace(wv_storage *st, const char *key, const void *data, size_t len,
                               wv_err *err);

/* A key is valid if it is non-empty, relative, uses '/' separators, has no empty, "." or ".."
 * component and only printable ASCII without backslash. */
int wv_storage_key_valid(const char *key);

int wv_sink_write(wv_sink *s, const void *buf, size_t len, wv_err *err);
int wv_sink_commit(wv_sink *s, wv_err *err); /* frees s */
void wv_sink_abort(wv_sink *s);              /* frees s; NULL allowed */

int wv_source_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err);
void wv_source_close(wv_source *s); /* NULL allowed */

/* Small whole objects (repository info files, manifests): read all of it (at most max bytes) or
 * write it with the given put flags. */
int wv_storage_get_all(wv_storage *st, const char *key, size_t max, wv_buf *out, wv_err *err);
int wv_storage_put_all(wv_storage *st, const char *key, unsigned flags, const void *data,
                       size_t len, wv_err *err);

#endif
