/*
 * expire.c - basebackup expire [--dry-run] [--json] [--repo N], and the two commands that change
 * what expire decides by hand: delete --backup ID [--force] [--repo N] and keep --backup ID on|off
 * [--repo N]. The three share one file because they share most of their work: the repository lock
 * (repo/backupset.h), reading the backup set and the retention facts, and the order of deletion
 * (a backup's manifest first, then its objects).
 *
 * expire, per repository (each with its own policy: [retention] and its retention.* overrides):
 *   1. gather: the backup set (manifest headers, keep markers, stored sizes), the WAL archive
 *      inventory and a listing of wal/ with each object's size;
 *   2. wv_retention_apply, then wv_retention_verify once more: the pure function decides every
 *      deletion, this file has no rule of its own;
 *   3. print the plan (a table on a terminal, one summary line otherwise, or --json);
 *   4. unless --dry-run: take the repository lock, gather and decide again under it (a backup may
 *      have finished, a keep flag may have changed), then delete: each expired backup (manifest,
 *      then its objects with remove_many, in batches), then the WAL below each timeline's cut
 *      (remove_many in batches of WV_BACKUP_REMOVE_BATCH, oldest first; never a history file;
 *      a .backup, .partial or .xid object with its segment), then the leftovers of interrupted backups and
 *      interrupted expires (directories without a manifest whose lock is not alive).
 * A kill -9 anywhere leaves a repository that list, verify and restore read as before: a backup is
 * listed until its manifest goes and then is a leftover; WAL below a cut is needed by no kept
 * backup; the lock of a dead process is taken over by the next run, which finishes the job.
 *
 * Time: the policy's `now` is this machine's clock (time(2)) while every time it is compared with
 * is the server's (the backups' stop times, recorded from PostgreSQL). The two are assumed to agree
 * to within minutes, which is what a retention of hours or days needs. The integration tests move
 * `now` with faketime(1) (libfaketime) on posix and ssh repositories; on S3, whose requests are
 * signed with the time and refused when it is hours off, they set the hidden test seam
 * WALVAULT_TEST_NOW (epoch seconds; see wv_bb_now), which moves only the policy's `now`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "core/buf.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/retention_config.h"
#include "core/timeparse.h"
#include "core/units.h"
#include "core/json.h"
#include "pg/walname.h"
#include "repo/backupset.h"
#include "repo/repo.h"
#include "repo/retention.h"
#include "repo/walarchive.h"
#include "repo/xidrange.h"
#include "storage/storage.h"

static const char expire_usage[] =
    "usage: basebackup [-c FILE] expire [--dry-run] [--json] [--repo N]\n"
    "\n"
    "Delete the backups and WAL that no [retention] rule keeps, in every repository (or [repoN]),\n"
    "each by its own policy. Prints what goes and the rules that keep each other backup.\n"
    "\n"
    "  --dry-run  print the plan, delete nothing\n"
    "  --json     the plan and the result as one JSON object\n"
    "  --repo N   only [repoN]\n";

static const char delete_usage[] =
    "usage: basebackup [-c FILE] delete --backup ID [--force] [--repo N]\n"
    "\n"
    "Delete one backup (its manifest first, then its objects) from every repository that holds it\n"
    "(or [repoN]). The newest complete backup is never deleted; a backup kept with --keep (or\n"
    "\"basebackup keep\") only with --force. WAL is left to expire.\n";

static const char keep_usage[] =
    "usage: basebackup [-c FILE] keep --backup ID on|off [--repo N]\n"
    "\n"
    "Set or clear a backup's keep flag in every repository that holds it (or [repoN]): a kept\n"
    "backup, and the WAL from its start, is never expired.\n";

/* ---- small output helpers -------------------------------------------------------------------- */

static void json_epoch(wv_buf *b, int64_t t)
{
    char s[WV_TIME_FORMAT_LEN];
    if (t == WV_RETENTION_FOREVER || t <= 0) {
        wv_buf_append_str(b, "null");
        return;
    }
    wv_time_format_utc(t * 1000000LL, s, sizeof(s));
    wv_json_string(b, s);
}

static void text_epoch(int64_t t, char *out, size_t len)
{
    if (t == WV_RETENTION_FOREVER)
        snprintf(out, len, "never");
    else
        wv_time_format(t * 1000000LL, out, len);
}

