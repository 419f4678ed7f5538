/*
 * test_retention.c - the retention policy over synthetic calendars: every case asserts the exact
 * kept set (ids with the rules that keep them, oldest first) and the exact WAL cut per timeline.
 *
 * Backups and WAL share one clock: the LSN at time t is (t - 2020-01-01) * 4096 + 0x28, so a
 * 16 MiB segment lasts 4096 seconds and a backup's segments follow from its times (the property
 * test uses 1 GiB segments, to keep its segment-by-segment checks quick). Timelines fork
 * at given times; each archives every segment from the one holding its fork point (timeline 1:
 * from segment 0) to its end. Expected rule texts come from libc (timegm, strftime %G-W%V), not
 * from the arithmetic under test. The last test draws random backup sets and policies (fixed seed)
 * and checks each result against a slow, direct restatement of the rules and the invariants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/retention_config.h"
#include "pg/walname.h"
#include "repo/retention.h"

#define SEGSIZE (UINT64_C(16) << 20)
#define RATE    4096
#define HOUR    INT64_C(3600)
#define DAY     (24 * HOUR)
#define MAXB    1024
#define MAXT    6
#define ALL     UINT64_MAX /* keep_from when no kept backup needs a timeline */

static int64_t base_time(void);
static uint64_t segsize = SEGSIZE;

