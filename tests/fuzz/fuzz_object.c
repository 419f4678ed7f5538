/*
 * fuzz_object.c - the object reader end to end (common/pipeline/object.c): header, lz4 payload,
 * trailer, size and digest checks, read from memory with short reads.
 *
 * The first input byte chooses how the rest becomes an object:
 *   mode 0  the bytes are the object as stored;
 *   mode 1  the same, with the header's and trailer's magic, check and payload size made right,
 *           and the trailer's plain size and SHA-256 taken from an independent lz4 decode of the
 *           payload (so that damaged lz4 data, not a failed check, is what the reader meets);
 *   mode 2  the bytes are plain content, stored with the object writer (lz4 or not; encrypted,
 *           format 3, when mode has bit 0x40), then a few bytes of the stored object are flipped
 *           at positions the input chooses.
 * Every object is read with a fixed symmetric key, so that format-3 input reaches decryption.
 * Invariants: a failure is one of the documented classes with a one-line message; decompression
 * is bounded (pieces of at most WV_FILTER_CHUNK, and a destination that refuses more than
 * DEST_MAX bytes stops the read); success means the destination got exactly the plain content the
 * trailer describes (size and SHA-256), the independent decoder agrees, and in mode 2 without
 * flips the content read back is the content written.
 */
#include <lz4frame.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "pipeline/filter.h"
#include "pipeline/object.h"
#include "fuzz.h"

#define DEST_MAX (8u << 20)

/* A terminal stage that hashes what it gets, checks the piece size and refuses a bomb. */
typedef struct dest_filter {
    wv_filter base;
    EVP_MD_CTX *md;
    uint64_t bytes;
    int finished;
    wv_buf *keep; /* NULL or a copy of everything */
} dest_filter;

static int dest_write(wv_filter *f, const uint8_t *buf, size_t len, wv_err *err)
{
    dest_filter *d = (dest_filter *)f;
    FZ_CHECK(len <= WV_FILTER_CHUNK, "a piece of %zu bytes", len);
    FZ_CHECK(!d->finished, "%s", "write after finish");
    if (d->bytes + len > DEST_MAX)
        return wv_err_set(err, WV_ENOSPACE, "destination full after %llu bytes",
                          (unsigned long long)d->bytes);
    d->bytes += len;
    EVP_DigestUpdate(d->md, buf, len);
    if (d->keep)
        wv_buf_append(d->keep, buf, len);
    return 0;
}

static int dest_finish(wv_filter *f, wv_err *err)
{
    (void)err;
    ((dest_filter *)f)->finished = 1;
    return 0;
}

static void dest_free(wv_filter *f)
{
    (void)f;
}

static const wv_filter_ops dest_ops = {"fuzz dest", dest_write, dest_finish, dest_free};

static void dest_init(dest_filter *d, wv_buf *keep)
{
    memset(d, 0, sizeof(*d));
    d->base.ops = &dest_ops;
    d->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(d->md, EVP_sha256(), NULL);
    d->keep = keep;
}

static void dest_digest(dest_filter *d, uint8_t out[32])
{
    unsigned n = 0;
    EVP_DigestFinal_ex(d->md, out, &n);
    EVP_MD_CTX_free(d->md);
    d->md = NULL;
}

/* Decode an lz4 frame with liblz4 alone, at most DEST_MAX bytes: 0 and the plain size and digest,
 * or -1 (bad frame, trailing bytes, or too large to matter). */
