/*
 * restore.c - basebackup restore: put a backup back and configure PostgreSQL to recover to a
 * target.
 *
 *   basebackup restore --pgdata DIR [--to TIME | --lsn LSN | --xid XID | --name NAME | --immediate]
 *                      [--backup ID] [--timeline latest|current|N] [--target-action promote|pause|
 *                      shutdown] [--delta] [--tablespace-map OLD=NEW] [--repo N] [--dry-run]
 *                      [--archive-mode off|preserve]
 *
 * Order of work: every check (arguments, PGDATA empty and no server running, the plan: backup,
 * timeline and whether the archive reaches the target, the transaction of --xid, the manifest,
 * the tablespace locations and --tablespace-map, what --delta may replace) happens before the
 * first byte is written, and before --dry-run returns: a dry run refuses what the real run would.
 * Files are fetched in parallel, each verified against the manifest's SHA-256, without an fsync
 * each; one syncfs per file system at the end. A file stored as chunks is created at its final
 * size (posix_fallocate) and its chunks are written in parallel jobs at their offsets, each
 * verified against its own digest before the file is renamed into place. Recovery settings go
 * into postgresql.auto.conf, then recovery.signal is created last.
 *
 * Confinement: the repository is less trusted than this host, so nothing a manifest says can
 * reach outside the targets (PGDATA and each tablespace location). Every write goes through the
 * target's directory descriptor (core/dirfd.h: O_NOFOLLOW per component, temp file + renameat),
 * and the manifest is validated first: paths inside a target (in a tablespace only below its
 * PG_<major>_* directory), symbolic links only as pg_tblspc/<oid> of a listed tablespace (pointing
 * at its location, whatever the entry's target says). Locations are absolute, without "." or
 * "..", outside PGDATA and each other, and empty, or (--delta) holding that tablespace's version
 * directory, the only part of a location --delta prunes. Modes are PostgreSQL's, never the
 * manifest's: directories 0700, files 0600, or 0750/0640 when the backup's data directory had
 * group access (the "pgdata" record's mode, else that of global/); a recorded 6777 becomes 0600 or
 * 0640. --delta replaces a non-empty PGDATA only if its PG_VERSION and the system identifier in
 * global/pg_control are the backup's, unless --force.
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
#include "core/bytes.h"
#include "repo/bundle.h"
#include "core/cli.h"
#include "commands.h"
#include "core/config.h"
#include "core/dirfd.h"
#include "core/fileio.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"
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
    char *pgverdir; /* its PG_VERSION directory in the backup ("PG_15_202209061"), or NULL */
    int reuse;      /* delta: the location holds pgverdir, whose contents are pruned */
    int fd;         /* the location's directory descriptor while writing (-1 otherwise) */
} tablespace;

