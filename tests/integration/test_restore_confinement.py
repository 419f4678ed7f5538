"""A hostile or damaged repository cannot make restore (or the remote helper) write outside its
targets, apply modes PostgreSQL would not, or delete what is not a data directory of the backup.

Each mutilation takes a copy of a clean repository (a primary with one tablespace, one backup),
rewrites the backup's manifest with its end digest recomputed (so only the attack is tested), runs
restore and asserts the exact refusal and that nothing around the targets changed: a snapshot of
the surrounding directories (the test's own directory with a sibling "outside" directory and the
tablespace locations) before and after. Cases: a symlink entry pgdata/evil -> outside with a file
through it; a symlink to an unknown tablespace or inside a tablespace; "../" and absolute paths;
a tablespace location inside PGDATA or with ".."; a file in an unknown tablespace or beside a
tablespace's PG_15_* directory; setuid/0777 modes (restored as root:
only 0700/0750 and 0600/0640 appear); --delta onto a home-like directory, onto another cluster's
data directory (refused without --force), onto a tablespace location holding unrelated files;
--tablespace-map naming no tablespace and --xid far beyond the archive, refused by --dry-run too.
The remote helper: GET with offset INT64_MIN or a negative length is refused (run this file under
the ASan/UBSan build too), a symlink inside a key's directory is refused, and a thread flipping
such a symlink while the helper writes many keys never gets a byte written outside.
"""

import hashlib
import os
import re
import shutil
import stat
import struct
import threading
import time

import pytest

from ssh_server import remote_helper  # noqa: F401 - fixture
from test_restore_pitr import (Restorer, bb, commit_batch, finish_module, module_dir,
                               primary_conf, take_backup)
from test_ssh_repo import DATA, COMMIT, ERROR, GET, OK, PUT, WV_EREFUSED, Helper, error_of, \
    frame, s
from utils import Postgres, Repo, chown_pg, log_lines, make_pg_dir, run

WV_EUSAGE = -2

pytestmark = pytest.mark.xdist_group("confinement")


class Clean:
    pass


@pytest.fixture(scope="module")
def clean(basetemp, wv):
    """A stopped primary's repository: one backup of a cluster with tablespace ts1."""
    d = module_dir(basetemp, "confinement")
    c = Clean()
    c.dir = d
    c.wv = wv
    c.repo = Repo(os.path.join(d, "repo"), os.path.join(d, "walvault.conf"))
    c.loc = make_pg_dir(os.path.join(d, "ts1"), 0o700)
    p = Postgres(d, "primary").initdb(wal_segsize=1)
    primary_conf(p, wv, c.repo)
    c.restorer = Restorer(wv, c.repo, d)
    ok = False
    try:
        p.start()
        p.sql("create tablespace ts1 location '%s'" % c.loc)
        c.oid = p.sql_value("select oid from pg_tablespace where spcname = 'ts1'")
        p.sql("create table t (batch int, id int) tablespace ts1")
        commit_batch(p, 0, rows=100)
        c.backup_id = take_backup(wv, c.repo, p)
        commit_batch(p, 1, rows=100)
        p.switch_wal_and_wait_archived()
        p.stop()
        shutil.rmtree(c.loc)
        make_pg_dir(c.loc, 0o700)  # the location is empty again: restores may go there
        c.n = 0
        ok = True
        yield c
    finally:
        finish_module(c.restorer, p, d, ok)


# ---- helpers ---------------------------------------------------------------------------------

def manifest_path(repo, backup_id):
    return os.path.join(repo.path, "backup", backup_id, "backup.manifest")


def fields(line):
    word, _, rest = line.partition(" ")
    return word, dict(kv.split("=", 1) for kv in rest.split(" ") if kv)


def render(word, f):
    return word + "".join(" %s=%s" % kv for kv in f.items())


def rewrite_manifest(repo, backup_id, mutate):
    """mutate(records) edits the list of (word, fields) between the header and "totals"; totals
    and the end digest are recomputed, so the manifest is consistent apart from the attack."""
    path = manifest_path(repo, backup_id)
    lines = open(path).read().splitlines()
    head = [ln for ln in lines if ln.split(" ", 1)[0] in
            ("walvault-manifest", "backup", "cluster", "wal", "time")]
    body = [fields(ln) for ln in lines if ln.split(" ", 1)[0] in
            ("tablespace", "dir", "symlink", "file")]
    body = mutate(body) or body
    count = {"file": 0, "dir": 0, "symlink": 0, "tablespace": 0}
    size = stored = 0
    for word, f in body:
        count[word] += 1
        if word == "file":
            size += int(f["size"])
            stored += int(f["stored-size"])
    text = "\n".join(head + [render(w, f) for w, f in body]) + "\n"
    text += "totals files=%d dirs=%d symlinks=%d tablespaces=%d size=%d stored-size=%d\n" % (
        count["file"], count["dir"], count["symlink"], count["tablespace"], size, stored)
    text += "end sha256=%s\n" % hashlib.sha256(text.encode()).hexdigest()
    with open(path, "w") as fh:
        fh.write(text)


