//! OpenTelemetry bridge (feature `opentelemetry`): forward finished spans to any
//! `opentelemetry_sdk` [`SpanExporter`], and convert contexts both ways.
//!
//! ```
//! use tdist_core::otel;
//! use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};
//!
//! let ours = SpanContext::new(TraceId::random_128(), SpanId::random()).with_sampling(SamplingState::Accept);
//! let theirs = otel::to_otel(&ours, true);
//! assert!(theirs.is_sampled() && theirs.is_remote());
//! assert_eq!(otel::from_otel(&theirs), Some(ours));
//! ```

use crate::context::{SamplingState, SpanContext};
use crate::export::{Transport, TransportError};
use crate::id::{SpanId, TraceId};
use crate::record::{FinishedSpan, Kind, TagValue};
use opentelemetry::trace::{self as ot, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

/// Converts our context to OpenTelemetry's. Deny and Defer become "not sampled".
pub fn to_otel(ctx: &SpanContext, is_remote: bool) -> ot::SpanContext {
    let flags = if ctx.is_sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    ot::SpanContext::new(
        ot::TraceId::from_bytes(ctx.trace_id().to_bytes()),
        ot::SpanId::from_bytes(ctx.span_id().get().to_be_bytes()),
        flags,
        is_remote,
        TraceState::default(),
    )
}

/// Converts OpenTelemetry's context to ours; `None` for an invalid (all-zero) one.
pub fn from_otel(ctx: &ot::SpanContext) -> Option<SpanContext> {
    let t = u128::from_be_bytes(ctx.trace_id().to_bytes());
    let trace = TraceId::new((t >> 64) as u64, t as u64)?;
    let span = SpanId::new(u64::from_be_bytes(ctx.span_id().to_bytes()))?;
    let sampling = if ctx.is_sampled() {
        SamplingState::Accept
    } else {
        SamplingState::Deny
    };
    Some(SpanContext::new(trace, span).with_sampling(sampling))
}

/// A transport that hands finished spans to an OpenTelemetry exporter (OTLP, stdout, Jaeger...).
/// The exporter's future is driven on the reporter's thread.
///
/// OpenTelemetry carries the service name in the exporter's resource, not in each span: each
/// batch is exported in runs of spans of one local service, with the exporter's resource set to
/// that service (`service.name`, with the SDK's default detectors, `OTEL_RESOURCE_ATTRIBUTES`
/// included), so a tracer serving several services (`Tracer::with_service_name`) stays apart.
///
/// As an SDK tracer provider does, it asks the exporter to `force_flush` when the tracer is
/// flushed, and shuts the exporter down when the pipeline ends (the last handle dropped).
#[derive(Debug)]
pub struct OtelTransport<E: SpanExporter + 'static> {
    exporter: Mutex<Exporting<E>>,
    scope: InstrumentationScope,
}

/// The exporter, the service its resource was last set to, and the resources made so far.
#[derive(Debug)]
struct Exporting<E> {
    exporter: E,
    service: Option<Option<String>>,
    resources: HashMap<Option<String>, Resource>,
}

/// What a failed export left for `resend`: the indices (in the batch) of the spans of the runs
/// not exported.
struct OtelLeft(Vec<usize>);

