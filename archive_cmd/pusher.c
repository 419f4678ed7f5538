/*
 * pusher.c - archive_async = on: the background pusher of a cluster and the foreground wal-push
 * that waits for it.
 *
 * The foreground call (PostgreSQL's archive_command, run in the data directory) hashes the file
 * it was given and looks for the pusher's record of it in the spool
 * (<spool_path>/<system id>/archive/done/NAME, see repo/spool.h). A record of the same content
 * is the answer (removed, then 0 or the recorded error); a record of other content (another
 * incarnation of the cluster) is removed and not trusted. Without a record it starts a pusher if
 * none runs and waits; past a deadline it pushes the file itself: correctness never depends on
 * the pusher.
 *
 * The pusher (double fork, setsid, every inherited descriptor closed, stdio on /dev/null) holds an
 * exclusive open-file-description lock on archive/pusher.lock for its life (a second pusher exits
 * at once; a foreground tests the lock without taking it), opens every repository once, and drains
 * pg_wal/archive_status/NAME.ready in the archiver's order with process_max pushes in flight,
 * each through wv_push_file_to, writing a record per file. It never touches archive_status. It
 * stops when idle, when no wal-push call has touched archive/called for as long (nobody waits
 * for what it would push), or when the data directory it was started for is replaced or belongs
 * to another system identifier. A kill -9 at any moment loses nothing: records are written
 * tmp+fsync+rename after the push is durable, and the next foreground call starts a new pusher.
 */
#include "push.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/units.h"
#include "pipeline/filter.h"
#include "repo/spool.h"

/* Tunables (hidden: environment only, for tests and benchmarks). */
#define PUSHER_IDLE_S 30.0 /* WALVAULT_PUSHER_IDLE_S: a pusher with nothing to do exits */
#define ASYNC_WAIT_S  60.0 /* WALVAULT_ASYNC_WAIT_S: the foreground then pushes by itself */
#define SCAN_MS       20   /* how often the pusher looks at archive_status */
#define ORPHAN_S      300  /* a record with no .ready file this old is removed */
#define REOPEN_S      5.0  /* a repository that failed to open is tried again this often */
#define AGAIN_S       5.0  /* a file still .ready this long after its record was consumed */

typedef struct cluster {
    uint64_t sysid;
    char pgdata[PATH_MAX];
    dev_t dev;
    ino_t ino;
    char archive[PATH_MAX + 64]; /* <spool>/<sysid>/archive */
    char done[PATH_MAX + 64];    /* .../archive/done */
    char lock[PATH_MAX + 64];    /* .../archive/pusher.lock */
    char called[PATH_MAX + 64];  /* .../archive/called: touched by every waiting wal-push */
    char status[PATH_MAX + 64];  /* <pgdata>/pg_wal/archive_status */
} cluster;

static double env_seconds(const char *name, double dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    double d = strtod(v, &end);
    return *end || d <= 0 ? dflt : d;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The system identifier: the first 8 bytes of global/pg_control, in the server's byte order. */
static int read_sysid(const char *pgdata, uint64_t *out, wv_err *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/global/pg_control", pgdata);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", path);
    uint8_t b[8];
    size_t got = 0;
    int rc = wv_read_full(fd, b, sizeof(b), &got, path, err);
    close(fd);
    if (rc != 0)
        return rc;
    if (got != sizeof(b))
        return wv_err_set(err, WV_EIO, "\"%s\" is truncated", path);
    memcpy(out, b, sizeof(*out));
    return 0;
}

static int mkdir_0700(const char *dir, wv_err *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return wv_err_errno(err, WV_EIO, errno, "could not create the spool directory \"%s\"", dir);
    return 0;
}

/* The cluster of the current directory (PostgreSQL runs archive_command in the data directory)
 * and its spool directories. */
