/*
 * fetcher.c - wal-fetch's background fetcher: one per cluster (flock on the spool's lock file),
 * detached from PostgreSQL (double fork, setsid, descriptors closed: see wf_spool_kick). It keeps
 * the depth segments after the one last wanted fetched into the spool, process_max at a time,
 * each worker with one connection per repository reused across files; it removes what falls out
 * of the window and exits once nothing was wanted for WF_IDLE_S, or at once when want is none.
 *
 * Each file is fetched with wv_repo_get_wal, the direct fetch's verified read (SHA-256, binding,
 * WAL page-header check), into a temp name; its record is written; then it is renamed into place.
 * A failure is recorded as NAME.err (the foreground then fetches NAME itself and reports the real
 * error). Not found is the end of what is archived: nothing past it is fetched until want moves.
 */
#include "prefetch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/units.h"
#include "repo/prefetch.h"

#define WF_IDLE_S 15.0

typedef struct job {
    char name[WV_WALNAME_SEGMENT_LEN];
    int state; /* 0 free, 1 queued, 2 running, 3 done */
    int rc;
} job;

typedef struct fetcher {
    const wf_spool *sp;
    const wv_config *cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job jobs[WV_PREFETCH_DEPTH_MAX + 1];
    int quit;
    char boot[WV_PREFETCH_BOOT_MAX];
} fetcher;

static void spool_path(const fetcher *f, const char *name, const char *suffix, char *out,
                       size_t len)
{
    snprintf(out, len, "%s/%s%s", f->sp->dir, name, suffix);
}

static void write_small(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    wv_err e;
    int rc = wv_write_all(fd, text, strlen(text), tmp, &e);
    close(fd);
    if (rc != 0 || rename(tmp, path) != 0)
        unlink(tmp);
}

/* Fetch one segment into the spool, from the first repository that has it. */
static int fetch_one(fetcher *f, wv_repo **conns, const char *name)
{
    char dl[PATH_MAX], final[PATH_MAX], recp[PATH_MAX], errp[PATH_MAX];
    spool_path(f, ".", name, dl, sizeof(dl));
    strncat(dl, ".dl", sizeof(dl) - strlen(dl) - 1);
    spool_path(f, name, "", final, sizeof(final));
    spool_path(f, name, ".rec", recp, sizeof(recp));
    spool_path(f, name, ".err", errp, sizeof(errp));
    const wv_config *cfg = f->cfg;
    wv_err first;
    int any_error = 0;
    wv_err_clear(&first);
    for (int i = 0; i < cfg->nrepos; i++) {
        wv_err e;
        wv_obj_info info;
        int rc = 0;
        wv_err_clear(&e);
        if (!conns[i]) {
            rc = wv_repo_open(&cfg->repos[i], &conns[i], &e);
            if (rc != 0)
                conns[i] = NULL;
        }
        if (rc == 0)
            rc = wv_repo_get_wal(conns[i]->st, &f->sp->info, name, dl, WV_GET_NOSYNC, &info, &e);
        if (rc == 0) {
            wv_prefetch_rec rec = {.tli = 0, .repo_index = cfg->repos[i].index};
            wv_walname w;
            wv_walname_parse(name, &w);
            rec.tli = w.tli;
            rec.repo_index = i + 1;
            rec.plain_size = info.plain_size;
            memcpy(rec.sha256, info.sha256, 32);
            snprintf(rec.boot_id, sizeof(rec.boot_id), "%s", f->boot);
            char line[256];
            if (wv_prefetch_rec_format(&rec, line, sizeof(line)) < 0) {
                unlink(dl);
                return WV_EINTERNAL;
            }
            write_small(recp, line);
            if (rename(dl, final) != 0) {
                unlink(dl);
                unlink(recp);
                return WV_EIO;
            }
            return 0;
        }
        if (rc == WV_ENOTFOUND)
            continue;
        /* A connection that failed is opened again for the next file. */
        wv_repo_close(conns[i]);
        conns[i] = NULL;
        if (!any_error)
            first = e;
        any_error = 1;
    }
    if (!any_error)
        return WV_ENOTFOUND;
    char line[WV_ERR_MSG_MAX + 2];
    snprintf(line, sizeof(line), "%s\n", first.msg);
    write_small(errp, line);
    return first.code;
}

