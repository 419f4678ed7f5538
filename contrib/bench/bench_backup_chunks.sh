#!/usr/bin/env bash
# bench_backup_chunks.sh - interleaved A/B of basebackup restore: a chunked backup (manifest 3),
# the same database stored one object per file (WALVAULT_TEST_CHUNK_SIZE=0, manifest 2), and cp -a
# of a plain copy; each into a fresh directory and followed by sync, the order rotating per round.
#     bash contrib/bench/bench_backup_chunks.sh BINDIR ROUNDS [setup]        (as root)
# (setup: a pgbench -s 55 cluster in $WORK, default /tmp/wv-bench-chunks, and its two backups;
# BINDIR: an installed walvault, readable by postgres)
set -euo pipefail
BIN=$1; ROUNDS=$2; D=${WORK:-/tmp/wv-bench-chunks}; PGB=/usr/lib/postgresql/15/bin; PORT=55987
as_pg() { runuser -u postgres -- "$@"; }
if [[ "${3:-}" == setup ]]; then
    rm -rf $D; install -d -o postgres -g postgres -m 755 $D $D/repo
    printf '[global]\ncompress = lz4\nprocess_max = 2\n\n[repo1]\ntype = posix\npath = %s/repo\n' $D > $D/wv.conf
    chown postgres $D/wv.conf
    as_pg $PGB/initdb -D $D/pg -A trust -U postgres >/dev/null
    cat >> $D/pg/postgresql.conf <<EOC
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
archive_mode = on
archive_command = '$BIN/wal-push -c $D/wv.conf %p'
max_wal_size = 1GB
EOC
    as_pg $PGB/pg_ctl -D $D/pg -l $D/pg.log -w start >/dev/null
    as_pg $PGB/pgbench -h 127.0.0.1 -p $PORT -U postgres -i -s 55 -q postgres 2>&1 | tail -1
    as_pg psql -h 127.0.0.1 -p $PORT -U postgres -qc checkpoint
    as_pg $BIN/basebackup -c $D/wv.conf backup -d "host=127.0.0.1 port=$PORT user=postgres" --checkpoint fast | tail -1
    WALVAULT_TEST_CHUNK_SIZE=0 as_pg $BIN/basebackup -c $D/wv.conf backup -d "host=127.0.0.1 port=$PORT user=postgres" --checkpoint fast | tail -1
    as_pg $PGB/pg_basebackup -h 127.0.0.1 -p $PORT -U postgres -D $D/plain -Fp -X none -c fast
    as_pg $PGB/pg_ctl -D $D/pg -m fast -w stop >/dev/null
fi
ids=($(ls $D/repo/backup | sort)) # the first two: chunked, then one object per file
V3=${ids[0]}; V2=${ids[1]}
head -1 $D/repo/backup/$V3/backup.manifest; head -1 $D/repo/backup/$V2/backup.manifest
methods=(v3 v2 cp)
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < 3; i++)); do
        m=${methods[$(((i + r) % 3))]}
        rm -rf $D/dst; install -d -o postgres -g postgres -m 700 $D/dst; sync
        case $m in
        v3) cmd="$BIN/basebackup -c $D/wv.conf restore --pgdata $D/dst --backup $V3 --immediate >/dev/null 2>&1 && sync" ;;
        v2) cmd="$BIN/basebackup -c $D/wv.conf restore --pgdata $D/dst --backup $V2 --immediate >/dev/null 2>&1 && sync" ;;
        cp) cmd="cp -a $D/plain/. $D/dst/ && sync" ;;
        esac
        as_pg /usr/bin/time -f "$m %e %U %S" sh -c "$cmd" 2>&1 | tail -1
    done
    uptime
done
