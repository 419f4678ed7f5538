/*
 * fuzz_keyrecord.c - an encrypted repository's key record (common/repo/keys.c), read from the
 * repository and so untrusted, parsed and opened with fixed user keys: symmetric key material or
 * an X25519 private key ring (a passphrase runs scrypt with the record's parameters: their bounds
 * are arithmetic, checked by test_keys.c, and a second per input is no fuzzing).
 *
 * Invariants: a record either opens (then the crypto context is of the user's mode, can_write is
 * set in symmetric mode, and the generation is not 0) or fails with a one-line message and a
 * key, format or corrupt-record class; nothing of the keys appears in a message; nothing leaks.
 */
#include "core/bytes.h"
#include "core/keyfile.h"
#include "fuzz.h"
#include "pipeline/crypt.h"
#include "repo/keys.h"

static void user_keys(wv_user_keys *uk, uint8_t which, wv_secret *sym, wv_secret *ring,
                      uint64_t *ids)
{
    memset(uk, 0, sizeof(*uk));
    if (which % 2 == 0) {
        uk->mode = WV_OBJ_KEYMODE_SYMMETRIC;
        uk->sym_kind = WV_KEYFILE_MATERIAL;
        uk->sym = sym;
        return;
    }
    uk->mode = WV_OBJ_KEYMODE_X25519;
    uk->privs = ring;
    uk->npriv = 1;
    uk->priv_ids = ids;
    if (which & 0x80) {
        wv_err e;
        uk->have_pub = wv_crypt_x25519_public(ring->data, uk->pub, &e) == 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t which = fz_u8(&in);
    size_t n = 0;
    const uint8_t *p = fz_bytes(&in, in.n, &n);
    char *text = fz_strndup(p, n);

    wv_secret *sym = wv_secret_new(32), *ring = wv_secret_new(32);
    for (int i = 0; i < 32; i++) {
        sym->data[i] = (uint8_t)(i + 1);
        ring->data[i] = (uint8_t)(0x40 + i);
    }
    uint64_t ids[1];
    uint8_t pub[32];
    wv_err e0;
    FZ_CHECK(wv_crypt_x25519_public(ring->data, pub, &e0) == 0, "x25519 public: %s", e0.msg);
    ids[0] = wv_keys_x25519_id(pub);
    wv_user_keys uk;
    user_keys(&uk, which, sym, ring, ids);

    wv_repo_keys *k = NULL;
    wv_err err;
    wv_err_clear(&err);
    int rc = wv_repo_keys_open_text(text, "repo1", "keys/00000001", &uk, &k, &err);
    if (rc == 0) {
        FZ_CHECK(k && k->crypto && k->crypto->mode == uk.mode, "opened in another mode");
        FZ_CHECK(k->generation != 0, "generation 0 opened");
        FZ_CHECK(uk.mode != WV_OBJ_KEYMODE_SYMMETRIC || k->can_write, "symmetric, not writable");
        wv_repo_keys_free(k);
    } else {
        FZ_CHECK(!k, "a failed open returned keys");
        FZ_CHECK(rc == WV_EKEY || rc == WV_EFORMAT || rc == WV_ECORRUPT || rc == WV_EREFUSED,
                 "class %d: %s", rc, err.msg);
        fz_check_err(&err, rc);
        char hex[65];
        wv_hex_encode(sym->data, 32, hex);
        FZ_CHECK(!strstr(err.msg, hex) && !strstr(err.hint, hex), "key material in a message");
    }
    wv_secret_free(sym);
    wv_secret_free(ring);
    free(text);
    return 0;
}
