/*
 * test_recovery.c - the recovery decision and the recoverable windows over synthetic facts: no
 * repository, no storage. Each world is a small archive (segment runs per timeline with their
 * commit times, forks, backups, restore points); each row of the table is one restore request on
 * one world with the backup, timeline and reason it must choose, or the fragment of the refusal.
 *
 * Times are seconds after T0; "{N}" in an expected fragment is replaced by the formatted time
 * T0 + N seconds. 16 MiB segments: L(seg, offset) is an LSN in segment seg.
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

#include "core/buf.h"
#include "core/error.h"
#include "core/timeparse.h"
#include "repo/recovery.h"

#define SEG      (UINT64_C(16) << 20)
#define L(s, o)  ((uint64_t)(s)*SEG + (uint64_t)(o))
#define T0       INT64_C(1800000000)
#define US(sec)  ((T0 + (int64_t)(sec)) * 1000000LL)
#define MAX_RUNS 6

/* Segments from..to of tli; segment from+i has commits at t + 100 i + 10 .. t + 100 i + 90. */
typedef struct run {
    uint32_t tli;
    uint64_t from, to;
    int64_t t;
} run;

/* One segment's commits replaced (count 0: a segment without commits). */
typedef struct seg_override {
    uint32_t tli;
    uint64_t segno;
    uint32_t count;
    int64_t first, last;
} seg_override;

typedef struct fork_def {
    uint32_t tli, parent;
    uint64_t lsn;
} fork_def;

typedef struct backup_def {
    const char *id;
    uint32_t tli;
    uint64_t start, stop;
    int64_t stop_t;
    uint32_t next_xid;
} backup_def;

typedef struct rp_def {
    const char *name;
    uint32_t tli;
    uint64_t lsn;
} rp_def;

/* A segment's recorded range of committed transaction ids (its ".xid" object); a segment with
 * commits and no entry has none recorded. */
typedef struct xid_def {
    uint32_t tli;
    uint64_t segno;
    uint32_t xmin, xmax;
} xid_def;

typedef struct world {
    run runs[MAX_RUNS];
    seg_override ov[MAX_RUNS];
    xid_def xr[8];
    fork_def forks[3];
    backup_def backups[4];
    rp_def rps[3];
    const char *dropped[2]; /* segments archive_queue_max dropped (gaps/) */
} world;

/* ---- the worlds ------------------------------------------------------------------------------ */

#define B1 "20260101T000100Z"
#define B2 "20260101T001000Z"
#define B3 "20260101T002000Z"
#define BT "20260101T003000Z" /* on timeline 2 */

/* One timeline, two backups. */
static const world single = {
    .runs = {{1, 1, 10, 100}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000},
                {B2, 1, L(6, 0x28), L(6, 0x100), 600, 2000}},
    .rps = {{"before_b2", 1, L(4, 0x500)}},
};

/* Segments 6 and 7 missing; a backup after the gap. */
static const world gapped = {
    .runs = {{1, 1, 5, 100}, {1, 8, 10, 800}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000},
                {B3, 1, L(9, 0x28), L(9, 0x100), 900, 3000}},
};

/* The same gap, its first segment dropped by archive_queue_max. */
static const world dropped_gap = {
    .runs = {{1, 1, 5, 100}, {1, 8, 10, 800}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000},
                {B3, 1, L(9, 0x28), L(9, 0x100), 900, 3000}},
    .dropped = {"000000010000000000000006", "000000010000000000000007"},
};

/* The backup's first segment was never archived. */
static const world nowal = {
    .runs = {{1, 5, 6, 500}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000}},
};

static const world nobackup = {
    .runs = {{1, 1, 3, 100}},
};

/*
 * 1 -> 2 inside segment 5 (no commit of segment 5 before the fork: the two segments 5 share none),
 * timeline 2 written later (its commits from 2000 on), with a backup of its own; 1 -> 3 inside
 * segment 9, after commit 910 that both segments 9 begin with; timeline 3 written from 3000 on.
 */
static const world forks = {
    .runs = {{1, 1, 10, 100}, {2, 5, 8, 2000}, {3, 9, 11, 2900}},
    .ov = {{3, 9, 3, 910, 2990}},
    .forks = {{2, 1, L(5, 0x400000)}, {3, 1, L(9, 0x800000)}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000},
                {BT, 2, L(7, 0x28), L(7, 0x100), 2250, 3000}},
};

/*
 * As tests/integration/test_timelines.py builds it: batch 1 (310) before the fork and batch 2
 * (320) after it in segment 3 of timeline 1, batch 3 (510) in segment 4; timeline 2 forks inside
 * segment 3, which begins with batch 1 and goes on with batches 21 (410) and 22 (420).
 */
