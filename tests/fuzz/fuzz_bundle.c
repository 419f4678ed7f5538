/*
 * fuzz_bundle.c - the bundle reader (common/repo/bundle.c): many framed objects back to back in
 * one stored object, checked member by member against the manifest.
 *
 * Input: u8 options, u16 read size, u8 member count n (0..15), then per member u16 stored size,
 * i8 offset change (0 = right after the previous member), u8 flags (bit 0: the manifest's size
 * and SHA-256 are those of the member's own object, else taken from the input; bit 7: the member
 * is in bundle 2); then the bundle's bytes. Option bit 0 builds each member's bytes as a real object of
 * the next stored-size bytes of plain content (lz4 by bit 1), so that well-formed bundles occur.
 *
 * Oracle: what the bundle reader reports is predicted independently. The layout is right exactly
 * when the members, in offset order, tile the bundle from offset 0 to its end: then it returns 0,
 * else WV_ECORRUPT (and never reads past the bundle). With a good layout, a member is counted bad
 * exactly when the object layer, reading that member's bytes alone, fails or disagrees with the
 * manifest: the same number of problems, each reported once with a one-line message.
 */
#include <openssl/evp.h>

#include "core/buf.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"
#include "repo/bundle.h"
#include "fuzz.h"

#define MAX_MEMBERS 15

typedef struct mem_sink {
    wv_sink base;
    wv_buf *data;
} mem_sink;

static int mem_sink_write(wv_sink *s, const void *buf, size_t len, wv_err *err)
{
    (void)err;
    wv_buf_append(((mem_sink *)s)->data, buf, len);
    return 0;
}

static int mem_sink_commit(wv_sink *s, wv_err *err)
{
    (void)s;
    (void)err;
    return 0;
}

static void mem_sink_abort(wv_sink *s)
{
    (void)s;
}

static const wv_sink_ops mem_sink_ops = {mem_sink_write, mem_sink_commit, mem_sink_abort};

/* Append plain content as a framed object; returns its stored size. */
static size_t put_object(wv_buf *out, const uint8_t *p, size_t n, int lz4)
{
    size_t before = out->len;
    mem_sink sink = {.base = {.ops = &mem_sink_ops}, .data = out};
    wv_sink *sinks[1] = {&sink.base};
    wv_obj_opts o = {.compress = lz4 ? WV_COMPRESS_LZ4 : WV_COMPRESS_NONE,
                     .level = 1,
                     .kind = WV_OBJ_KIND_BACKUP_FILE};
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &o);
    wv_err err;
    FZ_CHECK(wv_objwriter_write(w, n ? p : (const uint8_t *)"", n, &err) == 0, "%s", err.msg);
    FZ_CHECK(wv_objwriter_finish(w, NULL, &err) == 0, "%s", err.msg);
    wv_objwriter_free(w);
    return out->len - before;
}

/* The object layer's verdict on one member's bytes, as wv_bundle_check_object should give it. */
static int member_ok(const uint8_t *p, size_t n, const wv_bundle_member *m)
{
    fz_source src;
    fz_source_init(&src, n ? p : (const uint8_t *)"", n, 0);
    wv_filter *discard = wv_filter_discard_new();
    wv_obj_info info;
    wv_err err;
    int rc = wv_object_read(&src.base, discard, &info, &err);
    wv_filter_chain_free(discard);
    return rc == 0 && src.pos == n && info.plain_size == m->size &&
           memcmp(info.sha256, m->sha256, 32) == 0;
}

/* The object's own size and digest, when it has an intact trailer. */
static void own_info(const uint8_t *p, size_t n, wv_bundle_member *m)
{
    wv_obj_info info;
    wv_err err;
    if (n >= WV_OBJ_TRAILER_SIZE && wv_object_info_decode(p, n, &info, &err) == 0) {
        m->size = info.plain_size;
        memcpy(m->sha256, info.sha256, 32);
    }
}

typedef struct problems {
    size_t n;
    int seen[MAX_MEMBERS];
    const wv_bundle *b;
} problems;

static void problem_cb(void *arg, const wv_bundle_member *m, const wv_err *e)
{
    problems *p = arg;
    size_t i = (size_t)(m - p->b->m);
    FZ_CHECK(i < p->b->n, "%s", "a problem with a member that is not in the bundle");
    FZ_CHECK(!p->seen[i]++, "member %zu reported twice", i);
    fz_check_err(e, e->code);
    FZ_CHECK(e->code == WV_ECORRUPT || e->code == WV_EFORMAT, "code %d", e->code);
    p->n++;
}

