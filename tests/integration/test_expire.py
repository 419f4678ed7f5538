"""basebackup expire, delete and keep on real backups of PostgreSQL 15.

Backups are real (one cluster per module, 1 MiB segments, five walvault backups a few seconds apart,
a batch of rows committed after each), and expire runs under a shifted clock: faketime(1) sets the
`now` of the expire process only (the backups' times are the server's, recorded as they were taken),
so a "now" one hour and a second after backup 3 ended puts backups 1-3 outside a one-hour window
and backup 2 inside a two-hour label rule. Each test works on a copy of the module's repository.

Proved here: without [retention] nothing goes (and expire says so, exit 0); --dry-run deletes
nothing (the listing of every object is the same before and after); the kept set and the WAL cut
are exactly the ones the rules give, and expired backups and WAL are gone from the repository;
every kept backup restores and reaches the newest archived commit, and points inside the window
restore to the exact rows; `list` shows the rules that keep each backup and when it expires;
delete refuses the newest backup and a kept one without --force; keep on/off changes what expire
does and sync carries it; the repository lock refuses a second expire while one holds it and is
taken over from a killed one; kill -9 at several points of expire (constructed crash states, and
kills of a real expire, some slowed down by strace so that they land while it deletes) leaves a repository that list
and verify accept and whose next expire finishes the job; expire while pgbench archives through
wal-push and a backup runs leaves the running backup and its WAL alone; after_backup = yes; the
same cycle on S3 (Ceph RGW) and on an SSH backup server.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from s3_server import s3_server  # noqa: F401 - fixture
from ssh_server import remote_helper, ssh_server  # noqa: F401 - fixtures
from test_offsite import Conf, global_section, new_bucket, s3_section
from test_restore_pitr import (Restorer, batches_in, bb, commit_batch, connstr, finish_module,
                               module_dir, parse_wv_time, take_backup, utc)
from utils import (Postgres, Repo, chown_pg, make_pg_dir, popen, run, tree_files, wait_until)

pytestmark = pytest.mark.xdist_group("expire")

SEG = 1024 * 1024  # the module's WAL segment size


# --- helpers ----------------------------------------------------------------------------------

def faketime_env(now, seam=False):
    """The environment that makes a process's clock start at `now` (epoch seconds, UTC).
    seam: only the retention policy's `now`, by the test seam WALVAULT_TEST_NOW (for S3, whose
    request signatures need the real time)."""
    if seam:
        return {"WALVAULT_TEST_NOW": str(int(now))}
    env = {"FAKETIME": "@" + utc(now).strftime("%Y-%m-%d %H:%M:%S"),
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "TZ": "UTC",
           "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"}
    asan = os.environ.get("ASAN_OPTIONS")
    if asan is not None:
        # libfaketime is preloaded ahead of the ASan runtime: only for this process
        env["ASAN_OPTIONS"] = asan + ":verify_asan_link_order=0"
    return env


def expire(wv, conf, now, *args, check=0, seam=False):
    """basebackup expire under a clock that reads `now`; check: the expected exit code or None."""
    res = run(wv.cmd("basebackup", "expire", *args, config=conf.config), check=False,
              env=faketime_env(now, seam), timeout=600)
    if check is not None:
        assert res.returncode == check, "expire %s: exit %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), res.returncode, res.stdout, res.stderr)
    return res


def expire_json(wv, conf, now, *args):
    res = expire(wv, conf, now, "--json", *args)
    return json.loads(res.stdout)["repositories"]


def list_json(wv, conf, now=None, repo=1):
    res = run(wv.cmd("basebackup", "list", "--json", "--repo", repo, config=conf.config),
              env=faketime_env(now) if now else None)
    return json.loads(res.stdout)["repositories"][0]


def lsn_int(s):
    hi, lo = s.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def segname(segno, tli=1):
    per = 0x100000000 // SEG
    return "%08X%08X%08X" % (tli, segno // per, segno % per)


def segno_of(name):
    per = 0x100000000 // SEG
    return int(name[8:16], 16) * per + int(name[16:24], 16)


def write_conf(path, repo_path, retention=""):
    with open(path, "w") as f:
        if retention:
            f.write("[retention]\n%s\n\n" % retention.strip())
        f.write("[repo1]\ntype = posix\npath = %s\n" % repo_path)
    chown_pg(path)


def objects(path):
    """Every object of a posix repository (no temporary files)."""
    return {f for f in tree_files(path) if ".wvtmp-" not in f}


def wal_files(path):
    return {os.path.basename(f) for f in objects(path) if f.startswith("wal/")}


def backup_ids(path):
    d = os.path.join(path, "backup")
    return {b for b in os.listdir(d)
            if os.path.isfile(os.path.join(d, b, "backup.manifest"))} if os.path.isdir(d) else set()


# --- the module's cluster and backups ---------------------------------------------------------

class Cal:
    pass


@pytest.fixture(scope="module")
def cal(basetemp, wv):
    """Five real backups, about 3 s apart, with batch k committed after backup k (batch 0 before
    backup 1); backup 2 labelled keepme-2, backup 4 taken with --keep."""
    d = module_dir(basetemp, "expire")
    s = Cal()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.repo.config),
            archive_timeout=0, track_commit_timestamp="on", autovacuum="off", max_wal_size="64MB")
    s.primary = pg
    s.restorer = Restorer(wv, s.repo, d)
    ok = False
    try:
        pg.start()
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        s.batches = [commit_batch(pg, 0)]
        s.ids = []
        labels = {1: "nightly", 2: "keepme-2", 3: "nightly", 4: "kept", 5: "nightly"}
        for k in range(1, 6):
            args = ["--label", labels[k]] + (["--keep"] if k == 4 else [])
            s.ids.append(take_backup(wv, s.repo, pg, *args))
            time.sleep(1.2)  # windows start after a backup's stop time (whole seconds)
            s.batches.append(commit_batch(pg, k))
            pg.switch_wal_and_wait_archived()
            time.sleep(1.0)
        s.info = {b["id"]: b for b in list_json(wv, s.repo)["backups"]}
        s.stop = [parse_wv_time(s.info[i]["stop_time"]) for i in s.ids]
        s.start_seg = [lsn_int(s.info[i]["start_lsn"]) // SEG for i in s.ids]
        assert sorted(s.stop) == s.stop and len(set(int(x) for x in s.stop)) == 5, s.stop
        ok = True
        yield s
    finally:
        finish_module(s.restorer, pg, d, ok)


def copy_repo(cal, workdir, retention="", name="repo"):
    """A copy of the module's repository with its own configuration file."""
    path = os.path.join(workdir, name)
    r = cal.repo.copy_to(path, os.path.join(workdir, name + ".conf"))
    write_conf(r.config, r.path, retention)
    return r


