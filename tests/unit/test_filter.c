/*
 * test_filter.c - the filter chain: terminals, observers, lz4 both ways (also against the lz4
 * command-line tool), sha256 against sha256sum, bounded pieces, corrupt and truncated frames.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "pipeline/filter.h"

#define MIB (1024 * 1024)

static const size_t chunk_sizes[] = {1, 7, 4096, MIB};
#define NCHUNKS (sizeof(chunk_sizes) / sizeof(chunk_sizes[0]))

/* --- test data: zeros, pseudo-random bytes and text, in odd-sized runs ------------------------ */

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
    static const char *const words[] = {
        "postgres", "wal",           "segment ", "checkpoint\n", "0x", "INSERT INTO t VALUES (",
        "); ",      "lsn 0/3000028 "};
    uint8_t *d = malloc(len);
    size_t pos = 0;
    rng_state = 0x9e3779b97f4a7c15ULL;
    assert_non_null(d);
    while (pos < len) {
        size_t run = 1 + rng() % (300 * 1024);
        if (run > len - pos)
            run = len - pos;
        switch (rng() % 3) {
        case 0:
            memset(d + pos, 0, run);
            break;
        case 1:
            for (size_t i = 0; i < run; i++)
                d[pos + i] = (uint8_t)rng();
            break;
        default:
            for (size_t i = 0; i < run;) {
                const char *w = words[rng() % 8];
                for (; *w && i < run; w++, i++)
                    d[pos + i] = (uint8_t)*w;
            }
            break;
        }
        pos += run;
    }
    return d;
}

#include "probe.h"

/* Write data into f in pieces of `chunk` bytes, then finish. Returns the first failure. */
static int feed(wv_filter *f, const uint8_t *data, size_t len, size_t chunk, wv_err *err)
{
    for (size_t pos = 0; pos < len; pos += chunk) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        int rc = wv_filter_write(f, data + pos, n, err);
        if (rc < 0)
            return rc;
    }
    return wv_filter_finish(f, err);
}

static void sha256_oneshot(const uint8_t *d, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(d, len, out, &n, EVP_sha256(), NULL), 1);
}

/* Compress data with the filter into a buffer. */
static void compress_to(const uint8_t *d, size_t len, int level, wv_buf *out)
{
    wv_err err = {0};
    wv_filter *c = wv_lz4_compress_new(wv_filter_buf_new(out), level);
    assert_int_equal(feed(c, d, len, MIB, &err), 0);
    wv_filter_chain_free(c);
}

static char tmpdir[64];

static int setup_tmp(void **state)
{
    strcpy(tmpdir, "/tmp/wvtest.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_tmp(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *d, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    wv_buf b = WV_BUF_INIT;
    uint8_t tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        wv_buf_append(&b, tmp, n);
    fclose(f);
    *len = b.len;
    return b.data ? b.data : calloc(1, 1);
}

#define DATA_LEN (3 * MIB + 12345)

/* --- observers and terminals ------------------------------------------------------------------ */

static void test_sha256_roundtrip(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN), want[32], got[32];
    sha256_oneshot(d, DATA_LEN, want);
    for (size_t i = 0; i < NCHUNKS; i++) {
        wv_err err = {0};
        probe *p = probe_new(1);
        wv_filter *s = wv_sha256_filter_new(&p->base);
        assert_int_equal(feed(s, d, DATA_LEN, chunk_sizes[i], &err), 0);
        wv_sha256_filter_digest(s, got);
        assert_memory_equal(got, want, 32);
        assert_int_equal(p->out.len, DATA_LEN);
        assert_memory_equal(p->out.data, d, DATA_LEN);
        assert_true(p->max_piece <= WV_FILTER_CHUNK);
        assert_int_equal(p->finished, 1);
        wv_filter_chain_free(s);
    }
    /* A 1 MiB write is passed on in bounded pieces. */
    probe *p = probe_new(0);
    wv_filter *s = wv_sha256_filter_new(&p->base);
    wv_err err = {0};
    assert_int_equal(feed(s, d, DATA_LEN, DATA_LEN, &err), 0);
    assert_int_equal(p->max_piece, WV_FILTER_CHUNK);
    wv_filter_chain_free(s);
    /* Terminal use (no next) and the empty input. */
    s = wv_sha256_filter_new(NULL);
    assert_int_equal(wv_filter_finish(s, &err), 0);
    wv_sha256_filter_digest(s, got);
    sha256_oneshot(d, 0, want);
    assert_memory_equal(got, want, 32);
    wv_filter_chain_free(s);
    free(d);
}

