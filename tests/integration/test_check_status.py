"""basebackup check, basebackup status and notify_command against a real PostgreSQL 15.

check: passes on a good setup; fails naming the step for archive_mode off, an archive_command that
names another configuration file, a repository the user cannot write, and a repository the
switched WAL never reaches (named); backup refuses before BASE_BACKUP when archiving is off or
archive_command does not run wal-push, and warns when it runs it with another configuration file.
status: ok right after a backup; warning and critical by age under a shifted clock
(WALVAULT_TEST_NOW); a repository down is reported while the other is shown; exit codes 0/1/2/3;
the --prometheus textfile checked by a strict parser; --json.
notify_command: the hook receives one valid JSON object; a failing hook does not fail the backup.
"""
import json
import os
import re
import shutil
import stat
import time

import pytest

from utils import PG_USER, Repo, make_pg_dir, run, wait_until

pytestmark = pytest.mark.xdist_group("check_status")


def connstr(pg):
    return "host=127.0.0.1 port=%d user=%s dbname=postgres" % (pg.port, PG_USER)


def cluster(pg_factory, wv, config, archive_command=None, archive_mode="on"):
    pg = pg_factory.new("pg").initdb()
    pg.conf(archive_mode=archive_mode, archive_timeout=0,
            archive_command=archive_command or wv.archive_command(config))
    pg.start()
    return pg


def check(wv, config, pg, env=None):
    return run(wv.cmd("basebackup", "check", "-d", connstr(pg), config=config), check=False,
               env=env, timeout=120)


def two_repos(workdir, extra=""):
    """A configuration with repo1 and repo2 (posix), and one with repo1 only."""
    r1 = make_pg_dir(os.path.join(workdir, "repo1"))
    r2 = make_pg_dir(os.path.join(workdir, "repo2"))
    both = os.path.join(workdir, "both.conf")
    only1 = os.path.join(workdir, "only1.conf")
    with open(both, "w") as f:
        f.write(extra + "[repo1]\ntype = posix\npath = %s\n\n[repo2]\ntype = posix\npath = %s\n"
                % (r1, r2))
    with open(only1, "w") as f:
        f.write(extra + "[repo1]\ntype = posix\npath = %s\n" % r1)
    return r1, r2, both, only1


# --- check --------------------------------------------------------------------------------------

def test_check_passes(pg_factory, wv, repo):
    pg = cluster(pg_factory, wv, repo.config)
    res = check(wv, repo.config, pg)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "check passed"
    for want in ("ok: configuration ", "ok: repo1 (", "ok: PostgreSQL 15.", "ok: archive_mode = on",
                 "ok: archive_command runs ", "ok: WAL "):
        assert any(line.startswith(want) for line in lines), (want, res.stdout)
    m = re.search(r"ok: WAL ([0-9A-F]{24}) switched and archived in repo1", res.stdout)
    assert m and repo.has(m.group(1))
    assert res.stderr == ""
    # the probe object is gone
    probe_dir = os.path.join(repo.path, "check")
    assert not os.path.exists(probe_dir) or os.listdir(probe_dir) == []
    # twice in a row: the second switch still produces a segment (nothing written in between)
    res2 = check(wv, repo.config, pg)
    assert res2.returncode == 0, res2.stdout + res2.stderr
    m2 = re.search(r"ok: WAL ([0-9A-F]{24}) switched", res2.stdout)
    assert m2.group(1) > m.group(1)


def test_check_archive_mode_off(pg_factory, wv, repo):
    pg = cluster(pg_factory, wv, repo.config, archive_mode="off")
    res = check(wv, repo.config, pg)
    assert res.returncode == 13, res.stdout + res.stderr
    assert "archive_mode is off on the server: no WAL is archived" in res.stderr
    assert "ALTER SYSTEM SET archive_mode = on" in res.stderr
    assert "ok: repo1 (" in res.stdout and "ok: WAL" not in res.stdout
    assert res.stdout.splitlines()[-1] == "check failed: 1 problem"


