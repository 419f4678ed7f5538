/*
 * keys.c - the key record of an encrypted repository (keys.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/bytes.h"
#include "pipeline/crypt.h"
#include "repo/keys.h"

#define WRAP_LEN (32 + WV_CRYPT_ONCE_OVERHEAD)

/* --- user keys ------------------------------------------------------------------------------- */

uint64_t wv_keys_x25519_id(const uint8_t pub[32])
{
    static const char label[] = "walvault x25519 key id v1";
    uint8_t in[sizeof(label) - 1 + 32], md[32];
    unsigned int n = 0;
    memcpy(in, label, sizeof(label) - 1);
    memcpy(in + sizeof(label) - 1, pub, 32);
    EVP_Digest(in, sizeof(in), md, &n, EVP_sha256(), NULL);
    return wv_get_be64(md);
}

int wv_user_keys_load(const char *key_file, const char *public_file, const char *private_file,
                      wv_user_keys **out, wv_err *err)
{
    int rc = 0;
    *out = NULL;
    if (!key_file && !public_file && !private_file)
        return 0;
    wv_user_keys *uk = wv_xcalloc(1, sizeof(*uk));
    if (key_file) {
        uk->mode = WV_OBJ_KEYMODE_SYMMETRIC;
        rc = wv_keyfile_read_symmetric(key_file, &uk->sym_kind, &uk->sym, err);
    } else {
        uk->mode = WV_OBJ_KEYMODE_X25519;
        if (public_file) {
            rc = wv_keyfile_read_public(public_file, uk->pub, err);
            uk->have_pub = rc == 0;
        }
        if (rc == 0 && private_file) {
            rc = wv_keyfile_read_private(private_file, &uk->privs, &uk->npriv, err);
            if (rc == 0) {
                uk->priv_ids = wv_xcalloc((size_t)uk->npriv, sizeof(*uk->priv_ids));
                for (int i = 0; i < uk->npriv && rc == 0; i++) {
                    uint8_t pub[32];
                    rc = wv_crypt_x25519_public(uk->privs->data + 32 * i, pub, err);
                    uk->priv_ids[i] = wv_keys_x25519_id(pub);
                }
            }
        }
    }
    if (rc < 0) {
        wv_user_keys_free(uk);
        return rc;
    }
    *out = uk;
    return 0;
}

void wv_user_keys_free(wv_user_keys *uk)
{
    if (!uk)
        return;
    wv_secret_free(uk->sym);
    wv_secret_free(uk->privs);
    free(uk->priv_ids);
    OPENSSL_cleanse(uk, sizeof(*uk));
    free(uk);
}

/* The public key of private key i of the ring. */
static int ring_public(const wv_user_keys *uk, int i, uint8_t pub[32], wv_err *err)
{
    return wv_crypt_x25519_public(uk->privs->data + 32 * i, pub, err);
}

/* --- record text ----------------------------------------------------------------------------- */

/* The value of key in text (lines key=value), copied into out; 0, or -1 if absent or too long. */
static int field(const char *text, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = ll - kl - 1;
            if (vl >= cap)
                return -1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        p = eol ? eol + 1 : NULL;
    }
    return -1;
}

static int bad_record(wv_err *err, const char *repo, const char *key, const char *what)
{
    wv_err_set(err, WV_ECORRUPT, "%s: key record \"%s\" is invalid: %s", repo, key, what);
    return wv_err_hint(err, "key records are written by walvault and never edited: restore it "
                            "from a copy of this repository");
}

static int hex_field(const char *text, const char *key, uint8_t *out, size_t len)
{
    char v[512];
    if (field(text, key, v, sizeof(v)) != 0 || strlen(v) != 2 * len)
        return -1;
    return wv_hex_decode(v, out, len) == 0 ? 0 : -1;
}

