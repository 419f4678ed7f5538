/*
 * drill.c - basebackup drill [--to TIME] [--sql FILE]... [--keep-on-failure] [--backup ID]
 *           [--repo N] [--timeout S]: a restore test.
 *
 * 1. A new temporary directory (mkdtemp under [global] drill_path, else $TMPDIR, else /tmp), given
 *    to the user the server runs as (pg/server.h: this process's user; when root, the owner of the
 *    first posix repository or the configuration file unless that is root, else "postgres").
 * 2. The backup chosen by the recovery planner as restore would (newest, newest before --to, or
 *    --backup), then the restore, in-process (the restore command's own code) with that backup
 *    named, --archive-mode off, restore_command = wal-fetch on this configuration and each
 *    tablespace mapped to DIR/tblspc/OID (never its own location).
 * 3. The server started there with pg_ctl -w as that user, on a free port of 127.0.0.1 and a unix
 *    socket inside the directory, archive_mode = off on its command line too, a pg_hba.conf of
 *    its own (local trust only); then pg_is_in_recovery() polled until recovery has ended.
 * 4. pg_amcheck --all --heapallindexed, then every --sql FILE (a statement that fails, or a result
 *    whose first value is false, fails the drill; each result's first value is printed).
 * 5. The report: backup, target, timeline, restore / recovery / check seconds and the total (the
 *    RTO); the same into STATE_PATH/last-drill.json (written atomically) for status.
 * 6. The server stopped, the directory removed (kept with --keep-on-failure when something failed).
 *
 * A drill never writes to a repository: the restored server cannot archive (archive_mode = off in
 * postgresql.auto.conf and on its command line), so its new timeline never reaches an archive and
 * a later restore of production still finds one timeline continuing past the backup.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "core/buf.h"
#include "core/cli.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/timeparse.h"
#include "core/units.h"
#include "core/json.h"
#include "pg/server.h"
#include "pg/sql.h"
#include "repo/backupset.h"
#include "repo/manifest.h"
#include "repo/recovery.h"
#include "repo/repo.h"
#include "repo/walarchive.h"

#define MAX_SQL 32
#define MAX_TS  32

/* SIGINT, SIGTERM, SIGHUP: the drill stops after the step under way, then stops the server and
 * removes the directory as after any failure. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    static const char msg[] = "basebackup: drill: interrupted: stopping the server and cleaning up "
                              "after the current step\n";
    if (!interrupted && write(2, msg, sizeof(msg) - 1) < 0) {
        /* nothing more to say */
    }
    interrupted = sig;
}

static void catch_signals(struct sigaction old[3])
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* the I/O under way goes on; the sleeps between polls end */
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, &old[i]);
}

static void restore_signals(const struct sigaction old[3])
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
}

/* After a step: an interruption wins over what the step returned (a child the signal ended). */
static int step(int rc, wv_err *err)
{
    if (!interrupted)
        return rc;
    return wv_err_set(err, WV_EINTERRUPTED, "drill: interrupted by signal %d", (int)interrupted);
}

static const char usage[] =
    "usage: basebackup [-c FILE] drill [--to TIME] [--sql FILE]... [--keep-on-failure]\n"
    "                                  [--backup ID] [--repo N] [--timeout SECONDS]\n"
    "\n"
    "Restore the newest backup (or to TIME) into a temporary directory with archiving off, start\n"
    "PostgreSQL there on a free port, wait for recovery, run pg_amcheck --heapallindexed and\n"
    "every --sql FILE, report the restore and recovery times, then stop and remove everything.\n"
    "Never writes to a repository. Exit 0 only when every check passed.\n"
    "\n"
    "  --to TIME            recovery target time (as restore --to)\n"
    "  --sql FILE           SQL run in database postgres; a failing statement or a first value\n"
    "                       that is false fails the drill (repeatable)\n"
    "  --keep-on-failure    keep the directory (its path printed) when the drill fails\n"
    "  --backup ID          restore this backup\n"
    "  --repo N             restore from [repoN]\n"
    "  --timeout SECONDS    bound on the server start and on recovery (default 3600)\n";

typedef struct drill_opts {
    const char *config_path, *to, *backup_id, *repo_arg;
    const char *sql[MAX_SQL];
    char *sql_text[MAX_SQL];
    int nsql, keep, timeout;
} drill_opts;

