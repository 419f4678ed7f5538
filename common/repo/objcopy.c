/* objcopy.c - copy one stored object between repositories, verified (see objcopy.h). */
#include "repo/objcopy.h"

#include <string.h>

#include "pipeline/filter.h"
#include "pipeline/object.h"

static int tee_read(wv_source *s, void *buf, size_t cap, size_t *got, wv_err *err)
{
    wv_tee_source *t = (wv_tee_source *)s;
    int rc = wv_source_read(t->in, buf, cap, got, err);
    if (rc < 0 || *got == 0)
        return rc;
    if ((rc = wv_sink_write(t->out, buf, *got, &t->out_err)) < 0) {
        t->out_failed = 1;
        *err = t->out_err;
        return rc;
    }
    t->bytes += *got;
    return 0;
}

static void tee_close(wv_source *s)
{
    (void)s; /* the owner closes the wrapped source and the sink */
}

static const wv_source_ops tee_ops = {.read = tee_read, .close = tee_close};

void wv_tee_source_init(wv_tee_source *t, wv_source *in, wv_sink *out)
{
    memset(t, 0, sizeof(*t));
    t->base.ops = &tee_ops;
    t->in = in;
    t->out = out;
    wv_err_clear(&t->out_err);
}

int wv_repo_copy_object(wv_repo *from, wv_repo *to, const char *key, unsigned put_flags,
                        uint64_t *bytes, int *already, wv_err *err)
{
    const char *fname = wv_storage_name(from->st), *tname = wv_storage_name(to->st);
    wv_source *src = NULL;
    wv_sink *sink = NULL;
    *already = 0;
    *bytes = 0;
    int rc = wv_storage_get_open(from->st, key, 0, -1, &src, err);
    if (rc < 0)
        return wv_err_context(err, fname, key);
    rc = wv_storage_put_open(to->st, key, put_flags | WV_PUT_NOREPLACE, &sink, err);
    if (rc < 0) {
        wv_source_close(src);
        return wv_err_context(err, tname, key);
    }
    wv_tee_source tee;
    wv_tee_source_init(&tee, src, sink);
    wv_filter *discard = wv_filter_discard_new();
    wv_filter *check = wv_repo_walcheck_for_key(discard, key, from->have_info ? &from->info : NULL);
    wv_objread_opts o = {.key = key};
    wv_obj_info info;
    rc = wv_object_read_opts(&tee.base, check ? check : discard, &o, &info, err);
    if (check)
        check->ops->free(check);
    wv_filter_chain_free(discard);
    wv_source_close(src);
    if (rc < 0) {
        wv_sink_abort(sink);
        if (tee.out_failed) {
            *err = tee.out_err;
            return wv_err_context(err, tname, key);
        }
        return wv_err_context(err, fname, key);
    }
    rc = wv_repo_commit_object(to, sink, key, key, &info, already, NULL, err);
    if (rc < 0)
        return rc == WV_ECONFLICT ? rc : wv_err_context(err, tname, key);
    *bytes = tee.bytes;
    return 0;
}
