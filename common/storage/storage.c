/* storage.c - driver dispatch, key validation, and the helpers every driver user shares. */
#include "storage/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/driver.h"

int wv_storage_open(const wv_repo_config *rc, wv_storage **out, wv_err *err)
{
    int (*ctor)(const wv_repo_config *, wv_storage **, wv_err *) = NULL;
    const char *type = "?";
    switch (rc->type) {
    case WV_REPO_POSIX:
        ctor = wv_storage_posix_new;
        type = "posix";
        break;
    case WV_REPO_S3:
        ctor = wv_storage_s3_new;
        type = "s3";
        break;
    case WV_REPO_SSH:
        ctor = wv_storage_ssh_new;
        type = "ssh";
        break;
    }
    if (!ctor)
        return wv_err_set(err, WV_ECONFIG, "%s: repository type %s is not supported by this build",
                          rc->name, type);
    int rc_ = ctor(rc, out, err);
    if (rc_ != 0)
        return rc_;
    snprintf((*out)->name, sizeof((*out)->name), "%s", rc->name);
    return 0;
}

void wv_storage_free(wv_storage *st)
{
    if (st)
        st->ops->free(st);
}

const char *wv_storage_name(const wv_storage *st)
{
    return st->name;
}

const char *wv_storage_location(const wv_storage *st)
{
    return st->location ? st->location : "";
}

void wv_storage_set_crypto(wv_storage *st, const struct wv_obj_crypto *c)
{
    st->crypto = c;
}

const struct wv_obj_crypto *wv_storage_crypto(const wv_storage *st)
{
    return st ? st->crypto : NULL;
}

unsigned wv_storage_features(const wv_storage *st)
{
    return st->ops->features;
}

int wv_storage_key_valid(const char *key)
{
    const char *p = key;
    if (!key || !*key || *key == '/')
        return 0;
    for (const char *c = key; *c; c++)
        if (*c < 0x21 || *c > 0x7e || *c == '\\')
            return 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!slash)
            break;
        p = slash + 1;
        if (!*p)
            return 0; /* trailing slash */
    }
    return 1;
}

static int bad_key(wv_storage *st, const char *key, wv_err *err)
{
    wv_err_set(err, WV_EINTERNAL, "%s: invalid object key \"%s\"", st->name, key ? key : "(null)");
    return wv_err_names(err, st->name, key);
}

/* Every error of a driver operation names the repository (once: core/error.c). The object is
 * named by the driver where its message says which (the path of the key, or the key itself);
 * sinks and sources are named by their users, who know the repository and the key. */
static int with_repo(wv_storage *st, int rc, wv_err *err)
{
    if (rc != 0)
        wv_err_context(err, st->name, NULL);
    return rc;
}

int wv_storage_put_open(wv_storage *st, const char *key, unsigned flags, wv_sink **out, wv_err *err)
{
    if (!wv_storage_key_valid(key))
        return bad_key(st, key, err);
    return with_repo(st, st->ops->put_open(st, key, flags, out, err), err);
}

int wv_storage_get_open(wv_storage *st, const char *key, int64_t offset, int64_t length,
                        wv_source **out, wv_err *err)
{
    if (!wv_storage_key_valid(key))
        return bad_key(st, key, err);
    return with_repo(st, st->ops->get_open(st, key, offset, length, out, err), err);
}

int wv_storage_stat(wv_storage *st, const char *key, wv_stat *out, wv_err *err)
{
    if (!wv_storage_key_valid(key))
        return bad_key(st, key, err);
    return with_repo(st, st->ops->stat(st, key, out, err), err);
}

int wv_storage_list(wv_storage *st, const char *prefix, wv_list_cb cb, void *arg, wv_err *err)
{
    int rc = st->ops->list(st, prefix ? prefix : "", cb, arg, err);
    return rc < 0 ? with_repo(st, rc, err) : rc;
}

int wv_storage_remove(wv_storage *st, const char *key, wv_err *err)
{
    if (!wv_storage_key_valid(key))
        return bad_key(st, key, err);
    return with_repo(st, st->ops->remove(st, key, err), err);
}

int wv_storage_remove_many(wv_storage *st, const char *const *keys, size_t n, wv_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (!keys || !wv_storage_key_valid(keys[i]))
            return bad_key(st, keys ? keys[i] : NULL, err);
    if (n == 0)
        return 0;
    if (st->ops->remove_many)
        return with_repo(st, st->ops->remove_many(st, keys, n, err), err);
    for (size_t i = 0; i < n; i++) {
        int rc = st->ops->remove(st, keys[i], err);
        if (rc != 0)
            return with_repo(st, rc, err);
    }
    return 0;
}

int wv_storage_flush(wv_storage *st, wv_err *err)
{
    return with_repo(st, st->ops->flush(st, err), err);
}

int wv_storage_probe_noreplace(wv_storage *st, const char *key, const void *data, size_t len,
                               wv_err *err)
{
    if (!st->ops->probe_noreplace)
        return 0;
    return with_repo(st, st->ops->probe_noreplace(st, key, data, len, err), err);
}

int wv_sink_write(wv_sink *s, const void *buf, size_t len, wv_err *err)
{
    return s->ops->write(s, buf, len, err);
}

int wv_sink_commit(wv_sink *s, wv_err *err)
{
    return s->ops->commit(s, err);
}

void wv_sink_abort(wv_sink *s)
{
    if (s)
        s->ops->abort(s);
}

int wv_source_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    return s->ops->read(s, buf, cap, got, err);
}

void wv_source_close(wv_source *s)
{
    if (s)
        s->ops->close(s);
}

/* --- Small whole objects ---------------------------------------------------------------------- */

int wv_storage_get_all(wv_storage *st, const char *key, size_t max, wv_buf *out, wv_err *err)
{
    wv_source *src = NULL;
    int rc = wv_storage_get_open(st, key, 0, -1, &src, err);
    if (rc != 0)
        return rc;
    for (;;) {
        size_t got = 0;
        uint8_t *p = wv_buf_reserve(out, 64 * 1024);
        rc = wv_source_read(src, p, 64 * 1024, &got, err);
        if (rc != 0)
            break;
        if (got == 0)
            break;
        out->len += got;
        if (out->len > max) {
            rc = wv_err_set(err, WV_ECORRUPT, "%s: object \"%s\" is larger than %zu bytes",
                            st->name, key, max);
            wv_err_names(err, st->name, key);
            break;
        }
    }
    wv_source_close(src);
    return rc;
}

int wv_storage_put_all(wv_storage *st, const char *key, unsigned flags, const void *data,
                       size_t len, wv_err *err)
{
    wv_sink *sink = NULL;
    int rc = wv_storage_put_open(st, key, flags, &sink, err);
    if (rc != 0)
        return rc;
    rc = wv_sink_write(sink, data, len, err);
    if (rc != 0) {
        wv_sink_abort(sink);
        return with_repo(st, rc, err);
    }
    return with_repo(st, wv_sink_commit(sink, err), err);
}
