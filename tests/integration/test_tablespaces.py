"""Restore of a cluster with a tablespace: in place, and remapped with --tablespace-map.

A primary with tablespace ts1 holding a table written in batches before and after a walvault
backup. Proves: with the original location empty the tablespace is restored where it was
(pg_tblspc/<oid> points there) and PITR gives exactly the batches before the target; a non-empty
location is refused before anything is written, with the --tablespace-map hint; --tablespace-map
OLD=NEW puts the tablespace into NEW (the link and PostgreSQL agree, OLD is not touched); a map
naming no tablespace of the backup is refused. Both refusals come from --dry-run as well.
"""

import os
import time

import pytest

from test_restore_pitr import (Restorer, amcheck, assert_nothing_written, bb, commit_batch,
                               finish_module, iso, module_dir, primary_conf, take_backup)
from utils import Postgres, Repo, make_pg_dir, tree_files


class Ts:
    pass


@pytest.fixture(scope="module")
def ts(basetemp, wv):
    d = module_dir(basetemp, "tablespaces")
    s = Ts()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    s.loc = make_pg_dir(os.path.join(d, "ts1"), 0o700)
    p = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(p, wv, s.repo)
    s.restorer = Restorer(wv, s.repo, d)
    ok = False
    try:
        p.start()
        p.sql("create tablespace ts1 location '%s'" % s.loc)
        s.oid = p.sql_value("select oid from pg_tablespace where spcname = 'ts1'")
        p.sql("create table t (batch int, id int) tablespace ts1")
        p.sql("create index on t (batch, id) tablespace ts1")
        commit_batch(p, 0, rows=5000)
        s.backup_id = take_backup(wv, s.repo, p)
        time.sleep(1.1)
        s.b1 = commit_batch(p, 1, rows=5000)
        time.sleep(0.3)
        s.b2 = commit_batch(p, 2, rows=5000)
        p.switch_wal_and_wait_archived()
        p.stop()
        # the primary is gone; its tablespace directory is kept aside, the location left empty
        s.loc_orig = s.loc + ".orig"
        os.rename(s.loc, s.loc_orig)
        make_pg_dir(s.loc, 0o700)
        ok = True
        yield s
    finally:
        finish_module(s.restorer, p, d, ok)


def check_restored(pg, s, loc):
    assert pg.sql("select batch, count(*) from t group by 1 order by 1") == [(0, 5000), (1, 5000)]
    assert pg.sql_value("select pg_tablespace_location(%s)", (s.oid,)) == loc
    link = os.path.join(pg.datadir, "pg_tblspc", str(s.oid))
    assert os.path.islink(link) and os.readlink(link) == loc
    assert any(f.startswith("PG_15_") for f in os.listdir(loc))
    # the table's files are in the tablespace
    path = pg.sql_value("select pg_relation_filepath('t')")
    assert path.startswith("pg_tblspc/%d/" % s.oid)
    assert os.path.realpath(os.path.join(pg.datadir, path)).startswith(loc + "/")
    amcheck(pg)


def test_tablespace_remapped(ts):
    # first (the original location is empty): a map that names no tablespace, a non-empty NEW
    new = make_pg_dir(os.path.join(ts.dir, "ts1-new"), 0o700)
    target = os.path.join(ts.dir, "never")
    for dry in (["--dry-run"], []):
        res = bb(ts.restorer.wv, ts.repo, "restore", "--pgdata", target, "--tablespace-map",
                 "/no/such/tablespace=%s" % new, *dry, check=False)
        assert res.returncode != 0 and "/no/such/tablespace" in res.stderr and \
            ts.loc in res.stderr, res.stderr
        assert_nothing_written(target)
    open(os.path.join(new, "x"), "w").close()
    res = bb(ts.restorer.wv, ts.repo, "restore", "--pgdata", target, "--tablespace-map",
             "%s=%s" % (ts.loc, new), check=False)
    assert res.returncode != 0 and "not empty" in res.stderr and new in res.stderr, res.stderr
    assert_nothing_written(target)
    os.unlink(os.path.join(new, "x"))

    pg = ts.restorer.restore("remapped", "--to", iso((ts.b1["commit"] + ts.b2["commit"]) / 2),
                             "--tablespace-map", "%s=%s" % (ts.loc, new))
    assert os.listdir(ts.loc) == []  # the old location is not touched
    ts.restorer.verify(pg)
    ts.restorer.start(pg)
    check_restored(pg, ts, new)
    assert os.listdir(ts.loc) == []
    pg.stop()


def test_tablespace_in_place(ts):
    # the location holds something: refused, nothing written, with the --tablespace-map hint
    junk = os.path.join(ts.loc, "junk")
    open(junk, "w").close()
    target = os.path.join(ts.dir, "never")
    for dry in (["--dry-run"], []):  # the dry run refuses what the real run refuses
        res = bb(ts.restorer.wv, ts.repo, "restore", "--pgdata", target, *dry, check=False)
        assert res.returncode != 0
        assert "tablespace %d location \"%s\" is not empty" % (ts.oid, ts.loc) in res.stderr
        assert "--tablespace-map %s=" % ts.loc in res.stderr
        assert_nothing_written(target)
    assert os.listdir(ts.loc) == ["junk"]
    os.unlink(junk)

    pg = ts.restorer.restore("inplace", "--to", iso((ts.b1["commit"] + ts.b2["commit"]) / 2))
    ts.restorer.verify(pg)
    # the files restored into the location are the primary's (same relative paths)
    assert tree_files(ts.loc) <= tree_files(ts.loc_orig) | {""}
    ts.restorer.start(pg)
    check_restored(pg, ts, ts.loc)
    pg.stop()
