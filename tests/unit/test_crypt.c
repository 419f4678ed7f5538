/*
 * test_crypt.c - the chunked AES-256-GCM stream: known-answer vectors (computed independently by
 * tests/tools/crypt_vectors.py with Python's cryptography), round trips in every piece size, every
 * header byte changed, truncation at every chunk boundary and inside chunks, chunks reordered or
 * taken from another object, appended data, a wrong key; nothing unauthenticated is ever released.
 * Also HKDF (RFC 5869), the one-shot seal and X25519 (RFC 7748).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "core/bytes.h"
#include "pipeline/crypt.h"
#include "pipeline/object.h"

#include "memio.h"
#include "probe.h"

#define CHUNK  WV_CRYPT_CHUNK
#define SEALED WV_CRYPT_SEALED_CHUNK

static const char aad_text[] = "\x89WVOBJ\r\n test header";

static void hex(const char *h, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(h), 2 * len);
    assert_int_equal(wv_hex_decode(h, out, len), 0);
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + 3);
    return p;
}

static void material(uint8_t m[32])
{
    for (int i = 0; i < 32; i++)
        m[i] = (uint8_t)i;
}

static void salt(uint8_t s[16])
{
    for (int i = 0; i < 16; i++)
        s[i] = (uint8_t)(0xa0 + i);
}

static void test_key(uint8_t key[32], const uint8_t *aad, size_t aadlen)
{
    uint8_t m[32], s[16];
    wv_err err;
    material(m);
    salt(s);
    assert_int_equal(wv_crypt_object_key(m, s, aad, aadlen, key, &err), 0);
}

static void vector_key(uint8_t key[32])
{
    test_key(key, (const uint8_t *)aad_text, sizeof(aad_text) - 1);
}

/* Push data through a fresh stage in pieces of `piece` bytes; the stage's output lands in *out. */
static int run(int seal, const uint8_t key[32], const uint8_t *data, size_t len, size_t piece,
               wv_buf *out, wv_err *err)
{
    probe *p = probe_new(1);
    wv_filter *f = seal ? wv_crypt_seal_new(&p->base, key) : wv_crypt_open_new(&p->base, key, "x");
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0; pos += piece)
        rc = wv_filter_write(f, data + pos, len - pos < piece ? len - pos : piece, err);
    if (rc == 0)
        rc = wv_filter_finish(f, err);
    if (rc == 0)
        assert_int_equal(p->finished, 1);
    else
        assert_int_equal(p->finished, 0);
    assert_true(p->max_piece <= WV_FILTER_CHUNK);
    wv_buf_init(out);
    wv_buf_append(out, p->out.data, p->out.len);
    wv_filter_chain_free(f);
    return rc;
}

static void sha256_hex(const uint8_t *d, size_t n, char out[65])
{
    uint8_t md[32];
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(d, n, md, &len, EVP_sha256(), NULL), 1);
    wv_hex_encode(md, 32, out);
}

/* --- known answers ------------------------------------------------------------------------- */

static void test_object_key_vector(void **state)
{
    uint8_t key[32], want[32];
    vector_key(key);
    hex("1d3d2b76f00c90e3c90110c69e746343d07ac89e7707027e5cf41b9dc0b3b938", want, 32);
    assert_memory_equal(key, want, 32);
}

static const struct {
    size_t plain;
    size_t sealed;
    const char *sha256;
    const char *tail; /* the last min(24, sealed) bytes */
} vectors[] = {
    {0, 16, "86e837ba7d94c0f025c62c7ad596310fc991a2352eef8569c3084ff8d1023d6c",
     "255cdaf4a6882df51e379bb4ba607cb3"},
    {8, 24, "3e3da8acdee49ff9427c7a0b3a2be1d11f45af86bcbd0e6e8050451100779408",
     "b41c161899db2e752a6f90c1dc77691fd59202f19d4b6cd5"},
    {65536, 65552, "9764fbf0d7203cc8ae53174829fb37461ae89b67d8eb2683b2351ff3c26de14c",
     "c004d1421469dcc4a6ed070597e33cc44dff44be317eac45"},
    {65537, 65569, "3278de33e9c7460964e8ba782fab229f0a953d49df2aea4fb5798af61dcccd84",
     "30df8ced3d87761e890f3c8fa8e61190def624e6d19b68f1"},
    {196708, 196772, "53d3aa0b0bba3b1c1b2b4dcc8e19b1c4c821400e0b4aea65aa6eb9b0212ec785",
     "689f1628a22b426ba634b2a11b6e900e39deba335bff9430"},
};
#define NVECTORS (sizeof(vectors) / sizeof(vectors[0]))

static const size_t pieces[] = {1, 13, 4096, CHUNK, SEALED, 1 << 20};
#define NPIECES (sizeof(pieces) / sizeof(pieces[0]))

