#!/usr/bin/python3
"""make_corpus.py - write the seed corpus of every fuzz target into tests/fuzz/corpus/<name>/.

Seeds are made from the repository's test data (tests/unit/data: the configuration file, real
PostgreSQL 15 WAL segments) and from small inputs built here the way walvault writes them
(objects with their header, lz4 payload and trailer, manifests with their digest, tar archives in
ustar, GNU and pax formats, protocol frames, S3 listings). Each seed starts with the option bytes
its target reads first (see the comment at the top of tests/fuzz/fuzz_<name>.c).

    /usr/bin/python3 tests/fuzz/make_corpus.py [CORPUS_DIR]     (Debian's python3, with python3-lz4)

Files are named seed-*; running it again rewrites them and leaves every other file (inputs the
fuzzer found and that were added on purpose, regress-* crash inputs) alone. Needs python3-lz4.
"""
import hashlib
import io
import os
import struct
import sys
import tarfile

import lz4.frame

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "tests", "unit", "data")


def seed(corpus, target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- objects (common/pipeline/objfmt.h) ------------------------------------------------------

def check(b):
    return hashlib.sha256(b).digest()[:4]


def obj_header(kind, compression):
    h = b"\x89WVOBJ\r\n" + struct.pack("<HHBBBBQ", 1, 64, compression, 0, 1, kind, 0)
    h += bytes(12) + bytes(24)
    return h + check(h)


def obj_trailer(plain, payload_size, kind, compression, first=-2**63, last=-2**63, commits=0,
                rps=0):
    t = b"\x89WVEND\r\n" + struct.pack("<QQ", len(plain), payload_size)
    t += hashlib.sha256(plain).digest()
    t += struct.pack("<qqII", first, last, commits, rps)
    t += struct.pack("<HBBBB", 1, compression, 0, 1, kind) + bytes(38)
    return t + check(t)


def lz4_frame(plain):
    return lz4.frame.compress(plain, block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                              block_linked=False, content_checksum=False)


def make_object(plain, kind=5, compress=True):
    payload = lz4_frame(plain) if compress else plain
    c = 1 if compress else 0
    return obj_header(kind, c) + payload + obj_trailer(plain, len(payload), kind, c)


# --- manifests (common/repo/manifest.h) ------------------------------------------------------

def make_manifest(bundles=True, version=2):
    lines = [
        "walvault-manifest version=%d" % version,
        "backup id=20261125T101500Z label=nightly%20run keep=1 created-by=walvault%200.1.0",
        "cluster system-id=7312345678901234567 pg-version=150020 wal-segsize=16777216",
        "wal timeline=1 start-lsn=0/2000028 stop-lsn=0/2000138 checkpoint-lsn=0/2000060 "
        "start-segment=000000010000000000000002 stop-segment=000000010000000000000002",
        "time start=1795601700 stop=1795601761 start-text=2026-11-25%2010:15:00%20UTC "
        "stop-text=2026-11-25%2010:16:01%20UTC",
        "tablespace oid=16385 location=/srv/ts%201",
        "dir path=pgdata mode=0700 mtime=1795601000",
        "symlink path=pgdata/pg_tblspc/16385 target=/srv/ts%201 mode=0777 mtime=5",
        "file path=pgdata/base/1/1259 size=24576 mode=0600 mtime=1795601001 sha256=" +
        "ab" * 32 + " stored-size=1234",
        "file path=pgdata/PG_VERSION size=3 mode=0600 mtime=-7 sha256=" + "0F" * 32 +
        " stored-size=219 ref=20261124T101500Z",
    ]
    files, size, stored = 2, 24576 + 3, 1234 + 219
    if bundles:
        lines.append("file path=tblspc/16385/PG_15 size=0 mode=0700 mtime=1 sha256=" + "00" * 32 +
                     " stored-size=192 bundle=1 offset=0")
        files, stored = 3, stored + 192
    lines.append("totals files=%d dirs=1 symlinks=1 tablespaces=1 size=%d stored-size=%d" %
                 (files, size, stored))
    body = "".join(line + "\n" for line in lines).encode()
    return body + b"end sha256=" + hashlib.sha256(body).hexdigest().encode() + b"\n"


# --- tar archives ----------------------------------------------------------------------------

def make_tar(fmt, long_names=False):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as t:
        def add(name, data=b"", kind=tarfile.REGTYPE, link=""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.linkname = kind, 0o600, 1795601000, link
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if data else None)
        add("./", kind=tarfile.DIRTYPE)
        add("PG_VERSION", b"15\n")
        add("base", kind=tarfile.DIRTYPE)
        add("base/1/1259", bytes(range(256)) * 3)
        add("pg_tblspc/16385", kind=tarfile.SYMTYPE, link="/srv/ts1")
        add("hard", kind=tarfile.LNKTYPE, link="PG_VERSION")
        if long_names:
            add("deep/" + "d" * 120 + "/file", b"x")
            add("l" * 150, kind=tarfile.SYMTYPE, link="t" * 130)
    return bio.getvalue()


# --- WAL ------------------------------------------------------------------------------------

def wal_prefix(name, n):
    with open(os.path.join(DATA, "wal", name), "rb") as f:
        return lz4.frame.decompress(f.read())[:n]


def wal_model_input(mode):
    """Records for the harness-written WAL of fuzz_walreader (mode bit 0 set)."""
    b = bytes([mode]) + struct.pack("<H", 77) + bytes([0, 4]) + struct.pack("<H", 100)
    t = 849000000 * 1000000  # a TimestampTz in 2026
    recs = [
        (0, 700, 8, struct.pack("<q", t)),               # commit
        (11, 701, 40, bytes(range(40))),               # other rmgr (11 % 6 == 5), a block
        (1, 702, 8, struct.pack("<q", t + 5)),          # abort
        (3, 0, 72, struct.pack("<q", t + 9) + b"before_upgrade".ljust(64, b"\0")),  # rp
        (32, 703, 24, struct.pack("<qII", t + 11, 1 << 4, 9999)),  # commit prepared, xinfo
        (0 + 8 + 16, 704, 300, struct.pack("<q", t + 20) + bytes(292)),  # commit, block+image
        (4, 0, 0, b""),                                 # switch
    ]
    for sel, xid, mlen, md in recs:
        b += bytes([sel]) + struct.pack("<IH", xid, mlen)
        if sel & 8:
            b += bytes([30])
            if sel & 16:
                b += bytes([60])
        if sel % 6 == 5:
            b += bytes([0x10])
        b += md.ljust(mlen, b"\0")
    return b


# --- remote protocol frames ------------------------------------------------------------------

def frame(t, payload):
    return struct.pack(">IB", len(payload), t) + payload


def rp_str(s):
    return struct.pack(">I", len(s)) + s


def rp_session():
    return b"".join([
        frame(0x01, struct.pack(">I", 1) + rp_str(b"0.1.0")),
        frame(0x81, struct.pack(">I", 1) + rp_str(b"0.1.0")),
        frame(0x02, struct.pack(">I", 1) + rp_str(b"wal/0000000100000000/000000010000000000000002")),
        frame(0x03, b"\x89WVOBJ\r\n" + bytes(40)),
        frame(0x04, b""),
        frame(0x82, b""),
        frame(0x06, struct.pack(">qq", 0, -1) + rp_str(b"backup/20261125T101500Z/backup.manifest")),
        frame(0x84, struct.pack(">Qq", 4096, 1795601000)),
        frame(0x86, b""),
        frame(0x08, rp_str(b"wal/")),
        frame(0x85, struct.pack(">Qq", 219, 1795601000) + rp_str(b"wal/00000002.history")),
        frame(0x83, struct.pack(">i", -1) + rp_str(b"not found: wal/x") + rp_str(b"")),
        frame(0x07, rp_str(b"repo.info")),
        frame(0x09, rp_str(b"tmp/x")),
        frame(0x0a, b""),
        frame(0x05, b""),
    ])


def rp_payloads():
    """Option bit 0: u8 type, u16 length, payload (little-endian length, as fz_u16 reads it)."""
    def p(t, payload):
        return bytes([t]) + struct.pack("<H", len(payload)) + payload
    return bytes([1]) + b"".join([
        p(0x83, struct.pack(">i", -5) + rp_str(b"corrupt object \"wal/x\"") + rp_str(b"fetch it")),
        p(0x06, struct.pack(">qq", -128, -1) + rp_str(b"wal/0000000100000000/x")),
        p(0x85, struct.pack(">Qq", 1, -1) + rp_str(b"a/b/c")),
    ])


# --- S3 ----------------------------------------------------------------------------------

LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>pg-archive</Name>
<Prefix>cluster-a/wal/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
<IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
<Contents><Key>cluster-a/wal/0000000100000000/000000010000000000000002</Key>
<LastModified>2026-11-25T10:15:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>
<Size>16777216</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>cluster-a/wal/a&amp;b &lt;c&gt; &#233;&#x1F600;</Key><LastModified>2026-11-25T10:16:00Z</LastModified>
<Size>0</Size></Contents><Contents/></ListBucketResult>"""

ERROR = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message>
<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
<Key>a/b</Key><RequestId>tx00000000000000000001</RequestId></Error>"""


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus")

    with open(os.path.join(DATA, "config", "full.conf"), "rb") as f:
        seed(corpus, "config", "full", f.read())
    seed(corpus, "config", "posix", b"[repo1]\ntype = posix\npath = /var/lib/walvault\n")
    seed(corpus, "config", "s3-ssh", b"[global]\ncompress = lz4\n[repo2]\ntype = s3\n"
         b"endpoint = http://127.0.0.1:7480\nregion = us-east-1\nbucket = b\n[repo3]\n"
         b"type = ssh\nhost = backup\npath = /srv/wv\n")

    text = b"walvault object content " * 40
    lz4obj, plainobj = make_object(text), make_object(text, kind=1, compress=False)
    seed(corpus, "objfmt", "lz4", lz4obj)
    seed(corpus, "objfmt", "plain", plainobj)
    seed(corpus, "objfmt", "empty", make_object(b"", kind=6, compress=False))
    for mode, obj, name in [(0, lz4obj, "lz4"), (0, plainobj, "plain"), (1, lz4obj, "fixed-lz4"),
                            (0x80, lz4obj, "hash-thread")]:
        seed(corpus, "object", name, bytes([mode]) + struct.pack("<H", 999) + obj)
    seed(corpus, "object", "write-lz4", bytes([2, 0, 1, 3, 0]) + text)
    seed(corpus, "object", "write-plain", bytes([2, 0, 1, 2, 1]) + struct.pack("<IB", 70, 1) + text)
    seed(corpus, "object", "zeros-lz4", bytes([1, 0, 16]) + make_object(bytes(300000))[:2000])

    seed(corpus, "manifest", "v2", bytes([1]) + struct.pack("<H", 99) + make_manifest())
    seed(corpus, "manifest", "v1", bytes([1]) + struct.pack("<H", 7) +
         make_manifest(bundles=False, version=1))

    members = [b"PG_VERSION content\n", b"", bytes(300)]
    spec = b"".join(struct.pack("<HbB", len(m), 0, 1) for m in members)
    seed(corpus, "bundle", "objects", bytes([1 | 2]) + struct.pack("<H", 100) +
         bytes([len(members)]) + spec + b"".join(members))
    raw = b"".join(make_object(m, compress=False) for m in members)
    spec = b"".join(struct.pack("<HbB", len(make_object(m, compress=False)), 0, 1) for m in members)
    seed(corpus, "bundle", "raw", bytes([0]) + struct.pack("<H", 4096) + bytes([len(members)]) +
         spec + raw)

    for fmt, name in [(tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu"),
                      (tarfile.PAX_FORMAT, "pax")]:
        seed(corpus, "tar", name, bytes([0]) + struct.pack("<H", 511) +
             make_tar(fmt, long_names=fmt != tarfile.USTAR_FORMAT))

    for i, name in enumerate(["000000010000000000000002", "00000002.history",
                              "000000010000000A000000FE.partial",
                              "000000010000000000000002.00000028.backup"]):
        seed(corpus, "walname", "name%d" % i, bytes([0, 4]) + name.encode())
    seed(corpus, "walname", "lsn", bytes([1, 0]) + b"16/B374D848")
    seed(corpus, "walname", "history", bytes([2, 0]) +
         b"1\t0/3000000\tno recovery target specified\n\n# comment\n2\t0/5000148\tbefore 2026\r\n")

    for i, s in enumerate(["now", "30 minutes ago", "2 weeks ago", "2026-11-25 10:00:00",
                           "2026-11-25 10:00:00.5+01", "2026-11-25T10:00:00Z",
                           "2026-03-29 02:30:00", "2026-10-25 02:30:00 -03:30", "  1 DAY AGO  "]):
        seed(corpus, "timeparse", "t%d" % i, bytes([i % 6]) + struct.pack("<I", 1795601700) +
             s.encode())

    seed(corpus, "walreader", "real-start", bytes([0, 1, 0]) +
         wal_prefix("000000010000000000000007.lz4", 24576))
    seed(corpus, "walreader", "real-partial", bytes([2, 3, 0]) +
         wal_prefix("000000010000000000000009.partial.lz4", 16384))
    seed(corpus, "walreader", "model", wal_model_input(1))
    seed(corpus, "walreader", "model-small-pages", wal_model_input(1 | 0x48))

    seed(corpus, "remoteproto", "session", bytes([0]) + rp_session())
    seed(corpus, "remoteproto", "payloads", rp_payloads())

    seed(corpus, "s3xml", "list", bytes([0]) + LIST)
    seed(corpus, "s3xml", "error", bytes([1]) + ERROR)
    seed(corpus, "s3xml", "entities", bytes([2]) + b"a&amp;b&lt;&gt;&quot;&apos;&#65;&#x42;&#x1F600;")
    seed(corpus, "s3xml", "iso", bytes([3]) + b"2026-11-25T10:15:00.123Z")
    seed(corpus, "s3xml", "http", bytes([3]) + b"Wed, 25 Nov 2026 10:15:00 GMT")


if __name__ == "__main__":
    main()