typedef struct restore_opts {
    const char *pgdata;
    wv_target target;
    const char *backup_id;
    uint32_t timeline;
    const char *action;
    int delta;
    int force;
    int dry_run;
    int archive_off; /* --archive-mode off: archive_mode = off in postgresql.auto.conf */
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
    "  --force                     with --delta: accept a DIR that is not a data directory of\n"
    "                              this backup's cluster (everything in it is replaced)\n"
    "  --tablespace-map OLD=NEW    restore the tablespace at OLD into NEW (repeatable)\n"
    "  --repo N                    use [repoN] only (default: the first that reaches the target)\n"
    "  --dry-run                   show the plan, write nothing\n"
    "  --archive-mode off|preserve off writes archive_mode = off for the restored server, so a\n"
    "                              copy never archives into the repository (default preserve)\n";

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
        {"force", no_argument, NULL, 'F'},
        {"tablespace-map", required_argument, NULL, 'm'},
        {"repo", required_argument, NULL, 'r'},
        {"dry-run", no_argument, NULL, 'N'},
        {"archive-mode", required_argument, NULL, 'A'},
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
        case 'F':
            o->force = 1;
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
        case 'A':
            if (strcmp(optarg, "off") && strcmp(optarg, "preserve"))
                return wv_err_set(err, WV_EUSAGE,
                                  "bad --archive-mode \"%s\": expected off or preserve", optarg);
            o->archive_off = strcmp(optarg, "off") == 0;
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
    if (o->force && !o->delta)
        return wv_err_set(err, WV_EUSAGE,
                          "--force goes with --delta: it accepts a non-empty DIR that is not "
                          "this backup's cluster");
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

/* A path the backup has (delta: what pruning keeps), with its manifest type. */
typedef struct kept {
    char *path; /* manifest path: "pgdata/base/1", "tblspc/16384/PG_15_.../1" */
    wv_manifest_type type;
} kept;

typedef struct restore_ctx {
    const restore_opts *o;
    wv_storage *st;
    const wv_backup *b;
    char *pgdata;
    int pgfd;        /* PGDATA's directory descriptor, once it exists (-1 before) */
    int group;       /* the backup's PGDATA had group access: 0750 / 0640 */
    int group_known; /* group was read from the "pgdata" record itself */
    tablespace ts[256];
    int nts;
    int maps_used[MAX_TS_MAP];
    wv_buf ts_names; /* the backup's tablespace locations, for messages */
    wv_parallel *par;
    uint64_t files, bytes, reused;
    wv_bundle_set bundles; /* files stored in bundles: restored a bundle at a time */
    /* delta: every path the backup has */
    kept *keep;
    size_t nkeep, capkeep;
    double t0;
} restore_ctx;

static tablespace *ts_find(restore_ctx *c, uint32_t oid)
{
    for (int i = 0; i < c->nts; i++)
        if (c->ts[i].oid == oid)
            return &c->ts[i];
    return NULL;
}

/* The oid of "tblspc/<oid>[/...]" (0 if p is not such a path); *rest points after it. */
static uint32_t tblspc_oid(const char *p, const char **rest)
{
    if (strncmp(p, "tblspc/", 7) != 0 || p[7] < '1' || p[7] > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long oid = strtoul(p + 7, &end, 10);
    if (errno || oid > UINT32_MAX || (*end && *end != '/'))
        return 0;
    *rest = *end ? end + 1 : end;
    return (uint32_t)oid;
}

/*
 * Where a manifest path goes: the directory descriptor of its target (PGDATA or its tablespace's
 * location) and the path relative to it ("" for the target itself). WV_ECORRUPT for a path that
 * names neither (validated before anything is written, so a later failure here is a bug).
 */
static int resolve_target(restore_ctx *c, const char *p, int *rootfd, const char **rel, wv_err *err)
{
    const char *rest = NULL;
    uint32_t oid;
    if (strcmp(p, "pgdata") == 0 || strncmp(p, "pgdata/", 7) == 0) {
        *rootfd = c->pgfd;
        *rel = p[6] ? p + 7 : p + 6;
    } else if ((oid = tblspc_oid(p, &rest)) != 0 && ts_find(c, oid)) {
        *rootfd = ts_find(c, oid)->fd;
        *rel = rest;
    } else {
        return wv_err_set(err, WV_ECORRUPT, "manifest of backup %s: entry \"%s\" names no target",
                          c->b->h.id, p);
    }
    if (!wv_relpath_valid(*rel))
        return wv_err_set(err, WV_ECORRUPT,
                          "manifest of backup %s: \"%s\" is not a path inside its target",
                          c->b->h.id, p);
    return 0;
}

/* The local path of a manifest path, for messages (a new string). */
static char *display_path(restore_ctx *c, const char *p)
{
    const char *rest = NULL;
    uint32_t oid;
    if (strcmp(p, "pgdata") == 0)
        return wv_xstrdup(c->pgdata);
    if (strncmp(p, "pgdata/", 7) == 0)
        return wv_xasprintf("%s/%s", c->pgdata, p + 7);
    if ((oid = tblspc_oid(p, &rest)) != 0 && ts_find(c, oid))
        return *rest ? wv_xasprintf("%s/%s", ts_find(c, oid)->location, rest)
                     : wv_xstrdup(ts_find(c, oid)->location);
    return wv_xstrdup(p);
}

/* The target a manifest path lies in (PGDATA or a tablespace location), for messages. */
static const char *root_name(restore_ctx *c, const char *p)
{
    const char *rest;
    uint32_t oid = tblspc_oid(p, &rest);
    const tablespace *t = oid ? ts_find(c, oid) : NULL;
    return t ? t->location : c->pgdata;
}

static void keep_path(restore_ctx *c, const char *path, wv_manifest_type type)
{
    if (!c->o->delta)
        return;
    if (c->nkeep == c->capkeep) {
        c->capkeep = c->capkeep ? 2 * c->capkeep : 256;
        c->keep = wv_xrealloc(c->keep, c->capkeep * sizeof(*c->keep));
    }
    c->keep[c->nkeep].path = wv_xstrdup(path);
    c->keep[c->nkeep].type = type;
    c->nkeep++;
}

static int pass_tablespaces(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    if (e->type != WV_MANIFEST_TABLESPACE)
        return 0;
    if (c->nts >= (int)(sizeof(c->ts) / sizeof(c->ts[0])))
        return wv_err_set(err, WV_EREFUSED, "manifest of backup %s: too many tablespaces",
                          c->b->h.id);
    if (e->oid == 0 || ts_find(c, e->oid))
        return wv_err_set(err, WV_ECORRUPT,
                          "manifest of backup %s: tablespace %" PRIu32 " is listed twice or has "
                          "no oid",
                          c->b->h.id, e->oid);
    const char *loc = e->target;
    for (int i = 0; i < c->o->nmaps; i++)
        if (strcmp(c->o->maps[i].old_path, e->target) == 0) {
            loc = c->o->maps[i].new_path;
            c->maps_used[i] = 1;
        }
    wv_buf_printf(&c->ts_names, "%s\"%s\"", c->ts_names.len ? ", " : "", e->target);
    c->ts[c->nts].oid = e->oid;
    c->ts[c->nts].location = wv_xstrdup(loc);
    c->ts[c->nts].fd = -1;
    c->nts++;
    return 0;
}

/* The tablespace a symlink entry may point at: only "pgdata/pg_tblspc/<oid>" of a tablespace the
 * backup lists may be a link (to that tablespace's location, whatever the entry's target says).
 * NULL with the refusal in err otherwise. */
static const tablespace *link_tablespace(restore_ctx *c, const char *p, wv_err *err)
{
    const char *o = strncmp(p, "pgdata/pg_tblspc/", 17) == 0 ? p + 17 : NULL;
    char *end = NULL;
    unsigned long oid = o && *o >= '1' && *o <= '9' ? strtoul(o, &end, 10) : 0;
    const tablespace *t = o && end && !*end && oid <= UINT32_MAX ? ts_find(c, (uint32_t)oid) : NULL;
    if (!t) {
        wv_err_set(err, WV_EREFUSED,
                   "manifest of backup %s: \"%s\" is a symlink; only pg_tblspc/<oid> may be one",
                   c->b->h.id, p);
        wv_err_hint(err, "the repository's copy of this backup was altered or damaged; nothing "
                         "was written");
    }
    return t;
}

/* Whether rel (inside a tablespace location) lies in its version directory "PG_<major>_<digits>",
 * the only thing PostgreSQL keeps there. */
static int pgverdir_path(const char *rel, unsigned major)
{
    char want[32];
    int n = snprintf(want, sizeof(want), "PG_%u_", major);
    if (strncmp(rel, want, (size_t)n) != 0)
        return 0;
    size_t digits = strspn(rel + n, "0123456789");
    return digits > 0 && (rel[n + digits] == '\0' || rel[n + digits] == '/');
}

/*
 * Every entry checked before anything is written: its path lies inside PGDATA or a tablespace the
 * backup lists; the only symbolic links are pg_tblspc/<oid> of those tablespaces. Records the
 * data directory's group access, each tablespace's PG_VERSION directory and (delta) the paths.
 */
static int pass_validate(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    const char *rest = NULL;
    uint32_t oid = 0;
    if (e->type == WV_MANIFEST_TABLESPACE)
        return 0;
    const char *p = e->path;
    int in_pgdata = strcmp(p, "pgdata") == 0 || strncmp(p, "pgdata/", 7) == 0;
    if (!in_pgdata) {
        oid = tblspc_oid(p, &rest);
        if (!oid || !ts_find(c, oid))
            return wv_err_set(err, WV_ECORRUPT,
                              "manifest of backup %s: \"%s\" names an unknown tablespace",
                              c->b->h.id, p);
    } else {
        rest = p[6] ? p + 7 : p + 6;
    }
    if (!wv_relpath_valid(rest))
        return wv_err_set(err, WV_ECORRUPT,
                          "manifest of backup %s: \"%s\" is not a path inside its target",
                          c->b->h.id, p);
    if (oid && *rest && !pgverdir_path(rest, c->b->h.pg_version / 10000)) {
        wv_err_set(err, WV_EREFUSED,
                   "manifest of backup %s: \"%s\" lies outside the tablespace's PG_%u_* "
                   "directory",
                   c->b->h.id, p, c->b->h.pg_version / 10000);
        return wv_err_hint(err, "a tablespace location holds only PostgreSQL's version "
                                "directory; nothing was written");
    }
    if (e->type == WV_MANIFEST_SYMLINK && !link_tablespace(c, p, err))
        return err->code;
    /* Group access as the backup's data directory had it: its own record when the manifest has
     * one, else global/ (which PostgreSQL creates with the data directory's mode). */
    if (e->type == WV_MANIFEST_DIR && strcmp(p, "pgdata") == 0) {
        c->group = wv_pg_group_access(e->mode);
        c->group_known = 1;
    } else if (e->type == WV_MANIFEST_DIR && strcmp(p, "pgdata/global") == 0 && !c->group_known) {
        c->group = wv_pg_group_access(e->mode);
    }
    if (e->type == WV_MANIFEST_DIR && oid && strncmp(rest, "PG_", 3) == 0 && !strchr(rest, '/')) {
        tablespace *t = ts_find(c, oid);
        free(t->pgverdir);
        t->pgverdir = wv_xstrdup(rest);
    }
    keep_path(c, p, e->type);
    return 0;
}

static int pass_dirs(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    int rootfd = -1, fd = -1, rc;
    const char *rel = "";
    if (e->type != WV_MANIFEST_DIR && e->type != WV_MANIFEST_SYMLINK)
        return 0;
    if ((rc = resolve_target(c, e->path, &rootfd, &rel, err)) != 0)
        return rc;
    char *shown = display_path(c, e->path);
    mode_t dmode = wv_pg_dir_mode(e->mode, c->group);
    if (e->type == WV_MANIFEST_DIR) {
        rc = wv_dirfd_open(rootfd, root_name(c, e->path), rel, WV_DIRFD_CREATE, dmode, &fd, err);
        if (rc == 0 && fchmod(fd, dmode) != 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not chmod \"%s\"", shown);
    } else {
        /* pg_tblspc/<oid> -> the tablespace's (possibly remapped) location; nothing else (see
         * pass_validate). */
        const char *base;
        const tablespace *t = link_tablespace(c, e->path, err);
        if (!t) {
            free(shown);
            return err->code;
        }
        rc = wv_dirfd_open_parent(rootfd, root_name(c, e->path), rel, WV_DIRFD_CREATE,
                                  wv_pg_dir_mode(0, c->group), &fd, &base, err);
        if (rc == 0) {
            unlinkat(fd, base, 0);
            if (symlinkat(t->location, fd, base) != 0)
                rc = wv_err_errno(err, WV_EIO, errno, "could not create symlink \"%s\"", shown);
        }
    }
    if (fd >= 0)
        close(fd);
    free(shown);
    return rc;
}

typedef struct file_job {
    restore_ctx *c;
    char *key;
    int64_t offset, length; /* the object's range in key (a bundle), or 0, -1 */
    char *path;             /* manifest path */
    uint8_t sha256[32];
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    int reused;
} file_job;

/* Does an existing file already hold this content? (delta; links are never followed) */
static int same_content(restore_ctx *c, const char *path, uint64_t size, const uint8_t sha[32])
{
    int rootfd = -1, dfd = -1;
    const char *rel = "", *base;
    wv_err e;
    struct stat sb;
    if (resolve_target(c, path, &rootfd, &rel, &e) != 0 || !*rel ||
        wv_dirfd_open_parent(rootfd, "", rel, 0, 0, &dfd, &base, &e) != 0)
        return 0;
    int fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    close(dfd);
    if (fd < 0)
        return 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size) {
        close(fd);
        return 0;
    }
    wv_filter *h = wv_sha256_filter_new(wv_filter_discard_new());
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

typedef int (*fill_fn)(void *arg, wv_filter *dest, wv_err *err);

/*
 * Write the file at manifest path beneath its target: a temp file created with O_EXCL|O_NOFOLLOW
 * in the directory opened beneath the target (no link followed), filled, given PostgreSQL's mode
 * and the recorded mtime, renamed over the final name (which replaces a link, never follows it).
 * No fsync: restore syncs each file system at the end. On failure the temp file is removed.
 */
/* A temporary file being written beneath a target (see write_confined). */
typedef struct confined_file {
    int dfd, fd;
    char *tmp;        /* its name in dfd */
    const char *base; /* the final name in dfd */
    char *shown;      /* for messages */
} confined_file;

/* Open the directory of manifest path beneath its target and create the temp file in it. */
static int confined_create(restore_ctx *c, const char *path, confined_file *cf, wv_err *err)
{
    int rootfd = -1, rc;
    const char *rel = "";
    *cf = (confined_file){.dfd = -1, .fd = -1};
    if ((rc = resolve_target(c, path, &rootfd, &rel, err)) != 0)
        return rc;
    cf->shown = display_path(c, path);
    if (!*rel)
        return wv_err_set(err, WV_ECORRUPT, "manifest of backup %s: file \"%s\" is a target itself",
                          c->b->h.id, path);
    rc = wv_dirfd_open_parent(rootfd, root_name(c, path), rel, WV_DIRFD_CREATE,
                              wv_pg_dir_mode(0, c->group), &cf->dfd, &cf->base, err);
    if (rc != 0)
        return rc;
    cf->tmp = wv_temp_path_for(cf->base);
    cf->fd = openat(cf->dfd, cf->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (cf->fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not create a temporary file for \"%s\"",
                            cf->shown);
    return 0;
}

/* Give the filled temp file PostgreSQL's mode and the recorded mtime and rename it over the final
 * name (rc == 0), or remove it (rc != 0, or a step failing); then release cf. */
static int confined_finish(restore_ctx *c, confined_file *cf, uint32_t mode, int64_t mtime, int rc,
                           wv_err *err)
{
    if (cf->fd >= 0) {
        struct timespec ts[2] = {{.tv_sec = (time_t)mtime}, {.tv_sec = (time_t)mtime}};
        if (rc == 0 && fchmod(cf->fd, wv_pg_file_mode(mode, c->group)) != 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not chmod \"%s\"", cf->shown);
        if (rc == 0)
            futimens(cf->fd, ts);
        if (close(cf->fd) != 0 && rc == 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not close \"%s\"", cf->shown);
        if (rc == 0 && renameat(cf->dfd, cf->tmp, cf->dfd, cf->base) != 0)
            rc = wv_err_errno(err, WV_EIO, errno, "could not rename a temporary file to \"%s\"",
                              cf->shown);
        if (rc != 0)
            unlinkat(cf->dfd, cf->tmp, 0);
    }
    free(cf->tmp);
    if (cf->dfd >= 0)
        close(cf->dfd);
    free(cf->shown);
    *cf = (confined_file){.dfd = -1, .fd = -1};
    return rc;
}

static int write_confined(restore_ctx *c, const char *path, uint32_t mode, int64_t mtime,
                          fill_fn fill, void *arg, wv_err *err)
{
    confined_file cf;
    int rc = confined_create(c, path, &cf, err);
    if (rc == 0) {
        wv_filter *dest = wv_filter_fd_new(cf.fd);
        rc = fill(arg, dest, err);
        wv_filter_chain_free(dest);
    }
    return confined_finish(c, &cf, mode, mtime, rc, err);
}

typedef struct object_fill {
    restore_ctx *c;
    const file_job *j;
    wv_obj_info info;
} object_fill;

static int fill_object(void *arg, wv_filter *dest, wv_err *err)
{
    object_fill *f = arg;
    const file_job *j = f->j;
    wv_source *src = NULL;
    int rc = wv_storage_get_open(f->c->st, j->key, j->offset, j->length, &src, err);
    if (rc != 0)
        return rc;
    /* bound to its key, and never more than the manifest's size reaches the file */
    wv_objread_opts o = {.flags = WV_OBJREAD_LIMIT,
                         .key = j->key,
                         .max_plain = j->size,
                         .crypto = wv_repo_crypto(f->c->st)};
    rc = wv_object_read_opts(src, dest, &o, &f->info, err);
    if (rc != 0 && j->length >= 0)
        wv_err_context_at(err, wv_storage_name(f->c->st), j->key, " at offset %" PRId64, j->offset);
    else if (rc != 0)
        wv_err_context(err, wv_storage_name(f->c->st), j->key);
    if (rc == 0 && (memcmp(f->info.sha256, j->sha256, 32) != 0 || f->info.plain_size != j->size))
        rc = wv_err_set(err, WV_ECORRUPT,
                        "%s: \"%s\" does not match the backup manifest (size or SHA-256)",
                        wv_storage_name(f->c->st), j->key);
    wv_source_close(src);
    return rc;
}

static int file_job_run(void *arg, wv_err *err)
{
    file_job *j = arg;
    if (j->c->o->delta && same_content(j->c, j->path, j->size, j->sha256)) {
        j->reused = 1;
        return 0;
    }
    object_fill f = {.c = j->c, .j = j};
    return write_confined(j->c, j->path, j->mode, j->mtime, fill_object, &f, err);
}

/* ---- bundles: one read of the whole object, every file in it written and verified ----------- */

typedef struct bundle_rjob {
    restore_ctx *c;
    wv_bundle *b;
    uint64_t files, bytes, reused;
} bundle_rjob;

typedef struct member_fill {
    wv_source *obj;
    const wv_obj_crypto *crypto;
    const char *bundle_key;
    const wv_bundle_member *m;
} member_fill;

static int fill_member(void *arg, wv_filter *dest, wv_err *err)
{
    member_fill *f = arg;
    return wv_bundle_check_object(f->obj, f->crypto, f->bundle_key, f->m, dest, err);
}

static int restore_member(void *arg, const wv_bundle_member *m, wv_source *obj, wv_err *err)
{
    bundle_rjob *j = arg;
    restore_ctx *c = j->c;
    int rc = 0;
    if (c->o->delta && same_content(c, m->path, m->size, m->sha256)) {
        j->reused++;
    } else {
        member_fill f = {obj, wv_repo_crypto(c->st), j->b->key, m};
        if ((rc = write_confined(c, m->path, m->mode, m->mtime, fill_member, &f, err)) < 0)
            wv_err_context_at(err, wv_storage_name(c->st), j->b->key, " at offset %" PRIu64 " (%s)",
                              m->offset, m->path);
    }
    if (rc == 0) {
        j->files++;
        j->bytes += m->size;
    }
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
    (void)err;
    if (rc == 0) {
        j->c->files++;
        j->c->bytes += j->size;
        j->c->reused += j->reused;
    }
    free(j->key);
    free(j->path);
    free(j);
}

/* ---- chunked files: created at their final size, chunks written in parallel at their offsets */

/* A terminal filter writing at increasing offsets of a file shared with other writers. */
typedef struct pwrite_filter {
    wv_filter base;
    int fd;
    uint64_t off;
    const char *shown;
} pwrite_filter;

static int pwrite_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    pwrite_filter *p = (pwrite_filter *)f;
    while (len > 0) {
        ssize_t n = pwrite(p->fd, buf, len, (off_t)p->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return wv_err_errno(err, WV_EIO, n < 0 ? errno : ENOSPC, "could not write \"%s\"",
                                p->shown);
        buf += n;
        len -= (size_t)n;
        p->off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_finish(wv_filter *f, wv_err *err)
{
    (void)f;
    (void)err;
    return 0;
}

static void pwrite_free(wv_filter *f)
{
    (void)f; /* lives on its writer's stack */
}

static const wv_filter_ops pwrite_ops = {
    .name = "pwrite", .write = pwrite_write, .finish = pwrite_finish, .free = pwrite_free};

/* A file stored as chunks. Its temp file is created (at its final size) before any chunk job
 * runs; each chunk job writes its range, verified against the chunk's SHA-256 and bound to its
 * own key; once every chunk is in, the file gets its mode and mtime and is renamed into place.
 * The whole file's SHA-256 is not recomputed: the chunk list tiles the file exactly (checked by
 * the manifest reader) and is covered by the manifest's own digest just as the whole-file digest
 * is, so verified chunks prove the content (basebackup verify checks the whole digest too).
 * Owned by the submitter and each chunk job not yet done (main thread only). */
typedef struct chunked {
    restore_ctx *c;
    char *path, *ref;
    wv_manifest_chunk *chunks;
    uint32_t nchunks;
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    uint8_t sha256[32];
    confined_file cf;
    int refs, failed, reused;
} chunked;

typedef struct chunk_rjob {
    chunked *f;
    uint32_t k;
} chunk_rjob;

static void chunked_free(chunked *f)
{
    free(f->path);
    free(f->ref);
    free(f->chunks);
    free(f);
}

/* Create the temp file beneath its target at its final size. */
static int chunked_open(chunked *f, wv_err *err)
{
    int rc = confined_create(f->c, f->path, &f->cf, err);
    if (rc != 0 || f->size == 0)
        return rc;
    int e = posix_fallocate(f->cf.fd, 0, (off_t)f->size);
    if (e == EOPNOTSUPP || e == EINVAL || e == ENOSYS)
        e = ftruncate(f->cf.fd, (off_t)f->size) == 0 ? 0 : errno;
    if (e != 0)
        return wv_err_errno(err, WV_EIO, e, "could not allocate %" PRIu64 " bytes for \"%s\"",
                            f->size, f->cf.shown);
    return 0;
}

/* Fetch chunk k into its range of the temp file, verified against the manifest. */
static int restore_chunk(chunked *f, uint32_t k, wv_err *err)
{
    restore_ctx *c = f->c;
    const wv_manifest_chunk *ch = &f->chunks[k];
    wv_manifest_entry e = {.type = WV_MANIFEST_FILE, .path = f->path, .ref = f->ref};
    char key[1200];
    wv_manifest_chunk_key(c->b->h.id, &e, k, key, sizeof(key));
    wv_source *src = NULL;
    int rc = wv_storage_get_open(c->st, key, 0, -1, &src, err);
    if (rc == 0) {
        pwrite_filter pf = {
            .base = {.ops = &pwrite_ops}, .fd = f->cf.fd, .off = ch->offset, .shown = f->cf.shown};
        /* bound to its own key (a chunk swapped with another is refused), never more than its length */
        wv_objread_opts o = {.flags = WV_OBJREAD_LIMIT,
                             .key = key,
                             .max_plain = ch->length,
                             .crypto = wv_repo_crypto(c->st)};
        wv_obj_info info;
        rc = wv_object_read_opts(src, &pf.base, &o, &info, err);
        if (rc != 0)
            wv_err_context(err, wv_storage_name(c->st), key);
        else if (memcmp(info.sha256, ch->sha256, 32) != 0 || info.plain_size != ch->length)
            rc = wv_err_set(err, WV_ECORRUPT,
                            "%s: \"%s\" does not match the backup manifest (size or SHA-256)",
                            wv_storage_name(c->st), key);
    }
    wv_source_close(src);
    if (rc != 0) {
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof(err->msg) - n, " (chunk %" PRIu32 " of \"%s\")", k, f->path);
    }
    return rc;
}

/* Let go of f; the last one renames the complete file into place (or removes the temp file). */
static void chunked_release(chunked *f)
{
    if (--f->refs > 0)
        return;
    restore_ctx *c = f->c;
    wv_err e;
    wv_err_clear(&e);
    int rc = confined_finish(c, &f->cf, f->mode, f->mtime, f->failed ? WV_EINTERRUPTED : 0, &e);
    if (rc == 0) {
        c->files++;
        c->bytes += f->size;
    } else if (!f->failed) {
        wv_parallel_cancel(c->par, &e);
    }
    chunked_free(f);
}

static int chunk_rjob_run(void *arg, wv_err *err)
{
    chunk_rjob *j = arg;
    return restore_chunk(j->f, j->k, err);
}

static void chunk_rjob_done(void *arg, int rc, const wv_err *err)
{
    chunk_rjob *j = arg;
    (void)err;
    if (rc != 0)
        j->f->failed = 1;
    chunked_release(j->f);
    free(j);
}

/* --delta: one job per file, which keeps a file that already holds the content, else writes
 * every chunk in order. */
static int chunked_delta_run(void *arg, wv_err *err)
{
    chunked *f = arg;
    if (same_content(f->c, f->path, f->size, f->sha256)) {
        f->reused = 1;
        return 0;
    }
    int rc = chunked_open(f, err);
    for (uint32_t k = 0; rc == 0 && k < f->nchunks; k++)
        rc = restore_chunk(f, k, err);
    return confined_finish(f->c, &f->cf, f->mode, f->mtime, rc, err);
}

static void chunked_delta_done(void *arg, int rc, const wv_err *err)
{
    chunked *f = arg;
    (void)err;
    if (rc == 0) {
        f->c->files++;
        f->c->bytes += f->size;
        f->c->reused += f->reused;
    }
    chunked_free(f);
}

static int submit_chunked(restore_ctx *c, const wv_manifest_entry *e, wv_err *err)
{
    chunked *f = wv_xcalloc(1, sizeof(*f));
    f->c = c;
    f->path = wv_xstrdup(e->path);
    f->ref = e->ref ? wv_xstrdup(e->ref) : NULL;
    f->chunks = wv_xmalloc(e->nchunks * sizeof(*f->chunks));
    memcpy(f->chunks, e->chunks, e->nchunks * sizeof(*f->chunks));
    f->nchunks = e->nchunks;
    f->size = e->size;
    f->mode = e->mode;
    f->mtime = e->mtime;
    memcpy(f->sha256, e->sha256, 32);
    f->cf = (confined_file){.dfd = -1, .fd = -1};
    if (c->o->delta) {
        int drc = wv_parallel_submit(c->par, chunked_delta_run, chunked_delta_done, f, err);
        if (drc < 0) /* not submitted: done will not run */
            chunked_free(f);
        return drc;
    }
    int rc = chunked_open(f, err);
    if (rc != 0) {
        confined_finish(c, &f->cf, f->mode, f->mtime, rc, err);
        chunked_free(f);
        return rc;
    }
    f->refs = 1; /* this submitter's */
    for (uint32_t k = 0; k < f->nchunks; k++) {
        chunk_rjob *j = wv_xcalloc(1, sizeof(*j));
        j->f = f;
        j->k = k;
        f->refs++; /* before submitting: done may run inside the submit */
        if ((rc = wv_parallel_submit(c->par, chunk_rjob_run, chunk_rjob_done, j, err)) < 0) {
            f->refs--;
            f->failed = 1;
            free(j);
            break;
        }
    }
    chunked_release(f);
    return rc;
}

static int pass_files(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    restore_ctx *c = arg;
    if (e->type != WV_MANIFEST_FILE)
        return 0;
    if (e->bundle) {
        wv_bundle_set_add(&c->bundles, c->b->h.id, e);
        return 0;
    }
    if (e->nchunks)
        return submit_chunked(c, e, err);
    file_job *j = wv_xcalloc(1, sizeof(*j));
    j->c = c;
    char key[300];
    wv_manifest_file_object(c->b->h.id, e, key, sizeof(key), &j->offset, &j->length);
    j->key = wv_xstrdup(key);
    j->path = wv_xstrdup(e->path);
    memcpy(j->sha256, e->sha256, 32);
    j->size = e->size;
    j->mode = e->mode;
    j->mtime = e->mtime;
    int rc = wv_parallel_submit(c->par, file_job_run, file_job_done, j, err);
    if (rc < 0) { /* not submitted (a job failed already): done will not run */
        free(j->key);
        free(j->path);
        free(j);
    }
    return rc;
}

static int cmp_kept(const void *a, const void *b)
{
    return strcmp(((const kept *)a)->path, ((const kept *)b)->path);
}

static const kept *find_kept(const restore_ctx *c, const char *path)
{
    kept k = {.path = (char *)path};
    if (!c->nkeep)
        return NULL;
    return bsearch(&k, c->keep, c->nkeep, sizeof(kept), cmp_kept);
}

/*
 * delta: remove what the backup does not have from directory fd (manifest path prefix mp), and
 * what has another type than the backup's (a link or file where it has a directory, ...). Works
 * beneath fd only: a link is removed, never followed. Consumes fd.
 */
static int prune(restore_ctx *c, int fd, const char *mp, wv_err *err)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return wv_err_errno(err, WV_EIO, errno, "could not list \"%s\"", mp);
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = wv_xasprintf("%s/%s", mp, de->d_name);
        const kept *k = find_kept(c, p);
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            int want_dir = k && k->type == WV_MANIFEST_DIR && S_ISDIR(sb.st_mode);
            int same = k && ((k->type == WV_MANIFEST_FILE && S_ISREG(sb.st_mode)) ||
                             (k->type == WV_MANIFEST_SYMLINK && S_ISLNK(sb.st_mode)));
            if (want_dir) {
                int sub =
                    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                rc = sub < 0 ? wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", p)
                             : prune(c, sub, p, err);
            } else if (!same) {
                char *shown = display_path(c, p);
                rc = wv_dirfd_remove_tree(dirfd(d), de->d_name, shown, err);
                free(shown);
            }
        }
        free(p);
    }
    closedir(d);
    return rc;
}

/* ---- recovery settings ----------------------------------------------------------------------- */

/* PGDATA/name written durably through PGDATA's descriptor: temp file, fsync, rename, fsync. */
static int write_file_durably(const restore_ctx *c, const char *name, const char *text, wv_err *err)
{
    char *tmp = wv_temp_path_for(name);
    char *shown = wv_xasprintf("%s/%s", c->pgdata, name);
    int fd = openat(c->pgfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    wv_pg_file_mode(0640, c->group));
    int rc;
    if (fd < 0) {
        rc =
            wv_err_errno(err, WV_EIO, errno, "could not create a temporary file for \"%s\"", shown);
        free(tmp);
        free(shown);
        return rc;
    }
    rc = wv_write_all(fd, text, strlen(text), shown, err);
    if (rc == 0)
        rc = wv_fsync_fd(fd, shown, err);
    close(fd);
    if (rc == 0 && renameat(c->pgfd, tmp, c->pgfd, name) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not rename a temporary file to \"%s\"", shown);
    if (rc != 0)
        unlinkat(c->pgfd, tmp, 0);
    if (rc == 0 && fsync(c->pgfd) != 0)
        rc = wv_err_errno(err, WV_EIO, errno, "could not fsync directory \"%s\"", c->pgdata);
    free(tmp);
    free(shown);
    return rc;
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

/* A line restore replaces: a recovery setting, and archive_mode with --archive-mode off. */
static int is_recovery_line(const char *line, int archive_off)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (archive_off && strncmp(line, "# --archive-mode off:", 21) == 0)
        return 1;
    if (archive_off && strncmp(line, "archive_mode", 12) == 0 &&
        (line[12] == ' ' || line[12] == '\t' || line[12] == '='))
        return 1;
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
    if (o->archive_off)
        wv_buf_append_str(out, "# --archive-mode off: this copy never archives into the "
                               "repository\narchive_mode = off\n");
}

/* Signals: standby.signal (a backup of a standby) removed, recovery.signal created last. */
static int write_signals(const restore_ctx *c, wv_err *err)
{
    if (unlinkat(c->pgfd, "standby.signal", 0) == 0)
        wv_log_warn("removed standby.signal from the restored data directory (the backup was "
                    "taken on a standby)");
    return write_file_durably(c, "recovery.signal", "", err);
}

/* postgresql.auto.conf: its lines without earlier recovery settings, then ours; then the signals. */
static int write_recovery_conf(restore_ctx *c, const wv_plan *plan, const char *fetch_bin,
                               const char *conf, wv_err *err)
{
    wv_buf out = WV_BUF_INIT;
    int fd = openat(c->pgfd, "postgresql.auto.conf", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f) {
        char line[8192];
        while (fgets(line, sizeof(line), f))
            if (!is_recovery_line(line, c->o->archive_off))
                wv_buf_append_str(&out, line);
        fclose(f);
    } else if (fd >= 0) {
        close(fd);
    }
    if (out.len && out.data[out.len - 1] != '\n')
        wv_buf_append_str(&out, "\n");
    recovery_settings(c->o, plan, fetch_bin, conf, &out);
    int rc = write_file_durably(c, "postgresql.auto.conf", wv_buf_cstr(&out), err);
    wv_buf_free(&out);
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
static int check_pgdata(restore_ctx *c, int *exists, int *empty_out, wv_err *err)
{
    int empty, rc;
    c->pgdata = absolute(c->o->pgdata);
    size_t pl = strlen(c->pgdata);
    while (pl > 1 && c->pgdata[pl - 1] == '/')
        c->pgdata[--pl] = '\0';

    if ((rc = check_no_server(c->pgdata, err)) != 0 ||
        (rc = dir_state(c->pgdata, exists, &empty, err)) != 0)
        return rc;
    *empty_out = empty;
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

/* Whether an absolute path has only plain components (no ".", "..", empty ones). */
static int plain_absolute(const char *p)
{
    return p[0] == '/' && p[1] && p[strlen(p) - 1] != '/' && wv_relpath_valid(p + 1);
}

/* Whether path is dir or lies below it (both absolute and plain); also through links, when both
 * exist. */
static int inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/'))
        return 1;
    char *rp = realpath(path, NULL), *rd = realpath(dir, NULL);
    int in = 0;
    if (rp && rd) {
        n = strlen(rd);
        in = strncmp(rp, rd, n) == 0 && (rp[n] == '\0' || rp[n] == '/' || n == 1);
    }
    free(rp);
    free(rd);
    return in;
}

/* Whether dir holds a directory (not a link) named name. */
static int holds_dir(const char *dir, const char *name)
{
    char *p = wv_xasprintf("%s/%s", dir, name);
    struct stat sb;
    int r = lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
    free(p);
    return r;
}

/*
 * The backup's tablespaces, read and checked before anything is written (and before a dry run
 * returns): every --tablespace-map names one of them; each location is absolute, plain, outside
 * PGDATA and other locations, and empty, or (--delta) holds that tablespace's PG_VERSION directory.
 * Then every manifest entry is validated (pass_validate).
 */
static int check_tablespaces(restore_ctx *c, wv_err *err)
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
    if ((rc = manifest_pass(c, pass_validate, err)) != 0)
        return rc;
    for (int i = 0; i < c->nts; i++) {
        tablespace *t = &c->ts[i];
        int tex, tempty;
        if (!plain_absolute(t->location) || inside(t->location, c->pgdata)) {
            rc = wv_err_set(err, WV_EREFUSED,
                            "tablespace %" PRIu32 " location \"%s\" must be an absolute path "
                            "outside the data directory \"%s\"",
                            t->oid, t->location, c->pgdata);
            wv_err_hint(err,
                        "map it elsewhere with --tablespace-map %s=/new/empty/dir; nothing "
                        "was written",
                        t->location);
            return rc;
        }
        for (int k = 0; k < i; k++)
            if (inside(t->location, c->ts[k].location) || inside(c->ts[k].location, t->location))
                return wv_err_set(err, WV_EREFUSED,
                                  "tablespace locations \"%s\" and \"%s\" overlap",
                                  c->ts[k].location, t->location);
        if ((rc = dir_state(t->location, &tex, &tempty, err)) != 0)
            return rc;
        if (!tex || tempty)
            continue;
        if (o->delta && t->pgverdir && holds_dir(t->location, t->pgverdir)) {
            t->reuse = 1;
            continue;
        }
        if (o->delta)
            rc = wv_err_set(err, WV_EREFUSED,
                            "tablespace %" PRIu32 " location \"%s\" is not empty and holds no "
                            "\"%s\" directory: refusing to restore into it",
                            t->oid, t->location, t->pgverdir ? t->pgverdir : "PG_VERSION");
        else
            rc = wv_err_set(err, WV_EREFUSED, "tablespace %" PRIu32 " location \"%s\" is not empty",
                            t->oid, t->location);
        wv_err_hint(err,
                    "map it elsewhere with --tablespace-map %s=/new/empty/dir%s; nothing was "
                    "written",
                    t->location, o->delta ? "" : ", or use --delta");
        return rc;
    }
    return 0;
}

/* The major version in PGDATA/PG_VERSION (0 if unreadable) and the system identifier in
 * PGDATA/global/pg_control (its first 8 bytes, little-endian; *have_sysid 0 if unreadable). */
static void read_cluster_identity(const char *pgdata, unsigned *major, uint64_t *sysid,
                                  int *have_sysid)
{
    char *p = wv_xasprintf("%s/PG_VERSION", pgdata);
    char buf[16] = {0};
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    size_t got = 0;
    *major = 0;
    *have_sysid = 0;
    if (fd >= 0) {
        if (wv_read_full(fd, buf, sizeof(buf) - 1, &got, p, NULL) == 0)
            *major = (unsigned)strtoul(buf, NULL, 10);
        close(fd);
    }
    free(p);
    p = wv_xasprintf("%s/global/pg_control", pgdata);
    uint8_t ctl[8];
    fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        if (wv_read_full(fd, ctl, sizeof(ctl), &got, p, NULL) == 0 && got == sizeof(ctl)) {
            *sysid = wv_get_le64(ctl);
            *have_sysid = 1;
        }
        close(fd);
    }
    free(p);
}