static void *worker(void *arg)
{
    fetcher *f = arg;
    wv_repo *conns[WV_MAX_REPOS] = {0};
    pthread_mutex_lock(&f->mu);
    for (;;) {
        job *j = NULL;
        for (size_t i = 0; i < sizeof(f->jobs) / sizeof(f->jobs[0]) && !j; i++)
            if (f->jobs[i].state == 1)
                j = &f->jobs[i];
        if (!j) {
            if (f->quit)
                break;
            pthread_cond_wait(&f->cv, &f->mu);
            continue;
        }
        j->state = 2;
        char name[WV_WALNAME_SEGMENT_LEN];
        memcpy(name, j->name, sizeof(name));
        pthread_mutex_unlock(&f->mu);
        int rc = fetch_one(f, conns, name);
        char busy[PATH_MAX];
        spool_path(f, name, ".busy", busy, sizeof(busy));
        unlink(busy);
        pthread_mutex_lock(&f->mu);
        j->rc = rc;
        j->state = 3;
    }
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < WV_MAX_REPOS; i++)
        wv_repo_close(conns[i]);
    return NULL;
}

/* The segment name of a spool entry ("NAME", "NAME.rec", "NAME.err", "NAME.busy"), or NULL. */
static int entry_segment(const char *entry, char out[WV_WALNAME_SEGMENT_LEN])
{
    size_t n = strlen(entry);
    if (n < WV_WALNAME_SEGMENT_LEN - 1)
        return 0;
    const char *rest = entry + WV_WALNAME_SEGMENT_LEN - 1;
    if (*rest && strcmp(rest, ".rec") != 0 && strcmp(rest, ".err") != 0 &&
        strcmp(rest, ".busy") != 0 && strcmp(rest, ".ok") != 0)
        return 0;
    memcpy(out, entry, WV_WALNAME_SEGMENT_LEN - 1);
    out[WV_WALNAME_SEGMENT_LEN - 1] = '\0';
    return 1;
}

static int in_jobs(fetcher *f, const char *name)
{
    for (size_t i = 0; i < sizeof(f->jobs) / sizeof(f->jobs[0]); i++)
        if (f->jobs[i].state && strcmp(f->jobs[i].name, name) == 0)
            return 1;
    return 0;
}

/* Remove what is outside the window of want (everything when want is ""), except files in
 * flight. */
static void clean(fetcher *f, const char *want, int startup)
{
    DIR *d = opendir(f->sp->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char seg[WV_WALNAME_SEGMENT_LEN];
        const char *n = de->d_name;
        if (startup && (strstr(n, ".busy") || strstr(n, ".dl") || strstr(n, ".tmp"))) {
            unlinkat(dirfd(d), n, 0);
            continue;
        }
        if (!entry_segment(n, seg) || strstr(n, ".busy"))
            continue;
        if (in_jobs(f, seg))
            continue;
        if (!want[0] || wv_prefetch_stale(seg, want, f->sp->segsize, f->sp->depth))
            unlinkat(dirfd(d), n, 0);
    }
    closedir(d);
}

static int exists(const fetcher *f, const char *name, const char *suffix)
{
    char p[PATH_MAX];
    spool_path(f, name, suffix, p, sizeof(p));
    return access(p, F_OK) == 0;
}

/* The wanted segment is spooled: check it against the repository's trailer (one suffix read on
 * the main thread's own connection) and say so in NAME.ok, which the foreground waits for; a
 * segment that no longer matches (or cannot be checked) is removed, and the foreground fetches it
 * directly. */
