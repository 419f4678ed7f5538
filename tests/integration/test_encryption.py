"""Encryption at rest (docs/encryption.md) against real servers: PostgreSQL 15 archiving with
wal-push, walvault backups and point-in-time restores, into posix directories, S3 buckets (Ceph
RGW) and a backup server over SSH.

The module's cluster (one, 1 MiB segments) archives through one archive_command that runs wal-push
for four configurations in turn: symmetric (encrypt_key_file, 32 random bytes) into a posix, an ssh
and an S3 repository at once; public-key (encrypt_public_key_file only, the database host of the
docs, with archive_async = on: the background pusher) into three more; a passphrase key file
(scrypt) into a posix one; and a plain posix repository, the control. A marker string lives in a
table and in a restore point's name, and a 20 MiB random file in the data directory (S3 multipart).
Each configuration takes a backup; then two batches of rows, and each encrypted repository is
restored on its own (a configuration naming that repository alone, with its own prefetch spool, with
the private key for public-key mode) to a time between the batches and started: exactly batch 0 and
1, the marker row and the file. --name and --xid read the encrypted restore-point and xid objects; a
restored server promotes and archives timeline 2 into a copy of an encrypted repository, which
restores onto it.

Then: the marker, the key material and the passphrase are in no byte of any file or object of an
encrypted repository, while the marker is in the plain one (wal, backup and restore-point
objects: the grep can fail); a public-key-only host writes but cannot read ("needs the private
key", wal-fetch exit 128, restore and verify exit 19, a real archive recovery stops with FATAL);
a re-push is decided by the keyed digest (identical: success, different: conflict) in both
modes; one wal-push into three encrypted repositories gives each its own key record, and each
serves the segment alone; an object of another repository under the same name and key file is
refused; hex and base64 key files are the raw key; a wrong passphrase is a wrong key; concurrent
first uses of an empty bucket agree on one key record, and tampering in that bucket is refused.

A second, small cluster (its own xdist group: it runs beside the first) archives into a symmetric
posix repository and a plain one and takes two backups. Its cases each take a copy of a repository:
every configuration mistake has its own one-line message and exit code (wrong key, missing key
file, mode 0644, plain configuration on an encrypted repository and the reverse, the wrong mode),
and every tampering is refused by wal-fetch or restore and reported by verify, with nothing
partial left at the destination: an object under another segment's name, a 64 KiB chunk swapped
between two segments, truncations and extensions (plain, and at a chunk boundary with the
trailer rewritten as a careful forger would), two chunks of a backup file reordered, a sealed
chunk swapped between the chunk objects of a file of more than 64 MiB, a manifest of another
backup in a backup's place. Each refusal names its object once and says what it found.
"""

import hashlib
import os
import re
import shutil
import struct
import time
import uuid

import pytest

from s3_server import s3_server  # noqa: F401 - fixture
from ssh_server import remote_helper, ssh_server  # noqa: F401 - fixtures
from test_offsite import Conf, new_bucket, no_uploads_left, posix_section, s3_section
from test_restore_pitr import Restorer, bb, commit_batch, module_dir, take_backup, utc
from utils import (Postgres, chown_pg, make_pg_dir, popen, read_bytes, run, tree_files,
                   wait_until)

pytestmark = pytest.mark.xdist_group("encryption")
TAMPER_GROUP = pytest.mark.xdist_group("encryption-tamper")

FETCH_ABORT = 128  # wal-fetch in archive recovery: PostgreSQL stops instead of promoting
EXIT_CONFIG, EXIT_CORRUPT, EXIT_REFUSED, EXIT_KEY, EXIT_PRIVKEY = 3, 5, 13, 15, 19

OBJ_MAGIC = b"\x89WVOBJ\r\n"
TRAILER = 128
META = 164  # the metadata block at the end of a version-3 payload (objfmt.h)
SEALED_CHUNK = 64 * 1024 + 16  # a 64 KiB chunk and its GCM tag (crypt.h)
PASSPHRASE = "correct horse battery staple, for walvault tests"
BIG_FILE = "wv_big_file"  # put into the module cluster's data directory: 20 MiB
LARGE_FILE = "wv_large_file"  # put into the tamper cluster's data directory: more than 64 MiB


# --- keys and configurations --------------------------------------------------------------------

def key_file(path, data, mode=0o600):
    with open(path, "wb") as f:
        f.write(data)
    chown_pg(path)
    os.chmod(path, mode)
    return path


def x25519_pair(d, name):
    """(private PEM path, public PEM path), made with openssl as docs/encryption.md says."""
    priv = os.path.join(d, name + ".pem")
    pub = os.path.join(d, name + ".pub")
    run(["openssl", "genpkey", "-algorithm", "X25519", "-out", priv], as_postgres=False)
    run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], as_postgres=False)
    for p in (priv, pub):
        chown_pg(p)
        os.chmod(p, 0o600)
    return priv, pub


def enc_global(compress="none", key=None, public=None, private=None, spool=None, extra=""):
    """[global] with the key settings given; spool: the prefetch spool directory (else prefetch
    is off: a tampered object is then read by the call itself, and no fetcher lingers)."""
    g = "[global]\nprocess_max = 8\ncompress = %s\n" % compress
    if spool:
        g += "spool_path = %s\n" % make_pg_dir(spool)
    else:
        g += "fetch_ahead = 0\n"
    for k, v in (("encrypt_key_file", key), ("encrypt_public_key_file", public),
                 ("encrypt_private_key_file", private)):
        if v:
            g += "%s = %s\n" % (k, v)
    return g + extra


def pem_body(path):
    """The base64 line of a PEM file (what a leak of the key would contain)."""
    lines = [ln for ln in open(path).read().splitlines() if ln and not ln.startswith("-----")]
    assert lines, path
    return "".join(lines).encode()


def chained_archive_command(wv, confs):
    return " && ".join(wv.archive_command(c.config) for c in confs)


# --- reading what a repository holds --------------------------------------------------------------

def posix_contents(root):
    """{relative path: bytes} of every file below root (temporary files too: they are bytes the
    repository holds)."""
    return {rel: read_bytes(os.path.join(root, rel)) for rel in sorted(tree_files(root))}


def s3_contents(s3, bucket, prefix="pg/"):
    c = s3.client()
    return {o["key"][len(prefix):]: c.get_object(bucket, o["key"])
            for o in c.list_objects(bucket, prefix)}


def holding(contents, needle):
    return sorted(k for k, v in contents.items() if needle in v)


def object_version(data):
    assert data[:8] == OBJ_MAGIC, data[:16]
    return struct.unpack_from("<H", data, 8)[0]


def is_sidecar_text(key):
    """Objects that stay raw on purpose: repository info and key records, keep flags."""
    return key == "walvault.repo" or key.startswith("keys/") or key.endswith("/keep")


def wal_key(name):
    if name.endswith(".history"):
        return "wal/history/" + name
    return "wal/%s/%s" % (name[:16], name)


def error_lines(text):
    return [ln for ln in text.splitlines() if "error:" in ln and "hint:" not in ln]


def no_secret_in(text, *secrets):
    for s in secrets:
        assert s not in text, "a secret appears in the output:\n" + text


# --- the module's cluster -------------------------------------------------------------------------

class State:
    pass


STORES = ("posix", "ssh", "s3")


