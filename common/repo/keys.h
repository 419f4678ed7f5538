/*
 * keys.h - an encrypted repository's key record, and the user's keys that open it.
 *
 * A repository is encrypted or not from its first use: it is encrypted when it holds a key record
 * keys/<generation, 8 hex digits> (text key=value, beside walvault.repo, which stays as it is).
 * The record is created before walvault.repo on first use, with WV_PUT_NOREPLACE (a concurrent
 * first use loses the race, re-reads and opens the winner's record with the same user key).
 *
 * Symmetric mode (encrypt_key_file): the record holds a random 32-byte data key, wrapped
 * (AES-256-GCM, crypt.h wv_crypt_seal_once) under a key-encryption key derived from the user's
 * key: HKDF-SHA256 for 32 bytes of key material, scrypt (parameters and salt in the record) then
 * HKDF for a passphrase. The wrap's tag is the key check: a wrong key fails at once, WV_EKEY
 * "wrong encryption key for this repository". Objects are encrypted under the data key (key id =
 * the data key's random id); the keyed digest's key is HKDF(data key).
 *
 * Public-key mode (encrypt_public_key_file / encrypt_private_key_file): objects are encrypted for
 * an X25519 public key (key id = the first 8 bytes of SHA-256 of "walvault x25519 key id v1" and
 * the public key); the record lists every key id used so far and which one is current, and holds
 * a random digest key wrapped for each public key (under HKDF of the public key, which the
 * repository never stores: the repository alone cannot compute keyed digests, so it cannot
 * confirm a guess of a small file's content, while every host that writes can).
 *
 * Rekey writes generation n+1 (NOREPLACE, durable), reads it back and opens it with the new key,
 * and only then removes generation n and older. Opening tries the newest generation first and
 * falls back to older ones, so a rekey stopped at any point leaves a repository that opens with
 * the old key or the new one. No data object is rewritten: symmetric rekey re-wraps the same data
 * key; public-key rekey adds a key id, and old objects stay readable with the old private key kept
 * in the key ring.
 */
#ifndef WALVAULT_REPO_KEYS_H
#define WALVAULT_REPO_KEYS_H

#include <stdint.h>

#include "core/error.h"
#include "core/keyfile.h"
#include "pipeline/object.h"
#include "storage/storage.h"

#define WV_KEYS_PREFIX "keys/"
/* The repository's info (repo.h); a repository is "used" once it holds it. */
#define WV_REPO_INFO_KEY   "walvault.repo"
#define WV_KEYS_FORMAT     1
#define WV_KEYS_RECORD_MAX 65536
#define WV_KEYS_MAX_PUBLIC 64 /* public keys a record remembers */

/* The keys the configuration names, read from their files. */
typedef struct wv_user_keys {
    uint8_t mode;   /* WV_OBJ_KEYMODE_SYMMETRIC or WV_OBJ_KEYMODE_X25519 */
    int sym_kind;   /* symmetric: WV_KEYFILE_MATERIAL or WV_KEYFILE_PASSPHRASE */
    wv_secret *sym; /* symmetric: the material (32 bytes) or the passphrase */
    int have_pub;   /* public-key mode: encrypt_public_key_file was given */
    uint8_t pub[32];
    wv_secret *privs; /* public-key mode: the private key ring (npriv * 32 bytes), or NULL */
    int npriv;
    uint64_t *priv_ids; /* the key id of each private key */
} wv_user_keys;

/* Read the key files of a configuration; *out is NULL (and 0 returned) when none is set. */
int wv_user_keys_load(const char *key_file, const char *public_file, const char *private_file,
                      wv_user_keys **out, wv_err *err);
void wv_user_keys_free(wv_user_keys *uk);

/* The key id of an X25519 public key. */
uint64_t wv_keys_x25519_id(const uint8_t pub[32]);

/* An opened key record: the crypto context every object writer and reader of the repository
 * borrows (in guarded memory). can_write: objects can be written (symmetric, or the current
 * public key is held). */
typedef struct wv_repo_keys {
    uint32_t generation;
    wv_secret *mem;
    wv_obj_crypto *crypto;
    int can_write;
    const wv_user_keys *uk; /* borrowed: the private key ring */
} wv_repo_keys;

/*
 * Open the key record of the repository on st (named repo in messages) with the user's keys uk
 * (NULL: the configuration sets no key).
 *  - no record, uk NULL: a plain repository, *out NULL, 0.
 *  - no record, uk set: if `used` (walvault.repo exists: the repository was first used without
 *    encryption; used < 0: find out with a stat of walvault.repo, made only when there is no
 *    record) WV_EKEY "... is not encrypted ..."; else the record is created (generation 1)
 *    and opened.
 *  - a record, uk NULL: WV_EKEY "... is encrypted, and the configuration has no encryption key".
 *  - a record, another mode than uk's: WV_EKEY naming both; the wrong key: WV_EKEY "wrong
 *    encryption key for this repository".
 */
int wv_repo_keys_open(wv_storage *st, const char *repo, const wv_user_keys *uk, int used,
                      wv_repo_keys **out, wv_err *err);
void wv_repo_keys_free(wv_repo_keys *k);

/* One key record's text (as read from the repository under `key`, untrusted) parsed and opened
 * with uk: what wv_repo_keys_open does with each generation (for tests and the fuzz target). */
int wv_repo_keys_open_text(const char *text, const char *repo, const char *key,
                           const wv_user_keys *uk, wv_repo_keys **out, wv_err *err);

/*
 * Rekey: make `next` the key that opens the repository (symmetric: the data key re-wrapped; the
 * old key no longer opens it afterwards) or the public key new objects are written for (public-key
 * mode: k must be able to write, i.e. hold the current public key). Crash-safe as described above.
 * stop_after (tests): 1 returns right after the new generation is written, 2 after it verified,
 * 3 after the first older generation was removed; 0 runs to the end.
 */
int wv_repo_keys_rekey(wv_storage *st, const char *repo, const wv_repo_keys *k,
                       const wv_user_keys *next, int stop_after, wv_err *err);

/*
 * Finish a rekey that stopped after writing k's generation (k opened with the new key): k must
 * have been opened from the newest generation (else WV_EREFUSED: a newer one exists that k's key
 * does not open), and every older generation is removed, oldest first, then flushed. *removed
 * (may be NULL) receives how many were. Afterwards only k's key opens the repository.
 */
int wv_repo_keys_finish(wv_storage *st, const char *repo, const wv_repo_keys *k, int *removed,
                        wv_err *err);

#endif
