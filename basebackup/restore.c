/*
 * restore.c - basebackup restore: put a backup back and configure PostgreSQL to recover to a
 * target.
 *
 *   basebackup restore --pgdata DIR [--to TIME | --lsn LSN | --xid XID | --name NAME | --immediate]
 *                      [--backup ID] [--timeline latest|current|N] [--target-action promote|pause|
 *                      shutdown] [--delta] [--tablespace-map OLD=NEW] [--repo N] [--dry-run]
 *
 * Order of work: every check (arguments, PGDATA empty and no server running, the plan: backup,
 * timeline and whether the archive reaches the target) happens before the first byte is written.
 * Files are fetched in parallel, each verified against the manifest's SHA-256, without an fsync
 * each; one syncfs per file system at the end. Recovery settings go into postgresql.auto.conf,
 * then recovery.signal is created last.
 */
#include <dirent.h>
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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "repo/walarchive.h"
#include "repo/backupset.h"
#include "core/buf.h"
#include "repo/bundle.h"
#include "core/cli.h"
#include "commands.h"
#include "core/config.h"
#include "core/fileio.h"
#include "pipeline/filter.h"
#include "core/log.h"
#include "repo/manifest.h"
#include "core/parallel.h"
#include "repo/recovery.h"
#include "repo/repo.h"
#include "core/timeparse.h"
#include "core/units.h"
#include "pg/walname.h"

#define MAX_TS_MAP 32

typedef struct ts_map {
    char *old_path, *new_path;
} ts_map;

typedef struct tablespace {
    uint32_t oid;
    char *location; /* after --tablespace-map */
} tablespace;

typedef struct restore_opts {
    const char *pgdata;
    wv_target target;
    const char *backup_id;
    uint32_t timeline;
    const char *action;
    int delta;
    int dry_run;
    int repo;
    ts_map maps[MAX_TS_MAP];
    int nmaps;
    const char *config_path;
} restore_opts;

static const char usage[] =
    "usage: basebackup [-c FILE] restore --pgdata DIR [TARGET] [OPTIONS]\n"
    "\n"
    "Restore a backup into DIR and configure PostgreSQL to recover to TARGET (default: the end\n"
    "of the archive). Nothing is written unless the archive reaches the target.\n"
    "\n"
    "TARGET (at most one):\n"
    "  --to TIME          \"30 minutes ago\", \"now\", \"2026-11-25 10:00:00\" (local time),\n"
    "                     \"2026-11-25 10:00:00+02\", \"2026-11-25T10:00:00Z\"\n"
    "  --lsn LSN          e.g. 0/3000028\n"
    "  --xid XID          a transaction id\n"
    "  --name NAME        a restore point made with pg_create_restore_point()\n"
    "  --immediate        stop as soon as the backup is consistent\n"
    "OPTIONS:\n"
    "  --backup ID                 restore this backup (default: the newest before the target)\n"
    "  --timeline latest|current|N recovery_target_timeline (default: the timeline holding the\n"
    "                              target)\n"
    "  --target-action promote|pause|shutdown   (default promote)\n"
    "  --delta                     reuse files of a non-empty DIR whose checksum matches\n"
    "  --tablespace-map OLD=NEW    restore the tablespace at OLD into NEW (repeatable)\n"
    "  --repo N                    use [repoN] only (default: the first that reaches the target)\n"
    "  --dry-run                   show the plan, write nothing\n";

/* ---- argument parsing ------------------------------------------------------------------------ */

/* One of --to, --lsn, --xid, --name, --immediate (c is its getopt code). */
static int parse_target(int c, const char *arg, wv_target *t, wv_err *err)
{
    char *end;
    switch (c) {
    case 't': {
        int rc = wv_time_parse(arg, (int64_t)time(NULL), &t->time_us, err);
        if (rc != 0)
            return rc;
        t->kind = WV_TARGET_TIME;
        break;
    }
    case 'L':
        if (wv_lsn_parse(arg, &t->lsn) != 0)
            return wv_err_set(err, WV_EUSAGE, "bad --lsn \"%s\": expected an LSN like 0/3000028",
                              arg);
        t->kind = WV_TARGET_LSN;
        break;
    case 'x': {
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || v < 3 || v > UINT32_MAX || arg[0] == '-')
            return wv_err_set(err, WV_EUSAGE,
                              "bad --xid \"%s\": expected a transaction id (a number >= 3)", arg);
        t->xid = (uint32_t)v;
        t->kind = WV_TARGET_XID;
        break;
    }
    case 'n':
        if (!arg[0] || strlen(arg) >= 64)
            return wv_err_set(err, WV_EUSAGE,
                              "bad --name \"%s\": a restore point name has 1 to 63 bytes", arg);
        t->name = arg;
        t->kind = WV_TARGET_NAME;
        break;
    case 'i':
        t->kind = WV_TARGET_IMMEDIATE;
        break;
    }
    return 0;
}

