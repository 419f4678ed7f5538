"""Repositories with `required = no`: they may lag, and they catch up by themselves.

wal-push succeeds once every required repository holds the file; a failure of a `required = no`
repository is recorded in the spool (lag/<repo>/<file>) and the repository enters backoff, and later
pushes copy what it lacks from a repository that has it. A required repository failing still fails
the push, and a different object under the name is an error wherever it is (never lag).

With PostgreSQL 15: the ssh repository (repo2, required = no) goes down for ~20 s while the primary
writes: archiving to repo1 goes on (no archive failure, pg_wal does not fill up), status warns and
names repo2's lag; once sshd is back repo2 catches up without `basebackup sync`, and a
point-in-time recovery from repo2 alone reaches the newest commit with exactly its rows.
"""

import glob
import json
import os
import re
import shutil
import time

import pytest

from ssh_server import SshServer, remote_helper  # noqa: F401 - fixture
from test_offsite import Conf, batches_in, global_section, posix_section, start_primary
from test_restore_pitr import Restorer, commit_batch, connstr, iso, module_dir, take_backup
from test_wal_push import _modified_copy
from utils import make_pg_dir, run, wait_until

pytestmark = pytest.mark.xdist_group("lag")


def spool_section(spool, extra=""):
    return global_section() + "spool_path = %s\n%s" % (spool, extra)


def optional(section):
    return section + "required = no\n"


def lag_records(spool, repo):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(spool, "*", "lag", repo, "*")))


def root_owned_dir(path):
    """A repository directory postgres cannot write: every store there fails."""
    os.makedirs(path, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)
    return path


def expire_backoff(spool, repo):
    for p in glob.glob(os.path.join(spool, "*", "lag", repo, ".backoff")):
        os.unlink(p)


@pytest.fixture
def two(workdir):
    class Two:
        pass
    t = Two()
    t.r1 = make_pg_dir(os.path.join(workdir, "repo1"))
    t.r2 = os.path.join(workdir, "repo2")
    t.spool = make_pg_dir(os.path.join(workdir, "spool"))
    t.dir = workdir
    return t


def test_optional_failure_recorded_backoff_then_caught_up(wv, two, wal_samples):
    root_owned_dir(two.r2)
    conf = Conf(os.path.join(two.dir, "w.conf"),
                [posix_section(two.r1, 1), optional(posix_section(two.r2, 2))],
                spool_section(two.spool))
    segs = wal_samples.a_segments[:3]
    names = [os.path.basename(s) for s in segs]

    r = wv.push(segs[0], config=conf.config)
    assert r.returncode == 0, r.stderr
    assert re.search(r"%s not stored in repo2 \(required = no\), recorded to catch up later" %
                     names[0], r.stderr), r.stderr
    assert lag_records(two.spool, "repo2") == [names[0]]
    rec = open(glob.glob(os.path.join(two.spool, "*", "lag", "repo2", names[0]))[0]).read()
    assert rec.startswith("walvault-lag 1\ntime "), rec
    assert "size %d\n" % os.path.getsize(segs[0]) in rec, rec
    assert re.search(r"^error repo2: .*(denied|permission)", rec, re.M | re.I), rec
    # the spool's cluster directory is named by the system identifier, mode 0700
    cdir = os.path.join(two.spool, "%016X" % int(wal_samples.a_sysid))
    assert os.path.isdir(cdir) and os.stat(cdir).st_mode & 0o777 == 0o700

    # in backoff: not even tried, recorded at once
    r = wv.push(segs[1], config=conf.config)
    assert r.returncode == 0, r.stderr
    assert "not tried" in r.stderr, r.stderr
    assert lag_records(two.spool, "repo2") == names[:2]

    # back (and its backoff passed): the next push copies the backlog from repo1 first
    os.chown(two.r2, *(os.stat(two.r1)[4:6]))
    expire_backoff(two.spool, "repo2")
    r = wv.push(segs[2], config=conf.config)
    assert r.returncode == 0, r.stderr
    assert re.search(r"repo2 caught up 2 files", r.stderr), r.stderr
    assert lag_records(two.spool, "repo2") == []
    for n in names:
        a = os.path.join(two.r1, "wal", n[:16], n)
        b = os.path.join(two.r2, "wal", n[:16], n)
        assert open(a, "rb").read() == open(b, "rb").read(), n
    # and repo2 now serves every file itself
    only2 = Conf(os.path.join(two.dir, "only2.conf"), [posix_section(two.r2, 1)])
    for s, n in zip(segs, names):
        dest = os.path.join(two.dir, "fetched-" + n)
        r = wv.fetch(n, dest, config=only2.config)
        assert r.returncode == 0, r.stderr
        assert open(dest, "rb").read() == open(s, "rb").read()


