/*
 * keyfile.c - reading and checking key files, guarded secret memory, scrypt (keyfile.h).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/buf.h"
#include "core/bytes.h"
#include "core/keyfile.h"

/* --- guarded memory -------------------------------------------------------------------------- */

wv_secret *wv_secret_new(size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t ps = page > 0 ? (size_t)page : 4096;
    size_t cap = ((len ? len : 1) + ps - 1) / ps * ps;
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "walvault: fatal: could not map %zu bytes for a secret\n", cap);
        abort();
    }
#ifdef MADV_DONTDUMP
    (void)madvise(p, cap, MADV_DONTDUMP);
#endif
    (void)mlock(p, cap); /* best effort: RLIMIT_MEMLOCK may forbid it */
    wv_secret *s = wv_xcalloc(1, sizeof(*s));
    s->data = p;
    s->len = len;
    s->cap = cap;
    return s;
}

void wv_secret_free(wv_secret *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s->data, s->cap);
    (void)munlock(s->data, s->cap);
    munmap(s->data, s->cap);
    free(s);
}

/* --- checks ---------------------------------------------------------------------------------- */

int wv_keyfile_check_fd(int fd, const char *path, wv_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return wv_err_errno(err, WV_ECONFIG, errno, "could not stat key file \"%s\"", path);
    if (!S_ISREG(st.st_mode))
        return wv_err_set(err, WV_ECONFIG, "key file \"%s\" is not a regular file", path);
    if (st.st_mode & 0177) {
        wv_err_set(err, WV_ECONFIG,
                   "key file \"%s\" has mode %04o: it must be readable by its owner only (0600 or "
                   "0400)",
                   path, (unsigned)(st.st_mode & 07777));
        return wv_err_hint(err, "chmod 600 %s", path);
    }
    uid_t me = geteuid();
    if (st.st_uid != me && st.st_uid != 0) {
        wv_err_set(err, WV_ECONFIG,
                   "key file \"%s\" is owned by uid %u, not by the running user (uid %u) or root",
                   path, (unsigned)st.st_uid, (unsigned)me);
        return wv_err_hint(err, "chown %u %s", (unsigned)me, path);
    }
    return 0;
}

/* Open, check and read a whole key file into guarded memory. */
static int read_keyfile(const char *path, wv_secret **out, wv_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        wv_err_errno(err, WV_ECONFIG, e, "could not open key file \"%s\"", path);
        if (e == ENOENT)
            wv_err_hint(err, "create it (docs/encryption.md), or correct the path in the "
                             "configuration");
        else if (e == ELOOP)
            wv_err_hint(err, "point the configuration at the file itself, not a symbolic link");
        return WV_ECONFIG;
    }
    int rc = wv_keyfile_check_fd(fd, path, err);
    wv_secret *s = rc == 0 ? wv_secret_new(WV_KEYFILE_MAX + 1) : NULL;
    size_t len = 0;
    while (rc == 0) {
        ssize_t n = read(fd, s->data + len, WV_KEYFILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = wv_err_errno(err, WV_ECONFIG, errno, "could not read key file \"%s\"", path);
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > WV_KEYFILE_MAX)
            rc = wv_err_set(err, WV_ECONFIG, "key file \"%s\" is larger than %d bytes", path,
                            WV_KEYFILE_MAX);
    }
    close(fd);
    if (rc < 0) {
        wv_secret_free(s);
        return rc;
    }
    s->len = len;
    *out = s;
    return 0;
}

/* --- symmetric ------------------------------------------------------------------------------- */

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* 32 bytes of key material from text of len bytes (newline stripped), or -1. */
static int decode_material(const uint8_t *t, size_t len, uint8_t out[32])
{
    if (len == 64) {
        for (size_t i = 0; i < 64; i++)
            if (wv_hex_value((char)t[i]) < 0)
                return -1;
        return wv_hex_decode((const char *)t, out, 32) == 0 ? 0 : -1;
    }
    if (len == 44 && t[43] == '=' && t[42] != '=') {
        uint8_t tmp[34];
        for (size_t i = 0; i < 43; i++)
            if (!is_b64((char)t[i]))
                return -1;
        if (EVP_DecodeBlock(tmp, t, 44) != 33)
            return -1;
        memcpy(out, tmp, 32);
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return 0;
    }
    return -1;
}

int wv_keyfile_read_symmetric(const char *path, int *kind, wv_secret **out, wv_err *err)
{
    wv_secret *f = NULL;
    int rc = read_keyfile(path, &f, err);
    if (rc < 0)
        return rc;
    size_t len = f->len;
    wv_secret *s = wv_secret_new(32);
    if (len == 32) {
        memcpy(s->data, f->data, 32);
        *kind = WV_KEYFILE_MATERIAL;
        goto done;
    }
    if (len > 0 && f->data[len - 1] == '\n')
        len--;
    if (len > 0 && f->data[len - 1] == '\r')
        len--;
    if (decode_material(f->data, len, s->data) == 0) {
        *kind = WV_KEYFILE_MATERIAL;
        goto done;
    }
    if (len == 0) {
        rc = wv_err_set(err, WV_ECONFIG, "key file \"%s\" is empty", path);
        goto fail;
    }
    if (memchr(f->data, '\n', len) || memchr(f->data, '\0', len)) {
        rc = wv_err_set(err, WV_ECONFIG,
                        "key file \"%s\" is neither 32 bytes of key material nor a passphrase of "
                        "one line",
                        path);
        wv_err_hint(err, "make a key with: openssl rand -out %s 32", path);
        goto fail;
    }
    if (len < WV_KEYFILE_PASS_MIN) {
        rc = wv_err_set(err, WV_ECONFIG,
                        "key file \"%s\" holds a passphrase shorter than %d characters", path,
                        WV_KEYFILE_PASS_MIN);
        wv_err_hint(err, "use a longer passphrase, or a key made with: openssl rand -out %s 32",
                    path);
        goto fail;
    }
    wv_secret_free(s);
    s = wv_secret_new(len);
    memcpy(s->data, f->data, len);
    *kind = WV_KEYFILE_PASSPHRASE;
done:
    wv_secret_free(f);
    *out = s;
    return 0;
fail:
    wv_secret_free(f);
    wv_secret_free(s);
    return rc;
}

