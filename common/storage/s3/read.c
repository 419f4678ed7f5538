/*
 * storage/s3/read.c - the S3 driver's reads: the ranged GET source, HEAD (stat, and the NOREPLACE
 * check of write.c), and ListObjectsV2.
 *
 * Reads are sequential ranged GETs of WV_S3_READ_CHUNK bytes, each after the first pinned to the
 * first response's ETag with If-Match, so an object replaced mid-read is an error rather than a
 * mix of two objects. Memory is one chunk per open source.
 */
#include "storage/s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- HEAD ---- */

/* HEAD of the bucket: 0 if it exists (and remembered), else the mapped error. */
static int check_bucket(s3_storage *st, wv_err *err)
{
    if (__atomic_load_n(&st->bucket_ok, __ATOMIC_ACQUIRE))
        return 0;
    s3_req rq = {.method = "HEAD", .key = NULL, .ukey = ""};
    s3_resp rs = {0};
    int rc = wv__s3_request(st, &rq, &rs, err);
    if (rc == 0) {
        if (rs.status == 200) {
            __atomic_store_n(&st->bucket_ok, 1, __ATOMIC_RELEASE);
        } else if (rs.status == 404) {
            snprintf(rs.code, sizeof(rs.code), "NoSuchBucket");
            rc = wv__s3_status_error(st, &rq, &rs, err);
        } else {
            rc = wv__s3_status_error(st, &rq, &rs, err);
        }
    }
    wv__s3_resp_free(&rs);
    return rc;
}

int wv__s3_head(s3_storage *st, const char *fkey, const char *ukey, int *exists, wv_stat *out,
                wv_err *err)
{
    s3_req rq = {.method = "HEAD", .key = fkey, .ukey = ukey};
    s3_resp rs = {0};
    int rc = wv__s3_request(st, &rq, &rs, err);
    *exists = 0;
    if (rc != 0)
        goto out;
    if (rs.status == 200) {
        *exists = 1;
        if (out) {
            out->size = rs.content_length;
            out->mtime = 0;
            if (rs.last_modified[0])
                wv_s3_parse_http_date(rs.last_modified, &out->mtime);
        }
    } else if (rs.status == 404) {
        /* HEAD has no body: tell a missing key from a missing bucket */
        rc = check_bucket(st, err);
    } else {
        if (!rs.code[0] && rs.status >= 400 && rs.status < 500) {
            /* HEAD has no body: ask again with a GET of one byte to learn the error code (a
             * wrong secret and a missing permission need different hints) */
            s3_req g = {
                .method = "GET", .key = fkey, .ukey = ukey, .range = "bytes=0-0", .resp_max = 1};
            s3_resp gr = {0};
            wv_err ignored;
            wv_err_clear(&ignored);
            if (wv__s3_request(st, &g, &gr, &ignored) == 0 && gr.status == rs.status && gr.code[0])
                snprintf(rs.code, sizeof(rs.code), "%s", gr.code);
            wv__s3_resp_free(&gr);
        }
        rc = wv__s3_status_error(st, &rq, &rs, err);
    }
out:
    wv__s3_resp_free(&rs);
    return rc;
}

/* ---- the source ---- */

typedef struct s3_source {
    wv_source base;
    s3_storage *st;
    char *fkey;
    char *ukey;
    uint64_t next; /* absolute offset of the next byte to fetch */
    uint64_t end;  /* absolute end (exclusive) of what is wanted */
    wv_buf chunk;
    size_t pos;
    char etag[128];
} s3_source;

/* Parse "bytes S-E/T" ("*" for T allowed). */
static int parse_content_range(const char *s, uint64_t *start, uint64_t *last, int64_t *total)
{
    unsigned long long a, b;
    int n = 0;
    if (sscanf(s, "bytes %llu-%llu/%n", &a, &b, &n) != 2 || n == 0 || b < a)
        return -1;
    const char *t = s + n;
    if (strcmp(t, "*") == 0) {
        *total = -1;
    } else {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(t, &end, 10);
        if (errno || end == t || *end || x <= b)
            return -1;
        *total = (int64_t)x;
    }
    *start = a;
    *last = b;
    return 0;
}

/*
 * Fetch the next chunk. first: the opening request, which may be a suffix range ("bytes=-N").
 * Returns 0, or an error; on the first request WV_ENOTFOUND for a missing key.
 */