@pytest.fixture(scope="module")
def enc(basetemp, wv, s3_server, ssh_server, remote_helper):  # noqa: F811
    d = module_dir(basetemp, "encryption")
    s = State()
    s.dir = d
    kd = make_pg_dir(os.path.join(d, "keys"), 0o700)
    s.sym_material = os.urandom(32)
    s.sym_key = key_file(os.path.join(kd, "sym.key"), s.sym_material)
    s.pass_key = key_file(os.path.join(kd, "pass.key"), (PASSPHRASE + "\n").encode())
    s.priv, s.pub = x25519_pair(kd, "repo")
    s.buckets = {"sym": new_bucket(s3_server), "pub": new_bucket(s3_server)}
    s.paths = {}
    sections = {}
    for mode in ("sym", "pub"):
        s.paths[mode, "posix"] = make_pg_dir(os.path.join(d, "%s-posix" % mode))
        s.paths[mode, "ssh"] = make_pg_dir(os.path.join(d, "%s-ssh" % mode), 0o750)
        for i, store in enumerate(STORES, start=1):
            if store == "posix":
                sec = lambda n, p=s.paths[mode, "posix"]: posix_section(p, n)  # noqa: E731
            elif store == "ssh":
                sec = lambda n, p=s.paths[mode, "ssh"]: ssh_server.repo_section(  # noqa: E731
                    p, remote_helper, n)
            else:
                sec = lambda n, b=s.buckets[mode]: s3_section(s3_server, b, d, n)  # noqa: E731
            sections[mode, store] = sec
    s.paths["pass", "posix"] = make_pg_dir(os.path.join(d, "pass-posix"))
    s.paths["plain", "posix"] = make_pg_dir(os.path.join(d, "plain-posix"))

    def conf(name, glob, secs):
        return Conf(os.path.join(d, name + ".conf"), secs, glob)

    # each configuration its own prefetch spool: a restore's WAL comes through its repository
    def sp(name):
        return os.path.join(d, "spool-" + name)

    g_sym = enc_global(key=s.sym_key)
    # the database host: the public key only, archiving through the background pusher
    g_pub = enc_global(public=s.pub, spool=sp("pub-all"), extra="archive_async = on\n")
    # writers
    s.sym_all = conf("sym-all", g_sym, [sections["sym", st](i) for i, st in
                                        enumerate(STORES, start=1)])
    s.pub_all = conf("pub-all", g_pub, [sections["pub", st](i) for i, st in
                                        enumerate(STORES, start=1)])
    s.pass_conf = conf("pass", enc_global(compress="lz4", key=s.pass_key, spool=sp("pass")),
                       [posix_section(s.paths["pass", "posix"], 1)])
    s.plain = conf("plain", enc_global(), [posix_section(s.paths["plain", "posix"], 1)])
    # readers of one repository each
    s.read = {("pass", "posix"): s.pass_conf}
    for st in STORES:
        s.read["sym", st] = conf("sym-" + st, enc_global(key=s.sym_key, spool=sp("sym-" + st)),
                                 [sections["sym", st](1)])
        # the restore host: the private key only
        s.read["pub", st] = conf("priv-" + st, enc_global(private=s.priv, spool=sp("priv-" + st)),
                                 [sections["pub", st](1)])
    s.marker = "wvmarker" + uuid.uuid4().hex
    s.rp_name = s.marker + "-restore-point"

    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on",
            archive_command=chained_archive_command(wv, [s.sym_all, s.pub_all, s.pass_conf,
                                                         s.plain]),
            archive_timeout=0, track_commit_timestamp="on", autovacuum="off",
            max_wal_size="64MB")
    s.primary = pg
    s.restorers = []
    ok = False
    try:
        pg.start()
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        pg.sql("create table m (x text)")
        pg.sql("insert into m values (%s)", (s.marker,))
        pg.sql("select pg_create_restore_point(%s)", (s.rp_name,))
        commit_batch(pg, 0)
        pg.switch_wal_and_wait_archived()
        # a file larger than two S3 multipart parts (8 MiB): the sealed stream across parts
        data = os.urandom(20 * 1024 * 1024 + 777)
        s.big_sha = hashlib.sha256(data).hexdigest()
        big = os.path.join(pg.datadir, BIG_FILE)
        with open(big, "wb") as f:
            f.write(data)
        chown_pg(big)
        os.chmod(big, 0o600)
        del data
        s.backups = {}
        for name, c in (("sym", s.sym_all), ("pub", s.pub_all), ("pass", s.pass_conf),
                        ("plain", s.plain)):
            s.backups[name] = take_backup(wv, c, pg)
        time.sleep(1.1)  # the window starts after the last backup's STOP TIME (whole seconds)
        b1 = commit_batch(pg, 1)
        s.b1 = b1
        pg.sql("select pg_create_restore_point('after batch 1')")
        time.sleep(0.2)
        b2 = commit_batch(pg, 2)
        s.last_segment = pg.switch_wal_and_wait_archived()
        s.target = utc((b1["commit"] + b2["commit"]) / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        s.stats = pg.archiver_stats()
        assert s.stats["failed_count"] == 0, pg.log()[-4000:]
        s.sysid = pg.system_identifier()
        pg.stop()
        s.log = pg.log()
        ok = True
        yield s
    finally:
        for r in s.restorers:
            r.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()
        for b in s.buckets.values():
            s3_server.remove_bucket(b)
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


def restorer(enc, wv, conf):
    r = Restorer(wv, conf, enc.dir)
    enc.restorers.append(r)
    return r


def contents_of(enc, s3, mode, store):
    if store == "s3":
        return s3_contents(s3, enc.buckets[mode])
    return posix_contents(enc.paths[mode, store])


# --- 1. the archive -> backup -> PITR cycle, each mode on each store ------------------------------

CYCLES = [("sym", "posix"), ("sym", "ssh"), ("sym", "s3"), ("pub", "posix"), ("pub", "ssh"),
          ("pub", "s3"), ("pass", "posix")]


@pytest.mark.parametrize("mode, store", CYCLES, ids=["%s-%s" % c for c in CYCLES])
def test_pitr_cycle(enc, wv, mode, store):
    conf = enc.read[mode, store]
    r = restorer(enc, wv, conf)
    pg = r.restore_and_start("%s-%s" % (mode, store), "--to", enc.target)
    rows = {b: n for b, n in pg.sql("select batch, count(*) from t group by batch")}
    assert rows == {0: 10, 1: 10}, rows
    assert pg.sql_value("select x from m") == enc.marker
    assert hashlib.sha256(read_bytes(os.path.join(pg.datadir, BIG_FILE))).hexdigest() == \
        enc.big_sha
    out = pg.restore_result.stdout + pg.restore_result.stderr
    assert enc.backups[mode] in out, out
    no_secret_in(out, enc.sym_material.hex(), PASSPHRASE, pem_body(enc.priv).decode())
    # the WAL came through this repository's wal-fetch (the configuration names it alone)
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert os.path.realpath(conf.config) in auto, auto
    log = pg.log_since_start()
    assert re.search(r'restored log file "[0-9A-F]{24}" from archive', log), log[-3000:]
    assert "recovery stopping before commit" in log, log[-3000:]
    pg.stop()


@pytest.mark.parametrize("mode, store, how", [("pub", "posix", "name"), ("sym", "ssh", "xid")],
                         ids=["name-pub-posix", "xid-sym-ssh"])
def test_restore_point_and_xid_targets(enc, wv, mode, store, how):
    """--name reads the restore-point objects, --xid the transaction id ranges beside the WAL:
    small encrypted objects too."""
    r = restorer(enc, wv, enc.read[mode, store])
    args = ("--name", "after batch 1") if how == "name" else ("--xid", str(enc.b1["xid"]))
    pg = r.restore_and_start("%s-%s-%s" % (how, mode, store), *args)
    rows = {b: n for b, n in pg.sql("select batch, count(*) from t group by batch")}
    assert rows == {0: 10, 1: 10}, rows
    log = pg.log_since_start()
    if how == "name":
        assert 'recovery stopping at restore point "after batch 1"' in log, log[-3000:]
    else:
        assert "recovery stopping after commit of transaction %d" % enc.b1["xid"] in log, \
            log[-3000:]
    pg.stop()


def test_new_timeline_archived_and_restored(enc, wv):
    """A restored server promotes and archives into (a copy of) the encrypted repository: its
    history file and timeline 2's segments are encrypted objects, list shows timeline 2, and a
    restore to the end of the archive follows the history onto timeline 2."""
    d = make_pg_dir(os.path.join(enc.dir, "timeline2"), 0o755)
    copy = os.path.join(d, "repo")
    shutil.copytree(enc.paths["sym", "posix"], copy)
    for dd, dirs, files in os.walk(copy):
        for x in dirs + files:
            chown_pg(os.path.join(dd, x))
    chown_pg(copy)
    conf = Conf(os.path.join(d, "tl.conf"), [posix_section(copy, 1)],
                enc_global(key=enc.sym_key, spool=os.path.join(d, "spool")))
    r = restorer(enc, wv, conf)
    pg = r.restore("tl2", "--to", enc.target)
    r.verify(pg)
    r.start(pg, archive=True)
    assert pg.sql_value("select timeline_id from pg_control_checkpoint()") == 2
    commit_batch(pg, 9)
    pg.switch_wal_and_wait_archived()
    pg.stop()
    c = posix_contents(copy)
    tl2 = [k for k in c if k.startswith("wal/0000000200000000/")]
    assert "wal/history/00000002.history" in c and tl2, sorted(c)
    for k in ["wal/history/00000002.history"] + tl2:
        assert object_version(c[k]) == 3, k
    res = bb(wv, conf, "list", check=False)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^\s+timeline 2: ", res.stdout, re.M), res.stdout
    # the end of the archive is on both timelines: refused, each with its newest commit (the
    # commit times are in the objects' sealed metadata), until --timeline says which
    res = bb(wv, conf, "restore", "--pgdata", os.path.join(d, "ambiguous"), check=False)
    assert res.returncode == EXIT_REFUSED, (res.returncode, res.stderr)
    assert re.search(r"timeline 2 \(newest commit \d{4}-.*\) and timeline 1 \(newest commit ",
                     res.stderr), res.stderr
    assert not os.path.exists(os.path.join(d, "ambiguous"))
    pg2 = r.restore_and_start("tl2-end", "--timeline", "2")
    rows = {b: n for b, n in pg2.sql("select batch, count(*) from t group by batch")}
    assert rows == {0: 10, 1: 10, 9: 10}, rows
    assert pg2.sql_value("select timeline_id from pg_control_checkpoint()") == 3
    pg2.stop()


def test_every_object_is_encrypted(enc, s3_server):  # noqa: F811
    """Each encrypted repository holds a key record, and every WAL, restore-point and backup
    object in it is a version-3 (encrypted) object; the plain one holds version 2 and no record."""
    for mode in ("sym", "pub", "pass"):
        for store in (STORES if mode != "pass" else ("posix",)):
            c = contents_of(enc, s3_server, mode, store)
            where = "%s-%s" % (mode, store)
            assert "walvault.repo" in c, (where, sorted(c)[:20])
            assert [k for k in c if re.match(r"^keys/[0-9a-f]{8}$", k)], (where, sorted(c)[:20])
            objs = [k for k in c if (k.startswith("wal/") or k.startswith("backup/"))
                    and not is_sidecar_text(k) and ".wvtmp-" not in k]
            assert any(k.endswith(".rp") for k in objs), (where, objs)
            assert any(k.endswith("/backup.manifest") for k in objs), (where, objs)
            bad = [k for k in objs if c[k][:8] != OBJ_MAGIC or object_version(c[k]) != 3]
            assert bad == [], (where, bad)
    c = posix_contents(enc.paths["plain", "posix"])
    assert not [k for k in c if k.startswith("keys/")]
    segs = [k for k in c if re.match(r"^wal/[0-9A-F]{16}/[0-9A-F]{24}$", k)]
    assert segs and all(object_version(c[k]) == 2 for k in segs)


# --- 2. the marker, the key and the passphrase are in no byte of an encrypted repository -------

def test_marker_in_no_encrypted_byte(enc, s3_server):  # noqa: F811
    marker = enc.marker.encode()
    # control: the plain repository (compress = none) shows the marker in WAL, in the backup and
    # in the restore point's sidecar, so the grep below can fail
    plain = posix_contents(enc.paths["plain", "posix"])
    found = holding(plain, marker)
    assert any(k.startswith("wal/") and re.search(r"/[0-9A-F]{24}$", k) for k in found), found
    assert any(k.startswith("backup/%s/" % enc.backups["plain"]) for k in found), found
    assert any(k.endswith(".rp") for k in found), found

    secrets = [marker, enc.sym_material, enc.sym_material.hex().encode(), PASSPHRASE.encode(),
               pem_body(enc.priv)]
    checked = 0
    for mode in ("sym", "pub", "pass"):
        for store in (STORES if mode != "pass" else ("posix",)):
            c = contents_of(enc, s3_server, mode, store)
            assert sum(len(v) for v in c.values()) > 2 * 1024 * 1024, (mode, store)
            for s in secrets:
                assert holding(c, s) == [], (mode, store, s[:12])
            checked += len(c)
    assert checked > 100, checked
    # nor in any log: the primary's (wal-push's messages) and the restored servers'
    logs = enc.log + "".join(pg.log() for r in enc.restorers for pg in r.servers)
    for s in (enc.sym_material.hex(), PASSPHRASE, pem_body(enc.priv).decode()):
        assert s not in logs


# --- 3. a public-key-only host writes, and cannot read --------------------------------------------

def test_public_key_host_writes_but_cannot_read(enc, wv):
    # it archived every segment (through the background pusher) and took a backup (the
    # fixture), into all three stores
    assert enc.stats["failed_count"] == 0
    assert enc.backups["pub"]
    lock = os.path.join(enc.dir, "spool-pub-all", "%016X" % enc.sysid, "archive", "pusher.lock")
    assert os.path.isfile(lock), tree_files(os.path.join(enc.dir, "spool-pub-all"))
    d = make_pg_dir(os.path.join(enc.dir, "pub-only"), 0o755)
    pg_wal = make_pg_dir(os.path.join(d, "pg_wal"))
    dest = os.path.join(pg_wal, "RECOVERYXLOG")
    r = wv.fetch(enc.last_segment, dest, config=enc.pub_all.config, cwd=d)
    assert r.returncode == FETCH_ABORT, (r.returncode, r.stderr)
    assert "needs the private key" in r.stderr, r.stderr
    assert "encrypt_private_key_file" in r.stderr, r.stderr
    assert os.listdir(pg_wal) == []

    target = os.path.join(d, "target")
    r = bb(wv, enc.pub_all, "restore", "--pgdata", target, "--to", enc.target, check=False)
    assert r.returncode == EXIT_PRIVKEY, (r.returncode, r.stdout, r.stderr)
    assert "needs the private key" in r.stderr, r.stderr
    assert not os.path.exists(target)

    # verify refuses once: an intact repository is not reported as one problem per object
    r = bb(wv, enc.pub_all, "verify", "--repo", "1", check=False)
    assert r.returncode == EXIT_PRIVKEY, (r.returncode, r.stdout, r.stderr)
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    assert "repo1: verify reads every object, which needs the private key " \
        "(encrypt_private_key_file)" in errors[0], r.stderr
    assert "problem" not in r.stdout + r.stderr, r.stdout + r.stderr
    r = bb(wv, enc.read["pub", "posix"], "list", check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^repo1 \(.*\): .*, encrypted with public key [0-9a-f]{16}$", r.stdout,
                     re.M), r.stdout
    r = bb(wv, enc.plain, "list", check=False)
    assert r.returncode == 0 and "encrypted" not in r.stdout, r.stdout
    # with the private key (the restore host) the same repository verifies
    r = bb(wv, enc.read["pub", "posix"], "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^verify repo1: checked \d+ objects .*, 0 problems", r.stdout, re.M), \
        r.stdout

    # the same segment with the private key (the restore host)
    r = wv.fetch(enc.last_segment, dest, config=enc.read["pub", "posix"].config, cwd=d)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(dest) == 1024 * 1024


def test_archive_recovery_stops_on_a_public_key_host(enc, wv):
    """A restored server whose restore_command has only the public key stops with FATAL at the
    first segment (wal-fetch exits 128) instead of promoting without the archived WAL."""
    r = restorer(enc, wv, enc.read["pub", "posix"])
    pg = r.restore("pub-recovery", "--to", enc.target)
    auto_path = os.path.join(pg.datadir, "postgresql.auto.conf")
    auto = open(auto_path).read()
    priv = os.path.realpath(enc.read["pub", "posix"].config)
    assert priv in auto, auto
    with open(auto_path, "w") as f:
        f.write(auto.replace(priv, os.path.realpath(enc.pub_all.config)))
    pg._base_conf()
    pg.start(wait=False)
    wait_until(lambda: not pg.running() and "needs the private key" in pg.log(), timeout=120,
               what="the server to stop at the first segment")
    log = pg.log()
    assert re.search(r'FATAL: .*could not restore file "[0-9A-F]{24}" from archive', log), \
        log[-3000:]
    assert "reading the object needs the private key (encrypt_private_key_file)" in log
    assert "selected new timeline ID" not in log and "archive recovery complete" not in log


def test_wrong_passphrase(enc, wv):
    d = make_pg_dir(os.path.join(enc.dir, "wrong-pass"), 0o700)
    kf = key_file(os.path.join(d, "pass.key"), b"correct horse battery staple, for walvault test\n")
    conf = Conf(os.path.join(d, "w.conf"), [posix_section(enc.paths["pass", "posix"], 1)],
                enc_global(key=kf))
    r = bb(wv, conf, "list", check=False)
    assert r.returncode == EXIT_KEY, (r.returncode, r.stderr)
    assert "repo1: wrong encryption key for this repository" in r.stderr, r.stderr
    no_secret_in(r.stderr + r.stdout, "correct horse", PASSPHRASE)


@pytest.mark.parametrize("form", ["hex", "base64"])
def test_key_file_forms_open_the_same_repository(enc, wv, form):
    """docs/encryption.md: 64 hex digits or base64 of 32 bytes (one trailing newline) are the same
    key material as the raw 32 bytes."""
    import base64
    d = make_pg_dir(os.path.join(enc.dir, "form-" + form), 0o700)
    text = enc.sym_material.hex() if form == "hex" else \
        base64.b64encode(enc.sym_material).decode()
    kf = key_file(os.path.join(d, "k"), (text + "\n").encode())
    conf = Conf(os.path.join(d, "f.conf"), [posix_section(enc.paths["sym", "posix"], 1)],
                enc_global(key=kf))
    r = bb(wv, conf, "list", check=False)
    assert r.returncode == 0, r.stderr
    assert enc.backups["sym"] in r.stdout, r.stdout
    assert re.search(r"^repo1 \(.*\): .*, encrypted with symmetric key [0-9a-f]{16}$", r.stdout,
                     re.M), r.stdout
    dest = os.path.join(d, "seg")
    r = wv.fetch(enc.last_segment, dest, config=conf.config, cwd=d)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(dest) == 1024 * 1024


@pytest.mark.parametrize("mode", ["pub", "sym"])
def test_repush_decided_by_keyed_digest(enc, wv, mode):
    """PostgreSQL archiving a segment again: identical content is success without reading the
    object back (a public-key host cannot), different content is a conflict; nothing replaced."""
    d = make_pg_dir(os.path.join(enc.dir, "repush-" + mode), 0o755)
    seg = os.path.join(d, enc.last_segment)
    r = wv.fetch(enc.last_segment, seg, config=enc.plain.config, cwd=d)
    assert r.returncode == 0, r.stderr
    chown_pg(seg)
    conf = enc.pub_all if mode == "pub" else enc.sym_all
    key = wal_key(enc.last_segment)
    stored = read_bytes(os.path.join(enc.paths[mode, "posix"], key))
    r = wv.push(seg, config=conf.config, cwd=d)
    assert r.returncode == 0, r.stderr
    for n in (1, 2, 3):
        assert "%s is already archived with identical content in repo%d" % (
            enc.last_segment, n) in r.stderr, r.stderr
    data = bytearray(read_bytes(seg))
    data[len(data) // 2] ^= 0xFF
    write(seg, bytes(data))
    r = wv.push(seg, config=conf.config, cwd=d)
    assert r.returncode == 6, (r.returncode, r.stderr)
    assert "already archived with different content" in r.stderr, r.stderr
    assert read_bytes(os.path.join(enc.paths[mode, "posix"], key)) == stored


# --- 6. one wal-push into three encrypted repositories; each serves alone -------------------------

def test_one_push_three_repositories_each_its_own_keys(enc, wv, s3_server):  # noqa: F811
    d = make_pg_dir(os.path.join(enc.dir, "each"), 0o755)
    pg_wal = make_pg_dir(os.path.join(d, "pg_wal"))
    r = wv.fetch(enc.last_segment, os.path.join(pg_wal, "plain"), config=enc.plain.config, cwd=d)
    assert r.returncode == 0, r.stderr
    want = read_bytes(os.path.join(pg_wal, "plain"))
    records, objects = {}, {}
    for store in STORES:
        dest = os.path.join(pg_wal, store)
        r = wv.fetch(enc.last_segment, dest, config=enc.read["sym", store].config, cwd=d)
        assert r.returncode == 0, (store, r.stderr)
        assert read_bytes(dest) == want, store
        c = contents_of(enc, s3_server, "sym", store)
        records[store] = c["keys/00000001"]
        objects[store] = c[wal_key(enc.last_segment)]
    # every repository has its own data key: different records, different objects
    assert len(set(records.values())) == 3
    assert len(set(objects.values())) == 3
    for mode in ("sym", "pub"):
        no_uploads_left(s3_server, enc.buckets[mode])
        sizes = [o["size"] for o in s3_server.client().list_objects(enc.buckets[mode],
                                                                    "pg/backup/")]
        assert max(sizes) > 16 * 1024 * 1024, "no backup object of more than two parts"

    # the posix repository's object under the same name in (a copy of) the ssh one: the same key
    # file opens both, but not each other's objects
    copy = os.path.join(d, "ssh-copy")
    shutil.copytree(enc.paths["sym", "ssh"], copy)
    for dd, dirs, files in os.walk(copy):
        for x in dirs + files:
            chown_pg(os.path.join(dd, x))
    chown_pg(copy)
    key = wal_key(enc.last_segment)
    shutil.copyfile(os.path.join(enc.paths["sym", "posix"], key), os.path.join(copy, key))
    conf = Conf(os.path.join(d, "copy.conf"), [posix_section(copy, 1)], enc_global(key=enc.sym_key))
    dest = os.path.join(pg_wal, "RECOVERYXLOG")
    r = wv.fetch(enc.last_segment, dest, config=conf.config, cwd=d)
    assert r.returncode == FETCH_ABORT, (r.returncode, r.stderr)
    lines = [ln for ln in error_lines(r.stderr) if key in ln]
    assert lines and "repo1: " in lines[0], r.stderr
    assert "not this repository's data key" in lines[0], r.stderr
    assert "hint: the object belongs to another repository" in r.stderr, r.stderr
    assert not os.path.exists(dest)
    r = bb(wv, conf, "verify", check=False)
    assert r.returncode == EXIT_KEY, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in error_lines(r.stderr) if key in ln]
    assert len(lines) == 1 and "not this repository's data key" in lines[0], r.stderr
    assert re.search(r"^verify repo1: .*, 1 problem,", r.stdout, re.M), r.stdout


def first_use_race(wv, d, conf, segments, contents):
    """Several wal-push at once on an empty repository with the same key: one key record wins,
    every process writes under it, and every segment then fetches."""
    procs = [popen(wv.cmd("wal-push", seg, config=conf.config), cwd=d) for seg in segments]
    for p, seg in zip(procs, segments):
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 0, (seg, p.returncode, errs)
    c = contents()
    assert [k for k in c if k.startswith("keys/")] == ["keys/00000001"], sorted(c)
    for seg in segments:
        name = os.path.basename(seg)
        dest = os.path.join(d, "fetched-" + name)
        r = wv.fetch(name, dest, config=conf.config, cwd=d)
        assert r.returncode == 0, (name, r.stderr)
        assert read_bytes(dest) == read_bytes(seg), name


def plain_segments(wv, enc_or_t, conf, names, d):
    out = []
    for name in names:
        dest = os.path.join(d, name)
        r = wv.fetch(name, dest, config=conf.config, cwd=d)
        assert r.returncode == 0, r.stderr
        chown_pg(dest)
        out.append(dest)
    return out


@pytest.mark.parametrize("mode", ["sym", "pub"])
def test_first_use_race_on_s3(enc, wv, s3_server, mode):  # noqa: F811
    """The race on an S3 bucket, then tampering there."""
    d = make_pg_dir(os.path.join(enc.dir, "race-s3-" + mode), 0o755)
    names = sorted(os.path.basename(k) for k in posix_contents(enc.paths["plain", "posix"])
                   if re.match(r"^wal/[0-9A-F]{16}/[0-9A-F]{24}$", k))[:6]
    assert len(names) == 6, names
    segs = plain_segments(wv, enc, enc.plain, names, d)
    bucket = new_bucket(s3_server)
    try:
        g = enc_global(key=enc.sym_key) if mode == "sym" else \
            enc_global(public=enc.pub, private=enc.priv)
        conf = Conf(os.path.join(d, "race.conf"), [s3_section(s3_server, bucket, d, 1)], g)
        first_use_race(wv, d, conf, segs, lambda: s3_contents(s3_server, bucket))
        # tampering in the bucket: an object under another segment's name, a sealed chunk
        # swapped between two segments; each refused, nothing left at the destination
        key = lambda i: "pg/" + wal_key(names[i])  # noqa: E731
        s3_server.put_object(bucket, key(1), s3_server.get_object(bucket, key(0)))
        a, b = s3_server.get_object(bucket, key(2)), s3_server.get_object(bucket, key(3))
        ha, _ = parts(a)
        off = ha + 2 * SEALED_CHUNK
        s3_server.put_object(bucket, key(2), a[:off] + b[off:off + SEALED_CHUNK] +
                             a[off + SEALED_CHUNK:])
        pg_wal = make_pg_dir(os.path.join(d, "pg_wal"))
        for i, fragment in ((1, "renamed or copied"), (2, AUTH)):
            r = wv.fetch(names[i], os.path.join(pg_wal, "RECOVERYXLOG"), config=conf.config,
                         cwd=d)
            assert r.returncode == FETCH_ABORT, (r.returncode, r.stderr)
            lines = [ln for ln in error_lines(r.stderr) if wal_key(names[i]) in ln]
            assert lines and "repo1: " in lines[0] and fragment in lines[0], r.stderr
            assert os.listdir(pg_wal) == []
        verify_reports(wv, conf, [wal_key(names[1]), wal_key(names[2])])
    finally:
        s3_server.remove_bucket(bucket)


# ==================================================================================================
# The second cluster: configuration mistakes and tampering, on copies of posix repositories.

@pytest.fixture(scope="module")
def tamper(basetemp, wv):
    d = module_dir(basetemp, "enc-tamper")
    s = State()
    s.dir = d
    kd = make_pg_dir(os.path.join(d, "keys"), 0o700)
    s.material = os.urandom(32)
    s.key = key_file(os.path.join(kd, "sym.key"), s.material)
    s.repo = make_pg_dir(os.path.join(d, "repo"))
    s.plain_repo = make_pg_dir(os.path.join(d, "plain"))
    s.conf = Conf(os.path.join(d, "sym.conf"), [posix_section(s.repo, 1)], enc_global(key=s.key))
    s.plain_conf = Conf(os.path.join(d, "plain.conf"), [posix_section(s.plain_repo, 1)],
                        enc_global())
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=chained_archive_command(wv, [s.conf, s.plain_conf]),
            autovacuum="off", max_wal_size="64MB")
    try:
        pg.start()
        # a table of more than 1 MiB: a backup file of its own, of many chunks
        pg.sql("create table big as select g, md5(g::text) || md5((g * 7)::text) as m "
               "from generate_series(1, 40000) g")
        pg.switch_wal_and_wait_archived()
        s.b1 = take_backup(wv, s.conf, pg)
        pg.sql("insert into big select g, md5(g::text) from generate_series(1, 20000) g")
        # a file of more than 64 MiB in the data directory: stored as chunk objects (backup 2)
        data = os.urandom(65 * 1024 * 1024 + 12345)
        s.large_sha = hashlib.sha256(data).hexdigest()
        large = os.path.join(pg.datadir, LARGE_FILE)
        write(large, data)
        os.chmod(large, 0o600)
        del data
        s.b2 = take_backup(wv, s.conf, pg)
        pg.sql("insert into big select g, md5(g::text) from generate_series(1, 20000) g")
        pg.switch_wal_and_wait_archived()
        assert pg.archiver_stats()["failed_count"] == 0, pg.log()[-3000:]
        s.sysid = pg.system_identifier()
        pg.stop()
        s.keys = sorted(tree_files(s.repo))
        s.chunks = [k for k in s.keys if k.startswith("backup/%s/chunk/pgdata/%s/" % (s.b2,
                                                                                   LARGE_FILE))]
        assert len(s.chunks) == 2, [k for k in s.keys if "/chunk/" in k]
        s.segments = sorted(os.path.basename(k) for k in s.keys
                            if re.match(r"^wal/[0-9A-F]{16}/[0-9A-F]{24}$", k))
        assert len(s.segments) >= 4, s.segments
        yield s
    except BaseException:
        print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        raise
    finally:
        pg.cleanup()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


