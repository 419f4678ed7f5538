/*
 * storage/s3/s3.c - the S3 storage driver: libcurl for HTTP(S), storage/s3/sign.c for Signature V4.
 *
 * Implementation notes (the choices themselves are described in storage/s3/s3.h):
 *   - Every request goes through s3_request(), which signs, sends, retries and classifies. It
 *     returns 0 once the store gave a final answer (any HTTP status that is not worth retrying),
 *     and an error only when the store could not be reached within the deadline or the request
 *     could not be built. Callers then map the status with s3_status_error().
 *   - Easy handles are kept in a small per-driver pool so that connections are reused across
 *     requests; the pool is guarded by a mutex, so one driver serves several threads.
 *   - Part uploads run on plain threads (at most WV_S3_PARTS_IN_FLIGHT); each owns its part's
 *     buffer, so memory is bounded by the parts in flight.
 *   - Messages start with the repository name and name bucket and key; credentials never appear
 *     in a message or a log line (only the access key id is used in the signature's scope).
 */
#include "storage/s3/s3.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/buf.h"
#include "core/config.h"
#include "storage/s3/curl_dl.h"
#include "core/log.h"
#include "storage/s3/sign.h"
#include "storage/driver.h"

#define S3_POOL_MAX           16
#define S3_ASYNC_UPLOADS      8                  /* NOSYNC single PUTs in flight */
#define S3_ASYNC_BYTES        ((size_t)32 << 20) /* and the bodies they hold, at most */
#define S3_ERROR_BODY_MAX     ((size_t)64 << 10)
#define S3_BACKOFF_BASE_MS    100
#define S3_BACKOFF_CAP_MS     5000
#define S3_CONNECT_TIMEOUT_MS 10000L
#define S3_LOW_SPEED_BYTES    1024L
#define S3_LOW_SPEED_SECONDS  30L

typedef struct s3_storage {
    wv_storage base;
    char repo[16];
    int https;
    char *host;     /* host[:port] of the endpoint */
    char *endpoint; /* as configured, for messages */
    char *bucket;
    char *prefix; /* "" or "a/b" */
    char *region;
    char *ca_file;
    int host_style;
    char *akid;
    char *secret;
    char *token;
    int64_t deadline_ms;
    int list_max_keys;
    int bucket_ok; /* a HEAD of the bucket succeeded once (atomic) */
    pthread_mutex_t pool_mu;
    struct s3_conn *pool[S3_POOL_MAX];
    int npool;
    /* Uploads of sinks committed with WV_PUT_NOSYNC (see s3_async_commit). */
    pthread_mutex_t async_mu;
    pthread_cond_t async_cv;
    struct s3_sink *async_head, *async_tail; /* queued, not yet taken by a thread */
    int async_active;                        /* queued + uploading */
    size_t async_bytes;                      /* their bodies */
    int async_idle;                          /* threads waiting for work */
    int async_nthreads;
    int async_stop;
    int async_failed;
    wv_err async_err; /* the first failure, reported by the next commit, flush or operation */
    pthread_t async_threads[S3_ASYNC_UPLOADS];
} s3_storage;

/* An easy handle and the socket of the connection it keeps open (for ack_now). */
typedef struct s3_conn {
    CURL *h;
    curl_socket_t fd;
} s3_conn;

/* ---- requests ---- */

typedef struct s3_req {
    const char *method;
    const char *key;  /* full object key inside the bucket; NULL = the bucket itself */
    const char *ukey; /* the repository's key, for messages ("" for bucket operations) */
    const wv_s3_pair *query;
    size_t nquery;
    const char *range;
    const char *if_none_match;
    const char *if_match;
    const char *content_type;
    int content_md5; /* send Content-MD5 of the body */
    const uint8_t *body;
    size_t body_len;
    size_t resp_max;  /* body bytes kept for a 2xx answer */
    int error_in_200; /* a 200 may carry an <Error> document (CompleteMultipartUpload) */
} s3_req;

typedef struct s3_resp {
    long status;
    wv_buf body;
    int overflow;
    size_t resp_max;
    char etag[128];
    char content_range[128];
    char last_modified[64];
    uint64_t content_length;
    int has_length;
    char code[64]; /* S3 error code from an <Error> document */
    char message[256];
    uint8_t sent_md5[16]; /* MD5 of the body sent, when the request has content_md5 */
    s3_conn *conn;        /* the transfer's connection, while it runs */
    int acked;            /* the answer's first bytes were acknowledged at once */
} s3_resp;

