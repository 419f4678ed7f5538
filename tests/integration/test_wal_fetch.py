"""wal-fetch: exit codes as PostgreSQL reads them, and DEST_PATH never partial."""

import os
import re

import pytest

from utils import OBJ_HEADER, chown_pg, flip_byte, make_pg_dir, read_bytes

# Any message that says the object is damaged.
CORRUPT_RE = re.compile(r"corrupt|checksum|sha-?256|digest|mismatch|truncat|short|invalid|trailer|"
                        r"header|verif", re.I)


@pytest.fixture
def pushed(wv, repo, wal_samples):
    """A repository holding one real segment; returns (name, original path)."""
    seg = wal_samples.a_segments[0]
    r = wv.push(seg, config=repo.config)
    assert r.returncode == 0, r.stderr
    return os.path.basename(seg), seg


@pytest.fixture
def dest_dir(workdir):
    return make_pg_dir(os.path.join(workdir, "pg_wal"))


def test_found_and_verified(wv, repo, pushed, dest_dir, workdir):
    name, seg = pushed
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()
    assert read_bytes(dest) == read_bytes(seg)
    assert os.listdir(dest_dir) == ["RECOVERYXLOG"], "temporary files left beside DEST"


def test_not_found_exits_1(wv, repo, pushed, dest_dir, workdir):
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    for name in ("0000000100000000000000FE", "00000009.history", "0000000100000000000000FE.partial"):
        r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
        assert r.returncode == 1, "%s: exit %d: %s" % (name, r.returncode, r.stderr)
        assert "error" not in r.stderr.lower(), "not found is the normal end, not an error: %s" % (
            r.stderr)
        assert os.listdir(dest_dir) == []


def test_not_found_in_fresh_repository_exits_1(wv, repo, dest_dir, workdir):
    # A repository nobody pushed to yet: the archive is simply empty.
    r = wv.fetch("000000010000000000000001", os.path.join(dest_dir, "x"), config=repo.config,
                 cwd=workdir)
    assert r.returncode == 1, r.stderr
    assert os.listdir(dest_dir) == []


def _corrupt(repo, name):
    p = repo.object_path(name)
    size = os.path.getsize(p)
    flip_byte(p, OBJ_HEADER + (size - OBJ_HEADER - 128) // 2)


@pytest.mark.parametrize("standby", [False, True], ids=["archive-recovery", "standby"])
def test_corrupt_object(wv, repo, pushed, dest_dir, workdir, standby):
    name, _ = pushed
    _corrupt(repo, name)
    cwd = make_pg_dir(os.path.join(workdir, "pgdata"))
    if standby:
        open(os.path.join(cwd, "standby.signal"), "w").close()
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    r = wv.fetch(name, dest, config=repo.config, cwd=cwd)
    if standby:
        assert r.returncode == 1, "standby mode: errors exit 1 (PostgreSQL retries): %d" % (
            r.returncode)
    else:
        assert r.returncode >= 126, "archive recovery: an error must exit >= 126, got %d" % (
            r.returncode)
    assert "error" in r.stderr.lower(), "the error must be logged: %r" % r.stderr
    assert name in r.stderr
    assert CORRUPT_RE.search(r.stderr), r.stderr
    assert os.listdir(dest_dir) == [], "DEST or a temporary file was left behind"


def test_damage_anywhere_in_the_payload_is_reported_as_damage(wv, repo, pushed, dest_dir, workdir):
    """A flipped byte in the compressed payload may decode to content of the wrong length or to a
    valid-looking page header: whatever it decodes to, the checksum or size check speaks, never a
    verdict on the content ("not WAL file ...: N bytes") that sends the operator after a
    misnamed file."""
    name, _ = pushed
    path = repo.object_path(name)
    original = read_bytes(path)
    payload = len(original) - OBJ_HEADER - 128
    cwd = make_pg_dir(os.path.join(workdir, "pgdata"))
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    offsets = sorted({OBJ_HEADER + 64 + (payload - 65) * i // 47 for i in range(48)})
    for off in offsets:
        with open(path, "wb") as f:
            f.write(original)
        flip_byte(path, off)
        r = wv.fetch(name, dest, config=repo.config, cwd=cwd)
        assert r.returncode >= 126, "offset %d: exit %d: %s" % (off, r.returncode, r.stderr)
        errors = [line for line in r.stderr.splitlines() if ": error: " in line]
        assert errors and CORRUPT_RE.search(errors[0]), "offset %d: %s" % (off, r.stderr)
        assert "not WAL file" not in r.stderr, "offset %d: %s" % (off, r.stderr)
        assert os.listdir(dest_dir) == [], "offset %d: DEST or a temporary file left" % off


def test_standby_signal_elsewhere_is_not_standby(wv, repo, pushed, dest_dir, workdir):
    """Only the working directory (PGDATA when PostgreSQL runs it) counts."""
    name, _ = pushed
    _corrupt(repo, name)
    open(os.path.join(dest_dir, "standby.signal"), "w").close()
    cwd = make_pg_dir(os.path.join(workdir, "pgdata"))
    r = wv.fetch(name, os.path.join(dest_dir, "RECOVERYXLOG"), config=repo.config, cwd=cwd)
    assert r.returncode >= 126, r.stderr
    assert os.listdir(dest_dir) == ["standby.signal"]


def test_existing_dest_replaced_only_by_verified_file(wv, repo, pushed, dest_dir, workdir):
    """PostgreSQL may leave an old RECOVERYXLOG: a good fetch replaces it, a bad one never
    leaves a partial file in its place."""
    name, seg = pushed
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    with open(dest, "wb") as f:
        f.write(b"old")
    chown_pg(dest)
    r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert read_bytes(dest) == read_bytes(seg)
    _corrupt(repo, name)
    r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
    assert r.returncode >= 126, r.stderr
    assert os.listdir(dest_dir) in ([], ["RECOVERYXLOG"])
    if os.path.exists(dest):
        assert read_bytes(dest) == read_bytes(seg), "DEST holds unverified content"
