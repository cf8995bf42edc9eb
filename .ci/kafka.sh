#!/usr/bin/env bash
# tdist-kafka compatibility with a peer in another language: Python confluent-kafka.
# Python produces untraced messages (some begin with tdist's frame magic but are no frames)
# that our traced consumer must deliver byte for byte, and consumes our traced messages,
# checking the `b3` header a Brave consumer expects. Runs against librdkafka's in-process mock
# cluster, or against the broker in TDIST_KAFKA_BOOTSTRAP_SERVERS when set.
# Needs: python3 with venv, network access to PyPI (once; cached in $HOME/.cache/tdist).
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOME}/.cache/tdist/py-kafka"

step "python venv with confluent-kafka (${VENV})"
if [ ! -x "${VENV}/bin/python" ]; then
    mkdir -p "$(dirname "${VENV}")"
    python3 -m venv "${VENV}"
fi
if ! "${VENV}/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check confluent-kafka
fi
"${VENV}/bin/python" -c 'import confluent_kafka; print("confluent-kafka", confluent_kafka.version()[0], "librdkafka", confluent_kafka.libversion()[0])'

step "cargo test -p tdist-kafka --test python_peer"
cd "${ROOT}"
TDIST_KAFKA_PYTHON="${VENV}/bin/python" cargo test -p tdist-kafka --test python_peer -- --ignored
step "python peer tests passed"
