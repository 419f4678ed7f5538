/*
 * spool.h - the local spool of one cluster: <spool_path>/<system identifier, 16 hex digits>/.
 *
 * Inside it the background pusher of archive_async (archive_cmd/pusher.c) owns archive/:
 *   archive/pusher.lock    flock()ed by the one pusher of the cluster for its life; holds its pid,
 *                          data directory and system identifier (informative)
 *   archive/done/NAME      the result of pushing NAME: a record (below), written tmp+fsync+rename
 *
 * A record names the content it is about (SHA-256 and size of the file pushed), so that a record
 * left by another incarnation of the cluster (a promote, pg_rewind, a re-initialised data directory
 * with the same name sequence) never vouches for different content:
 *   walvault-spool 1
 *   ok SHA256HEX SIZE
 * or, for a failed push,
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

/* <spool_path>/<system id as 16 hex digits>, created (with its parents) mode 0700. */
int wv_spool_cluster_dir(const wv_config *cfg, uint64_t system_id, char *out, size_t outlen,
                         wv_err *err);

typedef struct wv_spool_record {
    int ok;             /* 1: pushed (durable everywhere); 0: failed with err */
    uint8_t sha256[32]; /* of the file's content */
    uint64_t size;
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
