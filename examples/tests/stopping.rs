//! The long-running examples as a service manager runs them: started, sent requests, stopped
//! with SIGTERM. They must exit cleanly and flush their spans on the way out.
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_http_service_and_flushes_its_spans() {
    let (dir, file) = span_dir("http-service");
    let mut child = Command::new(support::build_example("http_service"))
        .args(["--listen", "127.0.0.1:0"])
        .env("TDIST_FILE", &file)
        .env("OTEL_SERVICE_NAME", "stopped")
        // The default five seconds: nothing is exported before the stop unless it flushes.
        .env("OTEL_BSP_SCHEDULE_DELAY", "5000")
        .env_remove("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
        .env_remove("TDIST_TRANSPORT")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start http_service");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("the listening address")
        .to_owned();

    let mut tcp = TcpStream::connect(&addr).unwrap();
    write!(
        tcp,
        "GET /orders HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let status = terminate(&mut child);
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert!(status.success(), "{status}: {rest}");
    let spans = take_spans(&dir, &file);
    assert!(
        spans.contains(r#""kind":"SERVER""#) && spans.contains("/orders"),
        "no span in the file: {spans:?} ({rest})"
    );
}

#[test]
fn sigterm_stops_the_thrift_service_and_flushes_its_spans() {
    let (dir, file) = span_dir("thrift-service");
    let bin = support::build_example("thrift_service");
    let mut server = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--spans"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start thrift_service");
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the listening address")
        .to_owned();
    let client = Command::new(&bin)
        .args(["--connect", &addr, "--count", "2", "--expect-traced", "yes"])
        .output()
        .expect("run the client");
    assert!(client.status.success(), "{client:?}");

    let status = terminate(&mut server);
    assert!(status.success(), "{status}");
    let spans = take_spans(&dir, &file);
    assert!(
        spans.contains(r#""kind":"SERVER""#) && spans.contains("spam-check"),
        "no span in the file: {spans:?}"
    );
}

/// An empty directory of this test process's own, and the span file to write in it.
fn span_dir(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tdist-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spans.json");
    let _ = std::fs::remove_file(&file);
    (dir, file)
}

/// What the example wrote to its span file (nothing if it wrote none); the directory is removed.
fn take_spans(dir: &Path, file: &Path) -> String {
    let spans = std::fs::read_to_string(file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(dir);
    spans
}

/// Sends SIGTERM and waits (at most 30 s) for the process to exit.
fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
