"""Off-site repositories end to end: PostgreSQL archiving with wal-push into S3 (Ceph RGW, over
HTTP and over HTTPS with the fixture's CA) and into a backup server over SSH, a walvault backup,
and a point-in-time restore from that repository alone, checked row by row.

And the failures an off-site store brings: a wrong S3 secret (a clear authentication error,
nothing stored); the store unreachable during archiving (a fault proxy that resets, then
closes every connection at once: wal-push fails, PostgreSQL retries, nothing is lost once the store is
back and a restore reaches the last commit); connections cut or reset mid-upload (retried to
success, or a clean failure) with never a partial object in the bucket nor an open multipart
upload; a backup whose files are larger than one multipart part (8 MiB), stored and restored.
With archive_async the background pusher stores each WAL object with one conditional PUT and no
HEAD before it, also in a repository it creates itself (the gateway's access log tells); where
the store refuses that probe, it keeps a HEAD before each PUT and loses nothing.

The helpers at the top (configs for each store, the archive -> backup -> PITR cycle) are shared
with test_multi_repo.py.
"""

import hashlib
import os
import re
import shutil
import time
import uuid

import pytest

from faultproxy import FaultProxy
from s3_server import s3_server  # noqa: F401 - fixture
from ssh_server import remote_helper, ssh_server  # noqa: F401 - fixtures
from test_restore_pitr import Restorer, bb, commit_batch, connstr, take_backup, utc
from utils import Postgres, chown_pg, make_pg_dir, popen, read_bytes, run, wait_until

PART = 8 * 1024 * 1024


# --- configuration of each store --------------------------------------------------------------

def secret_file(d, secret, name="s3.secret"):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(secret + "\n")
    chown_pg(p)
    os.chmod(p, 0o600)
    return p


def s3_section(s3, bucket, d, index=1, *, https=False, endpoint=None, secret=None,
               prefix="pg"):
    lines = ["[repo%d]" % index, "type = s3",
             "endpoint = %s" % (endpoint or (s3.endpoint_https if https else s3.endpoint_http)),
             "region = %s" % s3.region, "bucket = %s" % bucket, "prefix = %s" % prefix,
             "uri_style = path", "access_key_id = %s" % s3.access_key,
             "secret_access_key_file = %s" % secret_file(d, secret or s3.secret_key,
                                                         "s3-%d.secret" % index)]
    if https:
        # the fixture's CA lies in a directory only root reads: a copy postgres can read
        ca = os.path.join(d, "s3-ca.crt")
        shutil.copy(s3.ca_file, ca)
        os.chmod(ca, 0o644)
        lines.append("ca_file = %s" % ca)
    return "\n".join(lines) + "\n"


def global_section(compress="lz4"):
    """RGW answers each request after some milliseconds: eight copies in flight, not two."""
    return "[global]\nprocess_max = 8\ncompress = %s\n" % compress


def posix_section(path, index=1):
    return "[repo%d]\ntype = posix\npath = %s\n" % (index, path)


class Conf:
    """A configuration file (and the Repo-like object the restore helpers want)."""

    def __init__(self, path, sections, glob=""):
        self.config = path
        with open(path, "w") as f:
            f.write(glob + "\n" + "\n".join(sections))
        chown_pg(path)


def new_bucket(s3):
    name = "wv-" + uuid.uuid4().hex[:12]
    s3.make_bucket(name)
    return name


def no_uploads_left(s3, bucket):
    r = s3.client().request("GET", bucket, query=[("uploads", "")])
    assert r.status == 200, r
    assert b"<Upload>" not in r.body, r.body[:2000]


# --- the archive -> backup -> PITR cycle --------------------------------------------------------

def start_primary(d, wv, conf, name="primary", archive_env=""):
    pg = Postgres(d, name).initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=archive_env + wv.archive_command(conf.config),
            archive_timeout=0, track_commit_timestamp="on", autovacuum="off",
            max_wal_size="64MB")
    pg.start()
    pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
    return pg


def batches_in(pg):
    return {b: n for b, n in pg.sql("select batch, count(*) from t group by batch")}