def test_backup_refuses_before_streaming_when_archiving_is_off(pg_factory, wv, repo):
    pg = cluster(pg_factory, wv, repo.config, archive_mode="off")
    t0 = time.monotonic()
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                     config=repo.config), check=False)
    assert res.returncode == 13, res.stderr
    assert "archive_mode is off" in res.stderr
    assert time.monotonic() - t0 < 20
    assert not os.path.exists(os.path.join(repo.path, "backup")) or \
        os.listdir(os.path.join(repo.path, "backup")) == []


def test_check_archive_command_other_config(pg_factory, wv, repo, workdir):
    other = Repo(os.path.join(workdir, "other"), os.path.join(workdir, "other.conf"))
    pg = cluster(pg_factory, wv, repo.config, archive_command=wv.archive_command(other.config))
    res = check(wv, repo.config, pg)
    assert res.returncode == 13, res.stdout + res.stderr
    assert ("runs wal-push with another configuration file (%s, not %s)"
            % (other.config, repo.config)) in res.stderr
    assert "ALTER SYSTEM SET archive_command = '%s'" % wv.archive_command(repo.config) \
        in res.stderr
    # backup only warns (another file may name the same repositories), then times out waiting
    # for WAL that went elsewhere, naming the segment
    repo.write_config("[global]\narchive_timeout = 3\n")
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                     config=repo.config), check=False)
    assert res.returncode == 16, res.stderr
    assert "basebackup: warning: archive_command" in res.stderr
    assert "another configuration file" in res.stderr
    assert re.search(r"WAL file [0-9A-F]{24} was not archived in repo1 within 3 seconds",
                     res.stderr)


def test_check_archive_command_not_wal_push(pg_factory, wv, repo):
    pg = cluster(pg_factory, wv, repo.config, archive_command="cp %p /tmp/nowhere/%f")
    res = check(wv, repo.config, pg)
    assert res.returncode == 13
    assert "does not run this installation's wal-push" in res.stderr


def test_check_unwritable_repository(pg_factory, wv, repo):
    pg = cluster(pg_factory, wv, repo.config)
    os.chmod(repo.path, 0o555)  # check runs as postgres, the owner, who cannot write now
    try:
        res = check(wv, repo.config, pg)
    finally:
        os.chmod(repo.path, 0o700)
    assert res.returncode != 0, res.stdout
    err = res.stderr.splitlines()
    assert err[0].startswith("basebackup: repo1") or "repo1" in err[0], res.stderr
    assert "ermission denied" in err[0]
    assert "must be able to write to %s" % repo.path in res.stderr
    assert "ok: repo1" not in res.stdout


def test_check_names_the_repository_the_wal_never_reaches(pg_factory, wv, workdir):
    r1, r2, both, only1 = two_repos(workdir, "[monitor]\ncheck_timeout = 5s\n\n")
    # archive_command pushes to repo1 only, through a configuration that lacks repo2; check is
    # run with the configuration of both. So that the command passes the archive_command step,
    # the hook is wal-push with both.conf that a wrapper swaps for only1.conf.
    wrapper = os.path.join(workdir, "push-only1.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s -c %s \"$1\"\n" % (wv.exe("wal-push"), only1))
    os.chmod(wrapper, 0o755)
    pg = cluster(pg_factory, wv, both,
                 archive_command="%s %%p || %s" % (wrapper, wv.archive_command(both) + " --never"))
    # the command: the wrapper (repo1 only) succeeds, so the wal-push of both.conf never runs
    res = check(wv, both, pg)
    assert res.returncode == 16, res.stdout + res.stderr
    assert re.search(r"ok: WAL [0-9A-F]{24} switched and archived in repo1", res.stdout)
    assert re.search(r"WAL file [0-9A-F]{24} did not arrive in repo2 within 5 s", res.stderr), \
        res.stderr
    assert "pg_stat_archiver" in res.stderr


# --- notify_command -------------------------------------------------------------------------------

def hook(workdir, name, body):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


