#!/usr/bin/env bash
# tdist-kafka integration tests against the tansu broker (a Kafka-protocol broker from crates.io).
# Builds tansu 0.6.0 once into $HOME/.cache/tdist/tansu (~10 min on 2 cores), starts it on a free
# 127.0.0.1 port with in-memory storage, runs `cargo test -p tdist-kafka` against it, stops it.
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${HOME}/.cache/tdist"
TANSU_ROOT="${CACHE}/tansu"
TANSU="${TANSU_ROOT}/bin/tansu"

step "tansu 0.6.0 (cached in ${TANSU_ROOT})"
if [ ! -x "${TANSU}" ]; then
    mkdir -p "${TANSU_ROOT}"
    nice -n 19 cargo install tansu@0.6.0 --locked --features dynostore --root "${TANSU_ROOT}"
fi
"${TANSU}" --version || true

step "free port on 127.0.0.1"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
echo "port ${PORT}"

# tansu reads a .env from its working directory: start it from an empty one.
RUN_DIR="$(mktemp -d)"
LOG="${RUN_DIR}/tansu.log"
PID=""
cleanup() {
    if [ -n "${PID}" ] && kill -0 "${PID}" 2>/dev/null; then
        kill "${PID}" 2>/dev/null || true
        wait "${PID}" 2>/dev/null || true
    fi
    rm -rf "${RUN_DIR}"
}
trap cleanup EXIT

step "start tansu"
(
    cd "${RUN_DIR}"
    exec env -u OTEL_EXPORTER_OTLP_ENDPOINT "${TANSU}" \
        --listener-url "tcp://127.0.0.1:${PORT}" \
        --advertised-listener-url "tcp://127.0.0.1:${PORT}" \
        --storage-engine memory://tansu/
) >"${LOG}" 2>&1 &
PID=$!

# tansu exits 0 even when the port is taken: probe the port and check the process is ours.
for _ in $(seq 1 100); do
    if ! kill -0 "${PID}" 2>/dev/null; then
        echo "tansu exited early:"; cat "${LOG}"; exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    echo "tansu is not listening on ${PORT}:"; cat "${LOG}"; exit 1
fi
echo "tansu pid ${PID} listening on 127.0.0.1:${PORT}"

step "cargo test -p tdist-kafka against tansu"
cd "${ROOT}"
TDIST_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${PORT}" cargo test -p tdist-kafka --tests -- --test-threads 2

# The Python peer test too, when .ci/kafka.sh has set up its venv.
PY="${CACHE}/py-kafka/bin/python"
if [ -x "${PY}" ] && "${PY}" -c 'import confluent_kafka' 2>/dev/null; then
    step "python confluent-kafka peer against tansu"
    TDIST_KAFKA_PYTHON="${PY}" TDIST_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:${PORT}" \
        cargo test -p tdist-kafka --test python_peer -- --ignored
else
    echo "(no ${PY}: run .ci/kafka.sh first to also test the Python peer against tansu)"
fi

if ! kill -0 "${PID}" 2>/dev/null; then
    echo "tansu died during the tests:"; cat "${LOG}"; exit 1
fi
step "tansu tests passed"
