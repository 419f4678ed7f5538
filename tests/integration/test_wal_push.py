"""wal-push: archive_command end to end, and the immutability rules of the repository."""

import os
import re

from utils import chown_pg, make_pg_dir, read_bytes, restore_from, table_checksum, wait_until


def test_pgbench_run_archives_every_segment(archived_cluster, wv, workdir):
    a = archived_cluster
    assert a.stats["failed_count"] == 0, a.stats
    assert a.stats["last_failed_wal"] == "", a.stats
    assert a.stats["last_archived_wal"] >= a.last_archived

    # Every segment from the first one archived up to the last is in the repository, no gaps.
    segs = a.repo.segments()
    assert segs, "repository holds no segment"
    first, last = int(segs[0], 16), int(a.last_archived, 16)
    expected = ["%024X" % n for n in range(first, last + 1)]
    missing = sorted(set(expected) - set(segs))
    assert not missing, "segments missing from the repository: %s" % missing
    assert len(expected) >= 20, "pgbench produced too few segments to be a test: %d" % len(expected)
    assert a.backup_start_wal in segs

    # The server log has wal-push's line for archived files and no error line from it.
    assert re.search(r"wal-push: .*%s" % a.last_archived, a.log), "no wal-push line for the last segment"
    assert "wal-push: error" not in a.log

    # What wal-fetch returns is byte-identical to the segments still in pg_wal.
    dest_dir = make_pg_dir(os.path.join(workdir, "fetched"))
    checked = 0
    for name, path in sorted(a.pg_wal_copies.items()):
        if name not in segs:
            continue  # older than the first archived segment (written by initdb before archiving)
        dest = os.path.join(dest_dir, name)
        r = wv.fetch(name, dest, config=a.repo.config, cwd=workdir)
        assert r.returncode == 0, r.stderr
        assert read_bytes(dest) == read_bytes(path), "fetched %s differs from pg_wal" % name
        os.unlink(dest)
        checked += 1
    assert checked >= 3, "too few segments left in pg_wal to compare (%d)" % checked


def test_recovery_from_basebackup_reaches_same_data_and_promotes(archived_cluster, pg_factory, wv):
    a = archived_cluster
    pg = restore_from(a, pg_factory, wv, a.repo.config)
    pg.start(wait=False)
    pg.wait_ready()
    wait_until(lambda: pg.sql_value("select not pg_is_in_recovery()"), timeout=300,
               what="end of recovery and promotion")
    assert table_checksum(pg) == a.checksum
    log = pg.log()
    assert "archive recovery complete" in log
    assert re.search(r'restored log file "%s" from archive' % a.last_archived, log), \
        "the last archived segment was not restored through wal-fetch"
    assert "wal-fetch: error" not in log
    # The end of the archive was reached as "not found", not as an error.
    assert "could not restore file" not in log
    assert pg.sql_value("select timeline_id from pg_control_checkpoint()") >= 1
    assert int(pg.sql_value("select count(*) from pgbench_history")) > 0


def test_identical_repush_succeeds(wv, repo, wal_samples):
    seg = wal_samples.a_segments[0]
    name = os.path.basename(seg)
    r = wv.push(seg, config=repo.config)
    assert r.returncode == 0, r.stderr
    assert name in r.stderr, "wal-push should log one line naming the file: %r" % r.stderr
    before = read_bytes(repo.object_path(name))
    r = wv.push(seg, config=repo.config)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()
    assert read_bytes(repo.object_path(name)) == before


def _modified_copy(src, dest, offset=None):
    data = bytearray(read_bytes(src))
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    with open(dest, "wb") as f:
        f.write(data)
    chown_pg(dest)
    return dest


