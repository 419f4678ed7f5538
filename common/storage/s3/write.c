/*
 * storage/s3/write.c - the S3 driver's sink: one PutObject for objects smaller than one part,
 * else a multipart upload, and the uploads in flight of WV_PUT_NOSYNC commits.
 *
 * A multipart upload has up to WV_S3_PARTS_IN_FLIGHT parts uploading at once, each on a plain
 * thread that owns its part's buffer, so memory is bounded by that many parts plus the one being
 * filled. Part sizes follow wv_s3_part_size(): 8 MiB, doubling every 1000 parts, so 10,000 parts
 * hold more than 5 TiB while objects below ~7.8 GiB keep 8 MiB parts. Every PUT carries
 * Content-MD5 and x-amz-content-sha256 of its payload, so the store verifies what it received;
 * commit also checks the ETag of a single PUT (and of every part) against the MD5 we computed.
 */
#include "storage/s3/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

/* ---- the sink ---- */

typedef struct part_job {
    struct s3_sink *sink;
    unsigned number;
    wv_buf data;
    char etag[128];
    int active;
    pthread_t thread;
    int rc;
    wv_err err;
} part_job;

typedef struct s3_sink {
    wv_sink base;
    s3_storage *st;
    char *fkey;
    char *ukey;
    unsigned flags;
    int existed;    /* NOREPLACE and the key existed at put_open: writes are discarded */
    wv_buf buf;     /* the part being filled (or the whole object while it fits one part) */
    unsigned parts; /* parts handed to jobs */
    uint64_t total;
    char *upload_id;
    char **etags; /* etags[i] for part i + 1 */
    size_t etags_cap;
    part_job jobs[WV_S3_PARTS_IN_FLIGHT];
    int failed;
    wv_err first_err;
    struct s3_sink *next; /* in the storage's async queue */
} s3_sink;

static int etag_matches(const char *etag, const uint8_t md5[16])
{
    char hex[33];
    wv_hex_encode(md5, 16, hex);
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
        return n - 2 == 32 && strncasecmp(etag + 1, hex, 32) == 0;
    return strcasecmp(etag, hex) == 0;
}

static void *part_thread(void *arg)
{
    part_job *j = arg;
    s3_sink *s = j->sink;
    s3_storage *st = s->st;
    char num[16];
    snprintf(num, sizeof(num), "%u", j->number);
    wv_s3_pair q[] = {{"partNumber", num}, {"uploadId", s->upload_id}};
    s3_req rq = {.method = "PUT",
                 .key = s->fkey,
                 .ukey = s->ukey,
                 .query = q,
                 .nquery = 2,
                 .content_md5 = 1,
                 .body = j->data.data,
                 .body_len = j->data.len};
    s3_resp rs = {0};
    wv_err_clear(&j->err);
    j->rc = wv__s3_request(st, &rq, &rs, &j->err);
    if (j->rc == 0) {
        if (rs.status == 200) {
            if (!rs.etag[0])
                j->rc = wv_err_set(&j->err, WV_EIO, "%s: part %u of \"%s\": no ETag in the answer",
                                   st->repo, j->number, s->ukey);
            else if (!etag_matches(rs.etag, rs.sent_md5))
                j->rc = wv_err_set(&j->err, WV_EIO,
                                   "%s: part %u of \"%s\": the store's ETag does not match the "
                                   "MD5 of the data sent",
                                   st->repo, j->number, s->ukey);
            else
                snprintf(j->etag, sizeof(j->etag), "%s", rs.etag);
        } else {
            j->rc = wv__s3_status_error(st, &rq, &rs, &j->err);
        }
    }
    wv__s3_resp_free(&rs);
    return NULL;
}

