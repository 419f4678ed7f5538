/* backupset.c - enumerate the backups of a repository; the backup lock and leftovers. */
#include "repo/backupset.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"

typedef struct {
    char **ids;
    size_t n, cap;
    char **all;
    size_t nall, capall;
    char **keeps; /* ids with a keep marker */
    size_t nkeeps, capkeeps;
} ids_state;

static void push(char ***arr, size_t *n, size_t *cap, const char *s, size_t len)
{
    for (size_t i = 0; i < *n; i++)
        if (strlen((*arr)[i]) == len && strncmp((*arr)[i], s, len) == 0)
            return;
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *arr = wv_xrealloc(*arr, *cap * sizeof(char *));
    }
    (*arr)[(*n)++] = wv_xstrndup(s, len);
}

static int ids_cb(void *arg, const char *key, const wv_stat *st)
{
    ids_state *s = arg;
    const char *id = key + strlen("backup/");
    const char *slash = strchr(id, '/');
    if (!slash)
        return 0;
    push(&s->all, &s->nall, &s->capall, id, (size_t)(slash - id));
    if (strcmp(slash + 1, WV_MANIFEST_NAME) == 0)
        push(&s->ids, &s->n, &s->cap, id, (size_t)(slash - id));
    else if (strcmp(slash + 1, WV_BACKUP_KEEP_NAME) == 0)
        push(&s->keeps, &s->nkeeps, &s->capkeeps, id, (size_t)(slash - id));
    return 0;
}

static int has_id(char *const *arr, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(arr[i], id) == 0)
            return 1;
    return 0;
}

static int cmp_backup(const void *x, const void *y)
{
    const wv_backup *a = x, *b = y;
    if (a->h.stop_lsn != b->h.stop_lsn)
        return a->h.stop_lsn < b->h.stop_lsn ? -1 : 1;
    if (a->h.stop_time != b->h.stop_time)
        return a->h.stop_time < b->h.stop_time ? -1 : 1;
    return strcmp(a->h.id, b->h.id);
}

int wv_backupset_load(wv_storage *st, wv_backupset *out, wv_err *err)
{
    ids_state s = {0};
    memset(out, 0, sizeof(*out));
    int rc = wv_storage_list(st, "backup/", ids_cb, &s, err);
    if (rc == 0 && s.n)
        out->b = wv_xcalloc(s.n, sizeof(wv_backup));
    for (size_t i = 0; rc == 0 && i < s.n; i++) {
        wv_backup *b = &out->b[out->n];
        rc = wv_manifest_load(st, s.ids[i], &b->h, NULL, NULL, &b->totals, err);
        if (rc == WV_ENOTFOUND) { /* expired between list and read */
            wv_manifest_header_free(&b->h);
            memset(b, 0, sizeof(*b));
            rc = 0;
            continue;
        }
        b->manifest_keep = b->h.keep;
        if (rc == 0 && has_id(s.keeps, s.nkeeps, s.ids[i])) {
            int keep = 0;
            rc = wv_backup_keep_read(st, s.ids[i], &keep, err);
            if (rc == 1) {
                b->h.keep = keep;
                b->keep_marker = 1;
            }
            rc = rc < 0 ? rc : 0;
        }
        if (rc != 0) {
            wv_manifest_header_free(&b->h);
            wv_err_prefix(err, "backup %s: ", s.ids[i]);
            break;
        }
        out->n++;
    }
    for (size_t i = 0; i < s.nall; i++) {
        int has = 0;
        for (size_t j = 0; j < s.n; j++)
            has |= strcmp(s.all[i], s.ids[j]) == 0;
        if (!has) {
            out->orphans = wv_xrealloc(out->orphans, (out->norphans + 1) * sizeof(char *));
            out->orphans[out->norphans++] = s.all[i];
        } else {
            free(s.all[i]);
        }
    }
    for (size_t i = 0; i < s.n; i++)
        free(s.ids[i]);
    for (size_t i = 0; i < s.nkeeps; i++)
        free(s.keeps[i]);
    free(s.ids);
    free(s.keeps);
    free(s.all);
    if (rc != 0) {
        wv_backupset_free(out);
        return rc;
    }
    qsort(out->b, out->n, sizeof(wv_backup), cmp_backup);
    return 0;
}

void wv_backupset_free(wv_backupset *set)
{
    for (size_t i = 0; i < set->n; i++)
        wv_manifest_header_free(&set->b[i].h);
    free(set->b);
    for (size_t i = 0; i < set->norphans; i++)
        free(set->orphans[i]);
    free(set->orphans);
    memset(set, 0, sizeof(*set));
}

