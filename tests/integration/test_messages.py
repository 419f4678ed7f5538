"""Messages and logs against a real PostgreSQL 15.

- [global] log_file: wal-push, run by PostgreSQL as archive_command, appends its lines there with a
  timestamp, while its stderr (PostgreSQL's log, which stamps lines itself) has none.
- backup off a terminal (cron): nothing on stderr, one summary line on stdout; the checkpoint
  announcement ("waiting for checkpoint (spread: up to about N s; ...)", N = checkpoint_timeout *
  checkpoint_completion_target read from the server) goes to the log file only; "(fast)" likewise.
- backup on a terminal: the announcement, then the elapsed seconds of the wait drawn in place.
- basebackup's stderr lines carry an ISO 8601 timestamp off a terminal.
- list: no gap between two backups when nothing was committed after the first.
"""
import os
import pty
import re
import select
import subprocess
import time

import pytest

from utils import Repo, _as_pg_kwargs, _env, make_pg_dir, run, wait_until

pytestmark = pytest.mark.xdist_group("messages")

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "


def connstr(pg):
    return "host=127.0.0.1 port=%d user=postgres dbname=postgres" % pg.port


@pytest.fixture
def site(pg_factory, wv, workdir):
    logdir = make_pg_dir(os.path.join(workdir, "log"), 0o755)
    log = os.path.join(logdir, "walvault.log")
    conf = os.path.join(workdir, "walvault.conf")
    repo = Repo(os.path.join(workdir, "repo"), conf, extra_config="[global]\nlog_file = %s\n" % log)
    pg = pg_factory.new("pg").initdb()
    # a spread checkpoint of about 3 s
    pg.conf(archive_mode="on", archive_timeout=0, archive_command=wv.archive_command(conf),
            checkpoint_timeout="30s", checkpoint_completion_target="0.1")
    pg.start()
    return pg, repo, log


def read(path):
    with open(path) as f:
        return f.read()


def test_wal_push_writes_log_file(site, wv):
    pg, repo, log = site
    pg.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
    pg.switch_wal_and_wait_archived()
    st = os.stat(log)
    assert st.st_mode & 0o777 == 0o640
    lines = read(log).splitlines()
    pushed = [ln for ln in lines if re.match(STAMP + r"wal-push: archived [0-9A-F]{24} to ", ln)]
    assert pushed, read(log)
    # every line of the file is stamped and whole
    for ln in lines:
        assert re.match(STAMP + r"(wal-push|wal-fetch|basebackup): ", ln), ln
    # PostgreSQL's log holds the same lines without a stamp of ours
    wait_until(lambda: "wal-push: archived" in pg.log(), what="wal-push's line in the server log")
    for ln in pg.log().splitlines():
        if "wal-push: " in ln:
            assert not re.match(r".*" + STAMP + "wal-push: ", ln), ln

    # wal-push run by hand on a file that is not there: an unstamped error on stderr, stamped in
    # the file
    res = wv.push(os.path.join(pg.datadir, "pg_wal", "000000010000000000000099"), config=repo.config)
    assert res.returncode != 0
    assert res.stderr.startswith("wal-push: error: "), res.stderr
    assert re.search(STAMP + "wal-push: error: ", read(log)), read(log)


def test_log_file_unopenable_is_a_warning(site, wv, workdir):
    pg, repo, log = site
    repo.write_config("[global]\nlog_file = /nonexistent-dir/walvault.log\n")
    res = run(wv.cmd("basebackup", "list", config=repo.config), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"basebackup: warning: cannot open log file \"/nonexistent-dir/walvault.log\"",
                     res.stderr), res.stderr


def test_backup_under_cron_is_silent(site, wv):
    pg, repo, log = site
    pg.sql("CREATE TABLE t AS SELECT generate_series(1, 200000) AS i")
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), config=repo.config), check=False,
              timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == "", res.stderr
    out = res.stdout.splitlines()
    assert len(out) == 1 and re.match(r"backup \S+ complete: ", out[0]), res.stdout
    text = read(log)
    assert re.search(STAMP + re.escape("basebackup: waiting for checkpoint (spread: up to about 3 s;"
                                       " --checkpoint fast to start now)"), text), text

    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                     config=repo.config), check=False, timeout=300)
    assert res.returncode == 0 and res.stderr == "", res.stdout + res.stderr
    assert re.search(STAMP + re.escape("basebackup: waiting for checkpoint (fast)"), read(log))


def test_basebackup_stamps_stderr_off_a_terminal(site, wv):
    pg, repo, log = site
    res = run(wv.cmd("basebackup", "backup", "-d", "host=127.0.0.1 port=1 user=postgres",
                     config=repo.config), check=False)
    assert res.returncode != 0
    lines = res.stderr.splitlines()
    assert lines and all(re.match(STAMP + "basebackup: ", ln) for ln in lines), res.stderr


def run_on_terminal(argv, timeout=120):
    """Run argv as postgres with stderr on a pseudo-terminal; returns (rc, stdout, terminal)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=slave, env=_env(), cwd="/", **_as_pg_kwargs())
    os.close(slave)
    term = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            term += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    out = p.stdout.read().decode()
    rc = p.wait(timeout=30)
    return rc, out, term.decode(errors="replace")


def test_backup_on_a_terminal_shows_the_wait(site, wv):
    pg, repo, log = site
    # enough dirty buffers that the spread checkpoint takes its 3 s
    pg.sql("CREATE TABLE t AS SELECT generate_series(1, 2000000) AS i")
    rc, out, term = run_on_terminal(wv.cmd("basebackup", "backup", "-d", connstr(pg),
                                           config=repo.config))
    assert rc == 0, out + term
    assert re.match(r"backup \S+ complete: ", out), out
    # no timestamp on a terminal
    assert term.startswith("basebackup: waiting for checkpoint (spread: up to about 3 s; "
                           "--checkpoint fast to start now)"), term
    assert re.search(r"\rwaiting for checkpoint: [1-9]\d* s", term), term
    # then the transfer's progress
    assert re.search(r"\r\s*\d+\.\d%\s+[\d.]+ MiB", term), term


def test_list_no_gap_without_commits_between_backups(site, wv):
    """Two backups with nothing committed after the first: list shows one window reaching the
    second backup, and no gap (before, the first window ended at its last commit and the second
    began at the second backup's end, which read as a hole between them)."""
    pg, repo, log = site
    pg.conf(autovacuum="off")
    pg.stop()
    pg.start()
    pg.sql("CREATE TABLE t AS SELECT 1 AS i")
    pg.switch_wal_and_wait_archived()
    for _ in range(2):
        res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                         config=repo.config), check=False, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        time.sleep(1.1)  # a new backup id
    # (no switch_wal_and_wait_archived here: its marker would commit; backup waits for its WAL)
    res = run(wv.cmd("basebackup", "list", config=repo.config))
    windows = re.findall(r"^    timeline 1: .*$", res.stdout, re.M)
    assert len(windows) == 1, res.stdout
    assert "gap in the archive" not in res.stdout and "is missing" not in res.stdout, res.stdout
