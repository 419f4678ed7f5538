#!/usr/bin/env bash
# bench_replay.sh - WAL replay through restore_command: wal-fetch with and without prefetch
# ([global] fetch_ahead) next to `cp` from a plain directory and pgBackRest's asynchronous
# archive-get, from posix, S3 (Ceph RADOS Gateway over HTTPS) and SSH repositories.
#
#     bash contrib/bench/bench_replay.sh [--wal-mib N] [--rounds N] [--targets LIST] [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it needs (only the missing ones: pgbackrest, postgresql-15, the
#      Ceph packages of contrib/packages-s3.txt with s3, openssh-server with ssh, GNU time, ...),
#   2. builds walvault in Release into build-benchreplay/ of this tree and installs it into the
#      temporary directory (readable by postgres),
#   3. starts the peers the targets need, as bench_offsite.sh does: Ceph RADOS Gateway
#      (tests/integration/ceph/start_rgw.sh, HTTPS with its throwaway CA, path-style buckets) and
#      OpenSSH's sshd on a free loopback port (walvault-remote on the server side),
#   4. makes the WAL once: a throwaway PostgreSQL 15 cluster (16 MiB segments), a pg_basebackup
#      (-X none) as the base, then pgbench until --wal-mib MiB of WAL were written after it; the
#      archive_command copies every segment into a plain directory, wal-push'es it to the walvault
#      repository of each target and pgbackrest archive-push'es it (to the RGW with s3, else to a
#      posix pgBackRest repository),
#   5. per round, in a rotating order, for each method: a copy of the base, recovery.signal,
#      restore_command, and the time from pg_ctl start until the server accepts connections after
#      archive recovery ended (the end of the archive): cp; wal-fetch with fetch_ahead = 0 and
#      with fetch_ahead = 64MiB per target; pgbackrest archive-get with archive-async=y
#      (archive-get-queue-max = 64MiB, the same window; process-max = 2 as walvault's),
#   6. one untimed replay per target with prefetch in which the foreground wal-fetch runs under GNU
#      time (its peak RSS) while the background fetcher's VmHWM is sampled from /proc,
#   7. prints the medians, the ratios against the targets (<= 1.05x cp locally, <= 0.6x pgBackRest
#      from RGW) and the load average at start and end.
# Everything lives in one temporary directory that is removed at exit; servers are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROUNDS=3
WAL_MIB=1024
TARGETS="posix,s3,ssh"
KEEP=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
SSHD=/usr/sbin/sshd

usage() {
    cat >&2 <<EOF
usage: bash contrib/bench/bench_replay.sh [--wal-mib N] [--rounds N] [--targets LIST] [--keep]

  --wal-mib N     MiB of WAL replayed (default $WAL_MIB; at least 64)
  --rounds N      rounds (default $ROUNDS); a round replays once with each method
  --targets LIST  comma-separated repositories among posix, s3, ssh (default $TARGETS)
  --keep          keep the temporary directory (servers are stopped all the same)
EOF
    exit 2
}

num() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
    case "$1" in
    --rounds) [[ $# -ge 2 ]] || usage; num "$2"; ROUNDS="$2"; shift 2 ;;
    --wal-mib) [[ $# -ge 2 ]] || usage; num "$2"; WAL_MIB="$2"; shift 2 ;;
    --targets) [[ $# -ge 2 ]] || usage; TARGETS="$2"; shift 2 ;;
    --rounds=* | --wal-mib=* | --targets=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench_replay.sh: unknown argument \"$1\"" >&2; usage ;;
    esac
done
((WAL_MIB >= 64)) || usage
IFS=, read -r -a TGT <<<"$TARGETS"
((${#TGT[@]})) || usage
for t in "${TGT[@]}"; do [[ "$t" == posix || "$t" == s3 || "$t" == ssh ]] || usage; done
want() { [[ ",$TARGETS," == *",$1,"* ]]; }

say() { printf '=== %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench_replay.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages, runs sshd and PostgreSQL as postgres)"
exec </dev/null
T_START="$(date +%s)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. packages ---------------------------------------------------------------------------------
PACKAGES=(
    build-essential cmake pkg-config
    libpq-dev liblz4-dev libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    pgbackrest python3 coreutils util-linux time procps
)
if want ssh; then PACKAGES+=(openssh-server openssh-client); fi
if want s3; then
    mapfile -t S3PKG < <(grep -v '^#' "$ROOT/contrib/packages-s3.txt" | tr -s ' \t' '\n' | grep -v '^$')
    PACKAGES+=("${S3PKG[@]}")
fi
# shellcheck source=bench_common.sh
source "$ROOT/contrib/bench/bench_common.sh"
install_packages "${PACKAGES[@]}"
for f in "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql" /usr/bin/pgbackrest "$PY" \
    /usr/bin/time; do
    [[ -x "$f" ]] || die "$f is missing after the package installation"
done
id postgres >/dev/null 2>&1 || die "no postgres user (postgresql-15 should have created it)"

# --- temporary directory and cleanup --------------------------------------------------------------
# Short path: the Ceph daemons' unix sockets live under it (107-byte limit).
TMP="$(mktemp -d /tmp/bench_replay.XXXXXX)"
chmod 755 "$TMP"
RUNNING=()
SSHD_PID=""
RGW_DIR=""


cleanup() {
    local rc=$? d
    trap - INT TERM
    say "cleaning up"
    for d in "${RUNNING[@]}"; do
        [[ -n "$d" && -f "$d/postmaster.pid" ]] || continue
        as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    stop_peers
    say "cleanup: servers stopped"
    if ((KEEP)); then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap on_signal INT TERM

# --- 2. build and install -------------------------------------------------------------------------
BUILD="$ROOT/build-benchreplay"
WV="$TMP/walvault"
say "building walvault (Release) in $BUILD"
LOG="$TMP/cmake.log"
run_child bash -c "cmake -S '$ROOT' -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DWV_TESTS=OFF \
    && cmake --build '$BUILD' -j$(nproc) && cmake --install '$BUILD' --prefix '$WV'" >"$LOG" 2>&1 \
    || { tail -40 "$LOG" >&2; die "build failed"; }
chmod -R a+rX "$WV"
for b in wal-push wal-fetch basebackup walvault-remote; do
    [[ -x "$WV/bin/$b" ]] || die "the installation has no bin/$b"
done

# --- 3. the peers the targets need ------------------------------------------------------------------
if want s3; then
# --- 3a. Ceph RADOS Gateway ------------------------------------------------------------------------
start_rgw wv-wal pgbackrest

fi

if want ssh; then
# --- 3b. sshd on loopback ---------------------------------------------------------------------------
start_sshd bench-replay
install -d -o postgres -g postgres -m 700 "$TMP/ssh-repo-wal"

fi

# --- 4. the cluster, the base and the WAL -----------------------------------------------------------
SOCK="$TMP/sock"
DATA="$TMP/pg/data"
PLAIN="$TMP/plain"
SPOOL="$TMP/spool"
install -d -o postgres -g postgres -m 700 "$SOCK" "$TMP/pg" "$SPOOL" "$TMP/out" "$TMP/wv-posix"
install -d -o postgres -g postgres -m 755 "$PLAIN"
PGPORT="$(free_port)"
CONN="host=$SOCK port=$PGPORT user=postgres dbname=postgres"
psql_q() { as_pg "$PGBIN/psql" -X -q -At -d "$CONN" -v ON_ERROR_STOP=1 -c "$1"; }

# walvault: one repository per target; each twice, without and with prefetch.
wv_conf() { # FILE TARGET FETCH_AHEAD
    local f="$1"
    cat >"$f" <<EOF
[global]
compress = lz4
process_max = 2
log_level = warn
fetch_ahead = $3
spool_path = $SPOOL

[repo1]
EOF
    case "$2" in
    posix) printf 'type = posix\npath = %s\n' "$TMP/wv-posix" >>"$f" ;;
    s3)
        cat >>"$f" <<EOF
type = s3
endpoint = https://127.0.0.1:$S3_PORT
region = default
bucket = wv-wal
uri_style = path
ca_file = $CA
access_key_id = $S3_ACCESS_KEY
secret_access_key_file = $TMP/secrets/s3-secret
EOF
        ;;
    ssh)
        cat >>"$f" <<EOF
type = ssh
host = 127.0.0.1
port = $SSH_PORT
user = postgres
path = $TMP/ssh-repo-wal
identity_file = $SSHDIR/id_ed25519
known_hosts = $SSHDIR/known_hosts
remote_command = $WV/bin/walvault-remote
EOF
        ;;
    esac
    chown postgres:postgres "$f"
    chmod 644 "$f"
}
for t in "${TGT[@]}"; do
    wv_conf "$TMP/wv-$t-off.conf" "$t" 0
    wv_conf "$TMP/wv-$t-on.conf" "$t" 64MiB
done

# pgBackRest: on the RGW with s3 (endpoint "localhost": pgBackRest 2.45 matches the certificate's
# DNS names only), else a posix repository; asynchronous archive-get with a 64 MiB queue.
PGBR="$TMP/pgbackrest"
install -d -o postgres -g postgres -m 700 "$PGBR" "$PGBR/log" "$PGBR/lock" "$PGBR/spool" "$PGBR/repo"
BRCONF="$PGBR/pgbackrest.conf"
if want s3; then
    PGBR_WHERE="RGW"
    cat >"$BRCONF" <<EOF
[global]
repo1-type=s3
repo1-path=/pgbackrest
repo1-s3-bucket=pgbackrest
repo1-s3-endpoint=localhost
repo1-storage-port=$S3_PORT
repo1-s3-region=default
repo1-s3-uri-style=path
repo1-s3-key=$S3_ACCESS_KEY
repo1-s3-key-secret=$S3_SECRET_KEY
repo1-storage-ca-file=$CA
EOF
else
    PGBR_WHERE="posix"
    printf '[global]\nrepo1-path=%s\n' "$PGBR/repo" >"$BRCONF"
fi
cat >>"$BRCONF" <<EOF
repo1-retention-full=1000
compress-type=lz4
process-max=2
archive-async=y
archive-get-queue-max=64MiB
log-level-console=warn
log-level-stderr=warn
log-level-file=off
lock-path=$PGBR/lock
log-path=$PGBR/log
spool-path=$PGBR/spool

[bench]
pg1-path=$DATA
pg1-port=$PGPORT
pg1-socket-path=$SOCK
pg1-user=postgres
EOF
chown postgres:postgres "$BRCONF"
chmod 600 "$BRCONF"

say "initdb and a base backup of a throwaway PostgreSQL 15 cluster"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
ARCH="cp %p $PLAIN/%f.tmp && mv $PLAIN/%f.tmp $PLAIN/%f"
for t in "${TGT[@]}"; do ARCH+=" && $WV/bin/wal-push -c $TMP/wv-$t-off.conf %p"; done
ARCH+=" && pgbackrest --config=$BRCONF --stanza=bench archive-push %p"
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 1h
autovacuum = off
archive_mode = on
archive_command = '$ARCH'
EOF
RUNNING+=("$DATA")
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg/server.log" -w -t 120 start >/dev/null \
    || { tail -20 "$TMP/pg/server.log" >&2; die "the cluster did not start"; }
as_pg pgbackrest --config="$BRCONF" --stanza=bench stanza-create >"$PGBR/stanza.log" 2>&1 \
    || { cat "$PGBR/stanza.log" >&2; die "pgbackrest stanza-create failed"; }
run_child as_pg "$PGBIN/pgbench" -i -q -s 10 -d "$CONN" >"$TMP/pg/pgbench-i.log" 2>&1 \
    || { cat "$TMP/pg/pgbench-i.log" >&2; die "pgbench -i failed"; }
as_pg "$PGBIN/pg_basebackup" -d "$CONN" -D "$TMP/pg/base" -Fp -X none -c fast >&2 \
    || die "pg_basebackup of the base failed"

say "pgbench until $WAL_MIB MiB of WAL are written after the base"
START_LSN="$(psql_q "select pg_current_wal_lsn()")"
while :; do
    done_bytes="$(psql_q "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$START_LSN')::bigint")"
    ((done_bytes >= WAL_MIB * 1048576)) && break
    # synchronous_commit=off: the WAL is the same, it is just written sooner
    run_child as_pg env PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -c 2 -j 2 -T 5 \
        -d "$CONN" >/dev/null 2>&1 || die "pgbench run failed"
done
LAST_SEG="$(psql_q "select pg_walfile_name(pg_switch_wal())")"
for ((i = 0; i < 3000; i++)); do
    [[ "$(psql_q "select coalesce(last_archived_wal, '') from pg_stat_archiver")" == "$LAST_SEG" ]] \
        && break
    sleep 0.2
done
((i < 3000)) || die "segment $LAST_SEG was not archived within 600 s"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
FIRST_SEG="$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\)).*/\1/p' "$TMP/pg/base/backup_label")"
REPLAY_SEGS="$(find "$PLAIN" -maxdepth 1 -printf '%f\n' | awk -v a="$FIRST_SEG" -v b="$LAST_SEG" 'length($0) == 24 && $0 >= a && $0 <= b' | wc -l)"
say "replay: $REPLAY_SEGS segments ($((REPLAY_SEGS * 16)) MiB) in every archive from $FIRST_SEG"

# --- 5. the replays ------------------------------------------------------------------------------------
METHODS=(cp pgbr)
for t in "${TGT[@]}"; do METHODS+=("wv-$t-off" "wv-$t-on"); done
RESULTS="$TMP/results"
: >"$RESULTS"
command_of() {
    case "$1" in
    cp) echo "cp $PLAIN/%f %p" ;;
    pgbr) echo "pgbackrest --config=$BRCONF --stanza=bench --pg1-path=$TMP/rp archive-get %f \"%p\"" ;;
    wv-*) echo "$WV/bin/wal-fetch -c $TMP/$1.conf %f %p" ;;
    esac
}
# replay METHOD [RESTORE_COMMAND]: prints the seconds from pg_ctl start until recovery has ended.
replay() {
    local dst="$TMP/rp" cmd="${2:-$(command_of "$1")}" log="$TMP/out/replay-$1.log" t0 t1 i
    rm -rf "$dst" "$PGBR/spool/archive" "${SPOOL:?}"/*
    cp -a "$TMP/pg/base" "$dst"
    cat >>"$dst/postgresql.conf" <<EOF
archive_mode = off
restore_command = '$cmd'
EOF
    touch "$dst/recovery.signal"
    chown postgres:postgres "$dst/recovery.signal"
    sync
    RUNNING+=("$dst")
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
    grep -q "archive recovery complete" "$log" || die "$1: no archive recovery in the log"
    grep -q "restored log file \"$LAST_SEG\"" "$log" || die "$1: $LAST_SEG was not replayed"
    as_pg "$PGBIN/pg_ctl" -D "$dst" -m immediate -w stop >/dev/null
    rm -rf "$dst"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}
for ((r = 0; r < ROUNDS; r++)); do
    say "round $((r + 1))/$ROUNDS"
    for ((i = 0; i < ${#METHODS[@]}; i++)); do
        m="${METHODS[$(((i + r) % ${#METHODS[@]}))]}"
        s="$(replay "$m")"
        echo "$m $s" >>"$RESULTS"
        printf '    %-14s %6s s\n' "$m" "$s" >&2
    done
done

# --- 6. peak RSS: the foreground under GNU time, the fetcher's VmHWM from /proc ------------------------
RSS="$TMP/rss"
: >"$RSS"
for t in "${TGT[@]}"; do
    fg="$TMP/out/rss-fg-$t"
    : >"$fg"
    chown postgres:postgres "$fg"
    (
        peak=0
        while [[ ! -e "$TMP/out/rss-stop" ]]; do
            for p in /proc/[0-9]*; do
                [[ "$(readlink "$p/cwd" 2>/dev/null)" == / ]] || continue
                [[ "$(cat "$p/comm" 2>/dev/null)" == wal-fetch ]] || continue
                k="$(awk '/^VmHWM:/ { print $2 }' "$p/status" 2>/dev/null || true)"
                [[ -n "$k" ]] && ((k > peak)) && peak="$k"
            done
            echo "$peak" >"$TMP/out/rss-bg-$t"
            sleep 0.05
        done
    ) &
    sampler=$!
    replay "wv-$t-on" "/usr/bin/time -a -o $fg -f %M $(command_of "wv-$t-on")" >/dev/null
    touch "$TMP/out/rss-stop"
    wait "$sampler" || true
    rm -f "$TMP/out/rss-stop"
    echo "$t $(sort -n "$fg" | tail -1) $(cat "$TMP/out/rss-bg-$t")" >>"$RSS"
done

# --- 7. report -------------------------------------------------------------------------------------------
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
LABEL="walvault $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git -C "$ROOT" status --porcelain -uno 2>/dev/null)" ]] || LABEL+="+local changes"
LABEL+=", $(pgbackrest version)"
"$PY" - "$RESULTS" "$RSS" "$LABEL" "$REPLAY_SEGS" "$ROUNDS" "$PGBR_WHERE" "$LOAD_START" "$LOAD_END" \
    "$(($(date +%s) - T_START))" <<'EOF'
import statistics, sys
results, rss, label, segs, rounds, pgbr_where, load0, load1, elapsed = sys.argv[1:]
t = {}
for line in open(results):
    m, s = line.split()
    t.setdefault(m, []).append(float(s))
med = {m: statistics.median(v) for m, v in t.items()}
names = {"cp": "restore_command cp", "pgbr": "pgbackrest archive-get async (%s)" % pgbr_where}
for m in med:
    if m.startswith("wv-"):
        _, where, on = m.split("-")
        names[m] = "wal-fetch %s, prefetch %s" % (where, "64MiB" if on == "on" else "off")
print("replay benchmark (%s): %s segments of 16 MiB (%d MiB) x %s rounds, interleaved, %s s"
      % (label, segs, int(segs) * 16, rounds, elapsed))
print("time from pg_ctl start until archive recovery has ended and the server accepts connections\n")
print("%-44s %10s %18s %9s" % ("method", "median s", "(min - max)", "x cp"))
print("-" * 84)
order = ["cp", "pgbr"] + sorted(m for m in med if m.startswith("wv-"))
for m in order:
    if m in med:
        print("%-44s %10.2f %18s %8.2fx" % (names[m], med[m], "(%.2f - %.2f)" % (min(t[m]), max(t[m])),
                                           med[m] / med["cp"]))
print()
for line in open(rss):
    where, fg, bg = line.split()
    print("peak RSS, wal-fetch %s with prefetch: foreground %.1f MiB, background fetcher %.1f MiB"
          % (where, int(fg or 0) / 1024, int(bg or 0) / 1024))
print()
print("%-46s %9s  %-10s %s" % ("target", "measured", "target", "result"))
def ratio(what, a, b, limit):
    if a in med and b in med:
        r = med[a] / med[b]
        print("%-46s %8.2fx  <= %-7s %s" % (what, r, "%.2fx" % limit, "met" if r <= limit else "MISSED"))
ratio("wal-fetch posix prefetch / cp", "wv-posix-on", "cp", 1.05)
if pgbr_where == "RGW":
    ratio("wal-fetch s3 prefetch / pgbackrest (RGW)", "wv-s3-on", "pgbr", 0.6)
ratio("wal-fetch posix prefetch / without", "wv-posix-on", "wv-posix-off", 1.0)
ratio("wal-fetch s3 prefetch / without", "wv-s3-on", "wv-s3-off", 1.0)
ratio("wal-fetch ssh prefetch / without", "wv-ssh-on", "wv-ssh-off", 1.0)
print("\nload average at start %s, at end %s" % (load0, load1))
EOF
