#!/usr/bin/env bash
# bench_wal_push.sh - how fast and how lean is wal-push, next to `cp + fsync` and pgBackRest?
#
#     bash contrib/bench/bench_wal_push.sh [--rounds N] [--segments N] [--no-1g] [--profile] [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it needs (only the missing ones; pgbackrest, postgresql-15, ...),
#   2. builds walvault in Release into build-bench/ of this tree,
#   3. makes real WAL: a throwaway PostgreSQL 15 cluster (postgres user, free loopback port, temp dir)
#      runs `pgbench -i -s 20`, a short pgbench and, until there is enough WAL, bulk updates of
#      pgbench_accounts; its archive_command copies every finished 16 MiB segment aside, and
#      --segments full ones, spread evenly over them, are kept,
#   4. creates a pgBackRest stanza for that cluster (lz4, synchronous archive-push), stops the cluster,
#   5. runs bench_wal_push_measure.py as the postgres user: per round, per segment, the three methods
#      one after another in a rotating order (cp + fsync, pgbackrest archive-push, wal-push), each
#      into a destination that does not hold the segment yet, and prints the table,
#   6. unless --no-1g: a second cluster with 1 GiB segments writes one full segment of random data;
#      wal-push's peak RSS and time on it are measured the same way,
#   7. with --profile: perf samples one wal-push run per segment and bench_wal_push_profile.py
#      prints where the CPU time goes (SHA-256, lz4, kernel read/write/fsync, process start).
# Everything lives in one temporary directory that is removed at exit, servers are stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/contrib/bench"
ROUNDS=3
NSEG=20
DO_1G=1
KEEP=0
PROFILE=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

usage() {
    cat >&2 <<EOF
usage: bash contrib/bench/bench_wal_push.sh [--rounds N] [--segments N] [--no-1g] [--profile] [--keep]

  --rounds N     passes over the segments (default $ROUNDS); each pass runs every method once on
                 every segment, so each method gets N x segments samples
  --segments N   16 MiB segments to generate and use (default $NSEG, 2..200)
  --no-1g        skip the 1 GiB segment (saves about a minute and 4 GiB of temporary disk)
  --profile      afterwards, profile wal-push with perf (installs linux-perf if missing)
  --keep         keep the temporary directory (servers are stopped all the same)
EOF
    exit 2
}

while (($#)); do
    case "$1" in
    --rounds) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage; ROUNDS="$2"; shift 2 ;;
    --rounds=*) ROUNDS="${1#*=}"; [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || usage; shift ;;
    --segments) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage; NSEG="$2"; shift 2 ;;
    --segments=*) NSEG="${1#*=}"; [[ "$NSEG" =~ ^[1-9][0-9]*$ ]] || usage; shift ;;
    --no-1g) DO_1G=0; shift ;;
    --keep) KEEP=1; shift ;;
    --profile) PROFILE=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench_wal_push.sh: unknown argument \"$1\"" >&2; usage ;;
    esac
done
((NSEG >= 2 && NSEG <= 200)) || usage

