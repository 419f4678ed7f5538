"""basebackup restore to a point in time, against a real PostgreSQL 15 archiving with wal-push.

One cluster per module (1 MiB segments, commit timestamps tracked, autovacuum off so that every
commit is one of ours): pgbench data, a walvault backup, then batches 1-5 of rows, each batch one
transaction whose server commit time, xid and following LSN are recorded, a restore point after
each, the WAL switched and archived, and a second backup after batch 4. Each test restores to a
target and proves the restored server holds exactly the batches committed before it: every --to
form (local time with TZ set, "+TZ", ISO 8601 Z, "N seconds ago"), --lsn, --xid, --name,
--immediate, and the end of the archive; pg_verifybackup accepts every restored directory before it
starts and pg_amcheck finds nothing after recovery. The newest backup that ends before the target
is chosen; --backup overrides. A backup taken under pgbench load restores to the end with
consistent data.

The helpers at the top are shared by other modules (test_list, test_timelines, test_tablespaces,
test_restore_refusals and more): keep their names and signatures.
"""

import datetime
import os
import re
import shutil
import time
import zoneinfo

import pytest

from utils import PG_USER, Postgres, Repo, make_pg_dir, pg_bin, popen, run, wait_until

# --- shared helpers ---------------------------------------------------------------------------

_dirs = [0]


def module_dir(basetemp, name):
    _dirs[0] += 1
    return make_pg_dir(os.path.join(basetemp, "m%02d-%s" % (_dirs[0], name)), 0o755)


def connstr(pg):
    return "host=127.0.0.1 port=%d user=%s" % (pg.port, PG_USER)


def bb(wv, repo, *args, check=True, env=None):
    """Run basebackup -c CONF ARGS as postgres."""
    res = run(wv.cmd("basebackup", *args, config=repo.config), check=False, env=env, timeout=600)
    if check:
        assert res.returncode == 0, "basebackup %s failed (%d):\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(map(str, args)), res.returncode, res.stdout, res.stderr)
    return res


def take_backup(wv, repo, pg, *args):
    res = bb(wv, repo, "backup", "-d", connstr(pg), "--checkpoint", "fast", *args)
    m = re.search(r"^backup (\S+) complete", res.stdout, re.M)
    assert m, res.stdout + res.stderr
    return m.group(1)


def finish_module(restorer, pg, d, ok):
    """The end of a module fixture: the restored servers stopped (with their logs printed when the
    setup failed), the primary's log printed likewise and its server stopped, the directory removed
    (kept with WALVAULT_KEEP=1)."""
    restorer.cleanup(dump=not ok)
    if not ok:
        print("\n----- primary log -----\n%s" % pg.log()[-20000:])
    pg.cleanup()
    if not os.environ.get("WALVAULT_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


def iso(t):
    """A time as an ISO 8601 UTC string with microseconds, the form --to accepts."""
    return utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ts_of(dt):
    """A timezone-aware datetime as float seconds since the epoch."""
    return dt.timestamp()


def utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc)


def parse_wv_time(s):
    """walvault's time text ("2026-11-25 11:00:00.5+01", "+05:30", "+00") to epoch seconds."""
    m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?([+-])(\d\d)(?::?(\d\d))?$", s)
    assert m, "not a walvault time: %r" % s
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    off = int(m.group(4)) * 3600 + int(m.group(5) or 0) * 60
    if m.group(3) == "-":
        off = -off
    frac = float(m.group(2)) if m.group(2) else 0.0
    return base.replace(tzinfo=datetime.timezone.utc).timestamp() - off + frac


def primary_conf(pg, wv, repo):
    pg.conf(archive_mode="on", archive_command=wv.archive_command(repo.config), archive_timeout=0,
            track_commit_timestamp="on", autovacuum="off", max_wal_size="64MB")


def commit_batch(pg, batch, rows=10, table="t"):
    """One transaction inserting `rows` rows of `batch`; its xid, commit time and the LSN after."""
    with pg.conn() as c, c.cursor() as cur:
        c.autocommit = False
        cur.execute("insert into %s (batch, id) select %%s, g from generate_series(1, %%s) g "
                    "returning txid_current()" % table, (batch, rows))
        xid = cur.fetchone()[0]
        c.commit()
    c.close()
    ct = pg.sql_value("select pg_xact_commit_timestamp(%s::text::xid)", (str(xid),))
    lsn, seg = pg.sql("select pg_current_wal_lsn()::text, "
                      "pg_walfile_name(pg_current_wal_lsn() - 1)")[0]
    return {"batch": batch, "xid": xid, "commit": ts_of(ct), "lsn": lsn, "segment": seg}