/* --delta onto a non-empty PGDATA: it must be a data directory of this backup's cluster (its
 * PG_VERSION major and pg_control system identifier), unless --force. */
static int check_delta_target(restore_ctx *c, wv_err *err)
{
    unsigned major;
    uint64_t sysid = 0;
    int have_sysid, rc;
    unsigned want = c->b->h.pg_version / 10000;
    if (c->o->force)
        return 0;
    read_cluster_identity(c->pgdata, &major, &sysid, &have_sysid);
    if (major == 0) {
        rc = wv_err_set(err, WV_EREFUSED,
                        "--delta: \"%s\" is not empty and has no PG_VERSION: it is not a data "
                        "directory, refusing to replace its contents",
                        c->pgdata);
        wv_err_hint(err, "restore into a new or empty directory; --force replaces everything in "
                         "it; nothing was written");
        return rc;
    }
    if (major != want || (have_sysid && sysid != c->b->h.system_id)) {
        rc = wv_err_set(err, WV_EREFUSED,
                        "--delta: \"%s\" is a data directory of another cluster (PostgreSQL %u, "
                        "database system %" PRIu64 "; backup %s is of PostgreSQL %u, database "
                        "system %" PRIu64 ")",
                        c->pgdata, major, have_sysid ? sysid : 0, c->b->h.id, want,
                        c->b->h.system_id);
        wv_err_hint(err, "restore into a new or empty directory, or pass --force to replace that "
                         "cluster's files; nothing was written");
        return rc;
    }
    return 0;
}

