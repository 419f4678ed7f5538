#!/usr/bin/env bash
# demo.sh - walvault end to end on a local posix repository, as `bash contrib/run.sh demo` runs it.
#
#   1. a PostgreSQL 15 cluster archives its WAL with archive_command = 'wal-push -c CONF %p'
#   2. a table, `basebackup backup`, a first batch of rows, the server's time, a second batch
#   3. `basebackup list` shows the backup and the recoverable window
#   4. `basebackup restore --to TIME` writes a new data directory that recovers through
#      restore_command = 'wal-fetch -c CONF %f %p' up to that time; the server is started with
#      the command restore prints
#   5. the restored server must hold exactly the first batch
#
# Needs WALVAULT_BIN (the installed binaries, readable by postgres); runs as root or postgres.
set -euo pipefail

WALBIN="${WALVAULT_BIN:?set WALVAULT_BIN to the directory holding wal-push and wal-fetch}"
PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
ROWS=1000

for b in wal-push wal-fetch basebackup; do
    [[ -x "$WALBIN/$b" ]] || { echo "demo: $WALBIN/$b not found" >&2; exit 1; }
done

if [[ "$(id -u)" == 0 ]]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

T="$(mktemp -d /tmp/walvault-demo.XXXXXX)"
chmod 755 "$T"
[[ "$(id -u)" == 0 ]] && chown postgres: "$T"
PRIMARY="$T/primary"
RESTORED="$T/restored"
CONF="$T/walvault.conf"

cleanup() {
    local d
    for d in "$RESTORED" "$PRIMARY"; do
        if [[ -f "$d/postmaster.pid" ]]; then
            as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf -- "$T"
}
trap cleanup EXIT

step() { printf '\n--- %s\n' "$*"; }

psql_at() {  # psql_at PORT SQL
    as_pg "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

step "repository: a local directory ($T/repo)"
as_pg mkdir -m 700 "$T/repo"
as_pg tee "$CONF" >/dev/null <<EOF
[repo1]
type = posix
path = $T/repo
EOF
cat "$CONF"

P1="$(free_port)"
step "primary on 127.0.0.1:$P1, archive_command = '$WALBIN/wal-push -c $CONF %p'"
as_pg "$PGBIN/initdb" -D "$PRIMARY" -U postgres --auth=trust --no-sync -E UTF8 --locale=C \
    --wal-segsize=1 >/dev/null
as_pg tee -a "$PRIMARY/postgresql.conf" >/dev/null <<EOF
port = $P1
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
archive_mode = on
archive_command = '$WALBIN/wal-push -c $CONF %p'
EOF
as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" -l "$T/primary.log" -w start >/dev/null

psql_at "$P1" "create table demo (id int, batch int, note text, at timestamptz default clock_timestamp())"

step "base backup: basebackup backup (over the replication protocol, into the repository)"
as_pg "$WALBIN/basebackup" -c "$CONF" backup -d "host=127.0.0.1 port=$P1 user=postgres" \
    --label demo --checkpoint fast 2>&1 | sed 's/^/    /'

# The backup's STOP TIME has whole seconds: a restore can target only instants after that second.
sleep 1.2

step "batch 1: $ROWS rows"
psql_at "$P1" "insert into demo (id, batch, note) select g, 1, md5(g::text) from generate_series(1, $ROWS) g"
TARGET="$(psql_at "$P1" "select clock_timestamp()")"
echo "server time between the batches: $TARGET"
psql_at "$P1" "select pg_sleep(0.5)" >/dev/null

step "batch 2: $ROWS rows"
psql_at "$P1" "insert into demo (id, batch, note) select g, 2, md5(g::text) from generate_series($ROWS + 1, 2 * $ROWS) g"
LAST="$(psql_at "$P1" "select pg_walfile_name(pg_switch_wal())")"
echo "waiting for $LAST to be archived"
for _ in $(seq 1 600); do
    DONE="$(psql_at "$P1" "select coalesce(last_archived_wal, '') >= '$LAST' from pg_stat_archiver")"
    [[ "$DONE" == t ]] && break
    sleep 0.1
done
[[ "$DONE" == t ]] || { echo "demo: $LAST was not archived; server log:" >&2; tail -30 "$T/primary.log" >&2; exit 1; }
psql_at "$P1" "select 'archived: ' || archived_count || ', failed: ' || failed_count from pg_stat_archiver"
echo "repository now holds $(find "$T/repo/wal" -type f | wc -l) WAL objects; wal-push in the server log:"
grep "wal-push:" "$T/primary.log" | tail -3 | sed 's/^/    log: /' || true
as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" -m fast -w stop >/dev/null

step "basebackup list: the backups and the recoverable window"
as_pg "$WALBIN/basebackup" -c "$CONF" list | sed 's/^/    /'

P2="$(free_port)"
step "basebackup restore --to '$TARGET'"
as_pg "$WALBIN/basebackup" -c "$CONF" restore --pgdata "$RESTORED" --to "$TARGET" 2>&1 | tee "$T/restore.out" | sed 's/^/    /'
START="$(grep -A1 '^start the server' "$T/restore.out" | tail -1 | sed 's/^ *//')"
[[ -n "$START" ]] || { echo "demo: restore printed no start command" >&2; exit 1; }
echo "recovery settings it wrote:"
grep -E "^(restore_command|recovery_target)" "$RESTORED/postgresql.auto.conf" | sed 's/^/    /'
# The restored copy must not archive into the primary's repository while the demo compares it,
# and gets a port of its own: both in postgresql.auto.conf, which pg_verifybackup does not check
# (postgresql.conf is in backup_manifest: editing it would make the check fail).
as_pg tee -a "$RESTORED/postgresql.auto.conf" >/dev/null <<EOF
port = $P2
archive_mode = off
EOF
if [[ -x "$PGBIN/pg_verifybackup" ]]; then
    step "pg_verifybackup -n: the restored files match PostgreSQL's backup_manifest"
    as_pg "$PGBIN/pg_verifybackup" -n "$RESTORED" | sed 's/^/    /'
fi
step "start it as printed: $START"
as_pg bash -c "$START -w -t 120" >/dev/null || {
    echo "demo: the restored server did not start; its log:" >&2; tail -40 "$RESTORED/restore.log" >&2; exit 1; }
for _ in $(seq 1 600); do
    [[ "$(psql_at "$P2" "select pg_is_in_recovery()")" == f ]] && break
    sleep 0.1
done
grep -E "recovery stopping|restored log file|archive recovery complete" "$RESTORED/restore.log" | sed 's/^/    log: /' | tail -8

step "what the restored server holds"
psql_at "$P2" "select 'batch ' || batch || ': ' || count(*) || ' rows' from demo group by batch order by batch"
B1="$(psql_at "$P2" "select count(*) from demo where batch = 1")"
B2="$(psql_at "$P2" "select count(*) from demo where batch = 2")"
if [[ "$B1" == "$ROWS" && "$B2" == 0 ]]; then
    echo "OK: exactly the first batch ($B1 rows) is there, none of the second"
else
    echo "FAILED: expected $ROWS rows of batch 1 and none of batch 2, got $B1 and $B2" >&2
    tail -40 "$RESTORED/restore.log" >&2
    exit 1
fi
