#!/usr/bin/python3
"""bench_wal_push_measure.py - the measuring half of bench_wal_push.sh (run as the postgres user).

Each sample is one whole run of a method on one 16 MiB segment: the wall time from spawning the
first process to reaping the last (time.perf_counter), the user+sys CPU and the peak RSS that
wait4() reports for that child (and its own reaped children). The methods take turns: every round
visits every segment, and on each segment the three methods run one after another, in an order that
rotates from segment to segment, so that whatever drifts (page cache, writeback, other load) falls on
all of them alike. Before each run the destination does not hold the segment; the bytes the run
left there are recorded and removed outside the timing.

Methods:
  cp+fsync    `cp SEG DIR/SEG` then `sync DIR/SEG DIR` (GNU sync with operands: fsync() of each)
  pgbackrest  `pgbackrest --config=CONF --stanza=bench archive-push SEG` (lz4, archive-async=n)
  wal-push    `wal-push -c CONF SEG` into a posix repository (lz4 level 1)
"""

import argparse
import glob
import os
import statistics
import shutil
import subprocess
import sys
import time

SEG16 = 16 * 1024 * 1024
TIME = "/usr/bin/time"
CP = SYNC = PGBACKREST = TRUE = None  # absolute paths, set in main()


def spawn_wait(argv, log, rssfile=None):
    """Run argv with stdin /dev/null and stdout/stderr appended to log; argv[0] is an absolute path.
    Returns (exit status, cpu seconds, maxrss KiB or 0).

    Timed runs spawn the program directly: wall time and wait4()'s user+sys CPU. Their peak RSS is
    useless: a child spawned from this Python process keeps Python's RSS high-water mark across exec
    (the kernel records the larger of the old and the new image), about 12 MiB whatever the program
    did. So the peak RSS comes from separate, untimed runs (rssfile given) under GNU time, which
    forks the program from its own small image and reports %M for it; that costs about 4 ms of
    process start here, which is why the timed runs do without it."""
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    full = argv if rssfile is None else [TIME, "-q", "-f", "%M", "-o", rssfile, "--"] + argv
    pid = os.posix_spawn(full[0], full, os.environ, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    rss = 0
    if rssfile is not None:
        try:
            with open(rssfile) as f:
                rss = int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    return os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, rss


def run_steps(steps, log, with_rss=False):
    """Run the argv lists one after another, stop at the first failure.
    Returns (rc, wall ms, cpu ms, peak rss KiB)."""
    cpu = 0.0
    rss = 0
    rc = 0
    rssfile = log + ".rss" if with_rss else None
    t0 = time.perf_counter()
    for argv in steps:
        rc, c, r = spawn_wait(argv, log, rssfile)
        cpu += c
        rss = max(rss, r)
        if rc != 0:
            break
    wall = time.perf_counter() - t0
    return rc, wall * 1000.0, cpu * 1000.0, rss


def which(prog):
    path = shutil.which(prog)
    if path is None:
        die(f"{prog} is not on PATH")
    return os.path.realpath(path)


class Method:
    def __init__(self, name, label):
        self.name = name
        self.label = label
        self.wall = []
        self.cpu = []
        self.rss = []
        self.bytes = []

    def record(self, wall, cpu, rss, nbytes):
        if rss:
            self.rss.append(rss)
        else:
            self.wall.append(wall)
            self.cpu.append(cpu)
            self.bytes.append(nbytes)


def first16(seg):
    return os.path.basename(seg)[:16]


class CpFsync(Method):
    def __init__(self, destdir):
        super().__init__("cp", "cp + fsync")
        self.destdir = destdir
        os.makedirs(destdir, exist_ok=True)

    def steps(self, seg):
        dest = os.path.join(self.destdir, os.path.basename(seg))
        return [[CP, seg, dest], [SYNC, dest, self.destdir]]

    def outputs(self, seg):
        p = os.path.join(self.destdir, os.path.basename(seg))
        return [p] if os.path.exists(p) else []


class PgBackRest(Method):
    def __init__(self, conf, repo, stanza):
        super().__init__("pgbackrest", "pgbackrest lz4")
        self.conf = conf
        self.repo = repo
        self.stanza = stanza

    def steps(self, seg):
        return [[PGBACKREST, "--config=" + self.conf, "--stanza=" + self.stanza,
                 "archive-push", seg]]

    def outputs(self, seg):
        return glob.glob(os.path.join(self.repo, "archive", self.stanza, "*", first16(seg),
                                      os.path.basename(seg) + "-*"))


class WalPush(Method):
    def __init__(self, binary, conf, repo, label="wal-push"):
        super().__init__("wal-push", label)
        self.binary = binary
        self.conf = conf
        self.repo = repo

    def steps(self, seg):
        return [[self.binary, "-c", self.conf, seg]]

    def outputs(self, seg):
        return [p for p in [os.path.join(self.repo, "wal", first16(seg), os.path.basename(seg))]
                if os.path.exists(p)]


def die(msg):
    print("bench_wal_push: error: " + msg, file=sys.stderr)
    sys.exit(1)


def one_run(m, seg, log, record=True, with_rss=False):
    for p in m.outputs(seg):
        os.unlink(p)
    rc, wall, cpu, rss = run_steps(m.steps(seg), log, with_rss)
    if rc != 0:
        with open(log, errors="replace") as f:
            tail = f.read()[-2000:]
        die(f"{m.label} failed on {os.path.basename(seg)} (exit {rc}):\n{tail}")
    outs = m.outputs(seg)
    if not outs:
        die(f"{m.label} exited 0 on {os.path.basename(seg)} but left nothing in its destination")
    nbytes = sum(os.path.getsize(p) for p in outs)
    if record:
        m.record(wall, cpu, rss, nbytes)
    return outs


def verify_wal_push(args, seg, log):
    """wal-fetch the object wal-push just stored and compare it with the source."""
    dest = os.path.join(args.tmp, "fetched")
    rc, _, _, _ = run_steps([[args.wal_fetch, "-c", args.walvault_conf, os.path.basename(seg),
                              dest]], log)
    if rc != 0:
        die(f"wal-fetch of {os.path.basename(seg)} failed (exit {rc}); see {log}")
    if subprocess.run(["cmp", "-s", seg, dest]).returncode != 0:
        die(f"wal-fetch returned different bytes for {os.path.basename(seg)}")
    os.unlink(dest)


def fmt_ms(v):
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def pct(nbytes):
    return f"{100.0 * nbytes / SEG16:.1f}"


def mib(kib):
    return kib / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--segdir", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wal-push", required=True)
    ap.add_argument("--wal-fetch", required=True)
    ap.add_argument("--walvault-conf", required=True)
    ap.add_argument("--walvault-repo", required=True)
    ap.add_argument("--pgbackrest-conf", required=True)
    ap.add_argument("--pgbackrest-repo", required=True)
    ap.add_argument("--stanza", default="bench")
    ap.add_argument("--seg1g")
    ap.add_argument("--walvault-conf-1g")
    ap.add_argument("--walvault-repo-1g")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    global CP, SYNC, PGBACKREST, TRUE
    CP, SYNC, PGBACKREST, TRUE = which("cp"), which("sync"), which("pgbackrest"), which("true")

    segs = sorted(os.path.join(args.segdir, s) for s in os.listdir(args.segdir))
    if not segs:
        die(f"no segments in {args.segdir}")
    log = os.path.join(args.tmp, "runs.log")
    cp = CpFsync(os.path.join(args.tmp, "cp-dest"))
    pgbr = PgBackRest(args.pgbackrest_conf, args.pgbackrest_repo, args.stanza)
    wp = WalPush(args.wal_push, args.walvault_conf, args.walvault_repo)
    methods = [cp, pgbr, wp]

    # Warm-up (not recorded): binaries and libraries into the page cache, repositories initialised.
    for m in methods:
        one_run(m, segs[0], log, record=False)
    verify_wal_push(args, segs[0], log)

    # The harness's own floor: an empty program through the same path.
    floor = [run_steps([[TRUE]], log) for _ in range(20)]
    floor_wall = statistics.median(f[1] for f in floor)
    floor_rss = statistics.median(run_steps([[TRUE]], log, True)[3] for _ in range(5))

    t_start = time.perf_counter()
    k = 0
    for _ in range(args.rounds):
        for seg in segs:
            for j in range(len(methods)):
                one_run(methods[(k + j) % len(methods)], seg, log)
            k += 1
    verify_wal_push(args, segs[-1], log)
    elapsed = time.perf_counter() - t_start
    # Peak RSS: one more pass, untimed, under GNU time.
    for i, seg in enumerate(segs):
        for j in range(len(methods)):
            one_run(methods[(i + j) % len(methods)], seg, log, with_rss=True)

    n = len(wp.wall)
    med = {m.name: statistics.median(m.wall) for m in methods}
    print()
    print(f"wal-push benchmark{(' (' + args.label + ')') if args.label else ''}: "
          f"{len(segs)} real 16 MiB WAL segments (pgbench) x {args.rounds} rounds = {n} runs "
          f"per method, interleaved, {elapsed:.0f} s")
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().release}; whole-process times per segment")
    print(f"process start floor (/bin/true, spawned the same way): {floor_wall:.1f} ms; "
          f"cp+fsync pays it twice (cp, sync)")
    print(f"peak RSS from a separate untimed pass under GNU time (its floor, /bin/true: "
          f"{mib(floor_rss):.1f} MiB)")
    print()
    hdr = (f"{'method':<16} {'wall ms median':>14} {'(min - max)':>17} {'CPU ms median':>14} "
           f"{'peak RSS MiB':>13} {'bytes written':>14} {'of input (min - max)':>22}")
    print(hdr)
    print("-" * len(hdr))
    for m in methods:
        b = statistics.median(m.bytes)
        print(f"{m.label:<16} {fmt_ms(med[m.name]):>14} "
              f"{'(' + fmt_ms(min(m.wall)) + ' - ' + fmt_ms(max(m.wall)) + ')':>17} "
              f"{fmt_ms(statistics.median(m.cpu)):>14} {mib(statistics.median(m.rss)):>13.1f} "
              f"{int(b):>14} {100.0 * b / SEG16:>8.1f}% "
              f"{'(' + pct(min(m.bytes)) + ' - ' + pct(max(m.bytes)) + ')':>13}")
    print()

    rss16 = mib(max(wp.rss))
    rows = []
    r1 = med["wal-push"] / med["pgbackrest"]
    r2 = med["wal-push"] / med["cp"]
    rows.append(("wal-push / pgbackrest lz4 (median wall)", f"{r1:.2f}x", "<= 0.5x", r1 <= 0.5))
    rows.append(("wal-push / cp+fsync (median wall)", f"{r2:.2f}x", "<= 0.8x", r2 <= 0.8))
    rows.append(("wal-push peak RSS, 16 MiB segment (max)", f"{rss16:.1f} MiB", "<= 16 MiB",
                 rss16 <= 16.0))

    if args.seg1g:
        # The 1 GiB segment: wal-push and cp+fsync alternately, 3 runs each.
        cp1 = CpFsync(os.path.join(args.tmp, "cp-dest-1g"))
        cp1.label = "cp + fsync"
        wp1 = WalPush(args.wal_push, args.walvault_conf_1g, args.walvault_repo_1g)
        for i in range(3):
            for m in ([wp1, cp1] if i % 2 == 0 else [cp1, wp1]):
                one_run(m, args.seg1g, log)
        for m in (wp1, cp1):
            one_run(m, args.seg1g, log, with_rss=True)
        for p in wp1.outputs(args.seg1g) + cp1.outputs(args.seg1g):
            os.unlink(p)
        rss1g = mib(max(wp1.rss))
        print(f"1 GiB segment of random data ({os.path.basename(args.seg1g)}), 3 runs each:")
        for m in (cp1, wp1):
            b = statistics.median(m.bytes)
            print(f"  {m.label:<14} wall ms median {fmt_ms(statistics.median(m.wall))} "
                  f"({fmt_ms(min(m.wall))} - {fmt_ms(max(m.wall))}), CPU ms "
                  f"{fmt_ms(statistics.median(m.cpu))}, peak RSS {mib(max(m.rss)):.1f} MiB, "
                  f"{int(b)} bytes written ({100.0 * b / (1 << 30):.1f}%)")
        print()
        rows.append(("wal-push peak RSS, 1 GiB segment (max)", f"{rss1g:.1f} MiB",
                     f"<= {rss16 + 1.0:.1f} MiB (16 MiB figure + 1)", rss1g <= rss16 + 1.0))

    w = max(len(r[0]) for r in rows)
    print(f"{'target                 ':<{w}}  {'measured':>10}  {'target':<28} result")
    for name, val, tgt, ok in rows:
        print(f"{name:<{w}}  {val:>10}  {tgt:<28} {'met' if ok else 'MISSED'}")
    print()
    print("reference measured earlier on this VM: cp+fsync ~39 ms, pgbackrest lz4 ~98 ms")


if __name__ == "__main__":
    main()
