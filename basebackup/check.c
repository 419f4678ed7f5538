/*
 * check.c - basebackup check [-d CONNSTR]: is this installation ready to back up and archive?
 *
 * One line per step, "ok: ..." on stdout, or the error line (and its hint) on stderr:
 *   1. the configuration loads;
 *   2. every repository is reachable and writable: a probe object check/<host>-<pid> is put and
 *      removed through the storage API (the same path wal-push and backup write through);
 *   3. PostgreSQL is reachable over a replication connection (the one backup uses), and every
 *      repository that was used already belongs to this cluster (system identifier, major version);
 *   4. archive_mode is on (or always);
 *   5. archive_command runs this installation's wal-push with this configuration file and %p
 *      (pg/archcheck.h says how the command is read);
 *   6. a WAL switch arrives in every repository within [monitor] check_timeout (default: [global]
 *      archive_timeout), naming each repository it did not reach.
 * The WAL switch (step 6) runs on a second, ordinary connection (the replication protocol cannot
 * call functions). A switch only produces a segment when the current one holds WAL: when nothing
 * was written since the last switch, pg_current_xact_id() first assigns a transaction id, whose
 * commit record is a few dozen bytes of WAL and touches no table (no temporary schema, no message
 * on a primary's logical decoding stream). The switched segment is the one pg_walfile_name() names
 * for the position pg_switch_wal() returns. On a standby (pg_is_in_recovery) the switch is not
 * possible and step 6 is reported as skipped (a standby archives only with archive_mode = always).
 * It needs pg_switch_wal() to be allowed (a superuser, or GRANT EXECUTE ON FUNCTION
 * pg_switch_wal() TO the user).
 *
 * Exit 0 only when every step passed; otherwise the exit code of the first failure. The steps
 * that do not depend on a failed one still run, so one run shows everything that is wrong. It never
 * streams a backup. notify_command gets the result (event "check").
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "commands.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/units.h"
#include "pg/archcheck.h"
#include "pg/replication.h"
#include "repo/repo.h"

static const char usage[] =
    "usage: basebackup [-c FILE] check [-d CONNSTR]\n"
    "\n"
    "Check that backups and WAL archiving work: configuration, every repository reachable and\n"
    "writable, PostgreSQL reachable, archive_mode and archive_command, then a WAL switch that\n"
    "must arrive in every repository. Exit 0 only when all of it holds.\n"
    "\n"
    "  -d, --dbname CONNSTR   connection string (else the PG* environment variables)\n"
    "  -c, --config FILE      configuration file\n";

typedef struct check_ctx {
    wv_config *cfg;
    wv_repo *repos[WV_MAX_REPOS];
    int repo_ok[WV_MAX_REPOS];
    int first_rc;
    wv_err first;
    int failures;
} check_ctx;

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ok: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static void failed(check_ctx *c, int rc, const wv_err *err)
{
    fflush(stdout);
    wv_log_err(err);
    if (!c->failures++) {
        c->first_rc = rc;
        c->first = *err;
    }
}

/* Step 2: one repository. */
static void check_repo(check_ctx *c, int i)
{
    wv_err err;
    wv_err_clear(&err);
    const wv_repo_config *rc = &c->cfg->repos[i];
    int r = wv_repo_open(rc, &c->repos[i], &err);
    char host[128], key[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            *p = '_';
    snprintf(key, sizeof(key), "check/%s-%ld", host, (long)getpid());
    if (r == 0) {
        r = wv_repo_load_info(c->repos[i], &err);
        if (r == WV_ENOTFOUND)
            r = 0;
    }
    if (r == 0) {
        static const char probe[] = "walvault check probe\n";
        r = wv_storage_put_all(c->repos[i]->st, key, 0, probe, sizeof(probe) - 1, &err);
        if (r == 0)
            r = wv_storage_remove(c->repos[i]->st, key, &err);
        if (r < 0)
            wv_err_hint(&err,
                        "the user that runs wal-push and backup (PostgreSQL's, for "
                        "archive_command) must be able to write to %s",
                        wv_storage_location(c->repos[i]->st));
    }
    if (r < 0) {
        if (!err.repo[0] && !strstr(err.msg, rc->name))
            wv_err_prefix(&err, "%s", rc->name);
        failed(c, r, &err);
        return;
    }
    c->repo_ok[i] = 1;
    ok("%s (%s) reachable and writable", rc->name, wv_storage_location(c->repos[i]->st));
}

/* Step 6 on an ordinary connection: the switched segment's name, or "" on a standby. */
static int switch_wal(const char *connstr, char *seg, size_t seglen, wv_err *err)
{
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {connstr && *connstr ? connstr : "", "walvault check", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    int rc = 0;
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        msg[strcspn(msg, "\n")] = '\0';
        wv_err_set(err, WV_EPG, "could not connect to the server for the WAL switch: %s", msg);
        wv_err_hint(err, "check needs an ordinary connection too (pg_hba.conf: the database of "
                         "-d, default the user's name)");
        PQfinish(conn);
        return WV_EPG;
    }
    /* 0: standby?  1: does the current segment hold WAL past its page header (40 bytes)?
     * 2: if not, a commit record (no table written)  3: the switch */
    static const char *const steps[] = {
        "SELECT pg_is_in_recovery()",
        "SELECT (pg_walfile_name_offset(pg_current_wal_insert_lsn())).file_offset > 40",
        "SELECT pg_current_xact_id()",
        "SELECT pg_walfile_name(pg_switch_wal())",
    };
    for (size_t k = 0; k < 4 && rc == 0; k++) {
        PGresult *res = PQexec(conn, steps[k]);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
            msg[strcspn(msg, "\n")] = '\0';
            wv_err_set(err, WV_EPG, "WAL switch failed: %s", msg);
            if (k == 3)
                wv_err_hint(err, "run check as a superuser, or GRANT EXECUTE ON FUNCTION "
                                 "pg_switch_wal() TO the user of -d");
            rc = WV_EPG;
        } else if (k == 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
            seg[0] = '\0';
            PQclear(res);
            break;
        } else if (k == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
            k++; /* WAL was written since the last switch: nothing to add */
        } else if (k == 3) {
            snprintf(seg, seglen, "%s", PQgetvalue(res, 0, 0));
        }
        PQclear(res);
    }
    PQfinish(conn);
    return rc;
}