say() { printf '=== %s\n' "$*" >&2; }
die() { printf 'bench_wal_push.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and runs PostgreSQL as postgres)"
exec </dev/null

# --- 1. packages ---------------------------------------------------------------------------------
PACKAGES=(
    build-essential cmake pkg-config
    libpq-dev liblz4-dev libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    pgbackrest python3 coreutils util-linux time
)
((PROFILE)) && PACKAGES+=(linux-perf)
# shellcheck source=bench_common.sh
source "$ROOT/contrib/bench/bench_common.sh"
install_packages "${PACKAGES[@]}"
for f in /usr/bin/time "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql" /usr/bin/pgbackrest "$PY"; do
    [[ -x "$f" ]] || die "$f is missing after the package installation"
done
id postgres >/dev/null 2>&1 || die "no postgres user (postgresql-15 should have created it)"

# --- 2. build -------------------------------------------------------------------------------------
BUILD="$ROOT/build-bench"
say "building walvault (Release) in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWV_TESTS=OFF >"/tmp/bench_wal_push.cmake.log" 2>&1 \
    && cmake --build "$BUILD" -j"$(nproc)" --target wal-push wal-fetch >>"/tmp/bench_wal_push.cmake.log" 2>&1 \
    || { tail -40 /tmp/bench_wal_push.cmake.log >&2; die "build failed (log: /tmp/bench_wal_push.cmake.log)"; }
rm -f /tmp/bench_wal_push.cmake.log

# --- temporary directory and cleanup --------------------------------------------------------------
TMP="$(mktemp -d /tmp/bench_wal_push.XXXXXX)"
chmod 755 "$TMP"
RUNNING=()


cleanup() {
    local rc=$? d
    for d in "${RUNNING[@]}"; do
        [[ -n "$d" ]] || continue
        as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    if ((KEEP)); then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap on_signal INT TERM

install -d -o postgres -g postgres "$TMP/bin"
for b in wal-push wal-fetch; do
    f="$(find "$BUILD" -maxdepth 3 -type f -name "$b" -perm -u+x | head -1)"
    [[ -n "$f" ]] || die "the build produced no $b"
    install -m 755 "$f" "$TMP/bin/$b"
done

# start_cluster NAME SEGSIZE_MB -> sets PGDATA_DIR, PGPORT_NUM; archived segments land in $TMP/NAME-segs
start_cluster() {
    local name="$1" segsize="$2"
    local data="$TMP/$name/data" segs="$TMP/$name-segs"
    install -d -o postgres -g postgres "$TMP/$name" "$segs"
    as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust --no-sync --wal-segsize="$segsize" \
        >"$TMP/$name/initdb.log" 2>&1 || { cat "$TMP/$name/initdb.log" >&2; die "initdb failed"; }
    PGPORT_NUM="$(free_port)"
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT_NUM
unix_socket_directories = '$TMP/$name'
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 1h
fsync = off
synchronous_commit = off
autovacuum = off
archive_mode = on
archive_command = 'cp %p $segs/%f.tmp && mv $segs/%f.tmp $segs/%f'
EOF
    as_pg "$PGBIN/pg_ctl" -D "$data" -l "$TMP/$name/server.log" -w -t 60 start >/dev/null \
        || { tail -20 "$TMP/$name/server.log" >&2; die "the $name cluster did not start"; }
    RUNNING+=("$data")
    PGDATA_DIR="$data"
}

# psql_at NAME SQL
psql_at() {
    as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$TMP/$1" -p "$2" -d postgres -c "$3"
}

# switch_and_wait NAME PORT -> prints the name of the segment that pg_switch_wal closed (partly empty)
switch_and_wait() {
    local name="$1" port="$2" seg i
    seg="$(psql_at "$name" "$port" "select pg_walfile_name(pg_switch_wal())")"
    for ((i = 0; i < 600; i++)); do
        [[ -f "$TMP/$name-segs/$seg" ]] && { echo "$seg"; return 0; }
        sleep 0.2
    done
    die "segment $seg of the $name cluster was not archived within 120 s"
}

count_segs() { find "$TMP/$1-segs" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' | wc -l; }

# --- 3. real WAL, 16 MiB segments -----------------------------------------------------------------
say "generating WAL: pgbench -i -s 20 and pgbench runs on a throwaway cluster"
start_cluster pg16 16
P16="$PGPORT_NUM"
D16="$PGDATA_DIR"
run_child runuser -u postgres -- "$PGBIN/pgbench" -h "$TMP/pg16" -p "$P16" -i -s 20 -q postgres \
    >"$TMP/pg16/pgbench-i.log" 2>&1 \
    || { cat "$TMP/pg16/pgbench-i.log" >&2; die "pgbench -i failed"; }
run_child runuser -u postgres -- "$PGBIN/pgbench" -h "$TMP/pg16" -p "$P16" -c 2 -j 2 -T 10 postgres \
    >"$TMP/pg16/pgbench.log" 2>&1 \
    || { cat "$TMP/pg16/pgbench.log" >&2; die "pgbench failed"; }
# pgbench alone makes WAL slowly here: bulk updates of pgbench_accounts (heap updates, index
# entries, full-page images) until there are enough segments.
for ((i = 0; i < 40 && $(count_segs pg16) <= NSEG + 1; i++)); do
    psql_at pg16 "$P16" "update pgbench_accounts set abalance = abalance + $i
                         where aid % 10 = $((i % 10))" >/dev/null
done
LASTSEG="$(switch_and_wait pg16 "$P16")"
SEGDIR="$TMP/segs16"
install -d -o postgres -g postgres "$SEGDIR"
# NSEG full segments spread evenly over all of them (bulk load, index build, pgbench, updates),
# leaving out the one pg_switch_wal closed early.
mapfile -t CHOSEN < <(find "$TMP/pg16-segs" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' \
    -printf '%f\n' | sort | awk -v last="$LASTSEG" '$0 < last' \
    | awk -v n="$NSEG" '{ s[NR] = $0 } END { for (i = 0; i < n && NR >= n; i++) print s[int(i * NR / n) + 1] }')
((${#CHOSEN[@]} == NSEG)) || die "only ${#CHOSEN[@]} full segments were generated, $NSEG wanted"
for s in "${CHOSEN[@]}"; do
    [[ "$(stat -c %s "$TMP/pg16-segs/$s")" == 16777216 ]] || die "$s is not 16 MiB"
    mv "$TMP/pg16-segs/$s" "$SEGDIR/$s"
done
chown -R postgres:postgres "$SEGDIR"

# --- 4. pgBackRest stanza --------------------------------------------------------------------------
PGBR="$TMP/pgbackrest"
install -d -o postgres -g postgres "$PGBR" "$PGBR/repo" "$PGBR/log" "$PGBR/lock" "$PGBR/spool"
cat >"$PGBR/pgbackrest.conf" <<EOF
[global]
repo1-path=$PGBR/repo
log-path=$PGBR/log
lock-path=$PGBR/lock
spool-path=$PGBR/spool
log-level-console=warn
log-level-stderr=warn
log-level-file=off
archive-async=n
compress-type=lz4

[bench]
pg1-path=$D16
pg1-port=$P16
pg1-socket-path=$TMP/pg16
pg1-user=postgres
EOF
chown postgres:postgres "$PGBR/pgbackrest.conf"
as_pg pgbackrest --config="$PGBR/pgbackrest.conf" --stanza=bench stanza-create >"$PGBR/stanza.log" 2>&1 \
    || { cat "$PGBR/stanza.log" >&2; die "pgbackrest stanza-create failed"; }

# The measured programs need no server: stop it so that it does not disturb the timings.
as_pg "$PGBIN/pg_ctl" -D "$D16" -m fast -w stop >/dev/null
RUNNING=("${RUNNING[@]/$D16/}")

# --- 5. wal-push configuration ----------------------------------------------------------------------
install -d -o postgres -g postgres "$TMP/walvault" "$TMP/walvault/repo"
cat >"$TMP/walvault/walvault.conf" <<EOF
[global]
compress = lz4
log_level = info

[repo1]
type = posix
path = $TMP/walvault/repo
EOF
chown postgres:postgres "$TMP/walvault/walvault.conf"

# --- 6. one 1 GiB segment ----------------------------------------------------------------------------
SEG1G=""
if ((DO_1G)); then
    say "generating one full 1 GiB WAL segment of random data (second throwaway cluster)"
    start_cluster pg1g 1024
    P1G="$PGPORT_NUM"
    D1G="$PGDATA_DIR"
    psql_at pg1g "$P1G" "create extension pgcrypto" >/dev/null
    psql_at pg1g "$P1G" "create table r (b bytea)" >/dev/null
    psql_at pg1g "$P1G" "alter table r alter column b set storage plain" >/dev/null
    # about 1.2 GiB of WAL: rows of 1.7 KiB of random bytes, 4 to a page
    for ((i = 0; i < 6; i++)); do
        psql_at pg1g "$P1G" "insert into r select gen_random_bytes(1024) || gen_random_bytes(700)
                             from generate_series(1, 120000)" >/dev/null
    done
    first="$(psql_at pg1g "$P1G" "select pg_walfile_name(pg_current_wal_lsn())")"
    last1g="$(switch_and_wait pg1g "$P1G")"
    SEG1G="$(find "$TMP/pg1g-segs" -maxdepth 1 -regextype egrep -regex '.*/[0-9A-F]{24}' -printf '%f\n' \
        | sort | awk -v last="$last1g" '$0 < last' | tail -n 1)"
    [[ -n "$SEG1G" ]] || die "no full 1 GiB segment was archived (current $first, switched $last1g)"
    [[ "$(stat -c %s "$TMP/pg1g-segs/$SEG1G")" == 1073741824 ]] || die "$SEG1G is not 1 GiB"
    as_pg "$PGBIN/pg_ctl" -D "$D1G" -m fast -w stop >/dev/null
    RUNNING=("${RUNNING[@]/$D1G/}")
    install -d -o postgres -g postgres "$TMP/segs1g"
    mv "$TMP/pg1g-segs/$SEG1G" "$TMP/segs1g/$SEG1G"
    rm -rf "$TMP/pg1g-segs" "$TMP/pg1g"
    install -d -o postgres -g postgres "$TMP/walvault/repo-1g"
    cat >"$TMP/walvault/walvault-1g.conf" <<EOF
[repo1]
type = posix
path = $TMP/walvault/repo-1g
EOF
    chown postgres:postgres "$TMP/walvault/walvault-1g.conf" "$TMP/segs1g/$SEG1G"
fi
rm -rf "$TMP/pg16-segs"
sync

LABEL="walvault $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git -C "$ROOT" status --porcelain -uno 2>/dev/null)" ]] || LABEL+="+local changes"
LABEL+=", $(pgbackrest version)"

# --- 7. measure ----------------------------------------------------------------------------------------
say "measuring: ${#CHOSEN[@]} segments x $ROUNDS rounds, interleaved"
install -d -o postgres -g postgres "$TMP/work"
args=(--tmp "$TMP/work" --segdir "$SEGDIR" --rounds "$ROUNDS"
      --wal-push "$TMP/bin/wal-push" --wal-fetch "$TMP/bin/wal-fetch"
      --walvault-conf "$TMP/walvault/walvault.conf" --walvault-repo "$TMP/walvault/repo"
      --pgbackrest-conf "$PGBR/pgbackrest.conf" --pgbackrest-repo "$PGBR/repo"
      --stanza bench --label "$LABEL")
if [[ -n "$SEG1G" ]]; then
    args+=(--seg1g "$TMP/segs1g/$SEG1G" --walvault-conf-1g "$TMP/walvault/walvault-1g.conf"
           --walvault-repo-1g "$TMP/walvault/repo-1g")
fi
# A copy postgres can read wherever this tree lives.
install -m 644 "$HERE/bench_wal_push_measure.py" "$TMP/bench_wal_push_measure.py"
cd "$TMP"
run_child runuser -u postgres -- "$PY" "$TMP/bench_wal_push_measure.py" "${args[@]}"

# --- 8. profile --------------------------------------------------------------------------------------
if ((PROFILE)); then
    say "profiling wal-push with perf (one run per segment)"
    PERF="$(command -v perf || true)"
    [[ -n "$PERF" ]] || die "perf is not installed (Debian package linux-perf)"
    install -m 644 "$HERE/bench_wal_push_profile.py" "$TMP/bench_wal_push_profile.py"
    cat >"$TMP/profile_loop.sh" <<EOF
for s in "$SEGDIR"/*; do
    n="\${s##*/}"
    rm -f "$TMP/walvault/repo/wal/\${n:0:16}/\$n"
    "$TMP/bin/wal-push" -c "$TMP/walvault/walvault.conf" "\$s" 2>/dev/null || exit 1
done
EOF
    FREQ=4999
    run_child "$PERF" record -q -F "$FREQ" -g -o "$TMP/perf.data" -- \
        runuser -u postgres -- bash "$TMP/profile_loop.sh" \
        >/dev/null 2>"$TMP/perf.log" || { cat "$TMP/perf.log" >&2; die "perf record failed"; }
    "$PERF" script -i "$TMP/perf.data" --comm wal-push -F ip,sym,dso 2>/dev/null \
        | "$PY" "$TMP/bench_wal_push_profile.py" --runs "${#CHOSEN[@]}" --freq "$FREQ" \
            --wal-push "$TMP/bin/wal-push"
    echo "wal-push loads $(ldd "$TMP/bin/wal-push" | grep -c '=>') shared libraries (ldd)"
fi
