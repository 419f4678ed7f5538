#!/usr/bin/python3
"""bench_wal_push_profile.py - where wal-push's CPU time goes (bench_wal_push.sh --profile).

    perf script -i perf.data --comm wal-push -F ip,sym,dso | \
        bench_wal_push_profile.py --runs N --freq HZ --wal-push BIN

Reads perf's call-chain samples of N wal-push runs (sampled at HZ), puts each sample in one bucket
by the library of its leaf frame (libcrypto: SHA-256, liblz4: compression, the dynamic loader) or,
for kernel samples, by the system call or event on its call chain (read of the segment, write of the
object, fsync, exec/mmap/page faults/exit), and prints milliseconds per run for each bucket.
Then it times process start alone: `wal-push --version` against /bin/true (wall and CPU, median
of 30), which is what every archive_command invocation pays before the first byte is read.
"""

import argparse
import collections
import os
import re
import statistics
import sys
import time


def bucket(frames):
    leaf = frames[0]
    m = re.search(r"\(([^()]*)\)\s*$", leaf)
    dso = m.group(1) if m else "?"
    chain = " ".join(frames)
    if "kernel" in dso or "kallsyms" in dso:
        if "vfs_read" in chain or "ksys_read" in chain or "ksys_pread" in chain:
            return "kernel: read() of the segment (page-cache copy)"
        if "vfs_write" in chain or "ksys_write" in chain:
            return "kernel: write() of the object"
        if "fsync" in chain or "sync_file_range" in chain:
            return "kernel: fsync"
        if re.search(r"exec|mmap|fault|exit|mprotect", chain, re.I):
            return "kernel: exec, mmap, page faults, exit (process start/end)"
        return "kernel: other"
    base = os.path.basename(dso)
    if base.startswith("libcrypto"):
        return "libcrypto (SHA-256 of the segment)"
    if base.startswith("liblz4"):
        return "liblz4 (compression)"
    if base.startswith("ld-linux"):
        return "dynamic loader (relocations of the shared libraries)"
    if base.startswith("libc.so"):
        return "libc (memcpy, malloc, ...)"
    if base == "wal-push":
        sym = leaf.split()[1] if len(leaf.split()) > 1 else "?"
        if "crc32c" in sym:
            return "wal-push: CRC-32C of WAL records (walreader)"
        if "walreader" in sym:
            return "wal-push: WAL record parsing (walreader)"
        return "wal-push: other own code"
    return "other shared libraries"


def spawn(argv):
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    _, _, ru = os.wait4(pid, 0)
    return (time.perf_counter() - t0) * 1000.0, (ru.ru_utime + ru.ru_stime) * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--freq", type=int, required=True)
    ap.add_argument("--wal-push", required=True)
    args = ap.parse_args()

    counts = collections.Counter()
    frames = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            if frames:
                counts[bucket(frames)] += 1
            frames = []
        else:
            frames.append(line)
    if frames:
        counts[bucket(frames)] += 1
    total = sum(counts.values())
    if total == 0:
        print("profile: perf recorded no samples of wal-push")
        return
    per_run = 1000.0 / args.freq / args.runs
    print(f"profile of {args.runs} wal-push runs on 16 MiB segments (perf, {args.freq} Hz, "
          f"{total} samples; CPU ms per run, perf adds some overhead):")
    for k, v in counts.most_common():
        print(f"  {v * per_run:7.2f} ms  {100.0 * v / total:5.1f}%  {k}")
    print(f"  {total * per_run:7.2f} ms  total")

    start = [spawn([args.wal_push, "--version"]) for _ in range(30)]
    true = [spawn(["/bin/true"]) for _ in range(30)]
    print("process start alone, median of 30 (wall ms / CPU ms): "
          f"wal-push --version {statistics.median(s[0] for s in start):.1f} / "
          f"{statistics.median(s[1] for s in start):.1f}, /bin/true "
          f"{statistics.median(s[0] for s in true):.1f} / {statistics.median(s[1] for s in true):.1f}")


if __name__ == "__main__":
    main()