typedef struct drill {
    const drill_opts *o;
    const wv_config *cfg;
    wv_runas as;
    char *bindir, *base, *pgdata, *log, *connstr;
    int port, started;
    int restore_code; /* the restore's exit code when it failed (its error is printed) */
    char backup_id[128];
    uint32_t ts_oid[MAX_TS]; /* the backup's tablespaces, restored under base/tblspc/OID */
    char *ts_loc[MAX_TS];
    int nts;
    uint32_t tli;
    double restore_s, recovery_s, check_s, total_s;
} drill;

static int parse_args(int argc, char **argv, drill_opts *o, wv_err *err)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, 't'},
        {"sql", required_argument, NULL, 's'},
        {"keep-on-failure", no_argument, NULL, 'k'},
        {"backup", required_argument, NULL, 'b'},
        {"repo", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 'T'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, n;
    optind = 1;
    opterr = 0;
    o->timeout = 3600;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->to = optarg;
            break;
        case 's':
            if (o->nsql >= MAX_SQL)
                return wv_err_set(err, WV_EUSAGE, "at most %d --sql files", MAX_SQL);
            o->sql[o->nsql++] = optarg;
            break;
        case 'k':
            o->keep = 1;
            break;
        case 'b':
            o->backup_id = optarg;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &n, err) < 0)
                return err->code;
            o->repo_arg = optarg;
            break;
        case 'T': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || v < 1 || v > 86400 * 7)
                return wv_err_set(err, WV_EUSAGE,
                                  "bad --timeout \"%s\": expected seconds from 1 to 604800",
                                  optarg);
            o->timeout = (int)v;
            break;
        }
        case 'c':
            o->config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            return wv_cli_bad_option("drill", argv, err);
        }
    }
    return wv_cli_no_more_args("drill", argc, argv, err);
}

/* Each --sql file read before anything starts. */
static int read_sql_files(drill_opts *o, wv_err *err)
{
    for (int i = 0; i < o->nsql; i++) {
        FILE *f = fopen(o->sql[i], "r");
        if (!f)
            return wv_err_errno(err, WV_EIO, errno, "could not read --sql file \"%s\"", o->sql[i]);
        wv_buf b = WV_BUF_INIT;
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            wv_buf_append(&b, chunk, n);
        int bad = ferror(f);
        fclose(f);
        if (bad) {
            wv_buf_free(&b);
            return wv_err_set(err, WV_EIO, "could not read --sql file \"%s\"", o->sql[i]);
        }
        o->sql_text[i] = wv_xstrdup(wv_buf_cstr(&b));
        wv_buf_free(&b);
    }
    return 0;
}

/* The PostgreSQL major version of the repository drill restores from. */
static int repo_major(const wv_config *cfg, const char *repo_arg, uint32_t *major, wv_err *err)
{
    const wv_repo_config *rc = &cfg->repos[0];
    if (repo_arg) {
        int n = atoi(repo_arg);
        int known = wv_cli_repo_exists(cfg, "--repo", n, err);
        if (known < 0)
            return known;
        rc = wv_config_repo(cfg, n);
    }
    wv_repo *r = NULL;
    int res = wv_repo_open(rc, &r, err);
    if (res == 0)
        res = wv_repo_load_info(r, err);
    if (res == WV_ENOTFOUND)
        res = wv_err_set(err, WV_EREFUSED, "%s: the repository is empty (nothing to drill)",
                         rc->name);
    else if (res != 0)
        wv_err_context(err, rc->name, NULL);
    if (res == 0)
        *major = r->info.pg_major;
    wv_repo_close(r);
    return res;
}

/* The reference path of the user rule: the first posix repository, else the configuration. */
static const char *owner_ref(const wv_config *cfg)
{
    for (int i = 0; i < cfg->nrepos; i++)
        if (cfg->repos[i].type == WV_REPO_POSIX)
            return cfg->repos[i].path;
    return cfg->file;
}

/* A value that goes on pg_ctl's -o line, which a shell reads: no quote, space or backslash. */
static int plain_path(const char *p, wv_err *err)
{
    if (strpbrk(p, "'\"\\ \t\n$`"))
        return wv_err_set(err, WV_ECONFIG,
                          "drill directory \"%s\" has a quote, blank or shell character", p);
    return 0;
}

