/* walname.c - WAL file names, segment and LSN arithmetic, timeline history files. */
#include "pg/walname.h"

#include "core/buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* n uppercase hexadecimal digits -> *out. */
static bool hex_upper(const char *s, int n, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            v = (v << 4) | (uint32_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            v = (v << 4) | (uint32_t)(c - 'A' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

wv_walname_kind wv_walname_parse(const char *name, wv_walname *out)
{
    wv_walname w = {0};
    size_t len = name ? strlen(name) : 0;

    if (len == 16 && strcmp(name + 8, ".history") == 0 && hex_upper(name, 8, &w.tli)) {
        w.kind = WV_WALNAME_HISTORY;
    } else if (len >= 24 && hex_upper(name, 8, &w.tli) && hex_upper(name + 8, 8, &w.log) &&
               hex_upper(name + 16, 8, &w.seg)) {
        const char *rest = name + 24;
        if (*rest == '\0')
            w.kind = WV_WALNAME_SEGMENT;
        else if (strcmp(rest, ".partial") == 0)
            w.kind = WV_WALNAME_PARTIAL;
        else if (len == 40 && rest[0] == '.' && hex_upper(rest + 1, 8, &w.backup_offset) &&
                 strcmp(rest + 9, ".backup") == 0)
            w.kind = WV_WALNAME_BACKUP;
    }
    if (w.tli == 0)
        w.kind = WV_WALNAME_INVALID;
    if (w.kind == WV_WALNAME_INVALID)
        memset(&w, 0, sizeof(w));
    if (out)
        *out = w;
    return w.kind;
}

const char *wv_walname_kind_name(wv_walname_kind kind)
{
    switch (kind) {
    case WV_WALNAME_SEGMENT:
        return "segment";
    case WV_WALNAME_PARTIAL:
        return "partial";
    case WV_WALNAME_HISTORY:
        return "history";
    case WV_WALNAME_BACKUP:
        return "backup";
    case WV_WALNAME_INVALID:
        break;
    }
    return "invalid";
}

bool wv_wal_segsize_valid(uint64_t segsize)
{
    return segsize >= WV_WAL_SEGSIZE_MIN && segsize <= WV_WAL_SEGSIZE_MAX &&
           (segsize & (segsize - 1)) == 0;
}

uint64_t wv_wal_segs_per_log(uint64_t segsize)
{
    return UINT64_C(0x100000000) / segsize;
}

bool wv_walname_valid_for_segsize(const wv_walname *w, uint64_t segsize)
{
    if (!w || w->kind == WV_WALNAME_INVALID || !wv_wal_segsize_valid(segsize))
        return false;
    if (w->kind == WV_WALNAME_HISTORY)
        return true;
    if (w->seg >= wv_wal_segs_per_log(segsize))
        return false;
    if (w->kind == WV_WALNAME_BACKUP && w->backup_offset >= segsize)
        return false;
    return true;
}

uint64_t wv_walname_segno(const wv_walname *w, uint64_t segsize)
{
    return (uint64_t)w->log * wv_wal_segs_per_log(segsize) + w->seg;
}

void wv_walname_format_segment(uint32_t tli, uint64_t segno, uint64_t segsize,
                               char out[WV_WALNAME_SEGMENT_LEN])
{
    uint64_t per = wv_wal_segs_per_log(segsize);
    snprintf(out, WV_WALNAME_SEGMENT_LEN, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli,
             (uint32_t)(segno / per), (uint32_t)(segno % per));
}

void wv_walname_format_history(uint32_t tli, char out[WV_WALNAME_HISTORY_LEN])
{
    snprintf(out, WV_WALNAME_HISTORY_LEN, "%08" PRIX32 ".history", tli);
}

void wv_walname_format_backup(uint32_t tli, uint64_t start_lsn, uint64_t segsize,
                              char out[WV_WALNAME_BACKUP_LEN])
{
    char seg[WV_WALNAME_SEGMENT_LEN];
    wv_walname_format_segment(tli, wv_lsn_to_segno(start_lsn, segsize), segsize, seg);
    snprintf(out, WV_WALNAME_BACKUP_LEN, "%s.%08" PRIX32 ".backup", seg,
             (uint32_t)(start_lsn % segsize));
}

/* 1..8 hex digits of either case, stopping at `stop`; returns the end or NULL. */
static const char *lsn_half(const char *s, char stop, uint32_t *out)
{
    uint32_t v = 0;
    int n = 0;
    for (; *s != stop; s++, n++) {
        char c = *s;
        if (n == 8)
            return NULL;
        if (c >= '0' && c <= '9')
            v = (v << 4) | (uint32_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            v = (v << 4) | (uint32_t)(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            v = (v << 4) | (uint32_t)(c - 'a' + 10);
        else
            return NULL;
    }
    if (n == 0)
        return NULL;
    *out = v;
    return s;
}

int wv_lsn_parse(const char *s, uint64_t *out)
{
    uint32_t hi, lo;
    const char *p;
    if (!s || !(p = lsn_half(s, '/', &hi)) || !lsn_half(p + 1, '\0', &lo))
        return WV_EUSAGE;
    *out = ((uint64_t)hi << 32) | lo;
    return 0;
}

void wv_lsn_format(uint64_t lsn, char out[WV_LSN_LEN])
{
    snprintf(out, WV_LSN_LEN, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

uint64_t wv_lsn_to_segno(uint64_t lsn, uint64_t segsize)
{
    return lsn / segsize;
}

uint64_t wv_segno_to_lsn(uint64_t segno, uint64_t segsize)
{
    return segno * segsize;
}

/* Show at most 40 characters of a bad line, control characters as '?'. */
static void excerpt(const char *s, size_t n, char out[48])
{
    size_t i, k = 0;
    for (i = 0; i < n && k < 40; i++)
        out[k++] = ((unsigned char)s[i] < ' ' && s[i] != '\t') || s[i] == 0x7f ? '?' : s[i];
    if (i < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

int wv_history_parse(const char *text, size_t len, wv_history_entry **out, size_t *n, wv_err *err)
{
    wv_history_entry *v = NULL;
    size_t count = 0, cap = 0;
    size_t pos = 0;
    int lineno = 0;

    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - line) : len - pos;
        pos += llen + (nl ? 1 : 0);
        lineno++;

        size_t i = 0;
        while (i < llen && (line[i] == ' ' || line[i] == '\t'))
            i++;
        size_t end = llen;
        while (end > i && (line[end - 1] == '\r' || line[end - 1] == ' ' || line[end - 1] == '\t'))
            end--;
        if (i == end || line[i] == '#')
            continue;

        /* parentTLI: decimal, 1..4294967295 */
        uint64_t tli = 0;
        size_t d = i;
        while (d < end && line[d] >= '0' && line[d] <= '9' && d - i < 10)
            tli = tli * 10 + (uint64_t)(line[d++] - '0');
        bool ok =
            d > i && tli > 0 && tli <= UINT32_MAX && d < end && (line[d] == '\t' || line[d] == ' ');
        /* switchpoint */
        uint64_t lsn = 0;
        if (ok) {
            while (d < end && (line[d] == '\t' || line[d] == ' '))
                d++;
            size_t l0 = d;
            while (d < end && line[d] != '\t' && line[d] != ' ')
                d++;
            char buf[24];
            ok = d - l0 < sizeof(buf);
            if (ok) {
                memcpy(buf, line + l0, d - l0);
                buf[d - l0] = '\0';
                ok = wv_lsn_parse(buf, &lsn) == 0;
            }
            /* the rest is the free-text reason */
        }
        if (!ok) {
            char ex[48];
            excerpt(line, llen, ex);
            free(v);
            return wv_err_set(err, WV_ECORRUPT,
                              "line %d: bad timeline history entry \"%s\": expected "
                              "\"TLI<tab>LSN<tab>reason\"",
                              lineno, ex);
        }
        if (count > 0 && tli <= v[count - 1].tli) {
            uint32_t prev = v[count - 1].tli;
            free(v);
            return wv_err_set(err, WV_ECORRUPT,
                              "line %d: timeline %" PRIu64 " does not follow timeline %" PRIu32
                              ": timeline IDs must increase",
                              lineno, tli, prev);
        }
        if (count > 0 && lsn < v[count - 1].switch_lsn) {
            char a[WV_LSN_LEN], b[WV_LSN_LEN];
            wv_lsn_format(lsn, a);
            wv_lsn_format(v[count - 1].switch_lsn, b);
            free(v);
            return wv_err_set(err, WV_ECORRUPT,
                              "line %d: switch point %s is before the previous one, %s", lineno, a,
                              b);
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            v = wv_xrealloc(v, cap * sizeof(*v));
        }
        v[count].tli = (uint32_t)tli;
        v[count].switch_lsn = lsn;
        count++;
    }
    *out = v;
    *n = count;
    return 0;
}

uint32_t wv_history_tli_at(const wv_history_entry *entries, size_t n, uint32_t target_tli,
                           uint64_t lsn)
{
    for (size_t i = 0; i < n; i++)
        if (lsn < entries[i].switch_lsn)
            return entries[i].tli;
    return target_tli;
}
