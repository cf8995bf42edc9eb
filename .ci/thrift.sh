#!/usr/bin/env bash
# Cross-language check for tdist-thrift against Apache Thrift's own Python library (Debian
# thrift-compiler and python3-thrift, 0.17): a plain Python client calls our traced server, and
# our negotiating client calls a plain Python server, for framed/buffered x binary/compact; the
# same with Go peers (github.com/apache/thrift v0.17.0 from the Go module proxy) when go is
# installed, including a Go server that closes the connection on an unknown method (as older Go
# servers and some proxies do; 0.17's TSimpleServer answers UNKNOWN_METHOD and keeps it), so the
# negotiating client's reconnect path meets a real peer.
# Idempotent, non-interactive; exits non-zero on any failure; kills everything it started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tdist/thrift"
PY=/usr/bin/python3   # Debian's python3-thrift is importable only by the system python
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }

step "install thrift-compiler and python3-thrift"
if ! command -v thrift >/dev/null || ! "$PY" -c 'import thrift' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq thrift-compiler python3-thrift >/dev/null
fi
thrift --version

step "check the committed Rust matches the compiler's output"
rm -rf "$CACHE/rs" && mkdir -p "$CACHE/rs"
thrift --gen rs -out "$CACHE/rs" "$ROOT/examples/idl/comments.thrift"
diff -u "$ROOT/examples/src/thrift_gen/comments.rs" "$CACHE/rs/comments.rs"

step "generate the Python side from the same IDL"
rm -rf "$CACHE/py" && mkdir -p "$CACHE/py"
thrift --gen py -out "$CACHE/py" "$ROOT/examples/idl/comments.thrift"

cat > "$CACHE/py/peer.py" <<'PYEOF'
import sys
sys.path.insert(0, sys.path[0])
from thrift.transport import TSocket, TTransport
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.server import TServer
from tdist_comments import SpamCheck
from tdist_comments.ttypes import Comment, SpamScore, Verdict, InvalidComment

role, port, framing, protocol = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
tf = TTransport.TFramedTransportFactory() if framing == "framed" else TTransport.TBufferedTransportFactory()
pf = TBinaryProtocol.TBinaryProtocolFactory() if protocol == "binary" else TCompactProtocol.TCompactProtocolFactory()

class Handler:
    def check(self, comment):
        if not comment.text:
            raise InvalidComment(message="empty comment")
        spam = "spam" in comment.text.lower() or "BUY" in comment.text
        return SpamScore(score=0.9 if spam else 0.1, verdict=Verdict.SPAM if spam else Verdict.HAM)
    def report(self, comment_id, verdict):
        pass

if role == "server":
    sock = TSocket.TServerSocket(host="127.0.0.1", port=port)
    server = TServer.TThreadedServer(SpamCheck.Processor(Handler()), sock, tf, pf, daemon=True)
    print("listening", flush=True)
    server.serve()
else:
    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(10000)
    trans = tf.getTransport(sock)
    client = SpamCheck.Client(pf.getProtocol(trans))
    trans.open()
    for n in range(20):
        s = client.check(Comment(id="c%d" % n, author="py", text="spam offer" if n % 2 else "hello"))
        want = Verdict.HAM if n % 2 == 0 else None
        assert s.verdict in (Verdict.HAM, Verdict.SPAM, Verdict.UNSURE), s
        if want is not None:
            assert s.verdict == want, s
    client.report("c1", Verdict.SPAM)
    try:
        client.check(Comment(id="e", author="py", text=""))
        raise SystemExit("expected InvalidComment")
    except InvalidComment:
        pass
    trans.close()
    print("python client: 21 calls ok")
PYEOF

# Checks a Zipkin v2 JSON-lines span file: spans.py FILE KIND MIN_COUNT [one-trace]
cat > "$CACHE/py/spans.py" <<'PYEOF'
import json, sys, time
path, kind, want, one = sys.argv[1], sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4
for _ in range(50):
    try:
        spans = [json.loads(l) for l in open(path) if l.strip()]
    except FileNotFoundError:
        spans = []
    of_kind = [s for s in spans if s.get("kind") == kind]
    if len(of_kind) >= want:
        break
    time.sleep(0.1)
