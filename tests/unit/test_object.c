/*
 * test_object.c - the object layer over in-memory sinks and sources: round trips with and without
 * lz4, several sinks with one failing, every kind of damage to a stored object, bounded reading.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "pipeline/object.h"
#include "storage/driver.h"

#define MIB (1024 * 1024)
/* An unbound version-2 header: the fixed 64 bytes and the name check. */
#define HDR (WV_OBJ_HEADER_SIZE + 4)

#include "memio.h"
#include "probe.h"

/* --- data and helpers --------------------------------------------------------------------------
 */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint8_t *mixed_data(size_t len)
{
    uint8_t *d = malloc(len ? len : 1);
    size_t pos = 0;
    rng_state = 0x2545f4914f6cdd1dULL;
    while (pos < len) {
        size_t run = 1 + rng() % (200 * 1024);
        if (run > len - pos)
            run = len - pos;
        int k = (int)(rng() % 3);
        for (size_t i = 0; i < run; i++)
            d[pos + i] = k == 0 ? 0 : k == 1 ? (uint8_t)rng() : (uint8_t) "walvault\n"[i % 9];
        pos += run;
    }
    return d;
}

static void sha256_oneshot(const uint8_t *d, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(d, len, out, &n, EVP_sha256(), NULL), 1);
}

/* Store data as one object into a fresh memory sink (in pieces of `chunk`). */
static void store(const uint8_t *d, size_t len, wv_compress comp, uint8_t kind, size_t chunk,
                  wv_buf *out, wv_obj_info *info)
{
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts opts = {.compress = comp, .level = 1, .kind = kind};
    wv_err err = {0};
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &opts);
    for (size_t pos = 0; pos < len; pos += chunk)
        assert_int_equal(
            wv_objwriter_write(w, d + pos, len - pos < chunk ? len - pos : chunk, &err), 0);
    assert_int_equal(wv_objwriter_finish(w, info, &err), 0);
    assert_null(wv_objwriter_sink_error(w, 0));
    wv_objwriter_free(w);
    *out = s.data;
}

/* Read an object back; returns the code, with the content in *content (caller frees). */
static int load(const uint8_t *obj, size_t len, size_t max_read, wv_buf *content, wv_obj_info *info,
                wv_err *err)
{
    mem_source src;
    mem_source_init(&src, obj, len, max_read);
    wv_buf_init(content);
    wv_filter *dest = wv_filter_buf_new(content);
    int rc = wv_object_read(&src.base, dest, info, err);
    wv_filter_chain_free(dest);
    return rc;
}

/* --- round trips -------------------------------------------------------------------------------
 */

static void test_roundtrip(void **state)
{
    static const size_t sizes[] = {0, 1, 100, 64 + 128, WV_FILTER_CHUNK, 3 * MIB + 777};
    static const size_t chunks[] = {1, 7, 4096, MIB};
    static const size_t reads[] = {1, 7, 4096, 0};
    uint8_t *d = mixed_data(3 * MIB + 777);
    for (int comp = 0; comp <= 1; comp++) {
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            size_t len = sizes[si];
            uint8_t want[32];
            sha256_oneshot(d, len, want);
            for (size_t ci = 0; ci < 4; ci++) {
                /* Byte-at-a-time over megabytes is slow and adds nothing beyond 64 KiB. */
                if (chunks[ci] == 1 && len > WV_FILTER_CHUNK)
                    continue;
                wv_buf obj;
                wv_obj_info wi, ri;
                wv_err err = {0};
                store(d, len, (wv_compress)comp, WV_OBJ_KIND_WAL, chunks[ci], &obj, &wi);
                assert_int_equal(wi.plain_size, len);
                assert_int_equal(wi.payload_size, obj.len - HDR - 128);
                assert_int_equal(wi.header_size, HDR);
                assert_memory_equal(wi.sha256, want, 32);
                assert_int_equal(wi.kind, WV_OBJ_KIND_WAL);
                assert_int_equal(wi.compression, comp);
                assert_memory_equal(obj.data, WV_OBJ_HEADER_MAGIC, 8);
                if (comp == 0)
                    assert_memory_equal(obj.data + HDR, d, len); /* payload is the content */

                /* The suffix alone tells size and digest. */
                wv_obj_info si_info;
                assert_int_equal(
                    wv_object_info_decode(obj.data + obj.len - 128, 128, &si_info, &err), 0);
                assert_int_equal(si_info.plain_size, len);
                assert_memory_equal(si_info.sha256, want, 32);
                assert_int_equal(si_info.kind, WV_OBJ_KIND_WAL);
                assert_int_equal(si_info.compression, comp);

                wv_buf content;
                int rc = load(obj.data, obj.len, reads[ci], &content, &ri, &err);
                if (rc != 0)
                    fail_msg("comp %d size %zu chunk %zu: %s", comp, len, chunks[ci], err.msg);
                assert_int_equal(content.len, len);
                if (len)
                    assert_memory_equal(content.data, d, len);
                assert_int_equal(ri.plain_size, len);
                assert_memory_equal(ri.sha256, want, 32);
                wv_buf_free(&content);
                wv_buf_free(&obj);
            }
        }
    }
    free(d);
}