RET = "window = 1h\nlabel.keepme = 2h"


def verdicts(repos_json):
    r = repos_json[0]
    return {b["id"]: b["verdict"] for b in r["backups"]}


# --- tests ------------------------------------------------------------------------------------

def test_without_retention_nothing_expires(cal, wv, workdir):
    r = copy_repo(cal, workdir)
    before = objects(r.path)
    res = expire(wv, r, cal.stop[-1] + 10 * 365 * 86400)
    assert res.stdout.strip() == "no [retention] in %s: nothing is expired" % r.config, res.stdout
    assert objects(r.path) == before


def test_dry_run_deletes_nothing(cal, wv, workdir):
    r = copy_repo(cal, workdir, RET)
    before = objects(r.path)
    now = int(cal.stop[2]) + 3600 + 1
    plan = expire_json(wv, r, now, "--dry-run")
    assert verdicts(plan) == {cal.ids[0]: "expired", cal.ids[1]: "kept", cal.ids[2]: "kept",
                              cal.ids[3]: "kept", cal.ids[4]: "kept"}, plan
    assert plan[0]["dry_run"] is True and plan[0]["done"] is False
    assert plan[0]["expired_backups"] == 1 and plan[0]["expired_wal_files"] > 0
    text = expire(wv, r, now, "--dry-run").stdout
    assert re.match(r"^would expire 1 backup \(.+\) and \d+ WAL files \(.+\) from repo1; would "
                    r"keep 4 backups\n$", text), text
    assert objects(r.path) == before


def expected_wal_left(before, cut_segno):
    """The WAL names that stay with a cut at cut_segno on timeline 1 (history files always)."""
    keep = set()
    for n in before:
        if n.endswith(".history") or segno_of(n) >= cut_segno:
            keep.add(n)
    return keep


