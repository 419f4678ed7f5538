/*
 * xidrange.c - the "<segment key>.xid" object: format, strict parsing, storage.
 */
#include "repo/xidrange.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "repo/repo.h"

void wv_xidrange_format(const wv_xidrange *x, char *out, size_t outlen)
{
    snprintf(out, outlen, "%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\n", x->xmin, x->xmax, x->count);
}

/* One decimal number of 1..10 digits, at most UINT32_MAX, no sign, no leading zero but "0". */
static const char *parse_u32(const char *p, const char *end, uint32_t *out)
{
    uint64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9' && p - s < 11) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == s || p - s > 10 || v > UINT32_MAX || (*s == '0' && p - s > 1))
        return NULL;
    *out = (uint32_t)v;
    return p;
}

int wv_xidrange_parse(const char *data, size_t len, wv_xidrange *out, wv_err *err)
{
    const char *p = data, *end = data + len;
    wv_xidrange x;
    memset(out, 0, sizeof(*out));
    if (len > WV_XIDRANGE_TEXT_MAX)
        return wv_err_set(err, WV_ECORRUPT, "transaction id range is %zu bytes long (at most %d)",
                          len, WV_XIDRANGE_TEXT_MAX);
    if (!(p = parse_u32(p, end, &x.xmin)) || p == end || *p++ != '\t' ||
        !(p = parse_u32(p, end, &x.xmax)) || p == end || *p++ != '\t' ||
        !(p = parse_u32(p, end, &x.count)) || p == end || *p++ != '\n' || p != end)
        return wv_err_set(err, WV_ECORRUPT,
                          "transaction id range is not one line \"XMIN<tab>XMAX<tab>COUNT\"");
    if (x.count == 0)
        return wv_err_set(err, WV_ECORRUPT, "transaction id range counts no commit");
    if ((int32_t)(x.xmax - x.xmin) < 0)
        return wv_err_set(err, WV_ECORRUPT,
                          "transaction id range %" PRIu32 " .. %" PRIu32
                          " is reversed or spans 2^31 ids or more",
                          x.xmin, x.xmax);
    *out = x;
    return 0;
}

bool wv_xidrange_contains(const wv_xidrange *x, uint32_t xid)
{
    return (int32_t)(xid - x->xmin) >= 0 && (int32_t)(x->xmax - xid) >= 0;
}

bool wv_xidrange_is_name(const char *name)
{
    size_t n = strlen(name), sl = strlen(WV_REPO_XID_SUFFIX);
    return n > sl && strcmp(name + n - sl, WV_REPO_XID_SUFFIX) == 0;
}

void wv_xidrange_key(const char *segment_key, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s%s", segment_key, WV_REPO_XID_SUFFIX);
}

int wv_xidrange_put(wv_storage *st, const char *segment_key, const wv_xidrange *x, wv_err *err)
{
    char key[320], text[WV_XIDRANGE_TEXT_MAX + 1];
    wv_xidrange_key(segment_key, key, sizeof(key));
    wv_xidrange_format(x, text, sizeof(text));
    int rc = wv_repo_put_text(st, key, WV_PUT_NOREPLACE, text, strlen(text), err);
    if (rc == WV_EEXIST) {
        wv_err_clear(err);
        rc = 0;
    }
    return rc;
}

int wv_xidrange_get(wv_storage *st, const char *segment_key, wv_xidrange *out, wv_err *err)
{
    char key[320];
    wv_buf b = WV_BUF_INIT;
    wv_xidrange_key(segment_key, key, sizeof(key));
    memset(out, 0, sizeof(*out));
    int rc = wv_repo_get_text(st, key, WV_XIDRANGE_TEXT_MAX, &b, err);
    if (rc == 0 && (rc = wv_xidrange_parse((const char *)b.data, b.len, out, err)) != 0)
        wv_err_context(err, wv_storage_name(st), key);
    wv_buf_free(&b);
    return rc;
}