_n = [0]


class Case:
    """A copy of a repository of the tamper cluster (as [repo1]) with its own configuration."""

    def __init__(self, t, src, glob):
        _n[0] += 1
        self.dir = make_pg_dir(os.path.join(t.dir, "case%d" % _n[0]), 0o755)
        self.repo = os.path.join(self.dir, "repo")
        shutil.copytree(src, self.repo, symlinks=True)
        for dd, dirs, files in os.walk(self.repo):
            for x in dirs + files:
                chown_pg(os.path.join(dd, x))
        chown_pg(self.repo)
        self.conf = Conf(os.path.join(self.dir, "walvault.conf"), [posix_section(self.repo, 1)],
                         glob)
        self.config = self.conf.config
        self.pg_wal = make_pg_dir(os.path.join(self.dir, "pg_wal"))
        self.target = os.path.join(self.dir, "target")

    def p(self, key):
        return os.path.join(self.repo, key)

    def remove(self):
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cases(tamper):
    made = []

    def make(src=None, glob=None):
        c = Case(tamper, src or tamper.repo, enc_global(key=tamper.key) if glob is None else glob)
        made.append(c)
        return c
    yield make
    for c in made:
        c.remove()


def snapshot(root):
    out = {}
    for dd, dirs, files in os.walk(root):
        for x in dirs + files:
            path = os.path.join(dd, x)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256(read_bytes(path)).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_mode, digest)
    return out


