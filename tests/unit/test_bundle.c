/*
 * test_bundle.c - bundles (small files stored many to an object): gathering members from manifest
 * entries, and wv_bundle_verify over a real bundle built with the object writer: a good bundle,
 * a damaged member (named, the others still verified), a member that does not match the manifest,
 * truncation, trailing data, a gap in the layout, a failing source.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repo/bundle.h"
#include "pipeline/object.h"

#include "memio.h"

#define NFILES 4

static const size_t sizes[NFILES] = {0, 1, 8192, 70000};

typedef struct built {
    mem_sink sink;
    wv_manifest_entry e[NFILES];
    char paths[NFILES][64];
    uint8_t *content[NFILES];
} built;

/* A bundle of NFILES objects written back to back, and the manifest entries describing it. */
static void build(built *b)
{
    mem_sink_init(&b->sink, 0);
    wv_sink *sinks[1] = {&b->sink.base};
    uint64_t off = 0;
    for (int i = 0; i < NFILES; i++) {
        b->content[i] = malloc(sizes[i] + 1);
        for (size_t k = 0; k < sizes[i]; k++)
            b->content[i][k] = (uint8_t)((k * 31 + (size_t)i * 7) % 251);
        wv_objwriter *w = wv_objwriter_new(sinks, 1, NULL);
        wv_err err;
        wv_obj_info info;
        if (sizes[i])
            assert_int_equal(wv_objwriter_write(w, b->content[i], sizes[i], &err), 0);
        assert_int_equal(wv_objwriter_finish(w, &info, &err), 0);
        wv_objwriter_free(w);
        snprintf(b->paths[i], sizeof(b->paths[i]), "pgdata/base/1/%d", 1000 + i);
        uint64_t stored = info.payload_size + info.header_size + WV_OBJ_TRAILER_SIZE;
        b->e[i] = (wv_manifest_entry){.type = WV_MANIFEST_FILE,
                                      .path = b->paths[i],
                                      .size = sizes[i],
                                      .stored_size = stored,
                                      .bundle = 3,
                                      .offset = off};
        memcpy(b->e[i].sha256, info.sha256, 32);
        off += stored;
    }
    assert_int_equal(off, b->sink.data.len);
}

static void unbuild(built *b)
{
    for (int i = 0; i < NFILES; i++)
        free(b->content[i]);
    wv_buf_free(&b->sink.data);
}

typedef struct seen {
    int n;
    char paths[NFILES][64];
    int codes[NFILES];
} seen;

static void on_problem(void *arg, const wv_bundle_member *m, const wv_err *err)
{
    seen *s = arg;
    assert_true(s->n < NFILES);
    snprintf(s->paths[s->n], sizeof(s->paths[s->n]), "%s", m->path);
    s->codes[s->n++] = err->code;
}

/* Entries added in a shuffled order (the manifest keeps completion order), sorted by offset. */
static wv_bundle *gather(built *b)
{
    wv_bundle_set set = {0};
    static const int order[NFILES] = {2, 0, 3, 1};
    for (int i = 0; i < NFILES; i++)
        wv_bundle_set_add(&set, "20261125T101500Z", &b->e[order[i]]);
    wv_manifest_entry own = {.type = WV_MANIFEST_FILE, .path = "pgdata/x", .bundle = 4};
    wv_bundle_set_add(&set, "20261125T101500Z", &own);
    assert_int_equal(set.n, 2);
    wv_bundle_set_sort(&set);
    wv_bundle *bu = wv_bundle_set_take(&set, 0);
    wv_bundle_set_free(&set);
    assert_string_equal(bu->key, "backup/20261125T101500Z/bundle/3");
    assert_int_equal(bu->n, NFILES);
    for (int i = 0; i < NFILES; i++)
        assert_string_equal(bu->m[i].path, b->paths[i]);
    assert_int_equal(bu->size, b->sink.data.len);
    return bu;
}

