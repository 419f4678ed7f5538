/*
 * test_objcopy.c - copying a stored object between two real posix repositories, verified: the
 * copy is byte for byte the stored object; a second copy finds it identical (already); different
 * content in the target is a conflict left untouched; a damaged source copies nothing; an absent
 * source is WV_ENOTFOUND naming the source repository. Between repositories of different crypto
 * (plain into symmetric, symmetric into another symmetric key, plain into public-key without the
 * private key): the copy is encoded again under the target's keys (no plain byte of the content
 * in it, it reads back under the target's keys only), a re-copy is recognised from the keyed
 * digest without the private key, and different content is a conflict left untouched. A bundle is
 * encoded again member by member (each at its new offset, read back under the target's keys); a
 * member that does not match the manifest copies nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "pipeline/crypt.h"
#include "repo/objcopy.h"

#define KEY "backup/20261202T000000Z/base.1"

typedef struct fixture {
    char dir[2][64];
    wv_repo_config rc[2];
    wv_repo *r[2];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    for (int i = 0; i < 2; i++) {
        snprintf(f->dir[i], sizeof(f->dir[i]), "/tmp/wv-test-objcopy-XXXXXX");
        if (!mkdtemp(f->dir[i]))
            return -1;
        f->rc[i].index = i + 1;
        snprintf(f->rc[i].name, sizeof(f->rc[i].name), "repo%d", i + 1);
        f->rc[i].type = WV_REPO_POSIX;
        f->rc[i].path = f->dir[i];
        wv_err err;
        if (wv_repo_open(&f->rc[i], &f->r[i], &err) != 0)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    for (int i = 0; i < 2; i++) {
        wv_repo_close(f->r[i]);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir[i]);
        if (system(cmd) != 0)
            return -1;
    }
    free(f);
    return 0;
}

static uint8_t *content(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed * 7) ^ (i >> 9));
    return p;
}

static void test_copy(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already = -1;
    uint64_t bytes = 0;
    size_t n = 300 * 1024;
    uint8_t *a = content(n, 1);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);

    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 0);
    wv_buf x = WV_BUF_INIT, y = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->r[0]->st, KEY, 1 << 24, &x, &err), 0);
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 24, &y, &err), 0);
    assert_int_equal(x.len, y.len);
    assert_int_equal(bytes, x.len);
    assert_memory_equal(x.data, y.data, x.len);

    /* again: identical, already there */
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 1);
    wv_buf_free(&x);
    wv_buf_free(&y);
    free(a);
}

static void test_conflict_untouched(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already;
    uint64_t bytes;
    size_t n = 4096;
    uint8_t *a = content(n, 1), *b = content(n, 2);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    assert_int_equal(wv_repo_put_object(f->r[1], KEY, KEY, 0, NULL, b, n, &already, NULL, &err), 0);
    wv_buf before = WV_BUF_INIT, after = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 20, &before, &err), 0);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err),
                     WV_ECONFLICT);
    assert_non_null(strstr(err.msg, "repo2"));
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 20, &after, &err), 0);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    wv_buf_free(&before);
    wv_buf_free(&after);
    free(a);
    free(b);
}

static void test_damaged_or_absent_source(void **state)
{
    fixture *f = *state;
    wv_err err;
    int already;
    uint64_t bytes;
    size_t n = 64 * 1024;
    uint8_t *a = content(n, 3);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    /* flip a byte in the middle of the stored object */
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir[0], KEY);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 1000, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseek(fp, 1000, SEEK_SET), 0);
    fputc(c ^ 0x55, fp);
    fclose(fp);
    assert_int_not_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_non_null(strstr(err.msg, "repo1"));
    wv_stat st;
    assert_int_equal(wv_storage_stat(f->r[1]->st, KEY, &st, &err), WV_ENOTFOUND);

    assert_int_equal(
        wv_repo_copy_object(f->r[0], f->r[1], KEY ".absent", 0, &bytes, &already, &err),
        WV_ENOTFOUND);
    assert_non_null(strstr(err.msg, "repo1"));
    free(a);
}

/* ---- between repositories of different crypto ------------------------------------------------ */

static void crypto_sym(wv_obj_crypto *c, uint64_t id)
{
    wv_err err;
    memset(c, 0, sizeof(*c));
    c->mode = WV_OBJ_KEYMODE_SYMMETRIC;
    c->key_id = id;
    assert_int_equal(wv_crypt_random(c->data_key, 32, &err), 0);
    assert_int_equal(wv_crypt_random(c->digest_key, 32, &err), 0);
}

