#!/usr/bin/env bash
# Cross-implementation check for tdist-http with Python peers from PyPI:
#  - callers inject with OpenTelemetry's propagators (B3 multi, B3 single, W3C tracecontext) and
#    examples/http_service must join their traces;
#  - a Python downstream service extracts what our client layer injects with OpenTelemetry's
#    B3/W3C propagators and with py-zipkin's extractor;
#  - a Python collector receives the Zipkin transport's POSTs; JSON bodies are checked against
#    the v2 model, proto3 bodies are decoded with py-zipkin's zipkin_pb2.ListOfSpans.
# Runs twice: JSON + B3 multi injection, then proto3 + gzip + `b3,tracecontext` injection.
# Idempotent, non-interactive; exits non-zero on any failure; the Python driver kills what it starts.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tdist/http"
VENV="$CACHE/venv"
step() { printf '\n==> %s\n' "$*"; }

step "Python peers in $VENV (opentelemetry-propagator-b3, opentelemetry-sdk, py-zipkin, protobuf)"
mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check \
  "opentelemetry-api==1.*" "opentelemetry-sdk==1.*" "opentelemetry-propagator-b3==1.*" \
  "py-zipkin==1.2.8" "protobuf"
"$VENV/bin/python" -c 'import opentelemetry.propagators.b3, py_zipkin; print("peers ok")'

step "build examples/http_service"
(cd "$ROOT" && cargo build -q -p tdist-examples --example http_service)
BIN="$ROOT/target/debug/examples/http_service"

cat > "$CACHE/peers.py" <<'PYEOF'
import gzip, json, os, socket, subprocess, sys, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from py_zipkin.request_helpers import extract_zipkin_attrs_from_headers

BIN, ENCODING, PROPAGATORS = sys.argv[1], sys.argv[2], sys.argv[3]
trace.set_tracer_provider(TracerProvider())
otel = trace.get_tracer("peer")

def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class Recorder(BaseHTTPRequestHandler):
    store = None
    def log_message(self, *a): pass
    def handle_one(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        # Lower-cased for OpenTelemetry's getter; the raw (case-insensitive) message for py-zipkin.
        self.store.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body, self.headers))
    def do_POST(self):
        self.handle_one(); self.send_response(202); self.send_header("content-length", "0"); self.end_headers()
    def do_GET(self):
        self.handle_one(); b = b"in stock"
        self.send_response(200); self.send_header("content-length", str(len(b))); self.end_headers(); self.wfile.write(b)

def start(store):
    cls = type("R", (Recorder,), {"store": store})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv

collected, downstream = [], []
collector, down = start(collected), start(downstream)
port = free_port()
env = dict(os.environ,
    OTEL_SERVICE_NAME="rust-web",
    OTEL_EXPORTER_ZIPKIN_ENDPOINT=f"http://127.0.0.1:{collector.server_port}/api/v2/spans",
    OTEL_BSP_SCHEDULE_DELAY="100",
    OTEL_PROPAGATORS=PROPAGATORS,
    TDIST_ZIPKIN_ENCODING=ENCODING,
    TDIST_ZIPKIN_GZIP="true" if ENCODING == "proto3" else "false")
