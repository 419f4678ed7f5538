"""Several repositories at once: a posix directory, a backup server over SSH and an S3 bucket.

One cluster per module archives into the trio and takes one backup, which every repository gets in
one pass (the three hold the same objects, byte for byte). A point-in-time restore picks repo1 by
default and each other repository with --repo N. sync copies between drivers (s3 -> posix,
posix -> s3) and gives byte-identical repositories. wal-fetch falls back to the next repository
when the first one's copy is corrupt, missing, or the store is unreachable, and fails (never
"not found") when no repository holds a good copy.
"""

import os
import re
import shutil
import time

import pytest

from faultproxy import FaultProxy
from s3_server import s3_server  # noqa: F401 - fixture
from ssh_server import remote_helper, ssh_server  # noqa: F401 - fixtures
from test_offsite import (Conf, batches_in, global_section, new_bucket, no_uploads_left,
                          posix_section, s3_section, start_primary)
from test_restore_pitr import Restorer, commit_batch, module_dir, take_backup, utc
from utils import OBJ_HEADER, flip_byte, make_pg_dir, read_bytes, run, tree_files

# One worker runs a module (pytest-xdist --dist loadgroup): its cluster is built once.
pytestmark = pytest.mark.xdist_group("multi-repo")


def posix_objects(path):
    return {f for f in tree_files(path) if ".wvtmp-" not in f}


class Trio:
    pass


