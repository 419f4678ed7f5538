"""basebackup verify: a repository checked end to end, every problem reported.

One cluster per module (1 MiB WAL segments) archives into one posix repository and takes two
backups. Each test works on a copy of that repository: a clean copy verifies (exit 0, summary
counts); a flipped payload byte in a backup file object, a deleted backup file object, a flipped
byte in a WAL segment object and a deleted WAL segment a backup needs are each named on their own
line, all of them when several are damaged at once; --backup ID limits the backup checks;
--repo N checks only [repoN]; an unknown backup id or repository is a clear error.
"""

import os
import re
import shutil

import pytest

from test_restore_pitr import bb, commit_batch, module_dir, take_backup
from utils import OBJ_HEADER, Postgres, chown_pg, flip_byte, make_pg_dir, tree_files

pytestmark = pytest.mark.xdist_group("verify")


class State:
    pass


def write_config(path, repos):
    text = ""
    for n, p in sorted(repos.items()):
        text += "[repo%d]\ntype = posix\npath = %s\n\n" % (n, p)
    with open(path, "w") as f:
        f.write(text)
    chown_pg(path)


class Copy:
    """A copy of the module's repository (as [repo1]) with its own configuration file."""

    _n = [0]

    def __init__(self, s, tmp):
        Copy._n[0] += 1
        self.path = os.path.join(tmp, "repo%d" % Copy._n[0])
        shutil.copytree(s.repo, self.path, symlinks=True)
        for d, dirs, files in os.walk(self.path):
            for x in dirs + files:
                chown_pg(os.path.join(d, x))
        chown_pg(self.path)
        self.config = os.path.join(tmp, "verify%d.conf" % Copy._n[0])
        write_config(self.config, {1: self.path})

    def p(self, key):
        return os.path.join(self.path, key)


def verify(wv, cfg, *args):
    return bb(wv, cfg, "verify", *args, check=False)


def summaries(res):
    out = {}
    for m in re.finditer(r"^verify (repo\d+): checked (\d+) objects \((\d+) bytes, "
                         r"(\d+) backups?\), (\d+) problems?, [\d.]+ s$", res.stdout, re.M):
        out[m.group(1)] = {"objects": int(m.group(2)), "bytes": int(m.group(3)),
                           "backups": int(m.group(4)), "problems": int(m.group(5))}
    return out


def error_lines(res):
    return [l for l in res.stderr.splitlines() if "error:" in l and "hint:" not in l]


def lines_naming(res, key):
    return [l for l in error_lines(res) if key in l]


@pytest.fixture(scope="module")
def archive(basetemp, wv):
    d = module_dir(basetemp, "verify")
    s = State()
    s.dir = d
    s.repo = make_pg_dir(os.path.join(d, "repo"))
    s.config = os.path.join(d, "walvault.conf")
    write_config(s.config, {1: s.repo})
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.config), archive_timeout=0,
            autovacuum="off", max_wal_size="64MB", track_commit_timestamp="on")
    cfg = State()
    cfg.config = s.config
    s.cfg = cfg
    try:
        pg.start()
        pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
        pg.sql("create table big as select g, repeat(md5(g::text), 8) as pad "
               "from generate_series(1, 20000) g")
        commit_batch(pg, 0)
        s.b1 = take_backup(wv, cfg, pg)
        commit_batch(pg, 1)
        s.b2 = take_backup(wv, cfg, pg)
        commit_batch(pg, 2)
        pg.switch_wal_and_wait_archived()
        pg.stop()
        s.keys = tree_files(s.repo)
        yield s
    finally:
        pg.cleanup()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


_tmp_n = [0]