/* public-key mode as a host with only the public key holds it; priv receives the private key */
static void crypto_pub(wv_obj_crypto *c, uint8_t priv[32])
{
    wv_err err;
    memset(c, 0, sizeof(*c));
    c->mode = WV_OBJ_KEYMODE_X25519;
    assert_int_equal(wv_crypt_random(priv, 32, &err), 0);
    assert_int_equal(wv_crypt_x25519_public(priv, c->public_key, &err), 0);
    c->key_id = 0x1122334455667788ULL;
    assert_int_equal(wv_crypt_random(c->digest_key, 32, &err), 0);
}

static uint8_t test_priv[32];
static int give_priv(void *arg, uint64_t key_id, uint8_t priv[32], wv_err *err)
{
    (void)arg;
    (void)key_id;
    (void)err;
    memcpy(priv, test_priv, 32);
    return 0;
}

/* Content with a marker string that must not appear in an encrypted copy. */
#define MARKER "walvault-objcopy-marker-7f3a9c"
static uint8_t *marked(size_t n, unsigned seed)
{
    uint8_t *p = content(n, seed);
    for (size_t off = 0; off + sizeof(MARKER) < n; off += 4096)
        memcpy(p + off, MARKER, sizeof(MARKER) - 1);
    return p;
}

static int holds(const wv_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, s, n) == 0)
            return 1;
    return 0;
}

/* Read key from st (its crypto) into out; 0 or the reader's error. */
static int read_back(wv_storage *st, const char *key, wv_buf *out, wv_obj_info *info, wv_err *err)
{
    wv_source *src = NULL;
    int rc = wv_storage_get_open(st, key, 0, -1, &src, err);
    if (rc)
        return rc;
    wv_filter *f = wv_filter_buf_new(out);
    wv_objread_opts o = {.key = key, .crypto = wv_repo_crypto(st)};
    rc = wv_object_read_opts(src, f, &o, info, err);
    wv_filter_chain_free(f);
    wv_source_close(src);
    return rc;
}

static void check_reencoded(fixture *f, const char *key, const uint8_t *a, size_t n)
{
    wv_err err;
    wv_buf raw = WV_BUF_INIT, back = WV_BUF_INIT;
    wv_obj_info info;
    assert_int_equal(wv_storage_get_all(f->r[1]->st, key, 1 << 24, &raw, &err), 0);
    assert_false(holds(&raw, MARKER));
    assert_int_equal(read_back(f->r[1]->st, key, &back, &info, &err), 0);
    assert_int_equal(info.version, WV_OBJ_VERSION_CRYPT);
    assert_int_equal(back.len, n);
    assert_memory_equal(back.data, a, n);
    wv_buf_free(&raw);
    wv_buf_free(&back);
}

static void test_plain_to_symmetric(void **state)
{
    fixture *f = *state;
    wv_obj_crypto ct;
    crypto_sym(&ct, 42);
    wv_storage_set_crypto(f->r[1]->st, &ct);
    wv_err err;
    int already = -1;
    uint64_t bytes = 0;
    size_t n = 200 * 1024;
    uint8_t *a = marked(n, 5);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 0);
    wv_stat st;
    assert_int_equal(wv_storage_stat(f->r[1]->st, KEY, &st, &err), 0);
    assert_int_equal(bytes, st.size);
    check_reencoded(f, KEY, a, n);

    /* again: recognised from the suffixes, nothing written */
    wv_copy_result res;
    assert_int_equal(wv_repo_copy_object_ext(f->r[0], f->r[1], KEY, NULL, &res, &err), 0);
    assert_int_equal(res.already, 1);
    assert_int_equal(res.reencoded, 1);
    assert_int_equal(res.bytes, 0);

    /* with the manifest's digest: the right one passes, another one is a conflict */
    uint8_t sha[32];
    memcpy(sha, res.src.sha256, 32);
    wv_copy_opts o = {.expect_sha256 = sha};
    assert_int_equal(wv_repo_copy_object_ext(f->r[0], f->r[1], KEY, &o, &res, &err), 0);
    assert_int_equal(res.already, 1);
    sha[0] ^= 1;
    assert_int_equal(wv_repo_copy_object_ext(f->r[0], f->r[1], KEY, &o, &res, &err), WV_ECONFLICT);

    /* a plain repository cannot read it */
    wv_storage_set_crypto(f->r[1]->st, NULL);
    wv_buf back = WV_BUF_INIT;
    wv_obj_info info;
    assert_int_not_equal(read_back(f->r[1]->st, KEY, &back, &info, &err), 0);
    wv_buf_free(&back);
    free(a);
}

