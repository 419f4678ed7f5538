/*
 * list.c - basebackup list [--json] [--repo N]: every backup of each repository, the recoverable
 * window per timeline (real commit times from the archived WAL), and the gaps in the archive.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/walarchive.h"
#include "repo/backupset.h"
#include "core/buf.h"
#include "core/cli.h"
#include "commands.h"
#include "core/config.h"
#include "core/log.h"
#include "repo/recovery.h"
#include "repo/repo.h"
#include "core/timeparse.h"
#include "core/units.h"
#include "core/json.h"
#include "pg/walname.h"
#include "repo/retention.h"

static const char usage[] =
    "usage: basebackup [-c FILE] list [--json] [--repo N]\n"
    "\n"
    "List the backups of every repository (or [repoN]) and the recoverable window per timeline:\n"
    "from the end of the oldest usable backup to the last commit the archived WAL reaches.\n";

static void json_time(wv_buf *b, int64_t us)
{
    char t[WV_TIME_FORMAT_LEN];
    if (us == INT64_MIN) {
        wv_buf_append_str(b, "null");
        return;
    }
    wv_time_format_utc(us, t, sizeof(t));
    wv_json_string(b, t);
}

static void json_lsn(wv_buf *b, uint64_t lsn)
{
    char l[WV_LSN_LEN];
    wv_lsn_format(lsn, l);
    wv_json_string(b, l);
}

/* Holes inside one timeline's own range of archived segments. */
typedef struct gap {
    uint32_t tli;
    uint64_t first, last; /* missing segnos */
} gap;

static size_t find_gaps(const wv_archive *a, gap *out, size_t max)
{
    size_t n = 0;
    for (size_t t = 0; t < a->ntl; t++) {
        const wv_archive_tli *tl = &a->tls[t];
        for (size_t i = 1; i < tl->nseg && n < max; i++)
            if (tl->segnos[i] != tl->segnos[i - 1] + 1) {
                out[n].tli = tl->tli;
                out[n].first = tl->segnos[i - 1] + 1;
                out[n].last = tl->segnos[i] - 1;
                n++;
            }
    }
    return n;
}

/* Everything list shows of one repository, gathered before anything is rendered. */
typedef struct listing {
    const char *name;
    char *location;
    char encryption[64]; /* "none", "symmetric key 0123...", "public key 0123..." */
    int empty;           /* nothing archived yet: only name and location */
    wv_repo_info info;
    wv_backupset bs;
    wv_archive *arch;
    wv_window *w;
    size_t nw;
    gap gaps[64];
    size_t ngaps;
    wv_retention_policy pol;
    wv_retention_result res; /* what keeps each backup (has_policy 0 without [retention]) */
    int have_res;
    /* segments dropped by archive_queue_max (gaps/<name>), sorted */
    char (*dropped)[WV_WALNAME_SEGMENT_LEN];
    size_t ndropped;
    /* lagging: another repository holds newer segments of a timeline this one has */
    const char *ahead_repo;
    uint32_t ahead_tli;
    uint64_t ahead_segs;
    char ahead_last[WV_WALNAME_SEGMENT_LEN];
} listing;

static void listing_free(listing *l)
{
    free(l->dropped);
    if (l->have_res)
        wv_retention_result_free(&l->res);
    free(l->w);
    wv_archive_free(l->arch);
    wv_backupset_free(&l->bs);
    free(l->location);
    memset(l, 0, sizeof(*l));
}

static int dropped_cb(void *arg, const char *key, const wv_stat *st)
{
    listing *l = arg;
    (void)st;
    const char *name = key + strlen(WV_REPO_GAPS_PREFIX);
    if (wv_walname_parse(name, NULL) != WV_WALNAME_SEGMENT || l->ndropped >= 4096)
        return 0;
    l->dropped = wv_xrealloc(l->dropped, (l->ndropped + 1) * sizeof(*l->dropped));
    snprintf(l->dropped[l->ndropped++], sizeof(l->dropped[0]), "%s", name);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp((const char *)a + 8, (const char *)b + 8);
}

