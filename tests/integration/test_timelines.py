"""Timelines: a restored server promoted while archiving into the same repository, and PITR onto
either timeline afterwards.

The primary P writes batches 1 and 2 on timeline 1 after a walvault backup, and a restore point
after batch 2 in the same segment. A server R restored to a time between batches 1 and 2 promotes
(timeline 2) with archive_command pointing at the same repository, and writes batches 21 and 22.
Then P writes batch 3 on timeline 1. Both timelines go on past the point where they part. Proves:
timeline 2's history file and WAL are archived; list shows both timelines and a window on each
ending at its own last commit; restore picks the timeline that holds the target (an LSN and a
restore point of timeline 1 after the fork, --immediate on the backup's timeline, a time before
the fork on timeline 2 that holds it too, a time after timeline 2's last commit on timeline 1);
no target, a time on both, and a transaction id committed on both (after the fork both assign the
same ids) are refused with each timeline's newest commit until --timeline says which; a transaction
id committed on timeline 1 only after the fork recovers on timeline 1 by the transaction id ranges
wal-push records per segment, and without them (a missing or malformed range) is refused as
before; --timeline 1, current and latest; an unknown timeline is refused.
"""
import json
import os
import re
import time

import pytest

from test_restore_pitr import (Restorer, batches_in, bb, commit_batch, finish_module, iso,
                               last_commit_time, module_dir, parse_wv_time, primary_conf,
                               take_backup)
from utils import Postgres, Repo


class Tl:
    pass


