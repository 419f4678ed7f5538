"""Copying between repositories when either side is encrypted: basebackup sync and the catch-up.

One PostgreSQL 15 cluster archives into a plain posix repository (repo1) and takes a backup there (a
table of 3 MiB stored as chunks, the small files in bundles); its table holds a marker string. Then
the migration path of docs/encryption.md ("Turning it on"): `basebackup sync --from 1 --to 2` into a
new repository with a symmetric key, and `--to 3` with a public key (the private key present). Each
copy holds the marker in none of its bytes (nor the restore point's name), verifies (`basebackup
verify --repo M`), copies nothing when run again (for the public-key one even on a host holding only
the public key: the keyed digest recognises what is there), and restores alone to a time between two
commits with exactly the rows committed before it; the same into an S3 bucket (Ceph RGW). Copying an
encrypted repository into a plain one is refused in one line and writes nothing. A dry run into a
new repository writes nothing (not even a key record); a WAL object an encrypted target holds with
other content is a conflict left as it is, the rest still copied; bundles left by a sync stopped
before the manifest are named with what to move away, and the sync after that copies the backup.
Archiving into two encrypted repositories, the required = no one away for a while: it catches up by
itself (each object encoded again under its own keys) and then restores alone. On a database host
with only the public key the catch-up cannot decode, says so naming the sync to run, and that sync
on a host with the private key copies the files and clears the lag.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from s3_server import s3_server  # noqa: F401 - fixture
from test_lag import expire_backoff, lag_records
from test_offsite import new_bucket, s3_section
from test_restore_pitr import (Restorer, bb, commit_batch, connstr, finish_module, iso,
                               module_dir, take_backup)
from test_wal_push import _modified_copy
from utils import Postgres, chown_pg, make_pg_dir, read_bytes, run, tree_files, wait_until

pytestmark = pytest.mark.xdist_group("encryption_sync")

MARKER = "wv-encsync-marker-5d1e7a"
RP_NAME = "encsync restore point 8c2f"


class Cfg:
    """A configuration: [global] lines, then posix [repoN] sections (path, extra lines)."""

    def __init__(self, path, repos, glob=""):
        self.config = path
        text = "[global]\n" + glob + "\n"
        for n, spec in sorted(repos.items()):
            p, extra = spec if isinstance(spec, tuple) else (spec, "")
            text += "[repo%d]\ntype = posix\npath = %s\n%s\n" % (n, p, extra)
        with open(path, "w") as f:
            f.write(text)
        chown_pg(path)


class TextCfg:
    """A configuration written as it is."""

    def __init__(self, path, text):
        self.config = path
        with open(path, "w") as f:
            f.write(text)
        chown_pg(path)


def key_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    chown_pg(path)
    os.chmod(path, 0o600)
    return path


def x25519_pair(d):
    priv = os.path.join(d, "repo.pem")
    pub = os.path.join(d, "repo.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", priv], check=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True)
    for p in (priv, pub):
        chown_pg(p)
        os.chmod(p, 0o600)
    return priv, pub


def objects(path):
    return {f for f in tree_files(path) if ".wvtmp-" not in f}


def sync(wv, cfg, *args):
    return run(wv.cmd("basebackup", "sync", *args, config=cfg.config), check=False, timeout=600)


def summary(res):
    m = re.search(r"^sync repo\d -> repo\d: copied (\d+) objects? \(([^,]+), (\d+) backups?\), "
                  r"skipped (\d+) already there, (\d+) conflicts?, [\d.]+ s$", res.stdout, re.M)
    assert m, "no summary line:\n" + res.stdout + res.stderr
    return {"copied": int(m.group(1)), "backups": int(m.group(3)), "skipped": int(m.group(4)),
            "conflicts": int(m.group(5))}


def assert_sealed(path, *secrets):
    """No file of the repository holds any of the secrets, in any byte."""
    files = objects(path)
    assert files
    for f in files:
        data = read_bytes(os.path.join(path, f))
        for s in secrets:
            assert s.encode() not in data, "%s holds %r in plain" % (f, s)


def rows(pg):
    return {(b, n) for b, n in pg.sql("select batch, count(*) from t group by batch")}


class State:
    pass


@pytest.fixture(scope="module")
def cluster(basetemp, wv):
    d = module_dir(basetemp, "encsync")
    s = State()
    s.dir = d
    s.r1 = make_pg_dir(os.path.join(d, "repo1"))
    s.plain = Cfg(os.path.join(d, "plain.conf"), {1: s.r1})
    s.key = key_file(os.path.join(d, "sym.key"), os.urandom(32))
    s.priv, s.pub = x25519_pair(d)
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.plain.config),
            archive_timeout=0, autovacuum="off", max_wal_size="64MB",
            track_commit_timestamp="on")
    s.restorer = Restorer(wv, s.plain, d)
    s.pg = pg
    ok = False
    try:
        pg.start()
        pg.sql("create table t (batch int, id int, note text, "
               "at timestamptz default clock_timestamp())")
        commit_batch(pg, 0)
        pg.sql("update t set note = %s", (MARKER,))
        pg.sql("create table big as select g, md5(g::text) || md5((g + 1)::text) as x "
               "from generate_series(1, 30000) g")
        # a table of about 3 MiB: stored as chunks of 64 KiB (the test seam), files of 1 MiB or
        # less in bundles; sync writes the manifest anew with the stored sizes of both in M
        res = bb(wv, s.plain, "backup", "-d", connstr(pg), "--checkpoint", "fast",
                 env={"WALVAULT_TEST_CHUNK_SIZE": "65536"})
        s.backup = re.search(r"^backup (\S+) complete", res.stdout, re.M).group(1)
        keys = objects(s.r1)
        assert any("/chunk/" in k for k in keys) and any("/bundle/" in k for k in keys), keys
        s.commits = []
        for k in range(1, 4):
            time.sleep(0.3)
            s.commits.append(commit_batch(pg, k))
            pg.sql("insert into t (batch, id, note) values (%s, 0, %s)", (100 + k, MARKER))
            if k == 2:
                pg.sql("select pg_create_restore_point(%s)", (RP_NAME,))
        pg.switch_wal_and_wait_archived()
        # the target: after batch 2 and its marker row 102 (committed before batch 3's 0.3 s
        # pause), before batch 3
        s.target = (s.commits[1]["commit"] + s.commits[2]["commit"]) / 2
        s.expected = {(0, 10), (1, 10), (101, 1), (2, 10), (102, 1)}
        ok = True
        yield s
    finally:
        finish_module(s.restorer, pg, d, ok)


def restore_rows(s, cfg, name, *args):
    r = Restorer(s.restorer.wv, cfg, s.dir)
    try:
        pg = r.restore_and_start(name, *args)
        got = rows(pg)
        notes = {n for n, in pg.sql("select distinct note from t where note is not null")}
        # the chunked table, whole (its chunks were placed anew in the manifest)
        assert pg.sql_value("select count(*) from big") == 30000
        assert pg.sql_value("select sum(g) from big") == 30000 * 30001 // 2
        pg.stop()
        return got, notes
    finally:
        r.cleanup()


def check_migrated(wv, s, cfg, n, path):
    """repo n (at path) is an encrypted copy of repo1: sealed, verified, restorable alone."""
    assert os.path.isdir(os.path.join(path, "keys")), sorted(objects(path))[:20]
    assert read_bytes(os.path.join(path, "walvault.repo")) == \
        read_bytes(os.path.join(s.r1, "walvault.repo"))
    assert_sealed(path, MARKER, RP_NAME)
    v = bb(wv, cfg, "verify", "--repo", str(n), check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    got, notes = restore_rows(s, Cfg(os.path.join(s.dir, "only%d.conf" % n), {n: path},
                                     cfg.glob), "from-repo%d" % n, "--to", iso(s.target))
    assert got == s.expected, got
    assert notes == {MARKER}


def test_sync_plain_to_symmetric(cluster, wv):
    s = cluster
    s.r2 = make_pg_dir(os.path.join(s.dir, "repo2"))
    glob = "encrypt_key_file = %s\n" % s.key
    cfg = Cfg(os.path.join(s.dir, "sym.conf"), {1: s.r1, 2: s.r2}, glob)
    cfg.glob = glob
    res = sync(wv, cfg, "--from", "1", "--to", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    sm = summary(res)
    assert sm["copied"] > 0 and sm["backups"] == 1 and sm["conflicts"] == 0, sm
    # every WAL object and backup file of repo1 is there (and the key record beside)
    assert {k for k in objects(s.r1)} <= objects(s.r2)
    check_migrated(wv, s, cfg, 2, s.r2)

    before = {k: read_bytes(os.path.join(s.r2, k)) for k in objects(s.r2)}
    again = sync(wv, cfg, "--from", "1", "--to", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    sm = summary(again)
    assert sm["copied"] == 0 and sm["backups"] == 0 and sm["conflicts"] == 0, sm
    # every WAL object compared, and the backup by its manifest (what it describes)
    assert sm["skipped"] == len([k for k in objects(s.r1) if k.startswith("wal/")]) + 1, sm
    assert {k: read_bytes(os.path.join(s.r2, k)) for k in objects(s.r2)} == before


def test_sync_plain_to_public_key(cluster, wv):
    s = cluster
    s.r3 = make_pg_dir(os.path.join(s.dir, "repo3"))
    glob = "encrypt_public_key_file = %s\nencrypt_private_key_file = %s\n" % (s.pub, s.priv)
    cfg = Cfg(os.path.join(s.dir, "pub.conf"), {1: s.r1, 3: s.r3}, glob)
    cfg.glob = glob
    res = sync(wv, cfg, "--from", "1", "--to", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    sm = summary(res)
    assert sm["copied"] > 0 and sm["backups"] == 1 and sm["conflicts"] == 0, sm
    check_migrated(wv, s, cfg, 3, s.r3)

    # again on a host with the public key only: every object is recognised, nothing copied
    pubonly = Cfg(os.path.join(s.dir, "pubonly.conf"), {1: s.r1, 3: s.r3},
                  "encrypt_public_key_file = %s\n" % s.pub)
    before = {k: read_bytes(os.path.join(s.r3, k)) for k in objects(s.r3)}
    again = sync(wv, pubonly, "--from", "1", "--to", "3")
    assert again.returncode == 0, again.stdout + again.stderr
    sm = summary(again)
    assert sm["copied"] == 0 and sm["backups"] == 0 and sm["conflicts"] == 0, sm
    assert {k: read_bytes(os.path.join(s.r3, k)) for k in objects(s.r3)} == before

    # the migration itself needs no private key: from plain on the public-key host, verified on
    # the restore host
    r3b = make_pg_dir(os.path.join(s.dir, "repo3b"))
    pubonly_b = Cfg(os.path.join(s.dir, "pubonly-b.conf"), {1: s.r1, 3: r3b},
                    "encrypt_public_key_file = %s\n" % s.pub)
    res = sync(wv, pubonly_b, "--from", "1", "--to", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    assert summary(res)["backups"] == 1
    assert_sealed(r3b, MARKER, RP_NAME)
    safe_b = Cfg(os.path.join(s.dir, "safe-b.conf"), {3: r3b},
                 "encrypt_private_key_file = %s\n" % s.priv)
    v = bb(wv, safe_b, "verify", "--repo", "3", check=False)
    assert v.returncode == 0, v.stdout + v.stderr


def test_sync_plain_to_encrypted_s3(cluster, wv, s3_server):  # noqa: F811
    """The same migration into an S3 bucket (Ceph RGW): no object holds the marker, a re-run
    copies nothing, and the bucket alone restores to the target with exact rows."""
    s = cluster
    bucket = new_bucket(s3_server)
    glob = "[global]\nencrypt_key_file = %s\n\n" % s.key
    cfg = TextCfg(os.path.join(s.dir, "s3.conf"), glob + "[repo1]\ntype = posix\npath = %s\n\n"
                  % s.r1 + s3_section(s3_server, bucket, s.dir, 4))
    res = sync(wv, cfg, "--from", "1", "--to", "4")
    assert res.returncode == 0, res.stdout + res.stderr
    sm = summary(res)
    assert sm["copied"] > 0 and sm["backups"] == 1 and sm["conflicts"] == 0, sm
    keys = s3_server.list_keys(bucket, "pg/")
    assert {"pg/" + k for k in objects(s.r1)} <= set(keys), keys
    assert any(k.startswith("pg/keys/") for k in keys), keys
    for k in keys:
        data = s3_server.get_object(bucket, k)
        assert MARKER.encode() not in data and RP_NAME.encode() not in data, k
    again = sync(wv, cfg, "--from", "1", "--to", "4")
    assert again.returncode == 0, again.stdout + again.stderr
    sm = summary(again)
    assert sm["copied"] == 0 and sm["conflicts"] == 0, sm
    only4 = TextCfg(os.path.join(s.dir, "only4.conf"),
                    glob + s3_section(s3_server, bucket, s.dir, 4))
    got, notes = restore_rows(s, only4, "from-s3", "--to", iso(s.target))
    assert got == s.expected, got
    assert notes == {MARKER}


def test_sync_encrypted_to_plain_refused(cluster, wv):
    s = cluster
    if not hasattr(s, "r2"):
        pytest.skip("needs the symmetric copy of test_sync_plain_to_symmetric")
    # a plain repository of the same cluster: a plain copy of repo1
    r4 = make_pg_dir(os.path.join(s.dir, "repo4"))
    res = sync(wv, Cfg(os.path.join(s.dir, "p14.conf"), {1: s.r1, 4: r4}), "--from", "1",
               "--to", "4")
    assert res.returncode == 0, res.stdout + res.stderr
    before = {k: read_bytes(os.path.join(r4, k)) for k in objects(r4)}
    cfg = Cfg(os.path.join(s.dir, "sym24.conf"), {2: s.r2, 4: r4},
              "encrypt_key_file = %s\n" % s.key)
    res = sync(wv, cfg, "--from", "2", "--to", "4")
    assert res.returncode != 0, res.stdout + res.stderr
    lines = [x for x in res.stderr.splitlines() if "refused" in x]
    assert len(lines) == 1, res.stderr
    assert re.search(r"refused: repo2 is encrypted and repo4 is not: sync would store in plain "
                     r"what repo2 keeps encrypted", lines[0]), res.stderr
    assert {k: read_bytes(os.path.join(r4, k)) for k in objects(r4)} == before
    assert not os.path.exists(os.path.join(r4, "keys"))


def test_dry_run_writes_nothing_and_conflict_kept(cluster, wv):
    """A dry run into a new repository writes nothing, not even a key record. A WAL object that an
    encrypted target holds with other content is a conflict (compared under the two repositories'
    own keys), left as it is, and everything else is still copied."""
    s = cluster
    r7 = make_pg_dir(os.path.join(s.dir, "repo7"))
    glob = "encrypt_key_file = %s\n" % s.key
    cfg = Cfg(os.path.join(s.dir, "sym17.conf"), {1: s.r1, 7: r7}, glob)
    dry = run(wv.cmd("basebackup", "sync", "--from", "1", "--to", "7", "--dry-run",
                     config=cfg.config), check=False)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "(dry run)" in dry.stdout and "would copy wal/" in dry.stdout, dry.stdout
    assert os.listdir(r7) == []

    # repo7 gets, under a name repo1 holds, a segment with one byte changed
    seg = sorted(k for k in objects(s.r1) if re.search(r"/[0-9A-F]{24}$", k))[1]
    name = os.path.basename(seg)
    orig = os.path.join(s.dir, "orig-" + name)
    assert wv.fetch(name, orig, config=s.plain.config).returncode == 0
    os.makedirs(os.path.join(s.dir, "other"), exist_ok=True)
    other = _modified_copy(orig, os.path.join(s.dir, "other", name))
    only7 = Cfg(os.path.join(s.dir, "only7.conf"), {7: r7}, glob)
    r = wv.push(other, config=only7.config)
    assert r.returncode == 0, r.stderr
    before = read_bytes(os.path.join(r7, seg))

    res = sync(wv, cfg, "--from", "1", "--to", "7")
    assert res.returncode == 6, res.stdout + res.stderr  # WV_ECONFLICT
    sm = summary(res)
    assert sm["conflicts"] == 1 and sm["copied"] > 0 and sm["backups"] == 1, sm
    assert re.search(r'repo7: "%s": conflict: different content \(\d+ bytes sha256 [0-9a-f]{16}'
                     r'\.\.\. in repo1, \d+ bytes sha256 [0-9a-f]{16}\.\.\. here\)' % seg,
                     res.stderr), res.stderr
    assert read_bytes(os.path.join(r7, seg)) == before
    assert objects(s.r1) <= objects(r7)


def test_interrupted_sync_left_bundles(cluster, wv):
    """A sync into an encrypted repository stopped before the backup's manifest leaves bundles
    whose layout only that manifest would tell: the next sync says so in one line naming what to
    move away (never guessing, never replacing), and after that the backup is copied."""
    s = cluster
    r8 = make_pg_dir(os.path.join(s.dir, "repo8"))
    cfg = Cfg(os.path.join(s.dir, "sym18.conf"), {1: s.r1, 8: r8},
              "encrypt_key_file = %s\n" % s.key)
    assert sync(wv, cfg, "--from", "1", "--to", "8").returncode == 0
    os.unlink(os.path.join(r8, "backup", s.backup, "backup.manifest"))
    res = sync(wv, cfg, "--from", "1", "--to", "8")
    assert res.returncode == 6, res.stdout + res.stderr
    lines = [x for x in res.stderr.splitlines() if "interrupted sync" in x]
    assert lines, res.stderr
    assert re.search(r'repo8: "backup/%s/bundle/\d+": already there without its backup\'s '
                     r'manifest \(left by an interrupted sync\?\); backup %s not copied from repo1'
                     % (s.backup, s.backup), lines[0]), res.stderr
    assert "move backup/%s/ out of repo8 by hand" % s.backup in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(r8, "backup", s.backup, "backup.manifest"))
    shutil.rmtree(os.path.join(r8, "backup", s.backup))
    res = sync(wv, cfg, "--from", "1", "--to", "8")
    assert res.returncode == 0, res.stdout + res.stderr
    assert summary(res)["backups"] == 1
    v = bb(wv, cfg, "verify", "--repo", "8", check=False)
    assert v.returncode == 0, v.stdout + v.stderr


def test_lagging_encrypted_repository_catches_up(cluster, wv):
    """Two encrypted repositories (each its own data key), repo6 required = no and away while the
    primary archives: recorded as lag, copied from repo5 by a later wal-push once back (decoded
    and encoded again under repo6's keys), then repo6 alone restores to the newest commit."""
    s = cluster
    pg = s.pg
    r5 = make_pg_dir(os.path.join(s.dir, "repo5"))
    r6 = make_pg_dir(os.path.join(s.dir, "repo6"))
    spool = make_pg_dir(os.path.join(s.dir, "spool"))
    glob = "encrypt_key_file = %s\nspool_path = %s\n" % (s.key, spool)
    cfg = Cfg(os.path.join(s.dir, "lag.conf"), {5: r5, 6: (r6, "required = no\n")}, glob)
    pg.conf(archive_command=wv.archive_command(cfg.config))
    pg.sql("select pg_reload_conf()")
    time.sleep(0.5)
    backup = take_backup(wv, cfg, pg)
    assert os.path.exists(os.path.join(r6, "backup", backup, "backup.manifest"))

    os.rename(r6, r6 + ".away")
    lagged = []
    for k in range(10, 13):
        commit_batch(pg, k)
        pg.sql("insert into t (batch, id, note) values (%s, 0, %s)", (100 + k, MARKER))
        lagged.append(pg.switch_wal_and_wait_archived())
    assert len(lag_records(spool, "repo6")) >= 3, lag_records(spool, "repo6")
    assert pg.archiver_stats()["failed_count"] == 0

    os.rename(r6 + ".away", r6)
    expire_backoff(spool, "repo6")
    commit_batch(pg, 13)
    pg.switch_wal_and_wait_archived()
    wait_until(lambda: lag_records(spool, "repo6") == [], timeout=60,
               what="repo6 to catch up")
    for n in lagged:
        a = os.path.join(r5, "wal", n[:16], n)
        b = os.path.join(r6, "wal", n[:16], n)
        assert os.path.exists(b), n
        # encoded again under repo6's own keys: not the bytes of repo5's object
        assert read_bytes(a) != read_bytes(b), n
    assert_sealed(r6, MARKER, RP_NAME)
    expected = rows(pg)
    got, notes = restore_rows(s, Cfg(os.path.join(s.dir, "only6.conf"), {6: r6}, glob),
                              "from-repo6")
    assert got == expected, (got, expected)
    assert {(100 + k, 1) for k in range(10, 13)} <= got
    assert notes == {MARKER}



def test_public_key_host_catch_up_needs_the_private_key(wv, workdir, wal_samples):
    """On a database host holding only the public key, a lagging public-key repository cannot be
    caught up from another one (their objects would have to be decoded): wal-push says so in one
    line naming the sync to run, the lag stays recorded, and that sync on a host with the private
    key copies the files (decoded, encoded again under repo6's keys) and clears the records."""
    priv, pub = x25519_pair(workdir)
    r5 = make_pg_dir(os.path.join(workdir, "repo5"))
    r6 = make_pg_dir(os.path.join(workdir, "repo6"))
    spool = make_pg_dir(os.path.join(workdir, "spool"))
    repos = {5: r5, 6: (r6, "required = no\n")}
    host = Cfg(os.path.join(workdir, "db.conf"), repos,
               "encrypt_public_key_file = %s\nspool_path = %s\n" % (pub, spool))
    safe = Cfg(os.path.join(workdir, "safe.conf"), repos,
               "encrypt_public_key_file = %s\nencrypt_private_key_file = %s\nspool_path = %s\n"
               % (pub, priv, spool))
    segs = wal_samples.a_segments[:4]
    names = [os.path.basename(x) for x in segs]
    r = wv.push(segs[0], config=host.config)
    assert r.returncode == 0, r.stderr
    os.rename(r6, r6 + ".away")
    for x in segs[1:3]:
        r = wv.push(x, config=host.config)
        assert r.returncode == 0, r.stderr
    assert lag_records(spool, "repo6") == names[1:3]

    os.rename(r6 + ".away", r6)
    expire_backoff(spool, "repo6")
    r = wv.push(segs[3], config=host.config)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stderr.splitlines() if "needs the private key" in x]
    assert len(line) == 1, r.stderr
    assert re.search(r"repo6 lacks %s, and copying it from repo5 needs the private key "
                     r"\(encrypt_private_key_file\)" % names[1], line[0]), r.stderr
    assert 'basebackup sync --from 5 --to 6' in r.stderr, r.stderr
    assert set(names[1:3]) <= set(lag_records(spool, "repo6"))
    for n in names[1:3]:
        assert not os.path.exists(os.path.join(r6, "wal", n[:16], n)), n

    res = sync(wv, safe, "--from", "5", "--to", "6")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"repo6: \d+ lag records? cleared", res.stderr), res.stderr
    assert lag_records(spool, "repo6") == []
    only6 = Cfg(os.path.join(workdir, "only6.conf"), {6: r6},
                "encrypt_private_key_file = %s\n" % priv)
    for x, n in zip(segs, names):
        dest = os.path.join(workdir, "fetched-" + n)
        f = wv.fetch(n, dest, config=only6.config)
        assert f.returncode == 0, f.stderr
        assert read_bytes(dest) == read_bytes(x), n