/* "YYYY-MM-DD HH:MM:SS" (UTC) -> epoch seconds, by libc. */
static int64_t T(const char *s)
{
    struct tm tm = {0};
    int n = sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec);
    assert_int_equal(n, 6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static uint64_t lsn_at(int64_t t)
{
    assert_true(t >= base_time());
    return (uint64_t)(t - base_time()) * RATE + 0x28;
}

static int64_t base_time(void)
{
    static int64_t b;
    if (!b) {
        struct tm tm = {.tm_year = 120, .tm_mon = 0, .tm_mday = 1};
        b = (int64_t)timegm(&tm);
    }
    return b;
}

static uint64_t seg_at(int64_t t)
{
    return wv_lsn_to_segno(lsn_at(t), segsize);
}

typedef struct scenario {
    wv_retention_backup b[MAXB];
    char ids[MAXB][24];
    char labels[MAXB][48];
    size_t nb;
    wv_retention_timeline t[MAXT];
    wv_history_entry hist[MAXT][MAXT];
    uint64_t *segs[MAXT];
    size_t nt;
    wv_retention_policy p;
    int64_t now;
    wv_retention_result r;
} scenario;

static scenario *sc_new(const char *now)
{
    scenario *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    wv_retention_policy_init(&sc->p);
    sc->now = T(now);
    return sc;
}

static void sc_free(scenario *sc)
{
    wv_retention_result_free(&sc->r);
    for (size_t i = 0; i < sc->nt; i++)
        free(sc->segs[i]);
    free(sc);
}

/* A complete backup that stops at `stop` after running `dur` seconds; its id is its start. */
static wv_retention_backup *add_backup_t(scenario *sc, int64_t stop, int64_t dur, const char *label,
                                         int keep, uint32_t tli)
{
    assert_true(sc->nb < MAXB);
    size_t i = sc->nb++;
    time_t start = (time_t)(stop - dur);
    struct tm tm;
    gmtime_r(&start, &tm);
    strftime(sc->ids[i], sizeof(sc->ids[i]), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(sc->labels[i], sizeof(sc->labels[i]), "%s", label ? label : "");
    sc->b[i] = (wv_retention_backup){
        .id = sc->ids[i],
        .label = sc->labels[i],
        .keep = keep,
        .complete = 1,
        .start_time = stop - dur,
        .stop_time = stop,
        .start_lsn = lsn_at(stop - dur),
        .stop_lsn = lsn_at(stop),
        .timeline = tli,
    };
    return &sc->b[i];
}

static wv_retention_backup *add_backup(scenario *sc, const char *stop, int64_t dur,
                                       const char *label, int keep, uint32_t tli)
{
    return add_backup_t(sc, T(stop), dur, label, keep, tli);
}

/*
 * Timeline tli with history entries (parent chain) ending at fork time `fork` (ignored for 1),
 * archived from its first segment to the segment of `end`. `parents` lists (tli, switch time)
 * pairs, oldest first, terminated by a 0 tli.
 */
static void add_timeline(scenario *sc, uint32_t tli, int has_history, const uint32_t *ptli,
                         const int64_t *pswitch, size_t nparents, int64_t end)
{
    assert_true(sc->nt < MAXT);
    size_t i = sc->nt++;
    for (size_t k = 0; k < nparents; k++)
        sc->hist[i][k] = (wv_history_entry){.tli = ptli[k], .switch_lsn = lsn_at(pswitch[k])};
    uint64_t first = nparents ? wv_lsn_to_segno(lsn_at(pswitch[nparents - 1]), segsize) : 0;
    uint64_t last = seg_at(end);
    size_t n = (size_t)(last - first + 1);
    sc->segs[i] = calloc(n, sizeof(uint64_t));
    assert_non_null(sc->segs[i]);
    for (size_t k = 0; k < n; k++)
        sc->segs[i][k] = first + k;
    sc->t[i] = (wv_retention_timeline){
        .tli = tli,
        .has_history = has_history,
        .hist = sc->hist[i],
        .nhist = nparents,
        .segnos = sc->segs[i],
        .nseg = n,
    };
}

static void add_tl1(scenario *sc, int64_t end)
{
    add_timeline(sc, 1, 0, NULL, NULL, 0, end);
}

static void run(scenario *sc)
{
    wv_err err;
    wv_retention_input in = {
        .backups = sc->b,
        .nbackups = sc->nb,
        .timelines = sc->t,
        .ntimelines = sc->nt,
        .segsize = segsize,
        .now = sc->now,
    };
    int rc = wv_retention_apply(&sc->p, &in, &sc->r, &err);
    if (rc != 0)
        fail_msg("wv_retention_apply: %s", err.msg);
    assert_int_equal(sc->r.nkept + sc->r.nexpired + sc->r.nignored, sc->nb);
}

/* "ID: rule, rule\n" for each kept backup, oldest first. */
static char *kept_text(const scenario *sc)
{
    size_t cap = 256 * (sc->nb + 1), used = 0;
    char *out = calloc(1, cap), rules[1024];
    assert_non_null(out);
    for (size_t k = 0; k < sc->r.norder; k++) {
        size_t i = sc->r.order[k];
        if (sc->r.backups[i].verdict != WV_RETENTION_KEPT)
            continue;
        wv_retention_rules_text(&sc->r.backups[i], rules, sizeof(rules));
        used += (size_t)snprintf(out + used, cap - used, "%s: %s\n", sc->ids[i], rules);
    }
    return out;
}

static void assert_kept(const scenario *sc, const char *expected)
{
    char *got = kept_text(sc);
    if (strcmp(got, expected) != 0) {
        print_error("kept set differs.\n--- expected\n%s--- got\n%s", expected, got);
        free(got);
        fail();
    }
    free(got);
}

static const wv_retention_backup *find(const scenario *sc, const char *id)
{
    for (size_t i = 0; i < sc->nb; i++)
        if (strcmp(sc->ids[i], id) == 0)
            return &sc->b[i];
    fail_msg("no backup %s", id);
    return NULL;
}

static const wv_retention_backup_result *result_of(const scenario *sc, const char *id)
{
    return &sc->r.backups[find(sc, id) - sc->b];
}

static uint64_t start_seg(const scenario *sc, const char *id)
{
    return wv_lsn_to_segno(find(sc, id)->start_lsn, SEGSIZE);
}

static void assert_cut(const scenario *sc, uint32_t tli, uint64_t keep_from, const char *reason)
{
    for (size_t t = 0; t < sc->r.ntimelines; t++) {
        const wv_retention_wal_result *w = &sc->r.timelines[t];
        if (w->tli != tli)
            continue;
        if (w->keep_from != keep_from)
            fail_msg("timeline %u: keep_from %llu, expected %llu (%s)", tli,
                     (unsigned long long)w->keep_from, (unsigned long long)keep_from, w->reason);
        if (reason && !strstr(w->reason, reason))
            fail_msg("timeline %u: reason \"%s\" lacks \"%s\"", tli, w->reason, reason);
        /* nexpire counts the archived segments below the cut */
        size_t n = 0;
        for (size_t s = 0; s < sc->t[t].nseg; s++)
            n += sc->t[t].segnos[s] < keep_from;
        assert_int_equal(w->nexpire, n);
        return;
    }
    fail_msg("no result for timeline %u", tli);
}

static void nightly(scenario *sc, const char *from, const char *to, const char *const *gaps)
{
    for (int64_t d = T(from); d <= T(to); d += DAY) {
        char day[16];
        time_t tt = (time_t)d;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(day, sizeof(day), "%Y-%m-%d", &tm);
        int skip = 0;
        for (size_t g = 0; gaps && gaps[g]; g += 2)
            if (strcmp(day, gaps[g]) >= 0 && strcmp(day, gaps[g + 1]) <= 0)
                skip = 1;
        if (!skip)
            add_backup_t(sc, d + HOUR + 1800, 1800, "nightly", 0, 1);
    }
}

/* ---- the calendar cases ---- */

/* Two years of nightly backups (01:00-01:30) with gaps, daily 30d / weekly 90d / monthly 365d. */
static void test_two_years(void **state)
{
    (void)state;
    static const char *const gaps[] = {
        "2025-03-10", "2025-03-16", /* a whole week */
        "2026-02-27", "2026-02-28", /* the end of February */
        "2026-10-31", "2026-10-31", /* the last day of October */
        "2026-11-23", "2026-11-29", /* all of 2026-W48 */
        "2026-12-15", "2026-12-15", "2026-12-25", "2026-12-27", NULL,
    };
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 30 * DAY;
    sc->p.weekly = 90 * DAY;
    sc->p.monthly = 365 * DAY;
    nightly(sc, "2025-01-01 00:00:00", "2026-12-31 00:00:00", gaps);
    add_tl1(sc, T("2026-12-31 12:00:00"));
    assert_int_equal(sc->nb, 709);
    run(sc);
    /* 2025-12 is not kept: its newest backup ended at 2025-12-31 01:30, 365 days and 10.5 hours
     * before now. 2026-W48 has no backup; 2026-02 and 2026-10 keep their last backup. */
    assert_kept(sc,
                "20260131T010000Z: monthly 2026-01\n"
                "20260226T010000Z: monthly 2026-02\n"
                "20260331T010000Z: monthly 2026-03\n"
                "20260430T010000Z: monthly 2026-04\n"
                "20260531T010000Z: monthly 2026-05\n"
                "20260630T010000Z: monthly 2026-06\n"
                "20260731T010000Z: monthly 2026-07\n"
                "20260831T010000Z: monthly 2026-08\n"
                "20260930T010000Z: monthly 2026-09\n"
                "20261004T010000Z: weekly 2026-W40\n"
                "20261011T010000Z: weekly 2026-W41\n"
                "20261018T010000Z: weekly 2026-W42\n"
                "20261025T010000Z: weekly 2026-W43\n"
                "20261030T010000Z: monthly 2026-10\n"
                "20261101T010000Z: weekly 2026-W44\n"
                "20261108T010000Z: weekly 2026-W45\n"
                "20261115T010000Z: weekly 2026-W46\n"
                "20261122T010000Z: weekly 2026-W47\n"
                "20261130T010000Z: monthly 2026-11\n"
                "20261202T010000Z: daily 2026-12-02\n"
                "20261203T010000Z: daily 2026-12-03\n"
                "20261204T010000Z: daily 2026-12-04\n"
                "20261205T010000Z: daily 2026-12-05\n"
                "20261206T010000Z: daily 2026-12-06, weekly 2026-W49\n"
                "20261207T010000Z: daily 2026-12-07\n"
                "20261208T010000Z: daily 2026-12-08\n"
                "20261209T010000Z: daily 2026-12-09\n"
                "20261210T010000Z: daily 2026-12-10\n"
                "20261211T010000Z: daily 2026-12-11\n"
                "20261212T010000Z: daily 2026-12-12\n"
                "20261213T010000Z: daily 2026-12-13, weekly 2026-W50\n"
                "20261214T010000Z: daily 2026-12-14\n"
                "20261216T010000Z: daily 2026-12-16\n"
                "20261217T010000Z: daily 2026-12-17\n"
                "20261218T010000Z: daily 2026-12-18\n"
                "20261219T010000Z: daily 2026-12-19\n"
                "20261220T010000Z: daily 2026-12-20, weekly 2026-W51\n"
                "20261221T010000Z: daily 2026-12-21\n"
                "20261222T010000Z: daily 2026-12-22\n"
                "20261223T010000Z: daily 2026-12-23\n"
                "20261224T010000Z: daily 2026-12-24, weekly 2026-W52\n"
                "20261228T010000Z: daily 2026-12-28\n"
                "20261229T010000Z: daily 2026-12-29\n"
                "20261230T010000Z: daily 2026-12-30\n"
                "20261231T010000Z: newest, daily 2026-12-31, weekly 2026-W53, monthly 2026-12\n");
    assert_int_equal(sc->r.nkept, 45);
    assert_int_equal(sc->r.nexpired, 709 - 45);
    assert_cut(sc, 1, start_seg(sc, "20260131T010000Z"), "kept backup 20260131T010000Z starts in");
    /* expiry times: a tier keeps a backup until one second after it is exactly the tier's age */
    const wv_retention_backup_result *b = result_of(sc, "20261202T010000Z");
    assert_int_equal(b->expires_at, T("2026-12-02 01:30:00") + 30 * DAY + 1);
    b = result_of(sc, "20261206T010000Z");
    assert_int_equal(b->rules[0].expires_at, T("2026-12-06 01:30:00") + 30 * DAY + 1);
    assert_int_equal(b->expires_at, T("2026-12-06 01:30:00") + 90 * DAY + 1);
    assert_int_equal(result_of(sc, "20261231T010000Z")->expires_at, WV_RETENTION_FOREVER);
    assert_int_equal(result_of(sc, "20261201T010000Z")->verdict, WV_RETENTION_EXPIRED);
    assert_int_equal(result_of(sc, "20261201T010000Z")->expires_at, 0);
    /* segments below the cut may go, the cut's own segment stays */
    uint64_t cut = start_seg(sc, "20260131T010000Z");
    assert_true(wv_retention_segment_may_go(&sc->r, 1, cut - 1));
    assert_false(wv_retention_segment_may_go(&sc->r, 1, cut));
    assert_false(wv_retention_segment_may_go(&sc->r, 2, 0));
    sc_free(sc);
}

/* A backup exactly as old as a tier's age is kept; one second older, it goes. */
static void test_boundaries(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 30 * DAY;
    add_backup(sc, "2026-12-01 11:59:59", 600, NULL, 0, 1); /* 30d + 1s old */
    add_backup(sc, "2026-12-01 12:00:00", 600, NULL, 0, 1); /* exactly 30d old: newest of its day */
    add_backup(sc, "2026-12-02 00:00:00", 600, NULL, 0, 1); /* 00:00:00 is the day it begins */
    add_backup(sc, "2026-12-02 23:59:59", 600, NULL, 0, 1);
    add_backup(sc, "2026-12-03 00:00:00", 600, NULL, 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20261201T115000Z: daily 2026-12-01\n"
                    "20261202T234959Z: daily 2026-12-02\n"
                    "20261202T235000Z: newest, daily 2026-12-03\n");
    assert_int_equal(result_of(sc, "20261201T115000Z")->expires_at, sc->now + 1);
    assert_cut(sc, 1, start_seg(sc, "20261201T115000Z"), NULL);
    wv_retention_result_free(&sc->r);

    /* one second later it is past the boundary */
    sc->now += 1;
    run(sc);
    assert_kept(sc, "20261202T234959Z: daily 2026-12-02\n"
                    "20261202T235000Z: newest, daily 2026-12-03\n");
    sc_free(sc);
}

/* Several backups a day: only the newest of each day counts for daily, of each week for weekly. */
static void test_same_day(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-02 12:00:00");
    sc->p.daily = 7 * DAY;
    sc->p.weekly = 28 * DAY;
    add_backup(sc, "2026-11-29 01:30:00", 1800, NULL, 0, 1); /* Sunday of 2026-W48 */
    add_backup(sc, "2026-11-29 09:30:00", 1800, NULL, 0, 1);
    add_backup(sc, "2026-11-29 17:30:00", 1800, NULL, 0, 1);
    add_backup(sc, "2026-11-30 01:30:00", 1800, NULL, 0, 1); /* Monday, 2026-W49 */
    add_backup(sc, "2026-11-30 13:30:00", 1800, NULL, 0, 1);
    add_backup(sc, "2026-12-01 06:00:00", 1800, NULL, 0, 1);
    add_backup(sc, "2026-12-01 23:59:59", 1800, NULL, 0, 1);
    add_backup(sc, "2026-12-02 10:00:00", 1800, NULL, 0, 1);
    add_backup(sc, "2026-12-02 11:00:00", 1800, NULL, 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20261129T170000Z: daily 2026-11-29, weekly 2026-W48\n"
                    "20261130T130000Z: daily 2026-11-30\n"
                    "20261201T232959Z: daily 2026-12-01\n"
                    "20261202T103000Z: newest, daily 2026-12-02, weekly 2026-W49\n");
    assert_cut(sc, 1, start_seg(sc, "20261129T170000Z"), NULL);
    wv_retention_result_free(&sc->r);

    /* the same stop second: the greater stop LSN is the newer, whatever the ids say */
    add_backup(sc, "2026-12-02 11:30:00", 600, NULL, 0, 1)->stop_lsn += 2;
    snprintf(sc->ids[sc->nb - 1], sizeof(sc->ids[0]), "a-greater-lsn");
    add_backup(sc, "2026-12-02 11:30:00", 600, NULL, 0, 1)->stop_lsn += 1;
    snprintf(sc->ids[sc->nb - 1], sizeof(sc->ids[0]), "z-lesser-lsn");
    run(sc);
    assert_kept(sc, "20261129T170000Z: daily 2026-11-29, weekly 2026-W48\n"
                    "20261130T130000Z: daily 2026-11-30\n"
                    "20261201T232959Z: daily 2026-12-01\n"
                    "a-greater-lsn: newest, daily 2026-12-02, weekly 2026-W49\n");
    wv_retention_result_free(&sc->r);

    /* the same stop second and LSN: the greater id */
    sc->b[sc->nb - 2].stop_lsn = sc->b[sc->nb - 1].stop_lsn;
    run(sc);
    assert_string_equal(sc->ids[sc->r.order[sc->r.norder - 1]], "z-lesser-lsn");
    sc_free(sc);
}

/* ISO weeks across New Year: 2026-12-31 and 2027-01-01 are in 2026-W53, 2024-12-30 in 2025-W01,
 * 2021-01-03 in 2020-W53. */
static void test_weeks_new_year(void **state)
{
    (void)state;
    scenario *sc = sc_new("2027-01-05 12:00:00");
    sc->p.weekly = 10 * 365 * DAY;
    static const char *const stops[] = {
        "2020-12-31 02:00:00", "2021-01-03 23:59:59", /* Thu and Sun of 2020-W53 */
        "2021-01-04 00:00:00",                        /* Monday: 2021-W01 */
        "2024-12-29 02:00:00",                        /* Sunday of 2024-W52 */
        "2024-12-30 02:00:00", "2025-01-01 02:00:00", /* Mon and Wed of 2025-W01 */
        "2026-12-27 02:00:00",                        /* Sunday of 2026-W52 */
        "2026-12-28 02:00:00", "2026-12-31 02:00:00", /* Mon and Thu of 2026-W53 */
        "2027-01-01 02:00:00", "2027-01-03 23:59:59", /* Fri and Sun of 2026-W53 */
        "2027-01-04 00:00:00", "2027-01-05 02:00:00", /* Mon and Tue of 2027-W01 */
    };
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++)
        add_backup(sc, stops[i], 600, NULL, 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20210103T234959Z: weekly 2020-W53\n"
                    "20210103T235000Z: weekly 2021-W01\n"
                    "20241229T015000Z: weekly 2024-W52\n"
                    "20250101T015000Z: weekly 2025-W01\n"
                    "20261227T015000Z: weekly 2026-W52\n"
                    "20270103T234959Z: weekly 2026-W53\n"
                    "20270105T015000Z: newest, weekly 2027-W01\n");
    assert_cut(sc, 1, start_seg(sc, "20210103T234959Z"), NULL);
    sc_free(sc);
}

/* Months of 28 (2027-02), 29 (2028-02), 30 and 31 days: the last second of a month is in it, the
 * first of the next is not. */
static void test_months(void **state)
{
    (void)state;
    scenario *sc = sc_new("2028-03-02 00:00:00");
    sc->p.monthly = 5 * 365 * DAY;
    static const char *const stops[] = {
        "2027-01-31 12:00:00", "2027-01-31 23:59:59",                        /* 31 days */
        "2027-02-01 00:00:00", "2027-02-28 12:00:00", "2027-02-28 23:59:59", /* 28 */
        "2027-03-01 00:00:00", "2027-03-31 23:59:59",                        /* 31 */
        "2027-04-01 00:00:00", "2027-04-30 23:59:59",                        /* 30 */
        "2027-05-01 00:00:00",                                               /* alone */
        "2028-02-01 00:00:00", "2028-02-28 23:59:59", "2028-02-29 23:59:59", /* 29 */
        "2028-03-01 00:00:00",
    };
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++)
        add_backup(sc, stops[i], 1, NULL, 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20270131T235958Z: monthly 2027-01\n"
                    "20270228T235958Z: monthly 2027-02\n"
                    "20270331T235958Z: monthly 2027-03\n"
                    "20270430T235958Z: monthly 2027-04\n"
                    "20270430T235959Z: monthly 2027-05\n"
                    "20280229T235958Z: monthly 2028-02\n"
                    "20280229T235959Z: newest, monthly 2028-03\n");
    assert_cut(sc, 1, start_seg(sc, "20270131T235958Z"), NULL);
    sc_free(sc);
}