def last_commit_time(pg):
    """The newest commit timestamp the server knows (track_commit_timestamp)."""
    return ts_of(pg.sql_value("select timestamp from pg_last_committed_xact()"))


def assert_nothing_written(path, existed_empty=False):
    if existed_empty:
        assert os.path.isdir(path) and os.listdir(path) == [], os.listdir(path)
    else:
        assert not os.path.exists(path), "%s was created" % path


class Restorer:
    """Restores into fresh directories under basedir and starts the result."""

    def __init__(self, wv, repo, basedir):
        self.wv, self.repo, self.basedir = wv, repo, basedir
        self.servers = []
        self._n = 0

    def new_pg(self, name):
        self._n += 1
        pg = Postgres(self.basedir, "%s-%d" % (name, self._n))
        self.servers.append(pg)
        return pg

    def restore(self, name, *args, env=None, check=True):
        pg = self.new_pg(name)
        res = bb(self.wv, self.repo, "restore", "--pgdata", pg.datadir, *args, env=env,
                 check=check)
        pg.restore_result = res
        return pg

    def verify(self, pg):
        """pg_verifybackup accepts the restored directory (before it starts)."""
        run([pg_bin("pg_verifybackup"), "-n", pg.datadir])

    def start(self, pg, archive=False, promote_wait=True, **conf):
        pg._base_conf()  # this server's port, no archiving (later lines win)
        if archive:
            pg.conf(archive_mode="on",
                    archive_command=self.wv.archive_command(self.repo.config))
        if conf:
            pg.conf(**conf)
        pg.start()
        if promote_wait:
            wait_until(lambda: pg.sql_value("select not pg_is_in_recovery()"), timeout=120,
                       what="%s to finish recovery" % pg.name)
        return pg

    def restore_and_start(self, name, *args, env=None, archive=False):
        pg = self.restore(name, *args, env=env)
        self.verify(pg)
        return self.start(pg, archive=archive)

    def cleanup(self, dump=False):
        for pg in self.servers:
            if dump:
                print("\n----- server log of %s -----\n%s" % (pg.name, pg.log()[-20000:]))
            pg.cleanup()


def amcheck(pg):
    run([pg_bin("pg_amcheck"), "-h", "127.0.0.1", "-p", pg.port, "-U", PG_USER, "--all",
         "--install-missing", "--heapallindexed"], timeout=300)


def batches_in(pg, table="t"):
    rows = pg.sql("select batch, count(*) from %s group by batch order by batch" % table)
    return {b: n for b, n in rows}


def recovery_end_log(pg):
    return pg.log_since_start()


# --- the module's cluster ---------------------------------------------------------------------

class Pitr:
    pass


ODD_NAME = "it's batch 1 \\ 100% done"  # quote, backslash, percent: escaped in the settings


@pytest.fixture(scope="module")
def pitr(basetemp, wv):
    d = module_dir(basetemp, "pitr")
    s = Pitr()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(pg, wv, s.repo)
    s.primary = pg
    s.restorer = Restorer(wv, s.repo, d)
    ok = False
    try:
        pg.start()
        pg.pgbench("-i", "-s", "1", "-q")
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        s.pgbench_sum = pg.sql_value("select sum(abalance) from pgbench_accounts")
        s.batch0 = commit_batch(pg, 0)  # in the backup
        s.backup_id = take_backup(wv, s.repo, pg)
        s.batches = []
        # the window starts a second after the backup's STOP TIME (whole seconds): batch 1 after
        # that; a gap of whole seconds between batches 2 and 3 ("N seconds ago")
        # (and after the second backup, taken after batch 4)
        gaps = {0: 1.1, 2: 3.5, 4: 1.5}
        for k in range(1, 6):
            time.sleep(gaps.get(k - 1, 0.3))
            s.batches.append(commit_batch(pg, k))
            pg.sql("select pg_create_restore_point(%s)", ("after batch %d" % k,))
            if k == 1:
                pg.sql("select pg_create_restore_point(%s)", (ODD_NAME,))
            if k % 2 == 0:
                pg.switch_wal_and_wait_archived()
            if k == 4:
                s.backup2_id = take_backup(wv, s.repo, pg)
        time.sleep(0.3)
        pg.switch_wal_and_wait_archived()
        s.last_commit = last_commit_time(pg)
        s.all_batches = {b["batch"] for b in s.batches} | {0}
        ok = True
        yield s
    finally:
        finish_module(s.restorer, pg, d, ok)