@pytest.fixture
def tmp(archive):
    _tmp_n[0] += 1
    d = make_pg_dir(os.path.join(archive.dir, "t%d" % _tmp_n[0]), 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def backup_files(s, bid):
    """The objects of a backup: bundles and files of their own."""
    pre = "backup/%s/" % bid
    return sorted(k for k in s.keys if k.startswith(pre) and not k.endswith("backup.manifest"))


def own_files(s, bid):
    return [k for k in backup_files(s, bid) if "/bundle/" not in k]


def bundles(s, bid):
    return [k for k in backup_files(s, bid) if "/bundle/" in k]


def manifest_files(copy, bid):
    """The manifest's file records as dicts (path, bundle, offset, stored-size, ...)."""
    out = []
    with open(copy.p("backup/%s/backup.manifest" % bid)) as f:
        for line in f:
            if line.startswith("file "):
                out.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return out


def biggest(copy, keys):
    return max(keys, key=lambda k: os.path.getsize(copy.p(k)))


def wal_segments(s):
    return sorted(k for k in s.keys if re.match(r"^wal/[0-9A-F]{16}/[0-9A-F]{24}$", k))


def manifest_field(copy, bid, field):
    with open(copy.p("backup/%s/backup.manifest" % bid)) as f:
        m = re.search(r"\b%s=(\S+)" % field, f.read())
    return m.group(1)


def test_clean_repository_verifies(archive, wv, tmp):
    c = Copy(archive, tmp)
    res = verify(wv, c)
    assert res.returncode == 0, res.stdout + res.stderr
    sm = summaries(res)
    assert list(sm) == ["repo1"], res.stdout
    nfiles = len(manifest_files(c, archive.b1)) + len(manifest_files(c, archive.b2))
    assert bundles(archive, archive.b1) and own_files(archive, archive.b1)
    nwal = len([k for k in archive.keys if k.startswith("wal/")])
    # every file (in a bundle or not), both manifests and every WAL object
    assert sm["repo1"]["objects"] == nfiles + 2 + nwal, (res.stdout, nfiles, nwal)
    assert sm["repo1"]["backups"] == 2
    assert sm["repo1"]["problems"] == 0
    assert sm["repo1"]["bytes"] > 1024 * 1024
    assert error_lines(res) == []


def test_flipped_backup_byte_is_named(archive, wv, tmp):
    c = Copy(archive, tmp)
    key = biggest(c, own_files(archive, archive.b2))
    size = os.path.getsize(c.p(key))
    flip_byte(c.p(key), OBJ_HEADER + (size - OBJ_HEADER - 128) // 2)
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    named = lines_naming(res, key)
    assert len(named) == 1, res.stderr
    assert "repo1" in named[0] and archive.b2 in named[0]
    assert summaries(res)["repo1"]["problems"] == 1
    assert "basebackup sync" in res.stderr


def test_flipped_byte_in_a_bundle_names_that_file(archive, wv, tmp):
    """A bundle is read once; the damaged file is named (path, bundle, offset), the other files
    in the same bundle still verify."""
    c = Copy(archive, tmp)
    members = [f for f in manifest_files(c, archive.b2) if "bundle" in f]
    victim = max(members, key=lambda f: int(f["stored-size"]))
    key = "backup/%s/bundle/%s" % (archive.b2, victim["bundle"])
    size = int(victim["stored-size"])
    flip_byte(c.p(key), int(victim["offset"]) + OBJ_HEADER + (size - OBJ_HEADER - 128) // 2)
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    named = lines_naming(res, key)
    assert len(named) == 1, res.stderr
    assert victim["path"] in named[0] and "offset %s" % victim["offset"] in named[0], named[0]
    assert archive.b2 in named[0]
    sm = summaries(res)["repo1"]
    assert sm["problems"] == 1
    clean = verify(wv, Copy(archive, tmp))
    assert summaries(clean)["repo1"]["objects"] == sm["objects"] + 1


def test_deleted_bundle_is_one_problem(archive, wv, tmp):
    c = Copy(archive, tmp)
    key = bundles(archive, archive.b1)[0]
    os.unlink(c.p(key))
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    named = lines_naming(res, key)
    assert len(named) == 1 and "missing" in named[0], res.stderr
    assert summaries(res)["repo1"]["problems"] == 1


def test_deleted_backup_object_is_missing(archive, wv, tmp):
    c = Copy(archive, tmp)
    key = own_files(archive, archive.b1)[0]
    os.unlink(c.p(key))
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    named = lines_naming(res, key)
    assert len(named) == 1 and "missing" in named[0], res.stderr


def test_flipped_wal_byte_is_named(archive, wv, tmp):
    c = Copy(archive, tmp)
    key = wal_segments(archive)[-1]
    flip_byte(c.p(key), OBJ_HEADER + 10)
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    named = lines_naming(res, key)
    assert len(named) == 1 and "repo1" in named[0], res.stderr


def test_missing_wal_of_a_backup_is_named(archive, wv, tmp):
    c = Copy(archive, tmp)
    seg = manifest_field(c, archive.b2, "start-segment")
    key = "wal/%s/%s" % (seg[:16], seg)
    os.unlink(c.p(key))
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    named = lines_naming(res, key)
    assert len(named) == 1 and "missing" in named[0] and archive.b2 in named[0], res.stderr


def test_several_problems_all_reported(archive, wv, tmp):
    c = Copy(archive, tmp)
    f1 = own_files(archive, archive.b1)
    flipped = biggest(c, f1)
    size = os.path.getsize(c.p(flipped))
    flip_byte(c.p(flipped), OBJ_HEADER + (size - OBJ_HEADER - 128) // 3)
    deleted = bundles(archive, archive.b2)[-1]
    os.unlink(c.p(deleted))
    wal = wal_segments(archive)[-1]
    flip_byte(c.p(wal), os.path.getsize(c.p(wal)) - 5)  # in the trailer
    res = verify(wv, c)
    assert res.returncode == 5, res.stdout + res.stderr
    for key in (flipped, deleted, wal):
        assert len(lines_naming(res, key)) == 1, (key, res.stderr)
    assert summaries(res)["repo1"]["problems"] == 3
    assert re.search(r"verify found 3 problems", res.stderr), res.stderr


def test_backup_option_limits_backup_checks(archive, wv, tmp):
    c = Copy(archive, tmp)
    key = backup_files(archive, archive.b1)[0]
    os.unlink(c.p(key))
    res = verify(wv, c, "--backup", archive.b2)
    assert res.returncode == 0, res.stdout + res.stderr
    assert summaries(res)["repo1"]["backups"] == 1
    res = verify(wv, c, "--backup", archive.b1)
    assert res.returncode == 5, res.stdout + res.stderr
    assert len(lines_naming(res, key)) == 1
    assert summaries(res)["repo1"]["backups"] == 1


def test_repo_option_checks_only_that_repository(archive, wv, tmp):
    good, bad = Copy(archive, tmp), Copy(archive, tmp)
    key = wal_segments(archive)[0]
    os.unlink(bad.p(key))  # a WAL object no backup needs may still be gone: damage a file too
    fkey = backup_files(archive, archive.b2)[0]
    os.unlink(bad.p(fkey))
    both = State()
    both.config = os.path.join(tmp, "both.conf")
    write_config(both.config, {1: good.path, 2: bad.path})
    res = verify(wv, both, "--repo", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert list(summaries(res)) == ["repo1"]
    res = verify(wv, both, "--repo", "2")
    assert res.returncode == 5, res.stdout + res.stderr
    assert list(summaries(res)) == ["repo2"]
    assert all("repo2" in l for l in error_lines(res)[:-1]), res.stderr
    assert len(lines_naming(res, fkey)) == 1
    res = verify(wv, both)
    assert res.returncode == 5
    assert sorted(summaries(res)) == ["repo1", "repo2"]
    assert summaries(res)["repo1"]["problems"] == 0
    assert summaries(res)["repo2"]["problems"] >= 1


@pytest.mark.parametrize("args,code,msg", [
    (["--backup", "20000101T000000Z"], 1, "no such backup"),
    (["--backup", "../x"], 2, "not a backup id"),
    (["--repo", "7"], 2, "no [repo7]"),
    (["--repo", "x"], 2, "not a repository number"),
    (["--bogus"], 2, "unknown or incomplete option"),
    (["extra"], 2, "unexpected argument"),
])
def test_usage_errors(archive, wv, args, code, msg):
    res = verify(wv, archive.cfg, *args)
    assert res.returncode == code, res.stdout + res.stderr
    assert msg in res.stderr
    assert len([l for l in res.stderr.splitlines() if "hint:" not in l]) == 1, res.stderr
