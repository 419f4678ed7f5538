/* lag.c - recording and catching up what `required = no` repositories lack (see lag.h). */
#include "lag.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/units.h"
#include "repo/lag.h"
#include "repo/objcopy.h"
#include "repo/repo.h"

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
        int r = wv_repo_copy_object(repos[si], repos[ti], key, 0, &n, &already, err);
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
            wv_log_warn("%s (required = no) is still failing, catching up later: %s", rc->name,
                        err.msg);
            start_backoff(cluster_dir, rc);
        } else
            wv_lag_backoff_clear(cluster_dir, rc->name);
        wv_repo_close(repos[ti]);
        repos[ti] = NULL;
    }
    for (int i = 0; i < cfg->nrepos; i++)
        wv_repo_close(repos[i]);
}
