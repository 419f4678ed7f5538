/*
 * wal_fetch.c - PostgreSQL's restore_command: wal-fetch [-c FILE] WAL_NAME DEST_PATH
 *
 * Exit status (the contract): 0 = DEST_PATH holds the complete, verified file; 1 = the file is in
 * no repository (every repository answered). Any other failure must not look like "not found",
 * because PostgreSQL ends archive recovery on exit codes 1..125 and would promote at the wrong
 * point: during archive recovery we exit WV_FETCH_EXIT_ABORT (>= 126), which makes PostgreSQL stop
 * with our message in its log; in standby mode (standby.signal in the working directory, which is
 * PGDATA when PostgreSQL runs us) we log the error and exit 1, because a standby retries.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "repo/repo.h"
#include "pg/walname.h"

#define WV_FETCH_EXIT_NOTFOUND 1
#define WV_FETCH_EXIT_ABORT    128

static const char usage[] =
    "usage: wal-fetch [-c FILE] WAL_NAME DEST_PATH\n"
    "\n"
    "Restore one archived WAL file (verified) to DEST_PATH. Exit status 0 when DEST_PATH holds\n"
    "the verified file, 1 when no repository has it; any error during archive recovery exits\n"
    "128 so that PostgreSQL stops instead of promoting early (1 in standby mode).\n"
    "\n"
    "postgresql.conf:  restore_command = 'wal-fetch -c /etc/walvault/walvault.conf %f %p'\n"
    "\n"
    "  -c, --config FILE   configuration file (default: $WALVAULT_CONFIG, else\n"
    "                      /etc/walvault/walvault.conf)\n"
    "  -h, --help          show this help\n"
    "  -V, --version       show the version\n";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Try each repository in order; fall back on not-found, unreachable or corrupt. The repository's
 * walvault.repo says what the file must be (segment size, cluster); without one (never written,
 * or lost) the file is checked against its own first page header. */
static int fetch(const wv_config *cfg, const char *name, const char *dest, wv_err *err)
{
    int rc;
    int any_error = 0;
    wv_err first;
    double t0 = now_ms();

    wv_err_clear(&first);
    for (int i = 0; i < cfg->nrepos; i++) {
        const wv_repo_config *rcfg = &cfg->repos[i];
        wv_repo *r = NULL;
        wv_obj_info info;
        wv_err e;
        wv_err_clear(&e);
        rc = wv_repo_open(rcfg, &r, &e);
        if (rc == 0) {
            rc = wv_repo_load_info(r, &e);
            if (rc == WV_ENOTFOUND) {
                wv_err_clear(&e);
                rc = 0;
            }
        }
        if (rc == 0)
            /* No fsync: PostgreSQL copies or renames what it keeps and makes that durable
             * itself; a crash during recovery fetches the file again. */
            rc = wv_repo_get_wal(r->st, r->have_info ? &r->info : NULL, name, dest,
                                 WV_GET_NOSYNC | WV_GET_HASH_THREAD, &info, &e);
        wv_repo_close(r);
        if (rc == 0) {
            wv_log_info("restored %s from %s (%" PRIu64 " -> %" PRIu64 " bytes, %.0f ms)", name,
                        rcfg->name, info.payload_size, info.plain_size, now_ms() - t0);
            return 0;
        }
        if (rc == WV_ENOTFOUND)
            continue;
        if (cfg->nrepos > 1)
            wv_log_warn("%s%s%s", e.msg, i + 1 < cfg->nrepos ? "; trying the next repository" : "",
                        "");
        if (!any_error)
            first = e;
        any_error = 1;
    }
    if (any_error) {
        *err = first;
        return first.code;
    }
    return wv_err_set(err, WV_ENOTFOUND, "%s not found in %s", name,
                      cfg->nrepos == 1 ? "the repository" : "any repository");
}

int main(int argc, char **argv)
{
    wv_cli cli;
    wv_config *cfg = NULL;
    wv_err err;
    int rc;
    /* PostgreSQL runs restore_command in PGDATA: standby.signal there means standby mode. */
    int standby = access("standby.signal", F_OK) == 0;

    wv_err_clear(&err);
    wv_log_init("wal-fetch", WV_LOG_INFO);
    rc = wv_cli_parse(argc, argv, usage, &cli, &err);
    if (rc == 0 && cli.nargs != 2) {
        rc = wv_err_set(&err, WV_EUSAGE, "expected WAL_NAME and DEST_PATH, got %d argument%s",
                        cli.nargs, cli.nargs == 1 ? "" : "s");
        wv_err_hint(&err, "restore_command = 'wal-fetch -c /etc/walvault/walvault.conf %%f %%p'");
    }
    if (rc == 0 && wv_walname_parse(cli.args[0], &(wv_walname){0}) == WV_WALNAME_INVALID) {
        rc = wv_err_set(&err, WV_EUSAGE,
                        "\"%s\" is not a WAL segment, partial segment, timeline history or backup "
                        "history file name",
                        cli.args[0]);
        wv_err_hint(&err, "the first argument is PostgreSQL's %%f, the second %%p");
    }
    if (rc == 0 && cli.args[1][0] == '\0')
        rc = wv_err_set(&err, WV_EUSAGE, "DEST_PATH is empty");
    if (rc == 0)
        rc = wv_cli_load_config(&cli, &cfg, &err);
    if (rc == 0)
        rc = fetch(cfg, cli.args[0], cli.args[1], &err);
    wv_config_free(cfg);
    wv_cli_free(&cli);

    if (rc == 0)
        return 0;
    if (rc == WV_ENOTFOUND) {
        /* The normal end of the archive; a standby asks every few seconds, so stay quiet there. */
        if (!standby)
            wv_log_info("%s", err.msg);
        return WV_FETCH_EXIT_NOTFOUND;
    }
    wv_log_err(&err);
    if (standby) {
        wv_log_error("standby mode: exiting 1 so that PostgreSQL retries");
        return WV_FETCH_EXIT_NOTFOUND;
    }
    wv_log_error("stopping archive recovery (exit %d) so that PostgreSQL does not promote at the "
                 "wrong point; fix the cause and start the server again",
                 WV_FETCH_EXIT_ABORT);
    return WV_FETCH_EXIT_ABORT;
}