static int cluster_init(const wv_config *cfg, cluster *cl, wv_err *err)
{
    memset(cl, 0, sizeof(*cl));
    if (!realpath(".", cl->pgdata))
        return wv_err_errno(err, WV_EIO, errno, "could not resolve the current directory");
    struct stat sb;
    if (stat(cl->pgdata, &sb) != 0)
        return wv_err_errno(err, WV_EIO, errno, "could not stat \"%s\"", cl->pgdata);
    cl->dev = sb.st_dev;
    cl->ino = sb.st_ino;
    int rc = read_sysid(cl->pgdata, &cl->sysid, err);
    if (rc != 0)
        return rc;
    char dir[PATH_MAX];
    if ((rc = wv_spool_cluster_dir(cfg, cl->sysid, dir, sizeof(dir), err)) != 0)
        return rc;
    snprintf(cl->archive, sizeof(cl->archive), "%s/archive", dir);
    snprintf(cl->done, sizeof(cl->done), "%s/archive/done", dir);
    snprintf(cl->lock, sizeof(cl->lock), "%s/archive/pusher.lock", dir);
    snprintf(cl->called, sizeof(cl->called), "%s/archive/called", dir);
    snprintf(cl->status, sizeof(cl->status), "%s/pg_wal/archive_status", cl->pgdata);
    if ((rc = mkdir_0700(cl->archive, err)) != 0)
        return rc;
    return mkdir_0700(cl->done, err);
}

static int hash_path(const char *path, uint8_t sha[32], uint64_t *size, wv_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wv_err_errno(err, errno == ENOENT ? WV_EUSAGE : WV_EIO, errno,
                            "could not open \"%s\"", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return wv_err_set(err, WV_EUSAGE, "\"%s\" is not a regular file", path);
    }
    wv_filter *sha_f = wv_sha256_filter_new(wv_filter_discard_new());
    int rc = wv_filter_pump_fd(sha_f, fd, path, err);
    if (rc == 0)
        wv_sha256_filter_digest(sha_f, sha);
    wv_filter_chain_free(sha_f);
    close(fd);
    *size = (uint64_t)sb.st_size;
    return rc;
}

/* A wal-push call is under way: the pusher keeps pushing ahead only while PostgreSQL calls. */
static void touch_called(const cluster *cl)
{
    int fd = open(cl->called, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        futimens(fd, NULL);
        close(fd);
    }
}

/* Seconds since a wal-push call last touched the file (large if never). */
static double since_called(const cluster *cl)
{
    struct stat sb;
    if (stat(cl->called, &sb) != 0)
        return 1e9;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (double)(now.tv_sec - sb.st_mtim.tv_sec) +
           (double)(now.tv_nsec - sb.st_mtim.tv_nsec) / 1e9;
}

/* ---- the lock ------------------------------------------------------------------------------- */

static struct flock whole_file(short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    return fl;
}

/* 1 if a pusher holds the lock, 0 if not (the lock is only tested, never taken). */
static int pusher_running(const cluster *cl)
{
    int fd = open(cl->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    struct flock fl = whole_file(F_WRLCK);
    int running = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);
    return running;
}

/* The data directory the running pusher recorded (second line of the lock file), or "". */
static void pusher_pgdata(const cluster *cl, char *out, size_t outlen)
{
    out[0] = '\0';
    FILE *f = fopen(cl->lock, "re");
    if (!f)
        return;
    char line[PATH_MAX + 2];
    if (fgets(line, sizeof(line), f) && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(out, outlen, "%.*s", (int)(outlen - 1), line);
    }
    fclose(f);
}

/* ---- the pusher ----------------------------------------------------------------------------- */

#define MAX_INFLIGHT 64
#define RECENT       1024 /* names recorded done, remembered: not pushed again */