static void test_walinfo_and_kinds(void **state)
{
    const char *text = "timeline history\n";
    for (uint8_t kind = 0; kind <= WV_OBJ_KIND_MAX; kind++) {
        mem_sink s;
        wv_sink *sinks[1] = {&s.base};
        wv_obj_opts opts = {.compress = WV_COMPRESS_LZ4, .level = 9, .kind = kind};
        wv_obj_info wi, ri;
        wv_err err = {0};
        mem_sink_init(&s, 0);
        wv_objwriter *w = wv_objwriter_new(sinks, 1, &opts);
        assert_int_equal(wv_objwriter_write(w, text, strlen(text), &err), 0);
        wv_objwriter_set_walinfo(w, 1000000 + kind, 2000000 + kind, 17u + kind, kind);
        assert_int_equal(wv_objwriter_finish(w, &wi, &err), 0);
        /* Use after finish is refused. */
        assert_int_equal(wv_objwriter_write(w, "x", 1, &err), WV_EINTERNAL);
        wv_objwriter_free(w);

        wv_buf content;
        assert_int_equal(load(s.data.data, s.data.len, 0, &content, &ri, &err), 0);
        assert_int_equal(content.len, strlen(text));
        assert_int_equal(ri.kind, kind);
        assert_true(ri.first_commit_us == 1000000 + kind);
        assert_true(ri.last_commit_us == 2000000 + kind);
        assert_int_equal(ri.commit_count, 17u + kind);
        assert_int_equal(ri.restore_point_count, kind);
        assert_int_equal(ri.plain_size, wi.plain_size);
        assert_int_equal(ri.payload_size, wi.payload_size);
        assert_memory_equal(ri.sha256, wi.sha256, 32);
        assert_true(wi.first_commit_us == 1000000 + kind);
        assert_int_equal(wi.restore_point_count, kind);
        wv_buf_free(&content);
        wv_buf_free(&s.data);
    }
    /* Without walinfo: no times. */
    wv_buf obj;
    wv_obj_info wi;
    store((const uint8_t *)"x", 1, WV_COMPRESS_NONE, WV_OBJ_KIND_GENERIC, 1, &obj, &wi);
    assert_true(wi.first_commit_us == WV_OBJ_TIME_NONE && wi.last_commit_us == WV_OBJ_TIME_NONE);
    assert_int_equal(wi.commit_count, 0);
    wv_buf_free(&obj);
}

/* --- several sinks -----------------------------------------------------------------------------
 */