static int plain_of(const uint8_t *p, size_t n, int lz4, uint64_t *size, uint8_t sha[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned dl = 0;
    int rc = 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    *size = 0;
    if (!lz4) {
        EVP_DigestUpdate(md, p, n);
        *size = n;
    } else {
        LZ4F_dctx *dctx;
        static uint8_t out[64 * 1024];
        size_t hint = 1, pos = 0;
        LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION);
        while (pos < n || hint != 0) {
            size_t dst = sizeof(out), src = n - pos;
            hint = LZ4F_decompress(dctx, out, &dst, p + pos, &src, NULL);
            if (LZ4F_isError(hint) || (src == 0 && dst == 0) || *size + dst > DEST_MAX) {
                rc = -1;
                break;
            }
            pos += src;
            *size += dst;
            EVP_DigestUpdate(md, out, dst);
            if (hint == 0 && pos < n) {
                rc = -1; /* a second frame: the reader takes it, this check does not bother */
                break;
            }
        }
        LZ4F_freeDecompressionContext(dctx);
    }
    EVP_DigestFinal_ex(md, sha, &dl);
    EVP_MD_CTX_free(md);
    return rc;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The first 4 bytes of SHA-256 of p[0..n), little-endian, as objfmt.h specifies. */
static void put_check(uint8_t *at, const uint8_t *p, size_t n)
{
    uint8_t md[32];
    unsigned dl = 0;
    EVP_Digest(p, n, md, &dl, EVP_sha256(), NULL);
    memcpy(at, md, 4);
}

/* Mode 1: make a format-1 frame (64-byte header, still read) right around whatever payload the
 * input holds; mode 2's objects come from the writer, in the current format. */
static int fix_up(uint8_t *o, size_t n, int *plain_known, uint64_t *psize, uint8_t psha[32])
{
    if (n < WV_OBJ_HEADER_SIZE + WV_OBJ_TRAILER_SIZE)
        return 0;
    uint8_t *t = o + n - WV_OBJ_TRAILER_SIZE;
    size_t payload = n - WV_OBJ_HEADER_SIZE - WV_OBJ_TRAILER_SIZE;
    memcpy(o, WV_OBJ_HEADER_MAGIC, 8);
    put_le(o + 8, 1, 2);
    put_le(o + 10, WV_OBJ_HEADER_SIZE, 2);
    o[12] &= 1; /* compression none or lz4 */
    o[13] = 0;
    o[14] = WV_OBJ_DIGEST_SHA256;
    o[15] &= 7;
    memset(o + 36, 0, 24);
    put_check(o + 60, o, 60);
    memcpy(t, WV_OBJ_TRAILER_MAGIC, 8);
    put_le(t + 16, payload, 8);
    put_le(t + 80, 1, 2);
    memcpy(t + 82, o + 12, 4);
    memset(t + 86, 0, 38);
    *plain_known = plain_of(o + WV_OBJ_HEADER_SIZE, payload, o[12], psize, psha) == 0;
    if (*plain_known) {
        put_le(t + 8, *psize, 8);
        memcpy(t + 24, psha, 32);
    }
    put_check(t + 124, t, 124);
    return 1;
}

typedef struct mem_sink {
    wv_sink base;
    wv_buf data;
} mem_sink;

static int mem_sink_write(wv_sink *s, const void *buf, size_t len, wv_err *err)
{
    (void)err;
    wv_buf_append(&((mem_sink *)s)->data, buf, len);
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

static wv_obj_crypto fuzz_crypto(void)
{
    wv_obj_crypto c;
    memset(&c, 0, sizeof(c));
    c.mode = WV_OBJ_KEYMODE_SYMMETRIC;
    c.key_id = 1;
    for (int i = 0; i < 32; i++) {
        c.data_key[i] = (uint8_t)i;
        c.digest_key[i] = (uint8_t)(i + 32);
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wv_obj_crypto crypto = fuzz_crypto();
    fz_in in = {data, size};
    uint8_t mode = fz_u8(&in);
    size_t max_read = (size_t)fz_u16(&in) + 1;
    unsigned flags = (mode & 0x80) ? WV_OBJREAD_HASH_THREAD : 0;
    wv_buf obj = WV_BUF_INIT, plain_in = WV_BUF_INIT, plain_out = WV_BUF_INIT;
    int plain_known = 0, flipped = 0;
    uint64_t psize = 0;
    uint8_t psha[32];

    switch (mode % 3) {
    case 0:
    case 1:
        wv_buf_append(&obj, in.p, in.n);
        if (mode % 3 == 1 && !fix_up(obj.data, obj.len, &plain_known, &psize, psha))
            goto out;
        break;
    case 2: {
        uint8_t opt = fz_u8(&in);
        uint8_t nflips = fz_u8(&in) & 3;
        uint32_t flips[3];
        uint8_t xors[3];
        for (int i = 0; i < nflips; i++) {
            flips[i] = fz_u32(&in);
            xors[i] = fz_u8(&in) | 1;
        }
        mem_sink sink = {.base = {.ops = &mem_sink_ops}};
        wv_buf_init(&sink.data);
        wv_sink *sinks[1] = {&sink.base};
        wv_obj_opts o = {.compress = (opt & 1) ? WV_COMPRESS_LZ4 : WV_COMPRESS_NONE,
                         .level = 1 + (opt >> 1) % 12,
                         .kind = (uint8_t)((opt >> 5) % (WV_OBJ_KIND_MAX + 1)),
                         .crypto = (mode & 0x40) ? &crypto : NULL};
        wv_objwriter *w = wv_objwriter_new(sinks, 1, &o);
        wv_err err;
        wv_buf_append(&plain_in, in.p, in.n);
        /* the content in two writes, cut where the input says */
        size_t cut = plain_in.len ? (size_t)opt * 131 % (plain_in.len + 1) : 0;
        const uint8_t *pd = plain_in.len ? plain_in.data : (const uint8_t *)"";
        FZ_CHECK(wv_objwriter_write(w, pd, cut, &err) == 0, "%s", err.msg);
        FZ_CHECK(wv_objwriter_write(w, pd + cut, plain_in.len - cut, &err) == 0, "%s", err.msg);
        FZ_CHECK(wv_objwriter_finish(w, NULL, &err) == 0, "%s", err.msg);
        wv_objwriter_free(w);
        obj = sink.data;
        for (int i = 0; i < nflips && obj.len; i++) {
            obj.data[flips[i] % obj.len] ^= xors[i];
            flipped = 1;
        }
        break;
    }
    }

    fz_source src;
    fz_source_init(&src, obj.data, obj.len, max_read);
    dest_filter dest;
    dest_init(&dest, mode % 3 == 2 ? &plain_out : NULL);
    wv_obj_info info;
    wv_err err;
    wv_objread_opts ro = {.flags = flags, .crypto = &crypto};
    int rc = wv_object_read_opts(&src.base, &dest.base, &ro, &info, &err);
    uint8_t got[32];
    dest_digest(&dest, got);
    if (rc < 0) {
        fz_check_err(&err, rc);
        FZ_CHECK(rc == WV_ECORRUPT || rc == WV_EFORMAT || rc == WV_ENOSPACE || rc == WV_EKEY ||
                     rc == WV_EPRIVKEY,
                 "code %d: %s", rc, err.msg);
        FZ_CHECK(mode % 3 != 2 || flipped, "the object as written does not read back: %s", err.msg);
        FZ_CHECK(!plain_known || rc == WV_ENOSPACE,
                 "a well-formed object (liblz4 decodes its payload) is refused: %s", err.msg);
        if (rc == WV_ECORRUPT)
            FZ_CHECK(err.hint[0], "corruption without a hint: %s", err.msg);
    } else {
        FZ_CHECK(src.pos == src.len, "success with %zu of %zu bytes read", src.pos, src.len);
        FZ_CHECK(dest.finished, "%s", "success without finishing the destination");
        FZ_CHECK(info.plain_size == dest.bytes, "trailer says %llu bytes, destination got %llu",
                 (unsigned long long)info.plain_size, (unsigned long long)dest.bytes);
        FZ_CHECK(memcmp(info.sha256, got, 32) == 0, "%s",
                 "success, but the destination's content is not the trailer's SHA-256");
        FZ_CHECK(info.header_size >= WV_OBJ_HEADER_SIZE && info.header_size <= WV_OBJ_HEADER_MAX,
                 "header of %u bytes", (unsigned)info.header_size);
        FZ_CHECK(info.payload_size + info.header_size + WV_OBJ_TRAILER_SIZE == obj.len,
                 "payload %llu in an object of %zu bytes", (unsigned long long)info.payload_size,
                 obj.len);
        if (plain_known)
            FZ_CHECK(psize == dest.bytes && memcmp(psha, got, 32) == 0, "%s",
                     "the reader and liblz4 decode the payload differently");
        if (mode % 3 == 2 && !flipped)
            FZ_CHECK(
                plain_out.len == plain_in.len &&
                    (!plain_in.len || memcmp(plain_out.data, plain_in.data, plain_in.len) == 0),
                "%s", "the content read back is not the content written");
    }
out:
    wv_buf_free(&obj);
    wv_buf_free(&plain_in);
    wv_buf_free(&plain_out);
    return 0;
}
