/*
 * storage/s3/http.c - the S3 driver's HTTP transport: a pool of connections, one signed request
 * performed with libcurl, retries, and the mapping of a final answer to an error.
 *
 * Every request goes through wv__s3_request(), which signs, sends, retries and classifies. It
 * returns 0 once the store gave a final answer (any HTTP status that is not worth retrying), and
 * an error only when the store could not be reached within the deadline or the request could not
 * be built. Callers then map the status with wv__s3_status_error().
 *
 * Easy handles are kept in a small per-driver pool so that connections are reused across
 * requests; the pool is guarded by a mutex, so one driver serves several threads.
 */
#include "storage/s3/internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "storage/s3/curl_dl.h"

#define S3_ERROR_BODY_MAX     ((size_t)64 << 10)
#define S3_BACKOFF_BASE_MS    100
#define S3_BACKOFF_CAP_MS     5000
#define S3_CONNECT_TIMEOUT_MS 10000L
#define S3_LOW_SPEED_BYTES    1024L
#define S3_LOW_SPEED_SECONDS  30L

/* An easy handle and the socket of the connection it keeps open (for ack_now). */
typedef struct s3_conn {
    CURL *h;
    curl_socket_t fd;
} s3_conn;

/* A request body, read by libcurl (and rewound when it resends). */
typedef struct body_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
} body_reader;

/* What is computed once per request, however many attempts it takes. */
typedef struct s3_payload {
    char sha256[65]; /* x-amz-content-sha256 */
    int has_md5;
    uint8_t md5[16];
    char md5_b64[25]; /* Content-MD5 */
} s3_payload;

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

/* ---- the connection pool ---- */

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
    if (st->npool < WV_S3_POOL_MAX) {
        st->pool[st->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&st->pool_mu);
    conn_free(c);
}

void wv__s3_pool_close(s3_storage *st)
{
    for (int i = 0; i < st->npool; i++)
        conn_free(st->pool[i]);
    st->npool = 0;
}

/* ---- libcurl callbacks ---- */

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

/* ---- responses ---- */

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
    rs->transient = 0;
    rs->transport[0] = '\0';
}

void wv__s3_resp_free(s3_resp *rs)
{
    wv_buf_free(&rs->body);
}

/* Parse <Error><Code>..</Code><Message>..</Message></Error> from the body, if there is one. */
static void parse_error_body(s3_resp *rs)
{
    if (rs->body.len == 0)
        return;
    const char *x = (const char *)rs->body.data;
    if (!strstr(wv_buf_cstr(&rs->body), "<Error>"))
        return;
    wv_buf v = WV_BUF_INIT;
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

static const char *target_desc(const s3_storage *st, const s3_req *rq, char *buf, size_t cap)
{
    if (rq->ukey && rq->ukey[0])
        snprintf(buf, cap, "\"%s\" in bucket \"%s\"", rq->ukey, st->bucket);
    else
        snprintf(buf, cap, "bucket \"%s\"", st->bucket);
    return buf;
}

/* ---- one attempt ---- */

static void payload_init(s3_payload *pl, const s3_req *rq)
{
    const void *body = rq->body ? (const void *)rq->body : "";
    wv_s3_sha256_hex(body, rq->body_len, pl->sha256);
    pl->has_md5 = rq->content_md5;
    if (pl->has_md5) {
        wv_s3_md5(body, rq->body_len, pl->md5);
        wv_s3_base64(pl->md5, 16, pl->md5_b64);
    }
}

/* The path as signed ("/bucket/key" or "/key"), the URL and the host header. */
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

static int add_header(struct curl_slist **hl, const char *line)
{
    struct curl_slist *n = curl_slist_append(*hl, line);
    if (!n)
        return -1;
    *hl = n;
    return 0;
}

/*
 * The request's URL and its header list, signed with Signature V4 (every header we send is
 * signed). The Authorization value passes only through buffers that are wiped before they are
 * freed. Returns 0, or an error with *out left NULL.
 */
static int build_headers(s3_storage *st, const s3_req *rq, const s3_payload *pl, wv_buf *url,
                         struct curl_slist **out, wv_err *err)
{
    wv_buf path = WV_BUF_INIT, host = WV_BUF_INIT, authz = WV_BUF_INIT, line = WV_BUF_INIT;
    struct curl_slist *hl = NULL;
    char amz_date[17];
    int rc, bad = 0;

    build_target(st, rq, &path, url, &host);
    wv_s3_amz_date((int64_t)time(NULL), amz_date);

    wv_s3_pair hdr[10];
    size_t nh = 0;
    hdr[nh++] = (wv_s3_pair){"host", wv_buf_cstr(&host)};
    hdr[nh++] = (wv_s3_pair){"x-amz-date", amz_date};
    hdr[nh++] = (wv_s3_pair){"x-amz-content-sha256", pl->sha256};
    if (st->token)
        hdr[nh++] = (wv_s3_pair){"x-amz-security-token", st->token};
    if (rq->range)
        hdr[nh++] = (wv_s3_pair){"range", rq->range};
    if (rq->if_none_match)
        hdr[nh++] = (wv_s3_pair){"if-none-match", rq->if_none_match};
    if (rq->if_match)
        hdr[nh++] = (wv_s3_pair){"if-match", rq->if_match};
    if (pl->has_md5)
        hdr[nh++] = (wv_s3_pair){"content-md5", pl->md5_b64};
    if (rq->content_type)
        hdr[nh++] = (wv_s3_pair){"content-type", rq->content_type};

    wv_s3_sign_input in = {
        .method = rq->method,
        .path = wv_buf_cstr(&path),
        .query = rq->query,
        .nquery = rq->nquery,
        .headers = hdr,
        .nheaders = nh,
        .payload_sha256 = pl->sha256,
        .amz_date = amz_date,
        .region = st->region,
        .service = "s3",
        .access_key_id = st->akid,
        .secret_access_key = st->secret,
    };
    rc = wv_s3_sign(&in, &authz, NULL, NULL, err);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < nh; i++) {
        wv_buf_reset(&line);
        wv_buf_printf(&line, "%s: %s", hdr[i].name, hdr[i].value);
        bad |= add_header(&hl, wv_buf_cstr(&line));
    }
    wv_buf_reset(&line);
    wv_buf_printf(&line, "Authorization: %s", wv_buf_cstr(&authz));
    bad |= add_header(&hl, wv_buf_cstr(&line));
    /* no "100 continue" round trip, and none of the headers libcurl would add unsigned */
    bad |= add_header(&hl, "Expect:");
    if (!rq->content_type)
        bad |= add_header(&hl, "Content-Type:");
    bad |= add_header(&hl, "Accept:");
    if (bad) {
        curl_slist_free_all(hl);
        hl = NULL;
        rc = wv_err_set(err, WV_EINTERNAL, "%s: out of memory building a request", st->repo);
    }
out:
    if (authz.data)
        memset(authz.data, 0, authz.cap);
    if (line.data)
        memset(line.data, 0, line.cap);
    wv_buf_free(&path);
    wv_buf_free(&host);
    wv_buf_free(&authz);
    wv_buf_free(&line);
    *out = hl;
    return rc;
}