static void test_two_sinks_one_fails(void **state)
{
    const size_t len = 2 * MIB + 5;
    uint8_t *d = mixed_data(len);
    for (int comp = 0; comp <= 1; comp++) {
        for (int which = 0; which <= 1; which++) {
            /* Sink `which` fails halfway through; the other one must end with a valid object. */
            wv_buf ref;
            wv_obj_info ri;
            store(d, len, (wv_compress)comp, WV_OBJ_KIND_BACKUP_FILE, 4096, &ref, &ri);
            mem_sink s[2];
            mem_sink_init(&s[0], which == 0 ? ref.len / 2 : 0);
            mem_sink_init(&s[1], which == 1 ? ref.len / 2 : 0);
            wv_sink *sinks[2] = {&s[0].base, &s[1].base};
            wv_obj_opts opts = {
                .compress = (wv_compress)comp, .level = 1, .kind = WV_OBJ_KIND_BACKUP_FILE};
            wv_err err = {0};
            wv_obj_info wi;
            wv_objwriter *w = wv_objwriter_new(sinks, 2, &opts);
            for (size_t pos = 0; pos < len; pos += 4096) {
                size_t n = len - pos < 4096 ? len - pos : 4096;
                assert_int_equal(wv_objwriter_write(w, d + pos, n, &err), 0);
            }
            assert_int_equal(wv_objwriter_finish(w, &wi, &err), 0);
            const wv_err *bad = wv_objwriter_sink_error(w, which);
            assert_non_null(bad);
            assert_int_equal(bad->code, WV_ENOSPACE);
            assert_non_null(strstr(bad->msg, "no space"));
            assert_null(wv_objwriter_sink_error(w, 1 - which));
            assert_null(wv_objwriter_sink_error(w, 2));
            assert_null(wv_objwriter_sink_error(w, -1));
            assert_int_equal(wv_objwriter_sinks_ok(w), 1);
            wv_objwriter_free(w);

            /* The good sink holds exactly the object a single sink gets. */
            mem_sink *good = &s[1 - which];
            assert_int_equal(good->data.len, ref.len);
            assert_memory_equal(good->data.data, ref.data, ref.len);
            wv_buf content;
            assert_int_equal(load(good->data.data, good->data.len, 0, &content, &ri, &err), 0);
            assert_int_equal(content.len, len);
            assert_memory_equal(content.data, d, len);
            /* The failed sink got no byte past its failure point, and its partial object does
             * not read back. */
            assert_true(s[which].data.len <= ref.len / 2);
            wv_buf_free(&content);
            assert_int_equal(load(s[which].data.data, s[which].data.len, 0, &content, &ri, &err),
                             WV_ECORRUPT);
            wv_buf_free(&content);
            wv_buf_free(&ref);
            wv_buf_free(&s[0].data);
            wv_buf_free(&s[1].data);
        }
    }
    free(d);
}

static void test_all_sinks_fail(void **state)
{
    const size_t len = MIB;
    uint8_t *d = mixed_data(len);
    mem_sink s[2];
    mem_sink_init(&s[0], 1000);
    mem_sink_init(&s[1], 300000);
    wv_sink *sinks[2] = {&s[0].base, &s[1].base};
    wv_obj_opts opts = {.compress = WV_COMPRESS_NONE, .level = 0, .kind = 0};
    wv_err err = {0};
    wv_objwriter *w = wv_objwriter_new(sinks, 2, &opts);
    int rc = 0;
    size_t pos;
    for (pos = 0; pos < len && rc == 0; pos += 4096)
        rc = wv_objwriter_write(w, d + pos, 4096, &err);
    assert_int_equal(rc, WV_ENOSPACE);
    assert_true(pos > 300000 - 64 && pos < 300000 + 2 * WV_FILTER_CHUNK);
    /* The reported error is the first sink's to fail. */
    assert_non_null(strstr(err.msg, "after 68 bytes"));
    assert_int_equal(wv_objwriter_sinks_ok(w), 0);
    assert_non_null(wv_objwriter_sink_error(w, 0));
    assert_non_null(wv_objwriter_sink_error(w, 1));
    /* Later calls keep failing with the same error. */
    wv_err again = {0};
    assert_int_equal(wv_objwriter_write(w, d, 10, &again), WV_ENOSPACE);
    assert_int_equal(wv_objwriter_finish(w, NULL, &again), WV_ENOSPACE);
    wv_objwriter_free(w);
    wv_buf_free(&s[0].data);
    wv_buf_free(&s[1].data);

    /* No sinks at all. */
    w = wv_objwriter_new(NULL, 0, NULL);
    assert_int_equal(wv_objwriter_finish(w, NULL, &err), WV_EINTERNAL);
    wv_objwriter_free(w);
    free(d);
}

/* --- damage ------------------------------------------------------------------------------------
 */

