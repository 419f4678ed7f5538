/* archwait.c - see archwait.h. */
#include "repo/archwait.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/units.h"
#include "repo/repo.h"
#include "repo/walarchive.h"
#include "storage/storage.h"

/* 1 if the restore point is archived in r, 0 if not, or an error. */
static int rp_in_repo(wv_repo *r, const char *name, wv_err *err)
{
    if (!r->have_info) {
        int rc = wv_repo_load_info(r, err);
        if (rc == WV_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
    }
    wv_archive *a = NULL;
    int rc = wv_archive_scan(r->st, r->info.wal_segsize, &a, err);
    if (rc != 0)
        return rc;
    uint64_t lsn;
    int64_t t;
    uint32_t tli;
    rc = wv_archive_find_restore_point(r->st, a, name, &lsn, &t, &tli, err);
    wv_archive_free(a);
    if (rc == WV_ENOTFOUND)
        return 0;
    return rc == 0 ? 1 : rc;
}

/* 1 when walname (and rp_name) is archived in the repository, 0 when not yet, or an error. */
static int arrived(const wv_repo_config *rc, const char *key, const char *rp_name, wv_err *err)
{
    wv_repo *r = NULL;
    int rc_ = wv_repo_open(rc, &r, err);
    if (rc_ == 0) {
        wv_stat st;
        rc_ = wv_storage_stat(r->st, key, &st, err);
        if (rc_ == WV_ENOTFOUND)
            rc_ = 0;
        else if (rc_ == 0 && rp_name && !wv_repo_readable(r->st)) {
            /* a public-key host cannot read restore point names: the record wal-push writes
             * beside the segment (before the segment itself) says it is there */
            char rpkey[300];
            snprintf(rpkey, sizeof(rpkey), "%s%s", key, WV_REPO_RP_SUFFIX);
            rc_ = wv_storage_stat(r->st, rpkey, &st, err);
            if (rc_ == WV_ENOTFOUND)
                rc_ = 0;
            else if (rc_ == 0)
                rc_ = 1;
        } else if (rc_ == 0)
            rc_ = rp_name ? rp_in_repo(r, rp_name, err) : 1;
    }
    wv_repo_close(r);
    return rc_;
}

int wv_archwait_segment(const wv_config *cfg, const char *walname, const char *rp_name,
                        int timeout_s, wv_err *err)
{
    char key[256];
    int rc = wv_repo_wal_key(walname, key, sizeof(key), err);
    if (rc != 0)
        return rc;
    double deadline = wv_mono_s() + timeout_s;
    for (int i = 0; i < cfg->nrepos; i++) {
        const wv_repo_config *repo = &cfg->repos[i];
        for (;;) {
            wv_err e;
            wv_err_clear(&e);
            int got = arrived(repo, key, rp_name, &e);
            if (got == 1)
                break;
            if (wv_mono_s() >= deadline) {
                if (got < 0) {
                    *err = e;
                    wv_err_context(err, repo->name, NULL);
                    return got;
                }
                wv_err_set(err, WV_ETIMEOUT, "%s: WAL segment %s%s%s%s not archived within %d s",
                           repo->name, walname, rp_name ? " (restore point \"" : "",
                           rp_name ? rp_name : "", rp_name ? "\")" : "", timeout_s);
                return wv_err_hint(err, "check the server's archive_command and its log "
                                        "(pg_stat_archiver); basebackup check tells what fails");
            }
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

int wv_archwait_restore_point_known(const wv_config *cfg, const char *name, char *where,
                                    size_t wherelen, wv_err *err)
{
    for (int i = 0; i < cfg->nrepos; i++) {
        wv_repo *r = NULL;
        int rc = wv_repo_open(&cfg->repos[i], &r, err);
        if (rc == 0 && !wv_repo_readable(r->st)) {
            wv_log_warn("%s: restore point names are encrypted for the public key: whether \"%s\" "
                        "exists already is not checked here (restore --name takes the newest)",
                        cfg->repos[i].name, name);
            wv_repo_close(r);
            continue;
        }
        if (rc == 0)
            rc = rp_in_repo(r, name, err);
        wv_repo_close(r);
        if (rc < 0) {
            wv_err_context(err, cfg->repos[i].name, NULL);
            return rc;
        }
        if (rc == 1) {
            snprintf(where, wherelen, "%s", cfg->repos[i].name);
            return 1;
        }
    }
    return 0;
}
