#!/usr/bin/env bash
# bench_encrypt.sh - what encryption at rest costs: wal-push, basebackup backup and basebackup
# restore with encryption off, symmetric (encrypt_key_file) and public-key
# (encrypt_public_key_file; restore with encrypt_private_key_file), next to pgBackRest with
# repo1-cipher-type=none and aes-256-cbc. Target: encryption adds <= 10% to each.
#
#     bash contrib/bench/bench_encrypt.sh [--scale N] [--rounds N] [--wal-rounds N] [--segments N]
#                                         [--parts walpush,backup] [--modes off,sym,pub] [--bin DIR]
#                                         [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it needs (only the missing ones: pgbackrest, postgresql-15, ...),
#   2. builds walvault in Release into build-benchenc/ of this tree and installs it into the
#      temporary directory (or, with --bin DIR, copies an installed walvault from DIR),
#   3. makes the keys: 32 random bytes for encrypt_key_file, an X25519 key pair (openssl genpkey),
#      a random repo1-cipher-pass in the pgBackRest configuration file (never on a command line),
#   4. initdb's a throwaway PostgreSQL 15 cluster (postgres user, free loopback port) whose
#      archive_command copies each segment aside, then pgbackrest archive-pushes it into the
#      cipher-none and the aes-256-cbc repository, then wal-pushes it into the plain, the symmetric
#      and the public-key walvault repository (the database host's configuration holds only the
#      public key); loads pgbench -i -s --scale and runs pgbench for a few seconds,
#   5. wal-push (cluster stopped): --segments full 16 MiB segments of that WAL, spread evenly over
#      it; per round, per segment, the five methods one after another in an order that rotates from
#      segment to segment (bench_wal_push_measure.py's spawning and timing: whole processes, wall
#      and wait4() CPU), each into a repository that does not hold the segment yet,
#   6. backup and restore (cluster running): per round the five backups, then the five restores of
#      the newest backup of each repository (each into a fresh empty directory, followed by sync),
#      in a rotating order, under /usr/bin/time,
#   7. prints the tables, the ratios against encryption off (ratio of the medians, and the median of
#      the per-segment or per-round ratios, which share their moment's load) and the targets.
# Everything lives in one temporary directory that is removed at exit; servers are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/contrib/bench"
SCALE=55
ROUNDS=5
WAL_ROUNDS=3
NSEG=20
PARTS=walpush,backup
MODES=off,sym,pub
BINDIR=""
KEEP=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
TIME=/usr/bin/time

usage() {
    cat >&2 <<EOF
usage: bash contrib/bench/bench_encrypt.sh [--scale N] [--rounds N] [--wal-rounds N] [--segments N]
                                           [--parts walpush,backup] [--modes off,sym,pub]
                                           [--bin DIR] [--keep]

  --scale N       pgbench scale of the database backed up and restored (default $SCALE: ~850 MB)
  --rounds N      backup/restore rounds; each runs every method once, rotating (default $ROUNDS)
  --wal-rounds N  passes of wal-push over the segments (default $WAL_ROUNDS)
  --segments N    16 MiB WAL segments for the wal-push part (default $NSEG, 2..200)
  --parts LIST    walpush, backup or both (default $PARTS)
  --modes LIST    walvault's modes: off (always), sym, pub (default $MODES; --modes off measures
                  a walvault that cannot encrypt against pgBackRest's two)
  --bin DIR       use the walvault installed in DIR (DIR/wal-push, DIR/wal-fetch, DIR/basebackup)
                  instead of building this tree
  --keep          keep the temporary directory (servers are stopped all the same)
smoke run: --scale 5 --segments 4 --rounds 1 --wal-rounds 1
EOF
    exit 2
}

num() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
    case "$1" in
    --scale) [[ $# -ge 2 ]] || usage; num "$2"; SCALE="$2"; shift 2 ;;
    --rounds) [[ $# -ge 2 ]] || usage; num "$2"; ROUNDS="$2"; shift 2 ;;
    --wal-rounds) [[ $# -ge 2 ]] || usage; num "$2"; WAL_ROUNDS="$2"; shift 2 ;;
    --segments) [[ $# -ge 2 ]] || usage; num "$2"; NSEG="$2"; shift 2 ;;
    --parts) [[ $# -ge 2 ]] || usage; PARTS="$2"; shift 2 ;;
    --modes) [[ $# -ge 2 ]] || usage; MODES="$2"; shift 2 ;;
    --bin) [[ $# -ge 2 ]] || usage; BINDIR="$2"; shift 2 ;;
    --scale=* | --rounds=* | --wal-rounds=* | --segments=* | --parts=* | --modes=* | --bin=*)
        set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench_encrypt.sh: unknown argument \"$1\"" >&2; usage ;;
    esac
done
((NSEG >= 2 && NSEG <= 200)) || usage
DO_WAL=0
DO_BACKUP=0
IFS=, read -ra _parts <<<"$PARTS"
for p in "${_parts[@]}"; do
    case "$p" in
    walpush) DO_WAL=1 ;;
    backup) DO_BACKUP=1 ;;
    *) echo "bench_encrypt.sh: unknown part \"$p\" in --parts (walpush, backup)" >&2; usage ;;
    esac
done
((DO_WAL || DO_BACKUP)) || usage
WVMODES=(off)
IFS=, read -ra _modes <<<"$MODES"
for p in "${_modes[@]}"; do
    case "$p" in
    off) ;;
    sym | pub) [[ " ${WVMODES[*]} " == *" $p "* ]] || WVMODES+=("$p") ;;
    *) echo "bench_encrypt.sh: unknown mode \"$p\" in --modes (off, sym, pub)" >&2; usage ;;
    esac
done
has_mode() { [[ " ${WVMODES[*]} " == *" $1 "* ]]; }

say() { printf '=== %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench_encrypt.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and runs PostgreSQL as postgres)"
exec </dev/null

# --- 1. packages ---------------------------------------------------------------------------------
PACKAGES=(
    postgresql-15 postgresql-client-15 postgresql-contrib
    pgbackrest python3 time coreutils util-linux openssl
)
[[ -n "$BINDIR" ]] || PACKAGES+=(build-essential cmake pkg-config libpq-dev liblz4-dev libssl-dev
    libuv1-dev libinih-dev libcurl4-openssl-dev)
# shellcheck source=bench_common.sh
source "$HERE/bench_common.sh"
install_packages "${PACKAGES[@]}"
for f in "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql" /usr/bin/pgbackrest "$PY" \
    "$TIME" /usr/bin/openssl; do
    [[ -x "$f" ]] || die "$f is missing after the package installation"
done
id postgres >/dev/null 2>&1 || die "no postgres user (postgresql-15 should have created it)"

# --- temporary directory and cleanup --------------------------------------------------------------
bench_tmp bench_encrypt
trap on_signal INT TERM

# --- 2. build and install -------------------------------------------------------------------------
WV="$TMP/walvault"
install -d -m 755 "$WV/bin"
if [[ -n "$BINDIR" ]]; then
    for b in wal-push wal-fetch basebackup; do
        [[ -x "$BINDIR/$b" ]] || die "$BINDIR/$b is missing or not executable (--bin names an installed bin/)"
        install -m 755 "$BINDIR/$b" "$WV/bin/$b"
    done
    REV="installed in $BINDIR"
else
    BUILD="$ROOT/build-benchenc"
    say "building walvault (Release) in $BUILD"
    LOG="$TMP/cmake.log"
    { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWV_TESTS=OFF \
        && run_child cmake --build "$BUILD" -j"$(nproc)" \
        && cmake --install "$BUILD" --prefix "$WV"; } >"$LOG" 2>&1 \
        || { tail -40 "$LOG" >&2; die "build failed (see the lines above)"; }
    chmod -R a+rX "$WV"
    REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    [[ -z "$(git -C "$ROOT" status --porcelain -uno 2>/dev/null)" ]] || REV+="+local changes"
fi
for b in wal-push wal-fetch basebackup; do
    [[ -x "$WV/bin/$b" ]] || die "the installation has no bin/$b"
done
LABEL="walvault $REV, $(pgbackrest version)"

# --- 3. keys and configurations -------------------------------------------------------------------
SOCK="$TMP/sock"
DATA="$TMP/pg/data"
PLAIN="$TMP/plain-wal"
KEYS="$TMP/keys"
OUT="$TMP/out"
RESULTS="$TMP/results"
install -d -o postgres -g postgres -m 700 "$SOCK" "$TMP/pg" "$PLAIN" "$KEYS" "$OUT" \
    "$TMP/pgbr-lock" "$TMP/pgbr-log" "$TMP/pgbr-spool"
: >"$RESULTS"
chown postgres:postgres "$RESULTS"
PORT="$(free_port)"
CONN="host=$SOCK port=$PORT user=postgres dbname=postgres"

say "making the keys (32 random bytes; an X25519 pair; pgBackRest's cipher pass in its config file)"
(umask 077 && openssl rand -out "$KEYS/repo.key" 32)
(umask 077 && openssl genpkey -algorithm X25519 -out "$KEYS/repo.pem" 2>"$OUT/genpkey.err") \
    || { cat "$OUT/genpkey.err" >&2; die "openssl genpkey -algorithm X25519 failed"; }
openssl pkey -in "$KEYS/repo.pem" -pubout -out "$KEYS/repo.pub" 2>"$OUT/pkey.err" \
    || { cat "$OUT/pkey.err" >&2; die "openssl pkey -pubout failed"; }
chown postgres:postgres "$KEYS"/*
chmod 600 "$KEYS"/*

# walvault: the plain, the symmetric and the public-key repository. wvconf NAME KEYLINE writes
# $TMP/wv-NAME.conf for the repository $TMP/wv-NAME (KEYLINE: a [global] line, or empty).
wvconf() {
    local name="$1" repo="$2" keyline="$3"
    cat >"$TMP/wv-$name.conf" <<EOF
[global]
compress = lz4
process_max = 2
log_level = warn
$keyline

[repo1]
type = posix
path = $TMP/wv-$repo
EOF
    chown postgres:postgres "$TMP/wv-$name.conf"
    chmod 600 "$TMP/wv-$name.conf"
}
install -d -o postgres -g postgres -m 700 "$TMP/wv-off" "$TMP/wv-sym" "$TMP/wv-pub"
wvconf off off ""
wvconf sym sym "encrypt_key_file = $KEYS/repo.key"
# the database host holds the public key only; the restore host the private key only
wvconf pub pub "encrypt_public_key_file = $KEYS/repo.pub"
wvconf pubrestore pub "encrypt_private_key_file = $KEYS/repo.pem"

# pgBackRest: one configuration (and repository) per cipher, the same stanza. brconf NAME CIPHER
brconf() {
    local name="$1" cipher="$2" f="$TMP/pgbr-$1.conf"
    install -d -o postgres -g postgres -m 700 "$TMP/pgbr-$name"
    cat >"$f" <<EOF
[global]
repo1-path=$TMP/pgbr-$name
repo1-retention-full=100
repo1-cipher-type=$cipher
EOF
    # the pass goes from openssl straight into the file: on no command line, in no log
    [[ "$cipher" == none ]] || { printf 'repo1-cipher-pass='; openssl rand -hex 32; } >>"$f"
    cat >>"$f" <<EOF
compress-type=lz4
process-max=2
start-fast=y
archive-async=n
log-level-console=warn
log-level-stderr=warn
log-level-file=off
lock-path=$TMP/pgbr-lock
log-path=$TMP/pgbr-log
spool-path=$TMP/pgbr-spool

[bench]
pg1-path=$DATA
pg1-port=$PORT
pg1-socket-path=$SOCK
pg1-user=postgres
EOF
    chown postgres:postgres "$f"
    chmod 600 "$f"
}
brconf none none
brconf aes aes-256-cbc

# --- 4. the cluster and its WAL ---------------------------------------------------------------------
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
T_START="$(date +%s)"
say "initdb and start PostgreSQL 15 on 127.0.0.1:$PORT"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
ARCH="cp %p $PLAIN/%f.tmp && mv $PLAIN/%f.tmp $PLAIN/%f"
for c in none aes; do ARCH+=" && pgbackrest --config=$TMP/pgbr-$c.conf --stanza=bench archive-push %p"; done
for c in "${WVMODES[@]}"; do ARCH+=" && $WV/bin/wal-push -c $TMP/wv-$c.conf %p"; done
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum = off
archive_mode = on
archive_command = '$ARCH'
EOF
pg_start() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg/server.log" -w -t 120 start >/dev/null \
        || { tail -20 "$TMP/pg/server.log" >&2; die "the server did not start"; }
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 120 stop >/dev/null; }
RUNNING+=("$DATA")
pg_start

psql_q() { as_pg "$PGBIN/psql" -X -q -At -d "$CONN" -v ON_ERROR_STOP=1 -c "$1"; }

for c in none aes; do
    as_pg pgbackrest --config="$TMP/pgbr-$c.conf" --stanza=bench stanza-create >"$OUT/stanza-$c.log" 2>&1 \
        || { cat "$OUT/stanza-$c.log" >&2; die "pgbackrest stanza-create ($c) failed"; }
done

# archive_idle: switch to a new segment and wait until the archiver has no .ready file left.
archive_idle() {
    psql_q "select pg_switch_wal()" >/dev/null
    local i
    for ((i = 0; i < 2400; i++)); do
        compgen -G "$DATA/pg_wal/archive_status/*.ready" >/dev/null || return 0
        sleep 0.25
    done
    tail -20 "$TMP/pg/server.log" >&2
    die "the archiver did not catch up in 600 s (its log is above)"
}

count_full() { find "$PLAIN" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' | wc -l; }

say "loading pgbench -i -s $SCALE (every segment archived into each repository)"
run_child runuser -u postgres -- "$PGBIN/pgbench" -i -q -s "$SCALE" -d "$CONN" >"$OUT/pgbench-i.log" 2>&1 \
    || { cat "$OUT/pgbench-i.log" >&2; die "pgbench -i -s $SCALE failed"; }
psql_q "vacuum analyze" >/dev/null
run_child runuser -u postgres -- "$PGBIN/pgbench" -n -c 2 -j 2 -T 10 -d "$CONN" >"$OUT/pgbench.log" 2>&1 \
    || { cat "$OUT/pgbench.log" >&2; die "pgbench -T 10 failed"; }
# a small --scale makes little WAL: bulk updates until there are enough segments
for ((i = 0; i < 60 && DO_WAL && $(count_full) <= NSEG + 1; i++)); do
    psql_q "update pgbench_accounts set abalance = abalance + $i where aid % 10 = $((i % 10))" >/dev/null
done
psql_q "checkpoint" >/dev/null
LASTSEG="$(psql_q "select pg_walfile_name(pg_current_wal_lsn())")"
archive_idle
DB_BYTES="$(psql_q "select pg_database_size('postgres')")"
say "database: $((DB_BYTES / 1048576)) MiB; $(count_full) segments archived"

# The wal-push segments: NSEG full ones (not the one pg_switch_wal closed early) spread evenly.
SEGDIR="$TMP/segs"
if ((DO_WAL)); then
    install -d -o postgres -g postgres "$SEGDIR"
    mapfile -t CHOSEN < <(find "$PLAIN" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' \
        -printf '%f\n' | sort | awk -v last="$LASTSEG" '$0 < last' \
        | awk -v n="$NSEG" '{ s[NR] = $0 } END { for (i = 0; i < n && NR >= n; i++) print s[int(i * NR / n) + 1] }')
    ((${#CHOSEN[@]} == NSEG)) || die "only $(count_full) segments were archived, $NSEG wanted (lower --segments)"
    for s in "${CHOSEN[@]}"; do
        [[ "$(stat -c %s "$PLAIN/$s")" == 16777216 ]] || die "$s is not 16 MiB"
        cp "$PLAIN/$s" "$SEGDIR/$s"
    done
    chown -R postgres:postgres "$SEGDIR"
fi

# Is each encrypted repository encrypted? walvault: a key record beside walvault.repo;
# pgBackRest: its archive files are OpenSSL "Salted__" streams.
for c in "${WVMODES[@]:1}"; do
    compgen -G "$TMP/wv-$c/keys/*" >/dev/null || die "the $c walvault repository has no key record: not encrypted"
done
! compgen -G "$TMP/wv-off/keys/*" >/dev/null || die "the plain walvault repository has a key record"
f="$(find "$TMP/pgbr-aes/archive" -type f -name '0*-*' -print -quit)"
[[ -n "$f" && "$(head -c 8 "$f")" == Salted__ ]] || die "pgBackRest's aes-256-cbc archive file ${f:-(none)} is not encrypted"

# --- 5. wal-push --------------------------------------------------------------------------------------
if ((DO_WAL)); then
    pg_stop
    sync
    say "wal-push: ${#CHOSEN[@]} segments x $WAL_ROUNDS rounds x $((${#WVMODES[@]} + 2)) methods, interleaved"
    install -m 644 "$HERE/bench_wal_push_measure.py" "$TMP/bench_wal_push_measure.py"
    install -d -o postgres -g postgres "$TMP/work"
    cat >"$TMP/enc_measure.py" <<'EOF'
"""wal-push with encryption off / symmetric / public key, pgbackrest archive-push with cipher none /
aes-256-cbc: bench_wal_push_measure.py's methods and spawning, five methods in a rotating order."""
import os, statistics, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_wal_push_measure as m

tmp, segdir, rounds, bindir, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
modes = sys.argv[6].split(",")
m.CP, m.SYNC, m.PGBACKREST, m.TRUE = m.which("cp"), m.which("sync"), m.which("pgbackrest"), m.which("true")
root = os.path.dirname(tmp.rstrip("/"))
log = os.path.join(tmp, "runs.log")
segs = sorted(os.path.join(segdir, s) for s in os.listdir(segdir))

def wp(name, lab):
    x = m.WalPush(os.path.join(bindir, "wal-push"), f"{root}/wv-{name}.conf", f"{root}/wv-{name}", lab)
    x.name = name
    return x

def br(name, lab):
    x = m.PgBackRest(f"{root}/pgbr-{name}.conf", f"{root}/pgbr-{name}", "bench")
    x.name, x.label = "br-" + name, lab
    return x

labels = {"off": "wal-push, encryption off", "sym": "wal-push, symmetric", "pub": "wal-push, public key"}
methods = [wp(x, labels[x]) for x in modes] + [br("none", "pgbackrest cipher none"),
                                              br("aes", "pgbackrest aes-256-cbc")]
by = {x.name: x for x in methods}

def check(seg):
    """wal-fetch each walvault repository's object (the public-key one with the private key only)
    and archive-get the aes-256-cbc one: the bytes must be the segment's."""
    n = os.path.basename(seg)
    for conf in [x if x != "pub" else "pubrestore" for x in modes]:
        dest = os.path.join(tmp, "fetched")
        rc = m.run_steps([[os.path.join(bindir, "wal-fetch"), "-c", f"{root}/wv-{conf}.conf", n, dest]], log)[0]
        if rc != 0:
            m.die(f"wal-fetch of {n} with wv-{conf}.conf failed (exit {rc}); see {log}")
        if subprocess.run(["cmp", "-s", seg, dest]).returncode != 0:
            m.die(f"wal-fetch with wv-{conf}.conf returned other bytes for {n}")
        os.unlink(dest)
    dest = os.path.join(tmp, "fetched")
    rc = m.run_steps([[m.PGBACKREST, f"--config={root}/pgbr-aes.conf", "--stanza=bench", "archive-get",
                       n, dest]], log)[0]
    if rc != 0 or subprocess.run(["cmp", "-s", seg, dest]).returncode != 0:
        m.die(f"pgbackrest archive-get (aes-256-cbc) of {n} failed or differs (exit {rc}); see {log}")
    os.unlink(dest)
    # and the public-key host cannot read what it wrote
    if "pub" not in modes:
        return
    rc = m.run_steps([[os.path.join(bindir, "wal-fetch"), "-c", f"{root}/wv-pub.conf", n, dest]], log)[0]
    if rc == 0:
        m.die(f"wal-fetch of {n} with only the public key succeeded: the object is readable without the private key")

for x in methods:  # warm-up, not recorded
    m.one_run(x, segs[0], log, record=False)
check(segs[0])
t0 = time.perf_counter()
k = 0
for _ in range(rounds):
    for seg in segs:
        for j in range(len(methods)):
            m.one_run(methods[(k + j) % len(methods)], seg, log)
        k += 1
elapsed = time.perf_counter() - t0
check(segs[-1])

def fmt(v):
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"

print()
print(f"wal-push ({label}): {len(segs)} real 16 MiB WAL segments (pgbench) x {rounds} rounds = "
      f"{len(methods[0].wall)} runs per method, {len(methods)} methods interleaved, {elapsed:.0f} s; "
      f"whole processes, local posix repositories, lz4")
print(f"machine: {os.cpu_count()} CPUs, load average now {' '.join(open('/proc/loadavg').read().split()[:3])} "
      f"(shared with other work: the wall times are noisy, the paired ratios less so)")
print()
hdr = (f"{'method':<26} {'wall ms median':>14} {'(min - max)':>17} {'CPU ms median':>14} "
       f"{'bytes median':>13} {'x off/none':>11} {'paired':>7} {'CPU x':>6}")
print(hdr)
print("-" * len(hdr))
base = {"off": "off", "sym": "off", "pub": "off", "br-none": "br-none", "br-aes": "br-none"}
rows = {}
for x in methods:
    b = by[base[x.name]]
    r = statistics.median(x.wall) / statistics.median(b.wall)
    pr = statistics.median(a / c for a, c in zip(x.wall, b.wall))
    rc = statistics.median(x.cpu) / statistics.median(b.cpu)
    rows[x.name] = (r, pr, rc)
    print(f"{x.label:<26} {fmt(statistics.median(x.wall)):>14} "
          f"{'(' + fmt(min(x.wall)) + ' - ' + fmt(max(x.wall)) + ')':>17} "
          f"{fmt(statistics.median(x.cpu)):>14} {int(statistics.median(x.bytes)):>13} "
          f"{r:>10.2f}x {pr:>6.2f}x {rc:>5.2f}x")
print()
print("x off/none: ratio of the medians against the same program unencrypted; paired: median of the")
print("per-segment ratios (the two runs followed each other on the same segment); CPU x: ratio of the CPU medians")
with open(os.path.join(tmp, "walpush.targets"), "w") as f:
    for n in [x for x in ("sym", "pub") if x in modes] + ["br-aes"]:
        f.write("walpush %s %.4f %.4f %.4f\n" % ((n,) + rows[n]))
EOF
    run_child runuser -u postgres -- "$PY" "$TMP/enc_measure.py" "$TMP/work" "$SEGDIR" "$WAL_ROUNDS" \
        "$WV/bin" "$LABEL" "$(IFS=,; echo "${WVMODES[*]}")" >"$OUT/walpush.report" \
        || { cat "$OUT/walpush.report"; die "the wal-push measurement failed"; }
    cat "$OUT/walpush.report"
    pg_start
fi

# --- 6. backup and restore ----------------------------------------------------------------------------
# measure PHASE LABEL ROUND CMD...: run CMD as postgres under /usr/bin/time; one line into $RESULTS.
measure() {
    local phase="$1" label="$2" round="$3"
    shift 3
    local t="$OUT/time" o="$OUT/cmd.log"
    if ! run_child runuser -u postgres -- "$TIME" -o "$t" -f '%e %U %S %M' "$@" >"$o" 2>&1; then
        tail -30 "$o" >&2
        die "$label failed (its output is above): $*"
    fi
    echo "$phase $label $round $(tail -1 "$t")" >>"$RESULTS"
    printf '    %-12s %-10s %s\n' "$phase" "$label" "$(tail -1 "$t")" >&2
}
fresh_dir() { rm -rf "$1"; install -d -o postgres -g postgres -m 700 "$1"; }
# before each backup: nothing left to archive, nothing dirty, nothing in the write-back queue
settle() { archive_idle; psql_q "checkpoint" >/dev/null; sync; }

METHODS=("${WVMODES[@]/#/bb-}" br-none br-aes)
run_backup() {
    case "$1" in
    bb-*) measure backup "$1" "$2" "$WV/bin/basebackup" -c "$TMP/wv-${1#bb-}.conf" backup -d "$CONN" \
        --checkpoint fast ;;
    br-*) measure backup "$1" "$2" pgbackrest --config="$TMP/pgbr-${1#br-}.conf" --stanza=bench backup \
        --type=full ;;
    esac
}
run_restore() {
    local dst="$TMP/rst" conf
    fresh_dir "$dst"
    sync
    case "$1" in
    bb-*)
        conf="$TMP/wv-${1#bb-}.conf"
        [[ "$1" != bb-pub ]] || conf="$TMP/wv-pubrestore.conf"
        measure restore "$1" "$2" sh -c "'$WV/bin/basebackup' -c '$conf' restore --pgdata '$dst' && sync"
        ;;
    br-*) measure restore "$1" "$2" sh -c \
        "pgbackrest --config='$TMP/pgbr-${1#br-}.conf' --stanza=bench --pg1-path='$dst' restore && sync" ;;
    esac
    [[ -f "$dst/PG_VERSION" && -f "$dst/global/pg_control" ]] || die "$1 restore left no PG_VERSION or pg_control in $dst"
    echo "size $1 $2 $(du -sb "$dst" | cut -f1) - - -" >>"$RESULTS"
    rm -rf "$dst"
}
if ((DO_BACKUP)); then
    for ((r = 1; r <= ROUNDS; r++)); do
        say "backup, round $r/$ROUNDS"
        for ((i = 0; i < ${#METHODS[@]}; i++)); do
            settle
            run_backup "${METHODS[$(((i + r) % ${#METHODS[@]}))]}" "$r"
        done
        say "restore, round $r/$ROUNDS"
        for ((i = 0; i < ${#METHODS[@]}; i++)); do
            run_restore "${METHODS[$(((i + r) % ${#METHODS[@]}))]}" "$r"
        done
    done
    if has_mode pub; then
        # the public-key host cannot restore what it backed up
        fresh_dir "$TMP/rst"
        if as_pg "$WV/bin/basebackup" -c "$TMP/wv-pub.conf" restore --pgdata "$TMP/rst" >"$OUT/pubonly.log" 2>&1; then
            die "basebackup restore with only the public key succeeded"
        fi
        say "restore with only the public key fails, as it should: $(grep -v 'error: hint:' "$OUT/pubonly.log" | tail -1 | sed 's/^[^ ]* //')"
        rm -rf "$TMP/rst"
    fi
    for c in "${WVMODES[@]}"; do echo "repo wv-$c 0 $(du -sb "$TMP/wv-$c" | cut -f1) - - -" >>"$RESULTS"; done
    for c in none aes; do echo "repo br-$c 0 $(du -sb "$TMP/pgbr-$c" | cut -f1) - - -" >>"$RESULTS"; done
fi
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 7. the report ----------------------------------------------------------------------------------
[[ -f "$TMP/work/walpush.targets" ]] && cat "$TMP/work/walpush.targets" >>"$RESULTS"
"$PY" - "$RESULTS" "$LABEL" "$SCALE" "$DB_BYTES" "$ROUNDS" "$(nproc)" "$LOAD_START" "$LOAD_END" \
    "$(($(date +%s) - T_START))" <<'EOF'
import statistics, sys
res, label, scale, dbb, rounds, ncpu, load0, load1, secs = sys.argv[1:]
runs, sizes, repo, walt = {}, {}, {}, {}
for line in open(res):
    f = line.split()
    if f[0] == "walpush":
        walt[f[1]] = tuple(float(v) for v in f[2:5])
    elif f[0] == "size":
        sizes.setdefault(f[1], []).append(int(f[3]))
    elif f[0] == "repo":
        repo[f[1]] = int(f[3])
    else:
        runs.setdefault((f[0], f[1]), {})[int(f[2])] = (float(f[3]), float(f[4]) + float(f[5]),
                                                         int(f[6]) / 1024.0)
names = {"bb-off": "basebackup, encryption off", "bb-sym": "basebackup, symmetric",
         "bb-pub": "basebackup, public key", "br-none": "pgbackrest cipher none",
         "br-aes": "pgbackrest aes-256-cbc"}
base = {"bb-off": "bb-off", "bb-sym": "bb-off", "bb-pub": "bb-off", "br-none": "br-none",
        "br-aes": "br-none"}
targets = []
if walt:
    for n, what in (("sym", "wal-push symmetric / off"), ("pub", "wal-push public key / off")):
        if n in walt:
            targets.append((what, walt[n][0], walt[n][1], 1.10))
    targets.append(("pgbackrest archive-push aes-256-cbc / none", walt["br-aes"][0], walt["br-aes"][1], None))
if runs:
    print()
    print(f"backup and restore ({label}): pgbench -s {scale}, {int(dbb) / 2**20:.0f} MiB "
          f"(pg_database_size), {rounds} rounds, {len(set(k for _, k in runs))} methods interleaved; local posix repositories, lz4, "
          f"process_max / process-max 2; restore into an empty directory + sync; public key: backup "
          f"with encrypt_public_key_file only, restore with encrypt_private_key_file only")
    print(f"load average (1, 5, 15 min) at the start {load0}, at the end {load1}, on {ncpu} CPUs: "
          f"the machine is shared with other work, so single runs are noisy; the per-round ratios "
          f"share their round's load")
    for phase in ("backup", "restore"):
        print()
        hdr = (f"{phase:<8} {'method':<28} {'wall s median':>13} {'(min - max)':>15} {'CPU s':>7} "
               f"{'RSS MiB':>8} {'x off/none':>10} {'per round':>9} {'CPU x':>6}")
        print(hdr)
        print("-" * len(hdr))
        for k in names:
            r = runs.get((phase, k))
            if not r:
                continue
            b = runs[(phase, base[k])]
            ks = sorted(r)
            wall = [r[i][0] for i in ks]
            cpu = [r[i][1] for i in ks]
            rss = [r[i][2] for i in ks]
            x = statistics.median(wall) / statistics.median([b[i][0] for i in sorted(b)])
            pr = statistics.median(r[i][0] / b[i][0] for i in ks if i in b)
            cx = statistics.median(cpu) / statistics.median([b[i][1] for i in sorted(b)])
            print(f"{'':<8} {names[k]:<28} {statistics.median(wall):>13.2f} "
                  f"{'(' + format(min(wall), '.2f') + ' - ' + format(max(wall), '.2f') + ')':>15} "
                  f"{statistics.median(cpu):>7.2f} {max(rss):>8.1f} {x:>9.2f}x {pr:>8.2f}x {cx:>5.2f}x")
            if k in ("bb-sym", "bb-pub"):
                targets.append((f"basebackup {phase} {'symmetric' if k == 'bb-sym' else 'public key'} / off",
                                x, pr, 1.10))
            if k == "br-aes":
                targets.append((f"pgbackrest {phase} aes-256-cbc / none", x, pr, None))
    print()
    short = {"bb-off": "off", "bb-sym": "symmetric", "bb-pub": "public key", "br-none": "none",
             "br-aes": "aes-256-cbc"}
    def line(d):
        return ", ".join(f"{short[k]} {v / 2**20:.0f}" for k, v in d if k in short)
    rk = {k.replace("wv-", "bb-"): v for k, v in repo.items()}
    print("repository MiB after all backups, WAL included: walvault " +
          line((k, rk[k]) for k in names if k in rk and k.startswith("bb")) + "; pgbackrest " +
          line((k, rk[k]) for k in names if k in rk and k.startswith("br")))
    print("restored MiB (du -sb, median): " +
          line((k, statistics.median(sizes[k])) for k in names if k in sizes))
print()
print(f"{'target: encryption adds <= 10%':<46} {'medians':>8} {'paired':>8}  result")
for what, x, pr, lim in targets:
    res = "reference" if lim is None else ("met" if max(x, pr) <= lim else
                                           ("MISSED" if min(x, pr) > lim else "borderline"))
    print(f"{what:<46} {x:>7.2f}x {pr:>7.2f}x  {res}")
print(f"(met: both ratios <= 1.10; borderline: one of them; {secs} s in all)")
EOF
