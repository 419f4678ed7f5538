"""basebackup backup against a real PostgreSQL 15 archiving with wal-push into a posix repository.

Proves: the walvault manifest lists every file of PostgreSQL's own backup_manifest with the same
SHA-256, and the stored objects rebuild a data directory that pg_verifybackup accepts; kill -9
mid-stream leaves no manifest and the next run removes the leftovers; a backup under pgbench load;
a repository of another cluster is refused naming both identifiers; broken archiving times out
naming the missing WAL file; usage errors.
"""

import hashlib
import json
import os
import re
import signal
import time
import urllib.parse

import lz4.frame
import pytest

from utils import (OBJ_TRAILER, obj_header_len, PG_USER, chown_pg, make_pg_dir, pg_bin, popen, run,
                   wait_until)


# --- helpers ----------------------------------------------------------------------------------

def connstr(pg):
    return "host=127.0.0.1 port=%d user=%s" % (pg.port, PG_USER)


def backup(wv, repo, pg, *args, check=True, env=None):
    res = run(wv.cmd("basebackup", "backup", "-d", connstr(pg), *args, config=repo.config),
              check=False, env=env, timeout=600)
    if check:
        assert res.returncode == 0, "backup failed (%d):\n%s\n%s" % (res.returncode, res.stdout,
                                                                     res.stderr)
    return res


def backup_ids(repo):
    d = os.path.join(repo.path, "backup")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def stored_files(repo, bid=""):
    """Objects under backup/ (or backup/<bid>/). The posix driver's temporary files of a killed
    writer (".wvtmp-PID-N") are not objects and not reachable through the storage interface."""
    top = os.path.join(repo.path, "backup", bid)
    return [os.path.join(d, f) for d, _, files in os.walk(top) for f in files
            if ".wvtmp-" not in f]


def manifest_path(repo, bid):
    return os.path.join(repo.path, "backup", bid, "backup.manifest")


def parse_manifest(path):
    """Our manifest: header records as dicts, entries by path; checks the end record."""
    import hashlib
    data = open(path, "rb").read()
    lines = data.split(b"\n")
    assert lines[-1] == b"", "manifest must end with a newline"
    lines = lines[:-1]
    # version 3 when a file is stored as chunks, else version 2
    assert lines[0] in (b"walvault-manifest version=2", b"walvault-manifest version=3")
    end = lines[-1].decode()
    body = b"\n".join(lines[:-1]) + b"\n"
    assert end == "end sha256=" + hashlib.sha256(body).hexdigest()
    header, entries, tablespaces = {}, {}, {}
    last = None
    for raw in lines[1:-1]:
        parts = raw.decode().split(" ")
        rec = {k: urllib.parse.unquote(v) for k, v in (p.split("=", 1) for p in parts[1:])}
        if parts[0] == "chunk":  # a chunk of the file record before it
            last.setdefault("chunk_list", []).append(rec)
            continue
        last = rec
        if parts[0] in ("file", "dir", "symlink"):
            rec["type"] = parts[0]
            assert rec["path"] not in entries, "duplicate path " + rec["path"]
            entries[rec["path"]] = rec
        elif parts[0] == "tablespace":
            tablespaces[rec["oid"]] = rec["location"]
        else:
            header[parts[0]] = rec
    return header, entries, tablespaces


def object_bytes(repo, bid, path):
    """The stored object of a backup file: a file of its own, or its range of a bundle."""
    _, entries, _ = parse_manifest(manifest_path(repo, bid))
    e = entries[path]
    if "bundle" not in e:
        return open(os.path.join(repo.path, "backup", bid, path), "rb").read()
    with open(os.path.join(repo.path, "backup", bid, "bundle", e["bundle"]), "rb") as f:
        f.seek(int(e["offset"]))
        return f.read(int(e["stored-size"]))


def plain_of(raw):
    """Strip an object's header and trailer, undo lz4."""
    payload = raw[obj_header_len(raw):len(raw) - OBJ_TRAILER]
    if payload[:4] == b"\x04\x22\x4d\x18":
        return lz4.frame.decompress(payload)
    return payload


