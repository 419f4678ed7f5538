/*
 * repo.h - a repository: one storage driver plus walvault's layout and rules.
 *
 * Layout (object keys, the same on every medium):
 *   walvault.repo                      repository info (text, key=value): format, system identifier,
 *                                      PostgreSQL major version, WAL segment size. Written once, on
 *                                      first use, never replaced.
 *   wal/<first 16 hex>/<24 hex>        a WAL segment, e.g. wal/0000000100000000/000000010000000000000003
 *   wal/<first 16 hex>/<24 hex>.partial, wal/<first 16 hex>/<24 hex>.<8 hex>.backup
 *   wal/history/<8 hex>.history        timeline history files
 *   backup/<id>/...                    base backups (basebackup); a backup exists once its manifest does
 *
 * Rules enforced here:
 *  - The repository belongs to one cluster: the first WAL segment or backup records the system
 *    identifier; anything of another cluster is refused with WV_EMISMATCH naming both identifiers.
 *  - Objects are immutable: wv_repo_put_object / wv_repo_commit_object never replace an object
 *    with different content (WV_ECONFLICT); an identical one is success, decided from the stored
 *    trailer's SHA-256 and plain size by wv_repo_same_object, the one place of that decision.
 *  - Fetched content reaches its destination file only after verification (temp file, fsync, rename).
 */
#ifndef WALVAULT_REPO_REPO_H
#define WALVAULT_REPO_REPO_H

#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"
#include "pipeline/object.h"
#include "repo/keys.h"
#include "storage/storage.h"

/* WV_REPO_INFO_KEY ("walvault.repo") is defined in repo/keys.h, which needs it too. */
#define WV_REPO_FORMAT 1
/* Beside a segment that holds restore points: "<segment key>.rp", lines "LSN\tTIME_US\tNAME"
 * (NAME percent-encoded). */
#define WV_REPO_RP_SUFFIX ".rp"
/* WAL segments dropped by archive_queue_max: a small text object "gaps/<segment>" each (see
 * repo/lag.h, wv_lag_gap_format) in every repository reachable at the time. */
#define WV_REPO_GAPS_PREFIX "gaps/"

typedef struct wv_repo_info {
    int format;           /* WV_REPO_FORMAT */
    uint64_t system_id;   /* PostgreSQL's database system identifier */
    uint32_t pg_major;    /* 15 */
    uint64_t wal_segsize; /* bytes */
} wv_repo_info;

typedef struct wv_repo {
    const wv_repo_config *rc;
    wv_storage *st;
    int have_info; /* info below was loaded or recorded */
    wv_repo_info info;
    /* wv_repo_probe_noreplace found no walvault.repo: probe with it once this handle writes it
     * (atomic) */
    int probe_on_create;
    wv_user_keys *uk;   /* the configuration's encryption keys; NULL: none set */
    wv_repo_keys *keys; /* the opened key record; NULL: a plain repository */
} wv_repo;

/*
 * Open [repoN]: the storage driver, then the encryption (repo/keys.h) with the configuration's
 * key files: a plain repository with no key set; an encrypted one (its key record opened, or
 * created on first use) with a key; any disagreement is refused here, before any object is read
 * or written (keys.h's messages; WV_ECONFIG for a key file that is missing or badly protected).
 * The key context then travels with r->st (wv_repo_crypto).
 */
int wv_repo_open(const wv_repo_config *rc, wv_repo **out, wv_err *err);
void wv_repo_close(wv_repo *r); /* NULL allowed */

/* The object encryption of a storage handle a wv_repo opened; NULL: plain. Every object read or
 * written through that handle uses it (wv_obj_opts.crypto, wv_objread_opts.crypto). */
static inline const wv_obj_crypto *wv_repo_crypto(const wv_storage *st)
{
    return (const wv_obj_crypto *)wv_storage_crypto(st);
}

/* 0 on a host that can write objects but not read them (encrypted for a public key, no private
 * key): it may stat and compare trailers, never open content. 1 otherwise. */
static inline int wv_repo_readable(const wv_storage *st)
{
    const wv_obj_crypto *c = wv_repo_crypto(st);
    return !c || c->mode != WV_OBJ_KEYMODE_X25519 || c->private_key != NULL;
}

/* Load walvault.repo and validate it (wv_repo_info_invalid). WV_ENOTFOUND if the repository was
 * never used; WV_ECORRUPT naming the file and the field if it holds a value no cluster has. */
int wv_repo_load_info(wv_repo *r, wv_err *err);
/* For a long-lived handle of an object store (the background pusher): load walvault.repo and
 * write it back unchanged as a NOREPLACE put would (wv_storage_probe_noreplace), so that where
 * the store refuses to replace an object every later NOREPLACE put through the handle costs one
 * request instead of two. In a repository not used yet the probe follows the first use's write
 * of walvault.repo through this handle (wv_repo_check_cluster). 0 also on a disk, where there is
 * nothing to learn. */