def test_expire_keeps_exactly_the_rules_and_restores(cal, wv, workdir):
    r = copy_repo(cal, workdir, RET)
    wal_before = wal_files(r.path)
    # transaction id range objects below the cut go with their segments (expected_wal_left)
    assert any(n.endswith(".xid") and segno_of(n) < cal.start_seg[1] for n in wal_before), \
        sorted(wal_before)
    now = int(cal.stop[2]) + 3600 + 1
    # list shows what keeps each backup, as expire would decide at that moment
    listed = {b["id"]: b["retention"] for b in list_json(wv, r, now)["backups"]}
    assert listed[cal.ids[0]]["verdict"] == "expired"
    assert listed[cal.ids[1]]["kept_by"] == ["label keepme"], listed
    assert listed[cal.ids[2]]["kept_by"] == ["window"], listed
    assert listed[cal.ids[3]]["kept_by"] == ["keep"] and listed[cal.ids[3]]["expires_at"] is None
    assert "newest" in listed[cal.ids[4]]["kept_by"], listed
    exp = parse_wv_time(listed[cal.ids[1]]["expires_at"])
    assert exp == int(cal.stop[1]) + 7200 + 1, (exp, cal.stop[1])

    res = expire(wv, r, now)
    assert re.match(r"^expired 1 backup \(.+\) and \d+ WAL files \(.+\) from repo1; kept 4 "
                    r"backups\n$", res.stdout), res.stdout
    assert backup_ids(r.path) == set(cal.ids[1:])
    assert not os.path.exists(os.path.join(r.path, "backup", cal.ids[0]))
    # the WAL cut: the start segment of the oldest kept backup (backup 2)
    assert wal_files(r.path) == expected_wal_left(wal_before, cal.start_seg[1])
    assert segname(cal.start_seg[1]) in wal_files(r.path)
    assert segname(cal.start_seg[1] - 1) not in wal_files(r.path)
    assert not os.path.exists(os.path.join(r.path, "expire.lock"))
    run(wv.cmd("basebackup", "verify", config=r.config))
    # a second run finds nothing more to do
    again = expire(wv, r, now)
    assert again.stdout.startswith("expired 0 backups (0 B) and 0 WAL files"), again.stdout

    # every kept backup restores and reaches the newest archived commit
    restorer = Restorer(wv, r, workdir)
    try:
        for bid in cal.ids[1:]:
            pg = restorer.restore_and_start("kept", "--backup", bid)
            assert batches_in(pg) == {k: 10 for k in range(6)}, (bid, batches_in(pg))
            pg.stop()
        # points inside the window (and the label-kept backup's range) restore to the exact rows
        for k in (2, 4):
            target = utc((cal.batches[k]["commit"] + cal.batches[k + 1]["commit"]) / 2)
            pg = restorer.restore_and_start("pitr", "--to",
                                            target.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            assert batches_in(pg) == {j: 10 for j in range(k + 1)}, (k, batches_in(pg))
            pg.stop()
    finally:
        restorer.cleanup()

    # later: the window moves past backup 5, the label rule lets backup 2 go, backup 3 goes;
    # backup 4 (--keep) stays, and with it all WAL from its start
    later = int(cal.stop[4]) + 3 * 3600
    plan = expire_json(wv, r, later)
    assert verdicts(plan) == {cal.ids[1]: "expired", cal.ids[2]: "expired",
                              cal.ids[3]: "kept", cal.ids[4]: "kept"}, plan
    assert backup_ids(r.path) == {cal.ids[3], cal.ids[4]}
    assert wal_files(r.path) == expected_wal_left(wal_before, cal.start_seg[3])
    assert plan[0]["wal"][0]["keep_from"] == segname(cal.start_seg[3])


def test_table_on_a_terminal(cal, wv, workdir):
    """On a terminal the plan is a table with one line per backup and its rules."""
    r = copy_repo(cal, workdir, RET)
    now = int(cal.stop[2]) + 3600 + 1
    cmd = ["script", "-qec", " ".join(wv.cmd("basebackup", "expire", "--dry-run",
                                             config=r.config)), "/dev/null"]
    res = run(cmd, env=faketime_env(now))
    out = res.stdout.replace("\r", "")
    for i, bid in enumerate(cal.ids):
        line = [ln for ln in out.splitlines() if ln.strip().startswith(bid)]
        assert len(line) == 1, out
        assert (" expire " in line[0]) == (i == 0), line
    assert "label keepme" in out and "window" in out and "keep" in out
    assert re.search(r"WAL timeline 1: would expire \d+ files", out), out
    assert "would expire 1 backup" in out


def test_delete_refusals_and_keep(cal, wv, workdir):
    r = copy_repo(cal, workdir, RET)
    before = objects(r.path)
    res = bb(wv, r, "delete", "--backup", cal.ids[4], check=False)
    assert res.returncode == 13 and "newest complete backup" in res.stderr, res.stderr
    res = bb(wv, r, "delete", "--backup", cal.ids[3], check=False)
    assert res.returncode == 13 and "is kept" in res.stderr and "--force" in res.stderr, res.stderr
    res = bb(wv, r, "delete", "--backup", "20000101T000000Z", check=False)
    assert res.returncode == 1 and "not in any repository" in res.stderr, res.stderr
    assert objects(r.path) == before

    # keep off, then on for backup 1: expire keeps backup 1 and lets backup 4 go
    assert bb(wv, r, "keep", "--backup", cal.ids[3], "off").stdout.strip() == \
        "backup %s in repo1: keep off" % cal.ids[3]
    bb(wv, r, "keep", "--backup", cal.ids[0], "on")
    info = {b["id"]: b for b in list_json(wv, r)["backups"]}
    assert info[cal.ids[0]]["keep"] is True and info[cal.ids[3]]["keep"] is False
    later = int(cal.stop[4]) + 3 * 3600
    plan = expire_json(wv, r, later)
    assert verdicts(plan) == {cal.ids[0]: "kept", cal.ids[1]: "expired", cal.ids[2]: "expired",
                              cal.ids[3]: "expired", cal.ids[4]: "kept"}, plan
    assert backup_ids(r.path) == {cal.ids[0], cal.ids[4]}
    # the old kept backup holds all WAL from its start
    assert segname(cal.start_seg[0]) in wal_files(r.path)

    # delete --force of a kept backup; the WAL stays for expire
    wal = wal_files(r.path)
    res = bb(wv, r, "delete", "--backup", cal.ids[0], "--force")
    assert re.match(r"^deleted backup %s from repo1 \(\d+ objects, .+\)" % cal.ids[0],
                    res.stdout), res.stdout
    assert backup_ids(r.path) == {cal.ids[4]} and wal_files(r.path) == wal
    assert not [f for f in objects(r.path) if f.startswith("backup/%s/" % cal.ids[0])]
    run(wv.cmd("basebackup", "verify", config=r.config))


def test_sync_carries_the_keep_flag(cal, wv, workdir):
    r = copy_repo(cal, workdir)
    other = make_pg_dir(os.path.join(workdir, "other"))
    conf = os.path.join(workdir, "two.conf")
    with open(conf, "w") as f:
        f.write("[repo1]\ntype = posix\npath = %s\n\n[repo2]\ntype = posix\npath = %s\n"
                % (r.path, other))
    chown_pg(conf)
    c = Conf.__new__(Conf)
    c.config = conf
    run(wv.cmd("basebackup", "sync", "--from", 1, "--to", 2, config=conf))
    bb(wv, c, "keep", "--backup", cal.ids[1], "on", "--repo", 1)
    bb(wv, c, "keep", "--backup", cal.ids[3], "off", "--repo", 1)
    assert {b["id"]: b["keep"] for b in list_json(wv, c, repo=2)["backups"]}[cal.ids[1]] is False
    run(wv.cmd("basebackup", "sync", "--from", 1, "--to", 2, config=conf))
    keep2 = {b["id"]: b["keep"] for b in list_json(wv, c, repo=2)["backups"]}
    assert keep2 == {i: i == cal.ids[1] for i in cal.ids}, keep2


def test_the_lock_refuses_a_second_expire(cal, wv, workdir):
    r = copy_repo(cal, workdir, RET)
    now = int(cal.stop[2]) + 3600 + 1
    holder = subprocess.Popen(["sleep", "300"])
    try:
        lock = os.path.join(r.path, "expire.lock")
        with open(lock, "w") as f:
            f.write("%d %s %d\n" % (holder.pid, socket.gethostname(), int(time.time())))
        chown_pg(lock)
        before = objects(r.path)
        for cmd in (["expire"], ["keep", "--backup", cal.ids[0], "on"],
                    ["delete", "--backup", cal.ids[0]]):
            res = run(wv.cmd("basebackup", *cmd, config=r.config), check=False,
                      env=faketime_env(now))
            assert res.returncode == 14, res.stderr
            assert re.search(r"repo1: %s refused: another expire, delete or keep holds the "
                             r"repository lock \"expire.lock\" \(pid %d on " % (cmd[0], holder.pid),
                             res.stderr), res.stderr
            assert "hint: wait for it to finish" in res.stderr, res.stderr
        assert objects(r.path) == before
    finally:
        holder.kill()
        holder.wait()
    # its holder gone (as after kill -9): the next expire takes the lock over and finishes
    res = expire(wv, r, now)
    assert "stale lock" in res.stderr and res.stdout.startswith("expired 1 backup"), res
    assert backup_ids(r.path) == set(cal.ids[1:])


def final_state(cal, wv, workdir):
    r = copy_repo(cal, workdir, RET, name="reference")
    expire(wv, r, int(cal.stop[4]) + 3 * 3600)
    return objects(r.path)


def test_kill9_during_expire_at_several_points(cal, wv, workdir):
    later = int(cal.stop[4]) + 3 * 3600
    want = final_state(cal, wv, workdir)
    # constructed crash points: the manifest of an expiring backup removed, nothing else; half of
    # its objects gone too; some of the WAL below the cut gone; a dead expire's lock left behind
    points = ["manifest-gone", "objects-half-gone", "wal-half-gone", "lock-left"]
    # and real kills after a few delays; then kills of an expire slowed down by strace (0.1 s
    # before every unlink), which land while it deletes
    points += ["kill-%g" % d for d in (0.0, 0.005, 0.01, 0.02, 0.04, 0.08)]
    points += ["slowkill-%g" % d for d in (0.2, 0.4, 0.6, 0.8, 1.0)]
    midway = 0
    for n, point in enumerate(points):
        r = copy_repo(cal, workdir, RET, name="k%d" % n)
        victim = os.path.join(r.path, "backup", cal.ids[1])
        if point == "manifest-gone":
            os.unlink(os.path.join(victim, "backup.manifest"))
        elif point == "objects-half-gone":
            os.unlink(os.path.join(victim, "backup.manifest"))
            files = sorted(tree_files(victim))
            for f in files[:len(files) // 2]:
                os.unlink(os.path.join(victim, f))
        elif point == "wal-half-gone":
            # the backups went first (expire's order), then half the WAL below the cut
            for bid in cal.ids[:3]:
                shutil.rmtree(os.path.join(r.path, "backup", bid))
            below = sorted(n_ for n_ in wal_files(r.path)
                           if not n_.endswith(".history") and segno_of(n_) < cal.start_seg[3])
            for name in below[:len(below) // 2]:
                os.unlink(r.object_path(name))
        elif point == "lock-left":
            p = subprocess.Popen(["true"])
            p.wait()
            with open(os.path.join(r.path, "expire.lock"), "w") as f:
                f.write("%d %s %d\n" % (p.pid, socket.gethostname(), int(time.time())))
        elif point.startswith("kill-"):
            proc = popen(wv.cmd("basebackup", "expire", config=r.config),
                         env=faketime_env(later))
            time.sleep(float(point.split("-")[1]))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        else:
            start = objects(r.path)
            env = faketime_env(later)
            if "ASAN_OPTIONS" in env:
                env["ASAN_OPTIONS"] += ":detect_leaks=0"  # LeakSanitizer cannot run under ptrace
            proc = popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink,unlinkat",
                          "-e", "inject=unlink,unlinkat:delay_enter=100000", "--"]
                         + wv.cmd("basebackup", "expire", config=r.config), env=env)
            child = wait_until(lambda: open("/proc/%d/task/%d/children"
                                            % (proc.pid, proc.pid)).read().split(),
                               timeout=30, what="strace's child")[0]
            time.sleep(float(point.split("-")[1]))
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass  # it finished first
            proc.communicate()
            left = objects(r.path)
            midway += left != start and left != want
        # list and verify accept what is left: every backup listed is complete
        listed = list_json(wv, r)
        for b in listed["backups"]:
            assert b["id"] in backup_ids(r.path)
        res = run(wv.cmd("basebackup", "verify", config=r.config), check=False)
        assert res.returncode == 0, (point, res.stdout, res.stderr)
        # the next expire finishes the job: the same objects as an expire never interrupted
        expire(wv, r, later)
        # state/cleaned-up records the clean-up of an interrupted expire's leftovers for status
        after = {o for o in objects(r.path) if not o.startswith("state/")}
        assert after == want, (point, sorted(after ^ want)[:20])
    assert midway >= 1, "only %d of the slowed-down expires were killed while deleting" % midway
    # and a restore from what is left reaches the newest commit
    restorer = Restorer(wv, r, workdir)
    try:
        pg = restorer.restore_and_start("after-kill", "--backup", cal.ids[3])
        assert batches_in(pg) == {k: 10 for k in range(6)}
        pg.stop()
    finally:
        restorer.cleanup()


def test_expire_while_pgbench_archives_and_a_backup_runs(pg_factory, wv, workdir):
    repo = Repo(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))
    write_conf(repo.config, repo.path, "window = 1h")
    pg = pg_factory.new("primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(repo.config), autovacuum="off",
            max_wal_size="64MB")
    pg.start()
    pg.pgbench("-i", "-s", "30", "-q")
    ids = [take_backup(wv, repo, pg)]
    time.sleep(1.1)
    ids.append(take_backup(wv, repo, pg))
    bench = popen(["/usr/lib/postgresql/15/bin/pgbench", "-h", "127.0.0.1", "-p", pg.port,
                   "-U", "postgres", "-n", "-c", "2", "-T", "25", "postgres"])
    backup = popen(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                          config=repo.config))
    try:
        lock = wait_until(lambda: [d for d in os.listdir(os.path.join(repo.path, "backup"))
                                   if os.path.exists(os.path.join(repo.path, "backup", d,
                                                                  "backup.lock"))],
                          timeout=60, what="the backup's lock")[0]
        running = os.path.join(repo.path, "backup", lock)
        # 2 h later: only the newest complete backup (2) is kept by the window; 1 goes
        res = expire(wv, repo, time.time() + 7200)
        assert backup.poll() is None, "the backup finished before expire did"
        assert res.stdout.startswith("expired 1 backup"), res.stdout
        assert os.path.isdir(running) and os.path.exists(os.path.join(running, "backup.lock"))
        out, err = backup.communicate(timeout=300)
        assert backup.returncode == 0, err
        assert bench.wait(timeout=120) == 0
    finally:
        for p in (bench, backup):
            if p.poll() is None:
                p.kill()
                p.communicate()
    new_id = re.search(r"^backup (\S+) complete", out, re.M).group(1)
    assert new_id == lock and backup_ids(repo.path) == {ids[1], new_id}
    pg.switch_wal_and_wait_archived()
    assert pg.archiver_stats()["failed_count"] == 0
    run(wv.cmd("basebackup", "verify", config=repo.config))
    want = pg.sql_value("select sum(abalance) from pgbench_accounts")
    pg.stop()
    restorer = Restorer(wv, repo, workdir)
    try:
        rpg = restorer.restore_and_start("from-running", "--backup", new_id)
        assert rpg.sql_value("select sum(abalance) from pgbench_accounts") == want
        rpg.stop()
    finally:
        restorer.cleanup()