impl<E: SpanExporter + 'static> OtelTransport<E> {
    /// Wraps `exporter`.
    pub fn new(exporter: E) -> OtelTransport<E> {
        OtelTransport {
            exporter: Mutex::new(Exporting {
                exporter,
                service: None,
                resources: HashMap::new(),
            }),
            scope: InstrumentationScope::builder("tdist").build(),
        }
    }

    /// Exports the spans at `indices` of `spans`, a run of one service at a time.
    fn export(&self, spans: &[FinishedSpan], indices: &[usize]) -> Result<(), TransportError> {
        let service = |i: usize| spans[i].local_endpoint().service_name().map(str::to_owned);
        let mut guard = self.exporter.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let mut start = 0;
        while start < indices.len() {
            let name = service(indices[start]);
            let end = indices[start..]
                .iter()
                .position(|&i| service(i) != name)
                .map_or(indices.len(), |n| start + n);
            if state.service.as_ref() != Some(&name) {
                let resource = state.resources.entry(name.clone()).or_insert_with(|| {
                    let b = Resource::builder();
                    match &name {
                        Some(n) => b.with_service_name(n.clone()).build(),
                        None => b.build(),
                    }
                });
                state.exporter.set_resource(resource);
                state.service = Some(name);
            }
            let batch: Vec<SpanData> = indices[start..end]
                .iter()
                .map(|&i| self.convert(&spans[i]))
                .collect();
            if let Err(e) = futures_executor::block_on(state.exporter.export(batch)) {
                let left = indices[start..].to_vec();
                let e = TransportError::retryable(format!("opentelemetry exporter: {e}"));
                return Err(e.partial(left.len(), OtelLeft(left)));
            }
            start = end;
        }
        Ok(())
    }

    fn convert(&self, s: &FinishedSpan) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_micros(s.timestamp_us());
        // One attribute per key (OpenTelemetry wants keys unique), its last value, as the Zipkin
        // encoders report it.
        let mut attributes: Vec<KeyValue> = s
            .reported_tags()
            .map(|(k, v)| match v {
                TagValue::Str(v) => KeyValue::new(k.to_owned(), v.to_string()),
                TagValue::Inline(v) => KeyValue::new(k.to_owned(), v.as_str().to_owned()),
                TagValue::I64(v) => KeyValue::new(k.to_owned(), *v),
                TagValue::Bool(v) => KeyValue::new(k.to_owned(), *v),
            })
            .collect();
        if let Some(r) = s.remote_endpoint().and_then(|e| e.service_name()) {
            attributes.push(KeyValue::new("peer.service", r.to_owned()));
        }
        let mut events = SpanEvents::default();
        for a in s.annotations() {
            events.events.push(ot::Event::new(
                a.value.clone(),
                UNIX_EPOCH + Duration::from_micros(a.timestamp_us),
                Vec::new(),
                0,
            ));
        }
        let status = match s.tag("error") {
            Some(e) => ot::Status::error(e.to_string()),
            None => ot::Status::Unset,
        };
        SpanData {
            span_context: to_otel(s.context(), false),
            parent_span_id: s.parent_id().map_or(ot::SpanId::INVALID, |p| {
                ot::SpanId::from_bytes(p.get().to_be_bytes())
            }),
            parent_span_is_remote: s.shared(),
            span_kind: match s.kind() {
                Some(Kind::Client) => ot::SpanKind::Client,
                Some(Kind::Server) => ot::SpanKind::Server,
                Some(Kind::Producer) => ot::SpanKind::Producer,
                Some(Kind::Consumer) => ot::SpanKind::Consumer,
                None => ot::SpanKind::Internal,
            },
            name: s.name().to_owned().into(),
            start_time: start,
            end_time: start + Duration::from_micros(s.duration_us()),
            attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

impl<E: SpanExporter + 'static> Drop for OtelTransport<E> {
    fn drop(&mut self) {
        let exporting = self.exporter.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = exporting.exporter.shutdown() {
            tracing::warn!(target: "tdist", error = %e, "OpenTelemetry exporter shutdown failed");
        }
    }
}