def snapshot(*roots):
    """Every entry below roots: type, mode, size, mtime and link target."""
    out = {}
    for root in roots:
        if not os.path.lexists(root):
            out[root] = None
            continue
        for d, dirs, files in os.walk(root):
            for name in [""] + dirs + files:
                p = os.path.join(d, name) if name else d
                st = os.lstat(p)
                out[p] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                          st.st_mtime_ns, os.readlink(p) if os.path.islink(p) else None)
    return out


def refused(res, *needles):
    assert res.returncode != 0, "expected a refusal:\n%s\n%s" % (res.stdout, res.stderr)
    lines = log_lines(res.stderr)
    assert len(lines) in (1, 2) and lines[0].startswith("basebackup: error: "), res.stderr
    if len(lines) == 2:
        assert lines[1].startswith("basebackup: error: hint: "), res.stderr
    text = " ".join(lines)
    for n in needles:
        assert n in text, "%r not in: %s" % (n, text)
    return text


class Case:
    """A test's own copy of the repository, an outside directory with a file in it, and the
    directories restore may write (not created yet)."""

    def __init__(self, clean, name):
        clean.n += 1
        self.dir = make_pg_dir(os.path.join(clean.dir, "case-%02d-%s" % (clean.n, name)), 0o755)
        self.repo = clean.repo.copy_to(os.path.join(self.dir, "repo"),
                                       os.path.join(self.dir, "walvault.conf"))
        self.outside = make_pg_dir(os.path.join(self.dir, "outside"), 0o777)
        with open(os.path.join(self.outside, "precious"), "w") as f:
            f.write("keep me")
        chown_pg(os.path.join(self.outside, "precious"))
        self.pgdata = os.path.join(self.dir, "pgdata")
        self.ts = os.path.join(self.dir, "ts-new")
        self.clean = clean

    def restore(self, *args, as_root=False, pgdata=None, ts_map=True):
        extra = ["--tablespace-map", "%s=%s" % (self.clean.loc, self.ts)] if ts_map else []
        argv = self.clean.wv.cmd("basebackup", "restore", "--pgdata", pgdata or self.pgdata,
                                 *extra, *args, config=self.repo.config)
        return run(argv, check=False, as_postgres=not as_root, timeout=600)

    def around(self):
        return snapshot(self.dir, self.clean.loc)


# ---- mutilated manifests: refused before anything is written ----------------------------------

def add_symlink(path, target):
    def m(body):
        body.append(("symlink", {"path": path, "target": target, "mode": "0777", "mtime": "0"}))
    return m


def evil_link_and_file(case):
    def m(body):
        add_symlink("pgdata/evil", case.outside)(body)
        f = next(f for w, f in body if w == "file" and f["path"].startswith("pgdata/"))
        evil = dict(f)
        evil["path"] = "pgdata/evil/payload"
        body.append(("file", evil))
    return m


def rename_first_file(newpath):
    def m(body):
        for w, f in body:
            if w == "file" and f["path"].startswith("pgdata/base/"):
                f["path"] = newpath
                return
    return m


def tablespace_location(loc):
    def m(body):
        for w, f in body:
            if w == "tablespace":
                f["location"] = loc
    return m