static void test_symmetric_to_other_key(void **state)
{
    fixture *f = *state;
    wv_obj_crypto cf, ct;
    crypto_sym(&cf, 1);
    crypto_sym(&ct, 2);
    wv_storage_set_crypto(f->r[0]->st, &cf);
    wv_storage_set_crypto(f->r[1]->st, &ct);
    assert_false(wv_obj_crypto_same(&cf, &ct));
    assert_true(wv_obj_crypto_same(&cf, &cf));
    assert_false(wv_obj_crypto_same(&cf, NULL));
    assert_true(wv_obj_crypto_same(NULL, NULL));
    wv_err err;
    int already = -1;
    uint64_t bytes = 0;
    size_t n = 70 * 1024;
    uint8_t *a = marked(n, 6);
    wv_obj_opts wo = {
        .compress = WV_COMPRESS_LZ4, .level = 1, .kind = WV_OBJ_KIND_BACKUP_FILE, .crypto = &cf};
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, &wo, a, n, &already, NULL, &err), 0);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 0);
    check_reencoded(f, KEY, a, n);
    wv_obj_info tr;
    assert_int_equal(wv_repo_read_info(f->r[1]->st, KEY, &tr, &err), 0);
    assert_int_equal(tr.kind, WV_OBJ_KIND_BACKUP_FILE);
    assert_int_equal(tr.compression, WV_OBJ_COMPRESS_LZ4);
    /* the source's key does not open the copy */
    wv_storage_set_crypto(f->r[1]->st, &cf);
    wv_buf back = WV_BUF_INIT;
    assert_int_not_equal(read_back(f->r[1]->st, KEY, &back, &tr, &err), 0);
    wv_buf_free(&back);
    wv_storage_set_crypto(f->r[1]->st, &ct);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 1);
    free(a);
}

static void test_plain_to_public_key(void **state)
{
    fixture *f = *state;
    wv_obj_crypto ct;
    crypto_pub(&ct, test_priv);
    wv_storage_set_crypto(f->r[1]->st, &ct); /* no private key on this host */
    wv_err err;
    int already = -1;
    uint64_t bytes = 0;
    size_t n = 150 * 1024;
    uint8_t *a = marked(n, 7);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err), 0);
    assert_int_equal(already, 0);
    /* without the private key: the metadata stays sealed, the re-copy is still recognised */
    wv_obj_info b;
    assert_int_equal(wv_repo_content_info(f->r[1]->st, KEY, &b, &err), 0);
    assert_int_equal(b.sealed, 1);
    wv_copy_result res;
    assert_int_equal(wv_repo_copy_object_ext(f->r[0], f->r[1], KEY, NULL, &res, &err), 0);
    assert_int_equal(res.already, 1);
    assert_int_equal(res.bytes, 0);
    /* a restore host with the private key reads the content back */
    ct.private_key = give_priv;
    check_reencoded(f, KEY, a, n);
    free(a);
}

static void test_reencode_conflict_untouched(void **state)
{
    fixture *f = *state;
    wv_obj_crypto ct;
    crypto_sym(&ct, 9);
    wv_err err;
    int already;
    uint64_t bytes;
    size_t n = 8192;
    uint8_t *a = content(n, 1), *b = content(n, 2);
    assert_int_equal(wv_repo_put_object(f->r[0], KEY, KEY, 0, NULL, a, n, &already, NULL, &err), 0);
    wv_storage_set_crypto(f->r[1]->st, &ct);
    wv_obj_opts wo = {.compress = WV_COMPRESS_LZ4, .level = 1, .crypto = &ct};
    assert_int_equal(wv_repo_put_object(f->r[1], KEY, KEY, 0, &wo, b, n, &already, NULL, &err), 0);
    wv_buf before = WV_BUF_INIT, after = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 20, &before, &err), 0);
    assert_int_equal(wv_repo_copy_object(f->r[0], f->r[1], KEY, 0, &bytes, &already, &err),
                     WV_ECONFLICT);
    assert_non_null(strstr(err.msg, "repo2"));
    /* and when the target's check is skipped, the commit decides the same */
    wv_copy_opts o = {.skip_precheck = 1};
    wv_copy_result res;
    assert_int_equal(wv_repo_copy_object_ext(f->r[0], f->r[1], KEY, &o, &res, &err), WV_ECONFLICT);
    assert_int_equal(wv_storage_get_all(f->r[1]->st, KEY, 1 << 20, &after, &err), 0);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    wv_buf_free(&before);
    wv_buf_free(&after);
    free(a);
    free(b);
}