static void check_switch(check_ctx *c, const char *connstr)
{
    wv_err err;
    wv_err_clear(&err);
    char seg[64] = "";
    int r = switch_wal(connstr, seg, sizeof(seg), &err);
    if (r < 0) {
        failed(c, r, &err);
        return;
    }
    if (!seg[0]) {
        ok("WAL switch skipped: the server is a standby (in recovery)");
        return;
    }
    char key[256];
    if ((r = wv_repo_wal_key(seg, key, sizeof(key), &err)) < 0) {
        failed(c, r, &err);
        return;
    }
    int64_t timeout =
        c->cfg->monitor.check_timeout > 0 ? c->cfg->monitor.check_timeout : c->cfg->archive_timeout;
    double t0 = wv_mono_s(), deadline = t0 + (double)timeout;
    int done[WV_MAX_REPOS] = {0}, left = 0;
    for (int i = 0; i < c->cfg->nrepos; i++)
        if (c->repo_ok[i])
            left++;
    while (left > 0) {
        for (int i = 0; i < c->cfg->nrepos; i++) {
            if (!c->repo_ok[i] || done[i])
                continue;
            wv_stat sb;
            r = wv_storage_stat(c->repos[i]->st, key, &sb, &err);
            if (r == 0) {
                done[i] = 1;
                left--;
                ok("WAL %s switched and archived in %s (%.1f s)", seg, c->cfg->repos[i].name,
                   wv_mono_s() - t0);
            } else if (r != WV_ENOTFOUND) {
                done[i] = 1;
                left--;
                failed(c, r, &err);
            }
        }
        if (left == 0 || wv_mono_s() >= deadline)
            break;
        usleep(200 * 1000);
    }
    for (int i = 0; i < c->cfg->nrepos; i++) {
        if (!c->repo_ok[i] || done[i])
            continue;
        wv_err_clear(&err);
        wv_err_set(&err, WV_ETIMEOUT, "WAL file %s did not arrive in %s within %" PRId64 " s", seg,
                   c->cfg->repos[i].name, timeout);
        wv_err_hint(&err, "archive_command must push to every repository of this configuration; "
                          "see pg_stat_archiver (failed_count, last_failed_wal) and the server "
                          "log");
        failed(c, WV_ETIMEOUT, &err);
    }
}