static int make_base(drill *d, wv_err *err)
{
    const char *parent = d->cfg->drill_path;
    if (!parent || !*parent)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    if (parent[0] != '/')
        return wv_err_set(err, WV_ECONFIG,
                          "drill directory parent \"%s\" ($TMPDIR) is not an absolute path",
                          parent);
    d->base = wv_xasprintf("%s/walvault-drill-XXXXXX", parent);
    if (!mkdtemp(d->base)) {
        int e = errno;
        wv_err_errno(err, WV_EIO, e, "could not create a drill directory in \"%s\"", parent);
        wv_err_hint(err, "set [global] drill_path to a directory with room for a restored copy");
        free(d->base);
        d->base = NULL;
        return WV_EIO;
    }
    d->pgdata = wv_xasprintf("%s/data", d->base);
    d->log = wv_xasprintf("%s/server.log", d->base);
    int rc = plain_path(d->base, err);
    if (rc == 0 && geteuid() == 0 && chown(d->base, d->as.uid, d->as.gid) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not give \"%s\" to user %s", d->base,
                          d->as.name);
    return rc;
}

/* A tablespace of the chosen backup: mapped into the drill directory, never its own location. */
static int collect_ts(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    drill *d = arg;
    if (e->type != WV_MANIFEST_TABLESPACE)
        return 0;
    if (d->nts >= MAX_TS)
        return wv_err_set(err, WV_EREFUSED, "drill: the backup has more than %d tablespaces",
                          MAX_TS);
    d->ts_oid[d->nts] = e->oid;
    d->ts_loc[d->nts++] = wv_xstrdup(e->target);
    return 0;
}

/* The backup the restore will choose (the planner's decision for --to / --backup on the
 * repository restore uses), and its tablespaces. */
static int plan_on(drill *d, const wv_repo_config *rc, const wv_target *t, wv_err *err)
{
    wv_repo *r = NULL;
    wv_archive *a = NULL;
    wv_backupset bs;
    wv_recovery_facts f;
    wv_plan plan;
    memset(&bs, 0, sizeof(bs));
    memset(&f, 0, sizeof(f));
    int res = wv_repo_open(rc, &r, err);
    if (res == 0)
        res = wv_repo_load_info(r, err);
    if (res == 0)
        res = wv_backupset_load(r->st, &bs, err);
    if (res == 0)
        res = wv_archive_scan(r->st, r->info.wal_segsize, &a, err);
    if (res == 0)
        res = wv_recovery_facts_gather(r->st, a, &bs, t, &f, err);
    if (res == 0)
        res = wv_recovery_decide(&f, t, WV_TLI_AUTO, d->o->backup_id, &plan, err);
    if (res == 0) {
        snprintf(d->backup_id, sizeof(d->backup_id), "%s", plan.backup->h.id);
        wv_manifest_header h;
        memset(&h, 0, sizeof(h));
        res = wv_manifest_load(r->st, d->backup_id, &h, collect_ts, d, NULL, err);
        wv_manifest_header_free(&h);
    }
    if (res != 0)
        wv_err_context(err, rc->name, NULL);
    wv_recovery_facts_free(&f);
    wv_backupset_free(&bs);
    wv_archive_free(a);
    wv_repo_close(r);
    return res;
}

static int plan_backup(drill *d, wv_err *err)
{
    wv_target t;
    memset(&t, 0, sizeof(t));
    if (d->o->to) {
        int rc = wv_time_parse(d->o->to, (int64_t)time(NULL), &t.time_us, err);
        if (rc != 0)
            return rc;
        t.kind = WV_TARGET_TIME;
    }
    int want = d->o->repo_arg ? atoi(d->o->repo_arg) : 0, rc = WV_EREFUSED;
    wv_err first;
    wv_err_clear(&first);
    for (int i = 0; i < d->cfg->nrepos; i++) {
        if (want && d->cfg->repos[i].index != want)
            continue;
        for (int k = 0; k < d->nts; k++)
            free(d->ts_loc[k]);
        d->nts = 0;
        if ((rc = plan_on(d, &d->cfg->repos[i], &t, err)) == 0)
            return 0;
        if (!first.code)
            first = *err;
    }
    if (first.code)
        *err = first;
    return rc;
}

