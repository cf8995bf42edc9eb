//! Logs inside a trace carry its ids, and `tracing` spans can be recorded as tdist spans.

mod support;

use std::sync::{Arc, Mutex};
use support::tracer;
use tdist_core::log::TdistLayer;
use tracing_subscriber::prelude::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tracing::instrument(fields(order = id))]
fn load_order(id: u32) {
    tracing::info!("loading");
}

#[test]
fn instrumented_functions_become_child_spans_and_logs_carry_their_ids() {
    let (tracer, sink) = tracer("logs");
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::registry()
        .with(TdistLayer::new(tracer.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(tdist_core::log::format())
                .with_writer(move || w.clone())
                .with_ansi(false),
        );
    let root = tracer.root_span("request");
    let root_ctx = root.context();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("before any trace");
        let _g = root.enter();
        tracing::info!("in the request");
        load_order(7);
    });
    root.finish();
    tracer.flush().unwrap();
    let spans = sink.trace(root_ctx.trace_id());
    let child = spans
        .iter()
        .find(|s| s.name() == "load_order")
        .expect("instrumented span recorded");
    assert_eq!(child.parent_id(), Some(root_ctx.span_id()));
    assert_eq!(
        child.tag("order").map(ToString::to_string).as_deref(),
        Some("7")
    );

    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(!lines[0].contains("trace_id="));
    assert!(lines[1].contains(&format!(
        "trace_id={} span_id={}",
        root_ctx.trace_id(),
        root_ctx.span_id()
    )));
    // Inside the instrumented function the log carries the child's span id.
    assert!(
        lines[2].contains(&format!(
            "trace_id={} span_id={}",
            root_ctx.trace_id(),
            child.id()
        )),
        "{text}"
    );
}

#[test]
fn tracing_spans_outside_a_trace_are_not_recorded_by_default() {
    let (tracer, sink) = tracer("quiet");
    let subscriber = tracing_subscriber::registry().with(TdistLayer::new(tracer.clone()));
    tracing::subscriber::with_default(subscriber, || load_order(1));
    tracer.flush().unwrap();
    assert!(sink.spans().is_empty());
}

/// A long-lived `tracing` span recorded under one request (a worker's) does not pull a later
/// request's work into the first request's trace: an `#[instrument]` function runs in the trace
/// that is current when it is called.
#[test]
fn a_tracing_span_joins_the_current_trace_not_an_older_ancestor_s() {
    let (tracer, sink) = tracer("worker");
    let subscriber = tracing_subscriber::registry().with(TdistLayer::new(tracer.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let a = tracer.root_span("request a");
        let worker = {
            let _a = tdist_core::set_current(Some(a.context()));
            tracing::info_span!("worker")
        };
        let _in_worker = worker.enter();
        let b = tracer.root_span("request b");
        {
            let _b = tdist_core::set_current(Some(b.context()));
            load_order(7);
            // An explicit parent is followed, whatever is current.
            tracing::info_span!(parent: &worker, "explicit").in_scope(|| {});
        }
        drop(_in_worker);
        drop(worker);
        b.finish();
        a.finish();
    });
    tracer.flush().unwrap();
    let spans = sink.spans();
    let by_name = |n: &str| spans.iter().find(|s| s.name() == n).unwrap().clone();
    let (a, b) = (by_name("request a"), by_name("request b"));
    let load = by_name("load_order");
    assert_eq!(load.trace_id(), b.trace_id(), "{load:?}");
    assert_eq!(load.parent_id(), Some(b.id()));
    // Unsigned fields are numbers, as signed ones are (they were text).
    assert_eq!(load.tag("id"), Some(&tdist_core::TagValue::I64(7)));
    let (worker, explicit) = (by_name("worker"), by_name("explicit"));
    assert_eq!(worker.trace_id(), a.trace_id());
    assert_eq!(explicit.parent_id(), Some(worker.id()));
}

/// A field recorded again replaces its value, as `tracing` means it: a long-lived span (a
/// connection's, a consumer's) that records a counter on every message keeps one tag, not one
/// per record, so it neither grows without bound nor costs its encoders a quadratic scan.
#[test]
fn a_field_recorded_again_replaces_its_tag() {
    let (tracer, sink) = tracer("records");
    let subscriber = tracing_subscriber::registry().with(TdistLayer::new(tracer.clone()));
    let root = tracer.root_span("request");
    tracing::subscriber::with_default(subscriber, || {
        let _in_root = root.enter();
        let span = tracing::info_span!("connection", messages = tracing::field::Empty, peer = "a");
        for n in 1..=1000i64 {
            span.record("messages", n);
        }
        span.record("peer", "b");
    });
    root.finish();
    tracer.flush().unwrap();
    let spans = sink.spans();
    let conn = spans.iter().find(|s| s.name() == "connection").unwrap();
    assert_eq!(conn.tags().count(), 2, "one tag per field");
    assert_eq!(conn.tag("messages"), Some(&tdist_core::TagValue::I64(1000)));
    assert_eq!(conn.tag("peer").and_then(|v| v.as_str()), Some("b"));
}