static int by_offset(const void *a, const void *b)
{
    uint64_t x = ((const wv_bundle_member *)a)->offset, y = ((const wv_bundle_member *)b)->offset;
    return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t opt = fz_u8(&in);
    size_t max_read = (size_t)fz_u16(&in) + 1;
    size_t n = fz_u8(&in) % (MAX_MEMBERS + 1);
    struct {
        uint16_t stored;
        int8_t shift;
        uint8_t flags;
    } spec[MAX_MEMBERS];
    for (size_t i = 0; i < n; i++) {
        spec[i].stored = fz_u16(&in);
        spec[i].shift = (int8_t)fz_u8(&in);
        spec[i].flags = fz_u8(&in);
    }

    /* The bundle's bytes, and each member's place in it. */
    wv_buf bytes = WV_BUF_INIT;
    uint64_t place[MAX_MEMBERS], stored[MAX_MEMBERS];
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        place[i] = at;
        if (opt & 1) {
            size_t got;
            const uint8_t *p = fz_bytes(&in, spec[i].stored % 512, &got);
            stored[i] = put_object(&bytes, p, got, opt & 2);
        } else {
            stored[i] = spec[i].stored;
        }
        at += stored[i];
    }
    if (!(opt & 1))
        wv_buf_append(&bytes, in.p, in.n);
    else if (opt & 4)
        wv_buf_append(&bytes, in.p, in.n); /* garbage after the last member */
    wv_buf_reserve(&bytes, 1);             /* data is never NULL below */

    /* The manifest's view: offsets possibly moved, sizes and digests maybe the object's own. */
    wv_bundle_set set = {0};
    for (size_t i = 0; i < n; i++) {
        wv_manifest_entry e = {0};
        char path[32];
        snprintf(path, sizeof(path), "pgdata/f%zu", i);
        e.type = WV_MANIFEST_FILE;
        e.path = path;
        e.bundle = 1 + (spec[i].flags >> 7); /* sometimes two bundles in one set */
        e.offset = place[i] + (uint64_t)(int64_t)spec[i].shift;
        e.stored_size = stored[i];
        e.size = spec[i].flags;
        memset(e.sha256, spec[i].flags, 32);
        wv_bundle_member m = {0};
        if ((spec[i].flags & 1) && e.offset <= bytes.len && stored[i] <= bytes.len - e.offset) {
            own_info(bytes.data + e.offset, (size_t)stored[i], &m);
            e.size = m.size;
            memcpy(e.sha256, m.sha256, 32);
        }
        wv_bundle_set_add(&set, "20261125T101500Z", &e);
    }
    wv_bundle_set_sort(&set);

    for (size_t bi = 0; bi < set.n; bi++) {
        const wv_bundle *b = set.b[bi];
        /* the prediction */
        wv_bundle_member sorted[MAX_MEMBERS];
        memcpy(sorted, b->m, b->n * sizeof(*sorted));
        qsort(sorted, b->n, sizeof(*sorted), by_offset);
        uint64_t pos = 0;
        int layout_ok = 1;
        for (size_t i = 0; i < b->n; i++) {
            if (b->m[i].offset != sorted[i].offset)
                FZ_CHECK(0, "%s", "members are not in offset order after sorting");
            if (sorted[i].offset != pos)
                layout_ok = 0;
            pos += sorted[i].stored_size;
        }
        if (pos != bytes.len)
            layout_ok = 0;
        size_t want_bad = 0;
        if (layout_ok)
            for (size_t i = 0; i < b->n; i++)
                want_bad +=
                    !member_ok(bytes.data + b->m[i].offset, (size_t)b->m[i].stored_size, &b->m[i]);

        fz_source src;
        fz_source_init(&src, bytes.len ? bytes.data : (const uint8_t *)"", bytes.len, max_read);
        problems pr = {.b = b};
        size_t bad = 0;
        wv_err err;
        int rc = wv_bundle_verify(&src.base, NULL, b, problem_cb, &pr, &bad, &err);
        if (layout_ok) {
            FZ_CHECK(rc == 0, "a bundle whose layout matches fails: %s", err.msg);
            FZ_CHECK(bad == want_bad && pr.n == bad, "%zu bad members, %zu reported, %zu expected",
                     bad, pr.n, want_bad);
        } else {
            FZ_CHECK(rc == WV_ECORRUPT, "a bundle whose layout does not match gives %d", rc);
            fz_check_err(&err, rc);
        }
    }
    wv_bundle_set_free(&set);
    wv_buf_free(&bytes);
    return 0;
}