static void check_server(check_ctx *c, const char *connstr)
{
    wv_err err;
    wv_err_clear(&err);
    wv_pgconn *conn = NULL;
    wv_pg_system sys;
    uint64_t segsize = 0;
    int r = wv_pgrepl_connect(connstr, &conn, &err);
    if (r == 0)
        r = wv_pgrepl_identify_system(conn, &sys, &err);
    if (r == 0)
        r = wv_pgrepl_wal_segsize(conn, &segsize, &err);
    if (r < 0) {
        failed(c, r, &err);
        wv_pgrepl_close(conn);
        return;
    }
    int version = wv_pgrepl_server_version(conn);
    ok("PostgreSQL %d.%d reachable (system identifier %" PRIu64 ", timeline %" PRIu32 ")",
       version / 10000, version % 10000, sys.system_id, sys.timeline);
    int mismatch = 0;
    for (int i = 0; i < c->cfg->nrepos; i++) {
        wv_repo *rp = c->repos[i];
        if (!c->repo_ok[i] || !rp->have_info)
            continue;
        if (rp->info.system_id != sys.system_id ||
            rp->info.pg_major != (uint32_t)(version / 10000) || rp->info.wal_segsize != segsize) {
            wv_err_clear(&err);
            wv_err_set(&err, WV_EMISMATCH,
                       "%s belongs to another cluster: system identifier %" PRIu64
                       ", PostgreSQL %" PRIu32 " (this server: %" PRIu64 ", PostgreSQL %d)",
                       c->cfg->repos[i].name, rp->info.system_id, rp->info.pg_major, sys.system_id,
                       version / 10000);
            wv_err_hint(&err, "point -d at the cluster this repository belongs to, or give this "
                              "cluster a repository of its own");
            failed(c, WV_EMISMATCH, &err);
            mismatch = 1;
        }
    }
    if (!mismatch)
        ok("every repository used so far belongs to this cluster");

    char mode[64], lib[1024], cmd[4096], wp[4096];
    r = wv_pgrepl_show(conn, "archive_mode", mode, sizeof(mode), &err);
    if (r == 0)
        r = wv_pgrepl_show(conn, "archive_library", lib, sizeof(lib), &err);
    if (r == 0)
        r = wv_pgrepl_show(conn, "archive_command", cmd, sizeof(cmd), &err);
    if (r == 0)
        r = wv_archcheck_wal_push_path(wp, sizeof(wp), &err);
    wv_pgrepl_close(conn);
    if (r < 0) {
        failed(c, r, &err);
        return;
    }
    /* archive_mode alone first: its own line */
    r = wv_archcheck_settings(mode, NULL, "x", wp, c->cfg->file, 0, &err);
    if (r < 0 && strncmp(err.msg, "archive_mode", 12) == 0) {
        failed(c, r, &err);
        return;
    }
    ok("archive_mode = %s", mode);
    wv_err_clear(&err);
    if ((r = wv_archcheck_settings(mode, lib, cmd, wp, c->cfg->file, 0, &err)) < 0) {
        failed(c, r, &err);
        return;
    }
    ok("archive_command runs %s with %s", wp, c->cfg->file);
    int any = 0;
    for (int i = 0; i < c->cfg->nrepos; i++)
        any |= c->repo_ok[i];
    if (any)
        check_switch(c, connstr);
}

int wv_bbcmd_check(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"dbname", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *connstr = NULL;
    wv_cli cli = {.config_path = config_path};
    wv_err err;
    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "d:c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            connstr = optarg;
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("check", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (wv_cli_no_more_args("check", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    check_ctx c;
    memset(&c, 0, sizeof(c));
    int r = wv_cli_load_config(&cli, &c.cfg, &err);
    if (r < 0)
        return wv_cli_fail(&err);
    ok("configuration %s loaded (%d %s)", c.cfg->file, c.cfg->nrepos,
       c.cfg->nrepos == 1 ? "repository" : "repositories");
    for (int i = 0; i < c.cfg->nrepos; i++)
        check_repo(&c, i);
    check_server(&c, connstr);
    char msg[WV_ERR_MSG_MAX + 64];
    if (c.failures)
        snprintf(msg, sizeof(msg), "%d check%s failed, the first: %.1000s", c.failures,
                 c.failures == 1 ? "" : "s", c.first.msg);
    else
        snprintf(msg, sizeof(msg), "every check passed");
    if (c.failures)
        printf("check failed: %d problem%s\n", c.failures, c.failures == 1 ? "" : "s");
    else
        printf("check passed\n");
    fflush(stdout);
    wv_notify(c.cfg,
              &(wv_notify_event){.event = "check",
                                 .ok = c.failures == 0,
                                 .message = msg,
                                 .repo = c.failures && c.first.repo[0] ? c.first.repo : NULL});
    for (int i = 0; i < c.cfg->nrepos; i++)
        wv_repo_close(c.repos[i]);
    wv_config_free(c.cfg);
    return c.failures ? wv_err_exit_code(c.first_rc) : 0;
}
