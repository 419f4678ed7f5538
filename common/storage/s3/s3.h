/*
 * storage/s3/s3.h - what the S3 driver offers beyond the storage/driver.h contract.
 *
 * The driver itself (wv_storage_s3_new, declared in storage/driver.h) speaks S3 over libcurl with
 * Signature V4 (storage/s3/sign.h). Its choices, in short:
 *   - Credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) from the
 *     environment when both are set, else access_key_id and the file secret_access_key_file.
 *   - TLS is always verified (ca_file names extra trust anchors); plain http only when the endpoint
 *     says http://.
 *   - Writes: one PutObject for objects smaller than one part, else a multipart upload with up to
 *     WV_S3_PARTS_IN_FLIGHT parts uploading at once (memory: that many parts plus the one being
 *     filled). Part sizes follow wv_s3_part_size(): 8 MiB, doubling every 1000 parts, so 10,000
 *     parts hold more than 5 TiB while objects below ~7.8 GiB keep 8 MiB parts. Every PUT carries
 *     Content-MD5 and x-amz-content-sha256 of its payload, so the store verifies what it received;
 *     commit also checks the ETag of a single PUT against the MD5 we computed.
 *   - WV_PUT_NOREPLACE: a HEAD just before the final PUT/CompleteMultipartUpload, and
 *     `If-None-Match: *` on that request (412 means WV_EEXIST). A store that ignores
 *     If-None-Match leaves a window between the HEAD and the final request in which two writers
 *     can both succeed, the later one replacing the earlier.
 *   - WV_PUT_NOSYNC (backups: thousands of small files) without NOREPLACE: an object that fits
 *     one PUT is handed to an upload thread and commit returns at once; up to 8 such uploads (and
 *     32 MiB of their bodies) are in flight, so a worker compresses the next file instead of
 *     waiting a round trip. flush waits for them and returns the first failure, which also fails
 *     every later commit; every other operation waits for them first. An acknowledged S3 write is
 *     durable, so that wait is all flush does.
 *   - Every answer is acknowledged at once (TCP_QUICKACK, set again at each libcurl wake-up):
 *     Ceph RGW writes session tickets, headers and body as separate small writes with Nagle's
 *     algorithm on, and each would otherwise wait ~40 ms for Linux's delayed ACK.
 *   - Reads are sequential ranged GETs of WV_S3_READ_CHUNK bytes, each after the first pinned to
 *     the first response's ETag with If-Match, so an object replaced mid-read is an error.
 *   - Retries: exponential backoff with full jitter on 5xx, 429, RequestTimeout and transport
 *     failures, until a per-operation deadline; never on other 4xx.
 *
 * Test knobs (environment, read once in wv_storage_s3_new):
 *   WALVAULT_S3_TIMEOUT        retry deadline of one operation in seconds (default 60)
 *   WALVAULT_S3_LIST_MAX_KEYS  max-keys of one ListObjectsV2 page (default 1000)
 */
#ifndef WALVAULT_STORAGE_S3_S3_H
#define WALVAULT_STORAGE_S3_S3_H

#include <stddef.h>

#include "storage/storage.h"

#define WV_S3_PARTS_IN_FLIGHT 3
#define WV_S3_READ_CHUNK      ((size_t)8 << 20)
#define WV_S3_DELETE_BATCH    1000

/* 1 if st is an S3 repository. */
int wv_storage_is_s3(const wv_storage *st);

/*
 * Delete n keys (relative to the repository, as for wv_storage_remove) with DeleteObjects requests
 * of at most WV_S3_DELETE_BATCH keys each. Absent keys count as deleted. Fails with WV_EINTERNAL
 * if st is not an S3 repository; otherwise the first key the store refused is named in err.
 */
int wv_storage_s3_remove_batch(wv_storage *st, const char *const *keys, size_t n, wv_err *err);

#endif
