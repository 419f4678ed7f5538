"""PostgreSQL 15, 16, 17 and 18: the archive, backup and point-in-time-recovery cycle on each.

For each version (a module fixture per version: 15 is Debian's, 16 and 17 the npm registry's
portable builds, 18 built from Debian sid's source; contrib/pgversions.sh installs them), a cluster
with 1 MiB segments archives through wal-push (and, for an independent copy of the same WAL, cp),
takes a walvault backup, then commits batches 1-4 (a restore point after batches 1 and 3, WAL
switched after batches 2 and 4) and, last, a two-phase commit that drops a table (the commit record
whose layout changed in 18). Proves, per version:
- restore to a time, an LSN, an xid, a restore point, --immediate and the end of the archive brings
  back exactly the batches committed before the target; every restored directory is checked
  against the server's backup_manifest before it starts: by 18's pg_verifybackup -n for 15, 16
  and 18 (it reads manifest version 1, which 15 and 16 write, and 2; -n, since WAL of another
  version is not its pg_waldump's to parse), and for 17 by check_manifest below, since 17's build
  has no pg_verifybackup and 18's refuses 17's pg_control ("CRC is incorrect": its layout grew);
- the server's backup_manifest is version 1 for 15 and 16, and version 2 naming the cluster's
  system identifier for 17 and 18;
- the recoverable window `list --json` reports ends at the last commit exactly (microseconds) as
  that version's pg_waldump reads it from the cp copy of the WAL (15: Debian's, 18: its own; the
  16 and 17 builds ship no pg_waldump, and 18's reads only 18's WAL, so there the server decodes
  its own WAL with pg_walinspect, whose record descriptions are pg_waldump's), and as the server's
  commit timestamp says (track_commit_timestamp / pg_last_committed_xact(), every version);
- a timeline fork: a server restored to between batches 1 and 2 and promoted, archiving into a copy
  of the repository, writes timeline 2; its window ends at its last commit and a restore of the
  latest timeline brings back its rows.
And across versions: a PostgreSQL 18 cluster archiving (wal-push) or backing up into a repository
made by PostgreSQL 15 is refused, naming both versions, and nothing is written.

The rest of the suite runs on 15 only. All of this module runs on one worker (xdist_group).
"""

import datetime
import hashlib
import json
import os
import re
import time

import crcmod.predefined
import pytest

from test_restore_pitr import (Restorer, batches_in, bb, commit_batch, connstr, finish_module, iso,
                               last_commit_time, module_dir, parse_wv_time, take_backup)
from utils import (PG_VERSIONS, Postgres, Repo, make_pg_dir, need_pg_version, pg_version_bindir,
                   pg_version_tool, run, wait_until)

pytestmark = pytest.mark.xdist_group("pg-versions")


def verifybackup_tool(major):
    """18's pg_verifybackup (it reads manifest versions 1 and 2); 15's for 15 and 16 without 18."""
    t = pg_version_tool("pg_verifybackup", 18)
    if t:
        return t
    if major <= 16 and pg_version_tool("pg_verifybackup", 15):
        return pg_version_tool("pg_verifybackup", 15)
    need_pg_version(18)
    return None


# What pg_verifybackup leaves out of its check by default (restore writes recovery settings there).
MANIFEST_IGNORED = {"backup_manifest", "pg_wal", "postgresql.auto.conf", "recovery.signal",
                    "standby.signal"}
_crc32c = crcmod.predefined.mkCrcFun("crc-32c")


