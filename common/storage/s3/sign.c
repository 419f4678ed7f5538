/*
 * storage/s3/sign.c - SigV4, URI encoding, XML helpers and the part-size schedule for the S3 driver.
 *
 * Signing follows "Authenticating Requests (AWS Signature Version 4)" for S3: the canonical URI is
 * the path encoded once with '/' kept (S3 does not normalise paths), the canonical query string has
 * every name and value encoded and is sorted by name then value, header names are lowercased and
 * their values trimmed with inner runs of spaces collapsed, headers with the same name are joined
 * with ',' in the order given.
 */
#include "storage/s3/sign.h"

#include "core/bytes.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

void wv_s3_base64(const uint8_t *bin, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, bin, (int)n);
}

void wv_s3_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    wv_hex_encode(md, 32, out);
}

void wv_s3_md5(const void *data, size_t len, uint8_t out[16])
{
    unsigned int mdlen = 0;
    EVP_Digest(data, len, out, &mdlen, EVP_md5(), NULL);
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void wv_s3_uri_encode(wv_buf *out, const char *src, int keep_slash)
{
    static const char hx[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        if (is_unreserved(*p) || (keep_slash && *p == '/')) {
            wv_buf_append(out, p, 1);
        } else {
            char e[3] = {'%', hx[*p >> 4], hx[*p & 15]};
            wv_buf_append(out, e, 3);
        }
    }
}

typedef struct enc_pair {
    char *name;
    char *value;
} enc_pair;

static int enc_pair_cmp(const void *a, const void *b)
{
    const enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static char *encode_dup(const char *s, int keep_slash)
{
    wv_buf b = WV_BUF_INIT;
    wv_s3_uri_encode(&b, s ? s : "", keep_slash);
    char *r = wv_xstrdup(wv_buf_cstr(&b));
    wv_buf_free(&b);
    return r;
}

void wv_s3_canonical_query(wv_buf *out, const wv_s3_pair *q, size_t n)
{
    if (n == 0)
        return;
    enc_pair *e = wv_xcalloc(n, sizeof(*e));
    for (size_t i = 0; i < n; i++) {
        e[i].name = encode_dup(q[i].name, 0);
        e[i].value = encode_dup(q[i].value, 0);
    }
    qsort(e, n, sizeof(*e), enc_pair_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            wv_buf_append(out, "&", 1);
        wv_buf_printf(out, "%s=%s", e[i].name, e[i].value);
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
}

typedef struct canon_header {
    char *name;  /* lowercased */
    char *value; /* trimmed, spaces collapsed */
    size_t order;
} canon_header;

static int canon_header_cmp(const void *a, const void *b)
{
    const canon_header *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static char *canon_value(const char *v)
{
    wv_buf b = WV_BUF_INIT;
    int pending_space = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') {
            pending_space = 1;
            continue;
        }
        if (pending_space && b.len)
            wv_buf_append(&b, " ", 1);
        pending_space = 0;
        wv_buf_append(&b, v, 1);
    }
    char *r = wv_xstrdup(wv_buf_cstr(&b));
    wv_buf_free(&b);
    return r;
}

static int hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) || olen != 32)
        return -1;
    return 0;
}

