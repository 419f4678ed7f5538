/*
 * cli.h - the command-line conventions every walvault program shares: -c FILE / --config FILE
 * (or --config=FILE), -h/--help, -V/--version, then positional arguments. Options may appear
 * anywhere before "--". Secrets are never accepted here.
 */
#ifndef WALVAULT_CORE_CLI_H
#define WALVAULT_CORE_CLI_H

#include "core/config.h"
#include "core/error.h"

typedef struct wv_cli {
    const char *config_path; /* -c / --config, or NULL */
    int nargs;
    char **args; /* positional arguments (pointers into argv) */
} wv_cli;

/*
 * Parse argv. --help prints usage to stdout and exits 0; --version prints the version and exits 0.
 * An unknown option or a missing option value fails with WV_EUSAGE. out->args is allocated.
 */
int wv_cli_parse(int argc, char **argv, const char *usage, wv_cli *out, wv_err *err);
void wv_cli_free(wv_cli *cli);

/* Load the configuration the conventions name and apply its log level. */
int wv_cli_load_config(const wv_cli *cli, wv_config **cfg, wv_err *err);

/*
 * For subcommands that parse their options with getopt_long: the one-line error for the option
 * getopt just rejected (argv[optind - 1]), with the usage hint of "basebackup SUBCOMMAND --help".
 * Returns WV_EUSAGE.
 */
int wv_cli_bad_option(const char *subcommand, char **argv, wv_err *err);

/* After the options: WV_EUSAGE naming the first argument left over, or 0 if there is none. */
int wv_cli_no_more_args(const char *subcommand, int argc, char **argv, wv_err *err);

/* An option naming a repository ("--repo 2"): N of [repoN], 1..1000, else WV_EUSAGE naming opt and
 * val. Whether [repoN] exists is wv_cli_repo_exists's question, once the configuration is read. */
int wv_cli_repo_number(const char *opt, const char *val, int *out, wv_err *err);

/* 0 if cfg has [repoN], else WV_EUSAGE: "OPT N: no [repoN] in FILE". */
int wv_cli_repo_exists(const wv_config *cfg, const char *opt, int n, wv_err *err);

/* Report err on stderr (error line + hint) and return the exit code for it. */
int wv_cli_fail(const wv_err *err);

#endif