typedef struct pusher {
    const wv_config *cfg;
    const cluster *cl;
    wv_repo *repos[WV_MAX_REPOS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char inflight[MAX_INFLIGHT][64];
    int ninflight;
    int first_ok; /* a push succeeded: every repository's cluster check is recorded */
    /* Files this pusher recorded as done. Between the foreground call consuming the record and
     * PostgreSQL renaming NAME.ready, the file still looks waiting: it is not pushed again,
     * unless it is still waiting AGAIN_S after the record went (PostgreSQL restarted before the
     * rename and asks again). gone: when the record was first seen consumed (0: not yet). */
    struct {
        char name[64];
        double gone;
    } recent[RECENT];
    int nrecent;
    double last_open;
} pusher;

typedef struct job {
    pusher *ps;
    char name[64];
} job;

static int is_inflight(pusher *ps, const char *name)
{
    for (int i = 0; i < ps->ninflight; i++)
        if (strcmp(ps->inflight[i], name) == 0)
            return 1;
    return 0;
}

/* Whether name, waiting without a record, is one this pusher recorded done a moment ago. */
static int is_recent(pusher *ps, const char *name, double now)
{
    int n = ps->nrecent < RECENT ? ps->nrecent : RECENT;
    for (int i = 0; i < n; i++) {
        if (strcmp(ps->recent[i].name, name) != 0)
            continue;
        if (ps->recent[i].gone == 0)
            ps->recent[i].gone = now;
        if (now - ps->recent[i].gone < AGAIN_S)
            return 1;
        ps->recent[i].name[0] = '\0'; /* asked again: push it again */
        return 0;
    }
    return 0;
}

static void *job_thread(void *arg)
{
    job *j = arg;
    pusher *ps = j->ps;
    char path[PATH_MAX + 128];
    snprintf(path, sizeof(path), "%.*s/pg_wal/%s", PATH_MAX - 1, ps->cl->pgdata, j->name);
    wv_spool_record rec;
    memset(&rec, 0, sizeof(rec));
    wv_push_result res;
    wv_err e;
    wv_err_clear(&e);
    wv_spool_file before, after;
    int have_before = wv_spool_file_of(path, &before, &e) == 0;
    int rc = wv_push_file_to(ps->cfg, ps->repos, path, &res, &e);
    int write = 1;
    if (rc == 0) {
        rec.ok = 1;
        memcpy(rec.sha256, res.sha256, sizeof(rec.sha256));
        rec.size = res.size;
        /* the file unchanged while it was read: its identity vouches for the content */
        wv_err ignored;
        rec.has_file = have_before && wv_spool_file_of(path, &after, &ignored) == 0 &&
                       wv_spool_file_equal(&before, &after);
        rec.file = before;
    } else {
        rec.err = e;
        wv_err ignored;
        wv_err_clear(&ignored);
        /* the file gone: PostgreSQL archived it otherwise and removed it; nobody waits */
        if (hash_path(path, rec.sha256, &rec.size, &ignored) != 0)
            write = 0;
        else
            wv_log_err(&e);
    }
    if (write) {
        wv_err we;
        wv_err_clear(&we);
        if (wv_spool_record_write(ps->cl->done, j->name, &rec, &we) != 0)
            wv_log_err(&we);
    }
    pthread_mutex_lock(&ps->mu);
    for (int i = 0; i < ps->ninflight; i++)
        if (strcmp(ps->inflight[i], j->name) == 0) {
            memmove(ps->inflight[i], ps->inflight[ps->ninflight - 1], sizeof(ps->inflight[i]));
            ps->ninflight--;
            break;
        }
    if (rc == 0) {
        ps->first_ok = 1;
        int k = ps->nrecent++ % RECENT;
        snprintf(ps->recent[k].name, sizeof(ps->recent[k].name), "%s", j->name);
        ps->recent[k].gone = 0;
    }
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    free(j);
    return NULL;
}

static void open_repos(pusher *ps)
{
    ps->last_open = wv_mono_s();
    for (int i = 0; i < ps->cfg->nrepos; i++) {
        if (ps->repos[i])
            continue;
        wv_err e;
        wv_err_clear(&e);
        if (wv_repo_open(&ps->cfg->repos[i], &ps->repos[i], &e) != 0) {
            ps->repos[i] = NULL;
            wv_log_err(&e);
        } else if (wv_repo_probe_noreplace(ps->repos[i], &e) != 0) {
            /* only a saving lost: every NOREPLACE put keeps its existence check */
            wv_log_debug("%s: %s", ps->cfg->repos[i].name, e.msg);
        }
    }
}

/* The data directory is still the one the pusher was started for. */
static int cluster_same(const cluster *cl)
{
    struct stat sb;
    uint64_t sysid = 0;
    wv_err e;
    wv_err_clear(&e);
    if (stat(cl->pgdata, &sb) != 0 || sb.st_dev != cl->dev || sb.st_ino != cl->ino ||
        read_sysid(cl->pgdata, &sysid, &e) != 0 || sysid != cl->sysid)
        return 0;
    return 1;
}

/* Records of files PostgreSQL no longer waits for (archived by a synchronous fallback). */
static void remove_orphans(const cluster *cl)
{
    DIR *d = opendir(cl->done);
    if (!d)
        return;
    struct dirent *de;
    time_t now = time(NULL);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char ready[PATH_MAX + 400], rec[PATH_MAX + 400];
        snprintf(ready, sizeof(ready), "%s/%s.ready", cl->status, de->d_name);
        snprintf(rec, sizeof(rec), "%s/%s", cl->done, de->d_name);
        struct stat sb;
        if (access(ready, F_OK) != 0 && stat(rec, &sb) == 0 && now - sb.st_mtime > ORPHAN_S)
            unlink(rec);
    }
    closedir(d);
}

