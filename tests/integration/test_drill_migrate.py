"""basebackup drill, mark, migrate-safe and restore --archive-mode off, against a real PostgreSQL 15
archiving with wal-push into a posix repository.

One primary per module (1 MiB segments): a users table, a base backup, more rows archived. drill
passes on the good repository (report with numeric times, last-drill.json written, no server and
no directory left, every object of the repository byte-identical afterwards) and fails on a damaged
backup object and on a failing --sql (false, syntax error), leaving nothing unless
--keep-on-failure. restore --archive-mode off writes archive_mode = off and the started copy never
archives; after a drill, a restore with no target still recovers timeline 1 to the newest commit.
mark returns once its restore point is archived and restore --name reaches it with exact rows.
migrate-safe runs COMMAND after a good mark, propagates its exit status, prints the restore that
brings back what COMMAND dropped, and never runs COMMAND after a failed mark or backup.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import time

import pytest

from test_restore_pitr import bb, connstr, iso, module_dir, take_backup
from utils import (PG_USER, Postgres, Repo, flip_byte, log_lines, make_pg_dir, pg_bin, popen,
                   run, wait_until)

pytestmark = pytest.mark.xdist_group("drill-migrate")


class Site:
    pass


def primary_rows(pg):
    return pg.sql_value("select count(*) from users")


@pytest.fixture(scope="module")
def site(basetemp, wv):
    d = module_dir(basetemp, "drill")
    s = Site()
    s.dir = d
    s.wv = wv
    s.state = make_pg_dir(os.path.join(d, "state"))
    s.drills = make_pg_dir(os.path.join(d, "drills"))
    s.extra = "[global]\nstate_path = %s\ndrill_path = %s\narchive_timeout = 30\n" % (
        s.state, s.drills)
    s.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"), s.extra)
    pg = Postgres(d, "primary").initdb(wal_segsize=1)
    pg.conf(archive_mode="on", archive_command=wv.archive_command(s.repo.config),
            archive_timeout=0, autovacuum="off", max_wal_size="64MB")
    s.primary = pg
    s.servers = []
    ok = False
    try:
        pg.start()
        pg.sql("create table users (id int primary key, name text)")
        pg.sql("insert into users select g, 'user ' || g from generate_series(1, 100) g")
        pg.sql("create index on users (name)")
        s.backup_id = take_backup(wv, s.repo, pg)
        pg.sql("insert into users select g, 'user ' || g from generate_series(101, 150) g")
        pg.switch_wal_and_wait_archived()
        ok = True
        yield s
    finally:
        for srv in s.servers:
            srv.cleanup()
        if not ok:
            print("\n----- primary log -----\n%s" % pg.log()[-20000:])
        pg.cleanup()
        if not os.environ.get("WALVAULT_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


def listing(path):
    """Every file below path with the SHA-256 of its bytes (walvault.repo included)."""
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def drill_processes():
    """Processes whose command line names a drill directory."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "walvault-drill-" in cmd and "pytest" not in cmd:
            found.append((pid, cmd))
    return found


def sql_file(site, name, text):
    p = os.path.join(site.dir, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, 0o644)
    return p


def drill(site, *args, repo=None):
    return bb(site.wv, repo or site.repo, "drill", *args, check=False)


def assert_nothing_left(site):
    assert os.listdir(site.drills) == [], os.listdir(site.drills)
    assert drill_processes() == []


def state(site):
    with open(os.path.join(site.state, "last-drill.json")) as f:
        return json.load(f)


def test_drill_passes(site):
    before = listing(site.repo.path)
    assert "walvault.repo" in before
    count = sql_file(site, "count.sql", "SELECT COUNT(*) FROM users;\n")
    check = sql_file(site, "check.sql", "SELECT count(*) = 150 FROM users;\n"
                                        "SELECT count(*) FROM users WHERE name = 'user 150';\n")
    res = drill(site, "--sql", count, "--sql", check)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "pg_amcheck --all --heapallindexed: ok" in out
    assert re.search(r"count\.sql: statement 1: SELECT 1: 150$", out, re.M), out
    assert re.search(r"check\.sql: statement 1: SELECT 1: t$", out, re.M), out
    assert re.search(r"check\.sql: statement 2: SELECT 1: 1$", out, re.M), out
    m = re.search(r"^drill passed: backup (\S+), target latest, timeline 1$", out, re.M)
    assert m and m.group(1) == site.backup_id, out
    m = re.search(r"restore ([\d.]+) s, recovery ([\d.]+) s, checks ([\d.]+) s, total ([\d.]+) s "
                  r"\(RTO\)", out)
    assert m, out
    restore_s, recovery_s, check_s, total_s = map(float, m.groups())
    assert total_s >= restore_s + recovery_s + check_s - 0.5 and recovery_s > 0
    st = state(site)
    assert st["status"] == "ok" and st["backup"] == site.backup_id
    assert st["target"] == "latest"
    for k in ("restore_s", "recovery_s", "total_s"):
        assert isinstance(st[k], (int, float)) and st[k] >= 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", st["time"])
    assert_nothing_left(site)
    assert listing(site.repo.path) == before