static int u64_field(const char *text, const char *key, uint64_t *out)
{
    char v[64], *end;
    if (field(text, key, v, sizeof(v)) != 0 || !v[0])
        return -1;
    *out = strtoull(v, &end, 16);
    return *end ? -1 : 0;
}

static void put_hex(wv_buf *b, const char *key, const uint8_t *p, size_t n)
{
    char h[1024];
    wv_hex_encode(p, n, h);
    wv_buf_printf(b, "%s=%s\n", key, h);
}

/* --- the key-encryption key and wraps -------------------------------------------------------- */

static const char wrap_label[] = "walvault key wrap v1";

static int sym_kek(const wv_user_keys *uk, const uint8_t salt[16], int scrypt, uint64_t n,
                   uint32_t r, uint32_t p, uint8_t kek[32], wv_err *err)
{
    uint8_t ikm[32];
    int rc = 0;
    if (scrypt)
        rc = wv_keyfile_scrypt(uk->sym->data, uk->sym->len, salt, 16, n, r, p, ikm, err);
    else
        memcpy(ikm, uk->sym->data, 32);
    if (rc == 0)
        rc = wv_crypt_hkdf(ikm, 32, salt, 16, (const uint8_t *)wrap_label, sizeof(wrap_label) - 1,
                           kek, 32, err);
    OPENSSL_cleanse(ikm, sizeof(ikm));
    return rc;
}

static int pub_kek(const uint8_t pub[32], uint8_t kek[32], wv_err *err)
{
    static const char label[] = "walvault digest wrap v1";
    return wv_crypt_hkdf(pub, 32, NULL, 0, (const uint8_t *)label, sizeof(label) - 1, kek, 32, err);
}

/* The associated data of a wrap: what it is and for which key id. */
static void wrap_aad(char out[64], const char *what, uint64_t id)
{
    snprintf(out, 64, "walvault %s %016" PRIx64, what, id);
}

/* --- records --------------------------------------------------------------------------------- */

typedef struct record {
    uint32_t generation;
    uint8_t mode;
    uint64_t key_id; /* symmetric: the data key's; public-key mode: the current public key's */
    /* symmetric */
    int scrypt;
    uint64_t n;
    uint32_t r, p;
    uint8_t salt[16];
    uint8_t wrapped[WRAP_LEN];
    /* public-key mode */
    int nids;
    uint64_t ids[WV_KEYS_MAX_PUBLIC];
    uint8_t digest_wraps[WV_KEYS_MAX_PUBLIC][WRAP_LEN];
} record;

static void record_key(uint32_t gen, char out[32])
{
    snprintf(out, 32, WV_KEYS_PREFIX "%08" PRIx32, gen);
}

static void record_text(const record *rec, wv_buf *b)
{
    wv_buf_printf(b,
                  "# walvault key record: do not edit\nformat=%d\ngeneration=%" PRIx32
                  "\nmode=%s\nkey_id=%016" PRIx64 "\n",
                  WV_KEYS_FORMAT, rec->generation,
                  rec->mode == WV_OBJ_KEYMODE_SYMMETRIC ? "symmetric" : "x25519", rec->key_id);
    if (rec->mode == WV_OBJ_KEYMODE_SYMMETRIC) {
        wv_buf_printf(b, "kdf=%s\n", rec->scrypt ? "scrypt" : "hkdf");
        if (rec->scrypt)
            wv_buf_printf(b, "scrypt_n=%" PRIx64 "\nscrypt_r=%" PRIx32 "\nscrypt_p=%" PRIx32 "\n",
                          rec->n, rec->r, rec->p);
        put_hex(b, "salt", rec->salt, 16);
        put_hex(b, "wrapped_data_key", rec->wrapped, WRAP_LEN);
        return;
    }
    wv_buf_printf(b, "public_keys=%d\n", rec->nids);
    for (int i = 0; i < rec->nids; i++) {
        char k[64];
        snprintf(k, sizeof(k), "public_key_%d", i);
        wv_buf_printf(b, "%s=%016" PRIx64 "\n", k, rec->ids[i]);
        snprintf(k, sizeof(k), "wrapped_digest_key_%d", i);
        put_hex(b, k, rec->digest_wraps[i], WRAP_LEN);
    }
}

