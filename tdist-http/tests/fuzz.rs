//! Arbitrary tracing headers through the server layer: it never panics or fails the request,
//! and the context the handler runs in is exactly what the extraction rules say.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use proptest::prelude::*;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tdist_core::export::InMemory;
use tdist_core::propagation::extract;
use tdist_core::{Extracted, SpanContext, Tracer};
use tdist_http::{HeaderExtractor, ServerLayer};
use tower::{Layer, ServiceExt};

const NAMES: [&str; 9] = [
    "b3",
    "X-B3-TraceId",
    "x-b3-spanid",
    "X-B3-ParentSpanId",
    "x-b3-sampled",
    "x-b3-flags",
    "traceparent",
    "TraceParent",
    "tracestate",
];

/// Header values that are near-valid more often than not: hex runs, separators, flags, and
/// arbitrary bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just("463ac35c9f6413ad".to_string()),
                Just("a2fb4a1d1a96d312".to_string()),
                Just("0000000000000000".to_string()),
                Just("-".to_string()),
                Just("00".to_string()),
                Just("01".to_string()),
                Just("1".to_string()),
                Just("d".to_string()),
                "[0-9a-fA-F]{1,33}",
                "[ -~]{0,4}",
            ],
            0..8
        )
        .prop_map(|parts| parts.concat().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ -~]{0,700}".prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    proptest::collection::vec((0..NAMES.len(), value()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_headers_are_handled(pairs in headers()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let tracer = Tracer::builder().transport(InMemory::new()).build().unwrap();
        let seen: Arc<Mutex<Option<SpanContext>>> = Arc::default();
        let s2 = seen.clone();
        let inner = tower::service_fn(move |_req: Request<()>| {
            *s2.lock().unwrap() = tdist_core::current();
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        });
        let svc = ServerLayer::new(tracer).layer(inner);
        let mut req = Request::new(());
        for (name, v) in &pairs {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                req.headers_mut().append(HeaderName::from_bytes(NAMES[*name].as_bytes()).unwrap(), v);
            }
        }
        let (expected, source) = extract(&HeaderExtractor(req.headers()));
        let resp = rt.block_on(svc.oneshot(req));
        prop_assert!(resp.is_ok());
        let ctx = seen.lock().unwrap().expect("the handler runs inside the span");
        match (expected, source) {
            (Extracted::Context(remote), Some(src)) if src.shares_span_id() => {
                prop_assert_eq!(ctx.trace_id(), remote.trace_id());
                prop_assert_eq!(ctx.span_id(), remote.span_id());
                prop_assert_eq!(ctx.parent_id(), remote.parent_id());
                prop_assert!(ctx.shared());
            }
            (Extracted::Context(remote), Some(_)) => {
                prop_assert_eq!(ctx.trace_id(), remote.trace_id());
                prop_assert_eq!(ctx.parent_id(), Some(remote.span_id()));
                prop_assert!(!ctx.shared());
            }
            _ => {
                prop_assert_eq!(ctx.parent_id(), None);
                prop_assert!(!ctx.shared());
            }
        }
    }
}
