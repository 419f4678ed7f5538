/* lag.c - recording and catching up what `required = no` repositories lack (see lag.h). */
#include "lag.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/buf.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/units.h"
#include "repo/lag.h"
#include "repo/objcopy.h"
#include "repo/repo.h"
#include "repo/spool.h"
#include "repo/xidrange.h"

int wv_push_has_optional(const wv_config *cfg)
{
    for (int i = 0; i < cfg->nrepos; i++)
        if (cfg->repos[i].optional)
            return 1;
    return 0;
}

int wv_push_in_backoff(const char *cluster_dir, const wv_repo_config *rc, int64_t now,
                       int64_t *next)
{
    int64_t delay;
    wv_lag_backoff_load(cluster_dir, rc->name, next, &delay);
    return *next > now;
}

static void start_backoff(const char *cluster_dir, const wv_repo_config *rc)
{
    int64_t next, delay;
    wv_err e;
    wv_lag_backoff_load(cluster_dir, rc->name, &next, &delay);
    delay = wv_lag_backoff_next(delay);
    wv_err_clear(&e);
    if (wv_lag_backoff_store(cluster_dir, rc->name, (int64_t)time(NULL) + delay, delay, &e) != 0)
        wv_log_err(&e);
    else
        wv_log_info("%s: next attempt in %" PRId64 " s", rc->name, delay);
}

int wv_push_record_lag(const char *cluster_dir, const wv_repo_config *rc, const char *name,
                       uint64_t size, const wv_err *why, int tried, wv_err *err)
{
    wv_lag_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.name, sizeof(e.name), "%s", name);
    e.time = (int64_t)time(NULL);
    e.size = size;
    wv_lag_set_error(&e, why->msg);
    int r = wv_lag_add(cluster_dir, "lag", rc->name, &e, err);
    if (r != 0)
        return r;
    wv_log_warn("%s not stored in %s (required = no), recorded to catch up later: %s", name,
                rc->name, why->msg);
    if (tried)
        start_backoff(cluster_dir, rc);
    return 0;
}

void wv_push_lag_resolved(const char *cluster_dir, const wv_repo_config *rc, const char *name)
{
    wv_err e;
    wv_err_clear(&e);
    if (wv_lag_remove(cluster_dir, "lag", rc->name, name, &e) != 0)
        wv_log_err(&e);
    wv_lag_backoff_clear(cluster_dir, rc->name);
}

/* The object of a lag record: its key, and a repository (not `to`) that holds it. */
static int find_source(wv_repo **repos, int n, const wv_repo *to, const char *key)
{
    for (int i = 0; i < n; i++) {
        if (!repos[i] || repos[i] == to)
            continue;
        wv_stat st;
        wv_err e;
        wv_err_clear(&e);
        if (wv_storage_stat(repos[i]->st, key, &st, &e) == 0)
            return i;
    }
    return -1;
}

/* The small text object "<key><suffix>" beside a segment (its restore points, its transaction id
 * range), when the source has one: read and written as text objects (repo.h), so sealed under the
 * target's own keys in an encrypted repository. */
static int copy_beside(wv_repo *from, wv_repo *to, const char *key, const char *suffix, wv_err *err)
{
    char rpkey[300];
    wv_buf b = WV_BUF_INIT;
    snprintf(rpkey, sizeof(rpkey), "%s%s", key, suffix);
    int rc = wv_repo_get_text(from->st, rpkey, 1024 * 1024, &b, err);
    if (rc == WV_ENOTFOUND) {
        wv_err_clear(err);
        rc = 0;
    } else if (rc == 0) {
        rc = wv_repo_put_text(to->st, rpkey, WV_PUT_NOREPLACE, b.data, b.len, err);
        if (rc == WV_EEXIST) {
            wv_err_clear(err);
            rc = 0;
        } else if (rc < 0)
            wv_err_context(err, wv_storage_name(to->st), rpkey);
    } else
        wv_err_context(err, wv_storage_name(from->st), rpkey);
    wv_buf_free(&b);
    return rc;
}

/* Catch up one repository: 0 when its backlog is empty now or the bound was reached, else the
 * error that stopped it (the repository itself failed). */
