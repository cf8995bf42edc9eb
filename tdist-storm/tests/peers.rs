//! The harness against third-party multilang libraries: PyPI `pystorm` (a bolt and a spout)
//! and npm `node-storm` (a bolt), run as real child processes. A trace field forwarded by the
//! peer bolt is then joined by our traced Rust bolt.
//!
//! Skipped unless `TDIST_STORM_PEERS=1`; `.ci/storm.sh` installs the peers and sets
//! `TDIST_STORM_PYTHON` (a python with pystorm) and `TDIST_STORM_NODE_PATH` (a node_modules
//! directory holding node-storm).
mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{read_spans, span_file, storm_example};
use tdist_core::propagation::b3;
use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};
use tdist_storm::harness::{Harness, HarnessConfig, HarnessError};
use tdist_storm::protocol::Tuple;

const T: Duration = Duration::from_secs(30);

fn enabled() -> bool {
    let on = std::env::var("TDIST_STORM_PEERS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipped: set TDIST_STORM_PEERS=1 (see .ci/storm.sh)");
    }
    on
}

fn peer_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

fn python(script: &str) -> Command {
    let py = std::env::var("TDIST_STORM_PYTHON").expect("TDIST_STORM_PYTHON");
    let mut c = Command::new(py);
    c.arg(peer_file(script));
    c
}

fn node(script: &str) -> Command {
    let modules = std::env::var("TDIST_STORM_NODE_PATH").expect("TDIST_STORM_NODE_PATH");
    let mut c = Command::new(std::env::var("TDIST_STORM_NODE").unwrap_or_else(|_| "node".into()));
    c.arg(peer_file(script)).env("NODE_PATH", modules);
    c
}

fn bolt_config(component: &str) -> HarnessConfig {
    let mut c = HarnessConfig::bolt(component).output("default", &["word", "_trace"]);
    c.heartbeat_interval = Some(Duration::from_millis(100));
    c
}

fn root() -> SpanContext {
    SpanContext::new(TraceId::random_128(), SpanId::random()).with_sampling(SamplingState::Accept)
}

/// Sends `values` to the peer bolt, then its emit to our traced relay; returns the relay's span.
fn through_peer_then_relay(peer: &Harness, component: &str, parent: &SpanContext) -> Value {
    let t = peer.tuple(
        "spout",
        vec![
            json!("hello"),
            json!(b3::format_single(parent, false).as_str()),
        ],
    );
    peer.send_tuple(&t).unwrap();
    peer.wait_settled(&t.id, T).unwrap();
    let r = peer.records();
    assert_eq!(r.acks, vec![t.id.clone()]);
    let e = &r.emits[0];
    assert_eq!(
        e.emit.anchors,
        vec![t.id.clone()],
        "the peer anchored to its input"
    );
    assert_eq!(e.emit.values[0], "HELLO");
    assert_eq!(
        e.task_ids,
        Some(vec![4]),
        "the harness answered need_task_ids"
    );
    peer.wait_for(
        |r| r.logs.iter().any(|(_, m)| m.contains("task ids [4]")),
        T,
        "task-id log",
    )
    .unwrap();

    let spans = span_file(component);
    let mut cmd = storm_example("relay");
    cmd.env("TDIST_FILE", &spans).env_remove("TDIST_TRANSPORT");
    let relay = Harness::spawn(cmd, HarnessConfig::bolt("relay")).unwrap();
    let next = Tuple {
        component: Some(component.into()),
        ..relay.tuple(component, e.emit.values.clone())
    };
    relay.send_tuple(&next).unwrap();
    relay.wait_settled(&next.id, T).unwrap();
    relay.close(T).unwrap();
    let s = read_spans(&spans);
    let _ = std::fs::remove_file(&spans);
    assert_eq!(s.len(), 1);
    s[0].clone()
}

#[test]
fn pystorm_bolt() {
    if !enabled() {
        return;
    }
    let h = Harness::spawn(python("py_bolt.py"), bolt_config("pybolt")).unwrap();
    h.wait_pid_file(T).unwrap();
    // pystorm logs before the first tuple: its own banner, then our initialize().
    h.wait_for(
        |r| {
            r.logs
                .iter()
                .any(|(_, m)| m == "pystorm bolt ready as pybolt")
        },
        T,
        "log",
    )
    .unwrap();

    let parent = root();
    let span = through_peer_then_relay(&h, "pybolt", &parent);
    assert_eq!(span["traceId"], parent.trace_id().to_hex().as_str());
    assert_eq!(
        span["parentId"],
        parent.span_id().to_hex().as_str(),
        "trace kept through Python"
    );

    let beats = h.records().syncs;
    h.wait_for(|r| r.syncs >= beats + 3, T, "syncs for heartbeats")
        .unwrap();

    // On an exception pystorm reports, fails the tuple and exits: the worker would die.
    let bad = h.tuple("spout", vec![json!("explode")]);
    h.send_tuple(&bad).unwrap();
    let reason = h.wait_died(T).unwrap();
    let r = h.records();
    assert_eq!(r.fails, vec![bad.id.clone()]);
    assert!(
        r.errors.iter().any(|e| e.contains("asked to explode")),
        "{:?}",
        r.errors
    );
    assert!(reason.contains("broken"), "{reason}");
}