typedef enum {
    M_TRUNC,     /* keep only `arg` bytes */
    M_CUT_END,   /* drop the last `arg` bytes */
    M_FLIP,      /* flip the byte at `arg` (negative: from the end) */
    M_DELETE,    /* delete the payload byte at offset HDR + arg */
    M_INSERT,    /* insert a byte at offset HDR + arg */
    M_TRAILER,   /* rewrite the trailer (valid check) with one field changed */
    M_HEADER_V2, /* an intact header of a newer version */
    M_CIPHER,    /* a version-2 header and trailer say aes-256-gcm */
    M_LZ4_CUT,   /* lz4 payload without its end mark, trailer consistent with it */
} mutation;

enum { T_PLAIN_SIZE, T_KIND, T_SHA, T_PAYLOAD_SIZE };

static const struct {
    const char *name;
    int comp;
    mutation m;
    long arg;
    int rc;
    const char *msg;
} damage[] = {
    {"empty object", 0, M_TRUNC, 0, WV_ECORRUPT, "shorter than its 64-byte header"},
    {"half a header", 1, M_TRUNC, 40, WV_ECORRUPT, "shorter than its 64-byte header"},
    {"header only", 0, M_TRUNC, HDR, WV_ECORRUPT, "too short for header and trailer"},
    {"header and part of payload", 0, M_TRUNC, HDR + 100, WV_ECORRUPT,
     "too short for header and trailer"},
    {"truncated mid-payload", 1, M_TRUNC, 5000, WV_ECORRUPT, "trailer magic"},
    {"last byte missing", 0, M_CUT_END, 1, WV_ECORRUPT, "trailer magic"},
    {"trailer missing", 1, M_CUT_END, 128, WV_ECORRUPT, "trailer magic"},
    {"header magic", 0, M_FLIP, 0, WV_ECORRUPT, "header magic"},
    {"header magic last byte", 1, M_FLIP, 7, WV_ECORRUPT, "header magic"},
    {"header version", 0, M_FLIP, 8, WV_ECORRUPT, "header check"},
    {"header kind", 1, M_FLIP, 15, WV_ECORRUPT, "header check"},
    {"header check", 0, M_FLIP, 63, WV_ECORRUPT, "header check"},
    {"trailer magic", 0, M_FLIP, -128, WV_ECORRUPT, "trailer magic"},
    {"trailer plain size", 1, M_FLIP, -120, WV_ECORRUPT, "trailer check"},
    {"trailer digest", 0, M_FLIP, -100, WV_ECORRUPT, "trailer check"},
    {"trailer check", 1, M_FLIP, -1, WV_ECORRUPT, "trailer check"},
    {"payload byte flipped", 0, M_FLIP, HDR + 1000, WV_ECORRUPT, "checksum mismatch"},
    {"last payload byte flipped", 0, M_FLIP, -129, WV_ECORRUPT, "checksum mismatch"},
    {"payload byte deleted", 0, M_DELETE, 10, WV_ECORRUPT, "payload size mismatch"},
    {"payload byte inserted", 0, M_INSERT, 10, WV_ECORRUPT, "payload size mismatch"},
    {"lz4 payload byte inserted", 1, M_INSERT, 3, WV_ECORRUPT, "lz4"},
    {"trailer plain size rewritten", 0, M_TRAILER, T_PLAIN_SIZE, WV_ECORRUPT, "size mismatch"},
    {"trailer digest rewritten", 1, M_TRAILER, T_SHA, WV_ECORRUPT, "checksum mismatch"},
    {"trailer payload size rewritten", 1, M_TRAILER, T_PAYLOAD_SIZE, WV_ECORRUPT,
     "payload size mismatch"},
    {"header and trailer disagree", 0, M_TRAILER, T_KIND, WV_ECORRUPT, "disagree"},
    {"newer header version", 1, M_HEADER_V2, 0, WV_EFORMAT, "newer walvault"},
    {"a cipher in a version-2 object", 0, M_CIPHER, 0, WV_ECORRUPT, "a cipher in a version"},
    {"lz4 frame cut, sizes consistent", 1, M_LZ4_CUT, 0, WV_ECORRUPT, "lz4: truncated"},
    {"lz4 block size damaged", 1, M_FLIP, HDR + 10, WV_ECORRUPT, "lz4"},
};