def test_sync_clears_lag_records(wv, two, wal_samples):
    root_owned_dir(two.r2)
    conf = Conf(os.path.join(two.dir, "w.conf"),
                [posix_section(two.r1, 1), optional(posix_section(two.r2, 2))],
                spool_section(two.spool))
    for s in wal_samples.a_segments[:2]:
        assert wv.push(s, config=conf.config).returncode == 0
    assert len(lag_records(two.spool, "repo2")) == 2
    os.chown(two.r2, *(os.stat(two.r1)[4:6]))
    res = run(wv.cmd("basebackup", "sync", "--from", "1", "--to", "2", config=conf.config))
    assert "2 lag records cleared" in res.stderr, res.stdout + res.stderr
    assert lag_records(two.spool, "repo2") == []


def test_required_repository_down_fails(wv, two, wal_samples):
    root_owned_dir(two.r2)
    conf = Conf(os.path.join(two.dir, "w.conf"),
                [optional(posix_section(two.r1, 1)), posix_section(two.r2, 2)],
                spool_section(two.spool))
    r = wv.push(wal_samples.a_segments[0], config=conf.config)
    assert r.returncode != 0, r.stderr
    assert re.search(r"repo2: ", r.stderr), r.stderr
    assert lag_records(two.spool, "repo1") == []


def test_all_repositories_optional_refused(wv, two, wal_samples):
    conf = Conf(os.path.join(two.dir, "w.conf"),
                [optional(posix_section(two.r1, 1)), optional(posix_section(make_pg_dir(two.r2), 2))],
                spool_section(two.spool))
    r = wv.push(wal_samples.a_segments[0], config=conf.config)
    assert r.returncode != 0
    assert re.search(r"w\.conf: every repository has \"required = no\": at least one repository "
                     r"must be required", r.stderr), r.stderr


def test_conflict_on_optional_repository_is_an_error(wv, two, wal_samples):
    make_pg_dir(two.r2)
    seg = wal_samples.a_segments[1]
    name = os.path.basename(seg)
    only2 = Conf(os.path.join(two.dir, "only2.conf"), [posix_section(two.r2, 1)])
    os.makedirs(os.path.join(two.dir, "other"))
    other = _modified_copy(seg, os.path.join(two.dir, "other", name))
    assert wv.push(other, config=only2.config).returncode == 0
    conf = Conf(os.path.join(two.dir, "w.conf"),
                [posix_section(two.r1, 1), optional(posix_section(two.r2, 2))],
                spool_section(two.spool))
    r = wv.push(seg, config=conf.config)
    assert r.returncode != 0, "a conflict on a required = no repository was taken as lag"
    assert re.search(r"repo2: .*different content", r.stderr), r.stderr
    assert lag_records(two.spool, "repo2") == []


def test_real_write_error_reported_not_a_conflict(wv, two, wal_samples):
    """repo1 already holds the object and every other write fails mid-stream (a file size limit:
    EFBIG): each repository's own outcome is reported (repo2's write error), never a false
    split-brain conflict from comparing repo1's copy with a trailer that was never written."""
    seg = wal_samples.a_segments[0]
    make_pg_dir(two.r2)
    for i, r in ((1, two.r1), (2, two.r2)):
        alone = Conf(os.path.join(two.dir, "only%d.conf" % i), [posix_section(r, 1)])
        # repo2 gets another segment, so that it is bound to the cluster and only the write fails
        assert wv.push(seg if i == 1 else wal_samples.a_segments[1],
                       config=alone.config).returncode == 0
    conf = Conf(os.path.join(two.dir, "w.conf"), [posix_section(two.r1, 1),
                                                  posix_section(two.r2, 2)])
    cmd = "trap '' XFSZ; ulimit -f 16; exec %s" % " ".join(wv.cmd("wal-push", seg,
                                                                  config=conf.config))
    r = run(["bash", "-c", cmd], check=False)
    assert r.returncode != 0, r.stderr
    assert "different content" not in r.stderr, r.stderr
    assert re.search(r"repo2: .*(too large|EFBIG)", r.stderr, re.I), r.stderr
    assert not os.path.exists(os.path.join(two.r2, "wal", os.path.basename(seg)[:16],
                                           os.path.basename(seg)))


