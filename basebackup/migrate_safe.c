/*
 * migrate_safe.c - basebackup migrate-safe [--label TEXT] [--backup] [-d CONNSTR] -- COMMAND...
 *
 * Before a schema migration: with --backup a base backup labelled TEXT (default "pre-migration"),
 * fast checkpoint; then a restore point LABEL-YYYYMMDDTHHMMSSZ (the server's clock, UTC; with
 * "-2", "-3"... when that name is taken) archived in every repository (as mark). Only when all that succeeded is COMMAND run: fork and exec, no
 * shell, stdin/stdout/stderr inherited, SIGINT and SIGTERM forwarded to it. The exit status is
 * COMMAND's (128 + N when a signal N ended it); before COMMAND runs (and again when it fails) the
 * exact restore command that returns to the moment before it is printed on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/notify.h"
#include "mark.h"

static const char usage[] =
    "usage: basebackup [-c FILE] migrate-safe [--label TEXT] [--backup] [-d CONNSTR] -- COMMAND "
    "[ARG]...\n"
    "\n"
    "Mark a restore point LABEL-<server time> (with --backup, take a base backup first), then run\n"
    "COMMAND only if that succeeded; exit with COMMAND's exit status. The restore command that\n"
    "returns to the moment before COMMAND is printed on stderr.\n"
    "\n"
    "  --label TEXT           backup label and restore point prefix (default pre-migration)\n"
    "  --backup               take a base backup first (fast checkpoint)\n"
    "  -d, --dbname CONNSTR   libpq connection string of the primary (else PG* environment)\n";

static volatile sig_atomic_t child_pid;

static void forward(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

/* Run argv (PATH searched, no shell); its exit status, or 128 + signal. */
static int run_command(char **argv, wv_err *err)
{
    fflush(stdout);
    fflush(stderr);
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        return wv_err_errno(err, WV_EIO, e, "could not run \"%s\"", argv[0]);
    }
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        execvp(argv[0], argv);
        fprintf(stderr, "basebackup: error: could not run \"%s\": %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            int e = errno;
            child_pid = 0;
            return wv_err_errno(err, WV_EIO, e, "could not wait for \"%s\"", argv[0]);
        }
    }
    child_pid = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* migrate-safe's event for [global] notify_command (its failure is logged by wv_notify and never
 * changes the exit status). */
static void notify_event(const wv_config *cfg, int ok, const char *message)
{
    wv_notify(cfg, &(wv_notify_event){.event = "migrate-safe", .ok = ok, .message = message});
}

int wv_bbcmd_migrate_safe(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"label", required_argument, NULL, 'l'},  {"backup", no_argument, NULL, 'b'},
        {"dbname", required_argument, NULL, 'd'}, {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    wv_err err;
    wv_err_clear(&err);
    const char *label = "pre-migration", *connstr = NULL;
    int backup = 0, c;
    optind = 1;
    opterr = 0;
    /* "+": options end at the first word that is not one (COMMAND), or at "--". */
    while ((c = getopt_long(argc, argv, "+d:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            label = optarg;
            break;
        case 'b':
            backup = 1;
            break;
        case 'd':
            connstr = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("migrate-safe", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (optind >= argc) {
        wv_err_set(&err, WV_EUSAGE, "migrate-safe: no COMMAND given");
        wv_err_hint(&err, "put the migration after \"--\", e.g. basebackup migrate-safe -- "
                          "prisma migrate deploy");
        return wv_cli_fail(&err);
    }
    char **cmd = argv + optind;
    /* The name: LABEL-YYYYMMDDTHHMMSSZ, at most 63 bytes. */
    if (strlen(label) + 19 > WV_MARK_NAME_MAX || !label[0]) {
        wv_err_set(&err, WV_EUSAGE,
                   "bad --label \"%s\": 1 to %d bytes (the restore point adds "
                   "\"-YYYYMMDDTHHMMSSZ\" and maybe \"-N\")",
                   label, WV_MARK_NAME_MAX - 19);
        return wv_cli_fail(&err);
    }
    wv_config *cfg = NULL;
    wv_cli cli = {.config_path = config_path};
    char stamp[64], name[128], lsn[64];
    int rc = wv_mark_name_check(label, &err);
    if (rc == 0)
        rc = wv_cli_load_config(&cli, &cfg, &err);
    if (rc == 0)
        rc = wv_mark_server_time(connstr, stamp, sizeof(stamp), &err);
    if (rc == 0 && backup) {
        char *bargv[10];
        int n = 0;
        bargv[n++] = "backup";
        bargv[n++] = "--label";
        bargv[n++] = (char *)label;
        bargv[n++] = "--checkpoint";
        bargv[n++] = "fast";
        if (connstr) {
            bargv[n++] = "-d";
            bargv[n++] = (char *)connstr;
        }
        bargv[n] = NULL;
        fprintf(stderr,
                "basebackup: migrate-safe: taking base backup \"%s\": waiting for "
                "checkpoint (fast)\n",
                label);
        int code = wv_bbcmd_backup(n, bargv, cfg->file);
        if (code != 0) {
            fprintf(stderr,
                    "basebackup: migrate-safe: the backup failed: \"%s\" was not "
                    "run\n",
                    cmd[0]);
            notify_event(cfg, 0, "the backup failed: COMMAND was not run");
            wv_config_free(cfg);
            return code;
        }
    }
    if (rc == 0) {
        /* a name already archived (two migrations in one second) gets "-2", "-3", ... */
        snprintf(name, sizeof(name), "%s-%s", label, stamp);
        rc = wv_mark_create(cfg, connstr, name, 0, lsn, sizeof(lsn), &err);
        for (int k = 2; rc == WV_EEXIST && k <= 9; k++) {
            snprintf(name, sizeof(name), "%s-%s-%d", label, stamp, k);
            rc = wv_mark_create(cfg, connstr, name, 0, lsn, sizeof(lsn), &err);
        }
    }
    if (rc != 0) {
        int code = wv_cli_fail(&err);
        fprintf(stderr, "basebackup: migrate-safe: no restore point: \"%s\" was not run\n", cmd[0]);
        notify_event(cfg, 0, "no restore point: COMMAND was not run");
        wv_config_free(cfg);
        return code;
    }
    fprintf(stderr,
            "basebackup: migrate-safe: restore point \"%s\" at %s archived; to return to the "
            "moment before \"%s\":\n",
            name, lsn, cmd[0]);
    wv_mark_print_restore(stderr, cfg, name);
    int status = run_command(cmd, &err);
    if (status < 0) {
        status = wv_cli_fail(&err);
    } else if (status != 0) {
        fprintf(stderr,
                "basebackup: migrate-safe: \"%s\" exited with status %d; to return to the "
                "moment before it:\n",
                cmd[0], status);
        wv_mark_print_restore(stderr, cfg, name);
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "\"%s\" exited with status %d; restore point \"%s\"", cmd[0], status,
             name);
    notify_event(cfg, status == 0, msg);
    wv_config_free(cfg);
    return status;
}