static int record_parse(const char *text, const char *repo, const char *key, record *rec,
                        wv_err *err)
{
    char v[64];
    uint64_t u;
    memset(rec, 0, sizeof(*rec));
    if (field(text, "format", v, sizeof(v)) != 0)
        return bad_record(err, repo, key, "no format");
    if (atoi(v) > WV_KEYS_FORMAT) {
        wv_err_set(err, WV_EFORMAT,
                   "%s: key record \"%s\" has format %s, written by a newer walvault", repo, key,
                   v);
        return wv_err_hint(err, "upgrade walvault to read this repository");
    }
    if (u64_field(text, "generation", &u) != 0 || u == 0 || u > UINT32_MAX)
        return bad_record(err, repo, key, "bad generation");
    rec->generation = (uint32_t)u;
    if (u64_field(text, "key_id", &rec->key_id) != 0)
        return bad_record(err, repo, key, "bad key_id");
    if (field(text, "mode", v, sizeof(v)) != 0)
        return bad_record(err, repo, key, "no mode");
    if (strcmp(v, "symmetric") == 0) {
        rec->mode = WV_OBJ_KEYMODE_SYMMETRIC;
        if (field(text, "kdf", v, sizeof(v)) != 0 ||
            (strcmp(v, "scrypt") != 0 && strcmp(v, "hkdf") != 0))
            return bad_record(err, repo, key, "bad kdf");
        rec->scrypt = strcmp(v, "scrypt") == 0;
        if (rec->scrypt) {
            uint64_t r, p;
            /* the record is the repository's word: bounded so that it cannot make this host
             * allocate more than WV_SCRYPT_MAXMEM or compute for minutes (the defaults are 8 and
             * 16 times below the bounds) */
            if (u64_field(text, "scrypt_n", &rec->n) != 0 || u64_field(text, "scrypt_r", &r) != 0 ||
                u64_field(text, "scrypt_p", &p) != 0 || rec->n < 2 || (rec->n & (rec->n - 1)) ||
                rec->n > (1u << 24) || r == 0 || r > 64 || p == 0 || p > 16 ||
                rec->n * r * 128 > WV_SCRYPT_MAXMEM || rec->n * r * p > (UINT64_C(1) << 24))
                return bad_record(err, repo, key, "bad scrypt parameters");
            rec->r = (uint32_t)r;
            rec->p = (uint32_t)p;
        }
        if (hex_field(text, "salt", rec->salt, 16) != 0 ||
            hex_field(text, "wrapped_data_key", rec->wrapped, WRAP_LEN) != 0)
            return bad_record(err, repo, key, "bad salt or wrapped_data_key");
        return 0;
    }
    if (strcmp(v, "x25519") != 0)
        return bad_record(err, repo, key, "unknown mode");
    rec->mode = WV_OBJ_KEYMODE_X25519;
    if (field(text, "public_keys", v, sizeof(v)) != 0 || atoi(v) < 1 ||
        atoi(v) > WV_KEYS_MAX_PUBLIC)
        return bad_record(err, repo, key, "bad public_keys");
    rec->nids = atoi(v);
    for (int i = 0; i < rec->nids; i++) {
        char k[64];
        snprintf(k, sizeof(k), "public_key_%d", i);
        if (u64_field(text, k, &rec->ids[i]) != 0)
            return bad_record(err, repo, key, "bad public key id");
        snprintf(k, sizeof(k), "wrapped_digest_key_%d", i);
        if (hex_field(text, k, rec->digest_wraps[i], WRAP_LEN) != 0)
            return bad_record(err, repo, key, "bad wrapped digest key");
    }
    return 0;
}

/* --- open ------------------------------------------------------------------------------------ */

