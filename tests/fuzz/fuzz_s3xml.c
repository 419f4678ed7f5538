/*
 * fuzz_s3xml.c - what the S3 driver reads from a store's responses (common/storage/s3/sign.c):
 * ListObjectsV2 results, single elements (error Code and Message, UploadId), XML entities and
 * the two date formats.
 *
 * Input: u8 selector, then the response body (not NUL-terminated: an overread shows).
 * Invariants: a listing either fails with WV_EFORMAT and a one-line message or hands out entries
 * with a non-empty key; a truncated listing comes with a non-empty continuation token; element
 * text never extends past the document; unescaping inverts escaping (for every NUL-free text),
 * and escaping what unescapes gives text that unescapes to the same; a date that parses prints
 * (ISO 8601 or RFC 7231) and parses back to the same second.
 */
#include <time.h>

#include "core/buf.h"
#include "storage/s3/sign.h"
#include "fuzz.h"

static int list_cb(void *arg, const wv_s3_list_entry *e)
{
    size_t *n = arg;
    FZ_CHECK(e->key && e->key[0], "%s", "an entry without a key");
    (*n)++;
    return *n >= 1000 ? 1 : 0; /* a callback may stop the listing */
}

static void check_list(const char *xml, size_t len)
{
    size_t n = 0;
    int truncated = -1;
    wv_buf token = WV_BUF_INIT;
    wv_err err;
    int rc = wv_s3_parse_list(xml, len, list_cb, &n, &truncated, &token, &err);
    if (rc < 0) {
        fz_check_err(&err, rc);
        FZ_CHECK(rc == WV_EFORMAT, "code %d: %s", rc, err.msg);
    } else if (rc == 0) {
        FZ_CHECK(truncated == 0 || truncated == 1, "truncated %d", truncated);
        FZ_CHECK(!truncated || token.len > 0, "%s", "truncated without a token");
    } else {
        FZ_CHECK(rc == 1 && n == 1000, "rc %d after %zu entries", rc, n);
    }
    wv_buf_free(&token);
}

static void check_get(const char *xml, size_t len)
{
    static const char *const tags[] = {"Code", "Message", "UploadId", "Key", "Error"};
    wv_buf v = WV_BUF_INIT;
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        const char *from = NULL;
        for (int k = 0; k < 8; k++) {
            const char *next = wv_s3_xml_get(xml, len, from, tags[i], &v);
            if (!next)
                break;
            FZ_CHECK(next > xml && next <= xml + len && (!from || next > from), "%s",
                     "element end outside the document or not moving on");
            from = next;
        }
    }
    wv_buf_free(&v);
}

static void check_entities(const char *p, size_t n)
{
    wv_buf a = WV_BUF_INIT, b = WV_BUF_INIT, c = WV_BUF_INIT;
    /* unescape(escape(s)) == s for the NUL-free prefix */
    char *s = fz_strndup((const uint8_t *)p, n);
    wv_s3_xml_escape(&a, s);
    FZ_CHECK(wv_s3_xml_unescape(&b, (const char *)a.data, a.len) == 0, "%s",
             "escaped text does not unescape");
    FZ_CHECK(b.len == strlen(s) && (!b.len || memcmp(b.data, s, b.len) == 0), "%s",
             "unescape(escape(s)) != s");
    free(s);
    /* what unescapes, escaped again, unescapes to the same */
    wv_buf_reset(&b);
    if (wv_s3_xml_unescape(&b, p, n) == 0 && !memchr(wv_buf_cstr(&b), '\0', b.len)) {
        wv_buf_reset(&a);
        wv_s3_xml_escape(&a, wv_buf_cstr(&b));
        FZ_CHECK(wv_s3_xml_unescape(&c, (const char *)a.data, a.len) == 0 && c.len == b.len &&
                     (!c.len || memcmp(c.data, b.data, c.len) == 0),
                 "%s", "escape and unescape disagree");
    }
    wv_buf_free(&a);
    wv_buf_free(&b);
    wv_buf_free(&c);
}

static void check_dates(const uint8_t *p, size_t n)
{
    char *s = fz_strndup(p, n);
    int64_t t = 0, t2 = 0;
    char out[64];
    struct tm tm;
    if (wv_s3_parse_iso8601(s, &t) == 0) {
        time_t tt = (time_t)t;
        if (gmtime_r(&tt, &tm) && tm.tm_year >= 0 && tm.tm_year < 8000) {
            strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
            FZ_CHECK(wv_s3_parse_iso8601(out, &t2) == 0 && t2 == t, "\"%s\" -> %lld -> \"%s\"", s,
                     (long long)t, out);
        }
    }
    if (wv_s3_parse_http_date(s, &t) == 0) {
        time_t tt = (time_t)t;
        if (gmtime_r(&tt, &tm) && tm.tm_year >= 0 && tm.tm_year < 8000) {
            strftime(out, sizeof(out), "%a, %d %b %Y %H:%M:%S GMT", &tm);
            FZ_CHECK(wv_s3_parse_http_date(out, &t2) == 0 && t2 == t, "\"%s\" -> %lld -> \"%s\"", s,
                     (long long)t, out);
        }
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t sel = fz_u8(&in);
    /* an exact-size copy, so that reading one byte past the document is caught */
    char *doc = malloc(in.n ? in.n : 1);
    if (in.n)
        memcpy(doc, in.p, in.n);
    switch (sel % 4) {
    case 0:
        check_list(doc, in.n);
        break;
    case 1:
        check_get(doc, in.n);
        break;
    case 2:
        check_entities(doc, in.n);
        break;
    case 3:
        check_dates(in.p, in.n);
        break;
    }
    free(doc);
    return 0;
}
