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

#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/retention_config.h"
#include "repo/backupset.h"
#include "repo/retention.h"
#include "repo/walarchive.h"

typedef int (*wv_bbcmd_fn)(int argc, char **argv, const char *config_path);

typedef struct wv_bbcmd {
    const char *name;
    wv_bbcmd_fn run;
    const char *synopsis; /* one line for the usage text */
} wv_bbcmd;

int wv_bbcmd_backup(int argc, char **argv, const char *config_path);
int wv_bbcmd_check(int argc, char **argv, const char *config_path);
int wv_bbcmd_drill(int argc, char **argv, const char *config_path);
int wv_bbcmd_mark(int argc, char **argv, const char *config_path);
int wv_bbcmd_migrate_safe(int argc, char **argv, const char *config_path);
int wv_bbcmd_list(int argc, char **argv, const char *config_path);
int wv_bbcmd_rekey(int argc, char **argv, const char *config_path);
int wv_bbcmd_restore(int argc, char **argv, const char *config_path);
int wv_bbcmd_status(int argc, char **argv, const char *config_path);
int wv_bbcmd_sync(int argc, char **argv, const char *config_path);
int wv_bbcmd_verify(int argc, char **argv, const char *config_path);
int wv_bbcmd_expire(int argc, char **argv, const char *config_path);
int wv_bbcmd_delete(int argc, char **argv, const char *config_path);
int wv_bbcmd_keep(int argc, char **argv, const char *config_path);

/* ---- shared by expire, list and backup (expire.c) -------------------------------------------- */

/* The policy's `now`: this machine's clock (see expire.c on the assumption this makes), or the
 * test seam WALVAULT_TEST_NOW=EPOCH_SECONDS when it is set (tests only). */
int64_t wv_bb_now(void);

/*
 * The retention decision for one repository: its policy (*pol), then wv_retention_apply and
 * wv_retention_verify over its backup set and WAL archive. 0 with *res to free
 * (wv_retention_result_free), or an error naming the repository.
 */
int wv_bb_retention_compute(const wv_config *cfg, const wv_repo_config *rc, const wv_backupset *bs,
                            const wv_archive *arch, int64_t now, wv_retention_policy *pol,
                            wv_retention_result *res, wv_err *err);

/* backup's `after_backup = yes`: expire every repository whose policy says so. */
int wv_bb_expire_after_backup(const wv_config *cfg, wv_err *err);

#endif