/* --timeline latest|current|N. */
static int parse_timeline(const char *arg, uint32_t *timeline, wv_err *err)
{
    char *end;
    if (strcmp(arg, "latest") == 0) {
        *timeline = WV_TLI_LATEST;
    } else if (strcmp(arg, "current") == 0) {
        *timeline = WV_TLI_CURRENT;
    } else {
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || v < 1 || v >= WV_TLI_CURRENT)
            return wv_err_set(err, WV_EUSAGE,
                              "bad --timeline \"%s\": expected latest, current or a "
                              "timeline number",
                              arg);
        *timeline = (uint32_t)v;
    }
    return 0;
}

static int parse_args(int argc, char **argv, restore_opts *o, wv_err *err)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pgdata", required_argument, NULL, 'D'},
        {"to", required_argument, NULL, 't'},
        {"lsn", required_argument, NULL, 'L'},
        {"xid", required_argument, NULL, 'x'},
        {"name", required_argument, NULL, 'n'},
        {"immediate", no_argument, NULL, 'i'},
        {"backup", required_argument, NULL, 'b'},
        {"timeline", required_argument, NULL, 'T'},
        {"target-action", required_argument, NULL, 'a'},
        {"delta", no_argument, NULL, 'd'},
        {"tablespace-map", required_argument, NULL, 'm'},
        {"repo", required_argument, NULL, 'r'},
        {"dry-run", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ntargets = 0, c;
    memset(o, 0, sizeof(*o));
    o->action = "promote";
    o->timeline = WV_TLI_AUTO;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:D:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'D':
            o->pgdata = optarg;
            break;
        case 't':
        case 'L':
        case 'x':
        case 'n':
        case 'i': {
            int rc = parse_target(c, optarg, &o->target, err);
            if (rc != 0)
                return rc;
            ntargets++;
            break;
        }
        case 'b':
            if (!wv_manifest_id_valid(optarg))
                return wv_err_set(err, WV_EUSAGE, "bad --backup \"%s\": not a backup id", optarg);
            o->backup_id = optarg;
            break;
        case 'T': {
            int rc = parse_timeline(optarg, &o->timeline, err);
            if (rc != 0)
                return rc;
            break;
        }
        case 'a':
            if (strcmp(optarg, "promote") && strcmp(optarg, "pause") && strcmp(optarg, "shutdown"))
                return wv_err_set(err, WV_EUSAGE,
                                  "bad --target-action \"%s\": expected promote, pause or "
                                  "shutdown",
                                  optarg);
            o->action = optarg;
            break;
        case 'd':
            o->delta = 1;
            break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1] || optarg[0] != '/' || eq[1] != '/' ||
                o->nmaps >= MAX_TS_MAP)
                return wv_err_set(
                    err, WV_EUSAGE,
                    "bad --tablespace-map \"%s\": expected /old/location=/new/location", optarg);
            o->maps[o->nmaps].old_path = wv_xstrndup(optarg, (size_t)(eq - optarg));
            o->maps[o->nmaps].new_path = wv_xstrdup(eq + 1);
            o->nmaps++;
            break;
        }
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &o->repo, err) < 0)
                return err->code;
            break;
        case 'N':
            o->dry_run = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            return wv_cli_bad_option("restore", argv, err);
        }
    }
    if (optind < argc)
        return wv_err_set(err, WV_EUSAGE, "unexpected argument \"%s\"", argv[optind]);
    if (!o->pgdata)
        return wv_err_set(err, WV_EUSAGE,
                          "--pgdata DIR is required: the data directory to "
                          "restore into");
    if (ntargets > 1)
        return wv_err_set(err, WV_EUSAGE,
                          "give at most one of --to, --lsn, --xid, --name and "
                          "--immediate");
    return 0;
}

/* ---- checks before writing ------------------------------------------------------------------- */

static int dir_state(const char *dir, int *exists, int *empty, wv_err *err)
{
    DIR *d = opendir(dir);
    *exists = 0;
    *empty = 1;
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", dir);
    }
    *exists = 1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            *empty = 0;
            break;
        }
    closedir(d);
    return 0;
}

