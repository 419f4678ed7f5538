"""basebackup sync: a repository that was down is brought up to date from another one.

One cluster per module archives into two posix repositories (archive_command with both). repo2
goes away (its directory is moved): wal-push fails naming repo2 and PostgreSQL retries
(failed_count grows) while repo1 keeps what it got; the operator points archive_command at repo1
alone, archiving catches up, a backup and a restore point are taken into repo1 only. repo2 comes
back; `basebackup sync --from 1 --to 2` copies exactly what repo2 lacks (a dry run first writes
nothing), after which a restore from repo2 alone reaches the last commit; a second sync copies
nothing. Then the refusals: a conflicting object (never replaced, the other missing objects still
copied, the backup holding it not completed), a repository of another cluster, a damaged source
object (nothing visible under its key), usage errors. Seeding an empty repository creates its
walvault.repo from the source's.
"""

import os
import re
import shutil

import pytest

from test_restore_pitr import (Restorer, bb, commit_batch, finish_module, module_dir,
                               take_backup)
from utils import (OBJ_HEADER, Postgres, chown_pg, flip_byte, make_pg_dir, read_bytes, run,
                   tree_files, wait_until)

# One worker runs a module (pytest-xdist --dist loadgroup): its cluster is built once.
pytestmark = pytest.mark.xdist_group("sync")


class Cfg:
    """A configuration file naming some posix repositories ([repoN] -> path)."""

    def __init__(self, path, repos, extra=""):
        self.config = path
        self.repos = repos
        text = extra
        for n, p in sorted(repos.items()):
            text += "[repo%d]\ntype = posix\npath = %s\n\n" % (n, p)
        with open(path, "w") as f:
            f.write(text)
        chown_pg(path)


def objects(path):
    """Object keys of a posix repository (no temporary files)."""
    return {f for f in tree_files(path) if ".wvtmp-" not in f}


def sync(wv, cfg, *args, check=None):
    res = run(wv.cmd("basebackup", "sync", *args, config=cfg.config), check=False, timeout=600)
    if check is not None:
        assert res.returncode == check, "sync %s: exit %d\n%s\n%s" % (
            " ".join(args), res.returncode, res.stdout, res.stderr)
    return res


def summary(res):
    m = re.search(r"^sync repo\d -> repo\d(?: \(dry run\))?: (?:copied|would copy) (\d+) objects? "
                  r"\(([^,]+), (\d+) backups?\), skipped (\d+) already there, (\d+) conflicts?, "
                  r"[\d.]+ s$", res.stdout, re.M)
    assert m, "no summary line:\n" + res.stdout + res.stderr
    return {"copied": int(m.group(1)), "backups": int(m.group(3)), "skipped": int(m.group(4)),
            "conflicts": int(m.group(5))}


class State:
    pass


