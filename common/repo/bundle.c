/*
 * bundle.c - reading and writing the bundles of a backup (see bundle.h).
 */
#include "repo/bundle.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"
#include "repo/repo.h"
#include "storage/driver.h"

void wv_bundle_set_add(wv_bundle_set *s, const char *id, const wv_manifest_entry *e)
{
    char key[300];
    int64_t off, len;
    wv_manifest_file_object(id, e, key, sizeof(key), &off, &len);
    wv_bundle *b = NULL;
    /* members of one bundle are written together, so the last bundle is the likely one */
    for (size_t i = s->n; i-- > 0 && !b;)
        if (s->b[i] && strcmp(s->b[i]->key, key) == 0)
            b = s->b[i];
    if (!b) {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 16;
            s->b = wv_xrealloc(s->b, s->cap * sizeof(*s->b));
        }
        b = wv_xcalloc(1, sizeof(*b));
        snprintf(b->key, sizeof(b->key), "%s", key);
        s->b[s->n++] = b;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->m = wv_xrealloc(b->m, b->cap * sizeof(*b->m));
    }
    wv_bundle_member *m = &b->m[b->n++];
    m->path = wv_xstrdup(e->path);
    m->offset = e->offset;
    m->stored_size = e->stored_size;
    m->size = e->size;
    m->mode = e->mode;
    m->mtime = e->mtime;
    memcpy(m->sha256, e->sha256, 32);
    b->size += e->stored_size;
}

static int member_cmp(const void *a, const void *b)
{
    uint64_t x = ((const wv_bundle_member *)a)->offset;
    uint64_t y = ((const wv_bundle_member *)b)->offset;
    return x < y ? -1 : x > y;
}

void wv_bundle_set_sort(wv_bundle_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->b[i] && s->b[i]->n > 1)
            qsort(s->b[i]->m, s->b[i]->n, sizeof(*s->b[i]->m), member_cmp);
}

wv_bundle *wv_bundle_set_take(wv_bundle_set *s, size_t i)
{
    wv_bundle *b = s->b[i];
    s->b[i] = NULL;
    return b;
}

void wv_bundle_free(wv_bundle *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->m[i].path);
    free(b->m);
    free(b);
}

void wv_bundle_set_free(wv_bundle_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        wv_bundle_free(s->b[i]);
    free(s->b);
    memset(s, 0, sizeof(*s));
}

/* At most `left` bytes of another source: one member. A failure of the source itself is kept
 * apart from what the object layer makes of the bytes. */
typedef struct window {
    wv_source base;
    wv_source *in;
    uint64_t left;
    int in_failed;
    wv_err in_err;
} window;

static int window_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    window *w = (window *)s;
    *got = 0;
    if (w->left == 0)
        return 0;
    if (cap > w->left)
        cap = (size_t)w->left;
    int rc = wv_source_read(w->in, buf, cap, got, &w->in_err);
    if (rc < 0) {
        w->in_failed = 1;
        *err = w->in_err;
        return rc;
    }
    w->left -= *got;
    return 0;
}

static void window_close(wv_source *s)
{
    (void)s; /* the caller owns the wrapped source */
}

static const wv_source_ops window_ops = {.read = window_read, .close = window_close};

int wv_bundle_each(wv_source *src, const wv_bundle *b, wv_bundle_member_fn fn, void *arg,
                   wv_err *err)
{
    uint64_t pos = 0;
    int rc = 0;
    uint8_t scratch[4096];
    for (size_t i = 0; i < b->n; i++) {
        const wv_bundle_member *m = &b->m[i];
        if (m->offset != pos)
            return wv_err_set(err, WV_ECORRUPT,
                              "the manifest places \"%s\" at offset %" PRIu64 ", expected %" PRIu64,
                              m->path, m->offset, pos);
        window w = {.base = {.ops = &window_ops}, .in = src, .left = m->stored_size};
        wv_err_clear(&w.in_err);
        rc = fn(arg, m, &w.base, err);
        if (w.in_failed) {
            *err = w.in_err;
            return err->code ? err->code : WV_EIO;
        }
        if (rc < 0)
            return rc;
        /* skip what fn left of the member */
        while (w.left > 0) {
            size_t got = 0;
            if ((rc = window_read(&w.base, scratch, sizeof(scratch), &got, err)) < 0)
                return rc;
            if (got == 0)
                return wv_err_set(err, WV_ECORRUPT,
                                  "truncated: it ends inside \"%s\" (%" PRIu64 " of %" PRIu64
                                  " bytes missing)",
                                  m->path, w.left, m->stored_size);
        }
        pos += m->stored_size;
    }
    size_t got = 0;
    if ((rc = wv_source_read(src, scratch, 1, &got, err)) < 0)
        return rc;
    if (got)
        return wv_err_set(err, WV_ECORRUPT, "data after its last file (at offset %" PRIu64 ")",
                          pos);
    return 0;
}

