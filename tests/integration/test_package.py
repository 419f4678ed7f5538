"""The Debian package, installed (dpkg -i) by `contrib/run.sh test`: programs, man pages and units in
their places, and a point-in-time recovery with the installed programs only (/usr/bin/wal-push as
archive_command, /usr/bin/basebackup backup and restore --to).

Skipped unless WALVAULT_PACKAGE_INSTALLED=1, which run.sh's package step sets after installing the
package (it runs this module alone and removes the package again with dpkg -r walvault).
"""

import os
import re
import subprocess
import time

import pytest

from utils import PG_USER, Postgres, Repo, run, wait_until

pytestmark = pytest.mark.skipif(os.environ.get("WALVAULT_PACKAGE_INSTALLED") != "1",
                                reason="the walvault package is not installed "
                                       "(run by contrib/run.sh test, with WALVAULT_PACKAGE_INSTALLED=1)")

BIN = "/usr/bin"
PROGRAMS = ["wal-push", "wal-fetch", "basebackup", "walvault-remote"]
UNIT_DIR = "/lib/systemd/system"
UNITS = ["walvault-%s.%s" % (u, t) for u in ("backup", "backup-weekly", "drill", "status")
         for t in ("service", "timer")]


def _pkg_version():
    r = run(["dpkg-query", "-W", "-f=${Status} ${Version}", "walvault"], as_postgres=False)
    status, version = r.stdout.rsplit(" ", 1)
    assert status == "install ok installed", r.stdout
    return version


def test_installed_programs():
    version = _pkg_version()
    files = set(run(["dpkg", "-L", "walvault"], as_postgres=False).stdout.split())
    for p in PROGRAMS:
        path = os.path.join(BIN, p)
        assert path in files, "%s is not in the package" % path
        r = run([path, "--version"])  # as postgres: the package's files are readable by all
        assert re.match(r"^%s \(walvault\) %s(, protocol \d+)?$" % (re.escape(p), re.escape(version)),
                        r.stdout.strip()), r.stdout
    # every shared library the programs need is there (the package's dependencies pulled them in)
    for p in PROGRAMS:
        r = run(["ldd", os.path.join(BIN, p)], as_postgres=False)
        assert "not found" not in r.stdout, r.stdout


def test_installed_man_pages():
    for page, section in [("wal-push", 1), ("wal-fetch", 1), ("basebackup", 1),
                          ("walvault.conf", 5)]:
        r = run(["man", "-w", str(section), page], as_postgres=False, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().startswith("/usr/share/man/man%d/%s.%d" % (section, page, section)), r.stdout
        r = run(["man", "--warnings", str(section), page], as_postgres=False, check=False,
                env={"MANWIDTH": "80"})
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert "SYNOPSIS" in r.stdout


def test_installed_units():
    for u in UNITS:
        path = os.path.join(UNIT_DIR, u)
        assert os.path.isfile(path), "%s is missing" % path
    for u in UNITS:
        if u.endswith(".service"):
            with open(os.path.join(UNIT_DIR, u)) as f:
                text = f.read()
            assert re.search(r"^ExecStart=/usr/bin/basebackup -c /etc/walvault/walvault.conf ", text,
                             re.M), text
            assert re.search(r"^User=postgres$", text, re.M), text
    # the units name the installed programs and man pages: verify checks both
    r = run(["systemd-analyze", "verify"] + [os.path.join(UNIT_DIR, u) for u in UNITS],
            as_postgres=False, check=False)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    for ex in ("walvault.conf.example", "walvault.cron"):
        assert os.path.isfile(os.path.join("/usr/share/doc/walvault/examples", ex)), ex
    r = run(["dpkg-query", "-W", "-f=${Conffiles}", "walvault"], as_postgres=False)
    assert r.stdout.strip() == "", "the package has conffiles: %s" % r.stdout


def _commit(pg, batch):
    pg.sql("insert into t (batch, id) select %s, g from generate_series(1, 100) g", (batch,))
    return pg.sql_value("select max(at) from t where batch = %s", (batch,))


def test_pitr_with_installed_binaries(pg_factory, workdir):
    repo = Repo(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))
    pg = pg_factory.new("primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command="%s/wal-push -c %s %%p" % (BIN, repo.config),
            archive_timeout=0)
    pg.start()
    conn = "host=127.0.0.1 port=%d user=%s" % (pg.port, PG_USER)
    pg.sql("create table t (batch int, id int, at timestamptz default clock_timestamp())")
    _commit(pg, 1)
    r = run(["%s/basebackup" % BIN, "-c", repo.config, "backup", "-d", conn, "--checkpoint", "fast"],
            timeout=300)
    backup_id = re.search(r"^backup (\S+) complete", r.stdout, re.M).group(1)
    _commit(pg, 2)
    time.sleep(1.2)
    target = pg.sql_value("select to_char(clock_timestamp() at time zone 'UTC', "
                          "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    time.sleep(1.2)
    _commit(pg, 3)  # after the target: must not come back
    pg.switch_wal_and_wait_archived()
    pg.stop()

    restored = pg_factory.new("restored")
    r = run(["%s/basebackup" % BIN, "-c", repo.config, "restore", "--pgdata", restored.datadir,
             "--to", target], timeout=600)
    assert backup_id in r.stdout + r.stderr, r.stdout + r.stderr
    with open(os.path.join(restored.datadir, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert "%s/wal-fetch" % BIN in auto, auto
    restored._base_conf()
    restored.start()
    wait_until(lambda: restored.sql_value("select not pg_is_in_recovery()"), timeout=120,
               what="the restored server to finish recovery")
    rows = dict(restored.sql("select batch, count(*) from t group by batch"))
    assert rows == {1: 100, 2: 100}, rows
    assert "recovery stopping before commit" in restored.log_since_start()
    restored.stop()


def test_package_removes_cleanly_listing():
    """What dpkg -r will remove: every file of the package is under /usr."""
    files = run(["dpkg", "-L", "walvault"], as_postgres=False).stdout.split()
    assert files and all(f == "/." or f.startswith("/usr") for f in files), \
        [f for f in files if not f.startswith("/usr")]
    assert subprocess.run(["dpkg", "-s", "walvault"], capture_output=True).returncode == 0
