/*
 * replication.h - a libpq replication connection: IDENTIFY_SYSTEM, SHOW, BASE_BACKUP (PostgreSQL 15
 * to 18: the BASE_BACKUP options used here and its COPY stream are the same in all four).
 *
 * The connection follows libpq's conventions: a connection string or URI (-d), else the PG*
 * environment variables and the service file. A password inside the connection string is refused
 * (secrets never on the command line): use ~/.pgpass, PGPASSFILE or a service file. Unless the
 * string says otherwise, "replication=true" is added (physical replication; pg_hba.conf must allow
 * "replication"). Every error is one line that includes the server's message.
 */
#ifndef WALVAULT_PG_REPLICATION_H
#define WALVAULT_PG_REPLICATION_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WV_PGREPL_MIN_VERSION 150000
/* The newest major version whose protocol, WAL and backup manifest are known (18.x). */
#define WV_PGREPL_MAX_MAJOR 18

typedef struct wv_pgconn wv_pgconn;

typedef struct wv_pg_system {
    uint64_t system_id;
    uint32_t timeline;
    uint64_t xlogpos;
} wv_pg_system;

/* Connect; WV_EPG for a refused connection or a server older than PostgreSQL 15 or newer than 18
 * (the message names the version), WV_EUSAGE for a password in connstr. connstr may be NULL. */
int wv_pgrepl_connect(const char *connstr, wv_pgconn **out, wv_err *err);
void wv_pgrepl_close(wv_pgconn *c); /* NULL allowed */

int wv_pgrepl_server_version(const wv_pgconn *c); /* 150020 */

int wv_pgrepl_identify_system(wv_pgconn *c, wv_pg_system *out, wv_err *err);

/* SHOW name: the value as the server prints it ("16MB", "Etc/UTC"). */
int wv_pgrepl_show(wv_pgconn *c, const char *name, char *out, size_t outlen, wv_err *err);

/* SHOW wal_segment_size, in bytes. */
int wv_pgrepl_wal_segsize(wv_pgconn *c, uint64_t *out, wv_err *err);

typedef struct wv_pgrepl_tablespace {
    uint32_t oid;    /* 0: the main data directory */
    char *location;  /* NULL for the main data directory */
    int64_t size_kb; /* -1 unless PROGRESS */
} wv_pgrepl_tablespace;

typedef struct wv_pgrepl_backup_start {
    uint64_t start_lsn;
    uint32_t start_tli;
    wv_pgrepl_tablespace *tablespaces; /* in the order their archives follow */
    size_t ntablespaces;
} wv_pgrepl_backup_start;

typedef struct wv_pgrepl_backup_opts {
    const char *label;
    int fast_checkpoint; /* CHECKPOINT 'fast' (else 'spread') */
    int progress;        /* PROGRESS: tablespace sizes and 'p' messages */
    int manifest;        /* MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256' */
    int wait;            /* WAIT: let the server wait for WAL archiving */
    int max_rate_kb;     /* MAX_RATE in kB/s, 0 = unlimited */
} wv_pgrepl_backup_opts;

/* Each callback returns 0, or a negative WV_E* code (err filled) to abort the backup. */
typedef struct wv_pgrepl_backup_cb {
    int (*begin)(void *arg, const wv_pgrepl_backup_start *s, wv_err *err);
    /* 'n': a new tar archive ("base.tar", "16385.tar"); location NULL for the data directory */
    int (*archive)(void *arg, const char *name, const char *location, wv_err *err);
    /* 'm': what follows is PostgreSQL's backup_manifest */
    int (*manifest)(void *arg, wv_err *err);
    /* 'd': data of the current archive or of the manifest */
    int (*data)(void *arg, const uint8_t *buf, size_t len, wv_err *err);
    /* 'p': bytes of the backup sent so far */
    int (*progress)(void *arg, uint64_t done, wv_err *err);
} wv_pgrepl_backup_cb;

/*
 * The head of PostgreSQL's backup_manifest (JSON), up to its "Files" key:
 *   { "PostgreSQL-Backup-Manifest-Version": 1, "Files": [ ...                 (13 to 16)
 *   { "PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": N, ...    (17 on)
 * Version 2 exists for incremental backups (17), which must name the system they belong to.
 */
typedef struct wv_pg_manifest_head {
    int version;        /* 1 or 2 */
    uint64_t system_id; /* version 2; 0 for version 1 */
} wv_pg_manifest_head;

/* The longest head looked at: the version and the system identifier come first. */
#define WV_PG_MANIFEST_HEAD_MAX 512

/* Parse the first len bytes of a backup_manifest (all of it or its first WV_PG_MANIFEST_HEAD_MAX
 * bytes). WV_EPG naming what is wrong: not a manifest, a version other than 1 or 2, a version 2
 * without a system identifier. */
int wv_pg_manifest_head_parse(const char *buf, size_t len, wv_pg_manifest_head *out, wv_err *err);

/*
 * The manifest checked against the server: version 2 from PostgreSQL 17 on and 1 before (the
 * server_version_num says which), and a version 2 manifest's system identifier equal to system_id
 * (IDENTIFY_SYSTEM's). WV_EPG naming both values otherwise.
 */
int wv_pg_manifest_head_check(const wv_pg_manifest_head *h, int server_version, uint64_t system_id,
                              wv_err *err);

typedef struct wv_pgrepl_backup_end {
    uint64_t end_lsn;
    uint32_t end_tli;
    wv_pg_manifest_head manifest; /* when opts->manifest: parsed and checked (see above) */
} wv_pgrepl_backup_end;

/* Run BASE_BACKUP and stream it through the callbacks. A lost connection or a server error is
 * WV_EPG with the server's message; a callback's error aborts the backup and is returned as is.
 * With opts->manifest, the manifest's head is checked once it has arrived (wv_pg_manifest_head_check
 * against IDENTIFY_SYSTEM's answer on this connection, which must have been asked first). */
int wv_pgrepl_base_backup(wv_pgconn *c, const wv_pgrepl_backup_opts *opts,
                          const wv_pgrepl_backup_cb *cb, void *arg, wv_pgrepl_backup_end *end,
                          wv_err *err);

/* A -d connection string walvault accepts: it parses (WV_EUSAGE naming libpq's reason) and holds
 * no password (secrets never on the command line). NULL or "" is fine (the PG* environment). With
 * has_replication, also whether it sets "replication" itself. */
int wv_pg_connstr_check(const char *connstr, int *has_replication, wv_err *err);

/* A libpq message (several lines, trailing newline) as one line for walvault's messages: line
 * breaks and tabs become single blanks, trailing blanks go; cut to fit outlen. */
void wv_pg_one_line(const char *in, char *out, size_t outlen);

#endif