/* label.pre-migration = 90d: prefixes match byte for byte, for the label's own age. */
static void test_labels(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 00:00:00");
    sc->p.daily = 7 * DAY;
    sc->p.nlabels = 2;
    snprintf(sc->p.labels[0].prefix, sizeof(sc->p.labels[0].prefix), "pre-migration");
    sc->p.labels[0].age = 90 * DAY;
    snprintf(sc->p.labels[1].prefix, sizeof(sc->p.labels[1].prefix), "pre");
    sc->p.labels[1].age = 100 * DAY;
    add_backup(sc, "2026-09-21 23:59:59", 60, "pre-migration", 0, 1);    /* 100d + 1s: neither */
    add_backup(sc, "2026-09-22 00:00:00", 60, "pre-upgrade", 0, 1);      /* 100d: "pre" only */
    add_backup(sc, "2026-10-01 00:00:00", 60, "pre-migration-v2", 0, 1); /* 91d: "pre" only */
    add_backup(sc, "2026-10-02 00:00:00", 60, "pre-migration", 0, 1);    /* 90d: both */
    add_backup(sc, "2026-10-03 00:00:00", 60, "Pre-migration", 0, 1);    /* case differs */
    add_backup(sc, "2026-10-04 00:00:00", 60, "nightly pre-migration", 0, 1); /* not a prefix */
    add_backup(sc, "2026-12-20 00:00:00", 60, "nightly", 0, 1);
    add_backup(sc, "2026-12-30 00:00:00", 60, "nightly", 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20260921T235900Z: label pre\n"
                    "20260930T235900Z: label pre\n"
                    "20261001T235900Z: label pre-migration, label pre\n"
                    "20261229T235900Z: newest, daily 2026-12-30\n");
    assert_int_equal(result_of(sc, "20261001T235900Z")->expires_at,
                     T("2026-10-02 00:00:00") + 100 * DAY + 1);
    assert_cut(sc, 1, start_seg(sc, "20260921T235900Z"), NULL);
    sc_free(sc);
}

