#!/usr/bin/env bash
# Runs every fuzz target (or the ones named as arguments) for a bounded time
# and prints how many inputs each executed.
#
#   fuzz/run.sh                       every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh pair_script
#
# Environment:
#   FUZZ_SECONDS    time per target (default 60)
#   FUZZ_SANITIZER  cargo fuzz --sanitizer (default none: the crate forbids
#                   unsafe code, so AddressSanitizer mostly costs speed)
#   FUZZ_TOOLCHAIN  rustup toolchain with -Z support (default nightly)
#
# Seeds are read from fuzz/corpus/TARGET (kept in git); what libFuzzer adds
# goes to fuzz/work/TARGET, crash inputs to fuzz/artifacts/TARGET. Inputs
# that once crashed a target are kept in fuzz/regressions/TARGET and run
# first. Exit status: 0 if no target crashed, 1 if any did, 2 if the run
# could not start.
#
# fuzz/capture_seeds.py regenerates the seed corpus from real traffic.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

# Largest input per target: enough for every message the target parses, not
# so much that libFuzzer wastes time on bulk.
declare -A max_len=(
    [packet_framing]=4096
    [client_hello]=1024
    [auth_switch]=256
    [backend_greeting]=512
    [config]=2048
    [pair_script]=4096
    [proxy_header]=640
    [admin_session]=4096
    [http_request]=2048
    [tracker]=4096
    [ssl_request]=512
    [ok_rewrite]=2048
    [change_user]=1024
)
all=(packet_framing client_hello auth_switch backend_greeting config pair_script
    proxy_header admin_session http_request tracker ssl_request ok_rewrite change_user)

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
    if [ -z "${max_len[$t]:-}" ]; then
        echo "run.sh: unknown target '$t' (targets: ${all[*]})" >&2
        exit 2
    fi
done

if ! rustup run "$toolchain" cargo --version >/dev/null 2>&1; then
    echo "run.sh: the $toolchain toolchain is needed: rustup toolchain install $toolchain" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz >/dev/null 2>&1 || {
        echo "run.sh: cargo install cargo-fuzz failed" >&2
        exit 2
    }
fi

logs="$(mktemp -d -t myroute-fuzz.XXXXXX)"
trap 'rm -rf "$logs"' EXIT

echo "building fuzz targets (sanitizer: $sanitizer)"
if ! cargo "+$toolchain" fuzz build --sanitizer "$sanitizer" >"$logs/build.log" 2>&1; then
    tail -n 40 "$logs/build.log" >&2
    echo "run.sh: build failed" >&2
    exit 2
fi
# Run the binaries just built (cargo fuzz run would rebuild first, and a
# source tree changing meanwhile would then look like a crash).
host="$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')"
bindir="$here/target/$host/release"
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
    log="$logs/$t.log"
    regressions=(regressions/"$t"/*)
    if [ -e "${regressions[0]}" ]; then
        if ! "$bindir/$t" "${regressions[@]}" >"$log" 2>&1; then
            failed+=("$t")
            summary+=("$(printf '%-18s %12s executions  cov %-6s REGRESSION' "$t" 0 -)")
            echo "---- $t crashes on a known input again:" >&2
            grep -E 'Running:|panicked|^ *(left|right):|assertion' "$log" | head -n 20 >&2
            continue
        fi
    fi
    echo "fuzzing $t for ${seconds}s (max_len ${max_len[$t]})"
    "$bindir/$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        "work/$t" "corpus/$t" >"$log" 2>&1
    status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
    fi
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$(printf '%-18s %12s executions  cov %-6s CRASHED' "$t" "${runs:-?}" "${cov:-?}")")
        echo "---- $t failed (exit $status); last lines:" >&2
        grep -v '^#' "$log" | grep -v '^INFO:' | tail -n 30 >&2
        ls "artifacts/$t" >&2
    else
        summary+=("$(printf '%-18s %12s executions  cov %-6s ok' "$t" "${runs:-?}" "${cov:-?}")")
    fi
done

echo
echo "target             executions in ${seconds}s each"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/ or fuzz/regressions/; reproduce with" \
        "cargo +$toolchain fuzz run -s $sanitizer TARGET INPUT, minimise with" \
        "cargo +$toolchain fuzz tmin -s $sanitizer TARGET INPUT)" >&2
    exit 1
fi
exit 0
