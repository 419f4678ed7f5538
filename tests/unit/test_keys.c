/*
 * test_keys.c - the key record on a real posix repository: first use creates it, the same key
 * reopens it, a wrong key, no key, the other mode and a plain repository are each refused with
 * their own message; rekey (symmetric and public-key) stopped after each step still opens with
 * the old or the new key, and completed opens only with the new one; objects written before a
 * rekey read after it; the keyed digest's key survives a rekey; a damaged record is corrupt.
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

#include "repo/keys.h"
#include "storage/storage.h"

#include "memio.h"

typedef struct fixture {
    char dir[64];
    char keydir[80];
    wv_repo_config rc;
    wv_storage *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/wv-test-keys-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->keydir, sizeof(f->keydir), "%s.k", f->dir);
    if (mkdir(f->keydir, 0700) != 0)
        return -1;
    f->rc.index = 1;
    snprintf(f->rc.name, sizeof(f->rc.name), "repo1");
    f->rc.type = WV_REPO_POSIX;
    f->rc.path = f->dir;
    wv_err err;
    if (wv_storage_open(&f->rc, &f->st, &err) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[256];
    wv_storage_free(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", f->dir, f->keydir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static const char *keyfile(fixture *f, const char *name, const char *text)
{
    static char path[8][160];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 160, "%s/%s", f->keydir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return p;
}

static wv_user_keys *sym(fixture *f, const char *text)
{
    wv_user_keys *uk = NULL;
    wv_err err;
    if (wv_user_keys_load(keyfile(f, "sym.key", text), NULL, NULL, &uk, &err) != 0)
        fail_msg("%s", err.msg);
    return uk;
}

/* An X25519 pair NAME.pem / NAME.pub made by the openssl command line. */
static void x25519_pair(fixture *f, const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "cd %s && umask 077 && openssl genpkey -algorithm X25519 -out %s.pem && openssl "
             "pkey -in %s.pem -pubout -out %s.pub",
             f->keydir, name, name, name);
    assert_int_equal(system(cmd), 0);
}

static wv_user_keys *pk(fixture *f, const char *pub, const char *priv)
{
    char pp[160], vp[160];
    wv_user_keys *uk = NULL;
    wv_err err;
    snprintf(pp, sizeof(pp), "%s/%s", f->keydir, pub ? pub : "");
    snprintf(vp, sizeof(vp), "%s/%s", f->keydir, priv ? priv : "");
    if (wv_user_keys_load(NULL, pub ? pp : NULL, priv ? vp : NULL, &uk, &err) != 0)
        fail_msg("%s", err.msg);
    return uk;
}

static int open_keys(fixture *f, const wv_user_keys *uk, int used, wv_repo_keys **k, wv_err *err)
{
    return wv_repo_keys_open(f->st, "repo1", uk, used, k, err);
}