int wv_bundle_check_object(wv_source *obj, const wv_obj_crypto *crypto, const char *bundle_key,
                           const wv_bundle_member *m, wv_filter *dest, wv_err *err)
{
    wv_obj_info info;
    wv_objread_opts o = {
        .flags = WV_OBJREAD_LIMIT, .key = bundle_key, .max_plain = m->size, .crypto = crypto};
    int r = wv_object_read_opts(obj, dest, &o, &info, err);
    if (r < 0)
        return r;
    uint8_t extra;
    size_t got = 0;
    if ((r = wv_source_read(obj, &extra, 1, &got, err)) < 0)
        return r;
    if (got)
        return wv_err_set(err, WV_ECORRUPT, "the object ends before its stored size");
    if (info.plain_size != m->size)
        return wv_err_set(err, WV_ECORRUPT,
                          "size mismatch: %" PRIu64 " bytes, the manifest says %" PRIu64,
                          info.plain_size, m->size);
    if (memcmp(info.sha256, m->sha256, 32) != 0)
        return wv_err_set(err, WV_ECORRUPT,
                          "checksum mismatch: the content's SHA-256 is not the manifest's");
    return 0;
}

typedef struct verify_state {
    const char *key;
    const wv_obj_crypto *crypto;
    wv_bundle_problem_cb cb;
    void *arg;
    size_t bad;
} verify_state;

static int verify_one(void *arg, const wv_bundle_member *m, wv_source *obj, wv_err *err)
{
    verify_state *v = arg;
    wv_err e;
    wv_err_clear(&e);
    wv_filter *discard = wv_filter_discard_new();
    int r = wv_bundle_check_object(obj, v->crypto, v->key, m, discard, &e);
    wv_filter_chain_free(discard);
    if (r == WV_ECORRUPT || r == WV_EFORMAT) {
        v->bad++;
        if (v->cb)
            v->cb(v->arg, m, &e);
        return 0; /* a damaged member is reported; the next one is checked */
    }
    if (r < 0)
        *err = e; /* the source failed (wv_bundle_each reports its own error) */
    return r;
}

int wv_bundle_verify(wv_source *src, const wv_obj_crypto *crypto, const wv_bundle *b,
                     wv_bundle_problem_cb cb, void *arg, size_t *bad, wv_err *err)
{
    verify_state v = {b->key, crypto, cb, arg, 0};
    int rc = wv_bundle_each(src, b, verify_one, &v, err);
    if (bad)
        *bad = v.bad;
    return rc;
}

/* ---- writing --------------------------------------------------------------------------------- */

wv_bundle_out *wv_bundle_out_new(const char *id, uint32_t number)
{
    wv_bundle_out *b = wv_xcalloc(1, sizeof(*b));
    b->number = number;
    wv_manifest_bundle_key(id, number, b->key, sizeof(b->key));
    wv_buf_init(&b->data);
    return b;
}

void wv_bundle_out_free(wv_bundle_out *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->m[i].path);
    free(b->m);
    wv_buf_free(&b->data);
    free(b);
}

int wv_bundle_out_fits(const wv_bundle_out *b, uint64_t size)
{
    return b->data.len + size <= WV_BUNDLE_PLAIN_MAX;
}

void wv_bundle_out_add(wv_bundle_out *b, const char *path, uint64_t size, uint32_t mode,
                       int64_t mtime)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->m = wv_xrealloc(b->m, b->cap * sizeof(*b->m));
    }
    b->m[b->n++] = (wv_bundle_out_file){.path = wv_xstrdup(path),
                                        .size = size,
                                        .mode = mode,
                                        .mtime = mtime,
                                        .data_off = b->data.len};
}

int wv_bundle_out_append(wv_bundle_out *b, const void *buf, size_t len, wv_err *err)
{
    wv_bundle_out_file *m = &b->m[b->n - 1];
    if (b->data.len - m->data_off + len > m->size)
        return wv_err_set(err, WV_EPG, "\"%s\": more data than its size", m->path);
    wv_buf_append(&b->data, buf, len);
    return 0;
}