def segment_file(wv, t, c, name):
    """The archived segment `name` as a file in the case's directory (from the plain
    repository): something to wal-push."""
    dest = os.path.join(c.dir, name)
    r = wv.fetch(name, dest, config=t.plain_conf.config, cwd=c.dir)
    assert r.returncode == 0, r.stderr
    chown_pg(dest)
    return dest


# --- 4. configuration mistakes: each its own message ----------------------------------------------

@TAMPER_GROUP
def test_wrong_key(tamper, wv, cases):
    c = cases()
    seg = tamper.segments[-1]
    plain = segment_file(wv, tamper, c, seg)
    other = os.urandom(32)
    kf = key_file(os.path.join(c.dir, "other.key"), other)
    c.conf = Conf(c.config, [posix_section(c.repo, 1)], enc_global(key=kf))
    before = snapshot(c.repo)
    for argv, code in ((wv.cmd("wal-push", plain, config=c.config), EXIT_KEY),
                       (wv.cmd("wal-fetch", seg, os.path.join(c.pg_wal, "X"), config=c.config),
                        FETCH_ABORT),
                       (wv.cmd("basebackup", "list", config=c.config), EXIT_KEY)):
        r = run(argv, check=False, cwd=c.dir)
        assert r.returncode == code, (argv, r.returncode, r.stderr)
        assert "repo1: wrong encryption key for this repository" in r.stderr, r.stderr
        assert len([ln for ln in error_lines(r.stderr) if "wrong encryption key" in ln]) == 1
        no_secret_in(r.stderr + r.stdout, other.hex(), tamper.material.hex())
    assert os.listdir(c.pg_wal) == []
    assert snapshot(c.repo) == before


