/* wal_push.c - PostgreSQL's archive_command: wal-push [-c FILE] WAL_PATH */
#include <stdlib.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "push.h"

static const char usage[] =
    "usage: wal-push [-c FILE] WAL_PATH\n"
    "\n"
    "Archive one WAL segment, partial segment, timeline history or backup history file to every\n"
    "repository of the configuration. Exit status 0 only once it is durable everywhere.\n"
    "\n"
    "postgresql.conf:  archive_command = 'wal-push -c /etc/walvault/walvault.conf %p'\n"
    "\n"
    "  -c, --config FILE   configuration file (default: $WALVAULT_CONFIG, else\n"
    "                      /etc/walvault/walvault.conf)\n"
    "  -h, --help          show this help\n"
    "  -V, --version       show the version\n";

int main(int argc, char **argv)
{
    wv_cli cli;
    wv_config *cfg = NULL;
    wv_err err;
    int rc;

    wv_err_clear(&err);
    wv_log_init("wal-push", WV_LOG_INFO);
    if ((rc = wv_cli_parse(argc, argv, usage, &cli, &err)) != 0)
        return wv_cli_fail(&err);
    if (cli.nargs != 1) {
        wv_err_set(&err, WV_EUSAGE, "%s: expected exactly one WAL_PATH, got %d arguments",
                   cli.nargs == 0 ? "missing WAL_PATH" : "too many arguments", cli.nargs);
        wv_err_hint(&err, "archive_command = 'wal-push -c /etc/walvault/walvault.conf %%p'");
        wv_cli_free(&cli);
        return wv_cli_fail(&err);
    }
    rc = wv_cli_load_config(&cli, &cfg, &err);
    if (rc == 0)
        rc = cfg->archive_async ? wv_push_async(cfg, cli.args[0], &err)
                                : wv_push_file(cfg, cli.args[0], &err);
    wv_config_free(cfg);
    wv_cli_free(&cli);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}