/* Read one repository: its identity, backups, archive inventory, recoverable windows and what
 * the retention policy keeps. */
static int gather_listing(const wv_config *cfg, const wv_repo_config *rc, listing *l, wv_err *err)
{
    wv_repo *repo = NULL;
    wv_recovery_facts facts = {0};
    memset(l, 0, sizeof(*l));
    l->name = rc->name;
    int r = wv_repo_open(rc, &repo, err);
    if (r == 0) {
        l->location = wv_xstrdup(wv_storage_location(repo->st));
        const wv_obj_crypto *c = wv_repo_crypto(repo->st);
        if (!c)
            snprintf(l->encryption, sizeof(l->encryption), "none");
        else
            snprintf(l->encryption, sizeof(l->encryption), "%s key %016" PRIx64,
                     c->mode == WV_OBJ_KEYMODE_X25519 ? "public" : "symmetric", c->key_id);
        r = wv_repo_load_info(repo, err);
        if (r == WV_ENOTFOUND) {
            l->empty = 1;
            r = 0;
        }
        l->info = repo->info;
    }
    if (r == 0 && !l->empty)
        r = wv_backupset_load(repo->st, &l->bs, err);
    if (r == 0 && !l->empty)
        r = wv_backupset_check_cluster(&l->bs, rc->name, repo->info.system_id,
                                       repo->info.wal_segsize, err);
    if (r == 0 && !l->empty)
        r = wv_archive_scan(repo->st, repo->info.wal_segsize, &l->arch, err);
    if (r == 0 && !l->empty)
        r = wv_recovery_facts_gather(repo->st, l->arch, &l->bs, NULL, &facts, err);
    if (r == 0 && !l->empty)
        r = wv_recovery_windows(&facts, &l->w, &l->nw, err);
    if (r == 0 && !l->empty)
        l->ngaps = find_gaps(l->arch, l->gaps, 64);
    if (r == 0 && !l->empty &&
        (r = wv_storage_list(repo->st, WV_REPO_GAPS_PREFIX, dropped_cb, l, err)) == 0 &&
        l->ndropped)
        qsort(l->dropped, l->ndropped, sizeof(l->dropped[0]), name_cmp);
    if (r == 0 && !l->empty &&
        (r = wv_bb_retention_compute(cfg, rc, &l->bs, l->arch, wv_bb_now(), &l->pol, &l->res,
                                     err)) == 0)
        l->have_res = 1;
    wv_recovery_facts_free(&facts);
    wv_repo_close(repo);
    return r;
}

/*
 * The retention column of backup i (the rules that keep it and when it expires, as expire would
 * decide now): text "daily 2026-11-30, weekly 2026-W48 until 2026-12-30 01:02:11+00", "expires
 * next run" or "-" without a policy; JSON ", \"retention\": {...}" (null without a policy).
 */
static void retention_cell(const wv_retention_result *res, size_t i, int json, wv_buf *out)
{
    const wv_retention_backup_result *r = res && res->has_policy ? &res->backups[i] : NULL;
    char rules[1024], until[WV_TIME_FORMAT_LEN] = "never";
    if (r && r->verdict == WV_RETENTION_KEPT) {
        wv_retention_rules_text(r, rules, sizeof(rules));
        if (r->expires_at != WV_RETENTION_FOREVER)
            (json ? wv_time_format_utc : wv_time_format)(r->expires_at * 1000000LL, until,
                                                         sizeof(until));
    }
    if (!json) {
        if (!r)
            wv_buf_append_str(out, "-");
        else if (r->verdict != WV_RETENTION_KEPT)
            wv_buf_append_str(out, "no rule keeps it: expires at the next expire");
        else
            wv_buf_printf(out, "%s until %s", rules, until);
        return;
    }
    if (!r) {
        wv_buf_append_str(out, ", \"retention\": null");
        return;
    }
    wv_buf_printf(out, ", \"retention\": {\"verdict\": \"%s\", \"kept_by\": [",
                  r->verdict == WV_RETENTION_KEPT ? "kept" : "expired");
    for (int j = 0; j < r->nrules; j++) {
        wv_buf_append_str(out, j ? ", " : "");
        wv_json_string(out, r->rules[j].text);
    }
    wv_buf_append_str(out, "], \"expires_at\": ");
    if (r->verdict != WV_RETENTION_KEPT || r->expires_at == WV_RETENTION_FOREVER)
        wv_buf_append_str(out, "null");
    else
        wv_json_string(out, until);
    wv_buf_append_str(out, "}");
}