@TAMPER_GROUP
def test_key_file_missing(tamper, wv, cases):
    missing = os.path.join(tamper.dir, "keys", "no-such.key")
    c = cases(glob=enc_global(key=missing))
    before = snapshot(c.repo)
    for argv, code in ((wv.cmd("basebackup", "list", config=c.config), EXIT_CONFIG),
                       (wv.cmd("wal-fetch", tamper.segments[0], os.path.join(c.pg_wal, "X"),
                               config=c.config), FETCH_ABORT)):
        r = run(argv, check=False, cwd=c.dir)
        assert r.returncode == code, (argv, r.returncode, r.stderr)
        assert 'could not open key file "%s"' % missing in r.stderr, r.stderr
        assert "create it" in r.stderr, r.stderr  # the hint: what to do next
    assert os.listdir(c.pg_wal) == []
    assert snapshot(c.repo) == before


@TAMPER_GROUP
def test_key_file_mode_0644(tamper, wv, cases):
    c = cases()
    loose = key_file(os.path.join(c.dir, "loose.key"), tamper.material, mode=0o644)
    c.conf = Conf(c.config, [posix_section(c.repo, 1)], enc_global(key=loose))
    for argv, code in ((wv.cmd("basebackup", "list", config=c.config), EXIT_CONFIG),
                       (wv.cmd("wal-fetch", tamper.segments[0], os.path.join(c.pg_wal, "X"),
                               config=c.config), FETCH_ABORT)):
        r = run(argv, check=False, cwd=c.dir)
        assert r.returncode == code, (argv, r.returncode, r.stderr)
        assert 'key file "%s" has mode 0644' % loose in r.stderr, r.stderr
        assert "chmod 600 %s" % loose in r.stderr, r.stderr
        no_secret_in(r.stderr + r.stdout, tamper.material.hex())
    assert os.listdir(c.pg_wal) == []
    # the same file, chmod 600 as told: it opens the repository
    os.chmod(loose, 0o600)
    r = bb(wv, c.conf, "list", check=False)
    assert r.returncode == 0, r.stderr
    assert tamper.b1 in r.stdout and tamper.b2 in r.stdout


