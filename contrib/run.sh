#!/usr/bin/env bash
# run.sh - the one entry point, as root on Debian 12, from any clone, without standard input:
#
#     bash contrib/run.sh demo    install what is needed, build, run contrib/demo.sh (archive + PITR)
#     bash contrib/run.sh test    install, build Release -Werror, unit + integration tests, then the same
#                                 again built with ASan+UBSan (every finding is fatal), then every
#                                 fuzz target for a few seconds
#     bash contrib/run.sh fuzz [SECONDS]
#                                 build the libFuzzer targets of tests/fuzz (clang, -DWV_FUZZ=ON, in
#                                 build-fuzz/) and run each for SECONDS (default 60), one at a time,
#                                 on a copy of its corpus tests/fuzz/corpus/<name>/ with its
#                                 dictionary tests/fuzz/<name>.dict; prints executions, exec/s,
#                                 coverage, corpus size and findings per target; exits non-zero on
#                                 any crash, hang, leak, sanitizer report or broken invariant. The
#                                 work directory (grown corpora, crash inputs) is kept and named at
#                                 the end: the committed corpus grows only when you merge into it.
#     bash contrib/run.sh package  build the Debian package with CPack (Release, prefix /usr, in
#                                 build-package/) and print the path of the .deb
#     bash contrib/run.sh coverage  build with gcov (-DWV_COVERAGE=ON, build-coverage/), run the unit
#                                 tests and the integration suite against those binaries, then print
#                                 line and branch coverage of common/ and of each program folder and
#                                 write an HTML report to build-coverage/coverage/index.html
#                                 (WALVAULT_PYTEST_ARGS as for test, e.g. "-n 2 --dist loadgroup")
#
# test also installs PostgreSQL 16, 17 and 18 (contrib/pgversions.sh, cached in
# /var/cache/walvault/pg/<version>/ and reused by the next run) for tests/integration/test_pg_versions.py;
# the rest of the suite runs on Debian's PostgreSQL 15.
#
# Build directories live in the clone (build/, build-asan/, build-fuzz/); the binaries are installed
# into a world-readable temporary directory because PostgreSQL runs them as the postgres user and the
# clone may sit under /root. Exit status: 0 only when every step passed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"