MUTILATIONS = [
    # (name, mutation(case), extra restore args, message parts)
    ("symlink-evil", evil_link_and_file, [],
     ['"pgdata/evil" is a symlink; only pg_tblspc/<oid> may be one', "nothing was written"]),
    ("symlink-unknown-tablespace", lambda c: add_symlink("pgdata/pg_tblspc/99999", c.outside), [],
     ['"pgdata/pg_tblspc/99999" is a symlink; only pg_tblspc/<oid> may be one']),
    ("symlink-in-tablespace",
     lambda c: add_symlink("tblspc/%d/PG_15_202209061/evil" % c.clean.oid, c.outside), [],
     ['"tblspc/0/PG_15_202209061/evil" is a symlink']),  # the oid is filled in below
    ("dotdot-path", lambda c: rename_first_file("pgdata/../outside/x"), [],
     ['invalid path "pgdata/../outside/x"']),
    ("absolute-path", lambda c: rename_first_file("/tmp/outside/x"), [],
     ['invalid path "/tmp/outside/x"']),
    ("unknown-tablespace-file", lambda c: rename_first_file("tblspc/4242/x"), [],
     ['"tblspc/4242/x" names an unknown tablespace']),
    ("tablespace-stray-file", lambda c: rename_first_file("tblspc/%d/crontab" % c.clean.oid), [],
     ["lies outside the tablespace's PG_15_* directory"]),
    ("tablespace-inside-pgdata", lambda c: tablespace_location(os.path.join(c.pgdata, "inner")),
     ["--no-map"], ["must be an absolute path outside the data directory"]),
    ("tablespace-dotdot", lambda c: tablespace_location(c.outside + "/../outside"),
     ["--no-map"], ["must be an absolute path outside the data directory"]),
]


@pytest.mark.parametrize("name,mutation,args,needles", MUTILATIONS,
                         ids=[m[0] for m in MUTILATIONS])
def test_mutilated_manifest_refused(clean, name, mutation, args, needles):
    case = Case(clean, name)
    rewrite_manifest(case.repo, clean.backup_id, mutation(case))
    needles = [n.replace('"tblspc/0/', '"tblspc/%d/' % clean.oid) for n in needles]
    ts_map = "--no-map" not in args
    before = case.around()
    for dry in (["--dry-run"], []):
        res = case.restore(*dry, ts_map=ts_map)
        refused(res, *needles)
        assert not os.path.exists(case.pgdata) and not os.path.exists(case.ts)
        assert case.around() == before


# ---- modes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pgdata_mode,want_dir,want_file", [("0777", 0o750, 0o640),
                                                             ("0700", 0o700, 0o600)])
def test_modes_are_postgres_modes_as_root(clean, pgdata_mode, want_dir, want_file):
    if os.geteuid() != 0:
        pytest.skip("needs root: a setuid bit must never appear even when root restores")
    case = Case(clean, "modes-" + pgdata_mode)

    def m(body):
        for w, f in body:
            if w == "file":
                f["mode"] = "6777"
            elif w == "dir":
                # the data directory's mode: its own record, else global/'s (see restore.c)
                f["mode"] = pgdata_mode if f["path"] in ("pgdata", "pgdata/global") else "0777"
    rewrite_manifest(case.repo, clean.backup_id, m)
    before_outside = snapshot(case.outside, clean.loc)
    res = case.restore(as_root=True)
    assert res.returncode == 0, res.stderr
    seen_files = 0
    for root in (case.pgdata, case.ts):
        for d, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(d, name)
                st = os.lstat(p)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    continue
                assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), (p, oct(mode))
                if stat.S_ISDIR(st.st_mode):
                    assert mode == want_dir, (p, oct(mode))
                else:
                    seen_files += 1
                    assert mode == want_file, (p, oct(mode))
    assert seen_files > 100
    assert stat.S_IMODE(os.stat(case.pgdata).st_mode) == want_dir
    assert snapshot(case.outside, clean.loc) == before_outside


# ---- --delta: only a data directory of this cluster, only that tablespace's directory ---------

def test_delta_onto_home_directory_refused(clean):
    case = Case(clean, "delta-home")
    home = make_pg_dir(case.pgdata, 0o755)
    for rel, text in ((".bashrc", "alias ll='ls -l'"), ("Documents/notes.txt", "notes")):
        p = os.path.join(home, rel)
        make_pg_dir(os.path.dirname(p), 0o755)
        with open(p, "w") as f:
            f.write(text)
        chown_pg(p)
    before = case.around()
    for dry in (["--dry-run"], []):
        refused(case.restore("--delta", *dry), "--delta: \"%s\" is not empty and has no "
                "PG_VERSION" % home, "--force", "nothing was written")
        assert case.around() == before


def test_delta_onto_another_cluster_refused_without_force(clean):
    case = Case(clean, "delta-other")
    pgdata = Postgres(case.dir, "other").initdb(wal_segsize=1).datadir
    before = case.around()
    for dry in (["--dry-run"], []):
        refused(case.restore("--delta", *dry, pgdata=pgdata),
                "is a data directory of another cluster", "database system", "--force",
                "nothing was written")
        assert case.around() == before
    # --force says so explicitly: the directory becomes the backup's
    res = case.restore("--delta", "--force", pgdata=pgdata)
    assert res.returncode == 0, res.stderr
    out = run(["/usr/lib/postgresql/15/bin/pg_controldata", pgdata]).stdout
    sysid = re.search(r"Database system identifier:\s+(\d+)", out).group(1)
    manifest = open(manifest_path(clean.repo, clean.backup_id)).read()
    assert "system-id=%s " % sysid in manifest, (sysid, manifest[:400])
    assert open(os.path.join(pgdata, "PG_VERSION")).read().strip() == "15"