static int pusher_loop(pusher *ps)
{
    const cluster *cl = ps->cl;
    double idle = env_seconds("WALVAULT_PUSHER_IDLE_S", PUSHER_IDLE_S);
    double last_work = wv_mono_s(), last_orphans = 0;
    int max = ps->cfg->process_max < MAX_INFLIGHT ? ps->cfg->process_max : MAX_INFLIGHT;
    for (;;) {
        if (!cluster_same(cl)) {
            wv_log_warn("the data directory \"%s\" is not the one of system %016" PRIX64
                        " any more: the background pusher stops",
                        cl->pgdata, cl->sysid);
            return 0;
        }
        char **names = NULL;
        size_t n = 0;
        wv_err e;
        wv_err_clear(&e);
        if (wv_spool_list_ready(cl->status, &names, &n, &e) != 0) {
            wv_log_err(&e);
            return 1;
        }
        int pending = 0;
        pthread_mutex_lock(&ps->mu);
        for (size_t i = 0; i < n; i++) {
            char rec[PATH_MAX + 400];
            snprintf(rec, sizeof(rec), "%s/%s", cl->done, names[i]);
            if (is_inflight(ps, names[i])) {
                pending = 1;
                continue;
            }
            if (access(rec, F_OK) == 0 || is_recent(ps, names[i], wv_mono_s()))
                continue;
            pending = 1;
            int limit = ps->first_ok ? max : 1;
            if (ps->ninflight >= limit || strlen(names[i]) >= sizeof(ps->inflight[0]))
                continue;
            job *j = wv_xcalloc(1, sizeof(*j));
            j->ps = ps;
            snprintf(j->name, sizeof(j->name), "%s", names[i]);
            pthread_t th;
            pthread_attr_t at;
            pthread_attr_init(&at);
            pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
            snprintf(ps->inflight[ps->ninflight++], sizeof(ps->inflight[0]), "%s", names[i]);
            if (pthread_create(&th, &at, job_thread, j) != 0) {
                ps->ninflight--;
                free(j);
            }
            pthread_attr_destroy(&at);
        }
        int busy = ps->ninflight;
        pthread_mutex_unlock(&ps->mu);
        wv_spool_names_free(names);
        double now = wv_mono_s();
        if (pending || busy)
            last_work = now;
        else if (now - last_work > idle)
            return 0;
        if (since_called(cl) > idle) {
            /* files wait, but wal-push is no longer called (archive_command changed, the
             * archiver stopped): nobody waits for what would be pushed */
            wv_log_info("no wal-push call for %.0f s: the background pusher stops", idle);
            return 0;
        }
        if (!busy && now - ps->last_open > REOPEN_S)
            open_repos(ps);
        if (now - last_orphans > 10) {
            remove_orphans(cl);
            last_orphans = now;
        }
        /* wake on a finished job, else look again after SCAN_MS */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SCAN_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&ps->mu);
        if (ps->ninflight == busy)
            pthread_cond_timedwait(&ps->cv, &ps->mu, &ts);
        pthread_mutex_unlock(&ps->mu);
    }
}