/* The restore, through the restore command's own code. */
static int do_restore(drill *d, wv_err *err)
{
    char *argv[16 + 2 * MAX_TS], *maps[MAX_TS];
    int n = 0;
    argv[n++] = "restore";
    argv[n++] = "--pgdata";
    argv[n++] = d->pgdata;
    argv[n++] = "--archive-mode";
    argv[n++] = "off";
    if (d->o->to) {
        argv[n++] = "--to";
        argv[n++] = (char *)d->o->to;
    }
    /* the backup planned above: the same one, named, with its tablespaces inside the drill
     * directory */
    argv[n++] = "--backup";
    argv[n++] = d->backup_id;
    for (int i = 0; i < d->nts; i++) {
        maps[i] = wv_xasprintf("%s=%s/tblspc/%" PRIu32, d->ts_loc[i], d->base, d->ts_oid[i]);
        argv[n++] = "--tablespace-map";
        argv[n++] = maps[i];
    }
    if (d->o->repo_arg) {
        argv[n++] = "--repo";
        argv[n++] = (char *)d->o->repo_arg;
    }
    argv[n] = NULL;
    double t0 = wv_mono_s();
    /* restore's stdout tells how to start the server: not what a drill wants said; its progress
     * and errors (stderr) stay */
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && null >= 0)
        dup2(null, 1);
    int code = wv_bbcmd_restore(n, argv, d->cfg->file);
    fflush(stdout);
    if (saved >= 0 && null >= 0)
        dup2(saved, 1);
    if (saved >= 0)
        close(saved);
    if (null >= 0)
        close(null);
    d->restore_s = wv_mono_s() - t0;
    for (int i = 0; i < d->nts; i++)
        free(maps[i]);
    if (code != 0)
        /* restore printed its error already: the drill adds no second error line */
        d->restore_code = code;
    return wv_err_set(err, -code, "drill: the restore failed (exit code %d)", code);
    return 0;
}

/* What restore wrote: recovery_target_timeline. */
static void read_restored_facts(drill *d)
{
    char *path = wv_xasprintf("%s/postgresql.auto.conf", d->pgdata);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        unsigned v;
        if (sscanf(line, "recovery_target_timeline = '%u'", &v) == 1)
            d->tli = v;
    }
    fclose(f);
}

/* Files the server needs and restore does not write: its own pg_hba.conf, and a postgresql.conf
 * when the cluster keeps it outside the data directory (Debian's /etc/postgresql). */
static int write_server_files(drill *d, wv_err *err)
{
    struct {
        char *path;
        const char *text;
        int only_if_missing;
    } files[] = {
        {wv_xasprintf("%s/drill_hba.conf", d->base), "local all all trust\n", 0},
        {wv_xasprintf("%s/postgresql.conf", d->pgdata), "", 1},
        {wv_xasprintf("%s", d->log), "", 0},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (rc == 0 && !(files[i].only_if_missing && access(files[i].path, F_OK) == 0)) {
            int fd = open(files[i].path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0)
                rc = wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", files[i].path);
            else {
                rc = wv_write_all(fd, files[i].text, strlen(files[i].text), files[i].path, err);
                close(fd);
            }
        }
        free(files[i].path);
    }
    if (rc == 0 && geteuid() == 0)
        rc = wv_pgserver_chown_tree(d->base, d->as.uid, d->as.gid, err);
    return rc;
}

static int pg_ctl(drill *d, const char *action, const char *mode, wv_err *err)
{
    char *prog = wv_xasprintf("%s/pg_ctl", d->bindir);
    char *timeout = wv_xasprintf("%d", d->o->timeout);
    char *opts =
        wv_xasprintf("-c port=%d -c listen_addresses=127.0.0.1 "
                     "-c unix_socket_directories=%s -c hba_file=%s/drill_hba.conf "
                     "-c archive_mode=off -c archive_command= -c cluster_name=walvault-drill",
                     d->port, d->base, d->base);
    char *ctl_log = wv_xasprintf("%s/pg_ctl.log", d->base);
    char *argv[16];
    int n = 0;
    argv[n++] = prog;
    argv[n++] = "-D";
    argv[n++] = d->pgdata;
    argv[n++] = "-w";
    argv[n++] = "-t";
    argv[n++] = timeout;
    if (strcmp(action, "start") == 0) {
        argv[n++] = "-l";
        argv[n++] = d->log;
        argv[n++] = "-o";
        argv[n++] = opts;
    } else {
        argv[n++] = "-m";
        argv[n++] = (char *)mode;
    }
    argv[n++] = (char *)action;
    argv[n] = NULL;
    int status = 0;
    int rc = wv_pgserver_run(&d->as, argv, ctl_log, &status, err);
    if (rc == 0 && status != 0)
        rc = wv_err_set(err, strcmp(action, "start") == 0 ? WV_EPG : WV_EIO,
                        "drill: pg_ctl %s failed (exit status %d) for \"%s\"", action, status,
                        d->pgdata);
    if (rc != 0 && strcmp(action, "start") == 0)
        wv_err_hint(err, "see %s and %s", d->log, ctl_log);
    free(prog);
    free(timeout);
    free(opts);
    free(ctl_log);
    return rc;
}

