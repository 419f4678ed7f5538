# bench_common.sh - what the benchmark programs share; sourced after they define say() and die().

# install_packages PKG...: install the Debian packages that are missing (idempotent, no stdin).
install_packages() {
    local missing=() p st
    for p in "$@"; do
        st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        [[ "$st" == "install ok installed" ]] || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 </dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 </dev/null \
        || die "apt-get install failed for: ${missing[*]}"
}

# Long steps run in the background and are waited for, so that a signal is acted on at once (bash
# defers traps while a foreground child runs); `trap on_signal INT TERM` passes the signal on to
# that child.
CHILD=""
run_child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}
on_signal() {
    [[ -z "$CHILD" ]] || kill -TERM "$CHILD" 2>/dev/null || true
    [[ -z "$CHILD" ]] || wait "$CHILD" 2>/dev/null || true
    exit 130
}

# The peers below need, from the sourcing script: TMP (its work directory), ROOT, PY, SSHD, KEEP
# and as_pg(); each sets globals the script then uses, and stop_peers stops what they started.
RGW_DIR=""
SSHD_PID=""

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_rgw BUCKET...: a throwaway Ceph RADOS Gateway (tests/integration/ceph/start_rgw.sh) in
# $TMP/rgw with the buckets made (path style, over HTTPS with its CA, with the project's own SigV4
# client). Sets RGW_DIR, S3_ENDPOINT_HTTPS, S3_ACCESS_KEY, S3_SECRET_KEY, S3_PORT, CA (a copy of the
# CA postgres can read) and RGW_PIDS; the secret key and s3.env go to $TMP/secrets (postgres, 0600).
start_rgw() {
    say "starting Ceph RADOS Gateway (tests/integration/ceph/start_rgw.sh)"
    RGW_DIR="$TMP/rgw"
    run_child "$ROOT/tests/integration/ceph/start_rgw.sh" "$RGW_DIR" >"$TMP/rgw-start.out" 2>&1 \
        || { tail -60 "$TMP/rgw-start.out" >&2; die "the RADOS Gateway did not start"; }
    S3_ENDPOINT_HTTPS="" S3_CA_FILE="" S3_ACCESS_KEY="" S3_SECRET_KEY="" S3_START_SECONDS=""
    # shellcheck disable=SC1091
    . "$RGW_DIR/s3.env"
    [[ -n "$S3_ENDPOINT_HTTPS" && -n "$S3_ACCESS_KEY" && -n "$S3_SECRET_KEY" ]] \
        || die "start_rgw.sh wrote no S3 endpoint or credentials in $RGW_DIR/s3.env"
    S3_PORT="${S3_ENDPOINT_HTTPS##*:}"
    say "RGW up in ${S3_START_SECONDS} s: $S3_ENDPOINT_HTTPS"
    install -d -o postgres -g postgres -m 700 "$TMP/secrets"
    install -m 644 "$S3_CA_FILE" "$TMP/ca.crt"
    CA="$TMP/ca.crt"
    printf '%s' "$S3_SECRET_KEY" >"$TMP/secrets/s3-secret"
    install -m 600 -o postgres -g postgres "$RGW_DIR/s3.env" "$TMP/secrets/s3.env"
    chown postgres:postgres "$TMP/secrets/s3-secret"
    chmod 600 "$TMP/secrets/s3-secret"
    RGW_PIDS="$(cat "$RGW_DIR"/run/*.pid 2>/dev/null | tr -s '\n' ',' | sed 's/,$//')"
    [[ -n "$RGW_PIDS" ]] || die "no pid files in $RGW_DIR/run"
    install -m 644 "$ROOT/tests/integration/s3_server.py" "$TMP/s3_server.py"
    "$PY" - "$TMP" "$S3_ENDPOINT_HTTPS" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$CA" "$@" <<'EOF' \
        || die "could not create the buckets"
import sys
sys.path.insert(0, sys.argv[1])
from s3_server import S3Client
c = S3Client(sys.argv[2], sys.argv[3], sys.argv[4], "default", sys.argv[5])
for b in sys.argv[6:]:
    c.create_bucket(b)
EOF
}