typedef struct body_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
} body_reader;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static s3_conn *pool_get(s3_storage *st)
{
    s3_conn *c = NULL;
    pthread_mutex_lock(&st->pool_mu);
    if (st->npool > 0)
        c = st->pool[--st->npool];
    pthread_mutex_unlock(&st->pool_mu);
    if (c) {
        curl_easy_reset(c->h);
        return c;
    }
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    c = wv_xcalloc(1, sizeof(*c));
    c->h = h;
    c->fd = CURL_SOCKET_BAD;
    return c;
}

static void conn_free(s3_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->h);
    free(c);
}

static void pool_put(s3_storage *st, s3_conn *c)
{
    pthread_mutex_lock(&st->pool_mu);
    if (st->npool < S3_POOL_MAX) {
        st->pool[st->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&st->pool_mu);
    conn_free(c);
}

/* libcurl's socket callbacks keep s3_conn.fd naming the connection's socket (the handle keeps the
 * connection open between requests; CURLINFO_ACTIVESOCKET is not available during a transfer). */
static int on_sockopt(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    s3_conn *c = arg;
    if (purpose == CURLSOCKTYPE_IPCXN)
        c->fd = fd;
    return CURL_SOCKOPT_OK;
}

static int on_closesocket(void *arg, curl_socket_t fd)
{
    s3_conn *c = arg;
    if (c->fd == fd)
        c->fd = CURL_SOCKET_BAD;
    return close(fd);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s3_resp *rs = arg;
    size_t n = size * nmemb;
    if (rs->body.len + n > rs->resp_max) {
        rs->overflow = 1;
        return 0; /* aborts the transfer */
    }
    wv_buf_append(&rs->body, ptr, n);
    return n;
}

static void copy_header_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/*
 * Acknowledge what arrived now rather than after the delayed-ACK timer. A server that answers
 * in several small writes with Nagle's algorithm on (Ceph RGW's beast: TLS 1.3 session tickets
 * then the answer; status and headers, then the body) holds each write until the previous one
 * is acknowledged, and Linux delays that ACK by ~40 ms in an interactive exchange: one stall per
 * answer. Setting TCP_QUICKACK sends a pending ACK at once; it is not sticky, so it is set again
 * whenever libcurl makes progress (after each wake-up) and when an answer's headers arrive.
 */
static void ack_now(s3_conn *c)
{
    if (c && c->fd != CURL_SOCKET_BAD) {
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    ack_now(arg);
    return 0;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *arg)
{
    s3_resp *rs = arg;
    size_t n = size * nitems;
    if (!rs->acked) {
        rs->acked = 1;
        ack_now(rs->conn);
    }
    const char *colon = memchr(ptr, ':', n);
    if (!colon)
        return n;
    size_t nl = (size_t)(colon - ptr);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
#define HDR_IS(name) (nl == strlen(name) && strncasecmp(ptr, name, nl) == 0)
    if (HDR_IS("etag")) {
        copy_header_value(rs->etag, sizeof(rs->etag), v, vl);
    } else if (HDR_IS("content-range")) {
        copy_header_value(rs->content_range, sizeof(rs->content_range), v, vl);
    } else if (HDR_IS("last-modified")) {
        copy_header_value(rs->last_modified, sizeof(rs->last_modified), v, vl);
    } else if (HDR_IS("content-length")) {
        char tmp[32];
        copy_header_value(tmp, sizeof(tmp), v, vl);
        char *end;
        errno = 0;
        unsigned long long x = strtoull(tmp, &end, 10);
        if (errno == 0 && end != tmp && *end == '\0') {
            rs->content_length = x;
            rs->has_length = 1;
        }
    }
#undef HDR_IS
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    body_reader *br = arg;
    size_t n = size * nitems;
    if (n > br->len - br->pos)
        n = br->len - br->pos;
    memcpy(buf, br->data + br->pos, n);
    br->pos += n;
    return n;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
    body_reader *br = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > br->len)
        return CURL_SEEKFUNC_CANTSEEK;
    br->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static void resp_reset(s3_resp *rs, size_t resp_max)
{
    wv_buf_reset(&rs->body);
    rs->status = 0;
    rs->overflow = 0;
    rs->resp_max = resp_max;
    rs->etag[0] = rs->content_range[0] = rs->last_modified[0] = '\0';
    rs->content_length = 0;
    rs->has_length = 0;
    rs->code[0] = rs->message[0] = '\0';
}

static void resp_free(s3_resp *rs)
{
    wv_buf_free(&rs->body);
}

/* The path as signed ("/bucket/key" or "/key") and the URL. */
static void build_target(s3_storage *st, const s3_req *rq, wv_buf *path, wv_buf *url, wv_buf *host)
{
    wv_buf_reset(path);
    wv_buf_reset(url);
    wv_buf_reset(host);
    if (st->host_style)
        wv_buf_printf(host, "%s.%s", st->bucket, st->host);
    else
        wv_buf_append_str(host, st->host);
    if (!st->host_style)
        wv_buf_printf(path, "/%s", st->bucket);
    wv_buf_append_str(path, "/");
    if (rq->key)
        wv_buf_append_str(path, rq->key);
    wv_buf_printf(url, "%s://%s", st->https ? "https" : "http", wv_buf_cstr(host));
    wv_s3_uri_encode(url, wv_buf_cstr(path), 1);
    if (rq->nquery) {
        wv_buf_append_str(url, "?");
        wv_s3_canonical_query(url, rq->query, rq->nquery);
    }
}

/* Parse <Error><Code>..</Code><Message>..</Message></Error> from the body, if there is one. */
static void parse_error_body(s3_resp *rs)
{
    if (rs->body.len == 0)
        return;
    const char *x = (const char *)rs->body.data;
    wv_buf v = WV_BUF_INIT;
    int empty = 0;
    (void)empty;
    if (!strstr(wv_buf_cstr(&rs->body), "<Error>")) {
        wv_buf_free(&v);
        return;
    }
    if (wv_s3_xml_get(x, rs->body.len, NULL, "Code", &v))
        snprintf(rs->code, sizeof(rs->code), "%s", wv_buf_cstr(&v));
    if (wv_s3_xml_get(x, rs->body.len, NULL, "Message", &v)) {
        /* keep messages one line */
        for (char *p = (char *)v.data; p && p < (char *)v.data + v.len; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        snprintf(rs->message, sizeof(rs->message), "%s", wv_buf_cstr(&v));
    }
    wv_buf_free(&v);
}

static int curl_transient(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return 1;
    default:
        return 0;
    }
}

static int code_transient(const char *code)
{
    return strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ||
           strcmp(code, "ServiceUnavailable") == 0 || strcmp(code, "RequestTimeout") == 0;
}

static const char *target_desc(const s3_storage *st, const s3_req *rq, char *buf, size_t cap)
{
    if (rq->ukey && rq->ukey[0])
        snprintf(buf, cap, "\"%s\" in bucket \"%s\"", rq->ukey, st->bucket);
    else
        snprintf(buf, cap, "bucket \"%s\"", st->bucket);
    return buf;
}

/* One attempt. Returns the curl result; fills rs. */
static CURLcode s3_perform(s3_storage *st, const s3_req *rq, const char *payload_sha,
                           const char *md5_b64, int64_t remaining_ms, s3_resp *rs, char *curl_msg,
                           int *internal_err, wv_err *err)
{
    wv_buf path = WV_BUF_INIT, url = WV_BUF_INIT, host = WV_BUF_INIT, authz = WV_BUF_INIT;
    wv_buf line = WV_BUF_INIT;
    struct curl_slist *hl = NULL;
    CURLcode cc = CURLE_OK;
    char amz_date[17];
    body_reader br = {rq->body, rq->body_len, 0};
    s3_conn *conn = pool_get(st);
    CURL *h = conn ? conn->h : NULL;

    *internal_err = 0;
    curl_msg[0] = '\0';
    if (!h) {
        *internal_err =
            wv_err_set(err, WV_EINTERNAL, "%s: could not create an http handle", st->repo);
        return CURLE_FAILED_INIT;
    }
    build_target(st, rq, &path, &url, &host);
    wv_s3_amz_date((int64_t)time(NULL), amz_date);

    wv_s3_pair hdr[10];
    size_t nh = 0;
    hdr[nh++] = (wv_s3_pair){"host", wv_buf_cstr(&host)};
    hdr[nh++] = (wv_s3_pair){"x-amz-date", amz_date};
    hdr[nh++] = (wv_s3_pair){"x-amz-content-sha256", payload_sha};
    if (st->token)
        hdr[nh++] = (wv_s3_pair){"x-amz-security-token", st->token};
    if (rq->range)
        hdr[nh++] = (wv_s3_pair){"range", rq->range};
    if (rq->if_none_match)
        hdr[nh++] = (wv_s3_pair){"if-none-match", rq->if_none_match};
    if (rq->if_match)
        hdr[nh++] = (wv_s3_pair){"if-match", rq->if_match};
    if (md5_b64)
        hdr[nh++] = (wv_s3_pair){"content-md5", md5_b64};
    if (rq->content_type)
        hdr[nh++] = (wv_s3_pair){"content-type", rq->content_type};

    wv_s3_sign_input in = {
        .method = rq->method,
        .path = wv_buf_cstr(&path),
        .query = rq->query,
        .nquery = rq->nquery,
        .headers = hdr,
        .nheaders = nh,
        .payload_sha256 = payload_sha,
        .amz_date = amz_date,
        .region = st->region,
        .service = "s3",
        .access_key_id = st->akid,
        .secret_access_key = st->secret,
    };
    if (wv_s3_sign(&in, &authz, NULL, NULL, err) != 0) {
        *internal_err = err ? err->code : WV_EINTERNAL;
        cc = CURLE_FAILED_INIT;
        goto out;
    }
    for (size_t i = 0; i < nh; i++) {
        wv_buf_reset(&line);
        wv_buf_printf(&line, "%s: %s", hdr[i].name, hdr[i].value);
        hl = curl_slist_append(hl, wv_buf_cstr(&line));
    }
    wv_buf_reset(&line);
    wv_buf_printf(&line, "Authorization: %s", wv_buf_cstr(&authz));
    hl = curl_slist_append(hl, wv_buf_cstr(&line));
    hl = curl_slist_append(hl, "Expect:");
    if (!rq->content_type)
        hl = curl_slist_append(hl, "Content-Type:");
    hl = curl_slist_append(hl, "Accept:");

    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, wv_buf_cstr(&url));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (st->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, st->ca_file);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    long cto = remaining_ms < S3_CONNECT_TIMEOUT_MS ? (long)remaining_ms : S3_CONNECT_TIMEOUT_MS;
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cto > 100 ? cto : 100L);
    /* No attempt outlives the operation's deadline: a store that accepts connections and never
     * answers fails within it, like one that refuses them. */
    long lst = remaining_ms / 1000 < S3_LOW_SPEED_SECONDS ? (long)(remaining_ms / 1000)
                                                          : S3_LOW_SPEED_SECONDS;
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, S3_LOW_SPEED_BYTES);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, lst > 1 ? lst : 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, remaining_ms > 100 ? (long)remaining_ms : 100L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, conn);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, conn);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, conn);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);

    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &br);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &br);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
    } else if (strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &br);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &br);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }

    rs->conn = conn;
    rs->acked = 0;
    cc = curl_easy_perform(h);
    rs->conn = NULL;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    } else {
        snprintf(curl_msg, CURL_ERROR_SIZE, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        /* a status line may have arrived before the transfer broke */
        if (cc == CURLE_WRITE_ERROR && rs->overflow)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    }
out:
    if (authz.data)
        memset(authz.data, 0, authz.cap);
    if (line.data)
        memset(line.data, 0, line.cap);
    curl_slist_free_all(hl);
    /* a handle whose transfer failed may hold a broken connection: do not keep it */
    if (cc == CURLE_OK)
        pool_put(st, conn);
    else
        conn_free(conn);
    wv_buf_free(&path);
    wv_buf_free(&url);
    wv_buf_free(&host);
    wv_buf_free(&authz);
    wv_buf_free(&line);
    return cc;
}

