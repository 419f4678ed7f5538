/*
 * mark.h - a restore point made and archived everywhere (basebackup mark), shared with
 * migrate-safe, and the restore command that returns to it.
 */
#ifndef WALVAULT_BASEBACKUP_MARK_H
#define WALVAULT_BASEBACKUP_MARK_H

#include <stddef.h>
#include <stdio.h>

#include "core/config.h"
#include "core/error.h"

#define WV_MARK_NAME_MAX 63 /* bytes of a restore point name (PostgreSQL's MAXFNAMELEN - 1) */

/* 0 if name is a usable restore point name (1..63 printable ASCII bytes), else WV_EUSAGE. */
int wv_mark_name_check(const char *name, wv_err *err);

/*
 * Create the restore point `name` on the server of connstr (NULL: the PG* environment), switch
 * WAL, and wait until the segment holding it is archived in every repository of cfg (deadline:
 * [global] archive_timeout). Unless force, a name already archived in some repository is refused
 * (WV_EEXIST) before anything is done. lsn receives the restore point's LSN ("0/3000090").
 */
int wv_mark_create(const wv_config *cfg, const char *connstr, const char *name, int force,
                   char *lsn, size_t lsnlen, wv_err *err);

/* The server's clock as a name suffix: "20261202T101500Z" (into out, at least 17 bytes). */
int wv_mark_server_time(const char *connstr, char *out, size_t outlen, wv_err *err);

/* Print the exact command that restores to the restore point `name` into a new directory. */
void wv_mark_print_restore(FILE *f, const wv_config *cfg, const char *name);

#endif
