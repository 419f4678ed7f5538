/*
 * archcheck.h - "does archiving work": the server's archive_mode and archive_command judged against
 * this installation's wal-push and this configuration file. `basebackup backup` calls
 * wv_archcheck_server before BASE_BACKUP (so a backup never streams only to time out waiting for
 * WAL), `basebackup check` reports it as one of its steps.
 *
 * archive_command is read the way /bin/sh would split it (PostgreSQL runs it with sh -c): words,
 * '...' and "..." quoting, backslash escapes, and the separators ;, &, &&, |, ||. It passes when
 * one of its simple commands is, after leading NAME=VALUE assignments and an optional env or exec:
 *   - a program that is this installation's wal-push: the same file once symbolic links are
 *     resolved, or a bare name that $PATH (ours) resolves to it;
 *   - whose configuration is ours: -c FILE, -cFILE, --config FILE or --config=FILE, else a
 *     WALVAULT_CONFIG=FILE assignment, else the default path; the same file as ours once resolved
 *     (a relative FILE cannot be judged: PostgreSQL runs the command in its data directory);
 *   - with %p as an argument.
 * archive_library (PostgreSQL 15) must be empty: when set, archive_command is not used.
 */
#ifndef WALVAULT_PG_ARCHCHECK_H
#define WALVAULT_PG_ARCHCHECK_H

#include <stddef.h>

#include "core/error.h"
#include "pg/replication.h"

/* This installation's wal-push: the file beside the running program (resolved /proc/self/exe). */
int wv_archcheck_wal_push_path(char *out, size_t outlen, wv_err *err);

/*
 * The decision, on values as SHOW prints them. 0 when archiving is set up for us; otherwise
 * WV_EREFUSED with one line naming the setting and what is wrong, and a hint with the fix.
 * archive_library may be NULL (not shown by the server). wal_push and config_file are paths.
 */
/* flags: WV_ARCHCHECK_WARN_CONFIG: when the only thing wrong is the configuration file (wal-push of
 * this installation runs with %p, but with another file), log the message and its hint as a
 * warning and return 0. backup uses it: another file may well name the same repositories (e.g.
 * through another endpoint), and a backup whose WAL does not arrive still fails, naming the
 * segment; check, which can tell, refuses. */
#define WV_ARCHCHECK_WARN_CONFIG 1u

int wv_archcheck_settings(const char *archive_mode, const char *archive_library,
                          const char *archive_command, const char *wal_push,
                          const char *config_file, unsigned flags, wv_err *err);

/* SHOW archive_mode, archive_library and archive_command on c, then wv_archcheck_settings with
 * this installation's wal-push. */
int wv_archcheck_server(wv_pgconn *c, const char *config_file, unsigned flags, wv_err *err);

#endif
