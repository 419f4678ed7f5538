/*
 * tar.h - a streaming tar reader (push parser) for the archives PostgreSQL's BASE_BACKUP sends.
 *
 * Bytes are fed in pieces of any size; the reader calls back once per member (begin), with the
 * member's content in pieces (data), and once at the member's end (end). It never buffers a member's
 * content: memory is one 512-byte header plus, for GNU long names and pax headers, at most
 * WV_TAR_META_MAX bytes of metadata.
 *
 * Understood: ustar (name + prefix), GNU ("ustar  ") long names ('L') and long link names ('K'), pax
 * extended headers ('x': path, linkpath, size, mtime; 'g' is ignored), octal and base-256 numbers.
 * Members: regular files ('0', NUL), directories ('5'), symbolic links ('2'), hard links ('1'); any
 * other type is reported as WV_TAR_OTHER. Blocks of zeros (the end-of-archive trailer) are skipped.
 *
 * Errors: a header whose checksum does not match (garbage) is WV_ECORRUPT naming the offset; a stream
 * that ends inside a header, a member's content or its padding is WV_ECORRUPT ("truncated"). An
 * archive that stops at a member boundary without the zero trailer is accepted (PostgreSQL's server
 * does not send the trailer): the protocol layer detects a lost connection.
 */
#ifndef WALVAULT_PIPELINE_TAR_H
#define WALVAULT_PIPELINE_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WV_TAR_BLOCK    512
#define WV_TAR_META_MAX (64 * 1024)

typedef enum wv_tar_type {
    WV_TAR_FILE = 1,
    WV_TAR_DIR,
    WV_TAR_SYMLINK,
    WV_TAR_HARDLINK,
    WV_TAR_OTHER,
} wv_tar_type;

typedef struct wv_tar_entry {
    wv_tar_type type;
    char typeflag;        /* the raw header byte */
    const char *path;     /* without a trailing '/' and without a leading "./"; never empty */
    const char *linkname; /* symlink / hard link target, "" otherwise */
    uint64_t size;        /* content bytes that follow (0 for directories and links) */
    uint32_t mode;        /* permission bits (07777) */
    int64_t mtime;        /* seconds since the epoch */
} wv_tar_entry;

/* Each returns 0 to go on or a negative WV_E* code (with err filled) to stop the reader. */
typedef struct wv_tar_callbacks {
    int (*begin)(void *arg, const wv_tar_entry *e, wv_err *err);
    int (*data)(void *arg, const uint8_t *buf, size_t len, wv_err *err);
    int (*end)(void *arg, wv_err *err);
} wv_tar_callbacks;

typedef struct wv_tar_reader wv_tar_reader;

/* `name` names the archive in messages ("base.tar"). cb and arg must outlive the reader. */
wv_tar_reader *wv_tar_reader_new(const char *name, const wv_tar_callbacks *cb, void *arg);

/* Push len bytes. After an error the reader accepts nothing more. */
int wv_tar_reader_feed(wv_tar_reader *t, const void *buf, size_t len, wv_err *err);

/* The stream ended: WV_ECORRUPT if it ended inside a header or member. */
int wv_tar_reader_finish(wv_tar_reader *t, wv_err *err);

/* Bytes consumed so far and the number of members seen. */
uint64_t wv_tar_reader_offset(const wv_tar_reader *t);
uint64_t wv_tar_reader_members(const wv_tar_reader *t);

void wv_tar_reader_free(wv_tar_reader *t); /* NULL allowed */

#endif
