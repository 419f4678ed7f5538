/*
 * status.c - basebackup status [--json] [--prometheus FILE] [-d CONNSTR] [--repo N]
 *
 * Per repository: reachable or not; the newest complete backup (id, age, size, duration); the
 * newest archived WAL segment (name, and its age from the object's modification time as the
 * storage lists it: the time it was archived, not a commit time); the recoverable windows
 * (repo/recovery.h); bytes used (the sum of the listed object sizes) and free space (statvfs for
 * posix; "unknown" for ssh: the helper protocol has no file-system query; not applicable for s3);
 * the estimated RPO and the last measured RTO (from drill's result, see below); leftovers of
 * interrupted backups. With -d also pg_stat_archiver (failed_count, last_failed_wal,
 * last_failed_time) and the server's current WAL segment: how many completed segments the newest
 * archived one is behind ("archiving is stuck" while the server writes).
 *
 * Levels, from [monitor] (core/monitor_config.h): critical when a repository is unreachable, has
 * no complete backup, its newest backup is older than backup_max_age, or its newest archived WAL
 * is older than wal_max_age while the server writes; warning for backup_warn_age and wal_warn_age,
 * and for archiving failures pg_stat_archiver reports after the last success. "While the server
 * writes": with -d, when the server's current segment is past the segment after the newest
 * archived one (completed WAL is waiting); without -d the server's activity is unknown and the WAL
 * age counts as it is (an idle server needs archive_timeout, or -d, to stay quiet). The estimated
 * RPO is that WAL age while WAL waits (0 when everything completed is archived: then the server's
 * current segment, bounded by archive_timeout, is what a loss would cost).
 *
 * RTO: drill writes its last result to STATE/last-drill.json (STATE: [global] state_path, default
 * /var/lib/walvault/state; local, never in a repository; STATE/status/last-drill.json is read too),
 * a JSON object with at least "total_s" (seconds from the start of the restore until the checks
 * passed; "rto_s" or "total_seconds" accepted too) and "time" (ISO 8601 UTC); "status" ("ok" |
 * "error") when present must be "ok" for the RTO to count. Absent: "never measured".
 *
 * Clean-ups: the newest removal of an interrupted backup's leftovers (by backup or expire) is
 * recorded in the repository (WV_BACKUP_CLEANED_KEY, see repo/backupset.h) and shown per
 * repository ("cleaned up interrupted backup ID at TIME"; JSON "cleaned_up"), instead of a stderr
 * line that would make cron mail.
 *
 * Exit codes (monitoring-plugin convention): 0 ok, 1 warning, 2 critical, 3 unknown (bad command
 * line, configuration unreadable, the textfile not writable). notify_command runs (event
 * "status") only when the result is critical.
 *
 * The clock is time(2), or WALVAULT_TEST_NOW (seconds since the epoch) when set: the tests' seam
 * for ages under a shifted clock (libfaketime does not reach programs run by the tests under
 * ASan reliably).
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include <libpq-fe.h>

#include "commands.h"
#include "core/buf.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/promfile.h"
#include "core/timeparse.h"
#include "core/units.h"
#include "pg/replication.h"
#include "pg/walname.h"
#include "repo/backupset.h"
#include "repo/lag.h"
#include "repo/recovery.h"
#include "repo/repo.h"
#include "repo/spool.h"
#include "repo/walarchive.h"

static const char usage[] =
    "usage: basebackup [-c FILE] status [--json] [--prometheus FILE] [-d CONNSTR] [--repo N]\n"
    "\n"
    "Per repository: newest backup, newest archived WAL, recoverable window, space, RPO, RTO.\n"
    "Exit 0 ok, 1 warning, 2 critical, 3 unknown; thresholds in [monitor].\n"
    "\n"
    "  --json              JSON on stdout instead of text\n"
    "  --prometheus FILE   also write a node_exporter textfile (atomically)\n"
    "  -d, --dbname CONN   also ask the server (pg_stat_archiver, current WAL position)\n"
    "  --repo N            only [repoN]\n"
    "  -c, --config FILE   configuration file\n";

enum { OK = 0, WARNING = 1, CRITICAL = 2, UNKNOWN = 3 };
static const char *const level_names[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};

typedef struct server_facts {
    int asked, up, in_recovery;
    char err[WV_ERR_MSG_MAX];
    int64_t failed_count;
    char last_failed_wal[64], last_failed_time[64], last_archived_time[64];
    int failing_since_success; /* the last failure came after the last success (microseconds) */
    char current_wal[WV_WALNAME_SEGMENT_LEN];
} server_facts;