def check_manifest(datadir, sysid):
    """What pg_verifybackup -n checks, independently of walvault: the manifest's own SHA-256, a
    version 2 manifest's system identifier against global/pg_control (its first 8 bytes in every
    version), every listed file present with its size and CRC-32C, and no unlisted file. Returns
    the number of files checked."""
    with open(os.path.join(datadir, "backup_manifest"), "rb") as f:
        raw = f.read()
    cut = raw.index(b'"Manifest-Checksum"')
    doc = json.loads(raw)
    assert hashlib.sha256(raw[:cut]).hexdigest() == doc["Manifest-Checksum"]
    if doc["PostgreSQL-Backup-Manifest-Version"] >= 2:
        with open(os.path.join(datadir, "global", "pg_control"), "rb") as f:
            assert doc["System-Identifier"] == int.from_bytes(f.read(8), "little") == sysid
    listed = set()
    for e in doc["Files"]:
        path = e.get("Path") or bytes.fromhex(e["Encoded-Path"]).decode()
        if path.split("/")[0] in MANIFEST_IGNORED:
            continue
        listed.add(path)
        full = os.path.join(datadir, path)
        assert os.path.getsize(full) == e["Size"], path
        assert e["Checksum-Algorithm"] == "CRC32C", e
        with open(full, "rb") as f:
            crc = _crc32c(f.read())
        assert crc.to_bytes(4, "little").hex() == e["Checksum"].lower(), path
    for d, dirs, files in os.walk(datadir):
        rel = os.path.relpath(d, datadir)
        if rel != "." and rel.split(os.sep)[0] in MANIFEST_IGNORED:
            continue
        for f in files:
            p = f if rel == "." else os.path.join(rel, f)
            if p.split(os.sep)[0] not in MANIFEST_IGNORED:
                assert p in listed, "%s is not in the backup manifest" % p
    return len(listed)


class VRestorer(Restorer):
    """Restores into servers of one version and checks them with pg_verifybackup."""

    def __init__(self, wv, repo, basedir, bindir, major, sysid):
        super().__init__(wv, repo, basedir)
        self.bindir, self.major, self.sysid = bindir, major, sysid

    def new_pg(self, name):
        self._n += 1
        pg = Postgres(self.basedir, "%s-%d" % (name, self._n), bindir=self.bindir)
        self.servers.append(pg)
        return pg

    def verify(self, pg):
        if self.major == 17:
            assert check_manifest(pg.datadir, self.sysid) > 900
        else:
            run([verifybackup_tool(self.major), "-n", pg.datadir])


class Cycle:
    pass


def switch_and_wait(pg):
    """Switch WAL without writing anything first (the last commit stays the last record of note)."""
    name = pg.sql_value("select pg_walfile_name(pg_switch_wal())")
    pg.wait_archived(name)
    return name


def pg_sysid(pg):
    return int(pg.sql_value("select system_identifier from pg_control_system()"))


