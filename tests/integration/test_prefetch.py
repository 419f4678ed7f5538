"""wal-fetch's prefetch ([global] fetch_ahead), against a real PostgreSQL 15 replaying from a
posix repository.

One cluster per module (1 MiB segments, fetch_ahead = 4MiB: four segments ahead, process_max = 2,
the spool in the module's directory): a backup, then 26 batches of rows, each batch one
transaction followed by a WAL switch (26+ segments), archived with wal-push. Then a server restored
to between batches 10 and 11 promotes (timeline 2) archiving into the same repository and writes
batches 101-104, each in its own segment. Proves: a PITR on timeline 1 replaying >= 20 segments
reaches exactly the batches before the target, most segments come from the spool, the spool never
holds more than its bound (sampled during replay) and is empty afterwards; a PITR on timeline 2
holds timeline 2's rows and never timeline 1's past the fork (the spool had them: they are never
served for timeline 2); a segment damaged in the repository stops recovery with the error in the
server log, never an early promote; kill -9 of the background fetcher, again and again during
replay, does not break recovery; a second cluster on the host has its own spool directory and gets
its own segments.
"""
import os
import re
import threading
import time

import pytest

from test_restore_pitr import (Restorer, batches_in, commit_batch, finish_module, iso, module_dir,
                               primary_conf, take_backup)
from utils import Postgres, Repo, flip_byte, make_pg_dir, wait_until

pytestmark = pytest.mark.xdist_group("prefetch")

SEG = 1 << 20
DEPTH = 4
BOUND = (DEPTH + 1) * SEG  # the window plus the segment being served
SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")


class Pf:
    pass


def conf_extra(spool):
    return "[global]\nfetch_ahead = 4MiB\nprocess_max = 2\nspool_path = %s\n" % spool


def batch_with_switch(pg, k):
    b = commit_batch(pg, k)
    pg.sql("select pg_switch_wal()")
    return b


@pytest.fixture(scope="module")
def pf(basetemp, wv):
    d = module_dir(basetemp, "prefetch")
    s = Pf()
    s.dir = d
    s.spool = os.path.join(d, "spool")
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"), conf_extra(s.spool))
    p = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(p, wv, s.repo)
    s.restorer = Restorer(wv, s.repo, d)
    ok = False
    try:
        p.start()
        p.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        commit_batch(p, 0)
        s.backup_id = take_backup(wv, s.repo, p)
        time.sleep(1.1)  # the window starts a second after the backup's STOP TIME
        s.b = {}
        for k in range(1, 27):
            s.b[k] = batch_with_switch(p, k)
            time.sleep(0.05)
        p.switch_wal_and_wait_archived()
        s.sysid = p.system_identifier()
        p.stop()
        s.primary = p

        # timeline 2: forked between batches 10 and 11
        fork_at = (s.b[10]["commit"] + s.b[11]["commit"]) / 2
        r = s.restorer.restore("tl2", "--to", iso(fork_at), "--timeline", "1")
        s.restorer.start(r, archive=True)
        assert set(batches_in(r)) == set(range(0, 11))
        for k in range(101, 105):
            s.b[k] = batch_with_switch(r, k)
        r.switch_wal_and_wait_archived()
        r.stop()
        wait_until(lambda: not spooled(s), timeout=60, what="the spool to empty after tl2")
        ok = True
        yield s
    finally:
        finish_module(s.restorer, p, d, ok)


def fetch_dir(s, sysid=None):
    return os.path.join(s.spool, "%016X" % (sysid or s.sysid), "fetch")


def spooled(s, sysid=None):
    """Segment files (complete or in flight) in the cluster's prefetch spool."""
    try:
        names = os.listdir(fetch_dir(s, sysid))
    except FileNotFoundError:
        return []
    return [n for n in names if SEGMENT_RE.match(n) or n.endswith(".dl") or ".wvtmp" in n]


def spool_bytes(s):
    total = 0
    d = fetch_dir(s)
    for n in spooled(s):
        try:
            total += os.path.getsize(os.path.join(d, n))
        except FileNotFoundError:
            pass
    return total


class Sampler(threading.Thread):
    """Samples the spool's size every few milliseconds."""

    def __init__(self, s):
        super().__init__(daemon=True)
        self.s, self.peak, self.samples, self.stop = s, 0, 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, spool_bytes(self.s))
            self.samples += 1
            time.sleep(0.003)


