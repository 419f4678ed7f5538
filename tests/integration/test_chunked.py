"""Large files stored as chunks (manifest format 3) and restored in parallel.

One cluster per module (1 MiB WAL segments) with a table of about 7 MiB. Backup 1 is taken with
the hidden test seam WALVAULT_TEST_CHUNK_SIZE=1048576 (chunks of 1 MiB instead of 64 MiB, so the
test need not write 64 MiB tables); backup 2 with WALVAULT_TEST_CHUNK_SIZE=0, which stores every
file as one object and writes a version 2 manifest: the format of the backups written before chunks.

- the manifest records the chunked file (chunks=N, offset/length/SHA-256 per chunk) and each chunk
  is an object of its own; the old-format manifest has none;
- each backup restores (pg_verifybackup -n against PostgreSQL's own manifest, then the rows of the
  table are exactly those of the backup), also with --delta over a restored copy;
- verify passes on a clean repository and names the file and the chunk of a damaged chunk, a
  missing chunk and a chunk swapped with another of the same file (its binding);
- restore from such a repository fails naming the chunk and leaves no recovery.signal, nothing
  under the file's final name;
- kill -9 of restore at several moments never leaves a PGDATA with recovery.signal, and none that
  starts;
- sync copies the chunks and the copy verifies.
"""

import os
import re
import shutil
import signal
import time

import pytest

from test_restore_pitr import (Restorer, bb, commit_batch, connstr, finish_module, module_dir,
                               primary_conf, take_backup)
from utils import (OBJ_TRAILER, Postgres, Repo, chown_pg, flip_byte, make_pg_dir, popen, run,
                   tree_files)

pytestmark = pytest.mark.xdist_group("chunked")

CHUNK = 1 << 20
CHUNKED = {"WALVAULT_TEST_CHUNK_SIZE": str(CHUNK)}
UNCHUNKED = {"WALVAULT_TEST_CHUNK_SIZE": "0"}


class State:
    pass


def big_digest(pg):
    return pg.sql_value("select md5(string_agg(g::text || pad, ',' order by g)) from big")


@pytest.fixture(scope="module")
def chunked(basetemp, wv):
    d = module_dir(basetemp, "chunked")
    s = State()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(pg, wv, s.repo)
    s.restorer = Restorer(wv, s.repo, d)
    ok = False
    try:
        pg.start()
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        # about 7 MiB: 7 or 8 chunks of 1 MiB
        pg.sql("create table big as select g, repeat(md5(g::text), 7) as pad "
               "from generate_series(1, 28000) g")
        pg.sql("checkpoint")
        s.relpath = "pgdata/" + pg.sql_value("select pg_relation_filepath('big')")
        s.relsize = int(pg.sql_value("select pg_relation_size('big')"))
        assert s.relsize > 5 * CHUNK, s.relsize
        s.digest1 = big_digest(pg)
        s.rows1 = int(pg.sql_value("select count(*) from big"))
        commit_batch(pg, 0)
        s.b1 = take_backup_env(wv, s.repo, pg, CHUNKED)
        pg.sql("delete from big where g % 3 = 0")
        s.digest2 = big_digest(pg)
        s.rows2 = int(pg.sql_value("select count(*) from big"))
        s.b2 = take_backup_env(wv, s.repo, pg, UNCHUNKED)
        commit_batch(pg, 1)
        pg.switch_wal_and_wait_archived()
        pg.stop()
        ok = True
        yield s
    finally:
        finish_module(s.restorer, pg, d, ok)


def take_backup_env(wv, repo, pg, env):
    res = bb(wv, repo, "backup", "-d", connstr(pg), "--checkpoint", "fast", env=env)
    m = re.search(r"^backup (\S+) complete", res.stdout, re.M)
    assert m, res.stdout + res.stderr
    return m.group(1)


def manifest_lines(repo_path, bid):
    with open(os.path.join(repo_path, "backup", bid, "backup.manifest")) as f:
        return f.read().splitlines()