@pytest.fixture(scope="module")
def outage(basetemp, wv):
    d = module_dir(basetemp, "sync")
    s = State()
    s.dir = d
    s.r1 = make_pg_dir(os.path.join(d, "repo1"))
    s.r2 = make_pg_dir(os.path.join(d, "repo2"))
    s.both = Cfg(os.path.join(d, "both.conf"), {1: s.r1, 2: s.r2})
    s.only1 = Cfg(os.path.join(d, "only1.conf"), {1: s.r1})
    s.only2 = Cfg(os.path.join(d, "only2.conf"), {2: s.r2})
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.both.config),
            archive_timeout=0, autovacuum="off", max_wal_size="64MB",
            track_commit_timestamp="on")
    s.restorer = Restorer(wv, s.only2, d)
    ok = False
    try:
        pg.start()
        pg.pgbench("-i", "-s", "1", "-q")
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        commit_batch(pg, 0)
        s.first_backup = take_backup(wv, s.both, pg)
        pg.switch_wal_and_wait_archived()
        s.before = objects(s.r2)
        assert s.before == objects(s.r1)

        # repo2 goes away: wal-push fails naming it, PostgreSQL retries, repo1 keeps the segment.
        os.rename(s.r2, s.r2 + ".away")
        commit_batch(pg, 1)
        name = pg.sql_value("select pg_walfile_name(pg_switch_wal())")
        wait_until(lambda: pg.archiver_stats()["failed_count"] >= 2, timeout=60,
                   what="archive failures while repo2 is away")
        s.failed_log = pg.log()
        assert os.path.exists(os.path.join(s.r1, "wal", name[:16], name))

        # The operator archives into repo1 alone for the rest of the outage.
        pg.conf(archive_command=wv.archive_command(s.only1.config))
        pg.sql("select pg_reload_conf()")
        pg.wait_archived(name)
        s.outage_backup = take_backup(wv, s.only1, pg)
        commit_batch(pg, 2)
        pg.sql("select pg_create_restore_point('after batch 2')")
        commit_batch(pg, 3)
        s.last = pg.switch_wal_and_wait_archived()
        s.batches = {b: n for b, n in pg.sql("select batch, count(*) from t group by batch")}
        pg.stop()

        # repo2 is back; archive_command names both again.
        os.rename(s.r2 + ".away", s.r2)
        s.missing = objects(s.r1) - objects(s.r2)
        s.r2_has_last = any(k.endswith(s.last) for k in objects(s.r2))
        ok = True
        yield s
    finally:
        finish_module(s.restorer, pg, d, ok)


def test_outage_is_visible_and_nothing_lost_in_repo1(outage):
    assert re.search(r"repo2", outage.failed_log), outage.failed_log[-3000:]
    keys = outage.missing
    assert any(k.startswith("backup/%s/" % outage.outage_backup) for k in keys), keys
    assert "backup/%s/backup.manifest" % outage.outage_backup in keys
    assert any(k.endswith(".rp") for k in keys), keys
    assert any(k.endswith(".xid") for k in keys), keys
    assert any(re.search(r"\.[0-9A-F]{8}\.backup$", k) for k in keys), keys
    # repo2 alone does not reach the end: its archive stops before the outage
    assert not outage.r2_has_last


def test_sync_repairs_then_copies_nothing(outage, wv):
    s = outage
    before = {k: read_bytes(os.path.join(s.r2, k)) for k in objects(s.r2)}

    dry = sync(wv, s.both, "--from", "1", "--to", "2", "--dry-run", check=0)
    sm = summary(dry)
    assert "(dry run)" in dry.stdout
    assert sm["copied"] == len(s.missing) and sm["conflicts"] == 0, (sm, sorted(s.missing))
    for k in s.missing:
        assert "would copy %s " % k in dry.stdout, k
    assert {k: read_bytes(os.path.join(s.r2, k)) for k in objects(s.r2)} == before

    res = sync(wv, s.both, "--from", "1", "--to", "2", check=0)
    sm = summary(res)
    assert sm["copied"] == len(s.missing) and sm["backups"] == 1 and sm["conflicts"] == 0, sm
    assert sm["skipped"] > 0, sm
    assert objects(s.r2) == objects(s.r1)
    for k in objects(s.r1):
        assert read_bytes(os.path.join(s.r1, k)) == read_bytes(os.path.join(s.r2, k)), k
    for k, data in before.items():
        assert read_bytes(os.path.join(s.r2, k)) == data, "%s changed" % k

    again = sync(wv, s.both, "--from", "1", "--to", "2", check=0)
    sm = summary(again)
    assert sm["copied"] == 0 and sm["backups"] == 0 and sm["conflicts"] == 0, sm

    # repo2 alone now restores the backup taken during the outage, to the last commit.
    lst = bb(wv, s.only2, "list", "--repo", "2")
    assert s.outage_backup in lst.stdout, lst.stdout
    pg = s.restorer.restore_and_start("from-repo2", "--backup", s.outage_backup)
    assert {b: n for b, n in pg.sql("select batch, count(*) from t group by batch")} == s.batches
    pg.stop()
    pg2 = s.restorer.restore_and_start("from-repo2-rp", "--name", "after batch 2")
    assert {b for b, in pg2.sql("select distinct batch from t")} == {0, 1, 2}
    pg2.stop()