def test_delta_tablespace_location_with_unrelated_files(clean):
    case = Case(clean, "delta-ts")
    unrelated = make_pg_dir(case.ts, 0o700)
    with open(os.path.join(unrelated, "thesis.tex"), "w") as f:
        f.write("years of work")
    before = case.around()
    for dry in (["--dry-run"], []):
        refused(case.restore("--delta", *dry), "tablespace %d location \"%s\" is not empty and "
                "holds no \"PG_15_" % (clean.oid, unrelated), "nothing was written")
        assert case.around() == before
    # a location that holds the tablespace's directory: only that directory is pruned
    os.unlink(os.path.join(unrelated, "thesis.tex"))
    res = case.restore()
    assert res.returncode == 0, res.stderr
    pgver = [n for n in os.listdir(case.ts) if n.startswith("PG_15_")]
    assert len(pgver) == 1
    with open(os.path.join(case.ts, "thesis.tex"), "w") as f:
        f.write("years of work")
    stray = os.path.join(case.ts, pgver[0], "stray")
    with open(stray, "w") as f:
        f.write("not in the backup")
    chown_pg(stray)
    res = case.restore("--delta")
    assert res.returncode == 0, res.stderr
    assert open(os.path.join(case.ts, "thesis.tex")).read() == "years of work"
    assert not os.path.exists(stray)


# ---- dry run = real run ---------------------------------------------------------------------

def test_unknown_tablespace_map_refused_in_dry_run(clean):
    case = Case(clean, "map-unknown")
    before = case.around()
    for dry in (["--dry-run"], []):
        res = case.restore("--tablespace-map", "/no/such/tablespace=%s" % case.ts, *dry,
                           ts_map=False)
        refused(res, "--tablespace-map \"/no/such/tablespace\": backup %s has no tablespace at "
                "that location" % clean.backup_id, clean.loc)
        assert case.around() == before


def test_nonexistent_xid_refused_in_dry_run(clean):
    case = Case(clean, "xid")
    before = case.around()
    for dry in (["--dry-run"], []):
        refused(case.restore("--xid", "2000000000", *dry),
                "transaction 2000000000 does not exist in the archive", clean.backup_id,
                "nothing was written")
        assert case.around() == before
    # a real one passes the same check
    res = case.restore("--xid", "3", "--backup", clean.backup_id, "--dry-run")
    assert "does not exist in the archive" not in res.stderr, res.stderr


def test_dry_run_checks_tablespace_location(clean):
    case = Case(clean, "dry-ts")
    make_pg_dir(case.ts, 0o700)
    with open(os.path.join(case.ts, "junk"), "w") as f:
        f.write("x")
    before = case.around()
    refused(case.restore("--dry-run"), "tablespace %d location \"%s\" is not empty" %
            (clean.oid, case.ts), "--tablespace-map")
    assert case.around() == before


# ---- the remote helper ------------------------------------------------------------------------

def helper_repo(workdir, name):
    d = make_pg_dir(os.path.join(workdir, "helper-%s" % name), 0o755)
    repo = make_pg_dir(os.path.join(d, "r"), 0o750)
    outside = make_pg_dir(os.path.join(d, "outside"), 0o777)
    return repo, outside


def put(h, key, data):
    h.send(frame(PUT, struct.pack(">I", 0) + s(key)))
    t, payload = h.recv()
    if t != OK:
        return error_of(payload)
    h.send(frame(DATA, data) + frame(COMMIT))
    t, payload = h.recv()
    return (0, "") if t == OK else error_of(payload)


def get(h, key, offset, length):
    h.send(frame(GET, struct.pack(">qq", offset, length) + s(key)))
    t, payload = h.recv()
    if t != OK:
        return error_of(payload), b""
    data = b""
    while True:
        t, payload = h.recv()
        if t == DATA:
            data += payload
            continue
        return ((0, "") if t != ERROR else error_of(payload)), data


