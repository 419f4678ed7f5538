"""A damaged or hostile repository never passes wrong data as good.

One cluster per module (1 MiB WAL segments) archives with wal-push into a posix repository and takes
one walvault backup; a second cluster archives into a repository of its own. Each case of the table
(after pg_verifybackup's 003_corruption) takes a copy of the clean repository, mutilates it, runs the
command, and asserts the exact refusal (exit code and message fragment) and that nothing outside
the targets changed (the whole work directory is snapshotted before and compared after):

  - segment ...N's object stored under ...N+1's name (the binding names both keys);
  - the object of another cluster's segment of the same name (the first page's system identifier);
  - a `.backup` file's object under a segment's name, copied (binding) and re-bound (content);
  - segment ...N's content in an object re-bound to ...N+1's key (the first page's address);
  - a 2 MiB object that decompresses to 512 MiB (stopped at the segment size, nothing left);
  - walvault.repo with a segment size of 12345 or 0 (refused on load, naming file and field);
  - a manifest of another cluster (list and restore refuse, verify reports).
`verify` reports each of them. Then a real recovery stops with FATAL at a mis-bound segment instead
of promoting.
"""

import hashlib
import os
import re
import shutil
import struct
import subprocess
import time

import pytest

from test_restore_pitr import bb, module_dir, take_backup
from utils import (Postgres, Repo, chown_pg, make_pg_dir, restore_from, run, wait_until)

pytestmark = pytest.mark.xdist_group("hostile")

MIB = 1 << 20
FETCH_ABORT = 128  # wal-fetch during archive recovery: PostgreSQL stops instead of promoting
EXIT_CORRUPT = 5


class State:
    pass


def wal_key(name):
    if name.endswith(".history"):
        return "wal/history/" + name
    return "wal/%s/%s" % (name[:16], name)


@pytest.fixture(scope="module")
def hostile(basetemp, wv):
    d = module_dir(basetemp, "hostile")
    s = State()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    s.repo_b = Repo(os.path.join(d, "repo-b"), os.path.join(d, "walvault-b.conf"))
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.repo.config), autovacuum="off",
            max_wal_size="64MB")
    pgb = Postgres(d, "other").initdb(wal_segsize=1)
    pgb.conf(archive_mode="on", archive_command=wv.archive_command(s.repo_b.config))
    try:
        pg.start()
        pg.sql("create table t as select g, md5(g::text) as m from generate_series(1, 20000) g")
        pg.switch_wal_and_wait_archived()
        s.backup_id = take_backup(wv, s.repo, pg)
        pg.sql("insert into t select g, md5(g::text) from generate_series(1, 20000) g")
        pg.switch_wal_and_wait_archived()
        s.sysid = pg.system_identifier()
        pg.stop()
        pgb.start()
        pgb.sql("create table u as select generate_series(1, 1000) x")
        pgb.switch_wal_and_wait_archived()
        s.sysid_b = pgb.system_identifier()
        pgb.stop()
        s.segments = s.repo.segments()
        s.backup_files = sorted(n for n in s.repo.wal_names() if n.endswith(".backup"))
        common = sorted(set(s.segments) & set(s.repo_b.segments()))
        assert s.sysid != s.sysid_b
        assert len(s.segments) >= 4, s.segments
        assert s.backup_files, s.repo.wal_names()
        assert common, (s.segments, s.repo_b.segments())
        s.common = common[0]
        yield s
    except BaseException:
        print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        raise
    finally:
        pg.cleanup()
        pgb.cleanup()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


_n = [0]


@pytest.fixture
def case(hostile):
    """A directory with a copy of the clean repository (as [repo1]) and an empty pg_wal."""
    _n[0] += 1
    d = make_pg_dir(os.path.join(hostile.dir, "case%d" % _n[0]), 0o755)
    c = State()
    c.dir = d
    c.repo = hostile.repo.copy_to(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    c.pg_wal = make_pg_dir(os.path.join(d, "pg_wal"))
    c.target = os.path.join(d, "target")
    yield c
    shutil.rmtree(d, ignore_errors=True)


def p(c, key):
    return os.path.join(c.repo.path, key)


def snapshot(root):
    """Every path below root with its type, mode and (for files) content digest."""
    out = {}
    for d, dirs, files in os.walk(root):
        for x in dirs + files:
            path = os.path.join(d, x)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_mode, digest)
    return out