int wv_repo_probe_noreplace(wv_repo *r, wv_err *err);

/* NULL if info is one a cluster can have (a known repository format, a non-zero system
 * identifier, a PostgreSQL major walvault knows, a valid WAL segment size); else which field is
 * wrong, as a phrase. */
const char *wv_repo_info_invalid(const wv_repo_info *info);

/*
 * Check that a cluster may use this repository; records it on first use (race-safe: the info
 * object is committed with WV_PUT_NOREPLACE and re-read if another process won).
 * WV_EMISMATCH if another cluster (or another WAL segment size or major version) owns it.
 */
int wv_repo_check_cluster(wv_repo *r, uint64_t system_id, uint32_t pg_major, uint64_t wal_segsize,
                          wv_err *err);

/* The object key of an archived WAL-directory file (segment, partial, history, backup history).
 * WV_EUSAGE if the name is not one of those. */
int wv_repo_wal_key(const char *walname, char *out, size_t outlen, wv_err *err);

/* What a stored object's suffix says, by one suffix-range read: everything for a plain object;
 * for an encrypted one the sealed metadata is opened with wv_repo_crypto(st) (WV_EPRIVKEY on a
 * host with the public key only). WV_ENOTFOUND if absent. */
int wv_repo_read_info(wv_storage *st, const char *key, wv_obj_info *info, wv_err *err);
/* Only the public trailer (an encrypted object's keyed digest, not its plain size and SHA-256):
 * enough for wv_repo_same_object, with no private key. */
int wv_repo_read_trailer(wv_storage *st, const char *key, wv_obj_info *info, wv_err *err);
/*
 * What this host can tell of a stored object's content from one suffix read (WV_OBJ_SUFFIX_MAX
 * bytes) of `key` in st, opened with wv_repo_crypto(st): a plain object's trailer, or an encrypted
 * one's metadata block. An encrypted object whose metadata block this host cannot open (public-key
 * mode without the private key) is still described by its trailer: info->sealed stays 1 and only
 * the keyed digest is known. WV_ENOTFOUND if absent; WV_ECORRUPT if it does not authenticate.
 */
int wv_repo_content_info(wv_storage *st, const char *key, wv_obj_info *info, wv_err *err);

/*
 * Small text objects that carry names or positions (restore points, .xid sidecars, gap records):
 * raw bytes in a plain repository (as they always were), a framed object bound to key in an
 * encrypted one (sealed, so a name is neither readable nor forgeable). put: WV_PUT_* flags
 * (WV_PUT_NOREPLACE: an existing object is WV_EEXIST, whatever its content). get: at most max
 * bytes into out (appended); WV_ENOTFOUND if absent.
 */
int wv_repo_put_text(wv_storage *st, const char *key, unsigned flags, const void *data, size_t len,
                     wv_err *err);
int wv_repo_get_text(wv_storage *st, const char *key, size_t max, wv_buf *out, wv_err *err);

/* The same for content too large to hold (manifests): fill writes it into the filter it gets
 * and finishes it; committed (flags as wv_storage_put_open) only if fill succeeded, else nothing
 * becomes visible. get streams the content into dest and finishes it (for an encrypted object,
 * only what authenticated; the caller trusts the end only if 0 is returned). */
typedef int (*wv_repo_fill_fn)(void *arg, wv_filter *dest, wv_err *err);
int wv_repo_put_stream(wv_storage *st, const char *key, unsigned flags, wv_repo_fill_fn fill,
                       void *arg, wv_err *err);
int wv_repo_get_stream(wv_storage *st, const char *key, wv_filter *dest, wv_err *err);

/*
 * Fetch an object into dest_path: temp file beside it, verified stream, rename. dest_path is never
 * left partial or unverified: on any failure the temp file is removed and dest_path untouched.
 * flags: WV_GET_NOSYNC skips the fsync of file and directory (the caller syncs later, or, as for
 * restore_command, PostgreSQL makes what it keeps durable itself); WV_GET_HASH_THREAD verifies the
 * SHA-256 on a helper thread while this one decompresses (one fetch at a time, as wal-fetch).
 */
#define WV_GET_NOSYNC      1
#define WV_GET_HASH_THREAD 2
/* The object must be bound to key (objfmt.h; an unbound format-1 object is accepted) and hold at
 * most max_plain bytes (WV_GET_NOLIMIT: no limit): decompression stops there and nothing past it
 * is written. */
#define WV_GET_NOLIMIT UINT64_MAX
int wv_repo_get_file(wv_storage *st, const char *key, const char *dest_path, unsigned flags,
                     uint64_t max_plain, wv_obj_info *info, wv_err *err);