static const world fixture = {
    .runs = {{1, 1, 4, 100}, {2, 3, 3, 300}},
    .ov = {{1, 3, 2, 310, 320}, {2, 3, 3, 310, 420}, {1, 4, 1, 510, 510}},
    .forks = {{2, 1, L(3, 0x400000)}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000}},
    .rps = {{"on_tl1", 1, L(3, 0x900000)}, {"on_tl2", 2, L(3, 0x600000)}},
};

/*
 * The fixture's shape with transaction id ranges: timeline 2 forks inside segment 3 (both segments
 * 3 begin with the ids 1006 .. 1010 committed before the fork); after the fork both timelines
 * assign ids from 1011 on. xid_tl1: timeline 1 runs on to 1040 (segment 4) while timeline 2 stops
 * at 1018 (segments 3 to 5); xid_tl2 the other way round; xid_unrecorded is xid_tl1 with timeline
 * 2's segment 4 archived before ranges were recorded.
 */
#define XID_WORLD(TL1_3, TL1_4, TL2_3, TL2_4, TL2_5)                                               \
    {                                                                                              \
        .runs = {{1, 1, 4, 100}, {2, 3, 5, 300}},                                                  \
        .ov = {{1, 3, 2, 310, 320}, {2, 3, 3, 310, 420}, {1, 4, 1, 510, 510}},                     \
        .xr = {{1, 2, 990, 1005},   {1, 3, 1006, TL1_3},      {1, 4, TL1_3 + 1, TL1_4},            \
               {2, 3, 1006, TL2_3}, {2, 4, TL2_3 + 1, TL2_4}, {2, 5, TL2_4 + 1, TL2_5}},           \
        .forks = {{2, 1, L(3, 0x400000)}},                                                         \
        .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000}},                                  \
    }
static const world xid_tl1 = XID_WORLD(1020, 1040, 1013, 1016, 1018);
static const world xid_tl2 = XID_WORLD(1013, 1018, 1020, 1030, 1040);
static const world xid_unrecorded = {
    .runs = {{1, 1, 4, 100}, {2, 3, 5, 300}},
    .ov = {{1, 3, 2, 310, 320}, {2, 3, 3, 310, 420}, {1, 4, 1, 510, 510}},
    .xr = {{1, 2, 990, 1005},
           {1, 3, 1006, 1020},
           {1, 4, 1021, 1040},
           {2, 3, 1006, 1013},
           {2, 5, 1017, 1018}},
    .forks = {{2, 1, L(3, 0x400000)}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000}},
};

/* Two backups with no commit after the first: the WAL between them is complete, so the window
 * runs on from the first backup to the second without a gap. */
static const world quiet = {
    .runs = {{1, 1, 8, 100}},
    .ov = {{1, 3, 0, 0, 0},
           {1, 4, 0, 0, 0},
           {1, 5, 0, 0, 0},
           {1, 6, 0, 0, 0},
           {1, 7, 0, 0, 0},
           {1, 8, 0, 0, 0}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000},
                {B2, 1, L(6, 0x28), L(6, 0x100), 600, 2000}},
};

/* A failover: timeline 1 ends before the segment where timeline 2 begins. */
static const world failover = {
    .runs = {{1, 1, 2, 100}, {2, 3, 4, 300}},
    .forks = {{2, 1, L(3, 0x400000)}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000}},
};

/* Timeline 2 has a history file and no WAL; timeline 1 went on. */
static const world stillborn = {
    .runs = {{1, 1, 4, 100}},
    .forks = {{2, 1, L(3, 0x400000)}},
    .backups = {{B1, 1, L(2, 0x28), L(2, 0x100), 200, 1000}},
};

/* ---- facts from a world ---------------------------------------------------------------------- */

typedef struct built {
    const world *w;
    wv_archive a;
    wv_backupset bs;
    wv_recovery_facts f;
    char dropped[2][WV_WALNAME_SEGMENT_LEN];
} built;

static int table_segment_commits(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                                 wv_err *err)
{
    const world *w = arg;
    for (int i = 0; i < MAX_RUNS; i++) {
        const run *r = &w->runs[i];
        if (!r->tli || r->tli != tli || segno < r->from || segno > r->to)
            continue;
        int64_t base = r->t + 100 * (int64_t)(segno - r->from);
        out->count = 9;
        out->first_us = US(base + 10);
        out->last_us = US(base + 90);
        for (int k = 0; k < MAX_RUNS; k++)
            if (w->ov[k].tli == tli && w->ov[k].segno == segno) {
                out->count = w->ov[k].count;
                out->first_us = w->ov[k].count ? US(w->ov[k].first) : INT64_MIN;
                out->last_us = w->ov[k].count ? US(w->ov[k].last) : INT64_MIN;
            }
        return 0;
    }
    return wv_err_set(err, WV_ENOTFOUND, "not archived");
}

