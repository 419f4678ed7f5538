/*
 * retention.c - the retention policy over gathered facts (see repo/retention.h for the rules).
 *
 * Calendar arithmetic is done here on day numbers (days since 1970-01-01, proleptic Gregorian,
 * UTC), not with gmtime: no time zone, no locale, no library state. The tiers walk the complete
 * backups oldest first: sorted by stop time, a backup is the newest of its day (week, month) when
 * the next newer one falls in a later period. The WAL cut follows from the kept backups alone, and
 * the invariants are then checked again by a separate, direct formulation.
 */
#include "repo/retention.h"

#include "core/buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- calendar ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Year, month (1..12) and day (1..31) of a day number (H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* The day number of a date (days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t day_of(int64_t t)
{
    return floor_div(t, 86400);
}

/* The Monday that begins the week of a day (1970-01-01, day 0, was a Thursday). */
static int64_t monday_of(int64_t day)
{
    return day - (day + 3 - floor_div(day + 3, 7) * 7);
}

/* ISO 8601 week: the week's Thursday decides its year; week 1 holds the year's first Thursday. */
static void iso_week(int64_t day, int64_t *year, int *week)
{
    int64_t thursday = monday_of(day) + 3;
    int m, d;
    civil_from_days(thursday, year, &m, &d);
    int64_t jan1 = days_from_civil(*year, 1, 1);
    *week = (int)((thursday - jan1) / 7 + 1);
}

enum period { P_DAY, P_WEEK, P_MONTH };

/* A key that is equal for two times exactly when they fall in the same period. */
static int64_t period_key(enum period p, int64_t t)
{
    int64_t day = day_of(t), y;
    int m, d;
    switch (p) {
    case P_DAY:
        return day;
    case P_WEEK:
        return monday_of(day);
    case P_MONTH:
        civil_from_days(day, &y, &m, &d);
        return y * 12 + (m - 1);
    }
    return 0;
}

static void period_text(enum period p, int64_t t, char *out, size_t len)
{
    int64_t day = day_of(t), y;
    int m, d, w;
    switch (p) {
    case P_DAY:
        civil_from_days(day, &y, &m, &d);
        snprintf(out, len, "daily %04" PRId64 "-%02d-%02d", y, m, d);
        break;
    case P_WEEK:
        iso_week(day, &y, &w);
        snprintf(out, len, "weekly %04" PRId64 "-W%02d", y, w);
        break;
    case P_MONTH:
        civil_from_days(day, &y, &m, &d);
        snprintf(out, len, "monthly %04" PRId64 "-%02d", y, m);
        break;
    }
}

/* ---- ordering ---- */

/* <0, 0, >0 as a is older than, the same as, or newer than b. */
static int cmp_backup(const wv_retention_backup *a, const wv_retention_backup *b)
{
    if (a->stop_time != b->stop_time)
        return a->stop_time < b->stop_time ? -1 : 1;
    if (a->stop_lsn != b->stop_lsn)
        return a->stop_lsn < b->stop_lsn ? -1 : 1;
    return strcmp(a->id, b->id);
}

static int cmp_id(const wv_retention_backup *a, const wv_retention_backup *b)
{
    return strcmp(a->id, b->id);
}

/* Heap sort of indices into bk, ascending by cmp: O(n log n) whatever the input, in place. */
static void sort_idx(const wv_retention_backup *bk, size_t *idx, size_t n,
                     int (*cmp)(const wv_retention_backup *, const wv_retention_backup *))
{
    for (size_t end = n, start = n / 2;;) {
        size_t root;
        if (start > 0) {
            root = --start; /* building the heap */
        } else if (end > 1) {
            size_t t = idx[0]; /* the largest goes to the end */
            idx[0] = idx[--end];
            idx[end] = t;
            root = 0;
        } else {
            return;
        }
        for (size_t child; (child = 2 * root + 1) < end; root = child) {
            if (child + 1 < end && cmp(&bk[idx[child]], &bk[idx[child + 1]]) < 0)
                child++;
            if (cmp(&bk[idx[root]], &bk[idx[child]]) >= 0)
                break;
            size_t t = idx[root];
            idx[root] = idx[child];
            idx[child] = t;
        }
    }
}

/* ---- timelines ---- */

static int ancestry_known(const wv_retention_timeline *t)
{
    return t->tli == 1 || (t->has_history && t->nhist > 0);
}

/* The timeline that wrote lsn on the way to timeline t (t's own when its ancestry is unknown). */
static uint32_t tli_at(const wv_retention_timeline *t, uint64_t lsn)
{
    if (t->tli == 1 || !ancestry_known(t))
        return t->tli;
    return wv_history_tli_at(t->hist, t->nhist, t->tli, lsn);
}

