#!/usr/bin/python3
"""bench_offsite_measure.py - the measuring half of bench_offsite.sh (run as the postgres user).

    bench_offsite_measure.py wal    ...   per 16 MiB segment: wal-push to S3, wal-push to SSH,
                                          pgbackrest archive-push to S3
    bench_offsite_measure.py backup ...   basebackup backup to S3, pgbackrest backup to S3,
                                          basebackup backup to SSH
    bench_offsite_measure.py report ...   the tables and the ratios against the targets

Each sample is one whole run of a method: the wall time from spawning the process to reaping it
(time.perf_counter) and the user+sys CPU that wait4() reports for it and the children it reaped
(the ssh client of an SSH repository, pgBackRest's local worker processes). The methods take
turns in an order that rotates from segment to segment (and from round to round), so that
whatever drifts on a shared machine falls on all of them alike.

Server-side CPU is recorded too, but it is not in the client's figure: the Ceph daemons' CPU
(radosgw, ceph-osd, ceph-mon: utime+stime from /proc/PID/stat before and after the run) and
sshd's (the listener's cutime+cstime, which collects each session's sshd and walvault-remote once
they are reaped; the run's reading waits until the session processes are gone). /proc counts
in clock ticks (10 ms), so a single WAL run's server figure is coarse; the mean over all runs is
what the report prints.

Every run writes into a destination that does not hold its object yet: what a previous run left
is deleted before the run, outside the timing. Results go to a JSON-lines file, one sample a line.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SEG16 = 16 * 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print("bench_offsite: error: " + msg, file=sys.stderr)
    sys.exit(1)


def s3client(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from s3_server import S3Client  # the project's SigV4 client, copied beside this script
    env = {}
    with open(args.s3_env) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v
    return S3Client(env["S3_ENDPOINT_HTTPS"], env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"],
                    "default", args.ca)


# --- server-side CPU ------------------------------------------------------------------------------

def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17
    return [int(x) for x in fields[11:15]]


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


class ServerCpu:
    def __init__(self, ceph_pids, sshd_pid):
        self.ceph = ceph_pids
        self.sshd = sshd_pid
        self.persistent = set()  # sshd sessions that outlive a run (a shared connection's)

    def ceph_ms(self):
        t = 0
        for p in self.ceph:
            s = _stat(p)
            if s:
                t += s[0] + s[1]
        return t * 1000.0 / TICK

    def sshd_ms(self, wait=True):
        """sshd's reaped children's CPU; first waits (up to 3 s) until no session is left but
        the persistent ones (whose CPU is counted only once they end)."""
        if wait:
            deadline = time.monotonic() + 3.0
            while set(_children(self.sshd)) - self.persistent and time.monotonic() < deadline:
                time.sleep(0.005)
        s = _stat(self.sshd)
        return 0.0 if not s else (s[2] + s[3]) * 1000.0 / TICK

    def snap(self):
        return (self.ceph_ms(), self.sshd_ms())


# --- running one sample ------------------------------------------------------------------------------

def spawn_wait(argv, log):
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    return os.waitstatus_to_exitcode(status), wall * 1000.0, (ru.ru_utime + ru.ru_stime) * 1000.0


def tail(log, n=3000):
    try:
        with open(log, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


class Method:
    """name, label, argv(item), before(item) -> clears the destination, after(item) -> bytes."""

    def __init__(self, name, label, argv, clear, measure):
        self.name, self.label = name, label
        self.argv, self.clear, self.measure = argv, clear, measure


def run_one(m, item, srv, log, out, kind, rnd, record=True):
    m.clear(item)
    s0 = srv.snap()
    if os.path.exists(log):
        os.truncate(log, 0)
    rc, wall, cpu = spawn_wait(m.argv(item), log)
    if rc != 0:
        die(f"{m.label} failed on {os.path.basename(str(item))} (exit {rc}):\n{tail(log)}")
    s1 = srv.snap()
    nbytes = m.measure(item)
    if not nbytes:
        die(f"{m.label} exited 0 on {os.path.basename(str(item))} but wrote nothing")
    rec = {"kind": kind, "method": m.name, "label": m.label, "round": rnd,
           "item": os.path.basename(str(item)), "wall_ms": wall, "cpu_ms": cpu,
           "ceph_ms": s1[0] - s0[0], "sshd_ms": s1[1] - s0[1], "bytes": nbytes}
    if record:
        out.write(json.dumps(rec) + "\n")
        out.flush()
        print(f"    {kind} r{rnd} {m.label:<30} {rec['item']:<26} {wall:8.1f} ms wall "
              f"{cpu:7.1f} ms CPU", file=sys.stderr)
    return rec


def s3_sum(c, bucket, prefix):
    return sum(o["size"] for o in c.list_objects(bucket, prefix))


def s3_delete(c, bucket, prefix):
    for o in c.list_objects(bucket, prefix):
        c.delete_object(bucket, o["key"])


def dir_bytes(path):
    n = 0
    for dp, _, fs in os.walk(path):
        for f in fs:
            try:
                n += os.lstat(os.path.join(dp, f)).st_size
            except OSError:
                pass
    return n


def pgbr_archive_prefix(stanza, seg):
    # repo1-path=/pgbackrest: archive/STANZA/15-1/0000000100000000/SEG-SHA1.lz4
    return f"pgbackrest/archive/{stanza}/15-1/{seg[:16]}/{seg}-"


# --- wal ---------------------------------------------------------------------------------------------

def cmd_wal(args):
    c = s3client(args)
    srv = ServerCpu([int(p) for p in args.server_pids.split(",")], int(args.sshd_pid))
    wal_push = os.path.join(args.bin, "wal-push")
    wal_fetch = os.path.join(args.bin, "wal-fetch")
    pgbackrest = shutil.which("pgbackrest")
    log = os.path.join(args.tmp, "run.log")

    def base(p):
        return os.path.basename(p)

    def ssh_path(repo, seg):
        return os.path.join(repo, "wal", base(seg)[:16], base(seg))

    def ssh_clear(repo):
        def clear(seg):
            d = os.path.dirname(ssh_path(repo, seg))
            if os.path.isdir(d):
                for f in os.listdir(d):
                    if f.startswith(base(seg)):
                        os.unlink(os.path.join(d, f))
        return clear

    def ssh_bytes(repo):
        def size(seg):
            p = ssh_path(repo, seg)
            return os.path.getsize(p) if os.path.exists(p) else 0
        return size

    wv_s3_prefix = lambda seg: f"wal/{base(seg)[:16]}/{base(seg)}"  # noqa: E731
    pg_prefix = lambda seg: pgbr_archive_prefix(args.stanza, base(seg))  # noqa: E731
    methods = [
        Method("wv_s3", "wal-push to S3",
               lambda s: [wal_push, "-c", args.wv_s3_conf, s],
               lambda s: s3_delete(c, args.wv_s3_bucket, wv_s3_prefix(s)),
               lambda s: s3_sum(c, args.wv_s3_bucket, wv_s3_prefix(s))),
        Method("wv_ssh", "wal-push to SSH",
               lambda s: [wal_push, "-c", args.wv_ssh_conf, s], ssh_clear(args.wv_ssh_repo),
               ssh_bytes(args.wv_ssh_repo)),
        Method("wv_sshmux", "wal-push to SSH, shared conn.",
               lambda s: [wal_push, "-c", args.wv_sshmux_conf, s], ssh_clear(args.wv_sshmux_repo),
               ssh_bytes(args.wv_sshmux_repo)),
        Method("pgbr_s3", "pgbackrest archive-push to S3",
               lambda s: [pgbackrest, "--config=" + args.pgbackrest_conf,
                          "--stanza=" + args.stanza, "archive-push", s],
               lambda s: s3_delete(c, "pgbackrest", pg_prefix(s)),
               lambda s: s3_sum(c, "pgbackrest", pg_prefix(s))),
    ]
    segs = sorted(os.path.join(args.segdir, s) for s in os.listdir(args.segdir))
    out = open(args.results, "a")

    # warm-up, not recorded: binaries into the page cache, repositories initialised, and the
    # shared ssh connection opened (its sshd session stays)
    for m in methods:
        run_one(m, segs[0], srv, log, out, "wal", 0, record=False)
    time.sleep(0.5)
    srv.persistent = set(_children(srv.sshd))
    # the process start floor, spawned the same way
    floor = statistics.median(spawn_wait(["/bin/true"], log)[1] for _ in range(20))
    out.write(json.dumps({"kind": "floor", "wall_ms": floor}) + "\n")

    k = 0
    t0 = time.perf_counter()
    for r in range(1, args.rounds + 1):
        for seg in segs:
            for j in range(len(methods)):
                run_one(methods[(k + j) % len(methods)], seg, srv, log, out, "wal", r)
            k += 1
    out.write(json.dumps({"kind": "wal_elapsed", "s": time.perf_counter() - t0,
                          "segments": len(segs)}) + "\n")

    # what was pushed last comes back intact from both walvault repositories
    for conf in (args.wv_s3_conf, args.wv_ssh_conf, args.wv_sshmux_conf):
        dest = os.path.join(args.tmp, "fetched")
        rc, _, _ = spawn_wait([wal_fetch, "-c", conf, base(segs[-1]), dest], log)
        if rc != 0:
            die(f"wal-fetch -c {conf} {base(segs[-1])} failed (exit {rc}):\n{tail(log)}")
        if subprocess.run(["cmp", "-s", segs[-1], dest]).returncode != 0:
            die(f"wal-fetch -c {conf} returned different bytes for {base(segs[-1])}")
        os.unlink(dest)
    out.close()


# --- backup ------------------------------------------------------------------------------------------

def psql(args, sql):
    r = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-At", "-v",
                        "ON_ERROR_STOP=1", "-d", args.conn, "-c", sql],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"psql {sql!r} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def settle(args):
    """Nothing left to archive, a checkpoint, nothing dirty: the same start for every backup."""
    psql(args, "select pg_switch_wal()")
    status = os.path.join(args.pgdata, "pg_wal", "archive_status")
    deadline = time.monotonic() + 300
    while any(f.endswith(".ready") for f in os.listdir(status)):
        if time.monotonic() > deadline:
            die("the archiver did not catch up within 300 s")
        time.sleep(0.1)
    psql(args, "checkpoint")
    os.sync()


def cmd_backup(args):
    c = s3client(args)
    srv = ServerCpu([int(p) for p in args.server_pids.split(",")], int(args.sshd_pid))
    bb = os.path.join(args.bin, "basebackup")
    pgbackrest = shutil.which("pgbackrest")
    log = os.path.join(args.tmp, "run.log")
    state = {}

    def grew(key, fn):
        def before(_):
            state[key] = fn()

        def after(_):
            return fn() - state[key]
        return before, after

    s3wv = grew("wv", lambda: s3_sum(c, args.wv_s3_bucket, "backup/"))
    s3br = grew("br", lambda: s3_sum(c, "pgbackrest", f"pgbackrest/backup/{args.stanza}/"))
    sshwv = grew("ssh", lambda: dir_bytes(os.path.join(args.wv_ssh_repo, "backup")))
    methods = [
        Method("bb_s3", "basebackup backup to S3",
               lambda _: [bb, "-c", args.wv_s3_conf, "backup", "-d", args.conn,
                          "--checkpoint", "fast"], *s3wv),
        Method("pgbr_s3", "pgbackrest backup to S3",
               lambda _: [pgbackrest, "--config=" + args.pgbackrest_conf,
                          "--stanza=" + args.stanza, "backup", "--type=full"], *s3br),
        Method("bb_ssh", "basebackup backup to SSH",
               lambda _: [bb, "-c", args.wv_ssh_conf, "backup", "-d", args.conn,
                          "--checkpoint", "fast"], *sshwv),
    ]
    out = open(args.results, "a")
    for r in range(1, args.rounds + 1):
        for j in range(len(methods)):
            settle(args)
            run_one(methods[(r - 1 + j) % len(methods)], f"round{r}", srv, log, out, "backup", r)
    out.close()


# --- report ------------------------------------------------------------------------------------------

def fmt(v):
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def table(recs, order, unit_bytes, what):
    hdr = (f"{'method':<31} {'wall ms median':>14} {'(min - max)':>19} {'CPU ms median':>13} "
           f"{'(min - max)':>17} {'server CPU ms/run':>17} {'bytes median':>13} {'of ' + what:>8}")
    print(hdr)
    print("-" * len(hdr))
    med = {}
    for name in order:
        rs = [r for r in recs if r["method"] == name]
        if not rs:
            continue
        w = [r["wall_ms"] for r in rs]
        cp = [r["cpu_ms"] for r in rs]
        # the peer this method talks to: sshd for the SSH methods, the Ceph daemons otherwise
        server = statistics.mean(r["sshd_ms"] if "ssh" in name else r["ceph_ms"] for r in rs)
        b = statistics.median(r["bytes"] for r in rs)
        med[name] = (statistics.median(w), statistics.median(cp), len(rs))
        print(f"{rs[0]['label']:<31} {fmt(med[name][0]):>14} "
              f"{'(' + fmt(min(w)) + ' - ' + fmt(max(w)) + ')':>19} {fmt(med[name][1]):>13} "
              f"{'(' + fmt(min(cp)) + ' - ' + fmt(max(cp)) + ')':>17} {fmt(server):>17} "
              f"{int(b):>13} {100.0 * b / unit_bytes:>7.1f}%")
    ssh = [r for r in recs if "ssh" in r["method"]]
    if ssh:
        rate = sum(r["ceph_ms"] for r in ssh) / sum(r["wall_ms"] for r in ssh) * 1000.0
        print(f"(the Ceph daemons' own background CPU, measured during the SSH runs: "
              f"{rate:.0f} ms per second; it is part of the S3 methods' server CPU)")
    return med


def cmd_report(args):
    recs = []
    with open(args.results) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    floor = next((r["wall_ms"] for r in recs if r["kind"] == "floor"), None)
    welapsed = next((r for r in recs if r["kind"] == "wal_elapsed"), None)
    wal = [r for r in recs if r["kind"] == "wal"]
    bk = [r for r in recs if r["kind"] == "backup"]
    rounds = max([r["round"] for r in wal + bk] or [0])

    print()
    print(f"off-site benchmark ({args.label})")
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().release}; load average (1, 5, 15 min) "
          f"at start {args.load_start}, at end {args.load_end}; whole run {args.elapsed} s")
    print("peers on loopback: Ceph RADOS Gateway (HTTPS, throwaway CA, path style, memstore OSD), "
          "OpenSSH sshd (walvault-remote on the server side)")
    print("client figures: whole process (wall from spawn to reap; CPU = user+sys from wait4, "
          "with reaped children: ssh, pgBackRest's workers)")
    print("server CPU ms/run: mean per run of the peer's CPU, not in the CPU column: "
          "radosgw+ceph-osd+ceph-mon for S3, sshd+walvault-remote for SSH (/proc, 10 ms ticks)")
    if floor is not None:
        print(f"process start floor (/bin/true, spawned the same way): {floor:.1f} ms")
    print()
    rows = []
    if wal:
        nseg = welapsed["segments"] if welapsed else 0
        n = len([r for r in wal if r["method"] == "wv_s3"])
        print(f"WAL: {nseg} real 16 MiB segments (pgbench) x {rounds} rounds = {n} runs per method, "
              f"round robin per segment, {welapsed['s'] if welapsed else 0:.0f} s")
        med = table(wal, ["wv_s3", "wv_ssh", "wv_sshmux", "pgbr_s3"], SEG16, "16 MiB")
        print()
        if "wv_s3" in med and "pgbr_s3" in med:
            r = med["wv_s3"][0] / med["pgbr_s3"][0]
            rows.append(("wal-push to S3 / pgbackrest archive-push (median wall)", r, 0.5))
            rows.append(("wal-push to S3 / pgbackrest archive-push (median CPU)",
                         med["wv_s3"][1] / med["pgbr_s3"][1], None))
            rows.append(("wal-push to SSH / pgbackrest archive-push S3 (median wall)",
                         med["wv_ssh"][0] / med["pgbr_s3"][0], None))
            if "wv_sshmux" in med:
                rows.append(("wal-push to SSH, shared connection / pgbackrest S3 (wall)",
                             med["wv_sshmux"][0] / med["pgbr_s3"][0], None))
    if bk:
        n = len([r for r in bk if r["method"] == "bb_s3"])
        print(f"base backup: pgbench -s {args.scale} database, {int(args.db_bytes) / 1048576:.0f} MiB "
              f"(pg_database_size), {n} backups per method, rotating order, each after a "
              f"checkpoint with the archive idle")
        med = table(bk, ["bb_s3", "pgbr_s3", "bb_ssh"], int(args.db_bytes), "database")
        print()
        if "bb_s3" in med and "pgbr_s3" in med:
            rows.append(("basebackup to S3 / pgbackrest backup (median wall)",
                         med["bb_s3"][0] / med["pgbr_s3"][0], 0.6))
            rows.append(("basebackup to S3 / pgbackrest backup (median CPU)",
                         med["bb_s3"][1] / med["pgbr_s3"][1], None))
            rows.append(("basebackup to SSH / pgbackrest backup S3 (median wall)",
                         med["bb_ssh"][0] / med["pgbr_s3"][0], None))
    if rows:
        w = max(len(r[0]) for r in rows)
        print(f"{'ratio':<{w}}  {'measured':>8}  {'target':<8} result")
        for name, val, tgt in rows:
            res = ("met" if val <= tgt else "MISSED") if tgt is not None else "(information)"
            print(f"{name:<{w}}  {val:>7.2f}x  {('<= ' + str(tgt) + 'x') if tgt else '':<8} {res}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["wal", "backup", "report"])
    ap.add_argument("--tmp")
    ap.add_argument("--results", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin")
    ap.add_argument("--s3-env")
    ap.add_argument("--ca")
    ap.add_argument("--server-pids", default="")
    ap.add_argument("--sshd-pid", default="0")
    ap.add_argument("--pgbackrest-conf")
    ap.add_argument("--stanza")
    ap.add_argument("--segdir")
    ap.add_argument("--wv-s3-conf")
    ap.add_argument("--wv-s3-bucket")
    ap.add_argument("--wv-ssh-conf")
    ap.add_argument("--wv-ssh-repo")
    ap.add_argument("--wv-sshmux-conf")
    ap.add_argument("--wv-sshmux-repo")
    ap.add_argument("--conn")
    ap.add_argument("--pgdata")
    ap.add_argument("--label", default="")
    ap.add_argument("--db-bytes", default="0")
    ap.add_argument("--scale", default="?")
    ap.add_argument("--load-start", default="?")
    ap.add_argument("--load-end", default="?")
    ap.add_argument("--elapsed", default="?")
    args = ap.parse_args()
    {"wal": cmd_wal, "backup": cmd_backup, "report": cmd_report}[args.mode](args)


if __name__ == "__main__":
    main()
