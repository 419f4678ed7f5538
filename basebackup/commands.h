/*
 * commands.h - basebackup's subcommands. Each lives in its own file and is one row of the table in
 * main.c: a new subcommand adds its file, its declaration here and one row there.
 *
 * A subcommand receives argv with argv[0] = its own name and the options that follow it, and the
 * configuration file named before it (-c FILE, or NULL: $WALVAULT_CONFIG, then the default). It
 * may accept -c/--config itself too. It returns the process exit code: 0, or the code of the
 * error table (wv_err_exit_code) after printing one error line (and a hint) on stderr.
 */
#ifndef WALVAULT_BASEBACKUP_COMMANDS_H
#define WALVAULT_BASEBACKUP_COMMANDS_H

typedef int (*wv_bbcmd_fn)(int argc, char **argv, const char *config_path);

typedef struct wv_bbcmd {
    const char *name;
    wv_bbcmd_fn run;
    const char *synopsis; /* one line for the usage text */
} wv_bbcmd;

int wv_bbcmd_backup(int argc, char **argv, const char *config_path);
int wv_bbcmd_check(int argc, char **argv, const char *config_path);
int wv_bbcmd_list(int argc, char **argv, const char *config_path);
int wv_bbcmd_restore(int argc, char **argv, const char *config_path);
int wv_bbcmd_status(int argc, char **argv, const char *config_path);
int wv_bbcmd_sync(int argc, char **argv, const char *config_path);
int wv_bbcmd_verify(int argc, char **argv, const char *config_path);

#endif