def test_notify_receives_json_and_a_failing_hook_does_not_fail_the_backup(pg_factory, wv, repo,
                                                                         workdir):
    out = os.path.join(workdir, "events")
    make_pg_dir(out)
    ok_hook = hook(workdir, "hook.sh", 'cat > %s/"$WALVAULT_EVENT.$$.json"' % out)
    repo.write_config("[global]\nnotify_command = %s\n" % ok_hook)
    pg = cluster(pg_factory, wv, repo.config)
    res = check(wv, repo.config, pg, env={"AWS_SECRET_ACCESS_KEY": "topsecret"})
    assert res.returncode == 0, res.stderr
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                     config=repo.config), check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    # expire (with a policy, so that it runs) tells the hook too
    repo.write_config("[global]\nnotify_command = %s\n\n[retention]\ndaily = 30d\n" % ok_hook)
    res = run(wv.cmd("basebackup", "expire", config=repo.config), check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    repo.write_config("[global]\nnotify_command = %s\n" % ok_hook)
    events = {}
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as f:
            text = f.read()
        assert "topsecret" not in text
        ev = json.loads(text)
        events[ev["event"]] = ev
    assert set(events) == {"check", "backup", "expire"}
    for ev in events.values():
        assert ev["status"] == "ok"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", ev["time"])
        assert isinstance(ev["message"], str) and ev["message"]
    assert re.match(r"^\d{8}T\d{6}Z$", events["backup"]["backup"])

    bad = hook(workdir, "bad.sh", "cat >/dev/null; echo hook broke >&2; exit 3")
    repo.write_config("[global]\nnotify_command = %s\n" % bad)
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                     config=repo.config), check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "notify_command failed: exit 3 (the event was \"backup\" with status ok)" in res.stderr
    # an error event: archiving off -> backup fails, the hook hears about it
    repo.write_config("[global]\nnotify_command = %s\n" % ok_hook)
    shutil.rmtree(out)
    make_pg_dir(out)
    pg.conf(archive_mode="off")
    pg.stop()
    pg.start()
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), config=repo.config), check=False)
    assert res.returncode == 13
    (name,) = os.listdir(out)
    with open(os.path.join(out, name)) as f:
        ev = json.load(f)
    assert ev["event"] == "backup" and ev["status"] == "error"
    assert "archive_mode is off" in ev["message"]


# --- status ---------------------------------------------------------------------------------------

PROM_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
PROM_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|'
                         r'\\["\\n])*)"\})? (\S+)$')


def parse_prom(text):
    """A strict reader of the textfile format node_exporter accepts: {(name, label): value}."""
    assert text.endswith("\n")
    samples, types, helps, current = {}, set(), set(), None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert PROM_NAME.match(name) and name not in helps, line
            helps.add(name)
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name == current and name not in types and typ in ("gauge", "counter"), line
            types.add(name)
        else:
            assert not line.startswith("#"), line
            m = PROM_SAMPLE.match(line)
            assert m, line
            name, label = m.group(1), m.group(4)
            assert name == current, "sample %s outside its family" % line  # grouped
            assert name.startswith("walvault_")
            key = (name, label)
            assert key not in samples, line
            samples[key] = float(m.group(5))
    return samples


def status(wv, config, *args, env=None):
    return run(wv.cmd("basebackup", "status", *args, config=config), check=False, env=env,
               timeout=120)


def take_backup(wv, config, pg):
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                     config=config), check=False, timeout=300)
    assert res.returncode == 0, res.stderr
    return res


