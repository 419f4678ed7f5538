#!/usr/bin/env bash
# bench_expire.sh - basebackup expire of a repository with 30 backups and 5,000 WAL segments on S3
# (Ceph RADOS Gateway): seconds and requests.
#
#     bash contrib/bench/bench_expire.sh [--backups N] [--segments N] [--keep]
#
# As root on Debian 12, without standard input. It
#   1. installs the Debian packages it lacks, builds walvault (Release) into build-benchexpire/ and
#      installs it into a temporary directory,
#   2. starts Ceph RGW (tests/integration/ceph/start_rgw.sh) and makes a bucket,
#   3. makes the repository, on a local posix repository first: a PostgreSQL 15 cluster with 1 MiB
#      WAL segments whose WAL begins at segment 5,120 (pg_resetwal -l), archiving with wal-push;
#      --backups real walvault backups (the WAL between them switched and archived); then
#      --segments older segments 1..N below them, copies of one real archived segment object under
#      valid names (expire reads names only; the copies pass sync's trailer check),
#   4. copies it to the bucket with `basebackup sync --from 1 --to 2`,
#   5. runs `basebackup expire --repo 2` with window = 1h and the policy's now two hours later
#      (the test seam WALVAULT_TEST_NOW: faketime would break the store's request signatures), so
#      that every backup but the newest and all WAL below the newest's start go,
#   6. prints the seconds and the requests RGW logged during expire (beast's access lines, by
#      method), and what is left in the bucket.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NBACKUPS=30
NSEG=5000
KEEP=0
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

