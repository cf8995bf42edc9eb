//! The user-facing example bolt (`examples/storm_bolt.rs`) under the harness.
mod support;

use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::{example, read_spans, span_file};
use tdist_core::propagation::b3;
use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};
use tdist_storm::harness::{Harness, HarnessConfig};

const T: Duration = Duration::from_secs(20);

#[test]
fn storm_bolt_example_splits_and_traces() {
    let spans = span_file("example");
    let mut cmd = Command::new(example("tdist-examples", "storm_bolt"));
    cmd.env("TDIST_FILE", &spans)
        .env_remove("TDIST_TRANSPORT")
        .env_remove("OTEL_SERVICE_NAME");
    let config = HarnessConfig::bolt("split").output("default", &["word", "_trace"]);
    let h = Harness::spawn(cmd, config).unwrap();
    let parent = SpanContext::new(TraceId::random_64(), SpanId::random())
        .with_sampling(SamplingState::Accept);
    let b3 = b3::format_single(&parent, false);
    let t = h.tuple("spout", vec![json!("Hello Storm"), json!(b3.as_str())]);
    h.send_tuple(&t).unwrap();
    h.wait_settled(&t.id, T).unwrap();
    let r = h.records();
    assert_eq!(r.acks, vec![t.id.clone()]);
    let words: Vec<_> = r.emits.iter().map(|e| e.emit.values[0].clone()).collect();
    assert_eq!(words, [json!("hello"), json!("storm")]);
    assert!(r.emits.iter().all(|e| e.emit.anchors == vec![t.id.clone()]));
    let carried = r.emits[0].emit.values[1].as_str().unwrap().to_owned();
    assert_eq!(r.emits[1].emit.values[1], carried.as_str());
    let status = h.close(T).unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let s = read_spans(&spans);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["name"], "split");
    assert_eq!(s[0]["localEndpoint"]["serviceName"], "storm-bolt");
    assert_eq!(s[0]["traceId"], parent.trace_id().to_hex().as_str());
    assert_eq!(s[0]["parentId"], parent.span_id().to_hex().as_str());
    let ctx = b3::parse_single(&carried).unwrap().context().unwrap();
    assert_eq!(s[0]["id"], ctx.span_id().to_hex().as_str());
    let _ = std::fs::remove_file(spans);
}

#[test]
fn storm_bolt_example_refuses_stdout_transport() {
    let mut cmd = Command::new(example("tdist-examples", "storm_bolt"));
    let out = cmd.env("TDIST_TRANSPORT", "stdout").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing but protocol on stdout");
}