# start_sshd TAG: an OpenSSH server on a free loopback port that lets postgres in with a fresh key
# ($TMP/sshd: host key, id_ed25519 owned by postgres, known_hosts), probed with one login. Sets
# SSHDIR, SSH_PORT and SSHD_PID.
start_sshd() {
    local tag="$1" i
    say "starting sshd on loopback"
    SSHDIR="$TMP/sshd"
    install -d -m 755 "$SSHDIR"
    ssh-keygen -q -t ed25519 -N "" -C "$tag-host" -f "$SSHDIR/host_ed25519"
    ssh-keygen -q -t ed25519 -N "" -C "postgres@$tag" -f "$SSHDIR/id_ed25519"
    chown postgres:postgres "$SSHDIR/id_ed25519" "$SSHDIR/id_ed25519.pub"
    install -m 644 "$SSHDIR/id_ed25519.pub" "$SSHDIR/authorized_keys"
    SSH_PORT="$(free_port)"
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1-2 "$SSHDIR/host_ed25519.pub")" >"$SSHDIR/known_hosts"
    chmod 644 "$SSHDIR/known_hosts"
    cat >"$SSHDIR/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHDIR/host_ed25519
PidFile $SSHDIR/sshd.pid
UsePAM yes
StrictModes no
AuthorizedKeysFile $SSHDIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers postgres
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel ERROR
EOF
    install -d -m 755 /run/sshd
    "$SSHD" -D -e -f "$SSHDIR/sshd_config" >"$SSHDIR/sshd.log" 2>&1 &
    SSHD_PID=$!
    for ((i = 0; i < 150; i++)); do
        kill -0 "$SSHD_PID" 2>/dev/null || { cat "$SSHDIR/sshd.log" >&2; die "sshd exited"; }
        (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null && break
        sleep 0.1
    done
    ((i < 150)) || die "sshd does not listen on 127.0.0.1:$SSH_PORT"
    as_pg ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$SSHDIR/known_hosts" \
        -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -i "$SSHDIR/id_ed25519" -p "$SSH_PORT" \
        -l postgres 127.0.0.1 true >/dev/null 2>"$SSHDIR/probe.err" \
        || { cat "$SSHDIR/probe.err" "$SSHDIR/sshd.log" >&2; die "ssh to postgres@127.0.0.1:$SSH_PORT failed"; }
}

# stop_peers: stop the sshd and the RADOS Gateway started above (the gateway's data kept with KEEP=1).
stop_peers() {
    if [[ -n "$SSHD_PID" ]] && kill -0 "$SSHD_PID" 2>/dev/null; then
        kill -TERM "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
    fi
    if [[ -n "$RGW_DIR" ]]; then
        if ((KEEP)); then
            "$ROOT/tests/integration/ceph/stop_rgw.sh" --keep "$RGW_DIR" >/dev/null 2>&1 || true
        else
            "$ROOT/tests/integration/ceph/stop_rgw.sh" "$RGW_DIR" >/dev/null 2>&1 || true
        fi
    fi
}

# bench_tmp NAME: a world-traversable temporary directory in TMP, RUNNING (the data directories
# of servers to stop), as_pg, and an EXIT trap that stops those servers (-m immediate) and
# removes TMP unless KEEP is 1. Needs PGBIN.
bench_tmp() {
    TMP="$(mktemp -d "/tmp/$1.XXXXXX")"
    chmod 755 "$TMP"
    RUNNING=()
    trap bench_tmp_cleanup EXIT
}

as_pg() { runuser -u postgres -- "$@"; }

bench_tmp_cleanup() {
    local rc=$? d
    for d in "${RUNNING[@]}"; do
        [[ -n "$d" && -f "$d/postmaster.pid" ]] || continue
        as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    if ((${KEEP:-0})); then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