static int table_next_xid(void *arg, const wv_backup *b, uint32_t *xid, wv_err *err)
{
    const world *w = arg;
    (void)err;
    *xid = 0;
    for (int i = 0; i < 4 && w->backups[i].id; i++)
        if (strcmp(w->backups[i].id, b->h.id) == 0)
            *xid = w->backups[i].next_xid;
    return 0;
}

static int table_segment_xids(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                              wv_err *err)
{
    const world *w = arg;
    int rc = table_segment_commits(arg, tli, segno, out, err);
    out->xid_known = 0;
    for (int i = 0; rc == 0 && out->count > 0 && i < 8; i++)
        if (w->xr[i].tli == tli && w->xr[i].segno == segno) {
            out->xid_known = 1;
            out->xid_min = w->xr[i].xmin;
            out->xid_max = w->xr[i].xmax;
        }
    return rc;
}

static const wv_recovery_facts_ops table_ops = {
    .segment_commits = table_segment_commits,
    .backup_next_xid = table_next_xid,
    .segment_xids = table_segment_xids,
};

static wv_archive_tli *tli_of(wv_archive *a, uint32_t tli)
{
    for (size_t i = 0; i < a->ntl; i++)
        if (a->tls[i].tli == tli)
            return &a->tls[i];
    a->tls = wv_xrealloc(a->tls, (a->ntl + 1) * sizeof(*a->tls));
    size_t at = a->ntl++;
    while (at > 0 && a->tls[at - 1].tli > tli) { /* keep them sorted */
        a->tls[at] = a->tls[at - 1];
        at--;
    }
    memset(&a->tls[at], 0, sizeof(a->tls[at]));
    a->tls[at].tli = tli;
    return &a->tls[at];
}

static void build(built *x, const world *w, const wv_target *t)
{
    memset(x, 0, sizeof(*x));
    x->w = w;
    x->a.segsize = SEG;
    x->a.max_history_tli = 1;
    for (int i = 0; i < MAX_RUNS && w->runs[i].tli; i++) {
        wv_archive_tli *tl = tli_of(&x->a, w->runs[i].tli);
        for (uint64_t s = w->runs[i].from; s <= w->runs[i].to; s++) {
            tl->segnos = wv_xrealloc(tl->segnos, (tl->nseg + 1) * sizeof(uint64_t));
            tl->segnos[tl->nseg++] = s;
        }
    }
    for (int i = 0; i < 3 && w->forks[i].tli; i++) {
        const wv_archive_tli *parent = tli_of(&x->a, w->forks[i].parent);
        size_t np = parent->has_history ? parent->nhist : 0;
        wv_history_entry *h = wv_xcalloc(np + 1, sizeof(*h));
        if (np)
            memcpy(h, parent->hist, np * sizeof(*h));
        h[np].tli = w->forks[i].parent;
        h[np].switch_lsn = w->forks[i].lsn;
        wv_archive_tli *tl = tli_of(&x->a, w->forks[i].tli);
        tl->hist = h;
        tl->nhist = np + 1;
        tl->has_history = 1;
        if (w->forks[i].tli > x->a.max_history_tli)
            x->a.max_history_tli = w->forks[i].tli;
    }
    for (int i = 0; i < 4 && w->backups[i].id; i++) {
        const backup_def *d = &w->backups[i];
        x->bs.b = wv_xrealloc(x->bs.b, (x->bs.n + 1) * sizeof(*x->bs.b));
        wv_backup *b = &x->bs.b[x->bs.n++];
        memset(b, 0, sizeof(*b));
        snprintf(b->h.id, sizeof(b->h.id), "%s", d->id);
        b->h.timeline = d->tli;
        b->h.start_lsn = d->start;
        b->h.stop_lsn = d->stop;
        b->h.stop_time = T0 + d->stop_t;
        b->h.start_time = b->h.stop_time - 10;
    }
    x->f.archive = &x->a;
    x->f.backups = &x->bs;
    x->f.ops = &table_ops;
    x->f.arg = (void *)w;
    for (int i = 0; i < 2 && w->dropped[i]; i++)
        snprintf(x->dropped[x->f.ndropped++], WV_WALNAME_SEGMENT_LEN, "%s", w->dropped[i]);
    x->f.dropped = (const char(*)[WV_WALNAME_SEGMENT_LEN])x->dropped;
    wv_err_clear(&x->f.rp_err);
    if (t && t->kind == WV_TARGET_NAME) {
        for (int i = 0; i < 3 && w->rps[i].name; i++)
            if (strcmp(w->rps[i].name, t->name) == 0) {
                x->f.rp_found = 1;
                x->f.rp_lsn = w->rps[i].lsn;
                x->f.rp_tli = w->rps[i].tli;
            }
        if (!x->f.rp_found)
            wv_err_set(&x->f.rp_err, WV_ENOTFOUND,
                       "restore point \"%s\" is not in the archived WAL", t->name);
    }
}