static void policy_text(const wv_retention_policy *p, char *out, size_t len)
{
    static const char *names[] = {"daily", "weekly", "monthly", "window"};
    const int64_t v[] = {p->daily, p->weekly, p->monthly, p->window};
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < 4; i++) {
        if (v[i] == WV_RETENTION_UNSET)
            continue;
        char d[32];
        wv_retention_duration_format(v[i], d, sizeof(d));
        used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s=%s",
                                 used ? " " : "", names[i], d);
    }
    for (int i = 0; i < p->nlabels && used < len; i++) {
        char d[32];
        wv_retention_duration_format(p->labels[i].age, d, sizeof(d));
        used += (size_t)snprintf(out + used, len - used, "%slabel.%s=%s", used ? " " : "",
                                 p->labels[i].prefix, d);
    }
}

/* ---- the facts and the decision -------------------------------------------------------------- */

int64_t wv_bb_now(void)
{
    /* A test seam, not a setting: WALVAULT_TEST_NOW=EPOCH_SECONDS replaces the clock for the
     * policy's `now` only. faketime moves the whole process's clock, which an S3 store refuses
     * (request signatures carry the time); the S3 tests use this instead. */
    const char *t = getenv("WALVAULT_TEST_NOW");
    if (t && *t) {
        char *end = NULL;
        long long v = strtoll(t, &end, 10);
        if (end && *end == '\0' && v > 0)
            return (int64_t)v;
    }
    return (int64_t)time(NULL);
}

int wv_bb_retention_compute(const wv_config *cfg, const wv_repo_config *rc, const wv_backupset *bs,
                            const wv_archive *arch, int64_t now, wv_retention_policy *pol,
                            wv_retention_result *res, wv_err *err)
{
    wv_retention_config_for_repo(&cfg->retention, rc->index, pol);
    wv_retention_backup *rb = wv_retention_backups_from_set(bs);
    wv_retention_timeline *rt = wv_retention_timelines_from_archive(arch);
    wv_retention_input in = {.backups = rb,
                             .nbackups = bs->n,
                             .timelines = rt,
                             .ntimelines = arch->ntl,
                             .segsize = arch->segsize,
                             .now = now};
    int r = wv_retention_apply(pol, &in, res, err);
    if (r == 0 && (r = wv_retention_verify(pol, &in, res, err)) < 0)
        wv_retention_result_free(res);
    free(rb);
    free(rt);
    if (r < 0)
        wv_err_prefix(err, "%s: retention: ", rc->name);
    return r;
}

typedef struct walobj {
    char *key;
    uint64_t size;
    uint32_t tli;
} walobj;

typedef struct plan {
    int64_t now;
    wv_retention_policy pol;
    int has_policy;
    wv_backupset bs;
    wv_archive *arch;
    wv_retention_result res;
    int have_res;
    walobj *wal; /* every object under wal/ */
    size_t nwal, capwal;
    char **wal_go; /* keys of the WAL that goes, sorted (oldest first) */
    size_t nwal_go;
    uint64_t wal_go_bytes;
    size_t nbackups_go, nbackups_kept;
    uint64_t backups_go_bytes;
    size_t nleftovers;
} plan;

static void plan_free(plan *p)
{
    if (p->have_res)
        wv_retention_result_free(&p->res);
    wv_archive_free(p->arch);
    wv_backupset_free(&p->bs);
    for (size_t i = 0; i < p->nwal; i++)
        free(p->wal[i].key);
    free(p->wal);
    free(p->wal_go);
    memset(p, 0, sizeof(*p));
}

