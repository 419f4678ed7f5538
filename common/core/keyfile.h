/*
 * keyfile.h - encryption key files and the memory that holds secrets.
 *
 * Key files ([global] encrypt_key_file, encrypt_public_key_file, encrypt_private_key_file) must be
 * regular files of mode 0600 or 0400 (nothing for group or others, not executable) owned by the
 * running user or by root; anything else is refused with the chmod or chown to run. Their content
 * never appears in a message.
 *
 * A symmetric key file (encrypt_key_file) is either key material or a passphrase:
 *  - key material: exactly 32 bytes, given as the raw bytes (a file of exactly 32 bytes), or as 64
 *    hex digits, or as the 44-character base64 of 32 bytes ("openssl rand -base64 32"); a single
 *    trailing newline is allowed after hex or base64. Used through HKDF.
 *  - anything else is a passphrase (its one line, without the trailing newline; at least 8
 *    bytes), used through scrypt with parameters and a salt recorded in the repository.
 * Public and private keys are X25519 PEM files, as made by
 *    openssl genpkey -algorithm X25519 -out repo.pem
 *    openssl pkey -in repo.pem -pubout -out repo.pub
 * A private key file may hold several PEM private keys (the key ring kept across rekeys).
 *
 * Secrets live in wv_secret buffers: whole pages of their own, excluded from core dumps
 * (madvise MADV_DONTDUMP), locked in memory where permitted, and cleansed (OPENSSL_cleanse) when
 * freed.
 */
#ifndef WALVAULT_CORE_KEYFILE_H
#define WALVAULT_CORE_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WV_KEYFILE_MAX      65536 /* larger key files are refused */
#define WV_KEYFILE_PASS_MIN 8

typedef struct wv_secret {
    uint8_t *data;
    size_t len; /* bytes in use */
    size_t cap; /* bytes mapped */
} wv_secret;

/* A zeroed secret of len bytes (at least 1 is mapped). Aborts if memory cannot be mapped. */
wv_secret *wv_secret_new(size_t len);
/* Cleanse and unmap; NULL allowed. */
void wv_secret_free(wv_secret *s);

/* Check that the open file fd (named path in messages) may hold a key: regular, mode 0600 or 0400,
 * owned by the running user or root. WV_ECONFIG with the chmod or chown to run as the hint. */
int wv_keyfile_check_fd(int fd, const char *path, wv_err *err);

enum { WV_KEYFILE_MATERIAL = 1, WV_KEYFILE_PASSPHRASE = 2 };

/* Read a symmetric key file: *kind is WV_KEYFILE_MATERIAL (*out holds the 32 bytes) or
 * WV_KEYFILE_PASSPHRASE (*out holds the passphrase). WV_ECONFIG for a missing, unreadable, badly
 * protected, empty or too short file. */
int wv_keyfile_read_symmetric(const char *path, int *kind, wv_secret **out, wv_err *err);

/* Read an X25519 public key (PEM "PUBLIC KEY") into pub. */
int wv_keyfile_read_public(const char *path, uint8_t pub[32], wv_err *err);

/* Read one or more X25519 private keys (PEM) into *out: *n keys of 32 raw bytes each, in the order
 * of the file. */
int wv_keyfile_read_private(const char *path, wv_secret **out, int *n, wv_err *err);

/* scrypt (EVP_PBE_scrypt) of a passphrase into 32 bytes. Parameters: n a power of 2, r, p as
 * recorded in the repository. WV_EINTERNAL if OpenSSL refuses them (e.g. memory). */
int wv_keyfile_scrypt(const uint8_t *pass, size_t passlen, const uint8_t *salt, size_t saltlen,
                      uint64_t n, uint32_t r, uint32_t p, uint8_t out[32], wv_err *err);

/* The default scrypt parameters for new repositories: n = 2^17, r = 8, p = 1 (128 MiB, about
 * half a second). */
#define WV_SCRYPT_N 131072
#define WV_SCRYPT_R 8
#define WV_SCRYPT_P 1
/* The most memory (n * r * 128 bytes) parameters read from a repository may ask for. */
#define WV_SCRYPT_MAXMEM (UINT64_C(1) << 30)

#endif