#[test]
fn pystorm_spout() {
    if !enabled() {
        return;
    }
    let h = Harness::spawn(python("py_spout.py"), HarnessConfig::spout("pyspout")).unwrap();
    h.wait_pid_file(T).unwrap();
    h.spout_command("activate", None, T).unwrap();
    let one = h.next(T).unwrap();
    assert_eq!(
        (one[0].emit.values.clone(), one[0].emit.message_id.clone()),
        (vec![json!(1)], Some(json!(1)))
    );
    assert!(!one[0].emit.need_task_ids && one[0].task_ids.is_none());
    assert_eq!(h.next(T).unwrap()[0].emit.values, [json!(2)]);
    h.spout_command("ack", Some(json!(1)), T).unwrap();
    h.spout_command("fail", Some(json!(2)), T).unwrap();
    assert_eq!(
        h.next(T).unwrap()[0].emit.message_id,
        Some(json!(2)),
        "replayed"
    );
    let logs: Vec<String> = h.records().logs.into_iter().map(|(_, m)| m).collect();
    assert!(
        logs.contains(&"acked 1".to_owned()) && logs.contains(&"failed 2".to_owned()),
        "{logs:?}"
    );
    let status = h.close(T).unwrap();
    assert!(status.is_some(), "pystorm exits when stdin closes");
}

#[test]
fn node_storm_bolt() {
    if !enabled() {
        return;
    }
    let h = Harness::spawn(node("node_bolt.js"), bolt_config("nodebolt")).unwrap();
    h.wait_pid_file(T).unwrap();
    let parent = root();
    let span = through_peer_then_relay(&h, "nodebolt", &parent);
    assert_eq!(
        span["parentId"],
        parent.span_id().to_hex().as_str(),
        "trace kept through Node"
    );

    let beats = h.records().syncs;
    h.wait_for(|r| r.syncs >= beats + 3, T, "syncs for heartbeats")
        .unwrap();
    assert!(h.records().acks.len() == 1, "heartbeats are not acked");

    let bad = h.tuple("spout", vec![json!("explode")]);
    h.send_tuple(&bad).unwrap();
    h.wait_settled(&bad.id, T).unwrap();
    assert_eq!(h.records().fails, vec![bad.id.clone()]);
    let err = h.wait_died(Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(err, HarnessError::Timeout(_)),
        "node-storm keeps running: {err}"
    );
}

#[test]
fn node_storm_spout() {
    if !enabled() {
        return;
    }
    let h = Harness::spawn(node("node_spout.js"), HarnessConfig::spout("nodespout")).unwrap();
    h.wait_pid_file(T).unwrap();
    let one = h.next(T).unwrap();
    assert_eq!(one[0].emit.values, [json!(1)]);
    assert_eq!(one[0].emit.message_id, Some(json!(1)));
    assert_eq!(
        one[0].task_ids,
        Some(vec![4]),
        "need_task_ids left to Storm's default"
    );
    h.spout_command("ack", Some(json!(1)), T).unwrap();
    h.spout_command("fail", Some(json!(1)), T).unwrap();
    let logs: Vec<String> = h.records().logs.into_iter().map(|(_, m)| m).collect();
    assert_eq!(logs, ["acked 1", "failed 1"]);

    // Without a sync after ack, ShellSpout waits until the subprocess timeout kills it.
    let mut config = HarnessConfig::spout("nodespout");
    config.subprocess_timeout = Duration::from_secs(1);
    config.heartbeat_interval = Some(Duration::from_millis(100));
    let mut cmd = node("node_spout.js");
    cmd.env("NODE_SPOUT_NO_SYNC", "1");
    let h = Harness::spawn(cmd, config).unwrap();
    h.next(T).unwrap();
    let err = h.spout_command("ack", Some(json!(1)), T).unwrap_err();
    assert!(
        err.to_string().contains("subprocess heartbeat timeout"),
        "{err}"
    );
}
