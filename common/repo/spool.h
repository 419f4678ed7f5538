/*
 * spool.h - the local spool of one cluster: <spool_path>/<system identifier, 16 hex digits>/.
 *
 * Inside it each feature owns a sub-directory: lag/ and dropped/ (repositories that lag, segments
 * dropped by archive_queue_max: see repo/lag.h), fetch/ (wal-fetch prefetch), and archive/, owned
 * by the background pusher of archive_async (archive_cmd/pusher.c):
 *   archive/pusher.lock    flock()ed by the one pusher of the cluster for its life; holds its pid,
 *                          data directory and system identifier (informative)
 *   archive/done/NAME      the result of pushing NAME: a record (below), written tmp+fsync+rename
 *
 * A record names the content it is about (SHA-256 and size of the file pushed), so that a record
 * left by another incarnation of the cluster (a promote, pg_rewind, a re-initialised data directory
 * with the same name sequence) never vouches for different content:
 *   walvault-spool 1
 *   ok SHA256HEX SIZE
 *   file DEV INO MTIME_S.NS CTIME_S.NS      (optional)
 * The file line identifies the file the pusher read, unchanged during the push: a file with the
 * same device, inode, size, modification and change times (the change time cannot be set back
 * from user space) has the same content, so the waiting wal-push need not hash it. Without it,
 * or when it differs, the SHA-256 decides. Or, for a failed push,
 *   walvault-spool 1
 *   error SHA256HEX SIZE CODE_NAME
 *   MESSAGE
 *   HINT            (may be empty)
 */
#ifndef WALVAULT_REPO_SPOOL_H
#define WALVAULT_REPO_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"

/* The cluster directory's path only, nothing created (readers such as status). 0 or WV_ECONFIG. */
int wv_spool_cluster_path(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                          wv_err *err);

/* <spool_path>/<system id as 16 hex digits>, created mode 0700 (its parents as wv_mkdir_p does);
 * a spool_path that cannot be made a directory fails with a hint naming it. */
int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err);

/* What identifies a file on this host without reading it. */
typedef struct wv_spool_file {
    uint64_t dev, ino;
    int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
} wv_spool_file;

/* The identity of path (lstat); WV_ENOTFOUND if it does not exist. */
int wv_spool_file_of(const char *path, wv_spool_file *out, wv_err *err);
int wv_spool_file_equal(const wv_spool_file *a, const wv_spool_file *b);

typedef struct wv_spool_record {
    int ok;             /* 1: pushed (durable everywhere); 0: failed with err */
    uint8_t sha256[32]; /* of the file's content */
    uint64_t size;
    int has_file; /* ok records: the file line below is there */
    wv_spool_file file;
    wv_err err; /* when !ok: code, message and hint (repo and object not kept) */
} wv_spool_record;

/* Append the text of a record to out. */
void wv_spool_record_format(const wv_spool_record *r, wv_buf *out);

/* Parse a record; WV_ECORRUPT (naming `what`) if it is not one. */
int wv_spool_record_parse(const char *data, size_t len, const char *what, wv_spool_record *r,
                          wv_err *err);

/* Write DIR/NAME durably (a temp file, fsync, rename over any older record, fsync DIR). */
int wv_spool_record_write(const char *dir, const char *name, const wv_spool_record *r, wv_err *err);

/* Read DIR/NAME: WV_ENOTFOUND if absent, WV_ECORRUPT if unreadable as a record. */
int wv_spool_record_read(const char *dir, const char *name, wv_spool_record *r, wv_err *err);

/* PostgreSQL's archiver order: timeline history files first, then by name. */
int wv_spool_ready_cmp(const char *a, const char *b);

/* The files waiting in an archive_status directory: the names (without ".ready") of its .ready
 * files that are WAL-directory file names, in wv_spool_ready_cmp order. *out is a NULL-terminated
 * array; free it with wv_spool_names_free. */
int wv_spool_list_ready(const char *status_dir, char ***out, size_t *n, wv_err *err);
void wv_spool_names_free(char **names);

#endif