typedef struct repo_status {
    const wv_repo_config *rc;
    int up;
    char location[512];
    wv_err err;
    int have_backup;
    char backup_id[WV_MANIFEST_ID_MAX];
    int64_t backup_age, backup_duration;
    uint64_t backup_size, backup_stored;
    int have_wal;
    char wal[WV_WALNAME_SEGMENT_LEN];
    int64_t wal_mtime, wal_age;
    uint64_t wal_tli, wal_segno;
    uint64_t bytes, segsize;
    int free_known; /* 1 known, 0 unknown (ssh), -1 not applicable (s3) */
    uint64_t free_bytes;
    char window[1024];
    int64_t window_end_us;
    size_t leftovers;
    int have_cleaned; /* the newest clean-up of an interrupted backup (WV_BACKUP_CLEANED_KEY) */
    char cleaned_id[WV_MANIFEST_ID_MAX];
    int64_t cleaned_at;
    int64_t segments_behind; /* -1 unknown */
    int64_t rpo;             /* -1 unknown */
    uint64_t sysid;          /* from walvault.repo; 0 unknown */
    /* lag: from the spool's records (lag_spool) and from the WAL listings (lag_listing: newest
     * segments another repository has after this one's newest, on the same timeline) */
    int lag_spool;
    size_t lag_files;
    uint64_t lag_bytes;
    int64_t lag_oldest_age; /* -1 unknown */
    int64_t lag_listing;
    char lag_ahead[16]; /* the repository the listing compares with */
    /* segments dropped by archive_queue_max (gaps/<name>): how many, the newest */
    size_t dropped;
    char dropped_last[WV_WALNAME_SEGMENT_LEN];
    char backup_start[WV_WALNAME_SEGMENT_LEN];
    /* a public-key host (encrypted repository, no private key): manifests and commit times are
     * sealed; what the listing shows stands in (the newest manifest's id and mtime) */
    int sealed;
    char manifest_id[WV_MANIFEST_ID_MAX];
    int64_t manifest_mtime;
    int level;
    char problems[2048];
} repo_status;

static int64_t now_s(void)
{
    const char *t = getenv("WALVAULT_TEST_NOW");
    if (t && *t)
        return strtoll(t, NULL, 10);
    return (int64_t)time(NULL);
}

static void age_text(int64_t s, char *out, size_t len)
{
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, len, "%" PRId64 " s", s);
    else if (s < 7200)
        snprintf(out, len, "%" PRId64 " min", s / 60);
    else if (s < 3 * 86400)
        snprintf(out, len, "%" PRId64 " h %" PRId64 " min", s / 3600, (s % 3600) / 60);
    else
        snprintf(out, len, "%" PRId64 " d %" PRId64 " h", s / 86400, (s % 86400) / 3600);
}

