/*
 * prefetch.c - wal-fetch's foreground side of the prefetch spool (see prefetch.h).
 */
#include "prefetch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/units.h"
#include "repo/prefetch.h"
#include "repo/spool.h"

/* How long the foreground waits for a segment the fetcher is fetching before fetching it
 * itself. */
#define WF_BUSY_WAIT_S 120.0

int wf_repo(wf_repos *repos, int i, wv_repo **out, wv_err *err)
{
    if (repos->r[i]) {
        *out = repos->r[i];
        return 0;
    }
    if (repos->failed[i]) {
        *err = repos->err[i];
        return err->code;
    }
    wv_repo *r = NULL;
    wv_err e;
    wv_err_clear(&e);
    int rc = wv_repo_open(&repos->cfg->repos[i], &r, &e);
    if (rc == 0) {
        rc = wv_repo_load_info(r, &e);
        if (rc == WV_ENOTFOUND) {
            wv_err_clear(&e);
            rc = 0;
        }
    }
    if (rc != 0) {
        wv_repo_close(r);
        repos->failed[i] = 1;
        repos->err[i] = e;
        *err = e;
        return rc;
    }
    repos->r[i] = r;
    *out = r;
    return 0;
}

void wf_repos_close(wf_repos *repos)
{
    for (int i = 0; i < WV_MAX_REPOS; i++) {
        wv_repo_close(repos->r[i]);
        repos->r[i] = NULL;
    }
}

static int path_in(const wf_spool *sp, const char *name, const char *suffix, char *out,
                   size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s%s", sp->dir, name, suffix);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* The system identifier in PGDATA's pg_control (its first field in every version), PostgreSQL
 * running us in PGDATA; -1 when there is none (not run by PostgreSQL). */
static int pg_control_system_id(uint64_t *out)
{
    int fd = open("global/pg_control", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint64_t v = 0;
    ssize_t n = read(fd, &v, sizeof(v));
    close(fd);
    if (n != (ssize_t)sizeof(v) || v == 0)
        return -1;
    *out = v;
    return 0;
}

static int set_dirs(const wv_config *cfg, uint64_t system_id, wf_spool *sp, wv_err *err)
{
    char cluster[3000];
    int rc = wv_spool_cluster_dir(cfg, system_id, cluster, sizeof(cluster), err);
    if (rc != 0)
        return rc;
    int n = snprintf(sp->dir, sizeof(sp->dir), "%s/%s", cluster, WV_PREFETCH_DIR);
    if (n < 0 || (size_t)n >= sizeof(sp->dir))
        return wv_err_set(err, WV_EUSAGE, "spool path \"%s\" is too long", cluster);
    if (mkdir(sp->dir, 0700) != 0 && errno != EEXIST)
        return wv_err_errno(err, WV_EIO, errno, "could not create prefetch spool \"%s\"", sp->dir);
    return 0;
}

static int read_small(const char *path, char *buf, size_t len);

int wf_spool_open(wf_repos *repos, wf_spool *sp, wv_err *err)
{
    const wv_config *cfg = repos->cfg;
    char path[PATH_MAX], text[256];
    memset(sp, 0, sizeof(sp[0]));
    if (cfg->fetch_ahead == 0)
        return WV_ENOTFOUND;
    /* Served from the spool without opening a repository: the cluster from pg_control, its
     * repository info from the spool (written by an earlier call that read walvault.repo). */
    uint64_t sysid;
    wv_err e;
    wv_err_clear(&e);
    if (pg_control_system_id(&sysid) == 0 && set_dirs(cfg, sysid, sp, &e) == 0 &&
        path_in(sp, "info", "", path, sizeof(path)) == 0 &&
        read_small(path, text, sizeof(text)) == 0 &&
        wv_prefetch_info_parse(text, &sp->info, &e) == 0 && sp->info.system_id == sysid) {
        sp->segsize = sp->info.wal_segsize;
        sp->depth = wv_prefetch_depth(cfg->fetch_ahead, sp->segsize);
        return 0;
    }
    /* The first repository that knows the cluster gives the system identifier and segment size
     * (wal-push records them on first use; every repository of a cluster holds the same). */
    int found = 0;
    for (int i = 0; i < cfg->nrepos && !found; i++) {
        wv_repo *r = NULL;
        wv_err_clear(&e);
        if (wf_repo(repos, i, &r, &e) == 0 && r->have_info) {
            sp->info = r->info;
            found = 1;
        }
    }
    if (!found)
        return WV_ENOTFOUND;
    sp->segsize = sp->info.wal_segsize;
    sp->depth = wv_prefetch_depth(cfg->fetch_ahead, sp->segsize);
    int rc = set_dirs(cfg, sp->info.system_id, sp, err);
    if (rc != 0)
        return rc;
    char tmp[PATH_MAX];
    if (wv_prefetch_info_format(&sp->info, text, sizeof(text)) > 0 &&
        path_in(sp, "info", "", path, sizeof(path)) == 0 &&
        path_in(sp, ".info.", "tmp", tmp, sizeof(tmp)) == 0) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            int ok = wv_write_all(fd, text, strlen(text), tmp, &e) == 0;
            close(fd);
            if (!ok || rename(tmp, path) != 0)
                unlink(tmp);
        }
    }
    return 0;
}