static void fix_check(uint8_t *p, size_t off)
{
    uint8_t md[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(p, off, md, &n, EVP_sha256(), NULL), 1);
    memcpy(p + off, md, 4);
}

static void rewrite_trailer(wv_buf *o, void (*edit)(wv_obj_info *, long), long arg)
{
    wv_obj_info info;
    wv_err err = {0};
    assert_int_equal(wv_obj_trailer_decode(o->data, o->len, &info, &err), 0);
    edit(&info, arg);
    assert_int_equal(wv_obj_trailer_encode(&info, o->data + o->len - 128, &err), 0);
}

static void edit_field(wv_obj_info *info, long which)
{
    switch (which) {
    case T_PLAIN_SIZE:
        info->plain_size += 1;
        break;
    case T_KIND:
        info->kind = (uint8_t)((info->kind + 1) % (WV_OBJ_KIND_MAX + 1));
        break;
    case T_SHA:
        info->sha256[31] ^= 1;
        break;
    default:
        info->payload_size -= 1;
        break;
    }
}

static void edit_lz4_cut(wv_obj_info *info, long arg)
{
    info->payload_size -= 4;
}

static void test_damage_table(void **state)
{
    const size_t len = 300 * 1024 + 3;
    uint8_t *d = mixed_data(len);
    wv_buf objs[2];
    wv_obj_info info;
    for (int comp = 0; comp <= 1; comp++)
        store(d, len, (wv_compress)comp, WV_OBJ_KIND_WAL, 65536, &objs[comp], &info);
    assert_true(objs[1].len > 6000);

    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        wv_buf o = WV_BUF_INIT;
        const wv_buf *ref = &objs[damage[i].comp];
        long arg = damage[i].arg;
        wv_buf_append(&o, ref->data, ref->len);
        switch (damage[i].m) {
        case M_TRUNC:
            o.len = (size_t)arg;
            break;
        case M_CUT_END:
            o.len -= (size_t)arg;
            break;
        case M_FLIP:
            o.data[arg >= 0 ? (size_t)arg : o.len - (size_t)-arg] ^= 0x40;
            break;
        case M_DELETE:
            memmove(o.data + HDR + arg, o.data + HDR + arg + 1, o.len - HDR - (size_t)arg - 1);
            o.len--;
            break;
        case M_INSERT:
            wv_buf_reserve(&o, 1);
            memmove(o.data + HDR + arg + 1, o.data + HDR + arg, o.len - HDR - (size_t)arg);
            o.data[HDR + arg] = 0x55;
            o.len++;
            break;
        case M_TRAILER:
            rewrite_trailer(&o, edit_field, arg);
            break;
        case M_HEADER_V2:
            o.data[8] = WV_OBJ_VERSION_MAX + 1;
            fix_check(o.data, 60);
            break;
        case M_CIPHER:
            o.data[13] = WV_OBJ_CIPHER_AES256GCM;
            fix_check(o.data, 60);
            fix_check(o.data, 64); /* the name check (no name) covers the fixed part */
            o.data[o.len - 128 + 83] = WV_OBJ_CIPHER_AES256GCM;
            fix_check(o.data + o.len - 128, 124);
            break;
        case M_LZ4_CUT:
            /* Drop the 4-byte end mark right before the trailer. */
            memmove(o.data + o.len - 132, o.data + o.len - 128, 128);
            o.len -= 4;
            rewrite_trailer(&o, edit_lz4_cut, 0);
            break;
        }
        for (int rd = 0; rd < 2; rd++) {
            wv_err err = {0};
            wv_buf content;
            wv_obj_info ri;
            int rc = load(o.data, o.len, rd ? 1000 : 0, &content, &ri, &err);
            if (rc != damage[i].rc)
                fail_msg("%s: got %d (%s), want %d", damage[i].name, rc, err.msg, damage[i].rc);
            if (!strstr(err.msg, damage[i].msg))
                fail_msg("%s: message \"%s\" lacks \"%s\"", damage[i].name, err.msg, damage[i].msg);
            if (rc == WV_ECORRUPT && err.hint[0] == '\0')
                fail_msg("%s: no hint", damage[i].name);
            wv_buf_free(&content);
        }
        wv_buf_free(&o);
    }
    wv_buf_free(&objs[0]);
    wv_buf_free(&objs[1]);
    free(d);
}