def copy_repo(src, dst):
    shutil.copytree(src, dst)
    for d, dirs, files in os.walk(dst):
        for x in dirs + files:
            chown_pg(os.path.join(d, x))
    chown_pg(dst)
    return dst


def test_conflict_refused_other_objects_still_copied(outage, wv, workdir):
    s = outage
    r3 = copy_repo(s.r1, os.path.join(workdir, "repo3"))
    cfg = Cfg(os.path.join(workdir, "w.conf"), {1: s.r1, 3: r3})
    segs = sorted(k for k in objects(s.r1) if re.search(r"/[0-9A-F]{24}$", k))
    victim, other, gone = segs[1], segs[2], segs[3]
    # repo3's copy of `victim` is another valid object (the bytes of another segment)
    os.remove(os.path.join(r3, victim))
    shutil.copy(os.path.join(s.r1, other), os.path.join(r3, victim))
    chown_pg(os.path.join(r3, victim))
    replaced = read_bytes(os.path.join(r3, victim))
    os.remove(os.path.join(r3, gone))
    bfile = sorted(k for k in objects(s.r1)
                   if k.startswith("backup/%s/pgdata/base/" % s.outage_backup))[0]
    manifest = "backup/%s/backup.manifest" % s.outage_backup
    os.remove(os.path.join(r3, manifest))
    shutil.copy(os.path.join(s.r1, other), os.path.join(r3, bfile))

    res = sync(wv, cfg, "--from", "1", "--to", "3", check=6)
    err = res.stderr
    assert 'repo3: "%s": conflict: different content' % victim in err, err
    assert '"%s": conflict' % bfile in err, err
    assert "backup %s not copied: 1 conflicting object" % s.outage_backup in err, err
    assert "2 objects differ from repo1 and were not copied" in err, err
    assert "hint:" in err
    sm = summary(res)
    assert sm["conflicts"] == 2 and sm["copied"] == 1 and sm["backups"] == 0, sm
    assert read_bytes(os.path.join(r3, victim)) == replaced, "conflicting object replaced"
    assert read_bytes(os.path.join(r3, gone)) == read_bytes(os.path.join(s.r1, gone))
    assert not os.path.exists(os.path.join(r3, manifest))


def test_other_cluster_refused(outage, wv, workdir, wal_samples):
    s = outage
    r4 = make_pg_dir(os.path.join(workdir, "repo4"))
    cfg4 = Cfg(os.path.join(workdir, "four.conf"), {4: r4})
    assert run(wv.cmd("wal-push", wal_samples.b_segments[0], config=cfg4.config),
               check=False).returncode == 0
    before = objects(r4)
    cfg = Cfg(os.path.join(workdir, "w.conf"), {1: s.r1, 4: r4})
    res = sync(wv, cfg, "--from", "1", "--to", "4", check=7)
    assert "refused: repo4" in res.stderr and "belongs to database system %d" % \
        wal_samples.b_sysid in res.stderr, res.stderr
    assert objects(r4) == before


def test_seed_empty_repository_and_damaged_source(outage, wv, workdir):
    s = outage
    src = copy_repo(s.r1, os.path.join(workdir, "src"))
    seg = sorted(k for k in objects(src) if re.search(r"/[0-9A-F]{24}$", k))[2]
    flip_byte(os.path.join(src, seg), OBJ_HEADER + 100)
    dst = make_pg_dir(os.path.join(workdir, "dst"))
    cfg = Cfg(os.path.join(workdir, "w.conf"), {1: src, 2: dst})
    res = sync(wv, cfg, "--from", "1", "--to", "2", check=5)
    assert 'repo1: "%s"' % seg in res.stderr and "corrupt" in res.stderr, res.stderr
    assert seg not in objects(dst)
    assert not [f for f in tree_files(dst) if ".wvtmp-" in f]
    assert read_bytes(os.path.join(dst, "walvault.repo")) == read_bytes(
        os.path.join(src, "walvault.repo"))

    # with the damaged object back in order, the seeded repository is complete
    shutil.copy(os.path.join(s.r1, seg), os.path.join(src, seg))
    sm = summary(sync(wv, cfg, "--from", "1", "--to", "2", check=0))
    assert sm["conflicts"] == 0 and sm["backups"] == 2, sm
    assert objects(dst) == objects(src)


