#!/usr/bin/env bash
# trace_report against a real Zipkin server: the spans of every fixture are POSTed to
# /api/v2/spans, read back from GET /api/v2/trace/{id} (an array) and GET /api/v2/traces (an
# array of arrays), and trace_report must draw the same waterfall from Zipkin's answers as from
# the JSON-lines fixture. Needs: java 17+, curl, python3. Downloads zipkin-server (Maven
# Central) into $HOME/.cache/tdist/zipkin once.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==== %s ====\n' "$*"; }

ZIPKIN_VERSION=3.6.1
CACHE="${HOME}/.cache/tdist/zipkin"
JAR="$CACHE/zipkin-server-$ZIPKIN_VERSION-exec.jar"
PORT="${TDIST_ZIPKIN_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
WORK="$(mktemp -d)"
ZIPKIN_PID=""
cleanup() {
  if [ -n "$ZIPKIN_PID" ]; then kill "$ZIPKIN_PID" 2>/dev/null || true; wait "$ZIPKIN_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "zipkin-server $ZIPKIN_VERSION"
command -v java >/dev/null || { echo "java is required (17+)"; exit 1; }
mkdir -p "$CACHE"
if [ ! -s "$JAR" ]; then
  URL="https://repo1.maven.org/maven2/io/zipkin/zipkin-server/$ZIPKIN_VERSION/zipkin-server-$ZIPKIN_VERSION-exec.jar"
  curl -sSfL -o "$JAR.part" "$URL"
  want="$(curl -sSfL "$URL.sha1" | cut -c1-40)"
  got="$(sha1sum "$JAR.part" | cut -c1-40)"
  [ "$want" = "$got" ] || { echo "checksum mismatch: $got != $want"; rm -f "$JAR.part"; exit 1; }
  mv "$JAR.part" "$JAR"
fi

step "build trace_report"
cargo build -q -p tdist-examples --example trace_report
BIN="${CARGO_TARGET_DIR:-target}/debug/examples/trace_report"

step "start zipkin on 127.0.0.1:$PORT (in-memory storage)"
# QUERY_PORT alone binds every interface: the armeria.ports entry binds 127.0.0.1 only.
STORAGE_TYPE=mem QUERY_PORT="$PORT" java -Xmx384m -jar "$JAR" \
  '--armeria.ports[0].ip=127.0.0.1' "--armeria.ports[0].port=$PORT" \
  '--armeria.ports[0].protocols[0]=http' >"$WORK/zipkin.log" 2>&1 &
ZIPKIN_PID=$!
for _ in $(seq 1 90); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$ZIPKIN_PID" 2>/dev/null || { cat "$WORK/zipkin.log"; exit 1; }
  sleep 2
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "zipkin did not start"; tail -50 "$WORK/zipkin.log"; exit 1; }

step "post fixtures, read them back, compare waterfalls"
python3 - "$PORT" "$BIN" "$WORK" examples/tests/fixtures/*.jsonl <<'PY'
import json, subprocess, sys, time, urllib.request
port, binary, work, fixtures = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
base = f"http://127.0.0.1:{port}/api/v2"

def waterfall(path, trace):
    out = subprocess.run([binary, path, "--trace", trace], capture_output=True, text=True, check=True).stdout
    lines = out.split("\n\n")[1].splitlines()
    # Line 0 counts spans and duplicates (Zipkin stores an exact duplicate once); compare the rest.
    return lines[1:]

ids = set()
for f in fixtures:
    spans = []
    for line in open(f):
        try:
            s = json.loads(line)
        except ValueError:
            continue  # the malformed-line fixture; trace_report skips it too
        # Zipkin accepts only lower-hex ids; trace_report normalizes upper case itself.
        for k in ("traceId", "id", "parentId"):
            if k in s:
                s[k] = s[k].lower()
        spans.append(s)
        ids.add(s["traceId"])
    req = urllib.request.Request(f"{base}/spans", data=json.dumps(spans).encode(),
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=10).status == 202, f
    print(f"posted {len(spans)} spans from {f}")

failures = 0
deadline = time.time() + 30
for tid in sorted(ids):
    while True:
        try:
            body = urllib.request.urlopen(f"{base}/trace/{tid}", timeout=10).read()
            break
        except urllib.error.HTTPError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    path = f"{work}/trace-{tid}.json"
    open(path, "wb").write(body)
    src = next(f for f in fixtures if tid in open(f).read().lower())
    a, b = waterfall(src, tid), waterfall(path, tid)
    if a != b:
        failures += 1
        print(f"MISMATCH for trace {tid}\n--- fixture\n" + "\n".join(a) + "\n--- zipkin\n" + "\n".join(b))
    else:
        print(f"trace {tid}: {len(a) - 1} spans drawn identically from /api/v2/trace")

# All traces at once: an array of arrays.
end_ms = 1700000000000 + 86400000  # after every fixture; lookback to 1970 (rpc_shared starts there)
q = f"{base}/traces?endTs={end_ms}&lookback={end_ms}&limit=100"
body = urllib.request.urlopen(q, timeout=10).read()
path = f"{work}/traces.json"
open(path, "wb").write(body)
got = json.loads(body)
assert len(got) == len(ids), f"zipkin returned {len(got)} traces, expected {len(ids)}"
for tid in sorted(ids):
    if waterfall(path, tid) != waterfall(f"{work}/trace-{tid}.json", tid):
        failures += 1
        print(f"MISMATCH for trace {tid} read from /api/v2/traces")
print(f"{len(ids)} traces read back from /api/v2/traces")
sys.exit(1 if failures else 0)
PY
step "report.sh: ok"