static void check_wanted(fetcher *f, wv_repo **conns, const char *name)
{
    char path[PATH_MAX], recp[PATH_MAX], okp[PATH_MAX], text[256];
    spool_path(f, name, "", path, sizeof(path));
    spool_path(f, name, ".rec", recp, sizeof(recp));
    spool_path(f, name, ".ok", okp, sizeof(okp));
    int fd = open(recp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return;
    text[n] = '\0';
    wv_prefetch_rec rec;
    wv_obj_info now;
    wv_err e;
    char key[256];
    wv_err_clear(&e);
    int i = -1, good = 0;
    if (wv_prefetch_rec_parse(text, &rec, &e) == 0 && rec.repo_index >= 1 &&
        rec.repo_index <= f->cfg->nrepos)
        i = rec.repo_index - 1;
    if (i >= 0 && !conns[i] && wv_repo_open(&f->cfg->repos[i], &conns[i], &e) != 0)
        conns[i] = NULL;
    if (i >= 0 && conns[i] && wv_repo_wal_key(name, key, sizeof(key), &e) == 0) {
        int rc = wv_repo_read_info(conns[i]->st, key, &now, &e);
        if (rc == 0)
            good = now.plain_size == rec.plain_size && memcmp(now.sha256, rec.sha256, 32) == 0;
        else if (rc != WV_ENOTFOUND) {
            wv_repo_close(conns[i]);
            conns[i] = NULL;
        }
    }
    if (good) {
        write_small(okp, text);
    } else {
        unlink(path);
        unlink(recp);
    }
}

void wf_fetcher_main(const wf_spool *sp, const wv_config *cfg)
{
    char lockp[PATH_MAX];
    snprintf(lockp, sizeof(lockp), "%s/lock", sp->dir);
    int lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0)
        _exit(0);
    static fetcher f;
    memset(&f, 0, sizeof(f));
    f.sp = sp;
    f.cfg = cfg;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    wf_boot_id(f.boot);

    int nworkers = cfg->process_max < (int)sp->depth ? cfg->process_max : (int)sp->depth;
    if (nworkers < 1)
        nworkers = 1;
    pthread_t th[64];
    int started = 0;
    for (int i = 0; i < nworkers && i < 64; i++)
        if (pthread_create(&th[i], NULL, worker, &f) == 0)
            started++;
    if (started == 0)
        _exit(0);

    char want[WV_WALNAME_SEGMENT_LEN] = "", last[WV_WALNAME_SEGMENT_LEN] = "";
    /* The first segment of the window found in no repository (the end of the archive so far):
     * nothing from it on is fetched until want moves. */
    char notfound[WV_WALNAME_SEGMENT_LEN] = "";
    double last_change = wv_mono_s();
    int startup = 1;
    wv_repo *check_conns[WV_MAX_REPOS] = {0};
    for (;;) {
        wf_spool_wanted(sp, want);
        if (strcmp(want, last) != 0) {
            memcpy(last, want, sizeof(last));
            notfound[0] = '\0';
            last_change = wv_mono_s();
        }
        pthread_mutex_lock(&f.mu);
        int running = 0;
        for (size_t i = 0; i < sizeof(f.jobs) / sizeof(f.jobs[0]); i++) {
            job *j = &f.jobs[i];
            if (j->state == 3) {
                if (j->rc == WV_ENOTFOUND && (!notfound[0] || strcmp(j->name, notfound) < 0))
                    memcpy(notfound, j->name, sizeof(notfound));
                j->state = 0;
            } else if (j->state) {
                running++;
            }
        }
        pthread_mutex_unlock(&f.mu);
        pthread_mutex_lock(&f.mu);
        clean(&f, want, startup);
        int want_busy = want[0] && in_jobs(&f, want);
        pthread_mutex_unlock(&f.mu);
        startup = 0;
        if (want[0] && !want_busy && exists(&f, want, "") && exists(&f, want, ".rec") &&
            !exists(&f, want, ".ok"))
            check_wanted(&f, check_conns, want);

        if (!want[0] || wv_mono_s() - last_change > WF_IDLE_S) {
            if (running == 0)
                break;
        } else {
            char win[WV_PREFETCH_DEPTH_MAX][WV_WALNAME_SEGMENT_LEN];
            size_t n = wv_prefetch_window(want, sp->segsize, sp->depth, win, sp->depth);
            pthread_mutex_lock(&f.mu);
            for (size_t i = 0; i < n && running < started; i++) {
                if (notfound[0] && strcmp(win[i], notfound) >= 0)
                    break;
                if (in_jobs(&f, win[i]) || exists(&f, win[i], "") || exists(&f, win[i], ".err"))
                    continue;
                job *j = NULL;
                for (size_t k = 0; k < sizeof(f.jobs) / sizeof(f.jobs[0]) && !j; k++)
                    if (f.jobs[k].state == 0)
                        j = &f.jobs[k];
                if (!j)
                    break;
                char busy[PATH_MAX];
                spool_path(&f, win[i], ".busy", busy, sizeof(busy));
                int fd = open(busy, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                if (fd >= 0)
                    close(fd);
                memcpy(j->name, win[i], sizeof(j->name));
                j->state = 1;
                running++;
                pthread_cond_signal(&f.cv);
            }
            pthread_mutex_unlock(&f.mu);
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    pthread_mutex_lock(&f.mu);
    f.quit = 1;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < WV_MAX_REPOS; i++)
        wv_repo_close(check_conns[i]);
    clean(&f, want, 0);
    _exit(0);
}