/* Wait for job slot i and collect its result. */
static void join_job(s3_sink *s, part_job *j)
{
    if (!j->active)
        return;
    pthread_join(j->thread, NULL);
    j->active = 0;
    if (j->rc == 0) {
        while (s->etags_cap < j->number) {
            size_t ncap = s->etags_cap ? s->etags_cap * 2 : 64;
            s->etags = wv_xrealloc(s->etags, ncap * sizeof(char *));
            memset(s->etags + s->etags_cap, 0, (ncap - s->etags_cap) * sizeof(char *));
            s->etags_cap = ncap;
        }
        s->etags[j->number - 1] = wv_xstrdup(j->etag);
    } else if (!s->failed) {
        s->failed = 1;
        s->first_err = j->err;
    }
    wv_buf_free(&j->data);
}

static void join_all(s3_sink *s)
{
    for (int i = 0; i < WV_S3_PARTS_IN_FLIGHT; i++)
        join_job(s, &s->jobs[i]);
}

static int create_upload(s3_sink *s, wv_err *err)
{
    s3_storage *st = s->st;
    wv_s3_pair q[] = {{"uploads", NULL}};
    s3_req rq = {.method = "POST", .key = s->fkey, .ukey = s->ukey, .query = q, .nquery = 1};
    s3_resp rs = {0};
    wv_buf id = WV_BUF_INIT;
    int rc = wv__s3_request(st, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = wv__s3_status_error(st, &rq, &rs, err);
    if (rc == 0) {
        if (!wv_s3_xml_get((const char *)rs.body.data, rs.body.len, NULL, "UploadId", &id) ||
            id.len == 0)
            rc = wv_err_set(err, WV_EIO,
                            "%s: no UploadId in the answer to starting an upload of "
                            "\"%s\" in bucket \"%s\"",
                            st->repo, s->ukey, st->bucket);
        else
            s->upload_id = wv_xstrdup(wv_buf_cstr(&id));
    }
    wv_buf_free(&id);
    wv__s3_resp_free(&rs);
    return rc;
}

/* Hand the filled buffer to a part job. */
static int start_part(s3_sink *s, wv_err *err)
{
    if (!s->upload_id) {
        int rc = create_upload(s, err);
        if (rc)
            return rc;
    }
    unsigned number = s->parts + 1;
    part_job *j = &s->jobs[(number - 1) % WV_S3_PARTS_IN_FLIGHT];
    join_job(s, j);
    if (s->failed) {
        *err = s->first_err;
        return err->code;
    }
    j->sink = s;
    j->number = number;
    j->data = s->buf;
    wv_buf_init(&s->buf);
    j->etag[0] = '\0';
    j->rc = 0;
    if (pthread_create(&j->thread, NULL, part_thread, j) != 0) {
        s->buf = j->data;
        wv_buf_init(&j->data);
        return wv_err_set(err, WV_EINTERNAL, "%s: could not start an upload thread", s->st->repo);
    }
    j->active = 1;
    s->parts = number;
    return 0;
}

static int s3_sink_write(wv_sink *base, const void *data, size_t len, wv_err *err)
{
    s3_sink *s = (s3_sink *)base;
    const uint8_t *p = data;
    if (s->failed) {
        *err = s->first_err;
        return err->code;
    }
    s->total += len;
    if (s->total > WV_S3_MAX_OBJECT)
        return wv_err_set(err, WV_EIO, "%s: \"%s\" is larger than the 5 TiB S3 allows", s->st->repo,
                          s->ukey);
    if (s->existed)
        return 0;
    while (len > 0) {
        uint64_t psize = wv_s3_part_size(s->parts + 1);
        if (psize == 0)
            return wv_err_set(err, WV_EIO, "%s: \"%s\" needs more than %d parts", s->st->repo,
                              s->ukey, WV_S3_MAX_PARTS);
        size_t room = (size_t)(psize - s->buf.len);
        size_t n = len < room ? len : room;
        wv_buf_append(&s->buf, p, n);
        p += n;
        len -= n;
        /* a full part goes out only once more data follows, so that a one-part object is a
         * plain PUT at commit */
        if (s->buf.len == psize && len > 0) {
            int rc = start_part(s, err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static void abort_upload(s3_sink *s)
{
    if (!s->upload_id)
        return;
    wv_s3_pair q[] = {{"uploadId", s->upload_id}};
    s3_req rq = {.method = "DELETE", .key = s->fkey, .ukey = s->ukey, .query = q, .nquery = 1};
    s3_resp rs = {0};
    wv_err e;
    wv_err_clear(&e);
    if (wv__s3_request(s->st, &rq, &rs, &e) != 0)
        wv_log_warn("%s: could not abort the upload of \"%s\": %s", s->st->repo, s->ukey, e.msg);
    else if (rs.status != 204 && rs.status != 200 && rs.status != 404)
        wv_log_warn("%s: could not abort the upload of \"%s\": HTTP %ld %s", s->st->repo, s->ukey,
                    rs.status, rs.code);
    wv__s3_resp_free(&rs);
    free(s->upload_id);
    s->upload_id = NULL;
}

static void sink_free(s3_sink *s)
{
    for (size_t i = 0; i < s->etags_cap; i++)
        free(s->etags[i]);
    free(s->etags);
    free(s->upload_id);
    wv_buf_free(&s->buf);
    free(s->fkey);
    free(s->ukey);
    free(s);
}

static void s3_sink_abort(wv_sink *base)
{
    s3_sink *s = (s3_sink *)base;
    join_all(s);
    abort_upload(s);
    sink_free(s);
}

/* NOREPLACE: 0 if the key is still free, WV_EEXIST if it exists, or another error. */
static int check_absent(s3_sink *s, wv_err *err)
{
    int exists;
    int rc = wv__s3_head(s->st, s->fkey, s->ukey, &exists, NULL, err);
    if (rc)
        return rc;
    if (exists)
        return wv_err_set(err, WV_EEXIST, "%s: \"%s\" already exists in bucket \"%s\"", s->st->repo,
                          s->ukey, s->st->bucket);
    return 0;
}

/* The answer of a store that honored If-None-Match: * on an existing key. */
static int refused_existing(const s3_resp *rs)
{
    return rs->status == 412 ||
           (rs->status == 409 && strcmp(rs->code, "ConditionalRequestConflict") == 0);
}

/*
 * Send the request that makes an object visible (the single PUT, or the completion of a multipart
 * upload). With NOREPLACE it carries If-None-Match: *; a store that does not implement conditional
 * requests (501) gets it again without (the HEAD just before is then all the check there is).
 * An existing key (412, or 409 ConditionalRequestConflict) is WV_EEXIST.
 *
 * WV_PUT_NOREPLACE is thus a HEAD just before the final PUT/CompleteMultipartUpload, and
 * `If-None-Match: *` on that request. A store that ignores If-None-Match leaves a window between
 * the HEAD and the final request in which two writers can both succeed, the later one replacing
 * the earlier.
 */
static int s3_make_visible(s3_sink *s, s3_req *rq, s3_resp *rs, wv_err *err)
{
    s3_storage *st = s->st;
    int rc = wv__s3_request(st, rq, rs, err);
    if (rc == 0 && rq->if_none_match && rs->status == 501) {
        rq->if_none_match = NULL;
        rc = wv__s3_request(st, rq, rs, err);
    }
    if (rc == 0 && refused_existing(rs)) {
        if (!s->upload_id)
            __atomic_store_n(&st->noreplace_honored, 1, __ATOMIC_RELEASE);
        rc = wv_err_set(err, WV_EEXIST, "%s: \"%s\" already exists in bucket \"%s\"", st->repo,
                        s->ukey, st->bucket);
    }
    return rc;
}

/* wv_storage_probe_noreplace: key holds exactly data; PUT it with If-None-Match: *. A 412 (or
 * 409 ConditionalRequestConflict) shows the store honors the condition; a 200 that it does not
 * (the same bytes were written again); a 501 that it does not implement it. */
int wv__s3_probe_noreplace(wv_storage *base, const char *key, const void *data, size_t len,
                           wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    char *fkey = wv__s3_full_key(st, key);
    s3_req rq = {.method = "PUT",
                 .key = fkey,
                 .ukey = key,
                 .content_md5 = 1,
                 .body = data,
                 .body_len = len,
                 .if_none_match = "*"};
    s3_resp rs = {0};
    int rc = wv__s3_request(st, &rq, &rs, err);
    if (rc == 0 && refused_existing(&rs))
        __atomic_store_n(&st->noreplace_honored, 1, __ATOMIC_RELEASE);
    else if (rc == 0 && rs.status != 200 && rs.status != 501)
        rc = wv__s3_status_error(st, &rq, &rs, err);
    wv__s3_resp_free(&rs);
    free(fkey);
    return rc;
}

static int put_single(s3_sink *s, wv_err *err)
{
    s3_storage *st = s->st;
    int noreplace = (s->flags & WV_PUT_NOREPLACE) != 0;
    s3_req rq = {.method = "PUT",
                 .key = s->fkey,
                 .ukey = s->ukey,
                 .content_md5 = 1,
                 .body = s->buf.data,
                 .body_len = s->buf.len,
                 .if_none_match = noreplace ? "*" : NULL};
    s3_resp rs = {0};
    int rc = s3_make_visible(s, &rq, &rs, err);
    if (rc)
        goto out;
    if (rs.status != 200) {
        rc = wv__s3_status_error(st, &rq, &rs, err);
        goto out;
    }
    if (!rs.etag[0] || !etag_matches(rs.etag, rs.sent_md5)) {
        rc = wv_err_set(err, WV_EIO,
                        "%s: the store's ETag for \"%s\" does not match the MD5 of "
                        "the data sent",
                        st->repo, s->ukey);
        wv_err_hint(err, "the object is not trusted; it was written, check the store (e.g. "
                         "server-side encryption changes ETags) and retry");
    }
out:
    wv__s3_resp_free(&rs);
    return rc;
}

static int complete_upload(s3_sink *s, wv_err *err)
{
    s3_storage *st = s->st;
    int noreplace = (s->flags & WV_PUT_NOREPLACE) != 0;
    wv_buf body = WV_BUF_INIT, v = WV_BUF_INIT;
    wv_buf_append_str(&body, "<CompleteMultipartUpload "
                             "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (unsigned i = 0; i < s->parts; i++) {
        wv_buf_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>", i + 1);
        wv_s3_xml_escape(&body, s->etags[i]);
        wv_buf_append_str(&body, "</ETag></Part>");
    }
    wv_buf_append_str(&body, "</CompleteMultipartUpload>");

    wv_s3_pair q[] = {{"uploadId", s->upload_id}};
    s3_req rq = {.method = "POST",
                 .key = s->fkey,
                 .ukey = s->ukey,
                 .query = q,
                 .nquery = 1,
                 .content_md5 = 1,
                 .content_type = "application/xml",
                 .body = body.data,
                 .body_len = body.len,
                 .error_in_200 = 1,
                 .if_none_match = noreplace ? "*" : NULL};
    s3_resp rs = {0};
    int rc = s3_make_visible(s, &rq, &rs, err);
    if (rc)
        goto out;
    if (rs.status == 404 && strcmp(rs.code, "NoSuchUpload") == 0) {
        /* an earlier attempt may have completed it and lost the answer: trust only a HEAD */
        int exists;
        wv_stat sb;
        rc = wv__s3_head(st, s->fkey, s->ukey, &exists, &sb, err);
        if (rc == 0 && !(exists && sb.size == s->total))
            rc = wv_err_set(err, WV_EIO, "%s: the upload of \"%s\" vanished before completion",
                            st->repo, s->ukey);
        if (rc == 0) {
            free(s->upload_id);
            s->upload_id = NULL;
        }
        goto out;
    }
    if (rs.status != 200 || rs.code[0]) {
        rc = wv__s3_status_error(st, &rq, &rs, err);
        goto out;
    }
    /* the upload no longer exists: nothing to abort from here on */
    free(s->upload_id);
    s->upload_id = NULL;
    if (!wv_s3_xml_get((const char *)rs.body.data, rs.body.len, NULL,
                       "CompleteMultipartUploadResult", &v)) {
        rc = wv_err_set(err, WV_EIO, "%s: unexpected answer to completing the upload of \"%s\"",
                        st->repo, s->ukey);
        goto out;
    }
    /* The ETag of a multipart object is not an MD5 of the data (and Ceph RGW may leave it
     * empty); every part was verified on upload. Check that the object now has the size sent. */
    int exists;
    wv_stat sb;
    rc = wv__s3_head(st, s->fkey, s->ukey, &exists, &sb, err);
    if (rc == 0 && (!exists || sb.size != s->total))
        rc = wv_err_set(err, WV_EIO, "%s: \"%s\" has %llu bytes after upload, %llu were sent",
                        st->repo, s->ukey, exists ? (unsigned long long)sb.size : 0ULL,
                        (unsigned long long)s->total);
out:
    wv_buf_free(&v);
    wv_buf_free(&body);
    wv__s3_resp_free(&rs);
    return rc;
}

/* ---- uploads in flight (WV_PUT_NOSYNC) ---- */

/*
 * A backup stores thousands of small files with one PUT each; a worker that waited for every
 * answer would leave its core idle for a round trip per file. So a sink committed with
 * WV_PUT_NOSYNC (and without NOREPLACE) whose object fits one PUT is handed to one of up to
 * WV_S3_ASYNC_UPLOADS upload threads, and commit returns at once (it waits only while that many
 * uploads, or WV_S3_ASYNC_BYTES of their bodies, are in flight). flush waits for them all and
 * returns the first failure, which also fails every later commit. Every other operation of the
 * driver first waits for the uploads in flight, so later reads, listings, removals and commits
 * see what the earlier commits stored.
 */
static void *async_thread(void *arg)
{
    s3_storage *st = arg;
    pthread_mutex_lock(&st->async_mu);
    for (;;) {
        while (!st->async_head && !st->async_stop)
            pthread_cond_wait(&st->async_cv, &st->async_mu);
        s3_sink *s = st->async_head;
        if (!s)
            break; /* stopping, and nothing is left */
        st->async_head = s->next;
        if (!st->async_head)
            st->async_tail = NULL;
        int skip = st->async_failed; /* after a failure the rest is not worth sending */
        pthread_mutex_unlock(&st->async_mu);
        wv_err e;
        wv_err_clear(&e);
        size_t len = s->buf.len;
        int rc = skip ? 0 : put_single(s, &e);
        sink_free(s);
        pthread_mutex_lock(&st->async_mu);
        if (rc && !st->async_failed) {
            st->async_failed = 1;
            st->async_err = e;
        }
        st->async_active--;
        st->async_bytes -= len;
        pthread_cond_broadcast(&st->async_cv);
    }
    pthread_mutex_unlock(&st->async_mu);
    return NULL;
}

/* Queue s for upload (s3_sink_commit's WV_PUT_NOSYNC path); frees s whatever the outcome. */
static int async_commit(s3_sink *s, wv_err *err)
{
    s3_storage *st = s->st;
    size_t len = s->buf.len;
    pthread_mutex_lock(&st->async_mu);
    while (!st->async_failed && st->async_active > 0 &&
           (st->async_active >= WV_S3_ASYNC_UPLOADS || st->async_bytes + len > WV_S3_ASYNC_BYTES))
        pthread_cond_wait(&st->async_cv, &st->async_mu);
    if (st->async_failed) {
        *err = st->async_err;
        pthread_mutex_unlock(&st->async_mu);
        sink_free(s);
        return wv_err_prefix(err, "stopped after an earlier upload failed: ");
    }
    if (st->async_nthreads <= st->async_active && st->async_nthreads < WV_S3_ASYNC_UPLOADS &&
        pthread_create(&st->async_threads[st->async_nthreads], NULL, async_thread, st) == 0)
        st->async_nthreads++;
    if (st->async_nthreads == 0) {
        /* no thread could be started: upload here */
        pthread_mutex_unlock(&st->async_mu);
        int rc = put_single(s, err);
        sink_free(s);
        return rc;
    }
    s->next = NULL;
    if (st->async_tail)
        st->async_tail->next = s;
    else
        st->async_head = s;
    st->async_tail = s;
    st->async_active++;
    st->async_bytes += len;
    pthread_cond_broadcast(&st->async_cv);
    pthread_mutex_unlock(&st->async_mu);
    return 0;
}

/* Wait until no upload is in flight. 0, or the first failure of one (err may be NULL). */
int wv__s3_async_wait(s3_storage *st, wv_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&st->async_mu);
    while (st->async_active > 0)
        pthread_cond_wait(&st->async_cv, &st->async_mu);
    if (st->async_failed) {
        rc = st->async_err.code;
        if (err)
            *err = st->async_err;
    }
    pthread_mutex_unlock(&st->async_mu);
    return rc;
}

/* Before any other operation: let the uploads in flight land (their failure is reported by the
 * next commit or flush, not by an unrelated read or removal). */
void wv__s3_async_drain(s3_storage *st)
{
    (void)wv__s3_async_wait(st, NULL);
}

void wv__s3_async_stop(s3_storage *st)
{
    pthread_mutex_lock(&st->async_mu);
    st->async_stop = 1;
    pthread_cond_broadcast(&st->async_cv);
    pthread_mutex_unlock(&st->async_mu);
    for (int i = 0; i < st->async_nthreads; i++)
        pthread_join(st->async_threads[i], NULL);
    st->async_nthreads = 0;
}

static int s3_sink_commit(wv_sink *base, wv_err *err)
{
    s3_sink *s = (s3_sink *)base;
    int rc = 0;
    int noreplace = (s->flags & WV_PUT_NOREPLACE) != 0;

    if (s->failed) {
        *err = s->first_err;
        rc = err->code;
        goto fail;
    }
    if (s->existed) {
        rc = check_absent(s, err);
        if (rc == 0)
            rc = wv_err_set(err, WV_EIO, "%s: \"%s\" was deleted while being written; retry",
                            s->st->repo, s->ukey);
        goto fail;
    }
    if (!s->upload_id) {
        if ((s->flags & WV_PUT_NOSYNC) && !noreplace)
            return async_commit(s, err);
    } else {
        if (s->buf.len > 0 && (rc = start_part(s, err)) != 0)
            goto fail;
        join_all(s);
        if (s->failed) {
            *err = s->first_err;
            rc = err->code;
            goto fail;
        }
    }
    wv__s3_async_drain(s->st);
    /* a single PUT's condition checks by itself where the store is known to honor it (the
     * completion of a multipart upload keeps the HEAD: nothing showed how the store treats it) */
    if (noreplace &&
        (s->upload_id || !__atomic_load_n(&s->st->noreplace_honored, __ATOMIC_ACQUIRE)) &&
        (rc = check_absent(s, err)) != 0)
        goto fail;
    rc = s->upload_id ? complete_upload(s, err) : put_single(s, err);
    if (rc)
        goto fail;
    sink_free(s);
    return 0;
fail:
    join_all(s);
    abort_upload(s);
    sink_free(s);
    return rc;
}

static const wv_sink_ops s3_sink_ops = {
    .write = s3_sink_write,
    .commit = s3_sink_commit,
    .abort = s3_sink_abort,
};

int wv__s3_put_open(wv_storage *base, const char *key, unsigned flags, wv_sink **out, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    s3_sink *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &s3_sink_ops;
    s->st = st;
    s->fkey = wv__s3_full_key(st, key);
    s->ukey = wv_xstrdup(key);
    s->flags = flags;
    /* NOREPLACE is checked just before the object becomes visible (a HEAD, then a conditional
     * request), not here: an early HEAD would cost every push one more round trip to save an
     * upload only in the rare case of a repeated push, which callers check for themselves. */
    *out = &s->base;
    return 0;
}
