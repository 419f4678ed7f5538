#!/usr/bin/env bash
# bench_backup.sh - basebackup backup/restore and wal-fetch replay next to PostgreSQL's own tools
# (the floors) and pgBackRest.
#
#     bash contrib/bench/bench_backup.sh [--scale N] [--small-scale N] [--rounds N] [--segments N]
#                                        [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it needs (only the missing ones: pgbackrest, postgresql-15, ...),
#   2. builds walvault in Release into build-benchbackup/ of this tree and installs it into the
#      temporary directory (readable by postgres),
#   3. initdb's a throwaway PostgreSQL 15 cluster (postgres user, free loopback port) whose
#      archive_command copies each segment to a plain directory, then pgbackrest archive-push, then
#      wal-push (walvault last: its backups wait for their WAL the longest),
#   4. small scale (pgbench -s --small-scale): basebackup backup and restore, for peak RSS only,
#   5. loads pgbench -s --scale (>= 800 MB by default) and measures, round robin with a rotating
#      order, /usr/bin/time's wall, user, sys and max RSS of
#        backup:  pg_basebackup -Fp -X none, pg_basebackup -Ft -X none --compress=client-lz4,
#                 pgbackrest backup --type=full (lz4, process-max=2), basebackup backup
#        restore: pgbackrest restore, basebackup restore, cp -a of a plain copy; each into a fresh
#                 empty directory and each followed by sync
#        replay:  a base backup, then about --segments segments of pgbench WAL; a copy of the base
#                 recovers to the end of the archive through restore_command = cp from a plain
#                 directory, pgbackrest archive-get, wal-fetch; timed from pg_ctl start until the
#                 log says the promoted server is ready to accept connections,
#   6. prints a table of medians (min-max) and the ratios against the targets.
# Everything lives in one temporary directory that is removed at exit; servers are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCALE=55
SMALL=10
ROUNDS=3
NSEG=45
KEEP=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
TIME=/usr/bin/time

usage() {
    cat >&2 <<EOF
usage: bash contrib/bench/bench_backup.sh [--scale N] [--small-scale N] [--rounds N] [--segments N] [--keep]

  --scale N        pgbench scale of the measured database (default $SCALE: about 850 MB)
  --small-scale N  pgbench scale of the small run that shows basebackup's RSS is flat (default $SMALL)
  --rounds N       rounds; each runs every method once, in a rotating order (default $ROUNDS)
  --segments N     16 MiB WAL segments to replay (default $NSEG)
  --keep           keep the temporary directory (servers are stopped all the same)
EOF
    exit 2
}

num() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
    case "$1" in
    --scale) [[ $# -ge 2 ]] || usage; num "$2"; SCALE="$2"; shift 2 ;;
    --small-scale) [[ $# -ge 2 ]] || usage; num "$2"; SMALL="$2"; shift 2 ;;
    --rounds) [[ $# -ge 2 ]] || usage; num "$2"; ROUNDS="$2"; shift 2 ;;
    --segments) [[ $# -ge 2 ]] || usage; num "$2"; NSEG="$2"; shift 2 ;;
    --scale=* | --small-scale=* | --rounds=* | --segments=*)
        set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench_backup.sh: unknown argument \"$1\"" >&2; usage ;;
    esac
done

say() { printf '=== %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench_backup.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and runs PostgreSQL as postgres)"
exec </dev/null

# --- 1. packages ---------------------------------------------------------------------------------
PACKAGES=(
    build-essential cmake pkg-config
    libpq-dev liblz4-dev libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    pgbackrest python3 time coreutils util-linux
)
# shellcheck source=bench_common.sh
source "$ROOT/contrib/bench/bench_common.sh"
install_packages "${PACKAGES[@]}"
for f in "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql" "$PGBIN/pg_basebackup" \
    /usr/bin/pgbackrest "$PY" "$TIME"; do
    [[ -x "$f" ]] || die "$f is missing after the package installation"
done
id postgres >/dev/null 2>&1 || die "no postgres user (postgresql-15 should have created it)"

# --- temporary directory and cleanup --------------------------------------------------------------
bench_tmp bench_backup
trap 'exit 130' INT TERM

# --- 2. build and install -------------------------------------------------------------------------
BUILD="$ROOT/build-benchbackup"
WV="$TMP/walvault"
say "building walvault (Release) in $BUILD"
LOG="$TMP/cmake.log"
{ cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWV_TESTS=OFF \
    && cmake --build "$BUILD" -j"$(nproc)" && cmake --install "$BUILD" --prefix "$WV"; } >"$LOG" 2>&1 \
    || { tail -40 "$LOG" >&2; die "build failed"; }
chmod -R a+rX "$WV"
for b in wal-push wal-fetch basebackup; do
    [[ -x "$WV/bin/$b" ]] || die "the installation has no bin/$b"
done

# --- 3. the cluster, the repositories, the configurations -----------------------------------------
SOCK="$TMP/sock"
DATA="$TMP/pg/data"
PLAIN="$TMP/plain-wal"
WVREPO="$TMP/wv-repo"
WVCONF="$TMP/walvault.conf"
BRREPO="$TMP/pgbr-repo"
BRCONF="$TMP/pgbackrest.conf"
RESULTS="$TMP/results"
install -d -o postgres -g postgres -m 700 "$SOCK" "$TMP/pg" "$PLAIN" "$WVREPO" "$BRREPO" \
    "$TMP/pgbr-lock" "$TMP/pgbr-log" "$TMP/pgbr-spool" "$TMP/out"
: >"$RESULTS"
PORT="$(free_port)"

cat >"$WVCONF" <<EOF
[global]
compress = lz4
process_max = 2
log_level = warn

[repo1]
type = posix
path = $WVREPO
EOF
cat >"$BRCONF" <<EOF
[global]
repo1-path=$BRREPO
repo1-retention-full=100
compress-type=lz4
process-max=2
start-fast=y
log-level-console=warn
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
chmod 644 "$WVCONF" "$BRCONF"
BR=(pgbackrest --config="$BRCONF" --stanza=bench)
CONN="host=$SOCK port=$PORT user=postgres dbname=postgres"

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say "initdb and start PostgreSQL 15 on 127.0.0.1:$PORT"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
# The archive_command feeds all three archives; wal-push runs last, so basebackup backup waits for
# its WAL at least as long as pgbackrest backup and pg_basebackup wait for theirs.
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum = off
archive_mode = on
archive_command = 'cp %p $PLAIN/%f.tmp && mv $PLAIN/%f.tmp $PLAIN/%f && pgbackrest --config=$BRCONF --stanza=bench archive-push %p && $WV/bin/wal-push -c $WVCONF %p'
EOF
RUNNING+=("$DATA")
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg/server.log" -w -t 60 start >/dev/null \
    || { tail -20 "$TMP/pg/server.log" >&2; die "the server did not start"; }

psql_q() { as_pg "$PGBIN/psql" -X -q -At -d "$CONN" -v ON_ERROR_STOP=1 -c "$1"; }

as_pg "${BR[@]}" stanza-create >&2 || die "pgbackrest stanza-create failed"

# Switch to a new segment and wait until the archiver has nothing left (.ready files).
archive_idle() {
    psql_q "select pg_switch_wal()" >/dev/null
    local i
    for ((i = 0; i < 1200; i++)); do
        if ! compgen -G "$DATA/pg_wal/archive_status/*.ready" >/dev/null; then
            return 0
        fi
        sleep 0.25
    done
    tail -20 "$TMP/pg/server.log" >&2
    die "the archiver did not catch up in 300 s"
}

db_size() { psql_q "select pg_database_size('postgres')"; }

# measure PHASE LABEL CMD...: run CMD as postgres under /usr/bin/time; one line into $RESULTS.
measure() {
    local phase="$1" label="$2"
    shift 2
    local t="$TMP/out/time" o="$TMP/out/cmd.log"
    if ! as_pg "$TIME" -o "$t" -f '%e %U %S %M' "$@" >"$o" 2>&1; then
        tail -30 "$o" >&2
        die "$label failed: $*"
    fi
    echo "$phase $label $(tail -1 "$t")" >>"$RESULTS"
    printf '    %-16s %s\n' "$label" "$(tail -1 "$t")" >&2
}

fresh_dir() { rm -rf "$1"; install -d -o postgres -g postgres -m 700 "$1"; }

# Before each measured backup: nothing to archive, nothing dirty, nothing in the write-back queue.
settle() { archive_idle; psql_q "checkpoint" >/dev/null; sync; }

# --- 4. small scale: basebackup's RSS --------------------------------------------------------------
say "small scale: pgbench -i -s $SMALL"
as_pg "$PGBIN/pgbench" -i -q -s "$SMALL" -d "$CONN" >"$TMP/out/pgbench-small.log" 2>&1 \
    || { cat "$TMP/out/pgbench-small.log" >&2; die "pgbench -i -s $SMALL failed"; }
SMALL_BYTES="$(db_size)"
for ((r = 0; r < ROUNDS; r++)); do
    say "small scale, round $((r + 1))/$ROUNDS"
    settle
    measure small bb_backup "$WV/bin/basebackup" -c "$WVCONF" backup -d "$CONN" --checkpoint fast
    fresh_dir "$TMP/rst"
    measure small bb_restore sh -c "'$WV/bin/basebackup' -c '$WVCONF' restore --pgdata '$TMP/rst' && sync"
    rm -rf "$TMP/rst"
done

# --- 5. the measured database ----------------------------------------------------------------------
say "loading pgbench -i -s $SCALE"
as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -d "$CONN" >"$TMP/out/pgbench-big.log" 2>&1 \
    || { cat "$TMP/out/pgbench-big.log" >&2; die "pgbench -i -s $SCALE failed"; }
psql_q "vacuum analyze" >/dev/null
archive_idle
BIG_BYTES="$(db_size)"
say "database size: $((BIG_BYTES / 1048576)) MiB"
((BIG_BYTES >= 800 * 1000 * 1000)) \
    || say "WARNING: the database is smaller than 800 MB; use a larger --scale for the target figures (>= 800 MB)"
as_pg "${BR[@]}" check >&2 || die "pgbackrest check failed"

# 5a. backups, round robin with a rotating order
BACKUPS=(pgbb_fp pgbb_ft_lz4 pgbr_backup bb_backup)
run_backup() {
    local out="$TMP/bk"
    case "$1" in
    pgbb_fp)
        fresh_dir "$out"
        measure backup pgbb_fp "$PGBIN/pg_basebackup" -d "$CONN" -D "$out/fp" -Fp -X none -c fast
        # the last plain copy is the source of the cp -a restores
        rm -rf "$TMP/fp-src"
        mv "$out/fp" "$TMP/fp-src"
        ;;
    pgbb_ft_lz4)
        fresh_dir "$out"
        measure backup pgbb_ft_lz4 "$PGBIN/pg_basebackup" -d "$CONN" -D "$out/ft" -Ft -X none -c fast \
            --compress=client-lz4
        ;;
    pgbr_backup) measure backup pgbr_backup "${BR[@]}" backup --type=full ;;
    bb_backup)
        measure backup bb_backup "$WV/bin/basebackup" -c "$WVCONF" backup -d "$CONN" --checkpoint fast
        ;;
    esac
    rm -rf "$out"
}
for ((r = 0; r < ROUNDS; r++)); do
    say "backup, round $((r + 1))/$ROUNDS"
    for ((i = 0; i < ${#BACKUPS[@]}; i++)); do
        settle
        run_backup "${BACKUPS[$(((i + r) % ${#BACKUPS[@]}))]}"
    done
done
BR_REPO_BYTES="$(du -sb "$BRREPO/backup" | cut -f1)"
WV_REPO_BYTES="$(du -sb "$WVREPO" | cut -f1)"

# 5b. restores of the newest backup, each into a fresh empty directory, each followed by sync
RESTORES=(pgbr_restore bb_restore cp_restore)
run_restore() {
    local dst="$TMP/rst"
    fresh_dir "$dst"
    sync
    case "$1" in
    pgbr_restore) measure restore pgbr_restore sh -c \
        "pgbackrest --config='$BRCONF' --stanza=bench --pg1-path='$dst' restore && sync" ;;
    bb_restore) measure restore bb_restore sh -c \
        "'$WV/bin/basebackup' -c '$WVCONF' restore --pgdata '$dst' && sync" ;;
    cp_restore) measure restore cp_restore sh -c "cp -a '$TMP/fp-src/.' '$dst/' && sync" ;;
    esac
    rm -rf "$dst"
}
for ((r = 0; r < ROUNDS; r++)); do
    say "restore, round $((r + 1))/$ROUNDS"
    for ((i = 0; i < ${#RESTORES[@]}; i++)); do
        run_restore "${RESTORES[$(((i + r) % ${#RESTORES[@]}))]}"
    done
done
rm -rf "$TMP/fp-src"

# 5c. WAL replay: a base backup, then NSEG segments of pgbench WAL in all three archives
say "replay: base backup, then $NSEG segments of pgbench WAL"
settle
as_pg "$PGBIN/pg_basebackup" -d "$CONN" -D "$TMP/pg/replay-base" -Fp -X none -c fast >&2 \
    || die "pg_basebackup of the replay base failed"
START_LSN="$(psql_q "select pg_current_wal_lsn()")"
while :; do
    done_bytes="$(psql_q "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$START_LSN')::bigint")"
    ((done_bytes >= NSEG * 16 * 1048576)) && break
    # synchronous_commit=off: the WAL is the same, it is just written sooner
    as_pg env PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -c 2 -j 2 -T 5 -d "$CONN" \
        >/dev/null 2>&1 || die "pgbench run failed"
done
archive_idle
LAST_SEG="$(psql_q "select pg_walfile_name(pg_current_wal_lsn())")"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
FIRST_SEG="$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\)).*/\1/p' \
    "$TMP/pg/replay-base/backup_label")"
REPLAY_SEGS="$(ls "$PLAIN" | awk -v a="$FIRST_SEG" -v b="$LAST_SEG" \
    'length($0) == 24 && $0 >= a && $0 < b' | wc -l)"
say "replay: $REPLAY_SEGS segments in the archive from $FIRST_SEG"

REPLAYS=(cp_replay pgbr_replay wv_replay)
run_replay() {
    local dst="$TMP/rp" cmd
    case "$1" in
    cp_replay) cmd="cp $PLAIN/%f %p" ;;
    pgbr_replay) cmd="pgbackrest --config=$BRCONF --stanza=bench --pg1-path=$dst archive-get %f \"%p\"" ;;
    wv_replay) cmd="$WV/bin/wal-fetch -c $WVCONF %f %p" ;;
    esac
    rm -rf "$dst"
    cp -a "$TMP/pg/replay-base" "$dst"
    cat >>"$dst/postgresql.conf" <<EOF
archive_mode = off
restore_command = '$cmd'
EOF
    touch "$dst/recovery.signal"
    chown postgres:postgres "$dst/recovery.signal"
    sync
    RUNNING+=("$dst")
    local log="$TMP/out/replay.log" t0 t1 i
    rm -f "$log"
    t0="$(date +%s.%N)"
    as_pg "$PGBIN/pg_ctl" -D "$dst" -l "$log" -W start >/dev/null
    for ((i = 0; i < 60000; i++)); do
        grep -q "database system is ready to accept connections" "$log" 2>/dev/null && break
        if grep -q "FATAL\|PANIC" "$log" 2>/dev/null; then
            tail -20 "$log" >&2
            die "$1: recovery failed"
        fi
        sleep 0.02
    done
    t1="$(date +%s.%N)"
    [[ "$(psql_q "select pg_is_in_recovery()")" == f ]] || die "$1: still in recovery"
    grep -q "archive recovery complete" "$log" || die "$1: no archive recovery in the log"
    as_pg "$PGBIN/pg_ctl" -D "$dst" -m immediate -w stop >/dev/null
    echo "replay $1 $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') - - -" >>"$RESULTS"
    printf '    %-16s %s s\n' "$1" "$(tail -1 "$RESULTS" | cut -d' ' -f3)" >&2
    rm -rf "$dst"
}
for ((r = 0; r < ROUNDS; r++)); do
    say "replay, round $((r + 1))/$ROUNDS"
    for ((i = 0; i < ${#REPLAYS[@]}; i++)); do
        run_replay "${REPLAYS[$(((i + r) % ${#REPLAYS[@]}))]}"
    done
done

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 6. the report --------------------------------------------------------------------------------
"$PY" - "$RESULTS" "$SCALE" "$BIG_BYTES" "$SMALL" "$SMALL_BYTES" "$ROUNDS" "$REPLAY_SEGS" \
    "$BR_REPO_BYTES" "$WV_REPO_BYTES" "$(nproc)" "$LOAD_START" "$LOAD_END" <<'EOF'
import statistics, sys
res, scale, big, small, small_b, rounds, segs, brb, wvb, ncpu, load0, load1 = sys.argv[1:]
rows = {}
for line in open(res):
    phase, label, wall, user, sysc, rss = line.split()
    r = rows.setdefault((phase, label), {"wall": [], "cpu": [], "rss": []})
    r["wall"].append(float(wall))
    if user != "-":
        r["cpu"].append(float(user) + float(sysc))
        r["rss"].append(int(rss) / 1024.0)

def med(k, f="wall"):
    return statistics.median(rows[k][f])

def cell(v, fmt):
    if not v:
        return "-"
    return (fmt % statistics.median(v)) + " (" + (fmt % min(v)) + "-" + (fmt % max(v)) + ")"

names = {
    "pgbb_fp": "pg_basebackup -Fp -X none",
    "pgbb_ft_lz4": "pg_basebackup -Ft client-lz4",
    "pgbr_backup": "pgbackrest backup --type=full",
    "bb_backup": "basebackup backup",
    "pgbr_restore": "pgbackrest restore + sync",
    "bb_restore": "basebackup restore + sync",
    "cp_restore": "cp -a + sync",
    "cp_replay": "restore_command cp",
    "pgbr_replay": "pgbackrest archive-get",
    "wv_replay": "wal-fetch",
}
print()
print("database: pgbench -s %s, %.0f MiB (pg_database_size); small run: -s %s, %.0f MiB; "
      "%s rounds; replay: %s segments" % (scale, int(big) / 2**20, small, int(small_b) / 2**20,
                                          rounds, segs))
print("repository size after all backups: pgbackrest %.0f MiB, walvault %.0f MiB (incl. WAL)"
      % (int(brb) / 2**20, int(wvb) / 2**20))
print("load average (1, 5, 15 min) at the start: %s, at the end: %s, on %s CPUs "
      "(other work on the machine makes the figures noisy)" % (load0, load1, ncpu))
print()
hdr = "%-8s %-32s %-22s %-22s %-22s" % ("phase", "command", "wall s median (min-max)",
                                        "CPU s (user+sys)", "peak RSS MiB")
print(hdr)
print("-" * len(hdr))
for (phase, label), r in rows.items():
    print("%-8s %-32s %-22s %-22s %-22s" % (phase, names.get(label, label),
          cell(r["wall"], "%.2f"), cell(r["cpu"], "%.2f"), cell(r["rss"], "%.1f")))
print()
print("targets (medians):")
def ratio(name, a, b, limit):
    x = med(a) / med(b)
    cpu = ""
    if rows[a]["cpu"] and rows[b]["cpu"]:
        cpu = "   [CPU ratio %.2fx]" % (statistics.median(rows[a]["cpu"]) /
                                       statistics.median(rows[b]["cpu"]))
    print("  %-52s %5.2fx  (target <= %.1fx)  %-6s%s" % (name, x, limit,
          "MET" if x <= limit else "MISSED", cpu))
ratio("basebackup backup / pg_basebackup -Ft client-lz4", ("backup", "bb_backup"),
      ("backup", "pgbb_ft_lz4"), 1.2)
ratio("basebackup backup / pgbackrest backup", ("backup", "bb_backup"), ("backup", "pgbr_backup"), 0.6)
ratio("basebackup restore / pgbackrest restore", ("restore", "bb_restore"),
      ("restore", "pgbr_restore"), 0.6)
ratio("basebackup restore / cp -a + sync", ("restore", "bb_restore"), ("restore", "cp_restore"), 1.2)
# the same rounds side by side: each round runs both, so its ratio shares that round's load
pr = [a / b for a, b in zip(rows[("restore", "bb_restore")]["wall"],
                            rows[("restore", "cp_restore")]["wall"])]
print("  %-52s %s" % ("  per round", " ".join("%.2fx" % x for x in pr)))
ratio("replay wal-fetch / replay cp", ("replay", "wv_replay"), ("replay", "cp_replay"), 1.2)
for k, what in ((("backup", "bb_backup"), "backup"), (("restore", "bb_restore"), "restore")):
    big_rss = max(rows[k]["rss"])
    sk = ("small", k[1])
    small_rss = max(rows[sk]["rss"]) if sk in rows else float("nan")
    print("  %-52s %5.1f MiB at -s %s, %5.1f MiB at -s %s  (target < 128 MiB)  %s"
          % ("peak RSS basebackup " + what, big_rss, scale, small_rss, small,
             "MET" if max(big_rss, small_rss) < 128 else "MISSED"))
EOF