def chunk_records(lines, relpath):
    """The chunk records following the file record of relpath, as dicts; None if not chunked."""
    for i, line in enumerate(lines):
        if line.startswith("file path=%s " % relpath):
            m = re.search(r" chunks=(\d+)", line)
            if not m:
                return None
            out = []
            for c in lines[i + 1:i + 1 + int(m.group(1))]:
                assert c.startswith("chunk "), c
                out.append(dict(kv.split("=", 1) for kv in c.split()[1:]))
            return out
    raise AssertionError("no file record for %s" % relpath)


def chunk_key(bid, relpath, k):
    return "backup/%s/chunk/%s/%d" % (bid, relpath, k)


class Copy:
    """A copy of the module's repository with its own configuration file."""

    _n = [0]

    def __init__(self, s):
        Copy._n[0] += 1
        self.dir = make_pg_dir(os.path.join(s.dir, "copy%d" % Copy._n[0]), 0o755)
        self.path = os.path.join(self.dir, "repo")
        shutil.copytree(s.repo.path, self.path, symlinks=True)
        for d, dirs, files in os.walk(self.path):
            for x in dirs + files:
                chown_pg(os.path.join(d, x))
        chown_pg(self.path)
        self.repo = Repo(self.path, os.path.join(self.dir, "walvault.conf"))

    def p(self, key):
        return os.path.join(self.path, key)


def error_lines(res):
    return [l for l in res.stderr.splitlines() if "error:" in l and "hint:" not in l]


# --- tests ------------------------------------------------------------------------------------

def test_manifest_records_chunks(chunked):
    s = chunked
    lines = manifest_lines(s.repo.path, s.b1)
    assert lines[0] == "walvault-manifest version=3"
    recs = chunk_records(lines, s.relpath)
    assert recs is not None and len(recs) == (s.relsize + CHUNK - 1) // CHUNK
    pos = 0
    for k, c in enumerate(recs):
        assert int(c["offset"]) == pos
        assert 0 < int(c["length"]) <= CHUNK
        pos += int(c["length"])
        assert len(c["sha256"]) == 64
        obj = os.path.join(s.repo.path, chunk_key(s.b1, s.relpath, k))
        assert os.path.getsize(obj) == int(c["stored-size"]), obj
    assert pos == s.relsize
    # no object of its own under the file's plain key
    assert not os.path.exists(os.path.join(s.repo.path, "backup", s.b1, s.relpath))
    # the old format: one object per file, version 2, no chunks anywhere
    old = manifest_lines(s.repo.path, s.b2)
    assert old[0] == "walvault-manifest version=2"
    assert not any(l.startswith("chunk ") or " chunks=" in l for l in old)
    assert chunk_records(old, s.relpath) is None
    assert not any(k.startswith("backup/%s/chunk/" % s.b2) for k in tree_files(s.repo.path))


@pytest.mark.parametrize("which", ["chunked", "old-format"])
def test_restore_exact_rows(chunked, which):
    s = chunked
    bid, digest, rows = ((s.b1, s.digest1, s.rows1) if which == "chunked"
                         else (s.b2, s.digest2, s.rows2))
    pg = s.restorer.restore("r-" + which, "--backup", bid, "--immediate")
    s.restorer.verify(pg)  # every file against PostgreSQL's own manifest (SHA-256)
    with open(os.path.join(pg.datadir, s.relpath[len("pgdata/"):]), "rb") as f:
        assert len(f.read()) >= s.relsize
    s.restorer.start(pg)
    assert int(pg.sql_value("select count(*) from big")) == rows
    assert big_digest(pg) == digest
    pg.stop()


def test_delta_restore_over_a_copy(chunked):
    s = chunked
    pg = s.restorer.restore("delta", "--backup", s.b1, "--immediate")
    rel = os.path.join(pg.datadir, s.relpath[len("pgdata/"):])
    flip_byte(rel, CHUNK + 100)  # the chunked file differs: rewritten
    os.unlink(os.path.join(pg.datadir, "recovery.signal"))
    res = bb(s.restorer.wv, s.repo, "restore", "--pgdata", pg.datadir, "--backup", s.b1,
             "--immediate", "--delta")
    assert "error" not in res.stderr, res.stderr
    s.restorer.verify(pg)
    s.restorer.start(pg)
    assert big_digest(pg) == s.digest1
    pg.stop()