# --- a framed object, as an independent writer would make it (layout in objfmt.h) ------------------

def _check(b):
    return hashlib.sha256(b).digest()[:4]


def make_object(key, plain, kind, payload=None, compression=0, plain_size=None, version=2):
    """Version-2 object bound to key holding plain (payload: the stored bytes, default plain);
    version 1: the unbound 64-byte header of older walvault releases."""
    name = key.encode() if version >= 2 else b""
    payload = plain if payload is None else payload
    hdr = bytearray(64)
    hdr[0:8] = b"\x89WVOBJ\r\n"
    hlen = 64 + len(name) + 4 if version >= 2 else 64
    struct.pack_into("<HHBBBB", hdr, 8, version, hlen, compression, 0, 1, kind)
    if version >= 2:
        struct.pack_into("<H", hdr, 36, len(name))
    hdr[60:64] = _check(bytes(hdr[:60]))
    hdr = bytes(hdr)
    if version >= 2:
        hdr += name
        hdr += _check(hdr)
    trl = bytearray(128)
    trl[0:8] = b"\x89WVEND\r\n"
    struct.pack_into("<QQ", trl, 8, len(plain) if plain_size is None else plain_size, len(payload))
    trl[24:56] = hashlib.sha256(plain).digest()
    struct.pack_into("<qqII", trl, 56, -(1 << 63), -(1 << 63), 0, 0)
    struct.pack_into("<HBBBB", trl, 80, version, compression, 0, 1, kind)
    trl[124:128] = _check(bytes(trl[:124]))
    return hdr + payload + bytes(trl)


def write_object(c, key, data):
    path = p(c, key)
    with open(path, "wb") as f:
        f.write(data)
    chown_pg(path)


def plain_of(wv, c, name):
    """The plain content of an archived WAL file of the clean copy."""
    dest = os.path.join(c.dir, "plain-" + name)
    r = wv.fetch(name, dest, config=c.repo.config, cwd=c.dir)
    assert r.returncode == 0, r.stderr
    with open(dest, "rb") as f:
        data = f.read()
    os.unlink(dest)
    return data


# --- the mutilations ------------------------------------------------------------------------------
# Each returns (WAL name to fetch, message fragment of the refusal).

def seg_under_next(wv, h, c):
    a, b = h.segments[1], h.segments[2]
    shutil.copyfile(p(c, wal_key(a)), p(c, wal_key(b)))
    return b, '"%s" holds the object stored as "%s": it was renamed or copied wrongly' % (
        wal_key(b), wal_key(a))


def other_cluster_segment(wv, h, c):
    name = h.common
    shutil.copyfile(os.path.join(h.repo_b.path, wal_key(name)), p(c, wal_key(name)))
    return name, "it is WAL of database system %d, the repository's cluster is %d" % (h.sysid_b,
                                                                                     h.sysid)


def backup_file_under_segment(wv, h, c):
    bf = h.backup_files[0]
    seg = bf[:24]
    shutil.copyfile(p(c, wal_key(bf)), p(c, wal_key(seg)))
    return seg, '"%s" holds the object stored as "%s"' % (wal_key(seg), wal_key(bf))


def backup_file_rebound_as_segment(wv, h, c):
    bf = h.backup_files[0]
    seg = bf[:24]
    write_object(c, wal_key(seg), make_object(wal_key(seg), plain_of(wv, c, bf), 1))
    return seg, "the object is not WAL file %s" % seg


def seg_rebound_as_next(wv, h, c):
    a, b = h.segments[1], h.segments[2]
    write_object(c, wal_key(b), make_object(wal_key(b), plain_of(wv, c, a), 1))
    return b, "its first page is at"


def lz4_bomb(wv, h, c):
    """The segment itself (its first page right), then zeros up to 512 MiB: only the size can stop
    it, and it must stop at the segment size, not after 512 MiB."""
    seg = h.segments[2]
    plain = plain_of(wv, c, seg)
    plain += b"\0" * (512 * MIB - len(plain))
    lz = subprocess.run(["lz4", "-1", "-c", "-"], input=plain, stdout=subprocess.PIPE,
                        check=True).stdout
    assert len(lz) < 3 * MIB, len(lz)
    write_object(c, wal_key(seg), make_object(wal_key(seg), plain, 1, payload=lz, compression=1))
    return seg, "the content exceeds %d bytes, the most this object may hold: decompression " \
                "stopped" % MIB