static void test_stream_vectors(void **state)
{
    uint8_t key[32];
    wv_err err;
    vector_key(key);
    for (size_t v = 0; v < NVECTORS; v++) {
        uint8_t *plain = pattern(vectors[v].plain);
        assert_int_equal(wv_crypt_sealed_size(vectors[v].plain), vectors[v].sealed);
        for (size_t p = 0; p < NPIECES; p++) {
            if (pieces[p] == 1 && vectors[v].plain > CHUNK + 1)
                continue; /* byte by byte through 3 chunks: slow and says nothing new */
            wv_buf ct, back;
            char digest[65], tail[49];
            assert_int_equal(run(1, key, plain, vectors[v].plain, pieces[p], &ct, &err), 0);
            assert_int_equal(ct.len, vectors[v].sealed);
            sha256_hex(ct.data, ct.len, digest);
            assert_string_equal(digest, vectors[v].sha256);
            size_t tl = ct.len < 24 ? ct.len : 24;
            wv_hex_encode(ct.data + ct.len - tl, tl, tail);
            assert_string_equal(tail, vectors[v].tail);
            assert_int_equal(run(0, key, ct.data, ct.len, pieces[p], &back, &err), 0);
            assert_int_equal(back.len, vectors[v].plain);
            if (back.len)
                assert_memory_equal(back.data, plain, back.len);
            wv_buf_free(&ct);
            wv_buf_free(&back);
        }
        free(plain);
    }
}

/* The GCM of one chunk on its own, as OpenSSL's EVP computes it (a second, direct path): the last
 * chunk of the 8-byte vector is AES-256-GCM(key, nonce 0^11 || 01, pattern(8)). */
static void test_one_chunk_direct(void **state)
{
    uint8_t key[32], nonce[12] = {0}, out[8], tag[16], want[24];
    uint8_t *plain = pattern(8);
    int n = 0, fin = 0;
    vector_key(key);
    nonce[11] = 1;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, out, &n, plain, 8), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, out + n, &fin), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
    EVP_CIPHER_CTX_free(ctx);
    hex(vectors[1].tail, want, 24);
    assert_memory_equal(out, want, 8);
    assert_memory_equal(tag, want + 8, 16);
    free(plain);
}

/* RFC 5869, test case 1. */
static void test_hkdf_rfc5869(void **state)
{
    uint8_t ikm[22], salt13[13], info[10], okm[42], want[42];
    wv_err err;
    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt13[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (uint8_t)(0xf0 + i);
    assert_int_equal(wv_crypt_hkdf(ikm, 22, salt13, 13, info, 10, okm, 42, &err), 0);
    hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        want, 42);
    assert_memory_equal(okm, want, 42);
}