static int run_verify(const uint8_t *data, size_t len, size_t max_read, size_t fail_at,
                      const wv_bundle *bu, seen *s, size_t *bad, wv_err *err)
{
    mem_source src;
    mem_source_init(&src, data, len, max_read);
    src.fail_at = fail_at;
    memset(s, 0, sizeof(*s));
    wv_err_clear(err);
    return wv_bundle_verify(&src.base, NULL, bu, on_problem, s, bad, err);
}

/* Each test: a freshly built bundle; the members are gathered at the first check, so a test may
 * change the manifest entries before. */
typedef struct fixture {
    built b;
    wv_bundle *bu;
    seen s;
    size_t bad;
    wv_err err;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    build(&f->b);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    wv_bundle_free(f->bu);
    unbuild(&f->b);
    free(f);
    return 0;
}

static int check(fixture *f, size_t len, size_t max_read, size_t fail_at)
{
    if (!f->bu)
        f->bu = gather(&f->b);
    return run_verify(f->b.sink.data.data, len, max_read, fail_at, f->bu, &f->s, &f->bad, &f->err);
}

static void test_good_bundle(void **state)
{
    fixture *f = *state;
    static const size_t reads[] = {0, 1, 7, 4096};
    for (size_t r = 0; r < sizeof(reads) / sizeof(reads[0]); r++) {
        f->bad = 99;
        assert_int_equal(check(f, f->b.sink.data.len, reads[r], 0), 0);
        assert_int_equal(f->bad, 0);
        assert_int_equal(f->s.n, 0);
    }
}

static void test_damaged_member_named_others_checked(void **state)
{
    fixture *f = *state;
    uint8_t *d = f->b.sink.data.data;
    /* a payload byte of member 2, then a trailer byte of member 3 */
    d[f->b.e[2].offset + WV_OBJ_HEADER_SIZE + 10] ^= 0x40;
    assert_int_equal(check(f, f->b.sink.data.len, 0, 0), 0);
    assert_int_equal(f->bad, 1);
    assert_string_equal(f->s.paths[0], f->b.paths[2]);
    assert_int_equal(f->s.codes[0], WV_ECORRUPT);
    d[f->b.e[3].offset + f->b.e[3].stored_size - 20] ^= 0x01;
    assert_int_equal(check(f, f->b.sink.data.len, 3, 0), 0);
    assert_int_equal(f->bad, 2);
    assert_string_equal(f->s.paths[1], f->b.paths[3]);
}

static void test_manifest_mismatch(void **state)
{
    fixture *f = *state;
    f->b.e[1].sha256[0] ^= 1; /* the manifest says another content for member 1 */
    f->b.e[3].size += 1;      /* and another size for member 3 */
    assert_int_equal(check(f, f->b.sink.data.len, 0, 0), 0);
    assert_int_equal(f->bad, 2);
    assert_string_equal(f->s.paths[0], f->b.paths[1]);
    assert_string_equal(f->s.paths[1], f->b.paths[3]);
}

static void test_layout_errors(void **state)
{
    fixture *f = *state;
    wv_buf *data = &f->b.sink.data;
    /* truncated inside the last member */
    assert_int_equal(check(f, data->len - 5, 0, 0), WV_ECORRUPT);
    assert_non_null(strstr(f->err.msg, "truncated"));
    assert_non_null(strstr(f->err.msg, f->b.paths[3]));
    /* data after the last member */
    wv_buf_append(data, "xyz", 3);
    assert_int_equal(check(f, data->len, 0, 0), WV_ECORRUPT);
    assert_non_null(strstr(f->err.msg, "data after its last file"));
    data->len -= 3;
    /* a gap: the manifest places member 2 further on */
    f->bu->m[2].offset += 1;
    assert_int_equal(check(f, data->len, 0, 0), WV_ECORRUPT);
    assert_non_null(strstr(f->err.msg, "the manifest places"));
    f->bu->m[2].offset -= 1;
    /* the source fails: its own error, not a damaged member */
    assert_int_equal(check(f, data->len, 0, f->b.e[3].offset + 10), WV_EUNREACHABLE);
    assert_int_equal(f->s.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_member_named_others_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
