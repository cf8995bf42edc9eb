#!/usr/bin/env bash
# The comment pipeline demo end to end: first with librdkafka's mock cluster (the README's first
# command), then against the tansu broker with spans also published to its `zipkin` topic, and
# the pipeline tests against tansu. tansu 0.6.0 is built once into $HOME/.cache/tdist/tansu
# (shared with .ci/tansu.sh; ~10 min on 2 cores).
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${HOME}/.cache/tdist"
TANSU_ROOT="${CACHE}/tansu"
TANSU="${TANSU_ROOT}/bin/tansu"
RUN_DIR="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "${PID}" ] && kill -0 "${PID}" 2>/dev/null; then
        kill "${PID}" 2>/dev/null || true
        wait "${PID}" 2>/dev/null || true
    fi
    rm -rf "${RUN_DIR}"
}
trap cleanup EXIT

check_output() {
    local out="$1"
    for section in "Top contributors" "Latency per operation" "Repeated calls" "comments posted"; do
        if ! grep -q "${section}" "${out}"; then
            echo "missing '${section}' in the demo's output:"; cat "${out}"; exit 1
        fi
    done
    for service in comments-api moderation spam-filter spam-check notifier search-indexer comment-store statistics; do
        if ! grep -q "${service}" "${out}"; then
            echo "service ${service} missing from the demo's output:"; cat "${out}"; exit 1
        fi
    done
}

cd "${ROOT}"
step "cargo run --example comment_pipeline (mock Kafka cluster)"
timeout 600 cargo run --example comment_pipeline -- --out "${RUN_DIR}/mock.jsonl" | tee "${RUN_DIR}/mock.txt"
check_output "${RUN_DIR}/mock.txt"

step "tansu 0.6.0 (cached in ${TANSU_ROOT})"
if [ ! -x "${TANSU}" ]; then
    mkdir -p "${TANSU_ROOT}"
    nice -n 19 cargo install tansu@0.6.0 --locked --features dynostore --root "${TANSU_ROOT}"
fi

step "start tansu on a free 127.0.0.1 port"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
(
    cd "${RUN_DIR}" # tansu reads a .env from its working directory
    exec env -u OTEL_EXPORTER_OTLP_ENDPOINT "${TANSU}" \
        --listener-url "tcp://127.0.0.1:${PORT}" \
        --advertised-listener-url "tcp://127.0.0.1:${PORT}" \
        --storage-engine memory://tansu/
) >"${RUN_DIR}/tansu.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
    if ! kill -0 "${PID}" 2>/dev/null; then
        echo "tansu exited early:"; cat "${RUN_DIR}/tansu.log"; exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
        break
    fi
    sleep 0.1
done
echo "tansu pid ${PID} on 127.0.0.1:${PORT}"

step "comment_pipeline against tansu, spans also to its zipkin topic"
TDIST_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${PORT}" TDIST_TRANSPORT=kafka \
    timeout 600 cargo run --example comment_pipeline -- --out "${RUN_DIR}/tansu.jsonl" | tee "${RUN_DIR}/tansu.txt"
check_output "${RUN_DIR}/tansu.txt"
if grep -q "(kafka: mock cluster)" "${RUN_DIR}/tansu.txt"; then
    echo "the demo used the mock cluster instead of tansu"; exit 1
fi

step "cargo test -p tdist-examples --test pipeline against tansu"
TDIST_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${PORT}" timeout 900 cargo test -p tdist-examples --test pipeline

step "comment pipeline checks passed"
