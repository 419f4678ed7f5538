/*
 * storage/s3/internal.h - what the files of the S3 driver share, and nothing else includes.
 *
 * The driver (wv_storage_s3_new, declared in storage/driver.h) speaks S3 over libcurl (loaded with
 * dlopen, storage/s3/curl_dl.h) with Signature V4 (storage/s3/sign.h). It is split along its
 * sections:
 *   http.c    the connection pool, one request (headers, signing, the curl handle, performing),
 *             retries with backoff and jitter, TCP_QUICKACK, mapping a final status to an error
 *   write.c   the sink: single PUT, multipart upload, the uploads in flight (WV_PUT_NOSYNC)
 *   read.c    the ranged GET source, HEAD (stat, and telling a missing key from a missing
 *             bucket), ListObjectsV2
 *   driver.c  the ops table, open (configuration, credentials), remove and remove_many
 *             (DeleteObjects), flush, free
 * Each file explains its own choices next to the code that makes them.
 *
 * Names: wv__s3_* are shared between these files; everything else in them is static. Messages
 * start with the repository name and name bucket and key; credentials never appear in a message
 * or a log line (only the access key id is used, in the signature's scope).
 */
#ifndef WALVAULT_STORAGE_S3_INTERNAL_H
#define WALVAULT_STORAGE_S3_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "storage/driver.h"
#include "storage/s3/sign.h"

#define WV_S3_PARTS_IN_FLIGHT 3                  /* part uploads of one sink at once */
#define WV_S3_READ_CHUNK      ((size_t)8 << 20)  /* one ranged GET of a source */
#define WV_S3_DELETE_BATCH    1000               /* keys of one DeleteObjects (S3's limit) */
#define WV_S3_POOL_MAX        16                 /* idle connections kept */
#define WV_S3_ASYNC_UPLOADS   8                  /* NOSYNC single PUTs in flight */
#define WV_S3_ASYNC_BYTES     ((size_t)32 << 20) /* and the bodies they hold, at most */

struct s3_conn;
struct s3_sink;

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
    /* The store answered a conditional single PUT on an existing key with 412 (atomic): it honors
     * If-None-Match there, so a NOREPLACE single PUT needs no HEAD before it (write.c). */
    int noreplace_honored;
    /* Idle connections (http.c). */
    pthread_mutex_t pool_mu;
    struct s3_conn *pool[WV_S3_POOL_MAX];
    int npool;
    /* Uploads of sinks committed with WV_PUT_NOSYNC (write.c). */
    pthread_mutex_t async_mu;
    pthread_cond_t async_cv;
    struct s3_sink *async_head, *async_tail; /* queued, not yet taken by a thread */
    int async_active;                        /* queued + uploading */
    size_t async_bytes;                      /* their bodies */
    int async_nthreads;
    int async_stop;
    int async_failed;
    wv_err async_err; /* the first failure, reported by the next commit, flush or operation */
    pthread_t async_threads[WV_S3_ASYNC_UPLOADS];
} s3_storage;

/* ---- http.c ---- */

/* One request. Everything is borrowed from the caller for the duration of wv__s3_request. */
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

/* The store's final answer to a request. Zero-initialise; release with wv__s3_resp_free. */
typedef struct s3_resp {
    long status;
    wv_buf body;
    char etag[128];
    char content_range[128];
    char last_modified[64];
    uint64_t content_length;
    int has_length;
    char code[64]; /* S3 error code from an <Error> document */
    char message[256];
    uint8_t sent_md5[16]; /* MD5 of the body sent, when the request has content_md5 */
    /* The attempt in progress (http.c only). */
    size_t resp_max;
    int overflow;         /* the body was larger than resp_max */
    struct s3_conn *conn; /* the transfer's connection, while it runs */
    int acked;            /* the answer's first bytes were acknowledged at once */
    int transient;        /* the transport failed in a way another attempt may overcome */
    char transport[256];  /* what the transport said when it failed */
} s3_resp;

/*
 * Send a request, retrying transient failures until the driver's deadline. Returns 0 when the
 * store gave a final answer (any HTTP status that is not worth retrying: rs->status, rs->code),
 * and a negative WV_E* code only when the store could not be reached within the deadline or the
 * request could not be built. Callers map a final status with wv__s3_status_error().
 */
int wv__s3_request(s3_storage *st, const s3_req *rq, s3_resp *rs, wv_err *err);

/* Map a final non-success answer to an error (credentials, clock, permissions, missing bucket or
 * key, an existing key, anything else). Returns the code. */
int wv__s3_status_error(s3_storage *st, const s3_req *rq, const s3_resp *rs, wv_err *err);

void wv__s3_resp_free(s3_resp *rs);

/* Close every idle connection (the driver's free). */
void wv__s3_pool_close(s3_storage *st);

/* ---- read.c ---- */

int wv__s3_get_open(wv_storage *base, const char *key, int64_t offset, int64_t length,
                    wv_source **out, wv_err *err);
int wv__s3_stat(wv_storage *base, const char *key, wv_stat *out, wv_err *err);
int wv__s3_list(wv_storage *base, const char *prefix, wv_list_cb cb, void *arg, wv_err *err);

/* HEAD of an object (fkey: full key, ukey: the repository's key). 0 with *exists set (and *out
 * when exists and out is not NULL); a missing bucket is an error, never WV_ENOTFOUND. */
int wv__s3_head(s3_storage *st, const char *fkey, const char *ukey, int *exists, wv_stat *out,
                wv_err *err);

/* ---- write.c ---- */

int wv__s3_put_open(wv_storage *base, const char *key, unsigned flags, wv_sink **out, wv_err *err);
int wv__s3_probe_noreplace(wv_storage *base, const char *key, const void *data, size_t len,
                           wv_err *err);

/* Wait until no upload is in flight. 0, or the first failure of one (err may be NULL). */
int wv__s3_async_wait(s3_storage *st, wv_err *err);

/* Before any other operation: let the uploads in flight land (their failure is reported by the
 * next commit or flush, not by an unrelated read or removal). */
void wv__s3_async_drain(s3_storage *st);

/* Stop and join the upload threads (the driver's free). */
void wv__s3_async_stop(s3_storage *st);

/* ---- driver.c ---- */

/* The key inside the bucket: the configured prefix, '/', the repository's key. Free it. */
char *wv__s3_full_key(const s3_storage *st, const char *key);

#endif
