/*
 * recovery.c - recoverable windows and the choice of backup and timeline for a target.
 *
 * The gather step (wv_recovery_facts_gather and the storage look-ups behind its callback table)
 * comes first; everything after "pure decisions" reads the repository only through the facts.
 */
#include "repo/recovery.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"
#include "core/timeparse.h"
#include "core/log.h"
#include "repo/repo.h"
#include "repo/xidrange.h"

/* ---- the gather step: storage look-ups, memoized --------------------------------------------- */

typedef struct seg_memo {
    uint32_t tli;
    uint64_t segno;
    int rc; /* 0 or WV_ENOTFOUND */
    wv_segment_commits c;
    int used;
    int xid_read; /* the range object was looked for (c.xid_known says whether found) */
} seg_memo;

typedef struct xid_memo {
    const wv_backup *b;
    uint32_t xid;
} xid_memo;

typedef struct gather_ctx {
    wv_storage *st;
    uint64_t segsize;
    seg_memo *segs; /* open addressing, capacity a power of two */
    size_t nsegs, capsegs;
    xid_memo *xids;
    size_t nxids;
    uint64_t trailer_reads, control_reads, xid_reads;
    char (*dropped)[WV_WALNAME_SEGMENT_LEN]; /* gaps/ of the repository */
    size_t ndropped;
} gather_ctx;

static int dropped_cb(void *arg, const char *key, const wv_stat *st)
{
    gather_ctx *g = arg;
    (void)st;
    const char *name = key + strlen(WV_REPO_GAPS_PREFIX);
    if (strlen(name) != WV_WALNAME_SEGMENT_LEN - 1 || g->ndropped >= 4096)
        return 0;
    g->dropped = wv_xrealloc(g->dropped, (g->ndropped + 1) * sizeof(*g->dropped));
    snprintf(g->dropped[g->ndropped++], WV_WALNAME_SEGMENT_LEN, "%s", name);
    return 0;
}

static size_t seg_slot(const gather_ctx *g, uint32_t tli, uint64_t segno)
{
    uint64_t h =
        (segno * UINT64_C(0x9E3779B97F4A7C15)) ^ ((uint64_t)tli * UINT64_C(0xC2B2AE3D27D4EB4F));
    size_t i = (size_t)(h >> 17) & (g->capsegs - 1);
    while (g->segs[i].used && (g->segs[i].tli != tli || g->segs[i].segno != segno))
        i = (i + 1) & (g->capsegs - 1);
    return i;
}

static void seg_memo_grow(gather_ctx *g)
{
    seg_memo *old = g->segs;
    size_t oldcap = g->capsegs;
    g->capsegs = oldcap ? 2 * oldcap : 256;
    g->segs = wv_xcalloc(g->capsegs, sizeof(*g->segs));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].used)
            g->segs[seg_slot(g, old[i].tli, old[i].segno)] = old[i];
    free(old);
}

static int storage_segment_commits(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                                   wv_err *err)
{
    gather_ctx *g = arg;
    if (g->capsegs == 0 || 2 * (g->nsegs + 1) > g->capsegs)
        seg_memo_grow(g);
    size_t i = seg_slot(g, tli, segno);
    if (!g->segs[i].used) {
        char name[WV_WALNAME_SEGMENT_LEN], key[64];
        wv_obj_info info;
        wv_walname_format_segment(tli, segno, g->segsize, name);
        snprintf(key, sizeof(key), "wal/%.16s/%s", name, name);
        g->trailer_reads++;
        int rc = wv_repo_read_info(g->st, key, &info, err);
        if (rc != 0 && rc != WV_ENOTFOUND)
            return rc; /* not memoized: an I/O error is not a fact */
        seg_memo *m = &g->segs[i];
        m->used = 1;
        m->tli = tli;
        m->segno = segno;
        m->rc = rc;
        m->c.count = 0;
        m->c.first_us = m->c.last_us = INT64_MIN;
        if (rc == 0 && info.commit_count > 0 && info.last_commit_us != INT64_MIN) {
            m->c.count = info.commit_count;
            m->c.first_us = info.first_commit_us;
            m->c.last_us = info.last_commit_us;
        }
        g->nsegs++;
    }
    *out = g->segs[i].c;
    if (g->segs[i].rc == WV_ENOTFOUND)
        return wv_err_set(err, WV_ENOTFOUND, "WAL segment is not in the archive");
    return 0;
}

/* The segment's commits, and its transaction id range object when it has commits (read once). */
static int storage_segment_xids(void *arg, uint32_t tli, uint64_t segno, wv_segment_commits *out,
                                wv_err *err)
{
    gather_ctx *g = arg;
    int rc = storage_segment_commits(g, tli, segno, out, err);
    if (rc != 0)
        return rc;
    seg_memo *m = &g->segs[seg_slot(g, tli, segno)];
    if (!m->xid_read && m->c.count > 0) {
        char name[WV_WALNAME_SEGMENT_LEN], key[64];
        wv_xidrange x;
        wv_err e2;
        wv_walname_format_segment(tli, segno, g->segsize, name);
        snprintf(key, sizeof(key), "wal/%.16s/%s", name, name);
        g->xid_reads++;
        rc = wv_xidrange_get(g->st, key, &x, &e2);
        if (rc != 0 && rc != WV_ENOTFOUND && rc != WV_ECORRUPT) {
            *err = e2;
            return rc; /* not memoized: an I/O error is not a fact */
        }
        if (rc == WV_ECORRUPT) {
            wv_log_warn("%s (ignored: segment %s counts as having no transaction id range)", e2.msg,
                        name);
        } else if (rc == 0 && x.count != m->c.count) {
            wv_log_warn("%s: \"%s%s\": counts %" PRIu32 " commits where the segment's trailer "
                        "counts %" PRIu32 " (ignored: no transaction id range for segment %s)",
                        wv_storage_name(g->st), key, WV_REPO_XID_SUFFIX, x.count, m->c.count, name);
        } else if (rc == 0) {
            m->c.xid_known = 1;
            m->c.xid_min = x.xmin;
            m->c.xid_max = x.xmax;
        }
        m->xid_read = 1;
    }
    *out = m->c;
    return 0;
}