static void test_seal_once_vector(void **state)
{
    uint8_t m[32], nonce[12], out[8 + WV_CRYPT_ONCE_OVERHEAD], want[sizeof(out)], back[8];
    wv_err err;
    material(m);
    for (int i = 0; i < 12; i++)
        nonce[i] = (uint8_t)i;
    assert_int_equal(wv_crypt_seal_once(m, nonce, (const uint8_t *)"aad", 3,
                                        (const uint8_t *)"data key", 8, out, &err),
                     0);
    hex("000102030405060708090a0b2363a27ae58ea762905f3f4da05b66f705ba6386c8402b7e", want,
        sizeof(want));
    assert_memory_equal(out, want, sizeof(out));
    assert_int_equal(wv_crypt_open_once(m, (const uint8_t *)"aad", 3, out, sizeof(out), back, &err),
                     0);
    assert_memory_equal(back, "data key", 8);
    /* another aad, another key, any byte changed: WV_EKEY */
    assert_int_equal(wv_crypt_open_once(m, (const uint8_t *)"aae", 3, out, sizeof(out), back, &err),
                     WV_EKEY);
    m[0] ^= 1;
    assert_int_equal(wv_crypt_open_once(m, (const uint8_t *)"aad", 3, out, sizeof(out), back, &err),
                     WV_EKEY);
    m[0] ^= 1;
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] ^= 0x40;
        assert_int_equal(
            wv_crypt_open_once(m, (const uint8_t *)"aad", 3, out, sizeof(out), back, &err),
            WV_EKEY);
        out[i] ^= 0x40;
    }
    assert_int_equal(wv_crypt_open_once(m, NULL, 0, out, 27, back, &err), WV_EKEY);
    /* a random nonce: two seals of the same message differ */
    uint8_t a[sizeof(out)], b[sizeof(out)];
    assert_int_equal(wv_crypt_seal_once(m, NULL, NULL, 0, back, 8, a, &err), 0);
    assert_int_equal(wv_crypt_seal_once(m, NULL, NULL, 0, back, 8, b, &err), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

/* --- failures ------------------------------------------------------------------------------ */

static void seal_buf(const uint8_t key[32], size_t plain, wv_buf *ct)
{
    uint8_t *p = pattern(plain);
    wv_err err;
    assert_int_equal(run(1, key, p, plain, 1 << 20, ct, &err), 0);
    free(p);
}

/* Open must fail with WV_ECORRUPT, having released only whole verified chunks of the original. */
static void expect_refused(const uint8_t key[32], const uint8_t *ct, size_t len, size_t plain)
{
    uint8_t *orig = pattern(plain);
    for (size_t p = 0; p < NPIECES; p++) {
        if (pieces[p] == 1 && len > 2 * SEALED)
            continue;
        wv_buf back;
        wv_err err;
        assert_int_equal(run(0, key, ct, len, pieces[p], &back, &err), WV_ECORRUPT);
        assert_non_null(strstr(err.msg, "does not authenticate"));
        /* the message names the object ("x"), and records it: no context puts it in front again */
        assert_string_equal(err.object, "x");
        assert_int_equal(back.len % CHUNK, 0);
        assert_true(back.len <= plain);
        if (back.len)
            assert_memory_equal(back.data, orig, back.len);
        wv_buf_free(&back);
    }
    free(orig);
}

static void test_header_byte_changed(void **state)
{
    uint8_t aad[80], key[32], other[32];
    wv_buf ct;
    for (size_t i = 0; i < sizeof(aad); i++)
        aad[i] = (uint8_t)(i * 3);
    test_key(key, aad, sizeof(aad));
    seal_buf(key, CHUNK + 10, &ct);
    for (size_t i = 0; i < sizeof(aad); i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            aad[i] ^= (uint8_t)(1 << bit);
            test_key(other, aad, sizeof(aad));
            assert_memory_not_equal(other, key, 32);
            wv_buf back;
            wv_err err;
            assert_int_equal(run(0, other, ct.data, ct.len, 1 << 20, &back, &err), WV_ECORRUPT);
            assert_int_equal(back.len, 0);
            wv_buf_free(&back);
            aad[i] ^= (uint8_t)(1 << bit);
        }
    }
    /* a header one byte shorter or longer */
    test_key(other, aad, sizeof(aad) - 1);
    expect_refused(other, ct.data, ct.len, 0);
    /* another salt */
    uint8_t m[32], s[16];
    wv_err err;
    material(m);
    salt(s);
    s[15] ^= 1;
    assert_int_equal(wv_crypt_object_key(m, s, aad, sizeof(aad), other, &err), 0);
    expect_refused(other, ct.data, ct.len, 0);
    wv_buf_free(&ct);
}

static void test_truncated(void **state)
{
    uint8_t key[32];
    wv_buf ct;
    const size_t plain = 3 * CHUNK + 100;
    vector_key(key);
    seal_buf(key, plain, &ct);
    /* at every chunk boundary, and just before and after it */
    for (size_t k = 0; k <= 3; k++) {
        size_t at = k * SEALED;
        expect_refused(key, ct.data, at, plain);
        if (at > 0)
            expect_refused(key, ct.data, at - 1, plain);
        expect_refused(key, ct.data, at + 1, plain);
        expect_refused(key, ct.data, at + WV_CRYPT_TAG_SIZE, plain);
    }
    expect_refused(key, ct.data, ct.len - 1, plain);
    wv_buf_free(&ct);
    /* one full chunk cut to nothing, an empty object's stream cut */
    seal_buf(key, CHUNK, &ct);
    expect_refused(key, ct.data, 0, 0);
    expect_refused(key, ct.data, ct.len - 1, CHUNK);
    wv_buf_free(&ct);
    seal_buf(key, 0, &ct);
    expect_refused(key, ct.data, 15, 0);
    wv_buf_free(&ct);
}

static void test_appended(void **state)
{
    uint8_t key[32];
    const size_t sizes[] = {0, 8, CHUNK, CHUNK + 1, 2 * CHUNK};
    vector_key(key);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        wv_buf ct, empty;
        seal_buf(key, sizes[i], &ct);
        wv_buf_append(&ct, "x", 1);
        expect_refused(key, ct.data, ct.len, sizes[i]);
        /* a whole sealed empty last chunk appended (what a forger of the end would try) */
        ct.len--;
        seal_buf(key, 0, &empty);
        wv_buf_append(&ct, empty.data, empty.len);
        expect_refused(key, ct.data, ct.len, sizes[i]);
        wv_buf_free(&empty);
        wv_buf_free(&ct);
    }
}

