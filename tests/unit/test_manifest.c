/* test_manifest.c - manifest write -> read round trip, and a table of malformed manifests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "pipeline/filter.h"
#include "repo/manifest.h"

static const char *const weird_label = "nightly run 100% = \"ok\"\n\ttab \xc3\xa9t\xc3\xa9";

static void fill_header(wv_manifest_header *h)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->id, sizeof(h->id), "20261125T101500Z");
    h->label = wv_xstrdup(weird_label);
    h->keep = 1;
    h->created_by = wv_xstrdup("walvault test");
    h->system_id = UINT64_C(7312345678901234567);
    h->pg_version = 150020;
    h->wal_segsize = 16 << 20;
    h->timeline = 3;
    h->start_lsn = UINT64_C(0x100000028);
    h->stop_lsn = UINT64_C(0x100000138);
    h->checkpoint_lsn = UINT64_C(0x100000060);
    snprintf(h->start_segment, 25, "000000030000000100000000");
    snprintf(h->stop_segment, 25, "000000030000000100000000");
    h->start_time = 1795601700;
    h->stop_time = 1795601761;
    h->start_time_text = wv_xstrdup("2026-11-25 10:15:00 UTC");
    h->stop_time_text = wv_xstrdup("2026-11-25 10:16:01 UTC");
}

#define NENTRIES 6

static void entries(wv_manifest_entry *e)
{
    memset(e, 0, sizeof(*e) * NENTRIES);
    e[0] = (wv_manifest_entry){
        .type = WV_MANIFEST_TABLESPACE, .oid = 16385, .target = "/srv/my tablespace"};
    e[1] = (wv_manifest_entry){
        .type = WV_MANIFEST_DIR, .path = "pgdata", .mode = 0700, .mtime = 1795601000};
    e[2] = (wv_manifest_entry){.type = WV_MANIFEST_SYMLINK,
                               .path = "pgdata/pg_tblspc/16385",
                               .target = "/srv/my tablespace",
                               .mode = 0777,
                               .mtime = 5};
    e[3] = (wv_manifest_entry){.type = WV_MANIFEST_FILE,
                               .path = "pgdata/base/1/1259",
                               .size = 8192 * 3,
                               .mode = 0600,
                               .mtime = 1795601001,
                               .stored_size = 1234,
                               .bundle = 2,
                               .offset = 8192};
    for (int i = 0; i < 32; i++)
        e[3].sha256[i] = (uint8_t)(i * 7);
    e[4] = (wv_manifest_entry){.type = WV_MANIFEST_FILE,
                               .path = "tblspc/16385/PG_15_x/1/2",
                               .size = 0,
                               .mode = 0640,
                               .mtime = -1,
                               .stored_size = 77,
                               .ref = "20261124T000000Z"};
    e[5] = (wv_manifest_entry){
        .type = WV_MANIFEST_DIR, .path = "tblspc/16385", .mode = 0700, .mtime = 9};
}

/* Collects entries read back as formatted strings. */
static int collect(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    wv_buf *b = arg;
    char hex[65] = "";
    if (e->type == WV_MANIFEST_FILE)
        wv_hex_encode(e->sha256, 32, hex);
    wv_buf_printf(b, "%d|%s|%s|%u|%llu|%o|%lld|%s|%llu|%s|%u@%llu\n", (int)e->type,
                  e->path ? e->path : "-", e->target ? e->target : "-", e->oid,
                  (unsigned long long)e->size, e->mode, (long long)e->mtime, hex,
                  (unsigned long long)e->stored_size, e->ref ? e->ref : "-", e->bundle,
                  (unsigned long long)e->offset);
    return 0;
}