/* The pusher's life once it is a daemon. Returns its exit status. */
static int pusher_main(const wv_config *cfg, const cluster *cl)
{
    int fd = open(cl->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return 1;
    struct flock fl = whole_file(F_WRLCK);
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        close(fd); /* another pusher runs for this cluster */
        return 0;
    }
    char info[PATH_MAX + 64];
    int len = snprintf(info, sizeof(info), "%ld\n%s\n%016" PRIX64 "\n", (long)getpid(), cl->pgdata,
                       cl->sysid);
    wv_err e;
    wv_err_clear(&e);
    if (ftruncate(fd, 0) != 0 || wv_write_all(fd, info, (size_t)len, cl->lock, &e) != 0)
        wv_log_warn("could not record the pusher in \"%s\"", cl->lock);
    wv_log_info("background pusher %ld started for system %016" PRIX64 " (\"%s\")", (long)getpid(),
                cl->sysid, cl->pgdata);

    pusher *ps = wv_xcalloc(1, sizeof(*ps));
    ps->cfg = cfg;
    ps->cl = cl;
    pthread_mutex_init(&ps->mu, NULL);
    pthread_cond_init(&ps->cv, NULL);
    open_repos(ps);
    int rc = pusher_loop(ps);
    pthread_mutex_lock(&ps->mu);
    while (ps->ninflight > 0)
        pthread_cond_wait(&ps->cv, &ps->mu);
    pthread_mutex_unlock(&ps->mu);
    for (int i = 0; i < cfg->nrepos; i++)
        wv_repo_close(ps->repos[i]);
    wv_log_info("background pusher %ld exits", (long)getpid());
    free(ps);
    close(fd); /* releases the lock */
    return rc;
}

/* Start a pusher: double fork and setsid, so that neither PostgreSQL's archiver nor its pipes
 * wait for it. Returns 0 once the intermediate child is reaped. */