@pytest.fixture(scope="module")
def tl(basetemp, wv):
    d = module_dir(basetemp, "timelines")
    s = Tl()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    p = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(p, wv, s.repo)
    s.restorer = Restorer(wv, s.repo, d)
    ok = False
    try:
        p.start()
        p.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        commit_batch(p, 0)
        s.backup_id = take_backup(wv, s.repo, p)
        b = {}
        time.sleep(1.1)  # the window starts a second after the backup's STOP TIME (whole seconds)
        b[1] = commit_batch(p, 1)
        time.sleep(0.6)
        b[2] = commit_batch(p, 2)
        s.rp_lsn = p.sql_value("select pg_create_restore_point('tl1_after_fork')::text")
        p.switch_wal_and_wait_archived()

        # R: back to between batches 1 and 2, promoted, archiving into the same repository
        fork_at = (b[1]["commit"] + b[2]["commit"]) / 2
        s.fork_at = fork_at
        r = s.restorer.restore("tl2", "--to", iso(fork_at))
        s.restorer.start(r, archive=True)
        assert set(batches_in(r)) == {0, 1}
        assert r.sql_value("select timeline_id from pg_control_checkpoint()") == 2 or \
            r.sql_value("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == \
            "00000002"
        time.sleep(0.3)
        b[21] = commit_batch(r, 21)
        time.sleep(0.6)
        b[22] = commit_batch(r, 22)
        r.switch_wal_and_wait_archived()
        s.tl2_last = last_commit_time(r)
        r.stop()

        time.sleep(0.6)
        # timeline 1 commits 20 transactions of no rows first: the ids timeline 2 assigned after
        # the fork are committed on timeline 1 too (past the segment where they part), batch 3's
        # only there
        s.tl1_filler = [p.sql_value("select txid_current()") for _ in range(20)]
        time.sleep(0.3)
        b[3] = commit_batch(p, 3)
        p.switch_wal_and_wait_archived()
        s.tl1_last = last_commit_time(p)
        p.stop()
        s.b = b
        s.primary = p
        ok = True
        yield s
    finally:
        finish_module(s.restorer, p, d, ok)


def out_of(pg):
    return pg.restore_result.stdout + pg.restore_result.stderr


def test_timeline2_archived_and_listed(tl):
    names = tl.repo.wal_names()
    assert "00000002.history" in names
    assert any(n.startswith("00000002") and len(n) == 24 for n in names), sorted(names)

    r = json.loads(bb(tl.restorer.wv, tl.repo, "list", "--json").stdout)["repositories"][0]
    tls = {x["timeline"]: x for x in r["timelines"]}
    assert set(tls) == {1, 2}
    assert tls[2]["history"] is True and tls[1]["history"] is False
    win = {w["timeline"]: w for w in r["windows"]}
    assert set(win) == {1, 2}, r["windows"]
    assert abs(parse_wv_time(win[1]["to"]) - tl.tl1_last) < 2e-6
    assert abs(parse_wv_time(win[2]["to"]) - tl.tl2_last) < 2e-6
    assert win[1]["first_backup"] == win[2]["first_backup"] == tl.backup_id
    text = bb(tl.restorer.wv, tl.repo, "list").stdout
    assert re.search(r"^    timeline 1: .* \(from backup %s\)$" % tl.backup_id, text, re.M)
    assert re.search(r"^    timeline 2: .* \(from backup %s\)$" % tl.backup_id, text, re.M)


def mid(a, b):
    return lambda s: ((s.b[a]["commit"] if isinstance(a, int) else getattr(s, a)) +
                      (s.b[b]["commit"] if isinstance(b, int) else getattr(s, b))) / 2


# (--timeline argument or None, target time, expected timeline, expected batches, reason words)
def just_before(a):
    return lambda s: s.b[a]["commit"] - 0.05


CASES = [
    ("tl2", "2", mid(21, 22), 2, {0, 1, 21}, "--timeline 2"),
    ("tl1", "1", mid(21, 22), 1, {0, 1, 2}, "--timeline 1"),
    ("current", "current", mid(21, 22), 1, {0, 1, 2}, "--timeline current"),
    ("latest", "latest", mid(21, 22), 2, {0, 1, 21}, "latest timeline"),
    ("auto-after-tl2", None, mid("tl2_last", 3), 1, {0, 1, 2},
     "newest timeline whose history reaches"),
    # before batch 1, the first commit of the segment where the timelines part: the same on both
    ("auto-before-fork", None, just_before(1), 2, {0}, "newest timeline whose history reaches"),
]


@pytest.mark.parametrize("name, timeline, when, want_tli, want, reason", CASES,
                         ids=[c[0] for c in CASES])
def test_pitr_on_timelines(tl, name, timeline, when, want_tli, want, reason):
    t = when(tl)
    args = ["--to", iso(t)] + (["--timeline", timeline] if timeline else [])
    pg = tl.restorer.restore(name, *args)
    out = out_of(pg)
    pattern = r"recovery_target_timeline = %d \(.*%s" % (want_tli, re.escape(reason))
    assert re.search(pattern, out), out
    assert "on timeline %d" % want_tli in pg.restore_result.stdout
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert "recovery_target_timeline = '%d'" % want_tli in auto
    tl.restorer.verify(pg)
    tl.restorer.start(pg)
    assert set(batches_in(pg)) == want
    pg.stop()


def test_end_of_archive_on_latest_timeline(tl):
    pg = tl.restorer.restore_and_start("end", "--timeline", "latest")
    assert set(batches_in(pg)) == {0, 1, 21, 22}
    assert "on timeline 2" in pg.restore_result.stdout
    pg.stop()


def newest_commits(stderr):
    return {int(m.group(1)): parse_wv_time(m.group(2))
            for m in re.finditer(r"timeline (\d+) \(newest commit ([^)]+)\)", stderr)}


# Both timelines continue past their fork: no target, a time after it on both, and a transaction
# id committed on both (timeline 2's newest id names a filler transaction on timeline 1) are
# refused, naming each timeline with its newest commit, and nothing is written.
GUESSES = [
    ("end", lambda s: [], "the end of the archive is on more than one timeline"),
    ("time", lambda s: ["--to", iso(mid(21, 22)(s))], "is on more than one timeline"),
    ("xid", lambda s: ["--xid", str(tl2_newest_xid(s))],
     "may have committed on more than one timeline (the transaction id ranges recorded past the "
     "point where they part hold it on each"),
]


@pytest.mark.parametrize("name, args, words", GUESSES, ids=[g[0] for g in GUESSES])
def test_refuses_to_guess_between_timelines(tl, name, args, words):
    target = os.path.join(tl.dir, "guess-" + name)
    res = bb(tl.restorer.wv, tl.repo, "restore", "--pgdata", target, *args(tl), check=False)
    assert res.returncode != 0, res.stdout + res.stderr
    assert words in res.stderr, res.stderr
    assert "both continue past the point where they part" in res.stderr, res.stderr
    newest = newest_commits(res.stderr)
    assert set(newest) == {1, 2}, res.stderr
    assert abs(newest[1] - tl.tl1_last) < 2e-6 and abs(newest[2] - tl.tl2_last) < 2e-6, res.stderr
    assert "pass --timeline 2 or --timeline 1" in res.stderr, res.stderr
    assert not os.path.exists(target)


def xid_ranges(repo, tli):
    """{segment name: (xmin, xmax, count)} of timeline tli's ".xid" objects."""
    out = {}
    names = [f for _, _, files in os.walk(os.path.join(repo.path, "wal")) for f in files]
    for n in names:
        if re.fullmatch(r"%08X[0-9A-F]{16}\.xid" % tli, n):
            with open(repo.object_path(n)) as f:
                text = f.read()
            assert re.fullmatch(r"\d+\t\d+\t\d+\n", text), (n, text)
            out[n[:24]] = tuple(int(x) for x in text.split("\t"))
    return out


def tl2_newest_xid(tl):
    return max(hi for _, hi, _ in xid_ranges(tl.repo, 2).values())


def test_xid_ranges_recorded(tl):
    # wal-push recorded a range beside each segment with commits, on both timelines
    r1, r2 = xid_ranges(tl.repo, 1), xid_ranges(tl.repo, 2)
    assert r1 and r2, (r1, r2)
    for ranges in (r1, r2):
        for seg, (lo, hi, n) in ranges.items():
            assert tl.repo.has(seg), seg
            assert lo <= hi and n >= 1, (seg, lo, hi, n)
    assert any(lo <= tl.b[3]["xid"] <= hi for lo, hi, _ in r1.values()), r1
    assert not any(lo <= tl.b[3]["xid"] <= hi for lo, hi, _ in r2.values()), r2
    assert any(lo <= tl.b[21]["xid"] <= hi for lo, hi, _ in r2.values()), r2
    # the newest id timeline 2 committed names a filler transaction on timeline 1
    assert tl2_newest_xid(tl) in tl.tl1_filler, (r1, r2, tl.tl1_filler[:3])


def test_xid_on_timeline_1_chosen(tl):
    # a transaction committed on timeline 1 after the fork, while timeline 2 went on too: the
    # recorded transaction id ranges tell, no --timeline needed
    pg = tl.restorer.restore("xid-auto", "--xid", str(tl.b[3]["xid"]))
    out = out_of(pg)
    assert re.search(r"recovery_target_timeline = 1 \(.*holds transaction %d in its recorded "
                     r"transaction id ranges" % tl.b[3]["xid"], out), out
    assert "on timeline 1" in pg.restore_result.stdout
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert "recovery_target_timeline = '1'" in auto
    assert "recovery_target_xid = '%d'" % tl.b[3]["xid"] in auto, auto
    tl.restorer.start(pg)
    assert batches_in(pg) == {0: 10, 1: 10, 2: 10, 3: 10}, batches_in(pg)
    pg.stop()


def test_xid_range_missing_asks_for_timeline(tl):
    # a segment of timeline 2 past the fork archived without its range (as before ranges were
    # recorded): the planner cannot tell, and asks for --timeline as before
    seg = sorted(xid_ranges(tl.repo, 2))[-1]
    path = tl.repo.object_path(seg + ".xid")
    saved = open(path).read()
    os.rename(path, path + ".away")
    try:
        target = os.path.join(tl.dir, "xid-unrecorded")
        res = bb(tl.restorer.wv, tl.repo, "restore", "--pgdata", target, "--xid",
                 str(tl.b[3]["xid"]), check=False)
        assert res.returncode != 0, res.stdout + res.stderr
        assert "do not tell: a range is missing" in res.stderr, res.stderr
        assert "pass --timeline 2 or --timeline 1" in res.stderr, res.stderr
        assert not os.path.exists(target)
        # a malformed range counts as missing, with a warning naming it
        with open(path, "w") as f:
            f.write("junk\n")
        res = bb(tl.restorer.wv, tl.repo, "restore", "--pgdata", target, "--xid",
                 str(tl.b[3]["xid"]), check=False)
        assert res.returncode != 0 and "do not tell: a range is missing" in res.stderr, res.stderr
        assert re.search(r"%s\.xid.*not one line.*\(ignored" % seg, res.stderr), res.stderr
        assert not os.path.exists(target)
        res = bb(tl.restorer.wv, tl.repo, "verify", check=False)
        assert res.returncode != 0, res.stdout + res.stderr
        assert "%s.xid" % seg in res.stdout + res.stderr, res.stdout + res.stderr
        os.unlink(path)
    finally:
        os.rename(path + ".away", path)
    assert open(path).read() == saved


def test_xid_on_timeline_1_with_timeline(tl):
    pg = tl.restorer.restore("xid-tl1", "--xid", str(tl.b[3]["xid"]), "--timeline", "1")
    assert "on timeline 1" in pg.restore_result.stdout
    tl.restorer.start(pg)
    assert set(batches_in(pg)) == {0, 1, 2, 3}
    pg.stop()


# Targets that only one timeline holds: a restore point and an LSN written on timeline 1 after the
# fork (timeline 2's WAL reaches past the restore point's LSN, with other contents), and the end
# of the backup, which is on the backup's own timeline.
HOLDERS = [
    ("name", lambda s: ["--name", "tl1_after_fork"], 1, {0, 1, 2},
     "newest timeline whose history reaches"),
    ("lsn", lambda s: ["--lsn", s.b[3]["lsn"]], 1, {0, 1, 2, 3},
     "newest timeline whose history reaches"),
    ("immediate", lambda s: ["--immediate"], 1, {0}, "the backup's timeline, which holds the target"),
]


@pytest.mark.parametrize("name, args, want_tli, want, reason", HOLDERS, ids=[h[0] for h in HOLDERS])
def test_target_recovers_on_the_timeline_that_holds_it(tl, name, args, want_tli, want, reason):
    pg = tl.restorer.restore("holds-" + name, *args(tl))
    out = out_of(pg)
    assert re.search(r"recovery_target_timeline = %d \(.*%s" % (want_tli, re.escape(reason)), out), \
        out
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert "recovery_target_timeline = '%d'" % want_tli in auto
    tl.restorer.start(pg)
    assert set(batches_in(pg)) == want
    pg.stop()


def test_unknown_timeline_refused(tl):
    target = os.path.join(tl.dir, "never")
    for tli in ("3", "9"):
        res = bb(tl.restorer.wv, tl.repo, "restore", "--pgdata", target, "--timeline", tli,
                 check=False)
        assert res.returncode != 0
        assert "timeline %s is not in the archive (archived timelines: 1, 2)" % tli in \
            res.stderr, res.stderr
        assert "recoverable: timeline 1" in res.stderr, res.stderr
        assert not os.path.exists(target)
    # a time on timeline 2 after its last commit, forced onto timeline 2
    res = bb(tl.restorer.wv, tl.repo, "restore", "--pgdata", target, "--timeline", "2",
             "--to", iso((tl.tl2_last + tl.b[3]["commit"]) / 2), check=False)
    assert res.returncode != 0 and "not before the last archived commit" in res.stderr, res.stderr
    assert not os.path.exists(target)
