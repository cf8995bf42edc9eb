//! The `http_service` example as a service manager runs it: started, sent a request, stopped
//! with SIGTERM. Its spans must be flushed on the way out.
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_service_and_flushes_its_spans() {
    let dir = std::env::temp_dir().join(format!("tdist-http-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spans.json");
    let _ = std::fs::remove_file(&file);
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

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("http_service did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert!(status.success(), "{status}: {rest}");
    let spans = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        spans.contains(r#""kind":"SERVER""#) && spans.contains("/orders"),
        "no span in the file: {spans:?} ({rest})"
    );
}