static int tls_config_error(CURLcode c)
{
    return c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CACERT_BADFILE ||
           c == CURLE_SSL_CERTPROBLEM || c == CURLE_SSL_ISSUER_ERROR ||
           c == CURLE_SSL_PINNEDPUBKEYNOTMATCH || c == CURLE_UNSUPPORTED_PROTOCOL ||
           c == CURLE_URL_MALFORMAT;
}

/*
 * Send a request, retrying transient failures until the driver's deadline. Returns 0 when the
 * store answered with a final status (rs->status, rs->code), or a negative WV_E* code.
 */
static int s3_request(s3_storage *st, const s3_req *rq, s3_resp *rs, wv_err *err)
{
    char payload_sha[65], md5_b64[25], curl_msg[CURL_ERROR_SIZE], what[600];
    const char *md5p = NULL;
    int64_t start = now_ms(), deadline = start + st->deadline_ms;
    size_t resp_max = rq->resp_max > S3_ERROR_BODY_MAX ? rq->resp_max : S3_ERROR_BODY_MAX;

    wv_s3_sha256_hex(rq->body ? (const void *)rq->body : "", rq->body_len, payload_sha);
    uint8_t md5[16];
    if (rq->content_md5) {
        wv_s3_md5(rq->body ? (const void *)rq->body : "", rq->body_len, md5);
        wv_s3_base64(md5, 16, md5_b64);
        md5p = md5_b64;
    }
    target_desc(st, rq, what, sizeof(what));

    for (unsigned attempt = 0;; attempt++) {
        int internal = 0;
        resp_reset(rs, resp_max);
        if (md5p)
            memcpy(rs->sent_md5, md5, sizeof(md5));
        int64_t remaining = deadline - now_ms();
        CURLcode cc =
            s3_perform(st, rq, payload_sha, md5p, remaining, rs, curl_msg, &internal, err);
        if (internal)
            return internal;
        if (cc == CURLE_WRITE_ERROR && rs->overflow)
            return wv_err_set(err, WV_EIO,
                              "%s: %s of %s: the response is larger than the %zu bytes expected",
                              st->repo, rq->method, what, rs->resp_max);
        if (cc == CURLE_OK)
            parse_error_body(rs);

        int retry;
        if (cc != CURLE_OK)
            retry = curl_transient(cc);
        else if (rs->status >= 500 || rs->status == 429)
            retry = 1;
        else if (rs->status == 400 && strcmp(rs->code, "RequestTimeout") == 0)
            retry = 1;
        else if (rs->status == 200 && rq->error_in_200 && rs->code[0])
            retry = code_transient(rs->code);
        else
            retry = 0;

        if (!retry) {
            if (cc == CURLE_OK) {
                /* Any success on an object proves the bucket exists (see s3_check_bucket). */
                if (rq->key && rs->status >= 200 && rs->status < 300)
                    __atomic_store_n(&st->bucket_ok, 1, __ATOMIC_RELEASE);
                return 0;
            }
            if (tls_config_error(cc))
                return wv_err_set(err, WV_ECONFIG, "%s: could not connect to %s for %s: %s",
                                  st->repo, st->endpoint, what, curl_msg),
                       wv_err_hint(err, "check the endpoint and, for https, ca_file");
            return wv_err_set(err, WV_EUNREACHABLE, "%s: %s of %s at %s failed: %s", st->repo,
                              rq->method, what, st->endpoint, curl_msg);
        }

        uint64_t cap = (uint64_t)S3_BACKOFF_BASE_MS << (attempt < 16 ? attempt : 16);
        if (cap > S3_BACKOFF_CAP_MS)
            cap = S3_BACKOFF_CAP_MS;
        uint32_t r = 0;
        if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
            r = (uint32_t)now_ms();
        int64_t wait = (int64_t)(r % (cap + 1)); /* full jitter */
        if (now_ms() + wait >= deadline) {
            if (cc != CURLE_OK)
                wv_err_set(err, WV_EUNREACHABLE,
                           "%s: could not reach %s for %s after %u attempts in %lld s: %s",
                           st->repo, st->endpoint, what, attempt + 1,
                           (long long)((now_ms() - start) / 1000), curl_msg);
            else
                wv_err_set(err, WV_EUNREACHABLE,
                           "%s: %s of %s at %s still failing after %u attempts: HTTP %ld%s%s",
                           st->repo, rq->method, what, st->endpoint, attempt + 1, rs->status,
                           rs->code[0] ? " " : "", rs->code);
            return wv_err_hint(err, "check that the object store is running and reachable");
        }
        if (cc != CURLE_OK)
            wv_log_info("%s: %s of %s: %s; retrying", st->repo, rq->method, what, curl_msg);
        else
            wv_log_info("%s: %s of %s: HTTP %ld %s; retrying", st->repo, rq->method, what,
                        rs->status, rs->code);
        sleep_ms(wait);
    }
}