/*
 * The next transaction id (32 bits) of the checkpoint in a backup's pg_control, 0 when unknown.
 * PostgreSQL sends pg_control last, so this is the newest checkpoint at the backup's end: every
 * transaction id at or above it was assigned after that checkpoint.
 */
typedef struct control_ref {
    const char *id;
    char key[600];
    int64_t offset, length;
    int found;
} control_ref;

static int control_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    control_ref *f = arg;
    (void)err;
    if (e->type == WV_MANIFEST_FILE && strcmp(e->path, "pgdata/global/pg_control") == 0) {
        wv_manifest_file_object(f->id, e, f->key, sizeof(f->key), &f->offset, &f->length);
        f->found = 1;
    }
    return 0;
}

/* ControlFileData.checkPointCopy.nextXid lies at byte 64 in PostgreSQL 15 to 18: 17 added
 * CheckPoint.wal_level (pg_control version 1700) into the padding after fullPageWrites, so the
 * offset stayed. pg_control_version of 15 and 16 is 1300, of 17 1700, of 18 1800. */
#define PG_CONTROL_NEXTXID_OFFSET 64

static bool pg_control_version_known(uint32_t v)
{
    return v == 1300 || v == 1700 || v == 1800;
}

static int backup_next_xid(wv_storage *st, const wv_backup *b, uint32_t *xid, wv_err *err)
{
    control_ref f = {.id = b->h.id};
    wv_manifest_header h;
    memset(&h, 0, sizeof(h));
    *xid = 0;
    int rc = wv_manifest_load(st, b->h.id, &h, control_cb, &f, NULL, err);
    wv_manifest_header_free(&h);
    if (rc != 0 || !f.found)
        return rc;
    wv_buf buf = WV_BUF_INIT;
    wv_source *src = NULL;
    wv_obj_info info;
    rc = wv_storage_get_open(st, f.key, f.offset, f.length, &src, err);
    if (rc == 0) {
        wv_filter *dest = wv_filter_buf_new(&buf);
        /* bound to its key (a bundle's members to the bundle); pg_control is 8 kB */
        rc = wv_object_read_opts(
            src, dest,
            &(wv_objread_opts){.key = f.key, .max_plain = 65536, .crypto = wv_repo_crypto(st)},
            &info, err);
        wv_filter_chain_free(dest);
        wv_source_close(src);
        if (rc != 0)
            wv_err_context(err, wv_storage_name(st), f.key);
    }
    if (rc == 0 && buf.len >= PG_CONTROL_NEXTXID_OFFSET + 8) {
        uint32_t version;
        uint64_t next;
        memcpy(&version, buf.data + 8, sizeof(version));
        memcpy(&next, buf.data + PG_CONTROL_NEXTXID_OFFSET, sizeof(next));
        if (pg_control_version_known(version))
            *xid = (uint32_t)next;
    }
    wv_buf_free(&buf);
    return rc;
}

static int storage_backup_next_xid(void *arg, const wv_backup *b, uint32_t *xid, wv_err *err)
{
    gather_ctx *g = arg;
    for (size_t i = 0; i < g->nxids; i++)
        if (g->xids[i].b == b) {
            *xid = g->xids[i].xid;
            return 0;
        }
    g->control_reads++;
    int rc = backup_next_xid(g->st, b, xid, err);
    if (rc != 0)
        return rc;
    g->xids = wv_xrealloc(g->xids, (g->nxids + 1) * sizeof(*g->xids));
    g->xids[g->nxids].b = b;
    g->xids[g->nxids].xid = *xid;
    g->nxids++;
    return 0;
}

static const wv_recovery_facts_ops storage_ops = {
    .segment_commits = storage_segment_commits,
    .backup_next_xid = storage_backup_next_xid,
    .segment_xids = storage_segment_xids,
};

int wv_recovery_facts_gather(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                             const wv_target *t, wv_recovery_facts *f, wv_err *err)
{
    gather_ctx *g = wv_xcalloc(1, sizeof(*g));
    memset(f, 0, sizeof(*f));
    g->st = st;
    g->segsize = a->segsize;
    f->archive = a;
    f->backups = bs;
    f->ops = &storage_ops;
    f->arg = g;
    f->priv = g;
    wv_err_clear(&f->rp_err);
    int lrc = wv_storage_list(st, WV_REPO_GAPS_PREFIX, dropped_cb, g, err);
    if (lrc < 0) {
        wv_recovery_facts_free(f);
        return lrc;
    }
    f->dropped = (const char(*)[WV_WALNAME_SEGMENT_LEN])g->dropped;
    f->ndropped = g->ndropped;
    if (t && t->kind == WV_TARGET_NAME) {
        int rc = wv_archive_find_restore_point(st, a, t->name, &f->rp_lsn, &f->rp_time_us,
                                               &f->rp_tli, &f->rp_err);
        if (rc == 0) {
            f->rp_found = 1;
        } else if (rc != WV_ENOTFOUND) {
            *err = f->rp_err;
            wv_recovery_facts_free(f);
            return rc;
        }
    }
    return 0;
}

void wv_recovery_facts_free(wv_recovery_facts *f)
{
    gather_ctx *g = f->priv;
    if (g) {
        free(g->segs);
        free(g->xids);
        free(g->dropped);
        free(g);
    }
    f->priv = f->arg = NULL;
}

void wv_recovery_facts_reads(const wv_recovery_facts *f, uint64_t *trailers, uint64_t *controls)
{
    const gather_ctx *g = f->priv;
    *trailers = g ? g->trailer_reads : 0;
    *controls = g ? g->control_reads : 0;
}

/* ---- pure decisions: facts in, plan or refusal out ------------------------------------------- */