static void unbuild(built *x)
{
    for (size_t i = 0; i < x->a.ntl; i++) {
        free(x->a.tls[i].segnos);
        free(x->a.tls[i].hist);
    }
    free(x->a.tls);
    free(x->bs.b);
}

/* "{N}" -> the formatted time T0 + N seconds. */
static void expand(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < len;) {
        char *end;
        if (*p == '{' && (strtol(p + 1, &end, 10), *end == '}')) {
            char t[WV_TIME_FORMAT_LEN];
            wv_time_format(US(strtol(p + 1, NULL, 10)), t, sizeof(t));
            o += (size_t)snprintf(out + o, len - o, "%s", t);
            p = end + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o < len ? o : len - 1] = '\0';
}

/* ---- the table ------------------------------------------------------------------------------- */

typedef struct row {
    const char *name;
    const world *w;
    wv_target_kind kind;
    int64_t at; /* time (seconds after T0), LSN or xid */
    const char *rp;
    uint32_t timeline;
    const char *backup_id;
    const char *want_backup; /* NULL: a refusal */
    uint32_t want_tli;
    const char *want; /* a fragment of the reason, or of the refusal's message */
} row;

#define AUTO    WV_TLI_AUTO
#define LATEST  WV_TLI_LATEST
#define CURRENT WV_TLI_CURRENT
#define TIME    WV_TARGET_TIME
#define LSN     WV_TARGET_LSN
#define XID     WV_TARGET_XID
#define NAME    WV_TARGET_NAME
#define IMM     WV_TARGET_IMMEDIATE
#define END     WV_TARGET_LATEST

#define NEWEST "the newest timeline whose history reaches the target"