@TAMPER_GROUP
def test_plain_config_on_encrypted_repository(tamper, wv, cases):
    c = cases(glob=enc_global())
    seg = tamper.segments[-1]
    plain = segment_file(wv, tamper, c, seg)
    before = snapshot(c.repo)
    fragment = "repo1: the repository is encrypted, and the configuration has no encryption key"
    for argv, code in ((wv.cmd("basebackup", "list", config=c.config), EXIT_KEY),
                       (wv.cmd("wal-push", plain, config=c.config), EXIT_KEY),
                       (wv.cmd("wal-fetch", seg, os.path.join(c.pg_wal, "X"), config=c.config),
                        FETCH_ABORT)):
        r = run(argv, check=False, cwd=c.dir)
        assert r.returncode == code, (argv, r.returncode, r.stderr)
        assert fragment in r.stderr, r.stderr
        assert "encrypt_key_file" in r.stderr, r.stderr  # the hint names the setting
    assert os.listdir(c.pg_wal) == []
    assert snapshot(c.repo) == before


@TAMPER_GROUP
def test_encryption_config_on_plain_repository(tamper, wv, cases):
    c = cases(src=tamper.plain_repo)  # the plain repository, already used, with a key configured
    seg = tamper.segments[-1]
    plain = segment_file(wv, tamper, c, seg)
    before = snapshot(c.repo)
    fragment = ("repo1: the repository is not encrypted (it was first used without encryption), "
                "and the configuration sets an encryption key")
    for argv, code in ((wv.cmd("wal-push", plain, config=c.config), EXIT_KEY),
                       (wv.cmd("basebackup", "list", config=c.config), EXIT_KEY),
                       (wv.cmd("wal-fetch", seg, os.path.join(c.pg_wal, "X"), config=c.config),
                        FETCH_ABORT)):
        r = run(argv, check=False, cwd=c.dir)
        assert r.returncode == code, (argv, r.returncode, r.stderr)
        assert fragment in r.stderr, r.stderr
        assert "basebackup sync" in r.stderr, r.stderr  # the way to an encrypted copy
    assert os.listdir(c.pg_wal) == []
    assert snapshot(c.repo) == before
    assert not os.path.exists(c.p("keys"))


@TAMPER_GROUP
def test_public_key_config_on_symmetric_repository(tamper, wv, cases):
    priv, pub = x25519_pair(make_pg_dir(os.path.join(tamper.dir, "keys-x"), 0o700), "other")
    c = cases(glob=enc_global(public=pub, private=priv))
    r = bb(wv, c.conf, "list", check=False)
    assert r.returncode == EXIT_KEY, (r.returncode, r.stderr)
    assert ("repo1: the repository is encrypted with a symmetric key, and the configuration "
            "sets public-key encryption") in r.stderr, r.stderr
    no_secret_in(r.stderr, pem_body(priv).decode())


