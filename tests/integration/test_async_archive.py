"""archive_async = on: the background pusher pushes ahead from archive_status, wal-push for a
segment returns 0 only once the pusher (or, past its deadline, wal-push itself) stored it.

Every segment PostgreSQL was told is archived fetches byte-identical to the copy an archive_command
wrapper kept aside before wal-push ran, with pgbench writing, and also while the pusher is killed
with SIGKILL again and again. Two clusters sharing one spool_path each get their own spool
directory and repository. A done record of other content is not trusted; a pusher with nothing to
do exits; with the repository unreachable wal-push fails, naming it, and nothing is archived.
"""

import os
import random
import re
import signal
import threading
import time

import pytest

from utils import (Postgres, free_port, make_pg_dir, read_bytes, run, wait_until, chown_pg,
                   Repo)

pytestmark = pytest.mark.slow

SEG = re.compile(r"^[0-9A-F]{24}$")


def async_repo(workdir, name="repo", spool=None, extra=""):
    spool = spool or make_pg_dir(os.path.join(workdir, "spool"))
    r = Repo(os.path.join(workdir, name), os.path.join(workdir, name + ".conf"),
             "[global]\narchive_async = on\nspool_path = %s\nprocess_max = 2\n%s" % (spool, extra))
    r.spool = spool
    return r


def start_async_primary(workdir, wv, repo, name="primary", idle=5, keep_copies=True):
    """A 1 MiB-segment primary whose archive_command copies %p aside, then runs wal-push."""
    pg = Postgres(workdir, name).initdb(wal_segsize=1)
    copies = make_pg_dir(os.path.join(workdir, name + "-copies"))
    cmd = "WALVAULT_PUSHER_IDLE_S=%s %s" % (idle, wv.archive_command(repo.config))
    if keep_copies:
        cmd = "cp %%p %s/%%f.tmp && mv %s/%%f.tmp %s/%%f && %s" % (copies, copies, copies, cmd)
    pg.conf(archive_mode="on", archive_command=cmd, max_wal_size="32MB",
            checkpoint_timeout="30s", wal_keep_size="0")
    pg.start()
    pg.copies = copies
    return pg


def spool_dir(repo, pg):
    return os.path.join(repo.spool, "%016X" % pg.system_identifier())


def pusher_pid(repo, pg):
    try:
        with open(os.path.join(spool_dir(repo, pg), "archive", "pusher.lock")) as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"wal-push" not in f.read():
                return None
    except OSError:
        return None
    return pid


def archived_names(pg):
    """The files PostgreSQL was told are archived: those with a .done status file, and every
    segment given to archive_command up to pg_stat_archiver's last archived one (the archiver
    goes in order; checkpoints remove the .done files of recycled segments)."""
    st = os.path.join(pg.datadir, "pg_wal", "archive_status")
    names = {f[:-5] for f in os.listdir(st) if f.endswith(".done")}
    last = pg.archiver_stats()["last_archived_wal"]
    if getattr(pg, "copies", None):
        names |= {f for f in os.listdir(pg.copies) if SEG.match(f) and f <= last}
    return sorted(names)


def check_fetches_identically(wv, repo, pg, workdir, names):
    dest_dir = make_pg_dir(os.path.join(workdir, "fetched-" + pg.name))
    checked = 0
    for name in names:
        copy = os.path.join(pg.copies, name)
        assert os.path.exists(copy), "%s reported archived but never given to archive_command" % name
        dest = os.path.join(dest_dir, name)
        res = wv.fetch(name, dest, config=repo.config, cwd=workdir)
        assert res.returncode == 0, (name, res.stderr)
        assert read_bytes(dest) == read_bytes(copy), "%s fetched differs from its copy" % name
        os.unlink(dest)
        checked += 1
    return checked


def wait_all_archived(pg, timeout=180):
    last = pg.switch_wal_and_wait_archived(timeout=timeout)
    stats = pg.archiver_stats()
    return last, stats