assert len(of_kind) >= want, "%s: %d %s spans, want %d" % (path, len(of_kind), kind, want)
for s in of_kind:
    assert len(s["traceId"]) in (16, 32) and len(s["id"]) == 16, s
if one:
    assert len({s["traceId"] for s in spans}) == 1, "spans in several traces"
    root = [s for s in spans if "parentId" not in s]
    assert len(root) == 1, root
    assert all(s.get("parentId") == root[0]["id"] for s in of_kind), "CLIENT spans not children of the root"
print("%s: %d %s spans ok" % (path, len(of_kind), kind))
PYEOF

step "build the Rust example"
cd "$ROOT"
cargo build -q -p tdist-examples --example thrift_service
BIN="$ROOT/target/debug/examples/thrift_service"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 never opened" >&2; return 1
}
stop_last() { local p="${PIDS[-1]}"; kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; unset 'PIDS[-1]'; }

for framing in framed buffered; do
  for protocol in binary compact; do
    step "$framing/$protocol: plain Python client -> traced Rust server"
    port=$(free_port)
    spans="$CACHE/spans-server-$framing-$protocol.jsonl"; rm -f "$spans"
    "$BIN" --listen "127.0.0.1:$port" --framing "$framing" --protocol "$protocol" --spans "$spans" &
    PIDS+=($!)
    wait_port "$port"
    "$PY" "$CACHE/py/peer.py" client "$port" "$framing" "$protocol"
    "$PY" "$CACHE/py/spans.py" "$spans" SERVER 22
    stop_last

    step "$framing/$protocol: negotiating Rust client -> plain Python server"
    port=$(free_port)
    "$PY" "$CACHE/py/peer.py" server "$port" "$framing" "$protocol" &
    PIDS+=($!)
    wait_port "$port"
    spans="$CACHE/spans-client-$framing-$protocol.jsonl"; rm -f "$spans"
    "$BIN" --connect "127.0.0.1:$port" --framing "$framing" --protocol "$protocol" --count 20 --expect-traced no --spans "$spans"
    "$PY" "$CACHE/py/spans.py" "$spans" CLIENT 22 one-trace
    stop_last
  done
done

if command -v go >/dev/null; then
  step "build the Go peers (github.com/apache/thrift v0.17.0, thrift --gen go)"
  GODIR="$CACHE/go"
  rm -rf "$GODIR/gen" && mkdir -p "$GODIR/gen" "$GODIR/server"
  thrift --gen go:package_prefix=gopeer/gen/ -out "$GODIR/gen" "$ROOT/examples/idl/comments.thrift"
  printf 'module gopeer\n\ngo 1.21\n\nrequire github.com/apache/thrift v0.17.0\n' > "$GODIR/go.mod"
  cat > "$GODIR/server/main.go" <<'GOEOF'
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/apache/thrift/lib/go/thrift"
	"gopeer/gen/comments"
)

type handler struct{}

func (handler) Check(ctx context.Context, c *comments.Comment) (*comments.SpamScore, error) {
	if c.Text == "" {
		return nil, &comments.InvalidComment{Message: "empty comment"}
	}
	if strings.Contains(strings.ToLower(c.Text), "spam") || strings.Contains(c.Text, "BUY") {
		return &comments.SpamScore{Score: 0.9, Verdict: comments.Verdict_SPAM}, nil
	}
	return &comments.SpamScore{Score: 0.1, Verdict: comments.Verdict_HAM}, nil
}

func (handler) Report(ctx context.Context, id string, v comments.Verdict) error { return nil }

// closingProcessor answers known methods as the generated processor does, and closes the
// connection without a reply on an unknown one, as older Go servers and some proxies do
// (0.17's TSimpleServer answers UNKNOWN_METHOD and keeps the connection).
type closingProcessor struct{ thrift.TProcessor }