impl<E: SpanExporter + 'static> Transport for OtelTransport<E> {
    /// The exporter's `force_flush`, after the reporter has handed it every span.
    fn flush(&self, _deadline: std::time::Instant) -> u64 {
        let exporting = self.exporter.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = exporting.exporter.force_flush() {
            tracing::warn!(target: "tdist", error = %e, "OpenTelemetry exporter force_flush failed");
        }
        0
    }

    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let all: Vec<usize> = (0..spans.len()).collect();
        self.export(spans, &all)
    }

    /// Exports the runs a failed export left, not those already exported.
    fn resend(
        &self,
        spans: &[FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        match failure.resume::<OtelLeft>() {
            Some(OtelLeft(left)) => self.export(spans, left),
            None => self.send(spans),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tracer;
    use opentelemetry_sdk::trace::InMemorySpanExporterBuilder;

    #[test]
    fn forwards_spans_to_an_sdk_exporter() {
        let exporter = InMemorySpanExporterBuilder::new().build();
        let tracer = Tracer::builder()
            .service_name("bridge")
            .transport(OtelTransport::new(exporter.clone()))
            .build()
            .unwrap();
        let root = tracer.root_span("parent");
        let mut child = tracer.child_span(&root.context(), "child");
        child.set_kind(Kind::Client);
        child.tag("http.status_code", 503);
        child.set_error("upstream unavailable");
        child.finish();
        root.finish();
        tracer.flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 2);
        let c = spans.iter().find(|s| s.name == "child").unwrap();
        let p = spans.iter().find(|s| s.name == "parent").unwrap();
        assert_eq!(c.parent_span_id, p.span_context.span_id());
        assert_eq!(c.span_kind, ot::SpanKind::Client);
        assert!(matches!(c.status, ot::Status::Error { .. }));
    }

    /// Records each exported span with the `service.name` of the resource set at the time.
    #[derive(Debug, Clone, Default)]
    struct ByService(std::sync::Arc<Mutex<Seen>>);

    #[derive(Debug, Default)]
    struct Seen {
        /// The resource's service name now.
        service: Option<String>,
        /// Each span exported, with the service name of the resource at the time.
        spans: Vec<(Option<String>, SpanData)>,
    }

    impl SpanExporter for ByService {
        fn export(
            &self,
            batch: Vec<SpanData>,
        ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send
        {
            let mut seen = self.0.lock().unwrap();
            let service = seen.service.clone();
            let exported = batch.into_iter().map(|s| (service.clone(), s));
            seen.spans.extend(exported);
            std::future::ready(Ok(()))
        }

        fn set_resource(&mut self, resource: &Resource) {
            let name = resource.get(&opentelemetry::Key::new("service.name"));
            self.0.lock().unwrap().service = name.map(|v| v.to_string());
        }
    }

    /// The service name reaches OpenTelemetry in the resource, per service, and a tag set twice
    /// is one attribute with its last value.
    #[test]
    fn each_service_s_spans_carry_its_resource_and_unique_attributes() {
        let exporter = ByService::default();
        let tracer = Tracer::builder()
            .service_name("api")
            .transport(OtelTransport::new(exporter.clone()))
            .build()
            .unwrap();
        let worker = tracer.with_service_name("worker");
        for _ in 0..2 {
            let mut span = tracer.root_span("request");
            span.tag("http.status_code", 500);
            span.tag("http.status_code", 200);
            span.finish();
            worker.root_span("job").finish();
        }
        tracer.flush().unwrap();
        let seen = exporter.0.lock().unwrap();
        assert_eq!(seen.spans.len(), 4);
        for (service, span) in &seen.spans {
            let expected = if span.name == "request" {
                "api"
            } else {
                "worker"
            };
            assert_eq!(service.as_deref(), Some(expected), "{}", span.name);
            let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
            assert!(!keys.contains(&"service.name"), "{keys:?}");
            if span.name == "request" {
                assert_eq!(
                    span.attributes,
                    [KeyValue::new("http.status_code", 200)],
                    "one attribute, the last value"
                );
            }
        }
    }

    /// Counts `force_flush` and `shutdown` calls.
    #[derive(Debug, Default, Clone)]
    struct Calls {
        flushes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        shutdowns: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SpanExporter for Calls {
        async fn export(&self, _batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            self.flushes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn shutdown_with_timeout(
            &self,
            _timeout: std::time::Duration,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.shutdowns
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    /// As an SDK provider does: a flush of the tracer flushes the exporter, and the end of the
    /// pipeline shuts it down, once.
    #[test]
    fn the_exporter_is_flushed_with_the_tracer_and_shut_down_with_it() {
        use std::sync::atomic::Ordering::SeqCst;
        let calls = Calls::default();
        let tracer = Tracer::builder()
            .transport(OtelTransport::new(calls.clone()))
            .build()
            .unwrap();
        tracer.root_span("work").finish();
        tracer.flush().unwrap();
        assert_eq!(calls.flushes.load(SeqCst), 1);
        assert_eq!(calls.shutdowns.load(SeqCst), 0);
        drop(tracer);
        // The worker lets go of the pipeline a moment after the last handle.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while calls.shutdowns.load(SeqCst) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(calls.shutdowns.load(SeqCst), 1);
    }
}
