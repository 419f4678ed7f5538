/*
 * mark.c - basebackup mark NAME [-d CONNSTR] [--force]: a restore point to return to.
 *
 * pg_create_restore_point(NAME), pg_switch_wal(), then wait until the segment holding the restore
 * point (and the restore point itself, recorded by wal-push) is in every repository; then print the
 * restore command that returns there. A name already in an archive is refused unless --force:
 * restore --name goes to the newest restore point of that name, so a reused name silently moves
 * the place a runbook returns to. Nothing is written to a repository by this command itself.
 */
#include "mark.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "core/cli.h"
#include "core/log.h"
#include "pg/sql.h"
#include "repo/archwait.h"

int wv_mark_name_check(const char *name, wv_err *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > WV_MARK_NAME_MAX)
        return wv_err_set(err, WV_EUSAGE,
                          "bad restore point name \"%s\": it has %zu bytes, expected 1 to %d", name,
                          n, WV_MARK_NAME_MAX);
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return wv_err_set(err, WV_EUSAGE,
                              "bad restore point name: byte %zu is not printable ASCII",
                              (size_t)(p - name) + 1);
    return 0;
}

int wv_mark_server_time(const char *connstr, char *out, size_t outlen, wv_err *err)
{
    wv_pgsql *c = NULL;
    int rc = wv_pgsql_connect(connstr, &c, err);
    if (rc == 0)
        rc = wv_pgsql_value(c,
                            "SELECT to_char(now() AT TIME ZONE 'UTC', "
                            "'YYYYMMDD\"T\"HH24MISS\"Z\"')",
                            0, NULL, out, outlen, err);
    wv_pgsql_close(c);
    return rc;
}

int wv_mark_create(const wv_config *cfg, const char *connstr, const char *name, int force,
                   char *lsn, size_t lsnlen, wv_err *err)
{
    int rc = wv_mark_name_check(name, err);
    if (rc != 0)
        return rc;
    wv_pgsql *c = NULL;
    char v[128], seg[64];
    if ((rc = wv_pgsql_connect(connstr, &c, err)) != 0)
        return rc;
    if ((rc = wv_pgsql_value(c, "SELECT pg_is_in_recovery()", 0, NULL, v, sizeof(v), err)) != 0)
        goto out;
    if (strcmp(v, "f") != 0) {
        rc = wv_err_set(err, WV_EREFUSED,
                        "restore point \"%s\": the server is in recovery (a standby)", name);
        wv_err_hint(err, "connect -d to the primary: restore points are made there");
        goto out;
    }
    if (!force) {
        char where[32];
        rc = wv_archwait_restore_point_known(cfg, name, where, sizeof(where), err);
        if (rc < 0)
            goto out;
        if (rc == 1) {
            rc = wv_err_set(err, WV_EEXIST, "restore point \"%s\" is already in the archive of %s",
                            name, where);
            wv_err_hint(err, "choose another name, or pass --force (restore --name then goes "
                             "to the newest restore point of that name)");
            goto out;
        }
    }
    const char *params[1] = {name};
    if ((rc = wv_pgsql_value(c, "SELECT pg_create_restore_point($1)::text", 1, params, lsn, lsnlen,
                             err)) != 0 ||
        (rc = wv_pgsql_value(c, "SELECT pg_walfile_name(pg_switch_wal())", 0, NULL, seg,
                             sizeof(seg), err)) != 0)
        goto out;
    wv_log_info("restore point \"%s\" at %s; waiting for segment %s in every repository (up to "
                "%d s)",
                name, lsn, seg, cfg->archive_timeout);
    rc = wv_archwait_segment(cfg, seg, name, cfg->archive_timeout, err);
out:
    wv_pgsql_close(c);
    return rc;
}

/* A word for a POSIX shell: as is when plain, else single-quoted. */
static void shell_word(FILE *f, const char *s)
{
    if (s[0] &&
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._+,:@=-") ==
            strlen(s)) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

void wv_mark_print_restore(FILE *f, const wv_config *cfg, const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0)
        self[n] = '\0';
    else
        snprintf(self, sizeof(self), "basebackup");
    char *conf = realpath(cfg->file, NULL);
    fputs("    ", f);
    shell_word(f, self);
    fputs(" -c ", f);
    shell_word(f, conf ? conf : cfg->file);
    fputs(" restore --pgdata NEW_DATA_DIR --name ", f);
    shell_word(f, name);
    fputc('\n', f);
    free(conf);
}

static const char usage[] =
    "usage: basebackup [-c FILE] mark NAME [-d CONNSTR] [--force]\n"
    "\n"
    "Create the restore point NAME (pg_create_restore_point), switch WAL, wait until the WAL that\n"
    "holds it is archived in every repository (up to [global] archive_timeout seconds), then\n"
    "print the restore command that returns there.\n"
    "\n"
    "  -d, --dbname CONNSTR   libpq connection string of the primary (else PG* environment)\n"
    "  --force                reuse a name that is already in an archive\n";

int wv_bbcmd_mark(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"dbname", required_argument, NULL, 'd'},
        {"force", no_argument, NULL, 'f'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    wv_err err;
    wv_err_clear(&err);
    const char *connstr = NULL;
    int force = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "d:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            connstr = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("mark", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (optind >= argc) {
        wv_err_set(&err, WV_EUSAGE, "mark: the restore point NAME is missing");
        wv_err_hint(&err, "run \"basebackup mark --help\" for usage");
        return wv_cli_fail(&err);
    }
    const char *name = argv[optind++];
    if (wv_cli_no_more_args("mark", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    wv_config *cfg = NULL;
    wv_cli cli = {.config_path = config_path};
    char lsn[64];
    int rc = wv_mark_name_check(name, &err);
    if (rc == 0)
        rc = wv_cli_load_config(&cli, &cfg, &err);
    if (rc == 0)
        rc = wv_mark_create(cfg, connstr, name, force, lsn, sizeof(lsn), &err);
    if (rc == 0) {
        printf("restore point \"%s\" at %s is archived in every repository; to return there:\n",
               name, lsn);
        wv_mark_print_restore(stdout, cfg, name);
    }
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}
