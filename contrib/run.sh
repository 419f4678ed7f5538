#!/usr/bin/env bash
# run.sh - the one entry point, as root on Debian 12, from any clone, without standard input:
#
#     bash contrib/run.sh demo    install what is needed, build, run contrib/demo.sh (archive + PITR)
#     bash contrib/run.sh test    install, build Release -Werror, unit + integration tests, then the same
#                                 again built with ASan+UBSan (every finding is fatal)
#
# Build directories live in the clone (build/, build-asan/); the binaries are installed into a
# world-readable temporary directory because PostgreSQL runs them as the postgres user and the clone
# may sit under /root. Exit status: 0 only when every step passed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"

# Every Debian package any step needs. Append here, or in a contrib/packages-NAME.txt (read below).
PACKAGES=(
    build-essential cmake pkg-config clang-format
    libpq-dev liblz4-dev lz4 libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev libcmocka-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    python3 python3-pytest python3-pytest-timeout python3-psycopg2
    tzdata util-linux python3-pytest-xdist python3-lz4 openssh-server openssh-client
    faketime strace
)

# Each contrib/packages-*.txt (one package a line, # comments) adds the packages of a test peer.
for list in "$ROOT"/contrib/packages-*.txt; do
    [[ -f "$list" ]] || continue
    while read -r line; do
        line="${line%%#*}"
        for p in $line; do PACKAGES+=("$p"); done
    done <"$list"
done

PYTHON=/usr/bin/python3
JOBS="$(nproc 2>/dev/null || echo 2)"

say() { printf '\n=== %s\n' "$*"; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    echo "usage: bash contrib/run.sh demo|test" >&2
    exit 2
}

install_packages() {
    local missing=() p st
    for p in "${PACKAGES[@]}"; do
        st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        [[ "$st" == "install ok installed" ]] || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        echo "all ${#PACKAGES[@]} Debian packages already installed"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "packages missing (${missing[*]}) and not root to install them"
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null || die "apt-get update failed"
    apt-get install -y --no-install-recommends "${missing[@]}" </dev/null \
        || die "apt-get install failed for: ${missing[*]}"
    # Debian creates and starts a default cluster with the server package: the tests start their own
    # servers on free ports, so the stock one is left alone (it listens on 5432 only).
}

