/*
 * manifest.h - walvault's backup manifest: written last, it is what makes a backup exist.
 *
 * Object key: backup/<id>/backup.manifest (WV_MANIFEST_NAME), stored as text (in an encrypted
 * repository a framed, sealed object: repo.h, wv_repo_put_stream), committed only after every
 * file object and the WAL the backup needs are durable.
 *
 * Format, version 3 (version 2 lacks chunks, version 1 bundles too; all three are read; a manifest
 * without chunked files is still written as version 2): one record per line, "\n"-terminated. A
 * record is a type word followed by
 * space-separated key=value fields. Values are percent-encoded: every byte outside 0x21..0x7e and
 * the bytes '%', '=' are written as %XX (uppercase hex); everything else is literal. Records, in
 * this order (keys within a record in any order; unknown keys and records are errors):
 *
 *   walvault-manifest version=2
 *   backup    id=20261125T101500Z label=TEXT keep=0|1 created-by=walvault%200.1.0
 *   cluster   system-id=DEC pg-version=150020 wal-segsize=16777216
 *   wal       timeline=DEC start-lsn=X/X stop-lsn=X/X checkpoint-lsn=X/X
 *             start-segment=24HEX stop-segment=24HEX
 *   time      start=EPOCH stop=EPOCH start-text=TEXT stop-text=TEXT
 *             (the server's START TIME / STOP TIME: epoch seconds, and the server's own spelling)
 *   then any number of, in any order:
 *   tablespace oid=DEC location=/abs/path
 *   dir       path=P mode=OCTAL mtime=EPOCH
 *   symlink   path=P target=TEXT mode=OCTAL mtime=EPOCH
 *   file      path=P size=DEC mode=OCTAL mtime=EPOCH sha256=64HEX stored-size=DEC [ref=ID]
 *             [bundle=DEC offset=DEC] [chunks=DEC]
 *   chunk     offset=DEC length=DEC sha256=64HEX stored-size=DEC     (version 3; see below)
 *   totals    files=DEC dirs=DEC symlinks=DEC tablespaces=DEC size=DEC stored-size=DEC
 *   end       sha256=64HEX       (SHA-256 of every byte of the manifest before this line)
 *
 * Paths P are relative, '/'-separated, without "." or ".." components, and start with "pgdata/"
 * (the data directory; "pgdata" itself for its root dir record) or "tblspc/<oid>/" (a tablespace,
 * "tblspc/<oid>" for its root). A file's content is the object backup/<ref or id>/<P>: ref names an
 * earlier backup holding an identical object (for incremental backups; absent = this backup).
 * With bundle=N (N >= 1) it is instead the stored-size bytes at offset of the object
 * backup/<ref or id>/bundle/<N>: small files are stored many to an object (one request instead of
 * one per file on an object store), each still a complete framed object of its own, back to back.
 * With chunks=N (N >= 1, never with bundle) the file is stored as N objects of its own, chunk k
 * (0-based) being backup/<ref or id>/chunk/<P>/<k>, and exactly N "chunk" records follow the file
 * record at once, in order: chunk k holds the plain bytes [offset, offset + length) of the file,
 * sha256 their digest, stored-size its object's size. The reader refuses a chunk list that does
 * not tile the file exactly (a gap, an overlap, an empty chunk, a chunk past the size, lengths not
 * summing to the size, stored sizes not summing to the file's stored-size, a count other than N).
 * Each chunk object is bound to its own key, so a chunk swapped with another is refused on read.
 * The file's sha256 stays the digest of the whole content (verify checks it); restore checks each
 * chunk against its digest: the chunk list is covered by the manifest's "end" digest like the
 * file's digest, so the verified chunks prove the content as well as the whole digest would.
 * sha256 is the digest of the plain content; stored-size the object's size in the repository.
 * "pgdata/backup_label" and "pgdata/backup_manifest" (PostgreSQL's own manifest) are ordinary files.
 *
 * The writer spools entries to an unlinked temporary file, so memory does not grow with the number
 * of files; the reader is a push parser that calls back per entry.
 */
#ifndef WALVAULT_REPO_MANIFEST_H
#define WALVAULT_REPO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "pipeline/filter.h"
#include "storage/storage.h"

#define WV_MANIFEST_VERSION    3
#define WV_MANIFEST_CHUNKS_MAX 65536 /* chunks of one file */
#define WV_MANIFEST_NAME       "backup.manifest"
#define WV_MANIFEST_ID_MAX     64
#define WV_MANIFEST_LINE_MAX   (64 * 1024)

typedef struct wv_manifest_header {
    int version;
    char id[WV_MANIFEST_ID_MAX]; /* [0-9A-Za-z_-]+, e.g. "20261125T101500Z" */
    char *label;                 /* may be "" */
    int keep;
    char *created_by;
    uint64_t system_id;
    uint32_t pg_version; /* server_version_num, e.g. 150020 */
    uint64_t wal_segsize;
    uint32_t timeline;
    uint64_t start_lsn, stop_lsn, checkpoint_lsn;
    char start_segment[25], stop_segment[25];
    int64_t start_time, stop_time; /* server clock, epoch seconds */
    char *start_time_text, *stop_time_text;
} wv_manifest_header;

typedef struct wv_manifest_totals {
    uint64_t files, dirs, symlinks, tablespaces;
    uint64_t size;        /* sum of plain file sizes */
    uint64_t stored_size; /* sum of stored sizes */
} wv_manifest_totals;