static void write_manifest(wv_buf *out)
{
    wv_manifest_header h;
    fill_header(&h);
    wv_manifest_entry e[NENTRIES];
    entries(e);
    wv_manifest_writer *w;
    wv_err err;
    assert_int_equal(wv_manifest_writer_new(NULL, &w, &err), 0);
    for (int i = 0; i < NENTRIES; i++)
        assert_int_equal(wv_manifest_writer_add(w, &e[i], &err), 0);
    wv_filter *f = wv_filter_buf_new(out);
    assert_int_equal(wv_manifest_writer_finish(w, &h, f, &err), 0);
    wv_filter_chain_free(f);
    wv_manifest_writer_free(w);
    wv_manifest_header_free(&h);
}

static void test_round_trip(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    write_manifest(&text);
    /* human-readable: the first line says what it is */
    assert_int_equal(strncmp(wv_buf_cstr(&text), "walvault-manifest version=2\n", 28), 0);

    wv_buf want = WV_BUF_INIT;
    wv_manifest_entry e[NENTRIES];
    entries(e);
    for (int i = 0; i < NENTRIES; i++)
        collect(&want, &e[i], NULL);

    /* fed whole and byte by byte */
    for (int pass = 0; pass < 2; pass++) {
        wv_buf got = WV_BUF_INIT;
        wv_manifest_header h;
        wv_manifest_totals t;
        wv_err err;
        wv_manifest_reader *r = wv_manifest_reader_new("m", &h, collect, &got);
        size_t step = pass ? 1 : text.len;
        for (size_t off = 0; off < text.len; off += step)
            assert_int_equal(wv_manifest_reader_feed(r, text.data + off,
                                                     text.len - off < step ? text.len - off : step,
                                                     &err),
                             0);
        if (wv_manifest_reader_finish(r, &t, &err) != 0)
            fail_msg("finish: %s", err.msg);
        wv_manifest_reader_free(r);
        assert_string_equal(wv_buf_cstr(&got), wv_buf_cstr(&want));
        wv_manifest_header x;
        fill_header(&x);
        assert_string_equal(h.id, x.id);
        assert_string_equal(h.label, weird_label);
        assert_int_equal(h.keep, 1);
        assert_string_equal(h.created_by, "walvault test");
        assert_true(h.system_id == x.system_id);
        assert_int_equal(h.pg_version, 150020);
        assert_true(h.wal_segsize == x.wal_segsize);
        assert_int_equal(h.timeline, 3);
        assert_true(h.start_lsn == x.start_lsn && h.stop_lsn == x.stop_lsn &&
                    h.checkpoint_lsn == x.checkpoint_lsn);
        assert_string_equal(h.start_segment, x.start_segment);
        assert_string_equal(h.stop_segment, x.stop_segment);
        assert_true(h.start_time == x.start_time && h.stop_time == x.stop_time);
        assert_string_equal(h.start_time_text, x.start_time_text);
        assert_string_equal(h.stop_time_text, x.stop_time_text);
        assert_int_equal(t.files, 2);
        assert_int_equal(t.dirs, 2);
        assert_int_equal(t.symlinks, 1);
        assert_int_equal(t.tablespaces, 1);
        assert_int_equal(t.size, 8192 * 3);
        assert_int_equal(t.stored_size, 1234 + 77);
        wv_manifest_header_free(&x);
        wv_manifest_header_free(&h);
        wv_buf_free(&got);
    }
    wv_buf_free(&want);
    wv_buf_free(&text);
}

