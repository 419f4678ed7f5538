/*
 * fuzz_tar.c - the streaming tar reader (common/pipeline/tar.c).
 *
 * Input: u8 options, u16 seed for the piece sizes, then the archive. With option bit 0 the
 * harness walks the archive as a tar reader would (header, content rounded up to blocks) and
 * writes the right checksum into every header it finds, so that the reader gets past the checksum.
 * Invariants: a failure is WV_ECORRUPT with a one-line message; fed in pieces, the reader makes
 * exactly the calls it makes fed at once; every member's path is non-empty, has no leading "/" or
 * "./" and no trailing "/"; begin and end pair up; a member's data adds up to its size (none for
 * directories and links); the offset is the number of bytes consumed and the member count the
 * number of begin calls.
 */
#include <openssl/evp.h>

#include "pipeline/tar.h"
#include "fuzz.h"

typedef struct trace {
    EVP_MD_CTX *md;
    int open;
    uint64_t want, got, begins;
    wv_tar_type type;
} trace;

static int t_begin(void *arg, const wv_tar_entry *e, wv_err *err)
{
    trace *t = arg;
    (void)err;
    FZ_CHECK(!t->open, "%s", "begin inside a member");
    FZ_CHECK(e->path && e->path[0], "%s", "a member without a name");
    FZ_CHECK(e->path[0] != '/' && strncmp(e->path, "./", 2) != 0, "path \"%s\"", e->path);
    FZ_CHECK(e->path[strlen(e->path) - 1] != '/', "path \"%s\" ends with /", e->path);
    FZ_CHECK(e->linkname, "%s", "linkname is NULL");
    FZ_CHECK(e->mode <= 07777, "mode %o", e->mode);
    FZ_CHECK(e->type >= WV_TAR_FILE && e->type <= WV_TAR_OTHER, "type %d", (int)e->type);
    if (e->type == WV_TAR_DIR || e->type == WV_TAR_SYMLINK || e->type == WV_TAR_HARDLINK)
        FZ_CHECK(e->size == 0, "a %d member with %llu bytes", (int)e->type,
                 (unsigned long long)e->size);
    t->open = 1;
    t->want = e->size;
    t->got = 0;
    t->begins++;
    t->type = e->type;
    EVP_DigestUpdate(t->md, "B", 1);
    EVP_DigestUpdate(t->md, e->path, strlen(e->path) + 1);
    EVP_DigestUpdate(t->md, e->linkname, strlen(e->linkname) + 1);
    int64_t v[] = {e->type, e->typeflag, (int64_t)e->size, e->mode, e->mtime};
    EVP_DigestUpdate(t->md, v, sizeof(v));
    return 0;
}

static int t_data(void *arg, const uint8_t *buf, size_t len, wv_err *err)
{
    trace *t = arg;
    (void)err;
    FZ_CHECK(t->open, "%s", "data outside a member");
    FZ_CHECK(len > 0 && t->got + len <= t->want, "%zu more bytes after %llu of %llu", len,
             (unsigned long long)t->got, (unsigned long long)t->want);
    t->got += len;
    /* the content as a whole, not its cut */
    EVP_DigestUpdate(t->md, buf, len);
    return 0;
}

static int t_end(void *arg, wv_err *err)
{
    trace *t = arg;
    (void)err;
    FZ_CHECK(t->open, "%s", "end outside a member");
    FZ_CHECK(t->got == t->want, "end after %llu of %llu bytes", (unsigned long long)t->got,
             (unsigned long long)t->want);
    t->open = 0;
    EVP_DigestUpdate(t->md, "E", 1);
    return 0;
}

static const wv_tar_callbacks cbs = {t_begin, t_data, t_end};

/* Octal number field as the reader parses it (without base-256): enough to find the next header. */
static uint64_t octal(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    for (; i < n && p[i] >= '0' && p[i] <= '7' && v < (UINT64_C(1) << 40); i++)
        v = v * 8 + (uint64_t)(p[i] - '0');
    return v;
}

