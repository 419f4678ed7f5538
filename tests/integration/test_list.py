"""basebackup list and list --json against a real archive.

The module's cluster (see test_restore_pitr): one walvault backup, batches of rows whose server
commit times are known. Proves: the backup's id, timeline and LSNs are the manifest's; the
recoverable window runs from the end of the backup to the last archived commit, to the microsecond
(a real commit time recorded by wal-push, not a file time); the text and JSON forms agree; a
segment deleted from a copy of the repository shows as a gap, the window stops at it and names the
first commit after it; an empty repository and an incomplete backup are reported as such.
"""

import json
import os
import re

from test_restore_pitr import bb, parse_wv_time, pitr  # noqa: F401 (fixture)
from utils import Repo, chown_pg, make_pg_dir


def manifest_header(repo, bid):
    out = {}
    with open(os.path.join(repo.path, "backup", bid, "backup.manifest")) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ")
            if parts[0] in ("file", "dir", "symlink", "tablespace", "end"):
                break
            out[parts[0]] = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return out


def list_json(pitr, repo=None):
    res = bb(pitr.restorer.wv, repo or pitr.repo, "list", "--json")
    doc = json.loads(res.stdout)
    assert len(doc["repositories"]) == 1
    return doc["repositories"][0]


def close(a, b, eps=2e-6):
    return abs(a - b) <= eps


def test_list_json(pitr):
    r = list_json(pitr)
    h = manifest_header(pitr.repo, pitr.backup_id)
    assert r["repo"] == "repo1" and r["location"] and r["empty"] is False
    assert int(r["system_identifier"]) == pitr.primary.system_identifier()
    assert r["pg_major"] == 15 and r["wal_segment_size"] == 1 << 20
    assert [b["id"] for b in r["backups"]] == [pitr.backup_id, pitr.backup2_id]
    assert r["backups"][0]["stop_lsn"] < r["backups"][1]["start_lsn"] or \
        len(r["backups"][0]["stop_lsn"]) < len(r["backups"][1]["start_lsn"])
    b = r["backups"][0]
    assert b["id"] == pitr.backup_id and b["timeline"] == 1
    assert b["start_lsn"] == h["wal"]["start-lsn"] and b["stop_lsn"] == h["wal"]["stop-lsn"]
    assert b["files"] > 900 and b["size"] > 10 << 20 and 0 < b["stored_size"] <= b["size"]
    assert b["pg_version"] // 10000 == 15
    stop = parse_wv_time(b["stop_time"])
    assert int(stop) == int(h["time"]["stop"])
    # one window (the second backup's lies inside it): the end of the first backup .. the last
    # archived commit, both real instants
    assert len(r["windows"]) == 1, r["windows"]
    w = r["windows"][0]
    assert w["timeline"] == 1 and w["first_backup"] == pitr.backup_id
    assert parse_wv_time(w["from"]) == int(h["time"]["stop"]) + 1
    assert close(parse_wv_time(w["to"]), pitr.last_commit), (w["to"], pitr.last_commit)
    assert w["from_lsn"] == b["stop_lsn"]
    assert "stops_at_missing_segment" not in w
    segs = pitr.repo.segments()
    assert r["timelines"] == [{"timeline": 1, "segments": len(segs), "history": False,
                               "first_segment": segs[0], "last_segment": segs[-1]}]
    assert r["gaps"] == [] and r["incomplete_backups"] == []