/* The window starts one second after the backup's STOP TIME (which has whole seconds only). */
static int64_t backup_end_us(const wv_backup *b)
{
    return (b->h.stop_time + 1) * 1000000LL;
}

static int backup_on_path(const wv_archive *a, uint32_t tli, const wv_backup *b)
{
    return b->h.timeline <= tli && wv_archive_on_path(a, tli, b->h.timeline, b->h.start_lsn) &&
           wv_archive_on_path(a, tli, b->h.timeline, b->h.stop_lsn);
}

/* The commits of segment segno as recovery towards target_tli reads it (count 0 when absent). */
static int path_segment(const wv_recovery_facts *f, uint32_t target_tli, uint64_t segno,
                        wv_segment_commits *c, int *present, wv_err *err)
{
    uint32_t tli = wv_archive_tli_for_segno(f->archive, target_tli, segno);
    wv_err e2;
    int rc = f->ops->segment_commits(f->arg, tli, segno, c, &e2);
    *present = rc == 0;
    if (rc == WV_ENOTFOUND) {
        c->count = 0;
        c->first_us = c->last_us = INT64_MIN;
        return 0;
    }
    if (rc != 0)
        *err = e2;
    return rc;
}

/* The newest commit in segments [from, to] on the path to target_tli (INT64_MIN if none). */
static int path_last_commit(const wv_recovery_facts *f, uint32_t target_tli, uint64_t from,
                            uint64_t to, int64_t *time_us, uint64_t *segno_out, wv_err *err)
{
    *time_us = INT64_MIN;
    for (uint64_t s = to + 1; s-- > from;) {
        wv_segment_commits c;
        int present;
        int rc = path_segment(f, target_tli, s, &c, &present, err);
        if (rc != 0)
            return rc;
        if (c.count > 0 && c.last_us != INT64_MIN) {
            *time_us = c.last_us;
            if (segno_out)
                *segno_out = s;
            return 0;
        }
        if (s == 0)
            break;
    }
    return 0;
}

/* The first commit in segments [from, to] on the path (for showing where WAL resumes). */
static int path_first_commit(const wv_recovery_facts *f, uint32_t target_tli, uint64_t from,
                             uint64_t to, int64_t *time_us, wv_err *err)
{
    *time_us = INT64_MIN;
    for (uint64_t s = from; s <= to; s++) {
        wv_segment_commits c;
        int present;
        int rc = path_segment(f, target_tli, s, &c, &present, err);
        if (rc != 0)
            return rc;
        if (c.count > 0 && c.first_us != INT64_MIN) {
            *time_us = c.first_us;
            return 0;
        }
    }
    return 0;
}

typedef struct eval {
    int restorable;
    wv_archive_reach reach;
    int64_t last_commit_us;
} eval;

static int evaluate(const wv_recovery_facts *f, uint32_t tli, const wv_backup *b, int want_commit,
                    eval *ev, wv_err *err)
{
    const wv_archive *a = f->archive;
    wv_err e2;
    memset(ev, 0, sizeof(*ev));
    ev->last_commit_us = INT64_MIN;
    int rc = wv_archive_reach_from(a, tli, b->h.start_lsn, &ev->reach, &e2);
    if (rc == WV_ENOTFOUND)
        return 0;
    if (rc != 0) {
        *err = e2;
        return rc;
    }
    ev->restorable = ev->reach.end_lsn >= b->h.stop_lsn;
    if (!ev->restorable || !want_commit)
        return 0;
    return path_last_commit(f, tli, wv_lsn_to_segno(b->h.start_lsn, a->segsize),
                            ev->reach.last_segno, &ev->last_commit_us, NULL, err);
}

static wv_window *add_window(wv_window **w, size_t *nw, uint32_t tli, const wv_backup *b,
                             const eval *ev, int64_t from, int64_t to)
{
    *w = wv_xrealloc(*w, (*nw + 1) * sizeof(**w));
    wv_window *x = &(*w)[(*nw)++];
    memset(x, 0, sizeof(*x));
    x->tli = tli;
    x->from_us = from;
    x->to_us = to;
    x->from_lsn = b->h.stop_lsn;
    x->to_lsn = ev->reach.end_lsn;
    snprintf(x->first_backup, sizeof(x->first_backup), "%s", b->h.id);
    x->gap = ev->reach.gap;
    memcpy(x->missing, ev->reach.missing, sizeof(x->missing));
    x->resume_us = INT64_MIN;
    return x;
}

int wv_recovery_windows(const wv_recovery_facts *f, wv_window **out, size_t *n, wv_err *err)
{
    const wv_archive *a = f->archive;
    const wv_backupset *bs = f->backups;
    wv_window *w = NULL;
    size_t nw = 0;
    int rc = 0;
    *out = NULL;
    *n = 0;
    for (size_t t = 0; t < a->ntl && rc == 0; t++) {
        uint32_t tli = a->tls[t].tli;
        size_t first_of_tli = nw;
        for (size_t i = 0; i < bs->n && rc == 0; i++) {
            const wv_backup *b = &bs->b[i];
            eval ev;
            if (!backup_on_path(a, tli, b))
                continue;
            if ((rc = evaluate(f, tli, b, 1, &ev, err)) != 0 || !ev.restorable)
                continue;
            int64_t from = backup_end_us(b);
            int64_t to = ev.last_commit_us > from ? ev.last_commit_us : from;
            /* Merge with the previous window of this timeline when its WAL reaches past this
             * backup's end: every moment between them is recoverable, also when nothing was
             * committed since the previous backup (its window then ends before this one begins,
             * which is no gap). */
            if (nw > first_of_tli && w[nw - 1].to_lsn >= b->h.stop_lsn) {
                if (to > w[nw - 1].to_us)
                    w[nw - 1].to_us = to;
                continue;
            }
            wv_window *x = add_window(&w, &nw, tli, b, &ev, from, to);
            if (x->gap)
                rc = path_first_commit(f, tli, ev.reach.resume_segno, ev.reach.resume_segno + 16,
                                       &x->resume_us, err);
        }
    }
    if (rc != 0) {
        free(w);
        return rc;
    }
    *out = w;
    *n = nw;
    return 0;
}