static void json_backups(const wv_backupset *bs, const wv_retention_result *res, wv_buf *out)
{
    for (size_t i = 0; i < bs->n; i++) {
        const wv_manifest_header *h = &bs->b[i].h;
        wv_buf_append_str(out, i ? ",\n    {" : "\n    {");
        wv_buf_append_str(out, "\"id\": ");
        wv_json_string(out, h->id);
        wv_buf_append_str(out, ", \"label\": ");
        wv_json_string(out, h->label);
        wv_buf_printf(out, ", \"keep\": %s, \"timeline\": %" PRIu32 ", \"start_lsn\": ",
                      h->keep ? "true" : "false", h->timeline);
        json_lsn(out, h->start_lsn);
        wv_buf_append_str(out, ", \"stop_lsn\": ");
        json_lsn(out, h->stop_lsn);
        wv_buf_append_str(out, ", \"start_time\": ");
        json_time(out, h->start_time * 1000000LL);
        wv_buf_append_str(out, ", \"stop_time\": ");
        json_time(out, h->stop_time * 1000000LL);
        wv_buf_printf(out,
                      ", \"duration_s\": %" PRId64 ", \"files\": %" PRIu64 ", \"size\": %" PRIu64
                      ", \"stored_size\": %" PRIu64 ", \"pg_version\": %" PRIu32 "}",
                      h->stop_time - h->start_time, bs->b[i].totals.files, bs->b[i].totals.size,
                      bs->b[i].totals.stored_size, h->pg_version);
        out->len--; /* the "}" */
        retention_cell(res, i, 1, out);
        wv_buf_append_str(out, "}");
    }
}

static void json_windows(const wv_window *w, size_t nw, wv_buf *out)
{
    for (size_t i = 0; i < nw; i++) {
        wv_buf_printf(out, "%s{\"timeline\": %" PRIu32 ", \"from\": ", i ? ",\n    " : "\n    ",
                      w[i].tli);
        json_time(out, w[i].from_us);
        wv_buf_append_str(out, ", \"to\": ");
        json_time(out, w[i].to_us);
        wv_buf_append_str(out, ", \"from_lsn\": ");
        json_lsn(out, w[i].from_lsn);
        wv_buf_append_str(out, ", \"to_lsn\": ");
        json_lsn(out, w[i].to_lsn);
        wv_buf_append_str(out, ", \"first_backup\": ");
        wv_json_string(out, w[i].first_backup);
        if (w[i].gap) {
            wv_buf_append_str(out, ", \"stops_at_missing_segment\": ");
            wv_json_string(out, w[i].missing);
            wv_buf_append_str(out, ", \"wal_resumes_at\": ");
            json_time(out, w[i].resume_us);
        }
        wv_buf_append_str(out, "}");
    }
}

static void json_archive(const listing *l, wv_buf *out)
{
    const wv_archive *arch = l->arch;
    for (size_t t = 0; t < arch->ntl; t++) {
        const wv_archive_tli *tl = &arch->tls[t];
        char a[WV_WALNAME_SEGMENT_LEN] = "", b[WV_WALNAME_SEGMENT_LEN] = "";
        if (tl->nseg) {
            wv_walname_format_segment(tl->tli, tl->segnos[0], arch->segsize, a);
            wv_walname_format_segment(tl->tli, tl->segnos[tl->nseg - 1], arch->segsize, b);
        }
        wv_buf_printf(out, "%s{\"timeline\": %" PRIu32 ", \"segments\": %zu, \"history\": %s",
                      t ? ", " : "", tl->tli, tl->nseg, tl->has_history ? "true" : "false");
        wv_buf_append_str(out, ", \"first_segment\": ");
        wv_json_string(out, a);
        wv_buf_append_str(out, ", \"last_segment\": ");
        wv_json_string(out, b);
        wv_buf_append_str(out, "}");
    }
    wv_buf_append_str(out, "],\n   \"gaps\": [");
    for (size_t g = 0; g < l->ngaps; g++) {
        char a[WV_WALNAME_SEGMENT_LEN], b[WV_WALNAME_SEGMENT_LEN];
        wv_walname_format_segment(l->gaps[g].tli, l->gaps[g].first, arch->segsize, a);
        wv_walname_format_segment(l->gaps[g].tli, l->gaps[g].last, arch->segsize, b);
        wv_buf_printf(out, "%s{\"timeline\": %" PRIu32 ", \"first_missing\": ", g ? ", " : "",
                      l->gaps[g].tli);
        wv_json_string(out, a);
        wv_buf_append_str(out, ", \"last_missing\": ");
        wv_json_string(out, b);
        wv_buf_append_str(out, "}");
    }
}