/*
 * Whether backup b needs WAL of timeline t, and from which segment: its own timeline from the
 * segment of its start, a descendant that forked after its start from where that one begins.
 */
static int backup_needs(const wv_retention_backup *b, const wv_retention_timeline *t,
                        uint64_t segsize, uint64_t *from)
{
    if (t->tli == b->timeline) {
        *from = wv_lsn_to_segno(b->start_lsn, segsize);
        return 1;
    }
    if (t->tli == 1 || !ancestry_known(t) || tli_at(t, b->start_lsn) != b->timeline)
        return 0;
    *from = wv_lsn_to_segno(t->hist[t->nhist - 1].switch_lsn, segsize);
    return 1;
}

/* ---- rules ---- */

static void add_rule(wv_retention_backup_result *r, wv_retention_rule_kind kind, const char *text,
                     int64_t expires_at)
{
    if (r->nrules >= WV_RETENTION_RULES_MAX)
        return;
    wv_retention_rule *x = &r->rules[r->nrules++];
    x->kind = kind;
    snprintf(x->text, sizeof(x->text), "%s", text);
    x->expires_at = expires_at;
}

/* The first second a rule of age `age` no longer keeps a backup that stopped at stop. */
static int64_t age_end(int64_t stop, int64_t age)
{
    if (stop > INT64_MAX - age - 1)
        return WV_RETENTION_FOREVER;
    return stop + age + 1;
}

static int inside(const wv_retention_input *in, const wv_retention_backup *b, int64_t age)
{
    return age != WV_RETENTION_UNSET && in->now - b->stop_time <= age;
}

static int validate(const wv_retention_input *in, wv_err *err)
{
    if (!wv_wal_segsize_valid(in->segsize))
        return wv_err_set(err, WV_EUSAGE, "retention: invalid WAL segment size %" PRIu64,
                          in->segsize);
    for (size_t i = 0; i < in->ntimelines; i++) {
        const wv_retention_timeline *t = &in->timelines[i];
        if (t->tli == 0 || (i > 0 && t->tli <= in->timelines[i - 1].tli))
            return wv_err_set(err, WV_EUSAGE,
                              "retention: timeline %" PRIu32 " is zero, repeated or out of order",
                              t->tli);
        for (size_t s = 1; s < t->nseg; s++)
            if (t->segnos[s] <= t->segnos[s - 1])
                return wv_err_set(err, WV_EUSAGE,
                                  "retention: segments of timeline %" PRIu32 " are not sorted",
                                  t->tli);
    }
    for (size_t i = 0; i < in->nbackups; i++) {
        const wv_retention_backup *b = &in->backups[i];
        if (!b->id || !*b->id)
            return wv_err_set(err, WV_EUSAGE, "retention: backup %zu has no id", i);
        if (!b->complete)
            continue;
        if (b->stop_time < b->start_time || b->stop_lsn < b->start_lsn || b->timeline == 0)
            return wv_err_set(err, WV_EUSAGE,
                              "retention: backup \"%s\" stops before it starts or has no timeline",
                              b->id);
    }
    return 0;
}

/* ---- invariants ---- */

/* The lowest archived segment of t that recovery from b reads, if any. */
static int lowest_needed_segment(const wv_retention_backup *b, const wv_retention_timeline *t,
                                 uint64_t segsize, uint64_t *segno)
{
    int reachable = t->tli == b->timeline ||
                    (ancestry_known(t) && t->tli != 1 && tli_at(t, b->start_lsn) == b->timeline);
    if (!reachable)
        return 0;
    uint64_t first = wv_lsn_to_segno(b->start_lsn, segsize);
    size_t lo = 0, hi = t->nseg; /* the first archived segment >= first */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->segnos[mid] < first)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t s = lo; s < t->nseg; s++) {
        uint64_t n = t->segnos[s];
        /* t wrote part of segment n on its own path when it had begun before the segment's end */
        if (n >= first && tli_at(t, wv_segno_to_lsn(n + 1, segsize) - 1) == t->tli) {
            *segno = n;
            return 1;
        }
    }
    return 0;
}

