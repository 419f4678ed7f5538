/*
 * bundle.h - reading the bundles of a backup: small files stored many to an object.
 *
 * A bundle (manifest.h: "file ... bundle=N offset=O") is the object backup/<id>/bundle/<N>: the
 * complete framed objects of several small files, back to back from offset 0, nothing between
 * and nothing after. basebackup backup writes them; sync copies a bundle whole and verify reads it
 * once, both checking every file in it against the manifest while the bundle streams past.
 *
 * wv_bundle_set gathers, from the file entries of one manifest, the members of each bundle;
 * wv_bundle_verify then reads one bundle from a source and checks each member: its object decodes
 * and verifies against its trailer, and plain size and SHA-256 match the manifest. A damaged
 * member is reported through the callback and reading goes on with the next one (its range is
 * known), so every damaged file is named; only a source error, or a bundle whose layout does not
 * match the manifest (a gap, missing bytes, data after the last member), stops it.
 * Memory: the member lists of one backup's bundles (not their contents).
 *
 * Writing (basebackup backup): a wv_bundle_out gathers whole small files in memory, up to
 * WV_BUNDLE_PLAIN_MAX bytes, then wv_bundle_out_store writes each as a complete framed object,
 * back to back, into one object per repository, and records where each landed (offset, stored
 * size, SHA-256) for its manifest entry (wv_bundle_out_entry).
 */
#ifndef WALVAULT_REPO_BUNDLE_H
#define WALVAULT_REPO_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/buf.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"
#include "repo/manifest.h"
#include "storage/storage.h"

typedef struct wv_bundle_member {
    char *path; /* the file's manifest path */
    uint64_t offset, stored_size, size;
    uint8_t sha256[32];
    uint32_t mode;
    int64_t mtime;
} wv_bundle_member;

typedef struct wv_bundle {
    char key[300];
    uint64_t size; /* sum of the members' stored sizes: the bundle's expected size */
    wv_bundle_member *m;
    size_t n, cap;
} wv_bundle;

typedef struct wv_bundle_set {
    wv_bundle **b;
    size_t n, cap;
} wv_bundle_set;

/* Record file entry e (with e->bundle != 0) of backup id. */
void wv_bundle_set_add(wv_bundle_set *s, const char *id, const wv_manifest_entry *e);

/* Sort each bundle's members by offset (before wv_bundle_verify). */
void wv_bundle_set_sort(wv_bundle_set *s);

/* Take bundle i out of the set (the caller frees it with wv_bundle_free); NULL in its place. */
wv_bundle *wv_bundle_set_take(wv_bundle_set *s, size_t i);

void wv_bundle_set_free(wv_bundle_set *s);
void wv_bundle_free(wv_bundle *b);

/*
 * Walk bundle b in src (positioned at its start): for each member, in offset order, fn gets a
 * source of exactly its stored bytes (what fn leaves unread is skipped). fn returning < 0 stops
 * the walk with that result. Returns 0 once the whole bundle was read; WV_ECORRUPT if its layout
 * does not match the manifest (a gap, too few bytes, data after the last member); src's error.
 */
typedef int (*wv_bundle_member_fn)(void *arg, const wv_bundle_member *m, wv_source *obj,
                                   wv_err *err);
int wv_bundle_each(wv_source *src, const wv_bundle *b, wv_bundle_member_fn fn, void *arg,
                   wv_err *err);

/* Decode one member's object from obj into dest and check it against the manifest (bound to
 * bundle_key, at most the manifest's size decompressed, plain size, SHA-256, and that it fills its
 * stored size exactly). 0, WV_ECORRUPT, or another error. */
int wv_bundle_check_object(wv_source *obj, const wv_obj_crypto *crypto, const char *bundle_key,
                           const wv_bundle_member *m, wv_filter *dest, wv_err *err);

/* Called for each member that does not verify: err says why (WV_ECORRUPT, or WV_EFORMAT). */
typedef void (*wv_bundle_problem_cb)(void *arg, const wv_bundle_member *m, const wv_err *err);

/*
 * Read bundle b from src (positioned at its start) and verify every member, in offset order
 * (crypto: the repository's, wv_repo_crypto; NULL for a plain one).
 * Returns 0 once the whole bundle was read (damaged members, if any, were reported through cb and
 * counted in *bad); WV_ECORRUPT if its layout does not match the manifest; src's error otherwise.
 */
int wv_bundle_verify(wv_source *src, const wv_obj_crypto *crypto, const wv_bundle *b,
                     wv_bundle_problem_cb cb, void *arg, size_t *bad, wv_err *err);

/* ---- writing --------------------------------------------------------------------------------- */

/* A file of at most WV_BUNDLE_FILE_MAX bytes goes into a bundle; a bundle is stored once it would
 * exceed WV_BUNDLE_PLAIN_MAX bytes (or the stream ends): one request instead of one per file on an
 * object store, one file instead of one per file on a disk. Each file in a bundle is still a
 * complete object of its own, so reading one is a ranged read of the bundle. */
#define WV_BUNDLE_FILE_MAX  (1024 * 1024)
#define WV_BUNDLE_PLAIN_MAX (4 * 1024 * 1024)

typedef struct wv_bundle_out_file {
    char *path;
    uint64_t size; /* announced (from the tar header) */
    uint32_t mode;
    int64_t mtime;
    size_t data_off; /* where its content starts in the bundle's buffer */
    /* set by wv_bundle_out_store */
    uint8_t sha256[32];
    uint64_t offset, stored_size;
} wv_bundle_out_file;

typedef struct wv_bundle_out {
    uint32_t number;
    char key[300];
    wv_buf data; /* the plain content of every member, back to back */
    wv_bundle_out_file *m;
    size_t n, cap;
    void *data_arg; /* the caller's */
} wv_bundle_out;

/* A new, empty bundle number `number` of backup id. */
wv_bundle_out *wv_bundle_out_new(const char *id, uint32_t number);
void wv_bundle_out_free(wv_bundle_out *b); /* NULL allowed */

/* Would a file of size bytes still fit? (An empty bundle takes any file.) */
int wv_bundle_out_fits(const wv_bundle_out *b, uint64_t size);

/* Start a member; its content follows with wv_bundle_out_append, then wv_bundle_out_end. */
void wv_bundle_out_add(wv_bundle_out *b, const char *path, uint64_t size, uint32_t mode,
                       int64_t mtime);
/* WV_EPG if the member gets more than its announced size, or (end) less. */
int wv_bundle_out_append(wv_bundle_out *b, const void *buf, size_t len, wv_err *err);
int wv_bundle_out_end(wv_bundle_out *b, wv_err *err);

/*
 * Store the bundle into every storage of st[0..n) (committed with WV_PUT_NOSYNC: durable at the
 * next flush). stopped (may be NULL) is asked before each member: non-zero stops with
 * WV_EINTERRUPTED. Any other failure is "could not store "PATH" in "KEY": ..." (or "KEY": when no
 * member was being written). A repository whose commit failed has nothing under the key; those
 * committed before it keep theirs (leftovers of the failed backup, removed with it).
 */
int wv_bundle_out_store(wv_bundle_out *b, wv_storage *const *st, int n, const wv_obj_opts *opts,
                        int (*stopped)(void *arg), void *stop_arg, wv_err *err);

/* The manifest entry of member k (after a successful store); e->path is borrowed. */
void wv_bundle_out_entry(const wv_bundle_out *b, size_t k, wv_manifest_entry *e);

#endif