void wv_recovery_windows_text(const wv_window *w, size_t n, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    if (n == 0) {
        snprintf(out, len, "none (no backup whose WAL is complete in the archive)");
        return;
    }
    for (size_t i = 0; i < n && used < len; i++) {
        char a[WV_TIME_FORMAT_LEN], b[WV_TIME_FORMAT_LEN];
        wv_time_format(w[i].from_us, a, sizeof(a));
        wv_time_format(w[i].to_us, b, sizeof(b));
        int k = snprintf(out + used, len - used, "%stimeline %" PRIu32 ": %s .. %s%s%s%s",
                         i ? "; " : "", w[i].tli, a, b, w[i].gap ? " (then WAL segment " : "",
                         w[i].gap ? w[i].missing : "", w[i].gap ? " is missing)" : "");
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

static void refuse_with_windows(const wv_recovery_facts *f, wv_err *err)
{
    wv_window *w = NULL;
    size_t n = 0;
    wv_err e2;
    char text[700];
    if (wv_recovery_windows(f, &w, &n, &e2) == 0) {
        wv_recovery_windows_text(w, n, text, sizeof(text));
        size_t used = strlen(err->msg);
        snprintf(err->msg + used, sizeof(err->msg) - used, "; recoverable: %s", text);
    }
    free(w);
}

static const char *kind_word(wv_target_kind k)
{
    switch (k) {
    case WV_TARGET_TIME:
        return "time";
    case WV_TARGET_LSN:
        return "LSN";
    case WV_TARGET_XID:
        return "transaction";
    case WV_TARGET_NAME:
        return "restore point";
    case WV_TARGET_IMMEDIATE:
        return "end of a backup";
    default:
        return "end of the archive";
    }
}

/* What the search saw on its way, for the reason of a refusal. */
typedef struct seen {
    const wv_backup *first_on_path, *xid_skipped;
    uint32_t xid_skipped_next;
    int saw_backup_before, saw_restorable;
    int64_t best_reach_commit;
    wv_archive_reach last_reach;
} seen;

/* A timeline on which the target is reachable, with the newest backup that reaches it. */
typedef struct option {
    uint32_t tli;
    const wv_backup *b;
    wv_archive_reach reach;
    int64_t last_commit_us; /* time targets only: the last commit reachable */
    int alive;              /* still a candidate after comparing with the other options */
    int by_xid;             /* kept because its transaction id ranges hold the target */
} option;

/* Why a transaction id target stays ambiguous between two timelines that both continue. */
typedef enum xid_why {
    XID_UNRECORDED = 0, /* a range is missing, or only the segment where they part holds it */
    XID_BOTH,           /* both timelines' ranges past the fork hold it */
    XID_NEITHER,        /* no range past the fork holds it on either */
} xid_why;

/*
 * The newest backup from which recovery on timeline tli (0: each backup's own timeline) reaches
 * the target. 1 found (*o filled), 0 not (s says why), or an error.
 */
static int search_timeline(const wv_recovery_facts *f, const wv_target *t, uint32_t tli,
                           const char *backup_id, seen *s, option *o, wv_err *err)
{
    const wv_archive *a = f->archive;
    const wv_backupset *bs = f->backups;
    for (size_t i = bs->n; i-- > 0;) {
        const wv_backup *b = &bs->b[i];
        uint32_t path = tli ? tli : b->h.timeline;
        if (backup_id && strcmp(b->h.id, backup_id) != 0)
            continue;
        if (!backup_on_path(a, path, b))
            continue;
        s->first_on_path = b; /* iterating newest to oldest: ends at the oldest */
        /* The backup must end before the target. */
        if (t->kind == WV_TARGET_TIME && backup_end_us(b) > t->time_us)
            continue;
        if (t->kind == WV_TARGET_LSN && b->h.stop_lsn > t->lsn)
            continue;
        if (t->kind == WV_TARGET_XID && !backup_id) {
            /* A transaction that began before the backup's checkpoint most likely committed
             * before the backup ended, where recovery from it cannot stop. */
            uint32_t next;
            int rc = f->ops->backup_next_xid(f->arg, b, &next, err);
            if (rc != 0)
                return rc;
            if (next != 0 && (int32_t)(t->xid - next) < 0) {
                s->xid_skipped = b;
                s->xid_skipped_next = next;
                continue;
            }
        }
        s->saw_backup_before = 1;
        eval ev;
        int rc = evaluate(f, path, b, t->kind == WV_TARGET_TIME, &ev, err);
        if (rc != 0)
            return rc;
        s->last_reach = ev.reach;
        if (!ev.restorable)
            continue;
        s->saw_restorable = 1;
        if (ev.last_commit_us > s->best_reach_commit)
            s->best_reach_commit = ev.last_commit_us;
        int ok = 1;
        if (t->kind == WV_TARGET_TIME)
            /* PostgreSQL stops before the first commit later than the target: it must
             * read one (recovery_target_inclusive only matters for equal times). */
            ok = ev.last_commit_us != INT64_MIN && ev.last_commit_us > t->time_us;
        else if (t->kind == WV_TARGET_LSN)
            ok = t->lsn < ev.reach.end_lsn &&
                 wv_archive_on_path(a, path, wv_archive_tli_at(a, path, t->lsn), t->lsn);
        if (!ok)
            return 0; /* older backups reach no further on this timeline */
        o->tli = path;
        o->b = b;
        o->reach = ev.reach;
        o->last_commit_us = ev.last_commit_us;
        o->alive = 1;
        o->by_xid = 0;
        return 1;
    }
    return 0;
}

/*
 * The LSN where the histories of timelines x and y part: below it both read the same timelines.
 * Once two histories disagree they never agree again (a timeline's history is a prefix of its
 * descendants'), so it is the smallest switch point at which they disagree.
 */
static uint64_t part_lsn(const wv_archive *a, uint32_t x, uint32_t y)
{
    uint64_t best = UINT64_MAX;
    uint32_t two[2] = {x, y};
    if (wv_archive_tli_at(a, x, 0) != wv_archive_tli_at(a, y, 0))
        return 0;
    for (int k = 0; k < 2; k++) {
        const wv_archive_tli *tl = wv_archive_timeline(a, two[k]);
        for (size_t i = 0; tl && tl->has_history && i < tl->nhist; i++) {
            uint64_t l = tl->hist[i].switch_lsn;
            if (l < best && wv_archive_tli_at(a, x, l) != wv_archive_tli_at(a, y, l))
                best = l;
        }
    }
    return best;
}

/*
 * Whether recovery along x to time_us (INT64_MAX: to its end) replays commits of its own branch:
 * at or after segment d, where x and y part, and not shared with y. 0 no, 1 maybe, 2 yes.
 * Per segment only first and last commit are known (in WAL order): when both timelines' segment d
 * begins with the same commit, it lies before the point where they part; x's commits in d after it
 * are its own when its last one differs from y's, and then at or before time_us only "maybe"
 * unless that last one is.
 */
static int own_commits(const wv_recovery_facts *f, const option *x, const option *y, uint64_t d,
                       int64_t time_us, int *out, wv_err *err)
{
    wv_segment_commits cx, cy;
    int64_t later = INT64_MIN;
    int px, py, rc;
    *out = 0;
    if (x->reach.last_segno < d)
        return 0;
    if ((rc = path_segment(f, x->tli, d, &cx, &px, err)) != 0 ||
        (rc = path_segment(f, y->tli, d, &cy, &py, err)) != 0)
        return rc;
    if (cx.count > 0 && cx.first_us <= time_us) {
        int shared = py && cy.count > 0 && cy.first_us == cx.first_us;
        if (!shared || (cx.last_us != cy.last_us && cx.last_us <= time_us)) {
            *out = 2;
            return 0;
        }
        if (cx.last_us != cy.last_us)
            *out = 1;
    }
    if (x->reach.last_segno > d &&
        (rc = path_first_commit(f, x->tli, d + 1, x->reach.last_segno, &later, err)) != 0)
        return rc;
    if (later != INT64_MIN && later <= time_us)
        *out = 2;
    return 0;
}

/* Segment segno as recovery towards target_tli reads it, with its transaction id range. */
static int path_segment_xids(const wv_recovery_facts *f, uint32_t target_tli, uint64_t segno,
                             wv_segment_commits *c, int *present, wv_err *err)
{
    uint32_t tli = wv_archive_tli_for_segno(f->archive, target_tli, segno);
    wv_err e2;
    memset(c, 0, sizeof(*c));
    c->first_us = c->last_us = INT64_MIN;
    int rc = f->ops->segment_xids ? f->ops->segment_xids(f->arg, tli, segno, c, &e2)
                                  : f->ops->segment_commits(f->arg, tli, segno, c, &e2);
    *present = rc == 0;
    if (!f->ops->segment_xids)
        c->xid_known = 0;
    if (rc == WV_ENOTFOUND) {
        memset(c, 0, sizeof(*c));
        c->first_us = c->last_us = INT64_MIN;
        return 0;
    }
    if (rc != 0)
        *err = e2;
    return rc;
}

static bool range_holds(const wv_segment_commits *c, uint32_t xid)
{
    wv_xidrange x = {.xmin = c->xid_min, .xmax = c->xid_max, .count = c->count};
    return wv_xidrange_contains(&x, xid);
}

/*
 * Whether x's segments from d (where x and y part) to the end of its reach hold transaction id xid
 * in their recorded ranges: 0 no (every segment with commits has a range, none holds it), 1 not
 * known (a range is missing, or only segment d holds it and y's segment d may too: a commit
 * before the fork, which both share), 2 yes.
 */
static int branch_holds_xid(const wv_recovery_facts *f, const option *x, const option *y,
                            uint64_t d, uint32_t xid, int *out, wv_err *err)
{
    int unknown = 0;
    *out = 0;
    for (uint64_t s = d; s <= x->reach.last_segno; s++) {
        wv_segment_commits c, cy;
        int present, py, rc;
        if ((rc = path_segment_xids(f, x->tli, s, &c, &present, err)) != 0)
            return rc;
        if (!present || c.count == 0)
            continue;
        if (!c.xid_known) {
            unknown = 1;
            continue;
        }
        if (!range_holds(&c, xid))
            continue;
        if (s == d) {
            if ((rc = path_segment_xids(f, y->tli, d, &cy, &py, err)) != 0)
                return rc;
            if (py && cy.count > 0 && (!cy.xid_known || range_holds(&cy, xid))) {
                unknown = 1;
                continue;
            }
        }
        *out = 2;
        return 0;
    }
    *out = unknown;
    return 0;
}

/*
 * Options are newest timeline first. Two options lead to the same place when neither replays a
 * commit of its own branch (past the point where their timelines part) before the target: the
 * older is dropped. When only one of them may, the target lies on its branch: the other is
 * dropped. Options left alive afterwards are different places the target may mean.
 */
static int compare_options(const wv_recovery_facts *f, const wv_target *t, option *o, size_t n,
                           uint64_t *part, xid_why *why, wv_err *err)
{
    const wv_archive *a = f->archive;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!o[i].alive || !o[j].alive)
                continue;
            uint64_t x = part_lsn(a, o[i].tli, o[j].tli);
            uint64_t d = x == UINT64_MAX ? UINT64_MAX : wv_lsn_to_segno(x, a->segsize);
            int ci = 0, cj = 0, rc = 0;
            if (x == UINT64_MAX) {
                o[j].alive = 0;
                continue;
            }
            if (t->kind == WV_TARGET_LSN) {
                ci = cj = t->lsn >= x;
            } else {
                int64_t until = t->kind == WV_TARGET_TIME ? t->time_us : INT64_MAX;
                if ((rc = own_commits(f, &o[i], &o[j], d, until, &ci, err)) == 0)
                    rc = own_commits(f, &o[j], &o[i], d, until, &cj, err);
            }
            if (rc == 0 && ci && cj && t->kind == WV_TARGET_XID) {
                /* Both replay commits of their own: which of them holds the transaction? */
                int hi = 0, hj = 0;
                if ((rc = branch_holds_xid(f, &o[i], &o[j], d, t->xid, &hi, err)) == 0)
                    rc = branch_holds_xid(f, &o[j], &o[i], d, t->xid, &hj, err);
                if (rc == 0 && hi == 2 && hj == 0) {
                    cj = 0;
                    o[i].by_xid = 1;
                } else if (rc == 0 && hj == 2 && hi == 0) {
                    ci = 0;
                    o[j].by_xid = 1;
                } else if (rc == 0) {
                    *why = hi == 2 && hj == 2   ? XID_BOTH
                           : hi == 0 && hj == 0 ? XID_NEITHER
                                                : XID_UNRECORDED;
                }
            }
            if (rc != 0)
                return rc;
            if (!ci && !cj)
                o[j].alive = 0;
            else if (!ci)
                o[i].alive = 0;
            else if (!cj)
                o[j].alive = 0;
            else
                *part = x;
        }
    return 0;
}