static void test_writer_rejects(void **state)
{
    (void)state;
    wv_manifest_writer *w;
    wv_err err;
    assert_int_equal(wv_manifest_writer_new(NULL, &w, &err), 0);
    const wv_manifest_entry bad[] = {
        {.type = WV_MANIFEST_FILE, .path = "../etc/passwd"},
        {.type = WV_MANIFEST_FILE, .path = "pgdata/../x"},
        {.type = WV_MANIFEST_FILE, .path = "other/x"},
        {.type = WV_MANIFEST_FILE, .path = "tblspc/abc/x"},
        {.type = WV_MANIFEST_FILE, .path = "/pgdata/x"},
        {.type = WV_MANIFEST_FILE, .path = "pgdata/x", .ref = "../other"},
        {.type = WV_MANIFEST_SYMLINK, .path = "pgdata/l", .target = ""},
        {.type = WV_MANIFEST_TABLESPACE, .oid = 1, .target = "relative"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(wv_manifest_writer_add(w, &bad[i], &err), WV_EUSAGE);
    assert_int_equal(wv_manifest_writer_totals(w)->files, 0);
    wv_manifest_writer_free(w);
    assert_false(wv_manifest_id_valid("a/b"));
    assert_false(wv_manifest_id_valid(""));
    assert_true(wv_manifest_id_valid("20261125T101500Z"));
}

/* Replace the first occurrence of `from` in s (which must occur) and re-seal the end record. */
static char *mutate(const char *good, const char *from, const char *to, int reseal)
{
    const char *p = strstr(good, from);
    if (!p)
        fail_msg("mutation source \"%s\" not in manifest", from);
    wv_buf b = WV_BUF_INIT;
    wv_buf_append(&b, good, (size_t)(p - good));
    wv_buf_append_str(&b, to);
    wv_buf_append_str(&b, p + strlen(from));
    if (reseal) {
        const char *cs = wv_buf_cstr(&b);
        const char *end = strstr(cs, "end sha256=");
        assert_non_null(end);
        size_t body = (size_t)(end - cs);
        uint8_t d[32];
        unsigned dl;
        EVP_Digest(b.data, body, d, &dl, EVP_sha256(), NULL);
        char hex[65];
        wv_hex_encode(d, 32, hex);
        b.len = body;
        wv_buf_printf(&b, "end sha256=%s\n", hex);
    }
    char *s = wv_xstrdup(wv_buf_cstr(&b));
    wv_buf_free(&b);
    return s;
}

typedef struct {
    const char *from, *to;
    int reseal;
    int want_rc;
    const char *want; /* substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"walvault-manifest version=2", "something-else version=2", 1, WV_ECORRUPT,
     "line 1: not a walvault backup manifest"},
    {"walvault-manifest version=2", "walvault-manifest version=4", 1, WV_EFORMAT,
     "format version 4, this program understands up to 3"},
    /* version 1 has no bundles */
    {"walvault-manifest version=2", "walvault-manifest version=1", 1, WV_ECORRUPT,
     "unknown key \"bundle\" in \"file\""},
    {"bundle=2 offset=8192", "bundle=0 offset=8192", 1, WV_ECORRUPT, "bad bundle 0"},
    {"bundle=2 offset=8192", "bundle=2", 1, WV_ECORRUPT, "\"file\" record lacks \"offset\""},
    {"bundle=2 offset=8192", "offset=8192", 1, WV_ECORRUPT, "unknown key \"offset\""},
    {"bundle=2 offset=8192", "bundle=2 offset=-1", 1, WV_ECORRUPT, "bad number"},
    {"walvault-manifest version=2", "walvault-manifest version=x", 1, WV_ECORRUPT,
     "bad number \"x\" for \"version\""},
    {"backup id=", "backup xid=", 1, WV_ECORRUPT, "line 2: \"backup\" record lacks \"id\""},
    {"id=20261125T101500Z", "id=2026/11", 1, WV_ECORRUPT, "bad backup id"},
    {"keep=1", "keep=2", 1, WV_ECORRUPT, "bad number \"2\" for \"keep\""},
    {"keep=1", "keep=1 colour=red", 1, WV_ECORRUPT, "unknown key \"colour\" in \"backup\""},
    {"keep=1", "keep=1 keep=1", 1, WV_ECORRUPT, "duplicate key \"keep\""},
    {"keep=1", "keep", 1, WV_ECORRUPT, "is not key=value"},
    {"label=nightly", "label=%ZZnightly", 1, WV_ECORRUPT, "bad percent-encoding in \"label\""},
    {"label=nightly", "label=%00", 1, WV_ECORRUPT, "bad percent-encoding"},
    {"cluster system-id", "clusterx system-id", 1, WV_ECORRUPT,
     "line 3: expected a \"cluster\" record"},
    {"system-id=7312345678901234567", "system-id=-1", 1, WV_ECORRUPT, "bad number"},
    {"system-id=7312345678901234567", "system-id=99999999999999999999", 1, WV_ECORRUPT,
     "bad number"},
    {"wal-segsize=16777216", "wal-segsize=1000", 1, WV_ECORRUPT, "bad WAL segment size 1000"},
    {"wal-segsize=16777216", "wal-segsize=0", 1, WV_ECORRUPT, "bad WAL segment size 0"},
    {"system-id=7312345678901234567", "system-id=0", 1, WV_ECORRUPT, "system-id 0"},
    /* sizes and offsets become int64_t byte ranges: bounded before use */
    {"stored-size=1234", "stored-size=9223372036854775808", 1, WV_ECORRUPT, "bad number"},
    {" size=24576", " size=18446744073709551615", 1, WV_ECORRUPT, "bad number"},
    {"bundle=2 offset=8192", "bundle=2 offset=9223372036854775808", 1, WV_ECORRUPT, "bad number"},
    {"bundle=2 offset=8192", "bundle=2 offset=9223372036854775000", 1, WV_ECORRUPT,
     "end beyond any object"},
    {"start-lsn=1/28", "start-lsn=1-28", 1, WV_ECORRUPT, "bad LSN \"1-28\" for \"start-lsn\""},
    {"start-lsn=1/28", "start-lsn=2/28", 1, WV_ECORRUPT, "stop-lsn is before start-lsn"},
    {"timeline=3", "timeline=0", 1, WV_ECORRUPT, "bad timeline 0"},
    {"start-segment=000000030000000100000000", "start-segment=00000003000000010000000g", 1,
     WV_ECORRUPT, "bad WAL segment name"},
    {"stop=1795601761", "stop=1", 1, WV_ECORRUPT, "stop time is before start time"},
    {"time start", "times start", 1, WV_ECORRUPT, "expected a \"time\" record"},
    {"dir path=pgdata ", "folder path=pgdata ", 1, WV_ECORRUPT, "unknown record \"folder\""},
    {"path=pgdata/base/1/1259", "path=pgdata/../etc/passwd", 1, WV_ECORRUPT, "invalid path"},
    {"path=pgdata/base/1/1259", "path=/etc/passwd", 1, WV_ECORRUPT, "invalid path"},
    {"mode=0600", "mode=0900", 1, WV_ECORRUPT, "bad mode \"0900\""},
    {"mode=0600", "mode=77777", 1, WV_ECORRUPT, "bad mode"},
    {"sha256=00070e", "sha256=zz070e", 1, WV_ECORRUPT, "bad sha256"},
    {"stored-size=1234", "stored-size=", 1, WV_ECORRUPT, "bad number"},
    {" size=24576", "", 1, WV_ECORRUPT, "\"file\" record lacks \"size\""},
    {"ref=20261124T000000Z", "ref=..", 1, WV_ECORRUPT, "bad backup reference"},
    {"target=/srv/my%20tablespace mode", "target= mode", 1, WV_ECORRUPT, "empty symlink target"},
    {"oid=16385", "oid=0", 1, WV_ECORRUPT, "bad tablespace oid"},
    {"totals files=2", "totals files=3", 1, WV_ECORRUPT, "totals do not match the entries"},
    {"stored-size=1311", "stored-size=1312", 1, WV_ECORRUPT, "totals do not match"},
    {"dir path=pgdata ", "\ndir path=pgdata ", 1, WV_ECORRUPT, "empty line"},
    {"mtime=9", "mtime=9 ", 1, WV_ECORRUPT, "trailing space"},
    /* not re-sealed: any change is caught by the end checksum */
    {"mtime=1795601001", "mtime=1795601002", 0, WV_ECORRUPT, "checksum mismatch"},
    {"label=nightly", "label=Nightly", 0, WV_ECORRUPT, "checksum mismatch"},
    {"end sha256=", "end sha256=0", 0, WV_ECORRUPT, "checksum mismatch"},
    {"end sha256=", "fin sha256=", 0, WV_ECORRUPT, "expected the \"end\" record"},
};

static void test_malformed(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    write_manifest(&text);
    const char *good = wv_buf_cstr(&text);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *c = &bad_cases[i];
        char *m = mutate(good, c->from, c->to, c->reseal);
        wv_manifest_header h;
        wv_err err;
        wv_err_clear(&err);
        int rc =
            wv_manifest_parse(m, strlen(m), "backup/x/backup.manifest", &h, NULL, NULL, NULL, &err);
        if (rc != c->want_rc || !strstr(err.msg, c->want))
            fail_msg("case %zu (%s -> %s): rc %d \"%s\", want %d \"%s\"", i, c->from, c->to, rc,
                     err.msg, c->want_rc, c->want);
        /* every message names the manifest */
        assert_non_null(strstr(err.msg, "backup/x/backup.manifest"));
        free(m);
    }
    wv_buf_free(&text);
}

static void test_truncated(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    write_manifest(&text);
    /* every proper prefix fails: at a line boundary as "truncated", elsewhere likewise */
    for (size_t cut = 0; cut < text.len; cut++) {
        wv_manifest_header h;
        wv_err err;
        int rc = wv_manifest_parse(text.data, cut, "m", &h, NULL, NULL, NULL, &err);
        if (rc != WV_ECORRUPT)
            fail_msg("prefix of %zu bytes: rc %d", cut, rc);
        if (cut > 0 && text.data[cut - 1] == '\n' && !strstr(err.msg, "truncated"))
            fail_msg("prefix of %zu bytes: \"%s\"", cut, err.msg);
    }
    /* anything after the end record */
    wv_buf_append_str(&text, "file path=pgdata/x\n");
    wv_manifest_header h;
    wv_err err;
    assert_int_equal(wv_manifest_parse(text.data, text.len, "m", &h, NULL, NULL, NULL, &err),
                     WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "data after the \"end\" record"));
    /* a NUL byte */
    wv_buf_reset(&text);
    write_manifest(&text);
    text.data[40] = '\0';
    assert_int_equal(wv_manifest_parse(text.data, text.len, "m", &h, NULL, NULL, NULL, &err),
                     WV_ECORRUPT);
    wv_buf_free(&text);
}

