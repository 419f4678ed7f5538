#!/usr/bin/env python3
"""crypt_vectors.py - the known-answer vectors of tests/unit/test_crypt.c, computed independently
with Python's `cryptography` (HKDF-SHA256, AES-256-GCM) from the construction described in
common/pipeline/crypt.h. Run it to print them again: python3 tests/tools/crypt_vectors.py"""
import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK = 64 * 1024
LABEL = b"walvault object key v1"


def object_key(material, salt, aad):
    info = LABEL + hashlib.sha256(aad).digest()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(material)


def seal(key, plain):
    g = AESGCM(key)
    chunks = [plain[i:i + CHUNK] for i in range(0, len(plain), CHUNK)] or [b""]
    out = b""
    for n, c in enumerate(chunks):
        nonce = n.to_bytes(11, "big") + (b"\x01" if n == len(chunks) - 1 else b"\x00")
        out += g.encrypt(nonce, c, None)
    return out


def pattern(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


material = bytes(range(32))
salt = bytes(range(0xA0, 0xB0))
aad = b"\x89WVOBJ\r\n test header"
key = object_key(material, salt, aad)
print("object key", key.hex())
for n in (0, 8, CHUNK, CHUNK + 1, 3 * CHUNK + 100):
    ct = seal(key, pattern(n))
    print(n, len(ct), "sha256", hashlib.sha256(ct).hexdigest(), "tail", ct[-24:].hex())
# one short sealed message: nonce 0x00..0x0b, aad "aad", plaintext "data key"
once = bytes(range(12)) + AESGCM(material).encrypt(bytes(range(12)), b"data key", b"aad")
print("once", once.hex())
