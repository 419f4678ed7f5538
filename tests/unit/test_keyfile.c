/*
 * test_keyfile.c - key files: modes and owners refused with the chmod to run, symmetric material
 * in raw, hex and base64 form, passphrases, X25519 PEM keys made by the openssl command line (a
 * key ring of several), scrypt against RFC 7914's vector, guarded secret memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/bytes.h"
#include "core/keyfile.h"

static char dir[] = "/tmp/wv-test-keyfile-XXXXXX";

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *put(const char *name, const void *data, size_t len, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void expect_symmetric(const char *text, size_t len, int want_kind, const char *want_hex)
{
    wv_secret *s = NULL;
    wv_err err;
    int kind = 0;
    const char *p = put("sym", text, len, 0600);
    int rc = wv_keyfile_read_symmetric(p, &kind, &s, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(kind, want_kind);
    if (want_hex) {
        uint8_t want[32];
        assert_int_equal(wv_hex_decode(want_hex, want, 32), 0);
        assert_int_equal(s->len, 32);
        assert_memory_equal(s->data, want, 32);
    }
    wv_secret_free(s);
}

static const char key_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/* base64 of bytes 0..31 */
static const char key_b64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

static void test_symmetric_forms(void **state)
{
    uint8_t raw[32];
    char text[80];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    expect_symmetric((const char *)raw, 32, WV_KEYFILE_MATERIAL, key_hex);
    expect_symmetric(key_hex, 64, WV_KEYFILE_MATERIAL, key_hex);
    snprintf(text, sizeof(text), "%s\n", key_hex);
    expect_symmetric(text, strlen(text), WV_KEYFILE_MATERIAL, key_hex);
    snprintf(text, sizeof(text), "%s\n", key_b64);
    expect_symmetric(text, strlen(text), WV_KEYFILE_MATERIAL, key_hex);
    expect_symmetric(key_b64, 44, WV_KEYFILE_MATERIAL, key_hex);
    /* 32 raw bytes that happen to contain a newline are still key material */
    raw[31] = '\n';
    expect_symmetric((const char *)raw, 32, WV_KEYFILE_MATERIAL, NULL);
    /* anything else is a passphrase */
    wv_secret *s = NULL;
    wv_err err;
    int kind = 0;
    const char *p = put("pass", "correct horse battery staple\n", 29, 0400);
    assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), 0);
    assert_int_equal(kind, WV_KEYFILE_PASSPHRASE);
    assert_int_equal(s->len, 28);
    assert_memory_equal(s->data, "correct horse battery staple", 28);
    wv_secret_free(s);
    /* 63 hex digits, or base64 with a wrong character: a passphrase, not a half key */
    expect_symmetric(key_hex, 63, WV_KEYFILE_PASSPHRASE, NULL);
}

static void test_symmetric_refused(void **state)
{
    wv_secret *s = NULL;
    wv_err err;
    int kind;
    const char *p = put("short", "abc\n", 4, 0600);
    assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "shorter than 8"));
    assert_null(strstr(err.msg, "abc")); /* the secret is never in a message */
    p = put("empty", "\n", 1, 0600);
    assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "is empty"));
    p = put("lines", "first line secret\nsecond\n", 25, 0600);
    assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), WV_ECONFIG);
    assert_null(strstr(err.msg, "secret"));
    assert_non_null(strstr(err.hint, "openssl rand"));
}

static void test_modes_and_missing(void **state)
{
    static const mode_t bad[] = {0644, 0640, 0604, 0660, 0700, 0500, 0602, 0620};
    wv_secret *s = NULL;
    wv_err err;
    int kind;
    char want[300];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *p = put("mode", key_hex, 64, bad[i]);
        assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), WV_ECONFIG);
        snprintf(want, sizeof(want), "mode %04o", (unsigned)bad[i]);
        assert_non_null(strstr(err.msg, want));
        snprintf(want, sizeof(want), "chmod 600 %s", p);
        assert_string_equal(err.hint, want);
    }
    const char *p = put("ok400", key_hex, 64, 0400);
    assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), 0);
    wv_secret_free(s);

    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nonexistent.key", dir);
    assert_int_equal(wv_keyfile_read_symmetric(missing, &kind, &s, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "could not open key file"));
    assert_non_null(strstr(err.msg, "nonexistent.key"));
    assert_true(strlen(err.hint) > 0);

    /* a symbolic link is not followed, a directory is not a key */
    char link[300];
    snprintf(link, sizeof(link), "%s/link.key", dir);
    assert_int_equal(symlink(p, link), 0);
    assert_int_equal(wv_keyfile_read_symmetric(link, &kind, &s, &err), WV_ECONFIG);
    assert_non_null(strstr(err.hint, "symbolic link"));
    assert_int_equal(wv_keyfile_read_symmetric(dir, &kind, &s, &err), WV_ECONFIG);
}

/* Owned by another user: only testable as root (chown). */
static void test_owner(void **state)
{
    if (geteuid() != 0)
        skip();
    wv_secret *s = NULL;
    wv_err err;
    int kind;
    const char *p = put("owner", key_hex, 64, 0600);
    assert_int_equal(chown(p, 65534, 65534), 0);
    assert_int_equal(wv_keyfile_read_symmetric(p, &kind, &s, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "owned by uid 65534"));
    char want[300];
    snprintf(want, sizeof(want), "chown 0 %s", p);
    assert_string_equal(err.hint, want);
}

