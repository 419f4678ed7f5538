/* walarchive.c - inventory of the WAL archive and what recovery can reach. */
#include "repo/walarchive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "pipeline/object.h"
#include "repo/repo.h"

typedef struct scan_state {
    wv_archive *a;
    char **history_keys;
    size_t nhist, caphist;
} scan_state;

static wv_archive_tli *get_tli(wv_archive *a, uint32_t tli)
{
    for (size_t i = 0; i < a->ntl; i++)
        if (a->tls[i].tli == tli)
            return &a->tls[i];
    a->tls = wv_xrealloc(a->tls, (a->ntl + 1) * sizeof(*a->tls));
    wv_archive_tli *t = &a->tls[a->ntl++];
    memset(t, 0, sizeof(*t));
    t->tli = tli;
    return t;
}

static int scan_cb(void *arg, const char *key, const wv_stat *st)
{
    scan_state *s = arg;
    const char *name = strrchr(key, '/');
    wv_walname wn;
    name = name ? name + 1 : key;
    switch (wv_walname_parse(name, &wn)) {
    case WV_WALNAME_SEGMENT: {
        if (!wv_walname_valid_for_segsize(&wn, s->a->segsize))
            break;
        wv_archive_tli *t = get_tli(s->a, wn.tli);
        if (t->nseg % 256 == 0)
            t->segnos = wv_xrealloc(t->segnos, (t->nseg + 256) * sizeof(uint64_t));
        t->segnos[t->nseg++] = wv_walname_segno(&wn, s->a->segsize);
        break;
    }
    case WV_WALNAME_INVALID: {
        size_t n = strlen(name), sl = strlen(WV_REPO_RP_SUFFIX);
        if (n > sl && strcmp(name + n - sl, WV_REPO_RP_SUFFIX) == 0) {
            s->a->rp_keys = wv_xrealloc(s->a->rp_keys, (s->a->nrp + 1) * sizeof(char *));
            s->a->rp_keys[s->a->nrp++] = wv_xstrdup(key);
        }
        break;
    }
    case WV_WALNAME_HISTORY:
        if (s->nhist == s->caphist) {
            s->caphist = s->caphist ? 2 * s->caphist : 8;
            s->history_keys = wv_xrealloc(s->history_keys, s->caphist * sizeof(char *));
        }
        s->history_keys[s->nhist++] = wv_xstrdup(key);
        break;
    default:
        break;
    }
    return 0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int cmp_tli(const void *x, const void *y)
{
    uint32_t a = ((const wv_archive_tli *)x)->tli, b = ((const wv_archive_tli *)y)->tli;
    return a < b ? -1 : a > b;
}

static int load_history(wv_storage *st, wv_archive *a, const char *key, wv_err *err)
{
    const char *name = strrchr(key, '/') + 1;
    wv_walname wn;
    wv_walname_parse(name, &wn);
    wv_buf b = WV_BUF_INIT;
    wv_source *src = NULL;
    wv_obj_info info;
    int rc = wv_storage_get_open(st, key, 0, -1, &src, err);
    if (rc == 0) {
        wv_filter *dest = wv_filter_buf_new(&b);
        rc = wv_object_read_opts(src, dest,
                                 &(wv_objread_opts){.key = key,
                                                    .max_plain = WV_REPO_WAL_TEXT_MAX,
                                                    .crypto = wv_repo_crypto(st)},
                                 &info, err);
        wv_filter_chain_free(dest);
        wv_source_close(src);
        if (rc != 0)
            wv_err_context(err, wv_storage_name(st), key);
    }
    if (rc == 0) {
        wv_archive_tli *t = get_tli(a, wn.tli);
        rc = wv_history_parse((const char *)b.data, b.len, &t->hist, &t->nhist, err);
        if (rc != 0) {
            wv_err_prefix(err, "%s: %s: ", wv_storage_name(st), name);
            wv_err_names(err, wv_storage_name(st), NULL);
        } else
            t->has_history = 1;
        if (rc == 0 && wn.tli > a->max_history_tli)
            a->max_history_tli = wn.tli;
    }
    wv_buf_free(&b);
    return rc;
}

int wv_archive_scan(wv_storage *st, uint64_t segsize, wv_archive **out, wv_err *err)
{
    wv_archive *a = wv_xcalloc(1, sizeof(*a));
    scan_state s = {.a = a};
    a->segsize = segsize;
    a->max_history_tli = 1;
    int rc = wv_storage_list(st, "wal/", scan_cb, &s, err);
    for (size_t i = 0; i < s.nhist; i++) {
        if (rc == 0)
            rc = load_history(st, a, s.history_keys[i], err);
        free(s.history_keys[i]);
    }
    free(s.history_keys);
    if (rc != 0) {
        wv_archive_free(a);
        return rc;
    }
    for (size_t i = 0; i < a->ntl; i++) {
        wv_archive_tli *t = &a->tls[i];
        if (t->nseg > 1) /* segnos is NULL for a timeline known only by its history file */
            qsort(t->segnos, t->nseg, sizeof(uint64_t), cmp_u64);
        size_t w = 0;
        for (size_t j = 0; j < t->nseg; j++)
            if (w == 0 || t->segnos[w - 1] != t->segnos[j])
                t->segnos[w++] = t->segnos[j];
        t->nseg = w;
    }
    if (a->ntl > 1) /* tls is NULL in an empty archive: qsort must not get it */
        qsort(a->tls, a->ntl, sizeof(*a->tls), cmp_tli);
    *out = a;
    return 0;
}

void wv_archive_free(wv_archive *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->ntl; i++) {
        free(a->tls[i].segnos);
        free(a->tls[i].hist);
    }
    free(a->tls);
    for (size_t i = 0; i < a->nrp; i++)
        free(a->rp_keys[i]);
    free(a->rp_keys);
    free(a);
}