def test_list_text(pitr):
    res = bb(pitr.restorer.wv, pitr.repo, "list", env={"TZ": "America/Sao_Paulo"})
    out = res.stdout
    assert re.search(r"^repo1 \(.*\): PostgreSQL 15, database system %d, 1\.0 MiB WAL segments$"
                     % pitr.primary.system_identifier(), out, re.M), out
    h = manifest_header(pitr.repo, pitr.backup_id)
    row = [ln for ln in out.splitlines() if ln.strip().startswith(pitr.backup_id)]
    assert len(row) == 1, out
    assert any(ln.strip().startswith(pitr.backup2_id) for ln in out.splitlines()), out
    assert h["wal"]["start-lsn"] in row[0] and h["wal"]["stop-lsn"] in row[0]
    m = re.search(r"^    timeline 1: (\S+ \S+) \.\. (\S+ \S+) \(from backup %s\)$" % pitr.backup_id,
                  out, re.M)
    assert m, out
    assert m.group(2).endswith("-03")  # local time of TZ, with its offset
    assert close(parse_wv_time(m.group(2)), pitr.last_commit)
    # text and JSON agree
    w = list_json(pitr)["windows"][0]
    assert parse_wv_time(m.group(1)) == parse_wv_time(w["from"])
    assert parse_wv_time(m.group(2)) == parse_wv_time(w["to"])
    assert "gap" not in out and "incomplete" not in out


def test_list_gap_and_incomplete_backup(pitr):
    repo = pitr.repo.copy_to(os.path.join(pitr.dir, "repo-list-gap"),
                             os.path.join(pitr.dir, "list-gap.conf"))
    seg = pitr.batches[2]["segment"]
    os.unlink(repo.object_path(seg))
    # a backup directory without a manifest: interrupted
    d = make_pg_dir(os.path.join(repo.path, "backup", "20000101T000000Z", "pgdata"))
    with open(os.path.join(d, "PG_VERSION"), "w") as f:
        f.write("junk")
    chown_pg(os.path.join(d, "PG_VERSION"))

    r = list_json(pitr, repo)
    assert [b["id"] for b in r["backups"]] == [pitr.backup_id, pitr.backup2_id]
    assert r["incomplete_backups"] == ["20000101T000000Z"]
    assert r["gaps"] == [{"timeline": 1, "first_missing": seg, "last_missing": seg}]
    # two windows: the first backup's up to the gap, the second backup's after it
    assert len(r["windows"]) == 2, r["windows"]
    w, w2 = r["windows"]
    assert w2["first_backup"] == pitr.backup2_id and "stops_at_missing_segment" not in w2
    assert w2["from_lsn"] == r["backups"][1]["stop_lsn"]
    assert abs(parse_wv_time(w2["to"]) - pitr.last_commit) < 2e-6
    assert parse_wv_time(w2["from"]) < pitr.batches[4]["commit"]
    assert w["stops_at_missing_segment"] == seg
    # the window ends at the last commit before the gap (the switch after batch 2)
    to = parse_wv_time(w["to"])
    assert pitr.batches[1]["commit"] <= to < pitr.batches[2]["commit"]
    # the archive resumes with batch 5, the first commit after the missing segment
    assert close(parse_wv_time(w["wal_resumes_at"]), pitr.batches[4]["commit"])

    out = bb(pitr.restorer.wv, repo, "list").stdout
    assert "gap in the archive: %s .. %s missing" % (seg, seg) in out, out
    assert "then WAL segment %s is missing" % seg in out
    assert "1 incomplete backup " in out


def test_list_empty_repository(pitr):
    repo = Repo(os.path.join(pitr.dir, "repo-empty"), os.path.join(pitr.dir, "empty.conf"))
    out = bb(pitr.restorer.wv, repo, "list").stdout
    assert re.search(r"^repo1 \(.*\): empty, nothing archived yet$", out, re.M), out
    r = list_json(pitr, repo)
    assert r["empty"] is True and r["backups"] == [] and r["windows"] == []
    res = bb(pitr.restorer.wv, repo, "list", "--bogus", check=False)
    assert res.returncode != 0 and "--bogus" in res.stderr
    res = bb(pitr.restorer.wv, repo, "list", "--repo", "7", check=False)
    assert res.returncode != 0 and "no [repo7]" in res.stderr
    # not a number: refused (it used to be read as 0, "every repository")
    for bad in ("x", "0", "2x", ""):
        res = bb(pitr.restorer.wv, repo, "list", "--repo", bad, check=False)
        assert res.returncode == 2 and "is not a repository number" in res.stderr, (bad, res.stderr)