static void problem(repo_status *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(repo_status *r, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t used = strlen(r->problems);
    snprintf(r->problems + used, sizeof(r->problems) - used, "%s%s: %s", used ? "; " : "",
             level == CRITICAL ? "critical" : "warning", msg);
    if (level > r->level)
        r->level = level;
}

typedef struct list_acc {
    repo_status *r;
    uint64_t segs_per_log;
} list_acc;

static int on_object(void *arg, const char *key, const wv_stat *st)
{
    list_acc *a = arg;
    repo_status *r = a->r;
    r->bytes += st->size;
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    wv_walname w;
    if (strncmp(key, WV_REPO_GAPS_PREFIX, strlen(WV_REPO_GAPS_PREFIX)) == 0 &&
        wv_walname_parse(base, &w) == WV_WALNAME_SEGMENT) {
        r->dropped++;
        if (strcmp(base + 8, r->dropped_last + (r->dropped_last[0] ? 8 : 0)) > 0)
            snprintf(r->dropped_last, sizeof(r->dropped_last), "%s", base);
        return 0;
    }
    size_t kl = strlen(key), ml = strlen(WV_MANIFEST_NAME);
    if (strncmp(key, "backup/", 7) == 0 && kl > 7 + ml + 1 &&
        strcmp(key + kl - ml, WV_MANIFEST_NAME) == 0 && key[kl - ml - 1] == '/' &&
        kl - ml - 8 < sizeof(r->manifest_id) && st->mtime >= r->manifest_mtime) {
        snprintf(r->manifest_id, sizeof(r->manifest_id), "%.*s", (int)(kl - ml - 8), key + 7);
        r->manifest_mtime = st->mtime;
    }
    if (strncmp(key, "wal/", 4) == 0 && wv_walname_parse(base, &w) == WV_WALNAME_SEGMENT) {
        uint64_t segno = (uint64_t)w.log * a->segs_per_log + w.seg;
        if (!r->have_wal || st->mtime > r->wal_mtime ||
            (st->mtime == r->wal_mtime && strcmp(base, r->wal) > 0)) {
            r->have_wal = 1;
            r->wal_mtime = st->mtime;
            r->wal_tli = w.tli;
            r->wal_segno = segno;
            snprintf(r->wal, sizeof(r->wal), "%s", base);
        }
    }
    return 0;
}

static int gather(repo_status *r, int64_t now, wv_err *err)
{
    wv_repo *repo = NULL;
    wv_backupset bs = {0};
    wv_archive *arch = NULL;
    wv_recovery_facts facts = {0};
    wv_window *w = NULL;
    size_t nw = 0;
    if (r->rc->path)
        snprintf(r->location, sizeof(r->location), "%s", r->rc->path);
    int rc = wv_repo_open(r->rc, &repo, err);
    if (rc == 0) {
        snprintf(r->location, sizeof(r->location), "%s", wv_storage_location(repo->st));
        rc = wv_repo_load_info(repo, err);
        if (rc == WV_ENOTFOUND) {
            rc = 0; /* never used: no backup, no WAL */
            repo->info.wal_segsize = 16 * 1024 * 1024;
        }
    }
    if (rc == 0) {
        r->segsize = repo->info.wal_segsize;
        r->sysid = repo->have_info ? repo->info.system_id : 0;
        list_acc acc = {r, wv_wal_segs_per_log(r->segsize)};
        rc = wv_storage_list(repo->st, "", on_object, &acc, err);
    }
    /* encrypted for a public key and no private key here: manifests and commit times are
     * sealed, so the listing's facts stand in (the newest manifest's id and mtime) */
    if (rc == 0 && repo->have_info && !wv_repo_readable(repo->st))
        r->sealed = 1;
    int deep = rc == 0 && repo->have_info && !r->sealed;
    if (deep)
        rc = wv_backupset_load(repo->st, &bs, err);
    if (rc == 0 && deep)
        rc = wv_archive_scan(repo->st, repo->info.wal_segsize, &arch, err);
    if (rc == 0 && deep)
        rc = wv_recovery_facts_gather(repo->st, arch, &bs, NULL, &facts, err);
    if (rc == 0 && deep)
        rc = wv_recovery_windows(&facts, &w, &nw, err);
    if (rc == 0) {
        r->up = 1;
        r->leftovers = bs.norphans;
        r->have_cleaned =
            wv_backup_cleaned_read(repo->st, r->cleaned_id, sizeof(r->cleaned_id), &r->cleaned_at);
        if (bs.n > 0) {
            const wv_backup *b = &bs.b[bs.n - 1];
            r->have_backup = 1;
            snprintf(r->backup_id, sizeof(r->backup_id), "%s", b->h.id);
            snprintf(r->backup_start, sizeof(r->backup_start), "%s", b->h.start_segment);
            r->backup_age = now - b->h.stop_time;
            r->backup_duration = b->h.stop_time - b->h.start_time;
            r->backup_size = b->totals.size;
            r->backup_stored = b->totals.stored_size;
        } else if (r->sealed && r->manifest_id[0]) {
            r->have_backup = 1;
            memcpy(r->backup_id, r->manifest_id, sizeof(r->backup_id));
            r->backup_age = now - r->manifest_mtime;
        }
        if (r->have_wal)
            r->wal_age = now - r->wal_mtime;
        wv_recovery_windows_text(w, nw, r->window, sizeof(r->window));
        if (r->sealed)
            snprintf(r->window, sizeof(r->window),
                     "not readable here: the repository is encrypted for a public key (run "
                     "status where encrypt_private_key_file is set)");
        r->window_end_us = INT64_MIN;
        for (size_t i = 0; i < nw; i++)
            if (w[i].to_us > r->window_end_us)
                r->window_end_us = w[i].to_us;
        r->free_known = r->rc->type == WV_REPO_S3 ? -1 : 0;
        struct statvfs vfs;
        if (r->rc->type == WV_REPO_POSIX && statvfs(r->rc->path, &vfs) == 0) {
            r->free_known = 1;
            r->free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        }
    }
    free(w);
    wv_recovery_facts_free(&facts);
    wv_archive_free(arch);
    wv_backupset_free(&bs);
    wv_repo_close(repo);
    return rc;
}

static void ask_server(const char *connstr, server_facts *sf)
{
    sf->asked = 1;
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {connstr ? connstr : "", "walvault status", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(sf->err, sizeof(sf->err), "could not connect to the server: %s",
                 PQerrorMessage(c));
        sf->err[strcspn(sf->err, "\n")] = '\0';
        PQfinish(c);
        return;
    }
    PGresult *res = PQexec(c, "SELECT failed_count, coalesce(last_failed_wal, ''), "
                              "coalesce(last_failed_time::text, ''), "
                              "coalesce(last_archived_time::text, ''), pg_is_in_recovery(), "
                              "CASE WHEN pg_is_in_recovery() THEN '' ELSE "
                              "pg_walfile_name(pg_current_wal_lsn()) END, "
                              "coalesce(last_failed_time > last_archived_time, "
                              "last_failed_time IS NOT NULL) FROM pg_stat_archiver");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(sf->err, sizeof(sf->err), "pg_stat_archiver: %s", PQresultErrorMessage(res));
        sf->err[strcspn(sf->err, "\n")] = '\0';
    } else {
        sf->up = 1;
        sf->failed_count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(sf->last_failed_wal, sizeof(sf->last_failed_wal), "%s", PQgetvalue(res, 0, 1));
        snprintf(sf->last_failed_time, sizeof(sf->last_failed_time), "%s", PQgetvalue(res, 0, 2));
        snprintf(sf->last_archived_time, sizeof(sf->last_archived_time), "%s",
                 PQgetvalue(res, 0, 3));
        sf->in_recovery = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
        snprintf(sf->current_wal, sizeof(sf->current_wal), "%s", PQgetvalue(res, 0, 5));
        sf->failing_since_success = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
    }
    PQclear(res);
    PQfinish(c);
}

/* What each repository lacks: the spool's lag records (this host's wal-push wrote them), and,
 * seen from any host, how many segments another repository has after this one's newest. */
static void gather_lag(repo_status *rs, int n, const wv_config *cfg, int64_t now)
{
    uint64_t sysid = 0;
    for (int i = 0; i < n && !sysid; i++)
        sysid = rs[i].sysid;
    char cdir[4096];
    wv_err err;
    wv_err_clear(&err);
    int have_cdir = sysid && wv_spool_cluster_path(cfg, sysid, cdir, sizeof(cdir), &err) == 0;
    for (int i = 0; i < n; i++) {
        repo_status *r = &rs[i];
        r->lag_oldest_age = -1;
        if (have_cdir) {
            wv_lag_list l;
            if (wv_lag_load(cdir, "lag", r->rc->name, &l, &err) == 0) {
                int64_t oldest;
                r->lag_spool = 1;
                wv_lag_summary(&l, &r->lag_files, &r->lag_bytes, &oldest);
                if (l.n)
                    r->lag_oldest_age = now - oldest;
                wv_lag_list_free(&l);
            } else {
                wv_log_err(&err);
                wv_err_clear(&err);
            }
        }
        if (!r->up || !r->have_wal)
            continue;
        for (int j = 0; j < n; j++) {
            const repo_status *o = &rs[j];
            if (j == i || !o->up || !o->have_wal || o->wal_tli != r->wal_tli ||
                o->wal_segno <= r->wal_segno)
                continue;
            int64_t d = (int64_t)(o->wal_segno - r->wal_segno);
            if (d > r->lag_listing) {
                r->lag_listing = d;
                snprintf(r->lag_ahead, sizeof(r->lag_ahead), "%s", o->rc->name);
            }
        }
    }
}