/*
 * Point the handle at the request. TLS is always verified (ca_file names extra trust anchors);
 * plain http only when the endpoint says http://, and redirects are never followed.
 */
static void configure_handle(s3_storage *st, s3_conn *conn, const s3_req *rq, const char *url,
                             struct curl_slist *hl, int64_t remaining_ms, s3_resp *rs,
                             body_reader *br, char *errbuf)
{
    CURL *h = conn->h;
    curl_easy_setopt(h, CURLOPT_URL, url);
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
        curl_easy_setopt(h, CURLOPT_READDATA, br);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, br);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
    } else if (strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, br);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, br);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
}

/* Transport failures that another attempt may overcome. */
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

/* Failures that only a change of the configuration (endpoint, ca_file) can fix. */
static int tls_config_error(CURLcode c)
{
    return c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CACERT_BADFILE ||
           c == CURLE_SSL_CERTPROBLEM || c == CURLE_SSL_ISSUER_ERROR ||
           c == CURLE_SSL_PINNEDPUBKEYNOTMATCH || c == CURLE_UNSUPPORTED_PROTOCOL ||
           c == CURLE_URL_MALFORMAT;
}

/* The error of a transfer that failed (rs->transport says how); sets rs->transient. */
static int transport_error(s3_storage *st, const s3_req *rq, const char *what, CURLcode cc,
                           s3_resp *rs, wv_err *err)
{
    rs->transient = 0;
    if (cc == CURLE_WRITE_ERROR && rs->overflow)
        return wv_err_set(err, WV_EIO,
                          "%s: %s of %s: the response is larger than the %zu bytes expected",
                          st->repo, rq->method, what, rs->resp_max);
    if (tls_config_error(cc)) {
        wv_err_set(err, WV_ECONFIG, "%s: could not connect to %s for %s: %s", st->repo,
                   st->endpoint, what, rs->transport);
        return wv_err_hint(err, "check the endpoint and, for https, ca_file");
    }
    rs->transient = curl_transient(cc);
    return wv_err_set(err, WV_EUNREACHABLE, "%s: %s of %s at %s failed: %s", st->repo, rq->method,
                      what, st->endpoint, rs->transport);
}

/*
 * One attempt: build and sign the request, configure a pooled handle, perform it. 0 when the
 * store answered (rs->status and what came with it), else a WV_E* code with err set and
 * rs->transient saying whether another attempt may succeed.
 */