static void store(const wv_obj_crypto *c, const char *text, wv_buf *out)
{
    mem_sink s;
    wv_sink *sinks[1] = {&s.base};
    wv_obj_opts o = {
        .compress = WV_COMPRESS_LZ4, .kind = WV_OBJ_KIND_WAL, .name = "k", .crypto = c};
    wv_err err;
    mem_sink_init(&s, 0);
    wv_objwriter *w = wv_objwriter_new(sinks, 1, &o);
    assert_int_equal(wv_objwriter_write(w, text, strlen(text), &err), 0);
    if (wv_objwriter_finish(w, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    wv_objwriter_free(w);
    *out = s.data;
}

static int load(const wv_obj_crypto *c, const wv_buf *obj, wv_buf *got, wv_err *err)
{
    mem_source src;
    wv_objread_opts o = {.key = "k", .crypto = c};
    mem_source_init(&src, obj->data, obj->len, SIZE_MAX);
    wv_buf_init(got);
    wv_filter *dest = wv_filter_buf_new(got);
    int rc = wv_object_read_opts(&src.base, dest, &o, NULL, err);
    wv_filter_chain_free(dest);
    return rc;
}

static const char key_a[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
static const char key_b[] = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

static void test_plain_and_first_use(void **state)
{
    fixture *f = *state;
    wv_repo_keys *k = NULL;
    wv_err err;
    /* no record and no key: plain */
    assert_int_equal(open_keys(f, NULL, 1, &k, &err), 0);
    assert_null(k);
    /* a used plain repository and a key: refused */
    wv_user_keys *a = sym(f, key_a);
    assert_int_equal(open_keys(f, a, 1, &k, &err), WV_EKEY);
    assert_string_equal(err.msg, "repo1: the repository is not encrypted (it was first used "
                                 "without encryption), and the configuration sets an encryption "
                                 "key");
    assert_non_null(strstr(err.hint, "basebackup sync"));
    /* first use creates generation 1 */
    assert_int_equal(open_keys(f, a, 0, &k, &err), 0);
    assert_non_null(k);
    assert_int_equal(k->generation, 1);
    assert_true(k->can_write);
    wv_obj_crypto c1 = *k->crypto;
    wv_repo_keys_free(k);
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/keys/00000001", f->dir);
    assert_int_equal(stat(path, &st), 0);
    /* the same key reopens it to the same keys; the data key is not the user's */
    assert_int_equal(open_keys(f, a, 1, &k, &err), 0);
    assert_memory_equal(k->crypto->data_key, c1.data_key, 32);
    assert_memory_equal(k->crypto->digest_key, c1.digest_key, 32);
    assert_int_equal(k->crypto->key_id, c1.key_id);
    assert_memory_not_equal(k->crypto->data_key, a->sym->data, 32);
    wv_repo_keys_free(k);
    /* no key now: refused */
    assert_int_equal(open_keys(f, NULL, 1, &k, &err), WV_EKEY);
    assert_string_equal(err.msg, "repo1: the repository is encrypted, and the configuration has "
                                 "no encryption key");
    /* a wrong key */
    wv_user_keys *b = sym(f, key_b);
    assert_int_equal(open_keys(f, b, 1, &k, &err), WV_EKEY);
    assert_string_equal(err.msg, "repo1: wrong encryption key for this repository");
    /* the other mode */
    x25519_pair(f, "x");
    wv_user_keys *x = pk(f, "x.pub", NULL);
    assert_int_equal(open_keys(f, x, 1, &k, &err), WV_EKEY);
    assert_non_null(strstr(err.msg, "encrypted with a symmetric key"));
    /* a damaged record */
    FILE *fp = fopen(path, "w");
    fputs("format=1\ngeneration=1\nmode=symmetric\nkey_id=zz\n", fp);
    fclose(fp);
    assert_int_equal(open_keys(f, a, 1, &k, &err), WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "key record \"keys/00000001\" is invalid: bad key_id"));
    wv_user_keys_free(a);
    wv_user_keys_free(b);
    wv_user_keys_free(x);
}

static void test_passphrase(void **state)
{
    fixture *f = *state;
    wv_repo_keys *k = NULL;
    wv_err err;
    wv_user_keys *p = sym(f, "a passphrase from the password manager\n");
    assert_int_equal(p->sym_kind, WV_KEYFILE_PASSPHRASE);
    assert_int_equal(open_keys(f, p, 0, &k, &err), 0);
    wv_repo_keys_free(k);
    char path[128], text[4096] = {0};
    snprintf(path, sizeof(path), "%s/keys/00000001", f->dir);
    FILE *fp = fopen(path, "r");
    assert_true(fread(text, 1, sizeof(text) - 1, fp) > 0);
    fclose(fp);
    assert_non_null(strstr(text, "kdf=scrypt\nscrypt_n=20000\nscrypt_r=8\nscrypt_p=1\n"));
    assert_null(strstr(text, "passphrase"));
    assert_int_equal(open_keys(f, p, 1, &k, &err), 0);
    wv_repo_keys_free(k);
    wv_user_keys *wrong = sym(f, "another passphrase entirely\n");
    assert_int_equal(open_keys(f, wrong, 1, &k, &err), WV_EKEY);
    assert_string_equal(err.msg, "repo1: wrong encryption key for this repository");
    wv_user_keys *m = sym(f, key_a);
    assert_int_equal(open_keys(f, m, 1, &k, &err), WV_EKEY);
    assert_non_null(strstr(err.hint, "passphrase"));
    /* a hostile record cannot make this host run a huge scrypt: refused before any KDF runs */
    static const char *const hostile[] = {"scrypt_n=1000000\nscrypt_r=1\nscrypt_p=1",
                                          "scrypt_n=30000\nscrypt_r=8\nscrypt_p=1", /* not 2^k */
                                          "scrypt_n=1000000\nscrypt_r=40\nscrypt_p=1",
                                          "scrypt_n=20000\nscrypt_r=8\nscrypt_p=11",
                                          "scrypt_n=20000\nscrypt_r=8\nscrypt_p=40"};
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        char rec[1024];
        char *at = strstr(text, "scrypt_n=");
        char *end = strstr(text, "scrypt_p=1\n") + strlen("scrypt_p=1");
        snprintf(rec, sizeof(rec), "%.*s%s%s", (int)(at - text), text, hostile[i], end);
        wv_repo_keys *h = NULL;
        assert_int_equal(wv_repo_keys_open_text(rec, "repo1", "keys/00000001", p, &h, &err),
                         WV_ECORRUPT);
        assert_null(h);
        assert_non_null(strstr(err.msg, "bad scrypt parameters"));
    }
    /* the record as written opens through the same function */
    assert_int_equal(wv_repo_keys_open_text(text, "repo1", "keys/00000001", p, &k, &err), 0);
    assert_int_equal(k->generation, 1);
    wv_repo_keys_free(k);
    wv_user_keys_free(p);
    wv_user_keys_free(wrong);
    wv_user_keys_free(m);
}

static void test_symmetric_rekey(void **state)
{
    fixture *f = *state;
    wv_repo_keys *k = NULL, *k2 = NULL;
    wv_err err;
    wv_user_keys *a = sym(f, key_a), *b = sym(f, key_b);
    assert_int_equal(open_keys(f, a, 0, &k, &err), 0);
    wv_buf obj, got;
    store(k->crypto, "written before the rekey", &obj);
    /* stopped after writing, and after verifying: both keys open */
    for (int stop = 1; stop <= 2; stop++) {
        assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", k, b, stop, &err), 0);
        assert_int_equal(open_keys(f, a, 1, &k2, &err), 0);
        wv_repo_keys_free(k2);
        assert_int_equal(open_keys(f, b, 1, &k2, &err), 0);
        assert_memory_equal(k2->crypto->data_key, k->crypto->data_key, 32);
        wv_repo_keys_free(k2);
    }
    /* to the end: only the new key opens */
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", k, b, 0, &err), 0);
    assert_int_equal(open_keys(f, a, 1, &k2, &err), WV_EKEY);
    assert_string_equal(err.msg, "repo1: wrong encryption key for this repository");
    assert_int_equal(open_keys(f, b, 1, &k2, &err), 0);
    assert_int_equal(k2->generation, 4);
    assert_int_equal(load(k2->crypto, &obj, &got, &err), 0);
    assert_int_equal(got.len, strlen("written before the rekey"));
    wv_buf_free(&got);
    assert_memory_equal(k2->crypto->digest_key, k->crypto->digest_key, 32);
    char path[128];
    struct stat st;
    for (int g = 1; g <= 3; g++) {
        snprintf(path, sizeof(path), "%s/keys/%08x", f->dir, g);
        assert_int_not_equal(stat(path, &st), 0);
    }
    /* rekey to a passphrase */
    wv_user_keys *p = sym(f, "now a passphrase, long enough\n");
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", k2, p, 0, &err), 0);
    wv_repo_keys_free(k2);
    assert_int_equal(open_keys(f, b, 1, &k2, &err), WV_EKEY);
    assert_int_equal(open_keys(f, p, 1, &k2, &err), 0);
    assert_int_equal(load(k2->crypto, &obj, &got, &err), 0);
    wv_buf_free(&got);
    wv_repo_keys_free(k2);
    wv_buf_free(&obj);
    wv_repo_keys_free(k);
    wv_user_keys_free(a);
    wv_user_keys_free(b);
    wv_user_keys_free(p);
}

static void test_public_key_mode(void **state)
{
    fixture *f = *state;
    wv_repo_keys *k = NULL, *r = NULL, *k2 = NULL;
    wv_err err;
    wv_buf obj_a, obj_b, got;
    char cmd[512];
    x25519_pair(f, "a");
    x25519_pair(f, "b");
    snprintf(cmd, sizeof(cmd), "cd %s && umask 077 && cat a.pem b.pem > ring.pem", f->keydir);
    assert_int_equal(system(cmd), 0);
    wv_user_keys *writer = pk(f, "a.pub", NULL), *reader = pk(f, NULL, "a.pem");
    /* a reader alone cannot create the repository */
    assert_int_equal(open_keys(f, reader, 0, &k, &err), WV_ECONFIG);
    assert_non_null(strstr(err.msg, "needs the public key"));
    /* the writing host: public key only */
    assert_int_equal(open_keys(f, writer, 0, &k, &err), 0);
    assert_true(k->can_write);
    assert_null(k->crypto->private_key);
    store(k->crypto, "archived with the public key", &obj_a);
    assert_int_equal(load(k->crypto, &obj_a, &got, &err), WV_EPRIVKEY);
    assert_non_null(strstr(err.msg, "needs the private key (encrypt_private_key_file)"));
    wv_buf_free(&got);
    /* the restore host: the private key */
    assert_int_equal(open_keys(f, reader, 1, &r, &err), 0);
    assert_int_equal(load(r->crypto, &obj_a, &got, &err), 0);
    wv_buf_free(&got);
    assert_memory_equal(r->crypto->digest_key, k->crypto->digest_key, 32);
    wv_repo_keys_free(r);
    /* another key pair opens nothing */
    x25519_pair(f, "c");
    wv_user_keys *other = pk(f, "c.pub", "c.pem");
    assert_int_equal(open_keys(f, other, 1, &r, &err), WV_EKEY);
    assert_string_equal(err.msg, "repo1: wrong encryption key for this repository");

    /* rekey to b, stopped after each step, then to the end */
    wv_user_keys *nb = pk(f, "b.pub", NULL);
    for (int stop = 1; stop <= 2; stop++) {
        assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", k, nb, stop, &err), 0);
        assert_int_equal(open_keys(f, writer, 1, &k2, &err), 0); /* the old generation */
        assert_int_equal(k2->generation, 1);
        wv_repo_keys_free(k2);
        assert_int_equal(open_keys(f, nb, 1, &k2, &err), 0);
        assert_int_equal(k2->generation, (uint32_t)stop + 1);
        wv_repo_keys_free(k2);
    }
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", k, nb, 0, &err), 0);
    assert_int_equal(open_keys(f, writer, 1, &k2, &err), WV_EKEY); /* a is old now */
    assert_non_null(strstr(err.msg, "an old key of this repository"));
    /* from the new state on: b writes, the ring reads both */
    assert_int_equal(open_keys(f, nb, 1, &k2, &err), 0);
    store(k2->crypto, "archived after the rekey", &obj_b);
    assert_memory_equal(k2->crypto->digest_key, k->crypto->digest_key, 32);
    wv_user_keys *ring = pk(f, NULL, "ring.pem");
    assert_int_equal(open_keys(f, ring, 1, &r, &err), 0);
    assert_true(r->can_write);
    assert_int_equal(load(r->crypto, &obj_a, &got, &err), 0);
    wv_buf_free(&got);
    assert_int_equal(load(r->crypto, &obj_b, &got, &err), 0);
    wv_buf_free(&got);
    wv_repo_keys_free(r);
    /* only the new private key: old objects need the old one */
    wv_user_keys *only_b = pk(f, NULL, "b.pem");
    assert_int_equal(open_keys(f, only_b, 1, &r, &err), 0);
    assert_int_equal(load(r->crypto, &obj_b, &got, &err), 0);
    wv_buf_free(&got);
    assert_int_equal(load(r->crypto, &obj_a, &got, &err), WV_EPRIVKEY);
    assert_non_null(strstr(err.msg, "which encrypt_private_key_file does not hold"));
    wv_buf_free(&got);
    wv_repo_keys_free(r);

    wv_buf_free(&obj_a);
    wv_buf_free(&obj_b);
    wv_repo_keys_free(k);
    wv_repo_keys_free(k2);
    wv_user_keys_free(writer);
    wv_user_keys_free(reader);
    wv_user_keys_free(other);
    wv_user_keys_free(nb);
    wv_user_keys_free(ring);
    wv_user_keys_free(only_b);
}

/* A rekey stopped after removing the first older generation, and finishing a stopped rekey with
 * the new key (wv_repo_keys_finish): refused while a newer generation exists that the key does
 * not open; afterwards only the new key opens. */
static void test_rekey_stop_and_finish(void **state)
{
    fixture *f = *state;
    wv_repo_keys *ka = NULL, *kb = NULL, *kc = NULL, *k = NULL;
    wv_err err;
    int removed = -1;
    wv_user_keys *a = sym(f, key_a), *b = sym(f, key_b);
    wv_user_keys *c = sym(f, "3f0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    assert_int_equal(open_keys(f, a, 0, &ka, &err), 0);
    /* stopped after writing generation 2; the new key finishes it */
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", ka, b, 1, &err), 0);
    assert_int_equal(open_keys(f, b, 1, &kb, &err), 0);
    assert_int_equal(kb->generation, 2);
    assert_int_equal(wv_repo_keys_finish(f->st, "repo1", kb, &removed, &err), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(open_keys(f, a, 1, &k, &err), WV_EKEY);
    /* finishing again removes nothing */
    assert_int_equal(wv_repo_keys_finish(f->st, "repo1", kb, &removed, &err), 0);
    assert_int_equal(removed, 0);
    /* stopped after the first removal: generation 2 is gone, 3 opens with c only */
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", kb, c, 3, &err), 0);
    assert_int_equal(open_keys(f, b, 1, &k, &err), WV_EKEY);
    assert_int_equal(open_keys(f, c, 1, &kc, &err), 0);
    assert_int_equal(kc->generation, 3);
    /* two stopped rekeys (to a, then to b) from generation 3 */
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", kc, a, 1, &err), 0);
    assert_int_equal(wv_repo_keys_rekey(f->st, "repo1", kc, b, 1, &err), 0);
    wv_repo_keys_free(ka);
    assert_int_equal(open_keys(f, a, 1, &ka, &err), 0);
    assert_int_equal(ka->generation, 4);
    assert_int_equal(wv_repo_keys_finish(f->st, "repo1", ka, &removed, &err), WV_EREFUSED);
    assert_string_equal(err.msg, "repo1: key generation 00000005 is newer than the one this key "
                                 "opens (00000004)");
    wv_repo_keys_free(kb);
    assert_int_equal(open_keys(f, b, 1, &kb, &err), 0);
    assert_int_equal(kb->generation, 5);
    assert_int_equal(wv_repo_keys_finish(f->st, "repo1", kb, &removed, &err), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(open_keys(f, a, 1, &k, &err), WV_EKEY);
    assert_int_equal(open_keys(f, c, 1, &k, &err), WV_EKEY);
    assert_memory_equal(kb->crypto->data_key, kc->crypto->data_key, 32);
    wv_repo_keys_free(ka);
    wv_repo_keys_free(kb);
    wv_repo_keys_free(kc);
    wv_user_keys_free(a);
    wv_user_keys_free(b);
    wv_user_keys_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_and_first_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passphrase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symmetric_rekey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_public_key_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rekey_stop_and_finish, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
