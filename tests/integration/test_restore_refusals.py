"""basebackup restore refuses what it cannot do, before writing anything.

Each refusal: a non-zero exit, one line on stderr that says why (with the recoverable window where
the archive is the reason), and the target directory not created (or left exactly as it was).
Cases: non-empty PGDATA without --delta; a running postmaster; a target before the first backup's
end (also with --repo 1); a time after the last archived commit (window and pg_switch_wal hint); a
target inside a WAL gap (a segment deleted from a copy of the repository); bad --to strings; two
targets at once; an unknown backup id; a restore point that was never archived; bad
--lsn/--xid/--timeline. And --delta does what it promises: a damaged, a removed and a stray file are
repaired, the rest reused.
"""

import datetime
import os
import re
import time

import pytest

from test_restore_pitr import (Restorer, amcheck, assert_nothing_written, bb, between,
                               expect_upto, iso, parse_wv_time, pitr)  # noqa: F401 (fixture)
from utils import log_lines, make_pg_dir, run, tree_files, wait_until


def refused(res, *needles):
    assert res.returncode != 0, "expected a refusal:\n%s\n%s" % (res.stdout, res.stderr)
    # the house format: one error line, then at most one hint line
    lines = log_lines(res.stderr)
    assert len(lines) in (1, 2) and lines[0].startswith("basebackup: error: "), res.stderr
    if len(lines) == 2:
        assert lines[1].startswith("basebackup: error: hint: "), res.stderr
    text = " ".join(lines)
    for n in needles:
        assert re.search(n, text), "%r not in: %s" % (n, text)
    return text


def restore_into(pitr, target_dir, *args, repo=None, env=None):
    return bb(pitr.restorer.wv, repo or pitr.repo, "restore", "--pgdata", target_dir, *args,
              check=False, env=env)


@pytest.fixture
def target(pitr, request):
    """A path that does not exist yet, in a directory postgres may write."""
    return os.path.join(pitr.dir, "refused-" + re.sub(r"[^\w]+", "_", request.node.name))


def window_in(line):
    m = re.search(r"recoverable: timeline 1: (\S+ \S+) \.\. (\S+ \S+)", line)
    assert m, line
    return parse_wv_time(m.group(1)), parse_wv_time(m.group(2))


def test_non_empty_pgdata_without_delta(pitr, target):
    make_pg_dir(target)
    with open(os.path.join(target, "precious"), "w") as f:
        f.write("keep me")
    res = restore_into(pitr, target)
    refused(res, "not empty", "--delta", "nothing was written")
    assert os.listdir(target) == ["precious"]
    assert open(os.path.join(target, "precious")).read() == "keep me"


def test_target_before_first_backup(pitr, target):
    t = pitr.batches[0]["commit"] - 3600
    line = refused(restore_into(pitr, target, "--to", iso(t)),
                   "before the end of the oldest usable backup", pitr.backup_id, "recoverable")
    assert_nothing_written(target)
    lo, hi = window_in(line)
    assert lo < pitr.batches[0]["commit"] and abs(hi - pitr.last_commit) < 1e-3
    # an LSN before the backup's end, too
    refused(restore_into(pitr, target, "--lsn", "0/100"), "before the end of the oldest usable")
    assert_nothing_written(target)
    # the same with --repo 1: refused with the plan's reason (it used to crash)
    refused(restore_into(pitr, target, "--repo", "1", "--to", iso(t)),
            "repo1: target time .* is before the end of the oldest usable backup")
    assert_nothing_written(target)