/* --keep backups stay whatever their age, and hold the WAL from their start. */
static void test_keep(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 3 * DAY;
    add_backup(sc, "2025-01-05 02:00:00", 3600, "before-upgrade", 1, 1);
    add_backup(sc, "2025-01-06 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-06-01 02:00:00", 3600, NULL, 1, 1);
    add_backup(sc, "2026-12-20 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-12-30 02:00:00", 3600, NULL, 1, 1); /* keep and daily */
    add_backup(sc, "2026-12-31 02:00:00", 3600, NULL, 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20250105T010000Z: keep\n"
                    "20260601T010000Z: keep\n"
                    "20261230T010000Z: keep, daily 2026-12-30\n"
                    "20261231T010000Z: newest, daily 2026-12-31\n");
    assert_int_equal(result_of(sc, "20261230T010000Z")->expires_at, WV_RETENTION_FOREVER);
    assert_cut(sc, 1, start_seg(sc, "20250105T010000Z"), "20250105T010000Z");
    sc_free(sc);
}

/* A window longer than every tier: the newest backup that ended at or before now - window stays,
 * and all WAL from its start, though no tier keeps it. */
static void test_window_longer_than_tiers(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 7 * DAY;
    sc->p.weekly = 28 * DAY;
    sc->p.window = 60 * DAY; /* now - window = 2026-11-01 12:00:00 */
    nightly(sc, "2026-10-20 00:00:00", "2026-12-31 00:00:00", NULL);
    add_backup(sc, "2026-11-01 12:00:00", 600, NULL, 0, 1); /* ended exactly at now - window */
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20261101T115000Z: window\n"
                    "20261206T010000Z: weekly 2026-W49\n"
                    "20261213T010000Z: weekly 2026-W50\n"
                    "20261220T010000Z: weekly 2026-W51\n"
                    "20261225T010000Z: daily 2026-12-25\n"
                    "20261226T010000Z: daily 2026-12-26\n"
                    "20261227T010000Z: daily 2026-12-27, weekly 2026-W52\n"
                    "20261228T010000Z: daily 2026-12-28\n"
                    "20261229T010000Z: daily 2026-12-29\n"
                    "20261230T010000Z: daily 2026-12-30\n"
                    "20261231T010000Z: newest, daily 2026-12-31, weekly 2026-W53\n");
    assert_cut(sc, 1, start_seg(sc, "20261101T115000Z"), "20261101T115000Z");
    /* the window moves to the 2026-11-02 backup 60 days after that one ended */
    assert_int_equal(result_of(sc, "20261101T115000Z")->expires_at,
                     T("2026-11-02 01:30:00") + 60 * DAY);
    wv_retention_result_free(&sc->r);

    /* one second before the boundary the window needs the backup before it */
    sc->now -= 1;
    run(sc);
    assert_int_equal(result_of(sc, "20261101T010000Z")->verdict, WV_RETENTION_KEPT);
    assert_string_equal(result_of(sc, "20261101T010000Z")->rules[0].text, "window");
    assert_int_equal(result_of(sc, "20261101T115000Z")->verdict, WV_RETENTION_EXPIRED);
    assert_cut(sc, 1, start_seg(sc, "20261101T010000Z"), NULL);
    sc_free(sc);
}

/* A window shorter than the newest backup's age keeps the newest (and WAL from its start). A
 * window longer than the whole history keeps the oldest. */
static void test_window_short_and_long(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.window = 1 * DAY;
    add_backup(sc, "2026-12-20 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-12-28 02:00:00", 3600, NULL, 0, 1);
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20261228T010000Z: newest, window\n");
    assert_cut(sc, 1, start_seg(sc, "20261228T010000Z"), NULL);
    assert_int_equal(result_of(sc, "20261228T010000Z")->expires_at, WV_RETENTION_FOREVER);
    wv_retention_result_free(&sc->r);

    sc->p.window = 365 * DAY;
    run(sc);
    assert_kept(sc, "20261220T010000Z: window\n"
                    "20261228T010000Z: newest\n");
    assert_cut(sc, 1, start_seg(sc, "20261220T010000Z"), NULL);
    /* until the next backup is a year old */
    assert_int_equal(result_of(sc, "20261220T010000Z")->expires_at,
                     T("2026-12-28 02:00:00") + 365 * DAY);
    sc_free(sc);
}

/*
 * Two timelines: timeline 2 forks from 1 at 2026-12-10 12:00. A kept backup on timeline 1 that
 * started before the fork keeps timeline 1's WAL from its start (through the fork segment) and
 * timeline 2's from where it begins; one that started after the fork (the old primary, still on
 * timeline 1) does not reach timeline 2.
 */