static int check_no_server(const char *pgdata, wv_err *err)
{
    char *pidfile = wv_xasprintf("%s/postmaster.pid", pgdata);
    FILE *f = fopen(pidfile, "r");
    int rc = 0;
    if (f) {
        long pid = 0;
        if (fscanf(f, "%ld", &pid) == 1 && pid > 0 &&
            (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
            wv_err_set(err, WV_EREFUSED,
                       "a PostgreSQL server (pid %ld) is running on \"%s\": refusing to restore "
                       "over it",
                       pid, pgdata);
            rc = wv_err_hint(err, "stop it first (pg_ctl -D %s stop); nothing was written", pgdata);
        }
        fclose(f);
    }
    free(pidfile);
    return rc;
}

static char *absolute(const char *p)
{
    if (p[0] == '/')
        return wv_xstrdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return wv_xstrdup(p);
    return wv_xasprintf("%s/%s", cwd, p);
}

/* ---- the manifest passes --------------------------------------------------------------------- */

typedef struct restore_ctx {
    const restore_opts *o;
    wv_storage *st;
    const wv_backup *b;
    char *pgdata;
    tablespace ts[256];
    int nts;
    int maps_used[MAX_TS_MAP];
    wv_buf ts_names; /* the backup's tablespace locations, for messages */
    wv_parallel *par;
    uint64_t files, bytes, reused;
    wv_bundle_set bundles; /* files stored in bundles: restored a bundle at a time */
    /* delta: every path the backup has */
    char **keep;
    size_t nkeep, capkeep;
    double t0;
} restore_ctx;

static const char *ts_location(restore_ctx *c, uint32_t oid)
{
    for (int i = 0; i < c->nts; i++)
        if (c->ts[i].oid == oid)
            return c->ts[i].location;
    return NULL;
}

/* Map a manifest path to a local path (new string), or NULL if its tablespace is unknown. */
static char *local_path(restore_ctx *c, const char *p)
{
    if (strcmp(p, "pgdata") == 0)
        return wv_xstrdup(c->pgdata);
    if (strncmp(p, "pgdata/", 7) == 0)
        return wv_xasprintf("%s/%s", c->pgdata, p + 7);
    if (strncmp(p, "tblspc/", 7) == 0) {
        char *end;
        unsigned long oid = strtoul(p + 7, &end, 10);
        const char *loc = ts_location(c, (uint32_t)oid);
        if (!loc)
            return NULL;
        return *end == '/' ? wv_xasprintf("%s/%s", loc, end + 1) : wv_xstrdup(loc);
    }
    return NULL;
}

static void keep_path(restore_ctx *c, const char *path)
{
    if (!c->o->delta)
        return;
    if (c->nkeep == c->capkeep) {
        c->capkeep = c->capkeep ? 2 * c->capkeep : 256;
        c->keep = wv_xrealloc(c->keep, c->capkeep * sizeof(char *));
    }
    c->keep[c->nkeep++] = wv_xstrdup(path);
}

static int pass_tablespaces(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    if (e->type != WV_MANIFEST_TABLESPACE)
        return 0;
    if (c->nts >= (int)(sizeof(c->ts) / sizeof(c->ts[0])))
        return wv_err_set(err, WV_EREFUSED, "too many tablespaces");
    const char *loc = e->target;
    for (int i = 0; i < c->o->nmaps; i++)
        if (strcmp(c->o->maps[i].old_path, e->target) == 0) {
            loc = c->o->maps[i].new_path;
            c->maps_used[i] = 1;
        }
    wv_buf_printf(&c->ts_names, "%s\"%s\"", c->ts_names.len ? ", " : "", e->target);
    c->ts[c->nts].oid = e->oid;
    c->ts[c->nts].location = wv_xstrdup(loc);
    c->nts++;
    return 0;
}

static int pass_dirs(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    if (e->type != WV_MANIFEST_DIR && e->type != WV_MANIFEST_SYMLINK)
        return 0;
    char *lp = local_path(c, e->path);
    int rc = 0;
    if (!lp)
        return wv_err_set(err, WV_ECORRUPT, "manifest entry \"%s\" names an unknown tablespace",
                          e->path);
    keep_path(c, lp);
    if (e->type == WV_MANIFEST_DIR) {
        rc = wv_mkdir_p(lp, err);
        if (rc == 0 && chmod(lp, e->mode & 07777) != 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not chmod \"%s\"", lp);
    } else {
        /* pg_tblspc/<oid> -> the tablespace's (possibly remapped) location. */
        const char *target = e->target;
        const char *slash = strrchr(e->path, '/');
        if (strncmp(e->path, "pgdata/pg_tblspc/", 17) == 0 && slash) {
            const char *loc = ts_location(c, (uint32_t)strtoul(slash + 1, NULL, 10));
            if (loc)
                target = loc;
        }
        char *parent = wv_dirname_dup(lp);
        rc = wv_mkdir_p(parent, err);
        free(parent);
        if (rc == 0) {
            unlink(lp);
            if (symlink(target, lp) != 0)
                rc = wv_err_errno(err, WV_EIO, errno, "could not create symlink \"%s\"", lp);
        }
    }
    free(lp);
    return rc;
}

typedef struct file_job {
    restore_ctx *c;
    char *key;
    int64_t offset, length; /* the object's range in key (a bundle), or 0, -1 */
    char *dest;
    uint8_t sha256[32];
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    int reused;
} file_job;

/* Does an existing file already hold this content? (delta) */
static int same_content(const char *path, uint64_t size, const uint8_t sha[32])
{
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    wv_filter *h = wv_sha256_filter_new(wv_filter_discard_new());
    wv_err e;
    uint8_t got[32];
    int ok = wv_filter_pump_fd(h, fd, path, &e) == 0;
    if (ok) {
        wv_sha256_filter_digest(h, got);
        ok = memcmp(got, sha, 32) == 0;
    }
    wv_filter_chain_free(h);
    close(fd);
    return ok;
}

/* Mode and modification time of a restored file. */
static int finish_file(const char *dest, uint32_t mode, int64_t mtime, wv_err *err)
{
    if (chmod(dest, mode & 07777) != 0)
        return wv_err_errno(err, WV_EIO, errno, "could not chmod \"%s\"", dest);
    struct timeval tv[2] = {{.tv_sec = (time_t)mtime}, {.tv_sec = (time_t)mtime}};
    utimes(dest, tv);
    return 0;
}

static int make_parent(const char *path, wv_err *err)
{
    char *parent = wv_dirname_dup(path);
    int rc = wv_mkdir_p(parent, err);
    free(parent);
    return rc;
}

static int file_job_run(void *arg, wv_err *err)
{
    file_job *j = arg;
    wv_obj_info info;
    int rc;
    if (j->c->o->delta && same_content(j->dest, j->size, j->sha256)) {
        j->reused = 1;
        return 0;
    }
    rc = make_parent(j->dest, err);
    if (rc == 0)
        rc = wv_repo_get_file_range(j->c->st, j->key, j->offset, j->length, j->dest, WV_GET_NOSYNC,
                                    j->size, &info, err);
    if (rc != 0)
        return rc;
    if (memcmp(info.sha256, j->sha256, 32) != 0 || info.plain_size != j->size) {
        unlink(j->dest);
        return wv_err_set(err, WV_ECORRUPT,
                          "%s: \"%s\" does not match the backup manifest (size or SHA-256)",
                          wv_storage_name(j->c->st), j->key);
    }
    return finish_file(j->dest, j->mode, j->mtime, err);
}

/* ---- bundles: one read of the whole object, every file in it written and verified ----------- */

typedef struct bundle_rjob {
    restore_ctx *c;
    wv_bundle *b;
    uint64_t files, bytes, reused;
} bundle_rjob;

typedef struct member_fill {
    wv_source *obj;
    const char *bundle_key;
    const wv_bundle_member *m;
} member_fill;

static int fill_member(void *arg, wv_filter *dest, wv_err *err)
{
    member_fill *f = arg;
    return wv_bundle_check_object(f->obj, f->bundle_key, f->m, dest, err);
}

static int restore_member(void *arg, const wv_bundle_member *m, wv_source *obj, wv_err *err)
{
    bundle_rjob *j = arg;
    restore_ctx *c = j->c;
    char *dest = local_path(c, m->path);
    int rc = 0;
    if (!dest)
        return wv_err_set(err, WV_ECORRUPT, "manifest entry \"%s\" names an unknown tablespace",
                          m->path);
    if (c->o->delta && same_content(dest, m->size, m->sha256)) {
        j->reused++;
    } else {
        member_fill f = {obj, j->b->key, m};
        rc = make_parent(dest, err);
        if (rc == 0 && (rc = wv_repo_write_file(dest, WV_GET_NOSYNC, fill_member, &f, err)) < 0)
            wv_err_context_at(err, wv_storage_name(c->st), j->b->key, " at offset %" PRIu64 " (%s)",
                              m->offset, m->path);
        if (rc == 0)
            rc = finish_file(dest, m->mode, m->mtime, err);
    }
    if (rc == 0) {
        j->files++;
        j->bytes += m->size;
    }
    free(dest);
    return rc;
}

static int bundle_job_run(void *arg, wv_err *err)
{
    bundle_rjob *j = arg;
    wv_source *src = NULL;
    int rc = wv_storage_get_open(j->c->st, j->b->key, 0, -1, &src, err);
    if (rc == 0) {
        rc = wv_bundle_each(src, j->b, restore_member, j, err);
        if (rc < 0)
            wv_err_context(err, wv_storage_name(j->c->st), j->b->key);
    }
    wv_source_close(src);
    return rc;
}

static void bundle_job_done(void *arg, int rc, const wv_err *err)
{
    bundle_rjob *j = arg;
    (void)err;
    if (rc == 0) {
        j->c->files += j->files;
        j->c->bytes += j->bytes;
        j->c->reused += j->reused;
    }
    wv_bundle_free(j->b);
    free(j);
}

static int submit_bundles(restore_ctx *c, wv_err *err)
{
    int rc = 0;
    wv_bundle_set_sort(&c->bundles);
    for (size_t i = 0; i < c->bundles.n && rc == 0; i++) {
        bundle_rjob *j = wv_xcalloc(1, sizeof(*j));
        j->c = c;
        j->b = wv_bundle_set_take(&c->bundles, i);
        if ((rc = wv_parallel_submit(c->par, bundle_job_run, bundle_job_done, j, err)) < 0) {
            wv_bundle_free(j->b);
            free(j);
        }
    }
    wv_bundle_set_free(&c->bundles);
    return rc;
}

static void file_job_done(void *arg, int rc, const wv_err *err)
{
    file_job *j = arg;
    if (rc == 0) {
        j->c->files++;
        j->c->bytes += j->size;
        j->c->reused += j->reused;
    }
    free(j->key);
    free(j->dest);
    free(j);
}

static int pass_files(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    if (e->type != WV_MANIFEST_FILE)
        return 0;
    char *lp = local_path(c, e->path);
    if (!lp)
        return wv_err_set(err, WV_ECORRUPT, "manifest entry \"%s\" names an unknown tablespace",
                          e->path);
    keep_path(c, lp);
    if (e->bundle) {
        free(lp);
        wv_bundle_set_add(&c->bundles, c->b->h.id, e);
        return 0;
    }
    file_job *j = wv_xcalloc(1, sizeof(*j));
    j->c = c;
    char key[300];
    wv_manifest_file_object(c->b->h.id, e, key, sizeof(key), &j->offset, &j->length);
    j->key = wv_xstrdup(key);
    j->dest = lp;
    memcpy(j->sha256, e->sha256, 32);
    j->size = e->size;
    j->mode = e->mode;
    j->mtime = e->mtime;
    return wv_parallel_submit(c->par, file_job_run, file_job_done, j, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* delta: remove what the backup does not have. */
static int prune(restore_ctx *c, const char *dir, wv_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", dir);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = wv_xasprintf("%s/%s", dir, de->d_name);
        int known = bsearch(&p, c->keep, c->nkeep, sizeof(char *), cmp_str) != NULL;
        struct stat sb;
        if (lstat(p, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                rc = prune(c, p, err);
                if (rc == 0 && !known && rmdir(p) != 0)
                    rc = wv_err_errno(err, WV_EIO, errno, "could not remove \"%s\"", p);
            } else if (!known && unlink(p) != 0) {
                rc = wv_err_errno(err, WV_EIO, errno, "could not remove \"%s\"", p);
            }
        }
        free(p);
    }
    closedir(d);
    return rc;
}

/* ---- recovery settings ----------------------------------------------------------------------- */

static int write_file_durably(const char *path, const char *text, wv_err *err)
{
    char *tmp = wv_temp_path_for(path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc;
    if (fd < 0) {
        rc = wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", tmp);
        free(tmp);
        return rc;
    }
    rc = wv_write_all(fd, text, strlen(text), tmp, err);
    if (rc == 0)
        rc = wv_fsync_fd(fd, tmp, err);
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename \"%s\"", tmp);
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc == 0 ? wv_fsync_parent(path, err) : rc;
}

static void conf_quote(wv_buf *b, const char *s)
{
    wv_buf_append_str(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            wv_buf_append_str(b, "''");
        else if (*s == '\\')
            wv_buf_append_str(b, "\\\\"); /* the configuration file parser unescapes backslashes */
        else
            wv_buf_append(b, s, 1);
    }
    wv_buf_append_str(b, "'");
}

/* A word of restore_command, which PostgreSQL expands (%f, %p, %%) and runs through /bin/sh: as is
 * when plain, else single-quoted for the shell with each % doubled. */
static void shell_word(wv_buf *b, const char *s)
{
    if (s[0] &&
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._+,:@=-") ==
            strlen(s)) {
        wv_buf_append_str(b, s);
        return;
    }
    wv_buf_append_str(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            wv_buf_append_str(b, "'\\''");
        else if (*s == '%')
            wv_buf_append_str(b, "%%"); /* PostgreSQL's escape in restore_command */
        else
            wv_buf_append(b, s, 1);
    }
    wv_buf_append_str(b, "'");
}

static int is_recovery_line(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    return strncmp(line, "restore_command", 15) == 0 || strncmp(line, "recovery_target", 15) == 0;
}

/* The recovery settings restore writes: restore_command, the target, the timeline. */
static void recovery_settings(const restore_opts *o, const wv_plan *plan, const char *fetch_bin,
                              const char *conf, wv_buf *out)
{
    char now[WV_TIME_FORMAT_LEN];
    wv_time_format((int64_t)time(NULL) * 1000000, now, sizeof(now));
    wv_buf_printf(out, "# Recovery settings written by walvault basebackup restore at %s\n", now);
    wv_buf_append_str(out, "restore_command = ");
    wv_buf cmd = WV_BUF_INIT;
    shell_word(&cmd, fetch_bin);
    wv_buf_append_str(&cmd, " -c ");
    shell_word(&cmd, conf);
    wv_buf_append_str(&cmd, " %f %p");
    conf_quote(out, wv_buf_cstr(&cmd));
    wv_buf_free(&cmd);
    wv_buf_append_str(out, "\n");
    const wv_target *t = &o->target;
    char v[WV_TIME_FORMAT_LEN];
    switch (t->kind) {
    case WV_TARGET_TIME:
        wv_time_format(t->time_us, v, sizeof(v));
        wv_buf_append_str(out, "recovery_target_time = ");
        conf_quote(out, v);
        wv_buf_append_str(out, "\n");
        break;
    case WV_TARGET_LSN:
        wv_lsn_format(t->lsn, v);
        wv_buf_append_str(out, "recovery_target_lsn = ");
        conf_quote(out, v);
        wv_buf_append_str(out, "\n");
        break;
    case WV_TARGET_XID:
        wv_buf_printf(out, "recovery_target_xid = '%" PRIu32 "'\n", t->xid);
        break;
    case WV_TARGET_NAME:
        wv_buf_append_str(out, "recovery_target_name = ");
        conf_quote(out, t->name);
        wv_buf_append_str(out, "\n");
        break;
    case WV_TARGET_IMMEDIATE:
        wv_buf_append_str(out, "recovery_target = 'immediate'\n");
        break;
    case WV_TARGET_LATEST:
        break;
    }
    if (t->kind != WV_TARGET_LATEST)
        wv_buf_printf(out, "recovery_target_action = '%s'\n", o->action);
    wv_buf_printf(out, "recovery_target_timeline = '%" PRIu32 "'\n", plan->tli);
}

/* Signals: standby.signal (a backup of a standby) removed, recovery.signal created last. */
static int write_signals(const restore_ctx *c, wv_err *err)
{
    char *standby = wv_xasprintf("%s/standby.signal", c->pgdata);
    if (unlink(standby) == 0)
        wv_log_warn("removed standby.signal from the restored data directory (the backup was "
                    "taken on a standby)");
    free(standby);
    char *sig = wv_xasprintf("%s/recovery.signal", c->pgdata);
    int rc = write_file_durably(sig, "", err);
    free(sig);
    return rc;
}

/* postgresql.auto.conf: its lines without earlier recovery settings, then ours; then the signals. */
static int write_recovery_conf(restore_ctx *c, const wv_plan *plan, const char *fetch_bin,
                               const char *conf, wv_err *err)
{
    char *path = wv_xasprintf("%s/postgresql.auto.conf", c->pgdata);
    wv_buf out = WV_BUF_INIT;
    FILE *f = fopen(path, "r");
    if (f) {
        char line[8192];
        while (fgets(line, sizeof(line), f))
            if (!is_recovery_line(line))
                wv_buf_append_str(&out, line);
        fclose(f);
    }
    if (out.len && out.data[out.len - 1] != '\n')
        wv_buf_append_str(&out, "\n");
    recovery_settings(c->o, plan, fetch_bin, conf, &out);
    int rc = write_file_durably(path, wv_buf_cstr(&out), err);
    wv_buf_free(&out);
    free(path);
    return rc == 0 ? write_signals(c, err) : rc;
}

static char *sibling_binary(const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return wv_xstrdup(name);
    self[n] = '\0';
    char *dir = wv_dirname_dup(self);
    char *p = wv_xasprintf("%s/%s", dir, name);
    free(dir);
    return p;
}

static void describe_target(const wv_target *t, char *out, size_t len)
{
    char v[WV_TIME_FORMAT_LEN];
    switch (t->kind) {
    case WV_TARGET_TIME:
        wv_time_format(t->time_us, v, sizeof(v));
        snprintf(out, len, "time %s", v);
        break;
    case WV_TARGET_LSN:
        wv_lsn_format(t->lsn, v);
        snprintf(out, len, "LSN %s", v);
        break;
    case WV_TARGET_XID:
        snprintf(out, len, "transaction %" PRIu32, t->xid);
        break;
    case WV_TARGET_NAME:
        snprintf(out, len, "restore point \"%s\"", t->name);
        break;
    case WV_TARGET_IMMEDIATE:
        snprintf(out, len, "the end of the backup (immediate)");
        break;
    default:
        snprintf(out, len, "the end of the archived WAL");
    }
}

/* One pass over the backup's manifest (the header's strings are released). */
static int manifest_pass(restore_ctx *c, wv_manifest_entry_cb cb, wv_err *err)
{
    wv_manifest_header h;
    memset(&h, 0, sizeof(h));
    int rc = wv_manifest_load(c->st, c->b->h.id, &h, cb, c, NULL, err);
    wv_manifest_header_free(&h);
    return rc;
}

/* Plan on one repository: load what it holds and choose backup and timeline. */
typedef struct repo_plan {
    wv_repo *repo;
    wv_archive *arch;
    wv_backupset bs;
    wv_recovery_facts facts;
    wv_plan plan;
} repo_plan;

static void repo_plan_free(repo_plan *rp)
{
    wv_recovery_facts_free(&rp->facts);
    wv_backupset_free(&rp->bs);
    wv_archive_free(rp->arch);
    wv_repo_close(rp->repo);
    memset(rp, 0, sizeof(*rp));
}

static int plan_on_repo(const wv_repo_config *rc, const restore_opts *o, repo_plan *rp, wv_err *err)
{
    int r = wv_repo_open(rc, &rp->repo, err);
    if (r == 0) {
        r = wv_repo_load_info(rp->repo, err);
        if (r == WV_ENOTFOUND)
            r = wv_err_set(err, WV_EREFUSED, "%s: the repository is empty (nothing archived yet)",
                           rc->name);
    }
    if (r == 0)
        r = wv_backupset_load(rp->repo->st, &rp->bs, err);
    if (r == 0)
        r = wv_backupset_check_cluster(&rp->bs, rc->name, rp->repo->info.system_id,
                                       rp->repo->info.wal_segsize, err);
    if (r == 0)
        r = wv_archive_scan(rp->repo->st, rp->repo->info.wal_segsize, &rp->arch, err);
    if (r == 0)
        r = wv_recovery_facts_gather(rp->repo->st, rp->arch, &rp->bs, &o->target, &rp->facts, err);
    if (r == 0) {
        uint64_t trailers, controls;
        r = wv_recovery_decide(&rp->facts, &o->target, o->timeline, o->backup_id, &rp->plan, err);
        wv_recovery_facts_reads(&rp->facts, &trailers, &controls);
        wv_log_debug("%s: the plan read %" PRIu64 " segment trailers and %" PRIu64
                     " backup control files",
                     rc->name, trailers, controls);
    }
    if (r != 0)
        wv_err_context(err, rc->name, NULL);
    return r;
}

/* ---- the steps of a restore ------------------------------------------------------------------ */

/* Arguments, then the configuration they name. */
static int load_options(int argc, char **argv, const char *config_path, restore_opts *o,
                        wv_config **cfg, wv_err *err)
{
    int rc = parse_args(argc, argv, o, err);
    if (rc == 0 && !o->config_path)
        o->config_path = config_path;
    if (rc == 0) {
        wv_cli cli = {.config_path = o->config_path};
        rc = wv_cli_load_config(&cli, cfg, err);
    }
    return rc;
}

/* The data directory: absolute, no server running on it, empty unless --delta. */
static int check_pgdata(restore_ctx *c, int *exists, wv_err *err)
{
    int empty, rc;
    c->pgdata = absolute(c->o->pgdata);
    size_t pl = strlen(c->pgdata);
    while (pl > 1 && c->pgdata[pl - 1] == '/')
        c->pgdata[--pl] = '\0';

    if ((rc = check_no_server(c->pgdata, err)) != 0 ||
        (rc = dir_state(c->pgdata, exists, &empty, err)) != 0)
        return rc;
    if (*exists && !empty && !c->o->delta) {
        rc = wv_err_set(err, WV_EREFUSED,
                        "data directory \"%s\" is not empty: refusing to "
                        "restore over it",
                        c->pgdata);
        wv_err_hint(err, "restore into a new or empty directory, or pass --delta to reuse the "
                         "files whose checksum matches and replace the rest; nothing was written");
        return rc;
    }
    return 0;
}

/* The plan: the first repository that reaches the target (or --repo N). */
static int plan_restore(const wv_config *cfg, const restore_opts *o, repo_plan *rp, wv_err *err)
{
    wv_err first;
    wv_err_clear(&first);
    int rc = WV_EREFUSED;
    for (int i = 0; i < cfg->nrepos; i++) {
        if (o->repo && cfg->repos[i].index != o->repo)
            continue;
        rc = plan_on_repo(&cfg->repos[i], o, rp, err);
        if (rc == 0)
            break;
        if (!first.code)
            first = *err;
        else
            wv_log_warn("%s", err->msg);
        repo_plan_free(rp);
    }
    if (o->repo) {
        int known = wv_cli_repo_exists(cfg, "--repo", o->repo, err);
        if (known < 0)
            return known;
    }
    if (rc != 0 && first.code)
        *err = first;
    return rc;
}

/* Say what will be restored, from where, to which target and on which timeline. */
static void report_plan(const restore_opts *o, const repo_plan *rp, const char *tdesc)
{
    const wv_backup *b = rp->plan.backup;
    char stop[WV_TIME_FORMAT_LEN];
    wv_time_format(b->h.stop_time * 1000000LL, stop, sizeof(stop));
    wv_log_info("restoring backup %s (ended %s, timeline %" PRIu32 ") from %s", b->h.id, stop,
                b->h.timeline, rp->repo->rc->name);
    wv_log_info("recovery target: %s; recovery_target_timeline = %" PRIu32 " (%s)", tdesc,
                rp->plan.tli, rp->plan.tli_reason);
    if (o->dry_run)
        wv_log_info("dry run: nothing written");
}

/* wal-fetch beside this program and the absolute configuration path, for restore_command. */
static int find_restore_command(const wv_config *cfg, char **fetch_bin, char **conf_abs,
                                wv_err *err)
{
    *fetch_bin = sibling_binary("wal-fetch");
    if (access(*fetch_bin, X_OK) != 0)
        return wv_err_set(err, WV_ECONFIG, "wal-fetch not found beside basebackup (\"%s\")",
                          *fetch_bin);
    *conf_abs = realpath(cfg->file, NULL);
    if (!*conf_abs)
        *conf_abs = wv_xstrdup(cfg->file);
    return 0;
}

/* The backup's tablespaces, their (mapped) locations checked: every map used, each empty. */
static int place_tablespaces(restore_ctx *c, wv_err *err)
{
    const restore_opts *o = c->o;
    int rc = manifest_pass(c, pass_tablespaces, err);
    if (rc != 0)
        return rc;
    for (int i = 0; i < o->nmaps; i++)
        if (!c->maps_used[i]) {
            rc = wv_err_set(err, WV_EUSAGE,
                            "--tablespace-map \"%s\": backup %s has no tablespace at that "
                            "location (its tablespaces: %s)",
                            o->maps[i].old_path, c->b->h.id,
                            c->ts_names.len ? wv_buf_cstr(&c->ts_names) : "none");
            wv_err_hint(err, "nothing was written");
            return rc;
        }
    for (int i = 0; i < c->nts; i++) {
        int tex, tempty;
        if ((rc = dir_state(c->ts[i].location, &tex, &tempty, err)) != 0)
            return rc;
        if (tex && !tempty && !o->delta) {
            rc = wv_err_set(err, WV_EREFUSED, "tablespace %" PRIu32 " location \"%s\" is not empty",
                            c->ts[i].oid, c->ts[i].location);
            wv_err_hint(err,
                        "map it elsewhere with --tablespace-map %s=/new/empty/dir, or use "
                        "--delta",
                        c->ts[i].location);
            return rc;
        }
    }
    return 0;
}

/* Every file of the backup, fetched in parallel (bundles a bundle at a time) and verified. */
static int fetch_files(restore_ctx *c, const wv_config *cfg, wv_err *err)
{
    int rc = wv_parallel_new(cfg->process_max, cfg->process_max * 4, &c->par, err);
    if (rc != 0)
        return rc;
    rc = manifest_pass(c, pass_files, err);
    if (rc == 0)
        rc = submit_bundles(c, err);
    wv_bundle_set_free(&c->bundles);
    if (rc != 0)
        wv_parallel_cancel(c->par, err);
    wv_err jerr;
    int jrc = wv_parallel_wait(c->par, &jerr);
    if (rc == 0 && jrc != 0) {
        rc = jrc;
        *err = jerr;
    }
    return rc;
}

/* --delta: remove what the backup does not have, in the data directory and each tablespace. */
static int prune_delta(restore_ctx *c, wv_err *err)
{
    int rc;
    qsort(c->keep, c->nkeep, sizeof(char *), cmp_str);
    if ((rc = prune(c, c->pgdata, err)) != 0)
        return rc;
    for (int i = 0; i < c->nts; i++)
        if ((rc = prune(c, c->ts[i].location, err)) != 0)
            return rc;
    return 0;
}

/* Tablespaces first (their locations), then directories and links, then files; then one sync of
 * each file system. */
static int write_data_dir(restore_ctx *c, const wv_config *cfg, int exists, wv_err *err)
{
    int rc;
    if ((rc = place_tablespaces(c, err)) != 0)
        return rc;
    if (!exists && mkdir(c->pgdata, 0700) != 0 && errno != EEXIST)
        return wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", c->pgdata);
    if ((rc = manifest_pass(c, pass_dirs, err)) != 0 || (rc = fetch_files(c, cfg, err)) != 0)
        return rc;
    if (c->o->delta && (rc = prune_delta(c, err)) != 0)
        return rc;
    if ((rc = wv_syncfs(c->pgdata, err)) != 0)
        return rc;
    for (int i = 0; i < c->nts; i++)
        if ((rc = wv_syncfs(c->ts[i].location, err)) != 0)
            return rc;
    return 0;
}

/* What was restored and how to start the server. */
static void report_done(const restore_ctx *c, const repo_plan *rp, const char *tdesc)
{
    const restore_opts *o = c->o;
    double secs = wv_mono_s() - c->t0;
    char pgctl[PATH_MAX];
    snprintf(pgctl, sizeof(pgctl), "/usr/lib/postgresql/%" PRIu32 "/bin/pg_ctl",
             c->b->h.pg_version / 10000);
    if (access(pgctl, X_OK) != 0)
        snprintf(pgctl, sizeof(pgctl), "pg_ctl");
    wv_log_info("restored %" PRIu64 " files (%.1f MiB%s) in %.1f s into %s", c->files,
                (double)c->bytes / 1048576.0, o->delta ? ", reused where unchanged" : "", secs,
                c->pgdata);
    if (o->delta)
        wv_log_info("delta: %" PRIu64 " files were already identical", c->reused);
    printf("restored backup %s into %s; recovery to %s on timeline %" PRIu32 ", then %s\n",
           c->b->h.id, c->pgdata, tdesc, rp->plan.tli,
           o->target.kind == WV_TARGET_LATEST ? "promote" : o->action);
    printf("start the server (as the user that owns %s):\n    %s -D %s -l %s/restore.log start\n",
           c->pgdata, pgctl, c->pgdata, c->pgdata);
}

static void restore_ctx_free(restore_ctx *c)
{
    if (c->par)
        wv_parallel_free(c->par);
    for (int i = 0; i < c->nts; i++)
        free(c->ts[i].location);
    wv_buf_free(&c->ts_names);
    for (size_t i = 0; i < c->nkeep; i++)
        free(c->keep[i]);
    free(c->keep);
    free(c->pgdata);
}

int wv_bbcmd_restore(int argc, char **argv, const char *config_path)
{
    restore_opts o;
    wv_err err;
    wv_config *cfg = NULL;
    repo_plan rp;
    restore_ctx c;
    int rc, exists = 0;
    char *conf_abs = NULL, *fetch_bin = NULL, tdesc[128];

    memset(&rp, 0, sizeof(rp));
    memset(&c, 0, sizeof(c));
    wv_err_clear(&err);
    c.o = &o;
    /* Every check, and the plan, before the first byte is written. */
    if ((rc = load_options(argc, argv, config_path, &o, &cfg, &err)) != 0 ||
        (rc = check_pgdata(&c, &exists, &err)) != 0 || (rc = plan_restore(cfg, &o, &rp, &err)) != 0)
        goto out;
    c.st = rp.repo->st;
    c.b = rp.plan.backup;
    describe_target(&o.target, tdesc, sizeof(tdesc));
    report_plan(&o, &rp, tdesc);
    if (o.dry_run || (rc = find_restore_command(cfg, &fetch_bin, &conf_abs, &err)) != 0)
        goto out;
    c.t0 = wv_mono_s();
    /* Durable: the data, then the recovery settings last. */
    if ((rc = write_data_dir(&c, cfg, exists, &err)) != 0 ||
        (rc = write_recovery_conf(&c, &rp.plan, fetch_bin, conf_abs, &err)) != 0)
        goto out;
    report_done(&c, &rp, tdesc);
out:
    restore_ctx_free(&c);
    free(conf_abs);
    free(fetch_bin);
    for (int i = 0; i < o.nmaps; i++) {
        free(o.maps[i].old_path);
        free(o.maps[i].new_path);
    }
    repo_plan_free(&rp);
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}