cases = ["b3multi", "b3single", "tracecontext", "none"]
proc = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{port}",
    "--downstream", f"http://127.0.0.1:{down.server_port}/stock", "--requests", str(len(cases))], env=env)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
        except OSError:
            time.sleep(0.1)
    sent = {}
    for case in cases:
        headers = {}
        with otel.start_as_current_span(f"py-{case}") as span:
            prop = {"b3multi": B3MultiFormat(), "b3single": B3SingleFormat(),
                    "tracecontext": TraceContextTextMapPropagator()}.get(case)
            if prop:
                prop.inject(headers)
            ctx = span.get_span_context()
            sent[case] = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        req = urllib.request.Request(f"http://127.0.0.1:{port}/{case}", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 200 or b"in stock" not in r.read():
                fail(f"{case}: bad response")
    if proc.wait(timeout=30) != 0:
        fail("http_service exited non-zero")
finally:
    if proc.poll() is None:
        proc.kill()

# What the Python downstream service saw: every request carries a context both extractors read.
if len(downstream) != len(cases):
    fail(f"downstream got {len(downstream)} requests")
client_ids = {}
for path, h, _, raw in downstream:
    ctx = None
    if "b3multi" in PROPAGATORS or PROPAGATORS == "":
        ctx = trace.get_current_span(B3MultiFormat().extract(h)).get_span_context()
    elif "b3" in PROPAGATORS.split(","):
        ctx = trace.get_current_span(B3SingleFormat().extract(h)).get_span_context()
    if "tracecontext" in PROPAGATORS:
        w3c = trace.get_current_span(TraceContextTextMapPropagator().extract(h)).get_span_context()
        if not w3c.is_valid:
            fail(f"OpenTelemetry cannot extract traceparent from {h}")
        ctx = ctx or w3c
    if ctx is None or not ctx.is_valid or not ctx.trace_flags.sampled:
        fail(f"OpenTelemetry cannot extract our headers: {h}")
    attrs = extract_zipkin_attrs_from_headers(raw, use_128bit_trace_id=True)
    if attrs is None or int(attrs.span_id, 16) != ctx.span_id or int(attrs.trace_id, 16) != ctx.trace_id:
        fail(f"py-zipkin disagrees: {attrs} vs {ctx} from {h}")
    if h.get("b3") == "0" or h.get("x-b3-sampled") == "0":
        fail("downstream request marked unsampled")
    client_ids[format(ctx.span_id, "016x")] = format(ctx.trace_id, "032x")
print(f"downstream extracted {len(client_ids)} contexts with OpenTelemetry and py-zipkin")

# What the collector received.
spans = []
for path, h, body, _ in collected:
    if path != "/api/v2/spans": fail(f"posted to {path}")
    if h.get("b3") != "0": fail("upload without b3: 0")
    if h.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    if ENCODING == "json":
        if h.get("content-type") != "application/json": fail(h.get("content-type"))
        spans += json.loads(body)
    else:
        if h.get("content-type") != "application/x-protobuf": fail(h.get("content-type"))
        from py_zipkin.encoding.protobuf import zipkin_pb2
        kinds = {1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}
        for s in zipkin_pb2.ListOfSpans.FromString(body).spans:
            d = {"traceId": s.trace_id.hex(), "id": s.id.hex(), "name": s.name,
                 "timestamp": s.timestamp, "duration": s.duration,
                 "localEndpoint": {"serviceName": s.local_endpoint.service_name},
                 "tags": dict(s.tags)}
            if s.parent_id: d["parentId"] = s.parent_id.hex()
            if s.kind: d["kind"] = kinds[s.kind]
            if s.shared: d["shared"] = True
            spans.append(d)
for s in spans:
    if len(s["id"]) != 16 or len(s["traceId"]) not in (16, 32) or s["duration"] < 1:
        fail(f"bad span {s}")
    if s["localEndpoint"]["serviceName"] != "rust-web": fail(f"service name {s}")
servers = {s["tags"]["http.path"].strip("/"): s for s in spans if s.get("kind") == "SERVER"}
clients = [s for s in spans if s.get("kind") == "CLIENT"]
if sorted(servers) != sorted(cases) or len(clients) != len(cases):
    fail(f"expected a SERVER and a CLIENT span per request, got {spans}")
for case, (tid, sid) in sent.items():
    s = servers[case]
    if case in ("b3multi", "b3single"):
        ok = s["traceId"] == tid and s["id"] == sid and s.get("shared")
    elif case == "tracecontext":
        ok = s["traceId"] == tid and s.get("parentId") == sid and not s.get("shared")
    else:
        ok = s["traceId"] != tid and "parentId" not in s
    if not ok: fail(f"{case}: server span {s} vs caller {tid}/{sid}")
for c in clients:
    if client_ids.get(c["id"]) is None or client_ids[c["id"]].lstrip("0") != c["traceId"].lstrip("0"):
        fail(f"client span {c} not what the downstream received {client_ids}")
print(f"{ENCODING}: {len(spans)} spans valid; B3 multi/single joined, W3C child, new trace without headers")
PYEOF

step "JSON, B3 multi injection"
"$VENV/bin/python" "$CACHE/peers.py" "$BIN" json b3multi
step "proto3 + gzip, B3 single and W3C injection"
"$VENV/bin/python" "$CACHE/peers.py" "$BIN" proto3 "b3,tracecontext"
step "tdist-http peers OK"
