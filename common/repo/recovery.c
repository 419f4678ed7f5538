/* recovery.c - recoverable windows and the choice of backup and timeline for a target. */
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
        rc = wv_object_read(src, dest, &info, err);
        wv_filter_chain_free(dest);
        wv_source_close(src);
        if (rc != 0)
            wv_err_prefix(err, "%s: \"%s\": ", wv_storage_name(st), f.key);
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

/* Memo of the last commit reachable up to a segment on one timeline's path. */
typedef struct commit_memo {
    uint32_t tli;
    uint64_t to_segno;
    uint64_t found_segno; /* UINT64_MAX: none found down to searched_from */
    uint64_t searched_from;
    int64_t time_us;
    int valid;
} commit_memo;

static int last_commit(wv_storage *st, const wv_archive *a, commit_memo *m, uint32_t tli,
                       uint64_t from, uint64_t to, int64_t *time_us, wv_err *err)
{
    if (m->valid && m->tli == tli && m->to_segno == to) {
        if (m->found_segno != UINT64_MAX && m->found_segno >= from) {
            *time_us = m->time_us;
            return 0;
        }
        if (m->found_segno == UINT64_MAX && m->searched_from <= from) {
            *time_us = INT64_MIN;
            return 0;
        }
    }
    uint64_t seg = UINT64_MAX;
    int rc = wv_archive_last_commit(st, a, tli, from, to, time_us, &seg, err);
    if (rc != 0)
        return rc;
    m->valid = 1;
    m->tli = tli;
    m->to_segno = to;
    m->found_segno = *time_us == INT64_MIN ? UINT64_MAX : seg;
    m->searched_from = from;
    m->time_us = *time_us;
    return 0;
}

typedef struct eval {
    int restorable;
    wv_archive_reach reach;
    int64_t last_commit_us;
} eval;

static int evaluate(wv_storage *st, const wv_archive *a, commit_memo *m, uint32_t tli,
                    const wv_backup *b, int want_commit, eval *ev, wv_err *err)
{
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
    return last_commit(st, a, m, tli, wv_lsn_to_segno(b->h.start_lsn, a->segsize),
                       ev->reach.last_segno, &ev->last_commit_us, err);
}