const wv_archive_tli *wv_archive_timeline(const wv_archive *a, uint32_t tli)
{
    for (size_t i = 0; i < a->ntl; i++)
        if (a->tls[i].tli == tli)
            return &a->tls[i];
    return NULL;
}

uint32_t wv_archive_latest_tli(const wv_archive *a)
{
    uint32_t m = 1;
    for (size_t i = 0; i < a->ntl; i++)
        if (a->tls[i].tli > m)
            m = a->tls[i].tli;
    return m;
}

uint32_t wv_archive_tli_at(const wv_archive *a, uint32_t target_tli, uint64_t lsn)
{
    const wv_archive_tli *t = wv_archive_timeline(a, target_tli);
    if (!t || !t->has_history)
        return target_tli;
    return wv_history_tli_at(t->hist, t->nhist, target_tli, lsn);
}

int wv_archive_on_path(const wv_archive *a, uint32_t target_tli, uint32_t tli, uint64_t lsn)
{
    return wv_archive_tli_at(a, target_tli, lsn) == tli;
}

uint32_t wv_archive_tli_for_segno(const wv_archive *a, uint32_t target_tli, uint64_t segno)
{
    const wv_archive_tli *t = wv_archive_timeline(a, target_tli);
    if (!t || !t->has_history || t->nhist == 0)
        return target_tli;
    /* Newest first: target_tli begins at the last switch point, each ancestor at the one before. */
    uint64_t begin = t->hist[t->nhist - 1].switch_lsn;
    if (segno >= wv_lsn_to_segno(begin, a->segsize))
        return target_tli;
    for (size_t i = t->nhist; i-- > 0;) {
        uint64_t b = i > 0 ? t->hist[i - 1].switch_lsn : 0;
        if (segno >= wv_lsn_to_segno(b, a->segsize))
            return t->hist[i].tli;
    }
    return t->hist[0].tli;
}

static int has_segment(const wv_archive *a, uint32_t tli, uint64_t segno)
{
    const wv_archive_tli *t = wv_archive_timeline(a, tli);
    if (!t || t->nseg == 0)
        return 0;
    return bsearch(&segno, t->segnos, t->nseg, sizeof(uint64_t), cmp_u64) != NULL;
}