def test_different_content_same_name_refused(wv, repo, wal_samples, workdir):
    seg = wal_samples.a_segments[1]
    name = os.path.basename(seg)
    r = wv.push(seg, config=repo.config)
    assert r.returncode == 0, r.stderr
    before = read_bytes(repo.object_path(name))
    files_before = repo.files()

    other_dir = os.path.join(workdir, "other")
    os.makedirs(other_dir)
    # Same name, one bit different in the middle (the header, and so the system identifier, match).
    other = _modified_copy(seg, os.path.join(other_dir, name))
    r = wv.push(other, config=repo.config)
    assert r.returncode != 0, "a different file under an archived name was accepted"
    assert re.search(r"different content", r.stderr), r.stderr
    assert name in r.stderr
    assert read_bytes(repo.object_path(name)) == before, "the archived object was changed"
    assert repo.files() == files_before

    # The original is still what wal-fetch returns.
    dest = os.path.join(workdir, "back")
    r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert read_bytes(dest) == read_bytes(seg)


HISTORY_1 = "1\t0/3000000\tno recovery target specified\n"
HISTORY_2 = "1\t0/4000000\tbefore 2026-11-25 10:00:00+00\n"


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    chown_pg(path)
    return path


def test_history_file_never_overwritten(wv, repo, wal_samples, workdir):
    # The repository is first bound to a cluster by one of its segments.
    assert wv.push(wal_samples.a_segments[0], config=repo.config).returncode == 0
    h = _write(os.path.join(workdir, "00000002.history"), HISTORY_1)
    r = wv.push(h, config=repo.config)
    assert r.returncode == 0, r.stderr
    assert repo.has("00000002.history"), "history not stored at %s" % repo.object_path(
        "00000002.history")
    stored = read_bytes(repo.object_path("00000002.history"))

    r = wv.push(h, config=repo.config)
    assert r.returncode == 0, "identical re-push of a history file: %s" % r.stderr

    _write(h, HISTORY_2)
    r = wv.push(h, config=repo.config)
    assert r.returncode != 0, "a history file was overwritten"
    assert re.search(r"different content", r.stderr), r.stderr
    assert "00000002.history" in r.stderr
    assert read_bytes(repo.object_path("00000002.history")) == stored

    dest = os.path.join(workdir, "restored.history")
    r = wv.fetch("00000002.history", dest, config=repo.config, cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert read_bytes(dest).decode() == HISTORY_1


def test_backup_and_partial_files_round_trip(wv, repo, wal_samples, workdir):
    assert wv.push(wal_samples.a_segments[0], config=repo.config).returncode == 0
    # A .backup history file as PostgreSQL archives it.
    bk = wal_samples.a_backup
    bk_name = os.path.basename(bk)
    # A .partial file: the first part of a real segment under its .partial name.
    seg = wal_samples.a_segments[2]
    partial = os.path.join(workdir, os.path.basename(seg) + ".partial")
    with open(partial, "wb") as f:
        f.write(read_bytes(seg))
    chown_pg(partial)

    for path in (bk, partial):
        name = os.path.basename(path)
        r = wv.push(path, config=repo.config)
        assert r.returncode == 0, "%s: %s" % (name, r.stderr)
        assert name in r.stderr
        assert repo.has(name), "%s not stored at %s" % (name, repo.object_path(name))
        dest = os.path.join(workdir, "fetched-" + name)
        r = wv.fetch(name, dest, config=repo.config, cwd=workdir)
        assert r.returncode == 0, "%s: %s" % (name, r.stderr)
        assert read_bytes(dest) == read_bytes(path), "%s came back different" % name
    assert bk_name in repo.wal_names()
    # The segment of the same number is a different object than its .partial.
    assert not repo.has(os.path.basename(seg))


def test_second_cluster_refused(wv, repo, wal_samples):
    a_seg, b_seg = wal_samples.a_segments[0], wal_samples.b_segments[-1]
    r = wv.push(a_seg, config=repo.config)
    assert r.returncode == 0, r.stderr
    files_before = repo.files()
    r = wv.push(b_seg, config=repo.config)
    assert r.returncode != 0, "WAL of another cluster was accepted"
    assert str(wal_samples.a_sysid) in r.stderr, r.stderr
    assert str(wal_samples.b_sysid) in r.stderr, r.stderr
    assert repo.files() == files_before
    b_name = os.path.basename(b_seg)
    if b_name != os.path.basename(a_seg):
        assert not repo.has(b_name)