static int wrong_key(wv_err *err, const char *repo, const char *what)
{
    wv_err_set(err, WV_EKEY, "%s: wrong encryption key for this repository", repo);
    return wv_err_hint(err, "%s", what);
}

static int find_ring(const wv_user_keys *uk, uint64_t id)
{
    for (int i = 0; uk && i < uk->npriv; i++)
        if (uk->priv_ids[i] == id)
            return i;
    return -1;
}

static int ring_key(void *arg, uint64_t key_id, uint8_t priv[32], wv_err *err)
{
    const wv_user_keys *uk = arg;
    int i = find_ring(uk, key_id);
    if (i < 0) {
        wv_err_set(err, WV_EPRIVKEY,
                   "the object is encrypted for key id %016" PRIx64
                   ", which encrypt_private_key_file does not hold",
                   key_id);
        return wv_err_hint(err, "add that private key (kept since a rekey) to the key ring file");
    }
    memcpy(priv, uk->privs->data + 32 * i, 32);
    return 0;
}

/* Open rec with uk into k (crypto filled). */
static int open_record(const record *rec, const char *repo, const wv_user_keys *uk, wv_repo_keys *k,
                       wv_err *err)
{
    static const char dlabel[] = "walvault digest key v1";
    wv_obj_crypto *c = k->crypto;
    char aad[64];
    uint8_t kek[32];
    int rc;
    if (rec->mode != uk->mode) {
        wv_err_set(
            err, WV_EKEY, "%s: the repository is encrypted %s, and the configuration sets %s", repo,
            rec->mode == WV_OBJ_KEYMODE_SYMMETRIC ? "with a symmetric key" : "for a public key",
            uk->mode == WV_OBJ_KEYMODE_SYMMETRIC ? "encrypt_key_file" : "public-key encryption");
        return wv_err_hint(err, rec->mode == WV_OBJ_KEYMODE_SYMMETRIC
                                    ? "set encrypt_key_file, not encrypt_public_key_file or "
                                      "encrypt_private_key_file"
                                    : "set encrypt_public_key_file and encrypt_private_key_file, "
                                      "not encrypt_key_file");
    }
    c->mode = rec->mode;
    c->key_id = rec->key_id;
    if (rec->mode == WV_OBJ_KEYMODE_SYMMETRIC) {
        if (rec->scrypt != (uk->sym_kind == WV_KEYFILE_PASSPHRASE))
            return wrong_key(err, repo,
                             rec->scrypt ? "the repository was encrypted with a passphrase, and "
                                           "encrypt_key_file holds key material"
                                         : "the repository was encrypted with key material, and "
                                           "encrypt_key_file holds a passphrase");
        if ((rc = sym_kek(uk, rec->salt, rec->scrypt, rec->n, rec->r, rec->p, kek, err)) < 0)
            return rc;
        wrap_aad(aad, "data key", rec->key_id);
        rc = wv_crypt_open_once(kek, (const uint8_t *)aad, strlen(aad), rec->wrapped, WRAP_LEN,
                                c->data_key, err);
        OPENSSL_cleanse(kek, sizeof(kek));
        if (rc < 0)
            return wrong_key(err, repo,
                             "encrypt_key_file must hold the key the repository was created or "
                             "last rekeyed with");
        k->can_write = 1;
        return wv_crypt_hkdf(c->data_key, 32, NULL, 0, (const uint8_t *)dlabel, sizeof(dlabel) - 1,
                             c->digest_key, 32, err);
    }
    /* public-key mode: the public key from the configuration, or from the ring */
    uint8_t pub[32];
    int have = 0;
    if (uk->have_pub) {
        memcpy(pub, uk->pub, 32);
        have = 1;
    } else {
        int i = find_ring(uk, rec->key_id);
        if (i < 0) {
            for (int j = 0; j < rec->nids && i < 0; j++)
                i = find_ring(uk, rec->ids[j]);
        }
        if (i >= 0 && (rc = ring_public(uk, i, pub, err)) < 0)
            return rc;
        have = i >= 0;
    }
    if (!have)
        return wrong_key(err, repo,
                         "none of the keys in encrypt_private_key_file is one of this "
                         "repository's");
    uint64_t id = wv_keys_x25519_id(pub);
    int slot = -1;
    for (int j = 0; j < rec->nids; j++)
        if (rec->ids[j] == id)
            slot = j;
    if (slot < 0)
        return wrong_key(err, repo,
                         "encrypt_public_key_file must be the public key the repository was "
                         "created or last rekeyed for");
    if (uk->have_pub && id != rec->key_id) {
        wv_err_set(err, WV_EKEY,
                   "%s: encrypt_public_key_file is an old key of this repository (it was rekeyed "
                   "since)",
                   repo);
        return wv_err_hint(err, "install the repository's current public key on this host");
    }
    if ((rc = pub_kek(pub, kek, err)) < 0)
        return rc;
    wrap_aad(aad, "digest key", id);
    rc = wv_crypt_open_once(kek, (const uint8_t *)aad, strlen(aad), rec->digest_wraps[slot],
                            WRAP_LEN, c->digest_key, err);
    OPENSSL_cleanse(kek, sizeof(kek));
    if (rc < 0)
        return wrong_key(err, repo, "the key record does not open with this public key");
    if (id == rec->key_id) {
        memcpy(c->public_key, pub, 32);
        k->can_write = 1;
    }
    if (uk->npriv > 0) {
        c->private_key = ring_key;
        c->private_key_arg = (void *)uk;
    }
    return 0;
}