def test_pgbench_every_archived_segment_fetches_identically(wv, workdir, pg_factory):
    repo = async_repo(workdir)
    pg = start_async_primary(workdir, wv, repo)
    pg_factory.servers.append(pg)
    pg.pgbench("-i", "-s", "5", "-q")
    pg.pgbench("-T", "8", "-c", "2", "-n")
    last, stats = wait_all_archived(pg)
    assert stats["failed_count"] == 0, stats
    # a pusher ran (it may have exited idle since, on a slow or sanitizer build): its lock file
    # names it
    with open(os.path.join(spool_dir(repo, pg), "archive", "pusher.lock")) as f:
        assert int(f.readline()) > 1, "no background pusher ran"
    names = archived_names(pg)
    segs = [n for n in names if SEG.match(n)]
    assert len(segs) >= 20, "too few segments to be a test: %d" % len(segs)
    # every segment from the first archived one to the last is in the repository
    first = int(segs[0], 16)
    missing = {"%024X" % n for n in range(first, int(last, 16) + 1)} - set(repo.segments())
    assert not missing, sorted(missing)
    assert check_fetches_identically(wv, repo, pg, workdir, names) == len(names)
    log = pg.log()
    assert "wal-push: error" not in log, log[-3000:]
    # the pusher did the pushing: the foreground calls did not fall back to pushing themselves
    fallbacks = log.count("pushing it now")
    assert fallbacks == 0, log[-3000:]
    assert not re.search(r"wal-push: archived %s to repo1" % segs[-1], log)
    # done records are consumed by the foreground calls: none is left for an archived file
    done = os.listdir(os.path.join(spool_dir(repo, pg), "archive", "done"))
    assert not set(done) & set(names), sorted(set(done) & set(names))[:5]


def test_kill9_of_the_pusher_loses_nothing(wv, workdir, pg_factory):
    repo = async_repo(workdir)
    pg = start_async_primary(workdir, wv, repo)
    pg_factory.servers.append(pg)
    pg.pgbench("-i", "-s", "5", "-q")
    stop = threading.Event()
    kills = []

    def killer():
        rnd = random.Random(13)
        while not stop.is_set():
            pid = pusher_pid(repo, pg)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
                except ProcessLookupError:
                    pass
            stop.wait(rnd.uniform(0.3, 1.0))

    t = threading.Thread(target=killer)
    t.start()
    try:
        pg.pgbench("-T", "15", "-c", "2", "-n")
    finally:
        stop.set()
        t.join()
    assert len(set(kills)) >= 5, "the pusher was killed only %d times" % len(set(kills))
    last, stats = wait_all_archived(pg, timeout=300)
    names = archived_names(pg)
    segs = [n for n in names if SEG.match(n)]
    first = int(segs[0], 16)
    missing = {"%024X" % n for n in range(first, int(last, 16) + 1)} - set(repo.segments())
    assert not missing, sorted(missing)
    assert check_fetches_identically(wv, repo, pg, workdir, names) == len(names)
    # nothing half-written under a final name, and no temp file is taken for an object
    for n in repo.wal_names():
        assert os.path.getsize(repo.object_path(n)) > 0


def test_two_clusters_share_a_spool_path_and_do_not_mix(wv, workdir, pg_factory):
    spool = make_pg_dir(os.path.join(workdir, "spool"))
    ra = async_repo(workdir, "repo-a", spool)
    rb = async_repo(workdir, "repo-b", spool)
    a = start_async_primary(workdir, wv, ra, "a")
    pg_factory.servers.append(a)
    b = start_async_primary(workdir, wv, rb, "b")
    pg_factory.servers.append(b)
    for _ in range(6):
        for pg in (a, b):
            pg.sql("create table if not exists t (x int); insert into t "
                   "select generate_series(1, 20000)")
            pg.sql("select pg_switch_wal()")
    wait_all_archived(a)
    wait_all_archived(b)
    sa, sb = spool_dir(ra, a), spool_dir(rb, b)
    assert sa != sb
    assert sorted(os.listdir(spool)) == sorted([os.path.basename(sa), os.path.basename(sb)])
    for pg, r, sd in ((a, ra, sa), (b, rb, sb)):
        with open(os.path.join(sd, "archive", "pusher.lock")) as f:
            lines = f.read().split("\n")
        assert lines[1] == os.path.realpath(pg.datadir), lines
        assert lines[2] == "%016X" % pg.system_identifier()
        names = archived_names(pg)
        stored = r.wal_names()
        # every object is one of this cluster's own files, byte for byte
        assert set(names) <= stored
        assert check_fetches_identically(wv, r, pg, workdir, sorted(stored)) == len(stored)


def make_ready_cluster(workdir, name="cold"):
    """A stopped cluster's data directory with its first segment marked .ready by hand."""
    pg = Postgres(workdir, name).initdb(wal_segsize=1)
    seg = sorted(f for f in os.listdir(os.path.join(pg.datadir, "pg_wal")) if SEG.match(f))[0]
    st = os.path.join(pg.datadir, "pg_wal", "archive_status")
    ready = os.path.join(st, seg + ".ready")
    open(ready, "w").close()
    chown_pg(ready)
    return pg, seg, ready


def write_record(path, sha_hex, size):
    with open(path, "w") as f:
        f.write("walvault-spool 1\nok %s %d\n" % (sha_hex, size))
    chown_pg(path)