/* Map a final non-success answer to an error. */
static int s3_status_error(s3_storage *st, const s3_req *rq, const s3_resp *rs, wv_err *err)
{
    char what[600];
    target_desc(st, rq, what, sizeof(what));
    const char *code = rs->code;
    if (strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "InvalidAccessKeyId") == 0 ||
        (rs->status == 403 && !code[0] && strcmp(rq->method, "HEAD") == 0)) {
        wv_err_set(err, WV_EAUTH, "%s: the store refused the credentials for %s (%s)", st->repo,
                   what, code[0] ? code : "HTTP 403");
        return wv_err_hint(err, "check the access key and secret");
    }
    if (strcmp(code, "RequestTimeTooSkewed") == 0) {
        wv_err_set(err, WV_EAUTH, "%s: the store refused the request for %s: clock skew", st->repo,
                   what);
        return wv_err_hint(err, "the clock of this host differs from the store's by more than "
                                "15 minutes: fix it (ntp)");
    }
    if (strcmp(code, "AccessDenied") == 0 || rs->status == 403) {
        wv_err_set(err, WV_EAUTH, "%s: access denied to %s", st->repo, what);
        return wv_err_hint(err, "check that the access key may read, write, list and delete in "
                                "the bucket");
    }
    if (strcmp(code, "NoSuchBucket") == 0) {
        wv_err_set(err, WV_ECONFIG, "%s: bucket \"%s\" does not exist at %s", st->repo, st->bucket,
                   st->endpoint);
        return wv_err_hint(err, "create the bucket or fix \"bucket\" in [%s]", st->repo);
    }
    if (rs->status == 404 && strcmp(code, "NoSuchKey") == 0) {
        /* The store said the key is missing, so the bucket exists: later HEADs answering 404
         * need not ask about the bucket again. */
        __atomic_store_n(&st->bucket_ok, 1, __ATOMIC_RELEASE);
        return wv_err_set(err, WV_ENOTFOUND, "%s: %s not found", st->repo, what);
    }
    if (rs->status == 412)
        return wv_err_set(err, WV_EEXIST, "%s: %s already exists", st->repo, what);
    return wv_err_set(err, WV_EIO, "%s: %s of %s at %s failed: HTTP %ld%s%s%s%s", st->repo,
                      rq->method, what, st->endpoint, rs->status, code[0] ? " " : "", code,
                      rs->message[0] ? ": " : "", rs->message);
}