/* Lag: any is a warning (a repository with required = no catches up by itself); critical once the
 * oldest missing file is older than wal_max_age. */
static void judge_lag(repo_status *r, const wv_config *cfg)
{
    const wv_monitor_config *m = &cfg->monitor;
    char a[64], b[32], t[32];
    if (r->lag_files) {
        wv_human_bytes(r->lag_bytes, b, sizeof(b));
        age_text(r->lag_oldest_age, a, sizeof(a));
        int crit = r->lag_oldest_age > m->wal_max_age;
        wv_monitor_duration_format(m->wal_max_age, t, sizeof(t));
        problem(r, crit ? CRITICAL : WARNING,
                "lagging: %zu WAL file%s (%s) not stored here, the oldest missing for %s%s%s%s",
                r->lag_files, r->lag_files == 1 ? "" : "s", b, a, crit ? " (wal_max_age = " : "",
                crit ? t : "", crit ? ")" : "");
    } else if (r->lag_listing > 1 && r->up) {
        /* one segment is the race of a push committing to several repositories at once */
        problem(r, WARNING, "lagging: %s holds %" PRId64 " newer WAL segment%s than this one",
                r->lag_ahead, r->lag_listing, r->lag_listing == 1 ? "" : "s");
    }
}

/* Thresholds and the RPO of one reachable repository. */
static void judge(repo_status *r, const wv_config *cfg, const server_facts *sf)
{
    const wv_monitor_config *m = &cfg->monitor;
    char a[64], t[32];
    if (!r->up) {
        const char *msg = r->err.msg;
        size_t nl = strlen(r->rc->name);
        if (strncmp(msg, r->rc->name, nl) == 0 && strncmp(msg + nl, ": ", 2) == 0)
            msg += nl + 2; /* the repository is named already */
        /* required = no: it lags, and catches up once back (critical by its lag's age) */
        problem(r, r->rc->optional ? WARNING : CRITICAL, "unreachable%s: %s",
                r->rc->optional ? " (required = no)" : "", msg);
        judge_lag(r, cfg);
        return;
    }
    if (!r->have_backup) {
        problem(r, CRITICAL, "no complete backup");
    } else {
        age_text(r->backup_age, a, sizeof(a));
        if (r->backup_age > m->backup_max_age) {
            wv_monitor_duration_format(m->backup_max_age, t, sizeof(t));
            problem(r, CRITICAL, "the newest backup is %s old (backup_max_age = %s)", a, t);
        } else if (r->backup_age > m->backup_warn_age) {
            wv_monitor_duration_format(m->backup_warn_age, t, sizeof(t));
            problem(r, WARNING, "the newest backup is %s old (backup_warn_age = %s)", a, t);
        }
    }
    r->segments_behind = -1;
    int writing = 1; /* unknown without -d: the WAL age counts */
    if (sf->up && !sf->in_recovery && sf->current_wal[0]) {
        wv_walname cw;
        if (wv_walname_parse(sf->current_wal, &cw) == WV_WALNAME_SEGMENT) {
            uint64_t cur = (uint64_t)cw.log * wv_wal_segs_per_log(r->segsize) + cw.seg;
            uint64_t newest = r->have_wal ? r->wal_segno : 0;
            r->segments_behind = cur > newest + 1 ? (int64_t)(cur - newest - 1) : 0;
            if (!r->have_wal)
                r->segments_behind = (int64_t)cur;
            writing = r->segments_behind > 0;
        }
    }
    if (!r->have_wal) {
        if (writing)
            problem(r, CRITICAL, "no WAL archived");
        r->rpo = -1;
    } else if (writing) {
        r->rpo = r->wal_age;
        age_text(r->wal_age, a, sizeof(a));
        if (r->wal_age > m->wal_max_age) {
            wv_monitor_duration_format(m->wal_max_age, t, sizeof(t));
            problem(r, CRITICAL, "nothing archived for %s%s (wal_max_age = %s)", a,
                    r->segments_behind > 0 ? " while the server writes" : "", t);
        } else if (r->wal_age > m->wal_warn_age) {
            wv_monitor_duration_format(m->wal_warn_age, t, sizeof(t));
            problem(r, WARNING, "nothing archived for %s%s (wal_warn_age = %s)", a,
                    r->segments_behind > 0 ? " while the server writes" : "", t);
        }
    } else {
        r->rpo = 0;
    }
    /* compared by the server, to the microsecond: a success and a failure in one second are
     * common (the first failure right after a segment archived) */
    if (sf->up && sf->failed_count > 0 && sf->failing_since_success)
        problem(r, WARNING, "archive_command is failing (pg_stat_archiver: last failure %s at %s)",
                sf->last_failed_wal, sf->last_failed_time);
    if (r->dropped) {
        /* critical until a base backup starts after the newest dropped segment */
        int after = r->have_backup && strlen(r->backup_start) == strlen(r->dropped_last) &&
                    strcmp(r->backup_start + 8, r->dropped_last + 8) > 0;
        problem(r, after ? WARNING : CRITICAL,
                "%zu WAL segment%s dropped by archive_queue_max (the newest %s): point-in-time "
                "recovery across %s impossible%s",
                r->dropped, r->dropped == 1 ? "" : "s", r->dropped_last,
                r->dropped == 1 ? "it is" : "them is",
                after ? "" : "; take a base backup to start a new window");
    }
    judge_lag(r, cfg);
}