# ---- PostgreSQL 15 with an ssh repository that goes down ----------------------------------------

def ready_count(pg):
    return len(glob.glob(os.path.join(pg.datadir, "pg_wal", "archive_status", "*.ready")))


def status(wv, conf, *args):
    return run(wv.cmd("basebackup", "status", *args, config=conf.config), check=False)


def test_ssh_repository_down_lags_and_catches_up(wv, basetemp, remote_helper):  # noqa: F811
    d = module_dir(basetemp, "lag-ssh")
    srv = SshServer(d)
    srv.start()
    r1 = make_pg_dir(os.path.join(d, "repo1"))
    r2 = make_pg_dir(os.path.join(d, "repo2-ssh"), 0o750)
    spool = make_pg_dir(os.path.join(d, "spool"))
    conf = Conf(os.path.join(d, "walvault.conf"),
                [posix_section(r1, 1), optional(srv.repo_section(r2, remote_helper, 2))],
                spool_section(spool))
    pg = start_primary(d, wv, conf)
    restorer = None
    ok = False
    try:
        commit_batch(pg, 0)
        take_backup(wv, conf, pg)
        pg.switch_wal_and_wait_archived()

        # repo2 down for ~20 s while the primary writes
        srv.stop()
        peak = 0
        batch = 1
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            commit_batch(pg, batch)
            batch += 1
            pg.switch_wal_and_wait_archived()
            peak = max(peak, ready_count(pg))
        stats = pg.archiver_stats()
        assert stats["failed_count"] == 0, stats
        assert peak <= 2, "pg_wal grew: %d .ready files waiting" % peak
        lagging = lag_records(spool, "repo2")
        assert len(lagging) >= batch - 2, lagging

        st = status(wv, conf)
        assert st.returncode == 1, st.stdout + st.stderr
        assert re.search(r"^repo2 \(ssh.*\): WARNING", st.stdout, re.M), st.stdout
        assert re.search(r"^  lag: +\d+ files?, ", st.stdout, re.M), st.stdout
        js = json.loads(status(wv, conf, "--json").stdout)
        lag2 = [r for r in js["repositories"] if r["name"] == "repo2"][0]["lag"]
        assert lag2["files"] == len(lag_records(spool, "repo2")) and lag2["bytes"] > 0, lag2
        # a backup now: written to repo1, repo2 skipped and named
        res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                         config=conf.config), check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        m = re.search(r"^backup (\S+) complete", res.stdout, re.M)
        assert m, res.stdout
        skipped_id = m.group(1)
        assert re.search(r"^backup %s skipped repo2 \(required = no, unreachable\)" % skipped_id,
                         res.stdout, re.M), res.stdout
        assert os.path.exists(os.path.join(r1, "backup", skipped_id, "backup.manifest"))
        lj = json.loads(run(wv.cmd("basebackup", "list", "--json", "--repo", "1",
                                   config=conf.config)).stdout)
        assert skipped_id in json.dumps(lj)
        prom = os.path.join(d, "walvault.prom")
        status(wv, conf, "--prometheus", prom)
        text = open(prom).read()
        assert re.search(r'^walvault_repo_lag_files\{repo="repo2"\} [1-9]', text, re.M), text
        assert re.search(r'^walvault_repo_lag_files\{repo="repo1"\} 0$', text, re.M), text

        # back: repo2 catches up through the following pushes (backoff at most a few periods)
        srv.start()
        # before the next push: the listing shows repo2's window ending at its own last segment
        ls = run(wv.cmd("basebackup", "list", config=conf.config)).stdout
        assert re.search(r"^  lagging: repo1 holds \d+ newer WAL segments? of timeline 1; this "
                         r"repository's WAL ends at [0-9A-F]{24}", ls, re.M), ls
        st = status(wv, conf, "--json")
        assert st.returncode == 1, st.stdout

        def caught_up():
            nonlocal batch
            commit_batch(pg, batch)
            batch += 1
            pg.switch_wal_and_wait_archived()
            return not lag_records(spool, "repo2")
        wait_until(caught_up, timeout=180, interval=1, what="repo2 to catch up")
        last = commit_batch(pg, batch)
        batch += 1
        seg = pg.switch_wal_and_wait_archived()
        assert os.path.exists(os.path.join(r2, "wal", seg[:16], seg)), seg
        st = status(wv, conf)
        assert "lag:" not in st.stdout, st.stdout
        lj = json.loads(run(wv.cmd("basebackup", "list", "--json", config=conf.config)).stdout)
        repos = {r["repo"]: r for r in lj["repositories"]}
        assert skipped_id not in json.dumps(repos["repo2"]), "a skipped backup listed in repo2"
        assert "lagging" not in repos["repo2"], repos["repo2"]
        expected = batches_in(pg)
        assert pg.archiver_stats()["failed_count"] == 0

        # PITR from repo2 alone reaches the newest commit, with exactly its rows
        only2 = Conf(os.path.join(d, "only2.conf"), [srv.repo_section(r2, remote_helper, 1)],
                     spool_section(spool))
        restorer = Restorer(wv, only2, d)
        rp = restorer.restore_and_start("from-repo2")
        assert batches_in(rp) == expected
        assert last["batch"] in batches_in(rp)
        rp.stop()
        ok = True
    finally:
        if restorer:
            restorer.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()
        srv.cleanup()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