static int stop_cb(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    (void)arg;
    if (e->type == WV_MANIFEST_FILE)
        return wv_err_set(err, WV_EIO, "stop at \"%s\"", e->path);
    return 0;
}

/* A version 1 manifest (no bundles) is still read. */
static void test_version1(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    write_manifest(&text);
    char *v1a =
        mutate(wv_buf_cstr(&text), "walvault-manifest version=2", "walvault-manifest version=1", 0);
    char *v1 = mutate(v1a, " bundle=2 offset=8192", "", 1);
    wv_manifest_header h;
    wv_err err;
    wv_buf got = WV_BUF_INIT;
    assert_int_equal(wv_manifest_parse(v1, strlen(v1), "m", &h, collect, &got, NULL, &err), 0);
    assert_int_equal(h.version, 1);
    assert_non_null(strstr(wv_buf_cstr(&got), "pgdata/base/1/1259|-|0|24576|600|1795601001|"));
    assert_non_null(strstr(wv_buf_cstr(&got), "|1234|-|0@0\n"));
    wv_manifest_header_free(&h);
    wv_buf_free(&got);
    free(v1a);
    free(v1);
    wv_buf_free(&text);
}

/* Where a file's object is: its own key, or a range of a bundle; ref names the owner. */
static void test_file_object(void **state)
{
    (void)state;
    char key[300];
    int64_t off, len;
    wv_manifest_entry e = {
        .type = WV_MANIFEST_FILE, .path = "pgdata/base/1/1259", .stored_size = 1234};
    wv_manifest_file_object("B1", &e, key, sizeof(key), &off, &len);
    assert_string_equal(key, "backup/B1/pgdata/base/1/1259");
    assert_true(off == 0 && len == -1);
    e.bundle = 7;
    e.offset = 8192;
    wv_manifest_file_object("B1", &e, key, sizeof(key), &off, &len);
    assert_string_equal(key, "backup/B1/bundle/7");
    assert_true(off == 8192 && len == 1234);
    e.ref = "B0";
    wv_manifest_file_object("B1", &e, key, sizeof(key), &off, &len);
    assert_string_equal(key, "backup/B0/bundle/7");
    wv_manifest_bundle_key("B2", 4294967295u, key, sizeof(key));
    assert_string_equal(key, "backup/B2/bundle/4294967295");
}