static void run(const char *cmd)
{
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

static void test_x25519_pem(void **state)
{
    char cmd[4096], priv[300], pub[300], ring[300], priv2[300];
    snprintf(priv, sizeof(priv), "%s/a.pem", dir);
    snprintf(priv2, sizeof(priv2), "%s/b.pem", dir);
    snprintf(pub, sizeof(pub), "%s/a.pub", dir);
    snprintf(ring, sizeof(ring), "%s/ring.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "umask 077 && openssl genpkey -algorithm X25519 -out %s && openssl genpkey "
             "-algorithm X25519 -out %s && openssl pkey -in %s -pubout -out %s && cat %s %s > %s",
             priv, priv2, priv, pub, priv2, priv, ring);
    run(cmd);
    /* the public key's raw bytes, as openssl prints them */
    snprintf(cmd, sizeof(cmd),
             "openssl pkey -pubin -in %s -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \\n' > "
             "%s/a.hex",
             pub, dir);
    run(cmd);
    char hexpath[300], hexs[65] = {0};
    snprintf(hexpath, sizeof(hexpath), "%s/a.hex", dir);
    FILE *f = fopen(hexpath, "r");
    assert_non_null(f);
    assert_int_equal(fread(hexs, 1, 64, f), 64);
    fclose(f);
    uint8_t want[32], got[32];
    assert_int_equal(wv_hex_decode(hexs, want, 32), 0);
    wv_err err;
    chmod(pub, 0600);
    assert_int_equal(wv_keyfile_read_public(pub, got, &err), 0);
    assert_memory_equal(got, want, 32);
    /* the canonical file is read without OpenSSL's decoders; another layout (CRLF) through
     * them, to the same key; an Ed25519 public key of the same shape is refused */
    char crlf[300], edpub[300];
    snprintf(crlf, sizeof(crlf), "%s/crlf.pub", dir);
    snprintf(edpub, sizeof(edpub), "%s/ed.pub", dir);
    snprintf(cmd, sizeof(cmd),
             "umask 077 && sed 's/$/\r/' %s > %s && openssl genpkey -algorithm ED25519 | openssl "
             "pkey -pubout -out %s",
             pub, crlf, edpub);
    run(cmd);
    memset(got, 0, sizeof(got));
    assert_int_equal(wv_keyfile_read_public(crlf, got, &err), 0);
    assert_memory_equal(got, want, 32);
    assert_int_equal(wv_keyfile_read_public(edpub, got, &err), WV_ECONFIG);

    wv_secret *keys = NULL;
    int n = 0;
    assert_int_equal(wv_keyfile_read_private(ring, &keys, &n, &err), 0);
    assert_int_equal(n, 2);
    wv_secret *one = NULL;
    int n1 = 0;
    assert_int_equal(wv_keyfile_read_private(priv, &one, &n1, &err), 0);
    assert_int_equal(n1, 1);
    assert_memory_equal(keys->data + 32, one->data, 32); /* the ring's second key is a.pem */
    assert_memory_not_equal(keys->data, one->data, 32);
    wv_secret_free(keys);
    wv_secret_free(one);

    /* a public key is no private key, a private key no public one, another algorithm neither */
    assert_int_equal(wv_keyfile_read_private(pub, &keys, &n, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "X25519 private key"));
    assert_non_null(strstr(err.hint, "openssl genpkey -algorithm X25519"));
    assert_int_equal(wv_keyfile_read_public(priv, got, &err), WV_ECONFIG);
    snprintf(cmd, sizeof(cmd), "umask 077 && openssl genpkey -algorithm ED25519 -out %s/ed.pem",
             dir);
    run(cmd);
    snprintf(priv2, sizeof(priv2), "%s/ed.pem", dir);
    assert_int_equal(wv_keyfile_read_private(priv2, &keys, &n, &err), WV_ECONFIG);
    /* the mode rule holds for PEM files too */
    chmod(priv, 0640);
    assert_int_equal(wv_keyfile_read_private(priv, &keys, &n, &err), WV_ECONFIG);
    assert_non_null(strstr(err.hint, "chmod 600"));
}

/* RFC 7914, section 12, the second vector (n 1024, r 8, p 16), first 32 bytes. */
static void test_scrypt(void **state)
{
    uint8_t out[32], want[32];
    wv_err err;
    assert_int_equal(wv_keyfile_scrypt((const uint8_t *)"password", 8, (const uint8_t *)"NaCl", 4,
                                       1024, 8, 16, out, &err),
                     0);
    assert_int_equal(
        wv_hex_decode("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162", want, 32),
        0);
    assert_memory_equal(out, want, 32);
    /* parameters OpenSSL refuses (n not a power of 2) */
    assert_int_equal(wv_keyfile_scrypt((const uint8_t *)"password", 8, (const uint8_t *)"NaCl", 4,
                                       1000, 8, 16, out, &err),
                     WV_EINTERNAL);
}

static void test_secret_memory(void **state)
{
    wv_secret *s = wv_secret_new(100);
    assert_int_equal(s->len, 100);
    assert_true(s->cap >= 100);
    for (size_t i = 0; i < s->cap; i++)
        assert_int_equal(s->data[i], 0);
    memset(s->data, 0xaa, s->len);
    wv_secret_free(s);
    wv_secret_free(NULL);
    s = wv_secret_new(0);
    assert_true(s->cap > 0);
    wv_secret_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_symmetric_forms),   cmocka_unit_test(test_symmetric_refused),
        cmocka_unit_test(test_modes_and_missing), cmocka_unit_test(test_owner),
        cmocka_unit_test(test_x25519_pem),        cmocka_unit_test(test_scrypt),
        cmocka_unit_test(test_secret_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
