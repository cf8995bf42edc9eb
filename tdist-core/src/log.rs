//! Logs that carry the trace: a `tracing-subscriber` event formatter that writes `trace_id` and
//! `span_id` on every event logged inside a trace, and a layer that (opt-in) records `tracing`
//! spans, such as those of `#[tracing::instrument]`, as local tdist spans.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tdist_core::{SpanContext, SpanId, TraceId};
//! use tracing_subscriber::prelude::*;
//!
//! #[derive(Clone, Default)]
//! struct Buf(Arc<Mutex<Vec<u8>>>);
//! impl std::io::Write for Buf {
//!     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().write(b) }
//!     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! let buf = Buf::default();
//! let writer = buf.clone();
//! let subscriber = tracing_subscriber::registry().with(
//!     tracing_subscriber::fmt::layer()
//!         .event_format(tdist_core::log::format())
//!         .with_writer(move || writer.clone())
//!         .with_ansi(false),
//! );
//! let ctx = SpanContext::new(TraceId::random_128(), SpanId::random());
//! tracing::subscriber::with_default(subscriber, || {
//!     let _in_trace = tdist_core::set_current(Some(ctx));
//!     tracing::info!("charged the card");
//! });
//! let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
//! assert!(out.contains(&format!("trace_id={}", ctx.trace_id())));
//! assert!(out.contains("charged the card"));
//! ```

use crate::current::{current, set_current, ContextGuard};
use crate::record::TagValue;
use crate::span::Span;
use crate::tracer::Tracer;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// An event formatter that prefixes `trace_id=… span_id=… ` when a trace is current, then
/// delegates to the wrapped formatter (the default full format unless given).
#[derive(Debug, Clone, Default)]
pub struct TraceIdFormat<F = Format<Full>> {
    inner: F,
}

impl<F> TraceIdFormat<F> {
    /// Wraps another event formatter.
    pub fn new(inner: F) -> TraceIdFormat<F> {
        TraceIdFormat { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for TraceIdFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(c) = current() {
            write!(writer, "trace_id={} span_id={} ", c.trace_id(), c.span_id())?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// A `tracing-subscriber` layer that records `tracing` spans as local tdist spans and makes each
/// current while it is entered, so events and outgoing calls inside `#[instrument]` functions
/// join the trace. Fields become tags. A span is a child of the current tdist context (which is
/// the enclosing recorded span's while that is entered); a span given an explicit `parent:`, or
/// made where no tdist context is current, is a child of its nearest recorded `tracing` ancestor.
#[derive(Debug, Clone)]
pub struct TdistLayer {
    tracer: Option<Tracer>,
    only_in_trace: bool,
}

impl TdistLayer {
    /// Records `tracing` spans with `tracer`.
    pub fn new(tracer: Tracer) -> TdistLayer {
        TdistLayer {
            tracer: Some(tracer),
            only_in_trace: true,
        }
    }

    /// Records with the global tracer as it is when each span starts.
    pub fn global() -> TdistLayer {
        TdistLayer {
            tracer: None,
            only_in_trace: true,
        }
    }

    /// Whether a `tracing` span outside any trace starts a new trace (off by default: only
    /// spans inside a trace are recorded, so startup and background spans do not make roots).
    pub fn start_traces(mut self, on: bool) -> TdistLayer {
        self.only_in_trace = !on;
        self
    }
}

struct Recorded(Span);

thread_local! {
    static ENTERED: RefCell<Vec<(Id, ContextGuard)>> = const { RefCell::new(Vec::new()) };
}

/// Fields as tags. `replace` when the span already has tags (`Span::record`): a field recorded
/// again replaces its value, as `tracing` means it, rather than adding a tag per record (a
/// long-lived span recording a counter would otherwise grow without bound).
struct Tags<'a> {
    span: &'a mut Span,
    replace: bool,
}

impl Tags<'_> {
    fn set(&mut self, field: &Field, value: TagValue) {
        if self.replace {
            self.span.replace_tag(field.name(), value);
        } else {
            self.span.tag(field.name(), value);
        }
    }
}

impl Visit for Tags<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned().into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.set(field, v.into()),
            Err(_) => self.set(field, value.to_string().into()),
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.set(field, s.into());
    }
}

impl<S> Layer<S> for TdistLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span_ref) = ctx.span(id) else { return };
        let ancestor = || {
            span_ref
                .scope()
                .skip(1)
                .find_map(|p| p.extensions().get::<Recorded>().map(|r| r.0.context()))
        };
        // The current tdist context first: a long-lived `tracing` span (a worker's, a
        // connection's) recorded under an earlier request must not pull a later request's work
        // into that request's trace. An explicit `parent:` is the caller's choice.
        let parent = match attrs.parent() {
            Some(_) => ancestor().or_else(current),
            None => current().or_else(ancestor),
        };
        if parent.is_none() && self.only_in_trace {
            return;
        }
        let tracer = self.tracer.clone().unwrap_or_else(Tracer::global);
        let name = attrs.metadata().name();
        let mut span = match parent {
            Some(p) => tracer.child_span(&p, name),
            None => tracer.root_span(name),
        };
        attrs.record(&mut Tags {
            span: &mut span,
            replace: false,
        });
        span_ref.extensions_mut().insert(Recorded(span));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(s) = ctx.span(id) {
            if let Some(r) = s.extensions_mut().get_mut::<Recorded>() {
                values.record(&mut Tags {
                    span: &mut r.0,
                    replace: true,
                });
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(s) = ctx.span(id) else { return };
        let Some(c) = s.extensions().get::<Recorded>().map(|r| r.0.context()) else {
            return;
        };
        let guard = set_current(Some(c));
        let _ = ENTERED.try_with(|e| e.borrow_mut().push((id.clone(), guard)));
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let _ = ENTERED.try_with(|e| {
            let mut e = e.borrow_mut();
            if let Some(pos) = e.iter().rposition(|(entered, _)| entered == id) {
                // Guards restore in reverse order of entry.
                while e.len() > pos {
                    e.pop();
                }
            }
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(s) = ctx.span(&id) {
            if let Some(r) = s.extensions_mut().remove::<Recorded>() {
                r.0.finish();
            }
        }
    }
}

/// A ready formatter: the default full format with the trace prefix, default field formatting.
pub fn format() -> TraceIdFormat<Format<Full>> {
    TraceIdFormat::default()
}

/// The default field formatter, for use beside [`format()`].
pub fn fields() -> DefaultFields {
    DefaultFields::new()
}