static int fetch_chunk(s3_source *src, int first, int64_t suffix, wv_err *err)
{
    s3_storage *st = src->st;
    char range[80];
    size_t want;
    if (first && suffix > 0) {
        want = (size_t)suffix;
        snprintf(range, sizeof(range), "bytes=-%lld", (long long)suffix);
    } else {
        uint64_t n = src->end - src->next;
        want = n < WV_S3_READ_CHUNK ? (size_t)n : WV_S3_READ_CHUNK;
        snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)src->next,
                 (unsigned long long)(src->next + want - 1));
    }
    s3_req rq = {.method = "GET",
                 .key = src->fkey,
                 .ukey = src->ukey,
                 .range = range,
                 .resp_max = want,
                 .if_match = (!first && src->etag[0]) ? src->etag : NULL};
    s3_resp rs = {0};
    int rc = wv__s3_request(st, &rq, &rs, err);
    if (rc)
        goto out;
    wv_buf_free(&src->chunk);
    src->pos = 0;
    if (rs.status == 206) {
        uint64_t a, b;
        int64_t total;
        if (parse_content_range(rs.content_range, &a, &b, &total) || rs.body.len != b - a + 1 ||
            (!(first && suffix > 0) && a != src->next)) {
            rc = wv_err_set(err, WV_EIO,
                            "%s: inconsistent range answer for \"%s\" in bucket "
                            "\"%s\" (asked %s, got \"%s\", %zu bytes)",
                            st->repo, src->ukey, st->bucket, range, rs.content_range, rs.body.len);
            goto out;
        }
        if (first) {
            snprintf(src->etag, sizeof(src->etag), "%s", rs.etag);
            if (suffix > 0) {
                src->end = b + 1;
            } else if (total >= 0 && (uint64_t)total < src->end) {
                src->end = (uint64_t)total;
            }
        }
        src->next = b + 1;
        src->chunk = rs.body;
        wv_buf_init(&rs.body);
    } else if (rs.status == 200) {
        /* the whole object: only acceptable as the first answer */
        if (!first) {
            rc = wv_err_set(err, WV_EIO, "%s: the store ignored the range of a read of \"%s\"",
                            st->repo, src->ukey);
            goto out;
        }
        snprintf(src->etag, sizeof(src->etag), "%s", rs.etag);
        uint64_t len = rs.body.len;
        uint64_t start = src->next;
        if (suffix > 0)
            start = len > (uint64_t)suffix ? len - (uint64_t)suffix : 0;
        if (start > len)
            start = len;
        uint64_t stop = src->end < len ? src->end : len;
        if (suffix > 0)
            stop = len;
        wv_buf_append(&src->chunk, rs.body.data + start, (size_t)(stop - start));
        src->next = src->end = stop;
    } else if (rs.status == 416) {
        /* the object exists but holds nothing in the range (an empty object, or the offset is
         * at or past its end) */
        src->end = src->next;
    } else if (rs.status == 412 && !first) {
        rc = wv_err_set(err, WV_ECORRUPT, "%s: \"%s\" in bucket \"%s\" changed while being read",
                        st->repo, src->ukey, st->bucket);
    } else if (rs.status == 404 && !rs.code[0]) {
        rc = wv_err_set(err, WV_EIO,
                        "%s: GET of \"%s\" in bucket \"%s\": HTTP 404 without an "
                        "error code",
                        st->repo, src->ukey, st->bucket);
    } else {
        rc = wv__s3_status_error(st, &rq, &rs, err);
    }
out:
    wv__s3_resp_free(&rs);
    return rc;
}

static int s3_source_read(wv_source *base, void *buf, size_t cap, size_t *got, wv_err *err)
{
    s3_source *src = (s3_source *)base;
    *got = 0;
    while (src->pos == src->chunk.len) {
        if (src->next >= src->end)
            return 0;
        int rc = fetch_chunk(src, 0, 0, err);
        if (rc)
            return rc == WV_ENOTFOUND
                       ? wv_err_set(err, WV_ECORRUPT,
                                    "%s: \"%s\" in bucket \"%s\" vanished while being read",
                                    src->st->repo, src->ukey, src->st->bucket)
                       : rc;
    }
    size_t n = src->chunk.len - src->pos;
    if (n > cap)
        n = cap;
    memcpy(buf, src->chunk.data + src->pos, n);
    src->pos += n;
    *got = n;
    return 0;
}

static void s3_source_close(wv_source *base)
{
    s3_source *src = (s3_source *)base;
    wv_buf_free(&src->chunk);
    free(src->fkey);
    free(src->ukey);
    free(src);
}

static const wv_source_ops s3_source_ops = {
    .read = s3_source_read,
    .close = s3_source_close,
};