def bundle_members(repo, bid):
    """File records of a backup's manifest that live in bundles, as dicts."""
    out = []
    with open(os.path.join(repo, "backup", bid, "backup.manifest")) as f:
        for line in f:
            if line.startswith("file ") and " bundle=" in line:
                out.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return out


def test_bundles_verified_while_copied(outage, wv, workdir):
    """A bundle (small files stored many to an object) is copied whole, every file in it checked
    against the manifest on the way: a damaged file names the file and stops that backup; a
    different bundle already in the target is a conflict, never replaced."""
    s = outage
    bid = s.outage_backup
    members = bundle_members(s.r1, bid)
    assert members, "the backup has no bundle"
    victim = members[len(members) // 2]
    bkey = "backup/%s/bundle/%s" % (bid, victim["bundle"])
    manifest = "backup/%s/backup.manifest" % bid

    src = copy_repo(s.r1, os.path.join(workdir, "src"))
    size = int(victim["stored-size"])
    flip_byte(os.path.join(src, bkey), int(victim["offset"]) + OBJ_HEADER + (size - 128 - OBJ_HEADER) // 2)
    dst = make_pg_dir(os.path.join(workdir, "dst"))
    cfg = Cfg(os.path.join(workdir, "w.conf"), {1: src, 2: dst})
    res = sync(wv, cfg, "--from", "1", "--to", "2", check=5)
    assert victim["path"] in res.stderr and bkey in res.stderr, res.stderr
    assert bkey not in objects(dst) and manifest not in objects(dst)
    assert not [f for f in tree_files(dst) if ".wvtmp-" in f]

    # a target holding other bytes under the bundle's key: a conflict, left as it is
    good = copy_repo(s.r1, os.path.join(workdir, "good"))
    other = copy_repo(s.r1, os.path.join(workdir, "other"))
    os.remove(os.path.join(other, manifest))
    flip_byte(os.path.join(other, bkey), int(victim["offset"]) + OBJ_HEADER + 1)
    before = read_bytes(os.path.join(other, bkey))
    cfg2 = Cfg(os.path.join(workdir, "w2.conf"), {1: good, 2: other})
    res = sync(wv, cfg2, "--from", "1", "--to", "2", check=6)
    assert '"%s": conflict' % bkey in res.stderr and victim["path"] in res.stderr, res.stderr
    assert read_bytes(os.path.join(other, bkey)) == before
    assert manifest not in objects(other)


@pytest.mark.parametrize("args,code,text", [
    ((), 2, "sync needs --from N and --to M"),
    (("--from", "1"), 2, "sync needs --from N and --to M"),
    (("--from", "1", "--to", "1"), 2, "name the same repository"),
    (("--from", "x", "--to", "2"), 2, "is not a repository number"),
    (("--from", "1", "--to", "9"), 2, "no [repo9]"),
    (("--from", "1", "--to", "2", "extra"), 2, "unexpected argument"),
    (("--bogus",), 2, "unknown or incomplete option"),
])
def test_usage(outage, wv, args, code, text):
    res = sync(wv, outage.both, *args, check=code)
    assert text in res.stderr, res.stderr


def test_empty_source_refused(wv, workdir):
    a = make_pg_dir(os.path.join(workdir, "a"))
    b = make_pg_dir(os.path.join(workdir, "b"))
    cfg = Cfg(os.path.join(workdir, "w.conf"), {1: a, 2: b})
    res = sync(wv, cfg, "--from", "1", "--to", "2", check=1)
    assert "repo1" in res.stderr and "is empty" in res.stderr, res.stderr
    assert objects(b) == set()