def read_object(repo, bid, path):
    """Plain content of a stored backup file (its chunks in order, for a chunked file)."""
    _, entries, _ = parse_manifest(manifest_path(repo, bid))
    chunks = entries[path].get("chunk_list")
    if chunks:
        assert len(chunks) == int(entries[path]["chunks"])
        out = b""
        for k, c in enumerate(chunks):
            key = os.path.join(repo.path, "backup", bid, "chunk", path, str(k))
            data = plain_of(open(key, "rb").read())
            assert len(data) == int(c["length"]) and int(c["offset"]) == len(out)
            out += data
        return out
    return plain_of(object_bytes(repo, bid, path))


def archiving_cluster(pg_factory, wv, repo, name="pg", archive_command=None):
    pg = pg_factory.new(name).initdb()
    pg.conf(archive_mode="on", archive_timeout=0,
            archive_command=archive_command or wv.archive_command(repo.config))
    pg.start()
    return pg


# --- tests ------------------------------------------------------------------------------------

def test_backup_matches_postgres_manifest(pg_factory, wv, repo, workdir):
    pg = archiving_cluster(pg_factory, wv, repo)
    ts_dir = make_pg_dir(os.path.join(workdir, "ts1"), 0o700)
    pg.sql("create tablespace ts1 location '%s'" % ts_dir)
    pg.sql("create table in_ts (id int, t text) tablespace ts1")
    pg.sql("insert into in_ts select g, repeat('x', 500) from generate_series(1, 20000) g")
    pg.sql("create table big as select g, md5(g::text) from generate_series(1, 300000) g")

    res = backup(wv, repo, pg, "--label", "nightly 100% ok", "--checkpoint", "fast")
    ids = backup_ids(repo)
    assert len(ids) == 1
    bid = ids[0]
    assert re.match(r"^\d{8}T\d{6}Z$", bid)
    # one summary line (not a terminal): id, sizes, duration
    assert re.search(r"^backup %s complete: \d+ files, [\d.]+ \w+, stored [\d.]+ \w+, \d+ s" % bid,
                     res.stdout, re.M), res.stdout
    assert not os.path.exists(os.path.join(repo.path, "backup", bid, "backup.lock"))

    header, entries, tablespaces = parse_manifest(manifest_path(repo, bid))
    assert header["backup"]["id"] == bid
    assert header["backup"]["label"] == "nightly 100% ok"
    assert header["backup"]["keep"] == "0"
    assert int(header["cluster"]["system-id"]) == pg.system_identifier()
    assert header["cluster"]["pg-version"].startswith("15")
    assert header["cluster"]["wal-segsize"] == str(16 << 20)
    oid = pg.sql_value("select oid from pg_tablespace where spcname = 'ts1'")
    assert tablespaces == {str(oid): ts_dir}
    # server times: the backup history file's START/STOP TIME
    hist = [n for n in repo.wal_names() if n.endswith(".backup")]
    assert len(hist) == 1
    start, stop = int(header["time"]["start"]), int(header["time"]["stop"])
    assert 0 <= stop - start < 3600 and abs(time.time() - stop) < 3600
    assert header["time"]["start-text"].startswith(time.strftime("%Y-", time.gmtime(start)))
    # the WAL of the backup is archived
    assert repo.has(header["wal"]["start-segment"]) and repo.has(header["wal"]["stop-segment"])

    # PostgreSQL's own manifest is kept and lists exactly our files, with the same sizes (its
    # CRC32C checksums are checked against our stored content by pg_verifybackup below)
    pgm = json.loads(read_object(repo, bid, "pgdata/backup_manifest"))
    assert pgm["PostgreSQL-Backup-Manifest-Version"] == 1
    ours = {p: e for p, e in entries.items() if e["type"] == "file"}
    theirs = {}
    for f in pgm["Files"]:
        p = f["Path"]
        m = re.match(r"^pg_tblspc/(\d+)/(.*)$", p)
        theirs[("tblspc/%s/%s" % m.groups()) if m else "pgdata/" + p] = f
    assert set(theirs) == set(ours) - {"pgdata/backup_manifest"}
    for p, f in theirs.items():
        assert f["Checksum-Algorithm"] == "CRC32C"
        assert int(ours[p]["size"]) == f["Size"], p
    assert any(p.startswith("tblspc/%s/" % oid) for p in ours)
    assert entries["pgdata/pg_tblspc/%s" % oid]["type"] == "symlink"
    assert entries["pgdata/pg_tblspc/%s" % oid]["target"] == ts_dir
    assert entries["pgdata/base"]["type"] == "dir"
    assert entries["pgdata/PG_VERSION"]["mode"] == "0600"

    # rebuild a data directory from the objects and let pg_verifybackup judge it
    dest = make_pg_dir(os.path.join(workdir, "rebuilt"), 0o700)
    bundled = {}
    for p, e in sorted(entries.items()):
        rel = p[len("pgdata/"):] if p.startswith("pgdata/") else \
            "pg_tblspc/" + p[len("tblspc/"):]
        target = os.path.join(dest, rel)
        if e["type"] == "dir":
            os.makedirs(target, exist_ok=True)
        elif e["type"] == "file":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            content = read_object(repo, bid, p)
            assert len(content) == int(e["size"])
            with open(target, "wb") as fh:
                fh.write(content)
            # the stored size is the object's size in the repository
            if "bundle" in e:
                bundled.setdefault(e["bundle"], []).append(
                    (int(e["offset"]), int(e["stored-size"])))
            else:
                assert int(e["stored-size"]) == os.path.getsize(
                    os.path.join(repo.path, "backup", bid, p))
    # small files share bundles, back to back from offset 0, and nothing else is in them; files
    # larger than 1 MiB have objects of their own
    assert bundled, "no file was bundled"
    for n, members in bundled.items():
        members.sort()
        pos = 0
        for off, size in members:
            assert off == pos, (n, members)
            pos += size
        assert pos == os.path.getsize(os.path.join(repo.path, "backup", bid, "bundle", n))
    assert sum(len(m) for m in bundled.values()) > 500
    assert all("bundle" not in e for e in entries.values()
               if e["type"] == "file" and int(e["size"]) > 1024 * 1024)
    for d, dirs, files in os.walk(dest):
        for x in dirs + files:
            chown_pg(os.path.join(d, x))
    res = run([pg_bin("pg_verifybackup"), "-n", dest], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "successfully verified" in res.stdout


def test_kill9_leaves_no_manifest_and_next_run_cleans_up(pg_factory, wv, repo):
    pg = archiving_cluster(pg_factory, wv, repo)
    pg.pgbench("-i", "-q", "-s", "15")
    proc = popen(wv.cmd("basebackup", "backup", "-d", connstr(pg), "--checkpoint", "fast",
                        config=repo.config))

    def some_file_stored():
        for bid in backup_ids(repo):
            if any(not f.endswith("backup.lock") for f in stored_files(repo, bid)):
                return bid
        return None
    bid = wait_until(some_file_stored, timeout=120, what="first stored file")
    assert proc.poll() is None, "the backup finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(manifest_path(repo, bid))
    assert os.path.exists(os.path.join(repo.path, "backup", bid, "backup.lock"))

    time.sleep(1.1)  # a new id (ids have one-second resolution)
    res = backup(wv, repo, pg, "--checkpoint", "fast")
    # not a stderr line that would make cron mail: status reports it
    assert "removing the leftovers" not in res.stderr, res.stderr
    st = run(wv.cmd("basebackup", "status", config=repo.config), check=False)
    assert "cleaned up interrupted backup %s at 20" % bid in st.stdout, st.stdout + st.stderr
    st = run(wv.cmd("basebackup", "status", "--json", config=repo.config), check=False)
    rec = json.loads(st.stdout)["repositories"][0]["cleaned_up"]
    assert rec["id"] == bid and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", rec["time"]), rec
    # every object of the interrupted backup is gone (the posix driver may keep empty folders)
    assert stored_files(repo, bid) == []
    done = [b for b in backup_ids(repo) if os.path.exists(manifest_path(repo, b))]
    assert len(done) == 1 and done[0] != bid
    parse_manifest(manifest_path(repo, done[0]))


def test_backup_while_pgbench_writes(pg_factory, wv, repo):
    pg = archiving_cluster(pg_factory, wv, repo)
    pg.pgbench("-i", "-q", "-s", "5")
    bench = popen([pg_bin("pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", PG_USER,
                   "-c", "2", "-T", "15", "postgres"])
    try:
        backup(wv, repo, pg, "--checkpoint", "fast", "--keep")
    finally:
        out, err = bench.communicate(timeout=120)
    assert bench.returncode == 0, err
    (bid,) = backup_ids(repo)
    header, entries, _ = parse_manifest(manifest_path(repo, bid))
    assert header["backup"]["keep"] == "1"
    assert int(header["wal"]["stop-lsn"].split("/")[0], 16) >= 0
    files = [e for e in entries.values() if e["type"] == "file"]
    assert len(files) > 500
    # pgbench_accounts' heap is in the backup: the stored content has our manifest's SHA-256 and
    # PostgreSQL's manifest's size
    pgm = json.loads(read_object(repo, bid, "pgdata/backup_manifest"))
    sizes = {"pgdata/" + f["Path"]: f["Size"] for f in pgm["Files"]}
    rel = pg.sql_value("select pg_relation_filepath('pgbench_accounts')")
    content = read_object(repo, bid, "pgdata/" + rel)
    assert hashlib.sha256(content).hexdigest() == entries["pgdata/" + rel]["sha256"]
    assert len(content) == sizes["pgdata/" + rel] == int(entries["pgdata/" + rel]["size"])


def test_wrong_cluster_is_refused(pg_factory, wv, repo):
    a = archiving_cluster(pg_factory, wv, repo, "a")
    backup(wv, repo, a, "--checkpoint", "fast")
    b = pg_factory.new("b").initdb()
    b.start()
    res = backup(wv, repo, b, "--checkpoint", "fast", check=False)
    assert res.returncode != 0
    assert str(a.system_identifier()) in res.stderr, res.stderr
    assert str(b.system_identifier()) in res.stderr, res.stderr
    assert len(backup_ids(repo)) == 1


def test_broken_archiving_times_out_naming_the_segment(pg_factory, wv, repo):
    repo.write_config("[global]\narchive_timeout = 3\n")
    # wal-push of this configuration named (backup checks that before BASE_BACKUP), never run
    pg = archiving_cluster(pg_factory, wv, repo,
                           archive_command="false && " + wv.archive_command(repo.config))
    res = backup(wv, repo, pg, "--checkpoint", "fast", check=False)
    assert res.returncode != 0
    m = re.search(r"WAL file ([0-9A-F]{24}) was not archived in repo1 within 3 seconds",
                  res.stderr)
    assert m, res.stderr
    assert "archive_command" in res.stderr and "pg_stat_archiver" in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # the error line and its hint
    # no backup exists, and nothing of it is left behind
    for bid in backup_ids(repo):
        assert not os.path.exists(manifest_path(repo, bid))
    assert stored_files(repo) == []


def test_usage_errors(wv, repo):
    res = run(wv.cmd("basebackup", "frobnicate", config=repo.config), check=False)
    assert res.returncode != 0
    assert 'unknown subcommand "frobnicate" (valid: backup' in res.stderr
    res = run(wv.cmd("basebackup", config=repo.config), check=False)
    assert res.returncode != 0 and "no subcommand given" in res.stderr
    res = run(wv.cmd("basebackup", "backup", "-d", "host=127.0.0.1 password=hunter2",
                     config=repo.config), check=False)
    assert res.returncode != 0
    assert "contains a password" in res.stderr and "hunter2" not in res.stderr
    res = run(wv.cmd("basebackup", "backup", "--checkpoint", "slow", config=repo.config),
              check=False)
    assert res.returncode != 0 and "--checkpoint" in res.stderr
