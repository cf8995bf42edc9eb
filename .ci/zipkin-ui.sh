#!/usr/bin/env bash
# A picture of one comment-pipeline trace in the real Zipkin UI: starts Zipkin (.ci/zipkin.sh start,
# stopped on exit), sends the demo's spans to it (examples/comment_pipeline with
# OTEL_EXPORTER_ZIPKIN_ENDPOINT), picks the trace of a `post /comments` call from /api/v2/traces,
# and renders $ZIPKIN/zipkin/traces/<id> with headless Chromium:
#   target/ci-artifacts/zipkin-trace.png    the screenshot (checked to exist and be > 20 KB)
#   target/ci-artifacts/zipkin-trace.html   the rendered DOM (checked to name the trace's spans)
#
#   bash .ci/zipkin-ui.sh
#
# Needs java (17+), mvn, python3, curl, cargo, and Debian's `chromium` (installed with apt-get when
# missing). Run state in $HOME/.cache/tdist/run/zipkin-ui (TDIST_PEER_RUN_DIR overrides).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Our own Zipkin and broker state, apart from other scripts' `zipkin.sh start`.
export TDIST_PEER_RUN_DIR="${TDIST_PEER_RUN_DIR:-${HOME}/.cache/tdist/run/zipkin-ui}"
# shellcheck source=lib/peers.sh
. "${ROOT}/.ci/lib/peers.sh"

OUT="${ROOT}/target/ci-artifacts"
PNG="${OUT}/zipkin-trace.png"
DOM="${OUT}/zipkin-trace.html"
PROFILE=""
ZIPKIN_STARTED=0

cleanup() {
    local rc=$?
    [ -n "${PROFILE}" ] && rm -rf "${PROFILE}"
    if [ "${ZIPKIN_STARTED}" = 1 ]; then
        bash "${ROOT}/.ci/zipkin.sh" stop >/dev/null 2>&1 || true
    fi
    exit "${rc}"
}
trap cleanup EXIT INT TERM

step "chromium"
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    ${SUDO} apt-get update -qq
    ${SUDO} apt-get install -y -qq chromium >/dev/null
fi
chromium --version

step "start Zipkin (.ci/zipkin.sh start)"
ZIPKIN_STARTED=1
exports="$(bash "${ROOT}/.ci/zipkin.sh" start | grep '^export ')"
eval "${exports}"
ZIPKIN="${TDIST_ZIPKIN_URL:?zipkin.sh start printed no TDIST_ZIPKIN_URL}"
echo "zipkin: ${ZIPKIN}"

step "send the demo's spans (comment_pipeline --comments 2)"
mkdir -p "${OUT}"
SPANS="${OUT}/zipkin-ui-spans.jsonl"
rm -f "${SPANS}" "${PNG}" "${DOM}"
(cd "${ROOT}" && env -u TDIST_KAFKA_BOOTSTRAP_SERVERS -u TDIST_TRANSPORT \
    OTEL_EXPORTER_ZIPKIN_ENDPOINT="${ZIPKIN}/api/v2/spans" \
    nice -n 19 cargo run -q -p tdist-examples --example comment_pipeline -- \
    --comments 2 --quiet --out "${SPANS}") | tail -n 3

step "find a post /comments trace in Zipkin"
# The trace with the most spans among those whose root is `post /comments`, once Zipkin has all of
# the spans the demo wrote for it (the HTTP reporter may still be sending).
TRACE=""
for _ in $(seq 1 60); do
    TRACE="$(curl -fsS "${ZIPKIN}/api/v2/traces?limit=50&lookback=3600000&endTs=$(($(date +%s) * 1000 + 60000))" |
        python3 -c '
import json, sys
want = {}
for line in open(sys.argv[1]):
    if line.strip():
        s = json.loads(line)
        want[s["traceId"]] = want.get(s["traceId"], 0) + 1
best = None
for trace in json.load(sys.stdin):
    names = {s.get("name") for s in trace}
    tid = trace[0]["traceId"]
    if "post /comments" in names and len(trace) >= want.get(tid, 1 << 30):
        if best is None or len(trace) > best[1]:
            best = (tid, len(trace))
print(best[0] if best else "")
' "${SPANS}")"
    [ -n "${TRACE}" ] && break
    sleep 0.5
done
[ -n "${TRACE}" ] || { echo "no complete post /comments trace in Zipkin" >&2; exit 1; }
curl -fsS "${ZIPKIN}/api/v2/trace/${TRACE}" |
    python3 -c 'import json,sys; t=json.load(sys.stdin); print(len(t), "spans:", ", ".join(sorted({s.get("localEndpoint",{}).get("serviceName","?") + ":" + s.get("name","") for s in t})))'
echo "trace ${TRACE}"

step "screenshot ${ZIPKIN}/zipkin/traces/${TRACE}"
chrome() {
    PROFILE="$(mktemp -d)"
    timeout 120 nice -n 10 chromium --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="${PROFILE}" --virtual-time-budget=15000 \
        --window-size=1400,1000 "$@" "${ZIPKIN}/zipkin/traces/${TRACE}" 2>/dev/null
    rm -rf "${PROFILE}"
    PROFILE=""
}
chrome --screenshot="${PNG}" >/dev/null
chrome --dump-dom >"${DOM}"
size="$(stat -c %s "${PNG}")"
echo "${PNG}: ${size} bytes"
[ "${size}" -gt 20000 ] || { echo "screenshot too small (${size} bytes): the page did not render" >&2; exit 1; }

step "check the rendered page names the trace's spans"
python3 - "${DOM}" "${TRACE}" <<'PY'
import sys
dom = open(sys.argv[1], encoding="utf-8").read().lower()
missing = [n for n in ("post /comments", sys.argv[2]) if n not in dom]
if missing:
    sys.exit(f"rendered page lacks {missing}")
print("rendered page names post /comments and trace", sys.argv[2])
PY
step_done