/*
 * --xid: a transaction the archive cannot hold is refused. Every transaction id assigned after the
 * chosen backup's checkpoint appears in the WAL that follows it (at least 4 bytes each: a commit or
 * abort record lists it), so the next transaction id at the end of the reachable WAL is at most
 * the backup's next transaction id plus a quarter of the bytes from the backup's start to there.
 */
static int check_xid(const restore_opts *o, repo_plan *rp, wv_err *err)
{
    if (o->target.kind != WV_TARGET_XID)
        return 0;
    const wv_backup *b = rp->plan.backup;
    uint32_t next = 0;
    int rc = rp->facts.ops->backup_next_xid(rp->facts.arg, b, &next, err);
    if (rc != 0 || next == 0)
        return rc;
    uint64_t wal =
        rp->plan.reach.end_lsn > b->h.start_lsn ? rp->plan.reach.end_lsn - b->h.start_lsn : 0;
    uint64_t most = wal / 4 + 1;
    uint32_t ahead = o->target.xid - next; /* modulo 2^32, as transaction ids compare */
    if (ahead >= 0x80000000u || ahead <= most)
        return 0;
    char end[WV_LSN_LEN];
    wv_lsn_format(rp->plan.reach.end_lsn, end);
    rc = wv_err_set(err, WV_EREFUSED,
                    "transaction %" PRIu32 " does not exist in the archive: backup %s's next "
                    "transaction id is %" PRIu32 " and the WAL archived after it (to %s) can hold "
                    "at most %" PRIu64 " more",
                    o->target.xid, b->h.id, next, end, most);
    wv_err_hint(err, "check the transaction id (SELECT txid_current() on the server); nothing was "
                     "written");
    return rc;
}

