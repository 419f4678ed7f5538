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