def test_status_levels_by_age(pg_factory, wv, repo, workdir):
    pg = cluster(pg_factory, wv, repo.config)
    take_backup(wv, repo.config, pg)
    now = int(time.time())
    d = ["-d", connstr(pg)]
    res = status(wv, repo.config, *d)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^repo1 \(posix %s\): OK$" % re.escape(repo.path), res.stdout, re.M)
    assert re.search(r"^  backup:    \d{8}T\d{6}Z, \d+ s ago, ", res.stdout, re.M), res.stdout
    assert re.search(r"^  wal:       [0-9A-F]{24}, archived \d+ s ago \(object mtime\), 0 "
                     r"completed segments not archived$", res.stdout, re.M), res.stdout
    assert re.search(r"^  space:     .* used, .* free$", res.stdout, re.M)
    assert "rto: never measured" in res.stdout
    assert res.stdout.splitlines()[-1] == "status: OK"

    res = status(wv, repo.config, "--json", *d)
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    assert doc["status"] == "OK" and doc["exit_code"] == 0
    (r1,) = doc["repositories"]
    assert r1["up"] and r1["last_backup"]["size"] > 0 and r1["bytes"] > r1["last_backup"]["stored_size"]
    assert r1["free_bytes"] > 0 and r1["segments_behind"] == 0 and r1["rpo_s"] == 0
    assert doc["server"]["failed_count"] == 0

    # a shifted clock: 25.5 h later a warning, 27 h later critical (the server idle: WAL age
    # does not count while nothing waits)
    env = {"WALVAULT_TEST_NOW": str(now + 25 * 3600 + 1800)}
    res = status(wv, repo.config, *d, env=env)
    assert res.returncode == 1, res.stdout
    assert "warning: the newest backup is 25 h 30 min old (backup_warn_age = 25h)" in res.stdout
    env = {"WALVAULT_TEST_NOW": str(now + 27 * 3600)}
    res = status(wv, repo.config, *d, env=env)
    assert res.returncode == 2, res.stdout
    assert "critical: the newest backup is 27 h 0 min old (backup_max_age = 26h)" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("status: CRITICAL: repo1: critical: the newest")
    # without -d the server's activity is unknown: 20 minutes without WAL is a warning
    env = {"WALVAULT_TEST_NOW": str(now + 1200)}
    res = status(wv, repo.config, env=env)
    assert res.returncode == 1, res.stdout
    assert "warning: nothing archived for 20 min (wal_warn_age = 15m)" in res.stdout

    # thresholds from [monitor]
    repo.write_config("[monitor]\nbackup_max_age = 2h\nbackup_warn_age = 1h\n")
    env = {"WALVAULT_TEST_NOW": str(now + 5400)}
    res = status(wv, repo.config, *d, env=env)
    assert res.returncode == 1 and "(backup_warn_age = 1h)" in res.stdout, res.stdout

    # the textfile
    prom = os.path.join(workdir, "walvault.prom")
    res = status(wv, repo.config, *d, "--prometheus", prom, env=env)
    assert res.returncode == 1
    with open(prom) as f:
        m = parse_prom(f.read())
    assert m[("walvault_status", None)] == 1
    assert m[("walvault_repo_up", "repo1")] == 1
    assert 5400 <= m[("walvault_last_backup_age_seconds", "repo1")] < 5400 + 120
    assert m[("walvault_last_wal_archived_age_seconds", "repo1")] >= 5400
    assert m[("walvault_repo_bytes", "repo1")] > 0
    assert m[("walvault_repo_free_bytes", "repo1")] > 0
    assert m[("walvault_wal_segments_behind", "repo1")] == 0
    assert stat.S_IMODE(os.stat(prom).st_mode) == 0o644
    assert os.listdir(workdir).count("walvault.prom") == 1
    assert not [n for n in os.listdir(workdir) if "wvtmp" in n]


def test_status_archiving_stuck_while_the_server_writes(pg_factory, wv, repo):
    pg = cluster(pg_factory, wv, repo.config)
    take_backup(wv, repo.config, pg)
    # archiving breaks (wal-push never runs), the server keeps writing
    pg.conf(archive_command="false && " + wv.archive_command(repo.config))
    pg.sql("select pg_reload_conf()")
    for _ in range(3):
        pg.sql("create table if not exists t (i int); insert into t select generate_series(1, 100)")
        pg.sql("select pg_switch_wal()")
    wait_until(lambda: pg.archiver_stats()["failed_count"] >= 1, timeout=60,
               what="archive failures")
    res = status(wv, repo.config, "-d", connstr(pg),
                 env={"WALVAULT_TEST_NOW": str(int(time.time()) + 7200)})
    assert res.returncode == 2, res.stdout
    assert re.search(r"[1-9]\d* completed segments? not archived", res.stdout), res.stdout
    assert "critical: nothing archived for 2 h " in res.stdout and "while the server writes" \
        in res.stdout
    assert "archive_command is failing (pg_stat_archiver: last failure" in res.stdout
    assert re.search(r"^server: primary, current WAL [0-9A-F]{24}, pg_stat_archiver "
                     r"failed_count [1-9]", res.stdout, re.M), res.stdout