func (p closingProcessor) Process(ctx context.Context, in, out thrift.TProtocol) (bool, thrift.TException) {
	name, _, seqID, err := in.ReadMessageBegin(ctx)
	if err != nil {
		return false, thrift.WrapTException(err)
	}
	f, ok := p.ProcessorMap()[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown method %q: closing the connection\n", name)
		return false, thrift.NewTTransportException(thrift.UNKNOWN_TRANSPORT_EXCEPTION, "unknown method "+name)
	}
	return f.Process(ctx, seqID, in, out)
}

func main() {
	addr, framing, protocol := os.Args[1], os.Args[2], os.Args[3]
	sock, err := thrift.NewTServerSocket(addr)
	if err != nil {
		panic(err)
	}
	var tf thrift.TTransportFactory = thrift.NewTBufferedTransportFactory(8192)
	if framing == "framed" {
		tf = thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), nil)
	}
	var pf thrift.TProtocolFactory = thrift.NewTBinaryProtocolFactoryConf(nil)
	if protocol == "compact" {
		pf = thrift.NewTCompactProtocolFactoryConf(nil)
	}
	var proc thrift.TProcessor = comments.NewSpamCheckProcessor(handler{})
	if len(os.Args) > 4 && os.Args[4] == "close-on-unknown" {
		proc = closingProcessor{proc}
	}
	srv := thrift.NewTSimpleServer4(proc, sock, tf, pf)
	fmt.Println("listening")
	if err := srv.Serve(); err != nil {
		panic(err)
	}
}
GOEOF
  (cd "$GODIR" && GOFLAGS=-mod=mod go build -o gosrv ./server && GOFLAGS=-mod=mod go build -o gocli ./gen/comments/spam_check-remote)

  for framing in framed buffered; do
    for protocol in binary compact; do
      step "$framing/$protocol: plain Go client -> traced Rust server"
      port=$(free_port)
      "$BIN" --listen "127.0.0.1:$port" --framing "$framing" --protocol "$protocol" &
      PIDS+=($!)
      wait_port "$port"
      F=(); [ "$framing" = framed ] && F=(-framed)
      out=$("$GODIR/gocli" -h 127.0.0.1 -p "$port" -P "$protocol" "${F[@]}" check '{"1":{"str":"c1"},"2":{"str":"go"},"3":{"str":"hello"}}')
      echo "$out"; [[ "$out" == SpamScore* ]]
      out=$("$GODIR/gocli" -h 127.0.0.1 -p "$port" -P "$protocol" "${F[@]}" check '{"1":{"str":"c2"},"2":{"str":"go"},"3":{"str":""}}')
      echo "$out"; [[ "$out" == *InvalidComment* ]]
      stop_last

      step "$framing/$protocol: negotiating Rust client -> plain Go server"
      port=$(free_port)
      "$GODIR/gosrv" "127.0.0.1:$port" "$framing" "$protocol" &
      PIDS+=($!)
      wait_port "$port"
      "$BIN" --connect "127.0.0.1:$port" --framing "$framing" --protocol "$protocol" --count 10 --expect-traced no
      stop_last

      step "$framing/$protocol: negotiating Rust client -> Go server that closes the connection on the probe"
      port=$(free_port)
      "$GODIR/gosrv" "127.0.0.1:$port" "$framing" "$protocol" close-on-unknown 2>"$CACHE/gosrv-closing.err" &
      PIDS+=($!)
      wait_port "$port"
      "$BIN" --connect "127.0.0.1:$port" --framing "$framing" --protocol "$protocol" --count 10 --expect-traced no
      grep -q 'closing the connection' "$CACHE/gosrv-closing.err" || { echo "the Go server never saw the probe"; exit 1; }
      stop_last
    done
  done
else
  step "go not found: skipping the Go peers"
fi

step "thrift cross-language: all calls succeeded"
