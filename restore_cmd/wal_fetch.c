/*
 * wal_fetch.c - PostgreSQL's restore_command: wal-fetch [-c FILE] WAL_NAME DEST_PATH
 *
 * Exit status (the contract): 0 = DEST_PATH holds the complete, verified file; 1 = the file is in
 * no repository (every repository answered). Any other failure must not look like "not found",
 * because PostgreSQL ends archive recovery on exit codes 1..125 and would promote at the wrong
 * point: during archive recovery we exit WV_FETCH_EXIT_ABORT (>= 126), which makes PostgreSQL stop
 * with our message in its log; in standby mode (standby.signal in the working directory, which is
 * PGDATA when PostgreSQL runs us) we log the error and exit 1, because a standby retries.
 *
 * With [global] fetch_ahead (the default 64MiB) a segment request also keeps the following
 * segments coming into the cluster's prefetch spool (prefetch.h, fetcher.c).
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
#include "prefetch.h"

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
static int fetch(wf_repos *repos, const char *name, const char *dest, wv_err *err)
{
    const wv_config *cfg = repos->cfg;
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
        rc = wf_repo(repos, i, &r, &e);
        if (rc == 0)
            /* No fsync: PostgreSQL copies or renames what it keeps and makes that durable
             * itself; a crash during recovery fetches the file again. */
            rc = wv_repo_get_wal(r->st, r->have_info ? &r->info : NULL, name, dest,
                                 WV_GET_NOSYNC | WV_GET_HASH_THREAD, &info, &e);
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

/*
 * The request with prefetch (fetch_ahead > 0). A segment: say it is wanted (the background
 * fetcher then keeps the following ones coming), serve it from the spool if it is there and
 * valid, else fetch it directly. The spool is dropped on a request for another timeline than the
 * one last wanted, on a history file found (a new timeline) or asked for during archive recovery
 * (the start or the end of recovery), and on a segment not found during archive recovery (the
 * end of the archive). In standby mode not found is only the end of what is archived so far: the
 * spool stays (the fetcher keeps only the window after the segment asked for).
 */
static int fetch_with_prefetch(wf_repos *repos, const char *name, const char *dest, int standby,
                               wv_err *err)
{
    wf_spool sp;
    wv_err e;
    wv_walname w;
    wv_walname_kind kind = wv_walname_parse(name, &w);
    wv_err_clear(&e);
    int rc = wf_spool_open(repos, &sp, &e);
    if (rc != 0) {
        if (rc != WV_ENOTFOUND)
            wv_log_info("prefetch is off for this call: %s", e.msg);
        return fetch(repos, name, dest, err);
    }
    if (kind != WV_WALNAME_SEGMENT) {
        rc = fetch(repos, name, dest, err);
        if (kind == WV_WALNAME_HISTORY && (rc == 0 || !standby))
            wf_spool_drop(&sp);
        return rc;
    }
    char last[WV_WALNAME_SEGMENT_LEN];
    wf_spool_wanted(&sp, last);
    wv_walname lw;
    if (last[0] && wv_walname_parse(last, &lw) == WV_WALNAME_SEGMENT && lw.tli != w.tli)
        wf_spool_drop(&sp);
    if (wf_spool_want(&sp, name, &e) != 0) {
        wv_log_info("prefetch is off for this call: %s", e.msg);
        return fetch(repos, name, dest, err);
    }
    wf_spool_kick(&sp, repos->cfg);
    rc = wf_spool_serve(&sp, repos, name, dest, err);
    if (rc != WV_ENOTFOUND)
        return rc;
    rc = fetch(repos, name, dest, err);
    if (rc == WV_ENOTFOUND && !standby)
        wf_spool_drop(&sp);
    return rc;
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
    if (rc == 0) {
        wf_repos repos = {.cfg = cfg};
        rc = fetch_with_prefetch(&repos, cli.args[0], cli.args[1], standby, &err);
        wf_repos_close(&repos);
    }
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