static void test_source_error_and_dest_untouched_flags(void **state)
{
    const size_t len = MIB;
    uint8_t *d = mixed_data(len);
    wv_buf obj;
    wv_obj_info info;
    store(d, len, WV_COMPRESS_LZ4, WV_OBJ_KIND_WAL, MIB, &obj, &info);
    /* The source fails midway: its own error comes back and dest is never finished. */
    mem_source src;
    mem_source_init(&src, obj.data, obj.len, 4096);
    src.fail_at = obj.len / 2;
    probe *p = probe_new(0);
    wv_err err = {0};
    assert_int_equal(wv_object_read(&src.base, &p->base, &info, &err), WV_EUNREACHABLE);
    assert_non_null(strstr(err.msg, "connection lost"));
    assert_int_equal(p->finished, 0);
    /* A corrupt object: dest may have received bytes, but is not finished. */
    obj.data[obj.len - 129] ^= 1; /* last payload byte: lz4 end mark */
    mem_source_init(&src, obj.data, obj.len, 0);
    probe *p2 = probe_new(0);
    assert_int_equal(wv_object_read(&src.base, &p2->base, &info, &err), WV_ECORRUPT);
    assert_int_equal(p2->finished, 0);
    wv_filter_chain_free(&p->base);
    wv_filter_chain_free(&p2->base);
    wv_buf_free(&obj);

    /* Content that decodes to the right length but not the stored digest, and content that
     * decodes short: the digest or size check speaks before dest finishes (dest's own checks at
     * finish, such as a WAL segment's length, never report damage as something else). */
    wv_buf plain;
    store(d, len, WV_COMPRESS_NONE, WV_OBJ_KIND_WAL, MIB, &plain, &info);
    plain.data[HDR + len / 2] ^= 0x20;
    mem_source_init(&src, plain.data, plain.len, 0);
    probe *p3 = probe_new(0);
    assert_int_equal(wv_object_read(&src.base, &p3->base, &info, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    assert_int_equal(p3->total, len);
    assert_int_equal(p3->finished, 0);
    wv_filter_chain_free(&p3->base);
    wv_buf_free(&plain);
    free(d);
}

static void test_bomb_bounded(void **state)
{
    /* 64 MiB of zeros compress to a small object; reading it pushes bounded pieces. */
    const size_t big = 64 * MIB;
    uint8_t *zeros = calloc(1, MIB);
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts opts = {.compress = WV_COMPRESS_LZ4, .level = 1, .kind = WV_OBJ_KIND_WAL};
    wv_err err = {0};
    wv_obj_info info;
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &opts);
    for (size_t i = 0; i < big / MIB; i++)
        assert_int_equal(wv_objwriter_write(w, zeros, MIB, &err), 0);
    assert_int_equal(wv_objwriter_finish(w, &info, &err), 0);
    wv_objwriter_free(w);
    assert_true(s.data.len < MIB);
    assert_int_equal(info.plain_size, big);

    mem_source src;
    mem_source_init(&src, s.data.data, s.data.len, 0);
    probe *p = probe_new(0);
    assert_int_equal(wv_object_read(&src.base, &p->base, &info, &err), 0);
    assert_int_equal(p->total, big);
    assert_true(p->max_piece <= WV_FILTER_CHUNK);
    assert_int_equal(p->finished, 1);
    wv_filter_chain_free(&p->base);
    wv_buf_free(&s.data);
    free(zeros);
}

static void test_info_decode(void **state)
{
    wv_buf obj;
    wv_obj_info wi, si;
    wv_err err = {0};
    store((const uint8_t *)"abc", 3, WV_COMPRESS_NONE, WV_OBJ_KIND_HISTORY, 3, &obj, &wi);
    /* A longer suffix works; a short one is truncation. */
    assert_int_equal(wv_object_info_decode(obj.data, obj.len, &si, &err), 0);
    assert_int_equal(si.plain_size, 3);
    assert_int_equal(si.kind, WV_OBJ_KIND_HISTORY);
    assert_int_equal(wv_object_info_decode(obj.data + obj.len - 127, 127, &si, &err), WV_ECORRUPT);
    assert_true(err.hint[0] != '\0');
    wv_buf_free(&obj);
}

/* Store with a bound name. */
static void store_named(const uint8_t *d, size_t len, wv_compress comp, const char *name,
                        wv_buf *out, wv_obj_info *info)
{
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts opts = {.compress = comp, .level = 1, .kind = WV_OBJ_KIND_WAL, .name = name};
    wv_err err = {0};
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &opts);
    if (len)
        assert_int_equal(wv_objwriter_write(w, d, len, &err), 0);
    assert_int_equal(wv_objwriter_finish(w, info, &err), 0);
    wv_objwriter_free(w);
    *out = s.data;
}