def between(s, k):
    """A time strictly between batch k's commit and batch k+1's."""
    a = s.batches[k - 1]["commit"] if k > 0 else None
    b = s.batches[k]["commit"]
    return (a + b) / 2


def expect_upto(pg, k):
    assert set(batches_in(pg)) == set(range(0, k + 1)), batches_in(pg)
    assert all(n == 10 for n in batches_in(pg).values())


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["iso-z", "local-tz", "offset", "offset-minutes"])
def test_restore_to_time_forms(pitr, form):
    k = {"iso-z": 1, "local-tz": 3, "offset": 2, "offset-minutes": 1}[form]  # before backup 2
    t = between(pitr, k)
    env = None
    if form == "iso-z":
        text = utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elif form == "local-tz":
        env = {"TZ": "Asia/Kolkata"}
        text = datetime.datetime.fromtimestamp(t, zoneinfo.ZoneInfo("Asia/Kolkata")).strftime(
            "%Y-%m-%d %H:%M:%S.%f")
    elif form == "offset":
        tz = datetime.timezone(datetime.timedelta(hours=-7))
        text = datetime.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S.%f") + "-07"
    else:
        tz = datetime.timezone(datetime.timedelta(hours=5, minutes=45))
        text = datetime.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S.%f") + " +05:45"
    pg = pitr.restorer.restore_and_start(form, "--to", text, env=env)
    expect_upto(pg, k)
    out = pg.restore_result.stdout + pg.restore_result.stderr
    assert pitr.backup_id in out and "timeline 1" in out, out
    assert "recovery stopping before commit of transaction %d" % pitr.batches[k]["xid"] in \
        pg.log_since_start()
    if form == "iso-z":
        amcheck(pg)
        assert pg.sql_value("select sum(abalance) from pgbench_accounts") == pitr.pgbench_sum
    pg.stop()


def test_restore_to_seconds_ago(pitr):
    # Between batches 2 and 3 lie 3.5 s: "N seconds ago", N computed now, lands inside.
    t = between(pitr, 2)
    n = int(round(time.time() - t))
    pg = pitr.restorer.restore_and_start("ago", "--to", "%d seconds ago" % n)
    expect_upto(pg, 2)
    pg.stop()


def test_restore_to_lsn(pitr):
    lsn = pitr.batches[1]["lsn"]  # after batch 2's commit, before batch 3
    pg = pitr.restorer.restore_and_start("lsn", "--lsn", lsn)
    expect_upto(pg, 2)
    assert "LSN %s" % lsn in pg.restore_result.stdout + pg.restore_result.stderr
    pg.stop()


def test_restore_to_xid(pitr):
    xid = pitr.batches[3]["xid"]  # batch 4, inclusive
    pg = pitr.restorer.restore_and_start("xid", "--xid", str(xid))
    expect_upto(pg, 4)
    amcheck(pg)
    pg.stop()


@pytest.mark.parametrize("name, k", [("after batch 3", 3), (ODD_NAME, 1)], ids=["plain", "odd"])
def test_restore_to_restore_point(pitr, name, k):
    pg = pitr.restorer.restore_and_start("name", "--name", name)
    expect_upto(pg, k)
    assert 'recovery stopping at restore point "%s"' % name in pg.log_since_start()
    pg.stop()


def test_restore_immediate(pitr):
    # the newest backup by default: it holds batches 0-4
    pg = pitr.restorer.restore_and_start("immediate", "--immediate")
    expect_upto(pg, 4)
    assert "restoring backup %s" % pitr.backup2_id in pg.restore_result.stderr
    assert 'recovery_target = \'immediate\'' in open(
        os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    pg.stop()
    pg = pitr.restorer.restore_and_start("immediate1", "--immediate", "--backup", pitr.backup_id)
    expect_upto(pg, 0)
    assert pg.sql_value("select sum(abalance) from pgbench_accounts") == pitr.pgbench_sum
    pg.stop()


def test_backup_choice(pitr):
    r = pitr.restorer
    after_b2 = pitr.batches[4]["commit"] - 0.05  # after backup 2's end, before batch 5
    cases = [  # (args, backup chosen)
        (["--to", utc(between(pitr, 1)).isoformat()], pitr.backup_id),
        (["--to", utc(after_b2).isoformat()], pitr.backup2_id),
        (["--lsn", pitr.batches[0]["lsn"]], pitr.backup_id),
        (["--lsn", pitr.batches[4]["lsn"]], pitr.backup2_id),
        (["--xid", str(pitr.batches[0]["xid"])], pitr.backup_id),
        ([], pitr.backup2_id),
    ]
    for args, want in cases:
        target = os.path.join(pitr.dir, "dry")
        res = bb(r.wv, pitr.repo, "restore", "--pgdata", target, "--dry-run", *args)
        assert "restoring backup %s " % want in res.stderr, (args, res.stderr)
        assert "dry run: nothing written" in res.stderr
        assert not os.path.exists(target)
    # --backup: the older backup replays further; the newer one cannot go back
    pg = r.restore_and_start("older", "--to", utc(after_b2).isoformat(), "--backup",
                             pitr.backup_id)
    expect_upto(pg, 4)
    assert "restoring backup %s" % pitr.backup_id in pg.restore_result.stderr
    pg.stop()
    res = bb(r.wv, pitr.repo, "restore", "--pgdata", os.path.join(pitr.dir, "no"), "--to",
             utc(between(pitr, 1)).isoformat(), "--backup", pitr.backup2_id, check=False)
    assert res.returncode != 0 and "before the end of the oldest usable backup (%s" % \
        pitr.backup2_id in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(pitr.dir, "no"))