const wv_backup *wv_backupset_find(const wv_backupset *set, const char *id)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->b[i].h.id, id) == 0)
            return &set->b[i];
    return NULL;
}

/* ---- the lock and leftovers ------------------------------------------------------------------ */

void wv_backup_lock_key(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "backup/%s/%s", id, WV_BACKUP_LOCK_NAME);
}

typedef struct {
    char **ids;
    size_t n, cap;
    wv_buf seen_manifest; /* "\n"-separated ids that have a manifest */
} scan;

static int scan_cb(void *arg, const char *key, const wv_stat *st)
{
    scan *s = arg;
    (void)st;
    if (strncmp(key, "backup/", 7) != 0)
        return 0;
    const char *id = key + 7;
    const char *slash = strchr(id, '/');
    if (!slash)
        return 0;
    char *idz = wv_xstrndup(id, (size_t)(slash - id));
    if (strcmp(slash + 1, WV_MANIFEST_NAME) == 0) {
        wv_buf_printf(&s->seen_manifest, "\n%s\n", idz);
        free(idz);
        return 0;
    }
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], idz) == 0) {
            free(idz);
            return 0;
        }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->ids = wv_xrealloc(s->ids, s->cap * sizeof(char *));
    }
    s->ids[s->n++] = idz;
    return 0;
}

typedef struct {
    char **keys;
    size_t n, cap;
} keyvec;

static int collect_cb(void *arg, const char *key, const wv_stat *st)
{
    keyvec *v = arg;
    (void)st;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->keys = wv_xrealloc(v->keys, v->cap * sizeof(char *));
    }
    v->keys[v->n++] = wv_xstrdup(key);
    return 0;
}

int wv_backup_remove_counted(wv_storage *st, const char *id, size_t *nremoved, wv_err *err)
{
    char prefix[256], lock[256], manifest[256];
    keyvec v = {0};
    size_t done = 0;
    int rc;
    snprintf(prefix, sizeof(prefix), "backup/%s/", id);
    wv_backup_lock_key(id, lock, sizeof(lock));
    wv_manifest_key(id, manifest, sizeof(manifest));
    if (nremoved)
        *nremoved = 0;
    if ((rc = wv_storage_list(st, prefix, collect_cb, &v, err)) < 0)
        goto out;
    /* The manifest first: from here on the directory is a leftover, never a backup. */
    int has_lock = 0;
    size_t k = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (strcmp(v.keys[i], manifest) == 0) {
            if ((rc = wv_storage_remove(st, manifest, err)) < 0)
                goto out;
            done++;
            free(v.keys[i]);
        } else if (strcmp(v.keys[i], lock) == 0) {
            has_lock = 1;
            free(v.keys[i]);
        } else {
            v.keys[k++] = v.keys[i];
        }
    }
    v.n = k;
    for (size_t i = 0; i < v.n; i += WV_BACKUP_REMOVE_BATCH) {
        size_t m = v.n - i < WV_BACKUP_REMOVE_BATCH ? v.n - i : WV_BACKUP_REMOVE_BATCH;
        if ((rc = wv_storage_remove_many(st, (const char *const *)v.keys + i, m, err)) < 0)
            goto out;
        done += m;
    }
    if (has_lock) {
        if ((rc = wv_storage_remove(st, lock, err)) < 0)
            goto out;
        done++;
    }
out:
    for (size_t i = 0; i < v.n; i++)
        free(v.keys[i]);
    free(v.keys);
    if (nremoved)
        *nremoved = done;
    return rc;
}

int wv_backup_remove(wv_storage *st, const char *id, wv_err *err)
{
    return wv_backup_remove_counted(st, id, NULL, err);
}

/* Is the lock object `key` ("PID HOST EPOCH") alive? */
static int lock_key_alive(wv_storage *st, const char *key)
{
    wv_buf b = WV_BUF_INIT;
    wv_err e;
    wv_stat sb;
    int alive = 0;
    if (wv_storage_get_all(st, key, 4096, &b, &e) < 0) {
        /* no lock: not alive (a running backup writes its lock before any other object) */
        wv_buf_free(&b);
        return 0;
    }
    long pid = 0;
    char host[256] = "";
    long long epoch = 0;
    if (sscanf(wv_buf_cstr(&b), "%ld %255s %lld", &pid, host, &epoch) == 3) {
        char me[256] = "";
        gethostname(me, sizeof(me) - 1);
        if (strcmp(host, me) == 0) {
            alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
        } else {
            /* another host: trust the lock while it is younger than a day */
            alive = wv_storage_stat(st, key, &sb, &e) == 0 &&
                    (int64_t)time(NULL) - sb.mtime < WV_BACKUP_STALE_LOCK_SECONDS;
        }
    }
    wv_buf_free(&b);
    return alive;
}