/* The value after "key": in a small JSON object (no nesting needed here), or NULL. */
static const char *json_value(const char *doc, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(doc, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p++ != ':')
        return NULL;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* drill's last result: *rto seconds and its time text, or 0 when never measured. The file is
 * STATE/last-drill.json, else STATE/status/last-drill.json; the seconds are "total_s" (also
 * accepted: "rto_s", "total_seconds"); a "status" other than "ok" is a failed drill: no RTO. */
static int read_drill(const wv_config *cfg, double *rto, char *when, size_t whenlen)
{
    const char *state = cfg->state_path ? cfg->state_path : WV_CONFIG_DEFAULT_STATE_PATH;
    static const char *const names[] = {"last-drill.json", "status/last-drill.json"};
    char buf[16384];
    size_t n = 0;
    int found = 0;
    for (size_t k = 0; k < 2 && !found; k++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", state, names[k]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        found = 1;
    }
    if (!found)
        return 0;
    buf[n] = '\0';
    const char *st = json_value(buf, "status");
    if (st && strncmp(st, "\"ok\"", 4) != 0)
        return 0;
    static const char *const keys[] = {"total_s", "rto_s", "total_seconds"};
    const char *v = NULL;
    for (size_t k = 0; k < 3 && !v; k++)
        v = json_value(buf, keys[k]);
    if (!v)
        return 0;
    char *end;
    double d = strtod(v, &end);
    if (end == v || !(d >= 0))
        return 0;
    *rto = d;
    when[0] = '\0';
    const char *w = json_value(buf, "time");
    if (w && *w == '"') {
        const char *e = strchr(w + 1, '"');
        if (e && (size_t)(e - w - 1) < whenlen) {
            memcpy(when, w + 1, (size_t)(e - w - 1));
            when[e - w - 1] = '\0';
        }
    }
    return 1;
}

/* "2026-12-02T12:00:00Z" */
static void iso_utc(int64_t epoch, char *out, size_t len)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, len, "@%lld", (long long)epoch);
}

static void render_text(const repo_status *rs, int n, const server_facts *sf, int have_rto,
                        double rto, const char *rto_when, int level, const char *summary)
{
    char a[64], b[32], c[32];
    for (int i = 0; i < n; i++) {
        const repo_status *r = &rs[i];
        printf("%s (%s%s%s): %s\n", r->rc->name,
               r->rc->type == WV_REPO_POSIX ? "posix"
               : r->rc->type == WV_REPO_S3  ? "s3"
                                            : "ssh",
               r->location[0] ? " " : "", r->location, level_names[r->level]);
        if (r->lag_files) {
            wv_human_bytes(r->lag_bytes, b, sizeof(b));
            age_text(r->lag_oldest_age, a, sizeof(a));
            printf("  lag:       %zu file%s, %s, the oldest missing for %s (spool)\n", r->lag_files,
                   r->lag_files == 1 ? "" : "s", b, a);
        } else if (r->lag_listing > 0) {
            printf("  lag:       %" PRId64 " segment%s behind %s (WAL listings)\n", r->lag_listing,
                   r->lag_listing == 1 ? "" : "s", r->lag_ahead);
        }
        if (!r->up) {
            printf("  error:     %s\n", r->err.msg);
            if (r->problems[0])
                printf("  problems:  %s\n", r->problems);
            continue;
        }
        if (r->have_backup && r->sealed) {
            age_text(r->backup_age, a, sizeof(a));
            printf("  backup:    %s, manifest written %s ago (object mtime; its contents are "
                   "encrypted for the public key)\n",
                   r->backup_id, a);
        } else if (r->have_backup) {
            age_text(r->backup_age, a, sizeof(a));
            wv_human_bytes(r->backup_size, b, sizeof(b));
            wv_human_bytes(r->backup_stored, c, sizeof(c));
            printf("  backup:    %s, %s ago, %s (stored %s), took %" PRId64 " s\n", r->backup_id, a,
                   b, c, r->backup_duration);
        } else {
            printf("  backup:    none\n");
        }
        if (r->have_wal) {
            age_text(r->wal_age, a, sizeof(a));
            printf("  wal:       %s, archived %s ago (object mtime)", r->wal, a);
            if (r->segments_behind >= 0)
                printf(", %" PRId64 " completed segment%s not archived", r->segments_behind,
                       r->segments_behind == 1 ? "" : "s");
            printf("\n");
        } else {
            printf("  wal:       none\n");
        }
        printf("  window:    %s\n", r->window);
        wv_human_bytes(r->bytes, b, sizeof(b));
        if (r->free_known == 1) {
            wv_human_bytes(r->free_bytes, c, sizeof(c));
            printf("  space:     %s used, %s free\n", b, c);
        } else {
            printf("  space:     %s used, free %s\n", b,
                   r->free_known == 0 ? "unknown (ssh)" : "not applicable (s3)");
        }
        if (r->rpo >= 0) {
            age_text(r->rpo, a, sizeof(a));
            printf("  rpo:       %s (estimated)\n", a);
        } else {
            printf("  rpo:       unknown\n");
        }
        if (r->dropped)
            printf("  dropped:   %zu WAL segment%s by archive_queue_max, the newest %s\n",
                   r->dropped, r->dropped == 1 ? "" : "s", r->dropped_last);
        if (r->leftovers)
            printf("  leftovers: %zu interrupted backup%s (the next backup removes them)\n",
                   r->leftovers, r->leftovers == 1 ? "" : "s");
        if (r->have_cleaned) {
            char t[32];
            iso_utc(r->cleaned_at, t, sizeof(t));
            printf("  cleaned:   cleaned up interrupted backup %s at %s\n", r->cleaned_id, t);
        }
        if (r->problems[0])
            printf("  problems:  %s\n", r->problems);
    }
    if (sf->asked) {
        if (!sf->up)
            printf("server: unreachable: %s\n", sf->err);
        else
            printf(
                "server: %s, current WAL %s, pg_stat_archiver failed_count %" PRId64 "%s%s%s%s\n",
                sf->in_recovery ? "standby" : "primary", sf->current_wal[0] ? sf->current_wal : "-",
                sf->failed_count, sf->last_failed_wal[0] ? ", last failed " : "",
                sf->last_failed_wal, sf->last_failed_time[0] ? " at " : "", sf->last_failed_time);
    }
    if (have_rto)
        printf("rto: %.0f s (drill of %s)\n", rto, rto_when[0] ? rto_when : "unknown time");
    else
        printf("rto: never measured (run basebackup drill)\n");
    printf("status: %s%s%s\n", level_names[level], summary[0] ? ": " : "", summary);
}