static void test_count_and_terminals(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN);
    for (size_t i = 0; i < NCHUNKS; i++) {
        wv_err err = {0};
        wv_buf out = WV_BUF_INIT;
        wv_filter *c = wv_count_filter_new(wv_filter_buf_new(&out));
        assert_int_equal(feed(c, d, DATA_LEN, chunk_sizes[i], &err), 0);
        assert_int_equal(wv_count_filter_bytes(c), DATA_LEN);
        assert_int_equal(out.len, DATA_LEN);
        assert_memory_equal(out.data, d, DATA_LEN);
        wv_filter_chain_free(c);
        wv_buf_free(&out);

        wv_filter *dc = wv_count_filter_new(wv_filter_discard_new());
        assert_int_equal(feed(dc, d, DATA_LEN, chunk_sizes[i], &err), 0);
        assert_int_equal(wv_count_filter_bytes(dc), DATA_LEN);
        wv_filter_chain_free(dc);
    }
    free(d);
}

static void test_fd_terminal_and_pump(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN), want[32], got[32];
    char path[128];
    wv_err err = {0};
    snprintf(path, sizeof(path), "%s/fd.out", tmpdir);
    for (size_t i = 0; i < NCHUNKS; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        wv_filter *f = wv_filter_fd_new(fd);
        assert_int_equal(feed(f, d, DATA_LEN, chunk_sizes[i], &err), 0);
        wv_filter_chain_free(f);
        close(fd);
        size_t len;
        uint8_t *back = read_file(path, &len);
        assert_int_equal(len, DATA_LEN);
        assert_memory_equal(back, d, DATA_LEN);
        free(back);
    }
    /* pump_fd: the whole file through sha256. */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    wv_filter *s = wv_sha256_filter_new(wv_filter_discard_new());
    assert_int_equal(wv_filter_pump_fd(s, fd, path, &err), 0);
    wv_sha256_filter_digest(s, got);
    sha256_oneshot(d, DATA_LEN, want);
    assert_memory_equal(got, want, 32);
    wv_filter_chain_free(s);
    close(fd);

    /* A write error on the fd is WV_EIO; a read error in pump names the file. */
    fd = open(path, O_RDONLY);
    wv_filter *f = wv_filter_fd_new(fd);
    assert_int_equal(wv_filter_write(f, d, 10, &err), WV_EIO);
    assert_non_null(strstr(err.msg, "could not write"));
    wv_filter_chain_free(f);
    close(fd);
    fd = open(path, O_WRONLY);
    f = wv_filter_discard_new();
    assert_int_equal(wv_filter_pump_fd(f, fd, "some/file", &err), WV_EIO);
    assert_non_null(strstr(err.msg, "\"some/file\""));
    wv_filter_chain_free(f);
    close(fd);
    free(d);
}

static void test_sha256_matches_sha256sum(void **state)
{
    static const size_t sizes[] = {0, 1, 55, 56, 64, 65, 4096, DATA_LEN};
    uint8_t *d = mixed_data(DATA_LEN), got[32];
    char path[128], cmd[256], line[256], hex[65];
    snprintf(path, sizeof(path), "%s/sha.in", tmpdir);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        wv_err err = {0};
        write_file(path, d, sizes[i]);
        snprintf(cmd, sizeof(cmd), "sha256sum %s", path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(line, sizeof(line), p));
        assert_int_equal(pclose(p), 0);
        wv_filter *s = wv_sha256_filter_new(NULL);
        assert_int_equal(feed(s, d, sizes[i], 7, &err), 0);
        wv_sha256_filter_digest(s, got);
        wv_hex_encode(got, 32, hex);
        assert_int_equal(strlen(hex), 64);
        assert_memory_equal(line, hex, 64);
        wv_filter_chain_free(s);
    }
    free(d);
}

