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
#[derive(Debug)]
pub struct OtelTransport<E> {
    exporter: Mutex<E>,
    scope: InstrumentationScope,
}

impl<E: SpanExporter + 'static> OtelTransport<E> {
    /// Wraps `exporter`.
    pub fn new(exporter: E) -> OtelTransport<E> {
        OtelTransport {
            exporter: Mutex::new(exporter),
            scope: InstrumentationScope::builder("tdist").build(),
        }
    }

    fn convert(&self, s: &FinishedSpan) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_micros(s.timestamp_us());
        let mut attributes: Vec<KeyValue> = s
            .tags()
            .map(|(k, v)| match v {
                TagValue::Str(v) => KeyValue::new(k.to_owned(), v.to_string()),
                TagValue::Inline(v) => KeyValue::new(k.to_owned(), v.as_str().to_owned()),
                TagValue::I64(v) => KeyValue::new(k.to_owned(), *v),
                TagValue::Bool(v) => KeyValue::new(k.to_owned(), *v),
            })
            .collect();
        if let Some(name) = s.local_endpoint().service_name() {
            attributes.push(KeyValue::new("service.name", name.to_owned()));
        }
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

impl<E: SpanExporter + 'static> Transport for OtelTransport<E> {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let batch: Vec<SpanData> = spans.iter().map(|s| self.convert(s)).collect();
        let exporter = self.exporter.lock().unwrap_or_else(|p| p.into_inner());
        futures_executor::block_on(exporter.export(batch))
            .map_err(|e| TransportError::retryable(format!("opentelemetry exporter: {e}")))
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
}