/* Every check that reads the backup's manifest or the targets, before anything is written. */
static int check_targets(restore_ctx *c, const repo_plan *rp, int exists, int empty, wv_err *err)
{
    (void)rp;
    int rc = check_tablespaces(c, err);
    if (rc == 0 && c->o->delta && exists && !empty)
        rc = check_delta_target(c, err);
    if (rc == 0 && c->nkeep)
        qsort(c->keep, c->nkeep, sizeof(kept), cmp_kept);
    return rc;
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

/* --delta: remove what the backup does not have, in the data directory and inside each reused
 * tablespace's PG_VERSION directory (nothing else in a tablespace location is touched). */
static int prune_delta(restore_ctx *c, wv_err *err)
{
    int rc, fd = openat(c->pgfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", c->pgdata);
    if ((rc = prune(c, fd, "pgdata", err)) != 0)
        return rc;
    for (int i = 0; i < c->nts; i++) {
        tablespace *t = &c->ts[i];
        if (!t->reuse)
            continue;
        fd = openat(t->fd, t->pgverdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return wv_err_errno(err, WV_EIO, errno, "could not open \"%s/%s\"", t->location,
                                t->pgverdir);
        char *mp = wv_xasprintf("tblspc/%" PRIu32 "/%s", t->oid, t->pgverdir);
        rc = prune(c, fd, mp, err);
        free(mp);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Create (if needed) and open a target directory given by the user or the backup. */
static int open_target(const char *path, mode_t mode, int *fd, wv_err *err)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        char *parent = wv_dirname_dup(path);
        int rc = wv_mkdir_p(parent, err);
        free(parent);
        if (rc != 0)
            return rc;
        if (mkdir(path, mode) != 0 && errno != EEXIST)
            return wv_err_errno(err, WV_EIO, errno, "could not create \"%s\"", path);
    }
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return wv_err_errno(err, WV_EIO, errno, "could not open \"%s\"", path);
    return 0;
}

/* The targets opened, then (delta) pruning, directories and links, files; then one sync of each
 * file system. */
static int write_data_dir(restore_ctx *c, const wv_config *cfg, wv_err *err)
{
    int rc;
    mode_t dmode = wv_pg_dir_mode(0, c->group);
    if ((rc = open_target(c->pgdata, dmode, &c->pgfd, err)) != 0)
        return rc;
    for (int i = 0; i < c->nts; i++)
        if ((rc = open_target(c->ts[i].location, dmode, &c->ts[i].fd, err)) != 0)
            return rc;
    if (c->o->delta && (rc = prune_delta(c, err)) != 0)
        return rc;
    if ((rc = manifest_pass(c, pass_dirs, err)) != 0 || (rc = fetch_files(c, cfg, err)) != 0)
        return rc;
    if (syncfs(c->pgfd) != 0)
        return wv_err_errno(err, WV_EIO, errno, "could not sync the file system of \"%s\"",
                            c->pgdata);
    for (int i = 0; i < c->nts; i++)
        if (syncfs(c->ts[i].fd) != 0)
            return wv_err_errno(err, WV_EIO, errno, "could not sync the file system of \"%s\"",
                                c->ts[i].location);
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
    for (int i = 0; i < c->nts; i++) {
        free(c->ts[i].location);
        free(c->ts[i].pgverdir);
        if (c->ts[i].fd >= 0)
            close(c->ts[i].fd);
    }
    wv_buf_free(&c->ts_names);
    for (size_t i = 0; i < c->nkeep; i++)
        free(c->keep[i].path);
    free(c->keep);
    free(c->pgdata);
    if (c->pgfd >= 0)
        close(c->pgfd);
}

int wv_bbcmd_restore(int argc, char **argv, const char *config_path)
{
    restore_opts o;
    wv_err err;
    wv_config *cfg = NULL;
    repo_plan rp;
    restore_ctx c;
    int rc, exists = 0, empty = 1;
    char *conf_abs = NULL, *fetch_bin = NULL, tdesc[128];

    memset(&rp, 0, sizeof(rp));
    memset(&c, 0, sizeof(c));
    c.pgfd = -1;
    wv_err_clear(&err);
    c.o = &o;
    /* Every check, and the plan, before the first byte is written; a dry run makes them all. */
    if ((rc = load_options(argc, argv, config_path, &o, &cfg, &err)) != 0 ||
        (rc = check_pgdata(&c, &exists, &empty, &err)) != 0 ||
        (rc = plan_restore(cfg, &o, &rp, &err)) != 0)
        goto out;
    c.st = rp.repo->st;
    c.b = rp.plan.backup;
    if ((rc = check_xid(&o, &rp, &err)) != 0 ||
        (rc = check_targets(&c, &rp, exists, empty, &err)) != 0 ||
        (rc = find_restore_command(cfg, &fetch_bin, &conf_abs, &err)) != 0)
        goto out;
    describe_target(&o.target, tdesc, sizeof(tdesc));
    report_plan(&o, &rp, tdesc);
    if (o.dry_run) {
        wv_log_info("dry run: nothing written (every check passed)");
        goto out;
    }
    c.t0 = wv_mono_s();
    /* Durable: the data, then the recovery settings last. */
    if ((rc = write_data_dir(&c, cfg, &err)) != 0 ||
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