WAL_CASES = [
    ("segment-under-the-next-name", seg_under_next),
    ("other-cluster-segment", other_cluster_segment),
    ("backup-file-under-a-segment-name", backup_file_under_segment),
    ("backup-file-rebound-as-segment", backup_file_rebound_as_segment),
    ("segment-rebound-as-the-next", seg_rebound_as_next),
    ("lz4-bomb-512MiB", lz4_bomb),
]


@pytest.mark.parametrize("mutilate", [m[1] for m in WAL_CASES], ids=[m[0] for m in WAL_CASES])
def test_wal_fetch_refuses(wv, hostile, case, mutilate):
    name, fragment = mutilate(wv, hostile, case)
    before = snapshot(case.dir)
    dest = os.path.join(case.pg_wal, "RECOVERYXLOG")
    t0 = time.monotonic()
    r = wv.fetch(name, dest, config=case.repo.config, cwd=case.dir)
    took = time.monotonic() - t0
    assert r.returncode == FETCH_ABORT, "exit %d: %s" % (r.returncode, r.stderr)
    assert fragment in r.stderr, r.stderr
    assert "repo1: " in r.stderr, r.stderr
    assert os.listdir(case.pg_wal) == [], "DEST or a temporary file left: %s" % os.listdir(
        case.pg_wal)
    assert snapshot(case.dir) == before
    assert took < 30, took

    # verify reports the same object, naming it, and counts the problem.
    r = bb(wv, case.repo, "verify", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if "error:" in l and name in l]
    assert lines, r.stderr
    assert fragment in r.stderr or "not WAL file" in r.stderr, r.stderr
    assert re.search(r"verify repo1: .*, [1-9]\d* problems?", r.stdout), r.stdout
    assert snapshot(case.dir) == before


