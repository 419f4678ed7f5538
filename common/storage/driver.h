/*
 * storage/driver.h - the storage driver interface: what a driver implements. Drivers, storage.c
 * and code that builds sinks or sources of its own (basebackup sync's verifying tee, tests) include
 * this file; everything else uses storage.h.
 *
 * A driver knows nothing of WAL or backups, only of named objects ("keys": relative paths with '/'
 * separators, no leading '/', no "." or ".." components; storage.c checks this before calling).
 * A driver over a file system keeps every key inside its root whatever the file system holds: the
 * posix driver resolves keys beneath the root's directory descriptor with O_NOFOLLOW per component
 * and follows a symbolic link only as the root itself or as the top-level wal/ or backup/ (an
 * administrator's choice); any other link on a key's path, or as the key, is WV_EREFUSED with a
 * message naming it (see storage/posix.c).
 *
 * Required operations:
 *   put_open   start writing an object. Nothing is visible under `key` until commit() succeeds.
 *              sink.write  append bytes.
 *              sink.commit make the object visible atomically and, unless WV_PUT_NOSYNC was given,
 *                          durably (posix: fsync file, rename, fsync directory; s3: the store
 *                          acknowledged it with a verified checksum). With WV_PUT_NOREPLACE, fails
 *                          with WV_EEXIST (and leaves the existing object untouched) if the key exists.
 *                          Frees the sink whatever the outcome.
 *              sink.abort  discard everything written; leaves no trace; never fails; frees the sink.
 *   get_open   open an object for reading, optionally a byte range: offset >= 0 with length (-1 = to
 *              the end), or offset < 0 for the last -offset bytes. WV_ENOTFOUND if absent, and
 *              only then. A length below -1 or offset INT64_MIN is refused with WV_EUSAGE (the
 *              remote helper passes a client's numbers straight through). source.read returns 0 with *got == 0 at the end;
 *              source.close frees it.
 *   stat       size and modification time; WV_ENOTFOUND if absent.
 *   list       every key under a prefix ("wal/0000000100000000/"), recursively, in no particular
 *              order; the callback returning non-zero stops the listing and that value is returned.
 *              A missing prefix is an empty listing, not an error.
 *   remove     delete one object; removing an absent key succeeds.
 *   flush      make every object committed with WV_PUT_NOSYNC durable (posix: syncfs) and report a
 *              failure of any of them. A driver may finish a NOSYNC commit (without NOREPLACE) in the
 *              background (s3: uploads in flight): such a commit's failure is then returned by flush
 *              or by a later commit, and the driver's other operations see the object only once it
 *              landed (they wait for the uploads in flight).
 *   free       release the driver.
 *
 * Optional operations (NULL unless the driver sets the feature bit named):
 *   remove_many  (WV_ST_REMOVE_MANY) delete n objects in fewer round trips than n removes (s3:
 *              DeleteObjects, up to 1,000 keys a request). Absent keys count as removed. On
 *              failure the error names the keys that could not be removed (the first few, and how
 *              many there were); some of the others may have been removed already, so a caller
 *              retries the whole list (removing is idempotent). storage.c has validated every key
 *              and calls it only with n > 0; without the operation, wv_storage_remove_many()
 *              calls remove once per key, stopping at the first failure.
 *
 * Drivers are synchronous and thread-compatible: one wv_storage may be used from several threads at
 * once as long as each sink/source is used by one thread at a time.
 */
#ifndef WALVAULT_STORAGE_DRIVER_H
#define WALVAULT_STORAGE_DRIVER_H

#include "storage/storage.h"

typedef struct wv_sink_ops {
    int (*write)(wv_sink *s, const void *buf, size_t len, wv_err *err);
    int (*commit)(wv_sink *s, wv_err *err);
    void (*abort)(wv_sink *s);
} wv_sink_ops;

typedef struct wv_source_ops {
    int (*read)(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err);
    void (*close)(wv_source *s);
} wv_source_ops;

/* Drivers embed these as the first member of their own structs. */
struct wv_sink {
    const wv_sink_ops *ops;
};
struct wv_source {
    const wv_source_ops *ops;
};

typedef struct wv_storage_ops {
    const char *name;  /* "posix", "s3", "ssh" */
    unsigned features; /* WV_ST_* bits */
    int (*put_open)(wv_storage *st, const char *key, unsigned flags, wv_sink **out, wv_err *err);
    int (*get_open)(wv_storage *st, const char *key, int64_t offset, int64_t length,
                    wv_source **out, wv_err *err);
    int (*stat)(wv_storage *st, const char *key, wv_stat *out, wv_err *err);
    int (*list)(wv_storage *st, const char *prefix, wv_list_cb cb, void *arg, wv_err *err);
    int (*remove)(wv_storage *st, const char *key, wv_err *err);
    int (*remove_many)(wv_storage *st, const char *const *keys, size_t n, wv_err *err);
    int (*flush)(wv_storage *st, wv_err *err);
    /* Optional (wv_storage_probe_noreplace): NULL where NOREPLACE needs no prior check. */
    int (*probe_noreplace)(wv_storage *st, const char *key, const void *data, size_t len,
                           wv_err *err);
    void (*free)(wv_storage *st);
} wv_storage_ops;

struct wv_storage {
    const wv_storage_ops *ops;
    char name[16];  /* "repo1", used in messages */
    char *location; /* human-readable place ("/var/lib/walvault", "s3://bucket/prefix") */
    /* The repository's object encryption (pipeline/object.h), set by repo/ when it opens the
     * repository (repo/repo.h, wv_repo_crypto); NULL: plain. Drivers never look at it: it travels
     * with the handle so that every object read or written through it has the same keys. */
    const struct wv_obj_crypto *crypto;
};

/* Driver constructors, called by wv_storage_open. */
int wv_storage_posix_new(const wv_repo_config *rc, wv_storage **out, wv_err *err);
int wv_storage_s3_new(const wv_repo_config *rc, wv_storage **out, wv_err *err);
int wv_storage_ssh_new(const wv_repo_config *rc, wv_storage **out, wv_err *err);

#endif