static void test_chunks_swapped(void **state)
{
    uint8_t key[32], key2[32];
    wv_buf ct, ct2;
    const size_t plain = 3 * CHUNK + 100;
    vector_key(key);
    seal_buf(key, plain, &ct);
    /* chunks 0 and 1 swapped */
    uint8_t *tmp = malloc(SEALED);
    memcpy(tmp, ct.data, SEALED);
    memmove(ct.data, ct.data + SEALED, SEALED);
    memcpy(ct.data + SEALED, tmp, SEALED);
    expect_refused(key, ct.data, ct.len, plain);
    memcpy(ct.data + SEALED, ct.data, SEALED);
    memcpy(ct.data, tmp, SEALED);
    /* chunk 2 dropped: 0, 1, 3 */
    wv_buf cut;
    wv_buf_init(&cut);
    wv_buf_append(&cut, ct.data, 2 * SEALED);
    wv_buf_append(&cut, ct.data + 3 * SEALED, ct.len - 3 * SEALED);
    expect_refused(key, cut.data, cut.len, plain);
    wv_buf_free(&cut);
    /* chunk 1 taken from another object (another header: another key) */
    test_key(key2, (const uint8_t *)"another header", 14);
    seal_buf(key2, plain, &ct2);
    memcpy(ct.data + SEALED, ct2.data + SEALED, SEALED);
    expect_refused(key, ct.data, ct.len, plain);
    /* a last chunk sealed as not last (the first chunk of a longer object, alone) */
    expect_refused(key2, ct2.data, SEALED, plain);
    /* every byte of a small object flipped */
    wv_buf small;
    seal_buf(key, 40, &small);
    for (size_t i = 0; i < small.len; i++) {
        small.data[i] ^= 0x80;
        expect_refused(key, small.data, small.len, 40);
        small.data[i] ^= 0x80;
    }
    wv_buf_free(&small);
    free(tmp);
    wv_buf_free(&ct);
    wv_buf_free(&ct2);
}

static void test_wrong_key(void **state)
{
    uint8_t key[32];
    wv_buf ct;
    vector_key(key);
    seal_buf(key, 1000, &ct);
    key[31] ^= 1;
    expect_refused(key, ct.data, ct.len, 1000);
    wv_buf_free(&ct);
}

/* Each stream of the same content under a fresh salt is different (nothing repeats across
 * objects). */
static void test_fresh_salt(void **state)
{
    uint8_t m[32], s1[16], s2[16], k1[32], k2[32];
    wv_buf a, b;
    wv_err err;
    material(m);
    assert_int_equal(wv_crypt_random(s1, 16, &err), 0);
    assert_int_equal(wv_crypt_random(s2, 16, &err), 0);
    assert_memory_not_equal(s1, s2, 16);
    assert_int_equal(wv_crypt_object_key(m, s1, (const uint8_t *)"h", 1, k1, &err), 0);
    assert_int_equal(wv_crypt_object_key(m, s2, (const uint8_t *)"h", 1, k2, &err), 0);
    seal_buf(k1, 100, &a);
    seal_buf(k2, 100, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_not_equal(a.data, b.data, a.len);
    wv_buf_free(&a);
    wv_buf_free(&b);
}

/* --- X25519 (RFC 7748, 6.1) ---------------------------------------------------------------- */

static void test_x25519(void **state)
{
    uint8_t apriv[32], apub[32], bpub[32], want[32], got[32], eph[32], s1[32], s2[32];
    wv_err err;
    hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", apriv, 32);
    hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", want, 32);
    assert_int_equal(wv_crypt_x25519_public(apriv, apub, &err), 0);
    assert_memory_equal(apub, want, 32);
    hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", bpub, 32);
    hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", want, 32);
    assert_int_equal(wv_crypt_x25519_open(apriv, bpub, got, &err), 0);
    assert_memory_equal(got, want, 32);
    /* an ephemeral seal to Alice opens with Alice's private key */
    assert_int_equal(wv_crypt_x25519_seal(apub, eph, s1, &err), 0);
    assert_int_equal(wv_crypt_x25519_open(apriv, eph, s2, &err), 0);
    assert_memory_equal(s1, s2, 32);
    /* a degenerate peer (the all-zero point) is refused */
    memset(eph, 0, 32);
    assert_int_equal(wv_crypt_x25519_open(apriv, eph, s2, &err), WV_EKEY);
}

/* --- encrypted objects (format 3) ----------------------------------------------------------- */

static const char marker[] = "MARKER-8f1c2e-unique-row-content";

static uint8_t alice_priv[32];

static int alice_key(void *arg, uint64_t key_id, uint8_t priv[32], wv_err *err)
{
    if (key_id != 0x77)
        return wv_err_set(err, WV_EKEY, "no private key for key id %llx",
                          (unsigned long long)key_id);
    memcpy(priv, alice_priv, 32);
    return 0;
}

static void crypto_sym(wv_obj_crypto *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = WV_OBJ_KEYMODE_SYMMETRIC;
    c->key_id = 0x1234;
    for (int i = 0; i < 32; i++) {
        c->data_key[i] = (uint8_t)(0x40 + i);
        c->digest_key[i] = (uint8_t)(0x90 + i);
    }
}

static void crypto_x25519(wv_obj_crypto *c, int with_private)
{
    wv_err err;
    memset(c, 0, sizeof(*c));
    c->mode = WV_OBJ_KEYMODE_X25519;
    c->key_id = 0x77;
    hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", alice_priv, 32);
    assert_int_equal(wv_crypt_x25519_public(alice_priv, c->public_key, &err), 0);
    for (int i = 0; i < 32; i++)
        c->digest_key[i] = (uint8_t)(0x10 + i);
    if (with_private)
        c->private_key = alice_key;
}

/* Content: the marker repeated between pattern bytes. */
static uint8_t *content(size_t n)
{
    uint8_t *p = pattern(n);
    for (size_t at = 0; at + sizeof(marker) < n; at += 5000)
        memcpy(p + at, marker, sizeof(marker) - 1);
    return p;
}

static void store_enc(const uint8_t *d, size_t len, wv_compress comp, const char *name,
                      const wv_obj_crypto *c, wv_buf *out, wv_obj_info *info)
{
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts opts = {
        .compress = comp, .level = 1, .kind = WV_OBJ_KIND_WAL, .name = name, .crypto = c};
    wv_err err = {0};
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &opts);
    for (size_t pos = 0; pos < len; pos += 7777)
        assert_int_equal(wv_objwriter_write(w, d + pos, len - pos < 7777 ? len - pos : 7777, &err),
                         0);
    wv_objwriter_set_walinfo(w, 1000, 2000, 3, 1);
    if (wv_objwriter_finish(w, info, &err) != 0)
        fail_msg("finish: %s", err.msg);
    wv_objwriter_free(w);
    *out = s.data;
}