static char *full_key(const s3_storage *st, const char *key)
{
    if (st->prefix[0])
        return wv_xasprintf("%s/%s", st->prefix, key);
    return wv_xstrdup(key);
}

/* HEAD of the bucket: 0 if it exists (and remembered), else the mapped error. */
static int s3_check_bucket(s3_storage *st, wv_err *err)
{
    if (__atomic_load_n(&st->bucket_ok, __ATOMIC_ACQUIRE))
        return 0;
    s3_req rq = {.method = "HEAD", .key = NULL, .ukey = ""};
    s3_resp rs = {0};
    int rc = s3_request(st, &rq, &rs, err);
    if (rc == 0) {
        if (rs.status == 200) {
            __atomic_store_n(&st->bucket_ok, 1, __ATOMIC_RELEASE);
        } else if (rs.status == 404) {
            snprintf(rs.code, sizeof(rs.code), "NoSuchBucket");
            rc = s3_status_error(st, &rq, &rs, err);
        } else {
            rc = s3_status_error(st, &rq, &rs, err);
        }
    }
    resp_free(&rs);
    return rc;
}

/* HEAD of an object. 0 with *exists set; errors as usual (never WV_ENOTFOUND). */
static int s3_head(s3_storage *st, const char *fkey, const char *ukey, int *exists, wv_stat *out,
                   wv_err *err)
{
    s3_req rq = {.method = "HEAD", .key = fkey, .ukey = ukey};
    s3_resp rs = {0};
    int rc = s3_request(st, &rq, &rs, err);
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
        rc = s3_check_bucket(st, err);
    } else {
        if (!rs.code[0] && rs.status >= 400 && rs.status < 500) {
            /* HEAD has no body: ask again with a GET of one byte to learn the error code (a
             * wrong secret and a missing permission need different hints) */
            s3_req g = {
                .method = "GET", .key = fkey, .ukey = ukey, .range = "bytes=0-0", .resp_max = 1};
            s3_resp gr = {0};
            wv_err ignored;
            wv_err_clear(&ignored);
            if (s3_request(st, &g, &gr, &ignored) == 0 && gr.status == rs.status && gr.code[0])
                snprintf(rs.code, sizeof(rs.code), "%s", gr.code);
            resp_free(&gr);
        }
        rc = s3_status_error(st, &rq, &rs, err);
    }