static void render_json(const repo_status *rs, int n, const server_facts *sf, int have_rto,
                        double rto, const char *rto_when, int level, const char *summary,
                        int64_t now)
{
    wv_buf o;
    wv_buf_init(&o);
    char t[WV_TIME_FORMAT_LEN];
    wv_time_format_utc(now * 1000000LL, t, sizeof(t));
    wv_buf_printf(&o, "{\"status\": \"%s\", \"exit_code\": %d, \"summary\": ", level_names[level],
                  level);
    wv_json_string(&o, summary);
    wv_buf_append_str(&o, ", \"time\": ");
    wv_json_string(&o, t);
    wv_buf_append_str(&o, ", \"repositories\": [");
    for (int i = 0; i < n; i++) {
        const repo_status *r = &rs[i];
        wv_buf_append_str(&o, i ? ",\n  {" : "\n  {");
        wv_buf_append_str(&o, "\"name\": ");
        wv_json_string(&o, r->rc->name);
        wv_buf_printf(&o,
                      ", \"up\": %s, \"status\": \"%s\", \"location\": ", r->up ? "true" : "false",
                      level_names[r->level]);
        wv_json_string(&o, r->location);
        wv_buf_printf(&o,
                      ", \"required\": %s, \"lag\": {\"files\": %zu, \"bytes\": %" PRIu64
                      ", \"oldest_s\": ",
                      r->rc->optional ? "false" : "true", r->lag_files, r->lag_bytes);
        if (r->lag_oldest_age >= 0)
            wv_buf_printf(&o, "%" PRId64, r->lag_oldest_age);
        else
            wv_buf_append_str(&o, "null");
        wv_buf_printf(&o, ", \"from\": \"%s\", \"segments_behind_listing\": %" PRId64 "}",
                      r->lag_spool ? "spool" : "listing", r->lag_listing);
        if (!r->up) {
            wv_buf_append_str(&o, ", \"error\": ");
            wv_json_string(&o, r->err.msg);
        } else {
            if (r->have_backup) {
                wv_buf_append_str(&o, ", \"last_backup\": {\"id\": ");
                wv_json_string(&o, r->backup_id);
                wv_buf_printf(&o,
                              ", \"age_s\": %" PRId64 ", \"size\": %" PRIu64
                              ", \"stored_size\": %" PRIu64 ", \"duration_s\": %" PRId64 "}",
                              r->backup_age, r->backup_size, r->backup_stored, r->backup_duration);
            } else {
                wv_buf_append_str(&o, ", \"last_backup\": null");
            }
            if (r->have_wal) {
                wv_buf_append_str(&o, ", \"last_wal\": {\"name\": ");
                wv_json_string(&o, r->wal);
                wv_buf_printf(&o, ", \"age_s\": %" PRId64 ", \"age_from\": \"object mtime\"}",
                              r->wal_age);
            } else {
                wv_buf_append_str(&o, ", \"last_wal\": null");
            }
            if (r->segments_behind >= 0)
                wv_buf_printf(&o, ", \"segments_behind\": %" PRId64, r->segments_behind);
            wv_buf_append_str(&o, ", \"window\": ");
            wv_json_string(&o, r->window);
            wv_buf_printf(&o, ", \"bytes\": %" PRIu64 ", \"free_bytes\": ", r->bytes);
            if (r->free_known == 1)
                wv_buf_printf(&o, "%" PRIu64, r->free_bytes);
            else
                wv_buf_append_str(&o, "null");
            if (r->rpo >= 0)
                wv_buf_printf(&o, ", \"rpo_s\": %" PRId64, r->rpo);
            else
                wv_buf_append_str(&o, ", \"rpo_s\": null");

            wv_buf_printf(&o, ", \"leftovers\": %zu, \"dropped_segments\": %zu", r->leftovers,
                          r->dropped);
            wv_buf_append_str(&o, ", \"cleaned_up\": ");
            if (r->have_cleaned) {
                char ct[32];
                iso_utc(r->cleaned_at, ct, sizeof(ct));
                wv_buf_append_str(&o, "{\"id\": ");
                wv_json_string(&o, r->cleaned_id);
                wv_buf_append_str(&o, ", \"time\": ");
                wv_json_string(&o, ct);
                wv_buf_append_str(&o, "}");
            } else {
                wv_buf_append_str(&o, "null");
            }
        }
        wv_buf_append_str(&o, ", \"problems\": ");
        wv_json_string(&o, r->problems);
        wv_buf_append_str(&o, "}");
    }
    wv_buf_append_str(&o, "\n]");
    if (sf->asked) {
        wv_buf_printf(&o, ", \"server\": {\"up\": %s", sf->up ? "true" : "false");
        if (!sf->up) {
            wv_buf_append_str(&o, ", \"error\": ");
            wv_json_string(&o, sf->err);
        } else {
            wv_buf_printf(
                &o, ", \"in_recovery\": %s, \"current_wal\": ", sf->in_recovery ? "true" : "false");
            wv_json_string(&o, sf->current_wal);
            wv_buf_printf(
                &o, ", \"failed_count\": %" PRId64 ", \"last_failed_wal\": ", sf->failed_count);
            wv_json_string(&o, sf->last_failed_wal);
            wv_buf_append_str(&o, ", \"last_failed_time\": ");
            wv_json_string(&o, sf->last_failed_time);
        }
        wv_buf_append_str(&o, "}");
    }
    if (have_rto) {
        wv_buf_printf(&o, ", \"rto_s\": %.3f, \"rto_time\": ", rto);
        wv_json_string(&o, rto_when);
    } else {
        wv_buf_append_str(&o, ", \"rto_s\": null");
    }
    wv_buf_append_str(&o, "}\n");
    fwrite(o.data, 1, o.len, stdout);
    wv_buf_free(&o);
}

