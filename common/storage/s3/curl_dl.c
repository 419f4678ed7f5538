/* curl_dl.c - load libcurl on first use (see curl_dl.h). */
#define WV_CURL_DL_IMPL
#include "storage/s3/curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

wv_curl_api wv_curl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (!p && !load_error[0])
        snprintf(load_error, sizeof(load_error), "libcurl has no symbol %s", name);
    return p;
}

static void load(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_error, sizeof(load_error), "could not load libcurl: %s", e ? e : "unknown");
        return;
    }
    wv_curl.global_init = (CURLcode(*)(long))sym(h, "curl_global_init");
    wv_curl.easy_init = (CURL * (*)(void)) sym(h, "curl_easy_init");
    wv_curl.easy_setopt = (CURLcode(*)(CURL *, CURLoption, ...))sym(h, "curl_easy_setopt");
    wv_curl.easy_perform = (CURLcode(*)(CURL *))sym(h, "curl_easy_perform");
    wv_curl.easy_getinfo = (CURLcode(*)(CURL *, CURLINFO, ...))sym(h, "curl_easy_getinfo");
    wv_curl.easy_reset = (void (*)(CURL *))sym(h, "curl_easy_reset");
    wv_curl.easy_cleanup = (void (*)(CURL *))sym(h, "curl_easy_cleanup");
    wv_curl.easy_strerror = (const char *(*)(CURLcode))sym(h, "curl_easy_strerror");
    wv_curl.slist_append =
        (struct curl_slist * (*)(struct curl_slist *, const char *)) sym(h, "curl_slist_append");
    wv_curl.slist_free_all = (void (*)(struct curl_slist *))sym(h, "curl_slist_free_all");
    if (load_error[0])
        return;
    CURLcode rc = wv_curl.global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        snprintf(load_error, sizeof(load_error), "could not initialise libcurl: %s",
                 wv_curl.easy_strerror(rc));
}

int wv_curl_load(wv_err *err)
{
    pthread_once(&load_once, load);
    if (load_error[0]) {
        wv_err_set(err, WV_EINTERNAL, "%s", load_error);
        return wv_err_hint(err, "install libcurl4 (apt-get install libcurl4) for s3 repositories");
    }
    return 0;
}