void wf_spool_wanted(const wf_spool *sp, char out[WV_WALNAME_SEGMENT_LEN])
{
    char path[PATH_MAX];
    out[0] = '\0';
    if (path_in(sp, "want", "", path, sizeof(path)) != 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[WV_WALNAME_SEGMENT_LEN + 2];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    wv_walname w;
    if (wv_walname_parse(buf, &w) == WV_WALNAME_SEGMENT)
        memcpy(out, buf, WV_WALNAME_SEGMENT_LEN);
}

int wf_spool_want(const wf_spool *sp, const char *name, wv_err *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    if (path_in(sp, "want", "", path, sizeof(path)) != 0 ||
        path_in(sp, ".want.", "tmp", tmp, sizeof(tmp)) != 0)
        return wv_err_set(err, WV_EUSAGE, "prefetch spool path \"%s\" is too long", sp->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", tmp);
    char line[WV_WALNAME_SEGMENT_LEN + 1];
    int n = snprintf(line, sizeof(line), "%s\n", name);
    int rc = wv_write_all(fd, line, (size_t)n, tmp, err);
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", tmp, path);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* 1 when a fetcher holds the spool's lock. */
static int fetcher_alive(const wf_spool *sp)
{
    char path[PATH_MAX];
    if (path_in(sp, "lock", "", path, sizeof(path)) != 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int alive = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return alive;
}

void wf_spool_kick(const wf_spool *sp, const wv_config *cfg)
{
    if (fetcher_alive(sp))
        return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        wv_log_debug("prefetch: could not fork the background fetcher: %s", strerror(errno));
        return;
    }
    if (pid > 0) {
        /* The middle child exits at once: the fetcher is re-parented, never our child. */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        return;
    }
    /* Middle child: a new session, then the fetcher itself. */
    if (setsid() < 0)
        _exit(0);
    signal(SIGHUP, SIG_IGN);
    pid = fork();
    if (pid != 0)
        _exit(0);
    /* PostgreSQL's startup process must never wait on us: no descriptor of its (the log pipe,
     * the server's files, a repository connection of the foreground) stays open. */
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
    }
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    for (int fd = 3; fd < maxfd; fd++)
        close(fd);
    if (chdir("/") != 0)
        _exit(0);
    wf_fetcher_main(sp, cfg);
}

static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static void remove_entry(const wf_spool *sp, const char *name)
{
    static const char *const suffixes[] = {"", ".rec", ".err", ".ok"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        if (path_in(sp, name, suffixes[i], path, sizeof(path)) == 0)
            unlink(path);
}

/* Copy a spooled file to dest (another file system): temp file beside dest, then rename, as a
 * direct fetch writes it. */
static int copy_to(const char *src, const char *dest, wv_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", src);
    char *tmp = wv_temp_path_for(dest);
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = 0;
    if (out < 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", tmp);
    static char buf[1 << 20];
    while (rc == 0) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not read \"%s\"", src);
        if (n <= 0)
            break;
        rc = wv_write_all(out, buf, (size_t)n, tmp, err);
    }
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not write \"%s\"", tmp);
    close(in);
    if (rc == 0 && rename(tmp, dest) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", tmp, dest);
    if (rc != 0 && out >= 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static double now_ms(void)
{
    return wv_mono_s() * 1000.0;
}

void wf_boot_id(char out[WV_PREFETCH_BOOT_MAX])
{
    if (read_small("/proc/sys/kernel/random/boot_id", out, WV_PREFETCH_BOOT_MAX) != 0)
        snprintf(out, WV_PREFETCH_BOOT_MAX, "unknown");
    out[strcspn(out, " \t\r\n")] = '\0';
    if (!out[0])
        snprintf(out, WV_PREFETCH_BOOT_MAX, "unknown");
}

int wf_spool_serve(const wf_spool *sp, wf_repos *repos, const char *name, const char *dest,
                   wv_err *err)
{
    char path[PATH_MAX], rec_path[PATH_MAX], busy[PATH_MAX];
    if (path_in(sp, name, "", path, sizeof(path)) != 0 ||
        path_in(sp, name, ".rec", rec_path, sizeof(rec_path)) != 0 ||
        path_in(sp, name, ".busy", busy, sizeof(busy)) != 0)
        return WV_ENOTFOUND;
    double t0 = now_ms();
    /* In flight: wait for the fetcher rather than fetch the same segment twice. */
    while (access(path, F_OK) != 0 && access(busy, F_OK) == 0 && fetcher_alive(sp) &&
           now_ms() - t0 < WF_BUSY_WAIT_S * 1000.0)
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    double waited = now_ms() - t0;

    char text[256];
    wv_prefetch_rec rec;
    wv_err e;
    wv_err_clear(&e);
    if (access(path, F_OK) != 0 || read_small(rec_path, text, sizeof(text)) != 0) {
        /* Not spooled (or only an error recorded: the direct fetch reports the real one). */
        remove_entry(sp, name);
        return WV_ENOTFOUND;
    }
    const char *why = NULL;
    char boot[WV_PREFETCH_BOOT_MAX];
    struct stat st;
    wv_walname w;
    wf_boot_id(boot);
    wv_walname_parse(name, &w);
    if (wv_prefetch_rec_parse(text, &rec, &e) != 0)
        why = e.msg;
    else if (rec.tli != w.tli)
        why = "it was fetched for another timeline";
    else if (strcmp(rec.boot_id, boot) != 0)
        why = "it was fetched before the machine restarted";
    else if (stat(path, &st) != 0 || (uint64_t)st.st_size != rec.plain_size)
        why = "its size is not the object's";
    else if (rec.repo_index < 1 || rec.repo_index > repos->cfg->nrepos)
        why = "its record names an unknown repository";
    /* Still the object it was fetched from: the repository's trailer, one suffix read, made by
     * the fetcher over its open connection once it sees the segment wanted (NAME.ok holds the
     * record it checked), else here. */
    double tcheck = now_ms();
    const char *checker = "here";
    char ok_path[PATH_MAX], ok_text[256];
    if (!why && path_in(sp, name, ".ok", ok_path, sizeof(ok_path)) == 0) {
        while (access(ok_path, F_OK) != 0 && access(path, F_OK) == 0 && fetcher_alive(sp) &&
               now_ms() - tcheck < 10000.0)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        if (access(path, F_OK) != 0)
            why = "the fetcher found it changed in the repository";
        else if (read_small(ok_path, ok_text, sizeof(ok_text)) == 0 && strcmp(ok_text, text) == 0)
            checker = "by the fetcher";
    }
    if (!why && strcmp(checker, "here") == 0) {
        wv_repo *r = NULL;
        char key[256];
        wv_obj_info now;
        if (wf_repo(repos, rec.repo_index - 1, &r, &e) != 0 ||
            wv_repo_wal_key(name, key, sizeof(key), &e) != 0 ||
            wv_repo_read_info(r->st, key, &now, &e) != 0)
            why = e.code == WV_ENOTFOUND ? "the object is no longer in the repository" : e.msg;
        else if (now.plain_size != rec.plain_size || memcmp(now.sha256, rec.sha256, 32) != 0)
            why = "the repository's object is not the one it was fetched from";
    }
    tcheck = now_ms() - tcheck;
    if (why) {
        wv_log_info("not serving %s from the prefetch spool: %s; fetching it directly", name, why);
        remove_entry(sp, name);
        return WV_ENOTFOUND;
    }
    int rc = 0;
    if (rename(path, dest) != 0) {
        if (errno == EXDEV)
            rc = copy_to(path, dest, err);
        else
            rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\" to \"%s\"", path, dest);
    }
    remove_entry(sp, name);
    if (rc != 0)
        return rc;
    char size[24];
    wv_log_info("restored %s from the prefetch spool (%s, fetched from %s; waited %.0f ms, "
                "checked %s in %.1f ms)",
                name, wv_human_bytes(rec.plain_size, size, sizeof(size)),
                repos->cfg->repos[rec.repo_index - 1].name, waited, checker, tcheck);
    return 0;
}

void wf_spool_drop(const wf_spool *sp)
{
    wv_err e;
    wv_err_clear(&e);
    wf_spool_want(sp, "", &e);
    /* With no fetcher (the lock taken here), what a killed one left in flight goes too. */
    char lock_path[PATH_MAX];
    int lockfd = -1;
    if (path_in(sp, "lock", "", lock_path, sizeof(lock_path)) == 0)
        lockfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int alone = lockfd >= 0 && flock(lockfd, LOCK_EX | LOCK_NB) == 0;
    DIR *d = opendir(sp->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            const char *n = de->d_name;
            if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "lock") == 0 ||
                strcmp(n, "want") == 0 || strcmp(n, "info") == 0)
                continue;
            /* A fetch in flight is a running fetcher's (it removes what it finishes once want
             * is none). */
            if (!alone && (strstr(n, ".busy") || strstr(n, ".dl")))
                continue;
            unlinkat(dirfd(d), n, 0);
        }
        closedir(d);
    }
    if (lockfd >= 0)
        close(lockfd);
}