/* --- lz4 ---------------------------------------------------------------------------------------
 */

static void test_lz4_roundtrip(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN);
    wv_buf z = WV_BUF_INIT;
    compress_to(d, DATA_LEN, 1, &z);
    assert_true(z.len < DATA_LEN); /* zeros and text compress */
    for (size_t i = 0; i < NCHUNKS; i++) {
        wv_err err = {0};
        /* Compress and decompress in one chain, written in pieces of each size. */
        probe *p = probe_new(1);
        wv_filter *c = wv_lz4_compress_new(wv_lz4_decompress_new(&p->base), 1);
        assert_int_equal(feed(c, d, DATA_LEN, chunk_sizes[i], &err), 0);
        assert_int_equal(p->out.len, DATA_LEN);
        assert_memory_equal(p->out.data, d, DATA_LEN);
        assert_true(p->max_piece <= WV_FILTER_CHUNK);
        assert_int_equal(p->finished, 1);
        wv_filter_chain_free(c);

        /* Compressed output fed to the decompressor in pieces of each size. */
        p = probe_new(1);
        wv_filter *dz = wv_lz4_decompress_new(&p->base);
        assert_int_equal(feed(dz, z.data, z.len, chunk_sizes[i], &err), 0);
        assert_int_equal(p->out.len, DATA_LEN);
        assert_memory_equal(p->out.data, d, DATA_LEN);
        assert_true(p->max_piece <= WV_FILTER_CHUNK);
        wv_filter_chain_free(dz);
    }
    /* Compressed output pieces are bounded too; high (HC) levels round-trip. */
    for (int level = 1; level <= 12; level += 11) {
        wv_err err = {0};
        probe *pz = probe_new(1);
        wv_filter *c = wv_lz4_compress_new(&pz->base, level);
        assert_int_equal(feed(c, d, DATA_LEN, MIB, &err), 0);
        assert_true(pz->max_piece <= WV_FILTER_CHUNK);
        probe *p = probe_new(1);
        wv_filter *dz = wv_lz4_decompress_new(&p->base);
        assert_int_equal(feed(dz, pz->out.data, pz->out.len, 4096, &err), 0);
        assert_int_equal(p->out.len, DATA_LEN);
        assert_memory_equal(p->out.data, d, DATA_LEN);
        wv_filter_chain_free(dz);
        wv_filter_chain_free(c);
    }
    wv_buf_free(&z);
    free(d);
}

/* Content that fills the decoder's output buffer exactly at its end, and its neighbours. */
static void test_lz4_exact_buffer_multiples(void **state)
{
    const size_t sizes[] = {WV_FILTER_CHUNK - 1, WV_FILTER_CHUNK, WV_FILTER_CHUNK + 1,
                            2 * WV_FILTER_CHUNK, 4 * WV_FILTER_CHUNK};
    uint8_t *d = malloc(4 * WV_FILTER_CHUNK);
    for (int zero = 0; zero <= 1; zero++) {
        rng_state = 12345;
        for (size_t i = 0; i < 4 * WV_FILTER_CHUNK; i++)
            d[i] = zero ? 0 : (uint8_t)rng();
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            wv_err err = {0};
            wv_buf z = WV_BUF_INIT;
            compress_to(d, sizes[i], 1, &z);
            for (size_t k = 0; k < NCHUNKS; k++) {
                probe *p = probe_new(1);
                wv_filter *dz = wv_lz4_decompress_new(&p->base);
                assert_int_equal(feed(dz, z.data, z.len, chunk_sizes[k], &err), 0);
                assert_int_equal(p->out.len, sizes[i]);
                assert_memory_equal(p->out.data, d, sizes[i]);
                wv_filter_chain_free(dz);
            }
            wv_buf_free(&z);
        }
    }
    free(d);
}