def cycle(d, wv, conf, big=False, restore_args=(), name="cycle"):
    """Archive, back up and restore to a time between two commits; returns the primary (stopped)
    and what was checked. big: a table whose file is larger than one multipart part."""
    pg = start_primary(d, wv, conf, name="primary-" + name)
    restorer = Restorer(wv, conf, d)
    ok = False
    try:
        if big:
            # about 20 MiB of incompressible rows: one relation file of more than two parts
            pg.sql("create table big (x text)")
            pg.sql("insert into big select string_agg(md5(random()::text), '') "
                   "from generate_series(1, 8) g, generate_series(1, 80000) r group by r")
            size = pg.sql_value("select pg_relation_size('big')")
            assert size > 2 * PART, size
            big_sum = pg.sql_value("select md5(string_agg(x, ',' order by x)) from big")
        commit_batch(pg, 0)
        bid = take_backup(wv, conf, pg)
        time.sleep(1.1)  # the window starts after the backup's STOP TIME (whole seconds)
        b1 = commit_batch(pg, 1)
        time.sleep(0.2)
        b2 = commit_batch(pg, 2)
        pg.switch_wal_and_wait_archived()
        assert pg.archiver_stats()["failed_count"] == 0, pg.log()[-3000:]
        target = utc((b1["commit"] + b2["commit"]) / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rpg = restorer.restore_and_start(name, "--to", target, *restore_args)
        assert batches_in(rpg) == {0: 10, 1: 10}, batches_in(rpg)
        if big:
            assert rpg.sql_value("select md5(string_agg(x, ',' order by x)) from big") == big_sum
        out = rpg.restore_result.stdout + rpg.restore_result.stderr
        assert bid in out, out
        rpg.stop()
        ok = True
        return pg, bid, out
    finally:
        restorer.cleanup(dump=not ok)
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["s3-http-big", "s3-https", "ssh"])
def test_archive_backup_pitr_cycle(store, s3_server, ssh_server, remote_helper, wv,  # noqa: F811
                                   workdir):
    glob = global_section("none" if store == "s3-http-big" else "lz4")
    if store.startswith("s3"):
        bucket = new_bucket(s3_server)
        section = s3_section(s3_server, bucket, workdir, https=store == "s3-https")
    else:
        path = make_pg_dir(os.path.join(workdir, "backup-server-repo"), 0o750)
        section = ssh_server.repo_section(path, remote_helper)
    conf = Conf(os.path.join(workdir, "walvault.conf"), [section], glob)
    cycle(workdir, wv, conf, big=store == "s3-http-big", name=store)
    if store.startswith("s3"):
        keys = s3_server.list_keys(bucket, "pg/")
        assert "pg/walvault.repo" in keys, keys
        assert any(re.match(r"pg/wal/0000000100000000/[0-9A-F]{24}$", k) for k in keys), keys
        assert any(k.endswith("/backup.manifest") for k in keys), keys
        assert not any("backup.lock" in k for k in keys), keys
        no_uploads_left(s3_server, bucket)
        if store == "s3-http-big":
            sizes = [o["size"] for o in s3_server.client().list_objects(bucket, "pg/backup/")]
            assert max(sizes) > 2 * PART, "no backup object larger than two parts"
    else:
        files = [os.path.relpath(os.path.join(dd, f), path) for dd, _, fs in os.walk(path)
                 for f in fs]
        assert "walvault.repo" in files and any(f.endswith("backup.manifest") for f in files)
        assert not [f for f in files if ".wvtmp-" in f], files


def test_wrong_secret_is_an_auth_error_and_nothing_stored(s3_server, wv, workdir,  # noqa: F811
                                                          wal_samples):
    bucket = new_bucket(s3_server)
    conf = Conf(os.path.join(workdir, "walvault.conf"),
                [s3_section(s3_server, bucket, workdir, secret="not-the-secret-0123456789")])
    res = wv.push(wal_samples.a_segments[0], config=conf.config, cwd=workdir)
    assert res.returncode != 0, res.stderr
    assert re.search(r"repo1.*(authentication|signature|access denied|credentials)",
                     res.stderr, re.I), res.stderr
    assert "not-the-secret" not in res.stderr + res.stdout
    assert s3_server.list_keys(bucket) == []
    res = wv.fetch("000000010000000000000001", os.path.join(workdir, "x"), config=conf.config,
                   cwd=workdir)
    assert res.returncode >= 126, (res.returncode, res.stderr)
    assert not os.path.exists(os.path.join(workdir, "x"))