@pytest.fixture(scope="module", params=PG_VERSIONS, ids=lambda v: "pg%d" % v)
def cyc(request, basetemp, wv):
    major = request.param
    bindir = need_pg_version(major)
    d = module_dir(basetemp, "pg%d" % major)
    s = Cycle()
    s.major, s.bindir, s.dir = major, bindir, d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    s.raw = make_pg_dir(os.path.join(d, "raw-wal"), 0o755)
    pg = Postgres(d, "primary", bindir=bindir).initdb(wal_segsize=1)
    pg.conf(archive_mode="on",
            archive_command="%s && cp %%p %s/%%f" % (wv.archive_command(s.repo.config), s.raw),
            archive_timeout=0, track_commit_timestamp="on", autovacuum="off",
            max_wal_size="64MB", max_prepared_transactions=2)
    s.primary = pg
    ok = False
    try:
        pg.start()
        s.server_version = int(pg.sql_value("show server_version_num"))
        assert s.server_version // 10000 == major, s.server_version
        s.sysid = pg_sysid(pg)
        s.restorer = VRestorer(wv, s.repo, d, bindir, major, s.sysid)
        # 16 and 17 have no pg_waldump: their WAL is decoded by the server's own pg_walinspect
        # (the same record descriptions as pg_waldump's).
        s.walinspect = major in (16, 17)
        if s.walinspect:
            pg.sql("create extension pg_walinspect")
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        s.batch0 = commit_batch(pg, 0)
        s.backup_id = take_backup(wv, s.repo, pg)
        s.b = {}
        time.sleep(1.1)  # the window starts a second after the backup's STOP TIME
        s.b[1] = commit_batch(pg, 1)
        pg.sql("select pg_create_restore_point('after batch 1')")
        time.sleep(0.4)
        s.b[2] = commit_batch(pg, 2)
        pg.switch_wal_and_wait_archived()
        time.sleep(0.4)
        s.b[3] = commit_batch(pg, 3)
        pg.sql("select pg_create_restore_point('after batch 3')")
        time.sleep(0.4)
        s.b[4] = commit_batch(pg, 4)
        pg.switch_wal_and_wait_archived()
        # Last: a two-phase commit that drops a table (its record carries dropped-statistics
        # items before the prepared xid), then a switch that writes no commit of its own.
        pg.sql("create table t2 (a int)")
        with pg.conn() as c, c.cursor() as cur:
            c.autocommit = True
            cur.execute("begin")
            cur.execute("drop table t2")
            cur.execute("prepare transaction 'wv_versions'")
            cur.execute("commit prepared 'wv_versions'")
        c.close()
        s.last_commit = last_commit_time(pg)
        s.last_segment = switch_and_wait(pg)
        if s.walinspect:
            with pg.conn() as c, c.cursor() as cur:
                cur.execute("set timezone = 'UTC'")
                cur.execute("select record_type, description from pg_get_wal_records_info(%s, "
                            "pg_current_wal_lsn()) where resource_manager = 'Transaction' "
                            "order by start_lsn", (s.batch0["lsn"],))
                s.walinspect_rows = cur.fetchall()
            c.close()
        pg.stop()
        s.primary_log = pg.log()

        # The fork: a copy of the repository, a server restored to between batches 1 and 2 that
        # promotes (timeline 2) and archives into the copy.
        s.fork_repo = s.repo.copy_to(os.path.join(d, "repo-fork"), os.path.join(d, "fork.conf"))
        s.fork_restorer = VRestorer(wv, s.fork_repo, d, bindir, major, s.sysid)
        r = s.fork_restorer.restore("tl2", "--to", iso((s.b[1]["commit"] + s.b[2]["commit"]) / 2))
        s.fork_restorer.start(r, archive=True)
        assert set(batches_in(r)) == {0, 1}
        time.sleep(0.3)
        s.b[21] = commit_batch(r, 21)
        r.switch_wal_and_wait_archived()
        s.tl2_last = last_commit_time(r)
        r.stop()
        ok = True
        yield s
    finally:
        if hasattr(s, "fork_restorer"):
            s.fork_restorer.cleanup(dump=not ok)
        if not hasattr(s, "restorer"):
            s.restorer = VRestorer(wv, s.repo, d, bindir, major, None)
        finish_module(s.restorer, pg, d, ok)


def expect_batches(pg, want):
    got = batches_in(pg)
    assert set(got) == set(want), got
    assert all(n == 10 for n in got.values()), got


# (id, arguments, batches expected)
TARGETS = [
    ("time", lambda s: ["--to", iso((s.b[2]["commit"] + s.b[3]["commit"]) / 2)], {0, 1, 2}),
    ("lsn", lambda s: ["--lsn", s.b[3]["lsn"]], {0, 1, 2, 3}),
    ("xid", lambda s: ["--xid", str(s.b[2]["xid"])], {0, 1, 2}),
    ("name", lambda s: ["--name", "after batch 1"], {0, 1}),
    ("immediate", lambda s: ["--immediate"], {0}),
    ("end", lambda s: [], {0, 1, 2, 3, 4}),
]


@pytest.mark.parametrize("target, args, want", TARGETS, ids=[t[0] for t in TARGETS])
def test_pitr(cyc, target, args, want):
    pg = cyc.restorer.restore_and_start(target, *args(cyc))
    expect_batches(pg, want)
    assert pg.sql_value("show server_version_num") == str(cyc.server_version)
    log = pg.log_since_start()
    if target == "time":
        assert "recovery stopping before commit of transaction %d" % cyc.b[3]["xid"] in log, log
    if target == "name":
        assert 'recovery stopping at restore point "after batch 1"' in log, log
    if target == "end":
        assert pg.sql_value("select count(*) from pg_class where relname = 't2'") == 0
        assert pg.sql_value("select count(*) from pg_prepared_xacts") == 0
    pg.stop()