/* Refuse to guess between the options left alive, naming each with its newest commit. */
static int refuse_ambiguous(const wv_recovery_facts *f, const wv_target *t, const option *o,
                            size_t n, uint64_t part, xid_why why, const char *tbuf,
                            const char *lbuf, wv_err *err)
{
    wv_buf list = WV_BUF_INIT, flags = WV_BUF_INIT;
    size_t alive = 0, k = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        alive += o[i].alive;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!o[i].alive)
            continue;
        int64_t newest = o[i].last_commit_us;
        if (t->kind != WV_TARGET_TIME)
            rc = path_last_commit(f, o[i].tli,
                                  wv_lsn_to_segno(o[i].b->h.start_lsn, f->archive->segsize),
                                  o[i].reach.last_segno, &newest, NULL, err);
        char nc[WV_TIME_FORMAT_LEN] = "none";
        if (newest != INT64_MIN)
            wv_time_format(newest, nc, sizeof(nc));
        k++;
        wv_buf_printf(&list, "%stimeline %" PRIu32 " (newest commit %s)",
                      k == 1 ? "" : (k == alive ? " and " : ", "), o[i].tli, nc);
        wv_buf_printf(&flags, "%s--timeline %" PRIu32, k == 1 ? "" : (k == alive ? " or " : ", "),
                      o[i].tli);
    }
    if (rc == 0) {
        char where[64] = "";
        if (alive == 2)
            wv_lsn_format(part, where);
        const char *cont = alive == 2 ? "both continue past the point where they part"
                                      : "all continue past the points where they part";
        switch (t->kind) {
        case WV_TARGET_TIME:
            wv_err_set(err, WV_EREFUSED, "target time %s is on more than one timeline: %s %s%s%s%s",
                       tbuf, wv_buf_cstr(&list), cont, alive == 2 ? " (LSN " : "", where,
                       alive == 2 ? ")" : "");
            break;
        case WV_TARGET_LSN:
            wv_err_set(err, WV_EREFUSED, "target LSN %s is on more than one timeline: %s %s%s%s%s",
                       lbuf, wv_buf_cstr(&list), cont, alive == 2 ? " (LSN " : "", where,
                       alive == 2 ? ")" : "");
            break;
        case WV_TARGET_XID: {
            const char *because =
                why == XID_BOTH
                    ? "the transaction id ranges recorded past the point where they part hold it "
                      "on each: after a fork both timelines assign the same ids"
                : why == XID_NEITHER
                    ? "no transaction id range recorded past the point where they part holds it: "
                      "it may have committed before"
                    : "the transaction id ranges recorded past the point where they part do not "
                      "tell: a range is missing, or only the segment where they part holds it on "
                      "both";
            wv_err_set(err, WV_EREFUSED,
                       "transaction %" PRIu32 " may have committed on more than one timeline "
                       "(%s): %s %s%s%s%s",
                       t->xid, because, wv_buf_cstr(&list), cont, alive == 2 ? " (LSN " : "", where,
                       alive == 2 ? ")" : "");
            break;
        }
        default:
            wv_err_set(err, WV_EREFUSED,
                       "the end of the archive is on more than one timeline: %s %s%s%s%s",
                       wv_buf_cstr(&list), cont, alive == 2 ? " (LSN " : "", where,
                       alive == 2 ? ")" : "");
            break;
        }
        wv_err_hint(err, "walvault does not guess which one you mean: pass %s",
                    wv_buf_cstr(&flags));
        refuse_with_windows(f, err);
        rc = WV_EREFUSED;
    }
    wv_buf_free(&list);
    wv_buf_free(&flags);
    return rc;
}