static void test_lz4_empty_and_concatenated(void **state)
{
    wv_err err = {0};
    wv_buf z = WV_BUF_INIT, out = WV_BUF_INIT;
    /* Empty content is a valid (small) frame. */
    compress_to((const uint8_t *)"", 0, 1, &z);
    assert_true(z.len > 0);
    wv_filter *dz = wv_lz4_decompress_new(wv_filter_buf_new(&out));
    assert_int_equal(feed(dz, z.data, z.len, 1, &err), 0);
    assert_int_equal(out.len, 0);
    wv_filter_chain_free(dz);
    /* Two frames back to back decode to the concatenation (as lz4 -d does). */
    wv_buf_reset(&z);
    compress_to((const uint8_t *)"hello ", 6, 1, &z);
    compress_to((const uint8_t *)"world", 5, 1, &z);
    dz = wv_lz4_decompress_new(wv_filter_buf_new(&out));
    assert_int_equal(feed(dz, z.data, z.len, 3, &err), 0);
    assert_int_equal(out.len, 11);
    assert_memory_equal(out.data, "hello world", 11);
    wv_filter_chain_free(dz);
    wv_buf_free(&z);
    wv_buf_free(&out);
}

static void test_lz4_truncated(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN);
    wv_buf z = WV_BUF_INIT;
    compress_to(d, DATA_LEN, 1, &z);
    /* Cut at: nothing, inside the frame header, mid-stream, just before the end mark. */
    const size_t cuts[] = {0, 3, 6, z.len / 2, z.len - 4, z.len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        wv_err err = {0};
        probe *p = probe_new(0);
        wv_filter *dz = wv_lz4_decompress_new(&p->base);
        int rc = feed(dz, z.data, cuts[i], 4096, &err);
        assert_int_equal(rc, WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "lz4"));
        assert_non_null(strstr(err.msg, "truncated"));
        assert_int_equal(p->finished, 0); /* never finished downstream */
        wv_filter_chain_free(dz);
    }
    wv_buf_free(&z);
    free(d);
}

static void test_lz4_bad_data(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN);
    wv_buf z = WV_BUF_INIT;
    compress_to(d, DATA_LEN, 1, &z);
    assert_true(z.len > 20);
    /* Bad magic, bad frame header checksum, an impossible block size, trailing garbage. */
    for (int c = 0; c < 4; c++) {
        wv_err err = {0};
        wv_buf bad = WV_BUF_INIT;
        wv_buf_append(&bad, z.data, z.len);
        switch (c) {
        case 0:
            bad.data[0] ^= 0xff;
            break;
        case 1:
            bad.data[6] ^= 0x01; /* header checksum byte (no content size, no dict id) */
            break;
        case 2:
            bad.data[7] = 0xff; /* first block size: 0x7fffffff-ish > 64 KiB max */
            bad.data[8] = 0xff;
            bad.data[9] = 0xff;
            bad.data[10] = 0x7f;
            break;
        default:
            wv_buf_append(&bad, "garbage!", 8);
            break;
        }
        wv_filter *dz = wv_lz4_decompress_new(wv_filter_discard_new());
        int rc = feed(dz, bad.data, bad.len, 4096, &err);
        assert_int_equal(rc, WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "lz4"));
        wv_filter_chain_free(dz);
        wv_buf_free(&bad);
    }
    wv_buf_free(&z);
    free(d);
}

