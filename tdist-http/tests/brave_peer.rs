//! Compatibility with Brave (Java), the reference Zipkin tracer, over real HTTP on 127.0.0.1.
//!
//! The Brave side is `peers/brave` (`tdist.peer.BravePeer`: Brave's `HttpClientHandler` and
//! `HttpServerHandler` with B3 propagation); our side is the `http_service` example (the tower
//! layers, spans written to a `TDIST_FILE`). Needs `TDIST_BRAVE_CLASSPATH` (the peer's jar and its
//! dependencies, as for `java -cp`); run by `.ci/brave.sh`
//! (`cargo test -p tdist-http --test brave_peer -- --ignored`). `TDIST_HTTP_SERVICE` may name a
//! built `http_service`; otherwise the test builds it with cargo.

#[path = "../../examples/tests/support/cargo_build.rs"]
mod cargo_build;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The classpath, or `None` (with the reason printed) to skip.
fn classpath() -> Option<String> {
    match std::env::var("TDIST_BRAVE_CLASSPATH") {
        Ok(cp) if !cp.trim().is_empty() => Some(cp),
        _ => {
            let why = "needs TDIST_BRAVE_CLASSPATH (Brave peer jars); run .ci/brave.sh";
            // CI sets this where it runs the peers: a peer it failed to provide is a failure.
            assert!(std::env::var_os("TDIST_PEERS_REQUIRED").is_none(), "{why}");
            eprintln!("skipping: {why}");
            None
        }
    }
}

fn http_service_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TDIST_HTTP_SERVICE") {
        if !p.trim().is_empty() {
            return PathBuf::from(p);
        }
    }
    cargo_build::build_example("tdist-examples", "http_service")
}

/// A child process killed when dropped (a failed assert must not leave it running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits for the process to exit by itself.
    fn wait(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                assert!(status.success(), "child exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `http_service` with spans to a fresh file; returns it, its address and the file.
fn start_http_service(name: &str, requests: u32, extra: &[&str]) -> (Proc, String, PathBuf) {
    let file = std::env::temp_dir().join(format!(
        "tdist-brave-{name}-{}-{}.jsonl",
        std::process::id(),
        tdist_core::random_u64()
    ));
    let _ = std::fs::remove_file(&file);
    let mut child = Command::new(http_service_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--requests",
            &requests.to_string(),
        ])
        .args(extra)
        .env_remove("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
        .env_remove("TDIST_TRANSPORT")
        .env_remove("OTEL_PROPAGATORS")
        .env("OTEL_SERVICE_NAME", name)
        .env("TDIST_FILE", &file)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start http_service");
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[http_service] {line}");
            if let Some(addr) = line.strip_prefix("http_service listening on http://") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("http_service printed its address");
    (proc, addr, file)
}

fn java(cp: &str) -> Command {
    let java = std::env::var("TDIST_JAVA").unwrap_or_else(|_| "java".into());
    let mut c = Command::new(java);
    c.args([
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        cp,
    ])
    .arg("tdist.peer.BravePeer");
    c
}

fn spans(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad span {l:?}: {e}")))
        .collect()
}

fn only_kind<'s>(spans: &'s [Value], kind: &str) -> &'s Value {
    let found: Vec<&Value> = spans.iter().filter(|s| s["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} span in {spans:?}");
    found[0]
}

fn s<'v>(v: &'v Value, name: &str) -> &'v str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing in {v}"))
}

#[test]
#[ignore = "needs the Brave peer; run by .ci/brave.sh"]
fn our_server_joins_a_brave_client_span() {
    let Some(cp) = classpath() else { return };
    let (mut service, addr, file) = start_http_service("rust-server", 2, &[]);
    // Brave's default 64-bit trace ids, then 128-bit ones.
    let mut calls = Vec::new();
    for trace_id_128 in ["0", "1"] {
        let out = java(&cp)
            .arg("http-client")
            .arg(format!("http://{addr}/orders/7"))
            .env("TDIST_BRAVE_TRACE_ID_128", trace_id_128)
            .output()
            .expect("run java");
        assert!(
            out.status.success(),
            "brave http-client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let brave: Value = serde_json::from_slice(&out.stdout).expect("brave prints JSON");
        assert_eq!(brave["status"], 200, "{brave}");
        calls.push(brave);
    }
    service.wait(Duration::from_secs(30));

    let spans = spans(&file);
    let _ = std::fs::remove_file(&file);
    let servers: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "SERVER").collect();
    assert_eq!(servers.len(), calls.len(), "{spans:?}");
    assert_eq!(s(&calls[0], "trace_id").len(), 16);
    assert_eq!(s(&calls[1], "trace_id").len(), 32);
    for brave in &calls {
        let server = *servers
            .iter()
            .find(|sp| s(sp, "traceId") == s(brave, "trace_id"))
            .unwrap_or_else(|| panic!("no SERVER span in Brave's trace {brave}: {servers:?}"));
        if server["shared"] == true {
            // B3 join: the server reports under the client's span id, with the client's parent.
            assert_eq!(s(server, "id"), s(brave, "span_id"), "{server}");
            assert_eq!(
                server.get("parentId"),
                brave.get("parent_id").filter(|p| !p.is_null())
            );
        } else {
            assert_eq!(
                s(server, "parentId"),
                s(brave, "span_id"),
                "child of Brave's client span"
            );
        }
    }
}

#[test]
#[ignore = "needs the Brave peer; run by .ci/brave.sh"]
fn a_brave_server_extracts_our_client_span() {
    let Some(cp) = classpath() else { return };
    let mut brave = java(&cp)
        .args(["http-server", "0", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start java");
    let stdout: ChildStdout = brave.stdout.take().unwrap();
    let mut brave = Proc(brave);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("brave listening")["listening"]
        .as_u64()
        .expect("port");
    let downstream = format!("http://127.0.0.1:{port}/stock");
    let (mut service, addr, file) =
        start_http_service("rust-client", 1, &["--downstream", &downstream]);

    // One plain request to our service, which calls Brave.
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "GET /checkout HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let seen = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("brave saw the call");
    service.wait(Duration::from_secs(30));
    brave.wait(Duration::from_secs(30));

    let spans = spans(&file);
    let _ = std::fs::remove_file(&file);
    let client = only_kind(&spans, "CLIENT");
    let server = only_kind(&spans, "SERVER");
    assert_eq!(s(client, "parentId"), s(server, "id"));
    assert_eq!(
        s(&seen, "extracted_trace_id"),
        s(client, "traceId"),
        "{seen}"
    );
    assert_eq!(s(&seen, "extracted_span_id"), s(client, "id"), "{seen}");
    assert_eq!(s(&seen, "extracted_parent_id"), s(server, "id"), "{seen}");
    assert_eq!(s(&seen, "extracted_sampled"), "true", "{seen}");
    // Brave's server span joins ours (B3 shares the span id between client and server).
    assert_eq!(s(&seen, "server_trace_id"), s(client, "traceId"));
    assert_eq!(s(&seen, "server_span_id"), s(client, "id"));
    assert_eq!(seen["server_shared"], true);
}