# ---- archive_queue_max: the last resort ------------------------------------------------------

def test_archive_queue_max_drops_loudly_and_restore_refuses_across(wv, basetemp):
    d = module_dir(basetemp, "lag-queue")
    r1 = make_pg_dir(os.path.join(d, "repo1"))
    spool = make_pg_dir(os.path.join(d, "spool"))
    events = make_pg_dir(os.path.join(d, "events"))
    hook = os.path.join(d, "hook.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\ncat > %s/"$WALVAULT_EVENT.$$.json"\n' % events)
    os.chmod(hook, 0o755)
    conf = Conf(os.path.join(d, "walvault.conf"), [posix_section(r1, 1)],
                spool_section(spool, "archive_queue_max = 64KiB\nnotify_command = %s\n" % hook))
    pg = start_primary(d, wv, conf)
    restorer = Restorer(wv, conf, d)
    ok = False
    try:
        commit_batch(pg, 0)
        take_backup(wv, conf, pg)
        time.sleep(1.1)
        before = commit_batch(pg, 1)
        pg.switch_wal_and_wait_archived()
        # repo1 (the only, required, repository) refuses every write: the next segment is dropped
        waldir = os.path.join(r1, "wal", before["segment"][:16])
        os.chown(waldir, 0, 0)
        os.chmod(waldir, 0o555)
        time.sleep(0.2)
        commit_batch(pg, 2)
        dropped = pg.switch_wal_and_wait_archived()
        assert not os.path.exists(os.path.join(waldir, dropped))
        os.chown(waldir, *(os.stat(r1)[4:6]))
        os.chmod(waldir, 0o750)
        time.sleep(0.2)
        after = commit_batch(pg, 3)
        pg.switch_wal_and_wait_archived()
        assert pg.archiver_stats()["failed_count"] == 0
        log = pg.log()
        assert re.search(r"wal-push: error: archive_queue_max \(64(\.0)? KiB\) exceeded: WAL segment %s "
                         r"dropped without archiving; point-in-time recovery across it is "
                         r"impossible until the next base backup" % dropped, log), log[-3000:]
        assert os.path.exists(os.path.join(spool, "%016X" % int(pg.system_identifier()),
                                           "dropped", dropped))
        assert open(os.path.join(r1, "gaps", dropped)).read().startswith("walvault-gap 1\n")
        ev = [json.load(open(os.path.join(events, n))) for n in os.listdir(events)]
        assert any(e["event"] == "wal-drop" and dropped in e["message"] for e in ev), ev

        ls = run(wv.cmd("basebackup", "list", config=conf.config)).stdout
        assert "dropped by archive_queue_max: %s" % dropped in ls, ls
        st = status(wv, conf)
        assert st.returncode == 2, st.stdout
        assert "dropped by archive_queue_max (the newest %s)" % dropped in st.stdout, st.stdout

        # a target before the gap is accepted; one whose replay crosses it is refused
        res = restorer.restore("across", "--to", iso(after["commit"] + 0.001), check=False)
        assert res.restore_result.returncode != 0, res.restore_result.stdout
        assert re.search(r"segment %s was dropped by archive_queue_max without archiving" % dropped,
                         res.restore_result.stderr), res.restore_result.stderr
        assert not os.listdir(res.datadir) if os.path.isdir(res.datadir) else True
        rp = restorer.restore_and_start("before", "--to", iso(before["commit"] + 0.001))
        assert batches_in(rp) == {0: 10, 1: 10}, batches_in(rp)
        rp.stop()
        ok = True
    finally:
        restorer.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)