static void test_two_timelines(void **state)
{
    (void)state;
    int64_t fork = T("2026-12-10 12:00:00");
    uint32_t p1[] = {1};
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 30 * DAY;
    add_backup(sc, "2026-11-20 02:00:00", 3600, NULL, 0, 1); /* too old */
    add_backup(sc, "2026-12-09 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-12-20 02:00:00", 3600, NULL, 0, 2);
    add_backup(sc, "2026-12-30 02:00:00", 3600, NULL, 0, 2);
    add_tl1(sc, T("2026-12-12 00:00:00")); /* timeline 1 went on a little after the fork */
    add_timeline(sc, 2, 1, p1, &fork, 1, sc->now);
    run(sc);
    assert_kept(sc, "20261209T010000Z: daily 2026-12-09\n"
                    "20261220T010000Z: daily 2026-12-20\n"
                    "20261230T010000Z: newest, daily 2026-12-30\n");
    assert_cut(sc, 1, start_seg(sc, "20261209T010000Z"), "20261209T010000Z");
    assert_cut(sc, 2, seg_at(fork), "timeline 2 begins at");
    /* the fork segment stays on both timelines */
    assert_false(wv_retention_segment_may_go(&sc->r, 1, seg_at(fork)));
    assert_false(wv_retention_segment_may_go(&sc->r, 2, seg_at(fork)));
    wv_retention_result_free(&sc->r);

    /* only timeline 2's backups kept: timeline 1 may go entirely, timeline 2 below its backup */
    sc->p.daily = 15 * DAY;
    run(sc);
    assert_kept(sc, "20261220T010000Z: daily 2026-12-20\n"
                    "20261230T010000Z: newest, daily 2026-12-30\n");
    assert_cut(sc, 1, ALL, "no kept backup needs timeline 1");
    assert_cut(sc, 2, start_seg(sc, "20261220T010000Z"), NULL);
    wv_retention_result_free(&sc->r);

    /* a backup of the old primary on timeline 1 after the fork does not need timeline 2 */
    sc->p.daily = 30 * DAY;
    sc->b[1] = sc->b[2]; /* drop 2026-12-09: replace it by a copy and fix it up */
    snprintf(sc->ids[1], sizeof(sc->ids[1]), "old-primary");
    sc->b[1].id = sc->ids[1];
    sc->b[1].timeline = 1;
    sc->b[1].start_time = T("2026-12-11 01:00:00");
    sc->b[1].stop_time = T("2026-12-11 02:00:00");
    sc->b[1].start_lsn = lsn_at(sc->b[1].start_time);
    sc->b[1].stop_lsn = lsn_at(sc->b[1].stop_time);
    run(sc);
    assert_kept(sc, "old-primary: daily 2026-12-11\n"
                    "20261220T010000Z: daily 2026-12-20\n"
                    "20261230T010000Z: newest, daily 2026-12-30\n");
    assert_cut(sc, 1, start_seg(sc, "old-primary"), NULL);
    assert_cut(sc, 2, start_seg(sc, "20261220T010000Z"), NULL);
    wv_retention_result_free(&sc->r);

    /* one of the old primary that started before the fork and ended after it: recovery from it
     * cannot follow timeline 2, but the start decides, so timeline 2 is kept (erring on the side
     * of keeping) */
    sc->b[1].start_time = fork - 600;
    sc->b[1].start_lsn = lsn_at(sc->b[1].start_time);
    run(sc);
    assert_cut(sc, 1, start_seg(sc, "old-primary"), NULL);
    assert_cut(sc, 2, seg_at(fork), "timeline 2 begins at");
    sc_free(sc);
}

/*
 * Three timelines and a sibling: 1 -> 2 at f1, 2 -> 3 at f2; 4 forked from 1 at f0 (a restore to
 * a point before the kept backup on 1); 5 has lost its history file.
 */