/* Start, then poll until recovery has ended. */
static int start_and_recover(drill *d, wv_err *err)
{
    double t0 = wv_mono_s();
    d->started = 1; /* a start that timed out may have left a server: clean_up stops it */
    int rc = pg_ctl(d, "start", NULL, err);
    if (rc != 0)
        return rc;
    d->connstr = wv_xasprintf("host=%s port=%d dbname=postgres user=%s connect_timeout=10", d->base,
                              d->port, d->as.name);
    double deadline = t0 + d->o->timeout;
    for (;;) {
        wv_pgsql *c = NULL;
        char v[16] = "";
        wv_err e;
        wv_err_clear(&e);
        rc = wv_pgsql_connect(d->connstr, &c, &e);
        if (rc == 0)
            rc = wv_pgsql_value(c, "SELECT pg_is_in_recovery()", 0, NULL, v, sizeof(v), &e);
        wv_pgsql_close(c);
        if (rc == 0 && strcmp(v, "f") == 0)
            break;
        if (interrupted)
            return step(rc, err);
        if (wv_mono_s() >= deadline) {
            if (rc != 0) {
                *err = e;
                return rc;
            }
            wv_err_set(err, WV_ETIMEOUT, "drill: recovery of \"%s\" did not end within %d s",
                       d->pgdata, d->o->timeout);
            return wv_err_hint(err, "see %s; a larger --timeout waits longer", d->log);
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    d->recovery_s = wv_mono_s() - t0;
    return 0;
}

static int amcheck(drill *d, wv_err *err)
{
    char *prog = wv_xasprintf("%s/pg_amcheck", d->bindir);
    char *port = wv_xasprintf("%d", d->port);
    char *out = wv_xasprintf("%s/amcheck.log", d->base);
    char *argv[] = {prog,
                    "-h",
                    d->base,
                    "-p",
                    port,
                    "-U",
                    d->as.name,
                    "--all",
                    "--heapallindexed",
                    "--install-missing",
                    "--no-password",
                    NULL};
    int status = 0;
    int rc = wv_pgserver_run(NULL, argv, out, &status, err);
    if (rc == 0 && status != 0) {
        FILE *f = fopen(out, "r");
        if (f) {
            char line[1024];
            int n = 0;
            while (fgets(line, sizeof(line), f) && n++ < 20)
                fprintf(stderr, "  pg_amcheck: %s", line);
            fclose(f);
        }
        rc = wv_err_set(err, WV_ECORRUPT,
                        "drill: pg_amcheck found problems in the restored copy "
                        "(exit status %d)",
                        status);
    } else if (rc == 0) {
        printf("  pg_amcheck --all --heapallindexed: ok\n");
    }
    free(prog);
    free(port);
    free(out);
    return rc;
}

typedef struct sql_ctx {
    const char *file;
    int stmt;
} sql_ctx;

static int sql_result(void *arg, const wv_pgsql_result *r, wv_err *err)
{
    sql_ctx *s = arg;
    s->stmt++;
    if (r->ncols == 0) {
        printf("  %s: statement %d: %s\n", s->file, s->stmt, r->tag);
        return 0;
    }
    printf("  %s: statement %d: %s: %s\n", s->file, s->stmt, r->tag, r->first ? r->first : "NULL");
    if (r->first && strcmp(r->first, "f") == 0)
        return wv_err_set(err, WV_ECORRUPT, "drill: --sql \"%s\": statement %d returned false",
                          s->file, s->stmt);
    return 0;
}

static int sql_checks(drill *d, wv_err *err)
{
    for (int i = 0; i < d->o->nsql && !interrupted; i++) {
        wv_pgsql *c = NULL;
        sql_ctx s = {d->o->sql[i], 0};
        int rc = wv_pgsql_connect(d->connstr, &c, err);
        if (rc == 0)
            rc = wv_pgsql_script(c, d->o->sql_text[i], sql_result, &s, err);
        wv_pgsql_close(c);
        if (rc != 0) {
            if (rc == WV_EPG) {
                char msg[WV_ERR_MSG_MAX];
                snprintf(msg, sizeof(msg), "%s", err->msg);
                /* a syntax error fails the whole file before any statement runs (the
                 * message gives the line) */
                if (s.stmt)
                    wv_err_set(err, WV_ECORRUPT, "drill: --sql \"%s\": after statement %d: %s",
                               d->o->sql[i], s.stmt, msg);
                else
                    wv_err_set(err, WV_ECORRUPT, "drill: --sql \"%s\": %s", d->o->sql[i], msg);
            }
            return rc == WV_EPG ? WV_ECORRUPT : rc;
        }
    }
    return 0;
}

/* STATE_PATH/last-drill.json, atomically (temp file, fsync, rename, fsync of the directory). */
static int write_state(drill *d, int passed, wv_err *err)
{
    const char *dir = d->cfg->state_path ? d->cfg->state_path : WV_CONFIG_DEFAULT_STATE_PATH;
    int rc = wv_mkdir_p(dir, err);
    if (rc != 0) {
        wv_err_hint(err, "create it for this user, or set [global] state_path");
        return rc;
    }
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    wv_buf b = WV_BUF_INIT;
    wv_buf_append_str(&b, "{\"time\": ");
    wv_json_string(&b, when);
    wv_buf_append_str(&b, ", \"backup\": ");
    wv_json_string(&b, d->backup_id);
    wv_buf_append_str(&b, ", \"target\": ");
    wv_json_string(&b, d->o->to ? d->o->to : "latest");
    wv_buf_printf(&b,
                  ", \"timeline\": %" PRIu32 ", \"restore_s\": %.3f, \"recovery_s\": %.3f, "
                  "\"check_s\": %.3f, \"total_s\": %.3f, \"status\": \"%s\"}\n",
                  d->tli, d->restore_s, d->recovery_s, d->check_s, d->total_s,
                  passed ? "ok" : "error");
    char *final = wv_xasprintf("%s/last-drill.json", dir);
    char *tmp = wv_temp_path_for(final);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not write \"%s\"", final);
    else {
        rc = wv_write_all(fd, b.data, b.len, tmp, err);
        if (rc == 0)
            rc = wv_fsync_fd(fd, tmp, err);
        close(fd);
        if (rc == 0 && rename(tmp, final) != 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not write \"%s\"", final);
        if (rc == 0)
            rc = wv_fsync_parent(final, err);
        if (rc != 0)
            unlink(tmp);
    }
    if (rc != 0)
        wv_err_hint(err, "check the permissions of %s, or set [global] state_path", dir);
    free(tmp);
    free(final);
    wv_buf_free(&b);
    return rc;
}

static void report(const drill *d, int passed)
{
    printf("drill %s: backup %s, target %s, timeline %" PRIu32 "\n", passed ? "passed" : "FAILED",
           d->backup_id[0] ? d->backup_id : "(none)", d->o->to ? d->o->to : "latest", d->tli);
    printf("  restore %.1f s, recovery %.1f s, checks %.1f s, total %.1f s (RTO)\n", d->restore_s,
           d->recovery_s, d->check_s, d->total_s);
}

/* Stop the server (fast, else immediate); remove the directory unless it is to be kept. */
static void clean_up(drill *d, int passed)
{
    wv_err e;
    char *pid = d->pgdata ? wv_xasprintf("%s/postmaster.pid", d->pgdata) : NULL;
    int running = d->started && pid && access(pid, F_OK) == 0;
    free(pid);
    if (running && pg_ctl(d, "stop", "fast", &e) != 0) {
        wv_log_warn("%s", e.msg);
        if (pg_ctl(d, "stop", "immediate", &e) != 0)
            wv_log_warn("%s", e.msg);
    }
    if (!d->base)
        return;
    if (!passed && d->o->keep) {
        fprintf(stderr, "basebackup: drill: kept the drill directory %s (server log %s)\n", d->base,
                d->log);
        return;
    }
    if (wv_pgserver_remove_tree(d->base, &e) != 0)
        wv_log_warn("%s", e.msg);
}

/* The drill's event for [global] notify_command: ok or error, the report line, the backup (its
 * failure is logged by wv_notify and never changes the drill's exit code). */
static void notify_event(const drill *d, int passed, const char *message)
{
    wv_notify(d->cfg, &(wv_notify_event){.event = "drill",
                                         .ok = passed,
                                         .message = message,
                                         .backup = d->backup_id[0] ? d->backup_id : NULL});
}

int wv_bbcmd_drill(int argc, char **argv, const char *config_path)
{
    drill_opts o;
    drill d;
    wv_err err;
    wv_config *cfg = NULL;
    uint32_t major = 0;
    memset(&o, 0, sizeof(o));
    memset(&d, 0, sizeof(d));
    wv_err_clear(&err);
    o.config_path = config_path;
    d.o = &o;
    double t0 = wv_mono_s();
    int rc = parse_args(argc, argv, &o, &err);
    if (rc == 0)
        rc = read_sql_files(&o, &err);
    if (rc == 0) {
        wv_cli cli = {.config_path = o.config_path};
        rc = wv_cli_load_config(&cli, &cfg, &err);
    }
    d.cfg = cfg;
    if (rc == 0)
        rc = repo_major(cfg, o.repo_arg, &major, &err);
    if (rc == 0)
        rc = wv_pgserver_bindir(cfg->pg_bindir, major, &d.bindir, &err);
    if (rc == 0)
        rc = wv_pgserver_owner(owner_ref(cfg), &d.as, &err);
    if (rc == 0)
        rc = wv_pgserver_free_port(&d.port, &err);
    int setup_done = rc == 0;
    struct sigaction old[3];
    if (setup_done)
        catch_signals(old);
    if (rc == 0)
        rc = step(plan_backup(&d, &err), &err);
    if (rc == 0)
        rc = step(make_base(&d, &err), &err);
    if (rc == 0) {
        wv_log_info("drill: restoring into %s (server as %s on port %d)", d.base, d.as.name,
                    d.port);
        rc = step(do_restore(&d, &err), &err);
    }
    if (rc == 0) {
        read_restored_facts(&d);
        rc = step(write_server_files(&d, &err), &err);
    }
    if (rc == 0)
        rc = step(start_and_recover(&d, &err), &err);
    if (rc == 0) {
        double c0 = wv_mono_s();
        printf("drill checks:\n");
        rc = step(amcheck(&d, &err), &err);
        if (rc == 0)
            rc = step(sql_checks(&d, &err), &err);
        d.check_s = wv_mono_s() - c0;
    }
    int passed = rc == 0;
    wv_err failure = err;
    clean_up(&d, passed);
    if (setup_done)
        restore_signals(old);
    d.total_s = wv_mono_s() - t0;
    int code = 0;
    if (setup_done) {
        report(&d, passed);
        wv_err serr;
        wv_err_clear(&serr);
        if (write_state(&d, passed, &serr) != 0) {
            if (passed) {
                failure = serr;
                rc = serr.code;
            } else {
                wv_log_warn("%s", serr.msg);
            }
        }
        char msg[WV_ERR_MSG_MAX + 128];
        if (passed)
            snprintf(msg, sizeof(msg), "drill passed: backup %s, RTO %.1f s", d.backup_id,
                     d.total_s);
        else
            snprintf(msg, sizeof(msg), "drill failed: %s", failure.msg);
        notify_event(&d, passed, msg);
    }
    if (rc != 0)
        code = d.restore_code && failure.code == -d.restore_code ? d.restore_code
                                                                 : wv_cli_fail(&failure);
    for (int i = 0; i < o.nsql; i++)
        free(o.sql_text[i]);
    for (int i = 0; i < d.nts; i++)
        free(d.ts_loc[i]);
    free(d.bindir);
    free(d.base);
    free(d.pgdata);
    free(d.log);
    free(d.connstr);
    wv_config_free(cfg);
    return code;
}