/* Write dest_path atomically from what fill pushes into the filter it gets (an fd filter): temp
 * file beside it, fsync of file and directory unless WV_GET_NOSYNC, rename; on any failure of fill
 * or of the file system the temp file is removed and dest_path untouched. */
int wv_repo_write_file(const char *dest_path, unsigned flags, wv_repo_fill_fn fill, void *arg,
                       wv_err *err);

/* The same for an object stored inside another (a bundle): the length bytes at offset of key
 * (the members of a bundle are bound to the bundle's key). */
int wv_repo_get_file_range(wv_storage *st, const char *key, int64_t offset, int64_t length,
                           const char *dest_path, unsigned flags, uint64_t max_plain,
                           wv_obj_info *info, wv_err *err);

/*
 * Fetch archived WAL-directory file walname (wal-fetch) as wv_repo_get_file does, checking on the
 * way, with no second read, that the content is what the name says (wv_repo_walcheck_new), at
 * most wv_repo_wal_max_size bytes. ri is the repository's info, or NULL if it has none.
 */
int wv_repo_get_wal(wv_storage *st, const wv_repo_info *ri, const char *walname,
                    const char *dest_path, unsigned flags, wv_obj_info *info, wv_err *err);

/* The most bytes archived file walname may hold: the segment size for segments and partial
 * segments (WV_WAL_SEGSIZE_MAX without ri), WV_REPO_WAL_TEXT_MAX for history and backup
 * history files. */
#define WV_REPO_WAL_TEXT_MAX (1 << 20)
uint64_t wv_repo_wal_max_size(const char *walname, const wv_repo_info *ri);

/*
 * A filter that checks, while the content of archived file walname streams through it to next,
 * that it is that file (WV_ECORRUPT "the object is not WAL file NAME: ..." otherwise):
 *  - segment: the first page header is a segment's first (a known page magic, the long header),
 *    of the repository's PostgreSQL major, system identifier and segment size; its address is the
 *    segment's start; its timeline is not above the name's (a new timeline's first segment starts
 *    with the old timeline's pages); the size is the segment size;
 *  - partial segment: the same, with any size up to the segment size;
 *  - history file: parses as a timeline history whose timelines are all below the name's;
 *  - backup history file: starts with "START WAL LOCATION: ".
 * History and backup history contents are held (at most WV_REPO_WAL_TEXT_MAX bytes). ri NULL:
 * the checks that need the repository's info are made against the first page header itself.
 * NULL if walname is no WAL-directory file name. Freed with ops->free (it does not free next).
 */
wv_filter *wv_repo_walcheck_new(wv_filter *next, const char *walname, const wv_repo_info *ri);
/* The same for an object key: a check for "wal/.../NAME" when NAME is a WAL-directory file name,
 * else NULL (restore points, backups). */
wv_filter *wv_repo_walcheck_for_key(wv_filter *next, const char *key, const wv_repo_info *ri);

/*
 * The rule "an archived name is never overwritten with different content".
 *
 * wv_repo_same_object decides it: 0 if the trailer `stored` (read from r) describes the content
 * (sha256, plain_size); otherwise WV_ECONFLICT, "REPO: NAME is already archived with different
 * content ...", with the split-brain hint (name is what the user knows the object by: the WAL
 * file name for wal-push, the key for sync).
 *
 * wv_repo_commit_object commits sink, opened on key with WV_PUT_NOREPLACE, whose object's trailer
 * is `ours`. The sink is consumed. A WV_EEXIST of the commit (archived earlier, or meanwhile by a
 * concurrent writer of the same name) is decided by the stored trailer: identical is success with
 * *already = 1 (stored, when not NULL, receives that trailer), different WV_ECONFLICT; the
 * stored object is never touched. *already is 0 when this commit made the object visible.
 *
 * wv_repo_put_object stores len bytes of plain content as one framed object under key with those
 * rules (put_open with WV_PUT_NOREPLACE | extra_flags, write, commit_object); on any failure
 * nothing becomes visible under key.
 */
int wv_repo_same_object(const wv_repo *r, const char *name, const wv_obj_info *stored,
                        const uint8_t sha256[32], uint64_t plain_size, wv_err *err);
int wv_repo_commit_object(wv_repo *r, wv_sink *sink, const char *key, const char *name,
                          const wv_obj_info *ours, int *already, wv_obj_info *stored, wv_err *err);
int wv_repo_put_object(wv_repo *r, const char *key, const char *name, unsigned extra_flags,
                       const wv_obj_opts *opts, const void *data, size_t len, int *already,
                       wv_obj_info *info, wv_err *err);

/* Make an absent wv_obj_info field printable. */
void wv_sha256_hex(const uint8_t sha[32], char out[65]);

#endif