@pytest.fixture(scope="module")
def trio(basetemp, wv, s3_server, ssh_server, remote_helper):  # noqa: F811
    d = module_dir(basetemp, "trio")
    t = Trio()
    t.dir = d
    t.p = make_pg_dir(os.path.join(d, "repo-posix"))
    t.ssh = make_pg_dir(os.path.join(d, "repo-ssh"), 0o750)
    t.bucket = new_bucket(s3_server)
    t.conf = Conf(os.path.join(d, "walvault.conf"),
                  [posix_section(t.p, 1), ssh_server.repo_section(t.ssh, remote_helper, 2),
                   s3_section(s3_server, t.bucket, d, 3)], global_section())
    pg = start_primary(d, wv, t.conf)
    t.restorer = Restorer(wv, t.conf, d)
    ok = False
    try:
        commit_batch(pg, 0)
        t.backup = take_backup(wv, t.conf, pg)
        time.sleep(1.1)  # the window starts after the backup's STOP TIME (whole seconds)
        b1 = commit_batch(pg, 1)
        time.sleep(0.2)
        b2 = commit_batch(pg, 2)
        pg.switch_wal_and_wait_archived()
        t.target = utc((b1["commit"] + b2["commit"]) / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        t.stats = pg.archiver_stats()
        pg.stop()
        ok = True
        yield t
    finally:
        t.restorer.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()
        s3_server.remove_bucket(t.bucket)
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


def test_every_repository_holds_the_same_objects(trio, s3_server):  # noqa: F811
    assert trio.stats["failed_count"] == 0
    posix = posix_objects(trio.p)
    assert "backup/%s/backup.manifest" % trio.backup in posix
    assert posix_objects(trio.ssh) == posix
    keys = {k[len("pg/"):] for k in s3_server.list_keys(trio.bucket, "pg/")}
    assert keys == posix
    for k in sorted(posix)[::7]:
        assert read_bytes(os.path.join(trio.ssh, k)) == read_bytes(os.path.join(trio.p, k)), k
        assert s3_server.get_object(trio.bucket, "pg/" + k) == read_bytes(
            os.path.join(trio.p, k)), k
    no_uploads_left(s3_server, trio.bucket)


@pytest.mark.parametrize("repo", [None, 2, 3])
def test_pitr_from_each_repository(trio, repo):
    args = ("--to", trio.target) + (("--repo", str(repo)) if repo else ())
    pg = trio.restorer.restore_and_start("repo%s" % (repo or "-default"), *args)
    assert batches_in(pg) == {0: 10, 1: 10}, batches_in(pg)
    log = pg.restore_result.stderr
    assert re.search(r"restoring backup %s .* from repo%d$" % (trio.backup, repo or 1), log,
                     re.M), log
    pg.stop()


def sync(wv, conf, a, b, check=0):
    res = run(wv.cmd("basebackup", "sync", "--from", str(a), "--to", str(b), config=conf.config),
              check=False, timeout=600)
    assert res.returncode == check, (res.returncode, res.stdout, res.stderr)
    m = re.search(r"copied (\d+) objects? .* skipped (\d+) already there, (\d+) conflict",
                  res.stdout)
    assert m, res.stdout + res.stderr
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_sync_between_drivers(trio, wv, s3_server, workdir):  # noqa: F811
    # s3 -> an empty posix repository: byte-identical to the posix member of the trio
    seed = make_pg_dir(os.path.join(workdir, "seed"))
    bucket = new_bucket(s3_server)
    try:
        conf = Conf(os.path.join(workdir, "w.conf"),
                    [posix_section(trio.p, 1), s3_section(s3_server, trio.bucket, workdir, 3),
                     posix_section(seed, 4), s3_section(s3_server, bucket, workdir, 5)],
                    global_section())
        n = len(posix_objects(trio.p))
        copied, skipped, conflicts = sync(wv, conf, 3, 4)
        assert (copied, conflicts) == (n, 0), (copied, skipped, conflicts, n)
        assert posix_objects(seed) == posix_objects(trio.p)
        for k in posix_objects(seed):
            assert read_bytes(os.path.join(seed, k)) == read_bytes(os.path.join(trio.p, k)), k
        assert sync(wv, conf, 3, 4)[0] == 0
        # posix -> an empty bucket
        copied, _, conflicts = sync(wv, conf, 1, 5)
        assert (copied, conflicts) == (n, 0)
        assert {k[len("pg/"):] for k in s3_server.list_keys(bucket, "pg/")} == \
            posix_objects(trio.p)
        assert sync(wv, conf, 1, 5)[0] == 0
        no_uploads_left(s3_server, bucket)
    finally:
        s3_server.remove_bucket(bucket)


# --- wal-fetch falls back --------------------------------------------------------------------

def key_of(name):
    return "wal/%s/%s" % (name[:16], name)


@pytest.fixture
def pair(wv, workdir, wal_samples):
    """Two posix repositories holding the same three segments."""
    r1 = make_pg_dir(os.path.join(workdir, "r1"))
    r2 = make_pg_dir(os.path.join(workdir, "r2"))
    conf = Conf(os.path.join(workdir, "both.conf"), [posix_section(r1, 1), posix_section(r2, 2)])
    segs = wal_samples.a_segments[:3]
    for s in segs:
        res = wv.push(s, config=conf.config, cwd=workdir)
        assert res.returncode == 0, res.stderr
    return r1, r2, conf, segs


@pytest.mark.parametrize("damage", ["flip-payload", "flip-trailer", "truncate", "missing"])
def test_fetch_falls_back_when_repo1_copy_is_bad(pair, wv, workdir, damage):
    r1, r2, conf, segs = pair
    name = os.path.basename(segs[1])
    obj = os.path.join(r1, key_of(name))
    if damage == "flip-payload":
        flip_byte(obj, OBJ_HEADER + 10)
    elif damage == "flip-trailer":
        flip_byte(obj, os.path.getsize(obj) - 60)
    elif damage == "truncate":
        with open(obj, "r+b") as f:
            f.truncate(os.path.getsize(obj) // 2)
    else:
        os.remove(obj)
    dest = os.path.join(workdir, "dest")
    res = wv.fetch(name, dest, config=conf.config, cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert read_bytes(dest) == read_bytes(segs[1])
    assert "from repo2" in res.stderr, res.stderr
    if damage != "missing":
        assert re.search(r"repo1.*%s.*corrupt.*trying the next repository" % name, res.stderr,
                         re.I), res.stderr

    # with repo2's copy damaged too, nothing good is left: an error, not "not found"
    flip_byte(os.path.join(r2, key_of(name)), OBJ_HEADER + 10)
    os.remove(dest)
    res = wv.fetch(name, dest, config=conf.config, cwd=workdir)
    assert res.returncode >= 126, (res.returncode, res.stderr)
    assert not os.path.exists(dest)


def test_fetch_falls_back_when_repo1_is_unreachable(s3_server, wv, workdir,  # noqa: F811
                                                    wal_samples):
    bucket = new_bucket(s3_server)
    r2 = make_pg_dir(os.path.join(workdir, "r2"))
    try:
        with FaultProxy("127.0.0.1", s3_server.http_port, max_seconds=120) as proxy:
            conf = Conf(os.path.join(workdir, "w.conf"),
                        [s3_section(s3_server, bucket, workdir, 1, endpoint=proxy.url("http")),
                         posix_section(r2, 2)])
            seg = wal_samples.a_segments[0]
            name = os.path.basename(seg)
            assert wv.push(seg, config=conf.config, cwd=workdir).returncode == 0
            assert "pg/" + key_of(name) in s3_server.list_keys(bucket)
            env = {"WALVAULT_S3_TIMEOUT": "2"}
            for mode in ("reset", "cut"):
                proxy.set_mode(mode, after=0)
                dest = os.path.join(workdir, "dest-" + mode)
                res = run(wv.cmd("wal-fetch", name, dest, config=conf.config), check=False,
                          env=env, cwd=workdir)
                assert res.returncode == 0, res.stderr
                assert read_bytes(dest) == read_bytes(seg)
                assert re.search(r"repo1.*(could not reach|unreachable).*trying the next", res.stderr,
                                 re.I), res.stderr
                assert "from repo2" in res.stderr, res.stderr
            # a name that neither has: repo1 unreachable is an error, not "not found"
            res = run(wv.cmd("wal-fetch", "000000010000000000000099", os.path.join(workdir, "n"),
                             config=conf.config), check=False, env=env, cwd=workdir)
            assert res.returncode >= 126, (res.returncode, res.stderr)
            proxy.set_mode("pass")
            res = run(wv.cmd("wal-fetch", "000000010000000000000099", os.path.join(workdir, "n"),
                             config=conf.config), check=False, env=env, cwd=workdir)
            assert res.returncode == 1, (res.returncode, res.stderr)
    finally:
        s3_server.remove_bucket(bucket)