static void test_callback_error(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    write_manifest(&text);
    wv_manifest_header h;
    wv_err err;
    assert_int_equal(wv_manifest_parse(text.data, text.len, "m", &h, stop_cb, NULL, NULL, &err),
                     WV_EIO);
    assert_string_equal(err.msg, "stop at \"pgdata/base/1/1259\"");
    wv_buf_free(&text);
}

/* ---- chunked files (version 3) ------------------------------------------------------------- */

static const wv_manifest_chunk good_chunks[3] = {
    {.offset = 0, .length = 1000, .stored_size = 100, .sha256 = {1}},
    {.offset = 1000, .length = 1000, .stored_size = 200, .sha256 = {2}},
    {.offset = 2000, .length = 500, .stored_size = 50, .sha256 = {3}},
};

static int write_chunked(const wv_manifest_chunk *c, uint32_t n, uint64_t size, uint64_t stored,
                         wv_buf *out, wv_err *err)
{
    wv_manifest_header h;
    fill_header(&h);
    wv_manifest_writer *w;
    assert_int_equal(wv_manifest_writer_new(NULL, &w, err), 0);
    wv_manifest_entry e = {.type = WV_MANIFEST_FILE,
                           .path = "pgdata/base/5/16384",
                           .size = size,
                           .mode = 0600,
                           .mtime = 7,
                           .stored_size = stored,
                           .nchunks = n,
                           .chunks = c};
    e.sha256[0] = 0xab;
    wv_manifest_entry small = {.type = WV_MANIFEST_FILE,
                               .path = "pgdata/PG_VERSION",
                               .size = 3,
                               .mode = 0600,
                               .stored_size = 60};
    int rc = wv_manifest_writer_add(w, &e, err);
    if (rc == 0)
        assert_int_equal(wv_manifest_writer_add(w, &small, err), 0);
    if (rc == 0) {
        wv_filter *f = wv_filter_buf_new(out);
        assert_int_equal(wv_manifest_writer_finish(w, &h, f, err), 0);
        wv_filter_chain_free(f);
    }
    wv_manifest_writer_free(w);
    wv_manifest_header_free(&h);
    return rc;
}