typedef enum wv_manifest_type {
    WV_MANIFEST_FILE = 1,
    WV_MANIFEST_DIR,
    WV_MANIFEST_SYMLINK,
    WV_MANIFEST_TABLESPACE,
} wv_manifest_type;

typedef struct wv_manifest_chunk {
    uint64_t offset, length; /* plain bytes [offset, offset + length) of the file */
    uint64_t stored_size;
    uint8_t sha256[32]; /* of those plain bytes */
} wv_manifest_chunk;

typedef struct wv_manifest_entry {
    wv_manifest_type type;
    const char *path;   /* tablespace: NULL */
    const char *target; /* symlink target; tablespace location */
    uint32_t oid;       /* tablespace */
    uint64_t size;      /* file */
    uint32_t mode;
    int64_t mtime;
    uint8_t sha256[32];   /* file */
    uint64_t stored_size; /* file */
    const char *ref;      /* file: backup id holding the object, NULL = this backup */
    uint32_t bundle;      /* file: 0 = an object of its own; N = inside bundle N, at offset */
    uint64_t offset;
    uint32_t nchunks;                /* file: 0 = not chunked; else the chunk list */
    const wv_manifest_chunk *chunks; /* tiles [0, size) in order (checked by the reader) */
} wv_manifest_entry;

/* Release the strings of a header (not the struct). */
void wv_manifest_header_free(wv_manifest_header *h);

/* Whether a backup id is well formed: 1..63 characters of [0-9A-Za-z_-]. */
int wv_manifest_id_valid(const char *id);

/* Whether a manifest path is well formed (see above). */
int wv_manifest_path_valid(const char *path);

/* ---- writing -------------------------------------------------------------------------------- */

typedef struct wv_manifest_writer wv_manifest_writer;

/* Spool in an unlinked temporary file in tmpdir (NULL: $TMPDIR or /tmp). */
int wv_manifest_writer_new(const char *tmpdir, wv_manifest_writer **out, wv_err *err);

/* Validate and spool one entry. WV_EUSAGE for a malformed entry (bad path, bad ref). */
int wv_manifest_writer_add(wv_manifest_writer *w, const wv_manifest_entry *e, wv_err *err);

const wv_manifest_totals *wv_manifest_writer_totals(const wv_manifest_writer *w);

/* Write the whole manifest (header, spooled entries, totals, end) into out, then finish out. */
int wv_manifest_writer_finish(wv_manifest_writer *w, const wv_manifest_header *h, wv_filter *out,
                              wv_err *err);

void wv_manifest_writer_free(wv_manifest_writer *w); /* NULL allowed */

/* ---- reading -------------------------------------------------------------------------------- */

/* Called once per entry, in file order; strings live until the callback returns. Return 0 or a
 * negative WV_E* code to stop. */
typedef int (*wv_manifest_entry_cb)(void *arg, const wv_manifest_entry *e, wv_err *err);

typedef struct wv_manifest_reader wv_manifest_reader;

/* `name` names the manifest in messages. The header is filled as its records arrive; entry_cb may
 * be NULL. */
wv_manifest_reader *wv_manifest_reader_new(const char *name, wv_manifest_header *h,
                                           wv_manifest_entry_cb cb, void *arg);
/* WV_ECORRUPT for a malformed manifest (message names the line number and what is wrong);
 * WV_EFORMAT for a version newer than this program understands. */
int wv_manifest_reader_feed(wv_manifest_reader *r, const void *buf, size_t len, wv_err *err);
/* Checks that the "end" record was seen and matched, and fills totals (may be NULL). */
int wv_manifest_reader_finish(wv_manifest_reader *r, wv_manifest_totals *totals, wv_err *err);
void wv_manifest_reader_free(wv_manifest_reader *r);

/* Parse a manifest held in memory (tests, small tools). */
int wv_manifest_parse(const void *buf, size_t len, const char *name, wv_manifest_header *h,
                      wv_manifest_entry_cb cb, void *arg, wv_manifest_totals *totals, wv_err *err);

/* The manifest key of a backup: "backup/<id>/backup.manifest". */
void wv_manifest_key(const char *id, char *out, size_t outlen);

/* The key of bundle n of backup id: backup/<id>/bundle/<n>. */
void wv_manifest_bundle_key(const char *id, uint32_t n, char *out, size_t outlen);

/* The key of chunk k of chunked file entry e of backup id: backup/<ref or id>/chunk/<path>/<k>. */
void wv_manifest_chunk_key(const char *id, const wv_manifest_entry *e, uint32_t k, char *out,
                           size_t outlen);

/* Whether a chunk list tiles [0, size) exactly, its stored sizes summing to stored_size: NULL if
 * so, else what is wrong (a static string). */
const char *wv_manifest_chunks_check(const wv_manifest_chunk *c, uint32_t n, uint64_t size,
                                     uint64_t stored_size);

/* Where the stored object of file entry e of backup id is: its key, and the byte range in it
 * (*offset, *length; 0 and -1 for an object of its own). */
void wv_manifest_file_object(const char *id, const wv_manifest_entry *e, char *key, size_t keylen,
                             int64_t *offset, int64_t *length);

/* Stream backup/<id>/backup.manifest from the repository through the reader.
 * WV_ENOTFOUND if the backup has no manifest (it does not exist). */
int wv_manifest_load(wv_storage *st, const char *id, wv_manifest_header *h, wv_manifest_entry_cb cb,
                     void *arg, wv_manifest_totals *totals, wv_err *err);

#endif
