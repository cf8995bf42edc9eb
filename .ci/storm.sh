#!/usr/bin/env bash
# tdist-storm against third-party multilang libraries: our ShellBolt/ShellSpout-side harness
# drives a PyPI pystorm bolt and spout and an npm node-storm bolt and spout (tdist-storm/tests/peers/),
# and our traced Rust bolt joins the trace field those bolts forward.
# Needs: python3 with venv, node + npm, network access to PyPI and npm (once; cached in
# $HOME/.cache/tdist).
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${HOME}/.cache/tdist"
VENV="${CACHE}/py-storm"
NODE_DIR="${CACHE}/node-storm"

step "python venv with pystorm 3.1.4 (${VENV})"
if [ ! -x "${VENV}/bin/python" ]; then
    mkdir -p "${CACHE}"
    python3 -m venv "${VENV}"
fi
if ! "${VENV}/bin/python" -c 'import pystorm, sys; sys.exit(pystorm.__version__ != "3.1.4")' 2>/dev/null; then
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check 'pystorm==3.1.4'
fi
"${VENV}/bin/python" -c 'import pystorm; print("pystorm", pystorm.__version__)'

step "node-storm@0.0.1 (${NODE_DIR})"
command -v node >/dev/null || { echo "node is required" >&2; exit 1; }
mkdir -p "${NODE_DIR}"
if [ ! -f "${NODE_DIR}/node_modules/node-storm/package.json" ]; then
    [ -f "${NODE_DIR}/package.json" ] || echo '{"private": true}' > "${NODE_DIR}/package.json"
    (cd "${NODE_DIR}" && npm install --no-audit --no-fund --silent 'node-storm@0.0.1')
fi
node -e 'console.log("node-storm", require(process.argv[1] + "/node_modules/node-storm/package.json").version)' "${NODE_DIR}"

step "cargo test -p tdist-storm --test peers"
cd "${ROOT}"
TDIST_STORM_PEERS=1 \
TDIST_STORM_PYTHON="${VENV}/bin/python" \
TDIST_STORM_NODE_PATH="${NODE_DIR}/node_modules" \
    cargo test -p tdist-storm --test peers -- --nocapture
step "storm peer tests passed"