/* Why no backup fits the target: one refusal, with the recoverable windows. */
/* Whether segment name was dropped by archive_queue_max (a fact: the repository's gaps/). */
static int is_dropped(const wv_recovery_facts *f, const char *name)
{
    for (size_t i = 0; i < f->ndropped; i++)
        if (strcmp(f->dropped[i], name) == 0)
            return 1;
    return 0;
}

static int refuse_unreachable(const wv_recovery_facts *f, const wv_target *t, uint32_t timeline,
                              uint32_t latest, const char *backup_id, const seen *s,
                              const char *tbuf, const char *lbuf, wv_err *err)
{
    if (!s->first_on_path) {
        char which[64];
        if (timeline == WV_TLI_AUTO)
            snprintf(which, sizeof(which), "any archived timeline");
        else if (timeline == WV_TLI_LATEST)
            snprintf(which, sizeof(which), "the latest timeline (%" PRIu32 ")", latest);
        else if (timeline == WV_TLI_CURRENT)
            snprintf(which, sizeof(which), "its own timeline");
        else
            snprintf(which, sizeof(which), "timeline %" PRIu32, timeline);
        if (backup_id)
            wv_err_set(err, WV_EREFUSED, "backup \"%s\" does not lie on the history of %s",
                       backup_id, which);
        else
            wv_err_set(err, WV_EREFUSED, "no backup lies on the history of %s", which);
    } else if (!s->saw_backup_before && s->xid_skipped) {
        wv_err_set(err, WV_EREFUSED,
                   "transaction %" PRIu32 " began before the oldest usable backup (%s: its "
                   "checkpoint's next transaction id is %" PRIu32 ")",
                   t->xid, s->xid_skipped->h.id, s->xid_skipped_next);
        wv_err_hint(err, "if it committed after that backup ended, pass --backup %s",
                    s->xid_skipped->h.id);
    } else if (!s->saw_backup_before) {
        char fb[WV_TIME_FORMAT_LEN];
        wv_time_format(backup_end_us(s->first_on_path), fb, sizeof(fb));
        if (t->kind == WV_TARGET_LSN) {
            char sl[WV_LSN_LEN];
            wv_lsn_format(s->first_on_path->h.stop_lsn, sl);
            wv_err_set(err, WV_EREFUSED,
                       "target LSN %s is before the end of the oldest usable backup (%s, ended at "
                       "LSN %s)",
                       lbuf, s->first_on_path->h.id, sl);
        } else {
            wv_err_set(err, WV_EREFUSED,
                       "target %s %s is before the end of the oldest usable backup (%s, ended at "
                       "%s)",
                       kind_word(t->kind), tbuf, s->first_on_path->h.id, fb);
        }
    } else if (!s->saw_restorable) {
        wv_err_set(err, WV_EREFUSED,
                   "the WAL the backups need is not in the archive (first missing segment %s)",
                   s->last_reach.missing);
        wv_err_hint(err, "check archive_command and pg_stat_archiver on the server");
    } else if (s->last_reach.gap && is_dropped(f, s->last_reach.missing)) {
        wv_err_set(err, WV_EREFUSED,
                   "target %s %s%s is inside a gap in the archived WAL: segment %s was dropped "
                   "by archive_queue_max without archiving",
                   kind_word(t->kind), tbuf, lbuf, s->last_reach.missing);
        wv_err_hint(err, "no recovery can replay across a dropped segment: choose a target before "
                         "it, or one after a base backup taken after it");
    } else if (s->last_reach.gap) {
        wv_err_set(err, WV_EREFUSED,
                   "target %s %s%s is inside a gap in the archived WAL: segment %s is missing",
                   kind_word(t->kind), tbuf, lbuf, s->last_reach.missing);
        wv_err_hint(err, "choose a target before the gap, or one after a backup taken after it");
    } else if (t->kind == WV_TARGET_TIME) {
        char lc[WV_TIME_FORMAT_LEN] = "(none)";
        if (s->best_reach_commit != INT64_MIN)
            wv_time_format(s->best_reach_commit, lc, sizeof(lc));
        wv_err_set(err, WV_EREFUSED,
                   "target time %s is not before the last archived commit (%s): PostgreSQL "
                   "stops at the first commit after the target and would end recovery without one",
                   tbuf, lc);
        if (s->best_reach_commit != INT64_MIN)
            wv_err_hint(err,
                        "if the server is running, archive its current WAL (SELECT "
                        "pg_switch_wal();) and retry; or restore without a target to the end of "
                        "the archive, which ends with that commit");
        else
            wv_err_hint(err, "if the server is running, archive its current WAL (SELECT "
                             "pg_switch_wal();) and retry");
    } else {
        char el[WV_LSN_LEN];
        wv_lsn_format(s->last_reach.end_lsn, el);
        wv_err_set(err, WV_EREFUSED, "target LSN %s is beyond the end of the archived WAL (%s)",
                   lbuf, el);
        wv_err_hint(err, "if the server is running, archive its current WAL (SELECT "
                         "pg_switch_wal();) and retry");
    }
    refuse_with_windows(f, err);
    return WV_EREFUSED;
}