static int spawn_pusher(const wv_config *cfg, const cluster *cl, wv_err *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not start the background pusher");
    if (pid == 0) {
        if (setsid() < 0)
            _exit(1);
        pid_t p2 = fork();
        if (p2 != 0)
            _exit(p2 < 0 ? 1 : 0);
        int nul = open("/dev/null", O_RDWR);
        if (nul < 0)
            _exit(1);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        if (nul > 2)
            close(nul);
        close_range(3, ~0U, 0);
        signal(SIGPIPE, SIG_IGN);
        _exit(pusher_main(cfg, cl));
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return wv_err_set(err, WV_EIO, "could not start the background pusher");
    return 0;
}

/* ---- the foreground ------------------------------------------------------------------------- */

/* path is a file of this data directory's pg_wal that PostgreSQL has marked ready. */
static int waits_in_pg_wal(const cluster *cl, const char *path, const char *name)
{
    char dir[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 16], wantreal[PATH_MAX];
    size_t dlen = (size_t)(name - path);
    if (dlen >= sizeof(dir))
        return 0;
    if (dlen == 0)
        snprintf(dir, sizeof(dir), ".");
    else {
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
    }
    snprintf(want, sizeof(want), "%s/pg_wal", cl->pgdata);
    if (!realpath(dir, real) || !realpath(want, wantreal))
        return 0;
    if (strcmp(real, wantreal) != 0)
        return 0;
    char ready[PATH_MAX + 400];
    snprintf(ready, sizeof(ready), "%s/%s.ready", cl->status, name);
    return access(ready, F_OK) == 0;
}

int wv_push_async(const wv_config *cfg, const char *path, wv_err *err)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    cluster cl;
    wv_err e;
    wv_err_clear(&e);
    if (cluster_init(cfg, &cl, &e) != 0) {
        wv_log_warn("archive_async: %s; pushing %s synchronously", e.msg, name);
        return wv_push_file(cfg, path, err);
    }
    if (!waits_in_pg_wal(&cl, path, name))
        return wv_push_file(cfg, path, err);
    /* The file's identity now; its SHA-256 only when a record's identity differs. */
    wv_spool_file self;
    struct stat psb;
    if (wv_spool_file_of(path, &self, &e) != 0 || stat(path, &psb) != 0)
        return wv_push_file(cfg, path, err); /* it reports the file's own problem */
    uint8_t sha[32];
    uint64_t size = (uint64_t)psb.st_size;
    int hashed = 0;

    touch_called(&cl);
    double t0 = wv_mono_s(), last_spawn = -10, last_touch = t0;
    double deadline = t0 + env_seconds("WALVAULT_ASYNC_WAIT_S", ASYNC_WAIT_S);
    struct timespec started;
    clock_gettime(CLOCK_REALTIME, &started);
    int spawned = 0;
    long nap = 2;
    for (;;) {
        wv_spool_record rec;
        int r = wv_spool_record_read(cl.done, name, &rec, &e);
        char recpath[PATH_MAX + 400];
        snprintf(recpath, sizeof(recpath), "%s/%s", cl.done, name);
        int same = 0;
        if (r == 0 && rec.size == size) {
            if (rec.has_file && wv_spool_file_equal(&rec.file, &self))
                same = 1;
            else {
                if (!hashed) {
                    uint64_t hsize = 0;
                    if (hash_path(path, sha, &hsize, &e) != 0)
                        return wv_push_file(cfg, path, err);
                    hashed = 1;
                }
                same = memcmp(rec.sha256, sha, sizeof(sha)) == 0;
            }
        }
        if (same) {
            struct stat sb;
            int fresh =
                stat(recpath, &sb) == 0 &&
                (sb.st_mtim.tv_sec > started.tv_sec ||
                 (sb.st_mtim.tv_sec == started.tv_sec && sb.st_mtim.tv_nsec >= started.tv_nsec));
            unlink(recpath);
            if (rec.ok) {
                wv_log_debug("%s archived by the background pusher", name);
                return 0;
            }
            if (fresh) {
                *err = rec.err;
                return err->code;
            }
            /* an earlier attempt's failure (pushed ahead): the pusher tries again */
            continue;
        }
        if (r == 0) {
            wv_log_warn("%s: the spool record is of other content (%" PRIu64
                        " bytes): not trusted, removed",
                        name, rec.size);
            unlink(recpath);
        } else if (r == WV_ECORRUPT) {
            wv_log_warn("%s", e.msg);
            unlink(recpath);
        }
        if (wv_mono_s() > deadline)
            break;
        if (wv_mono_s() - last_touch > 0.5) {
            touch_called(&cl);
            last_touch = wv_mono_s();
        }
        if (!pusher_running(&cl)) {
            if (wv_mono_s() - last_spawn < 1.0)
                goto nap;
            if (spawned >= 3)
                break;
            spawned++;
            last_spawn = wv_mono_s();
            if (spawn_pusher(cfg, &cl, &e) != 0) {
                wv_log_warn("%s", e.msg);
                break;
            }
        } else {
            char other[PATH_MAX];
            pusher_pgdata(&cl, other, sizeof(other));
            if (other[0] && strcmp(other, cl.pgdata) != 0)
                break; /* the pusher of another data directory with this system id */
        }
    nap:
        sleep_ms(nap);
        if (nap < 10)
            nap *= 2;
    }
    wv_log_warn("the background pusher did not push %s within %.0f s: pushing it now", name,
                wv_mono_s() - t0);
    return wv_push_file(cfg, path, err);
}