static int catch_up_repo(const wv_config *cfg, const char *cluster_dir, int ti, wv_repo **repos,
                         const wv_lag_list *l, double deadline, int *budget, wv_err *err)
{
    const wv_repo_config *rc = &cfg->repos[ti];
    int rcode = wv_repo_open(rc, &repos[ti], err);
    if (rcode != 0)
        return rcode;
    /* the cluster check (and, on first use, the record of the cluster) comes from a source */
    for (int i = 0; i < cfg->nrepos; i++) {
        if (!repos[i] || i == ti)
            continue;
        if (!repos[i]->have_info && wv_repo_load_info(repos[i], err) != 0) {
            wv_err_clear(err);
            continue;
        }
        const wv_repo_info *ri = &repos[i]->info;
        if ((rcode = wv_repo_check_cluster(repos[ti], ri->system_id, ri->pg_major, ri->wal_segsize,
                                           err)) != 0)
            return rcode;
        wv_err_clear(err);
        break;
    }
    uint64_t copied = 0, bytes = 0;
    for (size_t k = 0; k<l->n && * budget> 0 && wv_mono_s() < deadline; k++) {
        const wv_lag_entry *e = &l->e[k];
        char key[256];
        if (wv_repo_wal_key(e->name, key, sizeof(key), err) != 0) {
            wv_log_err(err);
            wv_err_clear(err);
            continue;
        }
        (*budget)--;
        int si = find_source(repos, cfg->nrepos, repos[ti], key);
        if (si < 0) {
            wv_log_warn("%s: %s is lacking, but no reachable repository holds it to copy from",
                        rc->name, e->name);
            continue;
        }
        int already = 0;
        uint64_t n = 0;
        /* the restore points and transaction id range beside a segment go first, as wal-push
         * stores them */
        int r = copy_beside(repos[si], repos[ti], key, WV_REPO_RP_SUFFIX, err);
        if (r == 0)
            r = copy_beside(repos[si], repos[ti], key, WV_REPO_XID_SUFFIX, err);
        if (r == 0)
            r = wv_repo_copy_object(repos[si], repos[ti], key, 0, &n, &already, err);
        if (r == WV_EPRIVKEY) {
            /* public-key mode on a host without the private key: the other repositories' objects
             * cannot be decoded here to be encoded under this one's keys */
            wv_err_set(err, WV_EPRIVKEY,
                       "%s lacks %s, and copying it from %s needs the private key "
                       "(encrypt_private_key_file), which this host does not hold",
                       rc->name, e->name, cfg->repos[si].name);
            return wv_err_hint(err,
                               "run \"basebackup sync --from %d --to %d\" on a host that "
                               "holds the private key",
                               cfg->repos[si].index, rc->index);
        }
        if (r == WV_ECONFLICT) {
            /* split brain: never papered over; the record stays for status to show */
            wv_log_err(err);
            wv_err_clear(err);
            continue;
        }
        if (r != 0) {
            if (err->repo[0] && strcmp(err->repo, rc->name) != 0) {
                wv_log_err(err); /* the source failed: try the next file */
                wv_err_clear(err);
                continue;
            }
            return r;
        }
        wv_err le;
        wv_err_clear(&le);
        if (wv_lag_remove(cluster_dir, "lag", rc->name, e->name, &le) != 0)
            wv_log_err(&le);
        copied++;
        bytes += n;
    }
    char hb[32];
    if (copied)
        wv_log_info("%s caught up %" PRIu64 " file%s (%s) copied from the other repositories",
                    rc->name, copied, copied == 1 ? "" : "s",
                    wv_human_bytes(bytes, hb, sizeof(hb)));
    return 0;
}

void wv_push_catch_up(const wv_config *cfg, const char *cluster_dir)
{
    wv_repo *repos[WV_MAX_REPOS] = {0};
    int opened_sources = 0;
    int budget = WV_CATCHUP_FILES;
    double deadline = wv_mono_s() + WV_CATCHUP_SECONDS;
    int64_t now = (int64_t)time(NULL);
    for (int ti = 0; ti < cfg->nrepos; ti++) {
        const wv_repo_config *rc = &cfg->repos[ti];
        int64_t next;
        if (!rc->optional || wv_push_in_backoff(cluster_dir, rc, now, &next))
            continue;
        wv_lag_list l;
        wv_err err;
        wv_err_clear(&err);
        if (wv_lag_load(cluster_dir, "lag", rc->name, &l, &err) != 0) {
            wv_log_err(&err);
            continue;
        }
        if (l.n == 0) {
            wv_lag_list_free(&l);
            continue;
        }
        if (!opened_sources) {
            for (int i = 0; i < cfg->nrepos; i++) {
                wv_err oe;
                wv_err_clear(&oe);
                if (i != ti && !cfg->repos[i].optional &&
                    wv_repo_open(&cfg->repos[i], &repos[i], &oe) != 0)
                    repos[i] = NULL;
            }
            opened_sources = 1;
        }
        int r = catch_up_repo(cfg, cluster_dir, ti, repos, &l, deadline, &budget, &err);
        wv_lag_list_free(&l);
        if (r != 0) {
            if (r == WV_EPRIVKEY)
                wv_log_warn("%s (required = no) cannot be caught up on this host: %s", rc->name,
                            err.msg);
            else
                wv_log_warn("%s (required = no) is still failing, catching up later: %s", rc->name,
                            err.msg);
            if (err.hint[0])
                wv_log_warn("hint: %s", err.hint);
            start_backoff(cluster_dir, rc);
        } else
            wv_lag_backoff_clear(cluster_dir, rc->name);
        wv_repo_close(repos[ti]);
        repos[ti] = NULL;
    }
    for (int i = 0; i < cfg->nrepos; i++)
        wv_repo_close(repos[i]);
}