# --- 5. tampering: refused by wal-fetch and restore, reported by verify ---------------------------

def parts(data):
    """(header length, chunk stream end) of a version-3 object; asserts its layout."""
    assert data[:8] == OBJ_MAGIC and object_version(data) == 3, data[:16]
    hlen = struct.unpack_from("<H", data, 10)[0]
    payload = struct.unpack_from("<Q", data, len(data) - TRAILER + 16)[0]
    assert hlen + payload + TRAILER == len(data), (hlen, payload, len(data))
    return hlen, hlen + payload - META


def with_trailer_fixed(data, payload_size):
    """data's trailer with another payload size and its check recomputed (the trailer's check is
    no secret: whoever can write the repository can do this)."""
    trl = bytearray(data[-TRAILER:])
    struct.pack_into("<Q", trl, 16, payload_size)
    trl[124:128] = hashlib.sha256(bytes(trl[:124])).digest()[:4]
    return bytes(trl)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    chown_pg(path)


def seg_copied_under_other_name(t, c):
    a, b = t.segments[1], t.segments[2]
    shutil.copyfile(c.p(wal_key(a)), c.p(wal_key(b)))
    return [b]


def seg_chunk_swapped(t, c):
    a, b = t.segments[1], t.segments[2]
    da, db = read_bytes(c.p(wal_key(a))), read_bytes(c.p(wal_key(b)))
    ha, ea = parts(da)
    hb, eb = parts(db)
    assert (ha, ea, len(da)) == (hb, eb, len(db)), "the two segments differ in layout"
    assert (ea - ha) // SEALED_CHUNK >= 8
    off = ha + 3 * SEALED_CHUNK
    ca, cb = da[off:off + SEALED_CHUNK], db[off:off + SEALED_CHUNK]
    assert ca != cb
    write(c.p(wal_key(a)), da[:off] + cb + da[off + SEALED_CHUNK:])
    write(c.p(wal_key(b)), db[:off] + ca + db[off + SEALED_CHUNK:])
    return [a, b]


def seg_truncated(t, c):
    name = t.segments[1]
    data = read_bytes(c.p(wal_key(name)))
    write(c.p(wal_key(name)), data[:len(data) - 1000])
    return [name]


def seg_truncated_at_chunk_boundary(t, c):
    """The last sealed chunk removed, the metadata block and a consistent trailer kept."""
    name = t.segments[1]
    data = read_bytes(c.p(wal_key(name)))
    hlen, end = parts(data)
    n = (end - hlen) // SEALED_CHUNK
    cut = hlen + (n - 1) * SEALED_CHUNK if (end - hlen) % SEALED_CHUNK == 0 else \
        hlen + n * SEALED_CHUNK
    assert cut < end
    payload = (cut - hlen) + META
    write(c.p(wal_key(name)), data[:cut] + data[end:end + META] + with_trailer_fixed(data, payload))
    return [name]


def seg_extended(t, c):
    name = t.segments[1]
    with open(c.p(wal_key(name)), "ab") as f:
        f.write(os.urandom(4096))
    return [name]


def seg_extended_by_a_chunk(t, c):
    """A copy of the first sealed chunk appended to the chunk stream, the trailer made
    consistent."""
    name = t.segments[1]
    data = read_bytes(c.p(wal_key(name)))
    hlen, end = parts(data)
    extra = data[hlen:hlen + SEALED_CHUNK]
    payload = (end - hlen) + len(extra) + META
    write(c.p(wal_key(name)),
          data[:end] + extra + data[end:end + META] + with_trailer_fixed(data, payload))
    return [name]


AUTH = "does not authenticate"  # crypt.h: every failure of a tag

# (id, mutilation, what the refusal says)
WAL_CASES = [
    ("copied-under-another-segments-name", seg_copied_under_other_name, "renamed or copied"),
    ("chunk-swapped-between-two-segments", seg_chunk_swapped, AUTH),
    ("truncated", seg_truncated, "truncated or corrupt"),
    ("truncated-at-a-chunk-boundary", seg_truncated_at_chunk_boundary, AUTH),
    ("extended", seg_extended, AUTH),
    ("extended-by-a-chunk", seg_extended_by_a_chunk, AUTH),
]


