/*
 * storage/s3/driver.c - the S3 driver itself: its ops table, opening it (configuration and
 * credentials), removal of one object and of many (DeleteObjects), flush and free. Requests go
 * through http.c; the sink is in write.c, the source, stat and list in read.c.
 */
#include "storage/s3/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "storage/s3/curl_dl.h"

char *wv__s3_full_key(const s3_storage *st, const char *key)
{
    if (st->prefix[0])
        return wv_xasprintf("%s/%s", st->prefix, key);
    return wv_xstrdup(key);
}

/* ---- remove ---- */

static int s3_remove(wv_storage *base, const char *key, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    wv__s3_async_drain(st);
    char *fkey = wv__s3_full_key(st, key);
    s3_req rq = {.method = "DELETE", .key = fkey, .ukey = key};
    s3_resp rs = {0};
    int rc = wv__s3_request(st, &rq, &rs, err);
    if (rc == 0 && rs.status != 204 && rs.status != 200 &&
        !(rs.status == 404 && strcmp(rs.code, "NoSuchKey") == 0))
        rc = wv__s3_status_error(st, &rq, &rs, err);
    wv__s3_resp_free(&rs);
    free(fkey);
    return rc;
}

/* The repository's key of a key as the store names it (the prefix stripped). */
static const char *repo_key(const s3_storage *st, const char *fkey)
{
    size_t n = strlen(st->prefix);
    if (n > 0 && strncmp(fkey, st->prefix, n) == 0 && fkey[n] == '/')
        return fkey + n + 1;
    return fkey;
}

/*
 * Read the answer to a quiet DeleteObjects: it lists only the keys that could not be deleted, as
 * <Error><Key>..</Key><Code>..</Code></Error>. NoSuchKey among them counts as deleted (S3 itself
 * reports an absent key as deleted). Every other failure is counted, and the first ones are named
 * in err, with their codes.
 */
static int delete_result(s3_storage *st, const s3_resp *rs, size_t n, wv_err *err)
{
    const char *x = (const char *)rs->body.data;
    size_t len = rs->body.len;
    if (!x || !memmem(x, len, "<DeleteResult", 13))
        return wv_err_set(err, WV_EIO,
                          "%s: unexpected answer to deleting %zu objects in bucket \"%s\" at %s",
                          st->repo, n, st->bucket, st->endpoint);
    wv_buf key = WV_BUF_INIT, code = WV_BUF_INIT, named = WV_BUF_INIT, first_key = WV_BUF_INIT;
    char first_code[64] = "";
    size_t nfailed = 0, nnamed = 0;
    const char *inner, *p = x;
    size_t inner_len;
    while ((p = wv_s3_xml_element(x, len, p, "Error", &inner, &inner_len)) != NULL) {
        if (!wv_s3_xml_get(inner, inner_len, NULL, "Key", &key))
            wv_buf_reset(&key);
        if (!wv_s3_xml_get(inner, inner_len, NULL, "Code", &code))
            wv_buf_reset(&code);
        if (strcmp(wv_buf_cstr(&code), "NoSuchKey") == 0)
            continue;
        if (nfailed++ == 0) {
            snprintf(first_code, sizeof(first_code), "%s",
                     code.len ? wv_buf_cstr(&code) : "no error code");
            wv_buf_append_str(&first_key, repo_key(st, wv_buf_cstr(&key)));
        }
        if (named.len < 400) {
            wv_buf_printf(&named, "%s\"%s\" (%s)", nnamed ? ", " : "",
                          repo_key(st, wv_buf_cstr(&key)),
                          code.len ? wv_buf_cstr(&code) : "no error code");
            nnamed++;
        }
    }
    int rc = 0;
    if (nfailed == 1) {
        rc = wv_err_set(err, strcmp(first_code, "AccessDenied") == 0 ? WV_EAUTH : WV_EIO,
                        "%s: could not delete \"%s\" in bucket \"%s\": %s", st->repo,
                        wv_buf_cstr(&first_key), st->bucket, first_code);
    } else if (nfailed > 1) {
        char more[64] = "";
        if (nnamed < nfailed)
            snprintf(more, sizeof(more), ", and %zu more", nfailed - nnamed);
        rc = wv_err_set(err, strcmp(first_code, "AccessDenied") == 0 ? WV_EAUTH : WV_EIO,
                        "%s: could not delete %zu of %zu objects in bucket \"%s\": %s%s", st->repo,
                        nfailed, n, st->bucket, wv_buf_cstr(&named), more);
    }
    if (rc != 0 && strcmp(first_code, "AccessDenied") == 0)
        wv_err_hint(err, "check that the access key may delete in the bucket");
    wv_buf_free(&key);
    wv_buf_free(&code);
    wv_buf_free(&named);
    wv_buf_free(&first_key);
    return rc;
}

