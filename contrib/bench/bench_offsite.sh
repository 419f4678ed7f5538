#!/usr/bin/env bash
# bench_offsite.sh - wal-push and basebackup to off-site repositories (S3 on Ceph RADOS Gateway, SSH)
# next to pgBackRest on the same S3 store.
#
#     bash contrib/bench/bench_offsite.sh [--rounds N] [--segments N] [--scale N] [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it needs (only the missing ones: pgbackrest, postgresql-15, the
#      Ceph packages of contrib/packages-s3.txt, openssh-server, ...),
#   2. builds walvault in Release into build-benchoffsite/ of this tree and installs it into the
#      temporary directory (readable by postgres),
#   3. starts the peers: Ceph RADOS Gateway (tests/integration/ceph/start_rgw.sh; HTTPS with its
#      throwaway CA, path-style buckets) and OpenSSH's sshd on a free loopback port (own host key,
#      a key pair and known_hosts for the postgres user; walvault-remote runs on the server side),
#   4. makes real WAL and a database: a throwaway PostgreSQL 15 cluster runs pgbench -i -s --scale
#      and bulk updates; its archive_command copies every finished segment aside and --segments
#      full ones, spread over them, are kept; pgBackRest stanzas on the RGW are created,
#   5. WAL: with the cluster stopped, per round, per segment, wal-push to S3, wal-push to SSH
#      (a new connection per push, and one shared through OpenSSH's ControlMaster) and
#      pgbackrest archive-push to S3 (lz4) one after another in a rotating order, each into a
#      destination that does not hold the segment yet (bench_offsite_measure.py, as postgres),
#   6. backups: the cluster archives to all three repositories; per round basebackup backup to S3,
#      pgbackrest backup --type=full to S3 (lz4, process-max=2) and basebackup backup to SSH, in a
#      rotating order, each after a checkpoint with nothing left to archive,
#   7. prints the tables, the ratios against the targets and the load average at start and end.
# Everything lives in one temporary directory that is removed at exit; the cluster, sshd and the
# Ceph daemons are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/contrib/bench"
ROUNDS=3
NSEG=20
SCALE=20
KEEP=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
SSHD=/usr/sbin/sshd

usage() {
    cat >&2 <<EOF
usage: bash contrib/bench/bench_offsite.sh [--rounds N] [--segments N] [--scale N] [--keep]

  --rounds N     rounds (default $ROUNDS); a WAL round pushes every segment once with each method,
                 a backup round takes one backup with each method
  --segments N   16 MiB WAL segments to use (default $NSEG, 2..200)
  --scale N      pgbench scale of the backed-up database (default $SCALE: about 300 MB)
  --keep         keep the temporary directory (servers are stopped all the same)
EOF
    exit 2
}

num() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
    case "$1" in
    --rounds) [[ $# -ge 2 ]] || usage; num "$2"; ROUNDS="$2"; shift 2 ;;
    --segments) [[ $# -ge 2 ]] || usage; num "$2"; NSEG="$2"; shift 2 ;;
    --scale) [[ $# -ge 2 ]] || usage; num "$2"; SCALE="$2"; shift 2 ;;
    --rounds=* | --segments=* | --scale=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench_offsite.sh: unknown argument \"$1\"" >&2; usage ;;
    esac
done
((NSEG >= 2 && NSEG <= 200)) || usage

say() { printf '=== %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench_offsite.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages, runs sshd and PostgreSQL as postgres)"
exec </dev/null
T_START="$(date +%s)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. packages ---------------------------------------------------------------------------------
PACKAGES=(
    build-essential cmake pkg-config
    libpq-dev liblz4-dev libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    pgbackrest openssh-server openssh-client python3 coreutils util-linux time procps
)
mapfile -t S3PKG < <(grep -v '^#' "$ROOT/contrib/packages-s3.txt" | tr -s ' \t' '\n' | grep -v '^$')
PACKAGES+=("${S3PKG[@]}")
# shellcheck source=bench_common.sh
source "$ROOT/contrib/bench/bench_common.sh"
install_packages "${PACKAGES[@]}"
for f in "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql" /usr/bin/pgbackrest "$PY" \
    "$SSHD" /usr/bin/ssh /usr/bin/ssh-keygen /usr/bin/radosgw; do
    [[ -x "$f" ]] || die "$f is missing after the package installation"
done
id postgres >/dev/null 2>&1 || die "no postgres user (postgresql-15 should have created it)"

# --- temporary directory and cleanup --------------------------------------------------------------
# Short path: the Ceph daemons' unix sockets live under it (107-byte limit).
TMP="$(mktemp -d /tmp/bench_offsite.XXXXXX)"
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
    if [[ -n "${CMDIR:-}" && -d "$CMDIR" ]]; then  # the shared ssh connection's master
        for d in "$CMDIR"/*; do
            [[ -S "$d" ]] && as_pg ssh -o ControlPath="$d" -O exit -p "$SSH_PORT" 127.0.0.1 \
                >/dev/null 2>&1 || true
        done
    fi
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
BUILD="$ROOT/build-benchoffsite"
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

# --- 3a. Ceph RADOS Gateway ------------------------------------------------------------------------
install -m 644 "$HERE/bench_offsite_measure.py" "$TMP/bench_offsite_measure.py"
start_rgw wv-wal wv-backup pgbackrest

# --- 3b. sshd on loopback ---------------------------------------------------------------------------
start_sshd bench-offsite
install -d -o postgres -g postgres -m 700 "$TMP/ssh-repo-wal" "$TMP/ssh-repo-backup" \
    "$TMP/ssh-repo-wal-mux" "$TMP/cm"
CMDIR="$TMP/cm"   # OpenSSH connection sharing for the "shared connection" method

# --- 4. cluster, WAL, database ------------------------------------------------------------------------
SOCK="$TMP/sock"
DATA="$TMP/pg/data"
SEGS_ALL="$TMP/segs-all"
SEGDIR="$TMP/segs"
install -d -o postgres -g postgres -m 700 "$SOCK" "$TMP/pg"
install -d -o postgres -g postgres -m 755 "$SEGS_ALL" "$SEGDIR"
PGPORT="$(free_port)"
CONN="host=$SOCK port=$PGPORT user=postgres dbname=postgres"
psql_q() { as_pg "$PGBIN/psql" -X -q -At -d "$CONN" -v ON_ERROR_STOP=1 -c "$1"; }
count_segs() { find "$SEGS_ALL" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' | wc -l; }

say "initdb, pgbench -i -s $SCALE and WAL generation on a throwaway PostgreSQL 15 cluster"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync >"$TMP/pg/initdb.log" 2>&1 \
    || { cat "$TMP/pg/initdb.log" >&2; die "initdb failed"; }
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
archive_mode = on
archive_command = 'cp %p $SEGS_ALL/%f.tmp && mv $SEGS_ALL/%f.tmp $SEGS_ALL/%f'
EOF
RUNNING+=("$DATA")
start_pg() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg/server.log" -w -t 120 start >/dev/null \
        || { tail -20 "$TMP/pg/server.log" >&2; die "the cluster did not start"; }
}
start_pg
run_child as_pg env PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -i -q -s "$SCALE" \
    -d "$CONN" >"$TMP/pg/pgbench-i.log" 2>&1 \
    || { cat "$TMP/pg/pgbench-i.log" >&2; die "pgbench -i failed"; }
run_child as_pg env PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -c 2 -j 2 -T 5 \
    -d "$CONN" >"$TMP/pg/pgbench.log" 2>&1 || { cat "$TMP/pg/pgbench.log" >&2; die "pgbench failed"; }
# pgbench alone makes WAL slowly: bulk updates (heap, index entries, full-page images) add more.
for ((i = 0; i < 40 && $(count_segs) <= NSEG + 1; i++)); do
    psql_q "update pgbench_accounts set abalance = abalance + $i where aid % 10 = $((i % 10))" \
        >/dev/null
done
psql_q "vacuum analyze" >/dev/null
LASTSEG="$(psql_q "select pg_walfile_name(pg_switch_wal())")"
for ((i = 0; i < 600; i++)); do
    [[ -f "$SEGS_ALL/$LASTSEG" ]] && break
    sleep 0.2
done
[[ -f "$SEGS_ALL/$LASTSEG" ]] || die "segment $LASTSEG was not archived within 120 s"
mapfile -t CHOSEN < <(find "$SEGS_ALL" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' \
    -printf '%f\n' | sort | awk -v last="$LASTSEG" '$0 < last' \
    | awk -v n="$NSEG" '{ s[NR] = $0 } END { for (i = 0; i < n && NR >= n; i++) print s[int(i * NR / n) + 1] }')
((${#CHOSEN[@]} == NSEG)) || die "only ${#CHOSEN[@]} full segments were generated, $NSEG wanted"
for s in "${CHOSEN[@]}"; do
    [[ "$(stat -c %s "$SEGS_ALL/$s")" == 16777216 ]] || die "$s is not 16 MiB"
    mv "$SEGS_ALL/$s" "$SEGDIR/$s"
done
chown -R postgres:postgres "$SEGDIR"
DB_BYTES="$(psql_q "select pg_database_size('postgres')")"
say "database: $((DB_BYTES / 1048576)) MiB; $NSEG WAL segments chosen"

# --- configurations -----------------------------------------------------------------------------------
# walvault: S3 over HTTPS with the gateway's CA, path style; SSH with walvault-remote's absolute path.
wv_conf() { # FILE TYPE WHERE
    local f="$1"
    cat >"$f" <<EOF
[global]
compress = lz4
process_max = 2
log_level = warn

[repo1]
EOF
    if [[ "$2" == s3 ]]; then
        cat >>"$f" <<EOF
type = s3
endpoint = https://127.0.0.1:$S3_PORT
region = default
bucket = $3
uri_style = path
ca_file = $CA
access_key_id = $S3_ACCESS_KEY
secret_access_key_file = $TMP/secrets/s3-secret
EOF
    else
        cat >>"$f" <<EOF
type = ssh
host = 127.0.0.1
port = $SSH_PORT
user = postgres
path = $3
identity_file = $SSHDIR/id_ed25519
known_hosts = $SSHDIR/known_hosts
remote_command = $WV/bin/walvault-remote
EOF
        if [[ "$2" == sshmux ]]; then
            echo "ssh_command = ssh -o ControlMaster=auto -o ControlPath=$CMDIR/%C" \
                "-o ControlPersist=300" >>"$f"
        fi
    fi
    chown postgres:postgres "$f"
    chmod 644 "$f"
}
WVC_S3_WAL="$TMP/wv-s3-wal.conf"
WVC_SSH_WAL="$TMP/wv-ssh-wal.conf"
WVC_S3_BK="$TMP/wv-s3-backup.conf"
WVC_SSH_BK="$TMP/wv-ssh-backup.conf"
wv_conf "$WVC_S3_WAL" s3 wv-wal
wv_conf "$WVC_SSH_WAL" ssh "$TMP/ssh-repo-wal"
WVC_SSHMUX_WAL="$TMP/wv-sshmux-wal.conf"
wv_conf "$WVC_SSHMUX_WAL" sshmux "$TMP/ssh-repo-wal-mux"
wv_conf "$WVC_S3_BK" s3 wv-backup
wv_conf "$WVC_SSH_BK" ssh "$TMP/ssh-repo-backup"

# pgBackRest: one bucket, stanza "wal" for the archive-push runs, stanza "backup" for the backups.
# Endpoint "localhost": pgBackRest 2.45 matches the certificate's DNS names only, not its IP address
# (the gateway's certificate names 127.0.0.1, ::1 and localhost); TLS is verified with the CA.
PGBR="$TMP/pgbackrest"
install -d -o postgres -g postgres -m 700 "$PGBR" "$PGBR/log" "$PGBR/lock" "$PGBR/spool"
BRCONF="$PGBR/pgbackrest.conf"
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
repo1-retention-full=1000
compress-type=lz4
process-max=2
start-fast=y
archive-async=n
log-level-console=warn
log-level-stderr=warn
log-level-file=off
lock-path=$PGBR/lock
log-path=$PGBR/log
spool-path=$PGBR/spool

[wal]
pg1-path=$DATA
pg1-port=$PGPORT
pg1-socket-path=$SOCK
pg1-user=postgres

[backup]
pg1-path=$DATA
pg1-port=$PGPORT
pg1-socket-path=$SOCK
pg1-user=postgres
EOF
chown postgres:postgres "$BRCONF"
chmod 600 "$BRCONF"
for st in wal backup; do
    as_pg pgbackrest --config="$BRCONF" --stanza="$st" stanza-create >"$PGBR/stanza-$st.log" 2>&1 \
        || { cat "$PGBR/stanza-$st.log" >&2; die "pgbackrest stanza-create --stanza=$st failed"; }
done

# The measured programs need no server for WAL: stop it so that it does not disturb the timings.
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
rm -rf "$SEGS_ALL"
sync

LABEL="walvault $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git -C "$ROOT" status --porcelain -uno 2>/dev/null)" ]] || LABEL+="+local changes"
LABEL+=", $(pgbackrest version), $(ssh -V 2>&1 | cut -d, -f1), $(radosgw --version | cut -d' ' -f1-3)"
RESULTS="$TMP/results.json"
install -d -o postgres -g postgres -m 755 "$TMP/work"
: >"$RESULTS"
chown postgres:postgres "$RESULTS"
COMMON=(--tmp "$TMP/work" --results "$RESULTS" --rounds "$ROUNDS" --bin "$WV/bin"
        --s3-env "$TMP/secrets/s3.env" --ca "$CA" --server-pids "$RGW_PIDS" --sshd-pid "$SSHD_PID"
        --pgbackrest-conf "$BRCONF")

# --- 5. WAL ----------------------------------------------------------------------------------------
say "WAL: $NSEG segments x $ROUNDS rounds x 4 methods, interleaved"
cd "$TMP"
run_child as_pg "$PY" "$TMP/bench_offsite_measure.py" wal "${COMMON[@]}" --segdir "$SEGDIR" \
    --wv-s3-conf "$WVC_S3_WAL" --wv-s3-bucket wv-wal --wv-ssh-conf "$WVC_SSH_WAL" \
    --wv-ssh-repo "$TMP/ssh-repo-wal" --wv-sshmux-conf "$WVC_SSHMUX_WAL" \
    --wv-sshmux-repo "$TMP/ssh-repo-wal-mux" --stanza wal

# --- 6. backups --------------------------------------------------------------------------------------
say "backups: the cluster archives to pgBackRest (S3), walvault S3 and walvault SSH"
cat >>"$DATA/postgresql.conf" <<EOF
archive_command = 'pgbackrest --config=$BRCONF --stanza=backup archive-push %p && $WV/bin/wal-push -c $WVC_S3_BK %p && $WV/bin/wal-push -c $WVC_SSH_BK %p'
EOF
start_pg
as_pg pgbackrest --config="$BRCONF" --stanza=backup check >"$PGBR/check.log" 2>&1 \
    || { cat "$PGBR/check.log" >&2; die "pgbackrest check failed"; }
run_child as_pg "$PY" "$TMP/bench_offsite_measure.py" backup "${COMMON[@]}" --conn "$CONN" \
    --pgdata "$DATA" --wv-s3-conf "$WVC_S3_BK" --wv-s3-bucket wv-backup \
    --wv-ssh-conf "$WVC_SSH_BK" --wv-ssh-repo "$TMP/ssh-repo-backup" --stanza backup
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null

# --- 7. report -----------------------------------------------------------------------------------------
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
as_pg "$PY" "$TMP/bench_offsite_measure.py" report --results "$RESULTS" --label "$LABEL" \
    --db-bytes "$DB_BYTES" --scale "$SCALE" --load-start "$LOAD_START" --load-end "$LOAD_END" \
    --elapsed "$(($(date +%s) - T_START))"
