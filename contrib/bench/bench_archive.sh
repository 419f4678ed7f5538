#!/usr/bin/env bash
# bench_archive.sh - sustained archiving: how many WAL segments per second each archive_command
# keeps up with while pgbench writes as fast as the machine allows, and how many .ready files wait.
#
#     bash contrib/bench/bench_archive.sh [--duration S] [--rounds N] [--targets LIST] [--scale N] [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it lacks (pgbackrest, postgresql-15, the Ceph packages of
#      contrib/packages-s3.txt, openssh-server, bc, ...) and builds walvault in Release into
#      build-bencharchive/ of this tree,
#   2. starts the peers as bench_offsite.sh does: Ceph RADOS Gateway over HTTPS
#      (tests/integration/ceph/start_rgw.sh) and sshd on a free loopback port,
#   3. initdb (16 MiB segments), max_wal_size = 64MB, pgbench -i -s --scale,
#   4. per round, per target (posix: a local directory; rgw; ssh), per method in a rotating order
#      (cp+fsync, wal-push sync, wal-push async with archive_async = on, pgBackRest async with
#      archive-async=y, process-max=2 and a spool-path; cp+fsync only to posix): sets
#      archive_command, reloads, waits until nothing is left to archive, runs pgbench -c 4 -j 2
#      (synchronous_commit off) for --duration seconds while archive_status is sampled every 0.2 s,
#      then lets the backlog drain (up to 10 min) and records
#        archived/s     pg_stat_archiver.archived_count gained during the pgbench run / duration
#        written/s      16 MiB segments of WAL the server wrote in that time / duration
#        peak wait      the most .ready files seen at once (during the run and the drain)
#        drain s        how long the backlog took to empty after pgbench stopped
#        pusher HWM     wal-push async: the background pusher's peak RSS (VmHWM)
#      and then, with archive_command empty (PostgreSQL keeps the WAL, archives nothing), bulk
#      updates until --backlog segments wait, the method set again, and the time until none waits:
#        backlog seg/s  how fast the method archives when it never waits for PostgreSQL
#   5. prints the table, the targets and the load average at start and end.
# Everything lives in one temporary directory, removed at exit; servers are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION=60
ROUNDS=1
TARGETS="posix,rgw,ssh"
SCALE=10
BACKLOG=40
KEEP=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
SSHD=/usr/sbin/sshd

usage() {
    cat >&2 <<EOF
usage: bash contrib/bench/bench_archive.sh [--duration S] [--rounds N] [--targets LIST] [--scale N] [--keep]

  --duration S    seconds of pgbench per measurement (default $DURATION)
  --rounds N      rounds (default $ROUNDS); each measures every method on every target once,
                  in an order that rotates from round to round
  --targets LIST  comma-separated among posix, rgw, ssh (default $TARGETS)
  --scale N       pgbench scale (default $SCALE)
  --backlog N     segments left waiting before the backlog measurement (default $BACKLOG)
  --keep          keep the temporary directory (servers are stopped all the same)
EOF
    exit 2
}

num() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
    case "$1" in
    --duration) [[ $# -ge 2 ]] || usage; num "$2"; DURATION="$2"; shift 2 ;;
    --rounds) [[ $# -ge 2 ]] || usage; num "$2"; ROUNDS="$2"; shift 2 ;;
    --scale) [[ $# -ge 2 ]] || usage; num "$2"; SCALE="$2"; shift 2 ;;
    --backlog) [[ $# -ge 2 ]] || usage; num "$2"; BACKLOG="$2"; shift 2 ;;
    --targets) [[ $# -ge 2 ]] || usage; TARGETS="$2"; shift 2 ;;
    --duration=* | --rounds=* | --scale=* | --targets=* | --backlog=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench_archive.sh: unknown argument \"$1\"" >&2; usage ;;
    esac
done
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    [[ "$t" == posix || "$t" == rgw || "$t" == ssh ]] || usage
done

say() { printf '=== %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench_archive.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages, runs sshd and PostgreSQL as postgres)"
exec </dev/null
T_START="$(date +%s)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. packages, build --------------------------------------------------------------------------
PACKAGES=(
    build-essential cmake pkg-config
    libpq-dev liblz4-dev libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    pgbackrest openssh-server openssh-client python3 coreutils util-linux procps bc
)
mapfile -t S3PKG < <(grep -v '^#' "$ROOT/contrib/packages-s3.txt" | tr -s ' \t' '\n' | grep -v '^$')
PACKAGES+=("${S3PKG[@]}")
# shellcheck source=bench_common.sh
source "$ROOT/contrib/bench/bench_common.sh"
install_packages "${PACKAGES[@]}"
for f in "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql" /usr/bin/pgbackrest "$PY" \
    "$SSHD" /usr/bin/ssh /usr/bin/ssh-keygen /usr/bin/radosgw /usr/bin/bc; do
    [[ -x "$f" ]] || die "$f is missing after the package installation"
done
id postgres >/dev/null 2>&1 || die "no postgres user (postgresql-15 should have created it)"

# Short path: the Ceph daemons' unix sockets live under it (107-byte limit).
TMP="$(mktemp -d /tmp/bench_archive.XXXXXX)"
chmod 755 "$TMP"
SSHD_PID=""
RGW_DIR=""
DATA=""
SAMPLER_PID=""


cleanup() {
    local rc=$? f p
    trap - INT TERM
    say "cleaning up"
    [[ -z "$SAMPLER_PID" ]] || kill "$SAMPLER_PID" 2>/dev/null || true
    if [[ -n "$DATA" && -f "$DATA/postmaster.pid" ]]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    # this run's background pusher (it would exit once idle; do not wait for that)
    for f in "$TMP"/spool/*/archive/pusher.lock; do
        [[ -f "$f" ]] || continue
        p="$(head -1 "$f")"
        if [[ "$p" =~ ^[0-9]+$ ]] && grep -q wal-push "/proc/$p/cmdline" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
        fi
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

BUILD="$ROOT/build-bencharchive"
WV="$TMP/walvault"
say "building walvault (Release) in $BUILD"
LOG="$TMP/cmake.log"
run_child bash -c "cmake -S '$ROOT' -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DWV_TESTS=OFF \
    && cmake --build '$BUILD' -j$(nproc) && cmake --install '$BUILD' --prefix '$WV'" >"$LOG" 2>&1 \
    || { tail -40 "$LOG" >&2; die "build failed"; }
chmod -R a+rX "$WV"
for b in wal-push wal-fetch walvault-remote; do
    [[ -x "$WV/bin/$b" ]] || die "the installation has no bin/$b"
done

# --- 2. peers (as bench_offsite.sh) ------------------------------------------------------------------
# --- 3a. Ceph RADOS Gateway ------------------------------------------------------------------------
start_rgw wv-archive pgbackrest

# --- 3b. sshd on loopback ---------------------------------------------------------------------------
start_sshd bench-archive
install -d -o postgres -g postgres -m 700 "$TMP/ssh-repos"


# --- 3. the cluster --------------------------------------------------------------------------------
SOCK="$TMP/sock"
DATA="$TMP/pg/data"
install -d -o postgres -g postgres -m 700 "$SOCK" "$TMP/pg" "$TMP/spool"
PGPORT="$(free_port)"
CONN="host=$SOCK port=$PGPORT user=postgres dbname=postgres"
psql_q() { as_pg "$PGBIN/psql" -X -q -At -d "$CONN" -v ON_ERROR_STOP=1 -c "$1"; }

say "initdb and pgbench -i -s $SCALE on a throwaway PostgreSQL 15 cluster"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
shared_buffers = 128MB
max_wal_size = 64MB
min_wal_size = 32MB
checkpoint_timeout = 5min
autovacuum = off
archive_mode = on
include_if_exists = '$TMP/pg/archive.conf'
EOF
echo "archive_command = '/bin/true'" >"$TMP/pg/archive.conf"
chown postgres:postgres "$TMP/pg/archive.conf"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg/server.log" -w -t 120 start >/dev/null \
    || { tail -20 "$TMP/pg/server.log" >&2; die "the cluster did not start"; }
run_child as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -d "$CONN" >"$TMP/pg/pgbench-i.log" 2>&1 \
    || { cat "$TMP/pg/pgbench-i.log" >&2; die "pgbench -i failed"; }

# --- configurations ----------------------------------------------------------------------------------
install -d -o postgres -g postgres -m 755 "$TMP/cp-archive" "$TMP/wv-posix" "$TMP/pgbr-posix"
wv_conf() { # FILE TARGET ASYNC(on|off)
    local f="$1"
    cat >"$f" <<EOF
[global]
compress = lz4
process_max = 2
log_level = warn
archive_async = $3
spool_path = $TMP/spool

[repo1]
EOF
    case "$2" in
    posix) printf 'type = posix\npath = %s\n' "$TMP/wv-posix" >>"$f" ;;
    rgw)
        cat >>"$f" <<EOF
type = s3
endpoint = https://127.0.0.1:$S3_PORT
region = default
bucket = wv-archive
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
path = $TMP/ssh-repos/wv
identity_file = $SSHDIR/id_ed25519
known_hosts = $SSHDIR/known_hosts
remote_command = $WV/bin/walvault-remote
EOF
        ;;
    esac
    chown postgres:postgres "$f"
    chmod 644 "$f"
}
install -d -o postgres -g postgres -m 700 "$TMP/ssh-repos/wv" "$TMP/ssh-repos/pgbr"

# pgBackRest, archive-async=y, one configuration per target (stanza "main"). Over SSH pgBackRest
# runs itself on the repository host (repo1-host), through a wrapper that passes the key.
PGBR="$TMP/pgbackrest"
install -d -o postgres -g postgres -m 700 "$PGBR" "$PGBR/log" "$PGBR/lock"
cat >"$PGBR/ssh" <<EOF
#!/bin/sh
exec ssh -i $SSHDIR/id_ed25519 -o UserKnownHostsFile=$SSHDIR/known_hosts \
    -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o BatchMode=yes "\$@"
EOF
chmod 755 "$PGBR/ssh"
cat >"$PGBR/remote.conf" <<EOF
[global]
repo1-path=$TMP/ssh-repos/pgbr
repo1-retention-full=1000
log-level-console=warn
log-level-file=off
lock-path=$PGBR/lock-remote
log-path=$PGBR/log
EOF
br_conf() { # TARGET
    local f="$PGBR/$1.conf"
    install -d -o postgres -g postgres -m 700 "$PGBR/spool-$1"
    {
        echo "[global]"
        case "$1" in
        posix) echo "repo1-path=$TMP/pgbr-posix" ;;
        rgw)
            printf '%s\n' "repo1-type=s3" "repo1-path=/pgbackrest" "repo1-s3-bucket=pgbackrest" \
                "repo1-s3-endpoint=localhost" "repo1-storage-port=$S3_PORT" \
                "repo1-s3-region=default" "repo1-s3-uri-style=path" "repo1-s3-key=$S3_ACCESS_KEY" \
                "repo1-s3-key-secret=$S3_SECRET_KEY" "repo1-storage-ca-file=$CA"
            ;;
        ssh)
            printf '%s\n' "repo1-host=127.0.0.1" "repo1-host-port=$SSH_PORT" \
                "repo1-host-user=postgres" "repo1-host-config=$PGBR/remote.conf" "cmd-ssh=$PGBR/ssh"
            ;;
        esac
        printf '%s\n' "repo1-retention-full=1000" "compress-type=lz4" "process-max=2" \
            "archive-async=y" "spool-path=$PGBR/spool-$1" "log-level-console=warn" \
            "log-level-stderr=warn" "log-level-file=off" "lock-path=$PGBR/lock" "log-path=$PGBR/log" \
            "" "[main]" "pg1-path=$DATA" "pg1-port=$PGPORT" "pg1-socket-path=$SOCK" "pg1-user=postgres"
    } >"$f"
    chown postgres:postgres "$f"
    chmod 600 "$f"
}
chown -R postgres:postgres "$PGBR"
declare -A BR_OK
for t in "${TARGET_LIST[@]}"; do
    wv_conf "$TMP/wv-$t-sync.conf" "$t" off
    wv_conf "$TMP/wv-$t-async.conf" "$t" on
    br_conf "$t"
    BR_OK[$t]=1
    as_pg pgbackrest --config="$PGBR/$t.conf" --stanza=main stanza-create \
        >"$PGBR/stanza-$t.log" 2>&1 || { BR_OK[$t]=0; say "pgBackRest stanza-create to $t failed \
(pgBackRest async left out there): $(tail -1 "$PGBR/stanza-$t.log")"; }
done

method_cmd() { # METHOD TARGET
    case "$1" in
    cp) echo "cp %p $TMP/cp-archive/%f.tmp && sync $TMP/cp-archive/%f.tmp && mv $TMP/cp-archive/%f.tmp $TMP/cp-archive/%f" ;;
    sync) echo "$WV/bin/wal-push -c $TMP/wv-$2-sync.conf %p" ;;
    async) echo "$WV/bin/wal-push -c $TMP/wv-$2-async.conf %p" ;;
    pgbr) echo "pgbackrest --config=$PGBR/$2.conf --stanza=main archive-push %p" ;;
    esac
}
method_name() {
    case "$1" in
    cp) echo "cp+fsync" ;; sync) echo "wal-push sync" ;; async) echo "wal-push async" ;;
    pgbr) echo "pgBackRest async" ;;
    esac
}

STATUS="$DATA/pg_wal/archive_status"
ready_count() { find "$STATUS" -maxdepth 1 -name '*.ready' | wc -l; }
set_archive_command() {
    echo "archive_command = '$1'" >"$TMP/pg/archive.conf"
    psql_q "select pg_reload_conf()" >/dev/null
    sleep 0.5
}
# wait_drained LIMIT_S: seconds until no .ready file is left (or LIMIT_S, then "timeout")
wait_drained() {
    local t0 t
    t0="$(date +%s.%N)"
    while (($(ready_count) > 0)); do
        t="$(date +%s.%N)"
        if (($(echo "$t - $t0 > $1" | bc) == 1)); then
            echo timeout
            return
        fi
        sleep 0.2
    done
    echo "$(date +%s.%N) - $t0" | bc
}
SAMPLER='import os, sys, time
d, stop, out = sys.argv[1:4]
peak = 0
while not os.path.exists(stop):
    try:
        n = sum(1 for f in os.listdir(d) if f.endswith(".ready"))
    except OSError:
        n = 0
    peak = max(peak, n)
    time.sleep(0.2)
open(out, "w").write("%d\n" % peak)'
pusher_pid() { # TARGET: the background pusher of the cluster, if one runs
    local f p
    for f in "$TMP"/spool/*/archive/pusher.lock; do
        [[ -f "$f" ]] || continue
        p="$(head -1 "$f")"
        [[ "$p" =~ ^[0-9]+$ ]] && grep -q wal-push "/proc/$p/cmdline" 2>/dev/null && echo "$p" && return
    done
    return 0
}

# A pusher left from an async measurement drains .ready files whatever archive_command says until
# it has been idle for 30 s: stop it before another method is measured.
stop_pusher() {
    local pid w
    pid="$(pusher_pid)"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((w = 0; w < 100; w++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "the background pusher $pid did not stop"
}

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
measure() { # ROUND TARGET METHOD
    local t="$2" m="$3" a0 a1 l0 l1 drain peak hwm="" pid
    stop_pusher
    set_archive_command "$(method_cmd "$m" "$t")"
    drain="$(wait_drained 600)"
    [[ "$drain" != timeout ]] || die "the backlog of the previous method did not drain in 600 s"
    psql_q "checkpoint" >/dev/null
    a0="$(psql_q "select archived_count from pg_stat_archiver")"
    l0="$(psql_q "select pg_current_wal_lsn() - '0/0'::pg_lsn")"
    rm -f "$TMP/stop" "$TMP/peak"
    "$PY" -c "$SAMPLER" "$STATUS" "$TMP/stop" "$TMP/peak" &
    SAMPLER_PID=$!
    run_child as_pg env PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -c 4 -j 2 \
        -T "$DURATION" -d "$CONN" >"$TMP/pg/pgbench-run.log" 2>&1 \
        || { cat "$TMP/pg/pgbench-run.log" >&2; die "pgbench failed"; }
    a1="$(psql_q "select archived_count from pg_stat_archiver")"
    l1="$(psql_q "select pg_current_wal_lsn() - '0/0'::pg_lsn")"
    [[ "$m" != async ]] || { pid="$(pusher_pid)"; [[ -z "$pid" ]] || hwm="$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null)"; }
    drain="$(wait_drained 600)"
    [[ "$m" != async || -n "$hwm" || -z "${pid:=$(pusher_pid)}" ]] \
        || hwm="$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null)"
    touch "$TMP/stop"
    wait "$SAMPLER_PID" || true
    SAMPLER_PID=""
    peak="$(cat "$TMP/peak")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$t" "$m" "$((a1 - a0))" \
        "$(((l1 - l0) / 16777216))" "$peak" "$drain" "${hwm:-}" >>"$RESULTS"
    say "round $1, $t, $(method_name "$m"): $((a1 - a0)) archived, $(((l1 - l0) / 16777216)) written, peak $peak .ready, drained in ${drain} s${hwm:+, pusher VmHWM $hwm kB}"
}

BACKLOGS="$TMP/backlog.tsv"
: >"$BACKLOGS"
# CPU ticks of the whole machine (busy, all) and of the Ceph daemons (the gateway's own cost)
machine_ticks() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
ceph_ticks() {
    local p sum=0 f
    for p in $(pgrep -x 'radosgw|ceph-osd|ceph-mon'); do
        read -r -a f <"/proc/$p/stat" 2>/dev/null || continue
        sum=$((sum + f[13] + f[14]))
    done
    echo "$sum"
}

# CPU ticks of PostgreSQL's archiver's waited-for children: every archive_command (and what it ran)
archiver_child_ticks() {
    local pm p f
    pm="$(head -1 "$DATA/postmaster.pid" 2>/dev/null)"
    for p in $(pgrep -P "$pm" 2>/dev/null); do
        if grep -qa archiver "/proc/$p/cmdline" 2>/dev/null; then
            read -r -a f <"/proc/$p/stat" && echo $((f[15] + f[16])) && return
        fi
    done
    echo 0
}
proc_ticks() { local f; read -r -a f <"/proc/$1/stat" 2>/dev/null && echo $((f[13] + f[14])) || echo 0; }

# where the drain's requests start in the gateway's access log (counted per segment in the report)
rgw_log_offset() { stat -c %s "$RGW_DIR/log/client.rgw.log" 2>/dev/null || echo ""; }

measure_backlog() { # ROUND TARGET METHOD
    local t="$2" m="$3" drain n hwm="" pid i=0 b0 a0 b1 a1 g0 g1 off="" c0 c1 pt=""
    set_archive_command ""
    stop_pusher
    while (($(ready_count) < BACKLOG)); do
        psql_q "update pgbench_accounts set abalance = abalance + 1 where aid % 4 = $((i % 4))" \
            >/dev/null
        i=$((i + 1))
        ((i < 200)) || die "no backlog of $BACKLOG segments after 200 bulk updates"
    done
    n="$(ready_count)"
    read -r b0 a0 < <(machine_ticks)
    g0="$(ceph_ticks)"
    c0="$(archiver_child_ticks)"
    [[ "$t" != rgw ]] || off="$(rgw_log_offset)"
    set_archive_command "$(method_cmd "$m" "$t")"
    drain="$(wait_drained 900)"
    read -r b1 a1 < <(machine_ticks)
    g1="$(ceph_ticks)"
    c1="$(archiver_child_ticks)"
    [[ "$drain" != timeout ]] || die "$(method_name "$m") to $t did not drain $n segments in 900 s"
    if [[ "$m" == async ]]; then
        pid="$(pusher_pid)"
        [[ -z "$pid" ]] || hwm="$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null)"
        [[ -z "$pid" ]] || pt="$(proc_ticks "$pid")" # started for this drain: all its CPU
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$t" "$m" "$n" "$drain" \
        "${hwm:-}" "$((b1 - b0))" "$((a1 - a0))" "$((g1 - g0))" "$off" "$((c1 - c0))" "$pt" \
        >>"$BACKLOGS"
    say "round $1, $t, $(method_name "$m"): backlog of $n segments archived in $drain s${hwm:+, pusher VmHWM $hwm kB}"
}

LABEL="walvault $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git -C "$ROOT" status --porcelain -uno 2>/dev/null)" ]] || LABEL+="+local changes"
LABEL+=", $(pgbackrest version), $(ssh -V 2>&1 | cut -d, -f1), $(radosgw --version | cut -d' ' -f1-3)"

# --- 4. interleaved rounds -------------------------------------------------------------------------
for ((r = 1; r <= ROUNDS; r++)); do
    ti=0
    for t in "${TARGET_LIST[@]}"; do
        methods=()
        [[ "$t" != posix ]] || methods+=(cp)
        methods+=(sync async)
        ((BR_OK[$t])) && methods+=(pgbr)
        n=${#methods[@]}
        for ((k = 0; k < n; k++)); do
            measure "$r" "$t" "${methods[$(((k + r + ti) % n))]}"
        done
        for ((k = 0; k < n; k++)); do
            measure_backlog "$r" "$t" "${methods[$(((k + r + ti + 1) % n))]}"
        done
        ti=$((ti + 1))
    done
done
set_archive_command "/bin/true"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null

# --- 5. report ---------------------------------------------------------------------------------------
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z "$RGW_DIR" ]] || sleep 3 # the gateway writes its log asynchronously
"$PY" - "$RESULTS" "$DURATION" "$LABEL" "$LOAD_START" "$LOAD_END" "$(($(date +%s) - T_START))" \
    "$BACKLOGS" "${RGW_DIR:+$RGW_DIR/log/client.rgw.log}" "$ROOT/contrib/bench" <<'PYEOF'
import os
import statistics
import sys

path, dur, label, load0, load1, elapsed, bpath, rgwlog, here = sys.argv[1:10]
sys.path.insert(0, here)
import rgw_requests  # noqa: E402
dur = float(dur)
names = {"cp": "cp+fsync", "sync": "wal-push sync", "async": "wal-push async",
         "pgbr": "pgBackRest async"}
rows = {}
for line in open(path):
    r, t, m, arch, written, peak, drain, hwm = line.rstrip("\n").split("\t")
    rows.setdefault((t, m), []).append((int(arch) / dur, int(written) / dur, int(peak), drain, hwm))
print("sustained archiving (%s): pgbench -c 4 -j 2 for %.0f s per run, 16 MiB segments, "
      "max_wal_size 64MB" % (label, dur))
print("load average at start %s, at end %s; %s s in all\n" % (load0, load1, elapsed))
print("%-7s %-17s %10s %10s %8s %9s %12s" % ("target", "method", "archived/s", "written/s",
                                             "peak wait", "drain s", "pusher HWM"))
print("-" * 80)
med = {}
for t in ("posix", "rgw", "ssh"):
    for m in ("cp", "sync", "async", "pgbr"):
        v = rows.get((t, m))
        if not v:
            continue
        a = statistics.median(x[0] for x in v)
        w = statistics.median(x[1] for x in v)
        p = max(x[2] for x in v)
        drains = [float(x[3]) for x in v if x[3] != "timeout"]
        d = "%.1f" % max(drains) if drains else "timeout"
        h = [int(x[4]) for x in v if x[4]]
        med[(t, m)] = (a, w, p)
        print("%-7s %-17s %10.2f %10.2f %8d %9s %12s" % (t, names[m], a, w, p, d,
                                                       "%.1f MiB" % (max(h) / 1024) if h else ""))
# The gateway's requests per segment in each rgw drain: its access lines from the drain's start to
# the next drain's (nothing reaches the gateway while a backlog builds: archive_command is empty).
reqs = {}
blines = [l.rstrip("\n").split("\t") for l in open(bpath)]
offs = sorted(int(x[9]) for x in blines if x[1] == "rgw" and x[9])
if rgwlog and offs and os.path.exists(rgwlog):
    for i, o in enumerate(offs):
        end = offs[i + 1] if i + 1 < len(offs) else None
        reqs[o] = rgw_requests.count(rgw_requests.read(rgwlog, o, end))
back = {}
for x in blines:
    r, t, m, n, drain, hwm, busy, ticks, gw, off, cmd_t, push_t = x
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    back.setdefault((t, m), []).append((int(n) / float(drain) if float(drain) > 0 else 0.0, int(n),
                                        float(drain), hwm, int(busy) / max(int(ticks), 1),
                                        int(busy) * tick_ms / int(n), int(gw) * tick_ms / int(n),
                                        reqs.get(int(off)) if off else None,
                                        int(cmd_t) * tick_ms / int(n),
                                        int(push_t) * tick_ms / int(n) if push_t else None))
print("\nbacklog: archive_command empty until the segments wait, then the method drains them")
print("busy: the machine's CPUs busy during the drain (/proc/stat); CPU ms/seg: all the machine's")
print("busy CPU time per segment (PostgreSQL's archiver, the method, the peer); of it, gateway: the")
print("Ceph daemons (radosgw, ceph-osd, ceph-mon); ceiling: segments/s if the CPUs were all busy;")
print("requests/seg: the gateway's access-log lines per segment (PUT / HEAD / others); command:")
print("the CPU ms per segment of archive_command (PostgreSQL's archiver's children, wal-push in the")
print("foreground); pusher: of the background pusher (pgBackRest's async process is not counted)")
print("%-7s %-17s %8s %9s %12s %12s %6s %11s %8s %8s %8s %8s  %s" % (
    "target", "method", "segments", "seconds", "segments/s", "pusher HWM", "busy", "CPU ms/seg",
    "command", "pusher", "gateway", "ceiling", "requests/seg"))
print("-" * 146)
bmed = {}
ceiling = {}
for t in ("posix", "rgw", "ssh"):
    for m in ("cp", "sync", "async", "pgbr"):
        v = back.get((t, m))
        if not v:
            continue
        rate = statistics.median(x[0] for x in v)
        bmed[(t, m)] = rate
        h = [int(x[3]) for x in v if x[3]]
        cpu_seg = statistics.median(x[5] for x in v)
        ceiling[(t, m)] = 1000.0 * os.cpu_count() / cpu_seg if cpu_seg > 0 else 0.0
        rq = [(x[7], x[1]) for x in v if x[7] is not None]
        per = ""
        if rq:
            tot = {}
            for by, nseg in rq:
                for k, c in by.items():
                    tot[k] = tot.get(k, 0) + c / nseg / len(rq)
            other = sum(c for k, c in tot.items() if k not in ("PUT", "HEAD"))
            per = "%.1f (%.1f / %.1f / %.1f)" % (sum(tot.values()), tot.get("PUT", 0),
                                                tot.get("HEAD", 0), other)
        pu = [x[9] for x in v if x[9] is not None]
        print("%-7s %-17s %8d %9.1f %12.2f %12s %5.0f%% %11.1f %8.1f %8s %8s %8.1f  %s" % (
            t, names[m], max(x[1] for x in v), statistics.median(x[2] for x in v), rate,
            "%.1f MiB" % (max(h) / 1024) if h else "", 100 * statistics.median(x[4] for x in v),
            cpu_seg, statistics.median(x[8] for x in v),
            "%.1f" % statistics.median(pu) if pu else "",
            "%.1f" % statistics.median(x[6] for x in v) if t == "rgw" else "",
            ceiling[(t, m)], per))

print("\ntarget                                          measured   target   result")
def line(what, val, goal, ok):
    print("%-46s %9s %8s   %s" % (what, val, goal, "met" if ok else "MISSED"))
if ("posix", "cp") in med and ("posix", "async") in med:
    cp, asy = med[("posix", "cp")][2], med[("posix", "async")][2]
    line("posix: async peak waiting / cp's", "%d / %d" % (asy, cp), "<= 2x", asy <= 2 * max(cp, 1))
for t in ("rgw", "ssh"):
    if (t, "sync") in bmed and (t, "async") in bmed:
        s_, a = bmed[(t, "sync")], bmed[(t, "async")]
        line("%s: async / sync, backlog segments/s" % t, "%.2fx" % (a / s_ if s_ else float("inf")),
             ">= 3x", a >= 3 * s_)
        if (t, "async") in ceiling and s_:
            print("    %s: async's CPU ceiling on these %d CPUs: %.1f segments/s = %.2fx sync" % (
                t, os.cpu_count(), ceiling[(t, "async")], ceiling[(t, "async")] / s_))
    if (t, "pgbr") in bmed and (t, "async") in bmed:
        b, a = bmed[(t, "pgbr")], bmed[(t, "async")]
        line("%s: async / pgBackRest async, backlog" % t, "%.2fx" % (a / b if b else float("inf")),
             "> 1x", a > b)
hw = [int(x[3]) for v in back.values() for x in v if x[3]]
if hw:
    line("pusher peak RSS under the backlog", "%.1f MiB" % (max(hw) / 1024), "<= 64 MiB",
         max(hw) <= 64 * 1024)
PYEOF