static int load_enc(const uint8_t *obj, size_t len, const char *key, const wv_obj_crypto *c,
                    size_t max_read, wv_buf *got, wv_obj_info *info, wv_err *err)
{
    mem_source src;
    wv_objread_opts o = {.key = key, .crypto = c};
    mem_source_init(&src, obj, len, max_read);
    wv_buf_init(got);
    wv_filter *dest = wv_filter_buf_new(got);
    int rc = wv_object_read_opts(&src.base, dest, &o, info, err);
    wv_filter_chain_free(dest);
    return rc;
}

static int has(const wv_buf *b, const void *needle, size_t n)
{
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, needle, n) == 0)
            return 1;
    return 0;
}

static void test_object_roundtrip(void **state)
{
    static const size_t sizes[] = {0, 100, CHUNK, CHUNK + 1, 300 * 1024 + 3};
    static const size_t reads[] = {1, 1000, SIZE_MAX};
    wv_obj_crypto cs, cx;
    crypto_sym(&cs);
    crypto_x25519(&cx, 1);
    for (int mode = 0; mode < 2; mode++) {
        const wv_obj_crypto *c = mode ? &cx : &cs;
        for (int comp = 0; comp <= 1; comp++) {
            for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
                size_t len = sizes[si];
                uint8_t *d = content(len), sha[32];
                unsigned int dl;
                wv_buf obj, got;
                wv_obj_info wi, ri, ii;
                wv_err err = {0};
                EVP_Digest(d, len, sha, &dl, EVP_sha256(), NULL);
                store_enc(d, len, (wv_compress)comp, "000000010000000000000003", c, &obj, &wi);
                assert_int_equal(wi.version, WV_OBJ_VERSION_CRYPT);
                assert_int_equal(wi.cipher, WV_OBJ_CIPHER_AES256GCM);
                assert_int_equal(wi.plain_size, len);
                assert_memory_equal(wi.sha256, sha, 32);
                assert_int_equal(wi.header_size + wi.payload_size + WV_OBJ_TRAILER_SIZE, obj.len);
                /* nothing plain in the stored bytes: no marker, no SHA-256 */
                assert_false(has(&obj, marker, 10));
                assert_false(has(&obj, sha, 32));
                assert_false(has(&obj, "\xe8\x03\x00\x00\x00\x00\x00\x00", 8)); /* time */
                for (size_t ri_ = 0; ri_ < 3; ri_++) {
                    if (reads[ri_] == 1 && len > CHUNK + 1)
                        continue;
                    int rc = load_enc(obj.data, obj.len, "000000010000000000000003", c, reads[ri_],
                                      &got, &ri, &err);
                    if (rc != 0)
                        fail_msg("mode %d comp %d size %zu: %s", mode, comp, len, err.msg);
                    assert_int_equal(got.len, len);
                    if (len)
                        assert_memory_equal(got.data, d, len);
                    assert_memory_equal(ri.sha256, sha, 32);
                    assert_int_equal(ri.first_commit_us, 1000);
                    assert_int_equal(ri.commit_count, 3);
                    wv_buf_free(&got);
                }
                /* one suffix read tells everything */
                size_t sl = obj.len < WV_OBJ_SUFFIX_MAX ? obj.len : WV_OBJ_SUFFIX_MAX;
                assert_int_equal(wv_object_info_decode(obj.data + obj.len - sl, sl, &ii, &err), 0);
                assert_true(ii.sealed);
                assert_int_equal(ii.plain_size, 0);
                assert_memory_equal(ii.keyed_digest, wi.keyed_digest, 32);
                assert_int_equal(wv_object_info_open(obj.data + obj.len - sl, sl,
                                                     "000000010000000000000003", c, &ii, &err),
                                 0);
                assert_false(ii.sealed);
                assert_int_equal(ii.plain_size, len);
                assert_memory_equal(ii.sha256, sha, 32);
                assert_int_equal(ii.last_commit_us, 2000);
                assert_int_equal(ii.restore_point_count, 1);
                assert_int_equal(ii.header_size, wi.header_size);
                /* ... and only for its own name */
                assert_int_equal(wv_object_info_open(obj.data + obj.len - sl, sl,
                                                     "000000010000000000000004", c, &ii, &err),
                                 WV_ECORRUPT);
                wv_buf_free(&obj);
                free(d);
            }
        }
    }
}