def test_restore_to_end_of_archive(pitr):
    pg = pitr.restorer.restore_and_start("latest")
    expect_upto(pg, 5)
    out = pg.restore_result.stdout
    assert "the end of the archived WAL" in out, out
    # the recovery settings walvault wrote
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert "restore_command = '%s -c %s %%f %%p'" % (pitr.restorer.wv.exe("wal-fetch"),
                                                     os.path.realpath(pitr.repo.config)) in auto
    assert "recovery_target_timeline = '1'" in auto
    assert "recovery_target_time =" not in auto
    pg.stop()


def test_restore_command_quoting(pitr):
    # a configuration file whose path needs quoting for the shell and escaping for PostgreSQL
    d = make_pg_dir(os.path.join(pitr.dir, "it's 100% mine"), 0o755)
    conf = os.path.join(d, "wal vault.conf")
    shutil.copy(pitr.repo.config, conf)
    os.chmod(conf, 0o644)
    pg = pitr.restorer.new_pg("quoted")
    run(pitr.restorer.wv.cmd("basebackup", "restore", "--pgdata", pg.datadir, "--to",
                             utc(between(pitr, 1)).isoformat(), config=conf))
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert "100%%" in auto, auto
    pitr.restorer.start(pg)
    expect_upto(pg, 1)
    pg.stop()


def test_restore_target_action_shutdown(pitr):
    pg = pitr.restorer.restore("shutdown", "--to", utc(between(pitr, 1)).isoformat(),
                               "--target-action", "shutdown")
    auto = open(os.path.join(pg.datadir, "postgresql.auto.conf")).read()
    assert "recovery_target_action = 'shutdown'" in auto
    assert re.search(r"recovery_target_time = '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d\d", auto)
    pg._base_conf()
    pg.start(wait=False)
    wait_until(lambda: "database system is shut down" in pg.log_since_start(), timeout=120,
               what="shutdown at the target")
    wait_until(lambda: not pg.running(), timeout=60, what="postmaster to exit")


def test_backup_under_load_restores_to_end(basetemp, wv):
    d = module_dir(basetemp, "load")
    repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(pg, wv, repo)
    r = Restorer(wv, repo, d)
    ok = False
    try:
        pg.start()
        pg.pgbench("-i", "-s", "3", "-q")
        load = popen([pg_bin("pgbench"), "-h", "127.0.0.1", "-p", pg.port, "-U", PG_USER,
                      "-T", "8", "-c", "2", "-n", "postgres"])
        time.sleep(1)
        take_backup(wv, repo, pg)
        out, errs = load.communicate(timeout=120)
        assert load.returncode == 0, errs
        pg.switch_wal_and_wait_archived(timeout=300)
        want = (pg.sql_value("select sum(abalance) from pgbench_accounts"),
                pg.sql_value("select sum(delta) from pgbench_history"),
                pg.sql_value("select count(*) from pgbench_history"))
        rp = r.restore_and_start("end")
        got = (rp.sql_value("select sum(abalance) from pgbench_accounts"),
               rp.sql_value("select sum(delta) from pgbench_history"),
               rp.sql_value("select count(*) from pgbench_history"))
        assert got == want
        # pgbench's invariant: every history delta is in the accounts, tellers and branches
        assert rp.sql_value("select sum(bbalance) from pgbench_branches") == want[0]
        assert rp.sql_value("select sum(tbalance) from pgbench_tellers") == want[0]
        amcheck(rp)
        ok = True
    finally:
        r.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()