int wv_retention_verify(const wv_retention_policy *p, const wv_retention_input *in,
                        const wv_retention_result *r, wv_err *err)
{
    long newest = -1;
    if (r->nbackups != in->nbackups || r->ntimelines != in->ntimelines)
        return wv_err_set(err, WV_EINTERNAL, "retention: the result does not match its input");
    for (size_t i = 0; i < in->nbackups; i++)
        if (in->backups[i].complete &&
            (newest < 0 || cmp_backup(&in->backups[i], &in->backups[newest]) > 0))
            newest = (long)i;
    for (size_t t = 0; t < in->ntimelines; t++) {
        const wv_retention_wal_result *w = &r->timelines[t];
        if (w->tli != in->timelines[t].tli)
            return wv_err_set(err, WV_EINTERNAL, "retention: the result does not match its input");
        if (w->keep_from != 0 &&
            (!wv_retention_policy_has_rules(p) || newest < 0 || !ancestry_known(&in->timelines[t])))
            return wv_err_set(err, WV_EINTERNAL,
                              "retention: WAL of timeline %" PRIu32 " would expire with %s", w->tli,
                              !wv_retention_policy_has_rules(p) ? "no retention rule"
                              : newest < 0                      ? "no complete backup"
                                                                : "its history unknown");
    }
    if (newest >= 0 && r->backups[newest].verdict != WV_RETENTION_KEPT)
        return wv_err_set(err, WV_EINTERNAL, "retention: the newest backup \"%s\" would expire",
                          in->backups[newest].id);
    for (size_t i = 0; i < in->nbackups; i++) {
        const wv_retention_backup *b = &in->backups[i];
        if (!b->complete) {
            if (r->backups[i].verdict != WV_RETENTION_IGNORED)
                return wv_err_set(err, WV_EINTERNAL,
                                  "retention: incomplete backup \"%s\" was judged", b->id);
            continue;
        }
        if (r->backups[i].verdict == WV_RETENTION_EXPIRED &&
            (b->keep || !wv_retention_policy_has_rules(p)))
            return wv_err_set(err, WV_EINTERNAL, "retention: backup \"%s\" would expire with %s",
                              b->id, b->keep ? "keep set" : "no retention rule");
        if (r->backups[i].verdict != WV_RETENTION_KEPT)
            continue;
        for (size_t t = 0; t < in->ntimelines; t++) {
            uint64_t s;
            if (lowest_needed_segment(b, &in->timelines[t], in->segsize, &s) &&
                s < r->timelines[t].keep_from)
                return wv_err_set(err, WV_EINTERNAL,
                                  "retention: segment %" PRIu64 " of timeline %" PRIu32
                                  " would expire but kept backup \"%s\" needs it",
                                  s, in->timelines[t].tli, b->id);
        }
    }
    return 0;
}

/* ---- the policy ---- */

static void judge_backups(const wv_retention_policy *p, const wv_retention_input *in,
                          wv_retention_result *r, const size_t *order, size_t n)
{
    const wv_retention_backup *bk = in->backups;
    char text[WV_RETENTION_RULE_TEXT_MAX];
    static const struct {
        enum period p;
        wv_retention_rule_kind kind;
        size_t off;
    } tiers[] = {
        {P_DAY, WV_RETENTION_RULE_DAILY, offsetof(wv_retention_policy, daily)},
        {P_WEEK, WV_RETENTION_RULE_WEEKLY, offsetof(wv_retention_policy, weekly)},
        {P_MONTH, WV_RETENTION_RULE_MONTHLY, offsetof(wv_retention_policy, monthly)},
    };

    /* window: the newest that ended at or before now - window, else the oldest */
    size_t window_pos = n;
    if (p->window != WV_RETENTION_UNSET && n > 0) {
        window_pos = 0;
        for (size_t k = 0; k < n; k++)
            if (bk[order[k]].stop_time <= in->now - p->window)
                window_pos = k;
    }

    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        const wv_retention_backup *b = &bk[i];
        wv_retention_backup_result *res = &r->backups[i];

        if (k == n - 1)
            add_rule(res, WV_RETENTION_RULE_NEWEST, "newest", WV_RETENTION_FOREVER);
        if (b->keep)
            add_rule(res, WV_RETENTION_RULE_KEEP, "keep", WV_RETENTION_FOREVER);
        if (k == window_pos) {
            /* until the next newer backup is window old */
            int64_t until = WV_RETENTION_FOREVER;
            if (k + 1 < n && bk[order[k + 1]].stop_time <= INT64_MAX - p->window)
                until = bk[order[k + 1]].stop_time + p->window;
            add_rule(res, WV_RETENTION_RULE_WINDOW, "window", until);
        }
        for (int l = 0; l < p->nlabels; l++) {
            const wv_retention_label *lab = &p->labels[l];
            if (b->label && strncmp(b->label, lab->prefix, strlen(lab->prefix)) == 0 &&
                inside(in, b, lab->age)) {
                snprintf(text, sizeof(text), "label %s", lab->prefix);
                add_rule(res, WV_RETENTION_RULE_LABEL, text, age_end(b->stop_time, lab->age));
            }
        }
        for (size_t t = 0; t < sizeof(tiers) / sizeof(tiers[0]); t++) {
            int64_t age = *(const int64_t *)((const char *)p + tiers[t].off);
            int newest_of_period =
                k == n - 1 || period_key(tiers[t].p, bk[order[k + 1]].stop_time) !=
                                  period_key(tiers[t].p, b->stop_time);
            if (newest_of_period && inside(in, b, age)) {
                period_text(tiers[t].p, b->stop_time, text, sizeof(text));
                add_rule(res, tiers[t].kind, text, age_end(b->stop_time, age));
            }
        }

        if (res->nrules > 0) {
            res->verdict = WV_RETENTION_KEPT;
            res->expires_at = 0;
            for (int x = 0; x < res->nrules; x++)
                if (res->rules[x].expires_at > res->expires_at)
                    res->expires_at = res->rules[x].expires_at;
        } else {
            res->verdict = WV_RETENTION_EXPIRED;
        }
    }
}