out:
    resp_free(&rs);
    return rc;
}

/* ---- write ---- */

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
    j->rc = s3_request(st, &rq, &rs, &j->err);
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
            j->rc = s3_status_error(st, &rq, &rs, &j->err);
        }
    }
    resp_free(&rs);
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
    int rc = s3_request(st, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = s3_status_error(st, &rq, &rs, err);
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
    resp_free(&rs);
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
    if (s3_request(s->st, &rq, &rs, &e) != 0)
        wv_log_warn("%s: could not abort the upload of \"%s\": %s", s->st->repo, s->ukey, e.msg);
    else if (rs.status != 204 && rs.status != 200 && rs.status != 404)
        wv_log_warn("%s: could not abort the upload of \"%s\": HTTP %ld %s", s->st->repo, s->ukey,
                    rs.status, rs.code);
    resp_free(&rs);
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
    int rc = s3_head(s->st, s->fkey, s->ukey, &exists, NULL, err);
    if (rc)
        return rc;
    if (exists)
        return wv_err_set(err, WV_EEXIST, "%s: \"%s\" already exists in bucket \"%s\"", s->st->repo,
                          s->ukey, s->st->bucket);
    return 0;
}

/*
 * Send the request that makes an object visible (the single PUT, or the completion of a multipart
 * upload). With NOREPLACE it carries If-None-Match: *; a store that does not implement conditional
 * requests (501) gets it again without (the HEAD just before is then all the check there is).
 * An existing key (412, or 409 ConditionalRequestConflict) is WV_EEXIST.
 */