/* Refusals that need no search: no backups, an unknown --backup or --timeline. */
static int refuse_early(const wv_recovery_facts *f, uint32_t timeline, const char *backup_id,
                        wv_err *err)
{
    const wv_archive *a = f->archive;
    if (f->backups->n == 0)
        return wv_err_set(err, WV_EREFUSED,
                          "the repository holds no backup: take one with "
                          "\"basebackup backup\" first");
    if (backup_id && !wv_backupset_find(f->backups, backup_id))
        return wv_err_set(err, WV_EREFUSED,
                          "no backup \"%s\" in the repository (see "
                          "\"basebackup list\")",
                          backup_id);
    if (timeline != WV_TLI_AUTO && timeline != WV_TLI_LATEST && timeline != WV_TLI_CURRENT &&
        timeline != 1 && !wv_archive_timeline(a, timeline)) {
        wv_buf known = WV_BUF_INIT;
        for (size_t i = 0; i < a->ntl; i++)
            wv_buf_printf(&known, "%s%" PRIu32, i ? ", " : "", a->tls[i].tli);
        wv_err_set(err, WV_EREFUSED,
                   "timeline %" PRIu32 " is not in the archive (archived timelines: %s)", timeline,
                   known.len ? wv_buf_cstr(&known) : "none");
        wv_buf_free(&known);
        refuse_with_windows(f, err);
        return WV_EREFUSED;
    }
    return 0;
}

/* The timelines to try, newest first: one, or (choosing) every archived one on which a restore
 * point's timeline lies at its LSN (rp_tli 0: no restore point). */
