/*
 * curl_dl.h - libcurl, loaded on first use with dlopen.
 *
 * Only the s3 driver needs libcurl, and linking it into every program made each wal-push load about
 * 30 shared libraries (TLS, Kerberos, LDAP, ssh, HTTP/2...) at start-up, for every WAL segment,
 * even with only a local repository. Including this header after <curl/curl.h> turns the libcurl
 * calls the driver makes into calls through a table that wv_curl_load() fills, once, from
 * libcurl.so.4 (the ABI Debian's libcurl4 packages provide).
 */
#ifndef WALVAULT_STORAGE_S3_CURL_DL_H
#define WALVAULT_STORAGE_S3_CURL_DL_H

#include <curl/curl.h>

#include "core/error.h"

typedef struct wv_curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
    CURLcode (*easy_perform)(CURL *curl);
    CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
    void (*easy_reset)(CURL *curl);
    void (*easy_cleanup)(CURL *curl);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
} wv_curl_api;

extern wv_curl_api wv_curl;

/* Load libcurl and initialise it (curl_global_init), once per process; thread-safe. */
int wv_curl_load(wv_err *err);

#ifndef WV_CURL_DL_IMPL
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init    (*wv_curl.global_init)
#define curl_easy_init      (*wv_curl.easy_init)
#define curl_easy_setopt    (*wv_curl.easy_setopt)
#define curl_easy_perform   (*wv_curl.easy_perform)
#define curl_easy_getinfo   (*wv_curl.easy_getinfo)
#define curl_easy_reset     (*wv_curl.easy_reset)
#define curl_easy_cleanup   (*wv_curl.easy_cleanup)
#define curl_easy_strerror  (*wv_curl.easy_strerror)
#define curl_slist_append   (*wv_curl.slist_append)
#define curl_slist_free_all (*wv_curl.slist_free_all)
#endif

#endif