# Every Debian package any step needs. Append here, or in a contrib/packages-NAME.txt (read below).
PACKAGES=(
    build-essential cmake pkg-config clang-format
    libpq-dev liblz4-dev lz4 libssl-dev libuv1-dev libinih-dev libcurl4-openssl-dev libcmocka-dev
    postgresql-15 postgresql-client-15 postgresql-contrib
    python3 python3-pytest python3-pytest-timeout python3-psycopg2
    man-db groff-base
    tzdata util-linux python3-pytest-xdist python3-lz4 openssh-server openssh-client
    faketime strace systemd dpkg-dev file
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
    echo "usage: bash contrib/run.sh demo|test|package|coverage|fuzz [SECONDS]" >&2
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

# --- coverage mode -------------------------------------------------------------------------------
# The programs run as root (unit tests, basebackup), as postgres (archive_command and
# restore_command, started by the servers) and, for the ssh tests, as postgres again under sshd,
# which does not pass our environment on. Every process writes its counters under GCOV_PREFIX, a
# world-writable mirror of the build tree whose .gcda files exist, empty and mode 0666, before the
# first program runs (libgcov merges into an existing file, whoever owns it, and creates nothing);
# walvault-remote is installed behind a wrapper that sets GCOV_PREFIX itself. The .gcno files are
# copied beside the counters so that gcovr reads the mirror as it would read the build tree.

# coverage_prepare BUILD_DIR GCOV_DIR: forget earlier counters, build the writable mirror.
coverage_prepare() {
    local dir="$1" gdir="$2" gcno
    find "$dir" -name '*.gcda' -delete
    while IFS= read -r -d '' gcno; do
        (umask 000 && mkdir -p "$gdir$(dirname "$gcno")") || return 1
        cp "$gcno" "$gdir$gcno" || return 1
        : >"$gdir${gcno%.gcno}.gcda" && chmod 666 "$gdir${gcno%.gcno}.gcda" || return 1
    done < <(find "$(cd "$dir" && pwd)" -name '*.gcno' -print0)
    chmod 755 "$gdir"
}

# coverage_wrap_remote BIN_DIR GCOV_DIR: walvault-remote sets GCOV_PREFIX itself (sshd starts it
# with an environment of its own); argv[0] is kept, so its messages do not change.
coverage_wrap_remote() {
    local bin="$1" gdir="$2"
    [[ -x "$bin/walvault-remote" ]] || return 0
    mv "$bin/walvault-remote" "$bin/walvault-remote.real" || return 1
    printf '#!/bin/bash
export GCOV_PREFIX=%q GCOV_PREFIX_STRIP=0
exec -a "$0" %q "$@"
' \
        "$gdir" "$bin/walvault-remote.real" >"$bin/walvault-remote" || return 1
    chmod 755 "$bin/walvault-remote"
}

# coverage_report BUILD_DIR GCOV_DIR: gcovr over the mirror; a table per folder, HTML beside it.
coverage_report() {
    local dir="$1" gdir="$2" out="$1/coverage" root_re f filters=()
    rm -rf "$out" && mkdir -p "$out" || return 1
    find "$gdir" -name '*.gcda' -size 0 -delete   # objects no program ran
    root_re="$("$PYTHON" -c 'import re, sys; print(re.escape(sys.argv[1]))' "$ROOT")"
    for f in common archive_cmd restore_cmd basebackup remote_cmd; do
        filters+=(--filter "$root_re/$f/")
    done
    # gcov writes its .gcov files into the working directory: keep them out of the clone.
    (cd "$out" && gcovr --root "$ROOT" "${filters[@]}" -j 2 --json "$out/coverage.json" \
        "$gdir" "$dir" </dev/null) || return 1
    gcovr --root "$ROOT" --add-tracefile "$out/coverage.json" --html-details "$out/index.html" \
        --html-title "walvault coverage" --json-summary "$out/summary.json" --print-summary \
        </dev/null || return 1
    "$PYTHON" - "$out/summary.json" <<'PY'
import json, sys
files = json.load(open(sys.argv[1]))["files"]
groups = {}
def add(name, f):
    g = groups.setdefault(name, [0, 0, 0, 0])
    g[0] += f["line_covered"]; g[1] += f["line_total"]
    g[2] += f["branch_covered"]; g[3] += f["branch_total"]
for f in files:
    parts = f["filename"].split("/")
    add("total", f)
    add(parts[0] + "/", f)
    if parts[0] == "common" and len(parts) > 2:
        add("common/" + parts[1] + "/", f)
def pct(a, b):
    return "%5.1f%%" % (100.0 * a / b) if b else "    -"
order = ["common/"] + sorted(k for k in groups if k.startswith("common/") and k != "common/") \
    + sorted(k for k in groups if not k.startswith("common") and k != "total") + ["total"]
print("%-20s %-22s %-22s" % ("folder", "lines", "branches"))
for k in order:
    lc, lt, bc, bt = groups[k]
    print("%-20s %6s %7d/%-7d %6s %7d/%-7d" % (k, pct(lc, lt), lc, lt, pct(bc, bt), bc, bt))
PY
    echo "HTML report: $out/index.html"
}

# --- fuzzing (tests/fuzz; tests/README.md, "Fuzzing") ---------------------------------------------

# fuzz_build: the library and every tests/fuzz/fuzz_*.c target, with clang, in build-fuzz/.
fuzz_build() {
    build "$ROOT/build-fuzz" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DWV_FUZZ=ON -DWV_TESTS=OFF -DWV_WERROR=ON
}

# fuzz_run SECONDS WORKDIR: run every target for SECONDS, one after the other, each on a copy of
# its corpus in WORKDIR/corpus/<name> (findings in WORKDIR/findings/<name>, logs in WORKDIR/logs).
# Prints one line per target; returns 1 if any target found something.
fuzz_run() {
    local secs="$1" work="$2" src t bin log rc found=0 leaks=0 dict
    local execs eps cov corp files bytes findings
    lsan_works && leaks=1
    mkdir -p "$work/corpus" "$work/findings" "$work/logs"
    printf '%-12s %12s %9s %6s %14s  %s\n' target executions exec/s cov corpus findings
    for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
        t="$(basename "$src" .c)"
        t="${t#fuzz_}"
        bin="$ROOT/build-fuzz/fuzz_$t"
        log="$work/logs/$t.log"
        rm -rf "$work/corpus/$t" "$work/findings/$t"
        mkdir -p "$work/corpus/$t" "$work/findings/$t"
        [[ -d "$ROOT/tests/fuzz/corpus/$t" ]] && cp -a "$ROOT/tests/fuzz/corpus/$t/." "$work/corpus/$t/"
        dict=()
        [[ -f "$ROOT/tests/fuzz/$t.dict" ]] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
        if [[ ! -x "$bin" ]]; then
            printf '%-12s not built\n' "$t"
            found=1
            continue
        fi
        # -timeout: an input taking 20 s is a hang; -rss_limit_mb: a bomb is an out-of-memory finding.
        ASAN_OPTIONS="detect_leaks=$leaks:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
            "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
            -detect_leaks="$leaks" -artifact_prefix="$work/findings/$t/" "${dict[@]}" \
            "$work/corpus/$t" >"$log" 2>&1 </dev/null
        rc=$?
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
        eps="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
        cov="$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
        files="$(find "$work/corpus/$t" -type f | wc -l)"
        bytes="$(find "$work/corpus/$t" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
        corp="$files/${bytes}b"
        findings="$(find "$work/findings/$t" -type f | wc -l)"
        if [[ $rc != 0 || $findings != 0 ]]; then
            found=1
            printf '%-12s %12s %9s %6s %14s  %s (exit %s; log %s)\n' "$t" "${execs:-?}" \
                "${eps:-?}" "${cov:-?}" "$corp" "$findings" "$rc" "$log"
            grep -a -m3 -E 'ERROR: |runtime error|invariant broken' "$log" | sed 's/^/    /'
        else
            printf '%-12s %12s %9s %6s %14s  %s\n' "$t" "$execs" "$eps" "${cov:-?}" "$corp" 0
        fi
    done
    return $found
}

# fuzz_step SECONDS: test mode's step: build, then every target briefly (kept building and clean).
fuzz_step() {
    local work rc
    say "fuzz targets, $1 s each (build-fuzz/)"
    if ! fuzz_build; then
        record "fuzz targets" 1
        return
    fi
    work="$(mktemp -d /tmp/walvault-fuzz.XXXXXX)"
    fuzz_run "$1" "$work"
    rc=$?
    ((rc)) && echo "fuzz findings kept in $work" || rm -rf "$work"
    record "fuzz targets ($1 s each)" $rc
}

# --- the Debian package --------------------------------------------------------------------------
# package_build: Release, prefix /usr, cpack -G DEB in build-package/; prints the .deb's path.
package_build() {
    local dir="$ROOT/build-package" deb
    rm -f "$dir"/walvault_*.deb
    build "$dir" -DCMAKE_BUILD_TYPE=Release -DWV_WERROR=ON -DWV_TESTS=OFF \
        -DCMAKE_INSTALL_PREFIX=/usr >&2 || return 1
    (cd "$dir" && cpack -G DEB </dev/null) >&2 || return 1
    deb="$(ls "$dir"/walvault_*.deb 2>/dev/null | head -n 1)"
    [[ -f "$deb" ]] || { echo "run.sh: cpack made no walvault_*.deb in $dir" >&2; return 1; }
    echo "$deb"
}

# package_step: the package built, installed with dpkg -i (into /usr: the other suites use their
# own installations), tests/integration/test_package.py run against it, then dpkg -r walvault.
package_step() {
    local deb rc
    say "Debian package: build, dpkg -i, test_package.py, dpkg -r"
    if dpkg-query -W -f='${Status}' walvault 2>/dev/null | grep -q "install ok installed"; then
        echo "run.sh: a walvault package is already installed; not replacing it" >&2
        return 1
    fi
    deb="$(package_build)" || return 1
    echo "package: $deb"
    dpkg-deb -I "$deb" | sed -n '/Package:/,$p'
    dpkg -i "$deb" </dev/null || { dpkg -r walvault </dev/null; return 1; }
    (cd "$ROOT/tests/integration" && WALVAULT_PACKAGE_INSTALLED=1 WALVAULT_BIN=/usr/bin \
        "$PYTHON" -m pytest -p no:cacheprovider -ra test_package.py) </dev/null
    rc=$?
    dpkg -r walvault </dev/null || rc=1
    return $rc
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

    # The servers of the other major versions; each test of a version that is missing fails (CI).
    say "PostgreSQL 16, 17, 18 (contrib/pgversions.sh)"
    if PGV="$(bash "$ROOT/contrib/pgversions.sh" </dev/null)"; then
        record "PostgreSQL 16-18 servers" 0
    else
        record "PostgreSQL 16-18 servers" 1
    fi
    while read -r major dir; do
        [[ -n "$major" ]] || continue
        export "WALVAULT_PG${major}_BINDIR=$dir"
        echo "WALVAULT_PG${major}_BINDIR=$dir"
    done <<<"${PGV:-}"

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
    package_step
    record "Debian package (dpkg -i, test_package.py)" $?

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
    fuzz_step 4
    echo "total time: $((SECONDS - START)) s"
    summary
    exit $FAILED
    ;;
package)
    say "packages"
    install_packages || die "packages missing"
    say "Debian package (build-package/)"
    DEB="$(package_build)" || die "package build failed"
    echo "$DEB"
    exit 0
    ;;
coverage)
    START=$SECONDS
    say "packages"
    PACKAGES+=(gcovr)   # only this mode needs it
    install_packages
    record "packages" $?

    CDIR="$ROOT/build-coverage"
    say "build Debug --coverage -O0 (build-coverage/)"
    if ! build "$CDIR" -DCMAKE_BUILD_TYPE=Debug -DWV_COVERAGE=ON -DWV_WERROR=ON -DWV_TESTS=ON; then
        record "build coverage" 1
        summary
        exit 1
    fi
    record "build coverage" 0
    GCOVDIR="$(mktemp -d /tmp/walvault-gcov.XXXXXX)" || die "mktemp failed"
    INSTALL_DIRS+=("$GCOVDIR")
    coverage_prepare "$CDIR" "$GCOVDIR" || die "could not prepare the counters in $GCOVDIR"
    export GCOV_PREFIX="$GCOVDIR" GCOV_PREFIX_STRIP=0
    if BIN="$(install_bin "$CDIR")" && coverage_wrap_remote "$BIN" "$GCOVDIR"; then
        run_suites "coverage" "$CDIR" "$BIN"
    else
        record "install coverage" 1
    fi
    unset GCOV_PREFIX GCOV_PREFIX_STRIP

    say "coverage report (gcovr)"
    coverage_report "$CDIR" "$GCOVDIR"
    record "coverage report" $?
    echo "total time: $((SECONDS - START)) s"
    summary
    exit $FAILED
    ;;
fuzz)
    SECS="${2:-60}"
    [[ "$SECS" =~ ^[0-9]+$ && "$SECS" -gt 0 ]] || usage
    say "packages"
    install_packages || die "packages missing"
    say "build (build-fuzz/, clang, -DWV_FUZZ=ON)"
    fuzz_build || die "fuzz build failed"
    WORK="$(mktemp -d /tmp/walvault-fuzz.XXXXXX)"
    say "fuzz: every target for $SECS s, one at a time (work directory $WORK)"
    fuzz_run "$SECS" "$WORK"
    rc=$?
    echo
    echo "grown corpora in $WORK/corpus/<name>; to keep new inputs, merge them (minimised):"
    echo "    build-fuzz/fuzz_NAME -merge=1 tests/fuzz/corpus/NAME $WORK/corpus/NAME"
    if ((rc)); then echo "FUZZ: FINDINGS (inputs in $WORK/findings)"; else echo "FUZZ: NO FINDINGS"; fi
    exit $rc
    ;;
*)
    usage
    ;;
esac