int wv_archive_reach_from(const wv_archive *a, uint32_t target_tli, uint64_t start_lsn,
                          wv_archive_reach *res, wv_err *err)
{
    uint64_t segno = wv_lsn_to_segno(start_lsn, a->segsize);
    memset(res, 0, sizeof(*res));
    uint32_t tli = wv_archive_tli_for_segno(a, target_tli, segno);
    if (!has_segment(a, tli, segno)) {
        wv_walname_format_segment(tli, segno, a->segsize, res->missing);
        return wv_err_set(err, WV_ENOTFOUND, "WAL segment %s is not in the archive", res->missing);
    }
    while (has_segment(a, tli, segno)) {
        res->last_segno = segno;
        res->last_tli = tli;
        segno++;
        tli = wv_archive_tli_for_segno(a, target_tli, segno);
    }
    res->end_lsn = wv_segno_to_lsn(res->last_segno + 1, a->segsize);
    wv_walname_format_segment(tli, segno, a->segsize, res->missing);

    /* Is there WAL on the path after the missing segment? Then this is a gap, not the end. */
    uint64_t best = UINT64_MAX;
    uint32_t best_tli = 0;
    for (size_t i = 0; i < a->ntl; i++) {
        const wv_archive_tli *t = &a->tls[i];
        for (size_t j = 0; j < t->nseg; j++) {
            uint64_t s = t->segnos[j];
            if (s > segno && s < best && wv_archive_tli_for_segno(a, target_tli, s) == t->tli) {
                best = s;
                best_tli = t->tli;
                break; /* sorted: the first match is this timeline's smallest */
            }
        }
    }
    if (best != UINT64_MAX) {
        res->gap = 1;
        res->resume_segno = best;
        res->resume_tli = best_tli;
    }
    return 0;
}

static void pct_decode(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < outlen; p++) {
        unsigned v;
        if (*p == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v) == 1) {
            out[o++] = (char)v;
            p += 2;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

int wv_archive_find_restore_point(wv_storage *st, const wv_archive *a, const char *name,
                                  uint64_t *lsn, int64_t *time_us, uint32_t *tli, wv_err *err)
{
    int found = 0, rc = 0;
    wv_buf seen = WV_BUF_INIT;
    for (size_t i = 0; i < a->nrp && rc == 0; i++) {
        wv_buf b = WV_BUF_INIT;
        rc = wv_repo_get_text(st, a->rp_keys[i], 1024 * 1024, &b, err);
        if (rc == WV_ENOTFOUND) {
            rc = 0;
            wv_buf_free(&b);
            continue;
        }
        const char *segname = strrchr(a->rp_keys[i], '/') + 1;
        wv_walname wn;
        char seg[WV_WALNAME_SEGMENT_LEN];
        snprintf(seg, sizeof(seg), "%.24s", segname);
        wv_walname_parse(seg, &wn);
        char *text = rc == 0 ? (char *)wv_buf_cstr(&b) : NULL, *save = NULL;
        for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
             line = strtok_r(NULL, "\n", &save)) {
            char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
            if (!t1 || !t2)
                continue;
            *t1 = *t2 = '\0';
            char nm[128];
            uint64_t l;
            pct_decode(t2 + 1, nm, sizeof(nm));
            if (wv_lsn_parse(line, &l) != 0)
                continue;
            if (strcmp(nm, name) == 0) {
                if (!found || l > *lsn) {
                    *lsn = l;
                    *time_us = strtoll(t1 + 1, NULL, 10);
                    *tli = wn.tli;
                }
                found = 1;
            } else if (seen.len < 200) {
                /* each name once, however many times it was archived */
                char quoted[132];
                snprintf(quoted, sizeof(quoted), "\"%s\"", nm);
                if (!seen.len || !strstr(wv_buf_cstr(&seen), quoted))
                    wv_buf_printf(&seen, "%s%s", seen.len ? ", " : "", quoted);
            }
        }
        wv_buf_free(&b);
    }
    if (rc == 0 && !found) {
        rc = wv_err_set(err, WV_ENOTFOUND, "restore point \"%s\" is not in the archived WAL%s%s",
                        name, seen.len ? " (archived restore points: " : "",
                        seen.len ? wv_buf_cstr(&seen) : "");
        if (seen.len) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof(err->msg) - n, ")");
        }
        wv_err_hint(err, "restore points are recorded as wal-push archives the segment holding "
                         "them: run SELECT pg_switch_wal(); on the server if it is recent");
    }
    wv_buf_free(&seen);
    return rc;
}
