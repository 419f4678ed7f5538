/*
 * server.h - running a throw-away PostgreSQL server (basebackup drill): a free port, the directory
 * of PostgreSQL's programs, the user a server runs as, running a program as that user, and a
 * directory tree handed to that user or removed.
 *
 * The user rule (wv_pgserver_owner): a process that is not root runs everything as itself. Root
 * runs the server as the owner of the reference path (the configuration's first posix repository,
 * else the configuration file) when that owner is not root, else as "postgres"; PostgreSQL itself
 * refuses to run as root.
 */
#ifndef WALVAULT_PG_SERVER_H
#define WALVAULT_PG_SERVER_H

#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

typedef struct wv_runas {
    uid_t uid;
    gid_t gid;
    char name[64];
} wv_runas;

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). */
int wv_pgserver_free_port(int *port, wv_err *err);

/* The directory of PostgreSQL's programs: configured (may be NULL), else
 * /usr/lib/postgresql/MAJOR/bin. WV_ENOTFOUND naming the directory when it has no "postgres". The
 * caller frees *out. */
int wv_pgserver_bindir(const char *configured, uint32_t major, char **out, wv_err *err);

/* The user to run a server as (see above). ref may be NULL. */
int wv_pgserver_owner(const char *ref, wv_runas *out, wv_err *err);

/* Run argv[0] (a path) with argv, as `as` when this process is root (else as itself); stdout goes
 * to out_path when it is not NULL (appended), stderr with it; stdin is /dev/null. *status is the
 * exit status, or 128 + the signal that ended it. 0, or WV_EIO when the program could not be
 * started. */
int wv_pgserver_run(const wv_runas *as, char *const argv[], const char *out_path, int *status,
                    wv_err *err);

/* chown -R (symbolic links themselves, not their targets). */
int wv_pgserver_chown_tree(const char *path, uid_t uid, gid_t gid, wv_err *err);

/* rm -rf of a directory tree (symbolic links removed, never followed). A missing path is
 * success. */
int wv_pgserver_remove_tree(const char *path, wv_err *err);

#endif