static void test_lz4_bomb_bounded(void **state)
{
    const size_t big = 64 * MIB;
    uint8_t *zeros = calloc(1, MIB);
    wv_err err = {0};
    wv_buf z = WV_BUF_INIT;
    wv_filter *c = wv_lz4_compress_new(wv_filter_buf_new(&z), 1);
    for (size_t i = 0; i < big / MIB; i++)
        assert_int_equal(wv_filter_write(c, zeros, MIB, &err), 0);
    assert_int_equal(wv_filter_finish(c, &err), 0);
    wv_filter_chain_free(c);
    assert_true(z.len < MIB); /* a tiny input ... */

    probe *p = probe_new(0);
    wv_filter *dz = wv_lz4_decompress_new(&p->base);
    /* ... written in one piece, comes out in bounded pieces. */
    assert_int_equal(wv_filter_write(dz, z.data, z.len, &err), 0);
    assert_int_equal(wv_filter_finish(dz, &err), 0);
    assert_int_equal(p->total, big);
    assert_true(p->max_piece <= WV_FILTER_CHUNK);
    assert_true(p->max_piece > 0);
    wv_filter_chain_free(dz);
    wv_buf_free(&z);
    free(zeros);
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

static void test_lz4_cli_interop(void **state)
{
    uint8_t *d = mixed_data(DATA_LEN);
    char zpath[128], opath[128], ipath[128], cmd[512];
    snprintf(zpath, sizeof(zpath), "%s/ours.lz4", tmpdir);
    snprintf(opath, sizeof(opath), "%s/ours.out", tmpdir);
    snprintf(ipath, sizeof(ipath), "%s/plain.in", tmpdir);

    /* Ours -> lz4 -d. */
    for (int level = 1; level <= 9; level += 8) {
        wv_buf z = WV_BUF_INIT;
        compress_to(d, DATA_LEN, level, &z);
        write_file(zpath, z.data, z.len);
        snprintf(cmd, sizeof(cmd), "lz4 -d -q -f %s %s", zpath, opath);
        assert_int_equal(run(cmd), 0);
        size_t len;
        uint8_t *back = read_file(opath, &len);
        assert_int_equal(len, DATA_LEN);
        assert_memory_equal(back, d, DATA_LEN);
        free(back);
        wv_buf_free(&z);
    }

    /* lz4 CLI (several option sets) -> ours. */
    static const char *const opts[] = {"-1", "-9", "-B4 --content-size", "-BD -B7",
                                       "--no-frame-crc -B5"};
    write_file(ipath, d, DATA_LEN);
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        snprintf(cmd, sizeof(cmd), "lz4 -q -f %s %s %s", opts[i], ipath, zpath);
        assert_int_equal(run(cmd), 0);
        size_t zlen;
        uint8_t *zd = read_file(zpath, &zlen);
        for (size_t k = 0; k < NCHUNKS; k++) {
            wv_err err = {0};
            probe *p = probe_new(1);
            wv_filter *dz = wv_lz4_decompress_new(&p->base);
            assert_int_equal(feed(dz, zd, zlen, chunk_sizes[k], &err), 0);
            assert_int_equal(p->out.len, DATA_LEN);
            assert_memory_equal(p->out.data, d, DATA_LEN);
            assert_true(p->max_piece <= WV_FILTER_CHUNK);
            wv_filter_chain_free(dz);
        }
        free(zd);
    }
    free(d);
}

/* --- hex ---------------------------------------------------------------------------------------
 */

static void test_hex(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        int rc;
        const char *bytes;
    } cases[] = {
        {"", 0, 0, ""},
        {"00ff10ab", 4, 0, "\x00\xff\x10\xab"},
        {"00FF10AB", 4, 0, "\x00\xff\x10\xab"},
        {"00ff10abzz", 4, 0, "\x00\xff\x10\xab"}, /* only 2*len characters are read */
        {"00ff10a", 4, WV_EFORMAT, NULL},         /* too short */
        {"0g", 1, WV_EFORMAT, NULL},
        {"g0", 1, WV_EFORMAT, NULL},
        {" 0", 1, WV_EFORMAT, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t out[8];
        assert_int_equal(wv_hex_decode(cases[i].in, out, cases[i].len), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_memory_equal(out, cases[i].bytes, cases[i].len);
            char hex[17];
            wv_hex_encode(out, cases[i].len, hex);
            assert_int_equal(strlen(hex), 2 * cases[i].len);
            for (size_t k = 0; k < 2 * cases[i].len; k++)
                assert_int_equal(hex[k], cases[i].in[k] | 0x20 /* lowercase */);
        }
    }
    uint8_t all[256], back[256];
    char hex[513];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    wv_hex_encode(all, 256, hex);
    assert_int_equal(wv_hex_decode(hex, back, 256), 0);
    assert_memory_equal(all, back, 256);
}