int wv_s3_sign(const wv_s3_sign_input *in, wv_buf *authz, wv_buf *creq_out, wv_buf *sts_out,
               wv_err *err)
{
    wv_buf creq = WV_BUF_INIT, sts = WV_BUF_INIT, signed_names = WV_BUF_INIT, kbuf = WV_BUF_INIT;
    canon_header *h = wv_xcalloc(in->nheaders ? in->nheaders : 1, sizeof(*h));
    int rc = 0;
    char date[9];

    memcpy(date, in->amz_date, 8);
    date[8] = '\0';

    for (size_t i = 0; i < in->nheaders; i++) {
        h[i].name = wv_xstrdup(in->headers[i].name);
        for (char *p = h[i].name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        h[i].value = canon_value(in->headers[i].value ? in->headers[i].value : "");
        h[i].order = i;
    }
    qsort(h, in->nheaders, sizeof(*h), canon_header_cmp);

    /* CanonicalRequest */
    wv_buf_printf(&creq, "%s\n", in->method);
    wv_s3_uri_encode(&creq, in->path, 1);
    wv_buf_append(&creq, "\n", 1);
    wv_s3_canonical_query(&creq, in->query, in->nquery);
    wv_buf_append(&creq, "\n", 1);
    for (size_t i = 0; i < in->nheaders; i++) {
        if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0) {
            wv_buf_printf(&creq, ",%s", h[i].value);
            continue;
        }
        if (i > 0)
            wv_buf_append(&creq, "\n", 1);
        wv_buf_printf(&creq, "%s:%s", h[i].name, h[i].value);
        if (signed_names.len)
            wv_buf_append(&signed_names, ";", 1);
        wv_buf_append_str(&signed_names, h[i].name);
    }
    wv_buf_append(&creq, "\n\n", 2);
    wv_buf_printf(&creq, "%s\n%s", wv_buf_cstr(&signed_names), in->payload_sha256);

    /* StringToSign */
    char creq_hash[65];
    wv_s3_sha256_hex(creq.data, creq.len, creq_hash);
    wv_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", in->amz_date, date,
                  in->region, in->service, creq_hash);

    /* SigningKey = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
     */
    uint8_t k[32], sig[32];
    wv_buf_printf(&kbuf, "AWS4%s", in->secret_access_key);
    if (hmac_sha256(kbuf.data, kbuf.len, date, strlen(date), k) ||
        hmac_sha256(k, 32, in->region, strlen(in->region), k) ||
        hmac_sha256(k, 32, in->service, strlen(in->service), k) ||
        hmac_sha256(k, 32, "aws4_request", 12, k) || hmac_sha256(k, 32, sts.data, sts.len, sig)) {
        rc = wv_err_set(err, WV_EINTERNAL, "could not compute the request signature (openssl)");
        goto out;
    }
    char sighex[65];
    wv_hex_encode(sig, 32, sighex);
    wv_buf_printf(authz,
                  "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                  "Signature=%s",
                  in->access_key_id, date, in->region, in->service, wv_buf_cstr(&signed_names),
                  sighex);
    if (creq_out)
        wv_buf_append(creq_out, creq.data, creq.len);
    if (sts_out)
        wv_buf_append(sts_out, sts.data, sts.len);
out:
    /* the derived key material is as sensitive as the secret */
    if (kbuf.data)
        memset(kbuf.data, 0, kbuf.cap);
    memset(k, 0, sizeof(k));
    for (size_t i = 0; i < in->nheaders; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
    wv_buf_free(&kbuf);
    wv_buf_free(&creq);
    wv_buf_free(&sts);
    wv_buf_free(&signed_names);
    return rc;
}

void wv_s3_amz_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

uint64_t wv_s3_part_size(unsigned n)
{
    if (n < 1 || n > WV_S3_MAX_PARTS)
        return 0;
    unsigned step = (n - 1) / WV_S3_PARTS_PER_STEP;
    return WV_S3_BASE_PART_SIZE << step;
}

uint64_t wv_s3_parts_capacity(unsigned n)
{
    uint64_t sum = 0;
    for (unsigned i = 1; i <= n && i <= WV_S3_MAX_PARTS; i++)
        sum += wv_s3_part_size(i);
    return sum;
}

/* ---- XML ---- */

