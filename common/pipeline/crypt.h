/*
 * crypt.h - encryption at rest: a chunked streaming AEAD (AES-256-GCM, OpenSSL EVP) as a pair of
 * filter stages, and the small key operations around it (HKDF, sealing one short message, X25519).
 *
 *   store:  plain -> sha256 -> lz4 compress -> seal -> framer -> storage
 *   fetch:  storage -> object reader -> open -> lz4 decompress -> sha256 -> file
 *
 * The construction (as age's payload and Tink's streaming AEAD):
 *  - Every object has its own key: HKDF-SHA256 with the repository's 32-byte key material as input
 *    key, a random per-object salt (WV_CRYPT_SALT_SIZE bytes, stored in the object's header) as
 *    salt, and info = "walvault object key v1" || SHA-256(associated data). The associated data is
 *    the object's encoded header (kind, bound name, compression, key id, salt, ...): an object copied
 *    under another name, or with any header byte changed, derives another key and fails to open.
 *  - The (compressed) content is cut into chunks of WV_CRYPT_CHUNK plain bytes; the last chunk holds
 *    the rest, 0..WV_CRYPT_CHUNK bytes, and is empty only when the whole content is (so an object of
 *    exactly one chunk is one last chunk). Each chunk is sealed with AES-256-GCM under the object
 *    key, nonce = 11-byte big-endian chunk counter || 1 byte last-chunk flag (0x01 on the last, else
 *    0x00), no associated data, and stored as ciphertext || 16-byte tag.
 *  - A nonce is never reused: the key is the object's own and the counter never repeats in it.
 *  - Reordered or swapped chunks fail (wrong counter), truncation at a chunk boundary fails (the new
 *    last chunk was not sealed as last), appended data fails (the last chunk is then opened as not
 *    last, or is longer than it was).
 *
 * The open stage releases a chunk's plaintext downstream only once its tag has verified, and
 * reports the end only once the last-flagged chunk has: nothing unauthenticated ever reaches the
 * destination. Failures of authentication are WV_ECORRUPT ("does not authenticate").
 *
 * Memory holding keys is the caller's; the stages copy the object key into memory they cleanse
 * (OPENSSL_cleanse) when freed.
 */
#ifndef WALVAULT_PIPELINE_CRYPT_H
#define WALVAULT_PIPELINE_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "pipeline/filter.h"

#define WV_CRYPT_KEY_SIZE   32
#define WV_CRYPT_SALT_SIZE  16
#define WV_CRYPT_TAG_SIZE   16
#define WV_CRYPT_NONCE_SIZE 12
#define WV_CRYPT_CHUNK      (64 * 1024)
/* A sealed chunk: at most WV_CRYPT_CHUNK ciphertext bytes and the tag. */
#define WV_CRYPT_SEALED_CHUNK (WV_CRYPT_CHUNK + WV_CRYPT_TAG_SIZE)
/* What one short sealed message (wv_crypt_seal_once) adds to its plaintext: nonce and tag. */
#define WV_CRYPT_ONCE_OVERHEAD (WV_CRYPT_NONCE_SIZE + WV_CRYPT_TAG_SIZE)
/* X25519 public keys and shared secrets. */
#define WV_CRYPT_X25519_SIZE 32

/* The size of the sealed stream for `plain` bytes of content (chunks and tags). */
uint64_t wv_crypt_sealed_size(uint64_t plain);

/*
 * HKDF-SHA256 (RFC 5869): out[0..outlen) from ikm, salt and info (any of salt/info may be empty).
 * WV_EINTERNAL if OpenSSL fails.
 */
int wv_crypt_hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                  const uint8_t *info, size_t infolen, uint8_t *out, size_t outlen, wv_err *err);

/*
 * The per-object key: HKDF-SHA256(ikm = material, salt = salt, info = "walvault object key v1" ||
 * SHA-256(aad[0..aadlen))). aad is the object's encoded header.
 */
int wv_crypt_object_key(const uint8_t material[WV_CRYPT_KEY_SIZE],
                        const uint8_t salt[WV_CRYPT_SALT_SIZE], const uint8_t *aad, size_t aadlen,
                        uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err);

