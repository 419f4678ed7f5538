"""The database host of public-key mode (docs/encryption.md): it holds encrypt_public_key_file
only, against a real PostgreSQL 15 archiving into a posix repository.

It archives and backs up (the backup history file taken from the server's pg_wal; a role that
may not read the server's data directory is refused before anything is copied), marks a
restore point (waiting for the record beside its segment, the duplicate-name check skipped with a
warning) and runs status from the listing alone (the newest manifest by its mtime, WAL by object
mtimes), while list and wal-fetch refuse with "needs the private key" (exit 19; wal-fetch 128).
With the private key added, the same repository lists its backup and the restore point, and a
restore to the mark gives exactly the rows written before it.
"""
import os
import re

import pytest

from utils import PG_USER, chown_pg, make_pg_dir, run, wait_until

pytestmark = pytest.mark.xdist_group("encryption_host")

EXIT_PRIVKEY = 19


def connstr(pg):
    return "host=127.0.0.1 port=%d user=%s dbname=postgres" % (pg.port, PG_USER)


def x25519_pair(d):
    priv, pub = os.path.join(d, "repo.pem"), os.path.join(d, "repo.pub")
    run(["openssl", "genpkey", "-algorithm", "X25519", "-out", priv], as_postgres=False)
    run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], as_postgres=False)
    for p in (priv, pub):
        chown_pg(p)
        os.chmod(p, 0o600)
    return priv, pub


def write_conf(path, repo, workdir, **keys):
    text = "[global]\nstate_path = %s\nspool_path = %s\n" % (
        os.path.join(workdir, "state"), os.path.join(workdir, "spool"))
    for k, v in keys.items():
        text += "%s = %s\n" % (k, v)
    text += "[repo1]\ntype = posix\npath = %s\n" % repo
    with open(path, "w") as f:
        f.write(text)
    chown_pg(path)
    return path


def test_public_key_host_archives_backs_up_marks_and_reports(pg_factory, wv, workdir):
    repo = make_pg_dir(os.path.join(workdir, "repo"))
    priv, pub = x25519_pair(workdir)
    host = write_conf(os.path.join(workdir, "host.conf"), repo, workdir,
                      encrypt_public_key_file=pub)
    safe = write_conf(os.path.join(workdir, "safe.conf"), repo, workdir,
                      encrypt_public_key_file=pub, encrypt_private_key_file=priv)
    pg = pg_factory.new("pg").initdb()
    pg.conf(archive_mode="on", archive_timeout=0, archive_command=wv.archive_command(host))
    pg.start()
    pg.psql("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)")

    r = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), config=host), check=False,
            timeout=300)
    assert r.returncode == 0, r.stderr
    bid = re.search(r"backup (\S+) complete", r.stdout).group(1)

    # a replication role that may not read the server's settings: the data directory (and so the
    # backup history file) is out of reach, said before anything is copied
    pg.psql("CREATE ROLE rep REPLICATION LOGIN")
    before = sorted(os.listdir(os.path.join(repo, "backup")))
    r = run(wv.cmd("basebackup", "backup", "-d",
                   "host=127.0.0.1 port=%d user=rep dbname=postgres" % pg.port, config=host),
            check=False, timeout=300)
    assert r.returncode == EXIT_PRIVKEY, r.stdout + r.stderr
    assert "SHOW data_directory needs superuser or pg_read_all_settings" in r.stderr, r.stderr
    assert "on a host with encrypt_private_key_file" in r.stderr, r.stderr
    assert sorted(os.listdir(os.path.join(repo, "backup"))) == before  # nothing stored

    pg.psql("INSERT INTO t SELECT generate_series(101, 150)")
    r = run(wv.cmd("basebackup", "mark", "before_migration", "-d", connstr(pg), config=host),
            check=False, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is archived in every repository" in r.stdout, r.stdout
    assert re.search(r'warning: repo1: restore point names are encrypted for the public key: '
                     r'whether "before_migration" exists already is not checked', r.stderr), r.stderr
    pg.psql("INSERT INTO t SELECT generate_series(151, 200)")

    r = run(wv.cmd("basebackup", "status", config=host), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^  backup:    %s, manifest written .* ago \(object mtime; its contents are "
                     r"encrypted for the public key\)$" % bid, r.stdout, re.M), r.stdout
    assert re.search(r"^  wal:       [0-9A-F]{24}, archived ", r.stdout, re.M), r.stdout
    assert "window:    not readable here: the repository is encrypted for a public key" in r.stdout

    r = run(wv.cmd("basebackup", "list", config=host), check=False)
    assert r.returncode == EXIT_PRIVKEY, r.stdout + r.stderr
    assert "needs the private key (encrypt_private_key_file)" in r.stderr
    dest = os.path.join(workdir, "seg")
    r = run(wv.cmd("wal-fetch", "000000010000000000000001", dest, config=host), check=False)
    assert r.returncode == 128, r.stderr
    assert "needs the private key" in r.stderr and not os.path.exists(dest)

    # the restore host: the same repository with the private key
    r = run(wv.cmd("basebackup", "list", config=safe), check=False)
    assert r.returncode == 0, r.stderr
    assert bid in r.stdout and "encrypted with public key" in r.stdout
    back = pg_factory.new("restored")
    r = run(wv.cmd("basebackup", "restore", "--pgdata", back.datadir, "--name", "before_migration",
                   config=safe), check=False, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    pg.stop()
    back._base_conf()
    back.start()
    wait_until(lambda: back.sql_value("select not pg_is_in_recovery()"), timeout=120,
               what="the restored server to finish recovery")
    assert back.sql_value("SELECT count(*) FROM t") == 150
    assert back.sql_value("SELECT max(n) FROM t") == 150
