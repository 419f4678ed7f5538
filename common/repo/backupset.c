/* backupset.c - enumerate the backups of a repository. */
#include "repo/backupset.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

typedef struct {
    char **ids;
    size_t n, cap;
    char **all;
    size_t nall, capall;
} ids_state;

static void push(char ***arr, size_t *n, size_t *cap, const char *s, size_t len)
{
    for (size_t i = 0; i < *n; i++)
        if (strlen((*arr)[i]) == len && strncmp((*arr)[i], s, len) == 0)
            return;
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *arr = wv_xrealloc(*arr, *cap * sizeof(char *));
    }
    (*arr)[(*n)++] = wv_xstrndup(s, len);
}

static int ids_cb(void *arg, const char *key, const wv_stat *st)
{
    ids_state *s = arg;
    const char *id = key + strlen("backup/");
    const char *slash = strchr(id, '/');
    if (!slash)
        return 0;
    push(&s->all, &s->nall, &s->capall, id, (size_t)(slash - id));
    if (strcmp(slash + 1, WV_MANIFEST_NAME) == 0)
        push(&s->ids, &s->n, &s->cap, id, (size_t)(slash - id));
    return 0;
}

static int cmp_backup(const void *x, const void *y)
{
    const wv_backup *a = x, *b = y;
    if (a->h.stop_lsn != b->h.stop_lsn)
        return a->h.stop_lsn < b->h.stop_lsn ? -1 : 1;
    if (a->h.stop_time != b->h.stop_time)
        return a->h.stop_time < b->h.stop_time ? -1 : 1;
    return strcmp(a->h.id, b->h.id);
}

int wv_backupset_load(wv_storage *st, wv_backupset *out, wv_err *err)
{
    ids_state s = {0};
    memset(out, 0, sizeof(*out));
    int rc = wv_storage_list(st, "backup/", ids_cb, &s, err);
    if (rc == 0 && s.n)
        out->b = wv_xcalloc(s.n, sizeof(wv_backup));
    for (size_t i = 0; rc == 0 && i < s.n; i++) {
        wv_backup *b = &out->b[out->n];
        rc = wv_manifest_load(st, s.ids[i], &b->h, NULL, NULL, &b->totals, err);
        if (rc == WV_ENOTFOUND) { /* expired between list and read */
            wv_manifest_header_free(&b->h);
            memset(b, 0, sizeof(*b));
            rc = 0;
            continue;
        }
        if (rc != 0) {
            wv_manifest_header_free(&b->h);
            wv_err_prefix(err, "backup %s: ", s.ids[i]);
            break;
        }
        out->n++;
    }
    for (size_t i = 0; i < s.nall; i++) {
        int has = 0;
        for (size_t j = 0; j < s.n; j++)
            has |= strcmp(s.all[i], s.ids[j]) == 0;
        if (!has) {
            out->orphans = wv_xrealloc(out->orphans, (out->norphans + 1) * sizeof(char *));
            out->orphans[out->norphans++] = s.all[i];
        } else {
            free(s.all[i]);
        }
    }
    for (size_t i = 0; i < s.n; i++)
        free(s.ids[i]);
    free(s.ids);
    free(s.all);
    if (rc != 0) {
        wv_backupset_free(out);
        return rc;
    }
    qsort(out->b, out->n, sizeof(wv_backup), cmp_backup);
    return 0;
}

void wv_backupset_free(wv_backupset *set)
{
    for (size_t i = 0; i < set->n; i++)
        wv_manifest_header_free(&set->b[i].h);
    free(set->b);
    for (size_t i = 0; i < set->norphans; i++)
        free(set->orphans[i]);
    free(set->orphans);
    memset(set, 0, sizeof(*set));
}

const wv_backup *wv_backupset_find(const wv_backupset *set, const char *id)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->b[i].h.id, id) == 0)
            return &set->b[i];
    return NULL;
}