int wv_backup_lock_alive(wv_storage *st, const char *id)
{
    char key[256];
    wv_backup_lock_key(id, key, sizeof(key));
    return lock_key_alive(st, key);
}

int wv_backup_leftovers(wv_storage *st, char ***ids, size_t *n, wv_err *err)
{
    scan s = {0};
    *ids = NULL;
    *n = 0;
    wv_buf_init(&s.seen_manifest);
    int rc = wv_storage_list(st, "backup/", scan_cb, &s, err);
    for (size_t i = 0; i < s.n; i++) {
        char needle[WV_MANIFEST_ID_MAX + 3];
        snprintf(needle, sizeof(needle), "\n%s\n", s.ids[i]);
        if (rc != 0 || strstr(wv_buf_cstr(&s.seen_manifest), needle) ||
            wv_backup_lock_alive(st, s.ids[i])) {
            free(s.ids[i]);
            continue;
        }
        s.ids[(*n)++] = s.ids[i];
    }
    wv_buf_free(&s.seen_manifest);
    if (rc != 0 || *n == 0) {
        free(s.ids);
        *n = 0;
        return rc;
    }
    *ids = s.ids;
    return 0;
}

int wv_backup_cleanup_leftovers(wv_storage *st, wv_err *err)
{
    char **ids = NULL;
    size_t n = 0;
    int rc = wv_backup_leftovers(st, &ids, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        wv_log_note("%s: removing the leftovers of interrupted backup %s", wv_storage_name(st),
                    ids[i]);
        rc = wv_backup_remove(st, ids[i], err);
        if (rc == 0) {
            char rec[WV_MANIFEST_ID_MAX + 32];
            wv_err e;
            snprintf(rec, sizeof(rec), "%s %lld\n", ids[i], (long long)time(NULL));
            if (wv_storage_put_all(st, WV_BACKUP_CLEANED_KEY, 0, rec, strlen(rec), &e) < 0)
                wv_log_debug("%s: cannot record the clean-up in \"%s\": %s", wv_storage_name(st),
                             WV_BACKUP_CLEANED_KEY, e.msg);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return rc;
}

int wv_backup_cleaned_read(wv_storage *st, char *id, size_t idlen, int64_t *when)
{
    wv_buf b = WV_BUF_INIT;
    wv_err e;
    char got[65]; /* WV_MANIFEST_ID_MAX + 1, as the %64s below */
    long long epoch = 0;
    int found = 0;
    if (wv_storage_get_all(st, WV_BACKUP_CLEANED_KEY, 4096, &b, &e) == 0 &&
        sscanf(wv_buf_cstr(&b), "%64s %lld", got, &epoch) == 2 && epoch > 0) {
        snprintf(id, idlen, "%s", got);
        *when = (int64_t)epoch;
        found = 1;
    }
    wv_buf_free(&b);
    return found;
}

/* "PID HOST EPOCH\n" of this process (the caller frees it). */
static char *lock_content(void)
{
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    for (char *p = host; *p; p++)
        if (*p == ' ')
            *p = '_';
    return wv_xasprintf("%ld %s %lld\n", (long)getpid(), host[0] ? host : "-",
                        (long long)time(NULL));
}

int wv_backup_lock_acquire(wv_storage *st, const char *id, wv_err *err)
{
    char key[256], mkey[256];
    wv_stat sb;
    wv_manifest_key(id, mkey, sizeof(mkey));
    if (wv_storage_stat(st, mkey, &sb, NULL) == 0)
        return wv_err_set(err, WV_EEXIST, "%s: backup %s exists already", wv_storage_name(st), id);
    wv_backup_lock_key(id, key, sizeof(key));
    char *content = lock_content();
    int rc = wv_storage_put_all(st, key, WV_PUT_NOREPLACE, content, strlen(content), err);
    free(content);
    return rc;
}

int wv_backup_lock_take(wv_storage *const *st, int n, char *id, size_t idlen, wv_err *err)
{
    time_t t = time(NULL);
    for (int attempt = 0; attempt < 10; attempt++, t++) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(id, idlen, "%Y%m%dT%H%M%SZ", &tm);
        int rc = 0, i;
        for (i = 0; i < n; i++)
            if ((rc = wv_backup_lock_acquire(st[i], id, err)) < 0)
                break;
        if (rc == 0)
            return 0;
        wv_backup_lock_release(st, i, id);
        if (rc != WV_EEXIST)
            return rc;
    }
    return wv_err_set(err, WV_EEXIST, "could not choose a unique backup id");
}

void wv_backup_lock_release(wv_storage *const *st, int n, const char *id)
{
    char key[256];
    wv_backup_lock_key(id, key, sizeof(key));
    for (int i = 0; i < n; i++)
        wv_storage_remove(st[i], key, NULL);
}

/* ---- the keep marker ------------------------------------------------------------------------- */

void wv_backup_keep_key(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "backup/%s/%s", id, WV_BACKUP_KEEP_NAME);
}