static size_t candidates(const wv_archive *a, const wv_target *t, uint32_t timeline, int choose,
                         uint32_t rp_tli, uint32_t *cands, size_t max)
{
    size_t n = 0;
    if (timeline == WV_TLI_LATEST)
        cands[n++] = wv_archive_latest_tli(a);
    else if (!choose)
        cands[n++] = timeline == WV_TLI_CURRENT || timeline == WV_TLI_AUTO ? 0 : timeline;
    for (size_t i = a->ntl; choose && i-- > 0 && n < max;)
        if (!rp_tli || wv_archive_on_path(a, a->tls[i].tli, rp_tli, t->lsn))
            cands[n++] = a->tls[i].tli;
    if (n == 0)
        cands[n++] = 1;
    return n;
}

/* Why this timeline, in the words restore prints (tests and users read them). */
static void explain_timeline(const wv_target *t, uint32_t timeline, int first_option,
                             uint32_t latest, const option *o, wv_plan *plan)
{
    char *r = plan->tli_reason;
    size_t len = sizeof(plan->tli_reason);
    if (timeline == WV_TLI_AUTO && t->kind == WV_TARGET_IMMEDIATE)
        snprintf(r, len, "the backup's timeline, which holds the target: the end of the backup");
    else if (timeline == WV_TLI_AUTO && o->by_xid)
        snprintf(r, len,
                 "the timeline whose WAL past the point where the timelines part holds "
                 "transaction %" PRIu32 " in its recorded transaction id ranges",
                 t->xid);
    else if (timeline == WV_TLI_AUTO && !first_option)
        snprintf(r, len,
                 "the only timeline that holds the target: the newer ones part from it before it");
    else if (timeline == WV_TLI_AUTO && t->kind != WV_TARGET_LATEST)
        snprintf(r, len, "the newest timeline whose history reaches the target");
    else if (timeline == WV_TLI_CURRENT)
        snprintf(r, len, "the backup's timeline (--timeline current)");
    else if (timeline == WV_TLI_LATEST || (timeline == WV_TLI_AUTO && o->tli == latest))
        snprintf(r, len, "the latest timeline in the archive");
    else if (timeline == WV_TLI_AUTO)
        snprintf(r, len, "the newest timeline a backup reaches the end of the archive on");
    else
        snprintf(r, len, "--timeline %" PRIu32, timeline);
}

static int decide(const wv_recovery_facts *f, const wv_target *t, uint32_t rp_tli,
                  uint32_t timeline, const char *backup_id, wv_plan *plan, wv_err *err)
{
    const wv_archive *a = f->archive;
    uint32_t cands[64], latest = wv_archive_latest_tli(a);
    option opts[64];
    size_t nopt = 0;
    seen s = {.best_reach_commit = INT64_MIN}, first_round;
    char tbuf[WV_TIME_FORMAT_LEN] = "", lbuf[WV_LSN_LEN] = "";
    uint64_t part = UINT64_MAX;
    xid_why xwhy = XID_UNRECORDED;
    int rc;

    plan->last_commit_us = INT64_MIN;
    if (t->kind == WV_TARGET_TIME)
        wv_time_format(t->time_us, tbuf, sizeof(tbuf));
    if (t->kind == WV_TARGET_LSN)
        wv_lsn_format(t->lsn, lbuf);
    if ((rc = refuse_early(f, timeline, backup_id, err)) != 0)
        return rc;

    /* Choosing: every timeline is tried, and the options compared. */
    int choose = timeline == WV_TLI_AUTO && t->kind != WV_TARGET_IMMEDIATE;
    size_t ncand = candidates(a, t, timeline, choose, rp_tli, cands, 64);
    memset(&first_round, 0, sizeof(first_round));
    for (size_t c = 0; c < ncand; c++) {
        rc = search_timeline(f, t, cands[c], backup_id, &s, &opts[nopt], err);
        if (rc < 0)
            return rc;
        nopt += (size_t)rc;
        if (!choose && rc == 1)
            break;
        if (c == 0)
            first_round = s;
    }
    if (nopt > 1 && (rc = compare_options(f, t, opts, nopt, &part, &xwhy, err)) != 0)
        return rc;
    size_t alive = 0, pick = 0;
    for (size_t i = nopt; i-- > 0;)
        if (opts[i].alive) {
            alive++;
            pick = i;
        }
    if (alive > 1)
        return refuse_ambiguous(f, t, opts, nopt, part, xwhy, tbuf, lbuf, err);
    if (alive == 0) {
        /* The end of the archive was looked for on the latest timeline first: say why not there. */
        const seen *why = choose && t->kind == WV_TARGET_LATEST ? &first_round : &s;
        return refuse_unreachable(f, t, timeline, cands[0], backup_id, why, tbuf, lbuf, err);
    }
    plan->backup = opts[pick].b;
    plan->tli = opts[pick].tli;
    plan->reach = opts[pick].reach;
    plan->last_commit_us = opts[pick].last_commit_us;
    explain_timeline(t, timeline, pick == 0, latest, &opts[pick], plan);
    return 0;
}

int wv_recovery_decide(const wv_recovery_facts *f, const wv_target *t, uint32_t timeline,
                       const char *backup_id, wv_plan *plan, wv_err *err)
{
    memset(plan, 0, sizeof(*plan));
    if (t->kind != WV_TARGET_NAME)
        return decide(f, t, 0, timeline, backup_id, plan, err);
    /* A restore point is an LSN target whose LSN (and timeline) the archive knows. */
    if (!f->rp_found) {
        if (f->rp_err.code) {
            *err = f->rp_err; /* keep the message: it lists the names archived */
        } else {
            wv_err_set(err, WV_EREFUSED, "restore point \"%s\" is not in the archived WAL",
                       t->name);
        }
        err->code = WV_EREFUSED;
        return WV_EREFUSED;
    }
    wv_target lt = *t;
    lt.kind = WV_TARGET_LSN;
    lt.lsn = f->rp_lsn;
    return decide(f, &lt, f->rp_tli, timeline, backup_id, plan, err);
}