def test_clean_copy_fetches_and_verifies(wv, hostile, case):
    """The same commands on the unmutilated copy succeed: the refusals above are the mutilations'."""
    for name in (hostile.segments[2], hostile.common, hostile.backup_files[0]):
        dest = os.path.join(case.pg_wal, "RECOVERYXLOG")
        r = wv.fetch(name, dest, config=case.repo.config, cwd=case.dir)
        assert r.returncode == 0, r.stderr
        os.unlink(dest)
    r = bb(wv, case.repo, "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "format 1" not in r.stderr  # everything this build wrote is bound
    r = bb(wv, case.repo, "list", check=False)
    assert r.returncode == 0, r.stderr
    assert hostile.backup_id in r.stdout


def test_format1_objects_still_read(wv, hostile, case):
    """Objects of an older walvault (format 1, no binding) are fetched and verified; verify says
    how many carry no binding, as information. Their content is still checked against the name."""
    a, b = hostile.segments[1], hostile.segments[2]
    write_object(case, wal_key(a), make_object(wal_key(a), plain_of(wv, case, a), 1, version=1))
    dest = os.path.join(case.pg_wal, "RECOVERYXLOG")
    r = wv.fetch(a, dest, config=case.repo.config, cwd=case.dir)
    assert r.returncode == 0, r.stderr
    os.unlink(dest)
    r = bb(wv, case.repo, "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repo1: 1 object of format 1: not bound to its name (information, not a problem" in \
        r.stderr, r.stderr
    # Without a binding the content check still tells a segment under another name.
    write_object(case, wal_key(b), make_object(wal_key(b), plain_of(wv, case, a), 1, version=1))
    r = wv.fetch(b, dest, config=case.repo.config, cwd=case.dir)
    assert r.returncode == FETCH_ABORT, r.stderr
    assert "its first page is at" in r.stderr, r.stderr
    assert os.listdir(case.pg_wal) == []


# --- walvault.repo and manifests ----------------------------------------------------------------

def set_info(c, segsize):
    path = p(c, "walvault.repo")
    with open(path) as f:
        text = f.read()
    text = re.sub(r"^wal_segment_size=\d+$", "wal_segment_size=%d" % segsize, text, flags=re.M)
    with open(path, "w") as f:
        f.write(text)


@pytest.mark.parametrize("segsize", [12345, 0])
def test_repo_info_segment_size_refused(wv, hostile, case, segsize):
    set_info(case, segsize)
    before = snapshot(case.dir)
    fragment = "walvault.repo in \"%s\" is invalid: wal_segment_size" % case.repo.path

    dest = os.path.join(case.pg_wal, "RECOVERYXLOG")
    r = wv.fetch(hostile.segments[2], dest, config=case.repo.config, cwd=case.dir)
    assert r.returncode == FETCH_ABORT, (r.returncode, r.stderr)
    assert fragment in r.stderr, r.stderr
    assert os.listdir(case.pg_wal) == []

    # restore --dry-run: a refusal, not SIGFPE; nothing created.
    r = bb(wv, case.repo, "restore", "--pgdata", case.target, "--dry-run", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    assert fragment in r.stderr, r.stderr
    assert not os.path.exists(case.target)

    r = bb(wv, case.repo, "list", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stderr)
    assert fragment in r.stderr, r.stderr

    r = bb(wv, case.repo, "verify", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stderr)
    assert fragment in r.stderr, r.stderr
    assert snapshot(case.dir) == before


def rewrite_manifest(c, backup_id, edit):
    """Edit a manifest's text and recompute its end line, as a careful forger would."""
    path = p(c, "backup/%s/backup.manifest" % backup_id)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[-1] == b"" and lines[-2].startswith(b"end sha256="), lines[-2:]
    body = b"".join(l + b"\n" for l in lines[:-2])
    body = edit(body)
    with open(path, "wb") as f:
        f.write(body + b"end sha256=" + hashlib.sha256(body).hexdigest().encode() + b"\n")


def test_manifest_of_another_cluster(wv, hostile, case):
    rewrite_manifest(case, hostile.backup_id,
                     lambda b: re.sub(rb"system-id=\d+", b"system-id=%d" % hostile.sysid_b, b))
    before = snapshot(case.dir)
    fragment = "backup %s: its manifest is of database system %d, the repository's is %d" % (
        hostile.backup_id, hostile.sysid_b, hostile.sysid)

    r = bb(wv, case.repo, "list", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    assert fragment in r.stderr, r.stderr

    r = bb(wv, case.repo, "restore", "--pgdata", case.target, "--dry-run", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stdout, r.stderr)
    assert fragment in r.stderr, r.stderr
    assert not os.path.exists(case.target)

    r = bb(wv, case.repo, "verify", check=False)
    assert r.returncode == EXIT_CORRUPT, (r.returncode, r.stderr)
    assert "the manifest is of backup %s, database system %d" % (hostile.backup_id,
                                                                 hostile.sysid_b) in r.stderr
    assert snapshot(case.dir) == before


# --- a real recovery ----------------------------------------------------------------------------

def test_recovery_stops_on_misbound_segment(archived_cluster, pg_factory, wv, workdir):
    """Segment N's object under N+1's name in the middle of the archive: the server stops with
    FATAL and wal-fetch's message naming both keys in its log; it does not promote there."""
    a = archived_cluster
    repo = a.repo.copy_to(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))
    segs = [s for s in repo.segments() if s > a.backup_start_wal]
    assert len(segs) >= 6, segs
    victim = segs[len(segs) // 2]
    prev = "%024X" % (int(victim, 16) - 1)
    shutil.copyfile(repo.object_path(prev), repo.object_path(victim))

    pg = restore_from(a, pg_factory, wv, repo.config)
    pg.start(wait=False)
    wait_until(lambda: not pg.running() and "could not restore file" in pg.log(), timeout=300,
               what="the server to stop on the mis-bound segment")
    log = pg.log()
    assert re.search(r'FATAL: .*could not restore file "%s" from archive' % victim, log), log[-3000:]
    assert '"%s" holds the object stored as "%s"' % (wal_key(victim), wal_key(prev)) in log, \
        log[-3000:]
    assert "archive recovery complete" not in log
    assert "selected new timeline ID" not in log
    assert 'restored log file "%s" from archive' % prev in log