/* A bundle of n members (content(sizes[i], seed + i)) stored in r as key; b describes it. */
#define BKEY "backup/20261202T000000Z/bundle/1"
static void put_bundle(wv_repo *r, wv_bundle *b, wv_bundle_member *m, const size_t *sizes, int n,
                       unsigned seed)
{
    wv_err err;
    wv_sink *sink = NULL;
    memset(b, 0, sizeof(*b));
    snprintf(b->key, sizeof(b->key), "%s", BKEY);
    b->m = m;
    b->n = (size_t)n;
    assert_int_equal(wv_storage_put_open(r->st, BKEY, WV_PUT_NOREPLACE, &sink, &err), 0);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        uint8_t *a = marked(sizes[i], seed + (unsigned)i);
        wv_obj_opts o = {.compress = i % 2 ? WV_COMPRESS_NONE : WV_COMPRESS_LZ4,
                         .level = 1,
                         .kind = WV_OBJ_KIND_BACKUP_FILE,
                         .name = BKEY,
                         .crypto = wv_repo_crypto(r->st)};
        wv_objwriter *w = wv_objwriter_new(&sink, 1, &o);
        wv_obj_info info;
        assert_int_equal(wv_objwriter_write(w, a, sizes[i], &err), 0);
        assert_int_equal(wv_objwriter_finish(w, &info, &err), 0);
        wv_objwriter_free(w);
        memset(&m[i], 0, sizeof(m[i]));
        m[i].path = (char *)(i ? "pgdata/b" : "pgdata/a");
        m[i].offset = pos;
        m[i].stored_size = info.header_size + info.payload_size + WV_OBJ_TRAILER_SIZE;
        m[i].size = sizes[i];
        memcpy(m[i].sha256, info.sha256, 32);
        pos += m[i].stored_size;
        free(a);
    }
    b->size = pos;
    assert_int_equal(wv_sink_commit(sink, &err), 0);
}

static void test_bundle_reencoded(void **state)
{
    fixture *f = *state;
    wv_obj_crypto ct;
    crypto_sym(&ct, 77);
    wv_storage_set_crypto(f->r[1]->st, &ct);
    size_t sizes[2] = {30 * 1024, 5000};
    wv_bundle_member m[2];
    wv_bundle b;
    put_bundle(f->r[0], &b, m, sizes, 2, 11);
    uint64_t off[2] = {0}, stored[2] = {0}, bytes = 0;
    wv_err err;
    assert_int_equal(wv_repo_copy_bundle(f->r[0], f->r[1], &b, 0, off, stored, &bytes, &err), 0);
    wv_stat st;
    assert_int_equal(wv_storage_stat(f->r[1]->st, BKEY, &st, &err), 0);
    assert_int_equal(bytes, st.size);
    assert_int_equal(off[0], 0);
    assert_int_equal(off[1], stored[0]);
    assert_int_equal(stored[0] + stored[1], st.size);
    wv_buf raw = WV_BUF_INIT;
    assert_int_equal(wv_storage_get_all(f->r[1]->st, BKEY, 1 << 24, &raw, &err), 0);
    assert_false(holds(&raw, MARKER));
    wv_buf_free(&raw);
    /* each member reads back at its new place, under the target's keys, as the manifest says */
    for (int i = 0; i < 2; i++) {
        wv_source *src = NULL;
        wv_buf out = WV_BUF_INIT;
        wv_obj_info info;
        assert_int_equal(
            wv_storage_get_open(f->r[1]->st, BKEY, (int64_t)off[i], (int64_t)stored[i], &src, &err),
            0);
        wv_filter *fl = wv_filter_buf_new(&out);
        wv_objread_opts o = {.key = BKEY, .crypto = &ct};
        assert_int_equal(wv_object_read_opts(src, fl, &o, &info, &err), 0);
        wv_filter_chain_free(fl);
        wv_source_close(src);
        assert_int_equal(out.len, sizes[i]);
        assert_memory_equal(info.sha256, m[i].sha256, 32);
        assert_int_equal(info.compression, i % 2 ? WV_OBJ_COMPRESS_NONE : WV_OBJ_COMPRESS_LZ4);
        wv_buf_free(&out);
    }
    /* a second copy: the target has it (WV_EEXIST), untouched */
    assert_int_equal(wv_repo_copy_bundle(f->r[0], f->r[1], &b, 0, off, stored, &bytes, &err),
                     WV_EEXIST);
}

static void test_bundle_damaged_member_copies_nothing(void **state)
{
    fixture *f = *state;
    wv_obj_crypto ct;
    crypto_sym(&ct, 78);
    wv_storage_set_crypto(f->r[1]->st, &ct);
    size_t sizes[2] = {4096, 9000};
    wv_bundle_member m[2];
    wv_bundle b;
    put_bundle(f->r[0], &b, m, sizes, 2, 21);
    uint64_t off[2], stored[2], bytes;
    wv_err err;
    /* the manifest's digest of the second file is another one */
    m[1].sha256[0] ^= 1;
    assert_int_equal(wv_repo_copy_bundle(f->r[0], f->r[1], &b, 0, off, stored, &bytes, &err),
                     WV_ECORRUPT);
    assert_non_null(strstr(err.msg, "repo1"));
    assert_non_null(strstr(err.msg, "pgdata/b"));
    wv_stat st;
    assert_int_equal(wv_storage_stat(f->r[1]->st, BKEY, &st, &err), WV_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_or_absent_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_to_symmetric, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symmetric_to_other_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_to_public_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reencode_conflict_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_reencoded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_damaged_member_copies_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