def test_stale_done_record_is_not_trusted_and_an_idle_pusher_exits(wv, workdir):
    import hashlib

    repo = async_repo(workdir)
    pg, seg, ready = make_ready_cluster(workdir)
    seg_path = os.path.join(pg.datadir, "pg_wal", seg)
    data = read_bytes(seg_path)
    sd = os.path.join(repo.spool, "%016X" % pg.system_identifier())
    done = os.path.join(sd, "archive", "done")
    os.makedirs(done)
    for d in (repo.spool, sd, os.path.dirname(done), done):
        chown_pg(d)
    # same name, other content (another incarnation of the cluster): not trusted
    write_record(os.path.join(done, seg), hashlib.sha256(b"other").hexdigest(), len(data))
    env = {"WALVAULT_PUSHER_IDLE_S": "1"}
    res = wv.push("pg_wal/" + seg, config=repo.config, cwd=pg.datadir, env=env)
    assert res.returncode == 0, res.stderr
    assert "not trusted" in res.stderr, res.stderr
    assert repo.has(seg), "the segment was not pushed"
    dest = os.path.join(workdir, "fetched")
    assert wv.fetch(seg, dest, config=repo.config, cwd=workdir).returncode == 0
    assert read_bytes(dest) == data
    assert not os.path.exists(os.path.join(done, seg)), "the record was not consumed"
    pid = pusher_pid(repo, pg)
    assert pid, "no pusher was started"
    os.rename(ready, ready[:-6] + ".done")  # what PostgreSQL does after success
    # nothing more to do: the pusher exits after its idle time
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), timeout=30, what="idle pusher to exit")

    # a record of this very content is trusted: wal-push returns at once without pushing
    pg2, seg2, ready2 = make_ready_cluster(workdir, "cold2")
    data2 = read_bytes(os.path.join(pg2.datadir, "pg_wal", seg2))
    empty = async_repo(workdir, "empty", repo.spool)
    sd2 = os.path.join(repo.spool, "%016X" % pg2.system_identifier())
    done2 = os.path.join(sd2, "archive", "done")
    os.makedirs(done2)
    for d in (sd2, os.path.dirname(done2), done2):
        chown_pg(d)
    write_record(os.path.join(done2, seg2), hashlib.sha256(data2).hexdigest(), len(data2))
    res = wv.push("pg_wal/" + seg2, config=empty.config, cwd=pg2.datadir,
                  env={"WALVAULT_PUSHER_IDLE_S": "1"})
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(os.path.join(done2, seg2))
    assert not empty.has(seg2), "pushed although the record said it was done"
    os.rename(ready2, ready2[:-6] + ".done")


def test_unreachable_repository_fails_and_nothing_is_archived(wv, workdir, pg_factory):
    spool = make_pg_dir(os.path.join(workdir, "spool"))
    conf = os.path.join(workdir, "down.conf")
    with open(conf, "w") as f:
        f.write("[global]\narchive_async = on\nspool_path = %s\n\n"
                "[repo1]\ntype = ssh\nhost = 127.0.0.1\nport = %d\nuser = postgres\n"
                "path = /nowhere\n" % (spool, free_port()))
    chown_pg(conf)
    pg = Postgres(workdir, "down").initdb(wal_segsize=1)
    pg_factory.servers.append(pg)
    pg.conf(archive_mode="on", archive_command="WALVAULT_PUSHER_IDLE_S=3 %s"
            % wv.archive_command(conf))
    pg.start()
    name = pg.sql_value("select pg_walfile_name(pg_switch_wal())")
    wait_until(lambda: pg.archiver_stats()["failed_count"] >= 2, timeout=120,
               what="failed archive attempts")
    stats = pg.archiver_stats()
    assert stats["archived_count"] == 0, stats
    assert stats["last_failed_wal"] == name, stats
    log = pg.log()
    errs = [ln for ln in log.splitlines() if "wal-push: error:" in ln and "hint" not in ln]
    assert errs, log[-3000:]
    assert all("repo1" in ln for ln in errs), errs
    st = os.path.join(pg.datadir, "pg_wal", "archive_status")
    assert not [f for f in os.listdir(st) if f.endswith(".done")]


def test_pusher_stops_when_the_data_directory_is_replaced(wv, workdir):
    repo = async_repo(workdir)
    pg, seg, ready = make_ready_cluster(workdir)
    res = wv.push("pg_wal/" + seg, config=repo.config, cwd=pg.datadir,
                  env={"WALVAULT_PUSHER_IDLE_S": "600"})
    assert res.returncode == 0, res.stderr
    pid = pusher_pid(repo, pg)
    assert pid, "no pusher was started"
    time.sleep(1)
    assert os.path.exists("/proc/%d" % pid), "the pusher exited although it may idle 600 s"
    # another cluster initialised at the same path: the pusher must not push its WAL
    os.rename(pg.datadir, pg.datadir + ".old")
    Postgres(workdir, pg.name).initdb(wal_segsize=1)
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), timeout=30,
               what="the pusher to stop after its data directory was replaced")