typedef struct chunk_seen {
    int files;
    wv_manifest_chunk c[4];
    uint32_t n;
    uint64_t size;
} chunk_seen;

static int collect_chunks(void *arg, const wv_manifest_entry *e, wv_err *err)
{
    chunk_seen *s = arg;
    (void)err;
    s->files++;
    if (e->nchunks) {
        assert_true(e->nchunks <= 4);
        memcpy(s->c, e->chunks, e->nchunks * sizeof(*e->chunks));
        s->n = e->nchunks;
        s->size = e->size;
        assert_string_equal(e->path, "pgdata/base/5/16384");
    }
    return 0;
}

static void test_chunks_round_trip(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    wv_err err;
    assert_int_equal(write_chunked(good_chunks, 3, 2500, 350, &text, &err), 0);
    const char *t = wv_buf_cstr(&text);
    assert_non_null(strstr(t, "walvault-manifest version=3\n"));
    assert_non_null(strstr(t, " chunks=3\nchunk offset=0 length=1000 sha256=01"));
    wv_manifest_header h;
    chunk_seen s = {0};
    wv_manifest_totals tot;
    assert_int_equal(
        wv_manifest_parse(text.data, text.len, "m", &h, collect_chunks, &s, &tot, &err), 0);
    assert_int_equal(h.version, 3);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.size, 2500);
    assert_memory_equal(s.c, good_chunks, sizeof(good_chunks));
    assert_int_equal(tot.stored_size, 410);
    wv_manifest_header_free(&h);
    /* a manifest without chunked files stays version 2 */
    wv_buf v2 = WV_BUF_INIT;
    write_manifest(&v2);
    assert_non_null(strstr(wv_buf_cstr(&v2), "walvault-manifest version=2\n"));
    wv_buf_free(&v2);
    /* chunk keys */
    wv_manifest_entry e = {.type = WV_MANIFEST_FILE, .path = "pgdata/base/5/16384.1"};
    char key[300];
    wv_manifest_chunk_key("B1", &e, 7, key, sizeof(key));
    assert_string_equal(key, "backup/B1/chunk/pgdata/base/5/16384.1/7");
    e.ref = "B0";
    wv_manifest_chunk_key("B1", &e, 0, key, sizeof(key));
    assert_string_equal(key, "backup/B0/chunk/pgdata/base/5/16384.1/0");
    wv_buf_free(&text);
}