static void test_three_timelines(void **state)
{
    (void)state;
    int64_t f0 = T("2026-11-15 00:00:00"), f1 = T("2026-12-01 00:00:00"),
            f2 = T("2026-12-15 00:00:00");
    uint32_t p12[] = {1, 2}, p1[] = {1};
    int64_t s12[] = {f1, f2};
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 10 * DAY;
    add_backup(sc, "2026-11-10 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-11-20 02:00:00", 3600, "pinned", 1, 1); /* after f0, before f1 */
    add_backup(sc, "2026-12-10 02:00:00", 3600, NULL, 0, 2);
    add_backup(sc, "2026-12-25 02:00:00", 3600, NULL, 0, 3);
    add_backup(sc, "2026-12-30 02:00:00", 3600, NULL, 0, 3);
    add_tl1(sc, T("2026-12-05 00:00:00"));
    add_timeline(sc, 2, 1, p12, s12, 1, T("2026-12-16 00:00:00"));
    add_timeline(sc, 3, 1, p12, s12, 2, sc->now);
    add_timeline(sc, 4, 1, p1, &f0, 1, T("2026-11-16 00:00:00"));
    add_timeline(sc, 5, 0, NULL, NULL, 0, sc->now);
    run(sc);
    assert_kept(sc, "20261120T010000Z: keep\n"
                    "20261225T010000Z: daily 2026-12-25\n"
                    "20261230T010000Z: newest, daily 2026-12-30\n");
    assert_cut(sc, 1, start_seg(sc, "20261120T010000Z"), NULL);
    assert_cut(sc, 2, seg_at(f1), "timeline 2 begins at");
    assert_cut(sc, 3, seg_at(f2), "timeline 3 begins at");
    assert_cut(sc, 4, ALL, "no kept backup needs timeline 4");
    assert_cut(sc, 5, 0, "no history file");
    wv_retention_result_free(&sc->r);

    /* without the pinned backup: 1 and 2 go entirely, 3 from its oldest kept backup */
    sc->b[1].keep = 0;
    run(sc);
    assert_kept(sc, "20261225T010000Z: daily 2026-12-25\n"
                    "20261230T010000Z: newest, daily 2026-12-30\n");
    assert_cut(sc, 1, ALL, NULL);
    assert_cut(sc, 2, ALL, NULL);
    assert_cut(sc, 3, start_seg(sc, "20261225T010000Z"), "kept backup 20261225T010000Z");
    assert_cut(sc, 4, ALL, NULL);
    assert_cut(sc, 5, 0, NULL);
    /* by name: history files never go, .partial and .backup files with their segment */
    char name[WV_WALNAME_BACKUP_LEN];
    uint64_t cut3 = start_seg(sc, "20261225T010000Z");
    static const char *const never[] = {
        "00000001.history",         "00000002.history", "00000003.history",
        "00000004.history",         "00000005.history", "000000050000000000000001",
        "000000060000000000000001", "RECOVERYXLOG",     "000000010000000000000001.tmp",
        "00000002.history.partial",
    };
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (wv_retention_walname_may_go(&sc->r, never[i], SEGSIZE))
            fail_msg("%s may go", never[i]);
    wv_walname_format_segment(1, 3, SEGSIZE, name);
    assert_true(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    strcat(name, ".partial");
    assert_true(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    wv_walname_format_backup(3, wv_segno_to_lsn(cut3 - 1, SEGSIZE) + 0x28, SEGSIZE, name);
    assert_true(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    wv_walname_format_backup(3, wv_segno_to_lsn(cut3, SEGSIZE) + 0x28, SEGSIZE, name);
    assert_false(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    wv_walname_format_segment(3, cut3, SEGSIZE, name);
    assert_false(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    strcat(name, ".partial");
    assert_false(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    wv_walname_format_segment(3, cut3 - 1, SEGSIZE, name);
    assert_true(wv_retention_walname_may_go(&sc->r, name, SEGSIZE));
    /* a segment number a 1 GiB cluster cannot have is not one of ours */
    assert_false(
        wv_retention_walname_may_go(&sc->r, "0000000100000000000000FF", UINT64_C(1) << 30));
    wv_retention_result_free(&sc->r);

    /* the backup on timeline 2 kept: 2 from its start, 3 from its fork, 1 not needed */
    sc->p.daily = 25 * DAY;
    run(sc);
    assert_kept(sc, "20261210T010000Z: daily 2026-12-10\n"
                    "20261225T010000Z: daily 2026-12-25\n"
                    "20261230T010000Z: newest, daily 2026-12-30\n");
    assert_cut(sc, 1, ALL, NULL);
    assert_cut(sc, 2, start_seg(sc, "20261210T010000Z"), NULL);
    assert_cut(sc, 3, seg_at(f2), NULL);
    sc_free(sc);
}

/* No [retention]: nothing expires, no WAL goes. */
static void test_no_policy(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    nightly(sc, "2024-06-01 00:00:00", "2026-12-31 00:00:00", NULL);
    add_tl1(sc, sc->now);
    run(sc);
    assert_false(sc->r.has_policy);
    assert_int_equal(sc->r.nkept, sc->nb);
    assert_int_equal(sc->r.nexpired, 0);
    for (size_t i = 0; i < sc->nb; i++) {
        assert_int_equal(sc->r.backups[i].verdict, WV_RETENTION_KEPT);
        assert_int_equal(sc->r.backups[i].nrules, 1);
        assert_int_equal(sc->r.backups[i].rules[0].kind, WV_RETENTION_RULE_NONE);
        assert_int_equal(sc->r.backups[i].expires_at, WV_RETENTION_FOREVER);
    }
    assert_cut(sc, 1, 0, "no retention policy");
    assert_false(wv_retention_segment_may_go(&sc->r, 1, 0));
    sc_free(sc);
}

/* Incomplete backups are ignored: not kept, not expired, not the newest, holding no WAL. */
static void test_incomplete(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 2 * DAY;
    add_backup(sc, "2026-12-01 02:00:00", 3600, NULL, 0, 1)->complete = 0;
    add_backup(sc, "2026-12-20 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-12-21 02:00:00", 3600, NULL, 1, 1)->complete = 0;
    add_backup(sc, "2026-12-31 11:00:00", 3600, NULL, 0, 1)->complete = 0;
    add_tl1(sc, sc->now);
    run(sc);
    assert_kept(sc, "20261220T010000Z: newest\n");
    assert_int_equal(sc->r.nignored, 3);
    assert_int_equal(sc->r.norder, 1);
    assert_int_equal(result_of(sc, "20261201T010000Z")->verdict, WV_RETENTION_IGNORED);
    assert_cut(sc, 1, start_seg(sc, "20261220T010000Z"), NULL);
    wv_retention_result_free(&sc->r);

    /* nothing complete at all: nothing kept, nothing expired, and no WAL goes (the first backup
     * may be running) */
    sc->b[1].complete = 0;
    run(sc);
    assert_int_equal(sc->r.nkept, 0);
    assert_int_equal(sc->r.nexpired, 0);
    assert_cut(sc, 1, 0, "no complete backup");
    sc_free(sc);
}

/* Input that cannot be right is refused, and nothing is returned to free. */
static void test_bad_input(void **state)
{
    (void)state;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    wv_err err;
    sc->p.daily = DAY;
    add_backup(sc, "2026-12-20 02:00:00", 3600, NULL, 0, 1);
    add_backup(sc, "2026-12-21 02:00:00", 3600, NULL, 0, 1);
    add_tl1(sc, sc->now);
    wv_retention_input in = {sc->b, sc->nb, sc->t, sc->nt, SEGSIZE, sc->now};

    in.segsize = 1000;
    assert_int_equal(wv_retention_apply(&sc->p, &in, &sc->r, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "retention: invalid WAL segment size 1000");
    in.segsize = SEGSIZE;

    snprintf(sc->ids[1], sizeof(sc->ids[1]), "%s", sc->ids[0]);
    assert_int_equal(wv_retention_apply(&sc->p, &in, &sc->r, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "retention: backup \"20261220T010000Z\" is listed twice");
    snprintf(sc->ids[1], sizeof(sc->ids[1]), "b");

    sc->b[1].stop_lsn = sc->b[1].start_lsn - 1;
    assert_int_equal(wv_retention_apply(&sc->p, &in, &sc->r, &err), WV_EUSAGE);
    sc->b[1].stop_lsn = sc->b[1].start_lsn + 1;

    wv_retention_timeline two[2] = {sc->t[0], sc->t[0]};
    in.timelines = two;
    in.ntimelines = 2;
    assert_int_equal(wv_retention_apply(&sc->p, &in, &sc->r, &err), WV_EUSAGE);
    assert_string_equal(err.msg, "retention: timeline 1 is zero, repeated or out of order");
    in.timelines = sc->t;
    in.ntimelines = sc->nt;
    assert_null(sc->r.backups);

    assert_int_equal(wv_retention_apply(&sc->p, &in, &sc->r, &err), 0);
    sc_free(sc);
}

/* The invariant check refuses a result that would delete what must stay. */
static void test_verify(void **state)
{
    (void)state;
    int64_t fork = T("2026-12-10 12:00:00");
    uint32_t p1[] = {1};
    wv_err err;
    scenario *sc = sc_new("2026-12-31 12:00:00");
    sc->p.daily = 15 * DAY;
    add_backup(sc, "2026-12-09 02:00:00", 3600, NULL, 1, 1);
    add_backup(sc, "2026-12-20 02:00:00", 3600, NULL, 0, 2);
    add_backup(sc, "2026-12-30 02:00:00", 3600, NULL, 0, 2);
    add_tl1(sc, T("2026-12-12 00:00:00"));
    add_timeline(sc, 2, 1, p1, &fork, 1, sc->now);
    run(sc);
    wv_retention_input in = {sc->b, sc->nb, sc->t, sc->nt, segsize, sc->now};
    assert_int_equal(wv_retention_verify(&sc->p, &in, &sc->r, &err), 0);

    wv_retention_backup_result *newest = &sc->r.backups[2], *kept = &sc->r.backups[0];
    newest->verdict = WV_RETENTION_EXPIRED;
    assert_int_equal(wv_retention_verify(&sc->p, &in, &sc->r, &err), WV_EINTERNAL);
    assert_string_equal(err.msg, "retention: the newest backup \"20261230T010000Z\" would expire");
    newest->verdict = WV_RETENTION_KEPT;

    kept->verdict = WV_RETENTION_EXPIRED;
    assert_int_equal(wv_retention_verify(&sc->p, &in, &sc->r, &err), WV_EINTERNAL);
    assert_string_equal(err.msg,
                        "retention: backup \"20261209T010000Z\" would expire with keep set");
    kept->verdict = WV_RETENTION_KEPT;

    /* timeline 2's fork segment is needed by the kept backup on timeline 1 */
    sc->r.timelines[1].keep_from = seg_at(fork) + 1;
    assert_int_equal(wv_retention_verify(&sc->p, &in, &sc->r, &err), WV_EINTERNAL);
    assert_non_null(strstr(err.msg, "of timeline 2 would expire but kept backup "
                                    "\"20261209T010000Z\" needs it"));
    sc->r.timelines[1].keep_from = seg_at(fork);
    sc->r.timelines[0].keep_from = start_seg(sc, "20261209T010000Z") + 1;
    assert_int_equal(wv_retention_verify(&sc->p, &in, &sc->r, &err), WV_EINTERNAL);
    sc->r.timelines[0].keep_from = start_seg(sc, "20261209T010000Z");
    assert_int_equal(wv_retention_verify(&sc->p, &in, &sc->r, &err), 0);

    /* without a rule nothing may go */
    wv_retention_policy none;
    wv_retention_policy_init(&none);
    assert_int_equal(wv_retention_verify(&none, &in, &sc->r, &err), WV_EINTERNAL);
    assert_string_equal(err.msg,
                        "retention: WAL of timeline 1 would expire with no retention rule");
    sc_free(sc);
}

/* The adapters fill the input from what the repository modules load. */
static void test_adapters(void **state)
{
    (void)state;
    wv_backup bk[2];
    memset(bk, 0, sizeof(bk));
    snprintf(bk[0].h.id, sizeof(bk[0].h.id), "a");
    bk[0].h.label = "pre-migration";
    bk[0].h.keep = 1;
    bk[0].h.timeline = 2;
    bk[0].h.start_lsn = 10;
    bk[0].h.stop_lsn = 20;
    bk[0].h.start_time = 100;
    bk[0].h.stop_time = 200;
    snprintf(bk[1].h.id, sizeof(bk[1].h.id), "b");
    bk[1].h.label = "";
    wv_backupset set = {.b = bk, .n = 2};
    wv_retention_backup *rb = wv_retention_backups_from_set(&set);
    assert_string_equal(rb[0].id, "a");
    assert_string_equal(rb[0].label, "pre-migration");
    assert_int_equal(rb[0].keep, 1);
    assert_int_equal(rb[0].complete, 1);
    assert_int_equal(rb[0].timeline, 2);
    assert_int_equal(rb[0].start_lsn, 10);
    assert_int_equal(rb[0].stop_lsn, 20);
    assert_int_equal(rb[0].start_time, 100);
    assert_int_equal(rb[0].stop_time, 200);
    assert_string_equal(rb[1].id, "b");
    free(rb);

    uint64_t segs[] = {3, 4, 5};
    wv_history_entry h[] = {{.tli = 1, .switch_lsn = 0x3000000}};
    wv_archive_tli tls[] = {
        {.tli = 1, .segnos = segs, .nseg = 2},
        {.tli = 2, .segnos = segs + 1, .nseg = 2, .has_history = 1, .hist = h, .nhist = 1},
    };
    wv_archive a = {.segsize = SEGSIZE, .tls = tls, .ntl = 2};
    wv_retention_timeline *rt = wv_retention_timelines_from_archive(&a);
    assert_int_equal(rt[0].tli, 1);
    assert_int_equal(rt[0].nseg, 2);
    assert_ptr_equal(rt[0].segnos, segs);
    assert_int_equal(rt[1].tli, 2);
    assert_int_equal(rt[1].has_history, 1);
    assert_ptr_equal(rt[1].hist, h);
    assert_int_equal(rt[1].nhist, 1);
    free(rt);
}

/* ---- the property test ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rnd(uint64_t n)
{
    /* xorshift64*: the same sequence on every machine */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (rng_state * UINT64_C(2685821657736338717)) % n;
}

/* The UTC day, ISO week or month of t, spelt by libc (kind 0, 1, 2). */
static void fmt_period(int64_t t, int kind, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    if (kind == 0)
        strftime(out, len, "%Y-%m-%d", &tm);
    else if (kind == 1)
        strftime(out, len, "%G-W%V", &tm);
    else
        strftime(out, len, "%Y-%m", &tm);
}

/* Whether a is newer than b, in the documented order. */
static int newer(const wv_retention_backup *a, const wv_retention_backup *b)
{
    if (a->stop_time != b->stop_time)
        return a->stop_time > b->stop_time;
    if (a->stop_lsn != b->stop_lsn)
        return a->stop_lsn > b->stop_lsn;
    return strcmp(a->id, b->id) > 0;
}

/* The rules that keep backup i, restated directly from the header's text, joined with ", ". */
static void expected_rules(const scenario *sc, size_t i, char *out, size_t len)
{
    const wv_retention_backup *b = &sc->b[i];
    const wv_retention_policy *p = &sc->p;
    char buf[WV_RETENTION_RULE_TEXT_MAX + 16], k1[32], k2[32];
    size_t used = 0;
    out[0] = '\0';
#define ADD(...)                                                                                   \
    do {                                                                                           \
        snprintf(buf, sizeof(buf), __VA_ARGS__);                                                   \
        used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "", buf);           \
    } while (0)
    if (!b->complete)
        return;
    if (!wv_retention_policy_has_rules(p)) {
        ADD("none");
        return;
    }
    int is_newest = 1;
    for (size_t j = 0; j < sc->nb; j++)
        if (j != i && sc->b[j].complete && newer(&sc->b[j], b))
            is_newest = 0;
    if (is_newest)
        ADD("newest");
    if (b->keep)
        ADD("keep");
    if (p->window != WV_RETENTION_UNSET) {
        long pick = -1, oldest = -1;
        for (size_t j = 0; j < sc->nb; j++) {
            const wv_retention_backup *c = &sc->b[j];
            if (!c->complete)
                continue;
            if (oldest < 0 || newer(&sc->b[oldest], c))
                oldest = (long)j;
            if (c->stop_time <= sc->now - p->window && (pick < 0 || newer(c, &sc->b[pick])))
                pick = (long)j;
        }
        if ((size_t)(pick >= 0 ? pick : oldest) == i)
            ADD("window");
    }
    for (int l = 0; l < p->nlabels; l++)
        if (strncmp(b->label, p->labels[l].prefix, strlen(p->labels[l].prefix)) == 0 &&
            sc->now - b->stop_time <= p->labels[l].age)
            ADD("label %s", p->labels[l].prefix);
    static const char *const names[] = {"daily", "weekly", "monthly"};
    const int64_t ages[] = {p->daily, p->weekly, p->monthly};
    for (int t = 0; t < 3; t++) {
        if (ages[t] == WV_RETENTION_UNSET || sc->now - b->stop_time > ages[t])
            continue;
        fmt_period(b->stop_time, t, k1, sizeof(k1));
        int newest_of_period = 1;
        for (size_t j = 0; j < sc->nb; j++) {
            if (j == i || !sc->b[j].complete)
                continue;
            fmt_period(sc->b[j].stop_time, t, k2, sizeof(k2));
            if (strcmp(k1, k2) == 0 && newer(&sc->b[j], b))
                newest_of_period = 0;
        }
        if (newest_of_period)
            ADD("%s %s", names[t], k1);
    }
#undef ADD
}

/* The timeline that wrote lsn on timeline x's path, from its history entries read directly. */
static uint32_t writer_of(const wv_retention_timeline *x, uint64_t lsn)
{
    if (x->tli == 1 || !x->has_history)
        return x->tli;
    uint64_t from = 0;
    for (size_t k = 0; k < x->nhist; k++) {
        if (lsn >= from && lsn < x->hist[k].switch_lsn)
            return x->hist[k].tli;
        from = x->hist[k].switch_lsn;
    }
    return x->tli;
}

/* The check of one random result: rules, cut, and the invariants. */
static void check_property(const scenario *sc)
{
    char want[1024], got[1024];
    size_t newest = SIZE_MAX;
    for (size_t i = 0; i < sc->nb; i++) {
        const wv_retention_backup_result *r = &sc->r.backups[i];
        expected_rules(sc, i, want, sizeof(want));
        wv_retention_rules_text(r, got, sizeof(got));
        if (strcmp(want, got) != 0)
            fail_msg("backup %s: rules \"%s\", expected \"%s\"", sc->ids[i], got, want);
        if (!sc->b[i].complete)
            assert_int_equal(r->verdict, WV_RETENTION_IGNORED);
        else
            assert_int_equal(r->verdict, want[0] ? WV_RETENTION_KEPT : WV_RETENTION_EXPIRED);
        if (sc->b[i].complete && (newest == SIZE_MAX || newer(&sc->b[i], &sc->b[newest])))
            newest = i;
        if (sc->b[i].complete && sc->b[i].keep)
            assert_int_equal(r->verdict, WV_RETENTION_KEPT);
    }
    if (newest != SIZE_MAX)
        assert_int_equal(sc->r.backups[newest].verdict, WV_RETENTION_KEPT);
    if (!wv_retention_policy_has_rules(&sc->p))
        assert_int_equal(sc->r.nexpired, 0);

    for (size_t t = 0; t < sc->nt; t++) {
        const wv_retention_timeline *x = &sc->t[t];
        uint64_t cut = sc->r.timelines[t].keep_from;
        uint64_t lowest = UINT64_MAX;
        /* Every archived segment any kept backup reads on the way to x, segment by segment. */
        for (size_t i = 0; i < sc->nb; i++) {
            const wv_retention_backup *b = &sc->b[i];
            if (sc->r.backups[i].verdict != WV_RETENTION_KEPT)
                continue;
            if (writer_of(x, b->start_lsn) != b->timeline)
                continue; /* recovery from b cannot end on x */
            for (size_t s = 0; s < x->nseg; s++) {
                uint64_t n = x->segnos[s];
                uint64_t end = wv_segno_to_lsn(n + 1, segsize) - 1;
                if (n < wv_lsn_to_segno(b->start_lsn, segsize) || writer_of(x, end) != x->tli)
                    continue;
                if (n < cut)
                    fail_msg("timeline %u: segment %llu below the cut %llu is needed by kept "
                             "backup %s",
                             x->tli, (unsigned long long)n, (unsigned long long)cut, sc->ids[i]);
                if (n < lowest)
                    lowest = n;
            }
        }
        if (!wv_retention_policy_has_rules(&sc->p) || (x->tli > 1 && !x->has_history) ||
            newest == SIZE_MAX) {
            assert_int_equal(cut, 0);
            continue;
        }
        /* and nothing more is kept than the lowest of those (segments are contiguous here) */
        if (lowest == UINT64_MAX)
            assert_int_equal(sc->r.timelines[t].nexpire, x->nseg);
        else
            assert_int_equal(cut, lowest);
    }

    /* every point of the window is restorable from a kept backup whose WAL stays */
    if (sc->p.window != WV_RETENTION_UNSET && newest != SIZE_MAX) {
        int covered = 0;
        for (size_t i = 0; i < sc->nb; i++) {
            const wv_retention_backup *b = &sc->b[i];
            if (sc->r.backups[i].verdict != WV_RETENTION_KEPT)
                continue;
            int before_all = 1;
            for (size_t j = 0; j < sc->nb; j++)
                if (sc->b[j].complete && sc->b[j].stop_time < b->stop_time)
                    before_all = 0;
            if (b->stop_time <= sc->now - sc->p.window || before_all)
                covered = 1;
        }
        assert_true(covered);
    }
}

static void test_property(void **state)
{
    (void)state;
    int64_t t0 = T("2025-01-01 00:00:00"), span = 2 * 365 * DAY;
    segsize = UINT64_C(1) << 30;
    for (int iter = 0; iter < 400; iter++) {
        scenario *sc = sc_new("2025-01-01 00:00:00");
        sc->now = t0 + span + (int64_t)rnd(30 * DAY);
        int64_t end = t0 + span;
        /* timelines: 1, then 2 forks from 1, 3 from 2 or 1; sometimes 3 has lost its history */
        int64_t f2 = t0 + (int64_t)rnd((uint64_t)span);
        int64_t f3 =
            rnd(2) ? f2 + (int64_t)rnd((uint64_t)(end - f2)) : t0 + (int64_t)rnd((uint64_t)span);
        uint32_t p3par = f3 > f2 && rnd(2) ? 2 : 1;
        uint32_t p1[] = {1}, p12[] = {1, 2};
        int64_t s1[] = {f2}, s12[] = {f2, f3};
        int ntl = 1 + (int)rnd(3);
        add_tl1(sc, end);
        if (ntl >= 2)
            add_timeline(sc, 2, 1, p1, s1, 1, end);
        if (ntl >= 3) {
            int hist = rnd(5) != 0;
            if (p3par == 2)
                add_timeline(sc, 3, hist, p12, s12, 2, end);
            else
                add_timeline(sc, 3, hist, p1, &f3, 1, end);
        }
        int nb = (int)rnd(40);
        for (int k = 0; k < nb; k++) {
            int64_t stop = t0 + HOUR + (int64_t)rnd((uint64_t)span);
            if (rnd(4) == 0 && sc->nb > 0)
                stop = sc->b[rnd(sc->nb)].stop_time + (int64_t)rnd(3) - 1; /* ties, neighbours */
            int64_t dur = 1 + (int64_t)rnd(HOUR);
            /* on a timeline that had begun when the backup started */
            uint32_t tli = 1 + (uint32_t)rnd((uint64_t)ntl);
            int64_t begin = tli == 1 ? t0 : tli == 2 ? f2 : f3;
            if (stop - dur <= begin)
                tli = 1;
            static const char *const labels[] = {"", "nightly", "pre-migration", "pre-x", "pre"};
            wv_retention_backup *b = add_backup_t(sc, stop, dur, labels[rnd(5)], rnd(10) == 0, tli);
            snprintf(sc->ids[sc->nb - 1], sizeof(sc->ids[0]), "b%03zu", sc->nb - 1);
            b->complete = rnd(12) != 0;
        }
        wv_retention_policy *p = &sc->p;
        int64_t units[] = {HOUR, DAY, 7 * DAY, 365 * DAY};
        if (rnd(8) != 0) { /* else no policy at all */
            if (rnd(2))
                p->daily = (int64_t)(1 + rnd(60)) * units[rnd(2)];
            if (rnd(2))
                p->weekly = (int64_t)(1 + rnd(20)) * units[1 + rnd(2)];
            if (rnd(2))
                p->monthly = (int64_t)(1 + rnd(3)) * units[1 + rnd(3)];
            if (rnd(3) == 0)
                p->window = (int64_t)(1 + rnd(90)) * units[rnd(2)];
            if (rnd(3) == 0) {
                p->nlabels = 1 + (int)rnd(2);
                snprintf(p->labels[0].prefix, sizeof(p->labels[0].prefix), "pre-migration");
                snprintf(p->labels[1].prefix, sizeof(p->labels[1].prefix), "pre");
                p->labels[0].age = (int64_t)(1 + rnd(400)) * DAY;
                p->labels[1].age = (int64_t)(1 + rnd(400)) * DAY;
            }
        }
        run(sc);
        check_property(sc);
        sc_free(sc);
    }
    segsize = SEGSIZE;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_years),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_same_day),
        cmocka_unit_test(test_weeks_new_year),
        cmocka_unit_test(test_months),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_keep),
        cmocka_unit_test(test_window_longer_than_tiers),
        cmocka_unit_test(test_window_short_and_long),
        cmocka_unit_test(test_two_timelines),
        cmocka_unit_test(test_three_timelines),
        cmocka_unit_test(test_no_policy),
        cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_adapters),
        cmocka_unit_test(test_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