static const row rows[] = {
    /* one timeline */
    {"single/end", &single, END, 0, NULL, AUTO, NULL, B2, 1, "the latest timeline in the archive"},
    {"single/time-in-first-window", &single, TIME, 350, NULL, AUTO, NULL, B1, 1, NEWEST},
    {"single/time-after-second-backup", &single, TIME, 750, NULL, AUTO, NULL, B2, 1, NEWEST},
    {"single/time-before-first-backup", &single, TIME, 50, NULL, AUTO, NULL, NULL, 0,
     "target time {50} is before the end of the oldest usable backup (" B1 ", ended at {201})"},
    {"single/time-after-last-commit", &single, TIME, 2000, NULL, AUTO, NULL, NULL, 0,
     "target time {2000} is not before the last archived commit ({1090})"},
    {"single/time-refusal-shows-window", &single, TIME, 2000, NULL, AUTO, NULL, NULL, 0,
     "; recoverable: timeline 1: {201} .. {1090}"},
    {"single/lsn", &single, LSN, (int64_t)L(8, 0x10), NULL, AUTO, NULL, B2, 1, NEWEST},
    {"single/lsn-between-backups", &single, LSN, (int64_t)L(4, 0x10), NULL, AUTO, NULL, B1, 1,
     NEWEST},
    {"single/lsn-beyond-end", &single, LSN, (int64_t)L(20, 0), NULL, AUTO, NULL, NULL, 0,
     "target LSN 0/14000000 is beyond the end of the archived WAL (0/B000000)"},
    {"single/lsn-before-first-backup", &single, LSN, (int64_t)L(2, 0x50), NULL, AUTO, NULL, NULL, 0,
     "target LSN 0/2000050 is before the end of the oldest usable backup (" B1
     ", ended at LSN 0/2000100)"},
    {"single/xid-after-first-backup", &single, XID, 1500, NULL, AUTO, NULL, B1, 1, NEWEST},
    {"single/xid-after-second-backup", &single, XID, 2500, NULL, AUTO, NULL, B2, 1, NEWEST},
    {"single/xid-before-first-backup", &single, XID, 500, NULL, AUTO, NULL, NULL, 0,
     "transaction 500 began before the oldest usable backup (" B1
     ": its checkpoint's next transaction id is 1000)"},
    {"single/xid-before-first-backup-forced", &single, XID, 500, NULL, AUTO, B1, B1, 1, NEWEST},
    {"single/name", &single, NAME, 0, "before_b2", AUTO, NULL, B1, 1, NEWEST},
    {"single/name-unknown", &single, NAME, 0, "nope", AUTO, NULL, NULL, 0,
     "restore point \"nope\" is not in the archived WAL"},
    {"single/immediate", &single, IMM, 0, NULL, AUTO, NULL, B2, 1,
     "the backup's timeline, which holds the target"},
    {"single/immediate-backup", &single, IMM, 0, NULL, AUTO, B1, B1, 1, "the backup's timeline"},
    {"single/backup-unknown", &single, TIME, 350, NULL, AUTO, "20990101T000000Z", NULL, 0,
     "no backup \"20990101T000000Z\" in the repository"},
    {"single/backup-too-new", &single, TIME, 350, NULL, AUTO, B2, NULL, 0,
     "target time {350} is before the end of the oldest usable backup (" B2 ", ended at {601})"},
    {"single/backup-older", &single, TIME, 750, NULL, AUTO, B1, B1, 1, NEWEST},
    {"single/timeline-unknown", &single, TIME, 350, NULL, 5, NULL, NULL, 0,
     "timeline 5 is not in the archive (archived timelines: 1)"},
    {"single/timeline-current", &single, TIME, 350, NULL, CURRENT, NULL, B1, 1,
     "the backup's timeline (--timeline current)"},
    {"single/timeline-1", &single, TIME, 350, NULL, 1, NULL, B1, 1, "--timeline 1"},
    {"single/timeline-latest", &single, TIME, 350, NULL, LATEST, NULL, B1, 1,
     "the latest timeline in the archive"},

    /* a gap */
    {"gap/time-before", &gapped, TIME, 350, NULL, AUTO, NULL, B1, 1, NEWEST},
    {"gap/time-inside", &gapped, TIME, 650, NULL, AUTO, NULL, NULL, 0,
     "target time {650} is inside a gap in the archived WAL: segment 000000010000000000000006 is "
     "missing"},
    {"gap/time-inside-windows", &gapped, TIME, 650, NULL, AUTO, NULL, NULL, 0,
     "recoverable: timeline 1: {201} .. {590} (then WAL segment 000000010000000000000006 is "
     "missing); timeline 1: {901} .. {1090}"},
    {"gap/lsn-inside", &gapped, LSN, (int64_t)L(7, 0), NULL, AUTO, NULL, NULL, 0,
     "target LSN 0/7000000 is inside a gap in the archived WAL"},
    {"gap/time-after", &gapped, TIME, 950, NULL, AUTO, NULL, B3, 1, NEWEST},
    /* the gap is a segment archive_queue_max dropped: said so; before and after it as before */
    {"dropped/time-before", &dropped_gap, TIME, 350, NULL, AUTO, NULL, B1, 1, NEWEST},
    {"dropped/time-inside", &dropped_gap, TIME, 650, NULL, AUTO, NULL, NULL, 0,
     "target time {650} is inside a gap in the archived WAL: segment 000000010000000000000006 was "
     "dropped by archive_queue_max without archiving"},
    {"dropped/lsn-inside", &dropped_gap, LSN, (int64_t)L(7, 0), NULL, AUTO, NULL, NULL, 0,
     "dropped by archive_queue_max"},
    {"dropped/time-after", &dropped_gap, TIME, 950, NULL, AUTO, NULL, B3, 1, NEWEST},
    {"gap/end", &gapped, END, 0, NULL, AUTO, NULL, B3, 1, "the latest timeline in the archive"},
    {"nowal/end", &nowal, END, 0, NULL, AUTO, NULL, NULL, 0,
     "the WAL the backups need is not in the archive (first missing segment "
     "000000010000000000000002)"},
    {"nowal/windows", &nowal, TIME, 550, NULL, AUTO, NULL, NULL, 0,
     "recoverable: none (no backup whose WAL is complete in the archive)"},
    {"nobackup/end", &nobackup, END, 0, NULL, AUTO, NULL, NULL, 0,
     "the repository holds no backup"},

    /* forks: 1 -> 2 in segment 5, 1 -> 3 in segment 9 */
    {"forks/end", &forks, END, 0, NULL, AUTO, NULL, NULL, 0,
     "the end of the archive is on more than one timeline: timeline 3 (newest commit {3190}), "
     "timeline 2 (newest commit {2390}) and timeline 1 (newest commit {1090}) all continue"},
    {"forks/end-latest", &forks, END, 0, NULL, LATEST, NULL, B1, 3,
     "the latest timeline in the archive"},
    {"forks/end-2", &forks, END, 0, NULL, 2, NULL, BT, 2, "--timeline 2"},
    {"forks/time-before-forks", &forks, TIME, 350, NULL, AUTO, NULL, B1, 3, NEWEST},
    {"forks/time-on-1-after-fork-2", &forks, TIME, 750, NULL, AUTO, NULL, B1, 3, NEWEST},
    /* timeline 3 is timeline 1 up to segment 9: at 2150 both it and timeline 2 have commits */
    {"forks/time-on-2-and-3", &forks, TIME, 2150, NULL, AUTO, NULL, NULL, 0,
     "target time {2150} is on more than one timeline: timeline 3 (newest commit {3190}) and "
     "timeline 2 (newest commit {2390}) both continue past the point where they part "
     "(LSN 0/5400000)"},
    {"forks/time-on-2-forced", &forks, TIME, 2150, NULL, 2, NULL, B1, 2, "--timeline 2"},
    {"forks/time-on-2-after-backup", &forks, TIME, 2350, NULL, 2, NULL, BT, 2, "--timeline 2"},
    {"forks/time-on-1-in-fork-segment-3", &forks, TIME, 950, NULL, AUTO, NULL, NULL, 0,
     "target time {950} is on more than one timeline: timeline 3 (newest commit {3190}) and "
     "timeline 1 (newest commit {1090}) both continue past the point where they part "
     "(LSN 0/9800000)"},
    {"forks/time-on-1-in-fork-segment-3-forced", &forks, TIME, 950, NULL, 1, NULL, B1, 1,
     "--timeline 1"},
    {"forks/time-on-3", &forks, TIME, 3150, NULL, AUTO, NULL, B1, 3, NEWEST},
    {"forks/time-after-all", &forks, TIME, 4000, NULL, AUTO, NULL, NULL, 0,
     "is not before the last archived commit ({3190})"},
    {"forks/lsn-before-forks", &forks, LSN, (int64_t)L(4, 0), NULL, AUTO, NULL, B1, 3, NEWEST},
    {"forks/lsn-after-fork-2", &forks, LSN, (int64_t)L(6, 0), NULL, AUTO, NULL, NULL, 0,
     "target LSN 0/6000000 is on more than one timeline: timeline 3 (newest commit {3190}) and "
     "timeline 2 (newest commit {2390}) both continue past the point where they part "
     "(LSN 0/5400000)"},
    {"forks/lsn-beyond-2", &forks, LSN, (int64_t)L(10, 0), NULL, AUTO, NULL, NULL, 0,
     "target LSN 0/A000000 is on more than one timeline: timeline 3 (newest commit {3190}) and "
     "timeline 1 (newest commit {1090}) both continue"},
    {"forks/lsn-only-on-3", &forks, LSN, (int64_t)L(11, 0x10), NULL, AUTO, NULL, B1, 3, NEWEST},
    {"forks/xid", &forks, XID, 5000, NULL, AUTO, NULL, NULL, 0,
     "transaction 5000 may have committed on more than one timeline"},
    {"forks/xid-forced", &forks, XID, 5000, NULL, 2, NULL, BT, 2, "--timeline 2"},
    {"forks/immediate", &forks, IMM, 0, NULL, AUTO, NULL, BT, 2,
     "the backup's timeline, which holds the target"},
    {"forks/immediate-old-backup", &forks, IMM, 0, NULL, AUTO, B1, B1, 1,
     "the backup's timeline, which holds the target"},
    {"forks/current", &forks, TIME, 2350, NULL, CURRENT, NULL, BT, 2, "--timeline current"},
    {"forks/current-old-backup", &forks, TIME, 750, NULL, CURRENT, NULL, B1, 1,
     "--timeline current"},
    {"forks/backup-too-new", &forks, TIME, 350, NULL, AUTO, BT, NULL, 0,
     "target time {350} is before the end of the oldest usable backup (" BT ", ended at {2251})"},
    {"forks/backup-not-on-timeline", &forks, TIME, 3150, NULL, 3, BT, NULL, 0,
     "backup \"" BT "\" does not lie on the history of timeline 3"},
    {"forks/timeline-unknown", &forks, TIME, 350, NULL, 4, NULL, NULL, 0,
     "timeline 4 is not in the archive (archived timelines: 1, 2, 3)"},

    /* the integration test's fork: 1 -> 2 inside segment 3, both go on */
    {"fixture/end", &fixture, END, 0, NULL, AUTO, NULL, NULL, 0,
     "the end of the archive is on more than one timeline: timeline 2 (newest commit {420}) and "
     "timeline 1 (newest commit {510}) both continue past the point where they part "
     "(LSN 0/3400000)"},
    {"fixture/end-hint", &fixture, END, 0, NULL, AUTO, NULL, NULL, 0,
     "hint: walvault does not guess which one you mean: pass --timeline 2 or --timeline 1"},
    {"fixture/end-latest", &fixture, END, 0, NULL, LATEST, NULL, B1, 2,
     "the latest timeline in the archive"},
    {"fixture/time-before-batch-1", &fixture, TIME, 305, NULL, AUTO, NULL, B1, 2, NEWEST},
    {"fixture/time-between-21-and-22", &fixture, TIME, 415, NULL, AUTO, NULL, NULL, 0,
     "target time {415} is on more than one timeline: timeline 2 (newest commit {420}) and "
     "timeline 1 (newest commit {510}) both continue past the point where they part"},
    {"fixture/time-after-22", &fixture, TIME, 450, NULL, AUTO, NULL, B1, 1, NEWEST},
    {"fixture/time-on-2-forced", &fixture, TIME, 415, NULL, 2, NULL, B1, 2, "--timeline 2"},
    {"fixture/lsn-before-fork", &fixture, LSN, (int64_t)L(3, 0x100000), NULL, AUTO, NULL, B1, 2,
     NEWEST},
    {"fixture/lsn-after-fork", &fixture, LSN, (int64_t)L(3, 0x800000), NULL, AUTO, NULL, NULL, 0,
     "target LSN 0/3800000 is on more than one timeline"},
    {"fixture/lsn-only-on-1", &fixture, LSN, (int64_t)L(4, 0x10), NULL, AUTO, NULL, B1, 1, NEWEST},
    {"fixture/xid", &fixture, XID, 1500, NULL, AUTO, NULL, NULL, 0,
     "transaction 1500 may have committed on more than one timeline (the transaction id ranges "
     "recorded past the point where they part do not tell: a range is missing, or only the "
     "segment where they part holds it on both): timeline 2 (newest commit {420}) and timeline 1 "
     "(newest commit {510})"},

    /* the same shape with transaction id ranges recorded */
    {"xid/on-1-after-fork", &xid_tl1, XID, 1030, NULL, AUTO, NULL, B1, 1,
     "the timeline whose WAL past the point where the timelines part holds transaction 1030 in "
     "its recorded transaction id ranges"},
    {"xid/on-1-in-fork-segment", &xid_tl1, XID, 1019, NULL, AUTO, NULL, B1, 1,
     "holds transaction 1019 in its recorded"},
    {"xid/on-2-after-fork", &xid_tl2, XID, 1035, NULL, AUTO, NULL, B1, 2,
     "holds transaction 1035 in its recorded"},
    {"xid/on-2-in-fork-segment", &xid_tl2, XID, 1019, NULL, AUTO, NULL, B1, 2,
     "holds transaction 1019 in its recorded"},
    {"xid/on-both", &xid_tl1, XID, 1015, NULL, AUTO, NULL, NULL, 0,
     "transaction 1015 may have committed on more than one timeline (the transaction id ranges "
     "recorded past the point where they part hold it on each: after a fork both timelines "
     "assign the same ids): timeline 2 (newest commit {590}) and timeline 1 (newest commit {510}) "
     "both continue past the point where they part (LSN 0/3400000)"},
    {"xid/on-both-hint", &xid_tl1, XID, 1015, NULL, AUTO, NULL, NULL, 0,
     "pass --timeline 2 or --timeline 1"},
    {"xid/in-neither", &xid_tl1, XID, 2000, NULL, AUTO, NULL, NULL, 0,
     "transaction 2000 may have committed on more than one timeline (no transaction id range "
     "recorded past the point where they part holds it: it may have committed before): timeline 2"},
    {"xid/before-fork-shared", &xid_tl1, XID, 1008, NULL, AUTO, NULL, NULL, 0,
     "transaction 1008 may have committed on more than one timeline (the transaction id ranges "
     "recorded past the point where they part do not tell"},
    {"xid/range-missing", &xid_unrecorded, XID, 1030, NULL, AUTO, NULL, NULL, 0,
     "transaction 1030 may have committed on more than one timeline (the transaction id ranges "
     "recorded past the point where they part do not tell: a range is missing"},
    {"xid/range-missing-forced", &xid_unrecorded, XID, 1030, NULL, 1, NULL, B1, 1, "--timeline 1"},
    {"xid/time-unchanged", &xid_tl1, TIME, 415, NULL, AUTO, NULL, NULL, 0,
     "is on more than one timeline"},
    {"fixture/xid-forced", &fixture, XID, 1500, NULL, 1, NULL, B1, 1, "--timeline 1"},
    {"fixture/name-on-1-after-fork", &fixture, NAME, 0, "on_tl1", AUTO, NULL, B1, 1, NEWEST},
    {"fixture/name-on-2", &fixture, NAME, 0, "on_tl2", AUTO, NULL, B1, 2, NEWEST},
    {"fixture/immediate", &fixture, IMM, 0, NULL, AUTO, NULL, B1, 1,
     "the backup's timeline, which holds the target"},
    {"fixture/current", &fixture, TIME, 415, NULL, CURRENT, NULL, B1, 1, "--timeline current"},

    /* only one of two timelines goes on past their fork */
    {"failover/end", &failover, END, 0, NULL, AUTO, NULL, B1, 2,
     "the latest timeline in the archive"},
    {"failover/xid", &failover, XID, 1500, NULL, AUTO, NULL, B1, 2, NEWEST},
    {"failover/time", &failover, TIME, 350, NULL, AUTO, NULL, B1, 2, NEWEST},
    {"stillborn/end", &stillborn, END, 0, NULL, AUTO, NULL, B1, 1,
     "the only timeline that holds the target"},
    {"stillborn/end-latest", &stillborn, END, 0, NULL, LATEST, NULL, B1, 2,
     "the latest timeline in the archive"},
    {"stillborn/xid", &stillborn, XID, 1500, NULL, AUTO, NULL, B1, 1,
     "the only timeline that holds the target"},
};

