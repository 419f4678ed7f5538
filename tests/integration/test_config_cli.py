"""The command-line and configuration contract of wal-push and wal-fetch: bad inputs fail loudly.

wal-push: any error is non-zero. wal-fetch: any error exits >= 126 (outside standby mode), so that
PostgreSQL never takes it for "not found".
"""

import os
import re

import pytest

from utils import chown_pg, make_pg_dir, read_bytes, run


def _ok_fetch_error(rc):
    return rc >= 126


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    chown_pg(path)
    return path


# (id, program, argv builder(seg, dest), stderr regex)
BAD_ARGS = [
    ("push-no-args", "wal-push", lambda seg, dest: [], r"usage|WAL_PATH|argument"),
    ("push-extra-arg", "wal-push", lambda seg, dest: [seg, seg], r"usage|argument"),
    ("push-missing-file", "wal-push",
     lambda seg, dest: [os.path.join(os.path.dirname(seg), "nonexistent", os.path.basename(seg))],
     r"nonexistent/0.*(no such file|not found|could not)|(no such file|not found|could not).*nonexi"),
    ("push-directory", "wal-push", lambda seg, dest: [os.path.dirname(seg)],
     r"files|directory|invalid|not a"),
    ("push-bad-option", "wal-push", lambda seg, dest: ["--bogus", seg], r"bogus|usage|option"),
    ("fetch-no-args", "wal-fetch", lambda seg, dest: [], r"usage|argument"),
    ("fetch-one-arg", "wal-fetch", lambda seg, dest: ["000000010000000000000001"],
     r"usage|argument|DEST"),
    ("fetch-extra-arg", "wal-fetch",
     lambda seg, dest: ["000000010000000000000001", dest, "x"], r"usage|argument"),
    ("fetch-dotdot", "wal-fetch", lambda seg, dest: ["../x", dest], r"\.\./x"),
    ("fetch-word", "wal-fetch", lambda seg, dest: ["foo", dest], r"foo"),
    ("fetch-lowercase", "wal-fetch", lambda seg, dest: ["00000001000000000000000a", dest],
     r"00000001000000000000000a"),
    ("fetch-short", "wal-fetch", lambda seg, dest: ["00000001000000000000001", dest],
     r"00000001000000000000001"),
    ("fetch-slash", "wal-fetch", lambda seg, dest: ["0000000100000000/000000010000000000000001",
                                                    dest], r"0000000100000000/"),
    ("fetch-empty-name", "wal-fetch", lambda seg, dest: ["", dest], r"name|usage|invalid|empty"),
    ("fetch-bad-option", "wal-fetch", lambda seg, dest: ["--bogus", "000000010000000000000001",
                                                         dest], r"bogus|usage|option"),
]