def manifest_head(datadir):
    with open(os.path.join(datadir, "backup_manifest")) as f:
        text = f.read(4096)
    m = re.match(r'\{\s*"PostgreSQL-Backup-Manifest-Version":\s*(\d+),\s*'
                 r'(?:"System-Identifier":\s*(\d+),\s*)?"Files"', text)
    assert m, text[:300]
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


def test_server_manifest_version(cyc):
    pg = cyc.restorer.restore("manifest", "--immediate")
    version, sysid = manifest_head(pg.datadir)
    if cyc.major >= 17:
        assert (version, sysid) == (2, cyc.sysid)
    else:
        assert (version, sysid) == (1, None)
    # The independent check agrees with pg_verifybackup where that runs (and is 17's check).
    assert check_manifest(pg.datadir, cyc.sysid) > 900
    cyc.restorer.verify(pg)
    # And it can fail: a flipped byte in a listed file.
    path = os.path.join(pg.datadir, "PG_VERSION")
    with open(path, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(AssertionError):
        check_manifest(pg.datadir, cyc.sysid)


def pg_waldump_commits(major, waldir, first, last):
    """(end of the dump, [(kind, unix seconds)]) of every transaction end pg_waldump of `major`
    reports in waldir between the segments first and last; None without that pg_waldump."""
    tool = pg_version_tool("pg_waldump", major)
    if not tool:
        return None
    res = run([tool, "-p", waldir, "-r", "Transaction", first, last], check=False,
              env={"TZ": "UTC"})
    out = []
    for m in re.finditer(r"desc: (COMMIT|ABORT|COMMIT_PREPARED|ABORT_PREPARED)(?: \d+:)? "
                         r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? UTC", res.stdout):
        t = datetime.datetime.strptime(m.group(2), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        out.append((m.group(1), t + (float(m.group(3)) if m.group(3) else 0.0)))
    assert out, "pg_waldump %s found no transaction: %s" % (tool, res.stdout[-2000:] + res.stderr)
    return out


def walinspect_commits(rows):
    """The same as pg_waldump_commits, from pg_get_wal_records_info() rows (UTC session)."""
    out = []
    for kind, desc in rows:
        if kind not in ("COMMIT", "ABORT", "COMMIT_PREPARED", "ABORT_PREPARED"):
            continue
        m = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?\+00", desc)
        assert m, desc
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        out.append((kind, t + (float(m.group(2)) if m.group(2) else 0.0)))
        if kind == "COMMIT_PREPARED":
            assert "dropped stats" in desc, desc
    assert out, rows[-5:]
    return out


def us(t):
    return int(round(t * 1e6))


def windows(repo, wv):
    doc = json.loads(bb(wv, repo, "list", "--json").stdout)["repositories"][0]
    return doc, {w["timeline"]: w for w in doc["windows"]}


def test_window_equals_pg_waldump(cyc, wv):
    # wal-push read every segment of this version to its end (it warns when it cannot).
    assert "commit times not recorded" not in cyc.primary_log, cyc.primary_log[-3000:]
    assert len(cyc.repo.segments()) >= 3
    doc, win = windows(cyc.repo, wv)
    assert doc["pg_major"] == cyc.major
    assert int(doc["system_identifier"]) == cyc.sysid
    assert set(win) == {1}, doc["windows"]
    to = parse_wv_time(win[1]["to"])
    # The server's own commit timestamp of its last commit (every version).
    assert us(to) == us(cyc.last_commit), (win[1]["to"], cyc.last_commit)
    segs = sorted(f for f in os.listdir(cyc.raw) if len(f) == 24)
    # (a later segment may follow: the shutdown switches a segment that holds a standby snapshot
    # or a checkpoint record, and no transaction)
    assert cyc.last_segment in segs
    if cyc.walinspect:
        dump = walinspect_commits(cyc.walinspect_rows)
    else:
        dump = pg_waldump_commits(cyc.major, cyc.raw, segs[0], segs[-1])
        assert dump is not None, "PostgreSQL %d has no pg_waldump" % cyc.major
    commits = [t for kind, t in dump if kind.startswith("COMMIT")]
    assert dump[-1][0] == "COMMIT_PREPARED", dump[-3:]
    assert us(to) == us(commits[-1]), (win[1]["to"], commits[-1])
    # Every batch's commit is one pg_waldump saw, at the time the server recorded.
    for k in (1, 2, 3, 4):
        assert us(cyc.b[k]["commit"]) in {us(t) for t in commits}, k


def test_timeline_fork(cyc, wv):
    names = cyc.fork_repo.wal_names()
    assert "00000002.history" in names
    doc, win = windows(cyc.fork_repo, wv)
    assert set(win) == {1, 2}, doc["windows"]
    assert us(parse_wv_time(win[2]["to"])) == us(cyc.tl2_last)
    assert us(parse_wv_time(win[1]["to"])) == us(cyc.last_commit)
    fr = cyc.fork_restorer
    pg = fr.restore_and_start("latest", "--timeline", "latest")
    expect_batches(pg, {0, 1, 21})
    assert pg.sql_value("select timeline_id from pg_control_checkpoint()") >= 2
    pg.stop()
    pg = fr.restore_and_start("tl1", "--timeline", "1")
    expect_batches(pg, {0, 1, 2, 3, 4})
    pg.stop()


# --- one repository, one major version --------------------------------------------------------

def test_pg18_refused_by_pg15_repository(basetemp, wv):
    need_pg_version(15)
    bindir18 = need_pg_version(18)
    d = module_dir(basetemp, "pg15-then-18")
    repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    old = Postgres(d, "pg15", bindir=pg_version_bindir(15)).initdb(wal_segsize=1)
    new = Postgres(d, "pg18", bindir=bindir18).initdb(wal_segsize=1)
    ok = False
    try:
        old.conf(archive_mode="on", archive_command=wv.archive_command(repo.config))
        old.start()
        old.switch_wal_and_wait_archived()
        old.stop()
        with open(os.path.join(repo.path, "walvault.repo")) as f:
            assert "pg_major=15" in f.read()
        before = repo.files()

        new.conf(archive_mode="on", archive_command=wv.archive_command(repo.config))
        new.start()
        new.sql("create table x (a int)")
        new.sql("select pg_switch_wal()")
        wait_until(lambda: new.archiver_stats()["failed_count"] > 0, timeout=60,
                   what="the PostgreSQL 18 archiver to fail")
        want = ("this cluster is PostgreSQL 18, but repository \"%s\" holds PostgreSQL 15"
                % repo.path)
        wait_until(lambda: want in new.log(), timeout=30, what="the refusal in the server log")
        assert "after pg_upgrade, archive PostgreSQL 18 into a new repository" in new.log()

        # wal-push by hand on one of 18's segments, and a base backup: the same refusal.
        seg = sorted(f for f in os.listdir(os.path.join(new.datadir, "pg_wal")) if len(f) == 24)[0]
        res = wv.push(os.path.join(new.datadir, "pg_wal", seg), config=repo.config)
        assert res.returncode != 0 and want in res.stderr, res.stderr
        res = bb(wv, repo, "backup", "-d", connstr(new), "--checkpoint", "fast", check=False)
        assert res.returncode != 0 and want in res.stderr, res.stdout + res.stderr
        assert repo.files() == before
        ok = True
    finally:
        for pg in (old, new):
            if not ok:
                print("\n----- server log of %s -----\n%s" % (pg.name, pg.log()[-10000:]))
            pg.cleanup()