def test_status_one_repository_down_the_other_shown(pg_factory, wv, workdir):
    r1, r2, both, _ = two_repos(workdir)
    out = os.path.join(workdir, "events")
    make_pg_dir(out)
    h = hook(workdir, "hook.sh", 'cat > %s/"$WALVAULT_EVENT.json"' % out)
    with open(both) as f:
        text = f.read()
    with open(both, "w") as f:
        f.write("[global]\nnotify_command = %s\n\n" % h + text)
    pg = cluster(pg_factory, wv, both)
    take_backup(wv, both, pg)
    os.remove(os.path.join(out, "backup.json"))
    os.chmod(r2, 0)
    try:
        res = status(wv, both)
        jres = status(wv, both, "--json")
        prom = os.path.join(workdir, "s.prom")
        status(wv, both, "--prometheus", prom)
    finally:
        os.chmod(r2, 0o700)
    assert res.returncode == 2, res.stdout + res.stderr
    assert re.search(r"^repo1 \(posix %s\): OK$" % re.escape(r1), res.stdout, re.M), res.stdout
    assert re.search(r"^repo2 \(posix %s\): CRITICAL$" % re.escape(r2), res.stdout, re.M)
    assert re.search(r"^  error:     .*ermission denied", res.stdout, re.M), res.stdout
    assert res.stdout.count("  backup:    ") == 1  # repo1's, shown
    doc = json.loads(jres.stdout)
    assert [r["up"] for r in doc["repositories"]] == [True, False]
    assert doc["repositories"][0]["last_backup"]["id"]
    with open(prom) as f:
        m = parse_prom(f.read())
    assert m[("walvault_repo_up", "repo1")] == 1 and m[("walvault_repo_up", "repo2")] == 0
    assert ("walvault_last_backup_age_seconds", "repo1") in m
    assert ("walvault_last_backup_age_seconds", "repo2") not in m
    assert m[("walvault_status", None)] == 2
    # critical: the hook heard about it
    with open(os.path.join(out, "status.json")) as f:
        ev = json.load(f)
    assert ev["event"] == "status" and ev["status"] == "error" and ev["repo"] == "repo2"
    assert "repo2: critical: unreachable" in ev["message"]
    # --repo 1 alone is fine
    assert status(wv, both, "--repo", "1").returncode == 0


def test_status_unknown_and_rto(wv, repo, workdir):
    res = status(wv, os.path.join(workdir, "missing.conf"))
    assert res.returncode == 3
    assert res.stdout.startswith("status: UNKNOWN: ")
    assert status(wv, repo.config, "--bogus").returncode == 3
    assert status(wv, repo.config, "--repo", "7").returncode == 3
    res = status(wv, repo.config, "-d", "host=127.0.0.1 password=hunter2")
    assert res.returncode == 3 and "contains a password" in res.stderr
    res = check(wv, repo.config, type("pg", (), {"port": 1})())  # an unreachable server
    assert res.returncode == 12 and "could not connect to the server" in res.stderr
    # an empty repository: critical (no backup, nothing archived)
    res = status(wv, repo.config)
    assert res.returncode == 2 and "critical: no complete backup" in res.stdout
    # a textfile that cannot be written: unknown, and said on stderr
    res = status(wv, repo.config, "--prometheus", os.path.join(workdir, "nodir", "x.prom"))
    assert res.returncode == 3 and "nodir/" in res.stderr
    # the RTO of the last drill, from the local state directory
    state = make_pg_dir(os.path.join(workdir, "state"))
    repo.write_config("[global]\nstate_path = %s\n" % state)
    with open(os.path.join(state, "last-drill.json"), "w") as f:
        json.dump({"status": "ok", "time": "2026-11-25T03:00:00Z", "total_s": 42.5}, f)
    res = status(wv, repo.config)
    assert "rto: 42 s (drill of 2026-11-25T03:00:00Z)" in res.stdout or \
        "rto: 43 s (drill of 2026-11-25T03:00:00Z)" in res.stdout, res.stdout
    prom = os.path.join(workdir, "r.prom")
    status(wv, repo.config, "--prometheus", prom)
    with open(prom) as f:
        assert parse_prom(f.read())[("walvault_last_drill_rto_seconds", None)] == 42.5
    # a failed drill measures nothing
    with open(os.path.join(state, "last-drill.json"), "w") as f:
        json.dump({"status": "error", "time": "2026-11-26T03:00:00Z", "total_s": 7}, f)
    assert "rto: never measured" in status(wv, repo.config).stdout
    os.remove(os.path.join(state, "last-drill.json"))
    assert "rto: never measured" in status(wv, repo.config).stdout