int wv_backup_keep_read(wv_storage *st, const char *id, int *keep, wv_err *err)
{
    char key[256];
    wv_buf b = WV_BUF_INIT;
    wv_backup_keep_key(id, key, sizeof(key));
    int rc = wv_storage_get_all(st, key, 64, &b, err);
    if (rc == WV_ENOTFOUND) {
        wv_buf_free(&b);
        wv_err_clear(err);
        return 0;
    }
    if (rc == 0) {
        const char *t = wv_buf_cstr(&b);
        if (strcmp(t, "on\n") == 0) {
            *keep = 1;
            rc = 1;
        } else if (strcmp(t, "off\n") == 0) {
            *keep = 0;
            rc = 1;
        } else {
            rc = wv_err_set(err, WV_ECORRUPT, "%s: \"%s\": a keep marker holds \"on\" or \"off\"",
                            wv_storage_name(st), key);
            wv_err_hint(err, "set it again with \"basebackup keep --backup %s on\" (or off)", id);
        }
    }
    wv_buf_free(&b);
    return rc;
}

int wv_backup_keep_write(wv_storage *st, const char *id, int keep, wv_err *err)
{
    char key[256];
    wv_backup_keep_key(id, key, sizeof(key));
    const char *t = keep ? "on\n" : "off\n";
    return wv_storage_put_all(st, key, 0, t, strlen(t), err);
}

/* ---- the repository lock of expire ----------------------------------------------------------- */

int wv_repo_lock_acquire(wv_storage *st, const char *what, wv_err *err)
{
    char *content = lock_content();
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = wv_storage_put_all(st, WV_REPO_LOCK_KEY, WV_PUT_NOREPLACE, content, strlen(content),
                                err);
        if (rc != WV_EEXIST)
            break;
        if (lock_key_alive(st, WV_REPO_LOCK_KEY)) {
            wv_buf b = WV_BUF_INIT;
            wv_err e;
            long pid = 0;
            char host[256] = "?";
            long long epoch = 0;
            if (wv_storage_get_all(st, WV_REPO_LOCK_KEY, 4096, &b, &e) == 0)
                sscanf(wv_buf_cstr(&b), "%ld %255s %lld", &pid, host, &epoch);
            wv_buf_free(&b);
            rc = wv_err_set(err, WV_EEXIST,
                            "%s: %s refused: another expire, delete or keep holds the repository "
                            "lock \"%s\" (pid %ld on %s)",
                            wv_storage_name(st), what, WV_REPO_LOCK_KEY, pid, host);
            wv_err_hint(err, "wait for it to finish and run %s again", what);
            break;
        }
        /* its holder is gone (killed): take the lock over */
        wv_log_info("%s: removing the stale lock \"%s\" of a process that is gone",
                    wv_storage_name(st), WV_REPO_LOCK_KEY);
        if ((rc = wv_storage_remove(st, WV_REPO_LOCK_KEY, err)) < 0)
            break;
    }
    free(content);
    return rc;
}

void wv_repo_lock_release(wv_storage *st)
{
    wv_storage_remove(st, WV_REPO_LOCK_KEY, NULL);
}

int wv_backupset_check_cluster(const wv_backupset *set, const char *repo, uint64_t system_id,
                               uint64_t wal_segsize, wv_err *err)
{
    for (size_t i = 0; i < set->n; i++) {
        const wv_manifest_header *h = &set->b[i].h;
        if (h->system_id != system_id)
            wv_err_set(err, WV_ECORRUPT,
                       "%s: backup %s: its manifest is of database system %" PRIu64
                       ", the repository's is %" PRIu64,
                       repo, h->id, h->system_id, system_id);
        else if (h->wal_segsize != wal_segsize)
            wv_err_set(err, WV_ECORRUPT,
                       "%s: backup %s: its manifest says %" PRIu64
                       "-byte WAL segments, the repository's are %" PRIu64,
                       repo, h->id, h->wal_segsize, wal_segsize);
        else
            continue;
        return wv_err_hint(err,
                           "it was copied in from another repository or damaged: remove "
                           "backup/%s from this repository (verify reports every such backup)",
                           h->id);
    }
    return 0;
}