typedef struct gens {
    uint32_t g[256];
    int n;
} gens;

static int list_cb(void *arg, const char *key, const wv_stat *st)
{
    gens *gs = arg;
    const char *p = key + strlen(WV_KEYS_PREFIX);
    char *end;
    (void)st;
    if (strncmp(key, WV_KEYS_PREFIX, strlen(WV_KEYS_PREFIX)) != 0 || strlen(p) != 8)
        return 0;
    unsigned long v = strtoul(p, &end, 16);
    if (*end || v == 0 || gs->n >= 256)
        return 0;
    gs->g[gs->n++] = (uint32_t)v;
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int list_generations(wv_storage *st, gens *gs, wv_err *err)
{
    gs->n = 0;
    int rc = wv_storage_list(st, WV_KEYS_PREFIX, list_cb, gs, err);
    if (rc == WV_ENOTFOUND) {
        rc = 0;
        wv_err_clear(err);
    }
    qsort(gs->g, (size_t)gs->n, sizeof(gs->g[0]), cmp_desc);
    return rc;
}

static wv_repo_keys *keys_new(void)
{
    wv_repo_keys *k = wv_xcalloc(1, sizeof(*k));
    k->mem = wv_secret_new(sizeof(wv_obj_crypto));
    k->crypto = (wv_obj_crypto *)(void *)k->mem->data;
    return k;
}

void wv_repo_keys_free(wv_repo_keys *k)
{
    if (!k)
        return;
    wv_secret_free(k->mem);
    free(k);
}

int wv_repo_keys_open_text(const char *text, const char *repo, const char *key,
                           const wv_user_keys *uk, wv_repo_keys **out, wv_err *err)
{
    record rec;
    *out = NULL;
    int rc = record_parse(text, repo, key, &rec, err);
    wv_repo_keys *k = keys_new();
    if (rc == 0)
        rc = open_record(&rec, repo, uk, k, err);
    if (rc == 0) {
        k->generation = rec.generation;
        k->uk = uk;
        *out = k;
    } else {
        wv_repo_keys_free(k);
    }
    OPENSSL_cleanse(&rec, sizeof(rec));
    return rc;
}

static int read_record(wv_storage *st, const char *repo, uint32_t gen, record *rec, wv_err *err)
{
    char key[32];
    wv_buf b = WV_BUF_INIT;
    record_key(gen, key);
    int rc = wv_storage_get_all(st, key, WV_KEYS_RECORD_MAX, &b, err);
    if (rc == 0)
        rc = record_parse(wv_buf_cstr(&b), repo, key, rec, err);
    if (rc == 0 && rec->generation != gen)
        rc = bad_record(err, repo, key, "its generation is not its name's");
    wv_buf_free(&b);
    return rc;
}

static int write_record(wv_storage *st, const record *rec, wv_err *err)
{
    char key[32];
    wv_buf b = WV_BUF_INIT;
    record_key(rec->generation, key);
    record_text(rec, &b);
    int rc = wv_storage_put_all(st, key, WV_PUT_NOREPLACE, b.data, b.len, err);
    wv_buf_free(&b);
    return rc;
}

/* A new record for uk: symmetric with this data key and id (fresh salt), or public-key mode with
 * this digest key for uk's public key, after the ids and wraps of `prev` (NULL: none). */
static int make_record(const char *repo, const wv_user_keys *uk, uint32_t gen,
                       const uint8_t data_key[32], uint64_t data_key_id,
                       const uint8_t digest_key[32], const record *prev, record *rec, wv_err *err)
{
    char aad[64];
    uint8_t kek[32];
    int rc;
    if (prev)
        *rec = *prev;
    else
        memset(rec, 0, sizeof(*rec));
    rec->generation = gen;
    rec->mode = uk->mode;
    if (uk->mode == WV_OBJ_KEYMODE_SYMMETRIC) {
        rec->key_id = data_key_id;
        rec->scrypt = uk->sym_kind == WV_KEYFILE_PASSPHRASE;
        rec->n = rec->scrypt ? WV_SCRYPT_N : 0;
        rec->r = rec->scrypt ? WV_SCRYPT_R : 0;
        rec->p = rec->scrypt ? WV_SCRYPT_P : 0;
        if ((rc = wv_crypt_random(rec->salt, 16, err)) < 0 ||
            (rc = sym_kek(uk, rec->salt, rec->scrypt, rec->n, rec->r, rec->p, kek, err)) < 0)
            return rc;
        wrap_aad(aad, "data key", rec->key_id);
        rc = wv_crypt_seal_once(kek, NULL, (const uint8_t *)aad, strlen(aad), data_key, 32,
                                rec->wrapped, err);
        OPENSSL_cleanse(kek, sizeof(kek));
        return rc;
    }
    if (!uk->have_pub)
        return wv_err_set(err, WV_EUSAGE,
                          "%s: a new public key is needed (encrypt_public_key_file)", repo);
    uint64_t id = wv_keys_x25519_id(uk->pub);
    for (int j = 0; j < rec->nids; j++)
        if (rec->ids[j] == id) {
            wv_err_set(err, WV_EREFUSED,
                       "%s: the new public key (key id %016" PRIx64
                       ") is already one of this repository's",
                       repo, id);
            return wv_err_hint(err, "rotate to a key pair never used here: openssl genpkey "
                                    "-algorithm X25519 -out NEW.pem; openssl pkey -in NEW.pem "
                                    "-pubout -out NEW.pub");
        }
    if (rec->nids >= WV_KEYS_MAX_PUBLIC) {
        wv_err_set(err, WV_EREFUSED, "%s: the repository already has %d public keys", repo,
                   WV_KEYS_MAX_PUBLIC);
        return wv_err_hint(err, "copy it into a new repository (basebackup sync) to start a new "
                                "key record");
    }
    rec->key_id = id;
    if ((rc = pub_kek(uk->pub, kek, err)) < 0)
        return rc;
    wrap_aad(aad, "digest key", id);
    rc = wv_crypt_seal_once(kek, NULL, (const uint8_t *)aad, strlen(aad), digest_key, 32,
                            rec->digest_wraps[rec->nids], err);
    OPENSSL_cleanse(kek, sizeof(kek));
    rec->ids[rec->nids++] = id;
    return rc;
}

static int create(wv_storage *st, const char *repo, const wv_user_keys *uk, wv_err *err)
{
    uint8_t secret[32];
    uint8_t idb[8];
    record rec;
    int rc = wv_crypt_random(secret, 32, err);
    if (rc == 0)
        rc = wv_crypt_random(idb, 8, err);
    if (rc == 0 && uk->mode == WV_OBJ_KEYMODE_X25519 && !uk->have_pub) {
        wv_err_set(err, WV_ECONFIG,
                   "%s: a new encrypted repository needs the public key (encrypt_public_key_file)",
                   repo);
        rc = wv_err_hint(err, "make it with: openssl pkey -in PRIVATE.pem -pubout -out FILE");
    }
    if (rc == 0)
        rc = make_record(repo, uk, 1, secret, wv_get_be64(idb) | 1, secret, NULL, &rec, err);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc == 0)
        rc = write_record(st, &rec, err);
    return rc;
}