/* The key of the object's sealed metadata block (objfmt.h): as wv_crypt_object_key with the label
 * "walvault object meta v1". */
int wv_crypt_meta_key(const uint8_t material[WV_CRYPT_KEY_SIZE],
                      const uint8_t salt[WV_CRYPT_SALT_SIZE], const uint8_t *aad, size_t aadlen,
                      uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err);

/* The keyed digest of a trailer (objfmt.h): HMAC-SHA256(digest_key, sha256 of the plain content). */
int wv_crypt_keyed_digest(const uint8_t digest_key[WV_CRYPT_KEY_SIZE], const uint8_t sha256[32],
                          uint8_t out[32], wv_err *err);

/* X25519 mode: the object's key material from the shared secret: HKDF-SHA256(ikm = secret, salt =
 * eph_pub || recipient_pub, info = "walvault x25519 v1"). */
int wv_crypt_x25519_material(const uint8_t secret[WV_CRYPT_X25519_SIZE],
                             const uint8_t eph_pub[WV_CRYPT_X25519_SIZE],
                             const uint8_t recipient_pub[WV_CRYPT_X25519_SIZE],
                             uint8_t out[WV_CRYPT_KEY_SIZE], wv_err *err);

/* The seal stage: pushes the sealed stream for what it is written to next. */
wv_filter *wv_crypt_seal_new(wv_filter *next, const uint8_t key[WV_CRYPT_KEY_SIZE]);

/* The open stage: pushes the plaintext of each chunk to next once its tag has verified; finish()
 * fails (WV_ECORRUPT) unless the stream ended with its last chunk. `what` names the object in
 * messages (copied; may be NULL). */
wv_filter *wv_crypt_open_new(wv_filter *next, const uint8_t key[WV_CRYPT_KEY_SIZE],
                             const char *what);

/* Plain bytes released and chunks opened so far (for tests and messages). */
uint64_t wv_crypt_open_chunks(const wv_filter *f);

/*
 * One short message (a wrapped data key, a sealed metadata block): out = nonce (random unless
 * `nonce` is given) || AES-256-GCM(key, nonce, aad, in) || tag; outlen is inlen +
 * WV_CRYPT_ONCE_OVERHEAD. wv_crypt_open_once reverses it into out (inlen - overhead bytes);
 * WV_EKEY if it does not authenticate (wrong key, or changed: the caller words the message).
 */
int wv_crypt_seal_once(const uint8_t key[WV_CRYPT_KEY_SIZE], const uint8_t *nonce,
                       const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                       uint8_t *out, wv_err *err);
int wv_crypt_open_once(const uint8_t key[WV_CRYPT_KEY_SIZE], const uint8_t *aad, size_t aadlen,
                       const uint8_t *in, size_t inlen, uint8_t *out, wv_err *err);

/* Random bytes (RAND_bytes); WV_EINTERNAL if the generator fails. */
int wv_crypt_random(uint8_t *out, size_t len, wv_err *err);

/*
 * X25519 for public-key mode. wv_crypt_x25519_seal makes an ephemeral key pair, writes its public
 * half into eph_pub and the shared secret with `recipient_pub` into secret; wv_crypt_x25519_open
 * computes the same secret from the private key (raw 32 bytes) and eph_pub. WV_EKEY for a
 * degenerate peer key (all-zero shared secret).
 */
int wv_crypt_x25519_seal(const uint8_t recipient_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t eph_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t secret[WV_CRYPT_X25519_SIZE], wv_err *err);
int wv_crypt_x25519_open(const uint8_t priv[WV_CRYPT_X25519_SIZE],
                         const uint8_t eph_pub[WV_CRYPT_X25519_SIZE],
                         uint8_t secret[WV_CRYPT_X25519_SIZE], wv_err *err);
/* The public half of a raw X25519 private key. */
int wv_crypt_x25519_public(const uint8_t priv[WV_CRYPT_X25519_SIZE],
                           uint8_t pub[WV_CRYPT_X25519_SIZE], wv_err *err);

#endif