#define FAM(n, h)                                                                                  \
    do {                                                                                           \
        if (rc == 0)                                                                               \
            rc = wv_prom_family(p, n, "gauge", h, err);                                            \
    } while (0)
#define SAMPLE(n, repo, v)                                                                         \
    do {                                                                                           \
        if (rc == 0)                                                                               \
            rc = wv_prom_sample(p, n, (repo) ? "repo" : NULL, repo, v, err);                       \
    } while (0)

static int write_prometheus(const char *path, const repo_status *rs, int n, const server_facts *sf,
                            int have_rto, double rto, int level, int64_t now, wv_err *err)
{
    wv_prom *p = wv_prom_new();
    int rc = 0;
    FAM("walvault_status", "Overall status: 0 ok, 1 warning, 2 critical, 3 unknown");
    FAM("walvault_status_time_seconds", "When status ran (seconds since the epoch)");
    FAM("walvault_repo_up", "1 when the repository could be read");
    FAM("walvault_repo_status", "Status of the repository: 0 ok, 1 warning, 2 critical");
    FAM("walvault_last_backup_age_seconds", "Age of the newest complete backup");
    FAM("walvault_last_backup_size_bytes", "Plain size of the newest complete backup");
    FAM("walvault_last_backup_duration_seconds", "Duration of the newest complete backup");
    FAM("walvault_last_wal_archived_age_seconds",
        "Age of the newest archived WAL segment (object modification time)");
    FAM("walvault_repo_bytes", "Sum of the sizes of the objects of the repository");
    FAM("walvault_repo_free_bytes", "Free space of the file system of a posix repository");
    FAM("walvault_rpo_seconds", "Estimated recovery point objective");
    FAM("walvault_recovery_window_end_seconds", "Last reachable commit (seconds since the epoch)");
    FAM("walvault_leftover_backups", "Interrupted backups waiting for removal");
    FAM("walvault_repo_dropped_segments", "WAL segments dropped by archive_queue_max");
    FAM("walvault_repo_lag_files", "WAL files recorded as not stored in the repository");
    FAM("walvault_repo_lag_bytes", "Bytes of the WAL files not stored in the repository");
    FAM("walvault_repo_lag_oldest_seconds", "Age of the oldest WAL file not stored there");
    FAM("walvault_repo_lag_segments_listing",
        "Segments another repository holds after this one's newest");
    if (sf->up) {
        FAM("walvault_archive_failed_count", "pg_stat_archiver.failed_count");
        FAM("walvault_wal_segments_behind", "Completed WAL segments not yet archived");
    }
    if (have_rto)
        FAM("walvault_last_drill_rto_seconds", "Restore time measured by the last drill");
    SAMPLE("walvault_status", NULL, level);
    SAMPLE("walvault_status_time_seconds", NULL, (double)now);
    for (int i = 0; i < n && rc == 0; i++) {
        const repo_status *r = &rs[i];
        const char *name = r->rc->name;
        SAMPLE("walvault_repo_up", name, r->up);
        SAMPLE("walvault_repo_status", name, r->level);
        SAMPLE("walvault_repo_lag_files", name, (double)r->lag_files);
        SAMPLE("walvault_repo_lag_bytes", name, (double)r->lag_bytes);
        SAMPLE("walvault_repo_lag_oldest_seconds", name,
               r->lag_oldest_age >= 0 ? (double)r->lag_oldest_age : 0.0);
        if (!r->up)
            continue;
        SAMPLE("walvault_repo_lag_segments_listing", name, (double)r->lag_listing);
        SAMPLE("walvault_repo_dropped_segments", name, (double)r->dropped);
        if (r->have_backup) {
            SAMPLE("walvault_last_backup_age_seconds", name, (double)r->backup_age);
            SAMPLE("walvault_last_backup_size_bytes", name, (double)r->backup_size);
            SAMPLE("walvault_last_backup_duration_seconds", name, (double)r->backup_duration);
        }
        if (r->have_wal)
            SAMPLE("walvault_last_wal_archived_age_seconds", name, (double)r->wal_age);
        SAMPLE("walvault_repo_bytes", name, (double)r->bytes);
        if (r->free_known == 1)
            SAMPLE("walvault_repo_free_bytes", name, (double)r->free_bytes);
        if (r->rpo >= 0)
            SAMPLE("walvault_rpo_seconds", name, (double)r->rpo);
        if (r->window_end_us != INT64_MIN)
            SAMPLE("walvault_recovery_window_end_seconds", name, (double)r->window_end_us / 1e6);
        SAMPLE("walvault_leftover_backups", name, (double)r->leftovers);
        if (sf->up && r->segments_behind >= 0)
            SAMPLE("walvault_wal_segments_behind", name, (double)r->segments_behind);
    }
    if (sf->up)
        SAMPLE("walvault_archive_failed_count", NULL, (double)sf->failed_count);
    if (have_rto)
        SAMPLE("walvault_last_drill_rto_seconds", NULL, rto);
    if (rc == 0)
        rc = wv_prom_write(p, path, err);
    wv_prom_free(p);
    return rc;
}