static void render_json(const listing *l, int first, wv_buf *out)
{
    const wv_backupset *bs = &l->bs;
    wv_buf_append_str(out, first ? "" : ",");
    wv_buf_append_str(out, "\n  {\"repo\": ");
    wv_json_string(out, l->name);
    wv_buf_append_str(out, ", \"location\": ");
    wv_json_string(out, l->location);
    wv_buf_append_str(out, ", \"encryption\": ");
    wv_json_string(out, l->encryption);
    if (l->ndropped) {
        wv_buf_append_str(out, ", \"dropped\": [");
        for (size_t i = 0; i < l->ndropped; i++) {
            wv_buf_append_str(out, i ? ", " : "");
            wv_json_string(out, l->dropped[i]);
        }
        wv_buf_append_str(out, "]");
    }
    if (l->ahead_repo) {
        wv_buf_append_str(out, ", \"lagging\": {\"behind\": ");
        wv_json_string(out, l->ahead_repo);
        wv_buf_printf(out,
                      ", \"timeline\": %" PRIu32 ", \"segments\": %" PRIu64 ", \"last_segment\": ",
                      l->ahead_tli, l->ahead_segs);
        wv_json_string(out, l->ahead_last);
        wv_buf_append_str(out, "}");
    }
    if (l->empty) {
        wv_buf_append_str(out, ", \"empty\": true, \"backups\": [], \"windows\": [], "
                               "\"timelines\": [], \"gaps\": []}");
        return;
    }
    wv_buf_printf(out,
                  ", \"empty\": false, \"system_identifier\": \"%" PRIu64
                  "\", \"pg_major\": %" PRIu32 ", \"wal_segment_size\": %" PRIu64
                  ",\n   \"backups\": [",
                  l->info.system_id, l->info.pg_major, l->info.wal_segsize);
    json_backups(bs, &l->res, out);
    wv_buf_append_str(out, "],\n   \"windows\": [");
    json_windows(l->w, l->nw, out);
    wv_buf_append_str(out, "],\n   \"timelines\": [");
    json_archive(l, out);
    wv_buf_append_str(out, "],\n   \"incomplete_backups\": [");
    for (size_t i = 0; i < bs->norphans; i++) {
        wv_buf_append_str(out, i ? ", " : "");
        wv_json_string(out, bs->orphans[i]);
    }
    wv_buf_append_str(out, "]}");
}