int wv_s3_xml_unescape(wv_buf *out, const char *s, size_t n)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    size_t i = 0;
    /* No XML document holds a NUL character, raw or as &#0;: a key cut at one would name
     * another object. */
    if (n && memchr(s, '\0', n))
        return -1;
    while (i < n) {
        if (s[i] != '&') {
            size_t j = i;
            while (j < n && s[j] != '&')
                j++;
            wv_buf_append(out, s + i, j - i);
            i = j;
            continue;
        }
        const char *semi = memchr(s + i, ';', n - i);
        if (!semi)
            return -1;
        size_t elen = (size_t)(semi - (s + i)) - 1; /* between '&' and ';' */
        const char *e = s + i + 1;
        int done = 0;
        for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
            if (strlen(ents[k].name) == elen && memcmp(ents[k].name, e, elen) == 0) {
                wv_buf_append(out, &ents[k].c, 1);
                done = 1;
                break;
            }
        }
        if (!done) {
            if (elen < 2 || e[0] != '#')
                return -1;
            unsigned long cp = 0;
            int hex = (e[1] == 'x' || e[1] == 'X');
            size_t d = hex ? 2 : 1;
            if (d >= elen)
                return -1;
            for (; d < elen; d++) {
                int c = (unsigned char)e[d], v;
                if (c >= '0' && c <= '9')
                    v = c - '0';
                else if (hex && c >= 'a' && c <= 'f')
                    v = c - 'a' + 10;
                else if (hex && c >= 'A' && c <= 'F')
                    v = c - 'A' + 10;
                else
                    return -1;
                cp = cp * (hex ? 16 : 10) + (unsigned long)v;
                if (cp > 0x10FFFF)
                    return -1;
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                return -1;
            /* UTF-8 */
            unsigned char u[4];
            size_t ul;
            if (cp < 0x80) {
                u[0] = (unsigned char)cp;
                ul = 1;
            } else if (cp < 0x800) {
                u[0] = (unsigned char)(0xC0 | (cp >> 6));
                u[1] = (unsigned char)(0x80 | (cp & 0x3F));
                ul = 2;
            } else if (cp < 0x10000) {
                u[0] = (unsigned char)(0xE0 | (cp >> 12));
                u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (unsigned char)(0x80 | (cp & 0x3F));
                ul = 3;
            } else {
                u[0] = (unsigned char)(0xF0 | (cp >> 18));
                u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                u[3] = (unsigned char)(0x80 | (cp & 0x3F));
                ul = 4;
            }
            wv_buf_append(out, u, ul);
        }
        i = (size_t)(semi - s) + 1;
    }
    return 0;
}

void wv_s3_xml_escape(wv_buf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            wv_buf_append_str(out, "&amp;");
            break;
        case '<':
            wv_buf_append_str(out, "&lt;");
            break;
        case '>':
            wv_buf_append_str(out, "&gt;");
            break;
        case '"':
            wv_buf_append_str(out, "&quot;");
            break;
        case '\'':
            wv_buf_append_str(out, "&apos;");
            break;
        default:
            wv_buf_append(out, s, 1);
        }
    }
}

/* Find "<tag>" or "<tag attr...>" at or after p; returns the position after '>' or NULL. A
 * self-closing "<tag/>" yields an empty element: *empty is set. */
static const char *find_open(const char *p, const char *end, const char *tag, int *empty)
{
    size_t tl = strlen(tag);
    *empty = 0;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt || (size_t)(end - lt) < tl + 2)
            return NULL;
        if (memcmp(lt + 1, tag, tl) == 0) {
            char c = lt[1 + tl];
            if (c == '>' || c == ' ' || c == '/' || c == '\t' || c == '\n' || c == '\r') {
                const char *gt = memchr(lt, '>', (size_t)(end - lt));
                if (!gt)
                    return NULL;
                if (gt[-1] == '/')
                    *empty = 1;
                return gt + 1;
            }
        }
        p = lt + 1;
    }
    return NULL;
}

static const char *find_close(const char *p, const char *end, const char *tag)
{
    size_t tl = strlen(tag);
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt || (size_t)(end - lt) < tl + 3)
            return NULL;
        if (lt[1] == '/' && memcmp(lt + 2, tag, tl) == 0 && lt[2 + tl] == '>')
            return lt;
        p = lt + 1;
    }
    return NULL;
}

const char *wv_s3_xml_get(const char *xml, size_t len, const char *from, const char *tag,
                          wv_buf *out)
{
    const char *end = xml + len;
    int empty;
    const char *start = find_open(from ? from : xml, end, tag, &empty);
    if (!start)
        return NULL;
    wv_buf_reset(out);
    if (empty) {
        wv_buf_cstr(out);
        return start;
    }
    const char *close = find_close(start, end, tag);
    if (!close)
        return NULL;
    if (wv_s3_xml_unescape(out, start, (size_t)(close - start)) < 0)
        return NULL;
    wv_buf_cstr(out);
    return close + strlen(tag) + 3;
}

const char *wv_s3_xml_element(const char *xml, size_t len, const char *from, const char *tag,
                              const char **inner, size_t *inner_len)
{
    const char *end = xml + len;
    int empty;
    const char *start = find_open(from ? from : xml, end, tag, &empty);
    if (!start)
        return NULL;
    *inner = start;
    *inner_len = 0;
    if (empty)
        return start;
    const char *close = find_close(start, end, tag);
    if (!close)
        return NULL;
    *inner_len = (size_t)(close - start);
    return close + strlen(tag) + 3;
}