def fetchers(config):
    """Background fetchers of this configuration: wal-fetch processes whose working directory is
    / (a foreground wal-fetch runs in PGDATA)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
            if not argv or not argv[0].endswith(b"wal-fetch") or config.encode() not in argv:
                continue
            if os.readlink("/proc/%s/cwd" % p) == "/":
                pids.append(int(p))
        except OSError:
            continue
    return pids


def served_from_spool(pg):
    return re.findall(r"restored (\S+) from the prefetch spool", pg.log_since_start())


def test_pitr_replays_from_the_spool_within_the_bound(pf):
    target = (pf.b[24]["commit"] + pf.b[25]["commit"]) / 2
    pg = pf.restorer.restore("pitr", "--to", iso(target), "--timeline", "1")
    sampler = Sampler(pf)
    sampler.start()
    try:
        pf.restorer.start(pg)
    finally:
        sampler.stop = True
        sampler.join()
    assert set(batches_in(pg)) == set(range(0, 25))
    served = served_from_spool(pg)
    replayed = re.findall(r"restored (\S+) from ", pg.log_since_start())
    assert len(replayed) >= 20, pg.log_since_start()
    # the first segment comes directly, and a few while the fetcher starts; most from the spool
    assert len(served) >= len(replayed) // 2, pg.log_since_start()
    assert sampler.samples > 10
    assert 0 < sampler.peak <= BOUND, "spool peak %d > bound %d" % (sampler.peak, BOUND)
    # cleaned at the end of recovery (the request for the new timeline's history file)
    wait_until(lambda: not spooled(pf), timeout=30, what="the spool to be empty")
    wait_until(lambda: not fetchers(pf.repo.config), timeout=30, what="the fetcher to exit")


def test_timeline2_never_gets_timeline1_segments(pf):
    pg = pf.restorer.restore("tl2-replay", "--timeline", "2")
    pf.restorer.start(pg)
    assert set(batches_in(pg)) == set(range(0, 11)) | {101, 102, 103, 104}
    log = pg.log_since_start()
    fork_seg = int(pf.b[10]["segment"][16:], 16)
    for name in served_from_spool(pg):
        if int(name[16:], 16) > fork_seg:
            assert name.startswith("00000002"), "timeline 1's %s served for timeline 2" % name
    assert any(n.startswith("00000002") for n in served_from_spool(pg)) or "00000002" in log
    wait_until(lambda: not spooled(pf), timeout=30, what="the spool to be empty")


def test_damaged_segment_stops_recovery(pf):
    victim = pf.b[18]["segment"]
    path = pf.repo.object_path(victim)
    size = os.path.getsize(path)
    flip_byte(path, size // 2)
    try:
        pg = pf.restorer.restore("damaged", "--to", iso(pf.b[25]["commit"] + 0.001),
                                 "--timeline", "1")
        pf.restorer.start(pg, promote_wait=False)
        wait_until(lambda: not pg.running(), timeout=120, what="the server to stop")
        log = pg.log_since_start()
        assert victim in log, log
        assert "stopping archive recovery" in log, log
        assert "redo done" not in log and "archive recovery complete" not in log, log
        assert "selected new timeline ID" not in log, log
    finally:
        flip_byte(path, size // 2)
    wait_until(lambda: not fetchers(pf.repo.config), timeout=30, what="the fetcher to exit")


def test_kill9_of_the_fetcher_does_not_break_recovery(pf):
    target = (pf.b[25]["commit"] + pf.b[26]["commit"]) / 2
    pg = pf.restorer.restore("kill9", "--to", iso(target), "--timeline", "1")
    killed = []
    stop = [False]

    def killer():
        while not stop[0]:
            for pid in fetchers(pf.repo.config):
                try:
                    os.kill(pid, 9)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        pf.restorer.start(pg)
    finally:
        stop[0] = True
        t.join()
    assert killed, "no background fetcher was seen to kill"
    assert set(batches_in(pg)) == set(range(0, 26))
    wait_until(lambda: not spooled(pf), timeout=30, what="the spool to be empty")


def test_two_clusters_have_their_own_spools(pf, wv):
    """A second cluster with the same spool_path: its own directory, its own segments."""
    d = os.path.join(pf.dir, "second")
    make_pg_dir(d, 0o755)
    repo2 = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"), conf_extra(pf.spool))
    q = Postgres(d, "q").initdb(wal_segsize=1)
    primary_conf(q, wv, repo2)
    try:
        q.start()
        q.sql("create table u (x int)")
        for _ in range(4):
            q.sql("insert into u values (1)")
            q.switch_wal_and_wait_archived()
        sysid2 = q.system_identifier()
        assert sysid2 != pf.sysid
        segs = repo2.segments()
        assert len(segs) >= 4
        dest_dir = os.path.join(d, "dest")
        make_pg_dir(dest_dir)
        first = segs[0]
        r = wv.fetch(first, os.path.join(dest_dir, first), config=repo2.config)
        assert r.returncode == 0, r.stderr
        nxt = segs[1]
        wait_until(lambda: nxt in os.listdir(fetch_dir(pf, sysid2)), timeout=30,
                   what="the next segment in the second cluster's spool")
        assert not any(n.startswith(nxt) for n in spooled(pf))
        r = wv.fetch(nxt, os.path.join(dest_dir, nxt), config=repo2.config)
        assert r.returncode == 0, r.stderr
        assert "from the prefetch spool" in r.stderr, r.stderr
        with open(os.path.join(dest_dir, nxt), "rb") as f:
            head = f.read(32)
        assert int.from_bytes(head[24:32], "little") == sysid2
        # the first cluster's spool holds nothing of the second's
        assert not [n for n in spooled(pf) if n in segs]
        mode = os.stat(fetch_dir(pf, sysid2)).st_mode & 0o777
        assert mode == 0o700
    finally:
        q.cleanup()