static int s3_make_visible(s3_sink *s, s3_req *rq, s3_resp *rs, wv_err *err)
{
    s3_storage *st = s->st;
    int rc = s3_request(st, rq, rs, err);
    if (rc == 0 && rq->if_none_match && rs->status == 501) {
        rq->if_none_match = NULL;
        rc = s3_request(st, rq, rs, err);
    }
    if (rc == 0 && (rs->status == 412 ||
                    (rs->status == 409 && strcmp(rs->code, "ConditionalRequestConflict") == 0)))
        rc = wv_err_set(err, WV_EEXIST, "%s: \"%s\" already exists in bucket \"%s\"", st->repo,
                        s->ukey, st->bucket);
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
        rc = s3_status_error(st, &rq, &rs, err);
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
    resp_free(&rs);
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
        rc = s3_head(st, s->fkey, s->ukey, &exists, &sb, err);
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
        rc = s3_status_error(st, &rq, &rs, err);
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
    rc = s3_head(st, s->fkey, s->ukey, &exists, &sb, err);
    if (rc == 0 && (!exists || sb.size != s->total))
        rc = wv_err_set(err, WV_EIO, "%s: \"%s\" has %llu bytes after upload, %llu were sent",
                        st->repo, s->ukey, exists ? (unsigned long long)sb.size : 0ULL,
                        (unsigned long long)s->total);
out:
    wv_buf_free(&v);
    wv_buf_free(&body);
    resp_free(&rs);
    return rc;
}

/* ---- uploads in flight (WV_PUT_NOSYNC) ---- */

/*
 * A backup stores thousands of small files with one PUT each; a worker that waited for every
 * answer would leave its core idle for a round trip per file. So a sink committed with
 * WV_PUT_NOSYNC (and without NOREPLACE) whose object fits one PUT is handed to one of up to
 * S3_ASYNC_UPLOADS upload threads, and commit returns at once (it waits only while that many
 * uploads, or S3_ASYNC_BYTES of their bodies, are in flight). flush waits for them all and
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
           (st->async_active >= S3_ASYNC_UPLOADS || st->async_bytes + len > S3_ASYNC_BYTES))
        pthread_cond_wait(&st->async_cv, &st->async_mu);
    if (st->async_failed) {
        *err = st->async_err;
        pthread_mutex_unlock(&st->async_mu);
        sink_free(s);
        return wv_err_prefix(err, "stopped after an earlier upload failed: ");
    }
    if (st->async_nthreads <= st->async_active && st->async_nthreads < S3_ASYNC_UPLOADS &&
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
static int async_wait(s3_storage *st, wv_err *err)
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
static void async_drain(s3_storage *st)
{
    (void)async_wait(st, NULL);
}

static void async_stop(s3_storage *st)
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
    async_drain(s->st);
    if (noreplace && (rc = check_absent(s, err)) != 0)
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

static int s3_put_open(wv_storage *base, const char *key, unsigned flags, wv_sink **out,
                       wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    s3_sink *s = wv_xcalloc(1, sizeof(*s));
    s->base.ops = &s3_sink_ops;
    s->st = st;
    s->fkey = full_key(st, key);
    s->ukey = wv_xstrdup(key);
    s->flags = flags;
    /* NOREPLACE is checked just before the object becomes visible (a HEAD, then a conditional
     * request), not here: an early HEAD would cost every push one more round trip to save an
     * upload only in the rare case of a repeated push, which callers check for themselves. */
    *out = &s->base;
    return 0;
}

/* ---- read ---- */

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
    int rc = s3_request(st, &rq, &rs, err);
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
        rc = s3_status_error(st, &rq, &rs, err);
    }
out:
    resp_free(&rs);
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