int wv_repo_keys_open(wv_storage *st, const char *repo, const wv_user_keys *uk, int used,
                      wv_repo_keys **out, wv_err *err)
{
    gens gs;
    *out = NULL;
    int rc = list_generations(st, &gs, err);
    if (rc < 0)
        return rc;
    if (gs.n == 0) {
        if (!uk)
            return 0;
        if (used < 0) {
            wv_stat sb;
            wv_err e = {0};
            used = wv_storage_stat(st, WV_REPO_INFO_KEY, &sb, &e);
            if (used < 0 && used != WV_ENOTFOUND) {
                if (err)
                    *err = e;
                return used;
            }
            used = used == 0;
        }
        if (used) {
            wv_err_set(err, WV_EKEY,
                       "%s: the repository is not encrypted (it was first used without "
                       "encryption), and the configuration sets an encryption key",
                       repo);
            return wv_err_hint(err, "remove the encrypt_* keys from [global], or copy this "
                                    "repository into a new encrypted one with basebackup sync");
        }
        rc = create(st, repo, uk, err);
        if (rc == WV_EEXIST)
            rc = 0; /* a concurrent first use won: open its record */
        if (rc == 0)
            rc = list_generations(st, &gs, err);
        if (rc < 0)
            return rc;
    }
    if (!uk) {
        wv_err_set(err, WV_EKEY,
                   "%s: the repository is encrypted, and the configuration has no encryption key",
                   repo);
        return wv_err_hint(err, "set encrypt_key_file, or encrypt_public_key_file and "
                                "encrypt_private_key_file, in [global] (docs/encryption.md)");
    }
    /* the newest generation first; an older one opens only after a rekey stopped midway */
    wv_repo_keys *k = keys_new();
    wv_err first = {0};
    for (int i = 0; i < gs.n; i++) {
        record rec;
        wv_err e = {0};
        rc = read_record(st, repo, gs.g[i], &rec, &e);
        if (rc == 0)
            rc = open_record(&rec, repo, uk, k, &e);
        OPENSSL_cleanse(&rec, sizeof(rec));
        if (rc == 0) {
            k->generation = gs.g[i];
            k->uk = uk;
            *out = k;
            return 0;
        }
        if (i == 0)
            first = e;
        memset(k->crypto, 0, sizeof(*k->crypto));
        k->can_write = 0;
    }
    wv_repo_keys_free(k);
    if (err)
        *err = first;
    return first.code;
}

