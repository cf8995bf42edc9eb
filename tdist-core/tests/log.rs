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