usage() {
    echo "usage: bash contrib/bench/bench_expire.sh [--backups N] [--segments N] [--keep]" >&2
    exit 2
}
num() { [[ "$1" =~ ^[1-9][0-9]*$ ]] || usage; }
while (($#)); do
    case "$1" in
    --backups) [[ $# -ge 2 ]] || usage; num "$2"; NBACKUPS="$2"; shift 2 ;;
    --segments) [[ $# -ge 2 ]] || usage; num "$2"; NSEG="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) usage ;;
    esac
done
((NSEG <= 5100)) || { echo "--segments: at most 5100 (below the cluster's first segment)" >&2; exit 2; }

say() { printf '=== %s: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench_expire.sh: error: %s\n' "$*" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || die "run as root"
exec </dev/null

PACKAGES=(build-essential cmake pkg-config libpq-dev liblz4-dev libssl-dev libuv1-dev libinih-dev
    libcurl4-openssl-dev postgresql-15 postgresql-client-15 python3 util-linux)
mapfile -t S3PKG < <(grep -v '^#' "$ROOT/contrib/packages-s3.txt" | tr -s ' \t' '\n' | grep -v '^$')
PACKAGES+=("${S3PKG[@]}")
# shellcheck source=bench_common.sh
source "$ROOT/contrib/bench/bench_common.sh"
install_packages "${PACKAGES[@]}"

TMP="$(mktemp -d /tmp/bench_expire.XXXXXX)"
chmod 755 "$TMP"
RGW_DIR=""
DATA="$TMP/pg"
cleanup() {
    local rc=$?
    trap - INT TERM
    [[ -f "$DATA/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1
    [[ -n "$RGW_DIR" ]] && "$ROOT/tests/integration/ceph/stop_rgw.sh" "$RGW_DIR" >/dev/null 2>&1
    if ((KEEP)); then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap on_signal INT TERM

# --- 1. build ---------------------------------------------------------------------------------------
BUILD="$ROOT/build-benchexpire"
WV="$TMP/walvault"
say "building walvault (Release) in $BUILD"
run_child bash -c "cmake -S '$ROOT' -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DWV_TESTS=OFF \
    && cmake --build '$BUILD' -j$(nproc) && cmake --install '$BUILD' --prefix '$WV'" \
    >"$TMP/cmake.log" 2>&1 || { tail -40 "$TMP/cmake.log" >&2; die "build failed"; }
chmod -R a+rX "$WV"
BB="$WV/bin/basebackup"

# --- 2. RGW -----------------------------------------------------------------------------------------
say "starting Ceph RADOS Gateway"
RGW_DIR="$TMP/rgw"
run_child "$ROOT/tests/integration/ceph/start_rgw.sh" "$RGW_DIR" >"$TMP/rgw-start.out" 2>&1 \
    || { tail -60 "$TMP/rgw-start.out" >&2; die "the RADOS Gateway did not start"; }
# shellcheck disable=SC1091
. "$RGW_DIR/s3.env"
RGWLOG="$RGW_DIR/log/client.rgw.log"
install -d -o postgres -g postgres -m 700 "$TMP/secrets"
printf '%s' "$S3_SECRET_KEY" >"$TMP/secrets/s3-secret"
chown postgres:postgres "$TMP/secrets/s3-secret"
chmod 600 "$TMP/secrets/s3-secret"
install -m 644 "$ROOT/tests/integration/s3_server.py" "$TMP/s3_server.py"
BUCKET=wv-expire
"$PY" - "$TMP" "$S3_ENDPOINT_HTTP" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$S3_REGION" "$BUCKET" <<'EOF' \
    || die "could not create the bucket"
import sys
sys.path.insert(0, sys.argv[1])
from s3_server import S3Client
S3Client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]).create_bucket(sys.argv[6])
EOF

install -d -o postgres -g postgres -m 700 "$TMP/repo"
CONF="$TMP/walvault.conf"
cat >"$CONF" <<EOF
[global]
process_max = 8

[retention]
window = 1h

[repo1]
type = posix
path = $TMP/repo
EOF
CONF2="$TMP/walvault2.conf"
{
    cat "$CONF"
    cat <<EOF

[repo2]
type = s3
endpoint = $S3_ENDPOINT_HTTP
region = $S3_REGION
bucket = $BUCKET
prefix = pg
uri_style = path
access_key_id = $S3_ACCESS_KEY
secret_access_key_file = $TMP/secrets/s3-secret
EOF
} >"$CONF2"
chown postgres:postgres "$CONF" "$CONF2"

# --- 3. the repository ------------------------------------------------------------------------------
say "a cluster (1 MiB segments, WAL from segment 5120) and $NBACKUPS backups"
install -d -o postgres -g postgres -m 700 "$DATA"
install -o postgres -g postgres -m 644 /dev/null "$TMP/pg.log"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync -E UTF8 --locale=C \
    --wal-segsize=1 >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
as_pg "$PGBIN/pg_resetwal" -l 000000010000000100000400 -D "$DATA" >/dev/null || die "pg_resetwal failed"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >>"$DATA/postgresql.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
archive_mode = on
archive_command = '$WV/bin/wal-push -c $CONF %p'
EOF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$TMP/pg.log" -w start >/dev/null || die "the cluster did not start"
PSQL=(as_pg "$PGBIN/psql" -X -A -t -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "create table t (x int)"
for ((i = 1; i <= NBACKUPS; i++)); do
    "${PSQL[@]}" -c "insert into t select generate_series(1, 1000)"
    as_pg "$BB" -c "$CONF" backup -d "host=127.0.0.1 port=$PORT user=postgres" --checkpoint fast \
        --label "bench $i" >/dev/null || die "backup $i failed"
    sleep 1  # distinct backup ids (whole seconds)
done
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null

say "$NSEG older WAL segments (copies of one real segment object)"
SRC="$(find "$TMP/repo/wal" -name '000000010000000100000[4-9A-F]??' -type f | sort | head -1)"
[[ -n "$SRC" ]] || die "no archived segment to copy"
"$PY" - "$TMP/repo" "$SRC" "$NSEG" <<'EOF' || die "could not make the segments"
import os, shutil, sys
repo, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = os.stat(src)
for segno in range(1, n + 1):
    name = "00000001%08X%08X" % (segno // 4096, segno % 4096)
    d = os.path.join(repo, "wal", name[:16])
    os.makedirs(d, exist_ok=True)
    os.chown(d, st.st_uid, st.st_gid)
    shutil.copy2(src, os.path.join(d, name))
    os.chown(os.path.join(d, name), st.st_uid, st.st_gid)
EOF
NOBJ="$(find "$TMP/repo" -type f | wc -l)"

# --- 4. to the bucket -------------------------------------------------------------------------------
say "copying the repository ($NOBJ objects) to RGW with basebackup sync"
as_pg "$BB" -c "$CONF2" sync --from 1 --to 2 >"$TMP/sync.out" 2>&1 || { tail "$TMP/sync.out" >&2; die "sync failed"; }
count_keys() {
    "$PY" - "$TMP" "$S3_ENDPOINT_HTTP" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$S3_REGION" "$BUCKET" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from s3_server import S3Client
keys = [o["key"] for o in S3Client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]).list_objects(sys.argv[6], "pg/")]
print(len(keys), sum(1 for k in keys if k.startswith("pg/wal/")),
      len({k.split("/")[2] for k in keys if k.startswith("pg/backup/") and k.endswith("/backup.manifest")}))
EOF
}
read -r K_ALL K_WAL K_BK < <(count_keys)
say "bucket: $K_ALL objects, $K_WAL under wal/, $K_BK backups"

# --- 5. expire --------------------------------------------------------------------------------------
sleep 2
LOG_BEFORE="$(stat -c %s "$RGWLOG")"
NOW=$(($(date +%s) + 7200))
say "basebackup expire --repo 2 (window = 1h, now + 2 h)"
T0="$(date +%s.%N)"
as_pg env WALVAULT_TEST_NOW="$NOW" "$BB" -c "$CONF2" expire --repo 2 >"$TMP/expire.out" 2>&1 \
    || { cat "$TMP/expire.out" >&2; die "expire failed"; }
T1="$(date +%s.%N)"
sleep 3  # the gateway's log is written asynchronously
read -r K_ALL2 K_WAL2 K_BK2 < <(count_keys)

# --- 6. figures -------------------------------------------------------------------------------------
echo
echo "expire of an RGW repository: $K_BK backups, $K_WAL WAL objects ($NSEG older segments + the backups' own)"
cat "$TMP/expire.out"
"$PY" - "$ROOT/contrib/bench" "$RGWLOG" "$LOG_BEFORE" "$T0" "$T1" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import rgw_requests
path, off, t0, t1 = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
by = rgw_requests.count(rgw_requests.read(path, off))
n = sum(by.values())
print("seconds: %.2f" % (t1 - t0))
print("requests: %d (%s)" % (n, ", ".join("%s %d" % kv for kv in sorted(by.items()))))
EOF
echo "left in the bucket: $K_ALL2 objects, $K_WAL2 under wal/, $K_BK2 backups"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