static void cut_wal(const wv_retention_input *in, wv_retention_result *r)
{
    char seg[WV_WALNAME_SEGMENT_LEN], lsn[WV_LSN_LEN];
    for (size_t t = 0; t < in->ntimelines; t++) {
        const wv_retention_timeline *tl = &in->timelines[t];
        wv_retention_wal_result *w = &r->timelines[t];
        w->tli = tl->tli;
        w->keep_from = UINT64_MAX;
        if (r->norder == 0) {
            w->keep_from = 0;
            snprintf(w->reason, sizeof(w->reason),
                     "no complete backup: the first one may be running");
            continue;
        }
        if (!ancestry_known(tl)) {
            w->keep_from = 0;
            snprintf(w->reason, sizeof(w->reason),
                     "no history file for timeline %" PRIu32 ": its ancestry is unknown", tl->tli);
            continue;
        }
        long by = -1;
        for (size_t i = 0; i < in->nbackups; i++) {
            uint64_t from;
            if (r->backups[i].verdict != WV_RETENTION_KEPT ||
                !backup_needs(&in->backups[i], tl, in->segsize, &from))
                continue;
            if (from < w->keep_from || (from == w->keep_from && by >= 0 &&
                                        cmp_backup(&in->backups[i], &in->backups[by]) < 0)) {
                w->keep_from = from;
                by = (long)i;
            }
        }
        if (by < 0) {
            snprintf(w->reason, sizeof(w->reason), "no kept backup needs timeline %" PRIu32,
                     tl->tli);
        } else {
            const wv_retention_backup *b = &in->backups[by];
            wv_walname_format_segment(tl->tli, w->keep_from, in->segsize, seg);
            if (b->timeline == tl->tli) {
                snprintf(w->reason, sizeof(w->reason), "kept backup %s starts in %s", b->id, seg);
            } else {
                wv_lsn_format(tl->hist[tl->nhist - 1].switch_lsn, lsn);
                snprintf(w->reason, sizeof(w->reason),
                         "timeline %" PRIu32 " begins at %s in %s, after the start of kept backup "
                         "%s on timeline %" PRIu32,
                         tl->tli, lsn, seg, b->id, b->timeline);
            }
        }
        for (size_t s = 0; s < tl->nseg && tl->segnos[s] < w->keep_from; s++)
            w->nexpire++;
    }
}

