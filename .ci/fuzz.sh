#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads bytes from outside the process: ids, B3, W3C,
# the binary context frame (tdist-core), HTTP headers (tdist-http), Kafka payloads and record
# headers (tdist-kafka), Thrift messages with and without the tracing prefix and the traced
# processor (tdist-thrift), the Storm multilang pipe, tuple contexts and the bolt and spout runtimes
# (tdist-storm), and span files read by the trace report (examples). Each target holds the decoder
# to an oracle (a plain reading of the rule, a model of the peer, or a round trip), not only to
# "does not crash"; see the comment at the top of each target in <crate>/fuzz/fuzz_targets/.
#
# Each target starts from its checked-in seeds (<crate>/fuzz/seeds/<target>) plus what earlier runs
# on this machine found (kept in $HOME/.cache/tdist/fuzz-corpus, or FUZZ_CORPUS, so that each CI run
# goes deeper than the last), and runs FUZZ_SECONDS (default 30). A crash fails the step; the input
# is kept in target/ci-artifacts/fuzz/ and printed in hex.
#
# Needs the nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz from crates.io (built
# once into $HOME/.cache/tdist). Without a nightly toolchain the step says so and is skipped.
# Usage: .ci/fuzz.sh [crate/target ...]   (default: every target)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# step (with each step's duration), step_done, TDIST_CACHE.
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"
CACHE="${TDIST_CACHE}"
FUZZ_ROOT="${CACHE}/cargo-fuzz-0.13.2"
SECONDS_EACH="${FUZZ_SECONDS:-30}"
TARGET_DIR="${ROOT}/target/fuzz"
CORPUS_DIR="${FUZZ_CORPUS:-${CACHE}/fuzz-corpus}"
ARTIFACTS="${ROOT}/target/ci-artifacts/fuzz"

ALL=(
    tdist-core/ids tdist-core/b3 tdist-core/w3c tdist-core/binary
    tdist-http/headers
    tdist-kafka/payload tdist-kafka/headers
    tdist-thrift/server_input tdist-thrift/processor
    tdist-storm/messages tdist-storm/tuple_context tdist-storm/bolt_runtime
    tdist-storm/spout_runtime
    examples/report
)
TARGETS=("${@:-${ALL[@]}}")

step "nightly toolchain"
if ! rustup run nightly rustc --version 2>/dev/null; then
    timeout 180 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || true
    if ! rustup run nightly rustc --version 2>/dev/null; then
        echo "SKIPPED: no nightly toolchain here and none could be installed; fuzzing needs one"
        exit 0
    fi
fi

step "cargo-fuzz 0.13.2 (${FUZZ_ROOT})"
if [ ! -x "${FUZZ_ROOT}/bin/cargo-fuzz" ]; then
    cargo install --quiet --locked --root "${FUZZ_ROOT}" --version 0.13.2 cargo-fuzz
fi
export PATH="${FUZZ_ROOT}/bin:${PATH}"
cargo fuzz --version

mkdir -p "${ARTIFACTS}"
failed=()
for spec in "${TARGETS[@]}"; do
    crate="${spec%%/*}"
    target="${spec#*/}"
    step "fuzz ${crate} ${target} for ${SECONDS_EACH}s"
    corpus="${CORPUS_DIR}/${crate}/${target}"
    found="${ARTIFACTS}/${crate}/${target}"
    mkdir -p "${corpus}" "${found}"
    log="${found}.log"
    # The first corpus directory collects new inputs; the seeds are only read.
    rc=0
    (cd "${ROOT}/${crate}" && cargo +nightly fuzz run --target-dir "${TARGET_DIR}" \
        "${target}" "${corpus}" "fuzz/seeds/${target}" -- \
        -max_total_time="${SECONDS_EACH}" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="${found}/" -print_final_stats=1) >"${log}" 2>&1 || rc=$?
    grep -E '^(#[0-9]+ +(INITED|DONE)|Done|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|ERROR|SUMMARY|^ *(left|right): |^error' "${log}" || true
    if [ "${rc}" -ne 0 ]; then
        tail -40 "${log}"
        for f in "${found}"/*; do
            [ -f "${f}" ] || continue
            echo "failing input ${f}:"
            od -An -tx1 -v "${f}" | head -20
        done
        failed+=("${spec}")
    fi
done

step_done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found failures in: ${failed[*]}" >&2
    exit 1
fi
echo "every fuzz target ran ${SECONDS_EACH}s without a failure"