static void test_object_keys_refused(void **state)
{
    wv_obj_crypto cs, cx, pub_only, other;
    wv_buf obj, got;
    wv_obj_info info;
    wv_err err;
    uint8_t *d = content(5000);
    const char *name = "000000010000000000000003";
    crypto_sym(&cs);
    crypto_x25519(&cx, 1);
    crypto_x25519(&pub_only, 0);

    store_enc(d, 5000, WV_COMPRESS_LZ4, name, &cs, &obj, &info);
    assert_int_equal(load_enc(obj.data, obj.len, name, NULL, SIZE_MAX, &got, &info, &err), WV_EKEY);
    assert_non_null(strstr(err.msg, "no encryption key"));
    wv_buf_free(&got);
    assert_int_equal(load_enc(obj.data, obj.len, name, &cx, SIZE_MAX, &got, &info, &err), WV_EKEY);
    wv_buf_free(&got);
    other = cs;
    other.key_id++;
    assert_int_equal(load_enc(obj.data, obj.len, name, &other, SIZE_MAX, &got, &info, &err),
                     WV_EKEY);
    wv_buf_free(&got);
    other = cs;
    other.data_key[0] ^= 1; /* same id, another key: nothing authenticates */
    assert_int_equal(load_enc(obj.data, obj.len, name, &other, SIZE_MAX, &got, &info, &err),
                     WV_ECORRUPT);
    assert_int_equal(got.len, 0);
    wv_buf_free(&got);
    wv_buf_free(&obj);

    /* public-key mode: written with the public key alone, read only with the private key */
    store_enc(d, 5000, WV_COMPRESS_LZ4, name, &pub_only, &obj, &info);
    assert_int_equal(load_enc(obj.data, obj.len, name, &pub_only, SIZE_MAX, &got, &info, &err),
                     WV_EPRIVKEY);
    assert_non_null(strstr(err.msg, "needs the private key (encrypt_private_key_file)"));
    wv_buf_free(&got);
    assert_int_equal(load_enc(obj.data, obj.len, name, &cx, SIZE_MAX, &got, &info, &err), 0);
    assert_int_equal(got.len, 5000);
    wv_buf_free(&got);
    wv_buf_free(&obj);
    other = cx;
    other.key_id = 0x78; /* a key the ring does not hold */
    store_enc(d, 5000, WV_COMPRESS_LZ4, name, &other, &obj, &info);
    assert_int_equal(load_enc(obj.data, obj.len, name, &cx, SIZE_MAX, &got, &info, &err), WV_EKEY);
    assert_non_null(strstr(err.msg, "key id 78"));
    wv_buf_free(&obj);
    wv_buf_free(&got);
    free(d);
}

/* Same length names, so the header can be rebound in place with its checks fixed: the header
 * then is intact, bound to the new name, and the object still fails (its key was derived from
 * the header it was written with). */
