/* cli.c - shared command-line conventions. */
#include "core/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"

int wv_cli_parse(int argc, char **argv, const char *usage, wv_cli *out, wv_err *err)
{
    memset(out, 0, sizeof(*out));
    out->args = wv_xcalloc((size_t)argc + 1, sizeof(char *));
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || a[1] == '\0') {
            out->args[out->nargs++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            only_args = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            wv_cli_free(out);
            exit(0);
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("%s (walvault) %s\n", wv_log_progname(), WALVAULT_VERSION);
            wv_cli_free(out);
            exit(0);
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                wv_cli_free(out);
                wv_err_set(err, WV_EUSAGE, "option %s needs a file name", a);
                return wv_err_hint(err, "run \"%s --help\" for usage", wv_log_progname());
            }
            out->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            out->config_path = a + 9;
        } else if (strncmp(a, "-c", 2) == 0) {
            out->config_path = a + 2;
        } else {
            wv_cli_free(out);
            wv_err_set(err, WV_EUSAGE, "unknown option \"%s\"", a);
            return wv_err_hint(err, "run \"%s --help\" for usage", wv_log_progname());
        }
    }
    return 0;
}

void wv_cli_free(wv_cli *cli)
{
    free(cli->args);
    cli->args = NULL;
    cli->nargs = 0;
}

int wv_cli_load_config(const wv_cli *cli, wv_config **cfg, wv_err *err)
{
    int rc = wv_config_load(wv_config_path(cli->config_path), cfg, err);
    if (rc == 0) {
        wv_log_set_level((*cfg)->log_level);
        if ((*cfg)->log_file)
            wv_log_open_file((*cfg)->log_file);
    }
    return rc;
}

int wv_cli_fail(const wv_err *err)
{
    wv_log_err(err);
    return wv_err_exit_code(err->code);
}

int wv_cli_bad_option(const char *subcommand, char **argv, wv_err *err)
{
    wv_err_set(err, WV_EUSAGE, "unknown or incomplete option \"%s\"", argv[optind - 1]);
    return wv_err_hint(err, "run \"basebackup %s --help\" for usage", subcommand);
}

int wv_cli_repo_number(const char *opt, const char *val, int *out, wv_err *err)
{
    char *end = NULL;
    long v = strtol(val, &end, 10);
    if (!*val || *end || v < 1 || v > 1000)
        return wv_err_set(err, WV_EUSAGE, "%s: \"%s\" is not a repository number (N of [repoN])",
                          opt, val);
    *out = (int)v;
    return 0;
}

int wv_cli_repo_exists(const wv_config *cfg, const char *opt, int n, wv_err *err)
{
    if (wv_config_repo(cfg, n))
        return 0;
    return wv_err_set(err, WV_EUSAGE, "%s %d: no [repo%d] in %s", opt, n, n, cfg->file);
}

int wv_cli_no_more_args(const char *subcommand, int argc, char **argv, wv_err *err)
{
    if (optind >= argc)
        return 0;
    wv_err_set(err, WV_EUSAGE, "unexpected argument \"%s\"", argv[optind]);
    return wv_err_hint(err, "run \"basebackup %s --help\" for usage", subcommand);
}