/* --- X25519 PEM ------------------------------------------------------------------------------ */

static int not_x25519(wv_err *err, const char *path, const char *what, const char *make)
{
    wv_err_set(err, WV_ECONFIG, "key file \"%s\" does not hold an X25519 %s in PEM form", path,
               what);
    return wv_err_hint(err, "%s", make);
}

/* The exact file "openssl pkey -pubout" writes for an X25519 key: its 44-byte SubjectPublicKeyInfo
 * is this prefix and the key. Read without OpenSSL's PEM decoders, whose first use costs about 2
 * ms, a twelfth of a wal-push; anything else goes through OpenSSL. */
static int canonical_x25519_pem(const wv_secret *f, uint8_t pub[32])
{
    static const char head[] = "-----BEGIN PUBLIC KEY-----\n",
                      tail[] = "\n-----END PUBLIC KEY-----\n";
    static const uint8_t spki[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                     0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00};
    const size_t hl = sizeof(head) - 1, tl = sizeof(tail) - 1;
    uint8_t der[48];
    if (f->len != hl + 60 + tl || memcmp(f->data, head, hl) != 0 ||
        memcmp(f->data + hl + 60, tail, tl) != 0 || f->data[hl + 59] != '=')
        return 0;
    for (size_t i = 0; i < 59; i++)
        if (!isalnum(f->data[hl + i]) && f->data[hl + i] != '+' && f->data[hl + i] != '/')
            return 0;
    if (EVP_DecodeBlock(der, f->data + hl, 60) != 45 || memcmp(der, spki, sizeof(spki)) != 0)
        return 0;
    memcpy(pub, der + 12, 32);
    OPENSSL_cleanse(der, sizeof(der));
    return 1;
}

int wv_keyfile_read_public(const char *path, uint8_t pub[32], wv_err *err)
{
    wv_secret *f = NULL;
    int rc = read_keyfile(path, &f, err);
    if (rc < 0)
        return rc;
    if (canonical_x25519_pem(f, pub)) {
        wv_secret_free(f);
        return 0;
    }
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    size_t n = 32;
    int ok = k && EVP_PKEY_get_base_id(k) == EVP_PKEY_X25519 &&
             EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32;
    EVP_PKEY_free(k);
    BIO_free(bio);
    wv_secret_free(f);
    if (!ok)
        return not_x25519(err, path, "public key",
                          "make it with: openssl pkey -in PRIVATE.pem -pubout -out FILE");
    return 0;
}

int wv_keyfile_read_private(const char *path, wv_secret **out, int *n, wv_err *err)
{
    wv_secret *f = NULL;
    int rc = read_keyfile(path, &f, err);
    if (rc < 0)
        return rc;
    /* at most one key per PEM block; a block is at least ~100 bytes */
    size_t max = f->len / 64 + 1;
    wv_secret *keys = wv_secret_new(max * 32);
    BIO *bio = BIO_new_mem_buf(f->data, (int)f->len);
    int count = 0, bad = 0;
    while (bio && (size_t)count < max) {
        EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        if (!k)
            break;
        size_t kl = 32;
        if (EVP_PKEY_get_base_id(k) != EVP_PKEY_X25519 ||
            EVP_PKEY_get_raw_private_key(k, keys->data + 32 * (size_t)count, &kl) != 1 || kl != 32)
            bad = 1;
        else
            count++;
        EVP_PKEY_free(k);
        if (bad)
            break;
    }
    BIO_free(bio);
    wv_secret_free(f);
    if (bad || count == 0) {
        wv_secret_free(keys);
        return not_x25519(err, path, "private key",
                          "make it with: openssl genpkey -algorithm X25519 -out FILE");
    }
    keys->len = 32 * (size_t)count;
    *out = keys;
    *n = count;
    return 0;
}

int wv_keyfile_scrypt(const uint8_t *pass, size_t passlen, const uint8_t *salt, size_t saltlen,
                      uint64_t n, uint32_t r, uint32_t p, uint8_t out[32], wv_err *err)
{
    /* n * r * 128 bytes of memory, and a margin */
    uint64_t maxmem = n * r * 128 + (16u << 20);
    if (EVP_PBE_scrypt((const char *)pass, passlen, salt, saltlen, n, r, p, maxmem, out, 32) != 1)
        return wv_err_set(err, WV_EINTERNAL,
                          "scrypt failed in OpenSSL (n %llu, r %u, p %u): too much memory?",
                          (unsigned long long)n, r, p);
    return 0;
}