def test_after_backup(pg_factory, wv, workdir):
    repo = Repo(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))
    write_conf(repo.config, repo.path, "window = 1h\nafter_backup = yes")
    pg = pg_factory.new("primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(repo.config))
    pg.start()
    ids = []
    for _ in range(3):
        ids.append(take_backup(wv, repo, pg))
        time.sleep(1.1)
    # no backup ended an hour ago: the window keeps the oldest, newest is the last; 2 went
    assert backup_ids(repo.path) == {ids[0], ids[2]}
    res = bb(wv, repo, "backup", "-d", connstr(pg), "--checkpoint", "fast")
    assert re.search(r"^expired 1 backup .* from repo1; kept 2 backups$", res.stdout, re.M), \
        res.stdout
    # an expire that fails after the backup: exit non-zero, the backup stays
    lock = os.path.join(repo.path, "expire.lock")
    holder = subprocess.Popen(["sleep", "300"])
    try:
        with open(lock, "w") as f:
            f.write("%d %s %d\n" % (holder.pid, socket.gethostname(), int(time.time())))
        res = bb(wv, repo, "backup", "-d", connstr(pg), "--checkpoint", "fast", check=False)
        assert res.returncode == 14 and "but expire after it failed" in res.stderr, res.stderr
        m = re.search(r"^backup (\S+) complete", res.stdout, re.M)
        assert m and m.group(1) in backup_ids(repo.path)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("store", ["s3", "ssh"])
def test_expire_on_offsite_stores(store, s3_server, ssh_server, remote_helper, wv,  # noqa: F811
                                  workdir):
    if store == "s3":
        bucket = new_bucket(s3_server)
        section = s3_section(s3_server, bucket, workdir)

        def listing():
            return set(s3_server.list_keys(bucket, "pg/"))
        prefix = "pg/"
    else:
        path = make_pg_dir(os.path.join(workdir, "backup-server-repo"), 0o750)
        section = ssh_server.repo_section(path, remote_helper)

        def listing():
            return objects(path)
        prefix = ""
    conf = Conf(os.path.join(workdir, "walvault.conf"), ["[retention]\nwindow = 1h\n", section],
                global_section())
    pg = Postgres(workdir, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(conf.config), archive_timeout=0,
            track_commit_timestamp="on", autovacuum="off")
    restorer = Restorer(wv, conf, workdir)
    ok = False
    try:
        pg.start()
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        ids = []
        for k in range(3):
            commit_batch(pg, k)
            ids.append(take_backup(wv, conf, pg))
            pg.switch_wal_and_wait_archived()
            # backups end 2 s apart at least: their manifests keep whole seconds, and `now`
            # below puts the window one second after backup 2's end
            time.sleep(2.2)
        commit_batch(pg, 3)
        pg.switch_wal_and_wait_archived()
        info = {b["id"]: b for b in list_json(wv, conf)["backups"]}
        stop = [parse_wv_time(info[i]["stop_time"]) for i in ids]
        cut = lsn_int(info[ids[1]]["start_lsn"]) // SEG
        before = listing()
        now = int(stop[1]) + 3600 + 1  # the window keeps backup 2; 1 goes
        seam = store == "s3"
        expire(wv, conf, now, "--dry-run", seam=seam)
        assert listing() == before
        res = expire(wv, conf, now, seam=seam)
        assert res.stdout.startswith("expired 1 backup"), res.stdout
        after = listing()
        gone = before - after
        assert not [k for k in after if k.startswith(prefix + "backup/" + ids[0])], after
        assert {k for k in gone if "/wal/" in "/" + k} and not (after - before)
        for k in before:
            name = k.rsplit("/", 1)[-1]
            if ("/wal/" in "/" + k) and not name.endswith(".history") and \
                    re.match(r"^[0-9A-F]{24}", name):
                assert (k in after) == (segno_of(name) >= cut), k
        pg.stop()
        rpg = restorer.restore_and_start("kept", "--backup", ids[1])
        assert batches_in(rpg) == {k: 10 for k in range(4)}, batches_in(rpg)
        rpg.stop()
        ok = True
    finally:
        restorer.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()


def test_each_repository_by_its_own_policy(cal, wv, workdir):
    """[retention] for all, retention.window in [repo2] for that one; --repo N expires only N."""
    r1 = copy_repo(cal, workdir, name="one")
    r2 = copy_repo(cal, workdir, name="two")
    conf = os.path.join(workdir, "two.conf")
    with open(conf, "w") as f:
        f.write("[retention]\n%s\n\n[repo1]\ntype = posix\npath = %s\n\n"
                "[repo2]\ntype = posix\npath = %s\nretention.window = 3h\n" % (RET, r1.path, r2.path))
    chown_pg(conf)
    c = Conf.__new__(Conf)
    c.config = conf
    now = int(cal.stop[2]) + 3600 + 1
    before2 = objects(r2.path)
    res = expire(wv, c, now, "--repo", 1)
    assert res.stdout.startswith("expired 1 backup") and "repo2" not in res.stdout, res.stdout
    assert backup_ids(r1.path) == set(cal.ids[1:]) and objects(r2.path) == before2
    plan = expire_json(wv, c, now)
    assert [p["repo"] for p in plan] == ["repo1", "repo2"]
    # no backup of repo2 ended 3 h before now: the window keeps the oldest (and the WAL from its
    # start); backup 3 is kept by no rule there
    assert verdicts(plan[1:]) == {i: "expired" if i == cal.ids[2] else "kept" for i in cal.ids}
    assert plan[1]["wal"][0]["keep_from"] == segname(cal.start_seg[0]), plan[1]["wal"]
    assert backup_ids(r2.path) == set(cal.ids) - {cal.ids[2]}
    assert segname(cal.start_seg[0]) in wal_files(r2.path)