# lint: the code matches .clang-format and common/'s includes point down its layers.
lint() {
    local off=() f rc=0
    while IFS= read -r f; do
        clang-format --dry-run -Werror "$ROOT/$f" >/dev/null 2>&1 || off+=("$f")
    done < <(git -C "$ROOT" ls-files '*.c' '*.h')
    if ((${#off[@]})); then
        echo "files that differ from .clang-format (run: clang-format -i FILE): ${off[*]}"
        rc=1
    else
        echo "every C file matches .clang-format"
    fi
    "$PYTHON" "$ROOT/contrib/check_layers.py" || rc=1
    return $rc
}

# build DIR cmake-args... : configure and compile.
build() {
    local dir="$1"; shift
    cmake -S "$ROOT" -B "$dir" "$@" </dev/null && cmake --build "$dir" -j"$JOBS" </dev/null
}

# install_bin BUILD_DIR -> prints DIR/bin of a world-readable installation.
install_bin() {
    local dir="$1" prefix
    prefix="$(mktemp -d /tmp/walvault-bin.XXXXXX)" || return 1
    chmod 755 "$prefix"
    cmake --install "$dir" --prefix "$prefix" >/dev/null </dev/null || return 1
    # The driver conformance check is not installed for users; the tests run it from here.
    [[ -x "$dir/wv-storage-check" ]] && cp "$dir/wv-storage-check" "$prefix/bin/"
    chmod -R a+rX "$prefix"
    INSTALL_DIRS+=("$prefix")
    echo "$prefix/bin"
}

INSTALL_DIRS=()
cleanup() {
    local d
    for d in "${INSTALL_DIRS[@]}"; do rm -rf -- "$d"; done
}
trap cleanup EXIT

RESULTS=()
FAILED=0
record() {   # record NAME STATUS
    if [[ "$2" == 0 ]]; then
        RESULTS+=("PASS  $1")
    else
        RESULTS+=("FAIL  $1 (exit $2)")
        FAILED=1
    fi
}

summary() {
    say "summary"
    local r
    for r in "${RESULTS[@]}"; do echo "  $r"; done
    if ((FAILED)); then echo "RESULT: FAILED"; else echo "RESULT: ALL PASSED"; fi
}

# Does LeakSanitizer work here (it needs ptrace-like access that some containers deny)?
lsan_works() {
    local t rc
    t="$(mktemp -d)"
    printf '#include <stdlib.h>\nint main(void){volatile char *p = malloc(7); p = 0; (void)p; return 0;}\n' \
        >"$t/l.c"
    if ! cc -fsanitize=address -g "$t/l.c" -o "$t/l" 2>/dev/null; then rm -rf "$t"; return 1; fi
    ASAN_OPTIONS=detect_leaks=1:exitcode=23 "$t/l" >"$t/out" 2>&1
    rc=$?
    grep -q "LeakSanitizer: detected memory leaks" "$t/out" && [[ $rc == 23 ]]
    rc=$?
    rm -rf "$t"
    return $rc
}

# run_suites LABEL BUILD_DIR BIN_DIR: unit tests, then the integration suite.
run_suites() {
    local label="$1" dir="$2" bin="$3" rc
    say "$label: unit tests"
    ctest --test-dir "$dir" -L unit --output-on-failure --no-tests=error </dev/null
    record "$label unit tests" $?

    say "$label: integration tests (binaries in $bin)"
    (cd "$ROOT/tests/integration" &&
        WALVAULT_BIN="$bin" "$PYTHON" -m pytest -p no:cacheprovider -ra "${PYTEST_ARGS[@]}" .) </dev/null
    rc=$?
    # Exit status 5 (nothing collected) is a failure too, like every other non-zero status.
    record "$label integration tests" $rc
}

# The integration tests mostly wait on servers (little CPU): run four at a time. Every test starts
# its own servers on free ports in its own directories, so they do not meet; modules that build a
# costly cluster once mark their tests with one xdist_group, kept on one worker (loadgroup).
PYTEST_ARGS=(-n 4 --dist loadgroup --durations=15)
if [[ -n "${WALVAULT_PYTEST_ARGS:-}" ]]; then
    read -r -a PYTEST_ARGS <<<"$WALVAULT_PYTEST_ARGS"
fi

case "$MODE" in
demo)
    say "packages"
    install_packages
    say "build (Release)"
    build "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DWV_WERROR=OFF -DWV_TESTS=OFF || die "build failed"
    BIN="$(install_bin "$ROOT/build")" || die "install failed"
    say "demo (binaries in $BIN)"
    WALVAULT_BIN="$BIN" bash "$ROOT/contrib/demo.sh" </dev/null
    rc=$?
    if [[ $rc == 0 ]]; then echo "DEMO: OK"; else echo "DEMO: FAILED (exit $rc)"; fi
    exit $rc
    ;;
test)
    START=$SECONDS
    say "packages"
    install_packages
    record "packages" $?

    say "lint (clang-format, include layers)"
    lint
    record "lint" $?

    say "build Release -DWV_WERROR=ON (build/)"
    if build "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DWV_WERROR=ON -DWV_TESTS=ON; then
        record "build Release" 0
        if BIN="$(install_bin "$ROOT/build")"; then
            run_suites "Release" "$ROOT/build" "$BIN"
        else
            record "install Release" 1
        fi
    else
        record "build Release" 1
    fi

    say "build Debug -DWV_SANITIZE=ON (build-asan/)"
    SANLOG="$(mktemp -d /tmp/walvault-sanitizer.XXXXXX)"
    chmod 1777 "$SANLOG"
    INSTALL_DIRS+=("$SANLOG")
    if lsan_works; then LEAKS=1; else LEAKS=0; echo "LeakSanitizer does not work here: leaks not checked"; fi
    # Any finding ends the program with status 199: non-zero for wal-push and >= 126 for wal-fetch,
    # so that a sanitizer report can never pass for "not found". Reports also go to files in
    # $SANLOG, which the integration suite checks after every test and run.sh checks at the end.
    export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:exitcode=199:detect_leaks=$LEAKS:log_path=$SANLOG/asan:log_exe_name=1"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=199:log_path=$SANLOG/ubsan:log_exe_name=1"
    export LSAN_OPTIONS="exitcode=199"
    export WALVAULT_SANITIZER_LOG_DIR="$SANLOG"
    if build "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DWV_SANITIZE=ON -DWV_WERROR=ON -DWV_TESTS=ON; then
        record "build ASan+UBSan" 0
        if BIN="$(install_bin "$ROOT/build-asan")"; then
            run_suites "ASan+UBSan" "$ROOT/build-asan" "$BIN"
        else
            record "install ASan+UBSan" 1
        fi
    else
        record "build ASan+UBSan" 1
    fi
    if compgen -G "$SANLOG/*" >/dev/null; then
        say "sanitizer reports"
        for f in "$SANLOG"/*; do echo "--- $f"; head -c 20000 "$f"; done
        record "no sanitizer reports" 1
    else
        record "no sanitizer reports" 0
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS WALVAULT_SANITIZER_LOG_DIR
    echo "total time: $((SECONDS - START)) s"
    summary
    exit $FAILED
    ;;
*)
    usage
    ;;
esac