static int s3_attempt(s3_storage *st, const s3_req *rq, const s3_payload *pl, const char *what,
                      int64_t remaining_ms, s3_resp *rs, wv_err *err)
{
    wv_buf url = WV_BUF_INIT;
    struct curl_slist *hl = NULL;
    body_reader br = {rq->body, rq->body_len, 0};
    char errbuf[CURL_ERROR_SIZE];
    CURLcode cc = CURLE_FAILED_INIT;
    int rc;

    s3_conn *conn = pool_get(st);
    if (!conn)
        return wv_err_set(err, WV_EINTERNAL, "%s: could not create an http handle", st->repo);
    rc = build_headers(st, rq, pl, &url, &hl, err);
    if (rc != 0)
        goto out;
    errbuf[0] = '\0';
    configure_handle(st, conn, rq, wv_buf_cstr(&url), hl, remaining_ms, rs, &br, errbuf);
    rs->conn = conn;
    rs->acked = 0;
    cc = curl_easy_perform(conn->h);
    rs->conn = NULL;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(conn->h, CURLINFO_RESPONSE_CODE, &rs->status);
    } else {
        snprintf(rs->transport, sizeof(rs->transport), "%s",
                 errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = transport_error(st, rq, what, cc, rs, err);
    }
out:
    curl_slist_free_all(hl);
    /* a handle whose transfer failed may hold a broken connection: do not keep it */
    if (cc == CURLE_OK)
        pool_put(st, conn);
    else
        conn_free(conn);
    wv_buf_free(&url);
    return rc;
}

/* ---- retries ---- */

static int code_transient(const char *code)
{
    return strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ||
           strcmp(code, "ServiceUnavailable") == 0 || strcmp(code, "RequestTimeout") == 0;
}

/* An answer worth another attempt: 5xx, 429, 400 RequestTimeout, and a 200 that carries a
 * transient <Error> document where one can (CompleteMultipartUpload). */
static int status_transient(const s3_req *rq, const s3_resp *rs)
{
    if (rs->status >= 500 || rs->status == 429)
        return 1;
    if (rs->status == 400 && strcmp(rs->code, "RequestTimeout") == 0)
        return 1;
    if (rs->status == 200 && rq->error_in_200 && rs->code[0])
        return code_transient(rs->code);
    return 0;
}

/* Exponential backoff with full jitter: a random wait of up to 100 ms doubled per attempt,
 * capped at 5 s, so that many clients retrying at once spread out. */
static int64_t backoff_ms(unsigned attempt)
{
    uint64_t cap = (uint64_t)S3_BACKOFF_BASE_MS << (attempt < 16 ? attempt : 16);
    if (cap > S3_BACKOFF_CAP_MS)
        cap = S3_BACKOFF_CAP_MS;
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)now_ms();
    return (int64_t)(r % (cap + 1));
}

/*
 * Retries: on 5xx, 429, RequestTimeout and transport failures, with backoff and jitter, until the
 * per-operation deadline (WALVAULT_S3_TIMEOUT, see driver.c); never on other 4xx, which another
 * attempt would only repeat.
 */
int wv__s3_request(s3_storage *st, const s3_req *rq, s3_resp *rs, wv_err *err)
{
    char what[600];
    s3_payload pl;
    int64_t start = now_ms(), deadline = start + st->deadline_ms;
    size_t resp_max = rq->resp_max > S3_ERROR_BODY_MAX ? rq->resp_max : S3_ERROR_BODY_MAX;

    payload_init(&pl, rq);
    target_desc(st, rq, what, sizeof(what));
    for (unsigned attempt = 0;; attempt++) {
        wv_err e;
        wv_err_clear(&e);
        resp_reset(rs, resp_max);
        if (pl.has_md5)
            memcpy(rs->sent_md5, pl.md5, sizeof(pl.md5));
        int rc = s3_attempt(st, rq, &pl, what, deadline - now_ms(), rs, &e);
        if (rc != 0 && !rs->transient) {
            if (err)
                *err = e;
            return rc;
        }
        if (rc == 0) {
            parse_error_body(rs);
            if (!status_transient(rq, rs)) {
                /* Any success on an object proves the bucket exists (see read.c's check_bucket). */
                if (rq->key && rs->status >= 200 && rs->status < 300)
                    __atomic_store_n(&st->bucket_ok, 1, __ATOMIC_RELEASE);
                return 0;
            }
        }

        int64_t wait = backoff_ms(attempt);
        if (now_ms() + wait >= deadline) {
            if (rc != 0)
                wv_err_set(err, WV_EUNREACHABLE,
                           "%s: could not reach %s for %s after %u attempts in %lld s: %s",
                           st->repo, st->endpoint, what, attempt + 1,
                           (long long)((now_ms() - start) / 1000), rs->transport);
            else
                wv_err_set(err, WV_EUNREACHABLE,
                           "%s: %s of %s at %s still failing after %u attempts: HTTP %ld%s%s",
                           st->repo, rq->method, what, st->endpoint, attempt + 1, rs->status,
                           rs->code[0] ? " " : "", rs->code);
            return wv_err_hint(err, "check that the object store is running and reachable");
        }
        if (rc != 0)
            wv_log_info("%s: %s of %s: %s; retrying", st->repo, rq->method, what, rs->transport);
        else
            wv_log_info("%s: %s of %s: HTTP %ld %s; retrying", st->repo, rq->method, what,
                        rs->status, rs->code);
        sleep_ms(wait);
    }
}

/* ---- a final answer as an error ---- */

int wv__s3_status_error(s3_storage *st, const s3_req *rq, const s3_resp *rs, wv_err *err)
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