static void fix_checksums(uint8_t *a, size_t len)
{
    size_t off = 0;
    while (off + WV_TAR_BLOCK <= len) {
        uint8_t *h = a + off;
        int zero = 1;
        for (size_t i = 0; i < WV_TAR_BLOCK && zero; i++)
            zero = h[i] == 0;
        off += WV_TAR_BLOCK;
        if (zero)
            continue;
        unsigned sum = 0;
        memset(h + 148, ' ', 8);
        for (size_t i = 0; i < WV_TAR_BLOCK; i++)
            sum += h[i];
        snprintf((char *)h + 148, 8, "%06o", sum);
        h[155] = ' ';
        uint64_t size = octal(h + 124, 12);
        char flag = (char)h[156];
        if (flag == '5' || flag == '2' || flag == '1')
            size = 0;
        if (size > len)
            break;
        off += (size + WV_TAR_BLOCK - 1) / WV_TAR_BLOCK * WV_TAR_BLOCK;
    }
}

static int run(const uint8_t *p, size_t len, uint32_t seed, uint8_t out[32], wv_err *err,
               uint64_t *members)
{
    trace t = {0};
    t.md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(t.md, EVP_sha256(), NULL);
    wv_tar_reader *r = wv_tar_reader_new("base.tar", &cbs, &t);
    int rc = 0;
    size_t off = 0;
    if (!seed) {
        rc = wv_tar_reader_feed(r, p, len, err);
        off = rc ? 0 : len;
    } else {
        fz_cut cut = {seed, 2048};
        while (off < len && rc == 0) {
            size_t n = fz_cut_next(&cut);
            if (n > len - off)
                n = len - off;
            rc = wv_tar_reader_feed(r, p + off, n, err);
            off += n;
        }
    }
    if (rc == 0) {
        FZ_CHECK(wv_tar_reader_offset(r) == len, "offset %llu after %zu bytes",
                 (unsigned long long)wv_tar_reader_offset(r), len);
        rc = wv_tar_reader_finish(r, err);
    }
    if (rc == 0)
        FZ_CHECK(!t.open, "%s", "the archive ended inside a member, yet finish succeeded");
    else {
        wv_err again;
        FZ_CHECK(wv_tar_reader_feed(r, "x", 1, &again) == WV_EINTERNAL, "%s",
                 "the reader takes more after an error");
    }
    FZ_CHECK(wv_tar_reader_members(r) == t.begins, "%llu members, %llu begin calls",
             (unsigned long long)wv_tar_reader_members(r), (unsigned long long)t.begins);
    *members = t.begins;
    unsigned dl = 0;
    EVP_DigestFinal_ex(t.md, out, &dl);
    EVP_MD_CTX_free(t.md);
    wv_tar_reader_free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t opt = fz_u8(&in);
    uint32_t seed = fz_u16(&in) | 1;
    uint8_t *a = malloc(in.n ? in.n : 1);
    if (in.n)
        memcpy(a, in.p, in.n);
    if (opt & 1)
        fix_checksums(a, in.n);
    wv_err e1, e2;
    uint8_t d1[32], d2[32];
    uint64_t m1, m2;
    int r1 = run(a, in.n, 0, d1, &e1, &m1);
    int r2 = run(a, in.n, seed, d2, &e2, &m2);
    if (r1 < 0) {
        fz_check_err(&e1, r1);
        FZ_CHECK(r1 == WV_ECORRUPT, "code %d: %s", r1, e1.msg);
    }
    FZ_CHECK(r1 == r2, "at once %d, in pieces %d", r1, r2);
    /* the message names the offset of the bad header, the same either way */
    FZ_CHECK(r1 == 0 || strcmp(e1.msg, e2.msg) == 0, "\"%s\" / \"%s\"", e1.msg, e2.msg);
    if (r1 == 0)
        FZ_CHECK(m1 == m2 && memcmp(d1, d2, 32) == 0, "%s", "the calls differ when fed in pieces");
    free(a);
    return 0;
}
