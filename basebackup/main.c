/* main.c - basebackup: global options, then dispatch to a subcommand through the table below. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/error.h"
#include "core/log.h"

/* One row per subcommand. */
static const wv_bbcmd commands[] = {
    {"backup", wv_bbcmd_backup,
     "backup  [-d CONNSTR] [--label TEXT] [--keep] [--checkpoint fast|spread]"},
    {"check", wv_bbcmd_check, "check   [-d CONNSTR]"},
    {"drill", wv_bbcmd_drill,
     "drill   [--to TIME] [--sql FILE]... [--keep-on-failure] [--backup ID] [--repo N]\n"
     "                                [--timeout SECONDS]"},
    {"list", wv_bbcmd_list, "list    [--json] [--repo N]"},
    {"mark", wv_bbcmd_mark, "mark    NAME [-d CONNSTR] [--force]"},
    {"migrate-safe", wv_bbcmd_migrate_safe,
     "migrate-safe [--label TEXT] [--backup] [-d CONNSTR] -- COMMAND [ARG]..."},
    {"restore", wv_bbcmd_restore,
     "restore --pgdata DIR [--to TIME | --lsn LSN | --xid XID | --name NAME | --immediate]\n"
     "                                [--backup ID] [--timeline latest|current|N]\n"
     "                                [--target-action promote|pause|shutdown] [--delta]\n"
     "                                [--tablespace-map OLD=NEW] [--repo N] [--dry-run]\n"
     "                                [--archive-mode off|preserve]"},
    {"rekey", wv_bbcmd_rekey,
     "rekey   --new-key-file FILE | --new-public-key-file FILE [--repo N]"},
    {"status", wv_bbcmd_status, "status  [--json] [--prometheus FILE] [-d CONNSTR] [--repo N]"},
    {"sync", wv_bbcmd_sync, "sync    --from N --to M [--dry-run]"},
    {"verify", wv_bbcmd_verify, "verify  [--backup ID] [--repo N]"},
    {"expire", wv_bbcmd_expire, "expire  [--dry-run] [--json] [--repo N]"},
    {"delete", wv_bbcmd_delete, "delete  --backup ID [--force] [--repo N]"},
    {"keep", wv_bbcmd_keep, "keep    --backup ID on|off [--repo N]"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: basebackup [-c FILE] SUBCOMMAND [OPTIONS]\n\nsubcommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  basebackup [-c FILE] %s\n", commands[i].synopsis);
    fprintf(f, "\n-c FILE, --config FILE   configuration file (else $WALVAULT_CONFIG, else "
               "/etc/walvault/walvault.conf)\n");
}

static void list_names(char *out, size_t len)
{
    out[0] = '\0';
    for (size_t i = 0; i < NCOMMANDS; i++) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", i ? ", " : "", commands[i].name);
    }
}

int main(int argc, char **argv)
{
    wv_log_init("basebackup", WV_LOG_INFO);
    /* cron mail and redirections get the time of each line; a terminal and the journal do not */
    wv_log_set_stderr_timestamps(wv_log_stderr_wants_timestamps());
    const char *config_path = NULL;
    int i = 1;
    wv_err err;
    wv_err_clear(&err);
    char names[512];
    list_names(names, sizeof(names));
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("basebackup (walvault) %s\n", WALVAULT_VERSION);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                wv_err_set(&err, WV_EUSAGE, "option %s needs a file name", a);
                wv_log_err(&err);
                return wv_err_exit_code(err.code);
            }
            config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config_path = a + 9;
        } else if (strncmp(a, "-c", 2) == 0) {
            config_path = a + 2;
        } else {
            wv_err_set(&err, WV_EUSAGE, "unknown option \"%s\"", a);
            wv_err_hint(&err, "options of a subcommand follow its name; run \"basebackup "
                              "--help\" for usage");
            wv_log_err(&err);
            return wv_err_exit_code(err.code);
        }
    }
    if (i >= argc) {
        wv_err_set(&err, WV_EUSAGE, "no subcommand given (valid: %s)", names);
        wv_err_hint(&err, "run \"basebackup --help\" for usage");
        wv_log_err(&err);
        return wv_err_exit_code(err.code);
    }
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            return commands[k].run(argc - i, argv + i, config_path);
    wv_err_set(&err, WV_EUSAGE, "unknown subcommand \"%s\" (valid: %s)", argv[i], names);
    wv_err_hint(&err, "run \"basebackup --help\" for usage");
    wv_log_err(&err);
    return wv_err_exit_code(err.code);
}