static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

int wv_s3_parse_iso8601(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int wv_s3_parse_http_date(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!p || *p)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int wv_s3_parse_list(const char *xml, size_t len, wv_s3_list_fn fn, void *arg, int *truncated,
                     wv_buf *next_token, wv_err *err)
{
    const char *end = xml + len;
    wv_buf v = WV_BUF_INIT, contents = WV_BUF_INIT, key = WV_BUF_INIT;
    int rc = 0, empty;

    *truncated = 0;
    wv_buf_reset(next_token);
    const char *body = find_open(xml, end, "ListBucketResult", &empty);
    const char *body_end = body ? find_close(body, end, "ListBucketResult") : NULL;
    if (!body || !body_end) {
        rc = wv_err_set(err, WV_EFORMAT, "unexpected listing response: no ListBucketResult");
        goto out;
    }

    /* The entries first; IsTruncated and the token are siblings of <Contents>, searched outside
     * them so that a key spelled like a tag cannot confuse the reader (keys are escaped anyway). */
    const char *p = body;
    const char *outside_start = body;
    wv_buf outside = WV_BUF_INIT;
    for (;;) {
        const char *cstart = find_open(p, body_end, "Contents", &empty);
        if (!cstart)
            break;
        const char *cend = empty ? cstart : find_close(cstart, body_end, "Contents");
        if (!cend) {
            wv_buf_free(&outside);
            rc = wv_err_set(err, WV_EFORMAT, "unexpected listing response: unterminated Contents");
            goto out;
        }
        /* keep what lies between entries */
        const char *lt = cstart - 1;
        while (lt > outside_start && *lt != '<')
            lt--;
        wv_buf_append(&outside, outside_start, (size_t)(lt - outside_start));
        outside_start = empty ? cstart : cend + strlen("</Contents>");
        p = outside_start;

        size_t clen = (size_t)(cend - cstart);
        wv_s3_list_entry e;
        uint64_t size;
        if (!wv_s3_xml_get(cstart, clen, NULL, "Key", &key) || key.len == 0) {
            wv_buf_free(&outside);
            rc = wv_err_set(err, WV_EFORMAT, "unexpected listing response: an entry without Key");
            goto out;
        }
        if (!wv_s3_xml_get(cstart, clen, NULL, "Size", &v) || parse_u64(wv_buf_cstr(&v), &size)) {
            wv_buf_free(&outside);
            rc = wv_err_set(err, WV_EFORMAT, "unexpected listing response: bad Size for \"%s\"",
                            wv_buf_cstr(&key));
            goto out;
        }
        e.key = wv_buf_cstr(&key);
        e.size = size;
        e.mtime = 0;
        if (wv_s3_xml_get(cstart, clen, NULL, "LastModified", &v) &&
            wv_s3_parse_iso8601(wv_buf_cstr(&v), &e.mtime)) {
            wv_buf_free(&outside);
            rc = wv_err_set(err, WV_EFORMAT,
                            "unexpected listing response: bad LastModified for \"%s\"", e.key);
            goto out;
        }
        rc = fn(arg, &e);
        if (rc)
            break;
    }
    if (rc) {
        wv_buf_free(&outside);
        goto out;
    }
    wv_buf_append(&outside, outside_start, (size_t)(body_end - outside_start));

    /* wv_buf_cstr: outside.data is NULL when nothing lies outside the entries */
    if (wv_s3_xml_get(wv_buf_cstr(&outside), outside.len, NULL, "IsTruncated", &v))
        *truncated = strcmp(wv_buf_cstr(&v), "true") == 0;
    if (*truncated && (!wv_s3_xml_get(wv_buf_cstr(&outside), outside.len, NULL,
                                      "NextContinuationToken", next_token) ||
                       next_token->len == 0)) {
        wv_buf_free(&outside);
        rc = wv_err_set(err, WV_EFORMAT,
                        "unexpected listing response: truncated without NextContinuationToken");
        goto out;
    }
    wv_buf_free(&outside);
out:
    wv_buf_free(&v);
    wv_buf_free(&contents);
    wv_buf_free(&key);
    return rc;
}