static int load_opts(const wv_buf *obj, const wv_objread_opts *o, probe **p, wv_obj_info *info,
                     wv_err *err)
{
    mem_source src;
    mem_source_init(&src, obj->data, obj->len, 777);
    *p = probe_new(0);
    return wv_object_read_opts(&src.base, &(*p)->base, o, info, err);
}

#define K1 "wal/0000000100000000/000000010000000000000001"
#define K2 "wal/0000000100000000/000000010000000000000002"

static void test_binding_checked_by_reader(void **state)
{
    uint8_t *d = mixed_data(100000);
    wv_buf obj;
    wv_obj_info wi, ri;
    probe *p;
    int unbound = -1;
    store_named(d, 100000, WV_COMPRESS_LZ4, K1, &obj, &wi);
    assert_int_equal(wi.header_size, 64 + strlen(K1) + 4);
    assert_int_equal(obj.len, wi.header_size + wi.payload_size + 128);
    assert_memory_equal(obj.data + 64, K1, strlen(K1));

    /* Read as its own key: fine, bound. */
    wv_err err = {0};
    wv_objread_opts o = {.key = K1, .unbound = &unbound};
    assert_int_equal(load_opts(&obj, &o, &p, &ri, &err), 0);
    assert_int_equal(unbound, 0);
    assert_int_equal(p->total, 100000);
    assert_int_equal(ri.header_size, wi.header_size);
    wv_filter_chain_free(&p->base);

    /* Read as another key: corruption naming both, before one byte reaches dest. */
    o.key = K2;
    assert_int_equal(load_opts(&obj, &o, &p, &ri, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "\"" K2 "\" holds the object stored as \"" K1 "\""));
    assert_true(err.hint[0] != '\0');
    assert_int_equal(p->total, 0);
    assert_int_equal(p->finished, 0);
    wv_filter_chain_free(&p->base);

    /* Without a key to check (a tool reading a copy): read. */
    assert_int_equal(load_opts(&obj, NULL, &p, &ri, &err), 0);
    wv_filter_chain_free(&p->base);
    wv_buf_free(&obj);

    /* An unbound object (no name given to the writer) is read under any key, and said so. */
    store(d, 1000, WV_COMPRESS_NONE, WV_OBJ_KIND_WAL, 1000, &obj, &wi);
    o.key = K2;
    assert_int_equal(load_opts(&obj, &o, &p, &ri, &err), 0);
    assert_int_equal(unbound, 1);
    wv_filter_chain_free(&p->base);
    wv_buf_free(&obj);

    /* A version-1 object (header of 64 bytes), as an older walvault wrote it: still read. */
    wv_buf v1 = WV_BUF_INIT;
    wv_obj_header h;
    wv_obj_info ti;
    uint8_t hb[WV_OBJ_HEADER_MAX], tb[128], sha[32];
    wv_obj_header_init(&h, WV_OBJ_KIND_WAL, WV_OBJ_COMPRESS_NONE);
    h.version = 1;
    assert_int_equal(wv_obj_header_encode(&h, hb, &err), 0);
    wv_obj_info_init(&ti);
    ti.version = 1;
    ti.kind = WV_OBJ_KIND_WAL;
    ti.plain_size = ti.payload_size = 5000;
    sha256_oneshot(d, 5000, sha);
    memcpy(ti.sha256, sha, 32);
    assert_int_equal(wv_obj_trailer_encode(&ti, tb, &err), 0);
    wv_buf_append(&v1, hb, 64);
    wv_buf_append(&v1, d, 5000);
    wv_buf_append(&v1, tb, 128);
    unbound = 0;
    assert_int_equal(load_opts(&v1, &o, &p, &ri, &err), 0);
    assert_int_equal(unbound, 1);
    assert_int_equal(ri.version, 1);
    assert_int_equal(ri.header_size, 64);
    assert_int_equal(p->total, 5000);
    wv_filter_chain_free(&p->base);
    wv_buf_free(&v1);

    /* A name too long for the header: the writer fails, nothing is written. */
    char longname[WV_OBJ_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts wo = {.compress = WV_COMPRESS_NONE, .name = longname};
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &wo);
    assert_int_equal(wv_objwriter_write(w, d, 10, &err), WV_EINTERNAL);
    assert_int_equal(wv_objwriter_finish(w, &wi, &err), WV_EINTERNAL);
    assert_int_equal(s.data.len, 0);
    wv_objwriter_free(w);
    wv_buf_free(&s.data);
    free(d);
}