def test_helper_refuses_bad_ranges(workdir, remote_helper):  # noqa: F811
    repo, _ = helper_repo(workdir, "ranges")
    h = Helper([remote_helper, "--repo", repo])
    h.hello()
    assert put(h, "obj", b"0123456789") == (0, "")
    for offset, length in ((-2**63, 2**63 - 1), (-2**63, -1), (0, -2), (3, -2**63)):
        (code, msg), data = get(h, "obj", offset, length)
        assert code == WV_EUSAGE, (offset, length, code, msg)
        assert 'bad range for "obj"' in msg, msg
        assert data == b""
    # the extremes that are valid still work in the same session
    assert get(h, "obj", 0, 2**63 - 1) == ((0, ""), b"0123456789")
    assert get(h, "obj", -2**63 + 1, -1) == ((0, ""), b"0123456789")
    assert get(h, "obj", 2**63 - 1, 2**63 - 1) == ((0, ""), b"")
    assert h.close() == 0


def test_helper_symlink_in_key_directory(workdir, remote_helper):  # noqa: F811
    repo, outside = helper_repo(workdir, "link")
    os.makedirs(os.path.join(repo, "wal", "0000000100000000"))
    run(["chown", "-R", "postgres:postgres", os.path.join(repo, "wal")], as_postgres=False)
    os.symlink(outside, os.path.join(repo, "wal", "0000000100000000", "evil"))
    h = Helper([remote_helper, "--repo", repo])
    h.hello()
    code, msg = put(h, "wal/0000000100000000/evil/x", b"data")
    assert code == WV_EREFUSED, (code, msg)
    assert 'refusing key "wal/0000000100000000/evil/x"' in msg, msg
    assert '"wal/0000000100000000/evil" is a symbolic link' in msg, msg
    assert os.listdir(outside) == []
    # a symlinked top-level wal/ (the WAL on another disk) is followed
    disk = make_pg_dir(os.path.join(os.path.dirname(repo), "disk"), 0o750)
    os.rename(os.path.join(repo, "wal"), os.path.join(disk, "wal"))
    os.symlink(os.path.join(disk, "wal"), os.path.join(repo, "wal"))
    assert put(h, "wal/0000000100000000/ok", b"fine") == (0, "")
    assert open(os.path.join(disk, "wal", "0000000100000000", "ok"), "rb").read() == b"fine"
    assert h.close() == 0
    assert os.listdir(outside) == []


def test_helper_symlink_race(workdir, remote_helper):  # noqa: F811
    """A thread flips wal/x between a real directory and a link to outside while the helper writes
    many keys below it: nothing may ever land outside."""
    repo, outside = helper_repo(workdir, "race")
    x = os.path.join(repo, "wal", "x")
    make_pg_dir(os.path.join(repo, "wal"), 0o750)
    make_pg_dir(x, 0o750)
    stop = threading.Event()
    flips = [0]

    def flipper():
        while not stop.is_set():
            try:
                os.rename(x, x + ".real")
                os.symlink(outside, x + ".tmp")
                os.rename(x + ".tmp", x)
                flips[0] += 1
                os.unlink(x)
                os.rename(x + ".real", x)
            except OSError:
                repair()

    def repair():
        # the helper created x again meanwhile: put the real one back
        try:
            if os.path.islink(x):
                os.unlink(x)
            if os.path.isdir(x + ".real"):
                if os.path.isdir(x):
                    for n in os.listdir(x):
                        os.replace(os.path.join(x, n), os.path.join(x + ".real", n))
                    os.rmdir(x)
                os.rename(x + ".real", x)
            if os.path.lexists(x + ".tmp"):
                os.unlink(x + ".tmp")
        except OSError:
            pass

    h = Helper([remote_helper, "--repo", repo])
    h.hello()
    t = threading.Thread(target=flipper, daemon=True)
    t.start()
    results = {"ok": 0, "refused": 0, "other": 0}
    deadline = time.monotonic() + 4
    i = 0
    try:
        while time.monotonic() < deadline:
            code, msg = put(h, "wal/x/k%05d" % i, b"payload %d" % i)
            i += 1
            if code == 0:
                results["ok"] += 1
            elif code == WV_EREFUSED:
                results["refused"] += 1
                assert "is a symbolic link" in msg, msg
            else:
                results["other"] += 1
            assert os.listdir(outside) == [], "written outside: %s" % os.listdir(outside)
    finally:
        stop.set()
        t.join(timeout=10)
    assert h.close() == 0
    assert os.listdir(outside) == [], os.listdir(outside)
    assert flips[0] > 10 and results["ok"] > 0, (flips[0], results)