static void test_decisions(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row *r = &rows[i];
        wv_target t = {.kind = r->kind, .name = r->rp};
        if (r->kind == TIME)
            t.time_us = US(r->at);
        if (r->kind == LSN)
            t.lsn = (uint64_t)r->at;
        if (r->kind == XID)
            t.xid = (uint32_t)r->at;
        built x;
        build(&x, r->w, &t);
        wv_plan plan;
        wv_err err;
        wv_err_clear(&err);
        int rc = wv_recovery_decide(&x.f, &t, r->timeline, r->backup_id, &plan, &err);
        char want[1024], got[2200];
        expand(r->want, want, sizeof(want));
        if (rc == 0)
            snprintf(got, sizeof(got), "backup %s, timeline %u (%s)", plan.backup->h.id,
                     (unsigned)plan.tli, plan.tli_reason);
        else
            snprintf(got, sizeof(got), "refused (%d): %s\nhint: %s", rc, err.msg, err.hint);
        int ok;
        if (r->want_backup)
            ok = rc == 0 && strcmp(plan.backup->h.id, r->want_backup) == 0 &&
                 plan.tli == r->want_tli && strstr(plan.tli_reason, want) != NULL;
        else
            ok = rc == WV_EREFUSED && strstr(got, want) != NULL;
        if (!ok) {
            failed++;
            print_error("row %s: want %s%s %u \"%s\"\n  got %s\n", r->name,
                        r->want_backup ? "backup " : "refusal",
                        r->want_backup ? r->want_backup : "", (unsigned)r->want_tli, want, got);
        }
        unbuild(&x);
    }
    assert_int_equal(failed, 0);
}