static void text_backups(const wv_backupset *bs, const wv_retention_result *res, wv_buf *out)
{
    if (bs->n == 0) {
        wv_buf_append_str(out, "  no backups yet: take one with \"basebackup backup\"\n");
    } else {
        wv_buf_printf(out, "  %-18s %-20s %-24s %-24s %3s %-11s %-11s %10s %10s %6s %-4s %s\n",
                      "backup", "label", "started", "ended", "tli", "start lsn", "stop lsn", "size",
                      "stored", "secs", "keep", "retention");
        for (size_t i = 0; i < bs->n; i++) {
            const wv_manifest_header *h = &bs->b[i].h;
            char st[WV_TIME_FORMAT_LEN], en[WV_TIME_FORMAT_LEN], sl[WV_LSN_LEN], el[WV_LSN_LEN];
            char sz[32], ss[32];
            wv_time_format(h->start_time * 1000000LL, st, sizeof(st));
            wv_time_format(h->stop_time * 1000000LL, en, sizeof(en));
            wv_lsn_format(h->start_lsn, sl);
            wv_lsn_format(h->stop_lsn, el);
            wv_human_bytes(bs->b[i].totals.size, sz, sizeof(sz));
            wv_human_bytes(bs->b[i].totals.stored_size, ss, sizeof(ss));
            wv_buf_printf(out,
                          "  %-18s %-20.20s %-24s %-24s %3" PRIu32
                          " %-11s %-11s %10s %10s %6" PRId64 " %-4s ",
                          h->id, h->label && h->label[0] ? h->label : "-", st, en, h->timeline, sl,
                          el, sz, ss, h->stop_time - h->start_time, h->keep ? "yes" : "no");
            retention_cell(res, i, 0, out);
            wv_buf_append_str(out, "\n");
        }
    }
}

static void text_windows(const listing *l, wv_buf *out)
{
    const wv_window *w = l->w;
    const wv_archive *arch = l->arch;
    wv_buf_append_str(out, "  recoverable window:\n");
    if (l->nw == 0)
        wv_buf_append_str(out, "    none: no backup whose WAL is complete in the archive\n");
    for (size_t i = 0; i < l->nw; i++) {
        char a[WV_TIME_FORMAT_LEN], b[WV_TIME_FORMAT_LEN];
        wv_time_format(w[i].from_us, a, sizeof(a));
        wv_time_format(w[i].to_us, b, sizeof(b));
        wv_buf_printf(out, "    timeline %" PRIu32 ": %s .. %s (from backup %s)\n", w[i].tli, a, b,
                      w[i].first_backup);
        if (w[i].gap) {
            char rs[WV_TIME_FORMAT_LEN] = "unknown";
            if (w[i].resume_us != INT64_MIN)
                wv_time_format(w[i].resume_us, rs, sizeof(rs));
            wv_buf_printf(out,
                          "      then WAL segment %s is missing; the archive resumes later "
                          "(first commit after the gap: %s)\n",
                          w[i].missing, rs);
        }
    }
    for (size_t g = 0; g < l->ngaps; g++) {
        char a[WV_WALNAME_SEGMENT_LEN], b[WV_WALNAME_SEGMENT_LEN];
        wv_walname_format_segment(l->gaps[g].tli, l->gaps[g].first, arch->segsize, a);
        wv_walname_format_segment(l->gaps[g].tli, l->gaps[g].last, arch->segsize, b);
        wv_buf_printf(out, "  gap in the archive: %s .. %s missing\n", a, b);
    }
}

/* Where another repository holds newer segments of a timeline than l does: l's window ends at
 * its own last segment, and the listing says so (a repository with required = no that lags). */
static void find_lag(listing *ls, int n)
{
    for (int i = 0; i < n; i++) {
        listing *l = &ls[i];
        if (l->empty || !l->arch)
            continue;
        for (size_t t = 0; t < l->arch->ntl; t++) {
            const wv_archive_tli *mine = &l->arch->tls[t];
            if (!mine->nseg)
                continue;
            for (int j = 0; j < n; j++) {
                if (j == i || ls[j].empty || !ls[j].arch ||
                    ls[j].info.system_id != l->info.system_id)
                    continue;
                const wv_archive_tli *o = wv_archive_timeline(ls[j].arch, mine->tli);
                if (!o || !o->nseg)
                    continue;
                uint64_t a = mine->segnos[mine->nseg - 1], b = o->segnos[o->nseg - 1];
                if (b > a && b - a > l->ahead_segs) {
                    l->ahead_repo = ls[j].name;
                    l->ahead_tli = mine->tli;
                    l->ahead_segs = b - a;
                    wv_walname_format_segment(mine->tli, a, l->arch->segsize, l->ahead_last);
                }
            }
        }
    }
}