static void test_object_renamed(void **state)
{
    wv_obj_crypto c;
    wv_buf obj, got;
    wv_obj_info info;
    wv_obj_header h;
    wv_err err;
    uint8_t *d = content(CHUNK * 2);
    crypto_sym(&c);
    store_enc(d, CHUNK * 2, WV_COMPRESS_NONE, "000000010000000000000003", &c, &obj, &info);
    assert_int_equal(wv_obj_header_decode(obj.data, obj.len, &h, &err), 0);
    assert_int_equal(wv_obj_header_bind(&h, "000000010000000000000004", &err), 0);
    assert_int_equal(wv_obj_header_encode(&h, obj.data, &err), 0);
    assert_int_equal(
        load_enc(obj.data, obj.len, "000000010000000000000004", &c, SIZE_MAX, &got, &info, &err),
        WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "does not authenticate"));
    assert_int_equal(got.len, 0);
    wv_buf_free(&got);
    /* read under the other name without rebinding: the binding says so */
    wv_buf orig;
    store_enc(d, CHUNK * 2, WV_COMPRESS_NONE, "000000010000000000000003", &c, &orig, &info);
    assert_int_equal(
        load_enc(orig.data, orig.len, "000000010000000000000004", &c, SIZE_MAX, &got, &info, &err),
        WV_ECORRUPT);
    wv_buf_free(&got);
    /* a chunk of another object (same name, same key: another salt) swapped in */
    memcpy(orig.data + info.header_size, obj.data + info.header_size, SEALED);
    assert_int_equal(
        load_enc(orig.data, orig.len, "000000010000000000000003", &c, SIZE_MAX, &got, &info, &err),
        WV_ECORRUPT);
    assert_int_equal(got.len, 0);
    wv_buf_free(&got);
    wv_buf_free(&orig);
    wv_buf_free(&obj);
    free(d);
}

/* Every byte of a small encrypted object changed, the object cut at every length, a byte
 * appended: each refused, and nothing released that is not the original's. */
static void test_object_every_byte(void **state)
{
    wv_obj_crypto c;
    wv_buf obj, got;
    wv_obj_info info;
    wv_err err;
    const char *name = "00000002.history";
    uint8_t *d = content(3000);
    crypto_sym(&c);
    store_enc(d, 3000, WV_COMPRESS_LZ4, name, &c, &obj, &info);
    for (size_t i = 0; i < obj.len; i++) {
        obj.data[i] ^= 0x01;
        int rc = load_enc(obj.data, obj.len, name, &c, SIZE_MAX, &got, &info, &err);
        if (rc == 0)
            fail_msg("byte %zu changed: read back", i);
        if (got.len)
            assert_memory_equal(got.data, d, got.len);
        wv_buf_free(&got);
        obj.data[i] ^= 0x01;
    }
    for (size_t n = 0; n < obj.len; n++) {
        assert_int_not_equal(load_enc(obj.data, n, name, &c, SIZE_MAX, &got, &info, &err), 0);
        wv_buf_free(&got);
    }
    wv_buf_append(&obj, "", 1);
    assert_int_equal(load_enc(obj.data, obj.len, name, &c, SIZE_MAX, &got, &info, &err),
                     WV_ECORRUPT);
    wv_buf_free(&got);
    wv_buf_free(&obj);
    free(d);
}

/* The keyed digest: the same content gives the same one (a re-push is recognised without reading
 * the object back), other content or another digest key another one; it is not the SHA-256. */
static void test_keyed_digest(void **state)
{
    wv_obj_crypto c, c2;
    wv_buf a, b, e;
    wv_obj_info ia, ib, ie;
    uint8_t *d = content(10000);
    crypto_sym(&c);
    store_enc(d, 10000, WV_COMPRESS_LZ4, "x", &c, &a, &ia);
    store_enc(d, 10000, WV_COMPRESS_LZ4, "x", &c, &b, &ib);
    assert_memory_equal(ia.keyed_digest, ib.keyed_digest, 32);
    assert_memory_not_equal(ia.keyed_digest, ia.sha256, 32);
    assert_memory_not_equal(a.data + ia.header_size, b.data + ib.header_size, 100);
    d[5000] ^= 1;
    store_enc(d, 10000, WV_COMPRESS_LZ4, "x", &c, &e, &ie);
    assert_memory_not_equal(ia.keyed_digest, ie.keyed_digest, 32);
    d[5000] ^= 1;
    c2 = c;
    c2.digest_key[3] ^= 1;
    wv_buf_free(&e);
    store_enc(d, 10000, WV_COMPRESS_LZ4, "x", &c2, &e, &ie);
    assert_memory_not_equal(ia.keyed_digest, ie.keyed_digest, 32);
    uint8_t want[32];
    wv_err err;
    assert_int_equal(wv_crypt_keyed_digest(c.digest_key, ia.sha256, want, &err), 0);
    assert_memory_equal(want, ia.keyed_digest, 32);
    /* the re-push decision from the stored trailer alone (as a suffix read gives it) */
    wv_obj_info sb, plain;
    assert_int_equal(
        wv_object_info_decode(b.data + b.len - WV_OBJ_TRAILER_SIZE, WV_OBJ_TRAILER_SIZE, &sb, &err),
        0);
    assert_true(sb.sealed);
    assert_true(wv_obj_info_same_content(&sb, &ia));
    assert_false(wv_obj_info_same_content(&sb, &ie)); /* another digest key */
    wv_buf_free(&e);
    store_enc(d, 10000, WV_COMPRESS_LZ4, "x", NULL, &e, &plain);
    assert_false(wv_obj_info_same_content(&sb, &plain));
    assert_false(wv_obj_info_same_content(&plain, &ia));
    assert_true(wv_obj_info_same_content(&plain, &plain));
    wv_buf_free(&a);
    wv_buf_free(&b);
    wv_buf_free(&e);
    free(d);
}

