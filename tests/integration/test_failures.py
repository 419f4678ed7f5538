"""Fault scenarios: damaged objects, a recovery that must stop, kill -9 mid-push, a full disk.

Each scenario asserts the outcome (exit code, files) and the message.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from utils import (OBJ_TRAILER, obj_header_len, Repo, chown_pg, flip_byte, make_pg_dir, popen, read_bytes,
                   restore_from, truncate, wait_until)

CORRUPT_RE = re.compile(r"corrupt|checksum|sha-?256|digest|mismatch|truncat|short|invalid|trailer|"
                        r"header|verif|format|magic", re.I)


def _payload_len(path):
    return os.path.getsize(path) - obj_header_len(path) - OBJ_TRAILER


def _flip(off_fn):
    def m(path):
        flip_byte(path, off_fn(path))
    return m


def _truncate_to(size_fn):
    def m(path):
        truncate(path, size_fn(path))
    return m


def _append_garbage(path):
    with open(path, "ab") as f:
        f.write(b"\0garbage\0" * 7)


# {name, mutilation, ...}: after 003_corruption.pl. Every one must make wal-fetch fail with an error.
MUTILATIONS = [
    ("flip-first-payload-byte", _flip(lambda p: obj_header_len(p))),
    ("flip-middle-payload-byte", _flip(lambda p: obj_header_len(p) + _payload_len(p) // 2)),
    ("flip-last-payload-byte", _flip(lambda p: obj_header_len(p) + _payload_len(p) - 1)),
    ("flip-header-byte", _flip(lambda p: 0)),
    ("flip-trailer-byte", _flip(lambda p: os.path.getsize(p) - OBJ_TRAILER + 40)),
    ("truncate-to-empty", _truncate_to(lambda p: 0)),
    ("truncate-inside-header", _truncate_to(lambda p: obj_header_len(p) // 2)),
    ("truncate-mid-payload", _truncate_to(lambda p: obj_header_len(p) + _payload_len(p) // 2)),
    ("drop-trailer", _truncate_to(lambda p: os.path.getsize(p) - OBJ_TRAILER)),
    ("drop-last-trailer-byte", _truncate_to(lambda p: os.path.getsize(p) - 1)),
    ("append-garbage", _append_garbage),
]


@pytest.mark.parametrize("mutilate", [m[1] for m in MUTILATIONS], ids=[m[0] for m in MUTILATIONS])
def test_damaged_object_is_an_error(wv, repo, wal_samples, workdir, mutilate):
    seg = wal_samples.a_segments[0]
    name = os.path.basename(seg)
    r = wv.push(seg, config=repo.config)
    assert r.returncode == 0, r.stderr
    dest_dir = make_pg_dir(os.path.join(workdir, "pg_wal"))
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    # Verify first, then damage, then expect a loud failure.
    assert wv.fetch(name, dest, config=repo.config, cwd=workdir).returncode == 0
    os.unlink(dest)
    mutilate(repo.object_path(name))
    r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
    assert r.returncode >= 126, "exit %d (1..125 would end recovery as 'not found'): %s" % (
        r.returncode, r.stderr)
    assert name in r.stderr, r.stderr
    assert CORRUPT_RE.search(r.stderr), r.stderr
    assert os.listdir(dest_dir) == [], "DEST or a temporary file left: %s" % os.listdir(dest_dir)


@pytest.mark.parametrize("how", ["flip-payload-byte", "truncate"])
def test_recovery_stops_on_damaged_segment(archived_cluster, pg_factory, wv, workdir, how):
    """A segment in the middle of the archive is damaged: the server must stop with the error in
    its log, not promote at the damaged point."""
    a = archived_cluster
    repo = a.repo.copy_to(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))
    segs = [s for s in repo.segments() if s > a.backup_start_wal]
    assert len(segs) >= 6, segs
    victim = segs[len(segs) // 2]
    p = repo.object_path(victim)
    if how == "truncate":
        truncate(p, obj_header_len(p) + _payload_len(p) // 3)
    else:
        flip_byte(p, obj_header_len(p) + _payload_len(p) // 2)

    pg = restore_from(a, pg_factory, wv, repo.config)
    pg.start(wait=False)
    wait_until(lambda: not pg.running() and "could not restore file" in pg.log(), timeout=300,
               what="the server to stop on the damaged segment")
    log = pg.log()
    assert re.search(r'FATAL: .*could not restore file "%s" from archive' % victim, log), log[-3000:]
    assert re.search(r"wal-fetch: error: .*%s" % victim, log), "wal-fetch's error is not in the log"
    assert "archive recovery complete" not in log
    assert "selected new timeline ID" not in log
    # The segment before the damaged one was restored: recovery really got that far.
    prev = "%024X" % (int(victim, 16) - 1)
    assert 'restored log file "%s" from archive' % prev in log


def test_standby_keeps_retrying_on_damaged_segment(archived_cluster, pg_factory, wv, workdir):
    """In standby mode wal-fetch logs the error and exits 1: the standby stays in recovery."""
    a = archived_cluster
    repo = a.repo.copy_to(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))
    segs = [s for s in repo.segments() if s > a.backup_start_wal]
    victim = segs[len(segs) // 2]
    flip_byte(repo.object_path(victim), obj_header_len(repo.object_path(victim)) + 10)
    pg = restore_from(a, pg_factory, wv, repo.config)
    os.unlink(os.path.join(pg.datadir, "recovery.signal"))
    pg.touch("standby.signal")
    pg.conf(wal_retrieve_retry_interval="200ms")
    pg.start(wait=False)
    wait_until(lambda: len(re.findall(r"wal-fetch: error: .*%s" % victim, pg.log())) >= 2,
               timeout=300, what="wal-fetch to log the error at least twice (retries)")
    assert pg.running()
    assert pg.sql_value("select pg_is_in_recovery()") is True
    assert "archive recovery complete" not in pg.log()


# ---------------------------------------------------------------------------------------------
# kill -9 at random moments of a push.

def _fetch_outcome(wv, repo, name, workdir, original):
    dest_dir = make_pg_dir(os.path.join(workdir, "dest"))
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
    if r.returncode == 0:
        assert read_bytes(dest) == original, "wal-fetch returned a file that is not the original"
        os.unlink(dest)
        return "complete"
    assert r.returncode == 1, "after kill -9: fetch exit %d (a damaged object is visible): %s" % (
        r.returncode, r.stderr)
    assert os.listdir(dest_dir) == []
    return "absent"


def test_kill_9_during_push(wv, wal_samples, workdir):
    seg = wal_samples.big_segment
    name = os.path.basename(seg)
    original = read_bytes(seg)

    # How long does one push take here (build type, sanitizers, disk)?
    calib = Repo(os.path.join(workdir, "calib"), os.path.join(workdir, "calib.conf"))
    t0 = time.monotonic()
    r = wv.push(seg, config=calib.config)
    duration = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    shutil.rmtree(calib.path)

    rng = random.Random(int(os.environ.get("WALVAULT_SEED", "0")) or None)
    outcomes = {"complete": 0, "absent": 0}
    iterations = 24
    for i in range(iterations):
        it = make_pg_dir(os.path.join(workdir, "it%02d" % i), 0o755)
        repo = Repo(os.path.join(it, "repo"), os.path.join(it, "walvault.conf"))
        delay = rng.uniform(0, duration * 1.1)
        # A process killed with SIGKILL never reaches its exit-time leak check; one killed while
        # LeakSanitizer stops its threads for that check makes the sanitizer report that it
        # could not read a dead thread's registers. Neither says anything about wal-push.
        env = None
        if os.environ.get("ASAN_OPTIONS"):
            env = {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] + ":detect_leaks=0"}
        p = popen([wv.exe("wal-push"), "-c", repo.config, seg], env=env)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.communicate()
        outcomes[_fetch_outcome(wv, repo, name, it, original)] += 1

        # The next push succeeds, and the result is the complete file.
        r = wv.push(seg, config=repo.config)
        assert r.returncode == 0, "push after kill -9 (iteration %d, delay %.3fs): %s" % (
            i, delay, r.stderr)
        assert _fetch_outcome(wv, repo, name, it, original) == "complete"
        shutil.rmtree(it)
    print("kill -9 outcomes over %d pushes of %.3fs: %s" % (iterations, duration, outcomes))


# ---------------------------------------------------------------------------------------------
# A full disk.

@pytest.fixture
def small_tmpfs(workdir):
    mnt = make_pg_dir(os.path.join(workdir, "tmpfs"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs (need root and CAP_SYS_ADMIN): %s" % r.stderr)
    try:
        chown_pg(mnt)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def test_enospc(wv, wal_samples, workdir, small_tmpfs):
    repo = Repo(os.path.join(small_tmpfs, "repo"), os.path.join(workdir, "walvault.conf"),
                extra_config="[global]\ncompress = none\n")
    first, second = wal_samples.a_segments[0], wal_samples.a_segments[1]
    r = wv.push(first, config=repo.config)
    assert r.returncode == 0, r.stderr
    files_before = repo.files()

    # Leave 64 KiB: far less than a 1 MiB segment stored uncompressed.
    st = os.statvfs(small_tmpfs)
    filler = os.path.join(small_tmpfs, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 64 * 1024))
    name = os.path.basename(second)
    r = wv.push(second, config=repo.config)
    assert r.returncode != 0, "push to a full disk succeeded"
    assert re.search(r"no space", r.stderr, re.I), r.stderr
    assert name in r.stderr, r.stderr
    assert not repo.has(name), "an object under its final name after ENOSPC"
    assert repo.files() == files_before, "leftovers after ENOSPC: %s" % (
        repo.files() - files_before)

    os.unlink(filler)
    r = wv.push(second, config=repo.config)
    assert r.returncode == 0, r.stderr
    dest_dir = make_pg_dir(os.path.join(workdir, "dest"))
    r = wv.fetch(name, os.path.join(dest_dir, name), config=repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert read_bytes(os.path.join(dest_dir, name)) == read_bytes(second)
