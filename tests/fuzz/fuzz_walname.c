/*
 * fuzz_walname.c - WAL file names, LSNs and timeline history files (common/pg/walname.c).
 *
 * Input: u8 selector, u8 segment size exponent, then text. Selector 0 parses the text as a WAL
 * file name, 1 as an LSN, 2 as a history file (raw bytes, not NUL-terminated: an overread shows).
 * Invariants: a name that parses is the exact spelling the formatters produce for its fields
 * (segment, partial, history, backup names round-trip), contains no '/' and is at most 40
 * characters; an LSN prints and parses back to the same value; a history file's entries have
 * increasing timelines and non-decreasing switch points, written out again parse to the same
 * entries, and wv_history_tli_at agrees with a direct reading of them; failures are one line.
 */
#include <inttypes.h>

#include "core/buf.h"
#include "pg/walname.h"
#include "fuzz.h"

static void check_name(const char *name, uint64_t segsize)
{
    wv_walname w;
    wv_walname_kind k = wv_walname_parse(name, &w);
    FZ_CHECK(strcmp(wv_walname_kind_name(k), "") != 0, "%s", "kind without a name");
    if (k == WV_WALNAME_INVALID) {
        wv_walname zero = {0};
        FZ_CHECK(memcmp(&w, &zero, sizeof(w)) == 0, "%s", "an invalid name leaves fields set");
        return;
    }
    FZ_CHECK(w.tli != 0, "%s", "timeline 0 accepted");
    FZ_CHECK(!strchr(name, '/') && strlen(name) <= 40, "unsafe name \"%s\" accepted", name);
    char out[64];
    switch (k) {
    case WV_WALNAME_HISTORY:
        wv_walname_format_history(w.tli, out);
        FZ_CHECK(strcmp(out, name) == 0, "\"%s\" formats as \"%s\"", name, out);
        FZ_CHECK(wv_walname_valid_for_segsize(&w, WV_WAL_SEGSIZE_DEFAULT), "%s", "history invalid");
        return;
    case WV_WALNAME_SEGMENT:
    case WV_WALNAME_PARTIAL:
    case WV_WALNAME_BACKUP:
        break;
    default:
        FZ_CHECK(0, "kind %d", (int)k);
    }
    if (!wv_walname_valid_for_segsize(&w, segsize))
        return;
    uint64_t segno = wv_walname_segno(&w, segsize);
    FZ_CHECK(wv_lsn_to_segno(wv_segno_to_lsn(segno, segsize), segsize) == segno, "%s",
             "segment number and LSN do not round-trip");
    if (k == WV_WALNAME_BACKUP) {
        wv_walname_format_backup(w.tli, wv_segno_to_lsn(segno, segsize) + w.backup_offset, segsize,
                                 out);
    } else {
        wv_walname_format_segment(w.tli, segno, segsize, out);
        if (k == WV_WALNAME_PARTIAL)
            strcat(out, ".partial");
    }
    FZ_CHECK(strcmp(out, name) == 0, "\"%s\" formats as \"%s\" (segsize %" PRIu64 ")", name, out,
             segsize);
}

static void check_lsn(const char *s)
{
    uint64_t v = 0x5a5a5a5a5a5a5a5aull, v2 = 0;
    char out[WV_LSN_LEN];
    if (wv_lsn_parse(s, &v) != 0) {
        FZ_CHECK(v == 0x5a5a5a5a5a5a5a5aull, "%s", "a failed parse wrote its result");
        return;
    }
    FZ_CHECK(strlen(s) <= 17 && strchr(s, '/'), "\"%s\" parsed as an LSN", s);
    wv_lsn_format(v, out);
    FZ_CHECK(wv_lsn_parse(out, &v2) == 0 && v2 == v, "\"%s\" -> \"%s\" does not parse back", s,
             out);
}

static void check_history(const uint8_t *p, size_t n)
{
    wv_history_entry *e = NULL, *e2 = NULL;
    size_t count = 0, count2 = 0;
    wv_err err;
    /* an exact-size copy, so that reading one byte past the text is caught */
    char *text = malloc(n ? n : 1);
    if (n)
        memcpy(text, p, n);
    int rc = wv_history_parse(text, n, &e, &count, &err);
    free(text);
    if (rc < 0) {
        fz_check_err(&err, rc);
        FZ_CHECK(rc == WV_ECORRUPT, "code %d", rc);
        FZ_CHECK(strncmp(err.msg, "line ", 5) == 0, "message does not name the line: %s", err.msg);
        return;
    }
    FZ_CHECK((count == 0) == (e == NULL), "%zu entries at %p", count, (void *)e);
    wv_buf b = WV_BUF_INIT;
    for (size_t i = 0; i < count; i++) {
        FZ_CHECK(e[i].tli > 0, "%s", "timeline 0");
        FZ_CHECK(i == 0 || (e[i].tli > e[i - 1].tli && e[i].switch_lsn >= e[i - 1].switch_lsn),
                 "entry %zu out of order", i);
        char lsn[WV_LSN_LEN];
        wv_lsn_format(e[i].switch_lsn, lsn);
        wv_buf_printf(&b, "%" PRIu32 "\t%s\tno recovery target specified\n", e[i].tli, lsn);
    }
    rc = wv_history_parse(b.len ? (const char *)b.data : "", b.len, &e2, &count2, &err);
    FZ_CHECK(rc == 0 && count2 == count, "written again: %d, %zu entries (%s)", rc, count2,
             rc ? err.msg : "");
    for (size_t i = 0; i < count; i++)
        FZ_CHECK(e[i].tli == e2[i].tli && e[i].switch_lsn == e2[i].switch_lsn,
                 "entry %zu changes when written again", i);
    /* the timeline of a few LSNs around each switch point */
    uint32_t target = count ? e[count - 1].tli + 1 : 1;
    for (size_t i = 0; i < count; i++) {
        uint64_t l = e[i].switch_lsn;
        uint64_t probes[] = {l, l - 1, l + 1};
        for (int k = 0; k < 3; k++) {
            uint32_t want = target;
            for (size_t j = 0; j < count; j++)
                if (probes[k] < e[j].switch_lsn) {
                    want = e[j].tli;
                    break;
                }
            FZ_CHECK(wv_history_tli_at(e, count, target, probes[k]) == want, "%s",
                     "wv_history_tli_at disagrees");
        }
    }
    wv_buf_free(&b);
    free(e);
    free(e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t sel = fz_u8(&in);
    uint64_t segsize = UINT64_C(1) << (20 + fz_u8(&in) % 11); /* 1 MiB .. 1 GiB */
    switch (sel % 3) {
    case 0: {
        char *s = fz_strndup(in.p, in.n);
        check_name(s, segsize);
        free(s);
        break;
    }
    case 1: {
        char *s = fz_strndup(in.p, in.n);
        check_lsn(s);
        free(s);
        break;
    }
    case 2:
        check_history(in.p, in.n);
        break;
    }
    return 0;
}