def test_target_after_last_archived_commit(pitr, target):
    # "now" counts in whole seconds: make sure it is after the last commit
    wait_until(lambda: time.time() > pitr.last_commit + 1.5, what="a second to pass")
    for to in ("now", iso(pitr.last_commit + 2)):
        line = refused(restore_into(pitr, target, "--to", to),
                       "not before the last archived commit", r"pg_switch_wal\(\)",
                       "recoverable")
        assert_nothing_written(target)
        lo, hi = window_in(line)
        assert abs(hi - pitr.last_commit) < 1e-3, (hi, pitr.last_commit)
    # PostgreSQL stops at the first commit after the target: the last commit's own instant is
    # refused, one microsecond before it is planned (dry run: nothing written)
    last = bb(pitr.restorer.wv, pitr.repo, "list", "--json").stdout
    last = re.search(r'"to": "([^"]+)"', last).group(1)  # exact text, UTC
    at = datetime.datetime.strptime(last + "00", "%Y-%m-%d %H:%M:%S.%f%z")
    assert abs(at.timestamp() - pitr.last_commit) < 2e-6
    refused(restore_into(pitr, target, "--to", last), "not before the last archived commit",
            "restore without a target")
    assert_nothing_written(target)
    before = (at - datetime.timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    res = restore_into(pitr, target, "--to", before, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert_nothing_written(target)
    # an LSN past the end of the archive
    refused(restore_into(pitr, target, "--lsn", "7/0"), "beyond the end of the archived WAL",
            r"pg_switch_wal\(\)")
    assert_nothing_written(target)


@pytest.mark.parametrize("text", [
    "yesterday", "", "   ", "10 fortnights ago", "-5 seconds ago", "5 seconds", "seconds ago",
    "2026-13-01 00:00:00", "2026-02-30 10:00:00", "2026-11-25 24:00:00", "2026-11-25 10:00",
    "2026-11-25T10:00:00+16:00", "2026-11-25 10:00:00 PST", "1969-12-31 23:59:59Z",
    "2026-11-25 10:00:00.1234567", "now please",
])
def test_bad_to_strings(pitr, target, text):
    line = refused(restore_into(pitr, target, "--to", text), "--to|time")
    assert '"%s"' % text in line or text.strip() == "", line
    assert_nothing_written(target)


@pytest.mark.parametrize("args, needle", [
    (["--to", "now", "--lsn", "0/5000000"], "at most one"),
    (["--immediate", "--name", "after batch 1"], "at most one"),
    (["--xid", "1000", "--to", "1 hour ago"], "at most one"),
    (["--lsn", "nope"], "bad --lsn"),
    (["--lsn", "1/2/3"], "bad --lsn"),
    (["--xid", "-1"], "bad --xid"),
    (["--xid", "2"], "bad --xid"),
    (["--xid", "99999999999"], "bad --xid"),
    (["--timeline", "sideways"], "bad --timeline"),
    (["--timeline", "0"], "bad --timeline"),
    (["--target-action", "explode"], "bad --target-action"),
    (["--backup", "../etc"], "bad --backup"),
    (["--backup", "20000101T000000Z"], "no backup \"20000101T000000Z\""),
    (["--name", "never made"], r'restore point "never made" is not in the archived WAL.*'
                               r'"after batch 1"'),
    (["--name", "x" * 64], "bad --name"),
    (["--tablespace-map", "relative=/x"], "bad --tablespace-map"),
    (["--frobnicate"], "unknown or incomplete option"),
    (["--repo", "2x"], "--repo: \"2x\" is not a repository number"),
    (["--repo", "7"], r"--repo 7: no \[repo7\] in "),
])
def test_bad_arguments(pitr, target, args, needle):
    refused(restore_into(pitr, target, *args), needle)
    assert_nothing_written(target)


def test_xid_before_first_backup(pitr, target):
    xid = str(pitr.batch0["xid"])  # committed before the first backup
    refused(restore_into(pitr, target, "--xid", xid),
            "transaction %s began before the oldest usable backup \\(%s" % (xid, pitr.backup_id),
            "pass --backup %s" % pitr.backup_id)
    assert_nothing_written(target)
    # the user's word overrides (--backup): planned, nothing written in a dry run
    res = restore_into(pitr, target, "--xid", xid, "--backup", pitr.backup_id, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert_nothing_written(target)


def test_pgdata_required(pitr):
    res = bb(pitr.restorer.wv, pitr.repo, "restore", check=False)
    refused(res, "--pgdata DIR is required")


def test_gap_in_archive(pitr, target):
    # A copy of the repository without the segment that holds batch 3's commit.
    repo = pitr.repo.copy_to(os.path.join(pitr.dir, "repo-gap"),
                             os.path.join(pitr.dir, "gap.conf"))
    seg = pitr.batches[2]["segment"]
    assert seg != pitr.batches[1]["segment"] and seg != pitr.batches[4]["segment"]
    os.unlink(repo.object_path(seg))
    # inside the gap: between batches 3 and 4, and between batch 4 and the second backup's end
    for t in (between(pitr, 3), pitr.batches[3]["commit"] + 0.01):
        line = refused(restore_into(pitr, target, "--to", iso(t), repo=repo),
                       "gap in the archived WAL", seg, "recoverable", "then WAL segment %s is "
                       "missing" % seg)
        assert_nothing_written(target)
        lo, hi = window_in(line)
        # the window ends at the last commit before the missing segment
        assert pitr.batches[1]["commit"] <= hi < pitr.batches[2]["commit"]
    # a restore point beyond the gap, and an LSN
    refused(restore_into(pitr, target, "--name", "after batch 4", repo=repo), "gap", seg)
    refused(restore_into(pitr, target, "--lsn", pitr.batches[3]["lsn"], repo=repo), "gap", seg)
    assert_nothing_written(target)
    # After the last commit before the gap but before the missing segment's first commit:
    # PostgreSQL would need a later commit to stop, and cannot read one: refused too.
    refused(restore_into(pitr, target, "--to", iso(between(pitr, 2)), repo=repo), "gap", seg)
    assert_nothing_written(target)
    # before the gap still works, and after it from the backup taken after it
    rs = Restorer(pitr.restorer.wv, repo, pitr.dir)
    try:
        pg = rs.restore_and_start("before-gap", "--to", iso(between(pitr, 1)))
        expect_upto(pg, 1)
        pg.stop()
        pg = rs.restore_and_start("after-gap", "--to", iso(pitr.batches[4]["commit"] - 0.05))
        expect_upto(pg, 4)
        assert "restoring backup %s" % pitr.backup2_id in pg.restore_result.stderr
        pg.stop()
    finally:
        rs.cleanup()


def test_backup_wal_missing(pitr, target):
    # a copy of the repository without the first backup's start segment: that backup is unusable
    repo = pitr.repo.copy_to(os.path.join(pitr.dir, "repo-nostart"),
                             os.path.join(pitr.dir, "nostart.conf"))
    with open(os.path.join(repo.path, "backup", pitr.backup_id, "backup.manifest")) as f:
        start = re.search(r"start-segment=([0-9A-F]{24})", f.read()).group(1)
    os.unlink(repo.object_path(start))
    line = refused(restore_into(pitr, target, "--to", iso(between(pitr, 1)), repo=repo),
                   "WAL the backups need is not in the archive", start)
    assert_nothing_written(target)
    # list: only the second backup's window remains
    out = bb(pitr.restorer.wv, repo, "list").stdout
    assert "(from backup %s)" % pitr.backup2_id in out and \
        "(from backup %s)" % pitr.backup_id not in out, out
    assert "recoverable: timeline 1" in line


def test_running_postmaster_and_delta(pitr):
    r = pitr.restorer
    # restore, then damage the directory: change a relation file, remove one, add a stray one
    pg = r.restore("delta", "--immediate")
    dd = pg.datadir
    rel = run(["find", dd + "/base", "-type", "f", "-size", "+64k"]).stdout.split()
    assert len(rel) >= 2, rel
    with open(rel[0], "r+b") as f:
        f.seek(8192 + 100)
        f.write(b"\xde\xad\xbe\xef")
    os.unlink(rel[1])
    with open(os.path.join(dd, "base", "stray"), "w") as f:
        f.write("not in the backup")
    os.unlink(os.path.join(dd, "PG_VERSION"))
    res = run(["/usr/lib/postgresql/15/bin/pg_verifybackup", "-n", dd], check=False)
    assert res.returncode != 0  # the damage is visible
    before = tree_files(dd)

    # without --delta: refused, nothing changed
    refused(restore_into(pitr, dd, "--to", iso(between(pitr, 2))), "not empty")
    assert tree_files(dd) == before

    # --delta without PG_VERSION: not recognisably a data directory, refused unless --force
    line = refused(restore_into(pitr, dd, "--delta", "--to", iso(between(pitr, 2))),
                   "is not empty and has no PG_VERSION", "--force")
    assert "nothing was written" in line
    assert tree_files(dd) == before

    # with --delta --force: repaired, retargeted
    res = restore_into(pitr, dd, "--delta", "--force", "--to", iso(between(pitr, 2)))
    assert res.returncode == 0, res.stderr
    m = re.search(r"delta: (\d+) files were already identical", res.stdout + res.stderr)
    assert m and int(m.group(1)) > 100, res.stderr
    assert not os.path.exists(os.path.join(dd, "base", "stray"))
    assert os.path.exists(rel[1]) and os.path.exists(os.path.join(dd, "PG_VERSION"))
    r.verify(pg)
    auto = open(os.path.join(dd, "postgresql.auto.conf")).read()
    assert auto.count("recovery_target_time =") == 1 and "recovery_target = " not in auto, auto
    r.start(pg)
    expect_upto(pg, 2)
    amcheck(pg)

    # a running server: refused even with --delta, nothing touched
    before = {p: os.stat(os.path.join(dd, p)).st_mtime_ns for p in tree_files(dd)
              if not p.startswith(("pg_wal", "pg_stat", "base", "global", "pg_xact", "pg_logical",
                                   "pg_multixact", "pg_subtrans", "pg_commit_ts"))}
    line = refused(restore_into(pitr, dd, "--delta"), "server", "is running", str(pg.pid()),
                   "pg_ctl")
    assert "nothing was written" in line
    assert os.path.exists(os.path.join(dd, "postmaster.pid"))
    after = {p: os.stat(os.path.join(dd, p)).st_mtime_ns for p in before}
    assert after == before
    assert pg.sql_value("select count(*) from t") == 30
    pg.stop()

    # the usual second try: the server ran (timeline 2 in its pg_wal, its own files), now a later
    # target with --delta: stale WAL and server files go, the recovery is the new one
    assert any(f.startswith("00000002") for f in os.listdir(os.path.join(dd, "pg_wal")))
    res = restore_into(pitr, dd, "--delta", "--to", iso(between(pitr, 3)))
    assert res.returncode == 0, res.stderr
    assert not any(f.startswith("00000002") for f in os.listdir(os.path.join(dd, "pg_wal")))
    assert not os.path.exists(os.path.join(dd, "postmaster.pid"))
    r.verify(pg)
    r.start(pg)
    expect_upto(pg, 3)
    pg.stop()


def test_damaged_file_in_a_bundle_fails_naming_it(pitr, target):
    """Small files are restored from their bundle in one read; a damaged one stops the restore
    with an error naming the file, the bundle and the offset, and is not left under its name."""
    from utils import OBJ_HEADER, flip_byte
    repo = pitr.repo.copy_to(os.path.join(pitr.dir, "repo-damaged"),
                             os.path.join(pitr.dir, "damaged.conf"))
    bid = pitr.backup2_id
    members = []
    with open(os.path.join(repo.path, "backup", bid, "backup.manifest")) as f:
        for line in f:
            if line.startswith("file ") and " bundle=" in line:
                members.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    victim = max(members, key=lambda m: int(m["stored-size"]))
    key = "backup/%s/bundle/%s" % (bid, victim["bundle"])
    size = int(victim["stored-size"])
    flip_byte(os.path.join(repo.path, key),
              int(victim["offset"]) + OBJ_HEADER + (size - OBJ_HEADER - 128) // 2)
    res = restore_into(pitr, target, "--backup", bid, "--immediate", repo=repo)
    assert res.returncode == 5, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ": error: " in ln and "hint:" not in ln]
    assert len(errors) == 1, res.stderr
    assert key in errors[0] and victim["path"] in errors[0], errors[0]
    assert "offset %s" % victim["offset"] in errors[0], errors[0]
    rel = victim["path"][len("pgdata/"):]
    assert not os.path.exists(os.path.join(target, rel))
