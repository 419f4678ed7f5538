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