/* .ready files in <dir of path>/archive_status; *self: the pushed file's own is among them. */
static uint64_t count_ready(const char *path, const char *name, int *self)
{
    char *dir = wv_dirname_dup(path);
    char st[4200], mine[128];
    snprintf(st, sizeof(st), "%s/archive_status", dir);
    snprintf(mine, sizeof(mine), "%s.ready", name);
    free(dir);
    uint64_t n = 0;
    *self = 0;
    DIR *d = opendir(st);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 6 && strcmp(de->d_name + l - 6, ".ready") == 0) {
            n++;
            if (strcmp(de->d_name, mine) == 0)
                *self = 1;
        }
    }
    closedir(d);
    return n;
}

int wv_push_queue_drop(const wv_config *cfg, const char *path, const char *name, uint64_t size,
                       uint64_t segsize, uint64_t sysid, const wv_err *why)
{
    if (!cfg->archive_queue_max || !sysid)
        return 0;
    int self = 0;
    uint64_t ready = count_ready(path, name, &self);
    uint64_t queued = wv_lag_queue_bytes(ready, segsize, size, self);
    if (!wv_lag_queue_exceeded(queued, cfg->archive_queue_max))
        return 0;
    char maxs[32], qs[32], msg[1024];
    wv_human_bytes(cfg->archive_queue_max, maxs, sizeof(maxs));
    wv_human_bytes(queued, qs, sizeof(qs));
    snprintf(msg, sizeof(msg),
             "archive_queue_max (%s) exceeded: WAL segment %s dropped without "
             "archiving; point-in-time recovery across it is impossible until "
             "the next base backup",
             maxs, name);
    int64_t now = (int64_t)time(NULL);
    int recorded = 0;
    /* the gap, recorded wherever it can be: the spool, and every repository that answers */
    char cdir[4096];
    wv_err e;
    wv_err_clear(&e);
    if (wv_spool_cluster_dir(cfg, sysid, cdir, sizeof(cdir), &e) == 0) {
        wv_lag_entry le;
        memset(&le, 0, sizeof(le));
        snprintf(le.name, sizeof(le.name), "%s", name);
        le.time = now;
        le.size = size;
        wv_lag_set_error(&le, why->msg);
        if (wv_lag_add(cdir, "dropped", NULL, &le, &e) == 0)
            recorded++;
    }
    if (e.code) {
        wv_log_err(&e);
        wv_err_clear(&e);
    }
    wv_buf text = WV_BUF_INIT;
    char reason[1200], key[160];
    snprintf(reason, sizeof(reason), "archive_queue_max (%s) exceeded with %s waiting; %s", maxs,
             qs, why->msg);
    wv_lag_gap_format(now, reason, &text);
    snprintf(key, sizeof(key), "%s%s", WV_REPO_GAPS_PREFIX, name);
    for (int i = 0; i < cfg->nrepos; i++) {
        wv_repo *r = NULL;
        int rc = wv_repo_open(&cfg->repos[i], &r, &e);
        if (rc == 0)
            rc = wv_repo_put_text(r->st, key, WV_PUT_NOREPLACE, text.data, text.len, &e);
        if (rc == 0 || rc == WV_EEXIST)
            recorded++;
        else
            wv_log_warn("%s: the gap of %s could not be recorded there: %s", cfg->repos[i].name,
                        name, e.msg);
        wv_err_clear(&e);
        wv_repo_close(r);
    }
    wv_buf_free(&text);
    if (!recorded) {
        wv_log_error("archive_queue_max (%s) exceeded, but the gap of %s could not be recorded "
                     "anywhere: not dropped",
                     maxs, name);
        return 0;
    }
    wv_log_err(why);
    wv_log_error("%s", msg);
    wv_notify(cfg, &(wv_notify_event){.event = "wal-drop", .ok = 0, .message = msg});
    return 1;
}