static int wal_list_cb(void *arg, const char *key, const wv_stat *st)
{
    plan *p = arg;
    if (p->nwal == p->capwal) {
        p->capwal = p->capwal ? 2 * p->capwal : 1024;
        p->wal = wv_xrealloc(p->wal, p->capwal * sizeof(walobj));
    }
    p->wal[p->nwal].key = wv_xstrdup(key);
    p->wal[p->nwal].size = st ? st->size : 0;
    p->wal[p->nwal].tli = 0;
    p->nwal++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Steps 1 and 2: everything the decision needs, and the decision. */
static int plan_make(const wv_config *cfg, const wv_repo *repo, const wv_repo_config *rc,
                     int64_t now, plan *p, wv_err *err)
{
    wv_storage *st = repo->st;
    memset(p, 0, sizeof(*p));
    p->now = now;
    int r = wv_backupset_load(st, &p->bs, err);
    if (r == 0)
        r = wv_archive_scan(st, repo->info.wal_segsize, &p->arch, err);
    if (r == 0)
        r = wv_storage_list(st, "wal/", wal_list_cb, p, err);
    if (r == 0)
        r = wv_bb_retention_compute(cfg, rc, &p->bs, p->arch, now, &p->pol, &p->res, err);
    if (r < 0)
        return r;
    p->have_res = 1;
    p->has_policy = p->res.has_policy;
    for (size_t i = 0; i < p->bs.n; i++) {
        if (p->res.backups[i].verdict == WV_RETENTION_EXPIRED) {
            p->nbackups_go++;
            p->backups_go_bytes += p->bs.b[i].totals.stored_size;
        } else if (p->res.backups[i].verdict == WV_RETENTION_KEPT) {
            p->nbackups_kept++;
        }
    }
    p->wal_go = wv_xcalloc(p->nwal ? p->nwal : 1, sizeof(char *));
    for (size_t i = 0; i < p->nwal; i++) {
        const char *base = strrchr(p->wal[i].key, '/');
        base = base ? base + 1 : p->wal[i].key;
        char segname[64];
        if (wv_xidrange_is_name(base)) { /* a segment's transaction id range goes with it */
            snprintf(segname, sizeof(segname), "%.*s",
                     (int)(strlen(base) - strlen(WV_REPO_XID_SUFFIX)), base);
            base = segname;
        }
        wv_walname wn;
        if (wv_walname_parse(base, &wn) != WV_WALNAME_INVALID)
            p->wal[i].tli = wn.tli;
        if (!wv_retention_walname_may_go(&p->res, base, repo->info.wal_segsize))
            continue;
        p->wal_go[p->nwal_go++] = p->wal[i].key;
        p->wal_go_bytes += p->wal[i].size;
    }
    qsort(p->wal_go, p->nwal_go, sizeof(char *), cmp_str);
    p->nleftovers = p->bs.norphans;
    return 0;
}

/* WAL files and bytes that go on timeline tli. */
static void wal_tli_counts(const plan *p, uint32_t tli, size_t *files, uint64_t *bytes)
{
    *files = 0;
    *bytes = 0;
    for (size_t i = 0; i < p->nwal; i++) {
        if (p->wal[i].tli != tli)
            continue;
        const char *base = strrchr(p->wal[i].key, '/');
        base = base ? base + 1 : p->wal[i].key;
        if (wv_retention_walname_may_go(&p->res, base, p->arch->segsize)) {
            (*files)++;
            *bytes += p->wal[i].size;
        }
    }
}

/* ---- step 3: the plan for people and for programs -------------------------------------------- */

static void summary_line(const char *repo, const plan *p, int dry_run, wv_buf *out)
{
    char a[32], b[32];
    wv_human_bytes(p->backups_go_bytes, a, sizeof(a));
    wv_human_bytes(p->wal_go_bytes, b, sizeof(b));
    wv_buf_printf(out, "%s %zu backup%s (%s) and %zu WAL file%s (%s) from %s; %s %zu backup%s",
                  dry_run ? "would expire" : "expired", p->nbackups_go,
                  p->nbackups_go == 1 ? "" : "s", a, p->nwal_go, p->nwal_go == 1 ? "" : "s", b,
                  repo, dry_run ? "would keep" : "kept", p->nbackups_kept,
                  p->nbackups_kept == 1 ? "" : "s");
    if (p->nleftovers)
        wv_buf_printf(out, "; %s %zu leftover%s of interrupted backups",
                      dry_run ? "would remove" : "removed", p->nleftovers,
                      p->nleftovers == 1 ? "" : "s");
    wv_buf_append_str(out, "\n");
}

static void render_table(const wv_repo_config *rc, const wv_repo *repo, const plan *p, int dry_run,
                         wv_buf *out)
{
    char pol[512], now[WV_TIME_FORMAT_LEN];
    policy_text(&p->pol, pol, sizeof(pol));
    wv_time_format(p->now * 1000000LL, now, sizeof(now));
    wv_buf_printf(out, "%s (%s): retention %s; now %s\n", rc->name, wv_storage_location(repo->st),
                  pol, now);
    if (p->bs.n)
        wv_buf_printf(out, "  %-18s %-20s %-24s %-7s %10s  %s\n", "backup", "label", "ended",
                      "verdict", "stored", "kept by (until)");
    for (size_t k = 0; k < p->res.norder; k++) {
        size_t i = p->res.order[k];
        const wv_backup *b = &p->bs.b[i];
        const wv_retention_backup_result *r = &p->res.backups[i];
        char en[WV_TIME_FORMAT_LEN], sz[32], rules[1024], until[WV_TIME_FORMAT_LEN];
        wv_time_format(b->h.stop_time * 1000000LL, en, sizeof(en));
        wv_human_bytes(b->totals.stored_size, sz, sizeof(sz));
        if (r->verdict == WV_RETENTION_KEPT) {
            wv_retention_rules_text(r, rules, sizeof(rules));
            text_epoch(r->expires_at, until, sizeof(until));
        } else {
            snprintf(rules, sizeof(rules), "no rule keeps it");
            until[0] = '\0';
        }
        wv_buf_printf(out, "  %-18s %-20.20s %-24s %-7s %10s  %s%s%s%s\n", b->h.id,
                      b->h.label && b->h.label[0] ? b->h.label : "-", en,
                      r->verdict == WV_RETENTION_KEPT ? "keep" : "expire", sz, rules,
                      until[0] ? " (until " : "", until, until[0] ? ")" : "");
    }
    for (size_t t = 0; t < p->res.ntimelines; t++) {
        const wv_retention_wal_result *w = &p->res.timelines[t];
        size_t files;
        uint64_t bytes;
        char sz[32], seg[WV_WALNAME_SEGMENT_LEN];
        wal_tli_counts(p, w->tli, &files, &bytes);
        wv_human_bytes(bytes, sz, sizeof(sz));
        if (w->keep_from == UINT64_MAX)
            snprintf(seg, sizeof(seg), "all of it");
        else
            wv_walname_format_segment(w->tli, w->keep_from, p->arch->segsize, seg);
        wv_buf_printf(out, "  WAL timeline %" PRIu32 ": %s %zu file%s (%s); keeps from %s: %s\n",
                      w->tli, dry_run ? "would expire" : "expires", files, files == 1 ? "" : "s",
                      sz, w->keep_from == UINT64_MAX ? "nothing" : seg, w->reason);
    }
}

static void render_json(const wv_repo_config *rc, const plan *p, int dry_run, int done, wv_buf *out)
{
    wv_buf_append_str(out, "\n  {\"repo\": ");
    wv_json_string(out, rc->name);
    wv_buf_printf(out, ", \"policy\": true, \"dry_run\": %s, \"done\": %s, \"now\": ",
                  dry_run ? "true" : "false", done ? "true" : "false");
    json_epoch(out, p->now);
    wv_buf_append_str(out, ",\n   \"backups\": [");
    for (size_t k = 0; k < p->res.norder; k++) {
        size_t i = p->res.order[k];
        const wv_backup *b = &p->bs.b[i];
        const wv_retention_backup_result *r = &p->res.backups[i];
        wv_buf_append_str(out, k ? ",\n    {\"id\": " : "\n    {\"id\": ");
        wv_json_string(out, b->h.id);
        wv_buf_append_str(out, ", \"label\": ");
        wv_json_string(out, b->h.label);
        wv_buf_printf(out, ", \"keep\": %s, \"stop_time\": ", b->h.keep ? "true" : "false");
        json_epoch(out, b->h.stop_time);
        wv_buf_printf(out, ", \"stored_size\": %" PRIu64 ", \"verdict\": \"%s\", \"rules\": [",
                      b->totals.stored_size, r->verdict == WV_RETENTION_KEPT ? "kept" : "expired");
        for (int j = 0; j < r->nrules; j++) {
            wv_buf_append_str(out, j ? ", {\"rule\": " : "{\"rule\": ");
            wv_json_string(out, r->rules[j].text);
            wv_buf_append_str(out, ", \"expires_at\": ");
            json_epoch(out, r->rules[j].expires_at);
            wv_buf_append_str(out, "}");
        }
        wv_buf_append_str(out, "], \"expires_at\": ");
        json_epoch(out, r->verdict == WV_RETENTION_KEPT ? r->expires_at : 0);
        wv_buf_append_str(out, "}");
    }
    wv_buf_append_str(out, "],\n   \"wal\": [");
    for (size_t t = 0; t < p->res.ntimelines; t++) {
        const wv_retention_wal_result *w = &p->res.timelines[t];
        size_t files;
        uint64_t bytes;
        char seg[WV_WALNAME_SEGMENT_LEN];
        wal_tli_counts(p, w->tli, &files, &bytes);
        wv_buf_printf(out, "%s{\"timeline\": %" PRIu32 ", \"keep_from\": ", t ? ", " : "", w->tli);
        if (w->keep_from == UINT64_MAX) {
            wv_buf_append_str(out, "null");
        } else {
            wv_walname_format_segment(w->tli, w->keep_from, p->arch->segsize, seg);
            wv_json_string(out, seg);
        }
        wv_buf_printf(out, ", \"files\": %zu, \"bytes\": %" PRIu64 ", \"reason\": ", files, bytes);
        wv_json_string(out, w->reason);
        wv_buf_append_str(out, "}");
    }
    wv_buf_printf(out,
                  "],\n   \"expired_backups\": %zu, \"expired_backup_bytes\": %" PRIu64
                  ", \"expired_wal_files\": %zu, \"expired_wal_bytes\": %" PRIu64
                  ", \"kept_backups\": %zu, \"leftovers\": %zu}",
                  p->nbackups_go, p->backups_go_bytes, p->nwal_go, p->wal_go_bytes,
                  p->nbackups_kept, p->nleftovers);
}

/* ---- step 4: deleting ------------------------------------------------------------------------ */

static int delete_plan(wv_storage *st, const plan *p, wv_err *err)
{
    int r = 0;
    for (size_t k = 0; k < p->res.norder && r == 0; k++) {
        size_t i = p->res.order[k];
        if (p->res.backups[i].verdict != WV_RETENTION_EXPIRED)
            continue;
        size_t n = 0;
        r = wv_backup_remove_counted(st, p->bs.b[i].h.id, &n, err);
        if (r == 0)
            wv_log_debug("%s: expired backup %s (%zu objects)", wv_storage_name(st),
                         p->bs.b[i].h.id, n);
        else
            wv_err_prefix(err, "expiring backup %s: ", p->bs.b[i].h.id);
    }
    for (size_t i = 0; i < p->nwal_go && r == 0; i += WV_BACKUP_REMOVE_BATCH) {
        size_t m =
            p->nwal_go - i < WV_BACKUP_REMOVE_BATCH ? p->nwal_go - i : WV_BACKUP_REMOVE_BATCH;
        r = wv_storage_remove_many(st, (const char *const *)p->wal_go + i, m, err);
        if (r < 0)
            wv_err_prefix(err, "expiring WAL: ");
    }
    if (r == 0)
        r = wv_backup_cleanup_leftovers(st, err);
    return r;
}

typedef struct expire_opts {
    int dry_run, json, tty;
} expire_opts;

/* One repository: 0 done (or nothing to do), else an error. *nopolicy is set when it has none. */
static int expire_repo(const wv_config *cfg, const wv_repo_config *rc, const expire_opts *o,
                       int *nopolicy, wv_buf *out, wv_err *err)
{
    wv_repo *repo = NULL;
    plan p = {0};
    int locked = 0, done = 0;
    int r = wv_repo_open(rc, &repo, err);
    *nopolicy = 0;
    if (r == 0) {
        wv_retention_policy pol;
        if (!wv_retention_config_for_repo(&cfg->retention, rc->index, &pol)) {
            *nopolicy = 1;
            if (o->json) {
                wv_buf_append_str(out, "\n  {\"repo\": ");
                wv_json_string(out, rc->name);
                wv_buf_append_str(out, ", \"policy\": false}");
            }
            goto out;
        }
        r = wv_repo_load_info(repo, err);
        if (r == WV_ENOTFOUND) { /* nothing archived yet */
            r = 0;
            if (o->json) {
                wv_buf_append_str(out, "\n  {\"repo\": ");
                wv_json_string(out, rc->name);
                wv_buf_append_str(out, ", \"policy\": true, \"empty\": true}");
            } else {
                wv_buf_printf(out, "%s: empty, nothing to expire\n", rc->name);
            }
            goto out;
        }
    }
    if (r == 0)
        r = plan_make(cfg, repo, rc, wv_bb_now(), &p, err);
    if (r == 0 && !o->dry_run) {
        if ((r = wv_repo_lock_acquire(repo->st, "expire", err)) == 0) {
            locked = 1;
            /* decide again under the lock: a backup may have finished meanwhile */
            plan_free(&p);
            r = plan_make(cfg, repo, rc, wv_bb_now(), &p, err);
        }
    }
    if (r < 0)
        goto out;
    if (o->tty && !o->json)
        render_table(rc, repo, &p, o->dry_run, out);
    if (!o->dry_run) {
        /* the plan goes out before the deleting starts (a table on a terminal) */
        if (o->tty && !o->json) {
            fwrite(out->data, 1, out->len, stdout);
            fflush(stdout);
            out->len = 0;
        }
        r = delete_plan(repo->st, &p, err);
        if (r < 0)
            goto out;
        done = 1;
    }
    if (o->json)
        render_json(rc, &p, o->dry_run, done, out);
    else
        summary_line(rc->name, &p, o->dry_run, out);
out:
    if (locked)
        wv_repo_lock_release(repo->st);
    plan_free(&p);
    wv_repo_close(repo);
    return r;
}

/* expire over the configuration's repositories (only [repoN] when only > 0, only those with
 * after_backup when after_backup). Output goes to stdout. */
static int expire_run(const wv_config *cfg, int only, int after_backup, const expire_opts *o,
                      wv_err *err)
{
    wv_buf out = WV_BUF_INIT;
    int rc = 0, any_policy = 0, nrepos = 0, first = 1;
    if (o->json)
        wv_buf_append_str(&out, "{\"repositories\": [");
    for (int i = 0; i < cfg->nrepos && rc == 0; i++) {
        const wv_repo_config *r = &cfg->repos[i];
        wv_retention_policy pol;
        int has = wv_retention_config_for_repo(&cfg->retention, r->index, &pol);
        if (only && r->index != only)
            continue;
        if (after_backup && (!has || !pol.after_backup))
            continue;
        if (o->json && !first)
            wv_buf_append_str(&out, ",");
        first = 0;
        int nopolicy = 0;
        rc = expire_repo(cfg, r, o, &nopolicy, &out, err);
        nrepos++;
        if (!nopolicy)
            any_policy = 1;
        else if (!o->json)
            wv_buf_printf(&out,
                          "%s: no retention policy (no [retention], no retention.* keys): "
                          "nothing is expired\n",
                          r->name);
    }
    if (o->json) {
        wv_buf_append_str(&out, "\n]}\n");
    } else if (rc == 0 && !any_policy && nrepos) {
        out.len = 0;
        wv_buf_printf(&out, "no [retention] in %s: nothing is expired\n", cfg->file);
    }
    if (out.len)
        fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
    wv_buf_free(&out);
    return rc;
}

int wv_bb_expire_after_backup(const wv_config *cfg, wv_err *err)
{
    expire_opts o = {.tty = isatty(STDOUT_FILENO)};
    return expire_run(cfg, 0, 1, &o, err);
}

int wv_bbcmd_expire(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"dry-run", no_argument, NULL, 'n'},    {"json", no_argument, NULL, 'j'},
        {"repo", required_argument, NULL, 'r'}, {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    expire_opts o = {.tty = isatty(STDOUT_FILENO)};
    int repo = 0, c, rc;
    wv_err err;
    wv_config *cfg = NULL;
    wv_cli cli = {.config_path = config_path};

    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o.dry_run = 1;
            break;
        case 'j':
            o.json = 1;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &repo, &err) < 0)
                return wv_cli_fail(&err);
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(expire_usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("expire", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (wv_cli_no_more_args("expire", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    if ((rc = wv_cli_load_config(&cli, &cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if (repo && wv_cli_repo_exists(cfg, "--repo", repo, &err) < 0) {
        wv_config_free(cfg);
        return wv_cli_fail(&err);
    }
    rc = expire_run(cfg, repo, 0, &o, &err);
    if (!o.dry_run)
        wv_notify(cfg, &(wv_notify_event){.event = "expire",
                                          .ok = rc == 0,
                                          .message = rc ? err.msg : "expire complete"});
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}

/* ---- delete and keep ------------------------------------------------------------------------- */

typedef struct manual_args {
    const char *backup;
    int force, repo;
    int keep; /* keep: 1 on, 0 off */
    wv_cli cli;
} manual_args;

static int parse_manual(int argc, char **argv, const char *name, const char *usage, int is_keep,
                        manual_args *a, wv_err *err)
{
    static const struct option longopts[] = {
        {"backup", required_argument, NULL, 'b'}, {"force", no_argument, NULL, 'f'},
        {"repo", required_argument, NULL, 'r'},   {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            a->backup = optarg;
            break;
        case 'f':
            if (is_keep)
                return wv_cli_bad_option(name, argv, err);
            a->force = 1;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &a->repo, err) < 0)
                return err->code;
            break;
        case 'c':
            a->cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            return wv_cli_bad_option(name, argv, err);
        }
    }
    if (is_keep) {
        if (optind >= argc ||
            (strcmp(argv[optind], "on") != 0 && strcmp(argv[optind], "off") != 0)) {
            wv_err_set(err, WV_EUSAGE, "keep needs on or off after --backup ID");
            return wv_err_hint(err, "run \"basebackup keep --help\" for usage");
        }
        a->keep = strcmp(argv[optind], "on") == 0;
        optind++;
    }
    if (wv_cli_no_more_args(name, argc, argv, err) != 0)
        return err->code;
    if (!a->backup) {
        wv_err_set(err, WV_EUSAGE, "%s needs --backup ID", name);
        return wv_err_hint(err, "\"basebackup list\" shows the backups");
    }
    if (!wv_manifest_id_valid(a->backup))
        return wv_err_set(err, WV_EUSAGE, "\"%s\" is not a backup id", a->backup);
    return 0;
}

/* The newest complete backup of a set, by the retention policy's order (NULL if none). */
static const char *newest_id(const wv_backupset *bs, wv_err *err)
{
    wv_retention_policy none;
    wv_retention_result res;
    wv_retention_policy_init(&none);
    wv_retention_backup *rb = wv_retention_backups_from_set(bs);
    wv_retention_input in = {.backups = rb, .nbackups = bs->n, .segsize = 16u << 20, .now = 0};
    const char *id = NULL;
    if (wv_retention_apply(&none, &in, &res, err) == 0) {
        if (res.norder)
            id = bs->b[res.order[res.norder - 1]].h.id;
        wv_retention_result_free(&res);
    }
    free(rb);
    return id;
}

/* May backup a->backup be deleted from this set? 0 yes, 1 not there, or WV_EREFUSED. */
static int delete_check(const wv_repo_config *rc, const wv_backupset *bs, const manual_args *a,
                        wv_err *err)
{
    const wv_backup *b = wv_backupset_find(bs, a->backup);
    if (!b)
        return 1;
    const char *newest = newest_id(bs, err);
    if (newest && strcmp(newest, a->backup) == 0) {
        wv_err_set(err, WV_EREFUSED,
                   "%s: backup %s is the newest complete backup: not deleted (with it, recovery "
                   "from WAL archived since would have no base)",
                   rc->name, a->backup);
        return wv_err_hint(err, "take a new backup first, then delete this one");
    }
    if (b->h.keep && !a->force) {
        wv_err_set(err, WV_EREFUSED, "%s: backup %s is kept (--keep): not deleted", rc->name,
                   a->backup);
        return wv_err_hint(err,
                           "run \"basebackup keep --backup %s off\" first, or delete with --force",
                           a->backup);
    }
    return 0;
}

int wv_bbcmd_delete(int argc, char **argv, const char *config_path)
{
    manual_args a = {.cli = {.config_path = config_path}};
    wv_err err;
    wv_config *cfg = NULL;
    int rc, found = 0;
    wv_err_clear(&err);
    if ((rc = parse_manual(argc, argv, "delete", delete_usage, 0, &a, &err)) != 0)
        return rc > 0 ? 0 : wv_cli_fail(&err);
    if ((rc = wv_cli_load_config(&a.cli, &cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if (a.repo && (rc = wv_cli_repo_exists(cfg, "--repo", a.repo, &err)) < 0)
        goto out;
    /* First every repository is checked, so that a refusal in one deletes nothing anywhere. */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (int i = 0; i < cfg->nrepos && rc == 0; i++) {
            const wv_repo_config *r = &cfg->repos[i];
            wv_repo *repo = NULL;
            wv_backupset bs = {0};
            int locked = 0;
            if (a.repo && r->index != a.repo)
                continue;
            rc = wv_repo_open(r, &repo, &err);
            if (rc == 0 && pass == 1 && (rc = wv_repo_lock_acquire(repo->st, "delete", &err)) == 0)
                locked = 1;
            if (rc == 0)
                rc = wv_backupset_load(repo->st, &bs, &err);
            int c = rc == 0 ? delete_check(r, &bs, &a, &err) : rc;
            if (c < 0) {
                rc = c;
            } else if (c == 0) {
                found++;
                if (pass == 1) {
                    size_t n = 0;
                    uint64_t stored = wv_backupset_find(&bs, a.backup)->totals.stored_size;
                    rc = wv_backup_remove_counted(repo->st, a.backup, &n, &err);
                    if (rc == 0) {
                        char sz[32];
                        wv_human_bytes(stored, sz, sizeof(sz));
                        printf("deleted backup %s from %s (%zu objects, %s); expire removes the "
                               "WAL no kept backup needs\n",
                               a.backup, r->name, n, sz);
                    }
                }
            }
            if (locked)
                wv_repo_lock_release(repo->st);
            wv_backupset_free(&bs);
            wv_repo_close(repo);
        }
        if (rc == 0 && pass == 0 && !found) {
            rc = wv_err_set(&err, WV_ENOTFOUND, "backup %s: not in %s", a.backup,
                            a.repo ? "that repository" : "any repository");
            wv_err_hint(&err, "\"basebackup list\" shows the backups");
        }
        found = 0;
    }
out:
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}

int wv_bbcmd_keep(int argc, char **argv, const char *config_path)
{
    manual_args a = {.cli = {.config_path = config_path}};
    wv_err err;
    wv_config *cfg = NULL;
    int rc, found = 0;
    wv_err_clear(&err);
    if ((rc = parse_manual(argc, argv, "keep", keep_usage, 1, &a, &err)) != 0)
        return rc > 0 ? 0 : wv_cli_fail(&err);
    if ((rc = wv_cli_load_config(&a.cli, &cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if (a.repo && (rc = wv_cli_repo_exists(cfg, "--repo", a.repo, &err)) < 0)
        goto out;
    for (int i = 0; i < cfg->nrepos && rc == 0; i++) {
        const wv_repo_config *r = &cfg->repos[i];
        wv_repo *repo = NULL;
        wv_backupset bs = {0};
        int locked = 0;
        if (a.repo && r->index != a.repo)
            continue;
        rc = wv_repo_open(r, &repo, &err);
        /* under the lock: an expire deciding meanwhile would not see the new flag */
        if (rc == 0 && (rc = wv_repo_lock_acquire(repo->st, "keep", &err)) == 0)
            locked = 1;
        if (rc == 0)
            rc = wv_backupset_load(repo->st, &bs, &err);
        if (rc == 0 && wv_backupset_find(&bs, a.backup)) {
            found++;
            if ((rc = wv_backup_keep_write(repo->st, a.backup, a.keep, &err)) == 0)
                printf("backup %s in %s: keep %s\n", a.backup, r->name, a.keep ? "on" : "off");
        }
        if (locked)
            wv_repo_lock_release(repo->st);
        wv_backupset_free(&bs);
        wv_repo_close(repo);
    }
    if (rc == 0 && !found) {
        rc = wv_err_set(&err, WV_ENOTFOUND, "backup %s: not in %s", a.backup,
                        a.repo ? "that repository" : "any repository");
        wv_err_hint(&err, "\"basebackup list\" shows the backups");
    }
out:
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}