int wv__s3_get_open(wv_storage *base, const char *key, int64_t offset, int64_t length,
                    wv_source **out, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    wv__s3_async_drain(st);
    s3_source *src = wv_xcalloc(1, sizeof(*src));
    int rc = 0;
    src->base.ops = &s3_source_ops;
    src->st = st;
    src->fkey = wv__s3_full_key(st, key);
    src->ukey = wv_xstrdup(key);

    if (offset < 0) {
        uint64_t n = (uint64_t)(-(offset + 1)) + 1;
        if (n <= WV_S3_READ_CHUNK) {
            rc = fetch_chunk(src, 1, (int64_t)n, err);
        } else {
            int exists;
            wv_stat sb;
            rc = wv__s3_head(st, src->fkey, src->ukey, &exists, &sb, err);
            if (rc == 0 && !exists)
                rc = wv_err_set(err, WV_ENOTFOUND, "%s: \"%s\" not found in bucket \"%s\"",
                                st->repo, key, st->bucket);
            if (rc == 0) {
                src->next = sb.size > n ? sb.size - n : 0;
                src->end = sb.size;
                if (src->end > src->next)
                    rc = fetch_chunk(src, 1, 0, err);
            }
        }
    } else if (length == 0) {
        int exists;
        rc = wv__s3_head(st, src->fkey, src->ukey, &exists, NULL, err);
        if (rc == 0 && !exists)
            rc = wv_err_set(err, WV_ENOTFOUND, "%s: \"%s\" not found in bucket \"%s\"", st->repo,
                            key, st->bucket);
        src->next = src->end = (uint64_t)offset;
    } else {
        src->next = (uint64_t)offset;
        src->end = length < 0 ? UINT64_MAX : (uint64_t)offset + (uint64_t)length;
        rc = fetch_chunk(src, 1, 0, err);
    }
    if (rc) {
        s3_source_close(&src->base);
        return rc;
    }
    *out = &src->base;
    return 0;
}

/* ---- stat and list ---- */

int wv__s3_stat(wv_storage *base, const char *key, wv_stat *out, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    wv__s3_async_drain(st);
    char *fkey = wv__s3_full_key(st, key);
    int exists;
    int rc = wv__s3_head(st, fkey, key, &exists, out, err);
    if (rc == 0 && !exists)
        rc = wv_err_set(err, WV_ENOTFOUND, "%s: \"%s\" not found in bucket \"%s\"", st->repo, key,
                        st->bucket);
    free(fkey);
    return rc;
}

typedef struct list_ctx {
    size_t strip;
    wv_list_cb cb;
    void *arg;
} list_ctx;

static int list_entry(void *arg, const wv_s3_list_entry *e)
{
    list_ctx *c = arg;
    if (strlen(e->key) <= c->strip)
        return 0; /* the prefix itself (a "directory marker"): not an object of ours */
    wv_stat sb = {.size = e->size, .mtime = e->mtime};
    return c->cb(c->arg, e->key + c->strip, &sb);
}

int wv__s3_list(wv_storage *base, const char *prefix, wv_list_cb cb, void *arg, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    wv__s3_async_drain(st);
    char *root = st->prefix[0] ? wv_xasprintf("%s/", st->prefix) : wv_xstrdup("");
    char *full = wv_xasprintf("%s%s", root, prefix);
    char maxkeys[16];
    wv_buf token = WV_BUF_INIT, next = WV_BUF_INIT;
    list_ctx ctx = {strlen(root), cb, arg};
    int rc = 0;
    snprintf(maxkeys, sizeof(maxkeys), "%d", st->list_max_keys);

    for (;;) {
        wv_s3_pair q[4] = {{"list-type", "2"}, {"prefix", full}, {"max-keys", maxkeys}};
        size_t nq = 3;
        if (token.len)
            q[nq++] = (wv_s3_pair){"continuation-token", wv_buf_cstr(&token)};
        s3_req rq = {.method = "GET",
                     .key = NULL,
                     .ukey = "",
                     .query = q,
                     .nquery = nq,
                     .resp_max = (size_t)16 << 20};
        s3_resp rs = {0};
        rc = wv__s3_request(st, &rq, &rs, err);
        if (rc == 0 && rs.status != 200)
            rc = wv__s3_status_error(st, &rq, &rs, err);
        int truncated = 0;
        if (rc == 0) {
            rc = wv_s3_parse_list((const char *)rs.body.data, rs.body.len, list_entry, &ctx,
                                  &truncated, &next, err);
            if (rc < 0 && err && err->code == rc && rc == WV_EFORMAT)
                wv_err_prefix(err, "%s: listing \"%s\" in bucket \"%s\": ", st->repo, prefix,
                              st->bucket);
        }
        wv__s3_resp_free(&rs);
        if (rc || !truncated)
            break;
        wv_buf_reset(&token);
        wv_buf_append(&token, next.data, next.len);
    }
    wv_buf_free(&token);
    wv_buf_free(&next);
    free(full);
    free(root);
    return rc;
}