def verify_reports(wv, c, keys):
    """verify exits 5 and names each of keys in one error line (c: a Case or a Conf)."""
    r = bb(wv, getattr(c, "conf", c), "verify", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    for k in keys:
        lines = [ln for ln in error_lines(r.stderr) if k in ln]
        assert len(lines) == 1, (k, r.stderr)
        assert lines[0].count(k) == 1, "the object is named twice: " + lines[0]
    assert re.search(r"verify repo1: .*, %d problems?" % len(keys), r.stdout), r.stdout
    return r


@TAMPER_GROUP
@pytest.mark.parametrize("mutilate, fragment", [m[1:] for m in WAL_CASES],
                         ids=[m[0] for m in WAL_CASES])
def test_tampered_wal_refused(tamper, wv, cases, mutilate, fragment):
    c = cases()
    names = mutilate(tamper, c)
    before = snapshot(c.dir)
    for name in names:
        dest = os.path.join(c.pg_wal, "RECOVERYXLOG")
        r = wv.fetch(name, dest, config=c.config, cwd=c.dir)
        assert r.returncode == FETCH_ABORT, (name, r.returncode, r.stderr)
        lines = [ln for ln in error_lines(r.stderr) if wal_key(name) in ln]
        assert lines and "repo1: " in lines[0], r.stderr
        assert lines[0].count(wal_key(name)) == 1, "the object is named twice: " + lines[0]
        assert fragment in lines[0], r.stderr
        assert os.listdir(c.pg_wal) == [], "DEST or a temporary file left: %s" % os.listdir(
            c.pg_wal)
    verify_reports(wv, c, [wal_key(n) for n in names])
    assert snapshot(c.dir) == before


def own_backup_file(t, c, bid):
    """The largest backup file stored as an object of its own (not in a bundle, not chunked)."""
    pre = "backup/%s/pgdata/" % bid
    keys = [k for k in t.keys if k.startswith(pre)]
    assert keys, t.keys
    return max(keys, key=lambda k: os.path.getsize(c.p(k)))


def backup_file_truncated_at_chunk_boundary(t, c):
    key = own_backup_file(t, c, t.b2)
    data = read_bytes(c.p(key))
    hlen, end = parts(data)
    assert (end - hlen) // SEALED_CHUNK >= 8, (key, end - hlen)
    cut = hlen + 4 * SEALED_CHUNK
    write(c.p(key), data[:cut] + data[end:end + META] +
          with_trailer_fixed(data, cut - hlen + META))
    return key


def backup_file_extended(t, c):
    key = own_backup_file(t, c, t.b2)
    with open(c.p(key), "ab") as f:
        f.write(b"\0" * 100)
    return key


def backup_file_chunk_reordered(t, c):
    key = own_backup_file(t, c, t.b2)
    data = read_bytes(c.p(key))
    hlen, end = parts(data)
    a, b = hlen + SEALED_CHUNK, hlen + 2 * SEALED_CHUNK
    write(c.p(key), data[:a] + data[b:b + SEALED_CHUNK] + data[a:b] + data[b + SEALED_CHUNK:])
    return key


BACKUP_CASES = [
    ("truncated-at-a-chunk-boundary", backup_file_truncated_at_chunk_boundary, AUTH),
    ("extended", backup_file_extended, "truncated or corrupt"),
    ("two-chunks-swapped", backup_file_chunk_reordered, AUTH),
]


def temp_files(root):
    return [f for f in tree_files(root) if ".wvtmp" in f] if os.path.isdir(root) else []


@TAMPER_GROUP
@pytest.mark.parametrize("mutilate, fragment", [m[1:] for m in BACKUP_CASES],
                         ids=[m[0] for m in BACKUP_CASES])
def test_tampered_backup_file_refused(tamper, wv, cases, mutilate, fragment):
    c = cases()
    key = mutilate(tamper, c)
    r = bb(wv, c.conf, "restore", "--pgdata", c.target, "--backup", tamper.b2, "--immediate",
           check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in error_lines(r.stderr) if key in ln]
    assert lines and "repo1" in lines[0], r.stderr
    assert lines[0].count(key) == 1, "the object is named twice: " + lines[0]
    assert fragment in lines[0], r.stderr
    rel = key[len("backup/%s/pgdata/" % tamper.b2):]
    assert not os.path.exists(os.path.join(c.target, rel)), "the tampered file was restored"
    assert not os.path.exists(os.path.join(c.target, "recovery.signal"))
    assert temp_files(c.target) == []
    verify_reports(wv, c, [key])


@TAMPER_GROUP
def test_tampered_chunk_of_a_large_file_refused(tamper, wv, cases):
    """A file of more than 64 MiB is restored from chunk objects in parallel into one file at its
    final size: a sealed 64 KiB chunk swapped between its two chunk objects fails, and neither
    the file nor its temporary file is left."""
    c = cases()
    k0, k1 = tamper.chunks
    d0, d1 = read_bytes(c.p(k0)), read_bytes(c.p(k1))
    h0, e0 = parts(d0)
    h1, e1 = parts(d1)
    assert h0 == h1 and (e1 - h1) // SEALED_CHUNK > 6, (h0, h1, e1 - h1)
    off = h0 + 5 * SEALED_CHUNK
    write(c.p(k0), d0[:off] + d1[off:off + SEALED_CHUNK] + d0[off + SEALED_CHUNK:])
    write(c.p(k1), d1[:off] + d0[off:off + SEALED_CHUNK] + d1[off + SEALED_CHUNK:])
    del d0, d1
    r = bb(wv, c.conf, "restore", "--pgdata", c.target, "--backup", tamper.b2, "--immediate",
           check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in error_lines(r.stderr) if k0 in ln or k1 in ln]
    assert lines and "repo1" in lines[0] and AUTH in lines[0], r.stderr
    assert not os.path.exists(os.path.join(c.target, LARGE_FILE))
    assert not os.path.exists(os.path.join(c.target, "recovery.signal"))
    assert temp_files(c.target) == []
    verify_reports(wv, c, [k0, k1])


@TAMPER_GROUP
def test_manifest_of_another_backup_refused(tamper, wv, cases):
    c = cases()
    key = "backup/%s/backup.manifest" % tamper.b2
    shutil.copyfile(c.p("backup/%s/backup.manifest" % tamper.b1), c.p(key))
    before = snapshot(c.dir)
    r = bb(wv, c.conf, "restore", "--pgdata", c.target, "--backup", tamper.b2, "--immediate",
           check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    assert key in r.stderr and "repo1" in r.stderr, r.stderr
    assert not os.path.exists(c.target)
    r = bb(wv, c.conf, "list", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    assert key in r.stderr, r.stderr
    verify_reports(wv, c, [key])
    assert snapshot(c.dir) == before


@TAMPER_GROUP
def test_recovery_with_prefetch_stops_at_a_tampered_segment(tamper, wv, cases):
    """A real archive recovery with the prefetch spool on: the fetcher reads ahead into the
    tampered segment, the spool never serves it, and the server stops with FATAL there instead of
    promoting early."""
    spool = os.path.join(tamper.dir, "spool-recovery")
    c = cases(glob=enc_global(key=tamper.key, spool=spool))
    victim = tamper.segments[-2]
    prev = tamper.segments[-3]
    data = read_bytes(c.p(wal_key(victim)))
    hlen, _ = parts(data)
    off = hlen + 6 * SEALED_CHUNK
    write(c.p(wal_key(victim)), data[:off] + data[off + SEALED_CHUNK:off + 2 * SEALED_CHUNK] +
          data[off:off + SEALED_CHUNK] + data[off + 2 * SEALED_CHUNK:])
    r = Restorer(wv, c.conf, c.dir)
    try:
        pg = r.restore("prefetch", "--backup", tamper.b1)
        pg._base_conf()
        pg.start(wait=False)
        wait_until(lambda: not pg.running() and "could not restore file" in pg.log(),
                   timeout=180, what="the server to stop at the tampered segment")
        log = pg.log()
        assert re.search(r'FATAL: .*could not restore file "%s" from archive' % victim, log), \
            log[-3000:]
        assert '"%s" does not authenticate at chunk' % wal_key(victim) in log, log[-3000:]
        assert 'restored log file "%s" from archive' % prev in log, log[-3000:]
        assert "from the prefetch spool" in log, log[-3000:]  # the spool was in use
        assert "archive recovery complete" not in log and "selected new timeline ID" not in log
        assert not os.path.exists(os.path.join(pg.datadir, "pg_wal", victim))
        left = [f for f in tree_files(spool) if os.path.basename(f) == victim]
        assert left == [], left
    finally:
        r.cleanup()


@TAMPER_GROUP
def test_first_use_race_on_posix(tamper, wv):
    d = make_pg_dir(os.path.join(tamper.dir, "race-posix"), 0o755)
    repo = make_pg_dir(os.path.join(d, "repo"))
    segs = plain_segments(wv, tamper, tamper.plain_conf, tamper.segments[:6], d)
    conf = Conf(os.path.join(d, "race.conf"), [posix_section(repo, 1)], enc_global(key=tamper.key))
    first_use_race(wv, d, conf, segs, lambda: posix_contents(repo))
    shutil.rmtree(d, ignore_errors=True)


@TAMPER_GROUP
def test_clean_copy_fetches_restores_and_verifies(tamper, wv, cases):
    """The same commands on an untouched copy succeed: the refusals above are the tampering's."""
    c = cases()
    for name in tamper.segments[1:3]:
        dest = os.path.join(c.pg_wal, "RECOVERYXLOG")
        r = wv.fetch(name, dest, config=c.config, cwd=c.dir)
        assert r.returncode == 0, r.stderr
        assert os.path.getsize(dest) == 1024 * 1024
        os.unlink(dest)
    r = bb(wv, c.conf, "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"verify repo1: .*, 0 problems", r.stdout), r.stdout
    r = bb(wv, c.conf, "list", check=False)
    assert r.returncode == 0 and tamper.b1 in r.stdout and tamper.b2 in r.stdout, r.stderr
    r = bb(wv, c.conf, "restore", "--pgdata", c.target, "--backup", tamper.b2, "--immediate",
           check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    key = own_backup_file(tamper, c, tamper.b2)
    rel = key[len("backup/%s/pgdata/" % tamper.b2):]
    assert os.path.getsize(os.path.join(c.target, rel)) > 1024 * 1024
    assert hashlib.sha256(read_bytes(os.path.join(c.target, LARGE_FILE))).hexdigest() == \
        tamper.large_sha
    assert os.path.exists(os.path.join(c.target, "recovery.signal"))