int wv_recovery_windows(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                        wv_window **out, size_t *n, wv_err *err)
{
    wv_window *w = NULL;
    size_t nw = 0;
    commit_memo memo = {0};
    *out = NULL;
    *n = 0;
    for (size_t t = 0; t < a->ntl; t++) {
        uint32_t tli = a->tls[t].tli;
        size_t first_of_tli = nw;
        for (size_t i = 0; i < bs->n; i++) {
            const wv_backup *b = &bs->b[i];
            eval ev;
            if (!backup_on_path(a, tli, b))
                continue;
            int rc = evaluate(st, a, &memo, tli, b, 1, &ev, err);
            if (rc != 0) {
                free(w);
                return rc;
            }
            if (!ev.restorable)
                continue;
            int64_t from = backup_end_us(b);
            int64_t to = ev.last_commit_us > from ? ev.last_commit_us : from;
            /* Merge with the previous window of this timeline when they touch. */
            if (nw > first_of_tli && from <= w[nw - 1].to_us && w[nw - 1].to_lsn >= b->h.stop_lsn) {
                if (to > w[nw - 1].to_us)
                    w[nw - 1].to_us = to;
                continue;
            }
            w = wv_xrealloc(w, (nw + 1) * sizeof(*w));
            wv_window *x = &w[nw++];
            memset(x, 0, sizeof(*x));
            x->tli = tli;
            x->from_us = from;
            x->to_us = to;
            x->from_lsn = b->h.stop_lsn;
            x->to_lsn = ev.reach.end_lsn;
            snprintf(x->first_backup, sizeof(x->first_backup), "%s", b->h.id);
            x->gap = ev.reach.gap;
            memcpy(x->missing, ev.reach.missing, sizeof(x->missing));
            x->resume_us = INT64_MIN;
            if (x->gap) {
                int rc2 = wv_archive_first_commit(st, a, tli, ev.reach.resume_segno,
                                                  ev.reach.resume_segno + 16, &x->resume_us, err);
                if (rc2 != 0) {
                    free(w);
                    return rc2;
                }
            }
        }
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

static void refuse_with_windows(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                                wv_err *err)
{
    wv_window *w = NULL;
    size_t n = 0;
    wv_err e2;
    char text[700];
    if (wv_recovery_windows(st, a, bs, &w, &n, &e2) == 0) {
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

int wv_recovery_plan(wv_storage *st, const wv_archive *a, const wv_backupset *bs,
                     const wv_target *t, uint32_t timeline, const char *backup_id, wv_plan *plan,
                     wv_err *err)
{
    uint32_t cands[64];
    size_t ncand = 0;
    commit_memo memo = {0};
    char tbuf[WV_TIME_FORMAT_LEN] = "", lbuf[WV_LSN_LEN] = "";
    int saw_backup_before = 0, saw_restorable = 0;
    int64_t best_reach_commit = INT64_MIN;
    const wv_backup *first_on_path = NULL, *xid_skipped = NULL;
    uint32_t xid_skipped_next = 0;
    wv_archive_reach last_reach;

    memset(plan, 0, sizeof(*plan));
    memset(&last_reach, 0, sizeof(last_reach));
    if (t->kind == WV_TARGET_NAME) {
        /* A restore point is an LSN target whose LSN the archive knows. */
        wv_target lt = *t;
        int64_t rp_time;
        uint32_t rp_tli;
        int rc = wv_archive_find_restore_point(st, a, t->name, &lt.lsn, &rp_time, &rp_tli, err);
        if (rc == WV_ENOTFOUND) {
            err->code = WV_EREFUSED; /* keep the message: it lists the names archived */
            return WV_EREFUSED;
        }
        if (rc != 0)
            return rc;
        lt.kind = WV_TARGET_LSN;
        return wv_recovery_plan(st, a, bs, &lt, timeline, backup_id, plan, err);
    }
    plan->last_commit_us = INT64_MIN;
    if (t->kind == WV_TARGET_TIME)
        wv_time_format(t->time_us, tbuf, sizeof(tbuf));
    if (t->kind == WV_TARGET_LSN)
        wv_lsn_format(t->lsn, lbuf);

    if (bs->n == 0)
        return wv_err_set(err, WV_EREFUSED,
                          "the repository holds no backup: take one with "
                          "\"basebackup backup\" first");
    if (backup_id && !wv_backupset_find(bs, backup_id))
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
        refuse_with_windows(st, a, bs, err);
        return WV_EREFUSED;
    }

    if (timeline == WV_TLI_LATEST || (timeline == WV_TLI_AUTO && t->kind == WV_TARGET_LATEST)) {
        cands[ncand++] = wv_archive_latest_tli(a);
    } else if (timeline == WV_TLI_AUTO) {
        for (size_t i = a->ntl; i-- > 0 && ncand < 64;)
            cands[ncand++] = a->tls[i].tli;
        if (ncand == 0)
            cands[ncand++] = 1;
    } else if (timeline != WV_TLI_CURRENT) {
        cands[ncand++] = timeline;
    }

    /* WV_TLI_CURRENT: each backup's own timeline. */
    size_t rounds = timeline == WV_TLI_CURRENT ? 1 : ncand;
    for (size_t c = 0; c < rounds; c++) {
        for (size_t i = bs->n; i-- > 0;) {
            const wv_backup *b = &bs->b[i];
            uint32_t tli = timeline == WV_TLI_CURRENT ? b->h.timeline : cands[c];
            if (backup_id && strcmp(b->h.id, backup_id) != 0)
                continue;
            if (!backup_on_path(a, tli, b))
                continue;
            first_on_path = b; /* iterating newest to oldest: ends at the oldest */
            /* The backup must end before the target. */
            if (t->kind == WV_TARGET_TIME && backup_end_us(b) > t->time_us)
                continue;
            if (t->kind == WV_TARGET_LSN && b->h.stop_lsn > t->lsn)
                continue;
            if (t->kind == WV_TARGET_XID && !backup_id) {
                /* A transaction that began before the backup's checkpoint most likely committed
                 * before the backup ended, where recovery from it cannot stop. */
                uint32_t next;
                int rc = backup_next_xid(st, b, &next, err);
                if (rc != 0)
                    return rc;
                if (next != 0 && (int32_t)(t->xid - next) < 0) {
                    xid_skipped = b;
                    xid_skipped_next = next;
                    continue;
                }
            }
            saw_backup_before = 1;
            eval ev;
            int rc = evaluate(st, a, &memo, tli, b, t->kind == WV_TARGET_TIME, &ev, err);
            if (rc != 0)
                return rc;
            if (!ev.restorable) {
                last_reach = ev.reach;
                continue;
            }
            saw_restorable = 1;
            last_reach = ev.reach;
            if (ev.last_commit_us > best_reach_commit)
                best_reach_commit = ev.last_commit_us;
            int ok = 1;
            if (t->kind == WV_TARGET_TIME)
                /* PostgreSQL stops before the first commit later than the target: it must
                 * read one (recovery_target_inclusive only matters for equal times). */
                ok = ev.last_commit_us != INT64_MIN && ev.last_commit_us > t->time_us;
            else if (t->kind == WV_TARGET_LSN)
                ok = t->lsn < ev.reach.end_lsn &&
                     wv_archive_on_path(a, tli, wv_archive_tli_at(a, tli, t->lsn), t->lsn);
            if (!ok)
                break; /* older backups reach no further on this timeline */
            plan->backup = b;
            plan->tli = tli;
            plan->reach = ev.reach;
            plan->last_commit_us = ev.last_commit_us;
            if (timeline == WV_TLI_AUTO && t->kind != WV_TARGET_LATEST)
                snprintf(plan->tli_reason, sizeof(plan->tli_reason),
                         "the newest timeline whose history reaches the target");
            else if (timeline == WV_TLI_CURRENT)
                snprintf(plan->tli_reason, sizeof(plan->tli_reason),
                         "the backup's timeline "
                         "(--timeline current)");
            else if (timeline == WV_TLI_LATEST || timeline == WV_TLI_AUTO)
                snprintf(plan->tli_reason, sizeof(plan->tli_reason),
                         "the latest timeline in the archive");
            else
                snprintf(plan->tli_reason, sizeof(plan->tli_reason), "--timeline %" PRIu32,
                         timeline);
            return 0;
        }
    }

    /* Nothing fits: say why, with the recoverable windows. */
    if (!first_on_path) {
        char which[64];
        if (timeline == WV_TLI_AUTO)
            snprintf(which, sizeof(which), "any archived timeline");
        else if (timeline == WV_TLI_LATEST)
            snprintf(which, sizeof(which), "the latest timeline (%" PRIu32 ")", cands[0]);
        else if (timeline == WV_TLI_CURRENT)
            snprintf(which, sizeof(which), "its own timeline");
        else
            snprintf(which, sizeof(which), "timeline %" PRIu32, timeline);
        if (backup_id)
            wv_err_set(err, WV_EREFUSED, "backup \"%s\" does not lie on the history of %s",
                       backup_id, which);
        else
            wv_err_set(err, WV_EREFUSED, "no backup lies on the history of %s", which);
    } else if (!saw_backup_before && xid_skipped) {
        wv_err_set(err, WV_EREFUSED,
                   "transaction %" PRIu32 " began before the oldest usable backup (%s: its "
                   "checkpoint's next transaction id is %" PRIu32 ")",
                   t->xid, xid_skipped->h.id, xid_skipped_next);
        wv_err_hint(err, "if it committed after that backup ended, pass --backup %s",
                    xid_skipped->h.id);
    } else if (!saw_backup_before) {
        char fb[WV_TIME_FORMAT_LEN];
        wv_time_format(backup_end_us(first_on_path), fb, sizeof(fb));
        if (t->kind == WV_TARGET_LSN) {
            char sl[WV_LSN_LEN];
            wv_lsn_format(first_on_path->h.stop_lsn, sl);
            wv_err_set(err, WV_EREFUSED,
                       "target LSN %s is before the end of the oldest usable backup (%s, ended at "
                       "LSN %s)",
                       lbuf, first_on_path->h.id, sl);
        } else {
            wv_err_set(err, WV_EREFUSED,
                       "target %s %s is before the end of the oldest usable backup (%s, ended at "
                       "%s)",
                       kind_word(t->kind), tbuf, first_on_path->h.id, fb);
        }
    } else if (!saw_restorable) {
        wv_err_set(err, WV_EREFUSED,
                   "the WAL the backups need is not in the archive (first missing segment %s)",
                   last_reach.missing);
        wv_err_hint(err, "check archive_command and pg_stat_archiver on the server");
    } else if (last_reach.gap) {
        wv_err_set(err, WV_EREFUSED,
                   "target %s %s%s is inside a gap in the archived WAL: segment %s is missing",
                   kind_word(t->kind), tbuf, lbuf, last_reach.missing);
        wv_err_hint(err, "choose a target before the gap, or one after a backup taken after it");
    } else if (t->kind == WV_TARGET_TIME) {
        char lc[WV_TIME_FORMAT_LEN] = "(none)";
        if (best_reach_commit != INT64_MIN)
            wv_time_format(best_reach_commit, lc, sizeof(lc));
        wv_err_set(err, WV_EREFUSED,
                   "target time %s is not before the last archived commit (%s): PostgreSQL "
                   "stops at the first commit after the target and would end recovery without one",
                   tbuf, lc);
        if (best_reach_commit != INT64_MIN)
            wv_err_hint(err,
                        "if the server is running, archive its current WAL (SELECT "
                        "pg_switch_wal();) and retry; or restore without a target to the end of "
                        "the archive, which ends with that commit");
        else
            wv_err_hint(err, "if the server is running, archive its current WAL (SELECT "
                             "pg_switch_wal();) and retry");
    } else {
        char el[WV_LSN_LEN];
        wv_lsn_format(last_reach.end_lsn, el);
        wv_err_set(err, WV_EREFUSED, "target LSN %s is beyond the end of the archived WAL (%s)",
                   lbuf, el);
        wv_err_hint(err, "if the server is running, archive its current WAL (SELECT "
                         "pg_switch_wal();) and retry");
    }
    refuse_with_windows(st, a, bs, err);
    return WV_EREFUSED;
}