/* One write into three sinks under three encryptions (two keys and plain): hashed and compressed
 * once, each sink's object opens with its own key only, and each sink's trailer is its own. */
static void test_object_lanes(void **state)
{
    (void)state;
    wv_obj_crypto c1, c2;
    crypto_sym(&c1);
    crypto_sym(&c2);
    c2.key_id = 0x5678;
    c2.data_key[0] ^= 0xff;
    c2.digest_key[0] ^= 0xff;
    mem_sink s[3];
    wv_sink *sinks[3] = {&s[0].base, &s[1].base, &s[2].base};
    const wv_obj_crypto *per[3] = {&c1, NULL, &c2};
    for (int i = 0; i < 3; i++)
        mem_sink_init(&s[i], 0);
    wv_obj_opts opts = {.compress = WV_COMPRESS_LZ4,
                        .level = 1,
                        .kind = WV_OBJ_KIND_WAL,
                        .name = "wal/x",
                        .sink_crypto = per};
    size_t len = 3 * CHUNK + 17;
    uint8_t *d = content(len);
    wv_err err = {0};
    wv_objwriter *w = wv_objwriter_new(sinks, 3, &opts);
    assert_int_equal(wv_objwriter_write(w, d, len, &err), 0);
    wv_obj_info fin, si[3];
    assert_int_equal(wv_objwriter_sink_info(w, 0, &si[0]), WV_EINTERNAL); /* before finish */
    assert_int_equal(wv_objwriter_finish(w, &fin, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(wv_objwriter_sink_info(w, i, &si[i]), 0);
    assert_int_equal(wv_objwriter_sink_info(w, 3, &si[0]), WV_EINTERNAL);
    wv_objwriter_free(w);
    assert_memory_equal(&fin, &si[0], sizeof(fin));
    assert_int_equal(si[0].version, 3);
    assert_int_equal(si[1].version, 2);
    assert_int_equal(si[2].version, 3);
    assert_memory_not_equal(si[0].keyed_digest, si[2].keyed_digest, 32); /* own digest keys */
    assert_int_equal(si[0].payload_size, si[2].payload_size);            /* same layout */
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(si[i].sha256, si[0].sha256, 32);
        assert_int_equal(s[i].data.len,
                         si[i].payload_size + si[i].header_size + WV_OBJ_TRAILER_SIZE);
    }
    assert_false(has(&s[0].data, marker, sizeof(marker) - 1));
    assert_false(has(&s[2].data, marker, sizeof(marker) - 1));
    wv_buf got;
    wv_obj_info info;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            load_enc(s[i].data.data, s[i].data.len, "wal/x", per[i], SIZE_MAX, &got, &info, &err),
            0);
        assert_int_equal(got.len, len);
        assert_memory_equal(got.data, d, len);
        wv_buf_free(&got);
    }
    /* sink 0 under sink 2's key, and an encrypted one with none: refused */
    assert_int_equal(
        load_enc(s[0].data.data, s[0].data.len, "wal/x", &c2, SIZE_MAX, &got, &info, &err),
        WV_EKEY);
    wv_buf_free(&got);
    assert_int_equal(
        load_enc(s[2].data.data, s[2].data.len, "wal/x", NULL, SIZE_MAX, &got, &info, &err),
        WV_EKEY);
    assert_int_equal(got.len, 0);
    wv_buf_free(&got);
    for (int i = 0; i < 3; i++)
        wv_buf_free(&s[i].data);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_key_vector), cmocka_unit_test(test_stream_vectors),
        cmocka_unit_test(test_one_chunk_direct),  cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_seal_once_vector),  cmocka_unit_test(test_header_byte_changed),
        cmocka_unit_test(test_truncated),         cmocka_unit_test(test_appended),
        cmocka_unit_test(test_chunks_swapped),    cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_fresh_salt),        cmocka_unit_test(test_x25519),
        cmocka_unit_test(test_object_roundtrip),  cmocka_unit_test(test_object_keys_refused),
        cmocka_unit_test(test_object_renamed),    cmocka_unit_test(test_object_every_byte),
        cmocka_unit_test(test_keyed_digest),      cmocka_unit_test(test_object_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