def verify(s, copy, *args):
    return bb(s.restorer.wv, copy.repo, "verify", *args, check=False)


def test_verify_clean(chunked):
    s = chunked
    res = verify(s, Copy(s))
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^verify repo1: checked \d+ objects .* 0 problems", res.stdout, re.M), \
        res.stdout


def damage(s, copy, how):
    k1 = copy.p(chunk_key(s.b1, s.relpath, 1))
    if how == "damaged":
        flip_byte(k1, os.path.getsize(k1) - OBJ_TRAILER - 10)
    elif how == "missing":
        os.unlink(k1)
    elif how == "swapped":
        k0 = copy.p(chunk_key(s.b1, s.relpath, 0))
        with open(k0, "rb") as f:
            raw0 = f.read()
        with open(k1, "rb") as f:
            raw1 = f.read()
        with open(k0, "wb") as f:
            f.write(raw1)
        with open(k1, "wb") as f:
            f.write(raw0)
    return chunk_key(s.b1, s.relpath, 1)


@pytest.mark.parametrize("how", ["damaged", "missing", "swapped"])
def test_verify_names_the_chunk(chunked, how):
    s = chunked
    copy = Copy(s)
    key = damage(s, copy, how)
    res = verify(s, copy)
    assert res.returncode != 0, res.stdout + res.stderr
    bad = error_lines(res)
    mine = [l for l in bad if key in l and ("chunk 1 of \"%s\"" % s.relpath) in l]
    assert mine, res.stderr
    if how == "missing":
        assert "missing" in mine[0], mine
    if how == "swapped":
        # both chunks are under the other's name: each refused by its binding
        k0 = chunk_key(s.b1, s.relpath, 0)
        assert [l for l in bad if k0 in l and "chunk 0 of" in l], res.stderr
    assert re.search(r"^verify repo1: .* [1-9]\d* problems?", res.stdout, re.M), res.stdout


@pytest.mark.parametrize("how", ["damaged", "missing", "swapped"])
def test_restore_refuses_a_bad_chunk(chunked, how):
    s = chunked
    copy = Copy(s)
    key = damage(s, copy, how)
    target = os.path.join(copy.dir, "pgdata")
    res = bb(s.restorer.wv, copy.repo, "restore", "--pgdata", target, "--backup", s.b1,
             "--immediate", check=False)
    assert res.returncode != 0, res.stdout + res.stderr
    assert any((key in l or chunk_key(s.b1, s.relpath, 0) in l) and
               ("of \"%s\"" % s.relpath) in l for l in error_lines(res)), res.stderr
    assert not os.path.exists(os.path.join(target, "recovery.signal"))
    assert not os.path.exists(os.path.join(target, s.relpath[len("pgdata/"):]))


def test_kill9_during_restore_leaves_nothing_that_starts(chunked):
    s = chunked
    seen_partial = 0
    for n, delay in enumerate([0.02, 0.08, 0.15, 0.3, 0.5]):
        pg = s.restorer.new_pg("kill%d" % n)
        p = popen(s.restorer.wv.cmd("basebackup", "restore", "--pgdata", pg.datadir, "--backup",
                                    s.b1, "--immediate", config=s.repo.config))
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        if p.returncode == 0:
            continue  # finished before the kill: a complete restore
        seen_partial += 1
        assert not os.path.exists(os.path.join(pg.datadir, "recovery.signal"))
        if not os.path.exists(os.path.join(pg.datadir, "postgresql.conf")):
            continue
        pg._base_conf()
        with pytest.raises(Exception):
            pg.start()
        assert not pg.running()
    assert seen_partial > 0, "every restore finished before its kill"


def test_sync_copies_chunks(chunked):
    s = chunked
    copy = Copy(s)
    target = os.path.join(copy.dir, "synced")
    make_pg_dir(target)
    with open(copy.repo.config, "a") as f:
        f.write("\n[repo2]\ntype = posix\npath = %s\n" % target)
    res = bb(s.restorer.wv, copy.repo, "sync", "--from", "1", "--to", "2", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    for k in range(3):
        assert os.path.exists(os.path.join(target, chunk_key(s.b1, s.relpath, k)))
    res = bb(s.restorer.wv, copy.repo, "verify", "--repo", "2", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