/* Remove the generations of gs older than gen, oldest first (a stop leaves the newest ones), then
 * flush. stop_after 3 (tests) returns right after the first removal. */
static int remove_older(wv_storage *st, const gens *gs, uint32_t gen, int stop_after, int *removed,
                        wv_err *err)
{
    int rc = 0, n = 0;
    for (int i = gs->n - 1; i >= 0 && rc == 0; i--) {
        char key[32];
        if (gs->g[i] >= gen)
            continue;
        record_key(gs->g[i], key);
        rc = wv_storage_remove(st, key, err);
        if (rc == WV_ENOTFOUND)
            rc = 0;
        if (rc == 0)
            n++;
        if (rc == 0 && stop_after == 3) {
            if (removed)
                *removed = n;
            return 0;
        }
    }
    if (rc == 0)
        rc = wv_storage_flush(st, err);
    if (removed)
        *removed = n;
    return rc;
}

int wv_repo_keys_rekey(wv_storage *st, const char *repo, const wv_repo_keys *k,
                       const wv_user_keys *next, int stop_after, wv_err *err)
{
    gens gs;
    record cur, rec;
    int rc = list_generations(st, &gs, err);
    if (rc < 0)
        return rc;
    if (gs.n == 0)
        return wv_err_set(err, WV_EREFUSED, "%s: the repository is not encrypted", repo);
    if (next->mode != k->crypto->mode)
        return wv_err_set(err, WV_EUSAGE, "%s: rekey cannot change the repository's mode", repo);
    if (!k->can_write) {
        wv_err_set(err, WV_EKEY, "%s: rekey needs the repository's current key", repo);
        return wv_err_hint(err, "set encrypt_public_key_file to the current public key");
    }
    if ((rc = read_record(st, repo, k->generation, &cur, err)) < 0)
        return rc;
    uint32_t gen = gs.g[0] + 1;
    rc = make_record(repo, next, gen, k->crypto->data_key, k->crypto->key_id, k->crypto->digest_key,
                     next->mode == WV_OBJ_KEYMODE_X25519 ? &cur : NULL, &rec, err);
    if (rc == 0)
        rc = write_record(st, &rec, err);
    if (rc == 0)
        rc = wv_storage_flush(st, err);
    OPENSSL_cleanse(&rec, sizeof(rec));
    OPENSSL_cleanse(&cur, sizeof(cur));
    if (rc < 0 || stop_after == 1)
        return rc;
    /* verify: the new generation, read back, opens with the new key to the same keys */
    wv_repo_keys *nk = keys_new();
    rc = read_record(st, repo, gen, &rec, err);
    if (rc == 0)
        rc = open_record(&rec, repo, next, nk, err);
    OPENSSL_cleanse(&rec, sizeof(rec));
    if (rc == 0 && (CRYPTO_memcmp(nk->crypto->digest_key, k->crypto->digest_key, 32) != 0 ||
                    (next->mode == WV_OBJ_KEYMODE_SYMMETRIC &&
                     CRYPTO_memcmp(nk->crypto->data_key, k->crypto->data_key, 32) != 0)))
        rc = wv_err_set(err, WV_EINTERNAL, "%s: the new key record does not verify", repo);
    wv_repo_keys_free(nk);
    if (rc < 0 || stop_after == 2)
        return rc;
    /* only now the old generations go */
    return remove_older(st, &gs, gen, stop_after, NULL, err);
}

int wv_repo_keys_finish(wv_storage *st, const char *repo, const wv_repo_keys *k, int *removed,
                        wv_err *err)
{
    gens gs;
    if (removed)
        *removed = 0;
    int rc = list_generations(st, &gs, err);
    if (rc < 0)
        return rc;
    if (gs.n == 0)
        return wv_err_set(err, WV_EREFUSED, "%s: the repository is not encrypted", repo);
    if (gs.g[0] != k->generation) {
        wv_err_set(err, WV_EREFUSED,
                   "%s: key generation %08" PRIx32
                   " is newer than the one this key opens (%08" PRIx32 ")",
                   repo, gs.g[0], k->generation);
        return wv_err_hint(err, "another rekey may be under way or was stopped: run basebackup "
                                "rekey again with the key that opens the newest generation");
    }
    return remove_older(st, &gs, k->generation, 0, removed, err);
}