/* Text, for people. */
static void render_text(const listing *l, int first, wv_buf *out)
{
    const wv_backupset *bs = &l->bs;
    if (!first)
        wv_buf_append_str(out, "\n");
    if (l->empty) {
        wv_buf_printf(out, "%s (%s): empty, nothing archived yet\n", l->name, l->location);
        return;
    }
    {
        char seg[32];
        wv_human_bytes(l->info.wal_segsize, seg, sizeof(seg));
        wv_buf_printf(out,
                      "%s (%s): PostgreSQL %" PRIu32 ", database system %" PRIu64
                      ", %s WAL segments%s%s\n",
                      l->name, l->location, l->info.pg_major, l->info.system_id, seg,
                      strcmp(l->encryption, "none") ? ", encrypted with " : "",
                      strcmp(l->encryption, "none") ? l->encryption : "");
    }
    text_backups(&l->bs, &l->res, out);
    text_windows(l, out);
    for (size_t i = 0; i < l->ndropped; i++)
        wv_buf_printf(out,
                      "  dropped by archive_queue_max: %s (never archived: point-in-time "
                      "recovery across it is impossible)\n",
                      l->dropped[i]);
    if (l->ahead_repo)
        wv_buf_printf(out,
                      "  lagging: %s holds %" PRIu64 " newer WAL segment%s of timeline %" PRIu32
                      "; this repository's WAL ends at %s (its window ends there)\n",
                      l->ahead_repo, l->ahead_segs, l->ahead_segs == 1 ? "" : "s", l->ahead_tli,
                      l->ahead_last);
    if (bs->norphans)
        wv_buf_printf(out, "  %zu incomplete backup%s (no manifest; removed by the next backup)\n",
                      bs->norphans, bs->norphans == 1 ? "" : "s");
}

int wv_bbcmd_list(int argc, char **argv, const char *config_path)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"repo", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, repo = 0, c, rc = 0;
    wv_err err;
    wv_config *cfg = NULL;
    wv_buf out = WV_BUF_INIT;
    wv_cli cli = {.config_path = config_path};

    wv_err_clear(&err);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'r':
            if (wv_cli_repo_number("--repo", optarg, &repo, &err) < 0)
                return wv_cli_fail(&err);
            break;
        case 'c':
            cli.config_path = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            wv_cli_bad_option("list", argv, &err);
            return wv_cli_fail(&err);
        }
    }
    if (wv_cli_no_more_args("list", argc, argv, &err) != 0)
        return wv_cli_fail(&err);
    if ((rc = wv_cli_load_config(&cli, &cfg, &err)) != 0)
        return wv_cli_fail(&err);
    if (repo && wv_cli_repo_exists(cfg, "--repo", repo, &err) < 0) {
        wv_config_free(cfg);
        return wv_cli_fail(&err);
    }
    if (json)
        wv_buf_append_str(&out, "{\"repositories\": [");
    /* every repository is read (a lagging one is compared with the others), then shown */
    listing *ls = wv_xcalloc((size_t)cfg->nrepos, sizeof(*ls));
    int n = 0, shown[WV_MAX_REPOS];
    for (int i = 0; i < cfg->nrepos && rc == 0; i++) {
        wv_err e;
        wv_err_clear(&e);
        shown[n] = !repo || cfg->repos[i].index == repo;
        if (gather_listing(cfg, &cfg->repos[i], &ls[n], shown[n] ? &err : &e) != 0) {
            if (shown[n])
                rc = err.code;
            listing_free(&ls[n]); /* another repository, unreadable: not compared */
            continue;
        }
        n++;
    }
    if (rc == 0)
        find_lag(ls, n);
    int first = 1;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!shown[i])
            continue;
        if (json)
            render_json(&ls[i], first, &out);
        else
            render_text(&ls[i], first, &out);
        first = 0;
    }
    for (int i = 0; i < n; i++)
        listing_free(&ls[i]);
    free(ls);
    if (json)
        wv_buf_append_str(&out, "\n]}\n");
    if (rc == 0)
        fwrite(out.data, 1, out.len, stdout);
    wv_buf_free(&out);
    wv_config_free(cfg);
    return rc == 0 ? 0 : wv_cli_fail(&err);
}