@pytest.mark.parametrize("prog,argv,regex", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments(wv, repo, wal_samples, workdir, prog, argv, regex):
    seg = wal_samples.a_segments[0]
    dest_dir = make_pg_dir(os.path.join(workdir, "dest"))
    dest = os.path.join(dest_dir, "RECOVERYXLOG")
    r = run(wv.cmd(prog, *argv(seg, dest), config=repo.config), check=False, cwd=workdir)
    if prog == "wal-fetch":
        assert _ok_fetch_error(r.returncode), "exit %d: %s" % (r.returncode, r.stderr)
        assert os.listdir(dest_dir) == []
    else:
        assert r.returncode != 0, r.stderr
    assert r.stderr.strip(), "an error without a message"
    assert re.search(regex, r.stderr, re.I), r.stderr
    assert not repo.wal_names(), "something was archived: %s" % repo.wal_names()


# Bad configuration files: (id, text, regex on stderr; FILE stands for the config path).
BAD_CONFIGS = [
    ("unknown-key", "[repo1]\ntype = posix\npath = REPO\ncompres = lz4\n", r"FILE:4.*compres"),
    ("unknown-global-key", "[global]\nlog_levle = info\n\n[repo1]\ntype = posix\npath = REPO\n",
     r"FILE:2.*log_levle"),
    ("unknown-section", "[repo1]\ntype = posix\npath = REPO\n[bogus]\nx = 1\n", r"FILE:4.*bogus"),
    ("bad-type", "[repo1]\ntype = ftp\npath = REPO\n", r"FILE:2.*(type|ftp)"),
    ("relative-path", "[repo1]\ntype = posix\npath = relative/repo\n", r"FILE:3.*path"),
    ("bad-compress", "[global]\ncompress = zip\n[repo1]\ntype = posix\npath = REPO\n",
     r"FILE:2.*compress"),
    ("no-repo", "[global]\ncompress = lz4\n", r"FILE.*repo"),
    ("syntax", "[repo1\ntype = posix\npath = REPO\n", r"FILE:1"),
]


@pytest.mark.parametrize("text,regex", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
@pytest.mark.parametrize("prog", ["wal-push", "wal-fetch"])
def test_bad_config(wv, repo, wal_samples, workdir, prog, text, regex):
    conf = _write(os.path.join(workdir, "bad.conf"), text.replace("REPO", repo.path))
    seg = wal_samples.a_segments[0]
    dest_dir = make_pg_dir(os.path.join(workdir, "dest"))
    if prog == "wal-push":
        r = wv.push(seg, config=conf)
        assert r.returncode != 0, r.stderr
    else:
        r = wv.fetch(os.path.basename(seg), os.path.join(dest_dir, "x"), config=conf, cwd=workdir)
        assert _ok_fetch_error(r.returncode), "exit %d: %s" % (r.returncode, r.stderr)
        assert os.listdir(dest_dir) == []
    assert re.search(regex.replace("FILE", re.escape(conf)), r.stderr), r.stderr
    assert not repo.wal_names()


@pytest.mark.parametrize("prog", ["wal-push", "wal-fetch"])
def test_missing_config_file(wv, wal_samples, workdir, prog):
    conf = os.path.join(workdir, "does-not-exist.conf")
    seg = wal_samples.a_segments[0]
    if prog == "wal-push":
        r = wv.push(seg, config=conf)
        assert r.returncode != 0
    else:
        r = wv.fetch(os.path.basename(seg), os.path.join(workdir, "x"), config=conf, cwd=workdir)
        assert _ok_fetch_error(r.returncode), r.stderr
        assert not os.path.exists(os.path.join(workdir, "x"))
    assert conf in r.stderr, r.stderr


def test_default_config_path_is_used(wv, wal_samples, workdir):
    """Without -c and WALVAULT_CONFIG: /etc/walvault/walvault.conf (absent here, or not ours)."""
    if os.path.exists("/etc/walvault/walvault.conf"):
        pytest.skip("/etc/walvault/walvault.conf exists on this machine")
    r = wv.push(wal_samples.a_segments[0], env={"WALVAULT_CONFIG": None})
    assert r.returncode != 0
    assert "/etc/walvault/walvault.conf" in r.stderr, r.stderr


def test_walvault_config_env(wv, repo, wal_samples, workdir):
    seg = wal_samples.a_segments[0]
    name = os.path.basename(seg)
    r = wv.push(seg, env={"WALVAULT_CONFIG": repo.config})
    assert r.returncode == 0, r.stderr
    assert repo.has(name)
    dest = os.path.join(workdir, "x")
    r = wv.fetch(name, dest, env={"WALVAULT_CONFIG": repo.config}, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert read_bytes(dest) == read_bytes(seg)


def test_config_option_beats_env(wv, repo, wal_samples, workdir):
    bogus = os.path.join(workdir, "nonexistent.conf")
    r = wv.push(wal_samples.a_segments[0], config=repo.config, env={"WALVAULT_CONFIG": bogus})
    assert r.returncode == 0, r.stderr
    assert repo.has(os.path.basename(wal_samples.a_segments[0]))


@pytest.mark.parametrize("opt", ["-c", "--config"])
def test_config_option_spellings(wv, repo, wal_samples, workdir, opt):
    seg = wal_samples.a_segments[1]
    name = os.path.basename(seg)
    r = run([wv.exe("wal-push"), opt, repo.config, seg], check=False,
            env={"WALVAULT_CONFIG": None})
    assert r.returncode == 0, r.stderr
    assert repo.has(name)
    dest = os.path.join(workdir, "x")
    r = run([wv.exe("wal-fetch"), opt, repo.config, name, dest], check=False, cwd=workdir,
            env={"WALVAULT_CONFIG": None})
    assert r.returncode == 0, r.stderr
    assert read_bytes(dest) == read_bytes(seg)


# --version and --help: every program names itself, the project and CMake's project version.
VERSION_RE = r"^%s \(walvault\) \d+\.\d+\.\d+(, protocol \d+)?\n$"


@pytest.mark.parametrize("prog", ["wal-push", "wal-fetch", "basebackup", "walvault-remote"])
@pytest.mark.parametrize("opt", ["--version", "-V"])
def test_version(wv, prog, opt):
    r = run([wv.exe(prog), opt], check=False)
    assert r.returncode == 0, r.stderr
    assert re.match(VERSION_RE % re.escape(prog), r.stdout), repr(r.stdout)
    assert r.stderr == ""


def test_versions_agree(wv):
    versions = {re.search(r"\d+\.\d+\.\d+", run([wv.exe(p), "--version"]).stdout).group(0)
                for p in ["wal-push", "wal-fetch", "basebackup", "walvault-remote"]}
    assert len(versions) == 1, versions


@pytest.mark.parametrize("prog,usage", [
    ("wal-push", "usage: wal-push "), ("wal-fetch", "usage: wal-fetch "),
    ("basebackup", "usage: basebackup "), ("walvault-remote", "usage: walvault-remote ")])
def test_program_help(wv, prog, usage):
    r = run([wv.exe(prog), "--help"], check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(usage), r.stdout


def _subcommands(wv):
    """The subcommands basebackup --help lists (so that one added later is checked too)."""
    out = run([wv.exe("basebackup"), "--help"]).stdout
    return re.findall(r"^  basebackup \[-c FILE\] ([a-z-]+)", out, re.M)


BB_SUBCOMMANDS = ["backup", "list", "restore", "sync", "verify", "expire", "delete", "keep",
                  "check", "status"]


def test_help_lists_subcommands(wv):
    names = _subcommands(wv)
    for s in BB_SUBCOMMANDS:
        assert s in names, names


@pytest.mark.parametrize("opt", ["--help", "-h"])
def test_subcommand_help(wv, opt):
    names = _subcommands(wv)
    assert names
    for s in names:
        r = run([wv.exe("basebackup"), s, opt], check=False)
        assert r.returncode == 0, "%s %s: exit %d: %s" % (s, opt, r.returncode, r.stderr)
        assert r.stdout.startswith("usage: basebackup [-c FILE] %s" % s), (s, r.stdout)


# The man pages (docs/man, plain man(7)) render without a warning and have the sections man needs.
MAN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "man")
MAN_PAGES = ["wal-push.1", "wal-fetch.1", "basebackup.1", "walvault.conf.5"]


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders(page):
    path = os.path.join(MAN_DIR, page)
    env = {"MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    r = run(["man", "--warnings", "-l", path], as_postgres=False, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "man warns about %s:\n%s" % (page, r.stderr)
    text = re.sub(r".\x08", "", r.stdout)
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"]:
        assert re.search(r"^%s$" % section, text, re.M), "%s has no %s section" % (page, section)
    name = page.rsplit(".", 1)[0]
    assert re.search(r"^\s+%s +- +\S" % re.escape(name), text, re.M), text[:400]
    if page.endswith(".1"):
        assert re.search(r"^EXIT STATUS$", text, re.M)
        assert "--version" in text and "--help" in text
    r = run(["groff", "-ww", "-z", "-man", path], as_postgres=False, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_man_pages_name_every_option(wv):
    """Every option a program's --help prints is in its man page."""
    def opts(text):
        return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text))
    for prog, page in [("wal-push", "wal-push.1"), ("wal-fetch", "wal-fetch.1"),
                       ("basebackup", "basebackup.1")]:
        helptext = run([wv.exe(prog), "--help"]).stdout
        if prog == "basebackup":
            for s in _subcommands(wv):
                helptext += run([wv.exe(prog), s, "--help"]).stdout
        src = open(os.path.join(MAN_DIR, page)).read().replace("\\-", "-")
        missing = opts(helptext) - opts(src)
        assert not missing, "%s lacks %s" % (page, sorted(missing))


# The installed routines: systemd units and timers, the crontab and the example configuration.
CONTRIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contrib")
UNITS = {
    "walvault-backup": ("*-*-* 02:00:00", ["backup", "expire"]),
    "walvault-backup-weekly": ("Sun *-*-* 03:00:00", ["backup"]),
    "walvault-drill": ("*-01,04,07,10-01 04:00:00", ["drill"]),
    "walvault-status": ("*-*-* *:00/5:00", ["status"]),
}


def _unit_sections(text):
    """systemd's unit syntax: [Section] then Key=Value lines (repeatable keys kept in order)."""
    sections, cur = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.match(r"^\[([A-Za-z]+)\]$", line)
        if m:
            cur = sections.setdefault(m.group(1), {})
            continue
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        assert cur is not None and m, "line %d is neither a section nor Key=Value: %r" % (n, line)
        cur.setdefault(m.group(1), []).append(m.group(2))
    return sections


@pytest.fixture
def units_dir(wv, workdir):
    """contrib/systemd with @WV_BINDIR@ filled in as cmake --install does."""
    d = os.path.join(workdir, "units")
    os.makedirs(d)
    for name in os.listdir(os.path.join(CONTRIB, "systemd")):
        with open(os.path.join(CONTRIB, "systemd", name)) as f:
            text = f.read()
        assert "@WV_BINDIR@" in text or name.endswith(".timer"), name
        with open(os.path.join(d, name), "w") as f:
            f.write(text.replace("@WV_BINDIR@", os.path.abspath(wv.bindir)))
    return d


def test_systemd_units(wv, units_dir):
    names = sorted(os.listdir(units_dir))
    assert names == sorted(["%s.%s" % (u, t) for u in UNITS for t in ("service", "timer")]), names
    for unit, (calendar, subcommands) in UNITS.items():
        with open(os.path.join(units_dir, unit + ".service")) as f:
            svc = _unit_sections(f.read())
        assert svc["Service"]["Type"] == ["oneshot"]
        assert svc["Service"]["User"] == ["postgres"]
        starts = svc["Service"]["ExecStart"]
        assert [s.split()[3] for s in starts] == subcommands, starts
        for s in starts:
            argv = s.split()
            assert argv[0] == wv.exe("basebackup") and argv[1:3] == ["-c", "/etc/walvault/walvault.conf"]
        with open(os.path.join(units_dir, unit + ".timer")) as f:
            tmr = _unit_sections(f.read())
        assert tmr["Timer"]["Unit"] == [unit + ".service"]
        assert tmr["Install"]["WantedBy"] == ["timers.target"]
        (cal,) = tmr["Timer"]["OnCalendar"]
        r = run(["systemd-analyze", "calendar", cal], as_postgres=False)
        assert "Normalized form: %s" % calendar in r.stdout, r.stdout
    r = run(["systemd-analyze", "verify", "--man=no"] +
            [os.path.join(units_dir, n) for n in names], as_postgres=False, check=False)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_systemd_analyze_catches_a_bad_unit(units_dir):
    """The verify above can fail: a misspelt key and a missing program are reported."""
    path = os.path.join(units_dir, "walvault-drill.service")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("Type=oneshot", "Typo=oneshot").replace("/basebackup ", "/nonexistent "))
    r = run(["systemd-analyze", "verify", "--man=no", path], as_postgres=False, check=False)
    assert r.returncode != 0 or r.stderr.strip(), r.stderr
    assert "Typo" in r.stderr and "nonexistent" in r.stderr, r.stderr


def test_crontab_example():
    with open(os.path.join(CONTRIB, "cron", "walvault")) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip() and not ln.startswith("#")]
    env = [ln for ln in lines if re.match(r"^[A-Z_]+=", ln)]
    jobs = [ln.split(None, 6) for ln in lines if ln not in env]
    assert "WALVAULT_CONFIG=/etc/walvault/walvault.conf" in env
    assert [j[5] for j in jobs] == ["postgres"] * 4, jobs
    schedules = [" ".join(j[:5]) for j in jobs]
    assert schedules == ["0 2 * * *", "0 3 * * 0", "0 4 1 1,4,7,10 *", "*/5 * * * *"], schedules
    assert "basebackup backup" in jobs[0][6] and "&& basebackup expire" in jobs[0][6]
    for j in jobs:
        assert j[6].rstrip().endswith(">/dev/null"), "a job that mails its output: %s" % j[6]


def _readme_keys():
    with open(os.path.join(CONTRIB, "..", "README.md")) as f:
        text = f.read()
    text = text[text.index("## Configuration reference"):text.index("## Monitoring")]
    return set(re.findall(r"^\| `([a-z_.A-Z]+)` \|", text, re.M))


def test_example_config_names_every_key():
    with open(os.path.join(CONTRIB, "walvault.conf.example")) as f:
        text = f.read()
    assert not [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")], \
        "the example sets something: every key must be commented"
    keys = set(re.findall(r"^# ([a-z_.]+) = ", text, re.M))
    keys |= {"label.PREFIX"} if "label.weekly" in keys else set()
    missing = _readme_keys() - keys
    assert not missing, "walvault.conf.example lacks %s" % sorted(missing)


def test_example_config_uncommented_loads(wv, workdir):
    """[global], [repo1] (posix), [retention] and [monitor] of the example, uncommented, load."""
    with open(os.path.join(CONTRIB, "walvault.conf.example")) as f:
        text = f.read()
    repo = make_pg_dir(os.path.join(workdir, "repo"))
    out, keep = [], True
    for ln in text.splitlines():
        m = re.match(r"^# \[([a-z0-9]+)\]$", ln)
        if m:
            keep = m.group(1) in ("global", "repo1", "retention", "monitor")
        if keep and ln.startswith("# "):
            ln = ln[2:]
            if ln.startswith("path = "):
                ln = "path = " + repo
            if ln.startswith("notify_command") or ln.startswith("encrypt_"):
                continue  # a program to run; key files to create (and two modes exclude each other)
            if ln.startswith("state_path"):
                ln = "state_path = " + os.path.join(workdir, "state")
        out.append(ln)
    conf = _write(os.path.join(workdir, "example.conf"), "\n".join(out) + "\n")
    r = run(wv.cmd("basebackup", "list", config=conf), check=False)
    assert r.returncode in (0, 1), "exit %d: %s" % (r.returncode, r.stderr)
    assert "configuration" not in r.stderr and "unknown key" not in r.stderr, r.stderr