def damaged_copy(site, name):
    """A copy of the repository with one byte of its largest backup object flipped."""
    path = os.path.join(site.dir, name)
    shutil.rmtree(path, ignore_errors=True)
    copy = site.repo.copy_to(path, os.path.join(site.dir, name + ".conf"))
    copy.write_config(site.extra)
    objs = []
    for dirpath, _, files in os.walk(os.path.join(path, "backup")):
        for f in files:
            p = os.path.join(dirpath, f)
            if not f.startswith(".") and "manifest" not in f:
                objs.append((os.path.getsize(p), p))
    size, victim = max(objs)
    flip_byte(victim, size // 2)
    return copy


def test_drill_fails_on_damaged_backup(site):
    copy = damaged_copy(site, "damaged")
    before = listing(copy.path)
    res = drill(site, repo=copy)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "drill FAILED" in res.stdout, res.stdout
    assert "basebackup: error: " in res.stderr
    assert state(site)["status"] == "error"
    assert_nothing_left(site)
    assert listing(copy.path) == before
    # kept, and named, with --keep-on-failure
    res = drill(site, "--keep-on-failure", repo=copy)
    assert res.returncode != 0
    m = re.search(r"kept the drill directory (\S+)", res.stderr)
    assert m and os.path.isdir(m.group(1)), res.stderr
    assert drill_processes() == []
    shutil.rmtree(m.group(1))
    assert_nothing_left(site)


@pytest.mark.parametrize("text,needle", [
    ("SELECT count(*) > 1000 FROM users;\n", r"statement 1 returned false"),
    ("SELECT 1;\nSELEC broken;\n", r'bad\.sql": statement failed: ERROR: +syntax error at or '
                                    r'near "SELEC" LINE 2'),
    ("SELECT 1;\nSELECT 1/0;\n", r'bad\.sql": after statement 1: .*division by zero'),
])
def test_drill_fails_on_sql(site, text, needle):
    before = listing(site.repo.path)
    bad = sql_file(site, "bad.sql", text)
    res = drill(site, "--sql", bad)
    assert res.returncode != 0, res.stdout + res.stderr
    assert re.search(needle, res.stderr), res.stderr
    assert "drill FAILED" in res.stdout
    assert_nothing_left(site)
    res = drill(site, "--sql", bad, "--keep-on-failure")
    assert res.returncode != 0
    m = re.search(r"kept the drill directory (\S+)", res.stderr)
    assert m and os.path.isdir(os.path.join(m.group(1), "data")), res.stderr
    assert drill_processes() == [], "the server of a kept drill is stopped"
    shutil.rmtree(m.group(1))
    assert_nothing_left(site)
    assert listing(site.repo.path) == before


def restored_server(site, name, *restore_args):
    target = os.path.join(site.dir, name)
    res = bb(site.wv, site.repo, "restore", "--pgdata", target, *restore_args)
    srv = Postgres(site.dir, name)
    srv.datadir = target
    site.servers.append(srv)
    srv.conf(port=srv.port, listen_addresses="127.0.0.1", unix_socket_directories="")
    return srv, res


def test_archive_mode_off_and_timeline_after_drill(site):
    pg = site.primary
    pg.sql("insert into users values (1000, 'newest')")
    pg.switch_wal_and_wait_archived()
    res = drill(site)
    assert res.returncode == 0, res.stdout + res.stderr
    # the drill forked nothing into the archive: no target still means timeline 1, to the newest
    srv, res = restored_server(site, "after-drill", "--archive-mode", "off")
    assert "on timeline 1" in res.stdout, res.stdout
    with open(os.path.join(srv.datadir, "postgresql.auto.conf")) as f:
        auto = f.read()
    assert re.search(r"^archive_mode = off$", auto, re.M), auto
    # even with archiving configured in postgresql.conf, the copy does not archive
    srv.conf(archive_mode="on", archive_command=site.wv.archive_command(site.repo.config))
    srv.start()
    wait_until(lambda: srv.sql_value("select pg_is_in_recovery()") is False, timeout=120,
               what="the copy to promote")
    assert srv.sql_value("show archive_mode") == "off"
    assert srv.sql_value("select name from users where id = 1000") == "newest"
    assert srv.sql_value("select count(*) from users") == 151
    srv.sql("insert into users values (2000, 'copy only')")
    srv.sql("select pg_switch_wal()")
    srv.sql("checkpoint")
    srv.stop()
    names = site.repo.wal_names()
    assert not [n for n in names if n.startswith("00000002")], sorted(names)
    # preserve (the default) keeps what the backup had
    res = bb(site.wv, site.repo, "restore", "--pgdata", os.path.join(site.dir, "x"),
             "--archive-mode", "sometimes", check=False)
    assert res.returncode == 2 and "--archive-mode" in res.stderr


def test_mark_then_restore_name(site):
    pg = site.primary
    pg.sql("create table marked (id int)")
    pg.sql("insert into marked select generate_series(1, 7)")
    res = bb(site.wv, site.repo, "mark", "before-more", "-d", connstr(pg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "archived in every repository" in res.stdout
    m = re.search(r"^    (.*) restore --pgdata NEW_DATA_DIR --name before-more$", res.stdout, re.M)
    assert m, res.stdout
    # the restore point is in the archive the moment mark returns
    res2 = bb(site.wv, site.repo, "restore", "--pgdata", os.path.join(site.dir, "dry"), "--name",
              "before-more", "--dry-run")
    assert "restore point \"before-more\"" in res2.stderr + res2.stdout
    pg.sql("insert into marked select generate_series(8, 20)")
    pg.switch_wal_and_wait_archived()
    # the same name again is refused
    again = bb(site.wv, site.repo, "mark", "before-more", "-d", connstr(pg), check=False)
    assert again.returncode == 14 and "already in the archive of repo1" in again.stderr
    # too long, not printable
    bad = bb(site.wv, site.repo, "mark", "x" * 64, "-d", connstr(pg), check=False)
    assert bad.returncode == 2 and "64 bytes" in bad.stderr
    srv, _ = restored_server(site, "marked", "--name", "before-more")
    srv.start()
    wait_until(lambda: srv.sql_value("select pg_is_in_recovery()") is False, timeout=120,
               what="the copy to promote")
    assert srv.sql_value("select count(*) from marked") == 7
    srv.stop()


def test_migrate_safe_runs_and_restores(site):
    pg = site.primary
    pg.sql("create table precious (id int)")
    pg.sql("insert into precious select generate_series(1, 42)")
    psql = pg_bin("psql")
    script = ("%s -X -q -h 127.0.0.1 -p %d -U %s -d postgres -c 'drop table precious' && exit 3"
              % (psql, pg.port, PG_USER))
    res = bb(site.wv, site.repo, "migrate-safe", "--backup", "--label", "pre-test",
             "-d", connstr(pg), "--", "/bin/sh", "-c", script, check=False)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "waiting for checkpoint" in res.stderr
    assert pg.sql_value("select to_regclass('precious') is null")
    m = re.search(r"^    (\S+) -c (\S+) restore --pgdata NEW_DATA_DIR --name "
                  r"(pre-test-\d{8}T\d{6}Z(?:-\d)?)$", res.stderr, re.M)
    assert m, res.stderr
    assert "exited with status 3" in res.stderr
    pg.switch_wal_and_wait_archived()
    target = os.path.join(site.dir, "undo")
    run([m.group(1), "-c", m.group(2), "restore", "--pgdata", target, "--name", m.group(3)])
    srv = Postgres(site.dir, "undo")
    srv.datadir = target
    site.servers.append(srv)
    srv.conf(port=srv.port, listen_addresses="127.0.0.1", unix_socket_directories="")
    srv.start()
    wait_until(lambda: srv.sql_value("select pg_is_in_recovery()") is False, timeout=120,
               what="the copy to promote")
    assert srv.sql_value("select count(*) from precious") == 42
    srv.stop()


def test_migrate_safe_command_not_run_when_db_unreachable(site):
    marker = os.path.join(site.dir, "ran-unreachable")
    res = bb(site.wv, site.repo, "migrate-safe", "-d", "host=127.0.0.1 port=1 user=postgres",
             "--", "/usr/bin/touch", marker, check=False)
    assert res.returncode == 12, res.stdout + res.stderr
    assert "could not connect to the server" in res.stderr
    assert "was not run" in res.stderr
    # one error line naming what failed, then its hint
    errors = [ln for ln in log_lines(res.stderr) if ln.startswith("basebackup: error: ")]
    assert len(errors) == 2 and errors[1].startswith("basebackup: error: hint: "), res.stderr
    assert not os.path.exists(marker)


def test_migrate_safe_command_not_run_when_backup_fails(site):
    ro = os.path.join(site.dir, "ro-repo")
    os.makedirs(ro, exist_ok=True)
    os.chmod(ro, 0o755)  # root's: postgres cannot write there
    conf = os.path.join(site.dir, "ro.conf")
    with open(conf, "w") as f:
        f.write("%s\n[repo1]\ntype = posix\npath = %s\n" % (site.extra, ro))
    os.chmod(conf, 0o644)
    repo = Repo.__new__(Repo)
    repo.path, repo.config = ro, conf
    marker = os.path.join(site.dir, "ran-backup")
    res = bb(site.wv, repo, "migrate-safe", "--backup", "-d", connstr(site.primary), "--",
             "/usr/bin/touch", marker, check=False)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "the backup failed" in res.stderr
    assert not os.path.exists(marker)
    assert os.stat(ro).st_mode & stat.S_IWOTH == 0


def test_migrate_safe_exit_status_and_success(site):
    marker = os.path.join(site.dir, "ran-ok")
    res = bb(site.wv, site.repo, "migrate-safe", "-d", connstr(site.primary), "--",
             "/usr/bin/touch", marker, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert os.path.exists(marker)
    assert re.search(r"restore --pgdata NEW_DATA_DIR --name pre-migration-\d{8}T\d{6}Z(-\d)?$",
                     res.stderr, re.M), res.stderr
    res = bb(site.wv, site.repo, "migrate-safe", "-d", connstr(site.primary), "--",
             "/bin/sh", "-c", "exit 7", check=False)
    assert res.returncode == 7
    res = bb(site.wv, site.repo, "migrate-safe", "-d", connstr(site.primary), check=False)
    assert res.returncode == 2 and "no COMMAND" in res.stderr


def test_drill_as_root_runs_the_server_as_the_repository_owner(site):
    before = listing(site.repo.path)
    res = run(site.wv.cmd("basebackup", "drill", config=site.repo.config), as_postgres=False,
              check=False, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"server as %s on port \d+" % PG_USER, res.stderr), res.stderr
    assert "drill passed" in res.stdout
    assert_nothing_left(site)
    assert listing(site.repo.path) == before


def test_migrate_safe_command_not_run_when_a_repository_misses_the_mark(site):
    """The restore point must reach every repository: one that never receives it is named, and
    COMMAND does not run."""
    missing = os.path.join(site.dir, "repo2-never-archived")
    os.makedirs(missing, exist_ok=True)
    conf = os.path.join(site.dir, "two.conf")
    with open(conf, "w") as f:
        f.write("[global]\nstate_path = %s\narchive_timeout = 3\n\n[repo1]\ntype = posix\n"
                "path = %s\n\n[repo2]\ntype = posix\npath = %s\n"
                % (site.state, site.repo.path, missing))
    os.chmod(conf, 0o644)
    repo = Repo.__new__(Repo)
    repo.path, repo.config = site.repo.path, conf
    marker = os.path.join(site.dir, "ran-missing")
    res = bb(site.wv, repo, "migrate-safe", "-d", connstr(site.primary), "--",
             "/usr/bin/touch", marker, check=False)
    assert res.returncode == 16, res.stdout + res.stderr
    assert re.search(r"repo2: WAL segment [0-9A-F]{24} \(restore point \"pre-migration-\S+\"\) "
                     r"not archived within 3 s", res.stderr), res.stderr
    assert "was not run" in res.stderr
    assert not os.path.exists(marker)
    res = bb(site.wv, repo, "mark", "never-everywhere", "-d", connstr(site.primary), check=False)
    assert res.returncode == 16 and "repo2: WAL segment" in res.stderr, res.stderr


def test_drill_interrupted_cleans_up(site):
    """SIGTERM while the drill's server runs: exit 17 (interrupted), server stopped, directory
    removed, the repository untouched."""
    before = listing(site.repo.path)
    slow = sql_file(site, "slow.sql", "SELECT pg_sleep(5);\n")
    p = popen(site.wv.cmd("basebackup", "drill", "--sql", slow, config=site.repo.config))
    try:
        wait_until(lambda: any("/data" in cmd and "pg_ctl" not in cmd
                               for _, cmd in drill_processes()), timeout=120,
                   what="the drill's server to run")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 17, (out, err)
    assert "interrupted" in err
    assert_nothing_left(site)
    assert listing(site.repo.path) == before


def test_drill_restores_tablespaces_inside_its_directory(site):
    """A backup with a tablespace: the drill maps it into its own directory; the tablespace's real
    location is never written, and nothing is left."""
    pg = site.primary
    loc = make_pg_dir(os.path.join(site.dir, "ts-live"))
    pg.sql("create tablespace drillts location '%s'" % loc)
    pg.sql("create table in_ts (id int) tablespace drillts")
    pg.sql("insert into in_ts select generate_series(1, 33)")
    take_backup(site.wv, site.repo, pg)
    pg.switch_wal_and_wait_archived()
    live_before = listing(loc)
    before = listing(site.repo.path)
    check = sql_file(site, "ts.sql", "SELECT count(*) = 33 FROM in_ts;\n")
    res = drill(site, "--sql", check)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"ts\.sql: statement 1: SELECT 1: t$", res.stdout, re.M), res.stdout
    assert listing(loc) == live_before
    assert_nothing_left(site)
    assert listing(site.repo.path) == before


def test_drill_to_time(site):
    """--to TIME: the copy holds exactly what was committed before TIME."""
    pg = site.primary
    pg.sql("create table timed (id int)")
    pg.sql("insert into timed select generate_series(1, 5)")
    time.sleep(1.2)
    t = time.time()
    time.sleep(1.2)
    pg.sql("insert into timed select generate_series(6, 10)")
    pg.switch_wal_and_wait_archived()
    check = sql_file(site, "timed.sql", "SELECT count(*) = 5 FROM timed;\n")
    res = drill(site, "--to", iso(t), "--sql", check)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "target %s" % iso(t) in res.stdout
    assert state(site)["target"] == iso(t)
    assert_nothing_left(site)


def test_migrate_safe_forwards_sigterm(site):
    """SIGTERM to migrate-safe reaches COMMAND; COMMAND's exit status is migrate-safe's."""
    started = os.path.join(site.dir, "cmd-started")
    # the trap first: the file tells the test that COMMAND can take the signal
    script = 'trap "exit 42" TERM; touch %s; while :; do sleep 0.1; done' % started
    p = popen(site.wv.cmd("basebackup", "migrate-safe", "-d", connstr(site.primary), "--",
                          "/bin/sh", "-c", script, config=site.repo.config))
    try:
        wait_until(lambda: os.path.exists(started), timeout=120, what="COMMAND to start")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 42, (out, err)
    assert "exited with status 42" in err


def test_notify_command_hears_drill_and_migrate_safe(site):
    """The drill's and migrate-safe's events reach notify_command as JSON; a failing hook changes
    no exit status."""
    out = make_pg_dir(os.path.join(site.dir, "events"))
    hook = os.path.join(site.dir, "hook.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\ncat > %s/"$WALVAULT_EVENT.$$.json"\n' % out)
    os.chmod(hook, 0o755)
    bad = os.path.join(site.dir, "bad-hook.sh")
    with open(bad, "w") as f:
        f.write("#!/bin/sh\ncat >/dev/null\nexit 3\n")
    os.chmod(bad, 0o755)

    def conf(h):
        p = os.path.join(site.dir, "notify.conf")
        with open(p, "w") as f:
            f.write("%snotify_command = %s\n\n[repo1]\ntype = posix\npath = %s\n"
                    % (site.extra, h, site.repo.path))
        os.chmod(p, 0o644)
        r = Repo.__new__(Repo)
        r.path, r.config = site.repo.path, p
        return r

    r = conf(hook)
    res = drill(site, repo=r)
    assert res.returncode == 0, res.stdout + res.stderr
    res = bb(site.wv, r, "migrate-safe", "-d", connstr(site.primary), "--", "/bin/sh", "-c",
             "exit 5", check=False)
    assert res.returncode == 5, res.stderr
    events = {}
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as f:
            ev = json.load(f)
        events[ev["event"]] = ev
    assert set(events) == {"drill", "migrate-safe"}, events
    assert events["drill"]["status"] == "ok" and events["drill"]["backup"]
    assert "drill passed" in events["drill"]["message"]
    assert events["migrate-safe"]["status"] == "error"
    assert "exited with status 5" in events["migrate-safe"]["message"]
    r = conf(bad)
    res = drill(site, repo=r)
    assert res.returncode == 0 and "notify_command failed: exit 3" in res.stderr, res.stderr
    res = bb(site.wv, r, "migrate-safe", "-d", connstr(site.primary), "--", "/bin/true",
             check=False)
    assert res.returncode == 0 and "notify_command failed: exit 3" in res.stderr, res.stderr