int wv_retention_apply(const wv_retention_policy *policy, const wv_retention_input *in,
                       wv_retention_result *out, wv_err *err)
{
    wv_retention_result r = {0};
    size_t *order, n = 0;
    int rc = validate(in, err);
    if (rc != 0)
        return rc;

    r.has_policy = wv_retention_policy_has_rules(policy);
    r.nbackups = in->nbackups;
    r.ntimelines = in->ntimelines;
    r.backups = wv_xcalloc(in->nbackups ? in->nbackups : 1, sizeof(*r.backups));
    r.timelines = wv_xcalloc(in->ntimelines ? in->ntimelines : 1, sizeof(*r.timelines));
    order = r.order = wv_xcalloc(in->nbackups ? in->nbackups : 1, sizeof(*order));
    /* ids once each: sorted by id, a repeated one sits next to itself */
    for (size_t i = 0; i < in->nbackups; i++)
        order[i] = i;
    sort_idx(in->backups, order, in->nbackups, cmp_id);
    for (size_t k = 1; k < in->nbackups; k++) {
        if (strcmp(in->backups[order[k - 1]].id, in->backups[order[k]].id) == 0) {
            wv_err_set(err, WV_EUSAGE, "retention: backup \"%s\" is listed twice",
                       in->backups[order[k]].id);
            wv_retention_result_free(&r);
            return WV_EUSAGE;
        }
    }
    for (size_t i = 0; i < in->nbackups; i++) {
        if (in->backups[i].complete)
            order[n++] = i;
        else
            r.backups[i].verdict = WV_RETENTION_IGNORED;
    }
    sort_idx(in->backups, order, n, cmp_backup);
    r.norder = n;

    if (!r.has_policy) {
        for (size_t k = 0; k < n; k++) {
            wv_retention_backup_result *res = &r.backups[order[k]];
            res->verdict = WV_RETENTION_KEPT;
            add_rule(res, WV_RETENTION_RULE_NONE, "none", WV_RETENTION_FOREVER);
            res->expires_at = WV_RETENTION_FOREVER;
        }
        for (size_t t = 0; t < in->ntimelines; t++) {
            r.timelines[t].tli = in->timelines[t].tli;
            r.timelines[t].keep_from = 0;
            snprintf(r.timelines[t].reason, sizeof(r.timelines[t].reason), "no retention policy");
        }
    } else {
        judge_backups(policy, in, &r, order, n);
        cut_wal(in, &r);
    }

    for (size_t i = 0; i < in->nbackups; i++) {
        if (r.backups[i].verdict == WV_RETENTION_KEPT)
            r.nkept++;
        else if (r.backups[i].verdict == WV_RETENTION_EXPIRED)
            r.nexpired++;
        else
            r.nignored++;
    }
    if (!r.has_policy)
        for (size_t t = 0; t < in->ntimelines; t++)
            r.timelines[t].nexpire = 0;

    rc = wv_retention_verify(policy, in, &r, err);
    if (rc != 0) {
        wv_retention_result_free(&r);
        return rc;
    }
    *out = r;
    wv_err_clear(err);
    return 0;
}

void wv_retention_result_free(wv_retention_result *r)
{
    if (!r)
        return;
    free(r->backups);
    free(r->timelines);
    free(r->order);
    memset(r, 0, sizeof(*r));
}

int wv_retention_segment_may_go(const wv_retention_result *r, uint32_t tli, uint64_t segno)
{
    for (size_t t = 0; t < r->ntimelines; t++)
        if (r->timelines[t].tli == tli)
            return segno < r->timelines[t].keep_from;
    return 0;
}

int wv_retention_walname_may_go(const wv_retention_result *r, const char *name, uint64_t segsize)
{
    wv_walname w;
    switch (wv_walname_parse(name, &w)) {
    case WV_WALNAME_SEGMENT:
    case WV_WALNAME_PARTIAL:
    case WV_WALNAME_BACKUP:
        return wv_walname_valid_for_segsize(&w, segsize) &&
               wv_retention_segment_may_go(r, w.tli, wv_walname_segno(&w, segsize));
    case WV_WALNAME_HISTORY:
    case WV_WALNAME_INVALID:
        break;
    }
    return 0;
}

void wv_retention_rules_text(const wv_retention_backup_result *b, char *out, size_t outlen)
{
    size_t used = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
    for (int i = 0; i < b->nrules && used < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", b->rules[i].text);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* ---- adapters ---- */

wv_retention_backup *wv_retention_backups_from_set(const wv_backupset *set)
{
    wv_retention_backup *out = wv_xcalloc(set->n ? set->n : 1, sizeof(*out));
    for (size_t i = 0; i < set->n; i++) {
        const wv_manifest_header *h = &set->b[i].h;
        out[i] = (wv_retention_backup){
            .id = h->id,
            .label = h->label,
            .keep = h->keep,
            .complete = 1,
            .start_time = h->start_time,
            .stop_time = h->stop_time,
            .start_lsn = h->start_lsn,
            .stop_lsn = h->stop_lsn,
            .timeline = h->timeline,
        };
    }
    return out;
}

wv_retention_timeline *wv_retention_timelines_from_archive(const wv_archive *a)
{
    wv_retention_timeline *out = wv_xcalloc(a->ntl ? a->ntl : 1, sizeof(*out));
    for (size_t i = 0; i < a->ntl; i++) {
        const wv_archive_tli *t = &a->tls[i];
        out[i] = (wv_retention_timeline){
            .tli = t->tli,
            .has_history = t->has_history,
            .hist = t->hist,
            .nhist = t->nhist,
            .segnos = t->segnos,
            .nseg = t->nseg,
        };
    }
    return out;
}