static int s3_get_open(wv_storage *base, const char *key, int64_t offset, int64_t length,
                       wv_source **out, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    async_drain(st);
    s3_source *src = wv_xcalloc(1, sizeof(*src));
    int rc = 0;
    src->base.ops = &s3_source_ops;
    src->st = st;
    src->fkey = full_key(st, key);
    src->ukey = wv_xstrdup(key);

    if (offset < 0) {
        uint64_t n = (uint64_t)(-(offset + 1)) + 1;
        if (n <= WV_S3_READ_CHUNK) {
            rc = fetch_chunk(src, 1, (int64_t)n, err);
        } else {
            int exists;
            wv_stat sb;
            rc = s3_head(st, src->fkey, src->ukey, &exists, &sb, err);
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
        rc = s3_head(st, src->fkey, src->ukey, &exists, NULL, err);
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

/* ---- stat, list, remove ---- */

static int s3_stat(wv_storage *base, const char *key, wv_stat *out, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    async_drain(st);
    char *fkey = full_key(st, key);
    int exists;
    int rc = s3_head(st, fkey, key, &exists, out, err);
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

static int s3_list(wv_storage *base, const char *prefix, wv_list_cb cb, void *arg, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    async_drain(st);
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
        rc = s3_request(st, &rq, &rs, err);
        if (rc == 0 && rs.status != 200)
            rc = s3_status_error(st, &rq, &rs, err);
        int truncated = 0;
        if (rc == 0) {
            rc = wv_s3_parse_list((const char *)rs.body.data, rs.body.len, list_entry, &ctx,
                                  &truncated, &next, err);
            if (rc < 0 && err && err->code == rc && rc == WV_EFORMAT)
                wv_err_prefix(err, "%s: listing \"%s\" in bucket \"%s\": ", st->repo, prefix,
                              st->bucket);
        }
        resp_free(&rs);
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

static int s3_remove(wv_storage *base, const char *key, wv_err *err)
{
    s3_storage *st = (s3_storage *)base;
    async_drain(st);
    char *fkey = full_key(st, key);
    s3_req rq = {.method = "DELETE", .key = fkey, .ukey = key};
    s3_resp rs = {0};
    int rc = s3_request(st, &rq, &rs, err);
    if (rc == 0 && rs.status != 204 && rs.status != 200 &&
        !(rs.status == 404 && strcmp(rs.code, "NoSuchKey") == 0))
        rc = s3_status_error(st, &rq, &rs, err);
    resp_free(&rs);
    free(fkey);
    return rc;
}

static int s3_flush(wv_storage *base, wv_err *err)
{
    /* an acknowledged S3 write is durable: what is left is to wait for the uploads in flight */
    return async_wait((s3_storage *)base, err);
}

static void s3_free(wv_storage *base)
{
    s3_storage *st = (s3_storage *)base;
    if (!st)
        return;
    async_stop(st);
    for (int i = 0; i < st->npool; i++)
        conn_free(st->pool[i]);
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
    .features = WV_ST_ATOMIC_PUT | WV_ST_SERVER_SHA256 | WV_ST_ROUND_TRIPS,
    .put_open = s3_put_open,
    .get_open = s3_get_open,
    .stat = s3_stat,
    .list = s3_list,
    .remove = s3_remove,
    .flush = s3_flush,
    .free = s3_free,
};

int wv_storage_is_s3(const wv_storage *st)
{
    return st && st->ops == &s3_ops;
}

int wv_storage_s3_remove_batch(wv_storage *base, const char *const *keys, size_t n, wv_err *err)
{
    if (!wv_storage_is_s3(base))
        return wv_err_set(err, WV_EINTERNAL, "batch delete called on a non-s3 repository");
    s3_storage *st = (s3_storage *)base;
    async_drain(st);
    wv_buf body = WV_BUF_INIT, v = WV_BUF_INIT, k = WV_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += WV_S3_DELETE_BATCH) {
        size_t m = n - i < WV_S3_DELETE_BATCH ? n - i : WV_S3_DELETE_BATCH;
        wv_buf_reset(&body);
        wv_buf_append_str(&body, "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                 "<Quiet>true</Quiet>");
        for (size_t j = 0; j < m; j++) {
            if (!wv_storage_key_valid(keys[i + j])) {
                rc = wv_err_set(err, WV_EINTERNAL, "%s: invalid key \"%s\"", st->repo, keys[i + j]);
                goto out;
            }
            char *fk = full_key(st, keys[i + j]);
            wv_buf_append_str(&body, "<Object><Key>");
            wv_s3_xml_escape(&body, fk);
            wv_buf_append_str(&body, "</Key></Object>");
            free(fk);
        }
        wv_buf_append_str(&body, "</Delete>");
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
        rc = s3_request(st, &rq, &rs, err);
        if (rc == 0 && rs.status != 200)
            rc = s3_status_error(st, &rq, &rs, err);
        /* Quiet mode lists only failures: <Error><Key>..</Key><Code>..</Code></Error> */
        const char *x = (const char *)rs.body.data, *p = x;
        while (rc == 0 && x) {
            const char *e = wv_s3_xml_get(x, rs.body.len, p, "Error", &v);
            if (!e)
                break;
            p = e;
            wv_buf code = WV_BUF_INIT;
            wv_s3_xml_get((const char *)v.data, v.len, NULL, "Key", &k);
            wv_s3_xml_get((const char *)v.data, v.len, NULL, "Code", &code);
            if (strcmp(wv_buf_cstr(&code), "NoSuchKey") != 0) {
                const char *kk = wv_buf_cstr(&k);
                size_t strip = st->prefix[0] ? strlen(st->prefix) + 1 : 0;
                rc = wv_err_set(err, WV_EIO, "%s: could not delete \"%s\" in bucket \"%s\": %s",
                                st->repo, strlen(kk) > strip ? kk + strip : kk, st->bucket,
                                wv_buf_cstr(&code));
            }
            wv_buf_free(&code);
        }
        resp_free(&rs);
    }
out:
    wv_buf_free(&body);
    wv_buf_free(&v);
    wv_buf_free(&k);
    return rc;
}

/* ---- constructor ---- */

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
