"""Fixtures of the integration suite, layered by cost (session > module > function).

- ``bindir`` / ``wv`` (session): the binaries under test: $WALVAULT_BIN, else a build found in the
  source tree, copied into a world-readable directory because PostgreSQL runs them as postgres.
- ``workdir`` (function): a fresh directory owned by postgres, removed after the test (kept with
  WALVAULT_KEEP=1).
- ``pg_factory`` (function): creates Postgres servers; stops them after the test and prints the
  server log of every server when the test failed.
- ``repo`` (function): an empty posix repository and its configuration file.
- ``wal_samples`` (session): real WAL files of two clusters (different system identifiers),
  archived by ``cp`` so that the tests do not depend on the code under test to make them.
- ``archived_cluster`` (session): a cluster archiving with wal-push through pgbench, with a
  pg_basebackup taken before the pgbench run; tests copy its repository before changing anything.
- autouse ``sanitizer_reports``: with WALVAULT_SANITIZER_LOG_DIR set (run.sh's ASan run), a test
  that made any sanitized binary report anything fails, even if the exit code looked right.
"""

import os
import shutil
import stat
import tempfile

import pytest

from utils import (PG_BINDIR, Postgres, Repo, Walvault, make_pg_dir, pg_bin, table_checksum)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROGRAMS = ("wal-push", "wal-fetch", "basebackup")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    node = request.node
    return any(getattr(getattr(node, "rep_" + w, None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture(scope="session")
def basetemp():
    d = tempfile.mkdtemp(prefix="walvault-it-")
    os.chmod(d, 0o755)
    yield d
    if not os.environ.get("WALVAULT_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


def _world_readable_path(path):
    """True when every directory up to path lets others traverse it."""
    p = os.path.abspath(path)
    while p != "/":
        if not os.stat(p).st_mode & stat.S_IXOTH:
            return False
        p = os.path.dirname(p)
    return True


@pytest.fixture(scope="session")
def bindir(basetemp):
    """The directory holding wal-push and wal-fetch, reachable by postgres."""
    env = os.environ.get("WALVAULT_BIN")
    if env:
        src = os.path.abspath(env)
    else:
        candidates = [os.path.join(ROOT, d) for d in sorted(os.listdir(ROOT))
                      if d.startswith("build") and os.path.isfile(os.path.join(ROOT, d, "wal-push"))]
        if not candidates:
            pytest.fail("no binaries: set WALVAULT_BIN=DIR/bin (cmake --install build --prefix DIR) "
                        "or build into %s/build" % ROOT)
        src = max(candidates, key=lambda d: os.path.getmtime(os.path.join(d, "wal-push")))
    for p in ("wal-push", "wal-fetch"):
        if not os.access(os.path.join(src, p), os.X_OK):
            pytest.fail("%s not found or not executable in %s" % (p, src))
    if _world_readable_path(src):
        return src
    dst = os.path.join(basetemp, "bin")
    os.makedirs(dst, exist_ok=True)
    for p in PROGRAMS:
        if os.path.exists(os.path.join(src, p)):
            shutil.copy2(os.path.join(src, p), os.path.join(dst, p))
            os.chmod(os.path.join(dst, p), 0o755)
    return dst


@pytest.fixture(scope="session")
def wv(bindir):
    return Walvault(bindir)


@pytest.fixture(scope="session", autouse=True)
def _check_postgres():
    if not os.path.exists(pg_bin("initdb")):
        pytest.fail("PostgreSQL 15 server binaries not found in %s (set PG_BINDIR)" % PG_BINDIR)


@pytest.fixture(autouse=True)
def sanitizer_reports():
    d = os.environ.get("WALVAULT_SANITIZER_LOG_DIR")
    before = set(os.listdir(d)) if d and os.path.isdir(d) else None
    yield
    if before is None:
        return
    new = sorted(set(os.listdir(d)) - before)
    if new:
        texts = []
        for f in new:
            with open(os.path.join(d, f), errors="replace") as fh:
                texts.append("--- %s\n%s" % (f, fh.read()[:8000]))
        pytest.fail("sanitizer reports written during this test:\n" + "\n".join(texts))


_counter = [0]


def _new_dir(basetemp, name):
    _counter[0] += 1
    d = os.path.join(basetemp, "%03d-%s" % (_counter[0], name[:40].replace("/", "_")))
    return make_pg_dir(d, 0o755)


@pytest.fixture
def workdir(basetemp, request):
    d = _new_dir(basetemp, request.node.name)
    yield d
    if not os.environ.get("WALVAULT_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


class PgFactory:
    def __init__(self, basedir):
        self.basedir = basedir
        self.servers = []

    def new(self, name="pg", bindir=None):
        pg = Postgres(self.basedir, name, bindir=bindir)
        self.servers.append(pg)
        return pg

    def dump_logs(self):
        for pg in self.servers:
            print("\n----- server log of %s (%s) -----\n%s" % (pg.name, pg.logfile, pg.log()[-30000:]))

    def cleanup(self):
        for pg in self.servers:
            pg.cleanup()


@pytest.fixture
def pg_factory(workdir, request):
    f = PgFactory(workdir)
    yield f
    if _failed(request):
        f.dump_logs()
    f.cleanup()


@pytest.fixture
def repo(workdir):
    return Repo(os.path.join(workdir, "repo"), os.path.join(workdir, "walvault.conf"))


# ---------------------------------------------------------------------------------------------
# Real WAL files, made without the code under test.

class WalSamples:
    """Copies of WAL files of two clusters, in a directory postgres can read."""

    def __init__(self, d):
        self.dir = d
        self.a_segments = []   # paths of complete segments of cluster A (1 MiB segments)
        self.a_backup = None   # path of A's backup history file (.backup)
        self.a_sysid = None
        self.b_segments = []
        self.b_sysid = None
        self.big_segment = None  # a 16 MiB segment of cluster C, mostly real WAL


def _archive_with_cp(pg, archive_dir):
    make_pg_dir(archive_dir, 0o755)
    pg.conf(archive_mode="on", archive_command="cp %%p %s/%%f" % archive_dir)


def _collect(archive_dir, dest_dir):
    out = []
    for f in sorted(os.listdir(archive_dir)):
        shutil.copy2(os.path.join(archive_dir, f), os.path.join(dest_dir, f))
        os.chmod(os.path.join(dest_dir, f), 0o644)
        out.append(os.path.join(dest_dir, f))
    return out


@pytest.fixture(scope="session")
def wal_samples(basetemp):
    d = _new_dir(basetemp, "wal-samples")
    s = WalSamples(make_pg_dir(os.path.join(d, "files"), 0o755))
    servers = []
    try:
        # Cluster A: several 1 MiB segments full of hard-to-compress data, and a .backup file.
        a = Postgres(d, "a").initdb(wal_segsize=1)
        servers.append(a)
        _archive_with_cp(a, os.path.join(d, "arch-a"))
        a.start()
        a.sql("create table t (x text)")
        for _ in range(3):
            a.sql("insert into t select md5(random()::text) || md5(random()::text) "
                  "from generate_series(1, 8000)")
            a.switch_wal_and_wait_archived()
        a.basebackup(os.path.join(d, "bb-a"), "-X", "none")
        a.switch_wal_and_wait_archived()
        s.a_sysid = a.system_identifier()
        a.stop()
        files = _collect(os.path.join(d, "arch-a"), s.dir)
        s.a_segments = [f for f in files if len(os.path.basename(f)) == 24]
        s.a_backup = [f for f in files if f.endswith(".backup")][0]

        # Cluster B: another system identifier, same segment size.
        b = Postgres(d, "b").initdb(wal_segsize=1)
        servers.append(b)
        _archive_with_cp(b, os.path.join(d, "arch-b"))
        b.start()
        b.sql("create table t (x int)")
        b.sql("insert into t select generate_series(1, 1000)")
        b.switch_wal_and_wait_archived()
        s.b_sysid = b.system_identifier()
        b.stop()
        bdir = make_pg_dir(os.path.join(d, "files-b"), 0o755)
        s.b_segments = [f for f in _collect(os.path.join(d, "arch-b"), bdir)
                        if len(os.path.basename(f)) == 24]

        # Cluster C: one complete 16 MiB segment holding mostly random rows.
        c = Postgres(d, "c").initdb(wal_segsize=16)
        servers.append(c)
        _archive_with_cp(c, os.path.join(d, "arch-c"))
        c.start()
        c.sql("create table t (x text)")
        c.sql("insert into t select md5(random()::text) from generate_series(1, 120000)")
        name = c.switch_wal_and_wait_archived()
        c.stop()
        cdir = make_pg_dir(os.path.join(d, "files-c"), 0o755)
        shutil.copy2(os.path.join(d, "arch-c", name), os.path.join(cdir, name))
        os.chmod(os.path.join(cdir, name), 0o644)
        s.big_segment = os.path.join(cdir, name)
    except BaseException:
        for pg in servers:
            print("\n----- server log of %s -----\n%s" % (pg.name, pg.log()[-20000:]))
        raise
    finally:
        for pg in servers:
            pg.cleanup()
    assert s.a_sysid != s.b_sysid
    assert len(s.a_segments) >= 3, s.a_segments
    assert os.path.getsize(s.big_segment) == 16 * 1024 * 1024
    return s


# ---------------------------------------------------------------------------------------------
# A cluster archived by wal-push through a pgbench run, with a base backup from before the run.

class Archived:
    def __init__(self):
        self.dir = None
        self.repo = None          # Repo written by wal-push (do not modify: copy it)
        self.backup_dir = None    # pg_basebackup -X none, taken after pgbench -i
        self.backup_start_wal = None
        self.last_archived = None
        self.stats = None
        self.checksum = None      # md5 of pgbench_accounts at the end of the run
        self.balance = None
        self.history_count = None
        self.log = None           # the primary's server log
        self.pg_wal_copies = {}   # name -> path of segments copied out of pg_wal after the run
        self.sysid = None


@pytest.fixture(scope="session")
def archived_cluster(basetemp, wv):
    d = _new_dir(basetemp, "archived-cluster")
    s = Archived()
    s.dir = d
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.repo.config),
            max_wal_size="64MB", checkpoint_timeout="30s", wal_keep_size="1GB")
    try:
        pg.start()
        pg.pgbench("-i", "-s", "5", "-q")
        s.backup_dir = os.path.join(d, "backup")
        pg.basebackup(s.backup_dir, "-X", "none")
        with open(os.path.join(s.backup_dir, "backup_label")) as f:
            label = f.read()
        s.backup_start_wal = label.split("(file ")[1].split(")")[0]
        pg.pgbench("-T", "3", "-c", "2", "-n")
        s.last_archived = pg.switch_wal_and_wait_archived(timeout=300)
        s.stats = pg.archiver_stats()
        s.checksum = table_checksum(pg)
        s.sysid = pg.system_identifier()
        pg.stop()
        s.log = pg.log()
        wal_copy = make_pg_dir(os.path.join(d, "pg_wal_copy"), 0o755)
        pg_wal = os.path.join(pg.datadir, "pg_wal")
        for f in sorted(os.listdir(pg_wal)):
            if len(f) == 24 and f <= s.last_archived:
                shutil.copy2(os.path.join(pg_wal, f), os.path.join(wal_copy, f))
                s.pg_wal_copies[f] = os.path.join(wal_copy, f)
    except BaseException:
        print("\n----- server log of the archiving primary -----\n%s" % pg.log()[-30000:])
        raise
    finally:
        pg.cleanup()
    return s