/* An lz4 bomb: 512 MiB of zeros in an object of about 2 MiB. A reader that expects a segment
 * (16 MiB) stops right past it: dest never sees more than the limit, whatever the trailer says. */
static void test_bomb_capped(void **state)
{
    const size_t big = 512 * (size_t)MIB;
    uint8_t *zeros = calloc(1, 4 * MIB);
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts opts = {
        .compress = WV_COMPRESS_LZ4, .level = 1, .kind = WV_OBJ_KIND_WAL, .name = K1};
    wv_err err = {0};
    wv_obj_info info;
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &opts);
    for (size_t i = 0; i < big / (4 * MIB); i++)
        assert_int_equal(wv_objwriter_write(w, zeros, 4 * MIB, &err), 0);
    assert_int_equal(wv_objwriter_finish(w, &info, &err), 0);
    wv_objwriter_free(w);
    assert_true(s.data.len < 3 * MIB);

    static const uint64_t limits[] = {16 * MIB, 1, 16 * MIB - 1};
    for (size_t i = 0; i < 3; i++) {
        probe *p;
        wv_objread_opts o = {.key = K1, .max_plain = limits[i]};
        double t0 = (double)clock();
        assert_int_equal(load_opts(&s.data, &o, &p, &info, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "decompression stopped"));
        assert_true(p->total <= limits[i]);
        assert_int_equal(p->finished, 0);
        /* It stopped early: far less work than decompressing 512 MiB. */
        assert_true(((double)clock() - t0) / CLOCKS_PER_SEC < 5.0);
        wv_filter_chain_free(&p->base);
    }

    /* The exact size passes; a limit of 0 with WV_OBJREAD_LIMIT allows only the empty object. */
    wv_buf small, empty;
    store_named(zeros, 1000, WV_COMPRESS_LZ4, K1, &small, &info);
    store_named(zeros, 0, WV_COMPRESS_LZ4, K1, &empty, &info);
    probe *p;
    wv_objread_opts o = {.key = K1, .max_plain = 1000};
    assert_int_equal(load_opts(&small, &o, &p, &info, &err), 0);
    wv_filter_chain_free(&p->base);
    o.max_plain = 999;
    assert_int_equal(load_opts(&small, &o, &p, &info, &err), WV_ECORRUPT);
    assert_true(p->total <= 999);
    wv_filter_chain_free(&p->base);
    o.max_plain = 0;
    o.flags = WV_OBJREAD_LIMIT;
    assert_int_equal(load_opts(&small, &o, &p, &info, &err), WV_ECORRUPT);
    assert_int_equal(p->total, 0);
    wv_filter_chain_free(&p->base);
    assert_int_equal(load_opts(&empty, &o, &p, &info, &err), 0);
    wv_filter_chain_free(&p->base);
    wv_buf_free(&small);
    wv_buf_free(&empty);
    wv_buf_free(&s.data);
    free(zeros);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_walinfo_and_kinds),
        cmocka_unit_test(test_two_sinks_one_fails),
        cmocka_unit_test(test_all_sinks_fail),
        cmocka_unit_test(test_damage_table),
        cmocka_unit_test(test_source_error_and_dest_untouched_flags),
        cmocka_unit_test(test_bomb_bounded),
        cmocka_unit_test(test_info_decode),
        cmocka_unit_test(test_binding_checked_by_reader),
        cmocka_unit_test(test_bomb_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