int wv_bundle_out_end(wv_bundle_out *b, wv_err *err)
{
    wv_bundle_out_file *m = &b->m[b->n - 1];
    if (b->data.len - m->data_off != m->size)
        return wv_err_set(err, WV_EPG, "\"%s\": received %zu of %" PRIu64 " bytes", m->path,
                          b->data.len - m->data_off, m->size);
    return 0;
}

/* One member as a complete framed object into every sink; fills its sha256 and stored size. */
static int store_member(wv_bundle_out *b, wv_bundle_out_file *m, wv_sink *const *sinks,
                        wv_storage *const *st, int n, const wv_obj_opts *opts, wv_err *err)
{
    const wv_obj_crypto *crypto[WV_MAX_REPOS] = {0};
    for (int i = 0; i < n; i++)
        crypto[i] = wv_repo_crypto(st[i]);
    wv_obj_opts o = *opts;
    o.name = b->key;        /* a member is bound to its bundle */
    o.sink_crypto = crypto; /* each repository under its own keys */
    wv_objwriter *w = wv_objwriter_new(sinks, n, &o);
    wv_obj_info info, other;
    int rc = m->size ? wv_objwriter_write(w, b->data.data + m->data_off, (size_t)m->size, err) : 0;
    if (rc == 0)
        rc = wv_objwriter_finish(w, &info, err);
    for (int i = 0; rc == 0 && i < n; i++) {
        const wv_err *se = wv_objwriter_sink_error(w, i);
        if (se) {
            *err = *se;
            rc = se->code ? se->code : WV_EIO;
        } else if (wv_objwriter_sink_info(w, i, &other) == 0 &&
                   other.payload_size + other.header_size != info.payload_size + info.header_size) {
            /* one manifest gives the members' offsets for every repository */
            rc = wv_err_set(err, WV_EINTERNAL,
                            "bundle \"%s\": a member has another size in repository %d", b->key,
                            i + 1);
        }
    }
    wv_objwriter_free(w);
    if (rc < 0)
        return rc;
    memcpy(m->sha256, info.sha256, 32);
    m->stored_size = info.payload_size + info.header_size + WV_OBJ_TRAILER_SIZE;
    return 0;
}

int wv_bundle_out_store(wv_bundle_out *b, wv_storage *const *st, int n, const wv_obj_opts *opts,
                        int (*stopped)(void *arg), void *stop_arg, wv_err *err)
{
    wv_sink *sinks[WV_MAX_REPOS] = {0};
    int rc = 0;
    uint64_t off = 0;
    const char *path = "";
    if (n > WV_MAX_REPOS)
        return wv_err_set(err, WV_EINTERNAL, "too many repositories for \"%s\"", b->key);
    for (int i = 0; i < n; i++)
        if ((rc = wv_storage_put_open(st[i], b->key, WV_PUT_NOSYNC, &sinks[i], err)) < 0)
            goto out;
    for (size_t k = 0; k < b->n; k++) {
        wv_bundle_out_file *m = &b->m[k];
        path = m->path;
        if (stopped && stopped(stop_arg)) {
            rc = wv_err_set(err, WV_EINTERRUPTED, "storing \"%s\" stopped after another failure",
                            m->path);
            goto out;
        }
        if ((rc = store_member(b, m, sinks, st, n, opts, err)) < 0)
            goto out;
        m->offset = off;
        off += m->stored_size;
    }
    path = "";
    for (int i = 0; i < n; i++) {
        wv_sink *s = sinks[i];
        sinks[i] = NULL;
        if ((rc = wv_sink_commit(s, err)) < 0)
            goto out;
    }
out:
    for (int i = 0; i < n; i++)
        wv_sink_abort(sinks[i]);
    if (rc < 0 && rc != WV_EINTERRUPTED)
        wv_err_prefix(err, "could not store %s%s%s\"%s\": ", *path ? "\"" : "", path,
                      *path ? "\" in " : "", b->key);
    return rc;
}

void wv_bundle_out_entry(const wv_bundle_out *b, size_t k, wv_manifest_entry *e)
{
    const wv_bundle_out_file *m = &b->m[k];
    *e = (wv_manifest_entry){.type = WV_MANIFEST_FILE,
                             .path = m->path,
                             .size = m->size,
                             .mode = m->mode,
                             .mtime = m->mtime,
                             .stored_size = m->stored_size,
                             .bundle = b->number,
                             .offset = m->offset};
    memcpy(e->sha256, m->sha256, 32);
}