static void test_chunks_writer_rejects(void **state)
{
    (void)state;
    wv_manifest_chunk c[3];
    wv_err err;
    wv_buf text = WV_BUF_INIT;
    memcpy(c, good_chunks, sizeof(c));
    c[1].offset = 999; /* overlap */
    assert_int_equal(write_chunked(c, 3, 2500, 350, &text, &err), WV_EUSAGE);
    assert_non_null(strstr(err.msg, "overlapping chunks"));
    memcpy(c, good_chunks, sizeof(c));
    assert_int_equal(write_chunked(c, 3, 2501, 350, &text, &err), WV_EUSAGE);
    assert_non_null(strstr(err.msg, "do not add up to the file's size"));
    assert_int_equal(write_chunked(c, 3, 2500, 351, &text, &err), WV_EUSAGE);
    assert_non_null(strstr(err.msg, "stored-size"));
    assert_int_equal(write_chunked(c, 3, 2400, 350, &text, &err), WV_EUSAGE);
    assert_non_null(strstr(err.msg, "past the end"));
    c[2].offset = 2001;
    assert_int_equal(write_chunked(c, 3, 2501, 350, &text, &err), WV_EUSAGE);
    assert_non_null(strstr(err.msg, "a gap"));
    assert_int_equal(text.len, 0);
    /* the checker alone */
    assert_null(wv_manifest_chunks_check(good_chunks, 3, 2500, 350));
    assert_non_null(wv_manifest_chunks_check(good_chunks, 0, 0, 0));
    wv_manifest_chunk empty = {.offset = 0, .length = 0};
    assert_non_null(strstr(wv_manifest_chunks_check(&empty, 1, 0, 0), "empty"));
    wv_manifest_chunk far = {.offset = UINT64_MAX - 5, .length = 10};
    assert_non_null(wv_manifest_chunks_check(&far, 1, 100, 0));
}