/* ---- windows --------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    const world *w;
    const char *want; /* wv_recovery_windows_text */
    int64_t resume;   /* the first window's resume time after a gap, or -1 */
} window_rows[] = {
    {"single", &single, "timeline 1: {201} .. {1090}", -1},
    {"gap", &gapped,
     "timeline 1: {201} .. {590} (then WAL segment 000000010000000000000006 is missing); "
     "timeline 1: {901} .. {1090}",
     810},
    {"nowal", &nowal, "none (no backup whose WAL is complete in the archive)", -1},
    {"forks", &forks,
     "timeline 1: {201} .. {1090}; timeline 2: {201} .. {2390}; timeline 3: {201} .. {3190}", -1},
    {"fixture", &fixture, "timeline 1: {201} .. {510}; timeline 2: {201} .. {420}", -1},
    {"stillborn", &stillborn, "timeline 1: {201} .. {490}; timeline 2: {201} .. {290}", -1},
    {"quiet", &quiet, "timeline 1: {201} .. {601}", -1},
};

static void test_windows(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof(window_rows) / sizeof(window_rows[0]); i++) {
        built x;
        build(&x, window_rows[i].w, NULL);
        wv_window *w = NULL;
        size_t n = 0;
        wv_err err;
        char want[1024], got[1024];
        assert_int_equal(wv_recovery_windows(&x.f, &w, &n, &err), 0);
        wv_recovery_windows_text(w, n, got, sizeof(got));
        expand(window_rows[i].want, want, sizeof(want));
        int ok = strcmp(got, want) == 0;
        if (window_rows[i].resume >= 0)
            ok = ok && n > 0 && w[0].resume_us == US(window_rows[i].resume);
        if (!ok) {
            failed++;
            print_error("windows %s: want \"%s\"\n  got \"%s\"\n", window_rows[i].name, want, got);
        }
        free(w);
        unbuild(&x);
    }
    assert_int_equal(failed, 0);
}

/* A failing look-up is an error of the decision, not a refusal. */
static int failing_segment_commits(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                                   wv_err *err)
{
    (void)arg, (void)tli, (void)segno, (void)out;
    return wv_err_set(err, WV_EIO, "store unreachable");
}

static void test_lookup_error(void **state)
{
    (void)state;
    static const wv_recovery_facts_ops ops = {.segment_commits = failing_segment_commits,
                                              .backup_next_xid = table_next_xid};
    wv_target t = {.kind = WV_TARGET_TIME, .time_us = US(350)};
    built x;
    build(&x, &single, &t);
    x.f.ops = &ops;
    wv_plan plan;
    wv_err err;
    assert_int_equal(wv_recovery_decide(&x.f, &t, WV_TLI_AUTO, NULL, &plan, &err), WV_EIO);
    assert_non_null(strstr(err.msg, "store unreachable"));
    unbuild(&x);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decisions),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_lookup_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