/* The threaded SHA-256 stage: same digest and same downstream bytes as the plain one, at every
 * piece size, and its observer sees every byte in order. */
typedef struct {
    uint8_t *seen;
    size_t len, cap;
} observed;

static void observe_bytes(void *arg, const uint8_t *buf, size_t len)
{
    observed *o = arg;
    if (o->len + len > o->cap) {
        o->cap = (o->len + len) * 2;
        o->seen = realloc(o->seen, o->cap);
    }
    memcpy(o->seen + o->len, buf, len);
    o->len += len;
}

static void test_sha256_threaded_matches(void **state)
{
    (void)state;
    size_t total = 3 * 1024 * 1024 + 17;
    uint8_t *data = malloc(total);
    for (size_t i = 0; i < total; i++)
        data[i] = (uint8_t)((i * 2654435761u) >> 13);
    const size_t pieces[] = {1, 7, 4096, 1024 * 1024, 3 * 1024 * 1024 + 17};
    /* Every write is a hand-off between two threads: tiny pieces get less data. */
    const size_t lens[] = {16384 + 3, 65536 + 5, 3 * 1024 * 1024 + 17, 3 * 1024 * 1024 + 17,
                           3 * 1024 * 1024 + 17};
    for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
        total = lens[p];
        wv_buf a = WV_BUF_INIT, b = WV_BUF_INIT;
        observed o = {0};
        wv_err err;
        wv_filter *plain = wv_sha256_filter_new(wv_filter_buf_new(&a));
        wv_filter *thr = wv_sha256_filter_new_threaded(wv_filter_buf_new(&b), observe_bytes, &o);
        for (size_t off = 0; off < total; off += pieces[p]) {
            size_t n = total - off < pieces[p] ? total - off : pieces[p];
            assert_int_equal(wv_filter_write(plain, data + off, n, &err), 0);
            assert_int_equal(wv_filter_write(thr, data + off, n, &err), 0);
        }
        assert_int_equal(wv_filter_finish(plain, &err), 0);
        assert_int_equal(wv_filter_finish(thr, &err), 0);
        uint8_t d1[32], d2[32];
        wv_sha256_filter_digest(plain, d1);
        wv_sha256_filter_digest(thr, d2);
        assert_memory_equal(d1, d2, 32);
        assert_int_equal(a.len, total);
        assert_int_equal(b.len, total);
        assert_memory_equal(b.data, data, total);
        assert_int_equal(o.len, total);
        assert_memory_equal(o.seen, data, total);
        wv_filter_chain_free(plain);
        wv_filter_chain_free(thr);
        wv_buf_free(&a);
        wv_buf_free(&b);
        free(o.seen);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_threaded_matches),
        cmocka_unit_test(test_sha256_roundtrip),
        cmocka_unit_test(test_count_and_terminals),
        cmocka_unit_test(test_fd_terminal_and_pump),
        cmocka_unit_test(test_sha256_matches_sha256sum),
        cmocka_unit_test(test_lz4_roundtrip),
        cmocka_unit_test(test_lz4_exact_buffer_multiples),
        cmocka_unit_test(test_lz4_empty_and_concatenated),
        cmocka_unit_test(test_lz4_truncated),
        cmocka_unit_test(test_lz4_bad_data),
        cmocka_unit_test(test_lz4_bomb_bounded),
        cmocka_unit_test(test_lz4_cli_interop),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