static const bad_case chunk_cases[] = {
    /* overlapping ranges */
    {"chunk offset=1000 length=1000", "chunk offset=900 length=1000", 1, WV_ECORRUPT,
     "chunk 1 of \"pgdata/base/5/16384\": overlapping chunks"},
    /* a gap */
    {"chunk offset=1000 length=1000", "chunk offset=1100 length=1000", 1, WV_ECORRUPT,
     "chunk 1 of \"pgdata/base/5/16384\": a gap between chunks"},
    /* lengths not summing to the size */
    {"chunk offset=2000 length=500", "chunk offset=2000 length=499", 1, WV_ECORRUPT,
     "do not add up to the file's size"},
    /* past the size */
    {"chunk offset=2000 length=500", "chunk offset=2000 length=501", 1, WV_ECORRUPT,
     "chunk 2 of \"pgdata/base/5/16384\": a chunk past the end of the file"},
    {"chunk offset=0 length=1000", "chunk offset=0 length=3000", 1, WV_ECORRUPT,
     "chunk 0 of \"pgdata/base/5/16384\": a chunk past the end of the file"},
    {"chunk offset=0 length=1000", "chunk offset=0 length=0", 1, WV_ECORRUPT, "an empty chunk"},
    /* fewer chunk records than announced */
    {"chunks=3", "chunks=4", 1, WV_ECORRUPT, "announces 4 chunks, 3 follow"},
    /* more chunk records than announced */
    {"chunks=3", "chunks=2", 1, WV_ECORRUPT, "do not add up to the file's size"},
    {"chunks=3", "chunks=0", 1, WV_ECORRUPT, "bad chunk count 0"},
    {"chunks=3", "chunks=65537", 1, WV_ECORRUPT, "bad chunk count 65537"},
    {"stored-size=50\n", "stored-size=51\n", 1, WV_ECORRUPT,
     "do not add up to the file's stored-size"},
    {"chunk offset=0 length=1000 sha256=01", "chunk offset=0 length=1000 sha256=zz", 1, WV_ECORRUPT,
     "bad sha256"},
    {"chunk offset=0 length=1000", "chunk offset=0 length=1000 n=1", 1, WV_ECORRUPT,
     "unknown key \"n\" in \"chunk\""},
    /* version 2 knows no chunks */
    {"walvault-manifest version=3", "walvault-manifest version=2", 1, WV_ECORRUPT,
     "unknown key \"chunks\" in \"file\""},
    /* a chunk list is covered by the end digest */
    {"chunk offset=1000 length=1000 sha256=02", "chunk offset=1000 length=1000 sha256=03", 0,
     WV_ECORRUPT, "checksum mismatch"},
};

static void test_chunks_malformed(void **state)
{
    (void)state;
    wv_buf text = WV_BUF_INIT;
    wv_err err;
    assert_int_equal(write_chunked(good_chunks, 3, 2500, 350, &text, &err), 0);
    const char *good = wv_buf_cstr(&text);
    for (size_t i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
        const bad_case *c = &chunk_cases[i];
        char *m = mutate(good, c->from, c->to, c->reseal);
        wv_manifest_header h;
        chunk_seen s = {0};
        wv_err_clear(&err);
        int rc = wv_manifest_parse(m, strlen(m), "backup/x/backup.manifest", &h, collect_chunks, &s,
                                   NULL, &err);
        if (rc != c->want_rc || !strstr(err.msg, c->want))
            fail_msg("case %zu (%s -> %s): rc %d \"%s\", want %d \"%s\"", i, c->from, c->to, rc,
                     err.msg, c->want_rc, c->want);
        /* a refused chunk list never reaches the callback */
        if (c->reseal)
            assert_int_equal(s.n, 0);
        wv_manifest_header_free(&h);
        free(m);
    }
    /* a stray chunk record */
    char *m = mutate(good, "file path=pgdata/PG_VERSION",
                     "chunk offset=0 length=1 sha256="
                     "0000000000000000000000000000000000000000000000000000000000000000"
                     " stored-size=1\nfile path=pgdata/PG_VERSION",
                     1);
    wv_manifest_header h;
    assert_int_equal(wv_manifest_parse(m, strlen(m), "m", &h, NULL, NULL, NULL, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "unknown record \"chunk\""));
    wv_manifest_header_free(&h);
    free(m);
    wv_buf_free(&text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_callback_error),
        cmocka_unit_test(test_version1),
        cmocka_unit_test(test_file_object),
        cmocka_unit_test(test_chunks_round_trip),
        cmocka_unit_test(test_chunks_writer_rejects),
        cmocka_unit_test(test_chunks_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