# --- contrib/notify examples ----------------------------------------------------------------------

NOTIFY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contrib",
                          "notify")
EVENT = json.dumps({"event": "backup", "status": "error", "message": "repo2: \"x\" failed",
                    "time": "2026-11-25T02:00:00Z", "host": "db1", "program": "basebackup"})


class Catcher:
    """A local HTTP server that records each POST (headers, body)."""

    def __init__(self):
        import http.server
        import threading
        got = self.got = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                got.append((dict(self.headers), self.rfile.read(n).decode()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/" % self.srv.server_port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


def test_contrib_notify_examples(workdir):
    token = os.path.join(workdir, "token")
    with open(token, "w") as f:
        f.write("tok123\n")
    os.chmod(token, 0o600)
    c = Catcher()
    try:
        res = run(["sh", os.path.join(NOTIFY_DIR, "betterstack.sh")], as_postgres=False,
                  input=EVENT, env={"TOKEN_FILE": token, "URL": c.url})
        assert res.returncode == 0, res.stderr
        headers, body = c.got[0]
        assert headers["Authorization"] == "Bearer tok123"
        assert json.loads(body) == json.loads(EVENT)

        url = os.path.join(workdir, "slack.url")
        with open(url, "w") as f:
            f.write(c.url + "\n")
        res = run(["sh", os.path.join(NOTIFY_DIR, "slack.sh")], as_postgres=False, input=EVENT,
                  env={"URL_FILE": url})
        assert res.returncode == 0, res.stderr
        text = json.loads(c.got[1][1])["text"]
        assert text == 'walvault backup on db1: ERROR\nrepo2: "x" failed'
        ok_event = EVENT.replace('"error"', '"ok"')
        run(["sh", os.path.join(NOTIFY_DIR, "slack.sh")], as_postgres=False, input=ok_event,
            env={"URL_FILE": url})
        assert len(c.got) == 2  # successes are not posted
    finally:
        c.close()

    # mail: a stand-in mail(1) on PATH records its arguments and stdin
    fake = make_pg_dir(os.path.join(workdir, "fakebin"), 0o755)
    out = os.path.join(workdir, "mail.out")
    with open(os.path.join(fake, "mail"), "w") as f:
        f.write('#!/bin/sh\n{ echo "ARGS $*"; cat; } > %s\n' % out)
    os.chmod(os.path.join(fake, "mail"), 0o755)
    env = {"PATH": fake + ":/usr/bin:/bin"}
    res = run(["sh", os.path.join(NOTIFY_DIR, "mail.sh"), "dba@example.com"], as_postgres=False,
              input=EVENT, env=env)
    assert res.returncode == 0, res.stderr
    with open(out) as f:
        lines = f.read().splitlines()
    assert lines[0] == "ARGS -s walvault: backup failed on db1 dba@example.com"
    assert json.loads(lines[1]) == json.loads(EVENT)
    os.remove(out)
    run(["sh", os.path.join(NOTIFY_DIR, "mail.sh"), "dba@example.com"], as_postgres=False,
        input=EVENT.replace('"error"', '"ok"'), env=env)
    assert not os.path.exists(out)