int wv_bbcmd_status(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"prometheus", required_argument, NULL, 'p'},
        {"dbname", required_argument, NULL, 'd'},
        {"repo", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, repo = 0, ch;
    const char *prom = NULL, *connstr = NULL;
    wv_cli cli = {.config_path = config_path};
    wv_err err;
    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "d:c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'j':
            json = 1;
            break;
        case 'p':
            prom = optarg;
            break;
        case 'd':
            connstr = optarg;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &repo, &err) < 0) {
                wv_cli_fail(&err);
                return UNKNOWN;
            }
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("status", argv, &err);
            wv_cli_fail(&err);
            return UNKNOWN;
        }
    }
    wv_config *cfg = NULL;
    if (wv_cli_no_more_args("status", argc, argv, &err) != 0 ||
        (connstr && wv_pg_connstr_check(connstr, NULL, &err) != 0) ||
        wv_cli_load_config(&cli, &cfg, &err) != 0 ||
        (repo && wv_cli_repo_exists(cfg, "--repo", repo, &err) < 0)) {
        wv_cli_fail(&err);
        printf("status: UNKNOWN: %s\n", err.msg);
        wv_config_free(cfg);
        return UNKNOWN;
    }
    int64_t now = now_s();
    server_facts sf;
    memset(&sf, 0, sizeof(sf));
    if (connstr)
        ask_server(connstr, &sf);
    repo_status rs[WV_MAX_REPOS];
    int n = 0, level = OK;
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < cfg->nrepos; i++) {
        if (repo && cfg->repos[i].index != repo)
            continue;
        repo_status *r = &rs[n++];
        r->rc = &cfg->repos[i];
        wv_err_clear(&r->err);
        if (gather(r, now, &r->err) < 0)
            r->up = 0;
    }
    gather_lag(rs, n, cfg, now);
    for (int i = 0; i < n; i++) {
        judge(&rs[i], cfg, &sf);
        if (rs[i].level > level)
            level = rs[i].level;
    }
    if (sf.asked && !sf.up && level < WARNING)
        level = WARNING;
    char summary[2048] = "";
    for (int i = 0; i < n; i++) {
        if (!rs[i].problems[0])
            continue;
        size_t used = strlen(summary);
        snprintf(summary + used, sizeof(summary) - used, "%s%s: %s", used ? "; " : "",
                 rs[i].rc->name, rs[i].problems);
    }
    if (sf.asked && !sf.up) {
        size_t used = strlen(summary);
        snprintf(summary + used, sizeof(summary) - used, "%sserver: %s", used ? "; " : "", sf.err);
    }
    double rto = 0;
    char rto_when[64] = "";
    int have_rto = read_drill(cfg, &rto, rto_when, sizeof(rto_when));
    if (json)
        render_json(rs, n, &sf, have_rto, rto, rto_when, level, summary, now);
    else
        render_text(rs, n, &sf, have_rto, rto, rto_when, level, summary);
    fflush(stdout);
    int code = level;
    if (prom && write_prometheus(prom, rs, n, &sf, have_rto, rto, level, now, &err) < 0) {
        wv_err_hint(&err, "the directory of --prometheus must exist and be writable (for "
                          "node_exporter: its --collector.textfile.directory)");
        wv_log_err(&err);
        code = UNKNOWN;
    }
    if (level == CRITICAL) {
        char msg[2100];
        snprintf(msg, sizeof(msg), "status CRITICAL: %s", summary);
        int one = -1;
        for (int i = 0; i < n; i++)
            if (rs[i].level == CRITICAL)
                one = one == -1 ? i : -2;
        wv_notify(cfg, &(wv_notify_event){.event = "status",
                                          .ok = 0,
                                          .message = msg,
                                          .repo = one >= 0 ? rs[one].rc->name : NULL});
    }
    wv_config_free(cfg);
    return code;
}