def expected_segments(first, last):
    """Segment names first..last on timeline 1 (1 MiB segments: 4096 per log id)."""
    a, b = int(first[8:16], 16) * 4096 + int(first[16:], 16), \
        int(last[8:16], 16) * 4096 + int(last[16:], 16)
    return ["00000001%08X%08X" % (n // 4096, n % 4096) for n in range(a, b + 1)]


def test_store_down_during_archiving_nothing_lost(s3_server, wv, workdir):  # noqa: F811
    bucket = new_bucket(s3_server)
    with FaultProxy("127.0.0.1", s3_server.http_port, max_seconds=280) as proxy:
        conf = Conf(os.path.join(workdir, "walvault.conf"),
                    [s3_section(s3_server, bucket, workdir, endpoint=proxy.url("http"))],
                    global_section())
        pg = start_primary(workdir, wv, conf, archive_env="WALVAULT_S3_TIMEOUT=3 ")
        restorer = Restorer(wv, conf, workdir)
        ok = False
        try:
            commit_batch(pg, 0)
            bid = take_backup(wv, conf, pg)
            first = pg.switch_wal_and_wait_archived()
            for k, mode in enumerate(("reset", "cut"), start=1):
                failed = pg.archiver_stats()["failed_count"]
                proxy.set_mode(mode, after=0)
                proxy.drop_connections()
                commit_batch(pg, k)
                name = pg.sql_value("select pg_walfile_name(pg_switch_wal())")
                wait_until(lambda: pg.archiver_stats()["failed_count"] > failed, timeout=90,
                           what="wal-push to fail while the store is %s" % mode)
                assert pg.archiver_stats()["last_failed_wal"] == name
                log = pg.log()
                assert re.search(r"wal-push: .*repo1.*(could not reach|unreachable|timed out|connect|reset)", log,
                                 re.I), log[-4000:]
                proxy.set_mode("pass")
                pg.sql("select pg_reload_conf()")  # wakes the archiver at once
                pg.wait_archived(name, timeout=120)
            commit_batch(pg, 3)
            last = pg.switch_wal_and_wait_archived()
            keys = set(s3_server.list_keys(bucket, "pg/wal/"))
            for seg in expected_segments(first, last):
                assert "pg/wal/%s/%s" % (seg[:16], seg) in keys, seg
            no_uploads_left(s3_server, bucket)
            pg.stop()
            rpg = restorer.restore_and_start("after-outage", "--backup", bid)
            assert batches_in(rpg) == {0: 10, 1: 10, 2: 10, 3: 10}, batches_in(rpg)
            rpg.stop()
            ok = True
        finally:
            restorer.cleanup(dump=not ok)
            if not ok:
                print("\n----- primary log -----\n%s" % pg.log()[-20000:])
            pg.cleanup()


@pytest.mark.parametrize("case", ["cut-single", "reset-multipart", "reset-always"])
def test_connection_faults_mid_upload(case, s3_server, wv, workdir, wal_samples):  # noqa: F811
    bucket = new_bucket(s3_server)
    src = wal_samples.big_segment if case != "cut-single" else wal_samples.a_segments[1]
    name = os.path.basename(src)
    key = "pg/wal/%s/%s" % (name[:16], name)
    with FaultProxy("127.0.0.1", s3_server.http_port, max_seconds=200) as proxy:
        conf = Conf(os.path.join(workdir, "walvault.conf"),
                    [s3_section(s3_server, bucket, workdir, endpoint=proxy.url("http"))],
                    global_section("none"))
        mode = "cut" if case == "cut-single" else "reset"
        after = 300000 if case == "cut-single" else 5 * 1024 * 1024  # inside the first part
        proxy.set_mode(mode, after=after, direction="up")
        env = {"WALVAULT_S3_TIMEOUT": "8" if case == "reset-always" else "60"}
        p = popen(wv.cmd("wal-push", src, config=conf.config), env=env, cwd=workdir)
        if case != "reset-always":
            wait_until(lambda: proxy.stats()[mode] >= 1, timeout=60, what="a %s" % mode)
            # while the proxy is still hostile, nothing partial is visible under the key
            assert key not in s3_server.list_keys(bucket)
            proxy.set_mode("pass")
        out, err = p.communicate(timeout=120)
        if case == "reset-always":
            assert p.returncode != 0, err
            assert re.search(r"repo1", err), err
            assert proxy.stats()["reset"] >= 2
            assert key not in s3_server.list_keys(bucket)
            no_uploads_left(s3_server, bucket)
            return
        # retried to success (by the driver, which logs it, or by libcurl itself when the dead
        # connection was a reused one)
        assert p.returncode == 0, err
    dest = os.path.join(workdir, name)
    plain = Conf(os.path.join(workdir, "direct.conf"), [s3_section(s3_server, bucket, workdir)])
    res = wv.fetch(name, dest, config=plain.config, cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(read_bytes(dest)).digest() == hashlib.sha256(read_bytes(src)).digest()
    # the segment, and its transaction id range when it holds commits: nothing partial left
    wal = sorted(k for k in s3_server.list_keys(bucket) if "/wal/" in k)
    assert wal in ([key], [key, key + ".xid"]), wal
    no_uploads_left(s3_server, bucket)


def test_backup_upload_failure_leaves_no_backup(s3_server, wv, workdir):  # noqa: F811
    """Backup files are uploaded by threads while the next files are compressed; when the store
    starts refusing every connection mid-backup the backup fails naming the repository, no
    manifest is written, and the next backup (store back) succeeds and removes the leftovers."""
    bucket = new_bucket(s3_server)
    archive = Conf(os.path.join(workdir, "archive.conf"),
                   [s3_section(s3_server, bucket, workdir)], global_section())
    pg = start_primary(workdir, wv, archive)
    ok = False
    with FaultProxy("127.0.0.1", s3_server.http_port, max_seconds=280) as proxy:
        conf = Conf(os.path.join(workdir, "backup.conf"),
                    [s3_section(s3_server, bucket, workdir, endpoint=proxy.url("http"))],
                    global_section())
        try:
            # some incompressible data, so that the backup lasts while the proxy turns hostile
            pg.sql("create table filler (x text)")
            pg.sql("insert into filler select string_agg(md5(random()::text), '') "
                   "from generate_series(1, 8) g, generate_series(1, 20000) r group by r")
            commit_batch(pg, 0)
            proxy.set_mode("delay", ms=3)
            p = popen(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                             config=conf.config), env={"WALVAULT_S3_TIMEOUT": "3"}, cwd=workdir)
            wait_until(lambda: any("/backup/" in k and not k.endswith(".lock")
                                   for k in s3_server.list_keys(bucket, "pg/backup/")),
                       timeout=60, what="the first backup file in the bucket")
            proxy.set_mode("reset", after=0)
            out, err = p.communicate(timeout=120)
            assert p.returncode != 0, out + err
            errors = [ln for ln in err.splitlines() if ": error: " in ln and "hint:" not in ln]
            assert len(errors) == 1 and "repo1" in errors[0], err
            print(errors[0])
            keys = s3_server.list_keys(bucket, "pg/backup/")
            assert not [k for k in keys if k.endswith("/backup.manifest")], keys
            failed_ids = {k.split("/")[2] for k in keys}

            proxy.set_mode("pass")
            bid = take_backup(wv, conf, pg)
            keys = s3_server.list_keys(bucket, "pg/backup/")
            assert {k.split("/")[2] for k in keys} == {bid}, (failed_ids, keys)
            assert "pg/backup/%s/backup.manifest" % bid in keys
            no_uploads_left(s3_server, bucket)
            ok = True
        finally:
            if not ok:
                print("\n----- primary log -----\n%s" % pg.log()[-20000:])
            pg.cleanup()


def test_wal_push_rules_on_s3(s3_server, wv, workdir, wal_samples):  # noqa: F811
    """On an object store wal-push does not ask first whether the segment exists: the cluster
    check runs while the file is compressed and the conditional write finds an archived copy.
    The repository rules hold all the same: an identical re-push succeeds, different content under
    an archived name is refused and the stored object is untouched, another cluster's WAL is
    refused naming both systems, and nothing of a refused push is visible."""
    bucket = new_bucket(s3_server)
    conf = Conf(os.path.join(workdir, "walvault.conf"), [s3_section(s3_server, bucket, workdir)],
                global_section())
    seg = wal_samples.a_segments[0]
    name = os.path.basename(seg)
    key = "pg/wal/%s/%s" % (name[:16], name)
    res = wv.push(seg, config=conf.config, cwd=workdir)
    assert res.returncode == 0, res.stderr
    stored = s3_server.get_object(bucket, key)

    res = wv.push(seg, config=conf.config, cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert "already archived with identical content" in res.stderr, res.stderr

    other_dir = make_pg_dir(os.path.join(workdir, "other"))
    other = os.path.join(other_dir, name)
    data = bytearray(read_bytes(seg))
    data[200000:200008] = b"\xff" * 8  # the same segment name and header, other content
    with open(other, "wb") as f:
        f.write(bytes(data))
    chown_pg(other)
    res = wv.push(other, config=conf.config, cwd=workdir)
    assert res.returncode == 6, res.stderr
    assert "already archived with different content" in res.stderr, res.stderr
    assert s3_server.get_object(bucket, key) == stored

    before = {k: s3_server.get_object(bucket, k) for k in s3_server.list_keys(bucket)}
    for b in wal_samples.b_segments[:3]:
        res = wv.push(b, config=conf.config, cwd=workdir)
        assert res.returncode == 7, res.stderr
        assert str(wal_samples.a_sysid) in res.stderr and str(wal_samples.b_sysid) in res.stderr
    assert {k: s3_server.get_object(bucket, k) for k in s3_server.list_keys(bucket)} == before
    no_uploads_left(s3_server, bucket)


def async_s3_primary(s3_server, wv, workdir, pg_factory):
    """A fresh bucket's repository archived into by the background pusher (process_max = 2) of a
    1 MiB-segment primary whose archive_command keeps copies aside (test_async_archive)."""
    from test_async_archive import start_async_primary
    bucket = new_bucket(s3_server)
    spool = make_pg_dir(os.path.join(workdir, "spool"))
    conf = Conf(os.path.join(workdir, "walvault.conf"), [s3_section(s3_server, bucket, workdir)],
                "[global]\nprocess_max = 2\narchive_async = on\nspool_path = %s\n" % spool)
    conf.spool = spool
    pg = start_async_primary(workdir, wv, conf)
    pg_factory.servers.append(pg)
    pg.sql("create table t (x int)")
    return bucket, conf, pg


def archive_segments(pg, n):
    """Fill and switch n segments, wait until all are archived; the archived names."""
    from test_async_archive import archived_names, wait_all_archived
    for _ in range(n):
        pg.sql("insert into t select generate_series(1, 5000)")
        pg.sql("select pg_switch_wal()")
    _, stats = wait_all_archived(pg)
    assert stats["failed_count"] == 0, stats
    return archived_names(pg)


def test_async_pusher_stores_wal_with_one_put_each(s3_server, wv, workdir,  # noqa: F811
                                                   pg_factory):
    """The background pusher learns once that the store honors If-None-Match (here in a
    repository it creates itself: right after it writes walvault.repo) and from then on stores
    each WAL object with the conditional PUT alone, no HEAD before it. Every segment PostgreSQL
    was told is archived fetches identically."""
    from test_async_archive import SEG, check_fetches_identically
    bucket, conf, pg = async_s3_primary(s3_server, wv, workdir, pg_factory)
    names = archive_segments(pg, 12)
    segs = [n for n in names if SEG.match(n)]
    assert len(segs) >= 12, "too few segments to be a test: %d" % len(segs)

    wal = "/%s/pg/wal/" % bucket
    wal_puts = lambda: [p for m, p in s3_server.requests(bucket)  # noqa: E731
                        if m == "PUT" and p.startswith(wal) and SEG.match(p.rsplit("/", 1)[1])]
    wait_until(lambda: len(wal_puts()) >= len(segs), timeout=30,
               what="the gateway's log of every segment's PUT")
    heads = [p for m, p in s3_server.requests(bucket) if m == "HEAD" and p.startswith(wal)]
    # at most the pushes already under way when walvault.repo was written (process_max = 2)
    assert len(heads) <= 2, (len(segs), heads)
    assert check_fetches_identically(wv, conf, pg, workdir, names) == len(names)


def test_async_pusher_keeps_the_head_where_the_probe_is_refused(  # noqa: F811
        s3_server, wv, workdir, pg_factory):
    """A store that refuses the probe (here a bucket policy forbids writing walvault.repo once
    the repository exists) costs only the saving: a new pusher archives every segment as before,
    each PUT after a HEAD, and nothing fails."""
    from test_async_archive import SEG, check_fetches_identically, pusher_pid, wait_all_archived
    bucket, conf, pg = async_s3_primary(s3_server, wv, workdir, pg_factory)
    first, _ = wait_all_archived(pg)  # the repository exists: walvault.repo written
    pid = pusher_pid(conf, pg)
    if pid:
        os.kill(pid, 15)
        wait_until(lambda: pusher_pid(conf, pg) is None, timeout=30, what="the pusher's exit")
    policy = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", '
              '"Action": "s3:PutObject", "Resource": "arn:aws:s3:::%s/pg/walvault.repo"}]}'
              % bucket)
    r = s3_server.client().request("PUT", bucket, query=[("policy", "")], body=policy.encode())
    assert r.status in (200, 204), r
    assert s3_server.client().request("PUT", bucket, "pg/walvault.repo",
                                      body=b"x").status == 403

    names = archive_segments(pg, 6)
    later = [n for n in names if SEG.match(n) and n > first]
    assert len(later) >= 6, "too few segments to be a test: %d" % len(later)
    wal = "/%s/pg/wal/" % bucket
    heads = lambda: {p.rsplit("/", 1)[1] for m, p in s3_server.requests(bucket)  # noqa: E731
                     if m == "HEAD" and p.startswith(wal)}
    wait_until(lambda: set(later) <= heads(), timeout=30,
               what="a HEAD before each later segment's PUT in the gateway's log")
    assert check_fetches_identically(wv, conf, pg, workdir, names) == len(names)
    assert "wal-push: error" not in pg.log(), pg.log()[-3000:]
