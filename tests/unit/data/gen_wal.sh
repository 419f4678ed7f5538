#!/bin/bash
# gen_wal.sh - regenerate the WAL test data under tests/unit/data/wal/ (PostgreSQL 15) or
# tests/unit/data/walNN/ (PostgreSQL NN), used by test_walreader.c.
#
# Runs a throwaway PostgreSQL cluster with 1 MiB WAL segments on a free loopback port, runs a known
# workload (commits, aborts, two-phase commits and rollbacks, a restore point, full-page images, records
# spanning pages and a segment boundary, a 300 kB record, a WAL switch), archives the finished segments,
# stores them lz4-compressed, and writes what pg_waldump reports about them to wal/expected.txt.
#
# Usage (as root, needs lz4 and a server with its own pg_waldump, psql, pg_controldata):
#     tests/unit/data/gen_wal.sh                      Debian's postgresql-15, into wal/
#     tests/unit/data/gen_wal.sh /var/cache/walvault/pg/18.6/bin     that server's version, into wal18/
# (contrib/pgversions.sh installs 18 with every tool; the npm builds of 16 and 17 have no pg_waldump.)
# The output differs on every run (timestamps, xids); the tests read expected.txt, so any run is valid.
set -euo pipefail

PGBIN=${1:-/usr/lib/postgresql/15/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
MAJOR=$("$PGBIN/postgres" --version | sed -E 's/.* ([0-9]+)\..*/\1/')
if [ "$MAJOR" = 15 ]; then OUT=$HERE/wal; else OUT=$HERE/wal$MAJOR; fi
WORK=$(mktemp -d /tmp/wv-genwal.XXXXXX)
chown postgres: "$WORK"

as_pg() { runuser -u postgres -- "$@"; }

cleanup() {
    if [ -f "$WORK/data/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# WV_GENWAL_KEEP=1 keeps the throwaway cluster and dumps in /tmp for a look (stop it by hand).
[ -n "${WV_GENWAL_KEEP:-}" ] && trap - EXIT

port=""
for p in $(seq 25400 25499); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "gen_wal.sh: no free loopback port in 25400-25499" >&2; exit 1; }

as_pg "$PGBIN/initdb" -D "$WORK/data" --wal-segsize=1 -A trust -U postgres --no-sync >/dev/null
mkdir "$WORK/archive" && chown postgres: "$WORK/archive"
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$WORK'
max_prepared_transactions = 2
wal_level = replica
archive_mode = on
archive_command = 'cp %p $WORK/archive/%f'
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 1GB
fsync = off
wal_recycle = off
EOF
# initdb leaves recycled future segments (old content under new names); remove them so that the partial
# segment below holds zeros after its last record. The tests make their own stale tail from it.
redo_seg=$(as_pg "$PGBIN/pg_controldata" "$WORK/data" | awk -F': *' '/REDO WAL file/ {print $2}')
for f in "$WORK"/data/pg_wal/0*; do
    b=$(basename "$f")
    if [ "${#b}" -eq 24 ] && [[ "$b" > "$redo_seg" ]]; then rm -f "$f"; fi
done
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w start >/dev/null

psql_() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$port" -d postgres "$@"; }
lsn_() { psql_ -At -c "SELECT $1"; }

# Start from a fresh segment, so that the first archived segments are the ones we describe.
psql_ -c "SELECT pg_switch_wal()" >/dev/null
first_seg=$(lsn_ "pg_walfile_name(pg_current_wal_insert_lsn())")

psql_ -o /dev/null <<'EOF'
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, repeat('a', 100) FROM generate_series(1, 50) g;
BEGIN; INSERT INTO t VALUES (1001, 'rolled back'); ROLLBACK;
INSERT INTO t VALUES (1002, 'plain commit');
BEGIN; INSERT INTO t VALUES (1003, 'prepared'); PREPARE TRANSACTION 'wv_p1';
COMMIT PREPARED 'wv_p1';
BEGIN; INSERT INTO t VALUES (1004, 'prepared, rolled back'); PREPARE TRANSACTION 'wv_p2';
ROLLBACK PREPARED 'wv_p2';
BEGIN; INSERT INTO t VALUES (1005, 'sub'); SAVEPOINT s1; INSERT INTO t VALUES (1006, 'sub');
SAVEPOINT s2; INSERT INTO t VALUES (1007, 'sub'); RELEASE s2; COMMIT;
SELECT pg_create_restore_point('before_x');
INSERT INTO t VALUES (1008, 'after the restore point');
CHECKPOINT;
-- Full-page images after the checkpoint, and toasted rows spanning pages.
UPDATE t SET v = v || 'u' WHERE id <= 50;
INSERT INTO t VALUES (1009, repeat('wide row ', 3000));
SELECT pg_logical_emit_message(false, 'wv', repeat('m', 20000));
EOF

# Fill the segment with commits and compressible messages until a 30 kB record must cross into the
# next segment.
seg_bytes=$((1024 * 1024))
id=2000
while :; do
    off=$(lsn_ "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint % $seg_bytes")
    if [ "$off" -gt $((seg_bytes - 20000)) ]; then break; fi
    id=$((id + 1))
    len=$(( seg_bytes - 20000 - off > 12000 ? 8000 : 1000 ))
    psql_ -o /dev/null -c "SELECT pg_logical_emit_message(false, 'wv', repeat('f', $len))" \
        -c "INSERT INTO t VALUES ($id, 'fill')"
done
psql_ -o /dev/null <<'EOF'
SELECT pg_logical_emit_message(false, 'wv', repeat('s', 30000));
INSERT INTO t VALUES (1010, 'after the segment boundary');
CREATE TABLE t2 (a int);
INSERT INTO t2 VALUES (1);
BEGIN; DROP TABLE t2; PREPARE TRANSACTION 'wv_p3';
COMMIT PREPARED 'wv_p3';
SELECT pg_logical_emit_message(false, 'wv', repeat('h', 300000));
BEGIN; INSERT INTO t VALUES (1011, 'aborted after the big record'); ROLLBACK;
INSERT INTO t VALUES (1012, 'last commit');
EOF
switch_end=$(lsn_ "pg_switch_wal()")
last_seg=$(lsn_ "pg_walfile_name('$switch_end')")
for _ in $(seq 1 100); do
    [ -f "$WORK/archive/$last_seg" ] && break
    sleep 0.1
done
[ -f "$WORK/archive/$last_seg" ] || { echo "gen_wal.sh: $last_seg was not archived" >&2; exit 1; }
# The segment after the switch stays unfinished (what a .partial file holds: with wal_recycle off,
# valid records and then zeros).
psql_ -c "INSERT INTO t VALUES (1013, 'in the partial segment')" >/dev/null
next_seg=$(lsn_ "pg_walfile_name(pg_current_wal_insert_lsn())")
mkdir "$WORK/partial"
# Copied while the server runs: at shutdown it would switch and archive this segment too.
cp "$WORK/data/pg_wal/$next_seg" "$WORK/partial/$next_seg"
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null

rm -rf "$OUT"
mkdir -p "$OUT"
segs=$(cd "$WORK/archive" && ls | awk -v a="$first_seg" -v b="$last_seg" '($0 "") >= (a "") && ($0 "") <= (b "")')
for s in $segs; do
    lz4 -q -9 "$WORK/archive/$s" "$OUT/$s.lz4"
done
# The unfinished segment as PostgreSQL left it in pg_wal (valid records, then zeros or stale bytes).
lz4 -q -9 "$WORK/partial/$next_seg" "$OUT/$next_seg.partial.lz4"
chmod 644 "$OUT"/*

# Every record of the archived range, then of the partial segment, as pg_waldump shows them (UTC).
{
    echo "@section"
    TZ=UTC "$PGBIN/pg_waldump" -p "$WORK/archive" "$first_seg" "$last_seg" 2>/dev/null || true
    echo "@section"
    TZ=UTC "$PGBIN/pg_waldump" -p "$WORK/partial" "$next_seg" 2>/dev/null || true
} >"$WORK/dump.txt"

# expected.txt, one fact per line (LSNs as X/X, times as unix microseconds):
#   segsize BYTES
#   segment NAME FILE END_LSN      END_LSN = end of the last record that ends in the segment (MAXALIGNed)
#   xact NAME KIND LSN END_LSN UNIX_US XID   KIND = COMMIT, ABORT, COMMIT_PREPARED, ABORT_PREPARED;
#                                    XID is the prepared transaction's xid for the _PREPARED kinds
#   restore_point NAME LSN END_LSN RP_NAME
# A record belongs to the segment in which it ends; one that crosses into the next segment belongs to
# neither file alone (the reader cannot verify it), so it is left out.
awk -v segsize="$seg_bytes" -v partial="$next_seg" '
function hex2num(h,    i, c, n) {
    n = 0; h = toupper(h)
    for (i = 1; i <= length(h); i++) { c = index("0123456789ABCDEF", substr(h, i, 1)) - 1; n = n * 16 + c }
    return n
}
function lsn2num(s,    p) { sub(/,$/, "", s); p = index(s, "/"); return hex2num(substr(s, 1, p - 1)) * 4294967296 + hex2num(substr(s, p + 1)) }
function num2lsn(n,    hi) { hi = int(n / 4294967296); return sprintf("%X/%X", hi, n - hi * 4294967296) }
function segof(n) { return int(n / segsize) }
function segname(n,    s) { s = segof(n); return sprintf("00000001%08X%08X", int(s / (4294967296 / segsize)), s % (4294967296 / segsize)) }
# End of a record of tot bytes starting at lsn: step over page headers, then MAXALIGN.
function recend(lsn, tot,    pos, space) {
    pos = lsn
    while (1) {
        space = 8192 - pos % 8192
        if (tot <= space) { pos += tot; break }
        tot -= space; pos += space
        pos += (pos % segsize == 0) ? 40 : 24
    }
    return int((pos + 7) / 8) * 8
}
function days(y, m, d) { if (m <= 2) { y--; m += 12 }; return 365 * y + int(y / 4) - int(y / 100) + int(y / 400) + int((153 * (m - 3) + 2) / 5) + d - 719469 }
function unix_us(date, time,    a, b, sec) {
    split(date, a, "-"); split(time, b, ":"); sec = b[3] + 0
    return (days(a[1] + 0, a[2] + 0, a[3] + 0) * 86400 + b[1] * 3600 + b[2] * 60) * 1000000 + int(sec * 1000000 + 0.5)
}
BEGIN { print "segsize " segsize }
/^@section/ { ispartial = (nsect++ == 1); next }
/^rmgr:/ {
    lsn = 0; tot = 0
    for (i = 1; i <= NF; i++) {
        if ($i == "lsn:") lsn = lsn2num($(i + 1))
        if ($i == "(rec/tot):") { t = $(i + 2); sub(/,$/, "", t); tot = t + 0 }
        if ($i == "desc:") d = i + 1
        if ($i == "tx:") { xid = $(i + 1); sub(/,$/, "", xid) }
    }
    end = recend(lsn, tot)
    if (segof(end - 1) != segof(lsn)) next
    name = segname(lsn)
    file = ispartial ? name ".partial.lz4" : name ".lz4"
    segfile[name] = file; segend[name] = end
    if (!(name in seen)) { seen[name] = 1; order[nseg++] = name }
    kind = $(d)
    if ($2 == "Transaction" && (kind == "COMMIT" || kind == "ABORT" || kind == "COMMIT_PREPARED" || kind == "ABORT_PREPARED")) {
        k = d + 1
        if (kind ~ /_PREPARED$/) { xid = $(k); sub(/:$/, "", xid); k++ }
        tm = $(k + 1); sub(/;$/, "", tm)
        lines[nl++] = sprintf("xact %s %s %s %s %.0f %s", name, kind, num2lsn(lsn), num2lsn(end), unix_us($(k), tm), xid)
    } else if ($2 == "XLOG" && kind == "RESTORE_POINT") {
        lines[nl++] = sprintf("restore_point %s %s %s %s", name, num2lsn(lsn), num2lsn(end), $(d + 1))
    }
}
END {
    for (i = 0; i < nseg; i++) print "segment " order[i] " " segfile[order[i]] " " num2lsn(segend[order[i]])
    for (i = 0; i < nl; i++) print lines[i]
}' "$WORK/dump.txt" >"$OUT/expected.txt"
chmod 644 "$OUT/expected.txt"
du -ab "$OUT"