/* One DeleteObjects request for keys[0..n), n <= WV_S3_DELETE_BATCH. */
static int delete_batch(s3_storage *st, const char *const *keys, size_t n, wv_err *err)
{
    wv_buf body = WV_BUF_INIT;
    wv_buf_append_str(&body, "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                             "<Quiet>true</Quiet>");
    for (size_t i = 0; i < n; i++) {
        char *fk = wv__s3_full_key(st, keys[i]);
        wv_buf_append_str(&body, "<Object><Key>");
        wv_s3_xml_escape(&body, fk);
        wv_buf_append_str(&body, "</Key></Object>");
        free(fk);
    }
    wv_buf_append_str(&body, "</Delete>");
    /* S3 requires Content-MD5 (or a newer checksum header) on DeleteObjects */
    wv_s3_pair q[] = {{"delete", NULL}};
    s3_req rq = {.method = "POST",
                 .key = NULL,
                 .ukey = "",
                 .query = q,
                 .nquery = 1,
                 .content_md5 = 1,
                 .content_type = "application/xml",
                 .body = body.data,
                 .body_len = body.len,
                 .resp_max = (size_t)4 << 20};
    s3_resp rs = {0};
    int rc = wv__s3_request(st, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = wv__s3_status_error(st, &rq, &rs, err);
    if (rc == 0)
        rc = delete_result(st, &rs, n, err);
    wv__s3_resp_free(&rs);
    wv_buf_free(&body);
    return rc;
}

/* Batches of at most WV_S3_DELETE_BATCH keys, one request each, stopping at the first that
 * fails (the keys of the later batches are then left as they were). */
static int s3_remove_many(wv_storage *base, const char *const *keys, size_t n, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    wv__s3_async_drain(st);
    for (size_t i = 0; i < n; i += WV_S3_DELETE_BATCH) {
        size_t m = n - i < WV_S3_DELETE_BATCH ? n - i : WV_S3_DELETE_BATCH;
        int rc = delete_batch(st, keys + i, m, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- flush, free ---- */

static int s3_flush(wv_storage *base, wv_err *err)
{
    /* an acknowledged S3 write is durable: what is left is to wait for the uploads in flight */
    return wv__s3_async_wait((s3_storage *)base, err);
}

static void s3_free(wv_storage *base)
{
    s3_storage *st = (s3_storage *)base;
    if (!st)
        return;
    wv__s3_async_stop(st);
    wv__s3_pool_close(st);
    pthread_mutex_destroy(&st->pool_mu);
    pthread_mutex_destroy(&st->async_mu);
    pthread_cond_destroy(&st->async_cv);
    if (st->secret) {
        memset(st->secret, 0, strlen(st->secret));
        free(st->secret);
    }
    if (st->token) {
        memset(st->token, 0, strlen(st->token));
        free(st->token);
    }
    free(st->akid);
    free(st->host);
    free(st->endpoint);
    free(st->bucket);
    free(st->prefix);
    free(st->region);
    free(st->ca_file);
    free(st->base.location);
    free(st);
}

static const wv_storage_ops s3_ops = {
    .name = "s3",
    .features = WV_ST_ATOMIC_PUT | WV_ST_SERVER_SHA256 | WV_ST_ROUND_TRIPS | WV_ST_REMOVE_MANY,
    .put_open = wv__s3_put_open,
    .get_open = wv__s3_get_open,
    .stat = wv__s3_stat,
    .list = wv__s3_list,
    .remove = s3_remove,
    .remove_many = s3_remove_many,
    .flush = s3_flush,
    .probe_noreplace = wv__s3_probe_noreplace,
    .free = s3_free,
};

/* ---- open ---- */

/*
 * Test knobs (environment, read once in wv_storage_s3_new):
 *   WALVAULT_S3_TIMEOUT        retry deadline of one operation in seconds (default 60)
 *   WALVAULT_S3_LIST_MAX_KEYS  max-keys of one ListObjectsV2 page (default 1000)
 */
static int env_int(const char *name, int def, int lo, int hi)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi)
        return def;
    return (int)x;
}

/*
 * Credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) from the
 * environment when both are set, else access_key_id and the file secret_access_key_file (which
 * must be readable by its owner only). The secret is wiped when the driver is freed.
 */
static int load_credentials(s3_storage *st, const wv_repo_config *rc, wv_err *err)
{
    const char *ek = getenv("AWS_ACCESS_KEY_ID"), *es = getenv("AWS_SECRET_ACCESS_KEY");
    if (ek && *ek && es && *es) {
        st->akid = wv_xstrdup(ek);
        st->secret = wv_xstrdup(es);
        const char *tok = getenv("AWS_SESSION_TOKEN");
        if (tok && *tok)
            st->token = wv_xstrdup(tok);
        return 0;
    }
    if (!rc->access_key_id || !rc->secret_access_key_file) {
        wv_err_set(err, WV_ECONFIG, "%s: no credentials for bucket \"%s\"", rc->name, rc->bucket);
        return wv_err_hint(err,
                           "set access_key_id and secret_access_key_file in [%s], or "
                           "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                           rc->name);
    }
    st->akid = wv_xstrdup(rc->access_key_id);
    int r = wv_config_read_secret_file(rc->secret_access_key_file, &st->secret, err);
    if (r)
        return wv_err_prefix(err, "%s: ", rc->name);
    return 0;
}

int wv_storage_s3_new(const wv_repo_config *rc, wv_storage **out, wv_err *err)
{
    if (wv_curl_load(err) != 0)
        return wv_err_prefix(err, "%s: ", rc->name);
    if (!rc->bucket || !rc->bucket[0])
        return wv_err_set(err, WV_ECONFIG, "%s: no bucket configured", rc->name);

    s3_storage *st = wv_xcalloc(1, sizeof(*st));
    int r = 0;
    st->base.ops = &s3_ops;
    pthread_mutex_init(&st->pool_mu, NULL);
    pthread_mutex_init(&st->async_mu, NULL);
    pthread_cond_init(&st->async_cv, NULL);
    snprintf(st->repo, sizeof(st->repo), "%s", rc->name);
    st->region = wv_xstrdup(rc->region && rc->region[0] ? rc->region : "us-east-1");
    st->bucket = wv_xstrdup(rc->bucket);
    st->host_style = rc->uri_style_host;
    st->ca_file = rc->ca_file && rc->ca_file[0] ? wv_xstrdup(rc->ca_file) : NULL;

    /* prefix: without leading or trailing slashes */
    const char *p = rc->prefix ? rc->prefix : "";
    while (*p == '/')
        p++;
    st->prefix = wv_xstrdup(p);
    for (size_t n = strlen(st->prefix); n > 0 && st->prefix[n - 1] == '/'; n--)
        st->prefix[n - 1] = '\0';
    if (st->prefix[0] && !wv_storage_key_valid(st->prefix)) {
        r = wv_err_set(err, WV_ECONFIG, "%s: invalid prefix \"%s\"", rc->name, st->prefix);
        goto fail;
    }

    /* endpoint: http(s)://host[:port], nothing after */
    if (rc->endpoint && rc->endpoint[0])
        st->endpoint = wv_xstrdup(rc->endpoint);
    else
        st->endpoint = wv_xasprintf("https://s3.%s.amazonaws.com", st->region);
    const char *hoststart;
    if (strncasecmp(st->endpoint, "https://", 8) == 0) {
        st->https = 1;
        hoststart = st->endpoint + 8;
    } else if (strncasecmp(st->endpoint, "http://", 7) == 0) {
        hoststart = st->endpoint + 7;
    } else {
        r = wv_err_set(err, WV_ECONFIG, "%s: endpoint \"%s\" must start with https:// or http://",
                       rc->name, st->endpoint);
        goto fail;
    }
    st->host = wv_xstrdup(hoststart);
    for (size_t n = strlen(st->host); n > 0 && st->host[n - 1] == '/'; n--)
        st->host[n - 1] = '\0';
    if (!st->host[0] || strpbrk(st->host, "/?#@ ")) {
        r = wv_err_set(err, WV_ECONFIG, "%s: endpoint \"%s\" must be scheme://host[:port] only",
                       rc->name, st->endpoint);
        goto fail;
    }
    for (char *c = st->bucket; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' ||
              (!st->host_style && (*c == '_' || (*c >= 'A' && *c <= 'Z'))))) {
            r = wv_err_set(err, WV_ECONFIG, "%s: invalid bucket name \"%s\"", rc->name, st->bucket);
            goto fail;
        }
    }

    st->deadline_ms = (int64_t)env_int("WALVAULT_S3_TIMEOUT", 60, 1, 86400) * 1000;
    st->list_max_keys = env_int("WALVAULT_S3_LIST_MAX_KEYS", 1000, 1, 1000);

    r = load_credentials(st, rc, err);
    if (r)
        goto fail;

    st->base.location = st->prefix[0] ? wv_xasprintf("s3://%s/%s", st->bucket, st->prefix)
                                      : wv_xasprintf("s3://%s", st->bucket);
    *out = &st->base;
    return 0;
fail:
    s3_free(&st->base);
    return r;
}
